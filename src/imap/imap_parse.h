/* IMAP command parser: IMAP4rev1 (RFC 3501), IMAP4rev2 (RFC 9051) and the
 * extensions LITERAL+/LITERAL- (7888), BINARY (3516), SASL-IR (4959),
 * ENABLE (5161), CONDSTORE/QRESYNC (7162), CREATE-SPECIAL-USE (6154),
 * LIST-EXTENDED (5258), LIST-STATUS (5819), STATUS=SIZE (8438),
 * APPENDLIMIT (7889), MULTIAPPEND (3502), UTF8=ACCEPT (6855), ESEARCH
 * (4731), SEARCHRES (5182), WITHIN (5032), SORT/THREAD (5256), ESORT
 * (5267), ID (2971), QUOTA (9208), ACL (4314), MOVE (6851), UIDPLUS (4315),
 * UNSELECT (3691), IDLE (2177).
 *
 * Two pure steps, no I/O, no globals:
 *
 *  1. imap_cmd_scan() finds where one command ends in the bytes received
 *     so far (a CRLF that is not inside a literal) and stops at every
 *     literal announcement, so the session can check the size and, for a
 *     synchronizing literal, send "+ ..." before the client sends the data.
 *     Its state is resumable: each call only looks at bytes it has not seen,
 *     and literal data is skipped in O(1), so a 10 MB literal arriving in
 *     4 KB pieces costs O(pieces), not O(pieces * size).
 *     The message literals of APPEND (the one place where big literals are
 *     legitimate) are "diverted": the scanner tells the session to take
 *     their data out of the stream (into a spool file) instead of the
 *     command buffer, so what a command holds in memory is bounded by
 *     limits.command_max whatever its messages weigh.
 *
 *  2. imap_parse_command() parses one complete command (as delimited by the
 *     scanner, with the diverted literals named by the caller) into struct
 *     imap_command.  Everything it builds lives in an
 *     imap_arena bounded by a byte limit; strings that need no decoding
 *     (atoms, literals, quoted strings without escapes) point into the
 *     caller's buffer.  So the result is valid while BOTH the buffer and the
 *     arena are untouched.  Nesting is bounded by limits.depth_max and the
 *     work by limits.tokens_max, so hostile input cannot exhaust the stack
 *     or memory.
 *
 * The parser knows the grammar, not the session: it accepts every command
 * it understands in any state; whether e.g. FETCH is allowed before SELECT,
 * or {N+} when LITERAL+ was not advertised, is the session's decision. */
#ifndef POCHTA_IMAP_IMAP_PARSE_H
#define POCHTA_IMAP_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/sbuf.h"

/* RFC 7888 section 5: a LITERAL- non-synchronizing literal is at most
 * 4096 octets.  The scanner reports the kind; the session enforces this. */
#define IMAP_LITERAL_MINUS_MAX 4096

/* ------------------------------------------------------------------ */
/* Limits: every input a peer controls has a named bound. */

struct imap_limits {
    size_t line_max;        /* command text outside literal data, all lines */
    uint64_t literal_max;   /* one literal's size */
    uint64_t command_max;   /* the command in memory: text and the data of
                             * literals not diverted (see lit_divert) */
    uint64_t spool_min;     /* APPEND messages this big or more are diverted
                             * (smaller ones too once command_max is short) */
    unsigned literals_max;  /* literals in one command (MULTIAPPEND) */
    unsigned depth_max;     /* nesting of (...) / NOT / OR in SEARCH */
    unsigned tokens_max;    /* parse steps (tokens) in one command */
    size_t arena_max;       /* bytes imap_arena_init() should allow */
    size_t mailbox_max;     /* mailbox name, bytes after decoding */
};

/* line 64 KiB, literal 64 MiB, command 1 MiB, spool from 64 KiB, 1000
 * literals, depth 32, 50000 tokens, arena 4 MiB, mailbox name 1024 bytes. */
void imap_limits_default(struct imap_limits *lim);

/* ------------------------------------------------------------------ */
/* Scanning: where does the command end? */

