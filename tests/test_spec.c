/* Tests for docs/protocol.md, the specification: every worked example in it
 * is rebuilt with the code from the inputs its text states and compared
 * byte for byte, and the sizes and limits its prose and tables state are
 * recomputed, so that the document cannot drift from the code.
 *
 * The document marks each example with an HTML comment, which is invisible
 * when it is rendered:
 *
 *   <!-- example: NAME -->
 *   ...prose, tables and indented hex dumps...
 *   <!-- /example -->
 *
 * A hex dump line is indented by at least four spaces and holds bytes in its
 * left column, two hex digits each, separated by single spaces; two or more
 * spaces end the bytes, and what follows is an annotation for people. Every
 * hex dump, every backticked run of hex bytes, every text ID, content ID and
 * share link in the document must lie inside a marked example, and every
 * marked example must be one that this program checks; so neither an
 * unchecked example nor a stale marker can creep in.
 *
 * The generic layout check reads every table of a "layout-" example whose
 * first two columns are "offset" and "size", and checks that each row's
 * offset plus its size is the next row's offset (in numbers, or with one
 * symbol such as `L` or `41 × k`). The example tests then compare the end
 * of each table and the stated sizes with what the encoders produce.
 *
 * The document is found through $SHOAL_TEST_SPEC (the path of
 * protocol.md); else beside $SHOAL_TEST_VECTORS, at
 * $SHOAL_TEST_VECTORS/../../docs/protocol.md (`make check` sets
 * SHOAL_TEST_VECTORS=tests/vectors); else at docs/protocol.md, so run the
 * program from the top of the tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/identity.h"
#include "common/link.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "common/replay.h"
#include "common/textid.h"
#include "common/tmsg.h"
#include "peer/limits.h"
#include "peer/manifest_build.h"
#include "tests/lib/testutil.h"
#include "tracker/catalog.h"
#include "tracker/ratelimit.h"
#include "tracker/registry.h"
#include "tracker/tracker.h"

#define PATH_CAP 4096
#define MAX_REGIONS 64
#define MAX_CELLS 8
#define MAX_ROWS 96
#define MAX_TABLES 8
#define PHRASE_CAP 512

/* The inputs the document states for its examples. */
#define EX_TIMESTAMP UINT64_C(1767225601234) /* 2026-01-01T00:00:01.234Z */
#define EX_SEQ UINT64_C(1767225600000001)
#define EX_MTIME INT64_C(1767225600) /* 2026-01-01T00:00:00Z */
static const char hello_text[] = "hello, shoal\n";

/* Every example this program checks; the document must have each. */
static const char *const known[] = {
    "layout-frame",       "layout-envelope",
    "envelope-hello",     "textid-examples",
    "layout-keyfile",     "layout-manifest",
    "manifest-decoding",  "manifest-file",
    "manifest-folder",    "link",
    "link-tiers",         "tracker-transport",
    "layout-query",       "layout-announce",
    "layout-announce-ok", "layout-cert",
    "cert-example",       "layout-lookup",
    "layout-lookup-ok",   "layout-publish",
    "layout-publish-ok",  "layout-search",
    "layout-search-ok",   "layout-error",
    "error-codes",        "tracker-lookup",
    "tracker-announce",   "tracker-announce-ok",
    "layout-hello",       "layout-nonce",
    "pwire-messages",     "layout-pwire",
    "have-map",           "hello-a",
    "session-keys",       "session-frames",
    "limits-common",      "limits-tracker",
    "limits-peer",
};

struct region {
  char name[48];
  unsigned line; /* of the opening marker, counting from 1 */
  const char *text;
  size_t len;
  int checked;
};

static char g_path[PATH_CAP];
static char *g_doc;
static size_t g_doc_len;
static struct region g_regions[MAX_REGIONS];
static size_t g_nregions;
static char g_doc_error[512];

/* ---------------------------------------------------------------------- */
/* The document and its marked examples. */

static const char open_tag[] = "<!-- example: ";
static const char open_end[] = " -->";
static const char close_tag[] = "<!-- /example -->";

static unsigned line_of(const char *p) {
  unsigned n = 1;
  for (const char *q = g_doc; q < p; q++) {
    n += *q == '\n';
  }
  return n;
}

__attribute__((format(printf, 1, 2))) static void doc_error(const char *fmt,
                                                            ...) {
  va_list ap;
  if (g_doc_error[0] == '\0') {
    va_start(ap, fmt);
    vsnprintf(g_doc_error, sizeof(g_doc_error), fmt, ap);
    va_end(ap);
  }
}

static int region_name_ok(const char *s, size_t n) {
  if (n == 0 || n >= sizeof(g_regions[0].name)) {
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
          s[i] == '-')) {
      return 0;
    }
  }
  return 1;
}

/* Whether the n bytes at p contain needle. */
static int contains(const char *p, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++) {
    if (memcmp(p + i, needle, k) == 0) {
      return 1;
    }
  }
  return 0;
}

/* Splits the document into its marked examples; a malformed marker is
 * remembered in g_doc_error for the first test to report. */
static void parse_regions(void) {
  struct region *cur = NULL;
  const char *p = g_doc;
  const char *end = g_doc + g_doc_len;

  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl != NULL ? nl : end;
    size_t n = (size_t)(le - p);
    const size_t ol = sizeof(open_tag) - 1;
    const size_t oe = sizeof(open_end) - 1;

    if (n > ol + oe && memcmp(p, open_tag, ol) == 0 &&
        memcmp(le - oe, open_end, oe) == 0) {
      const char *name = p + ol;
      size_t name_len = n - ol - oe;
      if (cur != NULL) {
        doc_error("line %u: example %s opens inside another", line_of(p),
                  cur->name);
      } else if (!region_name_ok(name, name_len)) {
        doc_error("line %u: bad example name", line_of(p));
      } else if (g_nregions == MAX_REGIONS) {
        doc_error("line %u: more than %d examples", line_of(p), MAX_REGIONS);
      } else {
        cur = &g_regions[g_nregions++];
        memcpy(cur->name, name, name_len);
        cur->name[name_len] = '\0';
        cur->line = line_of(p);
        cur->text = nl != NULL ? nl + 1 : end;
        for (size_t i = 0; i + 1 < g_nregions; i++) {
          if (strcmp(g_regions[i].name, cur->name) == 0) {
            doc_error("line %u: example %s appears twice", cur->line,
                      cur->name);
          }
        }
      }
    } else if (n == sizeof(close_tag) - 1 && memcmp(p, close_tag, n) == 0) {
      if (cur == NULL) {
        doc_error("line %u: %s without an example", line_of(p), close_tag);
      } else {
        cur->len = (size_t)(p - cur->text);
        cur = NULL;
      }
    } else if (n >= 4 && memcmp(p, "<!--", 4) == 0 &&
               (contains(p, n, "<!-- example") ||
                contains(p, n, "<!-- /example"))) {
      doc_error("line %u: a marker must be alone on its line", line_of(p));
    }
    p = nl != NULL ? nl + 1 : end;
  }
  if (cur != NULL) {
    doc_error("line %u: example %s is never closed", cur->line, cur->name);
  }
}

static void find_document(void) {
  const char *spec = getenv("SHOAL_TEST_SPEC");
  const char *vec = getenv("SHOAL_TEST_VECTORS");
  if (spec != NULL && spec[0] != '\0') {
    snprintf(g_path, sizeof(g_path), "%s", spec);
  } else if (vec != NULL && vec[0] != '\0') {
    snprintf(g_path, sizeof(g_path), "%s/../../docs/protocol.md", vec);
  } else {
    snprintf(g_path, sizeof(g_path), "docs/protocol.md");
  }
}

static int load_document(void **state) {
  size_t len = 0;
  (void)state;
  find_document();
  uint8_t *data = tu_read_file(g_path, &len);
  if (data == NULL) {
    return 0; /* each test reports the missing document */
  }
  g_doc = malloc(len + 1);
  if (g_doc == NULL) {
    free(data);
    return -1;
  }
  memcpy(g_doc, data, len);
  g_doc[len] = '\0';
  g_doc_len = len;
  free(data);
  parse_regions();
  return 0;
}

static int free_document(void **state) {
  (void)state;
  free(g_doc);
  g_doc = NULL;
  return 0;
}

static void need_document(void) {
  if (g_doc == NULL) {
    print_error("cannot read the specification %s (set SHOAL_TEST_SPEC, or "
                "run from the top of the tree)\n",
                g_path);
    fail();
  }
}

static const struct region *example(const char *name) {
  need_document();
  for (size_t i = 0; i < g_nregions; i++) {
    if (strcmp(g_regions[i].name, name) == 0) {
      g_regions[i].checked = 1;
      return &g_regions[i];
    }
  }
  print_error("%s has no example \"%s\" (<!-- example: %s -->)\n", g_path, name,
              name);
  fail();
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Hex dumps. */

struct dump {
  uint8_t *b;
  unsigned *line; /* the document line of each byte */
  size_t n;
  size_t cap;
};

/* A byte of a dump at p: two hex digits, then a space or the end. */
static int hex_token(const char *p, const char *end) {
  return end - p >= 2 && isxdigit((unsigned char)p[0]) &&
         isxdigit((unsigned char)p[1]) &&
         (end - p == 2 || p[2] == ' ' || p[2] == '\n' || p[2] == '|' ||
          p[2] == '`');
}

static void dump_add(struct dump *d, uint8_t b, unsigned line) {
  if (d->n == d->cap) {
    d->cap = d->cap ? 2 * d->cap : 256;
    d->b = realloc(d->b, d->cap);
    d->line = realloc(d->line, d->cap * sizeof(*d->line));
    assert_non_null(d->b);
    assert_non_null(d->line);
  }
  d->b[d->n] = b;
  d->line[d->n] = line;
  d->n++;
}

/* Reads the bytes that start at p (up to end): tokens separated by single
 * spaces, ended by two spaces or anything that is not a byte. Returns how
 * many were read. */
static size_t read_bytes(const char *p, const char *end, struct dump *d,
                         unsigned line) {
  size_t n = 0;
  while (hex_token(p, end)) {
    uint8_t b;
    assert_int_equal(sodium_hex2bin(&b, 1, p, 2, NULL, NULL, NULL), 0);
    dump_add(d, b, line);
    n++;
    if (end - p < 4 || p[2] != ' ' || p[3] == ' ') {
      break;
    }
    p += 3;
  }
  return n;
}

/* The bytes in the left column of the indented lines of text. */
static void dump_read(const char *text, size_t len, struct dump *d) {
  const char *p = text;
  const char *end = text + len;
  memset(d, 0, sizeof(*d));
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl != NULL ? nl : end;
    if (le - p > 4 && memcmp(p, "    ", 4) == 0) {
      const char *q = p + 4;
      while (q < le && *q == ' ') {
        q++;
      }
      read_bytes(q, le, d, line_of(p));
    }
    p = nl != NULL ? nl + 1 : end;
  }
}

static void dump_free(struct dump *d) {
  free(d->b);
  free(d->line);
  memset(d, 0, sizeof(*d));
}

/* Prints bytes as a dump to paste into the document. */
static void print_bytes(const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    print_error("%s%02x", i % 12 == 0 ? "    " : " ", b[i]);
    if (i % 12 == 11 || i + 1 == n) {
      print_error("\n");
    }
  }
}

/* Compares bytes read from the document with the code's, naming the
 * example and the first offset at which they differ. */
static void expect_bytes(const struct region *r, const char *what,
                         const struct dump *d, const uint8_t *want,
                         size_t len) {
  size_t i = 0;
  while (i < d->n && i < len && d->b[i] == want[i]) {
    i++;
  }
  if (i == d->n && i == len) {
    return;
  }
  if (i < d->n && i < len) {
    print_error("example %s (line %u), %s: byte %zu differs: the document "
                "has %02x (line %u), the code makes %02x\n",
                r->name, r->line, what, i, d->b[i], d->line[i], want[i]);
  } else {
    print_error("example %s (line %u), %s: the document has %zu bytes, the "
                "code makes %zu (they differ from offset %zu)\n",
                r->name, r->line, what, d->n, len, i);
  }
  print_error("the code's bytes:\n");
  print_bytes(want, len);
  fail();
}

/* The example's hex dump must be exactly want. */
static void expect_dump(const struct region *r, const uint8_t *want,
                        size_t len) {
  struct dump d;
  dump_read(r->text, r->len, &d);
  if (d.n == 0) {
    print_error("example %s (line %u) has no hex dump\n", r->name, r->line);
    fail();
  }
  expect_bytes(r, "hex dump", &d, want, len);
  dump_free(&d);
}

/* The bytes of a backticked cell or span such as `01 00 00 00`. */
static void span_bytes(const char *s, struct dump *d, unsigned line) {
  const char *tick = strchr(s, '`');
  memset(d, 0, sizeof(*d));
  if (tick != NULL) {
    const char *close = strchr(tick + 1, '`');
    read_bytes(tick + 1, close != NULL ? close : tick + 1 + strlen(tick + 1), d,
               line);
  }
}

/* ---------------------------------------------------------------------- */
/* Prose. */

