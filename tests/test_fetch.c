/* The manifest's fetch (peer/fetch.c): the first part from one session,
 * the rest in stripes from others; a source that leaves or is late hands
 * its stripe on; parts that are not the ones asked are refused; a whole
 * that does not hash to the content blames nobody when several sent it
 * and the one that did when it came from one.
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

#define NSESS 12
static max_align_t sess_store[NSESS];
#define SESS(i) ((struct session *)(void *)&sess_store[i])

/* A signed file manifest of chunks chunks of 2^14 bytes; the caller frees
 * it. Its hashes are random: the fetch never looks inside. */
static struct manifest *make_manifest(uint32_t chunks) {
  struct identity id;
  struct manifest *m = calloc(1, sizeof(*m));
  assert_non_null(m);
  m->kind = MANIFEST_KIND_FILE;
  m->name = strdup("content.bin");
  m->files = calloc(1, sizeof(*m->files));
  assert_non_null(m->name);
  assert_non_null(m->files);
  m->file_count = 1;
  m->files[0].path = strdup("content.bin");
  assert_non_null(m->files[0].path);
  m->files[0].size = (uint64_t)chunks << MANIFEST_CHUNK_LOG2_MIN;
  assert_int_equal(manifest_layout(m, MANIFEST_CHUNK_LOG2_MIN), 0);
  randombytes_buf(m->hashes, (size_t)m->chunk_count * MANIFEST_HASH_BYTES);
  identity_generate(&id);
  assert_int_equal(manifest_seal(m, &id), 0);
  return m;
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

static void test_small_manifest_in_one_part(void **state) {
  (void)state;
  struct manifest *m = make_manifest(1);
  struct run r;
  assert_true(m->encoded_len < NODE_MANIFEST_FIRST_BYTES);
  run_init(&r, m);
  assert_int_equal(offer(&r, 0, 3), 1);
  assert_int_equal(r.ask[0].offset, 0);
  assert_int_equal(r.ask[0].length, NODE_MANIFEST_FIRST_BYTES);
  assert_int_equal(answer(&r, 0), FETCH_DONE);
  assert_null(r.ask[0].to);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* 2,048 chunks: 64 KiB of hashes. The first 16 KiB from one session, the
 * rest in stripes of at least NODE_MANIFEST_STRIPE_MIN from others. */
static void test_rest_in_stripes_from_others(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  uint32_t total = (uint32_t)m->encoded_len,
           rest = total - NODE_MANIFEST_FIRST_BYTES;
  unsigned ways = rest / NODE_MANIFEST_STRIPE_MIN;
  static uint8_t covered[128 << 10];
  struct run r;
  assert_true(ways > 1 && ways <= NODE_MANIFEST_WAYS);
  run_init(&r, m);
  assert_true(total <= sizeof(covered));
  memset(covered, 0, sizeof(covered));

  /* Only the first part is asked until it tells the total. */
  assert_int_equal(offer(&r, 0, NSESS), 1);
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  /* Session 0 goes on with the first stripe, the others take the rest. */
  assert_non_null(r.ask[0].to);
  assert_int_equal(r.ask[0].offset, NODE_MANIFEST_FIRST_BYTES);
  assert_int_equal(offer(&r, 1, NSESS), ways - 1);
  memset(covered, 1, NODE_MANIFEST_FIRST_BYTES);
  for (unsigned i = 0; i < NSESS; i++) {
    if (r.ask[i].to == NULL) {
      continue;
    }
    assert_true(r.ask[i].length >= NODE_MANIFEST_STRIPE_MIN);
    assert_true(r.ask[i].length <= PWIRE_MANIFEST_PART_BYTES);
    for (uint32_t b = r.ask[i].offset; b < r.ask[i].offset + r.ask[i].length;
         b++) {
      assert_int_equal(covered[b], 0); /* no byte asked twice */
      covered[b] = 1;
    }
  }
  for (uint32_t b = 0; b < total; b++) {
    assert_int_equal(covered[b], 1); /* every byte asked of someone */
  }
  /* Answered last session first, it comes together all the same. */
  for (unsigned i = NSESS; i-- > 0;) {
    if (r.ask[i].to != NULL) {
      int rc = answer(&r, i);
      assert_true(rc == FETCH_MORE || rc == FETCH_DONE);
      assert_null(r.ask[i].to);
    }
  }
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* 100,000 chunks: 3.2 MB, stripes of several parts each. A source that
 * leaves hands on its stripe from where it stopped; a late one is named. */
static void test_stripe_handed_on(void **state) {
  (void)state;
  struct manifest *m = make_manifest(100000);
  struct run r;
  uint32_t resume;
  run_init(&r, m);
  assert_int_equal(offer(&r, 0, 1), 1);
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  assert_int_equal(offer(&r, 1, NSESS), NODE_MANIFEST_WAYS - 1);
  assert_null(r.ask[NODE_MANIFEST_WAYS].to); /* eight stripes, eight asked */
  assert_int_equal(r.ask[3].length, PWIRE_MANIFEST_PART_BYTES);

  /* Session 3 sends one part, then goes. */
  assert_int_equal(answer(&r, 3), FETCH_MORE);
  resume = r.ask[3].offset;
  assert_int_equal(fetch_left(&r.f, SESS(3)), 1);
  assert_int_equal(fetch_left(&r.f, SESS(3)), 0);
  r.ask[3].to = NULL;
  /* A session asked already takes nothing more; a free one takes it on. */
  for (unsigned i = 0; i < NODE_MANIFEST_WAYS; i++) {
    struct fetch_ask a;
    assert_int_equal(i == 3 || fetch_offer(&r.f, SESS(i), r.now, &a), i == 3);
  }
  assert_int_equal(offer(&r, NSESS - 1, NSESS), 1);
  assert_int_equal(r.ask[NSESS - 1].offset, resume);

  /* Late: nothing answered for longer than the timeout. */
  assert_null(fetch_overdue(&r.f, r.now + 100, 100));
  assert_non_null(fetch_overdue(&r.f, r.now + 101, 100));

  assert_int_equal(drain(&r), FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* Before the first part nothing is known: its source's departure starts
 * the fetch again from the top with another. */
static void test_first_source_leaves(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  struct run r;
  run_init(&r, m);
  assert_int_equal(offer(&r, 0, 2), 1);
  assert_int_equal(fetch_left(&r.f, SESS(1)), 0);
  assert_int_equal(fetch_left(&r.f, SESS(0)), 1);
  r.ask[0].to = NULL;
  assert_int_equal(offer(&r, 1, 2), 1);
  assert_int_equal(r.ask[1].offset, 0);
  assert_int_equal(r.ask[1].length, NODE_MANIFEST_FIRST_BYTES);
  assert_int_equal(answer(&r, 1), FETCH_MORE);
  assert_int_equal(r.ask[1].offset, NODE_MANIFEST_FIRST_BYTES);
  assert_true(offer(&r, 2, NSESS) >= 1);
  assert_int_equal(drain(&r), FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

/* Parts that are not the ones asked, each on a fresh fetch. */
static void test_hostile_parts(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  uint32_t total = (uint32_t)m->encoded_len;
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
      {"empty", 0, 0, -(int64_t)NODE_MANIFEST_FIRST_BYTES, 0, 0, SHOAL_EFORMAT},
      {"longer than asked", 0, 0, 1, 0, 0, SHOAL_EFORMAT},
      {"a total of 0", 0, 0, 0, -(int64_t)total, 0, SHOAL_EFORMAT},
      {"a total past the largest manifest", 0, 0, 0,
       (int64_t)MANIFEST_MAX_BYTES + 1 - total, 0, SHOAL_ETOOBIG},
      {"a total other than the first part's", 0, 0, 0, 1, 1, SHOAL_EFORMAT},
      {"a total shorter than the part", 0, 0, 0,
       (int64_t)NODE_MANIFEST_FIRST_BYTES - 1 - total, 0, SHOAL_EFORMAT},
  };
  static uint8_t big[NODE_MANIFEST_FIRST_BYTES + 2];
  memcpy(big, m->encoded, NODE_MANIFEST_FIRST_BYTES);
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    struct run r;
    struct pwire_msg part;
    struct fetch_ask next;
    struct fetch_ask *a;
    run_init(&r, m);
    assert_int_equal(offer(&r, 0, 1), 1);
    if (cases[c].second) {
      assert_int_equal(answer(&r, 0), FETCH_MORE);
    }
    a = &r.ask[0];
    part_for(a, m->encoded, total, &part);
    if (cases[c].len > 0) {
      part.data = big;
    }
    part.offset = (uint32_t)((int64_t)part.offset + cases[c].offset);
    part.data_len = (size_t)((int64_t)part.data_len + cases[c].len);
    part.total = (uint32_t)((int64_t)part.total + cases[c].tot);
    print_message("%s\n", cases[c].what);
    assert_int_equal(fetch_on_part(&r.f, m->id, SESS(cases[c].from), &part,
                                   r.now, &next, &r.out, &r.err),
                     cases[c].want);
    assert_null(next.to);
    assert_null(r.out);
    /* The session is closed for it: its stripe goes to another, and the
     * manifest still comes together. */
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

/* Every truncation of the first part's length is taken as progress: the
 * rest of that part is asked again of the same session. */
static void test_short_parts(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  uint32_t total = (uint32_t)m->encoded_len;
  for (uint32_t len = 1; len <= NODE_MANIFEST_FIRST_BYTES; len += 509) {
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
    r.ask[0] = next;
    (void)offer(&r, 1, NSESS);
    assert_int_equal(drain(&r), FETCH_DONE);
    assert_done(&r);
    fetch_free(&r.f);
  }
  manifest_free(m);
}

/* A flipped bit anywhere, the signature too (which the content ID leaves
 * out): from several sessions nobody is blamed and the fetch starts again
 * from one, which is blamed when it lies too. */
static void flip_one(const struct manifest *m, uint8_t *bad, uint32_t at) {
  uint32_t total = (uint32_t)m->encoded_len;
  struct run r;
  memcpy(bad, m->encoded, total);
  bad[at] ^= (uint8_t)(1u << (at % 8));
  run_init(&r, m);
  r.bytes = bad;
  assert_int_equal(offer(&r, 0, 1), 1);
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  assert_true(offer(&r, 1, NSESS) >= 1);
  assert_int_equal(drain(&r), FETCH_RETRY);
  assert_null(r.out);
  /* One session for the whole now: asked in parts of the largest size. */
  memset(r.ask, 0, sizeof(r.ask));
  assert_int_equal(offer(&r, 2, NSESS), 1);
  assert_int_equal(r.ask[2].length, PWIRE_MANIFEST_PART_BYTES);
  assert_int_equal(drain(&r), FETCH_NOT_OURS);
  assert_null(r.out);
  /* Still one at a time; an honest one completes it. */
  r.bytes = m->encoded;
  assert_int_equal(offer(&r, 4, NSESS), 1);
  assert_int_equal(drain(&r), FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
}

static void test_flipped_bits(void **state) {
  (void)state;
  struct manifest *m = make_manifest(2048);
  uint32_t total = (uint32_t)m->encoded_len;
  uint8_t *bad = malloc(total);
  assert_non_null(bad);
  for (uint32_t at = 0; at < total; at += 4093) {
    flip_one(m, bad, at);
  }
  for (uint32_t at = total - IDENTITY_SIG_BYTES; at < total; at += 7) {
    flip_one(m, bad, at);
  }
  flip_one(m, bad, total - 1);
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
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  assert_true(offer(&r, 1, NSESS) >= 1);
  assert_int_equal(drain(&r), FETCH_RETRY);
  memset(r.ask, 0, sizeof(r.ask));
  assert_int_equal(offer(&r, 1, 2), 1);
  assert_int_equal(drain(&r), FETCH_NOT_OURS);
  assert_int_equal(offer(&r, 2, 3), 1);
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
  /* One session alone: the first part, then every stripe in turn. */
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
  struct manifest *m = make_manifest(100000);
  struct rate_bucket down;
  struct run r;
  rate_init(&down, 0, 0);
  run_init(&r, m);
  assert_int_equal(fetch_timeout_ms(&r.f, &down), NODE_REQUEST_TIMEOUT_MS);
  rate_init(&down, 10000, 0);
  (void)offer(&r, 0, 1);
  assert_int_equal(fetch_timeout_ms(&r.f, &down),
                   2 * NODE_MANIFEST_FIRST_BYTES * 1000 / 10000 >
                           NODE_REQUEST_TIMEOUT_MS
                       ? 2 * NODE_MANIFEST_FIRST_BYTES * 1000 / 10000
                       : NODE_REQUEST_TIMEOUT_MS);
  assert_int_equal(answer(&r, 0), FETCH_MORE);
  (void)offer(&r, 1, NSESS);
  assert_int_equal(fetch_timeout_ms(&r.f, &down),
                   2ull * NODE_MANIFEST_WAYS * PWIRE_MANIFEST_PART_BYTES *
                       1000 / 10000);
  assert_int_equal(drain(&r), FETCH_DONE);
  assert_done(&r);
  fetch_free(&r.f);
  manifest_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_manifest_in_one_part),
      cmocka_unit_test(test_rest_in_stripes_from_others),
      cmocka_unit_test(test_stripe_handed_on),
      cmocka_unit_test(test_first_source_leaves),
      cmocka_unit_test(test_hostile_parts),
      cmocka_unit_test(test_short_parts),
      cmocka_unit_test(test_flipped_bits),
      cmocka_unit_test(test_bad_signature_from_two),
      cmocka_unit_test(test_content_of_an_older_shoal),
      cmocka_unit_test(test_timeout),
  };
  if (sodium_init() < 0) {
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
