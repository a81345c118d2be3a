/* accounts: the directory of mail users and aliases, in SQLite.
 *
 * One database, normally "accounts.db" in the data directory (pochtad and
 * pochta both chdir() there, see core/privdrop.h):
 *
 *   users(address PRIMARY KEY, hash, created, quota)
 *       address: full "local@domain", lower-cased (ASCII)
 *       hash:    a crypt(3) string; new ones are yescrypt ("$y$")
 *       quota:   storage limit in BYTES over all of the user's mailboxes
 *                (sum of message sizes, as store_quota_usage() counts
 *                them); 0 = unlimited
 *   aliases(source, target, PRIMARY KEY(source, target))
 *       source:  full address, or "@domain" for a catch-all
 *       target:  any address, local or remote, user or another alias
 *
 * Every lookup queries the database (no cache), so changes made by the
 * `pochta` command are seen by a running pochtad at its next lookup.  WAL
 * mode lets readers run while the command writes; a busy timeout of 5 s
 * covers the short write locks; writes use synchronous=FULL.
 *
 * Threads: a handle is used by one thread at a time; open one per thread.
 * Errors: functions taking err write a one-line reason into it (errlen
 * bytes).  Addresses are compared case-insensitively (ASCII): they are
 * lower-cased on the way in. */
#ifndef POCHTA_AUTH_ACCOUNTS_H
#define POCHTA_AUTH_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct accounts accounts;

/* Open the database at `path`.  With create, a missing file is created
 * with the schema; without, a missing or uninitialised file is an error.
 * Returns NULL with a message in err on failure. */
accounts *accounts_open(const char *path, bool create, char *err, size_t errlen);
void accounts_close(accounts *a);
/* The calling thread's own handle on "accounts.db" in the current
 * directory (pochtad's data directory), opened on first use and closed
 * when the thread exits; for worker threads.  NULL (logged) when the
 * database cannot be opened.  Never pass it to accounts_close(). */
accounts *accounts_thread_handle(void);

/* Return 0, or -1 with err ("already exists", "no such user", a bad
 * address, an empty password, a database error...).  The address must be
 * a plain "local@domain"; whether the domain is ours is the caller's check
 * (the command checks against the configuration). */
int accounts_user_add(accounts *a, const char *address, const char *password, char *err, size_t errlen);
int accounts_user_del(accounts *a, const char *address, char *err, size_t errlen);
int accounts_user_passwd(accounts *a, const char *address, const char *password, char *err, size_t errlen);
/* 1 exists, 0 does not, -1 database error. */
int accounts_user_exists(accounts *a, const char *address);
/* Storage quota in bytes (0 = unlimited), see the schema above.
 * quota_get: 1 with *bytes set, 0 no such user, -1 database error.
 * quota_set: 0, or -1 with err ("no such user", too large, database). */
int accounts_user_quota_get(accounts *a, const char *address, uint64_t *bytes);
int accounts_user_quota_set(accounts *a, const char *address, uint64_t bytes, char *err, size_t errlen);
/* Calls cb for every user, sorted by address.  Returns 0 or -1. */
int accounts_user_list(accounts *a, void (*cb)(const char *address, void *ctx), void *ctx);

/* 1 = password correct, 0 = wrong password or no such user, -1 = error.
 * Slow on purpose (a password hash); call it from a worker thread.  An
 * unknown user still costs one yescrypt hash against a dummy, so timing
 * does not tell which addresses exist.  Accepts any crypt(3) format the
 * library knows ($y$, $gy$, $7$, $2b$, $6$, ...), compares in constant time. */
int accounts_verify_password(accounts *a, const char *address, const char *password);

/* source: "local@domain" or "@domain"; target: "local@domain".
 * alias_add fails if the pair exists; alias_del with target NULL removes
 * every target of source, and fails if nothing was removed. */
int accounts_alias_add(accounts *a, const char *source, const char *target, char *err, size_t errlen);
int accounts_alias_del(accounts *a, const char *source, const char *target, char *err, size_t errlen);
/* Every (source, target) pair, sorted.  Returns 0 or -1. */
int accounts_alias_list(accounts *a, void (*cb)(const char *source, const char *target, void *ctx), void *ctx);
/* For EXPN: the direct targets of one source (no recursion), sorted.
 * Returns the number of targets, or -1 on error. */
int accounts_alias_targets(accounts *a, const char *source, void (*cb)(const char *target, void *ctx), void *ctx);

/* One final destination of a recipient.  address is lower-cased, heap. */
struct account_dest {
    char *address;
    bool local;                 /* a local user's mailbox; else a remote address for the queue */
};

/* Resolve an envelope recipient ("local@domain", syntax already checked,
 * domain local) to its final destinations, like Postfix virtual(5):
 *
 *   1. an alias for the exact address
 *   2. a user with the exact address
 *   3. if delimiter is non-empty and the local part contains it
 *      ("user+tag"): an alias, then a user, for "user@domain"
 *   4. the catch-all alias "@domain"
 *
 * Alias targets are resolved with the same rules, recursively, up to 8
 * levels.  A target that is its own source ("alice -> alice, bob", keep a
 * copy) stands for the user itself.  A target that would loop back to an
 * address being expanded, or lies too deep, is dropped with a log line; a
 * local target that resolves to nothing is dropped; a target in a domain
 * that is not local (is_local returns false; is_local NULL means every
 * domain is local) is returned as a remote destination.  Duplicates are
 * removed, order is first appearance.
 *
 * Returns the number of destinations (> 0) with *out a heap array the
 * caller frees with accounts_dests_free(); 0 when nothing remains (unknown
 * recipient: 550 5.1.1); -1 on a database error (451 4.3.0).  On 0 and -1,
 * *out is NULL and *nout 0. */
int accounts_resolve(accounts *a, const char *address, const char *delimiter,
                     bool (*is_local)(const char *domain, void *ctx), void *ctx,
                     struct account_dest **out, size_t *nout);
void accounts_dests_free(struct account_dest *d, size_t n);

/* Syntax check used by the add functions, exported for the command:
 * "local@domain" with a non-empty local part (at most 64 octets, no
 * control characters or spaces) and a plausible domain; allow_catchall
 * also accepts "@domain". */
bool accounts_address_valid(const char *address, bool allow_catchall);

#endif
