"""RFC 5321 session behaviour of the SMTP receiver: greeting, EHLO
keywords, the minimal command set, command order and syntax errors."""

import re
import time

import pytest

from pochtatest import (ALICE, BOB, HOSTNAME, Peer, check_code, has_esc, make_message, tls_client_context,
                        unique)


def test_rfc5321_4_2_greeting(instance):
    with Peer(instance.smtp_port) as p:
        assert p.greeting.code == 220
        assert len(p.greeting.lines) == 1
        assert re.fullmatch(r"220 mx\.example\.test ESMTP pochta( .*)?", p.greeting.first), p.greeting


EHLO_ALWAYS = ["PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
               "CHUNKING", "DSN", "HELP", "BINARYMIME"]


def _check_ehlo_common(r):
    assert r.lines[0].startswith(b"250-" + HOSTNAME.encode()) or r.lines[0] == b"250 " + HOSTNAME.encode(), r
    kw = r.keywords()
    for k in EHLO_ALWAYS:
        assert k in kw, "EHLO lacks %s: %r" % (k, r)
    m = re.fullmatch(r"SIZE (\d+)", kw["SIZE"], re.I)
    assert m and int(m.group(1)) == 25 * 1024 * 1024, "SIZE should announce the default 25M: %r" % kw["SIZE"]
    return kw


def test_rfc5321_4_1_1_1_ehlo_port25(instance):
    with Peer(instance.smtp_port) as p:
        kw = _check_ehlo_common(p.ehlo())
        assert "STARTTLS" in kw
        assert "AUTH" not in kw, "AUTH must not be offered on port 25"
        p.starttls()
        kw = _check_ehlo_common(p.ehlo())
        assert "STARTTLS" not in kw, "STARTTLS offered again inside TLS (RFC 3207 4.2)"
        assert "AUTH" not in kw, "AUTH must not be offered on port 25, even with TLS"


def _auth_mechs(kw):
    assert "AUTH" in kw, "EHLO lacks AUTH: %r" % sorted(kw)
    return set(kw["AUTH"].upper().split()[1:])


def test_rfc4954_ehlo_submission_auth_only_after_starttls(instance):
    with Peer(instance.submission_port) as p:
        kw = _check_ehlo_common(p.ehlo())
        assert "STARTTLS" in kw
        assert "AUTH" not in kw, "AUTH offered before TLS on submission"
        p.starttls()
        kw = _check_ehlo_common(p.ehlo())
        assert "STARTTLS" not in kw
        assert "AUTH" in kw
        assert {"PLAIN", "LOGIN"} <= _auth_mechs(kw), kw["AUTH"]


def test_rfc8314_ehlo_submissions(instance):
    with Peer(instance.submissions_port, tls=True) as p:
        assert p.greeting.code == 220
        kw = _check_ehlo_common(p.ehlo())
        assert "STARTTLS" not in kw
        assert {"PLAIN", "LOGIN"} <= _auth_mechs(kw), kw.get("AUTH")


def test_ehlo_size_follows_config(make_instance):
    inst = make_instance(extra_conf={"max_message_size": "100k"})
    with Peer(inst.smtp_port) as p:
        kw = p.ehlo().keywords()
        assert kw["SIZE"].upper() == "SIZE %d" % (100 * 1024), kw["SIZE"]


def test_rfc5321_4_1_1_1_helo(instance):
    with Peer(instance.smtp_port) as p:
        r = p.cmd("HELO client.remote.test")
        assert r.code == 250 and len(r.lines) == 1, r
        assert r.first.startswith("250 " + HOSTNAME), r
        p.expect("MAIL FROM:<a@remote.test>", 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)


def test_rfc5321_4_1_1_1_ehlo_requires_domain(instance):
    with Peer(instance.smtp_port) as p:
        r = p.cmd("EHLO")
        assert r.code == 501, r


