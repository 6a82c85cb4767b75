/* Tests for common/link: share links ("shoal:<id>?name=...&size=...").
 *
 * Links are pasted by people and received from strangers, so the hostile
 * cases are the main ones: every malformed form must be refused with
 * SHOAL_EBADLINK, a sentence that names the problem (each case below checks
 * a piece of that sentence, so a refusal for the wrong reason fails), and a
 * zeroed output. Then every prefix of a valid link and every byte of it
 * replaced by a few interesting characters, and link_format with every
 * buffer size up to the one it needs. Every text handed to the parser is
 * copied into a heap block of exactly its length, without a NUL, so that
 * AddressSanitizer catches a read past the end.
 *
 * Templates are written with tokens that expand to real text IDs: $ID (the
 * content ID), $KEY (the tracker key), $PEER (the content ID's bytes written
 * as a key, so only the checksum kind is wrong), $IDX and $KEYX (one
 * character changed, so only the checksum is wrong).
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

#include "common/error.h"
#include "common/link.h"
#include "common/textid.h"
#include "tests/lib/testutil.h"
#include "tests/lib/bytes.h"

#define TEXT_CAP (2 * LINK_MAX_CHARS)

static uint8_t content_bytes[TEXTID_BYTES];
static uint8_t key_bytes[TEXTID_BYTES];
static char id_text[TEXTID_STRLEN];
static char key_text[TEXTID_STRLEN];
static char peer_text[TEXTID_STRLEN];
static char idx_text[TEXTID_STRLEN];
static char keyx_text[TEXTID_STRLEN];

/* The usual parameters after "shoal:$ID?". */
#define GOOD_PARAMS "name=report.pdf&size=1234&tracker=1.2.3.4:7070&key=$KEY"

/* Changes one character of a text ID to another alphabet character, which
 * breaks only the checksum. */
static void typo(const char *in, char out[TEXTID_STRLEN]) {
  memcpy(out, in, TEXTID_STRLEN);
  out[20] = out[20] == 'q' ? 'r' : 'q';
}

static int setup_ids(void **state) {
  (void)state;
  uint8_t tmp[TEXTID_BYTES];
  tu_fill(content_bytes, sizeof(content_bytes), 101);
  tu_fill(key_bytes, sizeof(key_bytes), 202);
  textid_encode(TEXTID_CONTENT, content_bytes, id_text);
  textid_encode(TEXTID_KEY, key_bytes, key_text);
  textid_encode(TEXTID_KEY, content_bytes, peer_text);
  typo(id_text, idx_text);
  typo(key_text, keyx_text);
  /* The fixtures must be wrong in exactly the intended way. */
  if (textid_decode(TEXTID_CONTENT, peer_text, TEXTID_CHARS, tmp) !=
          SHOAL_ECHECKSUM ||
      textid_decode(TEXTID_CONTENT, idx_text, TEXTID_CHARS, tmp) !=
          SHOAL_ECHECKSUM ||
      textid_decode(TEXTID_KEY, keyx_text, TEXTID_CHARS, tmp) !=
          SHOAL_ECHECKSUM) {
    return -1;
  }
  return 0;
}

/* Expands the tokens of tmpl into out (NUL-terminated). Returns the length. */
static size_t expand(const char *tmpl, char *out, size_t cap) {
  static const struct {
    const char *token;
    const char *text;
  } tokens[] = {
      /* Longer tokens first: "$IDX" must not be read as "$ID" + "X". */
      {"$IDX", idx_text}, {"$KEYX", keyx_text}, {"$ID", id_text},
      {"$KEY", key_text}, {"$PEER", peer_text},
  };
  size_t o = 0;
  while (*tmpl != '\0') {
    const char *sub = NULL;
    size_t tlen = 0;
    for (size_t t = 0; t < sizeof(tokens) / sizeof(tokens[0]); t++) {
      size_t n = strlen(tokens[t].token);
      if (strncmp(tmpl, tokens[t].token, n) == 0) {
        sub = tokens[t].text;
        tlen = n;
        break;
      }
    }
    const char *piece = sub != NULL ? sub : tmpl;
    size_t plen = sub != NULL ? strlen(sub) : 1;
    assert_true(o + plen < cap);
    memcpy(out + o, piece, plen);
    o += plen;
    tmpl += sub != NULL ? tlen : 1;
  }
  out[o] = '\0';
  return o;
}

/* Parses len bytes of text from an exact-size heap copy. */
static int parse_exact(const char *text, size_t len, struct share_link *l,
                       const char **why) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, text, len);
  int rc = link_parse(copy, len, l, why);
  free(copy);
  return rc;
}

static int parse_tracker_exact(const char *text, size_t len,
                               struct link_tracker *t, const char **why) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, text, len);
  int rc = link_parse_tracker(copy, len, t, why);
  free(copy);
  return rc;
}

/* Parses the expanded template and checks it is refused because of
 * `reason` (a piece of the *why sentence), with the output zeroed. */
static void expect_bad_len(const char *text, size_t len, const char *reason) {
  struct share_link l;
  const char *why = NULL;
  memset(&l, 0xa5, sizeof(l));
  int rc = parse_exact(text, len, &l, &why);
  if (rc != SHOAL_EBADLINK || why == NULL || strstr(why, reason) == NULL) {
    print_error("link \"%.*s\"\n  gave %d (%s), want SHOAL_EBADLINK (%s)\n",
                (int)len, text, rc, why ? why : "why not set", reason);
  }
  assert_int_equal(rc, SHOAL_EBADLINK);
  assert_non_null(why);
  assert_non_null(strstr(why, reason));
  assert_true(bytes_all_zero(&l, sizeof(l)));
}

static void expect_bad(const char *tmpl, const char *reason) {
  char text[TEXT_CAP];
  size_t len = expand(tmpl, text, sizeof(text));
  expect_bad_len(text, len, reason);
}

static void expect_good(const char *tmpl, struct share_link *l) {
  char text[TEXT_CAP];
  const char *why = "not cleared";
  size_t len = expand(tmpl, text, sizeof(text));
  int rc = parse_exact(text, len, l, &why);
  if (rc != 0) {
    print_error("link \"%s\"\n  gave %d (%s), want 0\n", text, rc,
                why ? why : "why not set");
  }
  assert_int_equal(rc, 0);
  assert_null(why);
}

static void expect_tracker_bad(const char *text, const char *reason) {
  struct link_tracker t;
  const char *why = NULL;
  memset(&t, 0xa5, sizeof(t));
  int rc = parse_tracker_exact(text, strlen(text), &t, &why);
  if (rc != SHOAL_EBADLINK || why == NULL || strstr(why, reason) == NULL) {
    print_error("tracker \"%s\" gave %d (%s), want SHOAL_EBADLINK (%s)\n", text,
                rc, why ? why : "why not set", reason);
  }
  assert_int_equal(rc, SHOAL_EBADLINK);
  assert_non_null(why);
  assert_non_null(strstr(why, reason));
  assert_true(bytes_all_zero(&t, sizeof(t)));
  /* The same value inside a link is refused for the same reason (unless
   * it holds characters that mean something else in a link). */
  if (strpbrk(text, "%&") == NULL) {
    char tmpl[TEXT_CAP];
    snprintf(tmpl, sizeof(tmpl), "shoal:$ID?name=a&size=1&tracker=%s&key=$KEY",
             text);
    expect_bad(tmpl, reason);
  }
}

/* A link with the given name, size and trackers ("host" strings and ports),
 * the fixture content ID and key. */
static void make_link(struct share_link *l, const char *name, uint64_t size,
                      const char *const *hosts, const uint16_t *ports,
                      size_t n) {
  memset(l, 0, sizeof(*l));
  memcpy(l->id, content_bytes, sizeof(l->id));
  assert_true(strlen(name) < sizeof(l->name));
  memcpy(l->name, name, strlen(name));
  l->size = size;
  assert_true(n <= LINK_MAX_TRACKERS);
  for (size_t i = 0; i < n; i++) {
    assert_true(strlen(hosts[i]) <= LINK_MAX_HOST);
    memcpy(l->trackers[i].host, hosts[i], strlen(hosts[i]));
    l->trackers[i].port = ports[i];
    memcpy(l->trackers[i].key, key_bytes, sizeof(l->trackers[i].key));
    l->trackers[i].has_key = 1;
  }
  l->tracker_count = n;
}

