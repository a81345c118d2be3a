/* Logging: one line per event on stderr.
 *
 * Every line that concerns a session or a message carries its id
 * ("session=..." / "queue=..."), so `grep ID` follows a message through
 * the system.  Peer-supplied text must go through log_safe() first: it
 * replaces control bytes so a peer cannot forge log lines. */
#ifndef POCHTA_CORE_LOG_H
#define POCHTA_CORE_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(const char *progname, enum log_level level);
void log_set_level(enum log_level level);
int log_level_parse(const char *s);     /* -1 if unknown */

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Copy at most `max` bytes of `s` into out (size outlen) with every byte
 * outside printable ASCII shown as \xHH.  Returns out. */
char *log_safe(const char *s, size_t len, char *out, size_t outlen);

#endif
