"""The daemon's life: start-up checks, privilege drop, clean shutdown, and
no accepted mail lost when it is killed."""

import hashlib
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from pochtatest import ALICE, Peer, check_code, check_stored, deliver_raw, make_message, unique, wait_port

SENDER = "sender@remote.test"


def test_sigterm_clean_exit_and_port_closed(make_instance):
    inst = make_instance()
    marker = unique()
    msg = make_message(marker)
    deliver_raw(inst.smtp_port, msg)
    idle = Peer(inst.smtp_port)          # an idle session must not hold up shutdown
    idle.ehlo()
    t0 = time.monotonic()
    rc = inst.stop(signal.SIGTERM, timeout=15)
    assert rc == 0, "exit status %s on SIGTERM:\n%s" % (rc, inst.stderr())
    assert time.monotonic() - t0 < 12
    try:
        rest = idle.read_until_closed(timeout=5)
        assert rest == b"" or rest.startswith(b"421 4."), rest
    finally:
        idle.close()
    for port in (inst.smtp_port, inst.submission_port, inst.submissions_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
    # nothing accepted was lost
    check_stored(inst.wait_message(marker, timeout=1), msg, SENDER, ALICE)
    inst.check_sanitizers()


def test_sigint_clean_exit(make_instance):
    inst = make_instance()
    rc = inst.stop(signal.SIGINT, timeout=15)
    assert rc == 0, "exit status %s on SIGINT:\n%s" % (rc, inst.stderr())


def test_restart_keeps_mail(make_instance):
    inst = make_instance()
    m1 = unique()
    deliver_raw(inst.smtp_port, make_message(m1))
    inst.restart()
    m2 = unique()
    deliver_raw(inst.smtp_port, make_message(m2))
    inst.wait_message(m1)
    inst.wait_message(m2)


def _config_error(make_instance, line, key):
    inst = make_instance(start=False)
    n = inst.append_conf(line)
    proc = inst.spawn()
    try:
        rc = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("pochtad started despite the config line %r" % line)
    err = inst.stderr()
    assert rc != 0, "pochtad exited 0 with a bad config line %r" % line
    assert re.search(r"%s:%d: key '%s'" % (re.escape(str(inst.conf)), n, re.escape(key)), err) or \
        re.search(r"pochta\.conf:%d: .*'%s'" % (n, re.escape(key)), err), \
        "stderr lacks 'FILE:%d: key '%s'': %s" % (n, key, err)
    assert "Sanitizer" not in err, err


def test_config_unknown_key(make_instance):
    _config_error(make_instance, "no_such_key = 1", "no_such_key")


@pytest.mark.parametrize("line,key", [
    ("max_message_size = lots", "max_message_size"),
    ("smtp_timeout = -3s", "smtp_timeout"),
    ("vrfy = maybe", "vrfy"),
    ("max_recipients = 1x", "max_recipients"),
])
def test_config_bad_value(make_instance, line, key):
    _config_error(make_instance, line, key)


def _uids(pid):
    out = {}
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, task)) as f:
            for l in f:
                if l.startswith(("Uid:", "Gid:")):
                    out.setdefault(l.split(":")[0], []).append([int(x) for x in l.split()[1:]])
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_privilege_drop(make_instance):
    inst = make_instance()
    # the daemon is serving, so start-up is over
    deliver_raw(inst.smtp_port, make_message(unique()))
    ids = _uids(inst.proc.pid)
    for uids in ids["Uid"]:
        assert all(u != 0 for u in uids), "a pochtad thread still has uid 0 (real, effective, saved, fs): %r" % ids
    for gids in ids["Gid"]:
        assert all(g != 0 for g in gids), "a pochtad thread still has gid 0: %r" % ids


def _numbered(i, run):
    mid = "%s-%04d" % (run, i)
    payload = hashlib.sha256(mid.encode()).hexdigest()
    body = "".join("%s %05d %s\r\n" % (mid, n, payload) for n in range(150))     # ~14 kB
    body += "checksum %s\r\n" % hashlib.sha256(body.encode()).hexdigest()
    return mid, make_message(mid, body=body)


def test_kill9_loses_nothing_accepted(make_instance):
    inst = make_instance()
    run = unique("k9")
    accepted = {}
    stop = threading.Event()
    errors = []

    def sender():
        for i in range(200):
            if stop.is_set():
                return
            mid, msg = _numbered(i, run)
            try:
                with smtplib.SMTP("127.0.0.1", inst.smtp_port, local_hostname="k9.remote.test", timeout=10) as s:
                    s.ehlo()
                    s.mail(SENDER)
                    s.rcpt(ALICE)
                    code, _ = s.data(msg)
                    if code == 250:
                        accepted[mid] = msg
            except (OSError, smtplib.SMTPException) as e:
                errors.append(repr(e))
                return

    t = threading.Thread(target=sender)
    t.start()
    deadline = time.monotonic() + 60
    while len(accepted) < 40 and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(accepted) >= 40, "only %d messages accepted before the kill; errors %r\n%s" % (
        len(accepted), errors, inst.stderr())
    inst.kill9()
    stop.set()
    t.join(30)
    n = len(accepted)
    assert n < 200, "all 200 sent before the kill; the test proved nothing"
    inst.start()
    assert wait_port(inst.smtp_port, 5)
    # one more delivery to alice first, so any recovery of her mailbox has run
    m = unique()
    deliver_raw(inst.smtp_port, make_message(m))
    inst.wait_message(m)
    missing, broken = [], []
    for mid, msg in accepted.items():
        try:
            found = inst.wait_messages(mid, 1, timeout=20)
        except AssertionError:
            missing.append(mid)
            continue
        if len(found) != 1:
            broken.append((mid, "%d copies" % len(found)))
            continue
        stored = found[0][1]
        if not stored.endswith(msg):
            broken.append((mid, "incomplete: %d of %d bytes" % (len(stored), len(msg))))
    assert not missing and not broken, "accepted then lost: %s; damaged: %s (of %d accepted)" % (
        missing, broken, n)


def test_connection_limit_per_ip(make_instance):
    inst = make_instance(extra_conf={"max_connections_per_ip": "3"})
    peers = [Peer(inst.smtp_port) for _ in range(3)]
    try:
        with Peer(inst.smtp_port, greet=False) as extra:
            r = extra.reply()
            check_code(r, 421, None, "4th connection from one address")
            assert r.lines[0][4:6] == b"4.", r
    finally:
        for p in peers:
            p.close()
    time.sleep(0.5)
    with Peer(inst.smtp_port) as p:
        assert p.greeting.code == 220
