"""Interoperability with common command-line SMTP clients: swaks and curl."""

import shutil
import subprocess

import pytest

from pochtatest import ALICE, BOB, USERS, check_stored, make_message, unique

SENDER = "tool@remote.test"


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    assert r.returncode == 0, "%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(cmd), r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def _swaks_msg(instance, marker, sender, rcpt):
    # swaks appends CRLF to data that lacks a final newline, and dot-stuffs
    msg = make_message(marker, sender=sender, rcpt=rcpt, body=".dotted\r\nbody of %s" % marker)
    path = instance.dir / ("swaks-%s.eml" % marker)
    path.write_bytes(msg)
    return path, msg + b"\r\n"


needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


@needs_swaks
def test_swaks_plain(instance):
    marker = unique()
    path, want = _swaks_msg(instance, marker, SENDER, ALICE)
    _run(["swaks", "-s", "127.0.0.1", "-p", str(instance.smtp_port), "-h", "swaks.remote.test",
          "-f", SENDER, "-t", ALICE, "--data", "@" + str(path)])
    check_stored(instance.wait_message(marker), want, SENDER, ALICE, helo="swaks.remote.test", proto="ESMTP")


@needs_swaks
def test_swaks_starttls(instance):
    marker = unique()
    path, want = _swaks_msg(instance, marker, SENDER, BOB)
    out = _run(["swaks", "-s", "127.0.0.1", "-p", str(instance.smtp_port), "-h", "swaks.remote.test", "--tls",
                "-f", SENDER, "-t", BOB, "--data", "@" + str(path)])
    assert "TLS started" in out, out
    check_stored(instance.wait_message(marker), want, SENDER, BOB, helo="swaks.remote.test", proto="ESMTPS")


@needs_swaks
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_submission_auth(instance, mech):
    marker = unique()
    path, want = _swaks_msg(instance, marker, ALICE, BOB)
    _run(["swaks", "-s", "127.0.0.1", "-p", str(instance.submission_port), "-h", "mua.remote.test", "--tls",
          "--auth", mech, "--auth-user", ALICE, "--auth-password", USERS[ALICE],
          "-f", ALICE, "-t", BOB, "--data", "@" + str(path)])
    check_stored(instance.wait_message(marker), want, ALICE, BOB, helo="mua.remote.test", proto="ESMTPSA")


@needs_swaks
def test_swaks_pipelining(instance):
    marker = unique()
    path, want = _swaks_msg(instance, marker, SENDER, ALICE)
    out = _run(["swaks", "-s", "127.0.0.1", "-p", str(instance.smtp_port), "--pipeline",
                "-f", SENDER, "-t", ALICE + "," + BOB, "--data", "@" + str(path)])
    assert "PIPELINING" in out
    assert len(instance.wait_messages(marker, 2)) == 2


def _curl_msg(instance, marker, sender, rcpt):
    msg = make_message(marker, sender=sender, rcpt=rcpt, body="..two dots\r\n.\r\nbody of %s\r\n" % marker)
    path = instance.dir / ("curl-%s.eml" % marker)
    path.write_bytes(msg)
    return path, msg


@needs_curl
def test_curl_smtp(instance):
    marker = unique()
    path, want = _curl_msg(instance, marker, SENDER, ALICE)
    _run(["curl", "-sS", "--max-time", "30", "smtp://127.0.0.1:%d/curl.remote.test" % instance.smtp_port,
          "--mail-from", SENDER, "--mail-rcpt", ALICE, "--mail-rcpt", BOB, "--upload-file", str(path)])
    found = instance.wait_messages(marker, 2)
    assert len(found) == 2
    for _p, stored in found:
        rcpt = ALICE if b"for <%s>" % ALICE.encode() in stored[:1000] else BOB
        check_stored(stored, want, SENDER, rcpt, helo="curl.remote.test", proto="ESMTP")


@needs_curl
def test_curl_smtps_auth(instance):
    marker = unique()
    path, want = _curl_msg(instance, marker, BOB, ALICE)
    _run(["curl", "-sS", "--max-time", "30", "-k", "smtps://127.0.0.1:%d/curl.remote.test" % instance.submissions_port,
          "--user", "%s:%s" % (BOB, USERS[BOB]),
          "--mail-from", BOB, "--mail-rcpt", ALICE, "--upload-file", str(path)])
    check_stored(instance.wait_message(marker), want, BOB, ALICE, helo="curl.remote.test", proto="ESMTPSA")


@needs_curl
def test_curl_submission_starttls_auth(instance):
    marker = unique()
    path, want = _curl_msg(instance, marker, ALICE, BOB)
    _run(["curl", "-sS", "--max-time", "30", "-k", "--ssl-reqd",
          "smtp://127.0.0.1:%d/curl.remote.test" % instance.submission_port,
          "--user", "%s:%s" % (ALICE, USERS[ALICE]),
          "--mail-from", ALICE, "--mail-rcpt", BOB, "--upload-file", str(path)])
    check_stored(instance.wait_message(marker), want, ALICE, BOB, helo="curl.remote.test", proto="ESMTPSA")


@needs_curl
def test_curl_wrong_password_fails(instance):
    marker = unique()
    path, _want = _curl_msg(instance, marker, ALICE, BOB)
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-k",
                        "smtps://127.0.0.1:%d/curl.remote.test" % instance.submissions_port,
                        "--user", "%s:wrong" % ALICE, "--mail-from", ALICE, "--mail-rcpt", BOB,
                        "--upload-file", str(path)], capture_output=True, timeout=60)
    assert r.returncode == 67, "curl should fail with 67 (login denied), got %d: %s" % (r.returncode, r.stderr)
    instance.assert_not_stored(marker)
