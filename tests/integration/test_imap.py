"""IMAP (RFC 3501 / RFC 9051) on the imap (+143, STARTTLS) and imaps (+993)
listeners: greeting and capabilities, STARTTLS, LOGIN/AUTHENTICATE, literals
(RFC 7888), mailbox commands, APPEND/FETCH/STORE/COPY/MOVE/EXPUNGE/SEARCH,
untagged updates between sessions, IDLE (RFC 2177) woken by SMTP delivery,
and the negative cases.  Mail is delivered over SMTP or APPENDed and must
come back byte for byte."""

import base64
import imaplib
import re
import smtplib
import socket
import ssl
import subprocess
import shutil
import time

import pytest

import pochtatest
from pochtatest import (ALICE, BOB, USERS, close_instance, make_message, new_instance,
                        tls_client_context, unique, wait_port)

SENDER = "sender@remote.test"
PW = USERS[ALICE]


def imap_ports(inst):
    return inst.base + 143, inst.base + 993


def ensure_imap_conf(inst, extra=None):
    """`pochta init` writes every listen_* key; older builds may not."""
    text = inst.conf.read_text()
    lines = []
    p, ps = imap_ports(inst)
    if not re.search(r"(?m)^listen_imap\s*=", text):
        lines.append("listen_imap = 127.0.0.1:%d" % p)
    if not re.search(r"(?m)^listen_imaps\s*=", text):
        lines.append("listen_imaps = 127.0.0.1:%d" % ps)
    for k, v in (extra or {}).items():
        lines.append("%s = %s" % (k, v))
    if lines:
        inst.append_conf(lines)


def start_imap_instance(extra=None):
    inst = new_instance(start=False)
    ensure_imap_conf(inst, extra)
    inst.start()
    for port in imap_ports(inst):
        assert wait_port(port, 10, inst.proc), "IMAP port %d not listening:\n%s" % (port, inst.stderr())
    return inst


SHARED_CONF = {"auth_max_failures": 40, "auth_failure_delay": "0"}


@pytest.fixture(scope="module")
def inst():
    i = start_imap_instance(SHARED_CONF)
    yield i
    close_instance(i)


def ok(r, tag, text):
    """Send one command on a Raw connection; assert its tagged OK; return the untagged lines."""
    lines, t = r.cmd(tag, text)
    assert t.startswith(tag.encode() + b" OK"), (text, t, lines)
    return lines


@pytest.fixture
def make_imap_instance():
    made = []

    def make(extra=None):
        i = start_imap_instance(extra)
        made.append(i)
        return i

    yield make
    for i in made:
        close_instance(i)


def connect(inst, user=ALICE, password=None, ssl_port=False):
    p, ps = imap_ports(inst)
    if ssl_port:
        m = imaplib.IMAP4_SSL("127.0.0.1", ps, ssl_context=tls_client_context(), timeout=pochtatest.IO_TIMEOUT)
    else:
        m = imaplib.IMAP4("127.0.0.1", p, timeout=pochtatest.IO_TIMEOUT)
        m.starttls(ssl_context=tls_client_context())
    if user:
        m.login(user, password or USERS[user])
    return m


class Raw:
    """A line-level IMAP client for what imaplib will not send."""

    def __init__(self, inst, tls=True, implicit=False):
        p, ps = imap_ports(inst)
        self.sock = socket.create_connection(("127.0.0.1", ps if implicit else p), timeout=pochtatest.IO_TIMEOUT)
        if implicit:
            self.sock = tls_client_context().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()
        if tls and not implicit:
            self.send(b"T0 STARTTLS\r\n")
            assert self.line().startswith(b"T0 OK")
            self.sock = tls_client_context().wrap_socket(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                r, self.buf = self.buf, b""
                return r
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def read_n(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                break
            self.buf += d
        r, self.buf = self.buf[:n], self.buf[n:]
        return r

    def cmd(self, tag, text):
        """Send one command; return (untagged lines, tagged line).  Literals
        in responses are inlined."""
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag):
        lines = []
        t = tag.encode() + b" "
        while True:
            l = self.line()
            if l == b"":
                raise AssertionError("connection closed; got %r" % lines)
            m = re.search(rb"\{(\d+)\}$", l)
            while m:
                l += b"\r\n" + self.read_n(int(m.group(1))) + self.line()
                m = re.search(rb"\{(\d+)\}$", l)
            if l.startswith(t):
                return lines, l
            lines.append(l)

    def login(self, user=ALICE):
        _, t = self.cmd("L1", 'LOGIN "%s" "%s"' % (user, USERS[user]))
        assert t.startswith(b"L1 OK"), t

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def smtp_deliver(inst, rcpt, msg):
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=pochtatest.IO_TIMEOUT) as s:
        s.sendmail(SENDER, [rcpt], msg)


def fresh_mailbox(m, prefix="t"):
    name = unique(prefix)
    typ, _ = m.create(name)
    assert typ == "OK"
    return name


def append(m, box, msg, flags=None, date=None):
    typ, data = m.append(box, flags, date, msg)
    assert typ == "OK", data
    code = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert code, "APPEND without APPENDUID (RFC 4315): %r" % data
    return int(code.group(2))


def refused(fn, *args):
    """True if the command got NO or BAD (imaplib raises on BAD)."""
    try:
        typ, _ = fn(*args)
    except imaplib.IMAP4.error:
        return True
    return typ == "NO"


def fetch_one(m, seq, what, uid=False):
    typ, data = (m.uid("FETCH", seq, what) if uid else m.fetch(seq, what))
    assert typ == "OK", data
    return data


def literal_of(data):
    for item in data:
        if isinstance(item, tuple):
            return item[1]
    raise AssertionError("no literal in %r" % data)


# ---- connection (RFC 9051 6.1, 6.2, 7.1) ----------------------------------

@pytest.mark.security
def test_greeting_has_capability_and_logindisabled_before_tls(inst):
    r = Raw(inst, tls=False)
    assert r.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    caps = r.greeting.split(b"[CAPABILITY ")[1].split(b"]")[0].split()
    assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps
    assert not any(c.startswith(b"AUTH=") for c in caps), "no mechanism is offered before TLS"
    _, t = r.cmd("a1", 'LOGIN "%s" "%s"' % (ALICE, PW))
    assert t.startswith(b"a1 NO"), t
    _, t = r.cmd("a2", "AUTHENTICATE PLAIN " + base64.b64encode(("\0%s\0%s" % (ALICE, PW)).encode()).decode())
    assert t.startswith(b"a2 NO"), t
    r.close()


