"""Mail accepted by the SMTP receiver lands in the local mailbox, byte for
byte, under a Return-Path and a Received trace header (RFC 5321 4.4)."""

import base64
import hashlib
import os
import smtplib
import ssl

import pytest

from pochtatest import (ALICE, BOB, USERS, Peer, check_code, check_stored, deliver_raw, make_message,
                        queue_id_of, split_trace, tls_client_context, unique)

SENDER = "sender@remote.test"


def _smtplib_send(client, content, sender=SENDER, rcpts=(ALICE,), options=()):
    code, _ = client.mail(sender, list(options))
    assert code == 250
    for r in rcpts:
        code, text = client.rcpt(r)
        assert code == 250, (r, code, text)
    code, text = client.data(content)
    assert code == 250, (code, text)
    return queue_id_of(text.decode())


def test_rfc5321_plain_delivery_smtplib(instance):
    marker = unique()
    msg = make_message(marker)
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="client.remote.test", timeout=15) as s:
        s.ehlo()
        qid = _smtplib_send(s, msg)
    stored = instance.wait_message(marker)
    check_stored(stored, msg, SENDER, ALICE, helo="client.remote.test", proto="ESMTP", queue_id=qid)


def test_rfc3848_helo_is_smtp(instance):
    marker = unique()
    msg = make_message(marker)
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="old.remote.test", timeout=15) as s:
        s.helo()
        qid = _smtplib_send(s, msg)
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE, helo="old.remote.test", proto="SMTP",
                 queue_id=qid)


def test_rfc3207_starttls_port25(instance):
    marker = unique()
    msg = make_message(marker)
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="tls.remote.test", timeout=15) as s:
        s.ehlo()
        s.starttls(context=tls_client_context())
        s.ehlo()
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        qid = _smtplib_send(s, msg)
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE, helo="tls.remote.test", proto="ESMTPS",
                 queue_id=qid)


def test_rfc3207_certificate_is_instance_cert(instance):
    pem = (instance.dir / "tls" / "cert.pem").read_text()
    want = ssl.PEM_cert_to_DER_cert(pem[:pem.index("-----END CERTIFICATE-----") + 25])
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.starttls()
        assert p.sock.getpeercert(binary_form=True) == want
    with Peer(instance.submissions_port, tls=True) as p:
        assert p.sock.getpeercert(binary_form=True) == want
    # and the certificate names the host
    import subprocess
    txt = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName", "-in",
                          str(instance.dir / "tls" / "cert.pem")], capture_output=True, text=True).stdout
    assert "mx.example.test" in txt, txt


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_rfc8314_submissions_auth(instance, mech):
    marker = unique()
    msg = make_message(marker, sender=ALICE, rcpt=BOB)
    with smtplib.SMTP_SSL("127.0.0.1", instance.submissions_port, local_hostname="mua.remote.test",
                          context=tls_client_context(), timeout=15) as s:
        s.ehlo()
        code, text = _auth(s, mech, ALICE, USERS[ALICE])
        assert code == 235, (code, text)
        qid = _smtplib_send(s, msg, sender=ALICE, rcpts=(BOB,))
    check_stored(instance.wait_message(marker), msg, ALICE, BOB, helo="mua.remote.test", proto="ESMTPSA",
                 queue_id=qid)


def _auth(s, mech, user, password):
    s.user, s.password = user, password
    try:
        return s.auth(mech, getattr(s, "auth_" + mech.lower()))
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code, e.smtp_error


def test_rfc6409_submission_starttls_auth(instance):
    marker = unique()
    msg = make_message(marker, sender=BOB, rcpt=ALICE)
    with smtplib.SMTP("127.0.0.1", instance.submission_port, local_hostname="mua.remote.test", timeout=15) as s:
        s.ehlo()
        s.starttls(context=tls_client_context())
        s.ehlo()
        code, _ = _auth(s, "PLAIN", BOB, USERS[BOB])
        assert code == 235
        qid = _smtplib_send(s, msg, sender=BOB, rcpts=(ALICE,))
    check_stored(instance.wait_message(marker), msg, BOB, ALICE, helo="mua.remote.test", proto="ESMTPSA",
                 queue_id=qid)


def test_rfc5321_3_3_multiple_recipients_one_copy_each(instance):
    marker = unique()
    msg = make_message(marker)
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, local_hostname="client.remote.test", timeout=15) as s:
        s.ehlo()
        qid = _smtplib_send(s, msg, rcpts=(ALICE, BOB))
    found = instance.wait_messages(marker, 2)
    assert len(found) == 2, [str(p) for p, _ in found]
    rcpts = set()
    for _path, stored in found:
        _rp, received, _rest = split_trace(stored)
        rcpt = ALICE if "for <%s>" % ALICE in received else BOB
        rcpts.add(rcpt)
        check_stored(stored, msg, SENDER, rcpt, helo="client.remote.test", proto="ESMTP", queue_id=qid)
    assert rcpts == {ALICE, BOB}
    assert _mailbox_root(instance, found[0][0]) != _mailbox_root(instance, found[1][0]), \
        "alice's and bob's copies are in the same mailbox: %s" % [str(p) for p, _ in found]


