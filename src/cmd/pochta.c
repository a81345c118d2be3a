/* pochta: the administration command.
 *
 *   pochta [-c CONFIG] init DIR --hostname H --domain D [--domain D2...] [--port-base N] [--force]
 *   pochta [-c CONFIG] user add|passwd ADDR [--password-stdin] | user del ADDR | user list
 *   pochta [-c CONFIG] alias add SRC TARGET... | alias del SRC [TARGET] | alias list
 *   pochta [-c CONFIG] queue list | show ID | flush [DOMAIN] | retry|hold|release|delete ID
 *   pochta [-c CONFIG] sendmail [-t] [-i] [-f SENDER] [-F NAME] [--] RCPT...  (also run as "sendmail")
 *   pochta [-c CONFIG] config
 *   pochta [-c CONFIG] rebuild ADDR
 *
 * Every command but init and config reads the configuration, then enters
 * the data directory as the run_as user (core/privdrop.h) before it opens a
 * database, so whatever it creates belongs to the user pochtad runs as.
 * Errors go to stderr as "pochta: ..." and exit with 1. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "core/config.h"
#include "core/log.h"
#include "core/privdrop.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "smtp/sendmail.h"
#include "store/store.h"

#define DEFAULT_CONFIG "/etc/pochta/pochta.conf"
#define SYSTEM_USER "pochta"
#define ACCOUNTS_DB "accounts.db"
#define QUEUE_DIR "queue"
#define MAIL_ROOT "mail"
#define PASSWORD_MAX 1024

extern char **environ;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pochta: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: pochta [-c CONFIG] COMMAND ...\n"
        "  -c CONFIG   configuration file (default " DEFAULT_CONFIG ")\n"
        "\n"
        "commands:\n"
        "  init DIR --hostname H --domain D [--domain D2 ...] [--port-base N] [--force]\n"
        "                      create a configuration, a self-signed certificate and the data\n"
        "                      directory in DIR (--port-base N: listen on 127.0.0.1, port N+25,\n"
        "                      N+587, N+465, ...: N + each standard port)\n"
        "                      [--dns HOST:PORT] send every DNS query to that server\n"
        "                      [--outbound-port N] deliver outbound mail to port N, not 25\n"
        "  user add ADDR [--password-stdin]     add a mailbox user (password from stdin or the tty)\n"
        "  user passwd ADDR [--password-stdin]  change a user's password\n"
        "  user del ADDR                        remove a user (the mail files stay)\n"
        "  user list                            list users\n"
        "  user quota ADDR [SIZE]               show or set the storage limit (e.g. 100M; 0 = unlimited)\n"
        "  alias add SRC TARGET [TARGET ...]    SRC is local@domain or @domain (catch-all)\n"
        "  alias del SRC [TARGET]               without TARGET: every target of SRC\n"
        "  alias list                           list aliases\n"
        "  queue list                           list messages waiting for outbound delivery\n"
        "  queue show ID                        one message: envelope, recipients' states, content\n"
        "  queue flush [DOMAIN]                 try every (or DOMAIN's) queued message now\n"
        "  queue retry|hold|release|delete ID   one message: try now, keep back, let go, remove\n"
        "  sendmail [-t] [-i] [-f SENDER] [-F NAME] [RCPT ...]\n"
        "                                       submit the message on stdin through pochtad's local\n"
        "                                       socket (also works as /usr/sbin/sendmail -> pochta)\n"
        "  config                               print the effective configuration\n"
        "  rebuild ADDR                         recreate ADDR's mailbox index from its message files\n"
        "                                       (lost or corrupt index.db; stop pochtad first)\n");
}

/* ---- passwords ---------------------------------------------------------- */

static void wipe_free(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* Read one line from fd (byte by byte, so nothing past the line is
 * consumed); strips the newline and a CR before it.  NULL on EOF before
 * any byte or when longer than PASSWORD_MAX. */
static char *read_line_fd(int fd)
{
    char *buf = xcalloc(1, PASSWORD_MAX + 2);
    size_t n = 0;
    bool got = false, too_long = false;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got = true;
        if (c == '\n') break;
        if (n < PASSWORD_MAX + 1) buf[n++] = c;
        else too_long = true;
    }
    if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';
    if (!got || too_long || n > PASSWORD_MAX) {
        OPENSSL_cleanse(buf, PASSWORD_MAX + 2);
        free(buf);
        return NULL;
    }
    return buf;
}

static char *prompt_tty(int tty, const char *prompt)
{
    struct termios old, quiet;
    bool restore = tcgetattr(tty, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(tty, TCSANOW, &quiet);
    }
    (void)!write(tty, prompt, strlen(prompt));
    char *line = read_line_fd(tty);
    if (restore) tcsetattr(tty, TCSANOW, &old);
    (void)!write(tty, "\n", 1);
    return line;
}

/* The new password from stdin's first line, or asked twice on the tty. */
static char *get_password(bool from_stdin)
{
    if (from_stdin) {
        char *pw = read_line_fd(STDIN_FILENO);
        if (!pw) fail("no password on standard input (expected one line of at most %d bytes)", PASSWORD_MAX);
        else if (!*pw) { fail("empty password"); free(pw); pw = NULL; }
        return pw;
    }
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (tty < 0) {
        fail("no terminal to ask for the password; use --password-stdin");
        return NULL;
    }
    char *pw = prompt_tty(tty, "New password: ");
    char *again = pw ? prompt_tty(tty, "Retype new password: ") : NULL;
    close(tty);
    if (!pw || !again) fail("no password entered");
    else if (!*pw) fail("empty password");
    else if (strcmp(pw, again) != 0) fail("the passwords do not match");
    else {
        wipe_free(again);
        return pw;
    }
    wipe_free(pw);
    wipe_free(again);
    return NULL;
}

/* ---- address checks ----------------------------------------------------- */

static void domains_list(const config *cfg, sbuf *out)
{
    for (size_t i = 0; i < cfg->ndomains; i++) sbuf_printf(out, "%s%s", i ? " " : "", cfg->domains[i]);
}

/* Syntax, then "is the domain one of ours". */
static bool check_local_address(const config *cfg, const char *addr, bool allow_catchall)
{
    char safe[400];
    log_safe(addr, strlen(addr), safe, sizeof safe);
    if (!accounts_address_valid(addr, allow_catchall)) {
        fail("'%s' is not a valid address (expected local@domain%s)", safe, allow_catchall ? " or @domain" : "");
        return false;
    }
    const char *domain = strrchr(addr, '@') + 1;
    if (!config_is_local_domain(cfg, domain)) {
        sbuf d = SBUF_INIT;
        domains_list(cfg, &d);
        fail("%s: '%s' is not a local domain of this server (domains = %s in %s)", safe,
             strrchr(safe, '@') ? strrchr(safe, '@') + 1 : domain, sbuf_cstr(&d), cfg->path);
        sbuf_free(&d);
        return false;
    }
    return true;
}

