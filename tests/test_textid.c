/* Tests for common/textid: the checksummed base32 text form of 32-byte IDs.
 *
 * Text IDs are typed and pasted by people, so the hostile cases are the main
 * ones: every single-character typo at every position, a key pasted where a
 * content ID is expected, every wrong length, and characters just outside
 * the alphabet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/error.h"
#include "common/textid.h"
#include "tests/lib/testutil.h"

static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
static const enum textid_kind kinds[] = {TEXTID_KEY, TEXTID_CONTENT};

static int in_alphabet(char c) {
  return c != '\0' && strchr(alphabet, c) != NULL;
}

static int lower(char c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Decodes and checks the result is `want`; on failure also checks out was
 * zeroed even though it held garbage before the call. */
static void expect_decode(enum textid_kind kind, const char *text, size_t len,
                          int want) {
  uint8_t out[TEXTID_BYTES];
  static const uint8_t zero[TEXTID_BYTES];
  memset(out, 0xa5, sizeof(out));
  int rc = textid_decode(kind, text, len, out);
  if (rc != want) {
    print_error("decode(kind %d, \"%.*s\", len %zu) = %d, want %d\n", (int)kind,
                (int)len, text ? text : "", len, rc, want);
  }
  assert_int_equal(rc, want);
  if (want != 0) {
    assert_memory_equal(out, zero, sizeof(out));
  }
}

/* Reads the 56 characters back as 280 bits, one bit at a time, independently
 * of the implementation's 5-byte grouping. */
static void
reference_base32_decode(const char *text,
                        uint8_t raw[TEXTID_BYTES + TEXTID_CHECK_BYTES]) {
  memset(raw, 0, TEXTID_BYTES + TEXTID_CHECK_BYTES);
  for (size_t i = 0; i < TEXTID_CHARS; i++) {
    const char *p = strchr(alphabet, text[i]);
    assert_non_null(p);
    unsigned v = (unsigned)(p - alphabet);
    for (unsigned b = 0; b < 5; b++) {
      size_t bit = i * 5 + b;
      if (v & (16u >> b)) {
        raw[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
      }
    }
  }
}

/* ------------------------------------------------------------------------ */

static void encode_is_56_lowercase_base32_chars(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    for (uint64_t seed = 0; seed < 50; seed++) {
      uint8_t id[TEXTID_BYTES];
      char text[TEXTID_STRLEN + 8];
      tu_fill(id, sizeof(id), seed);
      memset(text, '#', sizeof(text));
      textid_encode(kinds[k], id, text);
      assert_int_equal(strlen(text), TEXTID_CHARS);
      for (size_t i = 0; i < TEXTID_CHARS; i++) {
        assert_true(in_alphabet(text[i]));
      }
      /* Nothing written past the NUL. */
      for (size_t i = TEXTID_STRLEN; i < sizeof(text); i++) {
        assert_int_equal(text[i], '#');
      }
    }
  }
}

static void encode_of_known_byte_patterns(void **state) {
  (void)state;
  uint8_t id[TEXTID_BYTES];
  char text[TEXTID_STRLEN];

  /* 51 characters carry 255 bits, all from the ID; so an all-zero ID starts
   * with 51 'a' (value 0) and an all-ones ID with 51 '7' (value 31). */
  for (size_t k = 0; k < 2; k++) {
    memset(id, 0, sizeof(id));
    textid_encode(kinds[k], id, text);
    for (size_t i = 0; i < 51; i++) {
      assert_int_equal(text[i], 'a');
    }
    memset(id, 0xff, sizeof(id));
    textid_encode(kinds[k], id, text);
    for (size_t i = 0; i < 51; i++) {
      assert_int_equal(text[i], '7');
    }
  }
  /* 0x08 0x42 ... : 00001 00001 00001 00000 ... -> "bbba". */
  memset(id, 0, sizeof(id));
  id[0] = 0x08;
  id[1] = 0x42;
  textid_encode(TEXTID_KEY, id, text);
  assert_memory_equal(text, "bbbaaaaa", 8);
}