def test_capability_after_starttls_and_login(inst):
    m = connect(inst, user=None)
    assert "STARTTLS" not in m.capabilities and "LOGINDISABLED" not in m.capabilities
    assert "AUTH=PLAIN" in m.capabilities and "AUTH=LOGIN" in m.capabilities
    typ, data = m.login(ALICE, PW)
    assert typ == "OK" and b"[CAPABILITY " in data[0]
    typ, data = m.capability()
    caps = data[0].split()
    for c in (b"IMAP4rev1", b"IDLE", b"UIDPLUS", b"MOVE", b"UNSELECT", b"NAMESPACE", b"LITERAL+",
              b"SPECIAL-USE", b"LIST-EXTENDED", b"CHILDREN", b"ID", b"ENABLE", b"SASL-IR",
              b"UTF8=ACCEPT", b"ESEARCH", b"CONDSTORE", b"CREATE-SPECIAL-USE", b"LIST-STATUS",
              b"STATUS=SIZE"):
        assert c in caps, c
    assert b"IMAP4rev2" in caps, "IMAP4rev2 alongside IMAP4rev1 (test_imap_rev2.py)"
    m.logout()


@pytest.mark.security
def test_starttls_discards_pipelined_commands(inst):
    """RFC 9051 6.2.1 / CVE-2011-0411: bytes after STARTTLS are dropped."""
    r = Raw(inst, tls=False)
    r.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert r.line().startswith(b"a OK")
    assert r.buf == b""
    r.sock = tls_client_context().wrap_socket(r.sock)
    lines, t = r.cmd("c", "NOOP")
    assert t.startswith(b"c OK")
    assert not any(l.startswith(b"b ") or l.startswith(b"* CAPABILITY") for l in lines), lines
    _, t = r.cmd("d", "STARTTLS")
    assert t.startswith(b"d BAD"), "second STARTTLS must fail: %r" % t
    r.close()


def test_imaps_login_and_logout(inst):
    m = connect(inst, ssl_port=True)
    typ, _ = m.noop()
    assert typ == "OK"
    typ, data = m.logout()
    assert typ == "BYE"


def test_login_wrong_password(inst):
    m = connect(inst, user=None)
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login(ALICE, "wrong-password")
    assert "AUTHENTICATIONFAILED" in str(e.value)
    m.login(ALICE, PW)
    m.logout()


def test_authenticate_plain_with_and_without_sasl_ir(inst):
    r = Raw(inst)
    ir = base64.b64encode(("\0%s\0%s" % (ALICE, PW)).encode()).decode()
    _, t = r.cmd("a1", "AUTHENTICATE PLAIN " + ir)
    assert t.startswith(b"a1 OK"), t
    r.close()
    r = Raw(inst)
    r.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert r.line().startswith(b"+")
    r.send(ir.encode() + b"\r\n")
    _, t = r.until("a1")
    assert t.startswith(b"a1 OK"), t
    _, t = r.cmd("a2", "LOGIN x y")
    assert t.startswith(b"a2 BAD"), "LOGIN after authentication is a state error: %r" % t
    r.close()


def test_authenticate_login_and_cancel(inst):
    r = Raw(inst)
    r.send(b"a1 AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ VXNlcm5hbWU6"
    r.send(b"*\r\n")
    _, t = r.until("a1")
    assert t.startswith(b"a1 BAD"), t
    r.send(b"a2 AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ VXNlcm5hbWU6"
    r.send(base64.b64encode(ALICE.encode()) + b"\r\n")
    assert r.line() == b"+ UGFzc3dvcmQ6"
    r.send(base64.b64encode(PW.encode()) + b"\r\n")
    _, t = r.until("a2")
    assert t.startswith(b"a2 OK"), t
    r.close()
    r = Raw(inst)
    r.send(b"a3 AUTHENTICATE LOGIN " + base64.b64encode(BOB.encode()) + b"\r\n")
    assert r.line() == b"+ UGFzc3dvcmQ6"
    r.send(base64.b64encode(USERS[BOB].encode()) + b"\r\n")
    _, t = r.until("a3")
    assert t.startswith(b"a3 OK"), t
    r.close()
    r = Raw(inst)
    _, t = r.cmd("a4", "AUTHENTICATE CRAM-MD5")
    assert t.startswith(b"a4 NO"), t
    bad = base64.b64encode(("\0%s\0wrong" % ALICE).encode()).decode()
    _, t = r.cmd("a5", "AUTHENTICATE PLAIN " + bad)
    assert t.startswith(b"a5 NO [AUTHENTICATIONFAILED]"), t
    _, t = r.cmd("a6", "NOOP")
    assert t.startswith(b"a6 OK")
    r.close()


def test_imaplib_authenticate_plain(inst):
    m = connect(inst, user=None)
    typ, _ = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (BOB, USERS[BOB])).encode())
    assert typ == "OK"
    m.logout()


def test_id_enable_namespace_noop(inst):
    m = connect(inst)
    typ, data = m.xatom("ID", '("name" "pytest")')
    assert typ == "OK"
    ids = m.untagged_responses.get("ID", [])
    assert any(b'"name" "pochta"' in d for d in ids), ids
    typ, data = m.namespace()
    assert typ == "OK" and data[0] == b'(("" "/")) (("Other Users/" "/")) NIL'
    typ, data = m._simple_command("ENABLE", "CONDSTORE")
    assert typ == "OK"
    assert m.noop()[0] == "OK"
    m.logout()


def test_wrong_state_and_bad_syntax(inst):
    r = Raw(inst)
    _, t = r.cmd("a1", "SELECT INBOX")
    assert t.startswith(b"a1 BAD"), t
    r.login()
    _, t = r.cmd("a2", "FETCH 1 FLAGS")
    assert t.startswith(b"a2 BAD"), "FETCH without a selected mailbox: %r" % t
    _, t = r.cmd("a3", "FROBNICATE")
    assert t.startswith(b"a3 BAD"), t
    _, t = r.cmd("a4", "SELECT")
    assert t.startswith(b"a4 BAD"), t
    _, t = r.cmd("a5", 'LIST "" "*" garbage')
    assert t.startswith(b"a5 BAD"), t
    r.send(b"\r\n")
    assert r.line().startswith(b"* BAD")
    _, t = r.cmd("a6", "NOOP")
    assert t.startswith(b"a6 OK")
    r.close()


# ---- literals (RFC 9051 4.3, RFC 7888) -------------------------------------

def test_synchronizing_and_non_synchronizing_literals(inst):
    r = Raw(inst)
    r.send(b"a1 LOGIN {%d}\r\n" % len(ALICE))
    assert r.line().startswith(b"+ ")
    r.send(ALICE.encode() + b" {%d+}\r\n%s\r\n" % (len(PW), PW.encode()))
    _, t = r.until("a1")
    assert t.startswith(b"a1 OK"), t
    # LITERAL- sized non-synchronizing literal in APPEND
    msg = b"Subject: lit\r\n\r\nbody\r\n"
    _, t = r.cmd("a2", b"APPEND INBOX {%d-}\r\n%s" % (len(msg), msg))
    assert t.startswith(b"a2 OK [APPENDUID"), t
    r.close()


