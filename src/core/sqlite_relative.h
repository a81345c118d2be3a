/* A SQLite VFS that keeps relative database names relative.
 *
 * SQLite's unix VFS turns "accounts.db" into getcwd() + "/accounts.db" and
 * opens that, which needs search permission on every parent directory.
 * After privdrop_enter_data() the unprivileged user has rights on the data
 * directory only (its parents may be a root-owned 0700 directory), so the
 * absolute path fails with "unable to open database file".  This VFS is the
 * default one with xFullPathname returning relative names unchanged; that
 * is sound because pochta never changes directory after entering the data
 * directory.
 *
 * Usage: sqlite3_open_v2(path, &db, flags, sqlite_relative_vfs()).
 * Thread-safe; registers itself once. */
#ifndef POCHTA_AUTH_SQLITE_RELATIVE_H
#define POCHTA_AUTH_SQLITE_RELATIVE_H

/* The VFS name to pass to sqlite3_open_v2(), or NULL (= SQLite's default)
 * if it could not be registered. */
const char *sqlite_relative_vfs(void);

#endif
