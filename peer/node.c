/* The peer node: listener, swarms, trackers, rate limits, stop.
 *
 * Tracker schedule of a swarm: publish (when it is ours), announce
 * "started", then look up peers; re-announce on the tracker's interval and
 * look up again while the swarm has fewer peers than it may (1 s after a
 * lookup that found someone new, doubling to 30 s when it did not). A
 * tracker that cannot be reached is retried with backoff (1 s doubling to
 * 60 s) while the swarm goes on with the peers it knows; a get that never
 * reached any tracker and never met a peer gives up after
 * NODE_TRACKER_TRIES attempts per tracker (a share likewise, since it
 * cannot print a link without its tracker), and one that reaches a tracker but
 * finds no peer gives up after NODE_NO_PEERS_MS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/link.h"
#include "common/log.h"
#include "common/textid.h"
#include "common/tmsg.h"
#include "peer/internal.h"

#define NODE_TICK_MS 500u
#define LOOKUP_MIN_MS 1000u
#define LOOKUP_MAX_MS 30000u
#define RETRY_MAX_MS 60000u
#define HELLO_GUARD_SENDERS 4096u

static void schedule_announce(struct swarm *sw, uint64_t ms);
static void schedule_lookup(struct swarm *sw, uint64_t ms);
static void do_announce(struct swarm *sw, uint8_t event);
static void announce_stopped(struct swarm *sw);

uint64_t node_now(const struct node *n) {
  return uv_now(n->loop);
}

uint64_t node_next_seq(struct node *n) {
  return n->seq++;
}

void node_emit(struct node *n, const struct node_event *ev) {
  if (n->cb != NULL) {
    n->cb(n->cb_arg, ev);
  }
}

uint64_t node_uploaded(const struct node *n) {
  return n->up_bytes;
}
uint64_t node_downloaded(const struct node *n) {
  return n->down_bytes;
}
uint64_t node_wasted(const struct node *n) {
  return n->wasted_bytes;
}
uint16_t node_port(const struct node *n) {
  return n->port;
}

static void for_each_session(struct node *n, void (*fn)(struct session *)) {
  for (struct session *s = n->pending, *next; s != NULL; s = next) {
    next = s->next;
    fn(s);
  }
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
      next = s->next;
      fn(s);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Rate limits */

void node_pump_now(struct node *n) {
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
      s_next = s->next; /* a send may close s */
      session_pump_upload(s);
    }
  }
}

static void on_pump(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, pump_timer);
  node_pump_now(n);
}

/* Called when the upload bucket is short: come back when it has refilled. */
void node_pump(struct node *n) {
  uint64_t wait;
  if (n->stopping || uv_is_active((uv_handle_t *)&n->pump_timer)) {
    return;
  }
  wait = rate_wait_ms(&n->up_bucket, PWIRE_BLOCK_BYTES, node_now(n));
  uv_timer_start(&n->pump_timer, on_pump, wait > 0 ? wait : 1, 0);
}

static void on_throttle(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, throttle_timer);
  uint64_t wait = rate_wait_ms(&n->down_bucket, 1, node_now(n));
  if (wait > 0) {
    uv_timer_start(&n->throttle_timer, on_throttle, wait, 0);
    return;
  }
  n->throttled = 0;
  for_each_session(n, session_resume_reading);
}

void node_charge_download(struct node *n, size_t bytes) {
  uint64_t wait;
  if (rate_unlimited(&n->down_bucket)) {
    return;
  }
  rate_charge(&n->down_bucket, bytes, node_now(n));
  if (n->throttled || n->stopping) {
    return;
  }
  wait = rate_wait_ms(&n->down_bucket, 1, node_now(n));
  if (wait > 0) {
    n->throttled = 1;
    for_each_session(n, session_pause_reading);
    uv_timer_start(&n->throttle_timer, on_throttle, wait, 0);
  }
}

/* Sends the HAVEs that are due, and comes back for the rest. */
static void on_have_timer(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, have_timer);
  uint64_t now = node_now(n), wait = 0;
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    uint64_t w = swarm_haves_due(sw, now);
    if (w > 0 && (wait == 0 || w < wait)) {
      wait = w;
    }
  }
  if (wait > 0) {
    node_have_later(n, wait);
  }
}

/* A swarm has HAVEs that may go out in ms. */
void node_have_later(struct node *n, uint64_t ms) {
  if (n->stopping || (uv_is_active((uv_handle_t *)&n->have_timer) &&
                      uv_timer_get_due_in(&n->have_timer) <= ms)) {
    return;
  }
  uv_timer_start(&n->have_timer, on_have_timer, ms, 0);
}

/* ------------------------------------------------------------------------ */
/* Ticks and progress */

static void tick_session(struct session *s) {
  session_tick(s, node_now(s->node));
}

static void on_source_checked(void *arg, int status) {
  struct swarm *sw = arg;
  sw->refs--;
  if (status == SHOAL_ECHANGED) {
    swarm_source_changed(sw);
  } else if (status != 0 && sw->state == SW_SEEDING) {
    log_warn("peer", "%s: cannot check the shared files: %s", sw->name,
             shoal_strerror(status));
  }
}

static void on_tick(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, tick);
  uint64_t now = node_now(n);
  for_each_session(n, tick_session);
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    struct node_event ev;
    if (sw->state == SW_FAILED || sw->state == SW_STOPPING) {
      continue;
    }
    swarm_tick(sw, now);
    if (sw->is_source && sw->state == SW_SEEDING && sw->st != NULL &&
        now - sw->source_checked_ms >= NODE_SOURCE_CHECK_MS) {
      /* Reads check what they read; this notices a change even when
       * nobody asks for the content. */
      sw->source_checked_ms = now;
      if (storage_check_source(sw->st, on_source_checked, sw) == 0) {
        sw->refs++;
      }
    }
    if (!sw->ever_met_peer && !sw->is_source && sw->state == SW_FETCHING &&
        sw->ever_met_tracker && now - sw->started_ms > NODE_NO_PEERS_MS) {
      swarm_fail(sw, SHOAL_ETIMEDOUT,
                 "no peer has this content yet — ask its publisher to run "
                 "'shoal-peer share', then try again");
      continue;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_PROGRESS;
    swarm_emit(sw, &ev);
  }
}

