/* Manifests: what a content is, chunk by chunk, signed by its publisher.
 *
 * A manifest describes one file or one folder: its name, total size, chunk
 * size, every file's relative path, size, executable bit and modification
 * time, the folder's empty folders, and one SHA-256 hash per chunk
 * (common/chash.h).
 * Chunks never span files: each file starts a new chunk, so chunk i belongs
 * to exactly one file and an identical file always hashes the same. Every
 * path starts with the content's name ("report.pdf", or "photos/2024/a.jpg"
 * inside the folder "photos"). Only the empty folders are listed: every
 * other folder is implied by the paths inside it, so one tree has one
 * encoding. Version 3 (this one) hashes chunks with SHA-256 instead of
 * version 2's BLAKE2b-256, which added the executable bit, the
 * modification time and the empty folders to version 1; a manifest of any
 * other version is refused with SHOAL_EVERSION (manifest_version_of says
 * which it was).
 *
 * Canonical bytes (docs/protocol.md, "Manifest") are followed on the wire by
 * the publisher's Ed25519 signature over "shoal/1 manifest" || 0x00 ||
 * canonical bytes. The content ID is BLAKE2b-256 of the canonical bytes, so
 * it names both the data and its publisher.
 *
 * Paths from a decoded manifest are safe to join under a download folder:
 * decoding refuses absolute paths, "." and "..", empty segments, control
 * characters, backslashes, invalid UTF-8, duplicates, and a file that would
 * also have to be a folder.
 */
#ifndef SHOAL_MANIFEST_H
#define SHOAL_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/chash.h"
#include "common/identity.h"

#define MANIFEST_VERSION 3
#define MANIFEST_HASH_BYTES CHASH_BYTES
#define MANIFEST_ID_BYTES 32
/* Chunk sizes are powers of two between 16 KiB (small files waste little)
 * and 16 MiB (one chunk stays cheap to re-fetch after a bad hash). */
#define MANIFEST_CHUNK_LOG2_MIN 14
#define MANIFEST_CHUNK_LOG2_MAX 24
/* The automatic choice keeps a content at or below this many chunks. */
#define MANIFEST_TARGET_CHUNKS 2048
/* Limits a decoder enforces before it trusts a count. */
#define MANIFEST_MAX_FILES (1u << 17)   /* files in one folder share */
#define MANIFEST_MAX_FOLDERS (1u << 17) /* empty folders in one share */
#define MANIFEST_MAX_CHUNKS (1u << 20)  /* 32 MiB of hashes */
#define MANIFEST_MAX_PATH 4096          /* bytes in one relative path */
#define MANIFEST_MAX_SEGMENT 255        /* bytes in one path segment */
#define MANIFEST_MAX_BYTES (48u << 20)  /* whole signed manifest */
/* A path has at most this + 1 segments: the name, up to 63 folders, and
 * the file (or an empty folder). */
#define MANIFEST_MAX_DEPTH 64
/* The bytes one hashing job reads before it hands back to the loop. */
#define MANIFEST_JOB_BYTES (8u << 20)
/* The read size while hashing: small enough to stay in cache between the
 * read and the hash. */
#define MANIFEST_READ_BYTES (256u << 10)

/* A file's mode byte: the one bit of a file's mode a manifest carries, set
 * when the publisher's file has its owner's execute bit. No other bit may
 * be set; set-user-ID, set-group-ID, sticky and permission bits are never
 * carried (a downloader makes the file 0644 or 0755 less its umask). */
#define MANIFEST_MODE_EXEC 0x01u
/* A modification time's nanoseconds are below one second. */
#define MANIFEST_NSEC_LIMIT 1000000000u

enum manifest_kind {
  MANIFEST_KIND_FILE = 1,
  MANIFEST_KIND_FOLDER = 2,
};

struct manifest_file {
  char *path; /* owned, NUL-terminated, '/'-separated, starts with name */
  uint64_t size;
  uint32_t first_chunk;
  uint32_t chunk_count;
  uint8_t mode; /* 0 or MANIFEST_MODE_EXEC */
  /* The modification time the manifest carries (seconds may be negative;
   * nanoseconds are below MANIFEST_NSEC_LIMIT). For a local source it is
   * also what hashing and serving compare the file against; for a source
   * made from a checked copy (recheck_apply) these are the copy's times. */
  int64_t mtime_sec;
  int64_t mtime_nsec;
  /* Local source only, never on the wire: the status-change time (ctime)
   * the file had through the whole of its hashing by this process
   * (manifest_build), when ctime_known is 1. Any write to a file, and any
   * change of its times, sets its ctime to the present; so while a file
   * still has this ctime, its chunks are the bytes that were hashed, and a
   * source serves them without hashing each again (peer/source.c). */
  int64_t ctime_sec;
  int64_t ctime_nsec;
  int ctime_known; /* 0: unknown, 1: known, -1: jobs saw different ones */
};