/* Formats l, checks the length and the terminator, parses it back (from an
 * exact-size copy) and checks every field came back. Returns the text in
 * out. */
static size_t round_trip(const struct share_link *l, char *out, size_t cap) {
  struct share_link back;
  const char *why = "not cleared";
  int n = link_format(l, out, cap);
  assert_true(n > 0);
  assert_int_equal((size_t)n, strlen(out));
  assert_true((size_t)n <= LINK_MAX_CHARS);
  memset(&back, 0xa5, sizeof(back));
  int rc = parse_exact(out, (size_t)n, &back, &why);
  if (rc != 0) {
    print_error("\"%s\" does not parse back: %s\n", out, why ? why : "?");
  }
  assert_int_equal(rc, 0);
  assert_null(why);
  assert_memory_equal(back.id, l->id, sizeof(l->id));
  assert_string_equal(back.name, l->name);
  assert_true(back.size == l->size);
  assert_int_equal(back.tracker_count, l->tracker_count);
  for (size_t i = 0; i < l->tracker_count; i++) {
    assert_string_equal(back.trackers[i].host, l->trackers[i].host);
    assert_int_equal(back.trackers[i].port, l->trackers[i].port);
    assert_int_equal(back.trackers[i].tier, l->trackers[i].tier);
    assert_memory_equal(back.trackers[i].key, l->trackers[i].key,
                        sizeof(l->trackers[i].key));
  }
  /* Unused bytes are zero, so the whole struct compares equal too. */
  assert_memory_equal(&back, l, sizeof(back));
  return (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Round trips */

static void link_round_trip_ipv4_tracker(void **state) {
  (void)state;
  const char *hosts[] = {"192.0.2.7"};
  const uint16_t ports[] = {7070};
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "report.pdf", 1234, hosts, ports, 1);
  round_trip(&l, text, sizeof(text));
  char want[TEXT_CAP];
  expand("shoal:$ID?name=report.pdf&size=1234&tracker=192.0.2.7:7070&key=$KEY",
         want, sizeof(want));
  assert_string_equal(text, want);
}

static void link_round_trip_ipv6_tracker_is_bracketed(void **state) {
  (void)state;
  const char *hosts[] = {"::1", "2001:db8::42", "::ffff:192.0.2.1"};
  const uint16_t ports[] = {7070, 1, 65535};
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "a", 1, hosts, ports, 3);
  round_trip(&l, text, sizeof(text));
  assert_non_null(strstr(text, "&tracker=[::1]:7070&"));
  assert_non_null(strstr(text, "&tracker=[2001:db8::42]:1&"));
  assert_non_null(strstr(text, "&tracker=[::ffff:192.0.2.1]:65535&"));
}

static void link_round_trip_host_name_tracker(void **state) {
  (void)state;
  char longest[LINK_MAX_HOST + 1];
  /* 253 characters: four labels of 62 and one of 1, with dots. */
  memset(longest, 'a', LINK_MAX_HOST);
  longest[62] = longest[125] = longest[188] = longest[251] = '.';
  longest[LINK_MAX_HOST] = '\0';
  char label63[64 + 4];
  memset(label63, 'b', 63);
  memcpy(label63 + 63, ".io", 4);
  const char *hosts[] = {"tracker.example.org",
                         "localhost",
                         "x-1.y2.Z3",
                         longest,
                         label63,
                         "1.2.3.4a"};
  const uint16_t ports[] = {7070, 80, 443, 9, 10, 11};
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "a", 1, hosts, ports, 6);
  round_trip(&l, text, sizeof(text));
  assert_non_null(strstr(text, "&tracker=tracker.example.org:7070&"));
}

static void link_round_trip_with_max_trackers_keeps_their_order(void **state) {
  (void)state;
  const char *hosts[LINK_MAX_TRACKERS] = {
      "t1.example", "10.0.0.1",  "::1", "t4.example",
      "fe80::1",    "127.0.0.1", "t7",  "2001:db8::8"};
  const uint16_t ports[LINK_MAX_TRACKERS] = {1, 2, 3, 4, 5, 6, 7, 8};
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "many.bin", 99, hosts, ports, LINK_MAX_TRACKERS);
  round_trip(&l, text, sizeof(text));
}

/* Checks the text between "name=" and the next '&' holds only unreserved
 * characters and %XX escapes. */
static void assert_name_is_percent_encoded(const char *text) {
  const char *p = strstr(text, "?name=");
  assert_non_null(p);
  p += 6;
  const char *end = strchr(p, '&');
  assert_non_null(end);
  for (; p < end; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '%') {
      assert_true(end - p >= 3);
      assert_non_null(strchr("0123456789ABCDEF", p[1]));
      assert_non_null(strchr("0123456789ABCDEF", p[2]));
      p += 2;
      continue;
    }
    assert_true((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                c == '~');
  }
}

static void link_round_trip_names_that_need_percent_encoding(void **state) {
  (void)state;
  char longest[MANIFEST_MAX_SEGMENT + 1];
  memset(longest, 'n', MANIFEST_MAX_SEGMENT);
  longest[MANIFEST_MAX_SEGMENT] = '\0';
  /* 85 three-byte characters: 255 bytes, 765 characters once encoded. */
  char wide[MANIFEST_MAX_SEGMENT + 1];
  for (size_t i = 0; i < 85; i++) {
    memcpy(wide + 3 * i, "\xe2\x82\xac", 3); /* U+20AC EURO SIGN */
  }
  wide[255] = '\0';
  const char *names[] = {
      "my holiday photos",
      "r\xc3\xa9sum\xc3\xa9 \xe2\x80\x93 2024.pdf", /* résumé – 2024.pdf */
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",       /* 日本語 */
      "\xf0\x9f\x90\x9f fish",                      /* U+1F41F, 4 bytes */
      "100%.txt",
      "%41%zz",
      "a&b=c+d.txt",
      "what?#frag",
      "[x]:@!$'()*,;",
      "~-._",
      "..hidden",
      "...",
      ".profile",
      "space at end ",
      longest,
      wide,
  };
  const char *hosts[] = {"::1"};
  const uint16_t ports[] = {7070};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    struct share_link l;
    char text[TEXT_CAP];
    make_link(&l, names[i], 5, hosts, ports, 1);
    round_trip(&l, text, sizeof(text));
    assert_name_is_percent_encoded(text);
  }
  /* Spot checks of the encoding itself (upper-case hex, '+' not a space). */
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "a b+c%d&e=f", 5, hosts, ports, 1);
  round_trip(&l, text, sizeof(text));
  assert_non_null(strstr(text, "?name=a%20b%2Bc%25d%26e%3Df&size="));
  make_link(&l, "r\xc3\xa9", 5, hosts, ports, 1);
  round_trip(&l, text, sizeof(text));
  assert_non_null(strstr(text, "?name=r%C3%A9&size="));
}

static void link_round_trip_size_zero_and_uint64_max(void **state) {
  (void)state;
  const char *hosts[] = {"h"};
  const uint16_t ports[] = {1};
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "empty", 0, hosts, ports, 1);
  round_trip(&l, text, sizeof(text));
  assert_non_null(strstr(text, "&size=0&"));
  make_link(&l, "huge", UINT64_MAX, hosts, ports, 1);
  round_trip(&l, text, sizeof(text));
  assert_non_null(strstr(text, "&size=18446744073709551615&"));
}

/* ------------------------------------------------------------------------ */
/* Accepted variations */

