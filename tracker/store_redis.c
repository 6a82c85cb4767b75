/* The Redis store: the registry, the catalog and the replay windows in a
 * Redis that several tracker instances share.
 *
 * One hiredis asynchronous connection on the tracker's loop (its libuv
 * adapter); every operation is one script call (store_redis_lua.h), sent
 * with EVALSHA and answered in order. Nothing waits: an operation that
 * gets no answer within STORE_REDIS_TIMEOUT_MS is failed with
 * SHOAL_ETIMEDOUT and the connection is dropped as stuck; while the store
 * is not connected, operations fail at once with SHOAL_EBUSY, which the
 * handlers turn into "store unavailable, retry after N s". The connection
 * is made again with backoff (100 ms doubling to 5 s); on connecting it
 * selects the database and loads the scripts before it says it is up.
 *
 * With sentinel://, the primary's address comes from Sentinel (SENTINEL
 * get-master-addr-by-name) before each connection, and is asked again
 * every STORE_REDIS_SENTINEL_POLL_MS while connected: a promotion moves the
 * store to the new primary (a READONLY answer does too).
 *
 * An operation's record (struct rop) belongs to hiredis from the moment it
 * is sent until hiredis calls back with it, even after a timeout has
 * answered the caller: hiredis always calls back, with no reply when the
 * connection goes, so the record is freed exactly there.
 */
#include <assert.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "tracker/store.h"
#include "tracker/store_redis_lua.h"

#define STORE_REDIS_TIMEOUT_MS 2000u /* an operation without an answer */
#define STORE_REDIS_CHECK_MS 100u    /* how often timeouts are checked */
#define STORE_REDIS_BACKOFF_MIN_MS 100u
#define STORE_REDIS_BACKOFF_MAX_MS 5000u
#define STORE_REDIS_SENTINEL_POLL_MS 1000u
/* A connection not made (or a Sentinel not answering) within this is
 * given up. hiredis 0.14's libuv adapter drops libuv's error report for a
 * refused connection (POLLERR comes as a status it ignores), so without
 * this a refused connect would wait for ever. */
#define STORE_REDIS_CONNECT_MS 1000u
#define STORE_REDIS_HOST_MAX 256
#define STORE_REDIS_MAX_ARGS (4 + 6 + TMSG_MAX_ANNOUNCE_ITEMS + 8)
/* A registration's packed record: its expiry (4 bytes, read only by the
 * scripts), family, port, then 4 or 16 bytes of address. */
#define STORE_REDIS_EXP 4
#define STORE_REDIS_REC4 (STORE_REDIS_EXP + 7)
#define STORE_REDIS_REC6 (STORE_REDIS_EXP + 19)
#define STORE_REDIS_WORD_MAX 20 /* indexed characters of a word */

enum script {
  SCRIPT_PUT,
  SCRIPT_DEL,
  SCRIPT_SAMPLE,
  SCRIPT_EXPIRE,
  SCRIPT_PUBLISH,
  SCRIPT_TOUCH,
  SCRIPT_SEARCH,
  SCRIPT_CATALOG_EXPIRE,
  SCRIPT_REPLAY,
  SCRIPT_COUNT,
};

static const char *const script_text[SCRIPT_COUNT] = {
    LUA_PUT,   LUA_DEL,    LUA_SAMPLE,         LUA_EXPIRE, LUA_PUBLISH,
    LUA_TOUCH, LUA_SEARCH, LUA_CATALOG_EXPIRE, LUA_REPLAY,
};

enum conn_state {
  RS_DOWN,        /* waiting to connect again */
  RS_DISCOVERING, /* asking Sentinel for the primary */
  RS_CONNECTING,  /* TCP or Unix connect in progress */
  RS_LOADING,     /* connected; selecting the database, loading scripts */
  RS_UP,          /* serving */
  RS_STOPPED,     /* store_redis stopped: nothing more */
};

static const char *const state_names[] = {
    "down", "discovering", "connecting", "loading", "up", "stopped"};

struct redis_store;

/* One operation sent to Redis. */
struct rop {
  struct redis_store *rs;
  struct rop *prev, *next; /* the waiting list, oldest first */
  uint64_t deadline;       /* uv_now ms */
  int answered;            /* the caller has had its result */
  enum script script;
  store_cb cb;
  void *arg;
  /* Outputs, the caller's (written only on success). */
  struct store_peer *peers;
  struct store_counts *counts;
  unsigned want;
  struct tmsg_search_ok *reply;
};

struct redis_store {
  struct store base;
  uv_loop_t *loop;
  enum conn_state state;
  int sentinel;                    /* sentinel:// */
  int unix_path;                   /* unix: */
  char host[STORE_REDIS_HOST_MAX]; /* the server, or the Sentinel */
  int port;
  char name[STORE_REDIS_HOST_MAX];    /* the Sentinel's primary name */
  char primary[STORE_REDIS_HOST_MAX]; /* with Sentinel: where it is */
  int primary_port;
  unsigned db;
  uint32_t catalog_max;
  uint32_t catalog_ttl_s;
  uint64_t window_ms;
  redisAsyncContext *ac;  /* the data connection, or NULL */
  redisAsyncContext *sac; /* a Sentinel query in flight, or NULL */
  char sha[SCRIPT_COUNT][41];
  unsigned loading; /* script loads not yet answered */
  uint32_t backoff_ms;
  uv_timer_t retry; /* the next connection attempt */
  uv_timer_t check; /* timeouts and the Sentinel poll */
  uint64_t last_poll_ms;
  uint64_t connect_ms;     /* when the data connection was begun */
  uint64_t ask_ms;         /* when the Sentinel query was begun */
  struct rop *head, *tail; /* operations waiting for an answer */
  struct store_stats stats;
  unsigned stats_pending;
};

