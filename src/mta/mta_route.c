#include "mta/mta_route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/sbuf.h"
#include "core/util.h"

/* A host name as RFC 1123 2.1 allows (letters, digits, '-', '.', and '_'
 * which real internal names use), or an address. */
static bool valid_host(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > DNS_NAME_TEXT_MAX || h[0] == '.' || h[n - 1] == '.' || h[0] == '-') return false;
    for (const char *p = h; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
        if (!ok || (c == '.' && p[1] == '.')) return false;
    }
    return true;
}

static bool is_address(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

int mta_nexthop_parse(const char *s, size_t len, struct mta_nexthop *nh, char *why, size_t whylen)
{
    memset(nh, 0, sizeof *nh);
    nh->kind = MTA_NH_HOST;
    const char *end = s + len, *host, *host_end, *rest;
    if (len == 0) {
        set_err(why, whylen, "empty next hop");
        return -1;
    }
    if (*s == '[') {
        host = s + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end) {
            set_err(why, whylen, "'[' without ']'");
            return -1;
        }
        rest = host_end + 1;
        nh->no_mx = true;
        /* "[IPv6:...]" as in an SMTP address literal is accepted too. */
        if (host_end - host > 5 && ascii_ncasecmp(host, "IPv6:", 5) == 0) host += 5;
    } else {
        host = s;
        host_end = memchr(s, ':', len);
        if (!host_end) host_end = end;
        rest = host_end;
    }
    if ((size_t)(host_end - host) > DNS_NAME_TEXT_MAX || host_end == host) {
        set_err(why, whylen, host_end == host ? "empty host name" : "host name too long");
        return -1;
    }
    memcpy(nh->host, host, (size_t)(host_end - host));
    nh->host[host_end - host] = '\0';
    ascii_lower(nh->host);
    nh->literal = is_address(nh->host);
    if (!nh->literal && !valid_host(nh->host)) {
        set_err(why, whylen, "'%s' is not a host name or address", nh->host);
        return -1;
    }
    if (nh->literal && !nh->no_mx) {
        /* An unbracketed address would mean an MX lookup of a number. */
        nh->no_mx = true;
    }
    if (rest < end) {
        if (*rest != ':' || rest + 1 == end) {
            set_err(why, whylen, "expected ':port' after the host");
            return -1;
        }
        unsigned long port = 0;
        for (const char *p = rest + 1; p < end; p++) {
            if (*p < '0' || *p > '9' || port > 65535) {
                set_err(why, whylen, "bad port");
                return -1;
            }
            port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port < 1 || port > 65535) {
            set_err(why, whylen, "port out of range 1..65535");
            return -1;
        }
        nh->port = (uint16_t)port;
    }
    return 0;
}

void mta_nexthop_format(const struct mta_nexthop *nh, uint16_t default_port, char *out, size_t outlen)
{
    unsigned port = nh->port ? nh->port : default_port;
    if (nh->no_mx) snprintf(out, outlen, "[%s]:%u", nh->host, port);
    else snprintf(out, outlen, "%s:%u", nh->host, port);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int mta_transport_parse(const char *text, size_t len, struct mta_transport_map *map, char *err, size_t errlen)
{
    const char *p = text, *end = text + len;
    size_t lineno = 0, cap = map->n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        lineno++;
        while (p < le && is_space(*p)) p++;
        const char *e = le;
        while (e > p && is_space(e[-1])) e--;
        if (p == e || *p == '#') {
            p = next;
            continue;
        }
        const char *k = p;
        while (p < e && !is_space(*p)) p++;
        const char *ke = p;
        while (p < e && is_space(*p)) p++;
        const char *v = p;
        while (p < e && !is_space(*p)) p++;
        const char *ve = p;
        while (p < e && is_space(*p)) p++;
        if (v == ve) {
            set_err(err, errlen, "line %zu: expected 'domain next-hop'", lineno);
            return -1;
        }
        if (p < e) {
            set_err(err, errlen, "line %zu: text after the next hop", lineno);
            return -1;
        }
        struct mta_transport_entry ent = { NULL, false, { 0 } };
        if (*k == '.') {
            ent.subdomains = true;
            k++;
        }
        size_t klen = (size_t)(ke - k);
        char dom[DNS_NAME_TEXT_MAX + 1];
        if (klen == 0 || klen > DNS_NAME_TEXT_MAX) {
            set_err(err, errlen, "line %zu: bad domain", lineno);
            return -1;
        }
        memcpy(dom, k, klen);
        dom[klen] = '\0';
        ascii_lower(dom);
        if (!valid_host(dom)) {
            set_err(err, errlen, "line %zu: '%s' is not a domain name", lineno, dom);
            return -1;
        }
        if ((size_t)(ve - v) == 5 && ascii_ncasecmp(v, "relay", 5) == 0) {
            ent.nh.kind = MTA_NH_RELAY;
        } else {
            char why[200];
            if (mta_nexthop_parse(v, (size_t)(ve - v), &ent.nh, why, sizeof why) < 0) {
                set_err(err, errlen, "line %zu: %s", lineno, why);
                return -1;
            }
        }
        for (size_t i = 0; i < map->n; i++) {
            if (map->v[i].subdomains == ent.subdomains && !strcmp(map->v[i].domain, dom)) {
                set_err(err, errlen, "line %zu: %s%s is listed twice", lineno, ent.subdomains ? "." : "", dom);
                return -1;
            }
        }
        if (map->n == cap) {
            cap = cap ? cap * 2 : 16;
            map->v = xrealloc(map->v, cap * sizeof *map->v);
        }
        ent.domain = xstrdup(dom);
        map->v[map->n++] = ent;
        p = next;
    }
    return 0;
}

static const struct mta_nexthop *find(const struct mta_transport_map *map, const char *domain, size_t len,
                                      bool subdomains)
{
    for (size_t i = 0; i < map->n; i++) {
        const struct mta_transport_entry *e = &map->v[i];
        if (e->subdomains == subdomains && strlen(e->domain) == len && ascii_ncasecmp(e->domain, domain, len) == 0)
            return &e->nh;
    }
    return NULL;
}

const struct mta_nexthop *mta_transport_lookup(const struct mta_transport_map *map, const char *domain)
{
    if (!map || map->n == 0) return NULL;
    const struct mta_nexthop *nh = find(map, domain, strlen(domain), false);
    if (nh) return nh;
    for (const char *dot = strchr(domain, '.'); dot; dot = strchr(dot + 1, '.')) {
        nh = find(map, dot + 1, strlen(dot + 1), true);
        if (nh) return nh;
    }
    return NULL;
}

void mta_transport_free(struct mta_transport_map *map)
{
    for (size_t i = 0; i < map->n; i++) free(map->v[i].domain);
    free(map->v);
    map->v = NULL;
    map->n = 0;
}

int mta_transport_load(const char *path, struct mta_transport_map *map, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    sbuf text = SBUF_INIT;
    char chunk[8192];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            set_err(err, errlen, "%s: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0) break;
        if (text.len + (size_t)n > MTA_TRANSPORT_FILE_MAX) {
            set_err(err, errlen, "%s: larger than %u bytes", path, MTA_TRANSPORT_FILE_MAX);
            rc = -1;
            break;
        }
        sbuf_append(&text, chunk, (size_t)n);
    }
    close(fd);
    if (rc == 0) {
        char why[300];
        rc = mta_transport_parse(sbuf_cstr(&text), text.len, map, why, sizeof why);
        if (rc < 0) set_err(err, errlen, "%s: %s", path, why);
    }
    sbuf_free(&text);
    return rc;
}