static void link_parameters_in_any_order_give_the_same_link(void **state) {
  (void)state;
  static const char *const params[4] = {"name=r%C3%A9sum%C3%A9.pdf", "size=77",
                                        "tracker=[::1]:7070", "key=$KEY"};
  struct share_link first;
  int have_first = 0;
  /* All 24 orders. */
  for (int a = 0; a < 4; a++) {
    for (int b = 0; b < 4; b++) {
      for (int c = 0; c < 4; c++) {
        int d = 6 - a - b - c;
        if (a == b || a == c || b == c || d < 0 || d > 3 || d == a || d == b ||
            d == c) {
          continue;
        }
        char tmpl[TEXT_CAP];
        struct share_link l;
        snprintf(tmpl, sizeof(tmpl), "shoal:$ID?%s&%s&%s&%s", params[a],
                 params[b], params[c], params[d]);
        expect_good(tmpl, &l);
        if (!have_first) {
          first = l;
          have_first = 1;
          assert_string_equal(l.name, "r\xc3\xa9sum\xc3\xa9.pdf");
          assert_true(l.size == 77);
          assert_string_equal(l.trackers[0].host, "::1");
        }
        assert_memory_equal(&l, &first, sizeof(l));
      }
    }
  }
  /* Trackers keep their order even when other parameters sit between. */
  struct share_link l;
  expect_good("shoal:$ID?tracker=b:2&name=n&tracker=a:1&size=0&key=$KEY"
              "&tracker=c:3",
              &l);
  assert_int_equal(l.tracker_count, 3);
  assert_string_equal(l.trackers[0].host, "b");
  assert_string_equal(l.trackers[1].host, "a");
  assert_string_equal(l.trackers[2].host, "c");
  assert_int_equal(l.trackers[2].port, 3);
}

static void link_scheme_and_ids_are_case_insensitive(void **state) {
  (void)state;
  struct share_link want;
  struct share_link l;
  expect_good("shoal:$ID?" GOOD_PARAMS, &want);
  expect_good("SHOAL:$ID?" GOOD_PARAMS, &l);
  assert_memory_equal(&l, &want, sizeof(l));
  expect_good("ShOaL:$ID?" GOOD_PARAMS, &l);
  assert_memory_equal(&l, &want, sizeof(l));

  /* Text IDs in upper case, as someone may retype them. */
  char tmpl[TEXT_CAP];
  char up_id[TEXTID_STRLEN];
  char up_key[TEXTID_STRLEN];
  for (size_t i = 0; i < TEXTID_STRLEN; i++) {
    up_id[i] =
        (char)(id_text[i] >= 'a' && id_text[i] <= 'z' ? id_text[i] - 'a' + 'A'
                                                      : id_text[i]);
    up_key[i] = (char)(key_text[i] >= 'a' && key_text[i] <= 'z'
                           ? key_text[i] - 'a' + 'A'
                           : key_text[i]);
  }
  snprintf(tmpl, sizeof(tmpl),
           "shoal:%s?name=report.pdf&size=1234&tracker=1.2.3.4:7070&key=%s",
           up_id, up_key);
  expect_good(tmpl, &l);
  assert_memory_equal(&l, &want, sizeof(l));
}

static void link_extension_parameters_are_ignored(void **state) {
  (void)state;
  struct share_link want;
  struct share_link l;
  expect_good("shoal:$ID?" GOOD_PARAMS, &want);
  expect_good("shoal:$ID?x-foo=bar&" GOOD_PARAMS, &l);
  assert_memory_equal(&l, &want, sizeof(l));
  expect_good("shoal:$ID?" GOOD_PARAMS "&x-foo=bar&x-foo=again&x-=&x-e=", &l);
  assert_memory_equal(&l, &want, sizeof(l));
  expect_good("shoal:$ID?name=report.pdf&x-name=other&size=1234"
              "&x-tracker=9.9.9.9:9&tracker=1.2.3.4:7070&key=$KEY",
              &l);
  assert_memory_equal(&l, &want, sizeof(l));
  /* Parameter names are case-sensitive: "X-" is not an extension. */
  expect_bad("shoal:$ID?X-foo=bar&" GOOD_PARAMS, "unknown parameter");
}

static void link_parse_accepts_a_null_why(void **state) {
  (void)state;
  struct share_link l;
  char text[TEXT_CAP];
  size_t len = expand("shoal:$ID?" GOOD_PARAMS, text, sizeof(text));
  assert_int_equal(parse_exact(text, len, &l, NULL), 0);
  len = expand("shoal:$ID?name=a", text, sizeof(text));
  memset(&l, 0xa5, sizeof(l));
  assert_int_equal(parse_exact(text, len, &l, NULL), SHOAL_EBADLINK);
  assert_true(bytes_all_zero(&l, sizeof(l)));
}

/* ------------------------------------------------------------------------ */
/* Refused links */

static void link_refuses_wrong_scheme(void **state) {
  (void)state;
  const char *reason = "does not start with 'shoal:'";
  expect_bad("http:$ID?" GOOD_PARAMS, reason);
  expect_bad("shoal$ID?" GOOD_PARAMS, reason);
  expect_bad("shoal//$ID?" GOOD_PARAMS, reason);
  expect_bad(" shoal:$ID?" GOOD_PARAMS, reason);
  expect_bad("magnet:?xt=urn:btih:00", reason);
  expect_bad("shoa", reason);
  expect_bad("", reason);
  expect_bad_len("sho\0al:", 7, reason);
}

static void link_refuses_bad_content_id(void **state) {
  (void)state;
  expect_bad("shoal:?" GOOD_PARAMS, "content ID is missing");
  expect_bad("shoal:", "content ID is missing");
  char tmpl[TEXT_CAP];
  /* One character short and one too many. */
  snprintf(tmpl, sizeof(tmpl), "shoal:%.55s?" GOOD_PARAMS, id_text);
  expect_bad(tmpl, "content ID is not 56 base32 characters");
  expect_bad("shoal:$IDa?" GOOD_PARAMS, "content ID is not 56");
  expect_bad("shoal:$ID$ID?" GOOD_PARAMS, "content ID is not 56");
  /* Characters outside the alphabet at one position. */
  static const char bad_chars[] = "0189=&%/ -";
  for (size_t i = 0; i < sizeof(bad_chars) - 1; i++) {
    snprintf(tmpl, sizeof(tmpl), "shoal:%.30s%c%s?" GOOD_PARAMS, id_text,
             bad_chars[i], id_text + 31);
    expect_bad(tmpl, "content ID is not 56 base32 characters");
  }
  expect_bad("shoal:$IDX?" GOOD_PARAMS, "content ID checksum does not match");
  /* A peer or tracker key pasted where a content ID belongs. */
  expect_bad("shoal:$PEER?" GOOD_PARAMS, "not a content ID");
  expect_bad("shoal:$KEY?" GOOD_PARAMS, "content ID checksum does not match");
}

static void link_refuses_bad_parameter_syntax(void **state) {
  (void)state;
  expect_bad("shoal:$ID", "link has no parameters");
  expect_bad("shoal:$ID&" GOOD_PARAMS, "content ID is not 56");
  expect_bad("shoal:$ID?", "empty parameter");
  expect_bad("shoal:$ID?&" GOOD_PARAMS, "empty parameter");
  expect_bad("shoal:$ID?name=a&&size=1&tracker=h:1&key=$KEY",
             "empty parameter");
  expect_bad("shoal:$ID?" GOOD_PARAMS "&", "empty parameter");
  expect_bad("shoal:$ID?name&size=1&tracker=h:1&key=$KEY",
             "not of the form key=value");
  expect_bad("shoal:$ID?" GOOD_PARAMS "&x-flag", "not of the form key=value");
  expect_bad("shoal:$ID?=value&" GOOD_PARAMS, "not of the form key=value");
  expect_bad("shoal:$ID?" GOOD_PARAMS "&=", "not of the form key=value");
  expect_bad("shoal:$ID?" GOOD_PARAMS "&peer=1.2.3.4:1", "unknown parameter");
  expect_bad("shoal:$ID?Name=a&size=1&tracker=h:1&key=$KEY",
             "unknown parameter");
  expect_bad("shoal:$ID?nam%65=a&size=1&tracker=h:1&key=$KEY",
             "unknown parameter");
  expect_bad("shoal:$ID?names=a&size=1&tracker=h:1&key=$KEY",
             "unknown parameter");
  expect_bad("shoal:$ID?x=a&" GOOD_PARAMS, "unknown parameter");
}

static void link_refuses_missing_or_repeated_name(void **state) {
  (void)state;
  expect_bad("shoal:$ID?size=1&tracker=h:1&key=$KEY", "name is missing");
  expect_bad("shoal:$ID?name=a&name=a&size=1&tracker=h:1&key=$KEY",
             "name is given twice");
  expect_bad("shoal:$ID?" GOOD_PARAMS "&name=b", "name is given twice");
}

