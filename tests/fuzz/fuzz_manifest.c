/* libFuzzer target for common/manifest: decoding signed manifests.
 *
 * manifest_decode verifies the signature before it reads anything, so a
 * random input stops there. Two passes:
 *  1. The raw input (the seed corpus holds manifests really signed by the
 *     fixed key, so mutations of those reach the decoder until they touch
 *     the signed bytes).
 *  2. The input taken as the canonical bytes: the fixed key's public key is
 *     written at bytes 4..36 (the publisher field), the bytes are signed as
 *     manifest_seal does and the signature is appended. Every mutation then
 *     reaches the decoder proper.
 * When decoding succeeds, the result is checked against the promises of
 * manifest.h: safe paths under the name, sizes and chunk counts that add
 * up, only the defined mode bit, nanoseconds below a second, empty folders
 * that are sorted and neither inside a file nor holding any other path,
 * and manifest_chunk_file / manifest_chunk_len consistent for every chunk.
 * The checks are written independently of the decoder's (pairwise, not by
 * walking neighbours), so a shortcut in the decoder shows.
 *
 * The seed corpus (tests/fuzz/corpus/manifest) is written by
 * tests/test_manifest.c (SHOAL_WRITE_VECTORS=1), which also checks that it
 * matches what the code makes: a file, an empty file, a folder with empty
 * folders and an executable file, a folder of empty folders only (each
 * also as "_unsigned" canonical bytes for the second pass), and folder_v1,
 * a version 1 manifest that must be refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/error.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char manifest_domain[] = "shoal/1 manifest";
static struct identity fixed; /* seed 0x5a x 32, as the seed generator */

static void fail(const char *what) {
  fprintf(stderr, "fuzz_manifest: %s\n", what);
  abort();
}

