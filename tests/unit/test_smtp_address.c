/* RFC 5321 4.1.2 paths, 4.5.3.1 limits, RFC 6531 UTF-8 addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "smtp/smtp_address.h"

/* Parse a NUL-terminated path with the given flags; -1 on error. */
static int parse(const char *s, bool utf8, bool null, bool pm, struct smtp_address *a)
{
    return smtp_parse_path(s, strlen(s), utf8, null, pm, a);
}

static int parse_plain(const char *s, struct smtp_address *a)
{
    return parse(s, false, false, false, a);
}

static void assert_bad(const char *s)
{
    struct smtp_address a;
    assert_int_equal(parse(s, true, true, true, &a), -1);
}

static void test_4_1_2_simple_mailbox(void **state)
{
    struct smtp_address a;
    assert_int_equal(parse_plain("<john.smith@Example.COM>", &a), 24);
    assert_string_equal(a.local, "john.smith");
    assert_string_equal(a.domain, "example.com");
    assert_false(a.null);
    assert_false(a.quoted);
    assert_false(a.utf8);
    assert_false(a.literal);
}

static void test_4_1_2_consumed_stops_at_gt(void **state)
{
    struct smtp_address a;
    const char *s = "<a@b.c> SIZE=10";
    assert_int_equal(smtp_parse_path(s, strlen(s), false, false, false, &a), 7);
    /* len bounds the parse: the '>' is beyond it */
    assert_int_equal(smtp_parse_path(s, 6, false, false, false, &a), -1);
}

static void test_4_1_2_atext_specials(void **state)
{
    struct smtp_address a;
    assert_true(parse_plain("<!#$%&'*+-/=?^_`{|}~@x.org>", &a) > 0);
    assert_string_equal(a.local, "!#$%&'*+-/=?^_`{|}~");
    assert_false(a.quoted);
}

static void test_4_1_2_bad_dot_atoms(void **state)
{
    assert_bad("<.a@b>");
    assert_bad("<a.@b>");
    assert_bad("<a..b@b>");
    assert_bad("<a b@b>");
    assert_bad("<a(b)@b>");
    assert_bad("<a,b@b>");
    assert_bad("<@b>");
    assert_bad("<a@>");
    assert_bad("<a>");
    assert_bad("<a@@b>");
}

static void test_4_1_2_quoted_local(void **state)
{
    struct smtp_address a;
    assert_true(parse_plain("<\"john doe\"@x.org>", &a) > 0);
    assert_string_equal(a.local, "john doe");
    assert_true(a.quoted);

    assert_true(parse_plain("<\"a\\\"b\"@x>", &a) > 0);
    assert_string_equal(a.local, "a\"b");
    assert_true(a.quoted);

    assert_true(parse_plain("<\"a\\\\b\"@x>", &a) > 0);
    assert_string_equal(a.local, "a\\b");
    assert_true(a.quoted);

    /* quoted-pair of an ordinary char resolves to that char */
    assert_true(parse_plain("<\"\\a\\b\"@x>", &a) > 0);
    assert_string_equal(a.local, "ab");
    assert_false(a.quoted);

    /* empty quoted string is a valid (if odd) local part */
    assert_true(parse_plain("<\"\"@x>", &a) > 0);
    assert_string_equal(a.local, "");
    assert_true(a.quoted);
}

static void test_4_1_2_quoted_dot_atom_is_canonical(void **state)
{
    struct smtp_address a;
    assert_true(parse_plain("<\"john.smith\"@x.org>", &a) > 0);
    assert_string_equal(a.local, "john.smith");
    assert_false(a.quoted);
    sbuf b = SBUF_INIT;
    smtp_address_format(&a, &b);
    assert_string_equal(b.data, "john.smith@x.org");
    sbuf_free(&b);

    /* ".." inside quotes is not a dot-atom and must stay quoted */
    assert_true(parse_plain("<\"a..b\"@x>", &a) > 0);
    assert_true(a.quoted);
}