static void rs_connect(struct redis_store *rs);
static void rs_drop(struct redis_store *rs, const char *why);

static void set_state(struct redis_store *rs, enum conn_state s) {
  if (rs->state != s) {
    log_debug("store", "redis %s: %s -> %s", rs->host, state_names[rs->state],
              state_names[s]);
    rs->state = s;
  }
  rs->base.up = s == RS_UP;
}

/* ------------------------------------------------------------------------ */
/* The --store URL */

/* Copies [p, p + n) into out as a string. Returns 0 or SHOAL_EINVAL. */
static int copy_part(char *out, size_t cap, const char *p, size_t n) {
  if (n == 0 || n >= cap || memchr(p, '\0', n) != NULL) {
    return SHOAL_EINVAL;
  }
  memcpy(out, p, n);
  out[n] = '\0';
  return 0;
}

static int parse_uint(const char *p, size_t n, unsigned long max,
                      unsigned long *out) {
  char tmp[16];
  char *end;
  if (copy_part(tmp, sizeof(tmp), p, n) != 0 || tmp[0] < '0' || tmp[0] > '9') {
    return SHOAL_EINVAL;
  }
  unsigned long v = strtoul(tmp, &end, 10);
  if (*end != '\0' || v > max) {
    return SHOAL_EINVAL;
  }
  *out = v;
  return 0;
}

/* HOST:PORT or [V6]:PORT from s up to end. */
static int parse_hostport(const char *s, const char *end, char *host,
                          int *port) {
  const char *colon;
  unsigned long v;
  if (s < end && *s == '[') {
    const char *close = memchr(s, ']', (size_t)(end - s));
    if (close == NULL || close + 1 >= end || close[1] != ':') {
      return SHOAL_EINVAL;
    }
    if (copy_part(host, STORE_REDIS_HOST_MAX, s + 1, (size_t)(close - s - 1)) !=
        0) {
      return SHOAL_EINVAL;
    }
    colon = close + 1;
  } else {
    colon = NULL;
    for (const char *p = s; p < end; p++) {
      if (*p == ':') {
        colon = p;
      }
    }
    if (colon == NULL ||
        copy_part(host, STORE_REDIS_HOST_MAX, s, (size_t)(colon - s)) != 0) {
      return SHOAL_EINVAL;
    }
  }
  if (parse_uint(colon + 1, (size_t)(end - colon - 1), 65535, &v) != 0 ||
      v == 0) {
    return SHOAL_EINVAL;
  }
  *port = (int)v;
  return 0;
}

static int parse_url(struct redis_store *rs, const char *url) {
  size_t len = strlen(url);
  const char *end = url + len;
  unsigned long v;

  if (strncmp(url, "unix:", 5) == 0) {
    rs->unix_path = 1;
    return copy_part(rs->host, sizeof(rs->host), url + 5, len - 5);
  }
  if (strncmp(url, "redis://", 8) == 0) {
    const char *p = url + 8;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (slash != NULL) {
      if (parse_uint(slash + 1, (size_t)(end - slash - 1), 15, &v) != 0) {
        return SHOAL_EINVAL;
      }
      rs->db = (unsigned)v;
      end = slash;
    }
    return parse_hostport(p, end, rs->host, &rs->port);
  }
  if (strncmp(url, "sentinel://", 11) == 0) {
    const char *p = url + 11;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL || copy_part(rs->name, sizeof(rs->name), slash + 1,
                                   (size_t)(end - slash - 1)) != 0) {
      return SHOAL_EINVAL;
    }
    rs->sentinel = 1;
    return parse_hostport(p, slash, rs->host, &rs->port);
  }
  return SHOAL_EINVAL;
}

int store_url_check(const char *url) {
  struct redis_store *rs = calloc(1, sizeof(*rs));
  if (rs == NULL) {
    return SHOAL_ENOMEM;
  }
  int err = parse_url(rs, url);
  free(rs);
  return err;
}

/* ------------------------------------------------------------------------ */
/* Operations */

static void hex_of(const uint8_t *bin, char out[65]) {
  sodium_bin2hex(out, 65, bin, 32);
}

static uint32_t retry_s(const struct redis_store *rs) {
  return (rs->backoff_ms + 999u) / 1000u + 1u;
}

/* Gives the caller its result (once) and takes the record off the
 * waiting list; hiredis still owns it. */
static void rop_answer(struct rop *op, int result) {
  struct redis_store *rs = op->rs;
  if (op->answered) {
    return;
  }
  op->answered = 1;
  if (op->prev != NULL) {
    op->prev->next = op->next;
  } else if (rs->head == op) {
    rs->head = op->next;
  }
  if (op->next != NULL) {
    op->next->prev = op->prev;
  } else if (rs->tail == op) {
    rs->tail = op->prev;
  }
  op->prev = op->next = NULL;
  op->cb(op->arg, result);
}

/* The reply's integer, or error. */
static int int_of(const redisReply *r, long long *v) {
  if (r->type != REDIS_REPLY_INTEGER) {
    return SHOAL_EFORMAT;
  }
  *v = r->integer;
  return 0;
}

