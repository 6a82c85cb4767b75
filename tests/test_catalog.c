/* Unit tests for tracker/catalog.c: publishing and ownership, the entry
 * limit, word search with paging, and expiry with bounded work over an
 * open-addressing table that grows and deletes by backward shift.
 *
 * Times are explicit whole seconds; nothing reads the real clock. The
 * randomized test checks the table against a plain array model after every
 * batch of operations, which is what catches an entry lost by a wrong
 * backward shift or a bad rehash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/error.h"
#include "common/identity.h"
#include "common/tmsg.h"
#include "tests/lib/testutil.h"
#include "tracker/catalog.h"

#define TTL 100u

/* ---------------------------------------------------------------------- */
/* Helpers */

static void publisher_pk(uint8_t pk[32], uint64_t n) {
  tu_pk(pk, 0xca7000 + n);
}

static void content_id(uint8_t id[32], uint64_t n) {
  tu_fill(id, 32, 0xc0de0000 + n);
}

static void make_publish(struct tmsg_publish *p, uint64_t content,
                         const char *name, uint64_t size) {
  memset(p, 0, sizeof(*p));
  content_id(p->content, content);
  snprintf(p->name, sizeof(p->name), "%s", name);
  p->size = size;
  tu_fill(p->manifest_sig, sizeof(p->manifest_sig), 0x5160000 + content);
}

static int publish(struct catalog *c, const uint8_t pk[32], uint64_t content,
                   const char *name, uint64_t size, uint32_t now) {
  struct tmsg_publish p;
  make_publish(&p, content, name, size);
  return catalog_publish(c, pk, &p, now);
}

static const struct catalog_entry *find(const struct catalog *c,
                                        uint64_t content) {
  uint8_t id[32];
  content_id(id, content);
  return catalog_find(c, id);
}

static void touch(struct catalog *c, uint64_t content, uint32_t now) {
  uint8_t id[32];
  content_id(id, content);
  catalog_touch(c, id, now);
}

static int search(const struct catalog *c, const char *query, uint32_t offset,
                  uint16_t limit, struct tmsg_search_ok *reply) {
  struct tmsg_search q;
  memset(&q, 0, sizeof(q));
  snprintf(q.query, sizeof(q.query), "%s", query);
  q.offset = offset;
  q.limit = limit;
  return catalog_search(c, &q, reply);
}

/* How many matches a query has (asserts it is a valid query). */
static uint32_t total_of(const struct catalog *c, const char *query) {
  struct tmsg_search_ok r;
  assert_int_equal(search(c, query, 0, TMSG_MAX_RESULTS, &r), 0);
  return r.total;
}

/* Counts occupied slots by walking the table. */
static size_t occupied(const struct catalog *c) {
  size_t n = 0;
  for (size_t i = 0; i <= c->mask; i++) {
    n += c->e[i].hash != 0;
  }
  return n;
}

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
  return tu_below(&rng_state, n);
}

/* An empty catalog of at most max entries, and in pk the key of
 * publisher 1. */
static void open_catalog(struct catalog *c, size_t max, uint8_t pk[32]) {
  assert_int_equal(catalog_init(c, max, TTL), 0);
  publisher_pk(pk, 1);
}

/* Publisher pk publishes content 1 as "ubuntu-24.04.iso" and content 2 as
 * "ubuntu-sources.zip", both at second 10. */
static void publish_two_ubuntus(struct catalog *c, const uint8_t pk[32]) {
  assert_int_equal(publish(c, pk, 1, "ubuntu-24.04.iso", 1, 10), 0);
  assert_int_equal(publish(c, pk, 2, "ubuntu-sources.zip", 1, 10), 0);
}

/* query is refused with SHOAL_EINVAL, and the reply says nothing. */
static void expect_query_refused(const struct catalog *c, const char *query) {
  struct tmsg_search_ok r;
  memset(&r, 0xa5, sizeof(r));
  assert_int_equal(search(c, query, 0, 10, &r), SHOAL_EINVAL);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.total, 0);
}

/* ---------------------------------------------------------------------- */
/* Publishing */

