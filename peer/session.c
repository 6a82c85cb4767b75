/* A session: one TCP connection to another peer, for one content.
 *
 * Life of a session: connect (or accept), hellos, then encrypted messages
 * until either side closes; session_set_state alone moves it through those
 * states. The session owns the socket, the framing and the crypto, and
 * serves the remote's requests (the upload pump); what a message means for
 * the swarm is swarm.c's business, reached only through struct session_up.
 *
 * A session is freed only from its close callback, once no storage read
 * points at it (refs), so callbacks never see a freed session.
 */
#include <assert.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/internal.h"
#include "peer/pacing.h"

/* A hello frame is ENVELOPE_OVERHEAD + PWIRE_HELLO_PAYLOAD_BYTES bytes. */
#define SESSION_HELLO_FRAME_MAX 1024u
/* Under a download limit a read takes at most rate / SESSION_READ_SHARE
 * bytes (1/16 s of the limit), and at least SESSION_READ_MIN. */
#define SESSION_READ_SHARE 16u
#define SESSION_READ_MIN (16u << 10)

struct wreq {
  uv_write_t req;
  struct session *s;
  size_t len;
  /* A DATA frame waiting for the pool to seal it (s->to_seal), or a frame
   * waiting behind such a batch (s->held): the next one, and for DATA its
   * block and the plaintext message's length. */
  struct wreq *next;
  struct upreq r;
  size_t mlen;
  uint8_t manifest; /* a MANIFEST_PART: DATA waits behind it */
  uint8_t data[];
};

/* A frame of bytes bytes to write, not a manifest part until said. */
static struct wreq *wreq_alloc(size_t bytes) {
  struct wreq *w = malloc(sizeof(*w) + bytes);
  if (w != NULL) {
    w->manifest = 0;
  }
  return w;
}

/* DATA frames sealed on the thread pool, in counter order: at most
 * SEAL_BATCH a job. */
#define SEAL_BATCH 16u
struct seal_job {
  uv_work_t work;
  struct session *s;
  uint8_t key[PWIRE_KEY_BYTES]; /* the session's send key, copied */
  uint64_t first;               /* the first frame's counter */
  unsigned n;
  struct wreq *w[SEAL_BATCH];
  size_t bytes; /* blocks' bytes, of s->seal_bytes */
  int status;
};

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *b);

/* ------------------------------------------------------------------------ */
/* States */

static const char *const session_state_names[SESS_NSTATES] = {
    "connecting", "hello_wait", "open", "closing"};

/* Where each state may go: a bit per state. */
static const unsigned session_moves[SESS_NSTATES] = {
    [SESS_CONNECTING] = 1u << SESS_HELLO_WAIT | 1u << SESS_CLOSING,
    [SESS_HELLO_WAIT] = 1u << SESS_OPEN | 1u << SESS_CLOSING,
    [SESS_OPEN] = 1u << SESS_CLOSING,
    [SESS_CLOSING] = 0,
};

int session_state_allowed(enum session_state from, enum session_state to) {
  return (unsigned)from < SESS_NSTATES && (unsigned)to < SESS_NSTATES &&
         (session_moves[from] & (1u << to)) != 0;
}

const char *session_state_name(enum session_state st) {
  return (unsigned)st < SESS_NSTATES ? session_state_names[st] : "?";
}

/* The one place a session's state changes: checked against the table
 * (a refused move is a programmer's mistake), logged at debug level. */
static void session_set_state(struct session *s, enum session_state to) {
  assert(session_state_allowed(s->state, to));
  log_debug("peer", "session %s %s: %s -> %s", s->addr_text,
            s->remote_short[0] != '\0' ? s->remote_short : "-",
            session_state_name(s->state), session_state_name(to));
  s->state = to;
}

/* ------------------------------------------------------------------------ */
/* Making and freeing */

/* A session of n that starts in state initial: SESS_CONNECTING when we
 * dial, SESS_HELLO_WAIT when we accepted. */
static struct session *session_new(struct node *n, enum session_state initial) {
  struct session *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    return NULL;
  }
  s->node = n;
  s->slot = -1;
  s->am_choking = 1;
  s->peer_choking = 1;
  s->state = initial;
  s->started_ms = node_now(n);
  s->last_recv_ms = s->started_ms;
  s->last_send_ms = s->started_ms;
  s->choked_at_ms = s->started_ms;
  meter_init(&s->down_meter, 20000, s->started_ms);
  meter_init(&s->up_meter, NODE_PACE_METER_MS, s->started_ms);
  /* Until the hellos are done only a hello may come: a small limit keeps
   * connections that never say hello cheap. */
  frame_decoder_init(&s->dec, SESSION_HELLO_FRAME_MAX);
  pwire_eph_generate(&s->eph);
  if (uv_tcp_init(n->loop, &s->tcp) != 0) {
    frame_decoder_close(&s->dec);
    pwire_eph_close(&s->eph);
    free(s);
    return NULL;
  }
  s->tcp.data = s;
  s->to_seal_tail = &s->to_seal;
  s->held_tail = &s->held;
  return s;
}

static void addr_text(const struct sockaddr_storage *ss, char *out,
                      size_t cap) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
    uv_ip4_name(a, host, sizeof(host));
    port = ntohs(a->sin_port);
    snprintf(out, cap, "%s:%d", host, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a =
        (const struct sockaddr_in6 *)(const void *)ss;
    uv_ip6_name(a, host, sizeof(host));
    port = ntohs(a->sin6_port);
    snprintf(out, cap, "[%s]:%d", host, port);
  } else {
    snprintf(out, cap, "?");
  }
}

static void on_closed(uv_handle_t *h) {
  struct session *s = h->data;
  s->closed = 1;
  if (s->refs == 0) {
    frame_decoder_close(&s->dec);
    free(s->have_map);
    free(s);
  }
}