/* s with every run of white space made one space. */
static char *flatten(const char *s, size_t len) {
  char *out = malloc(len + 1);
  size_t o = 0;
  assert_non_null(out);
  for (size_t i = 0; i < len; i++) {
    if (isspace((unsigned char)s[i])) {
      if (o > 0 && out[o - 1] != ' ') {
        out[o++] = ' ';
      }
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

/* The example's text must contain the phrase (white space is compared
 * loosely, so a phrase may be broken across lines). */
__attribute__((format(printf, 2, 3))) static void
expect_says(const struct region *r, const char *fmt, ...) {
  char phrase[PHRASE_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(phrase, sizeof(phrase), fmt, ap);
  va_end(ap);
  char *want = flatten(phrase, strlen(phrase));
  char *text = flatten(r->text, r->len);
  int found = strstr(text, want) != NULL;
  if (!found) {
    print_error("example %s (line %u): the document does not say \"%s\"\n",
                r->name, r->line, want);
  }
  free(want);
  free(text);
  if (!found) {
    fail();
  }
}

/* A number as the document writes it: groups of three digits separated by
 * spaces ("1 767 225 601 234"). Uses one of four rotating buffers. */
static const char *grp(uint64_t v) {
  static char bufs[4][32];
  static unsigned k;
  char digits[24];
  char *out = bufs[k++ % 4];
  int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
  size_t o = 0;
  for (int i = 0; i < n; i++) {
    if (i > 0 && (n - i) % 3 == 0) {
      out[o++] = ' ';
    }
    out[o++] = digits[i];
  }
  out[o] = '\0';
  return out;
}

/* Bytes as "00 06 47 48" (rotating buffers, up to 64 bytes). */
static const char *hex_spaced(const uint8_t *b, size_t n) {
  static char bufs[4][3 * 64 + 1];
  static unsigned k;
  char *out = bufs[k++ % 4];
  size_t o = 0;
  assert_true(n <= 64);
  for (size_t i = 0; i < n; i++) {
    o += (size_t)snprintf(out + o, sizeof(bufs[0]) - o, "%s%02x", i ? " " : "",
                          b[i]);
  }
  out[o] = '\0';
  return out;
}

static void hex_plain(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) {
    snprintf(out + 2 * i, 3, "%02x", b[i]);
  }
}

/* An ID as the prose abbreviates it: "4a1eba21...a564". */
static const char *id_abbrev(const uint8_t id[MANIFEST_ID_BYTES]) {
  static char out[32];
  char hex[2 * MANIFEST_ID_BYTES + 1];
  hex_plain(id, MANIFEST_ID_BYTES, hex);
  snprintf(out, sizeof(out), "%.8s...%s", hex, hex + sizeof(hex) - 5);
  return out;
}

/* ---------------------------------------------------------------------- */
/* Tables. */

struct row {
  char *cell[MAX_CELLS];
  unsigned ncell;
  unsigned line;
};

struct table {
  struct row rows[MAX_ROWS]; /* rows[0] is the header */
  unsigned nrows;
};

static int separator_row(const struct row *w) {
  for (unsigned i = 0; i < w->ncell; i++) {
    for (const char *c = w->cell[i]; *c; c++) {
      if (*c != '-' && *c != ':') {
        return 0;
      }
    }
  }
  return w->ncell > 0;
}

/* Splits one table line into trimmed cells; "\|" is a literal '|'. */
static void split_row(const char *p, const char *le, struct row *w) {
  char cell[1024];
  size_t o = 0;
  memset(w, 0, sizeof(*w));
  w->line = line_of(p);
  p++; /* the leading '|' */
  for (; p < le; p++) {
    if (*p == '\\' && p + 1 < le && p[1] == '|') {
      p++;
    } else if (*p == '|') {
      while (o > 0 && cell[o - 1] == ' ') {
        o--;
      }
      size_t s = 0;
      while (s < o && cell[s] == ' ') {
        s++;
      }
      assert_true(w->ncell < MAX_CELLS);
      w->cell[w->ncell] = malloc(o - s + 1);
      assert_non_null(w->cell[w->ncell]);
      memcpy(w->cell[w->ncell], cell + s, o - s);
      w->cell[w->ncell][o - s] = '\0';
      w->ncell++;
      o = 0;
      continue;
    }
    assert_true(o + 1 < sizeof(cell));
    cell[o++] = *p;
  }
}

/* Reads the Markdown tables of text. Returns how many. */
static unsigned tables_read(const char *text, size_t len, struct table *t,
                            unsigned max) {
  const char *p = text;
  const char *end = text + len;
  unsigned n = 0;
  int in_table = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl != NULL ? nl : end;
    if (le > p && *p == '|') {
      if (!in_table) {
        assert_true(n < max);
        t[n].nrows = 0;
        n++;
        in_table = 1;
      }
      struct row w;
      split_row(p, le, &w);
      if (separator_row(&w)) {
        for (unsigned i = 0; i < w.ncell; i++) {
          free(w.cell[i]);
        }
      } else {
        assert_true(t[n - 1].nrows < MAX_ROWS);
        t[n - 1].rows[t[n - 1].nrows++] = w;
      }
    } else {
      in_table = 0;
    }
    p = nl != NULL ? nl + 1 : end;
  }
  return n;
}

static void tables_free(struct table *t, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    for (unsigned r = 0; r < t[i].nrows; r++) {
      for (unsigned c = 0; c < t[i].rows[r].ncell; c++) {
        free(t[i].rows[r].cell[c]);
      }
    }
  }
}

/* A cell without its backticks. */
static void unticked(const char *s, char *out, size_t cap) {
  size_t o = 0;
  for (; *s && o + 1 < cap; s++) {
    if (*s != '`') {
      out[o++] = *s;
    }
  }
  out[o] = '\0';
}

/* An offset or size cell: a number, a symbol (`L`, `41 × k`), or a number
 * plus a symbol (46+`L`). ok is 0 for anything else ("end", empty). */
struct expr {
  int ok;
  uint64_t c;
  char sym[128]; /* without spaces; "" for none */
};

static struct expr expr_parse(const char *cell) {
  struct expr e;
  char s[128];
  size_t o = 0;
  memset(&e, 0, sizeof(e));
  for (const char *p = cell; *p && o + 1 < sizeof(s); p++) {
    if (*p != '`' && *p != ' ') {
      s[o++] = *p;
    }
  }
  s[o] = '\0';
  if (o == 0) {
    return e;
  }
  const char *p = s;
  while (isdigit((unsigned char)*p)) {
    e.c = e.c * 10 + (uint64_t)(*p - '0');
    p++;
  }
  if (p == s) {
    snprintf(e.sym, sizeof(e.sym), "%s", s);
  } else if (*p == '+') {
    snprintf(e.sym, sizeof(e.sym), "%s", p + 1);
  } else if (*p != '\0') {
    /* "32×C" is a symbol as a whole, not 32 plus something. */
    e.c = 0;
    snprintf(e.sym, sizeof(e.sym), "%s", s);
  }
  /* Symbols are single letters with numbers and ×; words ("end", "after
   * the files") are not offsets. */
  for (size_t i = 0; e.sym[i] && e.sym[i + 1]; i++) {
    if (isalpha((unsigned char)e.sym[i]) &&
        isalpha((unsigned char)e.sym[i + 1])) {
      return e;
    }
  }
  e.ok = 1;
  return e;
}

static int expr_add(struct expr a, struct expr b, struct expr *out) {
  memset(out, 0, sizeof(*out));
  if (!a.ok || !b.ok || (a.sym[0] && b.sym[0])) {
    return 0;
  }
  out->ok = 1;
  out->c = a.c + b.c;
  snprintf(out->sym, sizeof(out->sym), "%s", a.sym[0] ? a.sym : b.sym);
  return 1;
}

static const char *expr_str(const struct expr *e) {
  static char bufs[4][160];
  static unsigned k;
  char *out = bufs[k++ % 4];
  if (!e->ok) {
    snprintf(out, sizeof(bufs[0]), "(unknown)");
  } else if (e->sym[0] == '\0') {
    snprintf(out, sizeof(bufs[0]), "%llu", (unsigned long long)e->c);
  } else if (e->c == 0) {
    snprintf(out, sizeof(bufs[0]), "%s", e->sym);
  } else {
    snprintf(out, sizeof(bufs[0]), "%llu+%s", (unsigned long long)e->c, e->sym);
  }
  return out;
}

static int is_layout_table(const struct table *t) {
  return t->nrows > 1 && t->rows[0].ncell >= 2 &&
         strcmp(t->rows[0].cell[0], "offset") == 0 &&
         strcmp(t->rows[0].cell[1], "size") == 0;
}

/* Where a layout table ends: the last row's offset plus its size. */
static struct expr table_end(const struct table *t) {
  struct expr e;
  const struct row *w = &t->rows[t->nrows - 1];
  if (!expr_add(expr_parse(w->cell[0]), expr_parse(w->cell[1]), &e)) {
    e.ok = 0;
  }
  return e;
}

/* The layout table number k of an example must end at want (a number, or
 * a number plus a symbol). */
static void expect_table_end(const struct region *r, unsigned k, uint64_t c,
                             const char *sym) {
  struct table *t = calloc(MAX_TABLES, sizeof(*t));
  assert_non_null(t);
  unsigned n = tables_read(r->text, r->len, t, MAX_TABLES);
  unsigned seen = 0;
  int done = 0;
  for (unsigned i = 0; i < n && !done; i++) {
    if (!is_layout_table(&t[i]) || seen++ != k) {
      continue;
    }
    struct expr e = table_end(&t[i]);
    struct expr want = {.ok = 1, .c = c};
    snprintf(want.sym, sizeof(want.sym), "%s", sym);
    if (!e.ok || e.c != c || strcmp(e.sym, sym) != 0) {
      print_error("example %s: the layout table at line %u ends at %s, the "
                  "code's layout at %s\n",
                  r->name, t[i].rows[0].line, expr_str(&e), expr_str(&want));
      tables_free(t, n);
      free(t);
      fail();
    }
    done = 1;
  }
  tables_free(t, n);
  free(t);
  if (!done) {
    print_error("example %s has no layout table number %u\n", r->name, k);
    fail();
  }
}

/* ---------------------------------------------------------------------- */
/* Keys and contents the examples use. */

/* The key of the seed first, first + 1, ..., first + 31. */
static void key_from(struct identity *id, uint8_t first) {
  uint8_t seed[32];
  for (unsigned i = 0; i < 32; i++) {
    seed[i] = (uint8_t)(first + i);
  }
  identity_from_seed(id, seed);
}

static void eph_from(struct pwire_eph *e, uint8_t first) {
  uint8_t seed[crypto_kx_SEEDBYTES];
  for (unsigned i = 0; i < sizeof(seed); i++) {
    seed[i] = (uint8_t)(first + i);
  }
  crypto_kx_seed_keypair(e->pk, e->sk, seed);
}

/* Writes dir/rel holding data, with the mode and the modification time
 * (seconds and nanoseconds). */
static void write_with(const char *dir, const char *rel, const char *data,
                       mode_t mode, int64_t sec, long nsec) {
  char path[PATH_CAP];
  struct timespec ts[2] = {{(time_t)sec, nsec}, {(time_t)sec, nsec}};
  tu_write_file(dir, rel, data, strlen(data));
  tu_path(path, sizeof(path), dir, rel);
  assert_int_equal(chmod(path, mode), 0);
  assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* The manifest of dir/rel, published by the key of seed 01 02 ... 20;
 * dir, a temporary folder the caller made, is removed. */
static struct manifest *build_and_remove(const char *dir, const char *rel) {
  char path[PATH_CAP];
  struct identity a;
  struct manifest *m = NULL;
  key_from(&a, 0x01);
  tu_path(path, sizeof(path), dir, rel);
  assert_int_equal(manifest_build(path, &a, NULL, &m), 0);
  tu_rmtree(dir);
  identity_close(&a);
  return m;
}

/* The manifest of one file named name holding hello_text, mode 0644,
 * modified at EX_MTIME, published by the key of seed 01 02 ... 20. */
static struct manifest *hello_manifest(const char *name) {
  char dir[PATH_CAP];
  tu_tmpdir(dir, sizeof(dir));
  write_with(dir, name, hello_text, 0644, EX_MTIME, 0);
  return build_and_remove(dir, name);
}

static const char readme_text[] = "shoal tools\n";
static const char script_text[] = "#!/bin/sh\necho shoal\n";
#define README_MTIME INT64_C(1700000000) /* 2023-11-14T22:13:20Z */
#define SCRIPT_NSEC 500000000L

/* The folder example: tools/README, the executable tools/bin/run.sh, the
 * empty folder tools/logs, and tools/cache holding only the empty folder
 * tools/cache/tmp. */
static struct manifest *tools_manifest(void) {
  static const char *const folders[] = {"tools/logs", "tools/cache",
                                        "tools/cache/tmp"};
  char dir[PATH_CAP];
  char path[PATH_CAP];
  tu_tmpdir(dir, sizeof(dir));
  write_with(dir, "tools/README", readme_text, 0644, README_MTIME, 0);
  write_with(dir, "tools/bin/run.sh", script_text, 0755, EX_MTIME, SCRIPT_NSEC);
  for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
    tu_path(path, sizeof(path), dir, folders[i]);
    assert_int_equal(mkdir(path, 0755), 0);
  }
  return build_and_remove(dir, "tools");
}

/* The smallest manifest, an empty folder with a one-byte name ("x"), or
 * the same folder holding the empty folder "x/e". */
static struct manifest *empty_folder_manifest(int with_folder) {
  char dir[PATH_CAP];
  char path[PATH_CAP];
  tu_tmpdir(dir, sizeof(dir));
  tu_path(path, sizeof(path), dir, "x");
  assert_int_equal(mkdir(path, 0755), 0);
  if (with_folder) {
    tu_path(path, sizeof(path), dir, "x/e");
    assert_int_equal(mkdir(path, 0755), 0);
  }
  return build_and_remove(dir, "x");
}

static void frame_with_header(struct buf *out, const struct buf *body) {
  uint8_t hdr[FRAME_HEADER_BYTES];
  frame_header(hdr, body->len);
  buf_add(out, hdr, sizeof(hdr));
  buf_add(out, body->data, body->len);
  assert_int_equal(buf_err(out), 0);
}

/* ---------------------------------------------------------------------- */
/* The document as a whole. */

static int in_region(const char *p) {
  for (size_t i = 0; i < g_nregions; i++) {
    if (p >= g_regions[i].text && p < g_regions[i].text + g_regions[i].len) {
      return 1;
    }
  }
  return 0;
}

static int all_in(const char *s, size_t n, const char *set) {
  for (size_t i = 0; i < n; i++) {
    if (strchr(set, s[i]) == NULL) {
      return 0;
    }
  }
  return 1;
}

/* What a reader would take for an example: a backticked span of hex
 * bytes, a text ID, or a content ID in hex. */
static const char *example_like_span(const char *s, size_t n) {
  struct dump d;
  char tmp[PHRASE_CAP];
  if (n == TEXTID_CHARS && all_in(s, n, "abcdefghijklmnopqrstuvwxyz234567")) {
    return "a text ID";
  }
  if (n == 2 * MANIFEST_ID_BYTES && all_in(s, n, "0123456789abcdef")) {
    return "an ID in hex";
  }
  if (n >= 5 && n < sizeof(tmp) && all_in(s, n, "0123456789abcdef ")) {
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    memset(&d, 0, sizeof(d));
    size_t got = read_bytes(tmp, tmp + n, &d, 0);
    dump_free(&d);
    if (got >= 2 && 3 * got - 1 == n) {
      return "hex bytes";
    }
  }
  return NULL;
}

static void test_the_document_is_found_and_well_marked(void **state) {
  (void)state;
  need_document();
  if (g_doc_error[0] != '\0') {
    print_error("%s: %s\n", g_path, g_doc_error);
    fail();
  }
  /* A checker that finds nothing checks nothing. */
  if (g_nregions == 0) {
    print_error("%s has no marked examples\n", g_path);
    fail();
  }
  int bad = 0;
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    size_t k = 0;
    while (k < g_nregions && strcmp(g_regions[k].name, known[i]) != 0) {
      k++;
    }
    if (k == g_nregions) {
      print_error("%s: example %s is missing\n", g_path, known[i]);
      bad = 1;
    }
  }
  for (size_t k = 0; k < g_nregions; k++) {
    size_t i = 0;
    while (i < sizeof(known) / sizeof(known[0]) &&
           strcmp(g_regions[k].name, known[i]) != 0) {
      i++;
    }
    if (i == sizeof(known) / sizeof(known[0])) {
      print_error("%s line %u: example %s is not one this program checks\n",
                  g_path, g_regions[k].line, g_regions[k].name);
      bad = 1;
    }
  }
  assert_false(bad);
}

