/* A download's partial copy on disk: the blocking steps that make, lock,
 * size and give it back, write chunks into it, and flush and rename it
 * into place, for libuv's thread pool. */
/* O_DIRECT: verified chunks are written past the page cache (see
 * partcopy_write). */
#define _GNU_SOURCE

#include "peer/partcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/error.h"
#include "peer/fmt.h"
#include "peer/fsutil.h"
#include "peer/resume.h"
#include "peer/storage.h"

/* Rounds at taking the lock on the partial copy: each retry means that
 * another download replaced it between our open and our lock. */
#define PART_LOCK_TRIES 8
/* The most of a lock holder's command line that its description shows,
 * of each of its arguments, and of /proc/PID/cmdline that is read: enough
 * to tell two downloads apart by their folders and homes. */
#define HOLDER_CMDLINE_BYTES 320
#define HOLDER_ARG_BYTES 40
#define HOLDER_CMDLINE_RAW 4096
/* Marks a file in partcopy_open.old_size that this open created. */
#define SIZE_CREATED UINT64_MAX

/* ------------------------------------------------------------------------ */
/* Layout and names */

int partcopy_check_layout(const struct manifest *m) {
  size_t nl = strlen(m->name);

  if (manifest_check_path(m->name, nl) != 0 || memchr(m->name, '/', nl)) {
    return SHOAL_EPATH;
  }
  if (m->kind == MANIFEST_KIND_FILE) {
    if (m->file_count != 1 || strcmp(m->files[0].path, m->name) != 0) {
      return SHOAL_EPATH;
    }
  } else if (m->kind == MANIFEST_KIND_FOLDER) {
    for (uint32_t i = 0; i < m->file_count; i++) {
      const char *p = m->files[i].path;
      size_t n = strlen(p);
      if (n <= nl + 1 || memcmp(p, m->name, nl) != 0 || p[nl] != '/' ||
          manifest_check_path(p, n) != 0) {
        return SHOAL_EPATH;
      }
    }
  } else {
    return SHOAL_EINVAL;
  }
  return 0;
}

int partcopy_init(struct partcopy *pc, const struct manifest *m,
                  const char *dir) {
  size_t dl = strlen(dir);

  pc->m = m;
  pc->name_len = strlen(m->name);
  pc->dir_fd = -1;
  pc->root_fd = -1;
  pc->direct_fd = -1;
  pc->dir = strdup(dir);
  pc->final_path = malloc(dl + 1 + pc->name_len + 1);
  pc->part_name = malloc(pc->name_len + sizeof(STORAGE_PART_SUFFIX));
  if (pc->dir == NULL || pc->final_path == NULL || pc->part_name == NULL) {
    return SHOAL_ENOMEM;
  }
  memcpy(pc->final_path, dir, dl);
  pc->final_path[dl] = '/';
  memcpy(pc->final_path + dl + 1, m->name, pc->name_len + 1);
  memcpy(pc->part_name, m->name, pc->name_len);
  memcpy(pc->part_name + pc->name_len, STORAGE_PART_SUFFIX,
         sizeof(STORAGE_PART_SUFFIX));
  return 0;
}

void partcopy_close(struct partcopy *pc) {
  free(pc->dir);
  free(pc->final_path);
  free(pc->part_name);
  pc->dir = NULL;
  pc->final_path = NULL;
  pc->part_name = NULL;
}

/* ------------------------------------------------------------------------ */
/* Files of the partial copy */

const char *partcopy_rel(const struct partcopy *pc, uint32_t i) {
  return pc->m->files[i].path + pc->name_len + 1;
}

int partcopy_file_open(const struct partcopy *pc, uint32_t i, int flags) {
  if (pc->m->kind == MANIFEST_KIND_FILE) {
    return pc->root_fd;
  }
  return fsutil_open_under(pc->root_fd, partcopy_rel(pc, i), flags, 0, NULL);
}

void partcopy_file_release(const struct partcopy *pc, int fd) {
  if (fd >= 0 && fd != pc->root_fd) {
    close(fd);
  }
}

