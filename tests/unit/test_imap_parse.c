/* IMAP command scanning and parsing: RFC 3501 / RFC 9051 and extensions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "imap/imap_mutf7.h"
#include "imap/imap_parse.h"

static struct imap_limits lim;
static struct imap_arena arena;
static struct imap_command cmd;
static struct imap_err err;
static sbuf line;
static unsigned pflags;

static int setup(void **state)
{
    imap_limits_default(&lim);
    imap_arena_init(&arena, lim.arena_max);
    sbuf_init(&line);
    pflags = 0;
    return 0;
}

static int teardown(void **state)
{
    imap_arena_free(&arena);
    sbuf_free(&line);
    return 0;
}

/* Parse s + CRLF. */
static int parse(const char *s)
{
    sbuf_reset(&line);
    sbuf_puts(&line, s);
    sbuf_puts(&line, "\r\n");
    imap_arena_reset(&arena);
    return imap_parse_command(line.data, line.len, &lim, pflags, &arena, &cmd, &err);
}

static struct imap_command *ok(const char *s, enum imap_cmd_name name)
{
    if (parse(s) != 0) fail_msg("rejected: %s -> %s (at %zu)", s, err.text, err.pos);
    if (cmd.name != name) fail_msg("%s: name %d, want %d", s, cmd.name, name);
    return &cmd;
}

static void bad(const char *s, const char *text)
{
    if (parse(s) == 0) fail_msg("accepted: %s", s);
    assert_non_null(err.text);
    if (text && !strstr(err.text, text)) fail_msg("%s: error \"%s\", want \"%s\"", s, err.text, text);
}

static void assert_str(struct imap_str st, const char *want)
{
    if (!st.data) fail_msg("NIL, want \"%s\"", want);
    if (st.len != strlen(want) || memcmp(st.data, want, st.len) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)st.len, st.data, want);
}

static void assert_set(const struct imap_seqset *s, const char *want)
{
    sbuf b = SBUF_INIT;
    imap_seqset_format(s, &b);
    assert_string_equal(sbuf_cstr(&b), want);
    sbuf_free(&b);
}

/* ---- RFC 3501 section 8: the sample session, client side ---- */

static void test_3501_8_sample_session(void **state)
{
    ok("a001 login mrc secret", IMAP_CMD_LOGIN);
    assert_string_equal(cmd.tag, "a001");
    assert_str(cmd.str1, "mrc");
    assert_str(cmd.str2, "secret");
    ok("a002 select inbox", IMAP_CMD_SELECT);
    assert_string_equal(cmd.mailbox, "INBOX");
    ok("a003 fetch 12 full", IMAP_CMD_FETCH);
    assert_int_equal(cmd.fetch_macro, IMAP_FETCH_FULL);
    assert_set(&cmd.set, "12");
    ok("a004 fetch 12 body[header]", IMAP_CMD_FETCH);
    assert_int_equal(cmd.fetch->type, IMAP_FA_BODY_SECTION);
    assert_int_equal(cmd.fetch->text, IMAP_SECT_HEADER);
    assert_false(cmd.fetch->peek);
    ok("a005 store 12 +flags \\deleted", IMAP_CMD_STORE);
    assert_int_equal(cmd.store_op, IMAP_STORE_ADD);
    assert_int_equal(cmd.list.n, 1);
    assert_str(cmd.list.v[0], "\\deleted");
    ok("a006 logout", IMAP_CMD_LOGOUT);
}

/* ---- RFC 9051 section 6 examples ---- */

static void test_9051_6_1_any_state(void **state)
{
    ok("abcd CAPABILITY", IMAP_CMD_CAPABILITY);
    ok("a002 NOOP", IMAP_CMD_NOOP);
    ok("A023 LOGOUT", IMAP_CMD_LOGOUT);
    bad("A023 LOGOUT now", "Unexpected extra arguments");
    assert_true(err.tagged);
    assert_int_equal(cmd.name, IMAP_CMD_LOGOUT);
}

static void test_9051_6_2_not_authenticated(void **state)
{
    ok("a001 STARTTLS", IMAP_CMD_STARTTLS);
    ok("A001 AUTHENTICATE GSSAPI", IMAP_CMD_AUTHENTICATE);
    assert_str(cmd.str1, "GSSAPI");
    assert_false(cmd.has_ir);
    /* RFC 4959 SASL-IR */
    ok("a AUTHENTICATE PLAIN AGZyZWQAdGlnZXI=", IMAP_CMD_AUTHENTICATE);
    assert_true(cmd.has_ir);
    assert_str(cmd.str2, "AGZyZWQAdGlnZXI=");
    ok("a AUTHENTICATE EXTERNAL =", IMAP_CMD_AUTHENTICATE);
    assert_true(cmd.has_ir);
    assert_int_equal(cmd.str2.len, 0);
    bad("a AUTHENTICATE PLAIN AGZ=yZWQ", "base64");
    bad("a AUTHENTICATE PLAIN abc", "base64");
    bad("a AUTHENTICATE", "Missing argument");
    ok("a001 LOGIN SMITH SESAME", IMAP_CMD_LOGIN);
    ok("a001 LOGIN \"fred \\\"the\\\\ man\" {4}\r\npa s", IMAP_CMD_LOGIN);
    assert_str(cmd.str1, "fred \"the\\ man");
    assert_str(cmd.str2, "pa s");
    bad("a001 LOGIN SMITH", "Missing argument");
    bad("a001 LOGIN SMITH  SESAME", NULL);
}

static void test_9051_6_3_authenticated(void **state)
{
    ok("A01 ENABLE UTF8=ACCEPT CONDSTORE", IMAP_CMD_ENABLE);
    assert_int_equal(cmd.list.n, 2);
    assert_str(cmd.list.v[1], "CONDSTORE");
    bad("A01 ENABLE", "Missing argument");
    ok("A142 SELECT INBOX", IMAP_CMD_SELECT);
    ok("A932 EXAMINE blurdybloop", IMAP_CMD_EXAMINE);
    assert_string_equal(cmd.mailbox, "blurdybloop");
    ok("A003 CREATE owatagusiam/", IMAP_CMD_CREATE);
    assert_string_equal(cmd.mailbox, "owatagusiam/");
    ok("A683 DELETE blurdybloop", IMAP_CMD_DELETE);
    ok("A683 RENAME blurdybloop sarasoop", IMAP_CMD_RENAME);
    assert_string_equal(cmd.mailbox, "blurdybloop");
    assert_string_equal(cmd.mailbox2, "sarasoop");
    ok("Z432 RENAME INBOX old-mail", IMAP_CMD_RENAME);
    ok("A002 SUBSCRIBE #news.comp.mail.mime", IMAP_CMD_SUBSCRIBE);
    ok("A002 UNSUBSCRIBE #news.comp.mail.mime", IMAP_CMD_UNSUBSCRIBE);
    ok("A101 LIST \"\" \"\"", IMAP_CMD_LIST);
    assert_string_equal(cmd.mailbox, "");
    assert_int_equal(cmd.list.n, 1);
    assert_str(cmd.list.v[0], "");
    assert_false(cmd.list_extended);
    ok("A102 LIST #news.comp.mail.misc \"\"", IMAP_CMD_LIST);
    ok("A202 LIST ~/Mail/ %", IMAP_CMD_LIST);
    assert_string_equal(cmd.mailbox, "~/Mail/");
    assert_str(cmd.list.v[0], "%");
    ok("A103 LIST /usr/staff/jones \"\"", IMAP_CMD_LIST);
    ok("a LIST \"\" *", IMAP_CMD_LIST);
    ok("a LIST \"\" foo]*", IMAP_CMD_LIST);
    ok("A002 LSUB \"#news.\" \"comp.mail.*\"", IMAP_CMD_LSUB);
    assert_string_equal(cmd.mailbox, "#news.");
    assert_str(cmd.list.v[0], "comp.mail.*");
    ok("a001 NAMESPACE", IMAP_CMD_NAMESPACE);
    ok("A042 STATUS blurdybloop (UIDNEXT MESSAGES)", IMAP_CMD_STATUS);
    assert_int_equal(cmd.status_atts, IMAP_STATUS_UIDNEXT | IMAP_STATUS_MESSAGES);
    ok("A042 STATUS x (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT)",
       IMAP_CMD_STATUS);
    assert_int_equal(cmd.status_atts, 0x1ff);
    bad("A042 STATUS x ()", NULL);
    bad("A042 STATUS x (BOGUS)", "Unknown status attribute");
    bad("A042 STATUS x MESSAGES", NULL);
}

/* RFC 5258 / 6154 / 5819 examples */
static void test_5258_list_extended(void **state)
{
    ok("A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))", IMAP_CMD_LIST);
    assert_true(cmd.list_extended);
    assert_int_equal(cmd.list_return, IMAP_LISTRET_STATUS);
    assert_int_equal(cmd.status_atts, IMAP_STATUS_MESSAGES | IMAP_STATUS_UNSEEN);
    ok("A03 LIST () \"\" %", IMAP_CMD_LIST);
    assert_true(cmd.list_extended);
    assert_int_equal(cmd.list_select, 0);
    ok("A04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN)", IMAP_CMD_LIST);
    assert_int_equal(cmd.list_select, IMAP_LISTSEL_SUBSCRIBED | IMAP_LISTSEL_RECURSIVEMATCH);
    assert_int_equal(cmd.list_return, IMAP_LISTRET_CHILDREN);
    ok("A05 LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")", IMAP_CMD_LIST);
    assert_int_equal(cmd.list.n, 3);
    assert_str(cmd.list.v[2], "Sent/%");
    ok("t1 LIST (SPECIAL-USE) \"\" \"*\"", IMAP_CMD_LIST);
    assert_int_equal(cmd.list_select, IMAP_LISTSEL_SPECIAL_USE);
    ok("t3 LIST \"\" \"%\" RETURN (SPECIAL-USE SUBSCRIBED)", IMAP_CMD_LIST);
    assert_int_equal(cmd.list_return, IMAP_LISTRET_SPECIAL_USE | IMAP_LISTRET_SUBSCRIBED);
    ok("a LIST (REMOTE) \"\" * RETURN ()", IMAP_CMD_LIST);
    bad("A06 LIST (RECURSIVEMATCH) \"\" %", "RECURSIVEMATCH");
    bad("A06 LIST (BOGUS) \"\" %", "selection option");
    bad("A06 LIST \"\" % RETURN (BOGUS)", "return option");
    bad("A06 LIST \"\" % RETURN (STATUS (MESSAGES) STATUS (UNSEEN))", "Duplicate");
    bad("A06 LIST \"\" ()", NULL);
    bad("A06 LIST \"\"", "Missing argument");
}

