/* FETCH and UID FETCH (RFC 9051 6.4.5): message attributes, ENVELOPE and
 * BODY/BODYSTRUCTURE from the MIME tree, BODY[section]<partial> and the
 * RFC822 forms, \Seen set by non-PEEK body fetches.
 *
 * The response is produced in pieces of about FETCH_BATCH bytes: the job
 * returns with job_more set and runs again once the client has read what
 * was sent, so memory stays bounded whatever the size of the mailbox.
 *
 * What needs only the header block (ENVELOPE, header sections) comes from
 * the header the store keeps in its index; BODY and BODYSTRUCTURE, once
 * computed from the whole message, are kept in the same message cache
 * (store.h), so a client that asks again (every start-up of most clients)
 * costs neither a read nor a parse of the message. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "imap/imap_session_int.h"
#include "mime/mime_header.h"

#define FETCH_BATCH (256 * 1024)

static bool att_needs_content(const struct imap_fetch_att *a)
{
    switch (a->type) {
    case IMAP_FA_FLAGS: case IMAP_FA_INTERNALDATE: case IMAP_FA_RFC822_SIZE: case IMAP_FA_UID:
    case IMAP_FA_MODSEQ:
        return false;
    default:
        return true;
    }
}

/* Can the attribute be answered from the header block alone?  The top
 * level's header sections and ENVELOPE (a MIME tree parsed from the header
 * alone has the same root header and envelope as one of the whole). */
static bool att_header_only(const struct imap_fetch_att *a)
{
    switch (a->type) {
    case IMAP_FA_ENVELOPE: case IMAP_FA_RFC822_HEADER:
        return true;
    case IMAP_FA_BODY_SECTION:
        return a->nparts == 0 && (a->text == IMAP_SECT_HEADER || a->text == IMAP_SECT_HEADER_FIELDS ||
                                  a->text == IMAP_SECT_HEADER_FIELDS_NOT);
    default:
        return !att_needs_content(a);
    }
}

static bool att_sets_seen(const struct imap_fetch_att *a)
{
    switch (a->type) {
    case IMAP_FA_RFC822: case IMAP_FA_RFC822_TEXT: return true;
    case IMAP_FA_BODY_SECTION: case IMAP_FA_BINARY: return !a->peek;
    default: return false;
    }
}

/* "1.2.HEADER.FIELDS (A B)" as the client asked, for the response. */
static void put_section_spec(sbuf *out, const struct imap_fetch_att *a)
{
    for (size_t i = 0; i < a->nparts; i++) sbuf_printf(out, "%s%u", i ? "." : "", a->parts[i]);
    const char *t = NULL;
    switch (a->text) {
    case IMAP_SECT_NONE: break;
    case IMAP_SECT_HEADER: t = "HEADER"; break;
    case IMAP_SECT_HEADER_FIELDS: t = "HEADER.FIELDS"; break;
    case IMAP_SECT_HEADER_FIELDS_NOT: t = "HEADER.FIELDS.NOT"; break;
    case IMAP_SECT_TEXT: t = "TEXT"; break;
    case IMAP_SECT_MIME: t = "MIME"; break;
    }
    if (!t) return;
    if (a->nparts) sbuf_putc(out, '.');
    sbuf_puts(out, t);
    if (a->text == IMAP_SECT_HEADER_FIELDS || a->text == IMAP_SECT_HEADER_FIELDS_NOT) {
        sbuf_puts(out, " (");
        for (size_t i = 0; i < a->fields.n; i++) {
            if (i) sbuf_putc(out, ' ');
            imap_put_astring(out, a->fields.v[i].data, a->fields.v[i].len, false);
        }
        sbuf_putc(out, ')');
    }
}

static bool is_message_part(const struct mime_part *p)
{
    return strcmp(p->type, "message") == 0 &&
           (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0) && p->children;
}

/* The bytes of a section: *data and *len point into msg or into tmp.
 * Returns false when the section does not exist (sent as NIL). */
