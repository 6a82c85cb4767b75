/* Tests for common/manifest: the chunk helpers, the canonical bytes, and
 * decoding hostile bytes. The manifests to start from are built from
 * folders on disk with peer/manifest_build (tests/lib/mtree.c), whose own
 * tests are test_manifest_build.
 *
 * The hostile cases come in two layers. Truncations, flipped bits and extra
 * bytes on real manifests must all die at the signature (or the length and
 * version checks before it). To reach the structural checks behind the
 * signature, hm_encode() below writes canonical bytes by hand, following the
 * layout of manifest_seal() in common/manifest.c, and signs them with a test
 * key, so each case asserts the exact error of the check it aims at. A
 * positive control shows the hand encoder agrees byte for byte with the
 * builder, so a refusal is never an accident of the helper.
 *
 * Known-answer vector: tests/vectors/manifest-folder.bin is the manifest of
 * a fixed folder (contents from tu_fill seeds, key from the seed 0x42 * 32)
 * with an empty folder and an executable file. Modification times are part
 * of a version 2 manifest, so the test sets every file's to a fixed moment
 * before it builds. tests/vectors/manifest-v1-folder.bin is the same kind
 * of folder as version 1 wrote it; it must be refused as a version 1
 * manifest. The fuzz target's seed corpus (tests/fuzz/corpus/manifest) is
 * made here too, so that it stays a corpus of valid current manifests. Run
 * with SHOAL_WRITE_VECTORS=1 to write the files instead of comparing against
 * them (only after a deliberate format change).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "tests/lib/errassert.h"
#include "tests/lib/mfix.h"
#include "tests/lib/mtree.h"
#include "tests/lib/testutil.h"

#define CS14 ((uint64_t)1 << 14)

/* The signing domain, as the protocol defines it (signed with its NUL). */
static const char domain[] = "shoal/1 manifest";

/* ---------------------------------------------------------------------- */
/* Helpers: canonical bytes written by hand (layout of manifest_seal()).
 * Version 1, the layout before modes, modification times and folders, is
 * written when h->version is 1. */

#define HM_MAX_FILES 8
#define HM_MAX_FOLDERS 8

struct hm {
  uint8_t version;
  uint8_t kind;
  uint8_t chunk_log2;
  uint8_t flags;
  const char *name;
  size_t nfiles;
  const char *path[HM_MAX_FILES];
  size_t path_len[HM_MAX_FILES]; /* 0: strlen(path) */
  uint64_t size[HM_MAX_FILES];
  int64_t mtime_sec[HM_MAX_FILES];
  uint32_t mtime_nsec[HM_MAX_FILES];
  uint8_t mode[HM_MAX_FILES];
  size_t nfolders;
  const char *folder[HM_MAX_FOLDERS];
  int total_set; /* else the sum of the sizes */
  uint64_t total;
  int count_set; /* else nfiles */
  uint32_t file_count;
  int folder_count_set; /* else nfolders */
  uint32_t folder_count;
  int chunks_set; /* else computed from the sizes */
  uint32_t chunk_count;
  int hash_bytes_set; /* else chunk_count * 32 */
  size_t hash_bytes;
  const uint8_t *hashes;         /* NULL: filler bytes */
  const struct identity *owner;  /* key written as publisher; NULL: mf_pub */
  const struct identity *signer; /* NULL: mf_pub */
  size_t domain_len;             /* 0: sizeof(domain), NUL included */
};

/* A valid one-file folder "n" holding "n/a" of 5 bytes. */
static void hm_init(struct hm *h) {
  memset(h, 0, sizeof(*h));
  h->version = MANIFEST_VERSION;
  h->kind = MANIFEST_KIND_FOLDER;
  h->chunk_log2 = 14;
  h->name = "n";
  h->nfiles = 1;
  h->path[0] = "n/a";
  h->size[0] = 5;
}

static void hm_file(struct hm *h, const char *path, uint64_t size) {
  assert_true(h->nfiles < HM_MAX_FILES);
  h->path[h->nfiles] = path;
  h->size[h->nfiles] = size;
  h->nfiles++;
}

static void hm_folder(struct hm *h, const char *path) {
  assert_true(h->nfolders < HM_MAX_FOLDERS);
  h->folder[h->nfolders++] = path;
}

struct wbuf {
  uint8_t *p;
  size_t len;
  size_t cap;
};

static void w_bytes(struct wbuf *w, const void *d, size_t n) {
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n) {
      cap *= 2;
    }
    uint8_t *p = realloc(w->p, cap);
    assert_non_null(p);
    w->p = p;
    w->cap = cap;
  }
  if (n > 0) {
    memcpy(w->p + w->len, d, n);
  }
  w->len += n;
}

/* Big-endian, written byte by byte. */
static void w_be(struct wbuf *w, uint64_t v, unsigned bytes) {
  uint8_t b[8];
  for (unsigned i = 0; i < bytes; i++) {
    b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
  }
  w_bytes(w, b, bytes);
}

static uint8_t *hm_encode(const struct hm *h, size_t *len) {
  const struct identity *owner = h->owner ? h->owner : &mf_pub;
  const struct identity *signer = h->signer ? h->signer : &mf_pub;
  struct wbuf w = {0};
  uint64_t total = 0;
  uint64_t chunks = 0;

  for (size_t i = 0; i < h->nfiles; i++) {
    total += h->size[i];
    if (h->chunk_log2 < 64) { /* tests of a bad log2 set chunk_count */
      chunks += (h->size[i] >> h->chunk_log2) +
                ((h->size[i] & (((uint64_t)1 << h->chunk_log2) - 1)) != 0);
    }
  }
  uint32_t chunk_count = h->chunks_set ? h->chunk_count : (uint32_t)chunks;
  size_t hash_bytes = h->hash_bytes_set
                          ? h->hash_bytes
                          : (size_t)chunk_count * MANIFEST_HASH_BYTES;

  w_be(&w, h->version, 1);
  w_be(&w, h->kind, 1);
  w_be(&w, h->chunk_log2, 1);
  w_be(&w, h->flags, 1);
  w_bytes(&w, owner->pk, IDENTITY_PK_BYTES);
  w_be(&w, h->total_set ? h->total : total, 8);
  w_be(&w, strlen(h->name), 2);
  w_bytes(&w, h->name, strlen(h->name));
  w_be(&w, h->count_set ? h->file_count : (uint32_t)h->nfiles, 4);
  for (size_t i = 0; i < h->nfiles; i++) {
    size_t n = h->path_len[i] ? h->path_len[i] : strlen(h->path[i]);
    w_be(&w, n, 2);
    w_bytes(&w, h->path[i], n);
    w_be(&w, h->size[i], 8);
    if (h->version != 1) {
      w_be(&w, (uint64_t)h->mtime_sec[i], 8);
      w_be(&w, h->mtime_nsec[i], 4);
      w_be(&w, h->mode[i], 1);
    }
  }
  if (h->version != 1) {
    w_be(&w, h->folder_count_set ? h->folder_count : (uint32_t)h->nfolders, 4);
    for (size_t i = 0; i < h->nfolders; i++) {
      w_be(&w, strlen(h->folder[i]), 2);
      w_bytes(&w, h->folder[i], strlen(h->folder[i]));
    }
  }
  w_be(&w, chunk_count, 4);
  if (h->hashes != NULL) {
    w_bytes(&w, h->hashes, hash_bytes);
  } else {
    uint8_t *fill = malloc(hash_bytes ? hash_bytes : 1);
    assert_non_null(fill);
    tu_fill(fill, hash_bytes, 7);
    w_bytes(&w, fill, hash_bytes);
    free(fill);
  }

  uint8_t sig[IDENTITY_SIG_BYTES];
  assert_err(identity_sign2(signer, domain,
                            h->domain_len ? h->domain_len : sizeof(domain), w.p,
                            w.len, sig),
             0);
  w_bytes(&w, sig, sizeof(sig));
  *len = w.len;
  return w.p;
}

