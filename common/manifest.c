#include "common/manifest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"

static const char manifest_domain[] = "shoal/1 manifest";

/* version, kind, chunk_log2, flags, publisher, total, name length, file
 * count, folder count, chunk count: the fixed part of the canonical bytes.
 * The smallest signed manifest adds a one-byte name and the signature. */
#define FIXED_BYTES (4 + IDENTITY_PK_BYTES + 8 + 2 + 4 + 4 + 4)
#define MIN_SIGNED_BYTES (FIXED_BYTES + 1 + IDENTITY_SIG_BYTES)
/* Each file entry is at least a 2-byte length, one path byte, the size, the
 * modification time (seconds and nanoseconds) and the mode byte. */
#define MIN_FILE_BYTES (2 + 1 + 8 + 8 + 4 + 1)
/* Each folder entry is at least a 2-byte length and one path byte. */
#define MIN_FOLDER_BYTES (2 + 1)

/* ------------------------------------------------------------------------ */
/* Paths */

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. Refuses
 * overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  if (c < 0x80) {
    return 1;
  }
  if (c >= 0xc2 && c <= 0xdf) {
    return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
  }
  if (c >= 0xe0 && c <= 0xef) {
    if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) {
      return 0;
    }
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)) {
      return 0;
    }
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
        (p[3] & 0xc0) != 0x80) {
      return 0;
    }
    if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)) {
      return 0;
    }
    return 4;
  }
  return 0;
}

/* Checks one segment: not empty, not "." or "..", no control characters, no
 * '/' or '\\', valid UTF-8, at most MANIFEST_MAX_SEGMENT bytes. */
static int check_segment(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  if (len == 0 || len > MANIFEST_MAX_SEGMENT) {
    return SHOAL_EPATH;
  }
  if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.')) {
    return SHOAL_EPATH;
  }
  for (size_t i = 0; i < len;) {
    if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '/' || p[i] == '\\') {
      return SHOAL_EPATH;
    }
    size_t n = utf8_seq(p + i, len - i);
    /* C1 controls (U+0080..U+009F, 0xC2 0x80..0x9F) are controls too. */
    if (n == 0 || (n == 2 && p[i] == 0xc2 && p[i + 1] <= 0x9f)) {
      return SHOAL_EPATH;
    }
    i += n;
  }
  return 0;
}

int manifest_check_path(const char *path, size_t len) {
  size_t start = 0;
  size_t depth = 0;

  if (len == 0) {
    return SHOAL_EPATH;
  }
  if (len > MANIFEST_MAX_PATH) {
    return SHOAL_ETOOBIG;
  }
  for (size_t i = 0; i <= len; i++) {
    if (i == len || path[i] == '/') {
      int err = check_segment(path + start, i - start);
      if (err != 0) {
        return err;
      }
      if (++depth > MANIFEST_MAX_DEPTH + 1) {
        return SHOAL_ETOOBIG;
      }
      start = i + 1;
    }
  }
  return 0;
}

/* Orders paths segment by segment: '/' sorts below every other byte, so a
 * folder's files follow it directly ("a", "a/b", "a-c"). */
static int path_cmp(const char *a, const char *b) {
  for (;; a++, b++) {
    int ca = *a == '\0' ? 0 : *a == '/' ? 1 : (unsigned char)*a + 1;
    int cb = *b == '\0' ? 0 : *b == '/' ? 1 : (unsigned char)*b + 1;
    if (ca != cb || ca == 0) {
      return ca - cb;
    }
  }
}

static int file_cmp(const void *x, const void *y) {
  const struct manifest_file *a = x;
  const struct manifest_file *b = y;
  return path_cmp(a->path, b->path);
}

static int folder_cmp(const void *x, const void *y) {
  return path_cmp(*(char *const *)x, *(char *const *)y);
}

/* True when `child` lies inside the folder `parent`. */
static int is_inside(const char *parent, const char *child) {
  size_t n = strlen(parent);
  return strncmp(parent, child, n) == 0 && child[n] == '/';
}

/* ------------------------------------------------------------------------ */
/* Basic operations */

unsigned manifest_choose_chunk_log2(uint64_t total) {
  unsigned l = MANIFEST_CHUNK_LOG2_MIN;
  while (l < MANIFEST_CHUNK_LOG2_MAX &&
         (total >> l) + ((total & (((uint64_t)1 << l) - 1)) != 0) >
             MANIFEST_TARGET_CHUNKS) {
    l++;
  }
  return l;
}

static uint64_t chunks_for(uint64_t size, unsigned log2) {
  return (size >> log2) + ((size & (((uint64_t)1 << log2) - 1)) != 0);
}

void manifest_free(struct manifest *m) {
  if (m == NULL) {
    return;
  }
  for (uint32_t i = 0; i < m->file_count; i++) {
    free(m->files[i].path);
  }
  free(m->files);
  for (uint32_t i = 0; i < m->folder_count; i++) {
    free(m->folders[i]);
  }
  free(m->folders);
  free(m->name);
  free(m->hashes);
  free(m->encoded);
  free(m->local_root);
  free(m);
}

