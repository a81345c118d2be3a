"""Smart host (relay_host): instance A sends everything to instance B's
submission port with STARTTLS and AUTH, as it would to an ISP's relay.
B's certificate is self-signed, so relay_tls=require delivers while the
default require-verify refuses and keeps the mail queued.
"""

import os
import re
import time

import pytest

from pochtatest import ALICE, close_all, new_instance, unique, make_message, split_trace, strip_comments
from test_outbound import CAROL, CAROL_PW, REMOTE, DNSServer, _set_conf, submit, wait_queue_empty

WAIT = 25


def _relay_world(relay_tls, password=CAROL_PW):
    dns = DNSServer()               # knows nothing: the relay needs no DNS
    b = new_instance(start=False)
    text = b.conf.read_text()
    text = re.sub(r"(?m)^domains = (.*)$", r"domains = \1 " + REMOTE, text)
    b.conf.write_text(text)
    _set_conf(b, sender_login_match="no")     # carol relays mail from alice@example.test
    b.add_user(CAROL, CAROL_PW)
    b.start()
    a = new_instance(start=False)
    pw = a.dir / "relay-password"
    pw.write_text(password + "\n")
    # Private to whoever starts the daemon (root in CI, which then drops to
    # run_as): pochtad reads it before it drops privileges, like its TLS key.
    os.chmod(pw, 0o600)
    _set_conf(a, dns_server="127.0.0.1:%d" % dns.port, relay_host="[127.0.0.1]:%d" % b.submission_port,
              relay_auth_user=CAROL, relay_auth_password_file="relay-password", relay_tls=relay_tls,
              queue_retry_min="1s", queue_retry_max="2s", outbound_connect_timeout="3s",
              outbound_timeout="10s", outbound_data_timeout="10s")
    a.start()
    return a, b, dns


@pytest.fixture
def relay(request):
    a, b, dns = _relay_world(*request.param)
    try:
        yield a, b
    finally:
        close_all(a, b, dns)


@pytest.mark.parametrize("relay", [("require",)], indirect=True)
def test_relay_host_auth_over_starttls_delivers(relay):
    a, b = relay
    marker = unique("relay")
    msg = make_message(marker, sender=ALICE, rcpt=CAROL)
    submit(a, [CAROL], msg)
    stored = b.wait_message(marker, timeout=WAIT)
    _rp, received_b, _rest = split_trace(stored)
    # B saw TLS and a login (RFC 3848: ESMTPSA)
    assert re.search(r"\bwith ESMTPSA\b", strip_comments(received_b)), received_b
    wait_queue_empty(a)
    log = a.stderr()
    assert "status=sent" in log and "relay=127.0.0.1" in log, log[-2000:]


@pytest.mark.parametrize("relay", [("require-verify",)], indirect=True)
def test_relay_require_verify_refuses_self_signed_and_keeps_mail(relay):
    a, b = relay
    marker = unique("verify")
    submit(a, [CAROL], make_message(marker, sender=ALICE, rcpt=CAROL))
    log = a.wait_log("certificate verification failed", WAIT)
    assert "certificate verification failed" in log, log[-3000:]
    assert "stays queued" in log
    assert "status=deferred" in log
    out = a.queue_list()
    assert CAROL in out and "queue is empty" not in out, out
    time.sleep(1)
    assert b.find(marker) == []


@pytest.mark.parametrize("relay", [("require", "wrong-password")], indirect=True)
def test_rfc4954_535_is_temporary_and_logged(relay):
    a, b = relay
    marker = unique("badauth")
    submit(a, [CAROL], make_message(marker, sender=ALICE, rcpt=CAROL))
    log = a.wait_log("refused the credentials", WAIT)
    assert "refused the credentials" in log and CAROL in log, log[-3000:]
    assert "wrong-password" not in log
    time.sleep(1)
    assert "status=bounced" not in a.stderr()
    assert "queue is empty" not in a.queue_list()
    assert not [m for _p, m in a.find(marker) if m.startswith(b"Return-Path: <>")], "a 535 must not bounce"