/* Chunk writes and the page cache. A verified chunk is written with
 * O_DIRECT where the file system takes it: the bytes go from the chunk's
 * buffer to the disk without a copy into the page cache, which would cost
 * a downloader as much CPU as hashing them, and a large download does not
 * push everything else out of memory. Only the aligned part of a chunk
 * (buffer, offset and length multiples of STORAGE_DIRECT_ALIGN) goes this
 * way; the tail of a file's last chunk, unaligned buffers, and file systems
 * that refuse O_DIRECT (EINVAL) use the ordinary descriptor. Reads stay
 * buffered: the kernel keeps the two views coherent. */

static int direct_acquire(const struct partcopy *pc, uint32_t i) {
  if (pc->m->kind == MANIFEST_KIND_FILE) {
    return pc->direct_fd;
  }
  int fd = fsutil_open_under(pc->root_fd, partcopy_rel(pc, i),
                             O_WRONLY | O_DIRECT, 0, NULL);
  return fd >= 0 ? fd : -1;
}

static void direct_release(const struct partcopy *pc, int fd) {
  if (fd >= 0 && fd != pc->direct_fd) {
    close(fd);
  }
}

int partcopy_write(const struct partcopy *pc, uint32_t i, const uint8_t *p,
                   size_t n, uint64_t off) {
  size_t head = 0;
  int err;
  int fd;

  if ((uintptr_t)p % STORAGE_DIRECT_ALIGN == 0 &&
      off % STORAGE_DIRECT_ALIGN == 0) {
    head = n - n % STORAGE_DIRECT_ALIGN;
  }
  if (head > 0 && (fd = direct_acquire(pc, i)) >= 0) {
    err = fsutil_pwrite_full(fd, p, head, off);
    direct_release(pc, fd);
    if (err == 0) {
      p += head;
      n -= head;
      off += head;
    } else if (err != -EINVAL) {
      return err;
    }
  }
  if (n == 0) {
    return 0;
  }
  fd = partcopy_file_open(pc, i, O_WRONLY);
  if (fd < 0) {
    return fd;
  }
  err = fsutil_pwrite_full(fd, p, n, off);
  partcopy_file_release(pc, fd);
  return err;
}

/* Prunes a resumed partial folder down to exactly the manifest's paths,
 * so that nothing else is renamed into place at the end. */
static int prune_part(const struct partcopy *pc, int root_fd) {
  const uint32_t n = pc->m->file_count;
  const char **paths = malloc((n > 0 ? n : 1) * sizeof(*paths));
  int err;

  if (paths == NULL) {
    return SHOAL_ENOMEM;
  }
  for (uint32_t i = 0; i < n; i++) {
    paths[i] = partcopy_rel(pc, i);
  }
  err = fsutil_prune(root_fd, paths, n);
  free(paths);
  return err;
}

/* ------------------------------------------------------------------------ */
/* The partial copy's lock
 *
 * A download holds flock(LOCK_EX) on its partial file or folder from the
 * open until the storage is closed; the locked descriptor is the one the
 * storage keeps for the partial copy (root_fd). A flock() lock belongs to
 * an open file description, not to a process: a second open of the same
 * partial copy conflicts even in the same process, closing another
 * descriptor of the file (the O_DIRECT one, a re-hash's) does not release
 * it, the final rename keeps it, and the kernel drops it when the process
 * dies, even by SIGKILL, so a resume never finds a stale lock. */

/* Writes the command line of process pid into out as one line of text:
 * the program's base name, then its arguments, each cut to its first
 * HOLDER_ARG_BYTES bytes (a share link would hide the rest), control bytes
 * shown as '?'; "..." ends a line cut at cap. Empty when it cannot be
 * read. */
