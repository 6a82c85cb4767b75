/* The chunk hash (common/chash.h) and the session cipher (common/pwire.c),
 * both computed by libcrypto, checked against published answers and
 * against libsodium's own SHA-256 and ChaCha20-Poly1305, a second
 * implementation: a frame sealed by one opens with the other, and a frame
 * altered anywhere opens with neither.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/chash.h"
#include "common/error.h"
#include "common/pwire.h"
#include "tests/lib/errassert.h"

static void hex(const char *text, uint8_t *out, size_t len) {
  assert_int_equal(
      sodium_hex2bin(out, len, text, strlen(text), NULL, NULL, NULL), 0);
}

/* FIPS 180-4's examples (NIST's "SHA256.pdf") and the empty message. */
static void test_known_answers(void **state) {
  (void)state;
  static const struct {
    const char *msg;
    const char *digest;
  } kat[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc",
       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
    uint8_t want[CHASH_BYTES], got[CHASH_BYTES];
    hex(kat[i].digest, want, sizeof(want));
    assert_err(chash_once(got, kat[i].msg, strlen(kat[i].msg)), 0);
    assert_memory_equal(got, want, sizeof(want));
  }
  /* A million 'a's, fed in pieces of 1000. */
  uint8_t want[CHASH_BYTES], got[CHASH_BYTES];
  char piece[1000];
  struct chash h = {0};
  memset(piece, 'a', sizeof(piece));
  hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", want,
      sizeof(want));
  assert_err(chash_init(&h), 0);
  for (int i = 0; i < 1000; i++) {
    assert_err(chash_update(&h, piece, sizeof(piece)), 0);
  }
  assert_err(chash_final(&h, got), 0);
  assert_memory_equal(got, want, sizeof(want));
  chash_free(&h);
}

/* Every split of a buffer into two pieces, and every length up to it, gives
 * libsodium's digest; a hash started again after its final is a new one. */
static void test_agrees_with_libsodium_at_every_length_and_split(void **state) {
  (void)state;
  uint8_t data[300];
  struct chash h = {0};
  randombytes_buf(data, sizeof(data));
  for (size_t len = 0; len <= sizeof(data); len++) {
    uint8_t want[CHASH_BYTES], got[CHASH_BYTES];
    crypto_hash_sha256(want, data, len);
    assert_err(chash_once(got, data, len), 0);
    assert_memory_equal(got, want, sizeof(want));
    for (size_t cut = 0; cut <= len; cut += 7) {
      assert_err(chash_init(&h), 0);
      assert_err(chash_update(&h, data, cut), 0);
      assert_err(chash_update(&h, data + cut, len - cut), 0);
      assert_err(chash_final(&h, got), 0);
      assert_memory_equal(got, want, sizeof(want));
    }
  }
  chash_free(&h);
  chash_free(&h); /* a freed hash may be freed again */
}

/* A flipped bit anywhere gives another digest. */
static void test_every_flipped_bit_changes_the_digest(void **state) {
  (void)state;
  uint8_t data[64], ref[CHASH_BYTES], got[CHASH_BYTES];
  randombytes_buf(data, sizeof(data));
  assert_err(chash_once(ref, data, sizeof(data)), 0);
  for (size_t bit = 0; bit < sizeof(data) * 8; bit++) {
    data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_err(chash_once(got, data, sizeof(data)), 0);
    assert_memory_not_equal(got, ref, sizeof(ref));
    data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
}

/* ---------------------------------------------------------------------- */
/* The session cipher against libsodium's */

struct pair {
  struct pwire_eph ea, eb;
  struct pwire_session a, b; /* a initiates */
};

static int pair_setup(void **state) {
  struct pair *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return -1;
  }
  pwire_eph_generate(&p->ea);
  pwire_eph_generate(&p->eb);
  if (pwire_session_init(&p->a, &p->ea, p->eb.pk, 1) != 0 ||
      pwire_session_init(&p->b, &p->eb, p->ea.pk, 0) != 0) {
    free(p);
    return -1;
  }
  *state = p;
  return 0;
}

static int pair_teardown(void **state) {
  struct pair *p = *state;
  pwire_session_close(&p->a);
  pwire_session_close(&p->b);
  pwire_eph_close(&p->ea);
  pwire_eph_close(&p->eb);
  free(p);
  return 0;
}

static void nonce_of(uint8_t n[PWIRE_NONCE_BYTES], uint64_t count) {
  memset(n, 0, PWIRE_NONCE_BYTES);
  buf_put_be64(n + 4, count);
}

