/* The peer's tracker client: one pipelined connection, replies matched by
 * order, requests paced below the tracker's rate limit, fail-over on any
 * trouble.
 *
 * Requests live in two lists. `head` holds the pending ones in request
 * order: first those written, the oldest of which the next reply answers,
 * then those not written yet (`unsent` points at the link to the first of
 * them), which wait for the connection to open and for their turn
 * (tracker_pace.h) with their payload. A request is sealed (or framed, for
 * a query) only when it is written, so that its sequence number and
 * timestamp are those of the moment it leaves: a request held back by the
 * pace must not reach the tracker behind a later sequence number of the
 * same identity (the replay guard's window is REPLAY_WINDOW numbers wide,
 * and other clients of the node share the counter) nor with an old
 * timestamp. `done` holds requests that failed and whose callback
 * is due: failures are delivered from a zero-delay timer, so that a
 * failure found inside a tracker_client_* call (a connection that cannot even
 * start) never calls back inside that call, and so that tearing a connection
 * down never runs user code halfway. Replies are delivered straight from the
 * read callback, in order.
 *
 * A cancelled request (tracker_client_cancel) has had its callback and
 * keeps its place with none: a written one must stay for the replies
 * behind it to match their requests, and one still waiting for the
 * connection goes out all the same (a shared client's "stopped" announce
 * of a swarm that is gone still reaches the tracker).
 *
 * Invariant: a non-empty `head` means a current connection exists. Every
 * failure detaches the connection (t->conn = NULL), moves the whole of
 * `head` to `done` and moves t->cur to the next tracker, so the next
 * request makes a fresh connection there.
 *
 * A connection is a heap object of its own, because libuv finishes with it
 * after the client has moved on: a name resolution cannot be stopped at
 * once (uv_cancel may find it running), and a closing socket has its
 * callbacks still to come. A detached ("dead") connection is freed by the
 * last of those callbacks; the client itself is freed when its two timers
 * are closed and no connection is left.
 */
#include "peer/tracker_client.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/tracker_pace.h"

#define TRACKER_CLIENT_READ_BYTES                                              \
  (64u << 10) /* one read; replies are at most 17 KB */
#define TRACKER_CLIENT_REQUEST_MAX                                             \
  4096u /* largest request frame (2 754 bytes) */
/* The first bytes a connection hears, kept to show what a server that is
 * not a tracker said; of them, at most TRACKER_CLIENT_HEARD_SHOWN characters of
 * text (a banner's first line, or twelve bytes as \xNN) go into a message. */
#define TRACKER_CLIENT_HEARD_BYTES 64u
#define TRACKER_CLIENT_HEARD_SHOWN 48u

static const char who[] = "tracker-client";

enum conn_state {
  CONN_RESOLVING,  /* uv_getaddrinfo in flight */
  CONN_CONNECTING, /* uv_tcp_connect in flight */
  CONN_REOPENING,  /* closing the socket of a refused address */
  CONN_OPEN,       /* reading; requests are written at once */
  CONN_CLOSING,    /* detached; waiting for libuv to let go */
};

static const char *const state_names[] = {"resolving", "connecting",
                                          "reopening", "open", "closing"};

struct conn {
  struct tracker_client *t;
  enum conn_state state;
  unsigned tracker; /* index into t->trackers */
  int dead;         /* detached from the client; freed by libuv's last word */
  int gai_busy;
  int tcp_open; /* uv_tcp_init done and its close callback not yet run */
  int last_err; /* of the last address tried */
  int spoke;    /* a reply verified: the other side speaks shoal */
  size_t heard_len;
  uint8_t heard[TRACKER_CLIENT_HEARD_BYTES]; /* the first bytes it sent */
  uv_getaddrinfo_t gai;
  struct addrinfo *ai_list;
  struct addrinfo *ai_next;
  uv_tcp_t tcp;
  uv_connect_t connect;
  struct frame_decoder dec;
  uint8_t rbuf[TRACKER_CLIENT_READ_BYTES];
};

struct tracker_client_req {
  struct tracker_client_req *next;
  uint8_t type;                   /* TMSG_ANNOUNCE .. TMSG_SEARCH */
  uint8_t content[TMSG_ID_BYTES]; /* lookup and publish: for the echo */
  uint64_t id;                    /* envelope seq or query id, once sent */
  uint64_t deadline;              /* uv_now() ms; see arm_timer */
  int sent;                       /* written to the current connection */
  int status;                     /* on the done list */
  tracker_client_cb cb; /* NULL once cancelled (tracker_client_cancel) */
  void *arg;
  uint8_t *payload; /* encoded payload until it is written */
  size_t payload_len;
};

struct wreq {
  uv_write_t req;
  struct conn *c;
  uint8_t *data; /* the frames written, owned */
};

