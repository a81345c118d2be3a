#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

static int parse(const char *text, config *cfg, char *err)
{
    memset(cfg, 0, sizeof *cfg);
    return config_parse(text, strlen(text), "test.conf", "/srv/pochta", cfg, err, 512);
}

static void minimal_file_gets_safe_defaults(void **state)
{
    config cfg;
    char err[512];
    assert_int_equal(parse("hostname = mx.example.test\ndomains = Example.TEST, other.test\n", &cfg, err), 0);
    assert_string_equal(cfg.hostname, "mx.example.test");
    assert_int_equal(cfg.ndomains, 2);
    assert_string_equal(cfg.domains[0], "example.test");
    assert_true(config_is_local_domain(&cfg, "OTHER.test"));
    assert_false(config_is_local_domain(&cfg, "example.org"));
    assert_string_equal(cfg.data_dir, "/srv/pochta/data");
    assert_int_equal(cfg.max_recipients, 100);
    assert_int_equal(cfg.max_command_line, 512);
    assert_int_equal(cfg.max_text_line, 1000);
    assert_int_equal(cfg.smtp_timeout, 300);
    assert_false(cfg.vrfy);
    assert_false(cfg.expn);
    assert_false(cfg.auth_allow_plaintext);
    assert_int_equal(cfg.max_message_size, 25u * 1024 * 1024);
    config_free(&cfg);
}

static void values_are_typed(void **state)
{
    config cfg;
    char err[512];
    assert_int_equal(parse("hostname = h\ndomains = d.test\n# comment\n\n"
                           "  max_message_size = 100k  \nsmtp_timeout = 3s\nvrfy = yes\n"
                           "listen_smtp = off\nlisten_submission = [::1]:2587\n", &cfg, err), 0);
    assert_int_equal(cfg.max_message_size, 102400);
    assert_int_equal(cfg.smtp_timeout, 3);
    assert_true(cfg.vrfy);
    assert_null(cfg.listen_smtp);
    assert_string_equal(cfg.listen_submission, "[::1]:2587");
    config_free(&cfg);
}

static void errors_name_file_line_and_key(void **state)
{
    config cfg;
    char err[512];
    assert_int_equal(parse("hostname = h\ndomains = d.test\nbogus = 1\n", &cfg, err), -1);
    assert_string_equal(err, "test.conf:3: unknown key 'bogus'");
    config_free(&cfg);
    assert_int_equal(parse("hostname = h\ndomains = d.test\nmax_recipients = many\n", &cfg, err), -1);
    assert_non_null(strstr(err, "test.conf:3: key 'max_recipients'"));
    config_free(&cfg);
    assert_int_equal(parse("hostname = h\nhostname = i\ndomains = d.test\n", &cfg, err), -1);
    assert_non_null(strstr(err, "test.conf:2: key 'hostname' is set twice"));
    config_free(&cfg);
    assert_int_equal(parse("domains = d.test\n", &cfg, err), -1);
    assert_non_null(strstr(err, "'hostname' is required"));
    config_free(&cfg);
    assert_int_equal(parse("hostname = h\ndomains = d.test\nlisten_smtp = nowhere\n", &cfg, err), -1);
    assert_non_null(strstr(err, "key 'listen_smtp'"));
    config_free(&cfg);
    assert_int_equal(parse("hostname = h\ndomains = bad..domain\n", &cfg, err), -1);
    config_free(&cfg);
    assert_int_equal(parse("just words\n", &cfg, err), -1);
    assert_non_null(strstr(err, "test.conf:1: expected 'key = value'"));
    config_free(&cfg);
}

static void rfc_minimum_line_lengths_enforced(void **state)
{
    config cfg;
    char err[512];
    /* RFC 5321 4.5.3.1.4: a server must accept 512-octet command lines. */
    assert_int_equal(parse("hostname = h\ndomains = d.test\nmax_command_line = 100\n", &cfg, err), -1);
    assert_non_null(strstr(err, "max_command_line"));
    config_free(&cfg);
}

static void dump_is_parseable(void **state)
{
    config cfg, again;
    char err[512];
    assert_int_equal(parse("hostname = h\ndomains = d.test e.test\nvrfy = yes\n", &cfg, err), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_dump(&cfg, f);
    fclose(f);
    assert_int_equal(parse(text, &again, err), 0);
    assert_true(again.vrfy);
    assert_int_equal(again.ndomains, 2);
    assert_string_equal(again.data_dir, cfg.data_dir);
    free(text);
    config_free(&cfg);
    config_free(&again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(minimal_file_gets_safe_defaults),
        cmocka_unit_test(values_are_typed),
        cmocka_unit_test(errors_name_file_line_and_key),
        cmocka_unit_test(rfc_minimum_line_lengths_enforced),
        cmocka_unit_test(dump_is_parseable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
