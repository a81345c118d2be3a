/* Mailbox commands (RFC 9051 6.3): SELECT, EXAMINE, CREATE, DELETE,
 * RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (with LIST-EXTENDED basics, RFC
 * 5258, and special-use attributes, RFC 6154), LSUB, NAMESPACE, STATUS,
 * APPEND (with APPENDUID, RFC 4315); and the selected mailbox's view:
 * how changes by other sessions become untagged EXISTS, EXPUNGE and
 * FETCH responses (imap_sync), and \Recent bookkeeping. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "imap/imap_acl.h"
#include "imap/imap_session_int.h"

/* ---- names ----------------------------------------------------------------- */

bool imap_name_ok(const char *name)
{
    if (!store_mailbox_name_valid(name)) return false;
    /* LIST wildcards in a name could never be listed on their own. */
    if (strpbrk(name, "*%")) return false;
    /* Names never become paths in the store, but "." and ".." levels only
     * confuse clients and people: refuse them. */
    const char *p = name;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return false;
        p += n;
        if (*p == '/') p++;
    }
    return true;
}

/* ---- \Recent (RFC 3501 2.3.2): the first session to see a message ------- */

struct imap_recent {
    struct imap_recent *next;
    char *key;                  /* "owner/mailbox" */
    uint32_t uidvalidity;
    uint32_t floor;             /* uids up to here were seen by some session */
};

/* Jobs of different sessions run on different workers. */
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;

/* Claim every uid above the floor up to max_uid for this session; returns
 * the previous floor (uids above it are \Recent for the caller). */
static uint32_t recent_claim(struct imap_session *s, const char *mailbox, uint32_t uidvalidity,
                             uint32_t max_uid, bool claim)
{
    /* Keyed by the mailbox's owner: a shared mailbox has one \Recent for
     * all its readers, as RFC 3501 defines it per mailbox, not per user. */
    sbuf key = SBUF_INIT;
    sbuf_printf(&key, "%s/%s", s->sel_owner ? s->sel_owner : s->login, mailbox);
    pthread_mutex_lock(&recent_lock);
    struct imap_recent *r;
    for (r = s->srv->recent; r; r = r->next)
        if (strcmp(r->key, key.data) == 0) break;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->key = sbuf_detach(&key);
        r->uidvalidity = uidvalidity;
        r->next = s->srv->recent;
        s->srv->recent = r;
    }
    if (r->uidvalidity != uidvalidity) {
        r->uidvalidity = uidvalidity;
        r->floor = 0;
    }
    uint32_t prev = r->floor;
    if (claim && max_uid > r->floor) r->floor = max_uid;
    pthread_mutex_unlock(&recent_lock);
    sbuf_free(&key);
    return prev;
}

void imap_recent_free(struct imap_server *srv)
{
    struct imap_recent *next;
    for (struct imap_recent *r = srv->recent; r; r = next) {
        next = r->next;
        free(r->key);
        free(r);
    }
    srv->recent = NULL;
}

/* ---- the view ---------------------------------------------------------------- */

void imap_view_free(struct imap_view *v)
{
    if (!v) return;
    free(v->name);
    free(v->msgs);
    free(v->saved);
    store_strings_free(v->keywords, v->nkeywords);
    free(v);
}

bool imap_view_saved_has(const struct imap_view *v, uint32_t uid)
{
    size_t lo = 0, hi = v->nsaved;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->saved[mid] == uid) return true;
        if (v->saved[mid] < uid) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

static size_t view_index(const struct imap_view *v, uint32_t uid, bool *found)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->msgs[mid].uid < uid) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < v->n && v->msgs[lo].uid == uid;
    return lo;
}

uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid)
{
    bool found;
    size_t i = view_index(v, uid, &found);
    return found ? (uint32_t)(i + 1) : 0;
}

int imap_view_keyword(const struct imap_view *v, const char *name, size_t len)
{
    for (size_t i = 0; i < v->nkeywords; i++)
        if (strlen(v->keywords[i]) == len && ascii_ncasecmp(v->keywords[i], name, len) == 0) return (int)i;
    return -1;
}

void imap_put_flag_fetch(struct imap_session *s, uint32_t seq, const struct imap_msg *m, bool uid,
                         bool silent)
{
    if (silent && !s->condstore) return;
    imap_send(s, "* %u FETCH (", seq);
    if (uid || s->condstore) imap_send(s, "UID %u", m->uid);
    if (!silent) {
        imap_send(s, "%sFLAGS ", (uid || s->condstore) ? " " : "");
        imap_put_msg_flags(&s->out, s->sel, m);
    }
    if (s->condstore) imap_send(s, " MODSEQ (%llu)", (unsigned long long)m->modseq);
    imap_send(s, ")\r\n");
}

void imap_put_msg_flags(sbuf *out, const struct imap_view *v, const struct imap_msg *m)
{
    size_t before = out->len;
    imap_put_flag_names(out, m->flags, m->keywords, v->keywords, v->nkeywords);
    if (m->recent) {
        /* insert \Recent before the closing parenthesis */
        out->len--;
        sbuf_puts(out, out->len > before + 1 ? " \\Recent)" : "\\Recent)");
    }
}

static void put_flags_responses(struct imap_session *s)
{
    struct imap_view *v = s->sel;
    sbuf_puts(&s->out, "* FLAGS ");
    imap_put_flag_names(&s->out, STORE_FLAGS_ALL, ~0u, v->keywords, v->nkeywords);
    sbuf_puts(&s->out, "\r\n* OK [PERMANENTFLAGS ");
    if (v->readonly) {
        sbuf_puts(&s->out, "()");
    } else {
        imap_put_flag_names(&s->out, STORE_FLAGS_ALL, ~0u, v->keywords, v->nkeywords);
        if (v->nkeywords < STORE_MAX_KEYWORDS) {
            s->out.len--;
            sbuf_puts(&s->out, " \\*)");
        }
    }
    sbuf_puts(&s->out, "] Flags permitted\r\n");
}