enum imap_scan_status {
    IMAP_SCAN_MORE,     /* all bytes seen, command incomplete: read more */
    IMAP_SCAN_LITERAL,  /* a literal was announced: see lit_* fields */
    IMAP_SCAN_DONE,     /* a command ends at buf[end - 1] (its LF) */
    IMAP_SCAN_ERROR,    /* limit exceeded: see error */
};

enum imap_literal_kind {
    IMAP_LIT_SYNC,      /* {N}: server must send "+ ..." first */
    IMAP_LIT_PLUS,      /* {N+}: LITERAL+ (RFC 7888) */
    IMAP_LIT_MINUS,     /* {N-}: LITERAL- (RFC 7888), N <= 4096 allowed */
};

enum imap_scan_error {
    IMAP_SCAN_ERR_NONE,
    IMAP_SCAN_ERR_LINE,       /* text exceeds line_max: the end is unknown */
    IMAP_SCAN_ERR_LITERAL,    /* literal exceeds literal_max, or has too many
                               * digits: lit_* and end set */
    IMAP_SCAN_ERR_LITERALS,   /* more than literals_max literals: lit_*, end set */
    IMAP_SCAN_ERR_COMMAND,    /* a literal that is not diverted would take the
                               * command in memory over command_max: lit_*,
                               * end set; imap_scan_discard() may follow */
};

/* Caller-owned scanner state; zero it with imap_scan_init() before the
 * first byte of each command. */
struct imap_scan {
    /* After IMAP_SCAN_LITERAL (and after IMAP_SCAN_ERR_LITERAL/LITERALS):
     * the latest announcement.  lit_offset is where its data starts, i.e.
     * just after the CRLF that ends the announcing line. */
    uint64_t lit_size;
    enum imap_literal_kind lit_kind;
    bool lit_binary;              /* ~{N}: literal8 (RFC 3516) */
    size_t lit_offset;
    unsigned literals;            /* announcements so far */
    /* The literal is a message of APPEND (not its mailbox name). */
    bool lit_append;
    /* The data must not come into buf: the caller takes the lit_size bytes
     * that follow the announcement out of its stream (stores or drops
     * them), so that on the next call buf[lit_offset..] is the text after
     * the data.  Set for an APPEND message of spool_min bytes or more (or
     * one that would overflow command_max), and for every literal once
     * imap_scan_discard() was called. */
    bool lit_divert;

    /* After IMAP_SCAN_DONE: the command is buf[0..end).  After a literal
     * error: end == lit_offset, so for a rejected synchronizing literal the
     * session answers (NO/BAD [TOOBIG]), drops buf[0..end) and scans on:
     * RFC 9051 7.5 the client then does not send the data.  A rejected
     * non-synchronizing literal is on its way regardless (RFC 7888 4): the
     * session must skip lit_size bytes or close the connection. */
    size_t end;
    enum imap_scan_error error;
    const char *error_text;       /* static */

    /* Private resumable state. */
    size_t pos;                   /* next byte to look at */
    size_t seg_start;             /* first byte after the last literal data */
    size_t text_bytes;            /* bytes outside literal data */
    uint64_t lit_left;            /* literal data still to skip */
    uint64_t total;               /* bytes of the command in buf so far */
    int state;
    bool append;                  /* the command is APPEND */
    bool discard;                 /* imap_scan_discard() was called */
};

void imap_scan_init(struct imap_scan *s);

/* Give up the current command but stay in step with the stream: after
 * IMAP_SCAN_LITERAL (any literal), or after IMAP_SCAN_ERROR with
 * IMAP_SCAN_ERR_COMMAND for a non-synchronizing literal (whose data is on
 * its way regardless, RFC 7888 4), the current literal and every later
 * literal of the command are reported with lit_divert set, so the caller
 * drops their data, and command_max no longer applies (line_max,
 * literal_max and literals_max still do).  The caller goes on calling
 * imap_cmd_scan() until IMAP_SCAN_DONE and then refuses the command. */
