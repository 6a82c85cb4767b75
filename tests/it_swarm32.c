/* The swarm at scale, as a regression test (issue 18): one seeder and 32
 * downloaders of a small file, the real shoal-peer and shoal-tracker on
 * loopback (tests/lib/fx.h), every peer with a low upload cap and fewer
 * session slots than the swarm has peers, started over about a second and
 * a half as a harness starts hosts. Every downloader must complete within
 * SWARM_DEADLINE_MS, with a copy equal to the original byte for byte.
 *
 * With --max-peers below the swarm's size, each newcomer's dials can fill
 * its slots while the others dial it: the case where, at 64 peers and the
 * default 50 slots, a third of the downloaders never met anyone. With
 * --upload-rate far below the file's size a second, nobody completes from
 * the seeder alone: the downloaders must trade among themselves.
 *
 * The downloaders are this test's own children (more than the fixture
 * keeps): each is stopped by PID at the end, and killed by a teardown
 * hook when the test fails first.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tests/lib/fx.h"
#include "tests/lib/proc.h"

#define NDL 32
#define FILE_BYTES (4u * FX_MiB)
#define UPLOAD_RATE "512k" /* each peer's cap: 8 s for one copy */
#define MAX_PEERS "12"     /* session slots, well below the swarm */
#define SPREAD_MS 1500u    /* the downloaders start over this long */
#define SWARM_DEADLINE_MS                                                      \
  100000u /* every one complete, from the first start                          \
           */

struct swarm32 {
  struct fx *f;
  struct proc dl[NDL];
  uint8_t *data; /* the file's bytes */
};

/* Teardown: whatever is still running is killed (a test that passed has
 * stopped them all already). */
static void kill_downloaders(void *arg) {
  struct swarm32 *w = arg;
  for (unsigned i = 0; i < NDL; i++) {
    if (w->dl[i].pid != 0 && !w->dl[i].reaped) {
      fprintf(stderr, "# downloader %u still running: killed\n", i);
      proc_dump(&w->dl[i]);
    }
    proc_kill(&w->dl[i]);
  }
  free(w->data);
  free(w);
}

/* Each peer holds a socket a session, its files and its tracker
 * connection; so does this program for every child it watches. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void start_downloader(struct swarm32 *w, unsigned i, const char *link) {
  char name[32], home[PROC_PATH_MAX], out[PROC_PATH_MAX], rel[64];
  snprintf(name, sizeof(name), "dl%02u", i);
  snprintf(rel, sizeof(rel), "home-%s", name);
  fx_mkdir(w->f, rel);
  fx_path(w->f, home, sizeof(home), rel);
  snprintf(rel, sizeof(rel), "out-%s", name);
  fx_mkdir(w->f, rel);
  fx_path(w->f, out, sizeof(out), rel);
  const char *argv[] = {w->f->bin,     "get",         link,
                        "-o",          out,           "--seed",
                        "--listen",    "127.0.0.1:0", "--upload-rate",
                        UPLOAD_RATE,   "--max-peers", MAX_PEERS,
                        "--home",      home,          "--json",
                        "--log-level", "info",        NULL};
  assert_int_equal(proc_start(&w->dl[i], w->f->dir, name, argv), 0);
}

static void thirty_two_downloaders_at_low_caps_all_complete(void **state) {
  struct fx *f = *state;
  struct swarm32 *w = calloc(1, sizeof(*w));
  struct fx_shared sh;
  unsigned done = 0;
  int complete[NDL] = {0};
  uint64_t t0, last = 0;
  char line[FX_LINE_CAP];
  assert_non_null(w);
  w->f = f;
  fx_on_teardown(f, kill_downloaders, w);
  raise_nofile();
  fx_start_tracker(f);
  fx_write_random(f, "swarm.bin", FILE_BYTES, 0x5a32, &w->data);
  fx_seed(f, "swarm.bin", &sh, "--upload-rate", UPLOAD_RATE, "--max-peers",
          MAX_PEERS, NULL);

  t0 = proc_now_ms();
  for (unsigned i = 0; i < NDL; i++) {
    start_downloader(w, i, sh.link);
    proc_pause_ms((int)(SPREAD_MS / NDL)); /* the harness's pace */
  }
  /* Every downloader completes (it goes on seeding: --seed), and none
   * gives up or fails first. */
  while (done < NDL) {
    for (unsigned i = 0; i < NDL; i++) {
      if (complete[i]) {
        continue;
      }
      if (proc_find_event(&w->dl[i], "complete", NULL, NULL, 0, line,
                          sizeof(line))) {
        complete[i] = 1;
        done++;
        last = proc_now_ms() - t0;
      } else if (!proc_alive(&w->dl[i])) {
        proc_dump(&w->dl[i]);
        fail_msg("downloader %u ended (status %d) before it completed", i,
                 w->dl[i].status);
      }
    }
    if (done < NDL && proc_now_ms() - t0 > SWARM_DEADLINE_MS) {
      for (unsigned i = 0; i < NDL; i++) {
        if (!complete[i]) {
          proc_dump(&w->dl[i]);
        }
      }
      fail_msg("%u of %u downloaders complete after %u ms", done, NDL,
               SWARM_DEADLINE_MS);
    }
    proc_pause_ms(100);
  }
  printf("# %u downloaders of %u MiB at %s/s each: the last completed %llu "
         "ms after the first started\n",
         NDL, FILE_BYTES / FX_MiB, UPLOAD_RATE, (unsigned long long)last);

  for (unsigned i = 0; i < NDL; i++) {
    char rel[64];
    snprintf(rel, sizeof(rel), "out-dl%02u", i);
    fx_assert_copy(f, rel, "swarm.bin", w->data, FILE_BYTES);
  }
  for (unsigned i = 0; i < NDL; i++) {
    proc_signal(&w->dl[i], SIGTERM);
  }
  for (unsigned i = 0; i < NDL; i++) {
    fx_expect_exit(&w->dl[i], FX_EXIT_MS, 0);
    fx_assert_json_output(&w->dl[i]);
    if (fx_sanitizer_report(&w->dl[i]) != NULL) {
      proc_dump(&w->dl[i]);
      fail_msg("downloader %u: a sanitizer report", i);
    }
  }
  fx_finish(f);
  /* The hook still runs at teardown: it finds every child reaped, and
   * frees w. */
}

int main(void) {
  if (fx_main_init("it_swarm32") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          thirty_two_downloaders_at_low_caps_all_complete, fx_setup,
          fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
