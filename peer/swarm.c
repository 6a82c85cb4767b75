/* A swarm: everything this peer does for one content.
 *
 * The swarm turns peer-wire messages into picker and storage calls, keeps
 * the choke state (tit-for-tat while downloading, round robin while
 * seeding), assembles blocks into chunks, and decides who is banned: a peer
 * is struck when a chunk it alone sent fails its hash, or when a block it
 * sent differs from the same block of the copy that later verified; at
 * NODE_STRIKES_BAN strikes it is banned and never talked to again.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/internal.h"

static void update_interest(struct swarm *sw, struct session *s);
static void maybe_finish(struct swarm *sw);
static void start_manifest_fetch(struct swarm *sw, struct session *s);
static void send_have_log(struct swarm *sw, struct session *s);

struct swarm *swarm_find(struct node *n, const uint8_t content[32]) {
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    if (memcmp(sw->content, content, MANIFEST_ID_BYTES) == 0 &&
        sw->state != SW_FAILED && sw->state != SW_STOPPING) {
      return sw;
    }
  }
  return NULL;
}

static struct banned *ban_entry(struct swarm *sw, const uint8_t pk[32],
                                int create) {
  struct banned *b;
  for (b = sw->bans; b != NULL; b = b->next) {
    if (memcmp(b->pk, pk, IDENTITY_PK_BYTES) == 0) {
      return b;
    }
  }
  if (!create) {
    return NULL;
  }
  b = calloc(1, sizeof(*b));
  if (b != NULL) {
    memcpy(b->pk, pk, IDENTITY_PK_BYTES);
    b->next = sw->bans;
    sw->bans = b;
  }
  return b;
}

int swarm_is_banned(const struct swarm *sw, const uint8_t pk[32]) {
  for (const struct banned *b = sw->bans; b != NULL; b = b->next) {
    if (b->banned && memcmp(b->pk, pk, IDENTITY_PK_BYTES) == 0) {
      return 1;
    }
  }
  return 0;
}

/* One strike against pk; at NODE_STRIKES_BAN (or with ban set) the peer is
 * banned and its session closed. */
