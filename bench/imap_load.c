/* IMAP load generator for bench/imap_bench.py (plain IMAP on loopback,
 * one epoll loop, no dependencies beyond libc).
 *
 *   bench_imap_load load PORT [-c clients] [-t seconds] [-k commands]
 *                             [-u users] [-b base] [-s sources] [options]
 *   bench_imap_load idle PORT [-m connections] [-w window] [-u users]
 *                             [-s sources] [options]
 *
 * load: every client logs in (LOGIN), SELECTs INBOX and runs a weighted
 * random mix: FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE) 10 %, FETCH of
 * the header fields of 20 messages 15 %, FETCH BODY.PEEK[] 30 %, STORE
 * +FLAGS (\Seen) 15 %, SEARCH (UNSEEN, FROM, SUBJECT) 20 %, APPEND 10 %
 * (each appended message is then marked \Deleted and removed with UID
 * EXPUNGE), one command at a time as a mail client does; after -k
 * commands it sends LOGOUT and reconnects as the next user.  Every tagged
 * reply must be OK and FETCH/SEARCH/APPEND replies must carry their data;
 * anything else is counted as an error.  Prints commands/s and latency
 * percentiles overall and per command.
 *
 * idle: opens -m sessions (at most -w being set up at once), each LOGIN,
 * SELECT INBOX, IDLE, and prints "READY n seconds" once all are idling.
 * Then it reads commands on stdin:
 *   report U SECONDS  wait until every session of user U has seen
 *                     "* n EXISTS" (or SECONDS pass) and print the
 *                     CLOCK_MONOTONIC times of those first sightings
 *   quit              close everything and exit
 *
 * Options: -P password, -d domain, -U user prefix (users are
 * PREFIX0@DOMAIN .. PREFIX(u-1)@DOMAIN), -T overall limit in seconds.
 * Sources: connection i binds to 127.0.0.(1 + i % sources), so more than
 * one ephemeral port range is available.  Everything is bounded by -T. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* A server's response line (outside literals) longer than this is treated
 * as a protocol error rather than buffered without end. */
#define MAX_LINE (1u << 20)

enum cmd_type {
    C_LOGIN, C_SELECT, C_FETCH_LIST, C_FETCH_HDR, C_FETCH_BODY, C_STORE, C_SEARCH,
    C_APPEND, C_EXPUNGE, C_LOGOUT, C_IDLE, C_NTYPES
};
static const char *const type_name[C_NTYPES] = {
    "LOGIN", "SELECT", "FETCH 1:* list", "FETCH headers", "FETCH body", "STORE",
    "SEARCH", "APPEND", "UID EXPUNGE", "LOGOUT", "IDLE"
};

enum state { S_CONNECTING, S_GREETING, S_BUSY, S_IDLING, S_DONE };

struct conn {
    int fd;
    int id;
    int user;
    enum state state;
    char *in;
    size_t inlen, incap;
    size_t lit_left;        /* literal octets still to skip */
    bool in_resp;           /* inside a response continued after a literal */
    bool resp_tagged;
    char *out;
    size_t outlen, outoff, outcap;
    bool want_out;
    unsigned tagn;
    char tag[16];
    enum cmd_type cmd;
    double t_sent;
    unsigned exists;        /* messages in the selected mailbox */
    unsigned want_fetches;  /* FETCH responses the command must produce */
    unsigned fetches;
    size_t lit_bytes;
    bool saw_search;
    unsigned long append_uid;
    int pending;            /* 0, or 1/2: the \Deleted STORE / UID EXPUNGE due */
    int session_cmds;
    int sessions;
    double exists_at;       /* idle: first "* n EXISTS" while idling */
    unsigned gen;           /* bumped on close: the buffers were reset */
};