static int parse_sample(struct rop *op, const redisReply *r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 5 ||
      (r->elements - 5) % 2 != 0) {
    return SHOAL_EFORMAT;
  }
  for (size_t i = 0; i < 5; i++) {
    if (r->element[i]->type != REDIS_REPLY_INTEGER ||
        r->element[i]->integer < 0 || r->element[i]->integer > UINT32_MAX) {
      return SHOAL_EFORMAT;
    }
  }
  size_t n = (r->elements - 5) / 2;
  size_t seeders = (size_t)r->element[4]->integer;
  if (n > op->want || seeders > n) {
    return SHOAL_EFORMAT;
  }
  for (size_t i = 0; i < n; i++) {
    const redisReply *pk = r->element[5 + 2 * i];
    const redisReply *rec = r->element[6 + 2 * i];
    struct store_peer *p = &op->peers[i];
    if (pk->type != REDIS_REPLY_STRING || pk->len != STORE_PK_BYTES ||
        rec->type != REDIS_REPLY_STRING ||
        (rec->len != STORE_REDIS_REC4 && rec->len != STORE_REDIS_REC6)) {
      return SHOAL_EFORMAT;
    }
    const uint8_t *b = (const uint8_t *)rec->str + STORE_REDIS_EXP;
    memset(p, 0, sizeof(*p));
    memcpy(p->pk, pk->str, STORE_PK_BYTES);
    p->family = b[0];
    p->port = buf_be16(b + 1);
    memcpy(p->addr, b + 3, (size_t)rec->len - STORE_REDIS_EXP - 3);
    p->seeding = i < seeders;
    if ((p->family == 4) != (rec->len == STORE_REDIS_REC4) ||
        (p->family != 4 && p->family != 6)) {
      return SHOAL_EFORMAT;
    }
  }
  op->counts->seeders = (uint32_t)r->element[0]->integer;
  op->counts->downloaders = (uint32_t)r->element[1]->integer;
  op->counts->completed = (uint32_t)r->element[2]->integer;
  op->counts->excluded = r->element[3]->integer != 0;
  return (int)n;
}

static int parse_search(struct rop *op, const redisReply *r) {
  struct tmsg_search_ok *out = op->reply;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
      r->element[0]->type != REDIS_REPLY_INTEGER ||
      r->element[0]->integer < 0 || (r->elements - 1) % 4 != 0 ||
      (r->elements - 1) / 4 > TMSG_MAX_RESULTS) {
    return SHOAL_EFORMAT;
  }
  memset(out, 0, sizeof(*out));
  out->total = (uint32_t)r->element[0]->integer;
  for (size_t i = 1; i + 3 < r->elements; i += 4) {
    const redisReply *id = r->element[i];
    const redisReply *pub = r->element[i + 1];
    const redisReply *name = r->element[i + 2];
    const redisReply *size = r->element[i + 3];
    struct tmsg_result *res = &out->results[out->count];
    char num[24];
    char *end;
    if (id->type != REDIS_REPLY_STRING || id->len != 64 ||
        pub->type != REDIS_REPLY_STRING || pub->len != IDENTITY_PK_BYTES ||
        name->type != REDIS_REPLY_STRING || name->len > TMSG_MAX_NAME ||
        size->type != REDIS_REPLY_STRING ||
        copy_part(num, sizeof(num), size->str, (size_t)size->len) != 0 ||
        sodium_hex2bin(res->content, sizeof(res->content), id->str, 64, NULL,
                       NULL, NULL) != 0) {
      return SHOAL_EFORMAT;
    }
    res->size = strtoull(num, &end, 10);
    if (*end != '\0') {
      return SHOAL_EFORMAT;
    }
    memcpy(res->publisher, pub->str, IDENTITY_PK_BYTES);
    memcpy(res->name, name->str, (size_t)name->len);
    res->name[name->len] = '\0';
    out->count++;
  }
  return 0;
}

/* The result an operation's reply means. */
static int result_of(struct rop *op, const redisReply *r) {
  long long v = 0;
  int err;
  switch (op->script) {
  case SCRIPT_PUT:
    err = int_of(r, &v);
    return err != 0 ? err : v < 0 ? SHOAL_ETOOBIG : v ? STORE_CHANGED : 0;
  case SCRIPT_DEL:
  case SCRIPT_TOUCH:
    return int_of(r, &v);
  case SCRIPT_SAMPLE:
    return parse_sample(op, r);
  case SCRIPT_EXPIRE:
  case SCRIPT_CATALOG_EXPIRE:
    err = int_of(r, &v);
    return err != 0 ? err : v > INT32_MAX ? INT32_MAX : (int)v;
  case SCRIPT_PUBLISH:
    err = int_of(r, &v);
    return err != 0  ? err
           : v == -1 ? SHOAL_EWRONGKEY
           : v == -2 ? SHOAL_ETOOBIG
                     : 0;
  case SCRIPT_SEARCH:
    return parse_search(op, r);
  case SCRIPT_REPLAY:
    err = int_of(r, &v);
    return err != 0 ? err : v == 1 ? SHOAL_EREPLAY : v == 2 ? SHOAL_ESEQ : 0;
  default:
    assert(0);
    return SHOAL_EINVAL;
  }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  struct rop *op = privdata;
  struct redis_store *rs = op->rs;
  const redisReply *r = reply;
  int result;
  (void)ac;

  if (r == NULL) {
    result = SHOAL_EBUSY; /* the connection went */
  } else if (r->type == REDIS_REPLY_ERROR) {
    log_warn("store", "redis: %.*s", (int)(r->len > 200 ? 200 : r->len),
             r->str);
    result = SHOAL_EBUSY;
    /* A replica (after a failover) or a flushed script cache: connect
     * again, to the primary, and load the scripts again. */
    if (strncmp(r->str, "READONLY", 8) == 0 ||
        strncmp(r->str, "NOSCRIPT", 8) == 0) {
      rop_answer(op, result);
      free(op);
      if (rs->state == RS_UP) {
        rs_drop(rs, "primary changed or scripts lost");
      }
      return;
    }
  } else {
    result = result_of(op, r);
    if (result == SHOAL_EFORMAT) {
      log_warn("store", "redis: unexpected answer to script %d", op->script);
    }
  }
  rop_answer(op, result);
  free(op);
}

