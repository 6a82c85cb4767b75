/* The daemon's core: the library kept in step with the node (daemon.h).
 *
 * Each content of the library has an item here: its state as the API
 * shows it, its figures from the node's progress events, and the work in
 * flight for it (a file check, a hashing share, a removal from the node).
 * An item's life:
 *
 *   QUEUED -> CHECKING -> SEEDING            a share, a finished download
 *   QUEUED -> FETCHING -> DOWNLOADING -> SEEDING   a download
 *   CHECKING -> CHANGED                      the files differ
 *   any -> PAUSED -> QUEUED                  pause, resume
 *   any -> FAILED                            the node gave up on it
 *
 * Pause, recheck and remove take the content's swarm out of the node first
 * (node_remove); what follows runs when the node says it is gone
 * (item->after). Every change that must survive a kill -9 is saved in the
 * library at once; byte counts are saved every LIBRARY_SAVE_MS.
 */
#include "peer/daemon.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/fetch.h"
#include "peer/fsutil.h"
#include "peer/home.h"
#include "peer/manifest_build.h"
#include "peer/recheck.h"
#include "peer/storage.h"

#ifndef container_of
#define container_of(ptr, type, member)                                        \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

#define ITEM_BUCKETS 4096u
#define TICK_MS 250u
#define WATCH_MAX_CANDIDATES 256u
#define WATCH_LINK_SUFFIX ".shoal"

enum item_after {
  AFTER_NOTHING,
  AFTER_PAUSE,
  AFTER_START,   /* resume: back into the queue */
  AFTER_RECHECK, /* a full check, then back into the node */
  AFTER_REMOVE,
};

struct item {
  struct item *next, *prev; /* in the order added */
  struct item *hnext;       /* hash chain (items with a content) */
  struct item *qnext;       /* the start queue */
  struct daemon *d;
  uint8_t content[MANIFEST_ID_BYTES];
  int has_content; /* 0: a share being hashed */
  char *path;      /* a share being hashed: its path */
  char name[MANIFEST_MAX_SEGMENT + 1];
  enum library_kind kind;
  enum daemon_state state;
  char error[LIBRARY_ERROR_BYTES]; /* for items outside the library */
  int queued;
  int in_node;  /* the node has a swarm for it */
  int removing; /* node_remove under way */
  int gone;     /* removed from the library: hidden, freed when idle */
  enum item_after after;
  int delete_data;
  int full_check; /* the next check ignores the fast-resume record */
  struct recheck *rc;
  struct manifest *m; /* being checked, or hashed and being saved */
  struct manifest_builder *builder;
  uint64_t check_done, check_total;
  struct node_swarm_info info; /* numbers only: its pointers are not kept */
  uint64_t base_up, base_down; /* the library's totals when the swarm began */
  uint64_t up_rate;            /* upload bytes a second, recent */
  uint64_t last_up, last_up_ms;
  int moved;
  int works; /* thread-pool jobs that point here */
};

struct daemon {
  uv_loop_t *loop;
  const struct identity *id;
  struct daemon_config cfg;
  char home[HOME_PATH_BYTES];
  char download_dir[HOME_PATH_BYTES];
  char watch_dir[HOME_PATH_BYTES];
  struct library lib;
  struct node *node;
  uint16_t port;
  struct item *first, *last;
  struct item *buckets[ITEM_BUCKETS];
  struct item *qhead, *qtail;
  unsigned checks_running;
  uint64_t last_start_ms;
  uint64_t last_save_ms;
  uint64_t save_due_ms;      /* a save_soon is pending until then (0: none) */
  struct lib_write *writing; /* the library's text being written, or NULL */
  char *next_text;           /* the newest text, to write after it */
  size_t next_len;
  int64_t started;
  uv_timer_t tick;
  uv_timer_t watch;
  uv_timer_t start_timer; /* the next start, when the queue is paced */
  int stopping;
  void (*stop_cb)(void *);
  void *stop_arg;
  unsigned closing;
  daemon_change_cb change_cb;
  void *change_arg;
  struct {
    char name[MANIFEST_MAX_SEGMENT + 1];
    uint64_t sig;
    int seen;
  } cand[WATCH_MAX_CANDIDATES];
  unsigned ncand;
};

static void start_next(struct daemon *d);

/* snprintf that may cut a long path short: messages are for people, and
 * a cut one still says what is wrong. */
__attribute__((format(printf, 3, 4))) static void say(char *out, size_t cap,
                                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, cap, fmt, ap);
  va_end(ap);
}
static void notify(struct daemon *d, struct item *it, enum daemon_change what);

/* ------------------------------------------------------------------------ */
/* Items */

static unsigned bucket_of(const uint8_t content[MANIFEST_ID_BYTES]) {
  /* Content IDs are hashes: their first bytes are spread evenly. */
  return ((unsigned)content[0] << 8 | content[1]) % ITEM_BUCKETS;
}

static struct item *item_find(struct daemon *d,
                              const uint8_t content[MANIFEST_ID_BYTES]) {
  for (struct item *it = d->buckets[bucket_of(content)]; it != NULL;
       it = it->hnext) {
    if (!it->gone && memcmp(it->content, content, MANIFEST_ID_BYTES) == 0) {
      return it;
    }
  }
  return NULL;
}

static void item_hash(struct daemon *d, struct item *it) {
  unsigned b = bucket_of(it->content);
  it->hnext = d->buckets[b];
  d->buckets[b] = it;
}

static void item_unhash(struct daemon *d, struct item *it) {
  struct item **pp = &d->buckets[bucket_of(it->content)];
  while (*pp != NULL && *pp != it) {
    pp = &(*pp)->hnext;
  }
  if (*pp == it) {
    *pp = it->hnext;
  }
}

static struct item *item_new(struct daemon *d) {
  struct item *it = calloc(1, sizeof(*it));
  if (it == NULL) {
    return NULL;
  }
  it->d = d;
  it->prev = d->last;
  if (d->last != NULL) {
    d->last->next = it;
  } else {
    d->first = it;
  }
  d->last = it;
  return it;
}

static void item_free(struct daemon *d, struct item *it) {
  if (it->has_content) {
    item_unhash(d, it);
  }
  if (it->prev != NULL) {
    it->prev->next = it->next;
  } else {
    d->first = it->next;
  }
  if (it->next != NULL) {
    it->next->prev = it->prev;
  } else {
    d->last = it->prev;
  }
  manifest_free(it->m);
  free(it->path);
  free(it);
}

static void delete_data(struct daemon *d, struct item *it);

/* An item that was removed is freed once nothing points at it any more:
 * its data, when asked, is deleted first (the swarm has left the node, so
 * nothing writes its partial copy or resume record again), and the item
 * stays until that is done, so that the content cannot be added again
 * meanwhile. */
static void item_release_if_idle(struct daemon *d, struct item *it) {
  if (it->gone && it->works == 0 && it->rc == NULL && it->builder == NULL &&
      !it->removing && !it->in_node) {
    if (it->delete_data) {
      it->delete_data = 0;
      delete_data(d, it);
      if (it->works > 0) {
        return; /* after_delete comes back here */
      }
    }
    item_free(d, it);
  }
}

static struct library_entry *entry_of(struct daemon *d, const struct item *it) {
  return it->has_content ? library_find(&d->lib, it->content) : NULL;
}

static void set_state(struct daemon *d, struct item *it, enum daemon_state to) {
  if (it->state == to) {
    return;
  }
  if (it->has_content) {
    char text[TEXTID_SHORT_CHARS + 1];
    textid_short(TEXTID_CONTENT, it->content, text);
    log_debug("daemon", "%s (%s): %s -> %s", it->name, text,
              daemon_state_name(it->state), daemon_state_name(to));
  }
  it->state = to;
  notify(d, it, DAEMON_STATE);
}

