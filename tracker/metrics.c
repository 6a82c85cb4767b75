/* The tracker's figures: counting, histogram quantiles, and rendering as
 * Prometheus text (exposition format 0.0.4) and as JSON. Pure data: the
 * caller supplies every time and every figure read elsewhere. */
#include "tracker/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/tmsg.h"

const uint64_t metrics_bucket_ns[METRICS_BUCKETS] = {
    10000u,     25000u,     50000u,     100000u,     250000u,   500000u,
    1000000u,   2500000u,   5000000u,   10000000u,   25000000u, 50000000u,
    100000000u, 250000000u, 500000000u, 1000000000u,
};

/* The same bounds as Prometheus writes them ("le" values). */
static const char *const bucket_le[METRICS_BUCKETS] = {
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005",
    "0.001", "0.0025",  "0.005", "0.01",   "0.025",   "0.05",
    "0.1",   "0.25",    "0.5",   "1",
};

static const char *const reason_labels[METRICS_WHY_COUNT] = {
#define METRICS_REASON_LABEL_(name, label, help) label,
    METRICS_REASON_MAP(METRICS_REASON_LABEL_)
#undef METRICS_REASON_LABEL_
};

static const char *const req_labels[METRICS_REQ_COUNT] = {
    "announce", "lookup", "publish", "search", "unknown"};

static const char *const outcome_labels[METRICS_OUTCOME_COUNT] = {
    "ok", "refused", "error"};

void metrics_init(struct metrics *m, uint64_t start_time_ms) {
  memset(m, 0, sizeof(*m));
  m->store_backend = "";
  m->start_time_ms = start_time_ms;
}

const char *metrics_reason_label(enum metrics_reason why) {
  return (unsigned)why < METRICS_WHY_COUNT ? reason_labels[why] : "internal";
}

enum metrics_outcome metrics_reason_outcome(enum metrics_reason why) {
  return why >= METRICS_WHY_OUT_OF_MEMORY ? METRICS_ERROR : METRICS_REFUSED;
}

const char *metrics_req_label(enum metrics_req type) {
  return (unsigned)type < METRICS_REQ_COUNT ? req_labels[type] : "unknown";
}

const char *metrics_outcome_label(enum metrics_outcome o) {
  return (unsigned)o < METRICS_OUTCOME_COUNT ? outcome_labels[o] : "error";
}

enum metrics_req metrics_req_of(uint8_t tmsg_type) {
  switch (tmsg_type) {
  case TMSG_ANNOUNCE:
    return METRICS_REQ_ANNOUNCE;
  case TMSG_LOOKUP:
    return METRICS_REQ_LOOKUP;
  case TMSG_PUBLISH:
    return METRICS_REQ_PUBLISH;
  case TMSG_SEARCH:
    return METRICS_REQ_SEARCH;
  default:
    return METRICS_REQ_UNKNOWN;
  }
}

void metrics_hist_add(struct metrics_hist *h, uint64_t ns) {
  unsigned i = 0;
  while (i < METRICS_BUCKETS && ns > metrics_bucket_ns[i]) {
    i++;
  }
  h->bucket[i]++;
  h->count++;
  h->sum_ns += ns;
}

void metrics_hist_merge(struct metrics_hist *a, const struct metrics_hist *b) {
  for (unsigned i = 0; i <= METRICS_BUCKETS; i++) {
    a->bucket[i] += b->bucket[i];
  }
  a->count += b->count;
  a->sum_ns += b->sum_ns;
}

double metrics_hist_quantile(const struct metrics_hist *h, double q) {
  if (h->count == 0) {
    return -1;
  }
  double rank = q * (double)h->count;
  uint64_t below = 0;
  for (unsigned i = 0; i < METRICS_BUCKETS; i++) {
    uint64_t upto = below + h->bucket[i];
    if ((double)upto >= rank && h->bucket[i] > 0) {
      double lo = i == 0 ? 0.0 : (double)metrics_bucket_ns[i - 1];
      double hi = (double)metrics_bucket_ns[i];
      double frac = (rank - (double)below) / (double)h->bucket[i];
      return (lo + (hi - lo) * frac) / 1e9;
    }
    below = upto;
  }
  /* The rank falls among the observations above the last bound. */
  return (double)metrics_bucket_ns[METRICS_BUCKETS - 1] / 1e9;
}