/* Sends one script call. Fails the operation at once when the store is
 * not up. Keys and arguments are copied by hiredis. */
static void send_script(struct redis_store *rs, struct rop *op, int nkeys,
                        const char **args, const size_t *lens, int nargs) {
  const char *argv[STORE_REDIS_MAX_ARGS];
  size_t argl[STORE_REDIS_MAX_ARGS];
  char nk[8];

  assert(nargs + 3 <= STORE_REDIS_MAX_ARGS);
  op->rs = rs;
  op->answered = 0;
  if (rs->state != RS_UP) {
    rs->base.retry_s = retry_s(rs);
    op->answered = 1;
    op->cb(op->arg, SHOAL_EBUSY);
    free(op);
    return;
  }
  snprintf(nk, sizeof(nk), "%d", nkeys);
  argv[0] = "EVALSHA";
  argl[0] = 7;
  argv[1] = rs->sha[op->script];
  argl[1] = 40;
  argv[2] = nk;
  argl[2] = strlen(nk);
  for (int i = 0; i < nargs; i++) {
    argv[3 + i] = args[i];
    argl[3 + i] = lens[i];
  }
  if (redisAsyncCommandArgv(rs->ac, on_reply, op, nargs + 3, argv, argl) !=
      REDIS_OK) {
    op->answered = 1;
    op->cb(op->arg, SHOAL_EBUSY);
    free(op);
    return;
  }
  op->deadline = uv_now(rs->loop) + STORE_REDIS_TIMEOUT_MS;
  op->prev = rs->tail;
  op->next = NULL;
  if (rs->tail != NULL) {
    rs->tail->next = op;
  } else {
    rs->head = op;
  }
  rs->tail = op;
}

static struct rop *rop_new(enum script script, store_cb cb, void *arg) {
  struct rop *op = calloc(1, sizeof(*op));
  if (op == NULL) {
    cb(arg, SHOAL_ENOMEM);
    return NULL;
  }
  op->script = script;
  op->cb = cb;
  op->arg = arg;
  return op;
}

/* The keys of a swarm, with its hex ID. */
struct swarm_keys {
  char id[65];
  char s[80], d[80], c[80], x[80];
};

static void swarm_keys(const uint8_t id[STORE_ID_BYTES], struct swarm_keys *k) {
  hex_of(id, k->id);
  snprintf(k->s, sizeof(k->s), "sh:S{%s}", k->id);
  snprintf(k->d, sizeof(k->d), "sh:D{%s}", k->id);
  snprintf(k->c, sizeof(k->c), "sh:C{%s}", k->id);
  snprintf(k->x, sizeof(k->x), "sh:X{%s}", k->id);
}

static void redis_put(struct store *s, const uint8_t id[STORE_ID_BYTES],
                      const struct store_peer *p, uint32_t now, uint32_t life,
                      int completed, uint32_t max_peers, store_cb cb,
                      void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  struct swarm_keys k;
  uint8_t rec[STORE_REDIS_REC6 - STORE_REDIS_EXP];
  char lifes[16], maxs[16];
  /* The script puts the expiry in front of what is sent here. */
  size_t reclen =
      (p->family == 4 ? STORE_REDIS_REC4 : STORE_REDIS_REC6) - STORE_REDIS_EXP;
  (void)now; /* Redis's TIME is the clock */
  struct rop *op = rop_new(SCRIPT_PUT, cb, arg);
  if (op == NULL) {
    return;
  }
  swarm_keys(id, &k);
  rec[0] = p->family;
  buf_put_be16(rec + 1, p->port);
  memcpy(rec + 3, p->addr, reclen - 3);
  snprintf(lifes, sizeof(lifes), "%" PRIu32, life);
  snprintf(maxs, sizeof(maxs), "%" PRIu32, max_peers);
  const char *args[] = {k.s,
                        k.d,
                        k.c,
                        "sh:due",
                        "sh:npeers",
                        (const char *)p->pk,
                        (const char *)rec,
                        lifes,
                        completed ? "1" : "0",
                        maxs,
                        p->seeding ? "1" : "0",
                        k.id};
  size_t lens[] = {strlen(k.s), strlen(k.d),    strlen(k.c), 6,
                   9,           STORE_PK_BYTES, reclen,      strlen(lifes),
                   1,           strlen(maxs),   1,           64};
  send_script(rs, op, 5, args, lens, 12);
}

static void redis_del(struct store *s, const uint8_t id[STORE_ID_BYTES],
                      const uint8_t pk[STORE_PK_BYTES], store_cb cb,
                      void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  struct swarm_keys k;
  struct rop *op = rop_new(SCRIPT_DEL, cb, arg);
  if (op == NULL) {
    return;
  }
  swarm_keys(id, &k);
  const char *args[] = {
      k.s, k.d, k.c, k.x, "sh:due", "sh:npeers", (const char *)pk, k.id};
  size_t lens[] = {strlen(k.s), strlen(k.d), strlen(k.c),    strlen(k.x),
                   6,           9,           STORE_PK_BYTES, 64};
  send_script(rs, op, 6, args, lens, 8);
}