/* Encodes, signs and decodes h; returns the decoder's answer. */
static int hm_decode(const struct hm *h) {
  size_t len;
  uint8_t *bytes = hm_encode(h, &len);
  int err = mt_decode_copy(bytes, len);
  free(bytes);
  return err;
}

/* Signs canonical bytes again after a test changed them (the last
 * IDENTITY_SIG_BYTES of the len bytes are the signature). */
static void resign(uint8_t *bytes, size_t len) {
  size_t body = len - IDENTITY_SIG_BYTES;
  assert_err(identity_sign2(&mf_pub, domain, sizeof(domain), bytes, body,
                            bytes + body),
             0);
}

/* Encodes and decodes h, and hands back the manifest (NULL on an error). */
static int hm_decode_m(const struct hm *h, struct manifest **m) {
  size_t len;
  uint8_t *bytes = hm_encode(h, &len);
  int err = manifest_decode(bytes, len, m);
  free(bytes);
  return err;
}

/* ---------------------------------------------------------------------- */
/* Decoding what the builder made. */

/* The manifest of mt_make_tree()'s tree, made in dir. */
static struct manifest *build_tree(const char *dir) {
  char top[MT_PATH_CAP];
  mt_make_tree(dir);
  tu_path(top, sizeof(top), dir, "top");
  struct manifest_build_opts o = {.chunk_log2 = 14};
  return mt_build(top, &mf_pub, &o);
}

static void test_decode_round_trip_gives_equal_fields(void **state) {
  struct manifest *m = build_tree(*state);
  struct manifest *d = NULL;
  assert_err(manifest_decode(m->encoded, m->encoded_len, &d), 0);
  assert_non_null(d);

  assert_int_equal(d->kind, m->kind);
  assert_int_equal(d->chunk_log2, m->chunk_log2);
  assert_int_equal(d->total_size, m->total_size);
  assert_string_equal(d->name, m->name);
  assert_int_equal(d->file_count, m->file_count);
  for (uint32_t i = 0; i < m->file_count; i++) {
    assert_string_equal(d->files[i].path, m->files[i].path);
    assert_int_equal(d->files[i].size, m->files[i].size);
    assert_int_equal(d->files[i].first_chunk, m->files[i].first_chunk);
    assert_int_equal(d->files[i].chunk_count, m->files[i].chunk_count);
    assert_int_equal(d->files[i].mode, m->files[i].mode);
    assert_int_equal(d->files[i].mtime_sec, m->files[i].mtime_sec);
    assert_int_equal(d->files[i].mtime_nsec, m->files[i].mtime_nsec);
  }
  assert_int_equal(d->folder_count, m->folder_count);
  assert_true(m->folder_count > 0);
  for (uint32_t i = 0; i < m->folder_count; i++) {
    assert_string_equal(d->folders[i], m->folders[i]);
  }
  assert_int_equal(d->chunk_count, m->chunk_count);
  assert_memory_equal(d->hashes, m->hashes,
                      (size_t)m->chunk_count * MANIFEST_HASH_BYTES);
  assert_memory_equal(d->publisher, m->publisher, IDENTITY_PK_BYTES);
  assert_memory_equal(d->signature, m->signature, IDENTITY_SIG_BYTES);
  assert_memory_equal(d->signature,
                      m->encoded + m->encoded_len - IDENTITY_SIG_BYTES,
                      IDENTITY_SIG_BYTES);
  assert_memory_equal(d->id, m->id, MANIFEST_ID_BYTES);
  assert_int_equal(d->encoded_len, m->encoded_len);
  assert_memory_equal(d->encoded, m->encoded, m->encoded_len);
  assert_null(d->local_root);

  /* The ID is the hash of the canonical bytes, computable without a
   * decode. */
  uint8_t id[MANIFEST_ID_BYTES];
  uint8_t want[MANIFEST_ID_BYTES];
  assert_err(manifest_id_of(m->encoded, m->encoded_len, id), 0);
  assert_memory_equal(id, m->id, MANIFEST_ID_BYTES);
  crypto_generichash(want, sizeof(want), m->encoded,
                     m->encoded_len - IDENTITY_SIG_BYTES, NULL, 0);
  assert_memory_equal(id, want, MANIFEST_ID_BYTES);
  assert_err(manifest_id_of(m->encoded, 10, id), SHOAL_ETRUNC);
  assert_err(manifest_id_of(m->encoded, 0, id), SHOAL_ETRUNC);

  /* The chunk helpers work on a decoded manifest too. */
  for (uint32_t c = 0; c < m->chunk_count; c++) {
    assert_int_equal(manifest_chunk_len(d, c), manifest_chunk_len(m, c));
  }
  manifest_free(d);
  manifest_free(m);
  manifest_free(NULL);
}

static void test_decode_rejects_every_truncation(void **state) {
  struct manifest *m = build_tree(*state);
  for (size_t len = 0; len < m->encoded_len; len++) {
    int err = mt_decode_copy(m->encoded, len);
    if (err == 0) {
      print_error("truncation to %zu bytes accepted\n", len);
    }
    assert_int_not_equal(err, 0);
  }
  /* Too short to hold even an empty manifest. */
  assert_err(mt_decode_copy(m->encoded, 0), SHOAL_ETRUNC);
  assert_err(mt_decode_copy(m->encoded, 100), SHOAL_ETRUNC);
  manifest_free(m);
}

static void flip_every_bit(const uint8_t *bytes, size_t len) {
  uint8_t *copy = malloc(len);
  assert_non_null(copy);
  for (size_t i = 0; i < len; i++) {
    for (unsigned bit = 0; bit < 8; bit++) {
      memcpy(copy, bytes, len);
      copy[i] ^= (uint8_t)(1u << bit);
      int err = mt_decode_copy(copy, len);
      if (err == 0) {
        print_error("flipped bit %u of byte %zu accepted\n", bit, i);
      }
      assert_int_not_equal(err, 0);
    }
  }
  free(copy);
}

static void test_decode_rejects_a_flipped_bit_anywhere(void **state) {
  const char *dir = *state;
  char p[MT_PATH_CAP];
  mt_write_filled(dir, "small", 40000, 8);
  tu_path(p, sizeof(p), dir, "small");
  struct manifest *m = mt_build(p, &mf_pub, NULL);
  flip_every_bit(m->encoded, m->encoded_len);
  /* The version byte is checked first; everything else is signed. */
  uint8_t *copy = malloc(m->encoded_len);
  assert_non_null(copy);
  memcpy(copy, m->encoded, m->encoded_len);
  copy[0] ^= 0x02;
  assert_err(mt_decode_copy(copy, m->encoded_len), SHOAL_EVERSION);
  memcpy(copy, m->encoded, m->encoded_len);
  copy[40] ^= 0x01; /* inside total_size */
  assert_err(mt_decode_copy(copy, m->encoded_len), SHOAL_EBADSIG);
  memcpy(copy, m->encoded, m->encoded_len);
  copy[m->encoded_len - 1] ^= 0x01; /* inside the signature */
  assert_err(mt_decode_copy(copy, m->encoded_len), SHOAL_EBADSIG);
  free(copy);
  manifest_free(m);

  /* And a folder manifest, whose paths and sizes are signed too. */
  m = build_tree(dir);
  flip_every_bit(m->encoded, m->encoded_len);
  manifest_free(m);
}