static struct {
    const char *mode;
    int port;
    int clients, seconds, per_session, users, base, sources, window, idle_conns, limit;
    const char *password, *domain, *prefix;
} opt = { .clients = 50, .seconds = 30, .per_session = 100, .users = 10, .base = 50,
          .sources = 1, .window = 200, .idle_conns = 10000, .limit = 900,
          .password = "bench-Secret-1", .domain = "bench.test", .prefix = "u" };

static int ep;
static struct conn *conns;
static int nconns;
static double t_start, t_end;
static unsigned long errors;
static unsigned long expunge_races;
static char first_error[512];
static unsigned long long rng = 0x9e3779b97f4a7c15ull;

/* Latency samples (microseconds) of commands completed before t_end. */
struct samples {
    uint32_t *v;
    size_t n, cap;
};
static struct samples lat[C_NTYPES];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? (unsigned)(rng % n) : 0;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return q;
}

static void add_sample(struct samples *s, double secs)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    double us = secs * 1e6;
    s->v[s->n++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static void fail(struct conn *c, const char *fmt, const char *detail, size_t dlen)
{
    errors++;
    if (!first_error[0]) {
        int n = dlen > 200 ? 200 : (int)dlen;
        snprintf(first_error, sizeof first_error, "conn %d user %d %s: %s: %.*s", c->id, c->user,
                 type_name[c->cmd], fmt, n, detail ? detail : "");
    }
}

static void watch(struct conn *c)
{
    struct epoll_event ev = { .events = EPOLLIN | (c->want_out ? EPOLLOUT : 0u), .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(2);
    }
}

static void close_conn(struct conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->gen++;
    c->state = S_DONE;
    c->inlen = c->outlen = c->outoff = c->lit_left = 0;
    c->in_resp = false;
    c->pending = 0;
}

static int flush_out(struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) return -1;
        c->outoff += (size_t)n;
    }
    bool want = c->outoff < c->outlen;
    if (c->outoff == c->outlen) c->outoff = c->outlen = 0;
    if (want != c->want_out) {
        c->want_out = want;
        watch(c);
    }
    return 0;
}

