/* A swarm's manifest: fetched from the peers that hold it in units,
 * answered to peers, and kept under manifests/ (fetch.h).
 *
 * Each session asked has one record (struct fetch_req): the unit, and how
 * far it got; it asks for the rest of its unit, one part in flight, so the
 * bytes it sends arrive once each and in order. The total comes with the
 * first part and may not change. The whole must hash to the content ID
 * before it is decoded: bytes that do not are a sender's lie (which
 * sender is known only when one sent them all), bytes that do but do not
 * decode are the publisher's mistake, which no peer can mend.
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

void fetch_free(struct fetch *f) {
  free(f->bytes);
  free(f->units);
  memset(f, 0, sizeof(*f));
}

/* Back to nothing asked; what was learnt of the senders stays. */
static void fetch_reset(struct fetch *f) {
  int single = f->single;
  unsigned badsig = f->badsig, version = f->version;
  fetch_free(f);
  f->single = single;
  f->badsig = badsig;
  f->version = version;
}

/* s's record, or with s NULL a free one; NULL when there is none. */
static struct fetch_req *req_of(struct fetch *f, const struct session *s) {
  for (unsigned i = 0; i < NODE_MANIFEST_WAYS; i++) {
    if (f->req[i].to == s) {
      return &f->req[i];
    }
  }
  return NULL;
}

static unsigned reqs_out(const struct fetch *f) {
  unsigned n = 0;
  for (unsigned i = 0; i < NODE_MANIFEST_WAYS; i++) {
    n += f->req[i].to != NULL;
  }
  return n;
}

/* Asks r's session for the rest of its unit at now. */
static void ask_rest(struct fetch *f, struct fetch_req *r, uint64_t now,
                     struct fetch_ask *ask) {
  const struct fetch_unit *u = &f->units[r->unit];
  r->asked = u->len - r->got;
  r->sent_ms = now;
  ask->to = r->to;
  ask->offset = u->start + r->got;
  ask->length = r->asked;
}

/* The unit a free session takes at now: the lowest nobody is asked for,
 * else (not single) the one asked longest ago of one other, at least
 * NODE_MANIFEST_AGAIN_MS ago; UINT32_MAX when none. */
static uint32_t pick_unit(const struct fetch *f, uint64_t now) {
  uint32_t best = UINT32_MAX;
  for (uint32_t k = 0; k < f->nunits; k++) {
    if (!f->units[k].done && f->units[k].askers == 0) {
      return k;
    }
  }
  if (f->single) {
    return UINT32_MAX;
  }
  for (uint32_t k = 0; k < f->nunits; k++) {
    const struct fetch_unit *u = &f->units[k];
    if (!u->done && u->askers == 1 &&
        now - u->first_ms >= NODE_MANIFEST_AGAIN_MS &&
        (best == UINT32_MAX || u->first_ms < f->units[best].first_ms)) {
      best = k;
    }
  }
  return best;
}

int fetch_offer(struct fetch *f, struct session *s, uint64_t now,
                struct fetch_ask *ask) {
  struct fetch_req *r = NULL;
  uint32_t k;
  ask->to = NULL;
  if (s == NULL || req_of(f, s) != NULL) {
    return 0;
  }
  if (f->total == 0) {
    if (reqs_out(f) > 0) {
      return 0; /* the first part is under way: it tells the total */
    }
    r = &f->req[0];
    memset(r, 0, sizeof(*r));
    r->to = s;
    r->asked = PWIRE_MANIFEST_PART_BYTES;
    r->sent_ms = now;
    f->first = s;
    ask->to = s;
    ask->offset = 0;
    ask->length = r->asked;
    return 1;
  }
  if ((f->single && reqs_out(f) > 0) || (r = req_of(f, NULL)) == NULL ||
      (k = pick_unit(f, now)) == UINT32_MAX) {
    return 0;
  }
  memset(r, 0, sizeof(*r));
  r->to = s;
  r->unit = k;
  if (f->units[k].askers++ == 0) {
    f->units[k].first_ms = now;
  }
  ask_rest(f, r, now, ask);
  return 1;
}

int fetch_left(struct fetch *f, const struct session *s) {
  struct fetch_req *r;
  if (s == NULL) {
    return 0;
  }
  r = req_of(f, s);
  if (s == f->first && f->total > 0) {
    f->first = NULL; /* its bytes stay, beside the next session's */
    f->mixed = 1;
  }
  if (r == NULL) {
    return 0;
  }
  if (f->total == 0) {
    fetch_reset(f); /* the first part: from the top with another */
    return 1;
  }
  f->units[r->unit].askers--;
  r->to = NULL; /* the unit is asked again from its start */
  return 1;
}

