/* Unit tests for peer/tracker_client.c: the peer's tracker client.
 *
 * Each test runs on its own libuv loop, with the real tracker in the same
 * process (tracker_init and server_start on 127.0.0.1 port 0) and, where a
 * hostile or broken tracker is needed, a scripted fake tracker on the same
 * loop that answers each request frame in one of the ways listed in enum
 * variant. Every loop run is bounded by a deadline timer; teardown closes
 * every client and server and runs the loop until libuv has nothing left,
 * so AddressSanitizer sees every leak.
 *
 * Every callback checks that it is not running inside the tracker_client_* call
 * that queued its request (g_in_call is set around every call).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/log.h"
#include "common/textid.h"
#include "common/tmsg.h"
#include "peer/tracker_client.h"
#include "tests/lib/testutil.h"
#include "tests/lib/trackercfg.h"
#include "tracker/tracker.h"

#define WAIT_MS 5000u /* deadline of one wait for something that must come */
#define SHORT_MS 300u /* request timeout of the timeout tests */
#define MAX_RES 8

/* ---------------------------------------------------------------------- */
/* Callback recorder */

static int g_in_call; /* set while a tracker_client_* call runs */
static int g_order;   /* counts callbacks, to check their order */

#define CALL(expr) (g_in_call = 1, g_rc = (expr), g_in_call = 0, g_rc)
static int g_rc;

struct fx;

struct res {
  int calls;
  int status;
  int inside; /* callbacks made from inside a tracker_client_* call */
  int order;
  int had_reply;
  struct tracker_client_reply rep;
  uint64_t at_ms; /* uv_now when called */
  struct fx *f;
  void (*then)(struct res *x); /* runs inside the callback */
};

static void on_res(void *arg, int status, const struct tracker_client_reply *r);

/* ---------------------------------------------------------------------- */
/* A scripted fake tracker */

enum variant {
  V_GOOD,             /* a correct reply */
  V_MUTE,             /* reads and never answers */
  V_SPLIT,            /* a correct reply, one byte per write */
  V_SAME_BYTES,       /* the first reply's bytes for every request */
  V_TWO_REPLIES,      /* a correct reply, twice */
  V_CLOSE,            /* closes the connection on a request */
  V_GARBAGE,          /* a frame of random bytes */
  V_OVERSIZE,         /* a frame header over FRAME_MAX_DEFAULT */
  V_EMPTY_FRAME,      /* a frame header of length 0 */
  V_WRONG_TYPE,       /* a valid search reply to any request */
  V_BAD_SEQ,          /* announce_ok / publish_ok echoing seq + 1 */
  V_WRONG_CONTENT,    /* lookup_ok / publish_ok of another content */
  V_ERROR_WRONG_ID,   /* an error naming request id + 1 */
  V_ERROR_WRONG_TYPE, /* an error naming another request type */
  V_ERROR_ZERO_ID,    /* an error with request type and id 0 (rate limit) */
  V_OTHER_KEY,        /* a correct reply signed by another key */
  V_WRONG_CLASS,      /* a correct reply sealed as a tracker request */
  V_STALE,            /* a correct reply stamped 10 minutes ago */
  V_FUTURE,           /* a correct reply stamped 10 minutes ahead */
  V_FLIPPED,          /* a correct reply with a bit of its signature flipped */
  V_TRUNC_PAYLOAD,    /* a signed reply whose payload lacks its last byte */
  V_HTTP,             /* an HTTP server's answer to a request */
  V_SSH,              /* an SSH server's banner, sent on accept */
  V_BUSY,             /* an error: store unavailable, retry after 5 s */
};

#define HTTP_ANSWER "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
#define SSH_BANNER "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"

struct fconn {
  uv_tcp_t tcp;
  struct fake *f;
  struct frame_decoder dec;
  struct fconn *prev, *next;
  uint8_t rbuf[64 << 10];
};

struct fake {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int on;
  int port;
  struct identity key;   /* signs replies */
  struct identity other; /* V_OTHER_KEY */
  enum variant variant;
  unsigned accepted;
  unsigned closed; /* connections gone, whoever closed them */
  unsigned eof;    /* connections the client closed */
  unsigned requests;
  uint64_t seq;
  uint8_t *cached; /* V_SAME_BYTES */
  size_t cached_len;
  struct fconn *conns;
};

struct fwrite {
  uv_write_t req;
  uint8_t data[];
};

static void fake_write_done(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void fake_write(struct fconn *c, const void *p, size_t n) {
  struct fwrite *w = malloc(sizeof(*w) + n);
  assert_non_null(w);
  memcpy(w->data, p, n);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, fake_write_done) != 0) {
    free(w);
  }
}

static void fconn_closed(uv_handle_t *h) {
  struct fconn *c = h->data;
  struct fake *f = c->f;
  if (c->prev != NULL) {
    c->prev->next = c->next;
  } else {
    f->conns = c->next;
  }
  if (c->next != NULL) {
    c->next->prev = c->prev;
  }
  f->closed++;
  frame_decoder_close(&c->dec);
  free(c);
}

static void fconn_close(struct fconn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
    uv_close((uv_handle_t *)&c->tcp, fconn_closed);
  }
}

/* Appends a framed envelope. */
static void seal_framed(struct buf *out, enum envelope_class cls, uint8_t type,
                        const struct identity *id, uint64_t ts, uint64_t seq,
                        const struct buf *payload) {
  size_t start = out->len;
  uint8_t hdr[FRAME_HEADER_BYTES] = {0};
  buf_add(out, hdr, sizeof(hdr));
  assert_int_equal(
      envelope_seal(out, cls, type, id, ts, seq, payload->data, payload->len),
      0);
  frame_header(out->data + start, out->len - start - FRAME_HEADER_BYTES);
}

/* Reads a request frame: its type, id (seq or query id) and payload. */
static void parse_request(const uint8_t *m, size_t n, uint8_t *type,
                          uint64_t *id, const uint8_t **p, size_t *plen) {
  if (tmsg_is_query(m, n)) {
    struct tmsg_query q;
    assert_int_equal(tmsg_query_decode(m, n, &q), 0);
    *type = q.type;
    *id = q.id;
    *p = q.payload;
    *plen = q.payload_len;
  } else {
    struct envelope e;
    struct envelope_policy pol = {.cls = ENVELOPE_TRACKER_REQUEST,
                                  .now_ms = clock_wall_ms(),
                                  .window_ms = ENVELOPE_WINDOW_MS_DEFAULT};
    assert_int_equal(envelope_open(m, n, &pol, &e), 0);
    *type = e.type;
    *id = e.seq;
    *p = e.payload;
    *plen = e.payload_len;
  }
}

/* Builds the reply to one request frame into out; returns 1 to close the
 * connection instead. */