static bool is_local_cb(const char *domain, void *ctx)
{
    return config_is_local_domain(ctx, domain);
}

static accounts *open_accounts(void)
{
    char err[512];
    accounts *a = accounts_open(ACCOUNTS_DB, false, err, sizeof err);
    if (!a) fail("%s", err);
    return a;
}

/* ---- user --------------------------------------------------------------- */

static void print_line(const char *s, void *ctx)
{
    printf("%s\n", s);
}

static int cmd_user(const config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 1;
    }
    const char *sub = argv[0];
    if (!strcmp(sub, "list")) {
        if (argc != 1) return fail("usage: pochta user list");
        accounts *a = open_accounts();
        if (!a) return 1;
        int rc = accounts_user_list(a, print_line, NULL);
        accounts_close(a);
        return rc < 0 ? fail("listing users failed") : 0;
    }
    if (!strcmp(sub, "quota")) {
        /* user quota ADDR [SIZE]: storage limit in bytes over all of the
         * user's mailboxes (SIZE like 500k, 100M, 2G; 0 = unlimited);
         * without SIZE, print the current limit. */
        uint64_t bytes = 0;
        if (argc < 2 || argc > 3) return fail("usage: pochta user quota ADDRESS [SIZE] (e.g. 100M, 0 = unlimited)");
        if (argc == 3 && parse_size(argv[2], &bytes) < 0)
            return fail("bad size '%s' (e.g. 500k, 100M, 2G; 0 = unlimited)", argv[2]);
        if (!check_local_address(cfg, argv[1], false)) return 1;
        accounts *a = open_accounts();
        if (!a) return 1;
        char err[512] = "";
        int rc = argc == 3 ? accounts_user_quota_set(a, argv[1], bytes, err, sizeof err)
                           : (accounts_user_quota_get(a, argv[1], &bytes) == 1 ? 0 : -1);
        accounts_close(a);
        if (rc < 0) return fail("%s", err[0] ? err : "no such user (or database error)");
        if (bytes) printf("user %s quota %llu bytes\n", argv[1], (unsigned long long)bytes);
        else printf("user %s quota unlimited\n", argv[1]);
        return 0;
    }
    bool add = !strcmp(sub, "add"), passwd = !strcmp(sub, "passwd"), del = !strcmp(sub, "del");
    if (!add && !passwd && !del) return fail("unknown user command '%s' (add, passwd, del, list)", sub);

    const char *addr = NULL;
    bool from_stdin = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--password-stdin") && !del) from_stdin = true;
        else if (argv[i][0] == '-' && argv[i][1]) return fail("unknown option '%s'", argv[i]);
        else if (!addr) addr = argv[i];
        else return fail("too many arguments");
    }
    if (!addr) return fail("usage: pochta user %s ADDRESS%s", sub, del ? "" : " [--password-stdin]");
    if (!check_local_address(cfg, addr, false)) return 1;

    accounts *a = open_accounts();
    if (!a) return 1;
    char err[512];
    int rc;
    if (del) {
        rc = accounts_user_del(a, addr, err, sizeof err);
    } else {
        if (add && accounts_user_exists(a, addr) == 1) {
            accounts_close(a);
            return fail("user %s already exists (use 'user passwd' to change the password)", addr);
        }
        char *pw = get_password(from_stdin);
        if (!pw) {
            accounts_close(a);
            return 1;
        }
        rc = add ? accounts_user_add(a, addr, pw, err, sizeof err)
                 : accounts_user_passwd(a, addr, pw, err, sizeof err);
        wipe_free(pw);
    }
    accounts_close(a);
    if (rc < 0) return fail("%s", err);
    if (del) printf("user %s removed (mail files are kept)\n", addr);
    else printf("user %s %s\n", addr, add ? "added" : "password changed");
    return 0;
}

/* ---- alias -------------------------------------------------------------- */

struct alias_print { sbuf line; char *source; };

static void alias_flush(struct alias_print *p)
{
    if (p->source) printf("%s: %s\n", p->source, sbuf_cstr(&p->line));
    free(p->source);
    p->source = NULL;
    sbuf_reset(&p->line);
}

/* Rows come sorted by source: one aliases(5)-style line per source. */
static void alias_cb(const char *source, const char *target, void *ctx)
{
    struct alias_print *p = ctx;
    if (p->source && strcmp(p->source, source) != 0) alias_flush(p);
    if (!p->source) p->source = xstrdup(source);
    else sbuf_puts(&p->line, ", ");
    sbuf_puts(&p->line, target);
}

static int cmd_alias(const config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 1;
    }
    const char *sub = argv[0];
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) return fail("unknown option '%s'", argv[i]);
    if (!strcmp(sub, "list")) {
        if (argc != 1) return fail("usage: pochta alias list");
        accounts *a = open_accounts();
        if (!a) return 1;
        struct alias_print p = { SBUF_INIT, NULL };
        int rc = accounts_alias_list(a, alias_cb, &p);
        alias_flush(&p);
        sbuf_free(&p.line);
        accounts_close(a);
        return rc < 0 ? fail("listing aliases failed") : 0;
    }
    bool add = !strcmp(sub, "add");
    if (!add && strcmp(sub, "del") != 0) return fail("unknown alias command '%s' (add, del, list)", sub);
    if (add ? argc < 3 : (argc < 2 || argc > 3))
        return fail(add ? "usage: pochta alias add SOURCE TARGET [TARGET ...]" : "usage: pochta alias del SOURCE [TARGET]");
    const char *src = argv[1];
    if (add && !check_local_address(cfg, src, true)) return 1;
    for (int i = 2; add && i < argc; i++)
        if (!accounts_address_valid(argv[i], false)) return fail("'%s' is not a valid target address", argv[i]);

    accounts *a = open_accounts();
    if (!a) return 1;
    char err[512];
    int status = 0;
    if (!add) {
        if (accounts_alias_del(a, src, argc == 3 ? argv[2] : NULL, err, sizeof err) < 0) status = fail("%s", err);
        else printf("alias %s%s%s removed\n", src, argc == 3 ? " -> " : "", argc == 3 ? argv[2] : "");
    }
    for (int i = 2; add && i < argc; i++) {
        if (accounts_alias_add(a, src, argv[i], err, sizeof err) < 0) {
            status = fail("%s", err);
            continue;
        }
        printf("alias %s -> %s added\n", src, argv[i]);
        /* Say so when a local target leads nowhere yet: mail to it would
         * be refused until the user or alias exists. */
        const char *dom = strrchr(argv[i], '@') + 1;
        struct account_dest *d = NULL;
        size_t nd = 0;
        if (config_is_local_domain(cfg, dom) &&
            accounts_resolve(a, argv[i], "", is_local_cb, (void *)cfg, &d, &nd) == 0)
            fprintf(stderr, "pochta: note: %s is not a user or alias (yet)\n", argv[i]);
        accounts_dests_free(d, nd);
    }
    accounts_close(a);
    return status;
}

