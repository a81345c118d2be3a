/* pochtad: the mail server daemon.
 *
 * Start-up order matters for safety: read the configuration and the TLS
 * key and bind the listening sockets while still root, then switch to the
 * unprivileged run_as user (inside the data directory) before a single
 * byte from the network is read. */
#include <errno.h>
#include <event2/event.h>
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
#include "core/util.h"
#include "core/workpool.h"
#include "cmd/pochtad_listeners.h"
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

static struct smtp_server server;
static struct event *shutdown_tick;
static queue_runner *runner;
static time_t shutdown_started;
static char *relay_password;        /* until the queue runner has its copy */

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

static struct pop3_server pop3;
static struct imap_server imap;

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
    pochtad_listeners_stop();
    smtp_server_shutdown(&server);
    queue_runner_shutdown(runner);
    pop3_server_shutdown(&pop3);
    imap_server_shutdown(&imap);
    struct timeval tv = { 0, 50 * 1000 };
    shutdown_tick = event_new(base, -1, EV_PERSIST, check_shutdown, base);
    event_add(shutdown_tick, &tv);
}

/* Start-up failed once the TLS context exists: free it and close what was
 * bound, so that the exit is as clean as a normal one (a sanitizer build
 * reports no leak when, say, a port is already in use). */
static int exit_early(SSL_CTX *tls)
{
    pochtad_listeners_close();
    queue_relay_password_free(relay_password);
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

    if (pochtad_listeners_bind(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: %s\n", err);
        return exit_early(tls);
    }

    /* Secrets are read as root, so their files may be private to root. */
    if (queue_relay_password_read(&cfg, &relay_password, err, sizeof err) < 0) {
        fprintf(stderr, "pochtad: %s\n", err);
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

    pop3 = (struct pop3_server){
        .cfg = &cfg, .base = base, .tls = tls, .pool = server.pool,
        .failures = server.failures, .limits = server.limits,
    };
    imap = (struct imap_server){
        .cfg = &cfg, .base = base, .tls = tls, .pool = server.pool,
        .failures = server.failures, .limits = server.limits,
    };
    if (pochtad_listeners_start(base, &server, &pop3, &imap) < 0) return 1;

    /* Outbound delivery: the queue runner (scheduler, DNS, SMTP client). */
    runner = queue_runner_new(&(struct queue_runner_params){ .base = base, .pool = server.pool, .acc = acc,
                                                             .cfg = &cfg, .queue_dir = "queue",
                                                             .relay_password = relay_password },
                              err, sizeof err);
    queue_relay_password_free(relay_password);
    relay_password = NULL;
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
    for (size_t i = 0; i < 3; i++) event_free(sigs[i]);
    if (shutdown_tick) event_free(shutdown_tick);
    pochtad_listeners_close();
    pop3_server_free(&pop3);
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
