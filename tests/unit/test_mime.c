/* MIME parsing and codecs, named after the RFC sections they prove:
 * RFC 2045 (CTE, defaults), 2046 (multipart, digest, message/rfc822),
 * 2047 (encoded-words), 2231 (parameters), 3501 (ENVELOPE, section
 * numbers, HEADER.FIELDS), 6152 (8BITMIME downgrade). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/sbuf.h"
#include "mime/mime_charset.h"
#include "mime/mime_codec.h"
#include "mime/mime_header.h"
#include "mime/mime_parse.h"

/* ---- helpers --------------------------------------------------------- */

static struct mime_part *parse(const char *msg)
{
    struct mime_part *root;
    size_t n = mime_parse(msg, strlen(msg), NULL, &root);
    assert_true(n >= 1);
    return root;
}

static const struct mime_part *child(const struct mime_part *p, unsigned i)
{
    const struct mime_part *c = p->children;
    while (c && i--) c = c->next;
    if (!c) fail_msg("no child %u", i);
    if (!c) abort();
    return c;
}

static void assert_type(const struct mime_part *p, const char *t, const char *s)
{
    assert_string_equal(p->type, t);
    assert_string_equal(p->subtype, s);
}

static void assert_body(const char *msg, const struct mime_part *p, const char *want)
{
    size_t n = mime_part_body_size(p);
    if (n != strlen(want) || memcmp(msg + p->body_off, want, n) != 0)
        fail_msg("body \"%.*s\", want \"%s\"", (int)n, msg + p->body_off, want);
}

static void assert_hdr(const char *msg, const struct mime_part *p, const char *want)
{
    size_t n = mime_part_hdr_size(p);
    if (n != strlen(want) || memcmp(msg + p->hdr_off, want, n) != 0)
        fail_msg("header \"%.*s\", want \"%s\"", (int)n, msg + p->hdr_off, want);
}

static void assert_sbuf(const sbuf *b, const char *want)
{
    if (b->len != strlen(want) || memcmp(sbuf_cstr(b), want, b->len) != 0)
        fail_msg("got \"%s\" (%zu), want \"%s\"", sbuf_cstr(b), b->len, want);
}

static char *decode_hdr(const char *v)
{
    sbuf b = SBUF_INIT;
    mime_header_decode(v, strlen(v), 0, &b);
    return sbuf_detach(&b);
}

static void assert_roundtrip_cache(const char *msg, const struct mime_part *root)
{
    sbuf blob = SBUF_INIT;
    struct mime_part *back;
    mime_tree_serialize(root, &blob);
    assert_int_equal(mime_tree_deserialize(blob.data, blob.len, strlen(msg), NULL, &back), 0);
    assert_true(mime_tree_equal(root, back));
    mime_free(back);
    sbuf_free(&blob);
}

/* ---- RFC 2046 multipart --------------------------------------------- */

static const char mixed[] =
    "From: a@example.org\r\n"
    "Subject: report\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"XyZ\"\r\n"
    "\r\n"
    "This is the preamble.\r\n"
    "--XyZ\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello,\r\nsee attached.\r\n"
    "--XyZ\r\n"
    "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment;\r\n filename=\"r.pdf\"; size=9\r\n"
    "Content-ID: <part2@example.org>\r\n"
    "Content-Description: The report\r\n"
    "Content-Language: en, fr (French)\r\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
    "\r\n"
    "JVBERi0x\r\nLjQK\r\n"
    "--XyZ--\r\n"
    "This is the epilogue.\r\n";

static void test_2046_5_1_1_multipart_mixed_attachment(void **state)
{
    struct mime_part *r = parse(mixed);
    assert_type(r, "multipart", "mixed");
    assert_int_equal(r->nchildren, 2);
    assert_int_equal(r->flags, 0);
    assert_string_equal(mime_params_get(&r->type_params, "boundary"), "XyZ");

    const struct mime_part *t = child(r, 0);
    assert_type(t, "text", "plain");
    assert_string_equal(mime_params_get(&t->type_params, "charset"), "utf-8");
    assert_hdr(mixed, t, "Content-Type: text/plain; charset=utf-8\r\n\r\n");
    /* the CRLF before the delimiter belongs to the delimiter */
    assert_body(mixed, t, "Hello,\r\nsee attached.");
    assert_int_equal(t->body_lines, 2);
    assert_int_equal(t->cte, MIME_CTE_7BIT);
    assert_null(t->cte_name);

    const struct mime_part *a = child(r, 1);
    assert_type(a, "application", "pdf");
    assert_int_equal(a->cte, MIME_CTE_BASE64);
    assert_string_equal(a->cte_name, "base64");
    assert_string_equal(a->disposition, "attachment");
    assert_string_equal(mime_params_get(&a->disp_params, "filename"), "r.pdf");
    assert_string_equal(mime_params_get(&a->disp_params, "size"), "9");
    assert_string_equal(a->id, "<part2@example.org>");
    assert_string_equal(a->description, "The report");
    assert_string_equal(a->md5, "Q2hlY2sgSW50ZWdyaXR5IQ==");
    assert_int_equal(a->nlanguages, 2);
    assert_string_equal(a->languages[0], "en");
    assert_string_equal(a->languages[1], "fr");
    assert_null(a->location);
    assert_body(mixed, a, "JVBERi0x\r\nLjQK");
    assert_null(a->env);

    sbuf bin = SBUF_INIT;
    assert_int_equal(mime_part_decode(mixed, a, &bin), 0);
    assert_sbuf(&bin, "%PDF-1.4\n");
    sbuf_free(&bin);

    /* RFC 3501 6.4.5 section numbers */
    unsigned p1[] = { 1 }, p2[] = { 2 }, p3[] = { 3 }, p11[] = { 1, 1 };
    assert_ptr_equal(mime_part_find(r, p1, 1), t);
    assert_ptr_equal(mime_part_find(r, p2, 1), a);
    assert_null(mime_part_find(r, p3, 1));
    assert_null(mime_part_find(r, p11, 2));
    assert_non_null(r->env);
    assert_string_equal(r->env->subject, "report");
    assert_roundtrip_cache(mixed, r);
    mime_free(r);
}

