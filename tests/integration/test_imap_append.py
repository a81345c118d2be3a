"""MULTIAPPEND (RFC 3502), BINARY (RFC 3516) and APPENDLIMIT (RFC 7889),
over raw sockets against the real daemon."""

import base64
import re

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
