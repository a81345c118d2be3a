/* sbuf: the one growable byte/string buffer used across pochta.
 *
 * The buffer owns `data`; sbuf_free() releases it.  `data` is always
 * NUL-terminated after any append (the NUL is not counted in len), so text
 * can be passed to C string functions, but binary content is fine too.
 * Appends never fail (allocation failure aborts, see core/util.h): callers
 * bound peer-controlled input *before* appending. */
#ifndef POCHTA_CORE_SBUF_H
#define POCHTA_CORE_SBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct sbuf {
    char *data;
    size_t len;
    size_t cap;
} sbuf;

#define SBUF_INIT { NULL, 0, 0 }

void sbuf_init(sbuf *b);
void sbuf_free(sbuf *b);
void sbuf_reset(sbuf *b);                     /* len = 0, keeps memory */
void sbuf_reserve(sbuf *b, size_t extra);
void sbuf_append(sbuf *b, const void *p, size_t n);
void sbuf_puts(sbuf *b, const char *s);
void sbuf_putc(sbuf *b, char c);
void sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_vprintf(sbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Never NULL: an empty buffer gives "". */
const char *sbuf_cstr(const sbuf *b);
/* Hand the heap string to the caller (who frees it) and reset the buffer. */
char *sbuf_detach(sbuf *b);

#endif