/* ------------------------------------------------------------------------ */
/* Listening */

static void on_connection(uv_stream_t *server, int status) {
  struct node *n = server->data;
  if (status < 0) {
    log_warn("peer", "accept: %s", uv_strerror(status));
    return;
  }
  {
    /* Sessions that have not said hello yet hold a read buffer each: cap
     * them, so a flood of silent connections cannot pile up. */
    unsigned waiting = 0;
    for (struct session *s = n->pending; s != NULL; s = s->next) {
      waiting++;
    }
    if (waiting >= NODE_MAX_PENDING) {
      /* The oldest gives way: silent connections cannot lock others out
       * for longer than NODE_HELLO_MS. */
      struct session *oldest = n->pending;
      while (oldest->next != NULL) {
        oldest = oldest->next;
      }
      session_close(oldest, "too many connections waiting for a hello");
    }
    session_accepted(n, (uv_tcp_t *)server);
  }
}

/* Whether this host can listen on IPv6 at all: the default listener is
 * dual-stack where it can, IPv4 only where it cannot. */
static int ipv6_available(void) {
  struct sockaddr_in6 a;
  int ok;
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return 0;
  }
  memset(&a, 0, sizeof(a));
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

int node_parse_listen(const char *s, struct sockaddr_storage *ss) {
  struct link_tracker t;
  const char *why;
  memset(ss, 0, sizeof(*ss));
  if (s == NULL) {
    /* Every address of both families ([::], dual-stack: libuv clears
     * IPV6_V6ONLY), so that a tracker reached over either one lists us
     * where others can connect. */
    if (ipv6_available()) {
      return uv_ip6_addr("::", 0, (struct sockaddr_in6 *)(void *)ss);
    }
    return uv_ip4_addr("0.0.0.0", 0, (struct sockaddr_in *)(void *)ss);
  }
  /* Port 0 is allowed here (any free port); link_parse_tracker refuses it,
   * so a trailing ":0" is checked on its own. */
  {
    size_t len = strlen(s);
    char tmp[300];
    if (len >= 2 && strcmp(s + len - 2, ":0") == 0 && len < sizeof(tmp)) {
      memcpy(tmp, s, len - 1);
      tmp[len - 1] = '1';
      tmp[len] = '\0';
      if (link_parse_tracker(tmp, len, &t, &why) != 0) {
        return SHOAL_EINVAL;
      }
      t.port = 0;
    } else if (link_parse_tracker(s, len, &t, &why) != 0) {
      return SHOAL_EINVAL;
    }
  }
  if (uv_ip4_addr(t.host, t.port, (struct sockaddr_in *)(void *)ss) == 0) {
    return 0;
  }
  if (uv_ip6_addr(t.host, t.port, (struct sockaddr_in6 *)(void *)ss) == 0) {
    return 0;
  }
  return SHOAL_EINVAL;
}

int node_new(struct node **out, uv_loop_t *loop, const struct node_config *c,
             const struct identity *id, node_event_cb cb, void *arg) {
  struct node *n;
  struct sockaddr_storage ss;
  struct sockaddr_storage bound;
  int len = (int)sizeof(bound);
  int err;

  *out = NULL;
  err = node_parse_listen(c->listen, &ss);
  if (err != 0) {
    return SHOAL_EINVAL;
  }
  n = calloc(1, sizeof(*n));
  if (n == NULL) {
    return SHOAL_ENOMEM;
  }
  n->plain = malloc(PWIRE_MAX_PLAIN);
  n->home = strdup(c->home);
  if (n->plain == NULL || n->home == NULL) {
    free(n->plain);
    free(n->home);
    free(n);
    return SHOAL_ENOMEM;
  }
  n->loop = loop;
  n->cfg = *c;
  n->cfg.home = n->home;
  n->cfg.listen = NULL;
  if (n->cfg.max_peers == 0 || n->cfg.max_peers > PICKER_MAX_PEERS) {
    n->cfg.max_peers = NODE_DEFAULT_MAX_PEERS;
  }
  n->id = id;
  n->cb = cb;
  n->cb_arg = arg;
  n->seq = envelope_seq_start(clock_wall_ms());
  rate_init(&n->up_bucket, c->upload_rate, uv_now(loop));
  meter_init(&n->up_meter, 2000, uv_now(loop));
  rate_init(&n->down_bucket, c->download_rate, uv_now(loop));
  err = replay_guard_init(&n->hello_guard, HELLO_GUARD_SENDERS,
                          ENVELOPE_WINDOW_MS_DEFAULT);
  if (err != 0) {
    free(n->plain);
    free(n->home);
    free(n);
    return err;
  }
  uv_tcp_init(loop, &n->listener);
  n->listener.data = n;
  uv_timer_init(loop, &n->tick);
  uv_timer_init(loop, &n->pump_timer);
  uv_timer_init(loop, &n->throttle_timer);
  uv_timer_init(loop, &n->have_timer);
  uv_timer_init(loop, &n->stop_timer);
  err = uv_tcp_bind(&n->listener, (const struct sockaddr *)&ss, 0);
  if (err == 0) {
    err = uv_listen((uv_stream_t *)&n->listener, 128, on_connection);
  }
  if (err == 0) {
    err = uv_tcp_getsockname(&n->listener, (struct sockaddr *)&bound, &len);
  }
  if (err != 0) {
    /* The handles are closed by node_stop/node_free like any other. */
    n->stopping = 0;
    *out = n;
    return err;
  }
  n->listening = 1;
  n->port = ntohs(bound.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)(void *)&bound)->sin6_port
                      : ((struct sockaddr_in *)(void *)&bound)->sin_port);
  if (bound.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a6 = (const void *)&bound;
    char ip[INET6_ADDRSTRLEN] = "?";
    n->accepts_v6 = 1;
    n->accepts_v4 = memcmp(&a6->sin6_addr, &in6addr_any, 16) == 0;
    uv_ip6_name(a6, ip, sizeof(ip));
    snprintf(n->listen_text, sizeof(n->listen_text), "[%s]:%u", ip, n->port);
  } else {
    char ip[INET_ADDRSTRLEN] = "?";
    n->accepts_v4 = 1;
    uv_ip4_name((const struct sockaddr_in *)(const void *)&bound, ip,
                sizeof(ip));
    snprintf(n->listen_text, sizeof(n->listen_text), "%s:%u", ip, n->port);
  }
  uv_timer_start(&n->tick, on_tick, NODE_TICK_MS, NODE_TICK_MS);
  log_info("peer", "listening on %s%s", n->listen_text,
           n->accepts_v4 && n->accepts_v6 ? " (IPv4 and IPv6)" : "");
  {
    struct node_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_LISTENING;
    ev.port = n->port;
    node_emit(n, &ev);
  }
  *out = n;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Swarms */