def test_rfc5321_null_reverse_path(instance):
    marker = unique()
    msg = make_message(marker, sender="mailer-daemon@remote.test")
    qid = deliver_raw(instance.smtp_port, msg, sender="")
    check_stored(instance.wait_message(marker), msg, "", ALICE, proto="ESMTP", queue_id=qid)


def test_rfc5321_local_part_case_and_domain_case(instance):
    marker = unique()
    msg = make_message(marker)
    deliver_raw(instance.smtp_port, msg, rcpts=("alice@EXAMPLE.TEST",))
    instance.wait_message(marker)


def test_rfc2920_pipelining(instance):
    m1, m2 = unique(), unique()
    msg1, msg2 = make_message(m1), make_message(m2, rcpt=BOB)
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.send("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
               % (SENDER, ALICE, BOB))
        codes = [p.reply().code for _ in range(5)]
        assert codes == [250, 250, 550, 250, 354], codes
        p.send(msg1 + b".\r\nRSET\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER.encode(), BOB.encode()))
        r = p.reply()
        assert r.code == 250, r
        qid1 = queue_id_of(r.text)
        codes = [p.reply().code for _ in range(4)]
        assert codes == [250, 250, 250, 354], codes
        p.send(msg2 + b".\r\nNOOP\r\nQUIT\r\n")
        r = p.reply()
        assert r.code == 250, r
        qid2 = queue_id_of(r.text)
        assert [p.reply().code, p.reply().code] == [250, 221]
    assert qid1 != qid2
    found = instance.wait_messages(m1, 2)
    assert len(found) == 2
    for _p, stored in found:
        _rp, rec, _ = split_trace(stored)
        check_stored(stored, msg1, SENDER, ALICE if ALICE in rec else BOB, queue_id=qid1)
    check_stored(instance.wait_message(m2), msg2, SENDER, BOB, queue_id=qid2)


def test_rfc3030_bdat_chunks(instance):
    marker = unique()
    msg = make_message(marker, body="line one\r\nline two\r\n" + "x" * 500 + "\r\n.\r\n..\r\nend\r\n")
    # cut inside a CRLF, inside a header, and at a dot line: BDAT is not dot-stuffed
    cuts = [0, 17, msg.index(b"\r\n") + 1, msg.index(b"\r\n.\r\n") + 2, len(msg) - 3, len(msg)]
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        for a, b in zip(cuts, cuts[1:]):
            if a == b:
                continue
            p.send(b"BDAT %d\r\n" % (b - a) + msg[a:b])
            check_code(p.reply(), 250, None, "BDAT chunk")
        r = p.cmd("BDAT 0 LAST")
        check_code(r, 250, None, "BDAT 0 LAST")
        qid = queue_id_of(r.text)
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE, proto="ESMTP", queue_id=qid)


def test_rfc3030_bdat_pipelined_last(instance):
    marker = unique()
    msg = make_message(marker)
    half = len(msg) // 2
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.send(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nBDAT %d\r\n%sBDAT %d LAST\r\n%sNOOP\r\n" % (
            SENDER.encode(), ALICE.encode(), half, msg[:half], len(msg) - half, msg[half:]))
        codes = [p.reply() for _ in range(5)]
        assert [r.code for r in codes] == [250] * 5, codes
        qid = queue_id_of(codes[3].text)
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE, queue_id=qid)


def test_rfc3030_binarymime(instance):
    marker = unique()
    body = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n" + os.urandom(64).replace(
        b"\0", b"\1").replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
    msg = make_message(marker, body=b"binary follows\r\n" + body)
    msg = msg.replace(b"\r\n\r\n", b"\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
                      b"Content-Transfer-Encoding: binary\r\n\r\n", 1)
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s> BODY=BINARYMIME" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        p.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        r = p.reply()
        check_code(r, 250, None, "BDAT LAST")
        # DATA is not allowed with BINARYMIME (RFC 3030 3)
        p.expect("MAIL FROM:<%s> BODY=BINARYMIME" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        check_code(p.cmd("DATA"), 503, "5.5.1", "DATA after BODY=BINARYMIME")
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE, queue_id=queue_id_of(r.text))


