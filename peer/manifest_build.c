#include "peer/manifest_build.h"

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
#include "peer/maphash.h"

/* ------------------------------------------------------------------------ */
/* Scanning the local file or folder */

struct scan {
  struct manifest *m;
  uint32_t cap;
  uint32_t folder_cap;
  const struct manifest_build_opts *opts;
};

static void set_err_path(const struct manifest_build_opts *o, const char *p) {
  if (o != NULL && o->err_path != NULL && o->err_path_cap > 0) {
    snprintf(o->err_path, o->err_path_cap, "%s", p);
  }
}

static void report_skip(const struct scan *s, const char *path,
                        const char *why) {
  if (s->opts != NULL && s->opts->skipped != NULL) {
    s->opts->skipped(s->opts->arg, path, why);
  }
}

static int add_file(struct scan *s, const char *rel, const struct stat *st) {
  struct manifest *m = s->m;
  if (m->file_count == MANIFEST_MAX_FILES) {
    return SHOAL_ETOOBIG;
  }
  if (m->file_count == s->cap) {
    uint32_t cap = s->cap ? s->cap * 2 : 16;
    struct manifest_file *f = realloc(m->files, cap * sizeof(*f));
    if (f == NULL) {
      return SHOAL_ENOMEM;
    }
    m->files = f;
    s->cap = cap;
  }
  struct manifest_file *f = &m->files[m->file_count];
  memset(f, 0, sizeof(*f));
  f->path = strdup(rel);
  if (f->path == NULL) {
    return SHOAL_ENOMEM;
  }
  f->size = (uint64_t)st->st_size;
  f->mtime_sec = st->st_mtim.tv_sec;
  f->mtime_nsec = st->st_mtim.tv_nsec;
  /* Only whether the owner may run it: the rest of the mode is the
   * downloader's own (its umask), and the special bits are never shared. */
  f->mode = (st->st_mode & S_IXUSR) != 0 ? MANIFEST_MODE_EXEC : 0;
  m->file_count++;
  return 0;
}

static int add_folder(struct scan *s, const char *rel) {
  struct manifest *m = s->m;
  if (m->folder_count == MANIFEST_MAX_FOLDERS) {
    return SHOAL_ETOOBIG;
  }
  if (m->folder_count == s->folder_cap) {
    uint32_t cap = s->folder_cap ? s->folder_cap * 2 : 16;
    char **f = realloc(m->folders, cap * sizeof(*f));
    if (f == NULL) {
      return SHOAL_ENOMEM;
    }
    m->folders = f;
    s->folder_cap = cap;
  }
  m->folders[m->folder_count] = strdup(rel);
  if (m->folders[m->folder_count] == NULL) {
    return SHOAL_ENOMEM;
  }
  m->folder_count++;
  return 0;
}

