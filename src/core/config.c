#include "core/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"

enum ktype { K_STR, K_PATH, K_LISTEN, K_LIST, K_UINT, K_SIZE, K_DURATION, K_BOOL, K_LOGLEVEL };

struct keydef {
    const char *name;
    enum ktype type;
    size_t off;
    const char *def;            /* NULL: required */
    const char *doc;
};

#define F(field) offsetof(config, field)

/* Defaults are the safe ones for a host on the public internet. */
static const struct keydef keys[] = {
    { "hostname", K_STR, F(hostname), NULL,
      "fully qualified name of this host: SMTP greeting, Received headers, certificate" },
    { "domains", K_LIST, F(domains), NULL,
      "local mail domains, separated by spaces or commas" },
    { "data_dir", K_PATH, F(data_dir), "data",
      "mailboxes, queue and account database (relative to this file)" },
    { "run_as", K_STR, F(run_as), "pochta",
      "unprivileged user the daemon switches to after binding ports when started as root" },
    { "log_level", K_LOGLEVEL, F(log_level), "info", "error, warn, info or debug" },
    { "tls_cert", K_PATH, F(tls_cert), "tls/cert.pem", "PEM certificate chain" },
    { "tls_key", K_PATH, F(tls_key), "tls/key.pem", "PEM private key" },
    { "listen_smtp", K_LISTEN, F(listen_smtp), "0.0.0.0:25",
      "address:port for inbound SMTP (STARTTLS offered); 'off' disables" },
    { "listen_submission", K_LISTEN, F(listen_submission), "0.0.0.0:587",
      "address:port for message submission (STARTTLS, then AUTH required)" },
    { "listen_submissions", K_LISTEN, F(listen_submissions), "0.0.0.0:465",
      "address:port for submission over implicit TLS" },
    { "listen_pop3", K_LISTEN, F(listen_pop3), "0.0.0.0:110",
      "address:port for POP3 (STLS offered; logins need TLS, see plaintext_auth_loopback)" },
    { "listen_pop3s", K_LISTEN, F(listen_pop3s), "0.0.0.0:995",
      "address:port for POP3 over implicit TLS" },
    { "listen_imap", K_LISTEN, F(listen_imap), "0.0.0.0:143",
      "address:port for IMAP (STARTTLS offered; logins need TLS, see plaintext_auth_loopback)" },
    { "listen_imaps", K_LISTEN, F(listen_imaps), "0.0.0.0:993",
      "address:port for IMAP over implicit TLS" },
    { "listen_local", K_STR, F(listen_local), "run/sendmail.sock",
      "Unix socket (relative to data_dir, mode 0666) where 'pochta sendmail' submits local mail; empty or 'off' disables" },
    { "max_connections", K_UINT, F(max_connections), "2000",
      "concurrent connections in all; further clients get 421" },
    { "max_connections_per_ip", K_UINT, F(max_connections_per_ip), "20",
      "concurrent connections from one client address" },
    { "worker_threads", K_UINT, F(worker_threads), "4",
      "threads doing disk writes and fsync off the event loop; half as many more (at least 1) hash passwords" },
    { "mailbox_fsync", K_STR, F(mailbox_fsync), "optimized",
      "optimized: flag changes and expunges survive a crash of pochtad but not always a power loss (as Dovecot's mail_fsync=optimized), and a new message's file and index row are fsync'd but not the rename into its mailbox directory (recovery redoes a lost one); always: every change is fsync'd. Message content is always fsync'd" },
    { "expunge_history", K_UINT, F(expunge_history), "10000",
      "expunged UIDs remembered per mailbox for IMAP QRESYNC's VANISHED (RFC 7162); a client resyncing from before the oldest gets its UIDs compared in full instead" },
    { "header_cache_max", K_SIZE, F(header_cache_max), "16K",
      "largest message header kept in the mailbox index at delivery, so header fetches, ENVELOPE and header searches skip the message file; 0 keeps none" },
    { "max_message_size", K_SIZE, F(max_message_size), "25M",
      "largest message accepted (announced as SIZE)" },
    { "max_recipients", K_UINT, F(max_recipients), "100",
      "recipients per message; more get 452 4.5.3" },
    { "max_command_line", K_UINT, F(max_command_line), "512",
      "longest SMTP command line in bytes, CRLF included (RFC 5321 4.5.3.1.4)" },
    { "max_text_line", K_UINT, F(max_text_line), "1000",
      "longest message text line in bytes, CRLF included (RFC 5321 4.5.3.1.6)" },
    { "max_errors", K_UINT, F(max_errors), "20",
      "protocol errors before the session is closed with 421" },
    { "max_received_headers", K_UINT, F(max_received_headers), "50",
      "Received: headers after which a message is refused as a mail loop (5.4.6)" },
    { "smtp_timeout", K_DURATION, F(smtp_timeout), "5m",
      "idle time waiting for a command before 421 (RFC 5321 4.5.3.2.7)" },
    { "smtp_data_timeout", K_DURATION, F(smtp_data_timeout), "3m",
      "idle time waiting for message data before 421 (RFC 5321 4.5.3.2.5)" },
    { "pop3_timeout", K_DURATION, F(pop3_timeout), "10m",
      "idle time before a POP3 session is closed without UPDATE (RFC 1939 section 3: at least 10m)" },
    { "pop3_login_delay", K_DURATION, F(pop3_login_delay), "0",
      "minimum time between two POP3 logins of one user, announced as LOGIN-DELAY (RFC 2449)" },
    { "imap_timeout", K_DURATION, F(imap_timeout), "30m",
      "idle time before an IMAP session is logged out (RFC 9051 section 5.4: at least 30m)" },
    { "imap_max_literal", K_SIZE, F(imap_max_literal), "64M",
      "largest IMAP literal (APPEND message) accepted; larger ones get NO [TOOBIG]" },
    { "imap_max_command_size", K_SIZE, F(imap_max_command_size), "1M",
      "memory one IMAP command may hold: its text and literals other than APPEND messages (which go to disk); larger gets [TOOBIG]" },
    { "imap_max_connections_per_user", K_UINT, F(imap_max_connections_per_user), "50",
      "IMAP sessions one user may have logged in at once; further logins get NO [LIMIT]" },
    { "plaintext_auth_loopback", K_BOOL, F(plaintext_auth_loopback), "no",
      "allow POP3 and IMAP logins without TLS from 127.0.0.1 and ::1" },
    { "vrfy", K_BOOL, F(vrfy), "no",
      "answer VRFY with real results (otherwise 252, revealing nothing)" },
    { "expn", K_BOOL, F(expn), "no",
      "answer EXPN with alias expansions (otherwise 502)" },
    { "recipient_delimiter", K_STR, F(recipient_delimiter), "+",
      "subaddress separator: user+tag@domain goes to user@domain; empty disables" },
    { "auth_allow_plaintext", K_BOOL, F(auth_allow_plaintext), "no",
      "allow AUTH on submission without TLS (for testing only)" },
    { "sender_login_match", K_BOOL, F(sender_login_match), "yes",
      "authenticated senders may use only their own address, its +tag forms, aliases that reach them, or <>" },
    { "auth_max_failures", K_UINT, F(auth_max_failures), "5",
      "failed AUTH attempts per client address in auth_failure_window before AUTH is refused"
      " (failures are counted up to 64, so a larger value never refuses)" },
    { "auth_failure_window", K_DURATION, F(auth_failure_window), "15m",
      "window over which AUTH failures are counted" },
    { "auth_failure_delay", K_DURATION, F(auth_failure_delay), "2s",
      "delay before answering a failed AUTH, multiplied by recent failures" },
    { "dns_server", K_STR, F(dns_server), "",
      "DNS server (host:port) that gets every outbound query; empty: the system resolver (/etc/resolv.conf)" },
    { "outbound_port", K_UINT, F(outbound_port), "25",
      "TCP port of remote mail exchangers (change only for testing)" },
    { "outbound_connect_timeout", K_DURATION, F(outbound_connect_timeout), "30s",
      "time to establish an outbound connection before trying the next exchanger" },
    { "outbound_timeout", K_DURATION, F(outbound_timeout), "5m",
      "outbound wait for the greeting and each command reply (RFC 5321 4.5.3.2: 5 minutes)" },
    { "outbound_data_timeout", K_DURATION, F(outbound_data_timeout), "10m",
      "outbound wait for the reply to the end of message data (RFC 5321 4.5.3.2.6: 10 minutes)" },
    { "outbound_max_sessions", K_UINT, F(outbound_max_sessions), "20",
      "outbound deliveries running at once" },
    { "outbound_max_per_domain", K_UINT, F(outbound_max_per_domain), "20",
      "outbound deliveries running at once to one destination domain" },
    { "queue_retry_min", K_DURATION, F(queue_retry_min), "5m",
      "delay before the first retry of a deferred message; doubles with each attempt" },
    { "queue_retry_max", K_DURATION, F(queue_retry_max), "1h",
      "longest delay between two delivery attempts" },
    { "queue_lifetime", K_DURATION, F(queue_lifetime), "5d",
      "a message still undeliverable after this long bounces (status 4.4.7)" },
    { "queue_delay_warning", K_DURATION, F(queue_delay_warning), "4h",
      "send a delay notice after this long to recipients that asked (NOTIFY=DELAY); 0 disables" },
    { "relay_host", K_STR, F(relay_host), "",
      "smart host for all remote mail: host:port (MX lookup of host) or [host]:port (no MX lookup); empty: deliver by MX" },
    { "relay_auth_user", K_STR, F(relay_auth_user), "",
      "user name for AUTH PLAIN/LOGIN to the relay (only over TLS); empty: no AUTH" },
    { "relay_auth_password_file", K_STR, F(relay_auth_password_file), "",
      "file whose first line is the relay password, read at start before privileges are dropped, so it may be private to root (relative: to this file's directory)" },
    { "relay_tls", K_STR, F(relay_tls), "require-verify",
      "TLS to the relay: require-verify (certificate and host name checked), require, or opportunistic" },
    { "relay_tls_ca_file", K_STR, F(relay_tls_ca_file), "",
      "PEM CA certificates for require-verify; empty: the system CAs" },
    { "transport_map", K_STR, F(transport_map), "",
      "file of 'domain next-hop' lines routing domains (.domain: subdomains) to host:port, [host]:port or relay" },
    { "outbound_connection_reuse_time", K_DURATION, F(outbound_connection_reuse_time), "5s",
      "an outbound connection stays open this long after a delivery for more mail to the same destination; 0 disables reuse" },
    { "outbound_max_messages_per_connection", K_UINT, F(outbound_max_messages_per_connection), "100",
      "messages sent over one outbound connection before it is closed" },
};