static void redis_sample(struct store *s, const uint8_t id[STORE_ID_BYTES],
                         const uint8_t *exclude, unsigned want,
                         int seeders_first, struct store_peer *out,
                         struct store_counts *counts, store_cb cb, void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  struct swarm_keys k;
  char wants[16], seed[16];
  struct rop *op = rop_new(SCRIPT_SAMPLE, cb, arg);
  if (op == NULL) {
    return;
  }
  if (want > TMSG_MAX_PEERS) {
    want = TMSG_MAX_PEERS;
  }
  op->peers = out;
  op->counts = counts;
  op->want = want;
  swarm_keys(id, &k);
  snprintf(wants, sizeof(wants), "%u", want);
  snprintf(seed, sizeof(seed), "%" PRIu32, randombytes_uniform(1u << 30));
  const char *args[] = {k.s,
                        k.d,
                        k.c,
                        wants,
                        seeders_first ? "1" : "0",
                        exclude != NULL ? (const char *)exclude : "",
                        seed};
  size_t lens[] = {strlen(k.s), strlen(k.d),
                   strlen(k.c), strlen(wants),
                   1,           exclude != NULL ? STORE_PK_BYTES : 0,
                   strlen(seed)};
  send_script(rs, op, 3, args, lens, 7);
}

/* The figures, asked for in the background (once per expiry sweep). */
static void on_stat(redisAsyncContext *ac, void *reply, void *privdata) {
  struct redis_store *rs = privdata;
  const redisReply *r = reply;
  (void)ac;
  if (rs->stats_pending > 0) {
    rs->stats_pending--;
  }
  if (r == NULL) {
    return;
  }
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
    const redisReply *e = r->element[0];
    if (e->type == REDIS_REPLY_INTEGER) {
      rs->stats.swarms = (uint64_t)e->integer;
    }
    e = r->element[1];
    if (e->type == REDIS_REPLY_STRING) {
      rs->stats.peers = strtoull(e->str, NULL, 10);
    } else if (e->type == REDIS_REPLY_NIL) {
      rs->stats.peers = 0;
    }
    e = r->element[2];
    if (e->type == REDIS_REPLY_INTEGER) {
      rs->stats.catalog = (uint64_t)e->integer;
    }
    e = r->element[3];
    if (e->type == REDIS_REPLY_INTEGER) {
      rs->stats.bytes = (uint64_t)e->integer;
    }
  }
}

static void ask_stats(struct redis_store *rs) {
  static const char lua[] =
      "local u = string.match(redis.call('INFO', 'memory'),"
      " 'used_memory:(%d+)')\n"
      "return {redis.call('ZCARD', KEYS[1]), redis.call('GET', KEYS[2]),"
      " redis.call('ZCARD', KEYS[3]), tonumber(u)}\n";
  if (rs->state != RS_UP || rs->stats_pending > 0) {
    return;
  }
  if (redisAsyncCommand(rs->ac, on_stat, rs, "EVAL %s 3 sh:due sh:npeers %s",
                        lua, "sh:{cat}:t") == REDIS_OK) {
    rs->stats_pending++;
  }
}

static void redis_expire(struct store *s, uint32_t now, unsigned max_work,
                         store_cb cb, void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  char work[16];
  (void)now;
  ask_stats(rs);
  struct rop *op = rop_new(SCRIPT_EXPIRE, cb, arg);
  if (op == NULL) {
    return;
  }
  snprintf(work, sizeof(work), "%u", max_work);
  const char *args[] = {"sh:due", "sh:npeers", work};
  size_t lens[] = {6, 9, strlen(work)};
  send_script(rs, op, 2, args, lens, 3);
}

static void redis_stats(struct store *s, struct store_stats *out) {
  struct redis_store *rs = (struct redis_store *)s;
  *out = rs->stats;
}

static void redis_publish(struct store *s,
                          const uint8_t publisher[IDENTITY_PK_BYTES],
                          const struct tmsg_publish *p, uint32_t now,
                          store_cb cb, void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  char id[65], entry[96], size[24], max[16];
  (void)now;
  struct rop *op = rop_new(SCRIPT_PUBLISH, cb, arg);
  if (op == NULL) {
    return;
  }
  hex_of(p->content, id);
  snprintf(entry, sizeof(entry), "sh:{cat}:e:%s", id);
  snprintf(size, sizeof(size), "%" PRIu64, p->size);
  snprintf(max, sizeof(max), "%" PRIu32, rs->catalog_max);
  const char *args[] = {entry,
                        "sh:{cat}:t",
                        (const char *)publisher,
                        p->name,
                        size,
                        (const char *)p->manifest_sig,
                        max,
                        id};
  size_t lens[] = {strlen(entry),     10,
                   IDENTITY_PK_BYTES, strlen(p->name),
                   strlen(size),      IDENTITY_SIG_BYTES,
                   strlen(max),       64};
  send_script(rs, op, 2, args, lens, 8);
}

static void redis_touch(struct store *s, const uint8_t (*ids)[TMSG_ID_BYTES],
                        unsigned n, uint32_t now, store_cb cb, void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  char hex[TMSG_MAX_ANNOUNCE_ITEMS][65];
  const char *args[1 + TMSG_MAX_ANNOUNCE_ITEMS];
  size_t lens[1 + TMSG_MAX_ANNOUNCE_ITEMS];
  (void)now;
  struct rop *op = rop_new(SCRIPT_TOUCH, cb, arg);
  if (op == NULL) {
    return;
  }
  if (n > TMSG_MAX_ANNOUNCE_ITEMS) {
    n = TMSG_MAX_ANNOUNCE_ITEMS;
  }
  args[0] = "sh:{cat}:t";
  lens[0] = 10;
  for (unsigned i = 0; i < n; i++) {
    hex_of(ids[i], hex[i]);
    args[1 + i] = hex[i];
    lens[1 + i] = 64;
  }
  send_script(rs, op, 1, args, lens, (int)n + 1);
}

