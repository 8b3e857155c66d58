#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_proto: one file per valid message. Byte 0 is the
number of fds to attach, then the datagram: the 16-byte header (host order,
little-endian here) and the payload. Run from this directory after a protocol
change: ./gen_corpus.py"""
import os
import struct

V = 1
HELLO, ERROR, CTL_STATUS, CTL_UPGRADE, CTL_STOP, CTL_REPLY, LISTENER_GET, \
    LISTENER, DRAIN, CONN, CONN_DONE, PARK = range(1, 13)


def msg(typ, payload=b"", nfds=0, flags=0, req=0):
    hdr = struct.pack("<BBHIIHH", V, typ, flags, len(payload), req, nfds, 0)
    return bytes([nfds]) + hdr + payload


def record(name=b"", tag=b"", addr=b"", state=b"", flags=0):
    fixed = struct.pack("<HBBHH", flags, len(name), len(tag), len(addr), len(state))
    body = fixed + name + tag + addr + state
    return body + b"\0" * (-len(body) % 4)


def sockaddr_in(port):
    return struct.pack("<H", 2) + struct.pack(">H", port) + bytes([127, 0, 0, 1]) + b"\0" * 8


seeds = {
    "hello": msg(HELLO, b"libbaton 0.1.0 pid 42"),
    "error": msg(ERROR, struct.pack("<i", 2) + b"no such listener", req=3),
    "ctl_status_json": msg(CTL_STATUS, flags=1),
    "ctl_upgrade": msg(CTL_UPGRADE, b"web"),
    "ctl_stop": msg(CTL_STOP),
    "ctl_reply": msg(CTL_REPLY, struct.pack("<i", 0) + b"upgraded web in 212 ms"),
    "listener_get": msg(LISTENER_GET, b"http", req=1),
    "listener": msg(LISTENER, b"http", nfds=1, req=1),
    "drain": msg(DRAIN),
    "conn_one": msg(CONN, record(b"http", addr=sockaddr_in(40000)), nfds=1),
    "conn_three": msg(CONN, record(b"http", addr=sockaddr_in(1)) +
                      record(b"ws", b"user-7", sockaddr_in(2), b"cursor=9", flags=1) +
                      record(b"admin"), nfds=3),
    "conn_done": msg(CONN_DONE, struct.pack("<I", 5)),
    "park": msg(PARK, record(b"ws", b"user-7", sockaddr_in(3), b"state"), nfds=1),
}
os.makedirs("corpus", exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join("corpus", name), "wb") as f:
        f.write(data)
