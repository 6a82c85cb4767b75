/* The peer node: the listener, the tick and the node's timers, the rate
 * limits shared by every swarm, making and removing swarms, and stopping.
 *
 * node.c is the top of the peer's core: it makes each swarm (swarm_new)
 * and its tracker schedule (announce.c), accepts connections into sessions
 * (session.c), and walks every swarm and session from its timers: the
 * tick (time limits, rechokes, progress), the upload pump, the download
 * throttle, the HAVE timer, the removals and the stop. Swarms and sessions
 * call back up only through the two hook tables it fills (node_session_up,
 * node_swarm_up).
 *
 * Removing a swarm while the node runs (node_remove) is the stop of one
 * swarm: "stopped" to its trackers (NODE_STOP_MS at most), its sessions
 * closed, its storage closed. The swarm is SW_REMOVING meanwhile: still on
 * the node's list, so nothing that walks the list meets freed memory, but
 * found by nothing and reported by nothing. The remove timer frees it once
 * nothing points at it any more: its storage closed (every storage
 * callback, chunk puts and block reads included, comes before that), its
 * requests to the tracker cancelled (answered at once) and its reference to
 * the shared tracker client dropped, its two timers closed, and no other
 * reference held (sw->refs). Sessions let go
 * of their swarm as they begin to close (swarm_detach clears s->sw), so a
 * session's close callback never sees it. Only the remove timer unlinks a
 * swarm, never a callback that may run inside a walk of the list.
 *
 * Tracker clients are the node's, one for each tracker list (hosts and
 * ports, in order) and pinned key (or none), shared by every swarm that
 * uses them (tracker_get, tracker_put): a node holding a thousand contents
 * keeps one pipelined connection to its tracker, not a thousand, which the
 * tracker's limits per address (connections, and requests a second) would
 * refuse. A client learns its tracker's key on first contact for all its
 * swarms, and moves along its list on a failure for all of them; the last
 * swarm to let go of a client closes it.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/link.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/internal.h"
#include "peer/pacing.h"

#define NODE_TICK_MS 500u
#define NODE_REMOVE_POLL_MS 10u /* how often removals are looked at */
/* Requests a shared tracker client holds at once: a swarm has at most an
 * announce and a lookup (or a publish) under way, and a removed one's
 * cancelled requests wait for their replies, so four each for 4096
 * swarms. */
#define NODE_TRACKER_PENDING 16384u
#define HELLO_GUARD_SENDERS 4096u

static void node_pump(struct node *n);
static void node_pump_now(struct node *n);
static void node_charge_download(struct node *n, size_t bytes);
static void node_have_later(struct node *n, uint64_t ms);
static void stop_release(struct node *n);
static int being_removed(const struct node *n, const uint8_t content[32]);
static void close_handle(struct node *n, uv_handle_t *h);

/* The way sessions and swarms call up (internal.h): the functions of
 * swarm.c, announce.c and this file they report to. */
static const struct session_up node_session_up = {
    .find = swarm_find,
    .attach = swarm_attach,
    .opened = swarm_session_open,
    .data_dest = swarm_data_dest,
    .message = swarm_on_message,
    .dial_failed = swarm_dial_failed,
    .detach = swarm_detach,
    .uploaded = swarm_upload_sent,
    .source_changed = swarm_source_changed,
    .charge_download = node_charge_download,
    .pump_later = node_pump,
    .pump_all = node_pump_now,
};

static const struct swarm_up node_swarm_up = {
    .failed = announce_stop,
    .completed = announce_completed,
    .lookup_soon = announce_lookup_soon,
    .have_later = node_have_later,
};

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

