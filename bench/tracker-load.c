/* bench/tracker-load: load on a real shoal-tracker over loopback, with the
 * memory store and with the Redis store, in one run.
 *
 * For each store (--store memory, redis or both, the default) it starts
 * build/bin/shoal-tracker on 127.0.0.1 (its own temp key, limits raised so
 * that only the CPU limits it; for redis, a redis-server of its own on a
 * Unix socket in the temp folder and --store unix:PATH), then drives it
 * from one libuv loop over many connections:
 *
 *   1. register: --peers distinct keys announce in swarms of 10 (swarm 0
 *      gets BUSY_EXTRA more so it is busy), several requests in flight per
 *      connection, as fast as the tracker answers;
 *   2. large:    --mem-peers more keys announce in swarms of 10 000;
 *   3. lookup:   --lookups lookups of the busy swarm (want 50);
 *   4. mix:      --mix requests, 20% re-announces and 80% lookups spread
 *                over all swarms;
 *   5. paced:    re-announces sent open-loop at --rate a second for
 *                --seconds, whether or not replies came (every
 *                millisecond, the requests due by then); each reply's
 *                latency is taken from its request's send, and how far
 *                sends fell behind their schedule is shown beside it.
 *
 * It prints each phase's rate, p50, p95 and p99 latency and the tracker's
 * CPU time per request (utime + stime from /proc/PID/stat over the phase);
 * with Redis, redis-server's CPU per request likewise and its used_memory
 * (INFO memory) per registered peer for swarms of 10 and of 10 000: read
 * before a register phase and after it with the replay windows (sh:r{PK},
 * one per sender, living twice the clock window) deleted, which are shown
 * apart. With the memory store, the tracker's resident memory per peer.
 *
 * Targets (issue 16): tracker CPU per announce with Redis <= 1.5 x the
 * memory store's; Redis memory <= 250 B per registered peer; p95 announce
 * latency < 5 ms at 5 000 announces/s. Earlier ones: memory-store CPU per
 * announce <= 1.3 x (Ed25519 verify + sign); CPU per busy-swarm lookup
 * <= 30 us; <= 160 B per registered peer at 1 000 000 (--peers 1000000).
 *
 * With --curve it measures the tracker's load curve instead, for three
 * configurations in one run: one tracker on the memory store, one on Redis,
 * and two trackers over one Redis with the connections (and so the load)
 * split between them. After a register phase (--peers keys, 50 000 by
 * default) it offers re-announces open-loop at each rate of --curve-rates
 * for --seconds, stepping up until the tracker saturates: the replies
 * stop following the offered rate, more than 1% of the requests are
 * refused or time out, or p99 passes CURVE_P99_MS. As a p99 alone may be
 * one stall of a shared machine, a step saturated by p99 only ends the
 * curve when the step before it was saturated too; the saturation point
 * is the first of the saturated steps at the curve's end. Each step's
 * announces are signed before the step starts, so the bench's own Ed25519
 * signing (on clients' machines in real use) does not take the cores the
 * tracker is measured on; each sender keeps to one connection, so its
 * announces arrive in order however long the queues get. Per step it
 * prints the rate offered and answered, p50/p95/p99 latency, the error
 * rate (refusals, replies later than --reply-timeout and requests never
 * answered, over requests), and the CPU of each tracker, of redis-server,
 * of the bench itself and of the whole machine (/proc/stat, and its niced
 * part), so a step where both cores were busy is told from one where the
 * tracker was. At
 * the end: where each configuration saturated, in requests a second per
 * tracker core (replies a second over tracker CPU seconds a second),
 * against 1 / (one Ed25519 verify + one sign) on an announce-sized
 * message, measured in the same run. --curve-out DIR writes one data file
 * per configuration for bench/tracker-curve.gp.
 *
 * Every child is stopped by PID with a deadline, every phase has one
 * (--phase-timeout seconds; a curve step lasts at most --seconds plus
 * --reply-timeout), and the temp folder is removed.
 * Usage: tracker-load [--store memory|redis|both] [--peers N]
 *                     [--mem-peers N] [--lookups N] [--mix N] [--rate N]
 *                     [--seconds N] [--conns N] [--phase-timeout N]
 *                     [--tracker PATH]
 *        tracker-load --curve [--store memory|redis|redis2|all]
 *                     [--curve-rates "1000 2000 ..."] [--seconds N]
 *                     [--reply-timeout MS] [--peers N] [--conns N]
 *                     [--curve-out DIR] [--tracker PATH]
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "bench/lib/benchutil.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/tmsg.h"
#include "tests/lib/proc.h"
#include "tests/lib/redis.h"
#include "tests/lib/testutil.h"

#define WINDOW 16  /* closed loop: requests in flight per connection */
#define RING 16384 /* open loop: requests in flight per connection, at most */
#define MAX_CONNS 256
#define BUSY_EXTRA 200     /* extra peers in swarm 0 */
#define SMALL_SWARM 10     /* peers per swarm in the register phase */
#define LARGE_SWARM 10000u /* peers per swarm in the large phase */
#define TICK_MS 1          /* open loop: how often requests are sent */
#define START_MS 30000     /* a tracker or Redis must be up within this */
#define STOP_MS 5000       /* then SIGKILL */
#define MAX_TRACKERS 2     /* the curve's two-tracker configuration */

/* The load curve (--curve). */
#define CURVE_MAX_STEPS 32
#define CURVE_RATES "1000 2000 5000 8000 10000 12000 15000 20000 30000 40000"
#define CURVE_RATE_MAX 1000000ul   /* announces a second, per step */
#define CURVE_MAX_REQUESTS 4000000 /* signed ahead per step (~200 B each) */
#define CURVE_PEERS 50000          /* registered senders, by default */
#define CURVE_SECONDS 10           /* per step, by default */
/* The peer's wait for one tracker reply (TRACKER_CLIENT_TIMEOUT_MS): a
 * later reply counts as a timeout. */
#define CURVE_REPLY_TIMEOUT_MS 10000
/* Saturation: any one of these in a step makes it saturated. Any but the
 * p99 ends the configuration's curve; the p99 alone does in CURVE_SAT_STEPS
 * steps in a row. */
#define CURVE_P99_MS 100.0    /* p99 latency; ~1 ms below saturation */
#define CURVE_MAX_ERRORS 0.01 /* refusals and timeouts over requests */
#define CURVE_MIN_FOLLOW 0.90 /* replies a second over offered */
#define CURVE_SAT_STEPS 2
#define CURVE_BUSY_CORES 0.90 /* a process this busy is at its core's limit */

/* Targets. */
#define TARGET_CPU_RATIO 1.5
#define TARGET_REDIS_BYTES 250.0
#define TARGET_P95_MS 5.0
#define TARGET_RATE 5000.0

enum phase { PH_REGISTER, PH_LARGE, PH_LOOKUP, PH_MIX, PH_PACED, PH_CURVE };

struct bench;

struct lconn {
  uv_tcp_t tcp;
  struct bench *b;
  struct frame_decoder dec;
  uint64_t sent_at[RING]; /* FIFO of send (or due) times, ns */
  unsigned head, inflight;
};

struct bench {
  uv_loop_t loop;
  uv_timer_t pace, watchdog;
  struct lconn conns[MAX_CONNS];
  unsigned nconns, connected, next_conn;
  int ports[MAX_TRACKERS]; /* connection i goes to ports[i % ntrackers] */
  unsigned ntrackers;
  /* Current phase. */
  enum phase phase;
  uint64_t total, issued, done, errors;
  uint64_t *lat; /* ns, one per request of the phase */
  uint64_t *lag; /* open loop: ns from when a request was due to its send */
  uint64_t peers, small_swarms, mem_peers;
  uint64_t seq;
  uint64_t renewals; /* re-announces sent, over all phases */
  uint64_t t0;       /* the phase's start, ns */
  double rate;       /* open loop: requests a second */
  uint64_t last_due; /* open loop: when the last request was due, ns */
  int timed_out, failed;
  /* The curve: a step's requests, signed ahead (pre + off[i], off[i + 1]
   * - off[i] bytes, for connection conn[i]), and what became of them. */
  uint8_t *pre;
  size_t *off;
  uint16_t *conn;
  uint64_t unsent;        /* connection's ring full: never sent */
  uint64_t late;          /* replies after reply_timeout */
  uint64_t reply_timeout; /* ns */
  uint64_t last_reply;    /* ns */
  /* Senders' key pairs, derived once (the curve signs every step's
   * announces ahead and would otherwise derive each key again). */
  struct identity *ids;
  uint8_t *have_id;
};

/* What one phase measured. */
struct result {
  uint64_t n;
  double secs, rps, p50_us, p95_us, p99_us, cpu_us, redis_cpu_us;
  double offered;             /* open loop: requests sent a second */
  double lag95_us, lagmax_us; /* open loop: sends behind schedule */
  uint64_t errors;
};

