/* Delivery status notifications: RFC 3461 (who gets one), RFC 3464
 * (message/delivery-status fields), RFC 6522 (multipart/report). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/sbuf.h"
#include "mta/dsn.h"
#include "smtp/smtp_parse.h"

static const char orig[] =
    "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "From: <alice@example.test>\r\n"
    "Subject: hello\r\n"
    "\r\n"
    "the body\r\n"
    ".line with a dot\r\n";

static struct dsn_rcpt rcpt_failed = {
    "bob@remote.test", "rfc822;Bob@Remote.test", DSN_FAILED, "5.1.1", "mx.remote.test",
    "550 5.1.1 <bob@remote.test>: no such user\r\nInjected: header", 1700000000, 0,
};

static void report(int ret, size_t full_max, const struct dsn_rcpt *r, size_t n, sbuf *out)
{
    struct dsn_report rep = {
        .reporting_mta = "mx.example.test", .sender = "alice@example.test", .envid = "ENV123",
        .qid = "0123456789ABCDEF", .message_id = "<dsn.1@mx.example.test>", .boundary = "BOUNDARY-x1",
        .arrival = 1700000000, .date = 1700000100, .ret = ret, .full_max = full_max,
        .rcpts = r, .nrcpts = n,
    };
    dsn_build(&rep, orig, sizeof orig - 1, out);
}

static void rfc3461_6_2_never_bounce_a_bounce(void **state)
{
    assert_false(dsn_wanted("", 0, DSN_FAILED));
    assert_false(dsn_wanted("", SMTP_NOTIFY_FAILURE, DSN_FAILED));
    assert_true(dsn_wanted("a@b", 0, DSN_FAILED));
}

static void rfc3461_4_1_notify(void **state)
{
    assert_false(dsn_wanted("a@b", SMTP_NOTIFY_NEVER, DSN_FAILED));
    assert_false(dsn_wanted("a@b", SMTP_NOTIFY_SUCCESS, DSN_FAILED));
    assert_true(dsn_wanted("a@b", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, DSN_FAILED));
    /* delay warnings only on request */
    assert_false(dsn_wanted("a@b", 0, DSN_DELAYED));
    assert_false(dsn_wanted("a@b", SMTP_NOTIFY_FAILURE, DSN_DELAYED));
    assert_true(dsn_wanted("a@b", SMTP_NOTIFY_DELAY, DSN_DELAYED));
    assert_false(dsn_wanted("a@b", 0, DSN_DELIVERED));
    assert_true(dsn_wanted("a@b", SMTP_NOTIFY_SUCCESS, DSN_RELAYED));
}

static void rfc6522_multipart_report_structure(void **state)
{
    sbuf out = SBUF_INIT;
    report(0, 1 << 20, &rcpt_failed, 1, &out);
    const char *s = out.data;
    assert_non_null(strstr(s, "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n"));
    assert_non_null(strstr(s, "To: <alice@example.test>\r\n"));
    assert_non_null(strstr(s, "Auto-Submitted: auto-replied\r\n"));
    assert_non_null(strstr(s, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                              "\tboundary=\"BOUNDARY-x1\"\r\n"));
    /* three parts in order, and the closing boundary */
    const char *p1 = strstr(s, "--BOUNDARY-x1\r\nContent-Type: text/plain");
    const char *p2 = strstr(s, "--BOUNDARY-x1\r\nContent-Type: message/delivery-status");
    const char *p3 = strstr(s, "--BOUNDARY-x1\r\nContent-Type: message/rfc822");
    const char *end = strstr(s, "\r\n--BOUNDARY-x1--\r\n");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_non_null(p3);
    assert_non_null(end);
    assert_true(p1 < p2 && p2 < p3 && p3 < end);
    /* the whole original, byte for byte */
    assert_non_null(strstr(p3, orig));
    /* header section ends before the first part */
    assert_true(strstr(s, "\r\n\r\n") < p1);
    sbuf_free(&out);
}