static void test_2046_5_1_4_alternative(void **state)
{
    const char *m =
        "Content-Type: multipart/alternative; boundary=b1\r\n\r\n"
        "--b1\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        "--b1\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
        "--b1--\r\n";
    struct mime_part *r = parse(m);
    assert_type(r, "multipart", "alternative");
    assert_int_equal(r->nchildren, 2);
    assert_type(child(r, 0), "text", "plain");
    /* an explicit text/plain without charset gets no invented parameter */
    assert_int_equal(child(r, 0)->type_params.n, 0);
    assert_type(child(r, 1), "text", "html");
    assert_body(m, child(r, 1), "<p>html</p>");
    mime_free(r);
}

/* Boundaries that are prefixes of each other: only a whole delimiter
 * line matches, so the outer "--ab" never splits on the inner "--abc". */
static void test_2046_5_1_1_nested_prefix_boundaries(void **state)
{
    const char *m =
        "Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
        "--ab\r\n"
        "Content-Type: multipart/alternative; boundary=abc\r\n\r\n"
        "--abc\r\n\r\none\r\n"
        "--abc \t\r\n\r\ntwo\r\n"
        "--abc--\r\n"
        "--ab\r\n\r\nthree\r\n"
        "--ab--";
    struct mime_part *r = parse(m);
    assert_int_equal(r->nchildren, 2);
    const struct mime_part *inner = child(r, 0);
    assert_type(inner, "multipart", "alternative");
    assert_int_equal(inner->nchildren, 2);
    assert_body(m, child(inner, 0), "one");
    /* transport padding after a delimiter is allowed */
    assert_body(m, child(inner, 1), "two");
    assert_body(m, child(r, 1), "three");
    assert_int_equal(r->flags & MIME_PART_NO_CLOSE, 0);
    unsigned p12[] = { 1, 2 };
    assert_ptr_equal(mime_part_find(r, p12, 2), child(inner, 1));

    /* the reverse: outer "abc", inner "ab" */
    const char *m2 =
        "Content-Type: multipart/mixed; boundary=abc\r\n\r\n"
        "--abc\r\n"
        "Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
        "--ab\r\n\r\nx\r\n--ab--\r\n"
        "--abc--\r\n";
    struct mime_part *r2 = parse(m2);
    assert_int_equal(r2->nchildren, 1);
    assert_int_equal(child(r2, 0)->nchildren, 1);
    assert_body(m2, child(child(r2, 0), 0), "x");
    mime_free(r);
    mime_free(r2);
}

static void test_2046_5_2_1_message_rfc822(void **state)
{
    const char *m =
        "From: outer@example.org\r\n"
        "Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        "--zz\r\n\r\nintro\r\n"
        "--zz\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        "From: Inner <inner@example.net>\r\n"
        "Subject: =?utf-8?q?caf=C3=A9?=\r\n"
        "Message-ID: <1@x>\r\n"
        "Content-Type: multipart/alternative; boundary=yy\r\n\r\n"
        "--yy\r\n\r\nA\r\n--yy\r\n\r\nB\r\n--yy--\r\n"
        "--zz--\r\n";
    struct mime_part *r = parse(m);
    const struct mime_part *msg = child(r, 1);
    assert_type(msg, "message", "rfc822");
    assert_int_equal(msg->nchildren, 1);
    assert_null(msg->env);
    const struct mime_part *enc = msg->children;
    assert_non_null(enc->env);
    assert_int_equal(enc->hdr_off, msg->body_off);
    assert_int_equal(enc->end_off, msg->end_off);
    assert_string_equal(enc->env->subject, "=?utf-8?q?caf=C3=A9?=");
    assert_string_equal(enc->env->subject_utf8, "caf\xC3\xA9");
    assert_string_equal(enc->env->message_id, "<1@x>");
    assert_int_equal(enc->env->from.n, 1);
    assert_string_equal(enc->env->from.v[0].name, "Inner");
    assert_string_equal(enc->env->from.v[0].mailbox, "inner");
    assert_string_equal(enc->env->from.v[0].host, "example.net");
    assert_type(enc, "multipart", "alternative");
    assert_int_equal(enc->nchildren, 2);
    /* line count of the message/rfc822 body covers the whole message */
    assert_int_equal(msg->body_lines, 12);

    /* 2.1 and 2.2 are the encapsulated message's parts; 2 is the message */
    unsigned p2[] = { 2 }, p21[] = { 2, 1 }, p22[] = { 2, 2 }, p23[] = { 2, 3 };
    assert_ptr_equal(mime_part_find(r, p2, 1), msg);
    assert_ptr_equal(mime_part_find(r, p21, 2), child(enc, 0));
    assert_ptr_equal(mime_part_find(r, p22, 2), child(enc, 1));
    assert_null(mime_part_find(r, p23, 2));
    assert_body(m, child(enc, 1), "B");
    assert_roundtrip_cache(m, r);
    mime_free(r);
}