/* A storage read finished after the session closed. */
static void session_unref(struct session *s) {
  s->refs--;
  if (s->refs == 0 && s->closed) {
    frame_decoder_close(&s->dec);
    free(s->have_map);
    free(s);
  }
}

/* Frees a list of frames never written. */
static void free_frames(struct wreq *w) {
  while (w != NULL) {
    struct wreq *next = w->next;
    free(w);
    w = next;
  }
}

/* Appends w to the list whose last next pointer is *tail. */
static void frames_push(struct wreq ***tail, struct wreq *w) {
  w->next = NULL;
  **tail = w;
  *tail = &w->next;
}

/* Lets go of the frames a closed session still held for the pool: those
 * waiting to be sealed, and those waiting behind a batch. */
static void drop_unsealed(struct session *s) {
  free_frames(s->to_seal);
  free_frames(s->held);
  s->to_seal = s->held = NULL;
  s->to_seal_tail = &s->to_seal;
  s->held_tail = &s->held;
  s->seal_bytes = 0;
}

void session_close(struct session *s, const char *why) {
  struct node *n = s->node;
  if (s->state == SESS_CLOSING) {
    return;
  }
  log_info("peer", "session %s %s closed: %s", s->addr_text,
           s->remote_short[0] != '\0' ? s->remote_short : "-", why);
  if (s->sw != NULL && s->initiator && s->state != SESS_OPEN) {
    n->session_up->dial_failed(s->sw, s, why);
  }
  session_set_state(s, SESS_CLOSING);
  if (s->sw != NULL) {
    n->session_up->detach(s->sw, s);
  } else if (s->pprev != NULL) {
    *s->pprev = s->next;
    if (s->next != NULL) {
      s->next->pprev = s->pprev;
    }
    s->next = NULL;
    s->pprev = NULL;
  }
  pwire_eph_close(&s->eph);
  pwire_session_close(&s->ps);
  if (s->sealing == NULL) { /* else after_seal lets them go */
    drop_unsealed(s);
  }
  (void)n;
  uv_close((uv_handle_t *)&s->tcp, on_closed);
}

static void on_write(uv_write_t *req, int status) {
  struct wreq *w = container_of(req, struct wreq, req);
  struct session *s = w->s;
  struct node *n = s->node;
  int manifest = w->manifest;
  free(w);
  if (status < 0 && status != UV_ECANCELED && s->state != SESS_CLOSING) {
    session_close(s, uv_strerror(status));
  }
  if (manifest && pacing_ahead_taken(&n->ahead) && !n->stopping) {
    n->session_up->pump_all(n); /* the blocks held behind it go, s's too */
  } else if (s->state == SESS_OPEN) {
    session_pump_upload(s);
  }
}

/* Hands w to libuv now; frees it on an error. */
static int write_now(struct session *s, struct wreq *w) {
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
  int err;
  w->s = s;
  err = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
  if (err != 0) {
    free(w);
    return err;
  }
  s->last_send_ms = node_now(s->node);
  if (w->manifest) {
    pacing_ahead_wrote(&s->node->ahead, s->last_send_ms, w->len,
                       meter_rate(&s->node->up_meter, s->last_send_ms));
  }
  return 0;
}

/* Writes w, or, while the pool seals a batch of this session's DATA
 * frames, holds it to go out after them: its counter comes after theirs. */
static int write_frame(struct session *s, struct wreq *w) {
  if (s->sealing != NULL) {
    w->s = s;
    frames_push(&s->held_tail, w);
    s->last_send_ms = node_now(s->node);
    return 0;
  }
  return write_now(s, w);
}

static int send_hello(struct session *s) {
  struct node *n = s->node;
  struct pwire_hello h;
  struct buf out;
  struct wreq *w;
  size_t cap =
      FRAME_HEADER_BYTES + ENVELOPE_OVERHEAD + PWIRE_HELLO_PAYLOAD_BYTES;
  int err;

  memset(&h, 0, sizeof(h));
  memcpy(h.content, s->sw->content, sizeof(h.content));
  memcpy(h.eph_pk, s->eph.pk, sizeof(h.eph_pk));
  h.port = n->port;
  if (s->sw->state == SW_SEEDING) {
    h.flags |= PWIRE_HELLO_SEEDER;
  }
  if (n->cfg.mode == NODE_MODE_CS && !s->sw->is_source) {
    h.flags |= PWIRE_HELLO_NO_UPLOAD;
  } else {
    h.flags |= PWIRE_HELLO_PEX; /* it takes part in peer exchange (pex.c) */
  }
  w = wreq_alloc(cap);
  if (w == NULL) {
    return SHOAL_ENOMEM;
  }
  buf_init_fixed(&out, w->data, cap);
  buf_add(&out, "\0\0\0\0", FRAME_HEADER_BYTES);
  err = pwire_hello_seal(&out, n->id, clock_wall_ms(), node_next_seq(n), &h);
  if (err != 0) {
    free(w);
    return err;
  }
  frame_header(w->data, out.len - FRAME_HEADER_BYTES);
  w->len = out.len;
  return write_frame(s, w);
}

