/* The manifest's fetch (peer/fetch.c): the first part from one session,
 * the rest of a large manifest in units from several, a fast session
 * taking more and asking again for what slow ones hold; a session that
 * leaves hands its unit on; parts that are not the ones asked are
 * refused; a whole that is not the content's blames nobody when several
 * sent it and the one that did when it came from one.
 *
 * Sessions are only compared by fetch.c, so the tests stand them in with
 * addresses of their own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/error.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "peer/fetch.h"
#include "peer/limits.h"
#include "peer/rate.h"
#include "tests/lib/mtree.h"

#define NSESS 12
static max_align_t sess_store[NSESS];
#define SESS(i) ((struct session *)(void *)&sess_store[i])

static uint64_t manifest_seed = 1;

/* A signed file manifest of chunks chunks; the caller frees it. Its hashes
 * are made up: the fetch never looks inside. */
static struct manifest *make_manifest(uint32_t chunks) {
  return mt_file_manifest("content.bin", chunks, manifest_seed++);
}

/* The part a peer holding bytes (total of them) sends for ask. */
static void part_for(const struct fetch_ask *ask, const uint8_t *bytes,
                     uint32_t total, struct pwire_msg *m) {
  memset(m, 0, sizeof(*m));
  m->type = PWIRE_MANIFEST_PART;
  m->total = total;
  m->offset = ask->offset;
  m->data = bytes + ask->offset;
  m->data_len =
      total - ask->offset < ask->length ? total - ask->offset : ask->length;
}

struct run {
  struct fetch f;
  const struct manifest *m;
  const uint8_t *bytes; /* what the peers send: m's, or altered */
  struct fetch_ask ask[NSESS];
  struct manifest *out;
  int err;
  uint64_t now;
};

static void run_init(struct run *r, const struct manifest *m) {
  memset(r, 0, sizeof(*r));
  fetch_init(&r->f);
  r->m = m;
  r->bytes = m->encoded;
  r->now = 1000;
}

/* Session i answers what it was asked; returns fetch_on_part's result
 * and keeps the next ask of i. */
static int answer(struct run *r, unsigned i) {
  struct pwire_msg part;
  struct fetch_ask next;
  int rc;
  assert_ptr_equal(r->ask[i].to, SESS(i));
  part_for(&r->ask[i], r->bytes, (uint32_t)r->m->encoded_len, &part);
  rc = fetch_on_part(&r->f, r->m->id, SESS(i), &part, r->now, &next, &r->out,
                     &r->err);
  r->ask[i] = next;
  return rc;
}

/* Offers sessions from..to-1; returns how many were asked. */
static unsigned offer(struct run *r, unsigned from, unsigned to) {
  unsigned n = 0;
  for (unsigned i = from; i < to; i++) {
    struct fetch_ask a;
    if (fetch_offer(&r->f, SESS(i), r->now, &a)) {
      assert_ptr_equal(a.to, SESS(i));
      assert_null(r->ask[i].to); /* never asked twice at once */
      r->ask[i] = a;
      n++;
    } else {
      assert_null(a.to);
    }
  }
  return n;
}

/* Answers every open ask, lowest session first, until none is left;
 * returns the last result. */
static int drain(struct run *r) {
  int rc = FETCH_MORE, any = 1;
  for (unsigned round = 0; any && round < 100000; round++) {
    any = 0;
    for (unsigned i = 0; i < NSESS; i++) {
      if (r->ask[i].to != NULL) {
        rc = answer(r, i);
        any = 1;
        if (rc != FETCH_MORE) {
          return rc;
        }
      }
    }
  }
  return rc;
}

static void assert_done(struct run *r) {
  assert_non_null(r->out);
  assert_int_equal(r->err, 0);
  assert_memory_equal(r->out->id, r->m->id, MANIFEST_ID_BYTES);
  manifest_free(r->out);
  r->out = NULL;
}

/* ------------------------------------------------------------------------ */

