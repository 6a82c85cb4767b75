/* Parsing command-line numbers and formatting what shoal-peer prints
 * (fmt.h). */
#include "peer/fmt.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"

/* Character classes by hand: <ctype.h> follows the locale. */
static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

static char lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static const uint64_t pow10_table[] = {1,     10,     100,    1000,
                                       10000, 100000, 1000000};

/* Reads decimal digits at *pp into *v; returns 0, or SHOAL_EINVAL when
 * there are none or the value passes UINT64_MAX. */
static int read_decimal(const char **pp, uint64_t *v) {
  const char *p = *pp;
  uint64_t x = 0;
  if (!is_digit(*p)) {
    return SHOAL_EINVAL;
  }
  for (; is_digit(*p); p++) {
    uint64_t d = (uint64_t)(*p - '0');
    if (x > (UINT64_MAX - d) / 10u) {
      return SHOAL_EINVAL;
    }
    x = x * 10u + d;
  }
  *pp = p;
  *v = x;
  return 0;
}

int fmt_parse_size(const char *s, uint64_t *out) {
  const char *p = s;
  uint64_t whole = 0;
  uint64_t frac = 0;
  unsigned frac_digits = 0;
  unsigned shift = 0;

  assert(s != NULL && out != NULL);
  *out = 0;
  if (read_decimal(&p, &whole) != 0) {
    return SHOAL_EINVAL;
  }
  if (*p == '.') {
    p++;
    if (!is_digit(*p)) {
      return SHOAL_EINVAL;
    }
    for (; is_digit(*p); p++) {
      if (frac_digits == FMT_SIZE_FRAC_DIGITS) {
        return SHOAL_EINVAL;
      }
      frac = frac * 10u + (uint64_t)(*p - '0');
      frac_digits++;
    }
  }
  switch (lower(*p)) {
  case 'k':
    shift = 10;
    break;
  case 'm':
    shift = 20;
    break;
  case 'g':
    shift = 30;
    break;
  case 't':
    shift = 40;
    break;
  default:
    break;
  }
  if (shift != 0) {
    p++;
    if (lower(p[0]) == 'i' && lower(p[1]) == 'b') {
      p += 2;
    } else if (lower(p[0]) == 'b') {
      p++;
    }
  } else if (lower(p[0]) == 'b') {
    p++;
  }
  if (*p != '\0') {
    return SHOAL_EINVAL;
  }
  /* A fraction of a byte means nothing; a fraction of a unit does. */
  if (frac_digits != 0 && shift == 0) {
    return SHOAL_EINVAL;
  }
  if (whole > UINT64_MAX >> shift) {
    return SHOAL_EINVAL;
  }
  uint64_t v = whole << shift;
  /* frac < 10^6 < 2^20 and shift <= 40, so the product fits in 2^60. */
  uint64_t part = (frac << shift) / pow10_table[frac_digits];
  /* part is below one unit, so this holds whenever whole passed the check
   * above; it stays as the guard should FMT_SIZE_FRAC_DIGITS change. */
  if (part > UINT64_MAX - v) {
    return SHOAL_EINVAL;
  }
  *out = v + part;
  return 0;
}

int fmt_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  const char *p = s;
  uint64_t v = 0;

  assert(s != NULL && out != NULL);
  *out = 0;
  if (read_decimal(&p, &v) != 0 || *p != '\0' || v < min || v > max) {
    return SHOAL_EINVAL;
  }
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Tracker addresses */

int fmt_parse_tracker(const char *s, struct link_tracker *out,
                      const char **why) {
  char text[LINK_MAX_HOST + 16];
  size_t len = strlen(s);
  int has_port;

  assert(s != NULL && out != NULL && why != NULL);
  memset(out, 0, sizeof(*out));
  if (len == 0) {
    *why = "tracker address is empty";
    return SHOAL_EBADLINK;
  }
  if (s[0] == '[') {
    /* "[v6]" alone has no port; anything after the ']' is link.c's to
     * judge. */
    has_port = s[len - 1] != ']';
  } else {
    /* One colon separates the port; more mean an IPv6 address without its
     * brackets, which link.c refuses with the right message. */
    has_port = strchr(s, ':') != NULL;
  }
  int n = snprintf(text, sizeof(text), has_port ? "%s" : "%s:%d", s,
                   FMT_TRACKER_PORT);
  if (n < 0 || (size_t)n >= sizeof(text)) {
    *why = "tracker host is empty or too long";
    return SHOAL_EBADLINK;
  }
  return link_parse_tracker(text, (size_t)n, out, why);
}

