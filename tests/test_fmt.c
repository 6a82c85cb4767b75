/* Unit tests for peer/fmt.c: command-line sizes and numbers, the sizes,
 * rates and times shoal-peer prints, and its --json lines.
 *
 * The parsers get what a user or a script may type: every suffix in both
 * cases, fractions, the largest value and the first one past 2^64 at every
 * suffix, and junk of every kind (signs, spaces, doubled points, unknown
 * suffixes, non-ASCII digits). The formatters are pinned at their unit and
 * rounding edges. The JSON string writer is checked byte by byte for every
 * control character (C0, DEL and C1) and every class of invalid UTF-8, and
 * then, for every input of up to two bytes and for many longer ones, by a
 * small JSON reader written here: the output must be valid JSON (RFC 8259)
 * in valid UTF-8 with no raw control character, and must read back as the
 * input with each invalid byte replaced by U+FFFD.
 */
#include <float.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "peer/fmt.h"
#include "tests/lib/testutil.h"

/* The tests' own random choices (tu_rand): seeded where each test
 * starts, so that a failure replays. */
static uint64_t rng;

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)
#define TIB (1024ull * GIB)
#define EIB ((uint64_t)1 << 60)

/* ---------------------------------------------------------------------- */
/* fmt_parse_size */

struct size_case {
  const char *in;
  uint64_t want;
};

static void parse_size_accepts_every_suffix(void **state) {
  (void)state;
  static const struct size_case cases[] = {
      {"0", 0},
      {"1500", 1500},
      {"007", 7},
      {"500k", 500 * KIB},
      {"500K", 500 * KIB},
      {"10M", 10 * MIB},
      {"10m", 10 * MIB},
      {"1G", GIB},
      {"1g", GIB},
      {"1T", TIB},
      {"1t", TIB},
      {"0k", 0},
      {"0T", 0},
      {"10B", 10},
      {"10b", 10},
      {"10KB", 10 * KIB},
      {"10kb", 10 * KIB},
      {"10KiB", 10 * KIB},
      {"10MiB", 10 * MIB},
      {"10MB", 10 * MIB},
      {"10mib", 10 * MIB},
      {"10MIB", 10 * MIB},
      {"10GiB", 10 * GIB},
      {"10TiB", 10 * TIB},
      {"1.5M", 1572864},
      {"1.5MiB", 1572864},
      {"0.5k", 512},
      {"1.001k", 1025}, /* 1025.024, cut to whole bytes */
      {"1.999999k", 2047},
      {"0.000001k", 0},
      {"2.25G", 2 * GIB + GIB / 4},
      {"1.000000T", TIB},
      {"15.999999T", 15 * TIB + 999999 * TIB / 1000000},
      /* The largest values at every suffix. */
      {"18446744073709551615", UINT64_MAX},
      {"18446744073709551615B", UINT64_MAX},
      {"18014398509481983k", UINT64_MAX - 1023},
      {"17592186044415M", UINT64_MAX - (MIB - 1)},
      {"17179869183G", UINT64_MAX - (GIB - 1)},
      {"16777215T", UINT64_MAX - (TIB - 1)},
      {"16777215.999999T", 18446744073708452104u},
      /* A fraction cannot carry past 2^64: it adds less than one unit. */
      {"18014398509481983.999999k", UINT64_MAX},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint64_t v = 12345;
    int rc = fmt_parse_size(cases[i].in, &v);
    if (rc != 0 || v != cases[i].want) {
      fail_msg("\"%s\": rc %d value %llu, want %llu", cases[i].in, rc,
               (unsigned long long)v, (unsigned long long)cases[i].want);
    }
  }
}

static void parse_size_refuses_junk_and_overflow(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "-1",
      "+1",
      "-0",
      " 5",
      "5 ",
      "\t5",
      "5\n",
      "10X",
      "10 M",
      "10\tM",
      "1..5M",
      "1.5.5M",
      ".5M",
      "5.M",
      "5.",
      ".",
      "1.5",
      "1.0",
      "1.5B",
      "1.5iB",
      "K",
      "M",
      "KiB",
      "B",
      "iB",
      "10iB",
      "10KK",
      "10KBB",
      "10KiBB",
      "10Ki",
      "10KI",
      "10Kib ",
      "10kB2",
      "0x10",
      "1e3",
      "1,5M",
      "1_000",
      "1.1234567M", /* more fraction digits than allowed */
      "1.0000000k",
      "5E",
      "5P",
      "5KM",
      "5MK",
      /* 2^64 and beyond, at every suffix */
      "18446744073709551616",
      "18446744073709551616B",
      "99999999999999999999",
      "340282366920938463463374607431768211456",
      "18014398509481984k",
      "17592186044416M",
      "17179869184G",
      "16777216T",
      "16777216.0T",
      "18014398509481984.0k",
      /* non-ASCII digits and bytes */
      "\xef\xbc\x95", /* fullwidth 5 */
      "\xd9\xa5",     /* Arabic-Indic 5 */
      "5\xc2\xa0",    /* no-break space */
      "5\xff",
      "\x80",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t v = 12345;
    int rc = fmt_parse_size(bad[i], &v);
    if (rc != SHOAL_EINVAL || v != 0) {
      fail_msg("\"%s\": rc %d value %llu, want SHOAL_EINVAL and 0", bad[i], rc,
               (unsigned long long)v);
    }
  }
}

/* Every prefix and every one-character change of a good size parses to a
 * value or SHOAL_EINVAL; none reads past the string (checked by ASan with
 * exactly sized heap copies). */
static void parse_size_survives_every_prefix_and_mutation(void **state) {
  (void)state;
  static const char *const good[] = {"16777215.999999T", "10MiB", "1.5kb"};
  static const char alphabet[] = "0123456789.kKmMgGtTbBiI -+xe\xff";
  for (size_t g = 0; g < sizeof(good) / sizeof(good[0]); g++) {
    size_t len = strlen(good[g]);
    for (size_t cut = 0; cut <= len; cut++) {
      char *s = malloc(cut + 1);
      assert_non_null(s);
      memcpy(s, good[g], cut);
      s[cut] = '\0';
      uint64_t v = 1;
      int rc = fmt_parse_size(s, &v);
      assert_true(rc == 0 || (rc == SHOAL_EINVAL && v == 0));
      for (size_t pos = 0; pos < cut; pos++) {
        for (size_t a = 0; a < sizeof(alphabet) - 1; a++) {
          char old = s[pos];
          s[pos] = alphabet[a];
          rc = fmt_parse_size(s, &v);
          assert_true(rc == 0 || (rc == SHOAL_EINVAL && v == 0));
          s[pos] = old;
        }
      }
      free(s);
    }
  }
}

/* ---------------------------------------------------------------------- */
/* fmt_parse_uint */

