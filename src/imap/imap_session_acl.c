/* ACL (RFC 4314) and mailboxes shared between users.
 *
 * Every user's mailboxes live in that user's store; an ACL row there says
 * which other account (or "anyone") may do what.  Another user's mailbox
 * appears as "Other Users/<owner>/<name>" (the second NAMESPACE element,
 * RFC 2342), is listed when the user has the l right, and every command on
 * it checks the rights of RFC 4314 section 4:
 *
 *   SELECT EXAMINE STATUS FETCH SEARCH SORT THREAD, COPY/MOVE from   r
 *   STORE \Seen s, \Deleted t, any other flag w; FETCH sets \Seen only with s
 *   APPEND, COPY/MOVE into                                           i
 *   EXPUNGE, CLOSE's expunge, MOVE's source                          e (MOVE: t e)
 *   CREATE a child k (on the parent), DELETE x, GETACL SETACL ...    a
 *   MYRIGHTS                                                          any right
 *
 * Without the l right (or without any right) a mailbox answers as if it did
 * not exist (RFC 4314 6), so ACLs do not reveal names.  The owner always
 * has every right; negative rights ("-id") are refused with NO.
 *
 * A SELECTed shared mailbox is remembered by owner (s->sel_owner); like the
 * session's own store, the owner's is only held while a job runs
 * (s->sel_store, taken in imap_acl_job_begin(), given back in
 * imap_acl_job_end()).  The commands that only work on the selected mailbox
 * (FETCH STORE SEARCH SORT THREAD EXPUNGE) run unchanged with s->store
 * pointing at the owner's store for their jobs; COPY and MOVE, which name a
 * second mailbox that may live in another store, run here. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "core/log.h"
#include "core/util.h"
#include "imap/imap_acl.h"
#include "imap/imap_session_int.h"
#include "imap/imap_shared.h"

/* ---- resolving names ------------------------------------------------------ */

store_user *imap_sel_store(const struct imap_session *s)
{
    return s->sel_store ? s->sel_store : s->store;
}

/* Rights of login on one mailbox of store u (0 when none or no mailbox). */
static unsigned rights_of(store_user *u, const char *mailbox, const char *login)
{
    store_acl_entry *e;
    size_t n;
    unsigned bits = 0;
    if (store_acl_list(u, mailbox, &e, &n, NULL, 0) < 0) return 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].ident, login) != 0 && strcmp(e[i].ident, "anyone") != 0) continue;
        enum imap_rights_mod mod;
        unsigned b;
        if (imap_rights_parse(e[i].rights, strlen(e[i].rights), &mod, &b) == 0) bits |= b;
    }
    store_acl_free(e, n);
    return bits;
}

int imap_acl_resolve(struct imap_session *s, const char *name, struct imap_mbref *ref)
{
    memset(ref, 0, sizeof *ref);
    char *owner;
    const char *rest;
    int k = imap_acl_split_shared(name, &owner, &rest);
    if (k == 0) {
        if (!imap_name_ok(name)) return STORE_ENOENT;
        ref->store = s->store;
        ref->name = name;
        ref->rights = IMAP_RIGHTS_ALL;
        return 0;
    }
    if (k < 0) return STORE_ENOENT;
    if (strcmp(owner, s->login) == 0 || !imap_name_ok(rest)) {
        free(owner);
        return STORE_ENOENT;
    }
    store_user *u = NULL;
    if (s->sel_owner && strcmp(s->sel_owner, owner) == 0) {
        u = s->sel_store;
    } else {
        char err[256];
        /* Never creates a store: a user who has none shares nothing. */
        u = store_user_open("mail", owner, false, err, sizeof err);
        if (!u) {
            free(owner);
            return STORE_ENOENT;
        }
    }
    ref->store = u;
    ref->name = rest;
    ref->owner = owner;
    store_status st;
    if (store_mailbox_status(u, rest, &st, NULL, 0) == 0) ref->rights = rights_of(u, rest, s->login);
    if (ref->rights == 0) {
        imap_acl_release(s, ref);
        return STORE_ENOENT;
    }
    return 0;
}

void imap_acl_release(struct imap_session *s, struct imap_mbref *ref)
{
    if (ref->store && ref->store != s->store && ref->store != s->sel_store) store_user_close(ref->store);
    free(ref->owner);
    memset(ref, 0, sizeof *ref);
}

