/* How much a peer keeps in flight (pacing.c): the budgets of a session's
 * uploads (block reads, bytes queued unsent, the socket's send buffer) and
 * of its requests (the pipeline's depth, the request timeout).
 *
 * Pure arithmetic over rates and times the caller passes in: session.c and
 * swarm.c measure (the node's upload meter, a peer's download meter, the
 * connection's round trip, the download limit) and ask here how much that
 * allows, so the sizing is tested with numbers, not with a clock
 * (tests/test_pacing.c). Rates are bytes a second; 0 as a limit means none.
 */
#ifndef SHOAL_PEER_PACING_H
#define SHOAL_PEER_PACING_H

#include <stdint.h>

#include "peer/limits.h"

/* Whether a node seals and opens DATA blocks on the thread pool
 * (pwire_seal_at, pwire_open_defer) rather than on its loop, given whether
 * it does now and the share of the last tick the loop thread was busy (its
 * CPU time over the wall time, 0..1). The pool costs more CPU in all (a
 * copy of each received block, a hand-over per batch of sent ones:
 * docs/transfer.md), so it is worth it only where the loop would
 * otherwise be the limit: on from NODE_LOOP_BUSY_HIGH, off again below
 * NODE_LOOP_BUSY_LOW. */
int pacing_crypto_on_pool(int now, double loop_busy);

/* Block reads one session may have in flight when busy sessions want to
 * upload: an even share of NODE_READS_MAX, at least 1, at most
 * NODE_READS_IN_FLIGHT. */
unsigned pacing_reads(unsigned busy);

/* A session's share of the node's upload rate: the rate shared evenly
 * among the serving sessions (at least one). */
uint64_t pacing_share(uint64_t node_rate, unsigned serving);

/* The most a session of a seeding swarm may send, in bytes a second of
 * packets (SO_MAX_PACING_RATE), 0 for no limit. A seeder's uplink is
 * where a swarm's new chunks come from, and each downloader can pass on
 * only what it gets; split unevenly (two connections through one queue
 * keep unequal shares for many seconds), the one given less is the last
 * to complete, with its own uplink idle at the end. So:
 * - mine is this session's rate of DATA lately, sum the rates of the
 *   node's busy sessions (uploads waiting: requests, reads or bytes
 *   queued), busy how many; none is limited with fewer than two busy;
 * - a session over NODE_PACE_OVER_PCT of their average (paced is 0), or
 *   still at NODE_PACE_UNDER_PCT of it once paced (paced is not 0), is
 *   paced at NODE_PACE_CAP_PCT of the average, NODE_PACE_WIRE_PCT more
 *   for the headers, unless that is under NODE_PACE_MIN (a session
 *   paced at next to nothing would send next to nothing, and so hold its
 *   own average down). The others are not limited: the slower ones grow
 *   into what the faster leave, and a session held back at its far end
 *   (its peer asks for little) lowers the average only by what it does
 *   not take. */
uint64_t pacing_cap(uint64_t mine, uint64_t sum, unsigned busy, int paced);

/* Bytes of DATA a session with this share lets wait unsent, in libuv's
 * queue and in the socket each (TCP_NOTSENT_LOWAT): NODE_QUEUE_MS of it,
 * at least NODE_QUEUE_MIN, at most NODE_WRITE_QUEUE_MAX. */
uint32_t pacing_queue_bytes(uint64_t share);

/* Bytes the kernel may hold for a session with this share, sent and
 * unacknowledged or not yet sent (SO_SNDBUF asks for half of it, the
 * kernel doubling what it is given): the share for one round trip
 * (rtt_us) and NODE_QUEUE_MS more, at least NODE_QUEUE_MIN and
 * NODE_SEND_SEGMENTS of the connection's segments (mss bytes each; 0 when
 * not known yet), at most NODE_SEND_BUFFER_MAX. */
uint32_t pacing_send_buffer(uint64_t share, uint32_t rtt_us, uint32_t mss);

/* Manifest parts ahead of DATA. A peer trades nothing before its
 * manifest is whole, and at a flash crowd every newcomer asks the first
 * peers for it at once: shared evenly with the blocks going out, each
 * copy took as long as all of them together (64 copies of 64 KiB behind
 * 16 blocks at once). So a node starts no DATA while a manifest part it
 * wrote has not yet been taken by the kernel, which then sends the parts
 * alone, and the blocks already queued (about NODE_QUEUE_MS of each
 * session's share) finish behind them.
 *
 * How long: NODE_MANIFEST_AHEAD_TIMES what the parts written since the
 * hold began would take at the node's upload rate, from the hold's
 * start, and at most NODE_MANIFEST_AHEAD_MS (all of it when the rate is
 * not known, nothing having been sent lately). A part that drains slowly
 * because the peer's own link is slow thus holds the blocks of everyone
 * else only a few times as long as the part would take on the node's
 * uplink (64 KiB at 40 Mbit/s: 105 ms, not 2 s); and no new hold
 * begins until every part is taken, so a peer that asks and does not
 * read cannot stop the uploads for longer. One per node: the parts and
 * the blocks share its uplink. */
struct pacing_ahead {
  unsigned parts;    /* manifest parts written, not yet taken */
  uint64_t start_ms; /* when the first of them was written */
  uint64_t bytes;    /* their bytes */
  uint64_t until_ms; /* DATA waits until then while parts > 0 */
};

/* A manifest part of bytes bytes was written at now, while the node
 * uploads at rate bytes a second (0: not known). */
void pacing_ahead_wrote(struct pacing_ahead *a, uint64_t now, uint64_t bytes,
                        uint64_t rate);
/* The kernel took a part (or its write failed); returns 1 when none is
 * left, when the uploads that waited should be pumped. */
int pacing_ahead_taken(struct pacing_ahead *a);
/* How long DATA still waits at now, in ms; 0: it may go. */
uint64_t pacing_ahead_wait(const struct pacing_ahead *a, uint64_t now);

/* Whether a socket option set to had (0: never set) should be set again
 * to want: when it moved by more than a quarter. */
int pacing_moved(uint32_t had, uint32_t want);

/* Blocks to keep requested from one peer under the download limit
 * (0: none): NODE_PIPELINE without one, else about two seconds' worth of
 * the limit, at least 1, so that what was asked for arrives well within
 * the request timeout. */
unsigned pacing_pipeline_cap(uint64_t limit);

/* Blocks to keep requested from a peer that sent us rate lately, for
 * chunks of 2^chunk_log2 bytes: NODE_PIPELINE_MS of its rate plus
 * NODE_PIPELINE_MIN to find out whether it can send more, at most cap
 * (pacing_pipeline_cap). A block is PWIRE_BLOCK_BYTES or the chunk when
 * that is smaller. */
unsigned pacing_depth(uint64_t rate, unsigned chunk_log2, unsigned cap);

/* Twice the time bytes take at rate (rate > 0), in ms: how long a request
 * may wait behind them before it is given up. */
uint64_t pacing_arrival_ms(uint64_t bytes, uint64_t rate);

/* The request timeout when the slowest arrival is longest_ms:
 * NODE_REQUEST_TIMEOUT_MS at least, NODE_REQUEST_TIMEOUT_MAX_MS at
 * most. */
uint64_t pacing_request_timeout(uint64_t longest_ms);

#endif