static void test_2046_5_1_5_digest_default(void **state)
{
    const char *m =
        "Content-Type: multipart/digest; boundary=d\r\n\r\n"
        "--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n"
        "--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n"
        "--d--\r\n";
    struct mime_part *r = parse(m);
    const struct mime_part *d0 = child(r, 0);
    assert_type(d0, "message", "rfc822");
    assert_true(d0->flags & MIME_PART_DEFAULT_TYPE);
    assert_string_equal(d0->children->env->subject, "one");
    assert_body(m, d0->children, "first");
    assert_type(child(r, 1), "text", "plain");
    mime_free(r);
}

static void test_2045_5_2_default_type(void **state)
{
    const char *m = "Subject: x\r\n\r\nbody\r\n";
    struct mime_part *r = parse(m);
    assert_type(r, "text", "plain");
    assert_true(r->flags & MIME_PART_DEFAULT_TYPE);
    assert_string_equal(mime_params_get(&r->type_params, "charset"), "us-ascii");
    mime_free(r);

    /* a syntactically invalid Content-Type also gets the default */
    const char *m2 = "Content-Type: text; charset=utf-8\r\n\r\nbody";
    r = parse(m2);
    assert_type(r, "text", "plain");
    assert_string_equal(mime_params_get(&r->type_params, "charset"), "us-ascii");
    mime_free(r);

    /* comments, odd case and whitespace */
    const char *m3 = "Content-Type: (c) TEXT / HTML ; CharSet=\"UTF-8\" (x)\r\n\r\n";
    r = parse(m3);
    assert_type(r, "text", "html");
    assert_string_equal(mime_params_get(&r->type_params, "charset"), "UTF-8");
    mime_free(r);
}

/* ---- RFC 2231 ---------------------------------------------------------- */

static void test_2231_continuations_and_charsets(void **state)
{
    const char *v =
        "attachment; filename*0*=iso-8859-1'fr'caf%E9%20;\r\n"
        " filename*1=\"au lait\"; filename*2*=%2Etxt; filename=\"fallback.txt\";\r\n"
        " title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A;\r\n"
        " url*0=\"ftp://\"; url*1=\"example.org/x\"; url*3=\"lost\"; plain=one; plain=two";
    char *first;
    struct mime_params p;
    mime_params_parse(v, strlen(v), 64, &first, &p);
    assert_string_equal(first, "attachment");
    assert_int_equal(p.n, 4);
    assert_string_equal(p.v[0].name, "filename");
    /* extended value wins over the plain one; converted to UTF-8 */
    assert_string_equal(p.v[0].value, "caf\xC3\xA9 au lait.txt");
    assert_string_equal(p.v[0].charset, "iso-8859-1");
    assert_string_equal(p.v[0].language, "fr");
    assert_string_equal(mime_params_get(&p, "title"), "This is ***fun***");
    assert_string_equal(p.v[1].language, "en-us");
    /* numbering stops at the first missing section (*2) */
    assert_string_equal(mime_params_get(&p, "url"), "ftp://example.org/x");
    assert_null(p.v[2].charset);
    assert_string_equal(mime_params_get(&p, "plain"), "one");
    free(first);
    mime_params_free(&p);

    /* lenient: unquoted value with spaces, a missing value, max_params */
    const char *v2 = "inline; filename=my file.txt ; bad; x=1";
    mime_params_parse(v2, strlen(v2), 1, &first, &p);
    assert_int_equal(p.n, 1);
    assert_string_equal(mime_params_get(&p, "filename"), "my file.txt");
    free(first);
    mime_params_free(&p);
}

/* ---- RFC 2047 ---------------------------------------------------------- */