static void parse_uint_range_and_junk(void **state) {
  (void)state;
  uint64_t v;
  assert_int_equal(fmt_parse_uint("0", 0, 10, &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(fmt_parse_uint("50", 1, 1000, &v), 0);
  assert_int_equal(v, 50);
  assert_int_equal(fmt_parse_uint("1", 1, 1000, &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(fmt_parse_uint("1000", 1, 1000, &v), 0);
  assert_int_equal(v, 1000);
  assert_int_equal(fmt_parse_uint("0001000", 1, 1000, &v), 0);
  assert_int_equal(v, 1000);
  assert_int_equal(fmt_parse_uint("18446744073709551615", 0, UINT64_MAX, &v),
                   0);
  assert_true(v == UINT64_MAX);

  static const char *const bad[] = {
      "",
      "-1",
      "+1",
      " 1",
      "1 ",
      "1k",
      "0x1",
      "1.0",
      "1e2",
      "\xd9\xa1",
      "1\n",
      "18446744073709551616",
      "99999999999999999999",
      "0000000000000000000018446744073709551616",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    v = 7;
    if (fmt_parse_uint(bad[i], 0, UINT64_MAX, &v) != SHOAL_EINVAL || v != 0) {
      fail_msg("\"%s\" was accepted", bad[i]);
    }
  }
  /* Out of range on either side. */
  v = 7;
  assert_int_equal(fmt_parse_uint("0", 1, 1000, &v), SHOAL_EINVAL);
  assert_int_equal(v, 0);
  v = 7;
  assert_int_equal(fmt_parse_uint("1001", 1, 1000, &v), SHOAL_EINVAL);
  assert_int_equal(v, 0);
  assert_int_equal(fmt_parse_uint("5", 5, 5, &v), 0);
  assert_int_equal(v, 5);
  assert_int_equal(fmt_parse_uint("4", 5, 5, &v), SHOAL_EINVAL);
  /* Leading zeros do not hide an overflow or shorten a large value. */
  assert_int_equal(fmt_parse_uint("000000000000000000000018446744073709551615",
                                  0, UINT64_MAX, &v),
                   0);
  assert_true(v == UINT64_MAX);
}

/* ---------------------------------------------------------------------- */
/* fmt_bytes, fmt_rate, fmt_eta */

struct num_case {
  uint64_t in;
  const char *want;
};

/* Each of the n cases formatted with fmt is its text. */
static void check_num_cases(void (*fmt)(char *, size_t, uint64_t),
                            const struct num_case *cases, size_t n) {
  char out[FMT_NUM_BYTES];
  for (size_t i = 0; i < n; i++) {
    fmt(out, sizeof(out), cases[i].in);
    if (strcmp(out, cases[i].want) != 0) {
      fail_msg("%llu: \"%s\", want \"%s\"", (unsigned long long)cases[i].in,
               out, cases[i].want);
    }
  }
}

static void bytes_at_unit_and_rounding_edges(void **state) {
  (void)state;
  static const struct num_case cases[] = {
      {0, "0 B"},
      {1, "1 B"},
      {999, "999 B"},
      {1000, "1000 B"},
      {1023, "1023 B"},
      {1024, "1.00 KiB"},
      {1025, "1.00 KiB"},
      {1029, "1.00 KiB"},
      {1030, "1.01 KiB"},
      {1152, "1.13 KiB"}, /* 1.125 exactly: halves round up */
      {1535, "1.50 KiB"},
      {1536, "1.50 KiB"},
      {10234, "9.99 KiB"},
      {10235, "10.0 KiB"}, /* 9.995 rounds to 10.0, not "10.00" */
      {10239, "10.0 KiB"},
      {10240, "10.0 KiB"},
      {102348, "99.9 KiB"},
      {102349, "100 KiB"}, /* 99.95 rounds to 100, not "100.0" */
      {102400, "100 KiB"},
      {512 * KIB, "512 KiB"},
      {1048063, "1023 KiB"},
      {1048064, "1.00 MiB"}, /* 1023.5 KiB: not "1024 KiB" */
      {1048575, "1.00 MiB"},
      {1048576, "1.00 MiB"},
      {31562138, "30.1 MiB"},
      {64 * MIB, "64.0 MiB"},
      {4 * GIB, "4.00 GiB"},
      {TIB, "1.00 TiB"},
      {TIB - 1, "1.00 TiB"},
      {1000 * TIB * 1024, "1000 PiB"},
      {1152358554653425663u, "1023 PiB"},
      {1152358554653425664u, "1.00 EiB"},
      {EIB, "1.00 EiB"},
      {EIB + EIB / 8 - 1, "1.12 EiB"},
      {EIB + EIB / 8, "1.13 EiB"}, /* an exact half in EiB */
      {1158686112129881210u, "1.00 EiB"},
      {1158686112129881211u, "1.01 EiB"},
      {11523450438545435525u, "9.99 EiB"},
      {11523450438545435526u, "10.0 EiB"},
      {UINT64_MAX, "16.0 EiB"},
  };
  check_num_cases(fmt_bytes, cases, sizeof(cases) / sizeof(cases[0]));
}

/* Three significant digits everywhere, and the shown value is never more
 * than half a unit of its last digit away from the real one. */
static void bytes_shape_for_many_values(void **state) {
  (void)state;
  static const char *const units[] = {"B",   "KiB", "MiB", "GiB",
                                      "TiB", "PiB", "EiB"};
  char out[FMT_NUM_BYTES];
  rng = 0x452821e638d01377u;
  for (int i = 0; i < 200000; i++) {
    uint64_t n = tu_rand(&rng) >> (tu_rand(&rng) % 64);
    fmt_bytes(out, sizeof(out), n);
    char *sp = strchr(out, ' ');
    assert_non_null(sp);
    size_t u = 0;
    while (u < 7 && strcmp(sp + 1, units[u]) != 0) {
      u++;
    }
    assert_true(u < 7);
    /* Digits: 1..4 before the point in B and for 1000..1023 of a unit. */
    size_t digits = 0;
    int point = 0;
    unsigned long long whole = 0;
    unsigned long long frac = 0;
    unsigned fdig = 0;
    for (char *p = out; p < sp; p++) {
      if (*p == '.') {
        point = 1;
        continue;
      }
      assert_true(*p >= '0' && *p <= '9');
      digits++;
      if (point) {
        frac = frac * 10 + (unsigned long long)(*p - '0');
        fdig++;
      } else {
        whole = whole * 10 + (unsigned long long)(*p - '0');
      }
    }
    if (u == 0) {
      assert_true(n < 1024 && whole == n && !point);
      continue;
    }
    assert_true(whole >= 1 && whole <= 1023);
    assert_true(digits == 3 || (digits == 4 && whole >= 1000 && !point));
    /* |shown - real| <= half a unit of the last digit, in long double
     * (64-bit mantissa: n is exact). */
    long double scale = ldexpl(1.0L, (int)(10 * u));
    long double shown =
        (long double)whole + (long double)frac / (fdig == 2   ? 100.0L
                                                  : fdig == 1 ? 10.0L
                                                              : 1.0L);
    long double last = fdig == 2 ? 0.01L : fdig == 1 ? 0.1L : 1.0L;
    long double real = (long double)n / scale;
    assert_true(fabsl(shown - real) <= last / 2 + 1e-12L);
  }
}

static void bytes_truncates_to_small_buffers(void **state) {
  (void)state;
  char out[8];
  memset(out, 'x', sizeof(out));
  fmt_bytes(out, 0, 1024);
  assert_int_equal(out[0], 'x');
  fmt_bytes(out, 1, 1024);
  assert_string_equal(out, "");
  fmt_bytes(out, 4, 1024);
  assert_string_equal(out, "1.0");
  fmt_rate(out, 5, 1024);
  assert_string_equal(out, "1.00");
  fmt_eta(out, 3, 65);
  assert_string_equal(out, "1m");
  /* The longest texts fit FMT_NUM_BYTES. */
  char big[FMT_NUM_BYTES];
  fmt_rate(big, sizeof(big), 1000 * KIB);
  assert_string_equal(big, "1000 KiB/s");
  fmt_eta(big, sizeof(big), UINT64_MAX - 1);
  assert_string_equal(big, "213503982334601d07h");
}

static void rate_text(void **state) {
  (void)state;
  static const struct num_case cases[] = {
      {0, "0 B/s"},
      {1023, "1023 B/s"},
      {1024, "1.00 KiB/s"},
      {1048575, "1.00 MiB/s"},
      {12897485, "12.3 MiB/s"},
      {UINT64_MAX, "16.0 EiB/s"},
  };
  check_num_cases(fmt_rate, cases, sizeof(cases) / sizeof(cases[0]));
}

static void eta_text(void **state) {
  (void)state;
  static const struct num_case cases[] = {
      {0, "0s"},
      {3, "3s"},
      {59, "59s"},
      {60, "1m00s"},
      {65, "1m05s"},
      {599, "9m59s"},
      {3599, "59m59s"},
      {3600, "1h00m"},
      {3659, "1h00m"}, /* cut, not rounded */
      {7380, "2h03m"},
      {7439, "2h03m"},
      {86399, "23h59m"},
      {86400, "1d00h"},
      {86400 + 7 * 3600 + 3599, "1d07h"},
      {100 * 86400, "100d00h"},
      {UINT64_MAX - 1, "213503982334601d07h"},
      {UINT64_MAX, "--"},
  };
  check_num_cases(fmt_eta, cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---------------------------------------------------------------------- */
/* Tracker addresses */

static void expect_tracker(const char *in, const char *host, unsigned port) {
  struct link_tracker t;
  const char *why = NULL;
  int rc = fmt_parse_tracker(in, &t, &why);
  if (rc != 0) {
    fail_msg("'%s' refused: %s", in, why ? why : "?");
  }
  assert_string_equal(t.host, host);
  assert_int_equal(t.port, port);
}

static void expect_bad_tracker(const char *in) {
  struct link_tracker t;
  const char *why = NULL;
  if (fmt_parse_tracker(in, &t, &why) == 0) {
    fail_msg("'%s' accepted as %s port %u", in, t.host, t.port);
  }
  assert_non_null(why);
  assert_int_equal(t.port, 0);
}

static void tracker_without_a_port_means_7070(void **state) {
  (void)state;
  assert_int_equal(FMT_TRACKER_PORT, 7070);
  expect_tracker("127.0.0.1:7071", "127.0.0.1", 7071);
  expect_tracker("127.0.0.1", "127.0.0.1", 7070);
  expect_tracker("tracker.example.org", "tracker.example.org", 7070);
  expect_tracker("tracker.example.org:1", "tracker.example.org", 1);
  expect_tracker("localhost", "localhost", 7070);
  expect_tracker("[::1]", "::1", 7070);
  expect_tracker("[::1]:9000", "::1", 9000);
  expect_tracker("[2001:db8::7]", "2001:db8::7", 7070);
  expect_bad_tracker("");
  expect_bad_tracker("::1"); /* IPv6 needs its brackets */
  expect_bad_tracker("::1:7070");
  expect_bad_tracker("host:"); /* a colon promises a port */
  expect_bad_tracker("host:0");
  expect_bad_tracker("host:65536");
  expect_bad_tracker("host:70x");
  expect_bad_tracker("[::1");
  expect_bad_tracker("[::1]x");
  expect_bad_tracker("[::1]:");
  expect_bad_tracker("[]");
  expect_bad_tracker("[zz::1]");
  expect_bad_tracker("a b");
  expect_bad_tracker("999.1.1.1");
  expect_bad_tracker(":7070");
}

static void tracker_list_splits_at_commas_and_spaces(void **state) {
  (void)state;
  struct link_tracker t[LINK_MAX_TRACKERS];
  unsigned n = 99;
  const char *why = NULL;
  char bad[64];
  assert_int_equal(fmt_parse_tracker_list("a.example", t, LINK_MAX_TRACKERS, &n,
                                          &why, bad, sizeof(bad)),
                   0);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].host, "a.example");
  assert_int_equal(t[0].port, 7070);
  assert_int_equal(fmt_parse_tracker_list(" a:1,b:2 [::1]\t,, c ", t,
                                          LINK_MAX_TRACKERS, &n, &why, bad,
                                          sizeof(bad)),
                   0);
  assert_int_equal(n, 4);
  assert_string_equal(t[0].host, "a");
  assert_int_equal(t[0].port, 1);
  assert_string_equal(t[1].host, "b");
  assert_int_equal(t[1].port, 2);
  assert_string_equal(t[2].host, "::1");
  assert_int_equal(t[2].port, 7070);
  assert_string_equal(t[3].host, "c");
  assert_int_equal(t[3].port, 7070);
  /* Nothing in it, too many, and one bad entry, which is named. */
  assert_int_equal(fmt_parse_tracker_list(" , ", t, LINK_MAX_TRACKERS, &n, &why,
                                          bad, sizeof(bad)),
                   SHOAL_EINVAL);
  assert_non_null(why);
  assert_int_equal(
      fmt_parse_tracker_list("a b c", t, 2, &n, &why, bad, sizeof(bad)),
      SHOAL_EINVAL);
  assert_int_equal(fmt_parse_tracker_list("a,b:99999,c", t, LINK_MAX_TRACKERS,
                                          &n, &why, bad, sizeof(bad)),
                   SHOAL_EBADLINK);
  assert_string_equal(bad, "b:99999");
  assert_non_null(strstr(why, "port"));
}

/* ---------------------------------------------------------------------- */
/* Text for a terminal */

static void expect_term(const char *in, const char *want, size_t want_cols) {
  char out[256];
  size_t cols = fmt_term_escape(out, sizeof(out), in);
  if (strcmp(out, want) != 0) {
    fail_msg("escaped to \"%s\", want \"%s\"", out, want);
  }
  assert_int_equal(cols, want_cols);
  assert_int_equal(fmt_term_cols(out), want_cols);
}

/* No byte a terminal acts on: C0, DEL, and C1 in UTF-8. */
static void assert_no_controls(const char *s) {
  const uint8_t *p = (const uint8_t *)s;
  for (size_t i = 0; p[i] != '\0'; i++) {
    if (p[i] < 0x20 || p[i] == 0x7f ||
        (p[i] == 0xc2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)) {
      fail_msg("control byte 0x%02x at %zu in \"%s\"", p[i], i, s);
    }
  }
}

static void term_escape_controls_and_invalid_bytes(void **state) {
  (void)state;
  expect_term("plain name.bin", "plain name.bin", 14);
  expect_term("a\x1b[31mred", "a\\x1b[31mred", 12);
  expect_term("two\nlines", "two\\nlines", 10);
  expect_term("\r\t", "\\r\\t", 4);
  expect_term("\x01\x1f\x7f", "\\x01\\x1f\\x7f", 12);
  expect_term("back\\slash", "back\\\\slash", 11);
  expect_term("\xc2\x9b"
              "2J",
              "\\u009b2J", 8);
  expect_term("\xc2\x80\xc2\x9f\xc2\xa0", "\\u0080\\u009f\xc2\xa0", 13);
  expect_term("caf\xc3\xa9", "caf\xc3\xa9", 4);
  expect_term("bad\xff", "bad\\xff", 7);
  expect_term("cut\xc3", "cut\\xc3", 7);
  expect_term("\xed\xa0\x80", "\\xed\\xa0\\x80", 12); /* a surrogate */
  expect_term("", "", 0);
  /* Wide characters count two columns each. */
  expect_term("\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac", 4);
  expect_term("\xef\xbc\xa1", "\xef\xbc\xa1", 2);         /* fullwidth A */
  expect_term("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", 2); /* emoji */
  expect_term("\xea\xb0\x80", "\xea\xb0\x80", 2);         /* Hangul */
  expect_term("\xe2\x82\xac", "\xe2\x82\xac", 1);         /* euro: narrow */
}

static void term_escape_every_byte_and_random_text(void **state) {
  (void)state;
  char in[80], out[512];
  for (unsigned c = 1; c < 256; c++) {
    in[0] = (char)c;
    in[1] = '\0';
    fmt_term_escape(out, sizeof(out), in);
    assert_no_controls(out);
    for (unsigned d = 0x80; d < 0xc0; d++) {
      in[1] = (char)d;
      in[2] = '\0';
      fmt_term_escape(out, sizeof(out), in);
      assert_no_controls(out);
    }
  }
  rng = 0x5851f42d4c957f2du;
  for (int round = 0; round < 20000; round++) {
    size_t n = (size_t)(tu_rand(&rng) % (sizeof(in) - 1));
    for (size_t i = 0; i < n; i++) {
      uint8_t b = (uint8_t)tu_rand(&rng);
      in[i] = (char)(b == 0 ? 0xc2 : b);
    }
    in[n] = '\0';
    size_t cols = fmt_term_escape(out, sizeof(out), in);
    assert_no_controls(out);
    assert_int_equal(cols, fmt_term_cols(out));
    struct buf b;
    buf_init(&b, 4096);
    /* What is left is valid UTF-8: JSON passes it through unchanged. */
    assert_int_equal(fmt_json_str(&b, out), 0);
    buf_add_u8(&b, 0);
    assert_null(strstr((const char *)b.data, "\\ufffd"));
    buf_free(&b);
  }
}

static void term_escape_cuts_whole_characters(void **state) {
  (void)state;
  char out[16];
  /* "ab" then an escape of four: with room for five bytes and the NUL the
   * escape does not fit whole, so it is left out. */
  memset(out, 'x', sizeof(out));
  assert_int_equal(fmt_term_escape(out, 6,
                                   "ab\x1b"
                                   "cd"),
                   2);
  assert_string_equal(out, "ab");
  assert_int_equal(fmt_term_escape(out, 7,
                                   "ab\x1b"
                                   "cd"),
                   6);
  assert_string_equal(out, "ab\\x1b");
  /* A two-byte character is not split. */
  assert_int_equal(fmt_term_escape(out, 3, "a\xc3\xa9"), 1);
  assert_string_equal(out, "a");
  assert_int_equal(fmt_term_escape(out, 1, "abc"), 0);
  assert_string_equal(out, "");
  assert_int_equal(fmt_term_escape(out, 0, "abc"), 0);
}

/* fmt_term_join() into a buffer of its own, which must return want_rc:
 * the text, kept until the next call. */
static const char *join(size_t cols, const char *prefix, const char *name,
                        size_t min_name, const char *suffix, int want_rc) {
  static char out[512];
  int rc =
      fmt_term_join(out, sizeof(out), cols, prefix, name, min_name, suffix);
  if (rc != want_rc) {
    fail_msg("\"%s\" in %zu columns: %d, want %d", name, cols, rc, want_rc);
  }
  return out;
}

static void term_join_cuts_the_name_to_fit(void **state) {
  (void)state;
  const char *out;
  char name[101];
  memset(name, 'a', 100);
  name[100] = '\0';
  assert_string_equal(join(80, "", "f.bin", 12, ": 50.0%", 0), "f.bin: 50.0%");
  /* 20 columns: 7 for the suffix, 13 for the name, of them 3 for "...". */
  out = join(20, "", name, 12, ": 50.0%", 0);
  assert_string_equal(out, "aaaaaaaaaa...: 50.0%");
  assert_int_equal(fmt_term_cols(out), 20);
  /* Exactly fits: not cut. */
  assert_string_equal(join(12, "<", "abcdef", 3, ": 50%", 0), "<abcdef: 50%");
  out = join(11, "<", "abcdef", 3, ": 50%", 0);
  assert_string_equal(out, "<ab...: 50%");
  assert_int_equal(fmt_term_cols(out), 11);
  /* Too little room for min_name columns of the name. */
  assert_string_equal(join(10, "", name, 12, "", -1), "");
  /* A short name needs only its own columns. */
  assert_string_equal(join(8, "", "ab", 12, ": 50%", 0), "ab: 50%");
  /* Wide characters are never split, and a cut one leaves a column. */
  out = join(7, "",
             "\xe6\x97\xa5\xe6\x97\xa5\xe6\x97\xa5"
             "\xe6\x97\xa5",
             1, "", 0);
  assert_string_equal(out, "\xe6\x97\xa5\xe6\x97\xa5...");
  assert_int_equal(fmt_term_cols(out), 7);
  /* UTF-8 is cut on a character boundary. */
  out = join(6, "",
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9",
             1, "", 0);
  assert_string_equal(out, "\xc3\xa9\xc3\xa9\xc3\xa9...");
  /* Controls are escaped before the name is measured and cut, and an
   * escape is never cut in half. */
  assert_string_equal(join(9, "", "ab\x1b[2Jcdef", 1, "", 0), "ab\\x1b...");
  out = join(8, "", "ab\x1b[2Jcdef", 1, "", 0);
  assert_string_equal(out, "ab...");
  assert_no_controls(out);
  assert_string_equal(join(80, "", "ab\ncd", 1, "!", 0), "ab\\ncd!");
}

/* A download of name at 47.0%: 30.1 MiB of 64.0 MiB at 12.3 MiB/s, ETA 2s,
 * from 4 peers of which 1 seeder. */
static struct fmt_progress progress_of(const char *name) {
  struct fmt_progress p = {
      .name = name,
      .have = 30u * MIB + 100u * KIB,
      .total = 64u * MIB,
      .rate = 12u * MIB + 300u * KIB,
      .peers = 4,
      .seeders = 1,
  };
  return p;
}

/* p drawn in cols columns is want. */
static void expect_progress(const struct fmt_progress *p, size_t cols,
                            const char *want) {
  char out[512];
  fmt_progress(out, sizeof(out), cols, p);
  if (strcmp(out, want) != 0) {
    fail_msg("%zu columns: \"%s\", want \"%s\"", cols, out, want);
  }
}

static void progress_full_line(void **state) {
  (void)state;
  struct fmt_progress p = progress_of("photos");
  expect_progress(&p, 80,
                  "photos: 47.0% 30.1 MiB/64.0 MiB 12.3 MiB/s ETA 2s "
                  "peers 4 seeders 1");
  p.seeding = 1;
  p.uploaded = 1200u * MIB;
  expect_progress(&p, 80,
                  "photos: seeding 64.0 MiB, uploaded 1.17 GiB, peers 4");
  /* 0 columns: the default width. */
  expect_progress(&p, 0,
                  "photos: seeding 64.0 MiB, uploaded 1.17 GiB, peers 4");
}

static void progress_fits_every_width(void **state) {
  (void)state;
  static const char *const names[] = {
      "a.bin",
      "holiday-video-from-the-summer-of-2024-in-full-resolution.mkv",
      "\xc3\xa9t\xc3\xa9-\xc3\xa0-la-plage-avec-les-enfants-et-le-chien.bin",
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83"
      "\x95\xe3\x82\xa1\xe3\x82\xa4\xe3\x83\xab\xe5\x90\x8d\xe5"
      "\x89\x8d.txt",
      "evil\x1b]0;pwned\x07\n\r\x1b[2Jname\xc2\x9b"
      "31m\xff.bin",
  };
  char out[512];
  for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
    for (int seeding = 0; seeding <= 1; seeding++) {
      struct fmt_progress p = {
          .name = names[n],
          .have = 123456789,
          .total = 987654321,
          .rate = 4567890,
          .uploaded = 7654321,
          .peers = 123,
          .seeders = 45,
          .seeding = seeding,
      };
      for (size_t cols = 1; cols <= 200; cols++) {
        fmt_progress(out, sizeof(out), cols, &p);
        assert_no_controls(out);
        if (fmt_term_cols(out) > cols - 1) {
          fail_msg("%zu columns: \"%s\" is %zu columns", cols, out,
                   fmt_term_cols(out));
        }
        /* The percentage stays as long as it fits at all. */
        if (!seeding && cols > 8) {
          assert_non_null(strstr(out, "12.5%"));
        }
      }
    }
  }
}

static void progress_drops_figures_before_the_name(void **state) {
  (void)state;
  struct fmt_progress p = progress_of(
      "holiday-video-from-the-summer-of-2024-in-full-resolution.mkv");
  expect_progress(&p, 80,
                  "holiday-video-f...: 47.0% 30.1 MiB/64.0 MiB "
                  "12.3 MiB/s ETA 2s peers 4 seeders 1");
  /* Too little room for FMT_TERM_NAME_MIN columns of the name beside the
   * sizes: they go, and the name gets the room. */
  expect_progress(&p, 50, "holiday-video-from-th...: 47.0% 12.3 MiB/s ETA 2s");
  expect_progress(&p, 30, "holiday-video-from-...: 47.0%");
  expect_progress(&p, 12, "47.0%");
  p.seeding = 1;
  p.uploaded = 5u * MIB;
  expect_progress(&p, 60,
                  "holiday-vi...: seeding 64.0 MiB, uploaded 5.00 "
                  "MiB, peers 4");
  expect_progress(&p, 55,
                  "holiday-video-from-the-...: seeding, uploaded "
                  "5.00 MiB");
  expect_progress(&p, 30, "holiday-video-fro...: seeding");
  expect_progress(&p, 12, "seeding");
  p.seeding = 0;
  expect_progress(&p, 7, "47.0%");
  expect_progress(&p, 4, "47.");
}

/* ---------------------------------------------------------------------- */
/* A small JSON reader for the checks below. */

/* Writes code point cp as UTF-8 into out (room for 4); returns the length. */
static size_t put_utf8(uint8_t *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xc0 | cp >> 6);
    out[1] = (uint8_t)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xe0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (uint8_t)(0xf0 | cp >> 18);
  out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (uint8_t)(0x80 | (cp & 0x3f));
  return 4;
}

/* Decodes one UTF-8 character at p by computing its code point (not by the
 * byte ranges fmt.c uses): returns its length, or 0 when it is not a
 * shortest-form encoding of a scalar value. */
static size_t ref_utf8(const uint8_t *p, size_t n, uint32_t *cp) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t len;
  uint32_t v;
  if (p[0] < 0x80) {
    *cp = p[0];
    return 1;
  } else if ((p[0] & 0xe0) == 0xc0) {
    len = 2;
    v = p[0] & 0x1fu;
  } else if ((p[0] & 0xf0) == 0xe0) {
    len = 3;
    v = p[0] & 0x0fu;
  } else if ((p[0] & 0xf8) == 0xf0) {
    len = 4;
    v = p[0] & 0x07u;
  } else {
    return 0;
  }
  if (n < len) {
    return 0;
  }
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) {
      return 0;
    }
    v = v << 6 | (p[i] & 0x3fu);
  }
  if (v < min_cp[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
    return 0;
  }
  *cp = v;
  return len;
}