struct tracker_client {
  uv_loop_t *loop;
  const struct identity *id;
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  char names[LINK_MAX_TRACKERS][TRACKER_CLIENT_ADDR_TEXT];
  unsigned ntrackers;
  unsigned cur;
  int worked; /* the tracker that last answered, or -1 */
  /* Each tracker's key: its own (the link's), else the configured one,
   * else the one learned from the first reply of a tracker without a key
   * (shared by all of those: they are taken for one cluster). */
  uint8_t keys[LINK_MAX_TRACKERS][IDENTITY_PK_BYTES];
  int key_given[LINK_MAX_TRACKERS];
  uint8_t key[IDENTITY_PK_BYTES]; /* learned */
  int key_known;
  uint64_t *seq;
  unsigned timeout_ms;
  unsigned idle_ms;
  unsigned max_pending;
  struct tracker_pace pace;
  int family;        /* hints.ai_family for every tracker */
  struct conn *conn; /* current connection, or NULL */
  unsigned nconns;   /* connections not yet freed, current or dead */
  struct tracker_client_req *head;
  struct tracker_client_req **tail;
  struct tracker_client_req **unsent; /* the link to the first unwritten */
  struct tracker_client_req *done;
  struct tracker_client_req **done_tail;
  unsigned count;        /* requests on either list */
  uv_timer_t timer;      /* oldest request's deadline, or the idle close */
  uv_timer_t later;      /* delivers the done list */
  uv_timer_t pace_timer; /* writes the requests whose turn has come */
  unsigned handles;      /* timers not yet closed */
  int closing;
  struct buf scratch; /* payload being encoded */
  struct tracker_client_reply reply;
  /* The last connection failure, for tracker_client_describe. */
  unsigned fail_tracker;
  int fail_status;
  enum conn_state fail_state; /* where the connection was when it failed */
  char fail_heard[TRACKER_CLIENT_HEARD_SHOWN +
                  8]; /* not a shoal frame: what it said */
  int fail_key_set;
  uint8_t fail_key[IDENTITY_PK_BYTES]; /* SHOAL_EWRONGKEY: the signer */
};

static void conn_release(struct conn *c);

/* The key replies of tracker i must be signed with, or NULL while it is
 * to be learned. */
static const uint8_t *key_of(const struct tracker_client *t, unsigned i) {
  if (t->key_given[i]) {
    return t->keys[i];
  }
  return t->key_known ? t->key : NULL;
}
static void conn_try_next(struct conn *c);
static void on_reopen_closed(uv_handle_t *h);

/* ---------------------------------------------------------------------- */
/* Freeing */

static void tracker_client_maybe_free(struct tracker_client *t) {
  if (t->closing && t->nconns == 0 && t->handles == 0) {
    buf_free(&t->scratch);
    free(t);
  }
}

static void on_timer_closed(uv_handle_t *h) {
  struct tracker_client *t = h->data;
  t->handles--;
  tracker_client_maybe_free(t);
}

static void conn_free(struct conn *c) {
  struct tracker_client *t = c->t;
  assert(c->dead && !c->gai_busy && !c->tcp_open);
  frame_decoder_close(&c->dec);
  if (c->ai_list != NULL) {
    uv_freeaddrinfo(c->ai_list);
  }
  free(c);
  t->nconns--;
  tracker_client_maybe_free(t);
}

/* ---------------------------------------------------------------------- */
/* Timers and delivery */

static void conn_set_state(struct conn *c, enum conn_state s) {
  if (c->state != s) {
    log_debug(who, "tracker %s: %s -> %s", c->t->names[c->tracker],
              state_names[c->state], state_names[s]);
    c->state = s;
  }
}

static void on_timer(uv_timer_t *h);

int tracker_client_timer(int pending, uint64_t deadline, int open,
                         unsigned idle_ms, uint64_t now, uint64_t *delay_ms) {
  if (pending) {
    *delay_ms = deadline > now ? deadline - now : 0;
    return 1;
  }
  if (open) {
    *delay_ms = idle_ms;
    return 1;
  }
  *delay_ms = 0;
  return 0;
}

static int conn_open(const struct tracker_client *t) {
  return t->conn != NULL && t->conn->state == CONN_OPEN;
}

/* Whether the oldest request has a deadline running: once written it has
 * (from when it was written), and while the connection is being made the
 * first request's counts from when it was queued; one waiting for its turn
 * on an open connection (the pace, a retry-after) has none yet. */
static int head_due(const struct tracker_client *t) {
  return t->head != NULL && (t->head->sent || !conn_open(t));
}

/* Points the timer at the oldest request's deadline, or at the idle close
 * of an open connection with nothing pending. */
static void arm_timer(struct tracker_client *t) {
  uint64_t delay;
  if (t->closing) {
    return;
  }
  if (tracker_client_timer(head_due(t), head_due(t) ? t->head->deadline : 0,
                           conn_open(t) && t->head == NULL, t->idle_ms,
                           uv_now(t->loop), &delay)) {
    uv_timer_start(&t->timer, on_timer, delay, 0);
  } else {
    uv_timer_stop(&t->timer);
  }
}

static void on_later(uv_timer_t *h) {
  struct tracker_client *t = h->data;
  /* A callback may close the client, which delivers the rest itself. */
  while (t->done != NULL && !t->closing) {
    struct tracker_client_req *r = t->done;
    t->done = r->next;
    if (t->done == NULL) {
      t->done_tail = &t->done;
    }
    t->count--;
    if (r->cb != NULL) {
      r->cb(r->arg, r->status, NULL);
    }
    free(r->payload);
    free(r);
  }
}

/* Moves every pending request to the done list with status err. */
static void fail_pending(struct tracker_client *t, int err) {
  if (t->head == NULL) {
    return;
  }
  for (struct tracker_client_req *r = t->head; r != NULL; r = r->next) {
    r->status = err;
  }
  *t->done_tail = t->head;
  t->done_tail = t->tail;
  t->head = NULL;
  t->tail = &t->head;
  t->unsent = &t->head;
  uv_timer_stop(&t->pace_timer);
  uv_timer_start(&t->later, on_later, 0, 0);
}

/* Detaches the current connection without failing anything (idle, or
 * closed by the tracker with nothing pending). */
static void conn_drop(struct conn *c) {
  struct tracker_client *t = c->t;
  assert(t->conn == c && t->head == NULL);
  t->conn = NULL;
  conn_release(c);
  arm_timer(t);
}