static void test_2047_encoded_words(void **state)
{
    struct {
        const char *in, *want;
    } cases[] = {
        /* RFC 2047 8 examples */
        { "=?ISO-8859-1?Q?a?=", "a" },
        { "=?ISO-8859-1?Q?a?= b", "a b" },
        { "=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab" },
        { "=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=", "ab" },
        { "=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=", "ab" },
        { "=?ISO-8859-1?Q?a_b?=", "a b" },
        { "=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b" },
        { "(=?ISO-8859-1?Q?a?=)", "(a)" },
        { "a =?ISO-8859-1?Q?b?= c", "a b c" },
        /* B encoding, lower-case designators, charset language suffix */
        { "=?utf-8?b?0J/RgNC40LLQtdGC?=", "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82" },
        { "=?UTF-8*ru?B?0J8=?=", "\xD0\x9F" },
        { "=?iso-8859-1?q?caf=E9?=", "caf\xC3\xA9" },
        /* a character split across two adjacent words */
        { "=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "\xE2\x82\xAC" },
        /* malformed words stay literal */
        { "=?utf-8?x?abc?=", "=?utf-8?x?abc?=" },
        { "=?utf-8?q?no end", "=?utf-8?q?no end" },
        { "=??q?a?=", "=??q?a?=" },
        /* unknown charset is read as UTF-8 */
        { "=?x-nope?q?ok?=", "ok" },
        /* raw 8-bit garbage becomes U+FFFD */
        { "a\xFF" "b", "a" MIME_UTF8_REPLACEMENT "b" },
        { "=?utf-8?q?=FF?=", MIME_UTF8_REPLACEMENT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = decode_hdr(cases[i].in);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: \"%s\" -> \"%s\", want \"%s\"", i, cases[i].in, got,
                     cases[i].want);
        free(got);
    }
    /* the bound cuts at a character boundary */
    sbuf b = SBUF_INIT;
    mime_header_decode("=?utf-8?q?=C3=A9=C3=A9?=", 24, 3, &b);
    assert_sbuf(&b, "\xC3\xA9");
    sbuf_free(&b);
}

/* ---- RFC 3501 ENVELOPE addresses ----------------------------------- */

static void test_3501_7_4_2_address_lists(void **state)
{
    const char *v =
        "\"Doe, John\" <john@example.org>, jane@example.net (Jane Roe),\r\n"
        " Undisclosed recipients:;, team: a@x, \"B\" <b@y>;,"
        " <@r1,@r2:route@z>, =?utf-8?q?J=C3=B6rg?= <j@d>, nodomain, ,";
    struct mime_addr_list l;
    mime_addr_list_parse(v, strlen(v), 100, &l);
    assert_int_equal(l.n, 11);
    assert_int_equal(l.v[0].kind, MIME_ADDR_MAILBOX);
    assert_string_equal(l.v[0].name, "Doe, John");
    assert_string_equal(l.v[0].mailbox, "john");
    assert_string_equal(l.v[0].host, "example.org");
    assert_null(l.v[0].adl);
    assert_string_equal(l.v[1].name, "Jane Roe");
    assert_string_equal(l.v[1].mailbox, "jane");
    assert_int_equal(l.v[2].kind, MIME_ADDR_GROUP_START);
    assert_string_equal(l.v[2].mailbox, "Undisclosed recipients");
    assert_null(l.v[2].host);
    assert_int_equal(l.v[3].kind, MIME_ADDR_GROUP_END);
    assert_null(l.v[3].mailbox);
    assert_int_equal(l.v[4].kind, MIME_ADDR_GROUP_START);
    assert_string_equal(l.v[4].mailbox, "team");
    assert_string_equal(l.v[5].mailbox, "a");
    assert_string_equal(l.v[6].name, "B");
    assert_string_equal(l.v[6].host, "y");
    assert_int_equal(l.v[7].kind, MIME_ADDR_GROUP_END);
    assert_string_equal(l.v[8].adl, "@r1,@r2");
    assert_string_equal(l.v[8].mailbox, "route");
    assert_string_equal(l.v[8].host, "z");
    /* the raw name stays encoded for IMAP; the decoded one is for SORT */
    assert_string_equal(l.v[9].name, "=?utf-8?q?J=C3=B6rg?=");
    assert_string_equal(l.v[9].name_utf8, "J\xC3\xB6rg");
    assert_string_equal(l.v[10].mailbox, "nodomain");
    assert_string_equal(l.v[10].host, MIME_MISSING_DOMAIN);
    assert_true(l.v[10].invalid);
    assert_false(l.v[0].invalid);
    mime_addr_list_free(&l);

    /* quoted local part, obsolete CFWS around dots, max_addrs keeps
     * group markers balanced */
    const char *v2 = "\"a b\"@x . example (c), g: p@q, r@s;";
    mime_addr_list_parse(v2, strlen(v2), 3, &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].mailbox, "\"a b\"");
    assert_string_equal(l.v[0].host, "x.example");
    assert_int_equal(l.v[1].kind, MIME_ADDR_GROUP_START);
    assert_int_equal(l.v[2].kind, MIME_ADDR_GROUP_END);
    mime_addr_list_free(&l);
}

