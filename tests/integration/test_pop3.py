"""POP3 (RFC 1939) on the pop3 (+110, STLS) and pop3s (+995) listeners:
logins (USER/PASS, AUTH PLAIN/LOGIN, APOP refused), the TRANSACTION
commands, UPDATE at QUIT only, the maildrop lock, the snapshot at login,
CAPA (RFC 2449), STLS (RFC 2595), limits and timeouts.  Mail is delivered
first over SMTP and must come back byte for byte."""

import base64
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

import pochtatest
from pochtatest import (DOMAIN, IO_TIMEOUT, close_instance, make_message, new_instance,
                        tls_client_context, unique, wait_port)

PASSWORD = "pop-Secret-9"
SENDER = "sender@remote.test"


def pop3_ports(inst):
    return inst.base + 110, inst.base + 995


def ensure_pop3_conf(inst, extra=None):
    """`pochta init` writes every listen_* key; older builds may not."""
    text = inst.conf.read_text()
    lines = []
    p, ps = pop3_ports(inst)
    if not re.search(r"(?m)^listen_pop3\s*=", text):
        lines.append("listen_pop3 = 127.0.0.1:%d" % p)
    if not re.search(r"(?m)^listen_pop3s\s*=", text):
        lines.append("listen_pop3s = 127.0.0.1:%d" % ps)
    for k, v in (extra or {}).items():
        lines.append("%s = %s" % (k, v))
    if lines:
        inst.append_conf(lines)


def start_pop3_instance(extra=None):
    inst = new_instance(start=False)
    ensure_pop3_conf(inst, extra)
    inst.start()
    p, ps = pop3_ports(inst)
    for port in (p, ps):
        assert wait_port(port, 10, inst.proc), "POP3 port %d not listening:\n%s" % (port, inst.stderr())
    return inst


# The shared instance tolerates the failed logins of the negative tests.
SHARED_CONF = {"auth_max_failures": 40, "auth_failure_delay": "1s"}


@pytest.fixture(scope="module")
def inst():
    i = start_pop3_instance(SHARED_CONF)
    yield i
    close_instance(i)


@pytest.fixture
def make_pop3_instance():
    made = []

    def make(extra=None):
        i = start_pop3_instance(extra)
        made.append(i)
        return i

    yield make
    for i in made:
        close_instance(i)


def new_user(inst, tag="u"):
    user = "%s-%s@%s" % (tag, unique("p")[-10:], DOMAIN)
    inst.add_user(user, PASSWORD)
    return user


def deliver(inst, rcpt, body=None, subject=None):
    """Send one message over SMTP; return the stored bytes (what RETR must
    give back)."""
    marker = unique()
    msg = make_message(marker, sender=SENDER, rcpt=rcpt, body=body, subject=subject)
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=IO_TIMEOUT) as s:
        s.sendmail(SENDER, [rcpt], msg)
    return inst.wait_message(marker)


# --- a raw POP3 client -----------------------------------------------------