static void test_every_example_in_the_document_is_marked(void **state) {
  const char *p = g_doc;
  const char *end;
  unsigned bad = 0;
  (void)state;
  need_document();
  end = g_doc + g_doc_len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl != NULL ? nl : end;
    if (!in_region(p)) {
      const char *q = p;
      while (q < le && *q == ' ') {
        q++;
      }
      struct dump d;
      memset(&d, 0, sizeof(d));
      if (q - p >= 4 && (read_bytes(q, le, &d, 0) >= 2 ||
                         (le - q > 6 && memcmp(q, "shoal:", 6) == 0))) {
        print_error("%s line %u: a hex dump or link outside a marked "
                    "example\n",
                    g_path, line_of(p));
        bad++;
      }
      dump_free(&d);
      for (const char *t = memchr(p, '`', (size_t)(le - p)); t != NULL;) {
        const char *u = memchr(t + 1, '`', (size_t)(le - t - 1));
        if (u == NULL) {
          break;
        }
        const char *what = example_like_span(t + 1, (size_t)(u - t - 1));
        if (what != NULL) {
          print_error("%s line %u: %s outside a marked example: %.*s\n", g_path,
                      line_of(p), what, (int)(u - t - 1), t + 1);
          bad++;
        }
        t = memchr(u + 1, '`', (size_t)(le - u - 1));
      }
    }
    p = nl != NULL ? nl + 1 : end;
  }
  assert_int_equal(bad, 0);
}

/* Every offset plus size is the next offset, in every layout table. */
static void test_layout_tables_add_up(void **state) {
  unsigned bad = 0;
  unsigned checked = 0;
  (void)state;
  need_document();
  struct table *t = calloc(MAX_TABLES, sizeof(*t));
  assert_non_null(t);
  for (size_t k = 0; k < g_nregions; k++) {
    const struct region *r = &g_regions[k];
    if (strncmp(r->name, "layout-", 7) != 0) {
      continue;
    }
    unsigned n = tables_read(r->text, r->len, t, MAX_TABLES);
    for (unsigned i = 0; i < n; i++) {
      if (!is_layout_table(&t[i])) {
        continue;
      }
      for (unsigned j = 1; j + 1 < t[i].nrows; j++) {
        const struct row *a = &t[i].rows[j];
        const struct row *b = &t[i].rows[j + 1];
        struct expr sum;
        struct expr next = expr_parse(b->cell[0]);
        if (!next.ok ||
            !expr_add(expr_parse(a->cell[0]), expr_parse(a->cell[1]), &sum)) {
          continue;
        }
        checked++;
        if (sum.c != next.c || strcmp(sum.sym, next.sym) != 0) {
          print_error("example %s line %u: offset %s plus size %s is %s, but "
                      "the next row (line %u) starts at %s\n",
                      r->name, a->line, a->cell[0], a->cell[1], expr_str(&sum),
                      b->line, expr_str(&next));
          bad++;
        }
      }
    }
    tables_free(t, n);
  }
  free(t);
  assert_int_equal(bad, 0);
  assert_true(checked > 50);
}

/* ---------------------------------------------------------------------- */
/* Envelopes and text IDs. */

static void test_envelope_example(void **state) {
  const struct region *r = example("envelope-hello");
  struct identity a;
  struct buf b;
  char vec[PATH_CAP];
  static const char payload[] = "shoal hello vector";
  (void)state;
  key_from(&a, 0x01);
  buf_init(&b, 4096);
  assert_int_equal(envelope_seal(&b, ENVELOPE_PEER_HELLO, 2, &a, EX_TIMESTAMP,
                                 EX_SEQ, payload, strlen(payload)),
                   0);
  expect_dump(r, b.data, b.len);
  expect_says(r, "`tests/vectors/envelope-hello.bin` (%zu bytes)", b.len);
  expect_says(r, "timestamp %s", grp(EX_TIMESTAMP));
  expect_says(r, "sequence number %s", grp(EX_SEQ));
  expect_says(r, "the %zu-byte payload `%s`", strlen(payload), payload);
  expect_says(r, "the %zu bytes above", b.len - ENVELOPE_SIG_BYTES);
  /* The committed vector is the same envelope. */
  size_t len = 0;
  tu_vector_path(vec, sizeof(vec), "envelope-hello.bin");
  uint8_t *file = tu_read_file(vec, &len);
  assert_non_null(file);
  assert_int_equal(len, b.len);
  assert_memory_equal(file, b.data, len);
  free(file);
  buf_free(&b);
  identity_close(&a);
}

static void test_envelope_layout(void **state) {
  const struct region *r = example("layout-envelope");
  struct identity a;
  struct buf b;
  (void)state;
  key_from(&a, 0x01);
  buf_init(&b, 4096);
  assert_int_equal(
      envelope_seal(&b, ENVELOPE_TRACKER_REQUEST, 1, &a, 1, 1, "12345", 5), 0);
  assert_int_equal(b.len, ENVELOPE_OVERHEAD + 5);
  expect_table_end(r, 0, ENVELOPE_OVERHEAD, "n");
  expect_says(r, "`ENVELOPE_HEADER_BYTES` = %u bytes", ENVELOPE_HEADER_BYTES);
  expect_says(r, "`ENVELOPE_OVERHEAD` = %u bytes", ENVELOPE_OVERHEAD);
  expect_says(r, "= %s bytes", grp(ENVELOPE_PAYLOAD_MAX));
  expect_says(r, "envelope length minus %u", ENVELOPE_OVERHEAD);
  buf_free(&b);
  identity_close(&a);
}

static void test_frame_layout(void **state) {
  const struct region *r = example("layout-frame");
  uint8_t hdr[FRAME_HEADER_BYTES];
  (void)state;
  frame_header(hdr, 0x00a1b2c3);
  assert_int_equal(buf_be32(hdr), 0x00a1b2c3);
  expect_table_end(r, 0, FRAME_HEADER_BYTES, "n");
}

static void test_text_id_examples(void **state) {
  const struct region *r = example("textid-examples");
  struct table t[2];
  struct identity a;
  uint8_t zero[TEXTID_BYTES] = {0};
  char text[TEXTID_STRLEN];
  char cell[128];
  char pk_hex[2 * IDENTITY_PK_BYTES + 1];
  (void)state;
  key_from(&a, 0x01);
  hex_plain(a.pk, IDENTITY_PK_BYTES, pk_hex);
  assert_int_equal(tables_read(r->text, r->len, t, 2), 1);
  assert_int_equal(t[0].nrows, 4);
  for (unsigned i = 1; i < t[0].nrows; i++) {
    const struct row *w = &t[0].rows[i];
    const int is_key = strcmp(w->cell[1], "key") == 0;
    assert_true(is_key || strcmp(w->cell[1], "content") == 0);
    if (strstr(w->cell[0], "seed `01 02 ... 20`") != NULL) {
      /* "(`79b5562e...bad049664`)": the start and end of the key in hex. */
      char *open = strstr(w->cell[0], "(`");
      assert_non_null(open);
      char *dots = strstr(open, "...");
      assert_non_null(dots);
      size_t head = (size_t)(dots - open - 2);
      char *tail = dots + 3;
      size_t tail_len = strcspn(tail, "`");
      assert_memory_equal(open + 2, pk_hex, head);
      assert_memory_equal(tail, pk_hex + strlen(pk_hex) - tail_len, tail_len);
      textid_encode(is_key ? TEXTID_KEY : TEXTID_CONTENT, a.pk, text);
    } else {
      assert_string_equal(w->cell[0], "32 zero bytes");
      textid_encode(is_key ? TEXTID_KEY : TEXTID_CONTENT, zero, text);
    }
    unticked(w->cell[2], cell, sizeof(cell));
    if (strcmp(cell, text) != 0) {
      print_error("example %s line %u: the document has %s, the code makes "
                  "%s\n",
                  r->name, w->line, cell, text);
      fail();
    }
  }
  tables_free(t, 1);
  identity_close(&a);
}

static void test_key_file_layout(void **state) {
  const struct region *r = example("layout-keyfile");
  (void)state;
  expect_table_end(r, 0, IDENTITY_FILE_BYTES, "");
  expect_says(r, "`IDENTITY_FILE_BYTES` = %u bytes", IDENTITY_FILE_BYTES);
}

/* ---------------------------------------------------------------------- */
/* Manifests and links. */

/* The sizes the manifest examples check the document against. */
struct manifest_sizes {
  size_t smallest;     /* signed bytes of the smallest manifest */
  size_t file_entry;   /* a file entry without its path */
  size_t folder_entry; /* a folder entry without its path */
};

static struct manifest_sizes manifest_sizes(void) {
  struct manifest_sizes z;
  const size_t sig = IDENTITY_SIG_BYTES;
  /* The 46 fixed bytes, the name "x", the file and folder counts, and the
   * chunk count. */
  const size_t around = 46 + 1 + 4 + 4 + 4;
  struct manifest *m = empty_folder_manifest(0);
  z.smallest = m->encoded_len;
  assert_int_equal(m->encoded_len - sig, around);
  manifest_free(m);
  /* One file "x" (a path of 1 byte) and its one hash. */
  m = hello_manifest("x");
  z.file_entry = m->encoded_len - sig - around - MANIFEST_HASH_BYTES - 1;
  manifest_free(m);
  /* One folder entry "x/e" (a path of 3 bytes). */
  m = empty_folder_manifest(1);
  assert_int_equal(m->folder_count, 1);
  z.folder_entry = m->encoded_len - sig - around - 3;
  manifest_free(m);
  return z;
}

static void test_manifest_layout(void **state) {
  const struct region *r = example("layout-manifest");
  (void)state;
  struct manifest_sizes z = manifest_sizes();
  expect_says(r, "Each file entry is `%zu + P` bytes", z.file_entry);
  expect_says(r, "Each folder entry is `%zu + P` bytes", z.folder_entry);
  expect_table_end(r, 1, z.file_entry, "P");
  expect_table_end(r, 2, z.folder_entry, "P");
  expect_says(r, "`MANIFEST_VERSION` = %u", MANIFEST_VERSION);
  expect_says(r, "at most `MANIFEST_MAX_FILES` (%s)", grp(MANIFEST_MAX_FILES));
  expect_says(r, "at most `MANIFEST_MAX_FOLDERS` (%s)",
              grp(MANIFEST_MAX_FOLDERS));
  expect_says(r, "`MANIFEST_MODE_EXEC` (%u)", MANIFEST_MODE_EXEC);
  expect_says(r, "0..%s (below `MANIFEST_NSEC_LIMIT`)",
              grp(MANIFEST_NSEC_LIMIT - 1));
  expect_says(r, "it checks only that there are at least %zu bytes",
              z.smallest);
}