/* The item's error, kept in the library when it has an entry. */
static void set_error(struct daemon *d, struct item *it, const char *msg) {
  struct library_entry *e = entry_of(d, it);
  if (e != NULL) {
    library_set_error(&d->lib, e, "%s", msg);
  } else {
    say(it->error, sizeof(it->error), "%s", msg);
  }
}

/* Puts the item in state to (DS_FAILED or DS_CHANGED) with the message
 * made from fmt as its error. */
__attribute__((format(printf, 4, 5))) static void
fail_item(struct daemon *d, struct item *it, enum daemon_state to,
          const char *fmt, ...) {
  char msg[DAEMON_MSG_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  set_error(d, it, msg);
  set_state(d, it, to);
}

static void clear_error(struct daemon *d, struct item *it) {
  struct library_entry *e = entry_of(d, it);
  if (e != NULL) {
    library_clear_error(&d->lib, e);
  }
  it->error[0] = '\0';
}

/* Saves the library now when something changed; a failure is logged (the
 * next change tries again). */
/* The library's file is written on the thread pool: one write at a time,
 * and the newest text waits for it (a text that was overtaken is never
 * written). */
struct lib_write {
  uv_work_t w;
  struct daemon *d;
  char *text;
  size_t len;
  int err;
};

static void maybe_stopped(struct daemon *d);

static void write_work(uv_work_t *w) {
  struct lib_write *x = container_of(w, struct lib_write, w);
  x->err = library_write(x->d->lib.path, x->text, x->len);
}

static void start_write(struct daemon *d, char *text, size_t len);

static void after_write(uv_work_t *w, int status) {
  struct lib_write *x = container_of(w, struct lib_write, w);
  struct daemon *d = x->d;
  int err = status != 0 ? status : x->err;
  if (err != 0) {
    log_warn("daemon", "cannot save %s: %s", d->lib.path, shoal_strerror(err));
    d->lib.dirty = 1; /* the next save tries again */
  }
  free(x->text);
  free(x);
  d->writing = NULL;
  if (d->next_text != NULL) {
    char *text = d->next_text;
    d->next_text = NULL;
    start_write(d, text, d->next_len);
    return;
  }
  maybe_stopped(d);
}

/* Takes text. */
static void start_write(struct daemon *d, char *text, size_t len) {
  struct lib_write *x;
  if (d->writing != NULL) {
    free(d->next_text);
    d->next_text = text;
    d->next_len = len;
    return;
  }
  x = calloc(1, sizeof(*x));
  if (x == NULL) {
    free(text);
    d->lib.dirty = 1;
    return;
  }
  x->d = d;
  x->text = text;
  x->len = len;
  d->writing = x;
  if (uv_queue_work(d->loop, &x->w, write_work, after_write) != 0) {
    d->writing = NULL;
    free(text);
    free(x);
    d->lib.dirty = 1;
  }
}

/* Saves the library now when something changed: its text is made here,
 * and written atomically on the thread pool (a failure is logged, and the
 * next change tries again). */
static void save(struct daemon *d) {
  char *text;
  size_t len = 0;
  /* Byte counts first: the entries take the swarms' figures. */
  for (struct item *it = d->first; it != NULL; it = it->next) {
    struct library_entry *e;
    if (!it->has_content || it->gone || !it->in_node) {
      continue;
    }
    e = library_find(&d->lib, it->content);
    if (e != NULL && (e->uploaded != it->base_up + it->info.uploaded ||
                      e->downloaded != it->base_down + it->info.downloaded)) {
      e->uploaded = it->base_up + it->info.uploaded;
      e->downloaded = it->base_down + it->info.downloaded;
      d->lib.dirty = 1;
    }
  }
  d->save_due_ms = 0;
  if (!d->lib.dirty) {
    return;
  }
  d->last_save_ms = uv_now(d->loop);
  text = library_encode(&d->lib, &len);
  if (text == NULL) {
    log_warn("daemon", "cannot save %s: out of memory, or over its %u MiB",
             d->lib.path, LIBRARY_MAX_BYTES >> 20);
    return;
  }
  d->lib.dirty = 0;
  start_write(d, text, len);
}

/* Saves within DAEMON_SAVE_SOON_MS: for what a crash may lose without
 * harm (a link learned again at the next start, a fast-resume record whose
 * loss costs one hash), so that a burst of such changes (a thousand shares
 * publishing) costs one write, not one each. What a user did is saved at
 * once (save). */
static void save_soon(struct daemon *d) {
  d->lib.dirty = 1;
  if (d->save_due_ms == 0) {
    d->save_due_ms = uv_now(d->loop) + DAEMON_SAVE_SOON_MS;
  }
}

static void view_of(struct daemon *d, struct item *it,
                    struct daemon_item_view *v) {
  struct library_entry *e = entry_of(d, it);
  memset(v, 0, sizeof(*v));
  v->content = it->has_content ? it->content : NULL;
  v->name = it->name;
  v->kind = it->kind;
  v->state = it->state;
  v->size = it->info.total;
  v->have = it->info.have;
  v->check_done = it->check_done;
  v->check_total = it->check_total;
  v->path = it->path;
  v->error = it->error[0] ? it->error : NULL;
  if (it->in_node && it->state != DS_PAUSED) {
    v->download_rate = it->info.rate;
    v->upload_rate = it->up_rate;
    v->peers = it->info.peers;
    v->seeders = it->info.seeders;
  }
  if (e != NULL) {
    v->path = e->path;
    v->link = e->link;
    v->added = e->added;
    v->error = e->error[0] ? e->error : NULL;
    v->uploaded = e->uploaded;
    v->downloaded = e->downloaded;
    if (it->in_node) {
      v->uploaded = it->base_up + it->info.uploaded;
      v->downloaded = it->base_down + it->info.downloaded;
    }
    if (v->size == 0 && e->link != NULL) {
      struct share_link l;
      const char *why;
      if (link_parse(e->link, strlen(e->link), &l, &why) == 0) {
        v->size = l.size;
      }
    }
    if (e->complete && v->have < v->size && it->state != DS_CHECKING) {
      v->have = v->size;
    }
  }
}

static void notify(struct daemon *d, struct item *it, enum daemon_change what) {
  struct daemon_item_view v;
  if (d->change_cb == NULL || d->stopping) {
    return;
  }
  view_of(d, it, &v);
  d->change_cb(d->change_arg, what, &v);
}

/* ------------------------------------------------------------------------ */
/* Trackers and links */

/* The trackers and key a content is announced to: its link's, else the
 * daemon's. */
static unsigned trackers_of(struct daemon *d, const struct library_entry *e,
                            struct share_link *l, const uint8_t **key) {
  const char *why;
  *key = d->cfg.tracker_key;
  if (e != NULL && e->link != NULL &&
      link_parse(e->link, strlen(e->link), l, &why) == 0 &&
      l->tracker_count > 0) {
    *key = NULL; /* each tracker of a link carries its key */
    return (unsigned)l->tracker_count;
  }
  memset(l, 0, sizeof(*l));
  memcpy(l->trackers, d->cfg.trackers, sizeof(d->cfg.trackers));
  l->tracker_count = d->cfg.ntrackers;
  return d->cfg.ntrackers;
}

/* ------------------------------------------------------------------------ */
/* Thread-pool work: fast-resume records, manifests, deleting data */

struct stat_work {
  uv_work_t w;
  struct item *it;
  struct manifest *m; /* borrowed (the item's) or owned (own_m) */
  int own_m;
  char *root;
  struct library_file *files;
  uint32_t n;
  int status;
  /* Saving a manifest: its bytes and where. */
  uint8_t *bytes;
  size_t len;
  char *manifest_path;
};

/* The records of every file of m under root: what the file is now. */
static void stat_files(struct stat_work *s) {
  s->n = s->m->file_count;
  s->files = calloc(s->n > 0 ? s->n : 1, sizeof(*s->files));
  if (s->files == NULL) {
    s->status = SHOAL_ENOMEM;
    return;
  }
  for (uint32_t i = 0; i < s->n; i++) {
    struct stat st;
    char *p;
    size_t len = strlen(s->root) + strlen(s->m->files[i].path) + 2;
    p = malloc(len);
    if (p == NULL) {
      s->status = SHOAL_ENOMEM;
      return;
    }
    snprintf(p, len, "%s/%s", s->root, s->m->files[i].path);
    if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
      s->files[i].size = (uint64_t)st.st_size;
      s->files[i].mtime_sec = st.st_mtim.tv_sec;
      s->files[i].mtime_nsec = st.st_mtim.tv_nsec;
      s->files[i].ino = (uint64_t)st.st_ino;
    }
    free(p);
  }
}

