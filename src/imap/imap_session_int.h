/* Internals shared by the files of the IMAP session state machine:
 * imap_session.c (life cycle, input and literals, dispatch, commands of
 * any state, STARTTLS, IDLE), imap_session_auth.c (LOGIN, AUTHENTICATE),
 * imap_session_mbox.c (mailbox commands, APPEND, the selected mailbox's
 * view and its untagged updates), imap_session_msg.c (STORE, COPY, MOVE,
 * EXPUNGE, SEARCH, CLOSE), imap_fetch.c (FETCH) and imap_format.c
 * (response syntax).  Not for use outside src/imap.
 *
 * Threads: a command that needs the store runs as a job on the worker
 * pool (imap_run_job) while the connection is paused; the job may touch
 * every field of the session except the connection, and writes its whole
 * response into s->out, which the loop sends when the job is done. */
#ifndef POCHTA_IMAP_IMAP_SESSION_INT_H
#define POCHTA_IMAP_IMAP_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/mailbox_notify.h"
#include "core/sbuf.h"
#include "imap/imap_parse.h"
#include "imap/imap_server.h"
#include "mime/mime_parse.h"
#include "net/conn.h"
#include "store/store.h"

struct event;

/* RFC 9051 section 3 states. */
enum imap_state { IS_NOTAUTH, IS_AUTH, IS_SELECTED, IS_LOGOUT };

enum imap_phase {
    IP_COMMAND,         /* reading commands */
    IP_SASL,            /* waiting for an AUTHENTICATE response line */
    IP_IDLE,            /* IDLE: waiting for DONE */
    IP_BUSY,            /* a job or a delay holds the session */
    IP_CLOSED,          /* connection gone; freed once nothing holds it */
};

enum imap_sasl_step { ISASL_NONE, ISASL_PLAIN, ISASL_LOGIN_USER, ISASL_LOGIN_PASS };

/* One message of the selected mailbox as this session knows it. */
struct imap_msg {
    uint32_t uid;
    unsigned flags;             /* STORE_* */
    uint32_t keywords;          /* bit i = view keyword i */
    uint64_t modseq;
    time_t internaldate;
    uint64_t size;
    bool recent;
    bool expunged;              /* gone from the store, not yet reported */
};

/* The selected mailbox (RFC 9051 6.3.2). */
struct imap_view {
    char *name;
    bool readonly;              /* EXAMINE */
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t hms;               /* highest modseq seen */
    struct imap_msg *msgs;      /* ascending uid; index + 1 = sequence number */
    size_t n, cap;
    char **keywords;            /* the mailbox's keyword names by slot */
    size_t nkeywords;
    size_t nexpunged;           /* marked expunged, not yet reported */
    uint32_t *saved;            /* SEARCHRES (RFC 5182) "$": uids, ascending;
                                 * lives and dies with the selection */
    size_t nsaved;
};

struct imap_session;
typedef void (*imap_job_fn)(struct imap_session *s);

struct imap_session {
    struct imap_server *srv;
    bool implicit_tls;
    conn *c;
    char id[17];
    char ip[64];
    enum imap_state state;
    enum imap_phase phase;
    struct imap_session *next, *prev;
    bool greeted;
    bool quitting;
    unsigned errors;

    /* ENABLE (RFC 5161) */
    bool utf8;                  /* UTF8=ACCEPT: names and strings in UTF-8 */
    bool condstore;             /* RFC 7162 3.1: a CONDSTORE-enabling command
                                 * was seen: untagged FETCH carries MODSEQ */
    bool qresync;               /* RFC 7162 3.2: ENABLE QRESYNC: expunges are
                                 * reported as VANISHED */
    bool rev2;                  /* ENABLE IMAP4rev2 (RFC 9051): UTF-8 names,
                                 * no \Recent, SEARCH answered by ESEARCH */
    bool login_tls;             /* for the login log line (set on the loop) */

    char *login;                /* authenticated address, lower case */
    store_user *store;          /* only while a job runs (taken from the
                                 * store's cache for it, given back after);
                                 * NULL between commands and while idling */
    struct imap_view *sel;      /* NULL unless SELECTED */

