#!/usr/bin/env python3
"""SMTP receive benchmark: N concurrent clients each send M messages to a
local mailbox over port 25 (one connection per client, pipelined
MAIL/RCPT/DATA), then prints messages per second and pochtad's peak RSS.

Usage: bench/smtp_bench.py [--clients 20] [--messages 50] [--size 4096]
                           [--build build]
It creates a throw-away instance with `pochta init` on ports 39000+, so it
measures the real daemon with its real durability (every 250 = fsync'd).
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--clients", type=int, default=20)
ap.add_argument("--messages", type=int, default=50)
ap.add_argument("--size", type=int, default=4096)
ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
ap.add_argument("--port-base", type=int, default=39000)
args = ap.parse_args()

build = os.path.abspath(args.build)
d = tempfile.mkdtemp(prefix="pochta-bench-")
os.chmod(d, 0o755)
inst = os.path.join(d, "i")
subprocess.run([build + "/pochta", "init", inst, "--hostname", "mx.bench.test", "--domain",
                "bench.test", "--port-base", str(args.port_base)], check=True, stdout=subprocess.DEVNULL)
conf = inst + "/pochta.conf"
with open(conf, "a") as f:
    f.write("max_connections_per_ip = 1000\nlog_level = warn\n")
for i in range(10):
    subprocess.run([build + "/pochta", "-c", conf, "user", "add", "u%d@bench.test" % i,
                    "--password-stdin"], input=b"pw\n", check=True)
daemon = subprocess.Popen([build + "/pochtad", "-c", conf], stderr=subprocess.DEVNULL)
port = args.port_base + 25
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", port)).close()
        break
    except OSError:
        time.sleep(0.05)

line = b"x" * 70 + b"\r\n"
body = b"Subject: bench\r\n\r\n" + line * max(1, args.size // len(line))
peak_rss = 0
errors = []


def rss():
    with open("/proc/%d/status" % daemon.pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def client(n):
    try:
        s = socket.create_connection(("127.0.0.1", port))
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
        for m in range(args.messages):
            s.sendall(b"MAIL FROM:<b@x.test>\r\nRCPT TO:<u%d@bench.test>\r\nDATA\r\n" % (n % 10))
            for _ in range(3):
                r = reply()
            s.sendall(body + b".\r\n")
            r = reply()
            if not r.startswith(b"250"):
                errors.append(r)
        s.sendall(b"QUIT\r\n")
        s.close()
    except Exception as e:  # noqa: BLE001 - report, don't hide
        errors.append(repr(e))


threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
t0 = time.time()
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    peak_rss = max(peak_rss, rss())
    time.sleep(0.05)
elapsed = time.time() - t0
total = args.clients * args.messages
daemon.terminate()
daemon.wait()
shutil.rmtree(d, ignore_errors=True)
print("clients=%d messages=%d size=%d bytes" % (args.clients, total, len(body)))
print("elapsed=%.2f s  rate=%.0f msg/s  peak_rss=%d KiB  errors=%d"
      % (elapsed, total / elapsed, peak_rss, len(errors)))
if errors:
    print("first error:", errors[0])
    sys.exit(1)
