#include "common/manifest.h"

#include <limits.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

int manifest_check_segment(const char *s, size_t len) {
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
      int err = manifest_check_segment(path + start, i - start);
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

int manifest_chunk_digest_check(const struct manifest *m, uint32_t idx,
                                const uint8_t h[MANIFEST_HASH_BYTES]) {
  if (idx >= m->chunk_count) {
    return SHOAL_EINVAL;
  }
  if (sodium_memcmp(h, m->hashes + (size_t)idx * MANIFEST_HASH_BYTES,
                    MANIFEST_HASH_BYTES) != 0) {
    return SHOAL_EHASH;
  }
  return 0;
}

int manifest_verify_chunk(const struct manifest *m, uint32_t idx,
                          const uint8_t *data, size_t len) {
  uint8_t h[MANIFEST_HASH_BYTES];
  if (idx >= m->chunk_count || len != manifest_chunk_len(m, idx)) {
    return SHOAL_EINVAL;
  }
  if (chash_once(h, data, len) != 0) {
    return SHOAL_ENOMEM;
  }
  return manifest_chunk_digest_check(m, idx, h);
}

unsigned manifest_version_of(const uint8_t *bytes, size_t len) {
  return len > 0 ? bytes[0] : 0;
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

int manifest_seal(struct manifest *m, const struct identity *pub) {
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
  err = manifest_check_segment((const char *)name, name_len);
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
/* Laying out a local content */

int manifest_layout(struct manifest *m, unsigned chunk_log2) {
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
  unsigned want_log2 =
      chunk_log2 ? chunk_log2 : manifest_choose_chunk_log2(total);
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
