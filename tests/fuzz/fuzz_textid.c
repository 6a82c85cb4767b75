/* libFuzzer target for common/textid: decoding both kinds of text ID.
 *
 * A refusal must be SHOAL_EFORMAT or SHOAL_ECHECKSUM with the output
 * zeroed. An accepted text must be exactly 56 characters that encode back
 * to the same text (up to case), and must not also be accepted as the other
 * kind: that is what the per-kind checksum is for. (A false match needs an
 * input that already passed one 24-bit checksum and then passes the other:
 * about 2^-48 for a text the fuzzer made up.)
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/textid.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static void fail(const char *what) {
  fprintf(stderr, "fuzz_textid: %s\n", what);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const enum textid_kind kinds[2] = {TEXTID_KEY, TEXTID_CONTENT};
  fz_first_call();
  char *text = (char *)fz_copy(data, size);
  if (text == NULL) {
    return 0;
  }

  int accepted = 0;
  for (int k = 0; k < 2; k++) {
    uint8_t out[TEXTID_BYTES];
    char back[TEXTID_STRLEN];
    memset(out, 0xa5, sizeof(out));
    int rc = textid_decode(kinds[k], text, size, out);
    if (rc != 0) {
      if ((rc != SHOAL_EFORMAT && rc != SHOAL_ECHECKSUM) ||
          !bytes_all_zero(out, sizeof(out))) {
        fail("refusal is not EFORMAT/ECHECKSUM with a zeroed output");
      }
      if (rc == SHOAL_ECHECKSUM && size != TEXTID_CHARS) {
        fail("ECHECKSUM for a text of the wrong length");
      }
      continue;
    }
    accepted++;
    if (size != TEXTID_CHARS) {
      fail("accepted a text of the wrong length");
    }
    textid_encode(kinds[k], out, back);
    if (strlen(back) != TEXTID_CHARS) {
      fail("encoding is not 56 characters");
    }
    for (size_t i = 0; i < TEXTID_CHARS; i++) {
      if (back[i] != lower((unsigned char)text[i])) {
        fail("decoded ID does not encode back to the same text");
      }
    }
  }
  if (accepted > 1) {
    fail("one text accepted as both a key and a content ID");
  }

  /* The other direction: any 32 bytes encode to a text that decodes back
   * to them. (Not checked: that it fails as the other kind. For random
   * bytes that is a 2^-24 chance per input, which a long run would hit.) */
  if (size >= TEXTID_BYTES) {
    for (int k = 0; k < 2; k++) {
      char t[TEXTID_STRLEN];
      uint8_t out[TEXTID_BYTES];
      textid_encode(kinds[k], data, t);
      if (textid_decode(kinds[k], t, TEXTID_CHARS, out) != 0 ||
          memcmp(out, data, TEXTID_BYTES) != 0) {
        fail("encode then decode does not give the bytes back");
      }
    }
  }
  free(text);
  return 0;
}
