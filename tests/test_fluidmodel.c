/* Unit tests for the swarm's fluid model (bench/lib/fluid.c): the closed-
 * form steady state against Qiu and Srikant's formula and against a long
 * integration, the Runge-Kutta integrator against two transients with a
 * known solution, the conservation of downloaders, the arrivals' cut-off,
 * and the parameters it refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "bench/lib/fluid.h"
#include "common/error.h"

/* |a - b| <= tol * max(1, |b|). */
static void assert_close(double a, double b, double tol) {
  double scale = fabs(b) > 1 ? fabs(b) : 1;
  if (!(fabs(a - b) <= tol * scale)) {
    fail_msg("%.10g is not within %g of %.10g", a, tol, b);
  }
}

/* Integrates p from an empty swarm for t seconds in steps of h. */
static void run(const struct fluid_params *p, struct fluid_state *s, double t,
                double h) {
  long steps = lround(t / h);
  fluid_init(s);
  for (long i = 0; i < steps; i++) {
    fluid_step(p, s, h);
  }
}

/* The harness's flash crowd: 16 MiB, downloaders at 10 Mbit/s up and
 * 20 Mbit/s down, origin at 40 Mbit/s, 0.5 arrivals a second, 10 s of
 * seeding. Supply exceeds demand, so the downloaders' caps bind. */
static struct fluid_params crowd(void) {
  double f = 16.0 * 1048576 * 8;
  struct fluid_params p = {.lambda = 0.5,
                           .c = 20e6 / f,
                           .mu = 10e6 / f,
                           .eta = 1,
                           .gamma = 0.1,
                           .mu0 = 40e6 / f};
  return p;
}

/* A swarm short of upload: arrivals at 1 a second, origin at 10 Mbit/s,
 * 2 s of seeding. */
static struct fluid_params starved(void) {
  struct fluid_params p = crowd();
  p.lambda = 1;
  p.gamma = 0.5;
  p.mu0 = p.mu;
  return p;
}

static void test_steady_reduces_to_qiu_srikant_without_origin(void **state) {
  struct fluid_params p = {
      .lambda = 2, .c = 0.5, .mu = 0.1, .eta = 0.8, .gamma = 0.4};
  struct fluid_steady st;
  (void)state;
  fluid_steady(&p, &st);
  /* T = max(1 / c, (1 / eta)(1 / mu - 1 / gamma)) = max(2, 9.375). */
  assert_int_equal(st.regime, FLUID_UPLOAD_BOUND);
  assert_close(st.T, (1 / 0.8) * (1 / 0.1 - 1 / 0.4), 1e-12);
  assert_close(st.x, 2 * st.T, 1e-12);
  assert_close(st.y, 2 / 0.4, 1e-12);
  p.c = 0.05; /* now 1 / c = 20 s is the longer */
  fluid_steady(&p, &st);
  assert_int_equal(st.regime, FLUID_DOWNLOAD_BOUND);
  assert_close(st.T, 20, 1e-12);
}

static void test_steady_counts_the_origin_as_a_seeder(void **state) {
  struct fluid_params p = starved();
  struct fluid_steady st;
  (void)state;
  fluid_steady(&p, &st);
  /* x = (lambda (1 - mu / gamma) - mu0) / (mu eta). */
  assert_int_equal(st.regime, FLUID_UPLOAD_BOUND);
  assert_close(st.x, (1 * (1 - p.mu / 0.5) - p.mu0) / p.mu, 1e-12);
  assert_close(st.T, st.x / 1, 1e-12);
  assert_close(st.y, 1 / 0.5, 1e-12);
  /* The crowd has upload to spare: each downloader runs at its cap. */
  p = crowd();
  fluid_steady(&p, &st);
  assert_int_equal(st.regime, FLUID_DOWNLOAD_BOUND);
  assert_close(st.T, 1 / p.c, 1e-12);
  assert_close(st.y, 0.5 / 0.1, 1e-12);
}

static void test_steady_with_aborts(void **state) {
  struct fluid_params p = starved();
  struct fluid_steady st;
  (void)state;
  p.theta = 0.02;
  fluid_steady(&p, &st);
  double k = 1 - p.mu / p.gamma;
  assert_int_equal(st.regime, FLUID_UPLOAD_BOUND);
  assert_close(st.x, (p.lambda * k - p.mu0) / (p.mu + p.theta * k), 1e-12);
  assert_close(st.y, (p.lambda - p.theta * st.x) / p.gamma, 1e-12);
  p.theta = 0;
  p.gamma = 0;
  fluid_steady(&p, &st);
  assert_int_equal(st.regime, FLUID_NO_STEADY);
  assert_close(st.T, 1 / p.c, 1e-12);
}

/* The integration settles where the closed form says, in either regime and
 * with aborts. */
static void test_integration_settles_at_the_steady_state(void **state) {
  struct fluid_params cases[3];
  struct fluid_steady st;
  struct fluid_state s;
  (void)state;
  cases[0] = crowd();
  cases[1] = starved();
  cases[2] = starved();
  cases[2].theta = 0.02;
  cases[2].eta = 0.7;
  for (int i = 0; i < 3; i++) {
    fluid_steady(&cases[i], &st);
    run(&cases[i], &s, 2000, 0.01);
    assert_close(s.x, st.x, 1e-6);
    assert_close(s.y, st.y, 1e-6);
    assert_close(fluid_rate(&cases[i], s.x, s.y),
                 cases[i].lambda - cases[i].theta * s.x, 1e-6);
  }
}