int manifest_chunk_file(const struct manifest *m, uint32_t idx, uint32_t *file,
                        uint64_t *offset) {
  uint32_t lo = 0;
  uint32_t hi = m->file_count;

  if (idx >= m->chunk_count) {
    return SHOAL_EINVAL;
  }
  /* The last file whose first chunk is at or before idx owns it: an empty
   * file shares its first_chunk with the next file and sorts before it. */
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (m->files[mid].first_chunk <= idx) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  *file = lo;
  *offset = (uint64_t)(idx - m->files[lo].first_chunk) << m->chunk_log2;
  return 0;
}

uint32_t manifest_chunk_len(const struct manifest *m, uint32_t idx) {
  uint32_t f;
  uint64_t off;
  if (manifest_chunk_file(m, idx, &f, &off) != 0) {
    return 0;
  }
  uint64_t left = m->files[f].size - off;
  uint64_t cs = (uint64_t)1 << m->chunk_log2;
  return (uint32_t)(left < cs ? left : cs);
}

int manifest_verify_chunk(const struct manifest *m, uint32_t idx,
                          const uint8_t *data, size_t len) {
  uint8_t h[MANIFEST_HASH_BYTES];
  if (idx >= m->chunk_count || len != manifest_chunk_len(m, idx)) {
    return SHOAL_EINVAL;
  }
  crypto_generichash(h, sizeof(h), data, len, NULL, 0);
  if (sodium_memcmp(h, m->hashes + (size_t)idx * MANIFEST_HASH_BYTES,
                    sizeof(h)) != 0) {
    return SHOAL_EHASH;
  }
  return 0;
}

