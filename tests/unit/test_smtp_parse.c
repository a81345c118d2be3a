/* RFC 5321 4.1 command syntax and the ESMTP parameters of RFC 1870, 6152,
 * 3030, 6531, 3461 and 4954. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "smtp/smtp_parse.h"

static struct smtp_cmd cmd;
static struct smtp_error err;

static int parse(const char *line)
{
    memset(&err, 0, sizeof err);
    return smtp_parse_command(line, strlen(line), &cmd, &err);
}

static void ok(const char *line, enum smtp_verb verb)
{
    if (parse(line) != 0) fail_msg("rejected: %s (%d %s %s)", line, err.code, err.enhanced, err.text);
    assert_int_equal(cmd.verb, verb);
}

static void bad(const char *line, int code, const char *enhanced)
{
    if (parse(line) != -1) fail_msg("accepted: %s", line);
    assert_int_equal(err.code, code);
    assert_string_equal(err.enhanced, enhanced);
    assert_non_null(err.text);
}

static void assert_arg(const char *want)
{
    assert_non_null(cmd.arg);
    assert_int_equal(cmd.arg_len, strlen(want));
    assert_memory_equal(cmd.arg, want, cmd.arg_len);
}

static void test_4_1_1_every_verb(void **state)
{
    ok("HELO mail.example.com", SMTP_HELO);
    assert_arg("mail.example.com");
    ok("EHLO [192.0.2.1]", SMTP_EHLO);
    assert_arg("[192.0.2.1]");
    ok("MAIL FROM:<a@b>", SMTP_MAIL);
    ok("RCPT TO:<a@b>", SMTP_RCPT);
    ok("DATA", SMTP_DATA);
    assert_null(cmd.arg);
    ok("BDAT 10", SMTP_BDAT);
    ok("RSET", SMTP_RSET);
    ok("NOOP", SMTP_NOOP);
    ok("NOOP anything goes", SMTP_NOOP);
    assert_arg("anything goes");
    ok("QUIT", SMTP_QUIT);
    ok("HELP", SMTP_HELP);
    ok("HELP MAIL", SMTP_HELP);
    assert_arg("MAIL");
    ok("VRFY john", SMTP_VRFY);
    assert_arg("john");
    ok("EXPN staff", SMTP_EXPN);
    ok("ETRN example.com", SMTP_ETRN);
    ok("TURN", SMTP_TURN);
    ok("SEND FROM:<a@b>", SMTP_SEND);
    ok("SOML FROM:<a@b>", SMTP_SOML);
    ok("SAML FROM:<a@b>", SMTP_SAML);
    ok("STARTTLS", SMTP_STARTTLS);
    ok("AUTH PLAIN AGpvaG4Ac2VjcmV0", SMTP_AUTH);
    assert_arg("PLAIN AGpvaG4Ac2VjcmV0");
    ok("AUTH LOGIN", SMTP_AUTH);
    assert_arg("LOGIN");
    assert_string_equal(smtp_verb_name(SMTP_STARTTLS), "STARTTLS");
}

static void test_4_1_1_verbs_case_insensitive(void **state)
{
    ok("ehlo x", SMTP_EHLO);
    ok("mail from:<a@b>", SMTP_MAIL);
    ok("Rcpt To:<a@b>", SMTP_RCPT);
    ok("StartTLS", SMTP_STARTTLS);
    ok("quit", SMTP_QUIT);
}

static void test_4_2_4_unrecognized(void **state)
{
    bad("", 500, "5.5.2");
    bad("FOO", 500, "5.5.2");
    bad("HELOX x", 500, "5.5.2");
    bad("MAI", 500, "5.5.2");
    bad("MAILFROM:<a@b>", 500, "5.5.2");
    bad(" HELO x", 500, "5.5.2");
    bad("GET / HTTP/1.1", 500, "5.5.2");
}

static void test_bad_bytes_500(void **state)
{
    const char nul[] = "HELO a\0b";
    assert_int_equal(smtp_parse_command(nul, sizeof nul - 1, &cmd, &err), -1);
    assert_int_equal(err.code, 500);
    assert_string_equal(err.enhanced, "5.5.2");
    bad("HELO a\rb", 500, "5.5.2");
    bad("HELO a\nb", 500, "5.5.2");
    bad("NOOP \x1b[31m", 500, "5.5.2");
    bad("QUIT\r", 500, "5.5.2");
    bad("NOOP \x7f", 500, "5.5.2");
}

static void test_4_1_1_1_helo_requires_domain(void **state)
{
    bad("HELO", 501, "5.5.4");
    bad("EHLO", 501, "5.5.4");
    bad("EHLO   ", 501, "5.5.4");
    ok("EHLO  spaced.example  ", SMTP_EHLO);
    assert_arg("spaced.example");
}

static void test_no_argument_verbs(void **state)
{
    bad("QUIT now", 501, "5.5.4");
    bad("RSET x", 501, "5.5.4");
    bad("DATA x", 501, "5.5.4");
    bad("STARTTLS x", 501, "5.5.4");
    bad("TURN x", 501, "5.5.4");
    ok("QUIT ", SMTP_QUIT);   /* trailing space only: tolerated */
    bad("VRFY", 501, "5.5.4");
    bad("EXPN", 501, "5.5.4");
    bad("ETRN", 501, "5.5.4");
    bad("AUTH", 501, "5.5.4");
}

