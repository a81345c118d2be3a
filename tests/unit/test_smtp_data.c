/* RFC 5321 4.5.2 transparency and 4.1.1.4 end of data, with the SMTP
 * smuggling variants (CVE-2023-51764/51765/51766) that must never end a
 * message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "smtp/smtp_data.h"

struct run {
    struct smtp_data d;
    sbuf out;
    size_t used;
};

/* Feed `in` in pieces of `step` bytes (0 = all at once), like a socket. */
static void run(struct run *r, const char *in, size_t len, enum smtp_data_mode mode,
                enum smtp_newline nl, size_t max_line, size_t step)
{
    smtp_data_init(&r->d, mode, nl, max_line);
    sbuf_init(&r->out);
    r->used = 0;
    if (step == 0) step = len ? len : 1;
    for (size_t pos = 0; pos < len; pos += step) {
        size_t n = len - pos < step ? len - pos : step;
        size_t u = smtp_data_feed(&r->d, in + pos, n, &r->out);
        r->used += u;
        if (u < n || r->d.done) break;
    }
}

static void dot(struct run *r, const char *in, size_t step)
{
    run(r, in, strlen(in), SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 1000, step);
}

static void assert_out(struct run *r, const char *want)
{
    if (r->out.len != strlen(want) || memcmp(r->out.data ? r->out.data : "", want, r->out.len) != 0)
        fail_msg("output \"%s\", want \"%s\"", r->out.data ? r->out.data : "", want);
    assert_int_equal(r->d.out_bytes, r->out.len);
}

static void test_4_1_1_4_end_of_data(void **state)
{
    struct run r;
    const char *in = "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    dot(&r, in, 0);
    assert_true(r.d.done);
    assert_out(&r, "Subject: x\r\n\r\nhello\r\n");
    /* pipelined QUIT stays with the caller */
    assert_int_equal(r.used, strlen(in) - strlen("QUIT\r\n"));
    assert_false(r.d.bare_lf);
    assert_false(r.d.bare_cr);
    sbuf_free(&r.out);
}

static void test_4_1_1_4_empty_message(void **state)
{
    struct run r;
    dot(&r, ".\r\nMAIL FROM:<a@b>\r\n", 0);
    assert_true(r.d.done);
    assert_int_equal(r.used, 3);
    assert_out(&r, "");
    sbuf_free(&r.out);
}

static void test_feed_after_done_consumes_nothing(void **state)
{
    struct run r;
    dot(&r, "a\r\n.\r\n", 0);
    assert_true(r.d.done);
    assert_int_equal(smtp_data_feed(&r.d, "more", 4, &r.out), 0);
    assert_out(&r, "a\r\n");
    sbuf_free(&r.out);
}

/* Each variant is followed by more text and a real terminator: the
 * message must end only at the real one and contain the smuggled text. */
static void test_smuggling_variants_never_terminate(void **state)
{
    static const struct { const char *in, *want; bool lf, cr; } cases[] = {
        { "a\n.\nMAIL FROM:<x@y>\r\n.\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", true, false },
        { "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", true, false },
        { "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", "a\r\n\r\nMAIL FROM:<x@y>\r\n", true, false },
        { "a\r.\rMAIL FROM:<x@y>\r\n.\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", false, true },
        { "a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", false, true },
        { "a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n", "a\r\n\r\nMAIL FROM:<x@y>\r\n", false, true },
        { "a\n\r\n.\r\nX\r\n.\r\n", "a\r\n\r\n", true, false },   /* real CRLF before dot: ends */
        { "\n.\nX\r\n.\r\n", "\r\n.\r\nX\r\n", true, false },
        { ".\nX\r\n.\r\n", "\r\nX\r\n", true, false },
        { ".\rX\r\n.\r\n", "\r\nX\r\n", false, true },
        { "a\r\r\n.\r\n", "a\r\n\r\n", false, true },
        { "a\r\n.\r\r\n.\r\n", "a\r\n\r\n\r\n", false, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 0; step <= 3; step++) {
            struct run r;
            dot(&r, cases[i].in, step);
            if (!r.d.done) fail_msg("case %zu: not done", i);
            assert_out(&r, cases[i].want);
            assert_int_equal(r.d.bare_lf, cases[i].lf);
            assert_int_equal(r.d.bare_cr, cases[i].cr);
            sbuf_free(&r.out);
        }
    }
    /* after the real terminator of case 6, "X\r\n.\r\n" is left over */
    struct run r;
    dot(&r, "a\n\r\n.\r\nX\r\n.\r\n", 0);
    assert_int_equal(r.used, strlen("a\n\r\n.\r\n"));
    sbuf_free(&r.out);
}

