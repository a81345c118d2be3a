/* SEARCH evaluation (RFC 9051 6.4.4): does one message match a parsed
 * search tree (struct imap_search from imap_parse.h)?
 *
 * Pure over what it is given: the message's metadata, and its bytes when
 * a key needs them (header and body keys), fetched once through a
 * callback so messages that flag or size keys already reject are never
 * read.  Text comparisons are substring matches, case-insensitive over
 * ASCII, on header values decoded from RFC 2047 and on body text decoded
 * from its transfer encoding and charset (mime_text_extract). */
#ifndef POCHTA_IMAP_IMAP_SEARCH_H
#define POCHTA_IMAP_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/sbuf.h"
#include "imap/imap_parse.h"

struct mime_part;

/* The message bytes: return 0 with *data and *len (owned by the callback's
 * context, valid until imap_search_msg_done), or -1 if unreadable. */
typedef int (*imap_search_load_fn)(void *ctx, const char **data, size_t *len);

struct imap_search_msg {
    uint32_t seq, uid;
    uint32_t max_seq, max_uid;      /* for "*" in sets */
    unsigned flags;                 /* STORE_* */
    bool recent;
    const char *const *keywords;    /* names of the keywords set on it */
    size_t nkeywords;
    time_t internaldate;
    uint64_t size;
    uint64_t modseq;
    time_t now;                     /* for OLDER/YOUNGER */
    bool in_saved;                  /* in the saved result "$" (RFC 5182) */
    imap_search_load_fn load;
    /* Optional: the header block only (same context), for keys that need
     * no more; the whole message is loaded later if a key needs the body. */
    imap_search_load_fn load_header;
    void *load_ctx;

    /* private: what was derived from the bytes */
    bool loaded, load_failed;
    bool hdr_loaded;                /* data holds at least the header */
    const char *data;
    size_t len, hdr_len;
    struct mime_part *tree;
    bool text_done;
    sbuf text;
};

/* Returns 1 if the message matches root, 0 if not, -1 if a key needed the
 * content and it could not be loaded. */
int imap_search_match(const struct imap_search *root, struct imap_search_msg *m);
/* Free what matching derived (not the bytes: those are the loader's). */
void imap_search_msg_done(struct imap_search_msg *m);

/* Does the search need the message bytes at all? */
bool imap_search_needs_content(const struct imap_search *root);

/* Does the search use the MODSEQ key (RFC 7162 3.1.5)? */
bool imap_search_uses_modseq(const struct imap_search *root);

/* Does the search use RECENT, NEW or OLD (gone in IMAP4rev2, RFC 9051
 * Appendix E)? */
bool imap_search_uses_recent(const struct imap_search *root);

/* RFC 5322 date (Date: header) to 00:00 UTC of its calendar day, as
 * written (time of day and zone ignored, RFC 9051 SENTON).  -1 if bad. */
int imap_search_header_date(const char *v, size_t len, time_t *day);

#endif
