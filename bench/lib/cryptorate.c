/* Times the candidate per-byte primitives on one core (see cryptorate.h). */
#include "bench/lib/cryptorate.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench/lib/benchutil.h"

#ifndef SHOAL_BENCH_LIBCRYPTO
#define SHOAL_BENCH_LIBCRYPTO 0
#endif
#if SHOAL_BENCH_LIBCRYPTO
#include <openssl/crypto.h>
#include <openssl/evp.h>
#endif

#define TAG_BYTES 16   /* Poly1305 and GCM tags alike */
#define NONCE_BYTES 12 /* IETF ChaCha20-Poly1305 and GCM */
#define KEY_BYTES 32
#define DIGEST_MAX 64
#define CHECK_EVERY 16 /* blocks between two reads of the clock */

/* What one timed step works on: the block, its sealed form, the key. */
struct job {
  size_t block;
  uint8_t *pt;
  uint8_t *ct; /* block + TAG_BYTES */
  uint8_t *out;
  uint8_t key[KEY_BYTES];
  uint8_t nonce[NONCE_BYTES];
  uint8_t tag[TAG_BYTES];
#if SHOAL_BENCH_LIBCRYPTO
  EVP_MD_CTX *md;
  const EVP_MD *md_type;
  EVP_CIPHER_CTX *cx;
#endif
};

typedef int (*step_fn)(struct job *j);

/* Runs step over and over for about `seconds`; MB/s, or 0 if it failed. */
static double time_step(struct job *j, step_fn step, double seconds) {
  uint64_t n = 0;
  double t0 = benchutil_now_s(), t = t0;
  if (step(j) != 0) { /* one untimed warm-up, and a check that it works */
    return 0;
  }
  t0 = benchutil_now_s();
  do {
    for (int k = 0; k < CHECK_EVERY; k++) {
      if (step(j) != 0) {
        return 0;
      }
    }
    n += CHECK_EVERY;
    t = benchutil_now_s();
  } while (t - t0 < seconds);
  return (double)n * (double)j->block / (t - t0) / 1e6;
}

static int sodium_blake2b(struct job *j) {
  uint8_t h[32];
  return crypto_generichash(h, sizeof(h), j->pt, j->block, NULL, 0);
}

static int sodium_sha256(struct job *j) {
  uint8_t h[crypto_hash_sha256_BYTES];
  return crypto_hash_sha256(h, j->pt, j->block);
}

static int sodium_chacha_open(struct job *j) {
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached(
      j->out, NULL, j->ct, j->block, j->tag, NULL, 0, j->nonce, j->key);
}

static int sodium_aesgcm_open(struct job *j) {
  return crypto_aead_aes256gcm_decrypt_detached(
      j->out, NULL, j->ct, j->block, j->tag, NULL, 0, j->nonce, j->key);
}

#if SHOAL_BENCH_LIBCRYPTO
static int evp_digest(struct job *j) {
  uint8_t h[DIGEST_MAX];
  unsigned int len = 0;
  if (EVP_DigestInit_ex(j->md, j->md_type, NULL) != 1 ||
      EVP_DigestUpdate(j->md, j->pt, j->block) != 1 ||
      EVP_DigestFinal_ex(j->md, h, &len) != 1) {
    return -1;
  }
  return 0;
}

/* The key is set once (as a session would); each block gets its nonce,
 * its tag, and is opened and checked. */
static int evp_open(struct job *j) {
  int len = 0, fin = 0;
  if (EVP_DecryptInit_ex(j->cx, NULL, NULL, NULL, j->nonce) != 1 ||
      EVP_CIPHER_CTX_ctrl(j->cx, EVP_CTRL_AEAD_SET_TAG, TAG_BYTES, j->tag) !=
          1 ||
      EVP_DecryptUpdate(j->cx, j->out, &len, j->ct, (int)j->block) != 1 ||
      EVP_DecryptFinal_ex(j->cx, j->out + len, &fin) != 1) {
    return -1;
  }
  return 0;
}

/* Seals j->pt into j->ct and j->tag with cipher, then leaves j->cx ready
 * to open with the same key. */