int session_send(struct session *s, const struct pwire_msg *m) {
  struct node *n = s->node;
  uint8_t small[64];
  struct buf plain;
  struct buf out;
  struct wreq *w;
  size_t cap;
  int err;

  if (s->state != SESS_OPEN) {
    return SHOAL_EPROTO;
  }
  /* A peer that asks and never reads would make us queue without end. */
  if (uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) >
      NODE_WRITE_QUEUE_HARD) {
    session_close(s, "the peer does not read what it asks for");
    return SHOAL_EBUSY;
  }
  /* Encode into a stack buffer for small messages, else the scratch. */
  if (m->data_len + 16 <= sizeof(small)) {
    buf_init_fixed(&plain, small, sizeof(small));
  } else {
    buf_init_fixed(&plain, n->plain, PWIRE_MAX_PLAIN);
  }
  err = pwire_encode(&plain, m);
  if (err != 0) {
    return err;
  }
  cap = FRAME_HEADER_BYTES + plain.len + PWIRE_TAG_BYTES;
  w = wreq_alloc(cap);
  if (w == NULL) {
    return SHOAL_ENOMEM;
  }
  buf_init_fixed(&out, w->data, cap);
  buf_add(&out, "\0\0\0\0", FRAME_HEADER_BYTES);
  err = pwire_seal(&s->ps, &out, plain.data, plain.len);
  if (err != 0) {
    free(w);
    return err;
  }
  frame_header(w->data, out.len - FRAME_HEADER_BYTES);
  w->len = out.len;
  w->manifest = m->type == PWIRE_MANIFEST_PART;
  err = write_frame(s, w);
  if (err != 0) {
    session_close(s, uv_strerror(err));
  }
  return err;
}

int session_send_block(struct session *s, uint8_t type, uint32_t chunk,
                       uint32_t offset, uint32_t length) {
  struct pwire_msg m;
  memset(&m, 0, sizeof(m));
  m.type = type;
  m.chunk = chunk;
  m.offset = offset;
  m.length = length;
  return session_send(s, &m);
}

int session_send_requests(struct session *s, const struct picker_block *b,
                          unsigned n) {
  /* Each REQUEST is its own frame (docs/protocol.md), but the frames go
   * out in one write: one system call and one wake-up of the other side
   * for a batch instead of one each. */
  enum {
    REQ_FRAME = FRAME_HEADER_BYTES + PWIRE_BLOCK_MSG_BYTES + PWIRE_TAG_BYTES
  };
  struct wreq *w;
  int err;
  if (s->state != SESS_OPEN || n == 0) {
    return s->state == SESS_OPEN ? 0 : SHOAL_EPROTO;
  }
  w = wreq_alloc((size_t)n * REQ_FRAME);
  if (w == NULL) {
    return SHOAL_ENOMEM;
  }
  for (unsigned i = 0; i < n; i++) {
    uint8_t *f = w->data + (size_t)i * REQ_FRAME;
    uint8_t *msg = f + FRAME_HEADER_BYTES;
    err = pwire_block_encode(msg, PWIRE_REQUEST, b[i].chunk, b[i].offset,
                             b[i].length);
    if (err != 0) {
      /* The frames before it are sealed already: the session cannot skip
       * one, so it ends. The picker never makes such a block. */
      free(w);
      session_close(s, "a request the wire cannot carry");
      return err;
    }
    err = pwire_seal_inplace(&s->ps, msg, PWIRE_BLOCK_MSG_BYTES);
    if (err != 0) {
      free(w);
      session_close(s, "session counter spent");
      return err;
    }
    frame_header(f, PWIRE_BLOCK_MSG_BYTES + PWIRE_TAG_BYTES);
  }
  w->len = (size_t)n * REQ_FRAME;
  err = write_frame(s, w);
  if (err != 0) {
    session_close(s, uv_strerror(err));
  }
  return err;
}

void session_send_simple(struct session *s, uint8_t type) {
  struct pwire_msg m;
  memset(&m, 0, sizeof(m));
  m.type = type;
  (void)session_send(s, &m);
}

/* ------------------------------------------------------------------------ */
/* Uploads */

struct readreq {
  struct session *s;
  struct upreq r;
  struct wreq *w; /* the DATA frame the block is read into */
  unsigned at;    /* its place in s->reads */
  int dropped;    /* cancelled or choked while it was read: not sent */
};

/* Whether r is the block only names, or any block when only is NULL. */
static int upreq_matches(const struct upreq *r, const struct upreq *only) {
  return only == NULL ||
         (r->chunk == only->chunk && r->offset == only->offset &&
          r->length == only->length);
}

/* Blocks being read for the remote that must not be sent after all: the
 * one named by only (a CANCEL), or every one (only NULL: a CHOKE). */
static void drop_reads(struct session *s, const struct upreq *only) {
  /* Read and waiting for the pool to seal them: no counter given yet, so
   * they can still go. */
  struct wreq **pp = &s->to_seal;
  while (*pp != NULL) {
    struct wreq *w = *pp;
    if (upreq_matches(&w->r, only)) {
      *pp = w->next;
      s->seal_bytes -= w->r.length;
      free(w);
    } else {
      pp = &w->next;
    }
  }
  s->to_seal_tail = pp; /* the last one's next, or the head */
  for (unsigned i = 0; i < NODE_READS_IN_FLIGHT; i++) {
    struct readreq *rr = s->reads[i];
    if (rr != NULL && upreq_matches(&rr->r, only)) {
      rr->dropped = 1;
    }
  }
}

int session_queue_request(struct session *s, const struct pwire_msg *m) {
  struct swarm *sw = s->sw;
  unsigned tail;
  if (sw->m == NULL || sw->st == NULL ||
      pwire_check_block(sw->m, m->chunk, m->offset, m->length) != 0) {
    log_warn("peer", "%s: %s asked for a block outside the content", sw->name,
             s->remote_short);
    return SHOAL_EINVAL;
  }
  if (s->am_choking || !storage_have(sw->st, m->chunk)) {
    struct pwire_msg r = *m;
    r.type = PWIRE_REJECT;
    return session_send(s, &r);
  }
  if (s->upq_len >= NODE_MAX_REMOTE_REQUESTS) {
    log_warn("peer", "%s: %s has too many requests outstanding", sw->name,
             s->remote_short);
    return SHOAL_ETOOBIG;
  }
  tail = (s->upq_head + s->upq_len) % NODE_MAX_REMOTE_REQUESTS;
  s->upq[tail].chunk = m->chunk;
  s->upq[tail].offset = m->offset;
  s->upq[tail].length = m->length;
  s->upq_len++;
  session_pump_upload(s);
  return 0;
}

