/* The asynchronous storage object: one content on one peer, a read-only
 * source or a download into a partial copy that survives a restart, whose
 * disk work and hashing run on libuv's thread pool while the loop thread
 * keeps the books.
 *
 * The blocking work it queues lives in the modules below it: the partial
 * copy's steps in peer/partcopy.c, reading a source's files in
 * peer/source.c, the resume record in peer/resume.c, and plain file-system
 * calls in peer/fsutil.c.
 *
 * Which chunks are verified is kept in a resume record at the caller's
 * resume_path, saved atomically. A record of the wrong size, magic,
 * checksum, chunk count or content is ignored and the download starts
 * over: the partial copy is emptied. A record that cannot be read at all
 * (EIO, EMFILE) fails the open instead, keeping the partial copy. A listed
 * chunk is never trusted: it is hashed again on resume, and a resumed
 * partial folder is first pruned to exactly the manifest's paths (strays
 * would otherwise be renamed into place with it).
 *
 * Threads. Every disk access and every hash runs in a uv_queue_work() item;
 * the loop thread only does bookkeeping. Workers read the manifest and the
 * storage's fixed fields (paths, descriptors set before the work was queued)
 * and write only their own request; the have-map, counters and flags change
 * on the loop thread, in the after-work callbacks. A request that completes
 * without disk work (a chunk already had) is finished from an idle handle on
 * a later loop iteration, so no callback ever runs inside the call that
 * started it.
 *
 * Descriptors. A download keeps two open: DIR, and the partial file (file
 * content) or partial folder (folder content), which holds the flock() that
 * keeps other downloads out of it; a file content also keeps the partial
 * file open with O_DIRECT (see partcopy_write). Files inside the folder are
 * opened per operation with openat() one segment at a time, with
 * O_NOFOLLOW throughout, so a symlink planted in the partial folder is never
 * followed; since they are relative to the kept descriptor, reads keep
 * working after the final rename. A source of one file keeps that file
 * open; a folder source opens its file per read. So a storage holds at most
 * three descriptors plus one per running work item, well under
 * STORAGE_MAX_OPEN with libuv's default pool, and needs no cache.
 */
#include "peer/storage.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/chash.h"
#include "common/error.h"
#include "common/log.h"
#include "common/pwire.h"
#include "peer/fsutil.h"
#include "peer/partcopy.h"
#include "peer/resume.h"
#include "peer/source.h"

/* Re-hash jobs kept queued while a download resumes: enough to keep a few
 * pool threads busy without starving other users of the pool. */
#define REHASH_JOBS 4

#define container_of(p, type, field)                                           \
  ((type *)(void *)((char *)(p)-offsetof(type, field)))

struct deferred {
  struct deferred *next;
  storage_cb cb;
  void *arg;
  int status;
};

struct finish_req;

struct storage {
  uv_loop_t *loop;
  const struct manifest *m;
  int is_source;
  int source_fd; /* source of one file: that file, else -1 */

  /* Download only. */
  struct partcopy pc; /* descriptors set when the open succeeds */
  char *resume_path;
  uint8_t *inflight; /* chunks with a put in flight */
  uint8_t *listed;   /* chunks the resume record listed (while opening) */
  uint32_t hash_next;
  unsigned hash_jobs;
  int open_status;
  storage_cb open_cb;
  void *open_arg;
  int ready;     /* the open callback reported success */
  int finishing; /* storage_finish is under way */
  int finished;  /* the partial copy was renamed into place */
  int dirty;     /* the have-map changed since the last save began */
  int saving;
  int save_failed; /* the last save failed (logged once per streak) */
  uint64_t last_save;
  struct finish_req *finish_wait;    /* queued once the running save ends */
  char open_why[PARTCOPY_WHY_BYTES]; /* why the open failed, for the user */

  /* Both kinds. */
  uint8_t *have;
  size_t have_len;
  uint32_t have_count;
  uint64_t have_bytes;
  uint8_t *changed_logged; /* source: files already logged as changed */
  uint8_t *verified;       /* source: chunks hashed since the open */
  uint8_t *verifying;      /* source: chunks a read is hashing now */
  int changed;             /* source: a change was found (change says it) */
  struct storage_change change;
  int checking; /* source: storage_check_source under way */

  unsigned pending; /* work items and deferred completions not done */
  struct deferred *defer_head;
  struct deferred *defer_tail;
  uv_timer_t save_timer;
  uv_idle_t defer_idle;
  int handles_open;
  int closing;
  int releasing;
  int close_status;
  storage_cb close_cb;
  void *close_arg;
};

struct open_req {
  uv_work_t work;
  struct storage *s;
  int status;
  struct partcopy_open o;
};

struct hash_job {
  uv_work_t work;
  struct storage *s;
  uint32_t c0;
  uint32_t c1;
  uint8_t *ok; /* bit i: chunk c0 + i verified */
};

struct put_req {
  uv_work_t work;
  struct storage *s;
  uint32_t idx;
  uint32_t file;
  uint64_t offset;
  uint32_t len;
  uint8_t *data;
  uint8_t *bad_hashes;         /* caller's, filled when the chunk fails */
  struct pwire_sealed *sealed; /* caller's: blocks to open first */
  uint8_t *unopened;           /* caller's: set for those that did not */
  int status;
  storage_cb cb;
  void *arg;
};

