/* The fluid model of a swarm with arrivals and departures (fluid.c): Qiu
 * and Srikant's model of a BitTorrent-like swarm ("Modeling and Performance
 * Analysis of BitTorrent-Like Peer-to-Peer Networks", SIGCOMM 2004), with
 * the origin added as a permanent seeder of its own upload rate:
 *
 *   dx/dt = lambda(t) - theta x - r(x, y)
 *   dy/dt = r(x, y) - gamma y
 *   r(x, y) = min(c x, mu (eta x + y) + mu0)
 *
 * x is the number of downloaders, y the number of downloaders that have
 * completed and still seed (the origin is not counted in y), r the rate at
 * which downloads complete. Every rate is in files a second: c = a
 * downloader's download cap / F, mu = its upload cap / F, mu0 = the
 * origin's upload cap / F; lambda is arrivals a second, theta the rate at
 * which a downloader gives up, gamma = 1 / (time a seeder stays), eta the
 * share of a downloader's upload that is useful to others (1: all).
 *
 * Pure computation: no clock, no I/O. docs/comparison.md ("Flash crowd
 * and churn") derives the steady state and sets the model beside
 * bench/compare.sh --arrivals.
 */
#ifndef SHOAL_BENCH_FLUID_H
#define SHOAL_BENCH_FLUID_H

/* Largest rate accepted, in files or arrivals a second: far above any
 * swarm this machine can run, small enough that c * dt stays meaningful. */
#define FLUID_RATE_MAX 1e6
/* Largest number of arrivals in total. */
#define FLUID_TOTAL_MAX 1e9

struct fluid_params {
  double lambda; /* arrivals a second while arrivals last */
  double theta;  /* a downloader's abort rate, a second */
  double c;      /* a downloader's download rate, files a second (> 0) */
  double mu;     /* a downloader's upload rate, files a second */
  double eta;    /* effectiveness of downloaders' uploads, 0 to 1 */
  double gamma;  /* a seeder's departure rate, a second; 0: seeders stay */
  double mu0;    /* the origin's upload rate, files a second */
  double total;  /* arrivals stop after this many; 0: they never stop */
};

/* The state at time t. arrived, completed and departed integrate the flows
 * (lambda, r, gamma y + theta x), so that x + y + departed = arrived at
 * all times, up to the integrator's rounding. */
struct fluid_state {
  double t;
  double x;
  double y;
  double arrived;
  double completed;
  double departed;
  double x_integral; /* integral of x dt: downloader-seconds so far */
};

/* Which term of r binds in the steady state. */
enum fluid_regime {
  FLUID_DOWNLOAD_BOUND = 0, /* r = c x: the downloaders' own caps */
  FLUID_UPLOAD_BOUND = 1,   /* r = mu (eta x + y) + mu0: the uploaders */
  FLUID_NO_STEADY = 2,      /* gamma = 0: seeders pile up without end */
};

struct fluid_steady {
  enum fluid_regime regime;
  double x; /* downloaders */
  double y; /* seeders (0 when there is no steady state) */
  double T; /* mean time a downloader spends in the swarm, x / lambda */
};

/* 0 when every field is finite and in range (rates 0 to FLUID_RATE_MAX,
 * c and lambda above 0, eta in [0, 1], total 0 to FLUID_TOTAL_MAX), else
 * SHOAL_EINVAL. */
int fluid_check(const struct fluid_params *p);

/* The time at which arrivals stop (total / lambda), or INFINITY when total
 * is 0. */
double fluid_cutoff(const struct fluid_params *p);

/* The arrival rate at time t: lambda before the cut-off, 0 from it on. */
double fluid_lambda_at(const struct fluid_params *p, double t);

/* r(x, y): the rate at which downloads complete. */
double fluid_rate(const struct fluid_params *p, double x, double y);

/* The steady state of endless arrivals at lambda, in closed form. p must
 * pass fluid_check. With theta > 0 the upload-bound state assumes
 * mu eta + theta (1 - mu / gamma) > 0 (otherwise it is download-bound). */
void fluid_steady(const struct fluid_params *p, struct fluid_steady *out);

/* Sets s to the empty swarm at t = 0 (x = y = 0, nothing arrived). */
void fluid_init(struct fluid_state *s);

/* Advances s by h seconds (h > 0) with the classic fourth-order
 * Runge-Kutta step; a step that crosses the arrivals' cut-off is split
 * there, so that lambda is smooth within each piece. x and y are kept at
 * or above 0. p must pass fluid_check. */
void fluid_step(const struct fluid_params *p, struct fluid_state *s, double h);

#endif