/* The trackers of a list that can list us where others reach us: a tracker
 * records the address it sees us at, so one given as an address of a
 * family our listener does not take would hand out an address where nobody
 * answers. Host names are kept: the tracker client resolves them to the
 * family we listen on. Copies those into out and returns their count; the
 * first one left out is described in why (cap bytes), "" when none is. */
static unsigned usable_trackers(const struct node *n,
                                const struct link_tracker *in, unsigned nin,
                                struct link_tracker *out, char *why,
                                size_t cap) {
  unsigned nout = 0;
  why[0] = '\0';
  for (unsigned i = 0; i < nin && i < LINK_MAX_TRACKERS; i++) {
    struct in6_addr a6;
    struct in_addr a4;
    int v6 = inet_pton(AF_INET6, in[i].host, &a6) == 1;
    int v4 = inet_pton(AF_INET, in[i].host, &a4) == 1;
    if ((v6 && !n->accepts_v6) || (v4 && !n->accepts_v4)) {
      if (why[0] == '\0') {
        snprintf(why, cap,
                 "tracker %s%s%s:%u is an %s address, but this peer listens "
                 "on %s (%s only): the tracker would list it at an %s "
                 "address where no peer can connect — leave out --listen "
                 "(the default takes IPv4 and IPv6) or give an %s address",
                 v6 ? "[" : "", in[i].host, v6 ? "]" : "", (unsigned)in[i].port,
                 v6 ? "IPv6" : "IPv4", n->listen_text, v6 ? "IPv4" : "IPv6",
                 v6 ? "IPv6" : "IPv4", v6 ? "IPv6" : "IPv4");
      }
      continue;
    }
    out[nout++] = in[i];
  }
  return nout;
}

static struct swarm *swarm_new(struct node *n, const uint8_t content[32],
                               const struct link_tracker *trackers,
                               unsigned ntrackers, const uint8_t *key) {
  struct swarm *sw = calloc(1, sizeof(*sw));
  struct tracker_client_config tc;
  if (sw == NULL) {
    return NULL;
  }
  sw->node = n;
  memcpy(sw->content, content, MANIFEST_ID_BYTES);
  textid_encode(TEXTID_CONTENT, content, sw->content_text);
  if (ntrackers > LINK_MAX_TRACKERS) {
    ntrackers = LINK_MAX_TRACKERS;
  }
  memcpy(sw->trackers, trackers, ntrackers * sizeof(*trackers));
  sw->ntrackers = ntrackers;
  if (key != NULL) {
    memcpy(sw->tracker_key, key, IDENTITY_PK_BYTES);
    sw->have_tracker_key = 1;
  }
  buf_init(&sw->mf, MANIFEST_MAX_BYTES);
  meter_init(&sw->down_meter, 5000, node_now(n));
  sw->started_ms = node_now(n);
  sw->last_rechoke_ms = node_now(n);
  sw->lookup_backoff_ms = LOOKUP_MIN_MS;
  uv_timer_init(n->loop, &sw->announce_timer);
  uv_timer_init(n->loop, &sw->lookup_timer);
  sw->announce_timer.data = sw;
  sw->lookup_timer.data = sw;
  memset(&tc, 0, sizeof(tc));
  tc.loop = n->loop;
  tc.id = n->id;
  tc.trackers = sw->trackers;
  tc.ntrackers = sw->ntrackers;
  tc.tracker_key = key;
  tc.seq = &n->seq;
  tc.family = n->accepts_v4 && n->accepts_v6 ? 0
              : n->accepts_v6                ? AF_INET6
                                             : AF_INET;
  if (sw->ntrackers > 0 && tracker_client_new(&sw->tc, &tc) != 0) {
    sw->tc = NULL;
  }
  sw->next = n->swarms;
  n->swarms = sw;
  return sw;
}

void swarm_fail(struct swarm *sw, int code, const char *msg) {
  struct node_event ev;
  if (sw->state == SW_FAILED) {
    return;
  }
  /* The event carries the failure to the user, who sees it once; the log
   * keeps it for --log-level info. */
  log_info("peer", "%s: %s", sw->name, msg);
  sw->state = SW_FAILED;
  uv_timer_stop(&sw->announce_timer);
  uv_timer_stop(&sw->lookup_timer);
  /* The tracker lists us until we say we stopped: say it now, so that it
   * sends nobody to a swarm that is gone. An announce under way is let
   * finish; its reply sends "stopped" (on_announced). */
  announce_stopped(sw);
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next;
    session_close(s, "the swarm failed");
  }
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_FAILED;
  ev.code = code;
  ev.message = msg;
  swarm_emit(sw, &ev);
}

/* After swarm_new with the usable trackers of ntrackers given: fails the
 * swarm when none was usable (why says why), warns when some were left
 * out. Returns 1 when the swarm can go on. */
static int trackers_ready(struct swarm *sw, unsigned ntrackers,
                          const char *why) {
  struct node_event ev;
  if (sw->ntrackers == 0 && ntrackers > 0) {
    swarm_fail(sw, UV_EAFNOSUPPORT, why);
    return 0;
  }
  if (sw->tc == NULL) {
    return 0; /* out of memory */
  }
  if (why[0] != '\0') {
    log_info("peer", "%s: %s", sw->name, why);
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_WARNING;
    ev.message = why;
    swarm_emit(sw, &ev);
  }
  return 1;
}

static void learn_key(struct swarm *sw) {
  const uint8_t *k = sw->tc != NULL ? tracker_client_key(sw->tc) : NULL;
  if (k != NULL && !sw->have_tracker_key) {
    struct node_event ev;
    memcpy(sw->tracker_key, k, IDENTITY_PK_BYTES);
    sw->have_tracker_key = 1;
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_TRACKER;
    ev.key = sw->tracker_key;
    swarm_emit(sw, &ev);
  }
}