/* Frames sealed by the session open with libsodium's
 * crypto_aead_chacha20poly1305_ietf under the same key and nonce, at every
 * length to a few blocks of the cipher and at a DATA block's size. */
static void test_sealed_frames_open_with_libsodium(void **state) {
  struct pair *p = *state;
  static const size_t lens[] = {
      0,  1,   15,  16,  17,   63,   64,
      65, 255, 256, 257, 1000, 4096, PWIRE_DATA_HEAD_BYTES + PWIRE_BLOCK_BYTES};
  uint8_t *plain = malloc(PWIRE_MAX_PLAIN);
  uint8_t *back = malloc(PWIRE_MAX_PLAIN);
  struct buf out;
  assert_non_null(plain);
  assert_non_null(back);
  buf_init(&out, PWIRE_MAX_FRAME);
  randombytes_buf(plain, PWIRE_MAX_PLAIN);
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    uint8_t nonce[PWIRE_NONCE_BYTES];
    unsigned long long mlen = 0;
    out.len = 0;
    assert_err(pwire_seal(&p->a, &out, plain, lens[i]), 0);
    assert_int_equal(out.len, lens[i] + PWIRE_TAG_BYTES);
    nonce_of(nonce, i);
    assert_int_equal(
        crypto_aead_chacha20poly1305_ietf_decrypt(
            back, &mlen, NULL, out.data, out.len, NULL, 0, nonce, p->b.rx),
        0);
    assert_int_equal(mlen, lens[i]);
    if (lens[i] > 0) {
      assert_memory_equal(back, plain, lens[i]);
    }
  }
  buf_free(&out);
  free(plain);
  free(back);
}

/* Frames sealed by libsodium open with the session, in order, also in
 * place; one altered bit anywhere in the body, or the wrong counter, is
 * refused with SHOAL_EBADSIG and leaves the counter where it was. */
static void test_libsodium_frames_open_and_altered_ones_do_not(void **state) {
  struct pair *p = *state;
  uint8_t plain[200], body[200 + PWIRE_TAG_BYTES], got[200];
  uint8_t nonce[PWIRE_NONCE_BYTES];
  unsigned long long clen = 0;
  randombytes_buf(plain, sizeof(plain));

  /* Counter 0: opens into another buffer. */
  nonce_of(nonce, 0);
  crypto_aead_chacha20poly1305_ietf_encrypt(body, &clen, plain, sizeof(plain),
                                            NULL, 0, NULL, nonce, p->a.tx);
  assert_int_equal(pwire_open(&p->b, body, clen, got, sizeof(got)),
                   (int)sizeof(plain));
  assert_memory_equal(got, plain, sizeof(plain));

  /* Counter 1: every flipped bit of the body is refused. */
  nonce_of(nonce, 1);
  crypto_aead_chacha20poly1305_ietf_encrypt(body, &clen, plain, sizeof(plain),
                                            NULL, 0, NULL, nonce, p->a.tx);
  for (size_t bit = 0; bit < clen * 8; bit += 5) {
    uint8_t copy[sizeof(body)];
    memcpy(copy, body, clen);
    copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    memset(got, 0xa5, sizeof(got));
    assert_err(pwire_open(&p->b, copy, clen, got, sizeof(got)), SHOAL_EBADSIG);
    /* Nothing of the forged plaintext is handed out. */
    for (size_t i = 0; i < sizeof(got); i++) {
      assert_int_equal(got[i], 0);
    }
  }
  /* A truncated body at every length is refused too. */
  for (size_t len = 0; len < clen; len++) {
    int rc = pwire_open(&p->b, body, len, got, sizeof(got));
    assert_true(rc == SHOAL_EBADSIG || rc == SHOAL_ETRUNC);
  }
  /* The counter stayed at 1: the genuine frame opens, in place. */
  assert_int_equal(pwire_open(&p->b, body, clen, body, sizeof(body)),
                   (int)sizeof(plain));
  assert_memory_equal(body, plain, sizeof(plain));

  /* A frame sealed under counter 3 while 2 is due does not open. */
  nonce_of(nonce, 3);
  crypto_aead_chacha20poly1305_ietf_encrypt(body, &clen, plain, sizeof(plain),
                                            NULL, 0, NULL, nonce, p->a.tx);
  assert_err(pwire_open(&p->b, body, clen, got, sizeof(got)), SHOAL_EBADSIG);
}