static void strike(struct swarm *sw, const uint8_t pk[32], int ban,
                   const char *why) {
  struct banned *b = ban_entry(sw, pk, 1);
  char who[TEXTID_SHORT_CHARS + 1];
  if (b == NULL || b->banned) {
    return;
  }
  textid_short(TEXTID_KEY, pk, who);
  b->strikes++;
  log_warn("peer", "%s: strike %u for %s: %s", sw->name, b->strikes, who, why);
  if (!ban && b->strikes < NODE_STRIKES_BAN) {
    return;
  }
  b->banned = 1;
  {
    struct node_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = NODE_EV_BANNED;
    ev.key = pk;
    ev.message = why;
    swarm_emit(sw, &ev);
  }
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next;
    if (memcmp(s->remote_pk, pk, IDENTITY_PK_BYTES) == 0) {
      session_close(s, "banned");
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Sessions joining and leaving */

int swarm_attach(struct swarm *sw, struct session *s) {
  unsigned max = sw->node->cfg.max_peers;
  int slot = -1;
  if (sw->state == SW_FAILED || sw->state == SW_STOPPING) {
    return SHOAL_EBUSY;
  }
  if (sw->nsessions >= max) {
    return SHOAL_EBUSY;
  }
  for (unsigned i = 0; i < PICKER_MAX_PEERS; i++) {
    if (!sw->slots_used[i]) {
      slot = (int)i;
      break;
    }
  }
  if (slot < 0) {
    return SHOAL_EBUSY;
  }
  sw->slots_used[slot] = 1;
  s->slot = slot;
  s->next = sw->sessions;
  if (sw->sessions != NULL) {
    sw->sessions->pprev = &s->next;
  }
  sw->sessions = s;
  s->pprev = &sw->sessions;
  sw->nsessions++;
  return 0;
}

/* Until the swarm has met a peer, NODE_DIAL_WARN dials that never got
 * through mean that nobody the tracker lists can be reached from here: say
 * so once, at the default level, with the last address and reason, rather
 * than sit at 0% in silence. */
void swarm_dial_failed(struct swarm *sw, const struct session *s,
                       const char *why) {
  struct node_event ev;
  char msg[600];
  sw->dial_failures++;
  if (sw->ever_met_peer || sw->warned_unreachable ||
      sw->dial_failures < NODE_DIAL_WARN || sw->node->stopping ||
      sw->state == SW_FAILED) {
    return;
  }
  sw->warned_unreachable = 1;
  /* The event is what the user sees; the log keeps it at info so that it
   * is not printed twice. */
  snprintf(msg, sizeof(msg),
           "%s: cannot connect to any of the %u peers the tracker listed "
           "(last: %s: %s) — they may be behind a firewall or listen on "
           "another address; still trying",
           sw->name, sw->nknown > 0 ? sw->nknown : 1, s->addr_text, why);
  log_info("peer", "%s", msg);
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_WARNING;
  ev.message = msg;
  swarm_emit(sw, &ev);
}

void swarm_detach(struct swarm *sw, struct session *s) {
  int was_unchoked = !s->am_choking && s->peer_interested;
  int refetch = 0;
  if (s->pprev != NULL) {
    *s->pprev = s->next;
    if (s->next != NULL) {
      s->next->pprev = s->pprev;
    }
  }
  s->next = NULL;
  s->pprev = NULL;
  if (s->in_picker && sw->pk != NULL) {
    picker_peer_remove(sw->pk, (unsigned)s->slot);
  }
  s->in_picker = 0;
  if (s->slot >= 0) {
    sw->slots_used[s->slot] = 0;
  }
  s->slot = -1;
  sw->nsessions--;
  if (sw->mf_from == s) {
    sw->mf_from = NULL;
    buf_reset(&sw->mf);
    sw->mf_total = 0;
    refetch = 1;
  }
  s->sw = NULL;
  if (sw->node->stopping) {
    return;
  }
  /* The manifest's source left: another peer that holds it takes over. */
  if (refetch && sw->state == SW_FETCHING) {
    for (struct session *o = sw->sessions, *o_next; o != NULL; o = o_next) {
      o_next = o->next; /* a send may close o */
      if (o->state == SESS_OPEN && o->have_map != NULL) {
        start_manifest_fetch(sw, o);
        if (sw->mf_from != NULL) {
          break;
        }
      }
    }
  }
  if (was_unchoked) {
    swarm_rechoke(sw, node_now(sw->node), 0);
  }
  for (struct session *o = sw->sessions, *o_next; o != NULL; o = o_next) {
    o_next = o->next; /* a send may close o */
    swarm_fill_requests(sw, o);
  }
}

static void send_have_map(struct swarm *sw, struct session *s) {
  struct pwire_msg m;
  size_t len;
  if (s->sent_have_map || sw->st == NULL ||
      (sw->state != SW_RUNNING && sw->state != SW_SEEDING &&
       sw->state != SW_FINISHING)) {
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_HAVE_MAP;
  m.data = storage_have_map(sw->st, &len);
  m.data_len = len;
  if (len == 0) {
    /* A content without chunks (one empty file) still needs its map to say
     * "I hold the manifest": it is one zero byte. */
    static const uint8_t zero = 0;
    m.data = &zero;
    m.data_len = 1;
  }
  if (session_send(s, &m) == 0) {
    s->sent_have_map = 1;
    s->have_at = sw->nhave_log; /* the map holds the logged chunks */
  }
}

/* Puts the remote's have-map into the picker once the manifest is known. */
static int take_have_map(struct swarm *sw, struct session *s) {
  int err;
  if (s->have_map == NULL || sw->m == NULL) {
    return 0;
  }
  if (!s->have_map_checked) {
    if (sw->m->chunk_count == 0) {
      if (s->have_map_len != 1 || s->have_map[0] != 0) {
        return SHOAL_EFORMAT;
      }
    } else {
      err = pwire_check_have_map(s->have_map, s->have_map_len,
                                 sw->m->chunk_count);
      if (err != 0) {
        return err;
      }
    }
    s->have_map_checked = 1;
    s->remote_have = 0;
    for (uint32_t i = 0; i < sw->m->chunk_count; i++) {
      if (s->have_map[i / 8] & (0x80u >> (i % 8))) {
        s->remote_have++;
      }
    }
  }
  if (s->in_picker || sw->pk == NULL || sw->m->chunk_count == 0) {
    return 0;
  }
  err = picker_peer_add(sw->pk, (unsigned)s->slot, s->have_map);
  if (err != 0) {
    return err;
  }
  s->in_picker = 1;
  return 0;
}

static int only_publisher(const struct swarm *sw) {
  return sw->node->cfg.mode == NODE_MODE_CS && !sw->is_source;
}

void swarm_session_open(struct swarm *sw, struct session *s) {
  const uint8_t *me = sw->node->id->pk;
  sw->ever_met_peer = 1;
  /* Two sessions between the same two peers: the one opened by the peer
   * with the lower key survives, so both sides agree. */
  for (struct session *o = sw->sessions, *o_next; o != NULL; o = o_next) {
    o_next = o->next; /* a send may close o */
    const uint8_t *ko, *ks;
    if (o == s || o->state != SESS_OPEN ||
        memcmp(o->remote_pk, s->remote_pk, IDENTITY_PK_BYTES) != 0) {
      continue;
    }
    ko = o->initiator ? me : o->remote_pk;
    ks = s->initiator ? me : s->remote_pk;
    if (memcmp(ks, ko, IDENTITY_PK_BYTES) < 0) {
      session_close(o, "duplicate session");
    } else {
      session_close(s, "duplicate session");
      return;
    }
    break;
  }
  if (only_publisher(sw)) {
    int ok = sw->m != NULL ? memcmp(s->remote_pk, sw->m->publisher,
                                    IDENTITY_PK_BYTES) == 0
                           : (s->remote_flags & PWIRE_HELLO_SEEDER) != 0;
    if (!ok) {
      session_close(s, "client-server mode takes data from the publisher only");
      return;
    }
  }
  send_have_map(sw, s);
}

/* ------------------------------------------------------------------------ */
/* Choking */

static void set_choke(struct session *s, int choke, uint64_t now) {
  if (s->am_choking == choke || s->state != SESS_OPEN) {
    return;
  }
  s->am_choking = choke;
  if (choke) {
    /* A choke drops every request the remote made; it asks again when
     * unchoked. */
    s->upq_len = 0;
    s->upq_head = 0;
    session_drop_reads(s, NULL);
    s->choked_at_ms = now;
    s->optimistic = 0;
    session_send_simple(s, PWIRE_CHOKE);
  } else {
    s->unchoked_at_ms = now;
    session_send_simple(s, PWIRE_UNCHOKE);
    if (s->sw != NULL) {
      send_have_log(s->sw, s); /* it may ask for any of them now */
    }
  }
}

static int is_seeding(const struct swarm *sw) {
  return sw->state == SW_SEEDING;
}

/* Regular unchoked slots in use: interested peers we unchoked, not counting
 * client-server clients a seeder always serves. */
static unsigned slots_used(const struct swarm *sw, int seeding) {
  unsigned n = 0;
  for (const struct session *s = sw->sessions; s != NULL; s = s->next) {
    if (s->state == SESS_OPEN && !s->am_choking && s->peer_interested &&
        !(seeding && (s->remote_flags & PWIRE_HELLO_NO_UPLOAD))) {
      n++;
    }
  }
  return n;
}

/* A peer the regular slots are for: open, interested, and not a
 * client-server client (a seeder serves those apart from the slots, a
 * downloader never). */
static int slot_candidate(const struct session *s) {
  return s->state == SESS_OPEN && s->peer_interested &&
         !(s->remote_flags & PWIRE_HELLO_NO_UPLOAD);
}

/* An order of candidates for the slots: whether a comes before b. */
typedef int (*slot_order)(const struct session *a, const struct session *b,
                          uint64_t now);

/* Keeps best[0..*n) (at most cap) the candidates that come first, in
 * order, as s is offered. */
static void best_offer(struct session **best, unsigned cap, unsigned *n,
                       struct session *s, slot_order before, uint64_t now) {
  unsigned i;
  for (i = *n; i > 0 && before(s, best[i - 1], now); i--) {
    if (i < cap) {
      best[i] = best[i - 1];
    }
  }
  if (i < cap) {
    best[i] = s;
    if (*n < cap) {
      (*n)++;
    }
  }
}

static int in_best(struct session *const *best, unsigned n,
                   const struct session *s) {
  for (unsigned i = 0; i < n; i++) {
    if (best[i] == s) {
      return 1;
    }
  }
  return 0;
}

/* Downloading, tit-for-tat: the peer that sent us more lately first. */
static int sent_us_more(const struct session *a, const struct session *b,
                        uint64_t now) {
  return meter_rate(&a->down_meter, now) > meter_rate(&b->down_meter, now);
}

/* Seeding, whether a needs a slot before b: the peer holding fewer chunks
 * first, so that the seeder's upload goes where the swarm is furthest
 * behind and no peer is left at the tail; among equals, a choked peer
 * before an unchoked one, and the one waiting (or served) longest first,
 * which makes the choice a round robin while everyone holds the same. */
static int seed_before(const struct session *a, const struct session *b,
                       uint64_t now) {
  (void)now;
  if (a->remote_have != b->remote_have) {
    return a->remote_have < b->remote_have;
  }
  if (a->am_choking != b->am_choking) {
    return a->am_choking;
  }
  return a->am_choking ? a->choked_at_ms < b->choked_at_ms
                       : a->unchoked_at_ms < b->unchoked_at_ms;
}

void swarm_rechoke(struct swarm *sw, uint64_t now, int full) {
  int seeding = is_seeding(sw);
  unsigned used;

  if (sw->st == NULL || sw->state == SW_FAILED || sw->state == SW_STOPPING) {
    return;
  }
  if (only_publisher(sw)) {
    return; /* a client-server client uploads nothing: all stay choked */
  }
  for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
    s_next = s->next; /* a send may close s */
    if (s->state != SESS_OPEN) {
      continue;
    }
    if (!s->peer_interested || (s->remote_flags & PWIRE_HELLO_NO_UPLOAD &&
                                !seeding && !sw->is_source)) {
      if (full || (s->remote_flags & PWIRE_HELLO_NO_UPLOAD)) {
        set_choke(s, 1, now);
      }
    } else if (seeding && (s->remote_flags & PWIRE_HELLO_NO_UPLOAD)) {
      set_choke(s, 0, now); /* the client-server baseline: serve them all */
    }
  }
  if (full) {
    sw->last_rechoke_ms = now;
    if (seeding) {
      /* The slots go to the NODE_SEED_SLOTS interested peers that most
       * need them (seed_before), chosen again every NODE_SEED_RECHOKE_MS:
       * as the ones served catch up, others take their turn. */
      struct session *best[NODE_SEED_SLOTS];
      unsigned nbest = 0;
      for (struct session *s = sw->sessions; s != NULL; s = s->next) {
        if (slot_candidate(s)) {
          best_offer(best, NODE_SEED_SLOTS, &nbest, s, seed_before, now);
        }
      }
      for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
        s_next = s->next; /* a send may close s */
        if (slot_candidate(s)) {
          set_choke(s, !in_best(best, nbest, s), now);
        }
      }
    } else {
      /* Tit-for-tat: the NODE_UPLOAD_SLOTS - 1 peers that sent us the most
       * lately keep their slots; one more slot is the optimistic unchoke. */
      struct session *best[NODE_UPLOAD_SLOTS];
      unsigned nbest = 0;
      int rotate = now - sw->last_optimistic_ms >= NODE_OPTIMISTIC_MS;
      for (struct session *s = sw->sessions; s != NULL; s = s->next) {
        if (slot_candidate(s)) {
          best_offer(best, NODE_UPLOAD_SLOTS - 1, &nbest, s, sent_us_more, now);
        }
      }
      for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
        s_next = s->next; /* a send may close s */
        if (!slot_candidate(s)) {
          continue;
        }
        if (in_best(best, nbest, s)) {
          s->optimistic = 0;
          set_choke(s, 0, now);
        } else if (!(s->optimistic && !rotate)) {
          set_choke(s, 1, now);
        }
      }
      if (rotate) {
        /* A random choked, interested peer gets the optimistic slot. */
        unsigned count = 0, pick;
        for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
          s_next = s->next; /* a send may close s */
          count += slot_candidate(s) && s->am_choking;
        }
        if (count > 0) {
          pick = (unsigned)randombytes_uniform(count);
          for (struct session *s = sw->sessions, *s_next; s != NULL;
               s = s_next) {
            s_next = s->next; /* a send may close s */
            if (slot_candidate(s) && s->am_choking && pick-- == 0) {
              s->optimistic = 1;
              set_choke(s, 0, now);
              break;
            }
          }
        }
        sw->last_optimistic_ms = now;
      }
    }
  }
  /* Free slots go at once to the interested peer that waited longest (a
   * seeder: the one that needs it most). */
  used = slots_used(sw, seeding);
  while (used < (seeding ? NODE_SEED_SLOTS : NODE_UPLOAD_SLOTS)) {
    struct session *waiting = NULL;
    for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
      s_next = s->next; /* a send may close s */
      if (s->state == SESS_OPEN && s->peer_interested && s->am_choking &&
          !(s->remote_flags & PWIRE_HELLO_NO_UPLOAD && !seeding) &&
          (waiting == NULL ||
           (seeding ? seed_before(s, waiting, now)
                    : s->choked_at_ms < waiting->choked_at_ms))) {
        waiting = s;
      }
    }
    if (waiting == NULL) {
      break;
    }
    set_choke(waiting, 0, now);
    used++;
  }
}