struct read_req {
  uv_work_t work;
  struct storage *s;
  /* The block: its file and place in it, its chunk and where that starts;
   * for a source, whether its chunk is hashed whole first (verify). */
  struct source_block b;
  struct storage_change change; /* what differs, on SHOAL_ECHANGED */
  uint8_t *data;
  int owned; /* data was allocated here (storage_read), not the caller's */
  int status;
  storage_read_cb cb;
  void *arg;
};

struct save_req {
  uv_work_t work;
  struct storage *s;
  uint8_t *record; /* the bitmap is filled in; the worker adds the rest */
  size_t record_len;
  int save; /* release only: whether to write the record */
  int status;
};

struct finish_req {
  uv_work_t work;
  struct storage *s;
  int status;
  int unlink_err;
  storage_cb cb;
  void *arg;
};

/* ------------------------------------------------------------------------ */
/* Bitmaps (the pwire.h have-map layout) */

static size_t map_bytes(uint32_t n) {
  return ((size_t)n + 7) / 8;
}

static int bit_get(const uint8_t *map, uint32_t i) {
  return (map[i >> 3] >> (7 - (i & 7))) & 1;
}

static void bit_set(uint8_t *map, uint32_t i) {
  map[i >> 3] |= (uint8_t)(0x80u >> (i & 7));
}

static void bit_clear(uint8_t *map, uint32_t i) {
  map[i >> 3] &= (uint8_t) ~(0x80u >> (i & 7));
}

/* ------------------------------------------------------------------------ */
/* Chunk buffers */

/* A chunk buffer is a malloc'd block of len + STORAGE_DIRECT_ALIGN bytes,
 * the buffer the first aligned address at least sizeof(void *) into it, and
 * the block's own address stored just before the buffer. Blocks of one
 * size reuse each other's space on the heap; posix_memalign() would leave
 * slack beside each that small allocations fill, and the heap grows. */
void *storage_chunk_alloc(size_t len) {
  uint8_t *block;
  uintptr_t at;

  if (len == 0 || len > SIZE_MAX - STORAGE_DIRECT_ALIGN) {
    return NULL;
  }
  block = malloc(len + STORAGE_DIRECT_ALIGN);
  if (block == NULL) {
    return NULL;
  }
  at = ((uintptr_t)block + sizeof(void *) + STORAGE_DIRECT_ALIGN - 1) &
       ~(uintptr_t)(STORAGE_DIRECT_ALIGN - 1);
  memcpy((uint8_t *)at - sizeof(void *), &block, sizeof(void *));
  return (void *)at;
}

void storage_chunk_free(void *p) {
  void *block;

  if (p == NULL) {
    return;
  }
  memcpy(&block, (uint8_t *)p - sizeof(void *), sizeof(void *));
  free(block);
}

/* ------------------------------------------------------------------------ */
/* Loop-side plumbing */

static void maybe_close(struct storage *s);
static void schedule_save(struct storage *s);
static void queue_finish(struct storage *s, struct finish_req *r);

static void on_defer(uv_idle_t *h) {
  struct storage *s = h->data;
  struct deferred *d = s->defer_head;

  /* Completions deferred by these callbacks wait for the next round. */
  s->defer_head = NULL;
  s->defer_tail = NULL;
  uv_idle_stop(h);
  while (d != NULL) {
    struct deferred *next = d->next;
    if (d->cb != NULL) {
      d->cb(d->arg, d->status);
    }
    free(d);
    s->pending--;
    d = next;
  }
  maybe_close(s);
}

/* Completes a request on a later loop iteration. */
static int defer(struct storage *s, storage_cb cb, void *arg, int status) {
  struct deferred *d = malloc(sizeof(*d));
  if (d == NULL) {
    return SHOAL_ENOMEM;
  }
  d->next = NULL;
  d->cb = cb;
  d->arg = arg;
  d->status = status;
  if (s->defer_tail != NULL) {
    s->defer_tail->next = d;
  } else {
    s->defer_head = d;
  }
  s->defer_tail = d;
  s->pending++;
  uv_idle_start(&s->defer_idle, on_defer);
  return 0;
}

static void storage_free(struct storage *s) {
  struct deferred *d = s->defer_head;
  while (d != NULL) { /* empty by now; kept for safety */
    struct deferred *next = d->next;
    free(d);
    d = next;
  }
  partcopy_close(&s->pc);
  free(s->resume_path);
  free(s->inflight);
  free(s->listed);
  free(s->have);
  free(s->changed_logged);
  free(s->verified);
  free(s->verifying);
  free(s);
}

static void on_handle_closed(uv_handle_t *h) {
  struct storage *s = h->data;
  if (--s->handles_open == 0) {
    storage_cb cb = s->close_cb;
    void *arg = s->close_arg;
    int status = s->close_status;
    storage_free(s);
    if (cb != NULL) {
      cb(arg, status);
    }
  }
}

static void close_handles(struct storage *s) {
  s->handles_open = 2;
  uv_close((uv_handle_t *)&s->save_timer, on_handle_closed);
  uv_close((uv_handle_t *)&s->defer_idle, on_handle_closed);
}