#define NKEYS (sizeof keys / sizeof keys[0])

static char *resolve_path(const char *dir, const char *value)
{
    if (value[0] == '/' || !dir) return xstrdup(value);
    sbuf b = SBUF_INIT;
    sbuf_printf(&b, "%s/%s", dir, value);
    return sbuf_detach(&b);
}

static void free_list(char **list)
{
    if (!list) return;
    for (char **p = list; *p; p++) free(*p);
    free(list);
}

static int valid_domain(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-' || d[n - 1] == '.') return 0;
    for (const char *p = d; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c >= 0x80))
            return 0;
        if (c == '.' && p[1] == '.') return 0;
    }
    return 1;
}

static int set_value(config *cfg, const struct keydef *k, const char *v, const char *dir,
                     char *why, size_t whylen)
{
    void *field = (char *)cfg + k->off;
    uint64_t u;
    switch (k->type) {
    case K_STR:
        free(*(char **)field);
        *(char **)field = xstrdup(v);
        return 0;
    case K_PATH:
        if (!*v) { set_err(why, whylen, "empty path"); return -1; }
        free(*(char **)field);
        *(char **)field = resolve_path(dir, v);
        return 0;
    case K_LISTEN: {
        free(*(char **)field);
        *(char **)field = NULL;
        if (!*v || ascii_casecmp(v, "off") == 0) return 0;
        const char *colon = strrchr(v, ':');
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == v || !colon[1] || *end || port < 1 || port > 65535) {
            set_err(why, whylen, "'%s' is not address:port (or off)", v);
            return -1;
        }
        *(char **)field = xstrdup(v);
        return 0;
    }
    case K_LIST: {
        char **old = *(char ***)field;
        free_list(old);
        size_t n = 0, cap = 4;
        char **list = xcalloc(cap, sizeof *list);
        char *copy = xstrdup(v), *save = NULL;
        for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
            ascii_lower(t);
            if (!valid_domain(t)) {
                set_err(why, whylen, "'%s' is not a valid domain name", t);
                free(copy);
                list[n] = NULL;
                free_list(list);
                *(char ***)field = NULL;
                return -1;
            }
            if (n + 1 >= cap) { cap *= 2; list = xrealloc(list, cap * sizeof *list); }
            list[n++] = xstrdup(t);
        }
        list[n] = NULL;
        free(copy);
        *(char ***)field = list;
        if (k->off == F(domains)) cfg->ndomains = n;
        return 0;
    }
    case K_UINT:
        if (parse_size(v, &u) < 0 || strpbrk(v, "kKmMgGbB") || u > UINT_MAX) {
            set_err(why, whylen, "'%s' is not a whole number", v);
            return -1;
        }
        *(unsigned *)field = (unsigned)u;
        return 0;
    case K_SIZE:
        if (parse_size(v, &u) < 0) {
            set_err(why, whylen, "'%s' is not a size (bytes, or with k, M, G)", v);
            return -1;
        }
        *(uint64_t *)field = u;
        return 0;
    case K_DURATION:
        if (parse_duration(v, &u) < 0 || u > UINT_MAX) {
            set_err(why, whylen, "'%s' is not a duration (seconds, or with s, m, h, d)", v);
            return -1;
        }
        *(unsigned *)field = (unsigned)u;
        return 0;
    case K_BOOL:
        if (!ascii_casecmp(v, "yes") || !ascii_casecmp(v, "true") || !ascii_casecmp(v, "on") || !strcmp(v, "1"))
            *(bool *)field = true;
        else if (!ascii_casecmp(v, "no") || !ascii_casecmp(v, "false") || !ascii_casecmp(v, "off") || !strcmp(v, "0"))
            *(bool *)field = false;
        else {
            set_err(why, whylen, "'%s' is not yes or no", v);
            return -1;
        }
        return 0;
    case K_LOGLEVEL: {
        static const char *const lv[] = { "error", "warn", "info", "debug" };
        for (int i = 0; i < 4; i++)
            if (!ascii_casecmp(v, lv[i])) { cfg->log_level = i; return 0; }
        set_err(why, whylen, "'%s' is not one of error, warn, info, debug", v);
        return -1;
    }
    }
    return -1;
}

