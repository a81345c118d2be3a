/* pochtad: the mail server daemon.
 *
 * Start-up order matters for safety: read the configuration and the TLS
 * key and bind the listening sockets while still root, then switch to the
 * unprivileged run_as user (inside the data directory) before a single
 * byte from the network is read. */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "auth/failures.h"
#include "core/config.h"
#include "core/log.h"
#include "core/privdrop.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "core/workpool.h"
#include "net/listener.h"
#include "net/tls.h"
#include "queue/queue.h"
#include "queue/queue_runner.h"
#include "imap/imap_server.h"
#include "pop3/pop3_server.h"
#include "smtp/smtp_server.h"
#include "store/store.h"

/* After SIGTERM, sessions whose message is being written get this long to
 * finish before the daemon exits anyway. */
#define SHUTDOWN_GRACE_SECONDS 30

struct listener_def {
    struct smtp_server *srv;
    const char *addr;
    enum smtp_listener_kind kind;
    int fd;
    struct evconnlistener *ev;
};

static struct listener_def listeners[3];
static struct listener_def local_listener = { .fd = -1 };
static char *local_socket_path;     /* absolute, or NULL when listen_local is "" */
static struct smtp_server server;
static struct event *shutdown_tick;
static queue_runner *runner;
static time_t shutdown_started;

/* Every connection costs a socket, and a logged-in IMAP or POP3 session
 * also holds its mail store open (lock file, index and its WAL, folder):
 * up to six descriptors each.  The usual soft limit of 1024 would cap
 * max_connections long before memory does, so raise it while still root,
 * when the hard limit can grow too. */
static void raise_fd_limit(const config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
    rlim_t want = (rlim_t)cfg->max_connections * 6 + 256;
    if (rl.rlim_cur >= want) return;
    rlim_t hard = rl.rlim_max;
    if (rl.rlim_max < want && geteuid() == 0) rl.rlim_max = want;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        /* Root may still be capped (containers): take what the hard limit allows. */
        rl.rlim_max = hard;
        rl.rlim_cur = want < hard ? want : hard;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want)
        log_warn("open file limit is %llu, below the %llu that max_connections = %u needs",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want, cfg->max_connections);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: pochtad [-c CONFIG] [-t]\n"
                 "  -c CONFIG  configuration file (default /etc/pochta/pochta.conf)\n"
                 "  -t         check the configuration and exit\n");
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *p)
{
    struct listener_def *def = p;
    smtp_session_accept(def->srv, def->kind, fd, sa);
}

static void on_accept_error(struct evconnlistener *l, void *p)
{
    struct listener_def *def = p;
    /* EMFILE and friends: keep running, the next accept may succeed. */
    log_error("accept on %s (%s): %s", def->addr, smtp_listener_name(def->kind), strerror(errno));
}

/* POP3 (pop3 with STLS, pop3s): own listeners; the pool, the failed-login
 * counts and the connection limits are shared with SMTP. */
struct pop3_listener_def {
    const char *addr;
    bool implicit_tls;
    int fd;
    struct evconnlistener *ev;
};

static struct pop3_listener_def pop3_listeners[2];
static struct pop3_server pop3;

static void on_pop3_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                           void *p)
{
    struct pop3_listener_def *def = p;
    pop3_session_accept(&pop3, def->implicit_tls, fd, sa);
}

static void on_pop3_accept_error(struct evconnlistener *l, void *p)
{
    struct pop3_listener_def *def = p;
    log_error("accept on %s (%s): %s", def->addr, def->implicit_tls ? "pop3s" : "pop3", strerror(errno));
}

/* Bind while still root; returns -1 with err. */
static int pop3_listeners_bind(const config *cfg, char *err, size_t errlen)
{
    const char *addrs[2] = { cfg->listen_pop3, cfg->listen_pop3s };
    for (size_t i = 0; i < 2; i++) {
        pop3_listeners[i] = (struct pop3_listener_def){ addrs[i], i == 1, -1, NULL };
        if (!addrs[i]) continue;
        pop3_listeners[i].fd = listener_bind(addrs[i], err, errlen);
        if (pop3_listeners[i].fd < 0) return -1;
    }
    return 0;
}

static int pop3_listeners_start(struct event_base *base)
{
    for (size_t i = 0; i < 2; i++) {
        struct pop3_listener_def *d = &pop3_listeners[i];
        if (d->fd < 0) continue;
        d->ev = evconnlistener_new(base, on_pop3_accept, d, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                   -1, d->fd);
        if (!d->ev) {
            fprintf(stderr, "pochtad: cannot watch %s\n", d->addr);
            return -1;
        }
        evconnlistener_set_error_cb(d->ev, on_pop3_accept_error);
        log_info("listening on %s (%s)", d->addr, d->implicit_tls ? "pop3s" : "pop3");
    }
    return 0;
}

