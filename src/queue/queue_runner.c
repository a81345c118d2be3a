#include "queue/queue_runner.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "dns/dns.h"
#include "mta/dsn.h"
#include "mta/mta_route.h"
#include "mta/mta_session.h"
#include "queue/queue.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_delivery.h"
#include "smtp/smtp_parse.h"

#define TICK_SECONDS 1
#define DSN_FULL_MAX (1u << 20)     /* originals above 1 MiB come back as headers only */
#define SCAN_CHUNK (64 * 1024)

struct job;

#define KEY_MAX (DNS_NAME_TEXT_MAX + 24)

/* One destination of a job: its recipients go in one transaction.  A
 * destination is a domain's MX hosts, or one next hop (relay_host or a
 * transport map entry) shared by every domain routed to it. */
struct route {
    struct job *job;
    char domain[DNS_NAME_TEXT_MAX + 3];     /* the first recipient's domain: slot and MX lookup */
    char key[KEY_MAX];                      /* destination, for connection reuse */
    struct mta_nexthop nh;                  /* MTA_NH_MX: the domain's own MX */
    bool use_relay;                         /* relay_host: its TLS policy and AUTH */
    bool local;                             /* a local domain: never sent */
    size_t *idx;                /* indices into job->msg->rcpts */
    struct mta_rcpt *rcpts;
    size_t n;
    struct mta_txn txn;
    dns_query *dq;
    struct dns_target *targets;
    size_t ntargets, cur;
    bool plain;                 /* retrying the current target without STARTTLS */
    char relay[DNS_NAME_TEXT_MAX + 80];
    mta_session *sess;
    struct conn *held;          /* its idle connection, parked but kept from
                                   others until the results are durable */
    bool counted;               /* holds a per-domain slot */
    bool done;
};

/* A bounce or delay notice to deliver on the worker. */
struct notice {
    sbuf content;
    struct account_dest *dests;
    size_t ndests;
    bool ok;
};

struct job {
    queue_runner *r;
    struct job *next;
    char qid[17];
    struct queue_msg *msg;      /* NULL while loading */
    /* Domains reserved by the scan until the routes take their own slots. */
    char **reserved;
    size_t nreserved;
    bool loading;               /* queue_load() and the content scan on the worker */
    bool load_loop;             /* results of the load: a mail loop */
    bool load_eight_bit;
    unsigned load_received;
    char load_err[300];
    unsigned marking;           /* queue_record_partial() jobs on the worker */
    struct route *routes;
    size_t nroutes, routes_left;
    bool recording;
    /* record phase (worker) */
    struct queue_rcpt_update *updates;
    char **update_errors;
    size_t nupdates;
    time_t next_attempt;
    struct dsn_rcpt *bounce_rcpts, *delay_rcpts;
    size_t nbounce, ndelay;
    size_t *bounce_upd;         /* update index of each bounced recipient */
    size_t *delay_upd;
    struct notice bounce, delay;
    char record_err[256];
    int record_rc;
};

struct domain_slot {
    char *domain;
    unsigned active;
    struct domain_slot *next;
};

/* An idle connection waiting for the next message to its destination. */
struct conn {
    queue_runner *r;
    char key[KEY_MAX];
    mta_session *s;
    struct route *holder;       /* not to be taken until this route's results are durable */
    struct conn *next;
};

struct queue_runner {
    struct queue_runner_params p;
    struct event *tick;
    struct event *kick;         /* one-shot: a kick must not move the periodic tick */
    dns_resolver *dns;
    SSL_CTX *tls;               /* opportunistic, no verification */
    SSL_CTX *verify_tls;        /* relay_tls=require-verify: system CAs or relay_tls_ca_file */
    struct mta_nexthop relay;   /* relay.kind == MTA_NH_MX: no relay_host */
    char *relay_password;       /* a copy of queue_runner_params.relay_password */
    struct mta_transport_map tmap;
    struct conn *conns;
    struct job *jobs;
    unsigned njobs;
    struct domain_slot *slots;
    bool scanning;              /* a due scan runs on the worker */
    char (*ended)[17];          /* jobs ended while it ran: its "due" may predate their record */
    size_t nended, capended;
    bool rescan;                /* kicked meanwhile: scan again when it ends */
    bool stopping;
};

static queue_runner *the_runner;

queue_runner *queue_runner_get(void)
{
    return the_runner;
}

/* ---- per-domain concurrency ------------------------------------------- */

static struct domain_slot *slot_find(queue_runner *r, const char *domain, bool create)
{
    for (struct domain_slot *s = r->slots; s; s = s->next)
        if (!strcmp(s->domain, domain)) return s;
    if (!create) return NULL;
    struct domain_slot *s = xcalloc(1, sizeof *s);
    s->domain = xstrdup(domain);
    s->next = r->slots;
    r->slots = s;
    return s;
}

static void slot_release(queue_runner *r, const char *domain)
{
    struct domain_slot **pp = &r->slots;
    for (struct domain_slot *s = *pp; s; pp = &s->next, s = s->next) {
        if (strcmp(s->domain, domain) != 0) continue;
        if (--s->active == 0) {
            *pp = s->next;
            free(s->domain);
            free(s);
        }
        return;
    }
}

/* ---- jobs ---------------------------------------------------------------- */

static void route_free(struct route *rt)
{
    if (rt->held) rt->held->holder = NULL;
    for (size_t i = 0; i < rt->n; i++) free(rt->rcpts[i].reply);
    free(rt->rcpts);
    free(rt->idx);
    free(rt->targets);
}

static void notice_free(struct notice *n)
{
    sbuf_free(&n->content);
    accounts_dests_free(n->dests, n->ndests);
}

