"""Aliases, catch-all and subaddressing: the envelope recipient the client
gave is what the Received header's "for" clause shows."""

import pytest

from pochtatest import (ALICE, BOB, Peer, check_code, check_stored, close_instance, deliver_raw, make_message,
                        new_instance, unique)

SENDER = "sender@remote.test"


@pytest.fixture(scope="module")
def aliased(request):
    inst = new_instance(aliases=[
        ("team@example.test", ALICE, BOB),
        ("ext@example.test", "someone@elsewhere.test"),
        ("mixed@other.test", ALICE, "someone-else@elsewhere.test"),
    ])
    yield inst
    close_instance(inst)


def test_alias_to_two_local_users(aliased):
    marker = unique()
    msg = make_message(marker, rcpt="team@example.test")
    qid = deliver_raw(aliased.smtp_port, msg, rcpts=("team@example.test",))
    found = aliased.wait_messages(marker, 2)
    assert len(found) == 2, [str(p) for p, _ in found]
    for _p, stored in found:
        check_stored(stored, msg, SENDER, "team@example.test", queue_id=qid)
    # one copy in each mailbox: alice's and bob's copies are in different places
    assert aliased.mailbox_of(found[0][0]) != aliased.mailbox_of(found[1][0])


def test_alias_to_external_is_accepted_and_queued(aliased):
    # An alias of a local address is local mail: accepted on port 25 from
    # anyone, then queued for outbound delivery.
    marker = unique()
    msg = make_message(marker, rcpt="ext@example.test")
    qid = deliver_raw(aliased.smtp_port, msg, rcpts=("ext@example.test",))
    out = aliased.queue_list()
    assert qid in out and "someone@elsewhere.test" in out, "queue list lacks %s:\n%s" % (qid, out)


def test_alias_mixed_local_and_external(aliased):
    marker = unique()
    msg = make_message(marker, rcpt="mixed@other.test")
    qid = deliver_raw(aliased.smtp_port, msg, rcpts=("mixed@other.test",))
    check_stored(aliased.wait_message(marker), msg, SENDER, "mixed@other.test", queue_id=qid)
    out = aliased.queue_list()
    assert "someone-else@elsewhere.test" in out, out


def test_unknown_user_next_to_alias(aliased):
    with Peer(aliased.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        p.expect("RCPT TO:<team@example.test>", 250)


def test_alias_subaddress(aliased):
    marker = unique()
    msg = make_message(marker)
    deliver_raw(aliased.smtp_port, msg, rcpts=("team+news@example.test",))
    found = aliased.wait_messages(marker, 2)
    assert len(found) == 2
    for _p, stored in found:
        check_stored(stored, msg, SENDER, "team+news@example.test")


def test_catch_all(make_instance):
    inst = make_instance(aliases=[("@example.test", ALICE)])
    marker, m_bob = unique(), unique()
    msg = make_message(marker, rcpt="whatever@example.test")
    qid = deliver_raw(inst.smtp_port, msg, rcpts=("whatever@example.test",))
    path, stored = inst.wait_messages(marker, 1)[0]
    check_stored(stored, msg, SENDER, "whatever@example.test", queue_id=qid)
    # a real user is still delivered to, not caught
    msg_bob = make_message(m_bob, rcpt=BOB)
    deliver_raw(inst.smtp_port, msg_bob, rcpts=(BOB,))
    found = inst.wait_messages(m_bob, 1)
    assert len(found) == 1
    m_alice = unique()
    deliver_raw(inst.smtp_port, make_message(m_alice), rcpts=(ALICE,))
    path_alice = inst.wait_messages(m_alice, 1)[0][0]
    assert inst.mailbox_of(path) == inst.mailbox_of(path_alice), \
        "catch-all mail not in alice's mailbox: %s vs %s" % (path, path_alice)
    assert inst.mailbox_of(found[0][0]) != inst.mailbox_of(path_alice)
    # the catch-all covers only its own domain
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<whatever@other.test>", 550, "5.1.1")


def test_subaddressing(instance):
    marker = unique()
    msg = make_message(marker, rcpt="alice+tag@example.test")
    with Peer(instance.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<alice+tag@example.test>", 250)
        p.expect("RCPT TO:<nobody+tag@example.test>", 550, "5.1.1")
        r = p.data(msg)
        check_code(r, 250)
    check_stored(instance.wait_message(marker), msg, SENDER, "alice+tag@example.test")
