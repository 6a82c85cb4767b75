/* Small helpers shared by the cmocka test programs. */
#ifndef SHOAL_TESTUTIL_H
#define SHOAL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

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
/* Fills p with deterministic pseudo-random bytes from seed. */
void tu_fill(void *p, size_t len, uint64_t seed);
/* Joins dir and rel into out with a '/'. */
void tu_path(char *out, size_t cap, const char *dir, const char *rel);
/* Path of a committed test vector: $SHOAL_TEST_VECTORS/name, falling back
 * to tests/vectors/name. */
void tu_vector_path(char *out, size_t cap, const char *name);

#endif
