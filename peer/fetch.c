/* A swarm's manifest: fetched from a peer in parts, answered to peers,
 * and kept under manifests/ (fetch.h).
 *
 * A fetch asks one session for parts of PWIRE_MANIFEST_PART_BYTES in order
 * and takes only the next part from it, so the bytes arrive once each and
 * in order; their total comes with the first part and may not change. The
 * whole must hash to the content ID before it is decoded: bytes that do
 * not are the sender's lie, bytes that do but do not decode are the
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
  buf_init(&f->bytes, MANIFEST_MAX_BYTES);
}

void fetch_free(struct fetch *f) {
  buf_free(&f->bytes);
}

void fetch_start(struct fetch *f, struct session *s, uint64_t now) {
  struct pwire_msg m;
  if (f->from != NULL) {
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_MANIFEST_REQ;
  m.offset = 0;
  m.length = PWIRE_MANIFEST_PART_BYTES;
  buf_reset(&f->bytes);
  f->total = 0;
  f->from = s;
  f->sent_ms = now;
  if (session_send(s, &m) != 0) {
    f->from = NULL;
  }
}

int fetch_left(struct fetch *f, const struct session *s) {
  if (f->from != s || s == NULL) {
    return 0;
  }
  f->from = NULL;
  buf_reset(&f->bytes);
  f->total = 0;
  return 1;
}

struct session *fetch_overdue(const struct fetch *f, uint64_t now,
                              uint64_t timeout_ms) {
  return f->from != NULL && now - f->sent_ms > timeout_ms ? f->from : NULL;
}

uint64_t fetch_timeout_ms(const struct rate_bucket *down) {
  uint64_t ms;
  if (rate_unlimited(down)) {
    return NODE_REQUEST_TIMEOUT_MS;
  }
  ms = 2 * (uint64_t)PWIRE_MANIFEST_PART_BYTES * 1000 / down->rate;
  return ms > NODE_REQUEST_TIMEOUT_MS ? ms : NODE_REQUEST_TIMEOUT_MS;
}

int fetch_on_part(struct fetch *f, const uint8_t content[MANIFEST_ID_BYTES],
                  struct session *s, const struct pwire_msg *m, uint64_t now,
                  struct manifest **out, int *err) {
  uint8_t id[MANIFEST_ID_BYTES];

  if (f->from != s) {
    return SHOAL_EPROTO;
  }
  if (f->bytes.len == 0) {
    f->total = m->total;
  }
  if (m->total != f->total || m->offset != f->bytes.len ||
      m->data_len > m->total - m->offset) {
    return SHOAL_EFORMAT;
  }
  buf_add(&f->bytes, m->data, m->data_len);
  if (buf_err(&f->bytes) != 0) {
    return buf_err(&f->bytes);
  }
  if (f->bytes.len < f->total) {
    struct pwire_msg r;
    if (m->data_len == 0) {
      return SHOAL_EFORMAT;
    }
    memset(&r, 0, sizeof(r));
    r.type = PWIRE_MANIFEST_REQ;
    r.offset = (uint32_t)f->bytes.len;
    r.length = f->total - (uint32_t)f->bytes.len;
    if (r.length > PWIRE_MANIFEST_PART_BYTES) {
      r.length = PWIRE_MANIFEST_PART_BYTES;
    }
    f->sent_ms = now;
    return session_send(s, &r);
  }
  f->from = NULL;
  if (manifest_id_of(f->bytes.data, f->bytes.len, id) != 0 ||
      memcmp(id, content, MANIFEST_ID_BYTES) != 0) {
    buf_reset(&f->bytes);
    return FETCH_NOT_OURS;
  }
  *out = NULL;
  *err = manifest_decode(f->bytes.data, f->bytes.len, out);
  f->version = manifest_version_of(f->bytes.data, f->bytes.len);
  /* The buffer may have grown to MANIFEST_MAX_BYTES: give it back. */
  buf_free(&f->bytes);
  buf_init(&f->bytes, MANIFEST_MAX_BYTES);
  return *err == 0 ? FETCH_DONE : FETCH_INVALID;
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
