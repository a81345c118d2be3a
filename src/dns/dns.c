#include "dns/dns.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "core/log.h"
#include "core/util.h"

#define RR_A 1
#define RR_MX 15
#define RR_AAAA 28
#define CLASS_IN 1
#define RCODE_NXDOMAIN 3

struct dns_resolver {
    struct ub_ctx *ub;
    struct event *ev;
};

/* One outstanding libunbound query of a route. */
struct sub {
    struct dns_query *q;
    int id;                     /* unbound async id */
    size_t host;                /* index into q->hosts; MX query: SIZE_MAX */
    int type;
    bool pending;
};

struct host {
    struct dns_mx mx;
    size_t naddr4, naddr6;
    struct sockaddr_storage a4[DNS_MAX_ADDRS_PER_HOST], a6[DNS_MAX_ADDRS_PER_HOST];
    bool nxdomain_a, nxdomain_aaaa;
    bool tempfail;
};

struct dns_query {
    dns_resolver *r;
    char domain[DNS_NAME_TEXT_MAX + 1];
    dns_route_cb cb;
    void *ud;
    bool implicit;
    struct host hosts[DNS_MAX_HOSTS];
    size_t nhosts;
    struct sub subs[1 + 2 * DNS_MAX_HOSTS];
    size_t nsubs;
    unsigned pending;
    char error[400];
};

static void on_ub_readable(evutil_socket_t fd, short what, void *p)
{
    dns_resolver *r = p;
    if (ub_process(r->ub) != 0) log_warn("dns: ub_process failed");
}

