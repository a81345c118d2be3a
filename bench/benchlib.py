"""Shared pieces of the benchmarks in bench/: a throw-away pochta instance
made with `pochta init`, waiting for a port, sampling the resident memory of
a server's whole process tree, SMTP filling of mailboxes, and the message
bodies the benchmarks deliver.  Everything binds to 127.0.0.1 only and every
wait is bounded."""

import base64
import ctypes
import ctypes.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BUILD = os.path.join(HERE, "..", "build")
DOMAIN = "bench.test"
PASSWORD = "bench-Secret-1"


def wait_port(port, timeout=20, proc=None):
    """True once 127.0.0.1:port accepts a connection; False on timeout or
    if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def user_name(i):
    return "u%d@%s" % (i, DOMAIN)


class PochtaInstance:
    """`pochta init DIR --port-base B`, extra config lines appended, users
    u0..u(n-1)@bench.test added, pochtad started in the foreground.  Use as
    a context manager: the daemon is stopped and DIR removed at exit."""

    def __init__(self, build=DEFAULT_BUILD, port_base=39000, users=10, extra_conf=(),
                 password=PASSWORD, wait_ports=(25,), domain=DOMAIN, init_args=()):
        # users: a count (u0..u(n-1)@domain) or a list of addresses
        self.build = os.path.abspath(build)
        self.port_base = port_base
        self.tmp = tempfile.mkdtemp(prefix="pochta-bench-")
        # The daemon may drop to the unprivileged user "pochta".
        os.chmod(self.tmp, 0o755)
        self.dir = os.path.join(self.tmp, "i")
        self.conf = os.path.join(self.dir, "pochta.conf")
        self.proc = None
        try:
            subprocess.run([self._bin("pochta"), "init", self.dir, "--hostname", "mx." + domain,
                            "--domain", domain, "--port-base", str(port_base)] + list(init_args),
                           check=True, stdout=subprocess.DEVNULL, timeout=60)
            # A key may be set only once: extra_conf overrides these defaults.
            given = {line.split("=", 1)[0].strip() for line in extra_conf}
            defaults = [l for l in ("max_connections_per_ip = 1000", "log_level = warn")
                        if l.split("=", 1)[0].strip() not in given]
            with open(self.conf, "a") as f:
                for line in defaults + list(extra_conf):
                    f.write(line + "\n")
            for name in users if isinstance(users, (list, tuple)) else map(user_name, range(users)):
                subprocess.run([self._bin("pochta"), "-c", self.conf, "user", "add", name,
                                "--password-stdin"], input=(password + "\n").encode(),
                               check=True, stdout=subprocess.DEVNULL, timeout=60)
            self.stderr_path = os.path.join(self.tmp, "pochtad.stderr")
            with open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen([self._bin("pochtad"), "-c", self.conf],
                                             stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            for off in wait_ports:
                if not wait_port(port_base + off, 20, self.proc):
                    raise RuntimeError("pochtad did not listen on %d:\n%s" % (port_base + off, self.stderr()))
        except BaseException:
            self.close()
            raise

    def _bin(self, name):
        p = os.path.join(self.build, name)
        if not os.access(p, os.X_OK):
            raise SystemExit("%s is missing: build first (ninja -C build) or pass --build" % p)
        return p

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- memory -----------------------------------------------------------------

def _status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_tree(root):
    """PIDs of `root` and all its descendants (one scan of /proc)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # The comm field may contain spaces and parentheses: split after it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


class RssSampler:
    """Samples VmRSS of a process (and, with tree=True, all its descendants
    summed: Dovecot runs one process per session) every `interval` seconds
    in a background thread.  peak_kib is the largest sum seen; for a single
    process the kernel's own high-water mark (VmHWM) is taken into account
    too, so short spikes between samples are not missed."""

    def __init__(self, pid, tree=False, interval=0.05):
        self.pid = pid
        self.tree = tree
        self.interval = interval
        self.peak_kib = 0
        self.procs_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        pids = process_tree(self.pid) if self.tree else [self.pid]
        total = sum(_status_kib(p, "VmRSS:") for p in pids)
        self.peak_kib = max(self.peak_kib, total)
        self.procs_peak = max(self.procs_peak, len(pids))
        return total

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        if not self.tree:
            self.peak_kib = max(self.peak_kib, _status_kib(self.pid, "VmHWM:"))


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "nproc=%d cpu=%s date=%s" % (os.cpu_count() or 0, model, time.strftime("%Y-%m-%d"))


# --- messages and SMTP --------------------------------------------------------

def make_body(size, tag=""):
    """A message of about `size` bytes with CRLF line ends.  Every tenth
    line begins with a dot, so POP3 byte-stuffing is exercised."""
    head = ("From: <bench@remote.test>\r\nTo: <bench@%s>\r\nSubject: bench %s\r\n"
            "Message-ID: <%s.%d@bench.test>\r\n\r\n" % (DOMAIN, tag, tag or "m", size)).encode()
    lines = []
    n = len(head)
    i = 0
    while n < size:
        line = b"%s%06d benchmark line of seventy-odd characters, padding padding pad\r\n" % (
            b"." if i % 10 == 0 else b"", i)
        lines.append(line)
        n += len(line)
        i += 1
    return head + b"".join(lines)