static void test_4_1_2_bad_quoted(void **state)
{
    assert_bad("<\"abc@x>");                 /* unterminated */
    assert_bad("<\"a\"b@x>");                /* junk after quote */
    assert_bad("<\"a\tb\"@x>");              /* control char */
    assert_bad("<\"a\\\tb\"@x>");            /* quoted-pair of control */
    assert_bad("<\"a\\");
    const char nul[] = "<\"a\0b\"@x>";
    struct smtp_address a;
    assert_int_equal(smtp_parse_path(nul, sizeof nul - 1, true, true, true, &a), -1);
    const char nul2[] = "<a\0b@x>";
    assert_int_equal(smtp_parse_path(nul2, sizeof nul2 - 1, true, true, true, &a), -1);
}

static void test_4_1_2_domain_rules(void **state)
{
    struct smtp_address a;
    assert_true(parse_plain("<a@mail-1.example.com>", &a) > 0);
    assert_true(parse_plain("<a@localhost>", &a) > 0);
    assert_true(parse_plain("<a@123.example>", &a) > 0);
    assert_bad("<a@-x.com>");
    assert_bad("<a@x-.com>");
    assert_bad("<a@x..com>");
    assert_bad("<a@.x.com>");
    assert_bad("<a@x.com.>");
    assert_bad("<a@x_y.com>");
    assert_bad("<a@x com>");
    assert_bad("<a@x.com");
    assert_bad("<a@x.com >");
}

static void test_4_1_3_address_literals(void **state)
{
    struct smtp_address a;
    assert_true(parse_plain("<a@[192.0.2.1]>", &a) > 0);
    assert_string_equal(a.domain, "[192.0.2.1]");
    assert_true(a.literal);

    assert_true(parse_plain("<a@[IPv6:2001:db8::1]>", &a) > 0);
    assert_string_equal(a.domain, "[IPv6:2001:db8::1]");
    assert_true(a.literal);
    assert_true(parse_plain("<a@[IPv6:::ffff:192.0.2.1]>", &a) > 0);
    assert_true(parse_plain("<a@[ipv6:::1]>", &a) > 0);

    /* General-address-literal: a standardized tag and dcontent */
    assert_true(parse_plain("<a@[x-tag:foo.bar]>", &a) > 0);
    assert_true(a.literal);

    assert_bad("<a@[192.0.2.256]>");
    assert_bad("<a@[192.0.2]>");
    assert_bad("<a@[192.0.2.1.5]>");
    assert_bad("<a@[1921.0.2.1]>");
    assert_bad("<a@[]>");
    assert_bad("<a@[IPv6:2001:db8::g]>");
    assert_bad("<a@[IPv6:1:2:3:4:5:6:7:8:9]>");
    assert_bad("<a@[IPv6:fe80::1%eth0]>");
    assert_bad("<a@[IPv6:]>");
    assert_bad("<a@[-tag:x]>");
    assert_bad("<a@[tag:]>");
    assert_bad("<a@[192.0.2.1>");
    assert_bad("<a@[192.0.2.1]x>");
    assert_bad("<a@[a[b]>");
}

static void test_4_1_2_null_path(void **state)
{
    struct smtp_address a;
    assert_int_equal(parse("<>", false, true, false, &a), 2);
    assert_true(a.null);
    assert_int_equal(parse("<>", false, false, true, &a), -1);
    sbuf b = SBUF_INIT;
    assert_int_equal(parse("<>", false, true, false, &a), 2);
    smtp_address_format(&a, &b);
    assert_int_equal(b.len, 0);
    sbuf_free(&b);
}

static void test_4_5_1_postmaster(void **state)
{
    struct smtp_address a;
    assert_int_equal(parse("<Postmaster>", false, false, true, &a), 12);
    assert_string_equal(a.local, "Postmaster");
    assert_string_equal(a.domain, "");
    assert_true(parse("<pOsTmAsTeR>", false, false, true, &a) > 0);
    assert_string_equal(a.local, "Postmaster");
    sbuf b = SBUF_INIT;
    smtp_address_format(&a, &b);
    assert_string_equal(b.data, "Postmaster");
    sbuf_free(&b);

    assert_int_equal(parse("<Postmaster>", false, true, false, &a), -1);
    assert_int_equal(parse("<\"Postmaster\">", false, false, true, &a), -1);
    assert_int_equal(parse("<postmaster2>", false, false, true, &a), -1);
    assert_int_equal(parse("<@x:Postmaster>", false, false, true, &a), -1);
    assert_true(parse("<postmaster@x>", false, false, false, &a) > 0);
}