static void test_smuggling_without_real_end_stays_open(void **state)
{
    static const char *const cases[] = {
        "a\n.\n", "a\n.\r\n", "a\r\n.\n", "a\r.\r", "a\r\n.\r", "a\r.\r\n", "\n.\n",
        "a\r\n.\r\r\n", "a\r\n..\r\n", "a\r\n. \r\n", "a\r\n.\0\r\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        size_t len = strlen(cases[i]);
        if (i == 10) len = 7;
        run(&r, cases[i], len, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 1000, 0);
        if (r.d.done) fail_msg("case %zu terminated", i);
        assert_int_equal(r.used, len);
        sbuf_free(&r.out);
    }
}

static void test_4_5_2_dot_unstuffing(void **state)
{
    struct run r;
    dot(&r, "..\r\n..x\r\n.y\r\nz.\r\n...\r\n.\r\n", 0);
    assert_true(r.d.done);
    assert_out(&r, ".\r\n.x\r\ny\r\nz.\r\n..\r\n");
    sbuf_free(&r.out);

    /* a dot after a bare LF is not at a line start: kept */
    dot(&r, "a\n..\r\n.\r\n", 0);
    assert_out(&r, "a\r\n..\r\n");
    sbuf_free(&r.out);

    /* the very first line is a line start too */
    dot(&r, "..start\r\n.\r\n", 0);
    assert_out(&r, ".start\r\n");
    sbuf_free(&r.out);
}

static void test_newline_normalize_and_keep(void **state)
{
    struct run r;
    const char *in = "a\nb\rc\r\n.\r\n";
    dot(&r, in, 0);
    assert_out(&r, "a\r\nb\r\nc\r\n");
    assert_true(r.d.bare_lf);
    assert_true(r.d.bare_cr);
    sbuf_free(&r.out);

    run(&r, in, strlen(in), SMTP_DATA_DOT, SMTP_NEWLINE_KEEP, 1000, 0);
    assert_true(r.d.done);
    assert_out(&r, "a\nb\rc\r\n");
    assert_true(r.d.bare_lf);
    assert_true(r.d.bare_cr);
    sbuf_free(&r.out);
}

static void test_byte_by_byte_equals_whole(void **state)
{
    const char *inputs[] = {
        "Received: a\r\nreceived : b\r\n\r\n..x\r\n\n.\n\r.\r\r\n..\r\n.\r\n",
        "x\r\r\r\n\n\n\r\n.\r\r\n.\n.\r\n.\r\n",
        ".\r\n",
        "...\r\n.\r.\r\n.\r\n",
        "\r\n\r\n.\r\n",
        "\xff\0\r\n.\r\n",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        for (int mode = 0; mode < 2; mode++) {
            for (int nl = 0; nl < 2; nl++) {
                size_t len = i == 5 ? 7 : strlen(inputs[i]);
                struct run whole, bytes, threes;
                run(&whole, inputs[i], len, (enum smtp_data_mode)mode, (enum smtp_newline)nl, 4, 0);
                run(&bytes, inputs[i], len, (enum smtp_data_mode)mode, (enum smtp_newline)nl, 4, 1);
                run(&threes, inputs[i], len, (enum smtp_data_mode)mode, (enum smtp_newline)nl, 4, 3);
                smtp_data_finish(&whole.d, &whole.out);
                smtp_data_finish(&bytes.d, &bytes.out);
                smtp_data_finish(&threes.d, &threes.out);
                struct run *others[] = { &bytes, &threes };
                for (int k = 0; k < 2; k++) {
                    struct run *o = others[k];
                    assert_int_equal(whole.used, o->used);
                    assert_int_equal(whole.out.len, o->out.len);
                    if (whole.out.len) assert_memory_equal(whole.out.data, o->out.data, whole.out.len);
                    assert_int_equal(whole.d.done, o->d.done);
                    assert_int_equal(whole.d.bare_lf, o->d.bare_lf);
                    assert_int_equal(whole.d.bare_cr, o->d.bare_cr);
                    assert_int_equal(whole.d.nul, o->d.nul);
                    assert_int_equal(whole.d.eight_bit, o->d.eight_bit);
                    assert_int_equal(whole.d.line_too_long, o->d.line_too_long);
                    assert_int_equal(whole.d.received_headers, o->d.received_headers);
                    assert_int_equal(whole.d.out_bytes, o->d.out_bytes);
                }
                if (mode == SMTP_DATA_DOT) assert_true(whole.d.done);
                sbuf_free(&whole.out);
                sbuf_free(&bytes.out);
                sbuf_free(&threes.out);
            }
        }
    }
}

static void test_4_5_3_1_6_line_too_long(void **state)
{
    struct run r;
    /* max_line 10 counts the CRLF: "12345678\r\n" is exactly 10 */
    run(&r, "12345678\r\n.\r\n", 13, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 10, 0);
    assert_false(r.d.line_too_long);
    sbuf_free(&r.out);
    run(&r, "123456789\r\n.\r\n", 14, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 10, 0);
    assert_true(r.d.line_too_long);
    /* the content still flows */
    assert_true(r.d.done);
    assert_out(&r, "123456789\r\n");
    sbuf_free(&r.out);
    /* two lines each within the limit, split over feeds */
    run(&r, "12345678\r\n12345678\r\n.\r\n", 23, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 10, 1);
    assert_false(r.d.line_too_long);
    sbuf_free(&r.out);
    /* 0 = unlimited */
    run(&r, "123456789012345\r\n.\r\n", 20, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 0, 0);
    assert_false(r.d.line_too_long);
    sbuf_free(&r.out);
}