void session_cancel_request(struct session *s, const struct pwire_msg *m) {
  unsigned kept = 0;
  struct upreq q[NODE_MAX_REMOTE_REQUESTS];
  for (unsigned i = 0; i < s->upq_len; i++) {
    struct upreq r = s->upq[(s->upq_head + i) % NODE_MAX_REMOTE_REQUESTS];
    if (r.chunk == m->chunk && r.offset == m->offset && r.length == m->length) {
      continue;
    }
    q[kept++] = r;
  }
  memcpy(s->upq, q, kept * sizeof(q[0]));
  s->upq_head = 0;
  s->upq_len = kept;
  struct upreq r = {m->chunk, m->offset, m->length};
  drop_reads(s, &r);
}

void session_drop_requests(struct session *s) {
  s->upq_len = 0;
  s->upq_head = 0;
  drop_reads(s, NULL);
}

/* Bytes before the block in a DATA frame: frame header, then the message's
 * head (pwire_data_head_encode). */
#define DATA_HEAD (FRAME_HEADER_BYTES + PWIRE_DATA_HEAD_BYTES)

/* Seals on the pool the frames waiting in s->to_seal, up to SEAL_BATCH,
 * under counters taken now, in their order. */
static void seal_work(uv_work_t *req) {
  struct seal_job *j = container_of(req, struct seal_job, work);
  for (unsigned i = 0; i < j->n && j->status == 0; i++) {
    struct wreq *w = j->w[i];
    j->status = pwire_seal_at(j->key, j->first + i,
                              w->data + FRAME_HEADER_BYTES, w->mlen);
  }
  sodium_memzero(j->key, sizeof(j->key));
}

static void start_sealing(struct session *s);

/* Writes the sealed batch, then the frames held behind it, and starts the
 * next batch. A session closed meanwhile lets them all go. */
static void after_seal(uv_work_t *req, int status) {
  struct seal_job *j = container_of(req, struct seal_job, work);
  struct session *s = j->s;
  struct wreq *held = s->held;
  uint32_t sent = 0;
  unsigned i = 0;
  int err = s->state == SESS_OPEN ? j->status : SHOAL_EPROTO;
  (void)status;
  /* The batch in counter order, then what was held behind it, all written
   * before anything else may be. */
  for (; i < j->n && err == 0; i++) {
    struct wreq *w = j->w[i];
    uint32_t length = w->r.length;
    frame_header(w->data, w->mlen + PWIRE_TAG_BYTES);
    w->len = FRAME_HEADER_BYTES + w->mlen + PWIRE_TAG_BYTES;
    err = write_now(s, w); /* which frees w on an error */
    sent += err == 0 ? length : 0;
  }
  for (; i < j->n; i++) {
    free(j->w[i]);
  }
  while (held != NULL && err == 0) {
    struct wreq *next = held->next;
    err = write_now(s, held);
    held = next;
  }
  free_frames(held); /* those after a failed write */
  s->held = NULL;
  s->held_tail = &s->held;
  s->sealing = NULL;
  s->seal_bytes -= j->bytes;
  if (err != 0 && s->state == SESS_OPEN) {
    session_close(s,
                  j->status != 0 ? "sealing a block failed" : uv_strerror(err));
  } else if (sent > 0 && s->state == SESS_OPEN) {
    s->node->session_up->uploaded(s->sw, s, sent);
  }
  free(j);
  if (s->state != SESS_OPEN) {
    drop_unsealed(s);
  } else if (s->to_seal != NULL) {
    start_sealing(s);
  }
  if (s->state == SESS_OPEN) {
    session_pump_upload(s);
  }
  session_unref(s);
}

static void start_sealing(struct session *s) {
  struct seal_job *j;
  uint64_t first = 0;
  unsigned n = 0;
  for (const struct wreq *w = s->to_seal; w != NULL && n < SEAL_BATCH;
       w = w->next) {
    n++;
  }
  j = calloc(1, sizeof(*j));
  if (j == NULL) {
    session_close(s, "out of memory");
    return;
  }
  if (pwire_seal_reserve(&s->ps, n, &first) != 0) {
    free(j);
    session_close(s, "session counter spent");
    return;
  }
  j->s = s;
  j->first = first;
  j->n = n;
  memcpy(j->key, s->ps.tx, sizeof(j->key));
  for (unsigned i = 0; i < n; i++) {
    struct wreq *w = s->to_seal;
    s->to_seal = w->next;
    w->next = NULL;
    j->w[i] = w;
    j->bytes += w->r.length;
  }
  if (s->to_seal == NULL) {
    s->to_seal_tail = &s->to_seal;
  }
  s->sealing = j;
  s->refs++;
  (void)uv_queue_work(s->node->loop, &j->work, seal_work, after_seal);
}

/* The block is already in place in w: add the message head, encrypt in
 * place (or, while the node seals on the pool, have the pool do it), frame
 * it and write it. */
static void send_block(struct session *s, const struct upreq *r, struct wreq *w,
                       size_t len) {
  uint8_t *msg = w->data + FRAME_HEADER_BYTES;
  size_t mlen = PWIRE_DATA_HEAD_BYTES + len;
  if (pwire_data_head_encode(msg, r->chunk, r->offset, len) != 0) {
    /* A read never returns more than the block asked for, which
     * on_request checked; nothing was sealed, so the session goes on. */
    free(w);
    (void)session_send_block(s, PWIRE_REJECT, r->chunk, r->offset, r->length);
  } else if (s->node->crypto_on_pool || s->to_seal != NULL) {
    w->r = *r;
    w->r.length = (uint32_t)len;
    w->mlen = mlen;
    frames_push(&s->to_seal_tail, w);
    s->seal_bytes += len;
    if (s->sealing == NULL) {
      start_sealing(s);
    }
  } else if (pwire_seal_inplace(&s->ps, msg, mlen) != 0) {
    free(w);
    session_close(s, "session counter spent");
  } else {
    frame_header(w->data, mlen + PWIRE_TAG_BYTES);
    w->len = FRAME_HEADER_BYTES + mlen + PWIRE_TAG_BYTES;
    if (write_frame(s, w) == 0) {
      s->node->session_up->uploaded(s->sw, s, (uint32_t)len);
    } else {
      session_close(s, "write failed");
    }
  }
}

