#!/usr/bin/env python3
"""Relay benchmark: submission -> queue -> remote delivery, end to end.

Two pochta instances on loopback and a test DNS server (the one in
tests/integration/test_outbound.py): the sender hosts sender.test and
accepts N client threads submitting on its port 587 (AUTH PLAIN; plaintext
on loopback unless --starttls), each message for a user of bench.test; the
receiver hosts bench.test, which the DNS server's MX points at
127.0.0.1, and the sender's outbound_port is the receiver's port 25.
Every 250 on either side means fsync'd (queue file + index on the sender,
mailbox file + index on the receiver).

Printed: submission rate (until the last 250 on 587), end-to-end rate
(until the receiver has stored every message, counted as files beginning
with Return-Path under its mail/ folder), and both daemons' peak RSS.

  bench/relay.py [--clients 8] [--messages 50] [--size 4096] [--build build]
                 [--port-base 14000] [--starttls] [--target pochta|postfix]
                 [--set KEY=VALUE ...]   (extra sender config lines)

--target postfix puts Debian's Postfix (apt-get install postfix) in the
sender's place, on 127.0.0.1:PORT_BASE+587 with SASL-less submission
(mynetworks = 127.0.0.0/8) and relayhost = [127.0.0.1]:receiver-port, so
the same clients and the same pochta receiver measure Postfix's queue.
"""
import argparse
import os
import shutil
import subprocess
import sys
import threading
import time

import benchlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
try:
    from test_outbound import DNSServer  # noqa: E402  (the tests' tiny DNS server)
except ImportError as e:
    raise SystemExit("bench/relay.py uses the DNS server of tests/integration/test_outbound.py, "
                     "which needs pytest: %s" % e)

SENDER_DOMAIN = "sender.test"
SENDER_USER = "relay@" + SENDER_DOMAIN
PASSWORD = "relay-Secret-1"
RECEIVER_USERS = 10


class SenderInstance(benchlib.PochtaInstance):
    """The submitting pochta: `pochta init` for sender.test with every DNS
    query sent to the test DNS server and outbound SMTP to the receiver."""

    def __init__(self, build, port_base, dns_port, outbound_port, extra_conf=()):
        super().__init__(build=build, port_base=port_base, users=[SENDER_USER], password=PASSWORD,
                         domain=SENDER_DOMAIN, wait_ports=(587,),
                         init_args=["--dns", "127.0.0.1:%d" % dns_port, "--outbound-port", str(outbound_port)],
                         extra_conf=["auth_allow_plaintext = yes", "queue_retry_min = 1s",
                                     "queue_retry_max = 2s"] + list(extra_conf))

    def queue_empty(self):
        r = subprocess.run([self._bin("pochta"), "-c", self.conf, "queue", "list"], capture_output=True, timeout=60)
        return b"queue is empty" in r.stdout


