/* The tracker schedule of a swarm: publishing, announcing and looking up
 * peers, with the waiting between tries.
 *
 * Trackers come in tiers (link.h), and the schedule below runs for each
 * tier on its own, over the tier's tracker client, which moves among the
 * tier's trackers (tracker_client.h): each tier publishes, announces, says
 * "completed" and "stopped", and backs off by itself, so that one tier
 * that is down delays nothing of the others. Lookups ask one tier at a
 * time: the tier that last listed someone new, else the next (at once
 * after a failure while some tier has not been tried in this round). A
 * share says it is shared, with its link, once a tier has it and every
 * tier's key is known; a share whose tier never answered and whose key it
 * never learned fails, since it cannot print that tier's key. A swarm
 * that never met a tracker or a peer gives up once every tier has.
 *
 * A share of our own content (this node's identity is the manifest's
 * publisher) publishes first, then announces "started" as a seeder; a
 * share of someone else's content (a copy seeded again) is never
 * published, since its catalog entry is the publisher's (the tracker
 * would refuse it), and announces "started" as a seeder at once; a get
 * announces "started" at once. Each successful announce brings the next
 * after the tracker's interval (capped by --interval-cap, never under its
 * minimum) times a random factor in [0.9, 1.0] (announce_next_ms), so
 * that a node holding many contents, or many nodes started together, do
 * not announce in bursts: each swarm drifts on its own. The first
 * re-announce after "started" takes a factor in [0.1, 1.0]
 * (announce_first_next_ms): contents that started in a burst (a thousand
 * shares added at once) are spread over the whole interval from their
 * second round on. A swarm that is not
 * seeding looks up peers while it has fewer than it may (1 s after a lookup
 * that found someone new, doubling to 30 s when it did not) and dials the ones
 * it has not met. A tracker that cannot be reached is retried with backoff (1 s
 * doubling to 60 s, times a random factor in [0.5, 1.0] so that the swarms
 * of a shared tracker client, which all fail together, do not retry
 * together: announce_retry_ms) while the swarm goes on with the peers it
 * knows, and redials those it knew; a swarm that never reached any tracker and
 * never met a peer gives up after NODE_TRACKER_TRIES attempts per tracker (a
 * share likewise, since it cannot print a link without its tracker). On
 * completion "completed" goes out, and "stopped" once when the swarm fails
 * or the node stops.
 *
 * When the node stops, its swarms say "stopped" together: node.c takes
 * back their requests not yet written (announce_halt) and sends "stopped"
 * for the swarms of each tracker client in announces of up to
 * TMSG_MAX_ANNOUNCE_ITEMS contents (announce_stopped_batch), so that a
 * thousand swarms stop with 16 requests, within the tracker's rate limit
 * and NODE_STOP_MS, rather than with a thousand.
 *
 * This file calls down into swarm.c (to fail a swarm, emit its events, ask
 * whether a key is banned) and session.c (to dial); node.c starts, stops
 * and closes each swarm's schedule, and swarm.c tells it of a completion
 * or a failure (announce.h).
 */
#include "peer/announce.h"

#include <arpa/inet.h>
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/link.h"
#include "common/log.h"
#include "common/tmsg.h"
#include "peer/internal.h"

#define LOOKUP_MIN_MS 1000u
#define LOOKUP_MAX_MS 30000u /* unless node_config's lookup_max_ms says */
#define RETRY_MAX_MS 60000u

/* "stopped" for several swarms of one tracker client, in one announce. */
struct stop_batch {
  struct tracker_client *tc; /* the tiers' client, for the failure's text */
  unsigned count;
  struct announce_tier *at[TMSG_MAX_ANNOUNCE_ITEMS]; /* NULL once released */
};

static void schedule_announce(struct announce_tier *at, uint64_t ms);
static void schedule_lookup(struct swarm *sw, uint64_t ms);
static void do_announce(struct announce_tier *at, uint8_t event);
static void say_stopped(struct announce_tier *at);
static void publish(struct announce_tier *at);
static void emit_shared(struct swarm *sw);
static uint64_t left_bytes(const struct swarm *sw);

/* The longest wait between two lookups of n's swarms. */
static uint64_t lookup_max_ms(const struct node *n) {
  return n->cfg.lookup_max_ms != 0 ? n->cfg.lookup_max_ms : LOOKUP_MAX_MS;
}

