/* POP3 command syntax: RFC 1939 sections 3-7, RFC 2449 (CAPA, line and
 * argument lengths), RFC 2595 (STLS), RFC 5034 (AUTH), RFC 6856 (UTF8),
 * RFC 1225 (LAST). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/pop3_parse.h"

static struct pop3_cmd cmd;
static const char *err;

static int parse_n(const char *line, size_t len)
{
    err = NULL;
    return pop3_parse_command(line, len, &cmd, &err);
}

static int parse(const char *line)
{
    return parse_n(line, strlen(line));
}

static void ok(const char *line, enum pop3_verb verb)
{
    if (parse(line) != 0) fail_msg("rejected: '%s' (%s)", line, err);
    assert_int_equal(cmd.verb, verb);
    assert_null(err);
}

static void bad(const char *line)
{
    if (parse(line) != -1) fail_msg("accepted: '%s'", line);
    assert_non_null(err);
    /* The text goes after "-ERR ": one line, no CR/LF. */
    assert_null(strpbrk(err, "\r\n"));
}

static void assert_arg(const char *want)
{
    assert_non_null(cmd.arg);
    assert_int_equal(cmd.arg_len, strlen(want));
    assert_memory_equal(cmd.arg, want, cmd.arg_len);
}

static void assert_arg2(const char *want)
{
    assert_non_null(cmd.arg2);
    assert_int_equal(cmd.arg2_len, strlen(want));
    assert_memory_equal(cmd.arg2, want, cmd.arg2_len);
}

/* Section 3: keywords are case-insensitive, 3 or 4 characters. */
static void test_rfc1939_3_keywords_case_insensitive(void **state)
{
    ok("STAT", POP3_STAT);
    ok("stat", POP3_STAT);
    ok("StAt", POP3_STAT);
    ok("top 1 2", POP3_TOP);
    ok("uidl", POP3_UIDL);
    ok("capa", POP3_CAPA);
}

static void test_rfc1939_every_command(void **state)
{
    ok("USER mrose", POP3_USER);
    assert_arg("mrose");
    ok("PASS secret", POP3_PASS);
    assert_arg("secret");
    ok("APOP mrose c4c9334bac560ecc979e58001b3e22fb", POP3_APOP);
    assert_arg("mrose");
    assert_arg2("c4c9334bac560ecc979e58001b3e22fb");
    ok("QUIT", POP3_QUIT);
    ok("STAT", POP3_STAT);
    ok("LIST", POP3_LIST);
    assert_false(cmd.has_msg);
    ok("LIST 2", POP3_LIST);
    assert_true(cmd.has_msg);
    assert_int_equal(cmd.msg, 2);
    ok("RETR 1", POP3_RETR);
    assert_int_equal(cmd.msg, 1);
    ok("DELE 7", POP3_DELE);
    assert_int_equal(cmd.msg, 7);
    ok("NOOP", POP3_NOOP);
    ok("RSET", POP3_RSET);
    ok("TOP 1 10", POP3_TOP);
    assert_int_equal(cmd.msg, 1);
    assert_int_equal(cmd.lines, 10);
    ok("UIDL", POP3_UIDL);
    assert_false(cmd.has_msg);
    ok("UIDL 3", POP3_UIDL);
    assert_int_equal(cmd.msg, 3);
    ok("LAST", POP3_LAST);
    ok("CAPA", POP3_CAPA);
    ok("STLS", POP3_STLS);
    ok("UTF8", POP3_UTF8);
    ok("AUTH", POP3_AUTH);
    assert_null(cmd.arg);
}

/* An unknown keyword is not a syntax error: the session answers it. */
static void test_unknown_keyword(void **state)
{
    ok("XTND XMIT", POP3_UNKNOWN);
    ok("HELO", POP3_UNKNOWN);
    ok("RETRX 1", POP3_UNKNOWN);
    ok("RE", POP3_UNKNOWN);
    bad("");
}

/* Section 7: PASS has one argument, so spaces are part of the password. */
static void test_rfc1939_7_pass_keeps_spaces(void **state)
{
    ok("PASS two words  and more ", POP3_PASS);
    assert_arg("two words  and more ");
    ok("PASS \tx", POP3_PASS);
    assert_arg("\tx");
    bad("PASS");
    bad("PASS ");
    const char nul[] = "PASS a\0b";
    assert_int_equal(parse_n(nul, sizeof nul - 1), -1);
}

/* "msg" is a message number: decimal, never 0, fits 32 bits. */
static void test_rfc1939_message_numbers(void **state)
{
    bad("RETR");
    bad("RETR 0");
    bad("RETR -1");
    bad("RETR +1");
    bad("RETR 1a");
    bad("RETR 0x10");
    bad("RETR 1 2");
    bad("DELE");
    bad("LIST 0");
    bad("LIST x");
    bad("UIDL 1 2");
    ok("RETR 4294967295", POP3_RETR);
    assert_int_equal(cmd.msg, 4294967295u);
    bad("RETR 4294967296");
    bad("RETR 99999999999999999999999");
    ok("RETR 007", POP3_RETR);
    assert_int_equal(cmd.msg, 7);
}