static const struct keydef *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static int semantic_checks(const config *cfg, const char *name, char *err, size_t errlen)
{
    if (cfg->max_command_line < 512) {
        set_err(err, errlen, "%s: key 'max_command_line': must be at least 512 (RFC 5321 4.5.3.1.4)", name);
        return -1;
    }
    if (cfg->max_text_line < 1000) {
        set_err(err, errlen, "%s: key 'max_text_line': must be at least 1000 (RFC 5321 4.5.3.1.6)", name);
        return -1;
    }
    if (cfg->max_recipients < 1 || cfg->worker_threads < 1 || cfg->worker_threads > 256 ||
        cfg->max_connections < 1 || cfg->max_connections_per_ip < 1) {
        set_err(err, errlen, "%s: max_recipients, worker_threads (1..256), max_connections and "
             "max_connections_per_ip must be positive", name);
        return -1;
    }
    if (cfg->auth_max_failures < 1) {
        set_err(err, errlen, "%s: key 'auth_max_failures': must be at least 1", name);
        return -1;
    }
    if (cfg->expunge_history < 1) {
        set_err(err, errlen, "%s: key 'expunge_history': must be at least 1", name);
        return -1;
    }
    if (cfg->header_cache_max > 1024 * 1024) {
        set_err(err, errlen, "%s: key 'header_cache_max': at most 1M", name);
        return -1;
    }
    if (cfg->imap_max_command_size < 8192) {
        /* room for a LITERAL- literal of 4096 octets (RFC 7888) and its text */
        set_err(err, errlen, "%s: key 'imap_max_command_size': must be at least 8k", name);
        return -1;
    }
    if (cfg->ndomains == 0) {
        set_err(err, errlen, "%s: key 'domains': at least one local domain is required", name);
        return -1;
    }
    if (cfg->outbound_port < 1 || cfg->outbound_port > 65535 || cfg->outbound_max_sessions < 1 ||
        cfg->outbound_max_per_domain < 1 || cfg->queue_retry_min < 1 || cfg->queue_retry_max < cfg->queue_retry_min) {
        set_err(err, errlen, "%s: outbound_port (1..65535), outbound_max_sessions and outbound_max_per_domain "
                "must be positive, and queue_retry_max at least queue_retry_min (at least 1s)", name);
        return -1;
    }
    if (strcmp(cfg->relay_tls, "require-verify") != 0 && strcmp(cfg->relay_tls, "require") != 0 &&
        strcmp(cfg->relay_tls, "opportunistic") != 0) {
        set_err(err, errlen, "%s: key 'relay_tls': one of require-verify, require, opportunistic", name);
        return -1;
    }
    if (strcmp(cfg->mailbox_fsync, "optimized") != 0 && strcmp(cfg->mailbox_fsync, "always") != 0) {
        set_err(err, errlen, "%s: key 'mailbox_fsync': one of optimized, always", name);
        return -1;
    }
    if (cfg->outbound_max_messages_per_connection < 1) {
        set_err(err, errlen, "%s: key 'outbound_max_messages_per_connection': must be at least 1", name);
        return -1;
    }
    if (strlen(cfg->recipient_delimiter) > 1) {
        set_err(err, errlen, "%s: key 'recipient_delimiter': one character or empty", name);
        return -1;
    }
    return 0;
}