static int fake_respond(struct fake *f, const uint8_t *m, size_t n,
                        struct buf *out) {
  uint8_t type;
  uint64_t id;
  const uint8_t *p;
  size_t plen;
  struct buf pay;
  uint8_t rtype;
  const struct identity *signer = &f->key;
  enum envelope_class cls = ENVELOPE_TRACKER_REPLY;
  uint64_t ts = clock_wall_ms();
  enum variant v = f->variant;

  parse_request(m, n, &type, &id, &p, &plen);
  f->requests++;
  switch (v) {
  case V_MUTE:
    return 0;
  case V_CLOSE:
    return 1;
  case V_SAME_BYTES:
    if (f->cached != NULL) {
      buf_add(out, f->cached, f->cached_len);
      return 0;
    }
    break;
  case V_GARBAGE: {
    uint8_t junk[4 + 200];
    frame_header(junk, 200);
    tu_fill(junk + 4, 200, f->requests);
    junk[4] = ENVELOPE_VERSION;
    junk[5] = ENVELOPE_TRACKER_REPLY;
    buf_add(out, junk, sizeof(junk));
    return 0;
  }
  case V_OVERSIZE: {
    uint8_t hdr[FRAME_HEADER_BYTES + 16] = {0};
    buf_put_be32(hdr, FRAME_MAX_DEFAULT + 1u);
    buf_add(out, hdr, sizeof(hdr));
    return 0;
  }
  case V_EMPTY_FRAME: {
    uint8_t hdr[FRAME_HEADER_BYTES] = {0};
    buf_add(out, hdr, sizeof(hdr));
    return 0;
  }
  case V_HTTP:
    buf_add(out, HTTP_ANSWER, strlen(HTTP_ANSWER));
    return 0;
  case V_SSH:
    return 0; /* it said its piece on accept */
  default:
    break;
  }

  buf_init(&pay, FRAME_MAX_DEFAULT);
  switch (type) {
  case TMSG_ANNOUNCE: {
    struct tmsg_announce a;
    struct tmsg_announce_ok ok = {
        .seq = id, .interval_s = 100, .min_interval_s = 10};
    assert_int_equal(tmsg_announce_decode(p, plen, &a), 0);
    ok.accepted = a.count;
    if (v == V_BAD_SEQ) {
      ok.seq++;
    }
    rtype = TMSG_ANNOUNCE_OK;
    assert_int_equal(tmsg_announce_ok_encode(&pay, &ok), 0);
    break;
  }
  case TMSG_LOOKUP: {
    struct tmsg_lookup l;
    static struct tmsg_lookup_ok ok;
    assert_int_equal(tmsg_lookup_decode(p, plen, &l), 0);
    memset(&ok, 0, sizeof(ok));
    memcpy(ok.content, l.content, TMSG_ID_BYTES);
    if (v == V_WRONG_CONTENT) {
      ok.content[7] ^= 0x10;
    }
    ok.seeders = 1;
    ok.count = 1;
    memset(ok.peers[0].pk, 0x55, IDENTITY_PK_BYTES);
    ok.peers[0].family = 4;
    ok.peers[0].addr[0] = 127;
    ok.peers[0].addr[3] = 1;
    ok.peers[0].port = 4000;
    ok.peers[0].seeding = 1;
    rtype = TMSG_LOOKUP_OK;
    assert_int_equal(tmsg_lookup_ok_encode(&pay, &ok), 0);
    break;
  }
  case TMSG_PUBLISH: {
    static struct tmsg_publish pub;
    struct tmsg_publish_ok ok = {.seq = id};
    assert_int_equal(tmsg_publish_decode(p, plen, &pub), 0);
    memcpy(ok.content, pub.content, TMSG_ID_BYTES);
    if (v == V_BAD_SEQ) {
      ok.seq++;
    }
    if (v == V_WRONG_CONTENT) {
      ok.content[0] ^= 1;
    }
    rtype = TMSG_PUBLISH_OK;
    assert_int_equal(tmsg_publish_ok_encode(&pay, &ok), 0);
    break;
  }
  default: {
    static struct tmsg_search_ok ok;
    memset(&ok, 0, sizeof(ok));
    ok.total = 0;
    rtype = TMSG_SEARCH_OK;
    assert_int_equal(tmsg_search_ok_encode(&pay, &ok), 0);
    break;
  }
  }

  if (v == V_WRONG_TYPE) {
    /* A well-formed reply of another type. */
    buf_reset(&pay);
    rtype = type == TMSG_SEARCH ? TMSG_LOOKUP_OK : TMSG_SEARCH_OK;
    if (rtype == TMSG_SEARCH_OK) {
      static struct tmsg_search_ok sok;
      memset(&sok, 0, sizeof(sok));
      assert_int_equal(tmsg_search_ok_encode(&pay, &sok), 0);
    } else {
      static struct tmsg_lookup_ok lok;
      memset(&lok, 0, sizeof(lok));
      assert_int_equal(tmsg_lookup_ok_encode(&pay, &lok), 0);
    }
  } else if (v == V_BUSY) {
    struct tmsg_error e;
    memset(&e, 0, sizeof(e));
    e.request_type = type;
    e.request_id = id;
    e.code = SHOAL_EBUSY;
    e.retry_after_ms = 5000;
    snprintf(e.reason, sizeof(e.reason), "store unavailable, retry after 5 s");
    buf_reset(&pay);
    rtype = TMSG_ERROR;
    assert_int_equal(tmsg_error_encode(&pay, &e), 0);
  } else if (v == V_ERROR_WRONG_ID || v == V_ERROR_WRONG_TYPE ||
             v == V_ERROR_ZERO_ID) {
    struct tmsg_error e;
    memset(&e, 0, sizeof(e));
    e.request_type = type;
    e.request_id = id;
    if (v == V_ERROR_WRONG_ID) {
      e.request_id = id + 1;
    } else if (v == V_ERROR_WRONG_TYPE) {
      e.request_type = type == TMSG_SEARCH ? TMSG_LOOKUP : TMSG_SEARCH;
    } else {
      e.request_type = 0;
      e.request_id = 0;
    }
    e.code = SHOAL_ERATE;
    e.retry_after_ms = 1234;
    snprintf(e.reason, sizeof(e.reason), "too many requests; retry later");
    buf_reset(&pay);
    rtype = TMSG_ERROR;
    assert_int_equal(tmsg_error_encode(&pay, &e), 0);
  } else if (v == V_TRUNC_PAYLOAD) {
    pay.len--;
  }
  if (v == V_OTHER_KEY) {
    signer = &f->other;
  } else if (v == V_WRONG_CLASS) {
    cls = ENVELOPE_TRACKER_REQUEST;
  } else if (v == V_STALE) {
    ts -= 2u * ENVELOPE_WINDOW_MS_DEFAULT;
  } else if (v == V_FUTURE) {
    ts += 2u * ENVELOPE_WINDOW_MS_DEFAULT;
  }
  size_t start = out->len;
  seal_framed(out, cls, rtype, signer, ts, f->seq++, &pay);
  buf_free(&pay);
  if (v == V_FLIPPED) {
    out->data[out->len - 10] ^= 0x04;
  } else if (v == V_TWO_REPLIES) {
    size_t len = out->len - start;
    buf_reserve(out, len);
    buf_add(out, out->data + start, len);
  } else if (v == V_SAME_BYTES) {
    f->cached_len = out->len - start;
    f->cached = malloc(f->cached_len);
    assert_non_null(f->cached);
    memcpy(f->cached, out->data + start, f->cached_len);
  }
  return 0;
}

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  struct fconn *c = h->data;
  (void)hint;
  b->base = (char *)c->rbuf;
  b->len = sizeof(c->rbuf);
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  struct fconn *c = s->data;
  struct fake *f = c->f;
  struct buf out;

  if (nread < 0) {
    f->eof++;
    fconn_close(c);
    return;
  }
  buf_init(&out, FRAME_MAX_DEFAULT);
  const uint8_t *p = (const uint8_t *)b->base;
  size_t left = (size_t)nread;
  while (left > 0) {
    const uint8_t *frame;
    size_t flen;
    size_t used;
    int r = frame_decoder_next(&c->dec, p, left, &used, &frame, &flen);
    p += used;
    left -= used;
    assert_true(r >= 0);
    if (r == 0) {
      break;
    }
    if (fake_respond(f, frame, flen, &out)) {
      buf_free(&out);
      fconn_close(c);
      return;
    }
  }
  if (f->variant == V_SPLIT) {
    for (size_t i = 0; i < out.len; i++) {
      fake_write(c, out.data + i, 1);
    }
  } else if (out.len > 0) {
    fake_write(c, out.data, out.len);
  }
  buf_free(&out);
}

static void fake_on_conn(uv_stream_t *l, int status) {
  struct fake *f = l->data;
  if (status != 0) {
    return;
  }
  struct fconn *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->f = f;
  uv_tcp_init(f->loop, &c->tcp);
  c->tcp.data = c;
  frame_decoder_init(&c->dec, 65536);
  c->next = f->conns;
  if (f->conns != NULL) {
    f->conns->prev = c;
  }
  f->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    fconn_close(c);
    return;
  }
  f->accepted++;
  uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
  if (f->variant == V_SSH) {
    fake_write(c, SSH_BANNER, strlen(SSH_BANNER));
  }
}

static int tcp_port(const uv_tcp_t *h) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  assert_int_equal(uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len), 0);
  if (ss.ss_family == AF_INET) {
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void fake_start(struct fake *f, uv_loop_t *loop, enum variant v) {
  struct sockaddr_in sa;
  memset(f, 0, sizeof(*f));
  f->loop = loop;
  f->variant = v;
  f->seq = 77;
  tu_identity(&f->key, 0xfa4e);
  tu_identity(&f->other, 0x07e4);
  assert_int_equal(uv_tcp_init(loop, &f->listener), 0);
  f->listener.data = f;
  f->on = 1;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
  assert_int_equal(uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 16, fake_on_conn), 0);
  f->port = tcp_port(&f->listener);
}

static void fake_stop(struct fake *f) {
  if (!f->on) {
    return;
  }
  f->on = 0;
  uv_close((uv_handle_t *)&f->listener, NULL);
  for (struct fconn *c = f->conns; c != NULL; c = c->next) {
    fconn_close(c);
  }
  free(f->cached);
  f->cached = NULL;
  identity_close(&f->key);
  identity_close(&f->other);
}

/* ---------------------------------------------------------------------- */
/* Fixture */

struct fx {
  uv_loop_t loop;
  uv_timer_t deadline;
  int expired;
  /* The real tracker. */
  struct tracker *trk;
  int trk_init; /* tracker_init done: tracker_close due */
  int trk_srv;  /* server_start tried: server_stop due */
  int trk_port;
  struct identity trk_key;
  /* Fakes and a port that refuses connections. */
  struct fake fake;
  struct fake fake2;
  uv_tcp_t refuser;
  int refuser_on;
  int refused_port;
  /* Our side. */
  struct identity me;
  struct identity me2;
  uint64_t seq;
  struct tracker_client *cl[4];
  struct res res[MAX_RES];
};

static void on_deadline(uv_timer_t *h) {
  struct fx *f = h->data;
  f->expired = 1;
}

static void deadline_start(struct fx *f, unsigned ms) {
  f->expired = 0;
  uv_timer_start(&f->deadline, on_deadline, ms, 0);
}

static void deadline_stop(struct fx *f) {
  uv_timer_stop(&f->deadline);
}

/* Runs the loop until cond holds or ms pass; cond is then re-checked by the
 * caller's assert. */
#define RUN_UNTIL(f, cond, ms)                                                 \
  do {                                                                         \
    deadline_start((f), (ms));                                                 \
    while (!(cond) && !(f)->expired) {                                         \
      uv_run(&(f)->loop, UV_RUN_ONCE);                                         \
    }                                                                          \
    deadline_stop(f);                                                          \
  } while (0)

/* Runs the loop for ms whatever happens (to see that nothing more does). */
static void run_for(struct fx *f, unsigned ms) {
  deadline_start(f, ms);
  while (!f->expired) {
    uv_run(&f->loop, UV_RUN_ONCE);
  }
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  if (f == NULL || uv_loop_init(&f->loop) != 0) {
    free(f);
    return -1;
  }
  uv_timer_init(&f->loop, &f->deadline);
  f->deadline.data = f;
  tu_identity(&f->trk_key, 0x7ac4e7);
  tu_identity(&f->me, 0x3e);
  tu_identity(&f->me2, 0x3f);
  f->seq = envelope_seq_start(clock_wall_ms());
  for (unsigned i = 0; i < MAX_RES; i++) {
    f->res[i].f = f;
  }
  g_order = 0;
  *state = f;
  return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) {
    fprintf(stderr, "teardown: handle of type %d still open\n", (int)h->type);
    uv_close(h, NULL);
  }
}

