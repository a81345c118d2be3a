/* Sequence sets (RFC 9051 section 9, "sequence-set") and dates. */
#include "imap/imap_parse.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Resolve one range against max: false when nothing of it exists. */
static bool resolve(const struct imap_range *r, uint32_t max, uint32_t *lo, uint32_t *hi)
{
    uint32_t a = r->lo == IMAP_SEQ_STAR ? max : r->lo;
    uint32_t b = r->hi == IMAP_SEQ_STAR ? max : r->hi;
    if (a > b) { uint32_t t = a; a = b; b = t; }
    if (max == 0 || a > max) return false;
    if (b > max) b = max;
    *lo = a;
    *hi = b;
    return true;
}

bool imap_seqset_contains(const struct imap_seqset *s, uint32_t x, uint32_t max)
{
    if (s->saved || x == 0 || x > max) return false;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t lo, hi;
        if (resolve(&s->r[i], max, &lo, &hi) && x >= lo && x <= hi) return true;
    }
    return false;
}

static int range_cmp(const void *pa, const void *pb)
{
    const struct imap_range *a = pa, *b = pb;
    if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
    if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
    return 0;
}

size_t imap_seqset_normalize(const struct imap_seqset *s, uint32_t max, struct imap_range *out)
{
    size_t n = 0;
    if (s->saved) return 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t lo, hi;
        if (resolve(&s->r[i], max, &lo, &hi)) {
            out[n].lo = lo;
            out[n].hi = hi;
            n++;
        }
    }
    if (n == 0) return 0;
    qsort(out, n, sizeof *out, range_cmp);
    size_t w = 0;
    for (size_t i = 1; i < n; i++) {
        /* merge overlapping or adjacent (hi + 1 cannot overflow: hi <= max) */
        if ((uint64_t)out[i].lo <= (uint64_t)out[w].hi + 1) {
            if (out[i].hi > out[w].hi) out[w].hi = out[i].hi;
        } else {
            out[++w] = out[i];
        }
    }
    return w + 1;
}

bool imap_ranges_contains(const struct imap_range *r, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x < r[mid].lo) hi = mid;
        else if (x > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

void imap_seqiter_init(struct imap_seqiter *it, const struct imap_range *r, size_t n)
{
    it->r = r;
    it->n = n;
    it->i = 0;
    it->next = n ? r[0].lo : 0;
}

bool imap_seqiter_next(struct imap_seqiter *it, uint32_t *out)
{
    while (it->i < it->n) {
        if (it->next <= it->r[it->i].hi) {
            *out = (uint32_t)it->next++;
            return true;
        }
        if (++it->i < it->n) it->next = it->r[it->i].lo;
    }
    return false;
}

static void put_num(sbuf *out, uint32_t v)
{
    if (v == IMAP_SEQ_STAR) sbuf_putc(out, '*');
    else sbuf_printf(out, "%u", (unsigned)v);
}

void imap_seqset_format(const struct imap_seqset *s, sbuf *out)
{
    if (s->saved) {
        sbuf_putc(out, '$');
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (i) sbuf_putc(out, ',');
        put_num(out, s->r[i].lo);
        if (s->r[i].hi != s->r[i].lo) {
            sbuf_putc(out, ':');
            put_num(out, s->r[i].hi);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Dates.  Computed by hand (no timegm/TZ): pure and locale-free. */

static const char months[12][4] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static int month_of(const char *s)
{
    for (int m = 0; m < 12; m++)
        if (ascii_ncasecmp(s, months[m], 3) == 0) return m + 1;
    return 0;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int mdays(int y, int m)
{
    static const int d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "d-MMM-yyyy" / "dd-MMM-yyyy" at s; *used gets the length consumed. */
static int parse_day(const char *s, size_t len, bool fixed, int *y, int *m, int *d, size_t *used)
{
    size_t dl;
    if (len >= 2 && s[1] == '-') dl = 1;
    else if (len >= 3 && s[2] == '-') dl = 2;
    else return -1;
    if (fixed && dl != 2) return -1;
    if (dl == 2 && fixed && s[0] == ' ') {
        if (!digits(s + 1, 1, d)) return -1;
    } else if (!digits(s, dl, d)) {
        return -1;
    }
    s += dl + 1;
    len -= dl + 1;
    if (len < 8 || s[3] != '-') return -1;
    if ((*m = month_of(s)) == 0) return -1;
    if (!digits(s + 4, 4, y)) return -1;
    if (*d < 1 || *d > mdays(*y, *m)) return -1;
    *used = dl + 1 + 8;
    return 0;
}

int imap_parse_date(const char *s, size_t len, time_t *out)
{
    int y, m, d;
    size_t used;
    if (parse_day(s, len, false, &y, &m, &d, &used) < 0 || used != len) return -1;
    *out = (time_t)(days_from_civil(y, m, d) * 86400);
    return 0;
}

int imap_parse_datetime(const char *s, size_t len, time_t *out, int *zone_min)
{
    int y, m, d, hh, mm, ss, zh, zm;
    size_t used;
    if (parse_day(s, len, true, &y, &m, &d, &used) < 0) return -1;
    s += used;
    len -= used;
    /* " hh:mm:ss +zzzz" */
    if (len != 15 || s[0] != ' ' || s[3] != ':' || s[6] != ':' || s[9] != ' ') return -1;
    if (!digits(s + 1, 2, &hh) || !digits(s + 4, 2, &mm) || !digits(s + 7, 2, &ss)) return -1;
    if (s[10] != '+' && s[10] != '-') return -1;
    if (!digits(s + 11, 2, &zh) || !digits(s + 13, 2, &zm)) return -1;
    if (hh > 23 || mm > 59 || ss > 60 || zm > 59) return -1;
    int zone = (zh * 60 + zm) * (s[10] == '-' ? -1 : 1);
    int64_t t = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)zone * 60;
    *out = (time_t)t;
    *zone_min = zone;
    return 0;
}
