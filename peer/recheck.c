/* Checking a copy on disk against its manifest (recheck.h): every file
 * stat'ed, those whose fast-resume record no longer matches hashed chunk by
 * chunk on libuv's thread pool, and the first problem put in words.
 *
 * A check runs in two steps, both on the thread pool so that the loop
 * never waits for the disk. The first job stats every file (through
 * fsutil_open_under, so never through a symbolic link) and decides which
 * are missing, of another size, trusted by their record, or to be hashed.
 * Then the files to hash are cut into runs of whole chunks (at most
 * MANIFEST_JOB_BYTES each), up to RECHECK_JOBS at a time. Each run opens
 * its file again and compares it with what the first step saw, before and
 * after reading, so a file written while it is checked is found out.
 * Workers write only their own job; the per-file verdicts are gathered on
 * the loop thread, and the reason given is that of the first bad file in
 * manifest order, whatever order the jobs end in.
 */
#include "peer/recheck.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "peer/fsutil.h"
#include "peer/manifest_build.h"

#define container_of(p, type, field)                                           \
  ((type *)(void *)((char *)(p)-offsetof(type, field)))

/* What the check found of one file. */
enum verdict {
  V_UNKNOWN = 0, /* being hashed, or not looked at yet */
  V_TRUSTED,     /* its record matched: not read */
  V_HASHED,      /* read, and every chunk matched */
  V_MISSING,     /* no such file */
  V_NOTREG,      /* a folder, a fifo, a device */
  V_BEHIND,      /* a symbolic link, or under one (or under a file) */
  V_SIZE,        /* of another size than the manifest says */
  V_CHUNK,       /* a chunk differs (first_bad says which) */
  V_CHANGED,     /* it changed while it was checked */
};

struct file_state {
  enum verdict v;
  int hash;           /* its chunks are to be read */
  uint32_t nbad;      /* chunks that failed */
  uint32_t first_bad; /* the lowest of them, counted within the file */
};

struct job {
  uv_work_t req;
  struct recheck *r;
  uint32_t file;
  uint32_t c0, c1; /* chunks [c0, c1) of the file, counted within it */
  uint64_t bytes;
  /* Results, written by the worker. */
  int err;       /* a file-system error not about the copy */
  int changed;   /* the file is not what the first step saw */
  uint32_t nbad; /* chunks that differ */
  uint32_t first_bad;
  struct job *prev, *next; /* the check's list, for cancel */
};

struct recheck {
  uv_loop_t *loop;
  const struct manifest *m;
  char *root;
  int root_fd; /* -1 when root is missing (every file is then missing) */
  struct library_file *known; /* NULL, or m->file_count records */
  recheck_progress_cb progress;
  recheck_done_cb done;
  void *arg;

  struct recheck_result res;
  struct file_state *fs;

  uv_work_t stat_req;
  int stating;  /* stat_req is queued or running */
  int stat_err; /* ... and failed, on file stat_file */
  uint32_t stat_file;

  uint32_t next_file, next_chunk; /* the job iterator */
  unsigned in_flight;
  struct job *jobs;
  uint64_t hash_done, hash_total;
  int status;        /* the first error */
  uint32_t err_file; /* the file it came from, or UINT32_MAX */
  int canceled;
};

static void recheck_free(struct recheck *r) {
  if (r->root_fd >= 0) {
    close(r->root_fd);
  }
  free(r->root);
  free(r->known);
  free(r->res.files);
  free(r->res.file_ok);
  free(r->fs);
  free(r);
}

/* ------------------------------------------------------------------------ */
/* The first step: a stat of every file (on a worker) */

static int record_matches(const struct library_file *k,
                          const struct library_file *now) {
  return k->size == now->size && k->mtime_sec == now->mtime_sec &&
         k->mtime_nsec == now->mtime_nsec && k->ino == now->ino;
}

