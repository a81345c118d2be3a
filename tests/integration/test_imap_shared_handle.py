"""Several IMAP sessions of one user share that user's store: each command
borrows a handle from the store's cache and gives it back, so sessions
between commands (and idling ones) hold no SQLite connection and no
descriptor besides their socket.  Sessions of one user interleaving
SELECT, FETCH, STORE, EXPUNGE and APPEND must each see a consistent
mailbox, and one logging out while another is busy must not disturb it."""

import os
import re
import threading

import pytest

from pochtatest import ALICE, make_message, unique
from test_imap import SHARED_CONF, Raw, append, close_instance, connect, fresh_mailbox, start_imap_instance


@pytest.fixture(scope="module")
def inst():
    i = start_imap_instance(dict(SHARED_CONF, plaintext_auth_loopback="yes",
                                 max_connections_per_ip=400, imap_max_connections_per_user=400))
    yield i
    close_instance(i)


def bodies(m, uids):
    typ, data = m.uid("FETCH", ",".join(str(u) for u in uids), "(BODY.PEEK[])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            out[uid] = item[1]
    return out


def test_two_sessions_interleave_select_fetch_store_expunge_append(inst):
    a = connect(inst)
    b = connect(inst)
    try:
        box = fresh_mailbox(a, "shared")
        msgs = [make_message(unique("sh")) for _ in range(3)]
        uids = [append(a, box, m) for m in msgs]
        typ, data = b.select(box)
        assert typ == "OK" and int(data[0]) == 3
        assert a.select(box)[0] == "OK"
        # What A appended, B reads byte for byte.
        got = bodies(b, uids)
        for u, m in zip(uids, msgs):
            assert got[u] == m
        # A's flag change reaches B.
        assert a.uid("STORE", str(uids[0]), "+FLAGS", r"(\Seen)")[0] == "OK"
        typ, data = b.uid("FETCH", str(uids[0]), "(FLAGS)")
        # The change may come as a FETCH of its own after the answer; the
        # last word on the message's flags must carry it.
        assert typ == "OK" and rb"\Seen" in data[-1], data
        # B expunges; A hears of it at its next command.
        assert b.uid("STORE", str(uids[1]), "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert b.expunge()[0] == "OK"
        typ, _ = a.noop()
        assert typ == "OK"
        assert a.response("EXPUNGE")[1] == [b"2"]
        # A new message appended by B shows up in A as EXISTS.
        extra = make_message(unique("sh"))
        u4 = append(b, box, extra)
        a.noop()
        assert a.response("EXISTS")[1][-1:] == [b"3"]
        assert bodies(a, [u4])[u4] == extra
        typ, data = a.search(None, "ALL")
        assert typ == "OK" and data[0].split() == [b"1", b"2", b"3"]
    finally:
        a.logout()
        b.logout()


def worker(inst, box, rounds, errors, tag):
    m = connect(inst)
    try:
        assert m.select(box)[0] == "OK"
        for i in range(rounds):
            body = make_message(unique(tag))
            uid = append(m, box, body)
            got = bodies(m, [uid])
            if got.get(uid) != body:
                errors.append("%s: body of uid %d differs" % (tag, uid))
            for typ, _ in (m.uid("STORE", str(uid), "+FLAGS", r"(\Flagged)"),
                           m.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)"),
                           m.uid("EXPUNGE", str(uid))):
                if typ != "OK":
                    errors.append("%s: round %d got %s" % (tag, i, typ))
            typ, data = m.uid("SEARCH", None, "UID", str(uid))
            if typ != "OK" or data[0].strip():
                errors.append("%s: uid %d still there after UID EXPUNGE: %r" % (tag, uid, data))
    except Exception as e:      # reported below, not lost in the thread
        errors.append("%s: %r" % (tag, e))
    finally:
        try:
            m.logout()
        except Exception:
            pass


def test_sessions_of_one_user_in_parallel_and_a_logout_meanwhile(inst):
    setup = connect(inst)
    box = fresh_mailbox(setup, "par")
    keep = [append(setup, box, make_message(unique("keep"))) for _ in range(5)]
    setup.logout()
    errors = []
    threads = [threading.Thread(target=worker, args=(inst, box, 15, errors, "w%d" % i)) for i in range(3)]
    for t in threads:
        t.start()
    # Sessions of the same user come and go while the others are busy.
    for _ in range(5):
        m = connect(inst)
        assert m.select(box)[0] == "OK"
        assert m.uid("FETCH", "1:*", "(FLAGS)")[0] == "OK"
        m.logout()
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert errors == []
    m = connect(inst)
    try:
        typ, data = m.select(box)
        assert typ == "OK" and int(data[0]) == len(keep)
        typ, data = m.uid("SEARCH", None, "ALL")
        assert [int(x) for x in data[0].split()] == keep
    finally:
        m.logout()


def test_logout_while_another_session_fetches(inst):
    a = connect(inst)
    box = fresh_mailbox(a, "big")
    msgs = [make_message(unique("big"), body=("line %d " % i) * 4000 + "\r\n") for i in range(8)]
    uids = [append(a, box, x) for x in msgs]
    a.select(box)
    b = Raw(inst)
    b.login(ALICE)
    _, t = b.cmd("s", "SELECT %s" % box)
    assert t.startswith(b"s OK"), t
    # B's FETCH is under way (several job rounds: about 256 KB) when A logs out.
    b.send(b"f UID FETCH 1:* (BODY.PEEK[])\r\n")
    a.logout()
    data, b.buf = b.buf, b""
    while not re.search(rb"\r\nf (OK|NO|BAD)[^\r\n]*\r\n", data):
        chunk = b.sock.recv(65536)
        assert chunk, "connection closed during FETCH"
        data += chunk
    assert re.search(rb"\r\nf OK", data), data[-200:]
    for x in msgs:
        assert x in data
    b.send(b"z LOGOUT\r\n")
    c = connect(inst)
    try:
        assert c.select(box)[0] == "OK"
        assert bodies(c, uids[:1])[uids[0]] == msgs[0]
    finally:
        c.logout()


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_idling_sessions_hold_only_their_socket(inst):
    pid = inst.proc.pid
    warm = connect(inst)
    warm.select("INBOX")
    warm.logout()
    before = open_fds(pid)
    n = 30
    sessions = []
    try:
        for _ in range(n):
            r = Raw(inst, tls=False)
            r.login(ALICE)
            _, t = r.cmd("s", "SELECT INBOX")
            assert t.startswith(b"s OK"), t
            r.send(b"i IDLE\r\n")
            assert r.line().startswith(b"+ ")
            sessions.append(r)
        grown = open_fds(pid) - before
        # One socket each; the store handles they used went back to the
        # cache (a few at most, 4 descriptors each), not 4 more per session.
        assert grown <= n + 8, "%d sessions added %d descriptors" % (n, grown)
    finally:
        for r in sessions:
            try:
                r.send(b"DONE\r\nz LOGOUT\r\n")
                r.sock.close()
            except OSError:
                pass