/* ------------------------------------------------------------------------ */
/* Downloading */

static void update_interest(struct swarm *sw, struct session *s) {
  int want = s->state == SESS_OPEN && sw->pk != NULL && s->in_picker &&
             sw->state == SW_RUNNING &&
             picker_interesting(sw->pk, (unsigned)s->slot);
  if (want == s->am_interested) {
    return;
  }
  s->am_interested = want;
  session_send_simple(s, want ? PWIRE_INTERESTED : PWIRE_NOT_INTERESTED);
}

/* Blocks to keep requested from one peer: enough to fill the pipe, but
 * under a download limit no more than about two seconds' worth, so that
 * what was asked for arrives well within the request timeout. */
static unsigned pipeline_depth(const struct swarm *sw) {
  const struct rate_bucket *b = &sw->node->down_bucket;
  uint64_t blocks;
  if (rate_unlimited(b)) {
    return NODE_PIPELINE;
  }
  blocks = 2 * b->rate / PWIRE_BLOCK_BYTES;
  if (blocks < 1) {
    blocks = 1;
  }
  return blocks < NODE_PIPELINE ? (unsigned)blocks : NODE_PIPELINE;
}

/* Blocks to keep requested from one peer: NODE_PIPELINE_MS of what it has
 * been sending lately, plus NODE_PIPELINE_MIN to find out whether it can
 * send more, within pipeline_depth(). A slow peer is not asked for more
 * than it can deliver before the request timeout, so its blocks are not
 * asked of others again (duplicates), and a fast one fills the pipe. */
static unsigned session_depth(const struct swarm *sw, const struct session *s) {
  uint64_t rate = meter_rate(&s->down_meter, node_now(sw->node));
  uint64_t chunk = (uint64_t)1 << sw->m->chunk_log2;
  uint64_t block = chunk < PWIRE_BLOCK_BYTES ? chunk : PWIRE_BLOCK_BYTES;
  uint64_t blocks = NODE_PIPELINE_MIN + rate * NODE_PIPELINE_MS / 1000 / block;
  unsigned cap = pipeline_depth(sw);
  return blocks < cap ? (unsigned)blocks : cap;
}

