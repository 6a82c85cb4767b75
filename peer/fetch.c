/* A swarm's manifest: fetched from the peers that hold it in stripes,
 * answered to peers, and kept under manifests/ (fetch.h).
 *
 * Each stripe is asked of one session in parts of at most
 * PWIRE_MANIFEST_PART_BYTES, in order, one part in flight, so the bytes of
 * a stripe arrive once each and in order; the total comes with the first
 * part and may not change. The whole must hash to the content ID before it
 * is decoded: bytes that do not are a sender's lie (which sender is known
 * only when one sent them all), bytes that do but do not decode are the
 * publisher's mistake, which no peer can mend.
 */
#include "peer/fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "peer/internal.h"

void fetch_init(struct fetch *f) {
  memset(f, 0, sizeof(*f));
}

/* Back to nothing asked; a fetch that went single stays single. */
static void fetch_reset(struct fetch *f) {
  int single = f->single;
  unsigned version = f->version, badsig = f->badsig;
  free(f->bytes);
  memset(f, 0, sizeof(*f));
  f->single = single;
  f->version = version;
  f->badsig = badsig;
}

void fetch_free(struct fetch *f) {
  free(f->bytes);
  memset(f, 0, sizeof(*f));
}

static int stripe_of(const struct fetch *f, const struct session *s) {
  for (unsigned k = 0; k < f->nstripes; k++) {
    if (f->st[k].from == s) {
      return (int)k;
    }
  }
  return -1;
}

static uint32_t stripe_left(const struct fetch_stripe *t) {
  return t->end - t->start - t->got;
}

/* Asks stripe k's session for its next part at now. */
static void ask_next(struct fetch *f, unsigned k, uint64_t now,
                     struct fetch_ask *ask) {
  struct fetch_stripe *t = &f->st[k];
  uint32_t len = stripe_left(t);
  if (len > PWIRE_MANIFEST_PART_BYTES) {
    len = PWIRE_MANIFEST_PART_BYTES;
  }
  t->asked = len;
  t->sent_ms = now;
  ask->to = t->from;
  ask->offset = t->start + t->got;
  ask->length = len;
}

/* Gives s the first stripe that waits for a session, if any. */
static int assign(struct fetch *f, struct session *s, uint64_t now,
                  struct fetch_ask *ask) {
  for (unsigned k = 0; k < f->nstripes; k++) {
    struct fetch_stripe *t = &f->st[k];
    if (t->from == NULL && stripe_left(t) > 0) {
      t->from = s;
      ask_next(f, k, now, ask);
      return 1;
    }
  }
  return 0;
}

int fetch_offer(struct fetch *f, struct session *s, uint64_t now,
                struct fetch_ask *ask) {
  ask->to = NULL;
  if (s == NULL || stripe_of(f, s) >= 0) {
    return 0;
  }
  if (f->nstripes == 0) {
    struct fetch_stripe *t = &f->st[0];
    f->nstripes = 1;
    memset(t, 0, sizeof(*t));
    t->from = s;
    t->asked =
        f->single ? PWIRE_MANIFEST_PART_BYTES : NODE_MANIFEST_FIRST_BYTES;
    t->sent_ms = now;
    ask->to = s;
    ask->offset = 0;
    ask->length = t->asked;
    return 1;
  }
  if (f->total == 0) {
    return 0; /* the first part is under way: it tells how to split */
  }
  return assign(f, s, now, ask);
}

int fetch_left(struct fetch *f, const struct session *s) {
  int k = stripe_of(f, s);
  if (s == NULL || k < 0) {
    return 0;
  }
  if (f->single || f->total == 0) {
    fetch_reset(f); /* one source for all, or no total yet: from the top */
  } else {
    f->st[k].from = NULL;
    f->st[k].asked = 0;
  }
  return 1;
}

struct session *fetch_overdue(const struct fetch *f, uint64_t now,
                              uint64_t timeout_ms) {
  for (unsigned k = 0; k < f->nstripes; k++) {
    if (f->st[k].from != NULL && now - f->st[k].sent_ms > timeout_ms) {
      return f->st[k].from;
    }
  }
  return NULL;
}

uint64_t fetch_timeout_ms(const struct fetch *f,
                          const struct rate_bucket *down) {
  uint64_t bytes = 0, ms;
  if (rate_unlimited(down)) {
    return NODE_REQUEST_TIMEOUT_MS;
  }
  for (unsigned k = 0; k < f->nstripes; k++) {
    if (f->st[k].from != NULL) {
      bytes += f->st[k].asked;
    }
  }
  ms = 2 * bytes * 1000 / down->rate;
  return ms > NODE_REQUEST_TIMEOUT_MS ? ms : NODE_REQUEST_TIMEOUT_MS;
}

