"""Per-user storage quota: `pochta user quota`, SMTP refusals (RFC 3463
X.2.2 "mailbox full") and IMAP QUOTA (RFC 9208: GETQUOTAROOT, GETQUOTA,
SETQUOTA, the OVERQUOTA response code).  The limit is in bytes over all of
a user's mailboxes (sum of stored message sizes); IMAP shows it in KiB."""

import re


from pochtatest import ALICE, Peer, check_code, deliver_raw, make_message, unique
from test_imap import Raw
from test_imap import inst  # noqa: F401 (inst: one daemon per module)

SENDER = "sender@remote.test"
PW = "quota-Secret-9"


def new_user(inst, quota=None):
    user = "%s@example.test" % unique("q")
    inst.add_user(user, PW)
    if quota is not None:
        inst.cli("user", "quota", user, quota)
    return user


def big_message(marker, rcpt, size):
    body = ("x" * 70 + "\r\n") * (size // 72 + 1)
    return make_message(marker, rcpt=rcpt, body=body)


def imap(inst, user):
    r = Raw(inst)
    _, t = r.cmd("L1", 'LOGIN "%s" "%s"' % (user, PW))
    assert t.startswith(b"L1 OK"), t
    return r


def stored_size(r, box="INBOX"):
    lines, t = r.cmd("st", 'STATUS "%s" (SIZE)' % box)
    assert t.startswith(b"st OK"), t
    return int(re.search(rb"SIZE (\d+)", lines[0]).group(1))


# --- administration ----------------------------------------------------------

def test_cli_user_quota_set_show_and_clear(inst):
    user = new_user(inst)
    assert b"unlimited" in inst.cli("user", "quota", user).stdout
    inst.cli("user", "quota", user, "100M")
    assert b"104857600 bytes" in inst.cli("user", "quota", user).stdout
    inst.cli("user", "quota", user, "0")
    assert b"unlimited" in inst.cli("user", "quota", user).stdout
    r = inst.cli("user", "quota", user, "lots", check=False)
    assert r.returncode != 0 and b"bad size" in r.stderr
    r = inst.cli("user", "quota", "nobody@example.test", "1M", check=False)
    assert r.returncode != 0 and b"no such user" in r.stderr


# --- SMTP ----------------------------------------------------------------------

def test_rfc3463_x22_rcpt_452_when_mailbox_full(inst):
    user = new_user(inst)
    m = unique("full")
    deliver_raw(inst.smtp_port, big_message(m, user, 3000), rcpts=(user,))
    inst.wait_message(m)
    inst.cli("user", "quota", user, "2k")        # already over
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        r = p.cmd("RCPT TO:<%s>" % user)
        check_code(r, 452, "4.2.2", "RCPT to a full mailbox")
        assert "full" in r.text.lower()
        # the other recipients of the transaction are not affected
        p.expect("RCPT TO:<%s>" % ALICE, 250)
    # room again: accepted
    inst.cli("user", "quota", user, "1M")
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % user, 250)


def test_rfc3463_x22_data_552_when_message_would_exceed(inst):
    user = new_user(inst, "8k")
    m = unique("toobig")
    with Peer(inst.smtp_port) as p:
        p.ehlo()
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % user, 250)     # empty mailbox: room
        r = p.data(big_message(m, user, 20000))
        check_code(r, 552, "5.2.2", "end of DATA over quota")
        # the session goes on: a message that fits is taken
        small = unique("fits")
        p.expect("MAIL FROM:<%s>" % SENDER, 250)
        p.expect("RCPT TO:<%s>" % user, 250)
        r = p.data(make_message(small, rcpt=user))
        check_code(r, 250, None, "a message under quota")
    inst.wait_message(small)
    inst.assert_not_stored(m)


def test_quota_several_local_recipients_deliver_to_those_with_room(inst):
    user = new_user(inst, "8k")
    m = unique("multi")
    qid = deliver_raw(inst.smtp_port, big_message(m, user, 20000), rcpts=(user, ALICE))
    assert qid
    paths = inst.wait_messages(m, 1)
    assert len(paths) == 1
    assert "alice" in str(paths[0][0])
    # the refusal is logged, not silent
    assert "over quota" in inst.all_stderr()


