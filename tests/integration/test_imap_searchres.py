"""SEARCHRES (RFC 5182): SEARCH RETURN (SAVE) and "$" in later commands."""

import re


from pochtatest import unique
from test_imap import Raw
from test_imap import inst, ok  # noqa: F401 (inst: one daemon per module)


def setup_box(n=6):
    def make(inst):
        r = Raw(inst)
        r.login()
        box = unique("sr")
        _, t = r.cmd("c", 'CREATE "%s"' % box)
        assert t.startswith(b"c OK")
        for i in range(1, n + 1):
            m = b"From: a@example.test\r\nSubject: m%d %s\r\n\r\nbody\r\n" % (i, b"odd" if i % 2 else b"even")
            _, t = r.cmd("a", b'APPEND "' + box.encode() + b'" {%d+}\r\n' % len(m) + m)
            assert t.startswith(b"a OK"), t
        _, t = r.cmd("s", 'SELECT "%s"' % box)
        assert t.startswith(b"s OK")
        return r, box
    return make


def seqs_of_fetch(lines):
    return [int(re.match(rb"\* (\d+) FETCH", l).group(1)) for l in lines if re.match(rb"\* \d+ FETCH", l)]


def test_capability(inst):
    r = Raw(inst)
    r.login()
    lines, _ = r.cmd("c", "CAPABILITY")
    assert b"SEARCHRES" in lines[0].split()
    r.close()


def test_rfc5182_save_alone_returns_no_esearch_and_fetch_uses_it(inst):
    r, box = setup_box()(inst)
    lines = ok(r, "a", "SEARCH RETURN (SAVE) SUBJECT odd")
    assert not any(l.startswith(b"* ESEARCH") or l.startswith(b"* SEARCH") for l in lines), lines
    lines = ok(r, "b", "FETCH $ (UID)")
    assert seqs_of_fetch(lines) == [1, 3, 5]
    lines = ok(r, "c", "UID FETCH $ (FLAGS)")
    assert seqs_of_fetch(lines) == [1, 3, 5]
    r.close()


def test_rfc5182_dollar_in_store_copy_and_search(inst):
    r, box = setup_box()(inst)
    ok(r, "a", "UID SEARCH RETURN (SAVE) SUBJECT even")
    ok(r, "b", "STORE $ +FLAGS (\\Flagged)")
    lines = ok(r, "c", "SEARCH FLAGGED")
    assert lines == [b"* SEARCH 2 4 6"], lines
    lines = ok(r, "d", "SEARCH $ SUBJECT m4")
    assert lines == [b"* SEARCH 4"], lines
    lines = ok(r, "e", "SEARCH NOT $")
    assert lines == [b"* SEARCH 1 3 5"], lines
    lines = ok(r, "e2", "UID SEARCH UID $")
    assert len(lines[0].split()) == 5, lines
    dst = unique("srdst")
    ok(r, "f", 'CREATE "%s"' % dst)
    lines, t = r.cmd("g", 'COPY $ "%s"' % dst)
    assert t.startswith(b"g OK [COPYUID"), t
    lines = ok(r, "h", 'STATUS "%s" (MESSAGES)' % dst)
    assert b"MESSAGES 3" in lines[0]
    r.close()


def test_rfc5182_saved_uids_survive_expunge_and_search_replaces_after_matching(inst):
    r, box = setup_box()(inst)
    ok(r, "a", "SEARCH RETURN (SAVE) 4:6")
    ok(r, "b", "STORE 1 +FLAGS (\\Deleted)")
    lines = ok(r, "c", "EXPUNGE")
    assert b"* 1 EXPUNGE" in lines
    lines = ok(r, "d", "FETCH $ (UID)")
    assert seqs_of_fetch(lines) == [3, 4, 5], "saved uids follow the renumbering"
    # "$" inside a SAVE search is the old result (RFC 5182 2.1).
    lines = ok(r, "e", "SEARCH RETURN (SAVE ALL) $ SUBJECT odd")
    assert lines == [b'* ESEARCH (TAG "e") ALL 4'], lines
    lines = ok(r, "f", "FETCH $ (UID)")
    assert seqs_of_fetch(lines) == [4]
    r.close()


def test_rfc5182_min_max_save_only_those(inst):
    r, box = setup_box()(inst)
    lines = ok(r, "a", "SEARCH RETURN (SAVE MIN MAX) SUBJECT even")
    assert lines == [b'* ESEARCH (TAG "a") MIN 2 MAX 6'], lines
    assert seqs_of_fetch(ok(r, "b", "FETCH $ (UID)")) == [2, 6]
    ok(r, "c", "SEARCH RETURN (SAVE MIN COUNT) SUBJECT even")
    assert seqs_of_fetch(ok(r, "d", "FETCH $ (UID)")) == [2, 4, 6]
    r.close()


def test_rfc5182_failed_save_search_empties_and_empty_dollar_is_ok(inst):
    r, box = setup_box()(inst)
    ok(r, "a", "SEARCH RETURN (SAVE) ALL")
    lines, t = r.cmd("b", "SEARCH RETURN (SAVE) CHARSET KOI8-R SUBJECT x")
    assert t.startswith(b"b NO [BADCHARSET"), t
    assert seqs_of_fetch(ok(r, "c", "FETCH $ (UID)")) == []
    ok(r, "d", "SEARCH RETURN (SAVE) ALL")
    lines, t = r.cmd("e", "SEARCH RETURN (SAVE) BOGUSKEY")
    assert t.startswith(b"e BAD"), t
    assert seqs_of_fetch(ok(r, "f", "FETCH $ (UID)")) == []
    r.close()


def test_rfc5182_reselect_empties_and_uid_expunge_dollar(inst):
    r, box = setup_box()(inst)
    ok(r, "a", "SEARCH RETURN (SAVE) 1:2")
    ok(r, "b", "STORE 1:6 +FLAGS (\\Deleted)")
    lines = ok(r, "c", "UID EXPUNGE $")
    assert sorted(l for l in lines if l.endswith(b"EXPUNGE")) in ([b"* 1 EXPUNGE", b"* 1 EXPUNGE"],
                                                                [b"* 1 EXPUNGE", b"* 2 EXPUNGE"]), lines
    lines = ok(r, "c2", 'STATUS "%s" (MESSAGES)' % box)
    assert b"MESSAGES 4" in lines[0], "only the saved two were expunged"
    ok(r, "d", "SEARCH RETURN (SAVE) ALL")
    ok(r, "e", 'SELECT "%s"' % box)
    assert seqs_of_fetch(ok(r, "f", "FETCH $ (UID)")) == []
    r.close()
