/* IMAP SEARCH evaluation (RFC 9051 6.4.4) over parsed search keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "imap/imap_parse.h"
#include "imap/imap_search.h"
#include "imap/imap_sort.h"
#include "store/store.h"

static const char MSG[] =
    "From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.test>\r\n"
    "To: Bob <bob@example.test>\r\n"
    "Cc: carol@example.test\r\n"
    "Subject: =?UTF-8?B?R3LDvMOfZQ==?= from the tests\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    "X-Colour: Orange\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "caf=E9 au lait, soft=\r\n"
    "break\r\n";

static int loads;

static int load(void *ctx, const char **data, size_t *len)
{
    loads++;
    *data = ctx;
    *len = strlen(ctx);
    return 0;
}

static int load_fail(void *ctx, const char **data, size_t *len)
{
    return -1;
}

static struct imap_limits lim;
static struct imap_arena arena;

/* Match "SEARCH <keys>" against a message with the given metadata. */
static int match_msg(const char *keys, struct imap_search_msg *m)
{
    sbuf line = SBUF_INIT;
    sbuf_printf(&line, "t SEARCH %s\r\n", keys);
    struct imap_command cmd;
    struct imap_err err;
    imap_arena_reset(&arena);
    if (imap_parse_command(line.data, line.len, &lim, 0, &arena, &cmd, &err) != 0)
        fail_msg("parse %s: %s", keys, err.text);
    int r = imap_search_match(cmd.search.root, m);
    imap_search_msg_done(m);
    sbuf_free(&line);
    return r;
}

static struct imap_search_msg base_msg(void)
{
    static const char *const kw[] = { "$Work" };
    struct imap_search_msg m = {
        .seq = 3, .uid = 30, .max_seq = 5, .max_uid = 50,
        .flags = STORE_SEEN | STORE_FLAGGED, .recent = false,
        .keywords = kw, .nkeywords = 1,
        .internaldate = 760686745,      /* 8-Feb-1994 05:52:25 UTC */
        .size = sizeof MSG - 1, .modseq = 7, .now = 760686745 + 3600,
        .load = load, .load_ctx = (void *)MSG,
    };
    return m;
}

static int M(const char *keys)
{
    struct imap_search_msg m = base_msg();
    return match_msg(keys, &m);
}

static int setup(void **state)
{
    imap_limits_default(&lim);
    imap_arena_init(&arena, lim.arena_max);
    return 0;
}

static int teardown(void **state)
{
    imap_arena_free(&arena);
    return 0;
}

/* RFC 9051 6.4.4: flag keys and their negations. */
static void test_rfc9051_6_4_4_flags(void **state)
{
    assert_int_equal(M("ALL"), 1);
    assert_int_equal(M("SEEN"), 1);
    assert_int_equal(M("UNSEEN"), 0);
    assert_int_equal(M("FLAGGED"), 1);
    assert_int_equal(M("UNFLAGGED"), 0);
    assert_int_equal(M("ANSWERED"), 0);
    assert_int_equal(M("UNANSWERED"), 1);
    assert_int_equal(M("DELETED"), 0);
    assert_int_equal(M("UNDELETED"), 1);
    assert_int_equal(M("DRAFT"), 0);
    assert_int_equal(M("UNDRAFT"), 1);
    assert_int_equal(M("KEYWORD $work"), 1);
    assert_int_equal(M("KEYWORD $Other"), 0);
    assert_int_equal(M("UNKEYWORD $Work"), 0);
    assert_int_equal(M("RECENT"), 0);
    assert_int_equal(M("OLD"), 1);
    assert_int_equal(M("NEW"), 0);
    struct imap_search_msg m = base_msg();
    m.recent = true;
    m.flags = 0;
    assert_int_equal(match_msg("NEW", &m), 1);
}

/* Sequence sets and UID sets, "*" resolved against the largest number. */
static void test_rfc9051_6_4_4_sets(void **state)
{
    assert_int_equal(M("3"), 1);
    assert_int_equal(M("1:2,4:*"), 0);
    assert_int_equal(M("2:*"), 1);
    assert_int_equal(M("UID 30"), 1);
    assert_int_equal(M("UID 31:*"), 0);
    assert_int_equal(M("UID *"), 0);
    assert_int_equal(M("UID 60:*"), 0);  /* 60:* is 50:60, which holds 50 not 30 */
}