/* ---- queue -------------------------------------------------------------- */

struct queue_print { unsigned rows; char last[32]; unsigned msgs; };

static void queue_cb(const struct queue_entry *e, void *ctx)
{
    struct queue_print *p = ctx;
    if (p->rows++ == 0) printf("%-16s %10s  %-19s  %s\n", "QUEUE ID", "SIZE", "ARRIVAL", "SENDER -> RECIPIENT (STATE)");
    if (strcmp(p->last, e->qid) != 0) {
        p->msgs++;
        snprintf(p->last, sizeof p->last, "%s", e->qid);
    }
    char when[32];
    struct tm tm;
    localtime_r(&e->arrival, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%-16s %10llu  %s  <%s> -> <%s> (%s", e->qid, (unsigned long long)e->size, when, e->sender,
           e->recipient, e->state);
    if (e->attempts) printf(", %u attempts", e->attempts);
    if (e->last_error) printf(": %s", e->last_error);
    printf(")\n");
}

/* flush [DOMAIN] | retry ID | hold ID | release ID | delete ID.  They act
 * on the index; a running daemon picks the change up at its next scan
 * (within a second). */
static int cmd_queue_admin(int argc, char **argv)
{
    const char *verb = argv[0], *arg = argc > 1 ? argv[1] : NULL;
    char err[512];
    int n;
    if (!strcmp(verb, "flush") && argc <= 2) {
        n = queue_schedule_now(QUEUE_DIR, NULL, arg, err, sizeof err);
        if (n < 0) return fail("%s", err);
        printf("%d message%s due now\n", n, n == 1 ? "" : "s");
        return 0;
    }
    if (argc != 2) return fail("usage: pochta queue %s ID", verb);
    if (!strcmp(verb, "retry")) n = queue_schedule_now(QUEUE_DIR, arg, NULL, err, sizeof err);
    else if (!strcmp(verb, "hold")) n = queue_hold(QUEUE_DIR, arg, true, err, sizeof err);
    else if (!strcmp(verb, "release")) n = queue_hold(QUEUE_DIR, arg, false, err, sizeof err);
    else if (!strcmp(verb, "delete")) n = queue_delete(QUEUE_DIR, arg, err, sizeof err);
    else return fail("usage: pochta queue list|show ID|flush [DOMAIN]|retry ID|hold ID|release ID|delete ID");
    if (n < 0) return fail("%s", err);
    if (n == 0) return fail("no queued message %s%s", arg, !strcmp(verb, "retry") ? " (or it is held)" : "");
    printf("%s: %s\n", arg, !strcmp(verb, "delete") ? "deleted" : !strcmp(verb, "hold") ? "held"
                           : !strcmp(verb, "release") ? "released" : "due now");
    return 0;
}

static void print_time(const char *label, time_t t)
{
    char when[64];
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm);
    printf("%-12s %s\n", label, when);
}

/* show ID: the envelope as the queue holds it, then the message content
 * (what `postcat -q` prints for Postfix). */
static int cmd_queue_show(const char *qid)
{
    struct queue_msg *m = NULL;
    struct queue_detail d;
    char err[512];
    int rc = queue_inspect(QUEUE_DIR, qid, &m, &d, err, sizeof err);
    if (rc < 0) return fail("%s", err);
    if (rc == 0) return fail("no queued message %s", qid);
    static const char *const rets[] = { "unspecified", "FULL", "HDRS" };
    static const char *const bodies[] = { "unspecified", "7BIT", "8BITMIME", "BINARYMIME" };
    printf("*** ENVELOPE ***\n");
    printf("%-12s %s\n", "queue id:", m->qid);
    print_time("arrival:", m->arrival);
    printf("%-12s %llu bytes\n", "size:", (unsigned long long)m->size);
    printf("%-12s <%s>\n", "sender:", m->sender);
    if (d.auth_user) printf("%-12s %s\n", "auth user:", d.auth_user);
    if (d.client_ip || d.helo) printf("%-12s %s [%s]\n", "client:", d.helo ? d.helo : "unknown", d.client_ip ? d.client_ip : "?");
    printf("%-12s ret=%s body=%s%s%s%s\n", "dsn:", rets[m->ret >= 0 && m->ret <= 2 ? m->ret : 0],
           bodies[m->body >= 0 && m->body <= 3 ? m->body : 0], m->smtputf8 ? " smtputf8" : "",
           m->envid && *m->envid ? " envid=" : "", m->envid && *m->envid ? m->envid : "");
    printf("%-12s %u\n", "attempts:", m->attempts);
    if (!d.indexed) printf("%-12s not indexed yet (recovered at the next start of pochtad)\n", "next try:");
    else if (d.next_attempt < 0) printf("%-12s held (pochta queue release %s)\n", "next try:", m->qid);
    else if (d.next_attempt <= time(NULL)) printf("%-12s now\n", "next try:");
    else print_time("next try:", d.next_attempt);
    for (size_t i = 0; i < m->nrcpts; i++) {
        const struct queue_msg_rcpt *r = &m->rcpts[i];
        printf("%-12s <%s> %s", i == 0 ? "recipients:" : "", r->address,
               d.next_attempt < 0 && r->pending ? "held" : r->state);
        if (r->orcpt) printf(" orcpt=%s", r->orcpt);
        if (d.last_error && d.last_error[i]) printf(": %s", d.last_error[i]);
        printf("\n");
    }
    printf("*** MESSAGE CONTENTS ***\n");
    fflush(stdout);
    /* Byte for byte, line ends included. */
    char *buf = xmalloc(64 * 1024);
    uint64_t off = m->offset, left = m->size;
    int status = 0;
    while (left > 0) {
        ssize_t n = pread(m->fd, buf, left < 64 * 1024 ? (size_t)left : 64 * 1024, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            status = fail("reading queue file %s: %s", m->qid, n < 0 ? strerror(errno) : "shorter than its envelope");
            break;
        }
        if (write_full(STDOUT_FILENO, buf, (size_t)n) < 0) {
            status = fail("writing: %s", strerror(errno));
            break;
        }
        off += (uint64_t)n;
        left -= (uint64_t)n;
    }
    free(buf);
    if (status == 0) printf("*** END OF MESSAGE ***\n");
    queue_detail_free(&d);
    queue_msg_free(m);
    return status;
}