bool imap_acl_check(struct imap_session *s, const struct imap_mbref *ref, unsigned need)
{
    if ((ref->rights & need) == need) return true;
    /* RFC 4314 6: without "l" the mailbox's existence is not revealed. */
    if (!(ref->rights & IMAP_RIGHT_L) && !(ref->rights & IMAP_RIGHT_R))
        imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
    else
        imap_tagged(s, "NO", "[NOPERM] Permission denied");
    return false;
}

void imap_acl_adopt(struct imap_session *s, struct imap_mbref *ref)
{
    if (!ref->owner) return;
    if (ref->store != s->sel_store) {
        imap_acl_deselect(s);
        s->sel_store = ref->store;
    }
    free(s->sel_owner);
    s->sel_owner = ref->owner;
    s->sel_rights = ref->rights;
    ref->owner = NULL;
    ref->store = NULL;
}

void imap_acl_deselect(struct imap_session *s)
{
    if (s->home_store) {
        s->store = s->home_store;
        s->home_store = NULL;
    }
    s->acl_swap = false;
    if (s->sel_store) store_user_close(s->sel_store);
    s->sel_store = NULL;
    free(s->sel_owner);
    s->sel_owner = NULL;
    s->sel_rights = 0;
}

void imap_acl_command_done(struct imap_session *s)
{
    s->acl_swap = false;
    if (s->sel && s->acl_forced_readonly) s->sel->readonly = false;
    s->acl_forced_readonly = false;
}

void imap_acl_job_begin(struct imap_session *s)
{
    if (!s->sel_owner || s->sel_store) return;
    char err[256];
    s->sel_store = store_user_borrow("mail", s->sel_owner, err, sizeof err);
    if (!s->sel_store) {
        log_error("session=%s cannot open the store of %s: %s", s->id, s->sel_owner, err);
        return;
    }
    /* Rights may have changed since SELECT (SETACL, DELETEACL). */
    if (s->sel) s->sel_rights = rights_of(s->sel_store, s->sel->name, s->login);
    if (s->acl_swap) {
        s->home_store = s->store;
        s->store = s->sel_store;
    }
}

void imap_acl_job_end(struct imap_session *s)
{
    if (s->home_store) {
        s->store = s->home_store;
        s->home_store = NULL;
    }
    if (s->sel_store) store_user_close(s->sel_store);
    s->sel_store = NULL;
}

/* ---- QUOTA (RFC 9208) of the mailbox's owner ------------------------------------ */

bool imap_acl_over_quota(struct imap_session *s, store_user *u, const char *owner, uint64_t add)
{
    /* Every mailbox is in its owner's quota root (RFC 9208 3.1): a message
     * put into another user's mailbox counts against that user's limit,
     * not the limit of whoever puts it there. */
    const char *who = owner ? owner : s->login;
    accounts *a = accounts_thread_handle();
    uint64_t limit = 0, used = 0;
    char err[256] = "";
    /* A quota that cannot be read does not refuse mail (logged). */
    if (!a || accounts_user_quota_get(a, who, &limit) < 0) {
        log_error("session=%s cannot read the quota of %s", s->id, who);
        return false;
    }
    if (limit == 0) return false;
    if (store_quota_usage(u, &used, NULL, err, sizeof err) < 0) {
        log_error("session=%s quota usage of %s: %s", s->id, who, err);
        return false;
    }
    return used + add > limit;
}

static void notify_later(struct imap_session *s, const char *owner)
{
    if (!owner) return;
    free(s->acl_notify);
    s->acl_notify = xstrdup(owner);
}

/* ---- LIST: mailboxes other users share with this one ------------------------ */

/* Could any pattern (after the reference) reach a name under "Other
 * Users"?  Spares the walk over every account for most LISTs. */
static bool patterns_reach_shared(const struct imap_str *pats, size_t npats, const char *ref)
{
    for (size_t i = 0; i < npats; i++) {
        const char *p = pats[i].data ? pats[i].data : "";
        if (ref && *ref && p[0] != '/') p = ref;
        if (p[0] == '*' || p[0] == '%' || ascii_ncasecmp(p, IMAP_OTHER_USERS, 1) == 0) return true;
    }
    return false;
}

