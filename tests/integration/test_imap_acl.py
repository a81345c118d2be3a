"""ACL (RFC 4314) on mailboxes shared between users, seen through the
"Other Users" namespace (RFC 2342): SETACL by the owner, GETACL, MYRIGHTS
and LISTRIGHTS in the RFC's syntax, the other user's LIST/SELECT/FETCH/
APPEND/COPY/STORE/EXPUNGE under the rights of RFC 4314 section 4, NO with
[NOPERM] or [NONEXISTENT] when a right is missing, DELETEACL revoking, and
names that try to climb out of the namespace refused."""


import pytest

from pochtatest import ALICE, BOB, close_all, unique
from test_imap import SHARED_CONF, Raw
from test_imap import inst, ok  # noqa: F401 (inst: one daemon per module)
from pochtatest import wait_port
from test_imap import imap_ports, make_imap_instance  # noqa: F401 (a fixture)


def no(r, tag, text, code=None):
    lines, t = r.cmd(tag, text)
    assert t.startswith(tag.encode() + b" NO"), (text, t, lines)
    if code:
        assert t.startswith(tag.encode() + b" NO [" + code.encode() + b"]"), (text, t)
    return lines


def session(inst, user):
    r = Raw(inst)
    r.login(user)
    return r


MSG = b"From: bob@example.test\r\nSubject: shared one\r\n\r\nshared body\r\n"


@pytest.fixture
def shared(inst):
    """bob's new folder with one message; alice and bob sessions."""
    folder = unique("Team")
    bob = session(inst, BOB)
    ok(bob, "c", 'CREATE "%s"' % folder)
    ok(bob, "a", b'APPEND "%s" {%d+}\r\n%s' % (folder.encode(), len(MSG), MSG))
    alice = session(inst, ALICE)
    yield folder, bob, alice, "Other Users/%s/%s" % (BOB, folder)
    bob.close()
    alice.close()


def listed(r, pattern='"" "*"'):
    lines = ok(r, "l", "LIST " + pattern)
    return [l for l in lines if l.startswith(b"* LIST")]


def test_4314_capability_and_2342_namespace(inst):
    r = session(inst, ALICE)
    lines = ok(r, "c", "CAPABILITY")
    caps = lines[0].split()
    assert b"ACL" in caps and b"RIGHTS=texk" in caps and b"NAMESPACE" in caps
    assert ok(r, "n", "NAMESPACE") == [b'* NAMESPACE (("" "/")) (("Other Users/" "/")) NIL']
    r.close()


def test_4314_3_owner_commands_exact_syntax(shared):
    folder, bob, alice, name = shared
    f = folder.encode()
    assert ok(bob, "m", 'MYRIGHTS "%s"' % folder) == [b"* MYRIGHTS " + f + b" lrswipkxteacd"]
    assert ok(bob, "g", 'GETACL "%s"' % folder) == [b"* ACL " + f + b" bob@example.test lrswipkxteacd"]
    ok(bob, "s", 'SETACL "%s" %s lr' % (folder, ALICE))
    ok(bob, "s2", 'SETACL "%s" anyone +l' % folder)
    assert ok(bob, "g2", 'GETACL "%s"' % folder) == [
        b"* ACL " + f + b" bob@example.test lrswipkxteacd alice@example.test lr anyone l"]
    # RFC 2086 letters: c = k, d = x t e, echoed back with c and d
    ok(bob, "s3", 'SETACL "%s" %s lrswicda' % (folder, ALICE))
    assert ok(bob, "g3", 'GETACL "%s"' % folder) == [
        b"* ACL " + f + b" bob@example.test lrswipkxteacd alice@example.test lrswikxteacd anyone l"]
    assert ok(bob, "lr", 'LISTRIGHTS "%s" %s' % (folder, ALICE)) == [
        b"* LISTRIGHTS " + f + b' alice@example.test "" l r s w i p k x t e a c d']
    assert ok(bob, "lr2", 'LISTRIGHTS "%s" %s' % (folder, BOB)) == [
        b"* LISTRIGHTS " + f + b" bob@example.test lrswipkxtea"]
    # -rights removes, +rights adds
    ok(bob, "s4", 'SETACL "%s" %s -kxted' % (folder, ALICE))
    assert b"alice@example.test lrswia " in ok(bob, "g4", 'GETACL "%s"' % folder)[0] + b" "
    ok(bob, "s5", 'SETACL "%s" %s lrswi' % (folder, ALICE))
    ok(bob, "d", 'DELETEACL "%s" anyone' % folder)
    assert ok(bob, "g5", 'GETACL "%s"' % folder) == [
        b"* ACL " + f + b" bob@example.test lrswipkxteacd alice@example.test lrswi"]