/* Writes bytes to path atomically: a temporary file, fsync, rename. */
static int write_atomic(const char *path, const uint8_t *bytes, size_t len) {
  char tmp[HOME_PATH_BYTES + 32];
  int fd;
  snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return -errno;
  }
  return fsutil_replace(fd, tmp, path, bytes, len);
}

static void stat_work(uv_work_t *w) {
  struct stat_work *s = container_of(w, struct stat_work, w);
  if (s->bytes != NULL) {
    s->status = write_atomic(s->manifest_path, s->bytes, s->len);
    if (s->status != 0) {
      return;
    }
  }
  stat_files(s);
}

static void stat_work_free(struct stat_work *s) {
  if (s->own_m) {
    manifest_free(s->m);
  }
  free(s->root);
  free(s->files);
  free(s->bytes);
  free(s->manifest_path);
  free(s);
}

static char *path_join(const char *a, const char *b) {
  size_t len = strlen(a) + strlen(b) + 2;
  char *p = malloc(len);
  if (p != NULL) {
    snprintf(p, len, "%s/%s", a, b);
  }
  return p;
}

static char *manifest_path_of(struct daemon *d, const uint8_t *content) {
  char text[TEXTID_STRLEN];
  char dir[HOME_PATH_BYTES + 16];
  textid_encode(TEXTID_CONTENT, content, text);
  snprintf(dir, sizeof(dir), "%s/manifests", d->home);
  (void)home_make_dirs(dir, 0700);
  return path_join(dir, text);
}

/* A finished download: its fast-resume record, from what its files are
 * now, so that a restart does not hash them again. */
static void after_complete_stat(uv_work_t *w, int status) {
  struct stat_work *s = container_of(w, struct stat_work, w);
  struct item *it = s->it;
  struct daemon *d = it->d;
  struct library_entry *e;
  it->works--;
  e = entry_of(d, it);
  if (status == 0 && s->status == 0 && e != NULL && !it->gone) {
    if (library_set_files(&d->lib, e, s->files, s->n) == 0) {
      save_soon(d);
    }
  }
  stat_work_free(s);
  item_release_if_idle(d, it);
}

static void record_download(struct daemon *d, struct item *it) {
  char text[TEXTID_STRLEN];
  struct library_entry *e = entry_of(d, it);
  struct stat_work *s;
  struct manifest *m;
  if (e == NULL) {
    return;
  }
  textid_encode(TEXTID_CONTENT, it->content, text);
  m = fetch_load(d->home, text, it->content, NULL);
  if (m == NULL) {
    return; /* a restart checks the whole copy instead */
  }
  s = calloc(1, sizeof(*s));
  if (s == NULL || (s->root = strdup(e->path)) == NULL) {
    free(s);
    manifest_free(m);
    return;
  }
  s->it = it;
  s->m = m;
  s->own_m = 1;
  it->works++;
  if (uv_queue_work(d->loop, &s->w, stat_work, after_complete_stat) != 0) {
    it->works--;
    stat_work_free(s);
  }
}

struct delete_work {
  uv_work_t w;
  struct item *it;
  char *dir, *name, *resume, *manifest;
  int status;
};

static void delete_work(uv_work_t *w) {
  struct delete_work *x = container_of(w, struct delete_work, w);
  char part[MANIFEST_MAX_SEGMENT + sizeof(STORAGE_PART_SUFFIX) + 1];
  int dfd = open(x->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    x->status = fsutil_rmtree_at(dfd, x->name);
    snprintf(part, sizeof(part), "%s%s", x->name, STORAGE_PART_SUFFIX);
    if (x->status == 0) {
      x->status = fsutil_rmtree_at(dfd, part);
    }
    close(dfd);
  }
  unlink(x->resume);
  unlink(x->manifest);
}

static void after_delete(uv_work_t *w, int status) {
  struct delete_work *x = container_of(w, struct delete_work, w);
  struct item *it = x->it;
  if (status == 0 && x->status != 0) {
    log_warn("daemon", "cannot delete %s/%s: %s", x->dir, x->name,
             shoal_strerror(x->status));
  }
  free(x->dir);
  free(x->name);
  free(x->resume);
  free(x->manifest);
  free(x);
  it->works--;
  item_release_if_idle(it->d, it);
}

/* Deletes a removed download's copy, partial copy, resume record and
 * manifest: the folder is it->path (kept there by daemon_remove). */
static void delete_data(struct daemon *d, struct item *it) {
  char text[TEXTID_STRLEN];
  char resume[HOME_PATH_BYTES + TEXTID_STRLEN + 16];
  struct delete_work *x = calloc(1, sizeof(*x));
  if (x == NULL) {
    return;
  }
  textid_encode(TEXTID_CONTENT, it->content, text);
  snprintf(resume, sizeof(resume), "%s/resume/%s", d->home, text);
  x->it = it;
  x->dir = strdup(it->path);
  x->name = strdup(it->name);
  x->resume = strdup(resume);
  x->manifest = manifest_path_of(d, it->content);
  if (x->dir == NULL || x->name == NULL || x->resume == NULL ||
      x->manifest == NULL ||
      uv_queue_work(d->loop, &x->w, delete_work, after_delete) != 0) {
    free(x->dir);
    free(x->name);
    free(x->resume);
    free(x->manifest);
    free(x);
    return;
  }
  it->works++;
}

/* ------------------------------------------------------------------------ */
/* Into the node */

/* After node_share or node_get: the item is in the node in state to, or
 * failed with err (what says what could not be done). */
static void entered_node(struct daemon *d, struct item *it, int err,
                         const char *what, enum daemon_state to) {
  if (err != 0) {
    fail_item(d, it, DS_FAILED, "%s: %s", what, shoal_strerror(err));
    save_soon(d);
    return;
  }
  it->in_node = 1;
  clear_error(d, it);
  set_state(d, it, to);
}

static void into_node_as_source(struct daemon *d, struct item *it,
                                struct manifest *m) {
  struct library_entry *e = entry_of(d, it);
  struct share_link l;
  const uint8_t *key;
  unsigned nt = trackers_of(d, e, &l, &key);
  int err;
  it->base_up = e != NULL ? e->uploaded : 0;
  it->base_down = e != NULL ? e->downloaded : 0;
  memset(&it->info, 0, sizeof(it->info));
  it->info.total = m->total_size;
  it->info.have = m->total_size;
  it->info.chunks = m->chunk_count;
  err = node_share(d->node, m, l.trackers, nt, key);
  entered_node(d, it, err, "cannot seed", DS_SEEDING);
}

static void on_check_progress(void *arg, uint64_t done, uint64_t total) {
  struct item *it = arg;
  it->check_done = done;
  it->check_total = total;
  it->moved = 1;
}

