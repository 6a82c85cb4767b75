/* The files of a source, read only while each is still the file that was
 * hashed; blocking work for libuv's thread pool. */
#define _GNU_SOURCE /* preadv2 and RWF_NOWAIT */

#include "peer/source.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/error.h"
#include "peer/fsutil.h"
#include "peer/storage.h"

/* A source chunk is hashed in pieces of this size before it is first
 * served: bounded memory per read in flight, whatever the chunk size. */
#define SOURCE_VERIFY_PIECE (256u << 10)

/* Says in out how file idx, as st shows it now, differs from when it was
 * hashed (st NULL: it is gone, or no longer a plain file). */
static void describe_change(const struct manifest *m, uint32_t idx,
                            const struct stat *st, struct storage_change *out) {
  memset(out, 0, sizeof(*out));
  out->file = idx;
  if (st == NULL || !S_ISREG(st->st_mode)) {
    out->kind = STORAGE_CHANGE_GONE;
  } else if ((uint64_t)st->st_size != m->files[idx].size) {
    out->kind = STORAGE_CHANGE_SIZE;
    out->size_now = (uint64_t)st->st_size;
  } else {
    out->kind = STORAGE_CHANGE_MTIME;
  }
}

int source_open(const struct manifest *m, uint32_t idx) {
  int base, fd;
  base = open(m->local_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (base < 0) {
    return errno == ENOENT || errno == ENOTDIR ? SHOAL_ECHANGED : -errno;
  }
  fd = fsutil_open_under(base, m->files[idx].path, O_RDONLY, 0, NULL);
  close(base);
  if (fd == UV_ENOENT || fd == UV_ELOOP || fd == UV_ENOTDIR) {
    return SHOAL_ECHANGED;
  }
  return fd;
}

/* Hashes the block's whole chunk from fd and compares it with the
 * manifest: a file rewritten in place with its size and time kept is
 * caught on the first read of each chunk, before any of it is served.
 * Reads in SOURCE_VERIFY_PIECE pieces, so memory stays small whatever the
 * chunk size. Returns 0, SHOAL_EHASH, or a read error. */
static int verify_chunk(const struct manifest *m, int fd,
                        const struct source_block *b) {
  struct chash st = {0};
  uint8_t got[MANIFEST_HASH_BYTES];
  uint8_t *piece = malloc(SOURCE_VERIFY_PIECE);
  uint32_t done = 0;
  int err = piece == NULL ? SHOAL_ENOMEM : chash_init(&st);

  while (err == 0 && done < b->chunk_len) {
    uint32_t want = b->chunk_len - done;
    if (want > SOURCE_VERIFY_PIECE) {
      want = SOURCE_VERIFY_PIECE;
    }
    ssize_t n = fsutil_pread_full(fd, piece, want, b->chunk_offset + done);
    if (n < 0) {
      err = (int)n;
    } else if ((uint32_t)n != want) {
      err = SHOAL_EHASH; /* shorter than it was: no longer the chunk */
    } else {
      err = chash_update(&st, piece, want);
      done += want;
    }
  }
  if (err == 0) {
    err = chash_final(&st, got);
  }
  if (err == 0 && sodium_memcmp(got, m->hashes + (size_t)b->chunk * sizeof(got),
                                sizeof(got)) != 0) {
    err = SHOAL_EHASH;
  }
  chash_free(&st);
  free(piece);
  return err;
}

int source_unchanged_since_hashed(const struct manifest_file *f,
                                  const struct stat *st) {
  return f->ctime_known == 1 && st->st_ctim.tv_sec == f->ctime_sec &&
         st->st_ctim.tv_nsec == f->ctime_nsec;
}

/* Same size and modification time before the read and after it, and, for
 * the first read of each chunk, the same bytes (verify_chunk), unless the
 * file still has the ctime it had while this process hashed it. */
/* Before a read: the file's size and time are still what was hashed.
 * Returns 0 with st filled, SHOAL_ECHANGED with *change, or -errno. */
static int check_before(const struct manifest *m, uint32_t file, int fd,
                        struct stat *st, struct storage_change *change) {
  if (fstat(fd, st) != 0) {
    return -errno;
  }
  if (!fsutil_stat_matches(st, &m->files[file])) {
    describe_change(m, file, st, change);
    return SHOAL_ECHANGED;
  }
  return 0;
}

/* After a read that got `got` bytes of the block: all of them, and the size
 * and time unchanged meanwhile. Returns 0 or SHOAL_ECHANGED with
 * *change. */
static int check_after(const struct manifest *m, const struct source_block *b,
                       int fd, size_t got, struct storage_change *change) {
  struct stat st;
  if (got != b->len || fstat(fd, &st) != 0 ||
      !fsutil_stat_matches(&st, &m->files[b->file])) {
    describe_change(m, b->file, fstat(fd, &st) == 0 ? &st : NULL, change);
    return SHOAL_ECHANGED;
  }
  return 0;
}

int source_read(const struct manifest *m, int kept_fd,
                const struct source_block *b, uint8_t *dst,
                struct storage_change *change) {
  const struct manifest_file *f = &m->files[b->file];
  struct stat st;
  ssize_t n;
  int status;
  int fd;
  int err;

  fd = kept_fd >= 0 ? kept_fd : source_open(m, b->file);
  if (fd < 0) {
    if (fd == SHOAL_ECHANGED) {
      describe_change(m, b->file, NULL, change);
    }
    return fd;
  }
  status = check_before(m, b->file, fd, &st, change);
  if (status != 0) {
    goto out;
  }
  if (b->verify && !source_unchanged_since_hashed(f, &st)) {
    err = verify_chunk(m, fd, b);
    if (err == SHOAL_EHASH) {
      memset(change, 0, sizeof(*change));
      change->kind = STORAGE_CHANGE_HASH;
      change->file = b->file;
      change->chunk = b->chunk;
      err = SHOAL_ECHANGED;
    }
    if (err != 0) {
      status = err;
      goto out;
    }
  }
  n = fsutil_pread_full(fd, dst, b->len, b->offset);
  status = n < 0 ? (int)n : check_after(m, b, fd, (size_t)n, change);

out:
  if (fd != kept_fd) {
    close(fd);
  }
  return status;
}

int source_read_cached(const struct manifest *m, int fd,
                       const struct source_block *b, uint8_t *dst,
                       struct storage_change *change) {
  struct stat st;
  size_t done = 0;
  int err;

  if (fd < 0 || b->verify) {
    return SHOAL_EINVAL;
  }
  err = check_before(m, b->file, fd, &st, change);
  if (err != 0) {
    return err;
  }
  while (done < b->len) {
    struct iovec v = {dst + done, b->len - done};
    ssize_t n = preadv2(fd, &v, 1, (off_t)(b->offset + done), RWF_NOWAIT);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      /* EAGAIN: not all cached. EOPNOTSUPP: a file system without
       * RWF_NOWAIT reads; the pool reads it then. */
      return errno == EAGAIN || errno == EOPNOTSUPP ? UV_EAGAIN : -errno;
    }
    if (n == 0) {
      break; /* shorter than it was: the check below says how */
    }
    done += (size_t)n;
  }
  return check_after(m, b, fd, done, change);
}

int source_check(const struct manifest *m, struct storage_change *change) {
  struct stat st;
  for (uint32_t i = 0; i < m->file_count; i++) {
    int fd = source_open(m, i);
    if (fd < 0) {
      if (fd == SHOAL_ECHANGED) {
        describe_change(m, i, NULL, change);
      }
      return fd;
    }
    if (fstat(fd, &st) != 0) {
      int err = -errno;
      close(fd);
      return err;
    }
    close(fd);
    if (!fsutil_stat_matches(&st, &m->files[i])) {
      describe_change(m, i, &st, change);
      return SHOAL_ECHANGED;
    }
  }
  return 0;
}