/* A block could not be read for the remote: a shared file no longer what
 * was hashed stops the swarm (closing this session too; it stays
 * allocated until unref); any other failure rejects the block. */
static void block_unread(struct session *s, const struct upreq *r, int status) {
  if (status == SHOAL_ECHANGED && s->sw->is_source) {
    s->node->session_up->source_changed(s->sw);
  } else {
    log_warn("peer", "%s: cannot read chunk %u for %s: %s", s->sw->name,
             r->chunk, s->remote_short, shoal_strerror(status));
    (void)session_send_block(s, PWIRE_REJECT, r->chunk, r->offset, r->length);
  }
}

static void on_block_read(void *arg, int status, uint8_t *data, size_t len) {
  struct readreq *rr = arg;
  struct session *s = rr->s;
  struct upreq r = rr->r;
  struct wreq *w = rr->w;
  int was_full = s->node->reads >= NODE_READS_MAX;
  int dropped = rr->dropped;
  (void)data;
  s->reads[rr->at] = NULL;
  free(rr);
  s->reading--;
  s->node->reads--;
  if (s->state != SESS_OPEN || s->sw == NULL) {
    free(w);
    session_unref(s);
    return;
  }
  if (dropped) {
    /* A CANCEL or CHOKE came while it was read: the remote no longer
     * counts on it (rules 16 and 21 of docs/protocol.md), and sending it
     * would spend the upload on a block it discards or has already. */
    free(w);
  } else if (status != 0) {
    free(w);
    block_unread(s, &r, status);
  } else {
    send_block(s, &r, w, len);
  }
  /* Pump before letting go of the reference, so s is alive here. */
  if (s->state == SESS_OPEN) {
    session_pump_upload(s);
  }
  if (was_full) {
    /* Others may have waited for a read slot of the node. */
    s->node->session_up->pump_all(s->node);
  }
  session_unref(s);
}

/* Block reads one session may have in flight: an even share of the node's
 * NODE_READS_MAX among the sessions that want to upload (pacing_reads), so
 * that when many peers are served at once (a seeder in the client-server
 * baseline) none waits behind the others. */
static unsigned reads_share(const struct node *n) {
  unsigned busy = 0;
  for (const struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    for (const struct session *x = sw->sessions; x != NULL; x = x->next) {
      busy += x->upq_len > 0 || x->reading > 0;
    }
  }
  return pacing_reads(busy);
}

static size_t upload_queued(const struct session *s);

/* Whether the node serves this session: unchoked and interested. */
static int serving(const struct session *x) {
  return x->state == SESS_OPEN && !x->am_choking && x->peer_interested;
}

/* Whether it has uploads waiting: requests, reads or bytes queued. */
static int upload_busy(const struct session *x) {
  return x->upq_len > 0 || x->reading > 0 || upload_queued(x) > 0;
}

/* The session's share of the node's upload rate lately, in bytes a
 * second: the rate shared evenly among the peers the node is serving.
 * Even shares keep the uplink fair: a share by each session's own rate let
 * the faster ones keep more queued and so grow faster still (16
 * client-server clients of one publisher finished between 57 s and 225 s
 * that way). */
static uint64_t upload_share(const struct session *s, uint64_t now) {
  unsigned k = 0;
  for (const struct swarm *sw = s->node->swarms; sw != NULL; sw = sw->next) {
    for (const struct session *x = sw->sessions; x != NULL; x = x->next) {
      k += serving(x);
    }
  }
  return pacing_share(meter_rate(&s->node->up_meter, now), k);
}

void session_count_busy(struct node *n, uint64_t now) {
  n->up_busy = 0;
  n->up_busy_rate = 0;
  for (const struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    for (const struct session *x = sw->sessions; x != NULL; x = x->next) {
      if (serving(x) && upload_busy(x)) {
        n->up_busy++;
        n->up_busy_rate += meter_rate(&x->up_meter, now);
      }
    }
  }
}

/* A seeding swarm's session paced to its even share of the uplink
 * (pacing_cap), measured against the node's busy sessions of every swarm,
 * which share the uplink with it (counted once a tick, session_count_busy).
 * SO_MAX_PACING_RATE has the kernel space the session's packets at the
 * rate (TCP's own pacing when the qdisc does none); ~0 lifts the limit. */
static void tune_pacing(struct session *s, uint64_t now, uv_os_fd_t fd) {
#ifdef SO_MAX_PACING_RATE
  uint64_t want = 0;
  if (s->sw != NULL && s->sw->state == SW_SEEDING && serving(s) &&
      upload_busy(s)) {
    want = pacing_cap(meter_rate(&s->up_meter, now), s->node->up_busy_rate,
                      s->node->up_busy, s->pacing != 0);
  }
  if (want != s->pacing) {
    unsigned v = want == 0         ? ~0u
                 : want < UINT_MAX ? (unsigned)want
                                   : UINT_MAX - 1;
    if (setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &v, sizeof(v)) == 0) {
      s->pacing = want;
    }
  }
#else
  (void)s;
  (void)now;
  (void)fd;
#endif
}