struct manifest {
  uint8_t kind;
  uint8_t chunk_log2;
  uint64_t total_size;
  char *name;
  uint32_t file_count;
  struct manifest_file *files;
  uint32_t folder_count;
  char **folders; /* owned: the empty folders, paths as for files, in
                     canonical order; none is inside a file or holds any
                     other path */
  uint32_t chunk_count;
  uint8_t *hashes; /* chunk_count * MANIFEST_HASH_BYTES */
  uint8_t publisher[IDENTITY_PK_BYTES];
  uint8_t signature[IDENTITY_SIG_BYTES];
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t *encoded; /* canonical bytes || signature */
  size_t encoded_len;
  /* Local source only: the folder that holds the shared file or folder, so
   * a file's local path is local_root "/" path. NULL when decoded. */
  char *local_root;
};

/* Chooses the chunk size (log2) for a content of total bytes. */
unsigned manifest_choose_chunk_log2(uint64_t total);

/* Checks the version byte, verifies the publisher's signature over bytes,
 * then decodes and validates them. Returns 0 and a manifest to free, or an
 * error: SHOAL_EVERSION (a version other than MANIFEST_VERSION, whatever
 * the length), SHOAL_ETRUNC, SHOAL_ETOOBIG, SHOAL_EBADSIG, SHOAL_EFORMAT,
 * SHOAL_EPATH, SHOAL_EDUPPATH, SHOAL_ESIZE. */
__attribute__((warn_unused_result)) int
manifest_decode(const uint8_t *bytes, size_t len, struct manifest **out);

/* The version byte of manifest bytes (0 for none): what a caller names
 * when manifest_decode refused them with SHOAL_EVERSION. */
unsigned manifest_version_of(const uint8_t *bytes, size_t len);

/* Computes the content ID of signed manifest bytes without decoding them
 * (the hash of everything but the trailing signature). Returns 0 or
 * SHOAL_ETRUNC. */
int manifest_id_of(const uint8_t *bytes, size_t len,
                   uint8_t id[MANIFEST_ID_BYTES]);

/* Frees a manifest; NULL is a no-op. */
void manifest_free(struct manifest *m);

/* Checks one relative path as manifest decoding does. Returns 0,
 * SHOAL_EPATH or SHOAL_ETOOBIG. */
int manifest_check_path(const char *path, size_t len);
/* Checks one segment of a path (a file or folder name): not empty, not "."
 * or "..", no control characters, no '/' or '\\', valid UTF-8, at most
 * MANIFEST_MAX_SEGMENT bytes. Returns 0 or SHOAL_EPATH. */
int manifest_check_segment(const char *s, size_t len);

/* Making a manifest of a local content (peer/manifest_build.c scans and
 * hashes; the layout and the bytes are decided here). */

/* Puts the files and empty folders gathered in m into canonical order, sets
 * the total size, the chunk size (chunk_log2, or when 0 the choice of
 * manifest_choose_chunk_log2) and every file's chunk range, and allocates
 * the chunk hashes (zeroed, for the caller to fill). Returns 0,
 * SHOAL_EINVAL (chunk_log2 out of range), SHOAL_ETOOBIG (more than
 * MANIFEST_MAX_CHUNKS chunks) or SHOAL_ENOMEM. */
int manifest_layout(struct manifest *m, unsigned chunk_log2);
/* Signs a laid-out manifest whose hashes are filled in: sets m->publisher
 * to pub's key, m->encoded to the canonical bytes and signature (owned by
 * m) and m->id. Returns 0, SHOAL_ETOOBIG or SHOAL_ENOMEM. */
int manifest_seal(struct manifest *m, const struct identity *pub);

/* Bytes in chunk idx (the last chunk of a file may be short). */
uint32_t manifest_chunk_len(const struct manifest *m, uint32_t idx);
/* The file that holds chunk idx and the chunk's offset inside it. Returns 0
 * or SHOAL_EINVAL for an index out of range. */
int manifest_chunk_file(const struct manifest *m, uint32_t idx, uint32_t *file,
                        uint64_t *offset);
/* Checks h, a chunk hash the caller computed (chash), against chunk
 * idx's. Returns 0, SHOAL_EHASH or SHOAL_EINVAL (index out of range). */
int manifest_chunk_digest_check(const struct manifest *m, uint32_t idx,
                                const uint8_t h[MANIFEST_HASH_BYTES]);
/* Checks data against chunk idx's hash. Returns 0, SHOAL_EHASH or
 * SHOAL_EINVAL (index or length out of range). */
int manifest_verify_chunk(const struct manifest *m, uint32_t idx,
                          const uint8_t *data, size_t len);

#endif