static void test_manifest_decoding(void **state) {
  const struct region *r = example("manifest-decoding");
  (void)state;
  struct manifest_sizes z = manifest_sizes();
  expect_says(r, "| byte 0 is %u;", MANIFEST_VERSION);
  expect_says(r,
              "| at least %zu bytes (the fixed fields, a 1-byte name and the "
              "signature) |",
              z.smallest);
  expect_says(r, "at %zu bytes per file entry", z.file_entry + 1);
  expect_says(r, "at %zu bytes per folder entry", z.folder_entry + 1);
  expect_says(r, "`MANIFEST_MAX_FILES` (%s)", grp(MANIFEST_MAX_FILES));
  expect_says(r, "`MANIFEST_MAX_FOLDERS` (%s)", grp(MANIFEST_MAX_FOLDERS));
  expect_says(r, "`MANIFEST_MAX_CHUNKS` (%s)", grp(MANIFEST_MAX_CHUNKS));
  expect_says(r, "nanoseconds are below %s", grp(MANIFEST_NSEC_LIMIT));
  /* The smallest manifest is accepted and one byte less is not, but a
   * byte 0 of 1 is refused for its version even then. */
  struct manifest *m = empty_folder_manifest(0);
  struct manifest *d = NULL;
  uint8_t *b = malloc(m->encoded_len);
  assert_non_null(b);
  memcpy(b, m->encoded, m->encoded_len);
  assert_int_equal(manifest_decode(b, m->encoded_len, &d), 0);
  manifest_free(d);
  assert_int_equal(manifest_decode(b, m->encoded_len - 1, &d), SHOAL_ETRUNC);
  b[0] = 1;
  assert_int_equal(manifest_decode(b, m->encoded_len - 1, &d), SHOAL_EVERSION);
  free(b);
  manifest_free(m);
}

/* The text of r states m's content ID, in hex and as a text ID. */
static void expect_content_id(const struct region *r,
                              const struct manifest *m) {
  char id_hex[2 * MANIFEST_ID_BYTES + 1];
  char text[TEXTID_STRLEN];
  hex_plain(m->id, MANIFEST_ID_BYTES, id_hex);
  textid_encode(TEXTID_CONTENT, m->id, text);
  expect_says(r, "Its content ID is `%s`, as a text ID `%s`", id_hex, text);
}

/* r's dump is m's encoding, and its text says "<lead>gives N canonical
 * bytes and M signed bytes". */
static void expect_encoding(const struct region *r, const struct manifest *m,
                            const char *lead) {
  expect_dump(r, m->encoded, m->encoded_len);
  expect_says(r, "%sgives %zu canonical bytes and %zu signed bytes", lead,
              m->encoded_len - IDENTITY_SIG_BYTES, m->encoded_len);
}

static void test_manifest_file_example(void **state) {
  const struct region *r = example("manifest-file");
  (void)state;
  struct manifest *m = hello_manifest("hello.txt");
  expect_encoding(r, m, "");
  expect_says(r, "holding the %zu bytes `hello, shoal\\n`, with mode 0644",
              strlen(hello_text));
  expect_says(r, "(%s seconds and 0 nanoseconds)", grp(EX_MTIME));
  expect_content_id(r, m);
  manifest_free(m);
}

static void test_manifest_folder_example(void **state) {
  const struct region *r = example("manifest-folder");
  (void)state;
  struct manifest *m = tools_manifest();
  /* What the text says the folder holds, in the order it gives. */
  assert_int_equal(m->file_count, 2);
  assert_string_equal(m->files[0].path, "tools/README");
  assert_string_equal(m->files[1].path, "tools/bin/run.sh");
  assert_int_equal(m->files[0].mode, 0);
  assert_int_equal(m->files[1].mode, MANIFEST_MODE_EXEC);
  assert_int_equal(m->folder_count, 2);
  expect_encoding(r, m, "It ");
  expect_says(r, "`tools/README`: the %zu bytes `shoal tools\\n`, mode 0644",
              strlen(readme_text));
  expect_says(r, "(%s seconds and 0 nanoseconds)", grp(README_MTIME));
  expect_says(r,
              "`tools/bin/run.sh`: the %zu bytes `#!/bin/sh\\necho shoal\\n`, "
              "mode 0755",
              strlen(script_text));
  expect_says(r, "(%s seconds and %s nanoseconds)", grp(EX_MTIME),
              grp(SCRIPT_NSEC));
  expect_says(r, "The files sort as `%s`, `%s`", m->files[0].path,
              m->files[1].path);
  expect_says(r, "and the folders as `%s`, `%s`", m->folders[0], m->folders[1]);
  expect_content_id(r, m);
  manifest_free(m);
}

/* The indented line of r that starts with prefix, without its indent. */
static char *indented_line(const struct region *r, const char *prefix) {
  const char *p = r->text;
  const char *end = r->text + r->len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl != NULL ? nl : end;
    const char *q = p;
    while (q < le && *q == ' ') {
      q++;
    }
    if (q - p >= 4 && (size_t)(le - q) >= strlen(prefix) &&
        memcmp(q, prefix, strlen(prefix)) == 0) {
      char *s = malloc((size_t)(le - q) + 1);
      assert_non_null(s);
      memcpy(s, q, (size_t)(le - q));
      s[le - q] = '\0';
      return s;
    }
    p = nl != NULL ? nl + 1 : end;
  }
  print_error("example %s has no indented line starting %s\n", r->name, prefix);
  fail();
  return NULL;
}

/* The link of the hello.txt manifest under name, with no tracker yet. */
static void example_link_base(struct share_link *l, const struct manifest *m,
                              const char *name) {
  memset(l, 0, sizeof(*l));
  memcpy(l->id, m->id, TEXTID_BYTES);
  snprintf(l->name, sizeof(l->name), "%s", name);
  l->size = m->total_size;
}

/* The example's link (its indented line starting "shoal:") is link, and
 * the cells of its first table, joined with "?" before the third and "&"
 * after, are the link again. */
static void expect_example_link(const struct region *r, const char *link) {
  char joined[LINK_MAX_CHARS + 1];
  char cell[1024];
  struct table t[2];
  char *doc_link = indented_line(r, "shoal:");
  if (strcmp(doc_link, link) != 0) {
    print_error("example %s: the document has\n  %s\nthe code makes\n  %s\n",
                r->name, doc_link, link);
    free(doc_link);
    fail();
  }
  free(doc_link);
  assert_int_equal(tables_read(r->text, r->len, t, 2), 1);
  size_t o = 0;
  for (unsigned i = 1; i < t[0].nrows; i++) {
    unticked(t[0].rows[i].cell[0], cell, sizeof(cell));
    o += (size_t)snprintf(joined + o, sizeof(joined) - o, "%s%s",
                          i == 3  ? "?"
                          : i > 3 ? "&"
                                  : "",
                          cell);
  }
  assert_string_equal(joined, link);
  tables_free(t, 1);
}

static void test_link_example(void **state) {
  const struct region *r = example("link");
  static const char name[] = "Notes (\xC3\xA9t\xC3\xA9) +1.txt";
  struct identity tk;
  struct share_link l;
  struct share_link back;
  struct share_link alt;
  char link[LINK_MAX_CHARS + 1];
  const char *why = NULL;
  (void)state;
  struct manifest *m = hello_manifest(name);
  key_from(&tk, 0x40);
  example_link_base(&l, m, name);
  l.tracker_count = 2;
  snprintf(l.trackers[0].host, sizeof(l.trackers[0].host),
           "tracker.example.org");
  l.trackers[0].port = 7070;
  snprintf(l.trackers[1].host, sizeof(l.trackers[1].host), "2001:db8::1");
  l.trackers[1].port = 7070;
  link_set_key(&l, tk.pk);
  assert_true(link_format(&l, link, sizeof(link)) > 0);
  expect_example_link(r, link);
  expect_says(r, "holding the %zu bytes `hello, shoal\\n`", strlen(hello_text));
  expect_says(r, "with the mode and modification time of `hello.txt`");
  struct table t[2];
  assert_int_equal(tables_read(r->text, r->len, t, 2), 1);
  assert_non_null(strstr(t[0].rows[3].cell[1], name));
  tables_free(t, 1);

  /* The variants the text lists parse to the same link. */
  assert_int_equal(link_parse(link, strlen(link), &back, &why), 0);
  char id_text[TEXTID_STRLEN];
  char key_text[TEXTID_STRLEN];
  textid_encode(TEXTID_CONTENT, l.id, id_text);
  textid_encode(TEXTID_KEY, l.trackers[0].key, key_text);
  for (char *c = id_text; *c; c++) {
    *c = (char)toupper((unsigned char)*c);
  }
  expect_says(r, "`SHOAL:` in capitals");
  expect_says(r, "`name=Notes%%20(%%c3%%a9t%%C3%%A9)%%20+1.txt`");
  expect_says(r, "`%%5B2001:db8::1%%5D:7070`");
  snprintf(link, sizeof(link),
           "SHOAL:%s?x-one=1&size=13&tracker=tracker.example.org:7070&"
           "name=Notes%%20(%%c3%%a9t%%C3%%A9)%%20+1.txt&x-two=&"
           "key=%s&tracker=%%5B2001:db8::1%%5D:7070",
           id_text, key_text);
  assert_int_equal(link_parse(link, strlen(link), &alt, &why), 0);
  assert_memory_equal(&alt, &back, sizeof(alt));
  manifest_free(m);
  identity_close(&tk);
}

static void test_link_tiers_example(void **state) {
  const struct region *r = example("link-tiers");
  static const char name[] = "Notes (\xC3\xA9t\xC3\xA9) +1.txt";
  struct identity k1;
  struct identity k2;
  struct share_link l;
  struct share_link back;
  char link[LINK_MAX_CHARS + 1];
  const char *why = NULL;
  (void)state;
  struct manifest *m = hello_manifest(name);
  key_from(&k1, 0x40);
  key_from(&k2, 0x60);
  example_link_base(&l, m, name);
  l.tracker_count = 3;
  snprintf(l.trackers[0].host, sizeof(l.trackers[0].host),
           "tracker.example.org");
  snprintf(l.trackers[1].host, sizeof(l.trackers[1].host), "2001:db8::1");
  snprintf(l.trackers[2].host, sizeof(l.trackers[2].host), "192.0.2.10");
  for (unsigned i = 0; i < 3; i++) {
    l.trackers[i].port = 7070;
    l.trackers[i].has_key = 1;
    l.trackers[i].tier = i == 2 ? 1 : 0;
    memcpy(l.trackers[i].key, i == 2 ? k2.pk : k1.pk, TEXTID_BYTES);
  }
  assert_true(link_format(&l, link, sizeof(link)) > 0);
  expect_example_link(r, link);
  expect_says(r, "the key of seed `40 41 ... 5f`");
  expect_says(r, "the key of seed `60 61 ... 7f`");

  /* Another order is the same link; tier3 for tier2 is a gap. */
  char id_text[TEXTID_STRLEN];
  char key1[TEXTID_STRLEN];
  char key2[TEXTID_STRLEN];
  textid_encode(TEXTID_CONTENT, l.id, id_text);
  textid_encode(TEXTID_KEY, k1.pk, key1);
  textid_encode(TEXTID_KEY, k2.pk, key2);
  assert_int_equal(link_parse(link, strlen(link), &back, &why), 0);
  assert_memory_equal(&back, &l, sizeof(l));
  snprintf(link, sizeof(link),
           "shoal:%s?tier2=192.0.2.10:7070@%s&name=Notes%%20%%28%%C3%%A9t%%C3"
           "%%A9%%29%%20%%2B1.txt&tier1=tracker.example.org:7070@%s&size=13&"
           "tier1=[2001:db8::1]:7070@%s",
           id_text, key2, key1, key1);
  assert_int_equal(link_parse(link, strlen(link), &back, &why), 0);
  assert_memory_equal(&back, &l, sizeof(l));
  expect_says(r, "from 1 without a gap");
  char *tier2 = strstr(link, "tier2");
  tier2[4] = '3';
  assert_int_equal(link_parse(link, strlen(link), &back, &why), SHOAL_EBADLINK);
  assert_non_null(strstr(why, "from 1 without a gap"));
  manifest_free(m);
  identity_close(&k1);
  identity_close(&k2);
}

/* ---------------------------------------------------------------------- */
/* Tracker messages. */

static struct tmsg_lookup example_lookup(const uint8_t *content) {
  struct tmsg_lookup q;
  struct identity a;
  key_from(&a, 0x01);
  memset(&q, 0, sizeof(q));
  memcpy(q.content, content, TMSG_ID_BYTES);
  q.want = 50;
  q.flags = TMSG_LOOKUP_SEEDERS_FIRST;
  memcpy(q.asker, a.pk, IDENTITY_PK_BYTES);
  identity_close(&a);
  return q;
}

static void test_tracker_lookup_example(void **state) {
  const struct region *r = example("tracker-lookup");
  struct buf payload, body, frame;
  (void)state;
  struct manifest *m = hello_manifest("hello.txt");
  struct tmsg_lookup q = example_lookup(m->id);
  buf_init(&payload, 4096);
  buf_init(&body, 4096);
  buf_init(&frame, 4096);
  assert_int_equal(tmsg_lookup_encode(&payload, &q), 0);
  assert_int_equal(
      tmsg_query_encode(&body, TMSG_LOOKUP, 7, payload.data, payload.len), 0);
  frame_with_header(&frame, &body);
  expect_dump(r, frame.data, frame.len);
  expect_says(r,
              "the content ID of the `hello.txt` manifest from section "
              "\"Manifest\" (`%s`)",
              id_abbrev(m->id));
  expect_says(r, "as sent on the connection (%zu bytes)", frame.len);
  expect_says(r, "body length %zu", body.len);
  expect_says(r, "payload length %zu", payload.len);
  buf_free(&payload);
  buf_free(&body);
  buf_free(&frame);
  manifest_free(m);
}