/* Walks the open folder dfd, whose manifest path is rel. Takes dfd. */
static int scan_dir(struct scan *s, int dfd, const char *rel, unsigned depth) {
  struct fsutil_dir d;
  char child[MANIFEST_MAX_PATH + 1];
  const char *name;
  int err = fsutil_dir_open(&d, dfd);

  if (err != 0) {
    return err;
  }
  for (;;) {
    int more = fsutil_dir_next(&d, &name);
    if (more <= 0) {
      err = more; /* 0 at the end of the folder */
      break;
    }
    int n = snprintf(child, sizeof(child), "%s/%s", rel, name);
    if (n < 0 || (size_t)n >= sizeof(child)) {
      set_err_path(s->opts, rel);
      err = SHOAL_ETOOBIG;
      break;
    }
    if (manifest_check_segment(name, strlen(name)) != 0) {
      report_skip(s, child, MANIFEST_BUILD_SKIP_UNSAFE_NAME);
      continue;
    }
    struct stat st;
    if (fstatat(fsutil_dir_fd(&d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        report_skip(s, child, MANIFEST_BUILD_SKIP_VANISHED);
        continue;
      }
      err = -errno;
      set_err_path(s->opts, child);
      break;
    }
    if (S_ISLNK(st.st_mode)) {
      report_skip(s, child, MANIFEST_BUILD_SKIP_SYMLINK);
    } else if (S_ISREG(st.st_mode)) {
      err = add_file(s, child, &st);
    } else if (S_ISDIR(st.st_mode)) {
      /* A file at depth d has d + 2 segments (the name, d folders, its
       * own), and a path may have at most MANIFEST_MAX_DEPTH + 1. */
      if (depth + 1 >= MANIFEST_MAX_DEPTH) {
        set_err_path(s->opts, child);
        err = SHOAL_ETOOBIG;
        break;
      }
      int sub = openat(fsutil_dir_fd(&d), name,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        err = -errno;
        set_err_path(s->opts, child);
        break;
      }
      uint32_t files = s->m->file_count;
      uint32_t folders = s->m->folder_count;
      err = scan_dir(s, sub, child, depth + 1);
      /* A folder in which nothing was recorded is kept as an empty folder;
       * one that holds anything is implied by it. */
      if (err == 0 && s->m->file_count == files &&
          s->m->folder_count == folders) {
        err = add_folder(s, child);
      }
    } else {
      report_skip(s, child, MANIFEST_BUILD_SKIP_SPECIAL);
    }
    if (err != 0) {
      break;
    }
  }
  fsutil_dir_close(&d);
  return err;
}

/* Fills m's name, kind and files from the path on disk, then lays the
 * chunks out. */
static int scan_path(struct manifest *m, const char *path,
                     const struct manifest_build_opts *opts) {
  struct scan s = {.m = m, .cap = 0, .opts = opts};
  char *real = realpath(path, NULL);
  struct stat st;
  int err;

  if (real == NULL) {
    err = -errno; /* read before snprintf() in set_err_path() may change it */
    set_err_path(opts, path);
    return err;
  }
  char *slash = strrchr(real, '/');
  const char *base = slash + 1;
  if (manifest_check_segment(base, strlen(base)) != 0) {
    set_err_path(opts, path);
    free(real);
    return SHOAL_EPATH;
  }
  m->name = strdup(base);
  m->local_root =
      slash == real ? strdup("/") : strndup(real, (size_t)(slash - real));
  if (m->name == NULL || m->local_root == NULL) {
    free(real);
    return SHOAL_ENOMEM;
  }
  if (stat(real, &st) != 0) {
    err = -errno;
    set_err_path(opts, path);
  } else if (S_ISREG(st.st_mode)) {
    m->kind = MANIFEST_KIND_FILE;
    err = add_file(&s, m->name, &st);
  } else if (S_ISDIR(st.st_mode)) {
    m->kind = MANIFEST_KIND_FOLDER;
    int dfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    err = dfd < 0 ? -errno : scan_dir(&s, dfd, m->name, 0);
    if (dfd < 0) {
      set_err_path(opts, path);
    }
  } else {
    set_err_path(opts, path);
    err = SHOAL_EPATH;
  }
  free(real);
  if (err != 0) {
    return err;
  }
  return manifest_layout(m, opts != NULL ? opts->chunk_log2 : 0);
}

/* ------------------------------------------------------------------------ */
/* Hashing */

struct job {
  uv_work_t req;
  struct manifest_builder *b;
  uint32_t file;
  uint32_t c0, c1; /* chunk range inside the file, relative to it */
  uint64_t bytes;
  int err;
  struct timespec ctime;   /* the file's, unchanged from start to end, */
  int ctime_ok;            /* when this is 1 */
  struct job *prev, *next; /* the builder's list of queued jobs */
};

struct manifest_builder {
  uv_loop_t *loop;
  struct manifest *m;
  struct identity publisher;
  struct manifest_build_opts opts;
  manifest_build_cb cb;
  void *arg;
  uint32_t next_file;  /* the job iterator */
  uint32_t next_chunk; /* relative to next_file */
  unsigned in_flight;
  struct job *jobs; /* queued or running, so that cancel can reach them */
  int queued_any;
  int status;
  int canceled;
  uint64_t done;
  char err_path[2 * MANIFEST_MAX_PATH + 2];
};

/* Merges what a finished job saw of its file's ctime into the file (on the
 * loop thread): known only when every job of the file saw one and the
 * same ctime throughout its hashing. */
static void note_job_ctime(struct manifest_builder *b, const struct job *j) {
  struct manifest_file *f = &b->m->files[j->file];
  if (f->ctime_known < 0) {
    return;
  }
  if (!j->ctime_ok) {
    f->ctime_known = -1;
  } else if (f->ctime_known == 0) {
    f->ctime_sec = j->ctime.tv_sec;
    f->ctime_nsec = j->ctime.tv_nsec;
    f->ctime_known = 1;
  } else if (f->ctime_sec != j->ctime.tv_sec ||
             f->ctime_nsec != j->ctime.tv_nsec) {
    f->ctime_known = -1;
  }
}

/* Records which file a failed job was reading (on the loop thread, so that
 * workers never write shared memory but their own hash slots). */
static void note_job_error(struct manifest_builder *b, const struct job *j) {
  if (b->err_path[0] == '\0') {
    snprintf(b->err_path, sizeof(b->err_path), "%s/%s", b->m->local_root,
             b->m->files[j->file].path);
  }
}

int manifest_hash_chunk(int fd, uint64_t off, uint64_t len, uint8_t *buf,
                        uint8_t out[MANIFEST_HASH_BYTES]) {
  struct chash hs = {0};
  int err = chash_init(&hs);

  while (err == 0 && len > 0) {
    size_t want = len < MANIFEST_READ_BYTES ? (size_t)len : MANIFEST_READ_BYTES;
    ssize_t n = fsutil_pread_full(fd, buf, want, off);
    if (n < 0) {
      err = (int)n;
    } else if ((size_t)n != want) {
      err = SHOAL_ECHANGED;
    } else {
      err = chash_update(&hs, buf, want);
      off += want;
      len -= want;
    }
  }
  if (err == 0) {
    err = chash_final(&hs, out);
  }
  chash_free(&hs);
  return err;
}

/* A job's chunks are one window: they map in one piece. */
_Static_assert(MANIFEST_JOB_BYTES <= MAPHASH_MAX_BYTES &&
                   ((size_t)1 << MANIFEST_CHUNK_LOG2_MAX) <= MAPHASH_MAX_BYTES,
               "a job does not fit a mapped window");

/* manifest_hash_run from a mapping: 1 when hashed, 0 when to be read. */
static int hash_mapped(int fd, uint64_t off, uint64_t bytes, uint64_t cs,
                       uint8_t *out) {
  struct maphash_window w;
  int err;

  if (bytes < MAPHASH_MIN_BYTES ||
      maphash_map(&w, fd, off, (size_t)bytes) != 0) {
    return 0;
  }
  err = maphash_chunks(&w, cs, out);
  maphash_unmap(&w);
  if (err == SHOAL_ECHANGED) {
    return 0;
  }
  return err == 0 ? 1 : err;
}

int manifest_hash_run(int fd, uint64_t size, unsigned chunk_log2, uint32_t c0,
                      uint32_t c1, uint8_t *out) {
  const uint64_t cs = (uint64_t)1 << chunk_log2;
  const uint64_t first = (uint64_t)c0 * cs;
  uint64_t last = (uint64_t)c1 * cs;
  uint8_t *buf;
  int err;

  if (c0 >= c1) {
    return 0;
  }
  if (first >= size) {
    return SHOAL_EINVAL; /* no such chunk in a file of that size */
  }
  last = last < size ? last : size;
  /* Read-ahead for the mapping's faults as well as for reads: both go
   * through the descriptor's read-ahead state. */
  (void)posix_fadvise(fd, (off_t)first, (off_t)(last - first),
                      POSIX_FADV_SEQUENTIAL);
  err = hash_mapped(fd, first, last - first, cs, out);
  if (err != 0) {
    return err == 1 ? 0 : err;
  }
  buf = malloc(MANIFEST_READ_BYTES);
  if (buf == NULL) {
    return SHOAL_ENOMEM;
  }
  for (uint32_t c = c0; c < c1 && err == 0; c++) {
    uint64_t off = (uint64_t)c * cs;
    uint64_t len = size - off < cs ? size - off : cs;
    err = manifest_hash_chunk(fd, off, len, buf,
                              out + (size_t)(c - c0) * MANIFEST_HASH_BYTES);
  }
  free(buf);
  return err;
}

/* Hashes chunks [c0, c1) of one file. Runs on a worker thread or inline;
 * touches only its own chunk slots of the hash array. */
static void hash_range(struct job *j) {
  const struct manifest *m = j->b->m;
  const struct manifest_file *f = &m->files[j->file];
  char path[2 * MANIFEST_MAX_PATH + 2];
  struct stat st;
  int fd = -1;

  if (j->c0 == j->c1) {
    return; /* the empty job that reports a content with no chunks */
  }
  snprintf(path, sizeof(path), "%s/%s", m->local_root, f->path);
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    j->err = -errno;
    goto out;
  }
  if (fstat(fd, &st) != 0) {
    j->err = -errno;
    goto out;
  }
  if (!fsutil_stat_matches(&st, f)) {
    j->err = SHOAL_ECHANGED;
    goto out;
  }
  j->ctime = st.st_ctim;
  j->err = manifest_hash_run(fd, f->size, m->chunk_log2, j->c0, j->c1,
                             m->hashes + (size_t)(f->first_chunk + j->c0) *
                                             MANIFEST_HASH_BYTES);
  if (j->err != 0) {
    goto out; /* SHOAL_ECHANGED: shorter than when it was scanned */
  }
  /* A write during hashing shows in the modification time, and in the
   * status-change time even when the modification time was put back. */
  if (fstat(fd, &st) != 0) {
    j->err = -errno;
  } else if (!fsutil_stat_matches(&st, f)) {
    j->err = SHOAL_ECHANGED;
  } else {
    j->ctime_ok = st.st_ctim.tv_sec == j->ctime.tv_sec &&
                  st.st_ctim.tv_nsec == j->ctime.tv_nsec;
  }

out:
  if (fd >= 0) {
    close(fd);
  }
}

