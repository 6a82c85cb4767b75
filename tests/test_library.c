/* Unit tests for peer/library.c: the daemon's library file, read strictly
 * and written atomically, and the list of contents in memory.
 *
 * The hostile file is the main case: a valid file cut at every length and
 * with bits flipped at every position, a wrong type and a bad value for
 * every field, counts over their limits, duplicates, other versions, and a
 * file too big to read. Each must fail with one line naming the file (and
 * the entry and the field where there is one), leave the disk as it was
 * and hold nothing (the ASan build finds a leak), or load a library that
 * saves and loads back equal. A save must leave no temporary file, and a
 * failed save must keep the old file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/link.h"
#include "common/manifest.h"
#include "common/textid.h"
#include "peer/library.h"
#include "tests/lib/errassert.h"
#include "tests/lib/testutil.h"

static char g_dir[512];
static char g_file[600];

static int setup(void **state) {
  (void)state;
  tu_tmpdir(g_dir, sizeof(g_dir));
  tu_path(g_file, sizeof(g_file), g_dir, LIBRARY_FILE);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  chmod(g_dir, 0700);
  tu_rmtree(g_dir);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Helpers */

static void make_id(uint8_t id[MANIFEST_ID_BYTES], uint64_t seed) {
  tu_fill(id, MANIFEST_ID_BYTES, seed);
}

static void id_text(char out[TEXTID_STRLEN], uint64_t seed) {
  uint8_t id[MANIFEST_ID_BYTES];
  make_id(id, seed);
  textid_encode(TEXTID_CONTENT, id, out);
}

/* A share link of the content make_id(seed). */
static void make_link(char *out, size_t cap, uint64_t seed, const char *name) {
  struct share_link sl;
  uint8_t key[32];
  memset(&sl, 0, sizeof(sl));
  tu_fill(key, sizeof(key), seed + 1000);
  make_id(sl.id, seed);
  snprintf(sl.name, sizeof(sl.name), "%s", name);
  sl.size = 123456789;
  sl.tracker_count = 2;
  snprintf(sl.trackers[0].host, sizeof(sl.trackers[0].host), "127.0.0.1");
  sl.trackers[0].port = 7070;
  snprintf(sl.trackers[1].host, sizeof(sl.trackers[1].host), "::1");
  sl.trackers[1].port = 7071;
  link_set_key(&sl, key);
  assert_true(link_format(&sl, out, cap) > 0);
}

static void write_text(const char *text, size_t len) {
  tu_write_file(g_dir, LIBRARY_FILE, text, len);
}

static void write_str(const char *text) {
  write_text(text, strlen(text));
}

/* Entries in g_dir now (a save must leave only library.json). */
static int dir_entries(void) {
  DIR *d = opendir(g_dir);
  struct dirent *de;
  int n = 0;
  assert_non_null(d);
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
      n++;
    }
  }
  closedir(d);
  return n;
}

/* Loads g_dir's library, expecting want; on failure, checks that msg is
 * one line that starts with the file's path and that l holds no entry. */
static int load(struct library *l, char *msg, size_t cap) {
  int rc = library_load(l, g_dir, msg, cap);
  if (rc != 0) {
    size_t plen = strlen(g_file);
    if (strncmp(msg, g_file, plen) != 0 || msg[plen] != ':' ||
        strchr(msg, '\n') != NULL) {
      print_error("bad message for %s: \"%s\"\n", shoal_err_name(rc), msg);
      fail();
    }
    assert_int_equal(l->count, 0);
    assert_null(l->entries);
  }
  return rc;
}

/* Expects the load of text to fail with want and a message holding
 * needle (when not NULL). */
static void expect_fail(const char *text, int want, const char *needle) {
  struct library l;
  char msg[1024];
  int rc;

  write_str(text);
  rc = load(&l, msg, sizeof(msg));
  if (rc != want || (needle != NULL && strstr(msg, needle) == NULL)) {
    print_error("text: %.300s\nmessage: %s\nwanted %s with \"%s\"\n", text, msg,
                shoal_err_name(want), needle != NULL ? needle : "");
  }
  assert_err(rc, want);
  if (needle != NULL) {
    assert_non_null(strstr(msg, needle));
  }
  library_close(&l);
}

static void expect_ok(const char *text, struct library *l) {
  char msg[1024];
  int rc;

  write_str(text);
  rc = load(l, msg, sizeof(msg));
  if (rc != 0) {
    print_error("text: %.300s\nmessage: %s\n", text, msg);
  }
  assert_err(rc, 0);
}

static void assert_entry_equal(const struct library_entry *a,
                               const struct library_entry *b) {
  assert_memory_equal(a->content, b->content, MANIFEST_ID_BYTES);
  assert_int_equal(a->kind, b->kind);
  assert_string_equal(a->name, b->name);
  if (a->link == NULL || b->link == NULL) {
    assert_ptr_equal(a->link, b->link);
  } else {
    assert_string_equal(a->link, b->link);
  }
  assert_string_equal(a->path, b->path);
  assert_int_equal(a->paused, b->paused);
  assert_int_equal(a->complete, b->complete);
  assert_true(a->added == b->added);
  assert_true(a->uploaded == b->uploaded);
  assert_true(a->downloaded == b->downloaded);
  assert_string_equal(a->error, b->error);
  assert_int_equal(a->nfiles, b->nfiles);
  for (uint32_t k = 0; k < a->nfiles; k++) {
    assert_true(a->files[k].size == b->files[k].size);
    assert_true(a->files[k].mtime_sec == b->files[k].mtime_sec);
    assert_true(a->files[k].mtime_nsec == b->files[k].mtime_nsec);
    assert_true(a->files[k].ino == b->files[k].ino);
  }
}

static void assert_library_equal(const struct library *a,
                                 const struct library *b) {
  assert_int_equal(a->count, b->count);
  for (uint32_t i = 0; i < a->count; i++) {
    assert_entry_equal(&a->entries[i], &b->entries[i]);
  }
}

/* Three contents with every field set, in l (loaded from the empty g_dir).
 * The records hold the extremes: a size of 2^63 - 1 (JSON numbers here are
 * signed 64-bit; a file's size is an off_t), negative seconds, the largest
 * nanoseconds, and inodes with the top bit set. */
