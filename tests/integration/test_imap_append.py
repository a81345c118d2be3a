"""MULTIAPPEND (RFC 3502), BINARY (RFC 3516) and APPENDLIMIT (RFC 7889),
over raw sockets against the real daemon."""

import base64
import os
import re
import time

import pytest

from pochtatest import unique
from test_imap import SHARED_CONF, Raw, close_instance, make_imap_instance, start_imap_instance  # noqa: F401


@pytest.fixture(scope="module")
def inst():
    i = start_imap_instance(SHARED_CONF)
    yield i
    close_instance(i)


def session(inst):
    r = Raw(inst)
    r.login()
    return r


def create(r):
    box = unique("ap")
    _, t = r.cmd("c", 'CREATE "%s"' % box)
    assert t.startswith(b"c OK"), t
    return box


def msg(subject, body=b"hello\r\n", extra=b""):
    return (b"From: a@example.test\r\nSubject: " + subject.encode() + b"\r\n" + extra + b"\r\n" + body)


def count(r, box):
    lines, t = r.cmd("st", 'STATUS "%s" (MESSAGES)' % box)
    assert t.startswith(b"st OK"), t
    return int(re.search(rb"MESSAGES (\d+)", lines[0]).group(1))


def caps(r):
    lines, _ = r.cmd("cp", "CAPABILITY")
    return lines[0].split()


def test_capabilities_announced(inst):
    r = session(inst)
    c = caps(r)
    assert b"MULTIAPPEND" in c and b"BINARY" in c
    limit = [x for x in c if x.startswith(b"APPENDLIMIT=")]
    assert len(limit) == 1 and int(limit[0].split(b"=")[1]) > 0
    r.close()


def test_rfc3502_multiappend_appends_all_with_their_flags_and_dates(inst):
    r = session(inst)
    box = create(r)
    m1, m2, m3 = msg("one"), msg("two"), msg("three")
    cmd = (b'a APPEND "' + box.encode() + b'" (\\Seen) {%d+}\r\n' % len(m1) + m1 +
           b' (\\Flagged $Work) "01-Feb-2020 10:00:00 +0100" {%d+}\r\n' % len(m2) + m2 +
           b" {%d+}\r\n" % len(m3) + m3 + b"\r\n")
    r.send(cmd)
    _, t = r.until("a")
    m = re.match(rb"a OK \[APPENDUID (\d+) (\d+):(\d+)\]", t)
    assert m, t
    assert int(m.group(3)) - int(m.group(2)) == 2
    r.cmd("s", 'SELECT "%s"' % box)
    lines, t = r.cmd("f", "FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[])")
    assert t.startswith(b"f OK")
    assert len(lines) == 3
    assert b"\\Seen" in lines[0] and m1 in lines[0]
    assert b"\\Flagged" in lines[1] and b"$Work" in lines[1] and b'"01-Feb-2020 10:00:00 +0100"' in lines[1] \
        or b'"01-Feb-2020 09:00:00 +0000"' in lines[1]
    assert m2 in lines[1] and m3 in lines[2]
    r.close()


def test_rfc3502_synchronizing_literals_each_get_a_continuation(inst):
    r = session(inst)
    box = create(r)
    m1, m2 = msg("s1"), msg("s2")
    r.send(b'a APPEND "' + box.encode() + b'" {%d}\r\n' % len(m1))
    assert r.line().startswith(b"+ ")
    r.send(m1 + b" {%d}\r\n" % len(m2))
    assert r.line().startswith(b"+ ")
    r.send(m2 + b"\r\n")
    _, t = r.until("a")
    assert t.startswith(b"a OK [APPENDUID"), t
    assert count(r, box) == 2
    r.close()


