/* bench/swarmsim: shoal's swarm at any size, by discrete-event simulation.
 *
 * Runs the peer's real piece picker, choker, HAVE pacing and request
 * pacing (linked unchanged) over a model network of upload and download
 * caps and a latency, with no sockets and no threads (bench/lib/simswarm.c
 * says what is modelled and what is not; docs/simulation.md has the
 * figures and how they compare with bench/compare.sh's namespaced runs).
 * One origin seeds a file to N downloaders that all start at 0, or arrive
 * as a Poisson process and leave some time after they complete.
 *
 * For each N and repetition it prints N, the file size, the rates, the
 * peer-to-peer bound max(F/u_s, F/d_min, N F/(u_s + sum u_i)), the last
 * completion D, D / bound, the mean and longest download, and the run's
 * own wall time and events; with --reps > 1 a median line per N follows.
 *
 * usage: swarmsim [--n "4 8 16"] [--size 64M] [--origin-up 40mbit]
 *                 [--peer-up 10mbit] [--peer-down RATE] [--latency-ms 1]
 *                 [--hetero | --hetero-compare] [--max-peers 50]
 *                 [--give-way]
 *                 [--mtu 1500] [--seed 1] [--reps 1]
 *                 [--arrival-rate PER_S] [--linger S]
 *                 [--progress S] [--bytes] [--max-events N]
 *                 [--max-time S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/lib/benchutil.h"
#include "bench/lib/simswarm.h"
#include "common/error.h"

#define MAX_NS 64
#define MAX_REPS 1000

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: swarmsim [options]\n"
      "  --n \"LIST\"         downloader counts (\"1 2 4 8 16\")\n"
      "  --size S           file size, suffixes K M G (64M)\n"
      "  --origin-up RATE   origin upload cap: bit kbit mbit gbit (40mbit)\n"
      "  --peer-up RATE     downloader upload cap (10mbit)\n"
      "  --peer-down RATE   downloader download cap (none)\n"
      "  --latency-ms MS    one-way latency between any two hosts (1)\n"
      "  --hetero           uploads: a quarter at 4x --peer-up, half at 1x,\n"
      "                     a quarter at 0.5x\n"
      "  --hetero-compare   uploads as bench/compare.sh --hetero: the\n"
      "                     even-numbered downloaders at a quarter\n"
      "  --max-peers N      sessions per swarm (50, the peer's default)\n"
      "  --give-way         a full swarm lets an inbound peer take its\n"
      "                     oldest dial's slot, and looks up again in 1 s\n"
      "                     while full of dials (issue 18's rule)\n"
      "  --mtu BYTES        link MTU (1500)\n"
      "  --seed N           the random stream (1); repetition r uses N + r\n"
      "  --reps R           repetitions per N (1)\n"
      "  --arrival-rate X   Poisson arrivals, X a second (all at 0)\n"
      "  --linger S         with arrivals: leave S s after completing\n"
      "                     (stay)\n"
      "  --progress S       print the bytes held together every S s\n"
      "  --bytes            after each run, where the upload capacity went\n"
      "  --max-events N     give up past N events (4G)\n"
      "  --max-time S       give up past S s of simulated time (derived)\n");
}

/* A rate in tc's units (bit kbit mbit gbit, decimal; bare: bits) in bytes a
 * second, or 0 when it does not parse. */
static uint64_t parse_rate(const char *s) {
  char *end;
  double v = strtod(s, &end);
  double mul;
  if (end == s || v <= 0) {
    return 0;
  }
  if (*end == '\0' || strcmp(end, "bit") == 0) {
    mul = 1;
  } else if (strcmp(end, "kbit") == 0) {
    mul = 1e3;
  } else if (strcmp(end, "mbit") == 0) {
    mul = 1e6;
  } else if (strcmp(end, "gbit") == 0) {
    mul = 1e9;
  } else {
    return 0;
  }
  v *= mul;
  if (v < 8000 || v > 100e9) {
    return 0;
  }
  return (uint64_t)(v / 8);
}

static double parse_num(const char *s, double lo, double hi) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
    return -1;
  }
  return v;
}

static int parse_ns(const char *s, unsigned *ns, unsigned *count) {
  *count = 0;
  while (*s != '\0') {
    char *end;
    unsigned long v;
    if (*s == ' ' || *s == ',') {
      s++;
      continue;
    }
    v = strtoul(s, &end, 10);
    if (end == s || v == 0 || v > 1000000 || *count == MAX_NS) {
      return -1;
    }
    ns[(*count)++] = (unsigned)v;
    s = end;
  }
  return *count > 0 ? 0 : -1;
}