static void encode_is_id_then_blake2b_checksum_in_rfc4648_base32(void **state) {
  (void)state;
  /* The text form is a wire format: pin it against an independent
   * computation of "first 3 bytes of BLAKE2b-128 over the per-kind domain
   * (with its NUL) and the 32 bytes". */
  static const char *const domains[] = {"shoal textid v1 key",
                                        "shoal textid v1 content"};
  for (size_t k = 0; k < 2; k++) {
    for (uint64_t seed = 0; seed < 20; seed++) {
      uint8_t id[TEXTID_BYTES];
      char text[TEXTID_STRLEN];
      uint8_t raw[TEXTID_BYTES + TEXTID_CHECK_BYTES];
      uint8_t msg[64];
      uint8_t h[16];
      size_t dlen = strlen(domains[k]) + 1;

      tu_fill(id, sizeof(id), 1000 + seed);
      textid_encode(kinds[k], id, text);
      reference_base32_decode(text, raw);
      assert_memory_equal(raw, id, TEXTID_BYTES);

      memcpy(msg, domains[k], dlen);
      memcpy(msg + dlen, id, TEXTID_BYTES);
      assert_int_equal(
          crypto_generichash(h, sizeof(h), msg, dlen + TEXTID_BYTES, NULL, 0),
          0);
      assert_memory_equal(raw + TEXTID_BYTES, h, TEXTID_CHECK_BYTES);
    }
  }
}

static void decode_round_trips_both_kinds(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    for (uint64_t seed = 0; seed < 200; seed++) {
      uint8_t id[TEXTID_BYTES];
      uint8_t back[TEXTID_BYTES];
      char text[TEXTID_STRLEN];
      tu_fill(id, sizeof(id), seed * 7 + k);
      if (seed == 0) {
        memset(id, 0, sizeof(id));
      } else if (seed == 1) {
        memset(id, 0xff, sizeof(id));
      }
      textid_encode(kinds[k], id, text);
      assert_int_equal(textid_decode(kinds[k], text, TEXTID_CHARS, back), 0);
      assert_memory_equal(back, id, sizeof(id));
    }
  }
}

static void decode_accepts_uppercase_and_mixed_case(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    uint8_t id[TEXTID_BYTES];
    uint8_t back[TEXTID_BYTES];
    char text[TEXTID_STRLEN];
    char upper[TEXTID_STRLEN];
    char mixed[TEXTID_STRLEN];

    tu_fill(id, sizeof(id), 77 + k);
    textid_encode(kinds[k], id, text);
    for (size_t i = 0; i < TEXTID_STRLEN; i++) {
      char c = text[i];
      char u = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
      upper[i] = u;
      mixed[i] = i % 2 ? u : c;
    }
    assert_string_not_equal(upper, text);
    memset(back, 0, sizeof(back));
    assert_int_equal(textid_decode(kinds[k], upper, TEXTID_CHARS, back), 0);
    assert_memory_equal(back, id, sizeof(id));
    memset(back, 0, sizeof(back));
    assert_int_equal(textid_decode(kinds[k], mixed, TEXTID_CHARS, back), 0);
    assert_memory_equal(back, id, sizeof(id));
  }
}

static void every_single_character_substitution_is_rejected(void **state) {
  (void)state;
  /* Every other alphabet character (lower and upper case) and a set of
   * characters just outside the alphabet, at every position. */
  static const char outside[] = "0189= !@[`{/:_-.+\x7f";
  for (size_t k = 0; k < 2; k++) {
    for (uint64_t seed = 0; seed < 2; seed++) {
      uint8_t id[TEXTID_BYTES];
      char text[TEXTID_STRLEN];
      tu_fill(id, sizeof(id), 500 + seed);
      textid_encode(kinds[k], id, text);

      for (size_t pos = 0; pos < TEXTID_CHARS; pos++) {
        char typo[TEXTID_STRLEN];
        for (size_t a = 0; a < 32; a++) {
          char c = alphabet[a];
          if (c == text[pos]) {
            continue;
          }
          memcpy(typo, text, sizeof(typo));
          typo[pos] = c;
          expect_decode(kinds[k], typo, TEXTID_CHARS, SHOAL_ECHECKSUM);
          if (c >= 'a' && c <= 'z') {
            typo[pos] = (char)(c - 'a' + 'A');
            expect_decode(kinds[k], typo, TEXTID_CHARS, SHOAL_ECHECKSUM);
          }
        }
        for (size_t o = 0; o < sizeof(outside) - 1; o++) {
          memcpy(typo, text, sizeof(typo));
          typo[pos] = outside[o];
          expect_decode(kinds[k], typo, TEXTID_CHARS, SHOAL_EFORMAT);
        }
        /* The same character in upper case is not a typo. */
        memcpy(typo, text, sizeof(typo));
        if (text[pos] >= 'a' && text[pos] <= 'z') {
          typo[pos] = (char)(text[pos] - 'a' + 'A');
        }
        expect_decode(kinds[k], typo, TEXTID_CHARS, 0);
      }
    }
  }
}