static bool section_bytes(const char *msg, size_t len, const struct mime_part *root,
                          const struct imap_fetch_att *a, sbuf *tmp, const char **data, size_t *dlen)
{
    const struct mime_part *p = root;
    if (a->nparts) {
        p = mime_part_find(root, (const unsigned *)a->parts, a->nparts);
        if (!p) return false;
    }
    if (a->text == IMAP_SECT_NONE) {
        if (a->nparts == 0) {
            *data = msg;
            *dlen = len;
        } else {
            *data = msg + p->body_off;
            *dlen = mime_part_body_size(p);
        }
        return true;
    }
    if (a->text == IMAP_SECT_MIME) {
        if (a->nparts == 0) return false;
        *data = msg + p->hdr_off;
        *dlen = mime_part_hdr_size(p);
        return true;
    }
    /* HEADER, HEADER.FIELDS[.NOT], TEXT: of a message (the top level or
     * an encapsulated one). */
    const struct mime_part *m = p;
    if (a->nparts) {
        if (!is_message_part(p)) return false;
        m = p->children;
    }
    if (a->text == IMAP_SECT_TEXT) {
        *data = msg + m->body_off;
        *dlen = mime_part_body_size(m);
        return true;
    }
    if (a->text == IMAP_SECT_HEADER) {
        *data = msg + m->hdr_off;
        *dlen = mime_part_hdr_size(m);
        return true;
    }
    const char **names = xcalloc(a->fields.n ? a->fields.n : 1, sizeof *names);
    for (size_t i = 0; i < a->fields.n; i++) names[i] = xstrndup(a->fields.v[i].data, a->fields.v[i].len);
    sbuf_reset(tmp);
    mime_header_select(msg + m->hdr_off, mime_part_hdr_size(m), names, a->fields.n,
                       a->text == IMAP_SECT_HEADER_FIELDS_NOT, tmp);
    for (size_t i = 0; i < a->fields.n; i++) free((char *)names[i]);
    free(names);
    *data = tmp->data ? tmp->data : "";
    *dlen = tmp->len;
    return true;
}

/* A literal of message text.  A message APPENDed as literal8 (RFC 3516)
 * may hold NUL, which no IMAP literal may carry outside BINARY: it goes
 * out as 0x80, as Dovecot does, so the byte count stays right. */
static void put_text_literal(sbuf *out, const char *data, size_t len)
{
    if (!memchr(data, 0, len)) {
        imap_put_literal(out, data, len);
        return;
    }
    sbuf_printf(out, "{%zu}\r\n", len);
    size_t at = out->len;
    sbuf_append(out, data, len);
    for (size_t i = at; i < out->len; i++)
        if (out->data[i] == 0) out->data[i] = (char)0x80;
}

static void put_partial(sbuf *out, const struct imap_fetch_att *a, const char *data, size_t len)
{
    bool binary = a->type == IMAP_FA_BINARY;
    if (a->partial) {
        uint64_t off = a->origin < len ? a->origin : len;
        uint64_t n = len - off;
        if (a->count < n) n = a->count;
        data += off;
        len = (size_t)n;
    }
    if (binary) imap_put_literal(out, data, len);
    else put_text_literal(out, data, len);
}

/* BINARY[section] content (RFC 3516 4.2): the part's body with its
 * Content-Transfer-Encoding undone; for BINARY[] the whole message, its
 * body decoded when it is a single part.  -1: unknown encoding; -2: no
 * such part. */
static int binary_bytes(const char *msg, size_t len, const struct mime_part *root,
                        const struct imap_fetch_att *a, sbuf *out)
{
    const struct mime_part *p = root;
    if (a->nparts) {
        p = mime_part_find(root, (const unsigned *)a->parts, a->nparts);
        if (!p) return -2;
        return mime_part_decode(msg, p, out) < 0 ? -1 : 0;
    }
    if (root->children) {
        sbuf_append(out, msg, len);
        return 0;
    }
    sbuf_append(out, msg + root->hdr_off, mime_part_hdr_size(root));
    return mime_part_decode(msg, root, out) < 0 ? -1 : 0;
}

/* Message cache entries of BODY and BODYSTRUCTURE, one per way of writing
 * them: 8-bit strings go out as they are only to UTF8=ACCEPT clients. */
static int body_field(bool extended, bool utf8)
{
    return STORE_MSGCACHE_USER + (extended ? 1 : 0) + (utf8 ? 2 : 0);
}

/* Entries computed during one run of the job, written in one transaction
 * at its end (writing while the run reads would end its snapshot). */
struct pending {
    uint32_t *uids;
    int *fields;
    char **data;
    size_t *len;
    size_t n, cap;
};

static void pending_add(struct pending *p, uint32_t uid, int field, const char *data, size_t len)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->uids = xrealloc(p->uids, p->cap * sizeof *p->uids);
        p->fields = xrealloc(p->fields, p->cap * sizeof *p->fields);
        p->data = xrealloc(p->data, p->cap * sizeof *p->data);
        p->len = xrealloc(p->len, p->cap * sizeof *p->len);
    }
    p->uids[p->n] = uid;
    p->fields[p->n] = field;
    p->data[p->n] = xmalloc(len ? len : 1);
    if (len) memcpy(p->data[p->n], data, len);
    p->len[p->n] = len;
    p->n++;
}

