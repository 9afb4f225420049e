package verify

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// fromString is the sha256 digest of s, by the standard library.
func fromString(s string) v1.Hash {
	sum := sha256.Sum256([]byte(s))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func TestReadCloser(t *testing.T) {
	const content = "hello, blob"
	good := fromString(content)
	for _, tc := range []struct {
		name     string
		content  string
		size     int64
		want     v1.Hash
		wantRead string
		wantErr  *Error
	}{
		{name: "match", content: content, size: int64(len(content)), want: good, wantRead: content},
		{name: "empty", content: "", size: 0, want: fromString(""), wantRead: ""},
		{name: "wrong digest", content: "hello, blub", size: int64(len(content)), want: good, wantRead: "hello, blub",
			wantErr: &Error{Want: good, Got: fromString("hello, blub"), WantSize: 11, GotSize: 11}},
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
	rc, err := ReadCloser(io.NopCloser(iotest.OneByteReader(strings.NewReader(content))), int64(len(content)), fromString(content))
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(rc, []byte(content)); err != nil {
		t.Fatal(err)
	}
}

// The published digests of the empty string, and sha512 content.
func TestReadCloserAlgorithms(t *testing.T) {
	for _, want := range []v1.Hash{
		{Algorithm: "sha256", Hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{Algorithm: "sha512", Hex: "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce" +
			"47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
	} {
		rc, err := ReadCloser(io.NopCloser(strings.NewReader("")), 0, want)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(rc); err != nil {
			t.Errorf("%s: %v", want, err)
		}
	}
	sum := sha512.Sum384([]byte("x"))
	want := v1.Hash{Algorithm: "sha384", Hex: hex.EncodeToString(sum[:])}
	rc, _ := ReadCloser(io.NopCloser(strings.NewReader("y")), 1, want)
	var verr *Error
	if _, err := io.ReadAll(rc); !errors.As(err, &verr) || verr.Got.Algorithm != "sha384" {
		t.Errorf("sha384 of other content: %v", err)
	}
}

func TestReadCloserBadArguments(t *testing.T) {
	good := fromString("")
	for _, bad := range []v1.Hash{
		{Algorithm: "sha256", Hex: "nothex"},
		{Algorithm: "sha256", Hex: good.Hex[:63]},
		{Algorithm: "sha256", Hex: strings.ToUpper(good.Hex)},
		{Algorithm: "md5", Hex: "d41d8cd98f00b204e9800998ecf8427e"},
		{},
	} {
		if _, err := ReadCloser(io.NopCloser(strings.NewReader("")), 0, bad); err == nil {
			t.Errorf("invalid digest %q accepted", bad)
		}
	}
	if _, err := ReadCloser(io.NopCloser(strings.NewReader("")), -1, fromString("")); err == nil {
		t.Error("negative size accepted")
	}
}
