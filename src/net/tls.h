/* Server-side TLS contexts (OpenSSL 3).
 *
 * One SSL_CTX serves every listener: STARTTLS (smtp, submission, later
 * pop3/imap) and implicit TLS (submissions, later pop3s/imaps).  The key is
 * read while still root, before privileges are dropped, so it can stay
 * root-only on disk. */
#ifndef POCHTA_NET_TLS_H
#define POCHTA_NET_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* TLS 1.2 and 1.3 only, server cipher preference, no compression, no
 * renegotiation.  Returns NULL with a message (file named) in err. */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* "TLSv1.3, cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" for the
 * Received header comment and the log. */
void tls_describe(SSL *ssl, char *out, size_t outlen);

#endif
