/* Finds, makes and locks the home folder of a run and loads the identity in
 * it; makes the output folder of a get. */
#include "peer/home.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/log.h"

int home_make_dirs(const char *path, mode_t mode) {
  char tmp[HOME_PATH_BYTES];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof(tmp)) {
    return -ENAMETOOLONG;
  }
  memcpy(tmp, path, len + 1);
  for (char *p = tmp + 1; *p != '\0'; p++) {
    if (*p == '/') {
      *p = '\0';
      if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
        return -errno;
      }
      *p = '/';
    }
  }
  if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
    return -errno;
  }
  return 0;
}

int home_default(char *out, size_t cap) {
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  int n;
  if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(out, cap, "%s/shoal", xdg);
  } else if (home != NULL && home[0] == '/') {
    n = snprintf(out, cap, "%s/.local/share/shoal", home);
  } else {
    n = snprintf(out, cap, "./.shoal");
  }
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* The home and the two folders in it. */
static int make_home(const struct home *h, char *msg, size_t cap) {
  static const char *const subs[] = {"resume", "manifests"};
  char sub[HOME_PATH_BYTES + 16];
  int err = home_make_dirs(h->path, 0700);
  for (size_t i = 0; err == 0 && i < sizeof(subs) / sizeof(subs[0]); i++) {
    snprintf(sub, sizeof(sub), "%s/%s", h->path, subs[i]);
    err = home_make_dirs(sub, 0700);
  }
  if (err != 0) {
    snprintf(msg, cap, "cannot create %s: %.200s — choose another --home",
             h->path, shoal_strerror(err));
  }
  return err;
}

/* One process per home: the identity's sequence numbers must only grow.
 * The lock is fcntl's, so that it goes with the process however it ends;
 * the pid written into the file only names the holder in the message. */
static int lock_home(struct home *h, char *msg, size_t cap) {
  char path[HOME_PATH_BYTES + 16];
  struct flock fl;
  char pid[32];
  int fd;
  snprintf(path, sizeof(path), "%s/lock", h->path);
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = -errno;
    snprintf(msg, cap, "cannot open %s: %s", path, shoal_strerror(err));
    return err;
  }
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    ssize_t n = read(fd, pid, sizeof(pid) - 1);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    snprintf(msg, cap,
             "another shoal-peer (pid %s) uses %s — give this one its own "
             "--home DIR",
             pid[0] ? pid : "?", h->path);
    close(fd);
    return UV_EBUSY;
  }
  if (ftruncate(fd, 0) == 0) {
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (write(fd, pid, (size_t)n) != n) {
      /* The pid is only a hint for the message above. */
    }
  }
  h->lock_fd = fd;
  h->locked = 1;
  return 0;
}

static int load_identity(const struct home *h, struct identity *id, char *msg,
                         size_t cap) {
  char path[HOME_PATH_BYTES + 16];
  int created = 0;
  int err;
  snprintf(path, sizeof(path), "%s/identity.key", h->path);
  err = identity_load_or_create(id, path, &created);
  if (err == SHOAL_EKEYPERM) {
    snprintf(msg, cap, "%s can be read by other users — run 'chmod 600 %s'",
             path, path);
    return err;
  }
  if (err != 0) {
    snprintf(msg, cap, "cannot load %s: %s", path, shoal_strerror(err));
    return err;
  }
  if (created) {
    log_info("peer", "created a new identity in %s", path);
  }
  return 0;
}

int home_open(struct home *h, const char *dir, int lock, struct identity *id,
              char *msg, size_t cap) {
  int err;
  memset(h, 0, sizeof(*h));
  h->lock_fd = -1;
  if (dir != NULL) {
    assert(strlen(dir) < sizeof(h->path));
    snprintf(h->path, sizeof(h->path), "%s", dir);
  } else if (home_default(h->path, sizeof(h->path)) != 0) {
    snprintf(msg, cap, "cannot find a home folder; give --home DIR");
    err = SHOAL_EINVAL;
    goto fail;
  }
  err = make_home(h, msg, cap);
  if (err != 0) {
    goto fail;
  }
  if (lock) {
    err = lock_home(h, msg, cap);
    if (err != 0) {
      goto fail;
    }
  }
  err = load_identity(h, id, msg, cap);
  if (err != 0) {
    goto fail;
  }
  return 0;

fail:
  identity_close(id);
  home_close(h);
  return err;
}

void home_close(struct home *h) {
  if (h->locked) {
    close(h->lock_fd);
    h->locked = 0;
    h->lock_fd = -1;
  }
}

int home_out_dir(const char *dir, char *msg, size_t cap) {
  struct stat st;
  int err = home_make_dirs(dir, 0755);
  if (err == 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
    err = UV_ENOTDIR;
  }
  if (err == UV_ENOTDIR) {
    snprintf(msg, cap, "%s is not a folder — choose another -o DIR", dir);
  } else if (err != 0) {
    snprintf(msg, cap, "cannot create %s: %s — choose another -o DIR", dir,
             shoal_strerror(err));
  }
  return err;
}
