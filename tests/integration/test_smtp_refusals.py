"""What the receiver must refuse: relaying, bad AUTH, oversized or
malformed messages, SMTP smuggling, STARTTLS command injection, and
clients that misbehave."""

import base64
import socket
import ssl
import struct
import time

import pytest

from pochtatest import (ALICE, BOB, USERS, Peer, check_code, check_stored, close_instance, deliver_raw, has_esc,
                        make_message, new_instance, split_trace, tls_client_context, unique)

SENDER = "sender@remote.test"
EXTERNAL = "someone@elsewhere.test"


# --- relaying (RFC 5321 3.6.2, RFC 6409 4.3) ---------------------------------

@pytest.mark.security
def test_rfc5321_3_6_2_no_open_relay_port25(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % EXTERNAL, 554, "5.7.1")
        # also with a local sender, and after STARTTLS
        p.expect("RSET", 250)
        p.starttls()
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % ALICE, 250)
        p.expect("RCPT TO:<%s>" % EXTERNAL, 554, "5.7.1")
        # source-routed and percent-hack forms are not a way around it
        for addr in ["<@example.test:%s>" % EXTERNAL, "<someone%%elsewhere.test@example.test>",
                     "<\"someone@elsewhere.test\"@example.test>"]:
            r = p.cmd("RCPT TO:" + addr)
            assert r.code >= 500, "%s: %r" % (addr, r)


@pytest.mark.security
def test_rfc5321_3_6_2_auth_on_port25_not_possible(instance):
    creds = base64.b64encode(("\0%s\0%s" % (ALICE, USERS[ALICE])).encode()).decode()
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.starttls()
        p.ehlo()
        r = p.cmd("AUTH PLAIN " + creds)
        assert r.code in (502, 503, 504, 530, 538), "AUTH on port 25: %r" % r
        p.expect("MAIL FROM:<%s>" % ALICE, 250)
        p.expect("RCPT TO:<%s>" % EXTERNAL, 554, "5.7.1")


@pytest.mark.security
def test_rfc6409_submission_requires_auth(instance):
    with Peer(instance.submission_port) as p:
        p.ehlo()
        p.starttls()
        p.ehlo()
        r = p.cmd("MAIL FROM:<%s>" % ALICE)
        check_code(r, 530, "5.7.0", "MAIL without AUTH on 587")
        # not even to a local user
        r = p.cmd("RCPT TO:<%s>" % BOB)
        assert r.code in (503, 530), r


@pytest.mark.security
def test_rfc8314_submissions_requires_auth(instance):
    with Peer(instance.submissions_port, tls=True) as p:
        p.ehlo()
        r = p.cmd("MAIL FROM:<%s>" % ALICE)
        if r.code == 250:
            r = p.cmd("RCPT TO:<%s>" % EXTERNAL)
            check_code(r, (530, 554), ("5.7.0", "5.7.1"), "relay on 465 without AUTH")
        else:
            check_code(r, 530, "5.7.0", "MAIL without AUTH on 465")


@pytest.mark.security
def test_rfc3207_4_auth_before_tls_on_submission(instance):
    creds = base64.b64encode(("\0%s\0%s" % (ALICE, USERS[ALICE])).encode()).decode()
    with Peer(instance.submission_port) as p:
        p.ehlo()
        r = p.cmd("AUTH PLAIN " + creds)
        assert (r.code == 538 and r.lines[0][4:].split(b" ")[0] == b"5.7.11") or \
            (r.code == 503 and has_esc(r.lines[0])), r
        r = p.cmd("AUTH LOGIN")
        assert r.code in (503, 538), "AUTH LOGIN before TLS must not start: %r" % r


