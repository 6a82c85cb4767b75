/* Integration tests of a downloader's disk: the real shoal-peer against a
 * full disk, and two downloads into one folder.
 *
 * A full disk is a small ext4 file system on a loop device, mounted under
 * the test's folder: tmpfs, and the machine's large disk, hide what a full
 * disk does to a download (ext4 keeps what a failed fallocate() took).
 * Making one needs root, mkfs.ext4 and loop devices; where any is missing
 * the test says so and is skipped. A teardown hook stops the peers, which
 * hold descriptors inside the mount, and unmounts it, also when the test
 * failed; the loop device goes with the mount.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/disk.h"
#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/proc.h"
#include "tests/lib/testutil.h"

/* The case: a 32 MiB file and a 16 MiB ext4 file system. */
#define DISK_BYTES (16u * FX_MiB)
#define BIG_BYTES (32u * FX_MiB)
/* How far the free space may be from what it was once a refusal gave its
 * reservation back: the file system's own bookkeeping, not file blocks. */
#define DISK_SLACK (16u * FX_KiB)

/* ------------------------------------------------------------------------ */
/* A small ext4 file system */

struct disk {
  struct fx *f;
  char path[PROC_PATH_MAX]; /* the mount point */
  char img[PROC_PATH_MAX];
  int mounted;
};

/* Teardown: the peers go first, since their descriptors inside the mount
 * would keep it busy; then the mount, and with it the loop device. */
static void disk_hook(void *arg) {
  struct disk *d = arg;
  for (int i = 0; i < d->f->nprocs; i++) {
    proc_kill(&d->f->procs[i]);
  }
  if (d->mounted && disk_unmount(d->img, d->path) != 0) {
    fprintf(stderr, "it_disk: cannot unmount %s\n", d->path);
  }
  free(d);
}

/* Makes a DISK_BYTES ext4 image (mkfs.ext4 -q, as a user would) in the
 * test folder and mounts it at DIR/disk. Returns the mount point, or NULL
 * after saying why it cannot: the caller then skips. */
static const char *mount_disk(struct fx *f) {
  char why[256];
  struct disk *d = calloc(1, sizeof(*d));
  assert_non_null(d);
  d->f = f;
  fx_on_teardown(f, disk_hook, d);
  fx_path(f, d->img, sizeof(d->img), "disk.img");
  fx_mkdir(f, "disk");
  fx_path(f, d->path, sizeof(d->path), "disk");
  if (disk_mount(d->img, d->path, DISK_BYTES, 0, why, sizeof(why)) != 0) {
    print_message("skipped: %s\n", why);
    return NULL;
  }
  d->mounted = 1;
  return d->path;
}

static int is_error_line(const char *line, void *arg) {
  unsigned *n = arg;
  if (strncmp(line, "shoal-peer: error:", 18) == 0) {
    (*n)++;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* A full disk */

/* A 32 MiB file into a 16 MiB file system: the get is refused before it
 * writes anything, with one error naming what is needed and what is free;
 * no partial copy is left and the space is all still free. */
static void
get_larger_than_the_disk_is_refused_and_takes_nothing(void **state) {
  struct fx *f = *state;
  struct fx_shared sh;
  char line[FX_LINE_CAP], code[64];
  char part[PROC_PATH_MAX], fin[PROC_PATH_MAX];

  const char *disk = mount_disk(f);
  if (disk == NULL) {
    skip();
  }
  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed = fx_share_file(f, "src/big.bin", BIG_BYTES, 41, NULL, &sh);

  uint64_t before = disk_free(disk);
  struct proc *dl = fx_peer(f, "dl", "dl", "get", sh.link, "-o", disk, NULL);
  fx_expect_exit(dl, FX_COMPLETE_MS, 1);
  uint64_t after = disk_free(disk);
  if (after + DISK_SLACK < before) {
    fail_msg("%s: %llu bytes free after the refused get, %llu before", disk,
             (unsigned long long)after, (unsigned long long)before);
  }
  fx_path(f, part, sizeof(part), "disk/big.bin.shoal-part");
  fx_path(f, fin, sizeof(fin), "disk/big.bin");
  assert_false(fx_exists(part));
  assert_false(fx_exists(fin));

  /* One error, naming what is needed, what is free, and where. */
  unsigned errors = 0;
  proc_each_line(dl, 1, is_error_line, &errors);
  assert_int_equal(errors, 1);
  assert_true(proc_output_has(dl, 1, "32.0 MiB"));
  assert_true(proc_output_has(dl, 1, " free"));
  assert_true(proc_output_has(dl, 1, disk));
  assert_true(proc_find_event(dl, "error", NULL, NULL, 0, line, sizeof(line)));
  assert_int_equal(jsonl_str(line, "code", code, sizeof(code)), 0);
  assert_string_equal(code, "ENOSPC");
  fx_stop_peer(seed, NULL);
  fx_finish(f);
}

/* ------------------------------------------------------------------------ */
/* Two downloads into one folder */

/* Two gets of one link into one folder, each with its own --home: the
 * second is refused at once, naming the first, which completes with a
 * correct copy. */
static void second_get_into_the_same_folder_is_refused_at_once(void **state) {
  struct fx *f = *state;
  const size_t size = 4 * FX_MiB;
  uint8_t *data = NULL;
  struct fx_shared sh;
  char out[PROC_PATH_MAX], line[FX_LINE_CAP];
  char who[64];

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  fx_mkdir(f, "out");
  fx_path(f, out, sizeof(out), "out");
  struct proc *seed = fx_share_file(f, "src/twice.bin", size, 42, &data, &sh);

  /* Slow enough to be still running (about 4 s) when the second one
   * comes; its "manifest" event means its partial copy is open. */
  struct proc *first = fx_peer(f, "first", "a", "get", sh.link, "-o", out,
                               "--download-rate", "1M", NULL);
  fx_wait_event(first, "manifest", NULL, NULL, FX_START_MS, line);
  struct proc *second =
      fx_peer(f, "second", "b", "get", sh.link, "-o", out, NULL);
  fx_expect_exit(second, FX_MSG_MS, 1);
  assert_true(proc_alive(first));
  snprintf(who, sizeof(who), "process %d", (int)first->pid);
  if (!proc_output_has(second, 1, who)) {
    fail_msg("the refusal does not name the first get (%s)", who);
  }
  unsigned errors = 0;
  proc_each_line(second, 1, is_error_line, &errors);
  assert_int_equal(errors, 1);
  assert_true(
      proc_find_event(second, "error", NULL, NULL, 0, line, sizeof(line)));

  fx_expect_exit(first, FX_COMPLETE_MS, 0);
  fx_assert_copy(f, "out", "twice.bin", data, size);
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_disk") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          get_larger_than_the_disk_is_refused_and_takes_nothing, fx_setup,
          fx_teardown),
      cmocka_unit_test_setup_teardown(
          second_get_into_the_same_folder_is_refused_at_once, fx_setup,
          fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