static void test_4_1_2_source_route_discarded(void **state)
{
    struct smtp_address a;
    const char *s = "<@a.example,@b.example:user@c.example>";
    assert_int_equal(parse_plain(s, &a), (int)strlen(s));
    assert_string_equal(a.local, "user");
    assert_string_equal(a.domain, "c.example");
    assert_true(parse_plain("<@a:user@c>", &a) > 0);

    assert_bad("<@a.example:>");
    assert_bad("<@a.example,user@c>");
    assert_bad("<@a.example;user@c>");
    assert_bad("<@,@b:user@c>");
    assert_bad("<@-a:user@c>");
    assert_bad("<@a,b:user@c>");
}

static void test_6531_utf8(void **state)
{
    struct smtp_address a;
    const char *s = "<\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd@\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.RU>";
    assert_int_equal(parse(s, false, false, false, &a), -1);
    assert_int_equal(parse(s, true, false, false, &a), (int)strlen(s));
    assert_true(a.utf8);
    assert_string_equal(a.local, "\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd");
    /* only ASCII is lower-cased */
    assert_string_equal(a.domain, "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.ru");
    assert_false(a.quoted);

    /* UTF-8 in a quoted local part */
    assert_true(parse("<\"j\xc3\xb6 d\"@x>", true, false, false, &a) > 0);
    assert_true(a.utf8);
    assert_true(a.quoted);

    assert_true(parse("<a@b>", true, false, false, &a) > 0);
    assert_false(a.utf8);
}

static void test_6531_invalid_utf8(void **state)
{
    struct smtp_address a;
    assert_int_equal(parse("<\xc3@x>", true, false, false, &a), -1);         /* truncated */
    assert_int_equal(parse("<\xc0\xaf@x>", true, false, false, &a), -1);     /* overlong */
    assert_int_equal(parse("<\xed\xa0\x80@x>", true, false, false, &a), -1); /* surrogate */
    assert_int_equal(parse("<\xf4\x90\x80\x80@x>", true, false, false, &a), -1); /* > U+10FFFF */
    assert_int_equal(parse("<\x80@x>", true, false, false, &a), -1);         /* lone continuation */
    assert_int_equal(parse("<a@x\xff>", true, false, false, &a), -1);
    assert_int_equal(parse("<\"\xe2\x82\"@x>", true, false, false, &a), -1);
    assert_int_equal(parse("<\xf0\x9f\x98\x80@x>", true, false, false, &a), 8);  /* U+1F600 ok */
}

static void test_4_5_3_1_length_limits(void **state)
{
    struct smtp_address a;
    char buf[600];

    /* local part: 64 octets ok, 65 not */
    memset(buf, 0, sizeof buf);
    buf[0] = '<';
    memset(buf + 1, 'l', 64);
    strcpy(buf + 65, "@x>");
    assert_true(parse_plain(buf, &a) > 0);
    assert_int_equal(strlen(a.local), 64);
    memset(buf + 1, 'l', 65);
    strcpy(buf + 66, "@x>");
    assert_int_equal(parse_plain(buf, &a), -1);

    /* a quoted local part counts its quotes */
    memset(buf, 0, sizeof buf);
    strcpy(buf, "<\"");
    memset(buf + 2, 'q', 62);
    strcpy(buf + 64, "\"@x>");
    assert_true(parse_plain(buf, &a) > 0);
    memset(buf, 0, sizeof buf);
    strcpy(buf, "<\"");
    memset(buf + 2, 'q', 63);
    strcpy(buf + 65, "\"@x>");
    assert_int_equal(parse_plain(buf, &a), -1);

    /* label: 63 ok, 64 not */
    memset(buf, 0, sizeof buf);
    strcpy(buf, "<a@");
    memset(buf + 3, 'd', 63);
    strcpy(buf + 66, ".com>");
    assert_true(parse_plain(buf, &a) > 0);
    memset(buf + 3, 'd', 64);
    strcpy(buf + 67, ".com>");
    assert_int_equal(parse_plain(buf, &a), -1);

    /* whole path <= 256 octets including the brackets */
    memset(buf, 0, sizeof buf);
    strcpy(buf, "<a@");
    size_t n = 3;
    while (n < 253 - 4) {
        memcpy(buf + n, "abc.", 4);
        n += 4;
    }
    while (n < 255) buf[n++] = 'z';
    buf[n++] = '>';                         /* n == 256 */
    assert_int_equal(parse_plain(buf, &a), 256);
    buf[n - 1] = 'z';
    buf[n++] = '>';                         /* 257 */
    assert_int_equal(parse_plain(buf, &a), -1);
}

