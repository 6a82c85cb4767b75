/* Checking a copy on disk against its signed manifest: every file of the
 * content, under a root folder, hashed chunk by chunk on libuv's thread
 * pool and compared with the manifest's hashes.
 *
 * This is how a copy that is already on disk (a finished download, files
 * copied by hand, a share after a restart) is seeded again under its
 * original content ID: once the check passes, the manifest's local_root
 * and per-file modification times are set from what the check saw
 * (recheck_apply), and the manifest serves as a source (node_share).
 *
 * Fast resume: the caller may pass each file's record from the last check
 * (library.h: size, modification time, inode). A file whose record matches
 * what stat says now is trusted without reading it; only the others are
 * hashed. A copy whose every record matches is therefore checked in the
 * time of one stat per file.
 *
 * The files are only ever read (opened O_RDONLY, never O_CREAT). The work
 * runs as up to RECHECK_JOBS jobs on the thread pool at once, each over a
 * run of whole chunks (at most MANIFEST_JOB_BYTES), so both cores hash a
 * large file; the callbacks come on the loop thread.
 */
#ifndef SHOAL_PEER_RECHECK_H
#define SHOAL_PEER_RECHECK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/manifest.h"
#include "peer/library.h"

#define RECHECK_JOBS 2u
#define RECHECK_WHY_BYTES 512

/* What a check found. */
struct recheck_result {
  uint32_t nfiles;
  struct library_file *files; /* what stat said of each whole file at its
                                 check, zeroed for every other: the records
                                 to store for the next check, as they are */
  uint8_t *file_ok;           /* nfiles bytes: 1 when every chunk of the
                                 file matched (or its record did) */
  uint32_t files_hashed;      /* files checked by their content: every file
                                 of the right size whose record did not
                                 match (an empty file counts; it has nothing
                                 to read) */
  uint64_t bytes_hashed;
  uint32_t chunks_bad; /* chunks that failed, or whose file is missing,
                          of another size, or changed during the check */
  /* The first problem in manifest order, for people, one of:
   *   "photos/a.jpg: size 10 bytes, the manifest says 12"
   *   "report.pdf: chunk 3 of its 40 differs" (counted from 1 within the
   *     file; ", and N more" when others of it differ too)
   *   "x: missing"
   *   "x: not a regular file" (a folder, a fifo...)
   *   "x: not a regular file, or behind a symbolic link (links are not
   *     followed)"
   *   "x: changed while it was checked"
   *   "x: " and the error, for a file-system error
   * and "" when the copy is whole. */
  char why[RECHECK_WHY_BYTES];
};

struct recheck;

/* done(arg, status, result): status 0 when every chunk matched,
 * SHOAL_ECHANGED when some did not (result says which files and why),
 * SHOAL_ECANCELED after recheck_cancel, or a file-system error that is not
 * about the copy (out of memory, EIO). result is borrowed for the call. */
typedef void (*recheck_done_cb)(void *arg, int status,
                                const struct recheck_result *result);
/* progress(arg, done, total): bytes hashed of the bytes that need it. */
typedef void (*recheck_progress_cb)(void *arg, uint64_t done, uint64_t total);

/* Starts checking the copy of m under root (root "/" each file's path).
 * known is NULL (or nknown 0) or m->file_count records from an earlier
 * check (nknown must then be m->file_count). m is borrowed until done; root and
 * known are copied. Returns 0 (done will come exactly once, never from inside
 * this call) or an error (SHOAL_EINVAL, SHOAL_ENOMEM; done will not come).
 *
 * A record is trusted: a file rewritten in place with its size, time and
 * inode kept passes without being read (the source's first read of each
 * chunk still hashes it before serving, source.h). */
int recheck_start(struct recheck **out, uv_loop_t *loop,
                  const struct manifest *m, const char *root,
                  const struct library_file *known, uint32_t nknown,
                  recheck_progress_cb progress, recheck_done_cb done,
                  void *arg);

/* Stops a check early: done comes with SHOAL_ECANCELED once the jobs in
 * flight have returned. Only before done: r is freed after it returns. */
void recheck_cancel(struct recheck *r);

/* Makes m (decoded, so with no local_root) a local source of the copy
 * under root that result checked: sets local_root (a copy, replacing any
 * earlier one), and each file's modification time to the one the check
 * saw, which is what serving then compares the file against (m->encoded,
 * the signed bytes, is unchanged). Returns 0, SHOAL_EINVAL (result is of
 * another file count) or SHOAL_ENOMEM. */
int recheck_apply(struct manifest *m, const char *root,
                  const struct recheck_result *result);

#endif
