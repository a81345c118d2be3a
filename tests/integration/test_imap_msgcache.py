"""The message cache in the mailbox index (store.h): the header block kept
at delivery and BODY/BODYSTRUCTURE kept after their first FETCH.  Checked
from outside: what the cache holds is exactly what the message gives, a
changed entry is what IMAP then answers (so the answer really comes from
the index and not from the file), and entries go with the last copy of
their message."""
import re
import sqlite3
import time

from pochtatest import ALICE
from test_imap import MULTIPART, append, connect, fetch_one, fresh_mailbox, literal_of, smtp_deliver
from test_imap import inst, make_imap_instance  # noqa: F401 (fixtures)

HEADER = 1
BODY, BODYSTRUCTURE, BODY_UTF8, BODYSTRUCTURE_UTF8 = 16, 17, 18, 19


def index(inst):
    return inst.mail_dir / "example.test" / "alice" / "index.db"


def entries(inst, box, uid):
    """{field: bytes} of message uid of mailbox box, read from index.db."""
    db = sqlite3.connect(str(index(inst)), timeout=10)
    try:
        rows = db.execute("SELECT c.field, c.data FROM msg m JOIN mailbox b ON b.id=m.mailbox_id"
                          " JOIN cache c ON c.guid=m.guid WHERE b.name=? AND m.uid=?",
                          (box, uid)).fetchall()
    finally:
        db.close()
    return {f: bytes(d) for f, d in rows}


def rewrite(inst, box, uid, field, data):
    db = sqlite3.connect(str(index(inst)), timeout=10)
    try:
        with db:
            n = db.execute("UPDATE cache SET data=? WHERE field=? AND guid=(SELECT m.guid FROM msg m"
                           " JOIN mailbox b ON b.id=m.mailbox_id WHERE b.name=? AND m.uid=?)",
                           (data, field, box, uid)).rowcount
    finally:
        db.close()
    assert n == 1


def untagged(data):
    """The response as it came on the wire (imaplib splits out literals)."""
    out = b""
    for item in data:
        out += item[0] + b"\r\n" + item[1] if isinstance(item, tuple) else item
    return out