/* Closes the descriptors the storage keeps. */
static void close_fds(const struct storage *s) {
  if (s->source_fd >= 0) {
    close(s->source_fd);
  }
  if (s->pc.direct_fd >= 0) {
    close(s->pc.direct_fd);
  }
  if (s->pc.root_fd >= 0) {
    close(s->pc.root_fd);
  }
  if (s->pc.dir_fd >= 0) {
    close(s->pc.dir_fd);
  }
}

/* Once they are closed, on the loop thread. */
static void forget_fds(struct storage *s) {
  s->source_fd = -1;
  s->pc.direct_fd = -1;
  s->pc.root_fd = -1;
  s->pc.dir_fd = -1;
}

static void release_work(uv_work_t *w) {
  struct save_req *r = container_of(w, struct save_req, work);
  struct storage *s = r->s;

  if (r->save) {
    resume_seal(r->record, s->m->id, s->m->chunk_count);
    r->status = resume_write(s->resume_path, r->record, r->record_len);
  }
  close_fds(s);
}

static void after_release(uv_work_t *w, int status) {
  struct save_req *r = container_of(w, struct save_req, work);
  struct storage *s = r->s;

  (void)status;
  forget_fds(s);
  s->close_status = r->status;
  if (r->status != 0) {
    log_warn("storage", "%s: cannot save the resume record: %s", s->resume_path,
             shoal_strerror(r->status));
  }
  free(r->record);
  free(r);
  close_handles(s);
}

/* Once storage_close was called and nothing is pending: saves the record,
 * closes the descriptors (on the pool), then the handles. */
static void maybe_close(struct storage *s) {
  struct save_req *r;

  if (!s->closing || s->pending != 0 || s->releasing) {
    return;
  }
  s->releasing = 1;
  uv_timer_stop(&s->save_timer);
  int save = !s->is_source && s->ready && !s->finished;
  if (!save && s->source_fd < 0 && s->pc.root_fd < 0 && s->pc.dir_fd < 0 &&
      s->pc.direct_fd < 0) {
    close_handles(s);
    return;
  }
  r = calloc(1, sizeof(*r));
  if (r != NULL && save) {
    r->record_len = resume_size(s->m->chunk_count);
    r->record = malloc(r->record_len);
    if (r->record == NULL) {
      free(r);
      r = NULL;
    } else {
      memcpy(r->record + RESUME_MAP_AT, s->have, s->have_len);
    }
  }
  if (r == NULL) {
    /* Out of memory: the record stays as last saved; the descriptors are
     * closed here, once, rather than leaked. */
    s->close_status = SHOAL_ENOMEM;
    close_fds(s);
    forget_fds(s);
    close_handles(s);
    return;
  }
  r->s = s;
  r->save = save;
  uv_queue_work(s->loop, &r->work, release_work, after_release);
}

/* ------------------------------------------------------------------------ */
/* Debounced saves */

static void save_work(uv_work_t *w) {
  struct save_req *r = container_of(w, struct save_req, work);
  resume_seal(r->record, r->s->m->id, r->s->m->chunk_count);
  r->status = resume_write(r->s->resume_path, r->record, r->record_len);
}

static void after_save(uv_work_t *w, int status) {
  struct save_req *r = container_of(w, struct save_req, work);
  struct storage *s = r->s;

  (void)status;
  s->saving = 0;
  s->last_save = uv_now(s->loop);
  if (r->status != 0) {
    s->dirty = 1; /* try again after STORAGE_SAVE_MS */
    if (!s->save_failed) {
      log_warn("storage", "%s: cannot save the resume record: %s",
               s->resume_path, shoal_strerror(r->status));
    }
    s->save_failed = 1;
  } else {
    s->save_failed = 0;
  }
  free(r->record);
  free(r);
  if (s->finish_wait != NULL) {
    struct finish_req *f = s->finish_wait;
    s->finish_wait = NULL;
    queue_finish(s, f);
  } else if (s->dirty) {
    schedule_save(s);
  }
  s->pending--;
  maybe_close(s);
}

static void start_save(struct storage *s) {
  struct save_req *r = calloc(1, sizeof(*r));

  if (r != NULL) {
    r->record_len = resume_size(s->m->chunk_count);
    r->record = malloc(r->record_len);
  }
  if (r == NULL || r->record == NULL) {
    free(r);
    s->last_save = uv_now(s->loop);
    schedule_save(s); /* try again later */
    return;
  }
  r->s = s;
  memcpy(r->record + RESUME_MAP_AT, s->have, s->have_len);
  s->dirty = 0;
  s->saving = 1;
  s->pending++;
  uv_queue_work(s->loop, &r->work, save_work, after_save);
}

static void on_save_timer(uv_timer_t *t) {
  struct storage *s = t->data;
  if (s->dirty && !s->saving && !s->closing && !s->finishing && !s->finished) {
    start_save(s);
  }
}

/* Marks the record dirty and makes sure a save comes, at most one per
 * STORAGE_SAVE_MS of loop time. */
static void schedule_save(struct storage *s) {
  s->dirty = 1;
  if (s->saving || s->closing || s->finishing || s->finished ||
      uv_is_active((uv_handle_t *)&s->save_timer)) {
    return;
  }
  uint64_t now = uv_now(s->loop);
  uint64_t due = s->last_save + STORAGE_SAVE_MS;
  uv_timer_start(&s->save_timer, on_save_timer, due > now ? due - now : 0, 0);
}