int manifest_id_of(const uint8_t *bytes, size_t len,
                   uint8_t id[MANIFEST_ID_BYTES]) {
  if (len < MIN_SIGNED_BYTES) {
    memset(id, 0, MANIFEST_ID_BYTES);
    return SHOAL_ETRUNC;
  }
  crypto_generichash(id, MANIFEST_ID_BYTES, bytes, len - IDENTITY_SIG_BYTES,
                     NULL, 0);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Encoding */

/* Writes the canonical bytes and signature of m into m->encoded and sets
 * m->id. The fields, files and hashes must already be complete. */
static int manifest_seal(struct manifest *m, const struct identity *pub) {
  struct buf b;
  uint8_t sig[IDENTITY_SIG_BYTES];
  size_t name_len = strlen(m->name);
  int err;

  buf_init(&b, MANIFEST_MAX_BYTES);
  memcpy(m->publisher, pub->pk, IDENTITY_PK_BYTES);
  buf_add_u8(&b, MANIFEST_VERSION);
  buf_add_u8(&b, m->kind);
  buf_add_u8(&b, m->chunk_log2);
  buf_add_u8(&b, 0);
  buf_add(&b, m->publisher, IDENTITY_PK_BYTES);
  buf_add_u64(&b, m->total_size);
  buf_add_u16(&b, (uint16_t)name_len);
  buf_add(&b, m->name, name_len);
  buf_add_u32(&b, m->file_count);
  for (uint32_t i = 0; i < m->file_count; i++) {
    const struct manifest_file *f = &m->files[i];
    size_t n = strlen(f->path);
    buf_add_u16(&b, (uint16_t)n);
    buf_add(&b, f->path, n);
    buf_add_u64(&b, f->size);
    /* The seconds travel as the two's complement of a signed count. */
    buf_add_u64(&b, (uint64_t)f->mtime_sec);
    buf_add_u32(&b, (uint32_t)f->mtime_nsec);
    buf_add_u8(&b, f->mode);
  }
  buf_add_u32(&b, m->folder_count);
  for (uint32_t i = 0; i < m->folder_count; i++) {
    size_t n = strlen(m->folders[i]);
    buf_add_u16(&b, (uint16_t)n);
    buf_add(&b, m->folders[i], n);
  }
  buf_add_u32(&b, m->chunk_count);
  buf_add(&b, m->hashes, (size_t)m->chunk_count * MANIFEST_HASH_BYTES);
  err = buf_err(&b);
  if (err != 0) {
    goto fail;
  }
  crypto_generichash(m->id, sizeof(m->id), b.data, b.len, NULL, 0);
  err = identity_sign2(pub, manifest_domain, sizeof(manifest_domain), b.data,
                       b.len, sig);
  if (err != 0) {
    goto fail;
  }
  memcpy(m->signature, sig, sizeof(sig));
  buf_add(&b, sig, sizeof(sig));
  err = buf_err(&b);
  if (err != 0) {
    goto fail;
  }
  m->encoded = buf_steal(&b, &m->encoded_len);
  return 0;

fail:
  buf_free(&b);
  return err;
}

/* ------------------------------------------------------------------------ */
/* Decoding */

static char *dup_bytes(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (s != NULL) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

/* The signed value of a 64-bit two's complement, without relying on the
 * implementation-defined conversion of a large unsigned value. */
static int64_t i64_of(uint64_t v) {
  return v <= (uint64_t)INT64_MAX ? (int64_t)v : -(int64_t)(UINT64_MAX - v) - 1;
}

/* Checks one path from the wire and copies it: the path rules, then the
 * content's name first (a file content's one path is the name itself, and
 * everything in a folder content lies inside the name). */
static int decode_path(const struct manifest *m, const uint8_t *p, uint16_t n,
                       char **out) {
  size_t name_len = strlen(m->name);
  int err = manifest_check_path((const char *)p, n);
  if (err != 0) {
    return err;
  }
  if (n < name_len || memcmp(p, m->name, name_len) != 0 ||
      (m->kind == MANIFEST_KIND_FILE && n != name_len) ||
      (m->kind == MANIFEST_KIND_FOLDER &&
       (n <= name_len + 1 || p[name_len] != '/'))) {
    return SHOAL_EPATH;
  }
  *out = dup_bytes(p, n);
  return *out == NULL ? SHOAL_ENOMEM : 0;
}

static int decode_files(struct buf_reader *r, struct manifest *m) {
  uint64_t total = 0;
  uint64_t chunks = 0;

  for (uint32_t i = 0; i < m->file_count; i++) {
    struct manifest_file *f = &m->files[i];
    uint16_t n = buf_read_u16(r);
    const uint8_t *p = buf_read_bytes(r, n);
    f->size = buf_read_u64(r);
    f->mtime_sec = i64_of(buf_read_u64(r));
    uint32_t nsec = buf_read_u32(r);
    f->mode = buf_read_u8(r);
    if (buf_reader_err(r) != 0) {
      return buf_reader_err(r);
    }
    int err = decode_path(m, p, n, &f->path);
    if (err != 0) {
      return err;
    }
    if (i > 0 && (path_cmp(m->files[i - 1].path, f->path) >= 0 ||
                  is_inside(m->files[i - 1].path, f->path))) {
      return SHOAL_EDUPPATH;
    }
    /* One bit of mode is defined, and a time has less than a second of
     * nanoseconds: anything else would be a second encoding of a content. */
    if ((f->mode & ~MANIFEST_MODE_EXEC) != 0 || nsec >= MANIFEST_NSEC_LIMIT) {
      return SHOAL_EFORMAT;
    }
    f->mtime_nsec = nsec;
    if (f->size > UINT64_MAX - total) {
      return SHOAL_ESIZE;
    }
    total += f->size;
    uint64_t c = chunks_for(f->size, m->chunk_log2);
    if (c > MANIFEST_MAX_CHUNKS - chunks) {
      return SHOAL_ETOOBIG;
    }
    f->first_chunk = (uint32_t)chunks;
    f->chunk_count = (uint32_t)c;
    chunks += c;
  }
  if (total != m->total_size) {
    return SHOAL_ESIZE;
  }
  m->chunk_count = (uint32_t)chunks;
  return 0;
}

/* Walks the files and the empty folders together in canonical order. Each
 * path must be greater than the one before it and not inside it: a file
 * inside a file, a folder that is also a file or lies inside one, a folder
 * that holds a file or another listed folder (it is implied, and listing it
 * would give the same tree a second encoding), and a folder listed twice
 * or out of order are all refused. Since '/' sorts lowest, a path inside P
 * comes right after P, so neighbours are all there is to compare. */
static int check_tree(const struct manifest *m) {
  const char *prev = NULL;
  uint32_t i = 0;
  uint32_t j = 0;

  while (i < m->file_count || j < m->folder_count) {
    const char *cur;
    if (j == m->folder_count ||
        (i < m->file_count && path_cmp(m->files[i].path, m->folders[j]) < 0)) {
      cur = m->files[i++].path;
    } else {
      cur = m->folders[j++];
    }
    if (prev != NULL && (path_cmp(prev, cur) >= 0 || is_inside(prev, cur))) {
      return SHOAL_EDUPPATH;
    }
    prev = cur;
  }
  return 0;
}

static int decode_folders(struct buf_reader *r, struct manifest *m) {
  uint32_t count = buf_read_u32(r);

  if (buf_reader_err(r) != 0) {
    return buf_reader_err(r);
  }
  if (count > MANIFEST_MAX_FOLDERS) {
    return SHOAL_ETOOBIG;
  }
  /* A file content has no folder; a count the remaining bytes cannot hold
   * is refused before allocation. */
  if ((m->kind == MANIFEST_KIND_FILE && count != 0) ||
      count > buf_reader_left(r) / MIN_FOLDER_BYTES) {
    return SHOAL_EFORMAT;
  }
  m->folders = calloc(count ? count : 1, sizeof(*m->folders));
  if (m->folders == NULL) {
    return SHOAL_ENOMEM;
  }
  m->folder_count = count;
  for (uint32_t i = 0; i < count; i++) {
    uint16_t n = buf_read_u16(r);
    const uint8_t *p = buf_read_bytes(r, n);
    if (buf_reader_err(r) != 0) {
      return buf_reader_err(r);
    }
    int err = decode_path(m, p, n, &m->folders[i]);
    if (err != 0) {
      return err;
    }
  }
  return check_tree(m);
}

int manifest_decode(const uint8_t *bytes, size_t len, struct manifest **out) {
  struct manifest *m = NULL;
  struct buf_reader r;
  size_t body_len;
  int err;

  *out = NULL;
  if (len < 1) {
    return SHOAL_ETRUNC;
  }
  /* The version fixes the layout, so it is checked before anything else
   * (the signature included): a manifest of another version is refused as
   * such, whatever its length. */
  if (bytes[0] != MANIFEST_VERSION) {
    return SHOAL_EVERSION;
  }
  if (len < MIN_SIGNED_BYTES) {
    return SHOAL_ETRUNC;
  }
  if (len > MANIFEST_MAX_BYTES) {
    return SHOAL_ETOOBIG;
  }
  body_len = len - IDENTITY_SIG_BYTES;
  err = identity_verify2(bytes + 4, manifest_domain, sizeof(manifest_domain),
                         bytes, body_len, bytes + body_len);
  if (err != 0) {
    return err;
  }

  m = calloc(1, sizeof(*m));
  if (m == NULL) {
    return SHOAL_ENOMEM;
  }
  buf_reader_init(&r, bytes, body_len);
  (void)buf_read_u8(&r);
  m->kind = buf_read_u8(&r);
  m->chunk_log2 = buf_read_u8(&r);
  uint8_t flags = buf_read_u8(&r);
  buf_read_copy(&r, m->publisher, sizeof(m->publisher));
  m->total_size = buf_read_u64(&r);
  uint16_t name_len = buf_read_u16(&r);
  const uint8_t *name = buf_read_bytes(&r, name_len);
  uint32_t file_count = buf_read_u32(&r);
  err = buf_reader_err(&r);
  if (err != 0) {
    goto fail;
  }
  if ((m->kind != MANIFEST_KIND_FILE && m->kind != MANIFEST_KIND_FOLDER) ||
      m->chunk_log2 < MANIFEST_CHUNK_LOG2_MIN ||
      m->chunk_log2 > MANIFEST_CHUNK_LOG2_MAX || flags != 0) {
    err = SHOAL_EFORMAT;
    goto fail;
  }
  err = check_segment((const char *)name, name_len);
  if (err != 0) {
    goto fail;
  }
  m->name = dup_bytes(name, name_len);
  if (m->name == NULL) {
    err = SHOAL_ENOMEM;
    goto fail;
  }
  if (file_count > MANIFEST_MAX_FILES) {
    err = SHOAL_ETOOBIG;
    goto fail;
  }
  /* A count the remaining bytes cannot hold is refused before allocation. */
  if ((m->kind == MANIFEST_KIND_FILE && file_count != 1) ||
      file_count > buf_reader_left(&r) / MIN_FILE_BYTES) {
    err = SHOAL_EFORMAT;
    goto fail;
  }
  m->files = calloc(file_count ? file_count : 1, sizeof(*m->files));
  if (m->files == NULL) {
    err = SHOAL_ENOMEM;
    goto fail;
  }
  m->file_count = file_count;
  err = decode_files(&r, m);
  if (err != 0) {
    goto fail;
  }
  err = decode_folders(&r, m);
  if (err != 0) {
    goto fail;
  }
  uint32_t chunk_count = buf_read_u32(&r);
  if (buf_reader_err(&r) != 0) {
    err = buf_reader_err(&r);
    goto fail;
  }
  if (chunk_count != m->chunk_count) {
    err = SHOAL_ESIZE;
    goto fail;
  }
  if (buf_reader_left(&r) != (size_t)chunk_count * MANIFEST_HASH_BYTES) {
    err = SHOAL_EFORMAT;
    goto fail;
  }
  m->hashes =
      malloc(chunk_count ? (size_t)chunk_count * MANIFEST_HASH_BYTES : 1);
  m->encoded = malloc(len);
  if (m->hashes == NULL || m->encoded == NULL) {
    err = SHOAL_ENOMEM;
    goto fail;
  }
  buf_read_copy(&r, m->hashes, (size_t)chunk_count * MANIFEST_HASH_BYTES);
  memcpy(m->encoded, bytes, len);
  m->encoded_len = len;
  memcpy(m->signature, bytes + body_len, IDENTITY_SIG_BYTES);
  crypto_generichash(m->id, sizeof(m->id), bytes, body_len, NULL, 0);
  *out = m;
  return 0;

fail:
  manifest_free(m);
  return err;
}

/* ------------------------------------------------------------------------ */
/* Scanning the local file or folder */

struct scan {
  struct manifest *m;
  uint32_t cap;
  uint32_t folder_cap;
  const struct manifest_build_opts *opts;
};

static void set_err_path(const struct manifest_build_opts *o, const char *p) {
  if (o != NULL && o->err_path != NULL && o->err_path_cap > 0) {
    snprintf(o->err_path, o->err_path_cap, "%s", p);
  }
}

static void report_skip(const struct scan *s, const char *path,
                        const char *why) {
  if (s->opts != NULL && s->opts->skipped != NULL) {
    s->opts->skipped(s->opts->arg, path, why);
  }
}

static int add_file(struct scan *s, const char *rel, const struct stat *st) {
  struct manifest *m = s->m;
  if (m->file_count == MANIFEST_MAX_FILES) {
    return SHOAL_ETOOBIG;
  }
  if (m->file_count == s->cap) {
    uint32_t cap = s->cap ? s->cap * 2 : 16;
    struct manifest_file *f = realloc(m->files, cap * sizeof(*f));
    if (f == NULL) {
      return SHOAL_ENOMEM;
    }
    m->files = f;
    s->cap = cap;
  }
  struct manifest_file *f = &m->files[m->file_count];
  memset(f, 0, sizeof(*f));
  f->path = strdup(rel);
  if (f->path == NULL) {
    return SHOAL_ENOMEM;
  }
  f->size = (uint64_t)st->st_size;
  f->mtime_sec = st->st_mtim.tv_sec;
  f->mtime_nsec = st->st_mtim.tv_nsec;
  /* Only whether the owner may run it: the rest of the mode is the
   * downloader's own (its umask), and the special bits are never shared. */
  f->mode = (st->st_mode & S_IXUSR) != 0 ? MANIFEST_MODE_EXEC : 0;
  m->file_count++;
  return 0;
}

static int add_folder(struct scan *s, const char *rel) {
  struct manifest *m = s->m;
  if (m->folder_count == MANIFEST_MAX_FOLDERS) {
    return SHOAL_ETOOBIG;
  }
  if (m->folder_count == s->folder_cap) {
    uint32_t cap = s->folder_cap ? s->folder_cap * 2 : 16;
    char **f = realloc(m->folders, cap * sizeof(*f));
    if (f == NULL) {
      return SHOAL_ENOMEM;
    }
    m->folders = f;
    s->folder_cap = cap;
  }
  m->folders[m->folder_count] = strdup(rel);
  if (m->folders[m->folder_count] == NULL) {
    return SHOAL_ENOMEM;
  }
  m->folder_count++;
  return 0;
}

/* Walks the open folder dfd, whose manifest path is rel. Takes dfd. */
static int scan_dir(struct scan *s, int dfd, const char *rel, unsigned depth) {
  DIR *d = fdopendir(dfd);
  char child[MANIFEST_MAX_PATH + 1];
  struct dirent *e;
  int err = 0;

  if (d == NULL) {
    err = -errno;
    close(dfd);
    return err;
  }
  for (;;) {
    errno = 0;
    e = readdir(d);
    if (e == NULL) {
      err = -errno; /* 0 at the end of the folder */
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
      continue;
    }
    int n = snprintf(child, sizeof(child), "%s/%s", rel, e->d_name);
    if (n < 0 || (size_t)n >= sizeof(child)) {
      set_err_path(s->opts, rel);
      err = SHOAL_ETOOBIG;
      break;
    }
    if (check_segment(e->d_name, strlen(e->d_name)) != 0) {
      report_skip(s, child, MANIFEST_SKIP_UNSAFE_NAME);
      continue;
    }
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        report_skip(s, child, MANIFEST_SKIP_VANISHED);
        continue;
      }
      err = -errno;
      set_err_path(s->opts, child);
      break;
    }
    if (S_ISLNK(st.st_mode)) {
      report_skip(s, child, MANIFEST_SKIP_SYMLINK);
    } else if (S_ISREG(st.st_mode)) {
      err = add_file(s, child, &st);
    } else if (S_ISDIR(st.st_mode)) {
      /* A file at depth d has d + 2 segments (the name, d folders, its
       * own), and a path may have at most MANIFEST_MAX_DEPTH + 1. */
      if (depth + 1 >= MANIFEST_MAX_DEPTH) {
        set_err_path(s->opts, child);
        err = SHOAL_ETOOBIG;
        break;
      }
      int sub = openat(dirfd(d), e->d_name,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        err = -errno;
        set_err_path(s->opts, child);
        break;
      }
      uint32_t files = s->m->file_count;
      uint32_t folders = s->m->folder_count;
      err = scan_dir(s, sub, child, depth + 1);
      /* A folder in which nothing was recorded is kept as an empty folder;
       * one that holds anything is implied by it. */
      if (err == 0 && s->m->file_count == files &&
          s->m->folder_count == folders) {
        err = add_folder(s, child);
      }
    } else {
      report_skip(s, child, MANIFEST_SKIP_SPECIAL);
    }
    if (err != 0) {
      break;
    }
  }
  closedir(d);
  return err;
}