int dns_forwarder_syntax(const char *server, char *out, size_t outlen)
{
    const char *host = server, *port = NULL;
    size_t hlen;
    if (server[0] == '[') {
        const char *end = strchr(server, ']');
        if (!end) return -1;
        host = server + 1;
        hlen = (size_t)(end - host);
        if (end[1] == ':') port = end + 2;
        else if (end[1]) return -1;
    } else {
        const char *c = strchr(server, ':');
        if (c && strchr(c + 1, ':')) {      /* bare IPv6 without port */
            hlen = strlen(server);
        } else {
            hlen = c ? (size_t)(c - server) : strlen(server);
            if (c) port = c + 1;
        }
    }
    if (hlen == 0) return -1;
    if (port) {
        if (!*port || strlen(port) > 5) return -1;
        for (const char *p = port; *p; p++)
            if (*p < '0' || *p > '9') return -1;
        if (atoi(port) < 1 || atoi(port) > 65535) return -1;
    }
    int n = port ? snprintf(out, outlen, "%.*s@%s", (int)hlen, host, port)
                 : snprintf(out, outlen, "%.*s", (int)hlen, host);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

dns_resolver *dns_resolver_new(struct event_base *base, const char *server, char *err, size_t errlen)
{
    struct ub_ctx *ub = ub_ctx_create();
    if (!ub) {
        set_err(err, errlen, "dns: cannot create the resolver");
        return NULL;
    }
    int rc;
    /* A thread, not a forked process: the daemon has dropped privileges
     * and a forked resolver would outlive a crash of ours. */
    if ((rc = ub_ctx_async(ub, 1)) != 0) goto fail;
    /* Tests (and operators) may point us at a server on loopback. */
    if ((rc = ub_ctx_set_option(ub, "do-not-query-localhost:", "no")) != 0) goto fail;
    if (server && *server) {
        char fwd[300];
        if (dns_forwarder_syntax(server, fwd, sizeof fwd) < 0) {
            set_err(err, errlen, "dns_server '%s': expected HOST:PORT", server);
            ub_ctx_delete(ub);
            return NULL;
        }
        if ((rc = ub_ctx_set_fwd(ub, fwd)) != 0) goto fail;
        /* unbound answers RFC 6761 names such as "test." itself with
         * NXDOMAIN; a chosen server is asked about them like any other. */
        if ((rc = ub_ctx_zone_remove(ub, "test.")) != 0 && rc != UB_NOERROR) goto fail;
    } else if ((rc = ub_ctx_resolvconf(ub, NULL)) != 0) {
        /* No resolv.conf: unbound resolves from the root itself. */
        log_warn("dns: /etc/resolv.conf unreadable (%s): resolving from the root servers", ub_strerror(rc));
    }
    dns_resolver *r = xcalloc(1, sizeof *r);
    r->ub = ub;
    r->ev = event_new(base, ub_fd(ub), EV_READ | EV_PERSIST, on_ub_readable, r);
    if (!r->ev || event_add(r->ev, NULL) < 0) {
        set_err(err, errlen, "dns: cannot watch the resolver");
        if (r->ev) event_free(r->ev);
        free(r);
        ub_ctx_delete(ub);
        return NULL;
    }
    return r;
fail:
    set_err(err, errlen, "dns: %s", ub_strerror(rc));
    ub_ctx_delete(ub);
    return NULL;
}

void dns_resolver_free(dns_resolver *r)
{
    if (!r) return;
    event_free(r->ev);
    /* Queries still pending are owned by their callers' objects, which
     * cancel them first; deleting the context stops the thread. */
    ub_ctx_delete(r->ub);
    free(r);
}

/* ---- a route query ------------------------------------------------------ */

static uint32_t rnd32(void *ctx)
{
    uint32_t v;
    random_bytes(&v, sizeof v);
    return v;
}

static void finish(struct dns_query *q, enum dns_status st, const char *error)
{
    struct dns_target *t = xcalloc(DNS_MAX_HOSTS * 2 * DNS_MAX_ADDRS_PER_HOST, sizeof *t);
    size_t n = 0;
    if (st == DNS_OK) {
        /* IPv4 first, then IPv6, per exchanger: on today's internet IPv4
         * is the path more likely to work; IPv6 remains a fallback. */
        for (size_t h = 0; h < q->nhosts; h++) {
            struct host *hs = &q->hosts[h];
            for (size_t i = 0; i < hs->naddr4 + hs->naddr6; i++) {
                struct dns_target *d = &t[n++];
                snprintf(d->host, sizeof d->host, "%s", hs->mx.name);
                d->pref = hs->mx.pref;
                if (i < hs->naddr4) {
                    d->addr = hs->a4[i];
                    d->addrlen = sizeof(struct sockaddr_in);
                } else {
                    d->addr = hs->a6[i - hs->naddr4];
                    d->addrlen = sizeof(struct sockaddr_in6);
                }
            }
        }
    }
    /* error usually points into q, which goes before the callback runs
     * (so the callback may start a new query for the same caller). */
    char errbuf[sizeof q->error];
    snprintf(errbuf, sizeof errbuf, "%s", error ? error : "");
    struct dns_route route = { st, error ? errbuf : NULL, t, n };
    dns_route_cb cb = q->cb;
    void *ud = q->ud;
    free(q);
    cb(&route, ud);
    free(t);
}

static void addresses_done(struct dns_query *q)
{
    size_t addrs = 0;
    bool temp = false, all_nx = true;
    for (size_t h = 0; h < q->nhosts; h++) {
        addrs += q->hosts[h].naddr4 + q->hosts[h].naddr6;
        temp |= q->hosts[h].tempfail;
        all_nx &= q->hosts[h].nxdomain_a && q->hosts[h].nxdomain_aaaa;
    }
    if (addrs > 0) {
        finish(q, DNS_OK, NULL);
    } else if (temp) {
        snprintf(q->error, sizeof q->error, "temporary DNS failure looking up the mail host(s) of %s", q->domain);
        finish(q, DNS_TEMPFAIL, q->error);
    } else if (q->implicit) {
        /* No MX and no address: nothing will ever take mail here. */
        snprintf(q->error, sizeof q->error, "%s: %s", q->domain,
                 all_nx ? "domain not found" : "no MX, A or AAAA record");
        finish(q, DNS_PERMFAIL, q->error);
    } else {
        /* MX records pointing at names without addresses: often a
         * transient mistake of the remote operator, so retry. */
        snprintf(q->error, sizeof q->error, "no address for any mail host of %s", q->domain);
        finish(q, DNS_TEMPFAIL, q->error);
    }
}

static void on_answer(void *p, int err, struct ub_result *res);

static int start_sub(struct dns_query *q, const char *name, int type, size_t host)
{
    struct sub *s = &q->subs[q->nsubs];
    *s = (struct sub){ q, 0, host, type, true };
    int rc = ub_resolve_async(q->r->ub, name, type, CLASS_IN, s, on_answer, &s->id);
    if (rc != 0) {
        s->pending = false;
        log_warn("dns: cannot query %s: %s", name, ub_strerror(rc));
        return -1;
    }
    q->nsubs++;
    q->pending++;
    return 0;
}

/* A and AAAA for every host chosen; finishes at once if none could start. */
static void start_addresses(struct dns_query *q)
{
    for (size_t h = 0; h < q->nhosts; h++) {
        if (start_sub(q, q->hosts[h].mx.name, RR_A, h) < 0) q->hosts[h].tempfail = true;
        if (start_sub(q, q->hosts[h].mx.name, RR_AAAA, h) < 0) q->hosts[h].tempfail = true;
    }
    if (q->pending == 0) addresses_done(q);
}

static void handle_mx(struct dns_query *q, struct ub_result *res)
{
    struct dns_mx mx[64];
    size_t n = 0;
    bool nodata = !res->havedata;
    if (res->rcode == RCODE_NXDOMAIN) {
        snprintf(q->error, sizeof q->error, "%s: domain not found", q->domain);
        finish(q, DNS_PERMFAIL, q->error);
        return;
    }
    for (int i = 0; !nodata && res->data[i] && n < sizeof mx / sizeof mx[0]; i++)
        if (dns_mx_from_rdata((const uint8_t *)res->data[i], (size_t)res->len[i], &mx[n]) == 0) n++;
    enum dns_mx_kind kind = dns_mx_order(mx, &n, rnd32, NULL);
    if (kind == DNS_MX_NULL) {
        snprintf(q->error, sizeof q->error, "%s accepts no mail (null MX, RFC 7505)", q->domain);
        finish(q, DNS_NULLMX, q->error);
        return;
    }
    if (kind == DNS_MX_IMPLICIT) {
        q->implicit = true;
        q->nhosts = 1;
        q->hosts[0].mx.pref = 0;
        snprintf(q->hosts[0].mx.name, sizeof q->hosts[0].mx.name, "%s", q->domain);
    } else {
        q->nhosts = n < DNS_MAX_HOSTS ? n : DNS_MAX_HOSTS;
        for (size_t i = 0; i < q->nhosts; i++) q->hosts[i].mx = mx[i];
    }
    start_addresses(q);
}

static void handle_addr(struct dns_query *q, struct sub *s, struct ub_result *res)
{
    struct host *h = &q->hosts[s->host];
    bool v6 = s->type == RR_AAAA;
    if (res->rcode == RCODE_NXDOMAIN) {
        if (v6) h->nxdomain_aaaa = true;
        else h->nxdomain_a = true;
        return;
    }
    if (res->rcode != 0) {
        h->tempfail = true;
        return;
    }
    if (!res->havedata) return;
    for (int i = 0; res->data[i]; i++) {
        size_t *count = v6 ? &h->naddr6 : &h->naddr4;
        if (*count >= DNS_MAX_ADDRS_PER_HOST) break;
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (!v6 && res->len[i] == 4) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            sin->sin_family = AF_INET;
            memcpy(&sin->sin_addr, res->data[i], 4);
            h->a4[(*count)++] = ss;
        } else if (v6 && res->len[i] == 16) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, res->data[i], 16);
            h->a6[(*count)++] = ss;
        }
    }
}