static bool keywords_same(const struct imap_view *v, char **kw, size_t n)
{
    if (n != v->nkeywords) return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(kw[i], v->keywords[i]) != 0) return false;
    return true;
}

/* Take over the keyword list of l (the store's names by slot). */
static bool take_keywords(struct imap_view *v, store_msglist *l)
{
    if (keywords_same(v, l->keywords, l->nkeywords)) return false;
    store_strings_free(v->keywords, v->nkeywords);
    v->keywords = l->keywords;
    v->nkeywords = l->nkeywords;
    l->keywords = NULL;
    l->nkeywords = 0;
    return true;
}

void imap_view_reload_keywords(struct imap_session *s)
{
    char **kw = NULL;
    size_t n = 0;
    if (store_keywords(imap_sel_store(s), s->sel->name, &kw, &n, NULL, 0) < 0) return;
    if (keywords_same(s->sel, kw, n)) {
        store_strings_free(kw, n);
        return;
    }
    store_strings_free(s->sel->keywords, s->sel->nkeywords);
    s->sel->keywords = kw;
    s->sel->nkeywords = n;
    put_flags_responses(s);
}

static void view_push(struct imap_view *v, const store_msginfo *mi)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->msgs = xrealloc(v->msgs, v->cap * sizeof *v->msgs);
    }
    struct imap_msg *m = &v->msgs[v->n++];
    memset(m, 0, sizeof *m);
    m->uid = mi->uid;
    m->flags = mi->flags;
    m->keywords = mi->keywords;
    m->modseq = mi->modseq;
    m->internaldate = mi->internaldate;
    m->size = mi->size;
}

static void mark_expunged(struct imap_view *v, uint32_t uid)
{
    bool found;
    size_t i = view_index(v, uid, &found);
    if (!found || v->msgs[i].expunged) return;
    v->msgs[i].expunged = true;
    v->nexpunged++;
}

/* Report and drop expunged messages, highest sequence number first so
 * each number is right when it is sent. */
static void send_expunges(struct imap_session *s)
{
    struct imap_view *v = s->sel;
    if (v->nexpunged == 0) return;
    if (s->qresync) {
        /* RFC 7162 3.2.10: VANISHED instead of EXPUNGE once enabled. */
        uint32_t *u = xcalloc(v->nexpunged, sizeof *u);
        size_t k = 0;
        for (size_t i = 0; i < v->n && k < v->nexpunged; i++)
            if (v->msgs[i].expunged) u[k++] = v->msgs[i].uid;
        imap_send(s, "* VANISHED ");
        imap_put_uid_list(&s->out, u, k);
        imap_send(s, "\r\n");
        free(u);
    } else {
        for (size_t i = v->n; i-- > 0;)
            if (v->msgs[i].expunged) imap_send(s, "* %zu EXPUNGE\r\n", i + 1);
    }
    size_t w = 0;
    for (size_t i = 0; i < v->n; i++)
        if (!v->msgs[i].expunged) v->msgs[w++] = v->msgs[i];
    v->n = w;
    v->nexpunged = 0;
}

void imap_sync(struct imap_session *s, bool allow_expunge)
{
    struct imap_view *v = s->sel;
    if (!v) return;
    char err[256];
    store_msglist l;
    int rc = store_messages(imap_sel_store(s), v->name, v->hms, &l, err, sizeof err);
    if (rc == STORE_ENOENT || (rc == 0 && l.uidvalidity != v->uidvalidity)) {
        if (rc == 0) store_msglist_free(&l);
        imap_send(s, "* BYE [UNAVAILABLE] The selected mailbox was deleted or renamed\r\n");
        s->close_after_job = true;
        return;
    }
    if (rc < 0) {
        log_error("session=%s cannot look for changes in %s: %s", s->id, v->name, err);
        return;
    }
    /* Expunges after the listing above, so none can fall in between. */
    uint32_t *gone = NULL;
    size_t ngone = 0;
    bool complete = true;
    if (store_vanished(imap_sel_store(s), v->name, v->hms, &gone, &ngone, &complete, err, sizeof err) == 0) {
        for (size_t i = 0; i < ngone; i++) mark_expunged(v, gone[i]);
        free(gone);
        if (!complete) {
            store_msglist all;
            if (store_messages(imap_sel_store(s), v->name, 0, &all, err, sizeof err) == 0) {
                size_t j = 0;
                for (size_t i = 0; i < v->n; i++) {
                    while (j < all.count && all.msgs[j].uid < v->msgs[i].uid) j++;
                    if (j >= all.count || all.msgs[j].uid != v->msgs[i].uid) mark_expunged(v, v->msgs[i].uid);
                }
                store_msglist_free(&all);
            }
        }
    }
    if (take_keywords(v, &l)) put_flags_responses(s);

    size_t old_n = v->n;
    uint32_t last_uid = v->n ? v->msgs[v->n - 1].uid : 0;
    for (size_t i = 0; i < l.count; i++) {
        const store_msginfo *mi = &l.msgs[i];
        if (mi->uid > last_uid) {
            view_push(v, mi);
            continue;
        }
        bool found;
        size_t k = view_index(v, mi->uid, &found);
        if (!found || v->msgs[k].expunged) continue;
        struct imap_msg *m = &v->msgs[k];
        bool same = m->flags == mi->flags && m->keywords == mi->keywords;
        /* With CONDSTORE a new MODSEQ is news even with the same flags. */
        if (same && (!s->condstore || m->modseq == mi->modseq)) {
            m->modseq = mi->modseq;
            continue;
        }
        m->modseq = mi->modseq;
        m->flags = mi->flags;
        m->keywords = mi->keywords;
        imap_put_flag_fetch(s, (uint32_t)(k + 1), m, true, false);
    }
    if (l.highestmodseq > v->hms) v->hms = l.highestmodseq;
    if (l.uidnext > v->uidnext) v->uidnext = l.uidnext;
    store_msglist_free(&l);

    if (v->n > old_n) {
        /* IMAP4rev2 has no \Recent (RFC 9051 Appendix E). */
        uint32_t floor = s->rev2 ? UINT32_MAX
                                 : recent_claim(s, v->name, v->uidvalidity, v->msgs[v->n - 1].uid, !v->readonly);
        size_t recent = 0;
        for (size_t i = old_n; i < v->n; i++)
            if ((v->msgs[i].recent = v->msgs[i].uid > floor)) recent++;
        if (allow_expunge) send_expunges(s);
        imap_send(s, "* %zu EXISTS\r\n", v->n);
        if (recent) {
            size_t all = 0;
            for (size_t i = 0; i < v->n; i++) all += v->msgs[i].recent;
            imap_send(s, "* %zu RECENT\r\n", all);
        }
    } else if (allow_expunge) {
        send_expunges(s);
    }
}

