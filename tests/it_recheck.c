/* Integration tests: `shoal-peer get` into a folder that already holds the
 * content.
 *
 * A finished copy is checked against the manifest (recheck.c) instead of
 * being refused: a whole one completes at once without a byte downloaded
 * and, with --seed, is served under the content's original ID, so a third
 * peer can get it after the first seeder left; a copy that differs fails
 * the get with a message naming what differs, and is left exactly as it
 * was. The real binaries run on loopback (tests/lib/fx.h).
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/manifest.h"
#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/proc.h"
#include "tests/lib/testutil.h"

#define FILE_BYTES (3 * FX_MiB + 12345)

/* What a copy on disk is: its bytes' identity as stat tells it. */
struct snap {
  off_t size;
  struct timespec mtime;
  ino_t ino;
};

static void snap_of(const char *path, struct snap *s) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  s->size = st.st_size;
  s->mtime = st.st_mtim;
  s->ino = st.st_ino;
}

static void assert_same_snap(const struct snap *a, const struct snap *b) {
  assert_int_equal(a->size, b->size);
  assert_int_equal(a->mtime.tv_sec, b->mtime.tv_sec);
  assert_int_equal(a->mtime.tv_nsec, b->mtime.tv_nsec);
  assert_int_equal(a->ino, b->ino);
}

/* Peer "a" gets sh's link into DIR/out, which must complete; the copy
 * must equal data. */
static void first_get(struct fx *f, const struct fx_shared *sh,
                      const char *name, const uint8_t *data, size_t len) {
  char opath[PROC_PATH_MAX];
  fx_mkdir(f, "out");
  fx_path(f, opath, sizeof(opath), "out");
  struct proc *a =
      fx_peer(f, "a-first", "a", "get", sh->link, "-o", opath, NULL);
  fx_expect_exit(a, FX_COMPLETE_MS, 0);
  if (data != NULL) {
    fx_assert_copy(f, "out", name, data, len);
  }
}

/* The "stats" line's downloaded bytes of a peer that has exited. */
static uint64_t downloaded_of(struct proc *p) {
  char line[FX_LINE_CAP];
  assert_true(proc_find_event(p, "stats", NULL, NULL, 0, line, sizeof(line)));
  return fx_u64(line, "downloaded");
}

static int is_done_hashing(const char *line, void *arg) {
  uint64_t done, total;
  (void)arg;
  return jsonl_u64(line, "done", &done) == 0 &&
         jsonl_u64(line, "total", &total) == 0 && done == total && total > 0;
}

/* Waits until the tracker lists pk as a seeder of content. */
static void wait_listed_seeding(struct fx *f, const uint8_t content[32],
                                const uint8_t pk[32]) {
  uint64_t deadline = proc_now_ms() + FX_COMPLETE_MS;
  for (;;) {
    int seeding = 0;
    if (fx_tracker_lists(f, content, pk, &seeding) && seeding) {
      return;
    }
    if (proc_now_ms() > deadline) {
      fail_msg("the tracker never listed the peer as a seeder");
    }
    (void)poll(NULL, 0, 50); /* then ask again */
  }
}

/* ---------------------------------------------------------------------- */

/* A whole copy with --seed: complete at once, nothing downloaded, and
 * served under the original ID once the first seeder has left. */
