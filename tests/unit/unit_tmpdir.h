/* Temporary directories for unit tests that touch the file system (store,
 * queue, accounts).  Header-only: each test program is one file.
 *
 * unit_tmpdir_enter()/leave(): a fresh directory to chdir() into and out
 * of, the way the daemon works inside data_dir.  unit_tmpdir_make()/
 * remove(): a directory by path, for fixtures that do not chdir. */
#ifndef POCHTA_TESTS_UNIT_TMPDIR_H
#define POCHTA_TESTS_UNIT_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int unit_tmpdir_rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

/* Create /tmp/pochta-<what>-XXXXXX into buf.  0 or -1. */
static inline int unit_tmpdir_make(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "/tmp/pochta-%s-XXXXXX", what);
    return mkdtemp(buf) ? 0 : -1;
}

/* Remove dir and everything below it.  0 or -1. */
static inline int unit_tmpdir_remove(const char *dir)
{
    return nftw(dir, unit_tmpdir_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char unit_tmpdir_saved_cwd[4096];
static char unit_tmpdir_path[256];

/* mkdtemp + chdir into it.  0 or -1. */
static inline int unit_tmpdir_enter(const char *what)
{
    if (!getcwd(unit_tmpdir_saved_cwd, sizeof unit_tmpdir_saved_cwd)) return -1;
    if (unit_tmpdir_make(unit_tmpdir_path, sizeof unit_tmpdir_path, what) < 0) return -1;
    return chdir(unit_tmpdir_path);
}

/* chdir back and remove the directory.  0 or -1. */
static inline int unit_tmpdir_leave(void)
{
    if (chdir(unit_tmpdir_saved_cwd) < 0) return -1;
    return unit_tmpdir_remove(unit_tmpdir_path);
}

#endif