static void rfc3464_2_fields(void **state)
{
    sbuf out = SBUF_INIT;
    report(0, 1 << 20, &rcpt_failed, 1, &out);
    const char *st = strstr(out.data, "message/delivery-status");
    assert_non_null(st);
    assert_non_null(strstr(st, "Reporting-MTA: dns; mx.example.test\r\n"));
    assert_non_null(strstr(st, "Original-Envelope-Id: ENV123\r\n"));
    assert_non_null(strstr(st, "Arrival-Date: "));
    assert_non_null(strstr(st, "\r\n\r\nOriginal-Recipient: rfc822;Bob@Remote.test\r\n"
                               "Final-Recipient: rfc822;bob@remote.test\r\n"
                               "Action: failed\r\nStatus: 5.1.1\r\n"
                               "Remote-MTA: dns; mx.remote.test\r\n"));
    /* the multi-line diagnostic is one field: no injected header line */
    assert_non_null(strstr(st, "Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: no such user Injected: header\r\n"));
    assert_null(strstr(out.data, "\r\nInjected: header"));
    assert_non_null(strstr(st, "Last-Attempt-Date: "));
    sbuf_free(&out);
}

static void rfc3461_4_3_ret_hdrs(void **state)
{
    sbuf out = SBUF_INIT;
    report(2, 1 << 20, &rcpt_failed, 1, &out);
    assert_non_null(strstr(out.data, "Content-Type: text/rfc822-headers"));
    assert_null(strstr(out.data, "message/rfc822"));
    assert_non_null(strstr(out.data, "Subject: hello\r\n"));
    assert_null(strstr(out.data, "the body"));
    sbuf_free(&out);
    /* too large for a full return: headers only, even with RET=FULL */
    sbuf_init(&out);
    report(1, 10, &rcpt_failed, 1, &out);
    assert_non_null(strstr(out.data, "text/rfc822-headers"));
    assert_null(strstr(out.data, "the body"));
    sbuf_free(&out);
}

static void rfc3464_delayed(void **state)
{
    struct dsn_rcpt d = { "bob@remote.test", NULL, DSN_DELAYED, "4.4.1", NULL, "connection refused",
                          1700000000, 1700400000 };
    sbuf out = SBUF_INIT;
    report(0, 1 << 20, &d, 1, &out);
    assert_non_null(strstr(out.data, "Subject: Delayed Mail (still being retried)\r\n"));
    assert_non_null(strstr(out.data, "Action: delayed\r\nStatus: 4.4.1\r\n"));
    assert_non_null(strstr(out.data, "Will-Retry-Until: "));
    assert_null(strstr(out.data, "Original-Recipient"));
    sbuf_free(&out);
}

static void rfc6533_utf8_address(void **state)
{
    struct dsn_rcpt d = rcpt_failed;
    d.address = "j\xc3\xb6rg@remote.test";
    d.orcpt = NULL;
    sbuf out = SBUF_INIT;
    report(0, 1 << 20, &d, 1, &out);
    assert_non_null(strstr(out.data, "Final-Recipient: utf-8;j\xc3\xb6rg@remote.test\r\n"));
    sbuf_free(&out);
}

static void header_length(void **state)
{
    assert_int_equal(dsn_header_length(orig, sizeof orig - 1), strstr(orig, "\r\n\r\n") + 4 - orig);
    assert_int_equal(dsn_header_length("\r\nbody", 6), 2);
    assert_int_equal(dsn_header_length("A: b\r\n", 6), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc3461_6_2_never_bounce_a_bounce),
        cmocka_unit_test(rfc3461_4_1_notify),
        cmocka_unit_test(rfc6522_multipart_report_structure),
        cmocka_unit_test(rfc3464_2_fields),
        cmocka_unit_test(rfc3461_4_3_ret_hdrs),
        cmocka_unit_test(rfc3464_delayed),
        cmocka_unit_test(rfc6533_utf8_address),
        cmocka_unit_test(header_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
