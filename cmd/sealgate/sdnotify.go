package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// sdNotify sends state to systemd when serve runs as a Type=notify unit
// (NOTIFY_SOCKET set): "READY=1" once the listeners are bound and the
// queue recovered, "STOPPING=1" when shutdown begins. Outside systemd it
// does nothing. The protocol is one datagram on a unix socket; an
// abstract socket is written with a leading '@'.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("NOTIFY_SOCKET %q is neither a path nor an abstract socket", addr)
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	return nil
}
