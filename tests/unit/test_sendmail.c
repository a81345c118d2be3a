/* The sendmail(8) entry point's pure parts: the command line as cron, PHP
 * and mail(1) use it, the conversion of a local program's LF text into
 * RFC 5322 2.3 CRLF lines with the traditional "." terminator (-i turns it
 * off), and -t's header recipients (RFC 5322 3.6.3: To, Cc, Bcc; Bcc never
 * sent on). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "smtp/sendmail.h"

#define DOM "example.test"

static int parse(struct sendmail_opts *o, char **err, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    argv[argc++] = (char *)"sendmail";
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 31) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    static char buf[512];
    buf[0] = '\0';
    *err = buf;
    return sendmail_parse_args(argc, argv, DOM, o, buf, sizeof buf);
}

static void test_args_cron(void **state)
{
    /* cron (Debian): sendmail -FCronDaemon -i -B8BITMIME -oem root */
    struct sendmail_opts o;
    char *err;
    assert_int_equal(parse(&o, &err, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root", NULL), 0);
    assert_true(o.ignore_dots);
    assert_false(o.extract);
    assert_string_equal(o.fullname, "CronDaemon");
    assert_null(o.sender);
    assert_int_equal(o.rcpts.n, 1);
    assert_string_equal(o.rcpts.v[0], "root@" DOM);
    sendmail_opts_free(&o);
}

static void test_args_php(void **state)
{
    /* PHP: sendmail_path = "sendmail -t -i", mail()'s 5th argument "-fwww@x" */
    struct sendmail_opts o;
    char *err;
    assert_int_equal(parse(&o, &err, "-t", "-i", "-fwww@site.test", NULL), 0);
    assert_true(o.extract);
    assert_true(o.ignore_dots);
    assert_string_equal(o.sender, "www@site.test");
    assert_int_equal(o.rcpts.n, 0);
    sendmail_opts_free(&o);
    /* Clustered flags and a separate value, as getopt allows. */
    assert_int_equal(parse(&o, &err, "-ti", "-f", "a@b.test", "-oi", "-odi", "-bm", "--", "x@y.test", NULL), 0);
    assert_true(o.extract && o.ignore_dots);
    assert_string_equal(o.sender, "a@b.test");
    assert_int_equal(o.rcpts.n, 1);
    sendmail_opts_free(&o);
}

static void test_args_errors(void **state)
{
    struct sendmail_opts o;
    char *err;
    assert_int_equal(parse(&o, &err, "-i", NULL), -1);           /* no recipient, no -t */
    assert_non_null(strstr(err, "no recipients"));
    assert_int_equal(parse(&o, &err, "-bs", NULL), -1);
    assert_non_null(strstr(err, "-bs"));
    assert_int_equal(parse(&o, &err, "-q", NULL), -1);
    assert_int_equal(parse(&o, &err, "-Z", "a@b", NULL), -1);
    assert_int_equal(parse(&o, &err, "-f", NULL), -1);           /* value missing */
    assert_int_equal(parse(&o, &err, "-N", "sometimes", "a@b", NULL), -1);
    assert_int_equal(parse(&o, &err, "-N", "success,delay", "-R", "hdrs", "a@b", NULL), 0);
    sendmail_opts_free(&o);
    /* An argument must not smuggle SMTP: no CR/LF, no angle brackets. */
    assert_int_equal(parse(&o, &err, "a@b.test>\r\nRCPT TO:<c@d.test", NULL), -1);
    assert_int_equal(parse(&o, &err, "-fx@y>\r\nDATA", "a@b.test", NULL), -1);
}

static void test_addresses_list_and_unqualified(void **state)
{
    struct sendmail_rcpts r = { 0 };
    const char *t = "Bob <bob@x.test>, root, \"Smith, J\" <j@y.test>, undisclosed-recipients:;, BOB@X.TEST";
    assert_int_equal(sendmail_add_addresses(&r, t, strlen(t), DOM), 3);
    assert_string_equal(r.v[0], "bob@x.test");
    assert_string_equal(r.v[1], "root@" DOM);
    assert_string_equal(r.v[2], "j@y.test");
    sendmail_rcpts_free(&r);
    /* RFC 5321 4.5.3.1.3: a path longer than 256 octets is refused; we allow 320. */
    char longaddr[400];
    memset(longaddr, 'a', sizeof longaddr);
    memcpy(longaddr + 390, "@x.test", 8);
    assert_int_equal(sendmail_add_addresses(&r, longaddr, strlen(longaddr), DOM), -1);
    sendmail_rcpts_free(&r);
}

static void feed_all(const char *in, bool ignore_dots, size_t step, sbuf *out, size_t *used, bool *done)
{
    struct sendmail_input st;
    sendmail_input_init(&st, ignore_dots);
    size_t len = strlen(in), pos = 0;
    *used = 0;
    while (pos < len && !st.done) {
        size_t n = step && len - pos > step ? step : len - pos;
        size_t u = sendmail_input_feed(&st, in + pos, n, out);
        *used += u;
        pos += n;
    }
    sendmail_input_finish(&st, out);
    *done = st.done;
}

static void test_2_3_lf_becomes_crlf(void **state)
{
    for (size_t step = 0; step <= 3; step++) {
        sbuf out = SBUF_INIT;
        size_t used;
        bool done;
        feed_all("Subject: x\n\nline 1\r\nline 2\rline 3", true, step, &out, &used, &done);
        assert_false(done);
        assert_string_equal(sbuf_cstr(&out), "Subject: x\r\n\r\nline 1\r\nline 2\r\nline 3\r\n");
        sbuf_free(&out);
    }
}

static void test_dot_line_ends_input_unless_i(void **state)
{
    const char *in = "a\n.hidden\n..two\n.\nafter\n";
    for (size_t step = 0; step <= 2; step++) {
        sbuf out = SBUF_INIT;
        size_t used;
        bool done;
        feed_all(in, false, step, &out, &used, &done);
        assert_true(done);
        /* Not dot-stuffing: only the lone "." is special. */
        assert_string_equal(sbuf_cstr(&out), "a\r\n.hidden\r\n..two\r\n");
        sbuf_free(&out);
        sbuf_init(&out);
        feed_all(in, true, step, &out, &used, &done);
        assert_false(done);
        assert_string_equal(sbuf_cstr(&out), "a\r\n.hidden\r\n..two\r\n.\r\nafter\r\n");
        sbuf_free(&out);
    }
    /* ".\r\n" ends it too; a "." at the very end without a newline is kept. */
    sbuf out = SBUF_INIT;
    size_t used;
    bool done;
    feed_all("x\r\n.\r\ny", false, 0, &out, &used, &done);
    assert_true(done);
    assert_string_equal(sbuf_cstr(&out), "x\r\n");
    sbuf_reset(&out);
    feed_all("x\n.", false, 0, &out, &used, &done);
    assert_false(done);
    assert_string_equal(sbuf_cstr(&out), "x\r\n.\r\n");
    sbuf_free(&out);
}

static void test_3_6_3_extract_and_drop_bcc(void **state)
{
    const char *m = "From: root (Cron Daemon)\r\nTo: alice@example.test,\r\n bob\r\n"
                    "Cc: Carol <carol@remote.test>\r\nBcc: secret@remote.test\r\n"
                    "Subject: hi\r\n\r\nBcc: not a header\r\n";
    struct sendmail_rcpts r = { 0 };
    sbuf out = SBUF_INIT;
    size_t body;
    struct sendmail_header_info info;
    assert_int_equal(sendmail_headers(m, strlen(m), true, DOM, &r, &out, &body, &info), 4);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.v[0], "alice@example.test");
    assert_string_equal(r.v[1], "bob@" DOM);
    assert_string_equal(r.v[2], "carol@remote.test");
    assert_string_equal(r.v[3], "secret@remote.test");
    assert_string_equal(sbuf_cstr(&out), "From: root (Cron Daemon)\r\nTo: alice@example.test,\r\n bob\r\n"
                                         "Cc: Carol <carol@remote.test>\r\nSubject: hi\r\n");
    assert_true(info.has_from && info.has_body_separator);
    assert_false(info.has_date || info.has_message_id);
    assert_string_equal(m + body, "\r\nBcc: not a header\r\n");
    sendmail_rcpts_free(&r);
    sbuf_free(&out);

    /* Without -t the headers name no recipients, and Bcc is still dropped. */
    sbuf_init(&out);
    assert_int_equal(sendmail_headers(m, strlen(m), false, DOM, &r, &out, &body, &info), 0);
    assert_int_equal(r.n, 0);
    assert_null(strstr(sbuf_cstr(&out), "secret"));
    sbuf_free(&out);
}