def test_rfc6409_authenticated_relay_is_queued(make_instance):
    inst = make_instance()
    marker = unique()
    msg = make_message(marker, sender=ALICE, rcpt=EXTERNAL)
    qid = deliver_raw(inst.submission_port, msg, sender=ALICE, rcpts=(EXTERNAL,), starttls=True,
                      auth=(ALICE, USERS[ALICE]))
    out = inst.queue_list()
    assert qid in out, "queue id %s not in `pochta queue list`:\n%s" % (qid, out)
    assert EXTERNAL in out, out
    assert not inst.find(marker), "relayed mail was put in a local mailbox"
    inst.restart()
    out = inst.queue_list()
    assert qid in out and EXTERNAL in out, "queued message lost over a restart:\n%s" % out


# --- AUTH (RFC 4954) -----------------------------------------------------------

@pytest.fixture
def auth_instance(make_instance):
    return make_instance(extra_conf={"auth_max_failures": "3", "auth_failure_delay": "0s"})


def test_rfc4954_wrong_password(auth_instance):
    with Peer(auth_instance.submissions_port, tls=True) as p:
        p.ehlo()
        check_code(p.auth_plain(ALICE, "wrong"), 535, "5.7.8", "wrong password")
        check_code(p.auth_plain("nobody@example.test", "wrong"), 535, "5.7.8", "unknown user")
    with Peer(auth_instance.submissions_port, tls=True) as p:
        p.ehlo()
        check_code(p.auth_plain(ALICE, USERS[ALICE]), 235, "2.7.0", "right password")


def test_rfc4954_wrong_password_login(auth_instance):
    with Peer(auth_instance.submission_port) as p:
        p.ehlo()
        p.starttls()
        p.ehlo()
        check_code(p.auth_login(ALICE, USERS[BOB]), 535, "5.7.8", "AUTH LOGIN wrong password")