static void fill_sample(struct library *l) {
  static const struct library_file rec0[] = {
      {(uint64_t)INT64_MAX, -5, 999999999, UINT64_MAX},
      {0, INT64_MIN, 0, (uint64_t)1 << 63},
      {12345, 1700000000, 123, 42},
  };
  static const struct library_file rec2[] = {
      {1, 0, 1, 0},
  };
  char link[LINK_MAX_CHARS];
  uint8_t id[MANIFEST_ID_BYTES];
  struct library_entry *e;
  char msg[256];
  int err = 1;

  assert_err(library_load(l, g_dir, msg, sizeof(msg)), 0);
  assert_int_equal(l->count, 0);

  make_id(id, 1);
  e = library_add(l, id, LIBRARY_SHARE, "photos", "/home/ann", &err);
  assert_non_null(e);
  assert_err(err, 0);
  make_link(link, sizeof(link), 1, "photos");
  assert_err(library_set_link(l, e, link), 0);
  e->complete = 1;
  e->added = 1700000000;
  e->uploaded = (uint64_t)INT64_MAX;
  assert_err(library_set_files(l, e, rec0, 3), 0);

  make_id(id, 2);
  e = library_add(l, id, LIBRARY_DOWNLOAD,
                  "\xc3\x9cn\xc3\xaf"
                  "code \xe6\x96\x87\xe4\xbb\xb6.tar",
                  "/tmp/out dir", &err);
  assert_non_null(e);
  e->paused = 1;
  e->uploaded = 5;
  e->downloaded = (uint64_t)1 << 40;
  library_set_error(l, e, "disk full: %s \xe2\x9c\x93", "no space");

  make_id(id, 3);
  e = library_add(l, id, LIBRARY_DOWNLOAD, "a \"quoted\" name", "/", &err);
  assert_non_null(e);
  make_link(link, sizeof(link), 3, "a \"quoted\" name");
  assert_err(library_set_link(l, e, link), 0);
  e->complete = 1;
  e->added = 1;
  library_set_error(l, e, "a \"quoted\"\nline\t\\ %d", 7);
  assert_err(library_set_files(l, e, rec2, 1), 0);
  assert_true(l->dirty);
}

/* The sample saved, and its bytes. */
static char *sample_file(size_t *len) {
  struct library l;
  char *text;

  fill_sample(&l);
  assert_err(library_save(&l), 0);
  library_close(&l);
  text = tu_read_text(g_file, len);
  assert_non_null(text);
  return text;
}

/* One entry of the form the field tests change: each field's text, or the
 * value given for field (NULL: the field left out). */
static void entry_text(char *out, size_t cap, const char *field,
                       const char *value) {
  char id[TEXTID_STRLEN];
  char link[LINK_MAX_CHARS];
  char quoted_id[TEXTID_STRLEN + 2];
  char quoted_link[LINK_MAX_CHARS + 2];
  const char *names[] = {"id",       "kind",       "name",     "link",
                         "path",     "paused",     "complete", "added",
                         "uploaded", "downloaded", "error",    "files"};
  const char *values[12];
  size_t o = 0;
  int first = 1;

  id_text(id, 9);
  make_link(link, sizeof(link), 9, "a");
  snprintf(quoted_id, sizeof(quoted_id), "\"%s\"", id);
  snprintf(quoted_link, sizeof(quoted_link), "\"%s\"", link);
  values[0] = quoted_id;
  values[1] = "\"share\"";
  values[2] = "\"a\"";
  values[3] = quoted_link;
  values[4] = "\"/x\"";
  values[5] = "false";
  values[6] = "true";
  values[7] = "1";
  values[8] = "2";
  values[9] = "3";
  values[10] = "\"e\"";
  values[11] = "[[1,2,3,4]]";

  o += (size_t)snprintf(out + o, cap - o, "{\"version\":1,\"contents\":[{");
  for (size_t f = 0; f < 12; f++) {
    const char *v = values[f];
    if (field != NULL && strcmp(field, names[f]) == 0) {
      v = value;
    }
    if (v == NULL) {
      continue;
    }
    o += (size_t)snprintf(out + o, cap - o, "%s\"%s\":%s", first ? "" : ",",
                          names[f], v);
    first = 0;
    assert_true(o < cap);
  }
  o += (size_t)snprintf(out + o, cap - o, "}]}");
  assert_true(o < cap);
}

/* ------------------------------------------------------------------------ */
/* Round trip */