static void test_published_entry_is_found_with_its_fields(void **state) {
  struct catalog c;
  struct tmsg_publish p;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 10, pk);
  assert_null(find(&c, 1));
  make_publish(&p, 1, "Ubuntu-24.04.iso", 6114656256u);
  assert_int_equal(catalog_publish(&c, pk, &p, 500), 0);
  const struct catalog_entry *e = find(&c, 1);
  assert_non_null(e);
  assert_memory_equal(e->content, p.content, 32);
  assert_memory_equal(e->publisher, pk, 32);
  assert_memory_equal(e->manifest_sig, p.manifest_sig, IDENTITY_SIG_BYTES);
  assert_string_equal(e->name, "Ubuntu-24.04.iso");
  assert_int_equal(e->size, 6114656256u);
  assert_int_equal(e->last_seen, 500);
  assert_int_equal(c.n, 1);
  /* Another content is not found through it. */
  assert_null(find(&c, 2));
  catalog_close(&c);
}

static void
test_publish_by_another_key_is_EWRONGKEY_and_changes_nothing(void **state) {
  struct catalog c;
  uint8_t owner[32];
  uint8_t thief[32];
  (void)state;
  assert_int_equal(catalog_init(&c, 10, TTL), 0);
  publisher_pk(owner, 1);
  publisher_pk(thief, 2);
  assert_int_equal(publish(&c, owner, 7, "holiday.mkv", 100, 10), 0);
  assert_int_equal(publish(&c, thief, 7, "malware.exe", 666, 20),
                   SHOAL_EWRONGKEY);
  const struct catalog_entry *e = find(&c, 7);
  assert_non_null(e);
  assert_memory_equal(e->publisher, owner, 32);
  assert_string_equal(e->name, "holiday.mkv");
  assert_int_equal(e->size, 100);
  assert_int_equal(e->last_seen, 10);
  assert_int_equal(c.n, 1);
  assert_int_equal(total_of(&c, "malware"), 0);
  catalog_close(&c);
}

static void test_republish_by_same_key_updates_name_and_size(void **state) {
  struct catalog c;
  struct tmsg_publish p;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 10, pk);
  assert_int_equal(publish(&c, pk, 3, "draft.txt", 10, 10), 0);
  make_publish(&p, 3, "Final Version.TXT", 20);
  p.manifest_sig[0] ^= 0xff;
  assert_int_equal(catalog_publish(&c, pk, &p, 30), 0);
  const struct catalog_entry *e = find(&c, 3);
  assert_non_null(e);
  assert_string_equal(e->name, "Final Version.TXT");
  assert_int_equal(e->size, 20);
  assert_int_equal(e->last_seen, 30);
  assert_memory_equal(e->manifest_sig, p.manifest_sig, IDENTITY_SIG_BYTES);
  assert_int_equal(c.n, 1);
  /* Search follows the new name, not the old. */
  assert_int_equal(total_of(&c, "draft"), 0);
  assert_int_equal(total_of(&c, "final"), 1);
  catalog_close(&c);
}

static void
test_full_catalog_refuses_new_entries_but_updates_existing(void **state) {
  struct catalog c;
  uint8_t pk[32];
  uint8_t other[32];
  (void)state;
  open_catalog(&c, 3, pk);
  publisher_pk(other, 2);
  for (unsigned i = 0; i < 3; i++) {
    assert_int_equal(publish(&c, pk, i, "file", i, 10), 0);
  }
  assert_int_equal(publish(&c, pk, 3, "file", 3, 10), SHOAL_ETOOBIG);
  assert_int_equal(publish(&c, other, 4, "file", 4, 10), SHOAL_ETOOBIG);
  assert_null(find(&c, 3));
  assert_int_equal(c.n, 3);
  /* Updates of present entries still work, and the ownership check still
   * comes first. */
  assert_int_equal(publish(&c, pk, 1, "renamed", 11, 20), 0);
  assert_string_equal(find(&c, 1)->name, "renamed");
  assert_int_equal(publish(&c, other, 2, "x", 1, 20), SHOAL_EWRONGKEY);
  assert_int_equal(c.n, 3);
  /* Once an entry expires there is room again. */
  touch(&c, 1, 200);
  touch(&c, 2, 200);
  assert_int_equal(catalog_expire(&c, 200, 1000), 1);
  assert_int_equal(publish(&c, pk, 3, "file", 3, 200), 0);
  assert_int_equal(c.n, 3);
  catalog_close(&c);
}

/* ---------------------------------------------------------------------- */
/* Search */

