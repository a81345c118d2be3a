#include "auth/hash_memory.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

/* Smaller mappings are not the hash's scratch memory (and could not be
 * backed by a 2 MiB page anyway). */
#define HASH_MAP_MIN (4u << 20)

static _Thread_local bool hashing;

void hash_memory_begin(void)
{
    hashing = true;
}

void hash_memory_end(void)
{
    hashing = false;
}

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

/* The definition the process would use without this file: libc's, or a
 * sanitizer's interceptor in front of it.  Looked up on first use; a
 * second lookup by a racing thread finds the same pointer. */
static mmap_fn next_mmap(void)
{
    static _Atomic(mmap_fn) next;
    mmap_fn f = next;
    if (!f) {
        /* POSIX's way to turn dlsym()'s object pointer into a function's. */
        void *sym = dlsym(RTLD_NEXT, "mmap");
        memcpy(&f, &sym, sizeof f);
        next = f;
    }
    return f;
}

/* Named by its symbol: with _FILE_OFFSET_BITS=64 the C name mmap means
 * the symbol mmap64, and libxcrypt calls the one named mmap. */
void *hash_memory_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) __asm__("mmap");
void *hash_memory_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = next_mmap()(addr, len, prot, flags, fd, off);
    if (hashing && p != MAP_FAILED && (flags & MAP_ANONYMOUS) && len >= HASH_MAP_MIN)
        (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}
