/* RFC 4314 rights strings and "Other Users" names (src/imap/imap_acl.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "imap/imap_acl.h"

static unsigned parse_ok(const char *s, enum imap_rights_mod want_mod)
{
    enum imap_rights_mod mod;
    unsigned bits;
    if (imap_rights_parse(s, strlen(s), &mod, &bits) != 0) fail_msg("refused: %s", s);
    assert_int_equal(mod, want_mod);
    return bits;
}

static void fmt(unsigned bits, bool virt, const char *want)
{
    sbuf b = SBUF_INIT;
    if (virt) imap_rights_format(&b, bits);
    else imap_rights_format_plain(&b, bits);
    assert_string_equal(sbuf_cstr(&b), want);
    sbuf_free(&b);
}

static void test_4314_2_1_rights_letters(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("l", IMAP_RIGHTS_REPLACE), IMAP_RIGHT_L);
    assert_int_equal(parse_ok("lrswipkxtea", IMAP_RIGHTS_REPLACE), IMAP_RIGHTS_ALL);
    /* any order, repeats: one canonical form */
    unsigned b = parse_ok("aetxkpiwsrlrr", IMAP_RIGHTS_REPLACE);
    assert_int_equal(b, IMAP_RIGHTS_ALL);
    fmt(b, false, "lrswipkxtea");
    fmt(parse_ok("ril", IMAP_RIGHTS_REPLACE), false, "lri");
    /* empty: no rights */
    assert_int_equal(parse_ok("", IMAP_RIGHTS_REPLACE), 0);
    fmt(0, true, "");
}

static void test_4314_3_1_modifiers(void **state)
{
    (void)state;
    unsigned add = parse_ok("+w", IMAP_RIGHTS_ADD);
    unsigned del = parse_ok("-lr", IMAP_RIGHTS_REMOVE);
    unsigned cur = IMAP_RIGHT_L | IMAP_RIGHT_R | IMAP_RIGHT_S;
    assert_int_equal(imap_rights_apply(cur, IMAP_RIGHTS_ADD, add), cur | IMAP_RIGHT_W);
    assert_int_equal(imap_rights_apply(cur, IMAP_RIGHTS_REMOVE, del), IMAP_RIGHT_S);
    assert_int_equal(imap_rights_apply(cur, IMAP_RIGHTS_REPLACE, IMAP_RIGHT_A), IMAP_RIGHT_A);
    /* a lone sign changes nothing */
    assert_int_equal(parse_ok("+", IMAP_RIGHTS_ADD), 0);
}

static void test_4314_3_1_unknown_right_is_refused(void **state)
{
    (void)state;
    static const char *const bad[] = { "lrQ", "L", "x y", "lr+", "1", "-+l", "\x80" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum imap_rights_mod mod;
        unsigned bits;
        if (imap_rights_parse(bad[i], strlen(bad[i]), &mod, &bits) != -1) fail_msg("accepted: %s", bad[i]);
    }
    /* an embedded NUL is not a right either */
    enum imap_rights_mod mod;
    unsigned bits;
    assert_int_equal(imap_rights_parse("l\0r", 3, &mod, &bits), -1);
}

static void test_4314_2_1_1_obsolete_c_and_d(void **state)
{
    (void)state;
    /* c = k, d = x t e (the second group of RFC 4314 2.1.1) */
    assert_int_equal(parse_ok("c", IMAP_RIGHTS_REPLACE), IMAP_RIGHT_K);
    assert_int_equal(parse_ok("d", IMAP_RIGHTS_REPLACE), IMAP_RIGHT_X | IMAP_RIGHT_T | IMAP_RIGHT_E);
    /* RFC 2086 "lrswicda" */
    unsigned b = parse_ok("lrswicda", IMAP_RIGHTS_REPLACE);
    fmt(b, false, "lrswikxtea");
    /* responses carry c and d when a member is granted */
    fmt(b, true, "lrswikxteacd");
    fmt(IMAP_RIGHT_T, true, "td");
    fmt(IMAP_RIGHT_K, true, "kc");
    fmt(IMAP_RIGHT_L | IMAP_RIGHT_R, true, "lr");
    fmt(IMAP_RIGHTS_ALL, true, "lrswipkxteacd");
}

static void test_4314_2_identifiers(void **state)
{
    (void)state;
    assert_true(imap_acl_ident_anyone("anyone", 6));
    assert_true(imap_acl_ident_anyone("ANYONE", 6));
    assert_false(imap_acl_ident_anyone("anyone2", 7));
    assert_true(imap_acl_ident_negative("-bob@example.org", 16));
    assert_false(imap_acl_ident_negative("bob@example.org", 15));
    assert_false(imap_acl_ident_negative("", 0));
}

static void split(const char *name, int want, const char *owner, const char *rest)
{
    char *o;
    const char *r;
    int k = imap_acl_split_shared(name, &o, &r);
    if (k != want) fail_msg("%s: %d, want %d", name, k, want);
    if (want == 1) {
        assert_string_equal(o, owner);
        assert_string_equal(r, rest);
    } else {
        assert_null(o);
    }
    free(o);
}

static void test_2342_other_users_names(void **state)
{
    (void)state;
    split("Other Users/b@example.org/Folder", 1, "b@example.org", "Folder");
    split("Other Users/B@Example.ORG/INBOX/sub", 1, "b@example.org", "INBOX/sub");
    split("other users/b@example.org/x", 1, "b@example.org", "x");
    /* outside the namespace */
    split("INBOX", 0, NULL, NULL);
    split("Other Usersx/b@example.org/x", 0, NULL, NULL);
    split("Other", 0, NULL, NULL);
    /* in it but malformed: path tricks and missing parts */
    split("Other Users", -1, NULL, NULL);
    split("Other Users/", -1, NULL, NULL);
    split("Other Users/b@example.org", -1, NULL, NULL);
    split("Other Users/b@example.org/", -1, NULL, NULL);
    split("Other Users/../x", -1, NULL, NULL);
    split("Other Users/b@example.org/../../x", -1, NULL, NULL);
    split("Other Users/b@example.org/./x", -1, NULL, NULL);
    split("Other Users/b@example.org/a//b", -1, NULL, NULL);
    split("Other Users/b@example.org/a/..", -1, NULL, NULL);
    split("Other Users/nobody/x", -1, NULL, NULL);
    split("Other Users//x", -1, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_4314_2_1_rights_letters),
        cmocka_unit_test(test_4314_3_1_modifiers),
        cmocka_unit_test(test_4314_3_1_unknown_right_is_refused),
        cmocka_unit_test(test_4314_2_1_1_obsolete_c_and_d),
        cmocka_unit_test(test_4314_2_identifiers),
        cmocka_unit_test(test_2342_other_users_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