static void pending_flush(struct imap_session *s, struct pending *p)
{
    char err[256];
    if (p->n && store_msgcache_put(s->store, s->sel->name, p->uids, p->fields, (const char *const *)p->data,
                                   p->len, p->n, err, sizeof err) != 0)
        log_warn("session=%s cannot keep BODYSTRUCTURE in the index: %s", s->id, err);
    for (size_t i = 0; i < p->n; i++) free(p->data[i]);
    free(p->uids);
    free(p->fields);
    free(p->data);
    free(p->len);
    memset(p, 0, sizeof *p);
}

/* BODY or BODYSTRUCTURE of uid from the message cache; false if absent. */
static bool cached_body(struct imap_session *s, uint32_t uid, bool extended, sbuf *out)
{
    char err[256], *data;
    size_t len;
    int rc = store_msgcache_get(s->store, s->sel->name, uid, body_field(extended, s->utf8), &data, &len,
                                err, sizeof err);
    if (rc < 0) log_error("session=%s cannot read the message cache of uid %u: %s", s->id, uid, err);
    if (rc != 0) return false;
    sbuf_append(out, data, len);
    free(data);
    return true;
}

/* Does the attribute use the MIME tree?  BODY[] and RFC822 are the bytes
 * of the whole message, which need no parse. */
static bool att_needs_tree(const struct imap_fetch_att *a)
{
    if (!att_needs_content(a)) return false;
    if (a->type == IMAP_FA_RFC822) return false;
    return !(a->type == IMAP_FA_BODY_SECTION && a->nparts == 0 && a->text == IMAP_SECT_NONE);
}