static int teardown(void **state) {
  struct fx *f = *state;
  int rc = 0;

  for (unsigned i = 0; i < 4; i++) {
    tracker_client_close(f->cl[i]);
    f->cl[i] = NULL;
  }
  fake_stop(&f->fake);
  fake_stop(&f->fake2);
  if (f->refuser_on) {
    uv_close((uv_handle_t *)&f->refuser, NULL);
  }
  if (f->trk_srv) {
    server_stop(f->trk);
  }
  /* Everything is closing: run until libuv has no work but the (unref'd)
   * deadline timer, for at most 5 s. */
  deadline_start(f, WAIT_MS);
  uv_unref((uv_handle_t *)&f->deadline);
  while (uv_run(&f->loop, UV_RUN_ONCE) != 0 && !f->expired) {
  }
  if (f->expired) {
    fprintf(stderr, "teardown: the loop did not finish\n");
    rc = -1;
  }
  uv_close((uv_handle_t *)&f->deadline, NULL);
  uv_walk(&f->loop, close_walk, NULL);
  for (int i = 0; i < 100 && uv_run(&f->loop, UV_RUN_NOWAIT) != 0; i++) {
  }
  if (uv_loop_close(&f->loop) != 0) {
    fprintf(stderr, "teardown: uv_loop_close failed\n");
    rc = -1;
  }
  if (f->trk_init) {
    tracker_close(f->trk);
  }
  free(f->trk);
  identity_close(&f->trk_key);
  identity_close(&f->me);
  identity_close(&f->me2);
  free(f);
  return rc;
}

/* The small tracker on an ephemeral loopback port, with room for the
 * connections a test opens. */
static struct tracker_config tracker_cfg(void) {
  struct tracker_config c = trackercfg_small();
  snprintf(c.listen[0], sizeof(c.listen[0]), "127.0.0.1:0");
  c.n_listen = 1;
  c.max_conns = 64;
  return c;
}

/* Starts the real tracker; returns server_start's result. */
static int tracker_start_with(struct fx *f, const struct tracker_config *c) {
  f->trk = calloc(1, sizeof(*f->trk));
  assert_non_null(f->trk);
  assert_int_equal(tracker_init(f->trk, &f->loop, c, &f->trk_key), 0);
  f->trk_init = 1;
  f->trk_srv = 1;
  int err = server_start(f->trk);
  if (err == 0) {
    f->trk_port = tcp_port(&f->trk->listeners[0]);
  }
  return err;
}

static void tracker_start(struct fx *f) {
  struct tracker_config c = tracker_cfg();
  assert_int_equal(tracker_start_with(f, &c), 0);
}

/* A loopback port with a bound socket that does not listen: connecting to
 * it is refused, and no other test can take the port meanwhile. */
static void refuser_start(struct fx *f) {
  struct sockaddr_in sa;
  assert_int_equal(uv_tcp_init(&f->loop, &f->refuser), 0);
  f->refuser_on = 1;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
  assert_int_equal(uv_tcp_bind(&f->refuser, (struct sockaddr *)&sa, 0), 0);
  f->refused_port = tcp_port(&f->refuser);
}

static struct link_tracker at(const char *host, int port) {
  struct link_tracker t;
  memset(&t, 0, sizeof(t));
  snprintf(t.host, sizeof(t.host), "%s", host);
  t.port = (uint16_t)port;
  return t;
}

/* Makes client slot i for the given trackers and key. */
static struct tracker_client *client(struct fx *f, unsigned i,
                                     const struct link_tracker *trs, unsigned n,
                                     const uint8_t *key, unsigned timeout_ms,
                                     const struct identity *id) {
  struct tracker_client_config c;
  memset(&c, 0, sizeof(c));
  c.loop = &f->loop;
  c.id = id != NULL ? id : &f->me;
  c.trackers = trs;
  c.ntrackers = n;
  c.tracker_key = key;
  c.seq = &f->seq;
  c.timeout_ms = timeout_ms;
  assert_int_equal(tracker_client_new(&f->cl[i], &c), 0);
  return f->cl[i];
}

static struct tracker_client *client_real(struct fx *f, unsigned i) {
  struct link_tracker tr = at("127.0.0.1", f->trk_port);
  return client(f, i, &tr, 1, f->trk_key.pk, 0, NULL);
}

static void on_res(void *arg, int status,
                   const struct tracker_client_reply *r) {
  struct res *x = arg;
  x->calls++;
  x->status = status;
  x->order = ++g_order;
  x->at_ms = uv_now(&x->f->loop);
  if (g_in_call) {
    x->inside++;
  }
  x->had_reply = r != NULL;
  if (r != NULL) {
    x->rep = *r;
  }
  if (x->then != NULL) {
    x->then(x);
  }
}

/* Asserts a callback came exactly once, not from inside a call, with
 * status st and a reply present or not. */
static void expect_res(const struct res *x, int st, int with_reply) {
  assert_int_equal(x->calls, 1);
  assert_int_equal(x->inside, 0);
  if (x->status != st) {
    fail_msg("status %s (%d), expected %s (%d)", shoal_err_name(x->status),
             x->status, shoal_err_name(st), st);
  }
  assert_int_equal(x->had_reply, with_reply);
}

static void content_id(uint8_t c[32], uint64_t n) {
  tu_fill(c, 32, 0xc0 + n);
}

static void make_lookup(struct tmsg_lookup *l, const uint8_t c[32]) {
  memset(l, 0, sizeof(*l));
  memcpy(l->content, c, 32);
  l->want = 50;
}

static void make_announce(struct tmsg_announce *a, const uint8_t c[32],
                          uint16_t port, uint8_t role) {
  memset(a, 0, sizeof(*a));
  a->port = port;
  a->event = TMSG_EVENT_STARTED;
  a->count = 1;
  memcpy(a->items[0].content, c, 32);
  a->items[0].role = role;
  a->items[0].left = role == TMSG_ROLE_SEEDING ? 0 : 1000;
}

static void make_publish(struct tmsg_publish *p, const uint8_t c[32],
                         const char *name, uint64_t size) {
  memset(p, 0, sizeof(*p));
  memcpy(p->content, c, 32);
  p->size = size;
  snprintf(p->name, sizeof(p->name), "%s", name);
  memset(p->manifest_sig, 0x5a, sizeof(p->manifest_sig));
}

static void make_search(struct tmsg_search *s, const char *q) {
  memset(s, 0, sizeof(*s));
  snprintf(s->query, sizeof(s->query), "%s", q);
  s->limit = 10;
}

static int lookup(struct tracker_client *t, const uint8_t c[32],
                  struct res *x) {
  static struct tmsg_lookup l;
  make_lookup(&l, c);
  return CALL(tracker_client_lookup(t, &l, on_res, x));
}

/* ---------------------------------------------------------------------- */
/* The real tracker */

static void then_lookup(struct res *x) {
  /* A request made from a callback (this is res[0]; its lookup is res[1]). */
  uint8_t c[32];
  content_id(c, 1);
  assert_int_equal(lookup(x->f->cl[0], c, &x->f->res[1]), 0);
}

static void test_announce_then_lookup_returns_the_announced_peer(void **st) {
  struct fx *f = *st;
  struct tmsg_announce a;
  uint8_t c[32];
  tracker_start(f);
  struct tracker_client *t = client_real(f, 0);
  content_id(c, 1);
  make_announce(&a, c, 4242, TMSG_ROLE_SEEDING);
  uint64_t seq = f->seq;
  f->res[0].then = then_lookup;
  assert_int_equal(CALL(tracker_client_announce(t, &a, on_res, &f->res[0])), 0);
  assert_int_equal(tracker_client_pending(t), 1);
  assert_int_equal(f->res[0].calls, 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);

  expect_res(&f->res[0], 0, 1);
  assert_int_equal(f->res[0].rep.type, TMSG_ANNOUNCE_OK);
  assert_int_equal(f->res[0].rep.u.announce.seq, seq);
  assert_int_equal(f->res[0].rep.u.announce.accepted, 1);
  assert_in_range(f->res[0].rep.u.announce.interval_s, 90, 110); /* I +- I/10 */
  assert_int_equal(f->res[0].rep.u.announce.min_interval_s, 25);

  expect_res(&f->res[1], 0, 1);
  const struct tmsg_lookup_ok *ok = &f->res[1].rep.u.lookup;
  assert_int_equal(f->res[1].rep.type, TMSG_LOOKUP_OK);
  assert_memory_equal(ok->content, c, 32);
  assert_int_equal(ok->seeders, 1);
  assert_int_equal(ok->downloaders, 0);
  assert_int_equal(ok->count, 1);
  assert_memory_equal(ok->peers[0].pk, f->me.pk, 32);
  assert_int_equal(ok->peers[0].family, 4);
  static const uint8_t lo[4] = {127, 0, 0, 1};
  assert_memory_equal(ok->peers[0].addr, lo, 4);
  assert_int_equal(ok->peers[0].port, 4242);
  assert_int_equal(ok->peers[0].seeding, 1);
  assert_memory_equal(tracker_client_key(t), f->trk_key.pk, 32);
  assert_int_equal(tracker_client_pending(t), 0);
  assert_true(tracker_client_connected(t));
}

static void test_pipelined_requests_are_answered_in_order(void **st) {
  struct fx *f = *st;
  struct tmsg_announce a;
  struct tmsg_search s;
  uint8_t c[32];
  tracker_start(f);
  struct tracker_client *t = client_real(f, 0);
  content_id(c, 2);
  /* All four are queued while the connection is being made, then written
   * in one go; the two identical lookups get the tracker's cached reply,
   * the same signed bytes twice, and both are accepted. */
  make_announce(&a, c, 5000, TMSG_ROLE_DOWNLOADING);
  assert_int_equal(CALL(tracker_client_announce(t, &a, on_res, &f->res[0])), 0);
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  assert_int_equal(lookup(t, c, &f->res[2]), 0);
  make_search(&s, "nothing published");
  assert_int_equal(CALL(tracker_client_search(t, &s, on_res, &f->res[3])), 0);
  assert_int_equal(tracker_client_pending(t), 4);
  RUN_UNTIL(f, f->res[3].calls > 0, WAIT_MS);
  for (unsigned i = 0; i < 4; i++) {
    expect_res(&f->res[i], 0, 1);
    assert_int_equal(f->res[i].order, (int)i + 1);
  }
  assert_int_equal(f->res[1].rep.u.lookup.downloaders, 1);
  assert_int_equal(f->res[2].rep.u.lookup.downloaders, 1);
  assert_int_equal(f->res[3].rep.type, TMSG_SEARCH_OK);
  assert_int_equal(f->res[3].rep.u.search.total, 0);
  assert_true(f->trk->stats.cache_hits >= 1);
}