@pytest.mark.security
def test_rfc4954_failure_limit(auth_instance):
    for _ in range(3):
        with Peer(auth_instance.submissions_port, tls=True) as p:
            p.ehlo()
            check_code(p.auth_plain(ALICE, "wrong"), 535, "5.7.8", "wrong password")
    # now even the right password is refused for this client address
    try:
        with Peer(auth_instance.submissions_port, tls=True) as p:
            p.ehlo()
            r = p.auth_plain(ALICE, USERS[ALICE])
            assert r.code != 235, "AUTH succeeded after the failure limit"
            assert 400 <= r.code < 600, r
    except (EOFError, ConnectionResetError):
        pass   # closing the connection is refusing too
    with Peer(auth_instance.submission_port) as p:
        p.ehlo()
        p.starttls()
        p.ehlo()
        try:
            r = p.auth_login(BOB, USERS[BOB])
            assert r.code != 235, "AUTH LOGIN succeeded after the failure limit"
        except (EOFError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def lenient(request):
    """For AUTH tests that fail on purpose: no delay, no lock-out."""
    inst = new_instance(extra_conf={"auth_max_failures": "1000", "auth_failure_delay": "0s"})
    yield inst
    close_instance(inst)


def test_rfc4954_4_cancel(lenient):
    with Peer(lenient.submissions_port, tls=True) as p:
        p.ehlo()
        r = p.cmd("AUTH LOGIN")
        assert r.code == 334, r
        r = p.cmd("*")
        check_code(r, 501, None, "AUTH cancelled")
        assert has_esc(r.lines[0]), r
        check_code(p.auth_plain(ALICE, USERS[ALICE]), 235, "2.7.0", "AUTH after cancel")


def test_rfc4954_bad_base64(lenient):
    with Peer(lenient.submissions_port, tls=True) as p:
        p.ehlo()
        r = p.cmd("AUTH PLAIN !!!notbase64!!!")
        check_code(r, 501, "5.5.2", "bad base64")
        r = p.cmd("AUTH CRAM-NOPE")
        check_code(r, 504, "5.5.4", "unknown mechanism")


def test_rfc4616_authzid_other_user_refused(lenient):
    with Peer(lenient.submissions_port, tls=True) as p:
        p.ehlo()
        r = p.auth_plain(ALICE, USERS[ALICE], authzid=BOB)
        assert r.code >= 500, "alice may not act as bob: %r" % r
    with Peer(lenient.submissions_port, tls=True) as p:
        p.ehlo()
        check_code(p.auth_plain(ALICE, USERS[ALICE], authzid=ALICE), 235, "2.7.0", "authzid = authcid")


# --- recipients and sizes ------------------------------------------------------

def test_rfc5321_unknown_local_user(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        p.expect("RCPT TO:<%s>" % ALICE, 250)


def test_rfc1870_size_declared_too_big(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s> SIZE=%d" % (SENDER, 25 * 1024 * 1024 + 1), 552, "5.3.4")
        # 20 digits is the longest size-value (RFC 1870) and overflows 64 bits
        p.expect("MAIL FROM:<%s> SIZE=99999999999999999999" % SENDER, 552, "5.3.4")
        p.expect("MAIL FROM:<%s> SIZE=%d" % (SENDER, 25 * 1024 * 1024), 250)
        p.expect("RSET", 250)
        r = p.cmd("MAIL FROM:<%s> SIZE=abc" % SENDER)
        assert r.code in (501, 555), r


@pytest.fixture(scope="module")
def small(request):
    inst = new_instance(extra_conf={"max_message_size": "100k"})
    yield inst
    close_instance(inst)


def test_rfc1870_data_over_limit(small):
    marker = unique()
    msg = make_message(marker, body=("y" * 78 + "\r\n") * 1400)      # ~112 kB
    with Peer(small.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        r = p.data(msg)
        check_code(r, 552, "5.3.4", "DATA over max_message_size")
        p.expect("NOOP", 250)
        # the session is still usable
        m2 = unique()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        check_code(p.data(make_message(m2)), 250, None, "small message after a refused one")
    small.assert_not_stored(marker)
    small.wait_message(m2)


def test_rfc1870_data_at_limit(small):
    marker = unique()
    head = make_message(marker, body="")
    body = b""
    while len(head) + len(body) + 80 <= 100 * 1024:
        body += b"z" * 78 + b"\r\n"
    msg = head + body
    deliver_raw(small.smtp_port, msg)
    check_stored(small.wait_message(marker), msg, SENDER, ALICE)


def test_rfc3030_bdat_over_limit(small):
    marker = unique()
    chunk = make_message(marker, body="q" * 60000 + "\r\n")[:60000]
    with Peer(small.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        p.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        check_code(p.reply(), 250, None, "first BDAT")
        p.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        check_code(p.reply(), 552, "5.3.4", "BDAT over max_message_size")
        p.expect("RSET", 250)
        p.expect("NOOP", 250)
    small.assert_not_stored(marker)


def test_rfc5321_4_5_3_1_8_recipient_limit(instance):
    marker = unique()
    msg = make_message(marker)
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        for i in range(1, 101):
            p.expect("RCPT TO:<alice+r%d@example.test>" % i, 250)
        p.expect("RCPT TO:<alice+r101@example.test>", 452, "4.5.3")
        r = p.data(msg)
        check_code(r, 250, None, "DATA with 100 recipients")
    found = instance.wait_messages(marker, 1, timeout=30)
    time.sleep(1)
    found = instance.find(marker)
    fors = set()
    for _p, stored in found:
        _rp, received, rest = split_trace(stored)
        assert rest == msg
        assert "alice+r101@" not in received, "the 101st recipient got the message"
        for i in range(1, 101):
            if "for <alice+r%d@example.test>" % i in received:
                fors.add(i)
    assert len(found) in (1, 100), "expected one copy per recipient (100) or one merged copy: %d" % len(found)
    if len(found) == 100:
        assert fors == set(range(1, 101))


def test_rfc5321_4_5_3_1_6_overlong_text_line(instance):
    marker = unique()
    msg = make_message(marker, body="short\r\n" + "L" * 1198 + "\r\nafter\r\n")
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        r = p.data(msg)
        assert 500 <= r.code < 600 and has_esc(r.lines[0]), "1200-byte line accepted: %r" % r
        p.expect("NOOP", 250)
        assert not p.replies_within(0.5), "rest of the data was read as commands"
    instance.assert_not_stored(marker)


@pytest.mark.security
def test_rfc5321_nul_in_data(instance):
    marker = unique()
    msg = make_message(marker, body="before\r\nnul \0 here\r\nafter\r\n")
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        r = p.data(msg)
        assert 500 <= r.code < 600 and has_esc(r.lines[0]), "NUL byte accepted: %r" % r
        p.expect("NOOP", 250)
    instance.assert_not_stored(marker)


@pytest.mark.security
def test_nul_in_command(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        r = p.cmd(b"MAIL FROM:<a\0b@remote.test>")
        assert 500 <= r.code < 600, r
        p.expect("NOOP", 250)


def test_rfc5321_4_4_mail_loop(instance):
    marker = unique()
    hops = b"".join(b"Received: from hop%d.test by hop%d.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i + 1)
                    for i in range(60))
    msg = hops + make_message(marker)
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        r = p.data(msg)
        check_code(r, 554, "5.4.6", "60 Received headers (max_received_headers = 50)")
    instance.assert_not_stored(marker)


# --- SMTP smuggling ---------------------------------------------------------------

SMUGGLE_ENDINGS = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CRLF.CR": b"\r\n.\r",
    "CR.CRLF": b"\r.\r\n",
}


@pytest.mark.security
@pytest.mark.parametrize("name", list(SMUGGLE_ENDINGS))
def test_smtp_smuggling(instance, name):
    """Only CRLF.CRLF ends DATA: a bogus end-of-data sequence must not let
    the rest of the body run as a second transaction."""
    m1, m2 = unique("outer"), unique("smuggled")
    ending = SMUGGLE_ENDINGS[name]
    payload = (b"From: <good@remote.test>\r\nSubject: smuggling %s\r\nMessage-ID: <%s@t>\r\n\r\nbody %s"
               % (name.encode(), m1.encode(), m1.encode())
               + ending
               + b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % ALICE.encode()
               + b"From: <ceo@example.test>\r\nSubject: smuggled\r\n\r\nsmuggled %s\r\n.\r\n" % m2.encode())
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<good@remote.test>", 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        assert p.cmd("DATA").code == 354
        p.send(payload)
        replies = p.replies_within(2)
        assert len(replies) == 1, "several replies to one DATA: smuggled commands were run: %r" % replies
        assert replies[0].code in (250,) or 500 <= replies[0].code < 600, replies
        accepted = replies[0].code == 250
        p.expect("NOOP", 250)
    time.sleep(0.5)
    outer = instance.find(m1)
    smuggled = instance.find(m2)
    for _p, stored in outer + smuggled:
        assert not stored.startswith(b"Return-Path: <evil@x.test>"), "smuggled message stored: %r" % stored[:300]
    if accepted:
        outer = instance.wait_messages(m1, 1)
        assert len(outer) == 1, "expected one message, found %d" % len(outer)
        assert {p for p, _ in smuggled} <= {p for p, _ in outer}, \
            "the smuggled part was stored as a message of its own"
        rp, _rec, _rest = split_trace(outer[0][1])
        assert rp == "Return-Path: <good@remote.test>"
    else:
        assert not outer and not smuggled, "refused message was stored"


# --- STARTTLS injection (CVE-2011-0411) ------------------------------------------

@pytest.mark.security
@pytest.mark.parametrize("which", ["smtp", "submission"])
def test_rfc3207_starttls_command_injection(instance, which):
    port = instance.smtp_port if which == "smtp" else instance.submission_port
    with Peer(port) as p:
        p.ehlo()
        p.send(b"STARTTLS\r\nNOOP\r\n")
        r = p.reply()
        if r.code != 220:
            assert 400 <= r.code < 600, r
            return
        assert not p.buf, "plaintext reply after 220: %r" % p.buf
        try:
            p.sock = tls_client_context().wrap_socket(p.sock)
        except ssl.SSLError as e:
            pytest.fail("TLS handshake failed after pipelined STARTTLS (was the NOOP answered in "
                        "plaintext?): %s" % e)
        p.send(b"EHLO client.remote.test\r\n")
        r = p.reply()
        assert r.code == 250 and not has_esc(r.lines[0]) and len(r.lines) > 1, \
            "first reply inside TLS is not the EHLO answer (injected NOOP was run): %r" % r
        p.expect("NOOP", 250)
        assert not p.replies_within(0.5)


def test_rfc3207_starttls_twice(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.starttls()
        p.ehlo()
        r = p.cmd("STARTTLS")
        check_code(r, 503, "5.5.1", "second STARTTLS")


def test_rfc3207_starttls_with_argument(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        r = p.cmd("STARTTLS now")
        check_code(r, 501, ("5.5.4", "5.5.2"), "STARTTLS with argument")


def test_rfc3207_4_2_state_reset_after_starttls(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.starttls()
        # the EHLO state is forgotten: MAIL before a new EHLO is out of order
        p.expect("MAIL FROM:<%s>" % SENDER, 503, "5.5.1")


# --- misbehaving clients -----------------------------------------------------------

def test_disconnect_mid_data(make_instance):
    inst = make_instance()
    warm = unique()
    deliver_raw(inst.smtp_port, make_message(warm))
    inst.wait_message(warm)
    before = inst.files_outside_mail_and_queue()
    for mode in ("data", "bdat", "data-reset"):
        marker = unique()
        msg = make_message(marker, body="z" * 200000 + "\r\n")
        p = Peer(inst.smtp_port)
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        if mode == "bdat":
            p.send(b"BDAT %d LAST\r\n" % (len(msg) + 10) + msg)
        else:
            assert p.cmd("DATA").code == 354
            p.send(msg)
        if mode == "data-reset":
            p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        p.close()
        inst.assert_not_stored(marker, settle=1.0)
    inst.assert_alive()
    after = inst.files_outside_mail_and_queue()
    assert after <= before, "left-over files after aborted transfers: %s" % sorted(after - before)
    m = unique()
    deliver_raw(inst.smtp_port, make_message(m))
    inst.wait_message(m)


def test_pipelining_flood_does_not_block(instance):
    # A client that sends many commands and never reads its replies must
    # not stall the server for others.
    flood = socket.create_connection(("127.0.0.1", instance.smtp_port), timeout=10)
    try:
        flood.sendall(b"EHLO flood.test\r\n")
        try:
            flood.settimeout(3)
            for _ in range(2000):
                flood.sendall(b"HELP\r\n" * 50)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        marker = unique()
        deliver_raw(instance.smtp_port, make_message(marker))
        instance.wait_message(marker)
    finally:
        flood.close()
    instance.assert_alive()


def test_concurrent_sessions(instance):
    import threading
    markers = [unique() for _ in range(20)]
    errors = []

    def one(m):
        try:
            deliver_raw(instance.smtp_port, make_message(m))
        except Exception as e:       # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(m,)) for m in markers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for m in markers:
        instance.wait_message(m)


def test_tls_garbage_handshake(instance):
    # a broken TLS client on 465 must not take the daemon down
    s = socket.create_connection(("127.0.0.1", instance.submissions_port), timeout=5)
    s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\0" * 100)
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.sock.sendall(b"STARTTLS\r\n")
        assert p.reply().code == 220
        p.sock.sendall(b"this is not TLS\r\n" * 10)
        try:
            p.sock.recv(100)
        except OSError:
            pass
    marker = unique()
    deliver_raw(instance.submissions_port, make_message(marker, sender=ALICE), sender=ALICE, tls=True,
                auth=(ALICE, USERS[ALICE]))
    instance.wait_message(marker)
