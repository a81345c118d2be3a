#include "smtp/smtp_data.h"

#include <string.h>

/* Input states.  Only a real CRLF (or the start of DATA) leads to S_BOL,
 * and only S_BOL can begin a dot line: a "." after a bare LF or bare CR is
 * plain text, so no mix of line endings can end the message. */
enum {
    S_BOL,      /* start of a line (DOT mode) */
    S_TEXT,     /* inside a line */
    S_CR,       /* CR held back, waiting to see if LF follows */
    S_DOT,      /* "." at S_BOL held back */
    S_DOT_CR,   /* "." CR at S_BOL held back */
    S_DONE,
};

/* Header states, run on the OUTPUT bytes to count Received: fields. */
enum { H_BOL, H_BOL_CR, H_NAME, H_WS, H_REST, H_DONE };

static const char received[] = "received";

void smtp_data_init(struct smtp_data *d, enum smtp_data_mode mode, enum smtp_newline nl,
                    size_t max_line)
{
    memset(d, 0, sizeof *d);
    d->mode = mode;
    d->nl = nl;
    d->max_line = max_line;
    d->state = mode == SMTP_DATA_DOT ? S_BOL : S_TEXT;
    d->hdr_state = H_BOL;
}

static void header_byte(struct smtp_data *d, unsigned char c)
{
    switch (d->hdr_state) {
    case H_DONE:
        return;
    case H_BOL:
        if (c == '\r') d->hdr_state = H_BOL_CR;
        else if (c == '\n') d->hdr_state = H_DONE;
        else if ((c | 0x20) == received[0]) {
            d->hdr_state = H_NAME;
            d->hdr_idx = 1;
        } else d->hdr_state = H_REST;
        return;
    case H_BOL_CR:
        d->hdr_state = c == '\n' ? H_DONE : H_REST;
        return;
    default:
        break;
    }
    if (c == '\n') {
        d->hdr_state = H_BOL;
        return;
    }
    if (d->hdr_state == H_NAME && d->hdr_idx < sizeof received - 1) {
        if ((c | 0x20) == received[d->hdr_idx]) d->hdr_idx++;
        else d->hdr_state = H_REST;
        return;
    }
    if (d->hdr_state == H_NAME || d->hdr_state == H_WS) {
        /* RFC 5322 4.5.3 obsolete syntax allows WSP before the colon. */
        if (c == ':') {
            d->received_headers++;
            d->hdr_state = H_REST;
        } else if (c == ' ' || c == '\t') {
            d->hdr_state = H_WS;
        } else {
            d->hdr_state = H_REST;
        }
    }
}

struct writer {
    struct smtp_data *d;
    char *w;
};

static inline void put(struct writer *wr, char c)
{
    *wr->w++ = c;
    header_byte(wr->d, (unsigned char)c);
}

/* A bare CR or bare LF, already flagged by the caller. */
static void put_bare(struct writer *wr, char c)
{
    if (wr->d->nl == SMTP_NEWLINE_NORMALIZE) {
        put(wr, '\r');
        put(wr, '\n');
    } else {
        put(wr, c);
    }
}

/* Run the state machine for one input byte.  Returns false when this byte
 * completed the terminator. */
static bool step(struct writer *wr, unsigned char c)
{
    struct smtp_data *d = wr->d;
    for (;;) {
        switch (d->state) {
        case S_BOL:
            if (c == '.') {
                d->state = S_DOT;
                return true;
            }
            d->state = S_TEXT;
            continue;
        case S_TEXT:
            if (c == '\r') {
                d->state = S_CR;
            } else if (c == '\n') {
                d->bare_lf = true;
                put_bare(wr, '\n');
            } else {
                put(wr, (char)c);
            }
            return true;
        case S_CR:
            if (c == '\n') {
                put(wr, '\r');
                put(wr, '\n');
                d->state = d->mode == SMTP_DATA_DOT ? S_BOL : S_TEXT;
                return true;
            }
            d->bare_cr = true;
            put_bare(wr, '\r');
            d->state = S_TEXT;
            continue;
        case S_DOT:
            if (c == '\r') {
                d->state = S_DOT_CR;
                return true;
            }
            /* Dot-unstuffing: the held dot is dropped. */
            d->state = S_TEXT;
            continue;
        case S_DOT_CR:
            if (c == '\n') {
                d->state = S_DONE;
                d->done = true;
                return false;
            }
            d->bare_cr = true;
            put_bare(wr, '\r');
            d->state = S_TEXT;
            continue;
        default:
            return false;
        }
    }
}

/* Each input byte yields at most 2 output bytes plus up to 2 held-back
 * ones, so reserving 2n + 4 lets the loop write without checks.  Input is
 * taken in slices to keep that reservation bounded. */
#define SLICE 65536

size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, sbuf *out)
{
    size_t used = 0;
    while (used < len && !d->done) {
        size_t n = len - used < SLICE ? len - used : SLICE;
        sbuf_reserve(out, 2 * n + 4);
        struct writer wr = { d, out->data + out->len };
        size_t i = 0;
        while (i < n) {
            unsigned char c = (unsigned char)in[used + i++];
            if (c == 0) d->nul = true;
            else if (c >= 0x80) d->eight_bit = true;
            if (++d->line_len > d->max_line && d->max_line) d->line_too_long = true;
            if (c == '\n') d->line_len = 0;
            if (!step(&wr, c)) break;
        }
        size_t produced = (size_t)(wr.w - (out->data + out->len));
        out->len += produced;
        out->data[out->len] = '\0';
        d->out_bytes += produced;
        used += i;
    }
    return used;
}

void smtp_data_finish(struct smtp_data *d, sbuf *out)
{
    if (d->state != S_CR && d->state != S_DOT_CR) return;
    sbuf_reserve(out, 2);
    struct writer wr = { d, out->data + out->len };
    d->bare_cr = true;
    put_bare(&wr, '\r');
    d->state = S_TEXT;
    size_t produced = (size_t)(wr.w - (out->data + out->len));
    out->len += produced;
    out->data[out->len] = '\0';
    d->out_bytes += produced;
}