static void seen_from_stat(struct library_file *out, const struct stat *st) {
  out->size = (uint64_t)st->st_size;
  out->mtime_sec = st->st_mtim.tv_sec;
  out->mtime_nsec = st->st_mtim.tv_nsec;
  out->ino = (uint64_t)st->st_ino;
}

/* Looks at file i; returns 0 with its verdict (or hash set) in fs, or a
 * file-system error that is not about the copy. */
static int stat_one(struct recheck *r, uint32_t i) {
  const struct manifest_file *f = &r->m->files[i];
  struct file_state *fs = &r->fs[i];
  struct library_file *seen = &r->res.files[i];
  struct stat st;
  int fd;

  if (r->root_fd < 0) {
    fs->v = V_MISSING;
    return 0;
  }
  fd = fsutil_open_under(r->root_fd, f->path, O_RDONLY, 0, NULL);
  if (fd == UV_ENOENT) {
    fs->v = V_MISSING;
    return 0;
  }
  if (fd == UV_ELOOP || fd == UV_ENOTDIR || fd == SHOAL_EPATH) {
    fs->v = V_BEHIND; /* a symbolic link on the way, never followed */
    return 0;
  }
  if (fd < 0) {
    return fd;
  }
  if (fstat(fd, &st) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  close(fd);
  if (!S_ISREG(st.st_mode)) {
    fs->v = V_NOTREG;
    return 0;
  }
  seen_from_stat(seen, &st);
  if (seen->size != f->size) {
    fs->v = V_SIZE;
  } else if (r->known != NULL && record_matches(&r->known[i], seen)) {
    fs->v = V_TRUSTED;
  } else if (f->chunk_count == 0) {
    fs->v = V_HASHED; /* an empty file: nothing to read, and it is whole */
  } else {
    fs->hash = 1;
  }
  return 0;
}

static void stat_work(uv_work_t *req) {
  struct recheck *r = container_of(req, struct recheck, stat_req);
  int fd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      r->stat_err = -errno;
      return;
    }
  }
  r->root_fd = fd;
  for (uint32_t i = 0; i < r->m->file_count; i++) {
    int err = stat_one(r, i);
    if (err != 0) {
      r->stat_err = err;
      r->stat_file = i;
      return;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* The second step: hashing runs of chunks (on workers) */

/* Whether st is the file the first step saw. */
static int same_file(const struct stat *st, const struct library_file *seen) {
  struct library_file now;
  if (!S_ISREG(st->st_mode)) {
    return 0;
  }
  seen_from_stat(&now, st);
  return record_matches(seen, &now);
}

static void hash_work(uv_work_t *req) {
  struct job *j = container_of(req, struct job, req);
  const struct recheck *r = j->r;
  const struct manifest *m = r->m;
  const struct manifest_file *f = &m->files[j->file];
  const struct library_file *seen = &r->res.files[j->file];
  struct stat st;
  uint8_t *got = NULL;
  int fd, err;

  fd = fsutil_open_under(r->root_fd, f->path, O_RDONLY, 0, NULL);
  if (fd < 0) {
    if (fd == UV_ENOENT || fd == UV_ELOOP || fd == UV_ENOTDIR ||
        fd == SHOAL_EPATH) {
      j->changed = 1; /* gone or replaced since the first step */
    } else {
      j->err = fd;
    }
    return;
  }
  if (fstat(fd, &st) != 0) {
    j->err = -errno;
    goto out;
  }
  if (!same_file(&st, seen)) {
    j->changed = 1;
    goto out;
  }
  got = malloc((size_t)(j->c1 - j->c0) * MANIFEST_HASH_BYTES);
  err = got == NULL
            ? SHOAL_ENOMEM
            : manifest_hash_run(fd, f->size, m->chunk_log2, j->c0, j->c1, got);
  for (uint32_t c = j->c0; err == 0 && c < j->c1; c++) {
    if (memcmp(got + (size_t)(c - j->c0) * MANIFEST_HASH_BYTES,
               m->hashes + (size_t)(f->first_chunk + c) * MANIFEST_HASH_BYTES,
               MANIFEST_HASH_BYTES) != 0 &&
        j->nbad++ == 0) {
      j->first_bad = c;
    }
  }
  if (err == SHOAL_ECHANGED) {
    j->changed = 1; /* shorter than it was a moment ago */
    goto out;
  }
  if (err != 0) {
    j->err = err;
    goto out;
  }
  /* A write while the chunks were read shows in the time (or the size, or
   * the inode of a file renamed over it). */
  if (fstat(fd, &st) != 0) {
    j->err = -errno;
  } else if (!same_file(&st, seen)) {
    j->changed = 1;
  }

out:
  free(got);
  close(fd);
}

/* Takes the next run of chunks to hash into j. Returns 0 when none is
 * left. */
static int next_job(struct recheck *r, struct job *j) {
  const struct manifest *m = r->m;
  const uint64_t cs = (uint64_t)1 << m->chunk_log2;
  uint32_t per_job = (uint32_t)(MANIFEST_JOB_BYTES / cs);

  if (per_job == 0) {
    per_job = 1;
  }
  while (r->next_file < m->file_count &&
         (!r->fs[r->next_file].hash ||
          r->next_chunk >= m->files[r->next_file].chunk_count)) {
    r->next_file++;
    r->next_chunk = 0;
  }
  if (r->next_file == m->file_count) {
    return 0;
  }
  const struct manifest_file *f = &m->files[r->next_file];
  uint32_t left = f->chunk_count - r->next_chunk;
  uint32_t end = r->next_chunk + (left > per_job ? per_job : left);
  memset(j, 0, sizeof(*j));
  j->r = r;
  j->file = r->next_file;
  j->c0 = r->next_chunk;
  j->c1 = end;
  uint64_t first = (uint64_t)j->c0 * cs;
  uint64_t last = (uint64_t)end * cs;
  j->bytes = (last < f->size ? last : f->size) - first;
  r->next_chunk = end;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* On the loop thread: queueing, gathering, the end */

static void after_hash(uv_work_t *req, int status);

/* Puts the first bad file's reason into res.why. */
static void describe(struct recheck *r) {
  const struct manifest *m = r->m;
  char *why = r->res.why;
  const size_t cap = sizeof(r->res.why);

  why[0] = '\0';
  for (uint32_t i = 0; i < m->file_count; i++) {
    const struct manifest_file *f = &m->files[i];
    const struct file_state *fs = &r->fs[i];
    switch (fs->v) {
    case V_MISSING:
      snprintf(why, cap, "%s: missing", f->path);
      return;
    case V_NOTREG:
      snprintf(why, cap, "%s: not a regular file", f->path);
      return;
    case V_BEHIND:
      snprintf(why, cap,
               "%s: not a regular file, or behind a symbolic link (links "
               "are not followed)",
               f->path);
      return;
    case V_SIZE:
      snprintf(why, cap, "%s: size %llu bytes, the manifest says %llu", f->path,
               (unsigned long long)r->res.files[i].size,
               (unsigned long long)f->size);
      return;
    case V_CHUNK:
      /* For people: counted from 1, within the file. */
      if (fs->nbad == 1) {
        snprintf(why, cap, "%s: chunk %u of its %u differs", f->path,
                 fs->first_bad + 1, f->chunk_count);
      } else {
        snprintf(why, cap, "%s: chunk %u of its %u differs, and %u more",
                 f->path, fs->first_bad + 1, f->chunk_count, fs->nbad - 1);
      }
      return;
    case V_CHANGED:
      snprintf(why, cap, "%s: changed while it was checked", f->path);
      return;
    default:
      break;
    }
  }
}

static void finish(struct recheck *r) {
  const struct manifest *m = r->m;
  int status = r->status;

  if (status == 0 && r->canceled) {
    status = SHOAL_ECANCELED;
  }
  r->res.chunks_bad = 0;
  for (uint32_t i = 0; i < m->file_count; i++) {
    struct file_state *fs = &r->fs[i];
    if (fs->v == V_UNKNOWN && fs->hash && status == 0) {
      fs->v = fs->nbad > 0 ? V_CHUNK : V_HASHED;
    }
    r->res.file_ok[i] = fs->v == V_TRUSTED || fs->v == V_HASHED;
    if (fs->v == V_CHUNK) {
      r->res.chunks_bad += fs->nbad;
    } else if (fs->v >= V_MISSING) {
      r->res.chunks_bad += m->files[i].chunk_count;
    }
  }
  if (status != 0 && status != SHOAL_ECANCELED) {
    if (r->err_file < m->file_count) {
      snprintf(r->res.why, sizeof(r->res.why), "%s: %s",
               m->files[r->err_file].path, shoal_strerror(status));
    } else {
      snprintf(r->res.why, sizeof(r->res.why), "%s: %s", r->root,
               shoal_strerror(status));
    }
  }
  if (status == 0) {
    describe(r);
    for (uint32_t i = 0; i < m->file_count; i++) {
      if (!r->res.file_ok[i]) {
        status = SHOAL_ECHANGED;
        break;
      }
    }
  }
  /* Only a whole file keeps its record, so that the records may be
   * stored as they are for the next check: one of a file that differs
   * must never let it pass unread. (describe has used the sizes.) */
  for (uint32_t i = 0; i < m->file_count; i++) {
    if (!r->res.file_ok[i]) {
      memset(&r->res.files[i], 0, sizeof(r->res.files[i]));
    }
  }
  r->done(r->arg, status, &r->res);
  recheck_free(r);
}

static void queue_jobs(struct recheck *r) {
  while (r->status == 0 && !r->canceled && r->in_flight < RECHECK_JOBS) {
    struct job tmp;
    if (!next_job(r, &tmp)) {
      break;
    }
    struct job *j = malloc(sizeof(*j));
    if (j == NULL) {
      r->status = SHOAL_ENOMEM;
      break;
    }
    *j = tmp;
    int err = uv_queue_work(r->loop, &j->req, hash_work, after_hash);
    if (err != 0) {
      free(j);
      r->status = err;
      break;
    }
    r->in_flight++;
    j->prev = NULL;
    j->next = r->jobs;
    if (r->jobs != NULL) {
      r->jobs->prev = j;
    }
    r->jobs = j;
  }
}

static void after_hash(uv_work_t *req, int status) {
  struct job *j = container_of(req, struct job, req);
  struct recheck *r = j->r;
  struct file_state *fs = &r->fs[j->file];

  r->in_flight--;
  if (j->prev != NULL) {
    j->prev->next = j->next;
  } else {
    r->jobs = j->next;
  }
  if (j->next != NULL) {
    j->next->prev = j->prev;
  }
  if (status == UV_ECANCELED) {
    r->canceled = 1;
  } else if (j->err != 0) {
    if (r->status == 0) {
      r->status = j->err;
      r->err_file = j->file;
    }
  } else {
    if (j->changed) {
      fs->v = V_CHANGED;
    } else if (j->nbad > 0) {
      if (fs->nbad == 0 || j->first_bad < fs->first_bad) {
        fs->first_bad = j->first_bad;
      }
      fs->nbad += j->nbad;
    }
    r->res.bytes_hashed += j->bytes;
    r->hash_done += j->bytes;
    if (r->progress != NULL && !r->canceled) {
      r->progress(r->arg, r->hash_done, r->hash_total);
    }
  }
  free(j);
  queue_jobs(r);
  if (r->in_flight == 0) {
    finish(r);
  }
}

static void after_stat(uv_work_t *req, int status) {
  struct recheck *r = container_of(req, struct recheck, stat_req);
  const struct manifest *m = r->m;

  r->stating = 0;
  if (status == UV_ECANCELED) {
    r->canceled = 1;
  } else if (r->stat_err != 0) {
    r->status = r->stat_err;
    r->err_file = r->stat_file;
  }
  if (r->status != 0 || r->canceled) {
    finish(r);
    return;
  }
  for (uint32_t i = 0; i < m->file_count; i++) {
    struct file_state *fs = &r->fs[i];
    if (fs->hash) {
      r->hash_total += m->files[i].size;
    }
    if (fs->hash || fs->v == V_HASHED) {
      r->res.files_hashed++;
    }
  }
  queue_jobs(r);
  if (r->in_flight == 0) {
    finish(r); /* nothing to hash, or the first queue failed */
  }
}

/* ------------------------------------------------------------------------ */
/* The interface */

int recheck_start(struct recheck **out, uv_loop_t *loop,
                  const struct manifest *m, const char *root,
                  const struct library_file *known, uint32_t nknown,
                  recheck_progress_cb progress, recheck_done_cb done,
                  void *arg) {
  struct recheck *r;
  const uint32_t n = m->file_count;
  int err;

  *out = NULL;
  if (nknown == 0) {
    known = NULL; /* no record (library.h's nfiles 0) */
  }
  if (root == NULL || done == NULL || (known != NULL && nknown != n)) {
    return SHOAL_EINVAL;
  }
  if (sodium_init() < 0) {
    abort();
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return SHOAL_ENOMEM;
  }
  r->root_fd = -1;
  r->err_file = UINT32_MAX;
  r->stat_file = UINT32_MAX;
  r->loop = loop;
  r->m = m;
  r->progress = progress;
  r->done = done;
  r->arg = arg;
  r->res.nfiles = n;
  r->root = strdup(root);
  /* One more than needed, so that an empty content allocates too. */
  r->res.files = calloc((size_t)n + 1, sizeof(*r->res.files));
  r->res.file_ok = calloc((size_t)n + 1, 1);
  r->fs = calloc((size_t)n + 1, sizeof(*r->fs));
  if (known != NULL) {
    r->known = malloc(((size_t)n + 1) * sizeof(*r->known));
    if (r->known != NULL) {
      memcpy(r->known, known, (size_t)n * sizeof(*known));
    }
  }
  if (r->root == NULL || r->res.files == NULL || r->res.file_ok == NULL ||
      r->fs == NULL || (known != NULL && r->known == NULL)) {
    recheck_free(r);
    return SHOAL_ENOMEM;
  }
  err = uv_queue_work(loop, &r->stat_req, stat_work, after_stat);
  if (err != 0) {
    recheck_free(r);
    return err;
  }
  r->stating = 1;
  *out = r;
  return 0;
}

void recheck_cancel(struct recheck *r) {
  /* Work not yet picked up by a worker is cancelled (its after-work
   * callback sees UV_ECANCELED); running work finishes its run. */
  r->canceled = 1;
  if (r->stating) {
    (void)uv_cancel((uv_req_t *)&r->stat_req);
  }
  for (struct job *j = r->jobs; j != NULL; j = j->next) {
    (void)uv_cancel((uv_req_t *)&j->req);
  }
}

int recheck_apply(struct manifest *m, const char *root,
                  const struct recheck_result *result) {
  char *copy;

  if (result->nfiles != m->file_count) {
    return SHOAL_EINVAL;
  }
  copy = strdup(root);
  if (copy == NULL) {
    return SHOAL_ENOMEM;
  }
  free(m->local_root);
  m->local_root = copy;
  for (uint32_t i = 0; i < m->file_count; i++) {
    m->files[i].mtime_sec = result->files[i].mtime_sec;
    m->files[i].mtime_nsec = result->files[i].mtime_nsec;
  }
  return 0;
}