void imap_acl_list_extend(struct imap_session *s, const struct imap_str *pats, size_t npats, const char *ref,
                          store_mailbox **mbs, size_t *nmb)
{
    if (!patterns_reach_shared(pats, npats, ref)) return;
    /* Only the owners who granted something to this user or to anyone
     * (imap_shared.h); their stores say what exactly. */
    char **owners;
    size_t nowners;
    if (imap_shared_owners(s->login, &owners, &nowners) < 0) {
        log_warn("session=%s LIST: cannot enumerate accounts for shared mailboxes", s->id);
        return;
    }
    size_t cap = *nmb;
    for (size_t i = 0; i < nowners; i++) {
        const char *owner = owners[i];
        store_user *u = store_user_open("mail", owner, false, NULL, 0);
        if (!u) continue;
        store_acl_entry *e;
        size_t n;
        if (store_acl_list(u, NULL, &e, &n, NULL, 0) == 0) {
            /* Entries come sorted by mailbox: fold each mailbox's rows. */
            for (size_t k = 0; k < n;) {
                size_t j = k;
                unsigned bits = 0;
                for (; j < n && strcmp(e[j].mailbox, e[k].mailbox) == 0; j++) {
                    if (strcmp(e[j].ident, s->login) != 0 && strcmp(e[j].ident, "anyone") != 0) continue;
                    enum imap_rights_mod mod;
                    unsigned b;
                    if (imap_rights_parse(e[j].rights, strlen(e[j].rights), &mod, &b) == 0) bits |= b;
                }
                if (bits & IMAP_RIGHT_L) {
                    if (*nmb == cap) *mbs = xrealloc(*mbs, (cap = cap ? cap * 2 : 8) * sizeof **mbs);
                    store_mailbox *m = &(*mbs)[(*nmb)++];
                    memset(m, 0, sizeof *m);
                    sbuf nm = SBUF_INIT;
                    sbuf_printf(&nm, "%s/%s/%s", IMAP_OTHER_USERS, owner, e[k].mailbox);
                    m->name = sbuf_detach(&nm);
                }
                k = j;
            }
            store_acl_free(e, n);
        }
        store_user_close(u);
    }
    imap_shared_free(owners, nowners);
}

/* ---- GETACL SETACL DELETEACL LISTRIGHTS MYRIGHTS (RFC 4314 3) ---------------- */

static void put_name(struct imap_session *s, const char *name)
{
    if (imap_put_mailbox(&s->out, name, s->utf8) < 0) sbuf_puts(&s->out, "\"\"");
}

/* Resolve the command's mailbox; NO written and false on failure. */
static bool resolve_cmd(struct imap_session *s, struct imap_mbref *ref)
{
    int rc = imap_acl_resolve(s, s->cmd.mailbox, ref);
    if (rc == 0 && !ref->owner) {
        store_status st;
        char err[256];
        rc = store_mailbox_status(s->store, ref->name, &st, err, sizeof err);
    }
    if (rc < 0) {
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return false;
    }
    return true;
}

static char *ident_of(const struct imap_str *id)
{
    return ascii_lower(xstrndup(id->data, id->len));
}