static void test_search_is_case_insensitive(void **state) {
  struct catalog c;
  struct tmsg_search_ok r;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 10, pk);
  assert_int_equal(publish(&c, pk, 1, "ubuntu-24.04.iso", 42, 10), 0);
  assert_int_equal(publish(&c, pk, 2, "DEBIAN-12.ISO", 43, 10), 0);
  assert_int_equal(search(&c, "Ubuntu", 0, 10, &r), 0);
  assert_int_equal(r.total, 1);
  assert_int_equal(r.count, 1);
  assert_string_equal(r.results[0].name, "ubuntu-24.04.iso");
  assert_int_equal(r.results[0].size, 42);
  assert_memory_equal(r.results[0].publisher, pk, 32);
  uint8_t id[32];
  content_id(id, 1);
  assert_memory_equal(r.results[0].content, id, 32);
  /* The stored name keeps its case; only matching ignores it. */
  assert_int_equal(search(&c, "debian", 0, 10, &r), 0);
  assert_int_equal(r.count, 1);
  assert_string_equal(r.results[0].name, "DEBIAN-12.ISO");
  assert_int_equal(total_of(&c, "iSo"), 2);
  assert_int_equal(total_of(&c, "fedora"), 0);
  catalog_close(&c);
}

static void test_search_requires_every_word(void **state) {
  struct catalog c;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 10, pk);
  publish_two_ubuntus(&c, pk);
  assert_int_equal(publish(&c, pk, 3, "notes.iso", 1, 10), 0);
  assert_int_equal(total_of(&c, "ubuntu iso"), 1);
  assert_int_equal(total_of(&c, "iso ubuntu"), 1);
  assert_int_equal(total_of(&c, "ubuntu zip"), 1);
  assert_int_equal(total_of(&c, "ubuntu 24.04 zip"), 0);
  assert_int_equal(total_of(&c, "ubuntu"), 2);
  assert_int_equal(total_of(&c, "iso"), 2);
  /* Words are substrings, and a repeated word is harmless. */
  assert_int_equal(total_of(&c, "bun SO iso"), 1);
  catalog_close(&c);
}

static void test_search_ignores_extra_spaces_and_tabs(void **state) {
  struct catalog c;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 10, pk);
  publish_two_ubuntus(&c, pk);
  assert_int_equal(total_of(&c, "  ubuntu \t\t iso  "), 1);
  assert_int_equal(total_of(&c, "\tubuntu\t"), 2);
  assert_int_equal(total_of(&c, "ubuntu\tzip"), 1);
  /* Eight words padded with blanks are still eight words. */
  assert_int_equal(total_of(&c, "\t u  b \t u n t u -  2 \t "), 1);
  catalog_close(&c);
}

static void test_empty_query_is_EINVAL(void **state) {
  struct catalog c;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 10, pk);
  assert_int_equal(publish(&c, pk, 1, "a b", 1, 10), 0);
  const char *blank[] = {"", " ", "\t", "  \t \t  "};
  for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
    expect_query_refused(&c, blank[i]);
  }
  catalog_close(&c);
}

static void test_query_with_too_many_words_is_EINVAL(void **state) {
  struct catalog c;
  struct tmsg_search_ok r;
  uint8_t pk[32];
  char q[TMSG_MAX_QUERY + 1];
  size_t len = 0;
  (void)state;
  open_catalog(&c, 10, pk);
  assert_int_equal(publish(&c, pk, 1, "abcdefghijklmnop", 1, 10), 0);
  /* CATALOG_MAX_WORDS words match; one more is refused. */
  q[0] = '\0';
  for (int w = 0; w < CATALOG_MAX_WORDS; w++) {
    len += (size_t)snprintf(q + len, sizeof(q) - len, "%c ", 'a' + w);
  }
  assert_int_equal(search(&c, q, 0, 10, &r), 0);
  assert_int_equal(r.total, 1);
  snprintf(q + len, sizeof(q) - len, "%c", 'a' + CATALOG_MAX_WORDS);
  expect_query_refused(&c, q);
  /* The longest query the wire allows, as many one-letter words as fit. */
  for (size_t i = 0; i < TMSG_MAX_QUERY; i++) {
    q[i] = i % 2 ? ' ' : 'a';
  }
  q[TMSG_MAX_QUERY] = '\0';
  assert_int_equal(search(&c, q, 0, 10, &r), SHOAL_EINVAL);
  catalog_close(&c);
}

