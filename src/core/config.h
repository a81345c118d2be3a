/* pochta.conf: one flat "key = value" file.
 *
 * Every setting has one row in the table in config.c: its name, type,
 * default and a one-line description.  That table is the single source of
 * truth for parsing, for `pochta config` (prints every key with its value)
 * and for the README reference.  Unknown keys, repeated keys and bad values
 * stop start-up with "FILE:LINE: key 'K': what is wrong".
 *
 * Syntax: '#' starts a comment line; blank lines are ignored; values are
 * taken verbatim after trimming white space; lists are separated by white
 * space or commas; sizes take k/M/G suffixes, durations s/m/h/d. */
#ifndef POCHTA_CORE_CONFIG_H
#define POCHTA_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct config {
    char *path;                 /* absolute path of the file that was read */
    char *dir;                  /* its directory: relative paths are resolved here */

    char *hostname;             /* greeting, Received "by", self-signed cert CN */
    char **domains;             /* local domains, lower-case, NULL-terminated */
    size_t ndomains;
    char *data_dir;             /* absolute */
    char *run_as;               /* user to switch to when started as root */
    enum { CONF_LOG_ERROR, CONF_LOG_WARN, CONF_LOG_INFO, CONF_LOG_DEBUG } log_level;

    char *tls_cert;             /* absolute, PEM chain */
    char *tls_key;              /* absolute, PEM key */

    char *listen_smtp;          /* "host:port" or NULL when disabled */
    char *listen_submission;
    char *listen_submissions;
    char *listen_pop3;          /* POP3 with STLS (RFC 1939, RFC 2595) */
    char *listen_pop3s;         /* POP3 over implicit TLS (RFC 8314) */
    char *listen_imap;          /* IMAP with STARTTLS (RFC 9051) */
    char *listen_imaps;         /* IMAP over implicit TLS (RFC 8314) */
    char *listen_local;         /* Unix socket for `pochta sendmail`, relative to data_dir; "" or "off" disables */

    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned worker_threads;
    char *mailbox_fsync;        /* "optimized" or "always" (store.h store_set_fsync()) */
    uint64_t header_cache_max;  /* store_set_header_cache() */
    unsigned expunge_history;   /* store_set_expunge_history() */

    uint64_t max_message_size;
    unsigned max_recipients;
    unsigned max_command_line;
    unsigned max_text_line;
    unsigned max_errors;
    unsigned max_received_headers;
    unsigned smtp_timeout;      /* seconds, waiting for a command */
    unsigned smtp_data_timeout; /* seconds, waiting for the next DATA/BDAT bytes */
    unsigned pop3_timeout;      /* seconds, POP3 autologout timer (RFC 1939 section 3) */
    unsigned pop3_login_delay;  /* seconds between POP3 logins of one user (RFC 2449 LOGIN-DELAY) */
    unsigned imap_timeout;      /* seconds, IMAP autologout timer (RFC 9051 5.4) */
    uint64_t imap_max_literal;  /* bytes, one IMAP literal */
    uint64_t imap_max_command_size; /* bytes, one IMAP command in memory (APPEND messages spooled) */
    unsigned imap_max_connections_per_user; /* logged-in IMAP sessions of one user */
    bool plaintext_auth_loopback; /* POP3/IMAP logins without TLS from 127.0.0.1 and ::1 */
    bool vrfy;
    bool expn;
    char *recipient_delimiter;  /* "" disables subaddressing */

    bool auth_allow_plaintext;  /* allow AUTH without TLS (never on smtp) */
    bool sender_login_match;    /* authenticated users send only as themselves */
    unsigned auth_max_failures; /* per client address within auth_failure_window */
    unsigned auth_failure_window;
    unsigned auth_failure_delay;/* seconds added per recent failure */

    /* Outbound delivery (queue/queue_runner.h, mta/, dns/) */
    char *dns_server;           /* "" = system resolver, else "host:port" getting every query */
    unsigned outbound_port;     /* SMTP port of remote exchangers (25; tests use others) */
    unsigned outbound_connect_timeout; /* seconds */
    unsigned outbound_timeout;  /* seconds: greeting, EHLO, MAIL, RCPT, DATA (RFC 5321 4.5.3.2) */
    unsigned outbound_data_timeout; /* seconds: reply to the final dot (RFC 5321 4.5.3.2.6) */
    unsigned outbound_max_sessions; /* concurrent outbound deliveries in all */
    unsigned outbound_max_per_domain; /* concurrent outbound deliveries to one domain */
    unsigned queue_retry_min;   /* seconds: first retry delay, doubled per attempt */
    unsigned queue_retry_max;   /* seconds: longest retry delay */
    unsigned queue_lifetime;    /* seconds: after this a deferred message bounces (4.4.7) */
    unsigned queue_delay_warning; /* seconds: delay DSN for NOTIFY=DELAY recipients; 0 = never */
    char *relay_host;           /* smart host "host:port" / "[host]:port" (mta/mta_route.h), "" = direct MX */
    char *relay_auth_user;      /* "" = no AUTH to the relay */
    char *relay_auth_password_file; /* file holding the relay password (relative: to the config dir) */
    char *relay_tls;            /* "require-verify", "require" or "opportunistic" */
    char *relay_tls_ca_file;    /* "" = the system CAs */
    char *transport_map;        /* "" = none; file of "domain next-hop" lines */
    unsigned outbound_connection_reuse_time; /* seconds an idle outbound connection waits for more mail; 0 = off */
    unsigned outbound_max_messages_per_connection;
} config;

/* Parse `path` into *cfg (which the caller zeroes).  On error return -1
 * with a message "FILE:LINE: ..." in err.  Free with config_free(). */
int config_load(const char *path, config *cfg, char *err, size_t errlen);
/* Same, over text in memory (for tests and fuzzing); `name` is used in
 * messages and relative paths resolve against `dir`. */
int config_parse(const char *text, size_t len, const char *name, const char *dir,
                 config *cfg, char *err, size_t errlen);
void config_free(config *cfg);

/* Print every key with its current value and description, as a valid
 * config file. */
void config_dump(const config *cfg, FILE *out);

/* True if `domain` (any case) is one of cfg->domains. */
bool config_is_local_domain(const config *cfg, const char *domain);

#endif
