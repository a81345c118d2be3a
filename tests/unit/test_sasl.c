/* SASL decoding: RFC 4648 base64 and RFC 4616 PLAIN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"

static int decodes(const char *b64, const char *expect, size_t expect_len)
{
    sbuf b = SBUF_INIT;
    int rc = sasl_base64_decode(b64, strlen(b64), &b);
    if (rc == 0) {
        assert_int_equal(b.len, expect_len);
        assert_memory_equal(sbuf_cstr(&b), expect, expect_len);
    }
    sbuf_free(&b);
    return rc;
}

/* RFC 4648 section 10 test vectors. */
static void rfc4648_s10_vectors(void **state)
{
    static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (size_t i = 0; i < 7; i++) {
        sbuf b = SBUF_INIT;
        sasl_base64_encode(plain[i], strlen(plain[i]), &b);
        assert_string_equal(sbuf_cstr(&b), enc[i]);
        sbuf_free(&b);
        assert_int_equal(decodes(enc[i], plain[i], strlen(plain[i])), 0);
    }
}

static void binary_round_trip(void **state)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)(255 - i);
    for (size_t n = 0; n <= sizeof all; n += 37) {
        sbuf e = SBUF_INIT, d = SBUF_INIT;
        sasl_base64_encode(all, n, &e);
        assert_int_equal(e.len, (n + 2) / 3 * 4);
        assert_int_equal(sasl_base64_decode(e.data, e.len, &d), 0);
        assert_int_equal(d.len, n);
        if (n) assert_memory_equal(d.data, all, n);
        sbuf_free(&e);
        sbuf_free(&d);
    }
}

/* RFC 4648 3.3 / 3.5: characters outside the alphabet, misplaced padding
 * and non-zero pad bits are rejected, not skipped. */
static void rfc4648_s3_strictness(void **state)
{
    static const char *const bad[] = {
        "Zg", "Zg=", "Zm9", "Z===", "Zg=a", "Zg==Zg==", "Zm=v", "Zm 9v", "Zm9v\r\n", "Zm9v=",
        "Zh==", "Zm9=", "Zm9v*ABC", "====", "=Zm9", "Zm-_",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sbuf b = SBUF_INIT;
        sbuf_puts(&b, "keep");
        assert_int_equal(sasl_base64_decode(bad[i], strlen(bad[i]), &b), -1);
        /* A failed decode leaves the buffer as it was. */
        assert_string_equal(sbuf_cstr(&b), "keep");
        sbuf_free(&b);
    }
}

/* RFC 4954 section 4: "=" is an empty initial response. */
static void rfc4954_s4_equals_is_empty(void **state)
{
    assert_int_equal(decodes("=", "", 0), 0);
    struct sasl_creds c;
    assert_int_equal(sasl_plain_decode("=", 1, &c), -1);
}

static int plain(const void *msg, size_t n, struct sasl_creds *c)
{
    sbuf b = SBUF_INIT;
    sasl_base64_encode(msg, n, &b);
    int rc = sasl_plain_decode(b.data, b.len, c);
    sbuf_free(&b);
    return rc;
}

#define PLAIN(lit, c) plain((lit), sizeof(lit) - 1, (c))

/* RFC 4616 section 2: message = [authzid] NUL authcid NUL passwd. */
static void rfc4616_s2_message(void **state)
{
    struct sasl_creds c;
    assert_int_equal(PLAIN("\0tim\0tanstaaftanstaaf", &c), 0);
    assert_string_equal(c.authzid, "");
    assert_string_equal(c.authcid, "tim");
    assert_string_equal(c.password, "tanstaaftanstaaf");
    sasl_creds_free(&c);
    assert_null(c.password);

    assert_int_equal(PLAIN("Ursel\0Kurt\0xipj3plmq", &c), 0);
    assert_string_equal(c.authzid, "Ursel");
    assert_string_equal(c.authcid, "Kurt");
    assert_string_equal(c.password, "xipj3plmq");
    sasl_creds_free(&c);

    /* The RFC's own example, as sent on the wire (RFC 4954 section 4). */
    const char *wire = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
    assert_int_equal(sasl_plain_decode(wire, strlen(wire), &c), 0);
    assert_string_equal(c.authcid, "tim");
    sasl_creds_free(&c);

    /* UTF-8 identities (RFC 4616 section 2 says UTF-8) are fine. */
    assert_int_equal(PLAIN("\0j\xc3\xb6rg@example.test\0p\xc3\xa4ss", &c), 0);
    assert_string_equal(c.authcid, "j\xc3\xb6rg@example.test");
    sasl_creds_free(&c);
}

static void rfc4616_s2_malformed(void **state)
{
    struct sasl_creds c;
    assert_int_equal(PLAIN("tim\0pass", &c), -1);            /* one NUL */
    assert_int_equal(PLAIN("timpass", &c), -1);              /* none */
    assert_int_equal(PLAIN("\0tim\0pa\0ss", &c), -1);        /* NUL inside passwd */
    assert_int_equal(PLAIN("\0\0pass", &c), -1);             /* empty authcid */
    assert_int_equal(PLAIN("\0tim\0", &c), -1);              /* empty passwd */
    assert_int_equal(PLAIN("\0\xc3(\0pass", &c), -1);        /* authcid not UTF-8 */
    assert_int_equal(PLAIN("\xed\xa0\x80\0tim\0pass", &c), -1); /* surrogate in authzid */
    assert_int_equal(PLAIN("", &c), -1);
    assert_int_equal(sasl_plain_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm=", 29, &c), -1);
    assert_int_equal(sasl_plain_decode("*", 1, &c), -1);
    assert_null(c.authcid);
    assert_null(c.password);
}

static void plain_size_limit(void **state)
{
    char *msg = calloc(1, SASL_PLAIN_MAX + 2);
    struct sasl_creds c;
    /* "\0" + "u" + "\0" + password filling up to exactly the limit. */
    msg[1] = 'u';
    memset(msg + 3, 'p', SASL_PLAIN_MAX - 3);
    assert_int_equal(plain(msg, SASL_PLAIN_MAX, &c), 0);
    assert_int_equal(strlen(c.password), SASL_PLAIN_MAX - 3);
    sasl_creds_free(&c);
    msg[SASL_PLAIN_MAX] = 'p';
    assert_int_equal(plain(msg, SASL_PLAIN_MAX + 1, &c), -1);
    free(msg);
}

/* The LOGIN prompts the session sends are the base64 of these words. */
static void login_prompts(void **state)
{
    assert_int_equal(decodes("VXNlcm5hbWU6", "Username:", 9), 0);
    assert_int_equal(decodes("UGFzc3dvcmQ6", "Password:", 9), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc4648_s10_vectors),
        cmocka_unit_test(binary_round_trip),
        cmocka_unit_test(rfc4648_s3_strictness),
        cmocka_unit_test(rfc4954_s4_equals_is_empty),
        cmocka_unit_test(rfc4616_s2_message),
        cmocka_unit_test(rfc4616_s2_malformed),
        cmocka_unit_test(plain_size_limit),
        cmocka_unit_test(login_prompts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
