/* bench/tracker-load: load on a real shoal-tracker over loopback.
 *
 * Starts build/bin/shoal-tracker on 127.0.0.1 (its own temp key, limits
 * raised so that only the CPU limits it), then drives it from one libuv
 * loop over many connections, each with several requests in flight:
 *
 *   1. register: --peers distinct keys each announce one of --swarms
 *      contents (swarm 0 gets extra peers so it is busy);
 *   2. lookup:   --lookups lookups of the busy swarm (want 50);
 *   3. mix:      --mix requests, 20% re-announces and 80% lookups spread
 *                over all swarms.
 *
 * For each phase it prints requests per second, p50 and p99 latency, and
 * the tracker's CPU time per request (utime + stime from /proc). After the
 * register phase it prints the tracker's resident memory per registered
 * peer; at the end its peak RSS. Beside them, measured in this run: the cost
 * of one Ed25519 verify plus one sign over an announce-sized message.
 * Replies are counted and their type checked, not verified (the client's
 * CPU would otherwise compete with the tracker's on two cores).
 *
 * Targets: CPU per announce <= 1.3 x (verify + sign); CPU per lookup of a
 * busy swarm <= 30 us; <= 160 bytes per registered peer at 1,000,000.
 * Usage: tracker-load [--peers N] [--swarms N] [--lookups N] [--mix N]
 *                     [--conns N] [--tracker PATH]
 */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bench/lib/benchutil.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/textid.h"
#include "common/tmsg.h"

#define WINDOW 16 /* requests in flight per connection */
#define MAX_CONNS 256
#define BUSY_EXTRA 200 /* extra peers in swarm 0 */

struct bench;

struct lconn {
  uv_tcp_t tcp;
  struct bench *b;
  struct frame_decoder dec;
  uint64_t sent_at[WINDOW]; /* FIFO of send times (ns) */
  unsigned head, inflight;
};

