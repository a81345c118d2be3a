/* RFC 6152 downgrade of 8-bit messages for peers without 8BITMIME:
 * RFC 2045 6.7 quoted-printable for text, 6.8 base64 for the rest, and
 * the cases that must be refused (RFC 2046 5.2.1, RFC 6532 headers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "mime/mime_codec.h"
#include "mime/mime_downgrade.h"
#include "mime/mime_parse.h"

static int run(const char *msg, sbuf *out, char *why)
{
    return mime_downgrade(msg, strlen(msg), out, why, 200);
}

/* The decoded body of part `path` of a message. */
static void decoded_part(const char *msg, const unsigned *path, size_t n, sbuf *out)
{
    struct mime_part *root;
    mime_parse(msg, strlen(msg), NULL, &root);
    const struct mime_part *p = mime_part_find(root, path, n);
    assert_non_null(p);
    assert_int_equal(mime_part_decode(msg, p, out), 0);
    mime_free(root);
}

static void seven_bit_message_is_unchanged(void **state)
{
    const char *m = "Subject: hi\r\n\r\nplain ascii\r\n";
    sbuf out = SBUF_INIT;
    char why[200];
    assert_int_equal(run(m, &out, why), 0);
    assert_string_equal(out.data, m);
    sbuf_free(&out);
}

static void rfc6152_3_text_part_becomes_quoted_printable(void **state)
{
    const char *m = "From: a@example.test\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n"
                    "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln\r\n.dot line\r\n";
    sbuf out = SBUF_INIT;
    char why[200];
    assert_int_equal(run(m, &out, why), 0);
    assert_false(mime_has_8bit(out.data, out.len));
    assert_non_null(strstr(out.data, "Content-Transfer-Encoding: quoted-printable\r\n\r\n"));
    assert_null(strstr(out.data, "8bit"));
    assert_non_null(strstr(out.data, "From: a@example.test\r\n"));
    sbuf dec = SBUF_INIT;
    decoded_part(out.data, NULL, 0, &dec);
    assert_string_equal(dec.data, "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln\r\n.dot line\r\n");
    sbuf_free(&dec);
    sbuf_free(&out);
}

static void rfc2045_4_mime_version_added_when_missing(void **state)
{
    const char *m = "Subject: x\r\n\r\ncaf\xc3\xa9\r\n";
    sbuf out = SBUF_INIT;
    char why[200];
    assert_int_equal(run(m, &out, why), 0);
    assert_string_equal(out.data, "Subject: x\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n"
                                  "\r\ncaf=C3=A9\r\n");
    sbuf_free(&out);
}

static void rfc2046_5_1_multipart_recurses(void **state)
{
    const char *m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n"
                    "preamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nascii part\r\n"
                    "--XX\r\nContent-Type: text/plain; charset=latin1\r\nContent-Transfer-Encoding: 8BIT\r\n\r\n"
                    "na\xefve\r\n"
                    "--XX\r\nContent-Type: application/octet-stream\r\n\r\n\x80\x81\xff\r\n"
                    "--XX--\r\n";
    sbuf out = SBUF_INIT;
    char why[200];
    assert_int_equal(run(m, &out, why), 0);
    assert_false(mime_has_8bit(out.data, out.len));
    /* the multipart itself is relabelled, the ascii part untouched */
    assert_non_null(strstr(out.data, "boundary=XX\r\nContent-Transfer-Encoding: 7bit\r\n\r\npreamble"));
    assert_non_null(strstr(out.data, "--XX\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--XX"));
    sbuf dec = SBUF_INIT;
    unsigned p2[] = { 2 }, p3[] = { 3 };
    decoded_part(out.data, p2, 1, &dec);
    assert_string_equal(dec.data, "na\xefve");
    sbuf_reset(&dec);
    decoded_part(out.data, p3, 1, &dec);
    assert_int_equal(dec.len, 3);
    assert_memory_equal(dec.data, "\x80\x81\xff", 3);
    assert_non_null(strstr(out.data, "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"));
    sbuf_free(&dec);
    sbuf_free(&out);
}

static void rfc6532_8bit_header_is_refused(void **state)
{
    const char *m = "Subject: caf\xc3\xa9\r\n\r\nbody\r\n";
    sbuf out = SBUF_INIT;
    char why[200] = "";
    sbuf_puts(&out, "kept");
    assert_int_equal(run(m, &out, why), -1);
    assert_string_equal(out.data, "kept");
    assert_non_null(strstr(why, "header"));
    sbuf_free(&out);
}

static void rfc2046_5_2_1_message_rfc822_with_8bit_is_refused(void **state)
{
    const char *m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
                    "--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner caf\xc3\xa9\r\n"
                    "--B--\r\n";
    sbuf out = SBUF_INIT;
    char why[200] = "";
    assert_int_equal(run(m, &out, why), -1);
    assert_non_null(strstr(why, "message/rfc822"));
    assert_int_equal(out.len, 0);
    sbuf_free(&out);
}

static void eight_bit_in_encoded_part_is_refused(void **state)
{
    const char *m = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    "aGk\xff\r\n";
    sbuf out = SBUF_INIT;
    char why[200] = "";
    assert_int_equal(run(m, &out, why), -1);
    assert_non_null(strstr(why, "base64"));
    sbuf_free(&out);
}

static void eight_bit_preamble_is_refused(void **state)
{
    const char *m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
                    "pr\xe9" "amble\r\n--B\r\nContent-Type: text/plain\r\n\r\nok\r\n--B--\r\n";
    sbuf out = SBUF_INIT;
    char why[200] = "";
    assert_int_equal(run(m, &out, why), -1);
    assert_non_null(strstr(why, "preamble"));
    sbuf_free(&out);
}

static void rfc2045_6_7_long_lines_are_wrapped(void **state)
{
    sbuf in = SBUF_INIT;
    sbuf_puts(&in, "Content-Type: text/plain\r\n\r\n");
    for (int i = 0; i < 300; i++) sbuf_puts(&in, "\xc3\xa9");
    sbuf_puts(&in, "\r\n");
    sbuf out = SBUF_INIT;
    char why[200];
    assert_int_equal(mime_downgrade(in.data, in.len, &out, why, sizeof why), 0);
    const char *body = strstr(out.data, "\r\n\r\n") + 4;
    for (const char *l = body; *l;) {
        const char *e = strstr(l, "\r\n");
        assert_non_null(e);
        assert_true(e - l <= 76);
        l = e + 2;
    }
    sbuf dec = SBUF_INIT;
    decoded_part(out.data, NULL, 0, &dec);
    assert_int_equal(dec.len, 602);
    sbuf_free(&dec);
    sbuf_free(&in);
    sbuf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seven_bit_message_is_unchanged),
        cmocka_unit_test(rfc6152_3_text_part_becomes_quoted_printable),
        cmocka_unit_test(rfc2045_4_mime_version_added_when_missing),
        cmocka_unit_test(rfc2046_5_1_multipart_recurses),
        cmocka_unit_test(rfc6532_8bit_header_is_refused),
        cmocka_unit_test(rfc2046_5_2_1_message_rfc822_with_8bit_is_refused),
        cmocka_unit_test(eight_bit_in_encoded_part_is_refused),
        cmocka_unit_test(eight_bit_preamble_is_refused),
        cmocka_unit_test(rfc2045_6_7_long_lines_are_wrapped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