static void test_3501_7_4_2_envelope_fields(void **state)
{
    const char *m =
        "Date: Mon, 7 Feb 1994 21:52:25\r\n -0800 (PST)\r\n"
        "Subject: first\r\n"
        "Subject: second\r\n"
        "To: \r\n"
        "Cc: c@example.org\r\n"
        "In-Reply-To: <0@x>\r\n"
        "\r\n";
    struct mime_part *r = parse(m);
    struct mime_envelope *e = r->env;
    assert_string_equal(e->date, "Mon, 7 Feb 1994 21:52:25 -0800 (PST)");
    assert_string_equal(e->subject, "first");
    assert_string_equal(e->in_reply_to, "<0@x>");
    assert_null(e->message_id);
    assert_null(e->from.v);
    assert_int_equal(e->to.n, 0);
    assert_int_equal(e->cc.n, 1);
    assert_body(m, r, "");
    assert_roundtrip_cache(m, r);
    mime_free(r);
}

/* ---- malformed ------------------------------------------------------- */

static void test_malformed_boundaries(void **state)
{
    /* missing close delimiter: the last part runs to the end */
    const char *m1 = "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nA\r\n--q\r\n\r\nB\r\n";
    struct mime_part *r = parse(m1);
    assert_int_equal(r->nchildren, 2);
    assert_true(r->flags & MIME_PART_NO_CLOSE);
    assert_body(m1, child(r, 1), "B\r\n");
    mime_free(r);

    /* no boundary parameter: read as text/plain, never an empty multipart */
    const char *m2 = "Content-Type: multipart/mixed\r\n\r\n--q\r\n\r\nA\r\n";
    r = parse(m2);
    assert_type(r, "text", "plain");
    assert_true(r->flags & MIME_PART_NO_BOUNDARY);
    assert_int_equal(r->nchildren, 0);
    mime_free(r);

    /* boundary present but no delimiter line; junk after a delimiter is
     * not a delimiter */
    const char *m3 = "Content-Type: multipart/mixed; boundary=q\r\n\r\n--qx\r\n--q junk\r\n";
    r = parse(m3);
    assert_type(r, "text", "plain");
    assert_true(r->flags & MIME_PART_NO_BOUNDARY);
    mime_free(r);

    /* inner multipart missing its close: the outer delimiter ends it */
    const char *m4 =
        "Content-Type: multipart/mixed; boundary=o\r\n\r\n"
        "--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\nin\r\n"
        "--o\r\n\r\nout\r\n--o--\r\n";
    r = parse(m4);
    assert_int_equal(r->nchildren, 2);
    assert_true(child(r, 0)->flags & MIME_PART_NO_CLOSE);
    assert_body(m4, child(child(r, 0), 0), "in");
    assert_body(m4, child(r, 1), "out");
    mime_free(r);

    /* base64-encoded multipart is opaque */
    const char *m5 = "Content-Type: multipart/mixed; boundary=q\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n--q\r\n\r\nA\r\n--q--\r\n";
    r = parse(m5);
    assert_type(r, "application", "octet-stream");
    assert_true(r->flags & MIME_PART_OPAQUE);
    assert_int_equal(r->nchildren, 0);
    mime_free(r);
}

static void test_malformed_headers_and_nul(void **state)
{
    /* header without body */
    const char *m1 = "Subject: only header\r\nX: y";
    struct mime_part *r = parse(m1);
    assert_true(r->flags & MIME_PART_NO_BODY);
    assert_int_equal(r->body_off, strlen(m1));
    assert_int_equal(r->body_lines, 0);
    assert_string_equal(r->env->subject, "only header");
    mime_free(r);

    /* NUL bytes and lines without colons */
    static const char m2[] = "Subj\0ect: a\r\nno colon here\r\nContent-Type: text/x\0y\r\n\r\nb\0dy";
    size_t n2 = sizeof m2 - 1;
    mime_parse(m2, n2, NULL, &r);
    assert_int_equal(r->end_off, n2);
    assert_int_equal(r->body_off, n2 - 4);
    assert_null(r->env->subject);
    mime_free(r);

    /* empty input */
    mime_parse("", 0, NULL, &r);
    assert_int_equal(r->end_off, 0);
    assert_type(r, "text", "plain");
    mime_free(r);
}

static void test_lf_only_message(void **state)
{
    const char *m =
        "Subject: lf\n"
        "Content-Type: multipart/mixed;\n boundary=\"l f\"\n\n"
        "--l f\nContent-Type: text/plain\n\none\ntwo\n"
        "--l f\n\nthree\n"
        "--l f--\n";
    struct mime_part *r = parse(m);
    assert_string_equal(r->env->subject, "lf");
    assert_int_equal(r->nchildren, 2);
    assert_hdr(m, child(r, 0), "Content-Type: text/plain\n\n");
    assert_body(m, child(r, 0), "one\ntwo");
    assert_int_equal(child(r, 0)->body_lines, 2);
    assert_body(m, child(r, 1), "three");
    mime_free(r);
}