/* Takes the next range of chunks to hash. Returns 0 when none is left. */
static int next_job(struct manifest_builder *b, struct job *j) {
  const struct manifest *m = b->m;
  const uint64_t cs = (uint64_t)1 << m->chunk_log2;
  uint32_t per_job = (uint32_t)(MANIFEST_JOB_BYTES / cs);

  if (per_job == 0) {
    per_job = 1;
  }
  while (b->next_file < m->file_count &&
         b->next_chunk >= m->files[b->next_file].chunk_count) {
    b->next_file++;
    b->next_chunk = 0;
  }
  if (b->next_file == m->file_count) {
    return 0;
  }
  const struct manifest_file *f = &m->files[b->next_file];
  uint32_t end = f->chunk_count - b->next_chunk > per_job
                     ? b->next_chunk + per_job
                     : f->chunk_count;
  memset(j, 0, sizeof(*j));
  j->b = b;
  j->file = b->next_file;
  j->c0 = b->next_chunk;
  j->c1 = end;
  uint64_t first = (uint64_t)j->c0 * cs;
  uint64_t last = (uint64_t)end * cs;
  j->bytes = (last < f->size ? last : f->size) - first;
  b->next_chunk = end;
  return 1;
}

static void progress(struct manifest_builder *b, uint64_t bytes) {
  b->done += bytes;
  if (b->opts.progress != NULL) {
    b->opts.progress(b->opts.arg, b->done, b->m->total_size);
  }
}

