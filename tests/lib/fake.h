/* A fake peer for integration tests and benchmarks: a single-threaded
 * peer-wire server on its own thread, registered at a real tracker.
 *
 * Holding every chunk (holds_all), it serves the signed manifest it was
 * given (a genuine one, or a hostile one) and every block it is asked for
 * with every byte changed (with honest set, as it is; with forging set,
 * in a frame changed after it was sealed), or, with choking set, serves
 * nothing at all;
 * holding nothing, it watches what the peers announce to it. Either way it
 * records every have-map and HAVE it receives: how many, which chunks, and
 * when. It announces itself to the tracker when it starts and every second
 * after, and ends by itself after FAKE_LIFE_MS.
 *
 * Ownership: fake_start copies the manifest and the data; the thread owns
 * the fake until fake_halt, after which the caller reads what it recorded;
 * fake_stop frees it. The tracker (tests/lib/tclient.h) is borrowed for the
 * fake's life.
 */
#ifndef SHOAL_TESTS_FAKE_H
#define SHOAL_TESTS_FAKE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/identity.h"
#include "common/manifest.h"
#include "tests/lib/tclient.h"

#define FAKE_LIFE_MS 120000 /* a fake peer thread ends by itself after this */
#define FAKE_MAX_SESSIONS 8
#define FAKE_HAVES_KEPT 4096

struct fake {
  struct identity id;
  int lfd;
  int port;
  uint8_t content[MANIFEST_ID_BYTES];
  uint8_t *manifest; /* signed manifest bytes (a copy) */
  size_t manifest_len;
  uint8_t *data; /* the single file's bytes (a copy) */
  uint64_t data_len;
  unsigned chunk_log2;
  uint32_t chunks;
  const struct tc_tracker *tracker;
  uint64_t announce_seq;
  uint64_t hello_seq;
  uint64_t deadline_ms;
  pthread_t th;
  int running;
  atomic_int stop;
  atomic_uint parts;  /* manifest parts served */
  atomic_uint blocks; /* (corrupted) blocks served */
  int holds_all; /* else it holds nothing, and watches what peers announce */
  atomic_int choking; /* never unchokes: holds all and serves nothing */
  atomic_int honest;  /* serves the true bytes, not changed ones */
  atomic_int forging; /* each DATA frame with a bit of its block flipped
                         after sealing: a frame that does not open */
  atomic_uint ended;  /* sessions that ended after their hellos */
  /* What peers announced, in their have-maps (FAKE_SEEN_MAP) and HAVEs
   * (FAKE_SEEN_HAVE): the counts atomic while the thread runs, the rest
   * read once it is stopped. */
  atomic_uint have_msgs;
  atomic_uint have_chunks; /* distinct chunks announced either way */
  atomic_uint have_bad;    /* out of range, empty, or in a HAVE twice */
  unsigned have_full;      /* HAVEs of NODE_HAVE_BATCH chunks */
  uint64_t have_first_ms, have_last_ms;
  uint8_t *have_seen; /* one byte a chunk */
  /* When each HAVE came (proc_now_ms) and how many chunks it held, for the
   * first FAKE_HAVES_KEPT of them. */
  uint64_t have_at[FAKE_HAVES_KEPT];
  uint32_t have_size[FAKE_HAVES_KEPT];
};

/* Starts a fake peer for content (see above). Returns NULL when it cannot
 * listen, reach the tracker or start its thread (nothing is left then). */
struct fake *fake_start(const struct tc_tracker *tracker,
                        const uint8_t content[32], const uint8_t *manifest,
                        size_t manifest_len, const uint8_t *data,
                        uint64_t data_len, unsigned chunk_log2, uint32_t chunks,
                        int holds_all);
/* Stops the thread: what it recorded is then the caller's to read. */
void fake_halt(struct fake *fk);
/* Halts and frees; NULL is a no-op. */
void fake_stop(struct fake *fk);

#endif