/* Writes what the connection heard as text for a message: its first line
 * (or its first bytes), printable ASCII as it is and every other byte as
 * \xNN, "..." when there was more. */
static void heard_text(const struct conn *c, char *out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  size_t i = 0;
  assert(cap > TRACKER_CLIENT_HEARD_SHOWN + 3);
  for (; i < c->heard_len; i++) {
    uint8_t b = c->heard[i];
    if ((b == '\r' || b == '\n') && i > 0) {
      break;
    }
    size_t need = b >= 0x20 && b < 0x7f && b != '"' && b != '\\' ? 1 : 4;
    if (o + need > TRACKER_CLIENT_HEARD_SHOWN) {
      break;
    }
    if (need == 1) {
      out[o++] = (char)b;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[b >> 4];
      out[o++] = hex[b & 15];
    }
  }
  if (i < c->heard_len && c->heard[i] != '\r' && c->heard[i] != '\n') {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

/* A wait of ms as people read it: "10 s", or "300 ms" when not whole
 * seconds. */
static void wait_text(unsigned ms, char *out, size_t cap) {
  if (ms % 1000u == 0) {
    snprintf(out, cap, "%u s", ms / 1000u);
  } else {
    snprintf(out, cap, "%u ms", ms);
  }
}

/* What ran out of time in an exchange whose connection was in state st. */
static void timeout_text(const struct tracker_client *t, enum conn_state st,
                         char *out, size_t cap) {
  char wait[32];
  wait_text(t->timeout_ms, wait, sizeof(wait));
  switch (st) {
  case CONN_RESOLVING:
    snprintf(out, cap, "its name did not resolve within %s", wait);
    break;
  case CONN_OPEN:
    snprintf(out, cap, "connected, but no reply within %s", wait);
    break;
  default:
    snprintf(out, cap, "no connection within %s", wait);
    break;
  }
}

/* The connection failed: every pending request fails with err, and the next
 * request goes to the next tracker. not_shoal: what it sent was no shoal
 * reply at all (err is then SHOAL_EPROTO); key: the signer of a reply
 * refused with SHOAL_EWRONGKEY, or NULL. */
static void conn_fail_with(struct conn *c, int err, int not_shoal,
                           const uint8_t *key) {
  struct tracker_client *t = c->t;
  assert(t->conn == c);
  t->fail_tracker = c->tracker;
  t->fail_status = err;
  t->fail_heard[0] = '\0';
  if (not_shoal) {
    heard_text(c, t->fail_heard, sizeof(t->fail_heard));
  }
  t->fail_key_set = key != NULL;
  if (key != NULL) {
    memcpy(t->fail_key, key, sizeof(t->fail_key));
  }
  t->fail_state = c->state;
  if (err == SHOAL_ETIMEDOUT) {
    /* Not the generic "peer was too slow": which stage ran out of time
     * tells a tracker that never got the request from one that took it
     * and did not answer. */
    char why[96];
    timeout_text(t, c->state, why, sizeof(why));
    log_info(who, "tracker %s: %s%s", t->names[c->tracker], why,
             t->ntrackers > 1 ? "; trying the next tracker next time" : "");
  } else {
    log_info(who, "tracker %s: %s (%s)%s", t->names[c->tracker],
             shoal_strerror(err), state_names[c->state],
             t->ntrackers > 1 ? "; trying the next tracker next time" : "");
  }
  t->conn = NULL;
  t->cur = (c->tracker + 1) % t->ntrackers;
  if (t->worked == (int)c->tracker) {
    t->worked = -1;
  }
  fail_pending(t, err);
  conn_release(c);
  arm_timer(t);
}

static void conn_fail(struct conn *c, int err) {
  conn_fail_with(c, err, 0, NULL);
}

/* The first thing a connection heard is no shoal frame (or no envelope):
 * whatever answered, it is not a shoal tracker. Once a reply has verified,
 * a bad frame is a tracker gone wrong and keeps the decoder's error. */
static void conn_fail_decode(struct conn *c, int err) {
  if (!c->spoke) {
    conn_fail_with(c, SHOAL_EPROTO, 1, NULL);
  } else {
    conn_fail(c, err);
  }
}

static void on_timer(uv_timer_t *h) {
  struct tracker_client *t = h->data;
  if (head_due(t)) {
    /* head implies a current connection (see the top of the file). */
    assert(t->conn != NULL);
    conn_fail(t->conn, SHOAL_ETIMEDOUT);
  } else if (t->head == NULL && conn_open(t)) {
    log_debug(who, "tracker %s: idle; closing", t->names[t->conn->tracker]);
    conn_drop(t->conn);
  }
}

/* ---------------------------------------------------------------------- */
/* Connection */

static void on_tcp_closed(uv_handle_t *h) {
  struct conn *c = h->data;
  c->tcp_open = 0;
  conn_free(c);
}

/* Lets go of a detached connection: it is freed once libuv is done. */
static void conn_release(struct conn *c) {
  conn_set_state(c, CONN_CLOSING);
  c->dead = 1;
  if (c->gai_busy) {
    /* Either the resolution had not started and its callback comes with
     * UV_EAI_CANCELED, or it is running and its callback comes when it
     * ends; either way that callback frees the connection. */
    uv_cancel((uv_req_t *)&c->gai);
  } else if (c->tcp_open) {
    /* A socket already closing (reopening) is freed by its callback. */
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
      uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    }
  } else {
    conn_free(c);
  }
}

static void on_write(uv_write_t *req, int status) {
  struct wreq *w = (struct wreq *)req;
  struct conn *c = w->c;
  free(w->data);
  free(w);
  if (status != 0 && !c->dead && c->t->conn == c) {
    conn_fail(c, status);
  }
}

/* Seals (or frames, for a query) request r with the next number of the
 * sequence counter and the time now, appending the frame to out. */
static int seal(struct tracker_client *t, struct tracker_client_req *r,
                struct buf *out) {
  size_t off = out->len;
  uint8_t hdr[FRAME_HEADER_BYTES] = {0};
  int err;

  buf_add(out, hdr, sizeof(hdr));
  r->id = (*t->seq)++;
  if (r->type == TMSG_ANNOUNCE || r->type == TMSG_PUBLISH) {
    err = envelope_seal(out, ENVELOPE_TRACKER_REQUEST, r->type, t->id,
                        clock_wall_ms(), r->id, r->payload, r->payload_len);
  } else {
    err = tmsg_query_encode(out, r->type, r->id, r->payload, r->payload_len);
  }
  if (err == 0) {
    err = buf_err(out);
  }
  if (err != 0) {
    return err;
  }
  frame_header(out->data + off, out->len - off - FRAME_HEADER_BYTES);
  return 0;
}

static void on_pace(uv_timer_t *h);

/* Writes, in order and in one write, the requests not written yet whose
 * turn has come (tracker_pace.h); the pace timer brings the rest when
 * theirs comes. */
static void conn_flush(struct conn *c) {
  struct tracker_client *t = c->t;
  uint64_t now = uv_now(t->loop);
  struct buf out;
  size_t len;
  int err = 0;

  uv_timer_stop(&t->pace_timer);
  if (*t->unsent == NULL) {
    return;
  }
  buf_init(&out, (size_t)TRACKER_CLIENT_REQUEST_MAX * t->max_pending);
  while (*t->unsent != NULL && tracker_pace_take(&t->pace, now)) {
    struct tracker_client_req *r = *t->unsent;
    err = seal(t, r, &out);
    if (err != 0) {
      break;
    }
    free(r->payload);
    r->payload = NULL;
    r->payload_len = 0;
    r->sent = 1;
    r->deadline = now + t->timeout_ms;
    t->unsent = &r->next;
  }
  if (err != 0) {
    buf_free(&out);
    conn_fail(c, err);
    return;
  }
  if (*t->unsent != NULL) {
    uv_timer_start(&t->pace_timer, on_pace, tracker_pace_wait_ms(&t->pace, now),
                   0);
  }
  if (out.len == 0) {
    buf_free(&out);
    return;
  }
  struct wreq *w = malloc(sizeof(*w));
  uint8_t *data = buf_steal(&out, &len);
  if (w == NULL || data == NULL) {
    free(w);
    free(data);
    buf_free(&out);
    conn_fail(c, SHOAL_ENOMEM);
    return;
  }
  w->c = c;
  w->data = data;
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
  err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (err != 0) {
    free(w->data);
    free(w);
    conn_fail(c, err);
  }
}

static void on_pace(uv_timer_t *h) {
  struct tracker_client *t = h->data;
  if (conn_open(t)) {
    conn_flush(t->conn);
    if (t->conn != NULL) {
      arm_timer(t);
    }
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  struct conn *c = h->data;
  (void)hint;
  b->base = (char *)c->rbuf;
  b->len = sizeof(c->rbuf);
}

/* Checks that a verified reply answers request q and decodes it into rep.
 * Returns the status for q's callback through *status, or an error that
 * condemns the connection. */
static int reply_decode(const struct tracker_client_req *q,
                        const struct envelope *e,
                        struct tracker_client_reply *rep, int *status) {
  int err = 0;

  rep->type = e->type;
  memset(&rep->error, 0, sizeof(rep->error));
  *status = 0;
  if (e->type == TMSG_ERROR) {
    err = tmsg_error_decode(e->payload, e->payload_len, &rep->error);
    if (err != 0) {
      return err;
    }
    /* Type and id are 0 when the tracker refused the frame before it could
     * read them (rate limit, or an envelope it could not open). */
    if ((rep->error.request_type != 0 && rep->error.request_type != q->type) ||
        (rep->error.request_id != 0 && rep->error.request_id != q->id)) {
      return SHOAL_EPROTO;
    }
    *status = rep->error.code;
    return 0;
  }
  if (e->type != (uint8_t)(q->type | 0x80u)) {
    return SHOAL_EPROTO;
  }
  switch (q->type) {
  case TMSG_ANNOUNCE:
    err = tmsg_announce_ok_decode(e->payload, e->payload_len, &rep->u.announce);
    if (err == 0 && rep->u.announce.seq != q->id) {
      err = SHOAL_EPROTO;
    }
    break;
  case TMSG_LOOKUP:
    err = tmsg_lookup_ok_decode(e->payload, e->payload_len, &rep->u.lookup);
    if (err == 0 &&
        memcmp(rep->u.lookup.content, q->content, TMSG_ID_BYTES) != 0) {
      err = SHOAL_EPROTO;
    }
    break;
  case TMSG_PUBLISH:
    err = tmsg_publish_ok_decode(e->payload, e->payload_len, &rep->u.publish);
    if (err == 0 &&
        (rep->u.publish.seq != q->id ||
         memcmp(rep->u.publish.content, q->content, TMSG_ID_BYTES) != 0)) {
      err = SHOAL_EPROTO;
    }
    break;
  case TMSG_SEARCH:
    /* Nothing in a search reply ties it to its query but the order. */
    err = tmsg_search_ok_decode(e->payload, e->payload_len, &rep->u.search);
    break;
  default:
    err = SHOAL_EPROTO;
    break;
  }
  return err;
}

/* Handles one reply frame. Returns 0 to go on reading, or -1 when the
 * connection is no longer the client's current one (failed, dropped, or the
 * client closed from the callback). */
static int conn_frame(struct conn *c, const uint8_t *frame, size_t len) {
  struct tracker_client *t = c->t;
  struct tracker_client_req *q = t->head;
  struct envelope e;
  int status;
  int err;

  if (q == NULL || !q->sent) {
    log_info(who, "tracker %s: reply with no request pending",
             t->names[c->tracker]);
    conn_fail(c, SHOAL_EPROTO);
    return -1;
  }
  struct envelope_policy pol = {
      .cls = ENVELOPE_TRACKER_REPLY,
      .now_ms = clock_wall_ms(),
      .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
      .expect_sender = key_of(t, c->tracker),
      /* No replay guard: identical lookups within a second get the very
       * same signed bytes (the tracker's lookup cache). */
      .guard = NULL,
  };
  err = envelope_open(frame, len, &pol, &e);
  if (err == SHOAL_ETRUNC || err == SHOAL_ETOOBIG || err == SHOAL_EVERSION) {
    /* Not even an envelope's shape. */
    log_info(who, "tracker %s: reply refused: %s", t->names[c->tracker],
             shoal_strerror(err));
    conn_fail_decode(c, err);
    return -1;
  }
  if (err == SHOAL_EWRONGKEY) {
    /* The signature verified, so the frame is a whole envelope and its
     * sender's key is in its place. */
    log_info(who, "tracker %s: reply refused: %s", t->names[c->tracker],
             shoal_strerror(err));
    conn_fail_with(c, err, 0, frame + 4);
    return -1;
  }
  if (err == 0) {
    err = reply_decode(q, &e, &t->reply, &status);
  }
  if (err != 0) {
    log_info(who, "tracker %s: reply refused: %s", t->names[c->tracker],
             shoal_strerror(err));
    conn_fail(c, err);
    return -1;
  }
  c->spoke = 1;
  t->worked = (int)c->tracker;
  if (key_of(t, c->tracker) == NULL) {
    char text[TEXTID_STRLEN];
    memcpy(t->key, e.sender, sizeof(t->key));
    t->key_known = 1;
    textid_encode(TEXTID_KEY, t->key, text);
    log_info(who, "tracker %s: key %s (trusted on first use)",
             t->names[c->tracker], text);
  }
  t->head = q->next;
  if (t->head == NULL) {
    t->tail = &t->head;
  }
  if (t->unsent == &q->next) {
    t->unsent = &t->head;
  }
  t->count--;
  if (t->reply.type == TMSG_ERROR && t->reply.error.retry_after_ms > 0 &&
      !(t->ntrackers > 1 && tracker_client_moves_on(status))) {
    /* (A tracker that cannot serve is left for the next one instead, below:
     * its wait is no reason for the others to wait.) */
    /* The tracker asks us to wait (its rate limit, or its memory): nothing
     * more goes until then, for every caller of this client. What is
     * already written cannot be called back. */
    log_debug(who, "tracker %s: holding requests for %u ms (%s)",
              t->names[c->tracker], (unsigned)t->reply.error.retry_after_ms,
              t->reply.error.reason);
    tracker_pace_hold(&t->pace, uv_now(t->loop), t->reply.error.retry_after_ms);
    if (*t->unsent != NULL) {
      uv_timer_start(&t->pace_timer, on_pace,
                     tracker_pace_wait_ms(&t->pace, uv_now(t->loop)), 0);
    }
  }
  arm_timer(t);
  if (q->cb != NULL) {
    q->cb(q->arg, status, &t->reply);
  }
  free(q);
  if (t->conn == c && !t->closing && t->ntrackers > 1 &&
      t->reply.type == TMSG_ERROR && tracker_client_moves_on(status)) {
    /* This tracker cannot serve now (its store is down, it is full): the
     * requests behind this one would hear the same, so they fail with it
     * and the next request goes to the next tracker of the list. */
    conn_fail(c, status);
    return -1;
  }
  return t->conn == c && !t->closing ? 0 : -1;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  struct conn *c = s->data;
  struct tracker_client *t = c->t;

  if (c->dead || t->conn != c) {
    return;
  }
  if (nread < 0) {
    if (t->head == NULL) {
      log_debug(who, "tracker %s: closed the idle connection",
                t->names[c->tracker]);
      conn_drop(c);
    } else {
      conn_fail(c, (int)nread);
    }
    return;
  }
  const uint8_t *p = (const uint8_t *)b->base;
  size_t left = (size_t)nread;
  if (c->heard_len < sizeof(c->heard)) {
    size_t n = sizeof(c->heard) - c->heard_len;
    n = n < left ? n : left;
    memcpy(c->heard + c->heard_len, p, n);
    c->heard_len += n;
  }
  while (left > 0) {
    const uint8_t *frame;
    size_t flen;
    size_t used;
    int r = frame_decoder_next(&c->dec, p, left, &used, &frame, &flen);
    p += used;
    left -= used;
    if (r < 0) {
      log_info(who, "tracker %s: bad frame: %s", t->names[c->tracker],
               shoal_strerror(r));
      conn_fail_decode(c, r);
      return;
    }
    if (r == 0) {
      break;
    }
    if (conn_frame(c, frame, flen) != 0) {
      return;
    }
  }
}

static void on_connect(uv_connect_t *req, int status) {
  struct conn *c = req->data;
  struct tracker_client *t = c->t;

  if (c->dead) {
    return; /* closing; the close callback frees it */
  }
  if (status != 0) {
    c->last_err = status;
    conn_set_state(c, CONN_REOPENING);
    uv_close((uv_handle_t *)&c->tcp, on_reopen_closed);
    return;
  }
  conn_set_state(c, CONN_OPEN);
  uv_tcp_nodelay(&c->tcp, 1);
  int err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (err != 0) {
    conn_fail(c, err);
    return;
  }
  conn_flush(c);
  if (t->conn == c) {
    arm_timer(t);
  }
}

static void on_reopen_closed(uv_handle_t *h) {
  struct conn *c = h->data;
  c->tcp_open = 0;
  if (c->dead) {
    conn_free(c);
    return;
  }
  conn_try_next(c);
}

/* Connects to the next address the name resolved to; after the last one
 * fails, the connection fails with the last address's error. */
static void conn_try_next(struct conn *c) {
  struct tracker_client *t = c->t;

  while (c->ai_next != NULL) {
    struct addrinfo *ai = c->ai_next;
    c->ai_next = ai->ai_next;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
      continue;
    }
    int err = uv_tcp_init(t->loop, &c->tcp);
    if (err != 0) {
      c->last_err = err;
      break;
    }
    c->tcp.data = c;
    c->tcp_open = 1;
    c->connect.data = c;
    err = uv_tcp_connect(&c->connect, &c->tcp, ai->ai_addr, on_connect);
    if (err != 0) {
      c->last_err = err;
      conn_set_state(c, CONN_REOPENING);
      uv_close((uv_handle_t *)&c->tcp, on_reopen_closed);
      return;
    }
    conn_set_state(c, CONN_CONNECTING);
    return;
  }
  conn_fail(c, c->last_err != 0 ? c->last_err : UV_EAI_ADDRFAMILY);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  struct conn *c = req->data;
  c->gai_busy = 0;
  c->ai_list = res;
  c->ai_next = res;
  if (c->dead) {
    conn_free(c);
    return;
  }
  if (status != 0) {
    conn_fail(c, status);
    return;
  }
  conn_try_next(c);
}

/* Starts a connection to the current tracker. A failure to start fails
 * the pending requests through the done list (never calling back here). */
static void conn_start(struct tracker_client *t) {
  const struct link_tracker *tr = &t->trackers[t->cur];
  struct addrinfo hints;
  char port[8];

  assert(t->conn == NULL);
  struct conn *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    fail_pending(t, SHOAL_ENOMEM);
    return;
  }
  c->t = t;
  c->tracker = t->cur;
  c->state = CONN_RESOLVING;
  frame_decoder_init(&c->dec, FRAME_MAX_DEFAULT);
  t->nconns++;
  t->conn = c;
  log_debug(who, "tracker %s: resolving", t->names[c->tracker]);

  memset(&hints, 0, sizeof(hints));
  /* The tracker lists us at the address it sees: reach it over the family
   * our listener accepts, so that other peers can reach us there. */
  hints.ai_family = t->family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(port, sizeof(port), "%u", (unsigned)tr->port);
  c->gai.data = c;
  c->gai_busy = 1;
  int err =
      uv_getaddrinfo(t->loop, &c->gai, on_resolved, tr->host, port, &hints);
  if (err != 0) {
    c->gai_busy = 0;
    conn_fail(c, err);
  }
}