/* One "* n FETCH (...)" response.  Returns false if the message is gone. */
static bool fetch_one(struct imap_session *s, uint32_t seq, sbuf *msg, sbuf *tmp, struct pending *pend)
{
    const struct imap_command *c = &s->cmd;
    struct imap_view *v = s->sel;
    struct imap_msg *m = &v->msgs[seq - 1];
    if (m->expunged) return false;
    /* RFC 7162 3.1.4.1: only what changed after CHANGEDSINCE. */
    if (c->has_changedsince && m->modseq <= c->changedsince) return true;
    bool content = false, header_only = true, seen = false, want_flags = false, want_modseq = false;
    bool tree = false, want_body = false, want_struct = false, rest_header_only = true;
    for (const struct imap_fetch_att *a = c->fetch; a; a = a->next) {
        content |= att_needs_content(a);
        header_only &= att_header_only(a);
        tree |= att_needs_tree(a);
        seen |= att_sets_seen(a);
        want_flags |= a->type == IMAP_FA_FLAGS;
        want_modseq |= a->type == IMAP_FA_MODSEQ;
        want_body |= a->type == IMAP_FA_BODY;
        want_struct |= a->type == IMAP_FA_BODYSTRUCTURE;
        if (a->type != IMAP_FA_BODY && a->type != IMAP_FA_BODYSTRUCTURE)
            rest_header_only &= att_header_only(a);
    }
    /* BODY and BODYSTRUCTURE from the cache, when that is all that needs
     * the whole message. */
    sbuf body_c = SBUF_INIT, struct_c = SBUF_INIT;
    bool have_c = false, kept_body = false, kept_struct = false;
    if ((want_body || want_struct) && rest_header_only) {
        have_c = (!want_body || cached_body(s, m->uid, false, &body_c)) &&
                 (!want_struct || cached_body(s, m->uid, true, &struct_c));
        if (have_c) {
            header_only = true;
            content = tree = false;
            for (const struct imap_fetch_att *a = c->fetch; a; a = a->next)
                if (a->type != IMAP_FA_BODY && a->type != IMAP_FA_BODYSTRUCTURE && att_needs_content(a))
                    content = tree = true;
        }
    }
    struct mime_part *root = NULL;
    if (content) {
        int rc = header_only ? imap_load_header(s, m->uid, msg) : imap_load_msg(s, m->uid, msg);
        if (rc == STORE_ENOENT || rc < 0) {
            sbuf_free(&body_c);
            sbuf_free(&struct_c);
            if (rc == STORE_ENOENT) return false;
            s->fetch_failed = true;
            return true;
        }
        if (tree) mime_parse(msg->data ? msg->data : "", msg->len, NULL, &root);
    }
    bool seen_now = false;
    if (seen && !v->readonly && !(m->flags & STORE_SEEN)) {
        /* RFC 9051 6.4.5: BODY[...] (not PEEK) sets \Seen. */
        store_flag_result r;
        char err[256];
        uint32_t uid = m->uid;
        if (store_flags(s->store, v->name, &uid, 1, STORE_FLAGS_ADD, STORE_SEEN, NULL, 0, 0, &r, NULL, err,
                        sizeof err) == 0 && r.status == 0) {
            m->flags = r.flags;
            m->keywords = r.keywords;
            m->modseq = r.modseq;
            seen_now = true;
        }
    }
    const char *body = msg->data ? msg->data : "";
    size_t blen = content ? msg->len : 0;

    imap_send(s, "* %u FETCH (", seq);
    size_t mark = s->out.len;
    /* RFC 7162 3.2: once enabled, a \Seen set by this FETCH is reported
     * with UID and MODSEQ; after ENABLE QRESYNC every FETCH carries UID
     * (the client keys its cache by uid, sequence numbers shift with
     * VANISHED). */
    bool uid_first = c->uid || (seen_now && s->condstore) || s->qresync;
    if (uid_first) imap_send(s, "UID %u", m->uid);
    for (const struct imap_fetch_att *a = c->fetch; a; a = a->next) {
        if (a->type == IMAP_FA_UID && uid_first) continue;
        if (s->out.len > mark) sbuf_putc(&s->out, ' ');
        switch (a->type) {
        case IMAP_FA_UID: imap_send(s, "UID %u", m->uid); break;
        case IMAP_FA_FLAGS:
            imap_send(s, "FLAGS ");
            imap_put_msg_flags(&s->out, v, m);
            break;
        case IMAP_FA_INTERNALDATE:
            imap_send(s, "INTERNALDATE ");
            imap_put_datetime(&s->out, m->internaldate);
            break;
        case IMAP_FA_RFC822_SIZE: imap_send(s, "RFC822.SIZE %llu", (unsigned long long)m->size); break;
        case IMAP_FA_MODSEQ: imap_send(s, "MODSEQ (%llu)", (unsigned long long)m->modseq); break;
        case IMAP_FA_ENVELOPE:
            imap_send(s, "ENVELOPE ");
            imap_put_envelope(&s->out, root->env, s->utf8);
            break;
        case IMAP_FA_BODY:
        case IMAP_FA_BODYSTRUCTURE: {
            bool ext = a->type == IMAP_FA_BODYSTRUCTURE;
            imap_send(s, ext ? "BODYSTRUCTURE " : "BODY ");
            if (have_c) {
                const sbuf *b = ext ? &struct_c : &body_c;
                sbuf_append(&s->out, b->data, b->len);
                break;
            }
            size_t at = s->out.len;
            imap_put_body(&s->out, root, ext, s->utf8);
            /* Once, should the FETCH name it twice. */
            bool *kept = ext ? &kept_struct : &kept_body;
            if (!*kept)
                pending_add(pend, m->uid, body_field(ext, s->utf8), s->out.data + at, s->out.len - at);
            *kept = true;
            break;
        }
        case IMAP_FA_RFC822:
            imap_send(s, "RFC822 ");
            put_text_literal(&s->out, body, blen);
            break;
        case IMAP_FA_RFC822_HEADER:
            imap_send(s, "RFC822.HEADER ");
            put_text_literal(&s->out, body, mime_part_hdr_size(root));
            break;
        case IMAP_FA_RFC822_TEXT:
            imap_send(s, "RFC822.TEXT ");
            put_text_literal(&s->out, body + root->body_off, mime_part_body_size(root));
            break;
        case IMAP_FA_BODY_SECTION: {
            const char *d;
            size_t dl;
            imap_send(s, "BODY[");
            put_section_spec(&s->out, a);
            imap_send(s, "]");
            if (a->partial) imap_send(s, "<%llu>", (unsigned long long)a->origin);
            imap_send(s, " ");
            if (!section_bytes(body, blen, root, a, tmp, &d, &dl)) imap_send(s, "NIL");
            else put_partial(&s->out, a, d, dl);
            break;
        }
        case IMAP_FA_BINARY:
        case IMAP_FA_BINARY_SIZE: {
            sbuf dec = SBUF_INIT;
            int r = binary_bytes(body, blen, root, a, &dec);
            /* RFC 3516 4.2: an encoding we cannot undo fails the command. */
            if (r == -1) s->fetch_unknown_cte = true;
            imap_send(s, a->type == IMAP_FA_BINARY ? "BINARY[" : "BINARY.SIZE[");
            put_section_spec(&s->out, a);
            imap_send(s, "]");
            if (a->type == IMAP_FA_BINARY_SIZE) {
                imap_send(s, " %zu", r < 0 ? (size_t)0 : dec.len);
            } else {
                if (a->partial) imap_send(s, "<%llu>", (unsigned long long)a->origin);
                if (r < 0) imap_send(s, " NIL");
                else {
                    imap_send(s, " ~");
                    put_partial(&s->out, a, dec.data ? dec.data : "", dec.len);
                }
            }
            sbuf_free(&dec);
            break;
        }
        }
    }
    if (seen_now && !want_flags) {
        if (s->out.len > mark) sbuf_putc(&s->out, ' ');
        imap_send(s, "FLAGS ");
        imap_put_msg_flags(&s->out, v, m);
    }
    /* CHANGEDSINCE implies MODSEQ (RFC 7162 3.1.4.1); with CONDSTORE on,
     * FLAGS go with their MODSEQ. */
    if (!want_modseq && (c->has_changedsince || (s->condstore && (want_flags || seen_now)))) {
        if (s->out.len > mark) sbuf_putc(&s->out, ' ');
        imap_send(s, "MODSEQ (%llu)", (unsigned long long)m->modseq);
    }
    imap_send(s, ")\r\n");
    if (root) mime_free(root);
    sbuf_free(&body_c);
    sbuf_free(&struct_c);
    return true;
}