@pytest.mark.security
def test_literal_over_limit_sync_is_refused_and_session_goes_on(make_imap_instance):
    inst = make_imap_instance({"imap_max_literal": "1k"})
    r = Raw(inst)
    r.login()
    r.send(b"a1 APPEND INBOX {5000}\r\n")
    l = r.line()
    assert l.startswith(b"a1 NO [TOOBIG]"), l
    _, t = r.cmd("a2", "NOOP")
    assert t.startswith(b"a2 OK")
    # non-synchronizing: the data is on its way, so the server hangs up
    r.send(b"a3 APPEND INBOX {500000+}\r\n" + b"x" * 2000)
    l = r.line()
    assert l.startswith(b"* BYE"), l
    assert r.closed()
    r.close()


def test_overlong_command_line(make_imap_instance):
    inst = make_imap_instance()
    r = Raw(inst)
    r.login()
    try:
        r.send(b"a1 NOOP " + b"x" * 200000 + b"\r\n")
    except OSError:
        pass
    l = r.line()
    assert l.startswith(b"a1 BAD") or l.startswith(b"* BAD") or l.startswith(b"* BYE"), l
    r.close()
    inst.assert_alive()


@pytest.mark.security
def test_idle_timeout_says_bye(make_imap_instance):
    inst = make_imap_instance({"imap_timeout": "2s"})
    r = Raw(inst)
    r.sock.settimeout(10)
    l = r.line()
    assert l.startswith(b"* BYE"), l
    assert r.closed()


# ---- mailboxes (RFC 9051 6.3) ------------------------------------------------

def test_list_special_use_children_and_lsub(inst):
    m = connect(inst)
    typ, data = m.list()
    assert typ == "OK"
    got = {d.rsplit(b' "/" ', 1)[1]: d for d in data}
    assert b"\\Sent" in got[b"Sent"] and b"\\Trash" in got[b"Trash"] and b"\\Drafts" in got[b"Drafts"]
    assert b"\\Junk" in got[b"Junk"] and b"\\Archive" in got[b"Archive"]
    top = unique("top")
    assert m.create(top + "/child/leaf")[0] == "OK", "CREATE makes the superior names"
    typ, data = m.list('""', top + "*")
    lines = {d.rsplit(b' "/" ', 1)[1].strip(b'"'): d for d in data}
    assert b"\\HasChildren" in lines[top.encode()]
    assert b"\\HasNoChildren" in lines[(top + "/child/leaf").encode()]
    typ, data = m.list('""', top + "/%")
    assert len(data) == 1 and data[0].endswith((top + "/child").encode())
    typ, data = m.list('""', '""')
    assert data == [b'(\\Noselect) "/" ""']
    assert m.subscribe(top + "/child")[0] == "OK"
    typ, data = m.lsub('""', top + "*")
    assert len(data) == 1 and data[0].endswith((top + "/child").encode()), data
    typ, data = m._simple_command("LIST", "(SUBSCRIBED)", '""', '"%s*"' % top)
    data = m.untagged_responses.pop("LIST", [])
    assert len(data) == 1 and b"\\Subscribed" in data[0], data
    typ, data = m.lsub('""', top + "%")
    assert data == [b'(\\Noselect) "/" ' + top.encode()], "LSUB '%%' shows the level above (RFC 3501 6.3.9): %r" % data
    assert m.unsubscribe(top + "/child")[0] == "OK"
    typ, data = m.lsub('""', top + "*")
    assert data == [None]
    typ, data = m._simple_command("LIST", '""', '("%s" "INBOX")' % top, "RETURN", "(CHILDREN)")
    data = m.untagged_responses.pop("LIST", [])
    assert len(data) == 2, data
    typ, data = m._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    data = m.untagged_responses.pop("LIST", [])
    assert len(data) == 5 and all(b"\\HasNoChildren" in d for d in data), data
    m.logout()


def test_create_delete_rename(inst):
    m = connect(inst)
    a = unique("a")
    assert m.create(a)[0] == "OK"
    typ, data = m.create(a)
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    assert m.create(a + "/sub")[0] == "OK"
    b = unique("b")
    assert m.rename(a, b)[0] == "OK"
    typ, data = m.list('""', b + "*")
    names = sorted(d.rsplit(b' "/" ', 1)[1] for d in data)
    assert names == [b.encode(), (b + "/sub").encode()], "RENAME moves the children too"
    typ, data = m.select(a)
    assert typ == "NO"
    assert m.delete(b + "/sub")[0] == "OK"
    assert m.delete(b)[0] == "OK"
    typ, data = m.delete(b)
    assert typ == "NO"
    typ, data = m.delete("INBOX")
    assert typ == "NO"
    typ, data = m.create("inbox")
    assert typ == "NO"
    m.logout()


def test_rename_inbox_moves_messages_and_keeps_inbox(make_imap_instance):
    inst = make_imap_instance()
    m = connect(inst)
    append(m, "INBOX", b"Subject: one\r\n\r\n1\r\n")
    append(m, "INBOX", b"Subject: two\r\n\r\n2\r\n")
    assert m.rename("INBOX", "Old-Inbox")[0] == "OK"
    typ, data = m.status("INBOX", "(MESSAGES)")
    assert b"MESSAGES 0" in data[0]
    typ, data = m.status("Old-Inbox", "(MESSAGES)")
    assert b"MESSAGES 2" in data[0]
    m.logout()


@pytest.mark.security
def test_mailbox_name_tricks_are_refused(inst):
    m = connect(inst)
    for bad in ("../x", "a/../../b", "./x", "x/..", "/abs", "a//b", "x/"):
        typ, data = m.create('"%s"' % bad)
        if bad == "x/":
            # a trailing separator only announces children (RFC 9051 6.3.4)
            assert typ == "OK", (bad, data)
            continue
        assert typ == "NO", (bad, data)
    typ, data = m.select('"../INBOX"')
    assert typ == "NO"
    m.logout()
    for dirpath in (inst.data_dir.parent, inst.data_dir):
        assert not (dirpath / "x").exists() and not (dirpath / "b").exists()


def test_modified_utf7_names(inst):
    m = connect(inst)
    name = "Entw&APw-rfe-" + unique("u")
    assert m.create(name)[0] == "OK"
    typ, data = m.list('""', "Entw*")
    assert any(d.endswith(name.encode()) for d in data), data
    assert m.select(name)[0] == "OK"
    assert refused(m.create, '"bad&-utf7&AB"')
    m.logout()


def test_status(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, b"Subject: s1\r\n\r\nx\r\n", flags=r"(\Seen)")
    append(m, box, b"Subject: s2\r\n\r\nyy\r\n")
    typ, data = m.status(box, "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)")
    assert typ == "OK"
    assert b"MESSAGES 2" in data[0] and b"UNSEEN 1" in data[0] and b"UIDNEXT 3" in data[0]
    assert re.search(rb"UIDVALIDITY \d+", data[0])
    typ, data = m.status(unique("none"), "(MESSAGES)")
    assert typ == "NO"
    m.logout()


