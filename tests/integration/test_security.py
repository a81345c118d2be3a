"""Security regression set: one test (or parametrised group) per known class
of mail-server bug, named after the class and the CVE or advisory where one
exists.  Every test here, and the older ones elsewhere that cover a class,
carries the `security` marker:

    POCHTA_BUILD=build python3 -m pytest -m security

Classes and where they are proved:
- open relay ............. test_open_relay_* here; test_smtp_refusals.py
                           test_rfc5321_3_6_2_*, test_rfc6409_submission_requires_auth
- SMTP smuggling ......... test_smtp_refusals.py::test_smtp_smuggling (six endings,
  (CVE-2023-51764/5/6)     DATA); test_smtp_smuggling_bdat_* here (BDAT)
- STARTTLS injection ..... test_smtp_refusals.py::test_rfc3207_starttls_command_injection,
  (CVE-2011-0411)          test_pop3.py::test_rfc2595_stls_discards_pipelined_commands,
                           test_imap.py::test_starttls_discards_pipelined_commands
- IMAP literal exhaustion  test_imap_literal_exhaustion_* here;
                           test_imap.py::test_literal_over_limit_sync_is_refused_and_session_goes_on
- mailbox path traversal . test_mailbox_path_traversal_* here;
                           test_imap.py::test_mailbox_name_tricks_are_refused
- header injection ....... test_header_injection_* here
- AUTH before TLS ........ test_auth_before_tls_* here; test_smtp_refusals.py (587, 25),
                           test_pop3.py::test_plaintext_login_refused_without_tls,
                           test_imap.py::test_greeting_has_capability_and_logindisabled_before_tls
- AUTH guessing .......... test_auth_guessing_* here (IMAP, shared across protocols);
                           test_smtp_refusals.py::test_rfc4954_failure_limit,
                           test_pop3.py::test_failed_logins_limited
- bare CR / LF / NUL ..... test_bare_* here; test_smtp_refusals.py::test_rfc5321_nul_in_data,
                           test_nul_in_command
- slow clients ........... test_slow_client_* here; test_smtp_session.py
                           test_rfc5321_4_5_3_2_idle_timeout/_data_timeout,
                           test_pop3.py::test_rfc1939_3_autologout_closes_without_update,
                           test_imap.py::test_idle_timeout_says_bye
- start-up failure ....... test_second_daemon_on_same_ports_* here
"""

import base64
import json
import os
import re
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

import pochtatest
from pochtatest import (ALICE, BOB, USERS, Peer, check_code, close_instance, deliver_raw, make_message,
                        new_instance, split_trace, tls_client_context, unique, wait_port)
from test_imap import Raw, imap_ports
from test_pop3 import Pop, pop3_ports

pytestmark = pytest.mark.security

SENDER = "sender@remote.test"
EXTERNAL = "someone@elsewhere.test"


def start_all(extra=None):
    """An instance with every listener (SMTP, POP3, IMAP) up."""
    inst = new_instance(extra_conf=extra, start=True)
    for port in imap_ports(inst) + pop3_ports(inst):
        assert wait_port(port, 10, inst.proc), "port %d not listening:\n%s" % (port, inst.stderr())
    return inst


@pytest.fixture(scope="module")
def sec():
    i = start_all({"auth_max_failures": "1000", "auth_failure_delay": "0"})
    yield i
    close_instance(i)


@pytest.fixture
def make_sec():
    made = []

    def make(extra=None):
        i = start_all(extra)
        made.append(i)
        return i

    yield make
    errors = []
    for i in made:
        try:
            close_instance(i)
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def stored_anywhere(inst, needle):
    """Regular files under data/ containing `needle` (not SQLite files,
    whose free pages may keep old bytes; not sockets)."""
    found = []
    for dirpath, _dirs, files in os.walk(inst.data_dir):
        for fn in files:
            p = Path(dirpath) / fn
            if fn.endswith(("-wal", "-shm", "-journal")) or not p.is_file() or pochtatest.is_sqlite(p):
                continue
            try:
                b = p.read_bytes()
            except OSError:
                continue
            if needle in b:
                found.append((p, b))
    return found


def sanitized_build():
    """True when POCHTA_BUILD was configured with -Db_sanitize (the CI's
    build-asan run)."""
    info = pochtatest.build_dir() / "meson-info" / "intro-buildoptions.json"
    try:
        opts = json.loads(info.read_text())
    except (OSError, ValueError):
        return "asan" in pochtatest.build_dir().name
    for o in opts:
        if o.get("name") == "b_sanitize":
            return o.get("value") not in ("none", "", None)
    return False