/* The announce of the examples, sealed into env. */
static void example_announce(struct buf *env, const uint8_t *content,
                             size_t *payload_len) {
  struct tmsg_announce an;
  struct identity a;
  struct buf payload;
  key_from(&a, 0x01);
  memset(&an, 0, sizeof(an));
  an.port = 7071;
  an.event = TMSG_EVENT_STARTED;
  an.count = 1;
  memcpy(an.items[0].content, content, TMSG_ID_BYTES);
  an.items[0].role = TMSG_ROLE_SEEDING;
  an.items[0].left = 0;
  buf_init(&payload, 4096);
  assert_int_equal(tmsg_announce_encode(&payload, &an), 0);
  assert_int_equal(envelope_seal(env, ENVELOPE_TRACKER_REQUEST, TMSG_ANNOUNCE,
                                 &a, EX_TIMESTAMP, EX_SEQ, payload.data,
                                 payload.len),
                   0);
  *payload_len = payload.len;
  buf_free(&payload);
  identity_close(&a);
}

static void test_tracker_announce_example(void **state) {
  const struct region *r = example("tracker-announce");
  struct buf env, frame;
  size_t payload_len;
  (void)state;
  struct manifest *m = hello_manifest("hello.txt");
  buf_init(&env, 4096);
  buf_init(&frame, 4096);
  example_announce(&env, m->id, &payload_len);
  frame_with_header(&frame, &env);
  expect_dump(r, frame.data, frame.len);
  expect_says(r, "(%zu bytes on the connection)", frame.len);
  expect_says(r, "body length %zu", env.len);
  expect_says(r, "payload length %zu", payload_len);
  expect_says(r, "the %zu envelope bytes above", env.len - ENVELOPE_SIG_BYTES);
  expect_says(r, "timestamp %s", grp(EX_TIMESTAMP));
  expect_says(r, "sequence number %s", grp(EX_SEQ));
  buf_free(&env);
  buf_free(&frame);
  manifest_free(m);
}

static void test_tracker_announce_ok_example(void **state) {
  const struct region *r = example("tracker-announce-ok");
  struct tmsg_announce_ok ok = {.seq = EX_SEQ,
                                .interval_s = REGISTRY_INTERVAL_DEFAULT,
                                .min_interval_s = 450,
                                .accepted = 1};
  struct identity t;
  struct buf payload, env;
  (void)state;
  key_from(&t, 0x40);
  buf_init(&payload, 4096);
  buf_init(&env, 4096);
  assert_int_equal(tmsg_announce_ok_encode(&payload, &ok), 0);
  assert_int_equal(envelope_seal(&env, ENVELOPE_TRACKER_REPLY, TMSG_ANNOUNCE_OK,
                                 &t, EX_TIMESTAMP, 1, payload.data,
                                 payload.len),
                   0);
  expect_says(r, "%zu-byte `announce_ok` payload", payload.len);
  expect_says(r, "(%zu bytes, %zu with the frame header)", env.len,
              env.len + FRAME_HEADER_BYTES);
  expect_says(r, "first 8 payload bytes are `%s`", hex_spaced(payload.data, 8));
  buf_free(&payload);
  buf_free(&env);
  identity_close(&t);
}

/* The length of what an encoder wrote into b, whose result is rc; b is
 * freed. */
static size_t written_len(struct buf *b, int rc) {
  assert_int_equal(rc, 0);
  size_t n = b->len;
  buf_free(b);
  return n;
}

static size_t query_len(size_t payload) {
  struct buf b;
  uint8_t p[300] = {0};
  assert_true(payload <= sizeof(p));
  buf_init(&b, 4096);
  return written_len(&b, tmsg_query_encode(&b, TMSG_LOOKUP, 1, p, payload));
}

static void test_query_layout(void **state) {
  const struct region *r = example("layout-query");
  (void)state;
  assert_int_equal(query_len(0), TMSG_QUERY_HEADER_BYTES);
  assert_int_equal(query_len(7), TMSG_QUERY_HEADER_BYTES + 7);
  expect_table_end(r, 0, TMSG_QUERY_HEADER_BYTES, "n");
  expect_says(r, "`TMSG_QUERY_HEADER_BYTES` = %u bytes",
              TMSG_QUERY_HEADER_BYTES);
  expect_says(r, "body length minus %u", TMSG_QUERY_HEADER_BYTES);
}

static size_t announce_len(uint16_t k) {
  static struct tmsg_announce an;
  struct buf b;
  memset(&an, 0, sizeof(an));
  an.port = 1;
  an.count = k;
  buf_init(&b, 1 << 16);
  return written_len(&b, tmsg_announce_encode(&b, &an));
}

/* A message of a fixed part and n items of one size, where len(n) is its
 * length and sym the letter the text of r gives n: the text states both
 * sizes, and r's two tables end at them. */
static void expect_items_layout(const struct region *r,
                                size_t (*len)(uint16_t n), const char *sym) {
  char cell[32];
  size_t fixed = len(0);
  size_t per = len(1) - fixed;
  assert_int_equal(len(3), fixed + 3 * per);
  expect_says(r, "`%zu + %zu \xC3\x97 %s` bytes", fixed, per, sym);
  expect_says(r, "exactly `%zu \xC3\x97 %s`", per, sym);
  snprintf(cell, sizeof(cell), "%zu\xC3\x97%s", per, sym);
  expect_table_end(r, 0, fixed, cell);
  expect_table_end(r, 1, per, "");
}

static void test_announce_layout(void **state) {
  const struct region *r = example("layout-announce");
  (void)state;
  expect_items_layout(r, announce_len, "k");
  expect_says(r, "`TMSG_MAX_ANNOUNCE_ITEMS` = %u", TMSG_MAX_ANNOUNCE_ITEMS);
}

/* A message of a fixed n bytes: the text of r says "<lead>n bytes:" and its
 * table ends at n. */
static void expect_fixed_size(const struct region *r, const char *lead,
                              size_t n) {
  expect_says(r, "%s%zu bytes:", lead, n);
  expect_table_end(r, 0, n, "");
}

static void test_announce_ok_layout(void **state) {
  struct tmsg_announce_ok ok = {0};
  struct buf b;
  (void)state;
  buf_init(&b, 4096);
  expect_fixed_size(example("layout-announce-ok"), "",
                    written_len(&b, tmsg_announce_ok_encode(&b, &ok)));
  /* With the certificate. */
  ok.has_cert = 1;
  buf_init(&b, 4096);
  size_t with = written_len(&b, tmsg_announce_ok_encode(&b, &ok));
  expect_table_end(example("layout-announce-ok"), 1, with, "");
  expect_says(example("layout-announce-ok"), "the reply is then %zu bytes",
              with);
}

/* The certificate the document shows, and its layout. */
static void example_cert(uint8_t out[TMSG_CERT_BYTES]) {
  struct identity t, a;
  struct tmsg_cert c;
  key_from(&t, 0x41);
  key_from(&a, 0x01);
  memset(&c, 0, sizeof(c));
  c.family = 4;
  c.addr[0] = 192;
  c.addr[2] = 2;
  c.addr[3] = 7;
  c.port = 7071;
  c.lifetime_s = 3600;
  c.issued_ms = EX_TIMESTAMP;
  memcpy(c.peer, a.pk, 32);
  assert_int_equal(tmsg_cert_seal(&t, &c, out), 0);
  identity_close(&t);
  identity_close(&a);
}

static void test_cert_layout(void **state) {
  const struct region *r = example("layout-cert");
  (void)state;
  expect_table_end(r, 0, TMSG_CERT_BYTES, "");
  expect_says(r, "`TMSG_CERT_BYTES` = %u bytes", TMSG_CERT_BYTES);
  expect_says(r, "`TMSG_CERT_VERSION` = %u", TMSG_CERT_VERSION);
  expect_says(r, "\"shoal/1 address certificate\" || 0x00 || bytes 0 .. %u",
              TMSG_CERT_SIGNED_BYTES);
}

static void test_cert_example(void **state) {
  const struct region *r = example("cert-example");
  uint8_t raw[TMSG_CERT_BYTES];
  struct tmsg_cert c;
  struct identity t;
  (void)state;
  example_cert(raw);
  expect_dump(r, raw, sizeof(raw));
  /* And it opens as the document says. */
  key_from(&t, 0x41);
  struct tmsg_cert_policy pol = {.keys = t.pk,
                                 .nkeys = 1,
                                 .now_ms = EX_TIMESTAMP,
                                 .window_ms = ENVELOPE_WINDOW_MS_DEFAULT};
  assert_int_equal(tmsg_cert_open(raw, sizeof(raw), &pol, &c), 0);
  assert_int_equal(c.port, 7071);
  identity_close(&t);
}

static void test_lookup_layout(void **state) {
  const struct region *r = example("layout-lookup");
  struct tmsg_lookup q = {0};
  struct buf b;
  (void)state;
  buf_init(&b, 4096);
  expect_fixed_size(r, "Exactly ", written_len(&b, tmsg_lookup_encode(&b, &q)));
  expect_says(r, "`TMSG_MAX_PEERS` = %u", TMSG_MAX_PEERS);
}

static size_t lookup_ok_len(uint16_t c) {
  static struct tmsg_lookup_ok ok;
  struct buf b;
  memset(&ok, 0, sizeof(ok));
  ok.count = c;
  buf_init(&b, 1 << 16);
  return written_len(&b, tmsg_lookup_ok_encode(&b, &ok));
}

static void test_lookup_ok_layout(void **state) {
  (void)state;
  expect_items_layout(example("layout-lookup-ok"), lookup_ok_len, "c");
}

static size_t publish_len(size_t name_len) {
  struct tmsg_publish p;
  struct buf b;
  memset(&p, 0, sizeof(p));
  memset(p.name, 'n', name_len);
  buf_init(&b, 4096);
  return written_len(&b, tmsg_publish_encode(&b, &p));
}

/* A message of `fixed` bytes and a string of at most max bytes, named
 * max_name, whose length the text of r calls sym; at_max is the length of
 * the message with the longest string. */
static void expect_string_layout(const struct region *r, size_t fixed,
                                 size_t at_max, const char *sym,
                                 const char *max_name, unsigned max) {
  assert_int_equal(at_max, fixed + max);
  expect_says(r, "`%zu + %s` bytes", fixed, sym);
  expect_says(r, "`%s` = %u", max_name, max);
  expect_table_end(r, 0, fixed, sym);
}

static void test_publish_layout(void **state) {
  (void)state;
  /* A name has at least one byte. */
  expect_string_layout(example("layout-publish"), publish_len(1) - 1,
                       publish_len(TMSG_MAX_NAME), "L", "TMSG_MAX_NAME",
                       TMSG_MAX_NAME);
}

static void test_publish_ok_layout(void **state) {
  struct tmsg_publish_ok ok = {0};
  struct buf b;
  (void)state;
  buf_init(&b, 4096);
  expect_fixed_size(example("layout-publish-ok"), "",
                    written_len(&b, tmsg_publish_ok_encode(&b, &ok)));
}

static size_t search_len(size_t q) {
  struct tmsg_search s;
  struct buf b;
  memset(&s, 0, sizeof(s));
  memset(s.query, 'q', q);
  buf_init(&b, 4096);
  return written_len(&b, tmsg_search_encode(&b, &s));
}

static void test_search_layout(void **state) {
  const struct region *r = example("layout-search");
  (void)state;
  expect_string_layout(r, search_len(0), search_len(TMSG_MAX_QUERY), "Q",
                       "TMSG_MAX_QUERY", TMSG_MAX_QUERY);
  expect_says(r, "`TMSG_MAX_RESULTS` = %u", TMSG_MAX_RESULTS);
}

/* A search page of n results whose names have name_len bytes each. */
static size_t search_ok_len(uint16_t n, size_t name_len) {
  static struct tmsg_search_ok ok;
  struct buf b;
  memset(&ok, 0, sizeof(ok));
  ok.count = n;
  for (uint16_t i = 0; i < n; i++) {
    memset(ok.results[i].name, 'r', name_len);
  }
  buf_init(&b, 1 << 16);
  return written_len(&b, tmsg_search_ok_encode(&b, &ok));
}

static void test_search_ok_layout(void **state) {
  const struct region *r = example("layout-search-ok");
  (void)state;
  size_t fixed = search_ok_len(0, 0);
  size_t per = search_ok_len(1, 0) - fixed;
  assert_int_equal(search_ok_len(2, 5), fixed + 2 * (per + 5));
  expect_says(r, "`%zu + sum(%zu + L_i)` bytes", fixed, per);
  expect_says(r, "Each result (`%zu + L` bytes)", per);
  expect_says(r, "at most %u, else `SHOAL_ETOOBIG`", TMSG_MAX_RESULTS);
  expect_table_end(r, 1, per, "L");
}

static size_t error_len(size_t reason) {
  struct tmsg_error e;
  struct buf b;
  memset(&e, 0, sizeof(e));
  e.code = SHOAL_ERATE;
  memset(e.reason, 'r', reason);
  buf_init(&b, 4096);
  return written_len(&b, tmsg_error_encode(&b, &e));
}