/* What one store measured. */
struct store_run {
  const char *name;
  int ok;
  struct result reg, large, look, mix, paced;
  double rss_per_peer; /* memory store, register phase */
  long hwm_kb, rss0_kb;
  double redis_small, redis_large;   /* B per registered peer */
  double replay_small, replay_large; /* B per sender, replay windows */
};

/* The children of one store's run. */
struct target {
  char dir[PROC_PATH_MAX];
  struct proc tracker[MAX_TRACKERS];
  unsigned ntrackers;
  struct redis_srv redis;
  int have_redis;
  redisContext *rc; /* the bench's own connection, for INFO and SCAN */
};

static const char *arg_s(int argc, char **argv, const char *name,
                         const char *def) {
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], name) == 0) {
      return argv[i + 1];
    }
  }
  return def;
}

/* ---------------------------------------------------------------- proc */

static double proc_cpu_s(pid_t pid) {
  char path[64], buf[2048];
  if (pid <= 0) {
    return 0;
  }
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return -1;
  }
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* Fields after the command name in parentheses: utime is the 14th field
   * of the line, stime the 15th. */
  char *p = strrchr(buf, ')');
  if (p == NULL) {
    return -1;
  }
  unsigned long ut = 0, st = 0;
  int field = 2;
  for (char *tok = p + 2; *tok != '\0' && field < 15;) {
    field++;
    char *end = strchr(tok, ' ');
    if (field == 14) {
      ut = strtoul(tok, NULL, 10);
    } else if (field == 15) {
      st = strtoul(tok, NULL, 10);
    }
    if (end == NULL) {
      break;
    }
    tok = end + 1;
  }
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_status_kb(pid_t pid, const char *key) {
  char path[64], line[256];
  long v = -1;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return -1;
  }
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, key, strlen(key)) == 0) {
      v = strtol(line + strlen(key), NULL, 10);
    }
  }
  fclose(f);
  return v;
}

/* ------------------------------------------------------------- children */

static int find_port(const char *line, void *arg) {
  const char *lp = "listening on 127.0.0.1:";
  int *port = arg;
  if (strncmp(line, lp, strlen(lp)) == 0) {
    char *end = NULL;
    unsigned long v = strtoul(line + strlen(lp), &end, 10);
    if (end != line + strlen(lp) && v > 0 && v <= 65535) {
      *port = (int)v;
    }
  }
  return *port > 0;
}

/* The name of tracker i's files in the temp folder: tracker, tracker2. */
static void tracker_name(char *out, size_t cap, unsigned i) {
  if (i == 0) {
    snprintf(out, cap, "tracker");
  } else {
    snprintf(out, cap, "tracker%u", i + 1);
  }
}

/* Starts tracker i (of t->tracker) on store (NULL for memory) and waits for
 * its ready lines. Returns its port, or -1 (tracker i left not running). */
static int start_tracker(struct target *t, unsigned i, const char *bin,
                         const char *store) {
  char name[32], key[PROC_PATH_MAX + 48], log[PROC_PATH_MAX + 48];
  const char *argv[24];
  int n = 0, port = 0;
  struct proc *p = &t->tracker[i];
  tracker_name(name, sizeof(name), i);
  snprintf(key, sizeof(key), "%s/%s.key", t->dir, name);
  snprintf(log, sizeof(log), "%s/%s.log", t->dir, name);
  argv[n++] = bin;
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  argv[n++] = "--key";
  argv[n++] = key;
  argv[n++] = "--log-file";
  argv[n++] = log;
  argv[n++] = "--rate";
  argv[n++] = "1000000";
  argv[n++] = "--burst";
  argv[n++] = "1000000";
  argv[n++] = "--max-connections";
  argv[n++] = "4096";
  argv[n++] = "--max-per-address";
  argv[n++] = "4096";
  argv[n++] = "--interval";
  argv[n++] = "3600";
  if (store != NULL) {
    argv[n++] = "--store";
    argv[n++] = store;
  }
  argv[n] = NULL;
  if (proc_start(p, t->dir, name, argv) != 0) {
    return -1;
  }
  /* Ready once it has printed its port and, with Redis, its store has
   * connected (until then every request is refused). */
  uint64_t deadline = proc_now_ms() + START_MS;
  while (proc_now_ms() < deadline && proc_alive(p)) {
    if (port == 0) {
      (void)proc_each_line(p, 0, find_port, &port);
    }
    if (port > 0 && (store == NULL || tu_file_has(log, ": connected"))) {
      return port;
    }
    proc_pause_ms(20);
  }
  proc_dump(p);
  proc_kill(p);
  return -1;
}

static void stop_children(struct target *t) {
  if (t->rc != NULL) {
    redisFree(t->rc);
    t->rc = NULL;
  }
  /* SIGTERM to every tracker first, so they stop side by side. */
  for (unsigned i = 0; i < MAX_TRACKERS; i++) {
    if (t->tracker[i].pid != 0) {
      proc_signal(&t->tracker[i], SIGTERM);
    }
  }
  for (unsigned i = 0; i < MAX_TRACKERS; i++) {
    if (t->tracker[i].pid != 0 && proc_wait(&t->tracker[i], STOP_MS) < 0) {
      proc_kill(&t->tracker[i]);
    }
  }
  if (t->have_redis) {
    redis_stop(&t->redis); /* SIGTERM, SIGKILL after 5 s, reaped */
    t->have_redis = 0;
  }
}

/* Redis's used_memory, or -1. */
static long long redis_used_memory(redisContext *c) {
  long long v = -1;
  redisReply *r = redisCommand(c, "INFO memory");
  if (r != NULL && r->type == REDIS_REPLY_STRING) {
    const char *p = strstr(r->str, "used_memory:");
    if (p != NULL) {
      v = strtoll(p + strlen("used_memory:"), NULL, 10);
    }
  }
  freeReplyObject(r);
  return v;
}

/* Deletes the replay windows (sh:r{PK}); returns how many went, or -1. */
static long long redis_drop_replay(redisContext *c) {
  char cursor[32] = "0";
  long long gone = 0;
  do {
    redisReply *r = redisCommand(c, "SCAN %s MATCH sh:r* COUNT 1000", cursor);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
      freeReplyObject(r);
      return -1;
    }
    snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
    const redisReply *keys = r->element[1];
    if (keys->elements > 0) {
      const char **argv = malloc((keys->elements + 1) * sizeof(*argv));
      size_t *lens = malloc((keys->elements + 1) * sizeof(*lens));
      if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        freeReplyObject(r);
        return -1;
      }
      argv[0] = "DEL";
      lens[0] = 3;
      for (size_t i = 0; i < keys->elements; i++) {
        argv[i + 1] = keys->element[i]->str;
        lens[i + 1] = keys->element[i]->len;
      }
      redisReply *d = redisCommandArgv(c, (int)keys->elements + 1, argv, lens);
      if (d != NULL && d->type == REDIS_REPLY_INTEGER) {
        gone += d->integer;
      }
      freeReplyObject(d);
      free(argv);
      free(lens);
    }
    freeReplyObject(r);
  } while (strcmp(cursor, "0") != 0);
  return gone;
}

/* ------------------------------------------------------------ requests */

static void make_key(struct identity *id, uint64_t i) {
  uint8_t seed[32] = {0};
  for (int k = 0; k < 8; k++) {
    seed[k] = (uint8_t)(i >> (8 * k));
  }
  seed[8] = 0xb7;
  identity_from_seed(id, seed);
}

static void content_of(uint8_t c[32], uint64_t swarm) {
  memset(c, 0, 32);
  for (int k = 0; k < 8; k++) {
    c[k] = (uint8_t)(swarm >> (8 * k));
  }
  c[31] = 0x5a;
}

/* Sender who's key pair into id: derived once and kept when the bench has
 * a key cache (the curve), else derived now. */
static void key_of(struct bench *b, uint64_t who, struct identity *id) {
  if (b->ids == NULL || who >= b->peers) {
    make_key(id, who);
    return;
  }
  if (!b->have_id[who]) {
    make_key(&b->ids[who], who);
    b->have_id[who] = 1;
  }
  *id = b->ids[who];
}

/* The swarm a peer of the register phase announced. */
static uint64_t swarm_of(const struct bench *b, uint64_t who) {
  return who < BUSY_EXTRA ? 0 : who % b->small_swarms;
}

/* Appends sender who's announce of swarm, signed with id, unframed. */
static void seal_announce(struct buf *out, const struct identity *id,
                          uint64_t who, uint64_t swarm, int started,
                          uint64_t seq) {
  struct tmsg_announce a;
  uint8_t storage[128];
  struct buf p;
  memset(&a, 0, sizeof(a));
  a.port = (uint16_t)(10000 + who % 50000);
  a.event = started ? TMSG_EVENT_STARTED : TMSG_EVENT_PERIODIC;
  a.count = 1;
  content_of(a.items[0].content, swarm);
  a.items[0].role = who % 4 == 0 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING;
  buf_init_fixed(&p, storage, sizeof(storage));
  tmsg_announce_encode(&p, &a);
  envelope_seal(out, ENVELOPE_TRACKER_REQUEST, TMSG_ANNOUNCE, id,
                clock_wall_ms(), seq, p.data, p.len);
}

