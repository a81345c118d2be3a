"""SORT and THREAD (RFC 5256): SORT by every criterion with REVERSE and
search keys, THREAD=ORDEREDSUBJECT and THREAD=REFERENCES, over messages
whose subjects, dates and references exercise base-subject extraction,
time zones and subject merging."""

import pytest

from pochtatest import unique
from test_imap import Raw
from test_imap import inst  # noqa: F401 (inst: one daemon per module)


# (from, subject, Date header or None, Message-ID, references header, body size, internaldate)
MSGS = [
    ("zed", "Re: banana", "Sun, 05 Jan 2020 10:00:00 +0000", "b2@x", "In-Reply-To: <b1@x>", 2000, "10-Jan-2020"),
    ("Mike", "apple", "Fri, 3 Jan 2020 10:00:00 +0000", "a1@x", None, 10, "09-Jan-2020"),
    ('"bob"', "[list] Fwd: banana (fwd)", "Thu, 02 Jan 2020 09:00:00 -0500", "b1@x", None, 500, "08-Jan-2020"),
    ("alice", "Re: [other] apple", "2 Jan 2020 15:00 +0000", "a2@x", "References: <a1@x>", 100, "07-Jan-2020"),
    ("Carol", "cherry", None, "c1@x", None, 1000, "01-Jan-2020"),
    ("xavier", "RE: cherry", "Mon, 06 Jan 2020 00:00:00 GMT", "c9@x", "References: <lost@x>", 4000, "11-Jan-2020"),
    ("yolanda", "=?UTF-8?Q?apple?=", "Tue, 07 Jan 2020 00:00:00 +0000", "a9@x", None, 5000, "12-Jan-2020"),
]


@pytest.fixture
def box(inst):
    r = Raw(inst)
    r.login()
    name = unique("sort")
    _, t = r.cmd("c", 'CREATE "%s"' % name)
    assert t.startswith(b"c OK")
    for frm, subj, date, mid, refs, size, idate in MSGS:
        h = "From: %s@example.test\r\nTo: t@example.test\r\nSubject: %s\r\nMessage-ID: <%s>\r\n" % (frm, subj, mid)
        if date:
            h += "Date: %s\r\n" % date
        if refs:
            h += refs + "\r\n"
        m = h.encode() + b"\r\n" + b"x" * size
        _, t = r.cmd("a", b'APPEND "' + name.encode() + b'" "' + idate.encode() + b' 00:00:00 +0000" {%d+}\r\n'
                     % len(m) + m)
        assert t.startswith(b"a OK"), t
    r.close()
    return name


def session(inst, box):
    r = Raw(inst)
    r.login()
    _, t = r.cmd("s", 'SELECT "%s"' % box)
    assert t.startswith(b"s OK")
    return r


def sort(r, text, tag="so"):
    lines, t = r.cmd(tag, text)
    assert t.startswith(tag.encode() + b" OK"), (text, t)
    assert len(lines) == 1 and lines[0].startswith(b"* SORT"), lines
    return lines[0][6:].split()


def test_capabilities(inst):
    r = Raw(inst)
    r.login()
    lines, _ = r.cmd("c", "CAPABILITY")
    c = lines[0].split()
    assert b"SORT" in c and b"THREAD=ORDEREDSUBJECT" in c and b"THREAD=REFERENCES" in c
    r.close()


@pytest.mark.parametrize("crit,want", [
    ("SUBJECT", "2 4 7 1 3 5 6"),
    ("SUBJECT DATE", "4 2 7 3 1 5 6"),
    ("FROM", "4 3 5 2 6 7 1"),
    ("DATE", "5 3 4 2 1 6 7"),
    ("REVERSE DATE", "7 6 1 2 4 3 5"),
    ("SIZE", "2 4 3 5 1 6 7"),
    ("ARRIVAL", "5 4 3 2 1 6 7"),
    ("REVERSE ARRIVAL", "7 6 1 2 3 4 5"),
    ("TO", "1 2 3 4 5 6 7"),
    ("CC REVERSE SIZE", "7 6 1 5 3 4 2"),
])
def test_rfc5256_sort_criteria(inst, box, crit, want):
    r = session(inst, box)
    assert sort(r, "SORT (%s) UTF-8 ALL" % crit) == want.encode().split()
    r.close()


def test_rfc5256_sort_with_search_keys_uid_and_errors(inst, box):
    r = session(inst, box)
    assert sort(r, "SORT (SUBJECT) US-ASCII FROM alice") == [b"4"]
    assert sort(r, "SORT (DATE) UTF-8 SUBJECT apple") == [b"4", b"2", b"7"]
    assert sort(r, "SORT (REVERSE SIZE) UTF-8 3:5") == [b"5", b"3", b"4"]
    _, t = r.cmd("d", "STORE 2 +FLAGS (\\Deleted)")
    _, t = r.cmd("e", "EXPUNGE")
    uids = sort(r, "UID SORT (SUBJECT) UTF-8 ALL", "us")
    assert uids == [b"4", b"7", b"1", b"3", b"5", b"6"], "UIDs, not sequence numbers: %r" % uids
    assert sort(r, "SORT (SUBJECT) UTF-8 ALL") == [b"3", b"6", b"1", b"2", b"4", b"5"]
    _, t = r.cmd("b", "SORT (SUBJECT) KOI8-R ALL")
    assert t.startswith(b"b NO [BADCHARSET"), t
    _, t = r.cmd("b2", "SORT (BOGUS) UTF-8 ALL")
    assert t.startswith(b"b2 BAD"), t
    _, t = r.cmd("b3", "SORT SUBJECT UTF-8 ALL")
    assert t.startswith(b"b3 BAD"), t
    r.close()


def test_rfc5256_thread_orderedsubject(inst, box):
    r = session(inst, box)
    lines, t = r.cmd("t", "THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert t.startswith(b"t OK"), t
    assert lines == [b"* THREAD (5 6)(3 1)(4 (2)(7))"], lines
    lines, t = r.cmd("t2", "THREAD ORDEREDSUBJECT UTF-8 SUBJECT nothing-matches")
    assert lines == [b"* THREAD"], lines
    r.close()


def test_rfc5256_thread_references(inst, box):
    r = session(inst, box)
    lines, t = r.cmd("t", "THREAD REFERENCES UTF-8 ALL")
    assert t.startswith(b"t OK"), t
    # 3<-1 by In-Reply-To; 2<-4 by References; 6 under 5 by its "Re:"
    # subject (its only reference is unknown); 7 has 2's subject without
    # Re: so both go under a dummy.
    assert lines == [b"* THREAD (5 6)(3 1)((2 4)(7))"], lines
    lines, t = r.cmd("t2", "UID THREAD REFERENCES UTF-8 1:4")
    assert lines == [b"* THREAD (3 1)(2 4)"], lines
    _, t = r.cmd("t3", "THREAD REFS UTF-8 ALL")
    assert t.startswith(b"t3 BAD"), t
    r.close()