def test_rfc3502_failure_of_one_message_appends_none(inst):
    r = session(inst)
    box = create(r)
    good, empty = msg("good"), b""
    # Refused before storing: an invalid flag on the second message.
    r.send(b'a APPEND "' + box.encode() + b'" {%d+}\r\n' % len(good) + good +
           b" (\\Bogus) {%d+}\r\n" % len(good) + good + b"\r\n")
    _, t = r.until("a")
    assert t.startswith(b"a BAD"), t
    # Refused by the store after the first was stored: the 27th keyword.
    kw1 = b"(" + b" ".join(b"k%d" % i for i in range(26)) + b")"
    r.send(b'b APPEND "' + box.encode() + b'" ' + kw1 + b" {%d+}\r\n" % len(good) + good +
           b" (other) {%d+}\r\n" % len(good) + good + b"\r\n")
    _, t = r.until("b")
    assert t.startswith(b"b NO"), t
    assert count(r, box) == 0, "RFC 3502 3: none of the messages may be appended"
    r.send(b'c APPEND "' + box.encode() + b'" {%d+}\r\n' % len(good) + good + b" {0+}\r\n\r\n")
    _, t = r.until("c")
    assert t.startswith(b"c NO") or t.startswith(b"c BAD"), t
    assert count(r, box) == 0
    r.close()


def test_rfc3502_multiappend_to_missing_mailbox_trycreate(inst):
    r = session(inst)
    m1 = msg("x")
    r.send(b'a APPEND "' + unique("nobox").encode() + b'" {%d+}\r\n' % len(m1) + m1 +
           b" {%d+}\r\n" % len(m1) + m1 + b"\r\n")
    _, t = r.until("a")
    assert t.startswith(b"a NO [TRYCREATE]"), t
    r.close()


def test_rfc7889_appendlimit_status_and_toobig(make_imap_instance):
    inst = make_imap_instance({"imap_max_literal": "10k"})
    r = session(inst)
    c = caps(r)
    assert b"APPENDLIMIT=10240" in c, c
    lines, t = r.cmd("s", "STATUS INBOX (APPENDLIMIT MESSAGES)")
    assert t.startswith(b"s OK") and b"APPENDLIMIT 10240" in lines[0], lines
    lines, t = r.cmd("l", 'LIST "" INBOX RETURN (STATUS (APPENDLIMIT))')
    assert any(b"APPENDLIMIT 10240" in l for l in lines), lines
    r.send(b"a APPEND INBOX {20000}\r\n")
    l = r.line()
    assert l.startswith(b"a NO [TOOBIG]"), l
    m = msg("fits", b"x" * 5000 + b"\r\n")
    r.send(b"b APPEND INBOX {%d}\r\n" % len(m))
    assert r.line().startswith(b"+ ")
    r.send(m + b"\r\n")
    _, t = r.until("b")
    assert t.startswith(b"b OK"), t
    r.close()


B64_BODY = bytes(range(256)) * 3
QP_TEXT = b"caf\xc3\xa9 = equals\r\nsoft break here"
UNKNOWN = b"begin 644 x\r\nend\r\n"