/* A tracker failed us. Returns 1 when the swarm gave up. */
static int tracker_failed(struct swarm *sw, int status,
                          const struct tracker_client_reply *r) {
  char msg[TRACKER_CLIENT_DESCRIBE_BYTES];
  /* Until a tracker or a peer has answered, these tries end in the
   * swarm's failure, which the user sees once; after that, a tracker
   * that went away is worth a warning each time. */
  int may_fail = !sw->ever_met_tracker && !sw->ever_met_peer;
  sw->tracker_failures++;
  tracker_client_describe(sw->tc, status, r, msg, sizeof(msg));
  if (may_fail &&
      sw->tracker_failures >=
          NODE_TRACKER_TRIES * (sw->ntrackers ? sw->ntrackers : 1)) {
    swarm_fail(sw, status, msg);
    return 1;
  }
  if (may_fail) {
    log_info("peer", "%s: %s", sw->name, msg);
  } else {
    log_warn("peer", "%s: %s", sw->name, msg);
  }
  return 0;
}

static uint64_t backoff_ms(const struct swarm *sw) {
  uint64_t ms = 1000;
  for (unsigned i = 1; i < sw->tracker_failures && ms < RETRY_MAX_MS; i++) {
    ms *= 2;
  }
  return ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS;
}

static uint64_t left_bytes(const struct swarm *sw) {
  uint64_t total = sw->m != NULL ? sw->m->total_size : sw->size_hint;
  uint64_t have = 0;
  if (sw->is_source || sw->state == SW_SEEDING) {
    return 0;
  }
  if (sw->st != NULL) {
    have = storage_have_bytes(sw->st);
  }
  return total > have ? total - have : (sw->m == NULL ? 1 : 0);
}

struct announce_ctx {
  struct swarm *sw;
  uint8_t event;
};

static void on_announced(void *arg, int status,
                         const struct tracker_client_reply *r) {
  struct announce_ctx *a = arg;
  struct swarm *sw = a->sw;
  uint8_t event = a->event;
  free(a);
  sw->refs--;
  sw->announce_busy = 0;
  if (event == TMSG_EVENT_STOPPED) {
    sw->stop_announced = 1;
    return;
  }
  if (sw->node->stopping || sw->state == SW_FAILED) {
    /* An announce was under way when the node began to stop or the swarm
     * failed: the tracker has us now, so "stopped" follows it. */
    if (status == 0) {
      sw->announced_once = 1;
      announce_stopped(sw);
    }
    return;
  }
  if (status != 0 && event == TMSG_EVENT_COMPLETED) {
    sw->completed_pending = 1;
  }
  if (status != 0) {
    if (!tracker_failed(sw, status, r)) {
      uint64_t wait = backoff_ms(sw);
      if (r != NULL && r->type == TMSG_ERROR &&
          r->error.retry_after_ms > wait) {
        wait = r->error.retry_after_ms;
      }
      schedule_announce(sw, wait);
    }
    return;
  }
  sw->ever_met_tracker = 1;
  sw->tracker_failures = 0;
  sw->announced_once = 1;
  learn_key(sw);
  sw->interval_s = r->u.announce.interval_s;
  {
    uint64_t s = sw->interval_s ? sw->interval_s : 60;
    if (sw->node->cfg.interval_cap_s != 0 && s > sw->node->cfg.interval_cap_s) {
      s = sw->node->cfg.interval_cap_s;
    }
    if (s < r->u.announce.min_interval_s) {
      s = r->u.announce.min_interval_s;
    }
    schedule_announce(sw, s * 1000);
  }
  if (event == TMSG_EVENT_STARTED && sw->state != SW_SEEDING) {
    schedule_lookup(sw, 0);
  }
}

static void do_announce(struct swarm *sw, uint8_t event) {
  struct tmsg_announce a;
  struct announce_ctx *ctx;
  if (sw->tc == NULL || sw->announce_busy) {
    return;
  }
  memset(&a, 0, sizeof(a));
  a.port = sw->node->port;
  a.event = event;
  a.count = 1;
  memcpy(a.items[0].content, sw->content, MANIFEST_ID_BYTES);
  a.items[0].role = (sw->is_source || sw->state == SW_SEEDING)
                        ? TMSG_ROLE_SEEDING
                        : TMSG_ROLE_DOWNLOADING;
  a.items[0].left = left_bytes(sw);
  ctx = malloc(sizeof(*ctx));
  if (ctx == NULL) {
    schedule_announce(sw, 1000);
    return;
  }
  ctx->sw = sw;
  ctx->event = event;
  if (tracker_client_announce(sw->tc, &a, on_announced, ctx) != 0) {
    free(ctx);
    schedule_announce(sw, 1000);
    return;
  }
  if (event == TMSG_EVENT_COMPLETED) {
    sw->completed_pending = 0;
  }
  sw->announce_busy = 1;
  sw->refs++;
}

/* Tells the trackers this swarm stopped, once, when they may list it: it
 * announced before, or an announce is under way (whose reply calls this
 * again). */
static void announce_stopped(struct swarm *sw) {
  if (sw->tc == NULL || sw->stop_sent || !sw->announced_once ||
      sw->announce_busy) {
    return;
  }
  do_announce(sw, TMSG_EVENT_STOPPED);
  sw->stop_sent = sw->announce_busy;
}

static void publish(struct swarm *sw);

static void on_announce_timer(uv_timer_t *t) {
  struct swarm *sw = t->data;
  uint8_t event = TMSG_EVENT_PERIODIC;
  if (sw->state == SW_FAILED) {
    return; /* it said "stopped" (announce_stopped) */
  }
  if (!sw->announced_once) {
    event = TMSG_EVENT_STARTED;
  } else if (sw->completed_pending) {
    event = TMSG_EVENT_COMPLETED;
  }
  if (sw->is_source && !sw->published) {
    /* A share announces only once its publish went through. */
    if (!sw->publish_busy) {
      publish(sw);
    }
    return;
  }
  do_announce(sw, event);
}