void imap_scan_discard(struct imap_scan *s);

/* Scan buf[0..len): the bytes of the current command received so far.  Each
 * call must pass the same bytes as the previous one plus possibly more
 * (len never shrinks), except that a diverted literal's data is left out
 * (see lit_divert).  Returns an enum imap_scan_status.  After
 * IMAP_SCAN_LITERAL the session checks lit_size, sends "+ ..." when
 * lit_kind == IMAP_LIT_SYNC, and calls again (with the same or more bytes).
 * After IMAP_SCAN_DONE or IMAP_SCAN_ERROR, imap_scan_init() before reuse.
 * A line may end in CRLF or a bare LF. */
int imap_cmd_scan(const char *buf, size_t len, const struct imap_limits *lim, struct imap_scan *s);

/* Length of the tag at the start of buf[0..len), or 0 when there is no
 * valid tag followed by SP.  For answering a command the scanner refused. */
size_t imap_tag_len(const char *buf, size_t len);

/* RFC 2177: is this line (with or without CRLF) the "DONE" that ends IDLE?
 * Case-insensitive, nothing else on the line. */
bool imap_is_done(const char *line, size_t len);

/* ------------------------------------------------------------------ */
/* Arena: all memory of one parsed command. */

struct imap_arena_chunk;
struct imap_arena {
    struct imap_arena_chunk *head;
    size_t used;                  /* bytes handed out since the last reset */
    size_t max;
};

/* No memory is taken until the first allocation; chunks grow as needed
 * (an idle session holds at most one small chunk). */
void imap_arena_init(struct imap_arena *a, size_t max);
/* Forget everything allocated (pointers into it die); keeps one chunk. */
void imap_arena_reset(struct imap_arena *a);
void imap_arena_free(struct imap_arena *a);
/* 16-aligned, zeroed; NULL when `max` would be exceeded (never on OOM,
 * which aborts). */
void *imap_arena_alloc(struct imap_arena *a, size_t n);

/* ------------------------------------------------------------------ */
/* Values. */

/* Bytes, not NUL-terminated, pointing into the command buffer or the arena.
 * data == NULL means NIL where the grammar allows nstring. */
struct imap_str {
    const char *data;
    size_t len;
};

struct imap_strlist {
    struct imap_str *v;
    size_t n;
};

/* "*" in a sequence set: resolved against the mailbox's largest number. */
#define IMAP_SEQ_STAR 0u

/* One range as the client wrote it: lo and hi are 1..2^32-1 or
 * IMAP_SEQ_STAR, in either order ("4:2" == "2:4"). */
struct imap_range {
    uint32_t lo, hi;
};

/* A sequence set, kept as ranges: "1:4294967295" is one range, never an
 * expansion.  saved: the set was "$" (RFC 5182), n == 0; the session
 * substitutes the saved search result. */
struct imap_seqset {
    bool saved;
    size_t n;
    struct imap_range *r;
};

/* Is x in the set when the largest existing number is max?  "*" stands for
 * max and only 1..max exist (RFC 9051 9: "n:*" with n > max means max:n,
 * which still includes max).  False for a saved set and for max == 0. */
bool imap_seqset_contains(const struct imap_seqset *s, uint32_t x, uint32_t max);

/* contains() walks every range: for testing many numbers, normalize once
 * and use imap_ranges_contains() (binary search). */

/* Resolve "*" against max, clip to 1..max, sort and merge into out, which
 * must hold s->n entries (caller's memory).  Returns how many ranges were
 * written (lo <= hi, ascending, disjoint, not adjacent).  0 for saved. */
size_t imap_seqset_normalize(const struct imap_seqset *s, uint32_t max, struct imap_range *out);

/* Is x in normalized ranges r[0..n)?  O(log n). */
bool imap_ranges_contains(const struct imap_range *r, size_t n, uint32_t x);