static int hex_val(uint8_t c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

static int read_hex4(const uint8_t *p, size_t n, uint32_t *v) {
  *v = 0;
  if (n < 4) {
    return -1;
  }
  for (int i = 0; i < 4; i++) {
    int h = hex_val(p[i]);
    if (h < 0) {
      return -1;
    }
    *v = *v << 4 | (uint32_t)h;
  }
  return 0;
}

/* The byte that the two-character escape \e stands for (RFC 8259 section
 * 7: \" \\ \/ \b \f \n \r \t), or -1. */
static int short_escape(uint8_t e) {
  static const char from[] = "\"\\/bfnrt";
  static const char to[] = "\"\\/\b\f\n\r\t";
  const char *k = e != 0 ? strchr(from, e) : NULL;
  return k == NULL ? -1 : (uint8_t)to[k - from];
}

/* Reads a JSON string literal at p[0..n): returns the bytes it used, or 0
 * when it is not valid JSON (RFC 8259 section 7, in valid UTF-8, and no
 * unpaired surrogate escapes). The decoded text goes to dec (room for n
 * bytes), its length to *dlen. */
static size_t json_read_string(const uint8_t *p, size_t n, uint8_t *dec,
                               size_t *dlen) {
  size_t i = 1;
  size_t o = 0;
  if (n == 0 || p[0] != '"') {
    return 0;
  }
  for (;;) {
    if (i >= n) {
      return 0;
    }
    uint8_t c = p[i];
    if (c == '"') {
      *dlen = o;
      return i + 1;
    }
    if (c < 0x20) {
      return 0;
    }
    if (c != '\\') {
      uint32_t cp;
      size_t len = ref_utf8(p + i, n - i, &cp);
      if (len == 0) {
        return 0;
      }
      memcpy(dec + o, p + i, len);
      o += len;
      i += len;
      continue;
    }
    if (i + 1 >= n) {
      return 0;
    }
    uint8_t e = p[i + 1];
    i += 2;
    if (e != 'u') {
      int byte = short_escape(e);
      if (byte < 0) {
        return 0;
      }
      dec[o++] = (uint8_t)byte;
      continue;
    }
    uint32_t cp;
    if (read_hex4(p + i, n - i, &cp) != 0) {
      return 0;
    }
    i += 4;
    if (cp >= 0xdc00 && cp <= 0xdfff) {
      return 0;
    }
    if (cp >= 0xd800 && cp <= 0xdbff) {
      uint32_t lo;
      if (i + 2 > n || p[i] != '\\' || p[i + 1] != 'u' ||
          read_hex4(p + i + 2, n - i - 2, &lo) != 0 || lo < 0xdc00 ||
          lo > 0xdfff) {
        return 0;
      }
      i += 6;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    /* Six escape bytes always decode to at most four. */
    o += put_utf8(dec + o, cp);
  }
}

/* The index of the first byte from i on in p[0..n) that is not a digit. */
static size_t skip_digits(const uint8_t *p, size_t n, size_t i) {
  while (i < n && p[i] >= '0' && p[i] <= '9') {
    i++;
  }
  return i;
}

/* Reads a JSON number (RFC 8259 section 6); returns the bytes used or 0. */
static size_t json_read_number(const uint8_t *p, size_t n) {
  size_t i = 0;
  if (i < n && p[i] == '-') {
    i++;
  }
  if (i < n && p[i] == '0') {
    i++;
  } else if (i < n && p[i] >= '1' && p[i] <= '9') {
    i = skip_digits(p, n, i);
  } else {
    return 0;
  }
  if (i < n && p[i] == '.') {
    size_t d = skip_digits(p, n, i + 1);
    if (d == i + 1) {
      return 0; /* a point needs a digit after it */
    }
    i = d;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    i++;
    if (i < n && (p[i] == '+' || p[i] == '-')) {
      i++;
    }
    size_t d = skip_digits(p, n, i);
    if (d == i) {
      return 0; /* so does an exponent */
    }
    i = d;
  }
  return i;
}

/* Whether p[0..n) is exactly one flat JSON object whose first key is
 * "event" and whose values are strings, numbers or null, then "\n". */
static int json_line_valid(const uint8_t *p, size_t n) {
  uint8_t *dec = malloc(n + 1);
  size_t dlen;
  size_t i = 1;
  int ok = 0;
  int first = 1;
  assert_non_null(dec);
  if (n < 3 || p[0] != '{' || p[n - 1] != '\n' || p[n - 2] != '}') {
    goto out;
  }
  n -= 1; /* the newline */
  for (;;) {
    size_t k = json_read_string(p + i, n - i, dec, &dlen);
    if (k == 0) {
      goto out;
    }
    if (first && (dlen != 5 || memcmp(dec, "event", 5) != 0)) {
      goto out;
    }
    first = 0;
    i += k;
    if (i >= n || p[i] != ':') {
      goto out;
    }
    i++;
    if (i < n && p[i] == '"') {
      k = json_read_string(p + i, n - i, dec, &dlen);
    } else if (n - i >= 4 && memcmp(p + i, "null", 4) == 0) {
      k = 4;
    } else {
      k = json_read_number(p + i, n - i);
    }
    if (k == 0) {
      goto out;
    }
    i += k;
    if (i >= n) {
      goto out;
    }
    if (p[i] == '}') {
      ok = i + 1 == n;
      goto out;
    }
    if (p[i] != ',') {
      goto out;
    }
    i++;
  }
out:
  free(dec);
  return ok;
}

/* The text fmt_json_strn must produce, decoded: the input with every byte
 * that does not start a valid character replaced by U+FFFD. */
static size_t expected_decoding(const uint8_t *in, size_t n, uint8_t *out) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = ref_utf8(in + i, n - i, &cp);
    if (len == 0) {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
    } else {
      memcpy(out + o, in + i, len);
      o += len;
      i += len;
    }
  }
  return o;
}