static void builder_free(struct manifest_builder *b) {
  manifest_free(b->m);
  identity_close(&b->publisher);
  free(b);
}

static void work_cb(uv_work_t *req) {
  hash_range(req->data);
}

static void after_work_cb(uv_work_t *req, int status);

static void queue_jobs(struct manifest_builder *b) {
  /* Two jobs per worker: the next one is already queued when a worker
   * finishes, so no thread waits for the loop to hand it work. */
  while (b->status == 0 && !b->canceled && b->in_flight < 2 * b->opts.threads) {
    struct job tmp;
    if (!next_job(b, &tmp)) {
      if (b->queued_any) {
        break;
      }
      /* Nothing to hash: still go through the pool once so that the
       * callback never runs inside manifest_build_start(). */
      memset(&tmp, 0, sizeof(tmp));
      tmp.b = b;
    }
    struct job *j = malloc(sizeof(*j));
    if (j == NULL) {
      b->status = SHOAL_ENOMEM;
      break;
    }
    *j = tmp;
    j->req.data = j;
    int err = uv_queue_work(b->loop, &j->req, work_cb, after_work_cb);
    if (err != 0) {
      free(j);
      b->status = err;
      break;
    }
    b->queued_any = 1;
    b->in_flight++;
    j->prev = NULL;
    j->next = b->jobs;
    if (b->jobs != NULL) {
      b->jobs->prev = j;
    }
    b->jobs = j;
  }
}

static void finish(struct manifest_builder *b) {
  struct manifest *m = NULL;
  int status = b->canceled && b->status == 0 ? SHOAL_ECANCELED : b->status;

  if (status == 0) {
    status = manifest_seal(b->m, &b->publisher);
  }
  if (status == 0) {
    m = b->m;
    b->m = NULL;
  } else if (b->err_path[0] != '\0') {
    set_err_path(&b->opts, b->err_path);
  }
  b->cb(b->arg, status, m);
  builder_free(b);
}