static void test_publish_then_search_finds_it(void **st) {
  struct fx *f = *st;
  struct tmsg_publish p;
  struct tmsg_search s;
  uint8_t c[32];
  tracker_start(f);
  struct tracker_client *t = client_real(f, 0);
  content_id(c, 3);
  make_publish(&p, c, "holiday photos.tar", 123456789);
  uint64_t seq = f->seq;
  assert_int_equal(CALL(tracker_client_publish(t, &p, on_res, &f->res[0])), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  assert_int_equal(f->res[0].rep.type, TMSG_PUBLISH_OK);
  assert_int_equal(f->res[0].rep.u.publish.seq, seq);
  assert_memory_equal(f->res[0].rep.u.publish.content, c, 32);

  make_search(&s, "photos");
  assert_int_equal(CALL(tracker_client_search(t, &s, on_res, &f->res[1])), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[1], 0, 1);
  const struct tmsg_search_ok *ok = &f->res[1].rep.u.search;
  assert_int_equal(ok->total, 1);
  assert_int_equal(ok->count, 1);
  assert_memory_equal(ok->results[0].content, c, 32);
  assert_string_equal(ok->results[0].name, "holiday photos.tar");
  assert_int_equal(ok->results[0].size, 123456789);
  assert_memory_equal(ok->results[0].publisher, f->me.pk, 32);
}

static void test_trust_on_first_use_learns_the_tracker_key(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  tracker_start(f);
  struct link_tracker tr = at("127.0.0.1", f->trk_port);
  struct tracker_client *t = client(f, 0, &tr, 1, NULL, 0, NULL);
  assert_null(tracker_client_key(t));
  content_id(c, 4);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  assert_null(tracker_client_key(t));
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  assert_non_null(tracker_client_key(t));
  assert_memory_equal(tracker_client_key(t), f->trk_key.pk, 32);
}

static void
test_wrong_pinned_key_is_refused_and_a_correct_client_works(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  uint8_t wrong[32];
  tracker_start(f);
  struct link_tracker tr = at("127.0.0.1", f->trk_port);
  memcpy(wrong, f->trk_key.pk, 32);
  wrong[31] ^= 1;
  struct tracker_client *bad = client(f, 0, &tr, 1, wrong, 0, NULL);
  content_id(c, 5);
  assert_int_equal(lookup(bad, c, &f->res[0]), 0);
  assert_int_equal(lookup(bad, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  /* envelope_open names a validly signed reply from another key so. */
  expect_res(&f->res[0], SHOAL_EWRONGKEY, 0);
  expect_res(&f->res[1], SHOAL_EWRONGKEY, 0);
  assert_memory_equal(tracker_client_key(bad), wrong, 32);
  assert_false(tracker_client_connected(bad));
  RUN_UNTIL(f, f->trk->n_conns == 0, WAIT_MS);
  assert_int_equal(f->trk->n_conns, 0);

  struct tracker_client *good = client_real(f, 1);
  assert_int_equal(lookup(good, c, &f->res[2]), 0);
  RUN_UNTIL(f, f->res[2].calls > 0, WAIT_MS);
  expect_res(&f->res[2], 0, 1);
}

static void test_pin_from_first_use_holds_across_fail_over(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  tracker_start(f);
  fake_start(&f->fake, &f->loop, V_GOOD);
  struct link_tracker trs[2] = {at("127.0.0.1", f->fake.port),
                                at("127.0.0.1", f->trk_port)};
  struct tracker_client *t = client(f, 0, trs, 2, NULL, SHORT_MS, NULL);
  content_id(c, 6);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  assert_memory_equal(tracker_client_key(t), f->fake.key.pk, 32);

  f->fake.variant = V_MUTE;
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[1], SHOAL_ETIMEDOUT, 0);
  char name[64];
  snprintf(name, sizeof(name), "127.0.0.1:%d", f->trk_port);
  assert_string_equal(tracker_client_current(t), name);

  /* The real tracker signs with its own key, which is not the pinned one. */
  assert_int_equal(lookup(t, c, &f->res[2]), 0);
  RUN_UNTIL(f, f->res[2].calls > 0, WAIT_MS);
  expect_res(&f->res[2], SHOAL_EWRONGKEY, 0);
  assert_memory_equal(tracker_client_key(t), f->fake.key.pk, 32);
}

static void
test_refused_connection_fails_and_the_next_request_fails_over(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char name[64];
  tracker_start(f);
  refuser_start(f);
  struct link_tracker trs[2] = {at("127.0.0.1", f->refused_port),
                                at("127.0.0.1", f->trk_port)};
  struct tracker_client *t = client(f, 0, trs, 2, f->trk_key.pk, 0, NULL);
  snprintf(name, sizeof(name), "127.0.0.1:%d", f->refused_port);
  assert_string_equal(tracker_client_current(t), name);
  content_id(c, 7);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  /* Every request pending on the failed connection fails with its error. */
  expect_res(&f->res[0], UV_ECONNREFUSED, 0);
  expect_res(&f->res[1], UV_ECONNREFUSED, 0);
  assert_int_equal(f->res[0].order, 1);
  assert_false(tracker_client_connected(t));
  snprintf(name, sizeof(name), "127.0.0.1:%d", f->trk_port);
  assert_string_equal(tracker_client_current(t), name);

  assert_int_equal(lookup(t, c, &f->res[2]), 0);
  RUN_UNTIL(f, f->res[2].calls > 0, WAIT_MS);
  expect_res(&f->res[2], 0, 1);
  assert_string_equal(tracker_client_current(t), name);
}

static void test_fail_over_goes_round_robin(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char n0[64];
  char n1[64];
  refuser_start(f);
  struct link_tracker trs[2] = {at("127.0.0.1", f->refused_port),
                                at("localhost", f->refused_port)};
  struct tracker_client *t = client(f, 0, trs, 2, NULL, 0, NULL);
  snprintf(n0, sizeof(n0), "127.0.0.1:%d", f->refused_port);
  snprintf(n1, sizeof(n1), "localhost:%d", f->refused_port);
  content_id(c, 8);
  for (unsigned i = 0; i < 4; i++) {
    assert_string_equal(tracker_client_current(t), i % 2 == 0 ? n0 : n1);
    assert_int_equal(lookup(t, c, &f->res[i]), 0);
    RUN_UNTIL(f, f->res[i].calls > 0, WAIT_MS);
    expect_res(&f->res[i], UV_ECONNREFUSED, 0);
  }
  assert_string_equal(tracker_client_current(t), n0);
  assert_null(tracker_client_key(t));
}

/* A tier of three trackers, each with its own key: the first never
 * answers, the second refuses because it cannot serve, the third answers;
 * the client moves on after the deadline and after the refusal (without
 * waiting for its retry-after), checks each reply against the key of the
 * tracker it came from, and stays with the one that worked. */
static void
test_tier_fails_over_on_silence_and_refusal_and_keeps_the_one_that_worked(
    void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char name[64];
  tracker_start(f);
  fake_start(&f->fake, &f->loop, V_MUTE);
  fake_start(&f->fake2, &f->loop, V_BUSY);
  struct link_tracker trs[3] = {at("127.0.0.1", f->fake.port),
                                at("127.0.0.1", f->fake2.port),
                                at("127.0.0.1", f->trk_port)};
  const uint8_t *keys[3] = {f->fake.key.pk, f->fake2.key.pk, f->trk_key.pk};
  for (unsigned i = 0; i < 3; i++) {
    memcpy(trs[i].key, keys[i], 32);
    trs[i].has_key = 1;
  }
  struct tracker_client *t = client(f, 0, trs, 3, NULL, SHORT_MS, NULL);
  content_id(c, 21);
  assert_int_equal(tracker_client_worked(t), -1);
  assert_memory_equal(tracker_client_key(t), f->fake.key.pk, 32);

  /* Silence: the deadline fails the request; the next goes on. */
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], SHOAL_ETIMEDOUT, 0);
  snprintf(name, sizeof(name), "127.0.0.1:%d", f->fake2.port);
  assert_string_equal(tracker_client_current(t), name);

  /* A refusal that says the tracker cannot serve: verified against the
   * second tracker's own key, handed back as it is, and the client moves
   * on; two requests pipelined behind it fail with it. */
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  assert_int_equal(lookup(t, c, &f->res[2]), 0);
  RUN_UNTIL(f, f->res[2].calls > 0, WAIT_MS);
  expect_res(&f->res[1], SHOAL_EBUSY, 1);
  assert_int_equal(f->res[1].rep.type, TMSG_ERROR);
  assert_int_equal(f->res[2].status, SHOAL_EBUSY);
  snprintf(name, sizeof(name), "127.0.0.1:%d", f->trk_port);
  assert_string_equal(tracker_client_current(t), name);
  assert_memory_equal(tracker_client_key(t), f->trk_key.pk, 32);

  /* The third answers at once: its retry-after held nothing back. */
  uint64_t asked = uv_now(&f->loop);
  assert_int_equal(lookup(t, c, &f->res[3]), 0);
  RUN_UNTIL(f, f->res[3].calls > 0, WAIT_MS);
  expect_res(&f->res[3], 0, 1);
  assert_true(f->res[3].at_ms - asked < 2000);
  assert_int_equal(tracker_client_worked(t), 2);

  /* And it stays first. */
  assert_int_equal(lookup(t, c, &f->res[4]), 0);
  RUN_UNTIL(f, f->res[4].calls > 0, WAIT_MS);
  expect_res(&f->res[4], 0, 1);
  assert_string_equal(tracker_client_current(t), name);
  assert_int_equal(f->fake.requests, 1);
  assert_int_equal(f->fake2.requests, 2);
}