static void test_error_layout(void **state) {
  const struct region *r = example("layout-error");
  uint8_t wire[4];
  (void)state;
  expect_string_layout(r, error_len(0), error_len(TMSG_MAX_REASON), "R",
                       "TMSG_MAX_REASON", TMSG_MAX_REASON);
  buf_put_be32(wire, (uint32_t)SHOAL_ERATE);
  expect_says(r, "`SHOAL_ERATE`, %d, is `%s`", SHOAL_ERATE,
              hex_spaced(wire, 4));
}

static void test_error_code_table(void **state) {
  const struct region *r = example("error-codes");
  struct table t[2];
  char name[64];
  (void)state;
  assert_int_equal(tables_read(r->text, r->len, t, 2), 1);
  assert_true(t[0].nrows > 1);
  for (unsigned i = 1; i < t[0].nrows; i++) {
    const struct row *w = &t[0].rows[i];
    int code = 0;
    unticked(w->cell[0], name, sizeof(name));
    for (int e = SHOAL_ERR_BASE_ + 1; e < SHOAL_ERR_END_; e++) {
      if (strcmp(shoal_err_name(e), name) == 0) {
        code = e;
      }
    }
    if (code == 0) {
      print_error("error-codes line %u: %s is not a shoal error\n", w->line,
                  name);
      fail();
    }
    char value[16];
    uint8_t wire[4];
    snprintf(value, sizeof(value), "%d", code);
    buf_put_be32(wire, (uint32_t)code);
    char want_wire[32];
    snprintf(want_wire, sizeof(want_wire), "`%s`", hex_spaced(wire, 4));
    if (strcmp(w->cell[1], value) != 0 || strcmp(w->cell[2], want_wire) != 0) {
      print_error("error-codes line %u: %s is %s, %s in the document; the "
                  "code says %s, %s\n",
                  w->line, name, w->cell[1], w->cell[2], value, want_wire);
      fail();
    }
  }
  tables_free(t, 1);
}

/* The largest request and reply a tracker connection carries. */
static void test_tracker_frame_sizes(void **state) {
  const struct region *r = example("tracker-transport");
  static struct tmsg_announce an;
  static struct tmsg_search_ok sok;
  static struct tmsg_lookup_ok lok;
  struct tmsg_publish pub;
  struct tmsg_search s;
  struct tmsg_error err;
  struct buf b;
  (void)state;
  size_t req = 0;
  size_t rep = 0;
  buf_init(&b, 1 << 20);
  memset(&an, 0, sizeof(an));
  an.port = 1;
  an.count = TMSG_MAX_ANNOUNCE_ITEMS;
  assert_int_equal(tmsg_announce_encode(&b, &an), 0);
  req = b.len + ENVELOPE_OVERHEAD;
  buf_reset(&b);
  memset(&pub, 0, sizeof(pub));
  memset(pub.name, 'n', TMSG_MAX_NAME);
  assert_int_equal(tmsg_publish_encode(&b, &pub), 0);
  req = b.len + ENVELOPE_OVERHEAD > req ? b.len + ENVELOPE_OVERHEAD : req;
  memset(&s, 0, sizeof(s));
  memset(s.query, 'q', TMSG_MAX_QUERY);
  buf_reset(&b);
  assert_int_equal(tmsg_search_encode(&b, &s), 0);
  req = b.len + TMSG_QUERY_HEADER_BYTES > req ? b.len + TMSG_QUERY_HEADER_BYTES
                                              : req;
  expect_says(r, "the largest valid request is %s bytes", grp(req));

  memset(&sok, 0, sizeof(sok));
  sok.count = TMSG_MAX_RESULTS;
  for (unsigned i = 0; i < TMSG_MAX_RESULTS; i++) {
    memset(sok.results[i].name, 'r', TMSG_MAX_NAME);
  }
  buf_reset(&b);
  assert_int_equal(tmsg_search_ok_encode(&b, &sok), 0);
  rep = b.len + ENVELOPE_OVERHEAD;
  memset(&lok, 0, sizeof(lok));
  lok.count = TMSG_MAX_PEERS;
  buf_reset(&b);
  assert_int_equal(tmsg_lookup_ok_encode(&b, &lok), 0);
  assert_true(b.len + ENVELOPE_OVERHEAD < rep);
  memset(&err, 0, sizeof(err));
  err.code = SHOAL_EINVAL;
  memset(err.reason, 'r', TMSG_MAX_REASON);
  buf_reset(&b);
  assert_int_equal(tmsg_error_encode(&b, &err), 0);
  assert_true(b.len + ENVELOPE_OVERHEAD < rep);
  expect_says(r, "the largest reply is %s bytes (a full search page)",
              grp(rep));
  expect_says(r, "`TRACKER_FRAME_DEFAULT` = %u KiB (%s bytes",
              TRACKER_FRAME_DEFAULT >> 10, grp(TRACKER_FRAME_DEFAULT));
  buf_free(&b);
}

/* ---------------------------------------------------------------------- */
/* Peer wire. */

struct peer_ex {
  struct identity a;
  struct identity b;
  struct pwire_eph ea;
  struct pwire_eph eb;
  struct pwire_session sa; /* A, the initiator */
  struct pwire_session sb;
  struct manifest *m;
};

static void peer_ex_init(struct peer_ex *x) {
  key_from(&x->a, 0x01);
  key_from(&x->b, 0x01); /* B is the publisher: the same key as the file's */
  eph_from(&x->ea, 0x21);
  eph_from(&x->eb, 0x41);
  assert_int_equal(pwire_session_init(&x->sa, &x->ea, x->eb.pk, 1), 0);
  assert_int_equal(pwire_session_init(&x->sb, &x->eb, x->ea.pk, 0), 0);
  x->m = hello_manifest("hello.txt");
}

static void peer_ex_close(struct peer_ex *x) {
  identity_close(&x->a);
  identity_close(&x->b);
  pwire_eph_close(&x->ea);
  pwire_eph_close(&x->eb);
  pwire_session_close(&x->sa);
  pwire_session_close(&x->sb);
  manifest_free(x->m);
}

static void test_hello_layout(void **state) {
  const struct region *r = example("layout-hello");
  struct peer_ex x;
  struct pwire_hello h;
  struct buf b;
  uint8_t len_field[4];
  (void)state;
  peer_ex_init(&x);
  memset(&h, 0, sizeof(h));
  buf_init(&b, 4096);
  assert_int_equal(pwire_hello_seal(&b, &x.a, 1, 1, &h), 0);
  expect_table_end(r, 0, PWIRE_HELLO_PAYLOAD_BYTES, "");
  expect_says(r, "`PWIRE_HELLO_PAYLOAD_BYTES` = %u bytes",
              PWIRE_HELLO_PAYLOAD_BYTES);
  expect_says(r, "`PWIRE_HELLO` = %u", PWIRE_HELLO);
  expect_says(r, "The whole hello is therefore %zu bytes", b.len);
  buf_put_be32(len_field, PWIRE_HELLO_PAYLOAD_BYTES);
  expect_says(r, "payload length `%s`", hex_spaced(len_field, 4));
  expect_says(r, "the %u-byte payload at offset %u", PWIRE_HELLO_PAYLOAD_BYTES,
              ENVELOPE_HEADER_BYTES);
  expect_says(r, "signature at offset %zu", b.len - ENVELOPE_SIG_BYTES);
  buf_free(&b);
  peer_ex_close(&x);
}

static void test_nonce_layout(void **state) {
  const struct region *r = example("layout-nonce");
  struct table t[2];
  struct dump d;
  (void)state;
  expect_table_end(r, 0, PWIRE_NONCE_BYTES, "");
  expect_says(r, "(`PWIRE_NONCE_BYTES` = %u)", PWIRE_NONCE_BYTES);
  assert_int_equal(tables_read(r->text, r->len, t, 2), 1);
  span_bytes(t[0].rows[1].cell[2], &d, t[0].rows[1].line);
  assert_int_equal(d.n, PWIRE_NONCE_BYTES - 8);
  for (size_t i = 0; i < d.n; i++) {
    assert_int_equal(d.b[i], 0);
  }
  dump_free(&d);
  tables_free(t, 1);
}

/* The chunks of the longest HAVE (docs/protocol.md, "Layouts"): varints
 * of 4 bytes cost 2^21 of the 2^32 chunk numbers each, so all 1 024 can be
 * that long, and what is left pays for some of them to be 5 bytes long
 * (2^28 each): `five` of them, the rest 2^21. */
static void longest_have(uint32_t *chunks, unsigned five) {
  uint64_t next = 0;
  for (unsigned i = 0; i < PWIRE_HAVE_MAX; i++) {
    uint64_t v = i < five ? 1u << 28 : 1u << 21;
    uint64_t c = next + v;
    chunks[i] = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
    next = c + 1;
  }
}

/* The shortest and the longest HAVE message. */
static void have_range(size_t *lo, size_t *hi) {
  static uint32_t chunks[PWIRE_HAVE_MAX];
  static uint8_t payload[PWIRE_HAVE_MAX_BYTES];
  struct pwire_msg m;
  struct buf b;
  unsigned five = 0;
  buf_init(&b, 1 << 16);
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_HAVE;
  m.data = payload;
  chunks[0] = 0;
  m.data_len = pwire_have_put(payload, chunks, 1);
  assert_int_equal(pwire_encode(&b, &m), 0);
  *lo = b.len;
  /* As many 5-byte varints as the chunk numbers allow: one more, and the
   * last chunk passes 2^32 - 1, so the encoder refuses it. */
  for (;;) {
    buf_reset(&b);
    longest_have(chunks, five + 1);
    m.data_len = pwire_have_put(payload, chunks, PWIRE_HAVE_MAX);
    if (m.data_len == 0 || pwire_encode(&b, &m) != 0) {
      break;
    }
    five++;
  }
  assert_true(five > 0 && five < PWIRE_HAVE_MAX);
  buf_reset(&b);
  longest_have(chunks, five);
  m.data_len = pwire_have_put(payload, chunks, PWIRE_HAVE_MAX);
  assert_int_equal(m.data_len, 5 * five + 4 * (PWIRE_HAVE_MAX - five));
  assert_int_equal(pwire_encode(&b, &m), 0);
  *hi = b.len;
  /* One more chunk is refused however short. */
  static const uint8_t zeros[PWIRE_HAVE_MAX + 1] = {0};
  buf_reset(&b);
  m.data = zeros;
  m.data_len = PWIRE_HAVE_MAX;
  assert_int_equal(pwire_encode(&b, &m), 0);
  buf_reset(&b);
  m.data_len = PWIRE_HAVE_MAX + 1;
  assert_int_equal(pwire_encode(&b, &m), SHOAL_EINVAL);
  buf_free(&b);
}

/* The shortest and the longest encoding of a message type. */
static void message_range(uint8_t type, size_t *lo, size_t *hi) {
  static uint8_t data[PWIRE_MANIFEST_PART_BYTES];
  struct pwire_msg m;
  struct buf b;
  size_t max_data = 0;
  if (type == PWIRE_HAVE) {
    have_range(lo, hi);
    return;
  }
  buf_init(&b, 1 << 20);
  memset(&m, 0, sizeof(m));
  m.type = type;
  m.length = 1;
  m.total = MANIFEST_MAX_BYTES;
  m.data = data;
  switch (type) {
  case PWIRE_MANIFEST_PART:
    max_data = PWIRE_MANIFEST_PART_BYTES;
    break;
  case PWIRE_HAVE_MAP:
    max_data = (MANIFEST_MAX_CHUNKS + 7) / 8;
    break;
  case PWIRE_DATA:
    max_data = PWIRE_BLOCK_BYTES;
    break;
  case PWIRE_PEX:
    max_data = PWIRE_PEX_MAX_RECORDS * TMSG_CERT_BYTES;
    break;
  default:
    break;
  }
  size_t unit = type == PWIRE_PEX ? TMSG_CERT_BYTES : 1;
  m.data_len = max_data ? unit : 0;
  assert_int_equal(pwire_encode(&b, &m), 0);
  *lo = b.len;
  buf_reset(&b);
  if (max_data) {
    m.data_len = max_data;
  } else if (type == PWIRE_MANIFEST_REQ) {
    m.length = PWIRE_MANIFEST_PART_BYTES;
  } else {
    m.length = PWIRE_BLOCK_BYTES;
  }
  assert_int_equal(pwire_encode(&b, &m), 0);
  *hi = b.len;
  /* One more is refused. */
  buf_reset(&b);
  if (max_data) {
    m.data_len = max_data + unit;
    assert_int_equal(pwire_encode(&b, &m), SHOAL_EINVAL);
  }
  buf_free(&b);
}

/* A value as the document writes it: "262 153", "65 536 (64 KiB)",
 * "16 KiB", "2^24", "300 000 ms", "1 s" (unit_ms scales seconds to the
 * milliseconds of a _MS constant). Returns 0 when it is not a value. */