static void on_answer(void *p, int err, struct ub_result *res)
{
    struct sub *s = p;
    struct dns_query *q = s->q;
    s->pending = false;
    q->pending--;
    if (err != 0 || !res || (res->rcode != 0 && res->rcode != RCODE_NXDOMAIN)) {
        if (s->type == RR_MX) {
            snprintf(q->error, sizeof q->error, "temporary DNS failure looking up MX of %s: %s", q->domain,
                     err ? ub_strerror(err) : "server failure");
            if (res) ub_resolve_free(res);
            finish(q, DNS_TEMPFAIL, q->error);
            return;
        }
        q->hosts[s->host].tempfail = true;
    } else if (s->type == RR_MX) {
        handle_mx(q, res);      /* may finish (and free) q */
        ub_resolve_free(res);
        return;
    } else {
        handle_addr(q, s, res);
    }
    if (res) ub_resolve_free(res);
    if (q->pending == 0) addresses_done(q);
}

int dns_parse_literal(const char *lit, size_t len, struct sockaddr_storage *addr, socklen_t *addrlen)
{
    char buf[64];
    memset(addr, 0, sizeof *addr);
    if (len >= 5 && ascii_ncasecmp(lit, "IPv6:", 5) == 0) {
        if (len - 5 >= sizeof buf) return -1;
        memcpy(buf, lit + 5, len - 5);
        buf[len - 5] = '\0';
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;
        if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1) return -1;
        sin6->sin6_family = AF_INET6;
        *addrlen = sizeof *sin6;
        return 0;
    }
    if (len >= sizeof buf) return -1;
    memcpy(buf, lit, len);
    buf[len] = '\0';
    struct sockaddr_in *sin = (struct sockaddr_in *)addr;
    if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1) return -1;
    sin->sin_family = AF_INET;
    *addrlen = sizeof *sin;
    return 0;
}