/* ---------------------------------------------------------------------- */
/* Requests */

/* Checks that a request may be queued now. */
static int can_queue(const struct tracker_client *t, tracker_client_cb cb) {
  assert(cb != NULL);
  if (t->closing) {
    return SHOAL_ECANCELED;
  }
  if (t->count >= t->max_pending) {
    return SHOAL_EBUSY;
  }
  return 0;
}

/* Queues the payload in t->scratch (copied) as a request of type (a
 * signed request for 1 and 3, a query for 2 and 4) and gets it on its way:
 * it is sealed when it is written (conn_flush). */
static int send_request(struct tracker_client *t, uint8_t type,
                        const uint8_t *content, tracker_client_cb cb,
                        void *arg) {
  struct tracker_client_req *r = calloc(1, sizeof(*r));
  uint8_t *payload = malloc(t->scratch.len > 0 ? t->scratch.len : 1);
  if (r == NULL || payload == NULL) {
    free(r);
    free(payload);
    return SHOAL_ENOMEM;
  }
  memcpy(payload, t->scratch.data, t->scratch.len);
  r->type = type;
  if (content != NULL) {
    memcpy(r->content, content, TMSG_ID_BYTES);
  }
  /* Counts while the connection is being made; written, it counts again
   * from then (head_due). */
  r->deadline = uv_now(t->loop) + t->timeout_ms;
  r->cb = cb;
  r->arg = arg;
  r->payload = payload;
  r->payload_len = t->scratch.len;
  *t->tail = r;
  t->tail = &r->next;
  t->count++;
  if (t->conn == NULL) {
    conn_start(t);
  } else if (conn_open(t) && !uv_is_active((uv_handle_t *)&t->pace_timer)) {
    /* With the pace timer running, earlier requests wait for their turn,
     * and this one behind them. */
    conn_flush(t->conn);
  }
  arm_timer(t);
  return 0;
}

