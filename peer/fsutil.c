/* File-system helpers for a peer's storage: blocking calls, with no state of
 * their own, that the storage runs on libuv's thread pool. */
/* renameat2(RENAME_NOREPLACE), fallocate() and O_DIRECT: the final rename
 * must never replace a folder that appeared meanwhile, glibc's
 * posix_fallocate() would emulate preallocation by writing every block
 * where the file system cannot do it, and chunks are written past the page
 * cache. The first two have portable fallbacks below. */
#define _GNU_SOURCE

#include "peer/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"

/* ------------------------------------------------------------------------ */
/* Reading, writing, flushing */

ssize_t fsutil_pread_full(int fd, uint8_t *p, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    if (r == 0) {
      break;
    }
    got += (size_t)r;
  }
  return (ssize_t)got;
}

int fsutil_pwrite_full(int fd, const uint8_t *p, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    done += (size_t)w;
  }
  return 0;
}

int fsutil_fsync(int fd) {
  while (fsync(fd) != 0) {
    if (errno != EINTR) {
      return -errno;
    }
  }
  return 0;
}

int fsutil_fsync_parent(const char *path) {
  char *copy = strdup(path);
  int err;
  int fd;

  if (copy == NULL) {
    return SHOAL_ENOMEM;
  }
  fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(copy);
  if (fd < 0) {
    return -errno;
  }
  err = fsutil_fsync(fd);
  close(fd);
  return err;
}

int fsutil_replace(int fd, const char *tmp, const char *path, const uint8_t *p,
                   size_t n) {
  int err = fsutil_pwrite_full(fd, p, n, 0);
  if (err == 0) {
    err = fsutil_fsync(fd);
  }
  if (close(fd) != 0 && err == 0) {
    err = -errno;
  }
  if (err == 0 && rename(tmp, path) != 0) {
    err = -errno;
  }
  if (err != 0) {
    unlink(tmp);
    return err;
  }
  return fsutil_fsync_parent(path);
}

/* ------------------------------------------------------------------------ */
/* Reading folders */

int fsutil_dir_open(struct fsutil_dir *dir, int fd) {
  int err;

  dir->d = fdopendir(fd);
  if (dir->d == NULL) {
    err = -errno;
    close(fd);
    return err;
  }
  return 0;
}

int fsutil_dir_next(struct fsutil_dir *dir, const char **name) {
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir->d);
    if (e == NULL) {
      *name = NULL;
      return -errno; /* 0 at the end of the folder */
    }
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      *name = e->d_name;
      return 1;
    }
  }
}

int fsutil_dir_fd(const struct fsutil_dir *dir) {
  return dirfd(dir->d);
}

void fsutil_dir_close(struct fsutil_dir *dir) {
  if (dir->d != NULL) {
    closedir(dir->d);
    dir->d = NULL;
  }
}

/* ------------------------------------------------------------------------ */
/* Removing */

static int rmtree_at(int dfd, const char *name, unsigned depth);

/* Removes everything in the folder fd (taken and closed), whose own depth
 * is depth. Never follows a symlink. */
static int empty_dir_fd(int fd, unsigned depth) {
  struct fsutil_dir dir;
  const char *name;
  int err = fsutil_dir_open(&dir, fd);

  if (err != 0) {
    return err;
  }
  while ((err = fsutil_dir_next(&dir, &name)) > 0) {
    err = rmtree_at(fsutil_dir_fd(&dir), name, depth + 1);
    if (err != 0) {
      break;
    }
  }
  fsutil_dir_close(&dir);
  return err;
}

/* Removes name under dfd: a file or symlink is unlinked, a folder emptied
 * first. Never follows a symlink. */
static int rmtree_at(int dfd, const char *name, unsigned depth) {
  struct stat st;
  int err;
  int fd;

  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? 0 : -errno;
  }
  if (!S_ISDIR(st.st_mode)) {
    return unlinkat(dfd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
  }
  if (depth > FSUTIL_MAX_DEPTH) {
    return SHOAL_EPATH;
  }
  fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return -errno;
  }
  err = empty_dir_fd(fd, depth);
  if (err == 0 && unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    err = -errno;
  }
  return err;
}

int fsutil_rmtree_at(int dfd, const char *name) {
  return rmtree_at(dfd, name, 0);
}

int fsutil_empty_dir(int fd) {
  return empty_dir_fd(fd, 0);
}

