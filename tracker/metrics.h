/* The tracker's figures for its operator: counters, latency histograms and
 * their rendering as Prometheus text and as JSON.
 *
 * Pure data: nothing here reads a clock, a socket or the tracker's context.
 * handlers.c and server.c count into a struct metrics as requests and
 * refusals happen; metrics_http.c adds what is read at the moment of a
 * scrape (struct metrics_now: gauges, and the counters kept in
 * struct tracker_stats) and renders both. The names, labels and buckets are
 * the operator's interface and stay stable (docs/design.md, "What an
 * operator sees").
 */
#ifndef SHOAL_TRACKER_METRICS_H
#define SHOAL_TRACKER_METRICS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Request types, as a label ("type"). */
enum metrics_req {
  METRICS_REQ_ANNOUNCE,
  METRICS_REQ_LOOKUP,
  METRICS_REQ_PUBLISH,
  METRICS_REQ_SEARCH,
  METRICS_REQ_UNKNOWN, /* a type the tracker does not serve, or unreadable */
  METRICS_REQ_COUNT,
};

/* How a request ended ("outcome"): answered; refused because of the client
 * or the tracker's policy; or failed because of the tracker itself. */
enum metrics_outcome {
  METRICS_OK,
  METRICS_REFUSED,
  METRICS_ERROR,
  METRICS_OUTCOME_COUNT,
};

/* Why something was refused ("reason"). Each has a stable label; the
 * reasons up to METRICS_WHY_OUT_OF_MEMORY are the client's doing or the
 * tracker's policy (outcome "refused"), the rest the tracker's own
 * trouble (outcome "error"). Connection and stream refusals have reasons
 * too, though no request was read. */
#define METRICS_REASON_MAP(XX)                                                 \
  XX(RATE_LIMITED, "rate_limited", "over the address's request rate")          \
  XX(RETRY_IGNORED, "retry_ignored",                                           \
     "sent again before the rate limit's retry-after; closed")                 \
  XX(REPLAY, "replay", "replayed or out-of-sequence signed request")           \
  XX(BAD_SIGNATURE, "bad_signature", "signature does not verify")              \
  XX(CLOCK_WINDOW, "clock_window", "timestamp outside the clock window")       \
  XX(TOO_BIG, "too_big", "frame larger than --max-frame")                      \
  XX(MALFORMED, "malformed", "malformed frame, envelope or payload")           \
  XX(BAD_VERSION, "bad_version", "unsupported protocol version")               \
  XX(UNKNOWN_TYPE, "unknown_type", "request or query type not served")         \
  XX(SWARM_FULL, "swarm_full",                                                 \
     "swarm full or too many contents in one announce")                        \
  XX(CATALOG_FULL, "catalog_full", "catalog is full")                          \
  XX(WRONG_KEY, "wrong_key", "content already published by another key")       \
  XX(BAD_SEARCH, "bad_search", "search words out of bounds")                   \
  XX(CONNECTION_LIMIT, "connection_limit", "over --max-connections")           \
  XX(PER_ADDRESS_CAP, "per_address_cap", "over --max-per-address")             \
  XX(UNKNOWN_ADDRESS, "unknown_address", "connection address unreadable")      \
  XX(OUT_OF_MEMORY, "out_of_memory", "the tracker is out of memory")           \
  XX(STORE_UNAVAILABLE, "store_unavailable", "the store did not answer")       \
  XX(INTERNAL, "internal", "the tracker failed to build its reply")

enum metrics_reason {
#define METRICS_REASON_ENUM_(name, label, help) METRICS_WHY_##name,
  METRICS_REASON_MAP(METRICS_REASON_ENUM_)
#undef METRICS_REASON_ENUM_
      METRICS_WHY_COUNT,
};

/* Histogram buckets: upper bounds from 10 us to 1 s, in a 1-2.5-5 series,
 * so that p50, p95 and p99 of a request (microseconds when the store is
 * memory, a millisecond or so over a network store) land in buckets a
 * few times apart. The last bucket (+Inf) takes the rest. */
