/* The piece picker: see picker.h for the policy.
 *
 * State per chunk, for every chunk: its availability (u16, since at most
 * PICKER_MAX_PEERS peers count), a state byte, and one bit in each of two
 * bitmaps (wanted, have) that let a scan combine 64 chunks at a time with a
 * peer's have-map. About 3.3 bytes per chunk.
 *
 * State per block exists only for the chunks in progress ("active": at least
 * one block requested or received, not all received). They sit in an array
 * sorted by chunk index, found by binary search; their number is bounded by
 * the requests in flight plus the chunks left half done by peers that went
 * away, not by the content's size. A chunk whose blocks have all arrived
 * drops its block state and waits (PENDING) for the caller to verify it.
 *
 * Each peer costs one bit per chunk (its have-map) plus two counters: the
 * chunks it has that we lack (so picker_interesting is O(1)) and its
 * requests in flight.
 *
 * picker_next first fills from active chunks, then makes at most a few
 * passes over the peer's have-map (one pass per PK_KEEP new chunks) to choose
 * new chunks, then, in endgame, duplicates. A pass is O(chunks / 64) word
 * operations plus O(1) per candidate chunk.
 */
#include "peer/picker.h"

#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/pwire.h"

/* New chunks one scan may choose: enough for a whole pipeline of one-block
 * chunks in the common case; a longer request list takes another scan. */
#define PK_KEEP 32

enum pk_state {
  PK_WANTED = 0,  /* missing, no block state */
  PK_ACTIVE = 1,  /* in progress: has a struct pk_active */
  PK_PENDING = 2, /* every block arrived; the caller is verifying it */
  PK_HAVE = 3,    /* verified */
};

/* One block of an active chunk: who was asked for it (up to
 * PICKER_ENDGAME_DUP peers, endgame only beyond the first) and when. */
struct pk_block {
  uint64_t asked_ms[PICKER_ENDGAME_DUP];
  uint16_t peer[PICKER_ENDGAME_DUP];
  uint8_t nreq;
  uint8_t received;
};

struct pk_active {
  uint32_t chunk;
  uint32_t len; /* bytes in the chunk */
  uint32_t nblocks;
  uint32_t nreceived;
  uint32_t nunrequested; /* blocks neither received nor asked of anyone */
  struct pk_block blocks[];
};

struct pk_peer {
  uint64_t *have;       /* NULL while the slot is free */
  uint32_t interesting; /* chunks it has that are not PK_HAVE */
  uint32_t outstanding; /* blocks asked of it and not yet settled */
  uint64_t rate;        /* bytes a second it sends us; 0: not known */
};

struct picker {
  const struct manifest *m;
  uint32_t nchunks;
  size_t nwords; /* 64-bit words in a chunk bitmap */
  uint16_t *avail;
  uint8_t *state;
  uint64_t *wanted; /* bit set iff state == PK_WANTED */
  uint64_t *have;   /* bit set iff state == PK_HAVE */
  uint32_t have_count;
  uint32_t wanted_count;
  /* Sum of nunrequested over the active chunks: with wanted_count it says
   * whether every missing block is asked of someone (endgame). */
  uint64_t unrequested;
  struct pk_active **act; /* sorted by chunk */
  size_t nact;
  size_t act_cap;
  struct pk_peer peers[PICKER_MAX_PEERS];
};

/* ------------------------------------------------------------------------ */
/* Bitmaps */

static int bit_get(const uint64_t *map, uint32_t i) {
  return (int)((map[i >> 6] >> (i & 63)) & 1u);
}

static void bit_set(uint64_t *map, uint32_t i) {
  map[i >> 6] |= (uint64_t)1 << (i & 63);
}

static void bit_clear(uint64_t *map, uint32_t i) {
  map[i >> 6] &= ~((uint64_t)1 << (i & 63));
}

/* Converts a pwire have-map (chunk 0 in the high bit of byte 0) into a word
 * bitmap, ignoring the unused bits of the last byte. */
