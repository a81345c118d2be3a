#include "net/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "net/listener.h"

/* The input buffer stops growing here: a client that pipelines faster than
 * we answer is simply not read from until we catch up. */
#define INPUT_HIGH_WATER (256 * 1024)
/* Time allowed to flush a final reply to a client that does not read. */
#define CLOSE_FLUSH_TIMEOUT 10

struct conn {
    struct event_base *base;
    struct bufferevent *bev;
    int fd;
    char ip[64];
    int port;
    const struct conn_ops *ops;
    void *ud;
    unsigned timeout;
    bool tls;
    bool handshaking;
    bool starttls_pending;      /* waiting for the go-ahead reply to flush */
    SSL_CTX *starttls_ctx;
    bool closing;
    const char *close_why;
    bool paused;
    bool skip_to_eol;           /* dropping the rest of an overlong line */
};

static void on_read(struct bufferevent *bev, void *p);
static void on_write(struct bufferevent *bev, void *p);
static void on_event(struct bufferevent *bev, short what, void *p);

static void apply_timeouts(conn *c)
{
    struct timeval rt = { (time_t)c->timeout, 0 };
    struct timeval wt = { c->timeout > CLOSE_FLUSH_TIMEOUT ? (time_t)c->timeout : CLOSE_FLUSH_TIMEOUT, 0 };
    bufferevent_set_timeouts(c->bev, c->timeout ? &rt : NULL, &wt);
}

static void setup_bev(conn *c, struct bufferevent *bev)
{
    c->bev = bev;
    bufferevent_setcb(bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(bev, EV_READ, 0, INPUT_HIGH_WATER);
    bufferevent_setwatermark(bev, EV_WRITE, CONN_OUTPUT_LOW, 0);
    apply_timeouts(c);
    if (!c->paused) bufferevent_enable(bev, EV_READ | EV_WRITE);
    else bufferevent_enable(bev, EV_WRITE);
}

static struct bufferevent *tls_bev(conn *c, SSL_CTX *ctx)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(c->base, c->fd, ssl,
        BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Many clients close TLS without close_notify; that is an EOF, not an
     * attack on a protocol that has its own end-of-session command. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    c->tls = true;
    c->handshaking = true;
    return bev;
}

conn *conn_new(struct event_base *base, int fd, const struct sockaddr *peer, SSL_CTX *tls,
               const struct conn_ops *ops, void *ud)
{
    conn *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->fd = fd;
    c->ops = ops;
    c->ud = ud;
    sockaddr_ip(peer, c->ip);
    if (peer->sa_family == AF_INET)
        c->port = ntohs(((const struct sockaddr_in *)(const void *)peer)->sin_port);
    else if (peer->sa_family == AF_INET6)
        c->port = ntohs(((const struct sockaddr_in6 *)(const void *)peer)->sin6_port);
    /* Replies are written whole, so Nagle only adds latency: the last
     * piece of a multi-write reply (RETR, FETCH) would wait for the ACK of
     * the previous one, which the client delays by up to 40 ms. */
    int one = 1;
    if (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = tls ? tls_bev(c, tls)
                                  : bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        free(c);
        return NULL;
    }
    setup_bev(c, bev);
    return c;
}

void conn_free(conn *c)
{
    if (!c) return;
    if (c->bev) bufferevent_free(c->bev);
    free(c);
}

struct evbuffer *conn_input(conn *c) { return bufferevent_get_input(c->bev); }
size_t conn_output_len(conn *c) { return evbuffer_get_length(bufferevent_get_output(c->bev)); }
const char *conn_ip(const conn *c) { return c->ip; }
int conn_port(const conn *c) { return c->port; }
bool conn_is_tls(const conn *c) { return c->tls && !c->handshaking; }
SSL *conn_ssl(const conn *c) { return c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL; }

void conn_write(conn *c, const void *data, size_t len)
{
    if (c->bev) bufferevent_write(c->bev, data, len);
}

static void free_taken(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)data);
}

void conn_write_take(conn *c, char *data, size_t len)
{
    if (!c->bev || len == 0 ||
        evbuffer_add_reference(bufferevent_get_output(c->bev), data, len, free_taken, NULL) != 0)
        free(data);
}

void conn_set_timeout(conn *c, unsigned seconds)
{
    c->timeout = seconds;
    apply_timeouts(c);
}

void conn_pause(conn *c)
{
    c->paused = true;
    bufferevent_disable(c->bev, EV_READ);
}