/* a is b, or a folder that holds b. */
static int same_or_inside(const char *a, const char *b) {
  size_t n = strlen(a);
  return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

/* The segment-wise order of docs/protocol.md: the end of a path lowest,
 * then '/', then the other bytes. */
static int canonical_before(const char *a, const char *b) {
  size_t i = 0;
  while (a[i] != '\0' && a[i] == b[i]) {
    i++;
  }
  int ca = a[i] == '\0' ? -2 : a[i] == '/' ? -1 : (unsigned char)a[i];
  int cb = b[i] == '\0' ? -2 : b[i] == '/' ? -1 : (unsigned char)b[i];
  return ca < cb;
}

static void check_folders(const struct manifest *m) {
  size_t name_len = strlen(m->name);
  if (m->folder_count > MANIFEST_MAX_FOLDERS ||
      (m->kind == MANIFEST_KIND_FILE && m->folder_count != 0)) {
    fail("folder count out of range");
  }
  for (uint32_t i = 0; i < m->folder_count; i++) {
    const char *d = m->folders[i];
    size_t n = strlen(d);
    if (manifest_check_path(d, n) != 0 || n <= name_len + 1 ||
        memcmp(d, m->name, name_len) != 0 || d[name_len] != '/') {
      fail("folder path unsafe or outside the name");
    }
    if (i > 0 && !canonical_before(m->folders[i - 1], d)) {
      fail("folders out of order or repeated");
    }
    for (uint32_t k = 0; k < m->folder_count; k++) {
      if (k != i && same_or_inside(d, m->folders[k])) {
        fail("a folder holds another listed folder");
      }
    }
    for (uint32_t k = 0; k < m->file_count; k++) {
      if (same_or_inside(d, m->files[k].path) ||
          same_or_inside(m->files[k].path, d)) {
        fail("a folder is a file, holds one, or lies inside one");
      }
    }
  }
}

static void check_manifest(const struct manifest *m, const uint8_t *bytes,
                           size_t len) {
  if (m->kind != MANIFEST_KIND_FILE && m->kind != MANIFEST_KIND_FOLDER) {
    fail("bad kind");
  }
  if (m->chunk_log2 < MANIFEST_CHUNK_LOG2_MIN ||
      m->chunk_log2 > MANIFEST_CHUNK_LOG2_MAX) {
    fail("bad chunk size");
  }
  if (memcmp(m->publisher, bytes + 4, IDENTITY_PK_BYTES) != 0) {
    fail("publisher is not the signing key");
  }
  if (m->encoded_len != len || memcmp(m->encoded, bytes, len) != 0) {
    fail("encoded bytes differ from the input");
  }
  if (memcmp(m->signature, bytes + len - IDENTITY_SIG_BYTES,
             IDENTITY_SIG_BYTES) != 0) {
    fail("signature differs from the input");
  }
  uint8_t id[MANIFEST_ID_BYTES];
  if (manifest_id_of(bytes, len, id) != 0 ||
      memcmp(id, m->id, sizeof(id)) != 0) {
    fail("manifest_id_of differs from the decoded ID");
  }

  size_t name_len = strlen(m->name);
  if (name_len == 0 || name_len > MANIFEST_MAX_SEGMENT ||
      memchr(m->name, '/', name_len) != NULL ||
      manifest_check_path(m->name, name_len) != 0) {
    fail("name is not one safe segment");
  }
  if (m->file_count > MANIFEST_MAX_FILES ||
      (m->kind == MANIFEST_KIND_FILE && m->file_count != 1)) {
    fail("file count out of range");
  }
  const uint64_t cs = (uint64_t)1 << m->chunk_log2;
  uint64_t total = 0;
  uint64_t chunks = 0;
  for (uint32_t i = 0; i < m->file_count; i++) {
    const struct manifest_file *f = &m->files[i];
    size_t n = strlen(f->path);
    if (manifest_check_path(f->path, n) != 0) {
      fail("decoded path fails manifest_check_path");
    }
    if (n < name_len || memcmp(f->path, m->name, name_len) != 0) {
      fail("path does not start with the name");
    }
    if (m->kind == MANIFEST_KIND_FILE
            ? n != name_len
            : n <= name_len + 1 || f->path[name_len] != '/') {
      fail("path is not the name (file) or inside it (folder)");
    }
    if (i > 0) {
      const char *prev = m->files[i - 1].path;
      size_t pn = strlen(prev);
      if (strcmp(prev, f->path) == 0) {
        fail("duplicate path");
      }
      if (strncmp(prev, f->path, pn) == 0 && f->path[pn] == '/') {
        fail("a file is also a folder");
      }
    }
    if ((f->mode & ~MANIFEST_MODE_EXEC) != 0) {
      fail("a mode bit other than the executable bit");
    }
    if (f->mtime_nsec < 0 || f->mtime_nsec >= MANIFEST_NSEC_LIMIT) {
      fail("nanoseconds out of range");
    }
    if (f->first_chunk != chunks) {
      fail("first_chunk is not the running chunk count");
    }
    uint64_t want = f->size / cs + (f->size % cs != 0);
    if (f->chunk_count != want) {
      fail("chunk_count does not match the file size");
    }
    if (f->size > UINT64_MAX - total) {
      fail("sizes overflow");
    }
    total += f->size;
    chunks += f->chunk_count;
  }
  if (total != m->total_size) {
    fail("file sizes do not add up to total_size");
  }
  check_folders(m);
  if (chunks != m->chunk_count || chunks > MANIFEST_MAX_CHUNKS) {
    fail("chunk counts do not add up");
  }
  if ((size_t)m->chunk_count * MANIFEST_HASH_BYTES + IDENTITY_SIG_BYTES > len ||
      memcmp(m->hashes,
             bytes + len - IDENTITY_SIG_BYTES -
                 (size_t)m->chunk_count * MANIFEST_HASH_BYTES,
             (size_t)m->chunk_count * MANIFEST_HASH_BYTES) != 0) {
    fail("hashes are not the bytes before the signature");
  }

  for (uint32_t idx = 0; idx < m->chunk_count; idx++) {
    uint32_t file = UINT32_MAX;
    uint64_t off = UINT64_MAX;
    if (manifest_chunk_file(m, idx, &file, &off) != 0) {
      fail("manifest_chunk_file refused a chunk in range");
    }
    if (file >= m->file_count) {
      fail("chunk maps to a file out of range");
    }
    const struct manifest_file *f = &m->files[file];
    if (idx < f->first_chunk || idx - f->first_chunk >= f->chunk_count) {
      fail("chunk maps to a file that does not hold it");
    }
    if (off != (uint64_t)(idx - f->first_chunk) << m->chunk_log2 ||
        off >= f->size) {
      fail("chunk offset is wrong");
    }
    uint32_t clen = manifest_chunk_len(m, idx);
    if (clen == 0 || clen > cs || off + clen > f->size ||
        (off + clen < f->size && clen != cs)) {
      fail("chunk length is wrong");
    }
  }
  uint32_t file;
  uint64_t off;
  if (manifest_chunk_file(m, m->chunk_count, &file, &off) != SHOAL_EINVAL ||
      manifest_chunk_len(m, m->chunk_count) != 0) {
    fail("chunk one past the end is not refused");
  }
  if (m->chunk_count > 0) {
    uint8_t b = 0;
    if (manifest_verify_chunk(m, 0, &b, 0) != SHOAL_EINVAL) {
      fail("verify_chunk accepted a wrong length");
    }
  }
}

static void decode_checked(const uint8_t *bytes, size_t len) {
  struct manifest *m = (struct manifest *)1;
  int rc = manifest_decode(bytes, len, &m);
  if (rc != 0) {
    if (rc > 0 || m != NULL) {
      fail("failed decode left a manifest or returned > 0");
    }
    return;
  }
  if (m == NULL) {
    fail("decode returned 0 without a manifest");
  }
  check_manifest(m, bytes, len);
  manifest_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fz_first_call()) {
    fz_seed_identity(&fixed, 0x5a);
  }
  uint8_t *bytes = fz_copy(data, size);
  if (bytes == NULL) {
    return 0;
  }
  decode_checked(bytes, size);
  free(bytes);

  if (size < 4 + IDENTITY_PK_BYTES || size > MANIFEST_MAX_BYTES) {
    return 0;
  }
  bytes = malloc(size + IDENTITY_SIG_BYTES);
  if (bytes == NULL) {
    return 0;
  }
  memcpy(bytes, data, size);
  memcpy(bytes + 4, fixed.pk, IDENTITY_PK_BYTES);
  if (identity_sign2(&fixed, manifest_domain, sizeof(manifest_domain), bytes,
                     size, bytes + size) == 0) {
    decode_checked(bytes, size + IDENTITY_SIG_BYTES);
  }
  free(bytes);
  return 0;
}