static void after_work_cb(uv_work_t *req, int status) {
  struct job *j = req->data;
  struct manifest_builder *b = j->b;

  b->in_flight--;
  if (j->prev != NULL) {
    j->prev->next = j->next;
  } else {
    b->jobs = j->next;
  }
  if (j->next != NULL) {
    j->next->prev = j->prev;
  }
  if (status == UV_ECANCELED) {
    b->canceled = 1;
  } else if (j->err != 0 && b->status == 0) {
    b->status = j->err;
    note_job_error(b, j);
  } else if (j->err == 0) {
    note_job_ctime(b, j);
    progress(b, j->bytes);
  }
  free(j);
  queue_jobs(b);
  if (b->in_flight == 0) {
    finish(b);
  }
}

static int builder_new(const char *path, const struct identity *publisher,
                       const struct manifest_build_opts *opts,
                       struct manifest_builder **out) {
  struct manifest_builder *b = calloc(1, sizeof(*b));
  int err;

  *out = NULL;
  if (b == NULL) {
    return SHOAL_ENOMEM;
  }
  if (sodium_init() < 0) {
    abort();
  }
  if (opts != NULL) {
    b->opts = *opts;
  }
  b->publisher = *publisher;
  b->m = calloc(1, sizeof(*b->m));
  if (b->m == NULL) {
    builder_free(b);
    return SHOAL_ENOMEM;
  }
  err = scan_path(b->m, path, opts);
  if (err != 0) {
    builder_free(b);
    return err;
  }
  *out = b;
  return 0;
}

int manifest_build_start(uv_loop_t *loop, const char *path,
                         const struct identity *publisher,
                         const struct manifest_build_opts *opts,
                         manifest_build_cb cb, void *arg,
                         struct manifest_builder **out) {
  struct manifest_builder *b;
  int err = builder_new(path, publisher, opts, &b);

  if (out != NULL) {
    *out = NULL;
  }
  if (err != 0) {
    return err;
  }
  b->loop = loop;
  b->cb = cb;
  b->arg = arg;
  if (b->opts.threads == 0) {
    b->opts.threads = 1;
  }
  queue_jobs(b);
  if (b->in_flight == 0) {
    err = b->status;
    builder_free(b);
    return err;
  }
  if (out != NULL) {
    *out = b;
  }
  return 0;
}

void manifest_build_cancel(struct manifest_builder *b) {
  /* Jobs not yet picked up by a worker are cancelled (their after-work
   * callback sees UV_ECANCELED); running ones finish their range. */
  b->canceled = 1;
  for (struct job *j = b->jobs; j != NULL; j = j->next) {
    (void)uv_cancel((uv_req_t *)&j->req);
  }
}

struct sync_result {
  int status;
  struct manifest *m;
};

static void sync_done(void *arg, int status, struct manifest *m) {
  struct sync_result *r = arg;
  r->status = status;
  r->m = m;
}

int manifest_build(const char *path, const struct identity *publisher,
                   const struct manifest_build_opts *opts,
                   struct manifest **out) {
  struct manifest_builder *b;
  int err;

  *out = NULL;
  if (opts != NULL && opts->threads > 0) {
    struct sync_result r = {.status = SHOAL_ECANCELED, .m = NULL};
    uv_loop_t loop;
    err = uv_loop_init(&loop);
    if (err != 0) {
      return err;
    }
    err =
        manifest_build_start(&loop, path, publisher, opts, sync_done, &r, NULL);
    if (err == 0) {
      uv_run(&loop, UV_RUN_DEFAULT);
      err = r.status;
      *out = r.m;
    }
    uv_loop_close(&loop);
    return err;
  }

  err = builder_new(path, publisher, opts, &b);
  if (err != 0) {
    return err;
  }
  struct job j;
  while (next_job(b, &j)) {
    hash_range(&j);
    if (j.err != 0) {
      err = j.err;
      note_job_error(b, &j);
      set_err_path(opts, b->err_path);
      builder_free(b);
      return err;
    }
    note_job_ctime(b, &j);
    progress(b, j.bytes);
  }
  err = manifest_seal(b->m, &b->publisher);
  if (err == 0) {
    *out = b->m;
    b->m = NULL;
  }
  builder_free(b);
  return err;
}