static void link_refuses_unsafe_names(void **state) {
  (void)state;
  static const char *const names[] = {
      "",            /* empty */
      ".",           /* the current folder */
      "..",          /* the parent folder */
      "%2E",         /* "." written as an escape */
      "%2e%2E",      /* ".." written as escapes */
      "a%2Fb",       /* a '/' */
      "%2Fetc",      /* an absolute path */
      "..%2F..%2Fx", /* traversal */
      "a/b",         /* a raw '/' */
      "a%00b",       /* a NUL would cut the name */
      "%00",
      "a%01b", /* control characters */
      "a%0A",
      "%1F",
      "%7F",
      "a%5Cb",  /* a backslash */
      "%C0%AF", /* overlong '/' */
      "%C3",    /* truncated UTF-8 */
      "%E2%82",
      "%80",          /* a lone continuation byte */
      "%ED%A0%80",    /* a UTF-16 surrogate */
      "%F4%90%80%80", /* above U+10FFFF */
      "%FF",
  };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char tmpl[TEXT_CAP];
    snprintf(tmpl, sizeof(tmpl),
             "shoal:$ID?name=%s&size=1&tracker=h:1"
             "&key=$KEY",
             names[i]);
    expect_bad(tmpl, "name is not a safe file name");
  }
  /* 256 bytes is one over the longest segment; 255 is accepted. */
  char tmpl[TEXT_CAP];
  char name[MANIFEST_MAX_SEGMENT + 2];
  struct share_link l;
  memset(name, 'n', sizeof(name) - 1);
  name[MANIFEST_MAX_SEGMENT + 1] = '\0';
  snprintf(tmpl, sizeof(tmpl), "shoal:$ID?name=%s&size=1&tracker=h:1&key=$KEY",
           name);
  expect_bad(tmpl, "name is not a safe file name");
  name[MANIFEST_MAX_SEGMENT] = '\0';
  snprintf(tmpl, sizeof(tmpl), "shoal:$ID?name=%s&size=1&tracker=h:1&key=$KEY",
           name);
  expect_good(tmpl, &l);
  assert_int_equal(strlen(l.name), MANIFEST_MAX_SEGMENT);
}

static void link_refuses_bad_percent_escapes(void **state) {
  (void)state;
  const char *reason = "bad percent-encoding";
  expect_bad("shoal:$ID?name=a%4&size=1&tracker=h:1&key=$KEY", reason);
  expect_bad("shoal:$ID?name=a%zz&size=1&tracker=h:1&key=$KEY", reason);
  expect_bad("shoal:$ID?name=a%4g&size=1&tracker=h:1&key=$KEY", reason);
  expect_bad("shoal:$ID?name=a%g4&size=1&tracker=h:1&key=$KEY", reason);
  expect_bad("shoal:$ID?name=a%&size=1&tracker=h:1&key=$KEY", reason);
  expect_bad("shoal:$ID?name=%%41&size=1&tracker=h:1&key=$KEY", reason);
  expect_bad("shoal:$ID?size=1&tracker=h:1&key=$KEY&name=a%", reason);
  expect_bad("shoal:$ID?size=1&tracker=h:1&key=$KEY&name=a%4", reason);
  expect_bad("shoal:$ID?" GOOD_PARAMS "&x-ext=%zz", reason);
  /* Escapes in any value are decoded, upper or lower case hex. */
  struct share_link l;
  expect_good("shoal:$ID?name=%4a%4B&size=%31%32&tracker=h:1&key=$KEY", &l);
  assert_string_equal(l.name, "JK");
  assert_true(l.size == 12);
}

static void link_refuses_bad_size(void **state) {
  (void)state;
  const char *reason = "size is not a decimal number";
  static const char *const sizes[] = {
      "",
      "-5",
      "-0",
      "+5",
      "01",
      "00",
      "0x10",
      "10h",
      "1e3",
      "1.5",
      " 5",
      "5 ",
      "%205",
      "1,000",
      "18446744073709551616",
      "18446744073709551620",
      "99999999999999999999",
      "184467440737095516150",
      "000000000000000000001",
  };
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    char tmpl[TEXT_CAP];
    snprintf(tmpl, sizeof(tmpl),
             "shoal:$ID?name=a&size=%s&tracker=h:1&key=$KEY", sizes[i]);
    expect_bad(tmpl, reason);
  }
  expect_bad("shoal:$ID?name=a&tracker=h:1&key=$KEY", "size is missing");
  expect_bad("shoal:$ID?name=a&size=1&size=1&tracker=h:1&key=$KEY",
             "size is given twice");
  /* The edges that are accepted. */
  struct share_link l;
  expect_good("shoal:$ID?name=a&size=0&tracker=h:1&key=$KEY", &l);
  assert_true(l.size == 0);
  expect_good("shoal:$ID?name=a&size=18446744073709551615&tracker=h:1"
              "&key=$KEY",
              &l);
  assert_true(l.size == UINT64_MAX);
  expect_good("shoal:$ID?name=a&size=18446744073709551609&tracker=h:1"
              "&key=$KEY",
              &l);
  assert_true(l.size == UINT64_MAX - 6);
}

