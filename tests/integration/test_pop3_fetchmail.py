"""fetchmail (Debian's 6.4) against a real pochtad: POP3 with STLS and pop3s,
delivering each message to a local MDA that writes it to a file of its own.
Mail goes in over SMTP (smtplib) and must come out of fetchmail byte for
byte as pochta stored it.  fetchmail deletes what it fetched unless told
--keep; both are checked with a POP3 STAT afterwards.

fetchmail is run with "no rewrite", "no stripcr" and "set invisible" so
that it hands the MDA exactly what RETR/TOP gave it (no Received header of
its own, CRLF kept), and with "no sslcertck" because the instance's
certificate is self-signed.  "sslproto TLS1.2+" without "ssl" makes STLS
mandatory: fetchmail gives up rather than log in over plaintext."""

import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile

import pytest

from pochtatest import IO_TIMEOUT, close_instance, make_message, unique
from test_pop3 import PASSWORD, SENDER, Pop, new_user, pop3_ports, start_pop3_instance

pytestmark = pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")

FETCHMAIL_TIMEOUT = 60

# fetchmail's exit codes (fetchmail(1), EXIT CODES)
FM_OK, FM_NOMAIL = 0, 1


@pytest.fixture(scope="module")
def inst():
    i = start_pop3_instance()
    yield i
    close_instance(i)


class Fetchmail:
    """A private fetchmail home: rcfile (mode 0600, as fetchmail insists),
    .fetchids, pid file, and an MDA writing one file per message into out/."""

    def __init__(self):
        self.home = tempfile.mkdtemp(prefix="pochta-fm-")
        os.chmod(self.home, 0o700)
        self.out = os.path.join(self.home, "out")
        os.mkdir(self.out)
        self.mda = os.path.join(self.home, "mda.sh")
        with open(self.mda, "w") as f:
            # Exit 75 (EX_TEMPFAIL) on any failure so fetchmail keeps the
            # message on the server instead of deleting it.
            f.write('#!/bin/sh\nf=$(mktemp "%s/msg.XXXXXXXX") || exit 75\ncat > "$f" || exit 75\n' % self.out)
        os.chmod(self.mda, 0o755)
        self.runs = []

    def close(self):
        shutil.rmtree(self.home, ignore_errors=True)

    def run(self, port, user, ssl=False, keep=False, fetchall=False, uidl=False):
        """One poll; return (exit code, verbose transcript)."""
        rc = os.path.join(self.home, "fetchmailrc")
        opts = ["no rewrite", "no stripcr", "no sslcertck"]
        opts.append("ssl" if ssl else 'sslproto "TLS1.2+"')
        opts.append("keep" if keep else "no keep")
        if fetchall:
            opts.append("fetchall")
        with open(rc, "w") as f:
            f.write("set no bouncemail\nset no syslog\nset invisible\n"
                    "poll 127.0.0.1 protocol POP3 service %d auth password timeout 20%s\n"
                    '  user "%s" there with password "%s"\n'
                    '  mda "%s"\n'
                    "  %s\n" % (port, " uidl" if uidl else "", user, PASSWORD, self.mda, " ".join(opts)))
        os.chmod(rc, 0o600)
        env = dict(os.environ, FETCHMAILHOME=self.home, HOME=self.home, LC_ALL="C",
                   FETCHMAILUSER=pwd.getpwuid(os.getuid()).pw_name)
        r = subprocess.run(["fetchmail", "-f", rc, "-v", "--nodetach", "--pidfile",
                            os.path.join(self.home, "fetchmail.pid")],
                           env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=FETCHMAIL_TIMEOUT)
        log = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.runs.append(log)
        return r.returncode, log

    def take(self):
        """The messages the MDA wrote since the last call (bytes, sorted)."""
        got = []
        for fn in sorted(os.listdir(self.out)):
            p = os.path.join(self.out, fn)
            with open(p, "rb") as f:
                got.append(f.read())
            os.unlink(p)
        return sorted(got)


@pytest.fixture
def fm():
    f = Fetchmail()
    yield f
    f.close()


def deliver(inst, rcpt, body):
    """Send over SMTP; check pochta stored exactly what was sent below its
    trace headers; return the stored bytes (what fetchmail must hand on)."""
    marker = unique("fm")
    msg = make_message(marker, sender=SENDER, rcpt=rcpt, body=body)
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=IO_TIMEOUT) as s:
        s.sendmail(SENDER, [rcpt], msg)
    stored = inst.wait_message(marker)
    assert stored.endswith(msg), "stored message does not end with what was sent"
    return stored


