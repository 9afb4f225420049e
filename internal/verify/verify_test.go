package verify

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
)

func TestReadCloser(t *testing.T) {
	const content = "hello, blob"
	good := digest.FromString(content)
	for _, tc := range []struct {
		name     string
		content  string
		size     int64
		want     digest.Digest
		wantRead string
		wantErr  *Error
	}{
		{name: "match", content: content, size: int64(len(content)), want: good, wantRead: content},
		{name: "empty", content: "", size: 0, want: digest.FromString(""), wantRead: ""},
		{name: "wrong digest", content: "hello, blub", size: int64(len(content)), want: good, wantRead: "hello, blub",
			wantErr: &Error{Want: good, Got: digest.FromString("hello, blub"), WantSize: 11, GotSize: 11}},
		{name: "short", content: content[:5], size: int64(len(content)), want: good, wantRead: content[:5],
			wantErr: &Error{Want: good, WantSize: 11, GotSize: 5}},
		// Bytes past the expected size are never handed out.
		{name: "long", content: content + "!!", size: int64(len(content)), want: good, wantRead: content,
			wantErr: &Error{Want: good, WantSize: 11, GotSize: 13}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := ReadCloser(io.NopCloser(strings.NewReader(tc.content)), tc.size, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if string(got) != tc.wantRead {
				t.Errorf("read %q, want %q", got, tc.wantRead)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			var verr *Error
			if !errors.As(err, &verr) || *verr != *tc.wantErr {
				t.Fatalf("error %#v, want %#v", err, tc.wantErr)
			}
			// The failure is sticky.
			if _, again := rc.Read(make([]byte, 1)); again != err {
				t.Errorf("second read: %v, want %v", again, err)
			}
		})
	}
}

// One byte at a time, the digest and size are still checked at the end.
func TestReadCloserSmallReads(t *testing.T) {
	const content = "a longer piece of content read byte by byte"
	rc, err := ReadCloser(io.NopCloser(iotest.OneByteReader(strings.NewReader(content))), int64(len(content)), digest.FromString(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(rc, []byte(content)); err != nil {
		t.Fatal(err)
	}
}

func TestReadCloserBadArguments(t *testing.T) {
	if _, err := ReadCloser(io.NopCloser(strings.NewReader("")), 0, "sha256:nothex"); err == nil {
		t.Error("invalid digest accepted")
	}
	if _, err := ReadCloser(io.NopCloser(strings.NewReader("")), -1, digest.FromString("")); err == nil {
		t.Error("negative size accepted")
	}
}