def test_4314_3_1_refusals(shared):
    folder, bob, alice, name = shared
    # an unknown right is BAD, never ignored
    _, t = bob.cmd("b", 'SETACL "%s" %s lrQ' % (folder, ALICE))
    assert t.startswith(b"b BAD"), t
    # negative rights are not supported
    no(bob, "n", 'SETACL "%s" -%s r' % (folder, ALICE), "CANNOT")
    # unknown account, the owner itself, no such mailbox
    no(bob, "u", 'SETACL "%s" nobody@example.test r' % folder, "CANNOT")
    no(bob, "o", 'SETACL "%s" %s r' % (folder, BOB), "CANNOT")
    no(bob, "x", 'SETACL "%s" %s r' % (unique("nope"), ALICE), "NONEXISTENT")


def test_4314_shared_folder_without_rights_is_invisible(shared):
    folder, bob, alice, name = shared
    assert not [l for l in listed(alice) if folder.encode() in l]
    no(alice, "s", 'SELECT "%s"' % name, "NONEXISTENT")
    no(alice, "m", 'MYRIGHTS "%s"' % name, "NONEXISTENT")
    no(alice, "g", 'GETACL "%s"' % name, "NONEXISTENT")
    no(alice, "a", b'APPEND "%s" {%d+}\r\n%s' % (name.encode(), len(MSG), MSG))


def test_4314_4_read_only_sharing(shared, inst):
    folder, bob, alice, name = shared
    ok(bob, "s", 'SETACL "%s" %s lr' % (folder, ALICE))
    entries = [l for l in listed(alice) if folder.encode() in l]
    assert entries == [b'* LIST (\\HasNoChildren) "/" "%s"' % name.encode()], listed(alice)
    # the levels above it are there, not selectable
    top = listed(alice, '"" "%"')
    assert any(b'"Other Users"' in l and b"\\HasChildren" in l for l in top), top
    assert ok(alice, "m", 'MYRIGHTS "%s"' % name) == [b'* MYRIGHTS "%s" lr' % name.encode()]
    lines, t = alice.cmd("s", 'SELECT "%s"' % name)
    assert t.startswith(b"s OK [READ-ONLY]"), t     # no right to change anything
    assert b"* 1 EXISTS" in lines
    lines = ok(alice, "f", "FETCH 1 (BODY[] FLAGS)")
    assert MSG in b"\r\n".join(lines)
    lines = ok(alice, "se", "UID SEARCH TEXT shared")
    assert any(l.startswith(b"* SEARCH 1") for l in lines), lines
    no(alice, "st", "STORE 1 +FLAGS (\\Flagged)")
    no(alice, "e", "EXPUNGE")
    no(alice, "ap", b'APPEND "%s" {%d+}\r\n%s' % (name.encode(), len(MSG), MSG), "NOPERM")
    # not the administrator
    no(alice, "sa", 'SETACL "%s" anyone lr' % name, "NOPERM")
    no(alice, "ga", 'GETACL "%s"' % name, "NOPERM")
    no(alice, "lr", 'LISTRIGHTS "%s" anyone' % name, "NOPERM")
    no(alice, "d", 'DELETE "%s"' % name, "NOPERM")
    # reading did not set \Seen for the owner (no s right)
    ok(bob, "sel", 'SELECT "%s"' % folder)
    lines = ok(bob, "f", "FETCH 1 FLAGS")
    assert b"\\Seen" not in lines[0], lines
    # the own INBOX is still the own one while the shared one is selected
    lines = ok(alice, "st2", "STATUS INBOX (MESSAGES)")
    assert lines[0].startswith(b"* STATUS INBOX")
    ok(alice, "cl", "CLOSE")