static void node_pump_now(struct node *n) {
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

/* Called when the upload bucket is short, or DATA waits behind manifest
 * parts: come back when it has refilled and the hold is over (the last
 * part taken pumps at once). */
static void node_pump(struct node *n) {
  uint64_t now = node_now(n), wait, ahead;
  if (n->stopping || uv_is_active((uv_handle_t *)&n->pump_timer)) {
    return;
  }
  wait = rate_wait_ms(&n->up_bucket, PWIRE_BLOCK_BYTES, now);
  ahead = pacing_ahead_wait(&n->ahead, now);
  wait = ahead > wait ? ahead : wait;
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

static void node_charge_download(struct node *n, size_t bytes) {
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
    uint64_t w;
    if (sw->state == SW_REMOVING) {
      continue;
    }
    w = swarm_haves_due(sw, now);
    if (w > 0 && (wait == 0 || w < wait)) {
      wait = w;
    }
  }
  if (wait > 0) {
    node_have_later(n, wait);
  }
}

/* A swarm has HAVEs that may go out in ms. */
static void node_have_later(struct node *n, uint64_t ms) {
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

/* How often each seeding source's files are checked: every
 * NODE_SOURCE_CHECK_MS, or less often when there are so many sources that
 * the node would check more than NODE_SOURCE_CHECKS_PER_S a second. */
uint64_t node_source_check_ms(unsigned sources) {
  uint64_t spread = (uint64_t)sources * 1000u / NODE_SOURCE_CHECKS_PER_S;
  return spread > NODE_SOURCE_CHECK_MS ? spread : NODE_SOURCE_CHECK_MS;
}

/* The loop thread's CPU time so far, in microseconds (0 where the system
 * cannot tell one thread's). */
static uint64_t loop_cpu_us(void) {
#ifdef RUSAGE_THREAD
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) == 0) {
    return (uint64_t)ru.ru_utime.tv_sec * 1000000u +
           (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000u +
           (uint64_t)ru.ru_stime.tv_usec;
  }
#endif
  return 0;
}

/* --crypto-on=auto: seals and opens DATA blocks on the pool while the
 * loop is the busy thread (pacing_crypto_on_pool), from its CPU time over
 * the last tick. */
static void choose_where_to_open(struct node *n, uint64_t now) {
  uint64_t cpu;
  if (n->cfg.crypto != NODE_CRYPTO_AUTO) {
    return; /* fixed by the option */
  }
  cpu = loop_cpu_us();
  if (now > n->loop_tick_ms && n->loop_tick_ms != 0) {
    double busy = (double)(cpu - n->loop_cpu_us) /
                  (1000.0 * (double)(now - n->loop_tick_ms));
    int pool = pacing_crypto_on_pool(n->crypto_on_pool, busy);
    if (pool != n->crypto_on_pool) {
      log_debug("peer",
                "sealing and opening DATA blocks on the %s now (the loop was "
                "busy %.0f%% of the last %.1f s)",
                pool ? "thread pool" : "loop", busy * 100.0,
                (double)(now - n->loop_tick_ms) / 1000.0);
      n->crypto_on_pool = pool;
    }
  }
  n->loop_cpu_us = cpu;
  n->loop_tick_ms = now;
}

static void on_tick(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, tick);
  uint64_t now = node_now(n);
  uint64_t check_ms;
  unsigned sources = 0;
  choose_where_to_open(n, now);
  session_count_busy(n, now);
  for_each_session(n, tick_session);
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    sources += sw->is_source && sw->state == SW_SEEDING;
  }
  check_ms = node_source_check_ms(sources);
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    struct node_event ev;
    if (sw->state == SW_FAILED || sw->state == SW_STOPPING ||
        sw->state == SW_REMOVING) {
      continue;
    }
    swarm_tick(sw, now);
    if (sw->is_source && sw->state == SW_SEEDING && sw->st != NULL &&
        now - sw->source_checked_ms >= check_ms) {
      /* Reads check what they read; this notices a change even when
       * nobody asks for the content. */
      sw->source_checked_ms = now;
      if (storage_check_source(sw->st, on_source_checked, sw) == 0) {
        sw->refs++;
      }
    }
    /* Only a tracker that lists nobody for NODE_NO_PEERS_MS ends a get:
     * while it lists peers, they are there and one of them will let us in
     * once a slot frees up (issue 18: in a swarm of 64, a third of the
     * newcomers gave up while the others were fetching). */
    if (!sw->ever_met_peer && !sw->is_source && sw->state == SW_FETCHING &&
        sw->an.ever_met_tracker &&
        now - (sw->an.listed_ms > sw->started_ms ? sw->an.listed_ms
                                                 : sw->started_ms) >
            n->cfg.no_peers_ms) {
      swarm_fail(sw, SHOAL_ETIMEDOUT,
                 "no peer has this content yet — ask its publisher to run "
                 "'shoal-peer share', then try again");
      continue;
    }
    if (sw->state == SW_SEEDING && sw->nsessions == 0 && !sw->progress_peers &&
        (n->ticks + sw->content[0]) % NODE_IDLE_PROGRESS_TICKS != 0) {
      /* A seeder nobody is connected to has nothing new to say: it says
       * so every NODE_IDLE_PROGRESS_TICKS ticks, spread over them, so a
       * daemon seeding thousands is quiet. */
      continue;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_PROGRESS;
    swarm_emit(sw, &ev);
    sw->progress_peers = sw->nsessions > 0;
  }
  n->ticks++;
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
  n->session_up = &node_session_up;
  n->swarm_up = &node_swarm_up;
  n->cfg = *c;
  n->crypto_on_pool = c->crypto == NODE_CRYPTO_POOL;
  n->cfg.home = n->home;
  n->cfg.listen = NULL;
  if (n->cfg.max_peers == 0 || n->cfg.max_peers > PICKER_MAX_PEERS) {
    n->cfg.max_peers = NODE_DEFAULT_MAX_PEERS;
  }
  if (n->cfg.no_peers_ms == 0) {
    n->cfg.no_peers_ms = NODE_NO_PEERS_MS;
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
  uv_timer_init(loop, &n->remove_timer);
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
/* Shared tracker clients */

/* A tracker client and the swarms that use it: those with a tier of these
 * trackers, in this order, each with the same key of its own or none, and
 * this pinned key for the trackers without one (pinned set) or none. */
struct tracker_share {
  struct tracker_share *next;
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t key[IDENTITY_PK_BYTES];
  int pinned;
  unsigned refs; /* swarms holding the client */
  struct tracker_client *tc;
};

static int same_trackers(const struct tracker_share *ts,
                         const struct link_tracker *trackers,
                         unsigned ntrackers) {
  if (ts->ntrackers != ntrackers) {
    return 0;
  }
  for (unsigned i = 0; i < ntrackers; i++) {
    const struct link_tracker *a = &ts->trackers[i];
    const struct link_tracker *b = &trackers[i];
    if (a->port != b->port || strcmp(a->host, b->host) != 0 ||
        a->has_key != b->has_key ||
        (a->has_key && memcmp(a->key, b->key, IDENTITY_PK_BYTES) != 0)) {
      return 0;
    }
  }
  return 1;
}

/* Which of a tier's trackers to try first: the last of them the node saw
 * working, else the first. */
static unsigned worked_first(const struct node *n,
                             const struct link_tracker *trackers,
                             unsigned ntrackers) {
  for (unsigned k = 0; k < NODE_TRACKER_WORKED; k++) {
    /* Newest first. */
    unsigned slot = (n->tracker_worked_next + NODE_TRACKER_WORKED - 1 - k) %
                    NODE_TRACKER_WORKED;
    const struct link_tracker *w = &n->tracker_worked[slot];
    if (w->port == 0) {
      continue;
    }
    for (unsigned i = 0; i < ntrackers; i++) {
      if (link_same_tracker(w, &trackers[i])) {
        return i;
      }
    }
  }
  return 0;
}

/* Remembers the tracker of ts that answered last, when its tier has a
 * choice, for a client made again later (worked_first). */
static void remember_worked(struct node *n, const struct tracker_share *ts) {
  int w = tracker_client_worked(ts->tc);
  if (w < 0 || ts->ntrackers < 2) {
    return;
  }
  n->tracker_worked[n->tracker_worked_next] = ts->trackers[w];
  n->tracker_worked_next = (n->tracker_worked_next + 1) % NODE_TRACKER_WORKED;
}

/* The share for trackers and key: one pinned to the same key, or pinned to
 * none when key is NULL. A key may also use a share pinned to none whose
 * client learned that very key on first use: from then on it checks every
 * reply against it, as a pinned one does. */
static struct tracker_share *find_share(const struct node *n,
                                        const struct link_tracker *trackers,
                                        unsigned ntrackers,
                                        const uint8_t *key) {
  struct tracker_share *learned = NULL;
  for (struct tracker_share *ts = n->tracker_shares; ts != NULL;
       ts = ts->next) {
    const uint8_t *k;
    if (!same_trackers(ts, trackers, ntrackers)) {
      continue;
    }
    if (key == NULL
            ? !ts->pinned
            : ts->pinned && memcmp(ts->key, key, IDENTITY_PK_BYTES) == 0) {
      return ts;
    }
    k = tracker_client_key(ts->tc);
    if (key != NULL && !ts->pinned && k != NULL &&
        memcmp(k, key, IDENTITY_PK_BYTES) == 0) {
      learned = ts;
    }
  }
  return learned;
}

/* A reference to the node's client for one tier of trackers
 * (1..LINK_MAX_TRACKERS, copied, with their keys) and key for those without
 * one (or NULL): the one its other swarms use, else a new one, which starts
 * with the tracker of the tier that worked last (worked_first). Returns NULL
 * for no trackers or without memory. The caller gives the reference back with
 * tracker_put. */
static struct tracker_client *tracker_get(struct node *n,
                                          const struct link_tracker *trackers,
                                          unsigned ntrackers,
                                          const uint8_t *key) {
  struct tracker_client_config c;
  struct tracker_share *ts;
  if (ntrackers == 0) {
    return NULL;
  }
  ts = find_share(n, trackers, ntrackers, key);
  if (ts != NULL) {
    ts->refs++;
    return ts->tc;
  }
  ts = calloc(1, sizeof(*ts));
  if (ts == NULL) {
    return NULL;
  }
  if (ntrackers > LINK_MAX_TRACKERS) {
    ntrackers = LINK_MAX_TRACKERS;
  }
  memcpy(ts->trackers, trackers, ntrackers * sizeof(*trackers));
  ts->ntrackers = ntrackers;
  if (key != NULL) {
    memcpy(ts->key, key, IDENTITY_PK_BYTES);
    ts->pinned = 1;
  }
  memset(&c, 0, sizeof(c));
  c.loop = n->loop;
  c.id = n->id;
  c.trackers = ts->trackers;
  c.ntrackers = ts->ntrackers;
  c.tracker_key = key;
  c.first = worked_first(n, ts->trackers, ts->ntrackers);
  c.seq = &n->seq;
  /* The node listens on one family or both, the same for every swarm, so
   * it is no part of a share's key. */
  c.family = n->accepts_v4 && n->accepts_v6 ? 0
             : n->accepts_v6                ? AF_INET6
                                            : AF_INET;
  c.max_pending = NODE_TRACKER_PENDING;
  c.rate = n->cfg.tracker_rate;
  c.burst = n->cfg.tracker_burst;
  if (tracker_client_new(&ts->tc, &c) != 0) {
    free(ts);
    return NULL;
  }
  ts->refs = 1;
  ts->next = n->tracker_shares;
  n->tracker_shares = ts;
  return ts->tc;
}

/* Gives back a reference tracker_get returned (NULL: none); the last one
 * closes the client. */
static void tracker_put(struct node *n, struct tracker_client *tc) {
  struct tracker_share **pp, *ts;
  if (tc == NULL) {
    return;
  }
  for (pp = &n->tracker_shares; *pp != NULL; pp = &(*pp)->next) {
    if ((*pp)->tc == tc) {
      break;
    }
  }
  ts = *pp;
  assert(ts != NULL && ts->refs > 0);
  if (--ts->refs > 0) {
    return;
  }
  *pp = ts->next;
  remember_worked(n, ts);
  tracker_client_close(ts->tc);
  free(ts);
}

/* Gives back every client announce_release let go of. */
static void tracker_put_all(struct node *n, struct swarm *sw) {
  struct tracker_client *tcs[LINK_MAX_TIERS];
  unsigned k = announce_release(sw, tcs);
  for (unsigned i = 0; i < k; i++) {
    tracker_put(n, tcs[i]);
  }
}

/* Makes sw's schedule over trackers (the usable ones, nusable), with the
 * node's client for each tier (announce_tiers). */
static void swarm_trackers(struct node *n, struct swarm *sw,
                           const struct link_tracker *usable, unsigned nusable,
                           const uint8_t *key) {
  struct link_tracker sorted[LINK_MAX_TRACKERS];
  struct tracker_client *tcs[LINK_MAX_TIERS];
  unsigned first[LINK_MAX_TIERS];
  unsigned count[LINK_MAX_TIERS];
  unsigned ntiers = announce_tiers(usable, nusable, sorted, first, count);
  unsigned total = ntiers > 0 ? first[ntiers - 1] + count[ntiers - 1] : 0;
  for (unsigned i = 0; i < ntiers; i++) {
    tcs[i] = tracker_get(n, sorted + first[i], count[i], key);
  }
  announce_init(sw, sorted, total, key, tcs);
}

/* Whether every tier of sw got its client. */
static int swarm_has_clients(const struct swarm *sw) {
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    if (sw->an.tier[i].tc == NULL) {
      return 0;
    }
  }
  return 1;
}