static int remove_empty_dirs(int dfd, unsigned depth) {
  struct fsutil_dir dir;
  const char *name;
  int empty = 1;

  if (fsutil_dir_open(&dir, dfd) != 0) {
    return 0;
  }
  /* A folder that cannot be read to its end is left as it is found. */
  while (fsutil_dir_next(&dir, &name) > 0) {
    int at = fsutil_dir_fd(&dir);
    struct stat st;
    if (depth < FSUTIL_MAX_DEPTH &&
        fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(st.st_mode)) {
      int fd =
          openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0 && remove_empty_dirs(fd, depth + 1) &&
          unlinkat(at, name, AT_REMOVEDIR) == 0) {
        continue;
      }
    }
    empty = 0;
  }
  fsutil_dir_close(&dir);
  return empty;
}

int fsutil_remove_empty_dirs(int fd) {
  return remove_empty_dirs(fd, 0);
}

void fsutil_unlink_under(int base, const char *rel) {
  char dir[MANIFEST_MAX_PATH + 1];
  const char *slash = strrchr(rel, '/');
  size_t n;
  int fd;

  if (slash == NULL) {
    (void)unlinkat(base, rel, 0);
    return;
  }
  n = (size_t)(slash - rel);
  if (n >= sizeof(dir)) {
    return;
  }
  memcpy(dir, rel, n);
  dir[n] = '\0';
  fd = fsutil_open_under(base, dir, O_RDONLY | O_DIRECTORY, 0, NULL);
  if (fd >= 0) {
    (void)unlinkat(fd, slash + 1, 0);
    close(fd);
  }
}