/* The first part told the total: stripe 0 ends at what it asked (or the
 * total), the rest is split into stripes that wait for sessions. */
static void split_rest(struct fetch *f) {
  uint32_t from = f->st[0].end, rest = f->total - from;
  unsigned ways;
  if (rest == 0) {
    return;
  }
  ways = rest / NODE_MANIFEST_STRIPE_MIN;
  if (ways == 0) {
    ways = 1;
  } else if (ways > NODE_MANIFEST_WAYS) {
    ways = NODE_MANIFEST_WAYS;
  }
  for (unsigned i = 0; i < ways; i++) {
    struct fetch_stripe *t = &f->st[1 + i];
    memset(t, 0, sizeof(*t));
    t->start = from + (uint32_t)((uint64_t)rest * i / ways);
    t->end = from + (uint32_t)((uint64_t)rest * (i + 1) / ways);
  }
  f->nstripes = 1 + ways;
}

/* The first part m: the total, the buffer, and stripe 0's extent. */
static int take_total(struct fetch *f, const struct pwire_msg *m) {
  struct fetch_stripe *t = &f->st[0];
  if (m->total == 0 || m->data_len > m->total) {
    return SHOAL_EFORMAT;
  }
  if (m->total > MANIFEST_MAX_BYTES) {
    return SHOAL_ETOOBIG;
  }
  f->bytes = malloc(m->total);
  if (f->bytes == NULL) {
    return SHOAL_ENOMEM;
  }
  f->total = m->total;
  t->end = f->single || t->asked > f->total ? f->total : t->asked;
  return 0;
}

/* Bytes that are not the content's: from one session, it lied; from
 * several, which one cannot be told, so one is asked for all of it. */
static int lied(struct fetch *f) {
  int one = f->single;
  f->single = 1;
  fetch_reset(f);
  return one ? FETCH_NOT_OURS : FETCH_RETRY;
}

/* Every stripe is in: the whole is checked and decoded. */
static int finish(struct fetch *f, const uint8_t content[MANIFEST_ID_BYTES],
                  struct manifest **out, int *err) {
  uint8_t id[MANIFEST_ID_BYTES];
  if (manifest_id_of(f->bytes, f->total, id) != 0 ||
      memcmp(id, content, MANIFEST_ID_BYTES) != 0) {
    return lied(f);
  }
  *out = NULL;
  *err = manifest_decode(f->bytes, f->total, out);
  /* The content ID leaves out the signature, which the publisher made
   * over the rest: a bad one under the right ID is a sender's change,
   * unless a second sender alone sends it too (then the publisher's). */
  if (*err == SHOAL_EBADSIG && (!f->single || f->badsig == 0)) {
    manifest_free(*out);
    *out = NULL;
    f->badsig = (unsigned)f->single;
    return lied(f);
  }
  f->version = manifest_version_of(f->bytes, f->total);
  fetch_reset(f);
  return *err == 0 ? FETCH_DONE : FETCH_INVALID;
}

int fetch_on_part(struct fetch *f, const uint8_t content[MANIFEST_ID_BYTES],
                  struct session *s, const struct pwire_msg *m, uint64_t now,
                  struct fetch_ask *ask, struct manifest **out, int *err) {
  int k = stripe_of(f, s), e;
  struct fetch_stripe *t;

  ask->to = NULL;
  if (s == NULL || k < 0) {
    return SHOAL_EPROTO;
  }
  t = &f->st[k];
  if (m->offset != t->start + t->got || m->data_len == 0 ||
      m->data_len > t->asked) {
    return SHOAL_EFORMAT;
  }
  if (f->total == 0) {
    if ((e = take_total(f, m)) != 0) {
      return e;
    }
  } else if (m->total != f->total) {
    return SHOAL_EFORMAT;
  }
  if (m->data_len > stripe_left(t)) {
    return SHOAL_EFORMAT;
  }
  memcpy(f->bytes + m->offset, m->data, m->data_len);
  t->got += (uint32_t)m->data_len;
  t->asked = 0;
  if (stripe_left(t) > 0) {
    ask_next(f, (unsigned)k, now, ask);
    return FETCH_MORE;
  }
  t->from = NULL;
  if (k == 0 && f->nstripes == 1) {
    split_rest(f);
  }
  if (assign(f, s, now, ask)) {
    return FETCH_MORE;
  }
  for (unsigned j = 0; j < f->nstripes; j++) {
    if (stripe_left(&f->st[j]) > 0) {
      return FETCH_MORE; /* another session's stripe is under way */
    }
  }
  return finish(f, content, out, err);
}

