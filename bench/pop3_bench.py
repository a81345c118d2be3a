#!/usr/bin/env python3
"""POP3 retrieval benchmark, against pochta or (for comparison) Dovecot.

Fills --users mailboxes with --messages messages of about --size bytes each,
then --clients concurrent client processes log in (USER/PASS in plaintext
over loopback), STAT, LIST, RETR every message and QUIT, each client
working through its own share of the mailboxes (so no two sessions want
the same maildrop lock), for --rounds rounds after --warmup untimed ones.
Commands are pipelined when the server announces PIPELINING in CAPA (RFC
2449).  No DELE: the mailboxes stay as they are and runs are repeatable.
A second phase measures logins alone (USER/PASS/STAT/QUIT).

Prints messages retrieved per second, MB/s, logins per second and the
server's peak RSS (the sum over its process tree for Dovecot, which runs
a process per session).

  bench/pop3_bench.py                       # pochta from ./build
  bench/pop3_bench.py --target dovecot      # Debian's dovecot-pop3d

pochta: a throw-away instance from `pochta init` on ports --port-base+N
(plaintext_auth_loopback = yes), mail delivered over SMTP.
dovecot: a private instance from a generated dovecot.conf in a temporary
directory (listening on 127.0.0.1:--port-base+1110, passwd-file with the
same users and the same yescrypt password hashing as pochta, maildir
written directly, Dovecot's default fsync and process settings); run as
root, since Dovecot switches to the mail user "nobody".
"""
import argparse
import multiprocessing
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import benchlib
from benchlib import PASSWORD, user_name

IO_TIMEOUT = 30
NO_PIPELINING = [False]     # set from --no-pipelining before the clients fork


class PopError(Exception):
    pass