static void adjacent_transposition_is_rejected(void **state) {
  (void)state;
  uint8_t id[TEXTID_BYTES];
  char text[TEXTID_STRLEN];
  tu_fill(id, sizeof(id), 4242);
  textid_encode(TEXTID_CONTENT, id, text);
  for (size_t pos = 0; pos + 1 < TEXTID_CHARS; pos++) {
    char swapped[TEXTID_STRLEN];
    if (lower(text[pos]) == lower(text[pos + 1])) {
      continue;
    }
    memcpy(swapped, text, sizeof(swapped));
    swapped[pos] = text[pos + 1];
    swapped[pos + 1] = text[pos];
    expect_decode(TEXTID_CONTENT, swapped, TEXTID_CHARS, SHOAL_ECHECKSUM);
  }
}

static void key_text_decoded_as_content_is_echecksum(void **state) {
  (void)state;
  for (uint64_t seed = 0; seed < 50; seed++) {
    uint8_t id[TEXTID_BYTES];
    char key[TEXTID_STRLEN];
    char content[TEXTID_STRLEN];
    tu_fill(id, sizeof(id), 900 + seed);
    textid_encode(TEXTID_KEY, id, key);
    textid_encode(TEXTID_CONTENT, id, content);
    /* Same ID bits, different checksum: the kinds differ only at the end. */
    assert_memory_equal(key, content, 51);
    assert_string_not_equal(key, content);
    expect_decode(TEXTID_CONTENT, key, TEXTID_CHARS, SHOAL_ECHECKSUM);
    expect_decode(TEXTID_KEY, content, TEXTID_CHARS, SHOAL_ECHECKSUM);
  }
}

static void every_wrong_length_is_eformat(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    uint8_t id[TEXTID_BYTES];
    char text[TEXTID_STRLEN + 1];
    tu_fill(id, sizeof(id), 31337 + k);
    textid_encode(kinds[k], id, text);
    /* A valid ID followed by one more valid character: every prefix that is
     * not exactly 56 characters, and the 57-character form, are refused. */
    text[TEXTID_CHARS] = 'a';
    for (size_t len = 0; len <= TEXTID_CHARS + 1; len++) {
      if (len == TEXTID_CHARS) {
        continue;
      }
      expect_decode(kinds[k], text, len, SHOAL_EFORMAT);
    }
    expect_decode(kinds[k], text, TEXTID_CHARS, 0);
  }
  /* A length checked before any character is read: NULL text with length 0
   * is refused without being touched. */
  expect_decode(TEXTID_KEY, NULL, 0, SHOAL_EFORMAT);
}

static void characters_outside_the_alphabet_are_eformat(void **state) {
  (void)state;
  /* The brief's list plus NUL, a high-bit byte and the ASCII neighbours of
   * each alphabet range. */
  static const char bad[] = {'0',  '1',  '8',  '9',    '=',    ' ',
                             '\0', '@',  '[',  '`',    '{',    '/',
                             ':',  '\n', '\t', '\xff', '\x80', '-'};
  for (size_t k = 0; k < 2; k++) {
    uint8_t id[TEXTID_BYTES];
    char text[TEXTID_STRLEN];
    tu_fill(id, sizeof(id), 2024 + k);
    textid_encode(kinds[k], id, text);
    for (size_t b = 0; b < sizeof(bad); b++) {
      for (size_t pos = 0; pos < TEXTID_CHARS; pos++) {
        char t[TEXTID_STRLEN];
        memcpy(t, text, sizeof(t));
        t[pos] = bad[b];
        expect_decode(kinds[k], t, TEXTID_CHARS, SHOAL_EFORMAT);
      }
    }
    /* A whole text of padding, as an RFC 4648 encoder with padding might
     * produce, is refused too. */
    char pad[TEXTID_STRLEN];
    memset(pad, '=', TEXTID_CHARS);
    pad[TEXTID_CHARS] = '\0';
    expect_decode(kinds[k], pad, TEXTID_CHARS, SHOAL_EFORMAT);
  }
}