static void after_removed(struct daemon *d, struct item *it);

static void on_checked(void *arg, int status, const struct recheck_result *r) {
  struct item *it = arg;
  struct daemon *d = it->d;
  struct manifest *m = it->m;
  struct library_entry *e;
  it->rc = NULL;
  it->m = NULL;
  d->checks_running--;
  e = entry_of(d, it);
  if (it->gone || d->stopping || status == SHOAL_ECANCELED || e == NULL) {
    manifest_free(m);
    if (!it->gone && !d->stopping) {
      after_removed(d, it); /* a pause or a recheck asked for */
    }
    item_release_if_idle(d, it);
    start_next(d);
    return;
  }
  if (r != NULL) {
    log_info("daemon",
             "%s: checked: %u files hashed (%llu bytes) of %u, the rest "
             "known by their fast-resume record",
             it->name, (unsigned)r->files_hashed,
             (unsigned long long)r->bytes_hashed, (unsigned)r->nfiles);
  }
  if (r != NULL && r->files != NULL) {
    (void)library_set_files(&d->lib, e, r->files, r->nfiles);
  }
  if (status == 0) {
    int err = recheck_apply(m, e->path, r);
    if (err != 0) {
      manifest_free(m);
      fail_item(d, it, DS_FAILED, "out of memory");
    } else {
      into_node_as_source(d, it, m); /* takes m */
    }
  } else {
    manifest_free(m);
    if (status == SHOAL_ECHANGED) {
      fail_item(d, it, DS_CHANGED,
                "the files differ from the content: %s — put them back, or "
                "remove the content",
                r != NULL ? r->why : "?");
    } else {
      fail_item(d, it, DS_FAILED, "cannot check the files: %s",
                shoal_strerror(status));
    }
  }
  save_soon(d);
  start_next(d);
}

/* A download that is not complete: the node gets it from its link. */
static void start_download(struct daemon *d, struct item *it,
                           struct library_entry *e) {
  struct share_link l;
  const uint8_t *key;
  unsigned nt = trackers_of(d, e, &l, &key);
  const char *name = NULL;
  uint64_t size = 0;
  struct share_link own;
  const char *why;
  int err;
  if (e->link != NULL &&
      link_parse(e->link, strlen(e->link), &own, &why) == 0) {
    name = e->name;
    size = own.size;
  }
  it->base_up = e->uploaded;
  it->base_down = e->downloaded;
  memset(&it->info, 0, sizeof(it->info));
  it->info.total = size;
  err = node_get(d->node, it->content, name, size, l.trackers, nt, key, e->path,
                 1);
  entered_node(d, it, err, "cannot start the download", DS_FETCHING);
}

/* Starts one content: a check then seeding, or a download. Returns 0, or
 * 1 when it must wait for the check that runs. */