static void holder_cmdline(long pid, char *out, size_t cap) {
  char path[64];
  char raw[HOLDER_CMDLINE_RAW];
  size_t o = 0;
  ssize_t n;
  int fd;

  out[0] = '\0';
  snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  n = read(fd, raw, sizeof(raw) - 1);
  close(fd);
  if (n <= 0) {
    return;
  }
  raw[n] = '\0';
  for (const char *a = raw; a < raw + n; a += strlen(a) + 1) {
    const char *slash = a == raw ? strrchr(a, '/') : NULL;
    const char *from = slash != NULL ? slash + 1 : a;
    size_t len = strlen(from);
    size_t keep = len > HOLDER_ARG_BYTES ? HOLDER_ARG_BYTES : len;
    /* Room for a space, the argument and its "...", and still for the
     * "..." and NUL that end a line cut after it. */
    if (o + 1 + keep + 3 + 4 > cap) {
      memcpy(out + o, "...", 4);
      return;
    }
    if (o > 0) {
      out[o++] = ' ';
    }
    for (size_t i = 0; i < keep; i++) {
      unsigned char c = (unsigned char)from[i];
      out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (keep < len) {
      memcpy(out + o, "...", 3);
      o += 3;
    }
    out[o] = '\0';
  }
}

/* Fills why with who holds the partial copy st: its pid and command line,
 * so the user can tell which download it is. */
static void describe_holder(const struct partcopy *pc, const struct stat *st,
                            char *why, size_t cap) {
  char cmd[HOLDER_CMDLINE_BYTES];
  long pid = fsutil_flock_holder(st);

  if (pid < 0) {
    snprintf(why, cap,
             "%s%s is in use by another download (its process is not "
             "listed in /proc/locks)",
             pc->final_path, STORAGE_PART_SUFFIX);
    return;
  }
  holder_cmdline(pid, cmd, sizeof(cmd));
  snprintf(why, cap, "%s%s is in use by another download: process %ld%s%s%s",
           pc->final_path, STORAGE_PART_SUFFIX, pid, cmd[0] ? " (" : "", cmd,
           cmd[0] ? ")" : "");
}

/* Locks fd without waiting: 0, UV_EBUSY (why names the holder of st), or
 * another error. */
static int lock_fd(const struct partcopy *pc, int fd, const struct stat *st,
                   char *why, size_t cap) {
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    return 0;
  }
  if (errno != EWOULDBLOCK) {
    return -errno;
  }
  describe_holder(pc, st, why, cap);
  return UV_EBUSY;
}

/* Whether the partial copy's name still leads to the file st. */
static int part_is(const struct partcopy *pc, int dir_fd,
                   const struct stat *st) {
  struct stat at;
  return fstatat(dir_fd, pc->part_name, &at, AT_SYMLINK_NOFOLLOW) == 0 &&
         at.st_dev == st->st_dev && at.st_ino == st->st_ino;
}

/* Removes what is at the partial copy's name when it is of the wrong kind
 * for this content (a symlink, fifo or socket, a folder where the file
 * belongs, a file where the folder belongs): it cannot be resumed. A file
 * or folder may be the partial copy of another content of the same name,
 * which another download holds: that one is left alone (UV_EBUSY). */