int fetch_answer(const struct manifest *m, struct session *s,
                 const struct pwire_msg *req) {
  struct pwire_msg r;
  size_t total = m->encoded_len, n;
  if (req->offset >= total) {
    return SHOAL_EINVAL;
  }
  n = total - req->offset;
  if (n > req->length) {
    n = req->length;
  }
  memset(&r, 0, sizeof(r));
  r.type = PWIRE_MANIFEST_PART;
  r.total = (uint32_t)total;
  r.offset = req->offset;
  r.data = m->encoded + req->offset;
  r.data_len = n;
  return session_send(s, &r);
}

/* ------------------------------------------------------------------------ */
/* The manifests/ folder */

static void manifest_path(const char *home, const char *content_text, char *out,
                          size_t cap) {
  snprintf(out, cap, "%s/manifests/%s", home, content_text);
}

/* Keeps the verified manifest so a resumed get needs no peer to start.
 * The bytes are a copy: the swarm may be removed (node_remove) and its
 * manifest freed before the thread pool gets to the work. */
struct manifest_save {
  uv_work_t work;
  char path[4096];
  size_t len;
  int err;
  uint8_t bytes[];
};

/* On the thread pool: temporary file, fsync, rename. */
static void manifest_save_work(uv_work_t *w) {
  struct manifest_save *ms = container_of(w, struct manifest_save, work);
  char tmp[4200];
  int fd;
  snprintf(tmp, sizeof(tmp), "%s.tmp", ms->path);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    ms->err = -errno;
    return;
  }
  if (write(fd, ms->bytes, ms->len) != (ssize_t)ms->len || fsync(fd) != 0) {
    ms->err = errno != 0 ? -errno : UV_EIO;
    close(fd);
    unlink(tmp);
    return;
  }
  close(fd);
  if (rename(tmp, ms->path) != 0) {
    ms->err = -errno;
    unlink(tmp);
  }
}

static void manifest_saved(uv_work_t *w, int status) {
  struct manifest_save *ms = container_of(w, struct manifest_save, work);
  (void)status;
  if (ms->err != 0) {
    /* Only a resumed get needs it, and it can fetch the manifest again. */
    log_warn("peer", "cannot save %s: %s", ms->path, shoal_strerror(ms->err));
  }
  free(ms);
}

void fetch_save(uv_loop_t *loop, const char *home, const char *content_text,
                const struct manifest *m) {
  struct manifest_save *ms = calloc(1, sizeof(*ms) + m->encoded_len);
  if (ms == NULL) {
    return;
  }
  manifest_path(home, content_text, ms->path, sizeof(ms->path));
  memcpy(ms->bytes, m->encoded, m->encoded_len);
  ms->len = m->encoded_len;
  if (uv_queue_work(loop, &ms->work, manifest_save_work, manifest_saved) != 0) {
    free(ms);
  }
}

struct manifest *fetch_load(const char *home, const char *content_text,
                            const uint8_t content[MANIFEST_ID_BYTES],
                            unsigned *old_version) {
  if (old_version != NULL) {
    *old_version = 0;
  }
  char path[4096];
  struct stat st;
  struct manifest *m = NULL;
  uint8_t *bytes;
  uint8_t id[MANIFEST_ID_BYTES];
  int fd;
  manifest_path(home, content_text, path, sizeof(path));
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return NULL;
  }
  if (fstat(fd, &st) != 0 || st.st_size <= 0 ||
      (uint64_t)st.st_size > MANIFEST_MAX_BYTES) {
    close(fd);
    return NULL;
  }
  bytes = malloc((size_t)st.st_size);
  if (bytes == NULL ||
      read(fd, bytes, (size_t)st.st_size) != (ssize_t)st.st_size ||
      manifest_id_of(bytes, (size_t)st.st_size, id) != 0 ||
      memcmp(id, content, MANIFEST_ID_BYTES) != 0) {
    m = NULL;
  } else if (manifest_decode(bytes, (size_t)st.st_size, &m) != 0) {
    if (old_version != NULL &&
        manifest_version_of(bytes, (size_t)st.st_size) != MANIFEST_VERSION) {
      *old_version = manifest_version_of(bytes, (size_t)st.st_size);
    }
    m = NULL;
  }
  free(bytes);
  close(fd);
  return m;
}