static int start_item(struct daemon *d, struct item *it) {
  struct library_entry *e = entry_of(d, it);
  char text[TEXTID_STRLEN];
  int err;
  if (e == NULL || it->gone) {
    return 0;
  }
  if (e->kind == LIBRARY_DOWNLOAD && !e->complete) {
    start_download(d, it, e);
    return 0;
  }
  textid_encode(TEXTID_CONTENT, it->content, text);
  unsigned old = 0;
  it->m = fetch_load(d->home, text, it->content, &old);
  if (it->m == NULL && old != 0) {
    fail_item(d, it, DS_FAILED,
              "its manifest was made by an older shoal (manifest version "
              "%u; this one reads %d) — remove the content and share it "
              "again for a new link",
              old, MANIFEST_VERSION);
    save_soon(d);
    return 0;
  }
  if (it->m == NULL) {
    if (e->kind == LIBRARY_DOWNLOAD) {
      /* The manifest went missing: the node fetches it again and checks
       * the finished copy against it. */
      start_download(d, it, e);
      return 0;
    }
    fail_item(d, it, DS_FAILED,
              "its manifest is missing from %s/manifests — remove the "
              "content and share it again",
              d->home);
    save_soon(d);
    return 0;
  }
  if (d->checks_running > 0) {
    manifest_free(it->m);
    it->m = NULL;
    return 1;
  }
  it->check_done = 0;
  it->check_total = 0;
  memset(&it->info, 0, sizeof(it->info));
  it->info.total = it->m->total_size;
  err = recheck_start(
      &it->rc, d->loop, it->m, e->path, it->full_check ? NULL : e->files,
      it->full_check ? 0 : e->nfiles, on_check_progress, on_checked, it);
  it->full_check = 0;
  if (err != 0) {
    manifest_free(it->m);
    it->m = NULL;
    it->rc = NULL;
    fail_item(d, it, DS_FAILED, "cannot check the files: %s",
              shoal_strerror(err));
    return 0;
  }
  d->checks_running++;
  set_state(d, it, DS_CHECKING);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The start queue */

static void enqueue(struct daemon *d, struct item *it, int front) {
  if (it->queued) {
    return;
  }
  it->queued = 1;
  it->qnext = NULL;
  if (front) {
    it->qnext = d->qhead;
    d->qhead = it;
    if (d->qtail == NULL) {
      d->qtail = it;
    }
  } else if (d->qtail != NULL) {
    d->qtail->qnext = it;
    d->qtail = it;
  } else {
    d->qhead = d->qtail = it;
  }
  set_state(d, it, DS_QUEUED);
  start_next(d);
}

static void dequeue(struct daemon *d, struct item *it) {
  struct item **pp = &d->qhead;
  struct item *prev = NULL;
  if (!it->queued) {
    return;
  }
  while (*pp != NULL && *pp != it) {
    prev = *pp;
    pp = &(*pp)->qnext;
  }
  if (*pp == it) {
    *pp = it->qnext;
    if (d->qtail == it) {
      d->qtail = prev;
    }
  }
  it->queued = 0;
  it->qnext = NULL;
}

/* Starts what the queue holds, at most DAEMON_STARTS_PER_S a second; the
 * tick calls again for the rest. */
static void on_start_timer(uv_timer_t *t) {
  start_next(t->data);
}

static void start_next(struct daemon *d) {
  uint64_t now = uv_now(d->loop);
  while (d->qhead != NULL && !d->stopping) {
    struct item *it = d->qhead;
    uint64_t gap = 1000u / DAEMON_STARTS_PER_S;
    if (d->last_start_ms != 0 && now - d->last_start_ms < gap) {
      /* Come back when the next start is due, not at the next tick. */
      if (d->start_timer.loop != NULL &&
          !uv_is_active((uv_handle_t *)&d->start_timer)) {
        uv_timer_start(&d->start_timer, on_start_timer,
                       gap - (now - d->last_start_ms), 0);
      }
      return;
    }
    if (it->in_node || it->removing) {
      return; /* its old swarm is still leaving the node */
    }
    dequeue(d, it);
    if (start_item(d, it) == 1) {
      /* A check runs: this one waits at the front. */
      it->queued = 1;
      it->qnext = d->qhead;
      d->qhead = it;
      if (d->qtail == NULL) {
        d->qtail = it;
      }
      return;
    }
    d->last_start_ms = now;
  }
}

/* ------------------------------------------------------------------------ */
/* Out of the node */

static void after_removed(struct daemon *d, struct item *it) {
  enum item_after after = it->after;
  it->after = AFTER_NOTHING;
  switch (after) {
  case AFTER_PAUSE:
    set_state(d, it, DS_PAUSED);
    break;
  case AFTER_START:
    enqueue(d, it, 0);
    break;
  case AFTER_RECHECK:
    it->full_check = 1;
    enqueue(d, it, 1);
    break;
  case AFTER_REMOVE:
  case AFTER_NOTHING:
    break;
  }
}

static void on_node_removed(void *arg) {
  struct item *it = arg;
  struct daemon *d = it->d;
  it->removing = 0;
  it->in_node = 0;
  if (it->gone) {
    item_release_if_idle(d, it);
    start_next(d);
    return;
  }
  after_removed(d, it);
  start_next(d);
}

/* Takes the item's swarm out of the node (when it has one), then does
 * what it->after says. */
static void take_out(struct daemon *d, struct item *it, enum item_after after) {
  it->after = after;
  dequeue(d, it);
  if (it->rc != NULL) {
    recheck_cancel(it->rc); /* on_checked goes on */
    return;
  }
  if (it->removing) {
    return;
  }
  if (it->in_node) {
    /* The figures go into the library before the swarm's are lost. */
    save(d);
    if (node_remove(d->node, it->content, on_node_removed, it) == 0) {
      it->removing = 1;
      return;
    }
    it->in_node = 0;
  }
  after_removed(d, it);
}

/* ------------------------------------------------------------------------ */
/* Node events */

static void on_node_event(void *arg, const struct node_event *ev) {
  struct daemon *d = arg;
  struct item *it;
  struct library_entry *e;
  if (ev->type == NODE_EV_LISTENING) {
    d->port = ev->port;
    return;
  }
  if (ev->type == NODE_EV_WARNING && ev->swarm == NULL) {
    log_warn("daemon", "%s", ev->message);
    return;
  }
  if (ev->swarm == NULL || ev->swarm->content == NULL) {
    return;
  }
  it = item_find(d, ev->swarm->content);
  if (it == NULL || it->removing || !it->in_node) {
    return;
  }
  {
    const struct node_swarm_info *s = ev->swarm;
    if (s->have != it->info.have || s->rate != it->info.rate ||
        s->uploaded != it->info.uploaded || s->peers != it->info.peers ||
        s->downloaded != it->info.downloaded || s->total != it->info.total) {
      it->moved = 1;
    }
    if (s->uploaded < it->last_up) {
      it->last_up = 0; /* a new swarm counts from 0 */
    }
    if (ev->type == NODE_EV_PROGRESS) {
      /* Upload rate over the last progress period, smoothed. */
      uint64_t now = uv_now(d->loop);
      if (it->last_up_ms != 0 && now > it->last_up_ms) {
        uint64_t r =
            (s->uploaded - it->last_up) * 1000u / (now - it->last_up_ms);
        it->up_rate = (it->up_rate + r) / 2;
        if (it->up_rate != r) {
          it->moved = 1;
        }
      }
      it->last_up = s->uploaded;
      it->last_up_ms = now;
    }
    it->info = *s;
    it->info.content = NULL;
    it->info.name = NULL;
  }
  /* The library entry only for the rare events that change it: progress
   * comes twice a second for every content. */
  e = ev->type == NODE_EV_SHARED || ev->type == NODE_EV_COMPLETE
          ? entry_of(d, it)
          : NULL;
  switch (ev->type) {
  case NODE_EV_SHARED:
    if (e != NULL && ev->link != NULL &&
        (e->link == NULL || strcmp(e->link, ev->link) != 0)) {
      (void)library_set_link(&d->lib, e, ev->link);
      save_soon(d);
      notify(d, it, DAEMON_STATE);
    }
    break;
  case NODE_EV_MANIFEST:
  case NODE_EV_PROGRESS:
    if (it->state == DS_FETCHING && ev->swarm->total > 0) {
      set_state(d, it, DS_DOWNLOADING);
    }
    if (ev->swarm->seeding && it->state != DS_SEEDING &&
        it->state != DS_CHANGED && it->state != DS_FAILED) {
      set_state(d, it, DS_SEEDING);
    }
    break;
  case NODE_EV_COMPLETE:
    if (e != NULL && !e->complete) {
      e->complete = 1;
      d->lib.dirty = 1;
      save(d);
      record_download(d, it);
    }
    clear_error(d, it);
    set_state(d, it, DS_SEEDING);
    break;
  case NODE_EV_FAILED:
    set_error(d, it, ev->message != NULL ? ev->message : "failed");
    set_state(d, it, ev->code == SHOAL_ECHANGED ? DS_CHANGED : DS_FAILED);
    save_soon(d);
    break;
  case NODE_EV_WARNING:
    log_warn("daemon", "%s: %s", it->name, ev->message);
    break;
  default:
    break;
  }
}

/* ------------------------------------------------------------------------ */
/* Sharing a path */

static void on_share_progress(void *arg, uint64_t done, uint64_t total) {
  on_check_progress(arg, done, total);
}

static void after_share_saved(uv_work_t *w, int status) {
  struct stat_work *s = container_of(w, struct stat_work, w);
  struct item *it = s->it;
  struct daemon *d = it->d;
  struct manifest *m = it->m;
  struct library_entry *e;
  it->works--;
  it->m = NULL;
  if (status != 0 || s->status != 0 || d->stopping || it->gone) {
    int err = status != 0 ? status : s->status;
    manifest_free(m);
    stat_work_free(s);
    if (!d->stopping && !it->gone) {
      fail_item(d, it, DS_FAILED, "cannot save the manifest: %s",
                shoal_strerror(err));
    }
    item_release_if_idle(d, it);
    return;
  }
  e = entry_of(d, it);
  if (e != NULL) {
    (void)library_set_files(&d->lib, e, s->files, s->n);
    save_soon(d);
  }
  stat_work_free(s);
  into_node_as_source(d, it, m);
}

static void on_share_built(void *arg, int status, struct manifest *m) {
  struct item *it = arg;
  struct daemon *d = it->d;
  struct library_entry *e;
  struct stat_work *s;
  char msg[DAEMON_MSG_BYTES];
  int err = 0;
  it->builder = NULL;
  if (status != 0 || d->stopping) {
    manifest_free(m);
    if (status != SHOAL_ECANCELED && !d->stopping) {
      say(msg, sizeof(msg), "cannot share %s: %s", it->path,
          shoal_strerror(status));
      say(it->error, sizeof(it->error), "%s", msg);
      set_state(d, it, DS_FAILED);
    }
    item_release_if_idle(d, it);
    return;
  }
  if (m->file_count == 0) {
    say(it->error, sizeof(it->error), "cannot share %s: it holds no files",
        it->path);
    manifest_free(m);
    set_state(d, it, DS_FAILED);
    return;
  }
  if (item_find(d, m->id) != NULL) {
    say(it->error, sizeof(it->error),
        "%s is already in the library as this very content", it->path);
    manifest_free(m);
    set_state(d, it, DS_FAILED);
    return;
  }
  e = library_add(&d->lib, m->id, LIBRARY_SHARE, m->name, m->local_root, &err);
  if (e == NULL) {
    say(it->error, sizeof(it->error), "cannot add %s: %s", it->path,
        shoal_strerror(err));
    manifest_free(m);
    set_state(d, it, DS_FAILED);
    return;
  }
  e->added = (int64_t)time(NULL);
  e->complete = 1;
  memcpy(it->content, m->id, MANIFEST_ID_BYTES);
  it->has_content = 1;
  item_hash(d, it);
  snprintf(it->name, sizeof(it->name), "%s", m->name);
  free(it->path);
  it->path = NULL;
  it->m = m;
  save(d);
  notify(d, it, DAEMON_ADDED);
  /* The manifest is saved and the files' records taken on the pool; the
   * content is seeded after that. */
  s = calloc(1, sizeof(*s));
  if (s != NULL) {
    s->it = it;
    s->m = m;
    s->root = strdup(m->local_root);
    s->bytes = malloc(m->encoded_len);
    s->len = m->encoded_len;
    s->manifest_path = manifest_path_of(d, m->id);
  }
  if (s == NULL || s->root == NULL || s->bytes == NULL ||
      s->manifest_path == NULL) {
    if (s != NULL) {
      stat_work_free(s);
    }
    fail_item(d, it, DS_FAILED, "out of memory");
    return;
  }
  memcpy(s->bytes, m->encoded, m->encoded_len);
  it->works++;
  if (uv_queue_work(d->loop, &s->w, stat_work, after_share_saved) != 0) {
    it->works--;
    stat_work_free(s);
    fail_item(d, it, DS_FAILED, "cannot queue the manifest's save");
  }
}

int daemon_share_path(struct daemon *d, const char *path, char *msg,
                      size_t cap) {
  struct manifest_build_opts o;
  struct item *it;
  struct stat st;
  const char *base;
  int err;
  if (path == NULL || path[0] != '/') {
    say(msg, cap, "the path to share must be absolute, not '%s'",
        path != NULL ? path : "");
    return 400;
  }
  if (stat(path, &st) != 0) {
    say(msg, cap, "cannot share %s: %s", path, strerror(errno));
    return errno == ENOENT || errno == ENOTDIR ? 404 : 400;
  }
  if (d->cfg.ntrackers == 0) {
    say(msg, cap,
        "the daemon has no tracker to publish to — start it with "
        "--tracker HOST[:PORT]");
    return 409;
  }
  base = strrchr(path, '/');
  base = base != NULL && base[1] != '\0' ? base + 1 : path;
  for (it = d->first; it != NULL; it = it->next) {
    if (it->gone) {
      continue;
    }
    if (!it->has_content && it->path != NULL && strcmp(it->path, path) == 0) {
      if (it->builder != NULL) {
        say(msg, cap, "%s is being hashed already", path);
        return 409;
      }
      break; /* a failed try: this one replaces it */
    }
  }
  if (it == NULL) {
    it = item_new(d);
    if (it == NULL) {
      say(msg, cap, "out of memory");
      return 500;
    }
    it->path = strdup(path);
    if (it->path == NULL) {
      item_free(d, it);
      say(msg, cap, "out of memory");
      return 500;
    }
  }
  it->kind = LIBRARY_SHARE;
  it->error[0] = '\0';
  it->check_done = it->check_total = 0;
  snprintf(it->name, sizeof(it->name), "%s", base);
  memset(&o, 0, sizeof(o));
  o.threads = 2;
  o.progress = on_share_progress;
  o.arg = it;
  err = manifest_build_start(d->loop, path, d->id, &o, on_share_built, it,
                             &it->builder);
  if (err != 0) {
    say(msg, cap, "cannot share %s: %s", path, shoal_strerror(err));
    item_free(d, it);
    return 400;
  }
  it->state = DS_CHECKING;
  notify(d, it, DAEMON_ADDED);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The operations */

int daemon_add_link(struct daemon *d, const char *text, const char *dir,
                    uint8_t content_out[MANIFEST_ID_BYTES], char *msg,
                    size_t cap) {
  struct share_link l;
  struct library_entry *e;
  struct item *it;
  const char *why;
  char dirmsg[HOME_MSG_BYTES];
  int err = 0;
  if (text == NULL || link_parse(text, strlen(text), &l, &why) != 0) {
    say(msg, cap, "not a share link: %s", text == NULL ? "none given" : why);
    return 400;
  }
  if (dir == NULL || dir[0] == '\0') {
    dir = d->download_dir;
  } else if (dir[0] != '/') {
    say(msg, cap, "the folder must be an absolute path, not '%s'", dir);
    return 400;
  }
  memcpy(content_out, l.id, MANIFEST_ID_BYTES);
  if (library_find(&d->lib, l.id) != NULL) {
    say(msg, cap, "%s is already in the library", l.name);
    return 409;
  }
  for (struct item *g = d->first; g != NULL; g = g->next) {
    if (g->gone && g->has_content &&
        memcmp(g->content, l.id, MANIFEST_ID_BYTES) == 0) {
      say(msg, cap, "%s is still being removed; try again in a moment", l.name);
      return 409;
    }
  }
  if (home_out_dir(dir, dirmsg, sizeof(dirmsg)) != 0) {
    say(msg, cap, "%s", dirmsg);
    return 400;
  }
  e = library_add(&d->lib, l.id, LIBRARY_DOWNLOAD, l.name, dir, &err);
  if (e == NULL) {
    say(msg, cap, "cannot add %s: %s", l.name, shoal_strerror(err));
    return err == UV_EEXIST ? 409 : 500;
  }
  e->added = (int64_t)time(NULL);
  if (library_set_link(&d->lib, e, text) != 0) {
    library_remove(&d->lib, l.id);
    say(msg, cap, "out of memory");
    return 500;
  }
  it = item_new(d);
  if (it == NULL) {
    library_remove(&d->lib, l.id);
    say(msg, cap, "out of memory");
    return 500;
  }
  memcpy(it->content, l.id, MANIFEST_ID_BYTES);
  it->has_content = 1;
  item_hash(d, it);
  it->kind = LIBRARY_DOWNLOAD;
  snprintf(it->name, sizeof(it->name), "%s", l.name);
  it->info.total = l.size;
  it->state = DS_QUEUED;
  save(d);
  notify(d, it, DAEMON_ADDED);
  enqueue(d, it, 0);
  return 0;
}

static struct item *find_or_404(struct daemon *d, const uint8_t *content,
                                char *msg, size_t cap) {
  struct item *it = item_find(d, content);
  if (it == NULL) {
    char text[TEXTID_STRLEN];
    textid_encode(TEXTID_CONTENT, content, text);
    say(msg, cap,
        "no content with ID %s in the library; 'shoal-peer ls' lists "
        "them",
        text);
  }
  return it;
}

/* Sets e's paused flag and saves it at once (a user's action). */
static void set_paused(struct daemon *d, struct library_entry *e, int paused) {
  e->paused = paused;
  d->lib.dirty = 1;
  save(d);
}

int daemon_pause(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                 char *msg, size_t cap) {
  struct item *it = find_or_404(d, content, msg, cap);
  struct library_entry *e;
  if (it == NULL) {
    return 404;
  }
  e = entry_of(d, it);
  if (e == NULL || e->paused) {
    say(msg, cap, "%s is paused already", it->name);
    return 409;
  }
  set_paused(d, e, 1);
  take_out(d, it, AFTER_PAUSE);
  if (it->state != DS_PAUSED) {
    /* Shown paused at once; the swarm leaves the node behind the scenes. */
    set_state(d, it, DS_PAUSED);
  }
  return 0;
}

int daemon_resume(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                  char *msg, size_t cap) {
  struct item *it = find_or_404(d, content, msg, cap);
  struct library_entry *e;
  if (it == NULL) {
    return 404;
  }
  e = entry_of(d, it);
  if (e == NULL || !e->paused) {
    say(msg, cap, "%s is not paused", it->name);
    return 409;
  }
  set_paused(d, e, 0);
  if (it->removing || it->rc != NULL) {
    it->after = AFTER_START;
    set_state(d, it, DS_QUEUED);
  } else {
    enqueue(d, it, 0);
  }
  return 0;
}

int daemon_recheck(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                   char *msg, size_t cap) {
  struct item *it = find_or_404(d, content, msg, cap);
  struct library_entry *e;
  if (it == NULL) {
    return 404;
  }
  e = entry_of(d, it);
  if (it->rc != NULL || it->state == DS_CHECKING) {
    say(msg, cap, "%s is being checked already", it->name);
    return 409;
  }
  if (e != NULL && e->paused) {
    set_paused(d, e, 0);
  }
  take_out(d, it, AFTER_RECHECK);
  if (it->removing) {
    /* Shown checking at once; the check starts once the swarm has left
     * the node. */
    set_state(d, it, DS_CHECKING);
  }
  return 0;
}

int daemon_remove(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                  int with_data, char *msg, size_t cap) {
  struct item *it = find_or_404(d, content, msg, cap);
  struct library_entry *e;
  struct daemon_item_view v;
  if (it == NULL) {
    return 404;
  }
  e = entry_of(d, it);
  if (with_data && it->kind == LIBRARY_SHARE) {
    say(msg, cap,
        "%s is a share: its files are only ever read, never deleted — "
        "remove it without deleting data",
        it->name);
    return 409;
  }
  if (with_data && e != NULL) {
    /* Deleted once the swarm has left the node (item_release_if_idle):
     * closing its storage saves the resume record one last time. */
    char *dir = strdup(e->path);
    if (dir == NULL) {
      say(msg, cap, "out of memory");
      return 500;
    }
    free(it->path);
    it->path = dir;
    it->delete_data = 1;
  }
  view_of(d, it, &v);
  if (d->change_cb != NULL) {
    d->change_cb(d->change_arg, DAEMON_REMOVED, &v);
  }
  library_remove(&d->lib, it->content);
  save(d);
  it->gone = 1;
  take_out(d, it, AFTER_REMOVE);
  item_release_if_idle(d, it);
  return 0;
}

void daemon_set_limits(struct daemon *d, uint64_t upload, uint64_t download) {
  d->cfg.node.upload_rate = upload;
  d->cfg.node.download_rate = download;
  node_set_rates(d->node, upload, download);
}

/* ------------------------------------------------------------------------ */
/* Reading */

unsigned daemon_each(struct daemon *d,
                     void (*fn)(void *arg, const struct daemon_item_view *v),
                     void *arg) {
  unsigned n = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (struct item *it = d->first; it != NULL; it = it->next) {
      struct daemon_item_view v;
      if (it->gone || (pass == 0) != it->has_content) {
        continue;
      }
      view_of(d, it, &v);
      fn(arg, &v);
      n++;
    }
  }
  return n;
}

int daemon_get(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
               struct daemon_item_view *out) {
  struct item *it = item_find(d, content);
  if (it == NULL) {
    return 404;
  }
  view_of(d, it, out);
  return 0;
}

unsigned daemon_each_moved(struct daemon *d,
                           void (*fn)(void *arg,
                                      const struct daemon_item_view *v),
                           void *arg) {
  unsigned n = 0;
  for (struct item *it = d->first; it != NULL; it = it->next) {
    struct daemon_item_view v;
    if (it->gone || !it->moved) {
      continue;
    }
    it->moved = 0;
    view_of(d, it, &v);
    fn(arg, &v);
    n++;
  }
  return n;
}

void daemon_totals(struct daemon *d, struct daemon_totals *out) {
  memset(out, 0, sizeof(*out));
  for (struct item *it = d->first; it != NULL; it = it->next) {
    if (it->gone) {
      continue;
    }
    out->contents++;
    if (it->state == DS_SEEDING) {
      out->seeding++;
    } else if (it->state == DS_DOWNLOADING || it->state == DS_FETCHING) {
      out->downloading++;
    }
    if (it->in_node && it->state != DS_PAUSED) {
      out->download_rate += it->info.rate;
      out->upload_rate += it->up_rate;
    }
  }
  out->uploaded = node_uploaded(d->node);
  out->downloaded = node_downloaded(d->node);
  out->upload_limit = d->cfg.node.upload_rate;
  out->download_limit = d->cfg.node.download_rate;
  out->port = d->port;
  out->started = d->started;
}

const char *daemon_state_name(enum daemon_state s) {
  static const char *const names[] = {
      "queued",  "checking", "fetching", "downloading",
      "seeding", "paused",   "changed",  "failed",
  };
  return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

void daemon_listen(struct daemon *d, daemon_change_cb cb, void *arg) {
  d->change_cb = cb;
  d->change_arg = arg;
}

/* ------------------------------------------------------------------------ */
/* The watch folder */

/* A dropped file's or folder's signature: its size and time, and a
 * folder's entries' one level down, so that something still being copied
 * in is left until it stops changing. */
static uint64_t folder_sig(const char *path) {
  uint64_t sig = 1469598103934665603ull;
  struct stat top;
  DIR *dir;
  struct dirent *de;
  if (lstat(path, &top) != 0) {
    return 0;
  }
  sig = (sig ^ (uint64_t)top.st_size) * 1099511628211ull;
  sig = (sig ^ (uint64_t)top.st_mtim.tv_sec) * 1099511628211ull;
  sig = (sig ^ (uint64_t)top.st_mtim.tv_nsec) * 1099511628211ull;
  if (!S_ISDIR(top.st_mode) || (dir = opendir(path)) == NULL) {
    return sig;
  }
  while ((de = readdir(dir)) != NULL) {
    struct stat st;
    char *p = path_join(path, de->d_name);
    if (p != NULL && lstat(p, &st) == 0) {
      sig = (sig ^ (uint64_t)st.st_size) * 1099511628211ull;
      sig = (sig ^ (uint64_t)st.st_mtim.tv_sec) * 1099511628211ull;
      sig = (sig ^ (uint64_t)st.st_mtim.tv_nsec) * 1099511628211ull;
    }
    free(p);
  }
  closedir(dir);
  return sig;
}

static int shared_already(struct daemon *d, const char *root,
                          const char *name) {
  size_t rlen = strlen(root);
  for (uint32_t i = 0; i < d->lib.count; i++) {
    const struct library_entry *e = &d->lib.entries[i];
    if (e->kind == LIBRARY_SHARE && strcmp(e->name, name) == 0 &&
        strcmp(e->path, root) == 0) {
      return 1;
    }
  }
  for (struct item *it = d->first; it != NULL; it = it->next) {
    if (!it->has_content && it->path != NULL &&
        strncmp(it->path, root, rlen) == 0 && it->path[rlen] == '/' &&
        strcmp(it->path + rlen + 1, name) == 0) {
      return 1;
    }
  }
  return 0;
}

/* A NAME.shoal file in the watch folder holds a link: it is added, then
 * the file is renamed NAME.shoal.added (NAME.shoal.invalid when it holds
 * no link). */
static void watch_file(struct daemon *d, const char *name) {
  char buf[LINK_MAX_CHARS + 2];
  char msg[DAEMON_MSG_BYTES];
  char *p = path_join(d->watch_dir, name);
  char *to;
  uint8_t content[MANIFEST_ID_BYTES];
  ssize_t n;
  int fd, rc;
  if (p == NULL) {
    return;
  }
  fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    free(p);
    return;
  }
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n < 0) {
    free(p);
    return;
  }
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                   buf[n - 1] == ' ' || buf[n - 1] == '\t')) {
    buf[--n] = '\0';
  }
  rc = daemon_add_link(d, buf, NULL, content, msg, sizeof(msg));
  if (rc != 0 && rc != 409) {
    log_warn("daemon", "watch: %s: %s", p, msg);
  } else {
    log_info("daemon", "watch: %s: %s", p, rc == 0 ? "added" : msg);
  }
  to = malloc(strlen(p) + 16);
  if (to != NULL) {
    sprintf(to, "%s%s", p, rc == 0 || rc == 409 ? ".added" : ".invalid");
    if (rename(p, to) != 0) {
      log_warn("daemon", "watch: cannot rename %s: %s", p, strerror(errno));
    }
    free(to);
  }
  free(p);
}

