/* The peer's limits: every bound and period that node.c, swarm.c and
 * session.c (and the modules they call) keep, each with its reason, in one
 * header below all of them, so that none includes another's header for a
 * number.
 *
 * They keep the NODE_ prefix they had in node.h: docs/protocol.md and
 * docs/design.md name them so, and tests/test_spec.c checks the values
 * docs/protocol.md gives. Nothing here is configuration: the command line's
 * settings are struct node_config (node.h).
 */
#ifndef SHOAL_PEER_LIMITS_H
#define SHOAL_PEER_LIMITS_H

/* Choking. */
#define NODE_UPLOAD_SLOTS 4        /* regular unchoke slots per swarm */
#define NODE_SEED_SLOTS 16         /* a seeder's slots per swarm */
#define NODE_RECHOKE_MS 10000u     /* tit-for-tat round */
#define NODE_SEED_RECHOKE_MS 2000u /* a seeder's round */
#define NODE_OPTIMISTIC_MS 30000u  /* optimistic unchoke rotation */

/* Requests we make. */
#define NODE_PIPELINE 64 /* block requests in flight per peer */
#define NODE_REQUEST_TIMEOUT_MS 10000u
#define NODE_REQUEST_TIMEOUT_MAX_MS 120000u /* however slow the peer */
#define NODE_PIPELINE_MIN 4    /* requests beyond a peer's rate's worth */
#define NODE_PIPELINE_MS 1000u /* requests in flight: this much of its rate */
/* REJECTs in a row while unchoked: the peer cannot serve. */
#define NODE_REJECTS_CLOSE 128
/* Chunk bytes waiting for hash and write: no new requests past this. */
#define NODE_MAX_PUT_BYTES (16u << 20)

/* Fetching a manifest: its first PWIRE_MANIFEST_PART_BYTES from one peer
 * (all of any file's manifest: at most 2,048 hashes, 64 KiB), which tells
 * the total; the rest of a larger one (a folder's) in units of about
 * 1/NODE_MANIFEST_UNITS of it (at least NODE_MANIFEST_UNIT_MIN, at most a
 * part), each asked of a free peer that holds it, up to NODE_MANIFEST_WAYS
 * peers at once, so that it arrives at the sum of their rates. */
#define NODE_MANIFEST_WAYS 8
#define NODE_MANIFEST_UNITS 32
#define NODE_MANIFEST_UNIT_MIN (16u << 10)
/* A unit asked of one peer this long ago may be asked of a free one too
 * (the first answer counts), when no unit is left that nobody is asked. */
#define NODE_MANIFEST_AGAIN_MS 1000u

/* Where blocks are sealed and opened, with --crypto-on=auto: on the thread
 * pool while the loop thread is this busy (a share of a tick's wall time),
 * and on the loop again once it is below the second
 * (pacing_crypto_on_pool). */
#define NODE_LOOP_BUSY_HIGH 0.80
#define NODE_LOOP_BUSY_LOW 0.50

/* Announcing what we have. */
#define NODE_HAVE_MS 250u       /* verified chunks gathered into one HAVE */
#define NODE_HAVE_SLOW_MS 5000u /* ... for peers that cannot use them yet */
#define NODE_HAVE_BATCH 256     /* ... and at most this many */

/* A session's time limits. */
#define NODE_KEEPALIVE_MS 30000u
#define NODE_IDLE_MS 120000u /* a silent session is closed */
#define NODE_HELLO_MS 10000u /* hellos must be done by then */
#define NODE_MAX_PENDING 64  /* accepted sessions before hello */

/* Serving: requests queued, reads and bytes on their way out. */
#define NODE_MAX_REMOTE_REQUESTS 128 /* a peer's requests we queue */
#define NODE_READS_IN_FLIGHT 8       /* block reads per peer at once */
#define NODE_READS_MAX 32            /* block reads of the node at once */
/* Unsent upload bytes a session keeps queued, in its socket buffer and in
 * libuv's queue each: about NODE_QUEUE_MS of its send rate, within these
 * bounds, so that a REQUEST, CANCEL or CHOKE never waits long behind DATA
 * on a slow link while a fast one keeps its pipe full. */
