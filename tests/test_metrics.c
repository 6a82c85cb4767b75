/* Tests for tracker/metrics: where an observation lands in the histogram,
 * the quantiles read from it, and the two renderings (Prometheus text with
 * its escaping and its invariants, and JSON with the same numbers).
 *
 * The text is checked line by line the way a scraper reads it: every
 * sample belongs to a family announced by HELP and TYPE, bucket counts
 * never fall, and the +Inf bucket equals _count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tmsg.h"
#include "tracker/metrics.h"

#define US 1000u               /* ns */
#define MS 1000000u            /* ns */
#define S UINT64_C(1000000000) /* ns */

static void near(double got, double want) {
  if (fabs(got - want) > 1e-12 + fabs(want) * 1e-9) {
    fail_msg("got %.12g, expected %.12g", got, want);
  }
}

/* The whole text of m with now (all zeros), NUL-terminated; free it. */
static char *render(const struct metrics *m) {
  struct metrics_now now;
  struct buf out;
  memset(&now, 0, sizeof(now));
  buf_init(&out, 1u << 20);
  assert_int_equal(metrics_render_text(m, &now, &out), 0);
  buf_add(&out, "", 1);
  assert_int_equal(buf_err(&out), 0);
  size_t len;
  return (char *)buf_steal(&out, &len);
}

/* The value of the sample whose name and labels are exactly series. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; *p != '\0';) {
    const char *eol = strchr(p, '\n');
    assert_non_null(eol);
    if (strncmp(p, series, n) == 0 && p[n] == ' ') {
      char *end;
      double v = strtod(p + n + 1, &end);
      assert_true(end == eol);
      return v;
    }
    p = eol + 1;
  }
  fail_msg("no sample %s", series);
  return -1;
}

/* ------------------------------------------------------------------------ */

static void an_observation_lands_in_the_first_bucket_that_holds_it(void **s) {
  (void)s;
  struct metrics_hist h;
  memset(&h, 0, sizeof(h));
  metrics_hist_add(&h, 0);                  /* bucket 0 */
  metrics_hist_add(&h, 10 * US);            /* on the bound: bucket 0 */
  metrics_hist_add(&h, 10 * US + 1);        /* just past: bucket 1 */
  metrics_hist_add(&h, 1 * MS);             /* 0.001 s: bucket 6 */
  metrics_hist_add(&h, 1 * S);              /* the last bound: bucket 15 */
  metrics_hist_add(&h, 1 * S + 1);          /* +Inf */
  metrics_hist_add(&h, UINT64_C(3600) * S); /* +Inf */
  assert_int_equal(h.bucket[0], 2);
  assert_int_equal(h.bucket[1], 1);
  assert_int_equal(h.bucket[6], 1);
  assert_int_equal(h.bucket[15], 1);
  assert_int_equal(h.bucket[METRICS_BUCKETS], 2);
  assert_int_equal(h.count, 7);
  assert_int_equal(h.sum_ns, 0 + 10 * US + 10 * US + 1 + 1 * MS + 1 * S +
                                 1 * S + 1 + UINT64_C(3600) * S);
}

static void bucket_bounds_rise_from_10us_to_1s(void **s) {
  (void)s;
  assert_int_equal(metrics_bucket_ns[0], 10 * US);
  assert_int_equal(metrics_bucket_ns[METRICS_BUCKETS - 1], 1 * S);
  for (unsigned i = 1; i < METRICS_BUCKETS; i++) {
    assert_true(metrics_bucket_ns[i] > metrics_bucket_ns[i - 1]);
  }
}

static void quantiles_interpolate_inside_their_bucket(void **s) {
  (void)s;
  struct metrics_hist h;
  memset(&h, 0, sizeof(h));
  near(metrics_hist_quantile(&h, 0.5), -1); /* empty */
  for (int i = 0; i < 90; i++) {
    metrics_hist_add(&h, 5 * US); /* (0, 10 us] */
  }
  for (int i = 0; i < 10; i++) {
    metrics_hist_add(&h, 2 * MS); /* (1 ms, 2.5 ms] */
  }
  /* Rank 50 of 90 in the first bucket, 0 to 10 us. */
  near(metrics_hist_quantile(&h, 0.50), 10e-6 * 50.0 / 90.0);
  /* Ranks 95 and 99: 5 and 9 of the 10 between 1 ms and 2.5 ms. */
  near(metrics_hist_quantile(&h, 0.95), 1e-3 + 1.5e-3 * 0.5);
  near(metrics_hist_quantile(&h, 0.99), 1e-3 + 1.5e-3 * 0.9);
}