    /* Input: the bytes of the current command (and any after it). */
    sbuf in;
    size_t in_off;              /* bytes of `in` already consumed */
    struct imap_scan scan;
    unsigned lit_acked;         /* synchronizing literals answered with "+" */
    const char *lit_refused;    /* static "NO/BAD [CODE] text": the command is
                                 * only read to the end (literal data dropped)
                                 * to be refused with this */
    uint64_t lit_skip;          /* data of a diverted literal (imap_scan's
                                 * lit_divert) still to take from the input */
    /* APPEND messages diverted by the scanner: written as they arrive to an
     * unnamed file under tmp/ (gone with its descriptor, whatever happens),
     * named to the parser by ext[] (ext[i].where: offset in the file). */
    int spool_fd;               /* -1 when none */
    uint64_t spool_len;
    struct imap_extlit *ext;
    size_t n_ext, ext_cap;
    struct imap_limits lim;
    struct imap_arena arena;
    struct imap_command cmd;    /* valid while `in` and `arena` are untouched */
    size_t cmd_len;             /* bytes of `in` the current command uses */
    char *tag_copy;             /* tag of a command whose bytes were dropped
                                 * (IDLE, AUTHENTICATE): used by the next
                                 * imap_tagged(), then freed */

    /* The running job. */
    imap_job_fn job;
    bool job_more;              /* the job wants to run again (big FETCH) */
    unsigned jobs;
    sbuf out;
    bool waiting_drain;
    bool close_after_job;       /* a job said BYE (mailbox vanished) */
    size_t fetch_pos;           /* FETCH: next index into the matched list */
    uint32_t *fetch_set;        /* FETCH: sequence numbers to send */
    size_t fetch_n;
    bool fetch_failed;          /* some message could not be read */
    bool fetch_gone;            /* some message was expunged meanwhile */
    bool fetch_unknown_cte;     /* BINARY of an encoding we cannot undo */

    /* AUTHENTICATE */
    enum imap_sasl_step sasl_step;
    char *sasl_user;

    /* IDLE: woken by the mailbox_notify bus; the timer is only the slow
     * safety poll for changes made by other processes. */
    struct event *idle_timer;
    bool idle_polling;
    struct mailbox_watch watch;   /* the selected mailbox (loop thread) */
    bool notified;              /* a change was signalled since the last look */
    bool poll_signalled;        /* the running IDLE poll was for a signal */
    bool have_stamp;            /* stamp: the selected mailbox owner's index */
    store_stamp stamp;          /* before the last job or IDLE poll read it;
                                 * a safety poll skips the store if same */

    /* ACL (imap_session_acl.c): a mailbox of another user is selected */
    char *sel_owner;            /* its owner's address, or NULL */
    unsigned sel_rights;        /* IMAP_RIGHT_* of this user there */
    store_user *sel_store;      /* the owner's store, only while a job runs */
    store_user *home_store;     /* s->store while a job runs on sel_store */
    bool acl_swap;              /* this command's jobs run on sel_store */
    bool acl_forced_readonly;   /* FETCH without the s right: no \Seen */
    char *acl_notify;           /* another user whose mailbox a job changed */
};

/* ---- imap_session.c ---- */