static void watch_folder(struct daemon *d, const char *name) {
  uint64_t sig;
  char *p = path_join(d->watch_dir, name);
  unsigned i;
  if (p == NULL || shared_already(d, d->watch_dir, name)) {
    free(p);
    return;
  }
  sig = folder_sig(p);
  for (i = 0; i < d->ncand; i++) {
    if (strcmp(d->cand[i].name, name) == 0) {
      break;
    }
  }
  if (i == d->ncand) {
    if (d->ncand == WATCH_MAX_CANDIDATES) {
      free(p);
      return;
    }
    d->ncand++;
    snprintf(d->cand[i].name, sizeof(d->cand[i].name), "%s", name);
    d->cand[i].sig = sig;
    d->cand[i].seen = 0;
    free(p);
    return;
  }
  if (d->cand[i].sig != sig) {
    d->cand[i].sig = sig; /* still changing: wait for it */
    free(p);
    return;
  }
  {
    char msg[DAEMON_MSG_BYTES];
    int rc = daemon_share_path(d, p, msg, sizeof(msg));
    if (rc != 0) {
      log_warn("daemon", "watch: %s: %s", p, msg);
    } else {
      log_info("daemon", "watch: sharing %s", p);
    }
  }
  d->cand[i] = d->cand[--d->ncand];
  free(p);
}