/* Closes every client left, whoever holds it (the node stops or is
 * freed). */
static void tracker_close_all(struct node *n) {
  while (n->tracker_shares != NULL) {
    struct tracker_share *ts = n->tracker_shares;
    n->tracker_shares = ts->next;
    tracker_client_close(ts->tc);
    free(ts);
  }
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

int node_share(struct node *n, struct manifest *m,
               const struct link_tracker *trackers, unsigned ntrackers,
               const uint8_t *tracker_key) {
  struct link_tracker usable[LINK_MAX_TRACKERS];
  unsigned nusable;
  char why[512];
  struct swarm *sw;
  if (swarm_find(n, m->id) != NULL) {
    manifest_free(m);
    return UV_EEXIST;
  }
  if (being_removed(n, m->id)) {
    manifest_free(m);
    return UV_EBUSY;
  }
  if (m->file_count == 0) {
    manifest_free(m);
    return SHOAL_ESIZE; /* an empty folder: nothing to serve */
  }
  nusable = usable_trackers(n, trackers, ntrackers, usable, why, sizeof(why));
  sw = swarm_new(n, m->id);
  if (sw == NULL) {
    manifest_free(m);
    return SHOAL_ENOMEM;
  }
  swarm_trackers(n, sw, usable, nusable, tracker_key);
  sw->is_source = 1;
  sw->m = m;
  snprintf(sw->name, sizeof(sw->name), "%s", m->name);
  sw->size_hint = m->total_size;
  if (!announce_ready(sw, ntrackers, why)) {
    return !swarm_has_clients(sw) && nusable > 0 ? SHOAL_ENOMEM : 0;
  }
  if (swarm_open_source(sw) == 0) {
    announce_share(sw);
  }
  return 0;
}

int node_get(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
             const char *name, uint64_t size,
             const struct link_tracker *trackers, unsigned ntrackers,
             const uint8_t *tracker_key, const char *dir, int seed) {
  struct link_tracker usable[LINK_MAX_TRACKERS];
  unsigned nusable;
  char why[512];
  struct swarm *sw;
  if (swarm_find(n, content) != NULL) {
    return UV_EEXIST;
  }
  if (being_removed(n, content)) {
    return UV_EBUSY;
  }
  nusable = usable_trackers(n, trackers, ntrackers, usable, why, sizeof(why));
  sw = swarm_new(n, content);
  if (sw == NULL) {
    return SHOAL_ENOMEM;
  }
  swarm_trackers(n, sw, usable, nusable, tracker_key);
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
  swarm_set_state(sw, SW_FETCHING);
  if (announce_ready(sw, ntrackers, why)) {
    announce_get(sw);
  } else if (ntrackers > 0 || sw->state != SW_FETCHING) {
    return !swarm_has_clients(sw) && nusable > 0 ? SHOAL_ENOMEM : 0;
  }
  /* With no tracker at all, the peers come from node_connect and peer
   * exchange. */
  swarm_load_manifest(sw);
  return 0;
}

int node_connect(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
                 const struct sockaddr *sa) {
  struct swarm *sw = swarm_find(n, content);
  if (sw == NULL) {
    return SHOAL_ENOENT;
  }
  return pex_add_peer(sw, sa);
}

/* ------------------------------------------------------------------------ */
/* The daemon's controls */

/* The swarm of content the node lists: the live one, else a failed one
 * (a failed swarm stays listed until removed); never one being removed. */
static struct swarm *listed_swarm(struct node *n, const uint8_t content[32]) {
  struct swarm *sw = swarm_find(n, content);
  if (sw != NULL) {
    return sw;
  }
  for (sw = n->swarms; sw != NULL; sw = sw->next) {
    if (memcmp(sw->content, content, MANIFEST_ID_BYTES) == 0 &&
        sw->state != SW_REMOVING) {
      return sw;
    }
  }
  return NULL;
}

/* Whether a swarm of content is being removed: until its callback, the
 * content is not shared or got again, since the old swarm's "stopped" could
 * reach a tracker after the new one's "started", and its storage still
 * holds the partial copy. */
static int being_removed(const struct node *n, const uint8_t content[32]) {
  for (const struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    if (sw->state == SW_REMOVING &&
        memcmp(sw->content, content, MANIFEST_ID_BYTES) == 0) {
      return 1;
    }
  }
  return 0;
}

int node_swarm_info(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
                    struct node_swarm_info *out) {
  struct swarm *sw = listed_swarm(n, content);
  if (sw == NULL) {
    memset(out, 0, sizeof(*out));
    return SHOAL_ENOENT;
  }
  swarm_info(sw, out);
  return 0;
}

void node_set_rates(struct node *n, uint64_t upload_rate,
                    uint64_t download_rate) {
  uint64_t now = node_now(n);
  rate_set(&n->up_bucket, upload_rate, now);
  rate_set(&n->down_bucket, download_rate, now);
  n->cfg.upload_rate = upload_rate;
  n->cfg.download_rate = download_rate;
  if (n->stopping) {
    return;
  }
  if (n->throttled) {
    /* Reading waits for the bucket: ask it again at once, so a raised or
     * removed limit resumes every session now (a lowered one waits
     * longer). */
    uv_timer_start(&n->throttle_timer, on_throttle, 0, 0);
  }
  if (uv_is_active((uv_handle_t *)&n->pump_timer)) {
    /* Uploads wait for tokens: the same, through the pump. */
    uv_timer_stop(&n->pump_timer);
    node_pump(n);
  }
}

static void on_remove_storage_closed(void *arg, int status) {
  struct swarm *sw = arg;
  if (status != 0) {
    log_warn("peer", "%s: saving the resume record: %s", sw->name,
             shoal_strerror(status));
  }
  sw->st = NULL;
  sw->remove_closing--;
}

static void on_remove_handle_closed(uv_handle_t *h) {
  struct swarm *sw = h->data;
  sw->remove_closing--;
}

static void on_remove_tier_timer_closed(uv_handle_t *h) {
  struct announce_tier *at = h->data;
  at->sw->remove_closing--;
}

/* Lets go of what a removed swarm holds on the loop besides its storage:
 * its tracker client (every request still due is answered at once with
 * SHOAL_ECANCELED, which drops its reference; the client goes on for the
 * other swarms) and its two timers. */
static void remove_release(struct swarm *sw) {
  if (sw->remove_released) {
    return;
  }
  sw->remove_released = 1;
  tracker_put_all(sw->node, sw);
  /* The timers' data is the swarm or its tier, whose swarm
   * on_remove_handle_closed needs (announce_init). */
  sw->remove_closing += 1 + sw->an.ntiers;
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    uv_close((uv_handle_t *)&sw->an.tier[i].announce_timer,
             on_remove_tier_timer_closed);
  }
  uv_close((uv_handle_t *)&sw->an.lookup_timer, on_remove_handle_closed);
}