#define NODE_QUEUE_MS 100u
#define NODE_QUEUE_MIN (32u << 10)
#define NODE_WRITE_QUEUE_MAX (1u << 20)  /* bytes queued before uploads wait */
#define NODE_SEND_BUFFER_MAX (4u << 20)  /* a socket's send buffer, at most */
#define NODE_WRITE_QUEUE_HARD (8u << 20) /* past this the peer is closed */
/* A socket's send buffer holds at least this many of its connection's full
 * segments: with fewer than two in flight the receiver holds its ACK for its
 * delayed-ACK timer (pacing_send_buffer). */
#define NODE_SEND_SEGMENTS 4u
/* A seeding swarm's uplink, shared evenly (pacing_cap): a session sending
 * more than NODE_PACE_OVER_PCT percent of the average of the node's
 * sessions with uploads waiting is paced at NODE_PACE_CAP_PCT percent of
 * it until it falls under NODE_PACE_UNDER_PCT percent. The kernel paces
 * packets with their headers, the meters count DATA: NODE_PACE_WIRE_PCT
 * percent covers the difference (TCP and IP headers on 1,448-byte
 * segments, the DATA frame's). */
#define NODE_PACE_OVER_PCT 108u
#define NODE_PACE_CAP_PCT 105u
#define NODE_PACE_UNDER_PCT 95u
#define NODE_PACE_WIRE_PCT 104u
#define NODE_PACE_METER_MS 1000u  /* a session's upload meter: 1 s */
#define NODE_PACE_MIN (32u << 10) /* never paced slower: bytes a second */
/* Manifest parts go ahead of DATA (pacing_ahead_wait): no session starts
 * a block while a part the node wrote waits for the kernel, for at most
 * this long from the first such part. */
#define NODE_MANIFEST_AHEAD_MS 2000u
/* ... and, the node's upload rate known, for this many times what the
 * parts would take at it: the blocks already in the kernel's hands go
 * first, about NODE_QUEUE_MIN a session on a slow uplink. */
#define NODE_MANIFEST_AHEAD_TIMES 8u

/* A swarm's rules and warnings. */
#define NODE_STRIKES_BAN 3         /* failed chunks, sole source, to ban */
#define NODE_STOP_MS 2000u         /* "stopped" announces may take this */
#define NODE_NO_PEERS_MS 60000u    /* get gives up when no peer appears */
#define NODE_TRACKER_TRIES 3       /* get gives up on trackers never met */
#define NODE_TRACKER_WORKED 16     /* tiers whose good tracker is kept */
#define NODE_STALL_WARN_MS 60000u  /* no progress for this long: say so */
#define NODE_DIAL_WARN 3           /* dials failed, no peer ever met: say so */
#define NODE_SOURCE_CHECK_MS 5000u /* shared files' size and time checked */
/* ... but at most this many contents' files a second, node-wide: a daemon
 * seeding a thousand contents checks each every 50 s instead of waking a
 * thread 200 times a second (reads still check every block they serve). */
#define NODE_SOURCE_CHECKS_PER_S 20u
/* A seeding swarm with no session reports its progress every this many
 * ticks (5 s), not every tick: nothing moves, and a daemon seeding
 * thousands would spend its idle time saying so. */
#define NODE_IDLE_PROGRESS_TICKS 10u
#define NODE_NO_SOURCE_MS 5000u /* chunks nobody connected has: say so */
/* A full get closes a session through which nothing can pass either way
 * (neither holds anything the other lacks) once it is this old, one a
 * tick, to make room for a peer that holds something. */
#define NODE_FUTILE_MS 3000u

/* Peer exchange (pex.c; docs/protocol.md, "Peer exchange"). The records
 * per message are the wire's PWIRE_PEX_MAX_RECORDS. */
#define PEX_MAX_MESSAGES_PER_MIN 2 /* PEX messages after a session's first */
#define PEX_SEND_MS 30000u         /* so: one every 30 s at most */
#define PEX_BURST 3 /* a receiver's allowance: the first and two more */
#define PEX_MAX_KEPT                                                           \
  200                     /* records a swarm keeps; a new one replaces the     \
                             oldest */
#define PEX_DIAL_MS 5000u /* a swarm that needs peers tries records */
#define PEX_GIVEN_MAX 8   /* --peer addresses a swarm keeps dialling */
#define PEX_OWN_MAX 8     /* our own certificates: one per tracker key */
#define PEX_ASK_MS                                                             \
  60000u /* a certificate asked for and not given: the                         \
            next announce asks again after this */

#endif
