"""The sendmail(8) entry point used the way local programs use it.

`pochta sendmail` (or the pochta binary under the name "sendmail", as a
/usr/sbin/sendmail symlink would be) reads a message on standard input and
submits it over pochtad's local socket (listen_local, data/run/sendmail.sock)
into the same delivery path as SMTP: local recipients' mailboxes, remote
ones into the outbound queue.  What is checked here:

- cron: `sendmail -i -t` with "From: root (Cron Daemon)" headers; the
  mailbox holds Return-Path, Received "from local (uid 0)", the Date and
  Message-ID sendmail adds, then exactly the bytes cron wrote with LF
  turned into CRLF;
- PHP's mail(): `sendmail -t -i` with LF line ends, with and without -f,
  a "." line kept under -i, Bcc used as a recipient but removed;
- a remote recipient lands in the queue (`pochta queue list`, and `pochta
  queue show ID` prints envelope and content);
- the exit codes callers act on: 75 when pochtad is down, 67 for an
  unknown local user, 64 for no recipients;
- the peer's uid comes from the socket (SO_PEERCRED), not from the client:
  a run as "nobody" is recorded as uid 65534.
"""

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pochtatest import ALICE, HOSTNAME, close_instance, new_instance, split_trace, unique

EX_USAGE, EX_NOUSER, EX_TEMPFAIL = 64, 67, 75


@pytest.fixture(scope="module")
def inst():
    i = new_instance()
    yield i
    close_instance(i)


@pytest.fixture(scope="module")
def sendmail_link(inst):
    """A directory with `sendmail` -> the pochta binary, like /usr/sbin."""
    d = Path(tempfile.mkdtemp(prefix="pochta-sm-"))
    os.chmod(d, 0o755)
    (d / "sendmail").symlink_to(inst.pochta.resolve())
    yield d / "sendmail"
    shutil.rmtree(d, ignore_errors=True)


def run_sendmail(inst, link, args, data, env_conf=True, user=None):
    """Run `sendmail ARGS` under that name (config via $POCHTA_CONFIG)."""
    env = dict(os.environ)
    if env_conf:
        env["POCHTA_CONFIG"] = str(inst.conf)
    cmd = [str(link)] + list(args)
    if user is not None:
        cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
    return subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=60)


def stored_for(inst, marker):
    return inst.wait_message(marker)


def test_socket_is_listening_with_mode_0666(inst):
    sock = inst.data_dir / "run" / "sendmail.sock"
    assert sock.is_socket(), "no socket at %s" % sock
    assert (sock.stat().st_mode & 0o777) == 0o666


def test_cron_style_sendmail_i_t(inst, sendmail_link):
    marker = unique("cron")
    # What cron writes (LF ends, no Date, no Message-ID), then runs
    # `sendmail -i -t` ... here with -FCronDaemon and -oem as Debian's does.
    text = ("From: root (Cron Daemon)\n"
            "To: %s\n"
            "Subject: Cron <root@host> /usr/local/bin/backup\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=UTF-8\n"
            "Content-Transfer-Encoding: 8bit\n"
            "X-Cron-Env: <SHELL=/bin/sh>\n"
            "X-Cron-Env: <HOME=/root>\n"
            "\n"
            "backup done %s\n"
            ".\n"
            "a line after a lone dot, kept because of -i\n"
            "Gr\u00fc\u00dfe\n" % (ALICE, marker)).encode()
    r = run_sendmail(inst, sendmail_link, ["-FCronDaemon", "-i", "-t", "-oem", "-odi"], text)
    assert r.returncode == 0, r.stderr
    stored = stored_for(inst, marker)
    rp, received, rest = split_trace(stored)
    assert rp == "Return-Path: <root@%s>" % HOSTNAME
    assert received.startswith("Received: from local (uid 0) by %s (pochta)" % HOSTNAME), received
    assert "for <%s>" % ALICE in received
    # sendmail adds what cron leaves out, in front; the rest is cron's text
    # byte for byte with CRLF line ends (RFC 5322 2.3).
    assert rest.endswith(text.replace(b"\n", b"\r\n")), rest
    added = rest[:len(rest) - len(text.replace(b"\n", b"\r\n"))]
    assert re.fullmatch(rb"Date: [^\r\n]+\r\nMessage-ID: <[^\r\n]+@" + HOSTNAME.encode() + rb">\r\n", added), added
    log = inst.stderr()
    assert re.search(r"local submission by uid=0 user=root", log), log[-3000:]


def test_php_mail_lf_endings_with_f(inst, sendmail_link):
    marker = unique("php")
    # PHP mail(): sendmail_path "sendmail -t -i", additional_params "-f...".
    text = ("To: %s\n"
            "Subject: Your order\n"
            "From: Shop <shop@example.test>\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
            "Message-ID: <%s@shop.example.test>\n"
            "Bcc: bob@example.test\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "\n"
            "Thank you. %s\n"
            "..leading dots stay as they are\n" % (ALICE, marker, marker)).encode()
    # The configuration named with -C (after other options), not $POCHTA_CONFIG.
    r = run_sendmail(inst, sendmail_link, ["-t", "-i", "-fbounces@example.test", "-C", str(inst.conf)], text,
                     env_conf=False)
    assert r.returncode == 0, r.stderr
    found = inst.wait_messages(marker, 2)
    assert len(found) == 2, "expected alice's and bob's (Bcc) copies: %s" % [str(p) for p, _ in found]
    expect = text.replace(b"\n", b"\r\n").replace(b"Bcc: bob@example.test\r\n", b"")
    for _path, stored in found:
        rp, received, rest = split_trace(stored)
        assert rp == "Return-Path: <bounces@example.test>"
        assert "from local (uid 0)" in received
        # Date, From and Message-ID were given: nothing is added.
        assert rest == expect, rest
        assert b"Bcc" not in stored


