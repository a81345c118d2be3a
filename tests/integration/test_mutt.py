"""mutt against the real daemon, non-interactively: over IMAP with STARTTLS
it opens INBOX, moves one message to Archive and deletes another (the store
is checked with imaplib afterwards), and in batch mode it sends a message by
SMTP submission (STARTTLS + AUTH) that arrives byte for byte as mutt wrote
it (mutt's own Fcc copy is the reference)."""

import os
import pty
import re
import select
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import pochtatest
from pochtatest import ALICE, USERS, unique
from test_imap import connect, imap_ports
from test_imap import inst  # noqa: F401 (inst: one daemon per module)

MUTT = shutil.which("mutt")
pytestmark = pytest.mark.skipif(
    MUTT is None, reason="mutt is not installed (Debian package 'mutt'; .ci/run installs it)")


def server_cert_pem(inst):
    """The certificate the IMAP listener presents, for mutt to trust."""
    port = imap_ports(inst)[0]
    with socket.create_connection(("127.0.0.1", port), timeout=pochtatest.IO_TIMEOUT) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a STARTTLS\r\n")
        assert f.readline().startswith(b"a OK")
        ctx = pochtatest.tls_client_context()
        with ctx.wrap_socket(s) as t:
            return ssl.DER_cert_to_PEM_cert(t.getpeercert(True))


def muttrc(inst, tmp_path, extra=()):
    certs = tmp_path / "certs.pem"
    certs.write_text(server_cert_pem(inst))
    rc = tmp_path / "muttrc"
    lines = [
        'set imap_user="%s"' % ALICE,
        'set imap_pass="%s"' % USERS[ALICE],
        "set ssl_starttls=yes",
        "set ssl_force_tls=yes",
        'set certificate_file="%s"' % certs,
        # the test certificate is not issued for 127.0.0.1: trust it as a
        # known certificate (certificate_file) without the name check
        "set ssl_verify_host=no",
        'set folder="imap://127.0.0.1:%d/"' % imap_ports(inst)[0],
        'set spoolfile="+INBOX"',
        'set header_cache=""',
        'set message_cachedir=""',
        "set confirmappend=no",
        "set confirmcreate=no",
        "set delete=yes",
        "set quit=yes",
        "set move=no",
        "set wait_key=no",
        "set mail_check=0",
        "set timeout=5",
        "set imap_passive=yes",
        'set mbox_type=mbox',
        'set tmpdir="%s"' % tmp_path,
    ] + list(extra)
    rc.write_text("\n".join(lines) + "\n")
    return rc


def run_on_pty(argv, timeout=60):
    """mutt's interactive mode needs a terminal: give it a pseudo-terminal
    and read (and discard) the screen until it exits."""
    pid, fd = pty.fork()
    if pid == 0:
        env = dict(os.environ, TERM="vt100", HOME=os.environ.get("HOME", "/tmp"), LANG="C.UTF-8")
        os.execvpe(argv[0], argv, env)
    screen = b""
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                d = os.read(fd, 65536)
            except OSError:
                d = b""
            screen += d
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
        raise AssertionError("mutt did not finish; screen: %r" % screen[-2000:])
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen


def subjects(m, box):
    typ, data = m.select('"%s"' % box, readonly=True)
    assert typ == "OK"
    if int(data[0]) == 0:
        return []
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    return sorted(d[1].decode().strip().split(": ", 1)[1] for d in data if isinstance(d, tuple))


