/* The files of a source, content this peer shares from its own files: the
 * blocking work that reads them only while each is still the file that
 * was hashed, and says how one differs when it is not.
 *
 * A file is opened from the manifest's local_root one segment at a time
 * without following a symbolic link, and is served only while it is a
 * regular file of the manifest's size and modification time, before the
 * read and after it; the first read of each chunk also hashes the whole
 * chunk. docs/storage.md ("Sources") has the table. Every function here
 * blocks: the storage calls them from libuv's thread pool (and
 * source_open once from storage_open_source).
 */
#ifndef SHOAL_PEER_SOURCE_H
#define SHOAL_PEER_SOURCE_H

#include <stdint.h>
#include <sys/stat.h>

#include "common/manifest.h"

struct storage_change; /* peer/storage.h */

/* A block to read from a source file, and the chunk it lies in. */
struct source_block {
  uint32_t file;         /* index in the manifest's files */
  uint64_t offset;       /* of the block, in its file */
  uint32_t len;          /* of the block, inside its chunk */
  uint32_t chunk;        /* the block's chunk */
  uint64_t chunk_offset; /* where the chunk starts in its file */
  uint32_t chunk_len;
  int verify; /* hash the whole chunk against the manifest first (unless
                 the file is unchanged since it was hashed here) */
};

/* 1 when st, the file's status now, has the ctime f had throughout its
 * hashing by this process (manifest_build): then nothing has written to
 * it since, nor set its times, and its chunks need no hashing again. */
int source_unchanged_since_hashed(const struct manifest_file *f,
                                  const struct stat *st);

/* Opens file idx of m (borrowed, with its local_root) for reading. Returns
 * a descriptor the caller closes, SHOAL_ECHANGED when the file or a folder
 * on its way is gone, a symbolic link or no longer a folder, or another
 * error. */
int source_open(const struct manifest *m, uint32_t idx);

/* Reads the block b into dst (b->len bytes, the caller's) from kept_fd,
 * when that is not -1 (a source of one file keeps it open; it is
 * borrowed), else from the file opened by path for this read. Returns 0,
 * SHOAL_ECHANGED with *change saying how the file differs from what was
 * hashed (gone, size, time, or a chunk that fails its hash), or another
 * error. */
int source_read(const struct manifest *m, int kept_fd,
                const struct source_block *b, uint8_t *dst,
                struct storage_change *change);

/* Reads the block b (b->verify 0) into dst from fd, a kept descriptor, on
 * the calling thread, only when every byte of it is in the page cache
 * (preadv2 with RWF_NOWAIT: no wait for the disk). Returns 0; UV_EAGAIN
 * when some byte would have to come from the disk (read it with
 * source_read on the thread pool); SHOAL_ECHANGED with *change as
 * source_read; or another error. The size and time are checked before
 * and after, as in source_read. */
int source_read_cached(const struct manifest *m, int fd,
                       const struct source_block *b, uint8_t *dst,
                       struct storage_change *change);

/* Checks every file of m, by its path, against its size and modification
 * time. Returns 0, SHOAL_ECHANGED with *change saying how the first file
 * that differs does, or another error. */
int source_check(const struct manifest *m, struct storage_change *change);

#endif