static void getacl_job(struct imap_session *s)
{
    struct imap_mbref ref;
    if (!resolve_cmd(s, &ref)) return;
    if (!imap_acl_check(s, &ref, IMAP_RIGHT_A)) {
        imap_acl_release(s, &ref);
        return;
    }
    store_acl_entry *e;
    size_t n;
    char err[256];
    int rc = store_acl_list(ref.store, ref.name, &e, &n, err, sizeof err);
    if (rc < 0) {
        imap_acl_release(s, &ref);
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    sbuf_puts(&s->out, "* ACL ");
    put_name(s, s->cmd.mailbox);
    /* The owner first: always every right, never stored. */
    sbuf_putc(&s->out, ' ');
    const char *owner = ref.owner ? ref.owner : s->login;
    imap_put_astring(&s->out, owner, strlen(owner), s->utf8);
    sbuf_putc(&s->out, ' ');
    imap_rights_format(&s->out, IMAP_RIGHTS_ALL);
    for (size_t i = 0; i < n; i++) {
        enum imap_rights_mod mod;
        unsigned b;
        if (imap_rights_parse(e[i].rights, strlen(e[i].rights), &mod, &b) < 0) continue;
        sbuf_putc(&s->out, ' ');
        imap_put_astring(&s->out, e[i].ident, strlen(e[i].ident), s->utf8);
        sbuf_putc(&s->out, ' ');
        sbuf rs = SBUF_INIT;
        imap_rights_format(&rs, b);
        imap_put_astring(&s->out, rs.data ? rs.data : "", rs.len, s->utf8);
        sbuf_free(&rs);
    }
    sbuf_puts(&s->out, "\r\n");
    store_acl_free(e, n);
    imap_acl_release(s, &ref);
    imap_tagged(s, "OK", "GETACL completed");
}

/* SETACL and DELETEACL. */
static void setacl_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    bool del = c->name == IMAP_CMD_DELETEACL;
    enum imap_rights_mod mod = IMAP_RIGHTS_REPLACE;
    unsigned bits = 0;
    if (!del && imap_rights_parse(c->str2.data, c->str2.len, &mod, &bits) < 0) {
        /* RFC 4314 3.1: an unknown right is an error, never ignored. */
        imap_tagged(s, "BAD", "Unknown right in rights string (valid: " IMAP_RIGHTS_LETTERS " c d)");
        return;
    }
    if (imap_acl_ident_negative(c->str1.data, c->str1.len)) {
        imap_tagged(s, "NO", "[CANNOT] Negative rights are not supported");
        return;
    }
    struct imap_mbref ref;
    if (!resolve_cmd(s, &ref)) return;
    if (!imap_acl_check(s, &ref, IMAP_RIGHT_A)) {
        imap_acl_release(s, &ref);
        return;
    }
    char *id = ident_of(&c->str1);
    const char *owner = ref.owner ? ref.owner : s->login;
    int rc = 0;
    char err[256];
    if (strcmp(id, owner) == 0) {
        imap_acl_release(s, &ref);
        imap_tagged(s, "NO", "[CANNOT] The owner always has all rights");
        free(id);
        return;
    }
    if (!imap_acl_ident_anyone(id, strlen(id))) {
        accounts *a = accounts_thread_handle();
        int ex = a ? accounts_user_exists(a, id) : -1;
        if (ex <= 0) {
            imap_acl_release(s, &ref);
            if (ex < 0) imap_tagged(s, "NO", "[UNAVAILABLE] Cannot look up accounts, try again later");
            else imap_tagged(s, "NO", "[CANNOT] No such identifier (an account address or \"anyone\")");
            free(id);
            return;
        }
    }
    if (!del && mod != IMAP_RIGHTS_REPLACE) {
        unsigned cur = 0;
        store_acl_entry *e;
        size_t n;
        if (store_acl_list(ref.store, ref.name, &e, &n, NULL, 0) == 0) {
            for (size_t i = 0; i < n; i++) {
                enum imap_rights_mod m2;
                unsigned b;
                if (strcmp(e[i].ident, id) == 0 && imap_rights_parse(e[i].rights, strlen(e[i].rights), &m2, &b) == 0)
                    cur = b;
            }
            store_acl_free(e, n);
        }
        bits = imap_rights_apply(cur, mod, bits);
    }
    sbuf rs = SBUF_INIT;
    if (!del) imap_rights_format_plain(&rs, bits);
    rc = store_acl_set(ref.store, ref.name, id, del ? NULL : sbuf_cstr(&rs), err, sizeof err);
    if (rc == 0) imap_shared_refresh(owner);
    if (rc == 0)
        log_info("session=%s %s user=%s mailbox of %s ident=%s rights=%s", s->id, del ? "DELETEACL" : "SETACL",
                 s->login, owner, id, del ? "-" : sbuf_cstr(&rs));
    else if (rc == STORE_EIO)
        log_error("session=%s SETACL: %s", s->id, err);
    sbuf_free(&rs);
    free(id);
    imap_acl_release(s, &ref);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "%s completed", del ? "DELETEACL" : "SETACL");
}

