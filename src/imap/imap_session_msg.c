/* Commands of the SELECTED state (RFC 9051 6.4) except FETCH: STORE,
 * COPY (COPYUID, RFC 4315), MOVE (RFC 6851), EXPUNGE, UID EXPUNGE,
 * SEARCH, CLOSE and UNSELECT (RFC 3691). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "imap/imap_search.h"
#include "imap/imap_session_int.h"
#include "mime/mime_header.h"

uint32_t *imap_resolve_set(const struct imap_session *s, const struct imap_seqset *set, bool uid, size_t *n)
{
    const struct imap_view *v = s->sel;
    *n = 0;
    uint32_t *out = xcalloc(v->n ? v->n : 1, sizeof *out);
    if (set->saved) {
        /* RFC 5182 2.1: "$" is the saved uids, as numbers of the command's kind. */
        for (size_t i = 0; i < v->n; i++)
            if (imap_view_saved_has(v, v->msgs[i].uid)) out[(*n)++] = (uint32_t)(i + 1);
        return out;
    }
    if (v->n == 0 || set->n == 0) return out;
    struct imap_range *r = xcalloc(set->n, sizeof *r);
    uint32_t max = uid ? v->msgs[v->n - 1].uid : (uint32_t)v->n;
    size_t nr = imap_seqset_normalize(set, max, r);
    if (uid) {
        for (size_t i = 0; i < v->n; i++)
            if (imap_ranges_contains(r, nr, v->msgs[i].uid)) out[(*n)++] = (uint32_t)(i + 1);
    } else {
        struct imap_seqiter it;
        uint32_t x;
        imap_seqiter_init(&it, r, nr);
        while (imap_seqiter_next(&it, &x) && x <= v->n) out[(*n)++] = x;
    }
    free(r);
    return out;
}

/* Open message uid of the selected mailbox; logs what is not ENOENT. */
static int open_msg(struct imap_session *s, uint32_t uid, int *fd, uint64_t *size)
{
    char err[256];
    int rc = store_msg_open(s->store, s->sel->name, uid, fd, size, err, sizeof err);
    if (rc < 0 && rc != STORE_ENOENT) log_error("session=%s cannot open message uid %u: %s", s->id, uid, err);
    return rc;
}

/* Append from fd to out until out holds want bytes or the file ends
 * (*eof).  0, or STORE_EIO with a log line. */
static int read_upto(struct imap_session *s, uint32_t uid, int fd, sbuf *out, size_t want, bool *eof)
{
    *eof = false;
    sbuf_reserve(out, want - out->len);
    while (out->len < want) {
        ssize_t n = read(fd, out->data + out->len, want - out->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            log_error("session=%s reading message uid %u: %s", s->id, uid, strerror(errno));
            return STORE_EIO;
        }
        if (n == 0) {
            *eof = true;
            break;
        }
        out->len += (size_t)n;
    }
    return 0;
}

int imap_load_msg(struct imap_session *s, uint32_t uid, sbuf *out)
{
    int fd = -1;
    uint64_t size = 0;
    sbuf_reset(out);
    int rc = open_msg(s, uid, &fd, &size);
    if (rc < 0) return rc;
    bool eof;
    rc = read_upto(s, uid, fd, out, (size_t)size, &eof);
    close(fd);
    if (rc < 0) return rc;
    out->data[out->len] = '\0';
    return 0;
}

/* Only the header block: read in growing pieces until the empty line that
 * ends it (mime_header_size, the rule mime_parse applies too), so the
 * result is the header of the whole file byte for byte, whatever the
 * piece boundaries.  A message without an empty line is read whole. */