/* Whether this node's identity published sw's content: only then does a
 * share go into the trackers' catalogs. */
static int we_publish(const struct swarm *sw) {
  return sw->m != NULL &&
         memcmp(sw->m->publisher, sw->node->id->pk, IDENTITY_PK_BYTES) == 0;
}

/* Whether sw's schedule is over: the swarm failed, or it is going with
 * its node or on its own; only "stopped" may still go out. */
static int schedule_over(const struct swarm *sw) {
  return sw->node->stopping || sw->state == SW_FAILED ||
         sw->state == SW_STOPPING || sw->state == SW_REMOVING;
}

/* The interval (capped, or a minute when the tracker gave none) times
 * lo_permille + a draw below span, in thousandths; never under the
 * tracker's minimum. */
static uint64_t interval_times(uint32_t interval_s, uint32_t cap_s,
                               uint32_t min_interval_s, uint32_t lo_permille,
                               uint32_t span,
                               uint32_t (*uniform)(uint32_t upper)) {
  uint64_t s = interval_s != 0 ? interval_s : 60;
  uint64_t ms;
  if (cap_s != 0 && s > cap_s) {
    s = cap_s;
  }
  ms = s * 1000u * (lo_permille + uniform(span)) / 1000u;
  if (ms < (uint64_t)min_interval_s * 1000u) {
    ms = (uint64_t)min_interval_s * 1000u;
  }
  return ms;
}

uint64_t announce_first_next_ms(uint32_t interval_s, uint32_t cap_s,
                                uint32_t min_interval_s,
                                uint32_t (*uniform)(uint32_t upper)) {
  /* A factor of 0.100 to 1.000. */
  return interval_times(interval_s, cap_s, min_interval_s, 100, 901, uniform);
}

uint64_t announce_next_ms(uint32_t interval_s, uint32_t cap_s,
                          uint32_t min_interval_s,
                          uint32_t (*uniform)(uint32_t upper)) {
  /* A factor of 0.900 to 1.000 in steps of a thousandth. */
  return interval_times(interval_s, cap_s, min_interval_s, 900, 101, uniform);
}

unsigned announce_tiers(const struct link_tracker *in, unsigned n,
                        struct link_tracker *out,
                        unsigned first[LINK_MAX_TIERS],
                        unsigned count[LINK_MAX_TIERS]) {
  unsigned ntiers = 0;
  unsigned o = 0;
  int last = -1;
  if (n > LINK_MAX_TRACKERS) {
    n = LINK_MAX_TRACKERS;
  }
  /* Each pass takes the lowest tier number above the last one taken. */
  while (ntiers < LINK_MAX_TIERS) {
    int next = -1;
    for (unsigned i = 0; i < n; i++) {
      if ((int)in[i].tier > last && (next < 0 || (int)in[i].tier < next)) {
        next = in[i].tier;
      }
    }
    if (next < 0) {
      break;
    }
    first[ntiers] = o;
    count[ntiers] = 0;
    for (unsigned i = 0; i < n; i++) {
      if ((int)in[i].tier == next) {
        out[o] = in[i];
        out[o].tier = (uint8_t)ntiers;
        o++;
        count[ntiers]++;
      }
    }
    ntiers++;
    last = next;
  }
  return ntiers;
}

static void on_announce_timer(uv_timer_t *t);

void announce_init(struct swarm *sw, const struct link_tracker *trackers,
                   unsigned ntrackers, const uint8_t *key,
                   struct tracker_client *const *tcs) {
  struct node *n = sw->node;
  struct announce *a = &sw->an;
  struct link_tracker sorted[LINK_MAX_TRACKERS];
  unsigned first[LINK_MAX_TIERS];
  unsigned count[LINK_MAX_TIERS];
  a->ntiers = announce_tiers(trackers, ntrackers, sorted, first, count);
  a->ntrackers = 0;
  for (unsigned i = 0; i < a->ntiers; i++) {
    struct announce_tier *at = &a->tier[i];
    at->sw = sw;
    at->ntrackers = count[i];
    a->ntrackers += count[i];
    memcpy(at->trackers, sorted + first[i], count[i] * sizeof(*sorted));
    at->have_key = 1;
    for (unsigned j = 0; j < at->ntrackers; j++) {
      struct link_tracker *t = &at->trackers[j];
      if (!t->has_key && key != NULL) {
        memcpy(t->key, key, IDENTITY_PK_BYTES);
        t->has_key = 1;
      }
      at->have_key &= t->has_key;
    }
    if (at->have_key) {
      memcpy(at->key, at->trackers[0].key, IDENTITY_PK_BYTES);
    }
    uv_timer_init(n->loop, &at->announce_timer);
    at->announce_timer.data = at;
    at->tc = tcs[i];
  }
  a->lookup_backoff_ms = LOOKUP_MIN_MS;
  uv_timer_init(n->loop, &a->lookup_timer);
  a->lookup_timer.data = sw;
}

