/* Unit tests for peer/picker.c: block coverage and shapes, rarest first with
 * random ties, random first, finishing started chunks, who may be asked for
 * what, duplicates and endgame cancels, failures, rejects, departures and
 * timeouts, simulated downloads, and the memory bound for a content of 2^20
 * chunks.
 *
 * The manifests here are built by hand: the picker only reads chunk_count,
 * chunk_log2 and the files' sizes and first chunks (manifest_chunk_len), so
 * no hashing or signing is needed. Random choices inside the picker come
 * from libsodium; the simulations drive their own choices from a seeded
 * generator so that a failure can be replayed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/error.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "peer/picker.h"
#include "tests/lib/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define TP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TP_ASAN 1
#endif
#endif

/* The tests' own random choices (tu_rand): seeded where each test
 * starts, so that a failure replays. */
static uint64_t rng;

#ifdef TP_ASAN
/* AddressSanitizer replaces malloc, so glibc's statistics miss its blocks;
 * its own counter is declared here because GCC ships no header for it. */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void) {
  return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>

static size_t heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}
#endif

#define BLOCK PWIRE_BLOCK_BYTES
#define MAX_FILES 4

/* ---------------------------------------------------------------------- */
/* Helpers */

struct fake {
  struct manifest m;
  struct manifest_file files[MAX_FILES];
};

/* A manifest with n files of the given sizes and chunks of 2^log2 bytes. */
static void fake_init(struct fake *f, unsigned log2, const uint64_t *sizes,
                      unsigned n) {
  uint64_t cs = (uint64_t)1 << log2;
  uint64_t chunks = 0;
  uint64_t total = 0;

  assert_true(n <= MAX_FILES);
  memset(f, 0, sizeof(*f));
  for (unsigned i = 0; i < n; i++) {
    f->files[i].size = sizes[i];
    f->files[i].first_chunk = (uint32_t)chunks;
    f->files[i].chunk_count = (uint32_t)((sizes[i] + cs - 1) / cs);
    chunks += f->files[i].chunk_count;
    total += sizes[i];
  }
  f->m.kind = n > 1 ? MANIFEST_KIND_FOLDER : MANIFEST_KIND_FILE;
  f->m.chunk_log2 = (uint8_t)log2;
  f->m.total_size = total;
  f->m.file_count = n;
  f->m.files = f->files;
  f->m.chunk_count = (uint32_t)chunks;
}

/* Several chunks of 4 blocks in two files: file 0 ends in a short chunk
 * with a short last block (100000 = 65536 + 34464), file 1 in a one-block
 * chunk. 7 chunks, 23 blocks. */
static void fake_standard(struct fake *f) {
  const uint64_t sizes[2] = {4 * (256u << 10) + 100000, 300000};
  fake_init(f, 18, sizes, 2);
  assert_int_equal(f->m.chunk_count, 7);
}

/* One file of size bytes in chunks of 2^log2 bytes. */
static void fake_file(struct fake *f, unsigned log2, uint64_t size) {
  fake_init(f, log2, &size, 1);
}

/* n chunks of one block each (16 KiB). */
static void fake_small(struct fake *f, uint32_t n) {
  fake_file(f, 14, (uint64_t)n << 14);
}

static uint32_t blocks_in(const struct manifest *m, uint32_t c) {
  return (manifest_chunk_len(m, c) + BLOCK - 1) / BLOCK;
}

static uint8_t *map_new(uint32_t chunks) {
  uint8_t *map = calloc((chunks + 7) / 8 + 1, 1);
  assert_non_null(map);
  return map;
}

static void map_set(uint8_t *map, uint32_t c) {
  map[c >> 3] |= (uint8_t)(0x80u >> (c & 7));
}

static int map_get(const uint8_t *map, uint32_t c) {
  return (map[c >> 3] >> (7 - (c & 7))) & 1;
}

static uint8_t *map_all(uint32_t chunks) {
  uint8_t *map = map_new(chunks);
  for (uint32_t c = 0; c < chunks; c++) {
    map_set(map, c);
  }
  return map;
}

/* A map holding the listed chunks; the list ends at UINT32_MAX. */
static uint8_t *map_of(uint32_t chunks, const uint32_t *list) {
  uint8_t *map = map_new(chunks);
  for (; *list != UINT32_MAX; list++) {
    map_set(map, *list);
  }
  return map;
}

/* A picker over m holding have (NULL: nothing), with n peers 0, 1, ...
 * added, holding the maps that follow (each a const uint8_t *, or NULL). */
static struct picker *picker_with(const struct manifest *m, const uint8_t *have,
                                  unsigned n, ...) {
  struct picker *p = picker_new(m, have);
  va_list ap;
  assert_non_null(p);
  va_start(ap, n);
  for (unsigned i = 0; i < n; i++) {
    assert_int_equal(picker_peer_add(p, i, va_arg(ap, const uint8_t *)), 0);
  }
  va_end(ap);
  return p;
}

static void check_shape(const struct manifest *m,
                        const struct picker_block *b) {
  uint32_t clen;
  assert_true(b->chunk < m->chunk_count);
  clen = manifest_chunk_len(m, b->chunk);
  assert_int_equal(b->offset % BLOCK, 0);
  assert_true(b->offset < clen);
  assert_int_equal(b->length,
                   clen - b->offset < BLOCK ? clen - b->offset : BLOCK);
  /* Never across the chunk's end. */
  assert_true((uint64_t)b->offset + b->length <= clen);
}

static int same_block(const struct picker_block *a,
                      const struct picker_block *b) {
  return a->chunk == b->chunk && a->offset == b->offset &&
         a->length == b->length;
}

static int contains(const struct picker_block *list, unsigned n,
                    const struct picker_block *b) {
  for (unsigned i = 0; i < n; i++) {
    if (same_block(&list[i], b)) {
      return 1;
    }
  }
  return 0;
}