/* The request timeout: NODE_REQUEST_TIMEOUT_MS, longer when what is in
 * flight takes longer than that to arrive: at the node's download limit,
 * or from a peer slower than its requests (at most
 * NODE_REQUEST_TIMEOUT_MAX_MS). */
static uint64_t request_timeout(const struct swarm *sw) {
  const struct rate_bucket *b = &sw->node->down_bucket;
  uint64_t now = node_now(sw->node);
  uint64_t bytes = 0, ms = NODE_REQUEST_TIMEOUT_MS;
  for (const struct session *x = sw->sessions; x != NULL; x = x->next) {
    unsigned out;
    uint64_t rate, t;
    if (x->state != SESS_OPEN || !x->in_picker || sw->pk == NULL) {
      continue;
    }
    out = picker_outstanding(sw->pk, (unsigned)x->slot);
    rate = meter_rate(&x->down_meter, now);
    if (out == 0 || rate == 0) {
      continue;
    }
    t = 2 * (uint64_t)out * PWIRE_BLOCK_BYTES * 1000 / rate;
    ms = t > ms ? t : ms;
  }
  if (!rate_unlimited(b)) {
    /* The limit is the node's: count what every swarm may have in flight
     * from the peers that unchoke it. */
    for (const struct swarm *o = sw->node->swarms; o != NULL; o = o->next) {
      unsigned serving = 0;
      for (const struct session *x = o->sessions; x != NULL; x = x->next) {
        serving += x->state == SESS_OPEN && !x->peer_choking;
      }
      bytes += (uint64_t)pipeline_depth(o) * PWIRE_BLOCK_BYTES * serving;
    }
    if (2 * bytes * 1000 / b->rate > ms) {
      ms = 2 * bytes * 1000 / b->rate;
    }
  }
  return ms < NODE_REQUEST_TIMEOUT_MAX_MS ? ms : NODE_REQUEST_TIMEOUT_MAX_MS;
}

/* How long a manifest part may take: 10 s, or twice its time at the
 * download limit. */
static uint64_t manifest_timeout(const struct swarm *sw) {
  const struct rate_bucket *b = &sw->node->down_bucket;
  uint64_t ms;
  if (rate_unlimited(b)) {
    return NODE_REQUEST_TIMEOUT_MS;
  }
  ms = 2 * (uint64_t)PWIRE_MANIFEST_PART_BYTES * 1000 / b->rate;
  return ms > NODE_REQUEST_TIMEOUT_MS ? ms : NODE_REQUEST_TIMEOUT_MS;
}

void swarm_fill_requests(struct swarm *sw, struct session *s) {
  struct picker_block blocks[NODE_PIPELINE];
  unsigned have, n, depth;
  if (s->state != SESS_OPEN || sw->pk == NULL || !s->in_picker ||
      s->peer_choking || !s->am_interested || sw->state != SW_RUNNING) {
    return;
  }
  /* Memory stays bounded when the disk is slower than the network: no new
   * requests while too many chunks wait to be hashed and written. */
  if (sw->put_bytes >= NODE_MAX_PUT_BYTES) {
    return;
  }
  have = picker_outstanding(sw->pk, (unsigned)s->slot);
  depth = session_depth(sw, s);
  picker_peer_rate(sw->pk, (unsigned)s->slot,
                   meter_rate(&s->down_meter, node_now(sw->node)));
  /* Top up in batches of a quarter of the pipeline (or whatever fits when
   * it is short), so that requests travel several to a write. */
  if (have >= depth || (have > 0 && depth - have < (depth + 3) / 4)) {
    return;
  }
  n = picker_next(sw->pk, (unsigned)s->slot, node_now(sw->node), blocks,
                  depth - have);
  (void)session_send_requests(s, blocks, n);
}

static struct partial *partial_get(struct swarm *sw, uint32_t chunk) {
  struct partial *p;
  for (p = sw->partials; p != NULL; p = p->next) {
    if (p->chunk == chunk) {
      return p;
    }
  }
  p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->chunk = chunk;
  p->len = manifest_chunk_len(sw->m, chunk);
  p->nblocks = (p->len + PWIRE_BLOCK_BYTES - 1) / PWIRE_BLOCK_BYTES;
  p->data = storage_chunk_alloc(p->len);
  p->owners = calloc(p->nblocks ? p->nblocks : 1, IDENTITY_PK_BYTES);
  if (p->data == NULL || p->owners == NULL) {
    storage_chunk_free(p->data);
    free(p->owners);
    free(p);
    return NULL;
  }
  p->next = sw->partials;
  sw->partials = p;
  return p;
}

static void partial_drop(struct swarm *sw, struct partial *p) {
  struct partial **pp = &sw->partials;
  while (*pp != p) {
    pp = &(*pp)->next;
  }
  *pp = p->next;
  storage_chunk_free(p->data);
  free(p->owners);
  free(p);
}

static struct suspect *suspect_find(struct swarm *sw, uint32_t chunk) {
  for (struct suspect *x = sw->suspects; x != NULL; x = x->next) {
    if (x->chunk == chunk) {
      return x;
    }
  }
  return NULL;
}

static void suspect_drop(struct swarm *sw, struct suspect *x) {
  struct suspect **pp = &sw->suspects;
  while (*pp != x) {
    pp = &(*pp)->next;
  }
  *pp = x->next;
  free(x->owners);
  free(x->hashes);
  free(x);
}

struct put_ctx {
  struct swarm *sw;
  uint32_t chunk;
  uint32_t len;
  uint32_t nblocks;
  uint8_t *owners;     /* taken from the partial */
  uint8_t *bad_hashes; /* nblocks x 32 */
};

/* Whether s is open, has our have-map, and was not sent all of the log. */
static int have_behind(const struct swarm *sw, const struct session *s) {
  return s->state == SESS_OPEN && s->sent_have_map &&
         s->have_at < sw->nhave_log;
}