# --- open relay ------------------------------------------------------------------

RELAY_TRICKS = {
    "plain": EXTERNAL,
    "percent_hack": "someone%elsewhere.test@example.test",
    "percent_hack_twice": "someone%elsewhere.test%other.test@example.test",
    "source_route": "@example.test,@other.test:someone@elsewhere.test",
    "source_route_local_last": "@elsewhere.test:alice@example.test@elsewhere.test",
    "quoted_at": "\"someone@elsewhere.test\"@example.test",
    "quoted_percent": "\"someone%elsewhere.test\"@example.test",
    "double_at": "someone@elsewhere.test@example.test",
    "bang_path": "elsewhere.test!someone@example.test",
    "bang_path_no_domain": "elsewhere.test!someone",
    "trailing_dot": "someone@elsewhere.test.",
    "ip_literal_loopback": "someone@[127.0.0.1]",
    "ip_literal_v6": "someone@[IPv6:::1]",
    "local_domain_as_suffix": "someone@evil-example.test",
    "local_domain_as_prefix": "someone@example.test.elsewhere.test",
    "escaped_at": "someone\\@elsewhere.test@example.test",
}


@pytest.mark.parametrize("trick", list(RELAY_TRICKS))
def test_open_relay_port25_refuses_remote_to_remote(sec, trick):
    """Open relay (the spam-relay class; RFC 5321 3.6.2, RFC 2505): an
    unauthenticated client on port 25 names a remote recipient, directly or
    hidden behind an address form that some MTA once routed onward (percent
    hack, source route, quoted local part, bang path, IP literal, trailing
    dot, a domain that merely contains a local one).  Correct: the RCPT is
    refused with a 5xx and nothing is queued for delivery elsewhere."""
    addr = RELAY_TRICKS[trick]
    marker = unique()
    with Peer(sec.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        r = p.cmd("RCPT TO:<%s>" % addr)
        assert 500 <= r.code < 600, "RCPT TO:<%s> was not refused: %r" % (addr, r)
        # With a real local recipient beside it, the message goes only there.
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        check_code(p.data(make_message(marker)), 250, None, "DATA to the local recipient")
    sec.wait_message(marker)
    out = sec.queue_list()
    assert "elsewhere.test" not in out and "[" not in out, "relayed: %s" % out


def test_open_relay_submission_without_auth(sec):
    """Open relay through the submission ports: without AUTH, neither 587
    (after STARTTLS) nor 465 takes a remote recipient (RFC 6409 4.3)."""
    with Peer(sec.submission_port) as p:
        p.ehlo()
        p.starttls()
        p.ehlo()
        r = p.cmd("MAIL FROM:<%s>" % ALICE)
        if r.code == 250:
            r = p.cmd("RCPT TO:<%s>" % EXTERNAL)
        assert 500 <= r.code < 600, r
    with Peer(sec.submissions_port, tls=True) as p:
        p.ehlo()
        r = p.cmd("MAIL FROM:<%s>" % ALICE)
        if r.code == 250:
            r = p.cmd("RCPT TO:<%s>" % EXTERNAL)
        assert 500 <= r.code < 600, r


# --- SMTP smuggling over BDAT ---------------------------------------------------------

def test_smtp_smuggling_bdat_chunk_is_never_commands(sec):
    """SMTP smuggling (CVE-2023-51764, -51765, -51766) through CHUNKING: a
    BDAT chunk carries its exact size, so a "<CRLF>.<CRLF>" and SMTP commands
    inside it are message text.  Correct: one reply per chunk, the smuggled
    MAIL/RCPT/DATA are never run, and the message is stored with them inside
    its body."""
    m1, m2 = unique("outer"), unique("smuggled")
    inner = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<%s>\r\nDATA\r\nSubject: smuggled\r\n\r\n%s\r\n.\r\n"
             % (BOB.encode(), m2.encode()))
    chunk = make_message(m1, body="body\r\n") + b".\r\n" + inner
    with Peer(sec.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<good@remote.test>", 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        p.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        rs = p.replies_within(2)
        assert [r.code for r in rs] == [250], "one reply to one chunk expected: %r" % rs
        p.expect("NOOP", 250)
    stored = sec.wait_message(m1)
    _rp, _rec, rest = split_trace(stored)
    assert rest == chunk, "BDAT content must be stored byte for byte"
    for path, b in sec.find(m2):
        assert b == stored, "the smuggled part was stored on its own: %s" % path


# --- IMAP literal exhaustion --------------------------------------------------------------

@pytest.fixture(scope="module")
def lit():
    i = start_all({"imap_max_literal": "1m", "auth_max_failures": "1000", "auth_failure_delay": "0"})
    yield i
    close_instance(i)


def imap_alive(inst):
    """Another session logs in and runs a command."""
    r = Raw(inst)
    r.login()
    _, t = r.cmd("z", "NOOP")
    r.close()
    assert t.startswith(b"z OK"), t


@pytest.mark.parametrize("announce", [b"{4294967295}", b"{99999999999999999999}", b"~{4294967295}",
                                      b"{18446744073709551616}"])
def test_imap_literal_exhaustion_huge_sync_literal(lit, announce):
    """IMAP literal memory exhaustion (the class of Dovecot's and Cyrus's
    unbounded-literal advisories): a client announces a literal of 4 GiB,
    one whose size overflows 64 bits, or a literal8 (RFC 3516) of 4 GiB.
    Correct: a tagged NO [TOOBIG] or BAD before any "+" continuation, no
    memory reserved for it (RSS barely moves), and the session goes on."""
    pid = lit.proc.pid
    before = vm_rss_kib(pid)
    r = Raw(lit)
    r.login()
    r.send(b"a1 APPEND INBOX " + announce + b"\r\n")
    line = r.line()
    assert re.match(rb"a1 (NO|BAD) ", line), "huge literal not refused at once: %r" % line
    assert not line.startswith(b"+"), line
    _, t = r.cmd("a2", "NOOP")
    assert t.startswith(b"a2 OK"), t
    r.close()
    imap_alive(lit)
    grown = vm_rss_kib(pid) - before
    assert grown < 16 * 1024, "RSS grew %d KiB after refusing %r" % (grown, announce)
    lit.assert_alive()


def test_imap_literal_exhaustion_huge_nonsync_literal(lit):
    """The same with LITERAL+ ({N+}, RFC 7888): the data is already on its
    way, so the only bounded answer is BYE [TOOBIG] and a close, without
    reading gigabytes."""
    pid = lit.proc.pid
    before = vm_rss_kib(pid)
    r = Raw(lit)
    r.login()
    try:
        r.send(b"a1 APPEND INBOX {4294967295+}\r\n" + b"x" * (2 << 20))
    except OSError:
        pass
    line = r.line()
    assert line.startswith(b"* BYE") and b"TOOBIG" in line, line
    assert r.closed()
    r.close()
    imap_alive(lit)
    assert vm_rss_kib(pid) - before < 16 * 1024
    lit.assert_alive()


def flood_nonsync_literals(inst, count, size, peak, other_ok):
    """One command with `count` LITERAL+ literals of `size` bytes each (every
    one under imap_max_literal).  Records the peak RSS of pochtad while it
    runs, and checks a second session meanwhile.  Returns the first line the
    server answered."""
    pid = inst.proc.pid
    stop = []

    def watch():
        while not stop:
            peak[0] = max(peak[0], vm_rss_kib(pid))
            time.sleep(0.02)

    w = threading.Thread(target=watch)
    w.start()
    r = Raw(inst)
    try:
        r.login()
        data = b"y" * size
        r.send(b"a1 SEARCH CHARSET UTF-8")
        try:
            for k in range(count):
                r.send(b" TEXT {%d+}\r\n" % size + data)
                if k == count // 4:
                    imap_alive(inst)
                    other_ok.append(True)
            r.send(b"\r\n")
        except OSError:
            pass            # the server hung up on us: read why
        r.sock.settimeout(30)
        return r.line()
    finally:
        r.close()
        stop.append(True)
        w.join()


def test_imap_literal_exhaustion_many_nonsync_literals_refused(lit):
    """Many medium LITERAL+ literals in one command (each under the 1 MiB
    imap_max_literal, 300 MiB together): correct is a clear refusal (BYE or
    a tagged NO/BAD naming the size), other sessions served meanwhile,
    pochtad alive, and memory back near the baseline afterwards."""
    pid = lit.proc.pid
    before = vm_rss_kib(pid)
    peak, other_ok = [before], []
    line = flood_nonsync_literals(lit, 300, 1 << 20, peak, other_ok)
    assert re.match(rb"(\* BYE|a1 (NO|BAD)) ", line), "no refusal of a 300 MiB command: %r" % line
    assert other_ok, "a second session was not served during the flood"
    imap_alive(lit)
    lit.assert_alive()
    if sanitized_build():
        return      # ASan keeps freed memory in its quarantine (256 MiB): RSS cannot drop
    time.sleep(0.5)
    after = vm_rss_kib(pid)
    assert after - before < 32 * 1024, "RSS stayed %d KiB above the baseline" % (after - before)


def test_imap_literal_exhaustion_many_nonsync_literals_rss_bounded(lit):
    """The memory a single command may pin must follow the configured
    literal limit: with imap_max_literal = 1 MiB, 300 literals of 1 MiB in
    one command must be refused before pochtad's RSS grows by 64 MiB."""
    pid = lit.proc.pid
    before = vm_rss_kib(pid)
    peak, other_ok = [before], []
    flood_nonsync_literals(lit, 300, 1 << 20, peak, other_ok)
    grown = peak[0] - before
    assert grown < 64 * 1024, "one command made pochtad grow by %d MiB" % (grown // 1024)


# --- mailbox-name path traversal ----------------------------------------------------------

# (name, must be refused): names that mean a parent or root directory, once
# modified UTF-7 is decoded, must be refused; the others (a backslash is an
# ordinary character with "/" as the separator) may be taken, but must
# stay inside the user's directory all the same.
TRAVERSAL_NAMES = [
    ("../x", True), ("a/../../b", True), ("../../../../../../tmp/pochta-escape", True), ("/etc", True),
    ("/etc/passwd", True), ("INBOX/..", True), ("INBOX/../..", True), ("..", True), (".", True),
    ("./x", True), ("x/./y", True),
    ("&AC8ALgAu-", True), ("&AC4ALg-", True), ("&AC4ALgAv-x", True), ("a/&AC4ALg-/&AC4ALg-/b", True),
    ("a\\..\\..\\b", False), ("\\etc", False), ("~/x", False), ("~alice", False),
    ("x" * 5000, False), ("/".join(["d"] * 400), False),
]


def tree(root):
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            if n.endswith(("-wal", "-shm", "-journal")):
                continue
            out.add(p)
    return out


def quoted(name):
    return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')


def test_mailbox_path_traversal(sec):
    """Mailbox-name path traversal (the class of CVE-2008-1199-style IMAP
    bugs where a name such as "../x" reaches the file system): CREATE,
    RENAME, SELECT, EXAMINE, STATUS, APPEND, DELETE, SUBSCRIBE and LIST
    patterns with "..", absolute names, backslashes, modified UTF-7 that
    decodes to "/..", NUL bytes sent in literals and very long names.
    Correct: the names that mean a parent directory are refused (NO/BAD),
    and nothing is created, changed or removed outside
    data/mail/<domain>/<user>/ (the whole instance directory is compared
    before and after)."""
    user_dir = sec.mail_dir / "example.test" / "alice"
    r = Raw(sec)
    r.login()
    _, t = r.cmd("w", "CREATE warm-up-box")          # the user's store exists now
    before = tree(sec.dir)
    for i, (name, must_refuse) in enumerate(TRAVERSAL_NAMES):
        # a session per name: the refusals count towards max_errors
        r.close()
        r = Raw(sec)
        r.login()
        q = quoted(name)
        _, t = r.cmd("c%d" % i, "CREATE " + q)
        if must_refuse:
            assert re.match(rb"c%d (NO|BAD)" % i, t), "CREATE %r accepted: %r" % (name, t)
        for verb in ("SELECT", "EXAMINE", "DELETE", "SUBSCRIBE"):
            r.cmd("v%d" % i, "%s %s" % (verb, q))
        r.cmd("s%d" % i, "STATUS %s (MESSAGES)" % q)
        r.cmd("r%d" % i, "RENAME warm-up-box %s" % q)
        r.cmd("b%d" % i, "RENAME %s other-box-%d" % (q, i))
        msg = b"Subject: t\r\n\r\nx\r\n"
        _, t = r.cmd("a%d" % i, b"APPEND %s {%d+}\r\n%s" % (q.encode(), len(msg), msg))
        r.cmd("l%d" % i, "LIST \"\" %s" % quoted(name + "*"))
        r.cmd("m%d" % i, "LIST %s \"*\"" % q)
    # NUL inside a literal: the name must not be cut at the NUL either.
    r.close()
    r = Raw(sec)
    r.login()
    for i, raw in enumerate([b"a\0/../../b", b"..\0", b"x\0y"]):
        r.send(b"n%d CREATE {%d+}\r\n%s\r\n" % (i, len(raw), raw))
        _, t = r.until("n%d" % i)
        assert re.match(rb"n%d (NO|BAD)" % i, t), "CREATE with NUL accepted: %r" % t
    _, t = r.cmd("z", "NOOP")
    assert t.startswith(b"z OK"), t
    r.close()
    sec.assert_alive()
    after = tree(sec.dir)
    outside_new = {p for p in after - before if user_dir not in p.parents}
    outside_gone = {p for p in before - after if user_dir not in p.parents}
    assert not outside_new, "created outside the user's directory: %s" % sorted(map(str, outside_new))
    assert not outside_gone, "removed outside the user's directory: %s" % sorted(map(str, outside_gone))
    for base in (user_dir, user_dir / "mbox", sec.mail_dir, sec.data_dir):
        for name in ("x", "b", "pochta-escape", "etc"):
            assert not (base.parent / name).exists() or (base.parent / name) in before, base.parent / name
    assert not Path("/tmp/pochta-escape").exists()


# --- header injection through the envelope ------------------------------------------------

def injected(stored, token):
    """True if a header line (or Return-Path) of the stored message was
    made by the client's bytes: the token at the start of a line, or a CR
    or LF inside the trace fields."""
    head = stored.split(b"\r\n\r\n", 1)[0]
    return bool(re.search(rb"(?m)^" + re.escape(token), head)) or b"\r\n" + token in head


def test_header_injection_through_envelope_and_helo(sec):
    """Header injection through envelope addresses (the class of
    CVE-2020-28019-like trace header bugs and the many "CRLF in MAIL FROM"
    advisories): CR, LF and NUL in MAIL FROM, RCPT TO, the HELO/EHLO name
    (it goes into Received), raw and xtext-encoded (+0D+0A in ORCPT, ENVID
    and AUTH=), and in quoted local parts.  Correct: each such command is
    refused or the bytes never become a line of the stored message: the
    message accepted afterwards has exactly Return-Path, Received, and what
    was sent, and no injected field appears anywhere in the store."""
    token = ("X-Injected-" + unique("h")[-12:]).encode()
    attempts = [
        b"EHLO evil.test\r" + token + b": 1",
        b"EHLO evil.test\x00" + token,
        b"HELO evil.test\r" + token + b": 1",
        b"MAIL FROM:<a\r" + token + b":1@remote.test>",
        b"MAIL FROM:<a@remote.test\r" + token + b": 1>",
        b"MAIL FROM:<a\x00" + token + b"@remote.test>",
        b"MAIL FROM:<\"a\r" + token + b": 1\"@remote.test>",
        b"MAIL FROM:<\"a\\\r" + token + b": 1\"@remote.test>",
        b"MAIL FROM:<a@remote.test> ENVID=x+0D+0A" + token + b":+201",
        b"MAIL FROM:<a@remote.test> AUTH=<a+0D+0A" + token + b":+201@remote.test>",
    ]
    marker = unique()
    msg = make_message(marker, sender="a@remote.test")
    with Peer(sec.smtp_port) as p:
        for line in attempts:
            p.expect("RSET", 250)
            p.ehlo("client.remote.test")
            r = p.cmd(line)
            if line.startswith((b"EHLO", b"HELO")):
                assert r.code >= 500, "%r accepted: %r" % (line, r)
                continue
            if r.code == 250:
                # accepted: then the decoded value must not break a line
                p.expect("RCPT TO:<%s>" % ALICE, 250)
                check_code(p.data(make_message(unique(), sender="a@remote.test")), 250, None, line)
            else:
                assert r.code >= 500, r
        p.expect("RSET", 250)
        p.ehlo("client.remote.test")
        p.expect("MAIL FROM:<a@remote.test>", 250)
        for rcpt in [b"RCPT TO:<alice\r" + token + b": 1@example.test>",
                     b"RCPT TO:<alice@example.test\x00" + token + b">",
                     b"RCPT TO:<\"alice\r" + token + b"\"@example.test>",
                     b"RCPT TO:<alice@example.test> ORCPT=rfc822;alice+0D+0A" + token + b":+201@example.test",
                     b"RCPT TO:<alice@example.test> ORCPT=rfc822;alice+0A" + token + b"@example.test",
                     b"RCPT TO:<alice@example.test> ORCPT=rfc822;alice+00" + token + b"@example.test"]:
            r = p.cmd(rcpt)
            assert r.code >= 500, "%r accepted: %r" % (rcpt, r)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        check_code(p.data(msg), 250, None, "clean message")
        # a bare LF ends the command line: the rest is a separate (bad) command
        p.send(b"MAIL FROM:<a@remote.test>\n" + token + b": 1\r\n")
        assert p.reply().code == 250
        assert p.reply().code >= 500
        p.expect("RSET", 250)
    stored = sec.wait_message(marker)
    rp, received, rest = split_trace(stored)
    assert rp == "Return-Path: <a@remote.test>" and rest == msg
    assert token.decode() not in received
    time.sleep(0.5)
    for path, b in stored_anywhere(sec, token):
        assert not injected(b, token), "injected header in %s: %r" % (path, b[:500])


def test_header_injection_through_auth_identity(make_sec):
    """Header injection through AUTH identities: the authenticated user is
    written into Received ("with ESMTPSA ... (authenticated as ...)").
    CR/LF/NUL in the PLAIN authzid or authcid, or in the AUTH LOGIN user
    name, must fail authentication; the name recorded for a later good
    login is the account's, with no injected line.  IMAP LOGIN with CRLF
    inside a literal user name is refused the same way."""
    inst = make_sec({"auth_max_failures": "1000", "auth_failure_delay": "0"})
    token = "X-Injected-" + unique("a")[-12:]
    pw = USERS[ALICE]
    plain_bad = [
        "%s\r\n%s: 1\0%s\0%s" % (ALICE, token, ALICE, pw),
        "\0%s\r\n%s: 1\0%s" % (ALICE, token, pw),
        "\0%s\0%s\0%s" % (ALICE, pw, token),
        "%s\0%s\0%s" % (ALICE + "\n" + token, ALICE, pw),
    ]
    with Peer(inst.submissions_port, tls=True) as p:
        p.ehlo()
        for tok in plain_bad:
            r = p.cmd("AUTH PLAIN " + base64.b64encode(tok.encode()).decode())
            assert r.code != 235 and r.code >= 500, "AUTH PLAIN %r accepted: %r" % (tok, r)
        r = p.cmd("AUTH LOGIN")
        assert r.code == 334
        r = p.cmd(base64.b64encode(("%s\r\n%s: 1" % (ALICE, token)).encode()).decode())
        if r.code == 334:
            r = p.cmd(base64.b64encode(pw.encode()).decode())
        assert r.code != 235 and r.code >= 500, r
    marker = unique()
    msg = make_message(marker, sender=ALICE)
    deliver_raw(inst.submissions_port, msg, sender=ALICE, tls=True, auth=(ALICE, pw))
    stored = inst.wait_message(marker)
    _rp, received, rest = split_trace(stored)
    assert rest == msg and token not in received
    r = Raw(inst)
    user = ("%s\r\n%s: 1" % (ALICE, token)).encode()
    r.send(b"l1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(user), user, len(pw), pw.encode()))
    _, t = r.until("l1")
    assert re.match(rb"l1 (NO|BAD)", t), t
    r.close()
    time.sleep(0.3)
    for path, b in stored_anywhere(inst, token.encode()):
        assert not injected(b, token.encode()), "injected header in %s" % path


# --- AUTH before TLS ----------------------------------------------------------------------

def test_auth_before_tls_refused_on_every_listener(sec):
    """AUTH before TLS (RFC 3207 4, RFC 2595 2.1, RFC 9051 6.2.3; the
    cleartext-credentials class): on every plaintext listener each way of
    starting a login is refused before STARTTLS/STLS, including the SASL
    forms that would first answer with a continuation, so a client never
    gets as far as sending a password in clear.  Port 25 offers no AUTH
    even after TLS."""
    plain = base64.b64encode(("\0%s\0%s" % (ALICE, USERS[ALICE])).encode()).decode()
    # SMTP submission (587) and MX (25)
    for port in (sec.submission_port, sec.smtp_port):
        with Peer(port) as p:
            kw = p.ehlo().keywords()
            assert "AUTH" not in kw, "AUTH offered before TLS on %d: %r" % (port, kw)
            for c in ("AUTH PLAIN " + plain, "AUTH PLAIN", "AUTH LOGIN",
                      "AUTH LOGIN " + base64.b64encode(ALICE.encode()).decode()):
                r = p.cmd(c)
                assert r.code >= 500, "%s before TLS on port %d: %r" % (c, port, r)
    with Peer(sec.smtp_port) as p:
        p.ehlo()
        p.starttls()
        kw = p.ehlo().keywords()
        assert "AUTH" not in kw, "AUTH offered on port 25: %r" % kw
        for c in ("AUTH PLAIN " + plain, "AUTH LOGIN"):
            assert p.cmd(c).code >= 500
    # POP3 (110)
    with Pop(pop3_ports(sec)[0]) as p:
        for c in ("USER " + ALICE, "PASS " + USERS[ALICE], "AUTH PLAIN " + plain, "AUTH PLAIN",
                  "AUTH LOGIN", "APOP %s 0123456789abcdef0123456789abcdef" % ALICE):
            r = p.cmd(c)
            assert r.startswith(b"-ERR"), "%s before STLS: %r" % (c, r)
    # IMAP (143)
    r = Raw(sec, tls=False)
    for i, c in enumerate(['LOGIN "%s" "%s"' % (ALICE, USERS[ALICE]), "AUTHENTICATE PLAIN " + plain,
                           "AUTHENTICATE PLAIN", "AUTHENTICATE LOGIN"]):
        r.send(b"t%d %s\r\n" % (i, c.encode()))
        line = r.line()
        assert line.startswith(b"t%d NO" % i) or line.startswith(b"t%d BAD" % i), \
            "%s before STARTTLS: %r" % (c, line)
    r.close()


# --- AUTH guessing --------------------------------------------------------------------------

def test_auth_guessing_limited_per_ip_across_protocols(make_sec):
    """AUTH guessing (credential brute force): after auth_max_failures wrong
    passwords from one address, even the right password is refused, and
    the count is shared, so failures in IMAP also stop SMTP AUTH and POP3
    (SMTP and POP3 alone: test_rfc4954_failure_limit,
    test_failed_logins_limited)."""
    inst = make_sec({"auth_max_failures": "3", "auth_failure_delay": "0"})
    for i in range(3):
        r = Raw(inst)
        _, t = r.cmd("f", 'LOGIN "%s" "wrong-%d"' % (ALICE, i))
        assert t.startswith(b"f NO"), t
        r.close()
    r = Raw(inst)
    try:
        _, t = r.cmd("g", 'LOGIN "%s" "%s"' % (ALICE, USERS[ALICE]))
        assert not t.startswith(b"g OK"), "IMAP LOGIN succeeded after the failure limit"
    except AssertionError as e:
        assert "connection closed" in str(e), e
    r.close()
    with Peer(inst.submissions_port, tls=True) as p:
        p.ehlo()
        r2 = p.auth_plain(ALICE, USERS[ALICE])
        assert r2.code != 235 and 400 <= r2.code < 600, "SMTP AUTH after IMAP guessing: %r" % r2
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        p.cmd("USER " + ALICE)
        assert p.cmd("PASS " + USERS[ALICE]).startswith(b"-ERR"), "POP3 login after IMAP guessing"


# --- bare CR, bare LF, NUL ---------------------------------------------------------------------

def test_bare_lf_ends_command_and_bare_cr_in_command_is_refused(sec):
    """Line endings in SMTP commands (policy in README, "SMTP behaviour"):
    LF alone ends a command line as CRLF does (RFC 5321 2.3.8 leniency
    shared by Postfix), a bare CR inside a command is a syntax error (500)
    and the session goes on, and a NUL is a syntax error too."""
    with Peer(sec.smtp_port) as p:
        p.send(b"EHLO client.remote.test\n")
        assert p.reply().code == 250
        p.send(b"NOOP\n")
        check_code(p.reply(), 250, "2.0.0", "NOOP ended by LF")
        r = p.cmd(b"NOOP\rNOOP")
        check_code(r, 500, "5.5.2", "bare CR inside a command")
        r = p.cmd(b"MAIL FROM:<a@remote.test>\r RCPT TO:<x@elsewhere.test>")
        assert r.code >= 500, r
        r = p.cmd(b"NO\0OP")
        assert r.code >= 500, r
        p.expect("NOOP", 250)
        assert not p.replies_within(0.3)


def test_bare_cr_and_lf_in_data_stored_as_crlf(sec):
    """Bare CR and bare LF inside DATA (policy in README: stored as CRLF,
    never an end of data): the stored message has only CRLF line ends,
    lines stay where the client put them, and the message is one message."""
    marker = unique()
    body = b"one\ntwo\rthree\r\n.four\n.\nfive\r.\rsix\r\n"
    msg = make_message(marker, body=b"x\r\n")[:-3] + body
    with Peer(sec.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        assert p.cmd("DATA").code == 354
        p.send(msg.replace(b"\r\n.four", b"\r\n..four") + b".\r\n")
        rs = p.replies_within(2)
        assert [r.code for r in rs] == [250], rs
    stored = sec.wait_message(marker)
    _rp, _rec, rest = split_trace(stored)
    assert re.sub(rb"\r\n", b"", rest).count(b"\r") == 0 and re.sub(rb"\r\n", b"", rest).count(b"\n") == 0, \
        "bare CR or LF stored: %r" % rest
    assert rest.endswith(b"one\r\ntwo\r\nthree\r\n.four\r\n.\r\nfive\r\n.\r\nsix\r\n"), rest[-120:]


def test_bare_nul_in_bdat_refused(sec):
    """NUL in message data sent with BDAT (not BINARYMIME): refused with 554
    like DATA (test_rfc5321_nul_in_data) and nothing stored."""
    marker = unique()
    chunk = make_message(marker, body="nul \0 here\r\n")
    with Peer(sec.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        p.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = p.reply()
        assert 500 <= r.code < 600, "NUL in BDAT accepted: %r" % r
        p.expect("NOOP", 250)
    time.sleep(0.7)
    assert not stored_anywhere(sec, marker.encode()), "refused message was stored"


def test_command_line_at_limit_split_between_cr_and_lf(sec):
    """A 512-octet command (RFC 5321 4.5.3.1.4 maximum) must be accepted
    however TCP splits it, also when a segment ends between CR and LF."""
    with Peer(sec.smtp_port) as p:
        p.ehlo()
        p.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        p.send(b"NOOP " + b"x" * (512 - 2 - 5) + b"\r")
        time.sleep(0.5)
        p.send(b"\n")
        check_code(p.reply(), 250, None, "512-octet NOOP split before LF")


# --- slow clients ------------------------------------------------------------------------------

def closes_within(sock, seconds):
    """Wait for the server to close; return (closed, elapsed, bytes read)."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            d = sock.recv(4096)
            if not d:
                return True, time.monotonic() - t0, got
            got += d
    except socket.timeout:
        return False, time.monotonic() - t0, got
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True, time.monotonic() - t0, got


def test_slow_client_silent_and_half_line_closed_at_timeout(make_sec):
    """Slow clients (slowloris): a client that connects and sends nothing,
    or half a command line and then nothing, on every listener and also
    before the TLS handshake on the implicit-TLS ports (465, 995, 993),
    is closed at the configured timeout (2 s here) instead of holding its
    slot for ever."""
    inst = make_sec({"smtp_timeout": "2s", "pop3_timeout": "2s", "imap_timeout": "2s"})
    p110, p995 = pop3_ports(inst)
    p143, p993 = imap_ports(inst)
    ports = {"smtp": inst.smtp_port, "submission": inst.submission_port, "submissions": inst.submissions_port,
             "pop3": p110, "pop3s": p995, "imap": p143, "imaps": p993}
    socks = {}
    for name, port in ports.items():
        socks[name] = socket.create_connection(("127.0.0.1", port), timeout=5)
    half = {}
    for name in ("smtp", "pop3", "imap"):
        s = socket.create_connection(("127.0.0.1", ports[name]), timeout=5)
        s.recv(4096)
        s.sendall(b"NOOP-never-ending")
        half[name] = s
    results = {}
    threads = []

    def wait(key, s):
        results[key] = closes_within(s, 15)

    for name, s in list(socks.items()) + [("half-" + n, s) for n, s in half.items()]:
        t = threading.Thread(target=wait, args=(name, s))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(30)
    for s in list(socks.values()) + list(half.values()):
        s.close()
    slow = {k: v for k, v in results.items() if not v[0] or not 1.0 <= v[1] <= 10}
    assert not slow, "not closed about 2 s after going quiet: %r" % slow
    inst.assert_alive()


# --- start-up failure ----------------------------------------------------------------------------

def test_second_daemon_on_same_ports_exits_cleanly(sec):
    """A second pochtad on ports already taken (an operator starting it
    twice, or a port another daemon holds): exit status 1 with a message
    naming the address and the cause, the first daemon unharmed, and in a
    sanitizer build no LeakSanitizer report (the TLS context is freed on
    this exit path too)."""
    proc = sec.spawn()
    try:
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = sec.stderr()
    assert rc == 1, "second pochtad exited %s:\n%s" % (rc, err)
    assert "Address already in use" in err and "127.0.0.1:%d" % sec.smtp_port in err, err
    if sanitized_build():
        m = pochtatest.SANITIZER_RE.search(err)
        assert not m, "sanitizer report on the early exit:\n%s" % err[-6000:]
    sec.assert_alive()
    marker = unique()
    deliver_raw(sec.smtp_port, make_message(marker))
    sec.wait_message(marker)