static void put(struct conn *c, const char *data, size_t len)
{
    if (c->outlen + len > c->outcap) {
        c->outcap = (c->outlen + len) * 2;
        c->out = xrealloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
}

/* Queue one tagged command (text without tag and CRLF) and send it. */
static void command(struct conn *c, enum cmd_type t, const char *text, const char *lit, size_t litlen)
{
    char head[512];
    snprintf(c->tag, sizeof c->tag, "a%u", ++c->tagn);
    int n = snprintf(head, sizeof head, "%s %s\r\n", c->tag, text);
    put(c, head, (size_t)n);
    if (lit) {
        put(c, lit, litlen);
        put(c, "\r\n", 2);
    }
    c->cmd = t;
    c->fetches = 0;
    c->want_fetches = 0;
    c->lit_bytes = 0;
    c->saw_search = false;
    c->state = S_BUSY;
    c->t_sent = now();
    c->session_cmds++;
    if (flush_out(c) < 0) {
        fail(c, "write failed", strerror(errno), strlen(strerror(errno)));
        close_conn(c);
    }
}

static const char append_msg[] =
    "From: Load Generator <load@remote.test>\r\n"
    "To: <someone@bench.test>\r\n"
    "Subject: appended by the IMAP benchmark\r\n"
    "Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
    "Message-ID: <append@bench.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "A small draft, as a mail client saves one.\r\n"
    "Second line of the body, nothing more to it.\r\n";

static unsigned base_count(const struct conn *c)
{
    /* Messages 1..base are never expunged, so their sequence numbers stay
     * valid in every session whatever the others append and remove. */
    unsigned b = (unsigned)opt.base;
    return c->exists < b ? c->exists : b;
}

/* Choose and send the next command of a load session. */
static void next_load(struct conn *c)
{
    char buf[256];
    double t = now();
    if (c->pending == 1) {
        snprintf(buf, sizeof buf, "UID STORE %lu +FLAGS.SILENT (\\Deleted)", c->append_uid);
        command(c, C_STORE, buf, NULL, 0);
        c->pending = 2;
        return;
    }
    if (c->pending == 2) {
        snprintf(buf, sizeof buf, "UID EXPUNGE %lu", c->append_uid);
        command(c, C_EXPUNGE, buf, NULL, 0);
        c->pending = 0;
        return;
    }
    if (t >= t_end) {
        close_conn(c);
        return;
    }
    if (c->session_cmds >= opt.per_session) {
        command(c, C_LOGOUT, "LOGOUT", NULL, 0);
        return;
    }
    unsigned nb = base_count(c);
    if (nb == 0) {
        fail(c, "mailbox is empty", "", 0);
        close_conn(c);
        return;
    }
    unsigned r = rnd(100);
    if (r < 10) {
        command(c, C_FETCH_LIST, "FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)", NULL, 0);
        c->want_fetches = c->exists;
    } else if (r < 25) {
        unsigned a = 1 + rnd(nb), b = a + 19 > nb ? nb : a + 19;
        snprintf(buf, sizeof buf, "FETCH %u:%u (UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])", a, b);
        command(c, C_FETCH_HDR, buf, NULL, 0);
        c->want_fetches = b - a + 1;
    } else if (r < 55) {
        snprintf(buf, sizeof buf, "FETCH %u (UID BODY.PEEK[])", 1 + rnd(nb));
        command(c, C_FETCH_BODY, buf, NULL, 0);
        c->want_fetches = 1;
    } else if (r < 70) {
        snprintf(buf, sizeof buf, "STORE %u +FLAGS (\\Seen)", 1 + rnd(nb));
        command(c, C_STORE, buf, NULL, 0);
        c->want_fetches = 1;
    } else if (r < 90) {
        unsigned k = rnd(3);
        if (k == 0)
            command(c, C_SEARCH, "SEARCH UNSEEN", NULL, 0);
        else if (k == 1)
            command(c, C_SEARCH, "SEARCH FROM \"remote.test\"", NULL, 0);
        else {
            snprintf(buf, sizeof buf, "SEARCH SUBJECT \"bench %u\"", rnd(10));
            command(c, C_SEARCH, buf, NULL, 0);
        }
    } else {
        snprintf(buf, sizeof buf, "APPEND INBOX {%zu+}", sizeof append_msg - 1);
        command(c, C_APPEND, buf, append_msg, sizeof append_msg - 1);
    }
}

static void start_conn(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("socket");
        exit(2);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    if (opt.sources > 1) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        sa.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(c->id % opt.sources));
        if (bind(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("bind");
            exit(2);
        }
    }
    sa.sin_addr.s_addr = htonl(0x7f000001u);
    sa.sin_port = htons((uint16_t)opt.port);
    c->state = S_CONNECTING;
    c->session_cmds = 0;
    c->exists = 0;
    c->tagn = 0;
    c->cmd = C_LOGIN;
    c->t_sent = now();
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        fail(c, "connect", strerror(errno), strlen(strerror(errno)));
        close(c->fd);
        c->fd = -1;
        c->state = S_DONE;
        return;
    }
    c->want_out = true;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(2);
    }
}

static void send_login(struct conn *c)
{
    char buf[300];
    snprintf(buf, sizeof buf, "LOGIN \"%s%d@%s\" \"%s\"", opt.prefix, c->user, opt.domain, opt.password);
    command(c, C_LOGIN, buf, NULL, 0);
    c->session_cmds = 0;
}

static bool starts(const char *l, size_t n, const char *p)
{
    size_t k = strlen(p);
    return n >= k && memcmp(l, p, k) == 0;
}

static bool idle_mode(void)
{
    return opt.mode[0] == 'i';
}

static int idling;