/* The kernel's share of the queue, and a seeding swarm's pacing
 * (tune_pacing).
 * - TCP_NOTSENT_LOWAT keeps the socket from taking more than the queue
 *   budget of bytes not yet sent, so what else waits stays in the session,
 *   where control messages go ahead of it and a CANCEL or CHOKE can still
 *   withdraw it.
 * - SO_SNDBUF keeps what is in flight to the session's share of a round
 *   trip (pacing_send_buffer). Left to itself the kernel lets every connection
 *   keep its congestion window in flight; at a shared uplink the ones with
 *   the larger windows then take most of it, and the uplink's queue stays
 *   full, drops packets and delays every request and acknowledgement
 *   behind it. It never holds fewer than a few of the connection's
 *   segments (TCP_INFO's MSS, known once connected), which a path of large
 *   segments (loopback's are 64 KiB) needs to keep from waiting on the
 *   receiver's delayed ACKs.
 * Set once connected (on_connect, session_accepted), before anything is
 * sent, then again when one has moved by more than a quarter. */
void session_tune_socket(struct session *s, uint64_t now) {
  uint64_t share = upload_share(s, now);
  uv_os_fd_t fd;
  (void)share; /* unused where neither option exists */
  if (uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0) {
    return;
  }
  tune_pacing(s, now, fd);
#ifdef TCP_NOTSENT_LOWAT
  uint32_t want = pacing_queue_bytes(share);
  if (pacing_moved(s->notsent, want)) {
    int v = (int)want;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v)) == 0) {
      s->notsent = want;
    }
  }
#endif
#ifdef TCP_INFO
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  uint32_t rtt_us = 0, mss = 0;
  memset(&ti, 0, sizeof(ti));
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
    rtt_us = ti.tcpi_rtt;
    mss = ti.tcpi_snd_mss;
  }
  uint32_t buf = pacing_send_buffer(share, rtt_us, mss);
  if (pacing_moved(s->sndbuf, buf)) {
    int v = (int)(buf / 2); /* the kernel doubles it for its overhead */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) == 0) {
      s->sndbuf = buf;
    }
  }
#endif
}

/* DATA bytes on their way out of the session: written and not yet taken by
 * the kernel, or still being read from disk. */
static size_t upload_queued(const struct session *s) {
  size_t b = uv_stream_get_write_queue_size((const uv_stream_t *)&s->tcp) +
             s->seal_bytes;
  for (unsigned i = 0; i < NODE_READS_IN_FLIGHT; i++) {
    if (s->reads[i] != NULL && !s->reads[i]->dropped) {
      b += s->reads[i]->r.length;
    }
  }
  return b;
}

void session_pump_upload(struct session *s) {
  struct node *n = s->node;
  struct readreq *rr;
  struct upreq r;
  unsigned share;
  uint32_t budget;
  int err;

  /* A few reads in flight keep the disk and the socket busy at once. */
  if (s->upq_len == 0 || s->state != SESS_OPEN || s->sw == NULL ||
      s->am_choking) {
    return;
  }
  if (pacing_ahead_wait(&n->ahead, node_now(n)) > 0) {
    n->session_up->pump_later(n); /* when the hold ends, if no sooner */
    return;
  }
  share = reads_share(n);
  budget = pacing_queue_bytes(upload_share(s, node_now(n))); /* one walk */
  while (s->reading < share && n->reads < NODE_READS_MAX && s->upq_len > 0 &&
         s->state == SESS_OPEN && s->sw != NULL && !s->am_choking) {
    if (upload_queued(s) >= budget) {
      return; /* on_write pumps again */
    }
    r = s->upq[s->upq_head];
    if (!rate_take(&n->up_bucket, r.length, node_now(n))) {
      /* The node's timer comes back when tokens are there. */
      n->session_up->pump_later(n);
      return;
    }
    rr = malloc(sizeof(*rr));
    if (rr != NULL) {
      rr->w = wreq_alloc(DATA_HEAD + r.length + PWIRE_TAG_BYTES);
    }
    if (rr == NULL || rr->w == NULL) {
      free(rr);
      return;
    }
    /* From the page cache at once when it is there: no round trip through
     * the thread pool, whose wake-ups cost a seeder more than the copy. */
    err = storage_read_cached(s->sw->st, r.chunk, r.offset, r.length,
                              rr->w->data + DATA_HEAD);
    if (err != UV_EAGAIN) {
      struct wreq *w = rr->w;
      free(rr);
      s->upq_head = (s->upq_head + 1) % NODE_MAX_REMOTE_REQUESTS;
      s->upq_len--;
      if (err == 0) {
        send_block(s, &r, w, r.length);
        continue;
      }
      free(w);
      block_unread(s, &r, err);
      if (err == SHOAL_ECHANGED) {
        return; /* the swarm stopped, closing s */
      }
      continue;
    }
    rr->s = s;
    rr->r = r;
    rr->dropped = 0;
    rr->at = 0;
    while (s->reads[rr->at] != NULL) {
      rr->at++; /* a free place exists: reading < share <= the array */
    }
    err = storage_read_into(s->sw->st, r.chunk, r.offset, r.length,
                            rr->w->data + DATA_HEAD, on_block_read, rr);
    s->upq_head = (s->upq_head + 1) % NODE_MAX_REMOTE_REQUESTS;
    s->upq_len--;
    if (err != 0) {
      free(rr->w);
      free(rr);
      (void)session_send_block(s, PWIRE_REJECT, r.chunk, r.offset, r.length);
      continue;
    }
    s->reads[rr->at] = rr;
    s->reading++;
    n->reads++;
    s->refs++;
  }
}

/* ------------------------------------------------------------------------ */
/* Receiving */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  struct session *s = h->data;
  (void)hint;
  /* One buffer serves every session: frames are handled inside the read
   * callback, before another read can start. */
  b->base = (char *)s->node->rbuf;
  b->len = sizeof(s->node->rbuf);
  if (!rate_unlimited(&s->node->down_bucket)) {
    /* Under a download limit, one read is at most a sixteenth of a
     * second's worth (and at least 16 KiB): the bucket is charged after
     * the read, so this is also how far a second can run over the limit
     * (rate.h), and no pause outlasts the timeouts. */
    uint64_t most = s->node->down_bucket.rate / SESSION_READ_SHARE;
    if (most < SESSION_READ_MIN) {
      most = SESSION_READ_MIN;
    }
    if (most < b->len) {
      b->len = (size_t)most;
    }
  }
}

