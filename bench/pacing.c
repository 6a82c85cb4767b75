/* bench/pacing: how the real binaries pace their HAVEs and size a rate-
 * limited upload's send buffer, measured against the wall clock.
 *
 * These figures were once asserted by it_peer (haves_come_in_batches,
 * seeder_hears_haves_once_a_second, send_buffer_follows_the_upload_rate);
 * a wall clock on a shared machine made them flaky there, and the rules
 * behind them are now unit-tested with a clock the tests control
 * (tests/test_haves.c, tests/test_pacing.c). This program measures what
 * the binaries do with them, and prints it.
 *
 * Over 127.0.0.1, with $SHOAL_BIN (default build/bin): shoal-tracker
 * (announce interval 2 s), a seeder of a file of random bytes held to
 * --rate, one downloader, and beside them a fake peer (tests/lib/fake.c)
 * that records every HAVE it is sent and when. Two runs:
 *
 *   eager   the fake holds nothing and is not interested: a peer that may
 *           want each new chunk, which hears of them every NODE_HAVE_MS;
 *           during this run `ss` is polled every 50 ms for the largest
 *           send buffer ("tb") of the seeder's sockets to the downloader;
 *   seeder  the fake holds everything and chokes everyone: a peer that
 *           needs new chunks only for its seeding order, which hears every
 *           NODE_HAVE_SLOW_MS.
 *
 * For each: HAVEs and chunks, chunks per HAVE, full HAVEs (NODE_HAVE_BATCH
 * chunks), the time from the first HAVE to the last, and the gaps between
 * HAVEs (the smallest, the median, and how many are shorter than the
 * interval, full ones and the last, which follows completion at once, left
 * out). Then the largest send buffer beside a quarter second of the rate,
 * the bound the pacing rules keep (docs/design.md, "Bytes in flight").
 *
 * Figures are reported, not judged. Every process is stopped by PID and the
 * temp folder removed, also on failure. Exit 0 when both runs completed
 * with identical copies, 1 on failure, 2 on bad usage.
 *
 * Usage: pacing [--size N[k|M]] [--rate N[k|M]]   (8M and 2M)
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/lib/benchutil.h"
#include "common/identity.h"
#include "common/link.h"
#include "common/manifest.h"
#include "common/textid.h"
#include "peer/limits.h"
#include "peer/manifest_build.h"
#include "tests/lib/fake.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

#define START_MS 20000    /* a peer prints "listening" / "shared" */
#define COMPLETE_MS 90000 /* a download finishes */
#define EXIT_MS 15000     /* a signalled peer exits */
#define LINE_CAP PROC_LINE_MAX

struct bench {
  char dir[PROC_PATH_MAX];
  char peer_bin[PROC_PATH_MAX];
  struct tc_tracker t;
  int tracker_up;
  char tracker_addr[64];
  char tracker_key[TEXTID_STRLEN];
  struct proc procs[4];
  int nprocs;
  uint64_t size, rate;
  char rate_text[32];
};

/* The parts of one run's figures. */
struct haves_figures {
  unsigned msgs, full, chunks;
  uint64_t span_ms, min_gap_ms, median_gap_ms;
  unsigned short_gaps; /* gaps shorter than the interval */
  unsigned gaps;       /* gaps counted */
};

static int fail(const char *what) {
  fprintf(stderr, "pacing: %s\n", what);
  return -1;
}

static struct proc *start_peer(struct bench *b, const char *name,
                               const char *home, const char *const *args,
                               int nargs) {
  const char *argv[32];
  char home_path[PROC_PATH_MAX];
  int n = 0;
  if (b->nprocs >= (int)(sizeof(b->procs) / sizeof(b->procs[0]))) {
    return NULL;
  }
  tu_path(home_path, sizeof(home_path), b->dir, home);
  argv[n++] = b->peer_bin;
  for (int i = 0; i < nargs && n < 24; i++) {
    argv[n++] = args[i];
  }
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  argv[n++] = "--home";
  argv[n++] = home_path;
  argv[n++] = "--json";
  argv[n] = NULL;
  struct proc *p = &b->procs[b->nprocs];
  if (proc_start(p, b->dir, name, argv) != 0) {
    return NULL;
  }
  b->nprocs++;
  return p;
}