/* Splits a query into index words: ASCII letters and digits, lower-cased,
 * at most STORE_REDIS_WORD_MAX characters each (the index's own rule).
 * Returns the count, or -1 for none or more than CATALOG_MAX_WORDS. */
#define STORE_REDIS_MAX_WORDS 8 /* CATALOG_MAX_WORDS */
static int query_words(const char *q, char words[][STORE_REDIS_WORD_MAX + 1]) {
  int n = 0;
  const char *p = q;
  for (;;) {
    while (*p != '\0' &&
           !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
             (*p >= '0' && *p <= '9'))) {
      p++;
    }
    if (*p == '\0') {
      return n > 0 ? n : -1;
    }
    if (n == STORE_REDIS_MAX_WORDS) {
      return -1;
    }
    size_t len = 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
           (*p >= '0' && *p <= '9')) {
      if (len < STORE_REDIS_WORD_MAX) {
        char ch = *p;
        words[n][len++] =
            (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
      }
      p++;
    }
    words[n][len] = '\0';
    n++;
  }
}

static void redis_search(struct store *s, const struct tmsg_search *q,
                         struct tmsg_search_ok *reply, store_cb cb, void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  char words[STORE_REDIS_MAX_WORDS][STORE_REDIS_WORD_MAX + 1];
  const char *args[2 + STORE_REDIS_MAX_WORDS];
  size_t lens[2 + STORE_REDIS_MAX_WORDS];
  char off[16], lim[16];
  int nw = query_words(q->query, words);
  if (nw < 0) {
    cb(arg, SHOAL_EINVAL);
    return;
  }
  struct rop *op = rop_new(SCRIPT_SEARCH, cb, arg);
  if (op == NULL) {
    return;
  }
  op->reply = reply;
  snprintf(off, sizeof(off), "%" PRIu32, q->offset);
  snprintf(lim, sizeof(lim), "%u",
           q->limit > TMSG_MAX_RESULTS ? TMSG_MAX_RESULTS : q->limit);
  args[0] = off;
  lens[0] = strlen(off);
  args[1] = lim;
  lens[1] = strlen(lim);
  for (int i = 0; i < nw; i++) {
    args[2 + i] = words[i];
    lens[2 + i] = strlen(words[i]);
  }
  send_script(rs, op, 0, args, lens, 2 + nw);
}

static void redis_catalog_expire(struct store *s, uint32_t now,
                                 unsigned max_work, store_cb cb, void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  char ttl[16], work[16];
  (void)now;
  struct rop *op = rop_new(SCRIPT_CATALOG_EXPIRE, cb, arg);
  if (op == NULL) {
    return;
  }
  snprintf(ttl, sizeof(ttl), "%" PRIu32, rs->catalog_ttl_s);
  snprintf(work, sizeof(work), "%u", max_work);
  const char *args[] = {"sh:{cat}:t", ttl, work};
  size_t lens[] = {10, strlen(ttl), strlen(work)};
  send_script(rs, op, 1, args, lens, 3);
}

static void redis_replay(struct store *s, const uint8_t pk[IDENTITY_PK_BYTES],
                         uint64_t seq, uint64_t timestamp_ms, uint64_t now_ms,
                         store_cb cb, void *arg) {
  struct redis_store *rs = (struct redis_store *)s;
  char hex[65], key[80], seqs[24], ttl[24];
  (void)timestamp_ms;
  (void)now_ms;
  struct rop *op = rop_new(SCRIPT_REPLAY, cb, arg);
  if (op == NULL) {
    return;
  }
  hex_of(pk, hex);
  snprintf(key, sizeof(key), "sh:r{%s}", hex);
  snprintf(seqs, sizeof(seqs), "%020" PRIu64, seq);
  /* A message can be replayed until its timestamp leaves the window, at
   * most twice the window after it was accepted. */
  snprintf(ttl, sizeof(ttl), "%" PRIu64, 2 * rs->window_ms + 1000);
  const char *args[] = {key, seqs, ttl};
  size_t lens[] = {strlen(key), strlen(seqs), strlen(ttl)};
  send_script(rs, op, 1, args, lens, 3);
}

/* ------------------------------------------------------------------------ */
/* The connection */

static void on_retry(uv_timer_t *t) {
  struct redis_store *rs = t->data;
  rs_connect(rs);
}

/* Connecting failed or the connection went: try again later, waiting
 * twice as long each time up to the maximum. */
static void schedule_retry(struct redis_store *rs) {
  if (rs->state == RS_STOPPED) {
    return;
  }
  set_state(rs, RS_DOWN);
  rs->base.retry_s = retry_s(rs);
  uv_timer_start(&rs->retry, on_retry, rs->backoff_ms, 0);
  rs->backoff_ms *= 2;
  if (rs->backoff_ms > STORE_REDIS_BACKOFF_MAX_MS) {
    rs->backoff_ms = STORE_REDIS_BACKOFF_MAX_MS;
  }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  struct redis_store *rs = ac->data;
  (void)status;
  if (rs == NULL || rs->ac != ac) {
    return;
  }
  rs->ac = NULL;
  if (rs->state == RS_UP || rs->state == RS_LOADING) {
    log_warn("store", "redis %s: connection lost%s%s", rs->host,
             ac->errstr[0] ? ": " : "", ac->errstr);
  }
  schedule_retry(rs);
}

/* Drops the data connection (its waiting operations fail with
 * SHOAL_EBUSY) and connects again. Never inside a hiredis callback of the
 * same connection: hiredis frees the context after the callback then. */