static void listrights_job(struct imap_session *s)
{
    struct imap_mbref ref;
    if (!resolve_cmd(s, &ref)) return;
    if (!imap_acl_check(s, &ref, IMAP_RIGHT_A)) {
        imap_acl_release(s, &ref);
        return;
    }
    char *id = ident_of(&s->cmd.str1);
    const char *owner = ref.owner ? ref.owner : s->login;
    sbuf_puts(&s->out, "* LISTRIGHTS ");
    put_name(s, s->cmd.mailbox);
    sbuf_putc(&s->out, ' ');
    imap_put_astring(&s->out, s->cmd.str1.data, s->cmd.str1.len, s->utf8);
    if (strcmp(id, owner) == 0) {
        /* RFC 4314 3.7: the owner's rights are all required. */
        sbuf_putc(&s->out, ' ');
        imap_rights_format_plain(&s->out, IMAP_RIGHTS_ALL);
    } else {
        /* Nothing is required; each right can be granted on its own
         * (RIGHTS=texk), plus the virtual c and d of RFC 4314 2.1.1. */
        sbuf_puts(&s->out, " \"\"");
        for (size_t i = 0; IMAP_RIGHTS_LETTERS[i]; i++) sbuf_printf(&s->out, " %c", IMAP_RIGHTS_LETTERS[i]);
        sbuf_puts(&s->out, " c d");
    }
    sbuf_puts(&s->out, "\r\n");
    free(id);
    imap_acl_release(s, &ref);
    imap_tagged(s, "OK", "LISTRIGHTS completed");
}

static void myrights_job(struct imap_session *s)
{
    struct imap_mbref ref;
    if (!resolve_cmd(s, &ref)) return;
    sbuf_puts(&s->out, "* MYRIGHTS ");
    put_name(s, s->cmd.mailbox);
    sbuf_putc(&s->out, ' ');
    imap_rights_format(&s->out, ref.rights);
    sbuf_puts(&s->out, "\r\n");
    imap_acl_release(s, &ref);
    imap_tagged(s, "OK", "MYRIGHTS completed");
}

/* ---- CREATE DELETE RENAME in the shared namespace ------------------------- */

static void create_shared_job(struct imap_session *s)
{
    char *name = xstrdup(s->cmd.mailbox);
    size_t len = strlen(name);
    if (len > 1 && name[len - 1] == '/') name[len - 1] = '\0';
    char *slash = strrchr(name, '/');
    char *owner;
    const char *rest;
    /* RFC 4314 4: k on the parent; a user's top level is the owner's. */
    int k = imap_acl_split_shared(name, &owner, &rest);
    free(owner);
    if (k <= 0 || !slash || strchr(rest, '/') == NULL) {
        imap_tagged(s, "NO", "[NOPERM] Cannot create mailboxes at the top of another user's hierarchy");
        free(name);
        return;
    }
    *slash = '\0';
    struct imap_mbref parent;
    int rc = imap_acl_resolve(s, name, &parent);
    *slash = '/';
    if (rc < 0) {
        imap_tagged(s, "NO", "[NONEXISTENT] No such parent mailbox");
        free(name);
        return;
    }
    if (!imap_acl_check(s, &parent, IMAP_RIGHT_K)) {
        imap_acl_release(s, &parent);
        free(name);
        return;
    }
    char err[256];
    /* parent.name points into name: now the whole owner-relative name. */
    sbuf child = SBUF_INIT;
    sbuf_puts(&child, rest);
    rc = imap_name_ok(child.data) ? store_mailbox_create(parent.store, child.data, 0, err, sizeof err)
                                  : STORE_EINVAL;
    if (rc == 0) {
        /* The creator may use what they made: the parent's rights. */
        sbuf rs = SBUF_INIT;
        imap_rights_format_plain(&rs, parent.rights);
        if (store_acl_set(parent.store, child.data, s->login, rs.data, NULL, 0) == 0 && parent.owner)
            imap_shared_refresh(parent.owner);
        sbuf_free(&rs);
    }
    sbuf_free(&child);
    imap_acl_release(s, &parent);
    free(name);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "CREATE completed");
}

