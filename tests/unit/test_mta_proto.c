/* Outbound SMTP client, pure parts: RFC 5321 4.2 replies, EHLO keywords,
 * 4.5.2 transparency, RFC 3461 4 xtext. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "mta/mta_proto.h"

static int feed(struct mta_reply *r, const char *line)
{
    return mta_reply_feed(r, line, strlen(line));
}

static void rfc5321_4_2_1_multiline_reply(void **state)
{
    struct mta_reply r;
    mta_reply_init(&r);
    assert_int_equal(feed(&r, "250-mx.remote.test hello"), 0);
    assert_int_equal(feed(&r, "250-PIPELINING"), 0);
    assert_int_equal(feed(&r, "250 8BITMIME"), 1);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.lines, 3);
    assert_string_equal(r.text.data, "mx.remote.test hello\nPIPELINING\n8BITMIME");
    /* next reply starts fresh */
    assert_int_equal(feed(&r, "550 5.1.1 no such user"), 1);
    assert_int_equal(r.code, 550);
    assert_string_equal(r.enhanced, "5.1.1");
    char *one = mta_reply_oneline(&r);
    assert_string_equal(one, "550 5.1.1 no such user");
    free(one);
    /* bare code */
    assert_int_equal(feed(&r, "354"), 1);
    assert_int_equal(r.code, 354);
    mta_reply_free(&r);
}

static void rfc5321_4_2_malformed(void **state)
{
    struct mta_reply r;
    mta_reply_init(&r);
    assert_int_equal(feed(&r, "25"), -1);
    assert_int_equal(feed(&r, "abc hello"), -1);
    assert_int_equal(feed(&r, "250xhello"), -1);
    assert_int_equal(feed(&r, "199 too low"), -1);
    assert_int_equal(feed(&r, "600 too high"), -1);
    mta_reply_reset(&r);
    assert_int_equal(feed(&r, "250-one"), 0);
    assert_int_equal(feed(&r, "251 different code"), -1);
    mta_reply_free(&r);
}

static void rfc3463_enhanced_must_match_class(void **state)
{
    struct mta_reply r;
    mta_reply_init(&r);
    assert_int_equal(feed(&r, "451 5.1.1 mismatched"), 1);
    assert_string_equal(r.enhanced, "");
    assert_int_equal(feed(&r, "451 4.7.1 try later"), 1);
    assert_string_equal(r.enhanced, "4.7.1");
    mta_reply_free(&r);
}

static void reply_text_is_bounded(void **state)
{
    struct mta_reply r;
    mta_reply_init(&r);
    char line[600];
    memset(line, 'x', sizeof line);
    memcpy(line, "250-", 4);
    for (int i = 0; i < 1000; i++) assert_int_equal(mta_reply_feed(&r, line, sizeof line), 0);
    assert_int_equal(feed(&r, "250 end"), 1);
    assert_true(r.text.len <= MTA_REPLY_TEXT_MAX);
    assert_int_equal(r.lines, 1001);
    mta_reply_free(&r);
}

static void rfc5321_4_1_1_1_ehlo_keywords(void **state)
{
    struct mta_reply r;
    mta_reply_init(&r);
    feed(&r, "250-mx.remote.test PIPELINING SIZE");   /* greeting line: not keywords */
    feed(&r, "250-pipelining");
    feed(&r, "250-SIZE 1000000");
    feed(&r, "250-8BITMIME");
    feed(&r, "250-STARTTLS");
    feed(&r, "250-ENHANCEDSTATUSCODES");
    feed(&r, "250-DSN");
    feed(&r, "250 SMTPUTF8");
    struct mta_caps c;
    mta_caps_parse(&r, &c);
    assert_true(c.pipelining && c.size && c.eightbitmime && c.starttls && c.enhancedstatuscodes && c.dsn &&
                c.smtputf8);
    assert_int_equal(c.size_max, 1000000);
    mta_reply_reset(&r);
    feed(&r, "250-mx.remote.test PIPELINING 8BITMIME");
    feed(&r, "250 SIZE");
    mta_caps_parse(&r, &c);
    assert_false(c.pipelining);
    assert_false(c.eightbitmime);
    assert_true(c.size);
    assert_int_equal(c.size_max, 0);
    mta_reply_free(&r);
}

static void rfc3030_rfc4954_chunking_and_auth_keywords(void **state)
{
    struct mta_reply r;
    mta_reply_init(&r);
    feed(&r, "250-relay.test CHUNKING AUTH PLAIN");
    feed(&r, "250-CHUNKING");
    feed(&r, "250-BINARYMIME");
    feed(&r, "250 AUTH CRAM-MD5 login");
    struct mta_caps c;
    mta_caps_parse(&r, &c);
    assert_true(c.chunking && c.binarymime && c.auth_login);
    assert_false(c.auth_plain);
    mta_reply_reset(&r);
    feed(&r, "250-relay.test");
    feed(&r, "250-AUTH=PLAIN");
    feed(&r, "250 AUTHX LOGIN");
    mta_caps_parse(&r, &c);
    assert_true(c.auth_plain);
    assert_false(c.auth_login || c.chunking || c.binarymime);
    mta_reply_free(&r);
}

static void rfc5321_4_5_2_dot_stuffing(void **state)
{
    static const char in[] = ".first\r\nmid.dle\r\n.\r\n..two\r\nlast";
    static const char want[] = "..first\r\nmid.dle\r\n..\r\n...two\r\nlast\r\n.\r\n";
    /* every split point gives the same output */
    for (size_t cut = 0; cut <= sizeof in - 1; cut++) {
        struct mta_dot d;
        sbuf out = SBUF_INIT;
        mta_dot_init(&d);
        mta_dot_feed(&d, in, cut, &out);
        mta_dot_feed(&d, in + cut, sizeof in - 1 - cut, &out);
        mta_dot_end(&d, &out);
        assert_string_equal(out.data, want);
        sbuf_free(&out);
    }
    /* content ending in CRLF gets no extra line; empty content is just "." */
    struct mta_dot d;
    sbuf out = SBUF_INIT;
    mta_dot_init(&d);
    mta_dot_feed(&d, "a\r\n", 3, &out);
    mta_dot_end(&d, &out);
    assert_string_equal(out.data, "a\r\n.\r\n");
    sbuf_reset(&out);
    mta_dot_init(&d);
    mta_dot_end(&d, &out);
    assert_string_equal(out.data, ".\r\n");
    sbuf_free(&out);
}

static void rfc3461_4_xtext(void **state)
{
    sbuf out = SBUF_INIT;
    mta_xtext(&out, "a+b=c d\x01");
    assert_string_equal(out.data, "a+2Bb+3Dc+20d+01");
    sbuf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc5321_4_2_1_multiline_reply),
        cmocka_unit_test(rfc5321_4_2_malformed),
        cmocka_unit_test(rfc3463_enhanced_must_match_class),
        cmocka_unit_test(reply_text_is_bounded),
        cmocka_unit_test(rfc5321_4_1_1_1_ehlo_keywords),
        cmocka_unit_test(rfc3030_rfc4954_chunking_and_auth_keywords),
        cmocka_unit_test(rfc5321_4_5_2_dot_stuffing),
        cmocka_unit_test(rfc3461_4_xtext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
