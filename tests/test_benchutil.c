/* Tests for bench/lib/benchutil: the reading of the benchmarks' flags.
 *
 * A benchmark's flags come from whoever runs it, so the list parser
 * (bench/tracker-load's --curve-rates) is tested mostly on what it must
 * refuse: signs, junk after a number, numbers out of range or too large
 * for an unsigned long, too many numbers, and nothing at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench/lib/benchutil.h"

#define MAX 4

static void list_of_spaced_numbers_is_read_in_order(void **state) {
  (void)state;
  unsigned long v[MAX] = {0};
  assert_int_equal(benchutil_parse_list("1000 2000 5000", v, MAX, 1, 100000),
                   3);
  assert_int_equal(v[0], 1000);
  assert_int_equal(v[1], 2000);
  assert_int_equal(v[2], 5000);
}

static void commas_and_repeated_blanks_separate_too(void **state) {
  (void)state;
  unsigned long v[MAX] = {0};
  assert_int_equal(benchutil_parse_list("  7,8 ,, 9  ", v, MAX, 1, 10), 3);
  assert_int_equal(v[0], 7);
  assert_int_equal(v[1], 8);
  assert_int_equal(v[2], 9);
}

static void the_bounds_themselves_are_accepted(void **state) {
  (void)state;
  unsigned long v[MAX] = {0};
  assert_int_equal(benchutil_parse_list("5 50", v, MAX, 5, 50), 2);
  assert_int_equal(v[0], 5);
  assert_int_equal(v[1], 50);
}

static void exactly_max_numbers_fit_and_one_more_is_refused(void **state) {
  (void)state;
  unsigned long v[MAX + 1] = {0};
  assert_int_equal(benchutil_parse_list("1 2 3 4", v, MAX, 1, 9), MAX);
  /* The fifth must not be written past the caller's room. */
  v[MAX] = 0x5a;
  assert_int_equal(benchutil_parse_list("1 2 3 4 5", v, MAX, 1, 9), -1);
  assert_int_equal(v[MAX], 0x5a);
}

static void empty_and_blank_lists_are_refused(void **state) {
  (void)state;
  unsigned long v[MAX];
  const char *bad[] = {"", " ", ",", " , ,  "};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(benchutil_parse_list(bad[i], v, MAX, 0, 9), -1);
  }
}

static void signs_junk_and_other_blanks_are_refused(void **state) {
  (void)state;
  unsigned long v[MAX];
  /* strtoul alone would read "-1" as ULONG_MAX and "+2" as 2, and would
   * skip a tab. */
  const char *bad[] = {"-1",   "+2",   "1 -1", "3x",    "x3",  "1.5",
                       "0x10", "1\t2", "1;2",  "1 2 a", "1e3", "\t1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(benchutil_parse_list(bad[i], v, MAX, 0, 100000), -1);
  }
}

static void numbers_out_of_range_are_refused(void **state) {
  (void)state;
  unsigned long v[MAX];
  assert_int_equal(benchutil_parse_list("4", v, MAX, 5, 50), -1);
  assert_int_equal(benchutil_parse_list("51", v, MAX, 5, 50), -1);
  assert_int_equal(benchutil_parse_list("10 0", v, MAX, 1, 50), -1);
  /* Larger than any unsigned long: strtoul's ERANGE, not a wrapped value. */
  assert_int_equal(benchutil_parse_list("184467440737095516160", v, MAX, 0,
                                        (unsigned long)-1),
                   -1);
  assert_int_equal(
      benchutil_parse_list("99999999999999999999999999", v, MAX, 0, 100), -1);
}

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Spins until this thread has used 0.3 s of CPU (bounded by that). */
static void *spin(void *arg) {
  volatile unsigned long x = 0;
  (void)arg;
  while (thread_cpu_s() < 0.3) {
    for (int i = 0; i < 100000; i++) {
      x += (unsigned long)i;
    }
  }
  return NULL;
}

/* A second thread's CPU counts for the process and not for its first
 * thread; a process that does not exist is -1. */
static void main_thread_cpu_is_the_first_threads_alone(void **state) {
  pthread_t th;
  (void)state;
  double main0 = benchutil_main_thread_cpu_s(getpid());
  double all0 = benchutil_cpu_s(getpid());
  assert_true(main0 >= 0 && all0 >= main0);
  assert_int_equal(pthread_create(&th, NULL, spin, NULL), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  double main1 = benchutil_main_thread_cpu_s(getpid());
  double all1 = benchutil_cpu_s(getpid());
  assert_true(all1 - all0 >= 0.25);
  assert_true(main1 - main0 < 0.1);
  assert_true(benchutil_main_thread_cpu_s(INT_MAX) < 0);
  assert_true(benchutil_cpu_s(INT_MAX) < 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(list_of_spaced_numbers_is_read_in_order),
      cmocka_unit_test(commas_and_repeated_blanks_separate_too),
      cmocka_unit_test(the_bounds_themselves_are_accepted),
      cmocka_unit_test(exactly_max_numbers_fit_and_one_more_is_refused),
      cmocka_unit_test(empty_and_blank_lists_are_refused),
      cmocka_unit_test(signs_junk_and_other_blanks_are_refused),
      cmocka_unit_test(numbers_out_of_range_are_refused),
      cmocka_unit_test(main_thread_cpu_is_the_first_threads_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