/* A file's manifest: one part, from the first session offered. */
static void test_a_file_manifest_in_one_part(void **state) {
  (void)state;
  uint32_t counts[] = {1, 2048};
  for (size_t c = 0; c < 2; c++) {
    struct manifest *m = make_manifest(counts[c]);
    struct run r;
    assert_true(m->encoded_len <= PWIRE_MANIFEST_PART_BYTES);
    run_init(&r, m);
    assert_int_equal(offer(&r, 0, 3), 1);
    assert_int_equal(r.ask[0].offset, 0);
    assert_int_equal(r.ask[0].length, PWIRE_MANIFEST_PART_BYTES);
    assert_int_equal(answer(&r, 0), FETCH_DONE);
    assert_null(r.ask[0].to);
    assert_done(&r);
    fetch_free(&r.f);
    manifest_free(m);
  }
}

#define BIG_CHUNKS 100000u /* 3.2 MB of hashes: a folder-sized manifest */

/* After the first part, NODE_MANIFEST_WAYS sessions at once, each a unit;
 * in all, every byte is asked of someone, and only the last units twice. */
static void test_rest_in_units_from_several(void **state) {
  (void)state;
  struct manifest *m = make_manifest(BIG_CHUNKS);
  uint32_t total = (uint32_t)m->encoded_len;
  uint8_t *asked = calloc(total, 1);
  uint32_t twice = 0, unit = 0;
  struct run r;
  int rc = FETCH_MORE;
  assert_non_null(asked);
  run_init(&r, m);
  assert_int_equal(offer(&r, 0, NSESS), 1); /* the first part alone */
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  assert_ptr_equal(r.ask[0].to, SESS(0));
  assert_int_equal(r.ask[0].offset, PWIRE_MANIFEST_PART_BYTES);
  unit = r.ask[0].length;
  assert_true(unit >= NODE_MANIFEST_UNIT_MIN);
  assert_true(unit <= PWIRE_MANIFEST_PART_BYTES);
  assert_true(unit >=
              (total - PWIRE_MANIFEST_PART_BYTES) / NODE_MANIFEST_UNITS);
  assert_int_equal(offer(&r, 1, NSESS), NODE_MANIFEST_WAYS - 1);
  memset(asked, 1, PWIRE_MANIFEST_PART_BYTES);
  for (unsigned round = 0; rc == FETCH_MORE && round < 10000; round++) {
    int any = 0;
    for (unsigned i = 0; i < NSESS && rc == FETCH_MORE; i++) {
      if (r.ask[i].to == NULL) {
        continue;
      }
      assert_true(r.ask[i].length <= PWIRE_MANIFEST_PART_BYTES);
      for (uint32_t b = r.ask[i].offset; b < r.ask[i].offset + r.ask[i].length;
           b++) {
        twice += asked[b] != 0;
        asked[b] = 1;
      }
      rc = answer(&r, i);
      any = 1;
    }
    assert_true(any);
  }
  assert_int_equal(rc, FETCH_DONE);
  for (uint32_t b = 0; b < total; b++) {
    assert_int_equal(asked[b], 1);
  }
  /* Asked again only at the end, for units still out: fewer than one
   * unit per way. */
  assert_true(twice < NODE_MANIFEST_WAYS * unit);
  assert_done(&r);
  fetch_free(&r.f);
  free(asked);
  manifest_free(m);
}

/* Sessions that never answer do not hold up one that does: it takes unit
 * after unit, then asks again for theirs. */