static void stop_peer(struct proc *p) {
  proc_signal(p, SIGTERM);
  if (proc_wait(p, EXIT_MS) < 0) {
    proc_kill(p);
  }
}

static void stop_all(struct bench *b) {
  for (int i = 0; i < b->nprocs; i++) {
    proc_kill(&b->procs[i]);
  }
  b->nprocs = 0;
  if (b->tracker_up) {
    tc_tracker_stop(&b->t);
    tc_tracker_cleanup(&b->t);
    b->tracker_up = 0;
  }
}

static int wait_event(struct proc *p, const char *ev, int timeout_ms,
                      char *line) {
  int rc = proc_wait_event(p, ev, NULL, NULL, timeout_ms, line, LINE_CAP);
  if (rc != 0) {
    fprintf(stderr, "pacing: %s: no \"%s\" event (%s)\n", p->name, ev,
            rc == -2 ? "it ended" : "timed out");
    proc_dump(p);
  }
  return rc;
}

static int listening_port(struct proc *p) {
  char line[LINE_CAP];
  uint64_t port;
  if (wait_event(p, "listening", START_MS, line) != 0 ||
      jsonl_u64(line, "port", &port) != 0 || port == 0 || port > 65535) {
    return -1;
  }
  return (int)port;
}

/* The largest send buffer (the kernel's sk_sndbuf, "tb" in ss's socket
 * memory) among the established TCP sockets with local port lport or
 * remote port rport: the seeder's sockets to the downloader, whichever
 * side dialled. Returns -1 when ss cannot be run. */