def test_select_and_examine_responses(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, b"Subject: a\r\n\r\na\r\n", flags=r"(\Seen)")
    append(m, box, b"Subject: b\r\n\r\nb\r\n")
    r = Raw(inst)
    r.login()
    lines, t = r.cmd("s1", "SELECT " + box)
    assert t.startswith(b"s1 OK [READ-WRITE]")
    text = b"\n".join(lines)
    assert b"* 2 EXISTS" in text and b"* FLAGS (" in text and b"[PERMANENTFLAGS (" in text
    assert b"[UNSEEN 2]" in text and b"[UIDNEXT 3]" in text and b"[UIDVALIDITY " in text
    assert re.search(rb"\* \d+ RECENT", text)
    lines, t = r.cmd("s2", "EXAMINE " + box)
    assert t.startswith(b"s2 OK [READ-ONLY]")
    assert b"[CLOSED]" in b"\n".join(lines)
    _, t = r.cmd("s3", "STORE 1 +FLAGS (\\Deleted)")
    assert t.startswith(b"s3 NO"), "STORE in a read-only mailbox: %r" % t
    lines, t = r.cmd("s4", "SELECT nosuch-" + unique())
    assert t.startswith(b"s4 NO")
    _, t = r.cmd("s5", "FETCH 1 FLAGS")
    assert t.startswith(b"s5 BAD"), "a failed SELECT leaves no mailbox selected"
    r.close()
    m.logout()


# ---- messages (RFC 9051 6.4) ---------------------------------------------------

MULTIPART = (b"From: Alice <alice@example.test>\r\n"
             b"To: Bob <bob@example.test>, carol@example.test\r\n"
             b"Cc: Dave <dave@example.test>\r\n"
             b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= multipart\r\n"
             b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
             b"Message-ID: <mp-1@example.test>\r\n"
             b"MIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
             b"\r\n"
             b"preamble\r\n"
             b"--XX\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n"
             b"\r\n"
             b"Caf=C3=A9 needle-in-body\r\n"
             b"--XX\r\n"
             b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
             b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
             b"Content-Transfer-Encoding: base64\r\n"
             b"\r\n"
             b"AAECAw==\r\n"
             b"--XX--\r\n")


def test_append_and_fetch_byte_for_byte(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    msg = make_message(unique("app"))
    uid = append(m, box, msg, flags=r"(\Flagged $Work)", date='"07-Feb-1994 21:52:25 -0800"')
    assert m.select(box)[0] == "OK"
    data = fetch_one(m, str(uid), "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", uid=True)
    head = data[0][0]
    assert b"UID %d" % uid in head
    assert b"\\Flagged" in head and b"$Work" in head
    assert b'INTERNALDATE "08-Feb-1994 05:52:25 +0000"' in head
    assert b"RFC822.SIZE %d" % len(msg) in head
    assert literal_of(data) == msg
    typ, data = m.append(unique("nobox"), None, None, msg)
    assert typ == "NO" and b"TRYCREATE" in data[0]
    m.logout()


def test_fetch_sections_envelope_bodystructure(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, MULTIPART)
    m.select(box)
    hdr_end = MULTIPART.index(b"\r\n\r\n") + 4
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[HEADER])")) == MULTIPART[:hdr_end]
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[TEXT])")) == MULTIPART[hdr_end:]
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[HEADER.FIELDS (Subject MESSAGE-ID)])")) == (
        b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= multipart\r\nMessage-ID: <mp-1@example.test>\r\n\r\n")
    nf = literal_of(fetch_one(m, "1", "(BODY.PEEK[HEADER.FIELDS.NOT (Subject Message-ID Cc To From Date)])"))
    assert nf.startswith(b"MIME-Version: 1.0\r\nContent-Type:") and b"Subject" not in nf
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[1])")) == b"Caf=C3=A9 needle-in-body"
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[2])")) == b"AAECAw=="
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[2.MIME])")).startswith(
        b"Content-Type: application/octet-stream")
    data = fetch_one(m, "1", "(BODY.PEEK[]<10.20>)")
    assert b"BODY[]<10>" in data[0][0] and literal_of(data) == MULTIPART[10:30]
    data = fetch_one(m, "1", "(RFC822.HEADER)")
    assert literal_of(data) == MULTIPART[:hdr_end]
    data = fetch_one(m, "1", "(ENVELOPE)")
    env = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'"Mon, 7 Feb 1994 21:52:25 -0800"' in env
    assert b'(("Alice" NIL "alice" "example.test"))' in env
    assert b'(("Bob" NIL "bob" "example.test")(NIL NIL "carol" "example.test"))' in env
    assert b'"<mp-1@example.test>"' in env
    data = fetch_one(m, "1", "(BODYSTRUCTURE)")
    bs = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 24 1' in bs, bs
    assert b'("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" 8' in bs, bs
    assert b'"MIXED" ("BOUNDARY" "XX")' in bs
    assert b'("ATTACHMENT" ("FILENAME" "a.bin"))' in bs
    data = fetch_one(m, "1", "(BODY)")
    b = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'"MIXED")' in b and b"BOUNDARY" not in b, "BODY has no extension data"
    m.logout()


def test_fetch_sets_seen_unless_peek(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, b"Subject: s\r\n\r\nbody\r\n")
    m.select(box)
    fetch_one(m, "1", "(BODY.PEEK[])")
    assert b"\\Seen" not in fetch_one(m, "1", "(FLAGS)")[0]
    data = fetch_one(m, "1", "(BODY[TEXT])")
    assert b"\\Seen" in data[0][0] or b"\\Seen" in b"".join(d for d in data if isinstance(d, bytes)), data
    assert b"\\Seen" in fetch_one(m, "1", "(FLAGS)")[0]
    m.select(box, readonly=True)
    assert refused(m.store, "1", "-FLAGS", r"(\Seen)"), "STORE in a read-only mailbox"
    m.select(box)
    m.store("1", "-FLAGS", r"(\Seen)")
    m.select(box, readonly=True)
    fetch_one(m, "1", "(RFC822)")
    assert b"\\Seen" not in fetch_one(m, "1", "(FLAGS)")[0], "EXAMINE never sets \\Seen"
    m.logout()


def test_fetch_macros_and_bad_sequence(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, b"Subject: s\r\n\r\nbody\r\n")
    m.select(box)
    d = fetch_one(m, "1", "ALL")[0]
    assert b"FLAGS" in d and b"INTERNALDATE" in d and b"RFC822.SIZE" in d and b"ENVELOPE" in d
    d = fetch_one(m, "1", "FULL")[0]
    assert b"BODY (" in d
    assert refused(m.fetch, "5", "FLAGS")
    typ, data = m.uid("FETCH", "99", "FLAGS")
    assert typ == "OK" and data == [None]
    m.logout()