/* Whether p[0..n) holds a C1 control (U+0080..U+009F, C2 80..C2 9F). */
static int has_raw_c1(const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (p[i] == 0xc2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
      return 1;
    }
  }
  return 0;
}

/* Formats in[0..n) and checks the output reads back as expected, is valid
 * JSON in valid UTF-8, and carries no raw DEL and no raw C1 control. */
static void check_round_trip(struct buf *b, const uint8_t *in, size_t n) {
  uint8_t want[3 * 64];
  uint8_t got[6 * 64 + 2];
  size_t dlen = 0;
  assert_true(n <= 64);
  buf_reset(b);
  assert_int_equal(fmt_json_strn(b, in, n), 0);
  size_t used = json_read_string(b->data, b->len, got, &dlen);
  assert_int_equal(used, b->len);
  assert_true(memchr(b->data, 0x7f, b->len) == NULL);
  assert_false(has_raw_c1(b->data, b->len));
  size_t wlen = expected_decoding(in, n, want);
  assert_int_equal(dlen, wlen);
  assert_memory_equal(got, want, wlen);
}

/* ---------------------------------------------------------------------- */
/* fmt_json_str */

static void expect_json(const void *in, size_t n, const char *want) {
  struct buf b;
  buf_init(&b, 4096);
  assert_int_equal(fmt_json_strn(&b, in, n), 0);
  if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0) {
    fail_msg("got %.*s, want %s", (int)b.len, (const char *)b.data, want);
  }
  buf_free(&b);
}