/* Appends one framed request for request number i of the phase. */
static void build_request(struct bench *b, uint64_t i, struct buf *out) {
  uint8_t hdr[FRAME_HEADER_BYTES] = {0};
  size_t start = out->len;
  int announce = 1, started = 0;
  uint64_t who = 0, swarm = 0;

  switch (b->phase) {
  case PH_REGISTER:
    started = 1;
    who = i;
    swarm = swarm_of(b, who);
    break;
  case PH_LARGE:
    /* New keys after the register phase's, new swarms after its. */
    started = 1;
    who = b->peers + i;
    swarm = b->small_swarms + i / LARGE_SWARM;
    break;
  case PH_LOOKUP:
    announce = 0;
    break;
  case PH_MIX:
  case PH_PACED:
  case PH_CURVE:
    /* Re-announces go round the registered peers in turn: one sender's
     * next request comes --peers announces later, never while its last
     * is in flight, which could overtake it (a replay refusal). */
    announce = b->phase != PH_MIX || randombytes_uniform(100) < 20;
    if (announce) {
      who = b->renewals++ % b->peers;
      swarm = swarm_of(b, who);
    } else {
      swarm = randombytes_uniform((uint32_t)b->small_swarms);
    }
    break;
  }
  buf_add(out, hdr, sizeof(hdr));
  if (announce) {
    struct identity id;
    key_of(b, who, &id);
    seal_announce(out, &id, who, swarm, started, b->seq++);
    identity_close(&id);
  } else {
    struct tmsg_lookup l;
    uint8_t storage[128];
    struct buf p;
    memset(&l, 0, sizeof(l));
    content_of(l.content, swarm);
    l.want = 50;
    buf_init_fixed(&p, storage, sizeof(storage));
    tmsg_lookup_encode(&p, &l);
    tmsg_query_encode(out, TMSG_LOOKUP, i, p.data, p.len);
  }
  frame_header(out->data + start, out->len - start - FRAME_HEADER_BYTES);
}

/* Ends the phase as failed: the loop stops, the run stops its children. */
static void fail(struct bench *b, const char *what, int err) {
  fprintf(stderr, "tracker-load: phase %d: %s%s%s\n", (int)b->phase, what,
          err != 0 ? ": " : "", err != 0 ? uv_strerror(err) : "");
  b->failed = 1;
  uv_stop(&b->loop);
}

static void on_write(uv_write_t *req, int status) {
  struct bench *b = req->data;
  if (status != 0 && status != UV_ECANCELED && !b->failed) {
    fail(b, "write", status);
  }
  free(req);
}