static int cmd_queue(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[0], "show")) return cmd_queue_show(argv[1]);
    if (argc >= 1 && strcmp(argv[0], "list") != 0) return cmd_queue_admin(argc, argv);
    if (argc != 1) return fail("usage: pochta queue list|show ID|flush [DOMAIN]|retry ID|hold ID|release ID|delete ID");
    struct queue_print p = { 0, "", 0 };
    char err[512];
    if (queue_list(QUEUE_DIR, queue_cb, &p, err, sizeof err) < 0) return fail("%s", err);
    if (p.rows == 0) printf("queue is empty\n");
    else printf("%u message%s, %u recipient%s\n", p.msgs, p.msgs == 1 ? "" : "s", p.rows, p.rows == 1 ? "" : "s");
    return 0;
}

/* ---- sendmail ------------------------------------------------------------ */

/* `pochta sendmail` (or this binary run as "sendmail"): the message from
 * standard input goes to pochtad's local socket (listen_local) as one SMTP
 * transaction, so it enters the same queue as mail from the network.  The
 * daemon knows the caller by SO_PEERCRED.  Nothing is spooled here: if the
 * daemon is not running the caller hears EX_TEMPFAIL and keeps the
 * message.  Exit codes are sendmail's (sysexits.h, smtp/sendmail.h). */

#define SENDMAIL_IO_TIMEOUT 300     /* seconds per reply, like an SMTP client (RFC 5321 4.5.3.2) */
#define SENDMAIL_REPLY_MAX 8192

static int sm_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sm_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sendmail: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

struct sm_conn {
    int fd;
    sbuf in;                    /* bytes read, not yet consumed */
    sbuf reply;                 /* the last reply, lines joined by "\n" */
};

/* Read one reply; its code, or -1 when the connection failed. */
static int sm_reply(struct sm_conn *c)
{
    sbuf_reset(&c->reply);
    for (;;) {
        char *nl;
        while (!(nl = memchr(c->in.data ? c->in.data : "", '\n', c->in.len))) {
            if (c->in.len > SENDMAIL_REPLY_MAX) return -1;
            char buf[4096];
            ssize_t n = read(c->fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return -1;
            sbuf_append(&c->in, buf, (size_t)n);
        }
        size_t len = (size_t)(nl - c->in.data);
        size_t text = len > 0 && c->in.data[len - 1] == '\r' ? len - 1 : len;
        if (text < 3 || (text > 3 && c->in.data[3] != ' ' && c->in.data[3] != '-')) return -1;
        if (c->reply.len) sbuf_putc(&c->reply, '\n');
        sbuf_append(&c->reply, c->in.data, text);
        bool last = text == 3 || c->in.data[3] == ' ';
        int code = atoi(c->in.data);
        memmove(c->in.data, nl + 1, c->in.len - len - 1);
        c->in.len -= len + 1;
        if (c->reply.len > SENDMAIL_REPLY_MAX) return -1;
        if (last) return code >= 200 && code < 600 ? code : -1;
    }
}

static int sm_send(struct sm_conn *c, const void *data, size_t len)
{
    return write_full(c->fd, data, len);
}

/* Send a command line; the reply code or -1. */
static int sm_cmd(struct sm_conn *c, const char *line)
{
    sbuf b = SBUF_INIT;
    sbuf_printf(&b, "%s\r\n", line);
    int rc = sm_send(c, b.data, b.len) < 0 ? -1 : sm_reply(c);
    sbuf_free(&b);
    return rc;
}

static int sm_connect(const char *path, const char *conf_path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path)
        return sm_fail(-SENDMAIL_EX_CONFIG, "socket path %s is too long", path);
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return sm_fail(-SENDMAIL_EX_TEMPFAIL, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return sm_fail(-SENDMAIL_EX_TEMPFAIL, "pochtad is not running (nothing listens on %s); "
                           "the message was not sent, try again once pochtad runs", path);
        if (e == EACCES)
            return sm_fail(-SENDMAIL_EX_TEMPFAIL, "no access to %s (%s): the socket's folders must be "
                           "searchable by this user, or set listen_local in %s to a path that is",
                           path, strerror(e), conf_path);
        return sm_fail(-SENDMAIL_EX_TEMPFAIL, "cannot connect to pochtad at %s: %s", path, strerror(e));
    }
    struct timeval tv = { SENDMAIL_IO_TIMEOUT, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* A display name for "From: name <addr>": a quoted-string when it is
 * printable ASCII, an RFC 2047 encoded-word otherwise. */
static void put_display_name(sbuf *out, const char *name)
{
    bool ascii = true;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p > 0x7e) ascii = false;
    if (ascii) {
        sbuf_putc(out, '"');
        for (const char *p = name; *p; p++) {
            if (*p == '"' || *p == '\\') sbuf_putc(out, '\\');
            sbuf_putc(out, *p);
        }
        sbuf_putc(out, '"');
        return;
    }
    size_t n = strlen(name);
    if (n > 200) n = 200;
    unsigned char *b64 = xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock(b64, (const unsigned char *)name, (int)n);
    sbuf_printf(out, "=?UTF-8?B?%s?=", (const char *)b64);
    free(b64);
}

/* The envelope sender: -f as given (without <>), or login@hostname of
 * the calling user. */
static char *sm_sender(const struct sendmail_opts *o, const config *cfg, char **gecos)
{
    *gecos = NULL;
    if (o->sender) {
        const char *s = o->sender;
        size_t n = strlen(s);
        if (n >= 2 && s[0] == '<' && s[n - 1] == '>') return xstrndup(s + 1, n - 2);
        return xstrdup(s);
    }
    struct passwd pw, *found = NULL;
    char buf[4096];
    sbuf b = SBUF_INIT;
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found) {
        sbuf_printf(&b, "%s@%s", found->pw_name, cfg->hostname);
        size_t g = found->pw_gecos ? strcspn(found->pw_gecos, ",") : 0;
        if (g > 0) *gecos = xstrndup(found->pw_gecos, g);
    } else {
        sbuf_printf(&b, "uid%lu@%s", (unsigned long)getuid(), cfg->hostname);
    }
    return sbuf_detach(&b);
}

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80) return true;
    return false;
}

/* Read standard input into msg (CRLF).  0, or an exit status. */
static int sm_read_input(const struct sendmail_opts *o, uint64_t limit, sbuf *msg)
{
    struct sendmail_input in;
    sendmail_input_init(&in, o->ignore_dots);
    char *buf = xmalloc(64 * 1024);
    int status = 0;
    while (!in.done) {
        ssize_t n = read(STDIN_FILENO, buf, 64 * 1024);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            status = sm_fail(SENDMAIL_EX_IOERR, "reading the message: %s", strerror(errno));
            break;
        }
        if (n == 0) break;
        sendmail_input_feed(&in, buf, (size_t)n, msg);
        if (msg->len > limit) {
            status = sm_fail(SENDMAIL_EX_DATAERR, "message larger than max_message_size (%llu bytes); not sent",
                             (unsigned long long)limit);
            break;
        }
    }
    sendmail_input_finish(&in, msg);
    free(buf);
    return status;
}