/* Takes the tier out of the batch its "stopped" went in: the batch's
 * reply, or its cancellation, no longer speaks of it. */
static void leave_batch(struct announce_tier *at) {
  struct stop_batch *b = at->stop_batch;
  if (b == NULL) {
    return;
  }
  for (unsigned i = 0; i < b->count; i++) {
    if (b->at[i] == at) {
      b->at[i] = NULL;
    }
  }
  at->stop_batch = NULL;
  at->announce_busy = 0;
  at->stop_announced = 1;
  at->sw->refs--;
}

unsigned announce_release(struct swarm *sw,
                          struct tracker_client *out[LINK_MAX_TIERS]) {
  unsigned k = 0;
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    struct announce_tier *at = &sw->an.tier[i];
    struct tracker_client *tc = at->tc;
    /* Cleared first: the callbacks below see no client to ask again. */
    at->tc = NULL;
    leave_batch(at);
    tracker_client_cancel(tc, at);
    if (tc != NULL) {
      out[k++] = tc;
    }
  }
  return k;
}

void announce_free(struct announce *a) {
  free(a->known);
  a->known = NULL;
}

/* Whether a tier still owes its publish: a share of our own publishes to
 * every tier before it announces there. */
static int tier_publishes(const struct announce_tier *at) {
  const struct swarm *sw = at->sw;
  return sw->is_source && we_publish(sw) && !sw->an.published && !at->published;
}

void announce_share(struct swarm *sw) {
  if (!we_publish(sw)) {
    log_info("peer",
             "%s: seeding someone else's content: announced, not "
             "published",
             sw->name);
  }
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    struct announce_tier *at = &sw->an.tier[i];
    if (tier_publishes(at)) {
      /* The publish's announce-timer retry path re-publishes. */
      publish(at);
    } else {
      do_announce(at, TMSG_EVENT_STARTED);
    }
  }
}

void announce_get(struct swarm *sw) {
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    do_announce(&sw->an.tier[i], TMSG_EVENT_STARTED);
  }
}

void announce_completed(struct swarm *sw) {
  uv_timer_stop(&sw->an.lookup_timer);
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    struct announce_tier *at = &sw->an.tier[i];
    uv_timer_stop(&at->announce_timer);
    at->completed_pending = 1;
    if (!at->announce_busy) {
      do_announce(at, TMSG_EVENT_COMPLETED);
    } else {
      schedule_announce(at, 1000); /* after the running one */
    }
  }
}

void announce_stop(struct swarm *sw) {
  uv_timer_stop(&sw->an.lookup_timer);
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    uv_timer_stop(&sw->an.tier[i].announce_timer);
    /* The trackers list us until we say we stopped: say it now, so that
     * they send nobody to a swarm that is gone. An announce under way is
     * let finish; its reply sends "stopped" (on_announced). */
    say_stopped(&sw->an.tier[i]);
  }
}

int announce_waiting(const struct swarm *sw) {
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    const struct announce_tier *at = &sw->an.tier[i];
    if (at->announce_busy && !at->stop_announced) {
      return 1;
    }
  }
  return 0;
}

int announce_tier_owes_stopped(const struct announce_tier *at) {
  return at->tc != NULL && !at->stop_sent && at->announced_once &&
         !at->announce_busy && at->sw->state != SW_REMOVING;
}

int announce_owes_stopped(const struct swarm *sw) {
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    if (announce_tier_owes_stopped(&sw->an.tier[i])) {
      return 1;
    }
  }
  return 0;
}