/* Writes a copy of len bytes at p, so p may go at once. */
static void send_bytes(struct lconn *c, const uint8_t *p, size_t len) {
  uv_write_t *req = malloc(sizeof(*req) + len);
  if (req == NULL) {
    fail(c->b, "out of memory", 0);
    return;
  }
  req->data = c->b;
  memcpy(req + 1, p, len);
  uv_buf_t ub = uv_buf_init((char *)(req + 1), (unsigned)len);
  uv_write(req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
}

static void send_buf(struct lconn *c, struct buf *out) {
  send_bytes(c, out->data, out->len);
}

/* Closed loop: tops the connection up to WINDOW requests in flight. */
static void fill(struct lconn *c) {
  struct bench *b = c->b;
  struct buf out;
  if (b->phase == PH_PACED || b->phase == PH_CURVE || b->issued >= b->total ||
      c->inflight >= WINDOW) {
    return;
  }
  buf_init(&out, 1 << 20);
  while (b->issued < b->total && c->inflight < WINDOW) {
    build_request(b, b->issued++, &out);
    c->sent_at[(c->head + c->inflight) % RING] = uv_hrtime();
    c->inflight++;
  }
  send_buf(c, &out);
  buf_free(&out);
}

/* The curve's open loop: sends the signed-ahead requests due by now, each
 * on its sender's connection. A request whose connection already has RING
 * in flight is not sent and counts as unanswered. */
static void pace_curve(struct bench *b, uint64_t due) {
  while (b->issued < due) {
    uint64_t i = b->issued++;
    struct lconn *c = &b->conns[b->conn[i]];
    uint64_t at = b->t0 + (uint64_t)((double)i * 1e9 / b->rate);
    b->last_due = at;
    if (c->inflight == RING) {
      b->unsent++;
      continue;
    }
    uint64_t sent = uv_hrtime();
    b->lag[i] = sent > at ? sent - at : 0;
    c->sent_at[(c->head + c->inflight) % RING] = sent;
    c->inflight++;
    send_bytes(c, b->pre + b->off[i], b->off[i + 1] - b->off[i]);
  }
  if (b->done + b->unsent == b->total) {
    uv_stop(&b->loop); /* only when none was sent: on_read stops it */
  }
}

/* Open loop: sends every request due by now, each on the next connection,
 * noting how late it went. */
static void on_pace(uv_timer_t *h) {
  struct bench *b = h->data;
  uint64_t now = uv_hrtime();
  uint64_t due = (uint64_t)((double)(now - b->t0) * b->rate / 1e9);
  if (due > b->total) {
    due = b->total;
  }
  if (b->phase == PH_CURVE) {
    pace_curve(b, due);
    if (b->issued == b->total) {
      uv_timer_stop(h);
    }
    return;
  }
  while (b->issued < due) {
    struct lconn *c = &b->conns[b->next_conn];
    struct buf out;
    b->next_conn = (b->next_conn + 1) % b->nconns;
    if (c->inflight == RING) {
      fprintf(stderr, "tracker-load: %u requests unanswered on a connection\n",
              RING);
      b->failed = 1;
      uv_stop(&b->loop);
      return;
    }
    buf_init(&out, 4096);
    uint64_t at = b->t0 + (uint64_t)((double)b->issued * 1e9 / b->rate);
    build_request(b, b->issued, &out);
    uint64_t sent = uv_hrtime();
    b->lag[b->issued++] = sent > at ? sent - at : 0;
    c->sent_at[(c->head + c->inflight) % RING] = sent;
    c->inflight++;
    b->last_due = at;
    send_buf(c, &out);
    buf_free(&out);
  }
  if (b->issued == b->total) {
    uv_timer_stop(h);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char space[1 << 16];
  (void)h;
  (void)hint;
  buf->base = space;
  buf->len = sizeof(space);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *ub) {
  struct lconn *c = s->data;
  struct bench *b = c->b;
  const uint8_t *p = (const uint8_t *)ub->base;
  size_t left = n > 0 ? (size_t)n : 0;
  if (n < 0) {
    fail(b, "the tracker closed a connection", (int)n);
    uv_read_stop(s);
    return;
  }
  while (left > 0) {
    const uint8_t *f;
    size_t flen, used;
    int r = frame_decoder_next(&c->dec, p, left, &used, &f, &flen);
    p += used;
    left -= used;
    if (r < 0) {
      fail(b, "bad frame from the tracker", 0);
      return;
    }
    if (r == 0) {
      break;
    }
    if (c->inflight == 0 || b->lat == NULL || b->done == b->total) {
      /* The last is a reply to an earlier phase's request that came after
       * that phase gave up waiting. */
      fail(b, "a reply nobody asked for", 0);
      return;
    }
    uint64_t now = uv_hrtime();
    uint64_t at = c->sent_at[c->head];
    uint64_t lat = now > at ? now - at : 0;
    b->lat[b->done++] = lat;
    b->last_reply = now;
    /* A late reply is a timeout, whatever it says; else the reply type is
     * byte 2 of the envelope. */
    if (b->reply_timeout != 0 && lat > b->reply_timeout) {
      b->late++;
    } else if (flen < 3 || f[2] == TMSG_ERROR) {
      b->errors++;
    }
    c->head = (c->head + 1) % RING;
    c->inflight--;
  }
  if (b->done + b->unsent == b->total) {
    uv_stop(&b->loop);
    return;
  }
  fill(c);
}

static void on_connect(uv_connect_t *req, int status) {
  struct lconn *c = req->data;
  free(req);
  if (status != 0) {
    fail(c->b, "connect", status);
    return;
  }
  c->b->connected++;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (c->b->connected == c->b->nconns) {
    uv_stop(&c->b->loop);
  }
}

static void on_watchdog(uv_timer_t *h) {
  struct bench *b = h->data;
  b->timed_out = 1;
  uv_stop(&b->loop);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Runs one phase of total requests against the tracker (and Redis, when
 * redis_pid is not 0) within timeout_ms. */
static struct result run_phase(struct bench *b, pid_t pid, pid_t redis_pid,
                               enum phase phase, uint64_t total,
                               uint64_t timeout_ms) {
  struct result r;
  memset(&r, 0, sizeof(r));
  b->phase = phase;
  b->total = total;
  b->issued = b->done = b->errors = b->unsent = b->late = 0;
  b->lat = calloc(total, sizeof(*b->lat));
  b->lag = calloc(total, sizeof(*b->lag));
  if (b->lat == NULL || b->lag == NULL) {
    free(b->lat);
    free(b->lag);
    b->lat = b->lag = NULL;
    b->failed = 1;
    return r;
  }
  double cpu0 = proc_cpu_s(pid), rcpu0 = proc_cpu_s(redis_pid);
  uv_update_time(&b->loop);
  b->t0 = uv_hrtime();
  uv_timer_start(&b->watchdog, on_watchdog, timeout_ms, 0);
  if (phase == PH_PACED) {
    uv_timer_start(&b->pace, on_pace, TICK_MS, TICK_MS);
  } else {
    for (unsigned i = 0; i < b->nconns; i++) {
      fill(&b->conns[i]);
    }
  }
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_timer_stop(&b->watchdog);
  uv_timer_stop(&b->pace);
  r.secs = (double)(uv_hrtime() - b->t0) / 1e9;
  double cpu = proc_cpu_s(pid) - cpu0;
  double rcpu = proc_cpu_s(redis_pid) - rcpu0;
  if (b->failed || b->timed_out || b->done == 0) {
    fprintf(stderr, "tracker-load: phase %d: %llu of %llu replies in %.0f s\n",
            (int)phase, (unsigned long long)b->done, (unsigned long long)total,
            r.secs);
    b->failed = 1;
    free(b->lat);
    free(b->lag);
    b->lat = b->lag = NULL;
    return r;
  }
  r.n = b->done;
  qsort(b->lat, r.n, sizeof(*b->lat), cmp_u64);
  r.rps = (double)r.n / r.secs;
  r.p50_us = (double)b->lat[r.n / 2] / 1e3;
  r.p95_us = (double)b->lat[r.n * 95 / 100] / 1e3;
  r.p99_us = (double)b->lat[r.n * 99 / 100] / 1e3;
  r.cpu_us = cpu * 1e6 / (double)r.n;
  r.redis_cpu_us = rcpu * 1e6 / (double)r.n;
  r.errors = b->errors;
  if (phase == PH_PACED) {
    double span = (double)(b->last_due - b->t0) / 1e9;
    r.offered = span > 0 ? (double)(total - 1) / span : 0;
    qsort(b->lag, b->issued, sizeof(*b->lag), cmp_u64);
    r.lag95_us = (double)b->lag[b->issued * 95 / 100] / 1e3;
    r.lagmax_us = (double)b->lag[b->issued - 1] / 1e3;
  }
  if (b->errors != 0) {
    fprintf(stderr, "tracker-load: phase %d: %llu error replies\n", (int)phase,
            (unsigned long long)b->errors);
  }
  free(b->lat);
  free(b->lag);
  b->lat = b->lag = NULL;
  return r;
}

/* One Ed25519 verify plus one sign over a message of len bytes (at most
 * 1024), the best of three runs of 2 000. */
static double crypto_cost_us(size_t len) {
  struct identity id;
  uint8_t msg[1024], sig[crypto_sign_BYTES];
  const int n = 2000;
  double best = 0;
  if (len > sizeof(msg)) {
    len = sizeof(msg);
  }
  make_key(&id, 424242);
  randombytes_buf(msg, sizeof(msg));
  for (int run = 0; run < 3; run++) {
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < n; i++) {
      msg[0] = (uint8_t)i;
      crypto_sign_detached(sig, NULL, msg, len, id.sk);
      if (crypto_sign_verify_detached(sig, msg, len, id.pk) != 0) {
        abort(); /* our own signature: a broken libsodium */
      }
    }
    double us = (double)(uv_hrtime() - t0) / 1e3 / n;
    if (run == 0 || us < best) {
      best = us;
    }
  }
  identity_close(&id);
  return best;
}

/* The bytes an announce's signature covers, as the bench sends it: the
 * class's domain string with its NUL, the envelope header and the
 * announce payload. */
static size_t announce_signed_bytes(void) {
  struct identity id;
  struct buf out;
  make_key(&id, 1);
  buf_init(&out, 4096);
  seal_announce(&out, &id, 1, 1, 0, 1);
  identity_close(&id);
  size_t len = out.len - ENVELOPE_SIG_BYTES +
               strlen(envelope_domain(ENVELOPE_TRACKER_REQUEST)) + 1;
  buf_free(&out);
  return len;
}

static void close_cb(uv_handle_t *h) {
  (void)h;
}

/* Closes the connections and timers and runs the loop until they are. */
static void close_loop(struct bench *b) {
  for (unsigned i = 0; i < b->nconns; i++) {
    uv_close((uv_handle_t *)&b->conns[i].tcp, close_cb);
  }
  uv_close((uv_handle_t *)&b->pace, close_cb);
  uv_close((uv_handle_t *)&b->watchdog, close_cb);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_loop_close(&b->loop);
}

/* Starts t's own redis-server in t->dir and points *store at it. Returns
 * 0, or -1 with a message. */
static int target_redis(struct target *t, const char **store) {
  if (!redis_available(0) ||
      redis_start(&t->redis, t->dir, "redis", 0, 0) != 0) {
    fprintf(stderr, "tracker-load: could not start redis-server\n");
    return -1;
  }
  t->have_redis = 1;
  *store = t->redis.url;
  return 0;
}

struct options {
  const char *bin;
  uint64_t peers, mem_peers, lookups, mix, paced;
  double rate;
  unsigned conns;
  uint64_t timeout_ms;
};

/* Used memory per peer over a register phase: *reg without the replay
 * windows, *replay theirs per sender. */
static int redis_phase_memory(redisContext *c, long long before, uint64_t n,
                              double *reg, double *replay) {
  long long with = redis_used_memory(c);
  long long gone = redis_drop_replay(c);
  long long without = redis_used_memory(c);
  if (before < 0 || with < 0 || gone < 0 || without < 0) {
    fprintf(stderr, "tracker-load: could not read Redis's memory\n");
    return -1;
  }
  *reg = (double)(without - before) / (double)n;
  *replay = gone > 0 ? (double)(with - without) / (double)gone : 0;
  return 0;
}

/* Starts b's loop and its timers and connects conns connections, spread
 * over b->ports. Returns 0, or -1 with the loop left for close_loop. */
static int open_loop(struct bench *b, unsigned conns) {
  uv_loop_init(&b->loop);
  uv_timer_init(&b->loop, &b->pace);
  uv_timer_init(&b->loop, &b->watchdog);
  b->pace.data = b->watchdog.data = b;
  b->nconns = conns;
  for (unsigned i = 0; i < conns; i++) {
    struct lconn *c = &b->conns[i];
    struct sockaddr_in sa;
    uv_connect_t *req = malloc(sizeof(*req));
    if (req == NULL) {
      fprintf(stderr, "tracker-load: out of memory\n");
      b->nconns = i; /* the ones made so far, to close */
      b->failed = 1;
      break;
    }
    c->b = b;
    frame_decoder_init(&c->dec, FRAME_MAX_DEFAULT);
    uv_tcp_init(&b->loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    req->data = c;
    uv_ip4_addr("127.0.0.1", b->ports[i % b->ntrackers], &sa);
    uv_tcp_connect(req, &c->tcp, (const struct sockaddr *)&sa, on_connect);
  }
  if (!b->failed) {
    uv_timer_start(&b->watchdog, on_watchdog, START_MS, 0);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&b->watchdog);
  }
  if (b->timed_out || b->failed) {
    fprintf(stderr, "tracker-load: could not connect to the tracker\n");
    return -1;
  }
  return 0;
}

/* Runs every phase against one store; fills run. Returns 0 or -1. */
static int run_store(const struct options *o, int redis,
                     struct store_run *run) {
  static struct bench b;
  struct target t;
  const char *store = NULL;
  long long mem0 = -1;
  int rc = -1;

  memset(&b, 0, sizeof(b));
  memset(&t, 0, sizeof(t));
  run->name = redis ? "redis" : "memory";
  b.peers = o->peers;
  b.mem_peers = o->mem_peers;
  b.small_swarms = o->peers / SMALL_SWARM > 0 ? o->peers / SMALL_SWARM : 1;
  b.seq = envelope_seq_start(clock_wall_ms());
  b.rate = o->rate;
  tu_tmpdir(t.dir, sizeof(t.dir));
  if (redis) {
    if (target_redis(&t, &store) != 0) {
      goto out;
    }
    struct timeval tv = {10, 0};
    t.rc = redisConnectUnixWithTimeout(t.redis.sock, tv);
    if (t.rc == NULL || t.rc->err != 0) {
      fprintf(stderr, "tracker-load: could not connect to redis-server\n");
      goto out;
    }
    redisSetTimeout(t.rc, tv);
  }
  b.ntrackers = 1;
  b.ports[0] = start_tracker(&t, 0, o->bin, store);
  if (b.ports[0] < 0) {
    fprintf(stderr, "tracker-load: could not start %s\n", o->bin);
    goto out;
  }
  pid_t pid = t.tracker[0].pid;
  pid_t rpid = redis ? t.redis.p.pid : 0;
  run->rss0_kb = proc_status_kb(pid, "VmRSS:");

  if (open_loop(&b, o->conns) != 0) {
    goto out_loop;
  }

  if (redis) {
    mem0 = redis_used_memory(t.rc);
  }
  run->reg = run_phase(&b, pid, rpid, PH_REGISTER, o->peers, o->timeout_ms);
  if (b.failed) {
    goto out_loop;
  }
  long rss1 = proc_status_kb(pid, "VmRSS:");
  run->rss_per_peer = (double)(rss1 - run->rss0_kb) * 1024.0 / (double)o->peers;
  if (redis && redis_phase_memory(t.rc, mem0, o->peers, &run->redis_small,
                                  &run->replay_small) != 0) {
    goto out_loop;
  }
  if (redis) {
    mem0 = redis_used_memory(t.rc);
  }
  run->large = run_phase(&b, pid, rpid, PH_LARGE, o->mem_peers, o->timeout_ms);
  if (b.failed) {
    goto out_loop;
  }
  if (redis && redis_phase_memory(t.rc, mem0, o->mem_peers, &run->redis_large,
                                  &run->replay_large) != 0) {
    goto out_loop;
  }
  run->look = run_phase(&b, pid, rpid, PH_LOOKUP, o->lookups, o->timeout_ms);
  if (b.failed) {
    goto out_loop;
  }
  run->mix = run_phase(&b, pid, rpid, PH_MIX, o->mix, o->timeout_ms);
  if (b.failed) {
    goto out_loop;
  }
  run->paced = run_phase(&b, pid, rpid, PH_PACED, o->paced, o->timeout_ms);
  if (b.failed) {
    goto out_loop;
  }
  run->hwm_kb = proc_status_kb(pid, "VmHWM:");
  run->ok = 1;
  rc = 0;

out_loop:
  close_loop(&b);
  if (rc != 0) {
    char cmd[PROC_PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "tail -n 20 '%s/tracker.log' >&2", t.dir);
    if (system(cmd) != 0) {
      fprintf(stderr, "tracker-load: no tracker log\n");
    }
  }
out:
  stop_children(&t);
  tu_rmtree(t.dir);
  return rc;
}

/* ---------------------------------------------------------------- curve */

/* One step of the load curve. CPU figures are in cores: CPU seconds a
 * second over the step, from its first send to its last reply. */
struct step {
  double asked, offered, answered; /* a second */
  double p50_ms, p95_ms, p99_ms;   /* over the replies */
  double lag95_ms;                 /* sends behind schedule */
  uint64_t n, replies, refused, late, lost;
  double errors; /* (refused + late + lost) / n */
  double secs;
  double tracker[MAX_TRACKERS], trackers, redis, self, machine;
  double niced;          /* the machine's CPU in niced processes (user mode) */
  double presign_s;      /* signing the step's announces, before it */
  const char *saturated; /* why the step counts as saturated, or NULL */
  int queueing;          /* saturated by more than p99: the queue grew */
};

/* One configuration's curve. */
struct curve {
  const char *name, *what;
  unsigned ntrackers;
  int redis;
  uint64_t registered;
  double reg_rps;
  struct step steps[CURVE_MAX_STEPS];
  unsigned nsteps;
  int ok; /* ran to saturation or to the last rate */
};

struct curve_opts {
  unsigned long rates[CURVE_MAX_STEPS];
  size_t nrates;
  uint64_t seconds, reply_timeout_ms;
  const char *out_dir; /* NULL: no data files */
  long ncpu;
  int niced; /* the bench (and so its children) runs niced */
};

/* CPU seconds the whole machine has been busy, every core and process
 * (/proc/stat's first line less idle and iowait), or -1; *niced gets the
 * part spent by niced processes in user mode. */
static double machine_busy_s(double *niced) {
  char line[512];
  unsigned long long v[8] = {0}, busy = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) {
    return -1;
  }
  char *got = fgets(line, sizeof(line), f);
  fclose(f);
  if (got == NULL || strncmp(line, "cpu ", 4) != 0) {
    return -1;
  }
  /* user nice system idle iowait irq softirq steal */
  const char *p = line + 4;
  for (int i = 0; i < 8; i++) {
    char *end;
    errno = 0;
    v[i] = strtoull(p, &end, 10);
    if (end == p || errno != 0) {
      return -1;
    }
    p = end;
  }
  for (int i = 0; i < 8; i++) {
    busy += i == 3 || i == 4 ? 0 : v[i];
  }
  *niced = (double)v[1] / (double)sysconf(_SC_CLK_TCK);
  return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

/* The bench's own CPU seconds (one thread). */
static double self_cpu_s(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) {
    return -1;
  }
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void curve_free_pre(struct bench *b) {
  free(b->pre);
  free(b->off);
  free(b->conn);
  b->pre = NULL;
  b->off = NULL;
  b->conn = NULL;
}

/* Signs the step's total re-announces ahead into b->pre, each for its
 * sender's connection (sender % connections, so a sender's announces stay
 * in order). Returns 0 or -1. */
static int curve_prebuild(struct bench *b, uint64_t total) {
  struct buf out;
  size_t len;
  b->phase = PH_CURVE;
  b->off = malloc((total + 1) * sizeof(*b->off));
  b->conn = malloc(total * sizeof(*b->conn));
  if (b->off == NULL || b->conn == NULL) {
    curve_free_pre(b);
    return -1;
  }
  buf_init(&out, (size_t)total * 512);
  for (uint64_t i = 0; i < total; i++) {
    uint64_t who = b->renewals % b->peers; /* build_request's sender */
    b->off[i] = out.len;
    b->conn[i] = (uint16_t)(who % b->nconns);
    build_request(b, i, &out);
  }
  if (buf_err(&out) != 0) {
    buf_free(&out);
    curve_free_pre(b);
    return -1;
  }
  b->off[total] = out.len;
  b->pre = buf_steal(&out, &len);
  return 0;
}

static double pct_ms(const uint64_t *sorted, uint64_t n, unsigned pct) {
  return n == 0 ? 0 : (double)sorted[n * pct / 100] / 1e6;
}

/* Why a measured step counts as saturated, or NULL. */
static const char *curve_verdict(const struct step *st) {
  if (st->lost > 0) {
    return "requests unanswered";
  }
  if (st->errors > CURVE_MAX_ERRORS) {
    return "errors";
  }
  if (st->offered < CURVE_MIN_FOLLOW * st->asked) {
    return "the bench could not offer the rate";
  }
  if (st->answered < CURVE_MIN_FOLLOW * st->offered) {
    return "replies fell behind";
  }
  if (st->p99_ms > CURVE_P99_MS) {
    return "p99";
  }
  return NULL;
}

/* Runs one step at rate a second for seconds against t's trackers (and
 * Redis); fills st. Returns 0, or -1 when the bench itself failed. */
static int curve_step(struct bench *b, const struct target *t, double rate,
                      const struct curve_opts *co, struct step *st) {
  uint64_t total = (uint64_t)(rate * (double)co->seconds);
  double cpu0[MAX_TRACKERS], rcpu0, self0, mach0, nice0, nice1;
  memset(st, 0, sizeof(*st));
  st->asked = rate;
  st->n = total;

  double s0 = benchutil_now_s();
  if (curve_prebuild(b, total) != 0) {
    fprintf(stderr, "tracker-load: out of memory signing %llu announces\n",
            (unsigned long long)total);
    return -1;
  }
  st->presign_s = benchutil_now_s() - s0;
  b->rate = rate;
  b->total = total;
  b->issued = b->done = b->errors = b->unsent = b->late = 0;
  b->last_due = b->last_reply = 0;
  b->timed_out = 0;
  b->lat = calloc(total, sizeof(*b->lat));
  b->lag = calloc(total, sizeof(*b->lag));
  if (b->lat == NULL || b->lag == NULL) {
    fprintf(stderr, "tracker-load: out of memory\n");
    free(b->lat);
    free(b->lag);
    b->lat = b->lag = NULL;
    curve_free_pre(b);
    return -1;
  }

  for (unsigned i = 0; i < t->ntrackers; i++) {
    cpu0[i] = proc_cpu_s(t->tracker[i].pid);
  }
  rcpu0 = t->have_redis ? proc_cpu_s(t->redis.p.pid) : 0;
  self0 = self_cpu_s();
  mach0 = machine_busy_s(&nice0);
  /* The loop's clock stopped when it last ran, before the signing: the
   * timers count from now. */
  uv_update_time(&b->loop);
  b->t0 = uv_hrtime();
  uv_timer_start(&b->watchdog, on_watchdog,
                 co->seconds * 1000 + co->reply_timeout_ms, 0);
  uv_timer_start(&b->pace, on_pace, TICK_MS, TICK_MS);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_timer_stop(&b->watchdog);
  uv_timer_stop(&b->pace);
  uint64_t t1 = uv_hrtime();
  st->secs = (double)(t1 - b->t0) / 1e9;
  for (unsigned i = 0; i < t->ntrackers; i++) {
    st->tracker[i] = (proc_cpu_s(t->tracker[i].pid) - cpu0[i]) / st->secs;
    st->trackers += st->tracker[i];
  }
  st->redis =
      t->have_redis ? (proc_cpu_s(t->redis.p.pid) - rcpu0) / st->secs : 0;
  st->self = (self_cpu_s() - self0) / st->secs;
  st->machine = (machine_busy_s(&nice1) - mach0) / st->secs;
  st->niced = (nice1 - nice0) / st->secs;

  int rc = b->failed ? -1 : 0;
  if (rc == 0) {
    st->replies = b->done;
    st->refused = b->errors;
    st->late = b->late;
    st->lost = total - b->done; /* never sent, or no reply in time */
    st->errors = (double)(st->refused + st->late + st->lost) / (double)total;
    double span = (double)(b->last_due - b->t0) / 1e9;
    st->offered = span > 0 ? (double)(b->issued - 1) / span : 0;
    st->answered = (double)b->done / st->secs;
    qsort(b->lat, b->done, sizeof(*b->lat), cmp_u64);
    st->p50_ms = pct_ms(b->lat, b->done, 50);
    st->p95_ms = pct_ms(b->lat, b->done, 95);
    st->p99_ms = pct_ms(b->lat, b->done, 99);
    /* Unsent requests have no lag: sort what was recorded, zeros and all. */
    qsort(b->lag, b->issued, sizeof(*b->lag), cmp_u64);
    st->lag95_ms = pct_ms(b->lag, b->issued, 95);
    st->saturated = curve_verdict(st);
    st->queueing = st->saturated != NULL && strcmp(st->saturated, "p99") != 0;
  }
  free(b->lat);
  free(b->lag);
  b->lat = b->lag = NULL;
  curve_free_pre(b);
  return rc;
}

/* The cores the machine gave to work that competes with the bench's
 * processes: all of its busy time, less niced processes' when the bench
 * itself is not niced (they yield to it). */
static double machine_competing(const struct step *st,
                                const struct curve_opts *co) {
  return co->niced ? st->machine : st->machine - st->niced;
}

/* What held a step back, from the CPU of each process and the machine:
 * into out (cap bytes). */
static void curve_limit(const struct step *st, unsigned ntrackers,
                        const struct curve_opts *co, char *out, size_t cap) {
  size_t n = 0;
  long ncpu = co->ncpu;
  out[0] = '\0';
  for (unsigned i = 0; i < ntrackers && n < cap; i++) {
    if (st->tracker[i] >= CURVE_BUSY_CORES) {
      n += (size_t)snprintf(out + n, cap - n, "%stracker %u's core",
                            n > 0 ? ", " : "", i + 1);
    }
  }
  if (n < cap && st->redis >= CURVE_BUSY_CORES) {
    n += (size_t)snprintf(out + n, cap - n, "%sredis-server's core",
                          n > 0 ? ", " : "");
  }
  if (n < cap && st->self >= CURVE_BUSY_CORES) {
    n += (size_t)snprintf(out + n, cap - n, "%sthe bench's core",
                          n > 0 ? ", " : "");
  }
  if (n < cap && machine_competing(st, co) >= CURVE_BUSY_CORES * (double)ncpu) {
    n += (size_t)snprintf(out + n, cap - n, "%sthe machine (all %ld cores)",
                          n > 0 ? ", " : "", ncpu);
  }
  if (n == 0) {
    snprintf(out, cap, "no core full");
  }
}

static void curve_print_head(const struct curve *cv, const struct options *o,
                             const struct curve_opts *co) {
  printf("\n%s: %s; %llu peers registered at %.0f/s; %u connections; "
         "%llu s a step\n",
         cv->name, cv->what, (unsigned long long)cv->registered, cv->reg_rps,
         o->conns, (unsigned long long)co->seconds);
  printf("  %7s %8s %8s %8s %8s %8s %7s %7s | %-11s %5s %5s %5s %5s | %6s "
         "%7s\n",
         "asked/s", "offered", "answered", "p50 ms", "p95 ms", "p99 ms",
         "errors", "lag ms", "tracker", "redis", "bench", "box", "nice",
         "us/req", "req/core");
  fflush(stdout);
}

static void curve_print_step(const struct curve *cv, const struct step *st,
                             const struct curve_opts *co) {
  char trk[32], lim[128];
  if (cv->ntrackers == 2) {
    snprintf(trk, sizeof(trk), "%.2f+%.2f", st->tracker[0], st->tracker[1]);
  } else {
    snprintf(trk, sizeof(trk), "%.2f", st->tracker[0]);
  }
  double us =
      st->replies > 0 ? st->trackers * st->secs * 1e6 / (double)st->replies : 0;
  printf("  %7.0f %8.0f %8.0f %8.2f %8.2f %8.2f %6.2f%% %7.2f | %-11s "
         "%5.2f %5.2f %5.2f %5.2f | %6.1f %7.0f",
         st->asked, st->offered, st->answered, st->p50_ms, st->p95_ms,
         st->p99_ms, 100.0 * st->errors, st->lag95_ms, trk, st->redis, st->self,
         st->machine, st->niced, us, us > 0 ? 1e6 / us : 0);
  if (st->saturated != NULL) {
    curve_limit(st, cv->ntrackers, co, lim, sizeof(lim));
    printf("  SATURATED (%s; busy: %s)", st->saturated, lim);
  }
  if (st->refused + st->late + st->lost > 0) {
    printf("  [refused %llu, late %llu, unanswered %llu of %llu]",
           (unsigned long long)st->refused, (unsigned long long)st->late,
           (unsigned long long)st->lost, (unsigned long long)st->n);
  }
  printf("\n");
  fflush(stdout);
}

/* Writes DIR/NAME.dat for bench/tracker-curve.gp. Returns 0 or -1. */
static int curve_write_dat(const struct curve *cv, const char *dir) {
  char path[PROC_PATH_MAX];
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "tracker-load: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  snprintf(path, sizeof(path), "%s/%s.dat", dir, cv->name);
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "tracker-load: %s: %s\n", path, strerror(errno));
    return -1;
  }
  fprintf(f, "# bench/tracker-load --curve: %s (%s)\n", cv->name, cv->what);
  fprintf(f, "# asked offered answered p50_ms p95_ms p99_ms errors_pct "
             "tracker_cores redis_cores bench_cores machine_cores "
             "saturated niced_cores\n");
  for (unsigned i = 0; i < cv->nsteps; i++) {
    const struct step *st = &cv->steps[i];
    fprintf(f,
            "%.0f %.1f %.1f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %d %.3f\n",
            st->asked, st->offered, st->answered, st->p50_ms, st->p95_ms,
            st->p99_ms, 100.0 * st->errors, st->trackers, st->redis, st->self,
            st->machine, st->saturated != NULL, st->niced);
  }
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    fprintf(stderr, "tracker-load: could not write %s\n", path);
    return -1;
  }
  return 0;
}