/* Whether nothing points at a removed swarm any more. */
static int remove_done(const struct swarm *sw) {
  return sw->remove_released && sw->remove_closing == 0 && sw->refs == 0 &&
         sw->st == NULL;
}

/* Moves every removal on: lets go of a swarm's tracker client once its
 * "stopped" was answered or its time is up, and frees the swarms nothing
 * points at, calling each one's callback. A callback may call into the
 * node (share, get, remove, stop), so the walk starts over after each. */
static void on_remove_timer(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, remove_timer);
  int removing;
  for (;;) {
    struct swarm **pp, *done = NULL;
    removing = 0;
    for (pp = &n->swarms; *pp != NULL; pp = &(*pp)->next) {
      struct swarm *sw = *pp;
      if (sw->state != SW_REMOVING) {
        continue;
      }
      if (!announce_waiting(sw) || node_now(n) >= sw->remove_deadline) {
        remove_release(sw);
      }
      if (remove_done(sw)) {
        *pp = sw->next;
        done = sw;
        break;
      }
      removing++;
    }
    if (done == NULL) {
      break;
    }
    {
      void (*cb)(void *) = done->remove_cb;
      void *arg = done->remove_arg;
      log_info("peer", "%s: removed", done->name);
      announce_free(&done->an);
      swarm_free(done);
      if (cb != NULL) {
        cb(arg);
      }
    }
  }
  if (removing == 0) {
    uv_timer_stop(t);
    if (n->remove_hold) {
      /* The node is stopping and waited for the removals (close_all). */
      n->remove_hold = 0;
      close_handle(n, (uv_handle_t *)t);
      stop_release(n);
    }
  }
}