static int parse_value(const char *cell, int unit_ms, uint64_t *out) {
  char s[128];
  const char *p;
  uint64_t v = 0;
  unticked(cell, s, sizeof(s));
  p = s;
  if (!isdigit((unsigned char)*p)) {
    return 0;
  }
  if (p[0] == '2' && p[1] == '^') {
    char *end;
    errno = 0;
    unsigned long e = strtoul(p + 2, &end, 10);
    if (errno != 0 || e > 63) {
      return 0;
    }
    *out = (uint64_t)1 << e;
    return 1;
  }
  for (;;) {
    while (isdigit((unsigned char)*p)) {
      v = v * 10 + (uint64_t)(*p - '0');
      p++;
    }
    /* "1 048 456": a space followed by exactly three digits continues. */
    if (p[0] == ' ' && isdigit((unsigned char)p[1]) &&
        isdigit((unsigned char)p[2]) && isdigit((unsigned char)p[3]) &&
        !isdigit((unsigned char)p[4])) {
      p++;
      continue;
    }
    break;
  }
  if (strncmp(p, " KiB", 4) == 0) {
    v <<= 10;
  } else if (strncmp(p, " MiB", 4) == 0) {
    v <<= 20;
  } else if (strncmp(p, " s", 2) == 0 && (p[2] == '\0' || p[2] == ' ') &&
             unit_ms) {
    v *= 1000;
  }
  *out = v;
  return 1;
}

struct limit {
  const char *name;
  uint64_t value;
};

#define LIMIT(n)                                                               \
  { #n, (uint64_t)(n) }

static const struct limit limits[] = {
    LIMIT(FRAME_HEADER_BYTES),
    LIMIT(FRAME_MAX_DEFAULT),
    LIMIT(FRAME_MAX_LIMIT),
    LIMIT(FRAME_KEEP_BYTES),
    LIMIT(ENVELOPE_VERSION),
    LIMIT(ENVELOPE_HEADER_BYTES),
    LIMIT(ENVELOPE_SIG_BYTES),
    LIMIT(ENVELOPE_OVERHEAD),
    LIMIT(ENVELOPE_PAYLOAD_MAX),
    LIMIT(ENVELOPE_WINDOW_MS_DEFAULT),
    LIMIT(ENVELOPE_CLASS_COUNT),
    LIMIT(REPLAY_WINDOW),
    LIMIT(REPLAY_MAX_SENDERS),
    LIMIT(REPLAY_EVICT_SAMPLE),
    LIMIT(REPLAY_INITIAL_SLOTS),
    LIMIT(TEXTID_BYTES),
    LIMIT(TEXTID_CHECK_BYTES),
    LIMIT(TEXTID_CHARS),
    LIMIT(TEXTID_STRLEN),
    LIMIT(TEXTID_SHORT_CHARS),
    LIMIT(IDENTITY_PK_BYTES),
    LIMIT(IDENTITY_SK_BYTES),
    LIMIT(IDENTITY_SIG_BYTES),
    LIMIT(IDENTITY_FILE_BYTES),
    LIMIT(MANIFEST_VERSION),
    LIMIT(MANIFEST_HASH_BYTES),
    LIMIT(MANIFEST_ID_BYTES),
    LIMIT(MANIFEST_CHUNK_LOG2_MIN),
    LIMIT(MANIFEST_CHUNK_LOG2_MAX),
    LIMIT(MANIFEST_TARGET_CHUNKS),
    LIMIT(MANIFEST_MAX_FILES),
    LIMIT(MANIFEST_MAX_FOLDERS),
    LIMIT(MANIFEST_NSEC_LIMIT),
    LIMIT(MANIFEST_MAX_CHUNKS),
    LIMIT(MANIFEST_MAX_PATH),
    LIMIT(MANIFEST_MAX_SEGMENT),
    LIMIT(MANIFEST_MAX_DEPTH),
    LIMIT(MANIFEST_MAX_BYTES),
    LIMIT(MANIFEST_JOB_BYTES),
    LIMIT(MANIFEST_READ_BYTES),
    LIMIT(LINK_MAX_CHARS),
    LIMIT(LINK_MAX_TRACKERS),
    LIMIT(LINK_MAX_TIERS),
    LIMIT(LINK_MAX_HOST),
    LIMIT(TMSG_QUERY_CLASS),
    LIMIT(TMSG_QUERY_HEADER_BYTES),
    LIMIT(TMSG_ID_BYTES),
    LIMIT(TMSG_MAX_ANNOUNCE_ITEMS),
    LIMIT(TMSG_MAX_PEERS),
    LIMIT(TMSG_MAX_QUERY),
    LIMIT(TMSG_MAX_RESULTS),
    LIMIT(TMSG_MAX_REASON),
    LIMIT(TMSG_MAX_NAME),
    LIMIT(PWIRE_HELLO),
    LIMIT(PWIRE_HELLO_PAYLOAD_BYTES),
    LIMIT(PWIRE_KEY_BYTES),
    LIMIT(PWIRE_TAG_BYTES),
    LIMIT(PWIRE_NONCE_BYTES),
    LIMIT(PWIRE_BLOCK_BYTES),
    LIMIT(PWIRE_MANIFEST_PART_BYTES),
    LIMIT(PWIRE_HAVE_MAX),
    LIMIT(PWIRE_HAVE_VARINT_MAX),
    LIMIT(PWIRE_HAVE_MAX_BYTES),
    LIMIT(PWIRE_MAX_PLAIN),
    LIMIT(PWIRE_MAX_FRAME),
    LIMIT(PWIRE_PEX_MAX_RECORDS),
    LIMIT(TMSG_CERT_VERSION),
    LIMIT(TMSG_CERT_SIGNED_BYTES),
    LIMIT(TMSG_CERT_BYTES),
    LIMIT(TMSG_CERT_LIFETIME_MIN_S),
    LIMIT(TMSG_CERT_LIFETIME_MAX_S),
    LIMIT(TRACKER_PORT_DEFAULT),
    LIMIT(TRACKER_MAX_LISTEN),
    LIMIT(TRACKER_MAX_CONNS_DEFAULT),
    LIMIT(TRACKER_MAX_PER_ADDR_DEFAULT),
    LIMIT(TRACKER_IDLE_DEFAULT_S),
    LIMIT(TRACKER_FRAME_DEFAULT),
    LIMIT(TRACKER_MAX_PENDING),
    LIMIT(TRACKER_TICK_MS),
    LIMIT(TRACKER_SWEEP_WORK),
    LIMIT(TRACKER_GUARD_SENDERS),
    LIMIT(TRACKER_CACHE_SLOTS),
    LIMIT(TRACKER_CACHE_MS),
    LIMIT(REGISTRY_INTERVAL_DEFAULT),
    LIMIT(REGISTRY_MIN_INTERVAL_DIV),
    LIMIT(REGISTRY_GRACE_DIV),
    LIMIT(REGISTRY_JITTER_DIV),
    LIMIT(REGISTRY_MAX_PEERS_DEFAULT),
    LIMIT(CATALOG_MAX_DEFAULT),
    LIMIT(CATALOG_TTL_DEFAULT),
    LIMIT(CATALOG_MAX_WORDS),
    LIMIT(RATELIMIT_RATE_DEFAULT),
    LIMIT(RATELIMIT_BURST_DEFAULT),
    LIMIT(RATELIMIT_SLOTS_DEFAULT),
    LIMIT(RATELIMIT_SAMPLE),
    LIMIT(NODE_HELLO_MS),
    LIMIT(NODE_MAX_PENDING),
    LIMIT(NODE_MAX_REMOTE_REQUESTS),
    LIMIT(NODE_PIPELINE),
    LIMIT(NODE_REQUEST_TIMEOUT_MS),
    LIMIT(NODE_REQUEST_TIMEOUT_MAX_MS),
    LIMIT(NODE_REJECTS_CLOSE),
    LIMIT(NODE_QUEUE_MS),
    LIMIT(NODE_QUEUE_MIN),
    LIMIT(NODE_WRITE_QUEUE_MAX),
    LIMIT(NODE_SEND_BUFFER_MAX),
    LIMIT(NODE_SEND_SEGMENTS),
    LIMIT(NODE_WRITE_QUEUE_HARD),
    LIMIT(NODE_HAVE_MS),
    LIMIT(NODE_HAVE_SLOW_MS),
    LIMIT(NODE_MANIFEST_WAYS),
    LIMIT(NODE_MANIFEST_UNITS),
    LIMIT(NODE_MANIFEST_UNIT_MIN),
    LIMIT(NODE_MANIFEST_AGAIN_MS),
    LIMIT(NODE_HAVE_BATCH),
    LIMIT(NODE_KEEPALIVE_MS),
    LIMIT(NODE_IDLE_MS),
    LIMIT(NODE_UPLOAD_SLOTS),
    LIMIT(NODE_SEED_SLOTS),
    LIMIT(NODE_RECHOKE_MS),
    LIMIT(NODE_SEED_RECHOKE_MS),
    LIMIT(NODE_OPTIMISTIC_MS),
    LIMIT(NODE_STRIKES_BAN),
    LIMIT(PEX_MAX_MESSAGES_PER_MIN),
    LIMIT(PEX_SEND_MS),
    LIMIT(PEX_BURST),
    LIMIT(PEX_MAX_KEPT),
    LIMIT(PEX_DIAL_MS),
    LIMIT(PEX_GIVEN_MAX),
    LIMIT(PEX_OWN_MAX),
    LIMIT(PEX_ASK_MS),
};

/* Rows whose constant this program cannot see: SESSION_HELLO_FRAME_MAX is
 * private to peer/session.c, and --max-swarms has no constant. */
static const char *const limits_unseen[] = {"SESSION_HELLO_FRAME_MAX",
                                            "(none)"};

/* Every row of the limit tables of r names a constant and its value. */
static void check_limit_rows(const struct region *r) {
  struct table *t = calloc(MAX_TABLES, sizeof(*t));
  unsigned bad = 0;
  unsigned rows = 0;
  assert_non_null(t);
  unsigned n = tables_read(r->text, r->len, t, MAX_TABLES);
  for (unsigned i = 0; i < n; i++) {
    for (unsigned j = 1; j < t[i].nrows; j++) {
      const struct row *w = &t[i].rows[j];
      char name[64];
      unticked(w->cell[0], name, sizeof(name));
      int unseen = 0;
      for (size_t k = 0; k < sizeof(limits_unseen) / sizeof(*limits_unseen);
           k++) {
        unseen |= strcmp(name, limits_unseen[k]) == 0;
      }
      if (unseen) {
        continue;
      }
      const struct limit *l = NULL;
      for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
        if (strcmp(limits[k].name, name) == 0) {
          l = &limits[k];
        }
      }
      uint64_t v = 0;
      size_t nl = strlen(name);
      int ms = nl > 3 && (strcmp(name + nl - 3, "_MS") == 0 ||
                          strstr(name, "_MS_") != NULL);
      rows++;
      if (l == NULL) {
        print_error("example %s line %u: %s is not a constant this program "
                    "knows\n",
                    r->name, w->line, name);
        bad++;
      } else if (!parse_value(w->cell[1], ms, &v) || v != l->value) {
        print_error("example %s line %u: %s is %s in the document, %llu in "
                    "the code\n",
                    r->name, w->line, name, w->cell[1],
                    (unsigned long long)l->value);
        bad++;
      }
    }
  }
  tables_free(t, n);
  free(t);
  assert_true(rows > 0);
  assert_int_equal(bad, 0);
}

static void test_message_table(void **state) {
  const struct region *r = example("pwire-messages");
  static const struct {
    const char *name;
    uint8_t type;
  } types[] = {
      {"PWIRE_MANIFEST_REQ", PWIRE_MANIFEST_REQ},
      {"PWIRE_MANIFEST_PART", PWIRE_MANIFEST_PART},
      {"PWIRE_HAVE_MAP", PWIRE_HAVE_MAP},
      {"PWIRE_HAVE", PWIRE_HAVE},
      {"PWIRE_INTERESTED", PWIRE_INTERESTED},
      {"PWIRE_NOT_INTERESTED", PWIRE_NOT_INTERESTED},
      {"PWIRE_CHOKE", PWIRE_CHOKE},
      {"PWIRE_UNCHOKE", PWIRE_UNCHOKE},
      {"PWIRE_REQUEST", PWIRE_REQUEST},
      {"PWIRE_DATA", PWIRE_DATA},
      {"PWIRE_CANCEL", PWIRE_CANCEL},
      {"PWIRE_REJECT", PWIRE_REJECT},
      {"PWIRE_KEEPALIVE", PWIRE_KEEPALIVE},
      {"PWIRE_PEX", PWIRE_PEX},
  };
  struct table t[3];
  char name[64];
  char want[64];
  (void)state;
  assert_int_equal(tables_read(r->text, r->len, t, 3), 2);
  assert_int_equal(t[0].nrows, 1 + sizeof(types) / sizeof(types[0]));
  for (unsigned i = 1; i < t[0].nrows; i++) {
    const struct row *w = &t[0].rows[i];
    unsigned k = i - 1;
    size_t lo, hi;
    unticked(w->cell[0], name, sizeof(name));
    assert_string_equal(name, types[k].name);
    snprintf(want, sizeof(want), "%u", types[k].type);
    assert_string_equal(w->cell[1], want);
    message_range(types[k].type, &lo, &hi);
    if (lo == hi) {
      snprintf(want, sizeof(want), "%zu", lo);
    } else {
      snprintf(want, sizeof(want), "%s .. %s", grp(lo), grp(hi));
    }
    if (strcmp(w->cell[3], want) != 0) {
      print_error("example %s line %u: %s is %s bytes long in the document, "
                  "%s in the code\n",
                  r->name, w->line, name, w->cell[3], want);
      fail();
    }
  }
  /* The named maximums. */
  for (unsigned i = 1; i < t[1].nrows; i++) {
    const struct row *w = &t[1].rows[i];
    uint64_t v = 0;
    unticked(w->cell[0], name, sizeof(name));
    uint64_t expect = 0;
    if (strcmp(name, "have-map bytes") == 0) {
      expect = (MANIFEST_MAX_CHUNKS + 7) / 8;
    } else {
      for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
        if (strcmp(limits[k].name, name) == 0) {
          expect = limits[k].value;
        }
      }
    }
    if (expect == 0 || !parse_value(w->cell[1], 0, &v) || v != expect) {
      print_error("example %s line %u: %s is %s in the document, %llu in the "
                  "code\n",
                  r->name, w->line, name, w->cell[1],
                  (unsigned long long)expect);
      fail();
    }
  }
  tables_free(t, 2);
}

