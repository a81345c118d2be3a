/* SORT and UID SORT, THREAD and UID THREAD (RFC 5256): the messages a
 * search selects, read once each for the header fields the criteria
 * need, then ordered or threaded by imap_sort.c. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "imap/imap_search.h"
#include "imap/imap_session_int.h"
#include "imap/imap_sort.h"
#include "mime/mime_header.h"

/* What one message contributes; strings owned here. */
struct sort_data {
    char *from, *to, *cc, *subject, *message_id;
    char **refs;
    size_t nrefs;
};

static char *first_mailbox(const struct mime_addr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct mime_address *a = &l->v[i];
        if (a->kind != MIME_ADDR_MAILBOX || !a->mailbox || a->invalid) continue;
        size_t n = strlen(a->mailbox);
        const char *p = a->mailbox;
        if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
            p++;
            n -= 2;
        }
        return xstrndup(p, n);
    }
    return xstrdup("");
}

static void sort_data_free(struct sort_data *d)
{
    free(d->from);
    free(d->to);
    free(d->cc);
    free(d->subject);
    free(d->message_id);
    for (size_t i = 0; i < d->nrefs; i++) free(d->refs[i]);
    free(d->refs);
}

/* Fill sm (and d, which sm points into) for view index i. */
static void fill(struct imap_session *s, size_t i, bool content, struct imap_sort_msg *sm,
                 struct sort_data *d, sbuf *buf)
{
    const struct imap_msg *m = &s->sel->msgs[i];
    sm->num = s->cmd.uid ? m->uid : (uint32_t)(i + 1);
    sm->seq = (uint32_t)(i + 1);
    sm->arrival = m->internaldate;
    sm->sent = m->internaldate;
    sm->size = m->size;
    struct mime_part *root = NULL;
    /* Sort and thread keys all come from the header block. */
    if (content && imap_load_header(s, m->uid, buf) == 0)
        mime_parse(buf->data ? buf->data : "", buf->len, NULL, &root);
    const struct mime_envelope *env = root ? root->env : NULL;
    if (env) {
        d->from = first_mailbox(&env->from);
        d->to = first_mailbox(&env->to);
        d->cc = first_mailbox(&env->cc);
        d->subject = imap_base_subject(env->subject_utf8 ? env->subject_utf8 : env->subject, &sm->reply);
        time_t t;
        if (env->date && imap_parse_sent_date(env->date, strlen(env->date), &t) == 0) sm->sent = t;
        char **ids = NULL;
        size_t nids = 0;
        if (env->message_id) imap_msgids(env->message_id, strlen(env->message_id), &ids, &nids);
        if (nids) {
            d->message_id = ids[0];
            for (size_t k = 1; k < nids; k++) free(ids[k]);
        }
        free(ids);
        struct mime_field f;
        if (mime_header_find(buf->data, mime_part_hdr_size(root), "References", &f))
            imap_msgids(f.value, f.value_len, &d->refs, &d->nrefs);
        if (d->nrefs == 0 && env->in_reply_to) {
            /* RFC 5256 3: In-Reply-To's first id when there are no References */
            imap_msgids(env->in_reply_to, strlen(env->in_reply_to), &d->refs, &d->nrefs);
            for (size_t k = 1; k < d->nrefs; k++) free(d->refs[k]);
            if (d->nrefs > 1) d->nrefs = 1;
        }
    } else {
        d->from = xstrdup("");
        d->to = xstrdup("");
        d->cc = xstrdup("");
        d->subject = xstrdup("");
    }
    if (root) mime_free(root);
    sm->from = d->from;
    sm->to = d->to;
    sm->cc = d->cc;
    sm->subject = d->subject;
    sm->message_id = d->message_id;
    sm->refs = (const char *const *)d->refs;
    sm->nrefs = d->nrefs;
}

static bool charset_ok(struct imap_session *s)
{
    const struct imap_str *cs = &s->cmd.search.charset;
    if (!s->cmd.search.has_charset) return true;
    if ((cs->len == 8 && ascii_ncasecmp(cs->data, "US-ASCII", 8) == 0) ||
        (cs->len == 5 && ascii_ncasecmp(cs->data, "UTF-8", 5) == 0))
        return true;
    imap_tagged(s, "NO", "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
    return false;
}

static bool needs_content(const struct imap_command *c)
{
    if (c->name == IMAP_CMD_THREAD) return true;
    for (size_t i = 0; i < c->nsort; i++)
        if (c->sort[i].key != IMAP_SORT_ARRIVAL && c->sort[i].key != IMAP_SORT_SIZE) return true;
    return false;
}

static void sort_job(struct imap_session *s)
{
    const struct imap_command *c = &s->cmd;
    bool thread = c->name == IMAP_CMD_THREAD;
    if (!thread && c->search.has_return) {
        imap_tagged(s, "BAD", "SORT RETURN (ESORT) is not supported");
        return;
    }
    for (size_t i = 0; i < c->nsort; i++) {
        if (c->sort[i].key == IMAP_SORT_DISPLAYFROM || c->sort[i].key == IMAP_SORT_DISPLAYTO) {
            imap_tagged(s, "BAD", "SORT=DISPLAY is not supported");
            return;
        }
    }
    if (thread && c->thread == IMAP_THREAD_REFS) {
        imap_tagged(s, "BAD", "THREAD=REFS is not supported");
        return;
    }
    if (s->rev2 && imap_search_uses_recent(c->search.root)) {
        imap_tagged(s, "BAD", "No RECENT, NEW or OLD in IMAP4rev2");
        return;
    }
    if (!charset_ok(s)) return;
    imap_sync(s, c->uid);
    size_t n = 0;
    size_t *idx = imap_search_indices(s, c->search.root, &n);
    struct imap_sort_msg *msgs = xcalloc(n ? n : 1, sizeof *msgs);
    struct sort_data *data = xcalloc(n ? n : 1, sizeof *data);
    sbuf buf = SBUF_INIT;
    bool content = needs_content(c);
    for (size_t k = 0; k < n; k++) fill(s, idx[k], content, &msgs[k], &data[k], &buf);
    sbuf_free(&buf);
    free(idx);
    if (thread) {
        sbuf list = SBUF_INIT;
        if (c->thread == IMAP_THREAD_ORDEREDSUBJECT) imap_thread_orderedsubject(msgs, n, &list);
        else imap_thread_references(msgs, n, &list);
        imap_send(s, "* THREAD%s%s\r\n", list.len ? " " : "", list.len ? list.data : "");
        sbuf_free(&list);
    } else {
        imap_sort(msgs, n, c->sort, c->nsort);
        imap_send(s, "* SORT");
        for (size_t k = 0; k < n; k++) imap_send(s, " %u", msgs[k].num);
        imap_send(s, "\r\n");
    }
    for (size_t k = 0; k < n; k++) sort_data_free(&data[k]);
    free(data);
    free(msgs);
    imap_tagged(s, "OK", "%s completed", thread ? "THREAD" : "SORT");
}

void imap_cmd_sort(struct imap_session *s)
{
    imap_run_job(s, sort_job);
}