static void link_refuses_bad_tracker(void **state) {
  (void)state;
  expect_bad("shoal:$ID?name=a&size=1&key=$KEY", "no tracker address");
  expect_bad("shoal:$ID?name=a&size=1&tracker=&key=$KEY",
             "needs a port: host:port");
  expect_tracker_bad("tracker.example.org", "needs a port: host:port");
  expect_tracker_bad("1.2.3.4", "needs a port: host:port");
  expect_tracker_bad("h:", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:0", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:00000", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:65536", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:99999", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:07x", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:-1", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:+1", "port must be a number from 1 to 65535");
  expect_tracker_bad("h: 1", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:100000", "port must be a number from 1 to 65535");
  expect_tracker_bad("h:000001", "port must be a number from 1 to 65535");
  expect_tracker_bad("[::1]:0", "port must be a number from 1 to 65535");
  expect_tracker_bad("[::1]:", "port must be a number from 1 to 65535");
  expect_tracker_bad(":7070", "tracker host is empty");
  expect_tracker_bad("1.2.3.256:7070", "IPv4 address is not valid");
  expect_tracker_bad("1.2.3:7070", "IPv4 address is not valid");
  expect_tracker_bad("1.2.3.4.5:7070", "IPv4 address is not valid");
  expect_tracker_bad("01.2.3.4:7070", "IPv4 address is not valid");
  expect_tracker_bad("1..3.4:7070", "IPv4 address is not valid");
  expect_tracker_bad("1234:7070", "IPv4 address is not valid");
  expect_tracker_bad("::1:7070", "IPv6 address must be in brackets");
  expect_tracker_bad("2001:db8::1:7070", "must be in brackets");
  expect_tracker_bad("h:1:2", "must be in brackets");
  expect_tracker_bad("[::1", "'[' without ']'");
  expect_tracker_bad("[::1:7070", "'[' without ']'");
  expect_tracker_bad("[", "'[' without ']'");
  expect_tracker_bad("[::1]7070", "needs a port: [address]:port");
  expect_tracker_bad("[::1]", "needs a port: [address]:port");
  expect_tracker_bad("[]:7070", "IPv6 address is not valid");
  expect_tracker_bad("[zz::1]:1", "IPv6 address is not valid");
  expect_tracker_bad("[1.2.3.4]:1", "IPv6 address is not valid");
  expect_tracker_bad("[host]:1", "IPv6 address is not valid");
  expect_tracker_bad("[::1::2]:1", "IPv6 address is not valid");
  /* A zone ID names an interface of one machine, and libuv's parser would
   * take any bytes after its '%' (which then could not be written back). */
  expect_tracker_bad("[fe80::1%eth0]:1", "IPv6 address is not valid");
  expect_bad("shoal:$ID?name=a&size=1&tracker=[fe80::1%25eth0]:1&key=$KEY",
             "IPv6 address is not valid");
  expect_bad("shoal:$ID?name=a&size=1&tracker=[::1%00x]:1&key=$KEY",
             "IPv6 address is not valid");
  expect_bad("shoal:$ID?name=a&size=1&tracker=[::1%25%26x]:1&key=$KEY",
             "IPv6 address is not valid");
  /* Found by fuzz_link: a NUL inside the brackets hid the bytes after it
   * from uv_inet_pton, and they were kept in the host. */
  {
    static const char nul_in_v6[] = "[fe80::0\0\0:707]:7072";
    struct link_tracker t;
    const char *why = NULL;
    memset(&t, 0xa5, sizeof(t));
    assert_int_equal(
        parse_tracker_exact(nul_in_v6, sizeof(nul_in_v6) - 1, &t, &why),
        SHOAL_EBADLINK);
    assert_non_null(why);
    assert_non_null(strstr(why, "IPv6 address is not valid"));
    assert_true(bytes_all_zero(&t, sizeof(t)));
  }
  expect_tracker_bad("bad_host:1", "not a valid host name");
  expect_tracker_bad("-lead.example:1", "not a valid host name");
  expect_tracker_bad("a.-lead.example:1", "not a valid host name");
  expect_tracker_bad("trail-.example:1", "not a valid host name");
  expect_tracker_bad("a..b:1", "not a valid host name");
  expect_tracker_bad(".a:1", "not a valid host name");
  expect_tracker_bad("a.:1", "not a valid host name");
  expect_tracker_bad("h\xc3\xa9:1", "not a valid host name");
  expect_tracker_bad("a b:1", "not a valid host name");
  expect_tracker_bad("a]:1", "not a valid host name");
  expect_bad("shoal:$ID?name=a&size=1&tracker=a%00b:1&key=$KEY",
             "not a valid host name");

  /* A 64-character label, and a 254-character name. */
  char host[LINK_MAX_HOST + 16];
  memset(host, 'a', 64);
  memcpy(host + 64, ".example:1", 11);
  expect_tracker_bad(host, "not a valid host name");
  memset(host, 'a', 254);
  host[63] = host[127] = host[191] = '.';
  memcpy(host + 254, ":1", 3);
  expect_tracker_bad(host, "tracker host is empty or too long");
}

static void link_refuses_more_than_max_trackers(void **state) {
  (void)state;
  char tmpl[TEXT_CAP];
  struct share_link l;
  size_t n =
      (size_t)snprintf(tmpl, sizeof(tmpl), "shoal:$ID?name=a&size=1&key=$KEY");
  for (unsigned i = 1; i <= LINK_MAX_TRACKERS + 1; i++) {
    if (i == LINK_MAX_TRACKERS + 1) {
      expect_good(tmpl, &l);
      assert_int_equal(l.tracker_count, LINK_MAX_TRACKERS);
      assert_string_equal(l.trackers[7].host, "t8");
      assert_int_equal(l.trackers[7].port, 8);
    }
    n += (size_t)snprintf(tmpl + n, sizeof(tmpl) - n, "&tracker=t%u:%u", i, i);
    assert_true(n < sizeof(tmpl));
  }
  expect_bad(tmpl, "too many trackers (at most 8)");
}

static void link_refuses_bad_tracker_key(void **state) {
  (void)state;
  expect_bad("shoal:$ID?name=a&size=1&tracker=h:1", "tracker key is missing");
  expect_bad("shoal:$ID?name=a&size=1&tracker=h:1&key=$KEY&key=$KEY",
             "key is given twice");
  expect_bad("shoal:$ID?name=a&size=1&tracker=h:1&key=",
             "tracker key is not a 56-character key");
  expect_bad("shoal:$ID?name=a&size=1&tracker=h:1&key=$KEYa",
             "tracker key is not a 56-character key");
  expect_bad("shoal:$ID?name=a&size=1&tracker=h:1&key=0$KEY",
             "tracker key is not a 56-character key");
  char tmpl[TEXT_CAP];
  snprintf(tmpl, sizeof(tmpl), "shoal:$ID?name=a&size=1&tracker=h:1&key=%.55s1",
           key_text);
  expect_bad(tmpl, "tracker key is not a 56-character key");
  expect_bad("shoal:$ID?name=a&size=1&tracker=h:1&key=$KEYX",
             "tracker key checksum does not match");
  /* A content ID where the key belongs: right alphabet, wrong kind. */
  expect_bad("shoal:$ID?name=a&size=1&tracker=h:1&key=$ID",
             "tracker key checksum does not match");
}

static void link_refuses_text_longer_than_max_chars(void **state) {
  (void)state;
  char *text = malloc(LINK_MAX_CHARS + 2);
  assert_non_null(text);
  size_t base =
      expand("shoal:$ID?" GOOD_PARAMS "&x-pad=", text, LINK_MAX_CHARS + 2);
  /* Pad an extension value to exactly LINK_MAX_CHARS: accepted. */
  memset(text + base, 'p', LINK_MAX_CHARS - base);
  struct share_link l;
  const char *why = "not cleared";
  assert_int_equal(parse_exact(text, LINK_MAX_CHARS, &l, &why), 0);
  assert_null(why);
  assert_string_equal(l.name, "report.pdf");
  /* One more character: refused before anything else is looked at. */
  text[LINK_MAX_CHARS] = 'p';
  expect_bad_len(text, LINK_MAX_CHARS + 1, "longer than 4096 characters");
  /* Even a huge length is refused without reading the text. */
  why = NULL;
  memset(&l, 0xa5, sizeof(l));
  assert_int_equal(link_parse(text, SIZE_MAX, &l, &why), SHOAL_EBADLINK);
  assert_non_null(why);
  assert_non_null(strstr(why, "longer than 4096"));
  assert_true(bytes_all_zero(&l, sizeof(l)));
  free(text);
}

/* ------------------------------------------------------------------------ */
/* link_parse_tracker directly */

static void link_parse_tracker_accepts_the_three_forms(void **state) {
  (void)state;
  static const struct {
    const char *text;
    const char *host;
    uint16_t port;
  } cases[] = {
      {"1.2.3.4:7070", "1.2.3.4", 7070},
      {"0.0.0.0:1", "0.0.0.0", 1},
      {"255.255.255.255:65535", "255.255.255.255", 65535},
      {"[::1]:7070", "::1", 7070},
      {"[2001:DB8::a]:80", "2001:DB8::a", 80},
      {"[::ffff:1.2.3.4]:9", "::ffff:1.2.3.4", 9},
      {"tracker.example.org:7070", "tracker.example.org", 7070},
      {"a:1", "a", 1},
      {"A-b.C-9:65535", "A-b.C-9", 65535},
      {"123.example:1", "123.example", 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct link_tracker t;
    const char *why = NULL;
    memset(&t, 0xa5, sizeof(t));
    int rc =
        parse_tracker_exact(cases[i].text, strlen(cases[i].text), &t, &why);
    if (rc != 0) {
      print_error("\"%s\": %s\n", cases[i].text, why ? why : "?");
    }
    assert_int_equal(rc, 0);
    assert_string_equal(t.host, cases[i].host);
    assert_int_equal(t.port, cases[i].port);
    /* Bytes after the host are zero: the struct compares with memcmp. */
    size_t n = strlen(t.host);
    assert_true(bytes_all_zero(t.host + n, sizeof(t.host) - n));
  }
}

static void link_parse_tracker_reads_only_len_bytes(void **state) {
  (void)state;
  struct link_tracker t;
  const char *why = NULL;
  assert_int_equal(parse_tracker_exact("1.2.3.4:7070999", 12, &t, &why), 0);
  assert_int_equal(t.port, 7070);
  assert_int_equal(parse_tracker_exact("[::1]:80]", 8, &t, &why), 0);
  assert_int_equal(t.port, 80);
  /* Every prefix of a bracketed tracker: only those that end in the port
   * parse. */
  const char *full = "[2001:db8::1]:7070";
  size_t len = strlen(full);
  for (size_t n = 0; n <= len; n++) {
    why = NULL;
    memset(&t, 0xa5, sizeof(t));
    int rc = parse_tracker_exact(full, n, &t, &why);
    if (n >= len - 3) {
      assert_int_equal(rc, 0);
      assert_string_equal(t.host, "2001:db8::1");
    } else {
      assert_int_equal(rc, SHOAL_EBADLINK);
      assert_non_null(why);
      assert_true(bytes_all_zero(&t, sizeof(t)));
    }
  }
}

/* ------------------------------------------------------------------------ */
/* link_format */

static void link_format_needs_room_for_every_byte_and_the_nul(void **state) {
  (void)state;
  const char *hosts[] = {"::1", "tracker.example.org", "10.1.2.3"};
  const uint16_t ports[] = {7070, 65535, 1};
  struct share_link l;
  char full[TEXT_CAP];
  /* Escapes throughout the name so that a 3-character escape meets the end
   * of the buffer at every offset. */
  make_link(&l, "\xc3\xa9 a\xc3\xa9&b%", UINT64_MAX, hosts, ports, 3);
  size_t need = round_trip(&l, full, sizeof(full)) + 1;
  for (size_t cap = 0; cap <= need + 1; cap++) {
    /* An exact-size heap block: a write past cap is caught by ASan, and
     * the guard byte after it is checked without it. */
    char *out = malloc(cap + 1);
    assert_non_null(out);
    memset(out, '#', cap + 1);
    int rc = link_format(&l, out, cap);
    if (cap < need) {
      assert_int_equal(rc, SHOAL_ETOOBIG);
      if (cap > 0) {
        assert_int_equal(out[0], '\0');
      } else {
        assert_int_equal(out[0], '#');
      }
    } else {
      assert_int_equal(rc, (int)(need - 1));
      assert_string_equal(out, full);
    }
    assert_int_equal(out[cap], '#');
    free(out);
  }
  /* The same with a block of exactly cap bytes and no guard. */
  for (size_t cap = 1; cap <= need; cap++) {
    char *out = malloc(cap);
    assert_non_null(out);
    int rc = link_format(&l, out, cap);
    assert_int_equal(rc, cap < need ? SHOAL_ETOOBIG : (int)(need - 1));
    free(out);
  }
}

static void expect_format_einval(const struct share_link *l) {
  char out[TEXT_CAP];
  memset(out, '#', sizeof(out));
  assert_int_equal(link_format(l, out, sizeof(out)), SHOAL_EINVAL);
  assert_int_equal(out[0], '\0');
}

static void link_format_refuses_links_that_would_not_parse_back(void **state) {
  (void)state;
  const char *hosts[LINK_MAX_TRACKERS + 1] = {"a", "b", "c", "d", "e",
                                              "f", "g", "h", "i"};
  const uint16_t ports[LINK_MAX_TRACKERS + 1] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  struct share_link l;

  make_link(&l, "a", 1, hosts, ports, 0);
  expect_format_einval(&l);
  make_link(&l, "a", 1, hosts, ports, LINK_MAX_TRACKERS);
  l.tracker_count = LINK_MAX_TRACKERS + 1;
  expect_format_einval(&l);
  l.tracker_count = SIZE_MAX;
  expect_format_einval(&l);

  static const char *const bad_names[] = {
      "",      ".",    "..",       "a/b",  "/a",           "a\\b",
      "a\x01", "\x7f", "\xc0\xaf", "\xff", "\xed\xa0\x80",
  };
  for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
    make_link(&l, bad_names[i], 1, hosts, ports, 1);
    expect_format_einval(&l);
  }
  /* A name that fills the array without a terminator. */
  make_link(&l, "a", 1, hosts, ports, 1);
  memset(l.name, 'n', sizeof(l.name));
  expect_format_einval(&l);

  static const struct {
    const char *host;
    uint16_t port;
  } bad_trackers[] = {
      {"h", 0},   {"", 1},        {"bad_host", 1},     {"1.2.3.256", 1},
      {"-a", 1},  {"zz::1", 1},   {"fe80::1%eth0", 1}, {"[::1]", 1},
      {"a b", 1}, {"h&key=x", 1},
  };
  for (size_t i = 0; i < sizeof(bad_trackers) / sizeof(bad_trackers[0]); i++) {
    const char *h[2] = {"good.example", bad_trackers[i].host};
    const uint16_t p[2] = {1, bad_trackers[i].port};
    make_link(&l, "a", 1, h, p, 2);
    expect_format_einval(&l);
  }
  /* EINVAL is reported even when the buffer is also too small. */
  make_link(&l, "", 1, hosts, ports, 1);
  char small[4];
  assert_int_equal(link_format(&l, small, sizeof(small)), SHOAL_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Tiers */

static void check_prefixes(const char *tmpl, unsigned valid_cuts);

/* Sets tracker i of l: host, port, tier (0-based) and key. */
static void set_tracker(struct share_link *l, size_t i, const char *host,
                        uint16_t port, uint8_t tier, const uint8_t *key) {
  memset(&l->trackers[i], 0, sizeof(l->trackers[i]));
  memcpy(l->trackers[i].host, host, strlen(host));
  l->trackers[i].port = port;
  l->trackers[i].tier = tier;
  memcpy(l->trackers[i].key, key, TEXTID_BYTES);
  l->trackers[i].has_key = 1;
  if (i >= l->tracker_count) {
    l->tracker_count = i + 1;
  }
}

static void link_round_trip_tiers_each_tracker_with_its_key(void **state) {
  (void)state;
  uint8_t other[TEXTID_BYTES];
  char text[TEXT_CAP];
  char want[TEXT_CAP];
  struct share_link l;
  tu_fill(other, sizeof(other), 303);
  const char *hosts[] = {"a.example"};
  const uint16_t ports[] = {7070};
  make_link(&l, "x", 1, hosts, ports, 1);
  set_tracker(&l, 1, "2001:db8::1", 7071, 0, other);
  set_tracker(&l, 2, "192.0.2.1", 7072, 1, other);
  set_tracker(&l, 3, "b.example", 7073, 2, key_bytes);
  round_trip(&l, text, sizeof(text));
  char otext[TEXTID_STRLEN];
  textid_encode(TEXTID_KEY, other, otext);
  snprintf(want, sizeof(want),
           "shoal:%s?name=x&size=1&tier1=a.example:7070@%s"
           "&tier1=[2001:db8::1]:7071@%s&tier2=192.0.2.1:7072@%s"
           "&tier3=b.example:7073@%s",
           id_text, key_text, otext, otext, key_text);
  assert_string_equal(text, want);
  assert_int_equal(link_tier_count(l.trackers, l.tracker_count), 3);
}

static void link_one_tier_of_one_key_is_written_in_the_first_form(void **st) {
  (void)st;
  const char *hosts[] = {"a.example", "b.example"};
  const uint16_t ports[] = {1, 2};
  struct share_link l;
  struct share_link tiered;
  char text[TEXT_CAP];
  char want[TEXT_CAP];
  make_link(&l, "x", 1, hosts, ports, 2);
  round_trip(&l, text, sizeof(text));
  snprintf(want, sizeof(want),
           "shoal:%s?name=x&size=1&tracker=a.example:1&tracker=b.example:2"
           "&key=%s",
           id_text, key_text);
  assert_string_equal(text, want);
  /* The same said with tier1= parameters is the same link. */
  expect_good("shoal:$ID?name=x&size=1&tier1=a.example:1@$KEY"
              "&tier1=b.example:2@$KEY",
              &tiered);
  assert_memory_equal(&tiered, &l, sizeof(l));
  /* And the first form is one tier whose trackers have the key. */
  expect_good("shoal:$ID?key=$KEY&name=x&size=1&tracker=a.example:1"
              "&tracker=b.example:2",
              &tiered);
  assert_memory_equal(&tiered, &l, sizeof(l));
}

static void link_tiers_in_any_order_are_sorted_keeping_order_within(void **st) {
  (void)st;
  struct share_link l;
  expect_good("shoal:$ID?tier2=c:3@$PEER&name=x&tier1=a:1@$KEY&size=1"
              "&tier2=d:4@$KEY&tier1=b:2@$PEER",
              &l);
  assert_int_equal(l.tracker_count, 4);
  const char *want[] = {"a", "b", "c", "d"};
  const uint8_t tiers[] = {0, 0, 1, 1};
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal(l.trackers[i].host, want[i]);
    assert_int_equal(l.trackers[i].tier, tiers[i]);
    assert_true(l.trackers[i].has_key);
  }
  assert_memory_equal(l.trackers[0].key, key_bytes, TEXTID_BYTES);
  assert_memory_not_equal(l.trackers[1].key, key_bytes, TEXTID_BYTES);
  /* A key may be percent-encoded like any value, and so may '@'. */
  expect_good("shoal:$ID?name=x&size=1&tier1=a:1%40$KEY", &l);
  expect_good("shoal:$ID?name=x&size=1&tier1=%5B::1%5D:1@$KEY", &l);
  assert_string_equal(l.trackers[0].host, "::1");
}

static void link_refuses_bad_tiers(void **state) {
  (void)state;
  /* The tier number. */
  expect_bad("shoal:$ID?name=x&size=1&tier=a:1@$KEY", "without a number");
  expect_bad("shoal:$ID?name=x&size=1&tier0=a:1@$KEY", "start at 1");
  expect_bad("shoal:$ID?name=x&size=1&tier01=a:1@$KEY", "leading zero");
  expect_bad("shoal:$ID?name=x&size=1&tier1x=a:1@$KEY", "not a decimal");
  expect_bad("shoal:$ID?name=x&size=1&tier-1=a:1@$KEY", "not a decimal");
  expect_bad("shoal:$ID?name=x&size=1&tier+1=a:1@$KEY", "not a decimal");
  expect_bad("shoal:$ID?name=x&size=1&tier%31=a:1@$KEY", "not a decimal");
  expect_bad("shoal:$ID?name=x&size=1&tier5=a:1@$KEY", "too many tiers");
  expect_bad("shoal:$ID?name=x&size=1&tier99999999999999999999=a:1@$KEY",
             "too many tiers");
  expect_bad("shoal:$ID?name=x&size=1&Tier1=a:1@$KEY", "unknown parameter");
  /* A gap. */
  expect_bad("shoal:$ID?name=x&size=1&tier2=a:1@$KEY", "without a gap");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEY&tier3=b:1@$KEY",
             "without a gap");
  /* Every tier used is fine up to four; a fifth tier number is refused. */
  struct share_link l;
  expect_good("shoal:$ID?name=x&size=1&tier1=a:1@$KEY&tier2=b:1@$KEY"
              "&tier3=c:1@$KEY&tier4=d:1@$KEY",
              &l);
  assert_int_equal(link_tier_count(l.trackers, l.tracker_count), 4);
  /* The two forms mixed. */
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEY&tracker=b:1",
             "mixes tierN=");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEY&key=$KEY", "mixes tierN=");
  expect_bad("shoal:$ID?name=x&size=1&key=$KEY&tier1=a:1@$KEY", "mixes tierN=");
}

static void link_refuses_bad_tier_trackers_and_keys(void **state) {
  (void)state;
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1", "needs its key");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@", "not a 56-character key");
  expect_bad("shoal:$ID?name=x&size=1&tier1=@$KEY", "needs a port");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a@$KEY", "needs a port");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:@$KEY", "port must be");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:0@$KEY", "port must be");
  expect_bad("shoal:$ID?name=x&size=1&tier1=::1:7@$KEY", "in brackets");
  expect_bad("shoal:$ID?name=x&size=1&tier1=[::1]@$KEY", "needs a port");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEYX", "checksum");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$ID", "checksum");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEY@$KEY",
             "not a 56-character key");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEYa",
             "not a 56-character key");
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@%00$KEY",
             "not a 56-character key");
  /* The first form keeps its rules. */
  expect_bad("shoal:$ID?name=x&size=1&tracker=a:1", "key is missing");
  expect_bad("shoal:$ID?name=x&size=1&tracker=a:1@$KEY&key=$KEY",
             "port must be");
}

