"""IDLE (RFC 2177) driven by the in-process "mailbox changed" bus: an idling
session hears about SMTP deliveries and other sessions' APPEND, STORE,
EXPUNGE, COPY and MOVE at once, without polling the store; idle sessions
cost the daemon no CPU."""

import os
import re
import select
import time

import pytest

from pochtatest import ALICE, BOB, make_message, unique
from test_imap import (SHARED_CONF, Raw, append, close_instance, connect, fresh_mailbox,
                       smtp_deliver, start_imap_instance)


@pytest.fixture(scope="module")
def inst():
    i = start_imap_instance(dict(SHARED_CONF, plaintext_auth_loopback="yes",
                                 max_connections_per_ip=400, imap_max_connections_per_user=400))
    yield i
    close_instance(i)


def idle_on(inst, box, user=ALICE, tls=True):
    r = Raw(inst, tls=tls)
    r.login(user)
    _, t = r.cmd("s", 'SELECT "%s"' % box)
    assert t.startswith(b"s OK"), t
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    return r


def next_line(r, within):
    """The next line within `within` seconds, or None."""
    if b"\r\n" not in r.buf:
        ready, _, _ = select.select([r.sock], [], [], within)
        if not ready and not (hasattr(r.sock, "pending") and r.sock.pending()):
            return None
    r.sock.settimeout(within)
    return r.line()


def wait_for(r, pattern, within):
    """Lines until one matches pattern; fails after `within` seconds."""
    end = time.monotonic() + within
    seen = []
    while True:
        l = next_line(r, max(0.01, end - time.monotonic()))
        assert l is not None, "no %r within %.1fs; got %r" % (pattern, within, seen)
        if re.match(pattern, l):
            return l
        seen.append(l)


def done(r):
    r.send(b"DONE\r\n")
    lines, t = r.until("i")
    assert t.startswith(b"i OK"), t
    return lines


def test_rfc2177_idle_hears_append_of_another_session_at_once(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    r = idle_on(inst, box)
    t0 = time.monotonic()
    append(m, box, make_message(unique("push")))
    l = next_line(r, 5)
    assert l is not None and re.match(rb"\* 1 EXISTS", l), l
    assert time.monotonic() - t0 < 1.0, "pushed, not found by a poll"
    done(r)
    m.logout()
    r.close()


def test_rfc2177_idle_hears_flags_and_expunge_of_another_session(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    append(m, box, make_message(unique("f1")))
    append(m, box, make_message(unique("f2")))
    r = idle_on(inst, box)
    m.select(box)
    t0 = time.monotonic()
    assert m.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    l = next_line(r, 5)
    assert l is not None and re.match(rb"\* 2 FETCH \(.*FLAGS \(.*\\Flagged", l), l
    assert m.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert m.expunge()[0] == "OK"
    got = []
    while True:
        l = next_line(r, 5)
        assert l is not None, got
        got.append(l)
        if re.match(rb"\* 1 EXPUNGE", l):
            break
    assert time.monotonic() - t0 < 2.0
    done(r)
    m.logout()
    r.close()


def test_rfc2177_idle_hears_copy_and_move_into_its_mailbox(inst):
    m = connect(inst)
    src, dst = fresh_mailbox(m), fresh_mailbox(m)
    append(m, src, make_message(unique("c1")))
    append(m, src, make_message(unique("c2")))
    r = idle_on(inst, dst)
    m.select(src)
    assert m.copy("1", dst)[0] == "OK"
    wait_for(r, rb"\* 1 EXISTS", 3)
    typ, _ = m._simple_command("MOVE", "1", '"%s"' % dst)
    assert typ == "OK"
    wait_for(r, rb"\* 2 EXISTS", 3)
    done(r)
    m.logout()
    r.close()


def test_rfc2177_idle_woken_by_smtp_only_for_its_user(inst):
    ra = idle_on(inst, "INBOX", ALICE)
    rb = idle_on(inst, "INBOX", BOB)
    smtp_deliver(inst, BOB, make_message(unique("only-bob"), rcpt=BOB))
    l = next_line(rb, 5)
    assert l is not None and re.match(rb"\* \d+ EXISTS", l), l
    assert next_line(ra, 1.0) is None, "alice's IDLE must not hear bob's mail"
    done(ra)
    done(rb)
    ra.close()
    rb.close()


def test_rfc2177_change_between_commands_reported_when_idle_starts(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    r = Raw(inst)
    r.login()
    _, t = r.cmd("s", 'SELECT "%s"' % box)
    append(m, box, make_message(unique("between")))
    time.sleep(0.2)
    r.send(b"i IDLE\r\n")
    lines = [r.line(), next_line(r, 3)]
    assert any(l and re.match(rb"\* 1 EXISTS", l) for l in lines), lines
    done(r)
    m.logout()
    r.close()


def test_rfc2177_quiet_mailbox_gets_no_untagged_noise(inst):
    m = connect(inst)
    box = fresh_mailbox(m)
    r = idle_on(inst, box)
    other = fresh_mailbox(m)
    append(m, other, make_message(unique("elsewhere")))
    assert next_line(r, 1.5) is None
    assert done(r) == []
    m.logout()
    r.close()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime


def test_idle_sessions_cost_no_cpu(inst):
    sessions = []
    try:
        for _ in range(200):
            sessions.append(idle_on(inst, "INBOX", ALICE, tls=False))
        time.sleep(0.5)
        pid = inst.proc.pid
        before = cpu_ticks(pid)
        time.sleep(5)
        used = cpu_ticks(pid) - before
        hz = os.sysconf("SC_CLK_TCK")
        assert used <= hz // 20, "200 idle sessions used %d ticks (%.2fs) in 5s" % (used, used / hz)
        # And they all still hear a delivery.
        smtp_deliver(inst, ALICE, make_message(unique("fanout"), rcpt=ALICE))
        for r in sessions[:: 20]:
            l = next_line(r, 5)
            assert l is not None and re.match(rb"\* \d+ EXISTS", l), l
    finally:
        for r in sessions:
            r.close()