static void fetch_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    if (!s->fetch_set) {
        if (c->vanished && (!s->qresync || !c->uid || !c->has_changedsince)) {
            /* RFC 7162 3.2.6 */
            imap_tagged(s, "BAD", "VANISHED needs ENABLE QRESYNC, UID FETCH and CHANGEDSINCE");
            return;
        }
        if (c->has_changedsince) {
            s->condstore = true;
            /* The modseqs compared must be current. */
            imap_sync(s, c->uid);
        }
        if (c->vanished && !c->set.saved) {
            struct imap_view *v = s->sel;
            uint32_t top = v->uidnext > 1 ? v->uidnext - 1 : 0;
            if (v->n && v->msgs[v->n - 1].uid > top) top = v->msgs[v->n - 1].uid;
            struct imap_range *r = xcalloc(c->set.n ? c->set.n : 1, sizeof *r);
            size_t nr = top ? imap_seqset_normalize(&c->set, top, r) : 0;
            imap_put_vanished_earlier(s, r, nr, c->changedsince);
            free(r);
        }
        for (const struct imap_fetch_att *a = c->fetch; a; a = a->next)
            if (a->type == IMAP_FA_MODSEQ) s->condstore = true;
        s->fetch_set = imap_resolve_set(s, &c->set, c->uid, &s->fetch_n);
        s->fetch_pos = 0;
        s->fetch_failed = false;
        s->fetch_gone = false;
        s->fetch_unknown_cte = false;
        if (s->fetch_n == 0 && !c->uid && !c->set.saved) {
            /* RFC 9051 6.4.5: a sequence number beyond the mailbox is an error. */
            free(s->fetch_set);
            s->fetch_set = NULL;
            imap_sync(s, false);
            imap_tagged(s, "BAD", "Invalid message sequence number");
            return;
        }
    }
    sbuf msg = SBUF_INIT, tmp = SBUF_INIT;
    struct pending pend = { 0 };
    while (s->fetch_pos < s->fetch_n) {
        if (!fetch_one(s, s->fetch_set[s->fetch_pos++], &msg, &tmp, &pend)) s->fetch_gone = true;
        if (s->out.len >= FETCH_BATCH && s->fetch_pos < s->fetch_n) {
            s->job_more = true;
            break;
        }
    }
    sbuf_free(&msg);
    sbuf_free(&tmp);
    pending_flush(s, &pend);
    if (s->job_more) return;
    free(s->fetch_set);
    s->fetch_set = NULL;
    imap_sync(s, c->uid);
    if (s->fetch_failed) imap_tagged(s, "NO", "[SERVERBUG] Some messages could not be read");
    else if (s->fetch_unknown_cte)
        imap_tagged(s, "NO", "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding, use BODY[]");
    else if (s->fetch_gone && !c->uid) imap_tagged(s, "NO", "[EXPUNGEISSUED] Some messages were expunged");
    else imap_tagged(s, "OK", "FETCH completed");
}

void imap_cmd_fetch(struct imap_session *s)
{
    imap_run_job(s, fetch_job);
}
