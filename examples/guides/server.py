#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A plain Python HTTP server under batond (docs/guides/python.md).

Nothing but the standard library: the listening socket is fd 3 (LISTEN_FDS),
READY=1 goes to NOTIFY_SOCKET by hand once the server accepts, and SIGTERM (the
drain) stops accepting, closes this process's copy of the listener and lets the
requests in flight finish before it exits.

GUIDE_START_DELAY=SECONDS sleeps before serving: a stand-in for an application
that takes that long to import and set up (docs/guides/ready-immediate.md).
"""
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

LISTEN_FDS_START = 3  # fixed by the socket-activation contract


def inherited_listener():
    """The first inherited socket, if LISTEN_PID says the variables are ours."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        sys.exit("server.py: no listening socket at fd 3: run it under batond (or systemd)")
    sock = socket.socket(fileno=LISTEN_FDS_START)
    # batond's listener is non-blocking, and O_NONBLOCK belongs to the socket that
    # every holder shares: a worker that loses the race for a connection gets
    # EAGAIN (which socketserver ignores) instead of hanging in accept().
    sock.setblocking(False)
    os.set_inheritable(sock.fileno(), False)  # our children do not serve
    return sock


def notify(state):
    """sd_notify(3) by hand: one datagram to NOTIFY_SOCKET, from this very pid
    (batond accepts it from a worker's own pid only)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(addr)
        s.sendall(state.encode())


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a draining worker has no idle
    # keep-alive connection to cut in the middle of a client's next request.
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        body = ("hello from python, generation %s worker %s pid %d\n" % (
            os.environ.get("BATON_GENERATION", "0"), os.environ.get("BATON_WORKER", "0"),
            os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # one line per request would drown batond's log


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True


def main():
    delay = float(os.environ.get("GUIDE_START_DELAY", "0"))
    if delay:
        time.sleep(delay)
    sock = inherited_listener()
    server = Server(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()  # the unbound socket the constructor made
    server.socket = sock
    # SIGTERM is taken by sigwait below, in this thread only: blocked before any
    # thread starts, so that every thread inherits the mask.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    notify("READY=1")
    signal.sigwait(stop_signals)
    notify("STOPPING=1")
    server.shutdown()  # serve_forever returns: no more accept()
    # Closes our copy of the listener (close(), never shutdown(): batond and the
    # next generation share the socket) and joins the requests in flight.
    server.server_close()
    serving.join()


if __name__ == "__main__":
    main()
