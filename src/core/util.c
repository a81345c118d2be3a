#include "core/util.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
    fprintf(stderr, "pochta: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fsync_dir(const char *path, bool is_dir)
{
    char *dir;
    if (is_dir) {
        dir = xstrdup(path);
    } else {
        const char *slash = strrchr(path, '/');
        dir = slash ? xstrndup(path, (size_t)(slash - path + (slash == path))) : xstrdup(".");
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int mkdir_p(const char *path, mode_t mode)
{
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) { free(p); return -1; }
        *s = '/';
    }
    int rc = mkdir(p, mode);
    free(p);
    return (rc < 0 && errno != EEXIST) ? -1 : 0;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int d = lower((unsigned char)*a) - lower((unsigned char)*b);
        if (d || !*a) return d;
    }
}

int ascii_ncasecmp(const char *a, const char *b, size_t n)
{
    for (; n > 0; a++, b++, n--) {
        int d = lower((unsigned char)*a) - lower((unsigned char)*b);
        if (d || !*a) return d;
    }
    return 0;
}

char *ascii_lower(char *s)
{
    for (char *p = s; *p; p++) *p = (char)lower((unsigned char)*p);
    return s;
}

bool ascii_prefix(const char *s, const char *prefix)
{
    return ascii_ncasecmp(s, prefix, strlen(prefix)) == 0;
}

void random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("getrandom");
            abort();
        }
        p += n;
        len -= (size_t)n;
    }
}

void make_id(char out[17])
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* 10 chars of base32 time in 1/1024 s units keep ids sortable by age;
     * 6 random chars (30 bits) make collisions within a tick unlikely, and
     * every consumer still checks for an existing id before using one. */
    uint64_t t = ((uint64_t)ts.tv_sec << 10) | ((uint64_t)ts.tv_nsec >> 20);
    for (int i = 9; i >= 0; i--) { out[i] = alphabet[t & 31]; t >>= 5; }
    unsigned char r[6];
    random_bytes(r, sizeof r);
    for (int i = 0; i < 6; i++) out[10 + i] = alphabet[r[i] & 31];
    out[16] = '\0';
}

void rfc5322_date(time_t t, char out[64])
{
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 64, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static int parse_scaled(const char *s, uint64_t *out, const char *units, const uint64_t *scale)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    if (*s == '-' || *s == '+') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    uint64_t mul = 1;
    if (*end) {
        const char *u = strchr(units, lower((unsigned char)*end));
        if (!u || end[1]) return -1;
        mul = scale[u - units];
    }
    if (mul && v > UINT64_MAX / mul) return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    static const uint64_t scale[] = { 1, 1024, 1024 * 1024, 1024ULL * 1024 * 1024 };
    return parse_scaled(s, out, "bkmg", scale);
}

int parse_duration(const char *s, uint64_t *out)
{
    static const uint64_t scale[] = { 1, 60, 3600, 86400 };
    return parse_scaled(s, out, "smhd", scale);
}