int tracker_client_announce(struct tracker_client *t,
                            const struct tmsg_announce *a, tracker_client_cb cb,
                            void *arg) {
  int err = can_queue(t, cb);
  if (err != 0) {
    return err;
  }
  buf_reset(&t->scratch);
  err = tmsg_announce_encode(&t->scratch, a);
  if (err != 0) {
    return err;
  }
  return send_request(t, TMSG_ANNOUNCE, NULL, cb, arg);
}

int tracker_client_lookup(struct tracker_client *t, const struct tmsg_lookup *l,
                          tracker_client_cb cb, void *arg) {
  int err = can_queue(t, cb);
  if (err != 0) {
    return err;
  }
  buf_reset(&t->scratch);
  err = tmsg_lookup_encode(&t->scratch, l);
  if (err != 0) {
    return err;
  }
  return send_request(t, TMSG_LOOKUP, l->content, cb, arg);
}

int tracker_client_publish(struct tracker_client *t,
                           const struct tmsg_publish *p, tracker_client_cb cb,
                           void *arg) {
  int err = can_queue(t, cb);
  if (err != 0) {
    return err;
  }
  buf_reset(&t->scratch);
  err = tmsg_publish_encode(&t->scratch, p);
  if (err != 0) {
    return err;
  }
  return send_request(t, TMSG_PUBLISH, p->content, cb, arg);
}