/* A new query for name, or NULL after calling back with PERMFAIL when
 * the name is malformed. */
static struct dns_query *query_new(dns_resolver *r, const char *name, dns_route_cb cb, void *ud)
{
    if (!dns_name_valid(name)) {
        struct dns_route route = { DNS_PERMFAIL, "malformed domain name", NULL, 0 };
        cb(&route, ud);
        return NULL;
    }
    struct dns_query *q = xcalloc(1, sizeof *q);
    q->r = r;
    q->cb = cb;
    q->ud = ud;
    snprintf(q->domain, sizeof q->domain, "%s", name);
    ascii_lower(q->domain);
    return q;
}

dns_query *dns_resolve_host(dns_resolver *r, const char *host, dns_route_cb cb, void *ud)
{
    struct dns_query *q = query_new(r, host, cb, ud);
    if (!q) return NULL;
    q->nhosts = 1;
    snprintf(q->hosts[0].mx.name, sizeof q->hosts[0].mx.name, "%s", q->domain);
    /* q->implicit stays false: a host with no address is a temporary
     * failure (it is our configured next hop, not a remote domain). */
    if (start_sub(q, q->domain, RR_A, 0) < 0) q->hosts[0].tempfail = true;
    if (start_sub(q, q->domain, RR_AAAA, 0) < 0) q->hosts[0].tempfail = true;
    if (q->pending == 0) {
        addresses_done(q);      /* frees q */
        return NULL;
    }
    return q;
}

dns_query *dns_resolve_route(dns_resolver *r, const char *domain, dns_route_cb cb, void *ud)
{
    size_t dl = strlen(domain);
    if (dl >= 2 && domain[0] == '[' && domain[dl - 1] == ']') {
        struct dns_target t;
        memset(&t, 0, sizeof t);
        snprintf(t.host, sizeof t.host, "%s", domain);
        struct dns_route route = { DNS_OK, NULL, &t, 1 };
        if (dns_parse_literal(domain + 1, dl - 2, &t.addr, &t.addrlen) < 0)
            route = (struct dns_route){ DNS_PERMFAIL, "malformed address literal", NULL, 0 };
        cb(&route, ud);
        return NULL;
    }
    struct dns_query *q = query_new(r, domain, cb, ud);
    if (!q) return NULL;
    if (start_sub(q, q->domain, RR_MX, SIZE_MAX) < 0) {
        snprintf(q->error, sizeof q->error, "cannot start a DNS query for %s", q->domain);
        finish(q, DNS_TEMPFAIL, q->error);
        return NULL;
    }
    return q;
}

void dns_query_cancel(dns_query *q)
{
    if (!q) return;
    for (size_t i = 0; i < q->nsubs; i++)
        if (q->subs[i].pending) ub_cancel(q->r->ub, q->subs[i].id);
    free(q);
}
