#include "common/textid.h"

#include <sodium.h>
#include <string.h>

#include "common/error.h"

#define RAW_BYTES (TEXTID_BYTES + TEXTID_CHECK_BYTES)

static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

static void checksum(enum textid_kind kind, const uint8_t bytes[TEXTID_BYTES],
                     uint8_t out[TEXTID_CHECK_BYTES]) {
  static const char key_domain[] = "shoal textid v1 key";
  static const char content_domain[] = "shoal textid v1 content";
  const char *dom = kind == TEXTID_KEY ? key_domain : content_domain;
  uint8_t h[crypto_generichash_BYTES_MIN];
  crypto_generichash_state st;

  crypto_generichash_init(&st, NULL, 0, sizeof(h));
  crypto_generichash_update(&st, (const uint8_t *)dom, strlen(dom) + 1);
  crypto_generichash_update(&st, bytes, TEXTID_BYTES);
  crypto_generichash_final(&st, h, sizeof(h));
  memcpy(out, h, TEXTID_CHECK_BYTES);
}

void textid_encode(enum textid_kind kind, const uint8_t bytes[TEXTID_BYTES],
                   char out[TEXTID_STRLEN]) {
  uint8_t raw[RAW_BYTES];
  memcpy(raw, bytes, TEXTID_BYTES);
  checksum(kind, bytes, raw + TEXTID_BYTES);

  /* 35 bytes are exactly 280 bits: 7 groups of 5 bytes, 8 characters each. */
  size_t o = 0;
  for (size_t i = 0; i < RAW_BYTES; i += 5) {
    uint64_t v = 0;
    for (size_t j = 0; j < 5; j++) {
      v = v << 8 | raw[i + j];
    }
    for (int k = 7; k >= 0; k--) {
      out[o++] = alphabet[(v >> (k * 5)) & 31];
    }
  }
  out[o] = '\0';
}

static int b32_value(char c) {
  if (c >= 'a' && c <= 'z') {
    return c - 'a';
  }
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= '2' && c <= '7') {
    return c - '2' + 26;
  }
  return -1;
}

int textid_decode(enum textid_kind kind, const char *text, size_t len,
                  uint8_t out[TEXTID_BYTES]) {
  uint8_t raw[RAW_BYTES];
  uint8_t want[TEXTID_CHECK_BYTES];

  memset(out, 0, TEXTID_BYTES);
  if (len != TEXTID_CHARS) {
    return SHOAL_EFORMAT;
  }
  for (size_t g = 0; g < RAW_BYTES / 5; g++) {
    uint64_t v = 0;
    for (size_t k = 0; k < 8; k++) {
      int d = b32_value(text[g * 8 + k]);
      if (d < 0) {
        return SHOAL_EFORMAT;
      }
      v = v << 5 | (uint64_t)d;
    }
    for (size_t j = 0; j < 5; j++) {
      raw[g * 5 + j] = (uint8_t)(v >> (8 * (4 - j)));
    }
  }
  checksum(kind, raw, want);
  if (sodium_memcmp(want, raw + TEXTID_BYTES, TEXTID_CHECK_BYTES) != 0) {
    return SHOAL_ECHECKSUM;
  }
  memcpy(out, raw, TEXTID_BYTES);
  return 0;
}

void textid_short(enum textid_kind kind, const uint8_t bytes[TEXTID_BYTES],
                  char out[TEXTID_SHORT_CHARS + 1]) {
  char full[TEXTID_STRLEN];
  textid_encode(kind, bytes, full);
  memcpy(out, full, TEXTID_SHORT_CHARS);
  out[TEXTID_SHORT_CHARS] = '\0';
}