int imap_load_header(struct imap_session *s, uint32_t uid, sbuf *out)
{
    int fd = -1;
    uint64_t size = 0;
    sbuf_reset(out);
    /* The index keeps most headers (store.h, the message cache). */
    char err[256], *data;
    size_t len;
    int rc = store_msgcache_get(s->store, s->sel->name, uid, STORE_MSGCACHE_HEADER, &data, &len, err,
                             sizeof err);
    if (rc == 0) {
        sbuf_append(out, data, len);
        free(data);
        return 0;
    }
    if (rc < 0) log_error("session=%s cannot read the cached header of uid %u: %s", s->id, uid, err);
    rc = open_msg(s, uid, &fd, &size);
    if (rc < 0) return rc;
    size_t want = 4096;
    for (;;) {
        if (want > size) want = (size_t)size;
        bool eof;
        rc = read_upto(s, uid, fd, out, want, &eof);
        if (rc < 0) {
            close(fd);
            return rc;
        }
        bool has_body;
        size_t h = mime_header_size(out->data, out->len, &has_body);
        if (has_body) {
            out->len = h;
            break;
        }
        if (eof || out->len >= size) break;
        want *= 4;
    }
    if (out->data) out->data[out->len] = '\0';
    close(fd);
    return 0;
}

/* ---- STORE ------------------------------------------------------------------- */


static void store_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    struct imap_view *v = s->sel;
    unsigned flags;
    char **kw;
    size_t nkw;
    const char *bad;
    if (imap_parse_flags(&c->list, true, &flags, &kw, &nkw, &bad) < 0) {
        imap_tagged(s, "BAD", "%s", bad);
        return;
    }
    if (v->readonly) {
        imap_keywords_free(kw, nkw);
        imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (c->has_unchangedsince) s->condstore = true;
    size_t n;
    uint32_t *seqs = imap_resolve_set(s, &c->set, c->uid, &n);
    uint32_t *uids = xcalloc(n ? n : 1, sizeof *uids);
    size_t nu = 0;
    for (size_t i = 0; i < n; i++)
        if (!v->msgs[seqs[i] - 1].expunged) uids[nu++] = v->msgs[seqs[i] - 1].uid;
    bool gone = nu < n;
    free(seqs);
    /* RFC 7162 3.1.3: UNCHANGEDSINCE 0 fails for every message. */
    bool fail_all = c->has_unchangedsince && c->unchangedsince == 0;
    enum store_flag_op op = c->store_op == IMAP_STORE_ADD ? STORE_FLAGS_ADD
                          : c->store_op == IMAP_STORE_REMOVE ? STORE_FLAGS_REMOVE : STORE_FLAGS_SET;
    store_flag_result *res = xcalloc(nu ? nu : 1, sizeof *res);
    char err[256];
    int rc = 0;
    if (fail_all) {
        for (size_t i = 0; i < nu; i++) res[i] = (store_flag_result){ .uid = uids[i], .status = STORE_EEXIST };
    } else if (nu) {
        rc = store_flags(s->store, v->name, uids, nu, op, flags, (const char *const *)kw, nkw,
                         c->has_unchangedsince ? c->unchangedsince : 0, res, NULL, err, sizeof err);
    }
    imap_keywords_free(kw, nkw);
    if (rc < 0) {
        if (rc == STORE_EIO) log_error("session=%s STORE: %s", s->id, err);
        free(res);
        free(uids);
        imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    if (nkw) imap_view_reload_keywords(s);
    uint32_t *failed = xcalloc(nu ? nu : 1, sizeof *failed);
    size_t nfailed = 0;
    for (size_t i = 0; i < nu; i++) {
        if (res[i].status == STORE_ENOENT) {
            gone = true;
            continue;
        }
        uint32_t seq = imap_view_seq(v, res[i].uid);
        if (!seq) continue;
        if (res[i].status == STORE_EEXIST) {
            failed[nfailed++] = c->uid ? res[i].uid : seq;
            continue;
        }
        struct imap_msg *m = &v->msgs[seq - 1];
        bool changed = m->modseq != res[i].modseq;
        m->flags = res[i].flags;
        m->keywords = res[i].keywords;
        m->modseq = res[i].modseq;
        /* .SILENT: nothing, or with CONDSTORE the new MODSEQ of what
         * changed (RFC 7162 3.1.3 example 3). */
        if (c->store_silent && !changed) continue;
        imap_put_flag_fetch(s, seq, m, c->uid, c->store_silent);
    }
    free(res);
    free(uids);
    imap_sync(s, c->uid);
    if (nfailed) {
        sbuf set = SBUF_INIT;
        imap_put_uid_list(&set, failed, nfailed);
        imap_tagged(s, "OK", "[MODIFIED %s] Conditional STORE failed for some messages", set.data);
        sbuf_free(&set);
    } else if (gone && !c->uid) {
        imap_tagged(s, "NO", "[EXPUNGEISSUED] Some of the messages no longer exist");
    } else {
        imap_tagged(s, "OK", "STORE completed");
    }
    free(failed);
}

/* ---- COPY / MOVE ----------------------------------------------------------------- */

/* "1:3,7" from ascending-or-not uids (kept in the given order, as
 * COPYUID pairs source and destination by position). */
void imap_put_uid_list(sbuf *out, const uint32_t *u, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && u[j + 1] == u[j] + 1) j++;
        if (i) sbuf_putc(out, ',');
        if (j > i) sbuf_printf(out, "%u:%u", u[i], u[j]);
        else sbuf_printf(out, "%u", u[i]);
        i = j + 1;
    }
}

