#!/usr/bin/env python3
"""Soak test: the real pochtad under hundreds of concurrent SMTP, POP3 (and,
when it answers, IMAP) sessions for a bounded time, a share of them hostile.

Legitimate clients deliver messages with unique ids and SHA-256 checksums,
read some back (and delete some) over POP3 while the load runs, and at the
end every mailbox is read back over POP3.  Hostile clients: slowloris (one
byte every few seconds), oversized lines and messages, garbage bytes,
half-open TLS handshakes on 465/995, AUTH guessing, connection floods from
one address and clients that vanish in the middle of DATA.

Proved at the end (exit 1 if any fails):
  * the daemon never died and exits 0 on SIGTERM (no sanitizer report);
  * its RSS after the hostile clients are gone is near the baseline, and its
    sockets are back to the listeners;
  * every message that got 250 is stored exactly once per recipient (or was
    deleted exactly once by a POP3 client) and its bytes are intact;
    no aborted or refused message is stored;
  * every legitimate session succeeded;
  * the limits bit: the flood got 421 beyond max_connections_per_ip, AUTH
    guessing got 454 after auth_max_failures, oversized input was refused.

Client addresses: everything connects to 127.0.0.1, but from different
loopback source addresses (127.0.x.y), because pochta's connection and
AUTH-failure limits are per client address: legitimate POP3/IMAP from
127.0.0.1 (plaintext logins are allowed only from there), legitimate SMTP
from 127.0.1.1-4, the flood from 127.0.0.3, AUTH guessing from 127.0.0.5,
other hostile clients from 127.0.2.x and 127.0.3.x.

Everything is bounded: one Python process, a fixed number of client tasks
per role, a timeout on every read and on every session."""

import argparse
import asyncio
import collections
import hashlib
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

DOMAIN = benchlib.DOMAIN
PASSWORD = benchlib.PASSWORD
SANITIZER_RE = re.compile(
    r"ERROR: (?:Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer"
    r"|runtime error:|SUMMARY: \w+Sanitizer")

PORTS = {"smtp": 25, "submission": 587, "submissions": 465, "pop3": 110, "pop3s": 995,
         "imap": 143, "imaps": 993}


# --- the instance ----------------------------------------------------------------

class SoakInstance:
    """benchlib.PochtaInstance with the limits the soak measures, plus what
    the soak needs: listener ports by name, the full log, a SIGTERM stop
    that reports the exit status, and --keep."""

    def __init__(self, build, port_base, users, per_ip, max_message_size, keep=False):
        self.keep = keep
        if sanitized(os.path.join(build, "pochtad")):
            # ASan's quarantine (256 MiB by default) would hold every freed
            # block and hide whether memory comes back; keep it small.
            os.environ["ASAN_OPTIONS"] = ":".join(filter(None, (
                os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=16",
                "allocator_release_to_os_interval_ms=500")))
        self.b = benchlib.PochtaInstance(
            build=build, port_base=port_base, users=users, wait_ports=(25, 110),
            extra_conf=["max_connections_per_ip = %d" % per_ip,
                        "max_message_size = %d" % max_message_size,
                        "plaintext_auth_loopback = yes", "log_level = info"])
        self.base = port_base
        self.dir = self.b.dir
        self.log = self.b.stderr_path
        self.proc = self.b.proc
        self.users = [benchlib.user_name(i) for i in range(users)]
        with open(self.b.conf) as f:
            self.conf_text = f.read()

    def port(self, name):
        return self.base + PORTS[name]

    def listens(self, name):
        return re.search(r"(?m)^listen_%s = 127\.0\.0\.1:\d+" % name, self.conf_text) is not None

    def alive(self):
        return self.proc.poll() is None

    def stderr(self, tail=4000):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-tail:]
        except OSError:
            return ""

    def stop(self, timeout=60):
        """SIGTERM; return the exit status (None if it had to be killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.keep:
            self.b.close()


def socket_fds(pid):
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def rss_kib(pid):
    return benchlib._status_kib(pid, "VmRSS:")


def sanitized(path):
    """True if the binary was built with AddressSanitizer."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# --- bookkeeping -----------------------------------------------------------------

class Stats:
    def __init__(self):
        self.c = collections.Counter()
        self.legit_failures = []        # (role, reason)
        self.violations = []
        self.accepted = {}              # (id, rcpt) -> sha256 of the sent bytes
        self.uncertain = set()          # (id, rcpt): outcome of the final dot unknown
        self.deleted = collections.Counter()   # (id, rcpt) -> times deleted by POP3
        self.del_uncertain = set()
        self.aborted = set()            # ids that must never be stored
        self.refused = set()            # ids refused at end of DATA: must not be stored

    def fail(self, role, reason):
        self.c[role + " failed"] += 1
        if len(self.legit_failures) < 200:
            self.legit_failures.append((role, reason))

    def violate(self, text):
        if len(self.violations) < 500:
            self.violations.append(text)


# --- messages --------------------------------------------------------------------