static void json_escapes_every_control_character(void **state) {
  (void)state;
  static const char *const want[32] = {
      "\"\\u0000\"", "\"\\u0001\"", "\"\\u0002\"", "\"\\u0003\"", "\"\\u0004\"",
      "\"\\u0005\"", "\"\\u0006\"", "\"\\u0007\"", "\"\\b\"",     "\"\\t\"",
      "\"\\n\"",     "\"\\u000b\"", "\"\\f\"",     "\"\\r\"",     "\"\\u000e\"",
      "\"\\u000f\"", "\"\\u0010\"", "\"\\u0011\"", "\"\\u0012\"", "\"\\u0013\"",
      "\"\\u0014\"", "\"\\u0015\"", "\"\\u0016\"", "\"\\u0017\"", "\"\\u0018\"",
      "\"\\u0019\"", "\"\\u001a\"", "\"\\u001b\"", "\"\\u001c\"", "\"\\u001d\"",
      "\"\\u001e\"", "\"\\u001f\"",
  };
  for (unsigned c = 0; c < 32; c++) {
    uint8_t byte = (uint8_t)c;
    expect_json(&byte, 1, want[c]);
  }
  expect_json("\x7f", 1, "\"\\u007f\"");
  expect_json("\"", 1, "\"\\\"\"");
  expect_json("\\", 1, "\"\\\\\"");
  expect_json("/", 1, "\"/\"");
  expect_json("", 0, "\"\"");
  expect_json("a\0b", 3, "\"a\\u0000b\"");
  expect_json("say \"hi\"\\\n", 10, "\"say \\\"hi\\\"\\\\\\n\"");
  /* Every printable ASCII character but " and \ passes as it is. */
  for (unsigned c = 0x20; c < 0x7f; c++) {
    if (c == '"' || c == '\\') {
      continue;
    }
    char in[2] = {(char)c, 0};
    char out[4] = {'"', (char)c, '"', 0};
    expect_json(in, 1, out);
  }
}

