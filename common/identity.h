/* Ed25519 identities: a peer's or a tracker's key pair.
 *
 * The public key is the identity; its text form is textid's TEXTID_KEY.
 * On disk a key file is 88 bytes (docs/protocol.md, "Key file"): a magic
 * string, the 32-byte seed, the public key and a BLAKE2b-128 checksum. It is
 * written atomically with mode 0600, and a file that group or others can
 * read is refused. The secret half never leaves this module except into
 * libsodium's sign calls, and is wiped by identity_close().
 */
#ifndef SHOAL_IDENTITY_H
#define SHOAL_IDENTITY_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_PK_BYTES crypto_sign_PUBLICKEYBYTES
#define IDENTITY_SK_BYTES crypto_sign_SECRETKEYBYTES
#define IDENTITY_SIG_BYTES crypto_sign_BYTES
#define IDENTITY_FILE_BYTES 88

struct identity {
  uint8_t pk[IDENTITY_PK_BYTES];
  uint8_t sk[IDENTITY_SK_BYTES];
};

/* Fills id with a fresh random key pair. */
void identity_generate(struct identity *id);
/* Derives a key pair from a 32-byte seed (tests, known-answer vectors). */
void identity_from_seed(struct identity *id, const uint8_t seed[32]);
/* Wipes the secret key. */
void identity_close(struct identity *id);

/* Loads the key at path. Returns 0; -ENOENT (libuv's UV_ENOENT) when there
 * is no file;
 * SHOAL_EKEYPERM when group or others have any permission on it (the file is
 * not read);
 * SHOAL_EKEYFILE when its size, magic, checksum or key pair is wrong; or a
 * negated errno value from the file system. */
int identity_load(struct identity *id, const char *path);
/* Writes id to path atomically (temporary file with mode 0600, fsync,
 * rename, fsync of the folder). An existing file is replaced. */
int identity_save(const struct identity *id, const char *path);
/* Loads the key at path, or creates and saves a new one when the file does
 * not exist. *created tells which (may be NULL). */
int identity_load_or_create(struct identity *id, const char *path,
                            int *created);

/* Detached signature over the concatenation of two byte strings (a domain
 * string and a message); used by the envelope and the manifest. Returns 0 or
 * SHOAL_ENOMEM (the concatenation of a large message is made on the heap). */
int identity_sign2(const struct identity *id, const void *a, size_t alen,
                   const void *b, size_t blen, uint8_t sig[IDENTITY_SIG_BYTES]);
/* Verifies such a signature. Returns 0, SHOAL_EBADSIG or SHOAL_ENOMEM. */
__attribute__((warn_unused_result)) int
identity_verify2(const uint8_t pk[IDENTITY_PK_BYTES], const void *a,
                 size_t alen, const void *b, size_t blen,
                 const uint8_t sig[IDENTITY_SIG_BYTES]);

#endif