static int done(struct picker *p, unsigned peer, const struct picker_block *b,
                int *chunk_done) {
  unsigned cancel[PICKER_ENDGAME_DUP];
  unsigned ncancel = 99;
  int r = picker_block_done(p, peer, b, chunk_done, cancel, &ncancel);
  assert_true(ncancel < PICKER_ENDGAME_DUP);
  return r;
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------- */
/* Coverage and shapes */

static void test_next_covers_every_block_once_within_chunks(void **state) {
  struct fake f;
  struct picker *p;
  uint8_t *all;
  uint8_t seen[7][4] = {{0}};
  struct picker_block out[3];
  unsigned total = 0;
  uint64_t bytes = 0;
  unsigned k;
  (void)state;

  fake_standard(&f);
  all = map_all(7);
  p = picker_with(&f.m, NULL, 1, all);
  while ((k = picker_next(p, 0, 1, out, 3)) > 0) {
    assert_true(k <= 3);
    for (unsigned i = 0; i < k; i++) {
      check_shape(&f.m, &out[i]);
      assert_int_equal(seen[out[i].chunk][out[i].offset / BLOCK], 0);
      seen[out[i].chunk][out[i].offset / BLOCK] = 1;
      bytes += out[i].length;
      total++;
    }
    assert_true(total <= 23);
  }
  assert_int_equal(total, 23);
  assert_int_equal(bytes, f.m.total_size);
  assert_int_equal(picker_outstanding(p, 0), 23);
  /* The short tails are where they belong. */
  assert_int_equal(manifest_chunk_len(&f.m, 4), 100000);
  assert_int_equal(blocks_in(&f.m, 4), 2);
  assert_int_equal(blocks_in(&f.m, 6), 1);
  /* Every block then arrives; each chunk completes on its last block. */
  for (uint32_t c = 0; c < 7; c++) {
    for (uint32_t b = 0; b < blocks_in(&f.m, c); b++) {
      uint32_t clen = manifest_chunk_len(&f.m, c);
      struct picker_block blk = {
          c, b * BLOCK, clen - b * BLOCK < BLOCK ? clen - b * BLOCK : BLOCK};
      int cd;
      assert_int_equal(done(p, 0, &blk, &cd), 1);
      assert_int_equal(cd, b + 1 == blocks_in(&f.m, c));
    }
    picker_chunk_verified(p, c);
  }
  assert_int_equal(picker_outstanding(p, 0), 0);
  assert_true(picker_complete(p));
  picker_free(p);
  free(all);
}

/* picker_block_wanted says what picker_block_done would, and changes
 * nothing: only a block in flight to that peer and not yet received. */
static void test_block_wanted_matches_block_done(void **state) {
  struct fake f;
  struct picker *p;
  uint8_t *all;
  struct picker_block out[2], other;
  unsigned cancel[PICKER_ENDGAME_DUP], ncancel = 0;
  int done = 0;
  (void)state;

  fake_standard(&f);
  all = map_all(7);
  p = picker_with(&f.m, NULL, 2, all, all);
  assert_int_equal(picker_next(p, 0, 1, out, 2), 2);
  assert_true(picker_block_wanted(p, 0, &out[0]));
  assert_true(picker_block_wanted(p, 0, &out[1]));
  assert_true(picker_block_wanted(p, 0, &out[0]));  /* asking twice */
  assert_false(picker_block_wanted(p, 1, &out[0])); /* not asked of 1 */
  assert_false(picker_block_wanted(p, PICKER_MAX_PEERS, &out[0]));
  other = out[0];
  other.length--; /* not the block asked for */
  assert_false(picker_block_wanted(p, 0, &other));
  assert_int_equal(picker_block_done(p, 0, &out[0], &done, cancel, &ncancel),
                   1);
  assert_false(picker_block_wanted(p, 0, &out[0])); /* received */
  picker_block_rejected(p, 0, &out[1]);
  assert_false(picker_block_wanted(p, 0, &out[1])); /* given back */
  picker_free(p);
  free(all);
}

static void test_max_zero_and_unknown_peer_get_nothing(void **state) {
  struct fake f;
  struct picker *p;
  uint8_t *all;
  struct picker_block out[4];
  (void)state;

  fake_standard(&f);
  all = map_all(7);
  p = picker_new(&f.m, NULL);
  assert_non_null(p);
  assert_int_equal(picker_next(p, 3, 0, out, 4), 0); /* never added */
  assert_int_equal(picker_peer_add(p, 3, all), 0);
  assert_int_equal(picker_peer_add(p, 3, all), SHOAL_EINVAL);
  assert_int_equal(picker_next(p, 3, 0, out, 0), 0);
  assert_int_equal(picker_outstanding(p, 3), 0);
  assert_int_equal(picker_next(p, 3, 0, out, 4), 4);
  picker_free(p);
  free(all);
  picker_free(NULL);
}

/* ---------------------------------------------------------------------- */
/* Choosing new chunks */

static void test_rarest_first_with_random_ties(void **state) {
  /* Chunks 0..3 are ours, so the random-first phase is over. Availability:
   * 4:1 5:2 6:3 7:3 8:1 9:1. */
  const uint32_t a_list[] = {4, 5, 6, 7, 8, 9, UINT32_MAX};
  const uint32_t b_list[] = {5, 6, 7, UINT32_MAX};
  const uint32_t c_list[] = {6, 7, UINT32_MAX};
  const uint32_t have_list[] = {0, 1, 2, 3, UINT32_MAX};
  uint8_t *am = map_of(10, a_list);
  uint8_t *bm = map_of(10, b_list);
  uint8_t *cm = map_of(10, c_list);
  uint8_t *have = map_of(10, have_list);
  unsigned first_a[10] = {0};
  unsigned first_c[10] = {0};
  struct fake f;
  (void)state;

  fake_small(&f, 10);
  for (int run = 0; run < 300; run++) {
    struct picker *p = picker_with(&f.m, have, 3, am, bm, cm);
    struct picker_block out[6];
    assert_int_equal(picker_have_count(p), 4);
    if (run % 3 == 0) {
      /* B's rarest is 5 (held by two), C's a tie between 6 and 7. */
      assert_int_equal(picker_next(p, 1, 0, out, 1), 1);
      assert_int_equal(out[0].chunk, 5);
      assert_int_equal(picker_next(p, 2, 0, out, 1), 1);
      assert_true(out[0].chunk == 6 || out[0].chunk == 7);
      first_c[out[0].chunk]++;
    } else {
      /* A takes all six in order of rarity. */
      assert_int_equal(picker_next(p, 0, 0, out, 6), 6);
      for (int i = 0; i < 3; i++) {
        assert_true(out[i].chunk == 4 || out[i].chunk == 8 ||
                    out[i].chunk == 9);
      }
      assert_int_equal(out[3].chunk, 5);
      assert_true(out[4].chunk == 6 || out[4].chunk == 7);
      assert_true(out[5].chunk == 6 || out[5].chunk == 7);
      assert_int_not_equal(out[4].chunk, out[5].chunk);
      first_a[out[0].chunk]++;
    }
    picker_free(p);
  }
  /* 200 draws among three tied chunks: each comes first sometimes. */
  assert_true(first_a[4] > 20 && first_a[8] > 20 && first_a[9] > 20);
  assert_true(first_c[6] > 10 && first_c[7] > 10);
  free(am);
  free(bm);
  free(cm);
  free(have);
}

static void test_availability_follows_haves_and_departures(void **state) {
  const uint32_t b_list[] = {4, 5, 6, 7, 8, UINT32_MAX};
  const uint32_t have_list[] = {0, 1, 2, 3, UINT32_MAX};
  uint8_t *all = map_all(10);
  uint8_t *bm = map_of(10, b_list);
  uint8_t *have = map_of(10, have_list);
  struct fake f;
  (void)state;

  fake_small(&f, 10);
  for (int run = 0; run < 20; run++) {
    struct picker *p = picker_with(&f.m, have, 2, all, bm);
    struct picker_block out[1];
    /* Only 9 is held by one peer. */
    assert_int_equal(picker_next(p, 0, 0, out, 1), 1);
    assert_int_equal(out[0].chunk, 9);
    /* B leaving makes 4..8 as rare as 9 was; then HAVEs from a third peer
     * make all of them but 6 commoner again. */
    picker_peer_remove(p, 1);
    assert_int_equal(picker_peer_add(p, 2, NULL), 0);
    for (uint32_t c = 4; c < 9; c++) {
      if (c != 6) {
        picker_peer_have(p, 2, c);
      }
    }
    picker_peer_have(p, 2, 4);  /* a repeat counts once */
    picker_peer_have(p, 2, 10); /* out of range: ignored */
    picker_peer_have(p, 2, UINT32_MAX);
    assert_int_equal(picker_next(p, 0, 0, out, 1), 1);
    assert_int_equal(out[0].chunk, 6);
    picker_free(p);
  }
  free(all);
  free(bm);
  free(have);
}

static void test_random_first_while_few_chunks_are_held(void **state) {
  /* Chunk 9 is the only one not held by B, so rarest first would always
   * start there. */
  const uint32_t b_list[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, UINT32_MAX};
  const uint32_t have3[] = {0, 1, 2, UINT32_MAX};
  uint8_t *all = map_all(10);
  uint8_t *bm = map_of(10, b_list);
  uint8_t *have = map_of(10, have3);
  unsigned first[10] = {0};
  struct fake f;
  (void)state;

  fake_small(&f, 10);
  for (int run = 0; run < 200; run++) {
    /* Three chunks held: still random among those the peer has. */
    struct picker *p = picker_with(&f.m, run % 2 ? have : NULL, 2, all, bm);
    struct picker_block out[1];
    assert_int_equal(picker_next(p, 0, 0, out, 1), 1);
    first[out[0].chunk]++;
    if (run % 2) {
      assert_true(out[0].chunk >= 3);
      /* The fourth chunk ends the random phase. */
      picker_chunk_verified(p, 3);
      assert_int_equal(picker_have_count(p), 4);
      if (out[0].chunk != 9) {
        assert_int_equal(picker_next(p, 0, 0, out, 1), 1);
        assert_int_equal(out[0].chunk, 9);
      }
    }
    picker_free(p);
  }
  {
    unsigned distinct = 0;
    for (int c = 0; c < 10; c++) {
      distinct += first[c] > 0;
    }
    assert_true(distinct >= 6);
    assert_true(first[9] < 100);
  }
  free(all);
  free(bm);
  free(have);
}

static void test_started_chunks_are_finished_first(void **state) {
  const uint32_t have_list[] = {0, 1, 2, 3, UINT32_MAX};
  uint8_t *have = map_of(8, have_list);
  uint8_t *all = map_all(8);
  struct fake f;
  (void)state;

  fake_file(&f, 18, 8 * (256u << 10)); /* 8 chunks of 4 blocks */
  for (int run = 0; run < 20; run++) {
    struct picker *p = picker_with(&f.m, have, 2, all, all);
    struct picker_block out[4];
    uint32_t x;
    assert_int_equal(picker_next(p, 0, 0, out, 2), 2);
    x = out[0].chunk;
    assert_int_equal(out[1].chunk, x);
    /* A third peer makes the started chunk the commonest one; it still
     * comes first, and only then a new (rarer) chunk. */
    assert_int_equal(picker_peer_add(p, 2, NULL), 0);
    picker_peer_have(p, 2, x);
    assert_int_equal(picker_next(p, 1, 0, out, 3), 3);
    assert_int_equal(out[0].chunk, x);
    assert_int_equal(out[0].offset, 2 * BLOCK);
    assert_int_equal(out[1].chunk, x);
    assert_int_equal(out[1].offset, 3 * BLOCK);
    assert_int_not_equal(out[2].chunk, x);
    assert_int_equal(out[2].offset, 0);
    picker_free(p);
  }
  free(have);
  free(all);
}

static void test_peer_is_never_asked_for_a_chunk_it_lacks(void **state) {
  struct fake f;
  struct picker *p;
  uint8_t *all;
  uint8_t *some;
  struct picker_block out[5];
  unsigned k;
  unsigned total = 0;
  (void)state;

  fake_small(&f, 200);
  all = map_all(200);
  some = map_new(200);
  rng = 0x1234567;
  for (uint32_t c = 0; c < 200; c++) {
    if (tu_rand(&rng) % 3 == 0) {
      map_set(some, c);
    }
  }
  p = picker_with(&f.m, NULL, 3, all, some, NULL);
  assert_int_equal(picker_next(p, 2, 0, out, 5), 0);
  while ((k = picker_next(p, 1, 0, out, 5)) > 0) {
    for (unsigned i = 0; i < k; i++) {
      assert_true(map_get(some, out[i].chunk));
      total++;
    }
  }
  assert_true(total > 30);
  /* The empty peer announces one chunk nobody was asked for and gets it. */
  for (uint32_t c = 0; c < 200; c++) {
    if (!map_get(some, c)) {
      picker_peer_have(p, 2, c);
      assert_int_equal(picker_next(p, 2, 0, out, 5), 1);
      assert_int_equal(out[0].chunk, c);
      break;
    }
  }
  picker_free(p);
  free(all);
  free(some);
}

static void test_interesting_follows_what_we_lack(void **state) {
  const uint32_t have_list[] = {0, 1, UINT32_MAX};
  uint8_t *have = map_of(7, have_list);
  struct fake f;
  struct picker *p;
  (void)state;

  fake_standard(&f);
  p = picker_new(&f.m, have);
  assert_non_null(p);
  assert_false(picker_interesting(p, 0)); /* not added */
  assert_int_equal(picker_peer_add(p, 0, have), 0);
  assert_false(picker_interesting(p, 0)); /* only what we hold */
  assert_int_equal(picker_peer_add(p, 1, NULL), 0);
  assert_false(picker_interesting(p, 1));
  picker_peer_have(p, 1, 7); /* out of range */
  assert_false(picker_interesting(p, 1));
  picker_peer_have(p, 1, 1);
  assert_false(picker_interesting(p, 1));
  picker_peer_have(p, 1, 5);
  assert_true(picker_interesting(p, 1));
  picker_chunk_verified(p, 5);
  assert_false(picker_interesting(p, 1));
  picker_chunk_failed(p, 5); /* a chunk that turned out bad is lacked again */
  assert_true(picker_interesting(p, 1));
  picker_peer_remove(p, 1);
  assert_false(picker_interesting(p, 1));
  picker_peer_remove(p, 1); /* twice is harmless */
  picker_free(p);
  free(have);
}

/* ---------------------------------------------------------------------- */
/* Arrivals */

static void test_block_done_reports_chunk_done_on_last_block(void **state) {
  const unsigned order[4] = {2, 0, 3, 1};
  uint8_t *all = map_all(1);
  struct picker_block out[8];
  struct fake f;
  struct picker *p;
  (void)state;

  fake_file(&f, 18, 4 * BLOCK); /* one chunk of 4 blocks */
  p = picker_with(&f.m, NULL, 1, all);
  assert_int_equal(picker_next(p, 0, 0, out, 8), 4);
  for (int i = 0; i < 4; i++) {
    int cd = 7;
    assert_int_equal(done(p, 0, &out[order[i]], &cd), 1);
    assert_int_equal(cd, i == 3);
    assert_int_equal(picker_outstanding(p, 0), 3 - i);
  }
  /* All arrived: nothing more to ask while it is being verified. */
  assert_int_equal(picker_next(p, 0, 0, out, 8), 0);
  assert_false(picker_complete(p));
  picker_chunk_verified(p, 0);
  assert_int_equal(picker_have_count(p), 1);
  assert_true(picker_complete(p));
  assert_false(picker_interesting(p, 0));
  picker_free(p);
  free(all);
}

static void test_duplicate_and_unrequested_blocks_are_dropped(void **state) {
  uint8_t *all = map_all(7);
  struct picker_block out[4];
  struct picker_block bad;
  struct fake f;
  struct picker *p;
  int cd;
  (void)state;

  fake_standard(&f);
  p = picker_with(&f.m, NULL, 2, all, all);
  assert_int_equal(picker_next(p, 0, 0, out, 2), 2);
  /* From a peer that was not asked: dropped, and A's request stands. */
  assert_int_equal(done(p, 1, &out[0], &cd), 0);
  assert_int_equal(cd, 0);
  assert_int_equal(picker_outstanding(p, 0), 2);
  assert_int_equal(done(p, 0, &out[0], &cd), 1);
  /* The same block again, from either peer. */
  assert_int_equal(done(p, 0, &out[0], &cd), 0);
  assert_int_equal(done(p, 1, &out[0], &cd), 0);
  assert_int_equal(picker_outstanding(p, 0), 1);
  /* Shapes that are not a requested block. */
  bad = out[1];
  bad.offset += 1;
  assert_int_equal(done(p, 0, &bad, &cd), 0);
  bad = out[1];
  bad.length -= 1;
  assert_int_equal(done(p, 0, &bad, &cd), 0);
  bad = out[1];
  bad.offset += 16 * BLOCK;
  assert_int_equal(done(p, 0, &bad, &cd), 0);
  bad = out[1];
  bad.chunk = 7;
  assert_int_equal(done(p, 0, &bad, &cd), 0);
  bad.chunk = UINT32_MAX;
  assert_int_equal(done(p, 0, &bad, &cd), 0);
  /* A block of a chunk nobody was asked for. */
  bad = out[1];
  bad.chunk = out[1].chunk == 0 ? 1 : 0;
  assert_int_equal(done(p, 0, &bad, &cd), 0);
  assert_int_equal(picker_outstanding(p, 0), 1);
  assert_int_equal(done(p, 0, &out[1], &cd), 1);
  assert_int_equal(picker_outstanding(p, 0), 0);
  picker_free(p);
  free(all);
}

static void test_endgame_duplicates_and_cancels(void **state) {
  const uint32_t first[] = {0, UINT32_MAX};
  uint8_t *all = map_all(2);
  uint8_t *only0 = map_of(2, first);
  struct picker_block out[8];
  struct picker_block dup[8];
  unsigned cancel[PICKER_ENDGAME_DUP];
  unsigned ncancel;
  struct fake f;
  struct picker *p;
  int cd;
  (void)state;

  fake_file(&f, 18, (256u << 10) + 1000); /* 4 blocks + 1 short */
  assert_int_equal(f.m.chunk_count, 2);
  p = picker_with(&f.m, NULL, 4, only0, only0, all, all);
  /* A and B have chunk 0 only. A takes chunk 0 while chunk 1 is still
   * unasked: not endgame, so B gets nothing. */
  assert_int_equal(picker_next(p, 0, 0, out, 8), 4);
  assert_int_equal(picker_next(p, 1, 0, dup, 8), 0);
  assert_int_equal(PICKER_ENDGAME_PEER, 2); /* the offsets below */
  /* C takes chunk 1 later (room for one only, or it would go on into
   * endgame): now every missing block is asked of someone. */
  assert_int_equal(picker_next(p, 2, 3, out + 4, 1), 1);
  assert_int_equal(out[4].chunk, 1);
  /* A has PICKER_ENDGAME_PEER blocks in flight or more: no duplicate for
   * it. B, idle, takes PICKER_ENDGAME_PEER of chunk 0's blocks (asked at
   * the same time: in order), and no more. */
  assert_int_equal(picker_next(p, 0, 5, dup, 8), 0);
  assert_int_equal(picker_next(p, 1, 5, dup, 8), PICKER_ENDGAME_PEER);
  for (int i = 0; i < PICKER_ENDGAME_PEER; i++) {
    assert_true(same_block(&dup[i], &out[i]));
    check_shape(&f.m, &dup[i]);
  }
  assert_int_equal(picker_next(p, 1, 5, dup + 2, 8), 0);
  /* D first takes the block asked most recently (chunk 1's, of C), then
   * chunk 0's next, never one with two copies already. */
  assert_int_equal(picker_next(p, 3, 5, dup + 2, 8), PICKER_ENDGAME_PEER);
  assert_true(same_block(&dup[2], &out[4]));
  assert_true(same_block(&dup[3], &out[2]));
  /* C, with one block in flight, takes the one block left with a single
   * copy; then nobody gets anything: two copies each. */
  assert_int_equal(picker_next(p, 2, 5, dup + 4, 8), 1);
  assert_true(same_block(&dup[4], &out[3]));
  for (unsigned peer = 0; peer < 4; peer++) {
    assert_int_equal(picker_next(p, peer, 6, dup + 5, 3), 0);
  }
  /* B's copy of block 0 arrives first: A is to be cancelled. */
  assert_int_equal(picker_block_done(p, 1, &dup[0], &cd, cancel, &ncancel), 1);
  assert_int_equal(ncancel, 1);
  assert_int_equal(cancel[0], 0);
  assert_int_equal(picker_outstanding(p, 0), 3);
  assert_int_equal(picker_outstanding(p, 1), 1);
  assert_int_equal(picker_block_done(p, 0, &out[0], &cd, cancel, &ncancel), 0);
  assert_int_equal(ncancel, 0);
  /* A rejects block 1, so its only copy is B's; when B delivers it there
   * is nobody to cancel. */
  picker_block_rejected(p, 0, &out[1]);
  assert_int_equal(picker_block_done(p, 1, &dup[1], &cd, cancel, &ncancel), 1);
  assert_int_equal(ncancel, 0);
  /* Chunk 1: C's copy first, D cancelled. */
  assert_int_equal(picker_block_done(p, 2, &out[4], &cd, cancel, &ncancel), 1);
  assert_int_equal(cd, 1);
  assert_int_equal(ncancel, 1);
  assert_int_equal(cancel[0], 3);
  assert_int_equal(picker_outstanding(p, 3), 1);
  assert_int_equal(picker_outstanding(p, 2), 1);
  picker_free(p);
  free(all);
  free(only0);
}

/* An endgame copy goes only to a peer that would deliver it before the peer
 * already asked (rates from picker_peer_rate), and not for a block that
 * peer has all but sent: one of its last two. */
static void test_endgame_copies_only_from_a_sooner_peer(void **state) {
  uint8_t *all = map_all(1);
  struct picker_block out[8];
  struct picker_block dup[8];
  struct fake f;
  struct picker *p;
  int cd;
  (void)state;

  fake_file(&f, 18, 4 * BLOCK); /* one chunk of 4 blocks */
  p = picker_new(&f.m, NULL);
  assert_non_null(p);
  for (unsigned peer = 0; peer < 6; peer++) {
    assert_int_equal(picker_peer_add(p, peer, all), 0);
  }
  /* A is asked for all 4 blocks at 100 KB/s: 2.6 s to deliver them. */
  assert_int_equal(picker_next(p, 0, 0, out, 8), 4);
  picker_peer_rate(p, 0, 100000);
  /* C, at 10 KB/s, would take 6.5 s for one block: no copy. D's rate is
   * not known yet: no copy either. */
  picker_peer_rate(p, 2, 10000);
  assert_int_equal(picker_next(p, 2, 5, dup, 8), 0);
  assert_int_equal(picker_next(p, 3, 5, dup, 8), 0);
  /* F, at 40 KB/s, would deliver one in 1.6 s: sooner than A, but not in
   * half A's time, so its copy would likely come second. No copy. */
  picker_peer_rate(p, 5, 40000);
  assert_int_equal(picker_next(p, 5, 5, dup, 8), 0);
  /* B, at 1 MB/s, delivers a block in 65 ms: it takes its copies. */
  picker_peer_rate(p, 1, 1000000);
  assert_int_equal(picker_next(p, 1, 5, dup, 8), PICKER_ENDGAME_PEER);
  assert_true(same_block(&dup[0], &out[0])); /* asked together: in order */
  assert_true(same_block(&dup[1], &out[1]));
  /* A delivers two: its other two are as good as sent, and even a fast
   * idle peer takes no copy of them. */
  assert_int_equal(done(p, 0, &out[0], &cd), 1);
  assert_int_equal(done(p, 0, &out[1], &cd), 1);
  picker_peer_rate(p, 4, 10000000);
  assert_int_equal(picker_next(p, 4, 6, dup + 2, 8), 0);
  picker_free(p);

  /* When the peer asked sends nothing (its rate is not known), anyone
   * takes a copy. */
  p = picker_new(&f.m, NULL);
  assert_non_null(p);
  for (unsigned peer = 0; peer < 2; peer++) {
    assert_int_equal(picker_peer_add(p, peer, all), 0);
  }
  assert_int_equal(picker_next(p, 0, 0, out, 8), 4);
  assert_int_equal(picker_next(p, 1, 5, dup, 8), PICKER_ENDGAME_PEER);
  picker_free(p);
  free(all);
}

/* ---------------------------------------------------------------------- */
/* Giving blocks back */

static void test_chunk_failed_makes_all_blocks_wanted_again(void **state) {
  uint8_t *all = map_all(1);
  struct picker_block out[8];
  struct picker_block again[8];
  struct fake f;
  struct picker *p;
  int cd = 0;
  (void)state;

  fake_file(&f, 18, 3 * BLOCK + 10); /* one chunk of 4 blocks */
  p = picker_with(&f.m, NULL, 1, all);
  assert_int_equal(picker_next(p, 0, 0, out, 8), 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(done(p, 0, &out[i], &cd), 1);
  }
  assert_int_equal(cd, 1);
  picker_chunk_failed(p, 0);
  assert_int_equal(picker_have_count(p), 0);
  assert_true(picker_interesting(p, 0));
  assert_int_equal(picker_next(p, 0, 0, again, 8), 4);
  assert_memory_equal(out, again, sizeof(out[0]) * 4);
  /* Failing it while blocks are in flight drops those requests too. */
  assert_int_equal(done(p, 0, &again[0], &cd), 1);
  picker_chunk_failed(p, 0);
  assert_int_equal(picker_outstanding(p, 0), 0);
  assert_int_equal(done(p, 0, &again[1], &cd), 0);
  assert_int_equal(picker_next(p, 0, 0, again, 8), 4);
  assert_memory_equal(out, again, sizeof(out[0]) * 4);
  picker_free(p);
  free(all);
}

static void test_rejected_block_goes_to_another_peer(void **state) {
  uint8_t *all = map_all(4);
  struct picker_block out[2];
  struct picker_block other[2];
  struct fake f;
  struct picker *p;
  int cd;
  (void)state;

  fake_file(&f, 18, 4 * (256u << 10)); /* 4 chunks of 4 blocks */
  p = picker_with(&f.m, NULL, 2, all, all);
  assert_int_equal(picker_next(p, 0, 0, out, 2), 2);
  /* A reject from the wrong peer, or of a changed shape, is ignored. */
  picker_block_rejected(p, 1, &out[1]);
  other[0] = out[1];
  other[0].length = 1;
  picker_block_rejected(p, 0, &other[0]);
  assert_int_equal(picker_outstanding(p, 0), 2);
  picker_block_rejected(p, 0, &out[1]);
  assert_int_equal(picker_outstanding(p, 0), 1);
  assert_int_equal(picker_next(p, 1, 0, other, 1), 1);
  assert_memory_equal(&other[0], &out[1], sizeof(other[0]));
  /* A's late copy is no longer wanted from A. */
  assert_int_equal(done(p, 0, &out[1], &cd), 0);
  assert_int_equal(done(p, 1, &out[1], &cd), 1);
  picker_free(p);
  free(all);
}

static void test_peer_remove_gives_blocks_back(void **state) {
  uint8_t *all = map_all(2);
  struct picker_block out[5];
  struct picker_block back[5];
  struct fake f;
  struct picker *p;
  int cd;
  (void)state;

  fake_file(&f, 18, 2 * (256u << 10)); /* 2 chunks of 4 blocks */
  p = picker_with(&f.m, NULL, 2, all, all);
  assert_int_equal(picker_next(p, 0, 0, out, 5), 5);
  assert_int_equal(done(p, 0, &out[0], &cd), 1);
  picker_peer_remove(p, 0);
  assert_int_equal(picker_outstanding(p, 0), 0);
  /* B gets the four A still owed: three of the started chunk, then the
   * other chunk's first block, which went back to wanted. */
  assert_int_equal(picker_next(p, 1, 0, back, 4), 4);
  for (int i = 0; i < 4; i++) {
    assert_true(contains(out + 1, 4, &back[i]));
  }
  /* A, back again, starts from nothing; its old data is unwanted. */
  assert_int_equal(picker_peer_add(p, 0, all), 0);
  assert_int_equal(done(p, 0, &out[1], &cd), 0);
  assert_int_equal(picker_outstanding(p, 0), 0);
  picker_free(p);
  free(all);
}

/* A chunk whose only request is given back, with nothing of it received,
 * is no longer "started": it competes on rarity again. The request goes
 * back by reject (how 0), timeout (1) or the asked peer leaving (2). */
static void abandon_and_check(unsigned how) {
  const uint32_t have_list[] = {0, 1, 2, 3, UINT32_MAX};
  const uint32_t c_list[] = {4, 5, 6, 7, 8, UINT32_MAX};
  uint8_t *have = map_of(10, have_list);
  uint8_t *all = map_all(10);
  uint8_t *cm = map_of(10, c_list);
  struct picker_block out[4];
  unsigned peers[4];
  unsigned asker = how == 2 ? 4 : 0;
  struct fake f;
  struct picker *p;

  fake_small(&f, 10);
  p = picker_with(&f.m, have, 3, all, all, cm);
  if (how == 2) {
    assert_int_equal(picker_peer_add(p, 4, all), 0);
  }
  /* 9 is the rarest. */
  assert_int_equal(picker_next(p, asker, 100, out, 1), 1);
  assert_int_equal(out[0].chunk, 9);
  if (how == 0) {
    picker_block_rejected(p, asker, &out[0]);
  } else if (how == 1) {
    assert_int_equal(picker_expire(p, 5000, 1000, out + 1, peers, 4), 1);
  } else {
    picker_peer_remove(p, asker);
  }
  assert_int_equal(picker_outstanding(p, asker), 0);
  /* Now 9 is the commonest: D has it, C (with 4..8) left. */
  assert_int_equal(picker_peer_add(p, 3, NULL), 0);
  picker_peer_have(p, 3, 9);
  picker_peer_remove(p, 2);
  assert_int_equal(picker_next(p, 1, 6000, out, 1), 1);
  assert_true(out[0].chunk >= 4 && out[0].chunk <= 8);
  picker_free(p);
  free(have);
  free(all);
  free(cm);
}

static void test_abandoned_chunk_goes_back_to_rarest_first(void **state) {
  (void)state;
  for (unsigned how = 0; how < 3; how++) {
    for (int run = 0; run < 10; run++) {
      abandon_and_check(how);
    }
  }
}

static void test_expire_returns_old_requests_with_their_peer(void **state) {
  uint8_t *all = map_all(1);
  struct picker_block a[3];
  struct picker_block b[2];
  struct picker_block exp[8];
  unsigned peers[8];
  struct fake f;
  struct picker *p;
  (void)state;

  fake_file(&f, 20, 16 * BLOCK); /* one chunk of 16 blocks */
  p = picker_new(&f.m, NULL);
  assert_non_null(p);
  assert_int_equal(picker_peer_add(p, 4, all), 0);
  assert_int_equal(picker_peer_add(p, 9, all), 0);
  assert_int_equal(picker_next(p, 4, 1000, a, 3), 3);
  assert_int_equal(picker_next(p, 9, 5000, b, 2), 2);
  /* Too early for anything; now below the timeout cannot underflow. */
  assert_int_equal(picker_expire(p, 3000, 2000, exp, peers, 8), 0);
  assert_int_equal(picker_expire(p, 10, 2000, exp, peers, 8), 0);
  /* One at a time when max is 1. */
  assert_int_equal(picker_expire(p, 6000, 2000, exp, peers, 1), 1);
  assert_int_equal(peers[0], 4);
  assert_true(contains(a, 3, &exp[0]));
  assert_int_equal(picker_expire(p, 6000, 2000, exp + 1, peers + 1, 8), 2);
  assert_int_equal(peers[1], 4);
  assert_int_equal(peers[2], 4);
  assert_true(contains(a, 3, &exp[1]) && contains(a, 3, &exp[2]));
  assert_false(same_block(&exp[0], &exp[1]) || same_block(&exp[1], &exp[2]) ||
               same_block(&exp[0], &exp[2]));
  assert_int_equal(picker_outstanding(p, 4), 0);
  assert_int_equal(picker_outstanding(p, 9), 2);
  /* The expired blocks come back, to B this time. */
  assert_int_equal(picker_next(p, 9, 6000, exp + 3, 3), 3);
  for (int i = 0; i < 3; i++) {
    assert_true(contains(a, 3, &exp[3 + i]));
  }
  /* Exactly at the cutoff is not yet older than the timeout. */
  assert_int_equal(picker_expire(p, 7000, 2000, exp, peers, 8), 0);
  assert_int_equal(picker_expire(p, 7001, 2000, exp, peers, 8), 2);
  assert_int_equal(peers[0], 9);
  assert_int_equal(picker_outstanding(p, 9), 3);
  picker_free(p);
  free(all);
}

static void test_have_bitmap_at_new_is_never_requested(void **state) {
  const uint32_t list[] = {0, 2, 5, UINT32_MAX};
  uint8_t *have = map_of(7, list);
  uint8_t *all = map_all(7);
  struct picker_block out[4];
  struct fake f;
  struct picker *p;
  unsigned k;
  unsigned total = 0;
  (void)state;

  fake_standard(&f);
  p = picker_new(&f.m, have);
  assert_non_null(p);
  assert_int_equal(picker_have_count(p), 3);
  assert_false(picker_complete(p));
  assert_int_equal(picker_peer_add(p, 0, all), 0);
  while ((k = picker_next(p, 0, 0, out, 4)) > 0) {
    for (unsigned i = 0; i < k; i++) {
      assert_false(map_get(have, out[i].chunk));
      total++;
    }
  }
  /* Blocks of chunks 1, 3, 4, 6: 4 + 4 + 2 + 1. */
  assert_int_equal(total, 11);
  picker_free(p);
  /* Holding everything: complete from the start, nobody interesting. */
  p = picker_new(&f.m, all);
  assert_non_null(p);
  assert_true(picker_complete(p));
  assert_int_equal(picker_peer_add(p, 0, all), 0);
  assert_false(picker_interesting(p, 0));
  assert_int_equal(picker_next(p, 0, 0, out, 4), 0);
  picker_free(p);
  free(have);
  free(all);
}

static void test_complete_after_every_chunk_is_verified(void **state) {
  uint8_t *all = map_all(7);
  struct picker_block out[32];
  struct fake f;
  struct picker *p;
  unsigned k;
  int cd;
  (void)state;

  fake_standard(&f);
  p = picker_with(&f.m, NULL, 1, all);
  k = picker_next(p, 0, 0, out, 32);
  assert_int_equal(k, 23);
  for (unsigned i = 0; i < k; i++) {
    assert_int_equal(done(p, 0, &out[i], &cd), 1);
    if (cd) {
      assert_false(picker_complete(p));
      picker_chunk_verified(p, out[i].chunk);
    }
  }
  assert_int_equal(picker_have_count(p), 7);
  assert_true(picker_complete(p));
  assert_false(picker_interesting(p, 0));
  picker_free(p);
  free(all);
}

/* ---------------------------------------------------------------------- */
/* Simulated downloads */

#define SIM_PEERS 5
#define SIM_PIPE 6
#define SIM_QUEUE 64
#define SIM_TIMEOUT 400

struct sim_req {
  struct picker_block b;
  uint64_t asked_ms;
  int cancelled; /* a cancel was sent but the copy may still come */
};

struct sim_peer {
  struct sim_req q[SIM_QUEUE];
  unsigned n;
  int present;
  uint8_t *map;
};

struct sim {
  const struct manifest *m;
  struct picker *p;
  uint32_t nchunks;
  uint32_t *base;     /* first block id of each chunk */
  uint8_t *received;  /* per block */
  uint8_t *asked;     /* per block: peers with a live request */
  uint32_t *accepted; /* per block: block_done returned 1 */
  uint32_t *fails;    /* per chunk */
  uint8_t *verified;  /* per chunk */
  struct sim_peer peers[SIM_PEERS];
  unsigned dups;
};

static uint32_t sim_id(const struct sim *s, const struct picker_block *b) {
  return s->base[b->chunk] + b->offset / BLOCK;
}

/* Every block not received is asked of someone: the endgame condition. */
static int sim_all_missing_asked(const struct sim *s) {
  for (uint32_t c = 0; c < s->nchunks; c++) {
    if (s->verified[c]) {
      continue;
    }
    for (uint32_t i = s->base[c]; i < s->base[c + 1]; i++) {
      if (!s->received[i] && s->asked[i] == 0) {
        return 0;
      }
    }
  }
  return 1;
}

static unsigned sim_live(const struct sim_peer *sp) {
  unsigned n = 0;
  for (unsigned i = 0; i < sp->n; i++) {
    n += !sp->q[i].cancelled;
  }
  return n;
}

static void sim_drop(struct sim_peer *sp, unsigned i) {
  sp->q[i] = sp->q[--sp->n];
}

static void sim_refill(struct sim *s, unsigned peer, uint64_t now) {
  struct sim_peer *sp = &s->peers[peer];
  struct picker_block out[SIM_PIPE];
  unsigned live = sim_live(sp);
  unsigned k;

  assert_int_equal(picker_outstanding(s->p, peer), live);
  if (live >= SIM_PIPE) {
    return;
  }
  k = picker_next(s->p, peer, now, out, SIM_PIPE - live);
  for (unsigned i = 0; i < k; i++) {
    uint32_t id = sim_id(s, &out[i]);
    check_shape(s->m, &out[i]);
    assert_true(map_get(sp->map, out[i].chunk));
    assert_false(s->verified[out[i].chunk]);
    assert_false(s->received[id]);
    assert_false(s->asked[id] & (1u << peer));
    if (s->asked[id] != 0) {
      /* A second copy only in endgame, and never a third. */
      assert_true(sim_all_missing_asked(s));
      assert_true(__builtin_popcount(s->asked[id]) < PICKER_ENDGAME_DUP);
      s->dups++;
    }
    s->asked[id] |= (uint8_t)(1u << peer);
    assert_true(sp->n < SIM_QUEUE);
    sp->q[sp->n].b = out[i];
    sp->q[sp->n].asked_ms = now;
    sp->q[sp->n].cancelled = 0;
    sp->n++;
  }
}

static void sim_deliver(struct sim *s, unsigned peer) {
  struct sim_peer *sp = &s->peers[peer];
  unsigned cancel[PICKER_ENDGAME_DUP];
  unsigned ncancel;
  struct sim_req rq;
  uint32_t id;
  uint32_t c;
  int expect;
  int cd;
  int r;

  if (sp->n == 0) {
    return;
  }
  {
    unsigned i = tu_rand(&rng) % sp->n;
    rq = sp->q[i];
    sim_drop(sp, i);
  }
  id = sim_id(s, &rq.b);
  c = rq.b.chunk;
  /* Wanted when the peer is asked for it now. A copy whose cancel lost the
   * race counts too when the peer was asked again since (its chunk failed
   * in between): data cannot say which request it answers, so the newer
   * request's copy becomes the stale one. */
  expect = (s->asked[id] & (1u << peer)) && !s->received[id];
  r = picker_block_done(s->p, peer, &rq.b, &cd, cancel, &ncancel);
  assert_int_equal(r, expect);
  if (!r) {
    assert_int_equal(cd, 0);
    assert_int_equal(ncancel, 0);
    return;
  }
  if (rq.cancelled) {
    int found = 0;
    for (unsigned i = 0; i < sp->n && !found; i++) {
      if (!sp->q[i].cancelled && same_block(&sp->q[i].b, &rq.b)) {
        sp->q[i].cancelled = 1;
        found = 1;
      }
    }
    assert_true(found);
  }
  s->received[id] = 1;
  s->accepted[id]++;
  /* Each block is taken once per attempt at its chunk. */
  assert_int_equal(s->accepted[id], s->fails[c] + 1);
  /* The others asked for it are exactly the ones to cancel. */
  {
    uint8_t others = (uint8_t)(s->asked[id] & ~(1u << peer));
    assert_int_equal(ncancel, __builtin_popcount(others));
    for (unsigned j = 0; j < ncancel; j++) {
      struct sim_peer *op = &s->peers[cancel[j]];
      assert_true(others & (1u << cancel[j]));
      for (unsigned i = 0; i < op->n; i++) {
        if (!op->q[i].cancelled && same_block(&op->q[i].b, &rq.b)) {
          /* Half the cancels win the race, half lose it. */
          if (tu_rand(&rng) % 2) {
            sim_drop(op, i);
          } else {
            op->q[i].cancelled = 1;
          }
          break;
        }
      }
    }
  }
  s->asked[id] = 0;
  {
    int all = 1;
    for (uint32_t i = s->base[c]; i < s->base[c + 1]; i++) {
      all &= s->received[i];
    }
    assert_int_equal(cd, all);
  }
  if (cd) {
    if (tu_rand(&rng) % 8 == 0) {
      picker_chunk_failed(s->p, c);
      s->fails[c]++;
      for (uint32_t i = s->base[c]; i < s->base[c + 1]; i++) {
        s->received[i] = 0;
      }
    } else {
      picker_chunk_verified(s->p, c);
      s->verified[c] = 1;
    }
  }
}

static void sim_reject(struct sim *s, unsigned peer) {
  struct sim_peer *sp = &s->peers[peer];
  for (unsigned i = 0; i < sp->n; i++) {
    if (!sp->q[i].cancelled) {
      picker_block_rejected(s->p, peer, &sp->q[i].b);
      s->asked[sim_id(s, &sp->q[i].b)] &= (uint8_t) ~(1u << peer);
      sim_drop(sp, i);
      return;
    }
  }
}

static void sim_expire(struct sim *s, uint64_t now) {
  struct picker_block out[256];
  unsigned peers[256];
  unsigned k = picker_expire(s->p, now, SIM_TIMEOUT, out, peers, 256);

  assert_true(k < 256);
  for (unsigned j = 0; j < k; j++) {
    struct sim_peer *sp = &s->peers[peers[j]];
    int found = 0;
    assert_true(peers[j] < SIM_PEERS);
    for (unsigned i = 0; i < sp->n; i++) {
      if (!sp->q[i].cancelled && same_block(&sp->q[i].b, &out[j])) {
        assert_true(sp->q[i].asked_ms < now - SIM_TIMEOUT);
        s->asked[sim_id(s, &out[j])] &= (uint8_t) ~(1u << peers[j]);
        sim_drop(sp, i);
        found = 1;
        break;
      }
    }
    assert_true(found);
  }
  /* Nothing old is left behind. */
  for (unsigned q = 0; q < SIM_PEERS; q++) {
    for (unsigned i = 0; i < s->peers[q].n; i++) {
      assert_true(s->peers[q].q[i].cancelled ||
                  s->peers[q].q[i].asked_ms >= now - SIM_TIMEOUT);
    }
  }
}

static void sim_remove(struct sim *s, unsigned peer) {
  struct sim_peer *sp = &s->peers[peer];
  picker_peer_remove(s->p, peer);
  for (unsigned i = 0; i < sp->n; i++) {
    s->asked[sim_id(s, &sp->q[i].b)] &= (uint8_t) ~(1u << peer);
  }
  sp->n = 0;
  sp->present = 0;
  assert_false(picker_interesting(s->p, peer));
}

/* Runs one download to the end and returns the number of endgame
 * duplicates it saw. */
static unsigned run_simulation(uint64_t seed) {
  /* Three files, 4-block chunks, short chunks and short last blocks. */
  const uint64_t sizes[3] = {3000000, 3 * BLOCK + 5, 777777};
  struct fake f;
  struct sim s;
  uint64_t now = 1000;
  unsigned iter;
  uint32_t nblocks;

  rng = seed;
  fake_init(&f, 18, sizes, 3);
  memset(&s, 0, sizeof(s));
  s.m = &f.m;
  s.nchunks = f.m.chunk_count;
  s.base = calloc(s.nchunks + 1, sizeof(*s.base));
  assert_non_null(s.base);
  for (uint32_t c = 0; c < s.nchunks; c++) {
    s.base[c + 1] = s.base[c] + blocks_in(&f.m, c);
  }
  nblocks = s.base[s.nchunks];
  s.received = calloc(nblocks, 1);
  s.asked = calloc(nblocks, 1);
  s.accepted = calloc(nblocks, sizeof(*s.accepted));
  s.fails = calloc(s.nchunks, sizeof(*s.fails));
  s.verified = calloc(s.nchunks, 1);
  assert_true(s.received && s.asked && s.accepted && s.fails && s.verified);
  s.p = picker_new(&f.m, NULL);
  assert_non_null(s.p);
  for (unsigned q = 0; q < SIM_PEERS; q++) {
    s.peers[q].map = map_new(s.nchunks);
    for (uint32_t c = 0; c < s.nchunks; c++) {
      if (tu_rand(&rng) % 100 < 40) {
        map_set(s.peers[q].map, c);
      }
    }
  }
  /* Every chunk is somewhere (peer 2 leaves for a while, so not only
   * there). */
  for (uint32_t c = 0; c < s.nchunks; c++) {
    int any = 0;
    for (unsigned q = 0; q < SIM_PEERS; q++) {
      any |= q != 2 && map_get(s.peers[q].map, c);
    }
    if (!any) {
      map_set(s.peers[tu_rand(&rng) % 2].map, c);
    }
  }
  for (unsigned q = 0; q < SIM_PEERS; q++) {
    assert_int_equal(picker_peer_add(s.p, q, s.peers[q].map), 0);
    s.peers[q].present = 1;
  }

  for (iter = 0; iter < 200000 && !picker_complete(s.p); iter++) {
    unsigned q = tu_rand(&rng) % SIM_PEERS;
    uint32_t r = tu_rand(&rng) % 100;
    now += 10;
    for (unsigned j = 0; j < SIM_PEERS; j++) {
      if (s.peers[j].present) {
        sim_refill(&s, j, now);
      }
    }
    if (!s.peers[q].present) {
      continue;
    }
    if (r < 85) {
      /* Peer 4 is slow: most of its requests time out. */
      if (q != 4 || tu_rand(&rng) % 20 == 0) {
        sim_deliver(&s, q);
      }
    } else if (r < 90) {
      sim_reject(&s, q);
    } else if (r < 93) {
      uint32_t c = tu_rand(&rng) % s.nchunks;
      map_set(s.peers[q].map, c);
      picker_peer_have(s.p, q, c);
    }
    if (iter % 50 == 0) {
      sim_expire(&s, now);
    }
    if (iter == 300) {
      sim_remove(&s, 2);
    } else if (iter == 900) {
      assert_int_equal(picker_peer_add(s.p, 2, s.peers[2].map), 0);
      s.peers[2].present = 1;
    }
  }
  assert_true(picker_complete(s.p));
  assert_true(iter < 200000);
  for (uint32_t c = 0; c < s.nchunks; c++) {
    assert_true(s.verified[c]);
    for (uint32_t i = s.base[c]; i < s.base[c + 1]; i++) {
      assert_int_equal(s.accepted[i], s.fails[c] + 1);
    }
  }
  picker_free(s.p);
  for (unsigned q = 0; q < SIM_PEERS; q++) {
    free(s.peers[q].map);
  }
  free(s.base);
  free(s.received);
  free(s.asked);
  free(s.accepted);
  free(s.fails);
  free(s.verified);
  return s.dups;
}

static void test_simulated_download_completes(void **state) {
  unsigned dups = 0;
  (void)state;
  for (uint64_t seed = 1; seed <= 16; seed++) {
    dups += run_simulation(seed * 0x9E3779B97F4A7C15u);
  }
  /* The end of a download is endgame (unless the last chunk has a single
   * holder): some blocks were asked twice. */
  assert_true(dups > 0);
}

/* 4 GiB in 2048 chunks of 2 MiB (32 blocks each) from 50 peers that each
 * hold most chunks: every block arrives once and the run stays quick. */
static void test_download_of_4_gib_from_50_peers(void **state) {
  enum { NPEERS = 50, PIPE = 8 };
  struct fake f;
  struct picker *p;
  uint8_t *maps[NPEERS];
  struct picker_block *q[NPEERS];
  unsigned qn[NPEERS] = {0};
  uint8_t *got;
  unsigned calls = 0;
  unsigned blocks = 0;
  double t0;
  double t;
  (void)state;

  rng = 77;
  fake_file(&f, 21, (uint64_t)4 << 30);
  assert_int_equal(f.m.chunk_count, 2048);
  got = calloc(2048 * 32, 1);
  assert_non_null(got);
  p = picker_new(&f.m, NULL);
  assert_non_null(p);
  for (unsigned j = 0; j < NPEERS; j++) {
    maps[j] = map_new(2048);
    for (uint32_t c = 0; c < 2048; c++) {
      if (j == 0 || tu_rand(&rng) % 10 < 7) {
        map_set(maps[j], c);
      }
    }
    assert_int_equal(picker_peer_add(p, j, maps[j]), 0);
    q[j] = calloc(PIPE, sizeof(*q[j]));
    assert_non_null(q[j]);
  }
  t0 = seconds();
  for (unsigned j = 0; j < NPEERS; j++) {
    qn[j] = picker_next(p, j, 0, q[j], PIPE);
    calls++;
  }
  while (!picker_complete(p)) {
    unsigned j = tu_rand(&rng) % NPEERS;
    unsigned cancel[PICKER_ENDGAME_DUP];
    unsigned ncancel;
    struct picker_block b;
    int cd;
    int r;
    assert_true(calls < 10u * 65536);
    if (qn[j] == 0) {
      qn[j] = picker_next(p, j, 0, q[j], PIPE);
      calls++;
      continue;
    }
    b = q[j][0];
    memmove(&q[j][0], &q[j][1], (qn[j] - 1) * sizeof(b));
    qn[j]--;
    r = picker_block_done(p, j, &b, &cd, cancel, &ncancel);
    if (r) {
      uint32_t id = b.chunk * 32 + b.offset / BLOCK;
      assert_false(got[id]);
      got[id] = 1;
      blocks++;
    }
    if (cd) {
      picker_chunk_verified(p, b.chunk);
    }
    qn[j] += picker_next(p, j, 0, q[j] + qn[j], PIPE - qn[j]);
    calls++;
  }
  t = seconds() - t0;
  assert_int_equal(blocks, 65536);
  print_message("    4 GiB, 50 peers: %u picker_next calls in %.3f s\n", calls,
                t);
  picker_free(p);
  for (unsigned j = 0; j < NPEERS; j++) {
    free(maps[j]);
    free(q[j]);
  }
  free(got);
}

/* ---------------------------------------------------------------------- */
/* Memory */

static void test_memory_for_a_million_chunks_stays_small(void **state) {
  enum { NPEERS = 50 };
  struct fake f;
  struct picker *p;
  uint8_t *all;
  size_t before;
  size_t used;
  struct picker_block out[16];
  (void)state;

  fake_file(&f, 14, (uint64_t)1 << 34); /* 2^20 chunks of 16 KiB */
  assert_int_equal(f.m.chunk_count, 1u << 20);
  all = map_all(1u << 20);
  before = heap_in_use();
  p = picker_new(&f.m, NULL);
  assert_non_null(p);
  for (unsigned j = 0; j < NPEERS; j++) {
    assert_int_equal(picker_peer_add(p, j, all), 0);
    assert_int_equal(picker_next(p, j, 0, out, 16), 16);
    check_shape(&f.m, &out[15]);
  }
  used = heap_in_use() - before;
  print_message("    2^20 chunks, %u seeders, %u blocks asked: %zu KiB\n",
                NPEERS, NPEERS * 16, used >> 10);
  /* At least the peers' have-maps are there (the measure works) ... */
  assert_true(used > (size_t)NPEERS * (128u << 10));
  /* ... and the whole stays under 16 MiB. */
  assert_true(used < ((size_t)16 << 20));
  picker_free(p);
  free(all);
}

/* Chunks we lack that no peer in the picker has: what a download waits
 * for when its seeder left. */
static void test_unsourced_counts_missing_chunks_nobody_has(void **state) {
  struct fake f;
  (void)state;
  fake_small(&f, 10);
  const uint32_t mine[] = {0, 1, UINT32_MAX};
  const uint32_t a_has[] = {0, 2, 3, UINT32_MAX};
  const uint32_t b_has[] = {3, 4, 9, UINT32_MAX};
  uint8_t *have = map_of(10, mine);
  uint8_t *a = map_of(10, a_has);
  uint8_t *b = map_of(10, b_has);
  struct picker *p = picker_new(&f.m, have);
  assert_non_null(p);
  assert_int_equal(picker_unsourced(p), 8); /* nobody connected */
  assert_int_equal(picker_peer_add(p, 0, a), 0);
  assert_int_equal(picker_unsourced(p), 6); /* 2 and 3 now have a source */
  assert_int_equal(picker_peer_add(p, 1, b), 0);
  assert_int_equal(picker_unsourced(p), 4); /* 5, 6, 7, 8 */
  picker_peer_have(p, 1, 5);
  assert_int_equal(picker_unsourced(p), 3);
  picker_peer_remove(p, 0);
  assert_int_equal(picker_unsourced(p), 4); /* 2 lost its only source */
  picker_chunk_verified(p, 6);              /* had now, from wherever it came */
  assert_int_equal(picker_unsourced(p), 3);
  picker_peer_remove(p, 1);
  assert_int_equal(picker_unsourced(p), 7);
  picker_free(p);
  free(have);
  free(a);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_next_covers_every_block_once_within_chunks),
      cmocka_unit_test(test_block_wanted_matches_block_done),
      cmocka_unit_test(test_unsourced_counts_missing_chunks_nobody_has),
      cmocka_unit_test(test_max_zero_and_unknown_peer_get_nothing),
      cmocka_unit_test(test_rarest_first_with_random_ties),
      cmocka_unit_test(test_availability_follows_haves_and_departures),
      cmocka_unit_test(test_random_first_while_few_chunks_are_held),
      cmocka_unit_test(test_started_chunks_are_finished_first),
      cmocka_unit_test(test_peer_is_never_asked_for_a_chunk_it_lacks),
      cmocka_unit_test(test_interesting_follows_what_we_lack),
      cmocka_unit_test(test_block_done_reports_chunk_done_on_last_block),
      cmocka_unit_test(test_duplicate_and_unrequested_blocks_are_dropped),
      cmocka_unit_test(test_endgame_duplicates_and_cancels),
      cmocka_unit_test(test_endgame_copies_only_from_a_sooner_peer),
      cmocka_unit_test(test_chunk_failed_makes_all_blocks_wanted_again),
      cmocka_unit_test(test_rejected_block_goes_to_another_peer),
      cmocka_unit_test(test_peer_remove_gives_blocks_back),
      cmocka_unit_test(test_abandoned_chunk_goes_back_to_rarest_first),
      cmocka_unit_test(test_expire_returns_old_requests_with_their_peer),
      cmocka_unit_test(test_have_bitmap_at_new_is_never_requested),
      cmocka_unit_test(test_complete_after_every_chunk_is_verified),
      cmocka_unit_test(test_simulated_download_completes),
      cmocka_unit_test(test_download_of_4_gib_from_50_peers),
      cmocka_unit_test(test_memory_for_a_million_chunks_stays_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