/* A tagged response to the command in flight. */
static void tagged(struct conn *c, const char *l, size_t n)
{
    double t = now();
    size_t tl = strlen(c->tag);
    const char *st = l + tl + 1;
    size_t sn = n - tl - 1;
    /* Another session expunged a message this one still sees (the
     * appended ones): RFC 9051 7.1 allows NO [EXPUNGEISSUED] then. */
    bool raced = starts(st, sn, "NO [EXPUNGEISSUED]") &&
                 (c->cmd == C_FETCH_LIST || c->cmd == C_FETCH_HDR || c->cmd == C_FETCH_BODY ||
                  c->cmd == C_STORE || c->cmd == C_SEARCH);
    if (raced) {
        expunge_races++;
    } else if (!starts(st, sn, "OK")) {
        fail(c, "not OK", l, n);
        close_conn(c);
        if (!idle_mode() && t < t_end) start_conn(c);
        return;
    }
    bool ok = true;
    if (raced) {
        /* the data may be partial: nothing to check */
    } else if ((c->cmd == C_FETCH_LIST || c->cmd == C_FETCH_HDR) && c->fetches < c->want_fetches) {
        fail(c, "too few FETCH responses", l, n);
        ok = false;
    } else if (c->cmd == C_FETCH_BODY && (c->fetches < 1 || c->lit_bytes == 0)) {
        fail(c, "no body literal", l, n);
        ok = false;
    } else if (c->cmd == C_SEARCH && !c->saw_search) {
        fail(c, "no SEARCH response", l, n);
        ok = false;
    } else if (c->cmd == C_APPEND) {
        const char *p = NULL;
        for (size_t i = 0; i + 11 <= sn; i++)
            if (memcmp(st + i, "[APPENDUID ", 11) == 0) { p = st + i + 11; break; }
        char *end;
        if (!p || (strtoul(p, &end, 10), *end != ' ')) {
            fail(c, "no APPENDUID", l, n);
            ok = false;
        } else {
            c->append_uid = strtoul(end + 1, NULL, 10);
            c->pending = 1;
        }
    }
    if (ok && t <= t_end && !idle_mode()) add_sample(&lat[c->cmd], t - c->t_sent);
    switch (c->cmd) {
    case C_LOGIN:
        command(c, C_SELECT, "SELECT INBOX", NULL, 0);
        return;
    case C_SELECT:
        if (idle_mode()) {
            command(c, C_IDLE, "IDLE", NULL, 0);
            return;
        }
        break;
    case C_LOGOUT:
        close_conn(c);
        c->sessions++;
        c->user = (c->user + 1) % opt.users;
        if (t < t_end) start_conn(c);
        return;
    default:
        break;
    }
    next_load(c);
}

/* One complete response line (or its first part, before a literal). */
static void line(struct conn *c, const char *l, size_t n, bool first_part)
{
    if (first_part) {
        size_t tl = strlen(c->tag);
        c->resp_tagged = c->state == S_BUSY && n > tl && memcmp(l, c->tag, tl) == 0 && l[tl] == ' ';
        if (l[0] == '*' && n > 2) {
            if (c->state == S_GREETING) {
                if (!starts(l, n, "* OK")) {
                    fail(c, "bad greeting", l, n);
                    close_conn(c);
                    return;
                }
                send_login(c);
                return;
            }
            char *end;
            unsigned long v = strtoul(l + 2, &end, 10);
            size_t rest = n - (size_t)(end - l);
            if (end != l + 2 && starts(end, rest, " EXISTS")) {
                c->exists = (unsigned)v;
                if (c->state == S_IDLING && c->exists_at == 0) c->exists_at = now();
            } else if (end != l + 2 && starts(end, rest, " EXPUNGE")) {
                if (c->exists) c->exists--;
            } else if (end != l + 2 && starts(end, rest, " FETCH")) {
                c->fetches++;
            } else if (starts(l, n, "* SEARCH")) {
                c->saw_search = true;
            } else if (starts(l, n, "* BYE") && c->cmd != C_LOGOUT) {
                fail(c, "unexpected BYE", l, n);
            }
            return;
        }
        if (l[0] == '+') {
            if (c->cmd == C_IDLE && c->state == S_BUSY) {
                c->state = S_IDLING;
                idling++;
            }
            return;
        }
    }
    if (c->resp_tagged && first_part) tagged(c, l, n);
}

