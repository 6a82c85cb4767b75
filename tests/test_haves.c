/* Unit tests for peer/haves.c: when a swarm's HAVEs go out.
 *
 * The clock is the test's: each case sets the log's times and asks
 * haves_due at the moments it chooses. The last cases drive a whole
 * download through the module the way swarm.c and node.c do (one cursor per
 * peer, the node's HAVE timer that keeps its earliest due time) and check
 * what it_peer once measured against the wall clock: a peer that can use
 * new chunks hears of them in HAVEs at least NODE_HAVE_MS apart (but for
 * full ones), a peer that holds everything at least NODE_HAVE_SLOW_MS
 * apart, each of every chunk exactly once, and far fewer HAVEs than
 * chunks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/pwire.h"
#include "peer/haves.h"
#include "peer/limits.h"

#define T 5000000u /* an arbitrary clock value; uv_now() is never 0 */

static void test_an_empty_log_has_nothing_due(void **state) {
  struct haves h;
  (void)state;
  haves_init(&h);
  struct haves_due d = haves_due(&h, T, 1);
  assert_false(d.all);
  assert_false(d.eager);
  assert_int_equal(d.wait_ms, 0);
}

static void test_the_first_chunk_is_told_to_everyone_at_once(void **state) {
  struct haves h;
  (void)state;
  haves_init(&h);
  haves_add(&h, 7);
  /* Nothing went out since the clock's start: both rounds are due. */
  assert_true(haves_due(&h, T, 0).all);
  assert_true(haves_due(&h, T, 1).all);
  haves_restart(&h, T);
  assert_int_equal(h.n, 0);
  assert_int_equal(h.sent_ms, T);
  assert_int_equal(h.epoch_ms, T);
}

/* Chunk 1 was told to everyone at T, and chunk 2 has come since. */
static void told_one_then_another(struct haves *h) {
  haves_init(h);
  haves_add(h, 1);
  haves_restart(h, T);
  haves_add(h, 2);
}

static void test_eager_peers_hear_within_the_prompt_interval(void **state) {
  struct haves h;
  struct haves_due d;
  (void)state;
  told_one_then_another(&h);
  /* 30 ms later: an eager peer behind waits for T + NODE_HAVE_MS... */
  d = haves_due(&h, T + 30, 1);
  assert_false(d.all);
  assert_false(d.eager);
  assert_int_equal(d.wait_ms, NODE_HAVE_MS - 30);
  /* ...and with none, everyone waits for the slow round. */
  d = haves_due(&h, T + 30, 0);
  assert_int_equal(d.wait_ms, NODE_HAVE_SLOW_MS - 30);
  /* At T + NODE_HAVE_MS the eager ones are told; the rest wait. */
  d = haves_due(&h, T + NODE_HAVE_MS, 1);
  assert_false(d.all);
  assert_true(d.eager);
  assert_int_equal(d.wait_ms, NODE_HAVE_SLOW_MS - NODE_HAVE_MS);
  haves_sent_eager(&h, T + NODE_HAVE_MS);
  /* The next chunk, 20 ms on, waits for the next prompt moment. */
  haves_add(&h, 3);
  d = haves_due(&h, T + NODE_HAVE_MS + 20, 1);
  assert_false(d.eager);
  assert_int_equal(d.wait_ms, NODE_HAVE_MS - 20);
}

static void test_everyone_hears_in_the_slow_round(void **state) {
  struct haves h;
  struct haves_due d;
  (void)state;
  told_one_then_another(&h);
  d = haves_due(&h, T + NODE_HAVE_SLOW_MS - 1, 0);
  assert_false(d.all);
  assert_int_equal(d.wait_ms, 1);
  assert_true(haves_due(&h, T + NODE_HAVE_SLOW_MS, 0).all);
  assert_true(haves_due(&h, T + NODE_HAVE_SLOW_MS, 1).all);
}

static void test_the_slow_round_waits_for_the_prompt_one(void **state) {
  struct haves h;
  struct haves_due d;
  const uint64_t late = T + NODE_HAVE_SLOW_MS - 50;
  (void)state;
  told_one_then_another(&h);
  haves_sent_eager(&h, late); /* an eager peer was told late */
  haves_add(&h, 3);
  /* At the slow round's moment the prompt HAVE is only 50 ms old: all
   * wait until it is NODE_HAVE_MS old, however the peers stand. */
  d = haves_due(&h, T + NODE_HAVE_SLOW_MS, 0);
  assert_false(d.all);
  assert_false(d.eager);
  assert_int_equal(d.wait_ms, NODE_HAVE_MS - 50);
  d = haves_due(&h, T + NODE_HAVE_SLOW_MS, 1);
  assert_int_equal(d.wait_ms, NODE_HAVE_MS - 50);
  assert_true(haves_due(&h, late + NODE_HAVE_MS, 0).all);
}