static void round_trip_keeps_every_field(void **state) {
  struct library a, b;
  struct stat st;
  char msg[256];

  (void)state;
  fill_sample(&a);
  assert_err(library_save(&a), 0);
  assert_false(a.dirty);
  assert_int_equal(dir_entries(), 1);
  assert_int_equal(stat(g_file, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);

  assert_err(load(&b, msg, sizeof(msg)), 0);
  assert_false(b.dirty);
  assert_int_equal(b.count, 3);
  assert_library_equal(&a, &b);
  assert_string_equal(b.path, g_file);
  assert_int_equal(b.entries[0].nfiles, 3);
  assert_true(b.entries[0].files[0].size == (uint64_t)INT64_MAX);
  assert_true(b.entries[0].files[0].ino == UINT64_MAX);
  assert_true(b.entries[0].files[1].ino == (uint64_t)1 << 63);
  assert_true(b.entries[0].files[1].mtime_sec == INT64_MIN);
  assert_null(b.entries[1].link);
  assert_int_equal(b.entries[1].kind, LIBRARY_DOWNLOAD);

  /* Saving what was loaded writes the same bytes. */
  {
    size_t len1, len2;
    char *t1 = tu_read_text(g_file, &len1);
    assert_err(library_save(&b), 0);
    char *t2 = tu_read_text(g_file, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(t1, t2, len1);
    free(t1);
    free(t2);
  }
  assert_int_equal(dir_entries(), 1);
  library_close(&a);
  library_close(&b);
}

static void counts_past_int64_are_saved_saturated(void **state) {
  struct library l, m;
  uint8_t id[MANIFEST_ID_BYTES];
  struct library_entry *e;
  char msg[256];
  int err;

  (void)state;
  assert_err(load(&l, msg, sizeof(msg)), 0);
  make_id(id, 5);
  e = library_add(&l, id, LIBRARY_SHARE, "x", "/x", &err);
  assert_non_null(e);
  e->uploaded = UINT64_MAX;
  e->downloaded = (uint64_t)INT64_MAX + 1;
  e->added = -3;
  assert_err(library_save(&l), 0);
  assert_err(load(&m, msg, sizeof(msg)), 0);
  assert_true(m.entries[0].uploaded == (uint64_t)INT64_MAX);
  assert_true(m.entries[0].downloaded == (uint64_t)INT64_MAX);
  assert_true(m.entries[0].added == 0);
  library_close(&l);
  library_close(&m);
}

static void missing_or_empty_library_loads_empty(void **state) {
  struct library l;
  char msg[256];
  char home[700];

  (void)state;
  /* No file. */
  assert_err(load(&l, msg, sizeof(msg)), 0);
  assert_int_equal(l.count, 0);
  assert_false(l.dirty);
  assert_string_equal(l.path, g_file);
  library_close(&l);
  assert_int_equal(dir_entries(), 0); /* a load writes nothing */

  /* No home folder either. */
  snprintf(home, sizeof(home), "%s/none", g_dir);
  assert_err(library_load(&l, home, msg, sizeof(msg)), 0);
  assert_int_equal(l.count, 0);
  library_close(&l);

  /* An empty list, saved and loaded. */
  expect_ok("{\"version\":1,\"contents\":[]}", &l);
  assert_int_equal(l.count, 0);
  assert_err(library_save(&l), 0);
  library_close(&l);
  expect_ok(" {\"contents\" : [ ], \"version\" : 1}\n\n", &l);
  assert_int_equal(l.count, 0);
  library_close(&l);
}

static void closing_a_zeroed_library_is_harmless(void **state) {
  struct library l;
  (void)state;
  memset(&l, 0, sizeof(l));
  library_close(&l);
  library_close(&l);
  assert_null(l.path);
}

/* ------------------------------------------------------------------------ */
/* Hostile files */

static void truncation_at_every_length_fails_cleanly(void **state) {
  size_t len;
  char *text;
  char *orig;

  (void)state;
  text = sample_file(&len);
  for (size_t cut = 0; cut < len; cut++) {
    struct library l;
    char msg[512];
    int rc;

    write_text(text, cut);
    rc = load(&l, msg, sizeof(msg));
    /* Only the final newline may go. */
    if (cut == len - 1) {
      assert_err(rc, 0);
      assert_int_equal(l.count, 3);
    } else {
      if (rc != SHOAL_EFORMAT) {
        print_error("cut at %zu: %s: %s\n", cut, shoal_err_name(rc), msg);
      }
      assert_err(rc, SHOAL_EFORMAT);
      assert_true(strlen(msg) > strlen(g_file) + 2);
      /* The failed load left the file as it was. */
      size_t now;
      orig = tu_read_text(g_file, &now);
      assert_int_equal(now, cut);
      assert_memory_equal(orig, text, cut);
      free(orig);
    }
    library_close(&l);
  }
  assert_int_equal(dir_entries(), 1);
  free(text);
}

/* What a load accepted must be a library the daemon can live with: every
 * field in range, and saved and loaded back the same. */
static void assert_sane(struct library *l) {
  struct library m;
  char msg[512];

  for (uint32_t i = 0; i < l->count; i++) {
    const struct library_entry *e = &l->entries[i];
    assert_true(e->kind == LIBRARY_SHARE || e->kind == LIBRARY_DOWNLOAD);
    assert_err(manifest_check_segment(e->name, strlen(e->name)), 0);
    assert_non_null(e->path);
    assert_true(e->path[0] == '/');
    assert_true(strlen(e->error) < LIBRARY_ERROR_BYTES);
    assert_true(e->nfiles <= MANIFEST_MAX_FILES);
    for (uint32_t k = 0; k < e->nfiles; k++) {
      assert_true(e->files[k].mtime_nsec >= 0 &&
                  e->files[k].mtime_nsec < 1000000000);
    }
  }
  assert_err(library_save(l), 0);
  assert_err(load(&m, msg, sizeof(msg)), 0);
  assert_library_equal(l, &m);
  library_close(&m);
}

static void flipped_bits_fail_or_load_something_valid(void **state) {
  static const uint8_t masks[] = {0x01, 0x02, 0x08, 0x20, 0x80};
  size_t len;
  char *text;
  unsigned ok = 0, failed = 0;

  (void)state;
  text = sample_file(&len);
  for (size_t pos = 0; pos < len; pos++) {
    for (size_t m = 0; m < sizeof(masks); m++) {
      struct library l;
      char msg[512];
      int rc;

      text[pos] ^= (char)masks[m];
      write_text(text, len);
      rc = load(&l, msg, sizeof(msg));
      if (rc == 0) {
        ok++;
        assert_sane(&l);
      } else {
        failed++;
        assert_true(rc == SHOAL_EFORMAT || rc == SHOAL_EVERSION ||
                    rc == SHOAL_ETOOBIG);
        assert_true(strlen(msg) > strlen(g_file) + 2);
      }
      library_close(&l);
      text[pos] ^= (char)masks[m];
    }
  }
  /* Most flips break the file; a few (a digit, a letter of a name or a
   * path) leave another valid library. */
  assert_true(failed > ok);
  assert_true(ok > 0);
  assert_int_equal(dir_entries(), 1);
  free(text);
}

static void not_json_names_line_and_column(void **state) {
  char want[700];
  (void)state;
  snprintf(want, sizeof(want), "%s: line 3, column ", g_file);
  expect_fail("{\"version\": 1,\n \"contents\": [\n    x]}", SHOAL_EFORMAT,
              want);
  expect_fail("", SHOAL_EFORMAT, "line 1");
  expect_fail("{\"version\":1,\"contents\":[]} x", SHOAL_EFORMAT, "line 1");
  /* jansson refuses a duplicate key. */
  expect_fail("{\"version\":1,\"version\":1,\"contents\":[]}", SHOAL_EFORMAT,
              "duplicate");
  /* NUL inside a string. */
  expect_fail("{\"version\":1,\"contents\":[\"\\u0000\"]}", SHOAL_EFORMAT,
              "line 1");
}

static void wrong_shape_of_the_whole_is_refused(void **state) {
  (void)state;
  expect_fail("[]", SHOAL_EFORMAT, "must be a JSON object, not an array");
  expect_fail("{\"version\":1}", SHOAL_EFORMAT, "no \"contents\"");
  expect_fail("{\"version\":1,\"contents\":{}}", SHOAL_EFORMAT,
              "\"contents\" must be an array");
  expect_fail("{\"version\":1,\"contents\":[],\"extra\":0}", SHOAL_EFORMAT,
              "unknown field \"extra\"");
  expect_fail("{\"version\":1,\"contents\":[1]}", SHOAL_EFORMAT,
              "contents[0]: must be an object, not an integer");
  expect_fail("{\"version\":1,\"contents\":[null]}", SHOAL_EFORMAT,
              "contents[0]: must be an object, not null");
}

static void other_versions_are_named(void **state) {
  (void)state;
  expect_fail("{\"version\":2,\"contents\":[]}", SHOAL_EVERSION,
              "version 2 is not supported");
  /* The version is read first: a later format may differ in anything. */
  expect_fail("{\"version\":2,\"contents\":{\"new\":1}}", SHOAL_EVERSION,
              "version 2");
  expect_fail("{\"contents\":[]}", SHOAL_EVERSION, "no \"version\"");
  expect_fail("{\"version\":\"1\",\"contents\":[]}", SHOAL_EVERSION,
              "version \"1\"");
  expect_fail("{\"version\":1.0,\"contents\":[]}", SHOAL_EVERSION,
              "a real number");
  expect_fail("{\"version\":-1,\"contents\":[]}", SHOAL_EVERSION, "version -1");
  expect_fail("{\"version\":0,\"contents\":[]}", SHOAL_EVERSION, "version 0");
}

/* Bad values for one field, each refused with a message naming it. */
struct bad_value {
  const char *field;
  const char *value;
  const char *needle; /* after "contents[0].FIELD" */
};

static void every_field_checks_type_and_range(void **state) {
  static char long_name[300];
  static char long_path[4200];
  static char other_link[LINK_MAX_CHARS + 2];
  static char bad_sum[TEXTID_STRLEN + 2];
  char link[LINK_MAX_CHARS];
  char id[TEXTID_STRLEN];

  (void)state;
  memset(long_name, 0, sizeof(long_name));
  long_name[0] = '"';
  memset(long_name + 1, 'n', 256);
  long_name[257] = '"';
  memset(long_path, 0, sizeof(long_path));
  memcpy(long_path, "\"/", 2);
  memset(long_path + 2, 'p', 4095);
  long_path[4097] = '"';
  make_link(link, sizeof(link), 10, "a");
  snprintf(other_link, sizeof(other_link), "\"%s\"", link);
  /* One character of a valid ID changed: the checksum no longer matches. */
  id_text(id, 9);
  id[20] = id[20] == 'a' ? 'b' : 'a';
  snprintf(bad_sum, sizeof(bad_sum), "\"%s\"", id);

  const struct bad_value bad[] = {
      {"id", "null", "must be a string, not null"},
      {"id", "1", "must be a string, not an integer"},
      {"id", "\"\"", "not a content ID"},
      {"id", "\"abc\"", "not a content ID"},
      {"id", bad_sum, "checksum mismatch"},
      {"id", "[]", "must be a string, not an array"},
      {"kind", "\"Share\"", "must be \"share\" or \"download\""},
      {"kind", "\"\"", "must be \"share\" or \"download\""},
      {"kind", "1", "must be a string"},
      {"kind", "true", "must be a string, not a boolean"},
      {"name", "\"\"", "not a safe file name"},
      {"name", "\"a/b\"", "not a safe file name"},
      {"name", "\"..\"", "not a safe file name"},
      {"name", "\".\"", "not a safe file name"},
      {"name", "\"a\\u0001b\"", "not a safe file name"},
      {"name", "\"a\\\\b\"", "not a safe file name"},
      {"name", long_name, "not a safe file name"},
      {"name", "{}", "must be a string, not an object"},
      {"link", "null", "must be a string, not null"},
      {"link", "\"http://example.org/\"", "not a share link"},
      {"link", "\"shoal:\"", "not a share link"},
      {"link", other_link, "names another content"},
      {"link", "7", "must be a string"},
      {"path", "\"rel/ative\"", "must be an absolute path"},
      {"path", "\"\"", "must be an absolute path"},
      {"path", long_path, "must be an absolute path"},
      {"path", "null", "must be a string"},
      {"paused", "0", "must be true or false, not an integer"},
      {"paused", "\"false\"", "must be true or false, not a string"},
      {"paused", "null", "must be true or false"},
      {"complete", "1", "must be true or false"},
      {"complete", "[]", "must be true or false, not an array"},
      {"added", "-1", "must be a non-negative integer, not a negative one"},
      {"added", "1.5", "must be a non-negative integer, not a real number"},
      {"added", "\"1\"", "must be a non-negative integer, not a string"},
      {"uploaded", "-9223372036854775808", "non-negative"},
      {"uploaded", "true", "non-negative integer, not a boolean"},
      {"downloaded", "null", "non-negative integer, not null"},
      {"downloaded", "1e3", "non-negative integer, not a real number"},
      {"error", "null", "must be a string, not null"},
      {"error", "1", "must be a string"},
      {"error", "[\"x\"]", "must be a string, not an array"},
      {"files", "null", "must be an array, not null"},
      {"files", "{}", "must be an array, not an object"},
      {"files", "[1]", "files[0]: must be [size, mtime_s, mtime_ns, inode]"},
      {"files", "[[1,2,3]]", "files[0]: must be [size"},
      {"files", "[[1,2,3,4,5]]", "files[0]: must be [size"},
      {"files", "[[1,2,3,4],[1,2,3]]", "files[1]: must be [size"},
      {"files", "[[-1,0,0,0]]", "files[0][0]: a size must not be negative"},
      {"files", "[[0,0,-1,0]]", "files[0][2]: nanoseconds"},
      {"files", "[[0,0,1000000000,0]]", "files[0][2]: nanoseconds"},
      {"files", "[[0,0,0,\"7\"]]", "files[0][3]: must be an integer"},
      {"files", "[[0,0.5,0,0]]", "files[0][1]: must be an integer, not a real"},
      {"files", "[null]", "files[0]: must be [size"},
  };
  char text[16384];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char needle[700];
    snprintf(needle, sizeof(needle), "%s: contents[0].%s", g_file,
             bad[i].field);
    entry_text(text, sizeof(text), bad[i].field, bad[i].value);
    expect_fail(text, SHOAL_EFORMAT, needle);
    expect_fail(text, SHOAL_EFORMAT, bad[i].needle);
  }
}

static void required_fields_are_required(void **state) {
  static const char *required[] = {"id",    "kind",     "name",
                                   "path",  "paused",   "complete",
                                   "added", "uploaded", "downloaded"};
  static const char *optional[] = {"link", "error", "files"};
  char text[16384];
  char needle[700];
  struct library l;

  (void)state;
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
    entry_text(text, sizeof(text), required[i], NULL);
    snprintf(needle, sizeof(needle), "%s: contents[0].%s: missing", g_file,
             required[i]);
    expect_fail(text, SHOAL_EFORMAT, needle);
  }
  for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++) {
    entry_text(text, sizeof(text), optional[i], NULL);
    expect_ok(text, &l);
    assert_int_equal(l.count, 1);
    library_close(&l);
  }
  /* The full entry, and its values as read. */
  entry_text(text, sizeof(text), NULL, NULL);
  expect_ok(text, &l);
  assert_int_equal(l.count, 1);
  assert_int_equal(l.entries[0].kind, LIBRARY_SHARE);
  assert_string_equal(l.entries[0].name, "a");
  assert_string_equal(l.entries[0].path, "/x");
  assert_non_null(l.entries[0].link);
  assert_false(l.entries[0].paused);
  assert_true(l.entries[0].complete);
  assert_true(l.entries[0].added == 1);
  assert_true(l.entries[0].uploaded == 2);
  assert_true(l.entries[0].downloaded == 3);
  assert_string_equal(l.entries[0].error, "e");
  assert_int_equal(l.entries[0].nfiles, 1);
  assert_true(l.entries[0].files[0].ino == 4);
  library_close(&l);
  /* An empty record list is no record. */
  entry_text(text, sizeof(text), "files", "[]");
  expect_ok(text, &l);
  assert_int_equal(l.entries[0].nfiles, 0);
  assert_null(l.entries[0].files);
  library_close(&l);
}

