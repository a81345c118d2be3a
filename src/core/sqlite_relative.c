#include "core/sqlite_relative.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

#define VFS_NAME "pochta-relative"

static sqlite3_vfs relative_vfs;
static sqlite3_vfs *base_vfs;
static const char *registered;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int full_pathname(sqlite3_vfs *vfs, const char *name, int nout, char *out)
{
    if (name[0] == '/') return base_vfs->xFullPathname(base_vfs, name, nout, out);
    size_t n = strlen(name);
    if (nout < 0 || n + 1 > (size_t)nout) return SQLITE_CANTOPEN;
    memcpy(out, name, n + 1);
    return SQLITE_OK;
}

static void do_register(void)
{
    /* Before SQLite initialises (sqlite3_vfs_find does that): its memory
     * statistics take one process-wide mutex around every allocation,
     * which all store threads then queue on; pochta never reads them. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    base_vfs = sqlite3_vfs_find(NULL);
    if (!base_vfs) return;
    /* Same methods and app data as the default VFS: only the path
     * canonicalisation differs. */
    relative_vfs = *base_vfs;
    relative_vfs.pNext = NULL;
    relative_vfs.zName = VFS_NAME;
    relative_vfs.xFullPathname = full_pathname;
    if (sqlite3_vfs_register(&relative_vfs, 0) == SQLITE_OK) registered = VFS_NAME;
}

const char *sqlite_relative_vfs(void)
{
    pthread_once(&once, do_register);
    return registered;
}