def test_4314_4_read_write_sharing(shared):
    folder, bob, alice, name = shared
    ok(bob, "s", 'SETACL "%s" %s lrswi' % (folder, ALICE))
    _, t = alice.cmd("s", 'SELECT "%s"' % name)
    assert t.startswith(b"s OK [READ-WRITE]"), t
    ok(alice, "st", "STORE 1 +FLAGS (\\Flagged \\Seen)")
    no(alice, "t", "STORE 1 +FLAGS (\\Deleted)", "NOPERM")     # needs t
    no(alice, "e", "EXPUNGE", "NOPERM")                          # needs e
    # APPEND into it (i), visible to the owner
    m2 = b"Subject: from alice\r\n\r\nhello bob\r\n"
    lines, t = alice.cmd("ap", b'APPEND "%s" {%d+}\r\n%s' % (name.encode(), len(m2), m2))
    assert t.startswith(b"ap OK [APPENDUID"), t
    # COPY from the shared folder into alice's own INBOX, and back
    lines, t = alice.cmd("cp", "COPY 1 INBOX")
    assert t.startswith(b"cp OK [COPYUID"), t
    ok(alice, "cl", "CLOSE")
    ok(alice, "si", "SELECT INBOX")
    lines = ok(alice, "sr", "SEARCH SUBJECT \"shared one\"")
    found = lines[0].split()[2:]
    assert found, lines
    lines, t = alice.cmd("cb", "COPY %s \"%s\"" % (found[-1].decode(), name))
    assert t.startswith(b"cb OK [COPYUID"), t
    ok(alice, "un", "UNSELECT")
    st = ok(bob, "st", 'STATUS "%s" (MESSAGES)' % folder)
    assert st[0].endswith(b"(MESSAGES 3)"), st
    ok(bob, "sel", 'SELECT "%s"' % folder)
    lines = ok(bob, "f", "FETCH 1 FLAGS")
    assert b"\\Flagged" in lines[0] and b"\\Seen" in lines[0], lines
    # MOVE out of it needs t and e: grant them, then alice can expunge
    ok(bob, "s2", 'SETACL "%s" %s +te' % (folder, ALICE))
    ok(alice, "s3", 'SELECT "%s"' % name)
    ok(alice, "d", "STORE 3 +FLAGS (\\Deleted)")
    lines = ok(alice, "e", "EXPUNGE")
    assert b"* 3 EXPUNGE" in lines, lines
    ok(alice, "un2", "UNSELECT")


def test_4314_deleteacl_revokes(shared):
    folder, bob, alice, name = shared
    ok(bob, "s", 'SETACL "%s" %s lr' % (folder, ALICE))
    ok(alice, "sel", 'EXAMINE "%s"' % name)
    ok(alice, "un", "UNSELECT")
    ok(bob, "d", 'DELETEACL "%s" %s' % (folder, ALICE))
    no(alice, "sel2", 'SELECT "%s"' % name, "NONEXISTENT")
    assert not [l for l in listed(alice) if folder.encode() in l]


def test_4314_administer_right(shared, inst):
    folder, bob, alice, name = shared
    ok(bob, "s", 'SETACL "%s" %s lra' % (folder, ALICE))
    # with "a" alice may grant others (not the owner's rights)
    ok(alice, "sa", 'SETACL "%s" anyone l' % name)
    lines = ok(alice, "ga", 'GETACL "%s"' % name)
    assert lines == [b'* ACL "%s" bob@example.test lrswipkxteacd alice@example.test lra anyone l' % name.encode()]
    no(alice, "so", 'SETACL "%s" %s r' % (name, BOB), "CANNOT")


def test_path_tricks_are_refused(shared):
    folder, bob, alice, name = shared
    ok(bob, "s", 'SETACL "%s" anyone lrswipkxtea' % folder)
    for bad in ("Other Users/../INBOX", "Other Users/%s/../../%s" % (BOB, folder),
                "Other Users/%s/../%s" % (BOB, folder), "Other Users/%s/./%s" % (BOB, folder),
                "Other Users/..", "Other Users", "Other Users/%s" % BOB, "Other Users/x/INBOX"):
        no(alice, "s", 'SELECT "%s"' % bad)
        no(alice, "m", 'MYRIGHTS "%s"' % bad)
        no(alice, "g", 'SETACL "%s" anyone l' % bad)
    # the namespace cannot be shadowed by a private mailbox
    no(alice, "c", 'CREATE "Other Users/%s/x"' % ALICE)
    no(alice, "c2", 'CREATE "other users/evil"')
    # creating directly under another user's top level needs more than k
    no(alice, "c3", 'CREATE "Other Users/%s/x"' % BOB)
    # but a child of a folder with k is fine
    ok(alice, "c4", 'CREATE "%s/sub"' % name)
    lines = ok(bob, "l", 'LIST "" "%s/*"' % folder)
    assert [l.replace(b'"', b"") for l in lines] == [b"* LIST (\\HasNoChildren) / %s/sub" % folder.encode()], lines
    ok(alice, "d", 'DELETE "%s/sub"' % name)