static void pop3_listeners_stop(void)
{
    for (size_t i = 0; i < 2; i++) {
        if (pop3_listeners[i].ev) evconnlistener_free(pop3_listeners[i].ev);
        pop3_listeners[i].ev = NULL;
    }
}

/* IMAP (imap with STARTTLS, imaps): like POP3, own listeners, shared
 * pool, failure counts and connection limits. */
static struct pop3_listener_def imap_listeners[2];
static struct imap_server imap;

static void on_imap_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                           void *p)
{
    struct pop3_listener_def *def = p;
    imap_session_accept(&imap, def->implicit_tls, fd, sa);
}

static void on_imap_accept_error(struct evconnlistener *l, void *p)
{
    struct pop3_listener_def *def = p;
    log_error("accept on %s (%s): %s", def->addr, def->implicit_tls ? "imaps" : "imap", strerror(errno));
}

static int imap_listeners_bind(const config *cfg, char *err, size_t errlen)
{
    const char *addrs[2] = { cfg->listen_imap, cfg->listen_imaps };
    for (size_t i = 0; i < 2; i++) {
        imap_listeners[i] = (struct pop3_listener_def){ addrs[i], i == 1, -1, NULL };
        if (!addrs[i]) continue;
        imap_listeners[i].fd = listener_bind(addrs[i], err, errlen);
        if (imap_listeners[i].fd < 0) return -1;
    }
    return 0;
}

static int imap_listeners_start(struct event_base *base)
{
    for (size_t i = 0; i < 2; i++) {
        struct pop3_listener_def *d = &imap_listeners[i];
        if (d->fd < 0) continue;
        d->ev = evconnlistener_new(base, on_imap_accept, d, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                   -1, d->fd);
        if (!d->ev) {
            fprintf(stderr, "pochtad: cannot watch %s\n", d->addr);
            return -1;
        }
        evconnlistener_set_error_cb(d->ev, on_imap_accept_error);
        log_info("listening on %s (%s)", d->addr, d->implicit_tls ? "imaps" : "imap");
    }
    return 0;
}

static void imap_listeners_stop(void)
{
    for (size_t i = 0; i < 2; i++) {
        if (imap_listeners[i].ev) evconnlistener_free(imap_listeners[i].ev);
        imap_listeners[i].ev = NULL;
    }
}

/* The local submission socket (`pochta sendmail`): bound as root under the
 * data directory, mode 0666 so any local user (cron, PHP) may submit; its
 * folder is given to run_as so the daemon can remove the socket at exit. */