static void whole_copy_is_seeded_under_its_id(void **state) {
  struct fx *f = *state;
  uint8_t *data;
  struct fx_shared sh;
  char line[FX_LINE_CAP], opath[PROC_PATH_MAX], copy[PROC_PATH_MAX];
  char bpath[PROC_PATH_MAX], stats[FX_LINE_CAP];
  uint8_t pk_a[32];
  struct snap before, after;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/copy.bin", FILE_BYTES, 11, &data, &sh);
  first_get(f, &sh, "copy.bin", data, FILE_BYTES);
  fx_path(f, copy, sizeof(copy), "out/copy.bin");
  snap_of(copy, &before);

  fx_path(f, opath, sizeof(opath), "out");
  struct proc *a =
      fx_peer(f, "a-seed", "a", "get", sh.link, "-o", opath, "--seed", NULL);
  fx_wait_event(a, "complete", NULL, NULL, FX_COMPLETE_MS, line);
  assert_int_equal(fx_u64(line, "downloaded"), 0);
  char path[PROC_PATH_MAX];
  assert_int_equal(jsonl_str(line, "path", path, sizeof(path)), 0);
  assert_string_equal(path, copy);
  /* The check showed as hashing, to the end. */
  assert_true(proc_find_event(a, "hashing", is_done_hashing, NULL, 0, line,
                              sizeof(line)));
  assert_int_equal(fx_u64(line, "total"), FILE_BYTES);
  /* Seeded, never published by a peer that is not the publisher. */
  assert_false(proc_find_event(a, "shared", NULL, NULL, 0, NULL, 0));

  /* The first seeder leaves; only a can serve the content now. */
  fx_peer_id(f, "a", pk_a);
  wait_listed_seeding(f, sh.content, pk_a);
  fx_stop_peer(seed, NULL);
  fx_mkdir(f, "out-b");
  fx_path(f, bpath, sizeof(bpath), "out-b");
  struct proc *b = fx_peer(f, "b", "b", "get", sh.link, "-o", bpath, NULL);
  fx_expect_exit(b, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out-b", "copy.bin", data, FILE_BYTES);

  fx_stop_peer(a, stats);
  assert_int_equal(fx_u64(stats, "downloaded"), 0);
  assert_true(fx_u64(stats, "uploaded") >= FILE_BYTES);
  /* Only read: the same file, untouched, and no partial copy beside it. */
  snap_of(copy, &after);
  assert_same_snap(&before, &after);
  fx_assert_copy(f, "out", "copy.bin", data, FILE_BYTES);
  free(data);
  fx_finish(f);
}

/* A whole copy without --seed: the get ends complete at once, with exit
 * status 0 and nothing transferred, even with no seeder left; a folder
 * with an empty file in it. */
static void whole_folder_without_seed_just_completes(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char opath[PROC_PATH_MAX], copy[PROC_PATH_MAX];
  struct snap before, after;

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "src/album");
  fx_mkdir(f, "src/album/b");
  fx_write_random(f, "src/album/a.bin", 300000, 21, NULL);
  fx_write_random(f, "src/album/b/c.bin", 100000, 22, NULL);
  fx_write_random(f, "src/album/empty", 0, 23, NULL);
  struct proc *seed = fx_seed(f, "src/album", &sh, NULL);
  first_get(f, &sh, "album", NULL, 0);
  fx_path(f, copy, sizeof(copy), "out/album/b/c.bin");
  snap_of(copy, &before);
  fx_stop_peer(seed, NULL);

  fx_path(f, opath, sizeof(opath), "out");
  struct proc *a =
      fx_peer(f, "a-again", "a", "get", sh.link, "-o", opath, NULL);
  fx_expect_exit(a, FX_COMPLETE_MS, 0);
  assert_true(proc_find_event(a, "complete", NULL, NULL, 0, NULL, 0));
  assert_int_equal(downloaded_of(a), 0);
  snap_of(copy, &after);
  assert_same_snap(&before, &after);
  char part[PROC_PATH_MAX];
  fx_path(f, part, sizeof(part), "out/album.shoal-part");
  assert_false(fx_exists(part));
  fx_finish(f);
}

/* A copy that differs in one byte: the get fails, names the chunk, and
 * leaves the copy as it was. */
static void altered_copy_fails_and_is_left_alone(void **state) {
  struct fx *f = *state;
  uint8_t *data;
  struct fx_shared sh;
  char opath[PROC_PATH_MAX], copy[PROC_PATH_MAX], want[128];
  struct snap before, after;
  const unsigned log2 = manifest_choose_chunk_log2(FILE_BYTES);
  const uint64_t off = 5 * ((uint64_t)1 << log2) + 77; /* the 6th chunk */

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/copy.bin", FILE_BYTES, 12, &data, &sh);
  first_get(f, &sh, "copy.bin", data, FILE_BYTES);
  fx_path(f, copy, sizeof(copy), "out/copy.bin");
  int fd = open(copy, O_RDWR);
  assert_true(fd >= 0);
  data[off] ^= 0x01;
  assert_int_equal(pwrite(fd, &data[off], 1, (off_t)off), 1);
  assert_int_equal(close(fd), 0);
  snap_of(copy, &before);

  fx_path(f, opath, sizeof(opath), "out");
  struct proc *a =
      fx_peer(f, "a-seed", "a", "get", sh.link, "-o", opath, "--seed", NULL);
  fx_expect_exit(a, FX_COMPLETE_MS, 1);
  snprintf(
      want, sizeof(want), "copy.bin: chunk 6 of its %llu differs",
      (unsigned long long)((FILE_BYTES + ((size_t)1 << log2) - 1) >> log2));
  if (!proc_output_has(a, 0, want)) {
    fail_msg("the error does not say '%s'", want);
  }
  assert_true(proc_output_has(a, 0, "nothing was overwritten"));
  assert_false(proc_find_event(a, "complete", NULL, NULL, 0, NULL, 0));
  assert_int_equal(downloaded_of(a), 0);
  snap_of(copy, &after);
  assert_same_snap(&before, &after);
  fx_assert_copy(f, "out", "copy.bin", data, FILE_BYTES);
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_recheck") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(whole_copy_is_seeded_under_its_id,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(whole_folder_without_seed_just_completes,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(altered_copy_fails_and_is_left_alone,
                                      fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
