/* The folders a shoal-peer run keeps its state in and writes to.
 *
 * The home holds the peer's identity key, resume/ and manifests/. It is
 * --home, else $XDG_DATA_HOME/shoal, else $HOME/.local/share/shoal, else
 * ./.shoal; it is made (mode 0700) when missing. A run that shares or gets
 * locks it (the file "lock", holding its pid as a hint), because the
 * identity's sequence numbers must only grow: two processes with one key
 * would replay each other's. The output folder of a get is made here too.
 *
 * Each function that fails writes one line for people into msg (cap
 * bytes; HOME_MSG_BYTES always suffice), naming the cause and what to do.
 */
#ifndef SHOAL_PEER_HOME_H
#define SHOAL_PEER_HOME_H

#include <stddef.h>
#include <sys/types.h>

#include "common/identity.h"

/* A home path and its NUL. */
#define HOME_PATH_BYTES 4096
/* Room for any message below: two paths and their words. */
#define HOME_MSG_BYTES 8704

struct home {
  char path[HOME_PATH_BYTES];
  int locked; /* lock_fd is open and holds the lock */
  int lock_fd;
};

/* Opens the home at dir (NULL: the default above), with the lock when
 * lock is set, and loads the identity kept there into *id, creating one
 * the first time. Returns 0, or an error with msg written and nothing held
 * (h closed, *id wiped): SHOAL_EINVAL (no default home can be found), a
 * negative errno (the folders cannot be made), UV_EBUSY (another process
 * holds the lock), SHOAL_EKEYPERM (a key that others can read) or
 * identity_load_or_create's errors. dir is copied. */
int home_open(struct home *h, const char *dir, int lock, struct identity *id,
              char *msg, size_t cap);
/* Releases the lock. A zeroed struct home, or one closed before, may be
 * closed; the identity is the caller's to wipe (identity_close). */
void home_close(struct home *h);

/* The default home into out (cap bytes). Returns 0, or -1 when the path
 * does not fit. */
int home_default(char *out, size_t cap);

/* mkdir -p: path and its missing parents, each with mode (less the
 * umask). Returns 0 or a negative errno. */
int home_make_dirs(const char *path, mode_t mode);

/* Makes the -o folder of a get with its missing parents (mode 0755 less
 * the umask, as mkdir -p and aria2c -d do). Something there that is not a
 * folder is an error. Returns 0, UV_ENOTDIR or a negative errno, with msg
 * written. */
int home_out_dir(const char *dir, char *msg, size_t cap);

#endif