int config_parse(const char *text, size_t len, const char *name, const char *dir,
                 config *cfg, char *err, size_t errlen)
{
    bool seen[NKEYS] = { false };
    char why[256];
    size_t lineno = 0;
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        char *line = xstrndup(p, (size_t)(le - p));
        if (strlen(line) != (size_t)(le - p)) {
            set_err(err, errlen, "%s:%zu: NUL byte in line", name, lineno);
            free(line);
            return -1;
        }
        p = nl ? nl + 1 : end;

        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
        if (!*s || *s == '#') { free(line); continue; }

        char *eq = strchr(s, '=');
        if (!eq) {
            set_err(err, errlen, "%s:%zu: expected 'key = value'", name, lineno);
            free(line);
            return -1;
        }
        char *k = s, *ke = eq;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
        *ke = '\0';
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t') v++;

        const struct keydef *kd = find_key(k);
        if (!kd) {
            char safe[80];
            set_err(err, errlen, "%s:%zu: unknown key '%s'", name, lineno,
                 log_safe(k, strlen(k), safe, sizeof safe));
            free(line);
            return -1;
        }
        size_t idx = (size_t)(kd - keys);
        if (seen[idx]) {
            set_err(err, errlen, "%s:%zu: key '%s' is set twice", name, lineno, kd->name);
            free(line);
            return -1;
        }
        seen[idx] = true;
        if (set_value(cfg, kd, v, dir, why, sizeof why) < 0) {
            set_err(err, errlen, "%s:%zu: key '%s': %s", name, lineno, kd->name, why);
            free(line);
            return -1;
        }
        free(line);
    }

    for (size_t i = 0; i < NKEYS; i++) {
        if (seen[i]) continue;
        if (!keys[i].def) {
            set_err(err, errlen, "%s: key '%s' is required (%s)", name, keys[i].name, keys[i].doc);
            return -1;
        }
        if (set_value(cfg, &keys[i], keys[i].def, dir, why, sizeof why) < 0) {
            set_err(err, errlen, "%s: default of '%s': %s", name, keys[i].name, why);
            return -1;
        }
    }
    return semantic_checks(cfg, name, err, errlen);
}