void metrics_request(struct metrics *m, enum metrics_req type,
                     enum metrics_outcome outcome, uint64_t ns) {
  if ((unsigned)type >= METRICS_REQ_COUNT) {
    type = METRICS_REQ_UNKNOWN;
  }
  if ((unsigned)outcome >= METRICS_OUTCOME_COUNT) {
    outcome = METRICS_ERROR;
  }
  m->requests[type][outcome]++;
  metrics_hist_add(&m->latency[type], ns);
}

void metrics_refusal(struct metrics *m, enum metrics_reason why) {
  if ((unsigned)why >= METRICS_WHY_COUNT) {
    why = METRICS_WHY_INTERNAL;
  }
  m->refusals[why]++;
}

void metrics_store_op(struct metrics *m, uint64_t ns, int failed) {
  metrics_hist_add(&m->store_rtt, ns);
  if (failed) {
    m->store_errors++;
  }
}

/* ------------------------------------------------------------------------ */
/* Prometheus text */

__attribute__((format(printf, 2, 3))) static void addf(struct buf *out,
                                                       const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  /* Every line written here is far below the size of line. */
  if (n > 0) {
    buf_add(out, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
  }
}

static void adds(struct buf *out, const char *s) {
  buf_add(out, s, strlen(s));
}

void metrics_escape_label(struct buf *out, const char *s) {
  for (; *s != '\0'; s++) {
    if (*s == '\\') {
      buf_add(out, "\\\\", 2);
    } else if (*s == '"') {
      buf_add(out, "\\\"", 2);
    } else if (*s == '\n') {
      buf_add(out, "\\n", 2);
    } else {
      buf_add(out, s, 1);
    }
  }
}

static void head(struct buf *out, const char *name, const char *type,
                 const char *help) {
  addf(out, "# HELP shoal_tracker_%s %s\n# TYPE shoal_tracker_%s %s\n", name,
       help, name, type);
}

static void one(struct buf *out, const char *name, const char *type,
                const char *help, uint64_t v) {
  head(out, name, type, help);
  addf(out, "shoal_tracker_%s %llu\n", name, (unsigned long long)v);
}

/* The series of one histogram; label is "" or `key="value",`. */
static void hist_series(struct buf *out, const char *name, const char *label,
                        const struct metrics_hist *h) {
  uint64_t cum = 0;
  for (unsigned i = 0; i < METRICS_BUCKETS; i++) {
    cum += h->bucket[i];
    addf(out, "shoal_tracker_%s_bucket{%sle=\"%s\"} %llu\n", name, label,
         bucket_le[i], (unsigned long long)cum);
  }
  addf(out, "shoal_tracker_%s_bucket{%sle=\"+Inf\"} %llu\n", name, label,
       (unsigned long long)h->count);
  /* The label without its trailing comma, for _sum and _count. */
  size_t ll = strlen(label);
  char bare[128];
  snprintf(bare, sizeof(bare), "%.*s", ll > 0 ? (int)ll - 1 : 0, label);
  const char *open = ll > 0 ? "{" : "";
  const char *close = ll > 0 ? "}" : "";
  addf(out, "shoal_tracker_%s_sum%s%s%s %.9f\n", name, open, bare, close,
       (double)h->sum_ns / 1e9);
  addf(out, "shoal_tracker_%s_count%s%s%s %llu\n", name, open, bare, close,
       (unsigned long long)h->count);
}

int metrics_render_text(const struct metrics *m, const struct metrics_now *now,
                        struct buf *out) {
  head(out, "requests_total", "counter",
       "Requests handled, by type and outcome (refused: the client's doing "
       "or policy; error: the tracker's own trouble).");
  for (unsigned t = 0; t < METRICS_REQ_COUNT; t++) {
    for (unsigned o = 0; o < METRICS_OUTCOME_COUNT; o++) {
      addf(out,
           "shoal_tracker_requests_total{type=\"%s\",outcome=\"%s\"} %llu\n",
           req_labels[t], outcome_labels[o],
           (unsigned long long)m->requests[t][o]);
    }
  }
  head(out, "refusals_total", "counter",
       "Refusals of requests, streams and connections, by reason.");
  for (unsigned r = 0; r < METRICS_WHY_COUNT; r++) {
    adds(out, "shoal_tracker_refusals_total{reason=\"");
    metrics_escape_label(out, reason_labels[r]);
    addf(out, "\"} %llu\n", (unsigned long long)m->refusals[r]);
  }
  head(out, "request_duration_seconds", "histogram",
       "Time from a request frame's arrival to its reply being queued.");
  for (unsigned t = 0; t < METRICS_REQ_COUNT; t++) {
    char label[64];
    snprintf(label, sizeof(label), "type=\"%s\",", req_labels[t]);
    hist_series(out, "request_duration_seconds", label, &m->latency[t]);
  }
  one(out, "connections", "gauge", "Open client connections.",
      now->connections);
  one(out, "swarms", "gauge", "Swarms in the store.", now->swarms);
  one(out, "peers", "gauge", "Registrations (swarm, peer) in the store.",
      now->peers);
  one(out, "store_bytes", "gauge",
      "Memory the store holds for swarms and registrations.", now->store_bytes);
  one(out, "catalog_entries", "gauge", "Published contents in the catalog.",
      now->catalog_entries);
  one(out, "signatures_total", "counter", "Replies signed.", now->signatures);
  one(out, "lookup_cache_hits_total", "counter",
      "Lookups answered with a cached signed reply.", now->cache_hits);
  one(out, "expired_peers_total", "counter",
      "Registrations removed because they were not renewed.",
      now->expired_peers);
  one(out, "expired_catalog_entries_total", "counter",
      "Catalog entries removed because nobody announced them.",
      now->expired_catalog);
  head(out, "store_roundtrip_seconds", "histogram",
       "Time from handing the store one operation to its answer.");
  hist_series(out, "store_roundtrip_seconds", "", &m->store_rtt);
  one(out, "store_errors_total", "counter",
      "Store operations that got no answer or failed.", m->store_errors);
  one(out, "store_up", "gauge", "1 when the store answers, else 0.",
      m->store_up ? 1u : 0u);
  head(out, "store_info", "gauge", "The store in use (always 1).");
  adds(out, "shoal_tracker_store_info{backend=\"");
  metrics_escape_label(out, m->store_backend ? m->store_backend : "");
  adds(out, "\"} 1\n");
  head(out, "start_time_seconds", "gauge",
       "When the tracker started, in seconds since the epoch.");
  addf(out, "shoal_tracker_start_time_seconds %.3f\n",
       (double)m->start_time_ms / 1000.0);
  return buf_err(out) != 0 ? SHOAL_ETOOBIG : 0;
}

/* ------------------------------------------------------------------------ */
/* JSON */

/* Adds value to obj under key; a NULL value (out of memory) marks *ok. */
static void put(json_t *obj, const char *key, json_t *value, int *ok) {
  if (value == NULL || json_object_set_new(obj, key, value) != 0) {
    *ok = 0;
  }
}

static json_t *u64(uint64_t v) {
  return json_integer((json_int_t)v);
}

static json_t *quantile(const struct metrics_hist *h, double q) {
  double v = metrics_hist_quantile(h, q);
  return v < 0 ? json_null() : json_real(v);
}

static json_t *hist_json(const struct metrics_hist *h, int with_buckets) {
  json_t *o = json_object();
  int ok = o != NULL;
  if (!ok) {
    return NULL;
  }
  put(o, "count", u64(h->count), &ok);
  put(o, "sum", json_real((double)h->sum_ns / 1e9), &ok);
  put(o, "p50", quantile(h, 0.50), &ok);
  put(o, "p95", quantile(h, 0.95), &ok);
  put(o, "p99", quantile(h, 0.99), &ok);
  if (with_buckets) {
    json_t *b = json_array();
    uint64_t cum = 0;
    ok = ok && b != NULL;
    for (unsigned i = 0; ok && i <= METRICS_BUCKETS; i++) {
      json_t *e = json_object();
      cum += h->bucket[i];
      ok = e != NULL;
      if (ok) {
        put(e, "le",
            i < METRICS_BUCKETS ? json_real((double)metrics_bucket_ns[i] / 1e9)
                                : json_string("+Inf"),
            &ok);
        put(e, "count", u64(cum), &ok);
        ok = json_array_append_new(b, e) == 0 && ok;
      }
    }
    put(o, "buckets", b, &ok);
  }
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *metrics_render_json(const struct metrics *m,
                            const struct metrics_now *now) {
  json_t *root = json_object();
  json_t *req = json_object();
  json_t *why = json_object();
  json_t *lat = NULL;
  json_t *by_type = json_object();
  json_t *store = json_object();
  struct metrics_hist all;
  uint64_t total = 0;
  uint64_t errors = 0;
  int ok = root != NULL && req != NULL && why != NULL && by_type != NULL &&
           store != NULL;

  memset(&all, 0, sizeof(all));
  for (unsigned t = 0; ok && t < METRICS_REQ_COUNT; t++) {
    json_t *o = json_object();
    ok = o != NULL;
    for (unsigned k = 0; ok && k < METRICS_OUTCOME_COUNT; k++) {
      put(o, outcome_labels[k], u64(m->requests[t][k]), &ok);
      total += m->requests[t][k];
    }
    errors += m->requests[t][METRICS_ERROR];
    put(req, req_labels[t], o, &ok);
    put(by_type, req_labels[t], hist_json(&m->latency[t], 0), &ok);
    metrics_hist_merge(&all, &m->latency[t]);
  }
  for (unsigned r = 0; ok && r < METRICS_WHY_COUNT; r++) {
    put(why, reason_labels[r], u64(m->refusals[r]), &ok);
  }
  if (ok) {
    lat = hist_json(&all, 1);
    ok = lat != NULL;
    put(lat, "by_type", by_type, &ok);
    by_type = NULL;
  }
  put(root, "requests_total", u64(total), &ok);
  put(root, "requests", req, &ok);
  req = NULL;
  put(root, "errors_total", u64(errors), &ok);
  put(root, "error_rate",
      json_real(total ? (double)errors / (double)total : 0.0), &ok);
  put(root, "refusals", why, &ok);
  why = NULL;
  put(root, "latency_seconds", lat, &ok);
  lat = NULL;
  put(root, "connections", u64(now->connections), &ok);
  put(root, "swarms", u64(now->swarms), &ok);
  put(root, "peers", u64(now->peers), &ok);
  put(root, "catalog_entries", u64(now->catalog_entries), &ok);
  put(root, "signatures", u64(now->signatures), &ok);
  put(root, "lookup_cache_hits", u64(now->cache_hits), &ok);
  put(root, "expired_peers", u64(now->expired_peers), &ok);
  put(root, "expired_catalog_entries", u64(now->expired_catalog), &ok);
  if (store != NULL) {
    put(store, "backend", json_string(m->store_backend ? m->store_backend : ""),
        &ok);
    put(store, "up", json_boolean(m->store_up), &ok);
    put(store, "bytes", u64(now->store_bytes), &ok);
    put(store, "errors", u64(m->store_errors), &ok);
    put(store, "roundtrip_seconds", hist_json(&m->store_rtt, 1), &ok);
  }
  put(root, "store", store, &ok);
  store = NULL;
  put(root, "start_time_ms", u64(m->start_time_ms), &ok);
  /* What was not handed to root is still ours (json_decref(NULL) is a
   * no-op; put consumed every value it was given, even on failure). */
  json_decref(req);
  json_decref(why);
  json_decref(lat);
  json_decref(by_type);
  json_decref(store);
  if (!ok) {
    json_decref(root);
    return NULL;
  }
  return root;
}
