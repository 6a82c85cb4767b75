/* The resume record of a download: its bytes, checked and sealed, and the
 * file that holds them, read and written atomically. */
#include "peer/resume.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"
#include "peer/fsutil.h"

size_t resume_map_bytes(uint32_t n) {
  return ((size_t)n + 7) / 8;
}

size_t resume_size(uint32_t n) {
  return RESUME_MAP_AT + resume_map_bytes(n) + RESUME_CHECK_BYTES;
}

void resume_seal(uint8_t *rec, const uint8_t id[MANIFEST_ID_BYTES],
                 uint32_t n) {
  size_t body = RESUME_MAP_AT + resume_map_bytes(n);
  memcpy(rec, RESUME_MAGIC, RESUME_MAGIC_BYTES);
  memcpy(rec + RESUME_MAGIC_BYTES, id, MANIFEST_ID_BYTES);
  buf_put_be32(rec + RESUME_COUNT_AT, n);
  crypto_generichash(rec + body, RESUME_CHECK_BYTES, rec, body, NULL, 0);
}

int resume_decode(const uint8_t *rec, size_t len,
                  const uint8_t id[MANIFEST_ID_BYTES], uint32_t n,
                  uint8_t *map) {
  const size_t bytes = resume_map_bytes(n);
  const size_t size = resume_size(n);
  uint8_t check[RESUME_CHECK_BYTES];

  /* Another content's record is told apart from a damaged one, so that
   * the log says which. */
  if (len >= RESUME_MAP_AT &&
      memcmp(rec, RESUME_MAGIC, RESUME_MAGIC_BYTES) == 0 &&
      memcmp(rec + RESUME_MAGIC_BYTES, id, MANIFEST_ID_BYTES) != 0) {
    return RESUME_OTHER;
  }
  if (len != size || memcmp(rec, RESUME_MAGIC, RESUME_MAGIC_BYTES) != 0) {
    return RESUME_CORRUPT;
  }
  crypto_generichash(check, sizeof(check), rec, size - RESUME_CHECK_BYTES, NULL,
                     0);
  if (sodium_memcmp(check, rec + size - RESUME_CHECK_BYTES, sizeof(check))) {
    return RESUME_CORRUPT;
  }
  const uint8_t *bits = rec + RESUME_MAP_AT;
  if (buf_be32(rec + RESUME_COUNT_AT) != n ||
      (bytes > 0 && (n & 7) != 0 && (bits[bytes - 1] & (0xffu >> (n & 7))))) {
    return RESUME_CORRUPT;
  }
  memcpy(map, bits, bytes);
  return RESUME_OK;
}

int resume_read(const char *path, const uint8_t id[MANIFEST_ID_BYTES],
                uint32_t n, uint8_t *map) {
  const size_t size = resume_size(n);
  uint8_t *rec = malloc(size + 1);
  struct stat st;
  int state = RESUME_CORRUPT;
  ssize_t got;
  int fd;

  if (rec == NULL) {
    return SHOAL_ENOMEM;
  }
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    /* A symlink in its place is replaced by the next save. */
    state = errno == ENOENT  ? RESUME_NONE
            : errno == ELOOP ? RESUME_CORRUPT
                             : -errno;
    goto out;
  }
  if (fstat(fd, &st) != 0) {
    state = -errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    goto out;
  }
  /* One byte more than expected tells a longer file from a right one. */
  got = fsutil_pread_full(fd, rec, size + 1, 0);
  if (got < 0) {
    state = (int)got;
    goto out;
  }
  state = resume_decode(rec, (size_t)got, id, n, map);

out:
  if (fd >= 0) {
    close(fd);
  }
  free(rec);
  return state;
}

int resume_write(const char *path, const uint8_t *rec, size_t len) {
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 8);
  int err = 0;
  int fd;

  if (tmp == NULL) {
    return SHOAL_ENOMEM;
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".XXXXXX", 8);
  fd = mkstemp(tmp); /* mode 0600 */
  if (fd < 0) {
    err = -errno;
    free(tmp);
    return err;
  }
  err = fsutil_replace(fd, tmp, path, rec, len);
  free(tmp);
  return err;
}
