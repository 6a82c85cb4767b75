/* Storage of one content on one peer: where its bytes live, which chunks
 * are verified, and how a download survives a restart.
 *
 * A source is content this peer shares from its own files: the files are
 * only ever read, and a file whose size or modification time differs from
 * when it was hashed is not served (the read fails with SHOAL_ECHANGED and
 * the reason is logged once).
 *
 * A download writes into a partial copy beside its final place, DIR/NAME
 * plus ".shoal-part" (a file, or a folder holding exactly the manifest's
 * paths), preallocated to full size once a check of the free space says it
 * fits; a reservation that fails all the same is given back. The partial
 * copy is locked (flock) for the storage's life, so a second download of
 * it, even in the same process, is refused at once. A chunk is hashed on
 * libuv's thread pool and written with a positional write only when it
 * matches the manifest. Which chunks are done is kept in a resume record
 * (path given by the caller), saved atomically (temporary file, fsync,
 * rename) at most every STORAGE_SAVE_MS and when the storage closes. When
 * every chunk is verified, the partial copy is flushed and renamed to
 * DIR/NAME, and the record is removed. A restarted download re-hashes the
 * chunks its record lists and fetches the rest.
 *
 * All callbacks run on the loop thread. Disk work and hashing run on the
 * thread pool; the loop never blocks on the disk.
 */
#ifndef SHOAL_PEER_STORAGE_H
#define SHOAL_PEER_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/manifest.h"

#define STORAGE_PART_SUFFIX ".shoal-part"
#define STORAGE_SAVE_MS 1000u /* at most one resume-record save a second */
#define STORAGE_MAX_OPEN 64   /* file descriptors a folder download keeps */

struct pwire_sealed; /* common/pwire.h */
struct storage;

/* status 0 or an error; for a chunk write SHOAL_EHASH means the data did
 * not match and nothing was written. */
typedef void (*storage_cb)(void *arg, int status);
typedef void (*storage_read_cb)(void *arg, int status, uint8_t *data,
                                size_t len);

/* Opens a source for m, whose local_root and per-file mtimes come from
 * manifest_build. The manifest is borrowed and must outlive the storage. */
int storage_open_source(struct storage **out, uv_loop_t *loop,
                        const struct manifest *m);

/* Opens (or resumes) a download of m into dir. resume_path is where the
 * resume record lives. Fails with UV_EEXIST when dir/NAME already exists
 * (nothing is overwritten), UV_EBUSY when another download holds the
 * partial copy, UV_ENOSPC when the content does not fit in what dir has
 * free (what this open took is given back; a resumable partial copy keeps
 * what it had), SHOAL_EPATH when a manifest path cannot be created inside
 * dir (all as the status of cb; SHOAL_EPATH for an unsafe path is also
 * returned at once); storage_open_error() then tells more. cb(arg, status)
 * comes once the partial copy is ready and every chunk the record listed was
 * re-hashed (storage_have() then tells which survived). On a non-zero return
 * there is no storage and cb never comes; otherwise cb comes exactly once, with
 * SHOAL_ECANCELED if storage_close() came first, and after a failure the
 * storage is only good for storage_close(). The manifest is borrowed. */
int storage_open_download(struct storage **out, uv_loop_t *loop,
                          const struct manifest *m, const char *dir,
                          const char *resume_path, storage_cb cb, void *arg);

/* Whether chunk idx is verified and on disk (sources: always). */
int storage_have(const struct storage *s, uint32_t idx);
/* Number of verified chunks, and their bytes. */
uint32_t storage_have_count(const struct storage *s);
uint64_t storage_have_bytes(const struct storage *s);
/* The have-map in the wire layout of pwire.h (chunk 0 in the high bit of
 * byte 0); len receives its size. Borrowed; valid until the next change. */
const uint8_t *storage_have_map(const struct storage *s, size_t *len);

/* A buffer for one chunk of len bytes, aligned to STORAGE_DIRECT_ALIGN so
 * that storage_put_chunk can write it without a copy into the page cache;
 * NULL when out of memory. Release it with storage_chunk_free, never
 * free(). Both are safe from any thread. */
#define STORAGE_DIRECT_ALIGN 4096u
void *storage_chunk_alloc(size_t len);
void storage_chunk_free(void *p);

/* Verifies data as chunk idx and writes it. The storage takes data (from
 * storage_chunk_alloc, of exactly the chunk's length) and frees it. cb gets 0,
 * SHOAL_EHASH (nothing written), or a file-system error; cb may be NULL.
 * A chunk already had, or with a put in flight, completes with 0 at once
 * (asynchronously). On a non-zero return (SHOAL_EINVAL: a source, not yet
 * open, index out of range) nothing was taken and cb never comes. */
int storage_put_chunk(struct storage *s, uint32_t idx, uint8_t *data,
                      storage_cb cb, void *arg);

