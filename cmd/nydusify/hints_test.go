package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTLSHintNamesTheCommandsFlags: the error of a real TLS handshake with a
// server whose certificate is not trusted gets a hint naming the flags the
// failing command has, and no flag it lacks.
func TestTLSHintNamesTheCommandsFlags(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := http.Get(srv.URL)
	if err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	root := newRootCmd()
	for _, c := range []struct {
		cmd       string
		want, not []string
	}{
		{"convert", []string{"--source-insecure or --target-insecure"}, nil},
		{"mount", []string{"--target-insecure"}, []string{"--source-insecure"}},
		{"inspect", nil, []string{"insecure"}},
	} {
		cmd, _, ferr := root.Find([]string{c.cmd})
		if ferr != nil {
			t.Fatal(ferr)
		}
		h := hint(cmd, err)
		if !strings.HasPrefix(h, "the registry's TLS certificate is not trusted here: install its CA") {
			t.Errorf("%s: hint %q", c.cmd, h)
		}
		for _, w := range c.want {
			if !strings.Contains(h, w) {
				t.Errorf("%s: hint %q lacks %q", c.cmd, h, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(h, w) {
				t.Errorf("%s: hint %q names %q, which the command does not have", c.cmd, h, w)
			}
		}
	}
}