static void a_quantile_past_the_last_bound_reads_as_that_bound(void **s) {
  (void)s;
  struct metrics_hist h;
  memset(&h, 0, sizeof(h));
  metrics_hist_add(&h, 1 * MS);
  for (int i = 0; i < 99; i++) {
    metrics_hist_add(&h, 5 * S);
  }
  near(metrics_hist_quantile(&h, 0.5), 1.0);
  near(metrics_hist_quantile(&h, 0.99), 1.0);
}

static void merged_histograms_add_up(void **s) {
  (void)s;
  struct metrics_hist a, b;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  metrics_hist_add(&a, 20 * US);
  metrics_hist_add(&b, 20 * US);
  metrics_hist_add(&b, 2 * S);
  metrics_hist_merge(&a, &b);
  assert_int_equal(a.count, 3);
  assert_int_equal(a.bucket[1], 2);
  assert_int_equal(a.bucket[METRICS_BUCKETS], 1);
  assert_int_equal(a.sum_ns, 40 * US + 2 * S);
}

static void label_values_escape_backslash_quote_and_newline(void **s) {
  (void)s;
  struct buf out;
  buf_init(&out, 256);
  metrics_escape_label(&out, "a\\b\"c\nd plain");
  buf_add(&out, "", 1);
  assert_string_equal((const char *)out.data, "a\\\\b\\\"c\\nd plain");
  buf_reset(&out);
  metrics_escape_label(&out, "");
  assert_int_equal(out.len, 0);
  buf_free(&out);
}

static void reasons_have_distinct_labels_and_the_right_outcome(void **s) {
  (void)s;
  for (int i = 0; i < METRICS_WHY_COUNT; i++) {
    const char *a = metrics_reason_label((enum metrics_reason)i);
    assert_true(strlen(a) > 0);
    assert_int_equal(strspn(a, "abcdefghijklmnopqrstuvwxyz_"), strlen(a));
    for (int j = 0; j < i; j++) {
      assert_string_not_equal(a, metrics_reason_label((enum metrics_reason)j));
    }
  }
  assert_string_equal(metrics_reason_label(METRICS_WHY_BAD_SIGNATURE),
                      "bad_signature");
  assert_int_equal(metrics_reason_outcome(METRICS_WHY_RATE_LIMITED),
                   METRICS_REFUSED);
  assert_int_equal(metrics_reason_outcome(METRICS_WHY_PER_ADDRESS_CAP),
                   METRICS_REFUSED);
  assert_int_equal(metrics_reason_outcome(METRICS_WHY_OUT_OF_MEMORY),
                   METRICS_ERROR);
  assert_int_equal(metrics_reason_outcome(METRICS_WHY_STORE_UNAVAILABLE),
                   METRICS_ERROR);
  /* Out of range counts as "internal", never past the array. */
  struct metrics m;
  metrics_init(&m, 0);
  metrics_refusal(&m, (enum metrics_reason)1000);
  assert_int_equal(m.refusals[METRICS_WHY_INTERNAL], 1);
}

static void wire_types_map_to_request_labels(void **s) {
  (void)s;
  assert_int_equal(metrics_req_of(TMSG_ANNOUNCE), METRICS_REQ_ANNOUNCE);
  assert_int_equal(metrics_req_of(TMSG_LOOKUP), METRICS_REQ_LOOKUP);
  assert_int_equal(metrics_req_of(TMSG_PUBLISH), METRICS_REQ_PUBLISH);
  assert_int_equal(metrics_req_of(TMSG_SEARCH), METRICS_REQ_SEARCH);
  for (unsigned t = 0; t < 256; t++) {
    if (t < 1 || t > 4) {
      assert_int_equal(metrics_req_of((uint8_t)t), METRICS_REQ_UNKNOWN);
    }
  }
  assert_string_equal(metrics_req_label(METRICS_REQ_SEARCH), "search");
  assert_string_equal(metrics_outcome_label(METRICS_REFUSED), "refused");
}