static void test_4_1_1_2_mail(void **state)
{
    ok("MAIL FROM:<john@Example.org>", SMTP_MAIL);
    assert_string_equal(cmd.path.local, "john");
    assert_string_equal(cmd.path.domain, "example.org");
    assert_false(cmd.has_size);
    assert_int_equal(cmd.body, SMTP_BODY_UNSPEC);

    ok("MAIL FROM:<>", SMTP_MAIL);
    assert_true(cmd.path.null);

    /* space after the colon, as many clients send */
    ok("MAIL FROM: <a@b>", SMTP_MAIL);
    assert_string_equal(cmd.path.local, "a");

    ok("MAIL FROM:<\"john doe\"@x> SIZE=100", SMTP_MAIL);
    assert_string_equal(cmd.path.local, "john doe");
    assert_true(cmd.has_size);

    bad("MAIL", 501, "5.5.4");
    bad("MAIL FROM:", 501, "5.5.4");
    bad("MAIL FROM: ", 501, "5.5.4");
    bad("MAIL TO:<a@b>", 501, "5.5.4");
    bad("MAIL FROM<a@b>", 501, "5.5.4");
    bad("MAIL FROM:a@b", 501, "5.1.7");
    bad("MAIL FROM:<a@b", 501, "5.1.7");
    bad("MAIL FROM:<a..b@c>", 501, "5.1.7");
    bad("MAIL FROM:<Postmaster>", 501, "5.1.7");
    bad("MAIL FROM:<a@b>SIZE=1", 501, "5.5.4");
}

static void test_4_1_1_3_rcpt(void **state)
{
    ok("RCPT TO:<user@[192.0.2.7]>", SMTP_RCPT);
    assert_true(cmd.path.literal);
    ok("RCPT TO:<Postmaster>", SMTP_RCPT);
    assert_string_equal(cmd.path.local, "Postmaster");
    assert_string_equal(cmd.path.domain, "");
    ok("RCPT TO: <a@b>", SMTP_RCPT);
    ok("RCPT TO:<@relay.example:a@b>", SMTP_RCPT);
    assert_string_equal(cmd.path.domain, "b");

    bad("RCPT TO:<>", 501, "5.1.3");
    bad("RCPT TO:a@b", 501, "5.1.3");
    bad("RCPT TO:<a@-b>", 501, "5.1.3");
    bad("RCPT TO:", 501, "5.5.4");
    bad("RCPT FROM:<a@b>", 501, "5.5.4");
    bad("RCPT", 501, "5.5.4");
}

