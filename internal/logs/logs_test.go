package logs_test

import (
	"bytes"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/nydus-go/nydusify/internal/logs"
)

func TestOr(t *testing.T) {
	if logs.Or(nil) != logs.Discard {
		t.Error("Or(nil) is not Discard")
	}
	l := logrus.New()
	if logs.Or(l) != logrus.FieldLogger(l) {
		t.Error("Or(l) is not l")
	}
}

func TestDiscardIsSilent(t *testing.T) {
	// Discard must stay silent even if someone points the standard logger
	// at a buffer: it has its own output.
	var buf bytes.Buffer
	std := logrus.StandardLogger()
	out := std.Out
	std.SetOutput(&buf)
	defer std.SetOutput(out)
	logs.Discard.Warnf("dropped %d", 1)
	logs.Discard.Error("dropped")
	logs.Discard.WithField("k", "v").Warn("dropped")
	if buf.Len() != 0 {
		t.Errorf("Discard wrote %q", buf.String())
	}
}

func TestStdLinesAreWarnings(t *testing.T) {
	l, hook := test.NewNullLogger()
	std := logs.Std(l)
	std.Printf("rafsfs: read of inode %d: %s", 5, "EIO")
	std.Print("second line\n")
	entries := hook.AllEntries()
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2", len(entries))
	}
	for i, want := range []string{"rafsfs: read of inode 5: EIO", "second line"} {
		if entries[i].Message != want || entries[i].Level != logrus.WarnLevel {
			t.Errorf("entry %d: %s %q, want warning %q", i, entries[i].Level, entries[i].Message, want)
		}
	}
}
