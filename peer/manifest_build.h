/* Building the signed manifest of a local file or folder: a scan of the
 * path, then hashing on libuv's thread pool (or inline).
 *
 * The scan records every regular file with its size, modification time and
 * executable bit, and every folder in which nothing is recorded as an empty
 * folder; it skips symbolic links, special files and names that cannot be
 * shared safely, and reports each. The layout, the encoding and the
 * signature are common/manifest's (manifest_layout, manifest_seal); this
 * module only reads the disk. docs/design.md, "The manifest builder's
 * threading", tells how the jobs run.
 */
#ifndef SHOAL_PEER_MANIFEST_BUILD_H
#define SHOAL_PEER_MANIFEST_BUILD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/identity.h"
#include "common/manifest.h"

/* The reasons manifest_build gives the skipped callback: one static string
 * for each kind of entry left out of a folder, so that a caller can tell
 * them apart with strcmp (shoal-peer makes each a --json event). */
#define MANIFEST_BUILD_SKIP_SYMLINK "symbolic link (not followed)"
#define MANIFEST_BUILD_SKIP_SPECIAL                                            \
  "not a regular file (socket, fifo or device)"
#define MANIFEST_BUILD_SKIP_UNSAFE_NAME                                        \
  "name cannot be shared safely (control character, backslash or invalid "     \
  "UTF-8)"
#define MANIFEST_BUILD_SKIP_VANISHED "removed while the folder was being read"

struct manifest_build_opts {
  unsigned chunk_log2; /* 0: choose from the total size */
  unsigned threads;    /* manifest_build: 0 hashes on the calling thread;
                          otherwise (and always for manifest_build_start,
                          which treats 0 as 1) 2 jobs per thread are kept
                          queued on libuv's thread pool (size it with
                          UV_THREADPOOL_SIZE; the default is 4) */
  /* Called on the loop thread (or the calling thread) as bytes are hashed. */
  void (*progress)(void *arg, uint64_t done, uint64_t total);
  /* Called for every entry left out of a folder: path is its manifest path
   * (the content's name first, '/'-separated; raw bytes, which for an
   * unsafe name hold the control characters or invalid UTF-8 that made it
   * unsafe, so escape it before printing), and why is one of the
   * MANIFEST_BUILD_SKIP_ strings above. */
  void (*skipped)(void *arg, const char *path, const char *why);
  void *arg;
  /* When not NULL, receives the path that caused a failure. */
  char *err_path;
  size_t err_path_cap;
};

struct manifest_builder;
typedef void (*manifest_build_cb)(void *arg, int status, struct manifest *m);

/* Scans path (a file, or a folder recursively), hashes it and returns a
 * signed manifest that the caller frees with manifest_free(). Blocks; with
 * opts->threads > 0 it runs a private loop to use the thread pool. Symbolic
 * links inside a folder are not followed and are skipped, as are special
 * files (sockets, fifos, devices) and names that cannot be shared safely;
 * each is reported through opts->skipped. A folder in which nothing is
 * recorded (it is empty, or everything in it was skipped) is recorded as an
 * empty folder. Each file's executable bit and modification time are
 * recorded as the scan finds them. Returns 0 or an error (SHOAL_ECHANGED
 * when a file changed while it was read, SHOAL_ETOOBIG over a limit, or a
 * file-system error). */
int manifest_build(const char *path, const struct identity *publisher,
                   const struct manifest_build_opts *opts,
                   struct manifest **out);

/* The same on the caller's loop: scans now, hashes on the thread pool, and
 * calls cb(arg, status, manifest) on the loop thread; the manifest then
 * belongs to the callback. opts and publisher are copied. Returns 0 when the
 * build started (cb will be called exactly once) or an error (cb will not).
 * opts->arg and opts->err_path are borrowed and must stay valid until cb. */
int manifest_build_start(uv_loop_t *loop, const char *path,
                         const struct identity *publisher,
                         const struct manifest_build_opts *opts,
                         manifest_build_cb cb, void *arg,
                         struct manifest_builder **out);
/* Asks a running build to stop; cb still comes, with SHOAL_ECANCELED. */
void manifest_build_cancel(struct manifest_builder *b);

/* Hashes the len bytes at off of fd (one chunk) into out, reading through
 * buf (MANIFEST_READ_BYTES, the caller's). Returns 0, -errno, or
 * SHOAL_ECHANGED when the file ends before them. */
int manifest_hash_chunk(int fd, uint64_t off, uint64_t len, uint8_t *buf,
                        uint8_t out[MANIFEST_HASH_BYTES]);

/* Hashes chunks [c0, c1) of a file of size bytes open as fd, 2^chunk_log2
 * bytes each (the file's last one may be shorter; at most
 * MANIFEST_JOB_BYTES in all), into out, MANIFEST_HASH_BYTES a chunk, after
 * telling the kernel they are read in order. From a mapping of them
 * (peer/maphash.h) when they are MAPHASH_MIN_BYTES or more; by reads through a
 * buffer of MANIFEST_READ_BYTES when they are fewer, when the file cannot be
 * mapped, and when a page of the mapping faulted: the reads then tell a file
 * cut short from a disk error, which a fault cannot. Returns 0, SHOAL_ECHANGED
 * (the file ends before them), SHOAL_ENOMEM or -errno. Any thread; for
 * manifest_build and recheck, which hash the same chunks the same way. */
int manifest_hash_run(int fd, uint64_t size, unsigned chunk_log2, uint32_t c0,
                      uint32_t c1, uint8_t *out);

#endif