static void copy_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    struct imap_view *v = s->sel;
    bool move = c->name == IMAP_CMD_MOVE;
    const char *dst = c->mailbox2 ? c->mailbox2 : c->mailbox;
    const char *word = move ? "MOVE" : "COPY";
    if (!imap_name_ok(dst)) {
        imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
        return;
    }
    if (move && v->readonly) {
        imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    size_t n;
    uint32_t *seqs = imap_resolve_set(s, &c->set, c->uid, &n);
    uint32_t *uids = xcalloc(n ? n : 1, sizeof *uids);
    size_t nu = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (!v->msgs[seqs[i] - 1].expunged) {
            uids[nu++] = v->msgs[seqs[i] - 1].uid;
            bytes += v->msgs[seqs[i] - 1].size;
        }
    bool gone = nu < n;
    free(seqs);
    if (nu == 0) {
        free(uids);
        imap_sync(s, c->uid || move);
        if (gone) imap_tagged(s, "NO", "[EXPUNGEISSUED] The messages no longer exist");
        else imap_tagged(s, "OK", "%s completed (nothing to do)", word);
        return;
    }
    /* RFC 9208 4.5: a COPY that would exceed the STORAGE limit fails as a
     * whole.  MOVE stays inside the one quota root: usage does not grow. */
    if (!move && imap_over_quota(s, bytes)) {
        free(uids);
        imap_tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
        return;
    }
    uint32_t *nuids = xcalloc(nu, sizeof *nuids);
    uint32_t uidv = 0;
    char err[256];
    int rc = store_copy(s->store, v->name, uids, nu, dst, move, nuids, &uidv, err, sizeof err);
    if (rc < 0) {
        if (rc == STORE_EIO) log_error("session=%s %s: %s", s->id, word, err);
        free(uids);
        free(nuids);
        if (rc == STORE_ENOENT) imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
        else imap_tagged(s, "NO", "%s", imap_store_code(rc));
        return;
    }
    size_t w = 0;
    for (size_t i = 0; i < nu; i++) {
        if (!nuids[i]) continue;
        uids[w] = uids[i];
        nuids[w++] = nuids[i];
    }
    sbuf code = SBUF_INIT;
    if (w) {
        sbuf_printf(&code, "[COPYUID %u ", uidv);
        imap_put_uid_list(&code, uids, w);
        sbuf_putc(&code, ' ');
        imap_put_uid_list(&code, nuids, w);
        sbuf_puts(&code, "] ");
    }
    if (move) {
        /* RFC 6851 4.3: COPYUID goes in an untagged OK before the
         * EXPUNGEs of the moved messages. */
        if (w) imap_send(s, "* OK %sMoved\r\n", code.data);
        imap_sync(s, true);
        imap_tagged(s, "OK", "MOVE completed");
    } else {
        imap_sync(s, c->uid);
        imap_tagged(s, "OK", "%sCOPY completed", sbuf_cstr(&code));
    }
    sbuf_free(&code);
    free(uids);
    free(nuids);
}

