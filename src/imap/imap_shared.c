#include "imap/imap_shared.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store.h"

struct owner {
    char *name;
    char **grantees;        /* distinct identifiers with any entry */
    size_t n;
};

/* One lock for reads, refreshes and the first walk: a refresh reads the
 * owner's store under it, after its change committed, so the last reader
 * of an owner's entries always sees every change made before it took the
 * lock (two refreshes of one owner cannot leave the older view behind). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static bool built;
static struct owner *owners;
static size_t nowners;

static void grantees_free(char **g, size_t n)
{
    for (size_t i = 0; i < n; i++) free(g[i]);
    free(g);
}

static void owner_free(struct owner *o)
{
    grantees_free(o->grantees, o->n);
    free(o->name);
}

/* The distinct identifiers of owner's ACL entries, from its store.
 * false when the store cannot be read (or does not exist). */
static bool read_grantees(const char *owner, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    store_user *u = store_user_open("mail", owner, false, NULL, 0);
    if (!u) return false;
    store_acl_entry *e;
    size_t ne;
    bool ok = store_acl_list(u, NULL, &e, &ne, NULL, 0) == 0;
    store_user_close(u);
    if (!ok) return false;
    for (size_t i = 0; i < ne; i++) {
        bool seen = false;
        for (size_t k = 0; k < *n && !seen; k++) seen = strcmp((*out)[k], e[i].ident) == 0;
        if (seen) continue;
        *out = xrealloc(*out, (*n + 1) * sizeof **out);
        (*out)[(*n)++] = xstrdup(e[i].ident);
    }
    store_acl_free(e, ne);
    return true;
}

static struct owner *find(const char *name)
{
    for (size_t i = 0; i < nowners; i++)
        if (strcmp(owners[i].name, name) == 0) return &owners[i];
    return NULL;
}

/* Under mu: owner's entry from its store (none when it grants nothing). */
static void load_owner(const char *name)
{
    char **g;
    size_t n;
    /* Unreadable now: keep what was known (a superset is safe). */
    if (!read_grantees(name, &g, &n)) return;
    struct owner *o = find(name);
    if (n == 0) {
        /* Grants nothing any more: out of the index. */
        if (o) {
            owner_free(o);
            *o = owners[--nowners];
        }
        return;
    }
    if (!o) {
        owners = xrealloc(owners, (nowners + 1) * sizeof *owners);
        o = &owners[nowners++];
        o->name = xstrdup(name);
    } else {
        grantees_free(o->grantees, o->n);
    }
    o->grantees = g;
    o->n = n;
}

static void collect(const char *address, void *ctx)
{
    (void)ctx;
    load_owner(address);
}

static int build_locked(void)
{
    if (built) return 0;
    accounts *a = accounts_thread_handle();
    if (!a || accounts_user_list(a, collect, NULL) < 0) return -1;
    built = true;
    log_info("shared mailboxes: %zu accounts share with others", nowners);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int imap_shared_owners(const char *grantee, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&mu);
    int rc = build_locked();
    for (size_t i = 0; rc == 0 && i < nowners; i++) {
        const struct owner *o = &owners[i];
        if (strcmp(o->name, grantee) == 0) continue;
        for (size_t k = 0; k < o->n; k++) {
            if (strcmp(o->grantees[k], grantee) != 0 && strcmp(o->grantees[k], "anyone") != 0) continue;
            *out = xrealloc(*out, (*n + 1) * sizeof **out);
            (*out)[(*n)++] = xstrdup(o->name);
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    if (*n > 1) qsort(*out, *n, sizeof **out, cmp_str);
    return rc;
}

void imap_shared_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void imap_shared_refresh(const char *owner)
{
    pthread_mutex_lock(&mu);
    /* Not built yet: the first walk will read the change. */
    if (built) load_owner(owner);
    pthread_mutex_unlock(&mu);
}

void imap_shared_reset(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nowners; i++) owner_free(&owners[i]);
    free(owners);
    owners = NULL;
    nowners = 0;
    built = false;
    pthread_mutex_unlock(&mu);
}