/* In-place sealing makes the same bytes as sealing into a buffer. */
static void test_inplace_seal_matches_buffered_seal(void **state) {
  struct pair *p = *state;
  uint8_t msg[1000 + PWIRE_TAG_BYTES], plain[1000];
  struct buf out;
  uint8_t nonce[PWIRE_NONCE_BYTES];
  unsigned long long clen = 0;
  uint8_t want[sizeof(msg)];
  randombytes_buf(plain, sizeof(plain));
  memcpy(msg, plain, sizeof(plain));
  assert_err(pwire_seal_inplace(&p->a, msg, sizeof(plain)), 0);
  nonce_of(nonce, 0);
  crypto_aead_chacha20poly1305_ietf_encrypt(want, &clen, plain, sizeof(plain),
                                            NULL, 0, NULL, nonce, p->a.tx);
  assert_memory_equal(msg, want, sizeof(want));
  buf_init(&out, PWIRE_MAX_FRAME);
  assert_err(pwire_seal(&p->a, &out, plain, sizeof(plain)), 0);
  nonce_of(nonce, 1);
  crypto_aead_chacha20poly1305_ietf_encrypt(want, &clen, plain, sizeof(plain),
                                            NULL, 0, NULL, nonce, p->a.tx);
  assert_memory_equal(out.data, want, sizeof(want));
  buf_free(&out);
}

/* The two-step open gives what pwire_open gives, with the rest anywhere;
 * a forged frame opens in neither step, zeroes both outputs and leaves
 * the counter, so the genuine frame still opens; a frame shorter than the
 * tag and the head is SHOAL_ETRUNC. */
static void test_open_in_two_steps(void **state) {
  struct pair *p = *state;
  uint8_t plain[9 + 700], head[9], rest[700];
  struct buf out;
  randombytes_buf(plain, sizeof(plain));
  buf_init(&out, PWIRE_MAX_FRAME);
  assert_err(pwire_seal(&p->a, &out, plain, sizeof(plain)), 0);

  /* Forged: one bit of the last ciphertext byte. */
  out.data[out.len - PWIRE_TAG_BYTES - 1] ^= 0x10;
  assert_err(pwire_open_head(&p->b, out.data, out.len, head, sizeof(head)), 0);
  assert_memory_equal(head, plain, sizeof(head)); /* not yet checked */
  assert_err(
      pwire_open_rest(&p->b, out.data, out.len, head, sizeof(head), rest),
      SHOAL_EBADSIG);
  for (size_t i = 0; i < sizeof(head); i++) {
    assert_int_equal(head[i], 0);
  }
  for (size_t i = 0; i < sizeof(rest); i++) {
    assert_int_equal(rest[i], 0);
  }
  out.data[out.len - PWIRE_TAG_BYTES - 1] ^= 0x10;

  /* Too short for the head. */
  assert_err(
      pwire_open_head(&p->b, out.data, PWIRE_TAG_BYTES + 8, head, sizeof(head)),
      SHOAL_ETRUNC);

  /* Genuine: the same counter, both parts right. */
  assert_err(pwire_open_head(&p->b, out.data, out.len, head, sizeof(head)), 0);
  assert_int_equal(
      pwire_open_rest(&p->b, out.data, out.len, head, sizeof(head), rest),
      (int)sizeof(plain));
  assert_memory_equal(head, plain, sizeof(head));
  assert_memory_equal(rest, plain + sizeof(head), sizeof(rest));

  /* The next frame opens with pwire_open: the counter moved by one. */
  out.len = 0;
  assert_err(pwire_seal(&p->a, &out, plain, 20), 0);
  uint8_t got[20];
  assert_int_equal(pwire_open(&p->b, out.data, out.len, got, sizeof(got)), 20);
  assert_memory_equal(got, plain, 20);
  buf_free(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_answers),
      cmocka_unit_test(test_agrees_with_libsodium_at_every_length_and_split),
      cmocka_unit_test(test_every_flipped_bit_changes_the_digest),
      cmocka_unit_test_setup_teardown(test_sealed_frames_open_with_libsodium,
                                      pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(
          test_libsodium_frames_open_and_altered_ones_do_not, pair_setup,
          pair_teardown),
      cmocka_unit_test_setup_teardown(test_inplace_seal_matches_buffered_seal,
                                      pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_open_in_two_steps, pair_setup,
                                      pair_teardown),
  };
  if (sodium_init() < 0) {
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