static void test_decode_rejects_one_extra_byte(void **state) {
  struct manifest *m = build_tree(*state);
  uint8_t *longer = malloc(m->encoded_len + 1);
  assert_non_null(longer);
  memcpy(longer, m->encoded, m->encoded_len);
  for (int v = 0; v < 256; v += 255) {
    longer[m->encoded_len] = (uint8_t)v;
    assert_err(mt_decode_copy(longer, m->encoded_len + 1), SHOAL_EBADSIG);
  }
  /* A copy of the signature's last byte is no better. */
  longer[m->encoded_len] = m->encoded[m->encoded_len - 1];
  assert_err(mt_decode_copy(longer, m->encoded_len + 1), SHOAL_EBADSIG);
  free(longer);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Hand-made canonical bytes: the checks behind the signature. */

static void test_hand_encoder_matches_the_builder(void **state) {
  struct manifest *m = build_tree(*state);
  struct hm h;
  hm_init(&h);
  h.kind = m->kind;
  h.chunk_log2 = m->chunk_log2;
  h.name = m->name;
  h.nfiles = 0;
  assert_true(m->file_count <= HM_MAX_FILES);
  for (uint32_t i = 0; i < m->file_count; i++) {
    hm_file(&h, m->files[i].path, m->files[i].size);
    h.mtime_sec[i] = m->files[i].mtime_sec;
    h.mtime_nsec[i] = (uint32_t)m->files[i].mtime_nsec;
    h.mode[i] = m->files[i].mode;
  }
  assert_true(m->folder_count <= HM_MAX_FOLDERS);
  for (uint32_t i = 0; i < m->folder_count; i++) {
    hm_folder(&h, m->folders[i]);
  }
  h.hashes = m->hashes;
  size_t len;
  uint8_t *bytes = hm_encode(&h, &len);
  assert_int_equal(len, m->encoded_len);
  assert_memory_equal(bytes, m->encoded, len);
  free(bytes);
  manifest_free(m);

  /* The default hand-made manifest, and a file content, decode. */
  hm_init(&h);
  assert_err(hm_decode(&h), 0);
  hm_init(&h);
  h.kind = MANIFEST_KIND_FILE;
  h.path[0] = "n";
  assert_err(hm_decode(&h), 0);
}

static void test_decode_refuses_unsafe_paths(void **state) {
  static const char *const bad[] = {
      "\xC2\x80",  /* U+0080, a C1 control character */
      "a\xC2\x9F", /* U+009F, the last C1 control */
      "/etc/passwd", "n//x",           "n/./x",          "n/../x",
      "n/a\\b",      "n/a\x01",        "n/\x7f",         "n/a\nb",
      "n/\xC0\xAF",  "n/\xED\xA0\x80", "n/\xE0\x80\xAF", "n/\xF4\x90\x80\x80",
      "n/\xFF",      "n/\x80",         "n/x\xC3",        "n/",
      "n/.",         "n/..",           "n/x/",
  };
  struct hm h;
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    hm_init(&h);
    h.path[0] = bad[i];
    int err = hm_decode(&h);
    if (err != SHOAL_EPATH) {
      print_error("path #%zu\n", i);
    }
    assert_err(err, SHOAL_EPATH);
  }
  /* A NUL inside the path bytes. */
  hm_init(&h);
  h.path[0] = "n/a\0b";
  h.path_len[0] = 5;
  assert_err(hm_decode(&h), SHOAL_EPATH);
  /* An empty path. */
  hm_init(&h);
  h.path[0] = "";
  assert_err(hm_decode(&h), SHOAL_EPATH);
  /* Unsafe content names. */
  static const char *const bad_names[] = {"", ".", "..", "a/b", "a\\b"};
  for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
    hm_init(&h);
    h.kind = MANIFEST_KIND_FILE;
    h.name = bad_names[i];
    h.path[0] = bad_names[i];
    assert_err(hm_decode(&h), SHOAL_EPATH);
  }
}

static void test_decode_refuses_path_outside_the_name(void **state) {
  struct hm h;
  (void)state;
  static const char *const bad[] = {"m/a", "nn/a", "n", "a/n", "N/a"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    hm_init(&h);
    h.path[0] = bad[i];
    assert_err(hm_decode(&h), SHOAL_EPATH);
  }
  /* A file content's one path is exactly its name. */
  hm_init(&h);
  h.kind = MANIFEST_KIND_FILE;
  h.path[0] = "n/a";
  assert_err(hm_decode(&h), SHOAL_EPATH);
  hm_init(&h);
  h.kind = MANIFEST_KIND_FILE;
  h.path[0] = "m";
  assert_err(hm_decode(&h), SHOAL_EPATH);
}

static void
test_decode_refuses_duplicate_conflicting_and_unsorted_paths(void **state) {
  struct hm h;
  (void)state;
  hm_init(&h);
  hm_file(&h, "n/a", 5);
  assert_err(hm_decode(&h), SHOAL_EDUPPATH);

  /* "n/a" cannot be a file and a folder. */
  hm_init(&h);
  hm_file(&h, "n/a/b", 5);
  assert_err(hm_decode(&h), SHOAL_EDUPPATH);
  hm_init(&h);
  hm_file(&h, "n/a/b/c", 5);
  assert_err(hm_decode(&h), SHOAL_EDUPPATH);

  hm_init(&h);
  h.path[0] = "n/b";
  hm_file(&h, "n/a", 5);
  assert_err(hm_decode(&h), SHOAL_EDUPPATH);

  /* Plain byte order ('-' below '/') is not the manifest's order... */
  hm_init(&h);
  h.path[0] = "n/d-e";
  hm_file(&h, "n/d/x", 5);
  assert_err(hm_decode(&h), SHOAL_EDUPPATH);
  /* ...segment-wise order is, and "n/a-b" beside "n/a/c" is no conflict. */
  hm_init(&h);
  h.path[0] = "n/d/x";
  hm_file(&h, "n/d-e", 5);
  assert_err(hm_decode(&h), 0);
  hm_init(&h);
  h.path[0] = "n/a";
  hm_file(&h, "n/a-b", 5);
  hm_file(&h, "n/ab", 5);
  assert_err(hm_decode(&h), 0);
}

/* Decodes h, which must give want; what and value name the case in a
 * failure. */
static void assert_decodes(const struct hm *h, int want, const char *what,
                           uint64_t value) {
  int err = hm_decode(h);
  if (err != want) {
    print_error("%s %llu\n", what, (unsigned long long)value);
  }
  assert_err(err, want);
}

static void test_decode_refuses_sizes_that_do_not_add_up(void **state) {
  struct hm h;
  (void)state;
  hm_init(&h);
  hm_file(&h, "n/b", 7);
  h.total_set = 1;
  /* The sizes add up to 12. */
  for (uint64_t total = 11; total <= 13; total++) {
    h.total = total;
    assert_decodes(&h, total == 12 ? 0 : SHOAL_ESIZE, "total", total);
  }

  /* A chunk count that differs from the files' layout, with as many hashes
   * as it claims. */
  static const uint32_t wrong_chunks[] = {1, 3, 0};
  hm_init(&h);
  h.size[0] = CS14 + 1; /* two chunks */
  h.chunks_set = 1;
  for (size_t i = 0; i < sizeof(wrong_chunks) / sizeof(wrong_chunks[0]); i++) {
    h.chunk_count = wrong_chunks[i];
    assert_decodes(&h, SHOAL_ESIZE, "chunk count", h.chunk_count);
  }

  /* The right count with one hash too many or too few. */
  static const size_t wrong_hash_bytes[] = {2 * MANIFEST_HASH_BYTES,
                                            MANIFEST_HASH_BYTES - 1, 0};
  hm_init(&h);
  h.hash_bytes_set = 1;
  for (size_t i = 0; i < sizeof(wrong_hash_bytes) / sizeof(wrong_hash_bytes[0]);
       i++) {
    h.hash_bytes = wrong_hash_bytes[i];
    assert_decodes(&h, SHOAL_EFORMAT, "hash bytes", h.hash_bytes);
  }
}