class Pop:
    """A minimal POP3 client on a raw socket, with a bytearray buffer so that
    large multi-line replies are parsed without quadratic copying."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.buf = bytearray()
        self.status()

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise PopError("connection closed by server")
        self.buf += chunk

    def status(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                break
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        if not line.startswith(b"+OK"):
            raise PopError("server said %r" % line[:200])
        return line

    def multi(self):
        """Body of a multi-line reply in wire form (still dot-stuffed),
        without the terminating line."""
        if self.buf.startswith(b".\r\n"):
            del self.buf[:3]
            return b""
        start = 0
        while True:
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                body = bytes(self.buf[:i + 2])
                del self.buf[:i + 5]
                return body
            start = max(0, len(self.buf) - 4)
            self._fill()

    def send(self, *cmds):
        self.sock.sendall(b"".join(c.encode() + b"\r\n" for c in cmds))


def unstuffed_len(wire):
    """Octet count of a multi-line body after undoing byte-stuffing."""
    return len(wire) - wire.count(b"\r\n..") - (1 if wire.startswith(b"..") else 0)


def session(port, user, retrieve, st):
    """One POP3 session; adds to the counters in st."""
    p = Pop(port)
    try:
        p.send("CAPA")
        p.status()
        caps = p.multi().split(b"\r\n")
        pipelining = b"PIPELINING" in caps and not NO_PIPELINING[0]
        if pipelining:
            p.send("USER " + user, "PASS " + PASSWORD, "STAT", "LIST" if retrieve else "QUIT")
            p.status()
            p.status()
        else:
            p.send("USER " + user)
            p.status()
            p.send("PASS " + PASSWORD)
            p.status()
            p.send("STAT")
        st["logins"] += 1
        n = int(p.status().split()[1])
        if not retrieve:
            if not pipelining:
                p.send("QUIT")
            p.status()
            return
        if not pipelining:
            p.send("LIST")
        p.status()
        sizes = [int(l.split()[1]) for l in p.multi().split(b"\r\n") if l]
        if len(sizes) != n:
            raise PopError("LIST has %d lines, STAT said %d" % (len(sizes), n))
        if pipelining:
            p.send(*["RETR %d" % i for i in range(1, n + 1)], "QUIT")
        for i, size in enumerate(sizes, 1):
            if not pipelining:
                p.send("RETR %d" % i)
            p.status()
            got = unstuffed_len(p.multi())
            if got != size:
                raise PopError("%s RETR %d: %d octets, LIST said %d" % (user, i, got, size))
            st["messages"] += 1
            st["bytes"] += size
        if not pipelining:
            p.send("QUIT")
        p.status()
        st["pipelined"] = pipelining
    finally:
        p.close()


def client(port, users, rounds, retrieve, go, results):
    st = {"logins": 0, "messages": 0, "bytes": 0, "errors": 0, "first_error": None, "pipelined": False}
    go.wait(60)
    for _ in range(rounds):
        for u in users:
            try:
                session(port, u, retrieve, st)
            except (OSError, PopError, ValueError, IndexError) as e:
                st["errors"] += 1
                st["first_error"] = st["first_error"] or "%s: %r" % (u, e)
    results.put(st)


def run_phase(port, users, clients, rounds, retrieve, limit):
    """Start `clients` processes, each with its share of `users`; return
    (summed counters, elapsed seconds).  Bounded by `limit` seconds."""
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    results = ctx.Queue()
    shares = [users[i::clients] for i in range(clients)]
    procs = [ctx.Process(target=client, args=(port, s, rounds, retrieve, go, results))
             for s in shares if s]
    for pr in procs:
        pr.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    go.set()
    total = {"logins": 0, "messages": 0, "bytes": 0, "errors": 0, "first_error": None, "pipelined": False}
    deadline = t0 + limit
    got = 0
    while got < len(procs):
        try:
            st = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:       # queue.Empty: a client is stuck
            break
        got += 1
        for k in ("logins", "messages", "bytes", "errors"):
            total[k] += st[k]
        total["first_error"] = total["first_error"] or st["first_error"]
        total["pipelined"] = total["pipelined"] or st["pipelined"]
    elapsed = time.monotonic() - t0
    for pr in procs:
        pr.join(timeout=1)
        if pr.is_alive():
            pr.terminate()
            pr.join()
    if got < len(procs):
        raise SystemExit("benchmark phase exceeded %d s: %d of %d clients unfinished"
                         % (limit, len(procs) - got, len(procs)))
    return total, elapsed


def stored_message(u, m, size):
    """What a mailbox holds: the message as delivered plus the trace header
    lines a server adds (written directly into Dovecot's maildir, so both
    servers serve messages of about the same size)."""
    body = benchlib.make_body(size, "%d.%d" % (u, m))
    trace = ("Return-Path: <bench@remote.test>\r\nReceived: from bench.client ([127.0.0.1])\r\n"
             "\tby mx.bench.test with ESMTP id B%08d\r\n\tfor <%s>;\r\n"
             "\tMon, 23 Nov 2026 12:00:00 +0000\r\n" % (u * 100000 + m, user_name(u)))
    return trace.encode() + body


# --- pochta -----------------------------------------------------------------------

class PochtaTarget:
    name = "pochta"

    def __init__(self, args):
        self.inst = benchlib.PochtaInstance(args.build, args.port_base, users=args.users,
                                            extra_conf=["plaintext_auth_loopback = yes"],
                                            wait_ports=(25, 110))
        self.port = args.port_base + 110
        self.pid = self.inst.pid
        self.tree = False

    def fill(self, args):
        def one(u):
            msgs = [benchlib.make_body(args.size, "%d.%d" % (u, m)) for m in range(args.messages)]
            benchlib.smtp_send(args.port_base + 25, user_name(u), msgs)
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(one, range(args.users)))
        # Delivery is synchronous (250 after fsync), but be sure every
        # mailbox is complete before timing.
        deadline = time.monotonic() + 60
        for u in range(args.users):
            while True:
                p = Pop(self.port)
                try:
                    p.send("USER " + user_name(u), "PASS " + PASSWORD, "STAT", "QUIT")
                    p.status()
                    p.status()
                    n = int(p.status().split()[1])
                    p.status()
                finally:
                    p.close()
                if n >= args.messages:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("mailbox %s has %d of %d messages" % (user_name(u), n, args.messages))
                time.sleep(0.1)

    def log(self):
        return self.inst.stderr()

    def close(self):
        self.inst.close()


# --- dovecot ------------------------------------------------------------------------

POP3_CONF = """\
pop3_uidl_format = %08Xu%08Xv
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


