/* RFC 5321 4.2 reply lines, RFC 2034 enhanced status codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "smtp/smtp_reply.h"

static void check(int code, const char *enh, const char *text, const char *want)
{
    sbuf b = SBUF_INIT;
    smtp_reply_format(&b, code, enh, text);
    if (strcmp(sbuf_cstr(&b), want) != 0)
        fail_msg("got \"%s\", want \"%s\"", sbuf_cstr(&b), want);
    sbuf_free(&b);
}

static void test_4_2_single_line(void **state)
{
    check(250, NULL, "OK", "250 OK\r\n");
    check(221, "2.0.0", "Bye", "221 2.0.0 Bye\r\n");
    check(354, NULL, "End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>\r\n");
}

static void test_4_2_1_multi_line(void **state)
{
    check(250, NULL, "mx.example.com\nPIPELINING\nSIZE 10240000\n8BITMIME",
          "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n");
}

static void test_2034_enhanced_on_every_line(void **state)
{
    check(550, "5.7.1", "Rejected\nSee https://x/policy",
          "550-5.7.1 Rejected\r\n550 5.7.1 See https://x/policy\r\n");
}

static void test_empty_text(void **state)
{
    check(250, "2.0.0", "", "250 2.0.0\r\n");
    check(250, NULL, "", "250\r\n");
    check(250, NULL, NULL, "250\r\n");
    check(250, NULL, "a\n\nb", "250-a\r\n250-\r\n250 b\r\n");
    check(250, "2.0.0", "a\n\nb", "250-2.0.0 a\r\n250-2.0.0\r\n250 2.0.0 b\r\n");
}

static void test_trailing_newline_and_crlf_in_text(void **state)
{
    check(250, NULL, "OK\n", "250 OK\r\n");
    check(250, NULL, "a\r\nb", "250-a\r\n250 b\r\n");
}

static void test_control_chars_cannot_inject(void **state)
{
    /* a CR not followed by LF, NUL-free controls and DEL become '?' */
    check(550, "5.1.1", "<a\rb@x>\tunknown\x1b\x7f", "550 5.1.1 <a?b@x>?unknown??\r\n");
    check(550, "5.1\r.1", "x", "550 5.1?.1 x\r\n");
    /* only the separators this function writes put CRLF on the wire */
    sbuf b = SBUF_INIT;
    smtp_reply_format(&b, 250, NULL, "x\r\r\ny\rz");
    size_t crlf = 0;
    for (size_t i = 0; i + 1 < b.len; i++)
        if (b.data[i] == '\r') {
            assert_int_equal(b.data[i + 1], '\n');
            crlf++;
        }
    assert_int_equal(crlf, 2);
    assert_string_equal(b.data, "250-x?\r\n250 y?z\r\n");
    sbuf_free(&b);
}

static void test_appends(void **state)
{
    sbuf b = SBUF_INIT;
    sbuf_puts(&b, "250 first\r\n");
    smtp_reply_format(&b, 251, "2.1.5", "second");
    assert_string_equal(b.data, "250 first\r\n251 2.1.5 second\r\n");
    sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_4_2_single_line),
        cmocka_unit_test(test_4_2_1_multi_line),
        cmocka_unit_test(test_2034_enhanced_on_every_line),
        cmocka_unit_test(test_empty_text),
        cmocka_unit_test(test_trailing_newline_and_crlf_in_text),
        cmocka_unit_test(test_control_chars_cannot_inject),
        cmocka_unit_test(test_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