static void rs_drop(struct redis_store *rs, const char *why) {
  redisAsyncContext *ac = rs->ac;
  if (ac == NULL) {
    return;
  }
  if (rs->state == RS_UP) {
    log_warn("store", "redis %s: dropping the connection: %s", rs->host, why);
  } else {
    log_debug("store", "redis %s: giving up: %s", rs->host, why);
  }
  /* redisAsyncDisconnect would wait for answers that may never come. */
  rs->ac = NULL;
  ac->data = NULL;
  redisAsyncFree(ac);
  schedule_retry(rs);
}

static void on_loaded(redisAsyncContext *ac, void *reply, void *privdata) {
  struct redis_store *rs = ac->data;
  const redisReply *r = reply;
  enum script i = (enum script)(uintptr_t)privdata;
  if (rs == NULL || r == NULL) {
    return;
  }
  if (r->type != REDIS_REPLY_STRING || r->len != 40) {
    log_warn("store", "redis %s: could not load a script: %.*s", rs->host,
             r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
             r->type == REDIS_REPLY_ERROR ? r->str : "");
    rs_drop(rs, "scripts did not load");
    return;
  }
  memcpy(rs->sha[i], r->str, 40);
  rs->sha[i][40] = '\0';
  if (--rs->loading == 0) {
    set_state(rs, RS_UP);
    rs->backoff_ms = STORE_REDIS_BACKOFF_MIN_MS;
    rs->base.retry_s = 1;
    log_info("store", "redis %s: connected", rs->host);
    ask_stats(rs);
  }
}

static void on_selected(redisAsyncContext *ac, void *reply, void *privdata) {
  struct redis_store *rs = ac->data;
  const redisReply *r = reply;
  (void)privdata;
  if (rs != NULL && r != NULL && r->type == REDIS_REPLY_ERROR) {
    log_warn("store", "redis %s: SELECT %u: %.*s", rs->host, rs->db,
             (int)r->len, r->str);
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  struct redis_store *rs = ac->data;
  if (rs == NULL || rs->ac != ac) {
    return;
  }
  if (status != REDIS_OK) {
    log_debug("store", "redis %s: cannot connect: %s", rs->host, ac->errstr);
    rs->ac = NULL; /* hiredis frees it after this callback */
    schedule_retry(rs);
    return;
  }
  set_state(rs, RS_LOADING);
  redisAsyncContext *c = rs->ac;
  if (rs->db != 0) {
    redisAsyncCommand(c, on_selected, NULL, "SELECT %u", rs->db);
  }
  rs->loading = SCRIPT_COUNT;
  for (unsigned i = 0; i < SCRIPT_COUNT; i++) {
    redisAsyncCommand(c, on_loaded, (void *)(uintptr_t)i, "SCRIPT LOAD %s",
                      script_text[i]);
  }
}

/* Connects the data connection to host:port (or the Unix socket). */
static void connect_to(struct redis_store *rs, const char *host, int port) {
  redisAsyncContext *ac = rs->unix_path ? redisAsyncConnectUnix(host)
                                        : redisAsyncConnect(host, port);
  if (ac == NULL) {
    schedule_retry(rs);
    return;
  }
  if (ac->err != 0 || redisLibuvAttach(ac, rs->loop) != REDIS_OK) {
    log_debug("store", "redis %s: cannot connect: %s", rs->host, ac->errstr);
    redisAsyncFree(ac);
    schedule_retry(rs);
    return;
  }
  ac->data = rs;
  rs->ac = ac;
  rs->connect_ms = uv_now(rs->loop);
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  set_state(rs, RS_CONNECTING);
}

/* Sentinel's answer: the primary's address. */
static void on_primary(redisAsyncContext *ac, void *reply, void *privdata) {
  struct redis_store *rs = privdata;
  const redisReply *r = reply;
  char host[STORE_REDIS_HOST_MAX];
  unsigned long port = 0;
  int ok = 0;

  if (rs == NULL || rs->sac != ac) {
    return;
  }
  rs->sac = NULL;
  redisAsyncDisconnect(ac); /* after this callback */
  if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
      r->element[0]->type == REDIS_REPLY_STRING &&
      r->element[1]->type == REDIS_REPLY_STRING &&
      copy_part(host, sizeof(host), r->element[0]->str,
                (size_t)r->element[0]->len) == 0 &&
      parse_uint(r->element[1]->str, (size_t)r->element[1]->len, 65535,
                 &port) == 0) {
    ok = 1;
  }
  if (rs->state == RS_UP) {
    /* A poll while serving: follow a promotion. */
    if (ok &&
        (strcmp(host, rs->primary) != 0 || (int)port != rs->primary_port)) {
      log_info("store", "sentinel %s: primary %s is now at %s:%lu", rs->host,
               rs->name, host, port);
      rs_drop(rs, "the primary moved");
    }
    return;
  }
  if (rs->state != RS_DISCOVERING) {
    return;
  }
  if (!ok) {
    log_debug("store", "sentinel %s: no primary named %s", rs->host, rs->name);
    schedule_retry(rs);
    return;
  }
  snprintf(rs->primary, sizeof(rs->primary), "%s", host);
  rs->primary_port = (int)port;
  connect_to(rs, rs->primary, rs->primary_port);
}

static void on_sentinel_connect(const redisAsyncContext *ac, int status) {
  struct redis_store *rs = ac->data;
  if (rs == NULL || rs->sac != ac) {
    return;
  }
  if (status != REDIS_OK) {
    rs->sac = NULL;
    if (rs->state == RS_DISCOVERING) {
      schedule_retry(rs);
    }
  }
}