BODIES = [
    "short one\r\n",
    # Lines that are dot-stuffed on the wire, and a lone "." line that
    # would end the reply early if the server forgot to stuff it.
    ".leading dot\r\n..two dots\r\n.\r\nafter the lone dot\r\n",
    # UTF-8 body, 8-bit through SMTP and POP3 untouched.
    "Gr\u00fc\u00dfe aus \u041c\u043e\u0441\u043a\u0432\u0430\r\n" * 20,
    # ~300 KB: several reads and writes on both sides.
    "".join("line %06d of a larger message, padded to make it longer.....\r\n" % i for i in range(5000)),
]


def stat(inst, user):
    with Pop(pop3_ports(inst)[1], tls=True) as p:
        p.login(user)
        r = p.ok("STAT")
        p.ok("QUIT")
    n, size = r.split()[1:3]
    return int(n), int(size)


def assert_ran(code, log, expect):
    assert code == expect, "fetchmail exited %d (expected %d):\n%s" % (code, expect, log[-6000:])
    assert "Server certificate" in log or "SSL/TLS: using protocol" in log, \
        "fetchmail did not use TLS:\n%s" % log[-6000:]


def test_fetchmail_stls_fetches_byte_for_byte_then_deletes(inst, fm):
    user = new_user(inst, "fm")
    stored = sorted(deliver(inst, user, b) for b in BODIES)
    p_port, _ = pop3_ports(inst)

    code, log = fm.run(p_port, user)
    assert_ran(code, log, FM_OK)
    assert "POP3> STLS" in log and "upgrade to TLS succeeded" in log, log[-6000:]
    # The password went over TLS only: nothing before STLS sent it.
    assert log.index("POP3> STLS") < log.index("POP3> PASS"), log[-6000:]
    got = fm.take()
    assert len(got) == len(stored), "fetchmail delivered %d of %d messages:\n%s" % (
        len(got), len(stored), log[-6000:])
    for g, s in zip(got, stored):
        assert g == s, "fetchmail's copy differs from the stored message:\nstored %r\nfetched %r" % (
            s[:600], g[:600])

    # fetchmail's default is to delete what it fetched, at QUIT.
    assert stat(inst, user) == (0, 0)
    code, log = fm.run(p_port, user)
    assert_ran(code, log, FM_NOMAIL)
    assert fm.take() == []
    assert "No mail for" in log, log[-3000:]


def test_fetchmail_pop3s_keep_leaves_messages(inst, fm):
    user = new_user(inst, "fk")
    stored = sorted(deliver(inst, user, b) for b in BODIES[:3])
    total = sum(len(s) for s in stored)
    _, ps_port = pop3_ports(inst)

    code, log = fm.run(ps_port, user, ssl=True, keep=True)
    assert_ran(code, log, FM_OK)
    assert "POP3> STLS" not in log, "STLS sent on the implicit-TLS port:\n%s" % log[-6000:]
    assert fm.take() == stored
    assert "DELE" not in log, log[-6000:]
    assert stat(inst, user) == (len(stored), total)

    # With UIDL tracking, a second --keep poll sees nothing new: the UIDs
    # pochta gives out are stable across sessions.
    code, log = fm.run(ps_port, user, ssl=True, keep=True, uidl=True)
    assert_ran(code, log, FM_OK)
    assert fm.take() == stored          # first UIDL poll: all are new to it
    code, log = fm.run(ps_port, user, ssl=True, keep=True, uidl=True)
    assert_ran(code, log, FM_NOMAIL)
    assert fm.take() == []
    assert stat(inst, user) == (len(stored), total)

    # A new message is the only one the next UIDL poll fetches ...
    extra = deliver(inst, user, "one more\r\n")
    code, log = fm.run(ps_port, user, ssl=True, keep=True, uidl=True)
    assert_ran(code, log, FM_OK)
    assert fm.take() == [extra]

    # ... and fetchall without keep takes everything and deletes it.
    code, log = fm.run(ps_port, user, ssl=True, fetchall=True)
    assert_ran(code, log, FM_OK)
    assert fm.take() == sorted(stored + [extra])
    assert stat(inst, user) == (0, 0)
