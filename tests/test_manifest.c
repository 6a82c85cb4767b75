/* Tests for common/manifest: building a signed manifest from a file or a
 * folder, the chunk helpers, and decoding hostile bytes.
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
 * Changes to a file during hashing are made deterministic without sleeps:
 * each file is its own hashing job, and with threads = 1 the builder keeps
 * only a few jobs queued (far fewer than SMALL_FILES), handing out the next
 * one from the loop thread as one finishes; inline (threads = 0) jobs run
 * one after the other. So the progress callback of the first job, or the
 * gap between manifest_build_start() and uv_run(), can change the last file
 * before its job is even queued.
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

#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "tests/lib/testutil.h"

#define CS14 ((uint64_t)1 << 14)
#define PATH_CAP 8192

/* The signing domain, as the protocol defines it (signed with its NUL). */
static const char domain[] = "shoal/1 manifest";

static struct identity g_pub;   /* seed 0x42 * 32: the vector's key */
static struct identity g_other; /* seed 0x17 * 32 */

/* Asserts an error code and prints both names when it differs. */
#define assert_err(got, want)                                                  \
  do {                                                                         \
    int g_ = (got);                                                            \
    int w_ = (want);                                                           \
    if (g_ != w_) {                                                            \
      print_error("got %s (%d), want %s (%d)\n", shoal_err_name(g_), g_,       \
                  shoal_err_name(w_), w_);                                     \
    }                                                                          \
    assert_int_equal(g_, w_);                                                  \
  } while (0)

static void seed_key(struct identity *id, uint8_t byte) {
  uint8_t seed[32];
  memset(seed, byte, sizeof(seed));
  identity_from_seed(id, seed);
}

/* ---------------------------------------------------------------------- */
/* Helpers: files on disk. */

/* A fresh temp folder, resolved so that it compares with local_root. */
static void make_tmp(char *out, size_t cap) {
  char raw[PATH_MAX];
  tu_tmpdir(raw, sizeof(raw));
  char *real = realpath(raw, NULL);
  assert_non_null(real);
  assert_true(strlen(real) < cap);
  memcpy(out, real, strlen(real) + 1);
  free(real);
}

static void write_filled(const char *dir, const char *rel, size_t len,
                         uint64_t seed) {
  uint8_t *p = malloc(len ? len : 1);
  assert_non_null(p);
  tu_fill(p, len, seed);
  tu_write_file(dir, rel, p, len);
  free(p);
}

static void append_byte(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "!", 1), 1);
  assert_int_equal(close(fd), 0);
}

/* Sets the modification time to a fixed moment long before the scan. */
static void set_old_mtime(const char *path) {
  struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};
  assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Sets dir/rel's modification (and access) time. */
static void set_mtime(const char *dir, const char *rel, int64_t sec,
                      long nsec) {
  char p[PATH_CAP];
  struct timespec ts[2] = {{(time_t)sec, nsec}, {(time_t)sec, nsec}};
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static void set_mode(const char *dir, const char *rel, mode_t mode) {
  char p[PATH_CAP];
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(chmod(p, mode), 0);
}

static void make_dir(const char *dir, const char *rel) {
  char p[PATH_CAP];
  tu_path(p, sizeof(p), dir, rel);
  assert_int_equal(mkdir(p, 0755), 0);
}

/* ---------------------------------------------------------------------- */
/* Helpers: what the callbacks saw. */

#define REC_MAX_SKIPS 8

struct rec {
  unsigned progress_calls;
  uint64_t last_done;
  uint64_t last_total;
  int went_backwards;
  int total_changed;
  unsigned skips;
  char skip_path[REC_MAX_SKIPS][256];
  char skip_why[REC_MAX_SKIPS][256];
  /* Actions taken at the first progress report. */
  const char *append_on_progress;
  struct manifest_builder *cancel_on_progress;
};

static void rec_progress(void *arg, uint64_t done, uint64_t total) {
  struct rec *r = arg;
  if (r->progress_calls > 0) {
    r->went_backwards |= done < r->last_done;
    r->total_changed |= total != r->last_total;
  }
  r->progress_calls++;
  r->last_done = done;
  r->last_total = total;
  if (r->append_on_progress != NULL) {
    append_byte(r->append_on_progress);
    r->append_on_progress = NULL;
  }
  if (r->cancel_on_progress != NULL) {
    manifest_build_cancel(r->cancel_on_progress);
    r->cancel_on_progress = NULL;
  }
}

static void rec_skipped(void *arg, const char *path, const char *why) {
  struct rec *r = arg;
  assert_true(r->skips < REC_MAX_SKIPS);
  snprintf(r->skip_path[r->skips], sizeof(r->skip_path[0]), "%s", path);
  snprintf(r->skip_why[r->skips], sizeof(r->skip_why[0]), "%s", why);
  r->skips++;
}

static void rec_opts(struct manifest_build_opts *o, struct rec *r) {
  memset(o, 0, sizeof(*o));
  memset(r, 0, sizeof(*r));
  o->progress = rec_progress;
  o->skipped = rec_skipped;
  o->arg = r;
}

/* The skipped entry for path, or -1. */
static int rec_find_skip(const struct rec *r, const char *path) {
  for (unsigned i = 0; i < r->skips; i++) {
    if (strcmp(r->skip_path[i], path) == 0) {
      return (int)i;
    }
  }
  return -1;
}

struct done_rec {
  int calls;
  int status;
  struct manifest *m;
};

static void on_built(void *arg, int status, struct manifest *m) {
  struct done_rec *d = arg;
  d->calls++;
  d->status = status;
  d->m = m;
}

/* ---------------------------------------------------------------------- */
/* Helpers: manifests. */

static struct manifest *build_ok(const char *path, const struct identity *id,
                                 const struct manifest_build_opts *o) {
  struct manifest *m = NULL;
  assert_err(manifest_build(path, id, o, &m), 0);
  assert_non_null(m);
  assert_non_null(m->encoded);
  return m;
}

static void assert_same_bytes(const struct manifest *a,
                              const struct manifest *b) {
  assert_int_equal(a->encoded_len, b->encoded_len);
  assert_memory_equal(a->encoded, b->encoded, a->encoded_len);
  assert_memory_equal(a->id, b->id, MANIFEST_ID_BYTES);
}

/* Decodes a private heap copy of exactly len bytes, so that ASan catches a
 * read past the end; returns the error and checks the output contract. */
static int decode_copy(const uint8_t *bytes, size_t len) {
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  if (len > 0) {
    memcpy(copy, bytes, len);
  }
  struct manifest *m = (struct manifest *)&m; /* must be overwritten */
  int err = manifest_decode(copy, len, &m);
  if (err == 0) {
    assert_non_null(m);
    manifest_free(m);
  } else {
    assert_null(m);
  }
  free(copy);
  return err;
}

/* Checks every chunk of a built manifest against the files on disk: owner,
 * offset, length, hash, and that a corrupted or mis-sized chunk is refused. */
static void check_chunks_against_disk(const struct manifest *m) {
  const uint64_t cs = (uint64_t)1 << m->chunk_log2;
  uint32_t expect_next = 0;

  for (uint32_t f = 0; f < m->file_count; f++) {
    const struct manifest_file *mf = &m->files[f];
    assert_int_equal(mf->first_chunk, expect_next);
    assert_int_equal(mf->chunk_count, (mf->size + cs - 1) / cs);
    expect_next += mf->chunk_count;

    char path[PATH_CAP];
    tu_path(path, sizeof(path), m->local_root, mf->path);
    size_t len = 0;
    uint8_t *data = tu_read_file(path, &len);
    assert_non_null(data);
    assert_int_equal(len, mf->size);
    for (uint32_t c = 0; c < mf->chunk_count; c++) {
      uint32_t idx = mf->first_chunk + c;
      uint32_t owner = UINT32_MAX;
      uint64_t off = UINT64_MAX;
      assert_err(manifest_chunk_file(m, idx, &owner, &off), 0);
      assert_int_equal(owner, f);
      assert_int_equal(off, (uint64_t)c * cs);
      uint64_t want = mf->size - off < cs ? mf->size - off : cs;
      uint32_t clen = manifest_chunk_len(m, idx);
      assert_int_equal(clen, want);

      uint8_t *chunk = malloc((size_t)clen + 1);
      assert_non_null(chunk);
      memcpy(chunk, data + off, clen);
      chunk[clen] = 0;
      assert_err(manifest_verify_chunk(m, idx, chunk, clen), 0);
      assert_err(manifest_verify_chunk(m, idx, chunk, clen + 1), SHOAL_EINVAL);
      assert_err(manifest_verify_chunk(m, idx, chunk, clen - 1), SHOAL_EINVAL);
      chunk[clen / 2] ^= 0x01;
      assert_err(manifest_verify_chunk(m, idx, chunk, clen), SHOAL_EHASH);
      free(chunk);
    }
    free(data);
  }
  assert_int_equal(m->chunk_count, expect_next);
  /* One past the last chunk is out of range everywhere. */
  uint32_t owner;
  uint64_t off;
  uint8_t byte = 0;
  assert_err(manifest_chunk_file(m, m->chunk_count, &owner, &off),
             SHOAL_EINVAL);
  assert_int_equal(manifest_chunk_len(m, m->chunk_count), 0);
  assert_err(manifest_verify_chunk(m, m->chunk_count, &byte, 0), SHOAL_EINVAL);
  assert_err(manifest_chunk_file(m, UINT32_MAX, &owner, &off), SHOAL_EINVAL);
}

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
  const struct identity *owner;  /* key written as publisher; NULL: g_pub */
  const struct identity *signer; /* NULL: g_pub */
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
  const struct identity *owner = h->owner ? h->owner : &g_pub;
  const struct identity *signer = h->signer ? h->signer : &g_pub;
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
  int err = decode_copy(bytes, len);
  free(bytes);
  return err;
}