static void test_search_handles_longest_names_and_queries(void **state) {
  struct catalog c;
  struct tmsg_search_ok r;
  uint8_t pk[32];
  char name[TMSG_MAX_NAME + 1];
  char q[TMSG_MAX_QUERY + 1];
  (void)state;
  open_catalog(&c, 10, pk);
  memset(name, 'n', TMSG_MAX_NAME);
  memcpy(name + TMSG_MAX_NAME - 4, "TAIL", 4);
  name[TMSG_MAX_NAME] = '\0';
  assert_int_equal(publish(&c, pk, 1, name, 1, 10), 0);
  assert_int_equal(search(&c, "tail", 0, 10, &r), 0);
  assert_int_equal(r.count, 1);
  assert_string_equal(r.results[0].name, name);
  /* A one-word query longer than any name matches nothing. */
  memset(q, 'n', TMSG_MAX_QUERY);
  q[TMSG_MAX_QUERY] = '\0';
  assert_int_equal(search(&c, q, 0, 10, &r), 0);
  assert_int_equal(r.total, 0);
  /* Bytes above ASCII are matched as they are. */
  assert_int_equal(publish(&c, pk, 2, "Caf\xc3\xa9 Music", 1, 10), 0);
  assert_int_equal(total_of(&c, "CAF\xc3\xa9"), 1);
  catalog_close(&c);
}

static void test_search_pages_cover_each_match_exactly_once(void **state) {
  enum { MATCHING = 120, OTHER = 37 };
  struct catalog c;
  struct tmsg_search_ok r;
  uint8_t pk[32];
  static unsigned seen[MATCHING];
  char name[64];
  (void)state;
  open_catalog(&c, 1000, pk);
  memset(seen, 0, sizeof(seen));
  for (unsigned i = 0; i < MATCHING + OTHER; i++) {
    /* Matching names carry their index, so a page can be traced back. */
    if (i < MATCHING) {
      snprintf(name, sizeof(name), "Season %u Episode.mkv", i);
    } else {
      snprintf(name, sizeof(name), "Season %u trailer.mp4", i);
    }
    assert_int_equal(publish(&c, pk, i, name, i, 10), 0);
  }
  unsigned pages = 0;
  for (uint32_t off = 0; off < MATCHING; off += TMSG_MAX_RESULTS) {
    assert_int_equal(search(&c, "season episode", off, TMSG_MAX_RESULTS, &r),
                     0);
    assert_int_equal(r.total, MATCHING);
    assert_int_equal(r.count, MATCHING - off < TMSG_MAX_RESULTS
                                  ? MATCHING - off
                                  : TMSG_MAX_RESULTS);
    for (unsigned i = 0; i < r.count; i++) {
      unsigned idx = (unsigned)strtoul(r.results[i].name + 7, NULL, 10);
      assert_true(idx < MATCHING);
      assert_int_equal(r.results[i].size, idx);
      seen[idx]++;
    }
    pages++;
  }
  assert_int_equal(pages, 3);
  for (unsigned i = 0; i < MATCHING; i++) {
    assert_int_equal(seen[i], 1);
  }
  /* Pages of another size tile the same order. */
  struct tmsg_search_ok whole;
  assert_int_equal(search(&c, "episode", 0, 50, &whole), 0);
  for (uint32_t off = 0; off < 50; off += 7) {
    assert_int_equal(search(&c, "episode", off, 7, &r), 0);
    for (unsigned i = 0; i < r.count && off + i < 50; i++) {
      assert_string_equal(r.results[i].name, whole.results[off + i].name);
    }
  }
  catalog_close(&c);
}

