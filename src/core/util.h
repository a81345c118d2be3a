/* Small helpers shared by every subsystem.
 *
 * Memory: x*alloc() abort the process on exhaustion, as Redis does.  Every
 * buffer that a peer can grow is bounded by a configured limit before it is
 * allocated, so running out of memory is an operator problem, not a path the
 * protocol code must unwind. */
#ifndef POCHTA_CORE_UTIL_H
#define POCHTA_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Format an error message into err (errlen bytes); a NULL err is allowed. */
void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* write()/read() that retry on EINTR and short counts.  Return 0 or -1. */
int write_full(int fd, const void *buf, size_t len);

/* fsync() the directory holding `path` (or `path` itself if is_dir), so a
 * rename/link/creat in it survives a crash. */
int fsync_dir(const char *path, bool is_dir);

/* Create a directory and its parents with `mode`; succeeds if it exists. */
int mkdir_p(const char *path, mode_t mode);

/* ASCII-only case folding: mail protocols are case-insensitive over ASCII,
 * and locale-aware functions must never run on peer data. */
int ascii_casecmp(const char *a, const char *b);
int ascii_ncasecmp(const char *a, const char *b, size_t n);
char *ascii_lower(char *s);           /* in place, returns s */
bool ascii_prefix(const char *s, const char *prefix); /* case-insensitive */

/* A new queue/session id: 16 characters of [0-9A-Z] (time-ordered prefix,
 * random tail), NUL-terminated into out[17]. */
void make_id(char out[17]);

/* Random bytes from the kernel; aborts if the kernel cannot supply them. */
void random_bytes(void *buf, size_t len);

/* RFC 5322 date-time for `t` in local time: "Mon, 23 Nov 2026 11:49:04 +0000". */
void rfc5322_date(time_t t, char out[64]);

/* Parse "123", "10k", "25M", "1G" into bytes.  Return 0 or -1. */
int parse_size(const char *s, uint64_t *out);
/* Parse "30", "30s", "5m", "1h", "2d" into seconds.  Return 0 or -1. */
int parse_duration(const char *s, uint64_t *out);

#endif
