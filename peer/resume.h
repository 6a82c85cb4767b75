/* The resume record of a download: which of its chunks were verified, as
 * bytes, and as a file read and written atomically.
 *
 * Layout (integers big-endian; docs/storage.md, "Resume record"):
 *
 *   offset  size        field
 *   0       8           magic "SHOALRS1"
 *   8       32          content ID (the manifest's id)
 *   40      4 (u32)     chunk count n
 *   44      ceil(n/8)   verified chunks, in the have-map layout of pwire.h:
 *                       chunk 0 in the high bit of byte 0, unused low bits 0
 *   44+b    16          BLAKE2b-128 of every byte before it
 *
 * Everything here is a pure function of its bytes, or blocking file work
 * on one path for libuv's thread pool; nothing keeps state.
 */
#ifndef SHOAL_PEER_RESUME_H
#define SHOAL_PEER_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h"

#define RESUME_MAGIC "SHOALRS1"
#define RESUME_MAGIC_BYTES 8
#define RESUME_COUNT_AT (RESUME_MAGIC_BYTES + MANIFEST_ID_BYTES)
#define RESUME_MAP_AT (RESUME_COUNT_AT + 4) /* also the header's size */
#define RESUME_CHECK_BYTES 16

/* What a record read from bytes or from a file turned out to be. */
enum resume_state {
  RESUME_OK = 0,
  RESUME_NONE,    /* no record */
  RESUME_CORRUPT, /* unreadable, wrong size, bad magic or checksum */
  RESUME_OTHER,   /* a valid-looking record of another content */
};

/* Bytes of the map of n chunks: ceil(n / 8). */
size_t resume_map_bytes(uint32_t n);
/* Bytes of the whole record of n chunks. */
size_t resume_size(uint32_t n);

/* Fills in the record rec (resume_size(n) bytes, the caller's) around its
 * map, which the caller has already put at rec + RESUME_MAP_AT: the magic,
 * the content ID id, the count n and the checksum. The map goes in first
 * so that the loop thread's snapshot of its have-map is the record's own
 * bytes, and the worker that writes the record seals it in place. The map's
 * unused bits must be 0 (decode refuses them). */
void resume_seal(uint8_t *rec, const uint8_t id[MANIFEST_ID_BYTES], uint32_t n);

/* Checks len bytes at rec (borrowed) as the record of the content id with
 * n chunks, in this order: RESUME_OTHER when there is a whole header with
 * the magic and another content ID; RESUME_CORRUPT when the length is not
 * resume_size(n), the magic differs, the checksum does not match, the
 * count is not n or an unused bit of the map is set; else RESUME_OK, and
 * only then is the map copied to map (resume_map_bytes(n) bytes, the
 * caller's; untouched otherwise). */
int resume_decode(const uint8_t *rec, size_t len,
                  const uint8_t id[MANIFEST_ID_BYTES], uint32_t n,
                  uint8_t *map);

/* Reads the record at path and decodes it as above: RESUME_NONE when no
 * file is there, RESUME_CORRUPT for a symbolic link or anything but a
 * regular file too (the next write replaces it). A record that cannot be
 * read at all (out of memory, EIO, EMFILE) is an error instead: it must
 * not pass for a bad record, which would discard the partial copy. map as
 * in resume_decode. Blocks. */
int resume_read(const char *path, const uint8_t id[MANIFEST_ID_BYTES],
                uint32_t n, uint8_t *map);

/* Writes the len bytes of rec (borrowed) to path atomically: a mkstemp()
 * file beside it (mode 0600), fsync, rename over path, fsync of the
 * folder. If a step before the rename fails, the temporary file is removed
 * and what was at path stays. Returns 0 or an error. Blocks. */
int resume_write(const char *path, const uint8_t *rec, size_t len);

#endif