static long largest_send_buffer(int lport, int rport) {
  char cmd[160], buf[1024];
  long best = 0;
  snprintf(cmd, sizeof(cmd),
           "ss -Htmn state established '( sport = :%d or dport = :%d )' "
           "2>/dev/null",
           lport, rport);
  FILE *p = popen(cmd, "r");
  if (p == NULL) {
    return -1;
  }
  while (fgets(buf, sizeof(buf), p) != NULL) {
    const char *tb = strstr(buf, ",tb");
    if (tb != NULL && strstr(buf, "skmem:(") != NULL) {
      long v = strtol(tb + 3, NULL, 10);
      best = v > best ? v : best;
    }
  }
  int st = pclose(p);
  return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? best : -1;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The gaps between the HAVEs the fake recorded, but for those that begin
 * a full HAVE (the log was full, so it went out at once) and the last one
 * (it follows completion at once). */
static void figures(const struct fake *fk, uint64_t interval_ms,
                    struct haves_figures *out) {
  unsigned kept = out->msgs < FAKE_HAVES_KEPT ? out->msgs : FAKE_HAVES_KEPT;
  uint64_t *gaps = calloc(kept > 0 ? kept : 1, sizeof(*gaps));
  out->full = fk->have_full;
  out->span_ms = fk->have_last_ms - fk->have_first_ms;
  out->gaps = 0;
  out->short_gaps = 0;
  for (unsigned k = 1; gaps != NULL && k + 1 < kept; k++) {
    if (fk->have_size[k] == NODE_HAVE_BATCH) {
      continue;
    }
    uint64_t g = fk->have_at[k] - fk->have_at[k - 1];
    gaps[out->gaps++] = g;
    out->short_gaps += g < interval_ms;
  }
  if (gaps != NULL && out->gaps > 0) {
    qsort(gaps, out->gaps, sizeof(*gaps), cmp_u64);
    out->min_gap_ms = gaps[0];
    out->median_gap_ms = gaps[out->gaps / 2];
  }
  free(gaps);
}

/* One run: a seeder of a fresh content held to the rate, a downloader,
 * and the fake beside them, holding everything (seeding) or nothing.
 * Polls ss when sndbuf is not NULL (*sndbuf: the largest seen, -1 when ss
 * cannot run; *looks: how often it was seen). */
static int run_once(struct bench *b, const char *tag, int seeding,
                    uint64_t seed, struct haves_figures *hf, long *sndbuf,
                    unsigned *looks) {
  char rel[128], src[PROC_PATH_MAX], out[PROC_PATH_MAX], key[PROC_PATH_MAX];
  char line[LINE_CAP], link[LINK_MAX_CHARS + 1];
  char home_s[64], home_d[64];
  struct identity publisher;
  struct manifest *m = NULL;
  struct fake *fk = NULL;
  uint8_t *data = malloc(b->size);
  int rc = -1;

  if (data == NULL) {
    return fail("out of memory");
  }
  identity_generate(&publisher);
  /* The test is the publisher: the seeder gets its key, so it shares the
   * very content ID the fake announces. */
  snprintf(rel, sizeof(rel), "src-%s/pace.bin", tag);
  snprintf(home_s, sizeof(home_s), "home-s-%s", tag);
  snprintf(home_d, sizeof(home_d), "home-d-%s", tag);
  tu_fill(data, b->size, seed);
  tu_write_file(b->dir, rel, data, b->size);
  tu_path(src, sizeof(src), b->dir, rel);
  tu_path(key, sizeof(key), b->dir, home_s);
  int made = mkdir(key, 0700) == 0;
  snprintf(rel, sizeof(rel), "%s/identity.key", home_s);
  tu_path(key, sizeof(key), b->dir, rel);
  snprintf(rel, sizeof(rel), "out-%s", tag);
  tu_path(out, sizeof(out), b->dir, rel);
  if (!made || mkdir(out, 0700) != 0 || identity_save(&publisher, key) != 0 ||
      manifest_build(src, &publisher, NULL, &m) != 0) {
    fail("cannot set the content up");
    goto done;
  }
  fk = fake_start(&b->t, m->id, m->encoded, m->encoded_len, data, b->size,
                  m->chunk_log2, m->chunk_count, seeding);
  if (fk == NULL) {
    fail("cannot start the fake peer");
    goto done;
  }
  atomic_store(&fk->choking, seeding);

  const char *share[] = {"share",         src,
                         "--tracker",     b->tracker_addr,
                         "--tracker-key", b->tracker_key,
                         "--upload-rate", b->rate_text};
  struct proc *seeder = start_peer(b, "seeder", home_s, share, 8);
  int sport = seeder != NULL ? listening_port(seeder) : -1;
  if (sport < 0 || wait_event(seeder, "shared", START_MS, line) != 0 ||
      jsonl_str(line, "link", link, sizeof(link)) != 0) {
    fail("the seeder did not share");
    goto done;
  }
  const char *get[] = {"get", link, "-o", out, "--seed"};
  struct proc *dl = start_peer(b, "dl", home_d, get, 5);
  int dport = dl != NULL ? listening_port(dl) : -1;
  if (dport < 0) {
    fail("the downloader did not start");
    goto done;
  }
  uint64_t deadline = proc_now_ms() + COMPLETE_MS;
  while (proc_count_event(dl, "complete", NULL, NULL) == 0 &&
         proc_now_ms() < deadline && proc_alive(dl)) {
    if (sndbuf != NULL && *sndbuf >= 0) {
      long v = largest_send_buffer(sport, dport);
      if (v < 0) {
        *sndbuf = -1;
      } else if (v > 0) {
        (*looks)++;
        *sndbuf = v > *sndbuf ? v : *sndbuf;
      }
    }
    proc_pause_ms(50);
  }
  if (proc_count_event(dl, "complete", NULL, NULL) == 0) {
    fail("the download did not complete");
    proc_dump(dl);
    goto done;
  }
  /* The copy is the file. */
  snprintf(rel, sizeof(rel), "out-%s/pace.bin", tag);
  tu_path(out, sizeof(out), b->dir, rel);
  size_t got = 0;
  uint8_t *copy = tu_read_file(out, &got);
  int same = copy != NULL && got == b->size && memcmp(copy, data, got) == 0;
  free(copy);
  if (!same) {
    fail("the copy differs from the file");
    goto done;
  }
  /* The last HAVE follows completion at once; wait for it. */
  deadline = proc_now_ms() + 5000;
  while (atomic_load(&fk->have_chunks) < m->chunk_count &&
         proc_now_ms() < deadline) {
    proc_pause_ms(10);
  }
  fake_halt(fk);
  memset(hf, 0, sizeof(*hf));
  hf->msgs = atomic_load(&fk->have_msgs);
  hf->chunks = m->chunk_count;
  if (atomic_load(&fk->have_chunks) != m->chunk_count ||
      atomic_load(&fk->have_bad) != 0) {
    fail("the fake was not told of every chunk exactly once");
    goto done;
  }
  figures(fk, seeding ? NODE_HAVE_SLOW_MS : NODE_HAVE_MS, hf);
  stop_peer(dl);
  stop_peer(seeder);
  rc = 0;

done:
  for (int i = 0; i < b->nprocs; i++) {
    proc_kill(&b->procs[i]);
  }
  b->nprocs = 0;
  fake_stop(fk);
  manifest_free(m);
  identity_close(&publisher);
  free(data);
  return rc;
}

static void print_haves(const char *title, uint64_t interval_ms,
                        const struct haves_figures *hf) {
  printf("  %-7s %u HAVEs for %u chunks (%.1f a HAVE), %u full, over "
         "%" PRIu64 " ms\n",
         title, hf->msgs, hf->chunks,
         hf->msgs > 0 ? (double)hf->chunks / hf->msgs : 0.0, hf->full,
         hf->span_ms);
  printf("          gaps: smallest %" PRIu64 " ms, median %" PRIu64
         " ms; %u of %u under %" PRIu64 " ms\n",
         hf->min_gap_ms, hf->median_gap_ms, hf->short_gaps, hf->gaps,
         interval_ms);
}

int main(int argc, char **argv) {
  struct bench b;
  struct haves_figures eager, seeder;
  long sndbuf = 0;
  unsigned looks = 0;
  const char *bin = getenv("SHOAL_BIN");
  const char *extra[] = {"--interval", "2",    "--rate", "1000",
                         "--burst",    "5000", NULL};
  int rc = 1;

  memset(&b, 0, sizeof(b));
  b.size = 8u << 20;
  b.rate = 2u << 20;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
      b.size = benchutil_parse_size(argv[++i], 1ull << 30);
    } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
      b.rate = benchutil_parse_size(argv[++i], 1ull << 30);
    } else {
      fprintf(stderr, "usage: pacing [--size N[k|M]] [--rate N[k|M]]\n");
      return 2;
    }
    if (b.size == 0 || b.rate == 0) {
      fprintf(stderr, "pacing: sizes and rates are 1..1G, with k or M\n");
      return 2;
    }
  }
  snprintf(b.rate_text, sizeof(b.rate_text), "%" PRIu64, b.rate);
  if (bin == NULL || bin[0] == '\0') {
    bin = "build/bin";
    setenv("SHOAL_BIN", bin, 1);
  }
  snprintf(b.peer_bin, sizeof(b.peer_bin), "%s/shoal-peer", bin);
  if (access(b.peer_bin, X_OK) != 0) {
    fprintf(stderr, "pacing: no %s (make, or set SHOAL_BIN)\n", b.peer_bin);
    return 1;
  }
  tu_tmpdir(b.dir, sizeof(b.dir));
  if (tc_tracker_start(&b.t, 0, extra) != 0) {
    fail("the tracker did not start");
    goto out;
  }
  b.tracker_up = 1;
  snprintf(b.tracker_addr, sizeof(b.tracker_addr), "127.0.0.1:%d", b.t.port);
  textid_encode(TEXTID_KEY, b.t.key, b.tracker_key);

  printf("pacing: %" PRIu64 " KiB from a seeder held to %" PRIu64
         " KiB/s, one downloader and a fake peer, over 127.0.0.1\n",
         b.size >> 10, b.rate >> 10);
  sndbuf = 0;
  if (run_once(&b, "eager", 0, 5, &eager, &sndbuf, &looks) != 0 ||
      run_once(&b, "seeder", 1, 6, &seeder, NULL, NULL) != 0) {
    goto out;
  }
  print_haves("eager", NODE_HAVE_MS, &eager);
  print_haves("seeder", NODE_HAVE_SLOW_MS, &seeder);
  if (sndbuf < 0) {
    printf("  send buffer: ss (iproute2) cannot run here\n");
  } else {
    printf("  send buffer: largest %ld bytes in %u looks = %.2f x a quarter "
           "second of the rate (%" PRIu64 " bytes)\n",
           sndbuf, looks, (double)sndbuf / (double)(b.rate / 4), b.rate / 4);
  }
  rc = 0;

out:
  stop_all(&b);
  tu_rmtree(b.dir);
  return rc;
}