static void delete_shared_job(struct imap_session *s)
{
    struct imap_mbref ref;
    if (!resolve_cmd(s, &ref)) return;
    if (!imap_acl_check(s, &ref, IMAP_RIGHT_X)) {
        imap_acl_release(s, &ref);
        return;
    }
    if (strcmp(ref.name, "INBOX") == 0) {
        imap_acl_release(s, &ref);
        imap_tagged(s, "NO", "[CANNOT] INBOX cannot be deleted");
        return;
    }
    char err[256];
    bool selected = s->sel && ref.store == s->sel_store && strcmp(s->sel->name, ref.name) == 0;
    int rc = store_mailbox_delete(ref.store, ref.name, err, sizeof err);
    notify_later(s, ref.owner);
    imap_acl_release(s, &ref);
    if (rc == 0 && selected) {
        imap_view_free(s->sel);
        s->sel = NULL;
        s->state = IS_AUTH;
        imap_acl_deselect(s);
        imap_send(s, "* OK [CLOSED] Mailbox deleted\r\n");
    }
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "DELETE completed");
}

/* ---- CLOSE UNSELECT of a shared mailbox ------------------------------------ */

static void close_shared_job(struct imap_session *s)
{
    int rc = 0;
    if (s->cmd.name == IMAP_CMD_CLOSE && !s->sel->readonly && (s->sel_rights & IMAP_RIGHT_E)) {
        /* RFC 9051 6.4.1: expunge silently; RFC 4314 4: only with e. */
        store_msglist l;
        char err[256];
        if (store_messages(s->sel_store, s->sel->name, 0, &l, err, sizeof err) == 0) {
            uint32_t *u = xcalloc(l.count ? l.count : 1, sizeof *u);
            size_t n = 0;
            for (size_t i = 0; i < l.count; i++)
                if (l.msgs[i].flags & STORE_DELETED) u[n++] = l.msgs[i].uid;
            if (n) rc = store_expunge(s->sel_store, s->sel->name, u, n, NULL, NULL, err, sizeof err);
            free(u);
            store_msglist_free(&l);
        }
        notify_later(s, s->sel_owner);
    }
    imap_view_free(s->sel);
    s->sel = NULL;
    s->state = IS_AUTH;
    imap_acl_deselect(s);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "%s completed", s->cmd.name == IMAP_CMD_CLOSE ? "CLOSE" : "UNSELECT");
}

/* ---- COPY MOVE across stores -------------------------------------------------- */

/* Flags the destination rights let a copy keep (RFC 4314 4, COPY). */
static unsigned keep_flags(unsigned flags, unsigned rights)
{
    if (!(rights & IMAP_RIGHT_S)) flags &= ~STORE_SEEN;
    if (!(rights & IMAP_RIGHT_T)) flags &= ~STORE_DELETED;
    if (!(rights & IMAP_RIGHT_W)) flags &= ~(STORE_ANSWERED | STORE_FLAGGED | STORE_DRAFT);
    return flags;
}

/* Message uid of mailbox in store u into out (reset first). */
static int load_from(store_user *u, const char *mailbox, uint32_t uid, sbuf *out)
{
    int fd;
    uint64_t size;
    int rc = store_msg_open(u, mailbox, uid, &fd, &size, NULL, 0);
    if (rc < 0) return rc;
    sbuf_reset(out);
    sbuf_reserve(out, (size_t)size);
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, out->data + got, (size_t)size - got, (off_t)got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) return STORE_EIO;
    out->len = got;
    return 0;
}