/* Fills m's name, kind, files and chunk layout from the path on disk. */
static int scan_path(struct manifest *m, const char *path,
                     const struct manifest_build_opts *opts) {
  struct scan s = {.m = m, .cap = 0, .opts = opts};
  char *real = realpath(path, NULL);
  struct stat st;
  int err;

  if (real == NULL) {
    err = -errno; /* read before snprintf() in set_err_path() may change it */
    set_err_path(opts, path);
    return err;
  }
  char *slash = strrchr(real, '/');
  const char *base = slash + 1;
  if (check_segment(base, strlen(base)) != 0) {
    set_err_path(opts, path);
    free(real);
    return SHOAL_EPATH;
  }
  m->name = strdup(base);
  m->local_root =
      slash == real ? strdup("/") : strndup(real, (size_t)(slash - real));
  if (m->name == NULL || m->local_root == NULL) {
    free(real);
    return SHOAL_ENOMEM;
  }
  if (stat(real, &st) != 0) {
    err = -errno;
    set_err_path(opts, path);
  } else if (S_ISREG(st.st_mode)) {
    m->kind = MANIFEST_KIND_FILE;
    err = add_file(&s, m->name, &st);
  } else if (S_ISDIR(st.st_mode)) {
    m->kind = MANIFEST_KIND_FOLDER;
    int dfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    err = dfd < 0 ? -errno : scan_dir(&s, dfd, m->name, 0);
    if (dfd < 0) {
      set_err_path(opts, path);
    }
  } else {
    set_err_path(opts, path);
    err = SHOAL_EPATH;
  }
  free(real);
  if (err != 0) {
    return err;
  }

  if (m->file_count > 1) {
    qsort(m->files, m->file_count, sizeof(*m->files), file_cmp);
  }
  if (m->folder_count > 1) {
    qsort(m->folders, m->folder_count, sizeof(*m->folders), folder_cmp);
  }
  uint64_t total = 0;
  for (uint32_t i = 0; i < m->file_count; i++) {
    total += m->files[i].size;
  }
  m->total_size = total;
  /* Range-checked before the narrowing to uint8_t, so that 256 + 14 is
   * refused rather than taken as 14. */
  unsigned want_log2 = opts && opts->chunk_log2
                           ? opts->chunk_log2
                           : manifest_choose_chunk_log2(total);
  if (want_log2 < MANIFEST_CHUNK_LOG2_MIN ||
      want_log2 > MANIFEST_CHUNK_LOG2_MAX) {
    return SHOAL_EINVAL;
  }
  m->chunk_log2 = (uint8_t)want_log2;
  uint64_t chunks = 0;
  for (uint32_t i = 0; i < m->file_count; i++) {
    uint64_t c = chunks_for(m->files[i].size, m->chunk_log2);
    if (c > MANIFEST_MAX_CHUNKS - chunks) {
      return SHOAL_ETOOBIG;
    }
    m->files[i].first_chunk = (uint32_t)chunks;
    m->files[i].chunk_count = (uint32_t)c;
    chunks += c;
  }
  m->chunk_count = (uint32_t)chunks;
  m->hashes = calloc(chunks ? chunks : 1, MANIFEST_HASH_BYTES);
  return m->hashes == NULL ? SHOAL_ENOMEM : 0;
}