/* Sends s the chunks of the have-log it was not sent yet, in one HAVE. */
static void send_have_log(struct swarm *sw, struct session *s) {
  struct pwire_msg m;
  if (!have_behind(sw, s)) {
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_HAVE;
  m.data = sw->have_log + 4 * (size_t)s->have_at;
  m.data_len = 4 * (size_t)(sw->nhave_log - s->have_at);
  s->have_at = sw->nhave_log;
  (void)session_send(s, &m);
}

/* Whether s should hear of a new chunk within NODE_HAVE_MS: a peer we
 * upload to (it may ask for the chunk at once) or one not interested in us
 * (the chunk may make it so). An interested peer we choke cannot ask for
 * it anyway, and a peer holding everything needs it only for its seeding
 * order: they hear every NODE_HAVE_SLOW_MS (docs/protocol.md, rule 13). */
static int wants_have_soon(const struct swarm *sw, const struct session *s) {
  if (sw->m != NULL && s->remote_have == sw->m->chunk_count) {
    return 0;
  }
  return !s->am_choking || !s->peer_interested;
}

/* Tells every peer about every chunk of the have-log it was not sent yet,
 * and starts a new log. */
void swarm_send_haves(struct swarm *sw) {
  for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
    s_next = s->next; /* a send may close s */
    send_have_log(sw, s);
  }
  for (struct session *s = sw->sessions; s != NULL; s = s->next) {
    s->have_at = 0;
  }
  if (sw->nhave_log > 0) {
    sw->have_sent_ms = node_now(sw->node);
  }
  sw->nhave_log = 0;
  sw->have_epoch_ms = node_now(sw->node);
}

/* Sends the HAVEs that are due at now: to those that want them soon
 * NODE_HAVE_MS after the last HAVE, and to every peer as well once
 * NODE_HAVE_SLOW_MS have passed since all were last told. Returns how many
 * ms until more are due, or 0 when nothing waits. A HAVE alone is often a
 * packet of its own: one per chunk and peer took a few percent of a peer's
 * upload, and one every NODE_HAVE_MS to every peer still took 1 %. */
uint64_t swarm_haves_due(struct swarm *sw, uint64_t now) {
  uint64_t soon = sw->have_sent_ms + NODE_HAVE_MS;
  uint64_t all = sw->have_epoch_ms + NODE_HAVE_SLOW_MS;
  int waiting = 0;
  if (sw->nhave_log == 0) {
    return 0;
  }
  if (now >= all && now >= soon) {
    swarm_send_haves(sw);
    return 0;
  }
  if (all < soon) {
    all = soon;
  }
  for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
    s_next = s->next; /* a send may close s */
    if (!have_behind(sw, s) || !wants_have_soon(sw, s)) {
      continue;
    }
    if (now >= soon) {
      send_have_log(sw, s);
      sw->have_sent_ms = now;
    } else {
      waiting = 1;
    }
  }
  return waiting && soon - now < all - now ? soon - now : all - now;
}

/* Logs chunk for the next HAVEs; a peer that wants it soon hears at once
 * when its last HAVE went out NODE_HAVE_MS ago or more (a chunk is worth
 * most to the swarm when it is new). */
static void have_soon(struct swarm *sw, uint32_t chunk) {
  uint64_t wait;
  if (sw->nhave_log == NODE_HAVE_BATCH) {
    swarm_send_haves(sw);
  }
  buf_put_be32(sw->have_log + 4 * sw->nhave_log++, chunk);
  wait = swarm_haves_due(sw, node_now(sw->node));
  if (wait > 0) {
    node_have_later(sw->node, wait);
  }
}

static void on_chunk_put(void *arg, int status) {
  struct put_ctx *c = arg;
  struct swarm *sw = c->sw;
  sw->puts_in_flight--;
  sw->put_bytes -= c->len;
  if (sw->state != SW_RUNNING || sw->pk == NULL) {
    goto done;
  }
  if (status == 0) {
    picker_chunk_verified(sw->pk, c->chunk);
    have_soon(sw, c->chunk);
    for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
      next = s->next;
      update_interest(sw, s);
      swarm_fill_requests(sw, s);
    }
    maybe_finish(sw);
  } else if (status == SHOAL_EHASH) {
    /* Who sent it? One sender alone is proof; with several, remember each
     * block's hash and sender, to compare with the copy that verifies. */
    int sole = 1;
    for (uint32_t i = 1; i < c->nblocks; i++) {
      if (memcmp(c->owners, c->owners + (size_t)i * IDENTITY_PK_BYTES,
                 IDENTITY_PK_BYTES) != 0) {
        sole = 0;
      }
    }
    log_warn("peer", "%s: chunk %u failed its hash", sw->name, c->chunk);
    sw->node->wasted_bytes += c->len;
    picker_chunk_failed(sw->pk, c->chunk);
    if (sole) {
      strike(sw, c->owners, 0, "sent a chunk that failed its hash");
    } else if (suspect_find(sw, c->chunk) == NULL) {
      struct suspect *x = calloc(1, sizeof(*x));
      if (x != NULL) {
        x->chunk = c->chunk;
        x->nblocks = c->nblocks;
        x->owners = c->owners;
        x->hashes = c->bad_hashes;
        c->owners = NULL;
        c->bad_hashes = NULL;
        x->next = sw->suspects;
        sw->suspects = x;
      }
    }
  } else {
    char msg[4600];
    picker_chunk_failed(sw->pk, c->chunk);
    snprintf(msg, sizeof(msg), "cannot write %s: %s%s",
             storage_final_path(sw->st), shoal_strerror(status),
             status == UV_ENOSPC ? " — disk full: free some space and run "
                                   "the same get again to resume"
                                 : "");
    swarm_fail(sw, status, msg);
  }
done:
  free(c->owners);
  free(c->bad_hashes);
  free(c);
}

/* The chunk is whole: check the suspects, then hand it to storage, which
 * verifies it off the loop. */
