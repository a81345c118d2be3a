"""A short, fixed run of bench/soak.py against the built daemon: a few dozen
legitimate SMTP/POP3/IMAP clients next to slowloris, oversized lines and
messages, garbage, half-open TLS handshakes, AUTH guessing, a connection
flood from one address and clients that vanish mid-DATA, for 15 seconds.

The soak itself proves (and exits non-zero otherwise): pochtad stays up and
exits 0 on SIGTERM without a sanitizer report, RSS and sockets come back to
the baseline, every message acknowledged with 250 is stored exactly once per
recipient and byte-for-byte intact (or was deleted once over POP3), nothing
aborted or refused is stored, every legitimate session succeeds, and the
per-address connection limit (421) and AUTH failure limit (454) bite.

Counts are kept modest so that it passes on two cores under ASan."""

import os
import subprocess
import sys

import pochtatest

SOAK = pochtatest.REPO / "bench" / "soak.py"


def test_soak_short_mixed_hostile_load():
    build = pochtatest.build_dir()
    args = [sys.executable, str(SOAK), "--build", str(build),
            "--port-base", str(pochtatest.allocate_port_base()),
            "--seconds", "15", "--users", "10",
            "--smtp-clients", "30", "--pop3-clients", "6", "--imap-clients", "3",
            "--slowloris", "24", "--slowloris-interval", "2",
            "--tls-half", "12", "--tls-stall", "5", "--garbage", "6", "--oversize", "4",
            "--auth-guess", "4", "--mid-data", "6",
            "--per-ip", "32", "--flood-extra", "12",
            "--io-timeout", "60", "--session-timeout", "150"]
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
                       env=dict(os.environ))
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0 and "\nPASS:" in out, "soak failed (exit %d):\n%s" % (r.returncode, out[-12000:])
    # The figures the soak printed must show real work on every side.
    figures = {}
    for line in out.splitlines():
        parts = line.rsplit(None, 1)
        if len(parts) == 2 and parts[1].isdigit():
            figures[parts[0].strip()] = int(parts[1])
    for key in ("smtp messages accepted (250)", "pop3 sessions ok", "flood connections refused 421",
                "disconnects mid-DATA", "half-open TLS handshakes", "slowloris connections",
                "final: messages read back"):
        assert figures.get(key, 0) > 0, "soak did not exercise %r:\n%s" % (key, out[-6000:])
    assert figures.get("final: accepted copies missing", 1) == 0, out[-6000:]