static void test_rfc9051_6_4_4_size_dates(void **state)
{
    char q[64];
    snprintf(q, sizeof q, "LARGER %zu", sizeof MSG - 2);
    assert_int_equal(M(q), 1);
    snprintf(q, sizeof q, "LARGER %zu", sizeof MSG - 1);
    assert_int_equal(M(q), 0);
    snprintf(q, sizeof q, "SMALLER %zu", sizeof MSG);
    assert_int_equal(M(q), 1);
    /* internal date 8-Feb-1994 (UTC) */
    assert_int_equal(M("ON 8-Feb-1994"), 1);
    assert_int_equal(M("BEFORE 8-Feb-1994"), 0);
    assert_int_equal(M("BEFORE 9-Feb-1994"), 1);
    assert_int_equal(M("SINCE 8-Feb-1994"), 1);
    assert_int_equal(M("SINCE 9-Feb-1994"), 0);
    /* Date: header says 7 Feb (its own zone, time ignored) */
    assert_int_equal(M("SENTON 7-Feb-1994"), 1);
    assert_int_equal(M("SENTBEFORE 7-Feb-1994"), 0);
    assert_int_equal(M("SENTBEFORE 8-Feb-1994"), 1);
    assert_int_equal(M("SENTSINCE 8-Feb-1994"), 0);
    /* RFC 5032 WITHIN */
    assert_int_equal(M("OLDER 3000"), 1);
    assert_int_equal(M("YOUNGER 3000"), 0);
}

/* Header keys search the RFC 2047 decoded value, case-insensitively. */
static void test_rfc9051_6_4_4_headers(void **state)
{
    assert_int_equal(M("FROM andre@example"), 1);
    assert_int_equal(M("FROM \"Andr\xc3\xa9\""), 1);
    assert_int_equal(M("TO BOB"), 1);
    assert_int_equal(M("CC carol"), 1);
    assert_int_equal(M("BCC carol"), 0);
    assert_int_equal(M("SUBJECT \"Gr\xc3\xbc\xc3\x9f" "e from\""), 1);
    assert_int_equal(M("SUBJECT nothere"), 0);
    assert_int_equal(M("HEADER X-Colour orange"), 1);
    assert_int_equal(M("HEADER X-Colour \"\""), 1);
    assert_int_equal(M("HEADER X-Missing \"\""), 0);
}

/* BODY and TEXT search the transfer- and charset-decoded text. */
static void test_rfc9051_6_4_4_body_text(void **state)
{
    assert_int_equal(M("BODY \"caf\xc3\xa9 au\""), 1);
    assert_int_equal(M("BODY softbreak"), 1);
    assert_int_equal(M("BODY X-Colour"), 0);
    assert_int_equal(M("TEXT X-Colour"), 1);
    assert_int_equal(M("TEXT lait"), 1);
    assert_int_equal(M("TEXT absent-word"), 0);
}

static void test_rfc9051_6_4_4_not_or_nesting(void **state)
{
    assert_int_equal(M("NOT SEEN"), 0);
    assert_int_equal(M("NOT NOT SEEN"), 1);
    assert_int_equal(M("OR ANSWERED FLAGGED"), 1);
    assert_int_equal(M("OR ANSWERED DELETED"), 0);
    assert_int_equal(M("(SEEN FLAGGED) NOT DELETED"), 1);
    assert_int_equal(M("SEEN (FLAGGED ANSWERED)"), 0);
    assert_int_equal(M("OR (DELETED) (OR DRAFT (UID 30))"), 1);
}

/* Flag and size keys never read the message; content keys read it once. */
static void test_content_loaded_lazily_once(void **state)
{
    loads = 0;
    assert_int_equal(M("SEEN LARGER 10 UID 1:*"), 1);
    assert_int_equal(loads, 0);
    assert_int_equal(M("UNSEEN FROM andre"), 0);
    assert_int_equal(loads, 0);
    assert_int_equal(M("FROM andre SUBJECT tests BODY lait"), 1);
    assert_int_equal(loads, 1);
    struct imap_search_msg m = base_msg();
    m.load = load_fail;
    assert_int_equal(match_msg("SUBJECT x", &m), -1);
    m = base_msg();
    m.load = load_fail;
    assert_int_equal(match_msg("OR SEEN SUBJECT x", &m), 1);
}

static int header_loads;