/* ---- QRESYNC (RFC 7162 3.2) ---------------------------------------------------- */

struct uid_ranges {
    sbuf *out;
    bool any;
};

static void range_put(struct uid_ranges *u, uint32_t lo, uint32_t hi)
{
    if (!u->any) {
        sbuf_puts(u->out, "* VANISHED (EARLIER) ");
        u->any = true;
    } else {
        sbuf_putc(u->out, ',');
    }
    if (lo == hi) sbuf_printf(u->out, "%u", lo);
    else sbuf_printf(u->out, "%u:%u", lo, hi);
}

void imap_put_vanished_earlier(struct imap_session *s, const struct imap_range *r, size_t nr, uint64_t since)
{
    struct imap_view *v = s->sel;
    uint32_t *gone = NULL;
    size_t ngone = 0;
    bool complete = true;
    char err[256];
    if (nr == 0) return;
    if (store_vanished(imap_sel_store(s), v->name, since, &gone, &ngone, &complete, err, sizeof err) < 0) {
        log_error("session=%s VANISHED for %s: %s", s->id, v->name, err);
        return;
    }
    struct uid_ranges u = { &s->out, false };
    if (complete) {
        for (size_t i = 0; i < ngone;) {
            bool found;
            if (!imap_ranges_contains(r, nr, gone[i]) || (view_index(v, gone[i], &found), found)) {
                i++;
                continue;
            }
            size_t j = i;
            while (j + 1 < ngone && gone[j + 1] == gone[j] + 1 && imap_ranges_contains(r, nr, gone[j + 1]) &&
                   (view_index(v, gone[j + 1], &found), !found))
                j++;
            range_put(&u, gone[i], gone[j]);
            i = j + 1;
        }
    } else {
        /* The store forgot some expunges (index rebuilt, history
         * trimmed): every uid the client may know that is not here now
         * (RFC 7162 3.2.5.2). */
        size_t k = 0;
        for (size_t i = 0; i < nr; i++) {
            uint64_t cur = r[i].lo;
            while (k < v->n && v->msgs[k].uid < r[i].lo) k++;
            for (; k < v->n && v->msgs[k].uid <= r[i].hi; k++) {
                if (v->msgs[k].uid > cur) range_put(&u, (uint32_t)cur, v->msgs[k].uid - 1);
                cur = (uint64_t)v->msgs[k].uid + 1;
            }
            if (cur <= r[i].hi) range_put(&u, (uint32_t)cur, r[i].hi);
        }
    }
    if (u.any) sbuf_puts(&s->out, "\r\n");
    free(gone);
}

/* SELECT/EXAMINE (QRESYNC (...)) with a matching UIDVALIDITY: what the
 * client missed since its modseq, VANISHED first, then the changed
 * messages' flags; limited to its known uids when it gave them. */
static void qresync_select(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    struct imap_view *v = s->sel;
    uint32_t top = v->uidnext > 1 ? v->uidnext - 1 : 0;
    if (v->n && v->msgs[v->n - 1].uid > top) top = v->msgs[v->n - 1].uid;
    if (top == 0) return;
    struct imap_range *r;
    size_t nr;
    if (c->qr_has_known_uids) {
        r = xcalloc(c->qr_known_uids.n ? c->qr_known_uids.n : 1, sizeof *r);
        nr = imap_seqset_normalize(&c->qr_known_uids, top, r);
    } else {
        r = xcalloc(1, sizeof *r);
        r[0] = (struct imap_range){ 1, top };
        nr = 1;
    }
    imap_put_vanished_earlier(s, r, nr, c->qr_modseq);
    for (size_t i = 0; i < v->n; i++) {
        const struct imap_msg *m = &v->msgs[i];
        if (m->modseq <= c->qr_modseq || !imap_ranges_contains(r, nr, m->uid)) continue;
        imap_put_flag_fetch(s, (uint32_t)(i + 1), m, true, false);
    }
    free(r);
}

/* ---- SELECT / EXAMINE ------------------------------------------------------------ */

