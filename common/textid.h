/* Text form of 32-byte identifiers: public keys and content IDs.
 *
 * The 32 bytes are followed by a 3-byte checksum and the 35 bytes are written
 * in lowercase RFC 4648 base32 without padding: exactly 56 characters. The
 * checksum is the first 3 bytes of BLAKE2b-128 over a per-kind domain string
 * and the 32 bytes, so a typo (or a peer ID pasted where a content ID is
 * expected) is caught with probability 1 - 2^-24. Decoding accepts upper
 * case as well.
 */
#ifndef SHOAL_TEXTID_H
#define SHOAL_TEXTID_H

#include <stddef.h>
#include <stdint.h>

#define TEXTID_BYTES 32
#define TEXTID_CHECK_BYTES 3
#define TEXTID_CHARS 56 /* (32 + 3) * 8 / 5 */
#define TEXTID_STRLEN (TEXTID_CHARS + 1)
#define TEXTID_SHORT_CHARS 12 /* enough to tell peers apart in logs */

enum textid_kind {
  TEXTID_KEY = 1,     /* an Ed25519 public key: peer or tracker identity */
  TEXTID_CONTENT = 2, /* a content ID */
};

/* Writes the 56-character form and a NUL into out. */
void textid_encode(enum textid_kind kind, const uint8_t bytes[TEXTID_BYTES],
                   char out[TEXTID_STRLEN]);

/* Parses exactly `len` characters. Returns 0, SHOAL_EFORMAT (wrong length or
 * a character outside the alphabet) or SHOAL_ECHECKSUM. out is zeroed on
 * failure. */
int textid_decode(enum textid_kind kind, const char *text, size_t len,
                  uint8_t out[TEXTID_BYTES]);

/* Writes the first TEXTID_SHORT_CHARS characters of the text form (a log
 * label, not an identifier) and a NUL. */
void textid_short(enum textid_kind kind, const uint8_t bytes[TEXTID_BYTES],
                  char out[TEXTID_SHORT_CHARS + 1]);

#endif