static void
test_search_limit_is_clamped_and_offset_past_end_is_empty(void **state) {
  struct catalog c;
  struct tmsg_search_ok r;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 1000, pk);
  for (unsigned i = 0; i < 120; i++) {
    assert_int_equal(publish(&c, pk, i, "match", i, 10), 0);
  }
  assert_int_equal(search(&c, "match", 0, UINT16_MAX, &r), 0);
  assert_int_equal(r.count, TMSG_MAX_RESULTS);
  assert_int_equal(r.total, 120);
  assert_int_equal(search(&c, "match", 0, TMSG_MAX_RESULTS + 1, &r), 0);
  assert_int_equal(r.count, TMSG_MAX_RESULTS);
  /* Limit 0 counts without listing. */
  assert_int_equal(search(&c, "match", 0, 0, &r), 0);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.total, 120);
  /* The last partial page, then past the end. */
  assert_int_equal(search(&c, "match", 119, 50, &r), 0);
  assert_int_equal(r.count, 1);
  assert_int_equal(search(&c, "match", 120, 50, &r), 0);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.total, 120);
  assert_int_equal(search(&c, "match", UINT32_MAX, 50, &r), 0);
  assert_int_equal(r.count, 0);
  assert_int_equal(r.total, 120);
  catalog_close(&c);
}

/* ---------------------------------------------------------------------- */
/* Expiry */

static void
test_untouched_entries_expire_after_ttl_and_touched_stay(void **state) {
  struct catalog c;
  uint8_t pk[32];
  (void)state;
  open_catalog(&c, 10, pk);
  assert_int_equal(publish(&c, pk, 1, "kept", 1, 1000), 0);
  assert_int_equal(publish(&c, pk, 2, "dropped", 1, 1000), 0);
  assert_int_equal(publish(&c, pk, 3, "republished", 1, 1000), 0);
  touch(&c, 1, 1080);
  assert_int_equal(publish(&c, pk, 3, "republished", 1, 1090), 0);
  /* Touching what is not in the catalog adds nothing. */
  touch(&c, 99, 1080);
  assert_int_equal(c.n, 3);
  assert_null(find(&c, 99));

  /* Exactly ttl seconds old is still alive; one more is not. */
  assert_int_equal(catalog_expire(&c, 1000 + TTL, 1000), 0);
  assert_int_equal(catalog_expire(&c, 1000 + TTL + 1, 1000), 1);
  assert_null(find(&c, 2));
  assert_non_null(find(&c, 1));
  assert_non_null(find(&c, 3));
  assert_int_equal(catalog_expire(&c, 1080 + TTL, 1000), 0);
  assert_int_equal(catalog_expire(&c, 1080 + TTL + 1, 1000), 1);
  assert_null(find(&c, 1));
  assert_non_null(find(&c, 3));
  assert_int_equal(catalog_expire(&c, 1090 + TTL + 1, 1000), 1);
  assert_int_equal(c.n, 0);
  assert_int_equal(occupied(&c), 0);
  /* A clock behind an entry never expires it. */
  assert_int_equal(publish(&c, pk, 4, "future", 1, 5000), 0);
  assert_int_equal(catalog_expire(&c, 10, 1000), 0);
  assert_non_null(find(&c, 4));
  catalog_close(&c);
}

static void
test_expire_does_bounded_work_and_eventually_removes_all(void **state) {
  enum { N = 200 };
  struct catalog c;
  uint8_t pk[32];
  unsigned calls = 0;
  (void)state;
  open_catalog(&c, 1000, pk);
  for (unsigned i = 0; i < N; i++) {
    assert_int_equal(publish(&c, pk, i, "x", i, 1000), 0);
  }
  /* Nothing due: many calls remove nothing. */
  for (unsigned t = 0; t < 300; t++) {
    assert_int_equal(catalog_expire(&c, 1000 + TTL, 10), 0);
  }
  assert_int_equal(c.n, N);
  size_t left = N;
  while (left > 0) {
    unsigned removed = catalog_expire(&c, 1000 + TTL + 1, 10);
    assert_true(removed <= 10);
    assert_int_equal(c.n, left - removed);
    left = c.n;
    calls++;
    /* One pass over the table (slots plus removals) suffices. */
    assert_true(calls <= 2 * (c.mask + 1 + N) / 10);
  }
  assert_true(calls >= N / 10);
  assert_int_equal(occupied(&c), 0);
  assert_int_equal(total_of(&c, "x"), 0);
  catalog_close(&c);
}