static void select_job(struct imap_session *s)
{
    const char *name = s->cmd.mailbox;
    bool examine = s->cmd.name == IMAP_CMD_EXAMINE;
    if (s->cmd.qresync && !s->qresync) {
        /* RFC 7162 3.2.5 */
        imap_tagged(s, "BAD", "QRESYNC parameter needs ENABLE QRESYNC first");
        return;
    }
    if (s->cmd.condstore || s->cmd.qresync) s->condstore = true;
    if (s->sel) {
        /* RFC 9051 6.3.2: a failed SELECT leaves no mailbox selected. */
        imap_view_free(s->sel);
        s->sel = NULL;
        s->state = IS_AUTH;
        imap_acl_deselect(s);
        imap_send(s, "* OK [CLOSED] Previous mailbox closed\r\n");
    }
    struct imap_mbref ref;     /* own, or another user's (imap_session_acl.c) */
    if (imap_acl_resolve(s, name, &ref) < 0) {
        imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
        return;
    }
    if (!imap_acl_check(s, &ref, IMAP_RIGHT_R)) {
        imap_acl_release(s, &ref);
        return;
    }
    name = ref.name;
    char err[256];
    store_msglist l;
    int rc = store_messages(ref.store, name, 0, &l, err, sizeof err);
    if (rc < 0) {
        if (rc != STORE_ENOENT) log_error("session=%s SELECT %s: %s", s->id, name, err);
        imap_acl_release(s, &ref);
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    imap_acl_adopt(s, &ref);
    imap_acl_release(s, &ref);
    if (imap_acl_readonly(s)) examine = true;
    struct imap_view *v = xcalloc(1, sizeof *v);
    v->name = xstrdup(name);
    v->readonly = examine;
    v->uidvalidity = l.uidvalidity;
    v->uidnext = l.uidnext;
    v->hms = l.highestmodseq;
    for (size_t i = 0; i < l.count; i++) view_push(v, &l.msgs[i]);
    take_keywords(v, &l);
    store_msglist_free(&l);
    s->sel = v;
    s->state = IS_SELECTED;

    size_t recent = 0;
    if (v->n) {
        uint32_t floor = s->rev2 ? UINT32_MAX
                                 : recent_claim(s, name, v->uidvalidity, v->msgs[v->n - 1].uid, !examine);
        for (size_t i = 0; i < v->n; i++)
            if ((v->msgs[i].recent = v->msgs[i].uid > floor)) recent++;
    }
    put_flags_responses(s);
    imap_send(s, "* %zu EXISTS\r\n", v->n);
    /* RFC 9051 6.3.2: neither RECENT nor [UNSEEN] in IMAP4rev2. */
    if (!s->rev2) imap_send(s, "* %zu RECENT\r\n", recent);
    for (size_t i = 0; i < v->n && !s->rev2; i++) {
        if (!(v->msgs[i].flags & STORE_SEEN)) {
            imap_send(s, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
            break;
        }
    }
    imap_send(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] Predicted next UID\r\n",
              v->uidvalidity, v->uidnext);
    /* RFC 7162 3.1.2.1: every SELECT/EXAMINE of a mailbox with
     * persistent mod-sequences. */
    imap_send(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)v->hms);
    if (s->cmd.qresync && s->cmd.qr_uidvalidity == v->uidvalidity) qresync_select(s);
    imap_tagged(s, "OK", "[%s] %s completed", examine ? "READ-ONLY" : "READ-WRITE",
                examine ? "EXAMINE" : "SELECT");
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE ------------------------------------------ */

static void create_job(struct imap_session *s)
{
    char *name = xstrdup(s->cmd.mailbox);
    size_t n = strlen(name);
    /* RFC 9051 6.3.4: a trailing separator only says children will follow. */
    if (n > 1 && name[n - 1] == '/') name[n - 1] = '\0';
    if (!imap_name_ok(name)) {
        imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name");
        free(name);
        return;
    }
    if (ascii_casecmp(name, "INBOX") == 0) {
        imap_tagged(s, "NO", "[ALREADYEXISTS] INBOX always exists");
        free(name);
        return;
    }
    /* RFC 6154 3: CREATE ... (USE (\Sent ...)) */
    static const struct { const char *name; unsigned bit; } uses[] = {
        { "\\Sent", STORE_MB_SENT }, { "\\Drafts", STORE_MB_DRAFTS }, { "\\Trash", STORE_MB_TRASH },
        { "\\Junk", STORE_MB_JUNK }, { "\\Archive", STORE_MB_ARCHIVE },
    };
    unsigned attrs = 0;
    for (size_t i = 0; i < s->cmd.list.n; i++) {
        const struct imap_str *u = &s->cmd.list.v[i];
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof uses / sizeof uses[0]; k++)
            if (strlen(uses[k].name) == u->len && ascii_ncasecmp(uses[k].name, u->data, u->len) == 0)
                bit = uses[k].bit;
        if (!bit) {
            imap_tagged(s, "NO", "[USEATTR] Unsupported special-use attribute");
            free(name);
            return;
        }
        attrs |= bit;
    }
    char err[256];
    /* Superior names the new one needs (RFC 9051 6.3.4 SHOULD). */
    for (char *p = strchr(name, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        int rc = store_mailbox_create(s->store, name, 0, err, sizeof err);
        *p = '/';
        if (rc < 0 && rc != STORE_EEXIST) {
            imap_tagged(s, "NO", "%s", imap_store_code(rc));
            free(name);
            return;
        }
    }
    int rc = store_mailbox_create(s->store, name, attrs, err, sizeof err);
    if (rc < 0) {
        if (rc == STORE_EIO) log_error("session=%s CREATE: %s", s->id, err);
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
    } else {
        imap_tagged(s, "OK", "CREATE completed");
    }
    free(name);
}

static void delete_job(struct imap_session *s)
{
    const char *name = s->cmd.mailbox;
    char err[256];
    int rc;
    if (strcmp(name, "INBOX") == 0) {
        imap_tagged(s, "NO", "[CANNOT] INBOX cannot be deleted");
        return;
    }
    if (!imap_name_ok(name)) rc = STORE_ENOENT;
    else rc = store_mailbox_delete(s->store, name, err, sizeof err);
    if (rc == 0 && s->sel && !s->sel_owner && strcmp(s->sel->name, name) == 0) {
        /* Deleting the selected mailbox: it is gone for us too. */
        imap_view_free(s->sel);
        s->sel = NULL;
        s->state = IS_AUTH;
        imap_send(s, "* OK [CLOSED] Mailbox deleted\r\n");
    }
    imap_sync(s, true);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "DELETE completed");
}