/* Checks the exposition's shape: HELP then TYPE before each family's
 * samples, names with the prefix, counters ending _total, and each
 * histogram's buckets non-decreasing up to +Inf == _count. */
static void check_exposition(const char *text) {
  char family[128] = "";
  char type[32] = "";
  double last_bucket = -1;
  for (const char *p = text; *p != '\0';) {
    const char *eol = strchr(p, '\n');
    assert_non_null(eol);
    char line[1024];
    size_t len = (size_t)(eol - p);
    assert_true(len < sizeof(line));
    memcpy(line, p, len);
    line[len] = '\0';
    p = eol + 1;
    if (strncmp(line, "# HELP ", 7) == 0) {
      size_t fl = strcspn(line + 7, " ");
      assert_true(fl > 0 && fl < sizeof(family));
      memcpy(family, line + 7, fl);
      family[fl] = '\0';
      assert_true(strncmp(family, "shoal_tracker_", 14) == 0);
      assert_true(strlen(line) > 8 + strlen(family)); /* a help text */
      type[0] = '\0';
      /* TYPE must follow at once, for the same family. */
      char want[160];
      snprintf(want, sizeof(want), "# TYPE %s ", family);
      assert_true(strncmp(p, want, strlen(want)) == 0);
      continue;
    }
    if (strncmp(line, "# TYPE ", 7) == 0) {
      const char *t = line + 7 + strlen(family) + 1;
      snprintf(type, sizeof(type), "%s", t);
      assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                  strcmp(type, "histogram") == 0);
      if (strcmp(type, "counter") == 0) {
        size_t fl = strlen(family);
        assert_true(fl > 6 && strcmp(family + fl - 6, "_total") == 0);
      }
      last_bucket = -1;
      continue;
    }
    assert_true(line[0] != '#');
    assert_true(type[0] != '\0');
    /* The sample belongs to the family. */
    assert_true(strncmp(line, family, strlen(family)) == 0);
    const char *rest = line + strlen(family);
    const char *space = strrchr(line, ' ');
    assert_non_null(space);
    char *end;
    double v = strtod(space + 1, &end);
    assert_true(*end == '\0');
    assert_true(v >= 0);
    if (strcmp(type, "histogram") == 0) {
      if (strncmp(rest, "_bucket{", 8) == 0) {
        assert_true(v >= last_bucket);
        last_bucket = strstr(rest, "le=\"+Inf\"") != NULL ? -2 - v : v;
      } else if (strncmp(rest, "_count", 6) == 0) {
        /* The +Inf bucket was the line before _sum: its value is kept
         * negated in last_bucket until _count checks it. */
        assert_true(last_bucket <= -2);
        near(v, -2 - last_bucket);
        last_bucket = -1;
      } else {
        assert_true(strncmp(rest, "_sum", 4) == 0);
      }
    } else {
      assert_true(*rest == ' ' || *rest == '{');
    }
  }
}