/* Signs canonical bytes again after a test changed them (the last
 * IDENTITY_SIG_BYTES of the len bytes are the signature). */
static void resign(uint8_t *bytes, size_t len) {
  size_t body = len - IDENTITY_SIG_BYTES;
  assert_err(
      identity_sign2(&g_pub, domain, sizeof(domain), bytes, body, bytes + body),
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
/* Building from a single file. */

static struct manifest *build_single(const char *dir, size_t size,
                                     unsigned chunk_log2) {
  char path[PATH_CAP];
  struct manifest_build_opts o;
  struct rec r;
  rec_opts(&o, &r);
  o.chunk_log2 = chunk_log2;
  write_filled(dir, "file.bin", size, 11);
  tu_path(path, sizeof(path), dir, "file.bin");
  struct manifest *m = build_ok(path, &g_pub, &o);

  assert_int_equal(m->kind, MANIFEST_KIND_FILE);
  assert_string_equal(m->name, "file.bin");
  assert_string_equal(m->local_root, dir);
  assert_int_equal(m->file_count, 1);
  assert_string_equal(m->files[0].path, m->name);
  assert_int_equal(m->files[0].size, size);
  assert_int_equal(m->total_size, size);
  assert_memory_equal(m->publisher, g_pub.pk, IDENTITY_PK_BYTES);
  assert_int_equal(r.skips, 0);
  check_chunks_against_disk(m);
  return m;
}

static void test_build_empty_file_has_no_chunks(void **state) {
  char dir[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  struct manifest *m = build_single(dir, 0, 0);
  assert_int_equal(m->chunk_count, 0);
  assert_int_equal(m->total_size, 0);
  assert_int_equal(m->chunk_log2, MANIFEST_CHUNK_LOG2_MIN);
  assert_int_equal(m->files[0].chunk_count, 0);
  assert_err(decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_build_one_byte_file_is_one_short_chunk(void **state) {
  char dir[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  struct manifest *m = build_single(dir, 1, 0);
  assert_int_equal(m->chunk_count, 1);
  assert_int_equal(manifest_chunk_len(m, 0), 1);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_build_exactly_one_chunk(void **state) {
  char dir[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  struct manifest *m = build_single(dir, CS14, 14);
  assert_int_equal(m->chunk_log2, 14);
  assert_int_equal(m->chunk_count, 1);
  assert_int_equal(manifest_chunk_len(m, 0), CS14);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_build_one_chunk_plus_one_byte_is_two_chunks(void **state) {
  char dir[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  struct manifest *m = build_single(dir, CS14 + 1, 14);
  assert_int_equal(m->chunk_count, 2);
  assert_int_equal(manifest_chunk_len(m, 0), CS14);
  assert_int_equal(manifest_chunk_len(m, 1), 1);
  uint32_t f;
  uint64_t off;
  assert_err(manifest_chunk_file(m, 1, &f, &off), 0);
  assert_int_equal(f, 0);
  assert_int_equal(off, CS14);
  /* The two chunks hash differently, so each hash is really its own. */
  assert_memory_not_equal(m->hashes, m->hashes + MANIFEST_HASH_BYTES,
                          MANIFEST_HASH_BYTES);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_build_refuses_bad_chunk_log2_option(void **state) {
  char dir[PATH_CAP];
  char path[PATH_CAP];
  const unsigned bad[] = {1, 13, 25, 256 + 14};
  (void)state;
  make_tmp(dir, sizeof(dir));
  write_filled(dir, "f", 10, 1);
  tu_path(path, sizeof(path), dir, "f");
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct manifest_build_opts o = {.chunk_log2 = bad[i]};
    struct manifest *m = (struct manifest *)&m;
    assert_err(manifest_build(path, &g_pub, &o, &m), SHOAL_EINVAL);
    assert_null(m);
  }
  /* Both ends of the range are accepted. */
  for (unsigned l = MANIFEST_CHUNK_LOG2_MIN; l <= MANIFEST_CHUNK_LOG2_MAX;
       l += MANIFEST_CHUNK_LOG2_MAX - MANIFEST_CHUNK_LOG2_MIN) {
    struct manifest_build_opts o = {.chunk_log2 = l};
    struct manifest *m = build_ok(path, &g_pub, &o);
    assert_int_equal(m->chunk_log2, l);
    manifest_free(m);
  }
  tu_rmtree(dir);
}

static void test_build_without_opts_works(void **state) {
  char dir[PATH_CAP];
  char path[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  write_filled(dir, "top/a", 3000, 1);
  tu_path(path, sizeof(path), dir, "top");
  struct manifest *m = build_ok(path, &g_pub, NULL);
  assert_int_equal(m->kind, MANIFEST_KIND_FOLDER);
  assert_int_equal(m->file_count, 1);
  check_chunks_against_disk(m);
  manifest_free(m);
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------- */
/* Building from a folder. */

/* top/
 *   a/b/c/deep.bin   1 byte
 *   a/empty.txt      0 bytes
 *   d/x              100 bytes
 *   d-e              20000 bytes (2 chunks), mode 0755: executable
 *   z.bin            40000 bytes (3 chunks)
 *   emptydir/, nest/ed/  folders without files: recorded, nest only through
 *                    nest/ed
 *   lonely/          a folder whose only entry is skipped: recorded empty
 *   link -> d/x      symbolic link: skipped
 *   lonely/l -> ../z.bin   symbolic link: skipped
 *   fifo             named pipe: skipped
 *   back\slash       unsafe name: skipped
 * Every file's modification time is tree_mtime(i) for its index i in
 * tree_paths, so that two trees made apart in time are the same content. */
static const char *const tree_paths[] = {
    "top/a/b/c/deep.bin", "top/a/empty.txt", "top/d/x", "top/d-e", "top/z.bin"};
static const char *const tree_folders[] = {"top/emptydir", "top/lonely",
                                           "top/nest/ed"};

static int64_t tree_mtime(size_t i) {
  return 1600000000 + 86400 * (int64_t)i;
}

static long tree_nsec(size_t i) {
  return 1000 * (long)i + 7;
}

static void make_tree(const char *dir) {
  char p[PATH_CAP];
  write_filled(dir, "top/a/b/c/deep.bin", 1, 1);
  write_filled(dir, "top/a/empty.txt", 0, 2);
  write_filled(dir, "top/d/x", 100, 3);
  write_filled(dir, "top/d-e", 20000, 4);
  write_filled(dir, "top/z.bin", 40000, 5);
  set_mode(dir, "top/d-e", 0755);
  for (size_t i = 0; i < sizeof(tree_paths) / sizeof(tree_paths[0]); i++) {
    set_mtime(dir, tree_paths[i], tree_mtime(i), tree_nsec(i));
  }
  make_dir(dir, "top/emptydir");
  make_dir(dir, "top/nest");
  make_dir(dir, "top/nest/ed");
  make_dir(dir, "top/lonely");
  tu_path(p, sizeof(p), dir, "top/lonely/l");
  assert_int_equal(symlink("../z.bin", p), 0);
  tu_path(p, sizeof(p), dir, "top/link");
  assert_int_equal(symlink("d/x", p), 0);
  tu_path(p, sizeof(p), dir, "top/fifo");
  assert_int_equal(mkfifo(p, 0644), 0);
  write_filled(dir, "top/back\\slash", 10, 6);
}

static void
test_build_folder_records_files_sorted_and_skips_specials(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  struct manifest_build_opts o;
  struct rec r;
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_tree(dir);
  tu_path(top, sizeof(top), dir, "top");
  rec_opts(&o, &r);
  o.chunk_log2 = 14;
  struct manifest *m = build_ok(top, &g_pub, &o);

  assert_int_equal(m->kind, MANIFEST_KIND_FOLDER);
  assert_string_equal(m->name, "top");
  assert_string_equal(m->local_root, dir);
  /* Segment-wise order: "top/d/x" sorts before "top/d-e" although '-' is
   * below '/' in ASCII. */
  static const uint64_t sizes[] = {1, 0, 100, 20000, 40000};
  static const uint32_t first[] = {0, 1, 1, 2, 4};
  static const uint32_t count[] = {1, 0, 1, 2, 3};
  assert_int_equal(m->file_count, 5);
  uint64_t total = 0;
  for (uint32_t i = 0; i < 5; i++) {
    assert_string_equal(m->files[i].path, tree_paths[i]);
    assert_int_equal(m->files[i].size, sizes[i]);
    assert_int_equal(m->files[i].first_chunk, first[i]);
    assert_int_equal(m->files[i].chunk_count, count[i]);
    /* The one executable file, and every file's modification time. */
    assert_int_equal(m->files[i].mode, i == 3 ? MANIFEST_MODE_EXEC : 0);
    assert_int_equal(m->files[i].mtime_sec, tree_mtime(i));
    assert_int_equal(m->files[i].mtime_nsec, tree_nsec(i));
    total += sizes[i];
  }
  assert_int_equal(m->total_size, total);
  assert_int_equal(m->chunk_count, 7);
  check_chunks_against_disk(m);
  /* The empty folders, in canonical order: "top/nest" holds only an empty
   * folder and is implied by it; "top/lonely" is empty once its symlink
   * is left out. */
  assert_int_equal(m->folder_count, 3);
  for (uint32_t i = 0; i < 3; i++) {
    assert_string_equal(m->folders[i], tree_folders[i]);
  }

  /* The symlinks, the fifo and the unsafe name were reported, each once
   * with a reason. */
  assert_int_equal(r.skips, 4);
  const char *const skipped[] = {"top/link", "top/lonely/l", "top/fifo",
                                 "top/back\\slash"};
  for (size_t i = 0; i < 4; i++) {
    int k = rec_find_skip(&r, skipped[i]);
    if (k < 0) {
      print_error("not reported as skipped: %s\n", skipped[i]);
    }
    assert_true(k >= 0);
    assert_true(strlen(r.skip_why[k]) > 0);
  }
  /* A program that reports these (shoal-peer's --json events) gets the
   * path and a reason from a fixed set that tells the kinds apart. */
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/link")],
                      MANIFEST_SKIP_SYMLINK);
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/lonely/l")],
                      MANIFEST_SKIP_SYMLINK);
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/fifo")],
                      MANIFEST_SKIP_SPECIAL);
  assert_string_equal(r.skip_why[rec_find_skip(&r, "top/back\\slash")],
                      MANIFEST_SKIP_UNSAFE_NAME);
  /* Progress reached the total exactly, never going back. */
  assert_true(r.progress_calls > 0);
  assert_false(r.went_backwards);
  assert_false(r.total_changed);
  assert_int_equal(r.last_done, total);
  assert_int_equal(r.last_total, total);

  /* Whatever the builder makes, the decoder accepts. */
  assert_err(decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_build_trailing_slash_names_the_folder(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  write_filled(dir, "top/f", 10, 1);
  tu_path(top, sizeof(top), dir, "top/");
  struct manifest *m = build_ok(top, &g_pub, NULL);
  assert_string_equal(m->name, "top");
  assert_string_equal(m->files[0].path, "top/f");
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_build_folder_of_empty_folders_lists_the_deepest(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_dir(dir, "top");
  make_dir(dir, "top/sub");
  make_dir(dir, "top/a");
  make_dir(dir, "top/a/b");
  make_dir(dir, "top/a/c");
  tu_path(top, sizeof(top), dir, "top");
  struct manifest *m = build_ok(top, &g_pub, NULL);
  assert_int_equal(m->kind, MANIFEST_KIND_FOLDER);
  assert_int_equal(m->file_count, 0);
  assert_int_equal(m->chunk_count, 0);
  assert_int_equal(m->total_size, 0);
  /* "top/a" holds only empty folders: they imply it. */
  assert_int_equal(m->folder_count, 3);
  assert_string_equal(m->folders[0], "top/a/b");
  assert_string_equal(m->folders[1], "top/a/c");
  assert_string_equal(m->folders[2], "top/sub");
  assert_err(decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);

  /* A folder with nothing in it at all: no files and no folders. */
  make_dir(dir, "bare");
  tu_path(top, sizeof(top), dir, "bare");
  m = build_ok(top, &g_pub, NULL);
  assert_int_equal(m->file_count, 0);
  assert_int_equal(m->folder_count, 0);
  assert_err(decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
  tu_rmtree(dir);
}

static void test_build_records_the_executable_bit_and_mtime(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  /* The owner's execute bit makes a file executable; nothing else does,
   * and the special bits are not recorded at all. */
  static const struct {
    const char *path;
    mode_t mode;
    uint8_t want;
  } files[] = {
      {"top/a", 0644, 0},
      {"top/b", 0755, MANIFEST_MODE_EXEC},
      {"top/c", 0700, MANIFEST_MODE_EXEC},
      {"top/d", 0744, MANIFEST_MODE_EXEC},
      {"top/e", 0654, 0},
      {"top/f", 0645, 0},
      {"top/g", 04755, MANIFEST_MODE_EXEC},
      {"top/h", 01644, 0},
      {"top/i", 0444, 0},
  };
  const size_t n = sizeof(files) / sizeof(files[0]);
  (void)state;
  make_tmp(dir, sizeof(dir));
  for (size_t i = 0; i < n; i++) {
    write_filled(dir, files[i].path, 10 + i, i);
    set_mode(dir, files[i].path, files[i].mode);
    set_mtime(dir, files[i].path, 1234567890 + (int64_t)i, 999999999 - (long)i);
  }
  tu_path(top, sizeof(top), dir, "top");
  struct manifest *m = build_ok(top, &g_pub, NULL);
  assert_int_equal(m->file_count, n);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(m->files[i].path, files[i].path);
    if (m->files[i].mode != files[i].want) {
      print_error("%s (mode %o)\n", files[i].path, (unsigned)files[i].mode);
    }
    assert_int_equal(m->files[i].mode, files[i].want);
    assert_int_equal(m->files[i].mtime_sec, 1234567890 + (int64_t)i);
    assert_int_equal(m->files[i].mtime_nsec, 999999999 - (long)i);
  }
  /* And a decoded manifest gives them back. */
  struct manifest *d = NULL;
  assert_err(manifest_decode(m->encoded, m->encoded_len, &d), 0);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(d->files[i].mode, m->files[i].mode);
    assert_int_equal(d->files[i].mtime_sec, m->files[i].mtime_sec);
    assert_int_equal(d->files[i].mtime_nsec, m->files[i].mtime_nsec);
  }
  manifest_free(d);
  manifest_free(m);

  /* A single-file content carries them too. */
  char p[PATH_CAP];
  tu_path(p, sizeof(p), dir, "top/b");
  m = build_ok(p, &g_pub, NULL);
  assert_int_equal(m->kind, MANIFEST_KIND_FILE);
  assert_int_equal(m->files[0].mode, MANIFEST_MODE_EXEC);
  assert_int_equal(m->files[0].mtime_sec, 1234567891);
  assert_int_equal(m->files[0].mtime_nsec, 999999998);
  manifest_free(m);
  tu_rmtree(dir);
}

static void
test_build_refuses_special_file_and_unsafe_name_at_top(void **state) {
  char dir[PATH_CAP];
  char p[PATH_CAP];
  char err_path[PATH_CAP];
  struct manifest_build_opts o = {.err_path = err_path,
                                  .err_path_cap = sizeof(err_path)};
  struct manifest *m = NULL;
  (void)state;
  make_tmp(dir, sizeof(dir));
  tu_path(p, sizeof(p), dir, "pipe");
  assert_int_equal(mkfifo(p, 0644), 0);
  err_path[0] = '\0';
  assert_err(manifest_build(p, &g_pub, &o, &m), SHOAL_EPATH);
  assert_null(m);
  assert_string_equal(err_path, p);

  write_filled(dir, "bad\\name", 4, 1);
  tu_path(p, sizeof(p), dir, "bad\\name");
  err_path[0] = '\0';
  assert_err(manifest_build(p, &g_pub, &o, &m), SHOAL_EPATH);
  assert_null(m);
  assert_string_equal(err_path, p);
  tu_rmtree(dir);
}

/* Writes top/d/d/.../d/f with `folders` folders "d" below top, and the
 * relative path of the deepest folder into rel. */
static void make_nested(const char *dir, unsigned folders, char *rel,
                        size_t cap) {
  size_t n = (size_t)snprintf(rel, cap, "top");
  for (unsigned i = 0; i < folders; i++) {
    n += (size_t)snprintf(rel + n, cap - n, "/d");
  }
  char file[PATH_CAP];
  assert_true(n + 3 <= sizeof(file));
  memcpy(file, rel, n);
  memcpy(file + n, "/f", 3);
  write_filled(dir, file, 10, folders);
}

static void
test_build_refuses_folders_nested_deeper_than_the_limit(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  char rel[PATH_CAP];
  char err_path[PATH_CAP];
  struct manifest_build_opts o = {.err_path = err_path,
                                  .err_path_cap = sizeof(err_path)};
  (void)state;
  /* MANIFEST_MAX_DEPTH - 1 folders below the name: the file's path has
   * MANIFEST_MAX_DEPTH + 1 segments, the most a decoder accepts. */
  make_tmp(dir, sizeof(dir));
  make_nested(dir, MANIFEST_MAX_DEPTH - 1, rel, sizeof(rel));
  tu_path(top, sizeof(top), dir, "top");
  struct manifest *m = build_ok(top, &g_pub, &o);
  assert_int_equal(m->file_count, 1);
  assert_err(decode_copy(m->encoded, m->encoded_len), 0);
  manifest_free(m);
  tu_rmtree(dir);

  /* One folder more is refused, naming the folder that is too deep. */
  make_tmp(dir, sizeof(dir));
  make_nested(dir, MANIFEST_MAX_DEPTH, rel, sizeof(rel));
  tu_path(top, sizeof(top), dir, "top");
  err_path[0] = '\0';
  m = (struct manifest *)&m;
  assert_err(manifest_build(top, &g_pub, &o, &m), SHOAL_ETOOBIG);
  assert_null(m);
  size_t a = strlen(err_path);
  size_t b = strlen(rel);
  if (a < b || strcmp(err_path + a - b, rel) != 0) {
    print_error("err_path %s does not end with %s\n", err_path, rel);
    fail();
  }
  tu_rmtree(dir);
}

static void test_build_nonexistent_path_is_ENOENT_with_err_path(void **state) {
  char dir[PATH_CAP];
  char p[PATH_CAP];
  char err_path[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  tu_path(p, sizeof(p), dir, "missing/thing");
  for (unsigned threads = 0; threads <= 2; threads += 2) {
    struct manifest_build_opts o = {.threads = threads,
                                    .err_path = err_path,
                                    .err_path_cap = sizeof(err_path)};
    struct manifest *m = (struct manifest *)&m;
    err_path[0] = '\0';
    assert_err(manifest_build(p, &g_pub, &o, &m), UV_ENOENT);
    assert_null(m);
    assert_string_equal(err_path, p);
  }
  /* On a caller's loop the error comes back at once and cb never runs. */
  uv_loop_t loop;
  struct done_rec d = {0};
  struct manifest_builder *b = (struct manifest_builder *)&b;
  struct manifest_build_opts o = {.err_path = err_path,
                                  .err_path_cap = sizeof(err_path)};
  err_path[0] = '\0';
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(manifest_build_start(&loop, p, &g_pub, &o, on_built, &d, &b),
             UV_ENOENT);
  assert_null(b);
  assert_string_equal(err_path, p);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(d.calls, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------- */
/* Content IDs. */

static void test_same_content_gives_same_id_whatever_the_threads(void **state) {
  char dir1[PATH_CAP];
  char dir2[PATH_CAP];
  char top1[PATH_CAP];
  char top2[PATH_CAP];
  (void)state;
  make_tmp(dir1, sizeof(dir1));
  make_tmp(dir2, sizeof(dir2));
  make_tree(dir1);
  make_tree(dir2); /* the same content in another place, made later */
  tu_path(top1, sizeof(top1), dir1, "top");
  tu_path(top2, sizeof(top2), dir2, "top");

  struct manifest_build_opts o0 = {.threads = 0};
  struct manifest_build_opts o2 = {.threads = 2};
  struct manifest *a = build_ok(top1, &g_pub, &o0);
  struct manifest *b = build_ok(top1, &g_pub, &o0);
  struct manifest *c = build_ok(top1, &g_pub, &o2);
  struct manifest *d = build_ok(top2, &g_pub, &o2);
  assert_same_bytes(a, b);
  assert_same_bytes(a, c);
  assert_same_bytes(a, d);

  /* One changed byte changes the ID. */
  uint8_t x[100];
  tu_fill(x, sizeof(x), 3);
  x[42] ^= 0x80;
  tu_write_file(dir2, "top/d/x", x, sizeof(x));
  set_mtime(dir2, "top/d/x", tree_mtime(2), tree_nsec(2));
  struct manifest *e = build_ok(top2, &g_pub, &o0);
  assert_memory_not_equal(a->id, e->id, MANIFEST_ID_BYTES);
  /* "top/d/x" is chunk 1; only its hash changed. */
  assert_memory_equal(a->hashes, e->hashes, MANIFEST_HASH_BYTES);
  assert_memory_not_equal(a->hashes + MANIFEST_HASH_BYTES,
                          e->hashes + MANIFEST_HASH_BYTES, MANIFEST_HASH_BYTES);
  assert_memory_equal(a->hashes + 2 * MANIFEST_HASH_BYTES,
                      e->hashes + 2 * MANIFEST_HASH_BYTES,
                      (size_t)(a->chunk_count - 2) * MANIFEST_HASH_BYTES);

  /* Another publisher makes another content. */
  struct manifest *f = build_ok(top1, &g_other, &o0);
  assert_memory_not_equal(a->id, f->id, MANIFEST_ID_BYTES);
  assert_memory_equal(f->publisher, g_other.pk, IDENTITY_PK_BYTES);
  assert_memory_equal(a->hashes, f->hashes,
                      (size_t)a->chunk_count * MANIFEST_HASH_BYTES);

  /* So does anything else a folder holds, with the same bytes in every
   * file: one nanosecond of one file's modification time, one file's
   * executable bit, one more empty folder. */
  struct manifest *g[3];
  set_mtime(dir1, "top/z.bin", tree_mtime(4), tree_nsec(4) + 1);
  g[0] = build_ok(top1, &g_pub, &o0);
  set_mtime(dir1, "top/z.bin", tree_mtime(4), tree_nsec(4));
  set_mode(dir1, "top/z.bin", 0744);
  g[1] = build_ok(top1, &g_pub, &o0);
  set_mode(dir1, "top/z.bin", 0644);
  make_dir(dir1, "top/one-more");
  g[2] = build_ok(top1, &g_pub, &o0);
  for (int i = 0; i < 3; i++) {
    assert_memory_not_equal(a->id, g[i]->id, MANIFEST_ID_BYTES);
    assert_int_equal(g[i]->chunk_count, a->chunk_count);
    assert_memory_equal(a->hashes, g[i]->hashes,
                        (size_t)a->chunk_count * MANIFEST_HASH_BYTES);
    manifest_free(g[i]);
  }
  char gone[PATH_CAP];
  tu_path(gone, sizeof(gone), dir1, "top/one-more");
  assert_int_equal(rmdir(gone), 0);
  struct manifest *h = build_ok(top1, &g_pub, &o0);
  assert_same_bytes(a, h);
  manifest_free(h);

  manifest_free(a);
  manifest_free(b);
  manifest_free(c);
  manifest_free(d);
  manifest_free(e);
  manifest_free(f);
  tu_rmtree(dir1);
  tu_rmtree(dir2);
}

static void
test_thread_pool_build_of_large_file_equals_inline_build(void **state) {
  char dir[PATH_CAP];
  char p[PATH_CAP];
  const size_t size = 20u << 20;
  struct manifest_build_opts o0;
  struct manifest_build_opts o2;
  struct rec r0;
  struct rec r2;
  (void)state;
  assert_true(size > 2 * MANIFEST_JOB_BYTES); /* at least three jobs */
  make_tmp(dir, sizeof(dir));
  write_filled(dir, "big.bin", size, 99);
  tu_path(p, sizeof(p), dir, "big.bin");

  rec_opts(&o0, &r0);
  rec_opts(&o2, &r2);
  o2.threads = 2;
  struct manifest *a = build_ok(p, &g_pub, &o0);
  struct manifest *b = build_ok(p, &g_pub, &o2);
  assert_same_bytes(a, b);
  assert_int_equal(a->chunk_log2, manifest_choose_chunk_log2(size));
  assert_int_equal(b->chunk_count, size >> b->chunk_log2);

  const struct rec *rs[2] = {&r0, &r2};
  for (int i = 0; i < 2; i++) {
    assert_true(rs[i]->progress_calls >= 3);
    assert_false(rs[i]->went_backwards);
    assert_false(rs[i]->total_changed);
    assert_int_equal(rs[i]->last_done, size);
    assert_int_equal(rs[i]->last_total, size);
  }
  check_chunks_against_disk(b);
  manifest_free(a);
  manifest_free(b);
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------- */
/* Building on the caller's loop. */

/* Files in make_small_files() folders used to time changes and cancels:
 * many more than the jobs a one-thread build keeps queued. */
#define SMALL_FILES 8
#define LAST_SMALL_FILE "top/f7"

/* top/ with n one-kilobyte files: one hashing job per file. */
static void make_small_files(const char *dir, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    char rel[64];
    snprintf(rel, sizeof(rel), "top/f%u", i);
    write_filled(dir, rel, 1024, 100 + i);
  }
}

static void test_build_start_calls_back_once_on_the_loop(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  uv_loop_t loop;
  struct done_rec d = {0};
  struct manifest_builder *b = NULL;
  struct manifest_build_opts o;
  struct rec r;
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_small_files(dir, 4);
  tu_path(top, sizeof(top), dir, "top");
  rec_opts(&o, &r);
  o.threads = 2;

  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(manifest_build_start(&loop, top, &g_pub, &o, on_built, &d, &b), 0);
  assert_non_null(b);
  assert_int_equal(d.calls, 0); /* never inside manifest_build_start() */
  /* The builder keeps its own copy of the options. */
  memset(&o, 0, sizeof(o));
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(d.calls, 1);
  assert_err(d.status, 0);
  assert_non_null(d.m);
  assert_int_equal(d.m->file_count, 4);
  assert_int_equal(r.last_done, 4 * 1024);

  struct manifest *s = build_ok(top, &g_pub, NULL);
  assert_same_bytes(d.m, s);
  manifest_free(s);
  manifest_free(d.m);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

static void
test_build_start_of_empty_content_still_calls_back_later(void **state) {
  char dir[PATH_CAP];
  char p[PATH_CAP];
  uv_loop_t loop;
  struct done_rec d = {0};
  (void)state;
  make_tmp(dir, sizeof(dir));
  tu_write_file(dir, "empty", "", 0);
  tu_path(p, sizeof(p), dir, "empty");
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(manifest_build_start(&loop, p, &g_pub, NULL, on_built, &d, NULL),
             0);
  assert_int_equal(d.calls, 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(d.calls, 1);
  assert_err(d.status, 0);
  assert_non_null(d.m);
  assert_int_equal(d.m->chunk_count, 0);
  manifest_free(d.m);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

static void test_build_cancel_before_the_loop_runs_is_ECANCELED(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_small_files(dir, SMALL_FILES);
  tu_path(top, sizeof(top), dir, "top");
  /* With one thread most jobs are never queued; with many threads all are
   * already in flight and the cancel still wins. */
  const unsigned threads[] = {1, 16};
  for (size_t i = 0; i < 2; i++) {
    uv_loop_t loop;
    struct done_rec d = {0};
    struct manifest_builder *b = NULL;
    struct manifest_build_opts o = {.threads = threads[i]};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_err(manifest_build_start(&loop, top, &g_pub, &o, on_built, &d, &b),
               0);
    assert_non_null(b);
    manifest_build_cancel(b);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(d.calls, 1);
    assert_err(d.status, SHOAL_ECANCELED);
    assert_null(d.m);
    assert_int_equal(uv_loop_close(&loop), 0);
  }
  tu_rmtree(dir);
}

static void test_build_cancel_midway_stops_and_calls_back_once(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  uv_loop_t loop;
  struct done_rec d = {0};
  struct manifest_builder *b = NULL;
  struct manifest_build_opts o;
  struct rec r;
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_small_files(dir, SMALL_FILES);
  tu_path(top, sizeof(top), dir, "top");
  rec_opts(&o, &r);
  o.threads = 1;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(manifest_build_start(&loop, top, &g_pub, &o, on_built, &d, &b), 0);
  r.cancel_on_progress = b; /* the first finished job cancels the rest */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(d.calls, 1);
  assert_err(d.status, SHOAL_ECANCELED);
  assert_null(d.m);
  /* Jobs already queued may finish, but no new one was queued: the build
   * stopped well before the end. */
  assert_true(r.progress_calls >= 1);
  assert_true(r.progress_calls < SMALL_FILES);
  assert_true(r.last_done < r.last_total);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------- */
/* Files that change after the scan. */

static void
test_file_grown_after_scan_is_ECHANGED_on_caller_loop(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  char last[PATH_CAP];
  char err_path[PATH_CAP];
  uv_loop_t loop;
  struct done_rec d = {0};
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_small_files(dir, SMALL_FILES);
  tu_path(top, sizeof(top), dir, "top");
  tu_path(last, sizeof(last), dir, LAST_SMALL_FILE);
  struct manifest_build_opts o = {
      .threads = 1, .err_path = err_path, .err_path_cap = sizeof(err_path)};
  err_path[0] = '\0';
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(manifest_build_start(&loop, top, &g_pub, &o, on_built, &d, NULL),
             0);
  /* The scan is done and the last file's job is not queued yet: it opens
   * the file after the loop runs, and sees another size. */
  append_byte(last);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(d.calls, 1);
  assert_err(d.status, SHOAL_ECHANGED);
  assert_null(d.m);
  assert_string_equal(err_path, last);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

static void
test_file_touched_after_scan_is_ECHANGED_on_caller_loop(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  char last[PATH_CAP];
  char err_path[PATH_CAP];
  uv_loop_t loop;
  struct done_rec d = {0};
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_small_files(dir, SMALL_FILES);
  tu_path(top, sizeof(top), dir, "top");
  tu_path(last, sizeof(last), dir, LAST_SMALL_FILE);
  struct manifest_build_opts o = {
      .threads = 1, .err_path = err_path, .err_path_cap = sizeof(err_path)};
  err_path[0] = '\0';
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_err(manifest_build_start(&loop, top, &g_pub, &o, on_built, &d, NULL),
             0);
  set_old_mtime(last); /* same size and bytes, another mtime */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(d.calls, 1);
  assert_err(d.status, SHOAL_ECHANGED);
  assert_null(d.m);
  assert_string_equal(err_path, last);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

static void test_file_changed_during_blocking_build_is_ECHANGED(void **state) {
  char dir[PATH_CAP];
  char top[PATH_CAP];
  char last[PATH_CAP];
  char err_path[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_small_files(dir, SMALL_FILES);
  tu_path(top, sizeof(top), dir, "top");
  tu_path(last, sizeof(last), dir, LAST_SMALL_FILE);
  /* Inline (threads 0) and on a private loop with one thread: the first
   * job's progress report grows the last file before its job starts. */
  for (unsigned threads = 0; threads <= 1; threads++) {
    struct manifest_build_opts o;
    struct rec r;
    struct manifest *m = (struct manifest *)&m;
    rec_opts(&o, &r);
    o.threads = threads;
    o.err_path = err_path;
    o.err_path_cap = sizeof(err_path);
    err_path[0] = '\0';
    r.append_on_progress = last;
    assert_err(manifest_build(top, &g_pub, &o, &m), SHOAL_ECHANGED);
    assert_null(m);
    assert_string_equal(err_path, last);
    /* Every file but the last one was hashed. */
    assert_int_equal(r.progress_calls, SMALL_FILES - 1);
  }
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------- */
/* Decoding what the builder made. */

static struct manifest *build_tree(char *dir, size_t cap) {
  char top[PATH_CAP];
  make_tmp(dir, cap);
  make_tree(dir);
  tu_path(top, sizeof(top), dir, "top");
  struct manifest_build_opts o = {.chunk_log2 = 14};
  return build_ok(top, &g_pub, &o);
}

static void test_decode_round_trip_gives_equal_fields(void **state) {
  char dir[PATH_CAP];
  (void)state;
  struct manifest *m = build_tree(dir, sizeof(dir));
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
  tu_rmtree(dir);
}

static void test_decode_rejects_every_truncation(void **state) {
  char dir[PATH_CAP];
  (void)state;
  struct manifest *m = build_tree(dir, sizeof(dir));
  for (size_t len = 0; len < m->encoded_len; len++) {
    int err = decode_copy(m->encoded, len);
    if (err == 0) {
      print_error("truncation to %zu bytes accepted\n", len);
    }
    assert_int_not_equal(err, 0);
  }
  /* Too short to hold even an empty manifest. */
  assert_err(decode_copy(m->encoded, 0), SHOAL_ETRUNC);
  assert_err(decode_copy(m->encoded, 100), SHOAL_ETRUNC);
  manifest_free(m);
  tu_rmtree(dir);
}

static void flip_every_bit(const uint8_t *bytes, size_t len) {
  uint8_t *copy = malloc(len);
  assert_non_null(copy);
  for (size_t i = 0; i < len; i++) {
    for (unsigned bit = 0; bit < 8; bit++) {
      memcpy(copy, bytes, len);
      copy[i] ^= (uint8_t)(1u << bit);
      int err = decode_copy(copy, len);
      if (err == 0) {
        print_error("flipped bit %u of byte %zu accepted\n", bit, i);
      }
      assert_int_not_equal(err, 0);
    }
  }
  free(copy);
}

static void test_decode_rejects_a_flipped_bit_anywhere(void **state) {
  char dir[PATH_CAP];
  char p[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  write_filled(dir, "small", 40000, 8);
  tu_path(p, sizeof(p), dir, "small");
  struct manifest *m = build_ok(p, &g_pub, NULL);
  flip_every_bit(m->encoded, m->encoded_len);
  /* The version byte is checked first; everything else is signed. */
  uint8_t *copy = malloc(m->encoded_len);
  assert_non_null(copy);
  memcpy(copy, m->encoded, m->encoded_len);
  copy[0] ^= 0x02;
  assert_err(decode_copy(copy, m->encoded_len), SHOAL_EVERSION);
  memcpy(copy, m->encoded, m->encoded_len);
  copy[40] ^= 0x01; /* inside total_size */
  assert_err(decode_copy(copy, m->encoded_len), SHOAL_EBADSIG);
  memcpy(copy, m->encoded, m->encoded_len);
  copy[m->encoded_len - 1] ^= 0x01; /* inside the signature */
  assert_err(decode_copy(copy, m->encoded_len), SHOAL_EBADSIG);
  free(copy);
  manifest_free(m);

  /* And a folder manifest, whose paths and sizes are signed too. */
  char dir2[PATH_CAP];
  m = build_tree(dir2, sizeof(dir2));
  flip_every_bit(m->encoded, m->encoded_len);
  manifest_free(m);
  tu_rmtree(dir2);
  tu_rmtree(dir);
}

static void test_decode_rejects_one_extra_byte(void **state) {
  char dir[PATH_CAP];
  (void)state;
  struct manifest *m = build_tree(dir, sizeof(dir));
  uint8_t *longer = malloc(m->encoded_len + 1);
  assert_non_null(longer);
  memcpy(longer, m->encoded, m->encoded_len);
  for (int v = 0; v < 256; v += 255) {
    longer[m->encoded_len] = (uint8_t)v;
    assert_err(decode_copy(longer, m->encoded_len + 1), SHOAL_EBADSIG);
  }
  /* A copy of the signature's last byte is no better. */
  longer[m->encoded_len] = m->encoded[m->encoded_len - 1];
  assert_err(decode_copy(longer, m->encoded_len + 1), SHOAL_EBADSIG);
  free(longer);
  manifest_free(m);
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------- */
/* Hand-made canonical bytes: the checks behind the signature. */

static void test_hand_encoder_matches_the_builder(void **state) {
  char dir[PATH_CAP];
  (void)state;
  struct manifest *m = build_tree(dir, sizeof(dir));
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
  tu_rmtree(dir);
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

static void test_decode_refuses_sizes_that_do_not_add_up(void **state) {
  struct hm h;
  (void)state;
  hm_init(&h);
  hm_file(&h, "n/b", 7);
  h.total_set = 1;
  h.total = 11;
  assert_err(hm_decode(&h), SHOAL_ESIZE);
  h.total = 13;
  assert_err(hm_decode(&h), SHOAL_ESIZE);
  h.total = 12;
  assert_err(hm_decode(&h), 0);

  /* A chunk count that differs from the files' layout, with as many hashes
   * as it claims. */
  hm_init(&h);
  h.size[0] = CS14 + 1; /* two chunks */
  h.chunks_set = 1;
  h.chunk_count = 1;
  assert_err(hm_decode(&h), SHOAL_ESIZE);
  h.chunk_count = 3;
  assert_err(hm_decode(&h), SHOAL_ESIZE);
  h.chunk_count = 0;
  assert_err(hm_decode(&h), SHOAL_ESIZE);

  /* The right count with one hash too many or too few. */
  hm_init(&h);
  h.hash_bytes_set = 1;
  h.hash_bytes = 2 * MANIFEST_HASH_BYTES;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  h.hash_bytes = MANIFEST_HASH_BYTES - 1;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  h.hash_bytes = 0;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
}

static void test_decode_refuses_oversize_counts(void **state) {
  struct hm h;
  (void)state;
  hm_init(&h);
  h.count_set = 1;
  h.file_count = MANIFEST_MAX_FILES + 1;
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);
  h.file_count = UINT32_MAX;
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);

  /* A count the remaining bytes could not hold is refused before any file
   * is read: a decoder that allocated and started reading would answer
   * SHOAL_ETRUNC at the second file instead. */
  h.file_count = MANIFEST_MAX_FILES;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  h.file_count = 1000;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);

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
  const uint8_t bad_version[] = {0, 1, 3, 255};
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
  h.signer = &g_other; /* publisher field still says g_pub */
  assert_err(hm_decode(&h), SHOAL_EBADSIG);
  hm_init(&h);
  h.owner = &g_other; /* the other way round */
  assert_err(hm_decode(&h), SHOAL_EBADSIG);
  hm_init(&h);
  h.owner = &g_other;
  h.signer = &g_other;
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

static void test_decode_refuses_too_deep_or_too_long_path(void **state) {
  char deep[2 * (MANIFEST_MAX_DEPTH + 2) + 1];
  struct hm h;
  (void)state;
  /* "n" then MANIFEST_MAX_DEPTH "/d" folders then "/f": the deepest path
   * allowed, MANIFEST_MAX_DEPTH + 2 segments, is one too many. */
  size_t n = 0;
  deep[n++] = 'n';
  for (unsigned i = 0; i < MANIFEST_MAX_DEPTH; i++) {
    deep[n++] = '/';
    deep[n++] = 'd';
  }
  deep[n] = '\0';
  hm_init(&h);
  h.path[0] = deep; /* MANIFEST_MAX_DEPTH + 1 segments */
  assert_err(hm_decode(&h), 0);
  deep[n++] = '/';
  deep[n++] = 'f';
  deep[n] = '\0';
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
  assert_err(decode_copy(orig, len), 0);
  for (unsigned bit = 0; bit < 64; bit++) {
    /* Seconds: every value is a time, and another content. */
    memcpy(b, orig, len);
    b[o.sec + 7 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    uint8_t other[MANIFEST_ID_BYTES];
    assert_err(decode_copy(b, len), 0);
    assert_err(manifest_id_of(b, len, other), 0);
    assert_memory_not_equal(id, other, sizeof(id));
  }
  for (unsigned bit = 0; bit < 32; bit++) {
    /* Nanoseconds: refused at one second and above. */
    memcpy(b, orig, len);
    b[o.nsec + 3 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    uint32_t ns = buf_be32(b + o.nsec);
    assert_err(decode_copy(b, len), ns < 1000000000u ? 0 : SHOAL_EFORMAT);
    /* Folder count: any other count misreads the rest. */
    memcpy(b, orig, len);
    b[o.folder_count + 3 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    if (decode_copy(b, len) == 0) {
      print_error("folder count %u accepted\n", buf_be32(b + o.folder_count));
    }
    assert_int_not_equal(decode_copy(b, len), 0);
  }
  for (unsigned bit = 0; bit < 8; bit++) {
    /* Mode: only the executable bit is defined. */
    memcpy(b, orig, len);
    b[o.mode] ^= (uint8_t)(1u << bit);
    resign(b, len);
    assert_err(decode_copy(b, len), bit == 0 ? 0 : SHOAL_EFORMAT);
  }
  for (unsigned bit = 0; bit < 16; bit++) {
    /* The folder's path length. */
    memcpy(b, orig, len);
    b[o.folder + 1 - bit / 8] ^= (uint8_t)(1u << (bit % 8));
    resign(b, len);
    assert_int_not_equal(decode_copy(b, len), 0);
  }
  /* Without a new signature each of them fails at the signature. */
  const size_t at[] = {o.sec, o.nsec, o.mode, o.folder_count, o.folder + 2};
  for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
    memcpy(b, orig, len);
    b[at[i]] ^= 0x01;
    assert_err(decode_copy(b, len), SHOAL_EBADSIG);
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
  char deep[2 * (MANIFEST_MAX_DEPTH + 2) + 1];
  size_t n = 0;
  deep[n++] = 'n';
  for (unsigned i = 0; i < MANIFEST_MAX_DEPTH; i++) {
    deep[n++] = '/';
    deep[n++] = 'd';
  }
  deep[n] = '\0';
  hm_init(&h);
  hm_folder(&h, deep); /* MANIFEST_MAX_DEPTH + 1 segments */
  assert_err(hm_decode(&h), 0);
  deep[n++] = '/';
  deep[n++] = 'f';
  deep[n] = '\0';
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
  h.folder_count = MANIFEST_MAX_FOLDERS + 1;
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);
  h.folder_count = UINT32_MAX;
  assert_err(hm_decode(&h), SHOAL_ETOOBIG);
  /* A count the remaining bytes cannot hold is refused before anything is
   * allocated for it. */
  h.folder_count = MANIFEST_MAX_FOLDERS;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  h.folder_count = 1000;
  assert_err(hm_decode(&h), SHOAL_EFORMAT);
  /* Counts that misread the rest. */
  h.folder_count = 2;
  assert_int_not_equal(hm_decode(&h), 0);
  h.folder_count = 0;
  assert_int_not_equal(hm_decode(&h), 0);
}

static void test_decode_refuses_version_1_as_such(void **state) {
  struct hm h;
  char vec[PATH_CAP];
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
  assert_err(decode_copy(b, len), SHOAL_EVERSION);
  assert_err(decode_copy(b, 1), SHOAL_EVERSION);
  assert_err(decode_copy(b, 0), SHOAL_ETRUNC);
  free(b);
  /* The version 1 vector that shoal wrote before. */
  tu_vector_path(vec, sizeof(vec), "manifest-v1-folder.bin");
  b = tu_read_file(vec, &len);
  if (b == NULL) {
    print_error("missing vector %s\n", vec);
  }
  assert_non_null(b);
  assert_int_equal(b[0], 1);
  assert_err(decode_copy(b, len), SHOAL_EVERSION);
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
  write_filled(dir, "kat/bin/run", 50, 5);
  write_filled(dir, "kat/data/a.bin", 20000, 1);
  write_filled(dir, "kat/data/empty", 0, 2);
  write_filled(dir, "kat/data-b.bin", 16384, 3);
  write_filled(dir, "kat/z/\xC3\xBC.txt", 100, 4); /* "kat/z/ü.txt" */
  make_dir(dir, "kat/empty");
  make_dir(dir, "kat/nest");
  make_dir(dir, "kat/nest/deep");
  for (size_t i = 0; i < sizeof(kat_paths) / sizeof(kat_paths[0]); i++) {
    set_mode(dir, kat_paths[i], kat_modes[i]);
    set_mtime(dir, kat_paths[i], 1767225600 + (int64_t)i, (long)i);
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
  char dir[PATH_CAP];
  char top[PATH_CAP];
  char vec[PATH_CAP];
  (void)state;
  make_tmp(dir, sizeof(dir));
  make_vector_folder(dir);
  tu_path(top, sizeof(top), dir, "kat");
  tu_vector_path(vec, sizeof(vec), "manifest-folder.bin");
  struct manifest *m = build_ok(top, &g_pub, NULL);
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
  assert_memory_equal(d->publisher, g_pub.pk, IDENTITY_PK_BYTES);
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
   * chunk hash is unkeyed BLAKE2b-256 of the chunk, and the signature is
   * Ed25519 over the domain, its NUL, then the canonical bytes. */
  size_t body = len - IDENTITY_SIG_BYTES;
  uint8_t h[32];
  crypto_generichash(h, sizeof(h), want, body, NULL, 0);
  assert_memory_equal(h, d->id, sizeof(h));
  static const char readme[] = "shoal known-answer manifest\n";
  crypto_generichash(h, sizeof(h), (const uint8_t *)readme, sizeof(readme) - 1,
                     NULL, 0);
  assert_memory_equal(h, d->hashes + 4 * MANIFEST_HASH_BYTES, sizeof(h));
  uint8_t *msg = malloc(sizeof(domain) + body);
  assert_non_null(msg);
  memcpy(msg, domain, sizeof(domain));
  memcpy(msg + sizeof(domain), want, body);
  assert_int_equal(crypto_sign_verify_detached(want + body, msg,
                                               sizeof(domain) + body, g_pub.pk),
                   0);
  free(msg);
  manifest_free(d);
  free(want);
  manifest_free(m);
  tu_rmtree(dir);
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
  char path[PATH_CAP];
  char uname[128];
  assert_err(decode_copy(m->encoded, m->encoded_len), 0);
  corpus_path(path, sizeof(path), name);
  check_or_write(path, m->encoded, m->encoded_len);
  snprintf(uname, sizeof(uname), "%s_unsigned", name);
  corpus_path(path, sizeof(path), uname);
  check_or_write(path, m->encoded, m->encoded_len - IDENTITY_SIG_BYTES);
}

static void test_fuzz_seed_corpus_is_current(void **state) {
  char dir[PATH_CAP];
  char p[PATH_CAP];
  struct identity fuzz_key; /* seed 0x5a * 32, as fuzz_manifest.c */
  (void)state;
  seed_key(&fuzz_key, 0x5a);
  make_tmp(dir, sizeof(dir));
  /* One executable file of three chunks. */
  write_filled(dir, "tool", 40000, 21);
  set_mode(dir, "tool", 0755);
  set_mtime(dir, "tool", 1767225600, 123456789);
  tu_path(p, sizeof(p), dir, "tool");
  struct manifest *m = build_ok(p, &fuzz_key, NULL);
  check_seed("file", m);
  manifest_free(m);
  /* One empty file (no chunk). */
  write_filled(dir, "empty", 0, 22);
  set_mtime(dir, "empty", 0, 0);
  tu_path(p, sizeof(p), dir, "empty");
  m = build_ok(p, &fuzz_key, NULL);
  char path[PATH_CAP];
  corpus_path(path, sizeof(path), "empty_file");
  check_or_write(path, m->encoded, m->encoded_len);
  manifest_free(m);
  /* A folder with files, an executable, empty folders and a non-ASCII
   * name. */
  write_filled(dir, "photos/2024/b c.jpg", 100, 23);
  write_filled(dir, "photos/a.jpg", 20000, 24);
  write_filled(dir, "photos/empty", 0, 25);
  write_filled(dir, "photos/r\xC3\xA9sum\xC3\xA9", 16384, 26);
  write_filled(dir, "photos/bin/show", 10, 27);
  set_mode(dir, "photos/bin/show", 0700);
  make_dir(dir, "photos/2025");
  make_dir(dir, "photos/cache");
  make_dir(dir, "photos/cache/thumbs");
  static const char *const files[] = {
      "photos/2024/b c.jpg", "photos/a.jpg", "photos/empty",
      "photos/r\xC3\xA9sum\xC3\xA9", "photos/bin/show"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    set_mtime(dir, files[i], 1700000000 + (int64_t)i, 0);
  }
  tu_path(p, sizeof(p), dir, "photos");
  m = build_ok(p, &fuzz_key, NULL);
  assert_int_equal(m->folder_count, 2);
  check_seed("folder", m);
  manifest_free(m);
  /* A folder of empty folders only. */
  make_dir(dir, "skeleton");
  make_dir(dir, "skeleton/a");
  make_dir(dir, "skeleton/a/b");
  make_dir(dir, "skeleton/c");
  tu_path(p, sizeof(p), dir, "skeleton");
  m = build_ok(p, &fuzz_key, NULL);
  assert_int_equal(m->file_count, 0);
  check_seed("empty_folders", m);
  manifest_free(m);
  identity_close(&fuzz_key);
  tu_rmtree(dir);
}

int main(void) {
  if (sodium_init() < 0) {
    return 1;
  }
  seed_key(&g_pub, 0x42);
  seed_key(&g_other, 0x17);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build_empty_file_has_no_chunks),
      cmocka_unit_test(test_build_one_byte_file_is_one_short_chunk),
      cmocka_unit_test(test_build_exactly_one_chunk),
      cmocka_unit_test(test_build_one_chunk_plus_one_byte_is_two_chunks),
      cmocka_unit_test(test_build_refuses_bad_chunk_log2_option),
      cmocka_unit_test(test_build_without_opts_works),
      cmocka_unit_test(
          test_build_folder_records_files_sorted_and_skips_specials),
      cmocka_unit_test(test_build_trailing_slash_names_the_folder),
      cmocka_unit_test(test_build_folder_of_empty_folders_lists_the_deepest),
      cmocka_unit_test(test_build_records_the_executable_bit_and_mtime),
      cmocka_unit_test(test_build_refuses_special_file_and_unsafe_name_at_top),
      cmocka_unit_test(test_build_refuses_folders_nested_deeper_than_the_limit),
      cmocka_unit_test(test_build_nonexistent_path_is_ENOENT_with_err_path),
      cmocka_unit_test(test_same_content_gives_same_id_whatever_the_threads),
      cmocka_unit_test(
          test_thread_pool_build_of_large_file_equals_inline_build),
      cmocka_unit_test(test_build_start_calls_back_once_on_the_loop),
      cmocka_unit_test(
          test_build_start_of_empty_content_still_calls_back_later),
      cmocka_unit_test(test_build_cancel_before_the_loop_runs_is_ECANCELED),
      cmocka_unit_test(test_build_cancel_midway_stops_and_calls_back_once),
      cmocka_unit_test(test_file_grown_after_scan_is_ECHANGED_on_caller_loop),
      cmocka_unit_test(test_file_touched_after_scan_is_ECHANGED_on_caller_loop),
      cmocka_unit_test(test_file_changed_during_blocking_build_is_ECHANGED),
      cmocka_unit_test(test_decode_round_trip_gives_equal_fields),
      cmocka_unit_test(test_decode_rejects_every_truncation),
      cmocka_unit_test(test_decode_rejects_a_flipped_bit_anywhere),
      cmocka_unit_test(test_decode_rejects_one_extra_byte),
      cmocka_unit_test(test_hand_encoder_matches_the_builder),
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
      cmocka_unit_test(test_known_answer_vector_folder),
      cmocka_unit_test(test_fuzz_seed_corpus_is_current),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  identity_close(&g_pub);
  identity_close(&g_other);
  return failed;
}