static void rename_job(struct imap_session *s)
{
    const char *from = s->cmd.mailbox, *to = s->cmd.mailbox2;
    char err[256];
    int rc;
    if (!imap_name_ok(from)) rc = STORE_ENOENT;
    else if (!imap_name_ok(to) || strcmp(to, "INBOX") == 0) rc = STORE_EINVAL;
    else {
        /* Superior names of the new name, as for CREATE. */
        char *sup = xstrdup(to);
        for (char *p = strchr(sup, '/'); p; p = strchr(p + 1, '/')) {
            *p = '\0';
            if (strcmp(sup, from) != 0) store_mailbox_create(s->store, sup, 0, NULL, 0);
            *p = '/';
        }
        free(sup);
        rc = store_mailbox_rename(s->store, from, to, err, sizeof err);
    }
    if (rc == 0 && s->sel && !s->sel_owner && strcmp(from, "INBOX") != 0) {
        /* The selected mailbox (or its parent) was renamed under us. */
        size_t fl = strlen(from);
        if (strncmp(s->sel->name, from, fl) == 0 && (s->sel->name[fl] == 0 || s->sel->name[fl] == '/')) {
            sbuf nn = SBUF_INIT;
            sbuf_printf(&nn, "%s%s", to, s->sel->name + fl);
            free(s->sel->name);
            s->sel->name = sbuf_detach(&nn);
        }
    }
    imap_sync(s, true);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "RENAME completed");
}

static void subscribe_job(struct imap_session *s)
{
    bool on = s->cmd.name == IMAP_CMD_SUBSCRIBE;
    const char *name = s->cmd.mailbox;
    char err[256];
    int rc = imap_name_ok(name) ? store_subscribe(s->store, name, on, err, sizeof err) : STORE_EINVAL;
    imap_sync(s, true);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "%s completed", on ? "SUBSCRIBE" : "UNSUBSCRIBE");
}

/* ---- LIST / LSUB ---------------------------------------------------------------------- */

/* RFC 9051 6.3.9: '*' matches anything, '%' anything but the separator. */
static bool match(const char *pat, const char *name)
{
    for (;;) {
        if (*pat == '\0') return *name == '\0';
        if (*pat == '*' || *pat == '%') {
            bool any = *pat == '*';
            pat++;
            for (const char *n = name;; n++) {
                if (match(pat, n)) return true;
                if (*n == '\0' || (!any && *n == '/')) return false;
            }
        }
        if (*pat != *name) return false;
        pat++;
        name++;
    }
}

/* The full pattern: reference + pattern, with the INBOX part of either
 * folded to upper case (INBOX is case-insensitive). */
static char *full_pattern(const char *ref, const char *pat)
{
    sbuf b = SBUF_INIT;
    if (pat[0] == '/' ) sbuf_puts(&b, pat);
    else sbuf_printf(&b, "%s%s", ref, pat);
    char *p = sbuf_detach(&b);
    if (ascii_ncasecmp(p, "INBOX", 5) == 0 && (p[5] == '\0' || p[5] == '/')) memcpy(p, "INBOX", 5);
    return p;
}

struct list_entry {
    char *name;
    unsigned attrs;             /* STORE_MB_* */
    bool exists, subscribed, children, subscribed_child;
};

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct list_entry *)a)->name, ((const struct list_entry *)b)->name);
}

static void put_status_items(struct imap_session *s, const char *name, unsigned atts);