class Pop:
    def __init__(self, port, tls=False, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            self.sock = tls_client_context().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed by server; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        assert b"\n" not in line, "bare LF in reply line %r" % line
        return line

    def status(self):
        line = self.line()
        assert line.startswith((b"+OK", b"-ERR", b"+ ")) or line == b"+", "not a POP3 reply: %r" % line
        return line

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.status()

    def multi(self):
        """The body of a multi-line reply, wire form (dot-stuffed), up to
        but without the terminating ".\\r\\n"."""
        while True:
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                body, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                return body
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("closed inside a multi-line reply")
            self.buf += chunk

    def ok(self, text):
        r = self.cmd(text)
        assert r.startswith(b"+OK"), "%s: %r" % (text, r)
        return r

    def err(self, text):
        r = self.cmd(text)
        assert r.startswith(b"-ERR"), "%s: expected -ERR, got %r" % (text, r)
        return r

    def stls(self):
        self.ok("STLS")
        assert not self.buf
        self.sock = tls_client_context().wrap_socket(self.sock)

    def login(self, user, password=PASSWORD):
        self.ok("USER " + user)
        return self.ok("PASS " + password)

    def capa(self):
        self.ok("CAPA")
        return [l.decode() for l in self.multi().split(b"\r\n") if l]

    def closed(self, timeout=5):
        """True once the server has closed the connection (reading the
        rest of what it sent into self.buf)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False


def unstuff(wire):
    """Undo RFC 1939 byte-stuffing of a multi-line body."""
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in wire.split(b"\r\n"))


def logged_in(inst, user, tls=True):
    p_port, ps_port = pop3_ports(inst)
    p = Pop(ps_port, tls=True) if tls else Pop(p_port)
    p.login(user)
    return p


# --- greeting, CAPA, STLS --------------------------------------------------

def test_rfc1939_4_greeting_carries_apop_timestamp(inst):
    p_port, _ = pop3_ports(inst)
    with Pop(p_port) as p:
        assert re.match(rb"^\+OK .*<\d+\.\d+[^<>@]*@[^<>]+>$", p.greeting), p.greeting
    with Pop(p_port) as p2:
        pass
    assert p.greeting != p2.greeting, "APOP timestamps must differ between sessions"


def test_rfc2449_capa_before_and_after_stls(inst):
    p_port, _ = pop3_ports(inst)
    with Pop(p_port) as p:
        before = p.capa()
        for cap in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER",
                    "LOGIN-DELAY 0", "IMPLEMENTATION pochta", "STLS", "UTF8 USER"):
            assert cap in before, (cap, before)
        # RFC 2595 2.1: nothing that would be refused is offered before TLS.
        assert "USER" not in before and not any(c.startswith("SASL") for c in before), before
        p.stls()
        after = p.capa()
        assert "STLS" not in after, after
        assert "USER" in after and "SASL PLAIN LOGIN" in after, after


def test_rfc2595_stls_twice_refused(inst):
    p_port, _ = pop3_ports(inst)
    with Pop(p_port) as p:
        p.stls()
        p.err("STLS")
        assert p.cmd("QUIT").startswith(b"+OK")


@pytest.mark.security
def test_rfc2595_stls_discards_pipelined_commands(inst):
    """Bytes sent after STLS in the same packet must not be executed after
    the handshake (command injection, CVE-2011-0411 class)."""
    p_port, _ = pop3_ports(inst)
    user = new_user(inst)
    with Pop(p_port) as p:
        p.send("STLS\r\nUSER %s\r\n" % user)
        assert p.status().startswith(b"+OK")
        p.sock = tls_client_context().wrap_socket(p.sock)
        p.buf = b""
        p.err("PASS " + PASSWORD)       # the injected USER was dropped


@pytest.mark.security
def test_plaintext_login_refused_without_tls(inst):
    p_port, _ = pop3_ports(inst)
    user = new_user(inst)
    with Pop(p_port) as p:
        r = p.err("USER " + user)
        assert b"[AUTH]" in r and b"STLS" in r, r
        r = p.err("AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode()).decode())
        assert b"[AUTH]" in r, r
        p.err("AUTH")


# --- logins ------------------------------------------------------------------

def test_poplib_stls_user_pass_and_retr_byte_for_byte(inst):
    user = new_user(inst)
    body = ("first line\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast line\r\n")
    stored = deliver(inst, user, body=body)
    p_port, _ = pop3_ports(inst)
    c = poplib.POP3("127.0.0.1", p_port, timeout=IO_TIMEOUT)
    try:
        c.stls(tls_client_context())
        c.user(user)
        c.pass_(PASSWORD)
        assert c.stat() == (1, len(stored))
        resp, lines, octets = c.retr(1)
        assert resp == b"+OK %d octets" % len(stored)
        assert b"\r\n".join(lines) + b"\r\n" == stored
        assert c.quit().startswith(b"+OK")
    finally:
        c.close()


def test_poplib_pop3_ssl(inst):
    user = new_user(inst)
    stored = deliver(inst, user)
    _, ps_port = pop3_ports(inst)
    c = poplib.POP3_SSL("127.0.0.1", ps_port, context=tls_client_context(), timeout=IO_TIMEOUT)
    try:
        assert c.getwelcome().startswith(b"+OK")
        assert "STLS" not in c.capa()
        c.user(user)
        c.pass_(PASSWORD)
        resp, lines, _ = c.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == stored
        c.quit()
    finally:
        c.close()


def test_rfc1939_3_retr_wire_format_is_dot_stuffed(inst):
    user = new_user(inst)
    stored = deliver(inst, user, body=".a\r\nb\r\n..c\r\n")
    with logged_in(inst, user) as p:
        r = p.ok("RETR 1")
        assert r == b"+OK %d octets" % len(stored)
        wire = p.multi()
        assert b"\r\n..a\r\n" in wire and b"\r\n...c\r\n" in wire, wire
        assert unstuff(wire) == stored
        assert len(unstuff(wire)) == len(stored)


def test_rfc5034_auth_plain_initial_response(inst):
    user = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        tok = base64.b64encode(("\0%s\0%s" % (user, PASSWORD)).encode()).decode()
        r = p.ok("AUTH PLAIN " + tok)
        assert b"0 messages" in r
        p.ok("STAT")


def test_rfc5034_auth_plain_continuation_and_login(inst):
    user = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        r = p.cmd("AUTH PLAIN")
        assert r == b"+ ", r
        p.ok(base64.b64encode(("%s\0%s\0%s" % (user, user, PASSWORD)).encode()).decode())
        p.ok("QUIT")
    user2 = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        assert p.cmd("AUTH LOGIN") == b"+ " + base64.b64encode(b"Username:")
        assert p.cmd(base64.b64encode(user2.encode()).decode()) == b"+ " + base64.b64encode(b"Password:")
        p.ok(base64.b64encode(PASSWORD.encode()).decode())


def test_rfc5034_auth_cancel_and_bad_mechanism(inst):
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        assert p.cmd("AUTH LOGIN").startswith(b"+ ")
        p.err("*")
        p.err("AUTH CRAM-MD5")
        p.ok("AUTH")
        mechs = p.multi().split(b"\r\n")
        assert b"PLAIN" in mechs and b"LOGIN" in mechs
        p.ok("QUIT")


def test_rfc5034_auth_wrong_password_has_auth_code(inst):
    user = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        tok = base64.b64encode(("\0%s\0wrong" % user).encode()).decode()
        r = p.err("AUTH PLAIN " + tok)
        assert r.startswith(b"-ERR [AUTH]"), r


def test_apop_refused_clearly(inst):
    user = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        r = p.err("APOP %s c4c9334bac560ecc979e58001b3e22fb" % user)
        assert r == b"-ERR [AUTH] APOP not available: this server stores only password hashes"
        p.login(user)       # the session goes on


def test_wrong_password_is_delayed_and_refused(inst):
    user = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        p.ok("USER " + user)
        t = time.monotonic()
        r = p.err("PASS wrong-password")
        assert time.monotonic() - t >= 0.9, "failed login answered without delay"
        assert r.startswith(b"-ERR [AUTH]"), r
        p.err("PASS " + PASSWORD)       # USER must be given again
        p.login(user)


def test_unknown_user_same_answer_as_wrong_password(inst):
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        assert p.ok("USER nobody-here@%s" % DOMAIN) == b"+OK send PASS"
        r = p.err("PASS whatever")
        assert r == b"-ERR [AUTH] authentication failed: wrong user name or password"


# --- TRANSACTION ---------------------------------------------------------------

def test_rfc1939_example_session(inst):
    """The example session of RFC 1939 section 10, with USER/PASS."""
    user = new_user(inst)
    m1 = deliver(inst, user)
    m2 = deliver(inst, user, body="second message\r\n" * 5)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        r = p.login(user)
        assert r == b"+OK maildrop locked and ready: 2 messages (%d octets)" % (len(m1) + len(m2))
        assert p.ok("STAT") == b"+OK 2 %d" % (len(m1) + len(m2))
        assert p.ok("LIST") == b"+OK 2 messages (%d octets)" % (len(m1) + len(m2))
        assert p.multi() == b"1 %d\r\n2 %d\r\n" % (len(m1), len(m2))
        assert p.ok("RETR 1") == b"+OK %d octets" % len(m1)
        assert unstuff(p.multi()) == m1
        assert p.ok("DELE 1") == b"+OK message 1 deleted"
        assert p.ok("RETR 2") == b"+OK %d octets" % len(m2)
        assert unstuff(p.multi()) == m2
        assert p.ok("DELE 2") == b"+OK message 2 deleted"
        assert p.ok("QUIT") == b"+OK pochta POP3 server signing off (maildrop empty)"
        assert p.closed()
    with logged_in(inst, user) as p:
        assert p.ok("STAT") == b"+OK 0 0"


def test_rfc1939_5_list_and_stat_skip_deleted(inst):
    user = new_user(inst)
    sizes = [len(deliver(inst, user)) for _ in range(3)]
    with logged_in(inst, user) as p:
        p.ok("DELE 2")
        assert p.ok("STAT") == b"+OK 2 %d" % (sizes[0] + sizes[2])
        p.ok("LIST")
        assert p.multi() == b"1 %d\r\n3 %d\r\n" % (sizes[0], sizes[2])
        assert p.ok("LIST 3") == b"+OK 3 %d" % sizes[2]
        assert p.err("LIST 2") == b"-ERR message 2 already deleted"
        assert p.err("RETR 2") == b"-ERR message 2 already deleted"
        assert p.err("DELE 2") == b"-ERR message 2 already deleted"
        assert p.err("LIST 4") == b"-ERR no such message, only 3 messages in maildrop"
        assert p.err("RETR 9") == b"-ERR no such message, only 3 messages in maildrop"
        p.err("RETR 0")
        p.err("RETR x")
        p.ok("UIDL")
        assert len(p.multi().split(b"\r\n")) == 3   # two lines + trailing empty


def test_rfc1939_5_rset_unmarks(inst):
    user = new_user(inst)
    deliver(inst, user)
    deliver(inst, user)
    with logged_in(inst, user) as p:
        p.ok("DELE 1")
        p.ok("DELE 2")
        assert p.ok("STAT").startswith(b"+OK 0 0")
        assert p.ok("RSET").startswith(b"+OK maildrop has 2 messages")
        assert p.ok("STAT").startswith(b"+OK 2 ")
        p.ok("QUIT")
    with logged_in(inst, user) as p:
        assert p.ok("STAT").startswith(b"+OK 2 ")


def test_rfc1939_7_uidl_stable_across_sessions(inst):
    user = new_user(inst)
    for _ in range(3):
        deliver(inst, user)
    with logged_in(inst, user) as p:
        p.ok("UIDL")
        first = dict(l.split(b" ") for l in p.multi().split(b"\r\n") if l)
        for uid in first.values():
            assert re.match(rb"^[0-9a-f]+\.[0-9a-f]+$", uid), uid
            assert 1 <= len(uid) <= 70
        assert len(set(first.values())) == 3
        assert p.ok("UIDL 2") == b"+OK 2 " + first[b"2"]
        p.ok("DELE 1")
        p.ok("QUIT")
    with logged_in(inst, user) as p:
        p.ok("UIDL")
        second = dict(l.split(b" ") for l in p.multi().split(b"\r\n") if l)
        assert second == {b"1": first[b"2"], b"2": first[b"3"]}


def test_rfc1939_7_top(inst):
    user = new_user(inst)
    stored = deliver(inst, user, body="b1\r\nb2\r\n.b3\r\nb4\r\n")
    head, body = stored.split(b"\r\n\r\n", 1)
    with logged_in(inst, user) as p:
        p.ok("TOP 1 0")
        assert unstuff(p.multi()) == head + b"\r\n\r\n"
        p.ok("TOP 1 3")
        wire = p.multi()
        assert wire.endswith(b"\r\nb1\r\nb2\r\n..b3\r\n"), wire
        assert unstuff(wire) == head + b"\r\n\r\nb1\r\nb2\r\n.b3\r\n"
        p.ok("TOP 1 100")
        assert unstuff(p.multi()) == stored
        p.err("TOP 2 1")
        p.err("TOP 1")


def test_rfc1225_last(inst):
    user = new_user(inst)
    for _ in range(3):
        deliver(inst, user)
    with logged_in(inst, user) as p:
        assert p.ok("LAST") == b"+OK 0"
        p.ok("RETR 2")
        p.multi()
        assert p.ok("LAST") == b"+OK 2"
        p.ok("RETR 1")
        p.multi()
        assert p.ok("LAST") == b"+OK 2"
        p.ok("RSET")
        assert p.ok("LAST") == b"+OK 0"


def test_wrong_state_commands(inst):
    user = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        for c in ("STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "LAST"):
            p.err(c)
        p.err("PASS " + PASSWORD)       # no USER yet
        p.err("XYZZY")
        p.login(user)
        p.err("USER " + user)
        p.err("PASS " + PASSWORD)
        p.err("AUTH PLAIN")
        p.err("STLS")
        p.err("UTF8")
        p.ok("NOOP")


def test_rfc6856_utf8_command(inst):
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        assert "UTF8 USER" in p.capa()
        p.ok("UTF8")
        assert p.ok("USER j\u00fcrgen@" + DOMAIN) == b"+OK send PASS"


def test_rfc2449_line_length_limit(inst):
    user = new_user(inst)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        r = p.err("NOOP " + "x" * 300)
        assert b"too long" in r, r
        # Exactly 255 octets with CRLF is still a command ...
        assert p.ok("USER " + "a" * 248) == b"+OK send PASS"
        # ... 256 is not.
        assert b"too long" in p.err("USER " + "a" * 249)
        p.send("USER " + "a" * 100000 + "\r\n")
        assert b"too long" in p.status()
        p.login(user)       # still in sync afterwards
        p.ok("STAT")


def test_pipelining(inst):
    user = new_user(inst)
    stored = deliver(inst, user, body="x\r\n" * 1000)
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        p.send("USER %s\r\nPASS %s\r\nSTAT\r\nRETR 1\r\nLIST 1\r\nNOOP\r\nQUIT\r\n" % (user, PASSWORD))
        assert p.status().startswith(b"+OK")
        assert p.status().startswith(b"+OK maildrop locked")
        assert p.status() == b"+OK 1 %d" % len(stored)
        assert p.status() == b"+OK %d octets" % len(stored)
        assert unstuff(p.multi()) == stored
        assert p.status() == b"+OK 1 %d" % len(stored)
        assert p.status() == b"+OK"
        assert p.status().startswith(b"+OK pochta POP3 server signing off")


def test_large_message_streamed_byte_for_byte(inst):
    user = new_user(inst)
    # ~4 MB, every other line starting with a dot
    body = b"".join(b"..%07d dotted line of a large message\r\nplain line %07d\r\n" % (i, i)
                    for i in range(50000))
    stored = deliver(inst, user, body=body)
    assert len(stored) > 3_000_000
    c = poplib.POP3_SSL("127.0.0.1", pop3_ports(inst)[1], context=tls_client_context(), timeout=IO_TIMEOUT)
    try:
        c.user(user)
        c.pass_(PASSWORD)
        resp, lines, _ = c.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == stored
        c.quit()
    finally:
        c.close()


# --- UPDATE, lock, snapshot ------------------------------------------------------

def test_rfc1939_6_dele_takes_effect_only_at_quit(inst):
    user = new_user(inst)
    stored = deliver(inst, user)
    with logged_in(inst, user) as p:
        p.ok("DELE 1")
        # A second, concurrent look at the store: the file is still there.
        assert inst.find(stored[-60:]), "DELE removed the message before QUIT"
        p.ok("QUIT")
        assert p.closed()
    assert not inst.find(stored[-60:]), "message still stored after DELE + QUIT"


def test_rfc1939_6_dropped_connection_deletes_nothing(inst):
    user = new_user(inst)
    deliver(inst, user)
    deliver(inst, user)
    p = logged_in(inst, user)
    p.ok("DELE 1")
    p.ok("DELE 2")
    p.close()
    deadline = time.monotonic() + 10
    while True:     # the lock is released once the server noticed
        with Pop(pop3_ports(inst)[1], tls=True) as q:
            q.ok("USER " + user)
            r = q.cmd("PASS " + PASSWORD)
            if r.startswith(b"+OK"):
                assert q.ok("STAT").startswith(b"+OK 2 ")
                break
            assert b"[IN-USE]" in r, r
            assert time.monotonic() < deadline, "maildrop still locked 10 s after the drop"
        time.sleep(0.2)


def test_rfc1939_8_second_session_in_use(inst):
    user = new_user(inst)
    deliver(inst, user)
    with logged_in(inst, user) as p:
        with Pop(pop3_ports(inst)[1], tls=True) as q:
            q.ok("USER " + user)
            r = q.err("PASS " + PASSWORD)
            assert r.startswith(b"-ERR [IN-USE]"), r
        p.ok("QUIT")
        assert p.closed()
    with logged_in(inst, user) as q:
        q.ok("STAT")


def test_rfc1939_4_snapshot_at_login(inst):
    user = new_user(inst)
    first = deliver(inst, user)
    with logged_in(inst, user) as p:
        later = deliver(inst, user)
        assert p.ok("STAT") == b"+OK 1 %d" % len(first)
        p.err("RETR 2")
        p.ok("DELE 1")
        p.ok("QUIT")
    with logged_in(inst, user) as p:
        assert p.ok("STAT") == b"+OK 1 %d" % len(later)
        p.ok("RETR 1")
        assert unstuff(p.multi()) == later


# --- other clients -------------------------------------------------------------------

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, timeout=60)
    assert r.returncode == 0, "curl %s exited %d: %s" % (args, r.returncode, r.stderr.decode(errors="replace"))
    return r.stdout


@needs_curl
def test_curl_pop3_stls_and_pop3s(inst):
    user = new_user(inst)
    stored = deliver(inst, user, body=".dot\r\nbody\r\n")
    p_port, ps_port = pop3_ports(inst)
    got = curl("--ssl-reqd", "-k", "-u", "%s:%s" % (user, PASSWORD), "pop3://127.0.0.1:%d/1" % p_port)
    assert got == stored
    got = curl("-k", "-u", "%s:%s" % (user, PASSWORD), "pop3s://127.0.0.1:%d/1" % ps_port)
    assert got == stored
    listing = curl("-k", "-u", "%s:%s" % (user, PASSWORD), "pop3s://127.0.0.1:%d/" % ps_port)
    assert listing.strip() == b"1 %d" % len(stored)


# --- configuration-dependent behaviour ---------------------------------------------------

def test_plaintext_auth_loopback(make_pop3_instance):
    i = make_pop3_instance({"plaintext_auth_loopback": "yes"})
    user = new_user(i)
    stored = deliver(i, user)
    p_port, _ = pop3_ports(i)
    with Pop(p_port) as p:
        caps = p.capa()
        assert "USER" in caps and "SASL PLAIN LOGIN" in caps and "STLS" in caps
        p.login(user)
        p.ok("RETR 1")
        assert unstuff(p.multi()) == stored
    if shutil.which("curl"):
        assert curl("-u", "%s:%s" % (user, PASSWORD), "pop3://127.0.0.1:%d/1" % p_port) == stored


@pytest.mark.security
def test_rfc1939_3_autologout_closes_without_update(make_pop3_instance):
    i = make_pop3_instance({"pop3_timeout": "2s"})
    user = new_user(i)
    deliver(i, user)
    p = logged_in(i, user)
    p.ok("DELE 1")
    assert p.closed(timeout=10), "idle session not closed"
    assert p.buf == b"", "RFC 1939 3: no response on autologout, got %r" % p.buf
    p.close()
    time.sleep(0.3)
    with logged_in(i, user) as q:
        assert q.ok("STAT").startswith(b"+OK 1 ")


@pytest.mark.security
def test_failed_logins_limited(make_pop3_instance):
    i = make_pop3_instance({"auth_max_failures": 2, "auth_failure_delay": "0"})
    user = new_user(i)
    with Pop(pop3_ports(i)[1], tls=True) as p:
        for _ in range(2):
            p.ok("USER " + user)
            assert p.err("PASS nope").startswith(b"-ERR [AUTH]")
        p.ok("USER " + user)
        r = p.err("PASS " + PASSWORD)
        assert r.startswith(b"-ERR [SYS/TEMP]") and b"too many" in r, r


def test_rfc2449_login_delay(make_pop3_instance):
    i = make_pop3_instance({"pop3_login_delay": "1h"})
    user = new_user(i)
    with Pop(pop3_ports(i)[1], tls=True) as p:
        assert "LOGIN-DELAY 3600" in p.capa()
        p.login(user)
        p.ok("QUIT")
    with Pop(pop3_ports(i)[1], tls=True) as p:
        p.ok("USER " + user)
        assert p.err("PASS " + PASSWORD).startswith(b"-ERR [LOGIN-DELAY]")


def test_shutdown_closes_idle_sessions_deleting_nothing(make_pop3_instance):
    i = make_pop3_instance()
    user = new_user(i)
    deliver(i, user)
    p = logged_in(i, user)
    p.ok("DELE 1")
    rc = i.stop()
    assert rc == 0, i.stderr()
    assert p.closed()
    assert p.buf.startswith(b"-ERR [SYS/TEMP]"), p.buf
    p.close()
    i.start()
    with logged_in(i, user) as q:
        assert q.ok("STAT").startswith(b"+OK 1 ")