static void print_progress(void *arg, const struct simswarm_progress *p) {
  (void)arg;
  printf("progress t=%.1f held_MiB=%.1f complete=%u started=%u "
         "open_sessions=%.1f without_session=%u without_manifest=%u "
         "idle_up=%.3f\n",
         p->t, (double)p->held / 1048576.0, p->done, p->started, p->mean_open,
         p->no_open, p->fetching, p->idle_up);
}

/* Each part as a share of the capacity, and what none of them holds. */
static void print_bytes(const struct simswarm_bytes *b) {
  double c = b->capacity > 0 ? b->capacity / 100.0 : 1;
  double rest = b->capacity - b->payload - b->frames - b->control - b->acks -
                b->idle - b->lost;
  printf("bytes capacity_MiB=%.1f payload=%.2f%% frames=%.2f%% "
         "control=%.2f%% (have=%.2f%%) acks=%.2f%% idle=%.2f%% lost=%.2f%% "
         "rest=%.2f%%\n",
         b->capacity / 1048576.0, b->payload / c, b->frames / c, b->control / c,
         b->have / c, b->acks / c, b->idle / c, b->lost / c, rest / c);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  struct simswarm_config c;
  unsigned ns[MAX_NS], nn = 0;
  unsigned long reps = 1;
  double ratios[MAX_REPS];
  char down[32] = "none";
  int failed = 0;
  int show_bytes = 0;

  simswarm_random_install();
  simswarm_defaults(&c);
  if (parse_ns("1 2 4 8 16", ns, &nn) != 0) {
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    double x;
#define NEED_VALUE()                                                           \
  do {                                                                         \
    if (v == NULL) {                                                           \
      fprintf(stderr, "swarmsim: %s needs a value\n", a);                      \
      return 2;                                                                \
    }                                                                          \
    i++;                                                                       \
  } while (0)
#define BAD(what)                                                              \
  do {                                                                         \
    fprintf(stderr, "swarmsim: bad %s '%s' (see --help)\n", what, v);          \
    return 2;                                                                  \
  } while (0)
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--n") == 0) {
      NEED_VALUE();
      if (parse_ns(v, ns, &nn) != 0) {
        BAD("--n");
      }
    } else if (strcmp(a, "--size") == 0) {
      NEED_VALUE();
      c.size = benchutil_parse_size(v, (uint64_t)1 << 40);
      if (c.size == 0) {
        BAD("--size");
      }
    } else if (strcmp(a, "--origin-up") == 0) {
      NEED_VALUE();
      if ((c.origin_up = parse_rate(v)) == 0) {
        BAD("--origin-up");
      }
    } else if (strcmp(a, "--peer-up") == 0) {
      NEED_VALUE();
      if ((c.peer_up = parse_rate(v)) == 0) {
        BAD("--peer-up");
      }
    } else if (strcmp(a, "--peer-down") == 0) {
      NEED_VALUE();
      if ((c.peer_down = parse_rate(v)) == 0) {
        BAD("--peer-down");
      }
    } else if (strcmp(a, "--latency-ms") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 0.001, 10000)) < 0) {
        BAD("--latency-ms");
      }
      c.latency_us = (uint32_t)(x * 1000);
    } else if (strcmp(a, "--hetero") == 0) {
      c.hetero = SIMSWARM_MIX;
    } else if (strcmp(a, "--give-way") == 0) {
      c.give_way = 1;
    } else if (strcmp(a, "--hetero-compare") == 0) {
      c.hetero = SIMSWARM_HALF_QUARTER;
    } else if (strcmp(a, "--max-peers") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 1, 256)) < 0) {
        BAD("--max-peers");
      }
      c.max_peers = (unsigned)x;
    } else if (strcmp(a, "--mtu") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 576, 65535)) < 0) {
        BAD("--mtu");
      }
      c.mtu = (unsigned)x;
    } else if (strcmp(a, "--seed") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 0, 1e15)) < 0) {
        BAD("--seed");
      }
      c.seed = (uint64_t)x;
    } else if (strcmp(a, "--reps") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 1, MAX_REPS)) < 0) {
        BAD("--reps");
      }
      reps = (unsigned long)x;
    } else if (strcmp(a, "--arrival-rate") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 1e-6, 1e6)) < 0) {
        BAD("--arrival-rate");
      }
      c.arrival_rate = x;
    } else if (strcmp(a, "--linger") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 0, 1e9)) < 0) {
        BAD("--linger");
      }
      c.linger_s = x;
    } else if (strcmp(a, "--bytes") == 0) {
      show_bytes = 1;
    } else if (strcmp(a, "--progress") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 0.01, 1e6)) < 0) {
        BAD("--progress");
      }
      c.progress_s = x;
      c.progress = print_progress;
    } else if (strcmp(a, "--max-events") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 1, 1e15)) < 0) {
        BAD("--max-events");
      }
      c.max_events = (uint64_t)x;
    } else if (strcmp(a, "--max-time") == 0) {
      NEED_VALUE();
      if ((x = parse_num(v, 1, 1e9)) < 0) {
        BAD("--max-time");
      }
      c.max_time_s = x;
    } else {
      fprintf(stderr, "swarmsim: unknown option '%s' (see --help)\n", a);
      return 2;
    }