/* Runs one configuration's curve: its Redis (when cv->redis), its
 * trackers, the register phase, then the steps until one saturates. Fills
 * cv and prints each step as it ends. Returns 0 or -1. */
static int run_curve(const struct options *o, const struct curve_opts *co,
                     struct curve *cv) {
  static struct bench b;
  struct target t;
  const char *store = NULL;
  int rc = -1;

  memset(&b, 0, sizeof(b));
  memset(&t, 0, sizeof(t));
  b.peers = o->peers;
  b.small_swarms = o->peers / SMALL_SWARM > 0 ? o->peers / SMALL_SWARM : 1;
  b.seq = envelope_seq_start(clock_wall_ms());
  b.ids = calloc(o->peers, sizeof(*b.ids));
  b.have_id = calloc(o->peers, 1);
  tu_tmpdir(t.dir, sizeof(t.dir));
  if (b.ids == NULL || b.have_id == NULL) {
    fprintf(stderr, "tracker-load: out of memory\n");
    goto out;
  }
  if (cv->redis) {
    if (target_redis(&t, &store) != 0) {
      goto out;
    }
  }
  b.ntrackers = cv->ntrackers;
  for (unsigned i = 0; i < cv->ntrackers; i++) {
    b.ports[i] = start_tracker(&t, i, o->bin, store);
    if (b.ports[i] < 0) {
      fprintf(stderr, "tracker-load: could not start %s\n", o->bin);
      goto out;
    }
    t.ntrackers = i + 1;
  }
  if (open_loop(&b, o->conns) != 0) {
    goto out_loop;
  }
  /* Every sender registers (closed loop) before the steps re-announce. */
  struct result reg =
      run_phase(&b, t.tracker[0].pid, 0, PH_REGISTER, o->peers, o->timeout_ms);
  if (b.failed) {
    goto out_loop;
  }
  cv->registered = reg.n;
  cv->reg_rps = reg.rps;
  curve_print_head(cv, o, co);
  b.reply_timeout = co->reply_timeout_ms * 1000000u;
  unsigned in_a_row = 0;
  for (size_t i = 0; i < co->nrates; i++) {
    struct step *st = &cv->steps[cv->nsteps];
    if (curve_step(&b, &t, (double)co->rates[i], co, st) != 0) {
      goto out_loop;
    }
    cv->nsteps++;
    curve_print_step(cv, st, co);
    in_a_row = st->saturated != NULL ? in_a_row + 1 : 0;
    if (st->queueing || in_a_row >= CURVE_SAT_STEPS) {
      break;
    }
  }
  cv->ok = 1;
  rc = 0;

out_loop:
  close_loop(&b);
  if (rc != 0) {
    for (unsigned i = 0; i < t.ntrackers; i++) {
      char cmd[PROC_PATH_MAX + 64], name[32];
      tracker_name(name, sizeof(name), i);
      snprintf(cmd, sizeof(cmd), "tail -n 20 '%s/%s.log' >&2", t.dir, name);
      if (system(cmd) != 0) {
        fprintf(stderr, "tracker-load: no %s log\n", name);
      }
    }
  }
out:
  stop_children(&t);
  tu_rmtree(t.dir);
  if (b.ids != NULL) {
    sodium_memzero(b.ids, o->peers * sizeof(*b.ids));
  }
  free(b.ids);
  free(b.have_id);
  b.ids = NULL;
  b.have_id = NULL;
  return rc;
}

