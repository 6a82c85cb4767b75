/* The swarm simulator (simswarm.c): one content distributed from an origin
 * to N downloaders over a model network, in simulated time, with the real
 * peer's policy modules deciding.
 *
 * Pure computation: no sockets, no threads, no clock but the simulated
 * one (the wall time of a run is measured only to be reported). The
 * picker (peer/picker.c), the choker (peer/choker.c), the HAVE pacing
 * (peer/haves.c), the pipeline depth and request timeouts (peer/pacing.c)
 * and the rate meters (peer/rate.c) are the peer's own objects, linked
 * unchanged; simswarm.c plays the parts of swarm.c, requests.c, session.c
 * and announce.c that call them, and a tracker's random sample. What is
 * modelled and what is not is listed at the top of simswarm.c and in
 * docs/simulation.md.
 *
 * Randomness: every random choice (the picker's tie-breaks, the choker's
 * optimistic pick, the tracker's sample, Poisson arrivals) comes from one
 * generator seeded by the run's seed, so a run is reproducible.
 * simswarm_random_install() makes libsodium's randombytes (which the
 * picker calls) draw from it, and initialises libsodium; call it once,
 * before anything else calls sodium_init.
 */
#ifndef SHOAL_BENCH_SIMSWARM_H
#define SHOAL_BENCH_SIMSWARM_H

#include <stdint.h>

/* How the downloaders' upload rates vary. */
enum simswarm_hetero {
  SIMSWARM_UNIFORM = 0, /* every downloader at peer_up */
  /* A quarter at 4x peer_up, half at 1x, a quarter at 0.5x (downloader i:
   * i % 4 == 1 fast, i % 4 == 3 slow, the rest 1x; so every N that is a
   * multiple of 4 has exactly that mix). */
  SIMSWARM_MIX = 1,
  /* bench/compare.sh --hetero: the even-numbered downloaders at a quarter
   * of peer_up. */
  SIMSWARM_HALF_QUARTER = 2,
};

/* The swarm at one moment (simswarm_config.progress). */
struct simswarm_progress {
  double t;          /* seconds of simulated time */
  uint64_t held;     /* bytes the downloaders hold together */
  unsigned done;     /* downloaders complete */
  unsigned started;  /* downloaders started */
  double mean_open;  /* open sessions per started downloader */
  unsigned no_open;  /* started downloaders without an open session */
  unsigned fetching; /* started downloaders without the manifest */
  double idle_up;    /* share of the upload capacity that sent nothing
                        since the last report */
};

/* Where the upload capacity of a run went, in bytes: every host's rate
 * from its start to the end of the run (or its leaving), against what
 * its uplink carried. The parts add up to the capacity within the
 * simulator's tick (a host's overheads of one tick come off its next). */
struct simswarm_bytes {
  double capacity; /* sum of each host's upload rate times its time */
  double payload;  /* DATA blocks and manifests delivered (some wasted) */
  double frames;   /* their frames, TCP/IP and Ethernet headers */
  double control;  /* every other message, a packet each */
  double have;     /* ... of which HAVEs */
  double acks;     /* acknowledgements of what each host received */
  double idle;     /* capacity while a host had nothing to send */
  double lost;     /* bytes of transfers cut short (a session closed) */
};

struct simswarm_config {
  unsigned n;          /* downloaders (Poisson mode: arrivals in all) */
  uint64_t size;       /* the file's bytes */
  uint64_t origin_up;  /* the origin's upload cap, bytes a second */
  uint64_t peer_up;    /* a downloader's upload cap, bytes a second */
  uint64_t peer_down;  /* a downloader's download cap; 0: none */
  uint32_t latency_us; /* one way, between any two hosts */
  enum simswarm_hetero hetero;
  unsigned max_peers; /* sessions per swarm (--max-peers); 0: the default */
  /* Issue 18's rule for full swarms (commit f8b4a54, not yet on main): an
   * inbound hello in a full swarm takes the slot of our oldest dial not
   * yet through, and a swarm full of dials looks up again after 1 s, not
   * 30 s. 0: main's rules (refuse; wait 30 s). */
  int give_way;
  unsigned mtu;        /* bytes; the caps count whole Ethernet frames */
  double arrival_rate; /* 0: every downloader starts at 0; else Poisson
                          arrivals a second */
  double linger_s;     /* Poisson mode: a peer leaves this long after it
                          completes; negative: it stays */
  uint64_t seed;
  /* Every progress_s of simulated time (0: never), progress(arg, p): the
   * curve to set beside the real peers' progress events. */
  double progress_s;
  void (*progress)(void *arg, const struct simswarm_progress *p);
  void *progress_arg;
  uint64_t max_events; /* an error past this many events */
  double max_time_s;   /* an error past this much simulated time */
};

struct simswarm_result {
  double bound_s;        /* max(F/u_s, F/d_min, N F/(u_s + sum u_i)) */
  double d_s;            /* the last completion, from 0 */
  double mean_s;         /* mean download time (completion - start) */
  double max_s;          /* longest download time */
  double first_s;        /* the first completion, from 0 */
  double manifest_s;     /* mean wait from a downloader's start to its
                            whole manifest, over those that have it */
  uint64_t up_sum;       /* u_s + sum u_i, bytes a second */
  unsigned complete;     /* downloaders that hold every chunk at the end */
  uint64_t events;       /* events processed */
  double wall_s;         /* the run's own wall-clock time */
  uint64_t origin_bytes; /* payload the origin uploaded */
  uint64_t total_bytes;  /* payload every host uploaded */
  uint64_t wasted_bytes; /* blocks received and thrown away */
  struct simswarm_bytes bytes;
  uint64_t refused; /* dials refused for want of a slot */
  unsigned chunks;  /* the manifest's chunks */
  unsigned chunk_log2;
};

/* The defaults: bench/compare.sh's study (64 MiB, 40 Mbit/s origin,
 * 10 Mbit/s downloaders, no download cap, MTU 1500), 1 ms one way. */
void simswarm_defaults(struct simswarm_config *c);

/* Makes libsodium's randombytes draw from the simulator's generator. */
void simswarm_random_install(void);

/* The peer-to-peer bound of c, in seconds (with the upload rates the run
 * would give its downloaders). */
double simswarm_bound(const struct simswarm_config *c);
/* Downloader i's (1..n) upload cap under c, bytes a second. */
uint64_t simswarm_peer_up(const struct simswarm_config *c, unsigned i);

/* The bandwidth model: the rate of one transfer when its uploader's
 * capacity up is shared evenly by n_up transfers and its downloader's cap
 * down (0: none) by n_down. */
double simswarm_share(double up, unsigned n_up, double down, unsigned n_down);

/* Runs c to the end (every downloader complete; Poisson mode: every
 * arrival complete). Returns 0 with *out filled; SHOAL_EINVAL for a
 * config it cannot run; SHOAL_ETIMEDOUT when c->max_time_s or
 * c->max_events passed first (out holds the figures so far, and err_msg
 * says which, with how many were complete); SHOAL_ENOMEM. err_msg (may
 * be NULL) gets a sentence on failure. */
int simswarm_run(const struct simswarm_config *c, struct simswarm_result *out,
                 char *err_msg, unsigned err_cap);

#endif
