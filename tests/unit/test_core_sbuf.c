#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "core/util.h"

static void sbuf_grows_and_stays_terminated(void **state)
{
    sbuf b = SBUF_INIT;
    assert_string_equal(sbuf_cstr(&b), "");
    for (int i = 0; i < 1000; i++) sbuf_putc(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.data[1000], '\0');
    sbuf_printf(&b, "%0300d", 7);
    assert_int_equal(b.len, 1300);
    assert_int_equal(b.data[1299], '7');
    sbuf_append(&b, "x\0y", 3);
    assert_int_equal(b.len, 1303);
    assert_memory_equal(b.data + 1300, "x\0y", 3);
    char *s = sbuf_detach(&b);
    assert_null(b.data);
    assert_int_equal(strlen(s), 1301);
    free(s);
}

static void sizes_and_durations_parse(void **state)
{
    uint64_t v;
    assert_int_equal(parse_size("25M", &v), 0);
    assert_int_equal(v, 25u * 1024 * 1024);
    assert_int_equal(parse_size("100k", &v), 0);
    assert_int_equal(v, 102400);
    assert_int_equal(parse_size("12", &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(parse_size("-1", &v), -1);
    assert_int_equal(parse_size("1X", &v), -1);
    assert_int_equal(parse_size("", &v), -1);
    assert_int_equal(parse_size("99999999999999999999G", &v), -1);
    assert_int_equal(parse_duration("5m", &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(parse_duration("2h", &v), 0);
    assert_int_equal(v, 7200);
    assert_int_equal(parse_duration("3s", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(parse_duration("3ms", &v), -1);
}

static void ids_are_distinct_and_alphanumeric(void **state)
{
    char a[17], b[17];
    make_id(a);
    make_id(b);
    assert_int_equal(strlen(a), 16);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 16; i++)
        assert_true((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'A' && a[i] <= 'V'));
}

static void ascii_case_helpers(void **state)
{
    assert_int_equal(ascii_casecmp("MAIL", "mail"), 0);
    assert_true(ascii_casecmp("a", "b") < 0);
    assert_true(ascii_prefix("Received: x", "received:"));
    assert_false(ascii_prefix("Recei", "received:"));
    /* Non-ASCII bytes are never folded. */
    assert_int_not_equal(ascii_casecmp("\xc3\x84", "\xc3\xa4"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sbuf_grows_and_stays_terminated),
        cmocka_unit_test(sizes_and_durations_parse),
        cmocka_unit_test(ids_are_distinct_and_alphanumeric),
        cmocka_unit_test(ascii_case_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
