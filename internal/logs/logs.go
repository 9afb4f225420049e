// Package logs holds the one logging convention of the libraries.
//
// A library never logs through a global: it takes a [logrus.FieldLogger]
// from its caller in its Options (a field named Logger), and a nil Logger
// means Discard, so libraries are silent unless asked. *logrus.Logger and
// *logrus.Entry satisfy FieldLogger; cmd/nydusify passes the logger it
// configures from --log-level, tests a logger writing to a buffer. The level
// of each message is the library's choice: a cause of EIO, a skipped input
// or an ignored setting is a warning.
package logs

import (
	"bytes"
	"io"
	"log"

	"github.com/sirupsen/logrus"
)

// Discard drops every message without formatting it.
var Discard logrus.FieldLogger = &logrus.Logger{
	Out:       io.Discard,
	Formatter: new(logrus.TextFormatter),
	Hooks:     make(logrus.LevelHooks),
	Level:     logrus.PanicLevel, // below every level libraries log at
}

// Or returns l, or Discard when l is nil.
func Or(l logrus.FieldLogger) logrus.FieldLogger {
	if l == nil {
		return Discard
	}
	return l
}

// New returns a logger writing logrus's text lines for info and above to w,
// as a test or a tool hands to a library to see what it logs.
func New(w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(w)
	return l
}

// Std returns a standard-library logger whose every line goes to l as a
// warning, for packages that take a *log.Logger (go-fuse).
func Std(l logrus.FieldLogger) *log.Logger {
	return log.New(lineWriter{l}, "", 0)
}

// lineWriter logs each write, a line from log.Logger, as one warning.
type lineWriter struct{ l logrus.FieldLogger }

func (w lineWriter) Write(p []byte) (int, error) {
	w.l.Warn(string(bytes.TrimSuffix(p, []byte("\n"))))
	return len(p), nil
}