static void schedule_announce(struct swarm *sw, uint64_t ms) {
  if (sw->node->stopping) {
    return;
  }
  uv_timer_start(&sw->announce_timer, on_announce_timer, ms, 0);
}

static int connected_to(const struct swarm *sw, const uint8_t pk[32]) {
  for (const struct session *s = sw->sessions; s != NULL; s = s->next) {
    if (memcmp(s->remote_pk, pk, IDENTITY_PK_BYTES) == 0 ||
        (s->have_expect && memcmp(s->expect_pk, pk, IDENTITY_PK_BYTES) == 0)) {
      return 1;
    }
  }
  return 0;
}

static void remember_peer(struct swarm *sw, const uint8_t pk[32],
                          const struct sockaddr_storage *ss) {
  struct known_peer *k = NULL;
  if (sw->known == NULL) {
    sw->known = calloc(SWARM_KNOWN_MAX, sizeof(*sw->known));
    if (sw->known == NULL) {
      return;
    }
  }
  for (unsigned i = 0; i < sw->nknown; i++) {
    if (memcmp(sw->known[i].pk, pk, IDENTITY_PK_BYTES) == 0) {
      k = &sw->known[i];
      break;
    }
  }
  if (k == NULL) {
    if (sw->nknown == SWARM_KNOWN_MAX) {
      /* Full: the entries are replaced in turn, oldest first. */
      k = &sw->known[sw->known_next];
      sw->known_next = (sw->known_next + 1) % SWARM_KNOWN_MAX;
    } else {
      k = &sw->known[sw->nknown++];
    }
    memset(k, 0, sizeof(*k));
    memcpy(k->pk, pk, IDENTITY_PK_BYTES);
  }
  k->addr = *ss;
  k->backoff_ms = 0;
  k->next_try_ms = 0;
}

/* The tracker cannot be asked: dial the peers it listed before, each with
 * its own backoff, so the swarm goes on with the peers it knows. */
static void redial_known(struct swarm *sw) {
  struct node *n = sw->node;
  uint64_t now = node_now(n);
  for (unsigned i = 0; i < sw->nknown; i++) {
    struct known_peer *k = &sw->known[i];
    if (sw->nsessions >= n->cfg.max_peers) {
      return;
    }
    if (k->next_try_ms > now || swarm_is_banned(sw, k->pk) ||
        connected_to(sw, k->pk)) {
      continue;
    }
    k->backoff_ms = k->backoff_ms == 0 ? 2000 : k->backoff_ms * 2;
    if (k->backoff_ms > LOOKUP_MAX_MS) {
      k->backoff_ms = LOOKUP_MAX_MS;
    }
    k->next_try_ms = now + k->backoff_ms;
    log_info("peer", "%s: tracker unreachable; dialling a known peer",
             sw->name);
    (void)session_connect(n, sw, (const struct sockaddr *)&k->addr, k->pk);
  }
}

static void on_lookup(void *arg, int status,
                      const struct tracker_client_reply *r) {
  struct swarm *sw = arg;
  struct node *n = sw->node;
  unsigned fresh = 0;
  sw->refs--;
  sw->lookup_busy = 0;
  if (sw->state == SW_FAILED || sw->state == SW_STOPPING || n->stopping) {
    return;
  }
  if (status != 0) {
    if (!tracker_failed(sw, status, r)) {
      redial_known(sw);
      schedule_lookup(sw, backoff_ms(sw) < LOOKUP_MAX_MS ? backoff_ms(sw)
                                                         : LOOKUP_MAX_MS);
    }
    return;
  }
  sw->ever_met_tracker = 1;
  sw->tracker_failures = 0;
  learn_key(sw);
  for (unsigned i = 0; i < r->u.lookup.count; i++) {
    const struct tmsg_peer *p = &r->u.lookup.peers[i];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (sw->nsessions >= n->cfg.max_peers) {
      break;
    }
    if (memcmp(p->pk, n->id->pk, IDENTITY_PK_BYTES) == 0 || p->port == 0 ||
        swarm_is_banned(sw, p->pk) || connected_to(sw, p->pk)) {
      continue;
    }
    if (n->cfg.mode == NODE_MODE_CS && !sw->is_source &&
        (sw->m != NULL ? memcmp(p->pk, sw->m->publisher, IDENTITY_PK_BYTES) != 0
                       : !p->seeding)) {
      continue;
    }
    if (p->family == 4) {
      struct sockaddr_in *a = (struct sockaddr_in *)(void *)&ss;
      a->sin_family = AF_INET;
      a->sin_port = htons(p->port);
      memcpy(&a->sin_addr, p->addr, 4);
    } else if (p->family == 6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)(void *)&ss;
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(p->port);
      memcpy(&a->sin6_addr, p->addr, 16);
    } else {
      continue;
    }
    remember_peer(sw, p->pk, &ss);
    if (session_connect(n, sw, (const struct sockaddr *)&ss, p->pk) == 0) {
      fresh++;
    }
  }
  if (fresh > 0) {
    sw->lookup_backoff_ms = LOOKUP_MIN_MS;
  } else if (sw->lookup_backoff_ms < LOOKUP_MAX_MS) {
    sw->lookup_backoff_ms *= 2;
  }
  if (r->u.lookup.count == 0 && !sw->ever_met_peer && !sw->warned_no_peers) {
    struct node_event ev;
    sw->warned_no_peers = 1;
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_WARNING;
    ev.message = "no peers yet; waiting for one to appear";
    node_emit(n, &ev);
  }
  schedule_lookup(sw, sw->lookup_backoff_ms);
}

static void on_lookup_timer(uv_timer_t *t) {
  struct swarm *sw = t->data;
  struct node *n = sw->node;
  struct tmsg_lookup l;
  if (sw->tc == NULL || sw->lookup_busy || sw->state == SW_SEEDING ||
      sw->state == SW_FAILED || n->stopping) {
    return;
  }
  if (sw->nsessions >= n->cfg.max_peers) {
    schedule_lookup(sw, LOOKUP_MAX_MS);
    return;
  }
  memset(&l, 0, sizeof(l));
  memcpy(l.content, sw->content, MANIFEST_ID_BYTES);
  l.want = (uint16_t)(n->cfg.max_peers - sw->nsessions);
  if (l.want > TMSG_MAX_PEERS) {
    l.want = TMSG_MAX_PEERS;
  }
  l.flags = TMSG_LOOKUP_SEEDERS_FIRST;
  memcpy(l.asker, n->id->pk, IDENTITY_PK_BYTES);
  if (tracker_client_lookup(sw->tc, &l, on_lookup, sw) != 0) {
    schedule_lookup(sw, 1000);
    return;
  }
  sw->lookup_busy = 1;
  sw->refs++;
}