/* ------------------------------------------------------------------------ */
/* Hashing */

struct job {
  uv_work_t req;
  struct manifest_builder *b;
  uint32_t file;
  uint32_t c0, c1; /* chunk range inside the file, relative to it */
  uint64_t bytes;
  int err;
  struct job *prev, *next; /* the builder's list of queued jobs */
};

struct manifest_builder {
  uv_loop_t *loop;
  struct manifest *m;
  struct identity publisher;
  struct manifest_build_opts opts;
  manifest_build_cb cb;
  void *arg;
  uint32_t next_file;  /* the job iterator */
  uint32_t next_chunk; /* relative to next_file */
  unsigned in_flight;
  struct job *jobs; /* queued or running, so that cancel can reach them */
  int queued_any;
  int status;
  int canceled;
  uint64_t done;
  char err_path[2 * MANIFEST_MAX_PATH + 2];
};

/* Records which file a failed job was reading (on the loop thread, so that
 * workers never write shared memory but their own hash slots). */
static void note_job_error(struct manifest_builder *b, const struct job *j) {
  if (b->err_path[0] == '\0') {
    snprintf(b->err_path, sizeof(b->err_path), "%s/%s", b->m->local_root,
             b->m->files[j->file].path);
  }
}

static int stat_matches(const struct stat *st, const struct manifest_file *f) {
  return (uint64_t)st->st_size == f->size &&
         st->st_mtim.tv_sec == f->mtime_sec &&
         st->st_mtim.tv_nsec == f->mtime_nsec;
}

