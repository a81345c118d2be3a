"""Fault injection against the real daemon: a full disk, a read-only data
directory, a deleted or corrupt mailbox index, and kill -9 in the middle of
a POP3 UPDATE and of deliveries.  Each test asserts that the fault is
reported with a clear log line and a temporary (4xx / -ERR) answer, that
nothing acknowledged is lost and nothing unacknowledged is half-stored, and
that the server recovers once the fault is gone.

The disk tests put the instance's data directory on a small tmpfs (root
only; skipped where mount is not permitted)."""

import collections
import hashlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import pochtatest
from pochtatest import ALICE, USERS, Peer, make_message, unique

EXTRA = {"plaintext_auth_loopback": "yes", "log_level": "info"}


# --- helpers ---------------------------------------------------------------------

class Pop3:
    """A minimal POP3 client over a plain socket (loopback logins are allowed
    by plaintext_auth_loopback)."""

    def __init__(self, inst, user=ALICE, password=None, timeout=pochtatest.IO_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", inst.base + 110), timeout=timeout)
        self.f = self.sock.makefile("rb")
        self.greeting = self.line()
        assert self.greeting.startswith(b"+OK"), self.greeting
        self.login = None
        if user:
            self.send(b"USER %s\r\nPASS %s\r\n" % (user.encode(), (password or USERS[user]).encode()))
            self.line()
            self.login = self.line()

    def line(self):
        ln = self.f.readline()
        if not ln:
            raise EOFError("POP3 server closed the connection")
        return ln

    def send(self, b):
        self.sock.sendall(b)

    def cmd(self, c):
        self.send(c.encode() + b"\r\n")
        return self.line()

    def ok(self, c):
        r = self.cmd(c)
        assert r.startswith(b"+OK"), "%s: %r" % (c, r)
        return r

    def stat(self):
        parts = self.ok("STAT").split()
        return int(parts[1]), int(parts[2])

    def retr(self, n):
        self.ok("RETR %d" % n)
        out = []
        while True:
            ln = self.line()
            if ln == b".\r\n":
                return b"".join(out)
            out.append(ln[1:] if ln.startswith(b"..") else ln)

    def all(self):
        n, _ = self.stat()
        return [self.retr(i) for i in range(1, n + 1)]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def start(inst):
    """inst.start(), made safe against another test run that took one of our
    ports after the port check: then pochtad exits while the other server
    answers, so wait for our own POP3 port and check that ours still runs."""
    for _ in range(5):
        inst.start()
        ok = pochtatest.wait_port(inst.base + 110, pochtatest.START_TIMEOUT, inst.proc)
        time.sleep(0.2)
        if ok and inst.proc.poll() is None:
            return inst
        proc, inst.proc = inst.proc, None
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "Address already in use" not in inst.stderr():
            raise AssertionError("pochtad did not start:\n%s" % inst.stderr())
        inst.rebase()
    raise AssertionError("no free ports for pochtad")


def new_instance(make_instance, **kw):
    inst = make_instance(extra_conf=dict(EXTRA), start=False, **kw)
    return start(inst)


def pop3_login_ok(inst, user=ALICE):
    p = Pop3(inst, user)
    assert p.login.startswith(b"+OK"), "POP3 login failed: %r\n%s" % (p.login, inst.stderr()[-3000:])
    return p


def mailbox_state(inst, user=ALICE):
    """(count, octets, {marker: (sha256 of the sent part, size)}) seen over
    POP3; STAT must agree with the messages retrieved."""
    p = pop3_login_ok(inst, user)
    try:
        n, octets = p.stat()
        seen = {}
        for m in p.all():
            mk = re.search(rb"Message-ID: <(\S+)@tests\.pochta>", m)
            assert mk, "message without our Message-ID: %r" % m[:300]
            key = mk.group(1).decode()
            assert key not in seen, "message %s listed twice" % key
            seen[key] = (hashlib.sha256(m[m.index(b"From: "):]).hexdigest(), len(m))
        assert n == len(seen), "STAT says %d messages, RETR found %d" % (n, len(seen))
        assert octets == sum(v[1] for v in seen.values()), \
            "STAT says %d octets, the messages have %d" % (octets, sum(v[1] for v in seen.values()))
        p.ok("QUIT")
        return n, octets, seen
    finally:
        p.close()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def send_one(inst, marker, rcpt=ALICE, size=2000):
    """One SMTP transaction; return (final reply, sent bytes).  A refusal
    at DATA (spool failure) is returned as that reply."""
    body = ("marker %s\r\n" % marker) + "".join(
        "%06d filler line for the fault tests .........................................\r\n" % i
        for i in range(max(1, size // 80)))
    msg = make_message(marker, rcpt=rcpt, body=body)
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<sender@remote.test>", 250)
        p.expect("RCPT TO:<%s>" % rcpt, 250)
        r = p.cmd("DATA")
        if r.code != 354:
            return r, msg
        p.send(re.sub(rb"(?m)^\.", b"..", msg) + b".\r\n")
        r = p.reply()
        p.cmd("QUIT")
        return r, msg


def assert_stored_intact(inst, marker, msg):
    found = inst.find(marker)
    assert len(found) == 1, "expected one stored copy of %s, found %d" % (marker, len(found))
    assert found[0][1].endswith(msg), "stored copy of %s differs from what was sent" % marker


def wait_log(inst, pattern, timeout=5.0):
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        text = inst.all_stderr()
        m = rx.search(text)
        if m or time.monotonic() > deadline:
            assert m, "no log line matching %r in:\n%s" % (pattern, text[-4000:])
            return m.group(0)
        time.sleep(0.1)


def user_dir(inst, user=ALICE):
    local, dom = user.split("@")
    return inst.mail_dir / dom / local


def run(*cmd, check=True):
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=60, check=check)


@pytest.fixture
def tmpfs_data(make_instance):
    """make(size) -> a started instance whose data directory is a tmpfs of
    `size`.  Teardown stops the daemon (exit 0) before unmounting."""
    made = []

    def make(size="2m", **kw):
        inst = make_instance(extra_conf=dict(EXTRA), start=False, **kw)
        data = inst.data_dir
        orig = inst.dir / "data.orig"
        os.rename(data, orig)
        os.mkdir(data)
        r = run("mount", "-t", "tmpfs", "-o", "size=%s,mode=0750" % size, "tmpfs", data, check=False)
        if r.returncode != 0:
            os.rmdir(data)
            os.rename(orig, data)
            pytest.skip("cannot mount a tmpfs: %s" % r.stderr.decode(errors="replace").strip())
        made.append(inst)
        st = os.stat(orig)
        os.chown(data, st.st_uid, st.st_gid)
        run("cp", "-a", "%s/." % orig, str(data))
        shutil.rmtree(orig)
        start(inst)
        return inst

    yield make
    for inst in made:
        try:
            if inst.proc is not None:
                rc = inst.stop()
                assert rc == 0, "pochtad exited %s on SIGTERM:\n%s" % (rc, inst.stderr())
        finally:
            if run("umount", inst.data_dir, check=False).returncode != 0:
                run("umount", "-l", inst.data_dir, check=False)


def fill(path, nbytes):
    with open(path, "wb") as f:
        f.write(b"\0" * nbytes)


def free_bytes(path):
    s = os.statvfs(path)
    return s.f_bavail * s.f_frsize


# --- disk full -------------------------------------------------------------------

def test_disk_full_gets_4xx_never_250_and_recovers(tmpfs_data):
    inst = tmpfs_data("4m")
    # Some mail before the disk fills up.
    before = {}
    for _ in range(3):
        mk = unique("before")
        r, msg = send_one(inst, mk)
        assert r.code == 250, r
        before[mk] = msg
    n0, octets0, _ = mailbox_state(inst)
    assert n0 == 3

    # Ballast leaves about 150 KB free, then messages of 40 KB until refused.
    ballast = inst.data_dir / "ballast"
    fill(ballast, max(0, free_bytes(inst.data_dir) - 150 * 1024))
    accepted, refused = {}, {}
    for i in range(40):
        mk = unique("fill")
        r, msg = send_one(inst, mk, size=40000)
        if r.code == 250:
            accepted[mk] = msg
        else:
            assert r.code in (451, 452), "disk full must be temporary (451/452): %r" % r
            refused[mk] = msg
            if len(refused) >= 3:
                break
    assert refused, "40 messages of 40 KB fitted in ~150 KB of free space"
    line = wait_log(inst, r".*(No space left on device|disk full|database or disk is full).*")
    assert "error" in line or "warn" in line, line

    # Every 250 is stored intact; no refused message is stored anywhere.
    for mk, msg in list(before.items()) + list(accepted.items()):
        assert_stored_intact(inst, mk, msg)
    for mk in refused:
        inst.assert_not_stored(mk, settle=0)
    inst.assert_alive()

    # Space back: delivery works again, and the index agrees with the files.
    ballast.unlink()
    mk = unique("after")
    r, msg = send_one(inst, mk)
    assert r.code == 250, "delivery after freeing space: %r\n%s" % (r, inst.stderr()[-3000:])
    assert_stored_intact(inst, mk, msg)
    n, octets, seen = mailbox_state(inst)
    want = set(before) | set(accepted) | {mk}
    assert set(seen) == want, "POP3 shows %s, expected %s" % (sorted(seen), sorted(want))
    assert n == len(want)


# --- read-only data --------------------------------------------------------------

def test_read_only_data_dir_gets_4xx_and_recovers(tmpfs_data):
    inst = tmpfs_data("8m")
    mk0 = unique("ro-before")
    r, msg0 = send_one(inst, mk0)
    assert r.code == 250, r

    # A read-only remount is refused while the daemon has files open for
    # writing (EBUSY); then the same fault is made with permissions, which
    # bind the unprivileged run_as user the daemon runs as.
    ro = run("mount", "-o", "remount,ro", inst.data_dir, check=False).returncode == 0
    saved = []
    if not ro:
        for d in (inst.data_dir / "tmp", user_dir(inst)):
            saved.append((d, os.stat(d).st_mode & 0o7777))
            os.chmod(d, 0o500)
    try:
        mk = unique("ro")
        r, msg = send_one(inst, mk)
        assert r.code in (421, 450, 451, 452), "read-only data dir must give 4xx: %r" % r
        wait_log(inst, r".*(Read-only file system|Permission denied).*")
        inst.assert_alive()
    finally:
        if ro:
            run("mount", "-o", "remount,rw", inst.data_dir)
        for d, mode in saved:
            os.chmod(d, mode)
    inst.assert_not_stored(mk, settle=0.3)
    assert_stored_intact(inst, mk0, msg0)
    mk2 = unique("ro-after")
    r, msg2 = send_one(inst, mk2)
    assert r.code == 250, "delivery after the fault is gone: %r\n%s" % (r, inst.stderr()[-3000:])
    n, _, seen = mailbox_state(inst)
    assert set(seen) == {mk0, mk2}


def test_read_only_mailbox_gets_451_at_end_of_data(make_instance):
    """The spool is writable but the mailbox is not: the message is received,
    then refused with 451 at the end of DATA, and a log line names the
    mailbox; nothing half-stored."""
    inst = new_instance(make_instance)
    mk0 = unique("mb-before")
    r, msg0 = send_one(inst, mk0)
    assert r.code == 250
    box = [p for p in (user_dir(inst) / "mbox").iterdir()]
    saved = [(d, os.stat(d).st_mode & 0o7777) for d in box + [user_dir(inst) / "tmp"]]
    for d, _ in saved:
        os.chmod(d, 0o500)
    try:
        mk = unique("mb-ro")
        r, msg = send_one(inst, mk)
        assert r.code == 451, "unwritable mailbox must give 451: %r" % r
        wait_log(inst, r".*status=deferred.*(Permission denied|Read-only).*")
    finally:
        for d, mode in saved:
            os.chmod(d, mode)
    inst.assert_not_stored(mk, settle=0.3)
    mk2 = unique("mb-after")
    r, _ = send_one(inst, mk2)
    assert r.code == 250, r
    _, _, seen = mailbox_state(inst)
    assert set(seen) == {mk0, mk2}


# --- a lost or corrupt index -----------------------------------------------------

def deliver_some(inst, n, user=ALICE, tag="m"):
    out = {}
    for _ in range(n):
        mk = unique(tag)
        r, msg = send_one(inst, mk, rcpt=user)
        assert r.code == 250, r
        out[mk] = msg
    return out


@pytest.mark.parametrize("first", ["delivery", "pop3"])
def test_deleted_index_is_rebuilt_on_next_access(make_instance, first):
    inst = new_instance(make_instance)
    deliver_some(inst, 5)
    n0, octets0, seen0 = mailbox_state(inst)
    assert n0 == 5
    # An operator removes the index file while the daemon runs (the WAL and
    # shared-memory files stay, as they would).
    os.unlink(user_dir(inst) / "index.db")
    if first == "delivery":
        more = deliver_some(inst, 1, tag="after")
    else:
        more = {}
    n, octets, seen = mailbox_state(inst)
    if first == "pop3":
        more = deliver_some(inst, 1, tag="after")
        n, octets, seen = mailbox_state(inst)
    wait_log(inst, r".*index rebuilt.*")
    want = dict(seen0)
    for mk, msg in more.items():
        want[mk] = None
    assert set(seen) == set(want), "after rebuild POP3 shows %s, expected %s" % (sorted(seen), sorted(want))
    for mk in seen0:
        assert seen[mk] == seen0[mk], "message %s changed in the rebuild" % mk
    assert n == n0 + len(more)
    assert octets == octets0 + sum(seen[mk][1] for mk in more), (octets0, octets)


def test_corrupt_index_is_refused_clearly_and_pochta_rebuild_recovers(make_instance):
    inst = new_instance(make_instance)
    deliver_some(inst, 4)
    _, _, seen0 = mailbox_state(inst)
    rc = inst.stop()
    assert rc == 0
    idx = user_dir(inst) / "index.db"
    size = idx.stat().st_size
    idx.write_bytes(os.urandom(max(size, 8192)))
    for suffix in ("-wal", "-shm"):
        p = Path(str(idx) + suffix)
        if p.exists():
            p.unlink()
    start(inst)

    # Delivery: a temporary failure with a log line naming the index, never 250.
    mk = unique("corrupt")
    r, msg = send_one(inst, mk)
    if r.code == 250:
        # The store rebuilt it by itself: that is a documented recovery too.
        wait_log(inst, r".*index.*(rebuilt|recreat).*")
    else:
        assert r.code == 451, r
        wait_log(inst, r"error: store \S+: index\.db is damaged .*'pochta rebuild %s'" % re.escape(ALICE))
        inst.assert_not_stored(mk, settle=0.2)
        p = Pop3(inst)
        assert p.login.startswith(b"-ERR"), "POP3 login on a corrupt index: %r" % p.login
        p.close()
        # The documented recovery: stop, pochta rebuild ADDRESS, start.
        assert inst.stop() == 0
        r2 = inst.cli("rebuild", ALICE, check=False)
        assert r2.returncode == 0, "pochta rebuild failed: %r %r" % (r2.stdout, r2.stderr)
        assert b"rebuilt" in r2.stdout, r2.stdout
        start(inst)
        r, msg = send_one(inst, mk)
        assert r.code == 250, "delivery after pochta rebuild: %r" % r
    n, _, seen = mailbox_state(inst)
    assert set(seen) == set(seen0) | {mk}
    for k in seen0:
        assert seen[k] == seen0[k]
    assert_stored_intact(inst, mk, msg)


def test_pochta_rebuild_unknown_user_fails_clearly(make_instance):
    inst = make_instance(start=False)
    r = inst.cli("rebuild", "nobody@example.test", check=False)
    assert r.returncode == 1
    assert b"pochta: " in r.stderr and b"nobody@example.test" in r.stderr, r.stderr
    r = inst.cli("rebuild", check=False)
    assert r.returncode == 1 and b"usage" in r.stderr, r.stderr


# --- kill -9 -----------------------------------------------------------------------

def test_kill9_during_pop3_update_is_all_or_nothing(make_instance):
    inst = new_instance(make_instance)
    deliver_some(inst, 60, tag="upd")
    _, _, seen0 = mailbox_state(inst)
    present = dict(seen0)
    outcomes = []
    for delay in (0.0, 0.001, 0.003, 0.006, 0.012, 0.025):
        p = pop3_login_ok(inst)
        n, _ = p.stat()
        # DELE every other message by number; the UIDL tells which ones.
        p.send(b"UIDL\r\n")
        p.line()
        uidl = {}
        while True:
            ln = p.line()
            if ln == b".\r\n":
                break
            num, uid = ln.split()
            uidl[int(num)] = uid
        heads = {}
        for k in range(1, n + 1, 2):
            m = p.retr(k)
            heads[k] = re.search(rb"Message-ID: <(\S+)@tests\.pochta>", m).group(1).decode()
            p.ok("DELE %d" % k)
        p.send(b"QUIT\r\n")
        time.sleep(delay)
        inst.kill9()
        try:
            p.sock.settimeout(2)
            answer = p.line()
        except (EOFError, OSError):
            answer = b""
        p.close()
        start(inst)
        _, _, seen = mailbox_state(inst)
        dele = set(heads.values())
        for mk, h in present.items():
            if mk in dele:
                if answer.startswith(b"+OK"):
                    assert mk not in seen, "DELE'd %s is back after +OK to QUIT and kill -9" % mk
            else:
                assert mk in seen, "message %s that was not DELE'd is gone" % mk
            if mk in seen:
                assert seen[mk] == h, "message %s changed" % mk
        assert set(seen) <= set(present)
        # Either the whole UPDATE happened or none of it.
        gone = dele - set(seen)
        outcomes.append((delay, answer[:3], len(gone), len(dele)))
        assert gone in (set(), dele), "partial UPDATE after kill -9 at %.3fs: %d of %d gone" % (
            delay, len(gone), len(dele))
        # Files and index agree: every file is listed, no staging leftovers.
        on_disk = {re.search(rb"Message-ID: <(\S+)@tests\.pochta>", b).group(1).decode()
                   for _, b in inst.find(b"Message-ID: <upd-")}
        assert on_disk == set(seen), "files %s vs index %s" % (sorted(on_disk - set(seen)),
                                                               sorted(set(seen) - on_disk))
        present = seen
        if len(present) < 4:
            break
    # Shown with -s: which kills landed before, inside and after UPDATE.
    print("kill -9 after QUIT: (delay, answer, gone, DELE'd) %s" % outcomes)


def test_kill9_during_delivery_keeps_every_250(make_instance):
    inst = new_instance(make_instance)
    acked, tried = {}, {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(i):
        while not stop.is_set():
            mk = unique("k9-%d" % i)
            try:
                body = ("marker %s\r\n" % mk) + "x" * 70 * 1500 + "\r\n"
                body = "".join(body[j:j + 70] + "\r\n" for j in range(0, len(body), 70))
                msg = make_message(mk, body=body)
                with lock:
                    tried[mk] = msg
                with Peer(inst.smtp_port, timeout=10) as p:
                    p.ehlo()
                    p.expect("MAIL FROM:<sender@remote.test>", 250)
                    p.expect("RCPT TO:<%s>" % ALICE, 250)
                    r = p.data(msg)
                    if r.code == 250:
                        with lock:
                            acked[mk] = msg
            except (OSError, EOFError, AssertionError):
                return

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    inst.kill9()
    stop.set()
    for t in threads:
        t.join(15)
    assert acked, "no delivery was acknowledged before the kill"
    assert len(tried) > len(acked), "no delivery was in flight when pochtad was killed"
    start(inst)
    _, _, seen = mailbox_state(inst)
    for mk, msg in acked.items():
        assert mk in seen, "message %s got 250 but is gone after kill -9" % mk
    # One file per listed message, each whole: no partial or extra files.
    files = collections.defaultdict(list)
    for p, b in inst.find(b"Message-ID: <k9-"):
        mk = re.search(rb"Message-ID: <(\S+)@tests\.pochta>", b).group(1).decode()
        assert mk in tried, "unknown message %s in %s" % (mk, p)
        assert b.endswith(tried[mk]), "partial message %s in %s" % (mk, p)
        files[mk].append(p)
    assert set(files) == set(seen), "files and index disagree: %s / %s" % (
        sorted(set(files) - set(seen)), sorted(set(seen) - set(files)))
    assert all(len(v) == 1 for v in files.values()), "duplicate files: %s" % {
        k: v for k, v in files.items() if len(v) > 1}
    for mk in seen:
        assert seen[mk][0] == sha(tried[mk][tried[mk].index(b"From: "):]), "message %s differs" % mk
    assert not [f for f in os.listdir(user_dir(inst) / "tmp")], \
        "staging files left after recovery: %s" % os.listdir(user_dir(inst) / "tmp")
