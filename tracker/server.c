/* The tracker's network side: listeners, connections, the periodic tick.
 *
 * A connection reads frames and hands each to handlers_frame() as soon as
 * it is complete. Each frame takes a place in the connection's queue of
 * requests; its reply fills the place when the store has answered (at
 * once for the memory store), and replies are written from the head of the
 * queue, so a pipelining client gets them in request order however the
 * store answers. A connection that sends no whole frame for the idle
 * timeout is closed, which also ends clients that trickle a byte at a
 * time. When a client does not read its replies, or has
 * TRACKER_MAX_INFLIGHT requests queued, the tracker stops reading its
 * requests until they drain. A connection is freed only in its close
 * callback; requests still waiting for the store then are orphaned, and
 * freed when their answer comes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/frame.h"
#include "common/log.h"
#include "tracker/tracker.h"

enum conn_state {
  CONN_READING,  /* normal */
  CONN_BLOCKED,  /* reading paused until replies drain */
  CONN_DRAINING, /* last reply queued; close when written */
  CONN_CLOSING,  /* uv_close called */
};

static const char *const state_names[] = {"reading", "blocked", "draining",
                                          "closing"};

struct conn {
  uv_tcp_t tcp;
  struct tracker *t;
  struct frame_decoder dec;
  struct peer_addr from;
  enum conn_state state;
  uint64_t last_frame_ms;
  uint64_t limited_until; /* see struct peer_addr */
  int counted;            /* counted in t->per_addr; dropped at close */
  size_t pending;         /* reply bytes queued but not yet written */
  struct request *head;   /* requests in arrival order, replies pending */
  struct request *tail;
  unsigned queued; /* requests in the queue */
  int processing;  /* inside conn_process: it writes the replies */
  uint8_t *stash;  /* input read but not yet handled when reading paused */
  size_t stash_len;
  struct conn *prev, *next;
};

struct wreq {
  uv_write_t req;
  struct conn *c;
  size_t len;
  uint8_t data[];
};