/* The header block of MSG, as imap_load_header() gives it. */
static int load_header(void *ctx, const char **data, size_t *len)
{
    header_loads++;
    const char *end = strstr(ctx, "\r\n\r\n");
    *data = ctx;
    *len = end ? (size_t)(end + 4 - (const char *)ctx) : strlen(ctx);
    return 0;
}

/* Header keys read the header block alone; a body key reads the whole
 * message, and the answers are those of a whole-message load. */
static void test_header_keys_read_only_the_header(void **state)
{
    struct imap_search_msg m = base_msg();
    m.load_header = load_header;
    loads = header_loads = 0;
    assert_int_equal(match_msg("FROM andre SUBJECT tests HEADER X-Colour orange", &m), 1);
    assert_int_equal(header_loads, 1);
    assert_int_equal(loads, 0);
    assert_int_equal(match_msg("SUBJECT nothing-like-it", &m), 0);
    assert_int_equal(match_msg("FROM andre BODY lait", &m), 1);
    assert_int_equal(loads, 1);
    assert_int_equal(match_msg("BODY X-Colour", &m), 0);
    assert_int_equal(match_msg("TEXT X-Colour", &m), 1);
    m.load_header = load_fail;
    assert_int_equal(match_msg("SUBJECT tests", &m), -1);
}

static void test_needs_content(void **state)
{
    sbuf line = SBUF_INIT;
    struct imap_command cmd;
    struct imap_err err;
    sbuf_puts(&line, "t SEARCH OR SEEN NOT (SUBJECT x)\r\n");
    imap_arena_reset(&arena);
    assert_int_equal(imap_parse_command(line.data, line.len, &lim, 0, &arena, &cmd, &err), 0);
    assert_true(imap_search_needs_content(cmd.search.root));
    sbuf_reset(&line);
    sbuf_puts(&line, "t SEARCH OR SEEN NOT (LARGER 5)\r\n");
    imap_arena_reset(&arena);
    assert_int_equal(imap_parse_command(line.data, line.len, &lim, 0, &arena, &cmd, &err), 0);
    assert_false(imap_search_needs_content(cmd.search.root));
    sbuf_free(&line);
}

/* RFC 5322 3.3 dates, obsolete two-digit years (4.3) included. */
static void test_rfc5322_header_date(void **state)
{
    time_t d;
    const char *v = "Mon, 7 Feb 1994 21:52:25 -0800";
    assert_int_equal(imap_search_header_date(v, strlen(v), &d), 0);
    assert_int_equal(d, 760579200);
    v = "7 Feb 94 21:52 GMT";
    assert_int_equal(imap_search_header_date(v, strlen(v), &d), 0);
    assert_int_equal(d, 760579200);
    v = "Sat, 01 Jan 2050 00:00:00 +0000";
    assert_int_equal(imap_search_header_date(v, strlen(v), &d), 0);
    v = "yesterday";
    assert_int_equal(imap_search_header_date(v, strlen(v), &d), -1);
    v = "Mon, 7 Foo 1994";
    assert_int_equal(imap_search_header_date(v, strlen(v), &d), -1);
}

/* ---- SORT and THREAD helpers (RFC 5256; imap_sort.c) ---------------------------- */

static void check_base(const char *in, const char *want, bool want_reply)
{
    bool reply = !want_reply;
    char *got = imap_base_subject(in, &reply);
    assert_string_equal(got, want);
    assert_true(reply == want_reply);
    free(got);
}

static void test_rfc5256_2_1_base_subject(void **state)
{
    (void)state;
    check_base("Hello", "Hello", false);
    check_base("Re: Hello", "Hello", true);
    check_base("RE:  re: Fwd: Hello", "Hello", true);
    check_base("Re[2]: Hello", "Hello", true);
    check_base("[list] Re: Hello (fwd)", "Hello", true);
    check_base("[list] Hello", "Hello", false);          /* (4): a blob before text goes */
    check_base("[only a blob]", "[only a blob]", false); /* ... unless nothing is left */
    check_base("[Fwd: Re: Hello]", "Hello", true);       /* (6) */
    check_base("Hello\t  world  ", "Hello world", false); /* (1) */
    check_base("Reply to this", "Reply to this", false);  /* "re" needs its colon */
    check_base("", "", false);
    check_base(NULL, "", false);
}