/* ---- EXPUNGE / CLOSE / UNSELECT ---------------------------------------------------- */

/* Remove the \Deleted messages (of set, for UID EXPUNGE). */
static int expunge_deleted(struct imap_session *s, const struct imap_seqset *set)
{
    struct imap_view *v = s->sel;
    uint32_t *uids = xcalloc(v->n ? v->n : 1, sizeof *uids);
    size_t nu = 0;
    size_t nr = 0;
    struct imap_range *r = NULL;
    if (set) {
        r = xcalloc(set->n ? set->n : 1, sizeof *r);
        nr = v->n ? imap_seqset_normalize(set, v->msgs[v->n - 1].uid, r) : 0;
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct imap_msg *m = &v->msgs[i];
        if (m->expunged || !(m->flags & STORE_DELETED)) continue;
        if (set && (set->saved ? !imap_view_saved_has(v, m->uid) : !imap_ranges_contains(r, nr, m->uid)))
            continue;
        uids[nu++] = m->uid;
    }
    free(r);
    char err[256];
    int rc = nu ? store_expunge(s->store, v->name, uids, nu, NULL, NULL, err, sizeof err) : 0;
    if (rc < 0) log_error("session=%s EXPUNGE: %s", s->id, err);
    else if (nu) log_info("session=%s EXPUNGE user=%s mailbox: %zu removed", s->id, s->login, nu);
    free(uids);
    return rc;
}

static void expunge_job(struct imap_session *s)
{
    if (s->sel->readonly) {
        imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    /* Flags set by other sessions count too: look first. */
    imap_sync(s, false);
    int rc = expunge_deleted(s, s->cmd.uid ? &s->cmd.set : NULL);
    imap_sync(s, true);
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "EXPUNGE completed");
}

static void close_job(struct imap_session *s)
{
    int rc = 0;
    if (!s->sel->readonly) {
        /* RFC 9051 6.4.1: silently, no EXPUNGE responses. */
        store_msglist l;
        char err[256];
        if (store_messages(s->store, s->sel->name, s->sel->hms, &l, err, sizeof err) == 0) {
            for (size_t i = 0; i < l.count; i++) {
                uint32_t seq = imap_view_seq(s->sel, l.msgs[i].uid);
                if (seq) s->sel->msgs[seq - 1].flags = l.msgs[i].flags;
            }
            store_msglist_free(&l);
        }
        rc = expunge_deleted(s, NULL);
    }
    imap_view_free(s->sel);
    s->sel = NULL;
    s->state = IS_AUTH;
    if (rc < 0) imap_tagged(s, "NO", "%s", imap_store_code(rc));
    else imap_tagged(s, "OK", "CLOSE completed");
}

/* ---- SEARCH --------------------------------------------------------------------------- */

struct search_load {
    struct imap_session *s;
    uint32_t uid;
    sbuf buf;
};

static int search_load(void *ctx, const char **data, size_t *len)
{
    struct search_load *l = ctx;
    if (imap_load_msg(l->s, l->uid, &l->buf) < 0) return -1;
    *data = l->buf.data ? l->buf.data : "";
    *len = l->buf.len;
    return 0;
}

static int search_load_header(void *ctx, const char **data, size_t *len)
{
    struct search_load *l = ctx;
    if (imap_load_header(l->s, l->uid, &l->buf) < 0) return -1;
    *data = l->buf.data ? l->buf.data : "";
    *len = l->buf.len;
    return 0;
}