def test_store_flags_and_keywords(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    for i in range(3):
        append(m, box, b"Subject: %d\r\n\r\nx\r\n" % i)
    m.select(box)
    typ, data = m.store("1:2", "+FLAGS", r"(\Flagged $Label1)")
    assert typ == "OK" and len(data) == 2 and all(b"\\Flagged" in d and b"$Label1" in d for d in data)
    typ, data = m.store("2", "-FLAGS", r"(\Flagged)")
    assert b"\\Flagged" not in data[0] and b"$Label1" in data[0]
    typ, data = m.store("3", "FLAGS", r"(\Answered \Draft)")
    assert b"\\Answered" in data[0] and b"\\Draft" in data[0]
    typ, data = m.store("1", "+FLAGS.SILENT", r"(\Seen)")
    assert typ == "OK" and data == [None]
    assert b"\\Seen" in fetch_one(m, "1", "(FLAGS)")[0]
    typ, data = m.uid("STORE", "3", "+FLAGS", r"(\Deleted)")
    assert b"UID 3" in data[0]
    assert refused(m.store, "1", "+FLAGS", r"(\Bogus)")
    r = Raw(inst)
    r.login()
    lines, _ = r.cmd("s", "SELECT " + box)
    flags_line = [l for l in lines if l.startswith(b"* FLAGS")][0]
    assert b"$Label1" in flags_line
    r.close()
    m.logout()


def test_copy_move_expunge_close_unselect(inst):
    m = connect(inst)
    src, dst = fresh_mailbox(m, "src"), fresh_mailbox(m, "dst")
    for i in range(5):
        append(m, src, b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i))
    m.select(src)
    typ, data = m.copy("1:2", dst)
    assert typ == "OK" and re.search(rb"\[COPYUID \d+ 1:2 1:2\]", data[0]), data
    typ, data = m.copy("1", unique("nobox"))
    assert typ == "NO" and b"TRYCREATE" in data[0]
    typ, data = m._simple_command("MOVE", "3", dst)
    assert typ == "OK"
    assert m.untagged_responses.pop("EXPUNGE", None) == [b"3"]
    typ, data = m.uid("MOVE", "4", dst)
    assert typ == "OK"
    assert m.untagged_responses.pop("EXPUNGE", None) == [b"3"]
    typ, data = m.status(dst, "(MESSAGES)")
    assert b"MESSAGES 4" in data[0]
    # now src holds uids 1,2,5 as 1..3
    m.store("1", "+FLAGS", r"(\Deleted)")
    m.store("3", "+FLAGS", r"(\Deleted)")
    typ, data = m.uid("EXPUNGE", "5")
    assert typ == "OK"
    assert m.untagged_responses.pop("EXPUNGE", None) == [b"3"], "UID EXPUNGE removes only the given uids"
    typ, data = m.expunge()
    assert data == [b"1"]
    typ, data = m.uid("SEARCH", "ALL")
    assert data == [b"2"]
    m.store("1", "+FLAGS", r"(\Deleted)")
    typ, data = m._simple_command("UNSELECT")
    assert typ == "OK"
    typ, data = m.status(src, "(MESSAGES)")
    assert b"MESSAGES 1" in data[0], "UNSELECT does not expunge"
    m.select(src)
    typ, data = m.close()
    assert typ == "OK"
    assert "EXPUNGE" not in m.untagged_responses, "CLOSE expunges silently"
    typ, data = m.status(src, "(MESSAGES)")
    assert b"MESSAGES 0" in data[0]
    m.logout()


def test_search(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, MULTIPART, date='"07-Feb-1994 21:52:25 -0800"')
    append(m, box, b"From: Zed <zed@other.test>\r\nTo: alice@example.test\r\nSubject: plain one\r\n"
               b"Date: Tue, 1 Mar 2022 10:00:00 +0000\r\nX-Tag: orange\r\n\r\n" + b"y" * 3000 + b"\r\n",
           flags=r"(\Seen \Flagged $Blue)", date='"01-Mar-2022 10:00:00 +0000"')
    append(m, box, b"Subject: third\r\nBcc: hidden@example.test\r\n\r\nsmall text\r\n", flags=r"(\Deleted)")
    m.select(box)

    def s(*crit, uid=False):
        typ, data = m.uid("SEARCH", *crit) if uid else m.search(None, *crit)
        assert typ == "OK", data
        return data[0].split()
    assert s("ALL") == [b"1", b"2", b"3"]
    assert s("2:*") == [b"2", b"3"]
    assert s("UID", "1,3") == [b"1", b"3"]
    assert s("SEEN") == [b"2"] and s("UNSEEN") == [b"1", b"3"]
    assert s("FLAGGED") == [b"2"] and s("DELETED") == [b"3"] and s("UNDELETED") == [b"1", b"2"]
    assert s("KEYWORD", "$Blue") == [b"2"] and s("UNKEYWORD", "$Blue") == [b"1", b"3"]
    assert s("LARGER", "2000") == [b"2"] and s("SMALLER", "100") == [b"3"]
    assert s("BEFORE", "1-Jan-2000") == [b"1"]
    assert s("ON", "1-Mar-2022") == [b"2"]
    assert s("SINCE", "1-Jan-2000") == [b"2", b"3"]
    assert s("SENTBEFORE", "1-Jan-2000") == [b"1"]
    assert s("SENTON", "7-Feb-1994") == [b"1"]
    assert s("SENTSINCE", "1-Mar-2022") == [b"2"]
    assert s("FROM", "zed@other") == [b"2"]
    assert s("TO", "carol") == [b"1"] and s("CC", "dave") == [b"1"] and s("BCC", "hidden") == [b"3"]
    m.literal = "Grüße".encode("utf-8")
    typ, data = m.search("UTF-8", "SUBJECT")
    assert typ == "OK" and data[0].split() == [b"1"], "SUBJECT searches the RFC 2047 decoded text"
    assert s("HEADER", "X-Tag", "ORANGE") == [b"2"]
    assert s("HEADER", "X-Tag", '""') == [b"2"]
    assert s("BODY", "needle-in-body") == [b"1"]
    m.literal = "Café".encode("utf-8")
    typ, data = m.search("UTF-8", "BODY")
    assert data[0].split() == [b"1"], "BODY searches the decoded text"
    assert s("TEXT", "small") == [b"3"] and s("TEXT", "orange") == [b"2"]
    assert s("NOT", "SEEN", "NOT", "DELETED") == [b"1"]
    assert s("OR", "FLAGGED", "DELETED") == [b"2", b"3"]
    assert s("(OR SEEN DELETED)", "LARGER", "1000") == [b"2"]
    assert s("NEW") == [b"1", b"3"] and s("RECENT") == [b"1", b"2", b"3"] and s("OLD") == []
    assert s("UID", "2:*", uid=True) == [b"2", b"3"]
    typ, data = m.search("KOI8-XYZ", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    assert refused(m.search, None, "FROBNICATE")
    typ, data = m._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "UNDELETED")
    es = m.untagged_responses.pop("ESEARCH", [b""])[0]
    assert b"MIN 1" in es and b"MAX 2" in es and b"COUNT 2" in es, es
    assert es.startswith(b'(TAG "') and b"ALL" not in es
    typ, data = m._simple_command("UID", "SEARCH", "RETURN", "()", "1:*")
    es = m.untagged_responses.pop("ESEARCH", [b""])[0]
    assert re.match(rb'\(TAG "[^"]+"\) UID ALL 1:3$', es), es
    typ, data = m._simple_command("SEARCH", "RETURN", "(MIN COUNT)", "KEYWORD", "$None")
    es = m.untagged_responses.pop("ESEARCH", [b""])[0]
    assert es.endswith(b") COUNT 0"), "no MIN when nothing matched (RFC 4731 3.1): %r" % es
    # SEARCHRES (RFC 5182) is announced: SAVE works (test_imap_searchres.py).
    assert m._simple_command("SEARCH", "RETURN", "(SAVE)", "ALL")[0] == "OK"
    m.logout()