static void test_6531_utf8_paths(void **state)
{
    /* MAIL: UTF-8 only together with SMTPUTF8 */
    ok("MAIL FROM:<\xc3\xa9@x.fr> SMTPUTF8", SMTP_MAIL);
    assert_true(cmd.smtputf8);
    assert_true(cmd.path.utf8);
    bad("MAIL FROM:<\xc3\xa9@x.fr>", 553, "5.6.7");
    bad("MAIL FROM:<a@\xc3\xa9.fr> SIZE=10", 553, "5.6.7");
    bad("MAIL FROM:<\xc3@x.fr> SMTPUTF8", 501, "5.1.7");
    bad("MAIL FROM:<a@b> smtputf8=yes", 501, "5.5.4");
    ok("MAIL FROM:<a@b> smtputf8", SMTP_MAIL);
    assert_false(cmd.path.utf8);

    /* RCPT: syntactically fine, flagged for the session */
    ok("RCPT TO:<\xc3\xa9@x.fr>", SMTP_RCPT);
    assert_true(cmd.path.utf8);
    ok("RCPT TO:<e@x.fr>", SMTP_RCPT);
    assert_false(cmd.path.utf8);
    bad("RCPT TO:<\xff@x.fr>", 501, "5.1.3");
}

static void test_1870_size(void **state)
{
    ok("MAIL FROM:<a@b> SIZE=12345", SMTP_MAIL);
    assert_true(cmd.has_size);
    assert_int_equal(cmd.size, 12345);
    ok("MAIL FROM:<a@b> size=0", SMTP_MAIL);
    assert_true(cmd.has_size);
    assert_int_equal(cmd.size, 0);
    ok("MAIL FROM:<a@b> SIZE=99999999999999999999", SMTP_MAIL);
    assert_true(cmd.size == UINT64_MAX);
    bad("MAIL FROM:<a@b> SIZE=123456789012345678901", 501, "5.5.4");
    bad("MAIL FROM:<a@b> SIZE=abc", 501, "5.5.4");
    bad("MAIL FROM:<a@b> SIZE=-1", 501, "5.5.4");
    bad("MAIL FROM:<a@b> SIZE=", 501, "5.5.4");
    bad("MAIL FROM:<a@b> SIZE", 501, "5.5.4");
    bad("MAIL FROM:<a@b> SIZE=1 SIZE=2", 501, "5.5.4");
}

static void test_6152_3030_body(void **state)
{
    ok("MAIL FROM:<a@b> BODY=8BITMIME", SMTP_MAIL);
    assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
    ok("MAIL FROM:<a@b> body=7bit", SMTP_MAIL);
    assert_int_equal(cmd.body, SMTP_BODY_7BIT);
    ok("MAIL FROM:<a@b> BODY=BINARYMIME", SMTP_MAIL);
    assert_int_equal(cmd.body, SMTP_BODY_BINARYMIME);
    bad("MAIL FROM:<a@b> BODY=foo", 501, "5.5.4");
    bad("MAIL FROM:<a@b> BODY=8BITMIME BODY=7BIT", 501, "5.5.4");
}

static void test_3461_ret_envid(void **state)
{
    ok("MAIL FROM:<a@b> RET=HDRS ENVID=QQ314159+2Bx", SMTP_MAIL);
    assert_int_equal(cmd.ret, SMTP_RET_HDRS);
    assert_string_equal(cmd.envid, "QQ314159+x");
    ok("MAIL FROM:<a@b> ret=full", SMTP_MAIL);
    assert_int_equal(cmd.ret, SMTP_RET_FULL);
    bad("MAIL FROM:<a@b> RET=BOTH", 501, "5.5.4");
    bad("MAIL FROM:<a@b> ENVID=a+2", 501, "5.5.4");
    bad("MAIL FROM:<a@b> ENVID=a+0D+0A", 501, "5.5.4");

    char line[300];
    strcpy(line, "MAIL FROM:<a@b> ENVID=");
    size_t n = strlen(line);
    memset(line + n, 'e', 100);
    line[n + 100] = '\0';
    ok(line, SMTP_MAIL);
    assert_int_equal(strlen(cmd.envid), 100);
    line[n + 100] = 'e';
    line[n + 101] = '\0';
    bad(line, 501, "5.5.4");
}

