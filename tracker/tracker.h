/* The tracker's context: one struct that holds all of a tracker's state,
 * passed down to every module (no globals but the loop and this). */
#ifndef SHOAL_TRACKER_TRACKER_H
#define SHOAL_TRACKER_TRACKER_H

#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/identity.h"
#include "common/log.h"
#include "common/replay.h"
#include "common/tmsg.h"
#include "tracker/addrcount.h"
#include "tracker/catalog.h"
#include "tracker/hashtab.h"
#include "tracker/metrics.h"
#include "tracker/ratelimit.h"
#include "tracker/registry.h"
#include "tracker/store.h"

#define TRACKER_PORT_DEFAULT 7070
#define TRACKER_MAX_LISTEN 8
#define TRACKER_MAX_CONNS_DEFAULT 1024u
/* Connections one address (an IPv6 /64) may hold. A peer holds one tracker
 * connection per content while it talks to the tracker and closes it after
 * 30 s idle, so a NAT with dozens of busy peers stays under this; and it
 * is a sixteenth of the default TRACKER_MAX_CONNS_DEFAULT, so that one
 * address cannot take every connection. */
#define TRACKER_MAX_PER_ADDR_DEFAULT 64u
#define TRACKER_IDLE_DEFAULT_S 60u        /* seconds without a whole frame */
#define TRACKER_FRAME_DEFAULT (64u << 10) /* requests are small */
/* Unsent reply bytes before the tracker stops reading from a connection. */
#define TRACKER_MAX_PENDING (1u << 20)
#define TRACKER_TICK_MS 1000u     /* expiry and idle sweep period */
#define TRACKER_SWEEP_WORK 10000u /* entries examined per tick */
/* Replay guard capacity: senders heard within one clock window, not all
 * peers (a peer announces once an interval, the window is 5 minutes); at
 * most 2^20 slots of 32 bytes. Past it the guard evicts and grows strict
 * about clock skew, never lenient about replays (common/replay.h). */
#define TRACKER_GUARD_SENDERS (3u << 18)
#define TRACKER_CACHE_SLOTS 1024u /* cached signed lookup replies */
#define TRACKER_CACHE_MS 1000u    /* how long one is reused */
/* Requests of one connection in flight or waiting to be written before the
 * tracker stops reading from it: a pipelining client gets its replies in
 * order, and a slow store cannot make one connection hold unbounded
 * memory (a request holds up to about 40 KiB while its store call runs). */
#define TRACKER_MAX_INFLIGHT 64u

struct tracker_config {
  char listen[TRACKER_MAX_LISTEN][300];
  unsigned n_listen;
  char key_path[4096];
  uint32_t interval_s;
  uint32_t max_conns;
  uint32_t max_per_addr; /* connections per address; 0: no cap of its own */
  uint32_t rate;
  uint32_t burst;
  uint32_t max_frame;
  uint32_t idle_s;
  uint32_t max_peers;
  uint32_t max_items;
  uint32_t catalog_max;
  uint32_t catalog_ttl_s;
  uint32_t window_ms;
  char metrics_listen[300]; /* ADDR:PORT for /metrics and /stats; "": off */
  char store[4200];         /* --store URL; "": the memory store */
};

/* One cached, signed lookup reply (see handlers.c). */
struct lookup_cache_slot {
  uint8_t content[TMSG_ID_BYTES];
  uint16_t want;
  uint8_t flags;
  uint8_t used;
  uint64_t made_ms;
  uint8_t *frame; /* framed, sealed reply */
  size_t frame_len;
  uint8_t *pks; /* the public keys in the reply, 32 bytes each */
  uint16_t npks;
};

struct tracker_stats {
  uint64_t requests;
  uint64_t refused;
  uint64_t signatures;
  uint64_t cache_hits;
  uint64_t expired_peers;
  uint64_t expired_catalog;
};

struct conn;
struct metrics_http;

struct tracker {
  uv_loop_t *loop;
  struct tracker_config cfg;
  struct identity id;
  char id_text[57];
  uint64_t seq;
  struct replay_guard guard;
  struct store *store;
  struct registry reg;
  struct catalog cat;
  struct ratelimit rl;
  struct lookup_cache_slot *cache;
  uint8_t cache_key[HASHTAB_KEY_BYTES];
  struct tracker_stats stats;
  struct metrics metrics; /* the operator's figures (metrics.h) */
  struct buf out;         /* scratch for gathering replies to write */
  int expiring;           /* a registry expiry sweep is in flight */
  int cat_expiring;       /* a catalog expiry sweep is in flight */
  uint64_t expire_ns;     /* when the registry's sweep began */
  /* Network side (server.c). */
  uv_tcp_t listeners[TRACKER_MAX_LISTEN];
  unsigned n_listeners;
  uv_timer_t tick;
  uv_signal_t sigint, sigterm, sighup;
  struct conn *conns;
  uint32_t n_conns;
  struct addrcount per_addr;         /* connections counted by source address */
  struct metrics_http *metrics_http; /* --metrics-listen; NULL when off */
  int closing;
  uint8_t rbuf[64 << 10];
};

