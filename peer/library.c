/* The daemon's library: HOME/library.json read strictly (every field
 * checked, every failure one line naming the file, the entry and the
 * field), written whole and atomically, and the list of contents in memory
 * between the two. */
#include "peer/library.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/link.h"
#include "common/textid.h"
#include "peer/fmt.h"
#include "peer/fsutil.h"

/* A "path" longer than this is refused: the kernel's PATH_MAX, with its
 * NUL. */
#define LIBRARY_MAX_PATH 4095
/* The first entries of a library that grows from nothing. */
#define LIBRARY_FIRST_CAP 16u
/* Bytes of a key or value quoted in a message before it is cut. */
#define LIBRARY_SHOW_BYTES 40

/* ------------------------------------------------------------------------ */
/* Text */

/* Whether s is valid UTF-8 by fmt_utf8_seq_len, whose rules (RFC 3629's)
 * are jansson's, so that what passes here is also a string jansson
 * writes. */
static int utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = fmt_utf8_seq_len(p + i, len - i);
    if (n == 0) {
      return 0;
    }
    i += n;
  }
  return 1;
}

/* Makes s (NUL-terminated) valid UTF-8 in place: each byte that does not
 * start a valid sequence becomes '?'. */
static void utf8_repair(char *s) {
  unsigned char *p = (unsigned char *)s;
  size_t len = strlen(s);
  for (size_t i = 0; i < len;) {
    size_t n = fmt_utf8_seq_len(p + i, len - i);
    if (n == 0) {
      p[i] = '?';
      n = 1;
    }
    i += n;
  }
}

/* The longest prefix of s (len bytes of valid UTF-8) that is at most max
 * bytes and does not cut a character. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
  if (len <= max) {
    return len;
  }
  while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) {
    max--;
  }
  return max;
}

/* A key or value from the file, shown in a message: printable ASCII as it
 * is, any other byte as '?', cut after LIBRARY_SHOW_BYTES, so that a
 * message stays one line whatever the file holds. */
static void show(char out[LIBRARY_SHOW_BYTES + 4], const char *s, size_t len) {
  size_t n = len < LIBRARY_SHOW_BYTES ? len : LIBRARY_SHOW_BYTES;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  if (n < len) {
    memcpy(out + n, "...", 3);
    n += 3;
  }
  out[n] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Entries */

static void entry_free(struct library_entry *e) {
  free(e->link);
  free(e->path);
  free(e->files);
  e->link = NULL;
  e->path = NULL;
  e->files = NULL;
  e->nfiles = 0;
}

static void entries_free(struct library *l) {
  for (uint32_t i = 0; i < l->count; i++) {
    entry_free(&l->entries[i]);
  }
  free(l->entries);
  l->entries = NULL;
  l->count = 0;
  l->cap = 0;
  l->index_ok = 0;
}

/* Whether path may be an entry's "path": absolute, valid UTF-8 (jansson
 * writes nothing else) and no longer than the kernel takes. */
static int path_ok(const char *path, size_t len) {
  return len > 0 && len <= LIBRARY_MAX_PATH && path[0] == '/' &&
         memchr(path, '\0', len) == NULL && utf8_valid(path, len);
}

/* ------------------------------------------------------------------------ */
/* Reading */

/* What a load reports into. */
struct loader {
  const char *file; /* the library's path, first in every message */
  char *msg;
  size_t cap;
};

/* Writes "FILE: " and the formatted text into the loader's message and
 * returns err. */
__attribute__((format(printf, 3, 4))) static int
bad(const struct loader *ld, int err, const char *fmt, ...) {
  va_list ap;
  int n;

  if (ld->cap == 0) {
    return err;
  }
  n = snprintf(ld->msg, ld->cap, "%s: ", ld->file);
  if (n >= 0 && (size_t)n < ld->cap) {
    va_start(ap, fmt);
    vsnprintf(ld->msg + n, ld->cap - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return err;
}

/* Reads the file at ld->file whole into *out (malloc'd, the caller frees)
 * and *len. Returns 0, 1 when there is no file, or an error with the
 * message written. The size is checked before anything is read, and again
 * while reading, since the file could grow. */
static int read_whole(const struct loader *ld, char **out, size_t *len) {
  struct stat st;
  char *buf = NULL;
  size_t cap, got = 0;
  int err;
  int fd;

  *out = NULL;
  *len = 0;
  /* O_NONBLOCK: a fifo in the file's place must not hang the start-up. */
  fd = open(ld->file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return 1;
    }
    err = -errno;
    return bad(ld, err, "cannot open: %s", shoal_strerror(err));
  }
  if (fstat(fd, &st) != 0) {
    err = -errno;
    bad(ld, err, "cannot stat: %s", shoal_strerror(err));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    err = bad(ld, SHOAL_EFORMAT, "not a regular file");
    goto fail;
  }
  if (st.st_size > (off_t)LIBRARY_MAX_BYTES) {
    err = bad(ld, SHOAL_ETOOBIG, "%jd bytes, over the limit of %u bytes",
              (intmax_t)st.st_size, LIBRARY_MAX_BYTES);
    goto fail;
  }
  /* One byte more than the size, so that the end of the file is seen
   * without a second allocation. */
  cap = (size_t)st.st_size + 1;
  buf = malloc(cap);
  if (buf == NULL) {
    err = bad(ld, SHOAL_ENOMEM, "out of memory reading %zu bytes", cap);
    goto fail;
  }
  for (;;) {
    ssize_t r;
    if (got == cap) {
      char *more;
      if (cap > LIBRARY_MAX_BYTES) {
        err = bad(ld, SHOAL_ETOOBIG, "over the limit of %u bytes",
                  LIBRARY_MAX_BYTES);
        goto fail;
      }
      cap = cap * 2 > (size_t)LIBRARY_MAX_BYTES + 1
                ? (size_t)LIBRARY_MAX_BYTES + 1
                : cap * 2;
      more = realloc(buf, cap);
      if (more == NULL) {
        err = bad(ld, SHOAL_ENOMEM, "out of memory reading %zu bytes", cap);
        goto fail;
      }
      buf = more;
    }
    r = read(fd, buf + got, cap - got);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      err = -errno;
      bad(ld, err, "cannot read: %s", shoal_strerror(err));
      goto fail;
    }
    if (r == 0) {
      break;
    }
    got += (size_t)r;
  }
  close(fd);
  *out = buf;
  *len = got;
  return 0;

fail:
  free(buf);
  close(fd);
  return err;
}

/* The type of v for a message. */
static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a real number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
    return "null";
  }
  return "a value";
}

