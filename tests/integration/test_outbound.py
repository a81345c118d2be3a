"""Outbound delivery end to end: two pochta instances on loopback and a
small DNS server of our own.

Instance A (the sender) hosts example.test; instance B hosts remote.test
as well.  A's every DNS query goes to the test's DNS server (dns_server)
and its outbound SMTP goes to B's smtp port (outbound_port), so
remote.test's MX, mx.remote.test -> 127.0.0.1, leads to B.
"""

import email
import email.policy
import re
import smtplib
import socket
import struct
import threading
import time

import pytest

from pochtatest import (ALICE, USERS, close_all, new_instance, split_trace, tls_client_context,
                        unique, make_message, check_received, strip_comments)

REMOTE = "remote.test"
CAROL = "carol@remote.test"
CAROL_PW = "carol-Secret-3"
DELIVERY_WAIT = 20


# --- a tiny authoritative DNS server (RFC 1035), UDP only -----------------

def _name_wire(name):
    out = b""
    for label in [l for l in name.rstrip(".").split(".") if l]:
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


class DNSServer:
    """Answers A, AAAA and MX from a dict; NXDOMAIN for unknown names,
    NOERROR with no answer for a known name without the asked type."""

    def __init__(self):
        self.records = {}          # (name, type) -> [rdata bytes]
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def add_mx(self, domain, pref, host):
        self.records.setdefault((domain.lower(), 15), []).append(struct.pack(">H", pref) + _name_wire(host))

    def add_a(self, host, ip):
        self.records.setdefault((host.lower(), 1), []).append(socket.inet_aton(ip))

    def _known(self, name):
        return any(n == name for (n, _t) in self.records)

    def _serve(self):
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), addr)
            except Exception:       # malformed query: ignore
                continue

    def _answer(self, q):
        qid, flags, qdcount = struct.unpack(">HHH", q[:6])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        i += 1
        qtype, qclass = struct.unpack(">HH", q[i:i + 4])
        question = q[12:i + 4]
        name = ".".join(labels)
        self.queries.append((name, qtype))
        rrs = self.records.get((name, qtype), [])
        rcode = 0 if rrs or self._known(name) else 3
        hdr = struct.pack(">HHHHHH", qid, 0x8400 | 0x0100 | 0x0080 | rcode, 1, len(rrs), 0, 0)
        ans = b""
        for rd in rrs:
            ans += struct.pack(">HHHIH", 0xC00C, qtype, 1, 60, len(rd)) + rd
        return hdr + question + ans

    def close(self):
        self.stopping = True
        self.sock.close()


# --- fixtures --------------------------------------------------------------

def _set_conf(inst, **kv):
    text = inst.conf.read_text()
    for k, v in kv.items():
        text, n = re.subn(r"(?m)^#?%s = .*$" % k, "%s = %s" % (k, v), text)
        if n == 0:
            text += "%s = %s\n" % (k, v)
    inst.conf.write_text(text)


@pytest.fixture
def world():
    yield from _world()


@pytest.fixture
def slow_retry_world():
    """Retries an hour apart: only a flush can bring a second attempt."""
    yield from _world(retry_min="1h", retry_max="2h")


@pytest.fixture
def delay_world():
    """Delay notices after one second."""
    yield from _world(extra={"queue_delay_warning": "1s"})


def _world(retry_min="1s", retry_max="2s", extra=None):
    dns = DNSServer()
    dns.add_mx(REMOTE, 10, "mx." + REMOTE)
    dns.add_a("mx." + REMOTE, "127.0.0.1")
    dns.add_mx("nullmx.test", 0, "")
    b = new_instance(start=False)
    text = b.conf.read_text()
    text = re.sub(r"(?m)^domains = (.*)$", r"domains = \1 " + REMOTE, text)
    b.conf.write_text(text)
    b.add_user(CAROL, CAROL_PW)
    a = new_instance(start=False)
    _set_conf(a, dns_server="127.0.0.1:%d" % dns.port, outbound_port=str(b.smtp_port),
              queue_retry_min=retry_min, queue_retry_max=retry_max, outbound_connect_timeout="3s",
              outbound_timeout="10s", outbound_data_timeout="10s", **(extra or {}))
    a.start()
    try:
        yield a, b, dns
    finally:
        close_all(a, b, dns)


def submit(inst, rcpts, msg, sender=ALICE, rcpt_options=(), mail_options=()):
    with smtplib.SMTP("127.0.0.1", inst.submission_port, timeout=15) as s:
        s.ehlo("client.example.test")
        s.starttls(context=tls_client_context())
        s.ehlo("client.example.test")
        s.login(sender, USERS[sender])
        s.mail(sender, list(mail_options))
        for r in rcpts:
            code, text = s.rcpt(r, list(rcpt_options))
            assert code == 250, (r, code, text)
        code, text = s.data(msg)
        assert code == 250, (code, text)
        return re.search(rb"queued as (\S+)", text).group(1).decode()


