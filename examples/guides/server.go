// SPDX-License-Identifier: MIT

// A Go HTTP server under batond (docs/guides/go.md): the listening socket is
// fd 3 (LISTEN_FDS), READY=1 goes to NOTIFY_SOCKET once it serves, and SIGTERM
// (the drain) stops accepting, closes this process's copy of the listener and
// lets the requests in flight finish. The standard library only.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

const listenFdsStart = 3 // fixed by the socket-activation contract

// inheritedListener is the first socket batond passed, as a net.Listener.
func inheritedListener() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, fmt.Errorf("LISTEN_PID is not our pid: run it under batond (or systemd)")
	}
	if n, err := strconv.Atoi(os.Getenv("LISTEN_FDS")); err != nil || n < 1 {
		return nil, fmt.Errorf("no listening socket in LISTEN_FDS")
	}
	f := os.NewFile(listenFdsStart, "listen-fd-3")
	defer f.Close() // FileListener made its own duplicate
	return net.FileListener(f)
}

// notify is sd_notify(3): one datagram to NOTIFY_SOCKET, from this very pid
// (batond accepts it from a worker's own pid only).
func notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

func main() {
	ln, err := inheritedListener()
	if err != nil {
		log.Fatalf("server.go: %v", err)
	}
	body := fmt.Sprintf("hello from go, generation %s worker %s pid %d\n",
		os.Getenv("BATON_GENERATION"), os.Getenv("BATON_WORKER"), os.Getpid())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	})}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// Serve accepts from here on; connections that came before wait in the
	// kernel's accept queue, which batond keeps open.
	if err := notify("READY=1"); err != nil {
		log.Fatalf("server.go: READY=1: %v", err)
	}
	select {
	case <-stop:
	case err := <-served:
		log.Fatalf("server.go: %v", err)
	}
	notify("STOPPING=1")
	// Shutdown closes the listener (close(2), never shutdown(2): batond and the
	// next generation share the socket), closes idle keep-alive connections and
	// waits for the requests in flight; batond's drain-timeout bounds it.
	if err := srv.Shutdown(context.Background()); err != nil {
		log.Fatalf("server.go: shutdown: %v", err)
	}
}