/* The step a configuration saturated at: the first of the saturated steps
 * the curve ended with, or NULL when its last step was not saturated. */
static const struct step *curve_saturation(const struct curve *cv) {
  unsigned i = cv->nsteps;
  while (i > 0 && cv->steps[i - 1].saturated != NULL) {
    i--;
  }
  return i < cv->nsteps ? &cv->steps[i] : NULL;
}

/* "R replies/s on C tracker cores = P per tracker core, X x ideal; busy:
 * ..." for one step, and a newline. */
static void curve_print_per_core(const struct step *st, const struct curve *cv,
                                 const struct curve_opts *co, double ideal) {
  char lim[128];
  double per_core = st->trackers > 0 ? st->answered / st->trackers : 0;
  curve_limit(st, cv->ntrackers, co, lim, sizeof(lim));
  printf("%.0f replies/s on %.2f tracker cores = %.0f per tracker core, "
         "%.2f x ideal; busy: %s (machine %.2f of %ld cores, %.2f of them "
         "niced; redis %.2f, bench %.2f)\n",
         st->answered, st->trackers, per_core, per_core / ideal, lim,
         st->machine, co->ncpu, st->niced, st->redis, st->self);
}

static void curve_summary(const struct curve *cvs, size_t n,
                          const struct curve_opts *co, size_t signed_bytes,
                          double crypto_us) {
  double ideal = 1e6 / crypto_us;
  printf("Ed25519 verify + sign, %zu-byte announce (this run): %.1f us; "
         "ideal %.0f requests a second per core\n",
         signed_bytes, crypto_us, ideal);
  printf("saturation, in requests a second per tracker core (replies a "
         "second / tracker CPU seconds a second):\n");
  for (size_t i = 0; i < n; i++) {
    const struct curve *cv = &cvs[i];
    const struct step *sat = curve_saturation(cv);
    const struct step *last = NULL;
    if (!cv->ok) {
      printf("  %-7s did not complete\n", cv->name);
      continue;
    }
    /* The last step that followed its offered load, before saturation. */
    for (unsigned k = 0; k < cv->nsteps && &cv->steps[k] != sat; k++) {
      if (cv->steps[k].saturated == NULL) {
        last = &cv->steps[k];
      }
    }
    const struct step *at = sat != NULL ? sat : last;
    if (at == NULL) {
      printf("  %-7s no step ran\n", cv->name);
      continue;
    }
    if (sat != NULL) {
      printf("  %-7s saturated at %.0f/s offered (%s): ", cv->name,
             sat->offered, sat->saturated);
    } else {
      printf("  %-7s not saturated up to %.0f/s offered: ", cv->name,
             at->offered);
    }
    curve_print_per_core(at, cv, co, ideal);
    /* Past the knee, the step where the queue grew shows the tracker's
     * rate running flat out. */
    const struct step *end = &cv->steps[cv->nsteps - 1];
    if (end != at && end->queueing) {
      printf("  %-7s queue grew at %.0f/s offered (%s): ", "", end->offered,
             end->saturated);
      curve_print_per_core(end, cv, co, ideal);
    }
    if (last != NULL) {
      printf("  %-7s highest step followed: %.0f/s, p50/p95/p99 %.2f / %.2f "
             "/ %.2f ms, errors %.2f%%\n",
             "", last->answered, last->p50_ms, last->p95_ms, last->p99_ms,
             100.0 * last->errors);
    }
  }
}