/* Ascending iteration over normalized ranges, one number at a time. */
struct imap_seqiter {
    const struct imap_range *r;
    size_t n, i;
    uint64_t next;
};
void imap_seqiter_init(struct imap_seqiter *it, const struct imap_range *r, size_t n);
bool imap_seqiter_next(struct imap_seqiter *it, uint32_t *out);

/* Append the set as IMAP text ("1:3,5,7:*", "$"). */
void imap_seqset_format(const struct imap_seqset *s, sbuf *out);

/* RFC 9051 date ("1-Feb-1994"; day 1 or 2 digits, month case-insensitive)
 * to the time_t of that day's 00:00:00 UTC.  Returns 0 or -1. */
int imap_parse_date(const char *s, size_t len, time_t *out);
/* RFC 9051 date-time without the DQUOTEs: "dd-MMM-yyyy hh:mm:ss +zzzz"
 * (day may be " d").  *out is the UTC instant, *zone_min the offset in
 * minutes east of UTC.  Returns 0 or -1 (also for impossible dates). */
int imap_parse_datetime(const char *s, size_t len, time_t *out, int *zone_min);

/* ------------------------------------------------------------------ */
/* Commands. */

enum imap_cmd_name {
    IMAP_CMD_UNKNOWN,
    IMAP_CMD_CAPABILITY, IMAP_CMD_NOOP, IMAP_CMD_LOGOUT, IMAP_CMD_STARTTLS,
    IMAP_CMD_AUTHENTICATE, IMAP_CMD_LOGIN, IMAP_CMD_ENABLE,
    IMAP_CMD_SELECT, IMAP_CMD_EXAMINE, IMAP_CMD_CREATE, IMAP_CMD_DELETE,
    IMAP_CMD_RENAME, IMAP_CMD_SUBSCRIBE, IMAP_CMD_UNSUBSCRIBE, IMAP_CMD_LIST,
    IMAP_CMD_LSUB, IMAP_CMD_NAMESPACE, IMAP_CMD_STATUS, IMAP_CMD_APPEND,
    IMAP_CMD_IDLE, IMAP_CMD_CHECK, IMAP_CMD_CLOSE, IMAP_CMD_UNSELECT,
    IMAP_CMD_EXPUNGE, IMAP_CMD_SEARCH, IMAP_CMD_FETCH, IMAP_CMD_STORE,
    IMAP_CMD_COPY, IMAP_CMD_MOVE, IMAP_CMD_SORT, IMAP_CMD_THREAD, IMAP_CMD_ID,
    IMAP_CMD_GETQUOTA, IMAP_CMD_GETQUOTAROOT, IMAP_CMD_SETQUOTA,
    IMAP_CMD_GETACL, IMAP_CMD_SETACL, IMAP_CMD_DELETEACL, IMAP_CMD_LISTRIGHTS,
    IMAP_CMD_MYRIGHTS,
    IMAP_CMD_COUNT_
};

/* Name for logs ("FETCH"); "UNKNOWN" for IMAP_CMD_UNKNOWN. */
const char *imap_cmd_name_str(enum imap_cmd_name n);

/* STATUS attributes (also LIST RETURN (STATUS (...))). */
#define IMAP_STATUS_MESSAGES      (1u << 0)
#define IMAP_STATUS_UIDNEXT       (1u << 1)
#define IMAP_STATUS_UIDVALIDITY   (1u << 2)
#define IMAP_STATUS_UNSEEN        (1u << 3)
#define IMAP_STATUS_DELETED       (1u << 4)
#define IMAP_STATUS_SIZE          (1u << 5)
#define IMAP_STATUS_RECENT        (1u << 6)
#define IMAP_STATUS_HIGHESTMODSEQ (1u << 7)
#define IMAP_STATUS_APPENDLIMIT   (1u << 8)