void conn_resume(conn *c)
{
    c->paused = false;
    if (c->closing || c->starttls_pending) return;
    bufferevent_enable(c->bev, EV_READ);
    /* Bytes that arrived while paused are already buffered: no new read
     * event will announce them, so hand them over now. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void finish(conn *c, const char *why)
{
    /* Stop every callback before telling the session, which frees us. */
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    c->ops->on_close(c, c->ud, why);
}

static void start_tls(conn *c)
{
    c->starttls_pending = false;
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    /* Keep the socket: the plain bufferevent must not close it. */
    bufferevent_setfd(c->bev, -1);
    bufferevent_free(c->bev);
    c->bev = NULL;
    struct bufferevent *bev = tls_bev(c, c->starttls_ctx);
    if (!bev) {
        close(c->fd);
        c->ops->on_close(c, c->ud, "TLS setup failed");
        return;
    }
    setup_bev(c, bev);
}

void conn_starttls(conn *c, SSL_CTX *tls)
{
    bufferevent_disable(c->bev, EV_READ);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    c->starttls_pending = true;
    c->starttls_ctx = tls;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) start_tls(c);
}

void conn_close_after_flush(conn *c, const char *why)
{
    if (c->closing) return;
    c->closing = true;
    c->close_why = why;
    bufferevent_disable(c->bev, EV_READ);
    struct timeval wt = { CLOSE_FLUSH_TIMEOUT, 0 };
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) finish(c, why);
}

static void on_read(struct bufferevent *bev, void *p)
{
    conn *c = p;
    if (c->closing || c->starttls_pending) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->paused) return;
    c->ops->on_read(c, c->ud);
}

static void on_write(struct bufferevent *bev, void *p)
{
    conn *c = p;
    bool empty = evbuffer_get_length(bufferevent_get_output(bev)) == 0;
    if (c->starttls_pending || c->closing) {
        if (!empty) return;
        if (c->starttls_pending) start_tls(c);
        else finish(c, c->close_why);
        return;
    }
    if (c->ops->on_drain) c->ops->on_drain(c, c->ud);
}

int conn_read_line(conn *c, sbuf *line, size_t max)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        if (c->skip_to_eol) {
            struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
            if (lf.pos < 0) {
                evbuffer_drain(in, evbuffer_get_length(in));
                return CONN_LINE_MORE;
            }
            evbuffer_drain(in, (size_t)lf.pos + 1);
            c->skip_to_eol = false;
            continue;
        }
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        if (eol.pos < 0) {
            size_t have = evbuffer_get_length(in);
            if (have <= max) return CONN_LINE_MORE;
            /* A line of exactly max bytes whose CR arrived without its LF
             * yet is not too long: wait for the LF. */
            if (have == max + 1) {
                unsigned char last;
                struct evbuffer_ptr at;
                evbuffer_ptr_set(in, &at, max, EVBUFFER_PTR_SET);
                if (evbuffer_copyout_from(in, &at, &last, 1) == 1 && last == '\r') return CONN_LINE_MORE;
            }
            c->skip_to_eol = true;
            return CONN_LINE_TOO_LONG;
        }
        if ((size_t)eol.pos > max) {
            evbuffer_drain(in, (size_t)eol.pos + eol_len);
            return CONN_LINE_TOO_LONG;
        }
        sbuf_reset(line);
        sbuf_reserve(line, (size_t)eol.pos);
        evbuffer_remove(in, line->data, (size_t)eol.pos);
        line->len = (size_t)eol.pos;
        line->data[line->len] = '\0';
        evbuffer_drain(in, eol_len);
        return CONN_LINE_OK;
    }
}

static void on_event(struct bufferevent *bev, short what, void *p)
{
    conn *c = p;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->handshaking) {
            c->handshaking = false;
            if (c->ops->on_tls) c->ops->on_tls(c, c->ud);
        }
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (c->closing || (what & BEV_EVENT_WRITING) || c->handshaking) {
            finish(c, c->handshaking ? "TLS handshake timeout" : "timeout");
            return;
        }
        c->ops->on_timeout(c, c->ud);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        const char *why = "connection error";
        if (c->tls) {
            unsigned long e = bufferevent_get_openssl_error(bev);
            if (e) why = c->handshaking ? "TLS handshake failed" : "TLS error";
            ERR_clear_error();
        }
        finish(c, why);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        finish(c, c->closing ? c->close_why : "client disconnected");
        return;
    }
}