def make_message(mid, rcpts, size):
    lines = []
    n = 0
    i = 0
    while n < size:
        k = i % 13
        if k == 0:
            line = b"." * (1 + i % 3) + b" dotted line %d" % i
        elif k == 5:
            line = b"."
        elif k == 7:
            line = b"x" * (200 + i % 700)             # long but legal (< 998)
        else:
            line = b"line %06d of message %s" % (i, mid.encode())
        lines.append(line + b"\r\n")
        n += len(line) + 2
        i += 1
    body = b"".join(lines)
    head = ("X-Soak-Id: %s\r\nX-Soak-Body-Sha256: %s\r\nFrom: <legit@remote.test>\r\nTo: %s\r\n"
            "Subject: soak %s\r\nMessage-ID: <%s@soak.test>\r\n\r\n"
            % (mid, hashlib.sha256(body).hexdigest(), ", ".join("<%s>" % r for r in rcpts),
               mid, mid)).encode()
    return head + body


def dot_stuff(m):
    m = m.replace(b"\r\n.", b"\r\n..")
    return b"." + m if m.startswith(b".") else m


ID_RE = re.compile(rb"(?m)^X-Soak-Id: (\S+)\r\n")
BODY_SHA_RE = re.compile(rb"(?m)^X-Soak-Body-Sha256: ([0-9a-f]{64})\r\n")


def parse_retrieved(data):
    """(id, sha256 of the sent part, body intact?) of a message read back;
    id is None for a message that is not ours."""
    m = ID_RE.search(data)
    if not m:
        return None, None, False
    sent = data[m.start():]
    hs = BODY_SHA_RE.search(sent)
    sep = sent.find(b"\r\n\r\n")
    body_ok = bool(hs) and sep >= 0 and hashlib.sha256(sent[sep + 4:]).hexdigest() == hs.group(1).decode()
    return m.group(1).decode(), hashlib.sha256(sent).hexdigest(), body_ok


# --- client plumbing -------------------------------------------------------------

class Proto(Exception):
    pass


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Conn:
    def __init__(self, r, w, timeout):
        self.r, self.w, self.timeout = r, w, timeout
        self.last = b"(nothing sent)"
        self.got = collections.deque(maxlen=4)     # last lines received, for errors

    @classmethod
    async def open(cls, port, src="127.0.0.1", tls=False, timeout=30):
        r, w = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, local_addr=(src, 0), ssl=tls_ctx() if tls else None,
            limit=1 << 20), timeout)
        return cls(r, w, timeout)

    async def line(self):
        try:
            ln = await asyncio.wait_for(self.r.readline(), self.timeout)
        except asyncio.TimeoutError:
            raise Proto("no reply within %ss after sending %r (local port %s); last received %r" % (
                self.timeout, self.last[:80], self.w.get_extra_info("sockname")[1],
                list(self.got))) from None
        self.got.append(ln[:100])
        if not ln:
            raise Proto("connection closed by the server")
        return ln

    async def exactly(self, n):
        return await asyncio.wait_for(self.r.readexactly(n), self.timeout)

    async def send(self, data):
        self.last = data
        self.w.write(data)
        await asyncio.wait_for(self.w.drain(), self.timeout)

    async def smtp_reply(self):
        lines = []
        while True:
            ln = await self.line()
            lines.append(ln)
            if ln[3:4] != b"-":
                return int(ln[:3]) if ln[:3].isdigit() else -1, b"".join(lines)

    async def smtp_expect(self, code, what):
        c, text = await self.smtp_reply()
        if c != code:
            raise Proto("%s: expected %d, got %r" % (what, code, text[:200]))
        return text

    async def pop_ok(self, what):
        ln = await self.line()
        if not ln.startswith(b"+OK"):
            raise Proto("%s: %r" % (what, ln[:200]))
        return ln

    async def pop_multi(self):
        out = []
        while True:
            ln = await self.line()
            if ln == b".\r\n":
                return b"".join(out)
            out.append(ln[1:] if ln.startswith(b"..") else ln)

    def close(self, rst=False):
        try:
            if rst:
                sock = self.w.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.w.transport.abort()
            else:
                self.w.close()
        except Exception:
            pass


# --- legitimate clients ----------------------------------------------------------