static void list_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    bool lsub = c->name == IMAP_CMD_LSUB;
    const char *word = lsub ? "LSUB" : "LIST";
    if (!lsub && c->list.n == 1 && c->list.v[0].len == 0) {
        /* RFC 9051 6.3.9: the hierarchy delimiter and root. */
        imap_send(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
        imap_tagged(s, "OK", "LIST completed");
        return;
    }
    char err[256];
    store_mailbox *mbs = NULL;
    size_t nmb = 0;
    char **subs = NULL;
    size_t nsubs = 0;
    int rc = store_mailbox_list(s->store, &mbs, &nmb, err, sizeof err);
    if (rc == 0) rc = store_subscriptions(s->store, &subs, &nsubs, err, sizeof err);
    if (rc == 0 && !lsub) imap_acl_list_extend(s, c->list.v, c->list.n, c->mailbox, &mbs, &nmb);
    if (rc < 0) {
        log_error("session=%s %s: %s", s->id, word, err);
        store_mailbox_list_free(mbs, nmb);
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    /* Every existing name, every subscribed name, and every level above
     * them: collected with repeats, sorted once, then merged. */
    size_t cap = 16, n = 0;
    struct list_entry *v = xcalloc(cap, sizeof *v);
    for (size_t pass = 0; pass < 2; pass++) {
        size_t count = pass == 0 ? nmb : nsubs;
        for (size_t i = 0; i < count; i++) {
            const char *nm = pass == 0 ? mbs[i].name : subs[i];
            size_t len = strlen(nm);
            for (size_t cut = len; cut > 0; cut--) {
                if (cut != len && nm[cut] != '/') continue;
                if (n == cap) v = xrealloc(v, (cap *= 2) * sizeof *v);
                struct list_entry *e = &v[n++];
                memset(e, 0, sizeof *e);
                e->name = xstrndup(nm, cut);
                bool leaf = cut == len;
                if (leaf && pass == 0) {
                    e->exists = true;
                    e->attrs = mbs[i].attrs;
                }
                if (leaf && pass == 1) e->subscribed = true;
                if (!leaf && pass == 0) e->children = true;
                if (!leaf && pass == 1) e->subscribed_child = true;
            }
        }
    }
    qsort(v, n, sizeof *v, entry_cmp);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && strcmp(v[w - 1].name, v[i].name) == 0) {
            struct list_entry *d = &v[w - 1];
            d->exists |= v[i].exists;
            d->attrs |= v[i].attrs;
            d->subscribed |= v[i].subscribed;
            d->children |= v[i].children;
            d->subscribed_child |= v[i].subscribed_child;
            free(v[i].name);
            continue;
        }
        v[w++] = v[i];
    }
    n = w;
    store_mailbox_list_free(mbs, nmb);
    store_strings_free(subs, nsubs);

    char **pats = xcalloc(c->list.n ? c->list.n : 1, sizeof *pats);
    for (size_t i = 0; i < c->list.n; i++) pats[i] = full_pattern(c->mailbox ? c->mailbox : "", c->list.v[i].data);
    bool sel_sub = lsub || (c->list_select & IMAP_LISTSEL_SUBSCRIBED);
    bool sel_special = c->list_select & IMAP_LISTSEL_SPECIAL_USE;
    bool recursive = c->list_select & IMAP_LISTSEL_RECURSIVEMATCH;
    bool ret_sub = (c->list_return & IMAP_LISTRET_SUBSCRIBED) || (c->list_select & IMAP_LISTSEL_SUBSCRIBED);

    for (size_t i = 0; i < n; i++) {
        struct list_entry *e = &v[i];
        bool matched = false;
        for (size_t k = 0; k < c->list.n && !matched; k++) matched = match(pats[k], e->name);
        if (!matched) continue;
        bool childinfo = false, lsub_parent = false;
        /* A '%' listing also shows a level that stands for its matching
         * children (RFC 3501 6.3.8, 6.3.9). */
        bool pct = false;
        for (size_t k = 0; k < c->list.n; k++)
            if (match(pats[k], e->name) && strchr(pats[k], '%')) pct = true;
        if (sel_sub && !e->subscribed) {
            if (lsub && e->subscribed_child && pct) lsub_parent = true;
            else if (!lsub && recursive && e->subscribed_child) childinfo = true;
            else continue;
        }
        if (!sel_sub && !e->exists && (!pct || !e->children)) continue;
        if (sel_special && !e->attrs) continue;
        sbuf_printf(&s->out, "* %s (", word);
        size_t mark = s->out.len;
#define ATTR(x) do { if (s->out.len > mark) sbuf_putc(&s->out, ' '); sbuf_puts(&s->out, x); } while (0)
        if (!e->exists && !lsub_parent) {
            if (c->list_extended && !lsub) ATTR("\\NonExistent");
            else ATTR("\\Noselect");
        }
        if (lsub_parent) ATTR("\\Noselect");
        if (!lsub) ATTR(e->children ? "\\HasChildren" : "\\HasNoChildren");
        if (ret_sub && e->subscribed && !lsub) ATTR("\\Subscribed");
        if (e->attrs & STORE_MB_SENT) ATTR("\\Sent");
        if (e->attrs & STORE_MB_DRAFTS) ATTR("\\Drafts");
        if (e->attrs & STORE_MB_TRASH) ATTR("\\Trash");
        if (e->attrs & STORE_MB_JUNK) ATTR("\\Junk");
        if (e->attrs & STORE_MB_ARCHIVE) ATTR("\\Archive");
#undef ATTR
        sbuf_puts(&s->out, ") \"/\" ");
        if (imap_put_mailbox(&s->out, e->name, s->utf8) < 0) sbuf_puts(&s->out, "\"\"");
        if (childinfo) sbuf_puts(&s->out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        sbuf_puts(&s->out, "\r\n");
        if (!lsub && (c->list_return & IMAP_LISTRET_STATUS) && e->exists)
            put_status_items(s, e->name, c->status_atts);
    }
    for (size_t i = 0; i < c->list.n; i++) free(pats[i]);
    free(pats);
    for (size_t i = 0; i < n; i++) free(v[i].name);
    free(v);
    imap_sync(s, true);
    imap_tagged(s, "OK", "%s completed", word);
}

/* ---- STATUS ------------------------------------------------------------------------------- */

/* "* STATUS shown (...)" for mailbox name of store u, or -1 (nothing
 * written). */
static int status_line(struct imap_session *s, store_user *u, const char *name, const char *shown,
                       unsigned atts, int *rc_out)
{
    char err[256];
    store_status st;
    int rc = store_mailbox_status(u, name, &st, err, sizeof err);
    *rc_out = rc;
    if (rc < 0) return -1;
    size_t recent = 0;
    if (atts & IMAP_STATUS_RECENT) {
        store_msglist l;
        if (store_messages(u, name, 0, &l, err, sizeof err) == 0) {
            uint32_t floor = recent_claim(s, name, l.uidvalidity, 0, false);
            for (size_t i = 0; i < l.count; i++) recent += l.msgs[i].uid > floor;
            store_msglist_free(&l);
        }
    }
    sbuf_puts(&s->out, "* STATUS ");
    imap_put_mailbox(&s->out, shown, s->utf8);
    sbuf_puts(&s->out, " (");
    size_t mark = s->out.len;
#define ITEM(flag, fmt, val) do { if (atts & (flag)) { \
        if (s->out.len > mark) sbuf_putc(&s->out, ' '); \
        sbuf_printf(&s->out, fmt, val); } } while (0)
    ITEM(IMAP_STATUS_MESSAGES, "MESSAGES %u", st.messages);
    ITEM(IMAP_STATUS_RECENT, "RECENT %zu", recent);
    ITEM(IMAP_STATUS_UIDNEXT, "UIDNEXT %u", st.uidnext);
    ITEM(IMAP_STATUS_UIDVALIDITY, "UIDVALIDITY %u", st.uidvalidity);
    ITEM(IMAP_STATUS_UNSEEN, "UNSEEN %u", st.unseen);
    ITEM(IMAP_STATUS_DELETED, "DELETED %u", st.deleted);
    ITEM(IMAP_STATUS_SIZE, "SIZE %llu", (unsigned long long)st.size);
    ITEM(IMAP_STATUS_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st.highestmodseq);
    ITEM(IMAP_STATUS_APPENDLIMIT, "APPENDLIMIT %llu", (unsigned long long)imap_append_limit(s));
