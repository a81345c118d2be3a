#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

int listener_bind(const char *hostport, char *err, size_t errlen)
{
    char *host = xstrdup(hostport);
    char *colon = strrchr(host, ':');
    if (!colon) {
        snprintf(err, errlen, "listen address '%s' has no port", hostport);
        free(host);
        return -1;
    }
    *colon = '\0';
    const char *port = colon + 1;
    char *h = host;
    if (h[0] == '[') {
        h++;
        char *rb = strchr(h, ']');
        if (rb) *rb = '\0';
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(*h ? h : NULL, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "listen address '%s': %s", hostport, gai_strerror(gai));
        free(host);
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    free(host);
    return fd;
}

int listener_bind_unix(const char *path, mode_t mode, char *err, size_t errlen)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "socket path '%s' is longer than %zu bytes", path, sizeof sun.sun_path - 1);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket for %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "cannot listen on %s: it exists and is not a socket", path);
            close(fd);
            return -1;
        }
        /* Alive if something still accepts there (a second daemon). */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool alive = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
        if (probe >= 0) close(probe);
        if (alive) {
            snprintf(err, errlen, "cannot listen on %s: another server is accepting there", path);
            close(fd);
            return -1;
        }
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || chmod(path, mode) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void sockaddr_ip(const struct sockaddr *sa, char out[64])
{
    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, 64);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], out, 64);
        else
            inet_ntop(AF_INET6, a, out, 64);
    } else {
        snprintf(out, 64, "unknown");
    }
}

/* Open addressing keyed by the address text; a connection flood from many
 * addresses is bounded by max_total, so the table never exceeds it. */
struct slot { char ip[64]; unsigned count; };

struct connlimit {
    unsigned max_total, max_per_ip, total;
    struct slot *slots;
    size_t nslots;
};

static size_t hash_ip(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

connlimit *connlimit_new(unsigned max_total, unsigned max_per_ip)
{
    connlimit *cl = xcalloc(1, sizeof *cl);
    cl->max_total = max_total;
    cl->max_per_ip = max_per_ip;
    cl->nslots = 16;
    while (cl->nslots < (size_t)max_total * 2) cl->nslots *= 2;
    cl->slots = xcalloc(cl->nslots, sizeof *cl->slots);
    return cl;
}

void connlimit_free(connlimit *cl)
{
    if (!cl) return;
    free(cl->slots);
    free(cl);
}

static struct slot *find(connlimit *cl, const char *ip, bool insert)
{
    size_t mask = cl->nslots - 1, i = hash_ip(ip) & mask;
    struct slot *tomb = NULL;
    for (size_t n = 0; n < cl->nslots; n++, i = (i + 1) & mask) {
        struct slot *s = &cl->slots[i];
        if (s->ip[0] == '\0') {
            if (!insert) return NULL;
            /* An emptied slot keeps its ip as a tombstone (count 0), so only
             * never-used slots end a probe. */
            struct slot *t = tomb ? tomb : s;
            snprintf(t->ip, sizeof t->ip, "%s", ip);
            return t;
        }
        if (strcmp(s->ip, ip) == 0) return s;
        if (s->count == 0 && !tomb) tomb = s;
    }
    if (insert && tomb) {
        snprintf(tomb->ip, sizeof tomb->ip, "%s", ip);
        return tomb;
    }
    return NULL;
}

bool connlimit_acquire(connlimit *cl, const char *ip, const char **why)
{
    if (cl->total >= cl->max_total) {
        *why = "too many connections";
        return false;
    }
    struct slot *s = find(cl, ip, true);
    if (!s) {
        *why = "too many connections";
        return false;
    }
    if (s->count >= cl->max_per_ip) {
        *why = "too many connections from your address";
        return false;
    }
    s->count++;
    cl->total++;
    return true;
}

void connlimit_release(connlimit *cl, const char *ip)
{
    struct slot *s = find(cl, ip, false);
    if (s && s->count > 0) {
        s->count--;
        cl->total--;
    }
}

unsigned connlimit_total(const connlimit *cl)
{
    return cl->total;
}

bool connlimit_admit(connlimit *cl, bool shutting_down, int fd, const char *ip, const char *service,
                     const char *refusal, const char *shutdown_reason)
{
    const char *why = NULL;
    if (!shutting_down && connlimit_acquire(cl, ip, &why)) return true;
    if (refusal) {
        /* Best effort: one short write on a fresh socket does not block. */
        char msg[256];
        int n = snprintf(msg, sizeof msg, "%s %s, try again later\r\n", refusal,
                         shutting_down ? shutdown_reason : why);
        if (n > 0) (void)!write(fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    }
    log_info("refused connection from [%s] on %s: %s", ip, service, shutting_down ? "shutting down" : why);
    close(fd);
    return false;
}