size_t *imap_search_indices(struct imap_session *s, const struct imap_search *root, size_t *n)
{
    struct imap_view *v = s->sel;
    struct search_load ld = { s, 0, SBUF_INIT };
    size_t *idx = xcalloc(v->n ? v->n : 1, sizeof *idx);
    *n = 0;
    time_t now = time(NULL);
    const char **kwn = xcalloc(v->nkeywords ? v->nkeywords : 1, sizeof *kwn);
    uint32_t max_uid = v->n ? v->msgs[v->n - 1].uid : 0;
    for (size_t i = 0; i < v->n; i++) {
        const struct imap_msg *m = &v->msgs[i];
        if (m->expunged) continue;
        size_t nk = 0;
        for (size_t k = 0; k < v->nkeywords && k < 32; k++)
            if (m->keywords & (1u << k)) kwn[nk++] = v->keywords[k];
        struct imap_search_msg sm = {
            .seq = (uint32_t)(i + 1), .uid = m->uid, .max_seq = (uint32_t)v->n, .max_uid = max_uid,
            .flags = m->flags, .recent = m->recent, .keywords = kwn, .nkeywords = nk,
            .internaldate = m->internaldate, .size = m->size, .modseq = m->modseq, .now = now,
            .load = search_load, .load_header = search_load_header, .load_ctx = &ld, .in_saved = imap_view_saved_has(v, m->uid),
        };
        ld.uid = m->uid;
        int r = imap_search_match(root, &sm);
        imap_search_msg_done(&sm);
        if (r == 1) idx[(*n)++] = i;
    }
    free(kwn);
    sbuf_free(&ld.buf);
    return idx;
}