#undef ITEM
    sbuf_puts(&s->out, ")\r\n");
    return 0;
}

static void put_status_items(struct imap_session *s, const char *name, unsigned atts)
{
    int rc;
    status_line(s, s->store, name, name, atts, &rc);
}

static void status_job(struct imap_session *s)
{
    int rc = STORE_ENOENT;
    if (s->cmd.status_atts & IMAP_STATUS_HIGHESTMODSEQ) s->condstore = true;
    if (s->rev2 && (s->cmd.status_atts & IMAP_STATUS_RECENT)) {
        imap_tagged(s, "BAD", "No STATUS RECENT in IMAP4rev2");
        return;
    }
    struct imap_mbref ref;     /* own, or another user's with the r right */
    if (imap_acl_resolve(s, s->cmd.mailbox, &ref) == 0) {
        if (!imap_acl_check(s, &ref, IMAP_RIGHT_R)) {
            imap_acl_release(s, &ref);
            return;
        }
        status_line(s, ref.store, ref.name, s->cmd.mailbox, s->cmd.status_atts, &rc);
        imap_acl_release(s, &ref);
    }
    imap_sync(s, true);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "STATUS completed");
}

/* ---- APPEND ------------------------------------------------------------------------------------ */

void imap_keywords_free(char **kw, size_t n)
{
    for (size_t i = 0; i < n; i++) free(kw[i]);
    free(kw);
}

int imap_parse_flags(const struct imap_strlist *l, bool allow_recent, unsigned *flags, char ***kw,
                     size_t *nkw, const char **bad)
{
    static const struct { const char *name; unsigned bit; } sys[] = {
        { "\\Seen", STORE_SEEN }, { "\\Answered", STORE_ANSWERED }, { "\\Flagged", STORE_FLAGGED },
        { "\\Deleted", STORE_DELETED }, { "\\Draft", STORE_DRAFT },
    };
    *flags = 0;
    *kw = xcalloc(l->n ? l->n : 1, sizeof **kw);
    *nkw = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct imap_str *f = &l->v[i];
        if (f->len && f->data[0] == '\\') {
            bool known = false;
            for (size_t k = 0; k < sizeof sys / sizeof sys[0]; k++) {
                if (strlen(sys[k].name) == f->len && ascii_ncasecmp(sys[k].name, f->data, f->len) == 0) {
                    *flags |= sys[k].bit;
                    known = true;
                }
            }
            if (!known && f->len == 7 && ascii_ncasecmp(f->data, "\\Recent", 7) == 0 && allow_recent)
                known = true;
            if (!known) {
                *bad = "Invalid system flag";
                imap_keywords_free(*kw, *nkw);
                *kw = NULL;
                return -1;
            }
            continue;
        }
        if (f->len == 0 || f->len > STORE_MAX_KEYWORD) {
            *bad = "Invalid keyword";
            imap_keywords_free(*kw, *nkw);
            *kw = NULL;
            return -1;
        }
        (*kw)[(*nkw)++] = xstrndup(f->data, f->len);
    }
    return 0;
}

uint64_t imap_append_limit(const struct imap_session *s)
{
    return s->lim.literal_max;
}

/* One message of an APPEND, checked before anything is stored. */
struct append_item {
    unsigned flags;
    char **kw;
    size_t nkw;
};

static void append_items_free(struct append_item *it, size_t n)
{
    for (size_t i = 0; i < n; i++) imap_keywords_free(it[i].kw, it[i].nkw);
    free(it);
}

/* APPEND, and MULTIAPPEND (RFC 3502): every message is checked first and
 * the stored ones are removed again if a later one fails, so the command
 * appends all of its messages or none (RFC 3502 3). */
/* The messages of an APPEND into mailbox name of store u (the user's own or
 * a shared one of owner, NULL for the own), checked first; keep: the flags
 * the user may set there, keywords: whether keywords may be set (RFC 4314 4). */