/* Split the input into response lines, skipping literal octets. */
static void parse_input(struct conn *c)
{
    size_t pos = 0;
    unsigned gen = c->gen;
    while (pos < c->inlen && c->gen == gen) {
        if (c->lit_left) {
            size_t k = c->inlen - pos < c->lit_left ? c->inlen - pos : c->lit_left;
            c->lit_left -= k;
            c->lit_bytes += k;
            pos += k;
            continue;
        }
        char *p = c->in + pos;
        char *nl = memchr(p, '\n', c->inlen - pos);
        if (!nl) break;
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r') n--;
        bool first = !c->in_resp;
        size_t lit = 0;
        if (n >= 3 && p[n - 1] == '}') {
            size_t i = n - 1;
            while (i > 0 && isdigit((unsigned char)p[i - 1])) i--;
            if (i > 0 && i < n - 1 && p[i - 1] == '{') lit = strtoul(p + i, NULL, 10);
            c->in_resp = i > 0 && i < n - 1 && p[i - 1] == '{';
        } else {
            c->in_resp = false;
        }
        pos = (size_t)(nl - c->in) + 1;
        c->lit_left = lit;
        line(c, p, n, first);
    }
    if (c->gen != gen) return;
    memmove(c->in, c->in + pos, c->inlen - pos);
    c->inlen -= pos;
    if (c->inlen > MAX_LINE) {
        fail(c, "response line too long", "", 0);
        close_conn(c);
    }
}

static void on_readable(struct conn *c)
{
    unsigned gen = c->gen;
    for (;;) {
        if (c->incap - c->inlen < 65536) {
            c->incap = c->incap ? c->incap * 2 : 131072;
            c->in = xrealloc(c->in, c->incap);
        }
        ssize_t n = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            bool expected = c->cmd == C_LOGOUT;
            const char *why = n < 0 ? strerror(errno) : "EOF";
            if (!expected) fail(c, "connection closed", why, strlen(why));
            if (c->state == S_IDLING) idling--;
            close_conn(c);
            if (!idle_mode() && now() < t_end) start_conn(c);
            return;
        }
        c->inlen += (size_t)n;
        parse_input(c);
        if (c->gen != gen) return;
    }
}

static void on_event(struct conn *c, uint32_t events)
{
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c, "connect", strerror(err), strlen(strerror(err)));
            close_conn(c);
            return;
        }
        c->state = S_GREETING;
        c->want_out = false;
        watch(c);
    }
    if (events & EPOLLOUT) {
        if (flush_out(c) < 0) {
            fail(c, "write", strerror(errno), strlen(strerror(errno)));
            close_conn(c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
}

static void raise_nofile(int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
    if (rl.rlim_cur >= (rlim_t)want) return;
    if (rl.rlim_max < (rlim_t)want) rl.rlim_max = (rlim_t)want;
    rl.rlim_cur = (rlim_t)want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        fprintf(stderr, "warning: open file limit stays at %llu (wanted %d)\n",
                (unsigned long long)rl.rlim_cur, want);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const struct samples *s, double p)
{
    if (!s->n) return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->v[i] / 1000.0;
}

static void print_row(const char *name, struct samples *s)
{
    qsort(s->v, s->n, sizeof *s->v, cmp_u32);
    printf("%-16s %9zu %9.1f %8.2f %8.2f %8.2f\n", name, s->n, (double)s->n / opt.seconds, pct(s, 0.5),
           pct(s, 0.99), s->n ? s->v[s->n - 1] / 1000.0 : 0.0);
}

static void loop_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR) {
        perror("epoll_wait");
        exit(2);
    }
    for (int i = 0; i < n; i++) {
        if (!evs[i].data.ptr) continue;     /* stdin, handled by the caller */
        struct conn *c = evs[i].data.ptr;
        if (c->fd >= 0) on_event(c, evs[i].events);
    }
}