/* LIST selection options (RFC 5258 3.1, RFC 6154 5.4). */
#define IMAP_LISTSEL_SUBSCRIBED     (1u << 0)
#define IMAP_LISTSEL_REMOTE         (1u << 1)
#define IMAP_LISTSEL_RECURSIVEMATCH (1u << 2)
#define IMAP_LISTSEL_SPECIAL_USE    (1u << 3)
/* LIST return options (RFC 5258 3.2, RFC 6154, RFC 5819). */
#define IMAP_LISTRET_SUBSCRIBED  (1u << 0)
#define IMAP_LISTRET_CHILDREN    (1u << 1)
#define IMAP_LISTRET_SPECIAL_USE (1u << 2)
#define IMAP_LISTRET_STATUS      (1u << 3)

/* SEARCH/SORT RETURN options (RFC 4731, RFC 5182, RFC 5267). */
#define IMAP_SEARCHRET_MIN   (1u << 0)
#define IMAP_SEARCHRET_MAX   (1u << 1)
#define IMAP_SEARCHRET_ALL   (1u << 2)
#define IMAP_SEARCHRET_COUNT (1u << 3)
#define IMAP_SEARCHRET_SAVE  (1u << 4)

enum imap_search_key {
    IMAP_SK_AND,        /* children: all must match; "(...)" and top level */
    IMAP_SK_OR,         /* children: exactly two */
    IMAP_SK_NOT,        /* children: exactly one */
    IMAP_SK_ALL, IMAP_SK_ANSWERED, IMAP_SK_DELETED, IMAP_SK_DRAFT,
    IMAP_SK_FLAGGED, IMAP_SK_NEW, IMAP_SK_OLD, IMAP_SK_RECENT, IMAP_SK_SEEN,
    IMAP_SK_UNANSWERED, IMAP_SK_UNDELETED, IMAP_SK_UNDRAFT,
    IMAP_SK_UNFLAGGED, IMAP_SK_UNSEEN,
    IMAP_SK_KEYWORD, IMAP_SK_UNKEYWORD,         /* str: the flag */
    IMAP_SK_BCC, IMAP_SK_BODY, IMAP_SK_CC, IMAP_SK_FROM, IMAP_SK_SUBJECT,
    IMAP_SK_TEXT, IMAP_SK_TO,                   /* str */
    IMAP_SK_HEADER,                             /* field, str */
    IMAP_SK_BEFORE, IMAP_SK_ON, IMAP_SK_SINCE,  /* date: internal date */
    IMAP_SK_SENTBEFORE, IMAP_SK_SENTON, IMAP_SK_SENTSINCE, /* date */
    IMAP_SK_LARGER, IMAP_SK_SMALLER,            /* num */
    IMAP_SK_OLDER, IMAP_SK_YOUNGER,             /* num: seconds (RFC 5032) */
    IMAP_SK_UID,                                /* set */
    IMAP_SK_SEQSET,                             /* set */
    IMAP_SK_MODSEQ,                             /* num; field/entry_type opt. */
};

enum imap_entry_type { IMAP_ENTRY_NONE, IMAP_ENTRY_PRIV, IMAP_ENTRY_SHARED, IMAP_ENTRY_ALL };

/* A search tree node.  Children are a singly linked list. */
struct imap_search {
    enum imap_search_key key;
    struct imap_str str;
    struct imap_str field;        /* HEADER field name; MODSEQ entry name */
    enum imap_entry_type entry_type;
    time_t date;                  /* 00:00 UTC of the given day */
    uint64_t num;
    struct imap_seqset set;
    struct imap_search *child;
    struct imap_search *next;
};

struct imap_search_args {
    bool has_return;              /* RETURN (...) given, even if empty */
    unsigned ret;                 /* IMAP_SEARCHRET_* */
    bool has_charset;
    struct imap_str charset;
    struct imap_search *root;     /* an IMAP_SK_AND node */
};

enum imap_fetch_att_type {
    IMAP_FA_FLAGS, IMAP_FA_INTERNALDATE, IMAP_FA_RFC822_SIZE,
    IMAP_FA_ENVELOPE, IMAP_FA_BODY, IMAP_FA_BODYSTRUCTURE, IMAP_FA_UID,
    IMAP_FA_MODSEQ, IMAP_FA_RFC822, IMAP_FA_RFC822_HEADER,
    IMAP_FA_RFC822_TEXT,
    IMAP_FA_BODY_SECTION,         /* BODY[...] / BODY.PEEK[...] */
    IMAP_FA_BINARY,               /* BINARY[...] / BINARY.PEEK[...] */
    IMAP_FA_BINARY_SIZE,
};