static void test_a_restart_without_chunks_keeps_the_prompt_clock(void **state) {
  struct haves h;
  (void)state;
  haves_init(&h);
  haves_add(&h, 1);
  haves_restart(&h, T);
  haves_restart(&h, T + 500); /* a finish with nothing new */
  assert_int_equal(h.sent_ms, T);
  assert_int_equal(h.epoch_ms, T + 500);
}

static void test_eager_is_who_can_use_a_chunk_at_once(void **state) {
  (void)state;
  /* holds_all, we_choke, interested */
  assert_true(haves_eager(0, 0, 1));  /* we upload to it */
  assert_true(haves_eager(0, 0, 0));  /* unchoked, not interested */
  assert_true(haves_eager(0, 1, 0));  /* it may become interested */
  assert_false(haves_eager(0, 1, 1)); /* it cannot ask anyway */
  for (int c = 0; c < 2; c++) {
    for (int i = 0; i < 2; i++) {
      assert_false(haves_eager(1, c, i)); /* a seeder: its order only */
    }
  }
}

/* Decodes a HAVE payload of len bytes as the receiving peer does; the
 * chunks go into out (cap of them), their number is returned. */
static size_t decode_have(const uint8_t *payload, size_t len, uint32_t *out,
                          size_t cap) {
  struct pwire_msg m;
  struct pwire_msg got;
  struct pwire_have_iter it;
  struct buf b;
  uint32_t chunk;
  size_t n = 0;
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_HAVE;
  m.data = payload;
  m.data_len = len;
  buf_init(&b, 8192);
  assert_int_equal(pwire_encode(&b, &m), 0);
  assert_int_equal(pwire_decode(b.data, b.len, &got), 0);
  pwire_have_begin(&it, &got);
  while (pwire_have_next(&it, &chunk)) {
    assert_true(n < cap);
    out[n++] = chunk;
  }
  assert_int_equal(n, got.length);
  buf_free(&b);
  return n;
}

static void test_the_log_is_the_haves_payload_from_each_cursor(void **state) {
  struct haves h;
  uint8_t payload[HAVES_PAYLOAD_MAX];
  uint32_t got[NODE_HAVE_BATCH];
  unsigned n;
  (void)state;
  haves_init(&h);
  /* Chunks verify out of order: 1000 + (i * 97) % 256 visits each of
   * 1000..1255 once. */
  for (uint32_t i = 0; i < NODE_HAVE_BATCH; i++) {
    assert_false(haves_full(&h));
    haves_add(&h, 1000 + (i * 97) % NODE_HAVE_BATCH);
  }
  assert_true(haves_full(&h));
  (void)haves_since(&h, NODE_HAVE_BATCH, &n);
  assert_int_equal(n, 0);
  assert_int_equal(haves_payload(&h, NODE_HAVE_BATCH, payload), 0);
  for (unsigned cursor = 0; cursor < NODE_HAVE_BATCH; cursor += 37) {
    const uint32_t *since = haves_since(&h, cursor, &n);
    assert_int_equal(n, NODE_HAVE_BATCH - cursor);
    for (unsigned i = 0; i < n; i++) {
      assert_int_equal(since[i], 1000 + ((cursor + i) * 97) % NODE_HAVE_BATCH);
    }
    size_t len = haves_payload(&h, cursor, payload);
    assert_true(len > 0 && len <= HAVES_PAYLOAD_MAX);
    /* The HAVE names the same chunks, in increasing order. */
    size_t k = decode_have(payload, len, got, NODE_HAVE_BATCH);
    assert_int_equal(k, n);
    for (size_t i = 0; i < k; i++) {
      unsigned hits = 0;
      if (i > 0) {
        assert_true(got[i] > got[i - 1]);
      }
      for (unsigned j = 0; j < n; j++) {
        hits += since[j] == got[i];
      }
      assert_int_equal(hits, 1);
    }
  }
  /* From the start every chunk is one byte after the first (1000: two). */
  assert_int_equal(haves_payload(&h, 0, payload), NODE_HAVE_BATCH + 1);
}