/* The same, for a chunk as it came off the wire; each array is the
 * caller's, of one entry per block (ceil(len / STORAGE_BLOCK_BYTES)),
 * valid until cb, or NULL.
 * - sealed: block i whose sealed[i].len is not 0 is still encrypted
 *   (pwire_open_defer) and is opened in place first, on the thread pool
 *   (pwire_open_sealed). One that does not open sets unopened[i] (which
 *   must then be given); cb gets SHOAL_EBADSIG, or SHOAL_EPROTO for a
 *   genuine block filed under another, and nothing is written. The
 *   records are wiped as they are used.
 * - bad_hashes (32 bytes each): when the chunk fails its hash, the
 *   BLAKE2b-256 of each of its blocks, so the caller can find out later
 *   which sender's block was wrong; left alone when the chunk matches.
 * With both NULL this is storage_put_chunk. */
#define STORAGE_BLOCK_BYTES (64u << 10) /* PWIRE_BLOCK_BYTES */
/* Opens now, on the calling thread, the sealed blocks of data (chunk idx,
 * len bytes) as the put above does on the pool: each block i whose
 * sealed[i].len is not 0, in place, its record wiped. Returns 0, or the
 * first failure of pwire_open_sealed with unopened[i] set for each block
 * that did not open. For a chunk that must be read on the loop anyway. */
int storage_open_blocks(struct pwire_sealed *sealed, uint32_t idx,
                        uint8_t *data, uint32_t len, uint8_t *unopened);
int storage_put_chunk_or_hash_blocks(struct storage *s, uint32_t idx,
                                     uint8_t *data, uint8_t *bad_hashes,
                                     struct pwire_sealed *sealed,
                                     uint8_t *unopened, storage_cb cb,
                                     void *arg);

/* Reads len bytes at offset of chunk idx (the block must lie inside the
 * chunk, and the chunk must be had). cb gets a malloc'd buffer it must
 * free, or an error and NULL (SHOAL_ECHANGED for a changed source file). */
int storage_read(struct storage *s, uint32_t idx, uint32_t offset, uint32_t len,
                 storage_read_cb cb, void *arg);

/* The same into the caller's buffer dst (len bytes, valid until cb): cb
 * gets dst back on success and NULL on an error; dst is never freed here.
 * Saves a copy when the block goes straight into a frame. */
int storage_read_into(struct storage *s, uint32_t idx, uint32_t offset,
                      uint32_t len, uint8_t *dst, storage_read_cb cb,
                      void *arg);

/* The same, done now on the loop thread, when it needs no disk: a source
 * of one file whose chunk idx was hashed since the open, or is being
 * hashed by its first read, with every byte of the block in the page
 * cache. Returns 0 (dst holds the
 * block), UV_EAGAIN (use storage_read_into), SHOAL_ECHANGED (the file
 * changed: storage_source_change says how), or another error. A seeder
 * serving from memory thus reads, seals and writes a block in one pass of
 * the loop, with no thread-pool round trip. */
int storage_read_cached(struct storage *s, uint32_t idx, uint32_t offset,
                        uint32_t len, uint8_t *dst);

/* How a source's file differs from when it was hashed. */
enum storage_change_kind {
  STORAGE_CHANGE_NONE = 0,
  STORAGE_CHANGE_GONE,  /* removed, or no longer a plain file */
  STORAGE_CHANGE_SIZE,  /* size_now is its size */
  STORAGE_CHANGE_MTIME, /* same size, another modification time */
  STORAGE_CHANGE_HASH,  /* same size and time, but chunk fails its hash */
};

struct storage_change {
  enum storage_change_kind kind;
  uint32_t file;     /* index in the manifest's files */
  uint32_t chunk;    /* STORAGE_CHANGE_HASH */
  uint64_t size_now; /* STORAGE_CHANGE_SIZE */
};

/* A source is checked as it is read: every read checks the file's size and
 * modification time before and after, and the first read of each chunk
 * hashes the whole chunk. storage_check_source() checks every file's size
 * and time now, on the thread pool; cb gets 0, SHOAL_ECHANGED or a
 * file-system error (SHOAL_EBUSY is returned when a check is under way,
 * SHOAL_EINVAL for a download). */
int storage_check_source(struct storage *s, storage_cb cb, void *arg);

/* The first change found under a source, by a read or a check: returns 1
 * and fills out, or 0 (out zeroed) while none was found. */
int storage_source_change(const struct storage *s, struct storage_change *out);

/* When every chunk is had: makes the manifest's empty folders, gives each
 * file its mode (0644 or 0755 less the umask) and modification time,
 * flushes, renames the partial copy into place,
 * removes the resume record; cb(0) then. Returns SHOAL_EINVAL if a chunk is
 * missing. */
int storage_finish(struct storage *s, storage_cb cb, void *arg);

/* Saves the resume record now (download) and releases everything once
 * pending disk work is done; cb may be NULL, and gets 0 or the error of
 * that last save. Every request already accepted still gets its callback,
 * before cb. No other call may follow. The partial copy stays for a later
 * resume unless storage_finish completed. */
void storage_close(struct storage *s, storage_cb cb, void *arg);

/* After an open that failed, what the status alone does not tell the user:
 * for UV_ENOSPC how much space the content needs and how much the folder
 * has free, for UV_EBUSY which process holds the partial copy. "" when
 * there is nothing to add. Borrowed; valid until the storage is closed. */
const char *storage_open_error(const struct storage *s);

/* The final path (dir/NAME) of a download; NULL for a source. */
const char *storage_final_path(const struct storage *s);

#endif