/* Append to s->out (jobs) or send at once (loop): imap_send() chooses. */
void imap_send(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "tag OK|NO|BAD text" for the current command. */
void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* BAD for a protocol error; too many close the connection. */
void imap_client_error(struct imap_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void imap_close(struct imap_session *s, const char *why);
/* Keep the tag, drop the command's bytes: the input then continues with
 * the lines IDLE and AUTHENTICATE wait for. */
void imap_hold_tag(struct imap_session *s);
/* The command was answered outside a job (a login check's callback):
 * drop its bytes and reset the parser for the next one. */
void imap_command_finished(struct imap_session *s);
bool imap_login_allowed(const struct imap_session *s);
/* Run fn on a worker with the connection paused; see above. */
void imap_run_job(struct imap_session *s, imap_job_fn fn);
/* Continue with the input after a job, a delay or TLS. */
void imap_resume(struct imap_session *s);
bool imap_session_reap(struct imap_session *s);
/* The capability list for the current state, without "* CAPABILITY ". */
void imap_capabilities(const struct imap_session *s, sbuf *out);
/* Store error text into a NO reply. */
const char *imap_store_code(int rc);
/* RFC 9208 QUOTA, worker thread: would `add` more bytes take the user over
 * the STORAGE limit?  false when unlimited or when the quota cannot be
 * read (logged).  APPEND and COPY answer NO [OVERQUOTA] on true. */
bool imap_over_quota(struct imap_session *s, uint64_t add);

/* ---- imap_session_auth.c ---- */
void imap_cmd_login(struct imap_session *s);
void imap_cmd_authenticate(struct imap_session *s);
void imap_sasl_line(struct imap_session *s, const char *line, size_t len);
void imap_auth_cleanup(struct imap_session *s);

/* ---- imap_session_mbox.c ---- */
void imap_dispatch_mailbox(struct imap_session *s);   /* SELECT .. APPEND */
/* Bring the view up to date and write the untagged responses; EXPUNGE
 * responses only when allow_expunge (RFC 9051 7.5.1: never during FETCH,
 * STORE or SEARCH). */
void imap_sync(struct imap_session *s, bool allow_expunge);
void imap_view_free(struct imap_view *v);
/* Is uid in the saved search result "$"? */
bool imap_view_saved_has(const struct imap_view *v, uint32_t uid);
/* Sequence number of uid in the view (1-based) or 0. */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
/* The untagged FETCH for a flag change: "* n FETCH (UID u FLAGS (...)
 * [MODSEQ (m)])" (MODSEQ and UID once CONDSTORE is enabled, RFC 7162
 * 3.2); silent: UID and MODSEQ only, or nothing without CONDSTORE. */
void imap_put_flag_fetch(struct imap_session *s, uint32_t seq, const struct imap_msg *m, bool uid,
                         bool silent);
/* Append "(\Seen ...)" for a message of the view. */
void imap_put_msg_flags(sbuf *out, const struct imap_view *v, const struct imap_msg *m);
/* Keyword slot names of the view as C strings; find or -1. */
int imap_view_keyword(const struct imap_view *v, const char *name, size_t len);
/* Refresh the view's keyword names from the store (after a STORE). */
void imap_view_reload_keywords(struct imap_session *s);
/* Does a mailbox name pass IMAP's rules (no "." / ".." levels)? */
bool imap_name_ok(const char *name);
/* STORE/APPEND flag lists: system flags into *flags, keywords into a
 * malloc'd array of malloc'd strings (free with imap_keywords_free).
 * Returns 0, or -1 with *bad set to a static reason. */
int imap_parse_flags(const struct imap_strlist *l, bool allow_recent, unsigned *flags, char ***kw,
                     size_t *nkw, const char **bad);
void imap_keywords_free(char **kw, size_t n);
/* RFC 7889 APPENDLIMIT: the largest message APPEND takes (the literal
 * limit, imap_max_literal). */
uint64_t imap_append_limit(const struct imap_session *s);
/* Forget a session's \Recent claims (never needed: kept per process). */
void imap_recent_free(struct imap_server *srv);

/* QRESYNC (RFC 7162 3.2.5, 3.2.6): "* VANISHED (EARLIER) ..." for the uids
 * in ranges r[0..nr) (normalized uid ranges) expunged after modseq since
 * and not in the view; nothing when there are none. */
void imap_put_vanished_earlier(struct imap_session *s, const struct imap_range *r, size_t nr, uint64_t since);
/* "1:3,7" from uids (ranges of consecutive ones, order kept). */
void imap_put_uid_list(sbuf *out, const uint32_t *u, size_t n);

/* ---- imap_session_msg.c ---- */
void imap_dispatch_selected(struct imap_session *s); /* STORE COPY MOVE EXPUNGE SEARCH CLOSE ... */
/* Indices into the view (ascending) of the messages matching root;
 * malloc'd, *n of them. */
size_t *imap_search_indices(struct imap_session *s, const struct imap_search *root, size_t *n);
/* SORT and THREAD (imap_session_sort.c) */
void imap_cmd_sort(struct imap_session *s);
/* Empty the saved search result "$" (RFC 5182 2.1: after a failed
 * SEARCH ... SAVE). */
void imap_saved_clear(struct imap_view *v);
/* Resolve a sequence set (or UID set with uid) against the view into a
 * list of sequence numbers (ascending, malloc'd); *n may be 0. */
uint32_t *imap_resolve_set(const struct imap_session *s, const struct imap_seqset *set, bool uid,
                           size_t *n);

/* Read message uid of the selected mailbox into out (reset first).
 * Returns 0, STORE_ENOENT (expunged meanwhile) or another STORE_E*. */
int imap_load_msg(struct imap_session *s, uint32_t uid, sbuf *out);
/* Like imap_load_msg(), but only the header block (up to and including the
 * empty line that ends it): what ENVELOPE, HEADER.FIELDS and the header
 * SEARCH keys need, without reading the body. */
int imap_load_header(struct imap_session *s, uint32_t uid, sbuf *out);

/* ---- imap_fetch.c ---- */
void imap_cmd_fetch(struct imap_session *s);

/* ---- imap_session_acl.c (RFC 4314 ACL, "Other Users" namespace) ---- */
/* Dispatch hook (loop): ACL commands, NAMESPACE, and commands that name or
 * work on another user's mailbox.  true: it took the command. */
bool imap_acl_dispatch(struct imap_session *s);
/* After every command (loop): undo what imap_acl_dispatch() set up. */
void imap_acl_command_done(struct imap_session *s);
/* The store holding the selected mailbox. */
store_user *imap_sel_store(const struct imap_session *s);
/* A mailbox name resolved to its store: own (owner NULL, all rights) or
 * "Other Users/<owner>/<name>" (the owner's store, opened or the selected
 * one; name points into the given name).  Worker thread. */
struct imap_mbref {
    store_user *store;
    const char *name;
    char *owner;
    unsigned rights;            /* IMAP_RIGHT_* */
};
/* 0, or STORE_ENOENT (no such mailbox, a malformed shared name, or no
 * right at all on it: RFC 4314 6 hides it). */
int imap_acl_resolve(struct imap_session *s, const char *name, struct imap_mbref *ref);
void imap_acl_release(struct imap_session *s, struct imap_mbref *ref);
/* Has ref every right in need?  Else writes NO [NOPERM] (or NONEXISTENT
 * without the l right) and returns false. */
bool imap_acl_check(struct imap_session *s, const struct imap_mbref *ref, unsigned need);
/* RFC 9208 with RFC 4314, worker thread: would `add` more bytes take the
 * owner of a mailbox in store u (owner NULL: the session's user) over
 * that owner's STORAGE limit?  false when unlimited or unreadable
 * (logged).  APPEND, COPY and MOVE into the mailbox answer NO [OVERQUOTA]. */
bool imap_acl_over_quota(struct imap_session *s, store_user *u, const char *owner, uint64_t add);
/* SELECT of ref succeeded: keep its store as s->sel_store (takes it). */
void imap_acl_adopt(struct imap_session *s, struct imap_mbref *ref);
/* Forget a shared selection's store (worker, or the loop at the end). */
void imap_acl_deselect(struct imap_session *s);
/* SELECT of a shared mailbox without any right to change it. */
bool imap_acl_readonly(const struct imap_session *s);
/* LIST: add the mailboxes shared with this user (those with the l right)
 * to *mbs as "Other Users/<owner>/<name>" when a pattern may reach them. */
void imap_acl_list_extend(struct imap_session *s, const struct imap_str *pats, size_t npats, const char *ref,
                          store_mailbox **mbs, size_t *nmb);
/* Around every job and IDLE poll (worker), inside the store take/give:
 * hold the shared selection's store, and run on it when the command is one
 * of the selected mailbox's own. */
void imap_acl_job_begin(struct imap_session *s);
void imap_acl_job_end(struct imap_session *s);

/* ---- imap_format.c ---- */
/* Any string: quoted when it can be, else a literal.  utf8: 8-bit text may
 * go quoted (UTF8=ACCEPT); otherwise it is sent as a literal. */
void imap_put_string(sbuf *out, const char *s, size_t len, bool utf8);
void imap_put_nstring(sbuf *out, const char *s, bool utf8);   /* NULL -> NIL */
/* An astring: an atom when safe, else as imap_put_string. */
void imap_put_astring(sbuf *out, const char *s, size_t len, bool utf8);
/* A mailbox name: modified UTF-7 unless utf8.  Returns -1 if unsendable. */
int imap_put_mailbox(sbuf *out, const char *name, bool utf8);
/* Literal {n}\r\n + bytes. */
void imap_put_literal(sbuf *out, const char *s, size_t len);
/* "dd-Mon-yyyy hh:mm:ss +0000" with the quotes. */
void imap_put_datetime(sbuf *out, time_t t);
void imap_put_envelope(sbuf *out, const struct mime_envelope *env, bool utf8);
/* BODY (extended false) or BODYSTRUCTURE (true) of part p. */
void imap_put_body(sbuf *out, const struct mime_part *p, bool extended, bool utf8);
/* Flags by name; keyword names list. */
void imap_put_flag_names(sbuf *out, unsigned flags, uint32_t kwbits, char *const *kw, size_t nkw);

#endif