/* Hashes chunks [c0, c1) of one file. Runs on a worker thread or inline;
 * touches only its own chunk slots of the hash array. */
static void hash_range(struct job *j) {
  const struct manifest *m = j->b->m;
  const struct manifest_file *f = &m->files[j->file];
  const uint64_t cs = (uint64_t)1 << m->chunk_log2;
  char path[2 * MANIFEST_MAX_PATH + 2];
  uint8_t *buf = NULL;
  struct stat st;
  int fd = -1;

  if (j->c0 == j->c1) {
    return; /* the empty job that reports a content with no chunks */
  }
  snprintf(path, sizeof(path), "%s/%s", m->local_root, f->path);
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    j->err = -errno;
    goto out;
  }
  if (fstat(fd, &st) != 0) {
    j->err = -errno;
    goto out;
  }
  if (!stat_matches(&st, f)) {
    j->err = SHOAL_ECHANGED;
    goto out;
  }
  (void)posix_fadvise(fd, (off_t)(j->c0 * cs), (off_t)((j->c1 - j->c0) * cs),
                      POSIX_FADV_SEQUENTIAL);
  buf = malloc(MANIFEST_READ_BYTES);
  if (buf == NULL) {
    j->err = SHOAL_ENOMEM;
    goto out;
  }
  for (uint32_t c = j->c0; c < j->c1; c++) {
    crypto_generichash_state hs;
    uint64_t off = c * cs;
    uint64_t left = f->size - off < cs ? f->size - off : cs;

    crypto_generichash_init(&hs, NULL, 0, MANIFEST_HASH_BYTES);
    while (left > 0) {
      size_t want =
          left < MANIFEST_READ_BYTES ? (size_t)left : MANIFEST_READ_BYTES;
      ssize_t r = pread(fd, buf, want, (off_t)off);
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r < 0) {
        j->err = -errno;
        goto out;
      }
      if (r == 0) {
        j->err = SHOAL_ECHANGED; /* shorter than when it was scanned */
        goto out;
      }
      crypto_generichash_update(&hs, buf, (size_t)r);
      off += (uint64_t)r;
      left -= (uint64_t)r;
    }
    crypto_generichash_final(
        &hs, m->hashes + (size_t)(f->first_chunk + c) * MANIFEST_HASH_BYTES,
        MANIFEST_HASH_BYTES);
  }
  /* A write during hashing shows in the modification time. */
  if (fstat(fd, &st) != 0) {
    j->err = -errno;
  } else if (!stat_matches(&st, f)) {
    j->err = SHOAL_ECHANGED;
  }