/* RFC 6154 3 */
static void test_6154_create_use(void **state)
{
    ok("t1 CREATE \"Important Messages\" (USE (\\Important))", IMAP_CMD_CREATE);
    assert_string_equal(cmd.mailbox, "Important Messages");
    assert_int_equal(cmd.list.n, 1);
    assert_str(cmd.list.v[0], "\\Important");
    ok("t1 CREATE x (USE (\\Sent \\Drafts))", IMAP_CMD_CREATE);
    assert_int_equal(cmd.list.n, 2);
    bad("t1 CREATE x (USE (Sent))", "attribute");
    bad("t1 CREATE x (FOO (\\Sent))", "create parameter");
}

/* RFC 7162 3.1.8, 3.2.5 */
static void test_7162_select_params(void **state)
{
    ok("A142 SELECT INBOX (CONDSTORE)", IMAP_CMD_SELECT);
    assert_true(cmd.condstore);
    assert_false(cmd.qresync);
    ok("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))", IMAP_CMD_SELECT);
    assert_true(cmd.qresync);
    assert_int_equal(cmd.qr_uidvalidity, 67890007);
    assert_true(cmd.qr_modseq == 20050715194045000ull);
    assert_true(cmd.qr_has_known_uids);
    assert_set(&cmd.qr_known_uids, "41,43:211,214:541");
    assert_false(cmd.qr_has_seq_match);
    ok("B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:15,20 4,5:8,10)))",
       IMAP_CMD_SELECT);
    assert_true(cmd.qr_has_seq_match);
    assert_set(&cmd.qr_known_seqs, "1:15,20");
    assert_set(&cmd.qr_known_seq_uids, "4,5:8,10");
    ok("B04 SELECT INBOX (QRESYNC (1 2 (1 4)))", IMAP_CMD_SELECT);
    assert_false(cmd.qr_has_known_uids);
    assert_true(cmd.qr_has_seq_match);
    ok("B05 EXAMINE INBOX (CONDSTORE QRESYNC (1 2))", IMAP_CMD_EXAMINE);
    bad("B04 SELECT INBOX (QRESYNC (0 2))", NULL);
    bad("B04 SELECT INBOX (QRESYNC (1 0))", NULL);
    bad("B04 SELECT INBOX (QRESYNC (1 2 1:*))", "\"*\"");
    bad("B04 SELECT INBOX ()", NULL);
    bad("B04 SELECT INBOX (FOO)", "select parameter");
}

/* RFC 9051 6.3.12, RFC 3502, RFC 3516, RFC 6855 */
static void test_9051_6_3_12_append(void **state)
{
    const char *msg = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\n"
                      "Subject: afternoon meeting\r\n\r\nHello Joe\r\n";
    char buf[512];
    snprintf(buf, sizeof buf, "A003 APPEND saved-messages (\\Seen) {%zu}\r\n%s", strlen(msg), msg);
    ok(buf, IMAP_CMD_APPEND);
    assert_string_equal(cmd.mailbox, "saved-messages");
    assert_int_equal(cmd.nmsgs, 1);
    assert_true(cmd.msgs[0].has_flags);
    assert_str(cmd.msgs[0].flags.v[0], "\\Seen");
    assert_false(cmd.msgs[0].has_date);
    assert_str(cmd.msgs[0].data, msg);
    assert_false(cmd.msgs[0].binary);

    ok("a APPEND INBOX \" 7-Feb-1994 21:52:25 -0800\" {2+}\r\nhi", IMAP_CMD_APPEND);
    assert_true(cmd.msgs[0].has_date);
    assert_false(cmd.msgs[0].has_flags);
    assert_true(cmd.msgs[0].date == 760686745);
    assert_int_equal(cmd.msgs[0].zone_min, -480);
    ok("a APPEND INBOX () \"07-Feb-1994 21:52:25 +0000\" {2-}\r\nhi", IMAP_CMD_APPEND);
    assert_true(cmd.msgs[0].has_flags);
    assert_int_equal(cmd.msgs[0].flags.n, 0);

    /* RFC 3502 MULTIAPPEND */
    ok("A003 APPEND saved-messages (\\Seen) {3}\r\nabc (\\Seen $Junk) {3}\r\ndef {0}\r\n", IMAP_CMD_APPEND);
    assert_int_equal(cmd.nmsgs, 3);
    assert_str(cmd.msgs[1].data, "def");
    assert_int_equal(cmd.msgs[1].flags.n, 2);
    assert_int_equal(cmd.msgs[2].data.len, 0);

    /* RFC 3516 literal8 may hold NUL; a normal literal may not */
    static const char bin[] = "a APPEND x ~{3}\r\na\0b\r\n";
    imap_arena_reset(&arena);
    assert_int_equal(imap_parse_command(bin, sizeof bin - 1, &lim, 0, &arena, &cmd, &err), 0);
    assert_true(cmd.msgs[0].binary);
    assert_int_equal(cmd.msgs[0].data.len, 3);
    static const char nul[] = "a APPEND x {3}\r\na\0b\r\n";
    assert_int_equal(imap_parse_command(nul, sizeof nul - 1, &lim, 0, &arena, &cmd, &err), -1);
    assert_non_null(strstr(err.text, "NUL"));

    /* RFC 6855 4 */
    ok("a APPEND x UTF8 (~{2}\r\nhi)", IMAP_CMD_APPEND);
    assert_true(cmd.msgs[0].utf8);
    assert_true(cmd.msgs[0].binary);
    bad("a APPEND x UTF8 ({2}\r\nhi)", "literal8");

    bad("a APPEND x \"hello\"", NULL);
    bad("a APPEND x (\\Seen)", "Missing argument");
    bad("a APPEND x \"31-Feb-1994 21:52:25 -0800\" {2}\r\nhi", "date-time");
    bad("a APPEND x \"7-Feb-1994 21:52:25 -0800\" {2}\r\nhi", "date-time");
    bad("a APPEND x \" 7-Feb-1994 24:00:00 -0800\" {2}\r\nhi", "date-time");
    bad("a APPEND x {5}\r\nhi", "incomplete");
    bad("a LOGIN ~{2}\r\nhi x", "literal8");
}

static void test_9051_6_4_selected(void **state)
{
    ok("FXXZ CHECK", IMAP_CMD_CHECK);
    ok("A341 CLOSE", IMAP_CMD_CLOSE);
    ok("A342 UNSELECT", IMAP_CMD_UNSELECT);
    ok("A202 EXPUNGE", IMAP_CMD_EXPUNGE);
    assert_false(cmd.has_set);
    bad("A202 EXPUNGE 1:2", "Unexpected");
    /* RFC 4315 2.1 */
    ok("A003 UID EXPUNGE 3000:3002", IMAP_CMD_EXPUNGE);
    assert_true(cmd.uid);
    assert_true(cmd.has_set);
    assert_set(&cmd.set, "3000:3002");
    bad("A003 UID EXPUNGE", "Missing argument");
    ok("A003 COPY 2:4 MEETING", IMAP_CMD_COPY);
    assert_string_equal(cmd.mailbox2, "MEETING");
    /* RFC 6851 */
    ok("a UID MOVE 42:69 foo", IMAP_CMD_MOVE);
    assert_true(cmd.uid);
    ok("a MOVE 1 inbox", IMAP_CMD_MOVE);
    assert_string_equal(cmd.mailbox2, "INBOX");
    ok("a1 IDLE", IMAP_CMD_IDLE);
    bad("a UID IDLE", "Unknown command");
    bad("a UID", "Missing argument");
}