int node_remove(struct node *n, const uint8_t content[MANIFEST_ID_BYTES],
                void (*cb)(void *arg), void *arg) {
  struct swarm *sw;
  if (n->stopping) {
    return SHOAL_ECANCELED;
  }
  sw = listed_swarm(n, content);
  if (sw == NULL) {
    return SHOAL_ENOENT;
  }
  log_info("peer", "%s: removing", sw->name);
  /* "stopped" is made while the swarm still says what it was (seeding or
   * not); a running announce is let finish, and "stopped" follows it. */
  announce_stop(sw);
  swarm_set_state(sw, SW_REMOVING);
  sw->remove_cb = cb;
  sw->remove_arg = arg;
  sw->remove_deadline = node_now(n) + NODE_STOP_MS;
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next;
    session_close(s, "removed");
  }
  if (sw->st != NULL) {
    /* Every request the storage took gets its callback first: opens
     * (SHOAL_ECANCELED), puts, reads, checks and the finish, all of which
     * see a removed swarm and do nothing more. */
    sw->remove_closing++;
    storage_close(sw->st, on_remove_storage_closed, sw);
  }
  uv_timer_start(&n->remove_timer, on_remove_timer, NODE_REMOVE_POLL_MS,
                 NODE_REMOVE_POLL_MS);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Stopping */

