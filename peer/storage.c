/* Storage of one content: a read-only source, or a download into a partial
 * copy that survives a restart.
 *
 * Which chunks are verified is kept in a resume record (peer/resume.h) at
 * the caller's resume_path, saved atomically. A record of the wrong size,
 * magic, checksum, chunk count or content is ignored and the download
 * starts over: the partial copy is emptied. A record that cannot be read
 * at all (EIO, EMFILE) fails the open instead, keeping the partial copy. A
 * listed chunk is never trusted: it is hashed again on resume, and a
 * resumed partial folder is first pruned to exactly the manifest's paths
 * (strays would otherwise be renamed into place with it).
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
 * keeps other downloads out of it; a file content also keeps
 * the partial file open with O_DIRECT (see write_chunk). Files inside the
 * folder are opened per operation with openat() one segment at a time, with
 * O_NOFOLLOW throughout, so a symlink planted in the partial folder is never
 * followed; since they are relative to the kept descriptor, reads keep
 * working after the final rename. A source opens its file per read. So a
 * storage holds at most three descriptors plus one per running work item,
 * well under STORAGE_MAX_OPEN with libuv's default pool, and needs no
 * cache.
 */
/* O_DIRECT: verified chunks are written past the page cache (see
 * write_chunk). */
#define _GNU_SOURCE

#include "peer/storage.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "peer/fmt.h"
#include "peer/fsutil.h"
#include "peer/resume.h"

/* Re-hash jobs kept queued while a download resumes: enough to keep a few
 * pool threads busy without starving other users of the pool. */
#define REHASH_JOBS 4
/* A source chunk is hashed in pieces of this size before it is first
 * served: bounded memory per read in flight, whatever the chunk size. */
#define SOURCE_VERIFY_PIECE (256u << 10)
/* Rounds at taking the lock on the partial copy: each retry means that
 * another download replaced it between our open and our lock. */
#define PART_LOCK_TRIES 8
/* Room for what a refused open tells the user (storage_open_error): two
 * paths would not fit whole anyway, and a truncated message still names
 * the folder first. */
#define OPEN_WHY_BYTES 1024
/* The most of a lock holder's command line that its description shows,
 * of each of its arguments, and of /proc/PID/cmdline that is read: enough
 * to tell two downloads apart by their folders and homes. */
#define HOLDER_CMDLINE_BYTES 320
#define HOLDER_ARG_BYTES 40
#define HOLDER_CMDLINE_RAW 4096
/* Marks a file in open_req.old_size that this open created. */
#define SIZE_CREATED UINT64_MAX

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
  size_t name_len;
  int is_source;

  /* Download only. */
  char *dir;
  char *final_path; /* dir/NAME */
  char *part_name;  /* NAME.shoal-part, relative to dir_fd */
  char *resume_path;
  int dir_fd;        /* set when the open succeeds, else -1 */
  int root_fd;       /* the partial file or folder, else -1 */
  int direct_fd;     /* file content: the partial file, O_DIRECT, else -1 */
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
  struct finish_req *finish_wait; /* queued once the running save ends */
  char open_why[OPEN_WHY_BYTES];  /* why the open failed, for the user */

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
  int record;
  int part_existed; /* a partial copy was there before this open */
  int created;      /* this open made the partial copy it holds */
  int resumed;
  int changing;       /* the partial copy is being emptied or reserved */
  uint64_t *old_size; /* resumed: each file's size before, or SIZE_CREATED */
  uint64_t need;      /* bytes the reservation was to take */
  int dir_fd;
  int root_fd; /* the partial copy, locked for the storage's life */
  int direct_fd;
  char why[OPEN_WHY_BYTES];
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
  uint8_t *bad_hashes; /* caller's, filled when the chunk fails */
  int status;
  storage_cb cb;
  void *arg;
};