static int run_load(void)
{
    nconns = opt.clients;
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) return 2;
    raise_nofile(nconns * 2 + 64);
    t_start = now();
    t_end = t_start + opt.seconds;
    for (int i = 0; i < nconns; i++) {
        conns[i].id = i;
        conns[i].user = i % opt.users;
        start_conn(&conns[i]);
    }
    double hard = t_end + 30;
    for (;;) {
        int live = 0;
        for (int i = 0; i < nconns; i++) live += conns[i].fd >= 0;
        if (!live) break;
        if (now() > hard) {
            fprintf(stderr, "%d clients still busy 30 s after the end\n", live);
            errors += (unsigned long)live;
            break;
        }
        loop_once(100);
    }
    struct samples all = { 0 };
    unsigned long sessions = 0;
    for (int i = 0; i < nconns; i++) sessions += (unsigned long)conns[i].sessions;
    printf("clients=%d seconds=%d commands_per_session=%d users=%d sessions=%lu\n", opt.clients,
           opt.seconds, opt.per_session, opt.users, sessions);
    printf("%-16s %9s %9s %8s %8s %8s\n", "command", "count", "per_s", "p50_ms", "p99_ms", "max_ms");
    for (int t = 0; t < C_NTYPES; t++) {
        if (t == C_IDLE) continue;
        for (size_t k = 0; k < lat[t].n; k++) {
            if (all.n == all.cap) {
                all.cap = all.cap ? all.cap * 2 : 65536;
                all.v = xrealloc(all.v, all.cap * sizeof *all.v);
            }
            all.v[all.n++] = lat[t].v[k];
        }
        print_row(type_name[t], &lat[t]);
    }
    print_row("ALL", &all);
    printf("expunge_races=%lu (NO [EXPUNGEISSUED]: a message appended by another session was expunged "
           "while this one still saw it)\n", expunge_races);
    printf("errors=%lu\n", errors);
    if (errors) printf("first_error=%s\n", first_error);
    return errors ? 1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(int user, double secs)
{
    double deadline = now() + secs;
    int want = 0, seen = 0;
    for (;;) {
        want = seen = 0;
        for (int i = 0; i < nconns; i++) {
            if (conns[i].user != user) continue;
            want++;
            seen += conns[i].exists_at > 0;
        }
        if (seen == want || now() > deadline) break;
        loop_once(5);
    }
    double *t = calloc((size_t)(seen ? seen : 1), sizeof *t);
    int k = 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].user == user && conns[i].exists_at > 0) t[k++] = conns[i].exists_at;
    qsort(t, (size_t)k, sizeof *t, cmp_double);
    if (k)
        printf("EXISTS user=%d sessions=%d seen=%d first=%.6f p50=%.6f p99=%.6f last=%.6f\n", user, want, k,
               t[0], t[(k - 1) / 2], t[(size_t)(0.99 * (k - 1) + 0.5)], t[k - 1]);
    else
        printf("EXISTS user=%d sessions=%d seen=0\n", user, want);
    fflush(stdout);
    free(t);
}