/* One SMTP transaction over the local socket.  0 or an exit status. */
static int sm_submit(int fd, const struct sendmail_opts *o, const char *sender, const struct sendmail_rcpts *rcpts,
                     const sbuf *content)
{
    struct sm_conn c = { fd, SBUF_INIT, SBUF_INIT };
    sbuf cmd = SBUF_INIT;
    const char *stage = "greeting", *what = "";
    int code = sm_reply(&c), status = 0;
    if (code == 220) {
        stage = "EHLO";
        code = sm_cmd(&c, "EHLO localhost");
    }
    bool utf8 = has_8bit(sender, strlen(sender));
    for (size_t i = 0; i < rcpts->n; i++) utf8 = utf8 || has_8bit(rcpts->v[i], strlen(rcpts->v[i]));
    if (code == 250) {
        stage = "MAIL";
        what = sender;
        sbuf_printf(&cmd, "MAIL FROM:<%s> SIZE=%zu", sender, content->len);
        if (has_8bit(content->data, content->len)) sbuf_puts(&cmd, " BODY=8BITMIME");
        if (utf8) sbuf_puts(&cmd, " SMTPUTF8");
        if (o->ret) sbuf_printf(&cmd, " RET=%s", ascii_casecmp(o->ret, "full") == 0 ? "FULL" : "HDRS");
        code = sm_cmd(&c, cmd.data);
    }
    for (size_t i = 0; i < rcpts->n && code == 250; i++) {
        stage = "RCPT";
        what = rcpts->v[i];
        sbuf_reset(&cmd);
        sbuf_printf(&cmd, "RCPT TO:<%s>", rcpts->v[i]);
        if (o->notify) {
            char *n = xstrdup(o->notify);
            for (char *p = n; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            sbuf_printf(&cmd, " NOTIFY=%s", n);
            free(n);
        }
        code = sm_cmd(&c, cmd.data);
        if (code == 251) code = 250;
    }
    if (code == 250) {
        /* BDAT (RFC 3030): the text goes as it is, no dot-stuffing. */
        stage = "DATA";
        what = "";
        sbuf_reset(&cmd);
        sbuf_printf(&cmd, "BDAT %zu LAST\r\n", content->len);
        if (sm_send(&c, cmd.data, cmd.len) < 0 || sm_send(&c, content->data, content->len) < 0) code = -1;
        else code = sm_reply(&c);
    }
    if (code == 250) {
        if (o->verbose) fprintf(stderr, "sendmail: %s\n", sbuf_cstr(&c.reply));
        sm_cmd(&c, "QUIT");
    } else if (code < 0) {
        status = sm_fail(SENDMAIL_EX_TEMPFAIL, "connection to pochtad lost during %s; the message was not sent", stage);
    } else {
        char safe[400];
        log_safe(what, strlen(what), safe, sizeof safe);
        status = sm_fail(sendmail_exit_status(code, stage), "%s%s%s%s refused; the message was not sent: %s", stage,
                         *what ? " <" : "", safe, *what ? ">" : "", sbuf_cstr(&c.reply));
        sm_cmd(&c, "QUIT");
    }
    sbuf_free(&cmd);
    sbuf_free(&c.in);
    sbuf_free(&c.reply);
    return status;
}

static int cmd_sendmail(const char *conf_path, int argc, char **argv)
{
    char err[1024];
    config cfg = { 0 };
    struct sendmail_opts o;
    /* -C FILE is an option like the others, but the configuration gives
     * the default domain the recipients need: a first pass finds it (a
     * bad command line is reported by the second). */
    if (sendmail_parse_args(argc, argv, "localhost", &o, err, sizeof err) == 0) {
        if (o.config) conf_path = o.config;
        sendmail_opts_free(&o);
    }
    if (config_load(conf_path, &cfg, err, sizeof err) < 0) {
        config_free(&cfg);
        return sm_fail(SENDMAIL_EX_CONFIG, "%s", err);
    }
    int status = 0;
    char *sender = NULL, *gecos = NULL, *sock = NULL;
    sbuf raw = SBUF_INIT, headers = SBUF_INIT, msg = SBUF_INIT;
    if (sendmail_parse_args(argc, argv, cfg.domains[0], &o, err, sizeof err) < 0) {
        config_free(&cfg);
        fprintf(stderr, "sendmail: %s\nusage: sendmail [-t] [-i] [-f sender] [-F fullname] [-C config] [--] "
                "[recipient ...] < message\n", err);
        return SENDMAIL_EX_USAGE;
    }
    if (!cfg.listen_local || !*cfg.listen_local || !strcmp(cfg.listen_local, "off")) {
        status = sm_fail(SENDMAIL_EX_UNAVAILABLE, "listen_local is empty in %s: local submission is disabled", cfg.path);
        goto out;
    }
    if ((status = sm_read_input(&o, cfg.max_message_size, &raw)) != 0) goto out;

    size_t body_off;
    struct sendmail_header_info info;
    if (sendmail_headers(raw.data ? raw.data : "", raw.len, o.extract, cfg.domains[0], &o.rcpts, &headers,
                         &body_off, &info) < 0) {
        status = sm_fail(SENDMAIL_EX_DATAERR, "a recipient header holds an unusable address (or more than %d)",
                         SENDMAIL_MAX_RCPTS);
        goto out;
    }
    if (o.rcpts.n == 0) {
        status = sm_fail(SENDMAIL_EX_USAGE, "no recipients: none given and none in To, Cc or Bcc");
        goto out;
    }
    sender = sm_sender(&o, &cfg, &gecos);

    /* What a local program leaves out: From, Date, Message-ID (RFC 5322
     * 3.6 requires From and Date), put in front of its own header. */
    if (!info.has_from) {
        const char *name = o.fullname ? o.fullname : gecos;
        sbuf_puts(&msg, "From: ");
        if (name && *name) {
            put_display_name(&msg, name);
            sbuf_printf(&msg, " <%s>\r\n", *sender ? sender : "MAILER-DAEMON");
        } else {
            sbuf_printf(&msg, "%s\r\n", *sender ? sender : "MAILER-DAEMON");
        }
    }
    if (!info.has_date) {
        char date[64];
        rfc5322_date(time(NULL), date);
        sbuf_printf(&msg, "Date: %s\r\n", date);
    }
    if (!info.has_message_id) {
        char id[17];
        make_id(id);
        sbuf_printf(&msg, "Message-ID: <%s.%ld@%s>\r\n", id, (long)time(NULL), cfg.hostname);
    }
    sbuf_append(&msg, headers.data ? headers.data : "", headers.len);
    if (!info.has_body_separator && body_off < raw.len) sbuf_append(&msg, "\r\n", 2);
    sbuf_append(&msg, raw.data ? raw.data + body_off : "", raw.len - body_off);

    sbuf p = SBUF_INIT;
    if (cfg.listen_local[0] == '/') sbuf_puts(&p, cfg.listen_local);
    else sbuf_printf(&p, "%s/%s", cfg.data_dir, cfg.listen_local);
    sock = sbuf_detach(&p);
    int fd = sm_connect(sock, cfg.path);
    if (fd < 0) {
        status = -fd;
        goto out;
    }
    status = sm_submit(fd, &o, sender, &o.rcpts, &msg);
    close(fd);
out:
    free(sender);
    free(gecos);
    free(sock);
    sbuf_free(&raw);
    sbuf_free(&headers);
    sbuf_free(&msg);
    sendmail_opts_free(&o);
    config_free(&cfg);
    return status;
}

/* ---- rebuild ------------------------------------------------------------ */

/* The recovery for a mailbox whose index.db SQLite reports as corrupt (the
 * daemon then defers its mail with 451 and refuses its logins): the index is
 * only a cache of the message files, so store_rebuild() recreates it with
 * flags, UIDs and UIDVALIDITY kept.  It must be the only user of the index,
 * hence "stop pochtad first". */
static int cmd_rebuild(int argc, char **argv)
{
    if (argc != 1) return fail("usage: pochta rebuild ADDR");
    char err[512] = "";
    int rc = store_rebuild(MAIL_ROOT, argv[0], err, sizeof err);
    if (rc == STORE_ENOENT || rc == STORE_EINVAL)
        return fail("%s: no mailbox to rebuild (%s)", argv[0], err);
    if (rc != 0) return fail("%s: rebuild failed: %s", argv[0], err);
    printf("%s: index rebuilt from the message files\n", argv[0]);
    return 0;
}

/* ---- init: files --------------------------------------------------------- */

/* Write a whole file under a temporary name, fsync, rename into place. */
static int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    sbuf tmp = SBUF_INIT;
    sbuf_printf(&tmp, "%s.tmp", path);
    unlink(tmp.data);
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    int rc = -1;
    if (fd >= 0 && fchmod(fd, mode) == 0 && write_full(fd, data, len) == 0 && fsync(fd) == 0) {
        if (close(fd) == 0 && rename(tmp.data, path) == 0 && fsync_dir(path, false) == 0) rc = 0;
        fd = -1;
    }
    int saved = errno;
    if (fd >= 0) close(fd);
    if (rc < 0) unlink(tmp.data);
    sbuf_free(&tmp);
    errno = saved;
    return rc;
}

