/* Routing before DNS: next-hop syntax (Postfix relayhost / transport(5)
 * conventions: brackets suppress the MX lookup, RFC 5321 5.1) and the
 * transport map's exact and parent-domain matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mta/mta_route.h"

static int nh(const char *s, struct mta_nexthop *out)
{
    char why[200];
    return mta_nexthop_parse(s, strlen(s), out, why, sizeof why);
}

static void nexthop_forms(void **state)
{
    struct mta_nexthop h;
    char text[300];
    assert_int_equal(nh("Smtp.Example.NET", &h), 0);
    assert_string_equal(h.host, "smtp.example.net");
    assert_int_equal(h.port, 0);
    assert_false(h.no_mx);
    assert_false(h.literal);
    mta_nexthop_format(&h, 25, text, sizeof text);
    assert_string_equal(text, "smtp.example.net:25");

    assert_int_equal(nh("[relay.example.net]:587", &h), 0);
    assert_string_equal(h.host, "relay.example.net");
    assert_int_equal(h.port, 587);
    assert_true(h.no_mx);
    mta_nexthop_format(&h, 25, text, sizeof text);
    assert_string_equal(text, "[relay.example.net]:587");

    assert_int_equal(nh("[127.0.0.1]:2525", &h), 0);
    assert_true(h.literal);
    assert_int_equal(nh("[IPv6:2001:db8::1]:25", &h), 0);
    assert_string_equal(h.host, "2001:db8::1");
    assert_true(h.literal);
    assert_int_equal(nh("[::1]", &h), 0);
    assert_true(h.literal && h.no_mx);
    assert_int_equal(nh("192.0.2.7:25", &h), 0);
    assert_true(h.literal && h.no_mx);  /* never an MX lookup of a number */
}

static void nexthop_errors(void **state)
{
    struct mta_nexthop h;
    assert_int_equal(nh("", &h), -1);
    assert_int_equal(nh("[host:25", &h), -1);
    assert_int_equal(nh("host:", &h), -1);
    assert_int_equal(nh("host:0", &h), -1);
    assert_int_equal(nh("host:65536", &h), -1);
    assert_int_equal(nh("host:99999999999999999999", &h), -1);
    assert_int_equal(nh("host:25x", &h), -1);
    assert_int_equal(nh("bad host", &h), -1);
    assert_int_equal(nh("[]:25", &h), -1);
    assert_int_equal(nh("[h]x", &h), -1);
    assert_int_equal(nh(".lead", &h), -1);
}

static const char MAP[] =
    "# comment\n"
    "\n"
    "example.com      [127.0.0.1]:2525\n"
    "  .example.com   relay   \r\n"
    "deep.sub.example.com  mx.deep.test\n"
    ".test            [smart.test]:587\n";

static void transport_map_lookup(void **state)
{
    struct mta_transport_map m = { NULL, 0 };
    char err[200];
    assert_int_equal(mta_transport_parse(MAP, strlen(MAP), &m, err, sizeof err), 0);
    assert_int_equal(m.n, 4);
    const struct mta_nexthop *h = mta_transport_lookup(&m, "EXAMPLE.com");
    assert_non_null(h);
    assert_int_equal(h->kind, MTA_NH_HOST);
    assert_int_equal(h->port, 2525);
    h = mta_transport_lookup(&m, "a.b.example.com");            /* subdomain entry */
    assert_non_null(h);
    assert_int_equal(h->kind, MTA_NH_RELAY);
    h = mta_transport_lookup(&m, "deep.sub.example.com");       /* exact beats parent */
    assert_non_null(h);
    assert_string_equal(h->host, "mx.deep.test");
    h = mta_transport_lookup(&m, "x.deep.sub.example.com");     /* nearest parent with a "." entry */
    assert_int_equal(h->kind, MTA_NH_RELAY);
    h = mta_transport_lookup(&m, "remote.test");
    assert_non_null(h);
    assert_string_equal(h->host, "smart.test");
    assert_null(mta_transport_lookup(&m, "test"));              /* ".test" is subdomains only */
    assert_null(mta_transport_lookup(&m, "example.org"));
    assert_null(mta_transport_lookup(&m, "notexample.com"));
    mta_transport_free(&m);
    assert_null(mta_transport_lookup(&m, "example.com"));
}

static void transport_map_errors_name_the_line(void **state)
{
    struct mta_transport_map m = { NULL, 0 };
    char err[200];
    const char *t1 = "ok.test relay\nbroken.test\n";
    assert_int_equal(mta_transport_parse(t1, strlen(t1), &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2"));
    assert_int_equal(m.n, 1);
    mta_transport_free(&m);
    const char *t2 = "a.test relay extra\n";
    assert_int_equal(mta_transport_parse(t2, strlen(t2), &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1"));
    mta_transport_free(&m);
    const char *t3 = "a.test relay\nA.TEST [x]:1\n";
    assert_int_equal(mta_transport_parse(t3, strlen(t3), &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    mta_transport_free(&m);
    const char *t4 = "a.test [x:25\n";
    assert_int_equal(mta_transport_parse(t4, strlen(t4), &m, err, sizeof err), -1);
    mta_transport_free(&m);
    const char *t5 = "bad_dom\xff.test relay\n";
    assert_int_equal(mta_transport_parse(t5, strlen(t5), &m, err, sizeof err), -1);
    mta_transport_free(&m);
}

static void transport_map_load(void **state)
{
    char path[] = "/tmp/pochta-transport-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, MAP, strlen(MAP)), (ssize_t)strlen(MAP));
    close(fd);
    struct mta_transport_map m = { NULL, 0 };
    char err[300];
    assert_int_equal(mta_transport_load(path, &m, err, sizeof err), 0);
    assert_int_equal(m.n, 4);
    mta_transport_free(&m);
    unlink(path);
    assert_int_equal(mta_transport_load(path, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nexthop_forms),
        cmocka_unit_test(nexthop_errors),
        cmocka_unit_test(transport_map_lookup),
        cmocka_unit_test(transport_map_errors_name_the_line),
        cmocka_unit_test(transport_map_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