static int has_flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], name) == 0) {
      return 1;
    }
  }
  return 0;
}

/* tracker-load --curve: see the top of the file. */
static int curve_main(int argc, char **argv) {
  struct options o;
  struct curve_opts co;
  struct curve cvs[3];
  const char *which = arg_s(argc, argv, "--store", "all");
  const char *rates = arg_s(argc, argv, "--curve-rates", CURVE_RATES);
  size_t n = 0;
  int rc = 0;

  memset(&o, 0, sizeof(o));
  memset(&co, 0, sizeof(co));
  memset(cvs, 0, sizeof(cvs));
  o.bin = arg_s(argc, argv, "--tracker", "build/bin/shoal-tracker");
  o.peers =
      benchutil_arg_ul("tracker-load", argc, argv, "--peers", CURVE_PEERS);
  o.conns =
      (unsigned)benchutil_arg_ul("tracker-load", argc, argv, "--conns", 64);
  o.timeout_ms = 1000 * benchutil_arg_ul("tracker-load", argc, argv,
                                         "--phase-timeout", 600);
  co.seconds =
      benchutil_arg_ul("tracker-load", argc, argv, "--seconds", CURVE_SECONDS);
  co.reply_timeout_ms = benchutil_arg_ul(
      "tracker-load", argc, argv, "--reply-timeout", CURVE_REPLY_TIMEOUT_MS);
  co.out_dir = arg_s(argc, argv, "--curve-out", NULL);
  co.ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  errno = 0;
  int prio = getpriority(PRIO_PROCESS, 0);
  co.niced = errno == 0 && prio > 0;
  int got =
      benchutil_parse_list(rates, co.rates, CURVE_MAX_STEPS, 1, CURVE_RATE_MAX);
  if (got < 0) {
    fprintf(stderr,
            "tracker-load: --curve-rates needs up to %d rates from 1 to %lu "
            "announces a second, separated by spaces\n",
            CURVE_MAX_STEPS, CURVE_RATE_MAX);
    return 2;
  }
  co.nrates = (size_t)got;
  for (size_t i = 0; i < co.nrates; i++) {
    if ((double)co.rates[i] * (double)co.seconds > CURVE_MAX_REQUESTS ||
        co.seconds > 3600) {
      fprintf(stderr,
              "tracker-load: a step may send at most %d announces "
              "(rate x --seconds)\n",
              CURVE_MAX_REQUESTS);
      return 2;
    }
  }
  int all = strcmp(which, "all") == 0;
  if (all || strcmp(which, "memory") == 0) {
    cvs[n++] = (struct curve){
        .name = "memory", .what = "one tracker, memory store", .ntrackers = 1};
  }
  if (all || strcmp(which, "redis") == 0) {
    cvs[n++] = (struct curve){.name = "redis",
                              .what = "one tracker over Redis",
                              .ntrackers = 1,
                              .redis = 1};
  }
  if (all || strcmp(which, "redis2") == 0) {
    cvs[n++] = (struct curve){.name = "redis2",
                              .what = "two trackers over one Redis, the "
                                      "connections split between them",
                              .ntrackers = 2,
                              .redis = 1};
  }
  if (sodium_init() < 0 || n == 0 || o.conns > MAX_CONNS ||
      o.conns < MAX_TRACKERS || o.peers < BUSY_EXTRA || o.peers > UINT32_MAX ||
      co.ncpu < 1) {
    fprintf(stderr,
            "tracker-load: bad set-up (--store memory, redis, redis2 or all; "
            "%d to %d connections; at least %d peers)\n",
            MAX_TRACKERS, MAX_CONNS, BUSY_EXTRA);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  size_t signed_bytes = announce_signed_bytes();
  double crypto = crypto_cost_us(signed_bytes);
  printf("bench/tracker-load --curve: rates %s a second, %llu s a step, "
         "replies later than %llu ms are timeouts; %ld cores; saturated "
         "when p99 > %.0f ms, errors > %.0f%%, replies < %.0f%% of offered "
         "or any request unanswered\n",
         rates, (unsigned long long)co.seconds,
         (unsigned long long)co.reply_timeout_ms, co.ncpu, CURVE_P99_MS,
         100.0 * CURVE_MAX_ERRORS, 100.0 * CURVE_MIN_FOLLOW);
  printf("columns: CPU in cores (CPU seconds a second) of each tracker, "
         "redis-server, this bench, the whole machine ('box') and the niced "
         "processes' part of it ('nice'%s); us/req and req/core are the "
         "trackers' CPU per reply and its inverse; lag is the p95 of sends "
         "behind schedule\n",
         co.niced ? ", the bench's own included: it runs niced"
                  : ", which yields to the bench's processes");
  fflush(stdout);
  for (size_t i = 0; i < n; i++) {
    if (run_curve(&o, &co, &cvs[i]) != 0) {
      rc = 1;
    }
    if (co.out_dir != NULL && cvs[i].ok &&
        curve_write_dat(&cvs[i], co.out_dir) != 0) {
      rc = 1;
    }
  }
  /* Timed again at the end, and the faster taken: the cost of the
   * primitives is what the machine gives one core when nothing else runs. */
  double crypto2 = crypto_cost_us(signed_bytes);
  printf("\nEd25519 verify + sign timed before and after the curves: %.1f and "
         "%.1f us\n",
         crypto, crypto2);
  curve_summary(cvs, n, &co, signed_bytes, crypto2 < crypto ? crypto2 : crypto);
  return rc;
}

static void print_phase(const char *name, const struct result *r, int redis) {
  printf("  %-9s %8.0f req/s  p50 %6.0f  p95 %6.0f  p99 %6.0f us  "
         "tracker CPU %5.1f us/req",
         name, r->rps, r->p50_us, r->p95_us, r->p99_us, r->cpu_us);
  if (redis) {
    printf("  Redis CPU %5.1f us/req", r->redis_cpu_us);
  }
  printf("\n");
}

static const char *verdict(int ok) {
  return ok ? "ok" : "ABOVE TARGET";
}

static void print_run(const struct store_run *s, const struct options *o) {
  int redis = strcmp(s->name, "redis") == 0;
  printf("store %s:\n", s->name);
  print_phase("register", &s->reg, redis);
  print_phase("large", &s->large, redis);
  print_phase("lookup", &s->look, redis);
  print_phase("mix 20/80", &s->mix, redis);
  print_phase("paced", &s->paced, redis);
  printf("  paced: offered %.0f announces/s (asked %.0f) for %llu "
         "announces; sends behind schedule p95 %.0f us, at most %.0f us\n",
         s->paced.offered, o->rate, (unsigned long long)o->paced,
         s->paced.lag95_us, s->paced.lagmax_us);
  if (redis) {
    printf("  Redis memory per registered peer: %.1f B in swarms of %d, "
           "%.1f B in swarms of %u; replay windows %.1f B per sender more\n",
           s->redis_small, SMALL_SWARM, s->redis_large, LARGE_SWARM,
           s->replay_small);
  } else {
    printf("  tracker memory per registered peer %.1f B (RSS, swarms of %d; "
           "target <= 160 at 1000000 peers); peak RSS %.1f MiB\n",
           s->rss_per_peer, SMALL_SWARM, (double)s->hwm_kb / 1024.0);
  }
}

int main(int argc, char **argv) {
  struct options o;
  struct store_run mem, red;
  const char *which = arg_s(argc, argv, "--store", "both");
  int do_mem = 0, do_redis = 0, rc = 0;

  if (has_flag(argc, argv, "--curve")) {
    return curve_main(argc, argv);
  }
  memset(&mem, 0, sizeof(mem));
  memset(&red, 0, sizeof(red));
  o.bin = arg_s(argc, argv, "--tracker", "build/bin/shoal-tracker");
  o.peers = benchutil_arg_ul("tracker-load", argc, argv, "--peers", 200000);
  o.mem_peers =
      benchutil_arg_ul("tracker-load", argc, argv, "--mem-peers", 100000);
  o.lookups = benchutil_arg_ul("tracker-load", argc, argv, "--lookups", 200000);
  o.mix = benchutil_arg_ul("tracker-load", argc, argv, "--mix", 200000);
  o.rate = (double)benchutil_arg_ul("tracker-load", argc, argv, "--rate",
                                    (unsigned long)TARGET_RATE);
  uint64_t seconds =
      benchutil_arg_ul("tracker-load", argc, argv, "--seconds", 10);
  o.paced = (uint64_t)(o.rate * (double)seconds);
  o.conns =
      (unsigned)benchutil_arg_ul("tracker-load", argc, argv, "--conns", 64);
  o.timeout_ms = 1000 * benchutil_arg_ul("tracker-load", argc, argv,
                                         "--phase-timeout", 600);
  if (strcmp(which, "both") == 0) {
    do_mem = do_redis = 1;
  } else if (strcmp(which, "memory") == 0) {
    do_mem = 1;
  } else if (strcmp(which, "redis") == 0) {
    do_redis = 1;
  }
  if (sodium_init() < 0 || o.conns > MAX_CONNS || (!do_mem && !do_redis) ||
      o.peers < BUSY_EXTRA || o.peers > UINT32_MAX) {
    fprintf(stderr,
            "tracker-load: bad set-up (--store memory, redis or both; at most "
            "%d connections; at least %d peers)\n",
            MAX_CONNS, BUSY_EXTRA);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  double crypto = crypto_cost_us(announce_signed_bytes());
  if (do_mem && run_store(&o, 0, &mem) != 0) {
    rc = 1;
  }
  if (do_redis && run_store(&o, 1, &red) != 0) {
    rc = 1;
  }

  printf("bench/tracker-load: %llu peers in swarms of %d (+%d in a busy "
         "one), %llu in swarms of %u; %u connections\n",
         (unsigned long long)o.peers, SMALL_SWARM, BUSY_EXTRA,
         (unsigned long long)o.mem_peers, LARGE_SWARM, o.conns);
  printf("  Ed25519 verify + sign (this run)   %8.1f us\n", crypto);
  if (mem.ok) {
    print_run(&mem, &o);
    printf("  memory: CPU per announce / crypto %.2f (target <= 1.30) %s; "
           "per busy-swarm lookup %.1f us (target <= 30) %s\n",
           mem.reg.cpu_us / crypto, verdict(mem.reg.cpu_us / crypto <= 1.3),
           mem.look.cpu_us, verdict(mem.look.cpu_us <= 30));
  }
  if (red.ok) {
    print_run(&red, &o);
  }
  printf("targets:\n");
  if (mem.ok && red.ok) {
    double ratio = red.reg.cpu_us / mem.reg.cpu_us;
    printf("  tracker CPU per announce, redis/memory  %5.1f / %5.1f us = "
           "%.2f (target <= %.1f) %s\n",
           red.reg.cpu_us, mem.reg.cpu_us, ratio, TARGET_CPU_RATIO,
           verdict(ratio <= TARGET_CPU_RATIO));
  }
  if (red.ok) {
    printf("  Redis CPU per announce                  %5.1f us (register), "
           "%.1f us (paced re-announce)\n",
           red.reg.redis_cpu_us, red.paced.redis_cpu_us);
    printf("  Redis memory per peer, swarms of %-5d  %5.1f B (target <= %.0f)"
           " ratio %.2f %s\n",
           SMALL_SWARM, red.redis_small, TARGET_REDIS_BYTES,
           red.redis_small / TARGET_REDIS_BYTES,
           verdict(red.redis_small <= TARGET_REDIS_BYTES));
    printf("  Redis memory per peer, swarms of %-5u  %5.1f B (target <= %.0f)"
           " ratio %.2f %s\n",
           LARGE_SWARM, red.redis_large, TARGET_REDIS_BYTES,
           red.redis_large / TARGET_REDIS_BYTES,
           verdict(red.redis_large <= TARGET_REDIS_BYTES));
  }
  const struct store_run *runs[2] = {&mem, &red};
  for (int i = 0; i < 2; i++) {
    const struct store_run *s = runs[i];
    if (!s->ok) {
      continue;
    }
    double p95_ms = s->paced.p95_us / 1e3;
    printf("  p95 announce latency, %-6s at %5.0f/s %5.2f ms (target < %.0f "
           "ms at %.0f/s) ratio %.2f %s%s\n",
           s->name, s->paced.offered, p95_ms, TARGET_P95_MS, TARGET_RATE,
           p95_ms / TARGET_P95_MS, verdict(p95_ms < TARGET_P95_MS),
           s->paced.offered < 0.99 * TARGET_RATE ? " (offered less than asked)"
                                                 : "");
  }
  return rc;
}