int config_load(const char *path, config *cfg, char *err, size_t errlen)
{
    char *abs = realpath(path, NULL);
    if (!abs) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    FILE *f = fopen(abs, "re");
    if (!f) {
        set_err(err, errlen, "%s: %s", abs, strerror(errno));
        free(abs);
        return -1;
    }
    sbuf text = SBUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (text.len + n > (1u << 20)) {
            set_err(err, errlen, "%s: larger than 1 MiB", abs);
            fclose(f);
            sbuf_free(&text);
            free(abs);
            return -1;
        }
        sbuf_append(&text, chunk, n);
    }
    fclose(f);
    char *dir = xstrdup(abs);
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir ? 1 : 0] = '\0';
    cfg->path = abs;
    cfg->dir = dir;
    int rc = config_parse(sbuf_cstr(&text), text.len, abs, dir, cfg, err, errlen);
    sbuf_free(&text);
    return rc;
}

void config_free(config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        void *field = (char *)cfg + keys[i].off;
        switch (keys[i].type) {
        case K_STR: case K_PATH: case K_LISTEN:
            free(*(char **)field);
            break;
        case K_LIST:
            free_list(*(char ***)field);
            break;
        default:
            break;
        }
    }
    free(cfg->path);
    free(cfg->dir);
    memset(cfg, 0, sizeof *cfg);
}