static void text_counts_what_happened_and_keeps_its_shape(void **s) {
  (void)s;
  struct metrics m;
  metrics_init(&m, 1700000000123u);
  m.store_backend = "memory";
  m.store_up = 1;
  metrics_request(&m, METRICS_REQ_ANNOUNCE, METRICS_OK, 40 * US);
  metrics_request(&m, METRICS_REQ_ANNOUNCE, METRICS_OK, 60 * US);
  metrics_request(&m, METRICS_REQ_ANNOUNCE, METRICS_REFUSED, 30 * US);
  metrics_request(&m, METRICS_REQ_LOOKUP, METRICS_ERROR, 3 * S);
  metrics_refusal(&m, METRICS_WHY_BAD_SIGNATURE);
  metrics_refusal(&m, METRICS_WHY_PER_ADDRESS_CAP);
  metrics_store_op(&m, 2 * US, 0);
  metrics_store_op(&m, 20 * MS, 1);
  char *text = render(&m);
  check_exposition(text);
  near(sample(text, "shoal_tracker_requests_total{type=\"announce\","
                    "outcome=\"ok\"}"),
       2);
  near(sample(text, "shoal_tracker_requests_total{type=\"announce\","
                    "outcome=\"refused\"}"),
       1);
  near(sample(text, "shoal_tracker_requests_total{type=\"lookup\","
                    "outcome=\"error\"}"),
       1);
  near(sample(text, "shoal_tracker_requests_total{type=\"search\","
                    "outcome=\"ok\"}"),
       0);
  near(sample(text, "shoal_tracker_refusals_total{reason=\"bad_signature\"}"),
       1);
  near(sample(text, "shoal_tracker_refusals_total{reason=\"per_address_cap\"}"),
       1);
  near(sample(text, "shoal_tracker_refusals_total{reason=\"replay\"}"), 0);
  near(sample(text, "shoal_tracker_request_duration_seconds_bucket{type="
                    "\"announce\",le=\"5e-05\"}"),
       2);
  near(sample(text, "shoal_tracker_request_duration_seconds_bucket{type="
                    "\"announce\",le=\"+Inf\"}"),
       3);
  near(sample(text, "shoal_tracker_request_duration_seconds_sum{type="
                    "\"announce\"}"),
       130e-6);
  near(sample(text, "shoal_tracker_request_duration_seconds_count{type="
                    "\"lookup\"}"),
       1);
  near(sample(text, "shoal_tracker_request_duration_seconds_bucket{type="
                    "\"lookup\",le=\"1\"}"),
       0);
  near(sample(text, "shoal_tracker_store_roundtrip_seconds_count"), 2);
  near(sample(text, "shoal_tracker_store_roundtrip_seconds_bucket{le="
                    "\"1e-05\"}"),
       1);
  near(sample(text, "shoal_tracker_store_errors_total"), 1);
  near(sample(text, "shoal_tracker_store_up"), 1);
  near(sample(text, "shoal_tracker_store_info{backend=\"memory\"}"), 1);
  near(sample(text, "shoal_tracker_start_time_seconds"), 1700000000.123);
  free(text);
}

static void the_store_backend_label_is_escaped(void **s) {
  (void)s;
  struct metrics m;
  metrics_init(&m, 0);
  m.store_backend = "we\"ird\\\nname";
  char *text = render(&m);
  near(sample(text,
              "shoal_tracker_store_info{backend=\"we\\\"ird\\\\\\nname\"}"),
       1);
  near(sample(text, "shoal_tracker_store_up"), 0);
  check_exposition(text);
  free(text);
}

static void text_reports_a_full_buffer(void **s) {
  (void)s;
  struct metrics m;
  struct metrics_now now;
  struct buf out;
  metrics_init(&m, 0);
  memset(&now, 0, sizeof(now));
  buf_init(&out, 512);
  assert_int_equal(metrics_render_text(&m, &now, &out), SHOAL_ETOOBIG);
  buf_free(&out);
}

static uint64_t ju(const json_t *o, const char *path1, const char *path2) {
  const json_t *v = json_object_get(o, path1);
  assert_non_null(v);
  if (path2 != NULL) {
    v = json_object_get(v, path2);
    assert_non_null(v);
  }
  assert_true(json_is_integer(v));
  return (uint64_t)json_integer_value(v);
}

static double jr(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  assert_non_null(v);
  assert_true(json_is_number(v));
  return json_number_value(v);
}

