"""kill -9 of the sending instance while its queue runner is busy.

Two instances and the test DNS server of test_outbound.py: A holds 40
messages for carol@remote.test (hosted on B), each deferred once while B
was down and retried only an hour later.  A restarts cleanly, B starts, `pochta queue
flush` makes all 40 due at once, and A is killed with SIGKILL when B has
accepted k of them (k = 1: at the start of the run; k = 20: half-way).  A
restarts, recovers its queue and delivers the rest; the test waits until
A's queue is empty and counts the copies in carol's mailbox on B.

What it proves:
- no message is lost: every one of the 40 arrives at least once;
- a message arrives twice only if it fell in the window RFC 5321 6.1
  allows: B answered 250 but A had not yet made the result durable.  A
  logs "queue=ID removed" only after queue_record() committed (and the file
  was unlinked), so a duplicate of a message whose removal A logged before
  the kill would be a real bug and fails the test.  Messages A recorded
  without getting to log it are not redelivered, so they cannot show up as
  duplicates; the allowance can only be too strict, never too loose.
- at most PER_DOMAIN messages arrive twice.  A runs with
  outbound_max_per_domain = PER_DOMAIN, so at most that many SMTP sessions
  to B are open at once, and the runner hands a connection (and the
  domain's slot) to the next message only after the previous message's
  result is committed (queue_runner.h).  So at the kill each session has
  at most one message B may have accepted that A has not recorded: the
  transaction in flight.  Before that design, results were recorded when
  the delivery job ended, a reused connection carried the next message
  first, and runs on a 2-CPU VM saw 2-9 duplicates per kill with 4
  sessions.  The number is printed (pytest -s).
What it does not prove: it does not force the kill into that window, so it
does not show that a duplicate is then produced rather than lost (the
recovery code path for "250 sent, not recorded" is the normal "still
queued" path, which the restart exercises for the in-flight messages).
"""

import re
import time

import pytest

from pochtatest import ALICE, make_message, unique
from test_outbound import CAROL, _world, submit, wait_queue_empty

N = 40
PER_DOMAIN = 4


@pytest.fixture
def world_slow():
    yield from _world(retry_min="1h", retry_max="2h", extra={"outbound_max_per_domain": str(PER_DOMAIN)})


def accepted_count(b):
    return len(re.findall(r"accepted: delivered=", b.stderr()))


def wait_all_deferred(a, n, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = a.queue_list()
        if out.count("attempt") >= n:
            return
        time.sleep(0.2)
    rest = [l for l in a.queue_list().splitlines() if "attempt" not in l]
    raise AssertionError("messages were not all tried and deferred:\n%s\n%s" % ("\n".join(rest), a.stderr()[-3000:]))


@pytest.mark.parametrize("kill_after", [1, 20])
def test_kill9_while_delivering_then_every_message_once(world_slow, kill_after):
    a, b, dns = world_slow
    tag = unique("crash")
    markers, qids = [], []
    for i in range(N):
        marker = "%s-%02d" % (tag, i)
        qids.append(submit(a, [CAROL], make_message(marker, sender=ALICE, rcpt=CAROL)))
        markers.append(marker)
    # B is down: one failed attempt each, next one an hour away.
    wait_all_deferred(a, N)
    # A fresh A for the timed part.  (Without this restart, about one run
    # in three under load saw the runner start nothing after the flush for
    # 30 s, though every index row was due: a queue_runner issue reported
    # separately, not what this test is about.)
    a.restart()

    b.start()
    flushed = a.cli("queue", "flush").stdout.decode()
    assert "%d messages due now" % N in flushed, flushed
    deadline = time.monotonic() + 30
    while accepted_count(b) < kill_after and time.monotonic() < deadline:
        time.sleep(0.002)
    got = accepted_count(b)
    assert got >= kill_after, "B accepted only %d messages after the flush:\n%s\n%s" % (
        got, a.queue_list(), a.stderr()[-6000:])
    a.kill9()
    first_log = a.stderr(-1)
    recorded = set(re.findall(r"queue=([0-9A-Z]{16}) removed: every recipient done", first_log))
    in_b_at_kill = accepted_count(b)
    assert in_b_at_kill < N, "A finished all %d before the kill: the test proved nothing" % N

    a.start()
    wait_queue_empty(a, timeout=90)
    time.sleep(1.0)     # a duplicate would be in flight now, if any

    copies = {m: len(b.find(m)) for m in markers}
    lost = [m for m, c in copies.items() if c == 0]
    assert not lost, "messages lost after kill -9: %s" % lost
    dups = {qids[i]: copies[m] for i, m in enumerate(markers) if copies[m] > 1}
    bad = {q: c for q, c in dups.items() if q in recorded}
    assert not bad, "delivered again after A had recorded them (removed before the kill): %s" % bad
    assert all(c == 2 for c in dups.values()), "a message arrived more than twice: %s" % dups
    assert len(dups) <= PER_DOMAIN, "%d duplicates, more than the %d transactions that can be in flight: %s" % (
        len(dups), PER_DOMAIN, sorted(dups))
    print("kill after %d accepted (B had %d at the kill, A had recorded %d): %d duplicate(s) %s"
          % (kill_after, in_b_at_kill, len(recorded), len(dups), sorted(dups)))


def test_crash_inside_removal_is_finished_at_start(make_instance):
    """The state a kill -9 leaves between queue_record()'s commit of the
    last result and the removal of the file (seen once by the test above
    before the fix): index rows all done, file still there.  At the next
    start the message is removed, not stuck in the queue, not sent again."""
    import sqlite3
    i = make_instance()
    marker = unique("finished")
    r = i.cli("sendmail", "someone@elsewhere.test", input=("Subject: %s\n\nx\n" % marker).encode())
    assert r.returncode == 0, r.stderr
    m = re.search(r"^([0-9A-Z]{16}) ", i.queue_list(), re.M)
    assert m, i.queue_list()
    qid = m.group(1)
    i.stop()
    qfile = i.data_dir / "queue" / qid
    assert qfile.exists()
    db = sqlite3.connect(str(i.data_dir / "queue" / "queue.db"))
    with db:
        db.execute("UPDATE rcpts SET state = 'delivered' WHERE qid = ?", (qid,))
    db.close()
    i.start()
    assert "queue is empty" in i.queue_list()
    assert not qfile.exists()
    assert "queue=%s every recipient was done before the crash: removed" % qid in i.stderr()