/* RFC 9051 6.4.4 examples */
static void test_9051_6_4_4_search(void **state)
{
    ok("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"", IMAP_CMD_SEARCH);
    assert_true(cmd.search.has_return);
    assert_int_equal(cmd.search.ret, IMAP_SEARCHRET_MIN | IMAP_SEARCHRET_COUNT);
    struct imap_search *k = cmd.search.root;
    assert_int_equal(k->key, IMAP_SK_AND);
    k = k->child;
    assert_int_equal(k->key, IMAP_SK_FLAGGED);
    k = k->next;
    assert_int_equal(k->key, IMAP_SK_SINCE);
    assert_true(k->date == 760060800); /* 1994-02-01T00:00:00Z */
    k = k->next;
    assert_int_equal(k->key, IMAP_SK_NOT);
    assert_int_equal(k->child->key, IMAP_SK_FROM);
    assert_str(k->child->str, "Smith");
    assert_null(k->next);

    ok("A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"", IMAP_CMD_SEARCH);
    assert_true(cmd.search.has_return);
    assert_int_equal(cmd.search.ret, 0);
    ok("A284 SEARCH TEXT \"string not in mailbox\"", IMAP_CMD_SEARCH);
    assert_false(cmd.search.has_return);
    ok("A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n\xd0\x9b\xd0\xb8\xd1\x82\xd0\xb5\xd1\x80\xd0\xb0", IMAP_CMD_SEARCH);
    assert_true(cmd.search.has_charset);
    assert_str(cmd.search.charset, "UTF-8");
    assert_int_equal(cmd.search.root->child->str.len, 12);
    ok("A286 SEARCH CHARSET UTF-8 TEXT {12+}\r\n\xd0\x9b\xd0\xb8\xd1\x82\xd0\xb5\xd1\x80\xd0\xb0", IMAP_CMD_SEARCH);
    ok("a UID SEARCH 1:100 UID 443:557", IMAP_CMD_SEARCH);
    assert_true(cmd.uid);
    bad("a UID SEARCH 1:100 UID 443:557 RETURN", "Unknown search key");
}

static void test_9051_6_4_4_every_key(void **state)
{
    ok("a SEARCH ALL ANSWERED BCC x BEFORE 1-Jan-2000 BODY y CC z DELETED DRAFT FLAGGED FROM a "
       "HEADER X-Foo bar KEYWORD $Forwarded LARGER 100 NEW NOT SEEN OLD ON 01-Jan-2000 OR SEEN DRAFT "
       "RECENT SEEN SENTBEFORE \"1-Jan-2000\" SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 SINCE 1-Jan-2000 "
       "SMALLER 5 SUBJECT s TEXT t TO u UID 1:* UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD k "
       "UNSEEN 1,3:5 * OLDER 10 YOUNGER 20 MODSEQ 5 $",
       IMAP_CMD_SEARCH);
    static const enum imap_search_key want[] = {
        IMAP_SK_ALL, IMAP_SK_ANSWERED, IMAP_SK_BCC, IMAP_SK_BEFORE, IMAP_SK_BODY, IMAP_SK_CC,
        IMAP_SK_DELETED, IMAP_SK_DRAFT, IMAP_SK_FLAGGED, IMAP_SK_FROM, IMAP_SK_HEADER, IMAP_SK_KEYWORD,
        IMAP_SK_LARGER, IMAP_SK_NEW, IMAP_SK_NOT, IMAP_SK_OLD, IMAP_SK_ON, IMAP_SK_OR, IMAP_SK_RECENT,
        IMAP_SK_SEEN, IMAP_SK_SENTBEFORE, IMAP_SK_SENTON, IMAP_SK_SENTSINCE, IMAP_SK_SINCE,
        IMAP_SK_SMALLER, IMAP_SK_SUBJECT, IMAP_SK_TEXT, IMAP_SK_TO, IMAP_SK_UID, IMAP_SK_UNANSWERED,
        IMAP_SK_UNDELETED, IMAP_SK_UNDRAFT, IMAP_SK_UNFLAGGED, IMAP_SK_UNKEYWORD, IMAP_SK_UNSEEN,
        IMAP_SK_SEQSET, IMAP_SK_SEQSET, IMAP_SK_OLDER, IMAP_SK_YOUNGER, IMAP_SK_MODSEQ, IMAP_SK_SEQSET,
    };
    struct imap_search *k = cmd.search.root->child;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++, k = k->next) {
        assert_non_null(k);
        if (k->key != want[i]) fail_msg("key %zu: %d want %d", i, k->key, want[i]);
        if (k->key == IMAP_SK_HEADER) {
            assert_str(k->field, "X-Foo");
            assert_str(k->str, "bar");
        }
        if (k->key == IMAP_SK_LARGER) assert_int_equal(k->num, 100);
        if (k->key == IMAP_SK_OR) {
            assert_int_equal(k->child->key, IMAP_SK_SEEN);
            assert_int_equal(k->child->next->key, IMAP_SK_DRAFT);
        }
        if (k->key == IMAP_SK_UID) assert_set(&k->set, "1:*");
        if (k->key == IMAP_SK_YOUNGER) assert_int_equal(k->num, 20);
    }
    assert_null(k);
    /* the last key: "$" (RFC 5182) */
    k = cmd.search.root->child;
    while (k->next) k = k->next;
    assert_true(k->set.saved);
}

static void test_search_nesting_and_errors(void **state)
{
    ok("a SEARCH (OR (FROM a TO b) NOT (SEEN DELETED)) UNDELETED", IMAP_CMD_SEARCH);
    struct imap_search *k = cmd.search.root->child;
    assert_int_equal(k->key, IMAP_SK_AND);
    assert_int_equal(k->child->key, IMAP_SK_OR);
    struct imap_search *or = k->child;
    assert_int_equal(or->child->key, IMAP_SK_AND);
    assert_int_equal(or->child->child->key, IMAP_SK_FROM);
    assert_int_equal(or->child->next->key, IMAP_SK_NOT);
    assert_int_equal(or->child->next->child->key, IMAP_SK_AND);
    assert_int_equal(k->next->key, IMAP_SK_UNDELETED);

    /* RFC 7162 3.1.5 */
    ok("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338", IMAP_CMD_SEARCH);
    k = cmd.search.root->child;
    assert_int_equal(k->key, IMAP_SK_MODSEQ);
    assert_str(k->field, "/flags/\\draft");
    assert_int_equal(k->entry_type, IMAP_ENTRY_ALL);
    assert_int_equal(k->num, 620162338);
    bad("a SEARCH MODSEQ \"/foo\" all 1", "entry name");
    bad("a SEARCH MODSEQ \"/flags/x\" mine 1", "entry type");

    /* RFC 5182 */
    ok("A282 SEARCH RETURN (SAVE) FLAGGED", IMAP_CMD_SEARCH);
    assert_int_equal(cmd.search.ret, IMAP_SEARCHRET_SAVE);
    ok("A283 UID SEARCH UID $ SMALLER 4096", IMAP_CMD_SEARCH);
    assert_true(cmd.search.root->child->set.saved);
    ok("A284 FETCH $ (UID)", IMAP_CMD_FETCH);
    assert_true(cmd.set.saved);
    bad("A284 FETCH $,1 (UID)", "sequence set");

    bad("a SEARCH", "Missing argument");
    bad("a SEARCH BOGUS", "Unknown search key");
    bad("a SEARCH ()", NULL);
    bad("a SEARCH (SEEN", "Missing argument");
    bad("a SEARCH SEEN)", NULL);
    bad("a SEARCH OR SEEN", "Missing argument");
    bad("a SEARCH SINCE 32-Jan-2000", "Invalid date");
    bad("a SEARCH SINCE 1-Foo-2000", "Invalid date");
    bad("a SEARCH SINCE \"1-Jan-2000", "Invalid date");
    bad("a SEARCH LARGER -1", NULL);
    bad("a SEARCH LARGER 9223372036854775808", "Number too big");
    bad("a SEARCH RETURN (FOO) ALL", "return option");
    bad("a SEARCH CHARSET", "Missing argument");
    bad("a SEARCH 0", "sequence set");
    bad("a SEARCH UID 1:", "sequence set");
}

/* RFC 9051 6.4.5: FETCH data items */
static void test_9051_6_4_5_fetch(void **state)
{
    ok("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])", IMAP_CMD_FETCH);
    struct imap_fetch_att *fa = cmd.fetch;
    assert_int_equal(fa->type, IMAP_FA_FLAGS);
    fa = fa->next;
    assert_int_equal(fa->type, IMAP_FA_BODY_SECTION);
    assert_int_equal(fa->text, IMAP_SECT_HEADER_FIELDS);
    assert_int_equal(fa->fields.n, 2);
    assert_str(fa->fields.v[1], "FROM");
    assert_null(fa->next);

    ok("a fetch 1 (flags internaldate rfc822.size envelope body bodystructure uid modseq rfc822 "
       "rfc822.header rfc822.text)",
       IMAP_CMD_FETCH);
    static const enum imap_fetch_att_type want[] = {
        IMAP_FA_FLAGS, IMAP_FA_INTERNALDATE, IMAP_FA_RFC822_SIZE, IMAP_FA_ENVELOPE, IMAP_FA_BODY,
        IMAP_FA_BODYSTRUCTURE, IMAP_FA_UID, IMAP_FA_MODSEQ, IMAP_FA_RFC822, IMAP_FA_RFC822_HEADER,
        IMAP_FA_RFC822_TEXT,
    };
    fa = cmd.fetch;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++, fa = fa->next) {
        assert_non_null(fa);
        assert_int_equal(fa->type, want[i]);
    }
    assert_null(fa);

    ok("a FETCH 1 BODY.PEEK[1.2.3.MIME]<0.1024>", IMAP_CMD_FETCH);
    fa = cmd.fetch;
    assert_true(fa->peek);
    assert_int_equal(fa->nparts, 3);
    assert_int_equal(fa->parts[2], 3);
    assert_int_equal(fa->text, IMAP_SECT_MIME);
    assert_true(fa->partial);
    assert_int_equal(fa->origin, 0);
    assert_int_equal(fa->count, 1024);
    ok("a FETCH 1 BODY[]", IMAP_CMD_FETCH);
    assert_int_equal(cmd.fetch->text, IMAP_SECT_NONE);
    assert_int_equal(cmd.fetch->nparts, 0);
    ok("a FETCH 1 BODY[2]", IMAP_CMD_FETCH);
    assert_int_equal(cmd.fetch->nparts, 1);
    ok("a FETCH 1 BODY[3.TEXT]", IMAP_CMD_FETCH);
    assert_int_equal(cmd.fetch->text, IMAP_SECT_TEXT);
    ok("a FETCH 1 BODY[4.2.HEADER.FIELDS.NOT (Received \"X-Spam\")]", IMAP_CMD_FETCH);
    assert_int_equal(cmd.fetch->text, IMAP_SECT_HEADER_FIELDS_NOT);
    assert_str(cmd.fetch->fields.v[1], "X-Spam");
    ok("a FETCH 1 BODY[TEXT]<100.200>", IMAP_CMD_FETCH);
    /* RFC 3516 */
    ok("a FETCH 1 (BINARY[1.2]<5.6> BINARY.PEEK[] BINARY.SIZE[3])", IMAP_CMD_FETCH);
    fa = cmd.fetch;
    assert_int_equal(fa->type, IMAP_FA_BINARY);
    assert_false(fa->peek);
    assert_int_equal(fa->nparts, 2);
    assert_true(fa->partial);
    assert_int_equal(fa->next->type, IMAP_FA_BINARY);
    assert_true(fa->next->peek);
    assert_int_equal(fa->next->next->type, IMAP_FA_BINARY_SIZE);

    bad("a FETCH 1 BODY[MIME]", "section");
    bad("a FETCH 1 BODY[1.]", "section");
    bad("a FETCH 1 BODY[0]", NULL);
    bad("a FETCH 1 BODY[HEADER.FIELDS]", NULL);
    bad("a FETCH 1 BODY[HEADER.FIELDS ()]", NULL);
    bad("a FETCH 1 BODY[HEADER.FIELDS (a:b)]", "header field");
    bad("a FETCH 1 BODY[TEXT", "section");
    bad("a FETCH 1 BODY.PEEK", "section");
    bad("a FETCH 1 BINARY[HEADER]", "section");
    bad("a FETCH 1 BINARY.SIZE[1]<0.1>", NULL);
    bad("a FETCH 1 BODY[]<0.0>", "partial");
    bad("a FETCH 1 BODY[]<1>", "partial");
    bad("a FETCH 1 (FLAGS", NULL);
    bad("a FETCH 1 ()", NULL);
    bad("a FETCH 1 (ALL)", "Unknown FETCH attribute");
    bad("a FETCH 1 XYZZY", "Unknown FETCH attribute");
    bad("a FETCH 1", "Missing argument");
}

static void test_9051_6_4_5_fetch_macros(void **state)
{
    static const struct {
        const char *line;
        enum imap_fetch_macro m;
        size_t n;
    } t[] = {
        { "a FETCH 1:* ALL", IMAP_FETCH_ALL, 4 },
        { "a FETCH 1:* fast", IMAP_FETCH_FAST, 3 },
        { "a FETCH 1:* FULL", IMAP_FETCH_FULL, 5 },
    };
    for (size_t i = 0; i < 3; i++) {
        ok(t[i].line, IMAP_CMD_FETCH);
        assert_int_equal(cmd.fetch_macro, t[i].m);
        size_t n = 0;
        for (struct imap_fetch_att *fa = cmd.fetch; fa; fa = fa->next) n++;
        assert_int_equal(n, t[i].n);
        assert_int_equal(cmd.fetch->type, IMAP_FA_FLAGS);
    }
}