static void test_3461_notify(void **state)
{
    ok("RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE", SMTP_RCPT);
    assert_int_equal(cmd.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE);
    ok("RCPT TO:<a@b> NOTIFY=never", SMTP_RCPT);
    assert_int_equal(cmd.notify, SMTP_NOTIFY_NEVER);
    ok("RCPT TO:<a@b> NOTIFY=DELAY", SMTP_RCPT);
    assert_int_equal(cmd.notify, SMTP_NOTIFY_DELAY);
    ok("RCPT TO:<a@b>", SMTP_RCPT);
    assert_int_equal(cmd.notify, 0);
    bad("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", 501, "5.5.4");
    bad("RCPT TO:<a@b> NOTIFY=SUCCESS,", 501, "5.5.4");
    bad("RCPT TO:<a@b> NOTIFY=,DELAY", 501, "5.5.4");
    bad("RCPT TO:<a@b> NOTIFY=ALWAYS", 501, "5.5.4");
    bad("RCPT TO:<a@b> NOTIFY=DELAY NOTIFY=DELAY", 501, "5.5.4");
}

static void test_3461_orcpt(void **state)
{
    ok("RCPT TO:<a@b> ORCPT=rfc822;Bob+2BLists@example.com NOTIFY=FAILURE", SMTP_RCPT);
    assert_string_equal(cmd.orcpt, "rfc822;Bob+Lists@example.com");
    assert_int_equal(cmd.notify, SMTP_NOTIFY_FAILURE);
    bad("RCPT TO:<a@b> ORCPT=bob@example.com", 501, "5.5.4");
    bad("RCPT TO:<a@b> ORCPT=rfc822;", 501, "5.5.4");
    bad("RCPT TO:<a@b> ORCPT=;a@b", 501, "5.5.4");
    bad("RCPT TO:<a@b> ORCPT=rfc822;a+ZZ@b", 501, "5.5.4");
}

static void test_4954_auth_param(void **state)
{
    ok("MAIL FROM:<a@b> AUTH=<>", SMTP_MAIL);
    assert_true(cmd.has_auth);
    assert_string_equal(cmd.auth, "<>");
    ok("MAIL FROM:<a@b> AUTH=e+3Dmc2@example.com", SMTP_MAIL);
    assert_string_equal(cmd.auth, "e=mc2@example.com");
    bad("MAIL FROM:<a@b> AUTH=a+", 501, "5.5.4");
}

static void test_4_1_1_11_unknown_params_555(void **state)
{
    bad("MAIL FROM:<a@b> FOO=bar", 555, "5.5.4");
    bad("MAIL FROM:<a@b> XYZ", 555, "5.5.4");
    /* RCPT parameters are not MAIL parameters, and vice versa */
    bad("MAIL FROM:<a@b> NOTIFY=NEVER", 555, "5.5.4");
    bad("RCPT TO:<a@b> SIZE=10", 555, "5.5.4");
    bad("RCPT TO:<a@b> SMTPUTF8", 555, "5.5.4");
}

static void test_4_1_2_param_syntax(void **state)
{
    bad("MAIL FROM:<a@b> =x", 501, "5.5.4");
    bad("MAIL FROM:<a@b> -SIZE=1", 501, "5.5.4");
    bad("MAIL FROM:<a@b> SI_ZE=1", 501, "5.5.4");
    bad("MAIL FROM:<a@b> SIZE=1=2", 501, "5.5.4");
    ok("MAIL FROM:<a@b>   SIZE=1    BODY=8BITMIME  ", SMTP_MAIL);
    assert_int_equal(cmd.size, 1);
    assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
    ok("MAIL FROM:<a@b> SIZE=1 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x AUTH=<>", SMTP_MAIL);
}