static int write_bio_file(BIO *bio, const char *path, mode_t mode)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    return len > 0 ? write_file_atomic(path, data, (size_t)len, mode) : -1;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext) return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Self-signed ECDSA P-256 certificate for `host`, valid 10 years. */
static int make_certificate(const char *host, const char *cert_path, const char *key_path)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    sbuf san = SBUF_INIT;
    sbuf_printf(&san, "DNS:%s", host);
    int rc = -1;
    X509V3_CTX ctx;
    X509_NAME *name;
    if (!pkey || !x || !serial || !kb || !cb) goto out;
    if (!X509_set_version(x, X509_VERSION_3) ||
        !BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) ||
        /* An hour of slack for clients whose clocks run behind. */
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, NULL) ||
        !X509_set_pubkey(x, pkey))
        goto out;
    name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0) ||
        !X509_set_issuer_name(x, name))
        goto out;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_subject_alt_name, san.data) < 0 ||
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0)
        goto out;
    if (!X509_sign(x, pkey, EVP_sha256())) goto out;
    if (!PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_X509(cb, x)) goto out;
    if (write_bio_file(kb, key_path, 0600) < 0) {
        fail("writing %s: %s", key_path, strerror(errno));
        rc = -2;
        goto out;
    }
    if (write_bio_file(cb, cert_path, 0644) < 0) {
        fail("writing %s: %s", cert_path, strerror(errno));
        rc = -2;
        goto out;
    }
    rc = 0;
out:
    if (rc == -1) {
        unsigned long e = ERR_get_error();
        fail("creating the certificate failed: %s", e ? ERR_error_string(e, NULL) : "unknown error");
    }
    if (kb) {
        /* The key was in this buffer. */
        char *data = NULL;
        long n = BIO_get_mem_data(kb, &data);
        if (n > 0) OPENSSL_cleanse(data, (size_t)n);
    }
    BIO_free(kb);
    BIO_free(cb);
    BN_free(serial);
    X509_free(x);
    EVP_PKEY_free(pkey);
    sbuf_free(&san);
    return rc < 0 ? -1 : 0;
}

/* ---- init: configuration text ------------------------------------------- */

struct init_opts {
    const char *dir;
    const char *hostname;
    const char **domains;
    size_t ndomains;
    long port_base;             /* -1: standard ports on all addresses */
    bool force;
    const char *dns;            /* --dns HOST:PORT, or NULL */
    char outbound_port[8];      /* --outbound-port N, or "" */
};

/* Keys that init sets; every other key is written commented out with its
 * default, taken from config_dump() so the file never disagrees with the
 * key table in core/config.c. */
struct set_key { const char *key; const char *value; };

static const struct { const char *before; const char *title; } sections[] = {
    { "hostname", "Identity" },
    { "data_dir", "Files and privileges" },
    { "listen_smtp", "Listeners (\"off\" disables one)" },
    { "max_connections", "Limits (defaults shown; uncomment to change)" },
    { "vrfy", "Policy" },
    { "auth_allow_plaintext", "Authentication" },
};

