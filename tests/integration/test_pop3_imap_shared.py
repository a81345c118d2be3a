"""POP3 and IMAP serve one INBOX from one store: what one protocol
deletes is gone for the other, UIDL values are derived from IMAP's
UIDVALIDITY and UID, and both return the same bytes."""
import poplib

import pytest

from pochtatest import close_instance, new_instance, tls_client_context
from test_imap import Raw, connect, ensure_imap_conf, imap_ports
from test_pop3 import PASSWORD, deliver, ensure_pop3_conf, new_user, pop3_ports


@pytest.fixture(scope="module")
def inst():
    i = new_instance(start=False)
    ensure_pop3_conf(i)
    ensure_imap_conf(i)
    i.start()
    yield i
    close_instance(i)


def pop3(inst, user):
    p = poplib.POP3_SSL("127.0.0.1", pop3_ports(inst)[1], context=tls_client_context(), timeout=15)
    p.user(user)
    p.pass_(PASSWORD)
    return p


def imap(inst, user):
    return connect(inst, user=user, password=PASSWORD, ssl_port=True)


def test_same_bytes_and_uidl_from_uid(inst):
    user = new_user(inst, "shared")
    stored = deliver(inst, user)
    m = imap(inst, user)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"1"], data
    typ, data = m.fetch("1", "(UID BODY.PEEK[])")
    uid = int(data[0][0].split(b"UID ")[1].split()[0])
    imap_bytes = data[0][1]
    typ, data = m.response("UIDVALIDITY")
    uidvalidity = int(data[0])
    m.logout()
    p = pop3(inst, user)
    resp, lines, _ = p.retr(1)
    pop_bytes = b"\r\n".join(lines) + b"\r\n"
    uidl = p.uidl(1).split()[2].decode()
    p.quit()
    assert imap_bytes == stored == pop_bytes
    assert uidl == "%x.%x" % (uidvalidity, uid), (uidl, uidvalidity, uid)


def test_pop3_dele_is_an_expunge_for_imap(inst):
    user = new_user(inst, "dele")
    deliver(inst, user)
    deliver(inst, user)
    m = imap(inst, user)
    m.select("INBOX")
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    assert len(uids) == 2
    m.logout()
    p = pop3(inst, user)
    p.dele(1)
    p.quit()
    m = imap(inst, user)
    typ, data = m.select("INBOX")
    assert data == [b"1"], data
    typ, data = m.uid("SEARCH", None, "ALL")
    assert data[0].split() == uids[1:], "POP3 DELE of message 1 must remove UID %s only" % uids[0]
    m.logout()


def test_imap_expunge_is_gone_for_pop3_and_flags_do_not_hide_mail(inst):
    user = new_user(inst, "exp")
    deliver(inst, user)
    second = deliver(inst, user)
    m = imap(inst, user)
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Deleted)")
    m.store("2", "+FLAGS", "(\\Seen)")
    m.expunge()
    m.logout()
    p = pop3(inst, user)
    count, size = p.stat()
    assert count == 1, "IMAP EXPUNGE must remove the message for POP3 too"
    resp, lines, _ = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == second, "a \\Seen message is still served by POP3"
    p.quit()


def test_rfc2177_idle_sees_a_pop3_deletion_at_once(inst):
    user = new_user(inst, "idle")
    deliver(inst, user)
    deliver(inst, user)
    r = Raw(inst, tls=True)
    _, t = r.cmd("L1", 'LOGIN "%s" "%s"' % (user, PASSWORD))
    assert t.startswith(b"L1 OK"), t
    _, t = r.cmd("S1", "SELECT INBOX")
    assert t.startswith(b"S1 OK"), t
    r.send(b"I1 IDLE\r\n")
    assert r.line().startswith(b"+"), "no IDLE continuation"
    p = pop3(inst, user)
    p.dele(1)
    p.quit()
    # The 30 s safety poll is far away: only the change notification can
    # deliver the EXPUNGE this quickly.
    r.sock.settimeout(3)
    assert r.line() == b"* 1 EXPUNGE"
    r.send(b"DONE\r\n")
    _, t = r.until("I1")
    assert t.startswith(b"I1 OK"), t
