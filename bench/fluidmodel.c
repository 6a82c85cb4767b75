/* bench/fluidmodel: the fluid model of a swarm with arrivals and
 * departures (bench/lib/fluid.h), printed for bench/compare.sh --arrivals
 * to plot beside its measurements.
 *
 * Prints the parameters and the closed-form steady state (downloaders x,
 * seeders y, mean download time T = x / lambda, and which term binds) as
 * "# key value" lines, then the transient from an empty swarm with the
 * origin seeding, integrated with fourth-order Runge-Kutta: a row
 * "t x y arrived completed departed" every --every seconds. When arrivals
 * stop (--total), the run ends once the swarm has emptied (x and y below
 * 0.001, or x alone when seeders stay) and a summary follows: the mean
 * download time over the run (integral of x dt / arrivals, Little's law),
 * the time the last half download completes (completed >= total - 0.5,
 * the fluid counterpart of the last completion), and the peaks of x and
 * y. Every rate is in files a second (docs/comparison.md).
 *
 * usage: fluidmodel --lambda X --c X --mu X [--mu0 X] [--eta 1]
 *                   [--gamma X] [--theta X] [--total N] [--dt 0.01]
 *                   [--every 0.5] [--until S]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/lib/fluid.h"
#include "common/error.h"

/* The longest transient integrated: far past any run of the harness. */
#define FLUID_TIME_MAX 1e5
/* Below this many downloaders (and seeders) the swarm counts as empty. */
#define EMPTY 1e-3

static void usage(FILE *f) {
  fprintf(f, "usage: fluidmodel [options]   (rates in files a second)\n"
             "  --lambda X   arrivals a second (required)\n"
             "  --c X        a downloader's download rate (required)\n"
             "  --mu X       a downloader's upload rate (required)\n"
             "  --mu0 X      the origin's upload rate (0)\n"
             "  --eta X      effectiveness of downloaders' uploads, 0-1 (1)\n"
             "  --gamma X    seeder departure rate, 1 / linger; 0: stay (0)\n"
             "  --theta X    downloader abort rate (0)\n"
             "  --total N    arrivals stop after N; 0: never (0)\n"
             "  --dt S       integration step (0.01)\n"
             "  --every S    print a row every S seconds (0.5)\n"
             "  --until S    integrate to S seconds (with --total 0: needed;\n"
             "               otherwise: until the swarm is empty)\n");
}

/* A number in [lo, hi], or NAN when s is not one. */
static double parse_num(const char *s, double lo, double hi) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
    return NAN;
  }
  return v;
}

static const char *regime_name(enum fluid_regime r) {
  switch (r) {
  case FLUID_DOWNLOAD_BOUND:
    return "download";
  case FLUID_UPLOAD_BOUND:
    return "upload";
  case FLUID_NO_STEADY:
    return "none";
  }
  return "?";
}

static void row(const struct fluid_state *s) {
  printf("%.3f %.5f %.5f %.5f %.5f %.5f\n", s->t, s->x, s->y, s->arrived,
         s->completed, s->departed);
}