# ---- several sessions (RFC 9051 5.2, 7.5.1) -------------------------------------

def test_two_sessions_see_each_others_changes(inst):
    a = connect(inst)
    box = fresh_mailbox(a)
    append(a, box, b"Subject: 1\r\n\r\none\r\n")
    append(a, box, b"Subject: 2\r\n\r\ntwo\r\n")
    a.select(box)
    b = Raw(inst)
    b.login()
    b.cmd("s", "SELECT " + box)
    a.store("1", "+FLAGS", r"(\Flagged)")
    lines, _ = b.cmd("n1", "NOOP")
    assert any(re.match(rb"\* 1 FETCH \(.*FLAGS \(.*\\Flagged", l) for l in lines), lines
    append(a, box, b"Subject: 3\r\n\r\nthree\r\n")
    lines, _ = b.cmd("n2", "NOOP")
    assert b"* 3 EXISTS" in lines, lines
    a.store("1", "+FLAGS", r"(\Deleted)")
    a.expunge()
    # no EXPUNGE while answering FETCH (RFC 9051 7.5.1); numbers stay
    lines, t = b.cmd("f", "FETCH 3 (BODY.PEEK[TEXT])")
    assert t.startswith(b"f OK"), t
    assert not any(l.endswith(b"EXPUNGE") for l in lines), lines
    assert any(b"three" in l for l in lines), lines
    lines, _ = b.cmd("n3", "NOOP")
    assert b"* 1 EXPUNGE" in lines, lines
    lines, _ = b.cmd("f2", "FETCH 2 (BODY.PEEK[TEXT])")
    assert any(b"three" in l for l in lines), "after EXPUNGE the numbers shift: %r" % lines
    b.close()
    a.logout()