static void copy_shared_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    struct imap_view *v = s->sel;
    bool move = c->name == IMAP_CMD_MOVE;
    unsigned src_rights = s->sel_owner ? s->sel_rights : IMAP_RIGHTS_ALL;
    if (move && (v->readonly || (src_rights & (IMAP_RIGHT_T | IMAP_RIGHT_E)) != (IMAP_RIGHT_T | IMAP_RIGHT_E))) {
        imap_tagged(s, "NO", "[NOPERM] MOVE needs the t and e rights on this mailbox");
        return;
    }
    struct imap_mbref dst;
    int rc = imap_acl_resolve(s, c->mailbox2, &dst);
    store_status st;
    char err[256];
    if (rc == 0) rc = store_mailbox_status(dst.store, dst.name, &st, err, sizeof err);
    if (rc < 0) {
        imap_acl_release(s, &dst);
        imap_tagged(s, "NO", "%s", rc == STORE_ENOENT ? "[TRYCREATE] No such mailbox" : imap_store_code(rc));
        return;
    }
    if (!imap_acl_check(s, &dst, IMAP_RIGHT_I)) {
        imap_acl_release(s, &dst);
        return;
    }
    imap_sync(s, false);
    size_t n;
    uint32_t *seqs = imap_resolve_set(s, &c->set, c->uid, &n);
    /* RFC 9208 4.5: a COPY over the destination owner's STORAGE limit
     * fails as a whole; a MOVE between two mailboxes of one owner leaves
     * that owner's usage as it was. */
    const char *src_owner = s->sel_owner ? s->sel_owner : s->login;
    const char *dst_owner = dst.owner ? dst.owner : s->login;
    if (!move || strcmp(src_owner, dst_owner) != 0) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++)
            if (!v->msgs[seqs[i] - 1].expunged) bytes += v->msgs[seqs[i] - 1].size;
        if (bytes && imap_acl_over_quota(s, dst.store, dst.owner, bytes)) {
            free(seqs);
            imap_acl_release(s, &dst);
            imap_tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
            return;
        }
    }
    uint32_t *src = xcalloc(n ? n : 1, sizeof *src), *out = xcalloc(n ? n : 1, sizeof *out);
    size_t done = 0;
    sbuf data = SBUF_INIT;
    store_user *from = imap_sel_store(s);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct imap_msg *m = &v->msgs[seqs[i] - 1];
        if (m->expunged) continue;
        int r = load_from(from, v->name, m->uid, &data);
        if (r == STORE_ENOENT) continue;
        if (r < 0) {
            rc = r;
            break;
        }
        const char **kw = xcalloc(v->nkeywords ? v->nkeywords : 1, sizeof *kw);
        size_t nkw = 0;
        if (dst.rights & IMAP_RIGHT_W)
            for (size_t k = 0; k < v->nkeywords; k++)
                if (m->keywords & (1u << k)) kw[nkw++] = v->keywords[k];
        rc = store_append(dst.store, dst.name, data.data, data.len, keep_flags(m->flags, dst.rights), kw, nkw,
                          m->internaldate, &out[done], err, sizeof err);
        free(kw);
        if (rc == 0) src[done++] = m->uid;
    }
    sbuf_free(&data);
    free(seqs);
    if (rc < 0) {
        /* All or nothing (RFC 9051 6.4.7): take back what was copied. */
        if (done) store_expunge(dst.store, dst.name, out, done, NULL, NULL, NULL, 0);
        if (rc == STORE_EIO) log_error("session=%s COPY: %s", s->id, err);
        imap_acl_release(s, &dst);
        free(src);
        free(out);
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    notify_later(s, dst.owner);
    imap_acl_release(s, &dst);
    sbuf code = SBUF_INIT;
    if (done) {
        sbuf_printf(&code, "[COPYUID %u ", st.uidvalidity);
        imap_put_uid_list(&code, src, done);
        sbuf_putc(&code, ' ');
        imap_put_uid_list(&code, out, done);
        sbuf_puts(&code, "] ");
    }
    if (move) {
        if (done) {
            /* RFC 6851 4.3: COPYUID in an untagged OK before the expunges. */
            imap_send(s, "* OK %s\r\n", sbuf_cstr(&code));
            sbuf_reset(&code);
            if (store_expunge(from, v->name, src, done, NULL, NULL, err, sizeof err) < 0)
                log_error("session=%s MOVE: source not expunged: %s", s->id, err);
            notify_later(s, s->sel_owner);
        }
        imap_sync(s, true);
    } else {
        imap_sync(s, false);
    }
    imap_tagged(s, "OK", "%s%s completed", sbuf_cstr(&code), move ? "MOVE" : "COPY");
    sbuf_free(&code);
    free(src);
    free(out);
}

/* ---- dispatch (loop) -------------------------------------------------------------- */

static bool is_shared_name(const char *name)
{
    return name && ascii_ncasecmp(name, IMAP_OTHER_USERS, sizeof IMAP_OTHER_USERS - 1) == 0 &&
           (name[sizeof IMAP_OTHER_USERS - 1] == '\0' || name[sizeof IMAP_OTHER_USERS - 1] == '/');
}

/* Rights a STORE needs (RFC 4314 4): \Seen s, \Deleted t, others w; a
 * FLAGS replacement may change every flag. */
