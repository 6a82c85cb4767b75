/* A small ext4 file system for tests (see disk.h). */
#include "tests/lib/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs argv (argv[0] from PATH, or /usr/sbin and /sbin, where root's
 * tools live) with its output thrown away. Returns its exit status, or -1
 * when it could not run or was killed. */
static int run_quiet(const char *const argv_in[]) {
  pid_t pid = fork();
  int st;

  if (pid < 0) {
    return -1;
  }
  if (pid == 0) {
    /* exec wants writable strings: the child copies them, then becomes
     * the program, so nothing is leaked. */
    char *argv[8];
    char path[4200];
    int n = 0;
    int fd = open("/dev/null", O_WRONLY);
    for (; argv_in[n] != NULL && n < 7; n++) {
      argv[n] = strdup(argv_in[n]);
    }
    argv[n] = NULL;
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execvp(argv[0], argv);
    snprintf(path, sizeof(path), "/usr/sbin/%s", argv[0]);
    execv(path, argv);
    snprintf(path, sizeof(path), "/sbin/%s", argv[0]);
    execv(path, argv);
    _exit(127);
  }
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
    return -1;
  }
  return WEXITSTATUS(st);
}

int disk_mount(const char *img, const char *mnt, uint64_t bytes, int no_reserve,
               char *why, size_t cap) {
  int fd;

  if (geteuid() != 0) {
    snprintf(why, cap, "mounting an ext4 image needs root");
    return -1;
  }
  fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0) {
    snprintf(why, cap, "cannot make %s", img);
    if (fd >= 0) {
      close(fd);
    }
    return -1;
  }
  close(fd);
  const char *const mkfs_keep[] = {"mkfs.ext4", "-q", img, NULL};
  const char *const mkfs_all[] = {"mkfs.ext4", "-q", "-m", "0", img, NULL};
  if (run_quiet(no_reserve ? mkfs_all : mkfs_keep) != 0) {
    snprintf(why, cap, "mkfs.ext4 is missing or failed");
    unlink(img);
    return -1;
  }
  const char *const mnt_argv[] = {"mount", "-o", "loop", img, mnt, NULL};
  if (run_quiet(mnt_argv) != 0) {
    snprintf(why, cap, "cannot mount an ext4 image on a loop device here");
    unlink(img);
    return -1;
  }
  return 0;
}

int disk_unmount(const char *img, const char *mnt) {
  int rc = 0;
  const char *const um[] = {"umount", mnt, NULL};
  const char *const lazy[] = {"umount", "-l", mnt, NULL};
  if (run_quiet(um) != 0 && run_quiet(lazy) != 0) {
    rc = -1;
  }
  /* Now, rather than with the test's folder: a failed test may stop
   * before it removes its folder, and the image is megabytes. */
  unlink(img);
  return rc;
}

uint64_t disk_free(const char *path) {
  struct statvfs v;
  if (statvfs(path, &v) != 0) {
    return UINT64_MAX;
  }
  return (uint64_t)v.f_bavail * v.f_frsize;
}