/* RFC 7162 3.1.4, 3.2.6 */
static void test_7162_fetch_store_modifiers(void **state)
{
    ok("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)", IMAP_CMD_FETCH);
    assert_true(cmd.has_changedsince);
    assert_int_equal(cmd.changedsince, 12345);
    ok("A03 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)", IMAP_CMD_FETCH);
    assert_true(cmd.vanished);
    bad("A03 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)", "VANISHED");
    bad("A03 UID FETCH 1:* (FLAGS) (VANISHED)", "VANISHED");
    bad("A03 UID FETCH 1:* (FLAGS) (FOO)", "FETCH modifier");
    ok("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)", IMAP_CMD_STORE);
    assert_true(cmd.has_unchangedsince);
    assert_int_equal(cmd.unchangedsince, 320162338);
    assert_true(cmd.store_silent);
    assert_int_equal(cmd.store_op, IMAP_STORE_ADD);
    assert_set(&cmd.set, "7,5,9");
    ok("a STORE 1 (UNCHANGEDSINCE 0) FLAGS ()", IMAP_CMD_STORE);
    assert_int_equal(cmd.list.n, 0);
    bad("a STORE 1 (FOO 1) FLAGS ()", "STORE modifier");
}

/* RFC 9051 6.4.6 */
static void test_9051_6_4_6_store(void **state)
{
    ok("A003 STORE 2:4 +FLAGS (\\Deleted)", IMAP_CMD_STORE);
    assert_int_equal(cmd.store_op, IMAP_STORE_ADD);
    assert_false(cmd.store_silent);
    ok("A003 STORE 2:4 -flags.silent \\Seen $Junk", IMAP_CMD_STORE);
    assert_int_equal(cmd.store_op, IMAP_STORE_REMOVE);
    assert_true(cmd.store_silent);
    assert_int_equal(cmd.list.n, 2);
    assert_str(cmd.list.v[1], "$Junk");
    ok("A003 UID STORE 2:4 FLAGS (\\Seen \\Answered foo)", IMAP_CMD_STORE);
    assert_true(cmd.uid);
    assert_int_equal(cmd.store_op, IMAP_STORE_SET);
    assert_int_equal(cmd.list.n, 3);
    bad("A003 STORE 2:4 *FLAGS (\\Seen)", NULL);
    bad("A003 STORE 2:4 FLAGS.LOUD (\\Seen)", "STORE data item");
    bad("A003 STORE 2:4 FLAGS", "Missing argument");
    bad("A003 STORE 2:4 FLAGS (\\Seen", NULL);
    bad("A003 STORE 2:4 FLAGS (\\)", "Invalid flag");
    bad("A003 STORE 2:4 FLAGS (a  b)", NULL);
}