int main(int argc, char **argv) {
  struct fluid_params p = {.eta = 1};
  struct fluid_steady st;
  struct fluid_state s;
  double dt = 0.01, every = 0.5, until = 0;
  double peak_x = 0, peak_x_t = 0, peak_y = 0, peak_y_t = 0, last_t = -1;
  int have_lambda = 0, have_c = 0, have_mu = 0, rc;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    double *dst = NULL, lo = 0, hi = FLUID_RATE_MAX;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "fluidmodel: %s needs a value (see --help)\n", a);
      return 2;
    }
    if (strcmp(a, "--lambda") == 0) {
      dst = &p.lambda;
      have_lambda = 1;
    } else if (strcmp(a, "--c") == 0) {
      dst = &p.c;
      have_c = 1;
    } else if (strcmp(a, "--mu") == 0) {
      dst = &p.mu;
      have_mu = 1;
    } else if (strcmp(a, "--mu0") == 0) {
      dst = &p.mu0;
    } else if (strcmp(a, "--eta") == 0) {
      dst = &p.eta;
      hi = 1;
    } else if (strcmp(a, "--gamma") == 0) {
      dst = &p.gamma;
    } else if (strcmp(a, "--theta") == 0) {
      dst = &p.theta;
    } else if (strcmp(a, "--total") == 0) {
      dst = &p.total;
      hi = FLUID_TOTAL_MAX;
    } else if (strcmp(a, "--dt") == 0) {
      dst = &dt;
      lo = 1e-6;
      hi = 10;
    } else if (strcmp(a, "--every") == 0) {
      dst = &every;
      lo = 1e-3;
      hi = 3600;
    } else if (strcmp(a, "--until") == 0) {
      dst = &until;
      hi = FLUID_TIME_MAX;
    } else {
      fprintf(stderr, "fluidmodel: unknown option '%s' (see --help)\n", a);
      return 2;
    }
    *dst = parse_num(argv[++i], lo, hi);
    if (isnan(*dst)) {
      fprintf(stderr, "fluidmodel: %s: '%s' is not a number from %g to %g\n", a,
              argv[i], lo, hi);
      return 2;
    }
  }
  if (!have_lambda || !have_c || !have_mu) {
    fprintf(stderr, "fluidmodel: --lambda, --c and --mu are required "
                    "(see --help)\n");
    return 2;
  }
  rc = fluid_check(&p);
  if (rc != 0) {
    fprintf(stderr,
            "fluidmodel: %s: lambda and c must be above 0, eta at most 1\n",
            shoal_strerror(rc));
    return 2;
  }
  if (p.total <= 0 && until <= 0) {
    fprintf(stderr, "fluidmodel: endless arrivals (--total 0) need --until\n");
    return 2;
  }

  fluid_steady(&p, &st);
  printf("# lambda %g\n# c %g\n# mu %g\n# mu0 %g\n# eta %g\n# gamma %g\n"
         "# theta %g\n# total %g\n",
         p.lambda, p.c, p.mu, p.mu0, p.eta, p.gamma, p.theta, p.total);
  printf("# steady_regime %s\n# steady_x %.4f\n# steady_y %.4f\n"
         "# steady_T %.4f\n",
         regime_name(st.regime), st.x, st.y, st.T);

  /* Rows every `every` seconds, each reached in whole steps of at most dt. */
  long sub = (long)ceil(every / dt - 1e-9);
  double h = every / (double)sub;
  double end = until > 0 ? until : FLUID_TIME_MAX;
  double cut = fluid_cutoff(&p);
  fluid_init(&s);
  printf("t x y arrived completed departed\n");
  row(&s);
  while (s.t < end - 1e-9) {
    for (long k = 0; k < sub; k++) {
      fluid_step(&p, &s, h);
      if (s.x > peak_x) {
        peak_x = s.x;
        peak_x_t = s.t;
      }
      if (s.y > peak_y) {
        peak_y = s.y;
        peak_y_t = s.t;
      }
      if (last_t < 0 && p.total > 0 && s.completed >= p.total - 0.5) {
        last_t = s.t;
      }
    }
    row(&s);
    if (until <= 0 && s.t >= cut && s.x < EMPTY &&
        (p.gamma <= 0 || s.y < EMPTY)) {
      break;
    }
  }
  if (p.total > 0) {
    printf("# run_end %.3f\n# run_mean_T %.4f\n# run_last_completion %.3f\n",
           s.t, s.arrived > 0 ? s.x_integral / s.arrived : 0, last_t);
  }
  printf("# peak_x %.4f\n# peak_x_t %.3f\n# peak_y %.4f\n# peak_y_t %.3f\n",
         peak_x, peak_x_t, peak_y, peak_y_t);
  return 0;
}