static int is_list_space(char c) {
  return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int fmt_parse_tracker_list(const char *s, struct link_tracker *out,
                           unsigned cap, unsigned *n, const char **why,
                           char *bad, size_t badcap) {
  /* One entry: the longest host name, brackets and a port, and room to
   * see that it is longer than that. */
  char item[LINK_MAX_HOST + 16];
  const char *p = s;
  unsigned count = 0;

  assert(s != NULL && out != NULL && n != NULL && why != NULL);
  *n = 0;
  if (badcap > 0) {
    bad[0] = '\0';
  }
  for (;;) {
    while (is_list_space(*p)) {
      p++;
    }
    if (*p == '\0') {
      break;
    }
    size_t len = 0;
    while (p[len] != '\0' && !is_list_space(p[len])) {
      len++;
    }
    if (count == cap) {
      *why = "too many trackers";
      return SHOAL_EINVAL;
    }
    snprintf(item, sizeof(item), "%.*s",
             (int)(len < sizeof(item) - 1 ? len : sizeof(item) - 1), p);
    int err = len < sizeof(item) - 1 ? fmt_parse_tracker(item, &out[count], why)
                                     : SHOAL_EBADLINK;
    if (err != 0) {
      if (len >= sizeof(item) - 1) {
        *why = "tracker host is empty or too long";
      }
      if (badcap > 0) {
        snprintf(bad, badcap, "%s", item);
      }
      return err;
    }
    count++;
    p += len;
  }
  if (count == 0) {
    *why = "no tracker in the list";
    return SHOAL_EINVAL;
  }
  *n = count;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Human-readable numbers */

static const char *const unit_names[] = {"B",   "KiB", "MiB", "GiB",
                                         "TiB", "PiB", "EiB"};
#define UNIT_MAX 6 /* EiB: 2^64 is 16 EiB */

/* round(r * 10^d / 2^sh), halves up, for r < 2^sh and d <= 2. */
static uint64_t round_frac(uint64_t r, unsigned sh, unsigned d) {
  uint64_t p = pow10_table[d];
  if (sh <= 56) {
    /* r * 100 + 2^(sh-1) < 2^63 */
    return (r * p + ((uint64_t)1 << (sh - 1))) >> sh;
  }
  /* EiB: r * 100 would pass 2^64. Split r at bit 32 and drop the low
   * product's last 32 bits, which cannot reach bit sh. */
  uint64_t hi = r >> 32;
  uint64_t lo = r & 0xffffffffu;
  uint64_t a = hi * p + ((lo * p) >> 32) + ((uint64_t)1 << (sh - 33));
  return a >> (sh - 32);
}

void fmt_bytes(char *out, size_t cap, uint64_t n) {
  unsigned k = 0;
  if (n < 1024) {
    snprintf(out, cap, "%" PRIu64 " B", n);
    return;
  }
  while (k < UNIT_MAX && n >> (10u * (k + 1)) != 0) {
    k++;
  }
  for (;;) {
    unsigned sh = 10u * k;
    uint64_t q = n >> sh;
    uint64_t r = n & (((uint64_t)1 << sh) - 1);
    /* Three significant digits: two decimals under 10, one under 100. */
    unsigned d = q < 10 ? 2 : q < 100 ? 1 : 0;
    uint64_t scaled = q * pow10_table[d] + round_frac(r, sh, d);
    /* 9.996 rounds to 10.00 and 99.96 to 100.0: one digit fewer. */
    while (d > 0 && scaled >= 1000) {
      d--;
      scaled = q * pow10_table[d] + round_frac(r, sh, d);
    }
    if (d == 0 && scaled >= 1024 && k < UNIT_MAX) {
      k++; /* 1023.6 KiB reads as 1.00 MiB, not 1024 KiB */
      continue;
    }
    uint64_t ip = scaled / pow10_table[d];
    uint64_t fp = scaled % pow10_table[d];
    if (d == 2) {
      snprintf(out, cap, "%" PRIu64 ".%02" PRIu64 " %s", ip, fp, unit_names[k]);
    } else if (d == 1) {
      snprintf(out, cap, "%" PRIu64 ".%" PRIu64 " %s", ip, fp, unit_names[k]);
    } else {
      snprintf(out, cap, "%" PRIu64 " %s", ip, unit_names[k]);
    }
    return;
  }
}

void fmt_rate(char *out, size_t cap, uint64_t bytes_per_s) {
  /* Room for "/s" in FMT_NUM_BYTES; no size text comes near it. */
  char t[FMT_NUM_BYTES - 2];
  fmt_bytes(t, sizeof(t), bytes_per_s);
  snprintf(out, cap, "%s/s", t);
}

void fmt_eta(char *out, size_t cap, uint64_t seconds) {
  uint64_t s = seconds;
  if (s == UINT64_MAX) {
    snprintf(out, cap, "--");
  } else if (s < 60) {
    snprintf(out, cap, "%" PRIu64 "s", s);
  } else if (s < 3600) {
    snprintf(out, cap, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    snprintf(out, cap, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
  } else {
    snprintf(out, cap, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
             s % 86400 / 3600);
  }
}

/* ---------------------------------------------------------------------- */
/* JSON */

/* The ranges are RFC 3629's: no overlong forms, no surrogates (ED A0..BF),
 * nothing above U+10FFFF. */
size_t fmt_utf8_seq_len(const uint8_t *p, size_t n) {
  uint8_t c = p[0];
  size_t len;
  uint8_t lo = 0x80;
  uint8_t hi = 0xbf;

  if (c < 0x80) {
    return 1;
  } else if (c < 0xc2) {
    return 0; /* continuation byte, or overlong C0/C1 */
  } else if (c < 0xe0) {
    len = 2;
  } else if (c < 0xf0) {
    len = 3;
    lo = c == 0xe0 ? 0xa0 : 0x80;
    hi = c == 0xed ? 0x9f : 0xbf;
  } else if (c < 0xf5) {
    len = 4;
    lo = c == 0xf0 ? 0x90 : 0x80;
    hi = c == 0xf4 ? 0x8f : 0xbf;
  } else {
    return 0;
  }
  if (n < len || p[1] < lo || p[1] > hi) {
    return 0;
  }
  for (size_t i = 2; i < len; i++) {
    if (p[i] < 0x80 || p[i] > 0xbf) {
      return 0;
    }
  }
  return len;
}

int fmt_json_strn(struct buf *out, const void *data, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const uint8_t *p = data;
  size_t i = 0;

  buf_add_u8(out, '"');
  while (i < len) {
    uint8_t c = p[i];
    size_t n = fmt_utf8_seq_len(p + i, len - i);
    if (n == 0) {
      buf_add(out, "\\ufffd", 6);
      i++;
      continue;
    }
    if (n == 2 && c == 0xc2 && p[i + 1] <= 0x9f) {
      /* U+0080..U+009F, the C1 controls: legal JSON, but a terminal that
       * shows the line may act on them (U+009B is CSI). */
      char e[6] = {'\\', 'u', '0', '0', hex[p[i + 1] >> 4], hex[p[i + 1] & 15]};
      buf_add(out, e, sizeof(e));
      i += n;
      continue;
    }
    if (n > 1) {
      buf_add(out, p + i, n);
      i += n;
      continue;
    }
    i++;
    switch (c) {
    case '"':
      buf_add(out, "\\\"", 2);
      break;
    case '\\':
      buf_add(out, "\\\\", 2);
      break;
    case '\b':
      buf_add(out, "\\b", 2);
      break;
    case '\f':
      buf_add(out, "\\f", 2);
      break;
    case '\n':
      buf_add(out, "\\n", 2);
      break;
    case '\r':
      buf_add(out, "\\r", 2);
      break;
    case '\t':
      buf_add(out, "\\t", 2);
      break;
    default:
      if (c < 0x20 || c == 0x7f) {
        /* DEL is legal JSON but a terminal control; escape it too. */
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        buf_add(out, e, sizeof(e));
      } else {
        buf_add_u8(out, c);
      }
      break;
    }
  }
  buf_add_u8(out, '"');
  return buf_err(out);
}

int fmt_json_str(struct buf *out, const char *s) {
  assert(s != NULL);
  return fmt_json_strn(out, s, strlen(s));
}

static void json_key(struct buf *b, const char *key) {
  buf_add_u8(b, ',');
  fmt_json_str(b, key);
  buf_add_u8(b, ':');
}

void fmt_json_begin(struct buf *b, const char *event) {
  buf_add(b, "{\"event\":", 9);
  fmt_json_str(b, event);
}

void fmt_json_str_field(struct buf *b, const char *key, const char *value) {
  json_key(b, key);
  fmt_json_str(b, value);
}

void fmt_json_u64_field(struct buf *b, const char *key, uint64_t v) {
  char t[24];
  int n = snprintf(t, sizeof(t), "%" PRIu64, v);
  json_key(b, key);
  buf_add(b, t, (size_t)n);
}

void fmt_json_double_field(struct buf *b, const char *key, double v) {
  /* %.3f of the largest double is a sign, 309 digits, the locale's
   * decimal point (at most a few bytes) and three digits. */
  char t[400];
  json_key(b, key);
  if (!isfinite(v)) {
    buf_add(b, "null", 4);
    return;
  }
  int n = snprintf(t, sizeof(t), "%.3f", v);
  assert(n > 4 && (size_t)n < sizeof(t));
  /* printf writes ASCII digits in every locale, but the decimal point is
   * the locale's and may even be several bytes: keep the sign and the
   * integer digits, then write '.' and the last three digits ourselves. */
  size_t i = t[0] == '-' ? 1 : 0;
  while (is_digit(t[i])) {
    i++;
  }
  const char *dec = t + n - 3;
  /* -0.0004 prints as "-0.000"; JSON readers would keep a negative zero. */
  int zero = 1;
  for (size_t j = 0; j < i; j++) {
    zero &= t[j] == '-' || t[j] == '0';
  }
  zero &= dec[0] == '0' && dec[1] == '0' && dec[2] == '0';
  size_t from = zero && t[0] == '-' ? 1 : 0;
  buf_add(b, t + from, i - from);
  buf_add_u8(b, '.');
  buf_add(b, dec, 3);
}

void fmt_json_end(struct buf *b) {
  buf_add(b, "}\n", 2);
}

/* ---------------------------------------------------------------------- */
/* Text for a terminal */

/* The code point of the valid sequence of len bytes at p. */
static uint32_t utf8_decode(const uint8_t *p, size_t len) {
  static const uint8_t lead_bits[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
  uint32_t cp = p[0] & lead_bits[len];
  for (size_t i = 1; i < len; i++) {
    cp = cp << 6 | (p[i] & 0x3fu);
  }
  return cp;
}

/* Code points a terminal shows two columns wide: the East Asian wide and
 * fullwidth blocks, and the blocks where emoji live. Where a block mixes
 * widths it is taken whole: counting a narrow character as two only makes
 * a line a column shorter, while counting a wide one as one would wrap. */
static const struct {
  uint32_t lo, hi;
} wide_ranges[] = {
    {0x1100, 0x115f},   /* Hangul Jamo leading consonants */
    {0x231a, 0x231b},   /* watch, hourglass */
    {0x2329, 0x232a},   /* angle brackets */
    {0x23e9, 0x23ff},   /* media controls, clocks */
    {0x25fd, 0x25fe},   /* small squares */
    {0x2600, 0x27bf},   /* miscellaneous symbols, dingbats */
    {0x2b1b, 0x2b1c},   /* large squares */
    {0x2b50, 0x2b55},   /* stars, circles */
    {0x2e80, 0x303e},   /* CJK radicals to CJK punctuation */
    {0x3041, 0x33ff},   /* kana to CJK compatibility */
    {0x3400, 0x4dbf},   /* CJK extension A */
    {0x4e00, 0x9fff},   /* CJK unified ideographs */
    {0xa000, 0xa4cf},   /* Yi */
    {0xa960, 0xa97f},   /* Hangul Jamo extended A */
    {0xac00, 0xd7a3},   /* Hangul syllables */
    {0xf900, 0xfaff},   /* CJK compatibility ideographs */
    {0xfe10, 0xfe19},   /* vertical forms */
    {0xfe30, 0xfe6f},   /* CJK compatibility and small forms */
    {0xff00, 0xff60},   /* fullwidth forms */
    {0xffe0, 0xffe6},   /* fullwidth signs */
    {0x16fe0, 0x18cff}, /* Tangut and its neighbours */
    {0x1b000, 0x1b2ff}, /* kana supplements, Nushu */
    {0x1f000, 0x1faff}, /* game symbols, emoji and pictographs */
    {0x20000, 0x3fffd}, /* CJK extensions B and later */
};

static size_t cp_cols(uint32_t cp) {
  for (size_t i = 0; i < sizeof(wide_ranges) / sizeof(wide_ranges[0]); i++) {
    if (cp >= wide_ranges[i].lo && cp <= wide_ranges[i].hi) {
      return 2;
    }
  }
  return 1;
}

/* Writes s escaped (see fmt_term_escape) into out, stopping before the
 * first character or escape that does not fit in cap bytes (with the NUL)
 * or in max_cols columns; *cut says whether it stopped early. out may be
 * NULL to count only (cap is then ignored). Returns the columns written. */
static size_t term_escape(char *out, size_t cap, const char *s, size_t max_cols,
                          int *cut) {
  static const char hex[] = "0123456789abcdef";
  const uint8_t *p = (const uint8_t *)s;
  size_t n = strlen(s);
  size_t i = 0, o = 0, cols = 0;

  *cut = 0;
  if (out != NULL && cap == 0) {
    *cut = n > 0;
    return 0;
  }
  while (i < n) {
    char unit[8];
    size_t ulen, ucols, used;
    uint8_t c = p[i];
    size_t len = fmt_utf8_seq_len(p + i, n - i);
    if (len == 0 || (len == 1 && (c < 0x20 || c == 0x7f))) {
      /* A control, or a byte that starts no character: the byte in hex,
       * with the usual short forms for the common controls. */
      unit[0] = '\\';
      if (c == '\n' || c == '\r' || c == '\t') {
        unit[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        ulen = 2;
      } else {
        unit[1] = 'x';
        unit[2] = hex[c >> 4];
        unit[3] = hex[c & 15];
        ulen = 4;
      }
      used = 1;
    } else if (len == 1) {
      unit[0] = (char)c;
      ulen = 1;
      if (c == '\\') {
        unit[1] = '\\';
        ulen = 2;
      }
      used = 1;
    } else if (len == 2 && c == 0xc2 && p[i + 1] <= 0x9f) {
      /* A C1 control (U+009B is CSI on some terminals). */
      memcpy(unit, "\\u00", 4);
      unit[4] = hex[p[i + 1] >> 4];
      unit[5] = hex[p[i + 1] & 15];
      ulen = 6;
      used = 2;
    } else {
      memcpy(unit, p + i, len);
      ulen = len;
      used = len;
    }
    /* Escapes are ASCII, one column a byte; a character is one or two. */
    ucols = used == ulen && ulen > 1 ? cp_cols(utf8_decode(p + i, len)) : ulen;
    if ((out != NULL && o + ulen + 1 > cap) || cols + ucols > max_cols) {
      *cut = 1;
      break;
    }
    if (out != NULL) {
      memcpy(out + o, unit, ulen);
    }
    o += ulen;
    cols += ucols;
    i += used;
  }
  if (out != NULL) {
    out[o] = '\0';
  }
  return cols;
}

size_t fmt_term_escape(char *out, size_t cap, const char *s) {
  int cut;
  assert(s != NULL && (out != NULL || cap == 0));
  if (cap == 0) {
    return 0;
  }
  return term_escape(out, cap, s, SIZE_MAX, &cut);
}

size_t fmt_term_cols(const char *s) {
  const uint8_t *p = (const uint8_t *)s;
  size_t n = strlen(s);
  size_t cols = 0;
  for (size_t i = 0; i < n;) {
    size_t len = fmt_utf8_seq_len(p + i, n - i);
    if (len == 0) {
      len = 1; /* not escaped text; count it as a column all the same */
    }
    cols += len > 1 ? cp_cols(utf8_decode(p + i, len)) : 1;
    i += len;
  }
  return cols;
}

/* Appends the NUL-terminated program text t at out + *o, as much of it as
 * fits in cap (t is ASCII, so any cut is on a character boundary). */
static void append_text(char *out, size_t cap, size_t *o, const char *t) {
  size_t len = strlen(t);
  if (*o + 1 >= cap) {
    return;
  }
  if (len > cap - 1 - *o) {
    len = cap - 1 - *o;
  }
  memcpy(out + *o, t, len);
  *o += len;
  out[*o] = '\0';
}

int fmt_term_join(char *out, size_t cap, size_t cols, const char *prefix,
                  const char *name, size_t min_name, const char *suffix) {
  size_t fixed = fmt_term_cols(prefix) + fmt_term_cols(suffix);
  size_t o = 0;
  int cut;

  assert(out != NULL && cap > 0 && name != NULL);
  out[0] = '\0';
  size_t full = term_escape(NULL, 0, name, SIZE_MAX, &cut);
  size_t need = full < min_name ? full : min_name;
  if (fixed > cols || cols - fixed < need) {
    return -1;
  }
  size_t room = cols - fixed;
  size_t mark = strlen(FMT_TERM_CUT);
  append_text(out, cap, &o, prefix);
  if (full <= room) {
    term_escape(out + o, cap - o, name, room, &cut);
  } else if (room > mark) {
    term_escape(out + o, cap - o, name, room - mark, &cut);
    o += strlen(out + o);
    append_text(out, cap, &o, FMT_TERM_CUT);
  } else {
    char dots[8];
    snprintf(dots, sizeof(dots), "%.*s", (int)room, FMT_TERM_CUT);
    append_text(out, cap, &o, dots);
  }
  o += strlen(out + o);
  append_text(out, cap, &o, suffix);
  return 0;
}

void fmt_progress(char *out, size_t cap, size_t cols,
                  const struct fmt_progress *p) {
  char have[FMT_NUM_BYTES], total[FMT_NUM_BYTES], rate[FMT_NUM_BYTES];
  char eta[FMT_NUM_BYTES], up[FMT_NUM_BYTES], pct[FMT_NUM_BYTES];
  /* The longest variant: ": " and seven figures with their words. */
  char v[4][8 * FMT_NUM_BYTES];
  const char *bare;
  size_t nv;

  assert(out != NULL && cap > 0 && p != NULL && p->name != NULL);
  if (cols == 0) {
    cols = FMT_TERM_COLS_DEFAULT;
  }
  size_t avail = cols - 1;
  uint64_t left = p->total > p->have ? p->total - p->have : 0;
  /* Tenths of a percent, rounded, without the locale's decimal point. */
  uint64_t tenths =
      p->total ? (uint64_t)(1000.0 * (double)p->have / (double)p->total + 0.5)
               : 0;
  snprintf(pct, sizeof(pct), "%" PRIu64 ".%" PRIu64 "%%", tenths / 10,
           tenths % 10);
  fmt_bytes(have, sizeof(have), p->have);
  fmt_bytes(total, sizeof(total), p->total);
  fmt_rate(rate, sizeof(rate), p->rate);
  fmt_eta(eta, sizeof(eta), p->rate ? left / p->rate : UINT64_MAX);
  fmt_bytes(up, sizeof(up), p->uploaded);
  /* From the whole line to the least of it: the peers go first, then the
   * sizes, then rate and time; the percentage and the name stay. */
  if (p->seeding) {
    snprintf(v[0], sizeof(v[0]), ": seeding %s, uploaded %s, peers %u", total,
             up, p->peers);
    snprintf(v[1], sizeof(v[1]), ": seeding, uploaded %s", up);
    snprintf(v[2], sizeof(v[2]), ": seeding");
    nv = 3;
    bare = "seeding";
  } else {
    snprintf(v[0], sizeof(v[0]), ": %s %s/%s %s ETA %s peers %u seeders %u",
             pct, have, total, rate, eta, p->peers, p->seeders);
    snprintf(v[1], sizeof(v[1]), ": %s %s/%s %s ETA %s", pct, have, total, rate,
             eta);
    snprintf(v[2], sizeof(v[2]), ": %s %s ETA %s", pct, rate, eta);
    snprintf(v[3], sizeof(v[3]), ": %s", pct);
    nv = 4;
    bare = pct;
  }
  for (size_t i = 0; i < nv; i++) {
    if (fmt_term_join(out, cap, avail, "", p->name, FMT_TERM_NAME_MIN, v[i]) ==
        0) {
      return;
    }
  }
  /* No room for a name: the figure alone, cut if even that is too long. */
  snprintf(out, cap, "%.*s", (int)(avail < cap ? avail : cap - 1), bare);
}