static void test_flags_nul_8bit(void **state)
{
    struct run r;
    run(&r, "a\0b\r\n.\r\n", 8, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 1000, 0);
    assert_true(r.d.nul);
    assert_false(r.d.eight_bit);
    assert_int_equal(r.out.len, 5);
    sbuf_free(&r.out);
    dot(&r, "caf\xc3\xa9\r\n.\r\n", 0);
    assert_false(r.d.nul);
    assert_true(r.d.eight_bit);
    sbuf_free(&r.out);
    dot(&r, "plain\r\n.\r\n", 0);
    assert_false(r.d.nul);
    assert_false(r.d.eight_bit);
    assert_false(r.d.bare_lf || r.d.bare_cr || r.d.line_too_long);
    sbuf_free(&r.out);
}

static void test_received_header_count(void **state)
{
    struct run r;
    dot(&r, "Received: from a\r\n by b\r\nRECEIVED:x\r\nreceived \t: y\r\n"
            "Received-SPF: pass\r\nX-Received: no\r\nReceivedX: no\r\nSubject: Received: no\r\n"
            "\r\nReceived: in body\r\n.\r\n", 1);
    assert_true(r.d.done);
    assert_int_equal(r.d.received_headers, 3);
    sbuf_free(&r.out);

    /* the empty line ends the header section even with a bare LF (KEEP) */
    run(&r, "Received: a\n\nReceived: b\r\n.\r\n", 29, SMTP_DATA_DOT, SMTP_NEWLINE_KEEP, 1000, 0);
    assert_int_equal(r.d.received_headers, 1);
    sbuf_free(&r.out);

    /* no header section at all: an empty first line */
    dot(&r, "\r\nReceived: x\r\n.\r\n", 0);
    assert_int_equal(r.d.received_headers, 0);
    sbuf_free(&r.out);
}

static void test_3030_raw_mode(void **state)
{
    struct run r;
    const char *in = "..a\r\n.\r\nb\nc\r";
    run(&r, in, strlen(in), SMTP_DATA_RAW, SMTP_NEWLINE_KEEP, 1000, 0);
    assert_false(r.d.done);
    assert_int_equal(r.used, strlen(in));
    /* the trailing CR is held until we know no LF follows */
    assert_out(&r, "..a\r\n.\r\nb\nc");
    smtp_data_finish(&r.d, &r.out);
    assert_out(&r, "..a\r\n.\r\nb\nc\r");
    assert_true(r.d.bare_lf);
    assert_true(r.d.bare_cr);
    sbuf_free(&r.out);

    /* a CRLF split across two BDAT chunks is not bare */
    smtp_data_init(&r.d, SMTP_DATA_RAW, SMTP_NEWLINE_NORMALIZE, 1000);
    sbuf_init(&r.out);
    assert_int_equal(smtp_data_feed(&r.d, "x\r", 2, &r.out), 2);
    assert_int_equal(smtp_data_feed(&r.d, "\ny\n", 3, &r.out), 3);
    smtp_data_finish(&r.d, &r.out);
    assert_false(r.d.bare_cr);
    assert_true(r.d.bare_lf);
    assert_out(&r, "x\r\ny\r\n");
    sbuf_free(&r.out);
}

static void test_large_input_slices(void **state)
{
    /* More than one internal slice, ending in a terminator. */
    size_t n = 200000;
    char *big = test_malloc(n + 5);
    for (size_t i = 0; i < n; i++) big[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'x';
    memcpy(big + n, ".\r\n", 3);
    struct run r;
    run(&r, big, n + 3, SMTP_DATA_DOT, SMTP_NEWLINE_NORMALIZE, 1000, 0);
    assert_true(r.d.done);
    assert_int_equal(r.used, n + 3);
    assert_int_equal(r.out.len, n);
    assert_memory_equal(r.out.data, big, n);
    sbuf_free(&r.out);
    test_free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_4_1_1_4_end_of_data),
        cmocka_unit_test(test_4_1_1_4_empty_message),
        cmocka_unit_test(test_feed_after_done_consumes_nothing),
        cmocka_unit_test(test_smuggling_variants_never_terminate),
        cmocka_unit_test(test_smuggling_without_real_end_stays_open),
        cmocka_unit_test(test_4_5_2_dot_unstuffing),
        cmocka_unit_test(test_newline_normalize_and_keep),
        cmocka_unit_test(test_byte_by_byte_equals_whole),
        cmocka_unit_test(test_4_5_3_1_6_line_too_long),
        cmocka_unit_test(test_flags_nul_8bit),
        cmocka_unit_test(test_received_header_count),
        cmocka_unit_test(test_3030_raw_mode),
        cmocka_unit_test(test_large_input_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