out:
  free(buf);
  if (fd >= 0) {
    close(fd);
  }
}

/* Takes the next range of chunks to hash. Returns 0 when none is left. */
static int next_job(struct manifest_builder *b, struct job *j) {
  const struct manifest *m = b->m;
  const uint64_t cs = (uint64_t)1 << m->chunk_log2;
  uint32_t per_job = (uint32_t)(MANIFEST_JOB_BYTES / cs);

  if (per_job == 0) {
    per_job = 1;
  }
  while (b->next_file < m->file_count &&
         b->next_chunk >= m->files[b->next_file].chunk_count) {
    b->next_file++;
    b->next_chunk = 0;
  }
  if (b->next_file == m->file_count) {
    return 0;
  }
  const struct manifest_file *f = &m->files[b->next_file];
  uint32_t end = f->chunk_count - b->next_chunk > per_job
                     ? b->next_chunk + per_job
                     : f->chunk_count;
  memset(j, 0, sizeof(*j));
  j->b = b;
  j->file = b->next_file;
  j->c0 = b->next_chunk;
  j->c1 = end;
  uint64_t first = (uint64_t)j->c0 * cs;
  uint64_t last = (uint64_t)end * cs;
  j->bytes = (last < f->size ? last : f->size) - first;
  b->next_chunk = end;
  return 1;
}

static void progress(struct manifest_builder *b, uint64_t bytes) {
  b->done += bytes;
  if (b->opts.progress != NULL) {
    b->opts.progress(b->opts.arg, b->done, b->m->total_size);
  }
}

static void builder_free(struct manifest_builder *b) {
  manifest_free(b->m);
  identity_close(&b->publisher);
  free(b);
}

static void work_cb(uv_work_t *req) {
  hash_range(req->data);
}

static void after_work_cb(uv_work_t *req, int status);

static void queue_jobs(struct manifest_builder *b) {
  /* Two jobs per worker: the next one is already queued when a worker
   * finishes, so no thread waits for the loop to hand it work. */
  while (b->status == 0 && !b->canceled && b->in_flight < 2 * b->opts.threads) {
    struct job tmp;
    if (!next_job(b, &tmp)) {
      if (b->queued_any) {
        break;
      }
      /* Nothing to hash: still go through the pool once so that the
       * callback never runs inside manifest_build_start(). */
      memset(&tmp, 0, sizeof(tmp));
      tmp.b = b;
    }
    struct job *j = malloc(sizeof(*j));
    if (j == NULL) {
      b->status = SHOAL_ENOMEM;
      break;
    }
    *j = tmp;
    j->req.data = j;
    int err = uv_queue_work(b->loop, &j->req, work_cb, after_work_cb);
    if (err != 0) {
      free(j);
      b->status = err;
      break;
    }
    b->queued_any = 1;
    b->in_flight++;
    j->prev = NULL;
    j->next = b->jobs;
    if (b->jobs != NULL) {
      b->jobs->prev = j;
    }
    b->jobs = j;
  }
}