class SmtpClient:
    """A minimal SMTP client for load generation: one connection, replies
    read whole (multi-line), no checks beyond what the caller asks."""

    def __init__(self, port, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")
        self.reply()                                    # greeting

    def reply(self):
        """The last line of the next reply."""
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("SMTP server closed the connection")
            if line[3:4] != b"-":
                return line

    def cmd(self, line):
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def starttls(self, ctx):
        self.cmd(b"STARTTLS")
        self.sock = ctx.wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")

    def auth_plain(self, user, password):
        tok = base64.b64encode(("\0%s\0%s" % (user, password)).encode())
        r = self.cmd(b"AUTH PLAIN " + tok)
        if not r.startswith(b"235"):
            raise RuntimeError("AUTH refused: %r" % r)

    def send(self, sender, rcpt, content):
        """One pipelined transaction; content is CRLF text not yet
        dot-stuffed.  Raises if DATA is refused; returns the final reply."""
        self.sock.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender.encode(), rcpt.encode()))
        for _ in range(3):
            r = self.reply()
        if not r.startswith(b"354"):
            raise RuntimeError("SMTP refused %s: %r" % (rcpt, r))
        stuffed = content.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        self.sock.sendall(stuffed + b".\r\n")
        return self.reply()

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.sock.close()


def smtp_send(port, rcpt, messages, timeout=60):
    """Deliver `messages` (bytes, CRLF, not yet dot-stuffed) to `rcpt` over
    one SMTP connection to 127.0.0.1:port.  Raises on any refusal."""
    c = SmtpClient(port, timeout)
    try:
        c.cmd(b"EHLO bench.client")
        for m in messages:
            r = c.send("bench@remote.test", rcpt, m)
            if not r.startswith(b"250"):
                raise RuntimeError("SMTP refused message for %s: %r" % (rcpt, r))
    finally:
        c.close()


# --- Dovecot, the comparison target -------------------------------------------------

def yescrypt_hash(password):
    """The same scheme pochta uses (libxcrypt's "$y$", default cost)."""
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$y$", 0, None, 0)
    h = lib.crypt(password.encode(), salt)
    if not h or not h.startswith(b"$y$"):
        raise SystemExit("libcrypt cannot make a yescrypt hash")
    return h.decode()


DOVECOT_CONF = """\
# Generated by bench/benchlib.py: a private Dovecot for the benchmark.
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
protocols = {protocol}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = {tmp}/passwd
}}
userdb {{
  driver = passwd-file
  args = {tmp}/passwd
}}
mail_location = maildir:{tmp}/mail/%u
"""


class DovecotInstance:
    """Debian's Dovecot in a private directory, as root with the mail
    owned by "nobody": users u0..u(n-1)@bench.test with the same yescrypt
    hash pochta uses, plaintext logins on 127.0.0.1:port, and
    `protocol_conf` (the protocol's listeners and limits, formatted with
    {port}) after the common settings."""

    def __init__(self, protocol, port, users, protocol_conf):
        self.dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.access(self.dovecot, os.X_OK) or not os.path.exists("/usr/lib/dovecot/" + protocol):
            raise SystemExit("dovecot-%sd is not installed (apt-get install dovecot-%sd)" % (protocol, protocol))
        if os.getuid() != 0:
            raise SystemExit("--target dovecot needs root (Dovecot switches to the mail user)")
        self.port = port
        if wait_port(port, 0.2):
            raise SystemExit("port %d is already in use" % port)
        self.tmp = tempfile.mkdtemp(prefix="dovecot-%s-bench-" % protocol)
        os.chmod(self.tmp, 0o755)
        self.proc = None
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        os.mkdir(os.path.join(self.tmp, "mail"))
        os.chown(os.path.join(self.tmp, "mail"), self.uid, self.gid)
        h = yescrypt_hash(PASSWORD)
        with open(os.path.join(self.tmp, "passwd"), "w") as f:
            for u in range(users):
                f.write("%s:{CRYPT}%s:%d:%d::%s/mail/%s\n"
                        % (user_name(u), h, self.uid, self.gid, self.tmp, user_name(u)))
        self.conf = os.path.join(self.tmp, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(tmp=self.tmp, protocol=protocol) + protocol_conf.format(port=port))
        self.proc = subprocess.Popen([self.dovecot, "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if not wait_port(port, 20, self.proc):
            log = self.log()
            self.close()
            raise SystemExit("dovecot did not start:\n" + log)
        self.pid = self.proc.pid

    def log(self):
        try:
            with open(os.path.join(self.tmp, "dovecot.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def write_maildir(self, u, messages):
        """User u's maildir written directly: messages (CRLF bytes) in cur/
        with S= and W= sizes in the names, as Dovecot itself would."""
        now = int(time.time())
        md = os.path.join(self.tmp, "mail", user_name(u))
        for sub in ("", "cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        for m, data in enumerate(messages):
            name = "%d.M%dP%d.bench,S=%d,W=%d:2," % (now + m, m, u, len(data), len(data))
            with open(os.path.join(md, "cur", name), "wb") as f:
                f.write(data)
        for dirpath, _dirs, files in os.walk(md):
            os.chown(dirpath, self.uid, self.gid)
            for fn in files:
                os.chown(os.path.join(dirpath, fn), self.uid, self.gid)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)