struct read_req {
  uv_work_t work;
  struct storage *s;
  uint32_t file;
  uint64_t offset;
  uint32_t len;
  /* Source: the block's chunk, hashed whole before the first block of it
   * is served (verify), where it starts in its file, its length. */
  uint32_t chunk;
  int verify;
  uint64_t chunk_offset;
  uint32_t chunk_len;
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
/* Files of a content, from workers */

/* The path of file i inside the partial folder (folder downloads): the
 * manifest path without its leading "NAME/". */
static const char *part_rel(const struct storage *s, uint32_t i) {
  return s->m->files[i].path + s->name_len + 1;
}

/* A descriptor for file i of a download: the kept one for a file content,
 * else a fresh one that file_release() closes. */
static int file_open(const struct storage *s, uint32_t i, int flags) {
  if (s->m->kind == MANIFEST_KIND_FILE) {
    return s->root_fd;
  }
  return fsutil_open_under(s->root_fd, part_rel(s, i), flags, 0, NULL);
}

static void file_release(const struct storage *s, int fd) {
  if (fd >= 0 && fd != s->root_fd) {
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

static int direct_acquire(const struct storage *s, uint32_t i) {
  if (s->m->kind == MANIFEST_KIND_FILE) {
    return s->direct_fd;
  }
  int fd = fsutil_open_under(s->root_fd, part_rel(s, i), O_WRONLY | O_DIRECT, 0,
                             NULL);
  return fd >= 0 ? fd : -1;
}

static void direct_release(const struct storage *s, int fd) {
  if (fd >= 0 && fd != s->direct_fd) {
    close(fd);
  }
}

/* Writes n bytes at off of file i of a download, from a worker. */
static int write_chunk(const struct storage *s, uint32_t i, const uint8_t *p,
                       size_t n, uint64_t off) {
  size_t head = 0;
  int err;
  int fd;

  if ((uintptr_t)p % STORAGE_DIRECT_ALIGN == 0 &&
      off % STORAGE_DIRECT_ALIGN == 0) {
    head = n - n % STORAGE_DIRECT_ALIGN;
  }
  if (head > 0 && (fd = direct_acquire(s, i)) >= 0) {
    err = fsutil_pwrite_full(fd, p, head, off);
    direct_release(s, fd);
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
  fd = file_open(s, i, O_WRONLY);
  if (fd < 0) {
    return fd;
  }
  err = fsutil_pwrite_full(fd, p, n, off);
  file_release(s, fd);
  return err;
}

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

/* Prunes a resumed partial folder down to exactly the manifest's paths,
 * so that nothing else is renamed into place at the end. */
static int prune_part(const struct storage *s, int root_fd) {
  const uint32_t n = s->m->file_count;
  const char **paths = malloc((n > 0 ? n : 1) * sizeof(*paths));
  int err;

  if (paths == NULL) {
    return SHOAL_ENOMEM;
  }
  for (uint32_t i = 0; i < n; i++) {
    paths[i] = part_rel(s, i);
  }
  err = fsutil_prune(root_fd, paths, n);
  free(paths);
  return err;
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
  free(s->dir);
  free(s->final_path);
  free(s->part_name);
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

static void release_work(uv_work_t *w) {
  struct save_req *r = container_of(w, struct save_req, work);
  struct storage *s = r->s;

  if (r->save) {
    resume_seal(r->record, s->m->id, s->m->chunk_count);
    r->status = resume_write(s->resume_path, r->record, r->record_len);
  }
  if (s->direct_fd >= 0) {
    close(s->direct_fd);
  }
  if (s->root_fd >= 0) {
    close(s->root_fd);
  }
  if (s->dir_fd >= 0) {
    close(s->dir_fd);
  }
}

static void after_release(uv_work_t *w, int status) {
  struct save_req *r = container_of(w, struct save_req, work);
  struct storage *s = r->s;

  (void)status;
  s->direct_fd = -1;
  s->root_fd = -1;
  s->dir_fd = -1;
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
  if (!save && s->root_fd < 0 && s->dir_fd < 0 && s->direct_fd < 0) {
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
    if (s->direct_fd >= 0) {
      close(s->direct_fd);
    }
    if (s->root_fd >= 0) {
      close(s->root_fd);
    }
    if (s->dir_fd >= 0) {
      close(s->dir_fd);
    }
    s->direct_fd = s->root_fd = s->dir_fd = -1;
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
  s->name_len = strlen(m->name);
  s->dir_fd = -1;
  s->root_fd = -1;
  s->direct_fd = -1;
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

/* Every path must join under DIR as NAME.shoal-part[/rest]. */
static int check_layout(const struct manifest *m) {
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
  return check_sizes(m);
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
    int base = open(m->local_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base >= 0) {
      int fd = fsutil_open_under(base, m->files[0].path, O_RDONLY, 0, NULL);
      s->root_fd = fd >= 0 ? fd : -1;
      if (fd >= 0) {
        /* Peers mostly ask for chunks in runs: a larger read-ahead keeps
         * the disk ahead of them when the file is not in the page cache. */
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      }
      close(base);
    }
  }
  s->ready = 1;
  storage_start(s);
  *out = s;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The partial copy's lock, from workers
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
static void describe_holder(const struct storage *s, const struct stat *st,
                            char *why, size_t cap) {
  char cmd[HOLDER_CMDLINE_BYTES];
  long pid = fsutil_flock_holder(st);

  if (pid < 0) {
    snprintf(why, cap,
             "%s%s is in use by another download (its process is not "
             "listed in /proc/locks)",
             s->final_path, STORAGE_PART_SUFFIX);
    return;
  }
  holder_cmdline(pid, cmd, sizeof(cmd));
  snprintf(why, cap, "%s%s is in use by another download: process %ld%s%s%s",
           s->final_path, STORAGE_PART_SUFFIX, pid, cmd[0] ? " (" : "", cmd,
           cmd[0] ? ")" : "");
}

/* Locks fd without waiting: 0, UV_EBUSY (why names the holder of st), or
 * another error. */
static int lock_fd(const struct storage *s, int fd, const struct stat *st,
                   char *why, size_t cap) {
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    return 0;
  }
  if (errno != EWOULDBLOCK) {
    return -errno;
  }
  describe_holder(s, st, why, cap);
  return UV_EBUSY;
}

/* Whether the partial copy's name still leads to the file st. */
static int part_is(const struct storage *s, int dir_fd, const struct stat *st) {
  struct stat at;
  return fstatat(dir_fd, s->part_name, &at, AT_SYMLINK_NOFOLLOW) == 0 &&
         at.st_dev == st->st_dev && at.st_ino == st->st_ino;
}

/* Removes what is at the partial copy's name when it is of the wrong kind
 * for this content (a symlink, fifo or socket, a folder where the file
 * belongs, a file where the folder belongs): it cannot be resumed. A file
 * or folder may be the partial copy of another content of the same name,
 * which another download holds: that one is left alone (UV_EBUSY). */
static int part_remove_other(const struct storage *s, struct open_req *r) {
  struct stat st;
  int err;
  int fd = openat(r->dir_fd, s->part_name,
                  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

  if (fd < 0) {
    if (errno == ENOENT) {
      return 0;
    }
    /* A symlink (ELOOP) or a socket (ENXIO): nobody's partial copy. */
    if (errno != ELOOP && errno != ENXIO) {
      return -errno;
    }
    return fsutil_rmtree_at(r->dir_fd, s->part_name);
  }
  if (fstat(fd, &st) != 0) {
    err = -errno;
  } else {
    err = lock_fd(s, fd, &st, r->why, sizeof(r->why));
  }
  if (err == 0 && part_is(s, r->dir_fd, &st)) {
    err = fsutil_rmtree_at(r->dir_fd, s->part_name);
  }
  close(fd);
  return err;
}

/* Opens the partial copy, making an empty one when there is none, and
 * locks it; r->root_fd then holds the lock, and r->created tells whether
 * this open made it. Fails with UV_EBUSY (r->why names the holder) when
 * another download holds it. */
static int part_lock(const struct storage *s, struct open_req *r) {
  const int folder = s->m->kind == MANIFEST_KIND_FOLDER;
  const int flags = (folder ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_NOFOLLOW |
                    O_NONBLOCK | O_CLOEXEC;
  struct stat made;
  struct stat st;
  int have_made = 0;
  int err;

  for (int round = 0; round < PART_LOCK_TRIES; round++) {
    int fd = openat(r->dir_fd, s->part_name, flags);
    if (fd < 0 && errno == ENOENT) {
      /* Made empty here; the next round opens and locks it, unless
       * another download is quicker: then its lock decides. */
      if (folder) {
        if (mkdirat(r->dir_fd, s->part_name, FSUTIL_FOLDER_MODE) == 0) {
          have_made =
              fstatat(r->dir_fd, s->part_name, &made, AT_SYMLINK_NOFOLLOW) == 0;
        } else if (errno != EEXIST) {
          return -errno;
        }
      } else {
        fd = openat(r->dir_fd, s->part_name,
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
      r->part_existed = 1;
      err = part_remove_other(s, r);
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
      r->part_existed = 1;
      err = part_remove_other(s, r);
      if (err != 0) {
        return err;
      }
      continue;
    }
    err = lock_fd(s, fd, &st, r->why, sizeof(r->why));
    if (err != 0) {
      close(fd);
      return err;
    }
    if (!part_is(s, r->dir_fd, &st)) {
      close(fd); /* replaced between the open and the lock: again */
      continue;
    }
    r->root_fd = fd;
    r->created =
        have_made && made.st_dev == st.st_dev && made.st_ino == st.st_ino;
    r->part_existed |= !r->created;
    return 0;
  }
  snprintf(r->why, sizeof(r->why),
           "%s%s keeps being replaced by another download", s->final_path,
           STORAGE_PART_SUFFIX);
  return UV_EBUSY;
}

/* UV_EEXIST when anything is at the final name, 0 when nothing is. */
static int final_absent(const struct storage *s, int dir_fd) {
  struct stat st;

  if (fstatat(dir_fd, s->m->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return UV_EEXIST;
  }
  return errno == ENOENT ? 0 : -errno;
}

/* ------------------------------------------------------------------------ */
/* Room for the partial copy, from workers */

/* Looks at file i of a partial copy that was there before this open:
 * returns -ENOENT when it is missing, else 0 with its status in st. */
static int part_file_stat(const struct storage *s, const struct open_req *r,
                          uint32_t i, struct stat *st) {
  int fd =
      s->m->kind == MANIFEST_KIND_FILE
          ? r->root_fd
          : fsutil_open_under(r->root_fd, part_rel(s, i), O_RDONLY, 0, NULL);
  int err = 0;

  if (fd < 0) {
    return fd;
  }
  if (fstat(fd, st) != 0) {
    err = -errno;
  }
  if (fd != r->root_fd) {
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
 * resumed download notes each file's old size in r->old_size, so that a
 * reservation that fails all the same can be undone. r->why gets what the
 * user is told. */
static int space_check(const struct storage *s, struct open_req *r) {
  const struct manifest *m = s->m;
  char free_s[FMT_NUM_BYTES];
  char need_s[FMT_NUM_BYTES];
  char held_s[FMT_NUM_BYTES];
  char size_s[FMT_NUM_BYTES];
  struct statvfs v;
  uint64_t need = 0;
  uint64_t held = 0;
  uint64_t fresh = 0;

  if (fstatvfs(r->dir_fd, &v) != 0 || v.f_frsize == 0 || v.f_blocks == 0) {
    return 0;
  }
  const uint64_t bs = v.f_frsize;
  for (uint32_t i = 0; i < m->file_count; i++) {
    uint64_t want = fsutil_whole_blocks(m->files[i].size, bs);
    uint64_t has = 0;
    struct stat st;
    int err = r->created ? -ENOENT : part_file_stat(s, r, i, &st);
    if (err == 0 && S_ISREG(st.st_mode)) {
      has = (uint64_t)st.st_blocks * 512u; /* st_blocks is in 512 B units */
      if (r->old_size != NULL) {
        r->old_size[i] = (uint64_t)st.st_size;
      }
    } else if (err == -ENOENT) {
      fresh++;
      if (r->old_size != NULL) {
        r->old_size[i] = SIZE_CREATED;
      }
    }
    if (has > want) {
      has = want;
    }
    need = fsutil_add_sat(need, want - has);
    held = fsutil_add_sat(held, has);
  }
  r->need = need;
  uint64_t avail = fsutil_avail_bytes(&v);
  if (need > avail) {
    fmt_bytes(free_s, sizeof(free_s), avail);
    fmt_bytes(need_s, sizeof(need_s), need);
    if (held == 0) {
      snprintf(r->why, sizeof(r->why), "%s has %s free; %s needs %s", s->dir,
               free_s, m->name, need_s);
    } else {
      fmt_bytes(held_s, sizeof(held_s), held);
      fmt_bytes(size_s, sizeof(size_s), m->total_size);
      snprintf(r->why, sizeof(r->why),
               "%s has %s free; %s needs %s more (its partial copy holds %s "
               "of %s)",
               s->dir, free_s, m->name, need_s, held_s, size_s);
    }
    return UV_ENOSPC;
  }
  /* Folders count too, but a content has fewer of them than files. */
  if (m->kind == MANIFEST_KIND_FOLDER && v.f_files > 0 &&
      fresh > (uint64_t)v.f_favail) {
    snprintf(r->why, sizeof(r->why),
             "%s has room for %llu more files; %s needs %llu", s->dir,
             (unsigned long long)v.f_favail, m->name,
             (unsigned long long)fresh);
    return UV_ENOSPC;
  }
  return 0;
}

/* Empties a partial copy that starts over, keeping the locked file or
 * folder itself. */
static int part_empty(const struct storage *s, int root_fd) {
  int fd;

  if (s->m->kind == MANIFEST_KIND_FILE) {
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
static void open_undo(const struct storage *s, struct open_req *r) {
  const struct manifest *m = s->m;

  if (!r->resumed) {
    if (r->created || r->changing) {
      (void)fsutil_rmtree_at(r->dir_fd, s->part_name);
    }
    return;
  }
  if (!r->changing || r->old_size == NULL) {
    return;
  }
  for (uint32_t i = 0; i < m->file_count; i++) {
    uint64_t old = r->old_size[i];
    if (old == SIZE_CREATED) {
      fsutil_unlink_under(r->root_fd, part_rel(s, i));
    } else if (old < m->files[i].size) {
      int fd = m->kind == MANIFEST_KIND_FILE
                   ? r->root_fd
                   : fsutil_open_under(r->root_fd, part_rel(s, i), O_WRONLY, 0,
                                       NULL);
      if (fd >= 0) {
        (void)ftruncate(fd, (off_t)old);
        if (fd != r->root_fd) {
          close(fd);
        }
      }
    }
  }
  if (m->kind == MANIFEST_KIND_FOLDER) {
    int fd = openat(r->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      (void)fsutil_remove_empty_dirs(fd);
    }
  }
}

static void open_work(uv_work_t *w) {
  struct open_req *r = container_of(w, struct open_req, work);
  struct storage *s = r->s;
  const struct manifest *m = s->m;
  int err;

  r->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->dir_fd < 0) {
    err = -errno;
    goto fail;
  }
  /* Nothing may be touched when the final path exists. */
  err = final_absent(s, r->dir_fd);
  if (err != 0) {
    goto fail;
  }
  err = part_lock(s, r);
  if (err != 0) {
    goto fail;
  }
  /* Again under the lock: the download that held it may have just
   * completed. */
  err = final_absent(s, r->dir_fd);
  if (err != 0) {
    goto fail;
  }
  r->record = resume_read(s->resume_path, m->id, m->chunk_count, s->listed);
  if (r->record < 0) {
    err = r->record;
    goto fail;
  }
  r->resumed = !r->created && r->record == RESUME_OK;
  if (!r->resumed) {
    /* Start over: what is there may belong to another content. */
    memset(s->listed, 0, map_bytes(m->chunk_count));
  } else {
    if (m->kind == MANIFEST_KIND_FOLDER) {
      err = prune_part(s, r->root_fd);
      if (err != 0) {
        goto fail;
      }
    }
    r->old_size = malloc(m->file_count * sizeof(*r->old_size));
    if (r->old_size == NULL) {
      err = SHOAL_ENOMEM;
      goto fail;
    }
    for (uint32_t i = 0; i < m->file_count; i++) {
      r->old_size[i] = m->files[i].size; /* nothing to undo */
    }
  }
  err = space_check(s, r);
  if (err != 0) {
    goto fail;
  }
  r->changing = 1;
  if (!r->resumed && !r->created) {
    err = part_empty(s, r->root_fd);
    if (err != 0) {
      goto fail;
    }
  }
  if (m->kind == MANIFEST_KIND_FILE) {
    err = fsutil_preallocate(r->root_fd, m->files[0].size);
    if (err != 0) {
      goto fail;
    }
    r->direct_fd = fsutil_open_direct(r->dir_fd, s->part_name, r->root_fd);
  } else {
    for (uint32_t i = 0; i < m->file_count; i++) {
      int fd = fsutil_open_under(r->root_fd, part_rel(s, i), 0, 1, NULL);
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
  free(r->old_size);
  r->old_size = NULL;
  r->status = 0;
  return;

fail:
  if (r->root_fd >= 0) {
    open_undo(s, r);
  }
  if (err == UV_ENOSPC && r->why[0] == '\0') {
    /* It passed the space check, yet the file system's own records (a
     * folder's entries, extent blocks) or another writer took the rest. */
    struct statvfs v;
    char need_s[FMT_NUM_BYTES];
    char free_s[FMT_NUM_BYTES] = "?";
    if (fstatvfs(r->dir_fd, &v) == 0) {
      fmt_bytes(free_s, sizeof(free_s), (uint64_t)v.f_bavail * v.f_frsize);
    }
    fmt_bytes(need_s, sizeof(need_s), r->need);
    snprintf(r->why, sizeof(r->why),
             "%s ran out of space while %s was reserved: it needs %s, and "
             "%s is free",
             s->dir, m->name, need_s, free_s);
  }
  free(r->old_size);
  r->old_size = NULL;
  if (r->direct_fd >= 0) {
    close(r->direct_fd);
  }
  if (r->root_fd >= 0) {
    close(r->root_fd); /* releases the lock, after the undo */
  }
  if (r->dir_fd >= 0) {
    close(r->dir_fd);
  }
  r->direct_fd = -1;
  r->root_fd = -1;
  r->dir_fd = -1;
  r->status = err;
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
      file_release(s, fd);
      fd = file_open(s, file, O_RDONLY);
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
  file_release(s, fd);
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
               s->final_path, s->have_count, s->m->chunk_count);
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
  s->dir_fd = r->dir_fd;
  s->root_fd = r->root_fd;
  s->direct_fd = r->direct_fd;
  if (r->status != 0) {
    memcpy(s->open_why, r->why, sizeof(s->open_why));
  }
  if (r->status == 0 && !r->resumed) {
    if (r->record == RESUME_CORRUPT) {
      log_warn("storage", "%s: resume record is corrupt; starting over",
               s->resume_path);
    } else if (r->record == RESUME_OTHER) {
      log_warn("storage",
               "%s: resume record is for another content; starting over",
               s->resume_path);
    } else if (r->record == RESUME_OK) {
      log_info("storage", "%s: partial copy is gone; starting over",
               s->final_path);
    } else if (r->part_existed) {
      log_info("storage",
               "%s: partial copy has no resume record; starting "
               "over",
               s->final_path);
    }
  }
  if (r->status != 0 || s->closing || !r->resumed) {
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
  size_t dl;
  int err;

  *out = NULL;
  if (dir == NULL || dir[0] == '\0' || resume_path == NULL ||
      resume_path[0] == '\0') {
    return SHOAL_EINVAL;
  }
  err = check_layout(m);
  if (err != 0) {
    return err;
  }
  s = storage_alloc(loop, m);
  if (s == NULL) {
    return SHOAL_ENOMEM;
  }
  dl = strlen(dir);
  s->dir = strdup(dir);
  s->resume_path = strdup(resume_path);
  s->final_path = malloc(dl + 1 + s->name_len + 1);
  s->part_name = malloc(s->name_len + sizeof(STORAGE_PART_SUFFIX));
  s->inflight = calloc(s->have_len > 0 ? s->have_len : 1, 1);
  s->listed = calloc(s->have_len > 0 ? s->have_len : 1, 1);
  r = calloc(1, sizeof(*r));
  if (s->dir == NULL || s->resume_path == NULL || s->final_path == NULL ||
      s->part_name == NULL || s->inflight == NULL || s->listed == NULL ||
      r == NULL) {
    free(r);
    storage_free(s);
    return SHOAL_ENOMEM;
  }
  memcpy(s->final_path, dir, dl);
  s->final_path[dl] = '/';
  memcpy(s->final_path + dl + 1, m->name, s->name_len + 1);
  memcpy(s->part_name, m->name, s->name_len);
  memcpy(s->part_name + s->name_len, STORAGE_PART_SUFFIX,
         sizeof(STORAGE_PART_SUFFIX));
  s->open_cb = cb;
  s->open_arg = arg;
  r->s = s;
  r->dir_fd = -1;
  r->root_fd = -1;
  r->direct_fd = -1;
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
  return s->is_source ? NULL : s->final_path;
}

/* ------------------------------------------------------------------------ */
/* Writing chunks */

static void put_work(uv_work_t *w) {
  struct put_req *r = container_of(w, struct put_req, work);
  const struct storage *s = r->s;

  r->status = manifest_verify_chunk(s->m, r->idx, r->data, r->len);
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
  r->status = write_chunk(s, r->file, r->data, r->len, r->offset);
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
  return storage_put_chunk_ex(s, idx, data, NULL, cb, arg);
}

int storage_put_chunk_ex(struct storage *s, uint32_t idx, uint8_t *data,
                         uint8_t *bad_hashes, storage_cb cb, void *arg) {
  struct put_req *r;
  int err;

  assert(s != NULL && !s->closing);
  if (s->is_source || !s->ready || idx >= s->m->chunk_count || data == NULL) {
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
  r->cb = cb;
  r->arg = arg;
  bit_set(s->inflight, idx);
  s->pending++;
  uv_queue_work(s->loop, &r->work, put_work, after_put);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading blocks */

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

/* Opens source file idx for reading, one segment at a time below the
 * shared root. Returns a descriptor or a negative error; a file that is
 * gone or was replaced by a symlink is SHOAL_ECHANGED. */
static int source_open(const struct storage *s, uint32_t idx) {
  const struct manifest *m = s->m;
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

/* Hashes the request's whole chunk from fd and compares it with the
 * manifest: a file rewritten in place with its size and time kept is
 * caught on the first read of each chunk, before any of it is served.
 * Reads in SOURCE_VERIFY_PIECE pieces, so memory stays small whatever the
 * chunk size. Returns 0, SHOAL_EHASH, or a read error. */
static int verify_source_chunk(int fd, const struct read_req *r) {
  crypto_generichash_state st;
  uint8_t got[MANIFEST_HASH_BYTES];
  uint8_t *piece = malloc(SOURCE_VERIFY_PIECE);
  uint32_t done = 0;
  int err = 0;
  if (piece == NULL) {
    return SHOAL_ENOMEM;
  }
  crypto_generichash_init(&st, NULL, 0, sizeof(got));
  while (done < r->chunk_len) {
    uint32_t want = r->chunk_len - done;
    if (want > SOURCE_VERIFY_PIECE) {
      want = SOURCE_VERIFY_PIECE;
    }
    ssize_t n = fsutil_pread_full(fd, piece, want, r->chunk_offset + done);
    if (n < 0) {
      err = (int)n;
      goto out;
    }
    if ((uint32_t)n != want) {
      err = SHOAL_EHASH; /* shorter than it was: no longer the chunk */
      goto out;
    }
    crypto_generichash_update(&st, piece, want);
    done += want;
  }
  crypto_generichash_final(&st, got, sizeof(got));
  if (sodium_memcmp(got, r->s->m->hashes + (size_t)r->chunk * sizeof(got),
                    sizeof(got)) != 0) {
    err = SHOAL_EHASH;
  }
out:
  free(piece);
  return err;
}

/* A source file is read only when it is still what was hashed: same size
 * and modification time before the read and after it, and, for the first
 * read of each chunk, the same bytes (verify_source_chunk). */
static void source_read_work(uv_work_t *w) {
  struct read_req *r = container_of(w, struct read_req, work);
  const struct manifest *m = r->s->m;
  const struct manifest_file *f = &m->files[r->file];
  struct stat st;
  ssize_t n;
  int fd;
  int err;

  /* The one file of a file content stays open for the storage's life,
   * instead of being opened again for each block. */
  fd = r->s->root_fd >= 0 ? r->s->root_fd : source_open(r->s, r->file);
  if (fd < 0) {
    if (fd == SHOAL_ECHANGED) {
      describe_change(m, r->file, NULL, &r->change);
    }
    r->status = fd;
    return;
  }
  if (fstat(fd, &st) != 0) {
    r->status = -errno;
    goto out;
  }
  if (!fsutil_stat_matches(&st, f)) {
    describe_change(m, r->file, &st, &r->change);
    r->status = SHOAL_ECHANGED;
    goto out;
  }
  if (r->verify) {
    err = verify_source_chunk(fd, r);
    if (err == SHOAL_EHASH) {
      memset(&r->change, 0, sizeof(r->change));
      r->change.kind = STORAGE_CHANGE_HASH;
      r->change.file = r->file;
      r->change.chunk = r->chunk;
      err = SHOAL_ECHANGED;
    }
    if (err != 0) {
      r->status = err;
      goto out;
    }
  }
  n = fsutil_pread_full(fd, r->data, r->len, r->offset);
  if (n < 0) {
    r->status = (int)n;
    goto out;
  }
  if ((size_t)n != r->len || fstat(fd, &st) != 0 ||
      !fsutil_stat_matches(&st, f)) {
    describe_change(m, r->file, fstat(fd, &st) == 0 ? &st : NULL, &r->change);
    r->status = SHOAL_ECHANGED;
    goto out;
  }
  r->status = 0;

out:
  if (fd != r->s->root_fd) {
    close(fd);
  }
}

static void download_read_work(uv_work_t *w) {
  struct read_req *r = container_of(w, struct read_req, work);
  const struct storage *s = r->s;
  ssize_t n;
  int fd;

  fd = file_open(s, r->file, O_RDONLY);
  if (fd < 0) {
    r->status = fd;
    return;
  }
  n = fsutil_pread_full(fd, r->data, r->len, r->offset);
  file_release(s, fd);
  r->status = n < 0 ? (int)n : (size_t)n == r->len ? 0 : UV_EIO;
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
  if (r->verify) {
    bit_clear(s->verifying, r->chunk);
    if (r->status == 0) {
      bit_set(s->verified, r->chunk);
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
  r->cb(r->arg, r->status, r->data, r->status == 0 ? r->len : 0);
  free(r);
  s->pending--;
  maybe_close(s);
}

static int read_start(struct storage *s, uint32_t idx, uint32_t offset,
                      uint32_t len, uint8_t *dst, storage_read_cb cb,
                      void *arg) {
  struct read_req *r;
  uint64_t off;
  uint32_t clen;

  assert(s != NULL && cb != NULL && !s->closing);
  if (idx >= s->m->chunk_count || !bit_get(s->have, idx)) {
    return SHOAL_EINVAL;
  }
  clen = manifest_chunk_len(s->m, idx);
  if (len == 0 || offset > clen || len > clen - offset) {
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
  manifest_chunk_file(s->m, idx, &r->file, &off);
  r->offset = off + offset;
  r->len = len;
  r->chunk = idx;
  r->chunk_offset = off;
  r->chunk_len = clen;
  /* One read hashes a chunk; the others of that chunk meanwhile read the
   * same file, whose change that read (or the size and time checks of
   * each) will find: a chunk is hashed about once, however many blocks
   * of it are asked for at a time. */
  r->verify =
      s->is_source && !bit_get(s->verified, idx) && !bit_get(s->verifying, idx);
  if (r->verify) {
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
  const struct manifest *m = c->s->m;
  struct stat st;
  c->status = 0;
  for (uint32_t i = 0; i < m->file_count; i++) {
    int fd = source_open(c->s, i);
    if (fd < 0) {
      if (fd == SHOAL_ECHANGED) {
        describe_change(m, i, NULL, &c->change);
      }
      c->status = fd;
      return;
    }
    if (fstat(fd, &st) != 0) {
      c->status = -errno;
      close(fd);
      return;
    }
    close(fd);
    if (!fsutil_stat_matches(&st, &m->files[i])) {
      describe_change(m, i, &st, &c->change);
      c->status = SHOAL_ECHANGED;
      return;
    }
  }
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
static int make_empty_folders(const struct storage *s) {
  for (uint32_t i = 0; i < s->m->folder_count; i++) {
    int err = fsutil_make_dirs(s->root_fd, s->m->folders[i] + s->name_len + 1);
    if (err != 0) {
      return err;
    }
  }
  return 0;
}

/* Gives every file of the partial folder its mode and time and flushes it,
 * and flushes every folder that holds one. */
static int finish_tree(const struct storage *s, int mask) {
  const char *prev = NULL;
  size_t prev_len = 0;

  for (uint32_t i = 0; i < s->m->file_count; i++) {
    const char *rel = part_rel(s, i);
    size_t len = folder_len(rel);
    int parent;
    int fd = fsutil_open_under(s->root_fd, rel, O_RDONLY, 0, &parent);
    int err;

    if (fd < 0) {
      return fd;
    }
    err = finish_file(fd, &s->m->files[i], mask);
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

/* Every chunk is verified and written: the empty folders are made, each
 * file gets its mode and time, everything is flushed, and only then is the
 * partial copy renamed into place, so the content appears whole. */
static void finish_work(uv_work_t *w) {
  struct finish_req *r = container_of(w, struct finish_req, work);
  const struct storage *s = r->s;
  int mask = fsutil_umask();
  int err;

  if (s->m->kind == MANIFEST_KIND_FOLDER) {
    err = make_empty_folders(s);
    if (err == 0) {
      err = finish_tree(s, mask);
    }
  } else {
    err = finish_file(s->root_fd, &s->m->files[0], mask);
  }
  if (err == 0) {
    err = fsutil_fsync(s->root_fd);
  }
  if (err == 0) {
    err = fsutil_rename_noreplace(s->dir_fd, s->part_name, s->m->name);
  }
  if (err == 0) {
    err = fsutil_fsync(s->dir_fd);
  }
  r->status = err;
  if (err == 0 && unlink(s->resume_path) != 0 && errno != ENOENT) {
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
    log_info("storage", "%s: complete", s->final_path);
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
