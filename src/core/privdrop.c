#include "core/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwnam_r(user, &pw, buf, sizeof buf, &res) != 0 || !res) return -1;
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

int privdrop_enter_data(const char *data_dir, const char *user, char *err, size_t errlen)
{
    if (chdir(data_dir) < 0) {
        snprintf(err, errlen, "data directory %s: %s", data_dir, strerror(errno));
        return -1;
    }
    if (geteuid() != 0) return 0;

    uid_t uid;
    gid_t gid;
    if (!user || !*user || privdrop_lookup(user, &uid, &gid) < 0) {
        snprintf(err, errlen, "run_as user '%s' does not exist (create it with "
                 "'useradd --system --user-group --no-create-home pochta', or run "
                 "'pochta init' as root, which does)", user ? user : "");
        return -1;
    }
    if (uid == 0) {
        snprintf(err, errlen, "run_as user '%s' is root; protocol code never runs as root", user);
        return -1;
    }
    if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
        snprintf(err, errlen, "switching to user '%s': %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        snprintf(err, errlen, "could still regain root after switching to '%s'", user);
        return -1;
    }
    return 0;
}
