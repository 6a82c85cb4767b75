/* A swarm: one content's life on this peer, and what each peer-wire
 * message means for it.
 *
 * A swarm is made (a share seeds its own files, a get fetches or loads the
 * manifest and opens its storage), trades with its sessions, hands whole
 * chunks to storage and acts on their hash, finishes, and fails or stops;
 * swarm_set_state alone moves it through those states. It decides by
 * asking the modules under it (requests.c, fetch.c, choker.c, haves.c,
 * partial.c, suspect.c, bans.c) and sends through session.c; it reaches
 * its tracker schedule and its node only through struct swarm_up. A peer
 * is struck when a chunk it alone sent fails its hash, or when a block it
 * sent differs from the same block of the copy that later verified; at
 * NODE_STRIKES_BAN strikes it is banned and never talked to again.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/textid.h"
#include "peer/bans.h"
#include "peer/choker.h"
#include "peer/fetch.h"
#include "peer/haves.h"
#include "peer/internal.h"
#include "peer/partial.h"
#include "peer/pex.h"
#include "peer/recheck.h"
#include "peer/requests.h"
#include "peer/suspect.h"

static void maybe_finish(struct swarm *sw);
static void swarm_completed(struct swarm *sw, const char *path);
static void check_existing_copy(struct swarm *sw);
static void start_manifest_fetch(struct swarm *sw, struct session *s);
static void offer_manifest_fetch(struct swarm *sw, const struct session *skip);
static void send_have_log(struct swarm *sw, struct session *s);

struct swarm *swarm_find(struct node *n, const uint8_t content[32]) {
  for (struct swarm *sw = n->swarms; sw != NULL; sw = sw->next) {
    if (memcmp(sw->content, content, MANIFEST_ID_BYTES) == 0 &&
        sw->state != SW_FAILED && sw->state != SW_STOPPING &&
        sw->state != SW_REMOVING) {
      return sw;
    }
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* States */

static const char *const swarm_state_names[SW_NSTATES] = {
    "new",     "fetching", "opening",  "running", "finishing",
    "seeding", "failed",   "stopping", "removing"};

/* Where each state may go: a bit per state. Every live state may fail,
 * stop or be removed; a failed one may still be removed. */
#define TO(s) (1u << (s))
#define ENDS (TO(SW_FAILED) | TO(SW_STOPPING) | TO(SW_REMOVING))
static const unsigned swarm_moves[SW_NSTATES] = {
    [SW_NEW] = TO(SW_FETCHING) | TO(SW_SEEDING) | ENDS,
    [SW_FETCHING] = TO(SW_OPENING) | ENDS,
    [SW_OPENING] = TO(SW_RUNNING) | TO(SW_SEEDING) | ENDS,
    [SW_RUNNING] = TO(SW_FINISHING) | ENDS,
    [SW_FINISHING] = TO(SW_SEEDING) | ENDS,
    [SW_SEEDING] = ENDS,
    [SW_FAILED] = TO(SW_REMOVING),
    [SW_STOPPING] = 0,
    [SW_REMOVING] = 0,
};
#undef ENDS
#undef TO

int swarm_state_allowed(enum swarm_state from, enum swarm_state to) {
  return (unsigned)from < SW_NSTATES && (unsigned)to < SW_NSTATES &&
         (swarm_moves[from] & (1u << to)) != 0;
}

const char *swarm_state_name(enum swarm_state s) {
  return (unsigned)s < SW_NSTATES ? swarm_state_names[s] : "?";
}

void swarm_set_state(struct swarm *sw, enum swarm_state to) {
  assert(swarm_state_allowed(sw->state, to));
  log_debug("peer", "swarm %s: %s -> %s", sw->name, swarm_state_name(sw->state),
            swarm_state_name(to));
  sw->state = to;
  if ((to == SW_FAILED || to == SW_STOPPING || to == SW_REMOVING) &&
      sw->rc != NULL) {
    /* A check of a copy in place ends with the swarm; its callback still
     * comes, once the jobs in flight are back, and finds it over (a
     * removal waits for it: it holds a reference). */
    recheck_cancel(sw->rc);
  }
}

/* One strike against pk (bans.c counts); at NODE_STRIKES_BAN (or with ban
 * set) the peer is banned, the user told, and its sessions closed. */
