#!/usr/bin/env python3
"""SMTP receive benchmark: N concurrent clients each send M messages to a
local mailbox over port 25 (one connection per client, pipelined
MAIL/RCPT/DATA), then prints messages per second and pochtad's peak RSS.

Usage: bench/smtp_bench.py [--clients 20] [--messages 50] [--size 4096]
                           [--build build] [--port-base 39000]
It creates a throw-away instance with `pochta init` on ports 39000+, so it
measures the real daemon with its real durability (every 250 = fsync'd).
"""
import argparse
import socket
import sys
import threading
import time

import benchlib

ap = argparse.ArgumentParser()
ap.add_argument("--clients", type=int, default=20)
ap.add_argument("--messages", type=int, default=50)
ap.add_argument("--size", type=int, default=4096)
ap.add_argument("--build", default=benchlib.DEFAULT_BUILD)
ap.add_argument("--port-base", type=int, default=39000)
args = ap.parse_args()

USERS = 10
line = b"x" * 70 + b"\r\n"
body = b"Subject: bench\r\n\r\n" + line * max(1, args.size // len(line))
errors = []


def client(port, n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        f = s.makefile("rb")

        def reply():
            while True:
                l = f.readline()
                if not l:
                    raise EOFError("closed")
                if l[3:4] != b"-":
                    return l

        reply()
        s.sendall(b"EHLO bench\r\n")
        reply()
        for _ in range(args.messages):
            s.sendall(b"MAIL FROM:<b@x.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                      % benchlib.user_name(n % USERS).encode())
            for _ in range(3):
                reply()
            s.sendall(body + b".\r\n")
            r = reply()
            if not r.startswith(b"250"):
                errors.append(r)
        s.sendall(b"QUIT\r\n")
        s.close()
    except Exception as e:  # noqa: BLE001 - report, don't hide
        errors.append(repr(e))


with benchlib.PochtaInstance(args.build, args.port_base, users=USERS) as inst:
    port = args.port_base + 25
    threads = [threading.Thread(target=client, args=(port, i)) for i in range(args.clients)]
    with benchlib.RssSampler(inst.pid) as rss:
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0

total = args.clients * args.messages
print("clients=%d messages=%d size=%d bytes" % (args.clients, total, len(body)))
print("elapsed=%.2f s  rate=%.0f msg/s  peak_rss=%d KiB  errors=%d"
      % (elapsed, total / elapsed, rss.peak_kib, len(errors)))
if errors:
    print("first error:", errors[0])
    sys.exit(1)