static void test_a_fast_session_is_not_held_up(void **state) {
  (void)state;
  struct manifest *m = make_manifest(BIG_CHUNKS);
  struct run r;
  int rc = FETCH_MORE;
  run_init(&r, m);
  assert_int_equal(offer(&r, 0, 1), 1);
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  assert_int_equal(offer(&r, 1, NSESS), NODE_MANIFEST_WAYS - 1);
  for (unsigned i = 0; i < 1000 && rc == FETCH_MORE; i++) {
    assert_non_null(r.ask[0].to); /* always something for the fast one */
    r.now += 100;                 /* a part each 100 ms */
    rc = answer(&r, 0);
    if (r.ask[0].to == NULL) {
      /* Every unit out, none asked long enough ago: the next tick. */
      r.now += NODE_MANIFEST_AGAIN_MS;
      assert_int_equal(offer(&r, 0, 1), 1);
    }
  }
  assert_int_equal(rc, FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* A session that leaves hands its unit to the next free one; one that is
 * late is named. */
static void test_unit_handed_on(void **state) {
  (void)state;
  struct manifest *m = make_manifest(BIG_CHUNKS);
  struct run r;
  uint32_t held;
  run_init(&r, m);
  assert_int_equal(offer(&r, 0, 1), 1);
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  assert_int_equal(offer(&r, 1, NSESS), NODE_MANIFEST_WAYS - 1);
  held = r.ask[3].offset;
  assert_int_equal(fetch_left(&r.f, SESS(3)), 1);
  assert_int_equal(fetch_left(&r.f, SESS(3)), 0);
  r.ask[3].to = NULL;
  assert_int_equal(offer(&r, NSESS - 1, NSESS), 1);
  assert_int_equal(r.ask[NSESS - 1].offset, held);
  assert_null(fetch_overdue(&r.f, r.now + 100, 100));
  assert_non_null(fetch_overdue(&r.f, r.now + 101, 100));
  assert_int_equal(drain(&r), FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* Before the first part nothing is known: its sender's departure starts
 * the fetch again from the top with another. */
static void test_first_sender_leaves(void **state) {
  (void)state;
  struct manifest *m = make_manifest(BIG_CHUNKS);
  struct run r;
  run_init(&r, m);
  assert_int_equal(offer(&r, 0, 2), 1);
  assert_int_equal(fetch_left(&r.f, SESS(1)), 0);
  assert_int_equal(fetch_left(&r.f, SESS(0)), 1);
  r.ask[0].to = NULL;
  assert_int_equal(offer(&r, 1, 2), 1);
  assert_int_equal(r.ask[1].offset, 0);
  assert_int_equal(r.ask[1].length, PWIRE_MANIFEST_PART_BYTES);
  assert_int_equal(answer(&r, 1), FETCH_MORE);
  assert_int_equal(offer(&r, 2, NSESS), NODE_MANIFEST_WAYS - 1);
  assert_int_equal(drain(&r), FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* Parts that are not the ones asked, each on a fresh fetch; the fetch then
 * completes with the others. */
static void test_hostile_parts(void **state) {
  (void)state;
  struct manifest *m = make_manifest(BIG_CHUNKS);
  uint32_t total = (uint32_t)m->encoded_len;
  const int64_t part = PWIRE_MANIFEST_PART_BYTES;
  struct {
    const char *what;
    unsigned from;  /* the sender */
    int64_t offset; /* added to the asked offset */
    int64_t len;    /* added to the answer's length */
    int64_t tot;    /* added to the total */
    int second;     /* sent as the second part (after a good first) */
    int want;
  } cases[] = {
      {"not asked", 5, 0, 0, 0, 0, SHOAL_EPROTO},
      {"another offset", 0, 1, 0, 0, 0, SHOAL_EFORMAT},
      {"an offset back", 0, -1, 0, 0, 1, SHOAL_EFORMAT},
      {"an offset forward", 0, 1, -1, 0, 1, SHOAL_EFORMAT},
      {"empty", 0, 0, -part, 0, 0, SHOAL_EFORMAT},
      {"longer than asked", 0, 0, 1, 0, 0, SHOAL_EFORMAT},
      {"longer than asked, second", 0, 0, 1, 0, 1, SHOAL_EFORMAT},
      {"a total of 0", 0, 0, 0, -(int64_t)total, 0, SHOAL_EFORMAT},
      {"a total past the largest manifest", 0, 0, 0,
       (int64_t)MANIFEST_MAX_BYTES + 1 - total, 0, SHOAL_ETOOBIG},
      {"a total other than the first part's", 0, 0, 0, 1, 1, SHOAL_EFORMAT},
      {"a total shorter than the part", 0, 0, 0, part - 1 - total, 0,
       SHOAL_EFORMAT},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    struct run r;
    struct pwire_msg msg;
    struct fetch_ask next;
    run_init(&r, m);
    print_message("%s\n", cases[c].what);
    assert_int_equal(offer(&r, 0, 1), 1);
    if (cases[c].second) {
      assert_int_equal(answer(&r, 0), FETCH_MORE);
    }
    part_for(&r.ask[0], m->encoded, total, &msg);
    msg.offset = (uint32_t)((int64_t)msg.offset + cases[c].offset);
    msg.data = m->encoded + msg.offset;
    msg.data_len = (size_t)((int64_t)msg.data_len + cases[c].len);
    msg.total = (uint32_t)((int64_t)msg.total + cases[c].tot);
    assert_int_equal(fetch_on_part(&r.f, m->id, SESS(cases[c].from), &msg,
                                   r.now, &next, &r.out, &r.err),
                     cases[c].want);
    assert_null(next.to);
    assert_null(r.out);
    /* The session is closed for it: another takes its part over. */
    if (cases[c].from == 0) {
      assert_int_equal(fetch_left(&r.f, SESS(0)), 1);
      r.ask[0].to = NULL;
      assert_true(offer(&r, 1, NSESS) >= 1);
    }
    assert_int_equal(drain(&r), FETCH_DONE);
    assert_done(&r);
    fetch_free(&r.f);
  }
  manifest_free(m);
}

/* Every truncation of the first part is taken as progress: the rest of
 * that part is asked again of the same session. */
static void test_short_parts(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  uint32_t total = (uint32_t)m->encoded_len;
  for (uint32_t len = 1; len < total; len += 997) {
    struct run r;
    struct pwire_msg part;
    struct fetch_ask next;
    run_init(&r, m);
    assert_int_equal(offer(&r, 0, 1), 1);
    part_for(&r.ask[0], m->encoded, total, &part);
    part.data_len = len;
    assert_int_equal(fetch_on_part(&r.f, m->id, SESS(0), &part, r.now, &next,
                                   &r.out, &r.err),
                     FETCH_MORE);
    assert_ptr_equal(next.to, SESS(0));
    assert_int_equal(next.offset, len);
    assert_int_equal(next.length, total - len);
    r.ask[0] = next;
    assert_int_equal(offer(&r, 1, NSESS), 0); /* a file's: one unit */
    assert_int_equal(drain(&r), FETCH_DONE);
    assert_done(&r);
    fetch_free(&r.f);
  }
  manifest_free(m);
}

/* A flipped bit anywhere, the signature too (which the content ID leaves
 * out). From one session: it is named. */
static void test_flipped_bits_from_one(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  uint32_t total = (uint32_t)m->encoded_len;
  uint8_t *bad = malloc(total);
  assert_non_null(bad);
  for (uint32_t at = 0; at < total;
       at = at + 4093 < total || at == total - 1 ? at + 4093 : total - 1) {
    struct run r;
    memcpy(bad, m->encoded, total);
    bad[at] ^= (uint8_t)(1u << (at % 8));
    run_init(&r, m);
    r.bytes = bad;
    assert_int_equal(offer(&r, 0, NSESS), 1);
    assert_int_equal(drain(&r), FETCH_NOT_OURS);
    assert_null(r.out);
    r.bytes = m->encoded;
    assert_int_equal(offer(&r, 1, NSESS), 1);
    assert_int_equal(drain(&r), FETCH_DONE);
    assert_done(&r);
    fetch_free(&r.f);
  }
  free(bad);
  manifest_free(m);
}

/* From several sessions nobody is named, and the fetch starts again from
 * one session at a time, which is named when it lies too. */
static void test_flipped_bits_from_several(void **state) {
  (void)state;
  struct manifest *m = make_manifest(BIG_CHUNKS);
  uint32_t total = (uint32_t)m->encoded_len;
  uint8_t *bad = malloc(total);
  uint32_t spots[] = {PWIRE_MANIFEST_PART_BYTES + 1, total / 2,
                      total - IDENTITY_SIG_BYTES - 1, total - 1};
  assert_non_null(bad);
  for (size_t k = 0; k < sizeof(spots) / sizeof(spots[0]); k++) {
    struct run r;
    memcpy(bad, m->encoded, total);
    bad[spots[k]] ^= 0x10;
    run_init(&r, m);
    r.bytes = bad;
    assert_int_equal(offer(&r, 0, 1), 1);
    assert_int_equal(answer(&r, 0), FETCH_MORE);
    assert_int_equal(offer(&r, 1, NSESS), NODE_MANIFEST_WAYS - 1);
    assert_int_equal(drain(&r), FETCH_RETRY);
    assert_null(r.out);
    /* One at a time now, however many are offered. */
    memset(r.ask, 0, sizeof(r.ask));
    assert_int_equal(offer(&r, 2, NSESS), 1);
    assert_int_equal(answer(&r, 2), FETCH_MORE);
    assert_int_equal(offer(&r, 3, NSESS), 0);
    assert_int_equal(drain(&r), FETCH_NOT_OURS);
    r.bytes = m->encoded;
    assert_int_equal(offer(&r, 4, NSESS), 1);
    assert_int_equal(drain(&r), FETCH_DONE);
    assert_done(&r);
    fetch_free(&r.f);
  }
  free(bad);
  manifest_free(m);
}

/* A bad signature that a second session alone sends too is the
 * publisher's: the content cannot be had. */
static void test_bad_signature_from_two(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  uint32_t total = (uint32_t)m->encoded_len;
  uint8_t *bad = malloc(total);
  struct run r;
  assert_non_null(bad);
  memcpy(bad, m->encoded, total);
  bad[total - 1] ^= 1;
  run_init(&r, m);
  r.bytes = bad;
  assert_int_equal(offer(&r, 0, 1), 1);
  assert_int_equal(drain(&r), FETCH_NOT_OURS);
  assert_int_equal(offer(&r, 1, 2), 1);
  assert_int_equal(drain(&r), FETCH_INVALID);
  assert_int_equal(r.err, SHOAL_EBADSIG);
  assert_null(r.out);
  fetch_free(&r.f);
  free(bad);
  manifest_free(m);
}

/* Bytes that hash to the content but that this shoal cannot read (here
 * a manifest of version 2): the publisher's, named by its error and
 * version, with no retry. */
static void test_content_of_an_older_shoal(void **state) {
  (void)state;
  uint8_t old[40000];
  uint8_t id[MANIFEST_ID_BYTES];
  struct fetch f;
  struct fetch_ask a, next;
  struct pwire_msg part;
  struct manifest *out = NULL;
  int err = 0, rc = FETCH_MORE;
  randombytes_buf(old, sizeof(old));
  old[0] = 2;
  assert_int_equal(manifest_id_of(old, sizeof(old), id), 0);
  fetch_init(&f);
  assert_int_equal(fetch_offer(&f, SESS(0), 1, &a), 1);
  for (unsigned i = 0; i < 100 && a.to != NULL; i++) {
    part_for(&a, old, sizeof(old), &part);
    rc = fetch_on_part(&f, id, SESS(0), &part, 1, &next, &out, &err);
    a = next;
  }
  /* 40,000 bytes: all of it in the first part. */
  assert_int_equal(rc, FETCH_INVALID);
  assert_null(out);
  assert_int_equal(err, SHOAL_EVERSION);
  assert_int_equal(f.version, 2);
  fetch_free(&f);
}

/* The timeout is the time of every byte asked at once, twice over, at
 * the download limit, and never below NODE_REQUEST_TIMEOUT_MS. */
static void test_timeout(void **state) {
  (void)state;
  struct manifest *m = make_manifest(BIG_CHUNKS);
  struct rate_bucket down;
  struct run r;
  uint64_t bytes = 0;
  rate_init(&down, 0, 0);
  run_init(&r, m);
  assert_int_equal(fetch_timeout_ms(&r.f, &down), NODE_REQUEST_TIMEOUT_MS);
  rate_init(&down, 10000, 0);
  (void)offer(&r, 0, 1);
  assert_int_equal(fetch_timeout_ms(&r.f, &down),
                   2ull * PWIRE_MANIFEST_PART_BYTES * 1000 / 10000);
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  (void)offer(&r, 1, NSESS);
  for (unsigned i = 0; i < NSESS; i++) {
    bytes += r.ask[i].to != NULL ? r.ask[i].length : 0;
  }
  assert_true(bytes > PWIRE_MANIFEST_PART_BYTES);
  assert_int_equal(fetch_timeout_ms(&r.f, &down), 2 * bytes * 1000 / 10000);
  assert_int_equal(drain(&r), FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* Sessions offered, answering (some short, some at a wrong offset),
 * leaving and coming back in a random order, with time passing: the fetch
 * never asks a session twice at once nor for bytes outside the manifest,
 * refuses every wrong part, and, answered honestly at the end, completes.
 * A fixed seed: a failure replays. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t upper) {
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return (uint32_t)(rnd_state % upper);
}

static void random_run(struct manifest *m) {
  uint32_t total = (uint32_t)m->encoded_len;
  unsigned done = 0;
  struct run r;
  run_init(&r, m);
  for (unsigned step = 0; step < 20000; step++) {
    unsigned i = rnd(NSESS), op = rnd(100);
    if (op < 40) {
      (void)offer(&r, i, i + 1);
    } else if (op < 80 && r.ask[i].to != NULL) {
      struct pwire_msg part;
      struct fetch_ask next;
      int rc;
      assert_true(r.ask[i].length >= 1);
      assert_true(r.ask[i].length <= PWIRE_MANIFEST_PART_BYTES);
      assert_true(r.ask[i].offset < total);
      part_for(&r.ask[i], m->encoded, total, &part);
      if (rnd(10) == 0) {
        part.offset++; /* not the part asked */
        if (part.data_len > total - part.offset) {
          part.data_len = total - part.offset;
        }
        part.data = m->encoded + part.offset;
        rc = fetch_on_part(&r.f, m->id, SESS(i), &part, r.now, &next, &r.out,
                           &r.err);
        assert_int_equal(rc, SHOAL_EFORMAT);
        assert_int_equal(fetch_left(&r.f, SESS(i)), 1); /* closed for it */
        r.ask[i].to = NULL;
        continue;
      }
      if (rnd(4) == 0 && part.data_len > 1) {
        part.data_len = 1 + rnd((uint32_t)part.data_len - 1); /* short */
      }
      rc = fetch_on_part(&r.f, m->id, SESS(i), &part, r.now, &next, &r.out,
                         &r.err);
      r.ask[i] = next;
      assert_true(rc == FETCH_MORE || rc == FETCH_DONE);
      if (rc == FETCH_DONE) {
        assert_done(&r);
        done++;
        fetch_free(&r.f);
        run_init(&r, m);
      }
    } else if (op < 90) {
      int had = r.ask[i].to != NULL;
      assert_int_equal(fetch_left(&r.f, SESS(i)), had);
      r.ask[i].to = NULL;
    } else {
      r.now += rnd(2000);
    }
  }
  /* Everyone answers honestly now; the tick offers the free ones. */
  for (unsigned round = 0; round < 10000; round++) {
    int rc;
    (void)offer(&r, 0, NSESS);
    rc = drain(&r);
    if (rc == FETCH_DONE) {
      break;
    }
    r.now += NODE_MANIFEST_AGAIN_MS;
  }
  assert_done(&r);
  fetch_free(&r.f);
  print_message("random run: %u wholes on the way\n", done);
}

static void test_random_order(void **state) {
  (void)state;
  uint32_t counts[] = {1, 2048, BIG_CHUNKS};
  for (size_t c = 0; c < 3; c++) {
    struct manifest *m = make_manifest(counts[c]);
    random_run(m);
    manifest_free(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_file_manifest_in_one_part),
      cmocka_unit_test(test_rest_in_units_from_several),
      cmocka_unit_test(test_a_fast_session_is_not_held_up),
      cmocka_unit_test(test_unit_handed_on),
      cmocka_unit_test(test_first_sender_leaves),
      cmocka_unit_test(test_hostile_parts),
      cmocka_unit_test(test_short_parts),
      cmocka_unit_test(test_flipped_bits_from_one),
      cmocka_unit_test(test_flipped_bits_from_several),
      cmocka_unit_test(test_bad_signature_from_two),
      cmocka_unit_test(test_content_of_an_older_shoal),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_random_order),
  };
  if (sodium_init() < 0) {
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