#undef NEED_VALUE
#undef BAD
  }

  if (c.peer_down > 0) {
    snprintf(down, sizeof(down), "%.2f Mbit/s", (double)c.peer_down * 8 / 1e6);
  }
  printf("# swarmsim: size %.1f MiB, origin up %.2f Mbit/s, peer up %.2f "
         "Mbit/s%s, peer down %s, latency %.3f ms, max peers %u, "
         "MTU %u, seed %llu%s%s\n",
         (double)c.size / 1048576.0, (double)c.origin_up * 8 / 1e6,
         (double)c.peer_up * 8 / 1e6,
         c.hetero == SIMSWARM_MIX ? " (hetero: 1/4 at 4x, 1/2 at 1x, 1/4 at "
                                    "0.5x)"
         : c.hetero == SIMSWARM_HALF_QUARTER ? " (hetero: even-numbered at 1/4)"
                                             : "",
         down, (double)c.latency_us / 1000.0, c.max_peers, c.mtu,
         (unsigned long long)c.seed,
         c.arrival_rate > 0 ? " (Poisson arrivals)" : "",
         c.give_way ? ", dials give way" : "");
  printf("%6s %4s %9s %9s %9s %8s %9s %9s %7s %9s %7s %8s %11s %8s\n", "N",
         "rep", "bound_s", "D_s", "D/bound", "mean_s", "max_s", "first_s",
         "mf_s", "origin_MiB", "waste%", "refused", "events", "wall_s");
  for (unsigned k = 0; k < nn; k++) {
    unsigned nok = 0;
    for (unsigned long r = 0; r < reps; r++) {
      struct simswarm_config rc = c;
      struct simswarm_result res;
      char msg[300];
      int err;
      rc.n = ns[k];
      rc.seed = c.seed + r;
      err = simswarm_run(&rc, &res, msg, sizeof(msg));
      if (err != 0) {
        fprintf(stderr, "swarmsim: N=%u rep %lu: %s\n", ns[k], r + 1, msg);
        failed = 1;
        continue;
      }
      ratios[nok++] = res.d_s / res.bound_s;
      printf("%6u %4lu %9.3f %9.3f %9.4f %8.3f %9.3f %9.3f %7.3f %9.1f %7.3f "
             "%8llu %11llu %8.2f\n",
             ns[k], r + 1, res.bound_s, res.d_s, res.d_s / res.bound_s,
             res.mean_s, res.max_s, res.first_s, res.manifest_s,
             (double)res.origin_bytes / 1048576.0,
             res.total_bytes > 0
                 ? 100.0 * (double)res.wasted_bytes / (double)res.total_bytes
                 : 0.0,
             (unsigned long long)res.refused, (unsigned long long)res.events,
             res.wall_s);
      if (show_bytes) {
        print_bytes(&res.bytes);
      }
      fflush(stdout);
    }
    if (reps > 1 && nok > 0) {
      qsort(ratios, nok, sizeof(ratios[0]), cmp_double);
      printf("%6u  med D/bound %.4f (min %.4f, max %.4f, %u runs)\n", ns[k],
             nok % 2 ? ratios[nok / 2]
                     : (ratios[nok / 2 - 1] + ratios[nok / 2]) / 2,
             ratios[0], ratios[nok - 1], nok);
    }
  }
  return failed ? 1 : 0;
}