/* A file or folder count (*count, in h) over its maximum max is too big;
 * one the remaining bytes could not hold is refused before anything is read
 * or allocated for it: a decoder that allocated and started reading would
 * answer SHOAL_ETRUNC at the second entry instead. */
static void assert_oversize_counts_refused(struct hm *h, uint32_t *count,
                                           uint32_t max, const char *what) {
  *count = max + 1;
  assert_decodes(h, SHOAL_ETOOBIG, what, *count);
  *count = UINT32_MAX;
  assert_decodes(h, SHOAL_ETOOBIG, what, *count);
  *count = max;
  assert_decodes(h, SHOAL_EFORMAT, what, *count);
  *count = 1000;
  assert_decodes(h, SHOAL_EFORMAT, what, *count);
}

static void test_decode_refuses_oversize_counts(void **state) {
  struct hm h;
  (void)state;
  hm_init(&h);
  h.count_set = 1;
  assert_oversize_counts_refused(&h, &h.file_count, MANIFEST_MAX_FILES,
                                 "file count");

  /* A file claiming more chunks than a manifest may list. */
  hm_init(&h);
  h.size[0] = ((uint64_t)MANIFEST_MAX_CHUNKS + 1) << 14;
  h.chunks_set = 1;
  h.chunk_count = MANIFEST_MAX_CHUNKS + 1;
  h.hash_bytes_set = 1;
  h.hash_bytes = 0;
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);
  /* And sizes whose sum wraps around 64 bits. */
  hm_init(&h);
  h.chunk_log2 = MANIFEST_CHUNK_LOG2_MAX;
  h.size[0] = UINT64_MAX - 3;
  hm_file(&h, "n/b", 8);
  h.total_set = 1;
  h.total = 4;
  h.chunks_set = 1;
  h.chunk_count = 0;
  h.hash_bytes_set = 1;
  h.hash_bytes = 0;
  assert_int_not_equal(hm_decode(&h), 0);
}

static void test_decode_refuses_bad_header_fields(void **state) {
  struct hm h;
  (void)state;
  const uint8_t bad_log2[] = {0, 13, 25, 255};
  for (size_t i = 0; i < sizeof(bad_log2); i++) {
    hm_init(&h);
    h.chunk_log2 = bad_log2[i];
    h.chunks_set = 1;
    h.chunk_count = 1;
    assert_err(hm_decode(&h), SHOAL_EFORMAT);
  }
  hm_init(&h);
  h.chunk_log2 = MANIFEST_CHUNK_LOG2_MAX;
  assert_err(hm_decode(&h), 0);

  for (unsigned bit = 0; bit < 8; bit++) {
    hm_init(&h);
    h.flags = (uint8_t)(1u << bit);
    assert_err(hm_decode(&h), SHOAL_EFORMAT);
  }
  const uint8_t bad_kind[] = {0, 3, 255};
  for (size_t i = 0; i < sizeof(bad_kind); i++) {
    hm_init(&h);
    h.kind = bad_kind[i];
    assert_err(hm_decode(&h), SHOAL_EFORMAT);
  }
  const uint8_t bad_version[] = {0, 1, 2, 4, 255};
  for (size_t i = 0; i < sizeof(bad_version); i++) {
    hm_init(&h);
    h.version = bad_version[i];
    assert_err(hm_decode(&h), SHOAL_EVERSION);
  }

  /* A file content holds exactly one file. */
  hm_init(&h);
  h.kind = MANIFEST_KIND_FILE;
  h.path[0] = "n";
  hm_file(&h, "n", 5);
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  hm_init(&h);
  h.kind = MANIFEST_KIND_FILE;
  h.path[0] = "n";
  h.path[1] = "n/b";
  h.size[1] = 5;
  h.nfiles = 2;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  hm_init(&h);
  h.kind = MANIFEST_KIND_FILE;
  h.nfiles = 0;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
}

static void test_decode_refuses_signature_by_another_key(void **state) {
  struct hm h;
  (void)state;
  hm_init(&h);
  h.signer = &mf_other; /* publisher field still says mf_pub */
  assert_err(hm_decode(&h), SHOAL_EBADSIG);
  hm_init(&h);
  h.owner = &mf_other; /* the other way round */
  assert_err(hm_decode(&h), SHOAL_EBADSIG);
  hm_init(&h);
  h.owner = &mf_other;
  h.signer = &mf_other;
  assert_err(hm_decode(&h), 0);
  /* The domain is signed with its terminating NUL. */
  hm_init(&h);
  h.domain_len = sizeof(domain) - 1;
  assert_err(hm_decode(&h), SHOAL_EBADSIG);
}

static void test_decode_refuses_more_than_max_bytes(void **state) {
  (void)state;
  uint8_t *big = calloc(1, (size_t)MANIFEST_MAX_BYTES + 1);
  assert_non_null(big);
  big[0] = MANIFEST_VERSION;
  struct manifest *m = (struct manifest *)&m;
  assert_err(manifest_decode(big, (size_t)MANIFEST_MAX_BYTES + 1, &m),
             SHOAL_ETOOBIG);
  assert_null(m);
  /* Exactly the maximum is not too big (it fails at the signature). */
  m = (struct manifest *)&m;
  assert_err(manifest_decode(big, MANIFEST_MAX_BYTES, &m), SHOAL_EBADSIG);
  assert_null(m);
  free(big);
}

/* Room for "n", MANIFEST_MAX_DEPTH "/d" and "/f". */
#define DEEP_CAP (2 * (MANIFEST_MAX_DEPTH + 2) + 1)

/* Writes "n" then MANIFEST_MAX_DEPTH "/d" folders to deep: a path of
 * MANIFEST_MAX_DEPTH + 1 segments, the deepest allowed; with one_more, a
 * last segment "/f" makes it one too many. */
static void deep_path(char deep[DEEP_CAP], int one_more) {
  size_t n = 0;
  deep[n++] = 'n';
  for (unsigned i = 0; i < MANIFEST_MAX_DEPTH; i++) {
    deep[n++] = '/';
    deep[n++] = 'd';
  }
  if (one_more) {
    deep[n++] = '/';
    deep[n++] = 'f';
  }
  deep[n] = '\0';
}

static void test_decode_refuses_too_deep_or_too_long_path(void **state) {
  char deep[DEEP_CAP];
  struct hm h;
  (void)state;
  deep_path(deep, 0);
  hm_init(&h);
  h.path[0] = deep; /* MANIFEST_MAX_DEPTH + 1 segments */
  assert_err(hm_decode(&h), 0);
  deep_path(deep, 1);
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);

  /* MANIFEST_MAX_PATH bytes pass, one more does not. */
  char *lng = malloc(MANIFEST_MAX_PATH + 2);
  assert_non_null(lng);
  memset(lng, 'x', MANIFEST_MAX_PATH + 1);
  lng[0] = 'n';
  for (size_t i = 1; i < MANIFEST_MAX_PATH + 1; i += 128) {
    lng[i] = '/';
  }
  lng[MANIFEST_MAX_PATH] = '\0';
  hm_init(&h);
  h.path[0] = lng;
  assert_err(hm_decode(&h), 0);
  lng[MANIFEST_MAX_PATH] = 'x';
  lng[MANIFEST_MAX_PATH + 1] = '\0';
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);
  free(lng);
}

/* ---------------------------------------------------------------------- */
/* Version 2: modes, modification times and empty folders. */