static void conn_close(struct conn *c);
static void conn_resume(struct conn *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

static void conn_set_state(struct conn *c, enum conn_state s) {
  if (c->state != s) {
    log_debug("tracker", "connection %s: %s -> %s", c->from.text,
              state_names[c->state], state_names[s]);
    c->state = s;
  }
}

static void on_close(uv_handle_t *h) {
  struct conn *c = h->data;
  struct tracker *t = c->t;
  if (c->prev != NULL) {
    c->prev->next = c->next;
  } else {
    t->conns = c->next;
  }
  if (c->next != NULL) {
    c->next->prev = c->prev;
  }
  t->n_conns--;
  if (c->counted) {
    addrcount_drop(&t->per_addr, c->from.family, c->from.addr);
  }
  frame_decoder_close(&c->dec);
  free(c->stash);
  /* A request still waiting for the store is freed when its answer comes;
   * the others go now. */
  for (struct request *rq = c->head, *next; rq != NULL; rq = next) {
    next = rq->next;
    if (rq->done) {
      handlers_request_free(rq);
    } else {
      rq->owner = NULL;
      rq->next = NULL;
    }
  }
  free(c);
}

static void conn_close(struct conn *c) {
  if (c->state == CONN_CLOSING) {
    return;
  }
  conn_set_state(c, CONN_CLOSING);
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  struct conn *c = h->data;
  (void)hint;
  /* One read buffer serves every connection: frames are handled inside the
   * read callback, before the next read can start. */
  b->base = (char *)c->t->rbuf;
  b->len = sizeof(c->t->rbuf);
}

static void on_write(uv_write_t *req, int status) {
  struct wreq *w = (struct wreq *)req;
  struct conn *c = w->c;
  c->pending -= w->len;
  free(w);
  if (status != 0) {
    conn_close(c);
    return;
  }
  if (c->state == CONN_DRAINING && c->pending == 0) {
    conn_close(c);
  } else if (c->state == CONN_BLOCKED && c->pending < TRACKER_MAX_PENDING / 2 &&
             c->queued < TRACKER_MAX_INFLIGHT / 2) {
    conn_resume(c);
  }
}

/* Queues the bytes gathered in t->out; closes after them when `last`. */
static void conn_send(struct conn *c, int last);

/* Writes the replies at the head of the queue that are complete, in order.
 * A reply after which the connection closes ends the connection: what was
 * queued behind it is never answered. */
static void conn_flush(struct conn *c) {
  struct tracker *t = c->t;
  int last = 0;

  if (c->state == CONN_DRAINING || c->state == CONN_CLOSING) {
    return; /* the last reply has been queued */
  }
  buf_reset(&t->out);
  while (c->head != NULL && c->head->done && !last) {
    struct request *rq = c->head;
    c->head = rq->next;
    if (c->head == NULL) {
      c->tail = NULL;
    }
    c->queued--;
    buf_add(&t->out, rq->out.data, rq->out.len);
    last = rq->close_after;
    handlers_request_free(rq);
    if (t->out.len >= TRACKER_MAX_PENDING / 4 && !last) {
      conn_send(c, 0);
    }
  }
  conn_send(c, last);
}

/* A request's reply is ready. */
static void on_request_done(struct request *rq) {
  struct conn *c = rq->owner;
  if (c == NULL) {
    /* Its connection has gone. */
    handlers_request_free(rq);
    return;
  }
  if (c->processing) {
    return; /* conn_process writes it */
  }
  conn_flush(c);
  if (c->state == CONN_BLOCKED && c->queued < TRACKER_MAX_INFLIGHT / 2 &&
      c->pending < TRACKER_MAX_PENDING / 2) {
    conn_resume(c);
  }
}

/* Queues a reply made here (a stream error) behind the requests before
 * it. */
static struct request *conn_enqueue(struct conn *c) {
  struct request *rq = handlers_request_new(c->t, &c->from, on_request_done, c);
  if (rq == NULL) {
    return NULL;
  }
  if (c->tail != NULL) {
    c->tail->next = rq;
  } else {
    c->head = rq;
  }
  c->tail = rq;
  c->queued++;
  return rq;
}

/* Handles the frames in p[0..left) while the connection is reading. When
 * reading pauses for back-pressure, the rest is kept in the stash. */
static void conn_process(struct conn *c, const uint8_t *p, size_t left) {
  struct tracker *t = c->t;

  c->processing = 1;
  while (left > 0 && c->state == CONN_READING) {
    const uint8_t *frame;
    size_t flen;
    size_t used;
    if (c->queued >= TRACKER_MAX_INFLIGHT) {
      conn_flush(c);
      if (c->state != CONN_READING) {
        break;
      }
      if (c->queued >= TRACKER_MAX_INFLIGHT) {
        /* Too many requests waiting for the store: read no more until
         * some are answered. */
        uv_read_stop((uv_stream_t *)&c->tcp);
        conn_set_state(c, CONN_BLOCKED);
        break;
      }
    }
    int r = frame_decoder_next(&c->dec, p, left, &used, &frame, &flen);
    p += used;
    left -= used;
    if (r == 0) {
      break;
    }
    struct request *rq = conn_enqueue(c);
    if (rq == NULL) {
      c->processing = 0;
      conn_close(c);
      return;
    }
    if (r < 0) {
      handlers_refused(
          t, r == SHOAL_ETOOBIG ? METRICS_WHY_TOO_BIG : METRICS_WHY_MALFORMED,
          LOG_INFO, c->from.text, "refused stream from %s: %s", c->from.text,
          shoal_strerror(r));
      handlers_error(t, &rq->out, 0, 0, r, 0,
                     r == SHOAL_ETOOBIG ? "frame is larger than the limit"
                                        : "malformed frame");
      rq->close_after = 1;
      rq->done = 1;
      left = 0;
      break;
    }
    c->last_frame_ms = uv_now(t->loop);
    handlers_frame(rq, frame, flen);
    if (rq->done && rq->close_after) {
      left = 0; /* nothing after it will be answered */
      break;
    }
  }
  c->processing = 0;
  conn_flush(c);
  if (c->state == CONN_READING && left > 0) {
    /* The replies are not being read: wait for them to drain. */
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn_set_state(c, CONN_BLOCKED);
  }
  if (left > 0 && c->state == CONN_BLOCKED) {
    /* The bytes are in the shared read buffer, which the next read of any
     * connection overwrites: keep a copy until this one resumes. */
    c->stash = malloc(left);
    if (c->stash == NULL) {
      conn_close(c);
      return;
    }
    memcpy(c->stash, p, left);
    c->stash_len = left;
  }
}

/* Back-pressure is over: handle what was stashed, then read again. */
static void conn_resume(struct conn *c) {
  conn_set_state(c, CONN_READING);
  if (c->stash != NULL) {
    uint8_t *p = c->stash;
    size_t n = c->stash_len;
    c->stash = NULL;
    c->stash_len = 0;
    conn_process(c, p, n); /* may stash the rest again */
    free(p);
  }
  if (c->state == CONN_READING &&
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  struct conn *c = s->data;

  if (nread < 0) {
    if (nread != UV_EOF) {
      log_debug("tracker", "connection %s: %s", c->from.text,
                shoal_strerror((int)nread));
    }
    conn_close(c);
    return;
  }
  conn_process(c, (const uint8_t *)b->base, (size_t)nread);
}

static void conn_send(struct conn *c, int last) {
  struct tracker *t = c->t;
  if (t->out.len > 0 && c->state != CONN_CLOSING) {
    struct wreq *w = malloc(sizeof(*w) + t->out.len);
    if (w == NULL) {
      conn_close(c);
      return;
    }
    w->c = c;
    w->len = t->out.len;
    memcpy(w->data, t->out.data, t->out.len);
    uv_buf_t ub = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write) != 0) {
      free(w);
      conn_close(c);
      return;
    }
    c->pending += w->len;
  }
  buf_reset(&t->out);
  if (c->state == CONN_CLOSING) {
    return;
  }
  if (last) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn_set_state(c, CONN_DRAINING);
    if (c->pending == 0) {
      conn_close(c);
    }
  } else if (c->pending >= TRACKER_MAX_PENDING && c->state == CONN_READING) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn_set_state(c, CONN_BLOCKED);
  }
}