static void output_is_zeroed_on_every_failure(void **state) {
  (void)state;
  uint8_t id[TEXTID_BYTES];
  char text[TEXTID_STRLEN];
  uint8_t out[TEXTID_BYTES];
  static const uint8_t zero[TEXTID_BYTES];

  tu_fill(id, sizeof(id), 55);
  textid_encode(TEXTID_KEY, id, text);

  /* Wrong length, bad character late in the text (after earlier groups were
   * already decoded), wrong checksum, wrong kind. */
  memset(out, 0xcc, sizeof(out));
  assert_int_equal(textid_decode(TEXTID_KEY, text, 10, out), SHOAL_EFORMAT);
  assert_memory_equal(out, zero, sizeof(out));

  char t[TEXTID_STRLEN];
  memcpy(t, text, sizeof(t));
  t[TEXTID_CHARS - 1] = '1';
  memset(out, 0xcc, sizeof(out));
  assert_int_equal(textid_decode(TEXTID_KEY, t, TEXTID_CHARS, out),
                   SHOAL_EFORMAT);
  assert_memory_equal(out, zero, sizeof(out));

  memcpy(t, text, sizeof(t));
  t[0] = t[0] == 'a' ? 'b' : 'a';
  memset(out, 0xcc, sizeof(out));
  assert_int_equal(textid_decode(TEXTID_KEY, t, TEXTID_CHARS, out),
                   SHOAL_ECHECKSUM);
  assert_memory_equal(out, zero, sizeof(out));

  memset(out, 0xcc, sizeof(out));
  assert_int_equal(textid_decode(TEXTID_CONTENT, text, TEXTID_CHARS, out),
                   SHOAL_ECHECKSUM);
  assert_memory_equal(out, zero, sizeof(out));
}

static void short_form_is_the_12_char_prefix(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    for (uint64_t seed = 0; seed < 20; seed++) {
      uint8_t id[TEXTID_BYTES];
      char text[TEXTID_STRLEN];
      char s[TEXTID_SHORT_CHARS + 8];
      tu_fill(id, sizeof(id), 60 + seed);
      textid_encode(kinds[k], id, text);
      memset(s, '#', sizeof(s));
      textid_short(kinds[k], id, s);
      assert_int_equal(strlen(s), TEXTID_SHORT_CHARS);
      assert_int_equal(TEXTID_SHORT_CHARS, 12);
      assert_memory_equal(s, text, TEXTID_SHORT_CHARS);
      for (size_t i = TEXTID_SHORT_CHARS + 1; i < sizeof(s); i++) {
        assert_int_equal(s[i], '#');
      }
    }
  }
}

int main(void) {
  if (sodium_init() < 0) {
    fprintf(stderr, "sodium_init failed\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(encode_is_56_lowercase_base32_chars),
      cmocka_unit_test(encode_of_known_byte_patterns),
      cmocka_unit_test(encode_is_id_then_blake2b_checksum_in_rfc4648_base32),
      cmocka_unit_test(decode_round_trips_both_kinds),
      cmocka_unit_test(decode_accepts_uppercase_and_mixed_case),
      cmocka_unit_test(every_single_character_substitution_is_rejected),
      cmocka_unit_test(adjacent_transposition_is_rejected),
      cmocka_unit_test(key_text_decoded_as_content_is_echecksum),
      cmocka_unit_test(every_wrong_length_is_eformat),
      cmocka_unit_test(characters_outside_the_alphabet_are_eformat),
      cmocka_unit_test(output_is_zeroed_on_every_failure),
      cmocka_unit_test(short_form_is_the_12_char_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
