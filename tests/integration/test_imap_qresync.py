"""QRESYNC (RFC 7162 section 3.2): ENABLE QRESYNC, SELECT/EXAMINE with the
QRESYNC parameter, VANISHED (EARLIER), UID FETCH (CHANGEDSINCE n VANISHED),
and VANISHED instead of EXPUNGE once enabled."""

import re
import sqlite3


from pochtatest import unique
from test_imap import Raw
from test_imap import inst, make_imap_instance  # noqa: F401 (fixtures)


def ok(r, tag, text):
    lines, t = r.cmd(tag, text)
    assert t.startswith(tag.encode() + b" OK"), (text, t, lines)
    return lines, t


def session(inst, enable=True):
    r = Raw(inst)
    r.login()
    if enable:
        lines, _ = ok(r, "en", "ENABLE QRESYNC")
        assert lines == [b"* ENABLED QRESYNC"], lines
    return r


def mailbox_with(r, n):
    box = unique("qr")
    ok(r, "c", 'CREATE "%s"' % box)
    for i in range(n):
        m = b"From: a@example.test\r\nSubject: q%d\r\n\r\nx\r\n" % i
        ok(r, "a", b'APPEND "' + box.encode() + b'" {%d+}\r\n' % len(m) + m)
    return box


def state(r, box):
    lines, t = ok(r, "s", 'SELECT "%s"' % box)
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(lines)).group(1))
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(lines)).group(1))
    return uv, hms


def test_capability_and_enable(inst):
    r = Raw(inst)
    r.login()
    lines, _ = r.cmd("c", "CAPABILITY")
    assert b"QRESYNC" in lines[0].split() and b"CONDSTORE" in lines[0].split()
    r.close()


def test_rfc7162_3_2_5_qresync_param_needs_enable(inst):
    r = session(inst, enable=False)
    box = mailbox_with(r, 1)
    _, t = r.cmd("q", 'SELECT "%s" (QRESYNC (1 1))' % box)
    assert t.startswith(b"q BAD"), t
    _, t = r.cmd("f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert t.startswith(b"f BAD"), t
    r.close()


def test_rfc7162_3_2_5_select_reports_vanished_and_changed(inst):
    r = session(inst)
    box = mailbox_with(r, 6)
    uv, hms = state(r, box)
    ok(r, "u", "UNSELECT")
    # Another session changes flags on uid 2 and expunges uids 3 and 5.
    o = session(inst, enable=False)
    ok(o, "s", 'SELECT "%s"' % box)
    ok(o, "f", "UID STORE 2 +FLAGS (\\Flagged)")
    ok(o, "d", "UID STORE 3,5 +FLAGS (\\Deleted)")
    lines, _ = ok(o, "e", "EXPUNGE")
    assert sum(l.endswith(b"EXPUNGE") for l in lines) == 2, "no VANISHED without ENABLE QRESYNC"
    o.close()
    lines, t = ok(r, "q", 'SELECT "%s" (QRESYNC (%d %d))' % (box, uv, hms))
    assert b"* VANISHED (EARLIER) 3,5" in lines, lines
    fetches = [l for l in lines if b"FETCH" in l]
    assert len(fetches) == 1, lines
    assert re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(.*\\Flagged.*\) MODSEQ \(\d+\)\)", fetches[0]), fetches
    assert lines.index(b"* VANISHED (EARLIER) 3,5") < lines.index(fetches[0])
    # Known UIDs limit what is reported.
    lines, t = ok(r, "q2", 'EXAMINE "%s" (QRESYNC (%d %d 1,4:6))' % (box, uv, hms))
    assert b"* VANISHED (EARLIER) 5" in lines, lines
    assert not any(b"FETCH" in l for l in lines), lines
    assert any(l.startswith(b"* OK [CLOSED]") for l in lines)
    # UIDVALIDITY mismatch: a plain SELECT.
    lines, t = ok(r, "q3", 'SELECT "%s" (QRESYNC (%d %d))' % (box, uv + 1, hms))
    assert not any(b"VANISHED" in l or b"FETCH" in l for l in lines), lines
    # Nothing changed since now.
    _, hms2 = state(r, box)
    lines, t = ok(r, "q4", 'SELECT "%s" (QRESYNC (%d %d))' % (box, uv, hms2))
    assert not any(b"VANISHED" in l or b"FETCH" in l for l in lines), lines
    r.close()


