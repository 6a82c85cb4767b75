/* The chunk hash: SHA-256 of each chunk's bytes.
 *
 * Manifest version 3 names every chunk by its SHA-256 (FIPS 180-4). The
 * bytes come from OpenSSL's libcrypto (EVP), which picks the CPU's SHA
 * extensions (x86 SHA-NI, ARMv8 SHA2) where they exist and its AVX2 or
 * SSSE3 code where they do not: on the machine docs/transfer.md describes,
 * 1.75 GB/s a core with them and 0.51 GB/s without, against libsodium's
 * BLAKE2b-256 (the version 2 chunk hash) at 1.05 GB/s either way. Only
 * the chunk hash comes from libcrypto; identities, signatures, content IDs
 * and the key exchange stay libsodium's.
 *
 * Any thread may hash at once: a struct chash belongs to one caller, and
 * the digest's method is fetched once per process.
 */
#ifndef SHOAL_CHASH_H
#define SHOAL_CHASH_H

#include <stddef.h>
#include <stdint.h>

#define CHASH_BYTES 32 /* SHA-256 */

/* A hash being fed piece by piece. */
struct chash {
  void *cx; /* OpenSSL's EVP_MD_CTX */
};

/* Starts a hash. Returns 0 or SHOAL_ENOMEM; chash_free is needed either
 * way. */
int chash_init(struct chash *h);
/* Feeds len bytes. Returns 0, or SHOAL_ENOMEM when libcrypto fails (it
 * does only without memory). */
int chash_update(struct chash *h, const void *data, size_t len);
/* Writes the digest; the hash may then be started again with chash_init.
 * Returns 0 or SHOAL_ENOMEM. */
int chash_final(struct chash *h, uint8_t out[CHASH_BYTES]);
void chash_free(struct chash *h);

/* The digest of len bytes in one call. Returns 0 or SHOAL_ENOMEM (out is
 * zeroed then). */
int chash_once(uint8_t out[CHASH_BYTES], const void *data, size_t len);

#endif
