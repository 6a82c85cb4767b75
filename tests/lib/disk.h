/* A small ext4 file system for tests: an image file, mkfs.ext4, and a
 * mount on a loop device (mount -o loop, which frees the loop device at
 * unmount).
 *
 * tmpfs hides what a real disk does when it fills up (a failed reservation
 * keeps the blocks it got on ext4), so tests of running out of space make
 * one of these. Only root can mount: without root, mkfs.ext4 or loop
 * devices, disk_mount() says why and the caller skips.
 */
#ifndef SHOAL_TEST_DISK_H
#define SHOAL_TEST_DISK_H

#include <stddef.h>
#include <stdint.h>

/* Makes an image of bytes at img (which must not exist) with mkfs.ext4
 * -q (and -m 0, no blocks kept for root, when no_reserve is set, so that
 * what statvfs() calls available is what a test running as root can
 * use), and mounts it at mnt (an existing empty folder). Returns 0, or -1
 * with why (cap bytes) saying what was missing. */
int disk_mount(const char *img, const char *mnt, uint64_t bytes, int no_reserve,
               char *why, size_t cap);
/* Unmounts mnt (lazily when something still holds it) and removes img.
 * Returns 0 or -1 when it could not be unmounted at all. */
int disk_unmount(const char *img, const char *mnt);
/* Bytes an unprivileged writer may still use under path, or UINT64_MAX
 * when statvfs() fails. */
uint64_t disk_free(const char *path);

#endif