/* Download-bound from start to end (the origin alone serves everyone):
 * dx/dt = lambda - c x, dy/dt = c x - gamma y, which solve to
 * x = (lambda / c)(1 - e^-ct) and
 * y = (lambda / gamma)(1 - e^-gt) - (lambda / (g - c))(e^-ct - e^-gt). */
static void test_integration_matches_the_download_bound_solution(void **st) {
  struct fluid_params p = {
      .lambda = 3, .c = 0.25, .mu = 0.01, .eta = 1, .gamma = 0.6, .mu0 = 100};
  struct fluid_state s;
  (void)st;
  fluid_init(&s);
  for (int i = 1; i <= 4000; i++) {
    fluid_step(&p, &s, 0.01);
    if (i % 250 != 0) {
      continue;
    }
    double t = s.t, l = p.lambda, c = p.c, g = p.gamma;
    double x = l / c * (1 - exp(-c * t));
    double y =
        l / g * (1 - exp(-g * t)) - l / (g - c) * (exp(-c * t) - exp(-g * t));
    assert_close(s.x, x, 1e-9);
    assert_close(s.y, y, 1e-9);
    assert_close(s.x_integral, l / c * (t - (1 - exp(-c * t)) / c), 1e-9);
  }
}

/* Upload-bound with eta = 1 and seeders that stay: x + y = x0 + y0 +
 * lambda t, so dx/dt = lambda - mu0 - mu (x0 + y0 + lambda t), a
 * polynomial that the integrator must follow to rounding. */
static void test_integration_matches_the_upload_bound_solution(void **st) {
  struct fluid_params p = {
      .lambda = 4, .c = 1000, .mu = 0.05, .eta = 1, .gamma = 0, .mu0 = 0.5};
  struct fluid_state s;
  double x0 = 20, y0 = 1;
  (void)st;
  fluid_init(&s);
  s.x = x0;
  s.y = y0;
  for (int i = 1; i <= 1000; i++) {
    fluid_step(&p, &s, 0.01);
    double t = s.t;
    double x = x0 + (p.lambda - p.mu0 - p.mu * (x0 + y0)) * t -
               p.mu * p.lambda * t * t / 2;
    assert_close(s.x, x, 1e-10);
    assert_close(s.y, x0 + y0 + p.lambda * t - x, 1e-10);
  }
}

/* Nobody is made or lost: x + y + departed = arrived at every step, and
 * the arrivals stop at exactly total, also when the cut-off falls inside a
 * step. */
static void test_downloaders_are_conserved_and_arrivals_stop(void **state) {
  struct fluid_params p = starved();
  struct fluid_state s;
  (void)state;
  p.total = 24;
  p.lambda = 0.7; /* cut-off at 34.2857... s, between steps of 0.1 */
  fluid_init(&s);
  for (int i = 0; i < 3000; i++) {
    fluid_step(&p, &s, 0.1);
    assert_close(s.x + s.y + s.departed, s.arrived, 1e-9);
    assert_close(s.completed, s.y + s.departed, 1e-9);
    assert_true(s.arrived <= 24 + 1e-9);
    assert_true(s.x >= 0 && s.y >= 0);
  }
  assert_close(s.arrived, 24, 1e-12);
  assert_close(fluid_lambda_at(&p, 34.28), 0.7, 0);
  assert_close(fluid_lambda_at(&p, 34.29), 0, 0);
  /* Everyone has come, downloaded and gone. */
  assert_true(s.x < 1e-6 && s.y < 1e-6);
  assert_close(s.departed, 24, 1e-6);
}

static void test_check_refuses_bad_parameters(void **state) {
  struct fluid_params good = crowd(), p;
  (void)state;
  assert_int_equal(fluid_check(&good), 0);
  double *fields[] = {&p.lambda, &p.theta, &p.c,   &p.mu,
                      &p.eta,    &p.gamma, &p.mu0, &p.total};
  double bad[] = {NAN, INFINITY, -INFINITY, -1e-9, 2e9};
  for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
      p = good;
      /* fields[] points into p, refilled from good each time. */
      *fields[f] = bad[b];
      assert_int_equal(fluid_check(&p), SHOAL_EINVAL);
    }
  }
  p = good;
  p.lambda = 0;
  assert_int_equal(fluid_check(&p), SHOAL_EINVAL);
  p = good;
  p.c = 0;
  assert_int_equal(fluid_check(&p), SHOAL_EINVAL);
  p = good;
  p.eta = 1.0001;
  assert_int_equal(fluid_check(&p), SHOAL_EINVAL);
  p = good;
  p.mu = 0;
  p.mu0 = 0;
  p.gamma = 0;
  p.theta = 0;
  p.total = 0;
  assert_int_equal(fluid_check(&p), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_steady_reduces_to_qiu_srikant_without_origin),
      cmocka_unit_test(test_steady_counts_the_origin_as_a_seeder),
      cmocka_unit_test(test_steady_with_aborts),
      cmocka_unit_test(test_integration_settles_at_the_steady_state),
      cmocka_unit_test(test_integration_matches_the_download_bound_solution),
      cmocka_unit_test(test_integration_matches_the_upload_bound_solution),
      cmocka_unit_test(test_downloaders_are_conserved_and_arrivals_stop),
      cmocka_unit_test(test_check_refuses_bad_parameters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