static void link_refuses_a_tracker_named_twice(void **state) {
  (void)state;
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEY&tier1=a:1@$KEY",
             "named twice");
  /* In another tier, with another key, in another case, or written
   * another way, it is the same tracker. */
  expect_bad("shoal:$ID?name=x&size=1&tier1=a:1@$KEY&tier2=a:1@$PEER",
             "named twice");
  expect_bad("shoal:$ID?name=x&size=1&tier1=T.example:1@$KEY"
             "&tier2=t.EXAMPLE:1@$PEER",
             "named twice");
  expect_bad("shoal:$ID?name=x&size=1&tier1=[::1]:1@$KEY"
             "&tier2=[0:0::1]:1@$PEER",
             "named twice");
  expect_bad("shoal:$ID?name=x&size=1&tracker=a:1&tracker=a:1&key=$KEY",
             "named twice");
  /* Another port is another tracker. */
  struct share_link l;
  expect_good("shoal:$ID?name=x&size=1&tier1=a:1@$KEY&tier2=a:2@$PEER", &l);
  assert_int_equal(l.tracker_count, 2);
}

static void link_refuses_more_than_max_trackers_over_tiers(void **state) {
  (void)state;
  char tmpl[TEXT_CAP];
  size_t o = (size_t)snprintf(tmpl, sizeof(tmpl), "shoal:$ID?name=x&size=1");
  for (int i = 0; i < LINK_MAX_TRACKERS; i++) {
    o += (size_t)snprintf(tmpl + o, sizeof(tmpl) - o, "&tier%d=t%d:1@$KEY",
                          i % LINK_MAX_TIERS + 1, i);
  }
  struct share_link l;
  expect_good(tmpl, &l);
  assert_int_equal(l.tracker_count, LINK_MAX_TRACKERS);
  snprintf(tmpl + o, sizeof(tmpl) - o, "&tier1=t9:1@$KEY");
  expect_bad(tmpl, "too many trackers");
}

