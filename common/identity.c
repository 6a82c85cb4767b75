#include "common/identity.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

#define SEED_BYTES crypto_sign_SEEDBYTES
#define CHECK_BYTES 16
#define MAGIC "SHOALKY1"
#define MAGIC_BYTES 8
/* Messages up to this size are concatenated on the stack for signing. */
#define SIGN_STACK_BYTES 1024

_Static_assert(MAGIC_BYTES + SEED_BYTES + IDENTITY_PK_BYTES + CHECK_BYTES ==
                   IDENTITY_FILE_BYTES,
               "key file layout");

void identity_generate(struct identity *id) {
  if (sodium_init() < 0) {
    abort(); /* libsodium cannot run at all: nothing sensible to do */
  }
  crypto_sign_keypair(id->pk, id->sk);
}

void identity_from_seed(struct identity *id, const uint8_t seed[32]) {
  crypto_sign_seed_keypair(id->pk, id->sk, seed);
}

void identity_close(struct identity *id) {
  sodium_memzero(id, sizeof(*id));
}

static void file_checksum(const uint8_t *data, size_t len,
                          uint8_t out[CHECK_BYTES]) {
  crypto_generichash(out, CHECK_BYTES, data, len, NULL, 0);
}

static int read_all(int fd, uint8_t *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    if (r == 0) {
      break;
    }
    got += (size_t)r;
  }
  return (int)got;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int identity_load(struct identity *id, const char *path) {
  uint8_t file[IDENTITY_FILE_BYTES + 1];
  uint8_t check[CHECK_BYTES];
  struct identity tmp;
  struct stat st;
  int err;
  int fd;

  memset(id, 0, sizeof(*id));
  /* O_NONBLOCK: a fifo planted at the key path must not hang us; it is
   * refused below as not a regular file. */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    return -errno;
  }
  if (fstat(fd, &st) != 0) {
    err = -errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    err = SHOAL_EKEYFILE;
    goto out;
  }
  /* The secret is not even read when others could have read it first. */
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    err = SHOAL_EKEYPERM;
    goto out;
  }
  err = read_all(fd, file, sizeof(file));
  if (err < 0) {
    goto out;
  }
  if (err != IDENTITY_FILE_BYTES || memcmp(file, MAGIC, MAGIC_BYTES) != 0) {
    err = SHOAL_EKEYFILE;
    goto out;
  }
  file_checksum(file, IDENTITY_FILE_BYTES - CHECK_BYTES, check);
  if (sodium_memcmp(check, file + IDENTITY_FILE_BYTES - CHECK_BYTES,
                    CHECK_BYTES) != 0) {
    err = SHOAL_EKEYFILE;
    goto out;
  }
  identity_from_seed(&tmp, file + MAGIC_BYTES);
  if (memcmp(tmp.pk, file + MAGIC_BYTES + SEED_BYTES, IDENTITY_PK_BYTES) != 0) {
    err = SHOAL_EKEYFILE;
    goto out;
  }
  *id = tmp;
  err = 0;

out:
  sodium_memzero(&tmp, sizeof(tmp));
  sodium_memzero(file, sizeof(file));
  close(fd);
  return err;
}

/* fsync the folder holding path so that a rename into it is durable. */
static int sync_parent(const char *path) {
  char *copy = strdup(path);
  int err = 0;
  int fd;

  if (copy == NULL) {
    return SHOAL_ENOMEM;
  }
  fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    err = -errno;
  } else {
    if (fsync(fd) != 0) {
      err = -errno;
    }
    close(fd);
  }
  free(copy);
  return err;
}

int identity_save(const struct identity *id, const char *path) {
  uint8_t file[IDENTITY_FILE_BYTES];
  char tmp[4096];
  int fd = -1;
  int err;
  int n;

  n = snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
  if (n < 0 || (size_t)n >= sizeof(tmp)) {
    return -ENAMETOOLONG;
  }
  memcpy(file, MAGIC, MAGIC_BYTES);
  /* libsodium's secret key is seed || public key. */
  memcpy(file + MAGIC_BYTES, id->sk, SEED_BYTES);
  memcpy(file + MAGIC_BYTES + SEED_BYTES, id->pk, IDENTITY_PK_BYTES);
  file_checksum(file, IDENTITY_FILE_BYTES - CHECK_BYTES,
                file + IDENTITY_FILE_BYTES - CHECK_BYTES);

  fd = mkstemp(tmp); /* creates the file with mode 0600 */
  if (fd < 0) {
    err = -errno;
    goto out;
  }
  if (fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
    err = -errno;
    goto fail;
  }
  err = write_all(fd, file, sizeof(file));
  if (err != 0) {
    goto fail;
  }
  if (fsync(fd) != 0) {
    err = -errno;
    goto fail;
  }
  if (close(fd) != 0) {
    fd = -1;
    err = -errno;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    err = -errno;
    goto fail;
  }
  err = sync_parent(path);
  goto out;

fail:
  if (fd >= 0) {
    close(fd);
  }
  unlink(tmp);
out:
  sodium_memzero(file, sizeof(file));
  return err;
}

int identity_load_or_create(struct identity *id, const char *path,
                            int *created) {
  int err = identity_load(id, path);
  if (created != NULL) {
    *created = 0;
  }
  if (err != -ENOENT) {
    return err;
  }
  identity_generate(id);
  err = identity_save(id, path);
  if (err != 0) {
    identity_close(id);
    return err;
  }
  if (created != NULL) {
    *created = 1;
  }
  return 0;
}

/* Points *msg at a || b: the caller's stack buffer when it fits, else the heap.
 */
static int with_concat(const void *a, size_t alen, const void *b, size_t blen,
                       uint8_t **msg, uint8_t *stack) {
  if (alen + blen <= SIGN_STACK_BYTES) {
    *msg = stack;
  } else {
    *msg = malloc(alen + blen);
    if (*msg == NULL) {
      return SHOAL_ENOMEM;
    }
  }
  memcpy(*msg, a, alen);
  if (blen > 0) {
    memcpy(*msg + alen, b, blen);
  }
  return 0;
}

int identity_sign2(const struct identity *id, const void *a, size_t alen,
                   const void *b, size_t blen,
                   uint8_t sig[IDENTITY_SIG_BYTES]) {
  uint8_t stack[SIGN_STACK_BYTES];
  uint8_t *msg;
  int err = with_concat(a, alen, b, blen, &msg, stack);
  if (err != 0) {
    memset(sig, 0, IDENTITY_SIG_BYTES);
    return err;
  }
  crypto_sign_detached(sig, NULL, msg, alen + blen, id->sk);
  if (msg != stack) {
    free(msg);
  }
  return 0;
}

int identity_verify2(const uint8_t pk[IDENTITY_PK_BYTES], const void *a,
                     size_t alen, const void *b, size_t blen,
                     const uint8_t sig[IDENTITY_SIG_BYTES]) {
  uint8_t stack[SIGN_STACK_BYTES];
  uint8_t *msg;
  int err = with_concat(a, alen, b, blen, &msg, stack);
  if (err != 0) {
    return err;
  }
  if (crypto_sign_verify_detached(sig, msg, alen + blen, pk) != 0) {
    err = SHOAL_EBADSIG;
  }
  if (msg != stack) {
    free(msg);
  }
  return err;
}