static int part_remove_other(const struct partcopy *pc,
                             struct partcopy_open *o) {
  struct stat st;
  int err;
  int fd = openat(o->dir_fd, pc->part_name,
                  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

  if (fd < 0) {
    if (errno == ENOENT) {
      return 0;
    }
    /* A symlink (ELOOP) or a socket (ENXIO): nobody's partial copy. */
    if (errno != ELOOP && errno != ENXIO) {
      return -errno;
    }
    return fsutil_rmtree_at(o->dir_fd, pc->part_name);
  }
  if (fstat(fd, &st) != 0) {
    err = -errno;
  } else {
    err = lock_fd(pc, fd, &st, o->why, sizeof(o->why));
  }
  if (err == 0 && part_is(pc, o->dir_fd, &st)) {
    err = fsutil_rmtree_at(o->dir_fd, pc->part_name);
  }
  close(fd);
  return err;
}

/* Opens the partial copy, making an empty one when there is none, and
 * locks it; o->root_fd then holds the lock, and o->created tells whether
 * this open made it. Fails with UV_EBUSY (o->why names the holder) when
 * another download holds it. */
static int part_lock(const struct partcopy *pc, struct partcopy_open *o) {
  const int folder = pc->m->kind == MANIFEST_KIND_FOLDER;
  const int flags = (folder ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_NOFOLLOW |
                    O_NONBLOCK | O_CLOEXEC;
  struct stat made;
  struct stat st;
  int have_made = 0;
  int err;

  for (int round = 0; round < PART_LOCK_TRIES; round++) {
    int fd = openat(o->dir_fd, pc->part_name, flags);
    if (fd < 0 && errno == ENOENT) {
      /* Made empty here; the next round opens and locks it, unless
       * another download is quicker: then its lock decides. */
      if (folder) {
        if (mkdirat(o->dir_fd, pc->part_name, FSUTIL_FOLDER_MODE) == 0) {
          have_made = fstatat(o->dir_fd, pc->part_name, &made,
                              AT_SYMLINK_NOFOLLOW) == 0;
        } else if (errno != EEXIST) {
          return -errno;
        }
      } else {
        fd = openat(o->dir_fd, pc->part_name,
                    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    FSUTIL_FILE_MODE);
        if (fd >= 0) {
          have_made = fstat(fd, &made) == 0;
          close(fd);
        } else if (errno != EEXIST) {
          return -errno;
        }
      }
      continue;
    }
    if (fd < 0) {
      if (errno != ELOOP && errno != EISDIR && errno != ENOTDIR &&
          errno != ENXIO) {
        return -errno;
      }
      o->part_existed = 1;
      err = part_remove_other(pc, o);
      if (err != 0) {
        return err;
      }
      continue;
    }
    if (fstat(fd, &st) != 0) {
      err = -errno;
      close(fd);
      return err;
    }
    if (!folder && !S_ISREG(st.st_mode)) { /* a fifo or a device */
      close(fd);
      o->part_existed = 1;
      err = part_remove_other(pc, o);
      if (err != 0) {
        return err;
      }
      continue;
    }
    err = lock_fd(pc, fd, &st, o->why, sizeof(o->why));
    if (err != 0) {
      close(fd);
      return err;
    }
    if (!part_is(pc, o->dir_fd, &st)) {
      close(fd); /* replaced between the open and the lock: again */
      continue;
    }
    o->root_fd = fd;
    o->created =
        have_made && made.st_dev == st.st_dev && made.st_ino == st.st_ino;
    o->part_existed |= !o->created;
    return 0;
  }
  snprintf(o->why, sizeof(o->why),
           "%s%s keeps being replaced by another download", pc->final_path,
           STORAGE_PART_SUFFIX);
  return UV_EBUSY;
}

/* UV_EEXIST when anything is at the final name, 0 when nothing is. */
static int final_absent(const struct partcopy *pc, int dir_fd) {
  struct stat st;

  if (fstatat(dir_fd, pc->m->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return UV_EEXIST;
  }
  return errno == ENOENT ? 0 : -errno;
}

/* ------------------------------------------------------------------------ */
/* Room for the partial copy, and giving back */

/* Looks at file i of a partial copy that was there before this open:
 * returns -ENOENT when it is missing, else 0 with its status in st. */
static int part_file_stat(const struct partcopy *pc,
                          const struct partcopy_open *o, uint32_t i,
                          struct stat *st) {
  int fd = pc->m->kind == MANIFEST_KIND_FILE
               ? o->root_fd
               : fsutil_open_under(o->root_fd, partcopy_rel(pc, i), O_RDONLY, 0,
                                   NULL);
  int err = 0;

  if (fd < 0) {
    return fd;
  }
  if (fstat(fd, st) != 0) {
    err = -errno;
  }
  if (fd != o->root_fd) {
    close(fd);
  }
  return err;
}

/* Refuses with UV_ENOSPC, before anything is changed, a content that
 * cannot fit: what its files still lack (whole blocks, less what the
 * partial copy already holds of each) against what statvfs() says an
 * unprivileged writer may still use there (root's reserve is left alone),
 * and the files still to be made against the free inodes. A file system
 * that tells no block count is not checked; its reservation will say. A
 * resumed download notes each file's old size in o->old_size, so that a
 * reservation that fails all the same can be undone. o->why gets what the
 * user is told. */
static int space_check(const struct partcopy *pc, struct partcopy_open *o) {
  const struct manifest *m = pc->m;
  char free_s[FMT_NUM_BYTES];
  char need_s[FMT_NUM_BYTES];
  char held_s[FMT_NUM_BYTES];
  char size_s[FMT_NUM_BYTES];
  struct statvfs v;
  uint64_t need = 0;
  uint64_t held = 0;
  uint64_t fresh = 0;

  if (fstatvfs(o->dir_fd, &v) != 0 || v.f_frsize == 0 || v.f_blocks == 0) {
    return 0;
  }
  const uint64_t bs = v.f_frsize;
  for (uint32_t i = 0; i < m->file_count; i++) {
    uint64_t want = fsutil_whole_blocks(m->files[i].size, bs);
    uint64_t has = 0;
    struct stat st;
    int err = o->created ? -ENOENT : part_file_stat(pc, o, i, &st);
    if (err == 0 && S_ISREG(st.st_mode)) {
      has = (uint64_t)st.st_blocks * 512u; /* st_blocks is in 512 B units */
      if (o->old_size != NULL) {
        o->old_size[i] = (uint64_t)st.st_size;
      }
    } else if (err == -ENOENT) {
      fresh++;
      if (o->old_size != NULL) {
        o->old_size[i] = SIZE_CREATED;
      }
    }
    if (has > want) {
      has = want;
    }
    need = fsutil_add_sat(need, want - has);
    held = fsutil_add_sat(held, has);
  }
  o->need = need;
  uint64_t avail = fsutil_avail_bytes(&v);
  if (need > avail) {
    fmt_bytes(free_s, sizeof(free_s), avail);
    fmt_bytes(need_s, sizeof(need_s), need);
    if (held == 0) {
      snprintf(o->why, sizeof(o->why), "%s has %s free; %s needs %s", pc->dir,
               free_s, m->name, need_s);
    } else {
      fmt_bytes(held_s, sizeof(held_s), held);
      fmt_bytes(size_s, sizeof(size_s), m->total_size);
      snprintf(o->why, sizeof(o->why),
               "%s has %s free; %s needs %s more (its partial copy holds %s "
               "of %s)",
               pc->dir, free_s, m->name, need_s, held_s, size_s);
    }
    return UV_ENOSPC;
  }
  /* Folders count too, but a content has fewer of them than files. */
  if (m->kind == MANIFEST_KIND_FOLDER && v.f_files > 0 &&
      fresh > (uint64_t)v.f_favail) {
    snprintf(o->why, sizeof(o->why),
             "%s has room for %llu more files; %s needs %llu", pc->dir,
             (unsigned long long)v.f_favail, m->name,
             (unsigned long long)fresh);
    return UV_ENOSPC;
  }
  return 0;
}

/* Empties a partial copy that starts over, keeping the locked file or
 * folder itself. */
static int part_empty(const struct partcopy *pc, int root_fd) {
  int fd;

  if (pc->m->kind == MANIFEST_KIND_FILE) {
    return ftruncate(root_fd, 0) == 0 ? 0 : -errno;
  }
  /* fdopendir takes the descriptor it is given: hand it a second one. */
  fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return -errno;
  }
  return fsutil_empty_dir(fd);
}

/* Gives back what a failed open took, still under the lock. A partial
 * copy that was not resumed holds nothing worth keeping (this open made
 * it, or was starting it over): it is removed. A resumed one keeps all it
 * had: the files this open made are removed, with the folders left empty,
 * and the files it lengthened are cut back to their old length. (Blocks
 * that it put in holes of a file that was already long enough stay; that
 * takes a sparse partial file whose reservation fails after space_check
 * counted its holes and let it through.) */
static void open_undo(const struct partcopy *pc, struct partcopy_open *o) {
  const struct manifest *m = pc->m;

  if (!o->resumed) {
    if (o->created || o->changing) {
      (void)fsutil_rmtree_at(o->dir_fd, pc->part_name);
    }
    return;
  }
  if (!o->changing || o->old_size == NULL) {
    return;
  }
  for (uint32_t i = 0; i < m->file_count; i++) {
    uint64_t old = o->old_size[i];
    if (old == SIZE_CREATED) {
      fsutil_unlink_under(o->root_fd, partcopy_rel(pc, i));
    } else if (old < m->files[i].size) {
      int fd = m->kind == MANIFEST_KIND_FILE
                   ? o->root_fd
                   : fsutil_open_under(o->root_fd, partcopy_rel(pc, i),
                                       O_WRONLY, 0, NULL);
      if (fd >= 0) {
        (void)ftruncate(fd, (off_t)old);
        if (fd != o->root_fd) {
          close(fd);
        }
      }
    }
  }
  if (m->kind == MANIFEST_KIND_FOLDER) {
    int fd = openat(o->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      (void)fsutil_remove_empty_dirs(fd);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Opening */

int partcopy_open(const struct partcopy *pc, const char *resume_path,
                  uint8_t *listed, struct partcopy_open *o) {
  const struct manifest *m = pc->m;
  int err;

  memset(o, 0, sizeof(*o));
  o->root_fd = -1;
  o->direct_fd = -1;
  o->dir_fd = open(pc->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (o->dir_fd < 0) {
    err = -errno;
    goto fail;
  }
  /* Nothing may be touched when the final path exists. */
  err = final_absent(pc, o->dir_fd);
  if (err != 0) {
    goto fail;
  }
  err = part_lock(pc, o);
  if (err != 0) {
    goto fail;
  }
  /* Again under the lock: the download that held it may have just
   * completed. */
  err = final_absent(pc, o->dir_fd);
  if (err != 0) {
    goto fail;
  }
  o->record = resume_read(resume_path, m->id, m->chunk_count, listed);
  if (o->record < 0) {
    err = o->record;
    goto fail;
  }
  o->resumed = !o->created && o->record == RESUME_OK;
  if (!o->resumed) {
    /* Start over: what is there may belong to another content. */
    memset(listed, 0, resume_map_bytes(m->chunk_count));
  } else {
    if (m->kind == MANIFEST_KIND_FOLDER) {
      err = prune_part(pc, o->root_fd);
      if (err != 0) {
        goto fail;
      }
    }
    o->old_size = malloc(m->file_count * sizeof(*o->old_size));
    if (o->old_size == NULL) {
      err = SHOAL_ENOMEM;
      goto fail;
    }
    for (uint32_t i = 0; i < m->file_count; i++) {
      o->old_size[i] = m->files[i].size; /* nothing to undo */
    }
  }
  err = space_check(pc, o);
  if (err != 0) {
    goto fail;
  }
  o->changing = 1;
  if (!o->resumed && !o->created) {
    err = part_empty(pc, o->root_fd);
    if (err != 0) {
      goto fail;
    }
  }
  if (m->kind == MANIFEST_KIND_FILE) {
    err = fsutil_preallocate(o->root_fd, m->files[0].size);
    if (err != 0) {
      goto fail;
    }
    o->direct_fd = fsutil_open_direct(o->dir_fd, pc->part_name, o->root_fd);
  } else {
    for (uint32_t i = 0; i < m->file_count; i++) {
      int fd = fsutil_open_under(o->root_fd, partcopy_rel(pc, i), 0, 1, NULL);
      if (fd < 0) {
        err = fd;
        goto fail;
      }
      err = fsutil_preallocate(fd, m->files[i].size);
      close(fd);
      if (err != 0) {
        goto fail;
      }
    }
  }
  free(o->old_size);
  o->old_size = NULL;
  return 0;

fail:
  if (o->root_fd >= 0) {
    open_undo(pc, o);
  }
  if (err == UV_ENOSPC && o->why[0] == '\0') {
    /* It passed the space check, yet the file system's own records (a
     * folder's entries, extent blocks) or another writer took the rest. */
    struct statvfs v;
    char need_s[FMT_NUM_BYTES];
    char free_s[FMT_NUM_BYTES] = "?";
    if (fstatvfs(o->dir_fd, &v) == 0) {
      fmt_bytes(free_s, sizeof(free_s), (uint64_t)v.f_bavail * v.f_frsize);
    }
    fmt_bytes(need_s, sizeof(need_s), o->need);
    snprintf(o->why, sizeof(o->why),
             "%s ran out of space while %s was reserved: it needs %s, and "
             "%s is free",
             pc->dir, m->name, need_s, free_s);
  }
  free(o->old_size);
  o->old_size = NULL;
  if (o->direct_fd >= 0) {
    close(o->direct_fd);
  }
  if (o->root_fd >= 0) {
    close(o->root_fd); /* releases the lock, after the undo */
  }
  if (o->dir_fd >= 0) {
    close(o->dir_fd);
  }
  o->direct_fd = -1;
  o->root_fd = -1;
  o->dir_fd = -1;
  return err;
}

/* ------------------------------------------------------------------------ */
/* Finishing */

/* Length of rel's folder part ("a/b" in "a/b/c"; 0 for "c"). */
static size_t folder_len(const char *rel) {
  const char *slash = strrchr(rel, '/');
  return slash != NULL ? (size_t)(slash - rel) : 0;
}

/* The mode a finished file gets: 0644, or 0755 when the manifest marks it
 * executable, less the umask. Nothing but the manifest's one bit and the
 * umask decides it, and only permission bits are ever set. When the umask
 * cannot be read, the file's own mode stands in for 0644 less it (the
 * partial file was made FSUTIL_FILE_MODE under it), and an executable gets
 * the execute bit wherever it may be read. */
static mode_t finished_mode(const struct manifest_file *f, mode_t partial,
                            int mask) {
  int exec = (f->mode & MANIFEST_MODE_EXEC) != 0;
  if (mask >= 0) {
    return (mode_t)((exec ? 0755 : FSUTIL_FILE_MODE) & ~mask);
  }
  mode_t rw = partial & 0666;
  return exec ? rw | ((rw & 0444) >> 2) : rw;
}

/* Gives a finished file its mode and the manifest's modification time (the
 * access time is left alone), then flushes it. The data was written and
 * verified before, so nothing changes the time afterwards. */
static int finish_file(int fd, const struct manifest_file *f, int mask) {
  struct timespec ts[2] = {{0, UTIME_OMIT}, {0, 0}};
  struct stat st;

  if (fstat(fd, &st) != 0) {
    return -errno;
  }
  if (fchmod(fd, finished_mode(f, st.st_mode, mask)) != 0) {
    return -errno;
  }
  ts[1].tv_sec = (time_t)f->mtime_sec;
  ts[1].tv_nsec = (long)f->mtime_nsec;
  if (futimens(fd, ts) != 0) {
    return -errno;
  }
  return fsutil_fsync(fd);
}

/* Creates the manifest's empty folders, and the folders on the way to
 * them, inside the partial folder, and flushes each folder that got a new
 * entry. A folder already there is kept (a finish that failed halfway
 * runs again); anything else in its place means the partial folder was
 * tampered with, and the finish fails. */
static int make_empty_folders(const struct partcopy *pc) {
  for (uint32_t i = 0; i < pc->m->folder_count; i++) {
    int err =
        fsutil_make_dirs(pc->root_fd, pc->m->folders[i] + pc->name_len + 1);
    if (err != 0) {
      return err;
    }
  }
  return 0;
}

/* Gives every file of the partial folder its mode and time and flushes it,
 * and flushes every folder that holds one. */
static int finish_tree(const struct partcopy *pc, int mask) {
  const char *prev = NULL;
  size_t prev_len = 0;

  for (uint32_t i = 0; i < pc->m->file_count; i++) {
    const char *rel = partcopy_rel(pc, i);
    size_t len = folder_len(rel);
    int parent;
    int fd = fsutil_open_under(pc->root_fd, rel, O_RDONLY, 0, &parent);
    int err;

    if (fd < 0) {
      return fd;
    }
    err = finish_file(fd, &pc->m->files[i], mask);
    close(fd);
    /* Files of one folder sort together: sync each folder once. */
    if (err == 0 && parent >= 0 &&
        (prev == NULL || prev_len != len || memcmp(prev, rel, len) != 0)) {
      err = fsutil_fsync(parent);
    }
    if (parent >= 0) {
      close(parent);
    }
    if (err != 0) {
      return err;
    }
    prev = rel;
    prev_len = len;
  }
  return 0;
}

/* The empty folders are made, each file gets its mode and time,
 * everything is flushed, and only then is the partial copy renamed into
 * place, so the content appears whole. */
int partcopy_finish(const struct partcopy *pc) {
  int mask = fsutil_umask();
  int err;

  if (pc->m->kind == MANIFEST_KIND_FOLDER) {
    err = make_empty_folders(pc);
    if (err == 0) {
      err = finish_tree(pc, mask);
    }
  } else {
    err = finish_file(pc->root_fd, &pc->m->files[0], mask);
  }
  if (err == 0) {
    err = fsutil_fsync(pc->root_fd);
  }
  if (err == 0) {
    err = fsutil_rename_noreplace(pc->dir_fd, pc->part_name, pc->m->name);
  }
  if (err == 0) {
    err = fsutil_fsync(pc->dir_fd);
  }
  return err;
}