static void search_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    struct imap_view *v = s->sel;
    bool save = c->search.ret & IMAP_SEARCHRET_SAVE;
    if (s->rev2 && imap_search_uses_recent(c->search.root)) {
        if (save) imap_saved_clear(v);
        imap_tagged(s, "BAD", "No RECENT, NEW or OLD in IMAP4rev2");
        return;
    }
    if (c->search.has_charset && s->utf8 && !s->rev2) {
        /* RFC 6855 3: after ENABLE UTF8=ACCEPT, SEARCH takes no CHARSET. */
        if (save) imap_saved_clear(v);
        imap_tagged(s, "BAD", "No CHARSET after ENABLE UTF8=ACCEPT");
        return;
    }
    if (c->search.has_charset) {
        const struct imap_str *cs = &c->search.charset;
        bool ok = (cs->len == 8 && ascii_ncasecmp(cs->data, "US-ASCII", 8) == 0) ||
                  (cs->len == 5 && ascii_ncasecmp(cs->data, "UTF-8", 5) == 0);
        if (!ok) {
            if (save) imap_saved_clear(v);
            imap_tagged(s, "NO", "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
            return;
        }
    }
    /* New flags from other sessions matter to the result. */
    imap_sync(s, c->uid);
    /* RFC 7162 3.1.5: a MODSEQ search reports the highest mod-sequence
     * of the messages found. */
    bool modseq = imap_search_uses_modseq(c->search.root);
    if (modseq) s->condstore = true;
    /* "$" in the search is the result saved before this command: it is
     * replaced only after the matching. */
    size_t nh = 0;
    size_t *idx = imap_search_indices(s, c->search.root, &nh);
    uint32_t *hits = xcalloc(nh ? nh : 1, sizeof *hits);
    uint32_t *hit_uids = xcalloc(nh ? nh : 1, sizeof *hit_uids);
    uint64_t top_modseq = 0;
    for (size_t k = 0; k < nh; k++) {
        const struct imap_msg *m = &v->msgs[idx[k]];
        hit_uids[k] = m->uid;
        hits[k] = c->uid ? m->uid : (uint32_t)(idx[k] + 1);
        if (m->modseq > top_modseq) top_modseq = m->modseq;
    }
    free(idx);
    if (save) {
        free(v->saved);
        v->saved = hit_uids;
        v->nsaved = nh;
        /* RFC 5182 2.4: with MIN and/or MAX but neither ALL nor COUNT,
         * only those are saved. */
        unsigned r = c->search.ret;
        if ((r & (IMAP_SEARCHRET_MIN | IMAP_SEARCHRET_MAX)) && !(r & (IMAP_SEARCHRET_ALL | IMAP_SEARCHRET_COUNT)) &&
            nh > 0) {
            size_t k = 0;
            uint32_t lo = hit_uids[0], hi = hit_uids[nh - 1];
            if (r & IMAP_SEARCHRET_MIN) v->saved[k++] = lo;
            if ((r & IMAP_SEARCHRET_MAX) && !(k && hi == lo)) v->saved[k++] = hi;
            v->nsaved = k;
        }
        hit_uids = NULL;
    } else {
        free(hit_uids);
    }
    /* RFC 5182 2.1: SAVE alone returns no ESEARCH. */
    bool quiet = save && (c->search.ret & ~IMAP_SEARCHRET_SAVE) == 0;
    /* IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 7.3.4). */
    if ((c->search.has_return || s->rev2) && !quiet) {
        /* RFC 4731 ESEARCH form, asked for with RETURN (...). */
        unsigned ret = c->search.ret & ~IMAP_SEARCHRET_SAVE ? c->search.ret : IMAP_SEARCHRET_ALL;
        imap_send(s, "* ESEARCH (TAG \"%s\")%s", c->tag, c->uid ? " UID" : "");
        if (nh && (ret & IMAP_SEARCHRET_MIN)) imap_send(s, " MIN %u", hits[0]);
        if (nh && (ret & IMAP_SEARCHRET_MAX)) imap_send(s, " MAX %u", hits[nh - 1]);
        if (nh && (ret & IMAP_SEARCHRET_ALL)) {
            imap_send(s, " ALL ");
            imap_put_uid_list(&s->out, hits, nh);
        }
        if (ret & IMAP_SEARCHRET_COUNT) imap_send(s, " COUNT %zu", nh);
        if (modseq && nh) imap_send(s, " MODSEQ %llu", (unsigned long long)top_modseq);
        imap_send(s, "\r\n");
    } else if (!quiet) {
        imap_send(s, "* SEARCH");
        for (size_t i = 0; i < nh; i++) imap_send(s, " %u", hits[i]);
        if (modseq && nh) imap_send(s, " (MODSEQ %llu)", (unsigned long long)top_modseq);
        imap_send(s, "\r\n");
    }
    free(hits);
    imap_tagged(s, "OK", "SEARCH completed");
}

/* ---- dispatch --------------------------------------------------------------------------- */

void imap_saved_clear(struct imap_view *v)
{
    free(v->saved);
    v->saved = NULL;
    v->nsaved = 0;
}

void imap_dispatch_selected(struct imap_session *s)
{
    switch (s->cmd.name) {
    case IMAP_CMD_STORE: imap_run_job(s, store_job); break;
    case IMAP_CMD_COPY: case IMAP_CMD_MOVE: imap_run_job(s, copy_job); break;
    case IMAP_CMD_EXPUNGE: imap_run_job(s, expunge_job); break;
    case IMAP_CMD_SEARCH: imap_run_job(s, search_job); break;
    case IMAP_CMD_CLOSE: imap_run_job(s, close_job); break;
    case IMAP_CMD_UNSELECT:
        imap_view_free(s->sel);
        s->sel = NULL;
        s->state = IS_AUTH;
        imap_tagged(s, "OK", "UNSELECT completed");
        break;
    default:
        imap_client_error(s, "Command not supported");
        break;
    }
}
