#!/usr/bin/env python3
"""IMAP benchmark, against pochta or (for comparison) Dovecot.

Two runs, both driven by the C load generator bench_imap_load (built by
meson from bench/imap_load.c):

1. load: --clients concurrent clients for --seconds, each logging in,
   SELECTing INBOX and running a mix of FETCH (1:* list with ENVELOPE,
   header fields, whole bodies), STORE +FLAGS (\\Seen), SEARCH (UNSEEN /
   FROM / SUBJECT), APPEND of a small message that is later marked \\Deleted
   and removed with UID EXPUNGE, one command at a time, and LOGOUT plus a
   new login every --per-session commands.  Commands/s and latency p50/p99
   overall and per command; every reply is checked (errors must be 0).
2. idle: --idle sessions spread over --idle-users users, each in IDLE on
   INBOX.  The server's memory before and after (RSS per idle session), its
   CPU use while they idle, then the time from delivering one message to a
   user until that user's idling sessions see "* n EXISTS".

  bench/imap_bench.py                       # pochta from ./build
  bench/imap_bench.py --target dovecot      # Debian's dovecot-imapd

pochta: a throw-away instance from `pochta init` on ports --port-base+N
(plaintext_auth_loopback = yes, connection limits raised for --idle), mail
delivered over SMTP.  dovecot: a private instance from a generated
dovecot.conf (127.0.0.1:--port-base+1143, passwd-file with the same
yescrypt hashing, maildir written directly, new mail for the idle run
delivered with dovecot-lda); needs root.
"""
import argparse
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import benchlib
from benchlib import user_name

# Message sizes of the filled mailboxes, in turn: mostly small, a few large.
SIZES = (1500, 2500, 4000, 6000, 9000, 15000, 30000, 80000)