static void describe(const struct sockaddr_storage *ss, struct peer_addr *a) {
  char ip[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  memset(a, 0, sizeof(*a));
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    a->family = 4;
    memcpy(a->addr, &s4->sin_addr, 4);
    uv_ip4_name(s4, ip, sizeof(ip));
    port = ntohs(s4->sin_port);
    snprintf(a->text, sizeof(a->text), "%s:%u", ip, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
    port = ntohs(s6->sin6_port);
    if (memcmp(&s6->sin6_addr, mapped, sizeof(mapped)) == 0) {
      /* An IPv4 client on a dual-stack socket is an IPv4 client. */
      a->family = 4;
      memcpy(a->addr, (const uint8_t *)&s6->sin6_addr + 12, 4);
      uv_inet_ntop(AF_INET, a->addr, ip, sizeof(ip));
      snprintf(a->text, sizeof(a->text), "%s:%u", ip, port);
    } else {
      a->family = 6;
      memcpy(a->addr, &s6->sin6_addr, 16);
      uv_ip6_name(s6, ip, sizeof(ip));
      snprintf(a->text, sizeof(a->text), "[%s]:%u", ip, port);
    }
  }
}

static void on_connection(uv_stream_t *server, int status) {
  struct tracker *t = server->data;
  struct sockaddr_storage ss;
  int len = sizeof(ss);

  if (status != 0) {
    log_warn("tracker", "accept: %s", shoal_strerror(status));
    return;
  }
  struct conn *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    log_error("tracker", "out of memory accepting a connection");
    return;
  }
  c->t = t;
  uv_tcp_init(t->loop, &c->tcp);
  c->tcp.data = c;
  c->next = t->conns;
  if (t->conns != NULL) {
    t->conns->prev = c;
  }
  t->conns = c;
  t->n_conns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0 ||
      (describe(&ss, &c->from), c->from.family == 0)) {
    /* Without the observed address there is nothing to register. */
    handlers_refused(t, METRICS_WHY_UNKNOWN_ADDRESS, LOG_WARN, "",
                     "refused a connection whose address is unknown");
    conn_close(c);
    return;
  }
  c->from.limited_until = &c->limited_until;
  if (t->n_conns > t->cfg.max_conns) {
    handlers_refused(t, METRICS_WHY_CONNECTION_LIMIT, LOG_WARN, c->from.text,
                     "refused connection from %s: %u connections is the "
                     "limit",
                     c->from.text, t->cfg.max_conns);
    conn_close(c);
    return;
  }
  /* One address must not hold every connection: past its share it is
   * refused, and other clients still get in. */
  int err = addrcount_add(&t->per_addr, c->from.family, c->from.addr);
  if (err != 0) {
    char who[ADDRCOUNT_NAME_BYTES];
    addrcount_name(c->from.family, c->from.addr, who);
    if (err == SHOAL_EBUSY) {
      handlers_refused(t, METRICS_WHY_PER_ADDRESS_CAP, LOG_WARN, c->from.text,
                       "refused connection from %s: %s holds %u connections, "
                       "the limit per address",
                       c->from.text, who, t->per_addr.cap);
    } else {
      /* The table of addresses is full: as many distinct addresses as
       * --max-connections allows already hold connections. */
      handlers_refused(t, METRICS_WHY_CONNECTION_LIMIT, LOG_WARN, c->from.text,
                       "refused connection from %s: %s", c->from.text,
                       shoal_strerror(err));
    }
    conn_close(c);
    return;
  }
  c->counted = 1;
  uv_tcp_nodelay(&c->tcp, 1);
  frame_decoder_init(&c->dec, t->cfg.max_frame);
  c->last_frame_ms = uv_now(t->loop);
  c->state = CONN_READING;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_tick(uv_timer_t *timer) {
  struct tracker *t = timer->data;
  uint64_t now = uv_now(t->loop);
  uint64_t idle_ms = (uint64_t)t->cfg.idle_s * 1000u;
  handlers_tick(t);
  for (struct conn *c = t->conns; c != NULL; c = c->next) {
    if (c->state != CONN_CLOSING && now - c->last_frame_ms > idle_ms) {
      log_info("tracker", "closed %s: no complete request for %u s",
               c->from.text, t->cfg.idle_s);
      conn_close(c);
    }
  }
}