static int on_hello(struct session *s, const uint8_t *frame, size_t len) {
  struct node *n = s->node;
  struct envelope_policy pol;
  struct pwire_hello h;
  uint8_t sender[IDENTITY_PK_BYTES];
  int err;

  memset(&pol, 0, sizeof(pol));
  pol.cls = ENVELOPE_PEER_HELLO;
  pol.now_ms = clock_wall_ms();
  pol.window_ms = ENVELOPE_WINDOW_MS_DEFAULT;
  pol.expect_sender = s->have_expect ? s->expect_pk : NULL;
  pol.guard = &n->hello_guard;
  err = pwire_hello_open(frame, len, &pol, &h, sender);
  if (err == SHOAL_EVERSION) {
    log_warn("peer",
             "hello from %s refused: it speaks peer protocol %d (an older "
             "shoal), this peer speaks %d; both must run the same version",
             s->addr_text, pwire_hello_version(frame, len), PWIRE_VERSION);
    return err;
  }
  if (err != 0) {
    log_warn("peer", "hello from %s refused: %s", s->addr_text,
             shoal_strerror(err));
    return err;
  }
  memcpy(s->remote_pk, sender, sizeof(sender));
  textid_short(TEXTID_KEY, sender, s->remote_short);
  if (memcmp(sender, n->id->pk, IDENTITY_PK_BYTES) == 0) {
    log_debug("peer", "%s is this peer itself", s->addr_text);
    return SHOAL_EPROTO;
  }
  if (s->initiator) {
    if (memcmp(h.content, s->sw->content, MANIFEST_ID_BYTES) != 0) {
      log_warn("peer", "%s answered for another content", s->addr_text);
      return SHOAL_EPROTO;
    }
  } else {
    struct swarm *sw = n->session_up->find(n, h.content);
    if (sw == NULL) {
      log_info("peer", "%s asked for a content this peer does not have",
               s->addr_text);
      return SHOAL_EPROTO;
    }
    if (bans_is_banned(sw, sender)) {
      log_info("peer", "%s is banned", s->remote_short);
      return SHOAL_EPROTO;
    }
    /* Leave the pending list for the swarm's. */
    if (s->pprev != NULL) {
      *s->pprev = s->next;
      if (s->next != NULL) {
        s->next->pprev = s->pprev;
      }
      s->next = NULL;
      s->pprev = NULL;
    }
    s->sw = sw;
    err = n->session_up->attach(sw, s);
    if (err != 0) {
      s->sw = NULL;
      log_info("peer", "%s: no room for %s", sw->name, s->remote_short);
      return err;
    }
    err = send_hello(s);
    if (err != 0) {
      return err;
    }
  }
  err = pwire_session_init(&s->ps, &s->eph, h.eph_pk, s->initiator);
  pwire_eph_close(&s->eph);
  if (err != 0) {
    return err;
  }
  s->remote_flags = h.flags;
  s->remote_port = h.port;
  session_set_state(s, SESS_OPEN);
  s->dec.max = PWIRE_MAX_FRAME; /* between frames: the next header sees it */
  log_info("peer", "%s: session with %s at %s%s", s->sw->name, s->remote_short,
           s->addr_text, (h.flags & PWIRE_HELLO_SEEDER) ? " (seeder)" : "");
  n->session_up->opened(s->sw, s);
  return 0;
}

static int on_frame(struct session *s, const uint8_t *frame, size_t len) {
  struct node *n = s->node;
  struct pwire_msg m;
  int plen;
  int err;

  if (s->state == SESS_HELLO_WAIT) {
    return on_hello(s, frame, len);
  }
  if (len < PWIRE_TAG_BYTES + PWIRE_DATA_HEAD_BYTES + 1) {
    plen = pwire_open(&s->ps, frame, len, n->plain, PWIRE_MAX_PLAIN);
  } else {
    /* The message's head first, to put a DATA block straight into its
     * chunk: decrypted there (one copy of each byte fewer than through
     * the scratch), or, while the node opens blocks on the thread pool,
     * copied there still encrypted for the chunk's check to open before
     * its hash, leaving the loop to the network. */
    uint8_t *head = n->plain, *dest = NULL;
    size_t rlen = len - PWIRE_TAG_BYTES - PWIRE_DATA_HEAD_BYTES;
    struct pwire_sealed sealed;
    int defer;
    plen = pwire_open_head(&s->ps, frame, len, head, PWIRE_DATA_HEAD_BYTES);
    if (plen == 0 && head[0] == PWIRE_DATA && s->sw != NULL) {
      dest = n->session_up->data_dest(s->sw, s, buf_be32(head + 1),
                                      buf_be32(head + 5), rlen);
    }
    defer = dest != NULL && n->crypto_on_pool;
    if (plen == 0) {
      plen = defer ? pwire_open_defer(&s->ps, frame, len, dest, &sealed)
                   : pwire_open_rest(
                         &s->ps, frame, len, head, PWIRE_DATA_HEAD_BYTES,
                         dest != NULL ? dest : head + PWIRE_DATA_HEAD_BYTES);
    }
    if (plen >= 0 && dest != NULL) {
      memset(&m, 0, sizeof(m));
      m.type = PWIRE_DATA;
      m.chunk = buf_be32(head + 1);
      m.offset = buf_be32(head + 5);
      m.data = dest;
      m.data_len = rlen;
      m.sealed = defer ? &sealed : NULL;
      err = n->session_up->message(s->sw, s, &m);
      sodium_memzero(&sealed, sizeof(sealed));
      return err;
    }
  }
  if (plen < 0) {
    log_warn("peer", "%s: frame does not open: %s", s->remote_short,
             shoal_strerror(plen));
    return plen;
  }
  err = pwire_decode(n->plain, (size_t)plen, &m);
  if (err != 0) {
    log_warn("peer", "%s: bad message: %s", s->remote_short,
             shoal_strerror(err));
    return err;
  }
  return n->session_up->message(s->sw, s, &m);
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *b) {
  struct session *s = h->data;
  struct node *n = s->node;
  const uint8_t *p = (const uint8_t *)b->base;
  size_t left;

  if (nread < 0) {
    session_close(s, nread == UV_EOF ? "closed by the other side"
                                     : uv_strerror((int)nread));
    return;
  }
  if (nread == 0) {
    return;
  }
  s->last_recv_ms = node_now(n);
  n->session_up->charge_download(n, (size_t)nread);
  left = (size_t)nread;
  while (left > 0 && s->state != SESS_CLOSING) {
    const uint8_t *frame;
    size_t flen, used = 0;
    int r = frame_decoder_next(&s->dec, p, left, &used, &frame, &flen);
    p += used;
    left -= used;
    if (r < 0) {
      log_warn("peer", "%s: %s", s->addr_text, shoal_strerror(r));
      session_close(s, shoal_strerror(r));
      return;
    }
    if (r == 0) {
      break;
    }
    r = on_frame(s, frame, flen);
    if (r != 0 && s->state != SESS_CLOSING) {
      session_close(s, shoal_strerror(r));
      return;
    }
  }
}