def message(u, m):
    return benchlib.make_body(SIZES[m % len(SIZES)], "%d.%d" % (u, m))


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_ticks(pids):
    """CPU time of the live processes pids and of the children they have
    reaped: Dovecot's imap and auth worker processes come and go during a
    run, and a parent's cutime/cstime is where their time ends up."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])     # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            pass
    return total


def memory_kib(pids):
    """(sum of VmRSS, sum of Pss) over pids, in KiB."""
    rss = pss = 0
    for p in pids:
        rss += benchlib._status_kib(p, "VmRSS:")
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return rss, pss


# --- pochta -----------------------------------------------------------------------

class PochtaTarget:
    name = "pochta"
    tree = False

    def __init__(self, args):
        conns = args.idle + 500
        conf = ["plaintext_auth_loopback = yes",
                "max_connections = %d" % conns,
                "max_connections_per_ip = %d" % conns,
                "imap_max_connections_per_user = %d" % conns] + list(args.conf)
        self.args = args
        # An IMAP session holds its socket only (store handles are borrowed
        # per command from a bounded cache), but pochtad sizes its limit for
        # POP3 sessions, which keep their store open, and cannot raise the
        # hard limit in a container: it inherits this soft limit (up to the
        # hard one) when that is higher than what it sets itself.
        raise_nofile(6 * conns + 4096)
        self.inst = benchlib.PochtaInstance(args.build, args.port_base,
                                            users=max(args.users, args.idle_users),
                                            extra_conf=conf, wait_ports=(25, 143))
        self.port = args.port_base + 143
        self.pid = self.inst.pid

    def pids(self):
        return [self.pid]

    def fill(self, args):
        def one(u):
            benchlib.smtp_send(args.port_base + 25, user_name(u),
                               [message(u, m) for m in range(args.messages)])
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(one, range(args.users)))

    def deliver(self, u):
        benchlib.smtp_send(self.args.port_base + 25, user_name(u), [message(u, 999999)])

    def log(self):
        return self.inst.stderr()

    def close(self):
        self.inst.close()


# --- dovecot ------------------------------------------------------------------------

IMAP_CONF = """\
protocol imap {{{{
  mail_max_userip_connections = {conns}
}}}}
service imap-login {{{{
  inet_listener imap {{{{
    address = 127.0.0.1
    port = {{port}}
  }}}}
  inet_listener imaps {{{{
    port = 0
  }}}}
  # one login process per connection being set up (default limit 100)
  process_limit = {logins}
}}}}
service imap {{{{
  process_limit = {conns}
}}}}
"""


class DovecotTarget:
    name = "dovecot"
    tree = True

    def __init__(self, args):
        raise_nofile(2 * args.idle + 4096)
        conf = IMAP_CONF.format(conns=args.idle + 500, logins=max(args.window, args.clients) + 100)
        self.d = benchlib.DovecotInstance("imap", args.port_base + 1143, max(args.users, args.idle_users), conf)
        self.port, self.pid, self.conf = self.d.port, self.d.pid, self.d.conf

    def pids(self):
        return benchlib.process_tree(self.pid)

    def log(self):
        return self.d.log()

    def fill(self, args):
        """Maildirs written directly, with the trace lines a delivery adds,
        so messages have about the size they have in pochta."""
        for u in range(max(args.users, args.idle_users)):
            msgs = []
            for m in range(args.messages if u < args.users else 0):
                trace = ("Return-Path: <bench@remote.test>\r\nReceived: from bench.client ([127.0.0.1])\r\n"
                         "\tby mx.bench.test with ESMTP id B%08d\r\n\tfor <%s>;\r\n"
                         "\tMon, 23 Nov 2026 12:00:00 +0000\r\n" % (u * 100000 + m, user_name(u)))
                msgs.append(trace.encode() + message(u, m))
            self.d.write_maildir(u, msgs)

    def deliver(self, u):
        """What an MTA would do: hand the message to dovecot-lda."""
        subprocess.run(["/usr/lib/dovecot/dovecot-lda", "-c", self.conf, "-d", user_name(u),
                        "-f", "bench@remote.test"], input=message(u, 999999).replace(b"\r\n", b"\n"),
                       check=True, timeout=30)

    def close(self):
        self.d.close()


# --- runs -----------------------------------------------------------------------------

def load_run(gen, target, args):
    cmd = [gen, "load", str(target.port), "-c", str(args.clients), "-t", str(args.seconds),
           "-k", str(args.per_session), "-u", str(args.users), "-b", str(args.messages)]
    pids = target.pids()
    c0 = cpu_ticks(pids)
    with benchlib.RssSampler(target.pid, tree=target.tree, interval=0.5) as rss:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=args.seconds + 120)
    cpu = (cpu_ticks(target.pids()) - c0) / os.sysconf("SC_CLK_TCK")
    print(r.stdout.decode(errors="replace").rstrip())
    print("server CPU during the load run: %.1f s (%.0f%% of one core); peak RSS %d KiB%s"
          % (cpu, 100 * cpu / args.seconds, rss.peak_kib,
             " (sum over up to %d processes)" % rss.procs_peak if target.tree else ""))
    return r.returncode == 0


def idle_run(gen, target, args):
    rss0, pss0 = memory_kib(target.pids())
    raise_nofile(args.idle + 4096)
    cmd = [gen, "idle", str(target.port), "-m", str(args.idle), "-u", str(args.idle_users),
           "-s", str(args.sources), "-w", str(args.window), "-T", str(args.limit)]
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ok = False
    try:
        ready = p.stdout.readline().strip()     # bounded by the generator's -T
        if not ready.startswith("READY"):
            print("idle setup failed: %r" % ready)
            return False
        print("idle: %s sessions in IDLE after %.1f s" % (ready.split()[1], time.monotonic() - t))
        time.sleep(2)
        pids = target.pids()
        rss1, pss1 = memory_kib(pids)
        n = args.idle
        print("server memory: RSS %d KiB before, %d KiB with %d idle sessions: %.1f KiB per session"
              % (rss0, rss1, n, (rss1 - rss0) / n))
        if not target.tree:
            print("  of which RssAnon %d KiB, RssFile %d KiB, RssShmem %d KiB"
                  % tuple(benchlib._status_kib(target.pid, k) for k in ("RssAnon:", "RssFile:", "RssShmem:")))
        if target.tree:
            print("  (sum over %d processes; proportional set size (Pss) %d -> %d KiB: %.1f KiB per session)"
                  % (len(pids), pss0, pss1, (pss1 - pss0) / n))
        c0 = cpu_ticks(pids)
        time.sleep(args.cpu_seconds)
        cpu = (cpu_ticks(target.pids()) - c0) / os.sysconf("SC_CLK_TCK")
        print("server CPU while idle: %.2f s over %d s (%.2f%% of one core)"
              % (cpu, args.cpu_seconds, 100 * cpu / args.cpu_seconds))
        u = 0
        t0 = time.monotonic()
        target.deliver(u)
        t1 = time.monotonic()
        p.stdin.write("report %d %d\n" % (u, args.notify_wait))
        p.stdin.flush()
        rep = p.stdout.readline().split()
        f = dict(x.split("=", 1) for x in rep[1:])
        if int(f.get("seen", 0)) == 0:
            print("new mail: none of %s sessions of %s saw EXISTS within %d s"
                  % (f.get("sessions"), user_name(u), args.notify_wait))
        else:
            ms = {k: (float(f[k]) - t0) * 1000 for k in ("first", "p50", "p99", "last")}
            print("new mail to %s: delivery took %.1f ms; %s of %s idle sessions saw EXISTS, after "
                  "first %.1f / p50 %.1f / p99 %.1f / last %.1f ms (from the start of delivery)"
                  % (user_name(u), (t1 - t0) * 1000, f["seen"], f["sessions"], ms["first"], ms["p50"],
                     ms["p99"], ms["last"]))
            ok = f["seen"] == f["sessions"]
        p.stdin.write("quit\n")
        p.stdin.flush()
        bye = p.stdout.readline().strip()
        print("idle generator: %s" % bye)
        ok = ok and " errors=0" in " " + bye
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=("pochta", "dovecot"), default="pochta")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients in the load run (default 50)")
    ap.add_argument("--seconds", type=int, default=30, help="length of the load run (default 30)")
    ap.add_argument("--per-session", type=int, default=100,
                    help="commands before LOGOUT and a new login (default 100)")
    ap.add_argument("--users", type=int, default=10, help="mailboxes of the load run (default 10)")
    ap.add_argument("--messages", type=int, default=50, help="messages per mailbox (default 50)")
    ap.add_argument("--idle", type=int, default=10000, help="idle sessions (default 10000; 0 skips)")
    ap.add_argument("--idle-users", type=int, default=100, help="users the idle sessions spread over (default 100)")
    ap.add_argument("--sources", type=int, default=1,
                    help="loopback source addresses 127.0.0.1..N (default 1; pochta's plaintext_auth_loopback"
                         " allows 127.0.0.1 only)")
    ap.add_argument("--window", type=int, default=200, help="idle sessions being set up at once (default 200)")
    ap.add_argument("--cpu-seconds", type=int, default=10, help="how long idle CPU is measured (default 10)")
    ap.add_argument("--notify-wait", type=int, default=40,
                    help="seconds to wait for EXISTS after the delivery (default 40)")
    ap.add_argument("--no-load", action="store_true", help="skip the load run")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra pochta.conf line (repeatable; pochta only), e.g. worker_threads=8")
    ap.add_argument("--show-log", action="store_true", help="print the end of the server's log")
    ap.add_argument("--build", default=benchlib.DEFAULT_BUILD)
    ap.add_argument("--port-base", type=int, default=39700)
    ap.add_argument("--limit", type=int, default=900, help="seconds the idle set-up may take (default 900)")
    args = ap.parse_args()
    if min(args.clients, args.seconds, args.users, args.messages, args.idle_users, args.sources) < 1 \
            or args.per_session < 2 or args.idle < 0:
        ap.error("counts must be positive")
    gen = os.path.join(os.path.abspath(args.build), "bench_imap_load")
    if not os.access(gen, os.X_OK):
        raise SystemExit("%s is missing: build first (ninja -C build) or pass --build" % gen)

    print("target=%s  %s" % (args.target, benchlib.machine_info()))
    target = (PochtaTarget if args.target == "pochta" else DovecotTarget)(args)
    ok = True
    try:
        t = time.monotonic()
        target.fill(args)
        print("mailboxes=%d x %d messages of %d..%d bytes (filled in %.1f s)"
              % (args.users, args.messages, min(SIZES), max(SIZES), time.monotonic() - t))
        if not args.no_load:
            ok = load_run(gen, target, args) and ok
        if args.idle:
            ok = idle_run(gen, target, args) and ok
    finally:
        log = target.log()
        target.close()
    if args.show_log and log.strip():
        print("--- server log (last lines) ---\n" + log.rstrip())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
