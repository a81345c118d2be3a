/* Switching from root to the unprivileged run_as user.
 *
 * Both pochtad (after binding ports and reading the TLS key) and the pochta
 * command (before touching the data directory) call privdrop_enter_data():
 * it chdir()s into the data directory first, and from then on every path
 * into the data is relative.  So the unprivileged user only needs rights on
 * the data directory itself, not on its parents (which may be a 0700 temp
 * directory owned by root). */
#ifndef POCHTA_CORE_PRIVDROP_H
#define POCHTA_CORE_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

/* chdir(data_dir); then, if running as root, switch to `user` (setgroups,
 * setgid, setuid, and a check that root cannot be regained).  When not
 * root, only the chdir happens.  Return 0, or -1 with a message in err. */
int privdrop_enter_data(const char *data_dir, const char *user, char *err, size_t errlen);

/* Look up `user`: 0 with uid/gid, or -1 if there is no such user. */
int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid);

#endif