/* U+0080..U+009F are valid UTF-8 and legal in JSON, but they are the C1
 * controls (U+009B is CSI), which a terminal may act on when a --json line
 * is shown on it: they are escaped like the C0 controls. */
static void json_escapes_c1_controls(void **state) {
  (void)state;
  for (unsigned c = 0x80; c <= 0x9f; c++) {
    uint8_t in[2] = {0xc2, (uint8_t)c};
    char want[16];
    snprintf(want, sizeof(want), "\"\\u%04x\"", c);
    expect_json(in, 2, want);
  }
  expect_json("a\xc2\x9b"
              "31mb",
              7, "\"a\\u009b31mb\"");
  /* U+00A0 and on pass as they are. */
  expect_json("\xc2\xa0", 2, "\"\xc2\xa0\"");
}

static void json_str_uses_the_c_string(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 64);
  assert_int_equal(fmt_json_str(&b, "ab\tc"), 0);
  assert_int_equal(b.len, 7);
  assert_memory_equal(b.data, "\"ab\\tc\"", 7);
  buf_free(&b);
}

static void json_passes_valid_utf8(void **state) {
  (void)state;
  static const char *const ok[] = {
      "\xc2\xa0",         /* U+00A0, the first after the C1 controls */
      "\xc3\xa9",         /* é */
      "\xdf\xbf",         /* U+07FF */
      "\xe0\xa0\x80",     /* U+0800, the first three-byte */
      "\xe2\x82\xac",     /* € */
      "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
      "\xee\x80\x80",     /* U+E000, just above them */
      "\xef\xbf\xbd",     /* U+FFFD itself */
      "\xef\xbf\xbf",     /* U+FFFF */
      "\xe2\x80\xa8",     /* U+2028: valid JSON, passed through */
      "\xf0\x90\x80\x80", /* U+10000, the first four-byte */
      "\xf0\x9d\x84\x9e", /* 𝄞 */
      "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last */
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    char want[16];
    snprintf(want, sizeof(want), "\"%s\"", ok[i]);
    expect_json(ok[i], strlen(ok[i]), want);
  }
  expect_json("na\xc3\xafve caf\xc3\xa9", 12, "\"na\xc3\xafve caf\xc3\xa9\"");
}