/* ------------------------------------------------------------------------ */
/* Opening */

static struct storage *storage_alloc(uv_loop_t *loop,
                                     const struct manifest *m) {
  struct storage *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    return NULL;
  }
  s->loop = loop;
  s->m = m;
  s->source_fd = -1;
  s->pc.dir_fd = -1;
  s->pc.root_fd = -1;
  s->pc.direct_fd = -1;
  s->have_len = map_bytes(m->chunk_count);
  s->have = calloc(s->have_len > 0 ? s->have_len : 1, 1);
  if (s->have == NULL) {
    free(s);
    return NULL;
  }
  return s;
}

/* The last step of a successful open call: from here on the storage is
 * freed only through its handles' close callbacks. Initialising handles
 * touches no disk. */
static void storage_start(struct storage *s) {
  uv_timer_init(s->loop, &s->save_timer);
  uv_idle_init(s->loop, &s->defer_idle);
  s->save_timer.data = s;
  s->defer_idle.data = s;
}

static int check_sizes(const struct manifest *m) {
  for (uint32_t i = 0; i < m->file_count; i++) {
    if (m->files[i].size > (uint64_t)INT64_MAX) {
      return SHOAL_ESIZE;
    }
  }
  return 0;
}

int storage_open_source(struct storage **out, uv_loop_t *loop,
                        const struct manifest *m) {
  struct storage *s;
  int err;

  *out = NULL;
  if (m->local_root == NULL || m->file_count == 0 ||
      (m->kind != MANIFEST_KIND_FILE && m->kind != MANIFEST_KIND_FOLDER)) {
    return SHOAL_EINVAL;
  }
  err = check_sizes(m);
  if (err != 0) {
    return err;
  }
  s = storage_alloc(loop, m);
  if (s == NULL) {
    return SHOAL_ENOMEM;
  }
  s->is_source = 1;
  s->changed_logged = calloc(map_bytes(m->file_count), 1);
  s->verified = calloc(s->have_len > 0 ? s->have_len : 1, 1);
  s->verifying = calloc(s->have_len > 0 ? s->have_len : 1, 1);
  if (s->changed_logged == NULL || s->verified == NULL ||
      s->verifying == NULL) {
    storage_free(s);
    return SHOAL_ENOMEM;
  }
  for (uint32_t i = 0; i < m->chunk_count; i++) {
    bit_set(s->have, i);
  }
  s->have_count = m->chunk_count;
  s->have_bytes = m->total_size;
  if (m->kind == MANIFEST_KIND_FILE) {
    /* One shared file: one descriptor for every read, instead of opening
     * the file again for each block. Each read still checks its size and
     * modification time before and after. If it cannot be opened now, the
     * reads open it themselves (and report why). */
    int fd = source_open(m, 0);
    s->source_fd = fd >= 0 ? fd : -1;
    if (fd >= 0) {
      /* Peers mostly ask for chunks in runs: a larger read-ahead keeps the
       * disk ahead of them when the file is not in the page cache. */
      (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
  }
  s->ready = 1;
  storage_start(s);
  *out = s;
  return 0;
}

static void open_work(uv_work_t *w) {
  struct open_req *r = container_of(w, struct open_req, work);
  struct storage *s = r->s;

  r->status = partcopy_open(&s->pc, s->resume_path, s->listed, &r->o);
}

/* Reports the end of an open, successful or not, and leaves the storage
 * ready or inert. */
static void open_done(struct storage *s, int status) {
  if (s->closing && status == 0) {
    status = SHOAL_ECANCELED;
  }
  if (status == 0) {
    s->ready = 1;
  } else {
    memset(s->have, 0, s->have_len);
    s->have_count = 0;
    s->have_bytes = 0;
  }
  free(s->listed);
  s->listed = NULL;
  if (s->open_cb != NULL) {
    s->open_cb(s->open_arg, status);
  }
}

static void hash_work(uv_work_t *w) {
  struct hash_job *j = container_of(w, struct hash_job, work);
  const struct storage *s = j->s;
  const struct manifest *m = s->m;
  uint8_t *buf = malloc((size_t)1 << m->chunk_log2);
  uint32_t cur = UINT32_MAX;
  int fd = -1;

  if (buf == NULL) {
    return; /* nothing verified: those chunks are fetched again */
  }
  for (uint32_t idx = j->c0; idx < j->c1; idx++) {
    uint32_t file;
    uint64_t off;
    if (!bit_get(s->listed, idx) ||
        manifest_chunk_file(m, idx, &file, &off) != 0) {
      continue;
    }
    if (file != cur) {
      partcopy_file_release(&s->pc, fd);
      fd = partcopy_file_open(&s->pc, file, O_RDONLY);
      cur = file;
    }
    if (fd < 0) {
      continue;
    }
    uint32_t len = manifest_chunk_len(m, idx);
    if (fsutil_pread_full(fd, buf, len, off) == (ssize_t)len &&
        manifest_verify_chunk(m, idx, buf, len) == 0) {
      bit_set(j->ok, idx - j->c0);
    }
  }
  partcopy_file_release(&s->pc, fd);
  free(buf);
}

static void queue_hash_jobs(struct storage *s);

static void after_hash(uv_work_t *w, int status) {
  struct hash_job *j = container_of(w, struct hash_job, work);
  struct storage *s = j->s;

  (void)status;
  for (uint32_t idx = j->c0; idx < j->c1; idx++) {
    if (bit_get(j->ok, idx - j->c0)) {
      bit_set(s->have, idx);
      s->have_count++;
      s->have_bytes += manifest_chunk_len(s->m, idx);
    }
  }
  free(j->ok);
  free(j);
  s->hash_jobs--;
  queue_hash_jobs(s);
  if (s->hash_jobs == 0) {
    if (!s->closing && s->open_status == 0) {
      log_info("storage", "%s: resumed with %u of %u chunks verified",
               s->pc.final_path, s->have_count, s->m->chunk_count);
    }
    open_done(s, s->open_status);
  }
  s->pending--;
  maybe_close(s);
}

/* Keeps up to REHASH_JOBS re-hash jobs queued, each over listed chunks of
 * about MANIFEST_JOB_BYTES. */
static void queue_hash_jobs(struct storage *s) {
  const struct manifest *m = s->m;
  const uint32_t n = m->chunk_count;

  while (s->hash_jobs < REHASH_JOBS && s->hash_next < n && !s->closing &&
         s->open_status == 0) {
    uint32_t c0 = s->hash_next;
    while (c0 < n && !bit_get(s->listed, c0)) {
      c0++;
    }
    if (c0 == n) {
      s->hash_next = n;
      break;
    }
    uint32_t c1 = c0;
    uint64_t bytes = 0;
    while (c1 < n && bytes < MANIFEST_JOB_BYTES) {
      if (bit_get(s->listed, c1)) {
        bytes += manifest_chunk_len(m, c1);
      }
      c1++;
    }
    struct hash_job *j = calloc(1, sizeof(*j));
    if (j != NULL) {
      j->ok = calloc(map_bytes(c1 - c0), 1);
    }
    if (j == NULL || j->ok == NULL) {
      free(j);
      s->open_status = SHOAL_ENOMEM;
      break;
    }
    j->s = s;
    j->c0 = c0;
    j->c1 = c1;
    s->hash_next = c1;
    s->hash_jobs++;
    s->pending++;
    uv_queue_work(s->loop, &j->work, hash_work, after_hash);
  }
}

static void after_open(uv_work_t *w, int status) {
  struct open_req *r = container_of(w, struct open_req, work);
  struct storage *s = r->s;

  (void)status;
  s->pc.dir_fd = r->o.dir_fd;
  s->pc.root_fd = r->o.root_fd;
  s->pc.direct_fd = r->o.direct_fd;
  if (r->status != 0) {
    memcpy(s->open_why, r->o.why, sizeof(s->open_why));
  }
  if (r->status == 0 && !r->o.resumed) {
    if (r->o.record == RESUME_CORRUPT) {
      log_warn("storage", "%s: resume record is corrupt; starting over",
               s->resume_path);
    } else if (r->o.record == RESUME_OTHER) {
      log_warn("storage",
               "%s: resume record is for another content; starting over",
               s->resume_path);
    } else if (r->o.record == RESUME_OK) {
      log_info("storage", "%s: partial copy is gone; starting over",
               s->pc.final_path);
    } else if (r->o.part_existed) {
      log_info("storage",
               "%s: partial copy has no resume record; starting "
               "over",
               s->pc.final_path);
    }
  }
  if (r->status != 0 || s->closing || !r->o.resumed) {
    open_done(s, r->status);
  } else {
    s->hash_next = 0;
    queue_hash_jobs(s);
    if (s->hash_jobs == 0) {
      open_done(s, s->open_status);
    }
  }
  free(r);
  s->pending--;
  maybe_close(s);
}

int storage_open_download(struct storage **out, uv_loop_t *loop,
                          const struct manifest *m, const char *dir,
                          const char *resume_path, storage_cb cb, void *arg) {
  struct storage *s = NULL;
  struct open_req *r = NULL;
  int err;

  *out = NULL;
  if (dir == NULL || dir[0] == '\0' || resume_path == NULL ||
      resume_path[0] == '\0') {
    return SHOAL_EINVAL;
  }
  err = partcopy_check_layout(m);
  if (err == 0) {
    err = check_sizes(m);
  }
  if (err != 0) {
    return err;
  }
  s = storage_alloc(loop, m);
  if (s == NULL) {
    return SHOAL_ENOMEM;
  }
  err = partcopy_init(&s->pc, m, dir);
  s->resume_path = strdup(resume_path);
  s->inflight = calloc(s->have_len > 0 ? s->have_len : 1, 1);
  s->listed = calloc(s->have_len > 0 ? s->have_len : 1, 1);
  r = calloc(1, sizeof(*r));
  if (err != 0 || s->resume_path == NULL || s->inflight == NULL ||
      s->listed == NULL || r == NULL) {
    free(r);
    storage_free(s);
    return SHOAL_ENOMEM;
  }
  s->open_cb = cb;
  s->open_arg = arg;
  r->s = s;
  storage_start(s);
  s->pending++;
  uv_queue_work(loop, &r->work, open_work, after_open);
  *out = s;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Queries */

int storage_have(const struct storage *s, uint32_t idx) {
  return idx < s->m->chunk_count && bit_get(s->have, idx);
}

uint32_t storage_have_count(const struct storage *s) {
  return s->have_count;
}

uint64_t storage_have_bytes(const struct storage *s) {
  return s->have_bytes;
}

const uint8_t *storage_have_map(const struct storage *s, size_t *len) {
  *len = s->have_len;
  return s->have;
}

const char *storage_open_error(const struct storage *s) {
  return s->open_why;
}

const char *storage_final_path(const struct storage *s) {
  return s->is_source ? NULL : s->pc.final_path;
}

/* ------------------------------------------------------------------------ */
/* Writing chunks */

/* Opens a block of chunk idx at off in place from its record b, when it
 * has one (b->len not 0), and wipes the record; one that does not open
 * sets *unopened. Returns 0 or pwire_open_sealed's error. */
static int open_block(struct pwire_sealed *b, uint32_t idx, uint32_t off,
                      uint8_t *block, uint8_t *unopened) {
  int err;
  if (b->len == 0) {
    return 0;
  }
  err = pwire_open_sealed(b, idx, off, block);
  sodium_memzero(b, sizeof(*b));
  if (err != 0) {
    *unopened = 1;
  }
  return err;
}

int storage_open_blocks(struct pwire_sealed *sealed, uint32_t idx,
                        uint8_t *data, uint32_t len, uint8_t *unopened) {
  int first = 0;
  for (uint32_t i = 0, off = 0; off < len; i++, off += STORAGE_BLOCK_BYTES) {
    int err = open_block(&sealed[i], idx, off, data + off, &unopened[i]);
    first = first != 0 ? first : err;
  }
  return first;
}

/* Opens the chunk's sealed blocks in place and hashes it, block by
 * block, so that each block is hashed while it is still in the cache
 * from its opening: one pass over the chunk. Returns 0, SHOAL_EHASH, the
 * first failure of pwire_open_sealed (unopened[] says which blocks), or
 * SHOAL_ENOMEM. */
static int open_and_verify(struct put_req *r) {
  uint8_t h[CHASH_BYTES];
  struct chash ch = {0};
  int status = chash_init(&ch);
  for (uint32_t i = 0, off = 0; off < r->len; i++, off += STORAGE_BLOCK_BYTES) {
    uint32_t n =
        r->len - off < STORAGE_BLOCK_BYTES ? r->len - off : STORAGE_BLOCK_BYTES;
    int err =
        open_block(&r->sealed[i], r->idx, off, r->data + off, &r->unopened[i]);
    status = status != 0 ? status : err;
    if (status == 0 && chash_update(&ch, r->data + off, n) != 0) {
      status = SHOAL_ENOMEM;
    }
  }
  if (status == 0) {
    status = chash_final(&ch, h) != 0
                 ? SHOAL_ENOMEM
                 : manifest_chunk_digest_check(r->s->m, r->idx, h);
  }
  chash_free(&ch);
  return status;
}

static void put_work(uv_work_t *w) {
  struct put_req *r = container_of(w, struct put_req, work);
  const struct storage *s = r->s;

  r->status = r->sealed != NULL
                  ? open_and_verify(r)
                  : manifest_verify_chunk(s->m, r->idx, r->data, r->len);
  if (r->status == SHOAL_EHASH && r->bad_hashes != NULL) {
    /* Block by block, so the caller can tell later which sender's block
     * differed from the verified copy. */
    for (uint32_t off = 0, i = 0; off < r->len;
         off += STORAGE_BLOCK_BYTES, i++) {
      uint32_t n = r->len - off < STORAGE_BLOCK_BYTES ? r->len - off
                                                      : STORAGE_BLOCK_BYTES;
      crypto_generichash(r->bad_hashes + (size_t)i * 32, 32, r->data + off, n,
                         NULL, 0);
    }
  }
  if (r->status != 0) {
    return;
  }
  r->status = partcopy_write(&s->pc, r->file, r->data, r->len, r->offset);
}

static void after_put(uv_work_t *w, int status) {
  struct put_req *r = container_of(w, struct put_req, work);
  struct storage *s = r->s;

  (void)status;
  bit_clear(s->inflight, r->idx);
  if (r->status == 0) {
    bit_set(s->have, r->idx);
    s->have_count++;
    s->have_bytes += r->len;
    schedule_save(s);
  }
  storage_chunk_free(r->data);
  if (r->cb != NULL) {
    r->cb(r->arg, r->status);
  }
  free(r);
  s->pending--;
  maybe_close(s);
}

int storage_put_chunk(struct storage *s, uint32_t idx, uint8_t *data,
                      storage_cb cb, void *arg) {
  return storage_put_chunk_or_hash_blocks(s, idx, data, NULL, NULL, NULL, cb,
                                          arg);
}

int storage_put_chunk_or_hash_blocks(struct storage *s, uint32_t idx,
                                     uint8_t *data, uint8_t *bad_hashes,
                                     struct pwire_sealed *sealed,
                                     uint8_t *unopened, storage_cb cb,
                                     void *arg) {
  struct put_req *r;
  int err;

  assert(s != NULL && !s->closing);
  if (s->is_source || !s->ready || idx >= s->m->chunk_count || data == NULL ||
      (sealed != NULL && unopened == NULL)) {
    return SHOAL_EINVAL;
  }
  if (bit_get(s->have, idx) || bit_get(s->inflight, idx)) {
    err = defer(s, cb, arg, 0);
    if (err == 0) {
      storage_chunk_free(data);
    }
    return err;
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return SHOAL_ENOMEM;
  }
  r->s = s;
  r->idx = idx;
  manifest_chunk_file(s->m, idx, &r->file, &r->offset);
  r->len = manifest_chunk_len(s->m, idx);
  r->data = data;
  r->bad_hashes = bad_hashes;
  r->sealed = sealed;
  r->unopened = unopened;
  r->cb = cb;
  r->arg = arg;
  bit_set(s->inflight, idx);
  s->pending++;
  uv_queue_work(s->loop, &r->work, put_work, after_put);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading blocks */

/* A source file is read only when it is still what was hashed. */
static void source_read_work(uv_work_t *w) {
  struct read_req *r = container_of(w, struct read_req, work);

  /* The one file of a file content stays open for the storage's life,
   * instead of being opened again for each block. */
  r->status = source_read(r->s->m, r->s->source_fd, &r->b, r->data, &r->change);
}

static void download_read_work(uv_work_t *w) {
  struct read_req *r = container_of(w, struct read_req, work);
  const struct storage *s = r->s;
  ssize_t n;
  int fd;

  fd = partcopy_file_open(&s->pc, r->b.file, O_RDONLY);
  if (fd < 0) {
    r->status = fd;
    return;
  }
  n = fsutil_pread_full(fd, r->data, r->b.len, r->b.offset);
  partcopy_file_release(&s->pc, fd);
  r->status = n < 0 ? (int)n : (size_t)n == r->b.len ? 0 : UV_EIO;
}

/* A source file differs from what was hashed: keep the first such finding
 * for storage_source_change, log each file once. The caller tells the
 * user; the log keeps it at info so that it is not printed twice. */
static void note_change(struct storage *s, const struct storage_change *c) {
  if (!s->changed) {
    s->changed = 1;
    s->change = *c;
  }
  if (!bit_get(s->changed_logged, c->file)) {
    bit_set(s->changed_logged, c->file);
    log_info("storage", "%s/%s changed since it was shared; not serving it",
             s->m->local_root, s->m->files[c->file].path);
  }
}

static void after_read(uv_work_t *w, int status) {
  struct read_req *r = container_of(w, struct read_req, work);
  struct storage *s = r->s;

  (void)status;
  if (r->b.verify) {
    bit_clear(s->verifying, r->b.chunk);
    if (r->status == 0) {
      bit_set(s->verified, r->b.chunk);
    }
  }
  if (r->status != 0) {
    if (r->status == SHOAL_ECHANGED && s->is_source) {
      note_change(s, &r->change);
    }
    if (r->owned) {
      free(r->data);
    }
    r->data = NULL;
  }
  r->cb(r->arg, r->status, r->data, r->status == 0 ? r->b.len : 0);
  free(r);
  s->pending--;
  maybe_close(s);
}

/* Where len bytes at offset of chunk idx lie, into b (verify 0). Returns
 * 0, or SHOAL_EINVAL for a chunk not had or a block outside its chunk. */
static int block_of(const struct storage *s, uint32_t idx, uint32_t offset,
                    uint32_t len, struct source_block *b) {
  uint64_t off;
  uint32_t clen;
  if (idx >= s->m->chunk_count || !bit_get(s->have, idx)) {
    return SHOAL_EINVAL;
  }
  clen = manifest_chunk_len(s->m, idx);
  if (len == 0 || offset > clen || len > clen - offset) {
    return SHOAL_EINVAL;
  }
  memset(b, 0, sizeof(*b));
  manifest_chunk_file(s->m, idx, &b->file, &off);
  b->offset = off + offset;
  b->len = len;
  b->chunk = idx;
  b->chunk_offset = off;
  b->chunk_len = clen;
  return 0;
}

static int read_start(struct storage *s, uint32_t idx, uint32_t offset,
                      uint32_t len, uint8_t *dst, storage_read_cb cb,
                      void *arg) {
  struct source_block b;
  struct read_req *r;

  assert(s != NULL && cb != NULL && !s->closing);
  if (block_of(s, idx, offset, len, &b) != 0) {
    return SHOAL_EINVAL;
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return SHOAL_ENOMEM;
  }
  r->data = dst;
  if (dst == NULL) {
    r->data = malloc(len);
    r->owned = 1;
    if (r->data == NULL) {
      free(r);
      return SHOAL_ENOMEM;
    }
  }
  r->s = s;
  r->b = b;
  /* One read hashes a chunk; the others of that chunk meanwhile read the
   * same file, whose change that read (or the size and time checks of
   * each) will find: a chunk is hashed about once, however many blocks
   * of it are asked for at a time. */
  r->b.verify =
      s->is_source && !bit_get(s->verified, idx) && !bit_get(s->verifying, idx);
  if (r->b.verify) {
    bit_set(s->verifying, idx);
  }
  r->cb = cb;
  r->arg = arg;
  s->pending++;
  uv_queue_work(s->loop, &r->work,
                s->is_source ? source_read_work : download_read_work,
                after_read);
  return 0;
}

int storage_read(struct storage *s, uint32_t idx, uint32_t offset, uint32_t len,
                 storage_read_cb cb, void *arg) {
  return read_start(s, idx, offset, len, NULL, cb, arg);
}

int storage_read_into(struct storage *s, uint32_t idx, uint32_t offset,
                      uint32_t len, uint8_t *dst, storage_read_cb cb,
                      void *arg) {
  if (dst == NULL) {
    return SHOAL_EINVAL;
  }
  return read_start(s, idx, offset, len, dst, cb, arg);
}

int storage_read_cached(struct storage *s, uint32_t idx, uint32_t offset,
                        uint32_t len, uint8_t *dst) {
  struct source_block b;
  struct storage_change change;
  int err;

  if (!s->is_source || s->source_fd < 0 || s->closing ||
      idx >= s->m->chunk_count || !bit_get(s->have, idx) ||
      (!bit_get(s->verified, idx) && !bit_get(s->verifying, idx))) {
    /* A chunk's first read hashes it, on the thread pool. The others need
     * not wait for that hash: they are what a read on the pool would do
     * meanwhile too (read_start). */
    return UV_EAGAIN;
  }
  if (block_of(s, idx, offset, len, &b) != 0) {
    return SHOAL_EINVAL;
  }
  err = source_read_cached(s->m, s->source_fd, &b, dst, &change);
  if (err == SHOAL_ECHANGED) {
    note_change(s, &change);
  }
  return err;
}

/* ------------------------------------------------------------------------ */
/* Watching a source */

struct check_req {
  uv_work_t work;
  struct storage *s;
  int status;
  struct storage_change change;
  storage_cb cb;
  void *arg;
};

/* On the thread pool: every file, by its path, against what was hashed. */
static void check_work(uv_work_t *w) {
  struct check_req *c = container_of(w, struct check_req, work);
  c->status = source_check(c->s->m, &c->change);
}

static void after_check(uv_work_t *w, int status) {
  struct check_req *c = container_of(w, struct check_req, work);
  struct storage *s = c->s;
  (void)status;
  s->checking = 0;
  if (c->status == SHOAL_ECHANGED) {
    note_change(s, &c->change);
  }
  if (c->cb != NULL) {
    c->cb(c->arg, c->status);
  }
  free(c);
  s->pending--;
  maybe_close(s);
}

int storage_check_source(struct storage *s, storage_cb cb, void *arg) {
  struct check_req *c;
  if (!s->is_source || s->closing) {
    return SHOAL_EINVAL;
  }
  if (s->checking) {
    return SHOAL_EBUSY;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL) {
    return SHOAL_ENOMEM;
  }
  c->s = s;
  c->cb = cb;
  c->arg = arg;
  s->checking = 1;
  s->pending++;
  uv_queue_work(s->loop, &c->work, check_work, after_check);
  return 0;
}

int storage_source_change(const struct storage *s, struct storage_change *out) {
  if (!s->is_source || !s->changed) {
    memset(out, 0, sizeof(*out));
    return 0;
  }
  *out = s->change;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Finishing */

/* Every chunk is verified and written: the partial copy is finished and
 * renamed into place, and only then is the record removed. */
static void finish_work(uv_work_t *w) {
  struct finish_req *r = container_of(w, struct finish_req, work);
  const struct storage *s = r->s;

  r->status = partcopy_finish(&s->pc);
  if (r->status == 0 && unlink(s->resume_path) != 0 && errno != ENOENT) {
    r->unlink_err = -errno; /* the content is in place all the same */
  }
}

static void after_finish(uv_work_t *w, int status) {
  struct finish_req *r = container_of(w, struct finish_req, work);
  struct storage *s = r->s;

  (void)status;
  s->finishing = 0;
  if (r->status == 0) {
    s->finished = 1;
    log_info("storage", "%s: complete", s->pc.final_path);
    if (r->unlink_err != 0) {
      log_warn("storage", "%s: cannot remove the resume record: %s",
               s->resume_path, shoal_strerror(r->unlink_err));
    }
  } else if (s->dirty) {
    schedule_save(s);
  }
  if (r->cb != NULL) {
    r->cb(r->arg, r->status);
  }
  free(r);
  s->pending--;
  maybe_close(s);
}

static void queue_finish(struct storage *s, struct finish_req *r) {
  uv_queue_work(s->loop, &r->work, finish_work, after_finish);
}

int storage_finish(struct storage *s, storage_cb cb, void *arg) {
  struct finish_req *r;

  assert(s != NULL && !s->closing);
  if (s->is_source || !s->ready || s->finishing || s->finished ||
      s->have_count != s->m->chunk_count) {
    return SHOAL_EINVAL;
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return SHOAL_ENOMEM;
  }
  r->s = s;
  r->cb = cb;
  r->arg = arg;
  s->finishing = 1;
  s->pending++;
  uv_timer_stop(&s->save_timer);
  /* A save still running would write the record again after the unlink;
   * the finish waits for it. */
  if (s->saving) {
    s->finish_wait = r;
  } else {
    queue_finish(s, r);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Closing */

void storage_close(struct storage *s, storage_cb cb, void *arg) {
  assert(s != NULL && !s->closing);
  s->closing = 1;
  s->close_cb = cb;
  s->close_arg = arg;
  uv_timer_stop(&s->save_timer);
  maybe_close(s);
}