static void append_msgs(struct imap_session *s, store_user *u, const char *owner, const char *name,
                        const store_status *st, unsigned keep, bool keywords)
{
    const struct imap_command *c = &s->cmd;
    char err[256];
    int rc = 0;
    struct append_item *items = xcalloc(c->nmsgs ? c->nmsgs : 1, sizeof *items);
    for (size_t i = 0; i < c->nmsgs; i++) {
        const struct imap_append_msg *m = &c->msgs[i];
        const char *bad;
        if (m->utf8 && !s->utf8) {
            /* RFC 6855 4: the UTF8 data item needs ENABLE UTF8=ACCEPT. */
            imap_tagged(s, "BAD", "APPEND UTF8 needs ENABLE UTF8=ACCEPT");
            append_items_free(items, i);
            return;
        }
        if (m->data.len == 0) {
            imap_tagged(s, "NO", "Empty message refused");
            append_items_free(items, i);
            return;
        }
        if (m->data.len > imap_append_limit(s)) {
            /* RFC 7889 4 */
            imap_tagged(s, "NO", "[TOOBIG] Message larger than APPENDLIMIT");
            append_items_free(items, i);
            return;
        }
        if (imap_parse_flags(&m->flags, true, &items[i].flags, &items[i].kw, &items[i].nkw, &bad) < 0) {
            imap_tagged(s, "BAD", "%s", bad);
            append_items_free(items, i);
            return;
        }
    }
    uint64_t total = 0;
    for (size_t i = 0; i < c->nmsgs; i++) total += c->msgs[i].data.len;
    if (imap_acl_over_quota(s, u, owner, total)) {
        /* RFC 9208 4.5: nothing of a MULTIAPPEND is kept; the owner's
         * quota root is charged, whoever appends. */
        append_items_free(items, c->nmsgs);
        imap_tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
        return;
    }
    uint32_t *uids = xcalloc(c->nmsgs ? c->nmsgs : 1, sizeof *uids);
    size_t done = 0;
    for (; done < c->nmsgs && rc == 0; done++) {
        const struct imap_append_msg *m = &c->msgs[done];
        const char *const *kw = (const char *const *)items[done].kw;
        size_t nkw = keywords ? items[done].nkw : 0;
        time_t date = m->has_date ? m->date : time(NULL);
        /* A big message was spooled to a file as it came in (imap_session.c) */
        if (m->ext)
            rc = store_append_fd(u, name, s->spool_fd, m->ext->where, m->data.len, items[done].flags & keep,
                                 kw, nkw, date, &uids[done], err, sizeof err);
        else
            rc = store_append(u, name, m->data.data, m->data.len, items[done].flags & keep, kw, nkw, date,
                              &uids[done], err, sizeof err);
        if (rc < 0) break;
    }
    append_items_free(items, c->nmsgs);
    if (rc < 0) {
        if (rc == STORE_EIO) log_error("session=%s APPEND to %s: %s", s->id, name, err);
        if (done > 0) {
            char err2[256];
            if (store_expunge(u, name, uids, done, NULL, NULL, err2, sizeof err2) < 0)
                log_error("session=%s MULTIAPPEND to %s: could not take back %zu messages: %s", s->id, name,
                          done, err2);
        }
        free(uids);
        imap_sync(s, true);
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    sbuf set = SBUF_INIT;
    for (size_t i = 0; i < done; i++) {
        /* Consecutive uids as ranges: "5:7" (RFC 4315 uid-set). */
        size_t j = i;
        while (j + 1 < done && uids[j + 1] == uids[j] + 1) j++;
        if (set.len) sbuf_putc(&set, ',');
        if (j > i) sbuf_printf(&set, "%u:%u", uids[i], uids[j]);
        else sbuf_printf(&set, "%u", uids[i]);
        i = j;
    }
    free(uids);
    log_info("session=%s APPEND user=%s mailbox uid %s", s->id, s->login, set.data);
    imap_sync(s, true);
    imap_tagged(s, "OK", "[APPENDUID %u %s] APPEND completed", st->uidvalidity, set.data);
    sbuf_free(&set);
}

static void append_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    char err[256];
    struct imap_mbref ref;     /* own, or another user's with the i right */
    if (imap_acl_resolve(s, c->mailbox, &ref) < 0) {
        imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
        return;
    }
    const char *name = ref.name;
    store_status st;
    int rc = store_mailbox_status(ref.store, name, &st, err, sizeof err);
    if (rc == 0 && !imap_acl_check(s, &ref, IMAP_RIGHT_I)) rc = 1;
    if (rc < 0) imap_tagged(s, "NO", "%s", rc == STORE_ENOENT ? "[TRYCREATE] No such mailbox" : imap_store_code(rc));
    if (rc != 0) {
        imap_acl_release(s, &ref);
        return;
    }
    store_user *u = ref.store;
    /* RFC 4314 4: flags need their rights; the owner has them all. */
    unsigned keep = STORE_FLAGS_ALL;
    if (!(ref.rights & IMAP_RIGHT_S)) keep &= ~STORE_SEEN;
    if (!(ref.rights & IMAP_RIGHT_T)) keep &= ~STORE_DELETED;
    if (!(ref.rights & IMAP_RIGHT_W)) keep &= ~(STORE_ANSWERED | STORE_FLAGGED | STORE_DRAFT);
    if (ref.owner) {
        free(s->acl_notify);
        s->acl_notify = xstrdup(ref.owner);
    }
    append_msgs(s, u, ref.owner, name, &st, keep, (ref.rights & IMAP_RIGHT_W) != 0);
    imap_acl_release(s, &ref);
}

/* ---- dispatch --------------------------------------------------------------------------------- */

void imap_dispatch_mailbox(struct imap_session *s)
{
    switch (s->cmd.name) {
    case IMAP_CMD_SELECT: case IMAP_CMD_EXAMINE: imap_run_job(s, select_job); break;
    case IMAP_CMD_CREATE: imap_run_job(s, create_job); break;
    case IMAP_CMD_DELETE: imap_run_job(s, delete_job); break;
    case IMAP_CMD_RENAME: imap_run_job(s, rename_job); break;
    case IMAP_CMD_SUBSCRIBE: case IMAP_CMD_UNSUBSCRIBE: imap_run_job(s, subscribe_job); break;
    case IMAP_CMD_LIST: case IMAP_CMD_LSUB: imap_run_job(s, list_job); break;
    case IMAP_CMD_STATUS: imap_run_job(s, status_job); break;
    case IMAP_CMD_APPEND: imap_run_job(s, append_job); break;
    case IMAP_CMD_NAMESPACE:
        imap_send(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
        imap_tagged(s, "OK", "NAMESPACE completed");
        break;
    default:
        imap_client_error(s, "Command not supported");
        break;
    }
}