/* A client made for the tier again starts where the node says one worked
 * (the config's first), and a refusal about the request itself does not
 * move it on. */
static void test_first_tracker_and_refusals_that_stay(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char name[64];
  tracker_start(f);
  fake_start(&f->fake, &f->loop, V_ERROR_ZERO_ID);
  struct link_tracker trs[2] = {at("127.0.0.1", f->trk_port),
                                at("127.0.0.1", f->fake.port)};
  memcpy(trs[0].key, f->trk_key.pk, 32);
  trs[0].has_key = 1;
  struct tracker_client_config cc;
  memset(&cc, 0, sizeof(cc));
  cc.loop = &f->loop;
  cc.id = &f->me;
  cc.trackers = trs;
  cc.ntrackers = 2;
  cc.tracker_key = f->fake.key.pk; /* for the one without a key */
  cc.seq = &f->seq;
  cc.first = 1;
  assert_int_equal(tracker_client_new(&f->cl[0], &cc), 0);
  struct tracker_client *t = f->cl[0];
  snprintf(name, sizeof(name), "127.0.0.1:%d", f->fake.port);
  assert_string_equal(tracker_client_current(t), name);
  assert_memory_equal(tracker_client_key(t), f->fake.key.pk, 32);
  content_id(c, 22);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], SHOAL_ERATE, 1);
  /* A rate refusal is about us, not about the tracker: it stays. */
  assert_string_equal(tracker_client_current(t), name);
  assert_true(tracker_client_connected(t));
  assert_false(tracker_client_moves_on(SHOAL_ERATE));
  assert_false(tracker_client_moves_on(SHOAL_EREPLAY));
  assert_true(tracker_client_moves_on(SHOAL_EBUSY));
  assert_true(tracker_client_moves_on(SHOAL_ENOMEM));
  /* An index out of range starts at the first. */
  tracker_client_close(t);
  f->cl[0] = NULL;
  cc.first = 7;
  assert_int_equal(tracker_client_new(&f->cl[0], &cc), 0);
  snprintf(name, sizeof(name), "127.0.0.1:%d", f->trk_port);
  assert_string_equal(tracker_client_current(f->cl[0]), name);
}

/* The timer as a rule over a clock the test sets: a request made at 1000
 * with a 300 ms timeout is given up at 1300, not a moment later; with
 * nothing pending an open connection is closed after its idle time. */
static void test_the_timer_fires_at_the_oldest_deadline(void **st) {
  uint64_t delay = 77;
  const uint64_t made = 1000, deadline = made + SHORT_MS;
  (void)st;
  assert_int_equal(tracker_client_timer(1, deadline, 1, 30000, made, &delay),
                   1);
  assert_int_equal(delay, SHORT_MS);
  assert_int_equal(
      tracker_client_timer(1, deadline, 0, 30000, deadline - 1, &delay), 1);
  assert_int_equal(delay, 1);
  assert_int_equal(
      tracker_client_timer(1, deadline, 1, 30000, deadline, &delay), 1);
  assert_int_equal(delay, 0);
  /* Late (the loop was busy): at once. */
  assert_int_equal(
      tracker_client_timer(1, deadline, 1, 30000, deadline + 5000, &delay), 1);
  assert_int_equal(delay, 0);
  /* Nothing pending: the idle close of an open connection... */
  assert_int_equal(tracker_client_timer(0, 0, 1, 30000, 123456, &delay), 1);
  assert_int_equal(delay, 30000);
  /* ...and no timer without one. */
  assert_int_equal(tracker_client_timer(0, 0, 0, 30000, 123456, &delay), 0);
}

static void
test_silent_tracker_times_out_and_the_next_request_reconnects(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  fake_start(&f->fake, &f->loop, V_MUTE);
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  struct tracker_client *t =
      client(f, 0, &tr, 1, f->fake.key.pk, SHORT_MS, NULL);
  content_id(c, 9);
  uv_update_time(&f->loop);
  uint64_t start = uv_now(&f->loop);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[0], SHOAL_ETIMEDOUT, 0);
  expect_res(&f->res[1], SHOAL_ETIMEDOUT, 0);
  /* Not before the timeout; how soon after it is
   * test_the_timer_fires_at_the_oldest_deadline's to pin with a clock of its
   * own (a loaded machine can be late by any amount). */
  uint64_t took = f->res[0].at_ms - start;
  assert_true(took >= SHORT_MS);
  assert_int_equal(f->fake.requests, 2);
  /* The client closed the connection. */
  RUN_UNTIL(f, f->fake.eof == 1, WAIT_MS);
  assert_int_equal(f->fake.eof, 1);
  assert_false(tracker_client_connected(t));

  /* The next request makes a fresh connection, which works. */
  f->fake.variant = V_GOOD;
  assert_int_equal(lookup(t, c, &f->res[2]), 0);
  RUN_UNTIL(f, f->res[2].calls > 0, WAIT_MS);
  expect_res(&f->res[2], 0, 1);
  assert_int_equal(f->fake.accepted, 2);
}

/* Runs one lookup through t, logging at info to a file of its own, until
 * it fails with SHOAL_ETIMEDOUT; log receives the log's text (cap bytes). */
static void lookup_times_out_logged(struct fx *f, struct tracker_client *t,
                                    char *log, size_t cap) {
  char dir[4096], path[4200];
  uint8_t c[32];
  FILE *fp;
  size_t n;
  content_id(c, 31);
  tu_tmpdir(dir, sizeof(dir));
  tu_path(path, sizeof(path), dir, "log");
  assert_int_equal(log_open(path), 0);
  log_set_level(LOG_INFO);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  log_set_level(LOG_WARN);
  assert_int_equal(log_open(NULL), 0);
  expect_res(&f->res[0], SHOAL_ETIMEDOUT, 0);
  fp = fopen(path, "r");
  assert_non_null(fp);
  n = fread(log, 1, cap - 1, fp);
  log[n] = '\0';
  fclose(fp);
  tu_rmtree(dir);
}

/* A tracker that took the request and never answered is no slow peer: the
 * log line and tracker_client_describe say that the tracker did not
 * answer, and in how long. */
static void test_a_tracker_that_does_not_answer_is_said_to(void **st) {
  struct fx *f = *st;
  char log[4096], got[TRACKER_CLIENT_DESCRIBE_BYTES], want[256];
  fake_start(&f->fake, &f->loop, V_MUTE);
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  struct tracker_client *t =
      client(f, 0, &tr, 1, f->fake.key.pk, SHORT_MS, NULL);
  lookup_times_out_logged(f, t, log, sizeof(log));
  assert_int_equal(f->fake.requests, 1);
  snprintf(want, sizeof(want),
           "tracker 127.0.0.1:%d: connected, but no reply within %u ms",
           f->fake.port, SHORT_MS);
  if (strstr(log, want) == NULL) {
    fail_msg("log \"%s\", want \"%s\"", log, want);
  }
  assert_null(strstr(log, shoal_strerror(SHOAL_ETIMEDOUT)));
  tracker_client_describe(t, f->res[0].status, NULL, got, sizeof(got));
  snprintf(want, sizeof(want),
           "tracker 127.0.0.1:%d took the connection but did not answer "
           "within %u ms",
           f->fake.port, SHORT_MS);
  if (strncmp(got, want, strlen(want)) != 0) {
    fail_msg("\"%s\", want \"%s ...\"", got, want);
  }
  assert_null(strstr(got, "unreachable"));
}

/* A tracker whose queue of connections to accept is full drops the SYN:
 * the connection is never made, and the failure says so. */
static void
test_a_tracker_that_cannot_be_reached_in_time_is_said_to(void **st) {
  struct fx *f = *st;
  char log[4096], got[TRACKER_CLIENT_DESCRIBE_BYTES], want[256];
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  int fill[4];
  int port;
  assert_true(lfd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(lfd, 0), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
  port = ntohs(sa.sin_port);
  /* Never accepted: these fill the accept queue (one place with a
   * backlog of 0), and the SYNs after them are dropped. */
  for (unsigned i = 0; i < 4; i++) {
    fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fill[i] >= 0);
    (void)connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
  }
  struct link_tracker tr = at("127.0.0.1", port);
  struct tracker_client *t = client(f, 0, &tr, 1, NULL, SHORT_MS, NULL);
  lookup_times_out_logged(f, t, log, sizeof(log));
  for (unsigned i = 0; i < 4; i++) {
    close(fill[i]);
  }
  close(lfd);
  snprintf(want, sizeof(want),
           "tracker 127.0.0.1:%d: no connection within %u ms", port, SHORT_MS);
  if (strstr(log, want) == NULL) {
    fail_msg("log \"%s\", want \"%s\"", log, want);
  }
  assert_null(strstr(log, shoal_strerror(SHOAL_ETIMEDOUT)));
  tracker_client_describe(t, f->res[0].status, NULL, got, sizeof(got));
  snprintf(want, sizeof(want),
           "tracker unreachable: 127.0.0.1:%d (no connection within %u ms)",
           port, SHORT_MS);
  if (strncmp(got, want, strlen(want)) != 0) {
    fail_msg("\"%s\", want \"%s ...\"", got, want);
  }
}

/* One row: the fake answers a request of `req` type in way v. */
struct bad_case {
  enum variant v;
  uint8_t req;
  int status;
  int alt_status; /* also accepted (0: none) */
  int with_reply;
};