/* RFC 5256 */
static void test_5256_sort_thread(void **state)
{
    ok("A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994", IMAP_CMD_SORT);
    assert_int_equal(cmd.nsort, 1);
    assert_int_equal(cmd.sort[0].key, IMAP_SORT_SUBJECT);
    assert_str(cmd.search.charset, "UTF-8");
    assert_int_equal(cmd.search.root->child->key, IMAP_SK_SINCE);
    ok("A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL", IMAP_CMD_SORT);
    assert_int_equal(cmd.nsort, 2);
    assert_true(cmd.sort[1].reverse);
    assert_int_equal(cmd.sort[1].key, IMAP_SORT_DATE);
    ok("A284 UID SORT (ARRIVAL CC FROM SIZE TO DISPLAYFROM DISPLAYTO) US-ASCII OR SEEN 1:5", IMAP_CMD_SORT);
    assert_true(cmd.uid);
    assert_int_equal(cmd.nsort, 7);
    ok("a SORT RETURN (MIN MAX) (DATE) UTF-8 ALL", IMAP_CMD_SORT);
    assert_int_equal(cmd.search.ret, IMAP_SEARCHRET_MIN | IMAP_SEARCHRET_MAX);
    bad("A285 SORT (SUBJECT) ALL", "Missing argument");
    bad("A285 SORT () UTF-8 ALL", NULL);
    bad("A285 SORT (REVERSE) UTF-8 ALL", NULL);
    bad("A285 SORT (WEIGHT) UTF-8 ALL", "sort criterion");
    ok("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000", IMAP_CMD_THREAD);
    assert_int_equal(cmd.thread, IMAP_THREAD_ORDEREDSUBJECT);
    ok("A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"", IMAP_CMD_THREAD);
    assert_int_equal(cmd.thread, IMAP_THREAD_REFERENCES);
    bad("A285 THREAD SIMPLE UTF-8 ALL", "threading algorithm");
}

/* RFC 2971, RFC 9208, RFC 4314 */
static void test_2971_id_9208_quota_4314_acl(void **state)
{
    ok("a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)", IMAP_CMD_ID);
    assert_int_equal(cmd.list.n, 6);
    assert_str(cmd.list.v[2], "version");
    assert_null(cmd.list.v[5].data);
    ok("a023 ID NIL", IMAP_CMD_ID);
    assert_true(cmd.id_nil);
    bad("a023 ID (\"name\")", NULL);
    bad("a023 ID ()", NULL);
    bad("a023 ID", "Missing argument");

    ok("G0001 GETQUOTA \"!partition/sda4\"", IMAP_CMD_GETQUOTA);
    assert_str(cmd.str1, "!partition/sda4");
    ok("G0002 GETQUOTAROOT INBOX", IMAP_CMD_GETQUOTAROOT);
    assert_string_equal(cmd.mailbox, "INBOX");
    ok("S0000 SETQUOTA \"#user/alice\" (STORAGE 510)", IMAP_CMD_SETQUOTA);
    assert_int_equal(cmd.nquota, 1);
    assert_str(cmd.quota[0].name, "STORAGE");
    assert_int_equal(cmd.quota[0].limit, 510);
    ok("S0001 SETQUOTA \"\" (STORAGE 1 MESSAGE 2)", IMAP_CMD_SETQUOTA);
    assert_int_equal(cmd.nquota, 2);
    ok("S0002 SETQUOTA x ()", IMAP_CMD_SETQUOTA);
    assert_int_equal(cmd.nquota, 0);
    bad("S0003 SETQUOTA x (STORAGE)", NULL);

    ok("A001 GETACL INBOX", IMAP_CMD_GETACL);
    ok("A002 SETACL INBOX/Drafts John lrQswicda", IMAP_CMD_SETACL);
    assert_string_equal(cmd.mailbox, "INBOX/Drafts");
    assert_str(cmd.str1, "John");
    assert_str(cmd.str2, "lrQswicda");
    ok("A002 SETACL x Fred -w", IMAP_CMD_SETACL);
    assert_str(cmd.str2, "-w");
    ok("A003 DELETEACL INBOX/Drafts Fred", IMAP_CMD_DELETEACL);
    ok("a LISTRIGHTS ~/Mail/saved smith", IMAP_CMD_LISTRIGHTS);
    assert_str(cmd.str1, "smith");
    ok("A003 MYRIGHTS INBOX", IMAP_CMD_MYRIGHTS);
    bad("A002 SETACL INBOX John", "Missing argument");
}

/* ---- tags and command names ---- */

static void test_9051_2_2_1_tags(void **state)
{
    bad("", "Empty command");
    assert_false(err.tagged);
    bad("+tag NOOP", "Invalid tag");
    assert_false(err.tagged);
    assert_null(cmd.tag);
    bad("a{b NOOP", "Invalid tag");
    assert_false(err.tagged);
    bad("a(b NOOP", "Invalid tag");
    bad(" NOOP", "Invalid tag");
    bad("a\"b NOOP", "Invalid tag");
    bad("a*b NOOP", "Invalid tag");
    bad("a\x80 NOOP", "Invalid tag");
    ok("a]b NOOP", IMAP_CMD_NOOP);
    assert_string_equal(cmd.tag, "a]b");
    bad("ab+ NOOP", "Invalid tag");
    bad("tag", "Missing command");
    assert_true(err.tagged);
    assert_string_equal(cmd.tag, "tag");
    bad("tag ", "Missing command");
    assert_true(err.tagged);
    bad("tag FROB", "Unknown command");
    assert_true(err.tagged);
    assert_int_equal(cmd.name, IMAP_CMD_UNKNOWN);
    assert_string_equal(cmd.tag, "tag");
    bad("tag UID FROB 1", "Unknown command");
    bad("tag  NOOP", NULL);
    ok("tag nOoP", IMAP_CMD_NOOP);
    assert_string_equal(imap_cmd_name_str(IMAP_CMD_FETCH), "FETCH");
    assert_string_equal(imap_cmd_name_str(IMAP_CMD_UNKNOWN), "UNKNOWN");
    for (int n = 1; n < IMAP_CMD_COUNT_; n++)
        assert_string_not_equal(imap_cmd_name_str((enum imap_cmd_name)n), "UNKNOWN");

    assert_int_equal(imap_tag_len("a1 NOOP\r\n", 9), 2);
    assert_int_equal(imap_tag_len("+a1 NOOP\r\n", 10), 0);
    assert_int_equal(imap_tag_len("a1\r\n", 4), 0);
}

static void test_line_terminators(void **state)
{
    static const char lf[] = "a NOOP\n";
    assert_int_equal(imap_parse_command(lf, sizeof lf - 1, &lim, 0, &arena, &cmd, &err), 0);
    static const char none[] = "a NOOP";
    assert_int_equal(imap_parse_command(none, sizeof none - 1, &lim, 0, &arena, &cmd, &err), -1);
    static const char two[] = "a NOOP\r\nb NOOP\r\n";
    assert_int_equal(imap_parse_command(two, sizeof two - 1, &lim, 0, &arena, &cmd, &err), -1);
    static const char cr[] = "a NOOP\r\r\n";
    assert_int_equal(imap_parse_command(cr, sizeof cr - 1, &lim, 0, &arena, &cmd, &err), -1);
    bad("a LOGIN \"x\ry\" z", "quoted");
    bad("a LOGIN \"x\\y\" z", "escape");
    bad("a LOGIN \"xy z", "quoted");
    bad("a LOGIN {3}x\r\nabc z", NULL);
    bad("a LOGIN {}\r\n z", "literal");
    bad("a LOGIN {99999999999999999999999}\r\n z", "Literal too big");
    assert_string_equal(err.code, "TOOBIG");
}

/* RFC 2177 */
static void test_2177_done(void **state)
{
    assert_true(imap_is_done("DONE\r\n", 6));
    assert_true(imap_is_done("done\n", 5));
    assert_true(imap_is_done("Done", 4));
    assert_false(imap_is_done("DONE \r\n", 7));
    assert_false(imap_is_done("a DONE\r\n", 8));
    assert_false(imap_is_done("DON\r\n", 5));
    assert_false(imap_is_done("", 0));
}

/* ---- mailbox names ---- */

/* RFC 3501 5.1.3 */
static void test_3501_5_1_3_mutf7(void **state)
{
    char out[128];
    const char *ex = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
    int n = imap_mutf7_decode(ex, strlen(ex), out, sizeof out);
    assert_int_equal(n, (int)strlen(out));
    assert_string_equal(out, "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
    sbuf b = SBUF_INIT;
    assert_int_equal(imap_mutf7_encode(out, strlen(out), &b), 0);
    assert_string_equal(sbuf_cstr(&b), ex);

    static const struct { const char *in, *out; } good[] = {
        { "&-", "&" }, { "a&-b", "a&b" }, { "", "" },
        { "&AOk-t&AOk-", "\xc3\xa9t\xc3\xa9" },
        { "&2D3eAA-", "\xf0\x9f\x98\x80" },        /* U+1F600: surrogate pair */
        { "Entw&APw-rfe", "Entw\xc3\xbcrfe" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (imap_mutf7_decode(good[i].in, strlen(good[i].in), out, sizeof out) < 0)
            fail_msg("rejected %s", good[i].in);
        assert_string_equal(out, good[i].out);
        sbuf_reset(&b);
        assert_int_equal(imap_mutf7_encode(good[i].out, strlen(good[i].out), &b), 0);
        assert_string_equal(sbuf_cstr(&b), good[i].in);
    }
    static const char *const bad_in[] = {
        "&", "&U,BTFw", "&Jjo!", "&AGE-",          /* unterminated, bad char, ASCII 'a' */
        "&2D0-", "&3gA-", "&2D3YPQ-",              /* lone high, lone low, high+high */
        "&AOl-",                                   /* non-zero padding bits */
        "&AOkA-",                                  /* leftover sextet */
        "a\x80", "tab\there", "&AAk-",              /* 8-bit, control, encoded control */
        "&U/BTFw-",                                /* "/" is not modified base64 */
    };
    for (size_t i = 0; i < sizeof bad_in / sizeof bad_in[0]; i++)
        if (imap_mutf7_decode(bad_in[i], strlen(bad_in[i]), out, sizeof out) >= 0)
            fail_msg("accepted %s", bad_in[i]);
    /* output too small */
    assert_int_equal(imap_mutf7_decode("abc", 3, out, 3), -1);
    assert_int_equal(imap_mutf7_decode("abc", 3, out, 4), 3);
    /* encoder refuses bad UTF-8 and controls */
    sbuf_reset(&b);
    assert_int_equal(imap_mutf7_encode("\xc0\xaf", 2, &b), -1);
    assert_int_equal(imap_mutf7_encode("\xed\xa0\x80", 3, &b), -1);
    assert_int_equal(imap_mutf7_encode("a\nb", 3, &b), -1);
    assert_int_equal(b.len, 0);
    sbuf_free(&b);
}

static void test_mailbox_names(void **state)
{
    /* RFC 9051 5.1: INBOX is case-insensitive, other names are not */
    ok("a SELECT iNbOx", IMAP_CMD_SELECT);
    assert_string_equal(cmd.mailbox, "INBOX");
    ok("a SELECT \"inbox\"", IMAP_CMD_SELECT);
    assert_string_equal(cmd.mailbox, "INBOX");
    ok("a SELECT {5}\r\ninBOX", IMAP_CMD_SELECT);
    assert_string_equal(cmd.mailbox, "INBOX");
    ok("a SELECT inbox.sub", IMAP_CMD_SELECT);
    assert_string_equal(cmd.mailbox, "inbox.sub");
    ok("a CREATE Entw&APw-rfe", IMAP_CMD_CREATE);
    assert_string_equal(cmd.mailbox, "Entw\xc3\xbcrfe");
    ok("a LIST \"\" &U,BTFw-/%", IMAP_CMD_LIST);
    assert_str(cmd.list.v[0], "\xe5\x8f\xb0\xe5\x8c\x97/%");
    bad("a CREATE \"Entw\xc3\xbcrfe\"", "modified UTF-7");
    bad("a CREATE &Jjo!", "modified UTF-7");
    bad("a CREATE {3}\r\na\tb", "control");
    bad("a RENAME x \"a&\"", "modified UTF-7");

    /* RFC 6855 3 / RFC 9051: with UTF-8 enabled names are taken as they are */
    pflags = IMAP_PARSE_UTF8;
    ok("a CREATE \"Entw\xc3\xbcrfe\"", IMAP_CMD_CREATE);
    assert_string_equal(cmd.mailbox, "Entw\xc3\xbcrfe");
    ok("a CREATE Entw&APw-rfe", IMAP_CMD_CREATE);
    assert_string_equal(cmd.mailbox, "Entw&APw-rfe");
    bad("a CREATE \"bad\xc3\"", "UTF-8");
    bad("a CREATE \"bad\xc0\xaf\"", "UTF-8");
    pflags = 0;

    char *longname = malloc(lim.mailbox_max + 16);
    memset(longname, 'x', lim.mailbox_max + 15);
    longname[lim.mailbox_max + 15] = '\0';
    sbuf l = SBUF_INIT;
    sbuf_printf(&l, "a CREATE %s", longname);
    bad(l.data, "too long");
    longname[lim.mailbox_max] = '\0';
    sbuf_reset(&l);
    sbuf_printf(&l, "a CREATE %s", longname);
    ok(l.data, IMAP_CMD_CREATE);
    free(longname);
    sbuf_free(&l);
}

/* ---- sequence sets (RFC 9051 9, sequence-set) ---- */

static void test_9051_9_seqset(void **state)
{
    ok("a FETCH 1:4294967295 UID", IMAP_CMD_FETCH);
    assert_int_equal(cmd.set.n, 1);
    assert_int_equal(cmd.set.r[0].lo, 1);
    assert_int_equal(cmd.set.r[0].hi, 4294967295u);
    assert_true(imap_seqset_contains(&cmd.set, 4294967295u, 4294967295u));
    assert_true(imap_seqset_contains(&cmd.set, 17, 100));
    assert_false(imap_seqset_contains(&cmd.set, 101, 100));
    assert_false(imap_seqset_contains(&cmd.set, 0, 100));

    /* iteration without expansion */
    struct imap_range r[1];
    assert_int_equal(imap_seqset_normalize(&cmd.set, 4294967295u, r), 1);
    struct imap_seqiter it;
    imap_seqiter_init(&it, r, 1);
    uint32_t v;
    for (uint32_t want = 1; want <= 1000; want++) {
        assert_true(imap_seqiter_next(&it, &v));
        assert_int_equal(v, want);
    }
    /* the end of the range: no overflow past 2^32-1 */
    struct imap_range top = { 4294967294u, 4294967295u };
    imap_seqiter_init(&it, &top, 1);
    assert_true(imap_seqiter_next(&it, &v));
    assert_int_equal(v, 4294967294u);
    assert_true(imap_seqiter_next(&it, &v));
    assert_int_equal(v, 4294967295u);
    assert_false(imap_seqiter_next(&it, &v));

    ok("a FETCH 2,4:7,9,12:* FLAGS", IMAP_CMD_FETCH);
    assert_set(&cmd.set, "2,4:7,9,12:*");
    assert_false(imap_seqset_contains(&cmd.set, 3, 15));
    assert_true(imap_seqset_contains(&cmd.set, 15, 15));
    assert_true(imap_seqset_contains(&cmd.set, 13, 15));
    /* "12:*" with max 10 is 10:12: 10 is in, 11 does not exist */
    assert_true(imap_seqset_contains(&cmd.set, 10, 10));
    assert_false(imap_seqset_contains(&cmd.set, 8, 10));

    ok("a FETCH 3,5,1:2,8,30:20,* FLAGS", IMAP_CMD_FETCH);
    struct imap_range out[6];
    size_t n = imap_seqset_normalize(&cmd.set, 25, out);
    assert_int_equal(n, 4);
    assert_int_equal(out[0].lo, 1);
    assert_int_equal(out[0].hi, 3);
    assert_int_equal(out[1].lo, 5);
    assert_int_equal(out[1].hi, 5);
    assert_int_equal(out[2].lo, 8);
    assert_int_equal(out[3].lo, 20);
    assert_int_equal(out[3].hi, 25);
    imap_seqiter_init(&it, out, n);
    uint32_t count = 0, last = 0;
    while (imap_seqiter_next(&it, &v)) {
        assert_true(v > last);
        assert_true(imap_seqset_contains(&cmd.set, v, 25));
        assert_true(imap_ranges_contains(out, n, v));
        last = v;
        count++;
    }
    assert_int_equal(count, 11);
    for (uint32_t x = 0; x <= 30; x++)
        assert_int_equal(imap_ranges_contains(out, n, x), imap_seqset_contains(&cmd.set, x, 25));
    /* "*:4" with max 25 is 4:25 */
    ok("a FETCH *:4 FLAGS", IMAP_CMD_FETCH);
    assert_int_equal(imap_seqset_normalize(&cmd.set, 25, out), 1);
    assert_int_equal(out[0].lo, 4);
    assert_int_equal(out[0].hi, 25);
    assert_int_equal(imap_seqset_normalize(&cmd.set, 0, out), 0);

    ok("a FETCH * FLAGS", IMAP_CMD_FETCH);
    assert_true(imap_seqset_contains(&cmd.set, 7, 7));
    assert_false(imap_seqset_contains(&cmd.set, 6, 7));
    assert_set(&cmd.set, "*");

    static const char *const bad_sets[] = {
        "0", "1:0", "1:", ":1", ",1", "1,", "1,,2", "4294967296", "1:4294967296", "1-2", "a", "1:*:2", "$$",
        "$:1", "1.2",
    };
    for (size_t i = 0; i < sizeof bad_sets / sizeof bad_sets[0]; i++) {
        char b[64];
        snprintf(b, sizeof b, "a FETCH %s FLAGS", bad_sets[i]);
        bad(b, "sequence set");
    }
}

/* ---- dates ---- */

static void test_9051_9_dates(void **state)
{
    time_t t;
    int z;
    assert_int_equal(imap_parse_date("1-Feb-1994", 10, &t), 0);
    assert_true(t == 760060800);
    assert_int_equal(imap_parse_date("01-feb-1994", 11, &t), 0);
    assert_true(t == 760060800);
    assert_int_equal(imap_parse_date("1-Jan-1970", 10, &t), 0);
    assert_true(t == 0);
    assert_int_equal(imap_parse_date("29-Feb-2000", 11, &t), 0);
    assert_int_equal(imap_parse_date("29-Feb-1900", 11, &t), -1);
    assert_int_equal(imap_parse_date("29-Feb-2023", 11, &t), -1);
    assert_int_equal(imap_parse_date("31-Apr-2023", 11, &t), -1);
    assert_int_equal(imap_parse_date("0-Jan-2023", 10, &t), -1);
    assert_int_equal(imap_parse_date("001-Jan-2023", 12, &t), -1);
    assert_int_equal(imap_parse_date("1-Jan-23", 8, &t), -1);
    assert_int_equal(imap_parse_date("1-Jan-20233", 11, &t), -1);
    assert_int_equal(imap_parse_date("1 Jan 2023", 10, &t), -1);

    assert_int_equal(imap_parse_datetime("17-Jul-1996 02:44:25 -0700", 26, &t, &z), 0);
    assert_true(t == 837596665);
    assert_int_equal(z, -420);
    assert_int_equal(imap_parse_datetime(" 7-Feb-1994 21:52:25 +0130", 26, &t, &z), 0);
    assert_int_equal(z, 90);
    assert_int_equal(imap_parse_datetime("7-Feb-1994 21:52:25 -0800", 25, &t, &z), -1);
    assert_int_equal(imap_parse_datetime("07-Feb-1994 21:52:25 0800", 25, &t, &z), -1);
    assert_int_equal(imap_parse_datetime("07-Feb-1994 21:52:25 +0860", 26, &t, &z), -1);
    assert_int_equal(imap_parse_datetime("07-Feb-1994 21:60:25 +0800", 26, &t, &z), -1);
    assert_int_equal(imap_parse_datetime("07-Feb-1994 21:52 +0800", 23, &t, &z), -1);
}

/* ---- scanning ---- */

struct scan_trace {
    int events[64];
    uint64_t sizes[64];
    int kinds[64];
    size_t n;
    size_t end;
    int last;
};

/* Drive the scanner over buf fed `step` bytes at a time; record every event. */
static void scan_feed(const char *buf, size_t len, size_t step, struct scan_trace *tr)
{
    struct imap_scan s;
    imap_scan_init(&s);
    memset(tr, 0, sizeof *tr);
    size_t have = step < len ? step : len;
    for (;;) {
        int r = imap_cmd_scan(buf, have, &lim, &s);
        tr->last = r;
        if (r == IMAP_SCAN_MORE) {
            if (have == len) return;
            have = have + step < len ? have + step : len;
            continue;
        }
        if (tr->n < 64) {
            tr->events[tr->n] = r;
            tr->sizes[tr->n] = s.lit_size;
            tr->kinds[tr->n] = (int)s.lit_kind * 2 + s.lit_binary;
            tr->n++;
        }
        if (r == IMAP_SCAN_DONE || r == IMAP_SCAN_ERROR) {
            tr->end = s.end;
            return;
        }
    }
}

static void scan_same(const char *buf, size_t len)
{
    struct scan_trace whole, part;
    scan_feed(buf, len, len ? len : 1, &whole);
    for (size_t step = 1; step <= 7; step++) {
        scan_feed(buf, len, step, &part);
        assert_int_equal(part.n, whole.n);
        assert_int_equal(part.end, whole.end);
        assert_int_equal(part.last, whole.last);
        assert_memory_equal(part.events, whole.events, sizeof whole.events);
        assert_memory_equal(part.sizes, whole.sizes, sizeof whole.sizes);
        assert_memory_equal(part.kinds, whole.kinds, sizeof whole.kinds);
    }
}

static void test_9051_7_5_scan_literals(void **state)
{
    const char *c = "a LOGIN {3}\r\nabc {4+}\r\nd\r\nf\r\nb NOOP\r\n";
    struct scan_trace tr;
    scan_feed(c, strlen(c), strlen(c), &tr);
    assert_int_equal(tr.n, 3);
    assert_int_equal(tr.events[0], IMAP_SCAN_LITERAL);
    assert_int_equal(tr.sizes[0], 3);
    assert_int_equal(tr.kinds[0], IMAP_LIT_SYNC * 2);
    assert_int_equal(tr.events[1], IMAP_SCAN_LITERAL);
    assert_int_equal(tr.sizes[1], 4);
    assert_int_equal(tr.kinds[1], IMAP_LIT_PLUS * 2);
    assert_int_equal(tr.events[2], IMAP_SCAN_DONE);
    /* the literal data "d\r\nf" holds a CRLF that does not end the command */
    assert_int_equal(tr.end, strlen("a LOGIN {3}\r\nabc {4+}\r\nd\r\nf\r\n"));
    assert_int_equal(imap_parse_command(c, tr.end, &lim, 0, &arena, &cmd, &err), 0);
    assert_str(cmd.str2, "d\r\nf");
    scan_same(c, strlen(c));

    /* the announcement is reported once; data arriving later is skipped */
    struct imap_scan s;
    imap_scan_init(&s);
    const char *a = "x APPEND box ~{5-}\r\n";
    assert_int_equal(imap_cmd_scan(a, strlen(a), &lim, &s), IMAP_SCAN_LITERAL);
    assert_int_equal(s.lit_kind, IMAP_LIT_MINUS);
    assert_true(s.lit_binary);
    assert_int_equal(s.lit_size, 5);
    assert_int_equal(s.lit_offset, strlen(a));
    assert_int_equal(imap_cmd_scan(a, strlen(a), &lim, &s), IMAP_SCAN_MORE);
    const char *full = "x APPEND box ~{5-}\r\n\r\n\r\n\n\r\n";
    assert_int_equal(imap_cmd_scan(full, strlen(full) - 1, &lim, &s), IMAP_SCAN_MORE);
    assert_int_equal(imap_cmd_scan(full, strlen(full), &lim, &s), IMAP_SCAN_DONE);
    assert_int_equal(s.end, strlen(full));

    /* braces in quoted strings, or not at the end of the line, are not literals */
    static const char *const plain[] = {
        "a LOGIN \"{3}\" x\r\n", "a LOGIN \"x\\\"{3}\r\n", "a LOGIN {3} x\r\n", "a LOGIN {x}\r\n",
        "a LOGIN {3+-}\r\n", "a LOGIN {}\r\n", "a LOGIN }\r\n", "\r\n", "\n",
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        scan_feed(plain[i], strlen(plain[i]), 1000, &tr);
        if (tr.n != 1 || tr.events[0] != IMAP_SCAN_DONE || tr.end != strlen(plain[i]))
            fail_msg("%s: %zu events, first %d", plain[i], tr.n, tr.events[0]);
        scan_same(plain[i], strlen(plain[i]));
    }
    /* a bare LF ends a line and an announcement */
    const char *lf = "a LOGIN {1}\nx y\n";
    scan_feed(lf, strlen(lf), 1000, &tr);
    assert_int_equal(tr.n, 2);
    assert_int_equal(tr.end, strlen(lf));
    /* a literal right after a literal: lookback must not read literal data */
    const char *ll = "a LOGIN {2}\r\n{1 {3}\r\n}\r\n\r\n";
    scan_feed(ll, strlen(ll), 1000, &tr);
    assert_int_equal(tr.n, 3);
    assert_int_equal(tr.sizes[1], 3);
    assert_int_equal(tr.end, strlen(ll));
    /* ... and literal data ending in "{9}" followed by CRLF is not an announcement */
    const char *ld = "a LOGIN x {3}\r\n{9}\r\n";
    scan_feed(ld, strlen(ld), 1000, &tr);
    assert_int_equal(tr.n, 2);
    assert_int_equal(tr.events[1], IMAP_SCAN_DONE);
    assert_int_equal(tr.end, strlen(ld));
    scan_same(ld, strlen(ld));
}

static void test_scan_incremental_equals_whole(void **state)
{
    static const char *const cmds[] = {
        "a001 login mrc secret\r\n",
        "A003 APPEND saved-messages (\\Seen) {10}\r\n0123456789 (\\Seen) {3+}\r\nabc ~{2}\r\n\0\0\r\n",
        "a SEARCH CHARSET UTF-8 TEXT {4}\r\n\xd0\x9b\xd0\xb8 OR \"a\\\"{1}\" b\r\n",
        "a \"unterminated {3}\r\n",
        "a LOGIN {0}\r\n {0+}\r\n\r\n",
        "garbage\\\"\"\"{1}\r\nx\r\n",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        size_t len = strlen(cmds[i]);
        if (i == 1) len += 4; /* the NULs */
        scan_same(cmds[i], len);
    }
}

/* The scanner must not touch literal data: put it on PROT_NONE pages. */
static void test_scan_skips_literal_data(void **state)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t pages = 64;
    char *m = mmap(NULL, (size_t)pg * pages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    char hdr[64];
    size_t datalen = (size_t)pg * (pages - 2);
    /* not an APPEND message (those are diverted), so kept in the buffer */
    lim.command_max = 64u * 1024 * 1024;
    int hl = snprintf(hdr, sizeof hdr, "a LOGIN x {%zu}\r\n", datalen);
    char *start = m + pg - hl;
    memcpy(start, hdr, (size_t)hl);
    memcpy(m + pg + datalen, "\r\n", 2);
    assert_int_equal(mprotect(m + pg, datalen, PROT_NONE), 0);
    struct imap_scan s;
    imap_scan_init(&s);
    size_t total = (size_t)hl + datalen + 2;
    size_t have = 0, calls = 0;
    int r;
    do {
        have = have + 4096 < total ? have + 4096 : total;
        r = imap_cmd_scan(start, have, &lim, &s);
        calls++;
        if (r == IMAP_SCAN_LITERAL) r = imap_cmd_scan(start, have, &lim, &s);
    } while (r == IMAP_SCAN_MORE && have < total);
    assert_int_equal(r, IMAP_SCAN_DONE);
    assert_int_equal(s.end, total);
    assert_true(calls > 10);
    munmap(m, (size_t)pg * pages);
}

static void test_scan_limits(void **state)
{
    struct imap_scan s;
    lim.literal_max = 100;
    imap_scan_init(&s);
    const char *big = "a APPEND x {101}\r\n";
    assert_int_equal(imap_cmd_scan(big, strlen(big), &lim, &s), IMAP_SCAN_ERROR);
    assert_int_equal(s.error, IMAP_SCAN_ERR_LITERAL);
    assert_int_equal(s.lit_size, 101);
    assert_int_equal(s.end, strlen(big));
    assert_int_equal(imap_tag_len(big, s.end), 1);
    imap_scan_init(&s);
    const char *huge = "a APPEND x {184467440737095516150}\r\n";
    assert_int_equal(imap_cmd_scan(huge, strlen(huge), &lim, &s), IMAP_SCAN_ERROR);
    assert_int_equal(s.error, IMAP_SCAN_ERR_LITERAL);
    imap_scan_init(&s);
    const char *fits = "a APPEND x {100}\r\n";
    assert_int_equal(imap_cmd_scan(fits, strlen(fits), &lim, &s), IMAP_SCAN_LITERAL);

    /* command_max counts literal data of every literal kept in memory */
    imap_limits_default(&lim);
    lim.command_max = 200;
    imap_scan_init(&s);
    sbuf b = SBUF_INIT;
    sbuf_puts(&b, "a SEARCH TEXT {60}\r\n");
    for (int i = 0; i < 60; i++) sbuf_putc(&b, 'x');
    sbuf_puts(&b, " {60}\r\n");
    for (int i = 0; i < 60; i++) sbuf_putc(&b, 'x');
    size_t mark = b.len;
    sbuf_puts(&b, " {60}\r\n");
    assert_int_equal(imap_cmd_scan(b.data, b.len, &lim, &s), IMAP_SCAN_LITERAL);
    assert_int_equal(imap_cmd_scan(b.data, b.len, &lim, &s), IMAP_SCAN_LITERAL);
    assert_int_equal(imap_cmd_scan(b.data, b.len, &lim, &s), IMAP_SCAN_ERROR);
    assert_int_equal(s.error, IMAP_SCAN_ERR_COMMAND);
    assert_int_equal(s.end, mark + 7);

    /* literals_max */
    imap_limits_default(&lim);
    lim.literals_max = 2;
    imap_scan_init(&s);
    const char *many = "a APPEND x {1+}\r\nx {1+}\r\nx {1+}\r\nx\r\n";
    assert_int_equal(imap_cmd_scan(many, strlen(many), &lim, &s), IMAP_SCAN_LITERAL);
    assert_int_equal(imap_cmd_scan(many, strlen(many), &lim, &s), IMAP_SCAN_LITERAL);
    assert_int_equal(imap_cmd_scan(many, strlen(many), &lim, &s), IMAP_SCAN_ERROR);
    assert_int_equal(s.error, IMAP_SCAN_ERR_LITERALS);

    /* line_max counts text on all lines, not literal data */
    imap_limits_default(&lim);
    lim.line_max = 30;
    imap_scan_init(&s);
    sbuf_reset(&b);
    sbuf_puts(&b, "a LOGIN {50}\r\n");
    for (int i = 0; i < 50; i++) sbuf_putc(&b, 'y');
    sbuf_puts(&b, " pw\r\n");
    assert_int_equal(imap_cmd_scan(b.data, b.len, &lim, &s), IMAP_SCAN_LITERAL);
    assert_int_equal(imap_cmd_scan(b.data, b.len, &lim, &s), IMAP_SCAN_DONE);
    imap_scan_init(&s);
    sbuf_reset(&b);
    for (int i = 0; i < 31; i++) sbuf_putc(&b, 'z');
    assert_int_equal(imap_cmd_scan(b.data, b.len, &lim, &s), IMAP_SCAN_ERROR);
    assert_int_equal(s.error, IMAP_SCAN_ERR_LINE);
    assert_non_null(s.error_text);
    sbuf_free(&b);
}

/* ---- diverted literals: APPEND messages do not stay in memory ---- */

/* What a session does with the scanner: the stream arrives `step` bytes at
 * a time into a command buffer; the data of a diverted literal is taken
 * out of it (here only counted and checked for NUL, as if written to a
 * spool file) so the buffer holds text and in-memory literals only.  With
 * `discard`, IMAP_SCAN_ERR_COMMAND of a non-synchronizing literal is
 * answered with imap_scan_discard(), as the session does. */
struct divert_trace {
    int r[32];
    uint64_t size[32];
    bool append[32], divert[32];
    size_t n;
    int last;
    enum imap_scan_error error;
    sbuf cmd;                     /* the command as the parser gets it */
    size_t end;                   /* its length, after IMAP_SCAN_DONE */
    struct imap_extlit ext[32];
    size_t next;
    uint64_t spooled;             /* bytes taken out of the stream */
};

static void divert_take(struct divert_trace *t, struct imap_scan *s, uint64_t *skip, const char *p,
                        size_t n, bool drop)
{
    if (!drop && !s->lit_binary && t->next && memchr(p, 0, n)) t->ext[t->next - 1].nul = true;
    t->spooled += n;
    *skip -= n;
}

static void scan_divert(const char *in, size_t len, size_t step, bool discard, struct divert_trace *t)
{
    struct imap_scan s;
    imap_scan_init(&s);
    sbuf_free(&t->cmd);
    memset(t, 0, sizeof *t);
    sbuf_init(&t->cmd);
    size_t pos = 0;
    uint64_t skip = 0;
    bool drop = false;
    for (;;) {
        int r = imap_cmd_scan(t->cmd.data ? t->cmd.data : "", t->cmd.len, &lim, &s);
        t->last = r;
        if (r == IMAP_SCAN_MORE) {
            if (pos == len) return;
            size_t chunk = len - pos < step ? len - pos : step;
            size_t take = skip < chunk ? (size_t)skip : chunk;
            divert_take(t, &s, &skip, in + pos, take, drop);
            sbuf_append(&t->cmd, in + pos + take, chunk - take);
            pos += chunk;
            continue;
        }
        if (r == IMAP_SCAN_ERROR && discard && s.error == IMAP_SCAN_ERR_COMMAND && s.lit_kind != IMAP_LIT_SYNC) {
            imap_scan_discard(&s);
            drop = true;
            r = IMAP_SCAN_LITERAL;
        }
        if (t->n < 32) {
            t->r[t->n] = r;
            t->size[t->n] = s.lit_size;
            t->append[t->n] = s.lit_append;
            t->divert[t->n] = s.lit_divert;
            t->n++;
        }
        if (r != IMAP_SCAN_LITERAL) {
            t->error = s.error;
            t->end = s.end;
            return;
        }
        if (!s.lit_divert) continue;
        if (!drop && t->next < 32)
            t->ext[t->next++] = (struct imap_extlit){ .offset = s.lit_offset, .size = s.lit_size,
                                                      .where = t->spooled };
        skip = s.lit_size;
        size_t have = t->cmd.len - s.lit_offset;
        size_t take = skip < have ? (size_t)skip : have;
        divert_take(t, &s, &skip, t->cmd.data + s.lit_offset, take, drop);
        memmove(t->cmd.data + s.lit_offset, t->cmd.data + s.lit_offset + take, have - take);
        t->cmd.len -= take;
    }
}

/* Whole or in any pieces: the same events, command text and spool. */
static void divert_same(const char *in, size_t len, bool discard, struct divert_trace *whole)
{
    struct divert_trace part = { 0 };
    scan_divert(in, len, len, discard, whole);
    for (size_t step = 1; step <= 7; step++) {
        scan_divert(in, len, step, discard, &part);
        assert_int_equal(part.n, whole->n);
        assert_int_equal(part.last, whole->last);
        assert_memory_equal(part.r, whole->r, sizeof part.r);
        assert_memory_equal(part.size, whole->size, sizeof part.size);
        assert_memory_equal(part.append, whole->append, sizeof part.append);
        assert_memory_equal(part.divert, whole->divert, sizeof part.divert);
        assert_int_equal(part.end, whole->end);
        if (part.end) assert_memory_equal(part.cmd.data, whole->cmd.data, part.end);
        assert_int_equal(part.next, whole->next);
        assert_memory_equal(part.ext, whole->ext, part.next * sizeof part.ext[0]);
        assert_int_equal(part.spooled, whole->spooled);
    }
    sbuf_free(&part.cmd);
}

static void stream_literal(sbuf *b, const char *announce, size_t n, char fill)
{
    sbuf_puts(b, announce);
    for (size_t i = 0; i < n; i++) sbuf_putc(b, fill);
}

/* RFC 3502 3 / RFC 9051 6.3.12: every literal of APPEND after the mailbox
 * name is a message; big ones are diverted, the rest of the command stays
 * in the buffer and parses with the diverted data named by its entry. */
static void test_3502_scan_diverts_append_messages(void **state)
{
    lim.spool_min = 1000;
    sbuf b = SBUF_INIT;
    stream_literal(&b, "a APPEND INBOX (\\Seen) {5000+}\r\n", 5000, 'm');
    stream_literal(&b, " {5}\r\n", 5, 'h');
    stream_literal(&b, " \"01-Jan-2020 00:00:00 +0000\" ~{3000}\r\n", 3000, 'b');
    sbuf_puts(&b, "\r\n");
    struct divert_trace t = { 0 };
    divert_same(b.data, b.len, false, &t);
    assert_int_equal(t.n, 4);
    assert_int_equal(t.last, IMAP_SCAN_DONE);
    assert_true(t.append[0] && t.divert[0]);
    assert_true(t.append[1] && !t.divert[1]);     /* small: in memory */
    assert_true(t.append[2] && t.divert[2]);
    assert_int_equal(t.next, 2);
    assert_int_equal(t.spooled, 8000);
    const char *want = "a APPEND INBOX (\\Seen) {5000+}\r\n {5}\r\nhhhhh \"01-Jan-2020 00:00:00 +0000\" ~{3000}\r\n\r\n";
    assert_int_equal(t.end, strlen(want));
    assert_memory_equal(t.cmd.data, want, t.end);
    assert_int_equal(t.ext[0].offset, strlen("a APPEND INBOX (\\Seen) {5000+}\r\n"));
    assert_int_equal(t.ext[1].where, 5000);

    assert_int_equal(imap_parse_command_ext(t.cmd.data, t.cmd.len, t.ext, t.next, &lim, 0, &arena, &cmd, &err), 0);
    assert_int_equal(cmd.name, IMAP_CMD_APPEND);
    assert_int_equal(cmd.nmsgs, 3);
    assert_ptr_equal(cmd.msgs[0].ext, &t.ext[0]);
    assert_null(cmd.msgs[0].data.data);
    assert_int_equal(cmd.msgs[0].data.len, 5000);
    assert_true(cmd.msgs[0].has_flags);
    assert_null(cmd.msgs[1].ext);
    assert_str(cmd.msgs[1].data, "hhhhh");
    assert_ptr_equal(cmd.msgs[2].ext, &t.ext[1]);
    assert_true(cmd.msgs[2].binary && cmd.msgs[2].has_date);
    assert_int_equal(cmd.msgs[2].data.len, 3000);
    /* without the entries the same text is an incomplete literal */
    assert_int_equal(imap_parse_command(t.cmd.data, t.cmd.len, &lim, 0, &arena, &cmd, &err), -1);

    /* a mailbox name sent as a literal is not a message; RFC 6855 UTF8 (~{N}) is */
    sbuf_reset(&b);
    stream_literal(&b, "a append {5}\r\n", 5, 'I');
    stream_literal(&b, " UTF8 (~{2000+}\r\n", 2000, 'u');
    sbuf_puts(&b, ")\r\n");
    divert_same(b.data, b.len, false, &t);
    assert_int_equal(t.n, 3);
    assert_true(!t.append[0] && !t.divert[0]);
    assert_true(t.append[1] && t.divert[1]);
    assert_int_equal(imap_parse_command_ext(t.cmd.data, t.cmd.len, t.ext, t.next, &lim, 0, &arena, &cmd, &err), 0);
    assert_string_equal(cmd.mailbox, "IIIII");
    assert_true(cmd.msgs[0].utf8);
    assert_int_equal(cmd.msgs[0].data.len, 2000);

    /* other commands' literals are never diverted, however big */
    sbuf_reset(&b);
    stream_literal(&b, "a SEARCH TEXT {5000}\r\n", 5000, 's');
    sbuf_puts(&b, "\r\n");
    divert_same(b.data, b.len, false, &t);
    assert_true(!t.append[0] && !t.divert[0]);
    assert_int_equal(t.last, IMAP_SCAN_DONE);
    assert_int_equal(t.end, b.len);
    sbuf_free(&b);
    sbuf_free(&t.cmd);
}

/* The in-memory budget: small messages that would overflow it are
 * diverted too (MULTIAPPEND is bounded by disk, not memory); any other
 * literal that would overflow it is an error, after which a session can
 * drop the rest of the command and stay in step. */
static void test_scan_command_max_and_discard(void **state)
{
    lim.command_max = 200;
    sbuf b = SBUF_INIT;
    stream_literal(&b, "a APPEND x {60+}\r\n", 60, 'a');
    stream_literal(&b, " {60+}\r\n", 60, 'b');
    stream_literal(&b, " {60+}\r\n", 60, 'c');
    stream_literal(&b, " {60+}\r\n", 60, 'd');
    sbuf_puts(&b, "\r\n");
    struct divert_trace t = { 0 };
    divert_same(b.data, b.len, false, &t);
    assert_int_equal(t.last, IMAP_SCAN_DONE);
    assert_int_equal(t.n, 5);
    assert_false(t.divert[0]);
    assert_false(t.divert[1]);
    assert_true(t.divert[2]);                     /* 18+60+8+60+8 + 60 > 200 */
    assert_true(t.divert[3]);
    assert_true(t.cmd.len <= lim.command_max);
    assert_int_equal(imap_parse_command_ext(t.cmd.data, t.cmd.len, t.ext, t.next, &lim, 0, &arena, &cmd, &err), 0);
    assert_int_equal(cmd.nmsgs, 4);
    assert_int_equal(cmd.msgs[1].data.data[0], 'b');
    assert_ptr_equal(cmd.msgs[3].ext, &t.ext[1]);
    assert_int_equal(t.ext[1].where, 60);

    /* SEARCH: the third literal does not fit; discarded, the scan goes on
     * to the real end of the command, and a later literal is dropped too
     * (its data, which looks like a command, is never taken as text) */
    sbuf_reset(&b);
    stream_literal(&b, "a SEARCH TEXT {60+}\r\n", 60, 'a');
    stream_literal(&b, " TEXT {60+}\r\n", 60, 'b');
    stream_literal(&b, " TEXT {100+}\r\n", 100, 'c');
    stream_literal(&b, " TEXT {10+}\r\n", 0, 0);
    sbuf_puts(&b, "b LOGOUT\r\n\r\n");
    size_t end = b.len;
    sbuf_puts(&b, "c NOOP\r\n");
    divert_same(b.data, b.len, true, &t);
    assert_int_equal(t.last, IMAP_SCAN_DONE);
    assert_int_equal(t.n, 5);
    assert_false(t.divert[1]);
    assert_true(t.divert[2] && t.divert[3]);
    assert_int_equal(t.next, 0);                  /* nothing kept */
    assert_int_equal(t.spooled, 110);
    assert_int_equal(t.end, end - 110);
    /* without discarding it is an error at the third literal */
    divert_same(b.data, b.len, false, &t);
    assert_int_equal(t.last, IMAP_SCAN_ERROR);
    assert_int_equal(t.error, IMAP_SCAN_ERR_COMMAND);
    assert_int_equal(t.size[t.n - 1], 100);

    /* literal_max still holds for dropped literals */
    sbuf_reset(&b);
    lim.literal_max = 1000;
    stream_literal(&b, "a SEARCH TEXT {300+}\r\n", 300, 'a');
    sbuf_puts(&b, " TEXT {1001+}\r\n");
    divert_same(b.data, b.len, true, &t);
    assert_int_equal(t.last, IMAP_SCAN_ERROR);
    assert_int_equal(t.error, IMAP_SCAN_ERR_LITERAL);
    sbuf_free(&b);
    sbuf_free(&t.cmd);
}

/* The parser takes diverted data only where APPEND has a message, and
 * applies the literal rules to it. */
static void test_parse_diverted_literals(void **state)
{
    const char *c = "a APPEND {5}\r\n (\\Seen) {5}\r\nhello\r\n";
    struct imap_extlit x = { .offset = strlen("a APPEND {5}\r\n"), .size = 5 };
    /* the mailbox position: refused */
    assert_int_equal(imap_parse_command_ext(c, strlen(c), &x, 1, &lim, 0, &arena, &cmd, &err), -1);
    assert_string_equal(err.text, "Literal not allowed here");
    const char *m = "a APPEND box {7}\r\n\r\n";
    x.offset = strlen("a APPEND box {7}\r\n");
    x.size = 7;
    assert_int_equal(imap_parse_command_ext(m, strlen(m), &x, 1, &lim, 0, &arena, &cmd, &err), 0);
    assert_int_equal(cmd.msgs[0].data.len, 7);
    /* a size that disagrees with the announcement */
    x.size = 8;
    assert_int_equal(imap_parse_command_ext(m, strlen(m), &x, 1, &lim, 0, &arena, &cmd, &err), -1);
    /* NUL only in literal8 (RFC 3516 4.2) */
    x.size = 7;
    x.nul = true;
    assert_int_equal(imap_parse_command_ext(m, strlen(m), &x, 1, &lim, 0, &arena, &cmd, &err), -1);
    assert_string_equal(err.text, "NUL in literal (use literal8)");
    const char *m8 = "a APPEND box ~{7}\r\n\r\n";
    x.offset = strlen("a APPEND box ~{7}\r\n");
    assert_int_equal(imap_parse_command_ext(m8, strlen(m8), &x, 1, &lim, 0, &arena, &cmd, &err), 0);
    assert_true(cmd.msgs[0].binary);
    /* literal_max applies as to data in the buffer */
    lim.literal_max = 6;
    assert_int_equal(imap_parse_command_ext(m8, strlen(m8), &x, 1, &lim, 0, &arena, &cmd, &err), -1);
    assert_string_equal(err.code, "TOOBIG");
}

/* ---- parser limits: errors, not crashes ---- */

static void test_parse_limits(void **state)
{
    sbuf b = SBUF_INIT;
    /* depth 32 is fine, 33 is not */
    sbuf_puts(&b, "a SEARCH ");
    for (int i = 0; i < 32; i++) sbuf_putc(&b, '(');
    sbuf_puts(&b, "ALL");
    for (int i = 0; i < 32; i++) sbuf_putc(&b, ')');
    ok(b.data, IMAP_CMD_SEARCH);
    sbuf_reset(&b);
    sbuf_puts(&b, "a SEARCH ");
    for (int i = 0; i < 33; i++) sbuf_putc(&b, '(');
    sbuf_puts(&b, "ALL");
    for (int i = 0; i < 33; i++) sbuf_putc(&b, ')');
    bad(b.data, "nested too deeply");
    assert_string_equal(err.code, "LIMIT");
    assert_true(err.tagged);

    /* NOT and OR nest too; a deep chain far beyond the limit stays an error */
    sbuf_reset(&b);
    sbuf_puts(&b, "a SEARCH ");
    for (int i = 0; i < 100000; i++) sbuf_puts(&b, "NOT ");
    sbuf_puts(&b, "ALL");
    lim.depth_max = 1u << 30; /* even a silly configuration is clamped */
    lim.tokens_max = 1u << 30;
    bad(b.data, "nested too deeply");
    imap_limits_default(&lim);
    sbuf_reset(&b);
    sbuf_puts(&b, "a SEARCH ");
    for (int i = 0; i < 40; i++) sbuf_puts(&b, "OR ALL ");
    sbuf_puts(&b, "ALL");
    bad(b.data, "nested too deeply");

    /* tokens */
    lim.tokens_max = 100;
    sbuf_reset(&b);
    sbuf_puts(&b, "a SEARCH");
    for (int i = 0; i < 200; i++) sbuf_puts(&b, " ALL");
    bad(b.data, "too many tokens");
    assert_string_equal(err.code, "LIMIT");
    sbuf_reset(&b);
    sbuf_puts(&b, "a FETCH 1");
    for (int i = 0; i < 200; i++) sbuf_puts(&b, ",1");
    sbuf_puts(&b, " FLAGS");
    bad(b.data, "too many tokens");
    imap_limits_default(&lim);
    ok(b.data, IMAP_CMD_FETCH);
    assert_int_equal(cmd.set.n, 201);

    /* arena */
    struct imap_arena small;
    imap_arena_init(&small, 2000);
    sbuf_reset(&b);
    sbuf_puts(&b, "a SEARCH");
    for (int i = 0; i < 200; i++) sbuf_puts(&b, " SEEN");
    sbuf_puts(&b, "\r\n");
    assert_int_equal(imap_parse_command(b.data, b.len, &lim, 0, &small, &cmd, &err), -1);
    assert_string_equal(err.text, "Command too large");
    assert_true(small.used <= 2000);
    imap_arena_free(&small);

    /* literal larger than literal_max in a standalone parse */
    lim.literal_max = 2;
    bad("a LOGIN {3}\r\nabc x", "Literal too big");
    imap_limits_default(&lim);
    sbuf_free(&b);
}

static void test_arena(void **state)
{
    struct imap_arena a;
    imap_arena_init(&a, 100000);
    assert_null(a.head);
    char *p1 = imap_arena_alloc(&a, 10);
    assert_non_null(p1);
    assert_int_equal((uintptr_t)p1 % 16, 0);
    char *p2 = imap_arena_alloc(&a, 50000);
    assert_non_null(p2);
    for (int i = 0; i < 50000; i++) assert_int_equal(p2[i], 0);
    assert_null(imap_arena_alloc(&a, 50000));
    imap_arena_reset(&a);
    assert_int_equal(a.used, 0);
    assert_non_null(imap_arena_alloc(&a, 60000));
    imap_arena_free(&a);
    assert_null(a.head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_3501_8_sample_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_1_any_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_2_not_authenticated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_3_authenticated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_5258_list_extended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_6154_create_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_7162_select_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_3_12_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_4_selected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_4_4_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_4_4_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_nesting_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_4_5_fetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_4_5_fetch_macros, setup, teardown),
        cmocka_unit_test_setup_teardown(test_7162_fetch_store_modifiers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_6_4_6_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_5256_sort_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_2971_id_9208_quota_4314_acl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_2_2_1_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_terminators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_2177_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_3501_5_1_3_mutf7, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_9_seqset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_9_dates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_9051_7_5_scan_literals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_incremental_equals_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_skips_literal_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_3502_scan_diverts_append_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_command_max_and_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_diverted_literals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