static void unknown_entry_field_is_refused(void **state) {
  char text[16384];
  char *p;
  (void)state;
  entry_text(text, sizeof(text), NULL, NULL);
  p = strstr(text, "\"kind\"");
  assert_non_null(p);
  memmove(p + 14, p, strlen(p) + 1);
  memcpy(p, "\"x-new\":\"\\n\",", 13);
  p[13] = ' ';
  expect_fail(text, SHOAL_EFORMAT, "contents[0]: unknown field \"x-new\"");
}

static void long_error_text_is_cut_on_a_character(void **state) {
  char text[16384];
  char value[2100];
  struct library l;
  size_t o = 0;

  (void)state;
  /* 2-byte characters: the 511-byte limit falls inside the 256th. */
  value[o++] = '"';
  for (int i = 0; i < 600; i++) {
    value[o++] = (char)0xc3;
    value[o++] = (char)0xa9;
  }
  value[o++] = '"';
  value[o] = '\0';
  entry_text(text, sizeof(text), "error", value);
  expect_ok(text, &l);
  assert_int_equal(strlen(l.entries[0].error), LIBRARY_ERROR_BYTES - 2);
  library_close(&l);
}

static void bad_checksum_relative_path_and_unsafe_names(void **state) {
  char text[16384];
  char id[TEXTID_STRLEN];
  char value[TEXTID_STRLEN + 2];
  (void)state;

  /* A content ID read as a peer key: the kind is part of the checksum. */
  uint8_t raw[MANIFEST_ID_BYTES];
  make_id(raw, 9);
  textid_encode(TEXTID_KEY, raw, id);
  snprintf(value, sizeof(value), "\"%s\"", id);
  entry_text(text, sizeof(text), "id", value);
  expect_fail(text, SHOAL_EFORMAT, "contents[0].id: checksum mismatch");
  /* Upper case is the same ID. */
  id_text(id, 9);
  for (char *c = id; *c != '\0'; c++) {
    if (*c >= 'a' && *c <= 'z') {
      *c = (char)(*c - 'a' + 'A');
    }
  }
  snprintf(value, sizeof(value), "\"%s\"", id);
  entry_text(text, sizeof(text), "id", value);
  struct library l;
  expect_ok(text, &l);
  library_close(&l);

  entry_text(text, sizeof(text), "path", "\"home/ann\"");
  expect_fail(text, SHOAL_EFORMAT, "contents[0].path: must be an absolute");
  entry_text(text, sizeof(text), "name", "\"../etc\"");
  expect_fail(text, SHOAL_EFORMAT, "contents[0].name: not a safe file name");
  entry_text(text, sizeof(text), "name", "\"..\"");
  expect_fail(text, SHOAL_EFORMAT, "contents[0].name: not a safe file name");
}

