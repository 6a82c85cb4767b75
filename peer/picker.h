/* The piece picker: which block to ask which peer for next.
 *
 * Chunks are split into blocks of PWIRE_BLOCK_BYTES (the last block of a
 * chunk may be short). The picker tracks how many connected peers have each
 * chunk (availability), which chunks we have, and which blocks are
 * requested from whom. Its choices:
 *
 * - Finish what is started: blocks of a chunk already in progress come
 *   before a new chunk, so verified chunks appear early and can be shared.
 * - Rarest first: a new chunk is one the fewest peers have, ties broken at
 *   random; while we have fewer than PICKER_RANDOM_FIRST chunks, a new
 *   chunk is picked at random among those the peer has, so that new peers
 *   quickly get something to trade.
 * - Endgame: once every missing block is requested, a block may be asked
 *   of a second peer (at most PICKER_ENDGAME_DUP copies): a peer with fewer
 *   than PICKER_ENDGAME_PEER blocks in flight takes the blocks asked most
 *   recently of others. When one copy arrives the picker says which other
 *   peers to cancel.
 * - Timeouts: a block requested more than timeout_ms ago is given back and
 *   may go to another peer.
 *
 * Memory: a few bytes per chunk plus state for the chunks in progress,
 * which are bounded by the requests in flight, not by the content's size.
 * Peers are identified by a small integer the caller chooses (its session
 * slot).
 */
#ifndef SHOAL_PEER_PICKER_H
#define SHOAL_PEER_PICKER_H

#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h"

#define PICKER_RANDOM_FIRST 4
#define PICKER_ENDGAME_DUP 2
#define PICKER_ENDGAME_PEER 2 /* endgame: blocks in flight per peer */
#define PICKER_ENDGAME_SENT 2 /* a peer's first blocks in flight: no copies */
#define PICKER_MAX_PEERS 256  /* peer ids are 0..PICKER_MAX_PEERS-1 */

struct picker;

struct picker_block {
  uint32_t chunk;
  uint32_t offset;
  uint32_t length;
};

/* The manifest is borrowed. have (may be NULL) says which chunks we
 * already hold, in the pwire have-map layout. Returns NULL without memory. */
struct picker *picker_new(const struct manifest *m, const uint8_t *have);
void picker_free(struct picker *p);

/* A peer joined (with its have-map, may be NULL for none) or left (its
 * requests are given back). The have-map is ceil(chunk_count / 8) bytes
 * (check it with pwire_check_have_map first) and is copied. peer_add returns
 * 0, SHOAL_ENOMEM, or SHOAL_EINVAL when the peer is already added. */
int picker_peer_add(struct picker *p, unsigned peer, const uint8_t *have_map);
void picker_peer_remove(struct picker *p, unsigned peer);
/* A peer announced one more chunk (an index out of range is ignored). */
void picker_peer_have(struct picker *p, unsigned peer, uint32_t chunk);
/* Whether the peer has a chunk we lack (so we are interested in it). */
int picker_interesting(const struct picker *p, unsigned peer);

/* How fast peer sends us, in bytes a second (0, the start: not known).
 * Endgame copies go only to peers that would deliver before the one
 * already asked. */
void picker_peer_rate(struct picker *p, unsigned peer, uint64_t rate);

/* Chooses up to max blocks to request from peer now (it is unchoking us),
 * marks them requested at now_ms, and writes them to out. Returns the
 * count. */
unsigned picker_next(struct picker *p, unsigned peer, uint64_t now_ms,
                     struct picker_block *out, unsigned max);

/* A block arrived from peer. Returns 1 when it was wanted (the caller keeps
 * the data) and 0 for a duplicate or unrequested block (drop it). When it
 * completes its chunk, *chunk_done is set to 1 (else 0). Peers that were
 * also asked for it (endgame) are written to cancel_peers, which has room
 * for PICKER_ENDGAME_DUP - 1 of them (*ncancel of them, else 0). A block
 * counts as requested from peer only while picker_next's request is in
 * flight: after a reject, an expiry or a removal, its late copy returns 0. */
int picker_block_done(struct picker *p, unsigned peer,
                      const struct picker_block *b, int *chunk_done,
                      unsigned *cancel_peers, unsigned *ncancel);
/* 1 when picker_block_done(p, peer, b) would return 1 now: b is
 * requested from peer, in flight, and not yet received. Changes nothing. */
int picker_block_wanted(const struct picker *p, unsigned peer,
                        const struct picker_block *b);
/* The peer refused a block (REJECT or choked us): give it back. */
void picker_block_rejected(struct picker *p, unsigned peer,
                           const struct picker_block *b);
/* A whole chunk was verified and written (we have it now), or failed its
 * hash (all its blocks are wanted again). Called for a chunk still in
 * progress, either drops the requests in flight for it. */
void picker_chunk_verified(struct picker *p, uint32_t chunk);
void picker_chunk_failed(struct picker *p, uint32_t chunk);

/* Gives back the blocks requested before now_ms - timeout_ms and writes
 * them (with the peer that was asked) to out, up to max. Returns the
 * count. */
unsigned picker_expire(struct picker *p, uint64_t now_ms, uint64_t timeout_ms,
                       struct picker_block *out, unsigned *peers, unsigned max);

/* Requests in flight to a peer. */
unsigned picker_outstanding(const struct picker *p, unsigned peer);
/* Chunks we have / in total. */
uint32_t picker_have_count(const struct picker *p);
int picker_complete(const struct picker *p);
/* Chunks we lack that no peer in the picker has. */
uint32_t picker_unsourced(const struct picker *p);

#endif
