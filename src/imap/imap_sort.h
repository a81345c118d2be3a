/* SORT and THREAD (RFC 5256) over messages already selected by SEARCH:
 * base subject extraction, sent dates, the ordering, and the two threading
 * algorithms (ORDEREDSUBJECT, REFERENCES).  Pure functions over the
 * fields below; the session reads the messages and fills them in.
 *
 * Memory: strings in struct imap_sort_msg belong to the caller; results
 * are written to an sbuf the caller owns. */
#ifndef POCHTA_IMAP_IMAP_SORT_H
#define POCHTA_IMAP_IMAP_SORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/sbuf.h"
#include "imap/imap_parse.h"

struct imap_sort_msg {
    uint32_t num;               /* sequence number or uid, as answered */
    uint32_t seq;               /* tie-breaker (RFC 5256 3) */
    time_t arrival;             /* INTERNALDATE */
    time_t sent;                /* Date: in UTC, or arrival when unusable */
    uint64_t size;
    const char *from, *to, *cc; /* addr-mailbox of the first address, "" if none */
    const char *subject;        /* base subject (imap_base_subject) */
    bool reply;                 /* the subject said Re:/Fwd: */
    const char *message_id;     /* without <>, NULL if none */
    const char *const *refs;    /* References (or In-Reply-To), oldest first, without <> */
    size_t nrefs;
};

/* RFC 5256 2.1 base subject of a decoded (UTF-8) subject, heap string the
 * caller frees; *reply (may be NULL) says whether a Re:, Fw:, Fwd:,
 * "(fwd)" or "[fwd: ...]" was removed. */
char *imap_base_subject(const char *subject, bool *reply);

/* RFC 5322 date-time (obsolete forms, two-digit years, named zones) to
 * UTC.  Returns 0 or -1. */
int imap_parse_sent_date(const char *v, size_t len, time_t *out);

/* Message-ids ("<a@b>") in a header value, in order, as malloc'd strings
 * without the brackets appended to *ids (grown with xrealloc); *n counts. */
void imap_msgids(const char *v, size_t len, char ***ids, size_t *n);

/* Order msgs[0..n) by the criteria (RFC 5256 3, ties by seq). */
void imap_sort(struct imap_sort_msg *msgs, size_t n, const struct imap_sort_crit *crit, size_t ncrit);

/* Append the thread list ("(1 2)(3 (4)(5))") of msgs[0..n) to out; msgs
 * may be reordered. */
void imap_thread_orderedsubject(struct imap_sort_msg *msgs, size_t n, sbuf *out);
void imap_thread_references(struct imap_sort_msg *msgs, size_t n, sbuf *out);

#endif
