#include "smtp/smtp_delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "queue/queue.h"
#include "store/store.h"

/* Relative to the data directory (the daemon's working directory). */
#define MAIL_ROOT "mail"
#define QUEUE_DIR "queue"

const char *smtp_protocol_name(bool esmtp, bool tls, bool auth, bool smtputf8)
{
    if (!esmtp) return "SMTP";
    static const char *const names[2][2][2] = {
        { { "ESMTP", "ESMTPA" }, { "ESMTPS", "ESMTPSA" } },
        { { "UTF8SMTP", "UTF8SMTPA" }, { "UTF8SMTPS", "UTF8SMTPSA" } },
    };
    return names[smtputf8][tls][auth];
}

/* HELO text goes into a header: only visible ASCII outside of the comment
 * delimiters survives, anything else becomes '_'. */
static void put_helo(sbuf *out, const char *helo)
{
    for (const char *p = helo; *p; p++) {
        unsigned char c = (unsigned char)*p;
        sbuf_putc(out, (c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\') ? (char)c : '_');
    }
}

void smtp_received_header(sbuf *out, const struct smtp_delivery *d, const char *for_rcpt)
{
    char date[64];
    rfc5322_date(d->arrival, date);
    const char *ip = d->client_ip;
    bool v6 = strchr(ip, ':') != NULL;
    sbuf_puts(out, "Received: from ");
    if (d->local) {
        sbuf_printf(out, "local (uid %lu)\r\n", d->local_uid);
    } else {
        put_helo(out, d->helo && *d->helo ? d->helo : "unknown");
        sbuf_printf(out, " ([%s%s])\r\n", v6 ? "IPv6:" : "", ip);
    }
    if (d->tls_desc) sbuf_printf(out, "\t(using %s)\r\n", d->tls_desc);
    sbuf_printf(out, "\tby %s (pochta) with %s id %s", d->hostname, d->protocol, d->qid);
    if (for_rcpt) sbuf_printf(out, "\r\n\tfor <%s>", for_rcpt);
    sbuf_printf(out, ";\r\n\t%s\r\n", date);
}

/* ---- quota ---- */

int smtp_quota_usage(const char *address, uint64_t *bytes)
{
    char err[256] = "";
    store_user *u = store_user_open(MAIL_ROOT, address, true, err, sizeof err);
    int rc = -1;
    if (u) {
        rc = store_quota_usage(u, bytes, NULL, err, sizeof err) == 0 ? 0 : -1;
        store_user_close(u);
    }
    if (rc < 0) {
        char safe[600];
        log_warn("quota usage of <%s> unknown: %s",
                 log_safe(address, strlen(address), safe, sizeof safe), err);
    }
    return rc;
}

/* Would `size` more bytes push `address` over its storage quota?  A quota
 * that cannot be read does not hold mail back (logged): the limit is a
 * policy, losing or deferring mail for a lookup failure is worse. */
static bool over_quota(const char *address, uint64_t size, uint64_t *limit, uint64_t *used)
{
    accounts *a = accounts_thread_handle();
    *limit = 0;
    *used = 0;
    if (!a || accounts_user_quota_get(a, address, limit) != 1 || *limit == 0) return false;
    if (smtp_quota_usage(address, used) < 0) return false;
    return *used + size > *limit;
}

/* ---- delivery ---- */

struct local_target {
    const char *address;
    const char *for_rcpt;
};

/* 0 stored, 1 refused for quota (nothing stored), -1 temporary failure. */
static int deliver_local(struct smtp_delivery *d, const struct local_target *t)
{
    sbuf prefix = SBUF_INIT;
    sbuf_printf(&prefix, "Return-Path: <%s>\r\n", d->mail_from);
    smtp_received_header(&prefix, d, t->for_rcpt);

    char safe[600], osafe[600];
    log_safe(t->address, strlen(t->address), safe, sizeof safe);
    log_safe(t->for_rcpt, strlen(t->for_rcpt), osafe, sizeof osafe);
    uint64_t size = prefix.len + d->spool_len, limit, used;
    if (over_quota(t->address, size, &limit, &used)) {
        log_warn("queue=%s to=<%s> orig_to=<%s> status=refused: over quota "
                 "(used=%llu size=%llu quota=%llu)", d->qid, safe, osafe,
                 (unsigned long long)used, (unsigned long long)size, (unsigned long long)limit);
        sbuf_free(&prefix);
        return 1;
    }

    char err[256] = "";
    uint32_t uid = 0;
    int rc = -1;
    store_user *u = store_user_open(MAIL_ROOT, t->address, true, err, sizeof err);
    if (u) {
        rc = store_deliver(u, "INBOX", prefix.data, prefix.len, d->spool_fd, d->spool_len,
                           d->arrival, 0, &uid, err, sizeof err);
        store_user_close(u);
    }
    if (rc == 0) {
        log_info("queue=%s to=<%s> orig_to=<%s> status=delivered mailbox=INBOX uid=%u size=%llu",
                 d->qid, safe, osafe, uid, (unsigned long long)(prefix.len + d->spool_len));
    } else {
        log_error("queue=%s to=<%s> status=deferred: %s", d->qid, safe, err);
        snprintf(d->err, sizeof d->err, "local delivery failed");
    }
    sbuf_free(&prefix);
    return rc;
}

static int enqueue_remote(struct smtp_delivery *d, const struct queue_rcpt *qr, size_t n)
{
    sbuf prefix = SBUF_INIT;
    smtp_received_header(&prefix, d, n == 1 ? qr[0].address : NULL);
    struct queue_envelope env = {
        .qid = d->qid, .mail_from = d->mail_from, .envid = d->envid, .ret = d->ret,
        .body = d->body, .smtputf8 = d->smtputf8, .auth_user = d->auth_user,
        .client_ip = d->client_ip, .helo = d->helo, .rcpts = qr, .nrcpts = n,
    };
    char err[256] = "";
    int rc = queue_enqueue(QUEUE_DIR, &env, prefix.data, prefix.len, d->spool_fd, d->spool_len,
                           err, sizeof err);
    sbuf_free(&prefix);
    for (size_t i = 0; i < n; i++) {
        char safe[600];
        log_safe(qr[i].address, strlen(qr[i].address), safe, sizeof safe);
        if (rc == 0) log_info("queue=%s to=<%s> status=queued for outbound delivery", d->qid, safe);
    }
    if (rc < 0) {
        log_error("queue=%s status=deferred: enqueue failed: %s", d->qid, err);
        snprintf(d->err, sizeof d->err, "queue write failed");
    }
    return rc;
}

void smtp_delivery_run(struct smtp_delivery *d)
{
    size_t total = 0;
    for (size_t i = 0; i < d->nrcpts; i++) total += d->rcpts[i].ndests;
    struct local_target *local = xcalloc(total, sizeof *local);
    struct queue_rcpt *remote = xcalloc(total, sizeof *remote);
    size_t nlocal = 0, nremote = 0;

    /* Alias expansion can send several recipients to one mailbox: one copy
     * each, like Postfix's duplicate filter. */
    for (size_t i = 0; i < d->nrcpts; i++) {
        const struct smtp_delivery_rcpt *r = &d->rcpts[i];
        for (size_t j = 0; j < r->ndests; j++) {
            const struct account_dest *dest = &r->dests[j];
            bool dup = false;
            if (dest->local) {
                for (size_t k = 0; k < nlocal && !dup; k++)
                    dup = strcmp(local[k].address, dest->address) == 0;
                if (!dup) local[nlocal++] = (struct local_target){ dest->address, r->address };
            } else {
                for (size_t k = 0; k < nremote && !dup; k++)
                    dup = strcmp(remote[k].address, dest->address) == 0;
                if (!dup) remote[nremote++] = (struct queue_rcpt){ dest->address, r->notify, r->orcpt };
            }
        }
    }

    d->status = 0;
    for (size_t i = 0; i < nlocal; i++) {
        int rc = deliver_local(d, &local[i]);
        if (rc == 0) d->delivered++;
        else if (rc > 0) d->over_quota++;
        else d->status = -1;
    }
    if (nremote > 0) {
        if (enqueue_remote(d, remote, nremote) == 0) d->queued = (unsigned)nremote;
        else d->status = -1;
    }
    free(local);
    free(remote);
}
