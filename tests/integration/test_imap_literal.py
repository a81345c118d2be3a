"""Literals (RFC 9051 4.3, RFC 7888).  pochta announces one of LITERAL+ and
LITERAL- at a time, never both (they are two answers to the same question):
LITERAL- before login, so an unauthenticated peer cannot make the server
buffer a large literal, and LITERAL+ once logged in.  Before login a
non-synchronizing literal over 4096 octets gets the tagged BAD [TOOBIG] of
RFC 7888 5 and the connection stays in step; after login non-synchronizing
literals of any size up to the literal limit (APPENDLIMIT) are taken."""

import re


from pochtatest import ALICE, USERS, unique
from test_imap import Raw, make_imap_instance  # noqa: F401 (fixture)
from test_imap import inst  # noqa: F401 (inst: one daemon per module)

PW = USERS[ALICE]


def caps(line):
    m = re.search(rb"CAPABILITY ([^\]\r\n]*)", line)
    assert m, line
    return m.group(1).split()


def test_7888_one_of_literal_plus_or_minus_per_state(inst):
    r = Raw(inst)
    _, t = r.cmd("c1", "CAPABILITY")
    lines, _ = r.cmd("c2", "CAPABILITY")
    pre = caps(lines[0])
    assert b"LITERAL-" in pre and b"LITERAL+" not in pre, pre
    _, t = r.cmd("l", 'LOGIN "%s" "%s"' % (ALICE, PW))
    assert t.startswith(b"l OK [CAPABILITY "), t
    post = caps(t)
    assert b"LITERAL+" in post and b"LITERAL-" not in post, post
    lines, _ = r.cmd("c3", "CAPABILITY")
    assert caps(lines[0]) == post
    r.close()


def test_7888_5_small_non_synchronizing_literals_before_login(inst):
    """LITERAL-: up to 4096 octets without waiting for "+"."""
    r = Raw(inst)
    user = ALICE.encode()
    pw = PW.encode() + b" " * 0
    r.send(b"a1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(user), user, len(pw), pw))
    _, t = r.until("a1")
    assert t.startswith(b"a1 OK"), t
    r.close()


def test_7888_5_large_non_synchronizing_literal_before_login_bad_toobig(inst):
    r = Raw(inst)
    # 5000 octets: refused with a tagged BAD [TOOBIG]; the literal and the
    # rest of its command (here the password) are read and dropped, and a
    # literal body that looks like a command is never run.
    body = (b"x1 LOGOUT\r\n" * 500)[:5000]
    r.send(b"a1 LOGIN {5000+}\r\n" + body + b" pw\r\n")
    _, t = r.until("a1")
    assert t.startswith(b"a1 BAD [TOOBIG]"), t
    # in step: the next commands are answered, nothing else came
    lines, t = r.cmd("a2", "NOOP")
    assert t.startswith(b"a2 OK") and lines == [], (lines, t)
    # exactly 4096 is still fine
    user = ALICE.encode() + b" " * 0
    r.send(b"a3 LOGIN {%d+}\r\n%s {4096+}\r\n%s\r\n" % (len(user), user, b"p" * 4096))
    _, t = r.until("a3")
    assert t.startswith(b"a3 NO"), t      # wrong password, but parsed and answered
    _, t = r.cmd("a4", 'LOGIN "%s" "%s"' % (ALICE, PW))
    assert t.startswith(b"a4 OK"), t
    r.close()


def test_synchronizing_literal_too_big_before_login_is_not_read(inst):
    r = Raw(inst)
    r.send(b"a1 LOGIN {100000}\r\n")
    l = r.line()
    assert l.startswith(b"a1 NO [TOOBIG]"), l
    lines, t = r.cmd("a2", "NOOP")
    assert t.startswith(b"a2 OK") and lines == []
    # a synchronizing literal over 4096 (LITERAL- limits only the
    # non-synchronizing ones) is taken with "+"
    r.send(b"a2b LOGIN {5000}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"u" * 5000 + b" pw\r\n")
    _, t = r.until("a2b")
    assert t.startswith(b"a2b NO"), t    # no such user, but read and answered
    # a small synchronizing literal still gets its "+"
    r.send(b"a3 LOGIN {%d}\r\n" % len(ALICE))
    assert r.line().startswith(b"+ ")
    r.send(ALICE.encode() + b' "%s"\r\n' % PW.encode())
    _, t = r.until("a3")
    assert t.startswith(b"a3 OK"), t
    r.close()


def test_7888_4_huge_non_synchronizing_literal_before_login_hangs_up(inst):
    """Too large to read and drop: BYE (RFC 7888 4, second choice)."""
    r = Raw(inst)
    r.send(b"a1 LOGIN {900000+}\r\n" + b"y" * 1000)
    l = r.line()
    assert l.startswith(b"* BYE [TOOBIG]"), l
    assert r.closed()
    r.close()


def test_7888_3_large_non_synchronizing_literals_after_login(inst):
    r = Raw(inst)
    r.login()
    box = unique("lit")
    _, t = r.cmd("c", 'CREATE "%s"' % box)
    assert t.startswith(b"c OK"), t
    small = b"Subject: small\r\n\r\nsmall body\r\n"
    big = b"Subject: big\r\n\r\n" + (b"0123456789abcdef" * 64 + b"\r\n") * 300   # ~300 KB
    # one write: two APPENDs with non-synchronizing literals, then a FETCH;
    # the CRLF inside the literals never ends a command.
    r.send(b'p1 APPEND "%s" {%d+}\r\n%s\r\n' % (box.encode(), len(small), small) +
           b'p2 APPEND "%s" {%d+}\r\n%s\r\n' % (box.encode(), len(big), big) +
           b'p3 SELECT "%s"\r\n' % box.encode())
    _, t = r.until("p1")
    assert t.startswith(b"p1 OK [APPENDUID"), t
    _, t = r.until("p2")
    assert t.startswith(b"p2 OK [APPENDUID"), t
    lines, t = r.until("p3")
    assert t.startswith(b"p3 OK"), t
    assert b"* 2 EXISTS" in lines
    lines, t = r.cmd("f", "FETCH 2 BODY.PEEK[]")
    assert t.startswith(b"f OK"), t
    data = b"\r\n".join(lines)
    assert big in data
    lines, t = r.cmd("f2", "FETCH 1 BODY.PEEK[]")
    assert small in b"\r\n".join(lines)
    r.close()


def test_literal_over_limit_after_login(make_imap_instance):
    inst = make_imap_instance({"imap_max_literal": "8k"})
    r = Raw(inst)
    r.login()
    # synchronizing: refused before the data, session goes on
    r.send(b"a1 APPEND INBOX {9000}\r\n")
    assert r.line().startswith(b"a1 NO [TOOBIG]")
    lines, t = r.cmd("a2", "NOOP")
    assert t.startswith(b"a2 OK")
    # non-synchronizing of 5000 (over LITERAL-'s 4096, under the limit): taken
    msg = b"Subject: five\r\n\r\n" + b"z" * 4980 + b"\r\n"
    _, t = r.cmd("a3", b"APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))
    assert t.startswith(b"a3 OK [APPENDUID"), t
    # over the limit: the data is on its way and too big to take: BYE
    r.send(b"a4 APPEND INBOX {50000+}\r\n" + b"x" * 100)
    l = r.line()
    assert l.startswith(b"* BYE [TOOBIG]"), l
    assert r.closed()
    r.close()
