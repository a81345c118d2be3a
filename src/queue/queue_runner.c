#include "queue/queue_runner.h"

#include <errno.h>
#include <event2/event.h>
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
#include "mta/mta_session.h"
#include "queue/queue.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_delivery.h"
#include "smtp/smtp_parse.h"

#define TICK_SECONDS 1
#define DSN_FULL_MAX (1u << 20)     /* originals above 1 MiB come back as headers only */
#define SCAN_CHUNK (64 * 1024)

struct job;

/* One destination domain of a job: its recipients go in one transaction. */
struct route {
    struct job *job;
    char domain[DNS_NAME_TEXT_MAX + 3];
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
    struct queue_msg *msg;
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

struct queue_runner {
    struct queue_runner_params p;
    struct event *tick;
    dns_resolver *dns;
    SSL_CTX *tls;
    struct job *jobs;
    unsigned njobs;
    struct domain_slot *slots;
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
        if (!strcmp(j->msg->qid, qid)) return true;
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
    log_info("queue=%s to=<%s> relay=%s status=%s (%s)", j->msg->qid, a, rl, status, d);
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
        log_error("queue=%s cannot write a delivery report: %s", j->msg->qid, strerror(errno));
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
        log_info("queue=%s report queue=%s sent to the sender (%u stored, %u queued)", j->msg->qid, qid,
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
    j->record_rc = queue_record(j->r->p.queue_dir, j->msg->qid, j->updates, j->nupdates, j->next_attempt,
                                j->record_err, sizeof j->record_err);
}

static void record_done(void *arg)
{
    struct job *j = arg;
    queue_runner *r = j->r;
    if (j->record_rc < 0) log_error("queue=%s recording delivery results failed: %s", j->msg->qid, j->record_err);
    else if (j->record_rc == 1) log_info("queue=%s removed: every recipient done", j->msg->qid);
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

static void route_done(struct route *rt)
{
    struct job *j = rt->job;
    rt->done = true;
    if (rt->counted) {
        slot_release(j->r, rt->domain);
        rt->counted = false;
    }
    if (--j->routes_left == 0) job_finish(j);
}

static void route_fail_all(struct route *rt, int code, const char *status, const char *reason)
{
    for (size_t i = 0; i < rt->n; i++) mta_rcpt_set(&rt->rcpts[i], code, status, reason);
}

static void try_target(struct route *rt);

static void on_session(enum mta_outcome outcome, void *ud)
{
    struct route *rt = ud;
    rt->sess = NULL;
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

static void try_target(struct route *rt)
{
    queue_runner *r = rt->job->r;
    const config *cfg = r->p.cfg;
    for (size_t i = 0; i < rt->n; i++) {
        rt->rcpts[i].code = 0;
        rt->rcpts[i].status[0] = '\0';
    }
    snprintf(rt->relay, sizeof rt->relay, "%s", rt->targets[rt->cur].host);
    struct mta_params mp = {
        .base = r->p.base, .tls = r->tls, .helo_name = cfg->hostname,
        .connect_timeout = cfg->outbound_connect_timeout, .timeout = cfg->outbound_timeout,
        .data_timeout = cfg->outbound_data_timeout, .port = (uint16_t)cfg->outbound_port,
    };
    rt->sess = mta_session_start(&mp, &rt->targets[rt->cur], rt->plain, &rt->txn, on_session, rt);
}

static void on_route(const struct dns_route *route, void *ud)
{
    struct route *rt = ud;
    rt->dq = NULL;
    char reason[600];
    switch (route->status) {
    case DNS_OK:
        rt->targets = xcalloc(route->ntargets, sizeof *rt->targets);
        memcpy(rt->targets, route->targets, route->ntargets * sizeof *rt->targets);
        rt->ntargets = route->ntargets;
        rt->cur = 0;
        try_target(rt);
        return;
    case DNS_TEMPFAIL:
        snprintf(reason, sizeof reason, "%s", route->error);
        route_fail_all(rt, 451, "4.4.3", reason);
        break;
    case DNS_NULLMX:
        snprintf(reason, sizeof reason, "%s", route->error);
        route_fail_all(rt, 556, "5.1.10", reason);
        break;
    case DNS_PERMFAIL:
        snprintf(reason, sizeof reason, "Host or domain name not found: %s", route->error);
        route_fail_all(rt, 550, "5.1.2", reason);
        break;
    }
    route_done(rt);
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

/* Domains this message needs that are at their concurrency limit. */
static bool domains_busy(queue_runner *r, const struct queue_msg *m)
{
    for (size_t i = 0; i < m->nrcpts; i++) {
        if (!m->rcpts[i].pending) continue;
        char dom[DNS_NAME_TEXT_MAX + 3];
        snprintf(dom, sizeof dom, "%s", domain_of(m->rcpts[i].address));
        ascii_lower(dom);
        struct domain_slot *s = slot_find(r, dom, false);
        if (s && s->active >= r->p.cfg->outbound_max_per_domain) return true;
    }
    return false;
}

static void start_job(queue_runner *r, const char *qid)
{
    char err[300];
    struct queue_msg *m;
    if (queue_load(r->p.queue_dir, qid, &m, err, sizeof err) < 0) {
        log_error("queue=%s cannot load for delivery: %s", qid, err);
        return;
    }
    if (domains_busy(r, m)) {
        queue_msg_free(m);
        return;
    }
    struct job *j = xcalloc(1, sizeof *j);
    j->r = r;
    j->msg = m;
    j->next = r->jobs;
    r->jobs = j;
    r->njobs++;

    bool eight_bit;
    unsigned received;
    scan_content(m, &eight_bit, &received);
    bool loop = received > r->p.cfg->max_received_headers;

    /* Group pending recipients by domain (case-insensitive). */
    j->routes = xcalloc(m->nrcpts, sizeof *j->routes);
    for (size_t i = 0; i < m->nrcpts; i++) {
        if (!m->rcpts[i].pending) continue;
        char dom[DNS_NAME_TEXT_MAX + 3];
        snprintf(dom, sizeof dom, "%s", domain_of(m->rcpts[i].address));
        ascii_lower(dom);
        struct route *rt = NULL;
        for (size_t k = 0; k < j->nroutes && !rt; k++)
            if (!strcmp(j->routes[k].domain, dom)) rt = &j->routes[k];
        if (!rt) {
            rt = &j->routes[j->nroutes++];
            rt->job = j;
            snprintf(rt->domain, sizeof rt->domain, "%s", dom);
            rt->idx = xcalloc(m->nrcpts, sizeof *rt->idx);
            rt->rcpts = xcalloc(m->nrcpts, sizeof *rt->rcpts);
        }
        rt->idx[rt->n] = i;
        rt->rcpts[rt->n] = (struct mta_rcpt){ m->rcpts[i].address, m->rcpts[i].notify, m->rcpts[i].orcpt, 0, "", NULL };
        rt->n++;
    }
    j->routes_left = j->nroutes;
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
        if (config_is_local_domain(r->p.cfg, rt->domain)) {
            /* Local domains never leave the machine. */
            route_fail_all(rt, 550, "5.3.5", "local domain in the outbound queue (configuration changed?)");
            route_done(rt);
            continue;
        }
        slot_find(r, rt->domain, true)->active++;
        rt->counted = true;
        rt->dq = dns_resolve_route(r->dns, rt->domain, on_route, rt);
    }
}

/* ---- the scheduler ----------------------------------------------------------- */

struct due_list {
    char (*qids)[17];
    size_t n, cap;
};

static void collect_due(const char *qid, void *ctx)
{
    struct due_list *d = ctx;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->qids = xrealloc(d->qids, d->cap * sizeof *d->qids);
    }
    snprintf(d->qids[d->n++], 17, "%s", qid);
}

static void on_tick(evutil_socket_t fd, short what, void *p)
{
    queue_runner *r = p;
    if (r->stopping || r->njobs >= r->p.cfg->outbound_max_sessions) return;
    struct due_list d = { NULL, 0, 0 };
    char err[300];
    if (queue_due(r->p.queue_dir, time(NULL), collect_due, &d, err, sizeof err) < 0)
        log_error("queue: cannot list due messages: %s", err);
    for (size_t i = 0; i < d.n && r->njobs < r->p.cfg->outbound_max_sessions && !r->stopping; i++)
        if (!job_running(r, d.qids[i])) start_job(r, d.qids[i]);
    free(d.qids);
}

void queue_runner_kick(queue_runner *r)
{
    if (r && !r->stopping) event_active(r->tick, EV_TIMEOUT, 0);
}

int queue_runner_flush(queue_runner *r, const char *domain)
{
    char err[300];
    int n = queue_schedule_now(r->p.queue_dir, NULL, domain, err, sizeof err);
    if (n < 0) log_error("queue: flush failed: %s", err);
    queue_runner_kick(r);
    return n;
}

queue_runner *queue_runner_new(const struct queue_runner_params *p, char *err, size_t errlen)
{
    queue_runner *r = xcalloc(1, sizeof *r);
    r->p = *p;
    r->dns = dns_resolver_new(p->base, p->cfg->dns_server, err, errlen);
    if (!r->dns) {
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
    struct timeval tv = { TICK_SECONDS, 0 };
    event_add(r->tick, &tv);
    if (!the_runner) the_runner = r;
    return r;
}

void queue_runner_shutdown(queue_runner *r)
{
    if (!r || r->stopping) return;
    r->stopping = true;
    event_del(r->tick);
    struct job **pp = &r->jobs;
    while (*pp) {
        struct job *j = *pp;
        if (j->recording) {         /* on the worker: finishes by itself */
            pp = &j->next;
            continue;
        }
        for (size_t i = 0; i < j->nroutes; i++) {
            struct route *rt = &j->routes[i];
            dns_query_cancel(rt->dq);
            rt->dq = NULL;
            mta_session_abort(rt->sess);
            rt->sess = NULL;
            if (rt->counted) slot_release(r, rt->domain);
            rt->counted = false;
        }
        *pp = j->next;
        r->njobs--;
        job_free(j);
    }
}

void queue_runner_free(queue_runner *r)
{
    if (!r) return;
    queue_runner_shutdown(r);
    if (the_runner == r) the_runner = NULL;
    event_free(r->tick);
    dns_resolver_free(r->dns);
    SSL_CTX_free(r->tls);
    while (r->slots) {
        struct domain_slot *s = r->slots;
        r->slots = s->next;
        free(s->domain);
        free(s);
    }
    free(r);
}