void session_pause_reading(struct session *s) {
  if (s->state == SESS_OPEN || s->state == SESS_HELLO_WAIT) {
    uv_read_stop((uv_stream_t *)&s->tcp);
  }
}

void session_resume_reading(struct session *s) {
  if (s->state == SESS_OPEN || s->state == SESS_HELLO_WAIT) {
    int err = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (err != 0 && err != UV_EALREADY) {
      session_close(s, uv_strerror(err));
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Connecting and accepting */

static void on_connect(uv_connect_t *req, int status) {
  struct session *s = container_of(req, struct session, connect_req);
  int err;
  if (s->state == SESS_CLOSING) {
    return;
  }
  if (status < 0) {
    session_close(s, uv_strerror(status));
    return;
  }
  session_set_state(s, SESS_HELLO_WAIT);
  session_tune_socket(s, node_now(s->node)); /* now the MSS is known */
  err = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  if (err == 0) {
    err = send_hello(s);
  }
  if (err != 0) {
    session_close(s, shoal_strerror(err));
    return;
  }
  if (s->node->throttled) {
    session_pause_reading(s);
  }
}

int session_connect(struct node *n, struct swarm *sw, const struct sockaddr *sa,
                    const uint8_t *expect_pk) {
  struct session *s = session_new(n, SESS_CONNECTING);
  int err;
  if (s == NULL) {
    return SHOAL_ENOMEM;
  }
  s->initiator = 1;
  if (expect_pk != NULL) {
    s->have_expect = 1;
    memcpy(s->expect_pk, expect_pk, IDENTITY_PK_BYTES);
    textid_short(TEXTID_KEY, expect_pk, s->remote_short);
  }
  memcpy(&s->addr, sa,
         sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in));
  addr_text(&s->addr, s->addr_text, sizeof(s->addr_text));
  s->sw = sw;
  err = n->session_up->attach(sw, s);
  if (err != 0) {
    s->sw = NULL;
    session_set_state(s, SESS_CLOSING);
    uv_close((uv_handle_t *)&s->tcp, on_closed);
    return err;
  }
  err = uv_tcp_connect(&s->connect_req, &s->tcp, sa, on_connect);
  if (err != 0) {
    session_close(s, uv_strerror(err));
    return err;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  return 0; /* on_connect tunes the socket before anything is sent */
}

void session_accepted(struct node *n, uv_tcp_t *server) {
  struct session *s = session_new(n, SESS_HELLO_WAIT);
  int len = (int)sizeof(s->addr);
  int err;
  if (s == NULL) {
    return;
  }
  err = uv_accept((uv_stream_t *)server, (uv_stream_t *)&s->tcp);
  if (err == 0) {
    uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&s->addr, &len);
    addr_text(&s->addr, s->addr_text, sizeof(s->addr_text));
    uv_tcp_nodelay(&s->tcp, 1);
    session_tune_socket(s, node_now(n));
    err = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  }
  /* Accepted sessions wait on the node's list until a hello names their
   * swarm. */
  s->next = n->pending;
  if (n->pending != NULL) {
    n->pending->pprev = &s->next;
  }
  n->pending = s;
  s->pprev = &n->pending;
  if (err != 0) {
    session_close(s, uv_strerror(err));
    return;
  }
  if (n->throttled) {
    session_pause_reading(s);
  }
}

void session_tick(struct session *s, uint64_t now) {
  if (s->state == SESS_CONNECTING || s->state == SESS_HELLO_WAIT) {
    if (now - s->started_ms > NODE_HELLO_MS) {
      session_close(s, "no hello in time");
    }
    return;
  }
  if (s->state != SESS_OPEN) {
    return;
  }
  if (now - s->last_recv_ms > NODE_IDLE_MS) {
    session_close(s, "silent for too long");
    return;
  }
  session_tune_socket(s, now);
  if (now - s->last_send_ms > NODE_KEEPALIVE_MS) {
    session_send_simple(s, PWIRE_KEEPALIVE);
  }
}

int session_connected_to(const struct swarm *sw, const uint8_t pk[32]) {
  for (const struct session *s = sw->sessions; s != NULL; s = s->next) {
    if (memcmp(s->remote_pk, pk, IDENTITY_PK_BYTES) == 0 ||
        (s->have_expect && memcmp(s->expect_pk, pk, IDENTITY_PK_BYTES) == 0)) {
      return 1;
    }
  }
  return 0;
}