static void test_rfc5322_sent_date_with_zone(void **state)
{
    (void)state;
    time_t t;
    const char *v = "Mon, 7 Feb 1994 21:52:25 -0800";
    assert_int_equal(imap_parse_sent_date(v, strlen(v), &t), 0);
    assert_int_equal(t, 760686745);          /* 1994-02-08 05:52:25 UTC */
    v = "7 Feb 94 21:52 GMT";
    assert_int_equal(imap_parse_sent_date(v, strlen(v), &t), 0);
    assert_int_equal(t, 760657920);
    v = "Thu, 02 Jan 2020 09:00:00 EST (comment)";
    assert_int_equal(imap_parse_sent_date(v, strlen(v), &t), 0);
    assert_int_equal(t, 1577973600);         /* 14:00 UTC */
    v = "Thu, 02 Jan 2020";
    assert_int_equal(imap_parse_sent_date(v, strlen(v), &t), -1);
    v = "yesterday";
    assert_int_equal(imap_parse_sent_date(v, strlen(v), &t), -1);
}

static void test_msgids(void **state)
{
    (void)state;
    char **ids = NULL;
    size_t n = 0;
    const char *v = "<a@x>\r\n <b@\r\n y> junk <> <c@z>";
    imap_msgids(v, strlen(v), &ids, &n);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], "a@x");
    assert_string_equal(ids[1], "b@y");
    assert_string_equal(ids[2], "c@z");
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

static void thread_msg(struct imap_sort_msg *m, uint32_t num, time_t sent, const char *subj, bool reply,
                       const char *id, const char *const *refs, size_t nrefs)
{
    memset(m, 0, sizeof *m);
    m->num = m->seq = num;
    m->sent = m->arrival = sent;
    m->subject = subj;
    m->reply = reply;
    m->message_id = id;
    m->refs = refs;
    m->nrefs = nrefs;
}

static void test_rfc5256_3_references_loops_and_duplicates(void **state)
{
    (void)state;
    /* 1 and 2 name each other as parents (a loop); 3 repeats 1's id. */
    static const char *const r1[] = { "b" }, *const r2[] = { "a" }, *const r4[] = { "x", "y", "a" };
    struct imap_sort_msg m[4];
    thread_msg(&m[0], 1, 10, "s", false, "a", r1, 1);
    thread_msg(&m[1], 2, 20, "t", false, "b", r2, 1);
    thread_msg(&m[2], 3, 30, "u", false, "a", NULL, 0);
    thread_msg(&m[3], 4, 40, "s", true, "d", r4, 3);
    sbuf out = SBUF_INIT;
    imap_thread_references(m, 4, &out);
    /* Whatever the loop and the duplicate id, no link is made that would
     * lose a message or loop forever: each appears exactly once. */
    assert_non_null(out.data);
    /* every message appears exactly once */
    for (int k = 1; k <= 4; k++) {
        char num[4];
        snprintf(num, sizeof num, "%d", k);
        size_t hits = 0;
        for (const char *p = out.data; (p = strstr(p, num)); p++) hits++;
        assert_int_equal(hits, 1);
    }
    sbuf_free(&out);
}

static void test_rfc5256_3_orderedsubject_format(void **state)
{
    (void)state;
    struct imap_sort_msg m[4];
    thread_msg(&m[0], 1, 40, "b", false, NULL, NULL, 0);
    thread_msg(&m[1], 2, 10, "a", false, NULL, NULL, 0);
    thread_msg(&m[2], 3, 20, "B", false, NULL, NULL, 0);
    thread_msg(&m[3], 4, 30, "a", false, NULL, NULL, 0);
    sbuf out = SBUF_INIT;
    imap_thread_orderedsubject(m, 4, &out);
    assert_string_equal(out.data, "(2 4)(3 1)");
    sbuf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_4_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_4_sets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_4_size_dates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_4_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_4_body_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc9051_6_4_4_not_or_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_loaded_lazily_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_keys_read_only_the_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needs_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc5322_header_date, setup, teardown),
        cmocka_unit_test(test_rfc5256_2_1_base_subject),
        cmocka_unit_test(test_rfc5322_sent_date_with_zone),
        cmocka_unit_test(test_msgids),
        cmocka_unit_test(test_rfc5256_3_references_loops_and_duplicates),
        cmocka_unit_test(test_rfc5256_3_orderedsubject_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