static void config_text(const struct init_opts *o, const config *defaults, sbuf *out)
{
    sbuf doms = SBUF_INIT;
    for (size_t i = 0; i < o->ndomains; i++) sbuf_printf(&doms, "%s%s", i ? " " : "", o->domains[i]);
    ascii_lower(doms.data);
    struct set_key set[] = {
        { "hostname", o->hostname }, { "domains", doms.data },
        { "data_dir", "data" }, { "run_as", SYSTEM_USER },
        { "tls_cert", "tls/cert.pem" }, { "tls_key", "tls/key.pem" },
        { "dns_server", o->dns }, { "outbound_port", o->outbound_port[0] ? o->outbound_port : NULL },
    };

    char date[64];
    rfc5322_date(time(NULL), date);
    sbuf_printf(out,
        "# pochta.conf, written by 'pochta init' on %s.\n"
        "#\n"
        "# Syntax: key = value, one per line; '#' starts a comment.  Relative paths\n"
        "# are relative to the directory of this file.  Sizes take k/M/G, durations\n"
        "# s/m/h/d (plain numbers are bytes and seconds).\n"
        "# 'pochta -c THIS_FILE config' prints every key with its effective value.\n",
        date);

    char *dump = NULL;
    size_t dumplen = 0;
    FILE *m = open_memstream(&dump, &dumplen);
    if (!m) abort();
    config_dump(defaults, m);
    fclose(m);
    /* The dump is blocks of "# doc\nkey = value\n\n". */
    char *save = NULL;
    const char *doc = NULL;
    for (char *line = strtok_r(dump, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            doc = line;
            continue;
        }
        char *eq = strstr(line, " = ");
        if (!eq) continue;
        *eq = '\0';
        const char *key = line, *value = eq + 3;
        for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
            if (!strcmp(sections[i].before, key))
                sbuf_printf(out, "\n# ==== %s %.*s\n", sections[i].title,
                            (int)(70 - strlen(sections[i].title)),
                            "======================================================================");
        sbuf_printf(out, "\n%s\n", doc ? doc : "#");
        const char *mine = NULL;
        for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
            if (!strcmp(set[i].key, key)) mine = set[i].value;
        const char *colon = strrchr(value, ':');
        if (mine) {
            sbuf_printf(out, "%s = %s\n", key, mine);
        } else if (!strncmp(key, "listen_", 7) && colon) {
            /* Every listener is written out; with --port-base each one
             * moves to loopback at base + its standard port, so test
             * instances never collide with each other or a real server. */
            if (o->port_base >= 0)
                sbuf_printf(out, "%s = 127.0.0.1:%ld\n", key, o->port_base + strtol(colon + 1, NULL, 10));
            else
                sbuf_printf(out, "%s = %s\n", key, value);
        } else {
            sbuf_printf(out, "#%s = %s\n", key, value);
        }
        doc = NULL;
    }
    free(dump);
    sbuf_free(&doms);
}

/* ---- init: system user and ownership ------------------------------------- */

static int ensure_system_user(uid_t *uid, gid_t *gid)
{
    if (privdrop_lookup(SYSTEM_USER, uid, gid) == 0) return 0;
    static char a0[] = "useradd", a1[] = "--system", a2[] = "--user-group", a3[] = "--no-create-home",
                a4[] = "--home-dir", a5[] = "/nonexistent", a6[] = "--shell", a7[] = "/usr/sbin/nologin",
                a8[] = SYSTEM_USER;
    char *argv[] = { a0, a1, a2, a3, a4, a5, a6, a7, a8, NULL };
    pid_t pid;
    const char *path = access("/usr/sbin/useradd", X_OK) == 0 ? "/usr/sbin/useradd"
                     : access("/sbin/useradd", X_OK) == 0 ? "/sbin/useradd" : NULL;
    int e = path ? posix_spawn(&pid, path, NULL, NULL, argv, environ)
                 : posix_spawnp(&pid, "useradd", NULL, NULL, argv, environ);
    if (e != 0) {
        fail("cannot run useradd: %s", strerror(e));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fail("waiting for useradd: %s", strerror(errno));
            return -1;
        }
    }
    /* Exit status 9: the name exists (created meanwhile): fine. */
    if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 9)) {
        fail("useradd failed (status %d); create the user '%s' by hand", status, SYSTEM_USER);
        return -1;
    }
    if (privdrop_lookup(SYSTEM_USER, uid, gid) < 0) {
        fail("user '%s' still does not exist after useradd", SYSTEM_USER);
        return -1;
    }
    printf("created system user '%s'\n", SYSTEM_USER);
    return 0;
}

static uid_t chown_uid;
static gid_t chown_gid;

static int chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (lchown(path, chown_uid, chown_gid) < 0) {
        fail("chown %s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- init --------------------------------------------------------------- */

static bool valid_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-' || h[n - 1] == '.') return false;
    for (const char *p = h; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '-' || *p == '.';
        if (!ok || (*p == '.' && p[1] == '.')) return false;
    }
    return true;
}

/* "--name value" or "--name=value". */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        fail("%s needs a value", name);
        exit(1);
    }
    return argv[++*i];
}

static int parse_init(int argc, char **argv, struct init_opts *o)
{
    o->port_base = -1;
    o->domains = xcalloc((size_t)argc + 1, sizeof *o->domains);
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--hostname"))) o->hostname = v;
        else if ((v = opt_value(argc, argv, &i, "--domain"))) o->domains[o->ndomains++] = v;
        else if ((v = opt_value(argc, argv, &i, "--port-base"))) {
            char *end;
            errno = 0;
            o->port_base = strtol(v, &end, 10);
            /* Room for the highest standard port (995) on top. */
            if (errno || *end || !*v || o->port_base < 1 || o->port_base > 64000)
                return fail("--port-base: '%s' is not a number from 1 to 64000", v);
        } else if ((v = opt_value(argc, argv, &i, "--dns"))) {
            char fwd[300];
            if (dns_forwarder_syntax(v, fwd, sizeof fwd) < 0 || !strchr(fwd, '@'))
                return fail("--dns: '%s' is not HOST:PORT", v);
            o->dns = v;
        } else if ((v = opt_value(argc, argv, &i, "--outbound-port"))) {
            char *end;
            errno = 0;
            long port = strtol(v, &end, 10);
            if (errno || *end || !*v || port < 1 || port > 65535)
                return fail("--outbound-port: '%s' is not a port number", v);
            snprintf(o->outbound_port, sizeof o->outbound_port, "%ld", port);
        } else if (!strcmp(argv[i], "--force")) o->force = true;
        else if (argv[i][0] == '-') return fail("init: unknown option '%s'", argv[i]);
        else if (!o->dir) o->dir = argv[i];
        else return fail("init: more than one directory given");
    }
    if (!o->dir || !o->hostname || o->ndomains == 0)
        return fail("usage: pochta init DIR --hostname H --domain D [--domain D2 ...] [--port-base N] [--force]");
    if (!valid_hostname(o->hostname)) return fail("--hostname: '%s' is not a valid host name", o->hostname);
    if (strlen(o->hostname) > 64)
        return fail("--hostname: '%s' is longer than 64 characters (too long for a certificate CN)", o->hostname);
    for (size_t i = 0; i < o->ndomains; i++)
        if (!valid_hostname(o->domains[i]) || strchr(o->domains[i], ','))
            return fail("--domain: '%s' is not a valid domain name", o->domains[i]);
    return 0;
}