def test_mutt_imap_starttls_moves_and_deletes(inst, tmp_path):
    m = connect(inst)
    # a fresh INBOX: earlier messages out of the way
    m.select("INBOX")
    m.store("1:*", "+FLAGS", "(\\Deleted)")
    m.expunge()
    tag = unique("mutt")
    msgs = []
    for i, when in enumerate(("01-Jan-2024 10:00:00 +0000", "02-Jan-2024 10:00:00 +0000")):
        subj = "%s-%d" % (tag, i)
        msg = ("From: x@remote.test\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@t>\r\n\r\nbody %d\r\n"
               % (ALICE, subj, "Mon, %d Jan 2024 10:00:00 +0000" % (i + 1), subj, i)).encode()
        typ, _ = m.append("INBOX", None, '"%s"' % when, msg)
        assert typ == "OK"
        msgs.append(subj)
    archive_before = subjects(m, "Archive")
    m.logout()

    rc = muttrc(inst, tmp_path, ["set sort=date-sent"])
    # first message (oldest) -> Archive; the next one deleted; sync, quit
    code, screen = run_on_pty([MUTT, "-n", "-F", str(rc), "-f", "+INBOX",
                               "-e", "push '<save-message>=Archive<enter><next-undeleted><delete-message><sync-mailbox><quit>'"])
    assert code == 0, screen[-2000:]

    m = connect(inst)
    assert subjects(m, "INBOX") == [], "INBOX should be empty after move + delete"
    assert subjects(m, "Archive") == sorted(archive_before + [msgs[0]])
    # the moved message is whole in Archive
    m.select("Archive", readonly=True)
    typ, data = m.search(None, 'SUBJECT "%s"' % msgs[0])
    assert typ == "OK" and data[0].split(), data
    m.logout()


def test_mutt_sends_by_smtp_submission(inst, tmp_path):
    tag = unique("muttsend")
    record = tmp_path / "sent.mbox"
    rc = muttrc(inst, tmp_path, [
        'set smtp_url="smtp://%s@127.0.0.1:%d/"' % (ALICE.replace("@", "\\@"), inst.submission_port),
        'set smtp_pass="%s"' % USERS[ALICE],
        'set from="%s"' % ALICE,
        "set use_from=yes",
        'set record="%s"' % record,
        "set copy=yes",
        "set charset=utf-8",
        "set send_charset=us-ascii:utf-8",
    ])
    body = "Hello from mutt, %s.\nSecond line.\n" % tag
    p = subprocess.run([MUTT, "-n", "-F", str(rc), "-s", tag, "--", ALICE], input=body.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                       env=dict(os.environ, TERM="dumb", LANG="C.UTF-8"))
    assert p.returncode == 0, p.stdout
    stored = inst.wait_message(tag)
    # mutt's Fcc copy: the message as it went out (mbox "From " line and
    # mutt's status headers are local bookkeeping, not sent)
    sent = record.read_bytes()
    assert sent.startswith(b"From ")
    sent = sent.split(b"\n", 1)[1]
    head, _, rest = sent.partition(b"\n\n")
    head = b"\n".join(l for l in head.split(b"\n")
                      if not l.startswith((b"Status:", b"X-Status:", b"Content-Length:", b"Lines:")))
    sent = (head + b"\n\n" + rest).rstrip(b"\n") + b"\n"
    sent_crlf = sent.replace(b"\n", b"\r\n")
    # what pochta stored: its trace headers (Return-Path, Received) first
    # (pochtatest.split_trace), then exactly what mutt sent
    _rp, _received, message = pochtatest.split_trace(stored)
    # mutt stamps its Fcc copy with its own Date when it writes it, which
    # can be a second after the sent one: compare everything else exactly.
    date_re = re.compile(rb"^Date: [^\r\n]*\r\n", re.M)
    assert date_re.search(message) and date_re.search(sent_crlf), (message, sent_crlf)
    assert date_re.sub(b"", message, 1) == date_re.sub(b"", sent_crlf, 1), (message, sent_crlf)
    assert ("Subject: %s" % tag).encode() in message
    assert body.replace("\n", "\r\n").encode() in message
    # and the IMAP view has the same bytes
    m = connect(inst)
    m.select("INBOX", readonly=True)
    typ, data = m.search(None, 'SUBJECT "%s"' % tag)
    assert typ == "OK" and len(data[0].split()) == 1
    typ, data = m.fetch(data[0].split()[0], "(BODY.PEEK[])")
    assert data[0][1] == stored
    m.logout()
