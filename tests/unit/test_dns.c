/* DNS answer handling for outbound routing: RFC 1035 names, RFC 5321 5.1
 * MX ordering and implicit MX, RFC 7505 null MX, forwarder syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "dns/dns.h"
#include "dns/dns_answer.h"

/* Build MX rdata: pref, then labels of name (dotted, "" = root). */
static size_t mx_rdata(uint8_t *out, uint16_t pref, const char *name)
{
    size_t n = 0;
    out[n++] = (uint8_t)(pref >> 8);
    out[n++] = (uint8_t)pref;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        out[n++] = (uint8_t)l;
        memcpy(out + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    out[n++] = 0;
    return n;
}

static void rfc1035_3_3_9_mx_rdata(void **state)
{
    uint8_t rd[300];
    size_t n = mx_rdata(rd, 10, "MX1.Example.ORG");
    struct dns_mx mx;
    assert_int_equal(dns_mx_from_rdata(rd, n, &mx), 0);
    assert_int_equal(mx.pref, 10);
    assert_string_equal(mx.name, "mx1.example.org");
    /* truncated, trailing junk, compression pointer */
    assert_int_equal(dns_mx_from_rdata(rd, n - 1, &mx), -1);
    rd[n] = 0;
    assert_int_equal(dns_mx_from_rdata(rd, n + 1, &mx), -1);
    uint8_t ptr[] = { 0, 5, 0xC0, 0x0C };
    assert_int_equal(dns_mx_from_rdata(ptr, sizeof ptr, &mx), -1);
    assert_int_equal(dns_mx_from_rdata(rd, 2, &mx), -1);
}

static void rfc1035_2_3_4_name_limits(void **state)
{
    uint8_t wire[300];
    char out[DNS_NAME_TEXT_MAX + 1];
    size_t used;
    /* 4 labels of 63 = 255 text bytes with dots: over 253 */
    size_t n = 0;
    for (int l = 0; l < 4; l++) {
        wire[n++] = 63;
        memset(wire + n, 'a', 63);
        n += 63;
    }
    wire[n++] = 0;
    assert_int_equal(dns_name_from_wire(wire, n, &used, out), -1);
    /* a label with a dot or a control byte inside could inject text */
    uint8_t bad[] = { 3, 'a', '.', 'b', 0 };
    assert_int_equal(dns_name_from_wire(bad, sizeof bad, &used, out), -1);
    uint8_t crlf[] = { 3, 'a', '\r', '\n', 0 };
    assert_int_equal(dns_name_from_wire(crlf, sizeof crlf, &used, out), -1);
    uint8_t root[] = { 0 };
    assert_int_equal(dns_name_from_wire(root, 1, &used, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(used, 1);
    /* label length running past the end */
    uint8_t trunc[] = { 10, 'a', 'b' };
    assert_int_equal(dns_name_from_wire(trunc, sizeof trunc, &used, out), -1);
}

static uint32_t seq_rnd(void *ctx)
{
    uint32_t *s = ctx;
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void rfc5321_5_1_mx_sorted_by_preference(void **state)
{
    struct dns_mx mx[] = { { 30, "c.test" }, { 10, "a.test" }, { 20, "b.test" }, { 10, "a2.test" } };
    size_t n = 4;
    uint32_t seed = 1;
    assert_int_equal(dns_mx_order(mx, &n, seq_rnd, &seed), DNS_MX_LIST);
    assert_int_equal(n, 4);
    assert_int_equal(mx[0].pref, 10);
    assert_int_equal(mx[1].pref, 10);
    assert_string_equal(mx[2].name, "b.test");
    assert_string_equal(mx[3].name, "c.test");
}

static void rfc5321_5_1_equal_preference_random_order(void **state)
{
    /* Over many orderings, each of three equal records must come first at
     * least once, and the lower-preference record must always be last. */
    int first[3] = { 0 };
    uint32_t seed = 7;
    for (int round = 0; round < 300; round++) {
        struct dns_mx mx[] = { { 5, "x0" }, { 5, "x1" }, { 9, "late" }, { 5, "x2" } };
        size_t n = 4;
        assert_int_equal(dns_mx_order(mx, &n, seq_rnd, &seed), DNS_MX_LIST);
        assert_string_equal(mx[3].name, "late");
        first[mx[0].name[1] - '0']++;
    }
    for (int i = 0; i < 3; i++) assert_true(first[i] > 30);
}

static void rfc7505_null_mx(void **state)
{
    uint8_t rd[16];
    size_t n = mx_rdata(rd, 0, "");
    struct dns_mx mx[2];
    assert_int_equal(dns_mx_from_rdata(rd, n, &mx[0]), 0);
    size_t count = 1;
    uint32_t seed = 3;
    assert_int_equal(dns_mx_order(mx, &count, seq_rnd, &seed), DNS_MX_NULL);
    /* "." among real exchangers: ignored, the real one is used */
    mx[1] = (struct dns_mx){ 10, "real.test" };
    count = 2;
    assert_int_equal(dns_mx_order(mx, &count, seq_rnd, &seed), DNS_MX_LIST);
    assert_int_equal(count, 1);
    assert_string_equal(mx[0].name, "real.test");
}

static void rfc5321_5_1_no_mx_implicit(void **state)
{
    size_t n = 0;
    uint32_t seed = 3;
    assert_int_equal(dns_mx_order(NULL, &n, seq_rnd, &seed), DNS_MX_IMPLICIT);
}

static void name_validity(void **state)
{
    assert_true(dns_name_valid("example.org"));
    assert_true(dns_name_valid("xn--d1acufc.xn--p1ai"));
    assert_false(dns_name_valid(""));
    assert_false(dns_name_valid("a..b"));
    assert_false(dns_name_valid(".a"));
    assert_false(dns_name_valid("a b"));
    assert_false(dns_name_valid("a\r\nb"));
    assert_false(dns_name_valid("[127.0.0.1]"));
    char big[80];
    memset(big, 'a', 64);
    big[64] = '\0';
    assert_false(dns_name_valid(big));
}

static void forwarder_syntax(void **state)
{
    char out[64];
    assert_int_equal(dns_forwarder_syntax("127.0.0.1:5353", out, sizeof out), 0);
    assert_string_equal(out, "127.0.0.1@5353");
    assert_int_equal(dns_forwarder_syntax("[::1]:53", out, sizeof out), 0);
    assert_string_equal(out, "::1@53");
    assert_int_equal(dns_forwarder_syntax("192.0.2.1", out, sizeof out), 0);
    assert_string_equal(out, "192.0.2.1");
    assert_int_equal(dns_forwarder_syntax("::1", out, sizeof out), 0);
    assert_string_equal(out, "::1");
    assert_int_equal(dns_forwarder_syntax("1.2.3.4:", out, sizeof out), -1);
    assert_int_equal(dns_forwarder_syntax("1.2.3.4:99999", out, sizeof out), -1);
    assert_int_equal(dns_forwarder_syntax("1.2.3.4:5x", out, sizeof out), -1);
    assert_int_equal(dns_forwarder_syntax("[::1", out, sizeof out), -1);
}

static void rfc5321_4_1_3_address_literals(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(dns_parse_literal("192.0.2.7", 9, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(dns_parse_literal("IPv6:2001:db8::1", 16, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(dns_parse_literal("2001:db8::1", 11, &ss, &len), -1);
    assert_int_equal(dns_parse_literal("300.1.1.1", 9, &ss, &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc1035_3_3_9_mx_rdata),
        cmocka_unit_test(rfc1035_2_3_4_name_limits),
        cmocka_unit_test(rfc5321_5_1_mx_sorted_by_preference),
        cmocka_unit_test(rfc5321_5_1_equal_preference_random_order),
        cmocka_unit_test(rfc7505_null_mx),
        cmocka_unit_test(rfc5321_5_1_no_mx_implicit),
        cmocka_unit_test(name_validity),
        cmocka_unit_test(forwarder_syntax),
        cmocka_unit_test(rfc5321_4_1_3_address_literals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