int tracker_client_search(struct tracker_client *t, const struct tmsg_search *s,
                          tracker_client_cb cb, void *arg) {
  int err = can_queue(t, cb);
  if (err != 0) {
    return err;
  }
  buf_reset(&t->scratch);
  err = tmsg_search_encode(&t->scratch, s);
  if (err != 0) {
    return err;
  }
  return send_request(t, TMSG_SEARCH, NULL, cb, arg);
}

/* ---------------------------------------------------------------------- */
/* Life */

int tracker_client_new(struct tracker_client **out,
                       const struct tracker_client_config *c) {
  *out = NULL;
  if (c->loop == NULL || c->id == NULL || c->seq == NULL ||
      c->trackers == NULL || c->ntrackers == 0 ||
      c->ntrackers > LINK_MAX_TRACKERS) {
    return SHOAL_EINVAL;
  }
  for (unsigned i = 0; i < c->ntrackers; i++) {
    const struct link_tracker *tr = &c->trackers[i];
    if (tr->port == 0 || tr->host[0] == '\0' ||
        memchr(tr->host, '\0', sizeof(tr->host)) == NULL) {
      return SHOAL_EINVAL;
    }
  }
  struct tracker_client *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    return SHOAL_ENOMEM;
  }
  t->loop = c->loop;
  t->id = c->id;
  t->ntrackers = c->ntrackers;
  for (unsigned i = 0; i < c->ntrackers; i++) {
    const struct link_tracker *tr = &c->trackers[i];
    t->trackers[i] = *tr;
    /* An IPv6 literal is the only host with a colon. */
    snprintf(t->names[i], sizeof(t->names[i]),
             strchr(tr->host, ':') != NULL ? "[%s]:%u" : "%s:%u", tr->host,
             (unsigned)tr->port);
  }
  for (unsigned i = 0; i < c->ntrackers; i++) {
    const uint8_t *k =
        c->trackers[i].has_key ? c->trackers[i].key : c->tracker_key;
    if (k != NULL) {
      memcpy(t->keys[i], k, sizeof(t->keys[i]));
      t->key_given[i] = 1;
    }
  }
  t->cur = c->first < c->ntrackers ? c->first : 0;
  t->worked = -1;
  t->seq = c->seq;
  t->timeout_ms =
      c->timeout_ms != 0 ? c->timeout_ms : TRACKER_CLIENT_TIMEOUT_MS;
  t->idle_ms = c->idle_ms != 0 ? c->idle_ms : TRACKER_CLIENT_IDLE_MS;
  t->max_pending =
      c->max_pending != 0 ? c->max_pending : TRACKER_CLIENT_MAX_PENDING;
  t->family =
      c->family == AF_INET || c->family == AF_INET6 ? c->family : AF_UNSPEC;
  tracker_pace_init(&t->pace, c->rate != 0 ? c->rate : TRACKER_CLIENT_RATE,
                    c->burst != 0 ? c->burst : TRACKER_CLIENT_BURST);
  t->tail = &t->head;
  t->unsent = &t->head;
  t->done_tail = &t->done;
  buf_init(&t->scratch, TRACKER_CLIENT_REQUEST_MAX);
  uv_timer_init(t->loop, &t->timer);
  uv_timer_init(t->loop, &t->later);
  uv_timer_init(t->loop, &t->pace_timer);
  t->timer.data = t;
  t->later.data = t;
  t->pace_timer.data = t;
  t->handles = 3;
  *out = t;
  return 0;
}

