/* File-system helpers for a peer's storage (and for the manifest builder,
 * which reads folders and compares files the same way): blocking calls
 * with no state of their own that walk paths one segment at a time without
 * following a symbolic link, read folders, remove trees, flush, rename
 * without replacing, preallocate, do the arithmetic of free space, and
 * compare a file with what was hashed.
 *
 * Every function here blocks on the disk: the storage calls them from
 * libuv's thread pool, never from the loop thread. Errors are 0 or a
 * negative errno (libuv's codes) or a SHOAL_* code; descriptors are ints,
 * and a function that takes one says so.
 */
#ifndef SHOAL_PEER_FSUTIL_H
#define SHOAL_PEER_FSUTIL_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "common/manifest.h"

/* Modes of the files and folders made here, both less the umask. */
#define FSUTIL_FILE_MODE 0644
#define FSUTIL_FOLDER_MODE 0755
/* A manifest path has at most MANIFEST_MAX_DEPTH + 1 segments; a deeper
 * tree in a partial folder was planted, and removing it is refused. */
#define FSUTIL_MAX_DEPTH (2 * MANIFEST_MAX_DEPTH)

/* Reads up to n bytes at off into p, retrying short reads and EINTR.
 * Returns the bytes read (fewer only at the end of the file) or -errno. */
ssize_t fsutil_pread_full(int fd, uint8_t *p, size_t n, uint64_t off);
/* Writes all n bytes of p at off. Returns 0 or -errno. */
int fsutil_pwrite_full(int fd, const uint8_t *p, size_t n, uint64_t off);
/* fsync(fd), retried on EINTR. Returns 0 or -errno. */
int fsutil_fsync(int fd);
/* fsyncs the folder that holds path, so that a rename into it is durable.
 * Returns 0, -errno or SHOAL_ENOMEM. */
int fsutil_fsync_parent(const char *path);
/* The end of an atomic write: writes the n bytes of p into fd, the open
 * temporary file tmp beside path, flushes and closes it (fd is closed in
 * every case), renames tmp over path and flushes path's folder. tmp is
 * unlinked when a step before the rename fails. Returns 0 or an error; an
 * error of the folder's flush means path holds the new bytes already. */
int fsutil_replace(int fd, const char *tmp, const char *path, const uint8_t *p,
                   size_t n);

/* Reading a folder. fsutil_dir_open takes the folder's descriptor fd (and
 * closes it, also when it fails); fsutil_dir_next gives the next entry's
 * name, skipping "." and "..": 1 with *name set (borrowed, valid until the
 * next call), 0 at the end, or -errno. fsutil_dir_fd is the folder's
 * descriptor, for the *at() calls on its entries (owned by the reader).
 * fsutil_dir_close releases everything. */
struct fsutil_dir {
  DIR *d;
};
int fsutil_dir_open(struct fsutil_dir *dir, int fd);
int fsutil_dir_next(struct fsutil_dir *dir, const char **name);
int fsutil_dir_fd(const struct fsutil_dir *dir);
void fsutil_dir_close(struct fsutil_dir *dir);

/* Removes name under dfd: a file or symbolic link is unlinked, a folder
 * emptied first. Never follows a symbolic link. Missing is success; a tree
 * deeper than FSUTIL_MAX_DEPTH is SHOAL_EPATH. */
int fsutil_rmtree_at(int dfd, const char *name);
/* Removes everything in the folder fd (taken and closed), the same way. */
int fsutil_empty_dir(int fd);
/* Removes every empty folder under the folder fd (taken and closed),
 * deepest first; returns 1 when fd itself ended up empty, else 0. */
int fsutil_remove_empty_dirs(int fd);
/* Removes the file rel ('/'-separated) under base, through its folder
 * opened without following a symbolic link. Failures are ignored: it
 * gives back what a failed open made. */
void fsutil_unlink_under(int base, const char *rel);
/* Removes from the folder fd (borrowed) every entry that is neither a
 * regular file at one of the n relative paths nor a folder on the way to
 * one, without following a symbolic link. paths is the caller's; it is
 * sorted here in place. Returns 0, -errno or SHOAL_ENOMEM. */
int fsutil_prune(int fd, const char **paths, uint32_t n);

/* Opens rel ('/'-separated, relative) under base, one segment at a time
 * and never through a symbolic link; a segment that is empty, "." or ".."
 * or longer than MANIFEST_MAX_SEGMENT is SHOAL_EPATH. With create, missing
 * folders and the file are made, and anything else in their place (a
 * symbolic link, folder, fifo or socket where the file belongs; anything
 * but a folder where a folder belongs) is removed first; flags are then
 * ignored and the file is opened for reading and writing. Otherwise the
 * file is opened with flags (plus O_NOFOLLOW, O_NONBLOCK, O_CLOEXEC). If
 * parent is not NULL it receives the descriptor of the file's folder (-1
 * when that is base), which the caller closes. Returns a descriptor the
 * caller closes, or an error. */
int fsutil_open_under(int base, const char *rel, int flags, int create,
                      int *parent);
/* Makes the folder rel and the folders on the way to it under base, one
 * segment at a time, and fsyncs each folder that got a new entry. A folder
 * already there is kept; anything else there (a symbolic link too) is an
 * error. Returns 0 or an error. */
int fsutil_make_dirs(int base, const char *rel);
/* Opens name under dfd again for O_DIRECT writes, if it is the very file
 * that fd holds; -1 when not (the caller then writes through fd). The
 * caller closes the descriptor. */
int fsutil_open_direct(int dfd, const char *name, int fd);

/* Cuts the file fd to size if it is longer, then gives it size bytes and
 * reserves its blocks, so that a full disk shows at the start rather than
 * halfway. Where the file system cannot reserve, it is only extended (a
 * sparse file); glibc's emulation, which writes every block, is never
 * used. Returns 0 or -errno (-ENOSPC among them). */
int fsutil_preallocate(int fd, uint64_t size);
/* Renames from to to inside dfd, failing with UV_EEXIST when to exists:
 * renameat2(RENAME_NOREPLACE) where the file system has it, else a check
 * and a rename, which is not atomic. */
int fsutil_rename_noreplace(int dfd, const char *from, const char *to);

/* a + b, or UINT64_MAX when that overflows: a manifest's sizes are input,
 * and their sum must not wrap. */
uint64_t fsutil_add_sat(uint64_t a, uint64_t b);
/* Bytes that size bytes take in whole blocks of bs (bs > 0), saturated. */
uint64_t fsutil_whole_blocks(uint64_t size, uint64_t bs);
/* Bytes an unprivileged writer may still use on the file system v
 * describes (f_bavail blocks of f_frsize, which must not be 0), saturated:
 * root's reserve is left alone, also when the peer runs as root. */
uint64_t fsutil_avail_bytes(const struct statvfs *v);

/* Whether st is still the file that f describes as it was hashed: a
 * regular file of f's size whose modification time equals f's to the
 * nanosecond. */
int fsutil_stat_matches(const struct stat *st, const struct manifest_file *f);

/* The process's umask, read from /proc/self/status (umask() can only read
 * it by setting it, and for that moment every file another thread makes
 * would get the wrong mode); -1 when it cannot be read. */
int fsutil_umask(void);
/* The pid of the process that holds a flock() lock on the file st, from
 * /proc/locks; -1 when none is listed, as for a holder in a process
 * namespace we cannot see. */
long fsutil_flock_holder(const struct stat *st);

#endif