void announce_halt(struct swarm *sw) {
  uv_timer_stop(&sw->an.lookup_timer);
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    struct announce_tier *at = &sw->an.tier[i];
    uv_timer_stop(&at->announce_timer);
    if (!at->stop_sent) {
      /* Its callbacks see the schedule over and clear the busy flags; an
       * announce of ours already written is let finish (its reply leaves
       * the tier owing "stopped"). */
      (void)tracker_client_withdraw(at->tc, at);
    }
  }
}

static void on_stopped_batch(void *arg, int status,
                             const struct tracker_client_reply *r) {
  struct stop_batch *b = arg;
  unsigned live = 0;
  for (unsigned i = 0; i < b->count; i++) {
    struct announce_tier *at = b->at[i];
    if (at == NULL) {
      continue;
    }
    live++;
    at->stop_batch = NULL;
    at->announce_busy = 0;
    at->stop_announced = 1;
    at->sw->refs--;
  }
  if (status != 0 && live > 0) {
    char msg[TRACKER_CLIENT_DESCRIBE_BYTES];
    log_info("peer", "\"stopped\" for %u contents: %s", live,
             tracker_client_describe(b->tc, status, r, msg, sizeof(msg)));
  }
  free(b);
}

unsigned announce_stopped_batch(struct announce_tier *const *ats, unsigned n) {
  struct tmsg_announce a;
  unsigned made = 0;
  for (unsigned i = 0; i < n;) {
    unsigned k =
        n - i < TMSG_MAX_ANNOUNCE_ITEMS ? n - i : TMSG_MAX_ANNOUNCE_ITEMS;
    struct stop_batch *b = calloc(1, sizeof(*b));
    if (b == NULL) {
      break;
    }
    memset(&a, 0, sizeof(a));
    a.port = ats[i]->sw->node->port;
    a.event = TMSG_EVENT_STOPPED;
    a.count = (uint16_t)k;
    b->count = k;
    b->tc = ats[i]->tc;
    for (unsigned j = 0; j < k; j++) {
      struct announce_tier *at = ats[i + j];
      struct swarm *sw = at->sw;
      assert(announce_tier_owes_stopped(at) && at->tc == ats[i]->tc);
      memcpy(a.items[j].content, sw->content, MANIFEST_ID_BYTES);
      a.items[j].role = (sw->is_source || sw->state == SW_SEEDING)
                            ? TMSG_ROLE_SEEDING
                            : TMSG_ROLE_DOWNLOADING;
      a.items[j].left = left_bytes(sw);
      b->at[j] = at;
    }
    if (tracker_client_announce(ats[i]->tc, &a, on_stopped_batch, b) != 0) {
      /* The rest still owe it; the node asks again (announce_owes_stopped). */
      free(b);
      break;
    }
    for (unsigned j = 0; j < k; j++) {
      struct announce_tier *at = ats[i + j];
      at->announce_event = TMSG_EVENT_STOPPED;
      at->announce_busy = 1;
      at->stop_sent = 1;
      at->stop_batch = b;
      at->sw->refs++;
    }
    made++;
    i += k;
  }
  return made;
}