static void on_sentinel_disconnect(const redisAsyncContext *ac, int status) {
  struct redis_store *rs = ac->data;
  (void)status;
  if (rs != NULL && rs->sac == ac) {
    /* Gone before it answered. */
    rs->sac = NULL;
    if (rs->state == RS_DISCOVERING) {
      schedule_retry(rs);
    }
  }
}

/* Asks Sentinel where the primary is (a poll when serving). */
static void ask_sentinel(struct redis_store *rs) {
  if (rs->sac != NULL) {
    return;
  }
  redisAsyncContext *ac = redisAsyncConnect(rs->host, rs->port);
  if (ac == NULL || ac->err != 0 ||
      redisLibuvAttach(ac, rs->loop) != REDIS_OK) {
    if (ac != NULL) {
      redisAsyncFree(ac);
    }
    if (rs->state == RS_DISCOVERING) {
      schedule_retry(rs);
    }
    return;
  }
  ac->data = rs;
  rs->sac = ac;
  rs->ask_ms = uv_now(rs->loop);
  redisAsyncSetConnectCallback(ac, on_sentinel_connect);
  redisAsyncSetDisconnectCallback(ac, on_sentinel_disconnect);
  if (redisAsyncCommand(ac, on_primary, rs,
                        "SENTINEL get-master-addr-by-name %s",
                        rs->name) != REDIS_OK) {
    rs->sac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
    if (rs->state == RS_DISCOVERING) {
      schedule_retry(rs);
    }
  }
}

static void rs_connect(struct redis_store *rs) {
  if (rs->state == RS_STOPPED) {
    return;
  }
  if (rs->sentinel) {
    set_state(rs, RS_DISCOVERING);
    ask_sentinel(rs);
  } else {
    connect_to(rs, rs->host, rs->port);
  }
}

/* Every STORE_REDIS_CHECK_MS: fails operations past their deadline (and
 * drops a connection that stopped answering), and polls Sentinel. */
static void on_check(uv_timer_t *t) {
  struct redis_store *rs = t->data;
  uint64_t now = uv_now(rs->loop);
  int stuck = 0;
  while (rs->head != NULL && rs->head->deadline <= now) {
    rop_answer(rs->head, SHOAL_ETIMEDOUT);
    stuck = 1;
  }
  if (stuck && rs->state == RS_UP) {
    rs_drop(rs, "no answer in time");
  }
  if ((rs->state == RS_CONNECTING || rs->state == RS_LOADING) &&
      now - rs->connect_ms >= STORE_REDIS_CONNECT_MS) {
    rs_drop(rs, "not connected in time");
  }
  if (rs->sac != NULL && now - rs->ask_ms >= STORE_REDIS_CONNECT_MS) {
    redisAsyncContext *ac = rs->sac;
    rs->sac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
    if (rs->state == RS_DISCOVERING) {
      schedule_retry(rs);
    }
  }
  if (rs->sentinel && rs->state == RS_UP &&
      now - rs->last_poll_ms >= STORE_REDIS_SENTINEL_POLL_MS) {
    rs->last_poll_ms = now;
    ask_sentinel(rs);
  }
}

/* ------------------------------------------------------------------------ */

static void redis_stop(struct store *s) {
  struct redis_store *rs = (struct redis_store *)s;
  if (rs->state == RS_STOPPED) {
    return;
  }
  set_state(rs, RS_STOPPED);
  uv_close((uv_handle_t *)&rs->retry, NULL);
  uv_close((uv_handle_t *)&rs->check, NULL);
  if (rs->sac != NULL) {
    redisAsyncContext *ac = rs->sac;
    rs->sac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
  }
  if (rs->ac != NULL) {
    /* Every waiting operation is called back (SHOAL_EBUSY) in here. */
    redisAsyncContext *ac = rs->ac;
    rs->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
  }
}

static void redis_free(struct store *s) {
  struct redis_store *rs = (struct redis_store *)s;
  if (rs == NULL) {
    return;
  }
  redis_stop(s);
  assert(rs->head == NULL);
  free(rs);
}

static const struct store_ops redis_ops = {
    .put = redis_put,
    .del = redis_del,
    .sample = redis_sample,
    .expire = redis_expire,
    .stats = redis_stats,
    .publish = redis_publish,
    .touch = redis_touch,
    .search = redis_search,
    .catalog_expire = redis_catalog_expire,
    .replay = redis_replay,
    .stop = redis_stop,
    .free = redis_free,
};

int store_redis_new(uv_loop_t *loop, const char *url, uint32_t catalog_max,
                    uint32_t catalog_ttl_s, uint64_t window_ms,
                    struct store **out) {
  struct redis_store *rs = calloc(1, sizeof(*rs));
  *out = NULL;
  if (rs == NULL) {
    return SHOAL_ENOMEM;
  }
  int err = parse_url(rs, url);
  if (err != 0) {
    free(rs);
    return err;
  }
  rs->base.ops = &redis_ops;
  rs->base.backend = rs->sentinel ? "sentinel" : "redis";
  rs->base.up = 0;
  rs->base.retry_s = 1;
  rs->loop = loop;
  rs->catalog_max = catalog_max;
  rs->catalog_ttl_s = catalog_ttl_s;
  rs->window_ms = window_ms;
  rs->backoff_ms = STORE_REDIS_BACKOFF_MIN_MS;
  rs->state = RS_DOWN;
  uv_timer_init(loop, &rs->retry);
  uv_timer_init(loop, &rs->check);
  rs->retry.data = rs;
  rs->check.data = rs;
  uv_timer_start(&rs->check, on_check, STORE_REDIS_CHECK_MS,
                 STORE_REDIS_CHECK_MS);
  rs_connect(rs);
  *out = &rs->base;
  return 0;
}
