#include "auth/failures.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define IP_MAX 64

struct entry {
    char ip[IP_MAX];
    struct entry *hnext;                /* hash chain */
    struct entry *prev, *next;          /* age list: head = oldest activity */
    time_t times[AUTH_FAILURES_TRACKED];/* ring of failure times */
    unsigned nfail;                     /* filled slots, <= AUTH_FAILURES_TRACKED */
    unsigned pos;                       /* next slot to write */
};

struct auth_failures {
    struct entry **buckets;
    size_t nbuckets;                    /* power of two */
    size_t count, max;
    struct entry *oldest, *newest;
    uint64_t k0, k1;                    /* SipHash key */
};

/* ---- SipHash-2-4 (Aumasson, Bernstein) ---------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                            \
    do {                                                                    \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);           \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                              \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                              \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);           \
    } while (0)

static uint64_t siphash(const unsigned char *in, size_t len, uint64_t k0, uint64_t k1)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = 0;
        for (int j = 7; j >= 0; j--) m = m << 8 | in[i + (size_t)j];
        v3 ^= m;
        SIPROUND; SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; j < (len & 7); j++) b |= (uint64_t)in[full + j] << (8 * j);
    v3 ^= b;
    SIPROUND; SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- table ------------------------------------------------------------- */

auth_failures *auth_failures_new(size_t max_entries)
{
    auth_failures *f = xcalloc(1, sizeof *f);
    f->max = max_entries ? max_entries : 1;
    f->nbuckets = 16;
    while (f->nbuckets < f->max && f->nbuckets < ((size_t)1 << 30)) f->nbuckets <<= 1;
    f->buckets = xcalloc(f->nbuckets, sizeof *f->buckets);
    uint64_t key[2];
    random_bytes(key, sizeof key);
    f->k0 = key[0];
    f->k1 = key[1];
    return f;
}

void auth_failures_free(auth_failures *f)
{
    if (!f) return;
    for (struct entry *e = f->oldest, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    free(f->buckets);
    free(f);
}

static size_t bucket_of(const auth_failures *f, const char *ip)
{
    return (size_t)siphash((const unsigned char *)ip, strnlen(ip, IP_MAX - 1), f->k0, f->k1) & (f->nbuckets - 1);
}

static bool same_ip(const struct entry *e, const char *ip)
{
    return strncmp(e->ip, ip, IP_MAX - 1) == 0;
}

static struct entry *find(auth_failures *f, const char *ip, struct entry ***link_out)
{
    struct entry **link = &f->buckets[bucket_of(f, ip)];
    for (; *link; link = &(*link)->hnext) {
        if (same_ip(*link, ip)) {
            if (link_out) *link_out = link;
            return *link;
        }
    }
    return NULL;
}

static void age_unlink(auth_failures *f, struct entry *e)
{
    if (e->prev) e->prev->next = e->next; else f->oldest = e->next;
    if (e->next) e->next->prev = e->prev; else f->newest = e->prev;
    e->prev = e->next = NULL;
}

static void age_append(auth_failures *f, struct entry *e)
{
    e->prev = f->newest;
    e->next = NULL;
    if (f->newest) f->newest->next = e; else f->oldest = e;
    f->newest = e;
}

static void remove_entry(auth_failures *f, struct entry *e)
{
    struct entry **link = NULL;
    if (find(f, e->ip, &link) != e) return;
    *link = e->hnext;
    age_unlink(f, e);
    f->count--;
    free(e);
}

void auth_failures_record(auth_failures *f, const char *ip, time_t now)
{
    struct entry *e = find(f, ip, NULL);
    if (!e) {
        if (f->count >= f->max) remove_entry(f, f->oldest);
        e = xcalloc(1, sizeof *e);
        snprintf(e->ip, sizeof e->ip, "%s", ip);
        size_t b = bucket_of(f, e->ip);
        e->hnext = f->buckets[b];
        f->buckets[b] = e;
        f->count++;
    } else {
        age_unlink(f, e);
    }
    age_append(f, e);
    e->times[e->pos] = now;
    e->pos = (e->pos + 1) % AUTH_FAILURES_TRACKED;
    if (e->nfail < AUTH_FAILURES_TRACKED) e->nfail++;
}

unsigned auth_failures_count(auth_failures *f, const char *ip, time_t now, unsigned window)
{
    struct entry *e = find(f, ip, NULL);
    if (!e) return 0;
    unsigned n = 0;
    for (unsigned i = 0; i < e->nfail; i++) {
        time_t t = e->times[i];
        if (t <= now && now - t < (time_t)window) n++;
    }
    return n;
}

void auth_failures_clear(auth_failures *f, const char *ip)
{
    struct entry *e = find(f, ip, NULL);
    if (e) remove_entry(f, e);
}

size_t auth_failures_size(const auth_failures *f)
{
    return f->count;
}