static void submit_chunk(struct swarm *sw, struct partial *p) {
  struct suspect *x = suspect_find(sw, p->chunk);
  struct put_ctx *c = calloc(1, sizeof(*c));
  uint8_t *data = p->data;
  int err;

  if (x != NULL && x->nblocks == p->nblocks &&
      manifest_verify_chunk(sw->m, p->chunk, p->data, p->len) == 0) {
    /* This copy is good: a sender whose block of the failed copy differs
     * from the good block sent bad data. */
    uint8_t *struck = calloc(x->nblocks, 1);
    for (uint32_t i = 0; i < x->nblocks && struck != NULL; i++) {
      uint8_t h[32];
      uint32_t off = i * PWIRE_BLOCK_BYTES;
      uint32_t n =
          p->len - off < PWIRE_BLOCK_BYTES ? p->len - off : PWIRE_BLOCK_BYTES;
      const uint8_t *who = x->owners + (size_t)i * IDENTITY_PK_BYTES;
      int seen = 0;
      crypto_generichash(h, sizeof(h), p->data + off, n, NULL, 0);
      if (memcmp(h, x->hashes + (size_t)i * 32, 32) == 0) {
        continue;
      }
      /* One strike per sender for this chunk, however many bad blocks. */
      for (uint32_t j = 0; j < i && !seen; j++) {
        seen = struck[j] && memcmp(x->owners + (size_t)j * IDENTITY_PK_BYTES,
                                   who, IDENTITY_PK_BYTES) == 0;
      }
      struck[i] = 1;
      if (!seen) {
        strike(sw, who, 0, "sent a block that differs from the verified chunk");
      }
    }
    free(struck);
    suspect_drop(sw, x);
  }
  if (c == NULL) {
    uint32_t chunk = p->chunk;
    partial_drop(sw, p);
    picker_chunk_failed(sw->pk, chunk);
    return;
  }
  c->sw = sw;
  c->chunk = p->chunk;
  c->len = p->len;
  c->nblocks = p->nblocks;
  c->owners = p->owners;
  c->bad_hashes = calloc(p->nblocks ? p->nblocks : 1, 32);
  p->owners = NULL;
  p->data = NULL;
  partial_drop(sw, p);
  err = storage_put_chunk_or_hash_blocks(sw->st, c->chunk, data, c->bad_hashes,
                                         on_chunk_put, c);
  if (err != 0) {
    storage_chunk_free(data);
    picker_chunk_failed(sw->pk, c->chunk);
    free(c->owners);
    free(c->bad_hashes);
    free(c);
    return;
  }
  sw->puts_in_flight++;
  sw->put_bytes += c->len;
}