/* ---------------------------------------------------------------------- */
/* A download, driven as swarm.c and node.c drive the module */

#define SIM_CHUNKS 2000
#define SIM_MAX_HAVES 4000

struct sim_peer {
  unsigned at; /* entries of the log it was sent */
  int holds_all, we_choke, interested;
  unsigned nhaves, nfull, nflushed;
  uint64_t when[SIM_MAX_HAVES];
  unsigned size[SIM_MAX_HAVES];
  uint8_t flushed[SIM_MAX_HAVES]; /* sent because the log was full */
  unsigned seen[SIM_CHUNKS];      /* times each chunk was announced */
};

struct sim {
  struct haves h;
  struct sim_peer *p;
  unsigned np;
  uint64_t timer_at; /* the node's HAVE timer; 0: stopped */
  int flushing;      /* sim_send_all because the log is full */
};

static int sim_eager(const struct sim_peer *p) {
  return haves_eager(p->holds_all, p->we_choke, p->interested);
}

/* send_have_log: what the peer lacks of the log, in one HAVE. */
static void sim_send(struct sim *s, struct sim_peer *p, uint64_t now) {
  uint8_t payload[HAVES_PAYLOAD_MAX];
  uint32_t chunks[NODE_HAVE_BATCH];
  size_t len = haves_payload(&s->h, p->at, payload);
  size_t n;
  if (len == 0) {
    return;
  }
  n = decode_have(payload, len, chunks, NODE_HAVE_BATCH);
  assert_true(p->nhaves < SIM_MAX_HAVES);
  p->when[p->nhaves] = now;
  p->size[p->nhaves] = (unsigned)n;
  p->flushed[p->nhaves] = (uint8_t)s->flushing;
  p->nfull += p->size[p->nhaves] == NODE_HAVE_BATCH;
  p->nflushed += s->flushing;
  p->nhaves++;
  for (size_t i = 0; i < n; i++) {
    assert_true(chunks[i] < SIM_CHUNKS);
    p->seen[chunks[i]]++;
  }
  p->at = s->h.n;
}

/* swarm_send_haves. */
static void sim_send_all(struct sim *s, uint64_t now) {
  for (unsigned i = 0; i < s->np; i++) {
    sim_send(s, &s->p[i], now);
  }
  for (unsigned i = 0; i < s->np; i++) {
    s->p[i].at = 0;
  }
  haves_restart(&s->h, now);
}

/* swarm_haves_due. */
static uint64_t sim_due(struct sim *s, uint64_t now) {
  int eager_behind = 0;
  for (unsigned i = 0; i < s->np; i++) {
    eager_behind |= s->p[i].at < s->h.n && sim_eager(&s->p[i]);
  }
  struct haves_due d = haves_due(&s->h, now, eager_behind);
  if (d.all) {
    sim_send_all(s, now);
    return 0;
  }
  if (d.eager) {
    for (unsigned i = 0; i < s->np; i++) {
      if (s->p[i].at < s->h.n && sim_eager(&s->p[i])) {
        sim_send(s, &s->p[i], now);
        haves_sent_eager(&s->h, now);
      }
    }
  }
  return d.wait_ms;
}

/* node_have_later: the timer keeps the earlier of its due time and this. */
static void sim_later(struct sim *s, uint64_t now, uint64_t ms) {
  if (s->timer_at != 0 && s->timer_at <= now + ms) {
    return;
  }
  s->timer_at = now + ms;
}

/* have_soon, for a chunk verified at now. */
static void sim_chunk(struct sim *s, uint32_t chunk, uint64_t now) {
  if (haves_full(&s->h)) {
    s->flushing = 1;
    sim_send_all(s, now);
    s->flushing = 0;
  }
  haves_add(&s->h, chunk);
  uint64_t wait = sim_due(s, now);
  if (wait > 0) {
    sim_later(s, now, wait);
  }
}

/* Verifies SIM_CHUNKS chunks every_ms apart from T on (the HAVE timer
 * firing in between, first at equal times, as libuv runs timers before
 * I/O), then finishes: the last chunks go to everyone at once. */
static void sim_run(struct sim *s, uint64_t every_ms) {
  uint64_t now = T;
  haves_init(&s->h);
  s->timer_at = 0;
  for (uint32_t c = 0; c < SIM_CHUNKS; c++) {
    uint64_t next = T + (uint64_t)c * every_ms;
    while (s->timer_at != 0 && s->timer_at <= next) {
      now = s->timer_at;
      s->timer_at = 0;
      uint64_t wait = sim_due(s, now);
      if (wait > 0) {
        sim_later(s, now, wait);
      }
    }
    now = next;
    sim_chunk(s, c, now);
  }
  sim_send_all(s, now); /* on_finished */
}