class PostfixSender:
    """Debian's Postfix as the submitting MTA: a private instance (its own
    config_directory, queue_directory and data_directory under /tmp) on
    127.0.0.1:PORT, relaying everything to the receiver.  Durability is
    Postfix's default (queue files fsync'd before the 250)."""

    DIR = "/tmp/pochta-bench-postfix"     # fixed: named in the system's alternate_config_directories

    def __init__(self, port, relay_port):
        if not shutil.which("postfix") and not os.path.exists("/usr/sbin/postfix"):
            raise SystemExit("postfix is not installed (DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)")
        self.tmp = self.DIR
        if os.path.exists(os.path.join(self.tmp, "spool", "pid", "master.pid")):
            subprocess.run(["postfix", "-c", os.path.join(self.tmp, "etc"), "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.conf = os.path.join(self.tmp, "etc")
        self.queue = os.path.join(self.tmp, "spool")
        self.data = os.path.join(self.tmp, "lib")
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d)
        os.chmod(self.tmp, 0o755)
        shutil.copy("/etc/postfix/master.cf", self.conf)
        shutil.copy("/etc/postfix/main.cf", self.conf)
        # postqueue and postdrop (set-gid) accept -c only for directories
        # the default main.cf lists.
        alt = subprocess.run(["postconf", "-h", "alternate_config_directories"], capture_output=True,
                             text=True, timeout=60).stdout.strip()
        if self.conf not in alt.replace(",", " ").split():
            subprocess.run(["postconf", "-e", "alternate_config_directories = %s %s" % (alt, self.conf)],
                           check=True, timeout=60)
        settings = {
            "queue_directory": self.queue, "data_directory": self.data,
            "myhostname": "mx.postfix-sender.test", "mydomain": "postfix-sender.test", "mydestination": "",
            "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
            "relayhost": "[127.0.0.1]:%d" % relay_port, "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none", "maillog_file": os.path.join(self.tmp, "maillog"),
            "maillog_file_prefixes": self.tmp, "alias_maps": "", "alias_database": "",
            "local_recipient_maps": "", "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "default_destination_concurrency_limit": "20", "smtp_destination_concurrency_limit": "20",
            "syslog_name": "postfix-bench",
        }
        self._postconf(["-e"] + ["%s=%s" % kv for kv in settings.items()])
        # The smtpd on our port instead of 25; no other inet services.
        master = open(os.path.join(self.conf, "master.cf")).read().splitlines()
        out = []
        for l in master:
            f = l.split()
            if f[:2] == ["smtp", "inet"]:
                l = "127.0.0.1:%d inet n - y - - smtpd" % port
            elif len(f) > 1 and f[1] == "inet":
                continue
            out.append(l)
        open(os.path.join(self.conf, "master.cf"), "w").write("\n".join(out) + "\n")
        self._postfix("post-install", "create-missing")
        subprocess.run(["chown", "-R", "postfix", self.data], check=True, timeout=60)
        self._postfix("start")
        if not benchlib.wait_port(port, 20):
            raise SystemExit("postfix did not listen on %d; see %s/maillog" % (port, self.tmp))
        self.port = port

    def _postconf(self, args):
        subprocess.run(["postconf", "-c", self.conf] + args, check=True, timeout=60)

    def _postfix(self, *what):
        r = subprocess.run(["postfix", "-c", self.conf] + list(what), timeout=60, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("postfix %s failed: %s" % (what, (r.stdout + r.stderr).decode(errors="replace")))

    @property
    def pid(self):
        with open(os.path.join(self.queue, "pid", "master.pid")) as f:
            return int(f.read().strip())

    def queue_empty(self):
        r = subprocess.run(["postqueue", "-c", self.conf, "-p"], capture_output=True, timeout=60)
        return b"Mail queue is empty" in r.stdout

    def close(self):
        try:
            self._postfix("stop")
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def client(port, idx, count, body, auth, starttls, errors, done_at):
    try:
        c = benchlib.SmtpClient(port, timeout=120)
        c.cmd(b"EHLO bench.client")
        if starttls:
            c.starttls(benchlib_tls())
            c.cmd(b"EHLO bench.client")
        if auth:
            c.auth_plain(SENDER_USER, PASSWORD)
        for k in range(count):
            r = c.send(SENDER_USER, benchlib.user_name((idx + k) % RECEIVER_USERS), body)
            if not r.startswith(b"250"):
                errors.append(r)
        c.close()
    except Exception as e:  # noqa: BLE001 - report, don't hide
        errors.append(repr(e))
    done_at.append(time.monotonic())


def benchlib_tls():
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def count_stored(mail_dir, seen):
    """Files under mail_dir that begin with Return-Path (stored messages);
    seen caches paths already counted.  A path that vanished was a file
    being written under a temporary name: it no longer counts."""
    for p in [p for p in seen if not os.path.exists(p)]:
        seen.discard(p)
    for dirpath, _dirs, files in os.walk(mail_dir):
        for fn in files:
            p = os.path.join(dirpath, fn)
            if p in seen or fn.endswith(("-wal", "-shm", "-journal", ".db")):
                continue
            try:
                with open(p, "rb") as fh:
                    if fh.read(12) == b"Return-Path:":
                        seen.add(p)
            except OSError:
                pass
    return len(seen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--messages", type=int, default=50, help="messages per client")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--build", default=benchlib.DEFAULT_BUILD)
    ap.add_argument("--port-base", type=int, default=14000)
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--target", choices=("pochta", "postfix"), default="pochta")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra line for the sending pochta's config (e.g. outbound_max_per_domain=20)")
    args = ap.parse_args()

    total = args.clients * args.messages
    body = benchlib.make_body(args.size, "relay")
    dns = DNSServer()
    dns.add_mx(benchlib.DOMAIN, 10, "mx." + benchlib.DOMAIN)
    dns.add_a("mx." + benchlib.DOMAIN, "127.0.0.1")
    recv_base = args.port_base + 1000
    receiver = sender = None
    try:
        receiver = benchlib.PochtaInstance(build=args.build, port_base=recv_base, users=RECEIVER_USERS)
        if args.target == "pochta":
            sender = SenderInstance(args.build, args.port_base, dns.port, recv_base + 25,
                                    extra_conf=[kv.replace("=", " = ", 1) for kv in args.set])
            port, auth = args.port_base + 587, True
        else:
            sender = PostfixSender(args.port_base + 587, recv_base + 25)
            port, auth = sender.port, False
        mail_dir = os.path.join(receiver.dir, "data", "mail")
        errors, done_at, seen = [], [], set()
        with benchlib.RssSampler(sender.pid, tree=args.target == "postfix") as rs_s, \
                benchlib.RssSampler(receiver.pid) as rs_r:
            t0 = time.monotonic()
            threads = [threading.Thread(target=client, args=(port, i, args.messages, body, auth, args.starttls,
                                                              errors, done_at))
                       for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.timeout)
            t_sub = max(done_at) if done_at else time.monotonic()
            deadline = t0 + args.timeout
            n = count_stored(mail_dir, seen)
            while n < total and time.monotonic() < deadline:
                time.sleep(0.05)
                n = count_stored(mail_dir, seen)
            t_end = time.monotonic()
        if errors:
            print("errors (%d): %s" % (len(errors), errors[:5]))
        print("machine: %s" % benchlib.machine_info())
        print("target=%s clients=%d messages=%d size=%d starttls=%s" % (
            args.target, args.clients, total, len(body), args.starttls))
        print("submission: %d messages in %.2f s = %.0f msg/s" % (total, t_sub - t0, total / (t_sub - t0)))
        print("end-to-end: %d/%d stored by the receiver in %.2f s = %.0f msg/s" % (
            n, total, t_end - t0, n / (t_end - t0)))
        print("peak RSS: sender %.1f MiB%s, receiver %.1f MiB" % (
            rs_s.peak_kib / 1024, " (all Postfix processes)" if args.target == "postfix" else "",
            rs_r.peak_kib / 1024))
        time.sleep(0.5)
        if not sender.queue_empty():
            print("note: the sender's queue is not empty at the end")
        if n < total:
            sys.exit(1)
    finally:
        if sender:
            sender.close()
        if receiver:
            receiver.close()
        dns.close()


if __name__ == "__main__":
    main()