static int on_data(struct swarm *sw, struct session *s,
                   const struct pwire_msg *m) {
  struct picker_block b;
  unsigned cancel[PICKER_ENDGAME_DUP];
  unsigned ncancel = 0;
  int chunk_done = 0;
  struct partial *p;
  uint32_t bi;

  if (sw->m == NULL || m->data_len > UINT32_MAX ||
      pwire_check_block(sw->m, m->chunk, m->offset, (uint32_t)m->data_len) !=
          0) {
    log_warn("peer", "%s: %s sent a block outside the content", sw->name,
             s->remote_short);
    return SHOAL_EINVAL;
  }
  s->rejects = 0;
  s->down_bytes += m->data_len;
  sw->down_bytes += m->data_len;
  sw->node->down_bytes += m->data_len;
  meter_add(&s->down_meter, m->data_len, node_now(sw->node));
  meter_add(&sw->down_meter, m->data_len, node_now(sw->node));
  if (sw->pk == NULL || sw->state != SW_RUNNING) {
    return 0;
  }
  b.chunk = m->chunk;
  b.offset = m->offset;
  b.length = (uint32_t)m->data_len;
  if (!picker_block_done(sw->pk, (unsigned)s->slot, &b, &chunk_done, cancel,
                         &ncancel)) {
    sw->node->wasted_bytes += m->data_len;
    return 0; /* late, duplicate or unrequested: dropped */
  }
  p = partial_get(sw, m->chunk);
  if (p == NULL) {
    picker_chunk_failed(sw->pk, m->chunk);
    return 0;
  }
  memcpy(p->data + m->offset, m->data, m->data_len);
  for (bi = m->offset / PWIRE_BLOCK_BYTES;
       bi * PWIRE_BLOCK_BYTES < m->offset + m->data_len && bi < p->nblocks;
       bi++) {
    memcpy(p->owners + (size_t)bi * IDENTITY_PK_BYTES, s->remote_pk,
           IDENTITY_PK_BYTES);
  }
  for (unsigned i = 0; i < ncancel; i++) {
    for (struct session *o = sw->sessions, *o_next; o != NULL; o = o_next) {
      o_next = o->next; /* a send may close o */
      if (o->slot == (int)cancel[i] && o->state == SESS_OPEN) {
        (void)session_send_block(o, PWIRE_CANCEL, b.chunk, b.offset, b.length);
      }
    }
  }
  if (chunk_done) {
    submit_chunk(sw, p);
  }
  swarm_fill_requests(sw, s);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The manifest */

static void start_manifest_fetch(struct swarm *sw, struct session *s) {
  struct pwire_msg m;
  if (sw->state != SW_FETCHING || sw->mf_from != NULL) {
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_MANIFEST_REQ;
  m.offset = 0;
  m.length = PWIRE_MANIFEST_PART_BYTES;
  buf_reset(&sw->mf);
  sw->mf_total = 0;
  sw->mf_from = s;
  sw->mf_sent_ms = node_now(sw->node);
  if (session_send(s, &m) != 0) {
    sw->mf_from = NULL;
  }
}

static int on_manifest_part(struct swarm *sw, struct session *s,
                            const struct pwire_msg *m) {
  struct manifest *man = NULL;
  uint8_t id[MANIFEST_ID_BYTES];
  int err;

  if (sw->state != SW_FETCHING || sw->mf_from != s) {
    return SHOAL_EPROTO;
  }
  if (sw->mf.len == 0) {
    sw->mf_total = m->total;
  }
  if (m->total != sw->mf_total || m->offset != sw->mf.len ||
      m->data_len > m->total - m->offset) {
    return SHOAL_EFORMAT;
  }
  buf_add(&sw->mf, m->data, m->data_len);
  if (buf_err(&sw->mf) != 0) {
    return buf_err(&sw->mf);
  }
  if (sw->mf.len < sw->mf_total) {
    struct pwire_msg r;
    if (m->data_len == 0) {
      return SHOAL_EFORMAT;
    }
    memset(&r, 0, sizeof(r));
    r.type = PWIRE_MANIFEST_REQ;
    r.offset = (uint32_t)sw->mf.len;
    r.length = sw->mf_total - (uint32_t)sw->mf.len;
    if (r.length > PWIRE_MANIFEST_PART_BYTES) {
      r.length = PWIRE_MANIFEST_PART_BYTES;
    }
    sw->mf_sent_ms = node_now(sw->node);
    return session_send(s, &r);
  }
  sw->mf_from = NULL;
  if (manifest_id_of(sw->mf.data, sw->mf.len, id) != 0 ||
      memcmp(id, sw->content, MANIFEST_ID_BYTES) != 0) {
    buf_reset(&sw->mf);
    strike(sw, s->remote_pk, 1, "sent a manifest that is not the content's");
    return 0;
  }
  err = manifest_decode(sw->mf.data, sw->mf.len, &man);
  buf_free(&sw->mf);
  buf_init(&sw->mf, MANIFEST_MAX_BYTES);
  if (err == SHOAL_EVERSION) {
    /* The content ID holds the manifest's bytes: it cannot be upgraded,
     * only shared again. */
    swarm_fail(sw, err,
               "the content was shared by an older shoal (manifest version "
               "1), which this one no longer reads — ask its publisher to "
               "share it again with this version and send the new link");
    return 0;
  }
  if (err != 0) {
    char msg[256];
    snprintf(msg, sizeof(msg),
             "the content's manifest is invalid (%s); its publisher made a "
             "bad manifest, so no peer can fix it",
             shoal_strerror(err));
    swarm_fail(sw, err, msg);
    return 0;
  }
  sw->m = man;
  swarm_manifest_ready(sw);
  return 0;
}

static int on_manifest_req(struct swarm *sw, struct session *s,
                           const struct pwire_msg *m) {
  struct pwire_msg r;
  size_t total, n;
  if (sw->m == NULL || !s->sent_have_map) {
    return SHOAL_EPROTO;
  }
  total = sw->m->encoded_len;
  if (m->offset >= total) {
    return SHOAL_EINVAL;
  }
  n = total - m->offset;
  if (n > m->length) {
    n = m->length;
  }
  memset(&r, 0, sizeof(r));
  r.type = PWIRE_MANIFEST_PART;
  r.total = (uint32_t)total;
  r.offset = m->offset;
  r.data = sw->m->encoded + m->offset;
  r.data_len = n;
  return session_send(s, &r);
}

/* ------------------------------------------------------------------------ */
/* Messages */

static int on_request(struct swarm *sw, struct session *s,
                      const struct pwire_msg *m) {
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

static void on_cancel(struct session *s, const struct pwire_msg *m) {
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
  session_drop_reads(s, &r);
}

int swarm_on_message(struct swarm *sw, struct session *s,
                     const struct pwire_msg *m) {
  uint64_t now = node_now(sw->node);
  int err;
  switch (m->type) {
  case PWIRE_MANIFEST_REQ:
    return on_manifest_req(sw, s, m);
  case PWIRE_MANIFEST_PART:
    return on_manifest_part(sw, s, m);
  case PWIRE_HAVE_MAP:
    if (s->have_map != NULL) {
      return SHOAL_EPROTO;
    }
    s->have_map = malloc(m->data_len);
    if (s->have_map == NULL) {
      return SHOAL_ENOMEM;
    }
    memcpy(s->have_map, m->data, m->data_len);
    s->have_map_len = m->data_len;
    if (sw->m != NULL) {
      err = take_have_map(sw, s);
      if (err != 0) {
        log_warn("peer", "%s: %s sent a bad have-map", sw->name,
                 s->remote_short);
        return err;
      }
      update_interest(sw, s);
      if (sw->state == SW_SEEDING && s->remote_have == sw->m->chunk_count) {
        session_close(s, "both hold the whole content");
      }
    } else {
      start_manifest_fetch(sw, s);
    }
    return 0;
  case PWIRE_HAVE:
    for (size_t i = 0; i < pwire_have_count(m); i++) {
      uint32_t chunk = pwire_have_chunk(m, i);
      if (s->have_map == NULL || chunk / 8 >= s->have_map_len ||
          (sw->m != NULL && chunk >= sw->m->chunk_count)) {
        return SHOAL_EINVAL;
      }
      if (!(s->have_map[chunk / 8] & (0x80u >> (chunk % 8)))) {
        s->have_map[chunk / 8] |= (uint8_t)(0x80u >> (chunk % 8));
        s->remote_have++;
        if (s->in_picker) {
          picker_peer_have(sw->pk, (unsigned)s->slot, chunk);
        }
      }
    }
    update_interest(sw, s);
    swarm_fill_requests(sw, s);
    if (sw->state == SW_SEEDING && sw->m != NULL &&
        s->remote_have == sw->m->chunk_count) {
      session_close(s, "both hold the whole content");
    }
    return 0;
  case PWIRE_INTERESTED:
    s->peer_interested = 1;
    swarm_rechoke(sw, now, 0);
    return 0;
  case PWIRE_NOT_INTERESTED:
    s->peer_interested = 0;
    if (!s->am_choking) {
      set_choke(s, 1, now);
      swarm_rechoke(sw, now, 0);
    }
    return 0;
  case PWIRE_CHOKE:
    s->peer_choking = 1;
    s->rejects = 0; /* requests in transit come back rejected */
    if (s->in_picker) {
      /* Whatever was requested is dropped by the remote: give it back. */
      picker_peer_remove(sw->pk, (unsigned)s->slot);
      s->in_picker = 0;
      err = picker_peer_add(sw->pk, (unsigned)s->slot, s->have_map);
      if (err != 0) {
        return err;
      }
      s->in_picker = 1;
    }
    return 0;
  case PWIRE_UNCHOKE:
    s->peer_choking = 0;
    s->rejects = 0;
    swarm_fill_requests(sw, s);
    return 0;
  case PWIRE_REQUEST:
    return on_request(sw, s, m);
  case PWIRE_DATA:
    return on_data(sw, s, m);
  case PWIRE_CANCEL:
    if (sw->m == NULL ||
        pwire_check_block(sw->m, m->chunk, m->offset, m->length) != 0) {
      return SHOAL_EINVAL;
    }
    on_cancel(s, m);
    return 0;
  case PWIRE_REJECT:
    if (sw->m == NULL ||
        pwire_check_block(sw->m, m->chunk, m->offset, m->length) != 0) {
      return SHOAL_EINVAL;
    }
    if (sw->pk != NULL && s->in_picker) {
      struct picker_block b = {m->chunk, m->offset, m->length};
      picker_block_rejected(sw->pk, (unsigned)s->slot, &b);
    }
    if (++s->rejects >= NODE_REJECTS_CLOSE) {
      /* Its copy changed or cannot be read: asking again is no use. */
      session_close(s, "it rejects every request");
    }
    return 0;
  case PWIRE_KEEPALIVE:
    return 0;
  default:
    return SHOAL_EPROTO;
  }
}

void swarm_upload_sent(struct swarm *sw, struct session *s, uint32_t len) {
  s->up_bytes += len;
  meter_add(&sw->node->up_meter, len, node_now(sw->node));
  sw->up_bytes += len;
  sw->node->up_bytes += len;
}

/* ------------------------------------------------------------------------ */
/* Storage ready, completion */

/* Storage is open and re-checked: start trading. */
void swarm_storage_ready(struct swarm *sw) {
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next;
    if (s->state != SESS_OPEN) {
      continue;
    }
    if (only_publisher(sw) &&
        memcmp(s->remote_pk, sw->m->publisher, IDENTITY_PK_BYTES) != 0) {
      session_close(s, "client-server mode takes data from the publisher only");
      continue;
    }
    send_have_map(sw, s);
    if (take_have_map(sw, s) != 0) {
      session_close(s, "bad have-map");
      continue;
    }
    update_interest(sw, s);
  }
  maybe_finish(sw);
}

static void on_finished(void *arg, int status) {
  struct swarm *sw = arg;
  sw->refs--;
  if (sw->state != SW_FINISHING) {
    return;
  }
  if (status != 0) {
    char msg[256];
    snprintf(msg, sizeof(msg),
             "cannot move the finished download into place: "
             "%s",
             shoal_strerror(status));
    swarm_fail(sw, status, msg);
    return;
  }
  sw->state = SW_SEEDING;
  swarm_send_haves(sw); /* the last chunks: a new seeder, at once */
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next;
    update_interest(sw, s);
    if (s->state == SESS_OPEN && s->have_map_checked && sw->m != NULL &&
        s->remote_have == sw->m->chunk_count) {
      session_close(s, "both hold the whole content");
    }
  }
  for (struct partial *p = sw->partials, *next; p != NULL; p = next) {
    next = p->next;
    partial_drop(sw, p);
  }
  swarm_completed(sw);
}

static void maybe_finish(struct swarm *sw) {
  int err;
  if (sw->state != SW_RUNNING || sw->pk == NULL || !picker_complete(sw->pk) ||
      sw->puts_in_flight > 0) {
    return;
  }
  sw->state = SW_FINISHING;
  sw->refs++;
  err = storage_finish(sw->st, on_finished, sw);
  if (err != 0) {
    sw->refs--;
    sw->state = SW_RUNNING;
    swarm_fail(sw, err, "cannot finish the download");
  }
}

/* ------------------------------------------------------------------------ */

/* A download that lacks chunks none of its peers has, with no complete
 * copy connected, waits for a source that may never come (its seeder left,
 * or stopped serving a file that changed): after NODE_NO_SOURCE_MS of that,
 * say so once, and again if it happens again after sources came back. */
static void watch_sources(struct swarm *sw, uint64_t now) {
  struct node_swarm_info info;
  struct node_event ev;
  char msg[600];
  uint32_t missing = 0;
  swarm_info(sw, &info);
  if (info.seeders == 0 && !picker_complete(sw->pk)) {
    missing = picker_unsourced(sw->pk);
  }
  if (missing == 0) {
    sw->unsourced_ms = 0;
    sw->warned_unsourced = 0;
    return;
  }
  if (sw->unsourced_ms == 0) {
    sw->unsourced_ms = now;
  }
  if (sw->warned_unsourced || now - sw->unsourced_ms < NODE_NO_SOURCE_MS) {
    return;
  }
  sw->warned_unsourced = 1;
  if (info.peers == 0) {
    snprintf(msg, sizeof(msg),
             "%s: no complete source: no peer is connected, and %u chunks "
             "are missing; waiting for a peer that has them",
             sw->name, missing);
  } else {
    snprintf(msg, sizeof(msg),
             "%s: no complete source: none of the %u connected peers has %u "
             "of the missing chunks, and none has all of them; waiting for a "
             "peer that does",
             sw->name, info.peers, missing);
  }
  log_info("peer", "%s", msg);
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_WARNING;
  ev.message = msg;
  swarm_emit(sw, &ev);
}

void swarm_tick(struct swarm *sw, uint64_t now) {
  if (sw->state == SW_FETCHING && sw->mf_from != NULL &&
      now - sw->mf_sent_ms > manifest_timeout(sw)) {
    /* Its departure hands the fetch to another peer that holds it. */
    session_close(sw->mf_from, "no manifest part in time");
  }
  if (sw->state == SW_RUNNING && sw->st != NULL) {
    uint64_t have = storage_have_bytes(sw->st);
    if (have != sw->progress_have || sw->progress_ms == 0) {
      sw->progress_have = have;
      sw->progress_ms = now;
    } else if (now - sw->progress_ms >= NODE_STALL_WARN_MS) {
      struct node_event ev;
      char msg[400];
      snprintf(msg, sizeof(msg),
               "%s: no progress for a minute; %u peers connected, none "
               "serving the missing chunks yet",
               sw->name, sw->nsessions);
      memset(&ev, 0, sizeof(ev));
      ev.type = NODE_EV_WARNING;
      ev.message = msg;
      swarm_emit(sw, &ev);
      sw->progress_ms = now;
    }
  }
  if (sw->state == SW_RUNNING && sw->pk != NULL) {
    watch_sources(sw, now);
  }
  if (sw->pk != NULL && sw->state == SW_RUNNING) {
    struct picker_block b[64];
    unsigned peers[64];
    unsigned n = picker_expire(sw->pk, now, request_timeout(sw), b, peers, 64);
    for (unsigned i = 0; i < n; i++) {
      for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
        s_next = s->next; /* a send may close s */
        if (s->slot == (int)peers[i] && s->state == SESS_OPEN) {
          (void)session_send_block(s, PWIRE_CANCEL, b[i].chunk, b[i].offset,
                                   b[i].length);
        }
      }
    }
    for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
      s_next = s->next; /* a send may close s */
      swarm_fill_requests(sw, s);
    }
  }
  if (now - sw->last_rechoke_ms >=
      (is_seeding(sw) ? NODE_SEED_RECHOKE_MS : NODE_RECHOKE_MS)) {
    swarm_rechoke(sw, now, 1);
  }
}