static void strike(struct swarm *sw, const uint8_t pk[32], int ban,
                   const char *why) {
  char who[TEXTID_SHORT_CHARS + 1];
  unsigned strikes;
  int verdict = bans_strike(sw, pk, ban, &strikes);
  if (verdict == BANS_NONE) {
    return;
  }
  textid_short(TEXTID_KEY, pk, who);
  log_warn("peer", "%s: strike %u for %s: %s", sw->name, strikes, who, why);
  if (verdict != BANS_BANNED) {
    return;
  }
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

/* The dial of ours, not yet through, that gives way to a peer whose hello
 * reached us (s) in a swarm that is full: our own dial to that same peer
 * when the duplicate rule (swarm_session_open: the session opened by the
 * lower key survives) would keep the inbound one, else the oldest dial to
 * anyone else. NULL when none may give way: the slots all hold open
 * sessions, or the only candidate is a dial to s's peer that wins. */
static struct session *dial_to_give_way(struct swarm *sw,
                                        const struct session *s) {
  struct session *oldest = NULL;
  for (struct session *o = sw->sessions; o != NULL; o = o->next) {
    if (!o->initiator || o->state == SESS_OPEN || o->state == SESS_CLOSING) {
      continue;
    }
    if (o->have_expect &&
        memcmp(o->expect_pk, s->remote_pk, IDENTITY_PK_BYTES) == 0) {
      if (memcmp(s->remote_pk, sw->node->id->pk, IDENTITY_PK_BYTES) < 0) {
        return o;
      }
      return NULL;
    }
    if (oldest == NULL || o->started_ms < oldest->started_ms) {
      oldest = o;
    }
  }
  return oldest;
}

int swarm_attach(struct swarm *sw, struct session *s) {
  unsigned max = sw->node->cfg.max_peers;
  int slot = -1;
  if (sw->state == SW_FAILED || sw->state == SW_STOPPING ||
      sw->state == SW_REMOVING) {
    return SHOAL_EBUSY;
  }
  if (sw->nsessions >= max && !s->initiator) {
    /* A swarm whose slots are held by its own dials would refuse every
     * peer that reaches it: when everyone starts at once, each newcomer
     * dials max_peers others and refuses their dials to it, and in a
     * swarm larger than max_peers a third of them never met anyone
     * (issue 18). A peer that got through beats a dial that has not. */
    struct session *o = dial_to_give_way(sw, s);
    if (o != NULL) {
      session_close(o, "gave way to a peer that reached us");
    }
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
      sw->state == SW_FAILED || sw->state == SW_REMOVING) {
    return;
  }
  sw->warned_unreachable = 1;
  /* The event is what the user sees; the log keeps it at info so that it
   * is not printed twice. */
  snprintf(msg, sizeof(msg),
           "%s: cannot connect to any of the %u peers the tracker listed "
           "(last: %s: %s) — they may be behind a firewall or listen on "
           "another address; still trying",
           sw->name, sw->an.nknown > 0 ? sw->an.nknown : 1, s->addr_text, why);
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
  refetch = fetch_left(&sw->mf, s);
  s->sw = NULL;
  if (sw->node->stopping || sw->state == SW_REMOVING) {
    return; /* every session is leaving: nothing to hand over */
  }
  /* A source of the manifest left: other peers that hold it take over. */
  if (refetch) {
    offer_manifest_fetch(sw, NULL);
  }
  if (was_unchoked) {
    swarm_rechoke(sw, node_now(sw->node), 0);
  }
  requests_fill_all(sw);
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
    s->have_at = sw->haves.n; /* the map holds the logged chunks */
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
      s->remote_have += pwire_have_map_get(s->have_map, i);
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
  if (s->state == SESS_OPEN) {
    /* Our address certificate and the records we hold (pex.c); it may
     * come before a have-map when we have no manifest yet. */
    pex_session_open(sw, s);
  }
}

/* ------------------------------------------------------------------------ */
/* Choking */

static void set_choke(struct session *s, int choke, uint64_t now) {
  if (s->am_choking == choke || s->state != SESS_OPEN) {
    return;
  }
  s->am_choking = choke;
  log_debug("peer", "%s: %s %s (it holds %u chunks)",
            s->sw != NULL ? s->sw->name : "-", choke ? "choke" : "unchoke",
            s->remote_short, s->remote_have);
  if (choke) {
    /* A choke drops every request the remote made; it asks again when
     * unchoked. */
    session_drop_requests(s);
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

/* Asks the choker (choker.c) about the open sessions, in the list's order,
 * and sends what it decides in its order. A send may close a session:
 * set_choke does nothing for one that is no longer open. */
void swarm_rechoke(struct swarm *sw, uint64_t now, int full) {
  struct session *open[PICKER_MAX_PEERS];
  struct choker_peer peers[PICKER_MAX_PEERS];
  struct choker_action act[CHOKER_ACTIONS_MAX(PICKER_MAX_PEERS)];
  unsigned n = 0, nact;

  if (sw->st == NULL || sw->state == SW_FAILED || sw->state == SW_STOPPING ||
      sw->state == SW_REMOVING) {
    return;
  }
  if (only_publisher(sw)) {
    return; /* a client-server client uploads nothing: all stay choked */
  }
  /* A swarm has at most PICKER_MAX_PEERS sessions (its picker slots). */
  for (struct session *s = sw->sessions; s != NULL; s = s->next) {
    struct choker_peer *p = &peers[n];
    if (s->state != SESS_OPEN) {
      continue;
    }
    assert(n < PICKER_MAX_PEERS);
    p->rate = meter_rate(&s->down_meter, now);
    p->have = s->remote_have;
    p->interested = (uint8_t)(s->peer_interested != 0);
    p->no_upload = (s->remote_flags & PWIRE_HELLO_NO_UPLOAD) != 0;
    p->choked = (uint8_t)(s->am_choking != 0);
    p->optimistic = (uint8_t)(s->optimistic != 0);
    p->choked_at_ms = s->choked_at_ms;
    p->unchoked_at_ms = s->unchoked_at_ms;
    open[n++] = s;
  }
  nact = choker_rechoke(&sw->ch, is_seeding(sw), sw->is_source, peers, n, now,
                        full, act);
  for (unsigned i = 0; i < nact; i++) {
    set_choke(open[act[i].peer], act[i].choke, now);
  }
  for (unsigned i = 0; i < n; i++) {
    if (open[i]->state == SESS_OPEN) {
      open[i]->optimistic = peers[i].optimistic;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Downloading */

struct put_ctx {
  struct swarm *sw;
  uint32_t chunk;
  uint32_t len;
  uint32_t nblocks;
  uint8_t *owners;             /* taken from the partial */
  uint8_t *bad_hashes;         /* nblocks x 32 */
  struct pwire_sealed *sealed; /* taken from the partial */
  uint8_t *unopened;           /* nblocks: set for a block that did not open */
};

/* Blocks of chunk that did not open (pwire_open_sealed): forged or damaged
 * on their way, or filed under another block. As for a frame the loop
 * cannot open, the sender's sessions end, and the chunk is asked for
 * again. Found only once the chunk was whole, such a block cost the whole
 * chunk, not one frame: so its sender also takes a strike (one a chunk),
 * and one that keeps sending them is banned (NODE_STRIKES_BAN). */
static void blocks_unopened(struct swarm *sw, uint32_t chunk,
                            const uint8_t *owners, const uint8_t *unopened,
                            uint32_t nblocks) {
  for (uint32_t i = 0; i < nblocks; i++) {
    const uint8_t *pk = owners + (size_t)i * IDENTITY_PK_BYTES;
    char who[TEXTID_SHORT_CHARS + 1];
    int again = 0;
    if (!unopened[i]) {
      continue;
    }
    for (uint32_t j = 0; j < i && !again; j++) {
      again = unopened[j] && memcmp(owners + (size_t)j * IDENTITY_PK_BYTES, pk,
                                    IDENTITY_PK_BYTES) == 0;
    }
    if (again) {
      continue;
    }
    strike(sw, pk, 0, "sent a DATA frame that does not open");
    textid_short(TEXTID_KEY, pk, who);
    log_warn("peer",
             "%s: block %u of chunk %u from %s does not open (forged or "
             "damaged on its way); closing its session",
             sw->name, i, chunk, who);
    for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
      next = s->next;
      if (memcmp(s->remote_pk, pk, IDENTITY_PK_BYTES) == 0) {
        session_close(s, "a DATA frame does not open");
      }
    }
  }
}

static void put_ctx_free(struct put_ctx *c) {
  free(c->owners);
  free(c->bad_hashes);
  partial_sealed_free(c->sealed, c->nblocks);
  free(c->unopened);
  free(c);
}

/* Whether s is open, has our have-map, and was not sent all of the log. */
static int have_behind(const struct swarm *sw, const struct session *s) {
  return s->state == SESS_OPEN && s->sent_have_map && s->have_at < sw->haves.n;
}

/* Sends s the chunks of the have-log it was not sent yet, in one HAVE. */
static void send_have_log(struct swarm *sw, struct session *s) {
  uint8_t payload[HAVES_PAYLOAD_MAX];
  struct pwire_msg m;
  if (!have_behind(sw, s)) {
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_HAVE;
  m.data = payload;
  m.data_len = haves_payload(&sw->haves, s->have_at, payload);
  s->have_at = sw->haves.n;
  (void)session_send(s, &m);
}

/* Whether s should hear of a new chunk within NODE_HAVE_MS (haves.h). */
static int wants_have_soon(const struct swarm *sw, const struct session *s) {
  int holds_all = sw->m != NULL && s->remote_have == sw->m->chunk_count;
  return haves_eager(holds_all, s->am_choking, s->peer_interested);
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
  haves_restart(&sw->haves, node_now(sw->node));
}

/* Sends the HAVEs that are due at now (haves_due decides) and returns how
 * many ms until more are due, or 0 when nothing waits. */
uint64_t swarm_haves_due(struct swarm *sw, uint64_t now) {
  struct haves_due d;
  int eager_behind = 0;
  for (const struct session *s = sw->sessions; s != NULL; s = s->next) {
    eager_behind |= have_behind(sw, s) && wants_have_soon(sw, s);
  }
  d = haves_due(&sw->haves, now, eager_behind);
  if (d.all) {
    swarm_send_haves(sw);
    return 0;
  }
  if (d.eager) {
    for (struct session *s = sw->sessions, *s_next; s != NULL; s = s_next) {
      s_next = s->next; /* a send may close s */
      if (!have_behind(sw, s) || !wants_have_soon(sw, s)) {
        continue;
      }
      send_have_log(sw, s);
      haves_sent_eager(&sw->haves, now);
    }
  }
  return d.wait_ms;
}

/* Logs chunk for the next HAVEs; a peer that wants it soon hears at once
 * when its last HAVE went out NODE_HAVE_MS ago or more (a chunk is worth
 * most to the swarm when it is new). */
static void have_soon(struct swarm *sw, uint32_t chunk) {
  uint64_t wait;
  if (haves_full(&sw->haves)) {
    swarm_send_haves(sw);
  }
  haves_add(&sw->haves, chunk);
  wait = swarm_haves_due(sw, node_now(sw->node));
  if (wait > 0) {
    sw->node->swarm_up->have_later(sw->node, wait);
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
      requests_interest(sw, s);
      requests_fill(sw, s);
    }
    maybe_finish(sw);
  } else if (status == SHOAL_EBADSIG || status == SHOAL_EPROTO) {
    sw->node->wasted_bytes += c->len;
    picker_chunk_failed(sw->pk, c->chunk);
    blocks_unopened(sw, c->chunk, c->owners, c->unopened, c->nblocks);
  } else if (status == SHOAL_EHASH) {
    /* Who sent it? One sender alone is proof; with several, remember each
     * block's hash and sender, to compare with the copy that verifies. */
    int sole = suspect_sole_sender(c->owners, c->nblocks);
    log_warn("peer", "%s: chunk %u failed its hash", sw->name, c->chunk);
    sw->node->wasted_bytes += c->len;
    picker_chunk_failed(sw->pk, c->chunk);
    if (sole) {
      strike(sw, c->owners, 0, "sent a chunk that failed its hash");
    } else if (suspect_find(sw, c->chunk) == NULL &&
               suspect_add(sw, c->chunk, c->nblocks, c->owners,
                           c->bad_hashes) == 0) {
      c->owners = NULL; /* the record took them */
      c->bad_hashes = NULL;
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
  put_ctx_free(c);
}

/* The chunk is whole: check the suspects, then hand it to storage, which
 * verifies it off the loop. */
static void submit_chunk(struct swarm *sw, struct partial *p) {
  struct suspect *x = suspect_find(sw, p->chunk);
  struct put_ctx *c = calloc(1, sizeof(*c));
  uint32_t chunk = p->chunk, nb = p->nblocks ? p->nblocks : 1;
  uint8_t *data = p->data;
  int err;

  if (c != NULL) {
    c->unopened = calloc(nb, 1);
    c->bad_hashes = calloc(nb, 32);
  }
  if (c == NULL || c->unopened == NULL || c->bad_hashes == NULL) {
    goto failed;
  }
  if (x != NULL) {
    /* Compared with the suspects here, on the loop: opened here too. A
     * rare path, taken only after a copy of this chunk failed. */
    if (storage_open_blocks(p->sealed, chunk, p->data, p->len, c->unopened) !=
        0) {
      blocks_unopened(sw, chunk, p->owners, c->unopened, p->nblocks);
      goto failed;
    }
    if (x->nblocks == p->nblocks &&
        manifest_verify_chunk(sw->m, chunk, p->data, p->len) == 0) {
      /* This copy is good: a sender whose block of the failed copy
       * differs from the good block sent bad data; one strike per
       * sender. */
      const uint8_t **who = calloc(x->nblocks, sizeof(*who));
      uint32_t nwho = who != NULL ? suspect_blame(x, p->data, p->len, who) : 0;
      for (uint32_t i = 0; i < nwho; i++) {
        strike(sw, who[i], 0,
               "sent a block that differs from the verified chunk");
      }
      free(who);
      suspect_drop(sw, x);
    }
  }
  c->sw = sw;
  c->chunk = chunk;
  c->len = p->len;
  c->nblocks = p->nblocks;
  c->owners = p->owners;
  c->sealed = p->sealed;
  p->owners = NULL;
  p->sealed = NULL;
  p->data = NULL;
  partial_drop(sw, p);
  err =
      storage_put_chunk_or_hash_blocks(sw->st, chunk, data, c->bad_hashes,
                                       c->sealed, c->unopened, on_chunk_put, c);
  if (err != 0) {
    storage_chunk_free(data);
    picker_chunk_failed(sw->pk, chunk);
    put_ctx_free(c);
    return;
  }
  sw->puts_in_flight++;
  sw->put_bytes += c->len;
  return;

failed:
  if (c != NULL) {
    put_ctx_free(c);
  }
  partial_drop(sw, p);
  picker_chunk_failed(sw->pk, chunk);
}

uint8_t *swarm_data_dest(struct swarm *sw, struct session *s, uint32_t chunk,
                         uint32_t offset, size_t len) {
  struct picker_block b;
  struct partial *p;

  if (sw == NULL || sw->m == NULL || sw->pk == NULL ||
      sw->state != SW_RUNNING || s->slot < 0 || len == 0 ||
      len > PWIRE_BLOCK_BYTES || offset % PWIRE_BLOCK_BYTES != 0 ||
      pwire_check_block(sw->m, chunk, offset, (uint32_t)len) != 0) {
    return NULL; /* the picker asks only for whole blocks */
  }
  b.chunk = chunk;
  b.offset = offset;
  b.length = (uint32_t)len;
  /* Only a block still missing: a forged frame then leaves bytes where
   * nothing had arrived yet, which the block's next copy overwrites. */
  if (!picker_block_wanted(sw->pk, (unsigned)s->slot, &b)) {
    return NULL;
  }
  p = partial_get(sw, chunk);
  return p != NULL ? p->data + offset : NULL;
}

static int on_data(struct swarm *sw, struct session *s,
                   const struct pwire_msg *m) {
  struct picker_block b;
  unsigned cancel[PICKER_ENDGAME_DUP];
  unsigned ncancel = 0;
  int chunk_done = 0;
  struct partial *p;

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
  partial_add_block(p, m->offset, m->data, m->data_len, s->remote_pk,
                    m->sealed);
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
  requests_fill(sw, s);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The manifest (fetch.c holds the bytes and the requests) */

/* Sends fetch.c's request. A session whose send fails gives its part
 * back, for the next offer (at the latest the next tick's). */
static void send_manifest_ask(struct swarm *sw, const struct fetch_ask *a) {
  struct pwire_msg m;
  if (a->to == NULL) {
    return;
  }
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_MANIFEST_REQ;
  m.offset = a->offset;
  m.length = a->length;
  if (session_send(a->to, &m) != 0) {
    (void)fetch_left(&sw->mf, a->to);
  } else {
    a->to->manifest_asked++;
  }
}

/* A swarm without its manifest asks s, which holds it, for a part nobody
 * is asked for, if there is one; not while an answer the fetch no longer
 * waits for is on its way from s. */
static void start_manifest_fetch(struct swarm *sw, struct session *s) {
  struct fetch_ask a;
  if (sw->state != SW_FETCHING || s->manifest_asked > 0) {
    return;
  }
  if (fetch_offer(&sw->mf, s, node_now(sw->node), &a)) {
    send_manifest_ask(sw, &a);
  }
}

/* Offers every open session that holds the manifest but skip (may be
 * NULL) the parts nobody is asked for. */
static void offer_manifest_fetch(struct swarm *sw, const struct session *skip) {
  if (sw->state != SW_FETCHING) {
    return;
  }
  for (struct session *o = sw->sessions, *o_next; o != NULL; o = o_next) {
    o_next = o->next; /* a send may close o */
    if (o != skip && o->state == SESS_OPEN && o->have_map != NULL) {
      start_manifest_fetch(sw, o);
    }
  }
}

/* The content ID holds the manifest's bytes: a content of an older shoal
 * cannot be upgraded, only shared again. */
static void swarm_fail_old_manifest(struct swarm *sw, unsigned version) {
  char msg[256];
  snprintf(msg, sizeof(msg),
           "the content was shared by an older shoal (manifest version %u), "
           "which this one (version %d) no longer reads — ask its publisher "
           "to share it again with this version and send the new link",
           version, MANIFEST_VERSION);
  swarm_fail(sw, SHOAL_EVERSION, msg);
}

static int on_manifest_part(struct swarm *sw, struct session *s,
                            const struct pwire_msg *m) {
  struct manifest *man = NULL;
  struct fetch_ask ask;
  int err = 0;
  int r;

  if (s->manifest_asked == 0) {
    return SHOAL_EPROTO; /* never asked */
  }
  s->manifest_asked--;
  if (sw->state != SW_FETCHING) {
    return 0; /* late: the manifest is in */
  }
  r = fetch_on_part(&sw->mf, sw->content, s, m, node_now(sw->node), &ask, &man,
                    &err);
  if (r == SHOAL_EPROTO) {
    return 0; /* late: the fetch started again or gave s's part away */
  }
  switch (r) {
  case FETCH_MORE:
    send_manifest_ask(sw, &ask);
    /* After the first part of a large manifest, the others take units. */
    offer_manifest_fetch(sw, s);
    return 0;
  case FETCH_RETRY:
    log_warn("peer",
             "%s: the manifest from several peers is not the content's; "
             "fetching it from one peer",
             sw->name);
    offer_manifest_fetch(sw, NULL);
    return 0;
  case FETCH_NOT_OURS:
    strike(sw, s->remote_pk, 1, "sent a manifest that is not the content's");
    /* Another peer that holds it is asked (the strike may have closed s). */
    offer_manifest_fetch(sw, s);
    return 0;
  case FETCH_INVALID:
    if (err == SHOAL_EVERSION) {
      swarm_fail_old_manifest(sw, sw->mf.version);
    } else {
      char msg[256];
      snprintf(msg, sizeof(msg),
               "the content's manifest is invalid (%s); its publisher made a "
               "bad manifest, so no peer can fix it",
               shoal_strerror(err));
      swarm_fail(sw, err, msg);
    }
    return 0;
  case FETCH_DONE:
    sw->m = man;
    swarm_manifest_ready(sw);
    return 0;
  default:
    return r; /* why s is closed */
  }
}

/* A peer may ask for the manifest once it has our have-map. The upload
 * limit counts the part's bytes as it counts blocks: the part goes at
 * once, and the blocks after it wait until the bucket has earned it. */
static int on_manifest_req(struct swarm *sw, struct session *s,
                           const struct pwire_msg *m) {
  int err;
  if (sw->m == NULL || !s->sent_have_map) {
    return SHOAL_EPROTO;
  }
  err = fetch_answer(sw->m, s, m);
  if (err == 0) {
    size_t n = sw->m->encoded_len - m->offset;
    rate_charge(&sw->node->up_bucket, n < m->length ? n : m->length,
                node_now(sw->node));
  }
  return err;
}

/* ------------------------------------------------------------------------ */
/* Messages */

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
      requests_interest(sw, s);
      if (sw->state == SW_SEEDING && s->remote_have == sw->m->chunk_count) {
        session_close(s, "both hold the whole content");
      }
    } else {
      start_manifest_fetch(sw, s);
    }
    return 0;
  case PWIRE_HAVE: {
    struct pwire_have_iter it;
    uint32_t chunk;
    pwire_have_begin(&it, m);
    while (pwire_have_next(&it, &chunk)) {
      if (s->have_map == NULL || chunk / 8 >= s->have_map_len ||
          (sw->m != NULL && chunk >= sw->m->chunk_count)) {
        return SHOAL_EINVAL;
      }
      if (!pwire_have_map_get(s->have_map, chunk)) {
        pwire_have_map_set(s->have_map, chunk);
        s->remote_have++;
        if (s->in_picker) {
          picker_peer_have(sw->pk, (unsigned)s->slot, chunk);
        }
      }
    }
    requests_interest(sw, s);
    requests_fill(sw, s);
    if (sw->state == SW_SEEDING && sw->m != NULL &&
        s->remote_have == sw->m->chunk_count) {
      session_close(s, "both hold the whole content");
    }
    return 0;
  }
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
    return requests_choked(sw, s);
  case PWIRE_UNCHOKE:
    requests_unchoked(sw, s);
    return 0;
  case PWIRE_REQUEST:
    return session_queue_request(s, m);
  case PWIRE_DATA:
    return on_data(sw, s, m);
  case PWIRE_CANCEL:
    if (sw->m == NULL ||
        pwire_check_block(sw->m, m->chunk, m->offset, m->length) != 0) {
      return SHOAL_EINVAL;
    }
    session_cancel_request(s, m);
    return 0;
  case PWIRE_REJECT:
    return requests_rejected(sw, s, m);
  case PWIRE_KEEPALIVE:
    return 0;
  case PWIRE_PEX:
    return pex_on_message(sw, s, m);
  default:
    return SHOAL_EPROTO;
  }
}

void swarm_upload_sent(struct swarm *sw, struct session *s, uint32_t len) {
  uint64_t now = node_now(sw->node);
  s->up_bytes += len;
  meter_add(&s->up_meter, len, now);
  meter_add(&sw->node->up_meter, len, now);
  sw->up_bytes += len;
  sw->node->up_bytes += len;
}

/* ------------------------------------------------------------------------ */
/* A swarm's life: made, opened, completed, failed, freed */

struct swarm *swarm_new(struct node *n, const uint8_t content[32]) {
  struct swarm *sw = calloc(1, sizeof(*sw));
  if (sw == NULL) {
    return NULL;
  }
  sw->node = n;
  memcpy(sw->content, content, MANIFEST_ID_BYTES);
  textid_encode(TEXTID_CONTENT, content, sw->content_text);
  fetch_init(&sw->mf);
  haves_init(&sw->haves);
  meter_init(&sw->down_meter, 5000, node_now(n));
  sw->started_ms = node_now(n);
  choker_init(&sw->ch, node_now(n), randombytes_uniform);
  sw->next = n->swarms;
  n->swarms = sw;
  return sw;
}

void swarm_free(struct swarm *sw) {
  if (sw == NULL) {
    return;
  }
  picker_free(sw->pk);
  pex_swarm_free(sw);
  manifest_free(sw->m);
  fetch_free(&sw->mf);
  partial_drop_all(sw);
  suspect_drop_all(sw);
  bans_free(sw);
  free(sw->dir);
  free(sw);
}

void swarm_fail(struct swarm *sw, int code, const char *msg) {
  struct node_event ev;
  if (sw->state == SW_FAILED || sw->state == SW_STOPPING ||
      sw->state == SW_REMOVING) {
    return; /* it is over already: nothing more to tell */
  }
  /* The event carries the failure to the user, who sees it once; the log
   * keeps it for --log-level info. */
  log_info("peer", "%s: %s", sw->name, msg);
  swarm_set_state(sw, SW_FAILED);
  sw->node->swarm_up->failed(sw);
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

int swarm_open_source(struct swarm *sw) {
  int err = storage_open_source(&sw->st, sw->node->loop, sw->m);
  if (err != 0) {
    char msg[600];
    sw->st = NULL;
    snprintf(msg, sizeof(msg), "cannot open the files of %s: %s", sw->name,
             shoal_strerror(err));
    swarm_fail(sw, err, msg); /* reported through the event */
    return err;
  }
  swarm_set_state(sw, SW_SEEDING);
  sw->complete_ms = node_now(sw->node);
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
/* Getting: the manifest saved or fetched, the storage opened */

static void resume_path(const struct swarm *sw, char *out, size_t cap) {
  snprintf(out, cap, "%s/resume/%s", sw->node->home, sw->content_text);
}

static void on_storage_open(void *arg, int status) {
  struct swarm *sw = arg;
  struct node_event ev;
  sw->refs--;
  if (sw->state != SW_OPENING) {
    return;
  }
  if (status == UV_EEXIST) {
    /* DIR/NAME is there: a finished copy is checked, never written. */
    check_existing_copy(sw);
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
  swarm_set_state(sw, SW_RUNNING);
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
  fetch_save(sw->node->loop, sw->node->home, sw->content_text, sw->m);
  resume_path(sw, rpath, sizeof(rpath));
  swarm_set_state(sw, SW_OPENING);
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

void swarm_load_manifest(struct swarm *sw) {
  unsigned old = 0;
  struct manifest *m =
      fetch_load(sw->node->home, sw->content_text, sw->content, &old);
  if (old != 0) {
    swarm_fail_old_manifest(sw, old);
    return;
  }
  if (m != NULL) {
    log_info("peer", "%s: manifest from %s/manifests", m->name, sw->node->home);
    sw->m = m;
    swarm_manifest_ready(sw);
  }
}

/* ------------------------------------------------------------------------ */
/* A copy already in place: checked, then seeded as a source */

static void on_copy_progress(void *arg, uint64_t done, uint64_t total) {
  struct swarm *sw = arg;
  struct node_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_HASHING;
  ev.done = done;
  ev.total = total;
  swarm_emit(sw, &ev);
}

/* The copy at final is whole: serve it as a source under the content's
 * ID. The swarm holds everything, so it completes at once; it is never
 * published by us (the publisher did that), only announced. */
static void seed_copy(struct swarm *sw, const char *final,
                      const struct recheck_result *res) {
  char msg[4600];
  int err = recheck_apply(sw->m, sw->dir, res);
  if (err == 0) {
    err = storage_open_source(&sw->st, sw->node->loop, sw->m);
  }
  if (err != 0) {
    sw->st = NULL;
    snprintf(msg, sizeof(msg), "cannot serve %s: %s", final,
             shoal_strerror(err));
    swarm_fail(sw, err, msg);
    return;
  }
  sw->is_source = 1;
  /* The schedule publishes a source that is not yet published; this one
   * is someone else's content, already in the catalog: announce only. */
  sw->an.published = 1;
  swarm_set_state(sw, SW_SEEDING);
  log_info("peer", "%s: %s is whole (%u files read, %u trusted); seeding it",
           sw->name, final, res->files_hashed, res->nfiles - res->files_hashed);
  /* Peers met while the copy was checked get our have-map now. */
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next;
    if (s->state != SESS_OPEN) {
      continue;
    }
    send_have_map(sw, s);
    if (take_have_map(sw, s) != 0) {
      session_close(s, "bad have-map");
    } else if (s->have_map_checked && s->remote_have == sw->m->chunk_count) {
      session_close(s, "both hold the whole content");
    }
  }
  swarm_completed(sw, final);
}

static void on_copy_checked(void *arg, int status,
                            const struct recheck_result *res) {
  struct swarm *sw = arg;
  char final[4400], msg[9000];
  sw->rc = NULL;
  sw->refs--;
  if (sw->state != SW_OPENING) {
    return; /* failed or stopping meanwhile */
  }
  snprintf(final, sizeof(final), "%s/%s", sw->dir, sw->m->name);
  if (status == SHOAL_ECHANGED) {
    snprintf(msg, sizeof(msg),
             "%s exists and differs from the content (%s); nothing was "
             "overwritten — move it away or choose another folder with -o",
             final, res->why);
    swarm_fail(sw, UV_EEXIST, msg);
    return;
  }
  if (status != 0) {
    snprintf(msg, sizeof(msg),
             "%s exists and cannot be checked against the content (%s); "
             "nothing was overwritten — move it away or choose another "
             "folder with -o",
             final, res->why[0] != '\0' ? res->why : shoal_strerror(status));
    swarm_fail(sw, status, msg);
    return;
  }
  seed_copy(sw, final, res);
}

/* The download's open found DIR/NAME already there. It may be this very
 * content, finished earlier: check it (every file hashed, on the pool),
 * and seed it when it is whole; a copy that differs is left as it is. */
static void check_existing_copy(struct swarm *sw) {
  char msg[4600];
  int err;
  if (sw->st != NULL) {
    storage_close(sw->st, NULL, NULL); /* the failed open's; it made nothing */
    sw->st = NULL;
  }
  log_info("peer", "%s: %s/%s exists; checking it against the content",
           sw->name, sw->dir, sw->m->name);
  err = recheck_start(&sw->rc, sw->node->loop, sw->m, sw->dir, NULL, 0,
                      on_copy_progress, on_copy_checked, sw);
  if (err != 0) {
    sw->rc = NULL;
    snprintf(msg, sizeof(msg),
             "%s/%s exists and cannot be checked: %s; nothing was "
             "overwritten",
             sw->dir, sw->m->name, shoal_strerror(err));
    swarm_fail(sw, err, msg);
    return;
  }
  sw->refs++;
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
    requests_interest(sw, s);
  }
  maybe_finish(sw);
}

/* Every chunk is in place at path: "completed" to the trackers, and
 * NODE_EV_COMPLETE. */
static void swarm_completed(struct swarm *sw, const char *path) {
  struct node_event ev;
  sw->complete_ms = node_now(sw->node);
  memset(&ev, 0, sizeof(ev));
  ev.type = NODE_EV_COMPLETE;
  ev.path = path;
  ev.seconds = (double)(sw->complete_ms - sw->started_ms) / 1000.0;
  sw->node->swarm_up->completed(sw);
  swarm_emit(sw, &ev);
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
  swarm_set_state(sw, SW_SEEDING);
  swarm_send_haves(sw); /* the last chunks: a new seeder, at once */
  for (struct session *s = sw->sessions, *next; s != NULL; s = next) {
    next = s->next;
    requests_interest(sw, s);
    if (s->state == SESS_OPEN && s->have_map_checked && sw->m != NULL &&
        s->remote_have == sw->m->chunk_count) {
      session_close(s, "both hold the whole content");
    }
  }
  partial_drop_all(sw);
  swarm_completed(sw, storage_final_path(sw->st));
}

static void maybe_finish(struct swarm *sw) {
  int err;
  if (sw->state != SW_RUNNING || sw->pk == NULL || !picker_complete(sw->pk) ||
      sw->puts_in_flight > 0) {
    return;
  }
  swarm_set_state(sw, SW_FINISHING);
  sw->refs++;
  err = storage_finish(sw->st, on_finished, sw);
  if (err != 0) {
    /* No callback comes: the finish failed before it began. */
    sw->refs--;
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

/* Whether nothing can pass through s either way: the peer holds nothing
 * we lack (no have-map: not even the manifest; or, once we have the
 * manifest, no chunk we want) and wants nothing of ours. */
static int futile(const struct swarm *sw, const struct session *s) {
  int has_for_us =
      s->have_map != NULL && (sw->state == SW_FETCHING || s->am_interested);
  return s->state == SESS_OPEN && !has_for_us && !s->peer_interested;
}

/* A get whose slots are full of peers that have nothing for it, and want
 * nothing of it, would wait forever: when peers start together, the late
 * ones fill each other's slots before any of them holds a chunk, and
 * those who hold chunks are full too (issue 18: 13 of 32 downloaders sat
 * at 0 with 12 empty sessions each). The oldest such session past
 * NODE_FUTILE_MS makes room, and a lookup (seeders first) follows. */
static void make_room(struct swarm *sw, uint64_t now) {
  struct session *oldest = NULL;
  if (sw->is_source || sw->nsessions < sw->node->cfg.max_peers ||
      (sw->state != SW_FETCHING && sw->state != SW_RUNNING)) {
    return;
  }
  for (struct session *s = sw->sessions; s != NULL; s = s->next) {
    if (futile(sw, s) && now - s->started_ms >= NODE_FUTILE_MS &&
        (oldest == NULL || s->started_ms < oldest->started_ms)) {
      oldest = s;
    }
  }
  if (oldest != NULL) {
    session_close(oldest, "neither side has anything for the other; "
                          "making room");
    sw->node->swarm_up->lookup_soon(sw);
  }
}

void swarm_tick(struct swarm *sw, uint64_t now) {
  make_room(sw, now);
  if (sw->state == SW_FETCHING) {
    struct session *late = fetch_overdue(
        &sw->mf, now, fetch_timeout_ms(&sw->mf, &sw->node->down_bucket));
    if (late != NULL) {
      /* Its departure hands the fetch to another peer that holds it. */
      session_close(late, "no manifest part in time");
    }
    offer_manifest_fetch(sw, NULL); /* a part given back and not yet taken */
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
  requests_expire(sw, now);
  if (choker_due(&sw->ch, is_seeding(sw), now)) {
    swarm_rechoke(sw, now, 1);
  }
  pex_tick(sw, now);
}

void swarm_emit(struct swarm *sw, const struct node_event *ev) {
  struct node_swarm_info info;
  struct node_event e = *ev; /* the figures live only for the call */
  swarm_info(sw, &info);
  e.swarm = &info;
  node_emit(sw->node, &e);
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