static void test_decode_accepts_only_the_defined_mode_bits(void **state) {
  struct hm h;
  struct manifest *m = NULL;
  (void)state;
  for (unsigned v = 0; v < 256; v++) {
    hm_init(&h);
    h.mode[0] = (uint8_t)v;
    int want = v == 0 || v == MANIFEST_MODE_EXEC ? 0 : SHOAL_EFORMAT;
    if (hm_decode(&h) != want) {
      print_error("mode byte %#x\n", v);
    }
    assert_err(hm_decode(&h), want);
  }
  hm_init(&h);
  h.mode[0] = MANIFEST_MODE_EXEC;
  assert_err(hm_decode_m(&h, &m), 0);
  assert_int_equal(m->files[0].mode, MANIFEST_MODE_EXEC);
  manifest_free(m);
}

static void test_decode_takes_any_second_but_only_nanoseconds(void **state) {
  struct hm h;
  struct manifest *m = NULL;
  (void)state;
  /* Seconds are a signed count: before 1970 and far ahead are times. */
  const int64_t secs[] = {0, -1, INT64_MIN, INT64_MAX, 1700000000};
  for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
    hm_init(&h);
    h.mtime_sec[0] = secs[i];
    h.mtime_nsec[0] = 999999999;
    assert_err(hm_decode_m(&h, &m), 0);
    assert_int_equal(m->files[0].mtime_sec, secs[i]);
    assert_int_equal(m->files[0].mtime_nsec, 999999999);
    manifest_free(m);
  }
  /* A nanosecond count is below one second. */
  const uint32_t bad_ns[] = {1000000000, 1000000001, 0x80000000u, UINT32_MAX};
  for (size_t i = 0; i < sizeof(bad_ns) / sizeof(bad_ns[0]); i++) {
    hm_init(&h);
    h.mtime_nsec[0] = bad_ns[i];
    assert_err(hm_decode(&h), SHOAL_EFORMAT);
  }
  /* In every file, not only the first. */
  hm_init(&h);
  hm_file(&h, "n/b", 3);
  h.mtime_nsec[1] = 1000000000;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  hm_init(&h);
  hm_file(&h, "n/b", 3);
  h.mode[1] = 0x80;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
}

/* A folder "n" with the file "n/a" and the empty folder "n/e", and where
 * the new fields are in its bytes. */
struct v2_offsets {
  size_t sec, nsec, mode, folder_count, folder;
};

static uint8_t *v2_example(size_t *len, struct v2_offsets *o) {
  struct hm h;
  hm_init(&h);
  h.mtime_sec[0] = 1700000000;
  h.mtime_nsec[0] = 999999999;
  hm_folder(&h, "n/e");
  /* 46 + the name, the file count, then the entry: path length, "n/a",
   * size. */
  size_t entry = 46 + 1 + 4;
  o->sec = entry + 2 + 3 + 8;
  o->nsec = o->sec + 8;
  o->mode = o->nsec + 4;
  o->folder_count = o->mode + 1;
  o->folder = o->folder_count + 4;
  uint8_t *bytes = hm_encode(&h, len);
  assert_int_equal(buf_be64(bytes + o->sec), 1700000000);
  assert_int_equal(buf_be32(bytes + o->nsec), 999999999);
  assert_int_equal(bytes[o->mode], 0);
  assert_int_equal(buf_be32(bytes + o->folder_count), 1);
  assert_int_equal(buf_be16(bytes + o->folder), 3);
  return bytes;
}

/* Behind the signature (each changed manifest is signed again), a flipped
 * bit in each new field is refused, or, where the field allows every
 * value, makes another content. */