def test_idle_woken_by_smtp_delivery(inst):
    r = Raw(inst)
    r.login(BOB)
    r.cmd("s", "SELECT INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    marker = unique("idle")
    t0 = time.monotonic()
    smtp_deliver(inst, BOB, make_message(marker, rcpt=BOB))
    r.sock.settimeout(5)
    l = r.line()
    waited = time.monotonic() - t0
    assert re.match(rb"\* \d+ EXISTS", l), l
    assert waited < 3, "IDLE took %.1fs to report new mail" % waited
    r.send(b"DONE\r\n")
    lines, t = r.until("i")
    assert t.startswith(b"i OK"), t
    lines, t = r.cmd("n", "NOOP")
    assert t.startswith(b"n OK")
    r.close()


def test_smtp_delivered_mail_read_back_byte_for_byte(inst):
    marker = unique("rb")
    sent = make_message(marker, rcpt=ALICE, body="caf\u00e9 \u2014 line\r\n.leading dot\r\n" * 5)
    smtp_deliver(inst, ALICE, sent)
    stored = inst.wait_message(marker)
    m = connect(inst)
    m.select("INBOX")
    typ, data = m.search(None, "HEADER", "Message-ID", marker)
    nums = data[0].split()
    assert len(nums) == 1
    got = literal_of(fetch_one(m, nums[0].decode(), "(BODY.PEEK[])"))
    assert got == stored, "FETCH BODY[] differs from the stored message"
    assert got.endswith(sent)
    m.logout()


def test_curl_imap_and_imaps(inst):
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    m = connect(inst)
    box = fresh_mailbox(m, "curl")
    msg = b"Subject: curl\r\n\r\nfetched by curl\r\n"
    uid = append(m, box, msg)
    m.logout()
    p, ps = imap_ports(inst)
    for url, extra in (("imap://127.0.0.1:%d/%s;UID=%d" % (p, box, uid), ["--ssl-reqd"]),
                       ("imaps://127.0.0.1:%d/%s;UID=%d" % (ps, box, uid), [])):
        r = subprocess.run(["curl", "-sS", "-k", "--max-time", "20", "-u", "%s:%s" % (ALICE, PW)] + extra + [url],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout == msg, r.stdout


def test_rfc3501_section_8_sample_session(inst):
    """The example of RFC 3501 section 8, replayed against our data."""
    m = connect(inst)
    for i in range(4):
        append(m, "INBOX", b"From: x@example.test\r\nSubject: s%d\r\n\r\nbody %d\r\n" % (i, i))
    m.logout()
    r = Raw(inst)
    assert r.greeting.startswith(b"* OK")
    _, t = r.cmd("a001", 'login %s "%s"' % (ALICE, PW))
    assert t.startswith(b"a001 OK")
    lines, t = r.cmd("a002", "select inbox")
    assert t.startswith(b"a002 OK [READ-WRITE]")
    assert any(l.endswith(b"EXISTS") for l in lines) and any(b"[UIDVALIDITY" in l for l in lines)
    lines, t = r.cmd("a003", "fetch 1 full")
    assert t.startswith(b"a003 OK") and re.match(rb"\* 1 FETCH \(FLAGS .*INTERNALDATE .*RFC822.SIZE \d+ ENVELOPE .*BODY \(", lines[0])
    lines, t = r.cmd("a004", "fetch 1 body[header]")
    assert t.startswith(b"a004 OK") and b"BODY[HEADER] {" in lines[0]
    assert b"\\Seen" in lines[0], "BODY[HEADER] sets \\Seen and the FLAGS are reported"
    lines, t = r.cmd("a005", "store 1 +flags \\deleted")
    assert t.startswith(b"a005 OK") and b"\\Deleted" in lines[0]
    _, t = r.cmd("a006", "logout")
    assert t.startswith(b"a006 OK")
    r.close()


def test_shutdown_says_bye(make_imap_instance):
    inst = make_imap_instance()
    r = Raw(inst)
    r.login()
    r.cmd("s", "SELECT INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    assert inst.stop() == 0
    l = r.line()
    assert l.startswith(b"* BYE"), l


def test_enable_utf8_accept(inst):
    """RFC 6855: UTF-8 mailbox names after ENABLE UTF8=ACCEPT; others keep
    seeing modified UTF-7; SEARCH takes no CHARSET then; RFC 5161 3.1:
    ENABLE only before SELECT."""
    r = Raw(inst)
    r.login()
    lines, t = r.cmd("e", "ENABLE UTF8=ACCEPT X-UNKNOWN")
    assert t.startswith(b"e OK") and lines == [b"* ENABLED UTF8=ACCEPT"], lines
    tail = unique("n")
    name = ("Grüße-" + tail).encode()
    _, t = r.cmd("c", b'CREATE "' + name + b'"')
    assert t.startswith(b"c OK"), t
    lines, _ = r.cmd("l", b'LIST "" "Gr*' + tail.encode() + b'"')
    assert len(lines) == 1 and lines[0].endswith(b'"' + name + b'"'), lines
    _, t = r.cmd("s", b'SELECT "' + name + b'"')
    assert t.startswith(b"s OK"), t
    _, t = r.cmd("x", "SEARCH CHARSET UTF-8 ALL")
    assert t.startswith(b"x BAD"), t
    _, t = r.cmd("y", 'SEARCH SUBJECT "Grüße"'.encode())
    assert t.startswith(b"y OK"), t
    _, t = r.cmd("e2", "ENABLE UTF8=ACCEPT")
    assert t.startswith(b"e2 BAD"), "ENABLE after SELECT: %r" % t
    r.close()
    m = connect(inst)
    typ, data = m.list('""', '"Gr*%s"' % tail)
    assert data == [b'(\\HasNoChildren) "/" Gr&APwA3w-e-' + tail.encode()], data
    m.logout()


def test_connections_per_user_limit(make_imap_instance):
    inst = make_imap_instance({"imap_max_connections_per_user": 2})
    a, b = connect(inst), connect(inst)
    c = connect(inst, user=None)
    with pytest.raises(imaplib.IMAP4.error) as e:
        c.login(ALICE, PW)
    assert "LIMIT" in str(e.value)
    c.login(BOB, USERS[BOB])          # other users are not affected
    a.logout()
    time.sleep(0.2)
    d = connect(inst)                 # a slot was freed
    for m in (b, c, d):
        m.logout()


def test_pipelined_appends_and_big_fetch_in_pieces(inst):
    """Many pipelined APPENDs with LITERAL+ in one write, then a FETCH whose
    response (several MB) is produced in pieces as the client reads it."""
    r = Raw(inst)
    r.login()
    box = unique("big")
    r.cmd("c", "CREATE " + box)
    msgs = [(b"Subject: bulk %d\r\n\r\n" % i) + (b"%05d " % i) * 2000 + b"\r\n" for i in range(300)]
    batch = b"".join(b"p%d APPEND %s {%d+}\r\n%s\r\n" % (i, box.encode(), len(m), m) for i, m in enumerate(msgs))
    r.send(batch)
    for i in range(len(msgs)):
        _, t = r.until("p%d" % i)
        assert t.startswith(b"p%d OK [APPENDUID" % i), t
    r.cmd("s", "SELECT " + box)
    r.send(b"f FETCH 1:* (BODY.PEEK[])\r\n")
    time.sleep(1.0)          # let the server fill the socket and wait for us
    lines, t = r.until("f")
    assert t.startswith(b"f OK"), t
    assert len(lines) == len(msgs)
    for i, l in enumerate(lines):
        assert l.startswith(b"* %d FETCH (BODY[] {%d}\r\n" % (i + 1, len(msgs[i]))), l[:80]
        assert msgs[i] in l
    r.close()


def test_idle_reports_flags_and_expunge_from_other_session(inst):
    a = connect(inst)
    box = fresh_mailbox(a)
    append(a, box, b"Subject: 1\r\n\r\none\r\n")
    append(a, box, b"Subject: 2\r\n\r\ntwo\r\n")
    a.select(box)
    r = Raw(inst)
    r.login()
    r.cmd("s", "SELECT " + box)
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    a.store("2", "+FLAGS", r"(\Flagged)")
    r.sock.settimeout(5)
    l = r.line()
    assert re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged", l), l
    a.store("1", "+FLAGS", r"(\Deleted)")
    a.expunge()
    seen = [r.line()]
    while seen[-1] != b"* 1 EXPUNGE":
        # a FETCH for the \Deleted flag may come first, or not at all
        assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS", seen[-1]), seen
        seen.append(r.line())
    r.send(b"done\r\n")
    _, t = r.until("i")
    assert t.startswith(b"i OK")
    lines, t = r.cmd("f", "FETCH 1 (UID)")
    assert lines == [b"* 1 FETCH (UID 2)"], lines
    r.close()
    a.logout()


def test_idle_in_authenticated_state_and_bad_done(inst):
    r = Raw(inst)
    r.login()
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"NOT-DONE\r\n")
    _, t = r.until("i")
    assert t.startswith(b"i BAD"), t
    _, t = r.cmd("n", "NOOP")
    assert t.startswith(b"n OK")
    r.close()


def test_deleted_selected_mailbox_ends_other_session(inst):
    a = connect(inst)
    box = fresh_mailbox(a)
    r = Raw(inst)
    r.login()
    r.cmd("s", "SELECT " + box)
    assert a.delete(box)[0] == "OK"
    r.send(b"n NOOP\r\n")
    l = r.line()
    assert l.startswith(b"* BYE"), l
    a.logout()


def test_condstore(inst):
    """RFC 7162 CONDSTORE: HIGHESTMODSEQ, MODSEQ, CHANGEDSINCE,
    UNCHANGEDSINCE with MODIFIED, SEARCH MODSEQ, STATUS HIGHESTMODSEQ."""
    r = Raw(inst)
    r.login()
    lines, t = r.cmd("e", "ENABLE CONDSTORE")
    assert lines == [b"* ENABLED CONDSTORE"], lines
    r.close()
    r = Raw(inst)
    r.login()
    box = unique("cs")
    r.cmd("c", "CREATE " + box)
    for i in range(3):
        msg = b"Subject: cs %d\r\n\r\nx\r\n" % i
        _, t = r.cmd("a%d" % i, b"APPEND %s {%d+}\r\n%s" % (box.encode(), len(msg), msg))
        assert t.startswith(b"a%d OK" % i)
    lines, t = r.cmd("s", "SELECT %s (CONDSTORE)" % box)
    assert t.startswith(b"s OK")
    hms = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"\n".join(lines)).group(1))
    lines, _ = r.cmd("f", "FETCH 1:* (MODSEQ)")
    mods = [int(re.search(rb"MODSEQ \((\d+)\)", l).group(1)) for l in lines]
    assert len(mods) == 3 and max(mods) == hms
    lines, _ = r.cmd("st", "STORE 2 +FLAGS (\\Flagged)")
    m = re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged( \\Recent)?\) MODSEQ \((\d+)\)\)$", lines[0])
    assert m, lines
    m2 = int(m.group(2))
    assert m2 > hms
    lines, _ = r.cmd("f2", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % hms)
    assert len(lines) == 1 and lines[0].startswith(b"* 2 FETCH") and b"MODSEQ (%d)" % m2 in lines[0], lines
    lines, _ = r.cmd("f3", "UID FETCH 1:* (UID) (CHANGEDSINCE 0)")
    assert len(lines) == 3 and all(b"MODSEQ (" in l for l in lines), lines
    lines, t = r.cmd("st2", "STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Seen)" % hms)
    assert t.startswith(b"st2 OK [MODIFIED 2]"), t
    assert sorted(l.split(b" FETCH")[0] for l in lines) == [b"* 1", b"* 3"], lines
    assert all(re.search(rb"\(UID \d+ MODSEQ \(\d+\)\)$", l) for l in lines), lines
    lines, t = r.cmd("st3", "UID STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Answered)")
    assert t.startswith(b"st3 OK [MODIFIED 1:3]"), t
    lines, t = r.cmd("se", "SEARCH MODSEQ %d" % m2)
    mm = re.match(rb"\* SEARCH ((?:\d+ ?)+) \(MODSEQ (\d+)\)$", lines[0])
    assert mm and sorted(mm.group(1).split()) == [b"1", b"2", b"3"], lines
    top = int(mm.group(2))
    lines, _ = r.cmd("st4", "STATUS %s (HIGHESTMODSEQ)" % box)
    assert lines == [b"* STATUS %s (HIGHESTMODSEQ %d)" % (box.encode(), top)], lines
    other = connect(inst)
    other.select(box)
    other.store("3", "-FLAGS", r"(\Seen)")
    other.logout()
    lines, _ = r.cmd("n", "NOOP")
    assert any(re.match(rb"\* 3 FETCH \(UID 3 FLAGS \((\\Recent)?\) MODSEQ \(\d+\)\)", l) for l in lines), lines
    _, t = r.cmd("q", "SELECT %s (QRESYNC (1 1))" % box)
    assert t.startswith(b"q BAD")
    r.close()


