/* Small helpers shared by the cmocka test programs. */
#ifndef SHOAL_TESTUTIL_H
#define SHOAL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/identity.h"

/* Creates a fresh private folder under $TMPDIR (or /tmp) and writes its path
 * into out. Aborts the test program on failure. */
void tu_tmpdir(char *out, size_t cap);
/* Removes a folder tree created by a test (never follows symlinks). */
void tu_rmtree(const char *path);
/* Writes len bytes to dir/rel, creating parent folders. Aborts on failure. */
void tu_write_file(const char *dir, const char *rel, const void *data,
                   size_t len);
/* Reads a whole file into a malloc'd buffer (NULL if missing). */
uint8_t *tu_read_file(const char *path, size_t *len);
/* The same as text: one byte more, a NUL after the *len bytes read. */
char *tu_read_text(const char *path, size_t *len);
/* True when the file at path exists and holds needle. */
int tu_file_has(const char *path, const char *needle);
/* Fills p with deterministic pseudo-random bytes from seed. */
void tu_fill(void *p, size_t len, uint64_t seed);
/* The identity whose 32 seed bytes are tu_fill(seed): a fixed key for each
 * number. The caller closes it. */
void tu_identity(struct identity *id, uint64_t seed);
/* The public key of tu_identity(seed). */
void tu_pk(uint8_t pk[32], uint64_t seed);
/* The next number of a deterministic generator (splitmix64) whose state is
 * *s, so that a randomized test's failure replays from its seed. */
uint64_t tu_rand(uint64_t *s);
/* The next number of that generator reduced to [0, n) (0 when n is 0;
 * the state moves on either way). */
uint32_t tu_below(uint64_t *s, uint32_t n);
/* Joins dir and rel into out with a '/'. */
void tu_path(char *out, size_t cap, const char *dir, const char *rel);
/* Path of a committed test vector: $SHOAL_TEST_VECTORS/name, falling back
 * to tests/vectors/name. */
void tu_vector_path(char *out, size_t cap, const char *name);

#endif
