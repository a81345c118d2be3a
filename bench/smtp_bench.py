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
        c = benchlib.SmtpClient(port)
        c.cmd(b"EHLO bench")
        for _ in range(args.messages):
            r = c.send("b@x.test", benchlib.user_name(n % USERS), body)
            if not r.startswith(b"250"):
                errors.append(r)
        c.close()
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