void swarm_emit(struct swarm *sw, struct node_event *ev) {
  struct node_swarm_info info;
  swarm_info(sw, &info);
  ev->swarm = &info;
  node_emit(sw->node, ev);
}

void swarm_info(const struct swarm *sw, struct node_swarm_info *out) {
  uint64_t now = node_now(sw->node);
  memset(out, 0, sizeof(*out));
  out->content = sw->content;
  out->name = sw->m != NULL ? sw->m->name : sw->name;
  out->total = sw->m != NULL ? sw->m->total_size : sw->size_hint;
  out->chunks = sw->m != NULL ? sw->m->chunk_count : 0;
  if (sw->st != NULL) {
    out->have = sw->is_source ? sw->m->total_size : storage_have_bytes(sw->st);
  }
  out->rate = meter_rate(&sw->down_meter, now);
  for (const struct session *s = sw->sessions; s != NULL; s = s->next) {
    if (s->state == SESS_OPEN) {
      out->peers++;
      if ((s->remote_flags & PWIRE_HELLO_SEEDER) ||
          (sw->m != NULL && s->have_map_checked &&
           s->remote_have == sw->m->chunk_count)) {
        out->seeders++;
      }
    }
  }
  out->uploaded = sw->up_bytes;
  out->downloaded = sw->down_bytes;
  out->seeding = sw->state == SW_SEEDING;
}