static void schedule_lookup(struct swarm *sw, uint64_t ms) {
  if (sw->node->stopping) {
    return;
  }
  uv_timer_start(&sw->lookup_timer, on_lookup_timer, ms, 0);
}

/* ------------------------------------------------------------------------ */
/* Sharing */

static void emit_shared(struct swarm *sw) {
  struct share_link l;
  struct node_event ev;
  char text[LINK_MAX_CHARS + 1];
  memset(&l, 0, sizeof(l));
  memcpy(l.id, sw->content, MANIFEST_ID_BYTES);
  snprintf(l.name, sizeof(l.name), "%s", sw->m->name);
  l.size = sw->m->total_size;
  memcpy(l.tracker_key, sw->tracker_key, IDENTITY_PK_BYTES);
  l.tracker_count = sw->ntrackers;
  memcpy(l.trackers, sw->trackers, sw->ntrackers * sizeof(sw->trackers[0]));
  if (link_format(&l, text, sizeof(text)) < 0) {
    swarm_fail(sw, SHOAL_EINVAL, "cannot make a share link");
    return;
  }
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_SHARED;
  ev.link = text;
  swarm_emit(sw, &ev);
}

static void on_published(void *arg, int status,
                         const struct tracker_client_reply *r) {
  struct swarm *sw = arg;
  sw->refs--;
  sw->publish_busy = 0;
  if (sw->state == SW_FAILED || sw->state == SW_STOPPING) {
    return;
  }
  if (status != 0) {
    if (r != NULL && r->type == TMSG_ERROR && status != SHOAL_ERATE) {
      char msg[512];
      snprintf(msg, sizeof(msg), "tracker %s refused to publish %s: %s",
               tracker_client_current(sw->tc), sw->m->name, r->error.reason);
      swarm_fail(sw, status, msg);
      return;
    }
    if (!tracker_failed(sw, status, r)) {
      uv_timer_start(&sw->announce_timer, on_announce_timer, backoff_ms(sw), 0);
      sw->published = 0;
    }
    return;
  }
  sw->published = 1;
  sw->ever_met_tracker = 1;
  sw->tracker_failures = 0;
  learn_key(sw);
  emit_shared(sw);
  do_announce(sw, TMSG_EVENT_STARTED);
}

static void publish(struct swarm *sw) {
  struct tmsg_publish p;
  memset(&p, 0, sizeof(p));
  memcpy(p.content, sw->content, MANIFEST_ID_BYTES);
  p.size = sw->m->total_size;
  snprintf(p.name, sizeof(p.name), "%s", sw->m->name);
  memcpy(p.manifest_sig, sw->m->signature, IDENTITY_SIG_BYTES);
  if (tracker_client_publish(sw->tc, &p, on_published, sw) != 0) {
    swarm_fail(sw, SHOAL_ENOMEM, "cannot queue the publish request");
    return;
  }
  sw->publish_busy = 1;
  sw->refs++;
}

int node_share(struct node *n, struct manifest *m,
               const struct link_tracker *trackers, unsigned ntrackers,
               const uint8_t *tracker_key) {
  struct link_tracker usable[LINK_MAX_TRACKERS];
  unsigned nusable;
  char why[512];
  struct swarm *sw;
  int err;
  if (swarm_find(n, m->id) != NULL) {
    manifest_free(m);
    return UV_EEXIST;
  }
  if (m->file_count == 0) {
    manifest_free(m);
    return SHOAL_ESIZE; /* an empty folder: nothing to serve */
  }
  nusable = usable_trackers(n, trackers, ntrackers, usable, why, sizeof(why));
  sw = swarm_new(n, m->id, usable, nusable, tracker_key);
  if (sw == NULL) {
    manifest_free(m);
    return SHOAL_ENOMEM;
  }
  sw->is_source = 1;
  sw->m = m;
  snprintf(sw->name, sizeof(sw->name), "%s", m->name);
  sw->size_hint = m->total_size;
  if (!trackers_ready(sw, ntrackers, why)) {
    return sw->tc == NULL && nusable > 0 ? SHOAL_ENOMEM : 0;
  }
  err = storage_open_source(&sw->st, n->loop, m);
  if (err != 0) {
    char msg[600];
    sw->st = NULL;
    snprintf(msg, sizeof(msg), "cannot open the files of %s: %s", sw->name,
             shoal_strerror(err));
    swarm_fail(sw, err, msg); /* reported through the event */
    return 0;
  }
  sw->state = SW_SEEDING;
  sw->complete_ms = node_now(n);
  /* The publish's announce-timer retry path re-publishes. */
  publish(sw);
  return 0;
}

void swarm_source_changed(struct swarm *sw) {
  struct storage_change c;
  const struct manifest *m = sw->m;
  char what[256], msg[4096 + 512];
  if (sw->state != SW_SEEDING || !sw->is_source || sw->st == NULL ||
      sw->node->stopping || !storage_source_change(sw->st, &c)) {
    return;
  }
  switch (c.kind) {
  case STORAGE_CHANGE_SIZE:
    /* Exact: a line appended to a large file changes no rounded size. */
    snprintf(what, sizeof(what), "its size went from %llu to %llu bytes",
             (unsigned long long)m->files[c.file].size,
             (unsigned long long)c.size_now);
    break;
  case STORAGE_CHANGE_MTIME:
    snprintf(what, sizeof(what), "it was modified (same size, new time)");
    break;
  case STORAGE_CHANGE_HASH:
    snprintf(what, sizeof(what),
             "chunk %u no longer matches its hash (rewritten with its size "
             "and time kept)",
             c.chunk);
    break;
  case STORAGE_CHANGE_GONE:
  default:
    snprintf(what, sizeof(what), "it was removed or replaced");
    break;
  }
  snprintf(msg, sizeof(msg),
           "%s changed since it was shared: %s/%s: %s — %s is no longer "
           "served; share it again for a new link",
           sw->name, m->local_root, m->files[c.file].path, what,
           sw->content_text);
  /* Failing the swarm tells the trackers "stopped", so they no longer
   * list this peer as a seeder of the old content. */
  swarm_fail(sw, SHOAL_ECHANGED, msg);
}