static void
test_table_grows_past_64_entries_and_keeps_all_findable(void **state) {
  enum { N = 1000 };
  struct catalog c;
  uint8_t pk[32];
  char name[32];
  (void)state;
  assert_int_equal(catalog_init(&c, N, TTL), 0);
  size_t first_mask = c.mask;
  publisher_pk(pk, 1);
  for (unsigned i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "entry-%u", i);
    assert_int_equal(publish(&c, pk, i, name, i, 10), 0);
    /* The table stays at most three quarters full. */
    assert_true(c.n * 4 <= (c.mask + 1) * 3);
  }
  assert_true(c.mask > first_mask);
  assert_int_equal(c.n, N);
  assert_int_equal(occupied(&c), N);
  for (unsigned i = 0; i < N; i++) {
    const struct catalog_entry *e = find(&c, i);
    assert_non_null(e);
    snprintf(name, sizeof(name), "entry-%u", i);
    assert_string_equal(e->name, name);
  }
  assert_int_equal(total_of(&c, "entry"), N);
  assert_int_equal(publish(&c, pk, N, "one too many", 1, 10), SHOAL_ETOOBIG);
  catalog_close(&c);
}

/* ---------------------------------------------------------------------- */
/* Randomized operations against a reference model */

enum { K = 400, MAXN = 200, KEYS = 3 };

struct model_entry {
  int live;
  uint32_t last_seen;
  unsigned owner;
  unsigned version;
};

static void model_name(char *out, size_t cap, unsigned k, unsigned version) {
  snprintf(out, cap, "item %u rev %u", k, version);
}

static void model_check(const struct catalog *c, const struct model_entry *m,
                        const uint8_t (*keys)[32]) {
  char name[64];
  size_t live = 0;
  for (unsigned k = 0; k < K; k++) {
    const struct catalog_entry *e = find(c, k);
    if (!m[k].live) {
      assert_null(e);
      continue;
    }
    live++;
    assert_non_null(e);
    model_name(name, sizeof(name), k, m[k].version);
    assert_string_equal(e->name, name);
    assert_int_equal(e->size, k * 1000 + m[k].version);
    assert_int_equal(e->last_seen, m[k].last_seen);
    assert_memory_equal(e->publisher, keys[m[k].owner], 32);
  }
  assert_int_equal(c->n, live);
  assert_int_equal(occupied(c), live);
  assert_int_equal(total_of(c, "item"), live);
}

static void
test_random_publish_touch_expire_match_a_reference_model(void **state) {
  static struct model_entry m[K];
  uint8_t keys[KEYS][32];
  struct catalog c;
  uint32_t now = 1000;
  char name[64];
  size_t max_mask = 0;
  unsigned full = 0;
  unsigned wrong_key = 0;
  (void)state;
  memset(m, 0, sizeof(m));
  for (unsigned i = 0; i < KEYS; i++) {
    publisher_pk(keys[i], 10 + i);
  }
  assert_int_equal(catalog_init(&c, MAXN, TTL), 0);
  rng_state = 21;
  for (unsigned op = 0; op < 30000; op++) {
    unsigned k = rnd(K);
    unsigned what = rnd(100);
    /* Phases of slow time fill the catalog to its limit; phases of fast
     * time let most of it expire. */
    now += (op / 3000) % 2 ? rnd(4) : rnd(8) == 0;
    if (what < 45) {
      unsigned who = rnd(KEYS);
      unsigned version = m[k].version + 1;
      size_t live = 0;
      for (unsigned i = 0; i < K; i++) {
        live += m[i].live != 0;
      }
      model_name(name, sizeof(name), k, version);
      int err = publish(&c, keys[who], k, name, k * 1000 + version, now);
      if (m[k].live && m[k].owner != who) {
        assert_int_equal(err, SHOAL_EWRONGKEY);
        wrong_key++;
      } else if (!m[k].live && live >= MAXN) {
        assert_int_equal(err, SHOAL_ETOOBIG);
        full++;
      } else {
        assert_int_equal(err, 0);
        m[k].live = 1;
        m[k].owner = who;
        m[k].version = version;
        m[k].last_seen = now;
      }
    } else if (what < 80) {
      touch(&c, k, now);
      if (m[k].live) {
        m[k].last_seen = now;
      }
    } else {
      /* A bounded sweep removes some due entries and never a fresh one;
       * which ones depends on the cursor, so read the table back. */
      unsigned removed = catalog_expire(&c, now, 1 + rnd(60));
      unsigned gone = 0;
      for (unsigned i = 0; i < K; i++) {
        if (m[i].live && find(&c, i) == NULL) {
          assert_true(now - m[i].last_seen > TTL);
          m[i].live = 0;
          gone++;
        }
      }
      assert_int_equal(removed, gone);
    }
    max_mask = c.mask > max_mask ? c.mask : max_mask;
    if (op % 100 == 99) {
      model_check(&c, m, (const uint8_t(*)[32])keys);
    }
  }
  model_check(&c, m, (const uint8_t(*)[32])keys);
  /* The run grew the table past its first size, reached the limit and
   * met foreign keys. */
  print_message("    %u refused as full, %u as foreign, largest table %zu\n",
                full, wrong_key, max_mask + 1);
  assert_true(max_mask > 63);
  assert_true(full > 0);
  assert_true(wrong_key > 0);
  /* A call may spend its work on a run of empty slots and remove nothing,
   * so sweep until the catalog is empty (or clearly stuck). */
  for (unsigned calls = 0; c.n > 0; calls++) {
    assert_true(calls < 1000);
    catalog_expire(&c, now + TTL + 1, 50);
  }
  for (unsigned i = 0; i < K; i++) {
    m[i].live = 0;
  }
  model_check(&c, m, (const uint8_t(*)[32])keys);
  catalog_close(&c);
}