static unsigned store_needs(const struct imap_command *c)
{
    if (c->store_op == IMAP_STORE_SET) return IMAP_RIGHT_S | IMAP_RIGHT_T | IMAP_RIGHT_W;
    unsigned need = 0;
    for (size_t i = 0; i < c->list.n; i++) {
        const struct imap_str *f = &c->list.v[i];
        if (f->len == 5 && ascii_ncasecmp(f->data, "\\Seen", 5) == 0) need |= IMAP_RIGHT_S;
        else if (f->len == 8 && ascii_ncasecmp(f->data, "\\Deleted", 8) == 0) need |= IMAP_RIGHT_T;
        else need |= IMAP_RIGHT_W;
    }
    return need;
}

static void deny(struct imap_session *s, const char *what)
{
    imap_tagged(s, "NO", "[NOPERM] %s", what);
}

bool imap_acl_dispatch(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    switch (c->name) {
    case IMAP_CMD_GETACL: imap_run_job(s, getacl_job); return true;
    case IMAP_CMD_SETACL: case IMAP_CMD_DELETEACL: imap_run_job(s, setacl_job); return true;
    case IMAP_CMD_LISTRIGHTS: imap_run_job(s, listrights_job); return true;
    case IMAP_CMD_MYRIGHTS: imap_run_job(s, myrights_job); return true;
    case IMAP_CMD_NAMESPACE:
        /* RFC 2342: personal, other users', shared. */
        imap_send(s, "* NAMESPACE ((\"\" \"/\")) ((\"%s/\" \"/\")) NIL\r\n", IMAP_OTHER_USERS);
        imap_tagged(s, "OK", "NAMESPACE completed");
        return true;
    case IMAP_CMD_CREATE:
        if (!is_shared_name(c->mailbox)) return false;
        imap_run_job(s, create_shared_job);
        return true;
    case IMAP_CMD_DELETE:
        if (!is_shared_name(c->mailbox)) return false;
        imap_run_job(s, delete_shared_job);
        return true;
    case IMAP_CMD_RENAME:
        if (!is_shared_name(c->mailbox) && !is_shared_name(c->mailbox2)) return false;
        imap_tagged(s, "NO", "[CANNOT] Mailboxes of other users cannot be renamed");
        return true;
    default: break;
    }
    if (s->state != IS_SELECTED) return false;
    switch (c->name) {
    case IMAP_CMD_COPY: case IMAP_CMD_MOVE:
        if (!s->sel_owner && !is_shared_name(c->mailbox2)) return false;
        imap_run_job(s, copy_shared_job);
        return true;
    default: break;
    }
    if (!s->sel_owner) return false;
    switch (c->name) {
    case IMAP_CMD_CLOSE: case IMAP_CMD_UNSELECT:
        imap_run_job(s, close_shared_job);
        return true;
    case IMAP_CMD_STORE:
        if (s->sel->readonly) return false;   /* the usual READ-ONLY answer */
        if ((s->sel_rights & store_needs(c)) != store_needs(c)) {
            deny(s, "No right to change these flags here");
            return true;
        }
        break;
    case IMAP_CMD_EXPUNGE:
        if (!(s->sel_rights & IMAP_RIGHT_E)) {
            deny(s, "No right to expunge here");
            return true;
        }
        break;
    case IMAP_CMD_FETCH:
        /* A FETCH of a body sets \Seen only with the s right. */
        if (!(s->sel_rights & IMAP_RIGHT_S) && !s->sel->readonly) {
            s->sel->readonly = true;
            s->acl_forced_readonly = true;
        }
        break;
    case IMAP_CMD_SEARCH: case IMAP_CMD_SORT: case IMAP_CMD_THREAD:
        break;
    default:
        return false;
    }
    /* The command's jobs run with s->store on the owner's store
     * (imap_acl_job_begin); imap_acl_command_done() ends that. */
    s->acl_swap = true;
    return false;
}

/* Rights a SELECT leaves writable: READ-WRITE when any change is allowed. */
bool imap_acl_readonly(const struct imap_session *s)
{
    return s->sel_owner && !(s->sel_rights & (IMAP_RIGHT_S | IMAP_RIGHT_W | IMAP_RIGHT_T | IMAP_RIGHT_E | IMAP_RIGHT_I));
}
