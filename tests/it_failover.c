/* Integration tests of trackers in tiers: a share through two independent
 * trackers (two keys, two tiers) is announced to both, and a download
 * finds its peers through the second when the first is gone; a download
 * whose tracker is killed half way fails over to the other instance of
 * the same tracker (one key, one tier) and completes.
 *
 * The fixture's tracker is the first; the second is started here, with the
 * fixture's settings, and killed at teardown by its PID. An instance of the
 * same tracker is one started with a copy of the first one's key file.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/link.h"
#include "common/textid.h"
#include "tests/lib/fx.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

#define WAIT_LISTED_MS 20000

/* The second tracker of a test. */
struct second {
  struct tc_tracker t;
  int up;
  char arg[64 + TEXTID_STRLEN]; /* "127.0.0.1:PORT@KEY" for --tracker */
};

static void second_stop(void *arg) {
  struct second *s = arg;
  if (s->up) {
    tc_tracker_kill(&s->t);
    s->up = 0;
  }
  tc_tracker_cleanup(&s->t);
  free(s);
}

/* Starts a second tracker with the fixture's settings: with a key of its
 * own, or with a copy of the fixture tracker's key file (same_key), which
 * makes it an instance of the same tracker. */
static struct second *second_start(struct fx *f, int same_key) {
  const char *args[] = {"--interval", "2",    "--rate", "1000",
                        "--burst",    "5000", NULL};
  char text[TEXTID_STRLEN];
  struct second *s = calloc(1, sizeof(*s));
  assert_non_null(s);
  tu_tmpdir(s->t.dir, sizeof(s->t.dir));
  if (same_key) {
    char from[4200];
    char to[4300];
    size_t n;
    uint8_t buf[4096];
    snprintf(from, sizeof(from), "%s", f->t.key_path);
    snprintf(to, sizeof(to), "%s/tracker.key", s->t.dir);
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    n = fread(buf, 1, sizeof(buf), in);
    fclose(in);
    tu_write_file(s->t.dir, "tracker.key", buf, n);
    /* A key file must be the owner's alone. */
    assert_int_equal(chmod(to, 0600), 0);
  }
  fx_on_teardown(f, second_stop, s);
  assert_int_equal(tc_tracker_start(&s->t, 1, args), 0);
  s->up = 1;
  textid_encode(TEXTID_KEY, s->t.key, text);
  snprintf(s->arg, sizeof(s->arg), "127.0.0.1:%d@%s", s->t.port, text);
  return s;
}

/* Whether the second tracker lists pk for content. */
static int second_lists(struct fx *f, struct second *s,
                        const uint8_t content[32], const uint8_t pk[32]) {
  struct tc_tracker keep = f->t;
  f->t = s->t;
  int found = fx_tracker_lists(f, content, pk, NULL);
  f->t = keep;
  return found;
}

/* Waits until the tracker (the fixture's, or s) lists pk for content. */
static void wait_listed(struct fx *f, struct second *s,
                        const uint8_t content[32], const uint8_t pk[32]) {
  uint64_t deadline = tc_now_ms() + WAIT_LISTED_MS;
  while (!(s != NULL ? second_lists(f, s, content, pk)
                     : fx_tracker_lists(f, content, pk, NULL))) {
    if (tc_now_ms() > deadline) {
      fail_msg("the tracker at port %d never listed the peer",
               s != NULL ? s->t.port : f->t.port);
    }
    proc_pause_ms(100);
  }
}

static void share_through_two_tiers_announces_to_both(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  struct share_link l;
  const char *why = NULL;
  uint8_t seeder_pk[32];
  uint8_t *data;
  char out[PROC_PATH_MAX];
  size_t size = 256 * FX_KiB;

  fx_start_tracker(f);
  struct second *b = second_start(f, 0);
  assert_memory_not_equal(b->t.key, f->t.key, 32);
  fx_peer_id(f, "s", seeder_pk);
  fx_write_random(f, "src/tiers.bin", size, 41, &data);
  struct proc *seeder =
      fx_seed(f, "src/tiers.bin", &sh, "--tracker", b->arg, NULL);

  /* The link names both, each in a tier of its own with its key. */
  assert_int_equal(link_parse(sh.link, strlen(sh.link), &l, &why), 0);
  assert_int_equal(l.tracker_count, 2);
  assert_int_equal(link_tier_count(l.trackers, l.tracker_count), 2);
  assert_int_equal(l.trackers[0].port, f->t.port);
  assert_memory_equal(l.trackers[0].key, f->t.key, 32);
  assert_int_equal(l.trackers[1].port, b->t.port);
  assert_memory_equal(l.trackers[1].key, b->t.key, 32);
  assert_non_null(strstr(sh.link, "&tier2="));

  /* Both trackers list the seeder. */
  wait_listed(f, NULL, sh.content, seeder_pk);
  wait_listed(f, b, sh.content, seeder_pk);

  /* The first tier gone, a download finds the seeder through the second. */
  tc_tracker_kill(&f->t);
  f->tracker_up = 0;
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  struct proc *dl = fx_peer(f, "getter", "g", "get", sh.link, "-o", out, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out", "tiers.bin", data, size);
  free(data);
  fx_stop_peer(seeder, NULL);
  fx_finish(f);
}

static void
tracker_killed_mid_download_fails_over_within_its_tier(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  struct share_link l;
  const char *why = NULL;
  uint8_t getter_pk[32];
  uint8_t *data;
  char out[PROC_PATH_MAX];
  char line[FX_LINE_CAP];
  size_t size = 4 * FX_MiB;

  fx_start_tracker(f);
  struct second *a2 = second_start(f, 1);
  assert_memory_equal(a2->t.key, f->t.key, 32);
  fx_peer_id(f, "g", getter_pk);
  fx_write_random(f, "src/failover.bin", size, 42, &data);
  char a2_addr[64];
  snprintf(a2_addr, sizeof(a2_addr), "127.0.0.1:%d", a2->t.port);
  /* The second instance without a key: --tracker-key, the first's, is
   * its key, so both are one tier. */
  struct proc *seeder =
      fx_seed(f, "src/failover.bin", &sh, "--tracker", a2_addr, NULL);
  assert_int_equal(link_parse(sh.link, strlen(sh.link), &l, &why), 0);
  assert_int_equal(l.tracker_count, 2);
  assert_int_equal(link_tier_count(l.trackers, l.tracker_count), 1);
  /* One tier of one key: the first form. */
  assert_non_null(strstr(sh.link, "&key="));

  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  struct proc *dl = fx_peer(f, "getter", "g", "get", sh.link, "-o", out,
                            "--download-rate", "1M", NULL);
  /* The getter announced to the first tracker of its tier, not to the
   * second: a tier is announced to once. */
  wait_listed(f, NULL, sh.content, getter_pk);
  assert_false(second_lists(f, a2, sh.content, getter_pk));
  struct fx_frac some = {10, 100};
  fx_wait_event(dl, "progress", fx_have_at_least, &some, FX_COMPLETE_MS, line);

  /* The first instance dies; the getter's next announce goes to the
   * second, which lists it, and the download completes. */
  tc_tracker_kill(&f->t);
  f->tracker_up = 0;
  wait_listed(f, a2, sh.content, getter_pk);
  fx_expect_exit(dl, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out", "failover.bin", data, size);
  free(data);
  fx_stop_peer(seeder, NULL);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_failover") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(share_through_two_tiers_announces_to_both,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(
          tracker_killed_mid_download_fails_over_within_its_tier, fx_setup,
          fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