void config_dump(const config *cfg, FILE *out)
{
    static const char *const lv[] = { "error", "warn", "info", "debug" };
    for (size_t i = 0; i < NKEYS; i++) {
        const void *field = (const char *)cfg + keys[i].off;
        fprintf(out, "# %s\n%s = ", keys[i].doc, keys[i].name);
        switch (keys[i].type) {
        case K_STR: case K_PATH:
            fprintf(out, "%s", *(char *const *)field ? *(char *const *)field : "");
            break;
        case K_LISTEN:
            fprintf(out, "%s", *(char *const *)field ? *(char *const *)field : "off");
            break;
        case K_LIST: {
            char *const *list = *(char **const *)field;
            for (size_t j = 0; list && list[j]; j++) fprintf(out, "%s%s", j ? " " : "", list[j]);
            break;
        }
        case K_UINT: case K_DURATION:
            fprintf(out, "%u", *(const unsigned *)field);
            break;
        case K_SIZE:
            fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)field);
            break;
        case K_BOOL:
            fprintf(out, "%s", *(const bool *)field ? "yes" : "no");
            break;
        case K_LOGLEVEL:
            fprintf(out, "%s", lv[cfg->log_level]);
            break;
        }
        fprintf(out, "\n\n");
    }
}

bool config_is_local_domain(const config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->ndomains; i++)
        if (ascii_casecmp(cfg->domains[i], domain) == 0) return true;
    return false;
}
