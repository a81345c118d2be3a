/* conn: one client connection, plain or TLS, on the libevent loop.
 *
 * It hides the bufferevent so protocol sessions (SMTP now, POP3 and IMAP
 * later) only see: bytes in (conn_input), bytes out (conn_write), a read
 * timeout, STARTTLS, and "close once the output is flushed".
 *
 * Ownership: the session creates the conn and frees it with conn_free(),
 * typically from its on_close callback.  Callbacks never free the conn
 * themselves. */
#ifndef POCHTA_NET_CONN_H
#define POCHTA_NET_CONN_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/sbuf.h"

struct event_base;
struct evbuffer;

typedef struct conn conn;

struct conn_ops {
    /* New bytes are in conn_input(). */
    void (*on_read)(conn *c, void *ud);
    /* Read timeout expired (reading has stopped; reply and close). */
    void (*on_timeout)(conn *c, void *ud);
    /* The connection is finished: peer closed, I/O or TLS error, or a
     * requested close completed.  The session frees everything here. */
    void (*on_close)(conn *c, void *ud, const char *why);
    /* STARTTLS or implicit TLS handshake completed. */
    void (*on_tls)(conn *c, void *ud);
    /* Optional: queued output fell to CONN_OUTPUT_LOW bytes or less, so a
     * session that stopped producing (a big download, or a client that
     * pipelines without reading) can go on. */
    void (*on_drain)(conn *c, void *ud);
};

/* Output levels for flow control: a session stops producing above
 * CONN_OUTPUT_HIGH and is called back (on_drain) at CONN_OUTPUT_LOW. */
#define CONN_OUTPUT_HIGH (64 * 1024)
#define CONN_OUTPUT_LOW (16 * 1024)

/* Wrap an accepted socket.  With tls != NULL the connection starts with
 * a TLS handshake (implicit TLS). */
conn *conn_new(struct event_base *base, int fd, const struct sockaddr *peer, SSL_CTX *tls,
               const struct conn_ops *ops, void *ud);
void conn_free(conn *c);

struct evbuffer *conn_input(conn *c);
void conn_write(conn *c, const void *data, size_t len);
/* Queue data[0..len) without copying it: the conn takes the heap block
 * `data` (from malloc, e.g. sbuf_detach()) and frees it once sent or when
 * the connection is freed.  For large replies (FETCH of bodies), which
 * would otherwise be copied once more and leave the session's buffer
 * grown to the largest reply. */
void conn_write_take(conn *c, char *data, size_t len);
/* Bytes waiting to be sent (used to stop reading from a client that does
 * not read our replies). */
size_t conn_output_len(conn *c);
const char *conn_ip(const conn *c);
int conn_port(const conn *c);
bool conn_is_tls(const conn *c);
SSL *conn_ssl(const conn *c);

/* Take one line ending in LF or CRLF from the input into `line` (without
 * its end; `line` is reset first).  Returns CONN_LINE_OK, CONN_LINE_MORE
 * when no complete line is buffered yet, or CONN_LINE_TOO_LONG once for a
 * line longer than `max` bytes: its rest, up to the next LF, is then
 * dropped as it arrives, so a peer cannot make us buffer it. */
enum { CONN_LINE_TOO_LONG = -1, CONN_LINE_MORE = 0, CONN_LINE_OK = 1 };
int conn_read_line(conn *c, sbuf *line, size_t max);

void conn_set_timeout(conn *c, unsigned seconds);
void conn_pause(conn *c);       /* stop reading (e.g. while a job runs) */
void conn_resume(conn *c);

/* Switch to TLS after the plain-text "go ahead" reply has been written:
 * reading stops at once and whatever the client sent after the STARTTLS
 * command is discarded (CVE-2011-0411 class command injection); once the
 * reply is flushed the handshake starts and on_tls runs when it is done. */
void conn_starttls(conn *c, SSL_CTX *tls);

/* Stop reading, flush the output, then close and call on_close. */
void conn_close_after_flush(conn *c, const char *why);

#endif