/* ------------------------------------------------------------------------ */
/* Getting */

static void manifest_path(const struct swarm *sw, char *out, size_t cap) {
  snprintf(out, cap, "%s/manifests/%s", sw->node->home, sw->content_text);
}

static void resume_path(const struct swarm *sw, char *out, size_t cap) {
  snprintf(out, cap, "%s/resume/%s", sw->node->home, sw->content_text);
}

/* Keeps the verified manifest so a resumed get needs no peer to start. */
struct manifest_save {
  uv_work_t work;
  char path[4096];
  const uint8_t *bytes; /* the swarm's manifest, alive until node_free */
  size_t len;
  int err;
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

/* Keeps the verified manifest so a resumed get needs no peer to start; the
 * disk work runs on the thread pool. */
static void save_manifest(const struct swarm *sw) {
  struct manifest_save *ms = calloc(1, sizeof(*ms));
  if (ms == NULL) {
    return;
  }
  manifest_path(sw, ms->path, sizeof(ms->path));
  ms->bytes = sw->m->encoded;
  ms->len = sw->m->encoded_len;
  if (uv_queue_work(sw->node->loop, &ms->work, manifest_save_work,
                    manifest_saved) != 0) {
    free(ms);
  }
}

static struct manifest *load_manifest(const struct swarm *sw) {
  char path[4096];
  struct stat st;
  struct manifest *m = NULL;
  uint8_t *bytes;
  uint8_t id[MANIFEST_ID_BYTES];
  int fd;
  manifest_path(sw, path, sizeof(path));
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
      memcmp(id, sw->content, MANIFEST_ID_BYTES) != 0 ||
      manifest_decode(bytes, (size_t)st.st_size, &m) != 0) {
    m = NULL;
  }
  free(bytes);
  close(fd);
  return m;
}

static void on_storage_open(void *arg, int status) {
  struct swarm *sw = arg;
  struct node_event ev;
  sw->refs--;
  if (sw->state != SW_OPENING) {
    return;
  }
  if (status != 0) {
    char msg[9000];
    char final[4400];
    /* What the status does not say: sizes, or who holds the partial. */
    const char *why = sw->st != NULL ? storage_open_error(sw->st) : "";
    snprintf(final, sizeof(final), "%s/%s", sw->dir, sw->m->name);
    if (status == UV_ENOSPC && why[0] != '\0') {
      snprintf(msg, sizeof(msg),
               "not enough disk space: %s — free some space, or choose "
               "another folder with -o",
               why);
    } else if (status == UV_EBUSY && why[0] != '\0') {
      snprintf(msg, sizeof(msg),
               "%s — wait for that download to finish, or choose another "
               "folder with -o",
               why);
    } else if (status == UV_EEXIST) {
      snprintf(msg, sizeof(msg),
               "%s already exists — remove it or choose another folder "
               "with -o",
               final);
    } else if (status == UV_EACCES || status == UV_EPERM) {
      snprintf(msg, sizeof(msg),
               "permission denied writing into %s — choose a folder you "
               "can write with -o",
               sw->dir);
    } else if (status == UV_ENOSPC) {
      snprintf(msg, sizeof(msg),
               "disk full: %s needs %llu bytes in %s — free some space",
               sw->m->name, (unsigned long long)sw->m->total_size, sw->dir);
    } else {
      snprintf(msg, sizeof(msg), "cannot prepare %s: %s", final,
               shoal_strerror(status));
    }
    swarm_fail(sw, status, msg);
    return;
  }
  sw->pk = picker_new(sw->m, storage_have_map(sw->st, &(size_t){0}));
  if (sw->pk == NULL) {
    swarm_fail(sw, SHOAL_ENOMEM, "out of memory");
    return;
  }
  sw->resumed_bytes = storage_have_bytes(sw->st);
  sw->state = SW_RUNNING;
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_MANIFEST;
  ev.resumed = sw->resumed_bytes;
  swarm_emit(sw, &ev);
  swarm_storage_ready(sw);
}

/* The manifest is verified (fetched or loaded): open the storage. */
void swarm_manifest_ready(struct swarm *sw) {
  char rpath[4096];
  int err;
  if (sw->name_given && strcmp(sw->name, sw->m->name) != 0) {
    char msg[600];
    snprintf(msg, sizeof(msg),
             "the manifest does not match the link: the link names '%s', the "
             "content is '%s' — ask for a fresh link",
             sw->name, sw->m->name);
    swarm_fail(sw, SHOAL_EFORMAT, msg);
    return;
  }
  /* A link names both; its size is a promise too, 0 included (an empty
   * file is a content). A get by content ID alone has neither. */
  if (sw->name_given && sw->size_hint != sw->m->total_size) {
    swarm_fail(sw, SHOAL_ESIZE,
               "the manifest does not match the link: the sizes differ — "
               "ask for a fresh link");
    return;
  }
  snprintf(sw->name, sizeof(sw->name), "%s", sw->m->name);
  save_manifest(sw);
  resume_path(sw, rpath, sizeof(rpath));
  sw->state = SW_OPENING;
  err = storage_open_download(&sw->st, sw->node->loop, sw->m, sw->dir, rpath,
                              on_storage_open, sw);
  if (err != 0) {
    sw->st = NULL;
    sw->refs++;
    on_storage_open(sw, err);
    return;
  }
  sw->refs++;
}

void swarm_completed(struct swarm *sw) {
  struct node_event ev;
  sw->complete_ms = node_now(sw->node);
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_COMPLETE;
  ev.path = storage_final_path(sw->st);
  ev.seconds = (double)(sw->complete_ms - sw->started_ms) / 1000.0;
  uv_timer_stop(&sw->lookup_timer);
  uv_timer_stop(&sw->announce_timer);
  sw->completed_pending = 1;
  if (!sw->announce_busy) {
    do_announce(sw, TMSG_EVENT_COMPLETED);
  } else {
    schedule_announce(sw, 1000); /* after the running one */
  }
  swarm_emit(sw, &ev);
}