enum imap_section_text {
    IMAP_SECT_NONE,               /* whole part (BODY[] or BODY[1.2]) */
    IMAP_SECT_HEADER, IMAP_SECT_HEADER_FIELDS, IMAP_SECT_HEADER_FIELDS_NOT,
    IMAP_SECT_TEXT, IMAP_SECT_MIME,
};

struct imap_fetch_att {
    enum imap_fetch_att_type type;
    bool peek;
    /* section: part numbers 1.2.3 then text */
    uint32_t *parts;
    size_t nparts;
    enum imap_section_text text;
    struct imap_strlist fields;   /* HEADER.FIELDS[.NOT] */
    bool partial;                 /* <origin.count> */
    uint64_t origin, count;
    struct imap_fetch_att *next;
};

enum imap_fetch_macro { IMAP_FETCH_NOMACRO, IMAP_FETCH_ALL, IMAP_FETCH_FAST, IMAP_FETCH_FULL };

enum imap_store_op { IMAP_STORE_SET, IMAP_STORE_ADD, IMAP_STORE_REMOVE };

enum imap_sort_key {
    IMAP_SORT_ARRIVAL, IMAP_SORT_CC, IMAP_SORT_DATE, IMAP_SORT_FROM,
    IMAP_SORT_SIZE, IMAP_SORT_SUBJECT, IMAP_SORT_TO,
    IMAP_SORT_DISPLAYFROM, IMAP_SORT_DISPLAYTO,   /* RFC 5957 */
};

struct imap_sort_crit {
    enum imap_sort_key key;
    bool reverse;
};

enum imap_thread_alg { IMAP_THREAD_ORDEREDSUBJECT, IMAP_THREAD_REFERENCES, IMAP_THREAD_REFS };

/* A literal whose data the scanner diverted (lit_divert): not in the
 * command buffer but wherever the caller put it. */
struct imap_extlit {
    size_t offset;                /* the scanner's lit_offset: where the data
                                   * would have begun in the command */
    uint64_t size;                /* lit_size */
    bool nul;                     /* the data holds a NUL octet (the caller
                                   * looked while storing it) */
    uint64_t where;               /* the caller's (e.g. the offset in its spool
                                   * file); the parser does not look at it */
};

/* One message of APPEND (several with MULTIAPPEND). */
struct imap_append_msg {
    bool has_flags;
    struct imap_strlist flags;
    bool has_date;
    time_t date;
    int zone_min;
    struct imap_str data;         /* points into the command buffer; for a
                                   * diverted literal data.data is NULL and
                                   * data.len its size */
    const struct imap_extlit *ext; /* diverted: the caller's entry, else NULL */
    bool binary;                  /* sent as literal8 ~{N} */
    bool utf8;                    /* RFC 6855 "UTF8 (~{N})" */
};

struct imap_quota_res {
    struct imap_str name;         /* e.g. STORAGE */
    uint64_t limit;
};

/* A parsed command.  Only the fields of cmd->name are set; the rest are
 * zero.  Mailbox names are NUL-terminated UTF-8 in the arena: modified
 * UTF-7 was decoded (unless IMAP_PARSE_UTF8), "INBOX" in any case became
 * "INBOX", and control characters were refused. */
struct imap_command {
    const char *tag;              /* NUL-terminated, arena; NULL if invalid */
    enum imap_cmd_name name;
    bool uid;                     /* "UID" prefix */

    const char *mailbox;          /* most mailbox commands; LIST/LSUB reference
                                   * (decoded, not INBOX-folded) */
    const char *mailbox2;         /* RENAME new name; COPY/MOVE destination */