/* Section 7: TOP msg n, n non-negative. */
static void test_rfc1939_7_top_arguments(void **state)
{
    ok("TOP 1 0", POP3_TOP);
    assert_int_equal(cmd.lines, 0);
    bad("TOP 1");
    bad("TOP");
    bad("TOP 0 1");
    bad("TOP 1 -1");
    bad("TOP 1 2 3");
}

/* Section 3: arguments are separated by a single space. */
static void test_rfc1939_3_single_space(void **state)
{
    bad("TOP 1  2");
    bad("RETR  1");
    bad("RETR 1 ");
    bad("USER a b");
    bad("USER");
}

static void test_no_argument_commands(void **state)
{
    bad("STAT 1");
    bad("NOOP x");
    bad("RSET 1");
    bad("QUIT now");
    bad("CAPA x");
    bad("STLS x");
    bad("LAST 1");
    bad("UTF8 x");
}

/* RFC 5034 section 4: AUTH mechanism [initial-response]. */
static void test_rfc5034_4_auth(void **state)
{
    ok("AUTH PLAIN", POP3_AUTH);
    assert_arg("PLAIN");
    assert_null(cmd.arg2);
    ok("AUTH PLAIN AGFsaWNlAHNlY3JldA==", POP3_AUTH);
    assert_arg("PLAIN");
    assert_arg2("AGFsaWNlAHNlY3JldA==");
    ok("auth login =", POP3_AUTH);
    assert_arg("login");
    assert_arg2("=");
    ok("AUTH X-SOME_MECH-20C", POP3_AUTH);
    bad("AUTH PLAIN a b");
    bad("AUTH PL@IN");
    bad("AUTH ABCDEFGHIJKLMNOPQRSTU");   /* 21 characters */
    bad("AUTH  PLAIN");
}

/* Arguments: no control characters; UTF-8 must be well formed (RFC 6856
 * allows it in USER and PASS). */
static void test_rfc6856_utf8_arguments(void **state)
{
    ok("USER j\xc3\xbcrgen@example.test", POP3_USER);
    ok("PASS p\xc3\xa4ss", POP3_PASS);
    bad("USER \xc3");
    bad("USER \xc0\xaf");          /* overlong */
    bad("USER \xed\xa0\x80");      /* surrogate */
    bad("USER \xf4\x90\x80\x80");  /* above U+10FFFF */
    bad("PASS \xff");
    bad("USER a\x01");
    bad("USER a\x7f");
    bad("USER a\tb");
    const char nul[] = "USER a\0b";
    assert_int_equal(parse_n(nul, sizeof nul - 1), -1);
}

/* RFC 2449 section 4: arguments up to 255 octets. */
static void test_rfc2449_4_argument_length(void **state)
{
    char line[600];
    memcpy(line, "USER ", 5);
    memset(line + 5, 'a', POP3_ARG_MAX);
    line[5 + POP3_ARG_MAX] = '\0';
    ok(line, POP3_USER);
    assert_int_equal(cmd.arg_len, POP3_ARG_MAX);
    memset(line + 5, 'a', POP3_ARG_MAX + 1);
    line[5 + POP3_ARG_MAX + 1] = '\0';
    bad(line);
}

/* Results point into the caller's line: nothing is allocated. */
static void test_results_point_into_line(void **state)
{
    const char *line = "APOP name digest";
    assert_int_equal(parse(line), 0);
    assert_ptr_equal(cmd.arg, line + 5);
    assert_ptr_equal(cmd.arg2, line + 10);
}

static void test_verb_names(void **state)
{
    assert_string_equal(pop3_verb_name(POP3_RETR), "RETR");
    assert_string_equal(pop3_verb_name(POP3_TOP), "TOP");
    assert_string_equal(pop3_verb_name(POP3_UNKNOWN), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc1939_3_keywords_case_insensitive),
        cmocka_unit_test(test_rfc1939_every_command),
        cmocka_unit_test(test_unknown_keyword),
        cmocka_unit_test(test_rfc1939_7_pass_keeps_spaces),
        cmocka_unit_test(test_rfc1939_message_numbers),
        cmocka_unit_test(test_rfc1939_7_top_arguments),
        cmocka_unit_test(test_rfc1939_3_single_space),
        cmocka_unit_test(test_no_argument_commands),
        cmocka_unit_test(test_rfc5034_4_auth),
        cmocka_unit_test(test_rfc6856_utf8_arguments),
        cmocka_unit_test(test_rfc2449_4_argument_length),
        cmocka_unit_test(test_results_point_into_line),
        cmocka_unit_test(test_verb_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