static void json_has_the_same_figures_and_the_quantiles(void **s) {
  (void)s;
  struct metrics m;
  struct metrics_now now;
  metrics_init(&m, 1700000000123u);
  m.store_backend = "memory";
  m.store_up = 1;
  memset(&now, 0, sizeof(now));
  now.connections = 3;
  now.swarms = 4;
  now.peers = 5;
  now.store_bytes = 600;
  now.catalog_entries = 7;
  now.signatures = 8;
  now.cache_hits = 9;
  now.expired_peers = 10;
  now.expired_catalog = 11;
  for (int i = 0; i < 90; i++) {
    metrics_request(&m, METRICS_REQ_LOOKUP, METRICS_OK, 5 * US);
  }
  for (int i = 0; i < 9; i++) {
    metrics_request(&m, METRICS_REQ_ANNOUNCE, METRICS_REFUSED, 2 * MS);
  }
  metrics_request(&m, METRICS_REQ_ANNOUNCE, METRICS_ERROR, 2 * MS);
  metrics_refusal(&m, METRICS_WHY_CLOCK_WINDOW);

  json_t *j = metrics_render_json(&m, &now);
  assert_non_null(j);
  /* It survives a round trip through text. */
  char *text = json_dumps(j, JSON_COMPACT);
  assert_non_null(text);
  json_error_t jerr;
  json_t *back = json_loads(text, 0, &jerr);
  assert_non_null(back);
  free(text);
  json_decref(j);
  j = back;

  assert_int_equal(ju(j, "requests_total", NULL), 100);
  assert_int_equal(ju(j, "errors_total", NULL), 1);
  near(jr(j, "error_rate"), 0.01);
  const json_t *req = json_object_get(j, "requests");
  assert_int_equal(ju(req, "lookup", "ok"), 90);
  assert_int_equal(ju(req, "announce", "refused"), 9);
  assert_int_equal(ju(req, "announce", "error"), 1);
  assert_int_equal(ju(req, "search", "ok"), 0);
  assert_int_equal(ju(j, "refusals", "clock_window"), 1);
  assert_int_equal(ju(j, "refusals", "replay"), 0);
  assert_int_equal(ju(j, "connections", NULL), 3);
  assert_int_equal(ju(j, "swarms", NULL), 4);
  assert_int_equal(ju(j, "peers", NULL), 5);
  assert_int_equal(ju(j, "catalog_entries", NULL), 7);
  assert_int_equal(ju(j, "signatures", NULL), 8);
  assert_int_equal(ju(j, "lookup_cache_hits", NULL), 9);
  assert_int_equal(ju(j, "expired_peers", NULL), 10);
  assert_int_equal(ju(j, "expired_catalog_entries", NULL), 11);
  assert_int_equal(ju(j, "start_time_ms", NULL), 1700000000123u);

  /* The overall quantiles are those of the merged histogram. */
  const json_t *lat = json_object_get(j, "latency_seconds");
  assert_non_null(lat);
  assert_int_equal(ju(lat, "count", NULL), 100);
  near(jr(lat, "p50"), 10e-6 * 50.0 / 90.0);
  near(jr(lat, "p95"), 1e-3 + 1.5e-3 * 0.5);
  near(jr(lat, "p99"), 1e-3 + 1.5e-3 * 0.9);
  const json_t *buckets = json_object_get(lat, "buckets");
  assert_true(json_is_array(buckets));
  assert_int_equal(json_array_size(buckets), METRICS_BUCKETS + 1);
  assert_int_equal(ju(json_array_get(buckets, 0), "count", NULL), 90);
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(buckets, METRICS_BUCKETS), "le")),
                      "+Inf");
  assert_int_equal(ju(json_array_get(buckets, METRICS_BUCKETS), "count", NULL),
                   100);
  const json_t *by = json_object_get(lat, "by_type");
  const json_t *lk = json_object_get(by, "lookup");
  assert_int_equal(ju(lk, "count", NULL), 90);
  near(jr(lk, "p99"), 10e-6 * 89.1 / 90.0);
  /* An empty histogram has no quantiles. */
  assert_true(
      json_is_null(json_object_get(json_object_get(by, "search"), "p50")));

  const json_t *store = json_object_get(j, "store");
  assert_string_equal(json_string_value(json_object_get(store, "backend")),
                      "memory");
  assert_true(json_is_true(json_object_get(store, "up")));
  assert_int_equal(ju(store, "bytes", NULL), 600);
  assert_int_equal(ju(store, "errors", NULL), 0);
  assert_true(json_is_null(
      json_object_get(json_object_get(store, "roundtrip_seconds"), "p95")));
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_observation_lands_in_the_first_bucket_that_holds_it),
      cmocka_unit_test(bucket_bounds_rise_from_10us_to_1s),
      cmocka_unit_test(quantiles_interpolate_inside_their_bucket),
      cmocka_unit_test(a_quantile_past_the_last_bound_reads_as_that_bound),
      cmocka_unit_test(merged_histograms_add_up),
      cmocka_unit_test(label_values_escape_backslash_quote_and_newline),
      cmocka_unit_test(reasons_have_distinct_labels_and_the_right_outcome),
      cmocka_unit_test(wire_types_map_to_request_labels),
      cmocka_unit_test(text_counts_what_happened_and_keeps_its_shape),
      cmocka_unit_test(the_store_backend_label_is_escaped),
      cmocka_unit_test(text_reports_a_full_buffer),
      cmocka_unit_test(json_has_the_same_figures_and_the_quantiles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
