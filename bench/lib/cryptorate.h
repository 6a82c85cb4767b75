/* The per-byte primitives a downloader might hash and decrypt with, each
 * timed on one core over the same block size: libsodium's always, and
 * OpenSSL's EVP ones when the bench was built with libcrypto
 * (SHOAL_BENCH_LIBCRYPTO, set by the Makefile only when pkg-config finds
 * libcrypto). */
#ifndef SHOAL_CRYPTORATE_H
#define SHOAL_CRYPTORATE_H

#include <stddef.h>

#define CRYPTORATE_MAX 12 /* rows cryptorate_run can fill */

struct cryptorate_row {
  const char *lib;  /* "libsodium" or "OpenSSL" */
  const char *name; /* "BLAKE2b-256", "ChaCha20-Poly1305 open", ... */
  double mbps;      /* 10^6 bytes per second; 0 when it failed */
};

/* Times each primitive on one block of `block` bytes, done over and over
 * for about `seconds` each (a hash is a whole digest of one block; an AEAD
 * opens and checks one sealed block, as a downloader does). Fills up to
 * CRYPTORATE_MAX rows of `rows` and returns how many; sodium_init must
 * have succeeded. */
size_t cryptorate_run(struct cryptorate_row *rows, size_t block,
                      double seconds);

/* 1 when OpenSSL's rows are built in, else 0. */
int cryptorate_have_openssl(void);

/* The OpenSSL version string, or "not built in". */
const char *cryptorate_openssl_version(void);

#endif