def test_header_kept_at_append_and_smtp_delivery(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    uid = append(m, box, MULTIPART)
    hdr_end = MULTIPART.index(b"\r\n\r\n") + 4
    assert entries(inst, box, uid) == {HEADER: MULTIPART[:hdr_end]}

    smtp_deliver(inst, ALICE, b"Subject: over smtp\r\n\r\nhello\r\n")
    deadline = time.monotonic() + 10
    while True:
        m.select("INBOX")
        typ, data = m.uid("SEARCH", None, "SUBJECT", '"over smtp"')
        assert typ == "OK", data
        if data[0] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert data[0], "the SMTP message did not arrive"
    suid = int(data[0].split()[-1])
    hdr = entries(inst, "INBOX", suid)[HEADER]
    # The trace fields pochta adds are part of the stored message and so of its header.
    assert hdr.startswith(b"Return-Path: <sender@remote.test>\r\n") and hdr.endswith(
        b"Subject: over smtp\r\n\r\n"), hdr
    assert literal_of(fetch_one(m, str(suid), "(BODY.PEEK[HEADER])", uid=True)) == hdr
    m.logout()


def test_header_answers_come_from_the_index(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    uid = append(m, box, b"From: a@example.test\r\nSubject: original\r\n\r\nbody original\r\n")
    changed = b"From: a@example.test\r\nSubject: from-the-index\r\n\r\n"
    rewrite(inst, box, uid, HEADER, changed)
    m.select(box)
    assert b'"from-the-index"' in untagged(fetch_one(m, "1", "(ENVELOPE)"))
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")) == (
        b"Subject: from-the-index\r\n\r\n")
    typ, data = m.search(None, "SUBJECT", "from-the-index")
    assert typ == "OK" and data == [b"1"], data
    # The body is still read from the message file.
    assert literal_of(fetch_one(m, "1", "(BODY.PEEK[])")).endswith(b"body original\r\n")
    m.logout()


def test_bodystructure_kept_after_first_fetch(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    uid = append(m, box, MULTIPART)
    m.select(box)
    first = untagged(fetch_one(m, "1", "(BODYSTRUCTURE)"))
    body = untagged(fetch_one(m, "1", "(BODY)"))
    e = entries(inst, box, uid)
    assert set(e) == {HEADER, BODY, BODYSTRUCTURE}, e
    assert b"BODYSTRUCTURE " + e[BODYSTRUCTURE] in first
    assert b"BODY " + e[BODY] in body
    # Asked again, alone and beside other items: the same bytes.
    assert untagged(fetch_one(m, "1", "(BODYSTRUCTURE)")) == first
    both = untagged(fetch_one(m, "1", "(UID BODYSTRUCTURE ENVELOPE BODY FLAGS)"))
    assert e[BODYSTRUCTURE] in both and e[BODY] in both and b'"<mp-1@example.test>"' in both

    # The entry is what is answered from then on.
    marker = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL "from-the-index" "7BIT" 4 1 NIL NIL NIL NIL)'
    rewrite(inst, box, uid, BODYSTRUCTURE, marker)
    assert b"BODYSTRUCTURE " + marker in untagged(fetch_one(m, "1", "(BODYSTRUCTURE)"))
    # Together with something that needs the whole message it is computed
    # again from the file.
    data = fetch_one(m, "1", "(BODYSTRUCTURE BODY.PEEK[])")
    assert literal_of(data) == MULTIPART and b"from-the-index" not in untagged(data)
    m.logout()


def test_utf8_sessions_have_their_own_entries(inst):
    msg = ("Subject: utf8\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8; name=\"r\u00e9sum\u00e9.txt\"\r\n\r\n"
           "caf\u00e9\r\n").encode()
    m = connect(inst)
    box = fresh_mailbox(m)
    uid = append(m, box, msg)
    m.select(box)
    plain = untagged(fetch_one(m, "1", "(BODYSTRUCTURE)"))
    m.logout()

    u = connect(inst)
    typ, _ = u._simple_command("ENABLE", "UTF8=ACCEPT")
    assert typ == "OK"
    u.select('"%s"' % box)
    utf = untagged(fetch_one(u, "1", "(BODYSTRUCTURE)"))
    u.logout()
    e = entries(inst, box, uid)
    assert {BODYSTRUCTURE, BODYSTRUCTURE_UTF8} <= set(e), e
    assert b"BODYSTRUCTURE " + e[BODYSTRUCTURE] in plain
    assert b"BODYSTRUCTURE " + e[BODYSTRUCTURE_UTF8] in utf
    # Only a UTF8=ACCEPT client gets the name as a quoted UTF-8 string.
    assert '"r\u00e9sum\u00e9.txt"'.encode() in e[BODYSTRUCTURE_UTF8]
    assert '{12}\r\nr\u00e9sum\u00e9.txt'.encode() in e[BODYSTRUCTURE]


def test_entries_follow_copies_and_go_with_the_last(inst):
    m = connect(inst)
    a = fresh_mailbox(m)
    b = fresh_mailbox(m)
    uid = append(m, a, MULTIPART)
    m.select(a)
    fetch_one(m, "1", "(BODYSTRUCTURE)")
    typ, data = m.copy("1", b)
    code = re.search(rb"\[COPYUID \d+ %d (\d+)\]" % uid, data[0])
    assert typ == "OK" and code, data
    copy_uid = int(code.group(1))
    assert entries(inst, b, copy_uid) == entries(inst, a, uid)
    m.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
    m.expunge()
    assert entries(inst, b, copy_uid), "the copy lost its entries"
    m.select(b)
    m.uid("STORE", str(copy_uid), "+FLAGS.SILENT", "(\\Deleted)")
    m.expunge()
    db = sqlite3.connect(str(index(inst)), timeout=10)
    try:
        orphans = db.execute("SELECT count(*) FROM cache c WHERE NOT EXISTS"
                             " (SELECT 1 FROM msg m WHERE m.guid=c.guid)").fetchone()[0]
    finally:
        db.close()
    assert orphans == 0
    m.logout()


def test_header_cache_off(make_imap_instance):
    i = make_imap_instance({"header_cache_max": "0"})
    m = connect(i)
    box = fresh_mailbox(m)
    uid = append(m, box, b"Subject: not kept\r\n\r\nbody\r\n")
    assert HEADER not in entries(i, box, uid)
    m.select(box)
    assert b'"not kept"' in untagged(fetch_one(m, "1", "(ENVELOPE)"))
    m.logout()