static void test_4_1_2_missing_brackets_and_junk(void **state)
{
    assert_bad("");
    assert_bad("a@b");
    assert_bad("<");
    assert_bad("<a@b");
    assert_bad(" <a@b>");
    assert_bad("< a@b>");
    assert_bad("<<a@b>>");
    assert_bad("<a@b\r\n>");
    struct smtp_address a;
    assert_int_equal(smtp_parse_path("<>", 1, true, true, true, &a), -1);
}

static void test_format_round_trip(void **state)
{
    const char *cases[] = {
        "<\"a b\"@x>", "<\"a\\\"b\"@x>", "<\"a\\\\b\"@x>", "<\"\"@x>", "<\".a\"@x>",
        "<simple@x.y>", "<a@[IPv6:::1]>", "<\"x@y\"@z>",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct smtp_address a, b;
        assert_true(parse_plain(cases[i], &a) > 0);
        sbuf s = SBUF_INIT;
        sbuf_putc(&s, '<');
        smtp_address_format(&a, &s);
        sbuf_putc(&s, '>');
        assert_int_equal(smtp_parse_path(s.data, s.len, false, false, false, &b), (int)s.len);
        assert_memory_equal(&a, &b, sizeof a);
        sbuf_free(&s);
    }
    struct smtp_address a;
    sbuf s = SBUF_INIT;
    assert_true(parse_plain("<\"a\\\"b c\"@X.Org>", &a) > 0);
    smtp_address_format(&a, &s);
    assert_string_equal(s.data, "\"a\\\"b c\"@x.org");
    sbuf_free(&s);
}

static void test_domain_valid_for_helo(void **state)
{
    assert_true(smtp_domain_valid("mail.example.com", 16, false));
    assert_true(smtp_domain_valid("[192.0.2.1]", 11, false));
    assert_false(smtp_domain_valid("[192.0.2.1", 10, false));
    assert_false(smtp_domain_valid("my_pc", 5, false));
    assert_false(smtp_domain_valid("a b", 3, false));
    assert_false(smtp_domain_valid("", 0, false));
    assert_false(smtp_domain_valid("\xc3\xa9.fr", 5, false));
    assert_true(smtp_domain_valid("\xc3\xa9.fr", 5, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_4_1_2_simple_mailbox),
        cmocka_unit_test(test_4_1_2_consumed_stops_at_gt),
        cmocka_unit_test(test_4_1_2_atext_specials),
        cmocka_unit_test(test_4_1_2_bad_dot_atoms),
        cmocka_unit_test(test_4_1_2_quoted_local),
        cmocka_unit_test(test_4_1_2_quoted_dot_atom_is_canonical),
        cmocka_unit_test(test_4_1_2_bad_quoted),
        cmocka_unit_test(test_4_1_2_domain_rules),
        cmocka_unit_test(test_4_1_3_address_literals),
        cmocka_unit_test(test_4_1_2_null_path),
        cmocka_unit_test(test_4_5_1_postmaster),
        cmocka_unit_test(test_4_1_2_source_route_discarded),
        cmocka_unit_test(test_6531_utf8),
        cmocka_unit_test(test_6531_invalid_utf8),
        cmocka_unit_test(test_4_5_3_1_length_limits),
        cmocka_unit_test(test_4_1_2_missing_brackets_and_junk),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_domain_valid_for_helo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
