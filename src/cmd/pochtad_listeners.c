#include "cmd/pochtad_listeners.h"

#include <errno.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/privdrop.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "imap/imap_server.h"
#include "net/listener.h"
#include "pop3/pop3_server.h"
#include "smtp/smtp_server.h"

enum proto { PROTO_SMTP, PROTO_POP3, PROTO_IMAP };

struct listener_def {
    const char *name;               /* for logs: "smtp", "pop3s", "local"... */
    const char *addr;               /* host:port, or the local socket's path */
    enum proto proto;
    enum smtp_listener_kind smtp_kind;
    bool implicit_tls;              /* pop3s, imaps */
    int fd;
    struct evconnlistener *ev;
};

static struct listener_def defs[8];
static size_t ndefs;
static char *local_path;            /* absolute; NULL without listen_local */
static struct smtp_server *smtp_srv;
static struct pop3_server *pop3_srv;
static struct imap_server *imap_srv;

static bool is_local(const struct listener_def *d)
{
    return d->proto == PROTO_SMTP && d->smtp_kind == SMTP_LISTENER_LOCAL;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *p)
{
    const struct listener_def *d = p;
    switch (d->proto) {
    case PROTO_SMTP: smtp_session_accept(smtp_srv, d->smtp_kind, fd, sa); break;
    case PROTO_POP3: pop3_session_accept(pop3_srv, d->implicit_tls, fd, sa); break;
    case PROTO_IMAP: imap_session_accept(imap_srv, d->implicit_tls, fd, sa); break;
    }
}

static void on_accept_error(struct evconnlistener *l, void *p)
{
    const struct listener_def *d = p;
    /* EMFILE and friends: keep running, the next accept may succeed. */
    log_error("accept on %s (%s): %s", d->addr, d->name, strerror(errno));
}

/* The local submission socket (`pochta sendmail`): under the data
 * directory unless absolute, mode 0666 so any local user (cron, PHP) may
 * submit; its folder is given to run_as so the daemon can remove the
 * socket at exit. */
static int bind_local(const config *cfg, struct listener_def *d, char *err, size_t errlen)
{
    sbuf path = SBUF_INIT;
    if (cfg->listen_local[0] == '/') sbuf_puts(&path, cfg->listen_local);
    else sbuf_printf(&path, "%s/%s", cfg->data_dir, cfg->listen_local);
    local_path = sbuf_detach(&path);
    d->addr = local_path;
    char *dir = xstrdup(local_path);
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
    if (rc == 0) d->fd = listener_bind_unix(local_path, 0666, err, errlen);
    return d->fd < 0 ? -1 : 0;
}

int pochtad_listeners_bind(const config *cfg, char *err, size_t errlen)
{
    const struct listener_def rows[] = {
#define SMTP_ROW(key, kind) { smtp_listener_name(kind), cfg->key, PROTO_SMTP, kind, false, -1, NULL }
        SMTP_ROW(listen_smtp, SMTP_LISTENER_MX),
        SMTP_ROW(listen_submission, SMTP_LISTENER_SUBMISSION),
        SMTP_ROW(listen_submissions, SMTP_LISTENER_SUBMISSIONS),
        SMTP_ROW(listen_local, SMTP_LISTENER_LOCAL),
#undef SMTP_ROW
        { "pop3", cfg->listen_pop3, PROTO_POP3, 0, false, -1, NULL },
        { "pop3s", cfg->listen_pop3s, PROTO_POP3, 0, true, -1, NULL },
        { "imap", cfg->listen_imap, PROTO_IMAP, 0, false, -1, NULL },
        { "imaps", cfg->listen_imaps, PROTO_IMAP, 0, true, -1, NULL },
    };
    _Static_assert(sizeof rows / sizeof rows[0] == sizeof defs / sizeof defs[0], "one row per listener");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct listener_def *r = &rows[i];
        /* An empty listen_* key turns the listener off; listen_local also
         * takes "off". */
        if (!r->addr || !*r->addr || (is_local(r) && !strcmp(r->addr, "off"))) continue;
        struct listener_def *d = &defs[ndefs++];
        *d = *r;
        char why[400];
        int rc = is_local(d) ? bind_local(cfg, d, why, sizeof why)
                             : ((d->fd = listener_bind(r->addr, why, sizeof why)) < 0 ? -1 : 0);
        if (rc < 0) {
            set_err(err, errlen, "%s (%s)", why, d->name);
            return -1;
        }
    }
    return 0;
}

int pochtad_listeners_start(struct event_base *base, struct smtp_server *smtp, struct pop3_server *pop3,
                            struct imap_server *imap)
{
    smtp_srv = smtp;
    pop3_srv = pop3;
    imap_srv = imap;
    for (size_t i = 0; i < ndefs; i++) {
        struct listener_def *d = &defs[i];
        d->ev = evconnlistener_new(base, on_accept, d, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
                                   d->fd);
        if (!d->ev) {
            fprintf(stderr, "pochtad: cannot watch %s (%s)\n", d->addr, d->name);
            return -1;
        }
        d->fd = -1;     /* the evconnlistener owns it now */
        evconnlistener_set_error_cb(d->ev, on_accept_error);
        log_info("listening on %s (%s)", d->addr, d->name);
    }
    return 0;
}

void pochtad_listeners_stop(void)
{
    for (size_t i = 0; i < ndefs; i++) {
        if (!defs[i].ev) continue;
        evconnlistener_free(defs[i].ev);
        defs[i].ev = NULL;
        if (is_local(&defs[i]) && unlink(local_path) < 0 && errno != ENOENT)
            log_warn("removing %s: %s", local_path, strerror(errno));
    }
}

void pochtad_listeners_close(void)
{
    pochtad_listeners_stop();
    for (size_t i = 0; i < ndefs; i++)
        if (defs[i].fd >= 0) close(defs[i].fd);
    ndefs = 0;
    free(local_path);
    local_path = NULL;
}