static void test_decode_new_fields_with_a_flipped_bit(void **state) {
  struct v2_offsets o;
  size_t len;
  (void)state;
  uint8_t *orig = v2_example(&len, &o);
  uint8_t *b = malloc(len);
  uint8_t id[MANIFEST_ID_BYTES];
  assert_non_null(b);
  assert_err(manifest_id_of(orig, len, id), 0);
  assert_err(mt_decode_copy(orig, len), 0);
  for (unsigned bit = 0; bit < 64; bit++) {
    /* Seconds: every value is a time, and another content. */
    memcpy(b, orig, len);
    b[o.sec + 7 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    uint8_t other[MANIFEST_ID_BYTES];
    assert_err(mt_decode_copy(b, len), 0);
    assert_err(manifest_id_of(b, len, other), 0);
    assert_memory_not_equal(id, other, sizeof(id));
  }
  for (unsigned bit = 0; bit < 32; bit++) {
    /* Nanoseconds: refused at one second and above. */
    memcpy(b, orig, len);
    b[o.nsec + 3 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    uint32_t ns = buf_be32(b + o.nsec);
    assert_err(mt_decode_copy(b, len), ns < 1000000000u ? 0 : SHOAL_EFORMAT);
    /* Folder count: any other count misreads the rest. */
    memcpy(b, orig, len);
    b[o.folder_count + 3 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    if (mt_decode_copy(b, len) == 0) {
      print_error("folder count %u accepted\n", buf_be32(b + o.folder_count));
    }
    assert_int_not_equal(mt_decode_copy(b, len), 0);
  }
  for (unsigned bit = 0; bit < 8; bit++) {
    /* Mode: only the executable bit is defined. */
    memcpy(b, orig, len);
    b[o.mode] ^= (uint8_t)(1u << bit);
    resign(b, len);
    assert_err(mt_decode_copy(b, len), bit == 0 ? 0 : SHOAL_EFORMAT);
  }
  for (unsigned bit = 0; bit < 16; bit++) {
    /* The folder's path length. */
    memcpy(b, orig, len);
    b[o.folder + 1 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    assert_int_not_equal(mt_decode_copy(b, len), 0);
  }
  /* Without a new signature each of them fails at the signature. */
  const size_t at[] = {o.sec, o.nsec, o.mode, o.folder_count, o.folder + 2};
  for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
    memcpy(b, orig, len);
    b[at[i]] ^= 0x01;
    assert_err(mt_decode_copy(b, len), SHOAL_EBADSIG);
  }
  free(b);
  free(orig);
}

static void test_decode_empty_folders(void **state) {
  struct hm h;
  struct manifest *m = NULL;
  (void)state;
  /* Beside files, and without any file. */
  hm_init(&h);
  hm_folder(&h, "n/e");
  assert_err(hm_decode_m(&h, &m), 0);
  assert_int_equal(m->folder_count, 1);
  assert_string_equal(m->folders[0], "n/e");
  manifest_free(m);
  hm_init(&h);
  h.nfiles = 0;
  hm_folder(&h, "n/e");
  hm_folder(&h, "n/f/g");
  assert_err(hm_decode_m(&h, &m), 0);
  assert_int_equal(m->file_count, 0);
  assert_int_equal(m->folder_count, 2);
  assert_string_equal(m->folders[1], "n/f/g");
  manifest_free(m);

  /* Unsafe paths, and paths that are not inside the content. */
  static const char *const bad[] = {
      "n",      "n/",     "/n/e", "n//e",       "n/./e", "n/../e",
      "n/e\\f", "n/\x01", "m/e",  "nn/e",       "e",     "n/\xC0\xAF",
      "n/e/",   "n/\x7f", "N/e",  "n/\xC2\x85", "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    hm_init(&h);
    hm_folder(&h, bad[i]);
    if (hm_decode(&h) != SHOAL_EPATH) {
      print_error("folder path #%zu\n", i);
    }
    assert_err(hm_decode(&h), SHOAL_EPATH);
  }
  /* Deeper or longer than a path may be. */
  char deep[DEEP_CAP];
  deep_path(deep, 0);
  hm_init(&h);
  hm_folder(&h, deep); /* MANIFEST_MAX_DEPTH + 1 segments */
  assert_err(hm_decode(&h), 0);
  deep_path(deep, 1);
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);

  /* A file content has no folders. */
  hm_init(&h);
  h.kind = MANIFEST_KIND_FILE;
  h.path[0] = "n";
  hm_folder(&h, "n/e");
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
}

/* One byte string per content: folders sorted, once each, and only those
 * that nothing else implies. */
static void test_decode_refuses_ambiguous_folders(void **state) {
  struct hm h;
  (void)state;
  static const struct {
    const char *file; /* NULL: no file */
    const char *folder[3];
    int want;
  } cases[] = {
      /* Duplicates and order, segment-wise as for files. */
      {"n/a", {"n/e", "n/e", NULL}, SHOAL_EDUPPATH},
      {"n/a", {"n/f", "n/e", NULL}, SHOAL_EDUPPATH},
      {"n/a", {"n/d-e", "n/d/x", NULL}, SHOAL_EDUPPATH},
      {"n/a", {"n/d/x", "n/d-e", NULL}, 0},
      /* A folder that is also the file, or inside it. */
      {"n/a", {"n/a", NULL, NULL}, SHOAL_EDUPPATH},
      {"n/a", {"n/a/b", NULL, NULL}, SHOAL_EDUPPATH},
      {"n/a", {"n/a/b/c", NULL, NULL}, SHOAL_EDUPPATH},
      /* A folder that holds the file is not empty: it is implied. */
      {"n/a/b", {"n/a", NULL, NULL}, SHOAL_EDUPPATH},
      {"n/a/b/c", {"n/a", NULL, NULL}, SHOAL_EDUPPATH},
      /* A folder that holds another listed folder, likewise. */
      {"n/z", {"n/e", "n/e/f", NULL}, SHOAL_EDUPPATH},
      {NULL, {"n/e", "n/e/f/g", NULL}, SHOAL_EDUPPATH},
      /* Neighbours that only share a prefix are no conflict. */
      {"n/a", {"n/a-b", "n/ab", NULL}, 0},
      {"n/a-b", {"n/a", NULL, NULL}, 0},
      {"n/a/x", {"n/a-b", "n/b", NULL}, 0},
      {"n/b/x", {"n/a", "n/b-c", "n/c/d"}, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    hm_init(&h);
    if (cases[i].file != NULL) {
      h.path[0] = cases[i].file;
    } else {
      h.nfiles = 0;
    }
    for (size_t k = 0; k < 3 && cases[i].folder[k] != NULL; k++) {
      hm_folder(&h, cases[i].folder[k]);
    }
    if (hm_decode(&h) != cases[i].want) {
      print_error("case #%zu\n", i);
    }
    assert_err(hm_decode(&h), cases[i].want);
  }
}

static void test_decode_refuses_oversize_folder_counts(void **state) {
  struct hm h;
  (void)state;
  hm_init(&h);
  hm_folder(&h, "n/e");
  h.folder_count_set = 1;
  assert_oversize_counts_refused(&h, &h.folder_count, MANIFEST_MAX_FOLDERS,
                                 "folder count");
  /* Counts that misread the rest. */
  h.folder_count = 2;
  assert_int_not_equal(hm_decode(&h), 0);
  h.folder_count = 0;
  assert_int_not_equal(hm_decode(&h), 0);
}

static void test_decode_refuses_version_1_as_such(void **state) {
  struct hm h;
  char vec[MT_PATH_CAP];
  size_t len = 0;
  (void)state;
  /* Signed by the right key in the old layout: refused for its version,
   * whatever its length, even one below the version 2 minimum. */
  hm_init(&h);
  h.version = 1;
  assert_err(hm_decode(&h), SHOAL_EVERSION);
  hm_init(&h);
  h.version = 1;
  h.nfiles = 0;
  uint8_t *b = hm_encode(&h, &len);
  assert_int_equal(len, 119); /* the smallest version 1 manifest */
  assert_err(mt_decode_copy(b, len), SHOAL_EVERSION);
  assert_err(mt_decode_copy(b, 1), SHOAL_EVERSION);
  assert_err(mt_decode_copy(b, 0), SHOAL_ETRUNC);
  free(b);
  /* The version 1 vector that shoal wrote before. */
  tu_vector_path(vec, sizeof(vec), "manifest-v1-folder.bin");
  b = tu_read_file(vec, &len);
  if (b == NULL) {
    print_error("missing vector %s\n", vec);
  }
  assert_non_null(b);
  assert_int_equal(b[0], 1);
  assert_err(mt_decode_copy(b, len), SHOAL_EVERSION);
  free(b);
  /* Its message names the version as the problem. */
  assert_non_null(strstr(shoal_strerror(SHOAL_EVERSION), "version"));
}

/* ---------------------------------------------------------------------- */
/* Paths and chunk sizes. */

static int check_path(const char *p) {
  return manifest_check_path(p, strlen(p));
}

static void test_check_path_accepts_and_refuses(void **state) {
  static const char *const good[] = {
      "a",
      "a/b",
      "caf\xC3\xA9/\xC3\xBCn\xC3\xAF.txt", /* "café/ünï.txt" */
      "...",
      ".hidden/..x/x..",
      "a b/c d",
      "a-b_c~d!",
      "\xF0\x9F\x90\x9F", /* U+1F41F, four bytes */
      "\xF4\x8F\xBF\xBF", /* U+10FFFF, the last code point */
      "\xE0\xA0\x80",     /* U+0800, the first three-byte form */
      "\xED\x9F\xBF",     /* U+D7FF, just below the surrogates */
      "\xEE\x80\x80",     /* U+E000, just above them */
      "\xC2\xA0",         /* U+00A0, the first two-byte non-control */
  };
  static const char *const bad[] = {
      "\xC2\x80",  /* U+0080, a C1 control character */
      "a\xC2\x9F", /* U+009F, the last C1 control */
      "/etc/passwd",
      "a//b",
      "a/",
      "/",
      "./a",
      "a/.",
      "a/./b",
      "../a",
      "a/..",
      "a\\b",
      "\\",
      "a\x01",
      "a\x1f",
      "a\x7f",
      "a\tb",
      "\xC0\xAF",
      "\xC1\xBF",
      "\xE0\x80\xAF",
      "\xED\xA0\x80",
      "\xED\xBF\xBF",
      "\xF0\x80\x80\xAF",
      "\xF4\x90\x80\x80",
      "\xF5\x80\x80\x80",
      "\xFF",
      "\xFE",
      "\x80",
      "a\xC3",
      "\xE2\x82",
      "\xC3\x28",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    if (check_path(good[i]) != 0) {
      print_error("refused good path #%zu\n", i);
    }
    assert_err(check_path(good[i]), 0);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (check_path(bad[i]) != SHOAL_EPATH) {
      print_error("bad path #%zu\n", i);
    }
    assert_err(check_path(bad[i]), SHOAL_EPATH);
  }
  assert_err(manifest_check_path("", 0), SHOAL_EPATH);
  assert_err(manifest_check_path("a\0b", 3), SHOAL_EPATH);
  /* The length is honoured: bytes past it are not looked at. */
  assert_err(manifest_check_path("a/b/../c", 3), 0);

  /* Segment length. */
  char seg[MANIFEST_MAX_SEGMENT + 3];
  memset(seg, 's', sizeof(seg));
  seg[0] = 'a';
  seg[1] = '/';
  assert_err(manifest_check_path(seg, 2 + MANIFEST_MAX_SEGMENT), 0);
  assert_err(manifest_check_path(seg, 2 + MANIFEST_MAX_SEGMENT + 1),
             SHOAL_EPATH);

  /* Depth: MANIFEST_MAX_DEPTH + 1 segments pass, one more does not. */
  char deep[2 * (MANIFEST_MAX_DEPTH + 2)];
  for (size_t i = 0; i < sizeof(deep); i += 2) {
    deep[i] = 'd';
    deep[i + 1] = '/';
  }
  assert_err(manifest_check_path(deep, 2 * (MANIFEST_MAX_DEPTH + 1) - 1), 0);
  assert_err(manifest_check_path(deep, 2 * (MANIFEST_MAX_DEPTH + 2) - 1),
             SHOAL_ETOOBIG);

  /* Total length. */
  char *lng = malloc(MANIFEST_MAX_PATH + 1);
  assert_non_null(lng);
  memset(lng, 'x', MANIFEST_MAX_PATH + 1);
  for (size_t i = 100; i < MANIFEST_MAX_PATH + 1; i += 100) {
    lng[i] = '/';
  }
  assert_err(manifest_check_path(lng, MANIFEST_MAX_PATH), 0);
  assert_err(manifest_check_path(lng, MANIFEST_MAX_PATH + 1), SHOAL_ETOOBIG);
  free(lng);
}

static uint64_t chunks_of(uint64_t total, unsigned l) {
  return (total >> l) + ((total & (((uint64_t)1 << l) - 1)) != 0);
}

static void test_choose_chunk_log2_keeps_chunk_count_bounded(void **state) {
  (void)state;
  const uint64_t mib = 1u << 20;
  assert_int_equal(manifest_choose_chunk_log2(0), 14);
  assert_int_equal(manifest_choose_chunk_log2(1), 14);
  assert_int_equal(manifest_choose_chunk_log2(32 * mib), 14);
  assert_int_equal(manifest_choose_chunk_log2(32 * mib + 1), 15);
  assert_int_equal(manifest_choose_chunk_log2(64 * mib), 15);
  assert_int_equal(chunks_of(64 * mib, 15), 2048);
  assert_int_equal(manifest_choose_chunk_log2(64 * mib + 1), 16);
  assert_int_equal(manifest_choose_chunk_log2(1024 * mib), 19);
  assert_int_equal(manifest_choose_chunk_log2((uint64_t)32 << 30), 24);
  assert_int_equal(manifest_choose_chunk_log2(((uint64_t)32 << 30) + 1), 24);
  assert_int_equal(manifest_choose_chunk_log2(UINT64_MAX), 24);

  /* Over many sizes: in range, at most the target unless capped, and the
   * smallest chunk size that does so. */
  uint64_t s = 0;
  for (int i = 0; i < 4000; i++) {
    uint64_t total;
    if (i < 64) {
      total = (uint64_t)1 << i;
    } else if (i < 128) {
      total = ((uint64_t)1 << (i - 64)) - 1;
    } else {
      s = s * 6364136223846793005u + 1442695040888963407u;
      total = s >> (s & 63);
    }
    unsigned l = manifest_choose_chunk_log2(total);
    assert_true(l >= MANIFEST_CHUNK_LOG2_MIN && l <= MANIFEST_CHUNK_LOG2_MAX);
    assert_true(chunks_of(total, l) <= MANIFEST_TARGET_CHUNKS ||
                l == MANIFEST_CHUNK_LOG2_MAX);
    assert_true(l == MANIFEST_CHUNK_LOG2_MIN ||
                chunks_of(total, l - 1) > MANIFEST_TARGET_CHUNKS);
  }
}

/* ---------------------------------------------------------------------- */
/* Known-answer vector. */

/* The files of the vector in canonical order; each file i has the mode
 * kat_modes[i] and the modification time 1767225600 + i seconds and i
 * nanoseconds (from 2026-01-01T00:00:00Z). */
static const char *const kat_paths[] = {"kat/bin/run",    "kat/data/a.bin",
                                        "kat/data/empty", "kat/data-b.bin",
                                        "kat/readme.txt", "kat/z/\xC3\xBC.txt"};
static const uint64_t kat_sizes[] = {50, 20000, 0, 16384, 28, 100};
static const mode_t kat_modes[] = {0755, 0644, 0644, 0644, 0644, 0644};
static const char *const kat_folders[] = {"kat/empty", "kat/nest/deep"};

static void make_vector_folder(const char *dir) {
  static const char readme[] = "shoal known-answer manifest\n";
  tu_write_file(dir, "kat/readme.txt", readme, sizeof(readme) - 1);
  mt_write_filled(dir, "kat/bin/run", 50, 5);
  mt_write_filled(dir, "kat/data/a.bin", 20000, 1);
  mt_write_filled(dir, "kat/data/empty", 0, 2);
  mt_write_filled(dir, "kat/data-b.bin", 16384, 3);
  mt_write_filled(dir, "kat/z/\xC3\xBC.txt", 100, 4); /* "kat/z/ü.txt" */
  mt_mkdir(dir, "kat/empty");
  mt_mkdir(dir, "kat/nest");
  mt_mkdir(dir, "kat/nest/deep");
  for (size_t i = 0; i < sizeof(kat_paths) / sizeof(kat_paths[0]); i++) {
    mt_set_mode(dir, kat_paths[i], kat_modes[i]);
    mt_set_mtime(dir, kat_paths[i], 1767225600 + (int64_t)i, (long)i);
  }
}

static int write_vectors(void) {
  const char *w = getenv("SHOAL_WRITE_VECTORS");
  return w != NULL && strcmp(w, "1") == 0;
}

/* Compares len bytes with the file at path, or writes them there when
 * SHOAL_WRITE_VECTORS=1. */
static void check_or_write(const char *path, const uint8_t *bytes, size_t len) {
  if (write_vectors()) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    fprintf(stderr, "wrote %s (%zu bytes)\n", path, len);
  }
  size_t got_len = 0;
  uint8_t *got = tu_read_file(path, &got_len);
  if (got == NULL) {
    print_error("missing %s\n", path);
  }
  assert_non_null(got);
  if (got_len != len || memcmp(got, bytes, len) != 0) {
    print_error("%s is not what the code makes now (run with "
                "SHOAL_WRITE_VECTORS=1 after a deliberate format change)\n",
                path);
    fail();
  }
  free(got);
}

static void test_known_answer_vector_folder(void **state) {
  const char *dir = *state;
  char top[MT_PATH_CAP];
  char vec[MT_PATH_CAP];
  make_vector_folder(dir);
  tu_path(top, sizeof(top), dir, "kat");
  tu_vector_path(vec, sizeof(vec), "manifest-folder.bin");
  struct manifest *m = mt_build(top, &mf_pub, NULL);
  check_or_write(vec, m->encoded, m->encoded_len);
  size_t len = 0;
  uint8_t *want = tu_read_file(vec, &len);
  if (want == NULL) {
    print_error("missing vector %s\n", vec);
  }
  assert_non_null(want);
  assert_int_equal(len, m->encoded_len);
  assert_memory_equal(want, m->encoded, len);

  struct manifest *d = NULL;
  assert_err(manifest_decode(want, len, &d), 0);
  assert_non_null(d);
  assert_int_equal(d->kind, MANIFEST_KIND_FOLDER);
  assert_string_equal(d->name, "kat");
  assert_int_equal(d->chunk_log2, 14);
  assert_memory_equal(d->publisher, mf_pub.pk, IDENTITY_PK_BYTES);
  assert_int_equal(d->file_count, 6);
  for (uint32_t i = 0; i < 6; i++) {
    assert_string_equal(d->files[i].path, kat_paths[i]);
    assert_int_equal(d->files[i].size, kat_sizes[i]);
    assert_int_equal(d->files[i].mode, i == 0 ? MANIFEST_MODE_EXEC : 0);
    assert_int_equal(d->files[i].mtime_sec, 1767225600 + (int64_t)i);
    assert_int_equal(d->files[i].mtime_nsec, i);
  }
  assert_int_equal(d->folder_count, 2);
  assert_string_equal(d->folders[0], kat_folders[0]);
  assert_string_equal(d->folders[1], kat_folders[1]);
  assert_int_equal(d->total_size, 50 + 20000 + 16384 + 28 + 100);
  assert_int_equal(d->chunk_count, 1 + 2 + 1 + 1 + 1);
  uint8_t id[MANIFEST_ID_BYTES];
  assert_err(manifest_id_of(want, len, id), 0);
  assert_memory_equal(id, m->id, MANIFEST_ID_BYTES);

  /* The same file checked with libsodium directly, not through the
   * module: the ID is unkeyed BLAKE2b-256 of the canonical bytes, each
   * chunk hash is SHA-256 of the chunk (libsodium's, not libcrypto's that
   * the module uses), and the signature is
   * Ed25519 over the domain, its NUL, then the canonical bytes. */
  size_t body = len - IDENTITY_SIG_BYTES;
  uint8_t h[32];
  crypto_generichash(h, sizeof(h), want, body, NULL, 0);
  assert_memory_equal(h, d->id, sizeof(h));
  static const char readme[] = "shoal known-answer manifest\n";
  crypto_hash_sha256(h, (const uint8_t *)readme, sizeof(readme) - 1);
  assert_memory_equal(h, d->hashes + 4 * MANIFEST_HASH_BYTES, sizeof(h));
  uint8_t *msg = malloc(sizeof(domain) + body);
  assert_non_null(msg);
  memcpy(msg, domain, sizeof(domain));
  memcpy(msg + sizeof(domain), want, body);
  assert_int_equal(crypto_sign_verify_detached(
                       want + body, msg, sizeof(domain) + body, mf_pub.pk),
                   0);
  free(msg);
  manifest_free(d);
  free(want);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* The fuzz target's seed corpus. */

/* tests/fuzz/corpus/manifest/name, beside the vectors folder. */
static void corpus_path(char *out, size_t cap, const char *name) {
  char rel[256];
  snprintf(rel, sizeof(rel), "../fuzz/corpus/manifest/%s", name);
  tu_vector_path(out, cap, rel);
}

/* Checks (or writes) name, signed by the fuzz target's key, and
 * name_unsigned, its canonical bytes, which the target signs itself. */
static void check_seed(const char *name, const struct manifest *m) {
  char path[MT_PATH_CAP];
  char uname[128];
  assert_err(mt_decode_copy(m->encoded, m->encoded_len), 0);
  corpus_path(path, sizeof(path), name);
  check_or_write(path, m->encoded, m->encoded_len);
  snprintf(uname, sizeof(uname), "%s_unsigned", name);
  corpus_path(path, sizeof(path), uname);
  check_or_write(path, m->encoded, m->encoded_len - IDENTITY_SIG_BYTES);
}

static void test_fuzz_seed_corpus_is_current(void **state) {
  const char *dir = *state;
  char p[MT_PATH_CAP];
  struct identity fuzz_key; /* seed 0x5a * 32, as fuzz_manifest.c */
  mt_seed_key(&fuzz_key, 0x5a);
  /* One executable file of three chunks. */
  mt_write_filled(dir, "tool", 40000, 21);
  mt_set_mode(dir, "tool", 0755);
  mt_set_mtime(dir, "tool", 1767225600, 123456789);
  tu_path(p, sizeof(p), dir, "tool");
  struct manifest *m = mt_build(p, &fuzz_key, NULL);
  check_seed("file", m);
  manifest_free(m);
  /* One empty file (no chunk). */
  mt_write_filled(dir, "empty", 0, 22);
  mt_set_mtime(dir, "empty", 0, 0);
  tu_path(p, sizeof(p), dir, "empty");
  m = mt_build(p, &fuzz_key, NULL);
  char path[MT_PATH_CAP];
  corpus_path(path, sizeof(path), "empty_file");
  check_or_write(path, m->encoded, m->encoded_len);
  manifest_free(m);
  /* A folder with files, an executable, empty folders and a non-ASCII
   * name. */
  mt_write_filled(dir, "photos/2024/b c.jpg", 100, 23);
  mt_write_filled(dir, "photos/a.jpg", 20000, 24);
  mt_write_filled(dir, "photos/empty", 0, 25);
  mt_write_filled(dir, "photos/r\xC3\xA9sum\xC3\xA9", 16384, 26);
  mt_write_filled(dir, "photos/bin/show", 10, 27);
  mt_set_mode(dir, "photos/bin/show", 0700);
  mt_mkdir(dir, "photos/2025");
  mt_mkdir(dir, "photos/cache");
  mt_mkdir(dir, "photos/cache/thumbs");
  static const char *const files[] = {
      "photos/2024/b c.jpg", "photos/a.jpg", "photos/empty",
      "photos/r\xC3\xA9sum\xC3\xA9", "photos/bin/show"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    mt_set_mtime(dir, files[i], 1700000000 + (int64_t)i, 0);
  }
  tu_path(p, sizeof(p), dir, "photos");
  m = mt_build(p, &fuzz_key, NULL);
  assert_int_equal(m->folder_count, 2);
  check_seed("folder", m);
  manifest_free(m);
  /* A folder of empty folders only. */
  mt_mkdir(dir, "skeleton");
  mt_mkdir(dir, "skeleton/a");
  mt_mkdir(dir, "skeleton/a/b");
  mt_mkdir(dir, "skeleton/c");
  tu_path(p, sizeof(p), dir, "skeleton");
  m = mt_build(p, &fuzz_key, NULL);
  assert_int_equal(m->file_count, 0);
  check_seed("empty_folders", m);
  manifest_free(m);
  identity_close(&fuzz_key);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T_DIR(name)                                                            \
  cmocka_unit_test_setup_teardown(name, mf_dir_setup, mf_dir_teardown)
      T_DIR(test_decode_round_trip_gives_equal_fields),
      T_DIR(test_decode_rejects_every_truncation),
      T_DIR(test_decode_rejects_a_flipped_bit_anywhere),
      T_DIR(test_decode_rejects_one_extra_byte),
      T_DIR(test_hand_encoder_matches_the_builder),
      cmocka_unit_test(test_decode_refuses_unsafe_paths),
      cmocka_unit_test(test_decode_refuses_path_outside_the_name),
      cmocka_unit_test(
          test_decode_refuses_duplicate_conflicting_and_unsorted_paths),
      cmocka_unit_test(test_decode_refuses_sizes_that_do_not_add_up),
      cmocka_unit_test(test_decode_refuses_oversize_counts),
      cmocka_unit_test(test_decode_refuses_bad_header_fields),
      cmocka_unit_test(test_decode_refuses_signature_by_another_key),
      cmocka_unit_test(test_decode_refuses_more_than_max_bytes),
      cmocka_unit_test(test_decode_refuses_too_deep_or_too_long_path),
      cmocka_unit_test(test_decode_accepts_only_the_defined_mode_bits),
      cmocka_unit_test(test_decode_takes_any_second_but_only_nanoseconds),
      cmocka_unit_test(test_decode_new_fields_with_a_flipped_bit),
      cmocka_unit_test(test_decode_empty_folders),
      cmocka_unit_test(test_decode_refuses_ambiguous_folders),
      cmocka_unit_test(test_decode_refuses_oversize_folder_counts),
      cmocka_unit_test(test_decode_refuses_version_1_as_such),
      cmocka_unit_test(test_check_path_accepts_and_refuses),
      cmocka_unit_test(test_choose_chunk_log2_keeps_chunk_count_bounded),
      T_DIR(test_known_answer_vector_folder),
      T_DIR(test_fuzz_seed_corpus_is_current),
#undef T_DIR
  };
  return cmocka_run_group_tests(tests, mf_keys_setup, mf_keys_teardown);
}