# --- IMAP (RFC 9208) -----------------------------------------------------------

def test_rfc9208_capability(inst):
    r = imap(inst, new_user(inst))
    lines, t = r.cmd("c", "CAPABILITY")
    caps = lines[0].split()
    assert b"QUOTA" in caps and b"QUOTA=RES-STORAGE" in caps, lines


def test_rfc9208_getquotaroot_and_getquota_storage_in_kib(inst):
    user = new_user(inst, "100k")
    m = unique("use")
    deliver_raw(inst.smtp_port, big_message(m, user, 5000), rcpts=(user,))
    inst.wait_message(m)
    r = imap(inst, user)
    used = stored_size(r)
    kib = (used + 1023) // 1024
    lines, t = r.cmd("g", "GETQUOTAROOT INBOX")
    assert t.startswith(b"g OK"), t
    assert lines[0] == b'* QUOTAROOT INBOX ""', lines
    assert lines[1] == b'* QUOTA "" (STORAGE %d 100)' % kib, lines
    lines, t = r.cmd("g2", 'GETQUOTA ""')
    assert t.startswith(b"g2 OK"), t
    assert lines == [b'* QUOTA "" (STORAGE %d 100)' % kib], lines
    # only one quota root exists
    _, t = r.cmd("g3", 'GETQUOTA "other"')
    assert t.startswith(b"g3 NO"), t
    _, t = r.cmd("g4", "GETQUOTAROOT nosuchbox")
    assert t.startswith(b"g4 NO"), t


def test_rfc9208_unlimited_root_has_no_resources(inst):
    r = imap(inst, new_user(inst))
    lines, t = r.cmd("g", "GETQUOTAROOT INBOX")
    assert t.startswith(b"g OK"), t
    assert lines == [b'* QUOTAROOT INBOX ""', b'* QUOTA "" ()'], lines


def test_rfc9208_setquota_refused(inst):
    r = imap(inst, new_user(inst, "1M"))
    _, t = r.cmd("s", 'SETQUOTA "" (STORAGE 999999)')
    assert t.startswith(b"s NO [NOPERM]"), t
    lines, _ = r.cmd("g", 'GETQUOTA ""')
    assert lines == [b'* QUOTA "" (STORAGE 0 1024)'], lines


def test_rfc9208_append_and_copy_over_quota(inst):
    user = new_user(inst, "10k")
    r = imap(inst, user)
    small = b"From: a@example.test\r\nSubject: s\r\n\r\n" + b"y" * 3000 + b"\r\n"
    r.send(b"a1 APPEND INBOX {%d+}\r\n" % len(small) + small + b"\r\n")
    _, t = r.until("a1")
    assert t.startswith(b"a1 OK"), t
    big = b"From: a@example.test\r\nSubject: b\r\n\r\n" + b"z" * 9000 + b"\r\n"
    r.send(b"a2 APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
    _, t = r.until("a2")
    assert t.startswith(b"a2 NO [OVERQUOTA]"), t
    # COPY of the 3 kB message: 6 kB fits, a third copy (9 kB) fits, a fourth does not
    _, t = r.cmd("s", "SELECT INBOX")
    assert t.startswith(b"s OK"), t
    _, t = r.cmd("c1", "COPY 1 INBOX")
    assert t.startswith(b"c1 OK"), t
    _, t = r.cmd("c2", "COPY 1:2 INBOX")
    assert t.startswith(b"c2 NO [OVERQUOTA]"), t
    # MOVE stays inside the quota root: allowed even when full
    _, t = r.cmd("cr", "CREATE Other")
    assert t.startswith(b"cr OK"), t
    _, t = r.cmd("m", "MOVE 1 Other")
    assert t.startswith(b"m OK"), t
    assert stored_size(r) + stored_size(r, "Other") <= 10240
