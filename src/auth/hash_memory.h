/* hash_memory: transparent huge pages for the password hash's scratch
 * memory.
 *
 * libxcrypt's yescrypt (pochta's "$y$" hashes, default cost) maps 16 MiB
 * of fresh anonymous memory for every hash and unmaps it at the end.
 * Faulting that in 4 KiB at a time costs about a third of a hash's CPU
 * time (4,096 page faults: 13.1 ms per hash, of which 4.6 ms in the
 * kernel, on the benchmark machine), and logins are most of an IMAP
 * server's CPU under load.  Backed by 2 MiB pages the same hash takes
 * 9.1 ms.  libxcrypt offers no way to pass it memory, so the mapping is
 * marked MADV_HUGEPAGE as it is made: pochtad defines mmap(), which the
 * shared libraries' calls reach first, and forwards every call to libc's;
 * only large anonymous mappings made by a thread between
 * hash_memory_begin() and hash_memory_end() are marked.  Where THP is
 * off ("never") the advice is ignored; where huge pages are short the
 * kernel falls back to small ones. */
#ifndef POCHTA_AUTH_HASH_MEMORY_H
#define POCHTA_AUTH_HASH_MEMORY_H

/* Around crypt_r() on the calling thread. */
void hash_memory_begin(void);
void hash_memory_end(void);

#endif