def test_rfc9208_4314_shared_folder_charges_the_owners_quota(inst):
    """APPEND, COPY and MOVE into another user's mailbox are counted in the
    owner's quota root (RFC 9208 3.1, every mailbox belongs to its owner's
    root), not in the quota of the user putting the message there."""
    pw = "acl-Quota-7"
    owner = "%s@example.test" % unique("qo")
    guest = "%s@example.test" % unique("qg")
    for u, q in ((owner, "10k"), (guest, "4k")):
        inst.add_user(u, pw)
        inst.cli("user", "quota", u, q)

    def login(u):
        r = Raw(inst)
        _, t = r.cmd("L1", 'LOGIN "%s" "%s"' % (u, pw))
        assert t.startswith(b"L1 OK"), t
        return r

    folder = unique("Box")
    name = "Other Users/%s/%s" % (owner, folder)
    o = login(owner)
    ok(o, "c", 'CREATE "%s"' % folder)
    ok(o, "s", 'SETACL "%s" %s lrswite' % (folder, guest))
    g = login(guest)
    m6 = b"Subject: six\r\n\r\n" + b"x" * 6000 + b"\r\n"
    # 6 kB: over the guest's own 4k, inside the owner's 10k -> stored
    _, t = g.cmd("a1", b'APPEND "%s" {%d+}\r\n%s' % (name.encode(), len(m6), m6))
    assert t.startswith(b"a1 OK [APPENDUID"), t
    # another 6 kB would take the owner to 12k: refused, nothing kept
    no(g, "a2", b'APPEND "%s" {%d+}\r\n%s' % (name.encode(), len(m6), m6), "OVERQUOTA")
    st = ok(o, "st", 'STATUS "%s" (MESSAGES)' % folder)
    assert st[0].endswith(b"(MESSAGES 1)"), st
    lines = ok(o, "q", 'GETQUOTAROOT "%s"' % folder)
    assert lines[1].startswith(b'* QUOTA "" (STORAGE 6 10)'), lines
    # the guest's own root is untouched
    lines = ok(g, "q", "GETQUOTAROOT INBOX")
    assert lines[1] == b'* QUOTA "" (STORAGE 0 4)', lines

    ok(g, "sel", 'SELECT "%s"' % name)
    # COPY inside the owner's full root, and out into the guest's small one
    no(g, "c1", 'COPY 1 "%s"' % name, "OVERQUOTA")
    no(g, "c2", "COPY 1 INBOX", "OVERQUOTA")
    no(g, "m1", "MOVE 1 INBOX", "OVERQUOTA")
    # a MOVE between two mailboxes of the owner does not grow the owner's usage
    other = unique("Box2")
    ok(o, "c2", 'CREATE "%s"' % other)
    ok(o, "s2", 'SETACL "%s" %s lrswite' % (other, guest))
    _, t = g.cmd("m2", 'MOVE 1 "Other Users/%s/%s"' % (owner, other))
    assert t.startswith(b"m2 OK"), t
    st = ok(o, "st2", 'STATUS "%s" (MESSAGES)' % other)
    assert st[0].endswith(b"(MESSAGES 1)"), st
    ok(g, "un", "UNSELECT")
    # with room in the guest's root the copy out is taken
    inst.cli("user", "quota", guest, "1M")
    ok(g, "sel2", 'SELECT "Other Users/%s/%s"' % (owner, other))
    _, t = g.cmd("c3", "COPY 1 INBOX")
    assert t.startswith(b"c3 OK [COPYUID"), t
    ok(g, "un2", "UNSELECT")
    # and from the guest's own mailbox into the owner's full root: refused
    ok(g, "si", "SELECT INBOX")
    no(g, "c4", 'COPY 1 "%s"' % name, "OVERQUOTA")
    g.close()
    o.close()