/* One of what node_stop's callback waits for is done (closing_handles
 * counts them): the last one calls it. */
static void stop_release(struct node *n) {
  n->closing_handles--;
  if (n->closing_handles == 0 && n->stop_cb != NULL) {
    void (*cb)(void *) = n->stop_cb;
    n->stop_cb = NULL;
    cb(n->stop_arg);
  }
}

static void on_handle_closed(uv_handle_t *h) {
  stop_release(h->data);
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
  stop_release(n);
}

static void close_all(struct node *n) {
  for (struct session *s = n->pending, *next; s != NULL; s = next) {
    next = s->next;
    session_close(s, "stopping");
  }
  int removing = 0;
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
      next = s->next;
      session_close(s, "stopping");
    }
    if (sw->state == SW_REMOVING) {
      /* Its removal closes its storage and handles and frees it; the
       * node's callback waits for that (remove_hold). */
      remove_release(sw);
      removing = 1;
      continue;
    }
    if (sw->st != NULL) {
      n->closing_handles++;
      storage_close(sw->st, on_storage_closed, sw);
    }
    tracker_put_all(n, sw);
    for (unsigned i = 0; i < sw->an.ntiers; i++) {
      close_handle(n, (uv_handle_t *)&sw->an.tier[i].announce_timer);
    }
    close_handle(n, (uv_handle_t *)&sw->an.lookup_timer);
  }
  /* Every swarm gave its client back; none is left open. */
  tracker_close_all(n);
  close_handle(n, (uv_handle_t *)&n->listener);
  close_handle(n, (uv_handle_t *)&n->tick);
  close_handle(n, (uv_handle_t *)&n->pump_timer);
  close_handle(n, (uv_handle_t *)&n->throttle_timer);
  close_handle(n, (uv_handle_t *)&n->have_timer);
  close_handle(n, (uv_handle_t *)&n->stop_timer);
  if (removing) {
    /* The remove timer goes on until the last removal is done, then
     * closes itself and lets go of this hold. */
    n->remove_hold = 1;
    n->closing_handles++;
  } else {
    close_handle(n, (uv_handle_t *)&n->remove_timer);
  }
  /* Let go of node_stop's hold. */
  stop_release(n);
}