int node_get(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
             const char *name, uint64_t size,
             const struct link_tracker *trackers, unsigned ntrackers,
             const uint8_t *tracker_key, const char *dir, int seed) {
  struct link_tracker usable[LINK_MAX_TRACKERS];
  unsigned nusable;
  char why[512];
  struct swarm *sw;
  struct manifest *m;
  if (swarm_find(n, content) != NULL) {
    return UV_EEXIST;
  }
  nusable = usable_trackers(n, trackers, ntrackers, usable, why, sizeof(why));
  sw = swarm_new(n, content, usable, nusable, tracker_key);
  if (sw == NULL) {
    return SHOAL_ENOMEM;
  }
  sw->dir = strdup(dir);
  if (sw->dir == NULL) {
    return SHOAL_ENOMEM;
  }
  if (name != NULL) {
    snprintf(sw->name, sizeof(sw->name), "%s", name);
    sw->name_given = 1;
  } else {
    /* Until the manifest names it, logs show the content ID's start. */
    textid_short(TEXTID_CONTENT, content, sw->name);
  }
  sw->size_hint = size;
  sw->seed_after = seed;
  sw->state = SW_FETCHING;
  if (!trackers_ready(sw, ntrackers, why)) {
    return sw->tc == NULL && nusable > 0 ? SHOAL_ENOMEM : 0;
  }
  do_announce(sw, TMSG_EVENT_STARTED);
  m = load_manifest(sw);
  if (m != NULL) {
    log_info("peer", "%s: manifest from %s/manifests", m->name, n->home);
    sw->m = m;
    swarm_manifest_ready(sw);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Stopping */

static void on_handle_closed(uv_handle_t *h) {
  struct node *n = h->data;
  n->closing_handles--;
  if (n->closing_handles == 0 && n->stop_cb != NULL) {
    void (*cb)(void *) = n->stop_cb;
    n->stop_cb = NULL;
    cb(n->stop_arg);
  }
}

static void close_handle(struct node *n, uv_handle_t *h) {
  if (uv_is_closing(h)) {
    return;
  }
  h->data = n;
  n->closing_handles++;
  uv_close(h, on_handle_closed);
}

static void on_storage_closed(void *arg, int status) {
  struct swarm *sw = arg;
  struct node *n = sw->node;
  if (status != 0) {
    log_warn("peer", "%s: saving the resume record: %s", sw->name,
             shoal_strerror(status));
  }
  sw->st = NULL;
  n->closing_handles--;
  if (n->closing_handles == 0 && n->stop_cb != NULL) {
    void (*cb)(void *) = n->stop_cb;
    n->stop_cb = NULL;
    cb(n->stop_arg);
  }
}

static void close_all(struct node *n) {
  for (struct session *s = n->pending, *next; s != NULL; s = next) {
    next = s->next;
    session_close(s, "stopping");
  }
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
      next = s->next;
      session_close(s, "stopping");
    }
    if (sw->st != NULL) {
      n->closing_handles++;
      storage_close(sw->st, on_storage_closed, sw);
    }
    tracker_client_close(sw->tc);
    sw->tc = NULL;
    close_handle(n, (uv_handle_t *)&sw->announce_timer);
    close_handle(n, (uv_handle_t *)&sw->lookup_timer);
  }
  close_handle(n, (uv_handle_t *)&n->listener);
  close_handle(n, (uv_handle_t *)&n->tick);
  close_handle(n, (uv_handle_t *)&n->pump_timer);
  close_handle(n, (uv_handle_t *)&n->throttle_timer);
  close_handle(n, (uv_handle_t *)&n->have_timer);
  close_handle(n, (uv_handle_t *)&n->stop_timer);
  /* Let go of node_stop's hold. */
  n->closing_handles--;
  if (n->closing_handles == 0 && n->stop_cb != NULL) {
    void (*cb)(void *) = n->stop_cb;
    n->stop_cb = NULL;
    cb(n->stop_arg);
  }
}

static void on_stop_timer(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, stop_timer);
  int waiting = 0;
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    if (sw->announce_busy && !sw->stop_announced) {
      waiting = 1;
    }
  }
  if (waiting && node_now(n) < n->stop_deadline) {
    return; /* check again at the next repeat */
  }
  uv_timer_stop(t);
  close_all(n);
}

void node_stop(struct node *n, void (*cb)(void *arg), void *arg) {
  if (n->stopping) {
    return;
  }
  n->stopping = 1;
  n->stop_cb = cb;
  n->stop_arg = arg;
  n->stop_deadline = node_now(n) + NODE_STOP_MS;
  n->closing_handles++; /* held until close_all has closed everything */
  close_handle(n, (uv_handle_t *)&n->listener); /* no new sessions */
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    uv_timer_stop(&sw->announce_timer);
    uv_timer_stop(&sw->lookup_timer);
    /* A running announce is let finish; "stopped" goes after it
     * (on_announced). A failed swarm sent its own, or sends it now. */
    announce_stopped(sw);
    if (sw->state != SW_FAILED) {
      sw->state = SW_STOPPING;
    }
  }
  uv_timer_start(&n->stop_timer, on_stop_timer, 50, 50);
}

void node_free(struct node *n) {
  if (n == NULL) {
    return;
  }
  for (struct swarm *sw = n->swarms, *next; sw != NULL; sw = next) {
    next = sw->next;
    picker_free(sw->pk);
    manifest_free(sw->m);
    buf_free(&sw->mf);
    while (sw->partials != NULL) {
      struct partial *p = sw->partials;
      sw->partials = p->next;
      free(p->data);
      free(p->owners);
      free(p);
    }
    while (sw->suspects != NULL) {
      struct suspect *x = sw->suspects;
      sw->suspects = x->next;
      free(x->owners);
      free(x->hashes);
      free(x);
    }
    while (sw->bans != NULL) {
      struct banned *b = sw->bans;
      sw->bans = b->next;
      free(b);
    }
    free(sw->dir);
    free(sw->known);
    free(sw);
  }
  replay_guard_close(&n->hello_guard);
  free(n->plain);
  free(n->home);
  free(n);
}