static int run_idle(void)
{
    nconns = opt.idle_conns;
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) return 2;
    raise_nofile(nconns + 256);
    t_start = now();
    t_end = t_start + opt.limit;
    int started = 0;
    double last_note = t_start;
    while (idling < nconns) {
        int busy = 0;
        for (int i = 0; i < started; i++) busy += conns[i].fd >= 0 && conns[i].state != S_IDLING;
        while (busy < opt.window && started < nconns) {
            conns[started].id = started;
            conns[started].user = started % opt.users;
            start_conn(&conns[started]);
            started++;
            busy++;
        }
        int dead = 0;
        for (int i = 0; i < started; i++) dead += conns[i].fd < 0;
        if (dead) {
            fprintf(stderr, "%d connections failed: %s\n", dead, first_error);
            printf("FAILED idling=%d errors=%lu\n", idling, errors);
            return 1;
        }
        if (now() > t_end) {
            printf("FAILED timeout idling=%d\n", idling);
            return 1;
        }
        if (now() - last_note > 10) {
            last_note = now();
            fprintf(stderr, "idle: %d of %d sessions idling after %.0f s\n", idling, nconns, last_note - t_start);
        }
        loop_once(50);
    }
    printf("READY %d %.1f\n", idling, now() - t_start);
    fflush(stdout);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    char cmd[128];
    size_t clen = 0;
    for (;;) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 1000);
        if (now() > t_end) {
            printf("FAILED limit of %d s reached\n", opt.limit);
            return 1;
        }
        bool input = false;
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                input = true;
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            if (c->fd >= 0) on_event(c, evs[i].events);
        }
        if (!input) continue;
        ssize_t r = read(0, cmd + clen, sizeof cmd - 1 - clen);
        if (r <= 0) return errors ? 1 : 0;
        clen += (size_t)r;
        cmd[clen] = '\0';
        char *nl;
        while ((nl = strchr(cmd, '\n'))) {
            *nl = '\0';
            int user;
            double secs;
            if (sscanf(cmd, "report %d %lf", &user, &secs) == 2) {
                report(user, secs);
            } else if (strcmp(cmd, "quit") == 0) {
                printf("BYE idling=%d errors=%lu%s%s\n", idling, errors, errors ? " first_error=" : "",
                       first_error);
                fflush(stdout);
                return errors ? 1 : 0;
            }
            size_t used = (size_t)(nl - cmd) + 1;
            memmove(cmd, nl + 1, clen - used + 1);
            clen -= used;
        }
        if (clen == sizeof cmd - 1) clen = 0;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_imap_load load|idle PORT [-c clients] [-t seconds] [-k commands]\n"
                    "       [-u users] [-b base messages] [-s sources] [-m idle connections] [-w window]\n"
                    "       [-P password] [-d domain] [-U user prefix] [-T limit seconds]\n");
    exit(2);
}

static int num(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 10000000) usage();
    return (int)v;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "load") != 0 && strcmp(argv[1], "idle") != 0)) usage();
    opt.mode = argv[1];
    opt.port = num(argv[2]);
    int ch;
    optind = 3;
    while ((ch = getopt(argc, argv, "c:t:k:u:b:s:m:w:P:d:U:T:")) != -1) {
        switch (ch) {
        case 'c': opt.clients = num(optarg); break;
        case 't': opt.seconds = num(optarg); break;
        case 'k': opt.per_session = num(optarg); break;
        case 'u': opt.users = num(optarg); break;
        case 'b': opt.base = num(optarg); break;
        case 's': opt.sources = num(optarg); break;
        case 'm': opt.idle_conns = num(optarg); break;
        case 'w': opt.window = num(optarg); break;
        case 'P': opt.password = optarg; break;
        case 'd': opt.domain = optarg; break;
        case 'U': opt.prefix = optarg; break;
        case 'T': opt.limit = num(optarg); break;
        default: usage();
        }
    }
    if (opt.clients < 1 || opt.seconds < 1 || opt.per_session < 2 || opt.users < 1 || opt.sources < 1 ||
        opt.sources > 254 || opt.idle_conns < 1 || opt.window < 1)
        usage();
    signal(SIGPIPE, SIG_IGN);
    rng ^= (unsigned long long)getpid() << 16;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 2;
    }
    int rc = idle_mode() ? run_idle() : run_load();
    fflush(stdout);
    /* Exit without closing thousands of sockets one by one. */
    _exit(rc);
}