#define SMALL_ENTRY                                                            \
  "{\"id\":\"%s\",\"kind\":\"share\",\"name\":\"a\",\"path\":\"/\","           \
  "\"paused\":false,\"complete\":true,\"added\":0,\"uploaded\":0,"             \
  "\"downloaded\":0}"

/* n entries of SMALL_ENTRY in a contents list: all of one content, or of
 * n distinct ones (make_id(100000 + i)). */
static char *many_entries(uint32_t n, int distinct) {
  size_t each = sizeof(SMALL_ENTRY) + TEXTID_CHARS + 2;
  size_t cap = 64 + (size_t)n * each;
  char *text = malloc(cap);
  size_t o = 0;
  assert_non_null(text);
  o += (size_t)snprintf(text, cap, "{\"version\":1,\"contents\":[");
  for (uint32_t i = 0; i < n; i++) {
    char id[TEXTID_STRLEN];
    id_text(id, distinct ? 100000 + i : 7);
    if (i > 0) {
      text[o++] = ',';
    }
    o += (size_t)snprintf(text + o, cap - o, SMALL_ENTRY, id);
    assert_true(o < cap);
  }
  o += (size_t)snprintf(text + o, cap - o, "]}");
  assert_true(o < cap);
  return text;
}

static void duplicate_ids_are_refused(void **state) {
  char *text;
  char want[700];
  (void)state;
  text = many_entries(2, 0);
  snprintf(want, sizeof(want),
           "%s: contents[1].id: the same content as "
           "contents[0]",
           g_file);
  expect_fail(text, SHOAL_EFORMAT, want);
  free(text);

  /* Far apart in a longer list. */
  text = many_entries(50, 1);
  {
    char first[TEXTID_STRLEN], last[TEXTID_STRLEN];
    id_text(first, 100000 + 3);
    id_text(last, 100000 + 41);
    char *p = strstr(text, last);
    assert_non_null(p);
    memcpy(p, first, TEXTID_CHARS);
  }
  expect_fail(text, SHOAL_EFORMAT,
              "contents[41].id: the same content as "
              "contents[3]");
  free(text);
}

