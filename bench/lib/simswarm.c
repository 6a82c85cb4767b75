/* The swarm simulator: a discrete-event model of one content spreading
 * from an origin to N downloaders, driven by the peer's real policy
 * modules (simswarm.h).
 *
 * What is modelled, and how:
 *
 * - Hosts. The origin (peer 0) seeds from its own files (is_source); the
 *   downloaders 1..N start at 0 (or arrive as a Poisson process), get the
 *   content, and seed it after completing. Each host has an upload cap and
 *   optionally a download cap, in bytes a second of whole Ethernet frames,
 *   as bench/compare.sh's tbf qdiscs count them.
 * - Bandwidth. A TCP connection that has blocks to send is one transfer;
 *   an uploader's capacity is shared evenly among its transfers, and a
 *   capped downloader's among the transfers coming in; a transfer runs at
 *   the smaller of its two shares (simswarm_share). Rates are recomputed
 *   whenever a transfer starts or stops at either end. TCP's own dynamics
 *   (slow start, losses, retransmissions, uneven windows) are not.
 * - Bytes on the wire. DATA carries its block with the frame header, the
 *   message head and the AEAD tag, cut into segments of MTU - 52 payload
 *   bytes, each 66 bytes of Ethernet, IP and TCP (with timestamps) more.
 *   A control message is one packet. The receiver of data sends one ACK
 *   of 66 bytes per two segments; ACKs and control messages take their
 *   share of the sender's uplink: each host's capacity for data is its cap
 *   less the rate of that overhead over its last half-second tick.
 * - Latency. Every message takes latency_us from one host to another; a
 *   block arrives latency_us after its last byte left. Control messages
 *   do not queue behind data in the send buffers (the real peer bounds
 *   that wait at about NODE_QUEUE_MS of the session's share).
 * - The peer's policy, through its own code: the manifest is made with
 *   manifest_layout (chunks of manifest_choose_chunk_log2), blocks of
 *   PWIRE_BLOCK_BYTES; every request comes from picker_next (rarest
 *   first, random first, endgame with its copy rules), every DATA goes
 *   through picker_block_done with its CANCELs, timeouts through
 *   picker_expire with requests.c's timeout rule, the pipeline's depth
 *   from pacing_depth over a rate_meter of each session, interest from
 *   picker_interesting. Choking is choker_rechoke with its real slots and
 *   periods (the full round on each host's 500 ms tick when choker_due
 *   says so, the partial one on INTERESTED, NOT_INTERESTED and a
 *   departure, as swarm.c calls it). HAVEs are gathered and paced by
 *   haves.c as swarm.c does (prompt to eager peers, a second for the
 *   others). A session that finds both ends complete closes.
 * - Finding peers. Each downloader announces, then looks up peers as
 *   announce.c does (at once after "started", 1 s after a lookup that
 *   found someone new, doubling to 30 s when it did not; 30 s while its
 *   sessions are full; never while seeding), asking for max_peers minus
 *   its sessions (at most TMSG_MAX_PEERS); the tracker answers with a
 *   random sample of those announced, seeders first, never the asker. A
 *   dial holds a slot at once; the hello reaches the other side 1.5 round
 *   trips later, which refuses it when its own sessions (dials included)
 *   fill max_peers, and keeps one session when two peers dial each other
 *   (the dial of the lower index); with give_way, an inbound hello in a
 *   full swarm takes the slot of its oldest dial instead (issue 18's
 *   rule). The manifest (its encoded size) is fetched from the first peer
 *   whose have-map arrives, in one part, as fetch.c fetches any manifest
 *   up to PWIRE_MANIFEST_PART_BYTES (a file's has at most 2,048 hashes,
 *   64 KiB). The answer is written when the request arrives, and while
 *   any answer of a host is not yet out its sessions start no blocks
 *   (pacing_ahead_wait, as session.c holds them).
 *
 * What is not: CPU time (hashing, encryption, system calls: a chunk is
 * verified the moment its last block arrives), disks, the read pipeline
 * and send queues of the upload side, the rate limiter (the study caps
 * with tc), keepalives and idle timeouts, peer exchange, bans and failed
 * hashes, packet losses. A block being sent when its session is choked is
 * dropped at once (the real one finishes from the socket's buffer and is
 * thrown away by the receiver).
 */
#include "bench/lib/simswarm.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/lib/simheap.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "common/tmsg.h"
#include "peer/choker.h"
#include "peer/haves.h"
#include "peer/limits.h"
#include "peer/node.h"
#include "peer/pacing.h"
#include "peer/picker.h"
#include "peer/rate.h"

/* ------------------------------------------------------------------------ */
/* Constants of the model */

#define TICK_US 500000u      /* the node's tick (node.c NODE_TICK_MS) */
#define LOOKUP_MIN_MS 1000u  /* announce.c */
#define LOOKUP_MAX_MS 30000u /* announce.c */
#define PKT_HEADER 66u       /* Ethernet 14, IP 20, TCP with timestamps 32 */
#define TCP_OVERHEAD 52u     /* IP and TCP headers inside the MTU */
#define ETH_HEADER 14u
#define TAG PWIRE_TAG_BYTES
/* One frame of a control message without payload (CHOKE and the like). */
#define SIMPLE_FRAME (FRAME_HEADER_BYTES + 1u + TAG)
#define BLOCK_FRAME (FRAME_HEADER_BYTES + PWIRE_BLOCK_MSG_BYTES + TAG)
/* What a manifest's encoding holds beside its chunk hashes (version, kind,
 * name, file record, publisher, signature): a few hundred bytes. */
#define MANIFEST_FIXED 300u
#define NONE UINT32_MAX
/* A session's upload queue entry that stands for the whole manifest. */
#define ITEM_MANIFEST UINT32_MAX

/* ------------------------------------------------------------------------ */
/* The generator: xoshiro256** seeded by splitmix64 */

static uint64_t rng_s[4];

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static void rng_seed(uint64_t seed) {
  uint64_t x = seed;
  for (unsigned i = 0; i < 4; i++) {
    rng_s[i] = splitmix(&x);
  }
}

static uint64_t rotl(uint64_t v, int k) {
  return (v << k) | (v >> (64 - k));
}

static uint64_t rng_next(void) {
  uint64_t r = rotl(rng_s[1] * 5, 7) * 9;
  uint64_t t = rng_s[1] << 17;
  rng_s[2] ^= rng_s[0];
  rng_s[3] ^= rng_s[1];
  rng_s[1] ^= rng_s[2];
  rng_s[0] ^= rng_s[3];
  rng_s[2] ^= t;
  rng_s[3] = rotl(rng_s[3], 45);
  return r;
}

/* Uniform below upper (> 0), without modulo bias. */
static uint32_t rng_uniform(uint32_t upper) {
  uint64_t lim = UINT64_MAX - UINT64_MAX % upper;
  uint64_t r;
  do {
    r = rng_next();
  } while (r >= lim);
  return (uint32_t)(r % upper);
}

