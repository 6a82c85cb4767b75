/* The fluid model of a swarm with arrivals and departures: its rates, its
 * steady state in closed form, and a Runge-Kutta integrator for the
 * transient (fluid.h).
 *
 * The steady state, with lambda constant and gamma > 0: dy/dt = 0 gives
 * r = gamma y, and dx/dt = 0 gives r = lambda - theta x. When the
 * downloaders' caps bind, r = c x, so x = lambda / (c + theta). When the
 * uploaders bind, r = mu (eta x + y) + mu0 with y = r / gamma, so
 *
 *   x = (lambda (1 - mu / gamma) - mu0) / (mu eta + theta (1 - mu / gamma))
 *
 * r is the smaller of the two terms, and both grow with x, so the swarm
 * settles at the larger of the two x (the first at which both terms reach
 * the flow that must leave). By Little's law the mean time a downloader
 * spends in the swarm is T = x / lambda. With theta = 0 and mu0 = 0 this
 * is Qiu and Srikant's T = max(1 / c, (1 / eta)(1 / mu - 1 / gamma)).
 */
#include "bench/lib/fluid.h"

#include <math.h>

#include "common/error.h"

static int in_range(double v, double lo, double hi) {
  return isfinite(v) && v >= lo && v <= hi;
}

int fluid_check(const struct fluid_params *p) {
  if (!in_range(p->lambda, 0, FLUID_RATE_MAX) || p->lambda <= 0 ||
      !in_range(p->c, 0, FLUID_RATE_MAX) || p->c <= 0 ||
      !in_range(p->theta, 0, FLUID_RATE_MAX) ||
      !in_range(p->mu, 0, FLUID_RATE_MAX) || !in_range(p->eta, 0, 1) ||
      !in_range(p->gamma, 0, FLUID_RATE_MAX) ||
      !in_range(p->mu0, 0, FLUID_RATE_MAX) ||
      !in_range(p->total, 0, FLUID_TOTAL_MAX)) {
    return SHOAL_EINVAL;
  }
  return 0;
}

double fluid_cutoff(const struct fluid_params *p) {
  return p->total > 0 ? p->total / p->lambda : INFINITY;
}

double fluid_lambda_at(const struct fluid_params *p, double t) {
  return t < fluid_cutoff(p) ? p->lambda : 0;
}

double fluid_rate(const struct fluid_params *p, double x, double y) {
  double down = p->c * x;
  double up = p->mu * (p->eta * x + y) + p->mu0;
  return down < up ? down : up;
}

void fluid_steady(const struct fluid_params *p, struct fluid_steady *out) {
  double xd = p->lambda / (p->c + p->theta);
  double xu = 0;
  if (p->gamma <= 0) {
    /* Seeders never leave: y grows without end and in time serves every
     * newcomer at its own cap. */
    out->regime = FLUID_NO_STEADY;
    out->x = xd;
    out->y = 0;
    out->T = xd / p->lambda;
    return;
  }
  double k = 1 - p->mu / p->gamma;
  double den = p->mu * p->eta + p->theta * k;
  if (den > 0) {
    xu = (p->lambda * k - p->mu0) / den;
  }
  out->regime = xu > xd ? FLUID_UPLOAD_BOUND : FLUID_DOWNLOAD_BOUND;
  out->x = xu > xd ? xu : xd;
  out->y = (p->lambda - p->theta * out->x) / p->gamma;
  out->T = out->x / p->lambda;
}

void fluid_init(struct fluid_state *s) {
  s->t = 0;
  s->x = 0;
  s->y = 0;
  s->arrived = 0;
  s->completed = 0;
  s->departed = 0;
  s->x_integral = 0;
}

/* The state as a vector, for the Runge-Kutta stages. */
enum { V_X, V_Y, V_ARRIVED, V_COMPLETED, V_DEPARTED, V_XINT, V_N };

static void derive(const struct fluid_params *p, double lambda,
                   const double v[V_N], double d[V_N]) {
  double x = v[V_X] > 0 ? v[V_X] : 0;
  double y = v[V_Y] > 0 ? v[V_Y] : 0;
  double r = fluid_rate(p, x, y);
  d[V_X] = lambda - p->theta * x - r;
  d[V_Y] = r - p->gamma * y;
  d[V_ARRIVED] = lambda;
  d[V_COMPLETED] = r;
  d[V_DEPARTED] = p->gamma * y + p->theta * x;
  d[V_XINT] = x;
}

/* One Runge-Kutta step of h with lambda constant over it. */
static void rk4(const struct fluid_params *p, double lambda, double v[V_N],
                double h) {
  double k1[V_N], k2[V_N], k3[V_N], k4[V_N], w[V_N];
  int i;
  derive(p, lambda, v, k1);
  for (i = 0; i < V_N; i++) {
    w[i] = v[i] + h / 2 * k1[i];
  }
  derive(p, lambda, w, k2);
  for (i = 0; i < V_N; i++) {
    w[i] = v[i] + h / 2 * k2[i];
  }
  derive(p, lambda, w, k3);
  for (i = 0; i < V_N; i++) {
    w[i] = v[i] + h * k3[i];
  }
  derive(p, lambda, w, k4);
  for (i = 0; i < V_N; i++) {
    v[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
  }
  /* The exact flow never leaves x, y >= 0 (at x = 0, dx/dt = lambda); a
   * rounding step below 0 is put back. */
  if (v[V_X] < 0) {
    v[V_X] = 0;
  }
  if (v[V_Y] < 0) {
    v[V_Y] = 0;
  }
}

void fluid_step(const struct fluid_params *p, struct fluid_state *s, double h) {
  double v[V_N] = {s->x,         s->y,        s->arrived,
                   s->completed, s->departed, s->x_integral};
  double cut = fluid_cutoff(p);
  if (s->t < cut && s->t + h > cut) {
    double first = cut - s->t;
    rk4(p, p->lambda, v, first);
    rk4(p, 0, v, h - first);
  } else {
    rk4(p, fluid_lambda_at(p, s->t), v, h);
  }
  s->x = v[V_X];
  s->y = v[V_Y];
  s->arrived = v[V_ARRIVED];
  s->completed = v[V_COMPLETED];
  s->departed = v[V_DEPARTED];
  s->x_integral = v[V_XINT];
  s->t += h;
}