static void test_limits_depth_and_parts(void **state)
{
    sbuf m = SBUF_INIT;
    for (int i = 0; i < 10; i++)
        sbuf_printf(&m, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
    sbuf_puts(&m, "\r\nleaf\r\n");
    struct mime_limits lim = MIME_LIMITS_DEFAULT;
    lim.max_depth = 3;
    struct mime_part *r;
    mime_parse(m.data, m.len, &lim, &r);
    const struct mime_part *p = r;
    unsigned depth = 0;
    while (p->children) {
        p = p->children;
        depth++;
    }
    assert_int_equal(depth, 3);
    assert_true(p->flags & MIME_PART_OPAQUE);
    assert_type(p, "application", "octet-stream");
    mime_free(r);
    sbuf_free(&m);

    sbuf_puts(&m, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
    for (int i = 0; i < 100; i++) sbuf_puts(&m, "--x\r\n\r\np\r\n");
    lim = (struct mime_limits)MIME_LIMITS_DEFAULT;
    lim.max_parts = 10;
    size_t n = mime_parse(m.data, m.len, &lim, &r);
    assert_int_equal(n, 10);
    assert_int_equal(r->nchildren, 9);
    assert_true(r->flags & MIME_PART_TRUNCATED);
    /* the cache refuses a tree beyond the reader's limits */
    sbuf blob = SBUF_INIT;
    struct mime_part *back;
    mime_tree_serialize(r, &blob);
    lim.max_parts = 9;
    assert_int_equal(mime_tree_deserialize(blob.data, blob.len, m.len, &lim, &back), -1);
    assert_null(back);
    sbuf_free(&blob);
    mime_free(r);
    sbuf_free(&m);
}

static void test_cache_rejects_corruption(void **state)
{
    struct mime_part *r = parse(mixed), *back;
    sbuf blob = SBUF_INIT;
    mime_tree_serialize(r, &blob);
    /* offsets must fit the message it is used with */
    assert_int_equal(mime_tree_deserialize(blob.data, blob.len, strlen(mixed) - 1, NULL, &back), -1);
    /* truncation and trailing bytes */
    for (size_t cut = 0; cut < blob.len; cut++)
        assert_int_equal(mime_tree_deserialize(blob.data, cut, strlen(mixed), NULL, &back), -1);
    sbuf_putc(&blob, 0);
    assert_int_equal(mime_tree_deserialize(blob.data, blob.len, strlen(mixed), NULL, &back), -1);
    blob.len--;
    blob.data[0] = 'X';
    assert_int_equal(mime_tree_deserialize(blob.data, blob.len, strlen(mixed), NULL, &back), -1);
    sbuf_free(&blob);
    mime_free(r);
}

/* ---- codecs ---------------------------------------------------------- */

static void test_2045_6_8_base64(void **state)
{
    sbuf b = SBUF_INIT;
    assert_false(mime_b64_decode("aGVs\r\nbG8=", 10, &b));
    assert_sbuf(&b, "hello");
    sbuf_reset(&b);
    /* garbage is skipped but reported; unpadded input still decodes */
    assert_true(mime_b64_decode("aG!Vs bG8", 9, &b));
    assert_sbuf(&b, "hello");
    sbuf_reset(&b);
    assert_false(mime_b64_decode("aGVsbG8", 7, &b));
    assert_sbuf(&b, "hello");
    sbuf_reset(&b);
    assert_true(mime_b64_decode("aGVsbG8=x", 9, &b));
    assert_sbuf(&b, "hello");
    sbuf_reset(&b);
    assert_true(mime_b64_decode("a", 1, &b));
    assert_int_equal(b.len, 0);

    /* round trip of all byte values, with 76-column lines */
    unsigned char all[300];
    for (size_t i = 0; i < sizeof all; i++) all[i] = (unsigned char)(i * 7);
    sbuf e = SBUF_INIT;
    mime_b64_encode(all, sizeof all, 76, &e);
    for (const char *l = e.data; *l;) {
        const char *nl = strstr(l, "\r\n");
        assert_non_null(nl);
        assert_true(nl - l <= 76);
        l = nl + 2;
    }
    /* streaming in 1-byte pieces equals the whole */
    struct mime_b64_dec d;
    mime_b64_dec_init(&d);
    sbuf_reset(&b);
    for (size_t i = 0; i < e.len; i++) mime_b64_dec_feed(&d, e.data + i, 1, &b);
    mime_b64_dec_finish(&d, &b);
    assert_false(d.error);
    assert_int_equal(b.len, sizeof all);
    assert_memory_equal(b.data, all, sizeof all);
    sbuf_free(&b);
    sbuf_free(&e);
}

static void test_2045_6_7_quoted_printable_decode(void **state)
{
    struct {
        const char *in, *out;
        bool err;
    } cases[] = {
        { "caf=C3=A9", "caf\xC3\xA9", false },
        { "soft=\r\nbreak", "softbreak", false },
        { "soft=  \r\nbreak", "softbreak", false },     /* padding after = */
        { "lf=\nsoft", "lfsoft", false },
        { "trailing   \r\nspace\t\r\n", "trailing\r\nspace\r\n", false },
        { "lower=c3=a9", "lower\xC3\xA9", false },
        { "bad=ZZ", "bad=ZZ", true },
        { "bad=4", "bad=4", true },
        { "end=", "end", false },     /* its CRLF went to the delimiter */
        { "a = b", "a = b", true },
        { "keep  inner", "keep  inner", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sbuf b = SBUF_INIT;
        bool err = mime_qp_decode(cases[i].in, strlen(cases[i].in), &b);
        if (strcmp(sbuf_cstr(&b), cases[i].out) != 0 || err != cases[i].err)
            fail_msg("case %zu: \"%s\" -> \"%s\" err %d", i, cases[i].in, sbuf_cstr(&b), err);
        /* byte-by-byte feeding gives the same */
        struct mime_qp_dec d;
        sbuf s = SBUF_INIT;
        mime_qp_dec_init(&d);
        for (const char *p = cases[i].in; *p; p++) mime_qp_dec_feed(&d, p, 1, &s);
        mime_qp_dec_finish(&d, &s);
        assert_string_equal(sbuf_cstr(&s), cases[i].out);
        assert_int_equal(d.error, cases[i].err);
        sbuf_free(&b);
        sbuf_free(&s);
    }
}

static void check_qp_lines(const sbuf *e)
{
    size_t col = 0;
    for (size_t i = 0; i < e->len; i++) {
        unsigned char c = (unsigned char)e->data[i];
        assert_true(c < 0x80);
        if (c == '\r') {
            assert_true(i + 1 < e->len && e->data[i + 1] == '\n');
            /* RFC 2045 6.7 (3): no whitespace before a line break */
            if (i > 0) assert_true(e->data[i - 1] != ' ' && e->data[i - 1] != '\t');
            i++;
            col = 0;
            continue;
        }
        assert_true(c != '\n');
        assert_true(++col <= 76);
    }
}

static void test_6152_qp_encode_downgrade(void **state)
{
    sbuf in = SBUF_INIT, e = SBUF_INIT, d = SBUF_INIT;
    sbuf_puts(&in, "Gr\xC3\xBC\xC3\x9F" "e aus K\xC3\xB6ln \r\n");
    sbuf_puts(&in, ".dot line\r\nFrom here\r\ntab\t\r\n");
    for (int i = 0; i < 200; i++) sbuf_putc(&in, i % 3 ? 'x' : '\xE9');
    sbuf_puts(&in, "\r\nbare\nlf and bare\rcr = equals, end space ");
    mime_qp_encode(in.data, in.len, MIME_QP_TEXT, &e);
    check_qp_lines(&e);
    assert_non_null(strstr(e.data, "Gr=C3=BC=C3=9Fe aus K=C3=B6ln=20\r\n"));
    assert_non_null(strstr(e.data, "\r\n=2Edot line\r\n=46rom here\r\ntab=09\r\n"));
    assert_false(mime_qp_decode(e.data, e.len, &d));
    assert_int_equal(d.len, in.len);
    assert_memory_equal(d.data, in.data, in.len);

    /* binary mode: every CR and LF encoded, exact round trip */
    sbuf_reset(&e);
    sbuf_reset(&d);
    mime_qp_encode(in.data, in.len, MIME_QP_BINARY, &e);
    check_qp_lines(&e);
    assert_null(strstr(e.data, "\r\n\r\n"));
    mime_qp_decode(e.data, e.len, &d);
    assert_int_equal(d.len, in.len);
    assert_memory_equal(d.data, in.data, in.len);
    sbuf_free(&in);
    sbuf_free(&e);
    sbuf_free(&d);
}

static void test_charset_conversion(void **state)
{
    sbuf b = SBUF_INIT;
    assert_int_equal(mime_charset_to_utf8("ISO-8859-1", "caf\xE9", 4, 0, &b), 0);
    assert_sbuf(&b, "caf\xC3\xA9");
    sbuf_reset(&b);
    /* windows-1252 superset: 0x80 is the euro sign */
    mime_charset_to_utf8("iso-8859-1", "\x80", 1, 0, &b);
    assert_sbuf(&b, "\xE2\x82\xAC");
    sbuf_reset(&b);
    assert_int_equal(mime_charset_to_utf8("koi8-r", "\xF0\xD2\xC9\xD7\xC5\xD4", 6, 0, &b), 0);
    assert_sbuf(&b, "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");
    sbuf_reset(&b);
    /* invalid input: replacement, never failure */
    assert_int_equal(mime_charset_to_utf8("utf-8", "a\xC0\xAF" "b\xED\xA0\x80", 7, 0, &b),
                     MIME_CS_INVALID);
    /* one U+FFFD per invalid sequence (overlong "/", a surrogate) */
    assert_sbuf(&b, "a" MIME_UTF8_REPLACEMENT "b" MIME_UTF8_REPLACEMENT);
    sbuf_reset(&b);
    assert_int_equal(mime_charset_to_utf8("shift_jis", "\x82", 1, 0, &b), MIME_CS_INVALID);
    assert_sbuf(&b, MIME_UTF8_REPLACEMENT);
    sbuf_reset(&b);
    /* names iconv would read as options are refused */
    assert_int_equal(mime_charset_to_utf8("utf-8//TRANSLIT", "ok", 2, 0, &b), MIME_CS_UNKNOWN);
    assert_sbuf(&b, "ok");
    sbuf_reset(&b);
    /* the bound cuts at a character boundary */
    assert_int_equal(mime_charset_to_utf8("iso-8859-1", "\xE9\xE9\xE9", 3, 5, &b),
                     MIME_CS_TRUNCATED);
    assert_sbuf(&b, "\xC3\xA9\xC3\xA9");
    sbuf_free(&b);
}

/* ---- SEARCH text and header selection --------------------------- */

static void test_text_extract(void **state)
{
    const char *m =
        "Content-Type: multipart/mixed; boundary=s\r\n\r\n"
        "--s\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\nd=E9j=E0 vu=\r\n!\r\n"
        "--s\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n"
        "--s\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n"
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "PGI+aGk8L2I+\r\n"
        "--s--\r\n";
    struct mime_part *r = parse(m);
    sbuf b = SBUF_INIT;
    size_t n = mime_text_extract(m, r, 0, &b);
    assert_sbuf(&b, "d\xC3\xA9j\xC3\xA0 vu!\n<b>hi</b>\n");
    assert_int_equal(n, b.len);
    sbuf_reset(&b);
    n = mime_text_extract(m, r, 5, &b);
    assert_int_equal(n, 4);     /* "déj", never half of the "à" */
    assert_sbuf(&b, "d\xC3\xA9j");
    sbuf_free(&b);
    mime_free(r);
}

static void test_3501_6_4_5_header_fields(void **state)
{
    const char *h =
        "Received: from a\r\n\tby b\r\n"
        "Subject: hello\r\n  world\r\n"
        "From: x@y\r\n"
        "subject : again\r\n"
        "X-Long: 1\r\n"
        "\r\n"
        "Subject: body, not header\r\n";
    sbuf b = SBUF_INIT;
    const char *names[] = { "SUBJECT", "from" };
    mime_header_select(h, strlen(h), names, 2, false, &b);
    assert_sbuf(&b, "Subject: hello\r\n  world\r\nFrom: x@y\r\nsubject : again\r\n\r\n");
    sbuf_reset(&b);
    mime_header_select(h, strlen(h), names, 2, true, &b);
    assert_sbuf(&b, "Received: from a\r\n\tby b\r\nX-Long: 1\r\n\r\n");
    sbuf_reset(&b);
    const char *none[] = { "x-absent" };
    mime_header_select(h, strlen(h), none, 1, false, &b);
    assert_sbuf(&b, "\r\n");
    sbuf_reset(&b);
    /* a last field without its line end still gets one */
    mime_header_select("A: 1\nB: 2", 9, names, 0, true, &b);
    assert_sbuf(&b, "A: 1\nB: 2\r\n\r\n");
    sbuf_free(&b);

    struct mime_field f;
    assert_true(mime_header_find(h, strlen(h), "subject", &f));
    assert_int_equal(f.value_len, strlen(" hello\r\n  world"));
    sbuf u = SBUF_INIT;
    mime_header_unfold(f.value, f.value_len, &u);
    assert_sbuf(&u, "hello  world");
    sbuf_free(&u);
    assert_false(mime_header_find(h, strlen(h), "x-absent", &f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_2046_5_1_1_multipart_mixed_attachment),
        cmocka_unit_test(test_2046_5_1_4_alternative),
        cmocka_unit_test(test_2046_5_1_1_nested_prefix_boundaries),
        cmocka_unit_test(test_2046_5_2_1_message_rfc822),
        cmocka_unit_test(test_2046_5_1_5_digest_default),
        cmocka_unit_test(test_2045_5_2_default_type),
        cmocka_unit_test(test_2231_continuations_and_charsets),
        cmocka_unit_test(test_2047_encoded_words),
        cmocka_unit_test(test_3501_7_4_2_address_lists),
        cmocka_unit_test(test_3501_7_4_2_envelope_fields),
        cmocka_unit_test(test_malformed_boundaries),
        cmocka_unit_test(test_malformed_headers_and_nul),
        cmocka_unit_test(test_lf_only_message),
        cmocka_unit_test(test_limits_depth_and_parts),
        cmocka_unit_test(test_cache_rejects_corruption),
        cmocka_unit_test(test_2045_6_8_base64),
        cmocka_unit_test(test_2045_6_7_quoted_printable_decode),
        cmocka_unit_test(test_6152_qp_encode_downgrade),
        cmocka_unit_test(test_charset_conversion),
        cmocka_unit_test(test_text_extract),
        cmocka_unit_test(test_3501_6_4_5_header_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
