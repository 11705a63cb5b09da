#!/usr/bin/env python3
"""Hostile clients for the end-to-end tests (loopback only, bounded in count and time).

  flood.py slowloris PORT N SECONDS
      N connections that send a request head a line at a time, one line a second, never
      finishing it; a connection the server closes is opened again.
  flood.py wrongpass PORT N SECONDS CAFILE
      N threads that keep sending requests over TLS with a wrong basic-auth password.

The clients connect from 127.0.0.2, another loopback address than the test's own
scrapes (127.0.0.1), as an attacker and Prometheus are different hosts.

Prints "ready" once the connections are open (slowloris) or the threads started, then runs
for SECONDS and prints what it did."""

import base64
import resource
import socket
import ssl
import sys
import threading
import time

SOURCE = ("127.0.0.2", 0)


def slowloris(port, n, seconds):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))
    socks, reopened = [], 0

    def open_one():
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=SOURCE)
        s.setblocking(False)
        s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        return s

    for _ in range(n):
        socks.append(open_one())
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, s in enumerate(socks):
            try:
                s.send(b"X-a: b\r\n")
                if s.recv(1) == b"":
                    raise OSError("closed")
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                reopened += 1
                try:
                    socks[i] = open_one()
                except OSError:
                    pass
        time.sleep(1)
    print(f"slowloris: {n} connections, {reopened} reopened after the server closed them", flush=True)


def wrongpass(port, n, seconds, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    auth = base64.b64encode(b"prometheus:wrong").decode()
    request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n".encode()
    end = time.monotonic() + seconds
    counts = {"sent": 0, "errors": 0}

    def worker():
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=SOURCE) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                        s.sendall(request)
                        while s.recv(65536):
                            pass
                counts["sent"] += 1
            except OSError:
                counts["errors"] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join(timeout=max(0.0, end - time.monotonic()) + 35)
    print(f"wrongpass: {counts['sent']} requests, {counts['errors']} errors", flush=True)


if __name__ == "__main__":
    mode, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    if mode == "slowloris":
        slowloris(port, n, seconds)
    elif mode == "wrongpass":
        wrongpass(port, n, seconds, sys.argv[5])
    else:
        sys.exit(f"unknown mode {mode}")