def test_create_special_use_list_status_status_size(inst):
    """RFC 6154 CREATE-SPECIAL-USE, RFC 5819 LIST-STATUS, RFC 8438 STATUS=SIZE."""
    r = Raw(inst)
    r.login()
    name = unique("arch")
    _, t = r.cmd("c", "CREATE %s (USE (\\Archive))" % name)
    assert t.startswith(b"c OK"), t
    lines, _ = r.cmd("l", 'LIST "" %s' % name)
    assert lines == [b'* LIST (\\HasNoChildren \\Archive) "/" ' + name.encode()], lines
    _, t = r.cmd("c2", "CREATE %s-x (USE (\\Important))" % name)
    assert t.startswith(b"c2 NO [USEATTR]"), t
    msg = b"Subject: sz\r\n\r\n12345\r\n"
    r.cmd("a", b"APPEND %s {%d+}\r\n%s" % (name.encode(), len(msg), msg))
    lines, t = r.cmd("s", "STATUS %s (SIZE MESSAGES DELETED)" % name)
    assert lines == [b"* STATUS %s (MESSAGES 1 DELETED 0 SIZE %d)" % (name.encode(), len(msg))], lines
    lines, t = r.cmd("ls", 'LIST "" "%s*" RETURN (STATUS (MESSAGES UIDNEXT))' % name)
    assert t.startswith(b"ls OK")
    assert lines[0].startswith(b"* LIST ") and lines[1] == b"* STATUS %s (MESSAGES 1 UIDNEXT 2)" % name.encode(), lines
    for bad in ("a*b", "a%b"):
        _, t = r.cmd("w", 'CREATE "%s"' % bad)
        assert t.startswith(b"w NO"), "wildcards in names: %r" % t
    r.close()


def test_many_pipelined_commands(inst):
    """A long pipeline of small commands is answered in order, and the
    output of a client that does not read is bounded (it just waits)."""
    r = Raw(inst)
    r.login()
    n = 20000
    t0 = time.monotonic()
    r.send(b"".join(b"n%d NOOP\r\n" % i for i in range(n)))
    for i in range(n):
        l = r.line()
        assert l.startswith(b"n%d OK" % i), l
    assert time.monotonic() - t0 < 20
    _, t = r.cmd("z", "CAPABILITY")
    assert t.startswith(b"z OK")
    r.close()


NESTED = (b"From: a@example.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=\"O\"\r\n\r\n"
          b"--O\r\nContent-Type: text/plain\r\n\r\nouter text\r\n"
          b"--O\r\nContent-Type: message/rfc822\r\n\r\n"
          b"From: b@example.test\r\nSubject: inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
          b"<p>inner</p>\r\n"
          b"--O--\r\n")


def test_fetch_encapsulated_message(inst):
    """RFC 9051 6.4.5 section numbers through message/rfc822."""
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, NESTED)
    m.select(box)
    inner_hdr = b"From: b@example.test\r\nSubject: inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[2.HEADER])")) == inner_hdr
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[2.TEXT])")) == b"<p>inner</p>"
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[2.1])")) == b"<p>inner</p>"
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[2])")) == inner_hdr + b"<p>inner</p>"
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[2.MIME])")) == b"Content-Type: message/rfc822\r\n\r\n"
    data = fetch_one(m, "1", "(BODY.PEEK[9])")
    assert data[0].endswith(b"BODY[9] NIL)"), data
    data = fetch_one(m, "1", "(BODYSTRUCTURE)")
    bs = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert re.search(rb'\("MESSAGE" "RFC822" NIL NIL NIL "7BIT" \d+ \(NIL "inner" \(\(NIL NIL "b" "example.test"\)\)'
                     rb'.*\("TEXT" "HTML" \("CHARSET" "utf-8"\) NIL NIL "7BIT" 12 1 NIL NIL NIL NIL\) 5 NIL NIL NIL NIL\)', bs), bs
    m.logout()


def test_plaintext_auth_loopback(make_imap_instance):
    inst = make_imap_instance({"plaintext_auth_loopback": "yes"})
    r = Raw(inst, tls=False)
    assert b"LOGINDISABLED" not in r.greeting and b"AUTH=PLAIN" in r.greeting
    r.login()
    lines, t = r.cmd("s", "SELECT INBOX")
    assert t.startswith(b"s OK")
    r.close()