class Soak:
    def __init__(self, inst, args):
        self.inst = inst
        self.a = args
        self.st = Stats()
        self.rng = random.Random(args.seed)
        self.user_locks = {u: asyncio.Lock() for u in inst.users}
        self.stop_at = 0.0
        self.imap = False
        self.per_ip = args.per_ip

    def running(self):
        return time.monotonic() < self.stop_at and self.inst.alive()

    async def smtp_legit_session(self, src, nmsgs):
        st = self.st
        c = await Conn.open(self.inst.port("smtp"), src, timeout=self.a.io_timeout)
        try:
            await c.smtp_expect(220, "greeting")
            await c.send(b"EHLO legit.soak.test\r\n")
            await c.smtp_expect(250, "EHLO")
            for _ in range(nmsgs):
                mid = "soak-" + uuid.uuid4().hex
                rcpts = self.rng.sample(self.inst.users, 2 if self.rng.random() < 0.15 else 1)
                size = self.rng.choice((300, 1500, 4000, 12000, 40000))
                msg = make_message(mid, rcpts, size)
                sha = hashlib.sha256(msg).hexdigest()
                st.c["smtp messages attempted"] += 1
                # PIPELINING: MAIL, RCPTs and DATA in one write.
                cmd = b"MAIL FROM:<legit@remote.test> SIZE=%d\r\n" % len(msg)
                cmd += b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts) + b"DATA\r\n"
                await c.send(cmd)
                await c.smtp_expect(250, "MAIL")
                for r in rcpts:
                    await c.smtp_expect(250, "RCPT " + r)
                await c.smtp_expect(354, "DATA")
                for r in rcpts:
                    st.uncertain.add((mid, r))
                await c.send(dot_stuff(msg) + b".\r\n")
                code, text = await c.smtp_reply()
                for r in rcpts:
                    st.uncertain.discard((mid, r))
                if code != 250:
                    st.refused.add(mid)
                    raise Proto("end of DATA: %r" % text[:200])
                for r in rcpts:
                    st.accepted[(mid, r)] = sha
                st.c["smtp messages accepted (250)"] += 1
            await c.send(b"QUIT\r\n")
            await c.smtp_expect(221, "QUIT")
        finally:
            c.close()

    def check_retrieved(self, user, data, where):
        """Verify one message read back; return its id if it is a known one."""
        mid, sha, body_ok = parse_retrieved(data)
        if mid is None:
            self.st.violate("%s: %s holds a message without X-Soak-Id" % (where, user))
            return None
        if mid.startswith("abort-"):
            self.st.violate("%s: aborted transfer %s was stored for %s" % (where, mid, user))
            return None
        key = (mid, user)
        want = self.st.accepted.get(key)
        if not body_ok:
            self.st.violate("%s: %s for %s: body checksum mismatch" % (where, mid, user))
        if want is not None and want != sha:
            self.st.violate("%s: %s for %s: differs from what was sent" % (where, mid, user))
        return mid if want is not None else None

    async def pop3_legit_session(self):
        st = self.st
        # Our POP3 clients never fight over a maildrop lock ([IN-USE] is
        # correct behaviour, not what this test is about).
        free = [u for u, l in self.user_locks.items() if not l.locked()]
        if not free:
            await asyncio.sleep(0.05)
            return
        user = self.rng.choice(free)
        async with self.user_locks[user]:
            st.c["pop3 sessions attempted"] += 1
            c = await Conn.open(self.inst.port("pop3"), "127.0.0.1", timeout=self.a.io_timeout)
            pending_del = []
            try:
                await c.pop_ok("greeting")
                await c.send(b"USER %s\r\nPASS %s\r\n" % (user.encode(), PASSWORD.encode()))
                await c.pop_ok("USER")
                await c.pop_ok("PASS")
                await c.send(b"STAT\r\n")
                n = int((await c.pop_ok("STAT")).split()[1])
                picks = self.rng.sample(range(1, n + 1), min(n, 4))
                for k in picks:
                    await c.send(b"RETR %d\r\n" % k)
                    await c.pop_ok("RETR %d" % k)
                    data = await c.pop_multi()
                    st.c["pop3 RETR during load"] += 1
                    mid = self.check_retrieved(user, data, "POP3 RETR during load")
                    # Only even-numbered users lose mail to DELE: IMAP reads the odd ones.
                    if mid and int(user[1:user.index("@")]) % 2 == 0 and self.rng.random() < 0.4:
                        await c.send(b"DELE %d\r\n" % k)
                        await c.pop_ok("DELE %d" % k)
                        pending_del.append((mid, user))
                for key in pending_del:
                    st.del_uncertain.add(key)
                await c.send(b"QUIT\r\n")
                await c.pop_ok("QUIT")
                for key in pending_del:
                    st.del_uncertain.discard(key)
                    st.deleted[key] += 1
                st.c["pop3 DELE committed by QUIT"] += len(pending_del)
                st.c["pop3 sessions ok"] += 1
            finally:
                c.close()

    async def imap_cmd(self, c, tag, cmd):
        """Send one command; return (untagged lines, literals, tagged line)."""
        await c.send(b"%s %s\r\n" % (tag, cmd))
        lines, lits = [], []
        while True:
            ln = await c.line()
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if m:
                lits.append(await c.exactly(int(m.group(1))))
                ln = ln + b"<literal>" + await c.line()
            if ln.startswith(tag + b" "):
                return lines, lits, ln
            lines.append(ln)

    async def imap_legit_session(self):
        st = self.st
        odd = [u for u in self.inst.users if int(u[1:u.index("@")]) % 2 == 1] or self.inst.users
        user = self.rng.choice(odd)
        st.c["imap sessions attempted"] += 1
        c = await Conn.open(self.inst.port("imap"), "127.0.0.1", timeout=self.a.io_timeout)
        try:
            if not (await c.line()).startswith(b"* OK"):
                raise Proto("IMAP greeting")
            _, _, t = await self.imap_cmd(c, b"a1", b"LOGIN %s %s" % (user.encode(), PASSWORD.encode()))
            if not t.startswith(b"a1 OK"):
                raise Proto("LOGIN: %r" % t)
            lines, _, t = await self.imap_cmd(c, b"a2", b"SELECT INBOX")
            if not t.startswith(b"a2 OK"):
                raise Proto("SELECT: %r" % t)
            exists = 0
            for ln in lines:
                m = re.match(rb"\* (\d+) EXISTS", ln)
                if m:
                    exists = int(m.group(1))
            if exists:
                k = self.rng.randint(1, exists)
                _, lits, t = await self.imap_cmd(c, b"a3", b"FETCH %d (BODY.PEEK[])" % k)
                if not t.startswith(b"a3 OK") or not lits:
                    raise Proto("FETCH %d: %r" % (k, t))
                st.c["imap FETCH during load"] += 1
                self.check_retrieved(user, lits[0], "IMAP FETCH during load")
            _, _, t = await self.imap_cmd(c, b"a4", b"LOGOUT")
            if not t.startswith(b"a4 OK"):
                raise Proto("LOGOUT: %r" % t)
            st.c["imap sessions ok"] += 1
        finally:
            c.close()

    async def imap_probe(self):
        """IMAP takes part only if it is configured and answers a session."""
        if not self.inst.listens("imap") or self.a.imap == "off":
            return False
        try:
            await asyncio.wait_for(self.imap_legit_session(), self.a.io_timeout)
            return True
        except Exception as e:
            if self.a.imap == "on":
                raise
            print("IMAP left out: probe session failed: %s" % (e or type(e).__name__))
            return False

    # --- hostile clients -----------------------------------------------------------

    async def slowloris(self, i):
        st = self.st
        port = self.inst.port(("smtp", "pop3", "submission", "imap" if self.imap else "smtp")[i % 4])
        src = "127.0.3.%d" % (1 + i % 8)
        c = await Conn.open(port, src, timeout=self.a.io_timeout)
        st.c["slowloris connections"] += 1
        try:
            payload = b"EHLO " + b"s" * 4000
            k = 0
            while self.running():
                await c.send(payload[k % len(payload):k % len(payload) + 1])
                k += 1
                st.c["slowloris bytes"] += 1
                await asyncio.sleep(self.a.slowloris_interval)
                if c.r.at_eof():
                    st.c["slowloris closed by server"] += 1
                    return
        except (ConnectionError, Proto):
            st.c["slowloris closed by server"] += 1
        finally:
            c.close()

    async def oversize(self, i):
        st = self.st
        src = "127.0.2.%d" % (1 + i % 8)
        kind = i % 4
        if kind == 3:
            # POP3 USER line of 100 KB: -ERR or close, never +OK.
            c = await Conn.open(self.inst.port("pop3"), src, timeout=self.a.io_timeout)
            try:
                await c.pop_ok("greeting")
                await c.send(b"USER " + b"u" * 100000 + b"\r\n")
                try:
                    ln = await c.line()
                except (Proto, ConnectionError):
                    ln = b"(closed)"
                if ln.startswith(b"+OK"):
                    st.violate("POP3 accepted a 100 KB USER line: %r" % ln[:100])
                st.c["oversize POP3 lines refused"] += 1
            finally:
                c.close()
            return
        c = await Conn.open(self.inst.port("smtp"), src, timeout=self.a.io_timeout)
        try:
            await c.smtp_expect(220, "greeting")
            await c.send(b"EHLO big.soak.test\r\n")
            await c.smtp_expect(250, "EHLO")
            if kind == 0:
                await c.send(b"MAIL FROM:<" + b"a" * 100000 + b"@remote.test>\r\n")
                code, text = await c.smtp_reply()
                if code // 100 != 5 and code != 421:
                    st.violate("SMTP answered %r to a 100 KB command line" % text[:100])
                st.c["oversize SMTP command lines refused"] += 1
                return
            mid = "abort-" + uuid.uuid4().hex
            st.aborted.add(mid)
            await c.send(b"MAIL FROM:<big@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                         % self.rng.choice(self.inst.users).encode())
            await c.smtp_expect(250, "MAIL")
            await c.smtp_expect(250, "RCPT")
            await c.smtp_expect(354, "DATA")
            head = b"X-Soak-Id: %s\r\nSubject: too big\r\n\r\n" % mid.encode()
            if kind == 1:
                body = b"y" * 20000 + b"\r\n"           # one text line of 20 KB
                what = "a 20 KB text line"
            else:
                body = (b"z" * 998 + b"\r\n") * (self.a.max_message_size // 1000 + 200)
                what = "a message over max_message_size"
            await c.send(head + body + b".\r\n")
            code, text = await c.smtp_reply()
            if code == 250:
                st.violate("SMTP accepted %s: %r" % (what, text[:100]))
            st.c["oversize messages refused (%s)" % ("554 line" if kind == 1 else "552 size")] += 1
        finally:
            c.close()

    async def garbage(self, i):
        names = ["smtp", "pop3", "submission", "submissions", "pop3s"] + (["imap"] if self.imap else [])
        c = await Conn.open(self.inst.port(names[i % len(names)]), "127.0.2.%d" % (1 + i % 8),
                            timeout=self.a.io_timeout)
        self.st.c["garbage connections"] += 1
        try:
            for _ in range(self.rng.randint(1, 4)):
                await c.send(os.urandom(self.rng.randint(1, 8192)))
                await asyncio.sleep(0.2)
            try:
                await asyncio.wait_for(c.r.read(65536), 2)
            except (asyncio.TimeoutError, ConnectionError):
                pass
        except ConnectionError:
            pass
        finally:
            c.close(rst=i % 2 == 0)

    async def tls_half(self, i):
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = tls_ctx().wrap_bio(inc, out, server_hostname="mx." + DOMAIN)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        port = self.inst.port(("submissions", "pop3s")[i % 2])
        c = await Conn.open(port, "127.0.2.%d" % (1 + i % 8), timeout=self.a.io_timeout)
        self.st.c["half-open TLS handshakes"] += 1
        try:
            await c.send(hello[:len(hello) // 2])
            end = time.monotonic() + self.a.tls_stall
            while time.monotonic() < end and self.running():
                await asyncio.sleep(0.5)
                if c.r.at_eof():
                    self.st.c["half-open TLS closed by server"] += 1
                    return
        except ConnectionError:
            self.st.c["half-open TLS closed by server"] += 1
        finally:
            c.close()

    async def auth_guess(self, i):
        st = self.st
        import base64
        user = self.rng.choice(self.inst.users)
        if i % 2 == 0:
            c = await Conn.open(self.inst.port("submissions"), "127.0.0.5", tls=True,
                                timeout=self.a.io_timeout)
            try:
                await c.smtp_expect(220, "greeting")
                await c.send(b"EHLO guess.soak.test\r\n")
                await c.smtp_expect(250, "EHLO")
                for _ in range(3):
                    tok = base64.b64encode(b"\0%s\0guess-%d" % (user.encode(), self.rng.randrange(10**9)))
                    await c.send(b"AUTH PLAIN " + tok + b"\r\n")
                    code, text = await c.smtp_reply()
                    st.c["AUTH guesses (SMTP)"] += 1
                    if code == 235:
                        st.violate("AUTH PLAIN with a wrong password succeeded: %r" % text)
                    elif code == 454:
                        st.c["AUTH guesses refused by the limiter (454)"] += 1
                    elif code == 535:
                        st.c["AUTH guesses failed (535)"] += 1
                    elif code == 421:
                        return
                    if not self.running():
                        return
                    await asyncio.sleep(0.2)
            finally:
                c.close()
        else:
            c = await Conn.open(self.inst.port("pop3s"), "127.0.0.5", tls=True, timeout=self.a.io_timeout)
            try:
                await c.pop_ok("greeting")
                await c.send(b"USER %s\r\nPASS guess-%d\r\n" % (user.encode(), self.rng.randrange(10**9)))
                ln = await c.line()
                if ln.startswith(b"+OK"):
                    ln = await c.line()
                st.c["AUTH guesses (POP3)"] += 1
                if ln.startswith(b"+OK"):
                    st.violate("POP3 PASS with a wrong password succeeded: %r" % ln)
                elif b"SYS/TEMP" in ln:
                    st.c["POP3 guesses refused by the limiter"] += 1
            finally:
                c.close()
            await asyncio.sleep(0.2)

    async def flood_wave(self):
        """limit + extra connections from one address at once: at most the
        limit are greeted with 220, the rest get 421."""
        st = self.st
        n = self.per_ip + self.a.flood_extra

        async def one():
            try:
                c = await Conn.open(self.inst.port("smtp"), "127.0.0.3", timeout=self.a.io_timeout)
            except (OSError, asyncio.TimeoutError):
                return "connect failed", None
            try:
                ln = await c.line()
                return ln[:3].decode(errors="replace"), c
            except (Proto, ConnectionError, asyncio.TimeoutError):
                c.close()
                return "closed", None

        res = await asyncio.gather(*(one() for _ in range(n)))
        codes = collections.Counter(r for r, _ in res)
        await asyncio.sleep(1.0)
        for _, c in res:
            if c is not None:
                c.close()
        st.c["flood waves"] += 1
        st.c["flood connections greeted 220"] += codes["220"]
        st.c["flood connections refused 421"] += codes["421"]
        other = n - codes["220"] - codes["421"]
        st.c["flood connections otherwise ended"] += other
        if codes["220"] > self.per_ip:
            st.violate("flood: %d connections from one address greeted, limit %d" % (codes["220"], self.per_ip))
        if codes["421"] == 0:
            st.violate("flood: no 421 for %d connections from one address (limit %d): %s"
                       % (n, self.per_ip, dict(codes)))
        await asyncio.sleep(1.0)        # the server forgets closed ones

    async def mid_data(self, i):
        st = self.st
        c = await Conn.open(self.inst.port("smtp"), "127.0.2.%d" % (1 + i % 8), timeout=self.a.io_timeout)
        try:
            await c.smtp_expect(220, "greeting")
            mid = "abort-" + uuid.uuid4().hex
            st.aborted.add(mid)
            await c.send(b"EHLO quitter.soak.test\r\nMAIL FROM:<q@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                         % self.rng.choice(self.inst.users).encode())
            for code in (250, 250, 250, 354):
                await c.smtp_expect(code, "mid-DATA setup")
            msg = make_message(mid, ["x@" + DOMAIN], 6000)
            await c.send(dot_stuff(msg)[:self.rng.randint(10, 5000)])
            await asyncio.sleep(self.rng.random())
            st.c["disconnects mid-DATA"] += 1
        finally:
            c.close(rst=i % 2 == 0)

    # --- drivers -------------------------------------------------------------------

    async def worker(self, role, legit, fn, *args, pause=0.0):
        while self.running():
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(fn(*args), self.a.session_timeout)
            except Exception as e:
                if legit:
                    if self.running() or not isinstance(e, (ConnectionError, asyncio.TimeoutError)):
                        self.st.fail(role, "%s: %s" % (type(e).__name__, e))
                    else:
                        self.st.fail(role, "%s at shutdown: %s" % (type(e).__name__, e))
                else:
                    self.st.c["%s sessions ended by error (%s)" % (role, type(e).__name__)] += 1
            if pause:
                await asyncio.sleep(pause)
            elif time.monotonic() - t0 < 0.01:
                await asyncio.sleep(0.01)

    async def legit_smtp_worker(self, i):
        src = "127.0.1.%d" % (1 + i % 4)
        while self.running():
            self.st.c["smtp sessions attempted"] += 1
            try:
                await asyncio.wait_for(self.smtp_legit_session(src, self.rng.randint(1, 5)),
                                       self.a.session_timeout)
                self.st.c["smtp sessions ok"] += 1
            except Exception as e:
                self.st.fail("smtp", "%s: %s" % (type(e).__name__, e))

    async def indexed(self, role, fn, i, pause=0.0):
        while self.running():
            try:
                await asyncio.wait_for(fn(i), self.a.session_timeout)
            except Exception as e:
                self.st.c["%s sessions ended by error (%s)" % (role, type(e).__name__)] += 1
            await asyncio.sleep(pause)

    async def flood_worker(self):
        while self.running():
            try:
                await asyncio.wait_for(self.flood_wave(), self.a.session_timeout)
            except Exception as e:
                self.st.c["flood waves ended by error (%s)" % type(e).__name__] += 1

    async def warmup(self):
        """Touch every mailbox and do a few concurrent logins, so that the
        baseline includes what a served user costs (index handles, yescrypt
        buffers), not only an idle daemon."""
        self.stop_at = time.monotonic() + 120
        for u in self.inst.users:
            await self._one_message(u)
        sess = [self.pop3_legit_session() for _ in range(min(8, len(self.inst.users)))]
        for r in await asyncio.gather(*sess, return_exceptions=True):
            if isinstance(r, Exception):
                self.st.fail("warm-up", repr(r))

    async def _one_message(self, user):
        c = await Conn.open(self.inst.port("smtp"), "127.0.1.1", timeout=self.a.io_timeout)
        try:
            await c.smtp_expect(220, "greeting")
            mid = "soak-" + uuid.uuid4().hex
            msg = make_message(mid, [user], 500)
            await c.send(b"HELO warm\r\nMAIL FROM:<w@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % user.encode())
            for code in (250, 250, 250, 354):
                await c.smtp_expect(code, "warm-up")
            await c.send(dot_stuff(msg) + b".\r\n")
            await c.smtp_expect(250, "warm-up end of DATA")
            self.st.accepted[(mid, user)] = hashlib.sha256(msg).hexdigest()
            self.st.c["smtp messages attempted"] += 1
            self.st.c["smtp messages accepted (250)"] += 1
            await c.send(b"QUIT\r\n")
        finally:
            c.close()

    async def load(self):
        a = self.a
        self.stop_at = time.monotonic() + a.seconds
        tasks = [self.legit_smtp_worker(i) for i in range(a.smtp_clients)]
        tasks += [self.worker("pop3", True, self.pop3_legit_session, pause=0.05) for _ in range(a.pop3_clients)]
        if self.imap:
            tasks += [self.worker("imap", True, self.imap_legit_session, pause=0.05)
                      for _ in range(a.imap_clients)]
        tasks += [self.indexed("slowloris", self.slowloris, i) for i in range(a.slowloris)]
        tasks += [self.indexed("oversize", self.oversize, i, 0.5) for i in range(a.oversize)]
        tasks += [self.indexed("garbage", self.garbage, i, 0.1) for i in range(a.garbage)]
        tasks += [self.indexed("tls-half", self.tls_half, i) for i in range(a.tls_half)]
        tasks += [self.indexed("auth-guess", self.auth_guess, i) for i in range(a.auth_guess)]
        tasks += [self.indexed("mid-data", self.mid_data, i, 0.1) for i in range(a.mid_data)]
        if a.flood_extra > 0:
            tasks.append(self.flood_worker())
        print("load: %d client tasks for %ds" % (len(tasks), a.seconds), flush=True)
        await asyncio.wait_for(asyncio.gather(*tasks), a.seconds + a.session_timeout + 30)

    async def final_check(self):
        """Read every mailbox back over POP3; reconcile with what was
        accepted and deleted."""
        st = self.st
        seen = collections.Counter()
        sem = asyncio.Semaphore(4)

        async def read_user(user):
            async with sem:
                c = await Conn.open(self.inst.port("pop3"), "127.0.0.1", timeout=max(self.a.io_timeout, 60))
                try:
                    await c.pop_ok("greeting")
                    await c.send(b"USER %s\r\nPASS %s\r\n" % (user.encode(), PASSWORD.encode()))
                    await c.pop_ok("USER")
                    await c.pop_ok("PASS")
                    await c.send(b"STAT\r\n")
                    n = int((await c.pop_ok("STAT")).split()[1])
                    for k in range(1, n + 1):
                        await c.send(b"RETR %d\r\n" % k)
                        await c.pop_ok("RETR")
                        data = await c.pop_multi()
                        mid, _, _ = parse_retrieved(data)
                        self.check_retrieved(user, data, "final POP3 RETR")
                        if mid:
                            seen[(mid, user)] += 1
                    await c.send(b"QUIT\r\n")
                    await c.pop_ok("QUIT")
                finally:
                    c.close()

        await asyncio.gather(*(read_user(u) for u in self.inst.users))
        lost = dup = 0
        for key in st.accepted:
            n = seen[key] + st.deleted[key]
            if key in st.del_uncertain and n == 0:
                continue
            if n == 0:
                lost += 1
                st.violate("accepted message %s for %s is missing" % key)
            elif n > 1:
                dup += 1
                st.violate("accepted message %s for %s is present %d times (%d stored, %d deleted)"
                           % (key + (n, seen[key], st.deleted[key])))
        unknown = [k for k in seen if k not in st.accepted and k not in st.uncertain]
        for k in unknown[:20]:
            st.violate("stored message %s for %s was never acknowledged with 250" % k)
        st.c["final: messages read back"] = sum(seen.values())
        st.c["final: accepted copies missing"] = lost
        st.c["final: accepted copies duplicated"] = dup
        st.c["final: stored without 250"] = len(unknown)
        # Aborted and refused transfers must not be anywhere under data/.
        banned = set(st.aborted) | set(st.refused)
        found = 0
        for dirpath, _dirs, files in os.walk(os.path.join(self.inst.dir, "data")):
            for fn in files:
                if fn.endswith(("-wal", "-shm", "-journal")) or fn.endswith(".db"):
                    continue
                try:
                    with open(os.path.join(dirpath, fn), "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                for m in re.finditer(rb"X-Soak-Id: (abort-[0-9a-f]+|soak-[0-9a-f]+)", data):
                    if m.group(1).decode() in banned:
                        found += 1
                        st.violate("aborted/refused transfer %s stored in %s" % (m.group(1).decode(), dirpath))
        st.c["final: aborted or refused transfers found on disk"] = found


# --- main ------------------------------------------------------------------------

def mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of the load phase (default 60)")
    ap.add_argument("--build", default=benchlib.DEFAULT_BUILD)
    ap.add_argument("--port-base", type=int, default=40000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--smtp-clients", type=int, default=120, help="legitimate SMTP client tasks")
    ap.add_argument("--pop3-clients", type=int, default=16, help="legitimate POP3 client tasks")
    ap.add_argument("--imap-clients", type=int, default=8, help="legitimate IMAP client tasks")
    ap.add_argument("--imap", choices=("auto", "on", "off"), default="auto",
                    help="auto: take part if listen_imap is set and a probe session works")
    ap.add_argument("--slowloris", type=int, default=60)
    ap.add_argument("--slowloris-interval", type=float, default=3.0)
    ap.add_argument("--oversize", type=int, default=8)
    ap.add_argument("--garbage", type=int, default=16)
    ap.add_argument("--tls-half", type=int, default=30)
    ap.add_argument("--tls-stall", type=float, default=10.0, help="seconds a half-open handshake stalls")
    ap.add_argument("--auth-guess", type=int, default=4)
    ap.add_argument("--mid-data", type=int, default=12)
    ap.add_argument("--per-ip", type=int, default=64, help="max_connections_per_ip of the instance")
    ap.add_argument("--flood-extra", type=int, default=40,
                    help="flood waves open per-ip + this many connections from one address (0: no flood)")
    ap.add_argument("--max-message-size", type=int, default=1 << 20)
    ap.add_argument("--io-timeout", type=float, default=45.0)
    ap.add_argument("--session-timeout", type=float, default=120.0)
    ap.add_argument("--settle", type=float, default=4.0, help="seconds after the load before the final RSS")
    ap.add_argument("--rss-slack-mib", type=float, default=None,
                    help="allowed final RSS above baseline (default: 32 MiB, 96 MiB under ASan)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the instance directory")
    a = ap.parse_args(argv)
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 30)

    asan = sanitized(os.path.join(a.build, "pochtad"))
    slack = a.rss_slack_mib if a.rss_slack_mib is not None else (96.0 if asan else 32.0)
    print("soak: %s, build %s%s, seed %d" % (benchlib.machine_info(), os.path.abspath(a.build),
                                              " (ASan)" if asan else "", a.seed), flush=True)
    inst = SoakInstance(os.path.abspath(a.build), a.port_base, a.users, a.per_ip, a.max_message_size,
                        keep=a.keep)
    soak = Soak(inst, a)
    st = soak.st
    rc = 1
    try:
        loop = asyncio.new_event_loop()
        start_rss = rss_kib(inst.proc.pid)
        soak.imap = loop.run_until_complete(soak.imap_probe())
        loop.run_until_complete(soak.warmup())
        time.sleep(1.0)
        base_rss = rss_kib(inst.proc.pid)
        base_socks = socket_fds(inst.proc.pid)
        print("baseline: RSS %s after start, %s after warm-up; %d sockets; IMAP %s"
              % (mib(start_rss), mib(base_rss), base_socks, "on" if soak.imap else "off"), flush=True)
        sampler = benchlib.RssSampler(inst.proc.pid, interval=0.1)
        sampler.peak_kib = 0
        peak_socks = [0]
        sock_stop = threading.Event()

        def count_sockets():
            while not sock_stop.wait(0.5):
                peak_socks[0] = max(peak_socks[0], socket_fds(inst.proc.pid))

        sock_thread = threading.Thread(target=count_sockets, daemon=True)
        sock_thread.start()
        t0 = time.monotonic()
        with sampler:
            try:
                loop.run_until_complete(soak.load())
            except asyncio.TimeoutError:
                st.violate("the load phase did not end within its bound")
        sock_stop.set()
        sock_thread.join(5)
        load_s = time.monotonic() - t0
        alive_after_load = inst.alive()
        if not alive_after_load:
            st.violate("pochtad died during the load (exit %s)" % inst.proc.returncode)
        time.sleep(a.settle)
        final_rss = rss_kib(inst.proc.pid) if inst.alive() else 0
        final_socks = socket_fds(inst.proc.pid) if inst.alive() else 0
        peak_rss = sampler.peak_kib
        if inst.alive():
            loop.run_until_complete(soak.final_check())
            if final_rss > base_rss + slack * 1024:
                st.violate("RSS did not come back: baseline %s, final %s (slack %.0f MiB)"
                           % (mib(base_rss), mib(final_rss), slack))
            if final_socks > base_socks + 2:
                st.violate("sockets did not come back: %d at baseline, %d after the load"
                           % (base_socks, final_socks))
            status = inst.stop()
            if status != 0:
                st.violate("pochtad exited %s on SIGTERM (expected 0)" % status)
        loop.close()
        log = inst.stderr(tail=10 ** 9)
        m = SANITIZER_RE.search(log)
        if m:
            st.violate("sanitizer report in pochtad's log: ...%s" % log[max(0, m.start() - 200):m.start() + 2000])
        # Limits must have bitten, so the hostile load really was hostile.
        if a.auth_guess >= 2 and a.seconds >= 10 and \
                st.c["AUTH guesses refused by the limiter (454)"] + st.c["POP3 guesses refused by the limiter"] == 0:
            st.violate("AUTH guessing was never refused by the failure limiter")
        if a.mid_data and st.c["disconnects mid-DATA"] == 0:
            st.violate("no client managed to disconnect mid-DATA (the test did not run)")

        legit_attempts = (st.c["smtp sessions attempted"] + st.c["pop3 sessions attempted"]
                          + st.c["imap sessions attempted"])
        legit_ok = st.c["smtp sessions ok"] + st.c["pop3 sessions ok"] + st.c["imap sessions ok"]
        print("\n== soak figures (%.0f s load, %d users) ==" % (load_s, a.users))
        for k in sorted(st.c):
            print("  %-52s %d" % (k, st.c[k]))
        print("  %-52s %d / %d" % ("legit sessions ok / attempted (incl. warm-up)", legit_ok, legit_attempts))
        print("  %-52s %s / %s / %s" % ("pochtad RSS baseline / peak / final", mib(base_rss), mib(peak_rss),
                                        mib(final_rss)))
        print("  %-52s %d / %d / %d" % ("pochtad sockets baseline / peak / final", base_socks, peak_socks[0],
                                        final_socks))
        if st.legit_failures:
            print("\nLEGITIMATE CLIENTS FAILED: %d" % sum(v for k, v in st.c.items() if k.endswith(" failed")))
            for role, why in st.legit_failures[:30]:
                print("  %s: %s" % (role, why))
        if st.violations:
            print("\nVIOLATIONS: %d" % len(st.violations))
            for v in st.violations[:40]:
                print("  " + v)
        if st.legit_failures or st.violations:
            print("\nFAIL (instance log: %s)" % (inst.log if a.keep else "rerun with --keep"))
            if not a.keep:
                print(inst.stderr(tail=3000))
        else:
            print("\nPASS: no crash, clean SIGTERM exit, RSS and sockets back, every accepted "
                  "message stored exactly once and intact, every legitimate session served")
            rc = 0
    finally:
        inst.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