    struct imap_str str1, str2;   /* AUTHENTICATE mech + initial response
                                   * (has_ir; "=" gives len 0); LOGIN user +
                                   * password; GETQUOTA/SETQUOTA quota root;
                                   * SETACL/DELETEACL/LISTRIGHTS identifier +
                                   * SETACL rights */
    bool has_ir;

    struct imap_strlist list;     /* ENABLE capabilities; CREATE USE flags;
                                   * ID fields/values interleaved (value NIL:
                                   * data NULL); STORE flags; LIST patterns
                                   * (decoded, NUL-terminated) */
    bool id_nil;                  /* "ID NIL" */

    /* SELECT/EXAMINE (RFC 7162) */
    bool condstore;
    bool qresync;
    uint32_t qr_uidvalidity;
    uint64_t qr_modseq;
    bool qr_has_known_uids, qr_has_seq_match;
    struct imap_seqset qr_known_uids, qr_known_seqs, qr_known_seq_uids;

    unsigned status_atts;         /* STATUS; LIST RETURN (STATUS (...)) */
    unsigned list_select;         /* IMAP_LISTSEL_* */
    unsigned list_return;         /* IMAP_LISTRET_* */
    bool list_extended;           /* selection options or patterns list or RETURN */

    struct imap_append_msg *msgs; /* APPEND */
    size_t nmsgs;

    struct imap_seqset set;       /* FETCH STORE COPY MOVE, UID EXPUNGE */
    bool has_set;                 /* UID EXPUNGE */

    struct imap_search_args search; /* SEARCH SORT THREAD */
    struct imap_sort_crit *sort;
    size_t nsort;
    enum imap_thread_alg thread;

    enum imap_fetch_macro fetch_macro;
    struct imap_fetch_att *fetch; /* macros are expanded here too */
    bool has_changedsince;
    uint64_t changedsince;
    bool vanished;

    enum imap_store_op store_op;
    bool store_silent;
    bool has_unchangedsince;
    uint64_t unchangedsince;

    struct imap_quota_res *quota; /* SETQUOTA */
    size_t nquota;
};

/* Error reply for a refused command.  Strings are static. */
struct imap_err {
    bool tagged;                  /* "tag BAD text" (else "* BAD text") */
    const char *code;             /* response code without brackets, or NULL */
    const char *text;
    size_t pos;                   /* offset where parsing stopped (for logs) */
};

/* Flags for imap_parse_command. */
#define IMAP_PARSE_UTF8 1u        /* UTF8=ACCEPT or IMAP4rev2 enabled: mailbox
                                   * names are raw UTF-8, not modified UTF-7 */

/* Parse buf[0..len), one complete command as delimited by imap_cmd_scan()
 * with no diverted literal (which enforces line_max, command_max and
 * literals_max; this function
 * enforces literal_max, depth_max, tokens_max, mailbox_max and, through
 * the arena, arena_max).
 * It must end in its final CRLF or LF, nothing after.  Allocates from `a`
 * (which the caller resets between commands).  Returns 0 with *cmd filled,
 * or -1 with *err filled; cmd->tag and cmd->name are still set when they
 * were recognized, so the session can answer "tag BAD text".  An
 * unrecognized command is -1 with text "Unknown command". */
int imap_parse_command(const char *buf, size_t len, const struct imap_limits *lim, unsigned flags,
                       struct imap_arena *a, struct imap_command *cmd, struct imap_err *err);

/* The same for a command some of whose literals were diverted: ext[0..next)
 * (ascending offset, the caller's memory, valid as long as the result) name
 * them.  A diverted literal is allowed only where APPEND takes a message
 * (anywhere else the command is refused, as it is when a size disagrees);
 * its imap_append_msg.ext points to its entry, and the NUL rule for
 * non-literal8 data is applied to ext->nul. */
int imap_parse_command_ext(const char *buf, size_t len, const struct imap_extlit *ext, size_t next,
                           const struct imap_limits *lim, unsigned flags, struct imap_arena *a,
                           struct imap_command *cmd, struct imap_err *err);

#endif