static void bits_from_wire(uint64_t *map, size_t nwords, const uint8_t *wire,
                           uint32_t nchunks) {
  memset(map, 0, nwords * sizeof(*map));
  for (uint32_t i = 0; i < nchunks; i++) {
    if (wire[i >> 3] & (0x80u >> (i & 7))) {
      bit_set(map, i);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Chunk states */

static void pk_set_state(struct picker *p, uint32_t c, enum pk_state to) {
  enum pk_state from = (enum pk_state)p->state[c];

  if (from == to) {
    return;
  }
  if (from == PK_WANTED) {
    bit_clear(p->wanted, c);
    p->wanted_count--;
  } else if (to == PK_WANTED) {
    bit_set(p->wanted, c);
    p->wanted_count++;
  }
  /* Interest counts every chunk a peer has and we do not. */
  if (from == PK_HAVE || to == PK_HAVE) {
    for (unsigned q = 0; q < PICKER_MAX_PEERS; q++) {
      if (p->peers[q].have != NULL && bit_get(p->peers[q].have, c)) {
        if (to == PK_HAVE) {
          p->peers[q].interesting--;
        } else {
          p->peers[q].interesting++;
        }
      }
    }
    if (to == PK_HAVE) {
      bit_set(p->have, c);
      p->have_count++;
    } else {
      bit_clear(p->have, c);
      p->have_count--;
    }
  }
  p->state[c] = (uint8_t)to;
}

/* ------------------------------------------------------------------------ */
/* Active chunks */

/* Index of chunk c in p->act, or the index where it would go (*found 0). */
static size_t pk_find(const struct picker *p, uint32_t c, int *found) {
  size_t lo = 0;
  size_t hi = p->nact;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (p->act[mid]->chunk < c) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  *found = lo < p->nact && p->act[lo]->chunk == c;
  return lo;
}

/* Index in p->act of chunk c. Returns 0, or -1 when c is not active. */
static int pk_lookup(const struct picker *p, uint32_t c, size_t *i) {
  int found;

  if (c >= p->nchunks || p->state[c] != PK_ACTIVE) {
    return -1;
  }
  *i = pk_find(p, c, &found);
  assert(found);
  (void)found;
  return 0;
}

/* Starts block state for a wanted chunk. Returns NULL without memory (the
 * chunk stays wanted). */
static struct pk_active *pk_activate(struct picker *p, uint32_t c) {
  uint32_t len = manifest_chunk_len(p->m, c);
  uint32_t nblocks =
      (uint32_t)((len + (uint64_t)PWIRE_BLOCK_BYTES - 1) / PWIRE_BLOCK_BYTES);
  struct pk_active *a;
  size_t at;
  int found;

  assert(p->state[c] == PK_WANTED);
  assert(len > 0); /* every chunk of a manifest holds at least one byte */
  if (p->nact == p->act_cap) {
    size_t cap = p->act_cap ? p->act_cap * 2 : 16;
    struct pk_active **grown = realloc(p->act, cap * sizeof(*grown));
    if (grown == NULL) {
      return NULL;
    }
    p->act = grown;
    p->act_cap = cap;
  }
  a = calloc(1, sizeof(*a) + (size_t)nblocks * sizeof(a->blocks[0]));
  if (a == NULL) {
    return NULL;
  }
  a->chunk = c;
  a->len = len;
  a->nblocks = nblocks;
  a->nunrequested = nblocks;
  at = pk_find(p, c, &found);
  assert(!found);
  (void)found;
  memmove(&p->act[at + 1], &p->act[at], (p->nact - at) * sizeof(p->act[0]));
  p->act[at] = a;
  p->nact++;
  p->unrequested += nblocks;
  pk_set_state(p, c, PK_ACTIVE);
  return a;
}

/* Drops the block state of p->act[i], forgetting every request still in
 * flight for it, and moves the chunk to state to. */
static void pk_release(struct picker *p, size_t i, enum pk_state to) {
  struct pk_active *a = p->act[i];

  for (uint32_t b = 0; b < a->nblocks; b++) {
    for (unsigned k = 0; k < a->blocks[b].nreq; k++) {
      p->peers[a->blocks[b].peer[k]].outstanding--;
    }
  }
  p->unrequested -= a->nunrequested;
  memmove(&p->act[i], &p->act[i + 1], (p->nact - i - 1) * sizeof(p->act[0]));
  p->nact--;
  pk_set_state(p, a->chunk, to);
  free(a);
}

/* Releases p->act[i] when nothing of it is asked or held any more, so that a
 * chunk nobody is working on goes back to the rarest-first choice. Returns 1
 * when it was released. */
static int pk_maybe_release(struct picker *p, size_t i) {
  struct pk_active *a = p->act[i];

  if (a->nreceived == 0 && a->nunrequested == a->nblocks) {
    pk_release(p, i, PK_WANTED);
    return 1;
  }
  return 0;
}

/* Length of block b of a: PWIRE_BLOCK_BYTES but for a short last block. */
static uint32_t pk_block_len(const struct pk_active *a, uint32_t b) {
  uint32_t left = a->len - b * PWIRE_BLOCK_BYTES;
  return left < PWIRE_BLOCK_BYTES ? left : PWIRE_BLOCK_BYTES;
}

static void pk_ask(struct picker *p, struct pk_active *a, uint32_t b,
                   unsigned peer, uint64_t now_ms, struct picker_block *out) {
  struct pk_block *blk = &a->blocks[b];

  assert(blk->nreq < PICKER_ENDGAME_DUP && !blk->received);
  if (blk->nreq == 0) {
    a->nunrequested--;
    p->unrequested--;
  }
  blk->peer[blk->nreq] = (uint16_t)peer;
  blk->asked_ms[blk->nreq] = now_ms;
  blk->nreq++;
  p->peers[peer].outstanding++;
  out->chunk = a->chunk;
  out->offset = b * PWIRE_BLOCK_BYTES;
  out->length = pk_block_len(a, b);
}

/* Forgets request k of block b (the k-th peer asked). */
static void pk_unask(struct picker *p, struct pk_active *a, uint32_t b,
                     unsigned k) {
  struct pk_block *blk = &a->blocks[b];

  assert(k < blk->nreq);
  p->peers[blk->peer[k]].outstanding--;
  blk->nreq--;
  blk->peer[k] = blk->peer[blk->nreq];
  blk->asked_ms[k] = blk->asked_ms[blk->nreq];
  if (blk->nreq == 0 && !blk->received) {
    a->nunrequested++;
    p->unrequested++;
  }
}

/* Which request of block b went to peer, or -1. */
static int pk_asked_slot(const struct pk_block *blk, unsigned peer) {
  for (unsigned k = 0; k < blk->nreq; k++) {
    if (blk->peer[k] == peer) {
      return (int)k;
    }
  }
  return -1;
}

/* Maps a block from the caller (ultimately from the network) to its active
 * chunk and block index. Returns -1 unless it is exactly one block of a
 * chunk in progress. */
static int pk_locate(const struct picker *p, const struct picker_block *b,
                     size_t *act_out, uint32_t *idx_out) {
  struct pk_active *a;
  size_t i;
  uint32_t idx;

  if (pk_lookup(p, b->chunk, &i) != 0 || b->offset % PWIRE_BLOCK_BYTES != 0) {
    return -1;
  }
  a = p->act[i];
  idx = b->offset / PWIRE_BLOCK_BYTES;
  if (idx >= a->nblocks || b->length != pk_block_len(a, idx)) {
    return -1;
  }
  *act_out = i;
  *idx_out = idx;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Lifetime */

struct picker *picker_new(const struct manifest *m, const uint8_t *have) {
  struct picker *p;
  size_t n;

  if (sodium_init() < 0) {
    abort();
  }
  p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->m = m;
  p->nchunks = m->chunk_count;
  p->nwords = ((size_t)p->nchunks + 63) / 64;
  n = p->nchunks ? p->nchunks : 1;
  p->avail = calloc(n, sizeof(*p->avail));
  p->state = calloc(n, sizeof(*p->state));
  p->wanted = calloc(p->nwords ? p->nwords : 1, sizeof(*p->wanted));
  p->have = calloc(p->nwords ? p->nwords : 1, sizeof(*p->have));
  if (p->avail == NULL || p->state == NULL || p->wanted == NULL ||
      p->have == NULL) {
    goto fail;
  }
  /* Every chunk starts wanted; the ones we hold then move to PK_HAVE (no
   * peer is known yet, so no interest counts change). */
  for (uint32_t c = 0; c < p->nchunks; c++) {
    bit_set(p->wanted, c);
  }
  p->wanted_count = p->nchunks;
  if (have != NULL) {
    for (uint32_t c = 0; c < p->nchunks; c++) {
      if (have[c >> 3] & (0x80u >> (c & 7))) {
        pk_set_state(p, c, PK_HAVE);
      }
    }
  }
  return p;

fail:
  picker_free(p);
  return NULL;
}

void picker_free(struct picker *p) {
  if (p == NULL) {
    return;
  }
  for (size_t i = 0; i < p->nact; i++) {
    free(p->act[i]);
  }
  free(p->act);
  for (unsigned q = 0; q < PICKER_MAX_PEERS; q++) {
    free(p->peers[q].have);
  }
  free(p->avail);
  free(p->state);
  free(p->wanted);
  free(p->have);
  free(p);
}

/* ------------------------------------------------------------------------ */
/* Peers */

int picker_peer_add(struct picker *p, unsigned peer, const uint8_t *have_map) {
  struct pk_peer *pe;
  uint32_t interesting = 0;

  assert(peer < PICKER_MAX_PEERS);
  pe = &p->peers[peer];
  if (pe->have != NULL) {
    return SHOAL_EINVAL;
  }
  pe->have = calloc(p->nwords ? p->nwords : 1, sizeof(*pe->have));
  if (pe->have == NULL) {
    return SHOAL_ENOMEM;
  }
  if (have_map != NULL) {
    bits_from_wire(pe->have, p->nwords, have_map, p->nchunks);
  }
  for (size_t w = 0; w < p->nwords; w++) {
    uint64_t bits = pe->have[w];
    interesting += (uint32_t)__builtin_popcountll(bits & ~p->have[w]);
    while (bits != 0) {
      p->avail[w * 64 + (unsigned)__builtin_ctzll(bits)]++;
      bits &= bits - 1;
    }
  }
  pe->interesting = interesting;
  pe->outstanding = 0;
  pe->rate = 0;
  return 0;
}

void picker_peer_remove(struct picker *p, unsigned peer) {
  struct pk_peer *pe;

  assert(peer < PICKER_MAX_PEERS);
  pe = &p->peers[peer];
  if (pe->have == NULL) {
    return;
  }
  /* Give back everything asked of it. */
  for (size_t i = 0; i < p->nact;) {
    struct pk_active *a = p->act[i];
    for (uint32_t b = 0; b < a->nblocks; b++) {
      int k = pk_asked_slot(&a->blocks[b], peer);
      if (k >= 0) {
        pk_unask(p, a, b, (unsigned)k);
      }
    }
    if (!pk_maybe_release(p, i)) {
      i++;
    }
  }
  for (size_t w = 0; w < p->nwords; w++) {
    uint64_t bits = pe->have[w];
    while (bits != 0) {
      p->avail[w * 64 + (unsigned)__builtin_ctzll(bits)]--;
      bits &= bits - 1;
    }
  }
  assert(pe->outstanding == 0);
  free(pe->have);
  memset(pe, 0, sizeof(*pe));
}

void picker_peer_have(struct picker *p, unsigned peer, uint32_t chunk) {
  struct pk_peer *pe;

  assert(peer < PICKER_MAX_PEERS);
  pe = &p->peers[peer];
  /* The index comes from the network: out of range is ignored, as is a
   * repeat. */
  if (pe->have == NULL || chunk >= p->nchunks || bit_get(pe->have, chunk)) {
    return;
  }
  bit_set(pe->have, chunk);
  p->avail[chunk]++;
  if (p->state[chunk] != PK_HAVE) {
    pe->interesting++;
  }
}

int picker_interesting(const struct picker *p, unsigned peer) {
  assert(peer < PICKER_MAX_PEERS);
  return p->peers[peer].have != NULL && p->peers[peer].interesting > 0;
}

/* ------------------------------------------------------------------------ */
/* Choosing */

struct pk_cand {
  uint32_t avail;
  uint32_t chunk;
  uint64_t key;
};

/* A random-looking key per chunk for one scan (the splitmix64 finalizer of
 * seed + chunk * golden ratio). The seed comes from randombytes once per
 * scan, so ties are broken at random without a random call per chunk; the
 * keys of distinct chunks differ because the map is a bijection. */
static uint64_t pk_key(uint64_t seed, uint32_t c) {
  uint64_t z = seed + (uint64_t)c * 0x9E3779B97F4A7C15u;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static int pk_cand_less(const struct pk_cand *x, const struct pk_cand *y) {
  return x->avail < y->avail || (x->avail == y->avail && x->key < y->key);
}

/* Chooses up to limit wanted chunks that the peer has, best first: the
 * rarest (ties at random), or simply random ones while we hold fewer than
 * PICKER_RANDOM_FIRST chunks. One pass over the have-maps. Returns the
 * count. */
static unsigned pk_scan(const struct picker *p, const uint64_t *peer_have,
                        struct pk_cand *keep, unsigned limit) {
  int random_first = p->have_count < PICKER_RANDOM_FIRST;
  uint64_t seed;
  unsigned n = 0;

  randombytes_buf(&seed, sizeof(seed));
  for (size_t w = 0; w < p->nwords; w++) {
    uint64_t bits = peer_have[w] & p->wanted[w];
    while (bits != 0) {
      struct pk_cand c;
      unsigned at;
      c.chunk = (uint32_t)(w * 64 + (unsigned)__builtin_ctzll(bits));
      bits &= bits - 1;
      c.avail = random_first ? 0 : p->avail[c.chunk];
      if (n == limit && c.avail > keep[n - 1].avail) {
        continue; /* cheap rejection before the key is computed */
      }
      c.key = pk_key(seed, c.chunk);
      if (n == limit && !pk_cand_less(&c, &keep[n - 1])) {
        continue;
      }
      /* Insertion into the short sorted list; the worst falls off. */
      at = n < limit ? n++ : n - 1;
      while (at > 0 && pk_cand_less(&c, &keep[at - 1])) {
        keep[at] = keep[at - 1];
        at--;
      }
      keep[at] = c;
    }
  }
  return n;
}

/* Asks peer for the blocks of a that nobody is asked for, up to the room
 * left in out. Returns the count written. */
static unsigned pk_fill(struct picker *p, struct pk_active *a, unsigned peer,
                        uint64_t now_ms, struct picker_block *out,
                        unsigned room) {
  unsigned n = 0;

  for (uint32_t b = 0; b < a->nblocks && n < room && a->nunrequested > 0; b++) {
    if (!a->blocks[b].received && a->blocks[b].nreq == 0) {
      pk_ask(p, a, b, peer, now_ms, &out[n++]);
    }
  }
  return n;
}

static uint64_t pk_min(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

/* Whether peer, asked for one more block of len bytes now, would deliver
 * it well before other delivers everything asked of it so far: when
 * other's rate is not known (a stalled peer sends nothing), or both are
 * known, other has more than PICKER_ENDGAME_SENT blocks to send, and
 * peer's queue drains in at most half the time. The rates are averages
 * and the CANCEL for the slower copy takes time to arrive: a copy that
 * would be only a little sooner mostly comes second, and is thrown away. */
static int pk_sooner(const struct picker *p, unsigned peer, unsigned other,
                     uint32_t len) {
  const struct pk_peer *me = &p->peers[peer], *o = &p->peers[other];
  /* Blocks and rates clamped so that the products below fit: 2^15 blocks
   * of 2^16 bytes at 2^32 bytes a second is past anything real. */
  const uint64_t max_blocks = 1u << 15, max_rate = (uint64_t)1 << 32;
  uint64_t my_blocks = pk_min((uint64_t)me->outstanding + 1, max_blocks);
  uint64_t o_blocks = pk_min(o->outstanding, max_blocks);
  uint64_t my_rate = pk_min(me->rate, max_rate);
  uint64_t o_rate = pk_min(o->rate, max_rate);
  if (o_rate == 0) {
    return 1;
  }
  if (o_blocks <= PICKER_ENDGAME_SENT) {
    return 0; /* they are as good as sent: a copy would come second */
  }
  if (my_rate == 0) {
    return 0;
  }
  /* blocks * len / rate on each side, compared without dividing. */
  return 2 * my_blocks * len * o_rate < o_blocks * len * my_rate;
}

void picker_peer_rate(struct picker *p, unsigned peer, uint64_t rate) {
  assert(peer < PICKER_MAX_PEERS);
  p->peers[peer].rate = rate;
}

unsigned picker_next(struct picker *p, unsigned peer, uint64_t now_ms,
                     struct picker_block *out, unsigned max) {
  const uint64_t *ph;
  unsigned n = 0;

  assert(peer < PICKER_MAX_PEERS);
  ph = p->peers[peer].have;
  if (ph == NULL) {
    return 0;
  }

  /* 1. Finish what is started. */
  for (size_t i = 0; i < p->nact && n < max; i++) {
    struct pk_active *a = p->act[i];
    if (a->nunrequested > 0 && bit_get(ph, a->chunk)) {
      n += pk_fill(p, a, peer, now_ms, out + n, max - n);
    }
  }

  /* 2. New chunks, rarest first (random first while we hold few). A chunk
   * has at least one block, so max - n chunks always suffice. */
  while (n < max && p->wanted_count > 0) {
    struct pk_cand keep[PK_KEEP];
    unsigned limit = max - n < PK_KEEP ? max - n : PK_KEEP;
    unsigned found = pk_scan(p, ph, keep, limit);
    unsigned used = 0;

    while (used < found && n < max) {
      struct pk_active *a = pk_activate(p, keep[used].chunk);
      if (a == NULL) {
        return n; /* out of memory: ask for what we have so far */
      }
      n += pk_fill(p, a, peer, now_ms, out + n, max - n);
      used++;
    }
    if (found < limit) {
      break; /* the peer has no other wanted chunk */
    }
  }

  /* 3. Endgame: every missing block is asked of someone. A peer with
   * little left to do takes a second copy of the block asked most
   * recently of another peer, never twice itself, until it has
   * PICKER_ENDGAME_PEER blocks in flight. The newest request is the one
   * that would come last from where it is queued, and the cancel that
   * follows the first copy usually finds it still queued there: the
   * duplicate then costs no bytes at all, where copying every block
   * outstanding would resend up to a whole pipeline per peer. And a copy
   * is only asked of a peer that would deliver it first (pk_sooner): a
   * copy from a slower one would arrive second and be thrown away. */
  if (n < max && p->wanted_count == 0 && p->unrequested == 0) {
    while (n < max && p->peers[peer].outstanding < PICKER_ENDGAME_PEER) {
      struct pk_active *best = NULL;
      uint32_t best_b = 0;
      uint64_t best_ms = 0;
      for (size_t i = 0; i < p->nact; i++) {
        struct pk_active *a = p->act[i];
        if (!bit_get(ph, a->chunk)) {
          continue;
        }
        for (uint32_t b = 0; b < a->nblocks; b++) {
          struct pk_block *blk = &a->blocks[b];
          if (blk->received || blk->nreq == 0 ||
              blk->nreq >= PICKER_ENDGAME_DUP ||
              pk_asked_slot(blk, peer) >= 0 ||
              !pk_sooner(p, peer, blk->peer[blk->nreq - 1],
                         pk_block_len(a, b))) {
            continue;
          }
          if (best == NULL || blk->asked_ms[blk->nreq - 1] > best_ms) {
            best = a;
            best_b = b;
            best_ms = blk->asked_ms[blk->nreq - 1];
          }
        }
      }
      if (best == NULL) {
        break;
      }
      pk_ask(p, best, best_b, peer, now_ms, &out[n++]);
    }
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* Outcomes */

int picker_block_done(struct picker *p, unsigned peer,
                      const struct picker_block *b, int *chunk_done,
                      unsigned *cancel_peers, unsigned *ncancel) {
  struct pk_active *a;
  struct pk_block *blk;
  size_t i;
  uint32_t idx;

  assert(peer < PICKER_MAX_PEERS);
  *chunk_done = 0;
  *ncancel = 0;
  if (pk_locate(p, b, &i, &idx) != 0) {
    return 0;
  }
  a = p->act[i];
  blk = &a->blocks[idx];
  if (blk->received || pk_asked_slot(blk, peer) < 0) {
    return 0;
  }
  /* Settle every request for it; the other peers get a cancel. */
  blk->received = 1;
  a->nreceived++;
  while (blk->nreq > 0) {
    unsigned k = blk->nreq - 1u;
    if (blk->peer[k] != peer) {
      cancel_peers[(*ncancel)++] = blk->peer[k];
    }
    pk_unask(p, a, idx, k);
  }
  if (a->nreceived == a->nblocks) {
    pk_release(p, i, PK_PENDING);
    *chunk_done = 1;
  }
  return 1;
}

int picker_block_wanted(const struct picker *p, unsigned peer,
                        const struct picker_block *b) {
  const struct pk_block *blk;
  size_t i;
  uint32_t idx;

  if (peer >= PICKER_MAX_PEERS || pk_locate(p, b, &i, &idx) != 0) {
    return 0;
  }
  blk = &p->act[i]->blocks[idx];
  return !blk->received && pk_asked_slot(blk, peer) >= 0;
}

void picker_block_rejected(struct picker *p, unsigned peer,
                           const struct picker_block *b) {
  size_t i;
  uint32_t idx;
  int k;

  assert(peer < PICKER_MAX_PEERS);
  if (pk_locate(p, b, &i, &idx) != 0) {
    return;
  }
  k = pk_asked_slot(&p->act[i]->blocks[idx], peer);
  if (k < 0) {
    return;
  }
  pk_unask(p, p->act[i], idx, (unsigned)k);
  pk_maybe_release(p, i);
}

/* Moves a chunk to PK_HAVE or PK_WANTED from any state, dropping its block
 * state (and the requests in flight for it) if it was in progress. */
static void pk_settle(struct picker *p, uint32_t chunk, enum pk_state to) {
  size_t i;

  assert(chunk < p->nchunks);
  if (pk_lookup(p, chunk, &i) == 0) {
    pk_release(p, i, to);
  } else {
    pk_set_state(p, chunk, to);
  }
}

void picker_chunk_verified(struct picker *p, uint32_t chunk) {
  pk_settle(p, chunk, PK_HAVE);
}

void picker_chunk_failed(struct picker *p, uint32_t chunk) {
  pk_settle(p, chunk, PK_WANTED);
}

unsigned picker_expire(struct picker *p, uint64_t now_ms, uint64_t timeout_ms,
                       struct picker_block *out, unsigned *peers,
                       unsigned max) {
  uint64_t cutoff;
  unsigned n = 0;

  if (now_ms < timeout_ms) {
    return 0;
  }
  cutoff = now_ms - timeout_ms;
  for (size_t i = 0; i < p->nact && n < max;) {
    struct pk_active *a = p->act[i];
    for (uint32_t b = 0; b < a->nblocks && n < max; b++) {
      struct pk_block *blk = &a->blocks[b];
      for (unsigned k = 0; k < blk->nreq && n < max;) {
        if (blk->asked_ms[k] < cutoff) {
          out[n].chunk = a->chunk;
          out[n].offset = b * PWIRE_BLOCK_BYTES;
          out[n].length = pk_block_len(a, b);
          peers[n] = blk->peer[k];
          n++;
          pk_unask(p, a, b, k); /* moves the last request into slot k */
        } else {
          k++;
        }
      }
    }
    if (!pk_maybe_release(p, i)) {
      i++;
    }
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* Counters */

unsigned picker_outstanding(const struct picker *p, unsigned peer) {
  assert(peer < PICKER_MAX_PEERS);
  return p->peers[peer].outstanding;
}

uint32_t picker_have_count(const struct picker *p) {
  return p->have_count;
}

int picker_complete(const struct picker *p) {
  return p->have_count == p->nchunks;
}

uint32_t picker_unsourced(const struct picker *p) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < p->nchunks; i++) {
    n += !bit_get(p->have, i) && p->avail[i] == 0;
  }
  return n;
}