void tracker_client_close(struct tracker_client *t) {
  if (t == NULL || t->closing) {
    return;
  }
  t->closing = 1;
  /* Failures already due come first: they are older than what is pending. */
  while (t->done != NULL || t->head != NULL) {
    struct tracker_client_req *r;
    if (t->done != NULL) {
      r = t->done;
      t->done = r->next;
    } else {
      r = t->head;
      t->head = r->next;
    }
    t->count--;
    if (r->cb != NULL) {
      r->cb(r->arg, SHOAL_ECANCELED, NULL);
    }
    free(r->payload);
    free(r);
  }
  t->tail = &t->head;
  t->unsent = &t->head;
  t->done_tail = &t->done;
  if (t->conn != NULL) {
    struct conn *c = t->conn;
    t->conn = NULL;
    conn_release(c);
  }
  uv_close((uv_handle_t *)&t->timer, on_timer_closed);
  uv_close((uv_handle_t *)&t->later, on_timer_closed);
  uv_close((uv_handle_t *)&t->pace_timer, on_timer_closed);
}

/* The first request of arg still due, on the done list (*on_done set) or
 * pending, or NULL. */
static struct tracker_client_req *find_arg(struct tracker_client *t, void *arg,
                                           struct tracker_client_req ***pp,
                                           int *on_done) {
  for (*pp = &t->done; **pp != NULL; *pp = &(**pp)->next) {
    if ((**pp)->cb != NULL && (**pp)->arg == arg) {
      *on_done = 1;
      return **pp;
    }
  }
  *on_done = 0;
  for (struct tracker_client_req *r = t->head; r != NULL; r = r->next) {
    if (r->cb != NULL && r->arg == arg) {
      return r;
    }
  }
  return NULL;
}

