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
#include "common/link.h"

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

/* The port of a --tracker given without one: the tracker's own default
 * (TRACKER_PORT_DEFAULT in tracker/tracker.h, which peer/ cannot include). */
#define FMT_TRACKER_PORT 7070
/* Parses a --tracker value: "HOST:PORT", "[IPv6]:PORT", or either without
 * ":PORT" for FMT_TRACKER_PORT. HOST is a name or an IPv4 address; an IPv6
 * address needs its brackets. Returns 0, or SHOAL_EBADLINK (out zeroed) with
 * *why set to a static sentence that names what is wrong. */
int fmt_parse_tracker(const char *s, struct link_tracker *out,
                      const char **why);
/* Parses a list of trackers (the SHOAL_TRACKER variable): entries as above,
 * separated by commas and white space, into out (cap entries), their count
 * into *n. Returns 0; SHOAL_EINVAL when the list names no tracker or more
 * than cap; or SHOAL_EBADLINK for an entry that does not parse, copied into
 * bad (badcap bytes) so that the message can show it. *why is set on every
 * error. */
int fmt_parse_tracker_list(const char *s, struct link_tracker *out,
                           unsigned cap, unsigned *n, const char **why,
                           char *bad, size_t badcap);

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

/* ---------------------------------------------------------------------- */
/* Text for a terminal.
 *
 * Names come from the disk or from a manifest someone else signed, and may
 * hold anything but '/' and NUL. Before one is shown on a terminal it goes
 * through fmt_term_escape, so that it cannot move the cursor, clear the
 * screen or end the line. Widths are display columns, counted without the
 * locale: one for each character, two for the East Asian wide and
 * fullwidth ranges and the emoji planes (FMT_TERM_WIDE below). A character
 * a terminal shows narrower (a combining mark) is still counted as one, so
 * that a count is never below what the terminal uses and a line that is
 * cut to fit never wraps.
 */

/* Columns assumed when the terminal does not say. */
#define FMT_TERM_COLS_DEFAULT 80
/* Fewest columns of a name kept in a progress line before the line drops
 * its less important figures instead. */
#define FMT_TERM_NAME_MIN 12
/* What ends a name that was cut: ASCII, because the ellipsis character is
 * one column on some terminals and two on others. */
#define FMT_TERM_CUT "..."

/* Writes s into out (cap bytes, always NUL-terminated when cap > 0) for a
 * terminal: valid UTF-8 passes, except that the C0 controls and DEL become
 * \n, \r, \t or \xNN, the C1 controls U+0080..U+009F become \u0080 ..
 * \u009f, each byte that does not start a valid character becomes \xNN,
 * and a backslash is doubled so that the escapes stay unambiguous. When
 * cap is short the text is cut before the character or escape that does
 * not fit. Returns the display columns written. */
size_t fmt_term_escape(char *out, size_t cap, const char *s);
/* Display columns of s, which must be what fmt_term_escape writes (or
 * plain ASCII text without controls). */
size_t fmt_term_cols(const char *s);
/* Writes prefix, name (escaped with fmt_term_escape) and suffix into out so
 * that the whole is at most cols display columns: a name too long for its
 * room is cut on a character boundary and ends with FMT_TERM_CUT. prefix and
 * suffix are the program's own text and are not escaped. Returns 0, or -1
 * (out empty) when prefix and suffix leave fewer than min(min_name, the
 * name's columns) columns for the name. */
int fmt_term_join(char *out, size_t cap, size_t cols, const char *prefix,
                  const char *name, size_t min_name, const char *suffix);

/* What a progress line shows of one content. */
struct fmt_progress {
  const char *name; /* as it came (escaped when shown) */
  uint64_t have, total;
  uint64_t rate; /* download bytes a second, recent */
  uint64_t uploaded;
  unsigned peers, seeders;
  int seeding;
};
/* Writes the progress line of a content for a terminal cols columns wide,
 * at most cols - 1 display columns long (the last column stays free, so
 * that no terminal wraps the line or scrolls at its end):
 *
 *   NAME: 45.2% 30.1 MiB/64.0 MiB 12.3 MiB/s ETA 3s peers 4 seeders 1
 *   NAME: seeding 64.0 MiB, uploaded 1.20 GiB, peers 4
 *
 * When that does not fit, the name is cut (keeping FMT_TERM_NAME_MIN
 * columns), then the least important figures go (peers, then sizes, then
 * rate and time), then the name, then the text is cut. cols of 0 counts as
 * FMT_TERM_COLS_DEFAULT. */
void fmt_progress(char *out, size_t cap, size_t cols,
                  const struct fmt_progress *p);

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

/* Length of the valid UTF-8 sequence at p (n > 0 bytes left), or 0 when
 * the byte at p does not start one (RFC 3629). */
size_t fmt_utf8_seq_len(const uint8_t *p, size_t n);

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