def test_command_line_recipient_and_dot_terminator(inst):
    """`pochta sendmail RCPT` without -i: a "." line ends the message (the
    old mail(1) convention); no header at all is fine."""
    marker = unique("dot")
    text = ("first line %s\n.\nnot part of the message\n" % marker).encode()
    r = subprocess.run([str(inst.pochta), "-c", str(inst.conf), "sendmail", "alice"], input=text,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    stored = stored_for(inst, marker)
    _rp, _received, rest = split_trace(stored)
    assert rest.endswith(("\r\nfirst line %s\r\n" % marker).encode()), rest
    assert b"not part of the message" not in stored
    # From is made from the login and its passwd full name ("root").
    assert re.match(rb"From: (\"root\" <root@[^\r\n]+>|root@[^\r\n]+)\r\nDate: [^\r\n]+\r\nMessage-ID: <[^\r\n]+>\r\n\r\n", rest), rest


def test_remote_recipient_is_queued_and_shown(inst, sendmail_link):
    marker = unique("remote")
    text = ("From: root\nTo: someone@elsewhere.test\nSubject: to the queue %s\n\nbody %s\n"
            % (marker, marker)).encode()
    r = run_sendmail(inst, sendmail_link, ["-t", "-i"], text)
    assert r.returncode == 0, r.stderr
    out = inst.queue_list()
    m = re.search(r"^([0-9A-Z]{16}) .*<root@%s> -> <someone@elsewhere\.test>" % re.escape(HOSTNAME), out, re.M)
    assert m, out
    qid = m.group(1)
    show = inst.cli("queue", "show", qid).stdout
    head, content = show.split(b"*** MESSAGE CONTENTS ***\n", 1)
    head = head.decode()
    assert "queue id:    %s" % qid in head
    assert "sender:      <root@%s>" % HOSTNAME in head
    assert re.search(r"recipients:\s+<someone@elsewhere\.test> (queued|deferred)", head), head
    assert "client:" in head and "uid=0" in head
    assert content.endswith(b"*** END OF MESSAGE ***\n")
    content = content[:-len(b"*** END OF MESSAGE ***\n")]
    assert content.startswith(b"Received: from local (uid 0)")
    assert content.endswith(text.replace(b"\n", b"\r\n")), content
    # An id that is not there is an error, not an empty listing.
    r = inst.cli("queue", "show", "0000000000000000", check=False)
    assert r.returncode == 1 and b"no queued message" in r.stderr
    inst.cli("queue", "delete", qid)


def test_unknown_local_user_is_ex_nouser(inst, sendmail_link):
    r = run_sendmail(inst, sendmail_link, ["nobody-here@example.test"], b"Subject: x\n\nx\n")
    assert r.returncode == EX_NOUSER, (r.returncode, r.stderr)
    assert b"550" in r.stderr and b"nobody-here@example.test" in r.stderr


def test_no_recipients_is_usage_error(inst, sendmail_link):
    r = run_sendmail(inst, sendmail_link, ["-t", "-i"], b"Subject: nobody\n\nx\n")
    assert r.returncode == EX_USAGE, r.stderr
    r = run_sendmail(inst, sendmail_link, ["-i"], b"x\n")
    assert r.returncode == EX_USAGE, r.stderr


def test_uid_comes_from_the_socket(make_instance):
    """Run as "nobody" through the default socket (the data directory is
    0751: passable, not listable, its mailboxes closed), and the daemon
    records uid 65534 from SO_PEERCRED."""
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no user nobody")
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    i = make_instance()
    assert i.data_dir.stat().st_mode & 0o777 == 0o751
    assert (i.data_dir / "mail").stat().st_mode & 0o007 == 0
    build = i.pochta.resolve()
    if not all(os.access(p, os.X_OK) for p in build.parents if str(p) != "/"):
        pytest.skip("build directory not reachable")
    marker = unique("nobody")
    r = subprocess.run(["setpriv", "--reuid=%d" % nobody, "--regid=%d" % nobody, "--clear-groups",
                        str(build), "-c", str(i.conf), "sendmail", "-t"],
                       input=("To: %s\nSubject: %s\n\nhi\n" % (ALICE, marker)).encode(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    stored = i.wait_message(marker)
    rp, received, _rest = split_trace(stored)
    assert rp == "Return-Path: <nobody@%s>" % HOSTNAME
    assert "from local (uid %d)" % nobody in received


def test_pochtad_down_is_ex_tempfail(make_instance):
    i = make_instance()
    sock = i.data_dir / "run" / "sendmail.sock"
    assert sock.is_socket()
    i.stop()
    assert not sock.exists(), "socket left behind after a clean stop"
    r = subprocess.run([str(i.pochta), "-c", str(i.conf), "sendmail", ALICE], input=b"Subject: x\n\nx\n",
                       capture_output=True, timeout=60)
    assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr)
    assert b"pochtad is not running" in r.stderr
    # A socket file left by a kill -9 is no obstacle: restart, submit again.
    i.start()
    i.kill9()
    assert sock.exists()
    r = subprocess.run([str(i.pochta), "-c", str(i.conf), "sendmail", ALICE], input=b"Subject: x\n\nx\n",
                       capture_output=True, timeout=60)
    assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr)
    i.start()
    marker = unique("after-restart")
    r = subprocess.run([str(i.pochta), "-c", str(i.conf), "sendmail", ALICE],
                       input=("Subject: %s\n\nx\n" % marker).encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    i.wait_message(marker)