def test_rfc5321_2_4_verbs_case_insensitive(instance):
    marker = unique()
    msg = make_message(marker)
    with Peer(instance.smtp_port) as p:
        assert p.cmd("eHlO client.remote.test").code == 250
        p.expect("mail from:<a@remote.test>", 250)
        p.expect("rcpt to:<%s>" % ALICE.upper(), 250)
        assert p.cmd("data").code == 354
        p.send(msg + b".\r\n")
        check_code(p.reply(), 250)
    instance.wait_message(marker)


def test_rfc5321_4_1_1_5_rset(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<a@remote.test>", 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        p.expect("RSET", 250, "2.0.0")
        # the transaction is gone: DATA has no recipients, RCPT has no MAIL
        p.expect("DATA", 503, "5.5.1")
        p.expect("RCPT TO:<%s>" % ALICE, 503, "5.5.1")
        # but the EHLO state is kept
        p.expect("MAIL FROM:<a@remote.test>", 250)


def test_rfc5321_4_1_4_ehlo_resets_transaction(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<a@remote.test>", 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        p.ehlo()
        p.expect("DATA", 503, "5.5.1")


def test_rfc5321_4_1_1_9_noop(instance):
    with Peer(instance.smtp_port) as p:
        p.expect("NOOP", 250, "2.0.0")        # allowed even before EHLO
        p.ehlo()
        p.expect("NOOP some argument", 250, "2.0.0")


def test_rfc5321_4_1_1_10_quit(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("QUIT", 221, "2.0.0")
        assert p.read_until_closed() == b""


def test_rfc5321_4_1_1_8_help(instance):
    with Peer(instance.smtp_port) as p:
        r = p.cmd("HELP")
        check_code(r, 214, None, "HELP")
        assert all(has_esc(l) for l in r.lines), r
        r = p.cmd("HELP MAIL")
        check_code(r, (214, 504), None, "HELP MAIL")
        assert all(has_esc(l) for l in r.lines), r


def _vrfy_norm(r, addr):
    return r.text.replace("<%s>" % addr, "<X>").replace(addr, "X")


def test_rfc5321_3_5_3_vrfy_default_reveals_nothing(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        nobody = "nobody-%d@example.test" % time.time_ns()
        a = p.cmd("VRFY " + ALICE)
        n = p.cmd("VRFY " + nobody)
        assert a.code == 252, a
        assert has_esc(a.lines[0]) and a.lines[0][4:6] == b"2.", a
        # the same answer whether or not the mailbox exists
        assert _vrfy_norm(a, ALICE) == _vrfy_norm(n, nobody), (a, n)


def test_rfc5321_3_5_1_vrfy_enabled(make_instance):
    inst = make_instance(extra_conf={"vrfy": "yes"})
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        r = p.cmd("VRFY " + ALICE)
        check_code(r, 250, None, "VRFY alice")
        assert "alice@example.test" in r.text
        r = p.cmd("VRFY nobody@example.test")
        check_code(r, 550, "5.1.1", "VRFY nobody")


def test_rfc5321_3_5_2_expn_disabled(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        r = p.cmd("EXPN " + ALICE)
        assert (r.code, r.lines[0][4:9]) in ((502, b"5.5.1"), (252, b"2.5.2")) or \
            (r.code == 252 and has_esc(r.lines[0])), r


@pytest.mark.parametrize("verb", ["TURN", "SEND FROM:<a@remote.test>", "SOML FROM:<a@remote.test>",
                                  "SAML FROM:<a@remote.test>"])
def test_rfc5321_4_1_5_obsolete_verbs_not_implemented(instance, verb):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect(verb, 502, "5.5.1")
        p.expect("NOOP", 250)


def test_rfc1985_etrn_answered(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        r = p.cmd("ETRN other.test")
        assert r.code // 100 in (2, 4), "ETRN must get a 2xx/4xx answer, not %r" % r
        assert has_esc(r.lines[0]), r


def test_rfc1985_etrn_pipelined_replies_stay_in_order(instance):
    """ETRN's queue update runs off the event loop; commands pipelined
    behind it must still be answered after it, in order (RFC 2920 3.1)."""
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        empty = unique("etrn") + ".test"      # nothing queued: 251, unlike NOOP's 250
        p.send(b"ETRN %s\r\nNOOP\r\nETRN @%s\r\nRSET\r\n" % (empty.encode(), empty.encode()))
        codes = [p.reply().code for _ in range(4)]
        assert codes == [251, 250, 251, 250], codes


def test_rfc5321_4_2_4_unknown_verb(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("XYZZY plugh", 500, "5.5.2")
        p.expect("NOOP", 250)


class TestCommandOrder:
    """RFC 5321 4.3.2 / 3.3: out-of-sequence commands get 503 5.5.1."""

    def test_rcpt_before_mail(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.expect("RCPT TO:<%s>" % ALICE, 503, "5.5.1")

    def test_data_before_rcpt(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.expect("DATA", 503, "5.5.1")
            p.expect("MAIL FROM:<a@remote.test>", 250)
            p.expect("DATA", 503, "5.5.1")
            # still in the transaction
            p.expect("RCPT TO:<%s>" % ALICE, 250)

    def test_data_after_only_refused_rcpts(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.expect("MAIL FROM:<a@remote.test>", 250)
            p.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
            r = p.cmd("DATA")
            assert r.code in (503, 554), r

    def test_mail_twice(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.expect("MAIL FROM:<a@remote.test>", 250)
            p.expect("MAIL FROM:<b@remote.test>", 503, "5.5.1")

    def test_mail_before_ehlo(self, instance):
        with Peer(instance.smtp_port) as p:
            p.expect("MAIL FROM:<a@remote.test>", 503, "5.5.1")
            p.ehlo()
            p.expect("MAIL FROM:<a@remote.test>", 250)

    def test_bdat_before_mail_consumes_chunk(self, instance):
        # RFC 3030 2: the chunk must be read even when the command fails.
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.send(b"BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n")
            check_code(p.reply(), 503, "5.5.1", "BDAT before MAIL")
            p.expect("NOOP", 250, "2.0.0")
            assert not p.replies_within(0.5), "chunk bytes were treated as commands"


class TestSyntax:
    def test_rfc5321_4_1_2_mail_without_brackets(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            r = p.cmd("MAIL FROM:bad")
            check_code(r, 501, None, "MAIL FROM:bad")
            assert has_esc(r.lines[0]), r
            p.expect("MAIL FROM:<a@remote.test>", 250)

    @pytest.mark.parametrize("arg", ["<a@@remote.test>", "<a@remote..test>", "<a b@remote.test>",
                                     "<@remote.test>", "<a@remote.test"])
    def test_rfc5321_4_1_2_bad_mailbox(self, instance, arg):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            r = p.cmd("MAIL FROM:" + arg)
            assert r.code in (501, 553), r

    def test_rfc5321_4_1_1_11_unknown_rcpt_parameter(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.expect("MAIL FROM:<a@remote.test>", 250)
            p.expect("RCPT TO:<%s> FOO=bar" % ALICE, 555, "5.5.4")
            p.expect("RCPT TO:<%s>" % ALICE, 250)

    def test_rfc5321_4_1_1_11_unknown_mail_parameter(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.expect("MAIL FROM:<a@remote.test> FOO=bar", 555, "5.5.4")

    def test_rfc5321_4_5_3_1_4_command_line_limit(self, instance):
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            # 512 octets including CRLF is allowed
            line = "NOOP " + "x" * (512 - 2 - 5)
            p.expect(line, 250)
            # 600 octets is not: one 500 reply, and the session goes on
            p.send(b"NOOP " + b"y" * 593 + b"\r\nNOOP\r\n")
            check_code(p.reply(), 500, "5.5.2", "600-byte line")
            check_code(p.reply(), 250, "2.0.0", "NOOP after long line")
            assert not p.replies_within(0.5)

    def test_very_long_line_without_crlf(self, instance):
        # 100 kB without a line end must not be buffered forever
        with Peer(instance.smtp_port) as p:
            p.ehlo()
            p.send(b"NOOP " + b"z" * 100000 + b"\r\nNOOP\r\n")
            rs = p.replies_within(3)
            assert rs, "no reply to an overlong line"
            assert rs[0].code in (500, 421), rs
            if rs[0].code == 500:
                assert [r.code for r in rs] == [500, 250], rs


def test_rfc5321_4_1_1_mail_smtp_utf8_refused_without_param(instance):
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        r = p.cmd("MAIL FROM:<\u00fc@example.test>")
        assert (r.code == 553 and r.lines[0][4:9] == b"5.6.7") or r.code in (501, 555), r


def test_rfc2034_enhanced_codes_everywhere(instance):
    seen = []
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        for c in ["NOOP", "RSET", "HELP", "VRFY " + ALICE, "EXPN " + ALICE, "XYZZY", "RCPT TO:<%s>" % ALICE,
                  "MAIL FROM:bad", "MAIL FROM:<a@remote.test>", "MAIL FROM:<a@remote.test>",
                  "RCPT TO:<nobody@example.test>", "RCPT TO:<x@elsewhere.test>", "RCPT TO:<%s>" % ALICE,
                  "RCPT TO:<%s> FOO=1" % BOB, "RCPT TO:<%s>" % BOB]:
            seen.append((c, p.cmd(c)))
        r = p.cmd("DATA")
        assert r.code == 354
        p.send(make_message(unique()) + b".\r\n")
        seen.append(("<end of data>", p.reply()))
        seen.append(("STARTTLS", p.cmd("STARTTLS")))
        p.sock = tls_client_context().wrap_socket(p.sock)
        p.ehlo()
        seen.append(("AUTH PLAIN", p.cmd("AUTH PLAIN AGFsaWNlAHg=")))
        seen.append(("QUIT", p.cmd("QUIT")))
    with Peer(instance.submission_port) as p:
        p.ehlo()
        seen.append(("587 MAIL", p.cmd("MAIL FROM:<%s>" % ALICE)))
        seen.append(("587 AUTH before TLS", p.cmd("AUTH PLAIN AGFsaWNlAHg=")))
    bad = [(c, r) for c, r in seen for l in r.lines if not has_esc(l)]
    assert not bad, "replies without a matching enhanced status code: %r" % bad


def test_too_many_errors_421(make_instance):
    inst = make_instance(extra_conf={"max_errors": "5"})
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        codes = []
        for i in range(12):
            try:
                r = p.cmd("XYZZY%d" % i)
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
            codes.append(r.code)
            if r.code == 421:
                assert has_esc(r.lines[0]) and r.lines[0][4:5] == b"4", r
                break
        assert 421 in codes, "no 421 after 12 errors (max_errors = 5): %r" % codes
        # the 421 follows the 5th error reply (or replaces it)
        assert codes.index(421) in (4, 5), "421 after %d errors (max_errors = 5): %r" % (codes.index(421), codes)
        assert codes[:4] == [500] * 4, "closed too eagerly: %r" % codes
        assert p.read_until_closed() == b""


@pytest.mark.security
def test_rfc5321_4_5_3_2_idle_timeout(make_instance):
    inst = make_instance(extra_conf={"smtp_timeout": "2s"})
    with Peer(inst.smtp_port) as p:
        t0 = time.monotonic()
        r = p.reply()
        took = time.monotonic() - t0
        check_code(r, 421, "4.4.2", "idle client")
        assert 1.0 <= took <= 8, "timeout after %.1fs, configured 2s" % took
        assert p.read_until_closed() == b""
    # the timer restarts with every command
    with Peer(inst.smtp_port) as p:
        for _ in range(3):
            time.sleep(1.2)
            p.expect("NOOP", 250)


@pytest.mark.security
def test_rfc5321_4_5_3_2_data_timeout(make_instance):
    inst = make_instance(extra_conf={"smtp_data_timeout": "2s", "smtp_timeout": "30s"})
    marker = unique()
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<a@remote.test>", 250)
        p.expect("RCPT TO:<%s>" % ALICE, 250)
        assert p.cmd("DATA").code == 354
        p.send(make_message(marker)[:60])
        t0 = time.monotonic()
        r = p.reply()
        check_code(r, 421, "4.4.2", "idle in DATA")
        assert time.monotonic() - t0 <= 8
    inst.assert_not_stored(marker)