static void job_free(struct job *j)
{
    for (size_t i = 0; i < j->nroutes; i++) route_free(&j->routes[i]);
    free(j->routes);
    for (size_t i = 0; i < j->nupdates; i++) free(j->update_errors[i]);
    free(j->update_errors);
    free(j->updates);
    free(j->bounce_rcpts);
    free(j->delay_rcpts);
    free(j->bounce_upd);
    free(j->delay_upd);
    notice_free(&j->bounce);
    notice_free(&j->delay);
    queue_msg_free(j->msg);
    for (size_t i = 0; i < j->nreserved; i++) {
        slot_release(j->r, j->reserved[i]);
        free(j->reserved[i]);
    }
    free(j->reserved);
    free(j);
}

static void job_unlink(queue_runner *r, struct job *j)
{
    for (struct job **pp = &r->jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            r->njobs--;
            return;
        }
    }
}

static bool job_running(queue_runner *r, const char *qid)
{
    for (struct job *j = r->jobs; j; j = j->next)
        if (!strcmp(j->qid, qid)) return true;
    return false;
}

static const char *domain_of(const char *address)
{
    const char *at = strrchr(address, '@');
    return at ? at + 1 : "";
}

static void log_rcpt(const struct job *j, const char *address, const char *relay, const char *status,
                     const char *detail)
{
    char a[600], d[1200], rl[400];
    log_safe(address, strlen(address), a, sizeof a);
    log_safe(detail ? detail : "", detail ? strlen(detail) : 0, d, sizeof d);
    log_safe(relay && *relay ? relay : "none", strlen(relay && *relay ? relay : "none"), rl, sizeof rl);
    log_info("queue=%s to=<%s> relay=%s status=%s (%s)", j->qid, a, rl, status, d);
}

/* Backoff: retry_min, doubled per attempt, capped at retry_max. */
static time_t next_delay(const config *cfg, unsigned attempts)
{
    uint64_t d = cfg->queue_retry_min;
    for (unsigned i = 1; i < attempts && d < cfg->queue_retry_max; i++) d *= 2;
    return (time_t)(d < cfg->queue_retry_max ? d : cfg->queue_retry_max);
}

/* ---- notices (bounces and delay warnings) ------------------------------- */

static bool is_local_cb(const char *domain, void *ctx)
{
    return config_is_local_domain(ctx, domain);
}

/* Where a notice to the envelope sender goes.  False: nowhere (an
 * unknown local sender), so the notice is dropped with a log line. */
static bool notice_route(queue_runner *r, const char *sender, struct notice *n)
{
    const config *cfg = r->p.cfg;
    const char *dom = domain_of(sender);
    if (config_is_local_domain(cfg, dom)) {
        int k = accounts_resolve(r->p.acc, sender, cfg->recipient_delimiter, is_local_cb, (void *)cfg,
                                 &n->dests, &n->ndests);
        return k > 0;
    }
    n->dests = xcalloc(1, sizeof *n->dests);
    n->dests[0] = (struct account_dest){ xstrdup(sender), false };
    n->ndests = 1;
    return true;
}