int announce_ready(struct swarm *sw, unsigned ntrackers, const char *why) {
  struct node_event ev;
  if (sw->an.ntrackers == 0 && ntrackers > 0) {
    swarm_fail(sw, UV_EAFNOSUPPORT, why);
    return 0;
  }
  if (sw->an.ntiers == 0) {
    return 0;
  }
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    if (sw->an.tier[i].tc == NULL) {
      return 0; /* out of memory */
    }
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

static void learn_key(struct announce_tier *at) {
  const uint8_t *k = at->tc != NULL ? tracker_client_key(at->tc) : NULL;
  if (k != NULL && !at->have_key) {
    struct node_event ev;
    memcpy(at->key, k, IDENTITY_PK_BYTES);
    at->have_key = 1;
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_TRACKER;
    ev.key = at->key;
    swarm_emit(at->sw, &ev);
  }
}

/* Whether a tier never answered and has been tried as often as a swarm
 * tries a tier it never met: NODE_TRACKER_TRIES times each tracker. */
static int tier_given_up(const struct announce_tier *at) {
  return !at->ever_answered &&
         at->failures >=
             NODE_TRACKER_TRIES * (at->ntrackers ? at->ntrackers : 1);
}

/* A tier's tracker failed us. Returns 1 when the swarm gave up. */
static int tracker_failed(struct announce_tier *at, int status,
                          const struct tracker_client_reply *r) {
  struct swarm *sw = at->sw;
  char msg[TRACKER_CLIENT_DESCRIBE_BYTES];
  /* Until a tracker or a peer has answered, these tries end in the
   * swarm's failure, which the user sees once; after that, a tracker
   * that went away is worth a warning each time. */
  int may_fail = !sw->an.ever_met_tracker && !sw->ever_met_peer;
  int all_given_up = 1;
  at->failures++;
  tracker_client_describe(at->tc, status, r, msg, sizeof(msg));
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    all_given_up &= tier_given_up(&sw->an.tier[i]);
  }
  /* A share's link names every tier with its key: one whose key it could
   * not learn leaves it without a link to print. */
  if ((may_fail && all_given_up) ||
      (sw->is_source && !sw->an.shared && !at->have_key && tier_given_up(at))) {
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

uint64_t announce_retry_ms(unsigned failures,
                           uint32_t (*uniform)(uint32_t upper)) {
  uint64_t ms = 1000;
  for (unsigned i = 1; i < failures && ms < RETRY_MAX_MS; i++) {
    ms *= 2;
  }
  if (ms > RETRY_MAX_MS) {
    ms = RETRY_MAX_MS;
  }
  /* A factor of 0.500 to 1.000 in steps of a thousandth. */
  return ms * (500u + uniform(501)) / 1000u;
}

static uint64_t backoff_ms(unsigned failures) {
  return announce_retry_ms(failures, randombytes_uniform);
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

/* A tier's tracker answered. */
static void tier_met(struct announce_tier *at) {
  at->sw->an.ever_met_tracker = 1;
  at->ever_answered = 1;
  at->failures = 0;
  learn_key(at);
}

static void on_announced(void *arg, int status,
                         const struct tracker_client_reply *r) {
  struct announce_tier *at = arg;
  struct swarm *sw = at->sw;
  uint8_t event = at->announce_event;
  int first;
  sw->refs--;
  at->announce_busy = 0;
  if (event == TMSG_EVENT_STOPPED) {
    at->stop_announced = 1;
    return;
  }
  if (schedule_over(sw)) {
    /* An announce was under way when the node began to stop, the swarm
     * failed or is being removed: the tracker has us now, so "stopped"
     * follows it. */
    if (status == 0) {
      at->announced_once = 1;
      /* A stopping node says "stopped" for its swarms together, from its
       * stop timer (announce_stopped_batch); a swarm that failed or is
       * removed says it alone. */
      if (!sw->node->stopping || sw->state == SW_REMOVING) {
        say_stopped(at);
      }
    }
    return;
  }
  if (status != 0 && event == TMSG_EVENT_COMPLETED) {
    at->completed_pending = 1;
  }
  if (status != 0) {
    if (!tracker_failed(at, status, r)) {
      uint64_t wait = backoff_ms(at->failures);
      if (r != NULL && r->type == TMSG_ERROR &&
          r->error.retry_after_ms > wait) {
        wait = r->error.retry_after_ms;
      }
      schedule_announce(at, wait);
    }
    return;
  }
  first = !at->announced_once;
  at->announced_once = 1;
  tier_met(at);
  {
    /* Our address certificate, for peer exchange (pex.c), signed by the
     * tracker that answered. */
    const uint8_t *k = at->have_key ? at->key : tracker_client_key(at->tc);
    if (r->u.announce.has_cert && k != NULL) {
      pex_take_cert(sw->node, k, r->u.announce.cert);
    }
  }
  at->interval_s = r->u.announce.interval_s;
  schedule_announce(at, (first ? announce_first_next_ms : announce_next_ms)(
                            at->interval_s, sw->node->cfg.interval_cap_s,
                            r->u.announce.min_interval_s, randombytes_uniform));
  if (event == TMSG_EVENT_STARTED && sw->state != SW_SEEDING &&
      !sw->an.lookup_busy) {
    /* A tier that lists us now is asked at once. */
    sw->an.lookup_tier = (unsigned)(at - sw->an.tier);
    schedule_lookup(sw, 0);
  }
  if (sw->is_source && sw->dir == NULL && !we_publish(sw)) {
    /* Someone else's content, seeded again (node_share; a get has a dir):
     * the trackers list us now, which is when a share of our own says it
     * is shared. A get that became a seeder (a whole copy found in place)
     * says nothing, whichever announce came first: it has its link. */
    emit_shared(sw);
  }
}

static void do_announce(struct announce_tier *at, uint8_t event) {
  struct swarm *sw = at->sw;
  struct tmsg_announce a;
  if (at->tc == NULL || at->announce_busy) {
    return;
  }
  memset(&a, 0, sizeof(a));
  a.port = sw->node->port;
  a.event = event;
  if (event != TMSG_EVENT_STOPPED &&
      pex_want_cert(sw->node,
                    at->have_key ? at->key : tracker_client_key(at->tc))) {
    a.flags = TMSG_ANNOUNCE_WANT_CERT; /* ours is missing or half spent */
  }
  a.count = 1;
  memcpy(a.items[0].content, sw->content, MANIFEST_ID_BYTES);
  a.items[0].role = (sw->is_source || sw->state == SW_SEEDING)
                        ? TMSG_ROLE_SEEDING
                        : TMSG_ROLE_DOWNLOADING;
  a.items[0].left = left_bytes(sw);
  if (tracker_client_announce(at->tc, &a, on_announced, at) != 0) {
    schedule_announce(at, 1000);
    return;
  }
  at->announce_event = event;
  if (event == TMSG_EVENT_COMPLETED) {
    at->completed_pending = 0;
  }
  at->announce_busy = 1;
  sw->refs++;
}

/* Tells a tier's trackers this swarm stopped, once, when they may list it:
 * it announced there before, or an announce is under way (whose reply
 * calls this again). */
static void say_stopped(struct announce_tier *at) {
  if (at->tc == NULL || at->stop_sent || !at->announced_once ||
      at->announce_busy) {
    return;
  }
  do_announce(at, TMSG_EVENT_STOPPED);
  at->stop_sent = at->announce_busy;
}

static void on_announce_timer(uv_timer_t *t) {
  struct announce_tier *at = t->data;
  struct swarm *sw = at->sw;
  uint8_t event = TMSG_EVENT_PERIODIC;
  if (schedule_over(sw)) {
    return; /* it said "stopped" (say_stopped) */
  }
  if (!at->announced_once) {
    event = TMSG_EVENT_STARTED;
  } else if (at->completed_pending) {
    event = TMSG_EVENT_COMPLETED;
  }
  if (tier_publishes(at)) {
    /* A share of ours announces only once its publish went through. */
    if (!at->publish_busy) {
      publish(at);
    }
    return;
  }
  do_announce(at, event);
}

static void schedule_announce(struct announce_tier *at, uint64_t ms) {
  struct swarm *sw = at->sw;
  if (sw->node->stopping || sw->state == SW_REMOVING) {
    return;
  }
  uv_timer_start(&at->announce_timer, on_announce_timer, ms, 0);
}

static void remember_peer(struct swarm *sw, const uint8_t pk[32],
                          const struct sockaddr_storage *ss) {
  struct known_peer *k = NULL;
  if (sw->an.known == NULL) {
    sw->an.known = calloc(ANNOUNCE_KNOWN_MAX, sizeof(*sw->an.known));
    if (sw->an.known == NULL) {
      return;
    }
  }
  for (unsigned i = 0; i < sw->an.nknown; i++) {
    if (memcmp(sw->an.known[i].pk, pk, IDENTITY_PK_BYTES) == 0) {
      k = &sw->an.known[i];
      break;
    }
  }
  if (k == NULL) {
    if (sw->an.nknown == ANNOUNCE_KNOWN_MAX) {
      /* Full: the entries are replaced in turn, oldest first. */
      k = &sw->an.known[sw->an.known_next];
      sw->an.known_next = (sw->an.known_next + 1) % ANNOUNCE_KNOWN_MAX;
    } else {
      k = &sw->an.known[sw->an.nknown++];
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
  for (unsigned i = 0; i < sw->an.nknown; i++) {
    struct known_peer *k = &sw->an.known[i];
    if (sw->nsessions >= n->cfg.max_peers) {
      return;
    }
    if (k->next_try_ms > now || bans_is_banned(sw, k->pk) ||
        session_connected_to(sw, k->pk)) {
      continue;
    }
    k->backoff_ms = k->backoff_ms == 0 ? 2000 : k->backoff_ms * 2;
    if (k->backoff_ms > lookup_max_ms(n)) {
      k->backoff_ms = lookup_max_ms(n);
    }
    k->next_try_ms = now + k->backoff_ms;
    log_info("peer", "%s: tracker unreachable; dialling a known peer",
             sw->name);
    (void)session_connect(n, sw, (const struct sockaddr *)&k->addr, k->pk);
  }
}

/* The next lookup asks the next tier. */
static void next_lookup_tier(struct swarm *sw) {
  if (sw->an.ntiers > 0) {
    sw->an.lookup_tier = (sw->an.lookup_tier + 1) % sw->an.ntiers;
  }
}

static void on_lookup(void *arg, int status,
                      const struct tracker_client_reply *r) {
  struct announce_tier *at = arg;
  struct swarm *sw = at->sw;
  struct node *n = sw->node;
  unsigned fresh = 0;
  sw->refs--;
  sw->an.lookup_busy = 0;
  if (schedule_over(sw)) {
    return;
  }
  if (status != 0) {
    sw->an.lookup_failures++;
    if (!tracker_failed(at, status, r)) {
      uint64_t wait = backoff_ms(sw->an.lookup_failures);
      redial_known(sw);
      next_lookup_tier(sw);
      /* Another tier may answer at once; the backoff is for a round of
       * every tier failing. */
      if (sw->an.ntiers > 1 && sw->an.lookup_failures % sw->an.ntiers != 0) {
        wait = LOOKUP_MIN_MS;
      }
      schedule_lookup(sw, wait);
    }
    return;
  }
  sw->an.lookup_failures = 0;
  tier_met(at);
  for (unsigned i = 0; i < r->u.lookup.count; i++) {
    if (memcmp(r->u.lookup.peers[i].pk, n->id->pk, IDENTITY_PK_BYTES) != 0) {
      /* Someone is there: a get that has not met a peer yet keeps trying
       * (node.c gives up only after NODE_NO_PEERS_MS of empty lists). */
      sw->an.listed_ms = node_now(n);
      break;
    }
  }
  for (unsigned i = 0; i < r->u.lookup.count; i++) {
    const struct tmsg_peer *p = &r->u.lookup.peers[i];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (sw->nsessions >= n->cfg.max_peers) {
      break;
    }
    if (memcmp(p->pk, n->id->pk, IDENTITY_PK_BYTES) == 0 || p->port == 0 ||
        bans_is_banned(sw, p->pk) || session_connected_to(sw, p->pk)) {
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
    sw->an.lookup_backoff_ms = LOOKUP_MIN_MS;
  } else {
    /* Nobody new here: the next lookup asks the next tier, and once every
     * tier had its turn, the wait doubles. */
    next_lookup_tier(sw);
    if (sw->an.lookup_tier == 0 &&
        sw->an.lookup_backoff_ms < lookup_max_ms(n)) {
      sw->an.lookup_backoff_ms *= 2;
    }
  }
  if (r->u.lookup.count == 0 && !sw->ever_met_peer && !sw->an.warned_no_peers) {
    struct node_event ev;
    sw->an.warned_no_peers = 1;
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_WARNING;
    ev.message = "no peers yet; waiting for one to appear";
    node_emit(n, &ev);
  }
  schedule_lookup(sw, sw->an.lookup_backoff_ms);
}

static void on_lookup_timer(uv_timer_t *t) {
  struct swarm *sw = t->data;
  struct node *n = sw->node;
  struct announce_tier *at;
  struct tmsg_lookup l;
  if (sw->an.ntiers == 0 || sw->an.lookup_busy || sw->state == SW_SEEDING ||
      schedule_over(sw)) {
    return;
  }
  at = &sw->an.tier[sw->an.lookup_tier % sw->an.ntiers];
  if (at->tc == NULL) {
    return;
  }
  if (sw->nsessions >= n->cfg.max_peers) {
    /* Full: of open sessions, nothing to ask for a while; of dials not
     * through yet (each holds a slot until NODE_HELLO_MS), soon, or a
     * newcomer whose first dials were all refused waits the longest. */
    unsigned dialling = 0;
    for (const struct session *s = sw->sessions; s != NULL; s = s->next) {
      dialling += s->state != SESS_OPEN;
    }
    schedule_lookup(sw, dialling > 0 ? LOOKUP_MIN_MS : lookup_max_ms(n));
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
  if (tracker_client_lookup(at->tc, &l, on_lookup, at) != 0) {
    schedule_lookup(sw, 1000);
    return;
  }
  sw->an.lookup_busy = 1;
  sw->refs++;
}

void announce_lookup_soon(struct swarm *sw) {
  if (sw->an.ntiers == 0 || sw->an.lookup_busy || schedule_over(sw) ||
      uv_timer_get_due_in(&sw->an.lookup_timer) <= LOOKUP_MIN_MS) {
    return;
  }
  schedule_lookup(sw, LOOKUP_MIN_MS);
}

static void schedule_lookup(struct swarm *sw, uint64_t ms) {
  if (sw->node->stopping || sw->state == SW_REMOVING) {
    return;
  }
  if (ms > lookup_max_ms(sw->node)) {
    ms = lookup_max_ms(sw->node);
  }
  uv_timer_start(&sw->an.lookup_timer, on_lookup_timer, ms, 0);
}

/* ------------------------------------------------------------------------ */
/* Sharing */

/* Says the content is shared, with its link, once: when a tier has it
 * (published, or announced for someone else's content) and every tier's
 * trackers have their keys, so that the link names them all. */
static void emit_shared(struct swarm *sw) {
  struct share_link l;
  struct node_event ev;
  char text[LINK_MAX_CHARS + 1];
  int ready = 0;
  if (sw->an.shared) {
    return;
  }
  memset(&l, 0, sizeof(l));
  for (unsigned i = 0; i < sw->an.ntiers; i++) {
    const struct announce_tier *at = &sw->an.tier[i];
    if (!at->have_key) {
      return;
    }
    ready |= we_publish(sw) ? at->published : at->announced_once;
    for (unsigned j = 0; j < at->ntrackers; j++) {
      struct link_tracker *t = &l.trackers[l.tracker_count++];
      *t = at->trackers[j];
      t->tier = (uint8_t)i;
      if (!t->has_key) {
        /* Trackers without a key of their own are one cluster: the key
         * learned from the one that answered is theirs. */
        memcpy(t->key, at->key, IDENTITY_PK_BYTES);
        t->has_key = 1;
      }
    }
  }
  if (!ready) {
    return;
  }
  sw->an.shared = 1;
  memcpy(l.id, sw->content, MANIFEST_ID_BYTES);
  snprintf(l.name, sizeof(l.name), "%s", sw->m->name);
  l.size = sw->m->total_size;
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
  struct announce_tier *at = arg;
  struct swarm *sw = at->sw;
  sw->refs--;
  at->publish_busy = 0;
  if (schedule_over(sw)) {
    return;
  }
  if (status != 0) {
    if (r != NULL && r->type == TMSG_ERROR && status != SHOAL_ERATE &&
        !tracker_client_moves_on(status)) {
      char msg[512];
      snprintf(msg, sizeof(msg), "tracker %s refused to publish %s: %s",
               tracker_client_current(at->tc), sw->m->name, r->error.reason);
      swarm_fail(sw, status, msg);
      return;
    }
    if (!tracker_failed(at, status, r)) {
      uint64_t wait = backoff_ms(at->failures);
      if (r != NULL && r->type == TMSG_ERROR &&
          r->error.retry_after_ms > wait) {
        wait = r->error.retry_after_ms;
      }
      uv_timer_start(&at->announce_timer, on_announce_timer, wait, 0);
    }
    return;
  }
  at->published = 1;
  tier_met(at);
  emit_shared(sw);
  do_announce(at, TMSG_EVENT_STARTED);
}

static void publish(struct announce_tier *at) {
  struct swarm *sw = at->sw;
  struct tmsg_publish p;
  memset(&p, 0, sizeof(p));
  memcpy(p.content, sw->content, MANIFEST_ID_BYTES);
  p.size = sw->m->total_size;
  snprintf(p.name, sizeof(p.name), "%s", sw->m->name);
  memcpy(p.manifest_sig, sw->m->signature, IDENTITY_SIG_BYTES);
  if (tracker_client_publish(at->tc, &p, on_published, at) != 0) {
    swarm_fail(sw, SHOAL_ENOMEM, "cannot queue the publish request");
    return;
  }
  at->publish_busy = 1;
  sw->refs++;
}
