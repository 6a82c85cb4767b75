/* Helpers for the manifest tests (test_manifest, test_manifest_build):
 * folders on disk with chosen sizes, modes and modification times, and
 * manifests built from them. Every helper fails the cmocka test on an
 * error. */
#ifndef SHOAL_TESTS_MTREE_H
#define SHOAL_TESTS_MTREE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/identity.h"
#include "common/manifest.h"
#include "peer/manifest_build.h"

/* Room for any path the manifest tests make. */
#define MT_PATH_CAP 8192

/* Files in mt_make_tree()'s tree, in canonical order, and its empty
 * folders. */
#define MT_TREE_FILES 5
#define MT_TREE_FOLDERS 3
extern const char *const mt_tree_paths[MT_TREE_FILES];
extern const char *const mt_tree_folders[MT_TREE_FOLDERS];

/* Makes a key pair from a seed of 32 times byte. */
void mt_seed_key(struct identity *id, uint8_t byte);

/* A fresh temp folder, resolved so that it compares with local_root. */
void mt_tmpdir(char *out, size_t cap);
/* Writes len bytes of tu_fill(seed) to dir/rel, making parent folders. */
void mt_write_filled(const char *dir, const char *rel, size_t len,
                     uint64_t seed);
/* Sets dir/rel's modification (and access) time, not following a link. */
void mt_set_mtime(const char *dir, const char *rel, int64_t sec, long nsec);
void mt_set_mode(const char *dir, const char *rel, mode_t mode);
void mt_mkdir(const char *dir, const char *rel);

/* Makes dir/top:
 *   a/b/c/deep.bin   1 byte
 *   a/empty.txt      0 bytes
 *   d/x              100 bytes
 *   d-e              20000 bytes (2 chunks), mode 0755: executable
 *   z.bin            40000 bytes (3 chunks)
 *   emptydir/, nest/ed/  folders without files: recorded, nest only through
 *                    nest/ed
 *   lonely/          a folder whose only entry is skipped: recorded empty
 *   link -> d/x      symbolic link: skipped
 *   lonely/l -> ../z.bin   symbolic link: skipped
 *   fifo             named pipe: skipped
 *   back\slash       unsafe name: skipped
 * Every file's modification time is mt_tree_mtime(i), mt_tree_nsec(i) for
 * its index i in mt_tree_paths, so that two trees made apart in time are
 * the same content. */
void mt_make_tree(const char *dir);
int64_t mt_tree_mtime(size_t i);
long mt_tree_nsec(size_t i);

/* Builds path, which must succeed, and returns the manifest to free. */
struct manifest *mt_build(const char *path, const struct identity *id,
                          const struct manifest_build_opts *o);
/* A signed manifest of one file, name, of chunks chunks of
 * 2^MANIFEST_CHUNK_LOG2_MIN bytes, whose hashes are tu_fill(seed) (no
 * bytes on disk are behind it: for tests of how a manifest travels), by a
 * fresh key; the caller frees it. */
struct manifest *mt_file_manifest(const char *name, uint32_t chunks,
                                  uint64_t seed);
/* Decodes a private heap copy of exactly len bytes, so that ASan catches a
 * read past the end; returns the error and checks the output contract. */
int mt_decode_copy(const uint8_t *bytes, size_t len);

#endif
