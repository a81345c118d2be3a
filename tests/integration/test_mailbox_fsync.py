"""mailbox_fsync: kill -9 of pochtad right after a burst of IMAP STORE flag
changes and EXPUNGEs, under `optimized` (flag changes and expunges commit
with SQLite synchronous=NORMAL and no directory fsync) and under `always`.

A process kill loses nothing the kernel already has: the WAL pages of a
NORMAL commit sit in the page cache and survive it.  So in both modes,
after a restart:
- every APPENDed message that was not expunged is there, byte for byte;
- every flag change and expunge that got its tagged OK is there;
- the index and the message files agree: every file in a mailbox
  directory is a row of the index, every row has its file, and the file
  name carries the row's flags (the index is the truth; recovery renames
  names left ahead of it by a flag change the kill interrupted);
- nothing is left in the user's tmp/.
The commands still in flight at the kill may or may not have happened."""

import random
import re
import socket
import sqlite3
import time

import pytest

import pochtatest
from pochtatest import ALICE, USERS

FLAG_LETTER = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
FLAG_BIT = {"\\Seen": 1, "\\Answered": 2, "\\Flagged": 4, "\\Deleted": 8, "\\Draft": 16}
LETTER_OF_BIT = {1: "S", 2: "R", 4: "F", 8: "T", 16: "D"}


class Imap:
    """Raw IMAP over a socket: commands may be pipelined, which imaplib
    cannot do."""

    def __init__(self, inst):
        self.sock = socket.create_connection(("127.0.0.1", inst.base + 143),
                                             timeout=pochtatest.IO_TIMEOUT)
        self.f = self.sock.makefile("rb")
        self.n = 0
        assert self.f.readline().startswith(b"* OK")

    def send(self, text, literal=None):
        self.n += 1
        tag = b"t%d" % self.n
        data = tag + b" " + text.encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(data + b"\r\n")
        return tag

    def wait(self, tag):
        """(untagged lines, tagged line) up to tag's completion; literals
        are read whole and appended to their line."""
        lines = []
        while True:
            ln = self.f.readline()
            if not ln:
                raise EOFError("server closed the connection")
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if m:
                ln += self.f.read(int(m.group(1))) + self.f.readline()
            if ln.startswith(tag + b" "):
                return lines, ln
            lines.append(ln)

    def ok(self, text, literal=None):
        tag = self.send(text, literal)
        lines, done = self.wait(tag)
        assert done.startswith(tag + b" OK"), "%s: %r" % (text, done)
        return lines, done

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def message(i):
    rnd = random.Random(i)
    body = "".join("line %d of message %d: %s\r\n" % (k, i, "x" * rnd.randrange(10, 70))
                   for k in range(rnd.randrange(5, 60)))
    return ("From: sender@remote.test\r\nTo: %s\r\nSubject: fsync test %d\r\n"
            "Message-ID: <fsync-%d@tests.pochta>\r\n\r\n%s" % (ALICE, i, i, body)).encode()


def login(inst):
    c = Imap(inst)
    c.ok("LOGIN %s %s" % (ALICE, USERS[ALICE]))
    c.ok("SELECT INBOX")
    return c


def index_state(inst):
    """{mailbox id: {uid: (guid, flags)}} from index.db and
    {mailbox id: {uid: (guid, letters)}} from the file names."""
    udir = inst.mail_dir / "example.test" / "alice"
    db = sqlite3.connect("file:%s?mode=ro" % (udir / "index.db"), uri=True)
    try:
        rows = {}
        for box, uid, guid, flags in db.execute("SELECT mailbox_id, uid, guid, flags FROM msg"):
            rows.setdefault(box, {})[uid] = (guid, flags)
        boxes = [b for (b,) in db.execute("SELECT id FROM mailbox")]
    finally:
        db.close()
    files = {}
    for box in boxes:
        files[box] = {}
        for p in (udir / "mbox" / str(box)).iterdir():
            m = re.fullmatch(r"(\d+)\.([0-9A-V]{16}):2,([A-Za-z]*)", p.name)
            if m:
                assert int(m.group(1)) not in files[box], "two files for uid %s" % m.group(1)
                files[box][int(m.group(1))] = (m.group(2), m.group(3))
    leftovers = [p.name for p in (udir / "tmp").iterdir()]
    return rows, files, leftovers