static void counts_over_their_limits_are_refused(void **state) {
  char *text;
  size_t o = 0, cap;
  char id[TEXTID_STRLEN];
  struct library l;

  (void)state;
  /* One record more than a manifest has files. */
  cap = 1024 + (size_t)(MANIFEST_MAX_FILES + 1) * 10;
  text = malloc(cap);
  assert_non_null(text);
  id_text(id, 1);
  o += (size_t)snprintf(text, cap,
                        "{\"version\":1,\"contents\":[{\"id\":\"%s\","
                        "\"kind\":\"share\",\"name\":\"a\",\"path\":\"/\","
                        "\"paused\":false,\"complete\":true,\"added\":0,"
                        "\"uploaded\":0,\"downloaded\":0,\"files\":[",
                        id);
  for (uint32_t k = 0; k <= MANIFEST_MAX_FILES; k++) {
    o += (size_t)snprintf(text + o, cap - o, "%s[0,0,0,0]", k ? "," : "");
  }
  snprintf(text + o, cap - o, "]}]}");
  expect_fail(text, SHOAL_ETOOBIG,
              "contents[0].files: 131073 records, over the limit of 131072");
  /* Exactly the limit loads. */
  memcpy(strstr(text, "[[0,0,0,0],") + 1, "          ", 10);
  expect_ok(text, &l);
  assert_int_equal(l.entries[0].nfiles, MANIFEST_MAX_FILES);
  library_close(&l);
  free(text);

  /* One content more than the limit: refused before any entry is read. */
  cap = 64 + (size_t)(LIBRARY_MAX_CONTENTS + 1) * 3;
  text = malloc(cap);
  assert_non_null(text);
  o = (size_t)snprintf(text, cap, "{\"version\":1,\"contents\":[");
  for (uint32_t i = 0; i <= LIBRARY_MAX_CONTENTS; i++) {
    o += (size_t)snprintf(text + o, cap - o, "%s{}", i ? "," : "");
  }
  snprintf(text + o, cap - o, "]}");
  expect_fail(text, SHOAL_ETOOBIG, "65537 contents, over the limit of 65536");
  free(text);
}

static void full_library_refuses_another_content(void **state) {
  struct library l;
  uint8_t id[MANIFEST_ID_BYTES];
  char *text;
  int err = 0;

  (void)state;
  text = many_entries(LIBRARY_MAX_CONTENTS, 1);
  expect_ok(text, &l);
  free(text);
  assert_int_equal(l.count, LIBRARY_MAX_CONTENTS);
  make_id(id, 1);
  assert_null(library_add(&l, id, LIBRARY_SHARE, "a", "/", &err));
  assert_err(err, SHOAL_ETOOBIG);
  make_id(id, 100000 + 65535);
  assert_non_null(library_find(&l, id));
  assert_err(library_remove(&l, id), 0);
  make_id(id, 1);
  assert_non_null(library_add(&l, id, LIBRARY_SHARE, "a", "/", &err));
  library_close(&l);
}