/* One field of an entry: where the message puts it. */
struct at {
  const struct loader *ld;
  uint32_t i;
  const char *field;
};

__attribute__((format(printf, 3, 4))) static int
bad_at(const struct at *a, int err, const char *fmt, ...) {
  char text[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  return bad(a->ld, err, "contents[%" PRIu32 "].%s: %s", a->i, a->field, text);
}

static int want_string(const struct at *a, const json_t *v, const char **s,
                       size_t *len) {
  if (!json_is_string(v)) {
    return bad_at(a, SHOAL_EFORMAT, "must be a string, not %s", type_name(v));
  }
  *s = json_string_value(v);
  *len = json_string_length(v);
  return 0;
}

static int want_bool(const struct at *a, const json_t *v, int *out) {
  if (!json_is_boolean(v)) {
    return bad_at(a, SHOAL_EFORMAT, "must be true or false, not %s",
                  type_name(v));
  }
  *out = json_is_true(v);
  return 0;
}

static int want_count(const struct at *a, const json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) {
    return bad_at(a, SHOAL_EFORMAT, "must be a non-negative integer, not %s",
                  json_is_integer(v) ? "a negative one" : type_name(v));
  }
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

/* One fast-resume record, files[k]: [SIZE, MTIME_S, MTIME_NS, INODE]. */
static int parse_record(const struct at *files, uint32_t k, const json_t *v,
                        struct library_file *f) {
  char field[32];
  struct at a = {files->ld, files->i, field};
  json_int_t x[4];

  snprintf(field, sizeof(field), "files[%" PRIu32 "]", k);
  if (!json_is_array(v) || json_array_size(v) != 4) {
    return bad_at(&a, SHOAL_EFORMAT,
                  "must be [size, mtime_s, mtime_ns, inode], not %s%s",
                  type_name(v), json_is_array(v) ? " of another length" : "");
  }
  for (size_t j = 0; j < 4; j++) {
    const json_t *n = json_array_get(v, j);
    if (!json_is_integer(n)) {
      snprintf(field, sizeof(field), "files[%" PRIu32 "][%zu]", k, j);
      return bad_at(&a, SHOAL_EFORMAT, "must be an integer, not %s",
                    type_name(n));
    }
    x[j] = json_integer_value(n);
  }
  if (x[0] < 0) {
    snprintf(field, sizeof(field), "files[%" PRIu32 "][0]", k);
    return bad_at(&a, SHOAL_EFORMAT, "a size must not be negative");
  }
  if (x[2] < 0 || x[2] >= 1000000000) {
    snprintf(field, sizeof(field), "files[%" PRIu32 "][2]", k);
    return bad_at(&a, SHOAL_EFORMAT, "nanoseconds must be in [0, 999999999]");
  }
  f->size = (uint64_t)x[0];
  f->mtime_sec = x[1];
  f->mtime_nsec = x[2];
  /* The inode's 64 bits, written as a signed integer (library.h). */
  f->ino = (uint64_t)x[3];
  return 0;
}

static int parse_files(const struct at *a, const json_t *v,
                       struct library_entry *e) {
  size_t n;

  if (!json_is_array(v)) {
    return bad_at(a, SHOAL_EFORMAT, "must be an array, not %s", type_name(v));
  }
  n = json_array_size(v);
  if (n > MANIFEST_MAX_FILES) {
    return bad_at(a, SHOAL_ETOOBIG, "%zu records, over the limit of %u", n,
                  MANIFEST_MAX_FILES);
  }
  if (n == 0) {
    return 0;
  }
  e->files = calloc(n, sizeof(*e->files));
  if (e->files == NULL) {
    return bad_at(a, SHOAL_ENOMEM, "out of memory for %zu records", n);
  }
  e->nfiles = (uint32_t)n;
  for (size_t k = 0; k < n; k++) {
    int err = parse_record(a, (uint32_t)k, json_array_get(v, k), &e->files[k]);
    if (err != 0) {
      return err;
    }
  }
  return 0;
}

/* The fields of an entry, each once. */
enum field {
  F_ID,
  F_KIND,
  F_NAME,
  F_LINK,
  F_PATH,
  F_PAUSED,
  F_COMPLETE,
  F_ADDED,
  F_UPLOADED,
  F_DOWNLOADED,
  F_ERROR,
  F_FILES,
  F_COUNT_
};

static const struct {
  const char *name;
  int required;
} fields[F_COUNT_] = {
    [F_ID] = {"id", 1},
    [F_KIND] = {"kind", 1},
    [F_NAME] = {"name", 1},
    [F_LINK] = {"link", 0},
    [F_PATH] = {"path", 1},
    [F_PAUSED] = {"paused", 1},
    [F_COMPLETE] = {"complete", 1},
    [F_ADDED] = {"added", 1},
    [F_UPLOADED] = {"uploaded", 1},
    [F_DOWNLOADED] = {"downloaded", 1},
    [F_ERROR] = {"error", 0},
    [F_FILES] = {"files", 0},
};

static int parse_field(struct at *a, enum field f, const json_t *v,
                       struct library_entry *e) {
  const char *s = NULL;
  size_t len = 0;
  uint64_t n;
  int err;

  switch (f) {
  case F_ID:
    if ((err = want_string(a, v, &s, &len)) != 0) {
      return err;
    }
    err = textid_decode(TEXTID_CONTENT, s, len, e->content);
    if (err == SHOAL_ECHECKSUM) {
      return bad_at(a, SHOAL_EFORMAT,
                    "checksum mismatch (a mistyped ID, or not a content ID)");
    }
    if (err != 0) {
      return bad_at(a, SHOAL_EFORMAT, "not a content ID (%d base32 characters)",
                    TEXTID_CHARS);
    }
    return 0;
  case F_KIND:
    if ((err = want_string(a, v, &s, &len)) != 0) {
      return err;
    }
    if (strcmp(s, "share") == 0 && len == 5) {
      e->kind = LIBRARY_SHARE;
    } else if (strcmp(s, "download") == 0 && len == 8) {
      e->kind = LIBRARY_DOWNLOAD;
    } else {
      return bad_at(a, SHOAL_EFORMAT, "must be \"share\" or \"download\"");
    }
    return 0;
  case F_NAME:
    if ((err = want_string(a, v, &s, &len)) != 0) {
      return err;
    }
    if (manifest_check_segment(s, len) != 0) {
      return bad_at(a, SHOAL_EFORMAT,
                    "not a safe file name (empty, \".\", \"..\", a '/', a "
                    "control character, or over %d bytes)",
                    MANIFEST_MAX_SEGMENT);
    }
    memcpy(e->name, s, len);
    e->name[len] = '\0';
    return 0;
  case F_LINK: {
    struct share_link sl;
    const char *why = NULL;
    if ((err = want_string(a, v, &s, &len)) != 0) {
      return err;
    }
    if (link_parse(s, len, &sl, &why) != 0) {
      return bad_at(a, SHOAL_EFORMAT, "not a share link: %s", why);
    }
    /* "id" is read first (the fields go in enum field's order). */
    if (memcmp(sl.id, e->content, MANIFEST_ID_BYTES) != 0) {
      return bad_at(a, SHOAL_EFORMAT, "names another content than \"id\"");
    }
    if ((e->link = strdup(s)) == NULL) {
      return bad_at(a, SHOAL_ENOMEM, "out of memory");
    }
    return 0;
  }
  case F_PATH:
    if ((err = want_string(a, v, &s, &len)) != 0) {
      return err;
    }
    if (!path_ok(s, len)) {
      return bad_at(a, SHOAL_EFORMAT,
                    "must be an absolute path of at most %d bytes",
                    LIBRARY_MAX_PATH);
    }
    if ((e->path = strdup(s)) == NULL) {
      return bad_at(a, SHOAL_ENOMEM, "out of memory");
    }
    return 0;
  case F_PAUSED:
    return want_bool(a, v, &e->paused);
  case F_COMPLETE:
    return want_bool(a, v, &e->complete);
  case F_ADDED:
    if ((err = want_count(a, v, &n)) != 0) {
      return err;
    }
    e->added = (int64_t)n;
    return 0;
  case F_UPLOADED:
    return want_count(a, v, &e->uploaded);
  case F_DOWNLOADED:
    return want_count(a, v, &e->downloaded);
  case F_ERROR:
    if ((err = want_string(a, v, &s, &len)) != 0) {
      return err;
    }
    len = utf8_cut(s, len, LIBRARY_ERROR_BYTES - 1);
    memcpy(e->error, s, len);
    e->error[len] = '\0';
    return 0;
  case F_FILES:
    return parse_files(a, v, e);
  case F_COUNT_:
    break;
  }
  assert(0);
  return SHOAL_EINVAL;
}

static int parse_entry(const struct loader *ld, uint32_t i, json_t *o,
                       struct library_entry *e) {
  struct at a = {ld, i, ""};
  const json_t *seen[F_COUNT_] = {NULL};
  const char *key;
  json_t *v;
  int err;

  if (!json_is_object(o)) {
    return bad(ld, SHOAL_EFORMAT,
               "contents[%" PRIu32 "]: must be an object, "
               "not %s",
               i, type_name(o));
  }
  /* Unknown fields are refused rather than skipped: the next save would
   * drop them, and nothing in the file is dropped silently. */
  json_object_foreach(o, key, v) {
    size_t f = 0;
    while (f < F_COUNT_ && strcmp(fields[f].name, key) != 0) {
      f++;
    }
    if (f == F_COUNT_) {
      char name[LIBRARY_SHOW_BYTES + 4];
      show(name, key, strlen(key));
      return bad(ld, SHOAL_EFORMAT,
                 "contents[%" PRIu32 "]: unknown field \"%s\"", i, name);
    }
    seen[f] = v;
  }
  for (size_t f = 0; f < F_COUNT_; f++) {
    a.field = fields[f].name;
    if (seen[f] == NULL) {
      if (fields[f].required) {
        return bad_at(&a, SHOAL_EFORMAT, "missing");
      }
      continue;
    }
    if ((err = parse_field(&a, (enum field)f, seen[f], e)) != 0) {
      return err;
    }
  }
  return 0;
}

/* Duplicate content IDs: the entries sorted by ID, neighbours compared. */
struct id_at {
  uint8_t id[MANIFEST_ID_BYTES];
  uint32_t i;
};

static int id_at_cmp(const void *x, const void *y) {
  const struct id_at *a = x;
  const struct id_at *b = y;
  int c = memcmp(a->id, b->id, MANIFEST_ID_BYTES);
  if (c != 0) {
    return c;
  }
  return a->i < b->i ? -1 : a->i > b->i;
}

static int check_unique(const struct loader *ld, const struct library *l) {
  struct id_at *ids;
  int err = 0;

  if (l->count < 2) {
    return 0;
  }
  ids = malloc((size_t)l->count * sizeof(*ids));
  if (ids == NULL) {
    return bad(ld, SHOAL_ENOMEM, "out of memory");
  }
  for (uint32_t i = 0; i < l->count; i++) {
    memcpy(ids[i].id, l->entries[i].content, MANIFEST_ID_BYTES);
    ids[i].i = i;
  }
  qsort(ids, l->count, sizeof(*ids), id_at_cmp);
  for (uint32_t k = 1; k < l->count; k++) {
    if (memcmp(ids[k - 1].id, ids[k].id, MANIFEST_ID_BYTES) == 0) {
      err = bad(ld, SHOAL_EFORMAT,
                "contents[%" PRIu32
                "].id: the same content as contents[%" PRIu32 "]",
                ids[k].i, ids[k - 1].i);
      break;
    }
  }
  free(ids);
  return err;
}

static int check_version(const struct loader *ld, const json_t *v) {
  char text[LIBRARY_SHOW_BYTES + 4];

  if (json_is_integer(v) && json_integer_value(v) == LIBRARY_VERSION) {
    return 0;
  }
  if (v == NULL) {
    return bad(ld, SHOAL_EVERSION,
               "no \"version\" (this shoal reads version %d)", LIBRARY_VERSION);
  }
  if (json_is_integer(v)) {
    return bad(ld, SHOAL_EVERSION,
               "version %" JSON_INTEGER_FORMAT
               " is not supported (this shoal reads version %d)",
               json_integer_value(v), LIBRARY_VERSION);
  }
  if (json_is_string(v)) {
    show(text, json_string_value(v), json_string_length(v));
    return bad(ld, SHOAL_EVERSION,
               "version \"%s\" is not supported (this shoal reads version %d)",
               text, LIBRARY_VERSION);
  }
  return bad(ld, SHOAL_EVERSION,
             "\"version\" is %s, not %d (this shoal reads version %d)",
             type_name(v), LIBRARY_VERSION, LIBRARY_VERSION);
}

static int parse_root(const struct loader *ld, struct library *l,
                      json_t *root) {
  const json_t *contents;
  const char *key;
  json_t *v;
  size_t n;
  int err;

  if (!json_is_object(root)) {
    return bad(ld, SHOAL_EFORMAT, "must be a JSON object, not %s",
               type_name(root));
  }
  /* The version first: a later format may differ in anything else. */
  if ((err = check_version(ld, json_object_get(root, "version"))) != 0) {
    return err;
  }
  json_object_foreach(root, key, v) {
    if (strcmp(key, "version") != 0 && strcmp(key, "contents") != 0) {
      char name[LIBRARY_SHOW_BYTES + 4];
      show(name, key, strlen(key));
      return bad(ld, SHOAL_EFORMAT, "unknown field \"%s\"", name);
    }
  }
  contents = json_object_get(root, "contents");
  if (contents == NULL) {
    return bad(ld, SHOAL_EFORMAT, "no \"contents\"");
  }
  if (!json_is_array(contents)) {
    return bad(ld, SHOAL_EFORMAT, "\"contents\" must be an array, not %s",
               type_name(contents));
  }
  n = json_array_size(contents);
  if (n > LIBRARY_MAX_CONTENTS) {
    return bad(ld, SHOAL_ETOOBIG, "%zu contents, over the limit of %u", n,
               LIBRARY_MAX_CONTENTS);
  }
  if (n > 0) {
    l->entries = calloc(n, sizeof(*l->entries));
    if (l->entries == NULL) {
      return bad(ld, SHOAL_ENOMEM, "out of memory for %zu contents", n);
    }
    l->cap = (uint32_t)n;
  }
  for (size_t i = 0; i < n; i++) {
    /* Counted before it is parsed, so that what a failure leaves behind is
     * freed with the rest. */
    l->count++;
    l->index_ok = 0;
    err = parse_entry(ld, (uint32_t)i, json_array_get(contents, i),
                      &l->entries[i]);
    if (err != 0) {
      return err;
    }
  }
  return check_unique(ld, l);
}

int library_load(struct library *l, const char *home, char *msg, size_t cap) {
  struct loader ld = {home, msg, cap};
  json_error_t jerr;
  json_t *root = NULL;
  char *text = NULL;
  size_t len, plen;
  int err;

  memset(l, 0, sizeof(*l));
  if (cap > 0) {
    msg[0] = '\0';
  }
  plen = strlen(home) + 1 + strlen(LIBRARY_FILE) + 1;
  l->path = malloc(plen);
  if (l->path == NULL) {
    return bad(&ld, SHOAL_ENOMEM, "out of memory");
  }
  snprintf(l->path, plen, "%s/%s", home, LIBRARY_FILE);
  ld.file = l->path;

  err = read_whole(&ld, &text, &len);
  if (err == 1) {
    return 0; /* no library yet: an empty one */
  }
  if (err != 0) {
    return err;
  }
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  free(text);
  if (root == NULL) {
    /* jansson quotes the text near the error, which may hold a newline:
     * the message stays one line. */
    for (char *c = jerr.text; *c != '\0'; c++) {
      if ((unsigned char)*c < 0x20 || *c == 0x7f) {
        *c = '?';
      }
    }
    return bad(&ld, SHOAL_EFORMAT, "line %d, column %d: %s", jerr.line,
               jerr.column, jerr.text);
  }
  err = parse_root(&ld, l, root);
  json_decref(root);
  if (err != 0) {
    entries_free(l);
  }
  return err;
}

/* ------------------------------------------------------------------------ */
/* Writing */

/* jansson holds signed 64-bit integers: a count past INT64_MAX (which no
 * content reaches) is written as INT64_MAX rather than as a negative
 * number the next load would refuse. */
static json_int_t sat(uint64_t v) {
  return v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v;
}

/* Sets key in o to v (taken, also when NULL or on failure). Returns 0 or
 * -1. */
static int put(json_t *o, const char *key, json_t *v) {
  return v == NULL ? -1 : json_object_set_new(o, key, v);
}

static json_t *encode_files(const struct library_entry *e) {
  json_t *a = json_array();
  if (a == NULL) {
    return NULL;
  }
  for (uint32_t k = 0; k < e->nfiles; k++) {
    const struct library_file *f = &e->files[k];
    json_t *r = json_array();
    if (r == NULL || json_array_append_new(a, r) != 0 ||
        json_array_append_new(r, json_integer(sat(f->size))) != 0 ||
        json_array_append_new(r, json_integer(f->mtime_sec)) != 0 ||
        json_array_append_new(r, json_integer(f->mtime_nsec)) != 0 ||
        json_array_append_new(r, json_integer((json_int_t)(int64_t)f->ino)) !=
            0) {
      json_decref(a);
      return NULL;
    }
  }
  return a;
}

static json_t *encode_entry(const struct library_entry *e) {
  char id[TEXTID_STRLEN];
  json_t *o = json_object();

  if (o == NULL) {
    return NULL;
  }
  textid_encode(TEXTID_CONTENT, e->content, id);
  if (put(o, "id", json_string(id)) != 0 ||
      put(o, "kind",
          json_string(e->kind == LIBRARY_SHARE ? "share" : "download")) != 0 ||
      put(o, "name", json_string(e->name)) != 0 ||
      (e->link != NULL && put(o, "link", json_string(e->link)) != 0) ||
      put(o, "path", json_string(e->path)) != 0 ||
      put(o, "paused", json_boolean(e->paused)) != 0 ||
      put(o, "complete", json_boolean(e->complete)) != 0 ||
      put(o, "added", json_integer(e->added < 0 ? 0 : e->added)) != 0 ||
      put(o, "uploaded", json_integer(sat(e->uploaded))) != 0 ||
      put(o, "downloaded", json_integer(sat(e->downloaded))) != 0 ||
      (e->error[0] != '\0' && put(o, "error", json_string(e->error)) != 0) ||
      (e->nfiles > 0 && put(o, "files", encode_files(e)) != 0)) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* The library as JSON text with a final newline (malloc'd), or NULL. */
static char *encode(const struct library *l, size_t *len) {
  json_t *root = json_object();
  json_t *contents = json_array();
  char *text = NULL;

  if (root == NULL || contents == NULL) {
    json_decref(contents);
    goto out;
  }
  if (put(root, "version", json_integer(LIBRARY_VERSION)) != 0) {
    json_decref(contents);
    goto out;
  }
  if (put(root, "contents", contents) != 0) {
    goto out;
  }
  for (uint32_t i = 0; i < l->count; i++) {
    if (json_array_append_new(contents, encode_entry(&l->entries[i])) != 0) {
      goto out;
    }
  }
  text = json_dumps(root, JSON_COMPACT);
  if (text != NULL) {
    size_t n = strlen(text);
    char *more = realloc(text, n + 2);
    if (more == NULL) {
      free(text);
      text = NULL;
      goto out;
    }
    text = more;
    text[n] = '\n';
    text[n + 1] = '\0';
    *len = n + 1;
  }
out:
  json_decref(root);
  return text;
}

char *library_encode(const struct library *l, size_t *len) {
  char *text = encode(l, len);
  if (text != NULL && *len > LIBRARY_MAX_BYTES) {
    /* What the next load would refuse is not written: the old file stays. */
    free(text);
    return NULL;
  }
  return text;
}

int library_write(const char *path, const char *text, size_t len) {
  char *tmp;
  size_t tlen = strlen(path) + 32;
  int fd;
  int err;
  if ((tmp = malloc(tlen)) == NULL) {
    return SHOAL_ENOMEM;
  }
  snprintf(tmp, tlen, "%s.tmp-%ld", path, (long)getpid());
  /* O_TRUNC rather than O_EXCL: a file left by a killed run that had our
   * pid is ours to reuse. O_NOFOLLOW: never write through a link. */
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = -errno;
    free(tmp);
    return err;
  }
  err = fsutil_replace(fd, tmp, path, (const uint8_t *)text, len);
  free(tmp);
  return err;
}

int library_save(struct library *l) {
  size_t len = 0;
  char *text;
  int err;
  assert(l->path != NULL);
  text = encode(l, &len);
  if (text == NULL) {
    return SHOAL_ENOMEM;
  }
  if (len > LIBRARY_MAX_BYTES) {
    free(text);
    return SHOAL_ETOOBIG;
  }
  /* A folder that cannot be flushed after the rename leaves the library
   * dirty, so that the next save tries again. */
  err = library_write(l->path, text, len);
  if (err == 0) {
    l->dirty = 0;
  }
  free(text);
  return err;
}

/* ------------------------------------------------------------------------ */
/* The list in memory */

/* Where a content ID starts its probe: content IDs are hashes, so their
 * first bytes are spread evenly already. */
static uint32_t index_home(const uint8_t *content, uint32_t cap) {
  uint32_t h;
  memcpy(&h, content, sizeof(h));
  return h & (cap - 1);
}

/* Rebuilds the index over the entries. Returns 0, or -1 without memory
 * (library_find then scans). */
static int index_build(struct library *l) {
  uint32_t cap = 16;
  while (cap < 2u * l->count + 2u) {
    cap *= 2;
  }
  if (cap != l->index_cap) {
    uint32_t *ix = calloc(cap, sizeof(*ix));
    if (ix == NULL) {
      return -1;
    }
    free(l->index);
    l->index = ix;
    l->index_cap = cap;
  } else {
    memset(l->index, 0, (size_t)cap * sizeof(*l->index));
  }
  for (uint32_t i = 0; i < l->count; i++) {
    uint32_t k = index_home(l->entries[i].content, cap);
    while (l->index[k] != 0) {
      k = (k + 1) & (cap - 1);
    }
    l->index[k] = i + 1;
  }
  l->index_ok = 1;
  return 0;
}

struct library_entry *library_find(struct library *l,
                                   const uint8_t content[MANIFEST_ID_BYTES]) {
  /* The daemon looks contents up on every event it gets about them: with
   * thousands of contents a scan would be most of its idle time. */
  if (l->count == 0) {
    return NULL;
  }
  if (l->index_ok || index_build(l) == 0) {
    for (uint32_t k = index_home(content, l->index_cap); l->index[k] != 0;
         k = (k + 1) & (l->index_cap - 1)) {
      struct library_entry *e = &l->entries[l->index[k] - 1];
      if (memcmp(e->content, content, MANIFEST_ID_BYTES) == 0) {
        return e;
      }
    }
    return NULL;
  }
  for (uint32_t i = 0; i < l->count; i++) {
    if (memcmp(l->entries[i].content, content, MANIFEST_ID_BYTES) == 0) {
      return &l->entries[i];
    }
  }
  return NULL;
}

static struct library_entry *add_fail(int *err, int code) {
  if (err != NULL) {
    *err = code;
  }
  return NULL;
}

struct library_entry *library_add(struct library *l,
                                  const uint8_t content[MANIFEST_ID_BYTES],
                                  enum library_kind kind, const char *name,
                                  const char *path, int *err) {
  struct library_entry *e;
  size_t nlen = strlen(name);
  char *p;

  assert(kind == LIBRARY_SHARE || kind == LIBRARY_DOWNLOAD);
  if (manifest_check_segment(name, nlen) != 0 || !path_ok(path, strlen(path))) {
    return add_fail(err, SHOAL_EPATH);
  }
  if (library_find(l, content) != NULL) {
    return add_fail(err, UV_EEXIST);
  }
  if (l->count >= LIBRARY_MAX_CONTENTS) {
    return add_fail(err, SHOAL_ETOOBIG);
  }
  if (l->count == l->cap) {
    uint32_t cap = l->cap == 0 ? LIBRARY_FIRST_CAP : l->cap * 2;
    struct library_entry *more;
    if (cap > LIBRARY_MAX_CONTENTS) {
      cap = LIBRARY_MAX_CONTENTS;
    }
    more = realloc(l->entries, (size_t)cap * sizeof(*more));
    if (more == NULL) {
      return add_fail(err, SHOAL_ENOMEM);
    }
    l->entries = more;
    l->cap = cap;
  }
  if ((p = strdup(path)) == NULL) {
    return add_fail(err, SHOAL_ENOMEM);
  }
  e = &l->entries[l->count++];
  l->index_ok = 0;
  memset(e, 0, sizeof(*e));
  memcpy(e->content, content, MANIFEST_ID_BYTES);
  e->kind = kind;
  memcpy(e->name, name, nlen + 1);
  e->path = p;
  l->dirty = 1;
  if (err != NULL) {
    *err = 0;
  }
  return e;
}

int library_remove(struct library *l,
                   const uint8_t content[MANIFEST_ID_BYTES]) {
  struct library_entry *e = library_find(l, content);
  uint32_t i;

  if (e == NULL) {
    return SHOAL_ENOENT;
  }
  i = (uint32_t)(e - l->entries);
  entry_free(e);
  /* The order is kept: it is the order the contents are listed in. */
  memmove(e, e + 1, (size_t)(l->count - i - 1) * sizeof(*e));
  l->count--;
  l->index_ok = 0;
  l->dirty = 1;
  return 0;
}

int library_set_link(struct library *l, struct library_entry *e,
                     const char *link) {
  struct share_link sl;
  const char *why = NULL;
  char *copy = NULL;

  if (link != NULL) {
    if (e->link != NULL && strcmp(e->link, link) == 0) {
      return 0;
    }
    if (link_parse(link, strlen(link), &sl, &why) != 0 ||
        memcmp(sl.id, e->content, MANIFEST_ID_BYTES) != 0) {
      return SHOAL_EBADLINK;
    }
    if ((copy = strdup(link)) == NULL) {
      return SHOAL_ENOMEM;
    }
  } else if (e->link == NULL) {
    return 0;
  }
  free(e->link);
  e->link = copy;
  l->dirty = 1;
  return 0;
}

int library_set_files(struct library *l, struct library_entry *e,
                      const struct library_file *files, uint32_t n) {
  struct library_file *copy = NULL;

  if (n > MANIFEST_MAX_FILES) {
    return SHOAL_ETOOBIG;
  }
  for (uint32_t k = 0; k < n; k++) {
    /* Records come from stat(): anything else is the caller's mistake. */
    assert(files[k].size <= (uint64_t)INT64_MAX);
    assert(files[k].mtime_nsec >= 0 && files[k].mtime_nsec < 1000000000);
  }
  if (n > 0) {
    copy = malloc((size_t)n * sizeof(*copy));
    if (copy == NULL) {
      return SHOAL_ENOMEM;
    }
    memcpy(copy, files, (size_t)n * sizeof(*copy));
  }
  free(e->files);
  e->files = copy;
  e->nfiles = n;
  l->dirty = 1;
  return 0;
}

void library_set_error(struct library *l, struct library_entry *e,
                       const char *fmt, ...) {
  char text[LIBRARY_ERROR_BYTES];
  size_t len;
  va_list ap;

  if (fmt == NULL) {
    library_clear_error(l, e);
    return;
  }
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  /* A cut character at the end goes, and any other invalid byte (a file
   * name from the disk) becomes '?': the file holds UTF-8 only. */
  len = strlen(text);
  if (len == sizeof(text) - 1) {
    size_t start = len;
    while (start > 0 && ((unsigned char)text[start - 1] & 0xc0) == 0x80) {
      start--;
    }
    if (start > 0 && (unsigned char)text[start - 1] >= 0xc0 &&
        fmt_utf8_seq_len((const uint8_t *)text + start - 1, len - start + 1) ==
            0) {
      text[start - 1] = '\0';
    }
  }
  utf8_repair(text);
  if (strcmp(text, e->error) != 0) {
    memcpy(e->error, text, strlen(text) + 1);
    l->dirty = 1;
  }
}

void library_clear_error(struct library *l, struct library_entry *e) {
  if (e->error[0] != '\0') {
    e->error[0] = '\0';
    l->dirty = 1;
  }
}

void library_close(struct library *l) {
  entries_free(l);
  free(l->index);
  free(l->path);
  memset(l, 0, sizeof(*l));
}