def burst_kill_verify(inst, rnd, sent, flags, expunged, first, count):
    """APPENDs, an acknowledged burst of flag changes and expunges, more of
    them in flight, kill -9, restart, and the checks of the module doc."""
    c = login(inst)
    for i in range(first, first + count):
        _, done = c.ok("APPEND INBOX (\\Seen)" if i % 3 == 0 else "APPEND INBOX", message(i))
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", done).group(1))
        sent[uid] = message(i)
        flags[uid] = 1 if i % 3 == 0 else 0
    uids = sorted(sent)

    # The burst: acknowledged flag changes and expunges ...
    for step in range(60):
        live = [u for u in uids if u not in expunged]
        u = rnd.choice(live)
        flag = rnd.choice(["\\Seen", "\\Flagged", "\\Answered", "\\Draft"])
        op = rnd.choice(["+", "-"])
        c.ok("UID STORE %d %sFLAGS.SILENT (%s)" % (u, op, flag))
        flags[u] = flags[u] | FLAG_BIT[flag] if op == "+" else flags[u] & ~FLAG_BIT[flag]
        if step % 6 == 5:
            v = rnd.choice(live)
            c.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % v)
            c.ok("UID EXPUNGE %d" % v)
            expunged.add(v)
    # ... then more sent without waiting, and the kill while they run: one
    # flag change of every message is a long run of renames before its
    # commit, and the kill lands right after the first one's reply, while
    # the next one renames (the log then says "put back to the index's flags").
    live = [u for u in uids if u not in expunged]
    in_flight = set(live)
    toggles = [c.send("UID STORE 1:* %sFLAGS.SILENT (\\Flagged)" % "+-"[k % 2]) for k in range(6)]
    for k in range(3):
        c.send("UID STORE %d +FLAGS.SILENT (\\Deleted $Important)" % live[-1 - k])
        c.send("UID EXPUNGE %d" % live[-1 - k])
    c.wait(toggles[0])
    time.sleep(rnd.choice([0, 0.0005, 0.001, 0.002]))
    inst.kill9()
    c.close()

    inst.start()
    c = login(inst)   # the first open of the user's store repairs what the kill left
    lines, _ = c.ok("UID FETCH 1:* (FLAGS)")
    seen = {}
    for ln in lines:
        m = re.match(rb"\* \d+ FETCH \((?=.*UID (\d+))(?=.*FLAGS \(([^)]*)\))", ln)
        if m:
            seen[int(m.group(1))] = m.group(2).decode().split()
    for u in uids:
        if u in expunged:
            assert u not in seen, "uid %d was expunged (tagged OK) but is back after kill -9" % u
            continue
        if u not in seen:
            assert u in in_flight, "uid %d vanished after kill -9 without an expunge" % u
            expunged.add(u)
            continue
        got = 0
        for f in seen[u]:
            got |= FLAG_BIT.get(f, 0)
        if u in in_flight:
            # In flight: additions, and \Flagged both ways; the rest of
            # what was acknowledged stays.
            keep = flags[u] & ~FLAG_BIT["\\Flagged"]
            assert got & keep == keep, "uid %d lost acknowledged flags: %s" % (u, seen[u])
            flags[u] = got
        else:
            assert got == flags[u], "uid %d: flags %s, acknowledged %d" % (u, seen[u], flags[u])
        lines, _ = c.ok("UID FETCH %d BODY.PEEK[]" % u)
        m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", lines[0])
        assert m, "no body literal for uid %d: %r" % (u, lines[0][:200])
        literal = lines[0][m.end():m.end() + int(m.group(1))]
        assert literal == sent[u], "uid %d differs from what was APPENDed" % u
    c.ok("LOGOUT")
    c.close()

    # Stop cleanly and compare the index with the files.
    assert inst.stop() == 0
    rows, files, leftovers = index_state(inst)
    assert leftovers == [], "left in tmp/ after recovery: %s" % leftovers
    for box in files:
        r, f = rows.get(box, {}), files[box]
        assert set(f) - set(r) == set(), "files not in the index (mailbox %d): %s" % (box, set(f) - set(r))
        assert set(r) - set(f) == set(), "index rows without a file (mailbox %d): %s" % (box, set(r) - set(f))
        for uid, (guid, fl) in r.items():
            fguid, letters = f[uid]
            assert fguid == guid, "uid %d: file guid %s, index %s" % (uid, fguid, guid)
            want = "".join(sorted(LETTER_OF_BIT[b] for b in LETTER_OF_BIT if fl & b))
            got = "".join(sorted(ch for ch in letters if ch.isupper()))
            assert got == want, "uid %d: file name flags %r, index %r" % (uid, got, want)
    inst.start()


@pytest.mark.parametrize("mode", ["optimized", "always"])
def test_kill9_after_store_and_expunge_burst(make_instance, mode):
    inst = make_instance(extra_conf={"plaintext_auth_loopback": "yes", "log_level": "info",
                                     "mailbox_fsync": mode})
    rnd = random.Random(7)
    sent, flags, expunged = {}, {}, set()
    # Several rounds: the kill lands at a different point of the in-flight
    # commands each time (inside a flag change's renames in some of them;
    # the log then says "put back to the index's flags").
    first = 0
    for count in (150, 20, 20, 20):
        burst_kill_verify(inst, rnd, sent, flags, expunged, first, count)
        first += count
