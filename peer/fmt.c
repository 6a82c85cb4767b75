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
  char t[FMT_NUM_BYTES];
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

/* Length of the valid UTF-8 sequence at p (n > 0 bytes left), or 0 when
 * the byte at p does not start one. The ranges are RFC 3629's: no overlong
 * forms, no surrogates (ED A0..BF), nothing above U+10FFFF. */
static size_t utf8_seq_len(const uint8_t *p, size_t n) {
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
    size_t n = utf8_seq_len(p + i, len - i);
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