static int has_suffix(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void on_watch(uv_timer_t *t) {
  struct daemon *d = t->data;
  DIR *dir = opendir(d->watch_dir);
  struct dirent *de;
  if (dir == NULL) {
    return;
  }
  while ((de = readdir(dir)) != NULL) {
    struct stat st;
    char *p;
    if (de->d_name[0] == '.' || has_suffix(de->d_name, ".added") ||
        has_suffix(de->d_name, ".invalid")) {
      continue;
    }
    p = path_join(d->watch_dir, de->d_name);
    if (p == NULL || lstat(p, &st) != 0) {
      free(p);
      continue;
    }
    free(p);
    if (S_ISREG(st.st_mode) && has_suffix(de->d_name, WATCH_LINK_SUFFIX)) {
      if (st.st_size <= LINK_MAX_CHARS + 2) {
        watch_file(d, de->d_name);
      }
    } else if ((S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) &&
               d->cfg.watch_share) {
      watch_folder(d, de->d_name);
    }
  }
  closedir(dir);
}

/* ------------------------------------------------------------------------ */
/* Life */

static void on_tick(uv_timer_t *t) {
  struct daemon *d = t->data;
  uint64_t now = uv_now(d->loop);
  start_next(d);
  if ((d->save_due_ms != 0 && now >= d->save_due_ms) ||
      now - d->last_save_ms >= LIBRARY_SAVE_MS) {
    save(d);
    d->last_save_ms = now;
  }
}

int daemon_new(struct daemon **out, uv_loop_t *loop,
               const struct daemon_config *c, const struct identity *id,
               char *msg, size_t cap) {
  struct daemon *d;
  int err;
  *out = NULL;
  d = calloc(1, sizeof(*d));
  if (d == NULL) {
    say(msg, cap, "out of memory");
    return SHOAL_ENOMEM;
  }
  d->loop = loop;
  d->id = id;
  d->cfg = *c;
  snprintf(d->home, sizeof(d->home), "%s", c->home);
  d->cfg.home = d->home;
  if (c->download_dir != NULL) {
    say(d->download_dir, sizeof(d->download_dir), "%s", c->download_dir);
  } else {
    say(d->download_dir, sizeof(d->download_dir), "%s/downloads", d->home);
  }
  d->cfg.download_dir = d->download_dir;
  if (c->watch_dir != NULL) {
    snprintf(d->watch_dir, sizeof(d->watch_dir), "%s", c->watch_dir);
    d->cfg.watch_dir = d->watch_dir;
  }
  d->started = (int64_t)time(NULL);
  {
    /* Each seeding file keeps a descriptor open: a library of thousands
     * needs more than the usual soft limit of 1024, and the hard limit is
     * there for the taking, as servers do. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  err = library_load(&d->lib, d->home, msg, cap);
  if (err != 0) {
    library_close(&d->lib);
    free(d);
    return err;
  }
  d->cfg.node.home = d->home;
  d->cfg.node.listen = c->listen;
  err = node_new(&d->node, loop, &d->cfg.node, id, on_node_event, d);
  if (err != 0) {
    say(msg, cap, "cannot listen on %s: %s — choose another --listen",
        c->listen != NULL ? c->listen : "the default address",
        shoal_strerror(err));
    *out = d; /* the node's handles close through daemon_stop */
    return err;
  }
  uv_timer_init(loop, &d->tick);
  uv_timer_init(loop, &d->watch);
  uv_timer_init(loop, &d->start_timer);
  d->start_timer.data = d;
  d->tick.data = d;
  d->watch.data = d;
  uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
  if (d->cfg.watch_dir != NULL) {
    uv_timer_start(&d->watch, on_watch, 0, DAEMON_WATCH_MS);
  }
  /* Every content of the library comes back. */
  for (uint32_t i = 0; i < d->lib.count; i++) {
    const struct library_entry *e = &d->lib.entries[i];
    struct item *it = item_new(d);
    if (it == NULL) {
      say(msg, cap, "out of memory");
      *out = d;
      return SHOAL_ENOMEM;
    }
    memcpy(it->content, e->content, MANIFEST_ID_BYTES);
    it->has_content = 1;
    item_hash(d, it);
    it->kind = e->kind;
    snprintf(it->name, sizeof(it->name), "%s", e->name);
    if (e->paused) {
      it->state = DS_PAUSED;
    } else {
      it->state = DS_QUEUED;
      it->queued = 1;
      if (d->qtail != NULL) {
        d->qtail->qnext = it;
      } else {
        d->qhead = it;
      }
      d->qtail = it;
    }
  }
  start_next(d);
  *out = d;
  return 0;
}

uint16_t daemon_port(const struct daemon *d) {
  return d->port;
}

/* The stop's callback, once every handle has closed and the library's
 * last text is on disk. */
static void maybe_stopped(struct daemon *d) {
  if (d->stopping && d->closing == 0 && d->writing == NULL &&
      d->stop_cb != NULL) {
    void (*cb)(void *) = d->stop_cb;
    d->stop_cb = NULL;
    cb(d->stop_arg);
  }
}

static void closed_one(struct daemon *d) {
  d->closing--;
  maybe_stopped(d);
}

static void on_closed(uv_handle_t *h) {
  closed_one(h->data);
}

static void on_node_stopped(void *arg) {
  struct daemon *d = arg;
  /* The swarms' last figures, in the library before it closes. */
  d->lib.dirty = 1;
  save(d);
  closed_one(d);
}

void daemon_stop(struct daemon *d, void (*cb)(void *arg), void *arg) {
  if (d->stopping) {
    return;
  }
  save(d);
  d->stopping = 1;
  d->stop_cb = cb;
  d->stop_arg = arg;
  for (struct item *it = d->first; it != NULL; it = it->next) {
    if (it->builder != NULL) {
      manifest_build_cancel(it->builder);
    }
    if (it->rc != NULL) {
      recheck_cancel(it->rc);
    }
  }
  d->closing = 1; /* the node */
  if (d->tick.loop != NULL) {
    d->closing += 3;
    d->tick.data = d;
    d->watch.data = d;
    uv_close((uv_handle_t *)&d->tick, on_closed);
    uv_close((uv_handle_t *)&d->watch, on_closed);
    d->start_timer.data = d;
    uv_close((uv_handle_t *)&d->start_timer, on_closed);
  }
  if (d->node != NULL) {
    node_stop(d->node, on_node_stopped, d);
  } else {
    on_node_stopped(d);
  }
}

void daemon_free(struct daemon *d) {
  if (d == NULL) {
    return;
  }
  node_free(d->node);
  free(d->next_text);
  while (d->first != NULL) {
    item_free(d, d->first);
  }
  library_close(&d->lib);
  free(d);
}