def test_rfc5321_4_5_2_dot_stuffing(instance):
    marker = unique()
    wire = (b"Subject: dots\r\nMessage-ID: <%s@t>\r\n\r\n..leading dot\r\n...\r\n..\r\n..x.\r\nend . \r\n"
            % marker.encode())
    want = (b"Subject: dots\r\nMessage-ID: <%s@t>\r\n\r\n.leading dot\r\n..\r\n.\r\n.x.\r\nend . \r\n"
            % marker.encode())
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        r = p.data(wire, dotstuff=False)
        check_code(r, 250, None, "end of DATA")
    check_stored(instance.wait_message(marker), want, SENDER, ALICE, queue_id=queue_id_of(r.text))


def test_rfc6152_8bitmime(instance):
    marker = unique()
    msg = make_message(marker, body="Gr\u00fc\u00dfe aus M\u00fcnchen \u2014 \u043f\u043e\u0447\u0442\u0430\r\n")
    msg = msg.replace(b"\r\n\r\n", b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      b"Content-Transfer-Encoding: 8bit\r\n\r\n", 1)
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s> BODY=8BITMIME" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        r = p.data(msg)
        check_code(r, 250, None, "end of DATA")
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE, queue_id=queue_id_of(r.text))


def test_rfc6531_smtputf8_sender(instance):
    marker = unique()
    sender = "\u00fc@example.test"
    msg = make_message(marker, sender=sender, subject="\u00dcnicode \u2603")
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s> SMTPUTF8" % sender, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        r = p.data(msg)
        check_code(r, 250, None, "end of DATA")
    stored = instance.wait_message(marker)
    check_stored(stored, msg, sender, ALICE, queue_id=queue_id_of(r.text))
    instance.utf8_received = split_trace(stored)[1]


def test_rfc6531_3_7_3_received_with_utf8smtp(instance):
    received = getattr(instance, "utf8_received", None)
    if received is None:
        pytest.fail("depends on test_rfc6531_smtputf8_sender, which failed")
    assert " with UTF8SMTP" in received, "SMTPUTF8 mail should be 'with UTF8SMTP': %s" % received


def test_rfc5321_4_5_3_1_6_longest_text_line(instance):
    marker = unique()
    msg = make_message(marker, body="a" * 998 + "\r\n" + "b" * 998 + "\r\n")
    deliver_raw(instance.smtp_port, msg)
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE)


def test_large_message(instance):
    marker = unique()
    lines = [hashlib.sha256(b"%d" % i).hexdigest() * 12 for i in range(4000)]   # ~3 MB
    msg = make_message(marker, body="\r\n".join(lines) + "\r\n")
    deliver_raw(instance.smtp_port, msg)
    check_stored(instance.wait_message(marker), msg, SENDER, ALICE)


def test_message_without_final_crlf_bdat(instance):
    # BDAT content need not end in CRLF; the stored copy keeps the exact bytes
    marker = unique()
    msg = make_message(marker, body="no newline at end")
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        p.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        r = p.reply()
        check_code(r, 250, None, "BDAT LAST")
    stored = instance.wait_message(marker)
    _rp, _rec, rest = split_trace(stored)
    assert rest in (msg, msg + b"\r\n"), rest


def test_subaddress_delivery(instance):
    marker = unique()
    msg = make_message(marker, rcpt="alice+tag@example.test")
    qid = deliver_raw(instance.smtp_port, msg, rcpts=("alice+tag@example.test",))
    path, stored = instance.wait_messages(marker, 1)[0]
    check_stored(stored, msg, SENDER, "alice+tag@example.test", queue_id=qid)
    # alice's mailbox: the same place a plain alice@ delivery goes
    m2 = unique()
    deliver_raw(instance.smtp_port, make_message(m2))
    path2, _ = instance.wait_messages(m2, 1)[0]
    assert _mailbox_root(instance, path) == _mailbox_root(instance, path2), (path, path2)
    m3 = unique()
    deliver_raw(instance.smtp_port, make_message(m3), rcpts=(BOB,))
    path3, _ = instance.wait_messages(m3, 1)[0]
    assert _mailbox_root(instance, path) != _mailbox_root(instance, path3), (path, path3)


def test_second_local_domain(instance):
    # other.test is local too, but has no users: unknown there
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<alice@other.test>", 550, "5.1.1")


def _mailbox_root(inst, path):
    return inst.mailbox_of(path)


def test_auth_plain_initial_response_and_challenge(instance):
    creds = base64.b64encode(("\0%s\0%s" % (ALICE, USERS[ALICE])).encode()).decode()
    with Peer(instance.submissions_port, tls=True) as p:
        p.ehlo()
        r = p.cmd("AUTH PLAIN")
        assert r.code == 334, r
        check_code(p.cmd(creds), 235, "2.7.0", "AUTH PLAIN after empty challenge")
        check_code(p.cmd("AUTH PLAIN " + creds), 503, "5.5.1", "second AUTH")
