"""IMAP4rev2 (RFC 9051) next to IMAP4rev1: after ENABLE IMAP4rev2 there is
no \\Recent (no RECENT response, flag, or STATUS item), SEARCH is answered
with ESEARCH, mailbox names are UTF-8, and the rev1 behaviour is kept for
sessions that do not enable it."""

import re


from pochtatest import unique
from test_imap import Raw
from test_imap import inst, ok  # noqa: F401 (inst: one daemon per module)


def session(inst, rev2=True):
    r = Raw(inst)
    r.login()
    if rev2:
        assert ok(r, "en", "ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2"]
    return r


def fill(r, n=3):
    box = unique("r2")
    ok(r, "c", 'CREATE "%s"' % box)
    for i in range(n):
        m = b"From: a@example.test\r\nSubject: s%d\r\n\r\nbody %d\r\n" % (i, i)
        ok(r, "a", b'APPEND "' + box.encode() + b'" {%d+}\r\n' % len(m) + m)
    return box


def test_capability_lists_both(inst):
    r = Raw(inst)
    caps = r.greeting.split()
    assert b"IMAP4rev1" in caps and b"IMAP4rev2" in caps
    r.close()


def test_rfc9051_no_recent_after_enable(inst):
    r = session(inst)
    box = fill(r)
    lines = ok(r, "s", 'SELECT "%s"' % box)
    assert not any(b"RECENT" in l for l in lines), lines
    assert not any(b"[UNSEEN" in l for l in lines), lines
    assert b"* 3 EXISTS" in lines
    lines = ok(r, "f", "FETCH 1:* (FLAGS)")
    assert len(lines) == 3 and not any(b"\\Recent" in l for l in lines), lines
    # New mail while selected: EXISTS, no RECENT.
    o = session(inst, rev2=False)
    m = b"Subject: late\r\n\r\nx\r\n"
    ok(o, "a", b'APPEND "' + box.encode() + b'" {%d+}\r\n' % len(m) + m)
    o.close()
    lines = ok(r, "n", "NOOP")
    assert b"* 4 EXISTS" in lines and not any(b"RECENT" in l for l in lines), lines
    _, t = r.cmd("st", 'STATUS "%s" (RECENT)' % box)
    assert t.startswith(b"st BAD"), t
    r.close()


def test_rfc9051_search_answers_with_esearch(inst):
    r = session(inst)
    box = fill(r)
    ok(r, "s", 'SELECT "%s"' % box)
    lines = ok(r, "a", "SEARCH SUBJECT s1")
    assert lines == [b'* ESEARCH (TAG "a") ALL 2'], lines
    lines = ok(r, "b", "UID SEARCH ALL")
    assert lines == [b'* ESEARCH (TAG "b") UID ALL 1:3'], lines
    lines = ok(r, "c", "SEARCH SUBJECT nothing")
    assert lines == [b'* ESEARCH (TAG "c")'], lines
    lines = ok(r, "d", "SEARCH CHARSET UTF-8 SUBJECT s2")
    assert lines == [b'* ESEARCH (TAG "d") ALL 3'], lines
    for key in ("RECENT", "NEW", "NOT OLD"):
        _, t = r.cmd("e", "SEARCH " + key)
        assert t.startswith(b"e BAD"), (key, t)
    r.close()


def test_rfc9051_utf8_mailbox_names(inst):
    r = session(inst)
    name = unique("r2") + "-\u00e9t\u00e9"
    ok(r, "c", b'CREATE "' + name.encode() + b'"')
    lines = ok(r, "l", b'LIST "" "' + name.encode() + b'"')
    assert lines and lines[0].endswith(b'"' + name.encode() + b'"') or lines[0].endswith(name.encode()), lines
    r.close()
    # A rev1 session sees the same mailbox in modified UTF-7.
    r = session(inst, rev2=False)
    lines = ok(r, "l", 'LIST "" "%s*"' % name.split("-")[0])
    assert any(b"&AOk-t&AOk-" in l for l in lines), lines
    r.close()


def test_rev1_session_unchanged(inst):
    r = session(inst, rev2=False)
    box = fill(r, 2)
    lines = ok(r, "s", 'SELECT "%s"' % box)
    assert any(re.match(rb"\* \d+ RECENT", l) for l in lines), lines
    lines = ok(r, "a", "SEARCH ALL")
    assert lines == [b"* SEARCH 1 2"], lines
    r.close()


def test_enable_only_in_authenticated_state(inst):
    r = session(inst, rev2=False)
    box = fill(r, 1)
    ok(r, "s", 'SELECT "%s"' % box)
    _, t = r.cmd("e", "ENABLE IMAP4rev2")
    assert t.startswith(b"e BAD"), t
    r.close()