/* Many deletions from a small, crowded table: every removal shifts entries
 * back along long probe runs, including runs that wrap past the last slot. */
static void test_backward_shift_keeps_remaining_entries_findable(void **state) {
  enum { N = 48 }; /* three quarters of the first 64 slots */
  struct catalog c;
  uint8_t pk[32];
  int live[N];
  (void)state;
  publisher_pk(pk, 1);
  rng_state = 22;
  for (unsigned round = 0; round < 50; round++) {
    assert_int_equal(catalog_init(&c, N, TTL), 0);
    for (unsigned i = 0; i < N; i++) {
      assert_int_equal(publish(&c, pk, round * 100 + i, "e", i, 1000), 0);
      live[i] = 1;
    }
    assert_int_equal(c.mask, 63);
    /* Keep a random half fresh, then sweep the rest out one at a time. */
    for (unsigned i = 0; i < N; i++) {
      if (rnd(2)) {
        touch(&c, round * 100 + i, 1100);
      } else {
        live[i] = 0;
      }
    }
    /* Single steps, checking every survivor after each: two passes over
     * the table are enough to visit every slot. */
    for (unsigned step = 0; step < 2 * (c.mask + 1) + N; step++) {
      catalog_expire(&c, 1000 + TTL + 1, 1);
      assert_int_equal(c.n, occupied(&c));
      for (unsigned i = 0; i < N; i++) {
        if (live[i]) {
          assert_non_null(find(&c, round * 100 + i));
        }
      }
    }
    size_t want = 0;
    for (unsigned i = 0; i < N; i++) {
      want += live[i] != 0;
      if (live[i]) {
        assert_non_null(find(&c, round * 100 + i));
      } else {
        assert_null(find(&c, round * 100 + i));
      }
    }
    assert_int_equal(c.n, want);
    catalog_close(&c);
  }
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_entry_is_found_with_its_fields),
      cmocka_unit_test(
          test_publish_by_another_key_is_EWRONGKEY_and_changes_nothing),
      cmocka_unit_test(test_republish_by_same_key_updates_name_and_size),
      cmocka_unit_test(
          test_full_catalog_refuses_new_entries_but_updates_existing),
      cmocka_unit_test(test_search_is_case_insensitive),
      cmocka_unit_test(test_search_requires_every_word),
      cmocka_unit_test(test_search_ignores_extra_spaces_and_tabs),
      cmocka_unit_test(test_empty_query_is_EINVAL),
      cmocka_unit_test(test_query_with_too_many_words_is_EINVAL),
      cmocka_unit_test(test_search_handles_longest_names_and_queries),
      cmocka_unit_test(test_search_pages_cover_each_match_exactly_once),
      cmocka_unit_test(
          test_search_limit_is_clamped_and_offset_past_end_is_empty),
      cmocka_unit_test(
          test_untouched_entries_expire_after_ttl_and_touched_stay),
      cmocka_unit_test(
          test_expire_does_bounded_work_and_eventually_removes_all),
      cmocka_unit_test(test_table_grows_past_64_entries_and_keeps_all_findable),
      cmocka_unit_test(
          test_random_publish_touch_expire_match_a_reference_model),
      cmocka_unit_test(test_backward_shift_keeps_remaining_entries_findable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