static int evp_prepare(struct job *j, const EVP_CIPHER *cipher) {
  EVP_CIPHER_CTX *e = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0, rc = -1;
  if (e == NULL || EVP_EncryptInit_ex(e, cipher, NULL, j->key, j->nonce) != 1 ||
      EVP_EncryptUpdate(e, j->ct, &len, j->pt, (int)j->block) != 1 ||
      EVP_EncryptFinal_ex(e, j->ct + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(e, EVP_CTRL_AEAD_GET_TAG, TAG_BYTES, j->tag) != 1) {
    goto out;
  }
  if (EVP_DecryptInit_ex(j->cx, cipher, NULL, j->key, j->nonce) != 1) {
    goto out;
  }
  rc = 0;
out:
  EVP_CIPHER_CTX_free(e);
  return rc;
}

static double evp_cipher_rate(struct job *j, const EVP_CIPHER *cipher,
                              double seconds) {
  if (cipher == NULL || evp_prepare(j, cipher) != 0) {
    return 0;
  }
  return time_step(j, evp_open, seconds);
}
#endif

int cryptorate_have_openssl(void) {
  return SHOAL_BENCH_LIBCRYPTO ? 1 : 0;
}

const char *cryptorate_openssl_version(void) {
#if SHOAL_BENCH_LIBCRYPTO
  return OpenSSL_version(OPENSSL_VERSION);
#else
  return "not built in";
#endif
}

static void add(struct cryptorate_row *rows, size_t *n, const char *lib,
                const char *name, double mbps) {
  if (*n < CRYPTORATE_MAX) {
    rows[*n].lib = lib;
    rows[*n].name = name;
    rows[*n].mbps = mbps;
    (*n)++;
  }
}

size_t cryptorate_run(struct cryptorate_row *rows, size_t block,
                      double seconds) {
  struct job j;
  size_t n = 0;

  memset(&j, 0, sizeof(j));
  j.block = block;
  j.pt = malloc(block);
  j.ct = malloc(block + TAG_BYTES);
  j.out = malloc(block);
  if (j.pt == NULL || j.ct == NULL || j.out == NULL) {
    goto out;
  }
  randombytes_buf(j.pt, block);
  randombytes_buf(j.key, sizeof(j.key));
  randombytes_buf(j.nonce, sizeof(j.nonce));

  add(rows, &n, "libsodium", "BLAKE2b-256",
      time_step(&j, sodium_blake2b, seconds));
  add(rows, &n, "libsodium", "SHA-256", time_step(&j, sodium_sha256, seconds));
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(
      j.ct, j.tag, NULL, j.pt, block, NULL, 0, NULL, j.nonce, j.key);
  add(rows, &n, "libsodium", "ChaCha20-Poly1305 open",
      time_step(&j, sodium_chacha_open, seconds));
  if (crypto_aead_aes256gcm_is_available()) {
    crypto_aead_aes256gcm_encrypt_detached(j.ct, j.tag, NULL, j.pt, block, NULL,
                                           0, NULL, j.nonce, j.key);
    add(rows, &n, "libsodium", "AES-256-GCM open",
        time_step(&j, sodium_aesgcm_open, seconds));
  }

#if SHOAL_BENCH_LIBCRYPTO
  j.md = EVP_MD_CTX_new();
  j.cx = EVP_CIPHER_CTX_new();
  if (j.md == NULL || j.cx == NULL) {
    goto out;
  }
  j.md_type = EVP_sha256();
  add(rows, &n, "OpenSSL", "SHA-256", time_step(&j, evp_digest, seconds));
  j.md_type = EVP_sha512_256();
  add(rows, &n, "OpenSSL", "SHA-512/256", time_step(&j, evp_digest, seconds));
  j.md_type = EVP_blake2b512();
  add(rows, &n, "OpenSSL", "BLAKE2b-512", time_step(&j, evp_digest, seconds));
  add(rows, &n, "OpenSSL", "ChaCha20-Poly1305 open",
      evp_cipher_rate(&j, EVP_chacha20_poly1305(), seconds));
  add(rows, &n, "OpenSSL", "AES-256-GCM open",
      evp_cipher_rate(&j, EVP_aes_256_gcm(), seconds));
#endif

out:
#if SHOAL_BENCH_LIBCRYPTO
  EVP_MD_CTX_free(j.md);
  EVP_CIPHER_CTX_free(j.cx);
#endif
  sodium_memzero(j.key, sizeof(j.key));
  free(j.pt);
  free(j.ct);
  free(j.out);
  return n;
}
