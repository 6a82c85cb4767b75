/* Parsing of command-line numbers and formatting of what shoal-peer prints:
 * sizes, rates, times left, and the one-object-per-line JSON of --json.
 *
 * Parsers take a whole NUL-terminated argument and accept it only when every
 * character belongs to the number: no spaces, no sign, no trailing junk.
 * Formatters write with snprintf into a caller buffer (truncating when it is
 * short; FMT_NUM_BYTES always suffices) or append to a struct buf, whose
 * sticky error they report. Nothing depends on the locale. String
 * arguments are borrowed for the call only and must not be NULL.
 */
#ifndef SHOAL_PEER_FMT_H
#define SHOAL_PEER_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Room for any fmt_bytes/fmt_rate/fmt_eta text and its NUL. */
#define FMT_NUM_BYTES 32
/* Most digits accepted after the decimal point of a size ("1.5M"). Six keep
 * the exact arithmetic inside 64 bits; a limit is not given to the byte. */
#define FMT_SIZE_FRAC_DIGITS 6

/* Parses a size: decimal digits, optionally a fraction, optionally one of
 * k m g t (powers of 1024), optionally "B" or, after k/m/g/t, "iB"; letters
 * in any case ("b" is bytes, never bits). "10M", "10MB", "10MiB" and
 * "10mib" are all 10 * 2^20. A fraction needs a k/m/g/t suffix and is cut
 * to whole bytes ("1.5M" is 1572864, "1.001k" is 1025). Returns 0, or
 * SHOAL_EINVAL (with *out = 0) for an empty string, a sign, spaces, junk or
 * a value above UINT64_MAX. */
int fmt_parse_size(const char *s, uint64_t *out);
/* Parses a plain decimal number in [min, max]. Returns 0, or SHOAL_EINVAL
 * (with *out = 0) for anything else. */
int fmt_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Writes n with three significant digits in the largest binary unit it
 * reaches: "0 B", "1023 B", "1.00 KiB", "30.1 MiB", "512 KiB", "16.0 EiB".
 * A value that rounds up to 1024 of a unit moves to the next unit
 * (1048575 is "1.00 MiB"). Rounding is to nearest, halves up. */
void fmt_bytes(char *out, size_t cap, uint64_t n);
/* fmt_bytes with "/s": "12.3 MiB/s". */
void fmt_rate(char *out, size_t cap, uint64_t bytes_per_s);
/* Time left, cut (not rounded) to its two largest units: "3s" under a
 * minute, "1m05s" under an hour, "2h03m" under a day, then "4d07h"; "--"
 * for UINT64_MAX (unknown). */
void fmt_eta(char *out, size_t cap, uint64_t seconds);

/* Appends s as a JSON string literal, quotes included. '"' and '\\' are
 * escaped, as are the control characters (\b \f \n \r \t in their short
 * form, the other C0 controls, DEL and the C1 controls U+0080..U+009F as
 * \u00XX), so that a line shown on a terminal cannot drive it. Valid UTF-8
 * passes through; each byte that does not start a valid sequence (overlong
 * forms, surrogates, code points above U+10FFFF, truncated sequences, stray
 * continuation bytes) becomes \ufffd. Returns buf_err(out). */
int fmt_json_str(struct buf *out, const char *s);
/* The same for len bytes that may contain NUL (written as \u0000). */
int fmt_json_strn(struct buf *out, const void *p, size_t len);

/* A JSON line: fmt_json_begin writes {"event":"EVENT", each field call
 * appends ,"KEY":VALUE, and fmt_json_end writes }\n. Keys are literal ASCII
 * from the program (they are escaped all the same). Check buf_err(b) once
 * at the end. */
void fmt_json_begin(struct buf *b, const char *event);
void fmt_json_str_field(struct buf *b, const char *key, const char *value);
void fmt_json_u64_field(struct buf *b, const char *key, uint64_t v);
/* Fixed three decimals ("1.500", "-0.250"), rounded to nearest; NaN and
 * infinities are written as null, which JSON has in their place. */
void fmt_json_double_field(struct buf *b, const char *key, double v);
void fmt_json_end(struct buf *b);

#endif
