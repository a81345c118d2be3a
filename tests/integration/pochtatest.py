"""Helpers for pochta's black-box integration tests.

Everything here drives the built binaries from the outside, the way an
operator or a remote client would: `pochta init` / `pochta user add` to
create an instance, `pochtad` in the foreground, plain sockets (and
smtplib, swaks, curl in the tests) to talk to it, and a search of the files
under DIR/data/mail/ to read delivered mail back.  Nothing here knows the
store's layout: a message is found by a unique marker it contains.
"""

import base64
import random
import email.utils
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOSTNAME = "mx.example.test"
DOMAIN = "example.test"
OTHER_DOMAIN = "other.test"
USERS = {
    "alice@example.test": "alice-Secret-1",
    "bob@example.test": "bob-Secret-2",
}
ALICE = "alice@example.test"
BOB = "bob@example.test"

# The greeting and the answers to HELO/EHLO carry no enhanced status code
# (RFC 2034 section 3); neither do the 334 SASL challenges (RFC 4954: the
# text is base64) nor, by universal practice, the 354 go-ahead.
ESC_RE = re.compile(rb"^(\d{3})[ -](\d)\.(\d{1,3})\.(\d{1,3})(?:[ \r]|$)")
SANITIZER_RE = re.compile(
    r"ERROR: (?:Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer"
    r"|runtime error:|Sanitizer has encountered a fatal error|SUMMARY: \w+Sanitizer")

START_TIMEOUT = float(os.environ.get("POCHTA_START_TIMEOUT", "20"))
IO_TIMEOUT = float(os.environ.get("POCHTA_IO_TIMEOUT", "15"))
DELIVERY_TIMEOUT = float(os.environ.get("POCHTA_DELIVERY_TIMEOUT", "10"))


def build_dir():
    b = Path(os.environ.get("POCHTA_BUILD", "build"))
    if not b.is_absolute():
        b = REPO / b
    return b


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def unique(tag="m"):
    return "%s-%s" % (tag, uuid.uuid4().hex)


def make_message(marker, sender="sender@remote.test", rcpt=ALICE, subject=None, body=None):
    """A small RFC 5322 message with CRLF line endings whose Message-ID is
    the marker, so it can be found on disk."""
    if body is None:
        body = "Hello from the pochta integration tests.\r\nmarker %s\r\n" % marker
    hdr = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@tests.pochta>\r\n\r\n"
           % (sender, rcpt, subject or "test " + marker,
              email.utils.formatdate(localtime=False), marker))
    out = hdr.encode() + (body.encode("utf-8") if isinstance(body, str) else body)
    return out


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


STD_PORTS = (25, 587, 465, 110, 995, 143, 993)
# A random start keeps two test runs on one machine (a developer's and a
# helper's) from racing for the same ports.
_next_base = [21000 + 100 * random.SystemRandom().randrange(100)]


def allocate_port_base():
    """A base N with N+25, N+587 ... all free, from 21000 up in steps of 100
    (below the kernel's ephemeral range), never the same twice per run."""
    for _ in range(400):
        base = _next_base[0]
        _next_base[0] += 100
        if _next_base[0] > 31000:
            _next_base[0] = 21000
        if all(port_free(base + p) for p in STD_PORTS):
            return base
    raise RuntimeError("no free port base found")


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


_outbound_opts = [None]   # does `pochta init` take --dns/--outbound-port?