static size_t encoded_len(const struct pwire_msg *m) {
  struct buf b;
  buf_init(&b, 1 << 20);
  return written_len(&b, pwire_encode(&b, m));
}

static void test_message_layouts(void **state) {
  const struct region *r = example("layout-pwire");
  static const uint8_t data[4] = {0};
  struct pwire_msg m;
  (void)state;
  memset(&m, 0, sizeof(m));
  m.type = PWIRE_MANIFEST_REQ;
  m.length = 1;
  expect_table_end(r, 0, encoded_len(&m), "");
  m.type = PWIRE_MANIFEST_PART;
  m.total = 4;
  m.data = data;
  m.data_len = 4;
  expect_table_end(r, 1, encoded_len(&m) - 4, "n");
  m.type = PWIRE_HAVE_MAP;
  expect_table_end(r, 2, encoded_len(&m) - 4, "b");
  m.type = PWIRE_HAVE;
  m.data_len = 1; /* chunk 0 */
  expect_table_end(r, 3, encoded_len(&m) - 1, "v");
  m.data_len = 4;
  m.type = PWIRE_REQUEST;
  expect_table_end(r, 4, encoded_len(&m), "");
  m.type = PWIRE_DATA;
  expect_table_end(r, 5, encoded_len(&m) - 4, "n");
  static const uint8_t record[TMSG_CERT_BYTES] = {0};
  m.type = PWIRE_PEX;
  m.data = record;
  m.data_len = TMSG_CERT_BYTES;
  expect_table_end(r, 6, encoded_len(&m) - TMSG_CERT_BYTES, "160k");
  expect_says(r, "`PEX` (type %u)", PWIRE_PEX);
}

static void test_have_map_example(void **state) {
  const struct region *r = example("have-map");
  static const uint32_t held[] = {0, 1, 9};
  uint8_t map[2] = {0};
  (void)state;
  for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++) {
    map[held[i] / 8] |= (uint8_t)(0x80u >> (held[i] % 8));
  }
  assert_int_equal(pwire_check_have_map(map, sizeof(map), 10), 0);
  /* The rule is the one pwire_check_have_map holds the unused bits to. */
  uint8_t stray[2] = {map[0], (uint8_t)(map[1] | 0x20)};
  assert_int_equal(pwire_check_have_map(stray, sizeof(stray), 10),
                   SHOAL_EFORMAT);
  expect_says(r,
              "with 10 chunks of which 0, 1 and 9 are held, the have-map "
              "is `%s`",
              hex_spaced(map, sizeof(map)));
}

static void example_hello(const struct peer_ex *x, struct buf *out) {
  struct pwire_hello h;
  memset(&h, 0, sizeof(h));
  memcpy(h.content, x->m->id, MANIFEST_ID_BYTES);
  memcpy(h.eph_pk, x->ea.pk, sizeof(h.eph_pk));
  h.port = 7072;
  h.flags = 0;
  assert_int_equal(pwire_hello_seal(out, &x->a, EX_TIMESTAMP, EX_SEQ, &h), 0);
}

static void test_hello_example(void **state) {
  const struct region *r = example("hello-a");
  struct peer_ex x;
  struct buf b;
  uint8_t hdr[FRAME_HEADER_BYTES];
  (void)state;
  peer_ex_init(&x);
  buf_init(&b, 4096);
  example_hello(&x, &b);
  expect_dump(r, b.data, b.len);
  expect_says(r, "content ID `%s`", id_abbrev(x.m->id));
  frame_header(hdr, b.len);
  expect_says(r,
              "(%zu bytes; %zu on the connection after the frame header "
              "`%s`)",
              b.len, b.len + FRAME_HEADER_BYTES, hex_spaced(hdr, 4));
  expect_says(r, "the %zu bytes above", b.len - ENVELOPE_SIG_BYTES);
  expect_says(r, "timestamp %s", grp(EX_TIMESTAMP));
  expect_says(r, "sequence number %s", grp(EX_SEQ));
  expect_says(r, "listen port 7072, no flags");
  /* B opens it. */
  struct envelope_policy pol = {.cls = ENVELOPE_PEER_HELLO};
  struct pwire_hello got;
  assert_int_equal(pwire_hello_open(b.data, b.len, &pol, &got, NULL), 0);
  buf_free(&b);
  peer_ex_close(&x);
}

static void test_session_keys_example(void **state) {
  const struct region *r = example("session-keys");
  struct peer_ex x;
  uint8_t want[3 * 32];
  (void)state;
  peer_ex_init(&x);
  assert_memory_equal(x.sa.tx, x.sb.rx, PWIRE_KEY_BYTES);
  assert_memory_equal(x.sb.tx, x.sa.rx, PWIRE_KEY_BYTES);
  memcpy(want, x.eb.pk, 32);
  memcpy(want + 32, x.sa.tx, 32);
  memcpy(want + 64, x.sb.tx, 32);
  expect_dump(r, want, sizeof(want));
  expect_says(r, "A is the kx client");
  peer_ex_close(&x);
}

/* The messages of the example session, in order. */
struct frame_ex {
  const char *type_name;
  int from_b;
  struct pwire_msg m;
};

static void test_session_frames_example(void **state) {
  const struct region *r = example("session-frames");
  static const uint8_t map_b[] = {0x80};
  static const uint8_t map_a[] = {0x00};
  static const uint8_t have[] = {0};
  struct peer_ex x;
  struct table t[2];
  (void)state;
  peer_ex_init(&x);
  const struct frame_ex frames[] = {
      {"HAVE_MAP", 1, {.type = PWIRE_HAVE_MAP, .data = map_b, .data_len = 1}},
      {"MANIFEST_REQ",
       0,
       {.type = PWIRE_MANIFEST_REQ, .length = PWIRE_MANIFEST_PART_BYTES}},
      {"MANIFEST_PART",
       1,
       {.type = PWIRE_MANIFEST_PART,
        .total = (uint32_t)x.m->encoded_len,
        .data = x.m->encoded,
        .data_len = x.m->encoded_len}},
      {"HAVE_MAP", 0, {.type = PWIRE_HAVE_MAP, .data = map_a, .data_len = 1}},
      {"INTERESTED", 0, {.type = PWIRE_INTERESTED}},
      {"UNCHOKE", 1, {.type = PWIRE_UNCHOKE}},
      {"REQUEST",
       0,
       {.type = PWIRE_REQUEST, .length = (uint32_t)strlen(hello_text)}},
      {"DATA",
       1,
       {.type = PWIRE_DATA,
        .data = (const uint8_t *)hello_text,
        .data_len = strlen(hello_text)}},
      {"HAVE", 0, {.type = PWIRE_HAVE, .data = have, .data_len = 1}},
      {"NOT_INTERESTED", 0, {.type = PWIRE_NOT_INTERESTED}},
  };
  const size_t nframes = sizeof(frames) / sizeof(frames[0]);
  assert_int_equal(tables_read(r->text, r->len, t, 2), 1);
  assert_int_equal(t[0].nrows, 1 + nframes);
  for (size_t i = 0; i < nframes; i++) {
    const struct row *w = &t[0].rows[i + 1];
    const struct frame_ex *f = &frames[i];
    struct pwire_session *s = f->from_b ? &x.sb : &x.sa;
    struct buf plain, body;
    char want[64];
    char label[64];

    /* Who sends, under which counter, and which message. */
    snprintf(want, sizeof(want), "%s #%llu", f->from_b ? "B to A" : "A to B",
             (unsigned long long)s->tx_count);
    if (strcmp(w->cell[0], want) != 0) {
      print_error("example %s line %u: frame \"%s\", the code's frame is "
                  "\"%s\"\n",
                  r->name, w->line, w->cell[0], want);
      fail();
    }
    snprintf(want, sizeof(want), "`%s`", f->type_name);
    assert_int_equal(strncmp(w->cell[1], want, strlen(want)), 0);
    buf_init(&plain, 1 << 20);
    buf_init(&body, 1 << 20);
    assert_int_equal(pwire_encode(&plain, &f->m), 0);
    assert_int_equal(pwire_seal(s, &body, plain.data, plain.len), 0);

    struct dump d;
    snprintf(label, sizeof(label), "frame %s, plaintext", w->cell[0]);
    span_bytes(w->cell[2], &d, w->line);
    if (f->m.type == PWIRE_MANIFEST_PART) {
      /* The header is shown; the rest is "the manifest". */
      expect_bytes(r, label, &d, plain.data, 9);
      assert_non_null(strstr(w->cell[2], "and the manifest"));
      snprintf(want, sizeof(want), "total %zu, offset 0, the %zu signed",
               x.m->encoded_len, x.m->encoded_len);
      assert_non_null(strstr(w->cell[1], want));
    } else {
      expect_bytes(r, label, &d, plain.data, plain.len);
    }
    dump_free(&d);
    snprintf(label, sizeof(label), "frame %s, body", w->cell[0]);
    span_bytes(w->cell[3], &d, w->line);
    if (f->m.type == PWIRE_MANIFEST_PART) {
      snprintf(want, sizeof(want), "%zu bytes, starting `%s`", body.len,
               hex_spaced(body.data, 4));
      if (strcmp(w->cell[3], want) != 0) {
        print_error("example %s line %u: the body is \"%s\", the code's "
                    "\"%s\"\n",
                    r->name, w->line, w->cell[3], want);
        fail();
      }
    } else {
      expect_bytes(r, label, &d, body.data, body.len);
    }
    dump_free(&d);

    /* And the other side opens it. */
    struct pwire_session *o = f->from_b ? &x.sa : &x.sb;
    uint8_t *out = malloc(body.len);
    assert_non_null(out);
    assert_int_equal(pwire_open(o, body.data, body.len, out, body.len),
                     (int)plain.len);
    free(out);
    buf_free(&plain);
    buf_free(&body);
  }
  tables_free(t, 1);
  expect_says(r, "the nonce is `00 00 00 00` followed by `n` as a `u64`");
  expect_says(r, "A checks the %zu manifest bytes", x.m->encoded_len);
  expect_says(r, "the %zu data bytes", strlen(hello_text));
  peer_ex_close(&x);
}

static void test_limits_tables(void **state) {
  (void)state;
  check_limit_rows(example("limits-common"));
  check_limit_rows(example("limits-tracker"));
  check_limit_rows(example("limits-peer"));
}

/* Runs last: each marked example was looked at by a test above. */
static void test_every_marked_example_was_checked(void **state) {
  unsigned bad = 0;
  (void)state;
  need_document();
  for (size_t i = 0; i < g_nregions; i++) {
    if (!g_regions[i].checked) {
      print_error("example %s (line %u) was not checked\n", g_regions[i].name,
                  g_regions[i].line);
      bad++;
    }
  }
  assert_int_equal(bad, 0);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_document_is_found_and_well_marked),
      cmocka_unit_test(test_every_example_in_the_document_is_marked),
      cmocka_unit_test(test_layout_tables_add_up),
      cmocka_unit_test(test_frame_layout),
      cmocka_unit_test(test_envelope_layout),
      cmocka_unit_test(test_envelope_example),
      cmocka_unit_test(test_text_id_examples),
      cmocka_unit_test(test_key_file_layout),
      cmocka_unit_test(test_manifest_layout),
      cmocka_unit_test(test_manifest_decoding),
      cmocka_unit_test(test_manifest_file_example),
      cmocka_unit_test(test_manifest_folder_example),
      cmocka_unit_test(test_link_example),
      cmocka_unit_test(test_link_tiers_example),
      cmocka_unit_test(test_tracker_frame_sizes),
      cmocka_unit_test(test_query_layout),
      cmocka_unit_test(test_announce_layout),
      cmocka_unit_test(test_announce_ok_layout),
      cmocka_unit_test(test_cert_layout),
      cmocka_unit_test(test_cert_example),
      cmocka_unit_test(test_lookup_layout),
      cmocka_unit_test(test_lookup_ok_layout),
      cmocka_unit_test(test_publish_layout),
      cmocka_unit_test(test_publish_ok_layout),
      cmocka_unit_test(test_search_layout),
      cmocka_unit_test(test_search_ok_layout),
      cmocka_unit_test(test_error_layout),
      cmocka_unit_test(test_error_code_table),
      cmocka_unit_test(test_tracker_lookup_example),
      cmocka_unit_test(test_tracker_announce_example),
      cmocka_unit_test(test_tracker_announce_ok_example),
      cmocka_unit_test(test_hello_layout),
      cmocka_unit_test(test_nonce_layout),
      cmocka_unit_test(test_message_table),
      cmocka_unit_test(test_message_layouts),
      cmocka_unit_test(test_have_map_example),
      cmocka_unit_test(test_hello_example),
      cmocka_unit_test(test_session_keys_example),
      cmocka_unit_test(test_session_frames_example),
      cmocka_unit_test(test_limits_tables),
      cmocka_unit_test(test_every_marked_example_was_checked),
  };
  return cmocka_run_group_tests(tests, load_document, free_document);
}