static void test_body_without_header(void **state)
{
    /* `echo hello | sendmail root`: no header at all; the text is body. */
    const char *m = "hello world\r\n";
    struct sendmail_rcpts r = { 0 };
    sbuf out = SBUF_INIT;
    size_t body;
    struct sendmail_header_info info;
    assert_int_equal(sendmail_headers(m, strlen(m), true, DOM, &r, &out, &body, &info), 0);
    assert_int_equal(body, 0);
    assert_int_equal(out.len, 0);
    assert_false(info.has_body_separator);
    sbuf_free(&out);
}

static void test_exit_status(void **state)
{
    assert_int_equal(sendmail_exit_status(250, "DATA"), SENDMAIL_EX_OK);
    assert_int_equal(sendmail_exit_status(451, "DATA"), SENDMAIL_EX_TEMPFAIL);
    assert_int_equal(sendmail_exit_status(452, "RCPT"), SENDMAIL_EX_TEMPFAIL);
    assert_int_equal(sendmail_exit_status(550, "RCPT"), SENDMAIL_EX_NOUSER);
    assert_int_equal(sendmail_exit_status(552, "DATA"), SENDMAIL_EX_DATAERR);
    assert_int_equal(sendmail_exit_status(553, "MAIL"), SENDMAIL_EX_DATAERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_cron),
        cmocka_unit_test(test_args_php),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_addresses_list_and_unqualified),
        cmocka_unit_test(test_2_3_lf_becomes_crlf),
        cmocka_unit_test(test_dot_line_ends_input_unless_i),
        cmocka_unit_test(test_3_6_3_extract_and_drop_bcc),
        cmocka_unit_test(test_body_without_header),
        cmocka_unit_test(test_exit_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