int server_parse_listen(const char *s, struct sockaddr_storage *ss) {
  char host[256];
  const char *colon = strrchr(s, ':');
  if (colon == NULL || colon == s) {
    return SHOAL_EINVAL;
  }
  size_t hl = (size_t)(colon - s);
  if (s[0] == '[') {
    if (hl < 3 || s[hl - 1] != ']') {
      return SHOAL_EINVAL;
    }
    memcpy(host, s + 1, hl - 2);
    host[hl - 2] = '\0';
  } else {
    if (hl >= sizeof(host)) {
      return SHOAL_EINVAL;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
  }
  char *end;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (*end != '\0' || colon[1] == '\0' || port > 65535) {
    return SHOAL_EINVAL;
  }
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) {
    return 0;
  }
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) {
    return 0;
  }
  return SHOAL_EINVAL;
}

int server_start(struct tracker *t) {
  int err;
  for (unsigned i = 0; i < t->cfg.n_listen; i++) {
    struct sockaddr_storage ss;
    uv_tcp_t *l = &t->listeners[i];
    err = server_parse_listen(t->cfg.listen[i], &ss);
    if (err != 0) {
      log_error("tracker", "--listen %s: not ADDR:PORT", t->cfg.listen[i]);
      return err;
    }
    uv_tcp_init(t->loop, l);
    l->data = t;
    t->n_listeners++;
    err = uv_tcp_bind(l, (const struct sockaddr *)&ss, 0);
    if (err == 0) {
      err = uv_listen((uv_stream_t *)l, 511, on_connection);
    }
    if (err != 0) {
      log_error("tracker", "cannot listen on %s: %s", t->cfg.listen[i],
                shoal_strerror(err));
      return err;
    }
  }
  uv_timer_init(t->loop, &t->tick);
  t->tick.data = t;
  uv_timer_start(&t->tick, on_tick, TRACKER_TICK_MS, TRACKER_TICK_MS);
  return 0;
}

void server_say_listening(struct tracker *t) {
  for (unsigned i = 0; i < t->n_listeners; i++) {
    struct sockaddr_storage got;
    int len = sizeof(got);
    struct peer_addr a;
    if (uv_tcp_getsockname(&t->listeners[i], (struct sockaddr *)&got, &len) !=
        0) {
      continue;
    }
    describe(&got, &a);
    printf("listening on %s\n", a.text);
    log_info("tracker", "listening on %s", a.text);
  }
  fflush(stdout);
}

void server_stop(struct tracker *t) {
  if (t->closing) {
    return;
  }
  t->closing = 1;
  for (unsigned i = 0; i < t->n_listeners; i++) {
    uv_close((uv_handle_t *)&t->listeners[i], NULL);
  }
  if (uv_is_active((uv_handle_t *)&t->tick) || t->tick.type == UV_TIMER) {
    uv_close((uv_handle_t *)&t->tick, NULL);
  }
  for (struct conn *c = t->conns; c != NULL; c = c->next) {
    conn_close(c);
  }
}
