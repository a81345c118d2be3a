"""Outbound SMTP client against a small fake peer written here: transport
map routing to a given port, connection reuse with RSET between
transactions (several messages, fewer connections), BDAT when the peer
offers CHUNKING (RFC 3030), and the RFC 6152 downgrade of 8-bit mail to
quoted-printable for a peer without 8BITMIME.

The fake peer records every connection, command and message, so the
tests see what went over the wire, not only what arrived.
"""

import email
import email.policy
import re
import socket
import threading
import time

import pytest

from pochtatest import ALICE, close_instance, new_instance, unique, make_message
from test_outbound import DNSServer, _set_conf, submit, wait_queue_empty

FAKE = "fake.test"
WAIT = 25


class FakePeer:
    """One-thread-per-connection SMTP server with chosen EHLO keywords."""

    def __init__(self, keywords=("PIPELINING", "8BITMIME"), drop_first_data=False):
        self.keywords = list(keywords)
        self.drop_first_data = drop_first_data
        self.connections = 0
        self.commands = []          # (connection number, command line)
        self.messages = []          # dicts: conn, mail, rcpts, data, via
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _a = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c, n):
        f = c.makefile("rb")
        try:
            self._session(c, f, n)
        except (OSError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _session(self, c, f, n):
        c.sendall(b"220 fake.test ESMTP\r\n")
        mail, rcpts = None, []
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("latin-1")
            with self.lock:
                self.commands.append((n, cmd))
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                lines = ["fake.test"] + self.keywords
                out = "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l) for i, l in enumerate(lines))
                c.sendall(out.encode())
            elif verb == "HELO":
                c.sendall(b"250 fake.test\r\n")
            elif verb == "MAIL":
                mail, rcpts = cmd, []
                c.sendall(b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                rcpts.append(re.search(r"<([^>]*)>", cmd).group(1))
                c.sendall(b"250 2.1.5 ok\r\n")
            elif verb == "RSET":
                mail, rcpts = None, []
                c.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "DATA":
                c.sendall(b"354 go ahead\r\n")
                data = b""
                while True:
                    l = f.readline()
                    if not l:
                        return
                    if l == b".\r\n":
                        break
                    data += l[1:] if l.startswith(b".") else l
                if self.drop_first_data:
                    self.drop_first_data = False
                    return              # connection lost before the final reply
                self._store(n, mail, rcpts, data, "DATA")
                c.sendall(b"250 2.0.0 queued\r\n")
            elif verb == "BDAT":
                parts = cmd.split()
                size = int(parts[1])
                chunk = f.read(size)
                last = len(parts) > 2 and parts[2].upper() == "LAST"
                self._chunks = getattr(self, "_chunks", {})
                self._chunks[n] = self._chunks.get(n, b"") + chunk
                if last:
                    self._store(n, mail, rcpts, self._chunks.pop(n), "BDAT")
                c.sendall(b"250 2.0.0 chunk ok\r\n")
            elif verb == "QUIT":
                c.sendall(b"221 bye\r\n")
                return
            else:
                c.sendall(b"500 5.5.1 what\r\n")

    def _store(self, n, mail, rcpts, data, via):
        with self.lock:
            self.messages.append(dict(conn=n, mail=mail, rcpts=list(rcpts), data=data, via=via))

    def wait_messages(self, count, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.1)
        raise AssertionError("fake peer got %d of %d messages; commands: %r"
                             % (len(self.messages), count, self.commands[-30:]))

    def close(self):
        self.stopping = True
        self.sock.close()


def _sender(peer, **conf):
    """Instance A: fake.test routed by the transport map to the fake peer's
    port (outbound_port stays elsewhere, so only the map can lead there)."""
    dns = DNSServer()
    a = new_instance(start=False)
    tmap = a.dir / "transport"
    tmap.write_text("# test routes\n%s   [127.0.0.1]:%d\n" % (FAKE, peer.port))
    settings = dict(dns_server="127.0.0.1:%d" % dns.port, transport_map=str(tmap), queue_retry_min="1s",
                    queue_retry_max="2s", outbound_connect_timeout="3s", outbound_timeout="10s",
                    outbound_data_timeout="10s")
    settings.update(conf)
    _set_conf(a, **settings)
    a.start()
    return a, dns


@pytest.fixture
def peer_world(request):
    opts = getattr(request, "param", {})
    peer = FakePeer(**opts.get("peer", {}))
    a, dns = _sender(peer, **opts.get("conf", {}))
    try:
        yield a, peer
    finally:
        try:
            close_instance(a)
        finally:
            dns.close()
            peer.close()


def test_transport_map_routes_domain_to_host_and_port(peer_world):
    a, peer = peer_world
    marker = unique("tmap")
    rcpt = "bob@" + FAKE
    submit(a, [rcpt], make_message(marker, sender=ALICE, rcpt=rcpt))
    got = peer.wait_messages(1)
    assert marker.encode() in got[0]["data"]
    assert got[0]["rcpts"] == [rcpt]
    wait_queue_empty(a)
    assert "relay=127.0.0.1" in a.stderr(), a.stderr()[-2000:]


@pytest.mark.parametrize("peer_world", [{"conf": {"outbound_max_per_domain": "1"}}], indirect=True)
def test_connection_reuse_several_messages_fewer_connections(peer_world):
    a, peer = peer_world
    n = 6
    markers = [unique("reuse%d" % i) for i in range(n)]
    for m in markers:
        submit(a, ["bob@" + FAKE], make_message(m, sender=ALICE, rcpt="bob@" + FAKE))
    got = peer.wait_messages(n)
    wait_queue_empty(a)
    for m in markers:
        assert sum(m.encode() in g["data"] for g in got) == 1, m
    assert peer.connections < n, (peer.connections, peer.commands)
    # RFC 5321 4.1.1.5: a reused connection starts each further transaction with RSET
    cmds = [c for _n, c in peer.commands]
    assert "RSET" in cmds
    assert cmds.count("EHLO mx.example.test") == peer.connections


@pytest.mark.parametrize("peer_world", [{"conf": {"outbound_connection_reuse_time": "0"}}], indirect=True)
def test_reuse_time_zero_disables_reuse(peer_world):
    a, peer = peer_world
    for i in range(3):
        m = unique("noreuse")
        submit(a, ["bob@" + FAKE], make_message(m, sender=ALICE, rcpt="bob@" + FAKE))
    peer.wait_messages(3)
    wait_queue_empty(a)
    assert peer.connections == 3
    assert "RSET" not in [c for _n, c in peer.commands]


@pytest.mark.parametrize("peer_world", [{"peer": {"keywords": ["PIPELINING", "8BITMIME", "CHUNKING"]}}],
                         indirect=True)
def test_rfc3030_bdat_when_peer_offers_chunking(peer_world):
    a, peer = peer_world
    marker = unique("bdat")
    body = "first\r\n.leading dot stays one dot\r\nlast %s\r\n" % marker
    msg = make_message(marker, sender=ALICE, rcpt="bob@" + FAKE, body=body)
    submit(a, ["bob@" + FAKE, "carl@" + FAKE], msg)
    got = peer.wait_messages(1)[0]
    assert got["via"] == "BDAT"
    cmds = [c for _n, c in peer.commands]
    assert "DATA" not in cmds
    assert any(re.match(r"BDAT \d+ LAST$", c) for c in cmds), cmds
    assert got["rcpts"] == ["bob@" + FAKE, "carl@" + FAKE]
    # no dot-stuffing with BDAT: the content arrives as queued
    assert b"\r\n.leading dot stays one dot\r\n" in got["data"]
    assert got["data"].endswith(msg)
    wait_queue_empty(a)


@pytest.mark.parametrize("peer_world", [{"peer": {"keywords": ["PIPELINING"]}}], indirect=True)
def test_rfc6152_8bit_downgraded_to_quoted_printable(peer_world):
    a, peer = peer_world
    marker = unique("qp")
    text = "Grüße aus Köln, ça va? %s\r\n.dot line\r\n" % marker
    msg = ("From: <%s>\r\nTo: <bob@%s>\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s"
           % (ALICE, FAKE, marker, text)).encode("utf-8")
    submit(a, ["bob@" + FAKE], msg, mail_options=["BODY=8BITMIME"])
    got = peer.wait_messages(1)[0]
    assert "BODY=8BITMIME" not in got["mail"]
    assert all(b < 0x80 for b in got["data"]), "8-bit bytes went to a 7-bit peer"
    m = email.message_from_bytes(got["data"], policy=email.policy.default)
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    assert m.get_payload(decode=True) == text.encode("utf-8")
    wait_queue_empty(a)
    assert "converted to 7 bits" in a.stderr()


@pytest.mark.parametrize("peer_world", [{"peer": {"keywords": ["PIPELINING"]}}], indirect=True)
def test_rfc6152_8bit_header_cannot_be_downgraded_bounces(peer_world):
    a, peer = peer_world
    marker = unique("hdr8")
    msg = ("From: <%s>\r\nTo: <bob@%s>\r\nSubject: Grüße %s\r\n\r\nbody\r\n" % (ALICE, FAKE, marker)).encode()
    submit(a, ["bob@" + FAKE], msg, mail_options=["BODY=8BITMIME"])
    found = a.wait_messages(marker, 1, timeout=WAIT)
    reports = [b for _p, b in found if b.startswith(b"Return-Path: <>")]
    assert reports and b"5.6.3" in reports[0]
    assert peer.messages == []


@pytest.mark.parametrize("peer_world", [{"peer": {"drop_first_data": True}}], indirect=True)
def test_connection_lost_before_final_reply_retried_once(peer_world):
    a, peer = peer_world
    marker = unique("drop")
    rcpts = ["bob@" + FAKE, "carl@" + FAKE]
    submit(a, rcpts, make_message(marker, sender=ALICE, rcpt=rcpts[0]))
    got = peer.wait_messages(1)
    wait_queue_empty(a)
    time.sleep(1.5)
    got = [g for g in peer.messages if marker.encode() in g["data"]]
    assert len(got) == 1, got
    assert got[0]["rcpts"] == rcpts        # both recipients, once each
    assert peer.connections >= 2


def test_bracketed_name_next_hop_uses_its_own_addresses_not_its_mx():
    """Postfix's "[host]" rule: a bracketed name in the transport map means
    "connect to this host", so its own MX records are never looked up.  The
    name here has an MX pointing at a host with no address; an MX lookup
    would defer the mail instead of delivering it."""
    peer = FakePeer()
    dns = DNSServer()
    dns.add_a("hop.fake.test", "127.0.0.1")
    dns.add_mx("hop.fake.test", 10, "nowhere.fake.test")
    a = new_instance(start=False)
    try:
        tmap = a.dir / "transport"
        tmap.write_text("%s   [hop.fake.test]:%d\n" % (FAKE, peer.port))
        _set_conf(a, dns_server="127.0.0.1:%d" % dns.port, transport_map=str(tmap), queue_retry_min="1s",
                  queue_retry_max="2s", outbound_connect_timeout="3s", outbound_timeout="10s")
        a.start()
        marker = unique("bracket")
        rcpt = "bob@" + FAKE
        submit(a, [rcpt], make_message(marker, sender=ALICE, rcpt=rcpt))
        got = peer.wait_messages(1)
        assert marker.encode() in got[0]["data"]
        wait_queue_empty(a)
        assert "relay=hop.fake.test" in a.stderr(), a.stderr()[-2000:]
    finally:
        close_instance(a)
        dns.close()
        peer.close()