/* What the handlers know of the connection a frame came on. */
struct peer_addr {
  uint8_t family; /* 4 or 6 */
  uint8_t addr[16];
  char text[64]; /* "1.2.3.4:5678" for logs */
  /* The connection's "retry after" deadline (uv_now ms), or NULL. A client
   * that sends again before it is closed, so that ignoring the limit costs
   * the tracker at most two signed refusals per connection. */
  uint64_t *limited_until;
};

struct request;
typedef void (*request_done_cb)(struct request *rq);

/* One request, from its frame to its reply. Made by handlers_request_new
 * for whoever reads frames (server.c, a test), handled by handlers_frame,
 * which calls on_done exactly once, when out holds the framed reply:
 * before handlers_frame returns when the store answers at once, later when
 * it does not. The owner frees it with handlers_request_free after
 * on_done, never before; an owner that goes away first sets owner to NULL
 * and frees it in on_done instead. */
struct request {
  struct tracker *t;
  struct peer_addr from; /* limited_until is NULL once the request waits */
  struct buf out;        /* the framed, signed reply */
  int close_after;       /* close the connection after the reply */
  int done;              /* on_done has been called */
  request_done_cb on_done;
  void *owner;           /* the owner's; NULL once orphaned */
  struct request *next;  /* the owner's queue */
  uint64_t begun_ns;     /* the frame's arrival (uv_hrtime) */
  uint64_t store_ns;     /* the store call in flight began */
  enum metrics_req type; /* once known */
  enum metrics_outcome outcome;
  /* The handler's state while the store works (handlers.c). */
  uint8_t *frame; /* a copy of a signed request's frame */
  void *state;
};

/* Context (tracker.c). */
/* Sets up everything but the network: t is the caller's; cfg and id are
 * copied into it (tracker_close wipes the key's copy). Returns 0 or an
 * error, after which t holds nothing. */
int tracker_init(struct tracker *t, uv_loop_t *loop,
                 const struct tracker_config *cfg, const struct identity *id);
/* Releases what tracker_init made. */
void tracker_close(struct tracker *t);

/* Requests (handlers.c). */
/* A request for a frame that came from `from` (copied), with on_done and
 * owner set. Returns NULL when out of memory. */
struct request *handlers_request_new(struct tracker *t,
                                     const struct peer_addr *from,
                                     request_done_cb on_done, void *owner);
/* Frees a request whose on_done has been called; NULL is a no-op. */
void handlers_request_free(struct request *rq);
/* Handles one frame body (borrowed for the call only) and, once the reply
 * is in rq->out, calls rq->on_done; rq->close_after then says whether the
 * connection must be closed after it. */
void handlers_frame(struct request *rq, const uint8_t *frame, size_t len);
/* Appends a framed, signed error reply. */
void handlers_error(struct tracker *t, struct buf *out, uint8_t req_type,
                    uint64_t req_id, int code, uint32_t retry_ms,
                    const char *reason);
/* Counts one refusal (a request's, a stream's or a connection's) and logs
 * it: one record at level, its message from fmt, with the fields "reason"
 * (the label of why) and "addr" (the client's address as text). Every
 * refusal passes here exactly once. */
__attribute__((format(printf, 5, 6))) void
handlers_refused(struct tracker *t, enum metrics_reason why,
                 enum log_level level, const char *addr, const char *fmt, ...);
/* The periodic sweep: expiry of registrations and catalog entries. */
void handlers_tick(struct tracker *t);

/* Network (server.c). */
/* Parses "ADDR:PORT" or "[V6]:PORT" (numeric addresses; port 0 picks a
 * free one). Returns 0 or SHOAL_EINVAL. */
int server_parse_listen(const char *s, struct sockaddr_storage *ss);
/* Binds and listens on every cfg.listen address and starts the periodic
 * tick. Prints nothing: the caller says the tracker is ready (starting with
 * server_say_listening) once it can also handle signals. Returns 0 or an error;
 * either way server_stop must follow. */
int server_start(struct tracker *t);
/* Prints "listening on ADDR:PORT" for every listener, with the real port,
 * to stdout and flushes it (and logs the addresses). main.c follows it with
 * "metrics on ADDR:PORT" when --metrics-listen serves and "tracker key
 * TEXTID"; whoever reads these lines may act on the tracker at once,
 * including with a signal. */
void server_say_listening(struct tracker *t);
void server_stop(struct tracker *t);

#endif