/* Says "stopped" for every swarm that owes it, the swarms of each tracker
 * client together, in announces of up to TMSG_MAX_ANNOUNCE_ITEMS contents:
 * a node of a thousand contents stops with 16 requests, within the
 * tracker's rate limit, not with a thousand. Runs when the node begins to
 * stop and at each turn of its stop timer, for the swarms whose announce
 * was under way and has been answered since. */
static void stop_batches(struct node *n) {
  struct announce_tier *group[TMSG_MAX_ANNOUNCE_ITEMS];
  for (struct tracker_share *ts = n->tracker_shares; ts != NULL;
       ts = ts->next) {
    unsigned k = 0;
    for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
      struct announce_tier *at = NULL;
      for (unsigned i = 0; i < sw->an.ntiers; i++) {
        if (sw->an.tier[i].tc == ts->tc) {
          at = &sw->an.tier[i];
        }
      }
      if (at == NULL || !announce_tier_owes_stopped(at)) {
        continue;
      }
      group[k++] = at;
      if (k == TMSG_MAX_ANNOUNCE_ITEMS) {
        (void)announce_stopped_batch(group, k);
        k = 0;
      }
    }
    if (k > 0) {
      (void)announce_stopped_batch(group, k);
    }
  }
}

static void on_stop_timer(uv_timer_t *t) {
  struct node *n = container_of(t, struct node, stop_timer);
  int waiting = 0;
  stop_batches(n);
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    if (announce_waiting(sw) || announce_owes_stopped(sw)) {
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
    /* One being removed says "stopped" alone, and its removal goes on
     * freeing it. The others' requests not yet written are taken back; a
     * running announce is let finish, and "stopped" goes after it. */
    if (sw->state == SW_REMOVING) {
      announce_stop(sw);
      continue;
    }
    announce_halt(sw);
    if (sw->state != SW_FAILED) {
      swarm_set_state(sw, SW_STOPPING);
    }
  }
  /* A failed swarm that has not said "stopped" yet says it with the
   * others. */
  stop_batches(n);
  uv_timer_start(&n->stop_timer, on_stop_timer, 50, 50);
}

void node_free(struct node *n) {
  if (n == NULL) {
    return;
  }
  for (struct swarm *sw = n->swarms, *next; sw != NULL; sw = next) {
    next = sw->next;
    announce_free(&sw->an);
    swarm_free(sw);
  }
  tracker_close_all(n);
  replay_guard_close(&n->hello_guard);
  free(n->plain);
  free(n->home);
  free(n);
}