/* Pruning a folder down to a set of paths. */
struct prune {
  const char **paths; /* relative paths, sorted with strcmp */
  uint32_t n;
  char rel[MANIFEST_MAX_PATH + 2];
};

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first path not below key, in strcmp order. */
static uint32_t lower_bound(const struct prune *p, const char *key) {
  uint32_t lo = 0;
  uint32_t hi = p->n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (strcmp(p->paths[mid], key) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/* Removes from the folder dfd (taken; its path is p->rel[0..len)) every
 * entry that is neither one of the paths (a regular file) nor a folder on
 * the way to one. */
static int prune_dir(struct prune *p, int dfd, size_t len) {
  struct fsutil_dir dir;
  const char *name;
  int err = fsutil_dir_open(&dir, dfd);

  if (err != 0) {
    return err;
  }
  while ((err = fsutil_dir_next(&dir, &name)) > 0) {
    int at = fsutil_dir_fd(&dir);
    struct stat st;
    int keep = 0;
    size_t n = strlen(name);
    size_t sub = len + (len > 0) + n;
    err = 0;
    if (sub + 1 < sizeof(p->rel) &&
        fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (len > 0) {
        p->rel[len] = '/';
      }
      memcpy(p->rel + len + (len > 0), name, n + 1);
      uint32_t i = lower_bound(p, p->rel);
      if (S_ISREG(st.st_mode)) {
        keep = i < p->n && strcmp(p->paths[i], p->rel) == 0;
      } else if (S_ISDIR(st.st_mode)) {
        p->rel[sub] = '/';
        p->rel[sub + 1] = '\0';
        i = lower_bound(p, p->rel);
        keep = i < p->n && strncmp(p->paths[i], p->rel, sub + 1) == 0;
        p->rel[sub] = '\0';
        if (keep) {
          int fd =
              openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          err = fd < 0 ? -errno : prune_dir(p, fd, sub);
        }
      }
      p->rel[len] = '\0';
    }
    if (err == 0 && !keep) {
      err = fsutil_rmtree_at(at, name);
    }
    if (err != 0) {
      break;
    }
  }
  fsutil_dir_close(&dir);
  return err;
}

int fsutil_prune(int fd, const char **paths, uint32_t n) {
  struct prune *p = malloc(sizeof(*p));
  int err;
  int dup;

  if (p == NULL) {
    return SHOAL_ENOMEM;
  }
  qsort(paths, n, sizeof(*paths), cmp_str);
  p->paths = paths;
  p->n = n;
  p->rel[0] = '\0';
  /* fdopendir takes the descriptor it is given: hand it a second one. */
  dup = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  err = dup < 0 ? -errno : prune_dir(p, dup, 0);
  free(p);
  return err;
}

/* ------------------------------------------------------------------------ */
/* Opening and making, one segment at a time */

/* Copies the segment of p up to the next '/' (or its end) into seg and
 * sets *slash to that '/' or NULL. Decoded manifests never hold an empty,
 * "." or ".." segment, nor one longer than MANIFEST_MAX_SEGMENT; refusing
 * them here (SHOAL_EPATH) keeps a path from leaving its folder even if
 * that changed. */
static int next_segment(const char *p, char seg[MANIFEST_MAX_SEGMENT + 1],
                        const char **slash) {
  *slash = strchr(p, '/');
  size_t n = *slash != NULL ? (size_t)(*slash - p) : strlen(p);
  if (n == 0 || n > MANIFEST_MAX_SEGMENT || (n == 1 && p[0] == '.') ||
      (n == 2 && p[0] == '.' && p[1] == '.')) {
    return SHOAL_EPATH;
  }
  memcpy(seg, p, n);
  seg[n] = '\0';
  return 0;
}

/* Opens the folder name under dfd without following a symlink. With create,
 * a missing folder is made and anything else in its place removed. */
static int open_dir_at(int dfd, const char *name, int create) {
  const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  int fd = openat(dfd, name, flags);
  int err;

  if (fd >= 0) {
    return fd;
  }
  if (!create) {
    return -errno;
  }
  if (errno == ENOTDIR || errno == ELOOP) {
    err = fsutil_rmtree_at(dfd, name);
    if (err != 0) {
      return err;
    }
  } else if (errno != ENOENT) {
    return -errno;
  }
  if (mkdirat(dfd, name, FSUTIL_FOLDER_MODE) != 0 && errno != EEXIST) {
    return -errno;
  }
  fd = openat(dfd, name, flags);
  return fd < 0 ? -errno : fd;
}

/* Opens (creating it) the regular file name under dfd for reading and
 * writing. A symlink, folder, fifo or socket in its place is removed first.
 * O_NONBLOCK keeps a planted fifo from hanging the worker. */
static int create_file_at(int dfd, const char *name) {
  const int flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  struct stat st;
  int err = SHOAL_EPATH;

  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = openat(dfd, name, flags, FSUTIL_FILE_MODE);
    if (fd >= 0) {
      if (fstat(fd, &st) != 0) {
        err = -errno;
        close(fd);
        return err;
      }
      if (S_ISREG(st.st_mode)) {
        return fd;
      }
      close(fd);
      err = SHOAL_EPATH;
    } else if (errno == ELOOP || errno == EISDIR || errno == ENXIO ||
               errno == EOPNOTSUPP) {
      err = -errno;
    } else {
      return -errno;
    }
    if (attempt == 0) {
      int rm = fsutil_rmtree_at(dfd, name);
      if (rm != 0) {
        return rm;
      }
    }
  }
  return err;
}

int fsutil_open_under(int base, const char *rel, int flags, int create,
                      int *parent) {
  char seg[MANIFEST_MAX_SEGMENT + 1];
  const char *p = rel;
  int cur = base;
  int fd;

  if (parent != NULL) {
    *parent = -1;
  }
  for (;;) {
    const char *slash;
    fd = next_segment(p, seg, &slash);
    if (fd != 0) {
      break;
    }
    if (slash == NULL) {
      if (create) {
        fd = create_file_at(cur, seg);
      } else {
        fd = openat(cur, seg, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
          fd = -errno;
        }
      }
      break;
    }
    int next = open_dir_at(cur, seg, create);
    if (cur != base) {
      close(cur);
    }
    cur = base;
    if (next < 0) {
      fd = next;
      break;
    }
    cur = next;
    p = slash + 1;
  }
  if (cur != base) {
    if (parent != NULL && fd >= 0) {
      *parent = cur;
    } else {
      close(cur);
    }
  }
  return fd;
}

int fsutil_make_dirs(int base, const char *rel) {
  char seg[MANIFEST_MAX_SEGMENT + 1];
  const char *p = rel;
  int cur = base;
  int err = 0;

  while (err == 0) {
    const char *slash;
    err = next_segment(p, seg, &slash);
    if (err != 0) {
      break;
    }
    int created = mkdirat(cur, seg, FSUTIL_FOLDER_MODE) == 0;
    if (!created && errno != EEXIST) {
      err = -errno;
      break;
    }
    if (created) {
      err = fsutil_fsync(cur);
    }
    int next =
        openat(cur, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      err = err != 0 ? err : -errno;
      break;
    }
    if (cur != base) {
      close(cur);
    }
    cur = next;
    if (err != 0 || slash == NULL) {
      break;
    }
    p = slash + 1;
  }
  if (cur != base) {
    close(cur);
  }
  return err;
}

int fsutil_open_direct(int dfd, const char *name, int fd) {
  struct stat a;
  struct stat b;
  int d = openat(dfd, name,
                 O_WRONLY | O_DIRECT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (d < 0) {
    return -1;
  }
  if (fstat(d, &a) != 0 || fstat(fd, &b) != 0 || a.st_dev != b.st_dev ||
      a.st_ino != b.st_ino) {
    close(d);
    return -1;
  }
  return d;
}

/* ------------------------------------------------------------------------ */
/* Sizing and renaming */

int fsutil_preallocate(int fd, uint64_t size) {
  struct stat st;

  if (fstat(fd, &st) != 0) {
    return -errno;
  }
  if ((uint64_t)st.st_size > size && ftruncate(fd, (off_t)size) != 0) {
    return -errno;
  }
  if (size == 0) {
    return 0;
  }
#ifdef FALLOC_FL_KEEP_SIZE
  /* Linux: fails rather than writing zeros where it is not supported. */
  if (fallocate(fd, 0, 0, (off_t)size) == 0) {
    return 0;
  }
  if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) {
    return -errno;
  }
#else
  int r = posix_fallocate(fd, 0, (off_t)size);
  if (r == 0) {
    return 0;
  }
  if (r != EOPNOTSUPP && r != ENOSYS && r != EINVAL) {
    return -r;
  }
#endif
  if ((uint64_t)st.st_size != size && ftruncate(fd, (off_t)size) != 0) {
    return -errno;
  }
  return 0;
}

int fsutil_rename_noreplace(int dfd, const char *from, const char *to) {
  struct stat st;
#ifdef RENAME_NOREPLACE
  if (renameat2(dfd, from, dfd, to, RENAME_NOREPLACE) == 0) {
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
    return -errno;
  }
#endif
  /* No atomic form here: check, then rename (a folder could still slip in
   * between, but rename() refuses a non-empty target folder). */
  if (fstatat(dfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return UV_EEXIST;
  }
  if (errno != ENOENT) {
    return -errno;
  }
  return renameat(dfd, from, dfd, to) == 0 ? 0 : -errno;
}

/* ------------------------------------------------------------------------ */
/* Free space */

uint64_t fsutil_add_sat(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t fsutil_whole_blocks(uint64_t size, uint64_t bs) {
  return fsutil_add_sat(size / bs * bs, size % bs != 0 ? bs : 0);
}

uint64_t fsutil_avail_bytes(const struct statvfs *v) {
  const uint64_t bs = v->f_frsize;
  return v->f_bavail > UINT64_MAX / bs ? UINT64_MAX
                                       : (uint64_t)v->f_bavail * bs;
}

/* ------------------------------------------------------------------------ */
/* Comparing and asking the kernel */

int fsutil_stat_matches(const struct stat *st, const struct manifest_file *f) {
  return S_ISREG(st->st_mode) && (uint64_t)st->st_size == f->size &&
         st->st_mtim.tv_sec == f->mtime_sec &&
         st->st_mtim.tv_nsec == f->mtime_nsec;
}

int fsutil_umask(void) {
  char line[128];
  int mask = -1;
  FILE *f = fopen("/proc/self/status", "re");

  if (f == NULL) {
    return -1;
  }
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "Umask:", 6) == 0) {
      char *end;
      errno = 0;
      unsigned long v = strtoul(line + 6, &end, 8);
      if (errno == 0 && end != line + 6 && v <= 0777) {
        mask = (int)v;
      }
      break;
    }
  }
  fclose(f);
  return mask;
}