void tracker_client_cancel(struct tracker_client *t, void *arg) {
  struct tracker_client_req *r, **pp;
  int on_done;
  if (t == NULL) {
    return;
  }
  /* One at a time, looking again after each callback: a callback may queue
   * requests, cancel, or close the client (which delivers the rest). A
   * caller has a few requests at most, so the walks stay short. */
  while (!t->closing && (r = find_arg(t, arg, &pp, &on_done)) != NULL) {
    tracker_client_cb cb = r->cb;
    if (on_done) {
      /* Failed already: it leaves the done list now. */
      *pp = r->next;
      if (*pp == NULL) {
        t->done_tail = pp;
      }
      t->count--;
      free(r->payload);
      free(r);
    } else {
      /* Still pending: it keeps its place, so that the replies behind it
       * still match their requests; its own reply is dropped. */
      r->cb = NULL;
    }
    cb(arg, SHOAL_ECANCELED, NULL);
  }
}

/* The link to the first request of arg not written yet, or NULL. */
static struct tracker_client_req **find_unsent(struct tracker_client *t,
                                               void *arg) {
  for (struct tracker_client_req **pp = t->unsent; *pp != NULL;
       pp = &(*pp)->next) {
    if ((*pp)->cb != NULL && (*pp)->arg == arg) {
      return pp;
    }
  }
  return NULL;
}

unsigned tracker_client_withdraw(struct tracker_client *t, void *arg) {
  struct tracker_client_req **pp;
  unsigned n = 0;
  if (t == NULL) {
    return 0;
  }
  /* One at a time, looking again after each callback, as in
   * tracker_client_cancel. */
  while (!t->closing && (pp = find_unsent(t, arg)) != NULL) {
    struct tracker_client_req *r = *pp;
    *pp = r->next;
    if (t->tail == &r->next) {
      t->tail = pp;
    }
    t->count--;
    n++;
    tracker_client_cb cb = r->cb;
    free(r->payload);
    free(r);
    if (t->head == NULL) {
      /* Nothing left to wait for: the connection goes idle. */
      uv_timer_stop(&t->pace_timer);
    }
    arm_timer(t);
    cb(arg, SHOAL_ECANCELED, NULL);
  }
  return n;
}

const uint8_t *tracker_client_key(const struct tracker_client *t) {
  return key_of(t, t->cur);
}

int tracker_client_worked(const struct tracker_client *t) {
  return t->worked;
}

int tracker_client_moves_on(int status) {
  return status == SHOAL_EBUSY || status == SHOAL_ENOMEM;
}

const char *tracker_client_current(const struct tracker_client *t) {
  return t->names[t->cur];
}

unsigned tracker_client_pending(const struct tracker_client *t) {
  return t->count;
}

int tracker_client_connected(const struct tracker_client *t) {
  return t->conn != NULL;
}

const char *tracker_client_describe(const struct tracker_client *t, int status,
                                    const struct tracker_client_reply *r,
                                    char *out, size_t cap) {
  /* The tracker the failure came from, when it was a connection's; an
   * error reply comes from the current one. */
  int ours = status == t->fail_status && r == NULL;
  const char *name =
      ours ? t->names[t->fail_tracker] : tracker_client_current(t);

  if (r != NULL && r->type == TMSG_ERROR) {
    snprintf(out, cap, "tracker %s refused: %s", name, r->error.reason);
  } else if (ours && status == SHOAL_EPROTO && t->fail_heard[0] != '\0') {
    snprintf(out, cap,
             "%s is not a shoal tracker (it answered \"%s\") — check the "
             "address and port",
             name, t->fail_heard);
  } else if (ours && status == SHOAL_EWRONGKEY && t->fail_key_set &&
             key_of(t, t->fail_tracker) != NULL) {
    char theirs[TEXTID_STRLEN], pinned[TEXTID_STRLEN];
    textid_encode(TEXTID_KEY, t->fail_key, theirs);
    textid_encode(TEXTID_KEY, key_of(t, t->fail_tracker), pinned);
    snprintf(out, cap,
             "tracker %s signs with key %s, not with the expected key %s — "
             "check the link or --tracker-key",
             name, theirs, pinned);
  } else if (status == SHOAL_EBADSIG || status == SHOAL_EDOMAIN) {
    snprintf(out, cap, "tracker %s sent a reply that does not verify (%s)",
             name, shoal_strerror(status));
  } else if (ours && status == SHOAL_ETIMEDOUT && t->fail_state == CONN_OPEN) {
    /* It is there and took the connection: the address is right. */
    char wait[32];
    wait_text(t->timeout_ms, wait, sizeof(wait));
    snprintf(out, cap,
             "tracker %s took the connection but did not answer within %s "
             "— it may be overloaded, or its replies are lost on the way",
             name, wait);
  } else if (status == SHOAL_ETIMEDOUT) {
    char why[96];
    timeout_text(t, ours ? t->fail_state : CONN_CONNECTING, why, sizeof(why));
    snprintf(out, cap,
             "tracker unreachable: %s (%s) — check the address and that "
             "shoal-tracker runs there",
             name, why);
  } else {
    snprintf(out, cap,
             "tracker unreachable: %s (%s) — check the address and that "
             "shoal-tracker runs there",
             name, shoal_strerror(status));
  }
  return out;
}