def wait_queue_empty(inst, timeout=DELIVERY_WAIT):
    deadline = time.monotonic() + timeout
    out = inst.queue_list()
    while "queue is empty" not in out and time.monotonic() < deadline:
        time.sleep(0.2)
        out = inst.queue_list()
    assert "queue is empty" in out, "queue did not empty:\n%s\n%s" % (out, inst.stderr()[-4000:])


def next_header(rest):
    """Split the first (folded) header field off rest; return (unfolded, rest)."""
    i = 0
    while True:
        j = rest.index(b"\r\n", i)
        if rest[j + 2:j + 3] in (b" ", b"\t"):
            i = j + 2
            continue
        return re.sub(rb"\r\n[ \t]", b" ", rest[:j]).decode(), rest[j + 2:]


def bounces_for(inst, marker, count=1):
    """Stored reports (Return-Path: <>) in A's mailboxes quoting marker."""
    found = inst.wait_messages(marker, count, timeout=DELIVERY_WAIT)
    return [b for _p, b in found if b.startswith(b"Return-Path: <>")]


def report_parts(stored):
    rp, _rest = stored.split(b"\r\n", 1)
    msg = email.message_from_bytes(stored, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    # compat32 parses message/delivery-status into a list of header blocks
    blocks = parts[1].get_payload()
    return msg, parts, blocks


# --- tests -----------------------------------------------------------------

def test_rfc5321_5_1_delivery_through_mx_byte_for_byte(world):
    a, b, dns = world
    b.start()
    marker = unique("out")
    msg = make_message(marker, sender=ALICE, rcpt=CAROL, body="line one\r\n.leading dot\r\nmarker %s\r\n" % marker)
    qid = submit(a, [CAROL], msg)
    stored = b.wait_message(marker, timeout=DELIVERY_WAIT)
    rp, received_b, rest = split_trace(stored)
    assert rp == "Return-Path: <%s>" % ALICE
    check_received(received_b, rcpt=CAROL, helo="mx.example.test")
    received_a, rest = next_header(rest)
    check_received(received_a, rcpt=CAROL, queue_id=qid)
    assert "ESMTPSA" in received_a, received_a
    assert rest == msg, "content changed in transit:\nsent %r\ngot  %r" % (msg[:500], rest[:500])
    # B's trace shows the opportunistic STARTTLS of A's client
    assert re.search(r"\bwith ESMTPS\b", strip_comments(received_b)), received_b
    wait_queue_empty(a)
    assert ("remote.test", 15) in dns.queries
    assert "status=sent" in a.stderr()


def test_destination_down_then_up_arrives_once(world):
    a, b, dns = world
    marker = unique("retry")
    submit(a, [CAROL], make_message(marker, sender=ALICE, rcpt=CAROL))
    deadline = time.monotonic() + DELIVERY_WAIT
    while "attempt" not in a.queue_list() and time.monotonic() < deadline:
        time.sleep(0.2)
    out = a.queue_list()
    assert "deferred" in out and "attempt" in out, out
    b.start()
    stored = b.wait_message(marker, timeout=DELIVERY_WAIT)
    assert stored.count(marker.encode()) >= 1
    wait_queue_empty(a)
    time.sleep(1.5)
    assert len(b.find(marker)) == 1


def test_rfc3464_5xx_recipient_bounces_to_local_sender(world):
    a, b, dns = world
    b.start()
    marker = unique("bounce")
    msg = make_message(marker, sender=ALICE, rcpt=CAROL)
    qid = submit(a, [CAROL, "nobody@remote.test"], msg)
    b.wait_message(marker, timeout=DELIVERY_WAIT)       # the good recipient still gets it
    reports = bounces_for(a, marker)
    assert len(reports) == 1, reports
    report = reports[0]
    m, parts, blocks = report_parts(report)
    assert m["To"] == "<%s>" % ALICE
    assert m["Auto-Submitted"] == "auto-replied"
    per_msg = blocks[0]
    assert per_msg["Reporting-MTA"] == "dns; mx.example.test"
    rcpts = blocks[1:]
    assert len(rcpts) == 1, [dict(r) for r in rcpts]
    r = rcpts[0]
    assert r["Final-Recipient"] == "rfc822;nobody@remote.test"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"].startswith("smtp; ")
    assert "550" in r["Diagnostic-Code"]
    # RET unspecified: the whole original comes back
    assert parts[2].get_content_type() == "message/rfc822"
    assert marker.encode() in report
    assert qid in parts[0].get_payload()
    wait_queue_empty(a)


def test_rfc7505_null_mx_bounces(world):
    a, b, dns = world
    marker = unique("nullmx")
    submit(a, ["someone@nullmx.test"], make_message(marker, sender=ALICE, rcpt="someone@nullmx.test"))
    reports = bounces_for(a, marker)
    assert len(reports) == 1
    _m, _parts, blocks = report_parts(reports[0])
    assert blocks[1]["Status"] == "5.1.10"
    assert blocks[1]["Action"] == "failed"
    wait_queue_empty(a)


def test_rfc3461_notify_never_suppresses_bounce(world):
    a, b, dns = world
    marker = unique("never")
    submit(a, ["someone@nullmx.test"], make_message(marker, sender=ALICE, rcpt="someone@nullmx.test"),
           rcpt_options=["NOTIFY=NEVER"])
    wait_queue_empty(a)
    time.sleep(1)
    assert a.find(marker) == [], "a report was sent despite NOTIFY=NEVER"
    assert "status=bounced" in a.stderr()


def test_rfc3461_ret_hdrs_returns_headers_only(world):
    a, b, dns = world
    marker = unique("hdrs")
    msg = make_message(marker, sender=ALICE, rcpt="x@nullmx.test", body="secret body %s\r\n" % unique("b"))
    submit(a, ["x@nullmx.test"], msg, mail_options=["RET=HDRS"])
    reports = bounces_for(a, marker)
    _m, parts, _blocks = report_parts(reports[0])
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert b"secret body" not in reports[0]


def _wait_attempted(inst):
    deadline = time.monotonic() + DELIVERY_WAIT
    while "attempt" not in inst.queue_list() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "attempt" in inst.queue_list(), inst.queue_list()


def test_rfc1985_etrn_starts_delivery(slow_retry_world):
    a, b, dns = slow_retry_world
    marker = unique("etrn")
    submit(a, [CAROL], make_message(marker, sender=ALICE, rcpt=CAROL))
    _wait_attempted(a)
    b.start()
    time.sleep(1.5)
    assert b.find(marker) == [], "retried before its time"
    with smtplib.SMTP("127.0.0.1", a.smtp_port, timeout=15) as s:
        s.ehlo("client.remote.test")
        code, text = s.docmd("ETRN", "nothing-queued.example")
        assert code == 251, (code, text)
        code, text = s.docmd("ETRN", "#queue")
        assert code == 458, (code, text)
        code, text = s.docmd("ETRN", REMOTE)
        assert code == 250, (code, text)
    b.wait_message(marker, timeout=DELIVERY_WAIT)
    wait_queue_empty(a)


def test_pochta_queue_hold_release_flush_delete(slow_retry_world):
    a, b, dns = slow_retry_world
    m1, m2 = unique("held"), unique("deleted")
    q1 = submit(a, [CAROL], make_message(m1, sender=ALICE, rcpt=CAROL))
    q2 = submit(a, [CAROL], make_message(m2, sender=ALICE, rcpt=CAROL))
    _wait_attempted(a)
    deadline = time.monotonic() + DELIVERY_WAIT
    while a.queue_list().count("attempt") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    a.cli("queue", "hold", q1)
    a.cli("queue", "delete", q2)
    out = a.queue_list()
    assert "held" in out and q2 not in out, out
    b.start()
    a.cli("queue", "flush")                 # a held message stays held
    time.sleep(2)
    assert b.find(m1) == []
    a.cli("queue", "release", q1)
    b.wait_message(m1, timeout=DELIVERY_WAIT)
    wait_queue_empty(a)
    assert b.find(m2) == []
    r = a.cli("queue", "delete", q1, check=False)
    assert r.returncode != 0


def test_rfc3461_notify_delay_sends_one_delay_notice(delay_world):
    a, b, dns = delay_world                 # B stays down: the message keeps waiting
    marker = unique("delay")
    submit(a, [CAROL], make_message(marker, sender=ALICE, rcpt=CAROL), rcpt_options=["NOTIFY=DELAY,FAILURE"])
    reports = bounces_for(a, marker)
    m, parts, blocks = report_parts(reports[0])
    assert m["Subject"].startswith("Delayed Mail")
    assert blocks[1]["Action"] == "delayed"
    assert blocks[1]["Status"].startswith("4.")
    assert blocks[1]["Will-Retry-Until"]
    time.sleep(4)                           # more attempts, no second notice
    assert len(bounces_for(a, marker)) == 1
    assert "delayed" in a.queue_list()