struct session *fetch_overdue(const struct fetch *f, uint64_t now,
                              uint64_t timeout_ms) {
  for (unsigned i = 0; i < NODE_MANIFEST_WAYS; i++) {
    if (f->req[i].to != NULL && now - f->req[i].sent_ms > timeout_ms) {
      return f->req[i].to;
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
  for (unsigned i = 0; i < NODE_MANIFEST_WAYS; i++) {
    if (f->req[i].to != NULL) {
      bytes += f->req[i].asked;
    }
  }
  ms = 2 * bytes * 1000 / down->rate;
  return ms > NODE_REQUEST_TIMEOUT_MS ? ms : NODE_REQUEST_TIMEOUT_MS;
}

/* The first part m tells the total: the buffer, and the units (the first
 * part's own, then the rest split), the first asked already by r. */
static int take_total(struct fetch *f, const struct pwire_msg *m,
                      const struct fetch_req *r) {
  uint32_t first, rest, unit, n;
  if (m->total == 0 || m->data_len > m->total) {
    return SHOAL_EFORMAT;
  }
  if (m->total > MANIFEST_MAX_BYTES) {
    return SHOAL_ETOOBIG;
  }
  first = m->total < PWIRE_MANIFEST_PART_BYTES ? m->total
                                               : PWIRE_MANIFEST_PART_BYTES;
  rest = m->total - first;
  unit = (rest + NODE_MANIFEST_UNITS - 1) / NODE_MANIFEST_UNITS;
  unit = unit < NODE_MANIFEST_UNIT_MIN ? NODE_MANIFEST_UNIT_MIN : unit;
  unit = unit > PWIRE_MANIFEST_PART_BYTES ? PWIRE_MANIFEST_PART_BYTES : unit;
  n = (rest + unit - 1) / unit;
  f->bytes = malloc(m->total);
  f->units = calloc(1 + n, sizeof(*f->units));
  if (f->bytes == NULL || f->units == NULL) {
    return SHOAL_ENOMEM; /* fetch_free releases either */
  }
  f->units[0].len = first;
  f->units[0].askers = 1;
  f->units[0].first_ms = r->sent_ms;
  for (uint32_t k = 0; k < n; k++) {
    f->units[1 + k].start = first + k * unit;
    f->units[1 + k].len = k + 1 < n ? unit : rest - k * unit;
  }
  f->nunits = 1 + n;
  f->total = m->total;
  return 0;
}

/* A whole that is not the content's: from one session, it lied (and is
 * named: FETCH_NOT_OURS); from several, nobody can be named, and from now
 * on one session at a time is asked (FETCH_RETRY). */
static int lied(struct fetch *f) {
  int one = !f->mixed;
  if (!one) {
    f->single = 1;
  }
  fetch_reset(f);
  return one ? FETCH_NOT_OURS : FETCH_RETRY;
}

/* Every unit is in: the whole is checked and decoded. */
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
  if (*err == SHOAL_EBADSIG && (f->mixed || f->badsig == 0)) {
    manifest_free(*out);
    *out = NULL;
    f->badsig += !f->mixed;
    return lied(f);
  }
  f->version = manifest_version_of(f->bytes, f->total);
  fetch_reset(f);
  return *err == 0 ? FETCH_DONE : FETCH_INVALID;
}

int fetch_on_part(struct fetch *f, const uint8_t content[MANIFEST_ID_BYTES],
                  struct session *s, const struct pwire_msg *m, uint64_t now,
                  struct fetch_ask *ask, struct manifest **out, int *err) {
  struct fetch_req *r = s != NULL ? req_of(f, s) : NULL;
  struct fetch_unit *u;
  int e;

  ask->to = NULL;
  if (r == NULL) {
    return SHOAL_EPROTO;
  }
  if (m->data_len == 0 || m->data_len > r->asked) {
    return SHOAL_EFORMAT;
  }
  if (f->total == 0) {
    if (m->offset != 0) {
      return SHOAL_EFORMAT;
    }
    if ((e = take_total(f, m, r)) != 0) {
      return e;
    }
  } else if (m->total != f->total) {
    return SHOAL_EFORMAT;
  }
  u = &f->units[r->unit];
  if (m->offset != u->start + r->got || m->data_len > u->len - r->got) {
    return SHOAL_EFORMAT;
  }
  if (s != f->first) {
    f->mixed = 1;
  }
  if (!u->done) {
    memcpy(f->bytes + m->offset, m->data, m->data_len);
  }
  r->got += (uint32_t)m->data_len;
  if (!u->done && r->got < u->len) {
    ask_rest(f, r, now, ask); /* a shorter part: the rest of the unit */
    return FETCH_MORE;
  }
  /* The unit is in, from s or (asked twice) from the other first. */
  u->done = 1;
  u->askers--;
  r->to = NULL;
  for (uint32_t k = 0; k < f->nunits; k++) {
    if (!f->units[k].done) {
      (void)fetch_offer(f, s, now, ask);
      return FETCH_MORE;
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