static void link_every_prefix_of_a_tiered_link_is_refused_or_valid(void **st) {
  (void)st;
  /* Ending with a key: no cut into it is valid, and without the last
   * tracker tier1 is missing. */
  check_prefixes("shoal:$ID?tier2=b:2@$PEER&name=x&size=1&tier1=a:1@$KEY", 0x1);
  /* Ending with the size: "1" is a valid size too. */
  check_prefixes("shoal:$ID?tier2=b:2@$PEER&tier1=a:1@$KEY&name=x&size=10",
                 0x3);
}

static void link_format_refuses_tiers_it_could_not_write_back(void **state) {
  (void)state;
  const char *hosts[] = {"a", "b"};
  const uint16_t ports[] = {1, 2};
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "x", 1, hosts, ports, 2);
  l.trackers[1].has_key = 0;
  assert_int_equal(link_format(&l, text, sizeof(text)), SHOAL_EINVAL);
  make_link(&l, "x", 1, hosts, ports, 2);
  l.trackers[1].tier = 2; /* a gap */
  assert_int_equal(link_format(&l, text, sizeof(text)), SHOAL_EINVAL);
  make_link(&l, "x", 1, hosts, ports, 2);
  l.trackers[0].tier = 1; /* out of order */
  assert_int_equal(link_format(&l, text, sizeof(text)), SHOAL_EINVAL);
  make_link(&l, "x", 1, hosts, ports, 2);
  l.trackers[1].port = 1;
  memcpy(l.trackers[1].host, "A", 2); /* "a" again */
  assert_int_equal(link_format(&l, text, sizeof(text)), SHOAL_EINVAL);
  make_link(&l, "x", 1, hosts, ports, 2);
  l.trackers[1].tier = LINK_MAX_TIERS;
  assert_int_equal(link_format(&l, text, sizeof(text)), SHOAL_EINVAL);
}

static void link_parse_tracker_key_takes_an_optional_key(void **state) {
  (void)state;
  struct link_tracker t;
  const char *why = NULL;
  char text[TEXT_CAP];
  assert_int_equal(link_parse_tracker_key("a:1", 3, &t, &why), 0);
  assert_false(t.has_key);
  size_t n = expand("[::1]:7@$KEY", text, sizeof(text));
  assert_int_equal(link_parse_tracker_key(text, n, &t, &why), 0);
  assert_true(t.has_key);
  assert_string_equal(t.host, "::1");
  assert_memory_equal(t.key, key_bytes, TEXTID_BYTES);
  /* Only len bytes are read. */
  assert_int_equal(link_parse_tracker_key(text, n - 1, &t, &why),
                   SHOAL_EBADLINK);
  assert_true(bytes_all_zero(&t, sizeof(t)));
  n = expand("a:1@$KEYX", text, sizeof(text));
  assert_int_equal(link_parse_tracker_key(text, n, &t, &why), SHOAL_EBADLINK);
  assert_non_null(strstr(why, "checksum"));
  assert_true(bytes_all_zero(&t, sizeof(t)));
}

