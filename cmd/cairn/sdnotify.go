package main

import (
	"log/slog"
	"net"
	"os"
)

// sdNotify sends state (READY=1, STOPPING=1) to systemd when it runs
// cairn as a Type=notify service ($NOTIFY_SOCKET, sd_notify(3)): then
// `systemctl start cairn` waits until serve has mounted the repository and
// listens, and fails with serve's error when it cannot start (a bad
// config, a missing repository) instead of reporting success. Without
// $NOTIFY_SOCKET it does nothing.
func sdNotify(state string) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return
	}
	if name[0] == '@' { // an abstract socket
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		slog.Warn("cannot notify systemd", "socket", name, "error", err)
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		slog.Warn("cannot notify systemd", "socket", name, "error", err)
	}
}