def binary_box(r):
    box = create(r)
    single = msg("b64", base64.encodebytes(B64_BODY).replace(b"\n", b"\r\n"),
                 b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Transfer-Encoding: base64\r\n")
    multi = msg("multi",
                b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                b"caf=C3=A9 =3D equals\r\nsoft break =\r\nhere\r\n"
                b"--b\r\nContent-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
                + UNKNOWN + b"--b--\r\n",
                b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n")
    for m in (single, multi):
        _, t = r.cmd("a", b'APPEND "' + box.encode() + b'" {%d+}\r\n' % len(m) + m)
        assert t.startswith(b"a OK"), t
    r.cmd("s", 'SELECT "%s"' % box)
    return box, single, multi


def literal_after(line, item):
    m = re.search(re.escape(item) + rb" ~?\{(\d+)\}\r\n", line)
    assert m, line
    start = m.end()
    return line[start:start + int(m.group(1))]


def test_rfc3516_binary_decodes_base64_and_quoted_printable(inst):
    r = session(inst)
    box, single, multi = binary_box(r)
    lines, t = r.cmd("f", "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert t.startswith(b"f OK"), t
    assert literal_after(lines[0], b"BINARY[1]") == B64_BODY
    assert b"BINARY[1] ~{%d}" % len(B64_BODY) in lines[0], "literal8 for binary data"
    assert b"BINARY.SIZE[1] %d" % len(B64_BODY) in lines[0]
    lines, t = r.cmd("f", "FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1])")
    # The CRLF before the boundary belongs to the boundary (RFC 2046 5.1.1).
    assert literal_after(lines[0], b"BINARY[1]") == QP_TEXT
    assert b"BINARY.SIZE[1] %d" % len(QP_TEXT) in lines[0]
    # Partial (RFC 3516 4.2 with <origin.count>).
    lines, t = r.cmd("f", "FETCH 1 (BINARY.PEEK[1]<10.5>)")
    assert b"BINARY[1]<10>" in lines[0]
    assert literal_after(lines[0], b"BINARY[1]<10>") == B64_BODY[10:15]
    r.close()


def test_rfc3516_binary_whole_message_and_seen(inst):
    r = session(inst)
    box, single, multi = binary_box(r)
    lines, t = r.cmd("f", "FETCH 1 (BINARY.PEEK[])")
    whole = literal_after(lines[0], b"BINARY[]")
    hdr = single[:single.index(b"\r\n\r\n") + 4]
    assert whole == hdr + B64_BODY
    lines, _ = r.cmd("f", "FETCH 1 FLAGS")
    assert b"\\Seen" not in lines[0], "BINARY.PEEK must not set \\Seen"
    lines, t = r.cmd("f", "FETCH 1 BINARY[1]")
    assert t.startswith(b"f OK")
    lines, _ = r.cmd("f", "FETCH 1 FLAGS")
    assert b"\\Seen" in lines[0], "BINARY sets \\Seen (RFC 3516 4.2)"
    r.close()


def test_rfc3516_unknown_cte_is_refused(inst):
    r = session(inst)
    box, single, multi = binary_box(r)
    lines, t = r.cmd("f", "FETCH 2 (BINARY.PEEK[2])")
    assert t.startswith(b"f NO [UNKNOWN-CTE]"), t
    lines, t = r.cmd("f", "FETCH 2 (BINARY.SIZE[2])")
    assert t.startswith(b"f NO [UNKNOWN-CTE]"), t
    lines, t = r.cmd("f", "FETCH 2 (BODY.PEEK[2])")
    assert t.startswith(b"f OK") and UNKNOWN[:-2] in lines[0]
    r.close()


def test_rfc3516_append_literal8_with_nul(inst):
    r = session(inst)
    box = create(r)
    m = msg("nul", b"a\x00b\r\n")
    _, t = r.cmd("a", b'APPEND "' + box.encode() + b'" ~{%d+}\r\n' % len(m) + m)
    assert t.startswith(b"a OK"), t
    _, t = r.cmd("b", b'APPEND "' + box.encode() + b'" {%d+}\r\n' % len(m) + m)
    assert t.startswith(b"b BAD") or t.startswith(b"b NO"), "NUL needs literal8 (RFC 3516 4.3)"
    r.cmd("s", 'SELECT "%s"' % box)
    lines, t = r.cmd("f", "FETCH 1 (BINARY.PEEK[] BODY.PEEK[])")
    assert t.startswith(b"f OK"), t
    assert literal_after(lines[0], b"BINARY[]") == m
    body = literal_after(lines[0], b"BODY[]")
    assert len(body) == len(m) and b"\x00" not in body
    assert count(r, box) == 1
    r.close()


# --- big APPEND messages go to disk, not memory ---------------------------------------------
# A message literal of APPEND over 64 KiB is written to an unnamed spool file
# under data/tmp/ as it arrives (O_TMPFILE: it vanishes with its descriptor),
# so a session's memory does not grow with the messages it uploads.  Every
# other literal is bounded by imap_max_command_size.


def big_message(tag, size):
    """A message of exactly `size` bytes, different for each tag, no NUL."""
    head = b"From: a@example.test\r\nSubject: big " + tag.encode() + b"\r\n\r\n"
    line = (tag.encode() * 20)[:70] + b"\r\n"
    body = bytearray()
    n = 0
    while len(head) + len(body) < size:
        body += b"%08d " % n + line
        n += 1
    return head + bytes(body[:size - len(head)])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def spool_files(inst):
    """{(fd, inode): size} of the files pochtad has open under data/tmp/
    (the unnamed spool files show as "data/tmp/#ino (deleted)")."""
    pid = inst.proc.pid
    tmp = str(inst.data_dir / "tmp") + "/"
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if target.startswith(tmp):
                st = os.stat("/proc/%d/fd/%s" % (pid, fd))
                out[(fd, st.st_ino)] = st.st_size
        except OSError:
            pass
    return out


def wait_spooled(inst, at_least, old, timeout=30):
    """The spool file (key of spool_files), not one of old, that reaches
    at_least bytes."""
    end = time.time() + timeout
    while time.time() < end:
        for k, size in spool_files(inst).items():
            if size >= at_least and k not in old:
                return k
        time.sleep(0.05)
    raise AssertionError("no spool file of %d bytes under tmp/: %r" % (at_least, spool_files(inst)))


def sanitized(inst):
    """An ASan build keeps freed memory in its quarantine: RSS says nothing."""
    return "libasan" in open("/proc/%d/maps" % inst.proc.pid).read()


def fetch_bodies(r, tag, seqs):
    """FETCH seqs BODY.PEEK[]: {seq: bytes}, reading the literals in bulk."""
    r.send(b"%s FETCH %s BODY.PEEK[]\r\n" % (tag.encode(), seqs.encode()))
    got = {}
    while True:
        l = r.line()
        assert l, "connection closed during FETCH"
        if l.startswith(tag.encode() + b" "):
            assert l.startswith(tag.encode() + b" OK"), l
            return got
        m = re.match(rb"\* (\d+) FETCH .*BODY\[\] \{(\d+)\}$", l)
        assert m, l
        n = int(m.group(2))
        data = bytearray(r.buf[:n])
        r.buf = r.buf[n:]
        while len(data) < n:
            d = r.sock.recv(min(1 << 20, n - len(data)))
            assert d, "connection closed in a literal"
            data += d
        got[int(m.group(1))] = bytes(data)
        assert r.line() == b")"


def test_big_append_streamed_to_disk_and_read_back(inst):
    """20 MiB APPEND, once as a non-synchronizing literal (LITERAL+, after
    login) and once as a synchronizing one: the data goes to a spool file
    under tmp/ while it arrives (pochtad's memory does not grow with it) and
    FETCH BODY[] gives back the same bytes."""
    r = session(inst)
    box = create(r)
    size = 20 << 20
    m1, m2 = big_message("nonsync", size), big_message("sync", size)
    pid = inst.proc.pid
    before, old = rss_kib(pid), spool_files(inst)
    r.send(b'a1 APPEND "%s" (\\Flagged) {%d+}\r\n' % (box.encode(), size) + m1[:size - (1 << 20)])
    # most of it is in: on disk, not in memory
    spool = wait_spooled(inst, size - (2 << 20), old)
    grown = rss_kib(pid) - before
    if not sanitized(inst):
        assert grown < 16 * 1024, "pochtad grew %d KiB while receiving a 20 MiB APPEND" % grown
    r.send(m1[size - (1 << 20):] + b"\r\n")
    _, t = r.until("a1")
    assert re.match(rb"a1 OK \[APPENDUID \d+ \d+\]", t), t
    r.send(b'a2 APPEND "%s" {%d}\r\n' % (box.encode(), size))
    assert r.line().startswith(b"+ ")
    r.send(m2 + b"\r\n")
    _, t = r.until("a2")
    assert t.startswith(b"a2 OK"), t
    assert spool not in spool_files(inst), "spool file still open after the APPEND"
    _, t = r.cmd("s", 'SELECT "%s"' % box)
    assert t.startswith(b"s OK"), t
    got = fetch_bodies(r, "f", "1:2")
    assert got[1] == m1, "message 1 differs (%d bytes back)" % len(got[1])
    assert got[2] == m2, "message 2 differs (%d bytes back)" % len(got[2])
    lines, t = r.cmd("g", "FETCH 1:2 (FLAGS RFC822.SIZE)")
    assert b"\\Flagged" in lines[0] and b"RFC822.SIZE %d" % size in lines[0], lines
    r.close()


def test_rfc3502_multiappend_of_large_messages(inst):
    """MULTIAPPEND of three large messages (a synchronizing literal between
    two non-synchronizing ones, one literal8): all three are stored with
    their flags, in order, and read back whole."""
    r = session(inst)
    box = create(r)
    sizes = (3 << 20, 200 * 1024, 5 << 20)
    ms = [big_message("multi%d" % i, n) for i, n in enumerate(sizes)]
    r.send(b'm1 APPEND "%s" (\\Seen) {%d+}\r\n' % (box.encode(), sizes[0]) + ms[0]
           + b" (\\Draft) {%d}\r\n" % sizes[1])
    assert r.line().startswith(b"+ ")
    r.send(ms[1] + b' "14-Jul-2020 10:00:00 +0200" ~{%d+}\r\n' % sizes[2] + ms[2] + b"\r\n")
    _, t = r.until("m1")
    m = re.match(rb"m1 OK \[APPENDUID \d+ (\d+):(\d+)\]", t)
    assert m and int(m.group(2)) - int(m.group(1)) == 2, t
    assert count(r, box) == 3
    r.cmd("s", 'SELECT "%s"' % box)
    got = fetch_bodies(r, "f", "1:3")
    for i in range(3):
        assert got[i + 1] == ms[i], "message %d differs" % (i + 1)
    lines, _ = r.cmd("g", "FETCH 1:3 (FLAGS INTERNALDATE)")
    assert b"\\Seen" in lines[0] and b"\\Draft" in lines[1] and b"14-Jul-2020" in lines[2], lines
    r.close()


def test_disconnect_mid_literal_leaves_nothing(inst):
    """A client that goes away in the middle of a big APPEND: the spool file
    (unnamed) is gone with the session, nothing is left in tmp/ (the data
    directory's or the user's), and no message was stored."""
    r = session(inst)
    box = create(r)
    user_dir = inst.mail_dir / "example.test" / "alice"
    tmp_before = set(os.listdir(inst.data_dir / "tmp"))
    utmp_before = set(os.listdir(user_dir / "tmp"))
    size = 10 << 20
    m = big_message("gone", size)
    old = spool_files(inst)
    r.send(b'd1 APPEND "%s" {%d+}\r\n' % (box.encode(), size) + m[:4 << 20])
    spool = wait_spooled(inst, 4 << 20, old)    # it was being written to disk
    r.close()
    end = time.time() + 10
    while spool in spool_files(inst) and time.time() < end:
        time.sleep(0.05)
    assert spool not in spool_files(inst), "spool file still open after the disconnect"
    assert set(os.listdir(inst.data_dir / "tmp")) == tmp_before
    assert set(os.listdir(user_dir / "tmp")) == utmp_before
    r = session(inst)
    assert count(r, box) == 0
    r.close()
    inst.assert_alive()


def test_literal_over_max_command_size_refused_in_step(make_imap_instance):
    """imap_max_command_size bounds what one command holds in memory: a
    literal that would exceed it in any command but APPEND is refused with
    [TOOBIG] -- a synchronizing one before its "+" (the client sends no
    data), a non-synchronizing one once its data has been read and dropped
    -- and the session stays in step.  SEARCH with several literals under
    the bound works, and APPEND messages are not bound by it."""
    inst = make_imap_instance({"imap_max_command_size": "64k"})
    r = session(inst)
    box = create(r)
    _, t = r.cmd("s", 'SELECT "%s"' % box)
    r.send(b"t1 SEARCH TEXT {100000}\r\n")
    l = r.line()
    assert l.startswith(b"t1 NO [TOOBIG]"), l
    lines, t = r.cmd("t2", "NOOP")
    assert t.startswith(b"t2 OK") and lines == [], (lines, t)
    # the dropped data looks like commands: none of them may run
    junk = (b"x LOGOUT\r\n" * 10001)[:100000]
    r.send(b"t3 SEARCH TEXT {100000+}\r\n" + junk + b" TEXT {10+}\r\nx LOGOUT\r\n\r\n")
    lines, t = r.until("t3")
    assert t.startswith(b"t3 BAD [TOOBIG]") and lines == [], (lines, t)
    lines, t = r.cmd("t4", "NOOP")
    assert t.startswith(b"t4 OK") and lines == [], (lines, t)
    # several literals that fit together
    r.send(b"t5 SEARCH TEXT {20000+}\r\n" + b"a" * 20000 + b" TEXT {20000+}\r\n" + b"b" * 20000
           + b" OR TEXT {3+}\r\nabc TEXT {3+}\r\nxyz\r\n")
    _, t = r.until("t5")
    assert t.startswith(b"t5 OK"), t
    # APPEND is not bound by it
    m = big_message("nobound", 300 * 1024)
    _, t = r.cmd("t6", b'APPEND "%s" {%d+}\r\n' % (box.encode(), len(m)) + m)
    assert t.startswith(b"t6 OK"), t
    r.close()
    inst.assert_alive()