def test_rfc7162_3_2_6_uid_fetch_changedsince_vanished(inst):
    r = session(inst)
    box = mailbox_with(r, 5)
    uv, hms = state(r, box)
    ok(r, "d", "UID STORE 2,4 +FLAGS (\\Deleted)")
    lines, _ = ok(r, "e", "UID EXPUNGE 2")
    assert lines == [b"* VANISHED 2"], "RFC 7162 3.2.10: VANISHED, not EXPUNGE: %r" % lines
    ok(r, "f", "UID STORE 1 +FLAGS (\\Seen)")
    lines, _ = ok(r, "g", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hms)
    assert lines[0] == b"* VANISHED (EARLIER) 2", lines
    seqs = [re.search(rb"UID (\d+)", l).group(1) for l in lines[1:]]
    assert sorted(seqs) == [b"1", b"4"], lines
    lines, _ = ok(r, "h", "UID FETCH 3:5 (FLAGS) (CHANGEDSINCE %d VANISHED)" % hms)
    assert not any(b"VANISHED" in l for l in lines), "uid 2 is outside 3:5: %r" % lines
    _, t = r.cmd("i", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hms)
    assert t.startswith(b"i BAD"), "VANISHED only with UID FETCH"
    _, t = r.cmd("j", "UID FETCH 1:* (FLAGS) (VANISHED)")
    assert t.startswith(b"j BAD"), "VANISHED needs CHANGEDSINCE"
    r.close()


def test_rfc7162_3_2_10_other_sessions_expunges_arrive_as_vanished(inst):
    r = session(inst)
    box = mailbox_with(r, 3)
    state(r, box)
    o = session(inst, enable=False)
    ok(o, "s", 'SELECT "%s"' % box)
    ok(o, "d", "STORE 2 +FLAGS (\\Deleted)")
    ok(o, "e", "EXPUNGE")
    o.close()
    lines, _ = ok(r, "n", "NOOP")
    assert b"* VANISHED 2" in lines and not any(l.endswith(b"EXPUNGE") for l in lines), lines
    lines, _ = ok(r, "f", "FETCH 1:* (UID)")
    assert len(lines) == 2
    r.close()


def expunge_each(inst, box, uids):
    """Another session expunges uids of box, one UID EXPUNGE each."""
    o = session(inst, enable=False)
    ok(o, "s", 'SELECT "%s"' % box)
    for uid in uids:
        ok(o, "d", "UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        ok(o, "e", "UID EXPUNGE %d" % uid)
    o.close()


def test_rfc7162_3_2_5_2_vanished_after_the_history_was_trimmed(make_imap_instance):
    """With a short expunge history (expunge_history = 3) the expunges a
    client missed may be forgotten; SELECT (QRESYNC ...) must then still
    report every uid of the client's range that is gone (RFC 7162
    3.2.5.2), computed from the messages that are left."""
    i = make_imap_instance({"expunge_history": "3"})
    r = session(i)
    box = mailbox_with(r, 70)
    uv, hms = state(r, box)
    ok(r, "u", "UNSELECT")
    # One by one: the expunge of uid 64 trims the history to the last 3.
    expunge_each(i, box, list(range(2, 66, 2)) + [67])
    db = sqlite3.connect(str(i.mail_dir / "example.test" / "alice" / "index.db"), timeout=10)
    try:
        kept = db.execute("SELECT count(*) FROM expunged e JOIN mailbox b ON b.id=e.mailbox_id"
                          " WHERE b.name=?", (box,)).fetchone()[0]
    finally:
        db.close()
    assert kept == 3 + 1, "the history was not trimmed at uid 64: %d rows" % kept
    lines, _ = ok(r, "q", 'SELECT "%s" (QRESYNC (%d %d 1:70))' % (box, uv, hms))
    vanished = [l for l in lines if l.startswith(b"* VANISHED (EARLIER) ")]
    assert vanished == [b"* VANISHED (EARLIER) " + ",".join(
        [str(u) for u in range(2, 66, 2)] + ["67"]).encode()], lines
    # Since a recent modseq the history is complete again: only what came after.
    _, hms2 = state(r, box)
    ok(r, "u2", "UNSELECT")
    expunge_each(i, box, [69])
    lines, _ = ok(r, "q2", 'SELECT "%s" (QRESYNC (%d %d 1:70))' % (box, uv, hms2))
    assert [l for l in lines if b"VANISHED" in l] == [b"* VANISHED (EARLIER) 69"], lines