static void finish(struct manifest_builder *b) {
  struct manifest *m = NULL;
  int status = b->canceled && b->status == 0 ? SHOAL_ECANCELED : b->status;

  if (status == 0) {
    status = manifest_seal(b->m, &b->publisher);
  }
  if (status == 0) {
    m = b->m;
    b->m = NULL;
  } else if (b->err_path[0] != '\0') {
    set_err_path(&b->opts, b->err_path);
  }
  b->cb(b->arg, status, m);
  builder_free(b);
}

static void after_work_cb(uv_work_t *req, int status) {
  struct job *j = req->data;
  struct manifest_builder *b = j->b;

  b->in_flight--;
  if (j->prev != NULL) {
    j->prev->next = j->next;
  } else {
    b->jobs = j->next;
  }
  if (j->next != NULL) {
    j->next->prev = j->prev;
  }
  if (status == UV_ECANCELED) {
    b->canceled = 1;
  } else if (j->err != 0 && b->status == 0) {
    b->status = j->err;
    note_job_error(b, j);
  } else if (j->err == 0) {
    progress(b, j->bytes);
  }
  free(j);
  queue_jobs(b);
  if (b->in_flight == 0) {
    finish(b);
  }
}

static int builder_new(const char *path, const struct identity *publisher,
                       const struct manifest_build_opts *opts,
                       struct manifest_builder **out) {
  struct manifest_builder *b = calloc(1, sizeof(*b));
  int err;

  *out = NULL;
  if (b == NULL) {
    return SHOAL_ENOMEM;
  }
  if (sodium_init() < 0) {
    abort();
  }
  if (opts != NULL) {
    b->opts = *opts;
  }
  b->publisher = *publisher;
  b->m = calloc(1, sizeof(*b->m));
  if (b->m == NULL) {
    builder_free(b);
    return SHOAL_ENOMEM;
  }
  err = scan_path(b->m, path, opts);
  if (err != 0) {
    builder_free(b);
    return err;
  }
  *out = b;
  return 0;
}

int manifest_build_start(uv_loop_t *loop, const char *path,
                         const struct identity *publisher,
                         const struct manifest_build_opts *opts,
                         manifest_build_cb cb, void *arg,
                         struct manifest_builder **out) {
  struct manifest_builder *b;
  int err = builder_new(path, publisher, opts, &b);

  if (out != NULL) {
    *out = NULL;
  }
  if (err != 0) {
    return err;
  }
  b->loop = loop;
  b->cb = cb;
  b->arg = arg;
  if (b->opts.threads == 0) {
    b->opts.threads = 1;
  }
  queue_jobs(b);
  if (b->in_flight == 0) {
    err = b->status;
    builder_free(b);
    return err;
  }
  if (out != NULL) {
    *out = b;
  }
  return 0;
}

void manifest_build_cancel(struct manifest_builder *b) {
  /* Jobs not yet picked up by a worker are cancelled (their after-work
   * callback sees UV_ECANCELED); running ones finish their range. */
  b->canceled = 1;
  for (struct job *j = b->jobs; j != NULL; j = j->next) {
    (void)uv_cancel((uv_req_t *)&j->req);
  }
}

struct sync_result {
  int status;
  struct manifest *m;
};

static void sync_done(void *arg, int status, struct manifest *m) {
  struct sync_result *r = arg;
  r->status = status;
  r->m = m;
}

int manifest_build(const char *path, const struct identity *publisher,
                   const struct manifest_build_opts *opts,
                   struct manifest **out) {
  struct manifest_builder *b;
  int err;

  *out = NULL;
  if (opts != NULL && opts->threads > 0) {
    struct sync_result r = {.status = SHOAL_ECANCELED, .m = NULL};
    uv_loop_t loop;
    err = uv_loop_init(&loop);
    if (err != 0) {
      return err;
    }
    err =
        manifest_build_start(&loop, path, publisher, opts, sync_done, &r, NULL);
    if (err == 0) {
      uv_run(&loop, UV_RUN_DEFAULT);
      err = r.status;
      *out = r.m;
    }
    uv_loop_close(&loop);
    return err;
  }

  err = builder_new(path, publisher, opts, &b);
  if (err != 0) {
    return err;
  }
  struct job j;
  while (next_job(b, &j)) {
    hash_range(&j);
    if (j.err != 0) {
      err = j.err;
      note_job_error(b, &j);
      set_err_path(opts, b->err_path);
      builder_free(b);
      return err;
    }
    progress(b, j.bytes);
  }
  err = manifest_seal(b->m, &b->publisher);
  if (err == 0) {
    *out = b->m;
    b->m = NULL;
  }
  builder_free(b);
  return err;
}