class Instance:
    """One pochta instance in a fresh temporary directory."""

    def __init__(self, extra_conf=None, domains=(DOMAIN, OTHER_DOMAIN), init_args=()):
        self.dir = None
        self.build = build_dir()
        self.pochta = self.build / "pochta"
        self.pochtad = self.build / "pochtad"
        for b in (self.pochta, self.pochtad):
            if not os.access(b, os.X_OK):
                raise AssertionError("%s is missing or not executable (set POCHTA_BUILD)" % b)
        # Not pytest's tmp_path: its parents are 0700 and the daemon may run
        # as the unprivileged user "pochta".
        self.proc = None
        self.procs = []          # every pochtad started, for diagnostics
        self.logs = []
        self.cli_log = []
        self.base = allocate_port_base()
        self.smtp_port = self.base + 25
        self.submission_port = self.base + 587
        self.submissions_port = self.base + 465
        # Outbound mail (relayed or aliased to elsewhere.test) must stay in
        # the queue, deferred: DNS and SMTP go to a port nobody listens on.
        # Older builds without these options get a plain init.
        dead = "127.0.0.1:%d" % (self.base + 99)
        blackhole = ["--dns", dead, "--outbound-port", str(self.base + 99)]
        tries = [blackhole, []] if _outbound_opts[0] is not False else [[]]
        for extra in tries:
            self.dir = Path(tempfile.mkdtemp(prefix="pochta-it-"))
            # Not pytest's tmp_path: its parents are 0700 and the daemon
            # may run as the unprivileged user "pochta".
            os.chmod(self.dir, 0o755)
            self.conf = self.dir / "pochta.conf"
            args = ["init", str(self.dir), "--hostname", HOSTNAME]
            for d in domains:
                args += ["--domain", d]
            args += ["--port-base", str(self.base)] + list(init_args) + extra
            try:
                r = self.cli(*args, use_conf=False, check=(extra == tries[-1]))
            except BaseException:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            if r.returncode == 0:
                if extra:
                    _outbound_opts[0] = True
                break
            _outbound_opts[0] = False
            shutil.rmtree(self.dir, ignore_errors=True)
        self.outbound_blackholed = bool(_outbound_opts[0])
        try:
            assert self.conf.exists(), "pochta init did not write %s" % self.conf
            if extra_conf:
                self.append_conf(extra_conf)
            for user, pw in USERS.items():
                self.add_user(user, pw)
        except BaseException:
            self.close()
            raise

    # --- administration -------------------------------------------------
    def cli(self, *args, use_conf=True, input=None, check=True, timeout=60):
        cmd = [str(self.pochta)]
        if use_conf:
            cmd += ["-c", str(self.conf)]
        cmd += [str(a) for a in args]
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
        self.cli_log.append((cmd, r.returncode, r.stdout, r.stderr))
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s" % (
                " ".join(cmd), r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")))
        return r

    def add_user(self, user, password):
        self.cli("user", "add", user, "--password-stdin", input=(password + "\n").encode())

    def add_alias(self, src, *targets):
        self.cli("alias", "add", src, *targets)

    def append_conf(self, lines):
        """Append "key = value" lines; return the 1-based number of the first."""
        text = self.conf.read_text()
        if not text.endswith("\n"):
            text += "\n"
        first = text.count("\n") + 1
        if isinstance(lines, dict):
            lines = ["%s = %s" % kv for kv in lines.items()]
        elif isinstance(lines, str):
            lines = [lines]
        text += "".join(l + "\n" for l in lines)
        self.conf.write_text(text)
        return first

    def queue_list(self):
        r = self.cli("queue", "list")
        return r.stdout.decode("utf-8", errors="replace")

    # --- the daemon ------------------------------------------------------
    @property
    def stderr_path(self):
        return self.dir / ("pochtad.%d.stderr" % len(self.logs))

    def spawn(self):
        """Start pochtad without waiting; return the Popen."""
        path = self.stderr_path
        self.logs.append(path)
        err = open(path, "wb")
        proc = subprocess.Popen([str(self.pochtad), "-c", str(self.conf)],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
        err.close()
        self.procs.append(proc)
        return proc

    def rebase(self):
        """Move every listener (and the black-holed outbound ports) to a new
        free port base: another test run on the machine took one of ours
        between the check and pochtad's bind."""
        old, new = self.base, allocate_port_base()

        def shift(m):
            port = int(m.group(2))
            return m.group(1) + str(port - old + new if old <= port < old + 1000 else port)

        text = self.conf.read_text()
        text = re.sub(r"(127\.0\.0\.1:)(\d+)", shift, text)
        text = re.sub(r"(outbound_port = )(\d+)", shift, text)
        self.conf.write_text(text)
        self.base = new
        self.smtp_port = new + 25
        self.submission_port = new + 587
        self.submissions_port = new + 465

    def _wait_started(self, proc):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if " started as uid " in self.stderr():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def start(self):
        assert self.proc is None
        for attempt in range(5):
            proc = self.spawn()
            # A port answering is not enough: another program may hold it
            # while our daemon failed to bind.  pochtad logs "started"
            # only after every listener is bound.
            ok = self._wait_started(proc)
            for port in (self.smtp_port, self.submission_port, self.submissions_port) if ok else ():
                if not wait_port(port, START_TIMEOUT, proc):
                    ok = False
                    break
            if ok:
                self.proc = proc
                return self
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if "Address already in use" in self.stderr() and attempt < 4:
                self.rebase()
                continue
            raise AssertionError("pochtad did not start (exit %s):\n%s" % (proc.returncode, self.stderr()))

    def wait_log(self, needle, timeout=30):
        """Wait until the current daemon's log contains needle; return the log."""
        deadline = time.monotonic() + timeout
        while needle not in self.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.stderr()

    def stderr(self, index=-1):
        if not self.logs:
            return ""
        try:
            return self.logs[index].read_text(errors="replace")
        except OSError:
            return ""

    def all_stderr(self):
        return "\n".join("--- %s ---\n%s" % (p.name, p.read_text(errors="replace"))
                         for p in self.logs if p.exists())

    def check_sanitizers(self):
        text = self.all_stderr()
        m = SANITIZER_RE.search(text)
        assert not m, "sanitizer report in pochtad stderr:\n%s" % text[-20000:]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop the running daemon with `sig`; return its exit status."""
        proc, self.proc = self.proc, None
        assert proc is not None, "pochtad is not running"
        if proc.poll() is not None:
            raise AssertionError("pochtad had already exited with %s:\n%s" % (proc.returncode, self.stderr()))
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("pochtad did not exit within %ss of signal %d:\n%s" % (timeout, sig, self.stderr()))

    def kill9(self):
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait()

    def restart(self):
        rc = self.stop()
        assert rc == 0, "pochtad exited %s on SIGTERM:\n%s" % (rc, self.stderr())
        return self.start()

    def assert_alive(self):
        assert self.proc is not None and self.proc.poll() is None, \
            "pochtad died (exit %s):\n%s" % (self.proc and self.proc.returncode, self.stderr())

    def close(self):
        """Teardown: SIGTERM, exit 0, no sanitizer reports."""
        try:
            if self.proc is not None:
                rc = self.stop()
                assert rc == 0, "pochtad exited %s on SIGTERM (expected 0):\n%s" % (rc, self.stderr())
            self.check_sanitizers()
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if self.dir and os.environ.get("POCHTA_KEEP") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)

    # --- reading stored mail --------------------------------------------
    @property
    def data_dir(self):
        return self.dir / "data"

    @property
    def mail_dir(self):
        return self.data_dir / "mail"

    def _grep(self, root, needle, skip_sqlite=False):
        found = []
        for dirpath, _dirs, files in os.walk(root):
            for fn in files:
                p = Path(dirpath) / fn
                if not p.is_file():     # sockets such as run/sendmail.sock
                    continue
                if skip_sqlite and (fn.endswith(("-wal", "-shm", "-journal")) or is_sqlite(p)):
                    continue
                try:
                    b = p.read_bytes()
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    continue
                if needle in b:
                    found.append((p, b))
        return sorted(found)

    def find(self, marker):
        """Every stored message under data/mail/ containing `marker`:
        [(path, bytes)].  A stored message begins with Return-Path, which
        tells it apart from any index or cache file that may quote it."""
        if isinstance(marker, str):
            marker = marker.encode()
        return [(p, b) for p, b in self._grep(self.mail_dir, marker) if b.startswith(b"Return-Path:")]

    def wait_messages(self, marker, count=1, timeout=DELIVERY_TIMEOUT):
        """Wait until at least `count` stored files contain `marker`, then a
        moment longer so that extra copies would show too."""
        deadline = time.monotonic() + timeout
        found = self.find(marker)
        while len(found) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            found = self.find(marker)
        time.sleep(0.3)
        found = self.find(marker)
        assert len(found) >= count, "expected %d stored message(s) with %r, found %d under %s" % (
            count, marker, len(found), self.mail_dir)
        return found

    def wait_message(self, marker, timeout=DELIVERY_TIMEOUT):
        found = self.wait_messages(marker, 1, timeout)
        assert len(found) == 1, "expected exactly one stored copy of %r, found %d: %s" % (
            marker, len(found), [str(p) for p, _ in found])
        return found[0][1]

    def stored_anywhere(self, marker):
        """Files anywhere under data/ (mailboxes, queue, temp) containing
        `marker`, ignoring SQLite files whose free pages may hold old bytes."""
        if isinstance(marker, str):
            marker = marker.encode()
        return self._grep(self.data_dir, marker, skip_sqlite=True)

    def assert_not_stored(self, marker, settle=0.7):
        time.sleep(settle)
        found = self.stored_anywhere(marker)
        assert not found, "refused message was stored: %s" % [str(p) for p, _ in found]

    def mailbox_of(self, path):
        """The store's layout is not known; a mailbox is taken to be the
        first two directory levels below data/mail (or the first, if the
        files lie only one level down)."""
        return Path(path).relative_to(self.mail_dir).parts[:-1][:2]

    def files_outside_mail_and_queue(self):
        out = set()
        for dirpath, dirs, files in os.walk(self.data_dir):
            rel = Path(dirpath).relative_to(self.data_dir)
            if rel.parts and rel.parts[0] in ("mail", "queue"):
                continue
            for fn in files:
                if fn.endswith(("-wal", "-shm", "-journal")):
                    continue
                out.add(str(rel / fn))
        return out


_live = []


def new_instance(extra_conf=None, aliases=(), start=True, init_args=()):
    """Create (and by default start) an instance; close_instance() ends it."""
    inst = Instance(extra_conf=extra_conf, init_args=init_args)
    try:
        for src, *targets in aliases:
            inst.add_alias(src, *targets)
        if start:
            inst.start()
    except BaseException:
        inst.close()
        raise
    _live.append(inst)
    return inst


def close_instance(inst):
    try:
        inst.close()
    finally:
        if inst in _live:
            _live.remove(inst)


def close_all(*things):
    """Close instances (close_instance) and helper servers (.close()) in
    order, all of them even when one fails; the first failure is raised."""
    first = None
    for t in things:
        try:
            close_instance(t) if isinstance(t, Instance) else t.close()
        except Exception as e:  # noqa: BLE001 - re-raised below
            first = first or e
    if first:
        raise first


def live_instances():
    return list(_live)


def is_sqlite(p):
    try:
        with open(p, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


# --- stored message checks ----------------------------------------------

def split_trace(stored):
    """Split a stored message into (return_path_line, received_header,
    rest).  The Received header is unfolded (CRLF + WSP -> WSP)."""
    assert stored.startswith(b"Return-Path: "), "stored message does not begin with Return-Path: %r" % stored[:200]
    eol = stored.index(b"\r\n")
    rp = stored[:eol]
    rest = stored[eol + 2:]
    assert rest.startswith(b"Received: "), "second header is not Received: %r" % rest[:300]
    i = 0
    while True:
        j = rest.index(b"\r\n", i)
        if rest[j + 2:j + 3] in (b" ", b"\t"):
            i = j + 2
            continue
        break
    received = rest[:j]
    assert b"\n" not in received.replace(b"\r\n", b""), "bare CR/LF inside Received: %r" % received
    unfolded = re.sub(rb"\r\n[ \t]", b" ", received).decode("utf-8")
    return rp.decode("utf-8"), unfolded, rest[j + 2:]


def check_stored(stored, sent, sender, rcpt, helo=None, proto=None, queue_id=None):
    """Assert the stored message is Return-Path + Received + exactly `sent`.
    Return the unfolded Received header."""
    rp, received, rest = split_trace(stored)
    assert rp == "Return-Path: <%s>" % sender, "Return-Path is %r, expected <%s>" % (rp, sender)
    assert rest == sent, "stored message body differs from what was sent:\nsent   %r\nstored %r" % (
        sent[:2000], rest[:2000])
    check_received(received, rcpt, helo, proto, queue_id)
    return received


def check_received(received, rcpt=None, helo=None, proto=None, queue_id=None):
    """RFC 5321 4.4 trace header: from, by, with, id, for, and a date."""
    assert received.startswith("Received: from "), received
    # Comments (TLS details, "(pochta)", the reverse name) may contain any
    # words; the clauses are read from the text outside them.
    bare = strip_comments(received.split(";")[0] if ";" in received else received)
    if helo is not None:
        assert re.search(r"\bfrom %s(\s|$)" % re.escape(helo), bare), \
            "Received lacks 'from %s': %s" % (helo, received)
    assert "127.0.0.1" in received, "Received lacks the client IP: %s" % received
    assert re.search(r"\bby %s(\s|$)" % re.escape(HOSTNAME), bare), received
    m = re.search(r"\bwith (\S+)", bare)
    assert m, "Received lacks 'with': %s" % received
    if proto is not None:
        assert m.group(1) == proto, "Received says 'with %s', expected %s (RFC 3848): %s" % (
            m.group(1), proto, received)
    m = re.search(r"\bid (\S+)", bare)
    assert m, "Received lacks 'id': %s" % received
    if queue_id is not None:
        assert m.group(1) == queue_id, "Received id %r != queue id %r" % (m.group(1), queue_id)
    if rcpt is not None:
        assert re.search(r"\bfor <%s>" % re.escape(rcpt), bare), \
            "Received lacks 'for <%s>': %s" % (rcpt, received)
    assert ";" in received, "Received lacks '; date': %s" % received
    date = received.rsplit(";", 1)[1].strip()
    dt = email.utils.parsedate_to_datetime(date)
    if dt.tzinfo is None:       # "-0000": UTC, local zone not stated (RFC 5322 3.3)
        dt = dt.replace(tzinfo=timezone.utc)
    skew = abs((datetime.now(timezone.utc) - dt).total_seconds())
    assert skew < 300, "Received date %r is %ds off" % (date, skew)


def strip_comments(text):
    """Remove RFC 5322 comments (nested parentheses, quoted pairs)."""
    out, depth, esc = [], 0, False
    for ch in text:
        if esc:
            esc = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            esc = True
            if depth == 0:
                out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def queue_id_of(reply_text):
    m = re.search(r"queued as (\S+)", reply_text)
    assert m, "250 reply lacks 'queued as <ID>': %r" % reply_text
    return m.group(1)


# --- a raw SMTP client ----------------------------------------------------

class Reply:
    def __init__(self, lines):
        self.lines = lines          # raw bytes lines without CRLF
        self.code = int(lines[-1][:3])

    @property
    def text(self):
        return "\n".join(l.decode("utf-8", "replace") for l in self.lines)

    @property
    def first(self):
        return self.lines[0].decode("utf-8", "replace")

    def keywords(self):
        """EHLO keywords (upper-cased first word of each line after the first)."""
        return {l[4:].split(b" ")[0].decode().upper(): l[4:].decode() for l in self.lines[1:]}

    def __repr__(self):
        return "Reply(%r)" % self.text


class Peer:
    """A line-oriented SMTP client over a plain socket, for tests that need
    exact control of bytes and timing."""

    def __init__(self, port, tls=False, timeout=IO_TIMEOUT, greet=True):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.tls = False
        self.transcript = []
        if tls:
            self.sock = tls_client_context().wrap_socket(self.sock)
            self.tls = True
        self.greeting = self.reply() if greet else None

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
            data = data.encode("utf-8")
        self.transcript.append(b"C: " + data)
        self.sock.sendall(data)

    def _readline(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by server; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        assert line.endswith(b"\r"), "reply line not terminated by CRLF: %r" % line
        return line[:-1]

    def reply(self):
        lines = []
        while True:
            line = self._readline()
            self.transcript.append(b"S: " + line)
            assert re.match(rb"^\d{3}[ -]", line) or re.match(rb"^\d{3}$", line), "malformed reply line %r" % line
            if lines:
                assert line[:3] == lines[0][:3], "multi-line reply changes code: %r" % (lines + [line])
            lines.append(line)
            if len(line) == 3 or line[3:4] == b" ":
                return Reply(lines)

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def expect(self, line, code, esc=None):
        r = self.cmd(line)
        check_code(r, code, esc, line)
        return r

    def ehlo(self, name="client.remote.test"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, r
        self.ehlo_reply = r
        return r

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.code == 220, "STARTTLS refused: %r" % r
        assert not self.buf, "server sent data after 220 to STARTTLS: %r" % self.buf
        self.sock = tls_client_context().wrap_socket(self.sock)
        self.tls = True
        return r

    def auth_plain(self, user, password, authzid=""):
        tok = base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()
        return self.cmd("AUTH PLAIN " + tok)

    def auth_login(self, user, password):
        r = self.cmd("AUTH LOGIN")
        if r.code != 334:
            return r
        assert base64.b64decode(r.lines[0][4:]).lower().startswith(b"user"), r
        r = self.cmd(base64.b64encode(user.encode()).decode())
        if r.code != 334:
            return r
        assert base64.b64decode(r.lines[0][4:]).lower().startswith(b"pass"), r
        return self.cmd(base64.b64encode(password.encode()).decode())

    def data(self, content, dotstuff=True):
        """DATA with `content` (bytes ending in CRLF); return the final reply."""
        r = self.cmd("DATA")
        assert r.code == 354, "DATA not accepted: %r" % r
        if dotstuff:
            content = re.sub(rb"(?m)^\.", b"..", content)
        self.send(content + b".\r\n")
        return self.reply()

    def read_until_closed(self, timeout=5):
        """Read everything until the server closes; return the bytes."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError("server did not close the connection; got %r" % data)
            except (ConnectionResetError, ssl.SSLError):
                return data
            if not chunk:
                return data
            data += chunk

    def replies_within(self, seconds):
        """Collect whatever complete replies arrive within `seconds`."""
        out = []
        end = time.monotonic() + seconds
        old = self.sock.gettimeout()
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                try:
                    out.append(self.reply())
                except (socket.timeout, EOFError, ConnectionResetError):
                    break
        finally:
            self.sock.settimeout(old)
        return out


def check_code(r, code, esc=None, what=""):
    codes = code if isinstance(code, (tuple, list, set)) else (code,)
    assert r.code in codes, "%s: expected %s, got %r" % (what, code, r)
    if esc is not None:
        escs = esc if isinstance(esc, (tuple, list, set)) else (esc,)
        got = r.lines[0][4:].split(b" ")[0].decode()
        assert got in escs, "%s: expected enhanced code %s, got %r" % (what, esc, r)


def has_esc(line):
    """True if a reply line carries an RFC 3463 enhanced code whose class
    matches the reply's first digit."""
    m = ESC_RE.match(line)
    return bool(m) and m.group(1)[:1] == m.group(2)


def deliver_raw(port, content, sender="sender@remote.test", rcpts=(ALICE,), helo="client.remote.test",
                tls=False, starttls=False, auth=None):
    """One complete transaction over a raw socket; return the queue id."""
    with Peer(port, tls=tls) as p:
        p.ehlo(helo)
        if starttls:
            p.starttls()
            p.ehlo(helo)
        if auth:
            r = p.auth_plain(*auth)
            check_code(r, 235, "2.7.0", "AUTH")
        p.expect("MAIL FROM:<%s>" % sender, 250)
        for rc in rcpts:
            p.expect("RCPT TO:<%s>" % rc, 250)
        r = p.data(content)
        check_code(r, 250, None, "end of DATA")
        qid = queue_id_of(r.text)
        p.cmd("QUIT")
        return qid