/* The next space-separated field at *p and its length; *p moves past it. */
static const char *next_field(const char **p, size_t *len) {
  const char *q = *p;
  const char *start;

  while (*q == ' ') {
    q++;
  }
  start = q;
  while (*q != '\0' && *q != ' ' && *q != '\n') {
    q++;
  }
  *len = (size_t)(q - start);
  *p = q;
  return start;
}

/* The lines of /proc/locks read "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678
 * 0 EOF": the holder's pid, then the device's major and minor in hex and
 * the inode in decimal (a waiter's line has "->" before the type). */
long fsutil_flock_holder(const struct stat *st) {
  char line[256];
  long pid = -1;
  FILE *fp = fopen("/proc/locks", "re");

  if (fp == NULL) {
    return -1;
  }
  while (pid < 0 && fgets(line, sizeof(line), fp) != NULL) {
    const char *p = line;
    const char *f;
    char *end;
    size_t n;

    (void)next_field(&p, &n); /* the lock's number */
    f = next_field(&p, &n);
    if (n != 5 || memcmp(f, "FLOCK", 5) != 0) {
      continue;
    }
    (void)next_field(&p, &n); /* ADVISORY */
    (void)next_field(&p, &n); /* WRITE */
    f = next_field(&p, &n);
    errno = 0;
    long who = strtol(f, &end, 10);
    if (errno != 0 || end != f + n || who <= 0) {
      continue;
    }
    f = next_field(&p, &n);
    unsigned long maj = strtoul(f, &end, 16);
    if (*end != ':') {
      continue;
    }
    unsigned long min = strtoul(end + 1, &end, 16);
    if (*end != ':') {
      continue;
    }
    unsigned long long ino = strtoull(end + 1, &end, 10);
    if (end == f + n && maj == major(st->st_dev) && min == minor(st->st_dev) &&
        ino == (unsigned long long)st->st_ino) {
      pid = who;
    }
  }
  fclose(fp);
  return pid;
}