static const struct bad_case bad_cases[] = {
    {V_GARBAGE, TMSG_LOOKUP, SHOAL_EBADSIG, 0, 0},
    /* Not a shoal frame as the first thing a connection hears: not a
     * shoal tracker (SHOAL_EPROTO; tracker_client_describe says so). */
    {V_OVERSIZE, TMSG_LOOKUP, SHOAL_EPROTO, 0, 0},
    {V_EMPTY_FRAME, TMSG_LOOKUP, SHOAL_EPROTO, 0, 0},
    {V_HTTP, TMSG_SEARCH, SHOAL_EPROTO, 0, 0},
    {V_SSH, TMSG_LOOKUP, SHOAL_EPROTO, 0, 0},
    {V_WRONG_TYPE, TMSG_LOOKUP, SHOAL_EPROTO, 0, 0},
    {V_WRONG_TYPE, TMSG_ANNOUNCE, SHOAL_EPROTO, 0, 0},
    {V_WRONG_TYPE, TMSG_SEARCH, SHOAL_EPROTO, 0, 0},
    {V_BAD_SEQ, TMSG_ANNOUNCE, SHOAL_EPROTO, 0, 0},
    {V_BAD_SEQ, TMSG_PUBLISH, SHOAL_EPROTO, 0, 0},
    {V_WRONG_CONTENT, TMSG_LOOKUP, SHOAL_EPROTO, 0, 0},
    {V_WRONG_CONTENT, TMSG_PUBLISH, SHOAL_EPROTO, 0, 0},
    {V_ERROR_WRONG_ID, TMSG_ANNOUNCE, SHOAL_EPROTO, 0, 0},
    {V_ERROR_WRONG_ID, TMSG_LOOKUP, SHOAL_EPROTO, 0, 0},
    {V_ERROR_WRONG_TYPE, TMSG_LOOKUP, SHOAL_EPROTO, 0, 0},
    {V_OTHER_KEY, TMSG_LOOKUP, SHOAL_EWRONGKEY, 0, 0},
    {V_WRONG_CLASS, TMSG_LOOKUP, SHOAL_EDOMAIN, 0, 0},
    {V_STALE, TMSG_ANNOUNCE, SHOAL_ESTALE, 0, 0},
    {V_FUTURE, TMSG_LOOKUP, SHOAL_EFUTURE, 0, 0},
    {V_FLIPPED, TMSG_PUBLISH, SHOAL_EBADSIG, 0, 0},
    {V_TRUNC_PAYLOAD, TMSG_LOOKUP, SHOAL_EFORMAT, 0, 0},
    {V_CLOSE, TMSG_SEARCH, UV_EOF, UV_ECONNRESET, 0},
};

static int send_kind(struct tracker_client *t, uint8_t kind,
                     const uint8_t c[32], struct res *x) {
  static struct tmsg_announce a;
  static struct tmsg_publish p;
  static struct tmsg_search s;
  switch (kind) {
  case TMSG_ANNOUNCE:
    make_announce(&a, c, 4000, TMSG_ROLE_SEEDING);
    return CALL(tracker_client_announce(t, &a, on_res, x));
  case TMSG_PUBLISH:
    make_publish(&p, c, "a file", 10);
    return CALL(tracker_client_publish(t, &p, on_res, x));
  case TMSG_SEARCH:
    make_search(&s, "file");
    return CALL(tracker_client_search(t, &s, on_res, x));
  default:
    return lookup(t, c, x);
  }
}

static void test_bad_replies_fail_every_pending_request_and_close(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  fake_start(&f->fake, &f->loop, V_GOOD);
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  content_id(c, 10);
  for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
    const struct bad_case *bc = &bad_cases[i];
    unsigned accepted = f->fake.accepted;
    unsigned closed = f->fake.closed;
    f->fake.variant = bc->v;
    memset(&f->res[0], 0, sizeof(f->res[0]) * 2);
    f->res[0].f = f->res[1].f = f;
    struct tracker_client *t = client(f, 0, &tr, 1, f->fake.key.pk, 2000, NULL);
    assert_int_equal(send_kind(t, bc->req, c, &f->res[0]), 0);
    /* A second request pending behind it fails with the same error. */
    assert_int_equal(lookup(t, c, &f->res[1]), 0);
    RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
    int st0 = f->res[0].status;
    if (!(st0 == bc->status ||
          (bc->alt_status != 0 && st0 == bc->alt_status))) {
      fail_msg("case %zu: status %s, expected %s", i, shoal_err_name(st0),
               shoal_err_name(bc->status));
    }
    expect_res(&f->res[0], st0, bc->with_reply);
    expect_res(&f->res[1], st0, 0);
    assert_false(tracker_client_connected(t));
    /* The connection is gone at the fake's end too. */
    RUN_UNTIL(f, f->fake.closed == closed + 1, WAIT_MS);
    assert_int_equal(f->fake.accepted, accepted + 1);
    assert_int_equal(f->fake.closed, closed + 1);
    tracker_client_close(t);
    f->cl[0] = NULL;
  }
}

/* A server that is not a shoal tracker: the request fails with
 * SHOAL_EPROTO, and tracker_client_describe names the address and what the
 * server said, escaped and cut at its first line. */
static void test_a_server_that_is_not_a_tracker_is_named(void **st) {
  struct fx *f = *st;
  static const struct {
    enum variant v;
    uint8_t req;
    const char *said;
  } cases[] = {
      {V_HTTP, TMSG_SEARCH, "(it answered \"HTTP/1.1 400 Bad Request\")"},
      {V_SSH, TMSG_LOOKUP,
       "(it answered \"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\")"},
      {V_OVERSIZE, TMSG_ANNOUNCE,
       "(it answered \"\\x00\\x10\\x00\\x01\\x00\\x00\\x00\\x00\\x00"
       "\\x00\\x00\\x00...\")"},
  };
  uint8_t c[32];
  char want[128], got[512];
  content_id(c, 20);
  fake_start(&f->fake, &f->loop, V_GOOD);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    f->fake.variant = cases[i].v;
    memset(&f->res[0], 0, sizeof(f->res[0]));
    f->res[0].f = f;
    struct link_tracker tr = at("127.0.0.1", f->fake.port);
    struct tracker_client *t = client(f, 0, &tr, 1, NULL, 2000, NULL);
    assert_int_equal(send_kind(t, cases[i].req, c, &f->res[0]), 0);
    RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
    expect_res(&f->res[0], SHOAL_EPROTO, 0);
    tracker_client_describe(t, f->res[0].status, NULL, got, sizeof(got));
    snprintf(want, sizeof(want), "127.0.0.1:%d is not a shoal tracker %s",
             f->fake.port, cases[i].said);
    if (strncmp(got, want, strlen(want)) != 0) {
      fail_msg("case %zu: \"%s\", want \"%s ...\"", i, got, want);
    }
    tracker_client_close(t);
    f->cl[0] = NULL;
  }
}

/* A tracker that spoke shoal first and then sends a bad frame is broken,
 * not something else: the decoder's error comes through. */
static void test_bad_frame_after_a_good_reply_keeps_its_error(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char got[512];
  content_id(c, 21);
  fake_start(&f->fake, &f->loop, V_GOOD);
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  struct tracker_client *t = client(f, 0, &tr, 1, NULL, 2000, NULL);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  f->fake.variant = V_OVERSIZE;
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[1], SHOAL_ETOOBIG, 0);
  tracker_client_describe(t, f->res[1].status, NULL, got, sizeof(got));
  assert_null(strstr(got, "not a shoal tracker"));
  assert_non_null(strstr(got, shoal_strerror(SHOAL_ETOOBIG)));
}

/* A reply signed by another key than the pinned one: tracker_client_describe
 * names both keys. */
static void test_wrong_key_names_both_keys(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char got[512], theirs[TEXTID_STRLEN], pinned[TEXTID_STRLEN], want[512];
  content_id(c, 22);
  fake_start(&f->fake, &f->loop, V_OTHER_KEY);
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  struct tracker_client *t = client(f, 0, &tr, 1, f->fake.key.pk, 2000, NULL);
  assert_int_equal(send_kind(t, TMSG_SEARCH, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], SHOAL_EWRONGKEY, 0);
  tracker_client_describe(t, f->res[0].status, NULL, got, sizeof(got));
  textid_encode(TEXTID_KEY, f->fake.other.pk, theirs);
  textid_encode(TEXTID_KEY, f->fake.key.pk, pinned);
  snprintf(want, sizeof(want),
           "tracker 127.0.0.1:%d signs with key %s, not with the expected "
           "key %s",
           f->fake.port, theirs, pinned);
  if (strncmp(got, want, strlen(want)) != 0) {
    fail_msg("\"%s\", want \"%s ...\"", got, want);
  }
}

/* tracker_client_describe names the tracker that failed, also when the client
 * has moved on to the next one; and a refusal carries the tracker's reason. */
static void test_describe_names_the_tracker_that_failed(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char got[512], want[512];
  content_id(c, 23);
  refuser_start(f);
  fake_start(&f->fake, &f->loop, V_ERROR_ZERO_ID);
  struct link_tracker trs[2] = {at("127.0.0.1", f->refused_port),
                                at("127.0.0.1", f->fake.port)};
  struct tracker_client *t = client(f, 0, trs, 2, f->fake.key.pk, 2000, NULL);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], UV_ECONNREFUSED, 0);
  tracker_client_describe(t, f->res[0].status, NULL, got, sizeof(got));
  snprintf(want, sizeof(want), "tracker unreachable: 127.0.0.1:%d (%s)",
           f->refused_port, shoal_strerror(UV_ECONNREFUSED));
  if (strncmp(got, want, strlen(want)) != 0) {
    fail_msg("\"%s\", want \"%s ...\"", got, want);
  }
  /* The next request goes to the fake, which refuses it. */
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[1], SHOAL_ERATE, 1);
  tracker_client_describe(t, f->res[1].status, &f->res[1].rep, got,
                          sizeof(got));
  snprintf(want, sizeof(want),
           "tracker 127.0.0.1:%d refused: too many requests; retry later",
           f->fake.port);
  assert_string_equal(got, want);
}