static double rng_unit(void) {
  return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static const char *rb_name(void) {
  return "shoal-simswarm";
}

static uint32_t rb_random(void) {
  return (uint32_t)(rng_next() >> 32);
}

static void rb_buf(void *const buf, const size_t size) {
  uint8_t *p = buf;
  for (size_t i = 0; i < size; i += 8) {
    uint64_t r = rng_next();
    size_t k = size - i < 8 ? size - i : 8;
    memcpy(p + i, &r, k);
  }
}

static randombytes_implementation rb_impl = {
    rb_name, rb_random, NULL, rng_uniform, rb_buf, NULL,
};

void simswarm_random_install(void) {
  rng_seed(1);
  (void)randombytes_set_implementation(&rb_impl);
  /* sodium_init draws a few random bytes of its own: it does so now, so
   * that no run's stream depends on whether it was the first. */
  if (sodium_init() < 0) {
    abort();
  }
}

/* ------------------------------------------------------------------------ */
/* State */

enum sess_state { S_FREE = 0, S_DIALING, S_OPEN };

/* One end of a connection: what its host knows and does on it. */
struct sess {
  uint32_t peer, remote; /* host of this end, host of the other */
  uint32_t mirror;       /* the other end (NONE before it exists) */
  uint32_t mirror_gen;   /* its gen: a freed and reused end is not it */
  uint32_t gen;          /* bumped on free: older events are stale */
  uint32_t next_free;
  uint8_t state, initiator;
  uint8_t am_choking, am_interested, peer_choking, peer_interested;
  uint8_t in_picker, optimistic, sent_have_map;
  uint8_t manifest_req; /* the remote asked for our manifest */
  /* A CHOKE (and an UNCHOKE after it) waits behind the block on its way
   * (set_choke). */
  uint8_t choke_behind, unchoke_behind;
  int slot;          /* picker id at this end */
  uint8_t *have_map; /* the remote's chunks as far as we know */
  uint32_t remote_have;
  unsigned have_at; /* entries of the host's have-log sent here */
  struct rate_meter down_meter;
  uint64_t choked_at_ms, unchoked_at_ms;
  uint64_t dial_us; /* when we dialled (initiator) */
  /* Uploads: the remote's requests (block ids), oldest first. */
  uint32_t *upq;
  unsigned upq_head, upq_len;
  /* The transfer this end is sending, when flowing. */
  uint8_t flowing;
  uint32_t item; /* block id, or ITEM_MANIFEST */
  double rem;    /* wire bytes of it left at t_rate */
  double rate;   /* wire bytes a second */
  uint64_t t_rate;
  uint32_t flow_ver;
};

enum peer_state { P_ABSENT = 0, P_FETCHING, P_RUNNING, P_SEEDING, P_GONE };

struct speer {
  enum peer_state state;
  int is_source;
  double up_cap, down_cap; /* wire bytes a second; down 0: none */
  double up_eff;           /* up_cap less the overhead of the last tick */
  uint64_t overhead;       /* ACK and control bytes sent since the tick */
  uint64_t start_us, complete_us;
  uint64_t manifest_us; /* when the manifest was whole (0: not yet) */
  struct picker *pk;
  uint8_t *have; /* our chunks, have-map layout */
  uint32_t have_count;
  uint32_t *sess; /* session ends, in the order they attached */
  unsigned nsess;
  uint32_t slot_sess[PICKER_MAX_PEERS];
  struct choker ch;
  struct haves haves;
  uint64_t have_timer_us; /* a have timer is due then (0: none) */
  unsigned n_up, n_down;  /* transfers out of and into this host */
  uint32_t fetch_from;    /* session the manifest is asked of, or NONE */
  uint64_t lookup_backoff_ms;
  int lookup_busy;
  uint32_t lookup_ver; /* the lookup timer: older events are stale */
  int registered, tracker_seeder;
  uint32_t tracker_pos; /* its place in the tracker's list */
  uint64_t up_bytes;
  struct pacing_ahead ahead; /* manifest parts ahead of DATA */
  uint64_t pump_at_us;       /* a pump is due then (0: none) */
  /* Time its uplink sent nothing (n_up 0) since the last progress line,
   * and since when it has been idle. */
  uint64_t idle_us;
  uint64_t idle_from_us;
  uint64_t idle_all_us; /* ... and in all, never reset */
  uint64_t gone_us;     /* when it left (0: it did not) */
};

struct sim {
  const struct simswarm_config *c;
  struct simheap h;
  uint64_t now; /* microseconds */
  struct manifest *m;
  uint32_t nchunks, bpc; /* chunks, blocks per chunk */
  size_t map_len;
  unsigned max_peers;
  double seg_factor; /* wire bytes per payload byte of a stream */
  uint64_t manifest_bytes;
  unsigned npeers; /* origin + downloaders */
  struct speer *p;
  struct sess *s;
  uint32_t nsess_alloc, nsess_cap, free_sess;
  /* The tracker: announced peers, seeders first in sampling. */
  uint32_t *tracker;
  unsigned ntracker;
  unsigned done, arrived;
  uint64_t events, refused, wasted, origin_bytes, total_bytes;
  struct simswarm_bytes bytes; /* where the upload capacity went */
  int err;
};

enum ev_kind {
  EV_START = 1,
  EV_TICK,
  EV_TRACKER_PUT,  /* an announce reaches the tracker: a = seeder */
  EV_TRACKER_DEL,  /* "stopped" reaches the tracker */
  EV_LOOKUP,       /* the lookup timer */
  EV_LOOKUP_ASK,   /* a lookup reaches the tracker: b = want */
  EV_LOOKUP_REPLY, /* payload: peer ids, c of them */
  EV_DIAL,         /* a = dialer's end, b = its gen: the hello arrives */
  EV_OPENED,       /* a = dialer's end, b = gen: the other's hello */
  EV_MSG,          /* a = receiving end, b = gen, c = type, d = arg */
  EV_FLOW,         /* a = sending end, b = gen, c = flow version */
  EV_HAVE_TIMER,
  EV_PUMP, /* a = peer: the hold of DATA behind manifests is over */
  EV_LEAVE,
  EV_PROGRESS,
};

enum msg_type {
  M_HAVE_MAP = 1, /* payload: a copy of the sender's map */
  M_HAVE,         /* payload: d chunks (uint32) */
  M_INTERESTED,
  M_NOT_INTERESTED,
  M_CHOKE,
  M_UNCHOKE,
  M_REQUEST, /* payload: d block ids */
  M_CANCEL,  /* d = block id */
  M_REJECT,  /* d = block id */
  M_DATA,    /* d = block id */
  M_MANIFEST_REQ,
  M_MANIFEST,
  M_CLOSE,
};

static uint64_t now_ms(const struct sim *S) {
  return S->now / 1000u;
}

static void push(struct sim *S, uint64_t t, uint32_t kind, uint32_t a,
                 uint32_t b, uint32_t c, uint32_t d, void *payload) {
  struct simev e;
  int err;
  if (S->err != 0) {
    free(payload);
    return;
  }
  e.t = t;
  e.kind = kind;
  e.a = a;
  e.b = b;
  e.c = c;
  e.d = d;
  e.payload = payload;
  err = simheap_push(&S->h, &e);
  if (err != 0) {
    free(payload);
    S->err = err;
  }
}

/* ------------------------------------------------------------------------ */
/* Blocks */

static uint32_t block_id(const struct sim *S, const struct picker_block *b) {
  return b->chunk * S->bpc + b->offset / PWIRE_BLOCK_BYTES;
}

static void block_of(const struct sim *S, uint32_t id, struct picker_block *b) {
  uint32_t clen;
  b->chunk = id / S->bpc;
  b->offset = (id % S->bpc) * PWIRE_BLOCK_BYTES;
  clen = manifest_chunk_len(S->m, b->chunk);
  b->length = clen - b->offset < PWIRE_BLOCK_BYTES ? clen - b->offset
                                                   : PWIRE_BLOCK_BYTES;
}

/* Wire bytes of a stream of payload bytes (full segments). */
static double stream_wire(const struct sim *S, double payload) {
  return payload * S->seg_factor;
}

static double item_wire(const struct sim *S, uint32_t item) {
  struct picker_block b;
  if (item == ITEM_MANIFEST) {
    return stream_wire(S, (double)S->manifest_bytes);
  }
  block_of(S, item, &b);
  return stream_wire(
      S, (double)(FRAME_HEADER_BYTES + PWIRE_DATA_HEAD_BYTES + b.length + TAG));
}

/* ------------------------------------------------------------------------ */
/* Bandwidth */

double simswarm_share(double up, unsigned n_up, double down, unsigned n_down) {
  double r = up / (n_up > 0 ? n_up : 1);
  if (down > 0) {
    double d = down / (n_down > 0 ? n_down : 1);
    r = d < r ? d : r;
  }
  return r;
}

static void flow_schedule(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  const struct speer *u = &S->p[s->peer], *d = &S->p[s->remote];
  double secs;
  s->rate = simswarm_share(u->up_eff, u->n_up, d->down_cap, d->n_down);
  s->t_rate = S->now;
  s->flow_ver++;
  secs = s->rem > 0 ? s->rem / s->rate : 0;
  push(S, S->now + (uint64_t)ceil(secs * 1e6), EV_FLOW, si, s->gen, s->flow_ver,
       0, NULL);
}

/* Brings s's remaining bytes up to now at its old rate, then gives it its
 * share of now. */
static void flow_rerate(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  s->rem -= s->rate * (double)(S->now - s->t_rate) / 1e6;
  if (s->rem < 0) {
    s->rem = 0;
  }
  flow_schedule(S, si);
}

static void rerate_up(struct sim *S, uint32_t peer) {
  struct speer *u = &S->p[peer];
  for (unsigned i = 0; i < u->nsess; i++) {
    if (S->s[u->sess[i]].flowing) {
      flow_rerate(S, u->sess[i]);
    }
  }
}

static void rerate_down(struct sim *S, uint32_t peer) {
  struct speer *d = &S->p[peer];
  if (d->down_cap <= 0) {
    return; /* its share does not limit anyone */
  }
  for (unsigned i = 0; i < d->nsess; i++) {
    uint32_t mi = S->s[d->sess[i]].mirror;
    if (mi != NONE && S->s[mi].flowing) {
      flow_rerate(S, mi);
    }
  }
}

/* Whether s has something to send: its manifest answer at once, blocks
 * when unchoked and no manifest part of its host waits
 * (pacing_ahead_wait). */
static int has_work(const struct sim *S, const struct sess *s) {
  return s->state == S_OPEN &&
         (s->manifest_req ||
          (s->upq_len > 0 && !s->am_choking &&
           pacing_ahead_wait(&S->p[s->peer].ahead, now_ms(S)) == 0));
}

/* Takes the next item of s: the manifest first, then the oldest request. */
static uint32_t take_item(struct sess *s) {
  uint32_t item;
  if (s->manifest_req) {
    s->manifest_req = 0;
    return ITEM_MANIFEST;
  }
  item = s->upq[s->upq_head];
  s->upq_head = (s->upq_head + 1) % NODE_MAX_REMOTE_REQUESTS;
  s->upq_len--;
  return item;
}

/* Starts a transfer on s when it has something to send. */
static void pump(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  struct speer *p = &S->p[s->peer];
  uint64_t wait;
  if (s->flowing) {
    return;
  }
  if (!has_work(S, s)) {
    wait = pacing_ahead_wait(&p->ahead, now_ms(S));
    if (s->upq_len > 0 && !s->am_choking && wait > 0 && p->pump_at_us == 0) {
      /* Blocks wait behind manifest parts: come back when the hold ends
       * (or sooner, when the last part is out). */
      p->pump_at_us = S->now + wait * 1000u;
      push(S, p->pump_at_us, EV_PUMP, s->peer, 0, 0, 0, NULL);
    }
    return;
  }
  s->item = take_item(s);
  s->rem = item_wire(S, s->item);
  s->rate = 0;
  s->flowing = 1;
  if (S->p[s->peer].n_up++ == 0) {
    S->p[s->peer].idle_us += S->now - S->p[s->peer].idle_from_us;
    S->p[s->peer].idle_all_us += S->now - S->p[s->peer].idle_from_us;
  }
  S->p[s->remote].n_down++;
  rerate_up(S, s->peer);
  rerate_down(S, s->remote);
}

/* Every session of peer that can send starts (node_pump_now). */
static void pump_all(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  for (unsigned i = 0; i < p->nsess; i++) {
    pump(S, p->sess[i]);
  }
}

/* A manifest answer of peer is out, or will never be: DATA may go again
 * when it was the last (pacing_ahead_taken). */
static void manifest_taken(struct sim *S, uint32_t peer) {
  if (pacing_ahead_taken(&S->p[peer].ahead)) {
    pump_all(S, peer);
  }
}

/* Stops s's transfer: its item is through, or given up (flow_cut). */
static void flow_stop(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  if (!s->flowing) {
    return;
  }
  s->flowing = 0;
  s->flow_ver++;
  if (--S->p[s->peer].n_up == 0) {
    S->p[s->peer].idle_from_us = S->now;
  }
  S->p[s->remote].n_down--;
  rerate_up(S, s->peer);
  rerate_down(S, s->remote);
}

/* Stops s's transfer before its item is through: what went of it is
 * lost. */
static void flow_cut(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  if (s->flowing) {
    double left = s->rem - s->rate * (double)(S->now - s->t_rate) / 1e6;
    S->bytes.lost += item_wire(S, s->item) - (left > 0 ? left : 0);
  }
  flow_stop(S, si);
}

/* ------------------------------------------------------------------------ */
/* Messages */

/* Sends a message on s to its other end, charging wire_bytes to the
 * sender's uplink as overhead (0 for DATA and the manifest, which their
 * transfer carried). */
static void send_wire(struct sim *S, uint32_t si, uint32_t type, uint32_t arg,
                      void *payload, uint32_t wire_bytes) {
  struct sess *s = &S->s[si];
  if (s->state != S_OPEN || s->mirror == NONE) {
    free(payload);
    return;
  }
  S->p[s->peer].overhead += wire_bytes;
  S->bytes.control += wire_bytes;
  if (type == M_HAVE) {
    S->bytes.have += wire_bytes;
  }
  push(S, S->now + S->c->latency_us, EV_MSG, s->mirror, s->mirror_gen, type,
       arg, payload);
}

/* A control message of frame_bytes: one packet of its own. */
static void send_msg(struct sim *S, uint32_t si, uint32_t type, uint32_t arg,
                     void *payload, uint32_t frame_bytes) {
  send_wire(S, si, type, arg, payload, PKT_HEADER + frame_bytes);
}

static void send_simple(struct sim *S, uint32_t si, uint32_t type) {
  send_msg(S, si, type, 0, NULL, SIMPLE_FRAME);
}

/* ------------------------------------------------------------------------ */
/* Sessions: made, attached, closed */

static uint32_t sess_new(struct sim *S) {
  uint32_t si;
  if (S->free_sess != NONE) {
    si = S->free_sess;
    S->free_sess = S->s[si].next_free;
  } else {
    if (S->nsess_alloc == S->nsess_cap) {
      uint32_t cap = S->nsess_cap ? S->nsess_cap * 2 : 1024;
      struct sess *grown = realloc(S->s, (size_t)cap * sizeof(*grown));
      if (grown == NULL) {
        S->err = SHOAL_ENOMEM;
        return NONE;
      }
      memset(grown + S->nsess_cap, 0,
             (size_t)(cap - S->nsess_cap) * sizeof(*grown));
      S->s = grown;
      S->nsess_cap = cap;
    }
    si = S->nsess_alloc++;
  }
  {
    struct sess *s = &S->s[si];
    uint32_t gen = s->gen;
    uint32_t *upq = s->upq;
    uint8_t *map = s->have_map;
    memset(s, 0, sizeof(*s));
    s->gen = gen;
    s->upq = upq; /* kept for the next user of the slot */
    s->have_map = map;
    s->mirror = NONE;
    s->slot = -1;
    s->am_choking = 1;
    s->peer_choking = 1;
    if (s->have_map != NULL) {
      memset(s->have_map, 0, S->map_len);
    }
  }
  return si;
}

static void sess_free(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  s->state = S_FREE;
  s->gen++;
  s->next_free = S->free_sess;
  S->free_sess = si;
}

/* Adds session si to peer's list; SHOAL_EBUSY when its sessions are
 * full (swarm_attach). */
static int attach(struct sim *S, uint32_t peer, uint32_t si) {
  struct speer *p = &S->p[peer];
  struct sess *s = &S->s[si];
  unsigned slot;
  if (p->nsess >= S->max_peers) {
    return SHOAL_EBUSY;
  }
  for (slot = 0; slot < PICKER_MAX_PEERS && p->slot_sess[slot] != NONE;
       slot++) {
  }
  if (slot == PICKER_MAX_PEERS) {
    return SHOAL_EBUSY;
  }
  p->slot_sess[slot] = si;
  s->slot = (int)slot;
  s->peer = peer;
  p->sess[p->nsess++] = si;
  return 0;
}

static uint32_t find_sess(const struct sim *S, uint32_t peer, uint32_t remote) {
  const struct speer *p = &S->p[peer];
  for (unsigned i = 0; i < p->nsess; i++) {
    if (S->s[p->sess[i]].remote == remote) {
      return p->sess[i];
    }
  }
  return NONE;
}

static void rechoke(struct sim *S, uint32_t peer, int full);
static void fill(struct sim *S, uint32_t peer, uint32_t si);
static void fill_all(struct sim *S, uint32_t peer);
static void interest(struct sim *S, uint32_t peer, uint32_t si);
static void start_fetch(struct sim *S, uint32_t peer);

/* Session si leaves its host (swarm_detach); tell says whether the other
 * end hears of it (a CLOSE after the latency). */
static void detach(struct sim *S, uint32_t si, int tell) {
  struct sess *s = &S->s[si];
  uint32_t peer = s->peer;
  struct speer *p = &S->p[peer];
  int was_unchoked = s->state == S_OPEN && !s->am_choking && s->peer_interested;
  int was_fetch = p->fetch_from == si;
  /* A manifest answer not yet out dies with its connection. */
  int mf_lost = s->manifest_req || (s->flowing && s->item == ITEM_MANIFEST);
  if (s->state == S_FREE) {
    return;
  }
  /* A dial the other side took already has an open end there, which
   * hears of the close as of any other (a FIN on the connection). */
  if ((tell || s->state == S_DIALING) && s->mirror != NONE) {
    push(S, S->now + S->c->latency_us, EV_MSG, s->mirror, s->mirror_gen,
         M_CLOSE, 0, NULL);
  }
  s->manifest_req = 0;
  flow_cut(S, si);
  if (s->in_picker && p->pk != NULL) {
    picker_peer_remove(p->pk, (unsigned)s->slot);
  }
  s->in_picker = 0;
  if (s->slot >= 0) {
    p->slot_sess[s->slot] = NONE;
  }
  for (unsigned i = 0; i < p->nsess; i++) {
    if (p->sess[i] == si) {
      memmove(&p->sess[i], &p->sess[i + 1],
              (p->nsess - i - 1) * sizeof(p->sess[0]));
      p->nsess--;
      break;
    }
  }
  s->upq_len = 0;
  sess_free(S, si);
  if (mf_lost) {
    manifest_taken(S, peer);
  }
  if (p->state == P_GONE) {
    return;
  }
  if (was_fetch) {
    p->fetch_from = NONE;
    start_fetch(S, peer);
  }
  if (was_unchoked) {
    rechoke(S, peer, 0);
  }
  fill_all(S, peer);
}

/* ------------------------------------------------------------------------ */
/* HAVEs (swarm.c's have-log, paced by haves.c) */

static int have_behind(const struct speer *p, const struct sess *s) {
  return s->state == S_OPEN && s->sent_have_map && s->have_at < p->haves.n;
}

static void send_have_log(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  struct speer *p = &S->p[s->peer];
  uint8_t payload[HAVES_PAYLOAD_MAX];
  size_t len;
  const uint32_t *since;
  uint32_t *chunks;
  unsigned n;
  if (!have_behind(p, s)) {
    return;
  }
  /* The bytes are those the peer's HAVE would carry. */
  len = haves_payload(&p->haves, s->have_at, payload);
  since = haves_since(&p->haves, s->have_at, &n);
  chunks = malloc(n * sizeof(*chunks));
  if (chunks == NULL) {
    S->err = SHOAL_ENOMEM;
    return;
  }
  memcpy(chunks, since, n * sizeof(*chunks));
  s->have_at = p->haves.n;
  send_msg(S, si, M_HAVE, n, chunks,
           (uint32_t)(FRAME_HEADER_BYTES + 1 + len + TAG));
}

static int wants_have_soon(const struct sim *S, const struct sess *s) {
  return haves_eager(s->remote_have == S->nchunks, s->am_choking,
                     s->peer_interested);
}

static void send_haves_all(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  for (unsigned i = 0; i < p->nsess; i++) {
    send_have_log(S, p->sess[i]);
  }
  for (unsigned i = 0; i < p->nsess; i++) {
    S->s[p->sess[i]].have_at = 0;
  }
  haves_restart(&p->haves, now_ms(S));
}

/* swarm_haves_due: sends what is due, returns ms until more is. */
static uint64_t haves_tick(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  struct haves_due d;
  int eager_behind = 0;
  for (unsigned i = 0; i < p->nsess; i++) {
    const struct sess *s = &S->s[p->sess[i]];
    eager_behind |= have_behind(p, s) && wants_have_soon(S, s);
  }
  d = haves_due(&p->haves, now_ms(S), eager_behind);
  if (d.all) {
    send_haves_all(S, peer);
    return 0;
  }
  if (d.eager) {
    for (unsigned i = 0; i < p->nsess; i++) {
      const struct sess *s = &S->s[p->sess[i]];
      if (!have_behind(p, s) || !wants_have_soon(S, s)) {
        continue;
      }
      send_have_log(S, p->sess[i]);
      haves_sent_eager(&p->haves, now_ms(S));
    }
  }
  return d.wait_ms;
}

static void have_later(struct sim *S, uint32_t peer, uint64_t wait_ms) {
  struct speer *p = &S->p[peer];
  uint64_t at = S->now + wait_ms * 1000u;
  if (p->have_timer_us != 0 && p->have_timer_us <= at) {
    return;
  }
  p->have_timer_us = at;
  push(S, at, EV_HAVE_TIMER, peer, 0, 0, 0, NULL);
}

static void have_soon(struct sim *S, uint32_t peer, uint32_t chunk) {
  struct speer *p = &S->p[peer];
  uint64_t wait;
  if (haves_full(&p->haves)) {
    send_haves_all(S, peer);
  }
  haves_add(&p->haves, chunk);
  wait = haves_tick(S, peer);
  if (wait > 0) {
    have_later(S, peer, wait);
  }
}

/* ------------------------------------------------------------------------ */
/* Have-maps and the picker */

static void send_have_map(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  struct speer *p = &S->p[s->peer];
  uint8_t *copy;
  if (s->sent_have_map || s->state != S_OPEN ||
      (p->state != P_RUNNING && p->state != P_SEEDING)) {
    return;
  }
  copy = malloc(S->map_len);
  if (copy == NULL) {
    S->err = SHOAL_ENOMEM;
    return;
  }
  memcpy(copy, p->have, S->map_len);
  s->sent_have_map = 1;
  s->have_at = p->haves.n;
  send_msg(S, si, M_HAVE_MAP, 0, copy,
           (uint32_t)(FRAME_HEADER_BYTES + 1 + S->map_len + TAG));
}

/* Puts the remote's have-map into our picker (take_have_map). */
static void take_have_map(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  struct speer *p = &S->p[s->peer];
  if (s->have_map == NULL || s->in_picker || p->pk == NULL ||
      s->remote_have == NONE) {
    return;
  }
  if (picker_peer_add(p->pk, (unsigned)s->slot, s->have_map) != 0) {
    S->err = SHOAL_ENOMEM;
    return;
  }
  s->in_picker = 1;
}

/* requests_interest */
static void interest(struct sim *S, uint32_t peer, uint32_t si) {
  struct sess *s = &S->s[si];
  struct speer *p = &S->p[peer];
  int want = s->state == S_OPEN && p->pk != NULL && s->in_picker &&
             p->state == P_RUNNING &&
             picker_interesting(p->pk, (unsigned)s->slot);
  if (want == s->am_interested) {
    return;
  }
  s->am_interested = (uint8_t)want;
  send_simple(S, si, want ? M_INTERESTED : M_NOT_INTERESTED);
}

/* requests_fill: about a second of the session's rate in flight, topped up
 * in quarters. */
static void fill(struct sim *S, uint32_t peer, uint32_t si) {
  struct picker_block blocks[NODE_PIPELINE];
  struct sess *s = &S->s[si];
  struct speer *p = &S->p[peer];
  unsigned have, n, depth;
  uint64_t rate;
  uint32_t *ids;
  if (s->state != S_OPEN || p->pk == NULL || !s->in_picker || s->peer_choking ||
      !s->am_interested || p->state != P_RUNNING) {
    return;
  }
  have = picker_outstanding(p->pk, (unsigned)s->slot);
  rate = meter_rate(&s->down_meter, now_ms(S));
  depth = pacing_depth(rate, S->m->chunk_log2, pacing_pipeline_cap(0));
  picker_peer_rate(p->pk, (unsigned)s->slot, rate);
  if (have >= depth || (have > 0 && depth - have < (depth + 3) / 4)) {
    return;
  }
  n = picker_next(p->pk, (unsigned)s->slot, now_ms(S), blocks, depth - have);
  if (n == 0) {
    return;
  }
  ids = malloc(n * sizeof(*ids));
  if (ids == NULL) {
    S->err = SHOAL_ENOMEM;
    return;
  }
  for (unsigned i = 0; i < n; i++) {
    ids[i] = block_id(S, &blocks[i]);
  }
  send_msg(S, si, M_REQUEST, n, ids, n * BLOCK_FRAME);
}

static void fill_all(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  for (unsigned i = p->nsess; i-- > 0;) {
    fill(S, peer, p->sess[i]);
  }
}

/* requests.c's request_timeout (no download limit of shoal's own). */
static uint64_t request_timeout(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  uint64_t longest = 0;
  for (unsigned i = 0; i < p->nsess; i++) {
    struct sess *x = &S->s[p->sess[i]];
    unsigned out;
    uint64_t rate, t;
    if (x->state != S_OPEN || !x->in_picker) {
      continue;
    }
    out = picker_outstanding(p->pk, (unsigned)x->slot);
    rate = meter_rate(&x->down_meter, now_ms(S));
    if (out == 0 || rate == 0) {
      continue;
    }
    t = pacing_arrival_ms((uint64_t)out * PWIRE_BLOCK_BYTES, rate);
    longest = t > longest ? t : longest;
  }
  return pacing_request_timeout(longest);
}

/* requests_expire */
static void expire(struct sim *S, uint32_t peer) {
  struct picker_block b[64];
  unsigned peers[64];
  struct speer *p = &S->p[peer];
  unsigned n;
  if (p->pk == NULL || p->state != P_RUNNING) {
    return;
  }
  n = picker_expire(p->pk, now_ms(S), request_timeout(S, peer), b, peers, 64);
  for (unsigned i = 0; i < n; i++) {
    uint32_t si = p->slot_sess[peers[i]];
    if (si != NONE && S->s[si].state == S_OPEN) {
      send_msg(S, si, M_CANCEL, block_id(S, &b[i]), NULL, BLOCK_FRAME);
    }
  }
  fill_all(S, peer);
}

/* ------------------------------------------------------------------------ */
/* Choking (swarm_rechoke over choker.c) */

/* An UNCHOKE, and the chunks the peer may now ask for. */
static void send_unchoke(struct sim *S, uint32_t si) {
  send_simple(S, si, M_UNCHOKE);
  send_have_log(S, si);
}

static void set_choke(struct sim *S, uint32_t si, int choke) {
  struct sess *s = &S->s[si];
  if (s->am_choking == choke || s->state != S_OPEN) {
    return;
  }
  s->am_choking = (uint8_t)choke;
  if (choke) {
    /* As swarm.c's set_choke: the requests that wait are dropped, and the
     * CHOKE follows the block already written, which arrives whole. */
    s->upq_len = 0;
    s->choked_at_ms = now_ms(S);
    s->optimistic = 0;
    if (s->flowing && s->item != ITEM_MANIFEST) {
      s->choke_behind = 1;
      s->unchoke_behind = 0;
    } else {
      send_simple(S, si, M_CHOKE);
    }
  } else {
    s->unchoked_at_ms = now_ms(S);
    if (s->choke_behind) {
      s->unchoke_behind = 1; /* after the CHOKE, behind the same block */
      return;
    }
    send_unchoke(S, si);
  }
}

/* The block a CHOKE waited behind is out: the CHOKE follows, and the
 * UNCHOKE when s was unchoked again meanwhile. */
static void choke_after_block(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  if (!s->choke_behind) {
    return;
  }
  s->choke_behind = 0;
  send_simple(S, si, M_CHOKE);
  if (s->unchoke_behind) {
    s->unchoke_behind = 0;
    send_unchoke(S, si);
  }
}

static void rechoke(struct sim *S, uint32_t peer, int full) {
  struct choker_peer cp[PICKER_MAX_PEERS];
  struct choker_action act[CHOKER_ACTIONS_MAX(PICKER_MAX_PEERS)];
  uint32_t open[PICKER_MAX_PEERS];
  struct speer *p = &S->p[peer];
  unsigned n = 0, nact;
  if (p->state != P_RUNNING && p->state != P_SEEDING) {
    return;
  }
  /* The real swarm's list has the newest session first. */
  for (unsigned i = p->nsess; i-- > 0;) {
    struct sess *s = &S->s[p->sess[i]];
    if (s->state != S_OPEN) {
      continue;
    }
    cp[n].rate = meter_rate(&s->down_meter, now_ms(S));
    cp[n].have = s->remote_have == NONE ? 0 : s->remote_have;
    cp[n].interested = s->peer_interested;
    cp[n].no_upload = 0;
    cp[n].choked = s->am_choking;
    cp[n].optimistic = s->optimistic;
    cp[n].choked_at_ms = s->choked_at_ms;
    cp[n].unchoked_at_ms = s->unchoked_at_ms;
    open[n++] = p->sess[i];
  }
  nact = choker_rechoke(&p->ch, p->state == P_SEEDING, p->is_source, cp, n,
                        now_ms(S), full, act);
  for (unsigned i = 0; i < nact; i++) {
    set_choke(S, open[act[i].peer], act[i].choke);
  }
  for (unsigned i = 0; i < n; i++) {
    if (S->s[open[i]].state == S_OPEN) {
      S->s[open[i]].optimistic = cp[i].optimistic;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* The manifest, completion */

static void start_fetch(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  if (p->state != P_FETCHING || p->fetch_from != NONE) {
    return;
  }
  for (unsigned i = p->nsess; i-- > 0;) {
    struct sess *s = &S->s[p->sess[i]];
    if (s->state == S_OPEN && s->remote_have != NONE) {
      p->fetch_from = p->sess[i];
      send_msg(S, p->sess[i], M_MANIFEST_REQ, 0, NULL, BLOCK_FRAME);
      return;
    }
  }
}

/* The manifest arrived: storage is ready, trading starts
 * (swarm_storage_ready). */
static void manifest_ready(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  p->pk = picker_new(S->m, NULL);
  if (p->pk == NULL) {
    S->err = SHOAL_ENOMEM;
    return;
  }
  p->state = P_RUNNING;
  p->fetch_from = NONE;
  p->manifest_us = S->now;
  for (unsigned i = p->nsess; i-- > 0;) {
    uint32_t si = p->sess[i];
    if (S->s[si].state != S_OPEN) {
      continue;
    }
    send_have_map(S, si);
    take_have_map(S, si);
    interest(S, peer, si);
  }
}

static void tracker_put_later(struct sim *S, uint32_t peer, int seeder) {
  push(S, S->now + S->c->latency_us, EV_TRACKER_PUT, peer, (uint32_t)seeder, 0,
       0, NULL);
}

/* Every chunk is verified: seeding (on_finished). */
static void finish(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  p->state = P_SEEDING;
  p->complete_us = S->now;
  S->done++;
  send_haves_all(S, peer);
  for (unsigned i = p->nsess; i-- > 0;) {
    uint32_t si = p->sess[i];
    interest(S, peer, si);
  }
  for (unsigned i = p->nsess; i-- > 0;) {
    uint32_t si = p->sess[i];
    if (i < p->nsess && S->s[si].state == S_OPEN &&
        S->s[si].remote_have == S->nchunks) {
      detach(S, si, 1); /* both hold the whole content */
    }
  }
  tracker_put_later(S, peer, 1);
  if (S->c->arrival_rate > 0 && S->c->linger_s >= 0) {
    push(S, S->now + (uint64_t)(S->c->linger_s * 1e6), EV_LEAVE, peer, 0, 0, 0,
         NULL);
  }
}

static void chunk_verified(struct sim *S, uint32_t peer, uint32_t chunk) {
  struct speer *p = &S->p[peer];
  picker_chunk_verified(p->pk, chunk);
  pwire_have_map_set(p->have, chunk);
  p->have_count++;
  have_soon(S, peer, chunk);
  for (unsigned i = p->nsess; i-- > 0;) {
    uint32_t si = p->sess[i];
    interest(S, peer, si);
    fill(S, peer, si);
  }
  if (picker_complete(p->pk)) {
    finish(S, peer);
  }
}

/* ------------------------------------------------------------------------ */
/* Messages arriving */

static void on_data(struct sim *S, uint32_t si, uint32_t id) {
  struct sess *s = &S->s[si];
  uint32_t peer = s->peer;
  struct speer *p = &S->p[peer];
  struct picker_block b;
  unsigned cancel[PICKER_ENDGAME_DUP];
  unsigned ncancel = 0;
  int chunk_done = 0;
  uint32_t gen = s->gen;
  block_of(S, id, &b);
  meter_add(&s->down_meter, b.length, now_ms(S));
  if (p->pk == NULL || p->state != P_RUNNING) {
    return;
  }
  if (!picker_block_done(p->pk, (unsigned)s->slot, &b, &chunk_done, cancel,
                         &ncancel)) {
    S->wasted += b.length;
    return;
  }
  for (unsigned i = 0; i < ncancel; i++) {
    uint32_t o = p->slot_sess[cancel[i]];
    if (o != NONE && S->s[o].state == S_OPEN) {
      send_msg(S, o, M_CANCEL, id, NULL, BLOCK_FRAME);
    }
  }
  if (chunk_done) {
    chunk_verified(S, peer, b.chunk);
  }
  if (S->s[si].state == S_OPEN && S->s[si].gen == gen) {
    fill(S, peer, si);
  }
}

static void on_request(struct sim *S, uint32_t si, const uint32_t *ids,
                       uint32_t n) {
  struct sess *s = &S->s[si];
  struct speer *p = &S->p[s->peer];
  for (uint32_t i = 0; i < n; i++) {
    struct picker_block b;
    block_of(S, ids[i], &b);
    if (s->am_choking || !pwire_have_map_get(p->have, b.chunk)) {
      send_msg(S, si, M_REJECT, ids[i], NULL, BLOCK_FRAME);
      continue;
    }
    if (s->upq_len >= NODE_MAX_REMOTE_REQUESTS) {
      detach(S, si, 1); /* too many requests outstanding */
      return;
    }
    if (s->upq == NULL) {
      s->upq = malloc(NODE_MAX_REMOTE_REQUESTS * sizeof(*s->upq));
      if (s->upq == NULL) {
        S->err = SHOAL_ENOMEM;
        return;
      }
    }
    s->upq[(s->upq_head + s->upq_len) % NODE_MAX_REMOTE_REQUESTS] = ids[i];
    s->upq_len++;
  }
  pump(S, si);
}

static void on_cancel(struct sim *S, uint32_t si, uint32_t id) {
  struct sess *s = &S->s[si];
  unsigned kept = 0;
  for (unsigned i = 0; i < s->upq_len; i++) {
    uint32_t x = s->upq[(s->upq_head + i) % NODE_MAX_REMOTE_REQUESTS];
    if (x != id) {
      s->upq[(s->upq_head + kept) % NODE_MAX_REMOTE_REQUESTS] = x;
      kept++;
    }
  }
  s->upq_len = kept;
}

static void on_have(struct sim *S, uint32_t si, const uint32_t *chunks,
                    uint32_t n) {
  struct sess *s = &S->s[si];
  uint32_t peer = s->peer;
  struct speer *p = &S->p[peer];
  if (s->remote_have == NONE) {
    return; /* a HAVE before its map: the real peer closes; never here */
  }
  for (uint32_t i = 0; i < n; i++) {
    if (!pwire_have_map_get(s->have_map, chunks[i])) {
      pwire_have_map_set(s->have_map, chunks[i]);
      s->remote_have++;
      if (s->in_picker) {
        picker_peer_have(p->pk, (unsigned)s->slot, chunks[i]);
      }
    }
  }
  interest(S, peer, si);
  fill(S, peer, si);
  if (p->state == P_SEEDING && s->remote_have == S->nchunks) {
    detach(S, si, 1);
  }
}

static void on_have_map(struct sim *S, uint32_t si, const uint8_t *map) {
  struct sess *s = &S->s[si];
  uint32_t peer = s->peer;
  struct speer *p = &S->p[peer];
  if (s->have_map == NULL) {
    s->have_map = malloc(S->map_len);
    if (s->have_map == NULL) {
      S->err = SHOAL_ENOMEM;
      return;
    }
  }
  memcpy(s->have_map, map, S->map_len);
  s->remote_have = 0;
  for (uint32_t c = 0; c < S->nchunks; c++) {
    s->remote_have += (uint32_t)pwire_have_map_get(map, c);
  }
  if (p->state == P_FETCHING) {
    start_fetch(S, peer);
    return;
  }
  take_have_map(S, si);
  interest(S, peer, si);
  if (p->state == P_SEEDING && s->remote_have == S->nchunks) {
    detach(S, si, 1);
  }
}

static void on_msg(struct sim *S, const struct simev *e) {
  uint32_t si = e->a;
  struct sess *s = &S->s[si];
  uint32_t peer = s->peer;
  struct speer *p = &S->p[peer];
  if (s->gen != e->b || s->state != S_OPEN || p->state == P_GONE) {
    return; /* the session closed meanwhile */
  }
  switch (e->c) {
  case M_HAVE_MAP:
    on_have_map(S, si, e->payload);
    break;
  case M_HAVE:
    on_have(S, si, e->payload, e->d);
    break;
  case M_INTERESTED:
    s->peer_interested = 1;
    rechoke(S, peer, 0);
    break;
  case M_NOT_INTERESTED:
    s->peer_interested = 0;
    if (!s->am_choking) {
      set_choke(S, si, 1);
      rechoke(S, peer, 0);
    }
    break;
  case M_CHOKE:
    s->peer_choking = 1;
    if (s->in_picker) {
      /* Whatever was asked is dropped by the remote (requests_choked). */
      picker_peer_remove(p->pk, (unsigned)s->slot);
      s->in_picker = 0;
      take_have_map(S, si);
    }
    break;
  case M_UNCHOKE:
    s->peer_choking = 0;
    fill(S, peer, si);
    break;
  case M_REQUEST:
    on_request(S, si, e->payload, e->d);
    break;
  case M_CANCEL:
    on_cancel(S, si, e->d);
    break;
  case M_REJECT:
    if (p->pk != NULL && s->in_picker) {
      struct picker_block b;
      block_of(S, e->d, &b);
      picker_block_rejected(p->pk, (unsigned)s->slot, &b);
    }
    break;
  case M_DATA:
    on_data(S, si, e->d);
    break;
  case M_MANIFEST_REQ:
    /* Answered at once (fetch_answer): the part is written now. */
    if (!s->manifest_req) {
      s->manifest_req = 1;
      pacing_ahead_wrote(&p->ahead, now_ms(S), S->manifest_bytes,
                         (uint64_t)p->up_cap);
    }
    pump(S, si);
    break;
  case M_MANIFEST:
    if (p->state == P_FETCHING) {
      manifest_ready(S, peer);
    }
    break;
  case M_CLOSE:
    detach(S, si, 0);
    break;
  default:
    break;
  }
}

/* A transfer's item is out: it arrives after the latency; the next one
 * follows on the same connection. */
static void on_flow(struct sim *S, const struct simev *e) {
  uint32_t si = e->a;
  struct sess *s = &S->s[si];
  uint32_t item;
  if (s->gen != e->b || !s->flowing || s->flow_ver != e->c) {
    return; /* rescheduled, stopped or closed */
  }
  item = s->item;
  {
    /* The receiver acknowledges every second segment on its uplink. */
    double wire = item_wire(S, item);
    double segs = wire / (S->c->mtu + ETH_HEADER);
    double payload = (double)S->manifest_bytes;
    S->p[s->remote].overhead += (uint64_t)(segs / 2 * PKT_HEADER);
    S->bytes.acks += (double)(uint64_t)(segs / 2 * PKT_HEADER);
    if (item != ITEM_MANIFEST) {
      struct picker_block b;
      block_of(S, item, &b);
      payload = b.length;
    }
    S->bytes.payload += payload;
    S->bytes.frames += wire - payload;
  }
  if (item == ITEM_MANIFEST) {
    send_wire(S, si, M_MANIFEST, 0, NULL, 0);
  } else {
    struct picker_block b;
    block_of(S, item, &b);
    S->p[s->peer].up_bytes += b.length;
    S->total_bytes += b.length;
    if (s->peer == 0) {
      S->origin_bytes += b.length;
    }
    send_wire(S, si, M_DATA, item, NULL, 0);
    choke_after_block(S, si);
  }
  if (has_work(S, s)) {
    s->item = take_item(s);
    s->rem = item_wire(S, s->item);
    flow_schedule(S, si);
  } else {
    flow_stop(S, si);
  }
  if (item == ITEM_MANIFEST) {
    manifest_taken(S, s->peer);
  }
}

/* ------------------------------------------------------------------------ */
/* Finding peers: the tracker and dials */

static void tracker_put(struct sim *S, uint32_t peer, int seeder) {
  struct speer *p = &S->p[peer];
  if (p->state == P_GONE) {
    return;
  }
  if (!p->registered) {
    p->registered = 1;
    p->tracker_pos = S->ntracker;
    S->tracker[S->ntracker++] = peer;
  }
  p->tracker_seeder = seeder;
}

static void tracker_del(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  uint32_t last;
  if (!p->registered) {
    return;
  }
  last = S->tracker[--S->ntracker];
  S->tracker[p->tracker_pos] = last;
  S->p[last].tracker_pos = p->tracker_pos;
  p->registered = 0;
}

/* The tracker's answer to a lookup by asker: up to want peers at random,
 * seeders first, never the asker. */
static unsigned tracker_sample(struct sim *S, uint32_t asker, unsigned want,
                               uint32_t *out) {
  unsigned n = 0, nseed = 0;
  uint32_t *seeds = NULL, *rest = NULL;
  unsigned nrest = 0;
  seeds = malloc((S->ntracker + 1) * sizeof(*seeds));
  rest = malloc((S->ntracker + 1) * sizeof(*rest));
  if (seeds == NULL || rest == NULL) {
    free(seeds);
    free(rest);
    S->err = SHOAL_ENOMEM;
    return 0;
  }
  for (unsigned i = 0; i < S->ntracker; i++) {
    uint32_t q = S->tracker[i];
    if (q == asker) {
      continue;
    }
    if (S->p[q].tracker_seeder) {
      seeds[nseed++] = q;
    } else {
      rest[nrest++] = q;
    }
  }
  /* A partial Fisher-Yates shuffle of each group. */
  for (unsigned i = 0; i < nseed && n < want; i++) {
    unsigned j = i + rng_uniform(nseed - i);
    uint32_t t = seeds[i];
    seeds[i] = seeds[j];
    seeds[j] = t;
    out[n++] = seeds[i];
  }
  for (unsigned i = 0; i < nrest && n < want; i++) {
    unsigned j = i + rng_uniform(nrest - i);
    uint32_t t = rest[i];
    rest[i] = rest[j];
    rest[j] = t;
    out[n++] = rest[i];
  }
  free(seeds);
  free(rest);
  return n;
}

/* Starts the lookup timer (one per host: a new start replaces the old). */
static void schedule_lookup(struct sim *S, uint32_t peer, uint64_t ms) {
  push(S, S->now + ms * 1000u, EV_LOOKUP, peer, ++S->p[peer].lookup_ver, 0, 0,
       NULL);
}

static void on_lookup_timer(struct sim *S, uint32_t peer, uint32_t ver) {
  struct speer *p = &S->p[peer];
  unsigned want;
  if (ver != p->lookup_ver) {
    return;
  }
  if (p->lookup_busy || p->state == P_SEEDING || p->state == P_GONE) {
    return;
  }
  if (p->nsess >= S->max_peers) {
    unsigned dialling = 0;
    for (unsigned i = 0; i < p->nsess; i++) {
      dialling += S->s[p->sess[i]].state == S_DIALING;
    }
    schedule_lookup(S, peer,
                    S->c->give_way && dialling > 0 ? LOOKUP_MIN_MS
                                                   : LOOKUP_MAX_MS);
    return;
  }
  want = S->max_peers - p->nsess;
  if (want > TMSG_MAX_PEERS) {
    want = TMSG_MAX_PEERS;
  }
  p->lookup_busy = 1;
  push(S, S->now + S->c->latency_us, EV_LOOKUP_ASK, peer, want, 0, 0, NULL);
}

static void dial(struct sim *S, uint32_t peer, uint32_t remote) {
  uint32_t si = sess_new(S);
  struct sess *s;
  if (si == NONE) {
    return;
  }
  s = &S->s[si];
  s->remote = remote;
  s->initiator = 1;
  if (attach(S, peer, si) != 0) {
    sess_free(S, si);
    return;
  }
  s->state = S_DIALING;
  s->dial_us = S->now;
  /* SYN, SYN-ACK, then our hello: 1.5 round trips. */
  push(S, S->now + 3u * S->c->latency_us, EV_DIAL, si, s->gen, 0, 0, NULL);
}

static void on_lookup_reply(struct sim *S, const struct simev *e) {
  uint32_t peer = e->a;
  struct speer *p = &S->p[peer];
  const uint32_t *list = e->payload;
  unsigned fresh = 0;
  p->lookup_busy = 0;
  if (p->state == P_GONE) {
    return;
  }
  for (uint32_t i = 0; i < e->c; i++) {
    if (p->nsess >= S->max_peers) {
      break;
    }
    if (find_sess(S, peer, list[i]) != NONE || S->p[list[i]].state == P_GONE) {
      continue;
    }
    dial(S, peer, list[i]);
    fresh++;
  }
  if (fresh > 0) {
    p->lookup_backoff_ms = LOOKUP_MIN_MS;
  } else if (p->lookup_backoff_ms < LOOKUP_MAX_MS) {
    p->lookup_backoff_ms *= 2;
  }
  if (p->state != P_SEEDING) {
    schedule_lookup(S, peer, p->lookup_backoff_ms);
  }
}

/* The session opened at this end: hellos done (swarm_session_open). */
static void opened(struct sim *S, uint32_t si) {
  struct sess *s = &S->s[si];
  s->state = S_OPEN;
  s->remote_have = NONE;
  meter_init(&s->down_meter, 20000, now_ms(S));
  send_have_map(S, si);
}

/* A dialler's hello reaches the remote, which takes or refuses it. */
static void on_dial(struct sim *S, const struct simev *e) {
  uint32_t di = e->a;
  struct sess *d = &S->s[di];
  uint32_t dialer, acceptor, other, ai;
  if (d->gen != e->b || d->state != S_DIALING) {
    return;
  }
  dialer = d->peer;
  acceptor = d->remote;
  if (S->p[acceptor].state == P_GONE || S->p[acceptor].state == P_ABSENT) {
    push(S, S->now + S->c->latency_us, EV_OPENED, di, d->gen, 1, 0, NULL);
    return;
  }
  other = find_sess(S, acceptor, dialer);
  if (other != NONE) {
    /* Both dialled: the dial of the lower index stays. An open session
     * between them already: this one is a duplicate. */
    if (S->s[other].state == S_DIALING && dialer < acceptor) {
      detach(S, other, 0);
    } else {
      push(S, S->now + S->c->latency_us, EV_OPENED, di, d->gen, 1, 0, NULL);
      return;
    }
  }
  if (S->c->give_way && S->p[acceptor].nsess >= S->max_peers) {
    /* A peer that got through beats our oldest dial that has not. */
    const struct speer *a = &S->p[acceptor];
    uint32_t oldest = NONE;
    for (unsigned i = 0; i < a->nsess; i++) {
      const struct sess *o = &S->s[a->sess[i]];
      if (o->state == S_DIALING &&
          (oldest == NONE || o->dial_us < S->s[oldest].dial_us)) {
        oldest = a->sess[i];
      }
    }
    if (oldest != NONE) {
      detach(S, oldest, 0);
    }
  }
  ai = sess_new(S);
  if (ai == NONE) {
    return;
  }
  d = &S->s[di]; /* the pool may have moved */
  S->s[ai].remote = dialer;
  if (attach(S, acceptor, ai) != 0) {
    sess_free(S, ai);
    S->refused++;
    push(S, S->now + S->c->latency_us, EV_OPENED, di, d->gen, 1, 0, NULL);
    return;
  }
  S->s[ai].mirror = di;
  S->s[ai].mirror_gen = d->gen;
  d->mirror = ai;
  d->mirror_gen = S->s[ai].gen;
  /* Our hello goes out before anything else on the session. */
  push(S, S->now + S->c->latency_us, EV_OPENED, di, d->gen, 0, 0, NULL);
  opened(S, ai);
}

static void on_opened(struct sim *S, const struct simev *e) {
  uint32_t si = e->a;
  struct sess *s = &S->s[si];
  if (s->gen != e->b || s->state != S_DIALING) {
    return;
  }
  if (e->c) {
    detach(S, si, 0); /* refused */
    return;
  }
  if (s->mirror == NONE || S->s[s->mirror].gen != s->mirror_gen ||
      S->s[s->mirror].state != S_OPEN) {
    detach(S, si, 0);
    return;
  }
  opened(S, si);
}

/* ------------------------------------------------------------------------ */
/* Hosts: start, tick, leave */

static void on_start(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  p->state = P_FETCHING;
  p->start_us = S->now;
  p->idle_from_us = S->now;
  S->arrived++;
  choker_init(&p->ch, now_ms(S), rng_uniform);
  /* "started" reaches the tracker; its reply brings the first lookup. */
  tracker_put_later(S, peer, 0);
  p->lookup_busy = 0;
  schedule_lookup(S, peer, 2u * S->c->latency_us / 1000u);
  push(S, S->now + TICK_US, EV_TICK, peer, 0, 0, 0, NULL);
}

static void on_tick(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  double over;
  if (p->state == P_GONE) {
    return;
  }
  /* The overhead of the last tick comes off the uplink for the next. */
  over = (double)p->overhead * 1e6 / TICK_US;
  p->overhead = 0;
  p->up_eff = p->up_cap - over;
  if (p->up_eff < p->up_cap * 0.05) {
    p->up_eff = p->up_cap * 0.05;
  }
  rerate_up(S, peer);
  expire(S, peer);
  if ((p->state == P_RUNNING || p->state == P_SEEDING) &&
      choker_due(&p->ch, p->state == P_SEEDING, now_ms(S))) {
    rechoke(S, peer, 1);
  }
  push(S, S->now + TICK_US, EV_TICK, peer, 0, 0, 0, NULL);
}

static void on_leave(struct sim *S, uint32_t peer) {
  struct speer *p = &S->p[peer];
  p->state = P_GONE;
  p->gone_us = S->now;
  while (p->nsess > 0) {
    detach(S, p->sess[p->nsess - 1], 1);
  }
  push(S, S->now + S->c->latency_us, EV_TRACKER_DEL, peer, 0, 0, 0, NULL);
}

/* ------------------------------------------------------------------------ */
/* The run */

void simswarm_defaults(struct simswarm_config *c) {
  memset(c, 0, sizeof(*c));
  c->n = 16;
  c->size = 64u << 20;
  c->origin_up = 40000000 / 8;
  c->peer_up = 10000000 / 8;
  c->peer_down = 0;
  c->latency_us = 1000;
  c->hetero = SIMSWARM_UNIFORM;
  c->max_peers = NODE_DEFAULT_MAX_PEERS;
  c->mtu = 1500;
  c->arrival_rate = 0;
  c->linger_s = -1;
  c->seed = 1;
  c->max_events = (uint64_t)4 << 30;
  c->max_time_s = 0;
}

uint64_t simswarm_peer_up(const struct simswarm_config *c, unsigned i) {
  switch (c->hetero) {
  case SIMSWARM_MIX:
    if (i % 4 == 1) {
      return c->peer_up * 4;
    }
    return i % 4 == 3 ? c->peer_up / 2 : c->peer_up;
  case SIMSWARM_HALF_QUARTER:
    return i % 2 == 0 ? c->peer_up / 4 : c->peer_up;
  case SIMSWARM_UNIFORM:
  default:
    return c->peer_up;
  }
}

double simswarm_bound(const struct simswarm_config *c) {
  double f = (double)c->size, sum = (double)c->origin_up, b;
  for (unsigned i = 1; i <= c->n; i++) {
    sum += (double)simswarm_peer_up(c, i);
  }
  b = f / (double)c->origin_up;
  if (c->peer_down > 0 && f / (double)c->peer_down > b) {
    b = f / (double)c->peer_down;
  }
  if ((double)c->n * f / sum > b) {
    b = (double)c->n * f / sum;
  }
  return b;
}

static int make_manifest(struct sim *S) {
  struct manifest *m = calloc(1, sizeof(*m));
  int err;
  if (m == NULL) {
    return SHOAL_ENOMEM;
  }
  m->kind = MANIFEST_KIND_FILE;
  m->name = strdup("sim.bin");
  m->files = calloc(1, sizeof(*m->files));
  if (m->name == NULL || m->files == NULL) {
    manifest_free(m);
    return SHOAL_ENOMEM;
  }
  m->file_count = 1;
  m->files[0].path = strdup("sim.bin");
  m->files[0].size = S->c->size;
  if (m->files[0].path == NULL) {
    manifest_free(m);
    return SHOAL_ENOMEM;
  }
  err = manifest_layout(m, 0);
  if (err != 0) {
    manifest_free(m);
    return err;
  }
  S->m = m;
  S->nchunks = m->chunk_count;
  S->bpc = (uint32_t)((((uint64_t)1 << m->chunk_log2) + PWIRE_BLOCK_BYTES - 1) /
                      PWIRE_BLOCK_BYTES);
  S->map_len = (m->chunk_count + 7) / 8;
  S->manifest_bytes =
      (uint64_t)m->chunk_count * MANIFEST_HASH_BYTES + MANIFEST_FIXED;
  return 0;
}

static void sim_free(struct sim *S) {
  struct simev e;
  while (simheap_pop(&S->h, &e)) {
    free(e.payload);
  }
  simheap_close(&S->h);
  if (S->p != NULL) {
    for (unsigned i = 0; i < S->npeers; i++) {
      picker_free(S->p[i].pk);
      free(S->p[i].have);
      free(S->p[i].sess);
    }
  }
  for (uint32_t i = 0; i < S->nsess_alloc; i++) {
    free(S->s[i].upq);
    free(S->s[i].have_map);
  }
  free(S->s);
  free(S->p);
  free(S->tracker);
  manifest_free(S->m);
}

static int sim_init(struct sim *S, const struct simswarm_config *c) {
  double seg = (double)(c->mtu - TCP_OVERHEAD);
  int err;
  memset(S, 0, sizeof(*S));
  S->c = c;
  S->free_sess = NONE;
  simheap_init(&S->h);
  S->max_peers = c->max_peers ? c->max_peers : NODE_DEFAULT_MAX_PEERS;
  if (S->max_peers > PICKER_MAX_PEERS) {
    S->max_peers = PICKER_MAX_PEERS;
  }
  S->seg_factor = (seg + PKT_HEADER) / seg;
  err = make_manifest(S);
  if (err != 0) {
    return err;
  }
  S->npeers = c->n + 1;
  S->p = calloc(S->npeers, sizeof(*S->p));
  S->tracker = calloc(S->npeers, sizeof(*S->tracker));
  if (S->p == NULL || S->tracker == NULL) {
    return SHOAL_ENOMEM;
  }
  for (unsigned i = 0; i < S->npeers; i++) {
    struct speer *p = &S->p[i];
    p->up_cap = (double)(i == 0 ? c->origin_up : simswarm_peer_up(c, i));
    p->up_eff = p->up_cap;
    p->down_cap = i == 0 ? 0 : (double)c->peer_down;
    p->have = calloc(S->map_len ? S->map_len : 1, 1);
    p->sess = calloc(S->max_peers, sizeof(*p->sess));
    if (p->have == NULL || p->sess == NULL) {
      return SHOAL_ENOMEM;
    }
    for (unsigned k = 0; k < PICKER_MAX_PEERS; k++) {
      p->slot_sess[k] = NONE;
    }
    haves_init(&p->haves);
    p->fetch_from = NONE;
    p->lookup_backoff_ms = LOOKUP_MIN_MS;
  }
  /* The origin holds everything and is announced before anyone starts. */
  {
    struct speer *o = &S->p[0];
    o->state = P_SEEDING;
    o->is_source = 1;
    for (uint32_t k = 0; k < S->nchunks; k++) {
      pwire_have_map_set(o->have, k);
    }
    o->have_count = S->nchunks;
    choker_init(&o->ch, 0, rng_uniform);
    tracker_put(S, 0, 1);
    push(S, TICK_US / 2, EV_TICK, 0, 0, 0, 0, NULL);
  }
  if (c->progress_s > 0 && c->progress != NULL) {
    push(S, (uint64_t)(c->progress_s * 1e6), EV_PROGRESS, 0, 0, 0, 0, NULL);
  }
  /* Downloaders: all at 0 (a few microseconds apart, in a random order,
   * as processes released together start), or Poisson arrivals. */
  {
    double t = 0;
    for (unsigned i = 1; i <= c->n; i++) {
      uint64_t at;
      if (c->arrival_rate > 0) {
        t += -log(1.0 - rng_unit()) / c->arrival_rate;
        at = (uint64_t)(t * 1e6);
      } else {
        at = rng_uniform(1000);
      }
      push(S, at, EV_START, i, 0, 0, 0, NULL);
    }
  }
  return S->err;
}

static void dispatch(struct sim *S, const struct simev *e) {
  switch (e->kind) {
  case EV_START:
    on_start(S, e->a);
    break;
  case EV_TICK:
    on_tick(S, e->a);
    break;
  case EV_TRACKER_PUT:
    tracker_put(S, e->a, (int)e->b);
    break;
  case EV_TRACKER_DEL:
    tracker_del(S, e->a);
    break;
  case EV_LOOKUP:
    on_lookup_timer(S, e->a, e->b);
    break;
  case EV_LOOKUP_ASK: {
    uint32_t *list = malloc(e->b * sizeof(*list));
    unsigned n;
    if (list == NULL) {
      S->err = SHOAL_ENOMEM;
      break;
    }
    n = tracker_sample(S, e->a, e->b, list);
    push(S, S->now + S->c->latency_us, EV_LOOKUP_REPLY, e->a, 0, n, 0, list);
    break;
  }
  case EV_LOOKUP_REPLY:
    on_lookup_reply(S, e);
    break;
  case EV_DIAL:
    on_dial(S, e);
    break;
  case EV_OPENED:
    on_opened(S, e);
    break;
  case EV_MSG:
    on_msg(S, e);
    break;
  case EV_FLOW:
    on_flow(S, e);
    break;
  case EV_PUMP:
    if (S->p[e->a].pump_at_us == e->t) {
      S->p[e->a].pump_at_us = 0;
      pump_all(S, e->a);
    }
    break;
  case EV_HAVE_TIMER: {
    struct speer *p = &S->p[e->a];
    uint64_t wait;
    if (p->have_timer_us != e->t || p->state == P_GONE) {
      break; /* a sooner timer took its place */
    }
    p->have_timer_us = 0;
    wait = haves_tick(S, e->a);
    if (wait > 0) {
      have_later(S, e->a, wait);
    }
    break;
  }
  case EV_LEAVE:
    on_leave(S, e->a);
    break;
  case EV_PROGRESS: {
    struct simswarm_progress pr;
    unsigned open_sum = 0;
    memset(&pr, 0, sizeof(pr));
    pr.t = (double)S->now / 1e6;
    pr.done = S->done;
    {
      /* The upload capacity that sent nothing since the last line. */
      double idle = 0, cap = 0;
      for (unsigned i = 0; i < S->npeers; i++) {
        struct speer *p = &S->p[i];
        if (p->state == P_ABSENT || p->state == P_GONE) {
          continue;
        }
        if (p->n_up == 0) {
          p->idle_us += S->now - p->idle_from_us;
          p->idle_all_us += S->now - p->idle_from_us;
          p->idle_from_us = S->now;
        }
        idle += p->up_cap * (double)p->idle_us;
        cap += p->up_cap * S->c->progress_s * 1e6;
        p->idle_us = 0;
      }
      pr.idle_up = cap > 0 ? idle / cap : 0;
    }
    for (unsigned i = 1; i < S->npeers; i++) {
      const struct speer *p = &S->p[i];
      unsigned open = 0;
      if (p->state == P_ABSENT || p->state == P_GONE) {
        continue;
      }
      for (uint32_t k = 0; k < S->nchunks; k++) {
        if (pwire_have_map_get(p->have, k)) {
          pr.held += manifest_chunk_len(S->m, k);
        }
      }
      for (unsigned k = 0; k < p->nsess; k++) {
        open += S->s[p->sess[k]].state == S_OPEN;
      }
      pr.started++;
      open_sum += open;
      pr.no_open += open == 0;
      pr.fetching += p->state == P_FETCHING;
    }
    pr.mean_open = pr.started > 0 ? (double)open_sum / pr.started : 0;
    S->c->progress(S->c->progress_arg, &pr);
    push(S, S->now + (uint64_t)(S->c->progress_s * 1e6), EV_PROGRESS, 0, 0, 0,
         0, NULL);
    break;
  }
  default:
    break;
  }
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void results(struct sim *S, struct simswarm_result *out) {
  double sum = 0, mf_sum = 0;
  unsigned counted = 0, mf_counted = 0;
  out->bound_s = simswarm_bound(S->c);
  out->up_sum = S->c->origin_up;
  for (unsigned i = 1; i <= S->c->n; i++) {
    out->up_sum += simswarm_peer_up(S->c, i);
  }
  out->first_s = -1;
  for (unsigned i = 1; i < S->npeers; i++) {
    const struct speer *p = &S->p[i];
    uint32_t held = 0;
    if (p->manifest_us > 0) {
      mf_sum += (double)(p->manifest_us - p->start_us) / 1e6;
      mf_counted++;
    }
    for (uint32_t k = 0; k < S->nchunks; k++) {
      held += (uint32_t)pwire_have_map_get(p->have, k);
    }
    if (held == S->nchunks && p->pk != NULL && picker_complete(p->pk)) {
      out->complete++;
    }
    if (p->state == P_SEEDING || (p->state == P_GONE && p->complete_us > 0)) {
      double fin = (double)p->complete_us / 1e6;
      double took = (double)(p->complete_us - p->start_us) / 1e6;
      sum += took;
      counted++;
      out->d_s = fin > out->d_s ? fin : out->d_s;
      out->max_s = took > out->max_s ? took : out->max_s;
      if (out->first_s < 0 || fin < out->first_s) {
        out->first_s = fin;
      }
    }
  }
  out->mean_s = counted > 0 ? sum / counted : 0;
  out->manifest_s = mf_counted > 0 ? mf_sum / mf_counted : 0;
  out->events = S->events;
  out->origin_bytes = S->origin_bytes;
  out->total_bytes = S->total_bytes;
  out->wasted_bytes = S->wasted;
  out->bytes = S->bytes;
  /* Each host's capacity from its start to the end or its leaving, and
   * the time it had nothing to send. */
  for (unsigned i = 0; i < S->npeers; i++) {
    const struct speer *p = &S->p[i];
    uint64_t from = i == 0 ? 0 : p->start_us;
    uint64_t to = p->gone_us > 0 ? p->gone_us : S->now;
    uint64_t idle = p->idle_all_us;
    if (p->state == P_ABSENT || to < from) {
      continue;
    }
    if (p->n_up == 0 && p->gone_us == 0) {
      idle += S->now - p->idle_from_us;
    }
    out->bytes.capacity += p->up_cap * (double)(to - from) / 1e6;
    out->bytes.idle += p->up_cap * (double)idle / 1e6;
  }
  out->refused = S->refused;
  out->chunks = S->nchunks;
  out->chunk_log2 = S->m != NULL ? S->m->chunk_log2 : 0;
}

int simswarm_run(const struct simswarm_config *c, struct simswarm_result *out,
                 char *err_msg, unsigned err_cap) {
  struct sim S;
  struct simev e;
  double t0 = wall_now();
  uint64_t max_us;
  int err;

  memset(out, 0, sizeof(*out));
  if (c->n == 0 || c->size == 0 || c->origin_up == 0 || c->peer_up == 0 ||
      c->mtu < 576 || c->mtu > 65535) {
    if (err_msg != NULL) {
      snprintf(err_msg, err_cap, "invalid configuration");
    }
    return SHOAL_EINVAL;
  }
  rng_seed(c->seed);
  err = sim_init(&S, c);
  if (err != 0) {
    if (err_msg != NULL) {
      snprintf(err_msg, err_cap, "cannot set up the run: %s",
               shoal_strerror(err));
    }
    sim_free(&S);
    return err;
  }
  /* The default limit: far past any run that makes progress. */
  max_us =
      (uint64_t)((c->max_time_s > 0
                      ? c->max_time_s
                      : 20 * (double)c->n * (double)c->size /
                                (double)c->origin_up +
                            600.0 +
                            (c->arrival_rate > 0 ? 2.0 * c->n / c->arrival_rate
                                                 : 0)) *
                 1e6);
  while (S.err == 0 && S.done < c->n && simheap_pop(&S.h, &e)) {
    if (e.t > max_us || S.events >= c->max_events) {
      free(e.payload);
      err = SHOAL_ETIMEDOUT;
      if (err_msg != NULL) {
        snprintf(err_msg, err_cap,
                 "stopped at %.1f s of simulated time after %llu events "
                 "(limits: %.1f s, %llu events) with %u of %u downloaders "
                 "complete",
                 (double)S.now / 1e6, (unsigned long long)S.events,
                 (double)max_us / 1e6, (unsigned long long)c->max_events,
                 S.done, c->n);
      }
      break;
    }
    S.now = e.t;
    S.events++;
    dispatch(&S, &e);
    free(e.payload);
  }
  if (err == 0 && S.err != 0) {
    err = S.err;
    if (err_msg != NULL) {
      snprintf(err_msg, err_cap, "the run failed: %s", shoal_strerror(err));
    }
  }
  if (err == 0 && S.done < c->n) {
    err = SHOAL_ETIMEDOUT;
    if (err_msg != NULL) {
      snprintf(err_msg, err_cap,
               "no events left at %.1f s with %u of %u downloaders complete",
               (double)S.now / 1e6, S.done, c->n);
    }
  }
  results(&S, out);
  out->wall_s = wall_now() - t0;
  sim_free(&S);
  return err;
}