class DovecotTarget:
    name = "dovecot"
    tree = True

    def __init__(self, args):
        self.d = benchlib.DovecotInstance("pop3", args.port_base + 1110, args.users, POP3_CONF)
        self.port, self.pid = self.d.port, self.d.pid

    def log(self):
        return self.d.log()

    def fill(self, args):
        """The maildirs written directly (the files already use CRLF)."""
        for u in range(args.users):
            self.d.write_maildir(u, [stored_message(u, m, args.size) for m in range(args.messages)])

    def close(self):
        self.d.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=("pochta", "dovecot"), default="pochta")
    ap.add_argument("--users", type=int, default=20, help="mailboxes (default 20)")
    ap.add_argument("--messages", type=int, default=50, help="messages per mailbox (default 50)")
    ap.add_argument("--size", type=int, default=16384, help="approximate message size (default 16384)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent client processes (default 8)")
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds over every mailbox (default 20)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    ap.add_argument("--login-rounds", type=int, default=10,
                    help="rounds of the login-only phase (default 10; 0 skips it)")
    ap.add_argument("--no-pipelining", action="store_true",
                    help="one command at a time even if the server offers PIPELINING")
    ap.add_argument("--show-log", action="store_true", help="print the end of the server's log")
    ap.add_argument("--build", default=benchlib.DEFAULT_BUILD)
    ap.add_argument("--port-base", type=int, default=39500)
    ap.add_argument("--limit", type=int, default=300, help="seconds any phase may take (default 300)")
    args = ap.parse_args()
    if min(args.users, args.messages, args.size, args.clients) < 1 or args.rounds < 1:
        ap.error("--users, --messages, --size, --clients and --rounds must be positive")
    clients = min(args.clients, args.users)
    NO_PIPELINING[0] = args.no_pipelining

    target = (PochtaTarget if args.target == "pochta" else DovecotTarget)(args)
    try:
        t = time.monotonic()
        target.fill(args)
        fill_s = time.monotonic() - t
        users = [user_name(u) for u in range(args.users)]
        with benchlib.RssSampler(target.pid, tree=target.tree) as rss:
            if args.warmup:
                run_phase(target.port, users, clients, args.warmup, True, args.limit)
            st, elapsed = run_phase(target.port, users, clients, args.rounds, True, args.limit)
            if args.login_rounds:
                lst, lelapsed = run_phase(target.port, users, clients, args.login_rounds, False, args.limit)
    finally:
        log = target.log()
        target.close()

    print("target=%s  %s" % (target.name, benchlib.machine_info()))
    print("mailboxes=%d x %d messages of ~%d bytes (filled in %.1f s), clients=%d, rounds=%d (+%d warm-up),"
          " pipelining=%s" % (args.users, args.messages, args.size, fill_s, clients, args.rounds,
                              args.warmup, "yes" if st["pipelined"] else "no"))
    print("retrieve: %.2f s  %d logins  %.0f msg/s  %.1f MB/s  %.0f logins/s  errors=%d"
          % (elapsed, st["logins"], st["messages"] / elapsed, st["bytes"] / elapsed / 1e6,
             st["logins"] / elapsed, st["errors"]))
    errors = st["errors"]
    first = st["first_error"]
    if args.login_rounds:
        print("login only (USER/PASS/STAT/QUIT): %.2f s  %d logins  %.0f logins/s  errors=%d"
              % (lelapsed, lst["logins"], lst["logins"] / lelapsed, lst["errors"]))
        errors += lst["errors"]
        first = first or lst["first_error"]
    print("peak RSS: %d KiB%s" % (rss.peak_kib, " (sum over up to %d processes)" % rss.procs_peak
                                  if target.tree else ""))
    if args.show_log and log.strip():
        print("--- server log (last lines) ---\n" + log.rstrip())
    if errors:
        print("first error:", first)
        sys.exit(1)


if __name__ == "__main__":
    main()