static void test_unsolicited_reply_closes_the_connection(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  fake_start(&f->fake, &f->loop, V_TWO_REPLIES);
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  struct tracker_client *t = client(f, 0, &tr, 1, f->fake.key.pk, 0, NULL);
  content_id(c, 11);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->fake.closed == 1, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  assert_int_equal(f->fake.eof, 1);
  assert_false(tracker_client_connected(t));
  assert_int_equal(tracker_client_pending(t), 0);
  run_for(f, 50);
  assert_int_equal(f->res[0].calls, 1);
}

static void test_split_and_repeated_replies_are_accepted(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  fake_start(&f->fake, &f->loop, V_SPLIT);
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  struct tracker_client *t = client(f, 0, &tr, 1, NULL, 0, NULL);
  content_id(c, 12);
  assert_int_equal(send_kind(t, TMSG_ANNOUNCE, c, &f->res[0]), 0);
  assert_int_equal(send_kind(t, TMSG_PUBLISH, c, &f->res[1]), 0);
  assert_int_equal(send_kind(t, TMSG_SEARCH, c, &f->res[2]), 0);
  RUN_UNTIL(f, f->res[2].calls > 0, WAIT_MS);
  for (unsigned i = 0; i < 3; i++) {
    expect_res(&f->res[i], 0, 1);
  }
  assert_int_equal(f->res[0].rep.type, TMSG_ANNOUNCE_OK);
  assert_int_equal(f->res[1].rep.type, TMSG_PUBLISH_OK);
  assert_int_equal(f->res[2].rep.type, TMSG_SEARCH_OK);

  /* The same signed lookup reply twice: no replay guard refuses it. */
  f->fake.variant = V_SAME_BYTES;
  assert_int_equal(lookup(t, c, &f->res[3]), 0);
  assert_int_equal(lookup(t, c, &f->res[4]), 0);
  RUN_UNTIL(f, f->res[4].calls > 0, WAIT_MS);
  expect_res(&f->res[3], 0, 1);
  expect_res(&f->res[4], 0, 1);
  assert_int_equal(f->res[4].rep.u.lookup.count, 1);
  assert_int_equal(f->fake.accepted, 1);

  /* An error reply with type and id 0 (as a rate limit sends) answers
   * whatever request is oldest, and keeps the connection. */
  f->fake.variant = V_ERROR_ZERO_ID;
  assert_int_equal(lookup(t, c, &f->res[5]), 0);
  RUN_UNTIL(f, f->res[5].calls > 0, WAIT_MS);
  expect_res(&f->res[5], SHOAL_ERATE, 1);
  assert_int_equal(f->res[5].rep.type, TMSG_ERROR);
  assert_int_equal(f->res[5].rep.error.retry_after_ms, 1234);
  assert_string_equal(f->res[5].rep.error.reason,
                      "too many requests; retry later");
  assert_true(tracker_client_connected(t));
  assert_int_equal(f->fake.closed, 0);
}

static void test_error_replies_surface_code_and_reason(void **st) {
  struct fx *f = *st;
  struct tmsg_publish p;
  struct tmsg_announce a;
  uint8_t c[32];
  tracker_start(f);
  struct tracker_client *mine = client_real(f, 0);
  struct link_tracker tr = at("127.0.0.1", f->trk_port);
  struct tracker_client *theirs =
      client(f, 1, &tr, 1, f->trk_key.pk, 0, &f->me2);
  content_id(c, 13);
  make_publish(&p, c, "notes.txt", 99);
  assert_int_equal(CALL(tracker_client_publish(mine, &p, on_res, &f->res[0])),
                   0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);

  /* Another key publishing the same content: refused, not fatal. */
  uint64_t seq = f->seq;
  assert_int_equal(CALL(tracker_client_publish(theirs, &p, on_res, &f->res[1])),
                   0);
  assert_int_equal(lookup(theirs, c, &f->res[2]), 0);
  RUN_UNTIL(f, f->res[2].calls > 0, WAIT_MS);
  expect_res(&f->res[1], SHOAL_EWRONGKEY, 1);
  assert_int_equal(f->res[1].rep.type, TMSG_ERROR);
  assert_int_equal(f->res[1].rep.error.code, SHOAL_EWRONGKEY);
  assert_int_equal(f->res[1].rep.error.request_type, TMSG_PUBLISH);
  assert_int_equal(f->res[1].rep.error.request_id, seq);
  assert_string_equal(f->res[1].rep.error.reason,
                      "content is already published by another key");
  expect_res(&f->res[2], 0, 1);
  assert_true(tracker_client_connected(theirs));

  /* An announce the tracker cannot decode (port 0): refused, and the
   * tracker closes; the client then reconnects without failing anything. */
  make_announce(&a, c, 0, TMSG_ROLE_SEEDING);
  seq = f->seq;
  assert_int_equal(
      CALL(tracker_client_announce(theirs, &a, on_res, &f->res[3])), 0);
  RUN_UNTIL(f, f->res[3].calls > 0, WAIT_MS);
  expect_res(&f->res[3], SHOAL_EFORMAT, 1);
  assert_int_equal(f->res[3].rep.error.request_id, seq);
  assert_string_equal(f->res[3].rep.error.reason,
                      "announce payload is malformed");
  RUN_UNTIL(f, !tracker_client_connected(theirs), WAIT_MS);
  assert_false(tracker_client_connected(theirs));
  assert_int_equal(lookup(theirs, c, &f->res[4]), 0);
  RUN_UNTIL(f, f->res[4].calls > 0, WAIT_MS);
  expect_res(&f->res[4], 0, 1);
}

static void test_rate_limit_error_carries_retry_after(void **st) {
  struct fx *f = *st;
  struct tracker_config cfg = tracker_cfg();
  uint8_t c[32];
  cfg.rate = 1;
  cfg.burst = 2;
  assert_int_equal(tracker_start_with(f, &cfg), 0);
  struct tracker_client *t = client_real(f, 0);
  content_id(c, 14);
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(lookup(t, c, &f->res[i]), 0);
  }
  RUN_UNTIL(f, f->res[3].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  expect_res(&f->res[1], 0, 1);
  for (unsigned i = 2; i < 4; i++) {
    expect_res(&f->res[i], SHOAL_ERATE, 1);
    assert_int_equal(f->res[i].rep.type, TMSG_ERROR);
    assert_true(f->res[i].rep.error.retry_after_ms > 0);
    assert_int_equal(f->res[i].rep.error.request_id, 0);
  }
  assert_string_equal(f->res[2].rep.error.reason,
                      "too many requests; retry later");
}

static int g_cancels;
static int g_cancel_bad;
static struct tracker_client *g_closing;

static void on_cancel(void *arg, int status,
                      const struct tracker_client_reply *r) {
  int *calls = arg;
  static struct tmsg_lookup l;
  (*calls)++;
  g_cancels++;
  if (status != SHOAL_ECANCELED || r != NULL || g_in_call) {
    g_cancel_bad++;
  }
  /* A request made while closing is refused. */
  if (g_closing != NULL && tracker_client_lookup(g_closing, &l, on_cancel,
                                                 calls) != SHOAL_ECANCELED) {
    g_cancel_bad++;
  }
}

static void then_close(struct res *x) {
  g_closing = x->f->cl[0];
  tracker_client_close(x->f->cl[0]);
  tracker_client_close(x->f->cl[0]); /* from a callback of the close: a no-op */
}

static void test_close_cancels_each_pending_request_once(void **st) {
  struct fx *f = *st;
  int calls[3 * 3] = {0};
  uint8_t c[32];
  static struct tmsg_lookup l;
  tracker_start(f);
  fake_start(&f->fake, &f->loop, V_MUTE);
  content_id(c, 15);
  make_lookup(&l, c);
  g_cancels = 0;
  g_cancel_bad = 0;

  /* While resolving. */
  struct tracker_client *t = client_real(f, 0);
  for (unsigned i = 0; i < 3; i++) {
    assert_int_equal(CALL(tracker_client_lookup(t, &l, on_cancel, &calls[i])),
                     0);
  }
  g_closing = t;
  tracker_client_close(t);
  g_closing = NULL;
  f->cl[0] = NULL;
  assert_int_equal(g_cancels, 3);

  /* Connected, with requests written and unanswered. */
  struct link_tracker tr = at("127.0.0.1", f->fake.port);
  t = client(f, 0, &tr, 1, f->fake.key.pk, 0, NULL);
  for (unsigned i = 3; i < 6; i++) {
    assert_int_equal(CALL(tracker_client_lookup(t, &l, on_cancel, &calls[i])),
                     0);
  }
  RUN_UNTIL(f, f->fake.requests == 3, WAIT_MS);
  assert_int_equal(f->fake.requests, 3);
  assert_int_equal(g_cancels, 3);
  g_closing = t;
  tracker_client_close(t);
  g_closing = NULL;
  f->cl[0] = NULL;
  assert_int_equal(g_cancels, 6);
  RUN_UNTIL(f, f->fake.eof == 1, WAIT_MS);
  assert_int_equal(f->fake.eof, 1);

  /* From inside a reply callback, with two more pending behind it. */
  t = client_real(f, 0);
  f->res[0].then = then_close;
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  for (unsigned i = 6; i < 8; i++) {
    assert_int_equal(CALL(tracker_client_lookup(t, &l, on_cancel, &calls[i])),
                     0);
  }
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  g_closing = NULL;
  f->cl[0] = NULL;
  expect_res(&f->res[0], 0, 1);
  assert_int_equal(g_cancels, 8);

  /* Idle and connected, nothing pending. */
  t = client_real(f, 0);
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[1], 0, 1);
  assert_true(tracker_client_connected(t));
  tracker_client_close(t);
  f->cl[0] = NULL;

  /* Nothing else comes, ever. */
  run_for(f, 100);
  assert_int_equal(g_cancel_bad, 0);
  for (unsigned i = 0; i < 8; i++) {
    assert_int_equal(calls[i], 1);
  }
  assert_int_equal(g_cancels, 8);
  assert_int_equal(f->res[0].calls, 1);
  assert_int_equal(f->res[1].calls, 1);
}

static int g_done;
static int g_done_ok;