/* Every chunk once, each HAVE 1..NODE_HAVE_BATCH chunks, and HAVEs at
 * least min_gap_ms apart but for those a full log pushed out (a full HAVE
 * to a peer that was told nothing of it, the rest of the log to one that
 * was told part) and the last (the finish). */
static void check_peer(const struct sim_peer *p, uint64_t min_gap_ms) {
  for (unsigned c = 0; c < SIM_CHUNKS; c++) {
    assert_int_equal(p->seen[c], 1);
  }
  for (unsigned k = 0; k < p->nhaves; k++) {
    assert_true(p->size[k] >= 1 && p->size[k] <= NODE_HAVE_BATCH);
  }
  for (unsigned k = 1; k + 1 < p->nhaves; k++) {
    if (p->flushed[k]) {
      continue;
    }
    if (p->when[k] - p->when[k - 1] < min_gap_ms) {
      fail_msg("HAVE %u came %llu ms after the one before", k,
               (unsigned long long)(p->when[k] - p->when[k - 1]));
    }
  }
}

static void test_a_download_batches_its_haves(void **state) {
  /* An eager peer (not interested in us yet), one we choke that is
   * interested, and a seeder. */
  struct sim_peer *p = calloc(3, sizeof(*p));
  struct sim s = {.p = p, .np = 3};
  (void)state;
  assert_non_null(p);
  p[1].we_choke = 1;
  p[1].interested = 1;
  p[2].holds_all = 1;
  p[2].we_choke = 1;
  /* A chunk every 8 ms: 16 s. */
  sim_run(&s, 8);
  uint64_t span = (uint64_t)SIM_CHUNKS * 8;

  check_peer(&p[0], NODE_HAVE_MS);
  /* Far fewer HAVEs than chunks, and about one every NODE_HAVE_MS. */
  assert_true(p[0].nhaves <= SIM_CHUNKS / 4);
  assert_true(p[0].nhaves - p[0].nflushed <= span / NODE_HAVE_MS + 2);
  assert_true(p[0].nhaves >= span / NODE_HAVE_MS / 2);
  /* More often than the slow round (what it_peer asked of it). */
  assert_true(p[0].nhaves >= 2 * (span / NODE_HAVE_SLOW_MS) + 2);

  for (int i = 1; i <= 2; i++) {
    check_peer(&p[i], NODE_HAVE_SLOW_MS);
    /* The slow round, and a full log now and then. */
    assert_true(p[i].nhaves - p[i].nflushed <= span / NODE_HAVE_SLOW_MS + 2);
    assert_true(p[i].nflushed <= SIM_CHUNKS / NODE_HAVE_BATCH);
  }
  free(p);
}

static void test_a_fast_download_sends_full_haves(void **state) {
  /* A chunk a millisecond: the log fills within the prompt interval, and
   * each full log goes to everyone at once. */
  struct sim_peer *p = calloc(2, sizeof(*p));
  struct sim s = {.p = p, .np = 2};
  (void)state;
  assert_non_null(p);
  p[1].holds_all = 1;
  sim_run(&s, 1);
  check_peer(&p[0], NODE_HAVE_MS);
  check_peer(&p[1], NODE_HAVE_SLOW_MS);
  assert_true(p[1].nfull >= SIM_CHUNKS / NODE_HAVE_BATCH - 2);
  assert_true(p[0].nhaves <= SIM_CHUNKS / 4);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_empty_log_has_nothing_due),
      cmocka_unit_test(test_the_first_chunk_is_told_to_everyone_at_once),
      cmocka_unit_test(test_eager_peers_hear_within_the_prompt_interval),
      cmocka_unit_test(test_everyone_hears_in_the_slow_round),
      cmocka_unit_test(test_the_slow_round_waits_for_the_prompt_one),
      cmocka_unit_test(test_a_restart_without_chunks_keeps_the_prompt_clock),
      cmocka_unit_test(test_eager_is_who_can_use_a_chunk_at_once),
      cmocka_unit_test(test_the_log_is_the_haves_payload_from_each_cursor),
      cmocka_unit_test(test_a_download_batches_its_haves),
      cmocka_unit_test(test_a_fast_download_sends_full_haves),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