def test_4314_acl_survives_pochta_rebuild(make_imap_instance):
    """The ACL is kept next to the messages, so `pochta rebuild` (index.db
    recreated from the files) restores who may see what."""
    i = make_imap_instance(SHARED_CONF)
    folder = unique("Kept")
    name = "Other Users/%s/%s" % (BOB, folder)
    bob = session(i, BOB)
    ok(bob, "c", 'CREATE "%s"' % folder)
    ok(bob, "a", b'APPEND "%s" {%d+}\r\n%s' % (folder.encode(), len(MSG), MSG))
    ok(bob, "s", 'SETACL "%s" %s lr' % (folder, ALICE))
    ok(bob, "s2", 'SETACL INBOX anyone l')
    ok(bob, "d", 'DELETEACL INBOX anyone')
    bob.close()
    assert i.stop() == 0
    local, dom = BOB.split("@")
    idx = i.mail_dir / dom / local / "index.db"
    for suffix in ("", "-wal", "-shm"):
        p = idx.parent / (idx.name + suffix)
        if p.exists():
            p.unlink()
    r = i.cli("rebuild", BOB, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    i.start()
    for port in imap_ports(i):
        assert wait_port(port, 10, i.proc), i.stderr()
    bob = session(i, BOB)
    assert ok(bob, "g", 'GETACL "%s"' % folder) == [
        b"* ACL " + folder.encode() + b" bob@example.test lrswipkxteacd alice@example.test lr"]
    assert ok(bob, "g2", "GETACL INBOX") == [b"* ACL INBOX bob@example.test lrswipkxteacd"]
    alice = session(i, ALICE)
    assert ok(alice, "m", 'MYRIGHTS "%s"' % name) == [b'* MYRIGHTS "%s" lr' % name.encode()]
    lines, t = alice.cmd("e", 'EXAMINE "%s"' % name)
    assert t.startswith(b"e OK"), t
    assert b"* 1 EXISTS" in lines
    alice.close()
    bob.close()


def test_list_follows_grants_made_after_the_first_list(make_imap_instance):
    """LIST of "Other Users" opens only the stores of owners who granted
    something (imap_shared.h), an index built at the first such LIST: a
    grant, a revocation and an "anyone" grant made after it, by an owner
    who had granted nothing before, must show at the next LIST."""
    i = make_imap_instance(SHARED_CONF)
    owner, reader = "carol-%s@example.test" % unique("o").lower(), "dave-%s@example.test" % unique("r").lower()
    for u in (owner, reader):
        i.add_user(u, "pw-" + u)
    o, r = Raw(i), Raw(i)
    for c, u in ((o, owner), (r, reader)):
        _, t = c.cmd("L", 'LOGIN "%s" "%s"' % (u, "pw-" + u))
        assert t.startswith(b"L OK"), t
    folder = unique("Late")
    name = ("Other Users/%s/%s" % (owner, folder)).encode()
    ok(o, "c", 'CREATE "%s"' % folder)
    assert not [l for l in listed(r) if name in l]        # builds the index
    ok(o, "s", 'SETACL "%s" %s lr' % (folder, reader))
    assert [l for l in listed(r) if name in l], listed(r)
    ok(o, "d", 'DELETEACL "%s" %s' % (folder, reader))
    assert not [l for l in listed(r) if name in l]
    ok(o, "a", 'SETACL "%s" anyone lr' % folder)
    assert [l for l in listed(r) if name in l], listed(r)
    a = session(i, ALICE)
    assert [l for l in listed(a) if name in l]      # any other account too
    close_all(o, r, a)


def test_rfc3501_recent_is_per_mailbox_for_owner_and_readers(shared):
    """RFC 3501 2.3.2: \\Recent belongs to the first session to see a
    message in the mailbox, whoever's session it is: once a reader's
    SELECT of a shared mailbox has seen the new message, the owner's
    SELECT does not see it as recent again (and the other way round)."""
    folder, bob, alice, name = shared
    ok(bob, "s", 'SETACL "%s" %s lrswite' % (folder, ALICE))

    def recent(r, box):
        lines = ok(r, "sel", 'SELECT "%s"' % box)
        counts = [int(l.split()[1]) for l in lines if l.endswith(b" RECENT")]
        ok(r, "un", "UNSELECT")
        return counts

    assert recent(alice, name) == [1]       # the fixture's message, new to everyone
    assert recent(bob, folder) == [0]
    assert recent(alice, name) == [0]
    ok(bob, "a", b'APPEND "%s" {%d+}\r\n%s' % (folder.encode(), len(MSG), MSG))
    assert recent(bob, folder) == [1]
    assert recent(alice, name) == [0]