static void json_replaces_each_invalid_byte(void **state) {
  (void)state;
  struct {
    const char *in;
    const char *want;
  } cases[] = {
      {"\x80", "\"\\ufffd\""}, /* stray continuation */
      {"\xbf", "\"\\ufffd\""},
      {"\xc0\x80", "\"\\ufffd\\ufffd\""},            /* overlong NUL */
      {"\xc1\xbf", "\"\\ufffd\\ufffd\""},            /* overlong U+007F */
      {"\xe0\x80\x80", "\"\\ufffd\\ufffd\\ufffd\""}, /* overlong */
      {"\xe0\x9f\xbf", "\"\\ufffd\\ufffd\\ufffd\""}, /* overlong U+07FF */
      {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""}, /* U+D800 */
      {"\xed\xbf\xbf", "\"\\ufffd\\ufffd\\ufffd\""}, /* U+DFFF */
      {"\xf0\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
      {"\xf0\x8f\xbf\xbf", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
      {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* >10FFFF */
      {"\xf5\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
      {"\xf8\x88\x80\x80\x80",
       "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* old 5-byte form */
      {"\xfe", "\"\\ufffd\""},
      {"\xff", "\"\\ufffd\""},
      {"\xc3", "\"\\ufffd\""}, /* cut at the end */
      {"\xe2\x82", "\"\\ufffd\\ufffd\""},
      {"\xf0\x9d\x84", "\"\\ufffd\\ufffd\\ufffd\""},
      {"\xe2\x82"
       "A",
       "\"\\ufffd\\ufffdA\""},       /* cut by ASCII */
      {"\xc3\"", "\"\\ufffd\\\"\""}, /* cut by a quote */
      {"a\xc3\xa9\xff\xc3\xa9z", "\"a\xc3\xa9\\ufffd\xc3\xa9z\""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    expect_json(cases[i].in, strlen(cases[i].in), cases[i].want);
  }
  /* A lead byte cut by NUL (only fmt_json_strn can carry one). */
  expect_json("\xc3\0", 2, "\"\\ufffd\\u0000\"");
}

static void json_round_trip_every_short_input(void **state) {
  (void)state;
  struct buf b;
  uint8_t in[4];
  buf_init(&b, 1024);
  for (unsigned a = 0; a < 256; a++) {
    in[0] = (uint8_t)a;
    check_round_trip(&b, in, 1);
    for (unsigned c = 0; c < 256; c++) {
      in[1] = (uint8_t)c;
      check_round_trip(&b, in, 2);
    }
  }
  /* Three- and four-byte lead bytes with a valid-looking second byte and
   * every third (and, for four, a spread of fourth) byte. */
  for (unsigned a = 0xe0; a <= 0xf7; a++) {
    for (unsigned c = 0x7f; c <= 0xc0; c++) {
      for (unsigned d = 0; d < 256; d++) {
        in[0] = (uint8_t)a;
        in[1] = (uint8_t)c;
        in[2] = (uint8_t)d;
        check_round_trip(&b, in, 3);
        if (a >= 0xf0 && (d == 0x7f || d == 0x80 || d == 0xbf || d == 0xc0)) {
          for (unsigned e = 0; e < 256; e++) {
            in[3] = (uint8_t)e;
            check_round_trip(&b, in, 4);
          }
        }
      }
    }
  }
  buf_free(&b);
}

static void json_round_trip_random_bytes(void **state) {
  (void)state;
  /* Pieces that make interesting neighbours. */
  static const char *const pieces[] = {
      "\"",           "\\",           "\x7f",
      "\xc3\xa9",     "\xe2\x82\xac", "\xf0\x9d\x84\x9e",
      "\xed\xa0\x80", "\xc0",         "\x80",
      "\xf4\x90",     "\\u0000",      "\n",
      "\0",
  };
  struct buf b;
  uint8_t in[64];
  buf_init(&b, 1024);
  rng = 0xa4093822299f31d0u;
  for (int round = 0; round < 100000; round++) {
    size_t n = (size_t)(tu_rand(&rng) % 65);
    size_t i = 0;
    while (i < n) {
      uint64_t r = tu_rand(&rng);
      if (r % 4 == 0) {
        const char *pc = pieces[(r >> 8) % (sizeof(pieces) / sizeof(*pieces))];
        size_t len = pc[0] == '\0' ? 1 : strlen(pc);
        if (len > n - i) {
          len = n - i;
        }
        memcpy(in + i, pc, len);
        i += len;
      } else {
        in[i++] = (uint8_t)(r >> 16);
      }
    }
    check_round_trip(&b, in, n);
  }
  buf_free(&b);
}

static void json_reports_a_full_buffer(void **state) {
  (void)state;
  /* "a\n\xff" needs 1 + 1 + 2 + 6 + 1 = 11 bytes. Every smaller fixed
   * buffer fails with SHOAL_ETOOBIG and writes nothing past its end. */
  uint8_t store[32];
  for (size_t cap = 0; cap <= 11; cap++) {
    struct buf b;
    memset(store, 0xee, sizeof(store));
    buf_init_fixed(&b, store, cap);
    int rc = fmt_json_str(&b, "a\n\xff");
    assert_int_equal(rc, cap < 11 ? SHOAL_ETOOBIG : 0);
    for (size_t i = cap; i < sizeof(store); i++) {
      assert_int_equal(store[i], 0xee);
    }
  }
  struct buf b;
  uint8_t tiny[5];
  buf_init_fixed(&b, tiny, sizeof(tiny));
  fmt_json_begin(&b, "progress");
  fmt_json_u64_field(&b, "have", 1);
  fmt_json_double_field(&b, "rate", 1.0);
  fmt_json_str_field(&b, "name", "x");
  fmt_json_end(&b);
  assert_int_equal(buf_err(&b), SHOAL_ETOOBIG);
}

/* ---------------------------------------------------------------------- */
/* JSON lines */

static void expect_line(struct buf *b, const char *want) {
  assert_int_equal(buf_err(b), 0);
  if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0) {
    fail_msg("got %.*s, want %s", (int)b->len, (const char *)b->data, want);
  }
  assert_true(json_line_valid(b->data, b->len));
}

static void json_line_exact_text(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 4096);
  fmt_json_begin(&b, "progress");
  fmt_json_str_field(&b, "content", "abc");
  fmt_json_u64_field(&b, "have", 0);
  fmt_json_u64_field(&b, "total", UINT64_MAX);
  fmt_json_double_field(&b, "seconds", 1.5);
  fmt_json_str_field(&b, "name", "a\"b\\c\n\xff");
  fmt_json_end(&b);
  expect_line(&b, "{\"event\":\"progress\",\"content\":\"abc\",\"have\":0,"
                  "\"total\":18446744073709551615,\"seconds\":1.500,"
                  "\"name\":\"a\\\"b\\\\c\\n\\ufffd\"}\n");
  buf_reset(&b);
  fmt_json_begin(&b, "id");
  fmt_json_end(&b);
  expect_line(&b, "{\"event\":\"id\"}\n");
  buf_free(&b);
}

static void json_double_three_decimals(void **state) {
  (void)state;
  static const struct {
    double v;
    const char *want;
  } cases[] = {
      {0.0, "0.000"},
      {-0.0, "0.000"},
      {1.5, "1.500"},
      {-0.25, "-0.250"},
      {2.0 / 3.0, "0.667"},
      {-2.0 / 3.0, "-0.667"},
      {0.0005, "0.001"},  /* 0.000500000000000000010408... */
      {-0.0004, "0.000"}, /* no negative zero */
      {-0.0005, "-0.001"},
      {1.0005, "1.000"},      /* 1.000499999999999944... */
      {999.9995, "1000.000"}, /* 999.999500000000011... */
      {1234567.891, "1234567.891"},
      {1e15, "1000000000000000.000"},
      {DBL_MIN, "0.000"},
      {-DBL_MIN, "0.000"},
      {NAN, "null"},
      {INFINITY, "null"},
      {-INFINITY, "null"},
  };
  struct buf b;
  buf_init(&b, 4096);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char want[128];
    buf_reset(&b);
    fmt_json_begin(&b, "t");
    fmt_json_double_field(&b, "v", cases[i].v);
    fmt_json_end(&b);
    snprintf(want, sizeof(want), "{\"event\":\"t\",\"v\":%s}\n", cases[i].want);
    expect_line(&b, want);
  }
  /* The largest doubles: 309 digits, then ".000"; still a JSON number. */
  for (int sign = 0; sign < 2; sign++) {
    buf_reset(&b);
    fmt_json_begin(&b, "t");
    fmt_json_double_field(&b, "v", sign ? -DBL_MAX : DBL_MAX);
    fmt_json_end(&b);
    assert_true(json_line_valid(b.data, b.len));
    const char *v = (const char *)b.data + strlen("{\"event\":\"t\",\"v\":");
    size_t vlen = b.len - (size_t)(v - (const char *)b.data) - 2;
    assert_int_equal(vlen, (size_t)sign + 309 + 4);
    assert_memory_equal(v + vlen - 4, ".000", 4);
    assert_memory_equal(v + sign, "17976931348623157", 17);
  }
  buf_free(&b);
}

/* printf's decimal point follows LC_NUMERIC; the JSON must not. Runs when
 * a locale with a decimal comma is installed (skipped otherwise). */
static void json_double_ignores_the_locale(void **state) {
  (void)state;
  static const char *const names[] = {
      "de_DE.UTF-8", "de_DE.utf8",  "de_DE",       "fr_FR.UTF-8",
      "fr_FR.utf8",  "ru_RU.UTF-8", "nl_NL.UTF-8", "pl_PL.UTF-8"};
  const char *found = NULL;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !found; i++) {
    if (setlocale(LC_NUMERIC, names[i]) != NULL &&
        strcmp(localeconv()->decimal_point, ".") != 0) {
      found = names[i];
    }
  }
  if (found == NULL) {
    setlocale(LC_NUMERIC, "C");
    skip();
  }
  struct buf b;
  buf_init(&b, 1024);
  fmt_json_begin(&b, "t");
  fmt_json_double_field(&b, "v", -1234.5);
  fmt_json_u64_field(&b, "n", 1234567);
  fmt_json_end(&b);
  setlocale(LC_NUMERIC, "C");
  expect_line(&b, "{\"event\":\"t\",\"v\":-1234.500,\"n\":1234567}\n");
  buf_free(&b);
}

static void json_keys_and_event_are_escaped_too(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 1024);
  fmt_json_begin(&b, "e\"v");
  fmt_json_u64_field(&b, "k\\", 1);
  fmt_json_end(&b);
  expect_line(&b, "{\"event\":\"e\\\"v\",\"k\\\\\":1}\n");
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse_size_accepts_every_suffix),
      cmocka_unit_test(parse_size_refuses_junk_and_overflow),
      cmocka_unit_test(parse_size_survives_every_prefix_and_mutation),
      cmocka_unit_test(parse_uint_range_and_junk),
      cmocka_unit_test(bytes_at_unit_and_rounding_edges),
      cmocka_unit_test(bytes_shape_for_many_values),
      cmocka_unit_test(bytes_truncates_to_small_buffers),
      cmocka_unit_test(rate_text),
      cmocka_unit_test(eta_text),
      cmocka_unit_test(tracker_without_a_port_means_7070),
      cmocka_unit_test(tracker_list_splits_at_commas_and_spaces),
      cmocka_unit_test(term_escape_controls_and_invalid_bytes),
      cmocka_unit_test(term_escape_every_byte_and_random_text),
      cmocka_unit_test(term_escape_cuts_whole_characters),
      cmocka_unit_test(term_join_cuts_the_name_to_fit),
      cmocka_unit_test(progress_full_line),
      cmocka_unit_test(progress_fits_every_width),
      cmocka_unit_test(progress_drops_figures_before_the_name),
      cmocka_unit_test(json_escapes_every_control_character),
      cmocka_unit_test(json_escapes_c1_controls),
      cmocka_unit_test(json_str_uses_the_c_string),
      cmocka_unit_test(json_passes_valid_utf8),
      cmocka_unit_test(json_replaces_each_invalid_byte),
      cmocka_unit_test(json_round_trip_every_short_input),
      cmocka_unit_test(json_round_trip_random_bytes),
      cmocka_unit_test(json_reports_a_full_buffer),
      cmocka_unit_test(json_line_exact_text),
      cmocka_unit_test(json_double_three_decimals),
      cmocka_unit_test(json_double_ignores_the_locale),
      cmocka_unit_test(json_keys_and_event_are_escaped_too),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