struct bench {
  uv_loop_t loop;
  struct lconn conns[MAX_CONNS];
  unsigned nconns, connected;
  int port;
  /* Current phase. */
  int phase; /* 1 register, 2 lookup, 3 mix */
  uint64_t total, issued, done, errors;
  uint64_t *lat; /* ns, one per request of the phase */
  uint64_t peers, swarms;
  uint64_t seq;
  uint64_t phase_start;
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

/* ------------------------------------------------------------- tracker */

static pid_t start_tracker(const char *bin, const char *dir, int *port) {
  char key[4200], log[4200];
  int fds[2];
  snprintf(key, sizeof(key), "%s/tracker.key", dir);
  snprintf(log, sizeof(log), "%s/tracker.log", dir);
  if (pipe(fds) != 0) {
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    char *args[] = {strdup(bin),           strdup("--listen"),
                    strdup("127.0.0.1:0"), strdup("--key"),
                    strdup(key),           strdup("--log-file"),
                    strdup(log),           strdup("--rate"),
                    strdup("1000000"),     strdup("--burst"),
                    strdup("1000000"),     strdup("--max-connections"),
                    strdup("4096"),        strdup("--max-per-address"),
                    strdup("4096"),        strdup("--interval"),
                    strdup("3600"),        NULL};
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execv(bin, args);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[512];
  *port = 0;
  /* The tracker prints these lines at once; a tracker that hangs instead
   * ends the benchmark (SIGALRM's default action) rather than blocking it. */
  alarm(30);
  while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    const char *lp = "listening on 127.0.0.1:";
    if (strncmp(line, lp, strlen(lp)) == 0) {
      char *end = NULL;
      unsigned long v = strtoul(line + strlen(lp), &end, 10);
      if (end != line + strlen(lp) && v > 0 && v <= 65535) {
        *port = (int)v;
      }
    }
    if (strncmp(line, "tracker key ", 12) == 0) {
      break;
    }
  }
  alarm(0);
  if (f != NULL) {
    fclose(f);
  }
  return *port > 0 ? pid : -1;
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

/* Appends one framed request for request number i of the phase. */
static void build_request(struct bench *b, uint64_t i, struct buf *out) {
  uint8_t hdr[FRAME_HEADER_BYTES] = {0};
  size_t start = out->len;
  int announce;
  uint64_t who, swarm;

  if (b->phase == 1) {
    announce = 1;
    who = i;
    /* The first BUSY_EXTRA peers crowd swarm 0; the rest spread out. */
    swarm = i < BUSY_EXTRA ? 0 : i % b->swarms;
  } else if (b->phase == 2) {
    announce = 0;
    who = 0;
    swarm = 0;
  } else {
    uint32_t r = randombytes_uniform(100);
    announce = r < 20;
    who = randombytes_uniform((uint32_t)b->peers);
    swarm = announce ? (who < BUSY_EXTRA ? 0 : who % b->swarms)
                     : randombytes_uniform((uint32_t)b->swarms);
  }
  buf_add(out, hdr, sizeof(hdr));
  if (announce) {
    struct identity id;
    struct tmsg_announce a;
    uint8_t storage[128];
    struct buf p;
    make_key(&id, who);
    memset(&a, 0, sizeof(a));
    a.port = (uint16_t)(10000 + who % 50000);
    a.event = b->phase == 1 ? TMSG_EVENT_STARTED : TMSG_EVENT_PERIODIC;
    a.count = 1;
    content_of(a.items[0].content, swarm);
    a.items[0].role = who % 4 == 0 ? TMSG_ROLE_SEEDING : TMSG_ROLE_DOWNLOADING;
    buf_init_fixed(&p, storage, sizeof(storage));
    tmsg_announce_encode(&p, &a);
    envelope_seal(out, ENVELOPE_TRACKER_REQUEST, TMSG_ANNOUNCE, &id,
                  clock_wall_ms(), b->seq++, p.data, p.len);
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

static void on_write(uv_write_t *req, int status) {
  if (status != 0) {
    fprintf(stderr, "tracker-load: write: %s\n", uv_strerror(status));
    exit(1);
  }
  free(req);
}

static void fill(struct lconn *c) {
  struct bench *b = c->b;
  struct buf out;
  if (b->issued >= b->total || c->inflight >= WINDOW) {
    return;
  }
  buf_init(&out, 1 << 20);
  while (b->issued < b->total && c->inflight < WINDOW) {
    build_request(b, b->issued++, &out);
    c->sent_at[(c->head + c->inflight) % WINDOW] = uv_hrtime();
    c->inflight++;
  }
  uv_write_t *req = malloc(sizeof(*req) + out.len);
  memcpy(req + 1, out.data, out.len);
  uv_buf_t ub = uv_buf_init((char *)(req + 1), (unsigned)out.len);
  buf_free(&out);
  uv_write(req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
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
    fprintf(stderr, "tracker-load: tracker closed a connection: %s\n",
            uv_strerror((int)n));
    exit(1);
  }
  while (left > 0) {
    const uint8_t *f;
    size_t flen, used;
    int r = frame_decoder_next(&c->dec, p, left, &used, &f, &flen);
    p += used;
    left -= used;
    if (r < 0) {
      fprintf(stderr, "tracker-load: bad frame from tracker\n");
      exit(1);
    }
    if (r == 0) {
      break;
    }
    /* Reply type is byte 2 of the envelope. */
    if (flen < 3 || f[2] == TMSG_ERROR) {
      b->errors++;
    }
    b->lat[b->done++] = uv_hrtime() - c->sent_at[c->head];
    c->head = (c->head + 1) % WINDOW;
    c->inflight--;
  }
  if (b->done == b->total) {
    uv_stop(&b->loop);
    return;
  }
  fill(c);
}

static void on_connect(uv_connect_t *req, int status) {
  struct lconn *c = req->data;
  free(req);
  if (status != 0) {
    fprintf(stderr, "tracker-load: connect: %s\n", uv_strerror(status));
    exit(1);
  }
  c->b->connected++;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (c->b->connected == c->b->nconns) {
    uv_stop(&c->b->loop);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

struct result {
  double rps, p50_us, p99_us, cpu_us;
};

static struct result run_phase(struct bench *b, pid_t pid, int phase,
                               uint64_t total) {
  struct result r;
  b->phase = phase;
  b->total = total;
  b->issued = b->done = b->errors = 0;
  b->lat = calloc(total, sizeof(*b->lat));
  double cpu0 = proc_cpu_s(pid);
  uint64_t t0 = uv_hrtime();
  for (unsigned i = 0; i < b->nconns; i++) {
    fill(&b->conns[i]);
  }
  uv_run(&b->loop, UV_RUN_DEFAULT);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  double cpu = proc_cpu_s(pid) - cpu0;
  qsort(b->lat, total, sizeof(*b->lat), cmp_u64);
  r.rps = (double)total / secs;
  r.p50_us = (double)b->lat[total / 2] / 1e3;
  r.p99_us = (double)b->lat[total * 99 / 100] / 1e3;
  r.cpu_us = cpu * 1e6 / (double)total;
  if (b->errors != 0) {
    fprintf(stderr, "tracker-load: phase %d: %llu error replies\n", phase,
            (unsigned long long)b->errors);
  }
  free(b->lat);
  b->lat = NULL;
  return r;
}

/* One Ed25519 verify plus one sign over an announce-sized message. */
static double crypto_cost_us(void) {
  struct identity id;
  uint8_t msg[160], sig[64];
  const int n = 2000;
  make_key(&id, 424242);
  randombytes_buf(msg, sizeof(msg));
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < n; i++) {
    msg[0] = (uint8_t)i;
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), id.sk);
    if (crypto_sign_verify_detached(sig, msg, sizeof(msg), id.pk) != 0) {
      abort();
    }
  }
  identity_close(&id);
  return (double)(uv_hrtime() - t0) / 1e3 / n;
}

int main(int argc, char **argv) {
  static struct bench b;
  uint64_t peers =
      benchutil_arg_ul("tracker-load", argc, argv, "--peers", 1000000);
  uint64_t lookups =
      benchutil_arg_ul("tracker-load", argc, argv, "--lookups", 200000);
  uint64_t mix = benchutil_arg_ul("tracker-load", argc, argv, "--mix", 200000);
  unsigned conns =
      (unsigned)benchutil_arg_ul("tracker-load", argc, argv, "--conns", 64);
  const char *bin = arg_s(argc, argv, "--tracker", "build/bin/shoal-tracker");
  char dir[] = "/tmp/shoal-bench-tracker-XXXXXX";
  int rc = 1;

  if (sodium_init() < 0 || conns > MAX_CONNS) {
    fprintf(stderr, "tracker-load: bad set-up (at most %d connections)\n",
            MAX_CONNS);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  b.swarms = benchutil_arg_ul("tracker-load", argc, argv, "--swarms", 10000);
  b.peers = peers;
  b.seq = envelope_seq_start(clock_wall_ms());
  if (mkdtemp(dir) == NULL) {
    perror("tracker-load: mkdtemp");
    return 1;
  }
  pid_t pid = start_tracker(bin, dir, &b.port);
  if (pid < 0) {
    fprintf(stderr, "tracker-load: could not start %s\n", bin);
    goto out;
  }
  long rss0 = proc_status_kb(pid, "VmRSS:");

  uv_loop_init(&b.loop);
  b.nconns = conns;
  for (unsigned i = 0; i < conns; i++) {
    struct lconn *c = &b.conns[i];
    struct sockaddr_in sa;
    uv_connect_t *req = malloc(sizeof(*req));
    c->b = &b;
    frame_decoder_init(&c->dec, FRAME_MAX_DEFAULT);
    uv_tcp_init(&b.loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    req->data = c;
    uv_ip4_addr("127.0.0.1", b.port, &sa);
    uv_tcp_connect(req, &c->tcp, (const struct sockaddr *)&sa, on_connect);
  }
  uv_run(&b.loop, UV_RUN_DEFAULT);

  double crypto = crypto_cost_us();
  struct result reg = run_phase(&b, pid, 1, peers);
  long rss1 = proc_status_kb(pid, "VmRSS:");
  struct result look = run_phase(&b, pid, 2, lookups);
  struct result mixr = run_phase(&b, pid, 3, mix);
  long hwm = proc_status_kb(pid, "VmHWM:");
  double per_peer = (double)(rss1 - rss0) * 1024.0 / (double)peers;

  printf("bench/tracker-load: %llu peers over %llu swarms (+%d in the busy "
         "one), %u connections x %d in flight\n",
         (unsigned long long)peers, (unsigned long long)b.swarms, BUSY_EXTRA,
         conns, WINDOW);
  printf("  Ed25519 verify + sign (this run)   %8.1f us\n", crypto);
  printf("  %-10s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  tracker CPU "
         "%6.1f us/req\n",
         "register", reg.rps, reg.p50_us, reg.p99_us, reg.cpu_us);
  printf("  %-10s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  tracker CPU "
         "%6.1f us/req\n",
         "lookup", look.rps, look.p50_us, look.p99_us, look.cpu_us);
  printf("  %-10s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  tracker CPU "
         "%6.1f us/req\n",
         "mix 20/80", mixr.rps, mixr.p50_us, mixr.p99_us, mixr.cpu_us);
  printf("  CPU per announce / crypto cost     %8.2f  (target <= 1.30) %s\n",
         reg.cpu_us / crypto,
         reg.cpu_us / crypto <= 1.3 ? "ok" : "ABOVE TARGET");
  printf("  CPU per busy-swarm lookup          %8.1f us (target <= 30) %s\n",
         look.cpu_us, look.cpu_us <= 30 ? "ok" : "ABOVE TARGET");
  printf("  memory per registered peer         %8.1f B  (target <= 160) %s\n",
         per_peer, per_peer <= 160 ? "ok" : "ABOVE TARGET");
  printf("  tracker peak RSS                   %8.1f MiB (start %.1f MiB)\n",
         (double)hwm / 1024.0, (double)rss0 / 1024.0);
  rc = 0;

out:
  if (pid > 0) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
  }
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "tracker-load: could not remove %s\n", dir);
  }
  return rc;
}