static void on_count(void *arg, int status,
                     const struct tracker_client_reply *r) {
  (void)arg;
  g_done++;
  if (status == 0 && r != NULL && !g_in_call) {
    g_done_ok++;
  }
}

static void test_pending_requests_are_capped(void **st) {
  struct fx *f = *st;
  static struct tmsg_lookup l;
  uint8_t c[32];
  tracker_start(f);
  struct tracker_client *t = client_real(f, 0);
  content_id(c, 16);
  make_lookup(&l, c);
  g_done = g_done_ok = 0;
  for (unsigned i = 0; i < TRACKER_CLIENT_MAX_PENDING; i++) {
    assert_int_equal(CALL(tracker_client_lookup(t, &l, on_count, NULL)), 0);
  }
  uint64_t seq = f->seq;
  assert_int_equal(CALL(tracker_client_lookup(t, &l, on_count, NULL)),
                   SHOAL_EBUSY);
  assert_int_equal(f->seq, seq);
  assert_int_equal(tracker_client_pending(t), TRACKER_CLIENT_MAX_PENDING);
  RUN_UNTIL(f, g_done == (int)TRACKER_CLIENT_MAX_PENDING, WAIT_MS);
  assert_int_equal(g_done_ok, TRACKER_CLIENT_MAX_PENDING);
  assert_int_equal(tracker_client_pending(t), 0);
  assert_int_equal(CALL(tracker_client_lookup(t, &l, on_count, NULL)), 0);
  RUN_UNTIL(f, g_done == (int)TRACKER_CLIENT_MAX_PENDING + 1, WAIT_MS);
  assert_int_equal(g_done_ok, TRACKER_CLIENT_MAX_PENDING + 1);
}

static void test_host_name_localhost_resolves(void **st) {
  struct fx *f = *st;
  uint8_t c[32];
  char name[64];
  tracker_start(f);
  struct link_tracker tr = at("localhost", f->trk_port);
  struct tracker_client *t = client(f, 0, &tr, 1, f->trk_key.pk, 0, NULL);
  snprintf(name, sizeof(name), "localhost:%d", f->trk_port);
  assert_string_equal(tracker_client_current(t), name);
  content_id(c, 17);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
}

static void test_ipv6_literal_connects(void **st) {
  struct fx *f = *st;
  struct tracker_config cfg = tracker_cfg();
  uint8_t c[32];
  char name[64];
  snprintf(cfg.listen[0], sizeof(cfg.listen[0]), "[::1]:0");
  if (tracker_start_with(f, &cfg) != 0) {
    skip(); /* no IPv6 loopback here */
  }
  struct link_tracker tr = at("::1", f->trk_port);
  struct tracker_client *t = client(f, 0, &tr, 1, f->trk_key.pk, 0, NULL);
  snprintf(name, sizeof(name), "[::1]:%d", f->trk_port);
  assert_string_equal(tracker_client_current(t), name);
  content_id(c, 18);
  struct tmsg_announce a;
  make_announce(&a, c, 6000, TMSG_ROLE_SEEDING);
  assert_int_equal(CALL(tracker_client_announce(t, &a, on_res, &f->res[0])), 0);
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  expect_res(&f->res[1], 0, 1);
  assert_int_equal(f->res[1].rep.u.lookup.peers[0].family, 6);
}

static void test_connection_closed_by_an_idle_tracker_is_reopened(void **st) {
  struct fx *f = *st;
  struct tracker_config cfg = tracker_cfg();
  uint8_t c[32];
  cfg.idle_s = 1;
  assert_int_equal(tracker_start_with(f, &cfg), 0);
  struct tracker_client *t = client_real(f, 0);
  content_id(c, 19);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  assert_true(tracker_client_connected(t));
  /* The tracker closes it within about two of its one-second ticks. */
  RUN_UNTIL(f, !tracker_client_connected(t), WAIT_MS);
  assert_false(tracker_client_connected(t));
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[1], 0, 1);
}

static void test_idle_connection_is_closed_by_the_client(void **st) {
  struct fx *f = *st;
  struct tracker_client_config cc;
  uint8_t c[32];
  tracker_start(f);
  struct link_tracker tr = at("127.0.0.1", f->trk_port);
  memset(&cc, 0, sizeof(cc));
  cc.loop = &f->loop;
  cc.id = &f->me;
  cc.trackers = &tr;
  cc.ntrackers = 1;
  cc.seq = &f->seq;
  cc.idle_ms = 100;
  assert_int_equal(tracker_client_new(&f->cl[0], &cc), 0);
  struct tracker_client *t = f->cl[0];
  content_id(c, 20);
  assert_int_equal(lookup(t, c, &f->res[0]), 0);
  RUN_UNTIL(f, f->res[0].calls > 0, WAIT_MS);
  expect_res(&f->res[0], 0, 1);
  RUN_UNTIL(f, f->trk->n_conns == 0, WAIT_MS);
  assert_int_equal(f->trk->n_conns, 0);
  assert_false(tracker_client_connected(t));
  assert_int_equal(lookup(t, c, &f->res[1]), 0);
  RUN_UNTIL(f, f->res[1].calls > 0, WAIT_MS);
  expect_res(&f->res[1], 0, 1);
}

static void test_invalid_configuration_and_messages_are_refused(void **st) {
  struct fx *f = *st;
  struct tracker_client_config cc;
  struct link_tracker trs[LINK_MAX_TRACKERS + 1];
  struct tracker_client *t =
      (struct tracker_client *)&cc; /* must be reset to NULL */
  for (unsigned i = 0; i <= LINK_MAX_TRACKERS; i++) {
    trs[i] = at("127.0.0.1", 7070);
  }
  memset(&cc, 0, sizeof(cc));
  cc.loop = &f->loop;
  cc.id = &f->me;
  cc.trackers = trs;
  cc.seq = &f->seq;
  cc.ntrackers = 0;
  assert_int_equal(tracker_client_new(&t, &cc), SHOAL_EINVAL);
  assert_null(t);
  cc.ntrackers = LINK_MAX_TRACKERS + 1;
  assert_int_equal(tracker_client_new(&t, &cc), SHOAL_EINVAL);
  cc.ntrackers = 1;
  trs[0].port = 0;
  assert_int_equal(tracker_client_new(&t, &cc), SHOAL_EINVAL);
  trs[0] = at("", 7070);
  assert_int_equal(tracker_client_new(&t, &cc), SHOAL_EINVAL);
  trs[0] = at("127.0.0.1", 7070);
  cc.seq = NULL;
  assert_int_equal(tracker_client_new(&t, &cc), SHOAL_EINVAL);
  cc.seq = &f->seq;
  cc.ntrackers = LINK_MAX_TRACKERS;
  assert_int_equal(tracker_client_new(&f->cl[0], &cc), 0);
  t = f->cl[0];

  static struct tmsg_announce a;
  static struct tmsg_search s;
  static struct tmsg_publish p;
  uint8_t c[32];
  content_id(c, 21);
  make_announce(&a, c, 4000, TMSG_ROLE_SEEDING);
  a.count = TMSG_MAX_ANNOUNCE_ITEMS + 1;
  assert_int_equal(CALL(tracker_client_announce(t, &a, on_res, &f->res[0])),
                   SHOAL_EINVAL);
  make_search(&s, "x");
  s.limit = TMSG_MAX_RESULTS + 1;
  assert_int_equal(CALL(tracker_client_search(t, &s, on_res, &f->res[0])),
                   SHOAL_EINVAL);
  make_publish(&p, c, "a/b", 1); /* a name may not hold a slash */
  assert_int_equal(CALL(tracker_client_publish(t, &p, on_res, &f->res[0])),
                   SHOAL_EINVAL);
  uint64_t seq = f->seq;
  make_search(&s, "bad\ttab");
  s.limit = 1;
  assert_int_equal(CALL(tracker_client_search(t, &s, on_res, &f->res[0])),
                   SHOAL_EINVAL);
  assert_int_equal(f->seq, seq);
  assert_int_equal(tracker_client_pending(t), 0);
  assert_false(tracker_client_connected(t));
  run_for(f, 20);
  assert_int_equal(f->res[0].calls, 0);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  log_set_level(LOG_WARN);
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_announce_then_lookup_returns_the_announced_peer),
      T(test_pipelined_requests_are_answered_in_order),
      T(test_publish_then_search_finds_it),
      T(test_trust_on_first_use_learns_the_tracker_key),
      T(test_wrong_pinned_key_is_refused_and_a_correct_client_works),
      T(test_pin_from_first_use_holds_across_fail_over),
      T(test_refused_connection_fails_and_the_next_request_fails_over),
      T(test_fail_over_goes_round_robin),
      T(test_tier_fails_over_on_silence_and_refusal_and_keeps_the_one_that_worked),
      T(test_first_tracker_and_refusals_that_stay),
      cmocka_unit_test(test_the_timer_fires_at_the_oldest_deadline),
      T(test_silent_tracker_times_out_and_the_next_request_reconnects),
      T(test_a_tracker_that_does_not_answer_is_said_to),
      T(test_a_tracker_that_cannot_be_reached_in_time_is_said_to),
      T(test_bad_replies_fail_every_pending_request_and_close),
      T(test_a_server_that_is_not_a_tracker_is_named),
      T(test_bad_frame_after_a_good_reply_keeps_its_error),
      T(test_wrong_key_names_both_keys),
      T(test_describe_names_the_tracker_that_failed),
      T(test_unsolicited_reply_closes_the_connection),
      T(test_split_and_repeated_replies_are_accepted),
      T(test_error_replies_surface_code_and_reason),
      T(test_rate_limit_error_carries_retry_after),
      T(test_close_cancels_each_pending_request_once),
      T(test_pending_requests_are_capped),
      T(test_host_name_localhost_resolves),
      T(test_ipv6_literal_connects),
      T(test_connection_closed_by_an_idle_tracker_is_reopened),
      T(test_idle_connection_is_closed_by_the_client),
      T(test_invalid_configuration_and_messages_are_refused),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