#define METRICS_BUCKETS 16
extern const uint64_t metrics_bucket_ns[METRICS_BUCKETS];

struct metrics_hist {
  uint64_t bucket[METRICS_BUCKETS + 1]; /* not cumulative; last is +Inf */
  uint64_t count;
  uint64_t sum_ns;
};

struct metrics {
  uint64_t requests[METRICS_REQ_COUNT][METRICS_OUTCOME_COUNT];
  uint64_t refusals[METRICS_WHY_COUNT];
  struct metrics_hist latency[METRICS_REQ_COUNT]; /* handling time by type */
  struct metrics_hist store_rtt; /* one store operation, call to answer */
  uint64_t store_errors;
  /* The store's side, set by whoever runs the store: its kind, and 1 while
   * it answers (the memory store always does). */
  const char *store_backend; /* "memory", ...; a static string */
  int store_up;
  uint64_t start_time_ms; /* wall clock, for rates since start */
};

/* What a scrape reads elsewhere at the moment it is made. */
struct metrics_now {
  uint64_t connections;     /* open client connections */
  uint64_t swarms;          /* store: swarms */
  uint64_t peers;           /* store: registrations (swarm, peer) */
  uint64_t store_bytes;     /* store: memory held for them */
  uint64_t catalog_entries; /* published contents */
  uint64_t signatures;      /* replies signed */
  uint64_t cache_hits;      /* lookups answered from the reply cache */
  uint64_t expired_peers;   /* registrations removed by expiry */
  uint64_t expired_catalog; /* catalog entries removed by expiry */
};

/* Zeroes m and notes the start time (wall-clock ms); the store is "" and
 * down until its owner says otherwise. */
void metrics_init(struct metrics *m, uint64_t start_time_ms);

/* The label of a reason ("rate_limited") and its outcome (METRICS_REFUSED
 * or METRICS_ERROR). */
const char *metrics_reason_label(enum metrics_reason why);
enum metrics_outcome metrics_reason_outcome(enum metrics_reason why);
const char *metrics_req_label(enum metrics_req type);
const char *metrics_outcome_label(enum metrics_outcome o);
/* The label type of a wire type (TMSG_ANNOUNCE, ...). */
enum metrics_req metrics_req_of(uint8_t tmsg_type);

/* Counts one request of type that ended with outcome after ns of handling
 * (from its frame's arrival to its reply being queued). */
void metrics_request(struct metrics *m, enum metrics_req type,
                     enum metrics_outcome outcome, uint64_t ns);
/* Counts one refusal. */
void metrics_refusal(struct metrics *m, enum metrics_reason why);
/* Counts one store operation that took ns; failed when it did not get an
 * answer (an error of the store, not a refusal by policy). */
void metrics_store_op(struct metrics *m, uint64_t ns, int failed);

/* Adds one observation to h. */
void metrics_hist_add(struct metrics_hist *h, uint64_t ns);
/* Adds every observation of b to a. */
void metrics_hist_merge(struct metrics_hist *a, const struct metrics_hist *b);
/* The q-quantile (0 < q < 1) in seconds, interpolated linearly inside its
 * bucket as Prometheus's histogram_quantile does: a value in the +Inf
 * bucket reads as the largest finite bound. Returns -1 when h is empty. */
double metrics_hist_quantile(const struct metrics_hist *h, double q);

/* Appends s to out as a Prometheus label value: backslash, double quote
 * and newline escaped. */
void metrics_escape_label(struct buf *out, const char *s);

/* Appends the Prometheus text exposition (format 0.0.4) of m and now to
 * out. Returns 0, or SHOAL_ETOOBIG when out's maximum was reached. */
int metrics_render_text(const struct metrics *m, const struct metrics_now *now,
                        struct buf *out);
/* The same figures as one JSON object (the caller owns it), with p50, p95
 * and p99 of each histogram; NULL when out of memory. */
json_t *metrics_render_json(const struct metrics *m,
                            const struct metrics_now *now);

#endif