static int local_listener_bind(const config *cfg, char *err, size_t errlen)
{
    if (!cfg->listen_local || !*cfg->listen_local || !strcmp(cfg->listen_local, "off")) return 0;
    sbuf path = SBUF_INIT;
    if (cfg->listen_local[0] == '/') sbuf_puts(&path, cfg->listen_local);
    else sbuf_printf(&path, "%s/%s", cfg->data_dir, cfg->listen_local);
    local_socket_path = sbuf_detach(&path);
    char *dir = xstrdup(local_socket_path);
    *strrchr(dir, '/') = '\0';
    uid_t uid;
    gid_t gid;
    int rc = 0;
    bool existed = !*dir || access(dir, F_OK) == 0;
    /* Created searchable by all (whatever the umask): the socket's own
     * mode is the gate.  An existing folder keeps the operator's mode. */
    if (!existed && (mkdir_p(dir, 0755) < 0 || chmod(dir, 0755) < 0)) {
        set_err(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        rc = -1;
    } else if (*dir && geteuid() == 0 && privdrop_lookup(cfg->run_as, &uid, &gid) == 0 &&
               chown(dir, uid, gid) < 0) {
        set_err(err, errlen, "chown %s: %s", dir, strerror(errno));
        rc = -1;
    }
    free(dir);
    if (rc < 0) return -1;
    local_listener = (struct listener_def){ &server, local_socket_path, SMTP_LISTENER_LOCAL, -1, NULL };
    local_listener.fd = listener_bind_unix(local_socket_path, 0666, err, errlen);
    return local_listener.fd < 0 ? -1 : 0;
}

static void local_listener_stop(void)
{
    if (local_listener.ev) {
        evconnlistener_free(local_listener.ev);
        local_listener.ev = NULL;
        /* Gone from the file system too: a client then learns at once that
         * no daemon is there (and a stale file is replaced at start anyway). */
        if (unlink(local_socket_path) < 0 && errno != ENOENT)
            log_warn("removing %s: %s", local_socket_path, strerror(errno));
    }
}

static void check_shutdown(evutil_socket_t fd, short what, void *p)
{
    struct event_base *base = p;
    if (server.nsessions == 0 && pop3.nsessions == 0 && imap.nsessions == 0 && workpool_pending(server.pool) == 0) {
        event_base_loopbreak(base);
        return;
    }
    if (time(NULL) - shutdown_started > SHUTDOWN_GRACE_SECONDS) {
        log_warn("shutdown: %u sessions still open after %d s, exiting", server.nsessions,
                 SHUTDOWN_GRACE_SECONDS);
        event_base_loopbreak(base);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *p)
{
    struct event_base *base = p;
    if (sig == SIGHUP) {
        log_info("SIGHUP: accounts and aliases are read live; restart to apply configuration changes");
        return;
    }
    if (server.shutting_down) return;
    log_info("signal %d: shutting down (%u sessions open)", (int)sig, server.nsessions);
    shutdown_started = time(NULL);
    for (size_t i = 0; i < 3; i++) {
        if (listeners[i].ev) evconnlistener_free(listeners[i].ev);
        listeners[i].ev = NULL;
    }
    local_listener_stop();
    smtp_server_shutdown(&server);
    queue_runner_shutdown(runner);
    pop3_listeners_stop();
    pop3_server_shutdown(&pop3);
    imap_listeners_stop();
    imap_server_shutdown(&imap);
    struct timeval tv = { 0, 50 * 1000 };
    shutdown_tick = event_new(base, -1, EV_PERSIST, check_shutdown, base);
    event_add(shutdown_tick, &tv);
}

/* Start-up failed once the TLS context exists: free it so that the exit
 * is as clean as a normal one (a sanitizer build reports no leak when, say,
 * a port is already in use). */
static int exit_early(SSL_CTX *tls)
{
    SSL_CTX_free(tls);
    return 1;
}

int main(int argc, char **argv)
{
    const char *conf_path = "/etc/pochta/pochta.conf";
    bool check_only = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:th")) != -1) {
        switch (opt) {
        case 'c': conf_path = optarg; break;
        case 't': check_only = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    /* The ports accept connections (into the backlog) as soon as they are
     * bound, so a supervisor may signal us before the loop's handlers
     * exist: hold SIGTERM/SIGINT/SIGHUP pending until they do. */
    sigset_t held, previous;
    sigemptyset(&held);
    sigaddset(&held, SIGTERM);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGHUP);
    sigprocmask(SIG_BLOCK, &held, &previous);
    log_init("pochtad", LOG_INFO);
    umask(027);

    static config cfg;
    char err[512];
    if (config_load(conf_path, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: %s\n", err);
        return 1;
    }
    log_set_level((enum log_level)cfg.log_level);
    store_set_fsync(strcmp(cfg.mailbox_fsync, "always") == 0 ? STORE_FSYNC_ALWAYS
                                                              : STORE_FSYNC_OPTIMIZED);
    store_set_header_cache((size_t)cfg.header_cache_max);
    store_set_expunge_history(cfg.expunge_history);

    SSL_CTX *tls = tls_server_ctx_new(cfg.tls_cert, cfg.tls_key, err, sizeof err);
    if (!tls) {
        fprintf(stderr, "pochtad: %s\n", err);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK\n", cfg.path);
        SSL_CTX_free(tls);
        return 0;
    }

    const char *addrs[3] = { cfg.listen_smtp, cfg.listen_submission, cfg.listen_submissions };
    const enum smtp_listener_kind kinds[3] = { SMTP_LISTENER_MX, SMTP_LISTENER_SUBMISSION,
                                               SMTP_LISTENER_SUBMISSIONS };
    for (size_t i = 0; i < 3; i++) {
        listeners[i] = (struct listener_def){ &server, addrs[i], kinds[i], -1, NULL };
        if (!addrs[i]) continue;
        listeners[i].fd = listener_bind(addrs[i], err, sizeof err);
        if (listeners[i].fd < 0) {
            fprintf(stderr, "pochtad: %s (%s)\n", err, smtp_listener_name(kinds[i]));
            return exit_early(tls);
        }
    }

    if (local_listener_bind(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: %s (local)\n", err);
        return exit_early(tls);
    }

    if (pop3_listeners_bind(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: %s (pop3)\n", err);
        return exit_early(tls);
    }
    if (imap_listeners_bind(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: %s (imap)\n", err);
        return exit_early(tls);
    }

    raise_fd_limit(&cfg);
    if (privdrop_enter_data(cfg.data_dir, cfg.run_as, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: %s\n", err);
        return exit_early(tls);
    }
    if (mkdir_p("tmp", 0750) < 0 || mkdir_p("mail", 0750) < 0 || mkdir_p("queue", 0750) < 0) {
        fprintf(stderr, "pochtad: cannot create folders in %s: %s\n", cfg.data_dir, strerror(errno));
        return exit_early(tls);
    }

    unsigned recovered = 0;
    if (queue_init("queue", &recovered, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: queue: %s\n", err);
        return 1;
    }
    if (recovered) log_warn("queue: recovered %u message(s) after a crash", recovered);

    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "pochtad: cannot create event loop\n");
        return 1;
    }

    accounts *acc = accounts_open("accounts.db", true, err, sizeof err);
    if (!acc) {
        fprintf(stderr, "pochtad: %s/accounts.db: %s\n", cfg.data_dir, err);
        return 1;
    }

    server = (struct smtp_server){
        .cfg = &cfg, .base = base, .tls = tls, .acc = acc,
        .pool = workpool_new(base, cfg.worker_threads),
        .failures = auth_failures_new(65536),
        .limits = connlimit_new(cfg.max_connections, cfg.max_connections_per_ip),
    };

    for (size_t i = 0; i < 3; i++) {
        if (listeners[i].fd < 0) continue;
        listeners[i].ev = evconnlistener_new(base, on_accept, &listeners[i],
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
                                             listeners[i].fd);
        if (!listeners[i].ev) {
            fprintf(stderr, "pochtad: cannot watch %s\n", listeners[i].addr);
            return 1;
        }
        evconnlistener_set_error_cb(listeners[i].ev, on_accept_error);
        log_info("listening on %s (%s)", listeners[i].addr, smtp_listener_name(listeners[i].kind));
    }

    if (local_listener.fd >= 0) {
        local_listener.ev = evconnlistener_new(base, on_accept, &local_listener,
                                               LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, local_listener.fd);
        if (!local_listener.ev) {
            fprintf(stderr, "pochtad: cannot watch %s\n", local_listener.addr);
            return 1;
        }
        evconnlistener_set_error_cb(local_listener.ev, on_accept_error);
        log_info("listening on %s (local)", local_listener.addr);
    }

    pop3 = (struct pop3_server){
        .cfg = &cfg, .base = base, .tls = tls, .pool = server.pool,
        .failures = server.failures, .limits = server.limits,
    };
    if (pop3_listeners_start(base) < 0) return 1;
    imap = (struct imap_server){
        .cfg = &cfg, .base = base, .tls = tls, .pool = server.pool,
        .failures = server.failures, .limits = server.limits,
    };
    if (imap_listeners_start(base) < 0) return 1;

    /* Outbound delivery: the queue runner (scheduler, DNS, SMTP client). */
    runner = queue_runner_new(&(struct queue_runner_params){ .base = base, .pool = server.pool, .acc = acc,
                                                             .cfg = &cfg, .queue_dir = "queue" },
                              err, sizeof err);
    if (!runner) {
        fprintf(stderr, "pochtad: outbound delivery: %s\n", err);
        return 1;
    }

    struct event *sigs[3];
    const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
    for (size_t i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(base, signums[i], on_signal, base);
        event_add(sigs[i], NULL);
    }
    /* Worker threads started above keep the signals blocked, so they
     * reach the loop's handlers; a signal held since start-up runs now. */
    sigprocmask(SIG_SETMASK, &previous, NULL);
    log_info("pochtad %s started as uid %d, hostname %s, %zu local domain(s), data in %s",
             "0.1.0", (int)geteuid(), cfg.hostname, cfg.ndomains, cfg.data_dir);

    event_base_dispatch(base);

    workpool_free(server.pool);     /* runs the runner's last job callbacks: free it after */
    queue_runner_free(runner);
    store_cache_clear();
    for (size_t i = 0; i < 3; i++) {
        if (listeners[i].ev) evconnlistener_free(listeners[i].ev);
        event_free(sigs[i]);
    }
    if (shutdown_tick) event_free(shutdown_tick);
    local_listener_stop();
    free(local_socket_path);
    pop3_listeners_stop();
    pop3_server_free(&pop3);
    imap_listeners_stop();
    imap_server_free(&imap);
    auth_failures_free(server.failures);
    connlimit_free(server.limits);
    accounts_close(acc);
    SSL_CTX_free(tls);
    event_base_free(base);
    log_info("pochtad stopped");
    config_free(&cfg);
    return 0;
}
