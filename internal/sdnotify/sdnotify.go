// Package sdnotify tells a service manager about the process's state with
// the sd_notify datagram protocol ($NOTIFY_SOCKET), so that a unit of
// Type=notify starts its dependants only once a mount is usable.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Ready is the state a daemon sends once it serves requests.
const Ready = "READY=1"

// Stopping is the state a daemon sends when it begins to shut down.
const Stopping = "STOPPING=1"

// Notify sends state (newline-separated KEY=VALUE lines) to $NOTIFY_SOCKET.
// It reports false, with no error, when the variable is unset: nothing
// listens.
func Notify(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	if addr[0] == '@' { // abstract socket namespace
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}