/* ------------------------------------------------------------------------ */
/* Truncation and mutation */

/* Parses every prefix of the expanded template. Bit k of valid_cuts says
 * that the prefix k characters shorter than the whole is itself a valid
 * link (bit 0, the whole link, is always set); every other prefix must be
 * refused with a reason and a zeroed output. */
static void check_prefixes(const char *tmpl, unsigned valid_cuts) {
  char text[TEXT_CAP];
  size_t len = expand(tmpl, text, sizeof(text));
  assert_true(valid_cuts & 1);
  for (size_t n = 0; n <= len; n++) {
    struct share_link l;
    const char *why = NULL;
    size_t cut = len - n;
    int want_ok = cut < 32 && (valid_cuts >> cut & 1);
    memset(&l, 0xa5, sizeof(l));
    int rc = parse_exact(text, n, &l, &why);
    if ((rc == 0) != want_ok) {
      print_error("prefix of %zu of \"%s\": got %d (%s)\n", n, text, rc,
                  why ? why : "no reason");
    }
    if (want_ok) {
      assert_int_equal(rc, 0);
      assert_null(why);
    } else {
      assert_int_equal(rc, SHOAL_EBADLINK);
      assert_non_null(why);
      assert_true(bytes_all_zero(&l, sizeof(l)));
    }
  }
}

static void link_every_prefix_is_refused_unless_itself_valid(void **state) {
  (void)state;
  /* The order link_format writes ends with the key: no shorter prefix is a
   * link. */
  const char *hosts[] = {"::1", "t.example"};
  const uint16_t ports[] = {7070, 80};
  struct share_link l;
  char text[TEXT_CAP];
  make_link(&l, "a b", 12345, hosts, ports, 2);
  round_trip(&l, text, sizeof(text));
  char tmpl[TEXT_CAP];
  snprintf(tmpl, sizeof(tmpl), "%s", text);
  check_prefixes(tmpl, 0x1);

  /* Ending with a tracker "h:7070": "h:707", "h:70" and "h:7" are valid
   * links too (to other ports), "h:" is not. */
  check_prefixes("shoal:$ID?key=$KEY&name=abc&size=123&tracker=h:7070", 0xf);
  check_prefixes("shoal:$ID?key=$KEY&name=abc&size=123&tracker=[::1]:7070",
                 0xf);
  /* Ending with the name "abc": "ab" and "a" are valid names. */
  check_prefixes("shoal:$ID?key=$KEY&size=123&tracker=h:7070&name=abc", 0x7);
  /* Ending with an escape: cutting into "%41" is a bad escape, and cutting
   * it off leaves "a". */
  check_prefixes("shoal:$ID?key=$KEY&size=123&tracker=h:7070&name=a%41", 0x9);
  /* Ending with the size "123": "12" and "1" are valid sizes. */
  check_prefixes("shoal:$ID?key=$KEY&tracker=h:7070&name=abc&size=123", 0x7);
  /* Ending with an extension value: every cut inside it, and cutting the
   * whole value ("x-e="), still parses. */
  check_prefixes("shoal:$ID?" GOOD_PARAMS "&x-e=vvv", 0x10f);
}

static void link_every_byte_mutated_is_refused_or_round_trips(void **state) {
  (void)state;
  static const char subst[] = {'\0', '%', '&', '=',        '?',        ':', '[',
                               ']',  '/', '.', '-',        'A',        'z', '0',
                               '9',  ' ', '+', (char)0x80, (char)0xff, 'x'};
  const char *links[] = {
      "shoal:$ID?name=a%20b&size=12345&tracker=[::1]:7070"
      "&tracker=t.example:80&tracker=10.0.0.1:1&key=$KEY&x-e=v",
      "shoal:$ID?key=$KEY&tracker=h:1&size=0&name=%C3%A9",
      "shoal:$ID?name=a&size=1&tier1=[::1]:7070@$KEY&tier1=h.example:80@$KEY"
      "&tier2=10.0.0.1:1@$PEER",
  };
  size_t accepted = 0;
  size_t refused = 0;
  for (size_t k = 0; k < sizeof(links) / sizeof(links[0]); k++) {
    char text[TEXT_CAP];
    size_t len = expand(links[k], text, sizeof(text));
    for (size_t i = 0; i < len; i++) {
      for (size_t s = 0; s < sizeof(subst); s++) {
        char mutated[TEXT_CAP];
        struct share_link l;
        const char *why = "not cleared";
        memcpy(mutated, text, len);
        mutated[i] = subst[s];
        memset(&l, 0xa5, sizeof(l));
        int rc = parse_exact(mutated, len, &l, &why);
        if (rc == 0) {
          /* Whatever was accepted must survive a round trip. */
          char again[TEXT_CAP];
          accepted++;
          assert_null(why);
          round_trip(&l, again, sizeof(again));
        } else {
          refused++;
          assert_int_equal(rc, SHOAL_EBADLINK);
          assert_non_null(why);
          assert_true(strlen(why) > 10);
          assert_true(bytes_all_zero(&l, sizeof(l)));
        }
      }
    }
  }
  /* Both outcomes happen: the originals' own bytes are among the
   * substitutions, and most changes break something. */
  assert_true(accepted > 0);
  assert_true(refused > accepted);
}

int main(void) {
  if (sodium_init() < 0) {
    fprintf(stderr, "sodium_init failed\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(link_round_trip_ipv4_tracker),
      cmocka_unit_test(link_round_trip_ipv6_tracker_is_bracketed),
      cmocka_unit_test(link_round_trip_host_name_tracker),
      cmocka_unit_test(link_round_trip_with_max_trackers_keeps_their_order),
      cmocka_unit_test(link_round_trip_names_that_need_percent_encoding),
      cmocka_unit_test(link_round_trip_size_zero_and_uint64_max),
      cmocka_unit_test(link_parameters_in_any_order_give_the_same_link),
      cmocka_unit_test(link_scheme_and_ids_are_case_insensitive),
      cmocka_unit_test(link_extension_parameters_are_ignored),
      cmocka_unit_test(link_parse_accepts_a_null_why),
      cmocka_unit_test(link_refuses_wrong_scheme),
      cmocka_unit_test(link_refuses_bad_content_id),
      cmocka_unit_test(link_refuses_bad_parameter_syntax),
      cmocka_unit_test(link_refuses_missing_or_repeated_name),
      cmocka_unit_test(link_refuses_unsafe_names),
      cmocka_unit_test(link_refuses_bad_percent_escapes),
      cmocka_unit_test(link_refuses_bad_size),
      cmocka_unit_test(link_refuses_bad_tracker),
      cmocka_unit_test(link_refuses_more_than_max_trackers),
      cmocka_unit_test(link_refuses_bad_tracker_key),
      cmocka_unit_test(link_refuses_text_longer_than_max_chars),
      cmocka_unit_test(link_parse_tracker_accepts_the_three_forms),
      cmocka_unit_test(link_parse_tracker_reads_only_len_bytes),
      cmocka_unit_test(link_format_needs_room_for_every_byte_and_the_nul),
      cmocka_unit_test(link_format_refuses_links_that_would_not_parse_back),
      cmocka_unit_test(link_every_prefix_is_refused_unless_itself_valid),
      cmocka_unit_test(link_round_trip_tiers_each_tracker_with_its_key),
      cmocka_unit_test(link_one_tier_of_one_key_is_written_in_the_first_form),
      cmocka_unit_test(link_tiers_in_any_order_are_sorted_keeping_order_within),
      cmocka_unit_test(link_refuses_bad_tiers),
      cmocka_unit_test(link_refuses_bad_tier_trackers_and_keys),
      cmocka_unit_test(link_refuses_a_tracker_named_twice),
      cmocka_unit_test(link_refuses_more_than_max_trackers_over_tiers),
      cmocka_unit_test(link_every_prefix_of_a_tiered_link_is_refused_or_valid),
      cmocka_unit_test(link_format_refuses_tiers_it_could_not_write_back),
      cmocka_unit_test(link_parse_tracker_key_takes_an_optional_key),
      cmocka_unit_test(link_every_byte_mutated_is_refused_or_round_trips),
  };
  return cmocka_run_group_tests(tests, setup_ids, NULL);
}