static void oversize_file_is_refused_unread(void **state) {
  struct library l;
  char msg[512];
  int fd;

  (void)state;
  fd = open(g_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  /* Sparse: no block is written, and none must be read. */
  assert_int_equal(ftruncate(fd, (off_t)LIBRARY_MAX_BYTES + 1), 0);
  close(fd);
  assert_err(load(&l, msg, sizeof(msg)), SHOAL_ETOOBIG);
  assert_non_null(strstr(msg, "268435457 bytes, over the limit"));
  library_close(&l);
}

static void folder_in_place_of_the_file_is_refused(void **state) {
  struct library l;
  char msg[512];
  (void)state;
  assert_int_equal(mkdir(g_file, 0700), 0);
  assert_err(load(&l, msg, sizeof(msg)), SHOAL_EFORMAT);
  assert_non_null(strstr(msg, "not a regular file"));
  library_close(&l);
}

/* ------------------------------------------------------------------------ */
/* Saving */

static void failed_save_keeps_the_old_file(void **state) {
  struct library l;
  char tmp[700];
  char *before, *after;
  size_t blen, alen;
  uint8_t id[MANIFEST_ID_BYTES];
  int err;

  (void)state;
  before = sample_file(&blen);
  assert_err(library_load(&l, g_dir, tmp, sizeof(tmp)), 0);
  make_id(id, 77);
  assert_non_null(library_add(&l, id, LIBRARY_SHARE, "new", "/new", &err));

  /* Something in the temporary file's place: the open fails. */
  snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", g_file, (long)getpid());
  assert_int_equal(mkdir(tmp, 0700), 0);
  assert_true(library_save(&l) < 0);
  assert_true(l.dirty);
  after = tu_read_text(g_file, &alen);
  assert_int_equal(alen, blen);
  assert_memory_equal(after, before, blen);
  free(after);
  assert_int_equal(rmdir(tmp), 0);

  /* A read-only home: the open fails too, but only for a user whom modes
   * bind. */
  if (geteuid() == 0) {
    print_message("skipped the read-only home check: running as root, "
                  "which ignores modes\n");
  } else {
    assert_int_equal(chmod(g_dir, 0500), 0);
    assert_err(library_save(&l), UV_EACCES);
    assert_int_equal(chmod(g_dir, 0700), 0);
    after = tu_read_text(g_file, &alen);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    free(after);
    assert_int_equal(dir_entries(), 1);
  }

  /* The rename fails (a folder that is not empty is in the library's
   * place): the temporary file written so far is removed. */
  char moved[700];
  snprintf(moved, sizeof(moved), "%s.old", g_file);
  assert_int_equal(rename(g_file, moved), 0);
  assert_int_equal(mkdir(g_file, 0700), 0);
  tu_write_file(g_file, "keep", "x", 1);
  assert_true(library_save(&l) < 0);
  assert_true(l.dirty);
  assert_int_equal(dir_entries(), 2); /* library.json/ and .old, no tmp */
  tu_rmtree(g_file);
  assert_int_equal(rename(moved, g_file), 0);

  /* And then it works. */
  assert_err(library_save(&l), 0);
  assert_false(l.dirty);
  assert_int_equal(dir_entries(), 1);
  library_close(&l);
  assert_err(load(&l, tmp, sizeof(tmp)), 0);
  assert_int_equal(l.count, 4);
  library_close(&l);
  free(before);
}

/* ------------------------------------------------------------------------ */
/* The list in memory */

static void add_find_remove(void **state) {
  struct library l;
  uint8_t a[MANIFEST_ID_BYTES], b[MANIFEST_ID_BYTES], c[MANIFEST_ID_BYTES];
  struct library_entry *e;
  char msg[256];
  int err = 0;

  (void)state;
  assert_err(load(&l, msg, sizeof(msg)), 0);
  make_id(a, 1);
  make_id(b, 2);
  make_id(c, 3);
  assert_null(library_find(&l, a));
  e = library_add(&l, a, LIBRARY_SHARE, "a", "/a", &err);
  assert_non_null(e);
  assert_err(err, 0);
  assert_true(l.dirty);
  assert_memory_equal(e->content, a, MANIFEST_ID_BYTES);
  assert_int_equal(e->kind, LIBRARY_SHARE);
  assert_string_equal(e->name, "a");
  assert_string_equal(e->path, "/a");
  assert_null(e->link);
  assert_false(e->paused || e->complete);
  assert_true(e->added == 0 && e->uploaded == 0 && e->downloaded == 0);
  assert_string_equal(e->error, "");
  assert_int_equal(e->nfiles, 0);
  assert_null(e->files);
  assert_ptr_equal(library_find(&l, a), e);

  /* The same content again. */
  err = 0;
  assert_null(library_add(&l, a, LIBRARY_DOWNLOAD, "z", "/z", &err));
  assert_err(err, UV_EEXIST);
  assert_int_equal(l.count, 1);

  /* What a load would refuse is not taken. */
  err = 0;
  assert_null(library_add(&l, b, LIBRARY_SHARE, "x/y", "/a", &err));
  assert_err(err, SHOAL_EPATH);
  err = 0;
  assert_null(library_add(&l, b, LIBRARY_SHARE, "..", "/a", &err));
  assert_err(err, SHOAL_EPATH);
  err = 0;
  assert_null(library_add(&l, b, LIBRARY_SHARE, "b", "rel", &err));
  assert_err(err, SHOAL_EPATH);
  err = 0;
  assert_null(library_add(&l, b, LIBRARY_SHARE, "b", "/bad\xff", &err));
  assert_err(err, SHOAL_EPATH);
  assert_int_equal(l.count, 1);

  assert_non_null(library_add(&l, b, LIBRARY_DOWNLOAD, "b", "/b", &err));
  assert_non_null(library_add(&l, c, LIBRARY_DOWNLOAD, "c", "/c", &err));
  l.dirty = 0;
  assert_err(library_remove(&l, b), 0);
  assert_true(l.dirty);
  assert_int_equal(l.count, 2);
  assert_null(library_find(&l, b));
  /* The order is kept. */
  assert_memory_equal(l.entries[0].content, a, MANIFEST_ID_BYTES);
  assert_memory_equal(l.entries[1].content, c, MANIFEST_ID_BYTES);
  l.dirty = 0;
  assert_err(library_remove(&l, b), SHOAL_ENOENT);
  assert_false(l.dirty);
  assert_err(library_remove(&l, a), 0);
  assert_err(library_remove(&l, c), 0);
  assert_int_equal(l.count, 0);
  assert_err(library_remove(&l, c), SHOAL_ENOENT);
  library_close(&l);
}

static void many_adds_keep_every_entry_right(void **state) {
  enum { N = 3000 };
  struct library l, m;
  uint8_t id[MANIFEST_ID_BYTES];
  char name[32], path[64], msg[256];
  int err;

  (void)state;
  assert_err(load(&l, msg, sizeof(msg)), 0);
  for (uint32_t i = 0; i < N; i++) {
    struct library_entry *e;
    make_id(id, 5000 + i);
    snprintf(name, sizeof(name), "n%u", i);
    snprintf(path, sizeof(path), "/p/%u", i);
    e = library_add(&l, id, i % 2 ? LIBRARY_SHARE : LIBRARY_DOWNLOAD, name,
                    path, &err);
    assert_non_null(e);
    assert_ptr_equal(e, &l.entries[i]);
    e->uploaded = i;
    struct library_file f = {i, i, i, i};
    assert_err(library_set_files(&l, e, &f, 1), 0);
  }
  assert_int_equal(l.count, N);
  assert_true(l.cap >= N && l.cap < 2 * N);
  for (uint32_t i = 0; i < N; i++) {
    struct library_entry *e;
    make_id(id, 5000 + i);
    e = library_find(&l, id);
    assert_ptr_equal(e, &l.entries[i]);
    snprintf(path, sizeof(path), "/p/%u", i);
    assert_string_equal(e->path, path);
    assert_true(e->uploaded == i);
    assert_true(e->files[0].ino == i);
  }
  /* Every other one out: the rest keep their order and fields. */
  for (uint32_t i = 0; i < N; i += 2) {
    make_id(id, 5000 + i);
    assert_err(library_remove(&l, id), 0);
  }
  assert_int_equal(l.count, N / 2);
  for (uint32_t k = 0; k < l.count; k++) {
    make_id(id, 5000 + 2 * k + 1);
    assert_memory_equal(l.entries[k].content, id, MANIFEST_ID_BYTES);
    assert_true(l.entries[k].uploaded == 2 * k + 1);
  }
  /* Finds after the removals: the kept at their new places, the removed
   * nowhere. */
  for (uint32_t i = 0; i < N; i++) {
    make_id(id, 5000 + i);
    if (i % 2 == 0) {
      assert_null(library_find(&l, id));
    } else {
      assert_ptr_equal(library_find(&l, id), &l.entries[i / 2]);
    }
  }
  assert_err(library_save(&l), 0);
  assert_err(load(&m, msg, sizeof(msg)), 0);
  assert_library_equal(&l, &m);
  library_close(&l);
  library_close(&m);
}

static void link_files_and_error_setters(void **state) {
  struct library l;
  uint8_t id[MANIFEST_ID_BYTES];
  struct library_entry *e;
  char link[LINK_MAX_CHARS];
  char msg[256];
  int err;

  (void)state;
  assert_err(load(&l, msg, sizeof(msg)), 0);
  make_id(id, 1);
  e = library_add(&l, id, LIBRARY_SHARE, "a", "/a", &err);
  assert_non_null(e);

  /* Links. */
  l.dirty = 0;
  assert_err(library_set_link(&l, e, "shoal:nonsense"), SHOAL_EBADLINK);
  make_link(link, sizeof(link), 2, "a");
  assert_err(library_set_link(&l, e, link), SHOAL_EBADLINK);
  assert_null(e->link);
  assert_false(l.dirty);
  make_link(link, sizeof(link), 1, "a");
  assert_err(library_set_link(&l, e, link), 0);
  assert_string_equal(e->link, link);
  assert_true(l.dirty);
  l.dirty = 0;
  assert_err(library_set_link(&l, e, link), 0);
  assert_false(l.dirty);
  assert_err(library_set_link(&l, e, NULL), 0);
  assert_null(e->link);
  assert_true(l.dirty);

  /* Fast-resume records. */
  struct library_file f[2] = {{10, -1, 5, 7}, {20, 2, 0, UINT64_MAX}};
  l.dirty = 0;
  assert_err(library_set_files(&l, e, f, 2), 0);
  assert_true(l.dirty);
  assert_int_equal(e->nfiles, 2);
  f[0].size = 99; /* copied */
  assert_true(e->files[0].size == 10);
  assert_err(library_set_files(&l, e, f, 1), 0);
  assert_int_equal(e->nfiles, 1);
  assert_true(e->files[0].size == 99);
  assert_err(library_set_files(&l, e, NULL, 0), 0);
  assert_int_equal(e->nfiles, 0);
  assert_null(e->files);
  assert_err(library_set_files(&l, e, f, MANIFEST_MAX_FILES + 1),
             SHOAL_ETOOBIG);

  /* Error text. */
  l.dirty = 0;
  library_set_error(&l, e, "failed: %s (%d)", "disk", 5);
  assert_string_equal(e->error, "failed: disk (5)");
  assert_true(l.dirty);
  l.dirty = 0;
  library_set_error(&l, e, "failed: %s (%d)", "disk", 5);
  assert_false(l.dirty); /* unchanged */
  library_set_error(&l, e, "bad \xff name \xc3");
  assert_string_equal(e->error, "bad ? name ?");
  library_clear_error(&l, e);
  assert_string_equal(e->error, "");
  l.dirty = 0;
  library_clear_error(&l, e);
  assert_false(l.dirty);
  library_set_error(&l, e, "x");
  library_set_error(&l, e, NULL);
  assert_string_equal(e->error, "");

  /* Cut on a character: 509 ASCII bytes, then a 3-byte character that
   * does not fit in the 511 bytes left. */
  char big[LIBRARY_ERROR_BYTES + 16];
  memset(big, 'x', 509);
  memcpy(big + 509, "\xe2\x9c\x93", 4);
  library_set_error(&l, e, "%s", big);
  assert_int_equal(strlen(e->error), 509);
  memcpy(big + 509, "\xc3\xa9", 3); /* a 2-byte one fits exactly */
  library_set_error(&l, e, "%s", big);
  assert_int_equal(strlen(e->error), 511);

  /* Whatever the setters took, a save writes and a load takes back. */
  struct library m;
  assert_err(library_save(&l), 0);
  assert_err(load(&m, msg, sizeof(msg)), 0);
  assert_library_equal(&l, &m);
  library_close(&m);
  library_close(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(round_trip_keeps_every_field),
      T(counts_past_int64_are_saved_saturated),
      T(missing_or_empty_library_loads_empty),
      T(closing_a_zeroed_library_is_harmless),
      T(truncation_at_every_length_fails_cleanly),
      T(flipped_bits_fail_or_load_something_valid),
      T(not_json_names_line_and_column),
      T(wrong_shape_of_the_whole_is_refused),
      T(other_versions_are_named),
      T(every_field_checks_type_and_range),
      T(required_fields_are_required),
      T(unknown_entry_field_is_refused),
      T(long_error_text_is_cut_on_a_character),
      T(bad_checksum_relative_path_and_unsafe_names),
      T(duplicate_ids_are_refused),
      T(counts_over_their_limits_are_refused),
      T(full_library_refuses_another_content),
      T(oversize_file_is_refused_unread),
      T(folder_in_place_of_the_file_is_refused),
      T(failed_save_keeps_the_old_file),
      T(add_find_remove),
      T(many_adds_keep_every_entry_right),
      T(link_files_and_error_setters),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