/* Worker: read the original back and build the report. */
static void notice_build(struct job *j, struct notice *n, const struct dsn_rcpt *rc, size_t count)
{
    struct queue_msg *m = j->msg;
    queue_runner *r = j->r;
    char msgid[128], boundary[64], id[17];
    make_id(id);
    snprintf(msgid, sizeof msgid, "<%s.dsn@%s>", id, r->p.cfg->hostname);
    snprintf(boundary, sizeof boundary, "%s/%s.pochta-report", m->qid, id);
    /* The original (or enough of it for the headers when it is large). */
    uint64_t want = m->size;
    bool full_ok = m->ret != 2 && want <= DSN_FULL_MAX;
    if (!full_ok && want > 256 * 1024) want = 256 * 1024;
    char *orig = xmalloc(want + 1);
    uint64_t got = 0;
    while (got < want) {
        ssize_t k = pread(m->fd, orig + got, (size_t)(want - got), (off_t)(m->offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (uint64_t)k;
    }
    struct dsn_report rep = {
        .reporting_mta = r->p.cfg->hostname, .sender = m->sender, .envid = m->envid, .qid = m->qid,
        .message_id = msgid, .boundary = boundary, .arrival = m->arrival, .date = time(NULL),
        .ret = full_ok ? m->ret : 2, .full_max = DSN_FULL_MAX, .rcpts = rc, .nrcpts = count,
    };
    dsn_build(&rep, orig, (size_t)got, &n->content);
    free(orig);
}

/* Worker: store the notice like received mail (local mailboxes, or the
 * queue for a remote sender), from the null sender. */
static bool notice_deliver(struct job *j, struct notice *n)
{
    queue_runner *r = j->r;
    int fd = memfd_create("pochta-dsn", MFD_CLOEXEC);
    if (fd < 0 || write_full(fd, n->content.data, n->content.len) < 0) {
        log_error("queue=%s cannot write a delivery report: %s", j->qid, strerror(errno));
        if (fd >= 0) close(fd);
        return false;
    }
    char qid[17];
    make_id(qid);
    struct smtp_delivery_rcpt rc = { j->msg->sender, 0, NULL, n->dests, n->ndests };
    struct smtp_delivery d = {
        .qid = qid, .mail_from = "", .helo = r->p.cfg->hostname, .client_ip = "127.0.0.1",
        .hostname = r->p.cfg->hostname, .protocol = "local", .rcpts = &rc, .nrcpts = 1,
        .spool_fd = fd, .spool_len = n->content.len, .arrival = time(NULL),
    };
    d.body = SMTP_BODY_7BIT;
    for (size_t i = 0; i < n->content.len; i++)
        if ((unsigned char)n->content.data[i] >= 0x80) d.body = SMTP_BODY_8BITMIME;
    smtp_delivery_run(&d);
    close(fd);
    if (d.status == 0)
        log_info("queue=%s report queue=%s sent to the sender (%u stored, %u queued)", j->qid, qid,
                 d.delivered, d.queued);
    return d.status == 0;
}

/* ---- recording (worker) --------------------------------------------------- */

static void record_work(void *arg)
{
    struct job *j = arg;
    if (j->nbounce) {
        notice_build(j, &j->bounce, j->bounce_rcpts, j->nbounce);
        if (!notice_deliver(j, &j->bounce)) {
            /* Keep the recipients for a later attempt rather than lose the bounce. */
            for (size_t i = 0; i < j->nbounce; i++) j->updates[j->bounce_upd[i]].state = "deferred";
        }
    }
    if (j->ndelay) {
        notice_build(j, &j->delay, j->delay_rcpts, j->ndelay);
        if (!notice_deliver(j, &j->delay))
            for (size_t i = 0; i < j->ndelay; i++) j->updates[j->delay_upd[i]].state = "deferred";
    }
    j->record_rc = queue_record(j->r->p.queue_dir, j->qid, j->updates, j->nupdates, j->next_attempt,
                                j->record_err, sizeof j->record_err);
}

static void route_release(struct route *rt);

/* A scan on the worker may have read the index before this job's record
 * committed: remember the job so that scan does not start it again. */
static void note_ended(queue_runner *r, const char *qid)
{
    if (!r->scanning) return;
    if (r->nended == r->capended) {
        r->capended = r->capended ? r->capended * 2 : 16;
        r->ended = xrealloc(r->ended, r->capended * sizeof *r->ended);
    }
    snprintf(r->ended[r->nended++], 17, "%s", qid);
}

static bool ended_during_scan(const queue_runner *r, const char *qid)
{
    for (size_t i = 0; i < r->nended; i++)
        if (!strcmp(r->ended[i], qid)) return true;
    return false;
}

static void record_done(void *arg)
{
    struct job *j = arg;
    queue_runner *r = j->r;
    if (j->record_rc < 0) log_error("queue=%s recording delivery results failed: %s", j->qid, j->record_err);
    else if (j->record_rc == 1) log_info("queue=%s removed: every recipient done", j->qid);
    /* The results are durable: the connections may carry the next message. */
    for (size_t i = 0; i < j->nroutes; i++) route_release(&j->routes[i]);
    note_ended(r, j->qid);
    job_unlink(r, j);
    job_free(j);
    if (!r->stopping) queue_runner_kick(r);
}

/* Every route has results: decide per recipient and record. */
static void job_finish(struct job *j)
{
    queue_runner *r = j->r;
    const config *cfg = r->p.cfg;
    struct queue_msg *m = j->msg;
    time_t now = time(NULL);
    bool expired = now >= m->arrival + (time_t)cfg->queue_lifetime;
    bool warn_time = cfg->queue_delay_warning > 0 && now >= m->arrival + (time_t)cfg->queue_delay_warning;
    size_t total = 0;
    for (size_t i = 0; i < j->nroutes; i++) total += j->routes[i].n;
    j->updates = xcalloc(total ? total : 1, sizeof *j->updates);
    j->update_errors = xcalloc(total ? total : 1, sizeof *j->update_errors);
    j->bounce_rcpts = xcalloc(total ? total : 1, sizeof *j->bounce_rcpts);
    j->delay_rcpts = xcalloc(total ? total : 1, sizeof *j->delay_rcpts);
    j->bounce_upd = xcalloc(total ? total : 1, sizeof *j->bounce_upd);
    j->delay_upd = xcalloc(total ? total : 1, sizeof *j->delay_upd);
    for (size_t i = 0; i < j->nroutes; i++) {
        struct route *rt = &j->routes[i];
        for (size_t k = 0; k < rt->n; k++) {
            struct queue_msg_rcpt *qr = &m->rcpts[rt->idx[k]];
            struct mta_rcpt *res = &rt->rcpts[k];
            size_t u = j->nupdates++;
            const char *why = res->reply ? res->reply : "no result";
            j->update_errors[u] = xstrdup(why);
            j->updates[u] = (struct queue_rcpt_update){ qr->idx, "deferred", j->update_errors[u] };
            int cls = res->code / 100;
            if (cls == 2) {
                j->updates[u].state = "delivered";
                j->updates[u].error = NULL;
                log_rcpt(j, qr->address, rt->relay, "sent", why);
                continue;
            }
            bool fail = cls == 5 || expired;
            const char *status = res->status[0] ? res->status : (cls == 5 ? "5.0.0" : "4.0.0");
            if (fail && cls != 5) {
                /* RFC 3463: 4.4.7, delivery time expired, with the last reason. */
                status = "4.4.7";
                free(j->update_errors[u]);
                sbuf b = SBUF_INIT;
                sbuf_printf(&b, "delivery time expired; last error: %s", why);
                j->update_errors[u] = sbuf_detach(&b);
                j->updates[u].error = j->update_errors[u];
            }
            struct dsn_rcpt dr = { qr->address, qr->orcpt, fail ? DSN_FAILED : DSN_DELAYED, status,
                                   rt->relay[0] ? rt->relay : NULL, j->update_errors[u], now,
                                   m->arrival + (time_t)cfg->queue_lifetime };
            if (fail) {
                j->updates[u].state = "failed";
                log_rcpt(j, qr->address, rt->relay, "bounced", j->update_errors[u]);
                if (dsn_wanted(m->sender, qr->notify, DSN_FAILED)) {
                    j->bounce_upd[j->nbounce] = u;
                    j->bounce_rcpts[j->nbounce++] = dr;
                }
                continue;
            }
            log_rcpt(j, qr->address, rt->relay, "deferred", why);
            if (!strcmp(qr->state, "delayed")) {
                j->updates[u].state = "delayed";
            } else if (warn_time && dsn_wanted(m->sender, qr->notify, DSN_DELAYED)) {
                j->updates[u].state = "delayed";
                j->delay_upd[j->ndelay] = u;
                j->delay_rcpts[j->ndelay++] = dr;
            }
        }
    }
    if (j->nbounce && !notice_route(r, m->sender, &j->bounce)) {
        char s[600];
        log_warn("queue=%s bounce dropped: sender <%s> has no mailbox", m->qid,
                 log_safe(m->sender, strlen(m->sender), s, sizeof s));
        j->nbounce = 0;
    }
    if (j->ndelay && !notice_route(r, m->sender, &j->delay)) j->ndelay = 0;
    j->next_attempt = now + next_delay(cfg, m->attempts + 1);
    j->recording = true;
    workpool_submit(r->p.pool, record_work, record_done, j);
}

/* ---- routes ---------------------------------------------------------------- */

/* A route's results are durable (or it has none worth recording yet):
 * hand its idle connection on and give back its slot. */
static void route_release(struct route *rt)
{
    if (rt->held) {
        rt->held->holder = NULL;
        rt->held = NULL;
    }
    if (rt->counted) {
        slot_release(rt->job->r, rt->domain);
        rt->counted = false;
    }
}

static void job_finish(struct job *j);

static void route_settled(struct route *rt)
{
    struct job *j = rt->job;
    /* The last route's results, and those of the routes before it that
     * had no 2xx, are recorded by job_finish(); its record_done()
     * releases them. */
    if (--j->routes_left == 0) {
        job_finish(j);
        return;
    }
    route_release(rt);
    queue_runner_kick(j->r);
}

/* Recording a finished route's 2xx results while the job's other routes
 * still run (worker). */
struct mark {
    struct route *rt;
    struct queue_rcpt_update *u;
    size_t n;
    int rc;
    char err[256];
};

static void mark_work(void *arg)
{
    struct mark *m = arg;
    struct job *j = m->rt->job;
    m->rc = queue_record_partial(j->r->p.queue_dir, j->qid, m->u, m->n, m->err, sizeof m->err);
}

static void mark_done(void *arg)
{
    struct mark *m = arg;
    struct route *rt = m->rt;
    struct job *j = rt->job;
    queue_runner *r = j->r;
    if (m->rc < 0) log_error("queue=%s recording delivery results failed: %s", j->qid, m->err);
    free(m->u);
    free(m);
    j->marking--;
    if (r->stopping) {
        /* queue_runner_shutdown() stopped the other routes and left the job to us. */
        if (j->marking == 0) {
            job_unlink(r, j);
            job_free(j);
        }
        return;
    }
    route_settled(rt);
}

/* Every recipient of the route has a result.  A remote 250 is made
 * durable before the connection carries another transaction and before
 * the job waits for slower routes, so a crash re-sends only what was in
 * flight (RFC 5321 6.1 allows that duplicate; more would be our fault). */
static void route_done(struct route *rt)
{
    struct job *j = rt->job;
    rt->done = true;
    size_t ok = 0;
    for (size_t i = 0; i < rt->n; i++) ok += rt->rcpts[i].code / 100 == 2;
    if (ok == 0 || j->routes_left == 1) {
        route_settled(rt);
        return;
    }
    struct mark *m = xcalloc(1, sizeof *m);
    m->rt = rt;
    m->u = xcalloc(ok, sizeof *m->u);
    for (size_t i = 0; i < rt->n; i++)
        if (rt->rcpts[i].code / 100 == 2)
            m->u[m->n++] = (struct queue_rcpt_update){ j->msg->rcpts[rt->idx[i]].idx, "delivered", NULL };
    j->marking++;
    workpool_submit(j->r->p.pool, mark_work, mark_done, m);
}

static void route_fail_all(struct route *rt, int code, const char *status, const char *reason)
{
    for (size_t i = 0; i < rt->n; i++) mta_rcpt_set(&rt->rcpts[i], code, status, reason);
}

static void try_target(struct route *rt);
static void route_resolve(struct route *rt);

/* ---- idle connections (reuse) ----------------------------------------------- */

static void conn_closed(void *ud)
{
    struct conn *c = ud;
    if (c->holder) c->holder->held = NULL;
    for (struct conn **pp = &c->r->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    free(c);
}

/* Keep an idle connection for the next message to key; holder (may be
 * NULL) keeps it from being taken until route_release(holder). */
static void conn_park(queue_runner *r, const char *key, mta_session *s, struct route *holder)
{
    if (r->stopping) {
        mta_session_abort(s);
        return;
    }
    struct conn *c = xcalloc(1, sizeof *c);
    c->r = r;
    c->holder = holder;
    if (holder) {
        if (holder->held) holder->held->holder = NULL;
        holder->held = c;
    }
    snprintf(c->key, sizeof c->key, "%s", key);
    c->s = s;
    c->next = r->conns;
    r->conns = c;
    mta_session_park(s, r->p.cfg->outbound_connection_reuse_time, conn_closed, c);
}

/* An idle connection to key, now the caller's, or NULL. */
static mta_session *conn_take(queue_runner *r, const char *key)
{
    for (struct conn **pp = &r->conns; *pp; pp = &(*pp)->next) {
        struct conn *c = *pp;
        if (c->holder || strcmp(c->key, key) != 0 || !mta_session_idle(c->s)) continue;
        *pp = c->next;
        mta_session *s = c->s;
        free(c);
        return s;
    }
    return NULL;
}

static void on_session(enum mta_outcome outcome, mta_session *idle, void *ud)
{
    struct route *rt = ud;
    rt->sess = NULL;
    if (idle) conn_park(rt->job->r, rt->key, idle, outcome == MTA_STALE ? NULL : rt);
    if (outcome == MTA_STALE) {
        /* The kept connection had gone: nothing happened, open a new one. */
        for (size_t i = 0; i < rt->n; i++) rt->rcpts[i].code = 0;
        route_resolve(rt);
        return;
    }
    if (outcome == MTA_RETRY_PLAIN && !rt->plain) {
        rt->plain = true;
        try_target(rt);
        return;
    }
    if (outcome != MTA_DONE && rt->cur + 1 < rt->ntargets) {
        rt->cur++;
        rt->plain = false;
        try_target(rt);
        return;
    }
    route_done(rt);
}

static struct mta_params route_params(struct route *rt)
{
    queue_runner *r = rt->job->r;
    const config *cfg = r->p.cfg;
    struct mta_params mp = {
        .base = r->p.base, .tls = r->tls, .tls_policy = MTA_TLS_OPPORTUNISTIC, .helo_name = cfg->hostname,
        .connect_timeout = cfg->outbound_connect_timeout, .timeout = cfg->outbound_timeout,
        .data_timeout = cfg->outbound_data_timeout,
        .port = (uint16_t)(rt->nh.port ? rt->nh.port : cfg->outbound_port),
        .max_txns = cfg->outbound_connection_reuse_time ? cfg->outbound_max_messages_per_connection : 1,
    };
    if (rt->use_relay) {
        if (!strcmp(cfg->relay_tls, "require-verify")) {
            mp.tls_policy = MTA_TLS_VERIFY;
            mp.tls = r->verify_tls;
        } else if (!strcmp(cfg->relay_tls, "require")) {
            mp.tls_policy = MTA_TLS_REQUIRE;
        }
        if (*cfg->relay_auth_user) {
            mp.auth_user = cfg->relay_auth_user;
            mp.auth_password = r->relay_password;
        }
    }
    return mp;
}

static void try_target(struct route *rt)
{
    for (size_t i = 0; i < rt->n; i++) {
        rt->rcpts[i].code = 0;
        rt->rcpts[i].status[0] = '\0';
    }
    snprintf(rt->relay, sizeof rt->relay, "%s", rt->targets[rt->cur].host);
    struct mta_params mp = route_params(rt);
    rt->sess = mta_session_start(&mp, &rt->targets[rt->cur], rt->plain, &rt->txn, on_session, rt);
}

static void on_route(const struct dns_route *route, void *ud)
{
    struct route *rt = ud;
    rt->dq = NULL;
    char reason[600];
    switch (route->status) {
    case DNS_OK:
        free(rt->targets);
        rt->targets = xcalloc(route->ntargets, sizeof *rt->targets);
        rt->ntargets = 0;
        for (size_t i = 0; i < route->ntargets; i++) rt->targets[rt->ntargets++] = route->targets[i];
        rt->cur = 0;
        rt->plain = false;
        try_target(rt);
        return;
    case DNS_TEMPFAIL:
        snprintf(reason, sizeof reason, "%s", route->error);
        route_fail_all(rt, 451, "4.4.3", reason);
        break;
    case DNS_NULLMX:
        snprintf(reason, sizeof reason, "%s", route->error);
        route_fail_all(rt, rt->nh.kind == MTA_NH_MX ? 556 : 451, rt->nh.kind == MTA_NH_MX ? "5.1.10" : "4.4.3",
                       reason);
        break;
    case DNS_PERMFAIL:
        snprintf(reason, sizeof reason, "Host or domain name not found: %s", route->error);
        /* A next hop we were told to use that does not resolve is our configuration: retry. */
        if (rt->nh.kind == MTA_NH_MX) route_fail_all(rt, 550, "5.1.2", reason);
        else route_fail_all(rt, 451, "4.4.3", reason);
        break;
    }
    route_done(rt);
}

/* Find the addresses of the route's destination and try them. */
static void route_resolve(struct route *rt)
{
    queue_runner *r = rt->job->r;
    if (rt->nh.kind != MTA_NH_MX && rt->nh.literal) {
        struct dns_target t;
        memset(&t, 0, sizeof t);
        snprintf(t.host, sizeof t.host, "%s", rt->nh.host);
        struct sockaddr_in *sin = (struct sockaddr_in *)&t.addr;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t.addr;
        if (inet_pton(AF_INET, rt->nh.host, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            t.addrlen = sizeof *sin;
        } else {
            inet_pton(AF_INET6, rt->nh.host, &sin6->sin6_addr);
            sin6->sin6_family = AF_INET6;
            t.addrlen = sizeof *sin6;
        }
        free(rt->targets);
        rt->targets = xcalloc(1, sizeof *rt->targets);
        rt->targets[0] = t;
        rt->ntargets = 1;
        rt->cur = 0;
        rt->plain = false;
        try_target(rt);
        return;
    }
    if (rt->nh.kind == MTA_NH_MX) rt->dq = dns_resolve_route(r->dns, rt->domain, on_route, rt);
    else if (rt->nh.no_mx) rt->dq = dns_resolve_host(r->dns, rt->nh.host, on_route, rt);     /* [name] */
    else rt->dq = dns_resolve_route(r->dns, rt->nh.host, on_route, rt);
}

/* Start a route: on an idle connection to the same destination if there
 * is one, else through DNS and a new connection. */
static void route_start(struct route *rt)
{
    queue_runner *r = rt->job->r;
    mta_session *s = conn_take(r, rt->key);
    if (s) {
        snprintf(rt->relay, sizeof rt->relay, "%s", mta_session_host(s));
        rt->sess = s;
        mta_session_next(s, &rt->txn, on_session, rt);
        return;
    }
    route_resolve(rt);
}

/* Where mail for domain goes: transport map, then relay_host, then MX. */
static void route_choose(queue_runner *r, const char *domain, struct route *rt)
{
    const config *cfg = r->p.cfg;
    const struct mta_nexthop *nh = mta_transport_lookup(&r->tmap, domain);
    memset(&rt->nh, 0, sizeof rt->nh);
    rt->use_relay = false;
    rt->local = config_is_local_domain(cfg, domain);
    if (nh && nh->kind == MTA_NH_HOST) {
        rt->nh = *nh;
    } else if (r->relay.kind == MTA_NH_HOST) {
        rt->nh = r->relay;
        rt->use_relay = true;
    }
    char hop[DNS_NAME_TEXT_MAX + 12];      /* "[host]:port" */
    if (rt->local) {
        snprintf(rt->key, sizeof rt->key, "local %s", domain);
    } else if (rt->nh.kind == MTA_NH_MX) {
        snprintf(rt->key, sizeof rt->key, "mx %s", domain);
    } else {
        mta_nexthop_format(&rt->nh, (uint16_t)cfg->outbound_port, hop, sizeof hop);
        snprintf(rt->key, sizeof rt->key, "%s %s", rt->use_relay ? "relay" : "host", hop);
    }
}

/* Content facts needed before sending: 8-bit bytes, Received count. */
static void scan_content(struct queue_msg *m, bool *eight_bit, unsigned *received)
{
    struct smtp_data d;
    smtp_data_init(&d, SMTP_DATA_RAW, SMTP_NEWLINE_KEEP, 0);
    sbuf sink = SBUF_INIT;
    char *buf = xmalloc(SCAN_CHUNK);
    uint64_t pos = 0;
    while (pos < m->size) {
        size_t want = m->size - pos < SCAN_CHUNK ? (size_t)(m->size - pos) : SCAN_CHUNK;
        ssize_t k = pread(m->fd, buf, want, (off_t)(m->offset + pos));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        smtp_data_feed(&d, buf, (size_t)k, &sink);
        sbuf_reset(&sink);
        pos += (uint64_t)k;
    }
    smtp_data_finish(&d, &sink);
    free(buf);
    sbuf_free(&sink);
    *eight_bit = d.eight_bit;
    *received = d.received_headers;
}

/* Is any of the comma-separated domains (as queue_due_domains() gives
 * them) at its concurrency limit? */
static bool domains_busy(queue_runner *r, const char *domains)
{
    char dom[DNS_NAME_TEXT_MAX + 3];
    for (const char *p = domains; *p;) {
        size_t n = strcspn(p, ",");
        snprintf(dom, sizeof dom, "%.*s", (int)n, p);
        struct domain_slot *s = slot_find(r, dom, false);
        if (s && s->active >= r->p.cfg->outbound_max_per_domain) return true;
        p += n;
        if (*p) p++;
    }
    return false;
}

/* Hold a slot of each domain while the job loads, so one scan does not
 * start more jobs for a domain than it may run. */
static void reserve_domains(struct job *j, const char *domains)
{
    char dom[DNS_NAME_TEXT_MAX + 3];
    for (const char *p = domains; *p;) {
        size_t n = strcspn(p, ",");
        snprintf(dom, sizeof dom, "%.*s", (int)n, p);
        j->reserved = xrealloc(j->reserved, (j->nreserved + 1) * sizeof *j->reserved);
        j->reserved[j->nreserved++] = xstrdup(dom);
        slot_find(j->r, dom, true)->active++;
        p += n;
        if (*p) p++;
    }
}

/* The message is loaded: group its pending recipients into routes and
 * start them. */
static void start_loaded(struct job *j)
{
    queue_runner *r = j->r;
    struct queue_msg *m = j->msg;
    bool eight_bit = j->load_eight_bit, loop = j->load_loop;
    unsigned received = j->load_received;

    /* Group pending recipients by destination: a domain's MX hosts, or
     * one next hop for every domain the relay or transport map sends there. */
    j->routes = xcalloc(m->nrcpts, sizeof *j->routes);
    for (size_t i = 0; i < m->nrcpts; i++) {
        if (!m->rcpts[i].pending) continue;
        char dom[DNS_NAME_TEXT_MAX + 3];
        snprintf(dom, sizeof dom, "%s", domain_of(m->rcpts[i].address));
        ascii_lower(dom);
        struct route probe;
        route_choose(r, dom, &probe);
        struct route *rt = NULL;
        for (size_t k = 0; k < j->nroutes && !rt; k++)
            if (!strcmp(j->routes[k].key, probe.key)) rt = &j->routes[k];
        if (!rt) {
            rt = &j->routes[j->nroutes++];
            rt->job = j;
            snprintf(rt->domain, sizeof rt->domain, "%s", dom);
            snprintf(rt->key, sizeof rt->key, "%s", probe.key);
            rt->nh = probe.nh;
            rt->use_relay = probe.use_relay;
            rt->local = probe.local;
            rt->idx = xcalloc(m->nrcpts, sizeof *rt->idx);
            rt->rcpts = xcalloc(m->nrcpts, sizeof *rt->rcpts);
        }
        rt->idx[rt->n] = i;
        rt->rcpts[rt->n] = (struct mta_rcpt){ m->rcpts[i].address, m->rcpts[i].notify, m->rcpts[i].orcpt, 0, "", NULL };
        rt->n++;
    }
    j->routes_left = j->nroutes;
    /* The routes take their own slots below: give back the scan's. */
    for (size_t i = 0; i < j->nreserved; i++) {
        slot_release(r, j->reserved[i]);
        free(j->reserved[i]);
    }
    free(j->reserved);
    j->reserved = NULL;
    j->nreserved = 0;
    if (j->nroutes == 0) {
        job_finish(j);
        return;
    }
    /* Start every route only after all exist: a route may finish at once. */
    for (size_t k = 0; k < j->nroutes; k++) {
        struct route *rt = &j->routes[k];
        rt->txn = (struct mta_txn){ m->qid, m->sender, m->envid, m->ret, m->body, m->smtputf8, eight_bit,
                                    m->fd, m->offset, m->size, rt->rcpts, rt->n };
    }
    for (size_t k = 0; k < j->nroutes; k++) {
        struct route *rt = &j->routes[k];
        if (loop) {
            char reason[200];
            snprintf(reason, sizeof reason, "mail loop: %u Received headers (limit %u)", received,
                     r->p.cfg->max_received_headers);
            route_fail_all(rt, 554, "5.4.6", reason);
            route_done(rt);
            continue;
        }
        if (rt->local) {
            /* Local domains never leave the machine. */
            route_fail_all(rt, 550, "5.3.5", "local domain in the outbound queue (configuration changed?)");
            route_done(rt);
            continue;
        }
        slot_find(r, rt->domain, true)->active++;
        rt->counted = true;
        route_start(rt);
    }
}

/* Worker: read the envelope, the states and the content facts. */
static void load_work(void *arg)
{
    struct job *j = arg;
    if (queue_load(j->r->p.queue_dir, j->qid, &j->msg, j->load_err, sizeof j->load_err) < 0) return;
    scan_content(j->msg, &j->load_eight_bit, &j->load_received);
    j->load_loop = j->load_received > j->r->p.cfg->max_received_headers;
}

static void load_done(void *arg)
{
    struct job *j = arg;
    queue_runner *r = j->r;
    j->loading = false;
    if (r->stopping || !j->msg) {
        if (!j->msg) log_error("queue=%s cannot load for delivery: %s", j->qid, j->load_err);
        note_ended(r, j->qid);
        job_unlink(r, j);
        job_free(j);
        if (!r->stopping) queue_runner_kick(r);
        return;
    }
    start_loaded(j);
}

static void start_job(queue_runner *r, const char *qid, const char *domains)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->r = r;
    snprintf(j->qid, sizeof j->qid, "%s", qid);
    j->next = r->jobs;
    r->jobs = j;
    r->njobs++;
    reserve_domains(j, domains);
    j->loading = true;
    workpool_submit(r->p.pool, load_work, load_done, j);
}

/* ---- the scheduler ----------------------------------------------------------- */

/* The due scan runs on the worker: SQLite never blocks the loop. */
struct scan {
    queue_runner *r;
    time_t now;
    char (*qids)[17];
    char **domains;
    size_t n, cap;
    int rc;
    char err[300];
};

static void collect_due(const char *qid, const char *domains, void *ctx)
{
    struct scan *sc = ctx;
    if (sc->n == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 16;
        sc->qids = xrealloc(sc->qids, sc->cap * sizeof *sc->qids);
        sc->domains = xrealloc(sc->domains, sc->cap * sizeof *sc->domains);
    }
    snprintf(sc->qids[sc->n], 17, "%s", qid);
    sc->domains[sc->n++] = xstrdup(domains);
}

static void scan_work(void *arg)
{
    struct scan *sc = arg;
    sc->rc = queue_due_domains(sc->r->p.queue_dir, sc->now, collect_due, sc, sc->err, sizeof sc->err);
}

static void scan_done(void *arg)
{
    struct scan *sc = arg;
    queue_runner *r = sc->r;
    r->scanning = false;
    if (sc->rc < 0) log_error("queue: cannot list due messages: %s", sc->err);
    for (size_t i = 0; i < sc->n && r->njobs < r->p.cfg->outbound_max_sessions && !r->stopping; i++)
        if (!job_running(r, sc->qids[i]) && !ended_during_scan(r, sc->qids[i]) && !domains_busy(r, sc->domains[i]))
            start_job(r, sc->qids[i], sc->domains[i]);
    r->nended = 0;
    for (size_t i = 0; i < sc->n; i++) free(sc->domains[i]);
    free(sc->domains);
    free(sc->qids);
    free(sc);
    if (r->rescan && !r->stopping) {
        r->rescan = false;
        event_active(r->kick, EV_TIMEOUT, 0);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *p)
{
    queue_runner *r = p;
    if (r->stopping) return;
    if (r->scanning || r->njobs >= r->p.cfg->outbound_max_sessions) {
        /* A job ending kicks again; a scan in progress may have missed
         * what caused this one. */
        if (r->scanning) r->rescan = true;
        return;
    }
    struct scan *sc = xcalloc(1, sizeof *sc);
    sc->r = r;
    sc->now = time(NULL);
    r->scanning = true;
    r->nended = 0;
    workpool_submit(r->p.pool, scan_work, scan_done, sc);
}

/* queue_enqueue() made a message durable (any thread): scan now. */
static void on_queued(void *ctx)
{
    queue_runner *r = ctx;
    event_active(r->kick, EV_TIMEOUT, 0);
}

void queue_runner_kick(queue_runner *r)
{
    if (r && !r->stopping) event_active(r->kick, EV_TIMEOUT, 0);
}

struct flush {
    queue_runner *r;
    char *domain;
    void (*done)(int n, void *ctx);
    void *ctx;
    int n;
    char err[300];
};

static void flush_work(void *arg)
{
    struct flush *f = arg;
    f->n = queue_schedule_now(f->r->p.queue_dir, NULL, f->domain, f->err, sizeof f->err);
}

static void flush_done(void *arg)
{
    struct flush *f = arg;
    if (f->n < 0) log_error("queue: flush failed: %s", f->err);
    if (!f->r->stopping) queue_runner_kick(f->r);
    if (f->done) f->done(f->n, f->ctx);
    free(f->domain);
    free(f);
}

void queue_runner_flush_async(queue_runner *r, const char *domain, void (*done)(int n, void *ctx), void *ctx)
{
    struct flush *f = xcalloc(1, sizeof *f);
    f->r = r;
    f->domain = domain ? xstrdup(domain) : NULL;
    f->done = done;
    f->ctx = ctx;
    workpool_submit(r->p.pool, flush_work, flush_done, f);
}

/* A path from the configuration: relative ones are to the config file's directory. */
static char *config_path(const config *cfg, const char *v)
{
    sbuf b = SBUF_INIT;
    if (v[0] == '/' || !cfg->dir) sbuf_puts(&b, v);
    else sbuf_printf(&b, "%s/%s", cfg->dir, v);
    return sbuf_detach(&b);
}

int queue_relay_password_read(const config *cfg, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!*cfg->relay_auth_user) return 0;
    if (!*cfg->relay_auth_password_file) {
        set_err(err, errlen, "relay_auth_user is set but relay_auth_password_file is not");
        return -1;
    }
    char *path = config_path(cfg, cfg->relay_auth_password_file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        set_err(err, errlen, "relay_auth_password_file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        free(path);
        return -1;
    }
    if (st.st_mode & S_IROTH)
        log_warn("queue: relay_auth_password_file %s is readable by everyone; chmod o-r it", path);
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) {
        set_err(err, errlen, "relay_auth_password_file %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0]) {
        set_err(err, errlen, "relay_auth_password_file %s: empty", path);
        free(path);
        return -1;
    }
    *out = xstrdup(buf);
    OPENSSL_cleanse(buf, sizeof buf);
    free(path);
    return 0;
}

void queue_relay_password_free(char *password)
{
    if (!password) return;
    OPENSSL_cleanse(password, strlen(password));
    free(password);
}

static int setup_routing(queue_runner *r, char *err, size_t errlen)
{
    const config *cfg = r->p.cfg;
    char why[300];
    if (*cfg->relay_host) {
        if (mta_nexthop_parse(cfg->relay_host, strlen(cfg->relay_host), &r->relay, why, sizeof why) < 0) {
            set_err(err, errlen, "relay_host '%s': %s", cfg->relay_host, why);
            return -1;
        }
    }
    if (*cfg->relay_auth_user) {
        if (!r->p.relay_password) {
            set_err(err, errlen, "relay_auth_user is set but no relay password was read");
            return -1;
        }
        r->relay_password = xstrdup(r->p.relay_password);
    }
    r->p.relay_password = NULL;     /* the caller's copy: not kept */
    if (*cfg->transport_map) {
        char *path = config_path(cfg, cfg->transport_map);
        int rc = mta_transport_load(path, &r->tmap, err, errlen);
        free(path);
        if (rc < 0) return -1;
        /* "relay" entries without a relay_host mean direct delivery (mta_route.h). */
        log_info("queue: transport_map: %zu entries", r->tmap.n);
    }
    if (r->relay.kind == MTA_NH_HOST && !strcmp(cfg->relay_tls, "require-verify")) {
        r->verify_tls = SSL_CTX_new(TLS_client_method());
        if (!r->verify_tls) {
            set_err(err, errlen, "cannot create the TLS context for relay_host");
            return -1;
        }
        SSL_CTX_set_min_proto_version(r->verify_tls, TLS1_2_VERSION);
        SSL_CTX_set_verify(r->verify_tls, SSL_VERIFY_PEER, NULL);
        int ok;
        if (*cfg->relay_tls_ca_file) {
            char *path = config_path(cfg, cfg->relay_tls_ca_file);
            ok = SSL_CTX_load_verify_locations(r->verify_tls, path, NULL);
            if (!ok) set_err(err, errlen, "relay_tls_ca_file %s: cannot load CA certificates", path);
            free(path);
        } else {
            ok = SSL_CTX_set_default_verify_paths(r->verify_tls);
            if (!ok) set_err(err, errlen, "cannot load the system CA certificates for relay_tls=require-verify");
        }
        if (!ok) return -1;
    }
    return 0;
}

static void runner_release(queue_runner *r)
{
    if (r->dns) dns_resolver_free(r->dns);
    SSL_CTX_free(r->tls);
    SSL_CTX_free(r->verify_tls);
    mta_transport_free(&r->tmap);
    queue_relay_password_free(r->relay_password);
}

queue_runner *queue_runner_new(const struct queue_runner_params *p, char *err, size_t errlen)
{
    queue_runner *r = xcalloc(1, sizeof *r);
    r->p = *p;
    if (setup_routing(r, err, errlen) < 0) {
        runner_release(r);
        free(r);
        return NULL;
    }
    r->dns = dns_resolver_new(p->base, p->cfg->dns_server, err, errlen);
    if (!r->dns) {
        runner_release(r);
        free(r);
        return NULL;
    }
    r->tls = SSL_CTX_new(TLS_client_method());
    if (r->tls) {
        /* Opportunistic TLS (RFC 7435): encrypt when offered, never refuse
         * to deliver over a certificate we cannot check. */
        SSL_CTX_set_verify(r->tls, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_min_proto_version(r->tls, TLS1_2_VERSION);
    } else {
        log_warn("queue: no client TLS context; outbound mail goes without STARTTLS");
    }
    r->tick = event_new(p->base, -1, EV_PERSIST, on_tick, r);
    r->kick = event_new(p->base, -1, 0, on_tick, r);
    struct timeval tv = { TICK_SECONDS, 0 };
    event_add(r->tick, &tv);
    if (!the_runner) {
        the_runner = r;
        queue_set_notify(on_queued, r);
    }
    return r;
}

void queue_runner_shutdown(queue_runner *r)
{
    if (!r || r->stopping) return;
    r->stopping = true;
    if (the_runner == r) queue_set_notify(NULL, NULL);
    event_del(r->tick);
    event_del(r->kick);
    struct job **pp = &r->jobs;
    while (*pp) {
        struct job *j = *pp;
        for (size_t i = 0; i < j->nroutes; i++) {
            struct route *rt = &j->routes[i];
            dns_query_cancel(rt->dq);
            rt->dq = NULL;
            mta_session_abort(rt->sess);
            rt->sess = NULL;
            if (rt->counted) slot_release(r, rt->domain);
            rt->counted = false;
        }
        if (j->recording || j->loading || j->marking) {
            /* On the worker: its done callback frees it. */
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        r->njobs--;
        job_free(j);
    }
    while (r->conns) {
        struct conn *c = r->conns;
        r->conns = c->next;
        if (c->holder) c->holder->held = NULL;
        mta_session_abort(c->s);
        free(c);
    }
}

void queue_runner_free(queue_runner *r)
{
    if (!r) return;
    queue_runner_shutdown(r);
    if (the_runner == r) the_runner = NULL;
    event_free(r->tick);
    event_free(r->kick);
    runner_release(r);
    free(r->ended);
    while (r->slots) {
        struct domain_slot *s = r->slots;
        r->slots = s->next;
        free(s->domain);
        free(s);
    }
    free(r);
}