static void test_3030_bdat(void **state)
{
    ok("BDAT 1000", SMTP_BDAT);
    assert_int_equal(cmd.bdat_size, 1000);
    assert_false(cmd.bdat_last);
    ok("BDAT 0 LAST", SMTP_BDAT);
    assert_int_equal(cmd.bdat_size, 0);
    assert_true(cmd.bdat_last);
    ok("bdat 42 last", SMTP_BDAT);
    assert_true(cmd.bdat_last);
    ok("BDAT 18446744073709551615", SMTP_BDAT);
    assert_true(cmd.bdat_size == UINT64_MAX);
    bad("BDAT 18446744073709551616", 501, "5.5.4");
    bad("BDAT", 501, "5.5.4");
    bad("BDAT LAST", 501, "5.5.4");
    bad("BDAT 10 FIRST", 501, "5.5.4");
    bad("BDAT 10 LAST x", 501, "5.5.4");
    bad("BDAT -1", 501, "5.5.4");
    bad("BDAT 1x", 501, "5.5.4");
}

static void test_3461_xtext(void **state)
{
    char out[16];
    assert_int_equal(smtp_xtext_decode("a+2Bb+3D", 8, out, sizeof out), 4);
    assert_string_equal(out, "a+b=");
    assert_int_equal(smtp_xtext_decode("+20", 3, out, sizeof out), 1);
    assert_string_equal(out, " ");
    assert_int_equal(smtp_xtext_decode("", 0, out, sizeof out), 0);
    assert_int_equal(smtp_xtext_decode("+2", 2, out, sizeof out), -1);
    assert_int_equal(smtp_xtext_decode("+GG", 3, out, sizeof out), -1);
    assert_int_equal(smtp_xtext_decode("a b", 3, out, sizeof out), -1);
    assert_int_equal(smtp_xtext_decode("a=b", 3, out, sizeof out), -1);
    assert_int_equal(smtp_xtext_decode("+00", 3, out, sizeof out), -1);
    assert_int_equal(smtp_xtext_decode("+0A", 3, out, sizeof out), -1);
    assert_int_equal(smtp_xtext_decode("\xc3\xa9", 2, out, sizeof out), -1);
    /* capacity: 15 chars fit in 16, 16 do not */
    assert_int_equal(smtp_xtext_decode("aaaaaaaaaaaaaaa", 15, out, sizeof out), 15);
    assert_int_equal(smtp_xtext_decode("aaaaaaaaaaaaaaaa", 16, out, sizeof out), -1);

    sbuf b = SBUF_INIT;
    smtp_xtext_encode("a+b=c d\xc3\xa9", &b);
    assert_string_equal(b.data, "a+2Bb+3Dc+20d+C3+A9");
    sbuf_free(&b);
}

static void test_arg_points_into_line(void **state)
{
    const char *line = "VRFY  someone  ";
    assert_int_equal(smtp_parse_command(line, strlen(line), &cmd, &err), 0);
    assert_ptr_equal(cmd.arg, line + 6);
    assert_int_equal(cmd.arg_len, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_4_1_1_every_verb),
        cmocka_unit_test(test_4_1_1_verbs_case_insensitive),
        cmocka_unit_test(test_4_2_4_unrecognized),
        cmocka_unit_test(test_bad_bytes_500),
        cmocka_unit_test(test_4_1_1_1_helo_requires_domain),
        cmocka_unit_test(test_no_argument_verbs),
        cmocka_unit_test(test_4_1_1_2_mail),
        cmocka_unit_test(test_4_1_1_3_rcpt),
        cmocka_unit_test(test_6531_utf8_paths),
        cmocka_unit_test(test_1870_size),
        cmocka_unit_test(test_6152_3030_body),
        cmocka_unit_test(test_3461_ret_envid),
        cmocka_unit_test(test_3461_notify),
        cmocka_unit_test(test_3461_orcpt),
        cmocka_unit_test(test_4954_auth_param),
        cmocka_unit_test(test_4_1_1_11_unknown_params_555),
        cmocka_unit_test(test_4_1_2_param_syntax),
        cmocka_unit_test(test_3030_bdat),
        cmocka_unit_test(test_3461_xtext),
        cmocka_unit_test(test_arg_points_into_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