static int cmd_init(int argc, char **argv)
{
    struct init_opts o = { 0 };
    int status = 1;
    char err[512];
    sbuf text = SBUF_INIT, path = SBUF_INIT, path2 = SBUF_INIT;
    char *dir = NULL;
    config cfg = { 0 };
    if (parse_init(argc, argv, &o) != 0) goto out;

    if (mkdir_p(o.dir, 0755) < 0) {
        fail("creating %s: %s", o.dir, strerror(errno));
        goto out;
    }
    dir = realpath(o.dir, NULL);
    if (!dir) {
        fail("%s: %s", o.dir, strerror(errno));
        goto out;
    }
    sbuf_printf(&path, "%s/pochta.conf", dir);
    if (!o.force && access(path.data, F_OK) == 0) {
        fail("%s exists; use --force to overwrite it", path.data);
        goto out;
    }

    /* Defaults for the commented-out keys, and a check that what we are
     * about to write parses. */
    sbuf_printf(&text, "hostname = %s\ndomains = %s\n", o.hostname, o.domains[0]);
    if (config_parse(text.data, text.len, "defaults", dir, &cfg, err, sizeof err) < 0) {
        fail("%s", err);
        goto out;
    }
    sbuf_reset(&text);
    config_text(&o, &cfg, &text);
    config_free(&cfg);
    if (config_parse(text.data, text.len, path.data, dir, &cfg, err, sizeof err) < 0) {
        fail("internal error: generated configuration does not parse: %s", err);
        goto out;
    }

    bool root = geteuid() == 0;
    uid_t uid = 0;
    gid_t gid = 0;
    if (root && ensure_system_user(&uid, &gid) < 0) goto out;

    /* TLS: keep an existing pair (it may be a real certificate) unless --force. */
    sbuf_reset(&path2);
    sbuf_printf(&path2, "%s/tls", dir);
    if (mkdir_p(path2.data, 0755) < 0) {
        fail("creating %s: %s", path2.data, strerror(errno));
        goto out;
    }
    if (!o.force && access(cfg.tls_cert, F_OK) == 0 && access(cfg.tls_key, F_OK) == 0) {
        printf("keeping the existing certificate %s\n", cfg.tls_cert);
    } else if (make_certificate(o.hostname, cfg.tls_cert, cfg.tls_key) < 0) {
        goto out;
    }

    /* Data directory: mail/, queue/, tmp/, accounts.db.  Others may pass
     * through it (0751, no listing) to reach run/sendmail.sock; everything
     * under it is closed to them. */
    static const char *const subdirs[] = { "mail", "queue", "tmp" };
    if (mkdir_p(cfg.data_dir, 0751) < 0) {
        fail("creating %s: %s", cfg.data_dir, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < 3; i++) {
        sbuf_reset(&path2);
        sbuf_printf(&path2, "%s/%s", cfg.data_dir, subdirs[i]);
        if (mkdir_p(path2.data, 0700) < 0) {
            fail("creating %s: %s", path2.data, strerror(errno));
            goto out;
        }
    }
    sbuf_reset(&path2);
    sbuf_printf(&path2, "%s/" ACCOUNTS_DB, cfg.data_dir);
    accounts *a = accounts_open(path2.data, true, err, sizeof err);
    if (!a) {
        fail("%s", err);
        goto out;
    }
    accounts_close(a);
    sbuf_reset(&path2);
    sbuf_printf(&path2, "%s/" QUEUE_DIR, cfg.data_dir);
    if (queue_init(path2.data, NULL, err, sizeof err) < 0) {
        fail("%s", err);
        goto out;
    }

    if (write_file_atomic(path.data, text.data, text.len, 0644) < 0) {
        fail("writing %s: %s", path.data, strerror(errno));
        goto out;
    }

    if (root) {
        chown_uid = uid;
        chown_gid = gid;
        if (nftw(cfg.data_dir, chown_one, 16, FTW_PHYS) != 0) goto out;
    }

    printf("pochta: initialised %s\n"
           "  configuration  %s\n"
           "  certificate    %s (self-signed for %s; replace it with a real one for public use)\n"
           "  data           %s%s%s\n"
           "\nnext steps:\n"
           "  1. add a mailbox:   pochta -c %s user add postmaster@%s\n"
           "  2. start the server: pochtad -c %s\n"
           "  3. publish an MX record for %s pointing at %s\n",
           dir, path.data, cfg.tls_cert, o.hostname, cfg.data_dir,
           root ? " (owned by " SYSTEM_USER ")" : "", root ? "" : " (run pochtad as root to use run_as)",
           path.data, o.domains[0], path.data, o.domains[0], o.hostname);
    if (o.port_base >= 0)
        printf("  (listeners on 127.0.0.1, ports %ld + the standard ports: for testing)\n", o.port_base);
    status = 0;
out:
    config_free(&cfg);
    sbuf_free(&text);
    sbuf_free(&path);
    sbuf_free(&path2);
    free(dir);
    free(o.domains);
    return status;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    log_init("pochta", LOG_WARN);
    const char *conf = DEFAULT_CONFIG;
    /* Installed as /usr/sbin/sendmail (a link to this binary): sendmail's
     * command line, configuration from -C, $POCHTA_CONFIG or the default. */
    const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!strcmp(base, "sendmail")) {
        const char *env = getenv("POCHTA_CONFIG");
        return cmd_sendmail(env && *env ? env : conf, argc, argv);
    }
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) conf = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 1;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[i];
    int cargc = argc - i - 1;
    char **cargv = argv + i + 1;
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "init")) return cmd_init(argc - i, argv + i);
    /* Runs as the calling user (no privdrop): the daemon learns who sent
     * from the socket's peer credentials. */
    if (!strcmp(cmd, "sendmail")) return cmd_sendmail(conf, argc - i, argv + i);
    if (strcmp(cmd, "user") && strcmp(cmd, "alias") && strcmp(cmd, "queue") && strcmp(cmd, "config") &&
        strcmp(cmd, "rebuild")) {
        fail("unknown command '%s'", cmd);
        usage(stderr);
        return 1;
    }

    config cfg = { 0 };
    char err[1024];
    if (config_load(conf, &cfg, err, sizeof err) < 0) {
        fail("%s", err);
        config_free(&cfg);
        return 1;
    }
    log_set_level(cfg.log_level < CONF_LOG_WARN ? LOG_ERROR : LOG_WARN);
    int rc;
    if (!strcmp(cmd, "config")) {
        if (cargc != 0) rc = fail("usage: pochta config");
        else {
            config_dump(&cfg, stdout);
            rc = 0;
        }
    } else if (privdrop_enter_data(cfg.data_dir, cfg.run_as, err, sizeof err) < 0) {
        rc = fail("%s", err);
    } else if (!strcmp(cmd, "user")) {
        rc = cmd_user(&cfg, cargc, cargv);
    } else if (!strcmp(cmd, "alias")) {
        rc = cmd_alias(&cfg, cargc, cargv);
    } else if (!strcmp(cmd, "rebuild")) {
        rc = cmd_rebuild(cargc, cargv);
    } else {
        rc = cmd_queue(cargc, cargv);
    }
    config_free(&cfg);
    return rc;
}
