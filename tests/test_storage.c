/* Tests for peer/storage: downloads into a partial copy, the resume record,
 * the final rename, and read-only sources.
 *
 * Every test runs a real libuv loop: an API call queues work, and the test
 * runs the loop one iteration at a time until the callback it waits for has
 * fired (run_until). Each test checks that callbacks never fire inside the
 * call that started them, and ends with uv_loop_close() == 0 in teardown,
 * so a storage that leaked a handle or a request fails the test.
 *
 * Contents are built with manifest_build() from files written with
 * tu_write_file/tu_fill, with 16 KiB chunks so that small files have
 * several chunks, and signed by a key from a fixed seed.
 */
/* O_DIRECT, for the probe of the page-cache test. */
#define _GNU_SOURCE

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "common/pwire.h"
#include "peer/manifest_build.h"
#include "peer/storage.h"
#include "tests/lib/disk.h"
#include "tests/lib/errassert.h"
#include "tests/lib/testutil.h"

#define CS ((size_t)1 << 14) /* chunk size of every test content */
#define PATH_CAP 4096

static struct identity g_pub;

struct fx {
  char root[PATH_CAP];
  char src[PATH_CAP];  /* shared files live here */
  char dl[PATH_CAP];   /* downloads go here */
  char rec[PATH_CAP];  /* the resume record */
  char disk[PATH_CAP]; /* where a small ext4 file system is mounted */
  int mounted;
  pid_t child; /* a forked storage user, killed at teardown; else 0 */
  uv_loop_t loop;
};

static void unmount_disk(struct fx *f);

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  char tmp[PATH_CAP];
  assert_non_null(f);
  tu_tmpdir(tmp, sizeof(tmp));
  /* Resolved, so that paths compare with a manifest's local_root. */
  assert_non_null(realpath(tmp, f->root));
  tu_path(f->src, sizeof(f->src), f->root, "src");
  tu_path(f->dl, sizeof(f->dl), f->root, "dl");
  tu_path(f->rec, sizeof(f->rec), f->root, "resume");
  assert_int_equal(mkdir(f->src, 0755), 0);
  assert_int_equal(mkdir(f->dl, 0755), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  /* First, so that a failed test leaves no process or mount behind. */
  if (f->child > 0) {
    kill(f->child, SIGKILL);
    waitpid(f->child, NULL, 0);
  }
  unmount_disk(f);
  /* Nothing may be left on the loop: no handle, no request. */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tu_rmtree(f->root);
  free(f);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Helpers */

/* Runs the loop until *flag is set; fails if the loop runs dry first. */
static void run_until(uv_loop_t *loop, const int *flag) {
  while (!*flag) {
    int alive = uv_run(loop, UV_RUN_ONCE);
    if (!*flag && !alive) {
      fail_msg("the loop ran out of work before the callback came");
    }
  }
}

struct done {
  int called;
  int status;
  int order; /* when it was called, from a shared counter */
  int *counter;
};

static void on_done(void *arg, int status) {
  struct done *d = arg;
  d->called++;
  d->status = status;
  if (d->counter != NULL) {
    d->order = ++*d->counter;
  }
}

struct got {
  int called;
  int status;
  uint8_t *data;
  size_t len;
};

static void on_read(void *arg, int status, uint8_t *data, size_t len) {
  struct got *g = arg;
  g->called++;
  g->status = status;
  g->data = data;
  g->len = len;
}

static struct manifest *build_log2(const char *path, uint8_t chunk_log2) {
  struct manifest_build_opts o;
  struct manifest *m = NULL;
  memset(&o, 0, sizeof(o));
  o.chunk_log2 = chunk_log2;
  assert_int_equal(manifest_build(path, &g_pub, &o, &m), 0);
  return m;
}

static struct manifest *build(const char *path) {
  return build_log2(path, 14);
}

/* Writes a file of len pseudo-random bytes under the source folder. */
static void make_file(struct fx *f, const char *rel, size_t len,
                      uint64_t seed) {
  uint8_t *p = malloc(len > 0 ? len : 1);
  assert_non_null(p);
  tu_fill(p, len, seed);
  tu_write_file(f->src, rel, p, len);
  free(p);
}

/* Where a content lives: its source, and its partial copy and final path
 * in the folder it is downloaded into. */
struct paths {
  char src[PATH_CAP];
  char part[PATH_CAP];
  char fin[PATH_CAP];
};

/* Builds the manifest of the content f->src/name, whose files are already
 * written, and fills p for a download of it into dir. */
static struct manifest *build_named(struct fx *f, const char *name,
                                    const char *dir, struct paths *p) {
  char rel[PATH_CAP];
  snprintf(rel, sizeof(rel), "%s%s", name, STORAGE_PART_SUFFIX);
  tu_path(p->src, sizeof(p->src), f->src, name);
  tu_path(p->part, sizeof(p->part), dir, rel);
  tu_path(p->fin, sizeof(p->fin), dir, name);
  return build(p->src);
}

/* A copy of chunk idx in a storage_chunk_alloc buffer, read from the
 * source files. */
static uint8_t *chunk_copy(const struct manifest *m, uint32_t idx) {
  char path[PATH_CAP];
  uint32_t file;
  uint64_t off;
  size_t n;
  assert_int_equal(manifest_chunk_file(m, idx, &file, &off), 0);
  tu_path(path, sizeof(path), m->local_root, m->files[file].path);
  uint8_t *all = tu_read_file(path, &n);
  assert_non_null(all);
  uint32_t len = manifest_chunk_len(m, idx);
  assert_true(off + len <= n);
  uint8_t *c = storage_chunk_alloc(len);
  assert_non_null(c);
  assert_int_equal((uintptr_t)c % STORAGE_DIRECT_ALIGN, 0);
  memcpy(c, all + off, len);
  free(all);
  return c;
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* Waits for the callback of a call that was just made: never inside the
 * call, then exactly once. */
static void await_done(struct fx *f, struct done *d) {
  assert_int_equal(d->called, 0); /* never inside the call */
  run_until(&f->loop, &d->called);
  assert_int_equal(d->called, 1);
}

/* Opens a download of m into dir with the resume record at rec, and
 * waits for the open callback, whose status must be want. */
static struct storage *open_at(struct fx *f, const struct manifest *m,
                               const char *dir, const char *rec, int want) {
  struct storage *s = NULL;
  struct done d = {0};
  assert_int_equal(
      storage_open_download(&s, &f->loop, m, dir, rec, on_done, &d), 0);
  assert_non_null(s);
  await_done(f, &d);
  assert_err(d.status, want);
  return s;
}

/* The same into the download folder, with the usual record. */
static struct storage *open_dl(struct fx *f, const struct manifest *m,
                               int want) {
  return open_at(f, m, f->dl, f->rec, want);
}

static struct storage *open_src(struct fx *f, const struct manifest *m) {
  struct storage *s = NULL;
  assert_int_equal(storage_open_source(&s, &f->loop, m), 0);
  return s;
}

static void put(struct fx *f, struct storage *s, uint32_t idx, uint8_t *data,
                int want) {
  struct done d = {0};
  assert_int_equal(storage_put_chunk(s, idx, data, on_done, &d), 0);
  await_done(f, &d);
  assert_err(d.status, want);
}

static void put_good(struct fx *f, struct storage *s, const struct manifest *m,
                     uint32_t idx) {
  put(f, s, idx, chunk_copy(m, idx), 0);
  assert_true(storage_have(s, idx));
}

/* Puts every chunk from first on. */
static void put_from(struct fx *f, struct storage *s, const struct manifest *m,
                     uint32_t first) {
  for (uint32_t i = first; i < m->chunk_count; i++) {
    put_good(f, s, m, i);
  }
}

/* Puts every chunk the storage does not have yet. */
static void put_missing(struct fx *f, struct storage *s,
                        const struct manifest *m) {
  for (uint32_t i = 0; i < m->chunk_count; i++) {
    if (!storage_have(s, i)) {
      put_good(f, s, m, i);
    }
  }
}

static int finish(struct fx *f, struct storage *s) {
  struct done d = {0};
  assert_int_equal(storage_finish(s, on_done, &d), 0);
  await_done(f, &d);
  return d.status;
}

static int close_status(struct fx *f, struct storage *s) {
  struct done d = {0};
  storage_close(s, on_done, &d);
  await_done(f, &d);
  return d.status;
}

static void close_s(struct fx *f, struct storage *s) {
  assert_err(close_status(f, s), 0);
}

/* Reads len bytes at off in chunk idx into g and waits for the callback. */
static void read_block(struct fx *f, struct storage *s, uint32_t idx,
                       uint32_t off, uint32_t len, struct got *g) {
  assert_int_equal(storage_read(s, idx, off, len, on_read, g), 0);
  assert_int_equal(g->called, 0);
  run_until(&f->loop, &g->called);
}

/* The same, for a read that must succeed; the caller frees the bytes. */
static uint8_t *read_ok(struct fx *f, struct storage *s, uint32_t idx,
                        uint32_t off, uint32_t len) {
  struct got g = {0};
  read_block(f, s, idx, off, len, &g);
  assert_err(g.status, 0);
  assert_int_equal(g.len, len);
  return g.data;
}

/* The bytes at off..off+len of chunk idx read back equal the source's. */
static void assert_reads_back(struct fx *f, struct storage *s,
                              const struct manifest *m, uint32_t idx,
                              uint32_t off, uint32_t len) {
  uint8_t *got = read_ok(f, s, idx, off, len);
  uint8_t *c = chunk_copy(m, idx);
  assert_memory_equal(got, c + off, len);
  storage_chunk_free(c);
  free(got);
}

/* The file at path holds exactly the len bytes at want. */
static void assert_file_is(const char *path, const void *want, size_t len) {
  size_t n;
  uint8_t *p = tu_read_file(path, &n);
  assert_non_null(p);
  assert_int_equal(n, len);
  assert_memory_equal(p, want, n);
  free(p);
}

static void assert_same_file(const char *a, const char *b) {
  size_t na;
  uint8_t *pa = tu_read_file(a, &na);
  assert_non_null(pa);
  assert_file_is(b, pa, na);
  free(pa);
}

/* Every file of m arrived in the download folder with its source's bytes. */
static void assert_files_arrived(const struct fx *f, const struct manifest *m) {
  for (uint32_t i = 0; i < m->file_count; i++) {
    char a[PATH_CAP];
    char b[PATH_CAP];
    tu_path(a, sizeof(a), f->src, m->files[i].path);
    tu_path(b, sizeof(b), f->dl, m->files[i].path);
    assert_same_file(a, b);
  }
}

/* The file at path is len bytes long and all zero; what names the case. */
static void assert_all_zero(const char *path, size_t len, const char *what) {
  size_t n;
  uint8_t *disk = tu_read_file(path, &n);
  assert_non_null(disk);
  assert_int_equal(n, len);
  for (size_t i = 0; i < n; i++) {
    if (disk[i] != 0) {
      fail_msg("%s: byte %zu of the partial file is not zero", what, i);
    }
  }
  free(disk);
}

/* How many regular files, folders and other things a tree holds. */
struct tree_count {
  int files;
  int dirs;
  int other;
};

static void count_into(const char *path, struct tree_count *c) {
  DIR *d = opendir(path);
  struct dirent *e;
  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    char child[PATH_CAP];
    struct stat st;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
      continue;
    }
    tu_path(child, sizeof(child), path, e->d_name);
    assert_int_equal(lstat(child, &st), 0);
    if (S_ISREG(st.st_mode)) {
      c->files++;
    } else if (S_ISDIR(st.st_mode)) {
      c->dirs++;
      count_into(child, c);
    } else {
      c->other++;
    }
  }
  closedir(d);
}

/* Counts what is under path (not path itself). */
static struct tree_count count_tree(const char *path) {
  struct tree_count c = {0};
  count_into(path, &c);
  return c;
}

/* Flips one byte of a file in place. */
static void flip_byte(const char *path, long off) {
  FILE *fp = fopen(path, "r+b");
  assert_non_null(fp);
  assert_int_equal(fseek(fp, off, SEEK_SET), 0);
  int c = fgetc(fp);
  assert_true(c != EOF);
  assert_int_equal(fseek(fp, off, SEEK_SET), 0);
  assert_int_equal(fputc(c ^ 0x5a, fp), c ^ 0x5a);
  assert_int_equal(fclose(fp), 0);
}

static void shuffle(uint32_t *v, uint32_t n, uint64_t seed) {
  uint64_t x = seed;
  for (uint32_t i = n; i > 1; i--) {
    x = x * 6364136223846793005u + 1442695040888963407u;
    uint32_t j = (uint32_t)((x >> 33) % i);
    uint32_t t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}

/* ---------------------------------------------------------------------- */
/* Downloads */

static void
test_file_download_in_random_order_appears_only_at_finish(void **state) {
  struct fx *f = *state;
  struct paths p;
  struct stat st;

  make_file(f, "movie.bin", 5 * CS + 1000, 1);
  struct manifest *m = build_named(f, "movie.bin", f->dl, &p);
  assert_int_equal(m->chunk_count, 6);

  struct storage *s = open_dl(f, m, 0);
  assert_string_equal(storage_final_path(s), p.fin);
  assert_int_equal(storage_have_count(s), 0);
  /* The partial file is preallocated to full size. */
  assert_int_equal(stat(p.part, &st), 0);
  assert_int_equal((uint64_t)st.st_size, m->total_size);
  assert_false(exists(p.fin));

  uint32_t order[6] = {0, 1, 2, 3, 4, 5};
  shuffle(order, 6, 7);
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < 6; i++) {
    assert_false(storage_have(s, order[i]));
    put_good(f, s, m, order[i]);
    bytes += manifest_chunk_len(m, order[i]);
    assert_int_equal(storage_have_count(s), i + 1);
    assert_int_equal(storage_have_bytes(s), bytes);
    assert_false(exists(p.fin)); /* never before finish */
  }
  /* A chunk already had completes with 0, later, and takes the data. */
  put(f, s, 3, chunk_copy(m, 3), 0);
  assert_int_equal(storage_have_count(s), 6);

  assert_err(finish(f, s), 0);
  assert_true(exists(p.fin));
  assert_false(exists(p.part));
  assert_false(exists(f->rec));
  assert_same_file(p.src, p.fin);
  /* Finishing twice is refused. */
  assert_err(storage_finish(s, on_done, NULL), SHOAL_EINVAL);
  close_s(f, s);
  assert_false(exists(f->rec)); /* no record after a finished download */
  assert_same_file(p.src, p.fin);
  manifest_free(m);
}

static void test_folder_download_arrives_exactly(void **state) {
  struct fx *f = *state;
  static const struct {
    const char *rel;
    size_t len;
  } files[] = {
      {"photos/a.bin", 40000},
      {"photos/empty.txt", 0},
      {"photos/sub/b.bin", 16384},
      {"photos/sub/deeper/c.bin", 1},
      {"photos/sub/deeper/also-empty", 0},
      {"photos/z/e.bin", 30000},
  };
  const size_t nfiles = sizeof(files) / sizeof(files[0]);
  struct paths p;

  for (size_t i = 0; i < nfiles; i++) {
    make_file(f, files[i].rel, files[i].len, 100 + i);
  }
  struct manifest *m = build_named(f, "photos", f->dl, &p);
  assert_int_equal(m->file_count, nfiles);

  struct storage *s = open_dl(f, m, 0);
  /* Every file is there at full size from the start, the empty ones too,
   * under the partial folder without the leading "photos/". */
  for (uint32_t i = 0; i < m->file_count; i++) {
    char in_part[PATH_CAP];
    struct stat st;
    tu_path(in_part, sizeof(in_part), p.part,
            m->files[i].path + strlen("photos/"));
    assert_int_equal(lstat(in_part, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal((uint64_t)st.st_size, m->files[i].size);
  }
  uint32_t n = m->chunk_count;
  uint32_t *order = malloc(n * sizeof(*order));
  assert_non_null(order);
  for (uint32_t i = 0; i < n; i++) {
    order[i] = i;
  }
  shuffle(order, n, 3);
  for (uint32_t i = 0; i < n; i++) {
    put_good(f, s, m, order[i]);
    assert_false(exists(p.fin));
  }
  free(order);
  assert_int_equal(storage_have_bytes(s), m->total_size);
  assert_err(finish(f, s), 0);
  assert_false(exists(p.part));

  for (size_t i = 0; i < nfiles; i++) {
    char a[PATH_CAP];
    char b[PATH_CAP];
    tu_path(a, sizeof(a), f->src, files[i].rel);
    tu_path(b, sizeof(b), f->dl, files[i].rel);
    assert_same_file(a, b);
  }
  struct tree_count c = count_tree(p.fin);
  assert_int_equal(c.files, (int)nfiles);
  assert_int_equal(c.dirs, 3); /* sub, sub/deeper, z */
  assert_int_equal(c.other, 0);
  /* A block read after the rename comes from the final copy. */
  assert_reads_back(f, s, m, 0, 10, 100);
  close_s(f, s);
  manifest_free(m);
}

static void test_wrong_chunk_is_EHASH_and_nothing_is_written(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "f.bin", 3 * CS, 2);
  struct manifest *m = build_named(f, "f.bin", f->dl, &p);
  struct storage *s = open_dl(f, m, 0);

  uint8_t *bad = chunk_copy(m, 1);
  bad[CS / 2] ^= 1;
  put(f, s, 1, bad, SHOAL_EHASH);
  /* The data of another chunk is wrong for this one too. */
  put(f, s, 1, chunk_copy(m, 0), SHOAL_EHASH);
  assert_false(storage_have(s, 1));
  assert_int_equal(storage_have_count(s), 0);
  assert_all_zero(p.part, 3 * CS, "after two bad chunks");

  /* Bad calls: nothing is taken, no callback comes. */
  uint8_t *keep = chunk_copy(m, 0);
  assert_err(storage_put_chunk(s, 3, keep, on_done, NULL), SHOAL_EINVAL);
  assert_err(storage_put_chunk(s, 0, NULL, on_done, NULL), SHOAL_EINVAL);
  storage_chunk_free(keep);
  /* Reading a chunk not had is refused. */
  assert_err(storage_read(s, 1, 0, 10, on_read, NULL), SHOAL_EINVAL);
  assert_err(storage_finish(s, on_done, NULL), SHOAL_EINVAL);

  /* The right data afterwards is accepted. */
  put_good(f, s, m, 1);
  close_s(f, s);
  manifest_free(m);
}

/* Puts data as chunk idx with storage_put_chunk_or_hash_blocks and waits;
 * bad_hashes as the caller's table. */
static void put_or_hash(struct fx *f, struct storage *s, uint32_t idx,
                        uint8_t *data, uint8_t *bad_hashes, int want) {
  struct done d = {0};
  assert_int_equal(storage_put_chunk_or_hash_blocks(s, idx, data, bad_hashes,
                                                    NULL, NULL, on_done, &d),
                   0);
  await_done(f, &d);
  assert_err(d.status, want);
}

/* A chunk that fails its hash reports the BLAKE2b-256 of each of its
 * blocks (the last one shorter), so that the sender of a bad block can be
 * found once a good copy arrives; a good chunk leaves the table alone. */
static void test_failed_chunk_reports_each_blocks_hash(void **state) {
  struct fx *f = *state;
  char src[PATH_CAP];
  const size_t big = (size_t)1 << 18; /* 4 blocks of STORAGE_BLOCK_BYTES */
  const size_t tail = STORAGE_BLOCK_BYTES + 100; /* 2, the last 100 bytes */
  uint8_t table[4 * 32];

  make_file(f, "blocks.bin", big + tail, 21);
  tu_path(src, sizeof(src), f->src, "blocks.bin");
  struct manifest *m = build_log2(src, 18);
  assert_int_equal(m->chunk_count, 2);
  struct storage *s = open_dl(f, m, 0);

  for (uint32_t idx = 0; idx < 2; idx++) {
    const uint32_t len = manifest_chunk_len(m, idx);
    const uint32_t blocks =
        (len + STORAGE_BLOCK_BYTES - 1) / STORAGE_BLOCK_BYTES;
    uint8_t *bad = chunk_copy(m, idx);
    bad[len - 1] ^= 0x40; /* in the last block */
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, bad, len);
    memset(table, 0xee, sizeof(table));
    put_or_hash(f, s, idx, bad, table, SHOAL_EHASH);
    assert_false(storage_have(s, idx));
    for (uint32_t b = 0; b < blocks; b++) {
      uint32_t off = b * STORAGE_BLOCK_BYTES;
      uint32_t n =
          len - off < STORAGE_BLOCK_BYTES ? len - off : STORAGE_BLOCK_BYTES;
      uint8_t want[32];
      crypto_generichash(want, sizeof(want), copy + off, n, NULL, 0);
      assert_memory_equal(table + (size_t)b * 32, want, 32);
    }
    for (size_t i = (size_t)blocks * 32; i < sizeof(table); i++) {
      assert_int_equal(table[i], 0xee); /* nothing past the last block */
    }
    free(copy);

    memset(table, 0xee, sizeof(table));
    put_or_hash(f, s, idx, chunk_copy(m, idx), table, 0);
    assert_true(storage_have(s, idx));
    for (size_t i = 0; i < sizeof(table); i++) {
      assert_int_equal(table[i], 0xee);
    }
  }
  close_s(f, s);
  manifest_free(m);
}

/* Seals each block of buf (chunk idx, len bytes) as a DATA frame from tx
 * and takes it in as a receiver that opens later (pwire_open_defer): buf
 * then holds ciphertext and rec one record a block. Block plain (or -1)
 * is left as plaintext, with no record, as a block the loop opened. */
static void seal_blocks(struct pwire_session *tx, struct pwire_session *rx,
                        uint32_t idx, uint8_t *buf, uint32_t len,
                        struct pwire_sealed *rec, int plain) {
  uint8_t *msg = malloc(PWIRE_DATA_HEAD_BYTES + STORAGE_BLOCK_BYTES + 16);
  uint8_t head[PWIRE_DATA_HEAD_BYTES];
  assert_non_null(msg);
  for (uint32_t i = 0, off = 0; off < len; i++, off += STORAGE_BLOCK_BYTES) {
    uint32_t n =
        len - off < STORAGE_BLOCK_BYTES ? len - off : STORAGE_BLOCK_BYTES;
    size_t flen = PWIRE_DATA_HEAD_BYTES + n + PWIRE_TAG_BYTES;
    memset(&rec[i], 0, sizeof(rec[i]));
    if ((int)i == plain) {
      continue;
    }
    assert_int_equal(pwire_data_head_encode(msg, idx, off, n), 0);
    memcpy(msg + PWIRE_DATA_HEAD_BYTES, buf + off, n);
    assert_int_equal(pwire_seal_inplace(tx, msg, PWIRE_DATA_HEAD_BYTES + n), 0);
    assert_int_equal(pwire_open_head(rx, msg, flen, head, sizeof(head)), 0);
    assert_int_equal(pwire_open_defer(rx, msg, flen, buf + off, &rec[i]),
                     (int)(PWIRE_DATA_HEAD_BYTES + n));
  }
  free(msg);
}

static void put_sealed(struct fx *f, struct storage *s, uint32_t idx,
                       uint8_t *data, struct pwire_sealed *rec,
                       uint8_t *unopened, int want) {
  struct done d = {0};
  assert_int_equal(storage_put_chunk_or_hash_blocks(s, idx, data, NULL, rec,
                                                    unopened, on_done, &d),
                   0);
  await_done(f, &d);
  assert_err(d.status, want);
}

/* A chunk whose blocks came still encrypted (pwire_open_defer) is opened
 * on the thread pool before its hash: genuine blocks, mixed with one
 * opened already, make the chunk; a flipped bit in one block's ciphertext,
 * or two blocks' records swapped, fail the put with nothing written and
 * name exactly those blocks; the records are wiped either way. */
static void test_sealed_blocks_open_before_the_hash(void **state) {
  struct fx *f = *state;
  char src[PATH_CAP];
  const size_t size = ((size_t)2 << 18) + 1000; /* 256 KiB chunks: 2 + tail */
  struct pwire_eph ea, eb;
  struct pwire_session tx, rx;
  struct pwire_sealed rec[4], zero;
  uint8_t unopened[4];

  memset(&zero, 0, sizeof(zero));
  make_file(f, "sealed.bin", size, 33);
  tu_path(src, sizeof(src), f->src, "sealed.bin");
  struct manifest *m = build_log2(src, 18);
  assert_int_equal(m->chunk_count, 3);
  struct storage *s = open_dl(f, m, 0);
  pwire_eph_generate(&ea);
  pwire_eph_generate(&eb);
  assert_int_equal(pwire_session_init(&tx, &ea, eb.pk, 1), 0);
  assert_int_equal(pwire_session_init(&rx, &eb, ea.pk, 0), 0);

  /* Sealed blocks without a table for the ones that fail: refused. */
  uint8_t *c = chunk_copy(m, 0);
  assert_err(
      storage_put_chunk_or_hash_blocks(s, 0, c, NULL, rec, NULL, on_done, NULL),
      SHOAL_EINVAL);

  /* Genuine, block 2 opened already. */
  seal_blocks(&tx, &rx, 0, c, 1u << 18, rec, 2);
  memset(unopened, 0, sizeof(unopened));
  put_sealed(f, s, 0, c, rec, unopened, 0);
  assert_true(storage_have(s, 0));
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(unopened[i], 0);
    assert_memory_equal(&rec[i], &zero, sizeof(zero));
  }

  /* One bit of block 1's ciphertext flipped. */
  c = chunk_copy(m, 1);
  seal_blocks(&tx, &rx, 1, c, 1u << 18, rec, -1);
  c[STORAGE_BLOCK_BYTES + 5] ^= 0x10;
  memset(unopened, 0, sizeof(unopened));
  put_sealed(f, s, 1, c, rec, unopened, SHOAL_EBADSIG);
  assert_false(storage_have(s, 1));
  assert_int_equal(unopened[0], 0);
  assert_int_equal(unopened[1], 1);
  assert_int_equal(unopened[2], 0);
  assert_int_equal(unopened[3], 0);
  for (unsigned i = 0; i < 4; i++) {
    assert_memory_equal(&rec[i], &zero, sizeof(zero));
  }

  /* Blocks 0 and 3 genuine, each filed under the other. */
  c = chunk_copy(m, 1);
  seal_blocks(&tx, &rx, 1, c, 1u << 18, rec, -1);
  uint8_t *tmp = malloc(STORAGE_BLOCK_BYTES);
  assert_non_null(tmp);
  memcpy(tmp, c, STORAGE_BLOCK_BYTES);
  memcpy(c, c + 3 * STORAGE_BLOCK_BYTES, STORAGE_BLOCK_BYTES);
  memcpy(c + 3 * STORAGE_BLOCK_BYTES, tmp, STORAGE_BLOCK_BYTES);
  free(tmp);
  struct pwire_sealed t = rec[0];
  rec[0] = rec[3];
  rec[3] = t;
  memset(unopened, 0, sizeof(unopened));
  put_sealed(f, s, 1, c, rec, unopened, SHOAL_EPROTO);
  assert_false(storage_have(s, 1));
  assert_int_equal(unopened[0], 1);
  assert_int_equal(unopened[1], 0);
  assert_int_equal(unopened[2], 0);
  assert_int_equal(unopened[3], 1);

  /* The chunk sent again, genuine, and the short last chunk. */
  c = chunk_copy(m, 1);
  seal_blocks(&tx, &rx, 1, c, 1u << 18, rec, -1);
  memset(unopened, 0, sizeof(unopened));
  put_sealed(f, s, 1, c, rec, unopened, 0);
  assert_true(storage_have(s, 1));
  c = chunk_copy(m, 2);
  seal_blocks(&tx, &rx, 2, c, manifest_chunk_len(m, 2), rec, -1);
  assert_int_equal(rec[0].len, 1000);
  memset(unopened, 0, sizeof(unopened));
  put_sealed(f, s, 2, c, rec, unopened, 0);
  assert_true(storage_have(s, 2));

  pwire_session_close(&tx);
  pwire_session_close(&rx);
  pwire_eph_close(&ea);
  pwire_eph_close(&eb);
  close_s(f, s);
  manifest_free(m);
}

/* Pages of [off, off + len) of the file at path that are in the page
 * cache. */
static size_t resident_pages(const char *path, size_t off, size_t len) {
  long page = sysconf(_SC_PAGESIZE);
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  void *map = mmap(NULL, off + len, PROT_READ, MAP_SHARED, fd, 0);
  assert_true(map != MAP_FAILED);
  size_t pages = (off + len + (size_t)page - 1) / (size_t)page;
  unsigned char *vec = malloc(pages);
  assert_non_null(vec);
  assert_int_equal(mincore(map, off + len, vec), 0);
  size_t n = 0;
  for (size_t i = off / (size_t)page; i < pages; i++) {
    n += vec[i] & 1;
  }
  free(vec);
  munmap(map, off + len);
  close(fd);
  return n;
}

/* A chunk whose buffer, offset and length are aligned goes to the disk
 * without passing through the page cache; the unaligned tail of the last
 * chunk goes through it; reads see both. */
static void test_aligned_chunks_bypass_the_page_cache(void **state) {
  struct fx *f = *state;
  struct paths p;
  char probe[PATH_CAP];

  tu_path(probe, sizeof(probe), f->dl, "probe");
  int pfd = open(probe, O_WRONLY | O_CREAT | O_DIRECT, 0600);
  if (pfd < 0) {
    skip(); /* this file system takes no O_DIRECT: writes go buffered */
  }
  close(pfd);
  unlink(probe);

  make_file(f, "v.bin", 4 * CS + 100, 40);
  struct manifest *m = build_named(f, "v.bin", f->dl, &p);
  struct storage *s = open_dl(f, m, 0);
  put_good(f, s, m, 0);
  put_good(f, s, m, 4);
  assert_int_equal(resident_pages(p.part, 0, CS), 0);
  assert_true(resident_pages(p.part, 4 * CS, 100) > 0);
  /* A read after the direct write sees the chunk's bytes. */
  assert_reads_back(f, s, m, 0, 0, CS);
  for (uint32_t i = 1; i < 4; i++) {
    put_good(f, s, m, i);
  }
  assert_err(finish(f, s), 0);
  assert_same_file(p.src, p.fin);
  close_s(f, s);
  manifest_free(m);
}

/* A chunk buffer is aligned and usable to its last byte; sizes that do not
 * fit are refused. */
static void test_chunk_buffers(void **state) {
  (void)state;
  size_t sizes[] = {1, 100, 4096, 4097, 16384, 524288 + 3};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uint8_t *p = storage_chunk_alloc(sizes[i]);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % STORAGE_DIRECT_ALIGN, 0);
    memset(p, 0xa5, sizes[i]);
    storage_chunk_free(p);
  }
  assert_null(storage_chunk_alloc(0));
  assert_null(storage_chunk_alloc(SIZE_MAX));
  storage_chunk_free(NULL);
}

static void
test_existing_final_path_is_EEXIST_and_nothing_touched(void **state) {
  struct fx *f = *state;
  struct paths p;
  static const uint8_t mine[] = "the user's own file";

  make_file(f, "doc.bin", 2 * CS, 3);
  struct manifest *m = build_named(f, "doc.bin", f->dl, &p);

  /* A file in the way. */
  tu_write_file(f->dl, "doc.bin", mine, sizeof(mine));
  struct storage *s = open_dl(f, m, UV_EEXIST);
  assert_int_equal(storage_have_count(s), 0);
  uint8_t *c = chunk_copy(m, 0);
  assert_err(storage_put_chunk(s, 0, c, on_done, NULL), SHOAL_EINVAL);
  storage_chunk_free(c);
  close_s(f, s);
  assert_false(exists(p.part));
  assert_false(exists(f->rec));
  assert_file_is(p.fin, mine, sizeof(mine));
  assert_int_equal(unlink(p.fin), 0);

  /* A dangling symlink in the way counts too, and is not followed. */
  char target[PATH_CAP];
  tu_path(target, sizeof(target), f->root, "nowhere");
  assert_int_equal(symlink(target, p.fin), 0);
  s = open_dl(f, m, UV_EEXIST);
  close_s(f, s);
  assert_false(exists(target));
  assert_false(exists(p.part));
  assert_int_equal(unlink(p.fin), 0);

  /* A folder in the way. */
  assert_int_equal(mkdir(p.fin, 0755), 0);
  s = open_dl(f, m, UV_EEXIST);
  close_s(f, s);
  assert_false(exists(p.part));
  manifest_free(m);
}

static void test_missing_download_folder_fails_cleanly(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "x.bin", 100, 4);
  struct manifest *m = build_named(f, "x.bin", f->dl, &p);
  char nodir[PATH_CAP];
  tu_path(nodir, sizeof(nodir), f->root, "no-such-folder");
  struct storage *s = open_at(f, m, nodir, f->rec, UV_ENOENT);
  close_s(f, s);
  manifest_free(m);
}

static void test_unsafe_manifest_path_is_EPATH(void **state) {
  struct fx *f = *state;
  struct paths p;
  struct storage *s = NULL;
  static const char *const bad[] = {
      "pics/../../escape", "pics/./a", "pics//a", "/etc/passwd",
      "other/a",           "pics",     "pics/",   "picsx/a",
  };

  make_file(f, "pics/a", 100, 5);
  make_file(f, "pics/b", 100, 6);
  struct manifest *m = build_named(f, "pics", f->dl, &p);
  char *orig = m->files[0].path;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    m->files[0].path = (char *)(uintptr_t)bad[i];
    assert_err(
        storage_open_download(&s, &f->loop, m, f->dl, f->rec, on_done, NULL),
        SHOAL_EPATH);
    assert_null(s);
  }
  m->files[0].path = orig;
  struct tree_count c = count_tree(f->dl);
  assert_int_equal(c.files + c.dirs + c.other, 0);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Resume */

static void
test_resume_rehashes_listed_chunks_and_trusts_nothing_else(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "big.bin", 10 * CS - 5, 8);
  struct manifest *m = build_named(f, "big.bin", f->dl, &p);
  assert_int_equal(m->chunk_count, 10);

  struct storage *s = open_dl(f, m, 0);
  for (uint32_t i = 0; i < 10; i += 2) {
    put_good(f, s, m, i);
  }
  close_s(f, s);
  assert_true(exists(f->rec));
  assert_true(exists(p.part));
  assert_false(exists(p.fin));

  /* Between runs: chunk 4 is damaged on disk, and chunk 1 is written
   * correctly behind the record's back. */
  flip_byte(p.part, (long)(4 * CS + 77));
  uint8_t *c1 = chunk_copy(m, 1);
  FILE *fp = fopen(p.part, "r+b");
  assert_non_null(fp);
  assert_int_equal(fseek(fp, (long)CS, SEEK_SET), 0);
  assert_int_equal(fwrite(c1, 1, CS, fp), CS);
  assert_int_equal(fclose(fp), 0);
  storage_chunk_free(c1);

  s = open_dl(f, m, 0);
  for (uint32_t i = 0; i < 10; i++) {
    int want = i % 2 == 0 && i != 4;
    assert_int_equal(storage_have(s, i), want);
  }
  assert_int_equal(storage_have_count(s), 4);
  assert_int_equal(storage_have_bytes(s), 4 * CS);
  put_missing(f, s, m);
  assert_err(finish(f, s), 0);
  assert_same_file(p.src, p.fin);
  assert_false(exists(f->rec));
  close_s(f, s);
  manifest_free(m);
}

static void test_resume_of_a_folder_download(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "album/one", 3 * CS, 20);
  make_file(f, "album/two/three", 2 * CS + 3, 21);
  make_file(f, "album/two/zero", 0, 22);
  struct manifest *m = build_named(f, "album", f->dl, &p);

  struct storage *s = open_dl(f, m, 0);
  put_good(f, s, m, 1);
  put_good(f, s, m, 4);
  close_s(f, s);

  /* Strays appear in the partial folder between runs: a file, a folder
   * tree, a symlink, and a folder where a manifest file belongs. The
   * partial folder holds exactly the manifest's paths again after the
   * open, so none of them reaches the final folder. */
  char in_part[PATH_CAP];
  tu_write_file(p.part, "stray.txt", "x", 1);
  tu_write_file(p.part, "two/junk/deep/file", "y", 1);
  tu_path(in_part, sizeof(in_part), p.part, "link");
  assert_int_equal(symlink(f->src, in_part), 0);
  tu_path(in_part, sizeof(in_part), p.part, "two/zero");
  assert_int_equal(unlink(in_part), 0);
  tu_write_file(p.part, "two/zero/inside", "z", 1);

  s = open_dl(f, m, 0);
  struct tree_count c = count_tree(p.part);
  assert_int_equal(c.files, (int)m->file_count);
  assert_int_equal(c.dirs, 1); /* two */
  assert_int_equal(c.other, 0);
  assert_int_equal(storage_have_count(s), 2);
  assert_true(storage_have(s, 1));
  assert_true(storage_have(s, 4));
  put_missing(f, s, m);
  assert_err(finish(f, s), 0);
  close_s(f, s);
  assert_files_arrived(f, m);
  c = count_tree(p.fin);
  assert_int_equal(c.files, (int)m->file_count);
  assert_int_equal(c.dirs + c.other, 1);
  manifest_free(m);
}

/* Writes a resume record by hand, following the layout documented in
 * peer/resume.h, listing the chunks for which listed(i) is true. */
static void write_record(const struct fx *f, const struct manifest *m,
                         int (*listed)(uint32_t)) {
  size_t bm = ((size_t)m->chunk_count + 7) / 8;
  size_t n = 8 + 32 + 4 + bm + 16;
  uint8_t *r = calloc(1, n);
  assert_non_null(r);
  memcpy(r, "SHOALRS1", 8);
  memcpy(r + 8, m->id, 32);
  r[40] = (uint8_t)(m->chunk_count >> 24);
  r[41] = (uint8_t)(m->chunk_count >> 16);
  r[42] = (uint8_t)(m->chunk_count >> 8);
  r[43] = (uint8_t)m->chunk_count;
  for (uint32_t i = 0; i < m->chunk_count; i++) {
    if (listed(i)) {
      r[44 + i / 8] |= (uint8_t)(0x80u >> (i % 8));
    }
  }
  crypto_generichash(r + n - 16, 16, r, n - 16, NULL, 0);
  tu_write_file(f->root, "resume", r, n);
  free(r);
}

#define BIG_UNLISTED 600u
#define BIG_DAMAGED 1500u

static int big_listed(uint32_t i) {
  return i != BIG_UNLISTED;
}

/* A content larger than several re-hash jobs (MANIFEST_JOB_BYTES each):
 * the partial copy is complete on disk, the record lists all but one
 * chunk, and one listed chunk is damaged. */
static void test_resume_rehashes_across_many_jobs(void **state) {
  struct fx *f = *state;
  struct paths p;
  const uint32_t chunks = 5 * (MANIFEST_JOB_BYTES / CS) + 37;

  make_file(f, "large.bin", chunks * CS - 100, 12);
  struct manifest *m = build_named(f, "large.bin", f->dl, &p);
  assert_int_equal(m->chunk_count, chunks);

  size_t n;
  uint8_t *all = tu_read_file(p.src, &n);
  all[(size_t)BIG_DAMAGED * CS + 5] ^= 0xff;
  tu_write_file(f->dl, "large.bin" STORAGE_PART_SUFFIX, all, n);
  free(all);
  write_record(f, m, big_listed);

  struct storage *s = open_dl(f, m, 0);
  assert_int_equal(storage_have_count(s), chunks - 2);
  assert_false(storage_have(s, BIG_UNLISTED));
  assert_false(storage_have(s, BIG_DAMAGED));
  assert_true(storage_have(s, 0));
  assert_true(storage_have(s, chunks - 1));
  put_good(f, s, m, BIG_UNLISTED);
  put_good(f, s, m, BIG_DAMAGED);
  assert_err(finish(f, s), 0);
  assert_same_file(p.src, p.fin);
  close_s(f, s);
  manifest_free(m);
}

static void test_corrupt_resume_record_starts_over(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "r.bin", 4 * CS, 9);
  struct manifest *m = build_named(f, "r.bin", f->dl, &p);

  size_t good_len = 0;
  uint8_t *good = NULL;
  /* Each case damages the record a different way. */
  for (int which = 0; which < 8; which++) {
    struct storage *s = open_dl(f, m, 0);
    put_missing(f, s, m);
    close_s(f, s);
    free(good);
    good = tu_read_file(f->rec, &good_len);
    assert_non_null(good);
    uint8_t *bad = malloc(good_len + 1);
    assert_non_null(bad);
    memcpy(bad, good, good_len);
    size_t bad_len = good_len;
    switch (which) {
    case 0: /* flipped bitmap bit: the checksum catches it */
      bad[44] ^= 0x10;
      break;
    case 1: /* flipped checksum */
      bad[good_len - 1] ^= 1;
      break;
    case 2: /* truncated */
      bad_len = good_len - 3;
      break;
    case 3: /* one byte too many */
      bad[good_len] = 0;
      bad_len = good_len + 1;
      break;
    case 4: /* empty */
      bad_len = 0;
      break;
    case 5: /* wrong magic */
      bad[0] = 'X';
      break;
    case 6: /* garbage of the right size */
      tu_fill(bad, good_len, 99);
      break;
    default: /* no record at all */
      break;
    }
    if (which == 7) {
      assert_int_equal(unlink(f->rec), 0);
    } else {
      tu_write_file(f->root, "resume", bad, bad_len);
    }
    free(bad);

    s = open_dl(f, m, 0);
    assert_int_equal(storage_have_count(s), 0);
    /* Started over: the partial file is zero again, at full size. */
    char what[32];
    snprintf(what, sizeof(what), "case %d", which);
    assert_all_zero(p.part, 4 * CS, what);
    close_s(f, s);
  }
  free(good);

  /* A record folder that is a folder, not a file, is also ignored. */
  assert_int_equal(unlink(f->rec), 0);
  assert_int_equal(mkdir(f->rec, 0755), 0);
  struct storage *s = open_dl(f, m, 0);
  assert_int_equal(storage_have_count(s), 0);
  /* The record cannot replace a folder. */
  assert_true(close_status(f, s) != 0);
  manifest_free(m);
}

/* A record that cannot be read at all (here: its folder is a file, so
 * ENOTDIR; permissions would not stop root) fails the open, and the partial
 * copy is kept: only a record that was read and found bad starts over. */
static void
test_unreadable_record_fails_the_open_and_keeps_the_part(void **state) {
  struct fx *f = *state;
  struct paths p;
  char badrec[PATH_CAP];

  make_file(f, "u.bin", 2 * CS, 14);
  struct manifest *m = build_named(f, "u.bin", f->dl, &p);
  struct storage *s = open_dl(f, m, 0);
  put_good(f, s, m, 1);
  close_s(f, s);

  tu_path(badrec, sizeof(badrec), p.src, "resume");
  s = open_at(f, m, f->dl, badrec, UV_ENOTDIR);
  close_s(f, s);
  size_t n;
  uint8_t *disk = tu_read_file(p.part, &n);
  uint8_t *c1 = chunk_copy(m, 1);
  assert_int_equal(n, 2 * CS);
  assert_memory_equal(disk + CS, c1, CS);
  storage_chunk_free(c1);
  free(disk);
  s = open_dl(f, m, 0);
  assert_true(storage_have(s, 1));
  close_s(f, s);
  manifest_free(m);
}

static void test_record_of_another_content_starts_over(void **state) {
  struct fx *f = *state;
  char a[PATH_CAP];

  /* Two contents with the same name, one after the other. */
  tu_path(a, sizeof(a), f->src, "same.bin");
  make_file(f, "same.bin", 3 * CS, 31);
  struct manifest *m2 = build(a);
  make_file(f, "same.bin", 3 * CS, 30);
  struct manifest *m1 = build(a);

  /* m1's chunks are written while its bytes are the source. */
  struct storage *s = open_dl(f, m1, 0);
  put_good(f, s, m1, 0);
  put_good(f, s, m1, 2);
  close_s(f, s);
  make_file(f, "same.bin", 3 * CS, 31);

  s = open_dl(f, m2, 0);
  assert_int_equal(storage_have_count(s), 0);
  put_good(f, s, m2, 1);
  close_s(f, s);
  s = open_dl(f, m2, 0);
  assert_int_equal(storage_have_count(s), 1);
  assert_true(storage_have(s, 1));
  close_s(f, s);
  manifest_free(m1);
  manifest_free(m2);
}

/* The record's bytes, exactly as peer/resume.h documents them. */
static void test_resume_record_layout(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "l.bin", 11 * CS, 10);
  struct manifest *m = build_named(f, "l.bin", f->dl, &p);
  assert_int_equal(m->chunk_count, 11);
  struct storage *s = open_dl(f, m, 0);
  put_good(f, s, m, 0);
  put_good(f, s, m, 7);
  put_good(f, s, m, 9);
  close_s(f, s);

  size_t n;
  uint8_t *r = tu_read_file(f->rec, &n);
  assert_non_null(r);
  assert_int_equal(n, 8 + 32 + 4 + 2 + 16);
  assert_memory_equal(r, "SHOALRS1", 8);
  assert_memory_equal(r + 8, m->id, 32);
  static const uint8_t count[4] = {0, 0, 0, 11};
  assert_memory_equal(r + 40, count, 4);
  assert_int_equal(r[44], 0x81); /* chunks 0 and 7 */
  assert_int_equal(r[45], 0x40); /* chunk 9 */
  uint8_t h[16];
  crypto_generichash(h, sizeof(h), r, n - 16, NULL, 0);
  assert_memory_equal(h, r + n - 16, 16);
  free(r);
  manifest_free(m);
}

static void on_sleep(uv_timer_t *t) {
  *(int *)t->data = 1;
}

static void on_timer_closed(uv_handle_t *h) {
  *(int *)h->data = 2;
}

/* Runs the loop for about ms milliseconds. */
static void run_for(struct fx *f, uint64_t ms) {
  uv_timer_t t;
  int state = 0;
  uv_timer_init(&f->loop, &t);
  t.data = &state;
  uv_timer_start(&t, on_sleep, ms, 0);
  run_until(&f->loop, &state);
  uv_close((uv_handle_t *)&t, on_timer_closed);
  while (state != 2) {
    uv_run(&f->loop, UV_RUN_ONCE);
  }
}

/* The first byte of the record's bitmap (a 3-chunk content), or -1. */
static int record_bits(const struct fx *f) {
  size_t n;
  uint8_t *r = tu_read_file(f->rec, &n);
  int bits = r != NULL && n == 8 + 32 + 4 + 1 + 16 ? r[44] : -1;
  free(r);
  return bits;
}

/* Runs the loop until the record's bitmap is want; returns the loop time. */
static uint64_t wait_record(struct fx *f, int want) {
  for (int i = 0; i < 100 && record_bits(f) != want; i++) {
    run_for(f, 20);
  }
  assert_int_equal(record_bits(f), want);
  return uv_now(&f->loop);
}

static void
test_record_is_saved_without_close_at_most_once_a_period(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "d.bin", 3 * CS, 11);
  struct manifest *m = build_named(f, "d.bin", f->dl, &p);
  struct storage *s = open_dl(f, m, 0);
  /* The first change is saved at once, by itself. */
  put_good(f, s, m, 0);
  uint64_t t0 = wait_record(f, 0x80);
  /* The next ones wait for the end of the period, and share one save. */
  put_good(f, s, m, 1);
  put_good(f, s, m, 2);
  run_for(f, 100);
  if (uv_now(&f->loop) - t0 < STORAGE_SAVE_MS / 2) {
    assert_int_equal(record_bits(f), 0x80);
  }
  uint64_t t1 = wait_record(f, 0xe0);
  /* t0 is at most about one poll (20 ms) after the first save ended. */
  assert_true(t1 - t0 + 50 >= STORAGE_SAVE_MS);
  close_s(f, s);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Finishing */

static void test_finish_refuses_to_replace_what_appeared(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "w/a", 2 * CS, 12);
  make_file(f, "w/b", 100, 13);
  struct manifest *m = build_named(f, "w", f->dl, &p);

  struct storage *s = open_dl(f, m, 0);
  put_from(f, s, m, 0);
  /* An empty folder appears at the final path meanwhile. */
  assert_int_equal(mkdir(p.fin, 0755), 0);
  assert_err(finish(f, s), UV_EEXIST);
  assert_true(exists(p.part));
  close_s(f, s);
  assert_true(exists(f->rec)); /* kept for a later try */

  assert_int_equal(rmdir(p.fin), 0);
  s = open_dl(f, m, 0);
  assert_int_equal(storage_have_count(s), m->chunk_count);
  assert_err(finish(f, s), 0);
  close_s(f, s);
  assert_false(exists(p.part));
  char a[PATH_CAP];
  char b[PATH_CAP];
  tu_path(a, sizeof(a), f->src, "w/a");
  tu_path(b, sizeof(b), f->dl, "w/a");
  assert_same_file(a, b);
  manifest_free(m);
}

static void test_empty_content_finishes_at_once(void **state) {
  struct fx *f = *state;
  struct paths p;
  struct stat st;

  make_file(f, "nothing", 0, 0);
  struct manifest *m = build_named(f, "nothing", f->dl, &p);
  assert_int_equal(m->chunk_count, 0);
  struct storage *s = open_dl(f, m, 0);
  size_t len = 99;
  (void)storage_have_map(s, &len);
  assert_int_equal(len, 0);
  assert_err(finish(f, s), 0);
  assert_int_equal(stat(p.fin, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_size, 0);
  close_s(f, s);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Symlinks planted in the partial folder */

static void test_planted_symlinks_are_never_followed(void **state) {
  struct fx *f = *state;
  struct paths p;
  char outside[PATH_CAP];
  char victim[PATH_CAP];
  char entry[PATH_CAP];
  static const uint8_t precious[] = "must not change";

  make_file(f, "t/sub/x", 2 * CS, 40);
  make_file(f, "t/y", CS, 41);
  struct manifest *m = build_named(f, "t", f->dl, &p);
  tu_path(outside, sizeof(outside), f->root, "outside");
  tu_write_file(outside, "x", precious, sizeof(precious));
  tu_path(victim, sizeof(victim), outside, "x");

  struct storage *s = open_dl(f, m, 0);
  put_good(f, s, m, 0);
  put_good(f, s, m, 2);
  close_s(f, s);

  /* sub/ becomes a symlink to a folder outside, and y a symlink to a file
   * outside. */
  tu_path(entry, sizeof(entry), p.part, "sub");
  tu_rmtree(entry);
  assert_int_equal(symlink(outside, entry), 0);
  tu_path(entry, sizeof(entry), p.part, "y");
  assert_int_equal(unlink(entry), 0);
  assert_int_equal(symlink(victim, entry), 0);

  s = open_dl(f, m, 0);
  /* The chunks that were behind the links are not had; the links are gone
   * and real entries stand in their place. */
  assert_int_equal(storage_have_count(s), 0);
  struct stat st;
  tu_path(entry, sizeof(entry), p.part, "sub");
  assert_int_equal(lstat(entry, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  tu_path(entry, sizeof(entry), p.part, "y");
  assert_int_equal(lstat(entry, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  put_from(f, s, m, 0);
  assert_err(finish(f, s), 0);
  close_s(f, s);
  assert_file_is(victim, precious, sizeof(precious));

  /* A symlink planted after the open is refused by writes (ELOOP), not
   * followed. */
  tu_rmtree(f->dl);
  assert_int_equal(mkdir(f->dl, 0755), 0);
  assert_false(exists(f->rec)); /* removed by the finish */
  s = open_dl(f, m, 0);
  tu_path(entry, sizeof(entry), p.part, "y");
  assert_int_equal(unlink(entry), 0);
  assert_int_equal(symlink(victim, entry), 0);
  put(f, s, 2, chunk_copy(m, 2), UV_ELOOP);
  assert_false(storage_have(s, 2));
  close_s(f, s);
  assert_file_is(victim, precious, sizeof(precious));
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Sources */

static void test_source_reads_the_right_bytes_and_never_modifies(void **state) {
  struct fx *f = *state;
  struct paths p;
  struct stat before;
  struct stat after;

  make_file(f, "s.bin", 3 * CS + 10, 50);
  struct manifest *m = build_named(f, "s.bin", f->dl, &p);
  size_t n;
  uint8_t *orig = tu_read_file(p.src, &n);
  assert_int_equal(stat(p.src, &before), 0);

  struct storage *s = open_src(f, m);
  assert_null(storage_final_path(s));
  assert_int_equal(storage_have_count(s), m->chunk_count);
  assert_int_equal(storage_have_bytes(s), m->total_size);
  for (uint32_t i = 0; i < m->chunk_count; i++) {
    assert_true(storage_have(s, i));
  }
  assert_false(storage_have(s, m->chunk_count));

  static const struct {
    uint32_t idx, off, len;
  } reads[] = {{0, 0, 16384}, {2, 100, 5000}, {3, 0, 10}, {3, 9, 1}};
  for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
    uint8_t *got = read_ok(f, s, reads[i].idx, reads[i].off, reads[i].len);
    assert_memory_equal(got, orig + reads[i].idx * CS + reads[i].off,
                        reads[i].len);
    free(got);
  }
  /* Blocks outside their chunk, and chunks out of range. */
  assert_err(storage_read(s, 3, 5, 6, on_read, NULL), SHOAL_EINVAL);
  assert_err(storage_read(s, 0, 16384, 1, on_read, NULL), SHOAL_EINVAL);
  assert_err(storage_read(s, 0, 0, 0, on_read, NULL), SHOAL_EINVAL);
  assert_err(storage_read(s, 4, 0, 1, on_read, NULL), SHOAL_EINVAL);
  /* A source takes no chunks and does not finish. */
  uint8_t *c = chunk_copy(m, 0);
  assert_err(storage_put_chunk(s, 0, c, on_done, NULL), SHOAL_EINVAL);
  storage_chunk_free(c);
  assert_err(storage_finish(s, on_done, NULL), SHOAL_EINVAL);
  close_s(f, s);

  uint8_t *now = tu_read_file(p.src, &n);
  assert_memory_equal(now, orig, n);
  assert_int_equal(stat(p.src, &after), 0);
  assert_int_equal(after.st_size, before.st_size);
  assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  assert_int_equal(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
  assert_int_equal(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
  free(now);
  free(orig);
  manifest_free(m);
}

static int source_read_status(struct fx *f, struct storage *s, uint32_t idx) {
  struct got g = {0};
  read_block(f, s, idx, 0, 100, &g);
  if (g.status != 0) {
    assert_null(g.data);
    assert_int_equal(g.len, 0);
  }
  free(g.data);
  return g.status;
}

/* storage_read_cached: a block of a source of one file is read on the
 * loop, from the page cache, once its chunk's first read (which hashes
 * it) has gone to the pool; never for a chunk not yet hashed, a folder's
 * file or a download; a file that changed is ECHANGED and described, as a
 * read on the pool would find. */
static void test_cached_reads_only_after_the_first_read(void **state) {
  struct fx *f = *state;
  char path[PATH_CAP], root[PATH_CAP];
  uint8_t buf[CS];
  struct storage_change c;

  make_file(f, "one.bin", 3 * CS + 100, 91);
  tu_path(path, sizeof(path), f->src, "one.bin");
  struct manifest *m = build(path);
  struct storage *s = open_src(f, m);
  /* The file was just written: every byte is in the page cache. */
  assert_err(storage_read_cached(s, 1, 0, 100, buf), UV_EAGAIN);
  uint8_t *first = read_ok(f, s, 1, 0, 100); /* hashes chunk 1 */
  free(first);
  memset(buf, 0, sizeof(buf));
  assert_err(storage_read_cached(s, 1, 200, CS - 200, buf), 0);
  uint8_t *want = chunk_copy(m, 1);
  assert_memory_equal(buf, want + 200, CS - 200);
  storage_chunk_free(want);
  /* Chunk 2 was never read: the pool hashes it first. */
  assert_err(storage_read_cached(s, 2, 0, 100, buf), UV_EAGAIN);
  /* Blocks outside the chunk are refused, as by storage_read. */
  assert_err(storage_read_cached(s, 1, CS, 1, buf), SHOAL_EINVAL);
  assert_err(storage_read_cached(s, 1, 0, 0, buf), SHOAL_EINVAL);
  assert_err(storage_read_cached(s, 9, 0, 1, buf), UV_EAGAIN);
  /* The file grows: the read says so and the storage describes it. */
  FILE *fp = fopen(path, "ab");
  assert_non_null(fp);
  assert_int_equal(fputc('x', fp), 'x');
  assert_int_equal(fclose(fp), 0);
  assert_err(storage_read_cached(s, 1, 0, 100, buf), SHOAL_ECHANGED);
  assert_int_equal(storage_source_change(s, &c), 1);
  assert_int_equal(c.kind, STORAGE_CHANGE_SIZE);
  close_s(f, s);
  manifest_free(m);

  /* A folder's files are opened per read, on the pool. */
  make_file(f, "dir/a", CS, 92);
  tu_path(root, sizeof(root), f->src, "dir");
  m = build(root);
  s = open_src(f, m);
  free(read_ok(f, s, 0, 0, 100));
  assert_err(storage_read_cached(s, 0, 0, 100, buf), UV_EAGAIN);
  close_s(f, s);
  manifest_free(m);
}

/* A file that keeps the ctime it had while manifest_build hashed it is
 * served without hashing its chunks again; without that ctime (unknown,
 * or the file's status changed since) each chunk's first read hashes it.
 * The test tells the two apart by a manifest whose hash of chunk 1 it
 * spoils in memory: trusted, the read succeeds; checked, it fails. */
static void
test_chunks_hashed_here_are_trusted_while_ctime_holds(void **state) {
  struct fx *f = *state;
  char path[PATH_CAP];
  struct stat st;

  make_file(f, "kept.bin", 3 * CS, 93);
  tu_path(path, sizeof(path), f->src, "kept.bin");
  struct manifest *m = build(path);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(m->files[0].ctime_known, 1);
  assert_int_equal(m->files[0].ctime_sec, st.st_ctim.tv_sec);
  assert_int_equal(m->files[0].ctime_nsec, st.st_ctim.tv_nsec);
  m->hashes[1 * MANIFEST_HASH_BYTES] ^= 1;

  struct storage *s = open_src(f, m);
  assert_err(source_read_status(f, s, 1), 0); /* not hashed: trusted */
  close_s(f, s);

  m->files[0].ctime_known = 0; /* as for a manifest from disk */
  s = open_src(f, m);
  assert_err(source_read_status(f, s, 1), SHOAL_ECHANGED);
  close_s(f, s);

  /* The ctime moves with any change of the file's status, here its
   * times set to what they were: hashed again. */
  m->files[0].ctime_known = 1;
  struct timespec keep[2] = {st.st_atim, st.st_mtim};
  assert_int_equal(utimensat(AT_FDCWD, path, keep, 0), 0);
  s = open_src(f, m);
  assert_err(source_read_status(f, s, 1), SHOAL_ECHANGED);
  assert_err(source_read_status(f, s, 0), 0); /* a good chunk still reads */
  close_s(f, s);
  manifest_free(m);
}

static void test_source_changed_file_is_ECHANGED(void **state) {
  struct fx *f = *state;
  char a[PATH_CAP];
  char b[PATH_CAP];
  char c[PATH_CAP];

  make_file(f, "share/a", 2 * CS, 60);
  make_file(f, "share/b", CS, 61);
  make_file(f, "share/c", CS, 62);
  char root[PATH_CAP];
  tu_path(root, sizeof(root), f->src, "share");
  struct manifest *m = build(root);
  tu_path(a, sizeof(a), f->src, "share/a");
  tu_path(b, sizeof(b), f->src, "share/b");
  tu_path(c, sizeof(c), f->src, "share/c");
  struct storage *s = open_src(f, m);
  assert_err(source_read_status(f, s, 0), 0);
  assert_err(source_read_status(f, s, 2), 0);
  assert_err(source_read_status(f, s, 3), 0);

  /* a grows by one byte. */
  FILE *fp = fopen(a, "ab");
  assert_non_null(fp);
  assert_int_equal(fputc('!', fp), '!');
  assert_int_equal(fclose(fp), 0);
  assert_err(source_read_status(f, s, 0), SHOAL_ECHANGED);
  assert_err(source_read_status(f, s, 1), SHOAL_ECHANGED); /* logged once */

  /* b keeps its bytes but gets another modification time. */
  struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 0},
                           {.tv_sec = 1000000000, .tv_nsec = 0}};
  assert_int_equal(utimensat(AT_FDCWD, b, ts, 0), 0);
  assert_err(source_read_status(f, s, 2), SHOAL_ECHANGED);

  /* c is removed. */
  assert_int_equal(unlink(c), 0);
  assert_err(source_read_status(f, s, 3), SHOAL_ECHANGED);
  close_s(f, s);
  manifest_free(m);
}

static int check_status(struct fx *f, struct storage *s) {
  struct done d = {0};
  struct storage_change c;
  assert_int_equal(storage_check_source(s, on_done, &d), 0);
  assert_err(storage_check_source(s, on_done, &d), SHOAL_EBUSY);
  run_until(&f->loop, &d.called);
  assert_int_equal(d.called, 1);
  assert_int_equal(storage_source_change(s, &c), d.status == SHOAL_ECHANGED);
  return d.status;
}

/* A file rewritten in place with its size and time kept is caught on the
 * first read of each chunk; the check finds size and time changes with no
 * read at all; either way storage_source_change says what changed. */
static void test_source_change_is_found_and_described(void **state) {
  struct fx *f = *state;
  char a[PATH_CAP], b[PATH_CAP], root[PATH_CAP];
  struct storage_change c;
  struct stat st;

  make_file(f, "share/a", 2 * CS, 63);
  make_file(f, "share/b", CS + 5, 64);
  tu_path(root, sizeof(root), f->src, "share");
  tu_path(a, sizeof(a), f->src, "share/a");
  tu_path(b, sizeof(b), f->src, "share/b");
  struct manifest *m = build(root);
  struct storage *s = open_src(f, m);
  assert_int_equal(storage_source_change(s, &c), 0);
  assert_int_equal(c.kind, STORAGE_CHANGE_NONE);
  assert_err(check_status(f, s), 0);

  /* Chunk 1 of a changes; its size and time are put back. */
  assert_int_equal(stat(a, &st), 0);
  flip_byte(a, (long)CS + 7);
  struct timespec keep[2] = {st.st_atim, st.st_mtim};
  assert_int_equal(utimensat(AT_FDCWD, a, keep, 0), 0);
  assert_err(check_status(f, s), 0); /* size and time say nothing */
  assert_err(source_read_status(f, s, 0), 0);
  assert_err(source_read_status(f, s, 1), SHOAL_ECHANGED);
  assert_int_equal(storage_source_change(s, &c), 1);
  assert_int_equal(c.kind, STORAGE_CHANGE_HASH);
  assert_int_equal(c.file, 0);
  assert_int_equal(c.chunk, 1);
  close_s(f, s);

  /* A fresh storage over the changed files: the check alone finds b's new
   * time, then its new size, then that it is gone. */
  s = open_src(f, m);
  struct timespec later[2] = {{.tv_sec = 1000000000, .tv_nsec = 0},
                              {.tv_sec = 1000000000, .tv_nsec = 0}};
  assert_int_equal(utimensat(AT_FDCWD, b, later, 0), 0);
  assert_err(check_status(f, s), SHOAL_ECHANGED);
  assert_int_equal(storage_source_change(s, &c), 1);
  assert_int_equal(c.kind, STORAGE_CHANGE_MTIME);
  assert_int_equal(c.file, 1);
  close_s(f, s);

  s = open_src(f, m);
  assert_int_equal(truncate(b, 3), 0);
  assert_err(check_status(f, s), SHOAL_ECHANGED);
  assert_int_equal(storage_source_change(s, &c), 1);
  assert_int_equal(c.kind, STORAGE_CHANGE_SIZE);
  assert_int_equal(c.file, 1);
  assert_int_equal(c.size_now, 3);
  close_s(f, s);

  s = open_src(f, m);
  assert_int_equal(unlink(b), 0);
  assert_err(check_status(f, s), SHOAL_ECHANGED);
  assert_int_equal(storage_source_change(s, &c), 1);
  assert_int_equal(c.kind, STORAGE_CHANGE_GONE);
  close_s(f, s);
  manifest_free(m);
}

static void test_source_needs_a_local_manifest(void **state) {
  struct fx *f = *state;
  struct paths p;
  struct storage *s = NULL;

  make_file(f, "n.bin", 10, 70);
  struct manifest *m = build_named(f, "n.bin", f->dl, &p);
  struct manifest *d = NULL;
  assert_int_equal(manifest_decode(m->encoded, m->encoded_len, &d), 0);
  assert_err(storage_open_source(&s, &f->loop, d), SHOAL_EINVAL);
  assert_null(s);
  manifest_free(d);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Have-map */

static void test_have_map_layout(void **state) {
  struct fx *f = *state;
  struct paths p;
  size_t len;

  make_file(f, "h.bin", 10 * CS + 1, 80);
  struct manifest *m = build_named(f, "h.bin", f->dl, &p);
  assert_int_equal(m->chunk_count, 11);

  struct storage *s = open_src(f, m);
  const uint8_t *map = storage_have_map(s, &len);
  assert_int_equal(len, 2);
  assert_int_equal(map[0], 0xff);
  assert_int_equal(map[1], 0xe0); /* unused low bits are 0 */
  close_s(f, s);

  s = open_dl(f, m, 0);
  map = storage_have_map(s, &len);
  assert_int_equal(len, 2);
  assert_int_equal(map[0], 0);
  assert_int_equal(map[1], 0);
  put_good(f, s, m, 0);
  put_good(f, s, m, 7);
  put_good(f, s, m, 8);
  put_good(f, s, m, 10);
  map = storage_have_map(s, &len);
  assert_int_equal(map[0], 0x81);
  assert_int_equal(map[1], 0xa0);
  assert_int_equal(storage_have_bytes(s), 3 * CS + 1);
  close_s(f, s);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Closing with work in flight */

static void test_close_with_pending_work_completes_cleanly(void **state) {
  struct fx *f = *state;
  struct paths p;
  enum { N = 8 };
  struct done puts[N];
  struct done dup;
  struct got reads[2];
  struct done closed;
  int counter = 0;

  make_file(f, "p.bin", N * CS, 90);
  struct manifest *m = build_named(f, "p.bin", f->dl, &p);
  struct storage *s = open_dl(f, m, 0);
  put_good(f, s, m, 0);

  memset(puts, 0, sizeof(puts));
  memset(&dup, 0, sizeof(dup));
  memset(reads, 0, sizeof(reads));
  memset(&closed, 0, sizeof(closed));
  for (uint32_t i = 1; i < N; i++) {
    puts[i].counter = &counter;
    uint8_t *c = chunk_copy(m, i);
    if (i == 5) {
      c[0] ^= 1; /* one of them is bad */
    }
    assert_int_equal(storage_put_chunk(s, i, c, on_done, &puts[i]), 0);
  }
  /* A second put of a chunk in flight completes with 0 at once. */
  dup.counter = &counter;
  assert_int_equal(storage_put_chunk(s, 3, chunk_copy(m, 3), on_done, &dup), 0);
  assert_int_equal(storage_read(s, 0, 0, 100, on_read, &reads[0]), 0);
  assert_int_equal(storage_read(s, 0, 100, 100, on_read, &reads[1]), 0);
  closed.counter = &counter;
  storage_close(s, on_done, &closed);
  assert_int_equal(counter, 0);
  run_until(&f->loop, &closed.called);
  assert_err(closed.status, 0);
  /* Everything accepted was completed, before the close callback. */
  for (uint32_t i = 1; i < N; i++) {
    assert_int_equal(puts[i].called, 1);
    assert_err(puts[i].status, i == 5 ? SHOAL_EHASH : 0);
    assert_true(puts[i].order < closed.order);
  }
  assert_int_equal(dup.called, 1);
  assert_err(dup.status, 0);
  assert_true(dup.order < closed.order);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(reads[i].called, 1);
    assert_err(reads[i].status, 0);
    free(reads[i].data);
  }

  /* The record saved on close lists every chunk that was written. */
  s = open_dl(f, m, 0);
  assert_int_equal(storage_have_count(s), N - 1);
  assert_false(storage_have(s, 5));
  close_s(f, s);
  manifest_free(m);
}

static void test_close_during_open_cancels_it(void **state) {
  struct fx *f = *state;
  struct paths p;
  struct storage *s = NULL;
  struct done opened = {0};
  struct done closed = {0};
  int counter = 0;

  make_file(f, "q.bin", 4 * CS, 91);
  struct manifest *m = build_named(f, "q.bin", f->dl, &p);
  /* A record to re-hash, so the open has two phases. */
  s = open_dl(f, m, 0);
  put_good(f, s, m, 1);
  put_good(f, s, m, 2);
  close_s(f, s);
  size_t n0;
  uint8_t *rec0 = tu_read_file(f->rec, &n0);

  opened.counter = &counter;
  closed.counter = &counter;
  assert_int_equal(
      storage_open_download(&s, &f->loop, m, f->dl, f->rec, on_done, &opened),
      0);
  storage_close(s, on_done, &closed);
  run_until(&f->loop, &closed.called);
  assert_int_equal(opened.called, 1);
  assert_err(opened.status, SHOAL_ECANCELED);
  assert_true(opened.order < closed.order);
  assert_err(closed.status, 0);
  /* The record was left as it was. */
  assert_file_is(f->rec, rec0, n0);
  free(rec0);

  s = open_dl(f, m, 0);
  assert_int_equal(storage_have_count(s), 2);
  close_s(f, s);
  manifest_free(m);
}

static void close_from_callback(void *arg, int status) {
  struct storage **sp = arg;
  (void)status;
  storage_close(*sp, NULL, NULL);
  *sp = NULL;
}

static void test_close_from_inside_a_callback(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "cb.bin", 2 * CS, 92);
  struct manifest *m = build_named(f, "cb.bin", f->dl, &p);
  struct storage *s = open_dl(f, m, 0);
  struct storage *sp = s;
  assert_int_equal(
      storage_put_chunk(s, 0, chunk_copy(m, 0), close_from_callback, &sp), 0);
  /* No close callback to wait for: run until the loop is empty. */
  while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0) {
  }
  assert_null(sp);
  s = open_dl(f, m, 0);
  assert_true(storage_have(s, 0));
  close_s(f, s);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* A full disk. The tests run on a small ext4 file system on a loop device:
 * tmpfs, and the machine's large disk, hide what a full disk does to a
 * download (ext4 keeps what a failed fallocate() took). */

#define DISK_SIZE (16u << 20)
/* How far the free space may be from what it was once a refusal gave its
 * reservation back: the file system's own bookkeeping, not file blocks. */
#define DISK_SLACK (16u << 10)
/* The longest a refusal may take: it must not write its way to ENOSPC. */
#define REFUSE_MS 2000u

/* Makes a DISK_SIZE ext4 image in the test folder and mounts it at
 * f->disk. Returns 1, or 0 after saying why it cannot (not root, no
 * mkfs.ext4, no loop devices): the caller then skips. No blocks are
 * reserved for root, so that what statvfs() calls available is what the
 * test, running as root, can really use. */
static int mount_disk(struct fx *f) {
  char img[PATH_CAP], why[256];
  tu_path(img, sizeof(img), f->root, "disk.img");
  tu_path(f->disk, sizeof(f->disk), f->root, "disk");
  assert_int_equal(mkdir(f->disk, 0755), 0);
  if (disk_mount(img, f->disk, DISK_SIZE, 1, why, sizeof(why)) != 0) {
    print_message("skipped: %s\n", why);
    return 0;
  }
  f->mounted = 1;
  return 1;
}

/* Unmounts f->disk (lazily when a failed test left a storage open there)
 * and removes the image. */
static void unmount_disk(struct fx *f) {
  char img[PATH_CAP];
  if (!f->mounted) {
    return;
  }
  tu_path(img, sizeof(img), f->root, "disk.img");
  if (disk_unmount(img, f->disk) != 0) {
    print_error("cannot unmount %s\n", f->disk);
  }
  f->mounted = 0;
}

/* The free space under path is back where it was (within DISK_SLACK). */
static void assert_free_is_back(const char *path, uint64_t before) {
  uint64_t after = disk_free(path);
  if (after + DISK_SLACK < before) {
    fail_msg("%s: %llu bytes free after the refusal, %llu before", path,
             (unsigned long long)after, (unsigned long long)before);
  }
}

static void assert_has(const char *text, const char *needle) {
  if (strstr(text, needle) == NULL) {
    fail_msg("\"%s\" does not say \"%s\"", text, needle);
  }
}

/* A manifest of one file of size bytes in 16 MiB chunks, made by hand:
 * a real terabyte cannot be hashed in a test. Its chunk hashes are zero,
 * so no chunk would verify; it is only ever opened. */
static struct manifest *claimed_manifest(const char *name, uint64_t size) {
  struct manifest *m = calloc(1, sizeof(*m));
  assert_non_null(m);
  m->kind = MANIFEST_KIND_FILE;
  m->chunk_log2 = MANIFEST_CHUNK_LOG2_MAX;
  m->total_size = size;
  m->name = strdup(name);
  m->file_count = 1;
  m->files = calloc(1, sizeof(*m->files));
  assert_non_null(m->name);
  assert_non_null(m->files);
  m->files[0].path = strdup(name);
  assert_non_null(m->files[0].path);
  m->files[0].size = size;
  m->files[0].chunk_count =
      (uint32_t)((size + ((uint64_t)1 << m->chunk_log2) - 1) >> m->chunk_log2);
  m->chunk_count = m->files[0].chunk_count;
  m->hashes = calloc(m->chunk_count, MANIFEST_HASH_BYTES);
  assert_non_null(m->hashes);
  randombytes_buf(m->id, sizeof(m->id));
  return m;
}

static void
test_terabyte_content_on_a_small_disk_is_refused_at_once(void **state) {
  struct fx *f = *state;
  char part[PATH_CAP];

  if (!mount_disk(f)) {
    skip();
  }
  struct manifest *m = claimed_manifest("huge.bin", (uint64_t)1 << 40);
  tu_path(part, sizeof(part), f->disk, "huge.bin" STORAGE_PART_SUFFIX);
  uint64_t before = disk_free(f->disk);
  uint64_t t0 = uv_hrtime();
  struct storage *s = open_at(f, m, f->disk, f->rec, UV_ENOSPC);
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_free_is_back(f->disk, before);
  assert_false(exists(part));
  assert_false(exists(f->rec));
  assert_true(ms < REFUSE_MS);
  /* The user is told what is needed and what is free, and where. */
  const char *why = storage_open_error(s);
  assert_has(why, "1.00 TiB");
  assert_has(why, "free");
  assert_has(why, f->disk);
  close_s(f, s);
  manifest_free(m);
}

/* Many files, each reserved in turn: together they do not fit. */
static void
test_folder_larger_than_the_disk_is_refused_and_leaves_nothing(void **state) {
  struct fx *f = *state;
  struct paths p;

  if (!mount_disk(f)) {
    skip();
  }
  for (int i = 0; i < 24; i++) {
    char rel[64];
    snprintf(rel, sizeof(rel), "wide/d%d/f%02d", i % 3, i);
    make_file(f, rel, 768u << 10, 300 + (uint64_t)i);
  }
  struct manifest *m = build_named(f, "wide", f->disk, &p);
  uint64_t before = disk_free(f->disk);
  struct storage *s = open_at(f, m, f->disk, f->rec, UV_ENOSPC);
  assert_free_is_back(f->disk, before);
  assert_false(exists(p.part));
  assert_has(storage_open_error(s), "18.0 MiB");
  close_s(f, s);
  manifest_free(m);
}

#define NARROW_FILES 2000u
/* Long names, so that the folder's own entries take blocks that the
 * space check does not count: the reservation itself runs out. */
#define NARROW_NAME_PAD 100

/* A folder that passes the space check by a hair and runs out of space
 * while its files are made and reserved: all of it is given back. */
static void test_reservation_that_runs_out_midway_is_given_back(void **state) {
  struct fx *f = *state;
  struct paths p;
  char pad[NARROW_NAME_PAD + 1];

  if (!mount_disk(f)) {
    skip();
  }
  uint64_t before = disk_free(f->disk);
  /* Every size a whole number of 1 KiB blocks (mkfs.ext4's choice for a
   * disk this small), together 8 KiB less than what is free. */
  uint64_t each = (before - 8192) / NARROW_FILES / 1024 * 1024;
  uint64_t last = (before - 8192) - each * (NARROW_FILES - 1);
  last = last / 1024 * 1024;
  memset(pad, 'n', NARROW_NAME_PAD);
  pad[NARROW_NAME_PAD] = '\0';
  for (uint32_t i = 0; i < NARROW_FILES; i++) {
    char rel[256];
    snprintf(rel, sizeof(rel), "narrow/%s-%04u", pad, i);
    make_file(f, rel, i + 1 < NARROW_FILES ? each : last, i);
  }
  struct manifest *m = build_named(f, "narrow", f->disk, &p);
  assert_true(m->total_size <= before);
  struct storage *s = open_at(f, m, f->disk, f->rec, UV_ENOSPC);
  assert_free_is_back(f->disk, before);
  assert_false(exists(p.part));
  /* Past the space check: the reservation itself ran out. */
  assert_has(storage_open_error(s), "ran out of space");
  close_s(f, s);
  manifest_free(m);
}

#define KEPT_CHUNKS 64u

static int kept_listed(uint32_t i) {
  return i < KEPT_CHUNKS;
}

/* The BLAKE2b-256 of a whole file, and its size and blocks. */
struct file_print {
  uint8_t hash[32];
  off_t size;
  blkcnt_t blocks;
};

static void print_file(const char *path, struct file_print *p) {
  struct stat st;
  size_t n;
  uint8_t *all = tu_read_file(path, &n);
  assert_non_null(all);
  crypto_generichash(p->hash, sizeof(p->hash), all, n, NULL, 0);
  free(all);
  assert_int_equal(stat(path, &st), 0);
  p->size = st.st_size;
  p->blocks = st.st_blocks;
}

/* A resumable partial copy that cannot grow to its full size: the open is
 * refused, and the partial copy and its record stay exactly as they
 * were, for a later run with more room. */
static void test_refusal_keeps_a_resumable_partial_intact(void **state) {
  struct fx *f = *state;
  struct paths p;
  struct file_print a;
  struct file_print b;
  size_t rec_len;

  if (!mount_disk(f)) {
    skip();
  }
  make_file(f, "kept.bin", 24u << 20, 31);
  struct manifest *m = build_named(f, "kept.bin", f->disk, &p);
  /* A previous run got the first KEPT_CHUNKS chunks; the rest of the file
   * is a hole, as where preallocation is not supported. */
  size_t n;
  uint8_t *all = tu_read_file(p.src, &n);
  assert_non_null(all);
  int fd = open(p.part, O_WRONLY | O_CREAT | O_EXCL, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)n), 0);
  assert_int_equal(write(fd, all, KEPT_CHUNKS * CS),
                   (ssize_t)(KEPT_CHUNKS * CS));
  assert_int_equal(fsync(fd), 0);
  assert_int_equal(close(fd), 0);
  free(all);
  write_record(f, m, kept_listed);
  uint8_t *rec = tu_read_file(f->rec, &rec_len);
  assert_non_null(rec);
  print_file(p.part, &a);

  uint64_t before = disk_free(f->disk);
  struct storage *s = open_at(f, m, f->disk, f->rec, UV_ENOSPC);
  assert_free_is_back(f->disk, before);
  print_file(p.part, &b);
  assert_memory_equal(a.hash, b.hash, sizeof(a.hash));
  assert_int_equal(a.size, b.size);
  assert_int_equal(a.blocks, b.blocks);
  assert_file_is(f->rec, rec, rec_len);
  /* Only what is missing is asked for: 24 MiB less the 1 MiB it has. */
  assert_has(storage_open_error(s), "23.0 MiB");
  free(rec);
  close_s(f, s);
  manifest_free(m);
}

/* A resumed download already holds most of its space: it needs only what
 * it lacks, even when the whole content would no longer fit. */
static void test_resumed_download_needs_only_what_it_lacks(void **state) {
  struct fx *f = *state;
  struct paths p;

  if (!mount_disk(f)) {
    skip();
  }
  uint64_t size = disk_free(f->disk) / 4 * 3;
  make_file(f, "most.bin", (size_t)size, 32);
  struct manifest *m = build_named(f, "most.bin", f->disk, &p);
  struct storage *s = open_at(f, m, f->disk, f->rec, 0);
  put_good(f, s, m, 0);
  close_s(f, s);
  assert_true(disk_free(f->disk) < m->total_size);

  s = open_at(f, m, f->disk, f->rec, 0);
  assert_true(storage_have(s, 0));
  put_from(f, s, m, 1);
  assert_err(finish(f, s), 0);
  assert_same_file(p.src, p.fin);
  close_s(f, s);
  manifest_free(m);
}

/* ---------------------------------------------------------------------- */
/* Two downloads of one partial copy */

static void assert_names_pid(const struct storage *s, pid_t pid) {
  char want[64];
  snprintf(want, sizeof(want), "process %ld", (long)pid);
  assert_has(storage_open_error(s), want);
}

/* A second download of the same content into the same folder, with its
 * own resume record (another --home), is refused at once; the first one's
 * partial copy is untouched and completes. flock() locks belong to an
 * open file description, so two opens in one process conflict as two
 * processes do. */
static void test_second_download_of_a_partial_file_is_EBUSY(void **state) {
  struct fx *f = *state;
  struct paths p;
  char rec2[PATH_CAP];

  make_file(f, "both.bin", 6 * CS + 11, 33);
  tu_path(rec2, sizeof(rec2), f->root, "resume2");
  struct manifest *m = build_named(f, "both.bin", f->dl, &p);
  struct storage *s1 = open_dl(f, m, 0);
  put_good(f, s1, m, 0);
  put_good(f, s1, m, 1);

  struct storage *s2 = open_at(f, m, f->dl, rec2, UV_EBUSY);
  assert_names_pid(s2, getpid());
  close_s(f, s2);
  assert_false(exists(rec2));

  put_from(f, s1, m, 2);
  assert_err(finish(f, s1), 0);
  assert_same_file(p.src, p.fin);
  close_s(f, s1);
  manifest_free(m);
}

/* The same for a folder, and for a file content of the same name, whose
 * open would otherwise remove the folder it finds in its place. */
static void test_second_download_of_a_partial_folder_is_EBUSY(void **state) {
  struct fx *f = *state;
  struct paths p;
  char rec2[PATH_CAP];
  char other[PATH_CAP];

  make_file(f, "tree/a", 2 * CS, 34);
  make_file(f, "tree/b/c", CS + 1, 35);
  tu_path(rec2, sizeof(rec2), f->root, "resume2");
  struct manifest *m = build_named(f, "tree", f->dl, &p);
  struct storage *s1 = open_dl(f, m, 0);
  put_good(f, s1, m, 0);

  struct storage *s2 = open_at(f, m, f->dl, rec2, UV_EBUSY);
  assert_names_pid(s2, getpid());
  close_s(f, s2);

  /* Another content, a file named "tree" too. */
  make_file(f, "elsewhere/tree", CS, 36);
  tu_path(other, sizeof(other), f->src, "elsewhere/tree");
  struct manifest *m2 = build(other);
  s2 = open_at(f, m2, f->dl, rec2, UV_EBUSY);
  close_s(f, s2);

  put_from(f, s1, m, 1);
  assert_err(finish(f, s1), 0);
  assert_files_arrived(f, m);
  close_s(f, s1);
  manifest_free(m2);
  manifest_free(m);
}

/* The lock lasts as long as the storage: refused while it is open, free
 * again once it closed, and a resume then finds its chunks. */
static void test_partial_is_locked_until_its_storage_closes(void **state) {
  struct fx *f = *state;
  struct paths p;

  make_file(f, "held.bin", 3 * CS, 37);
  struct manifest *m = build_named(f, "held.bin", f->dl, &p);
  struct storage *s1 = open_dl(f, m, 0);
  put_good(f, s1, m, 1);
  /* The same record too: it is the partial copy that is locked. */
  struct storage *s2 = open_dl(f, m, UV_EBUSY);
  close_s(f, s2);
  close_s(f, s1);

  s1 = open_dl(f, m, 0);
  assert_true(storage_have(s1, 1));
  assert_int_equal(storage_have_count(s1), 1);
  close_s(f, s1);
  manifest_free(m);
}

/* Whether the record at path lists chunks 0 and 1 (the high bits of its
 * first map byte, at offset 44). */
static int record_lists_first_two(const char *path) {
  size_t n;
  uint8_t *r = tu_read_file(path, &n);
  int yes = r != NULL && n > 44 && (r[44] & 0xc0) == 0xc0;
  free(r);
  return yes;
}

/* Child side of the next test: opens the download on a loop of its own,
 * writes two chunks, waits for the record to be saved, says so on fd and
 * waits to be killed. Exits non-zero when a step fails. */
static void locker_child(struct fx *f, const struct manifest *m, int fd) {
  uv_loop_t loop;
  struct storage *s = NULL;
  struct done d = {0};

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (uv_loop_init(&loop) != 0 ||
      storage_open_download(&s, &loop, m, f->dl, f->rec, on_done, &d) != 0) {
    _exit(3);
  }
  while (!d.called) {
    uv_run(&loop, UV_RUN_ONCE);
  }
  if (d.status != 0) {
    _exit(4);
  }
  for (uint32_t i = 0; i < 2; i++) {
    struct done p = {0};
    if (storage_put_chunk(s, i, chunk_copy(m, i), on_done, &p) != 0) {
      _exit(5);
    }
    while (!p.called) {
      uv_run(&loop, UV_RUN_ONCE);
    }
    if (p.status != 0) {
      _exit(6);
    }
  }
  /* The save timer keeps the loop alive until a record lists both. */
  while (!record_lists_first_two(f->rec)) {
    uv_run(&loop, UV_RUN_ONCE);
  }
  if (write(fd, "r", 1) != 1) {
    _exit(7);
  }
  for (;;) {
    pause();
  }
}

/* Another process holds the partial copy: the refusal names it. Killed
 * with SIGKILL, it cannot unlock anything, yet the kernel drops its lock
 * and the next run resumes what it wrote. */
static void test_lock_of_a_killed_process_is_gone(void **state) {
  struct fx *f = *state;
  struct paths p;
  int pfd[2];
  char c;
  int st;

  make_file(f, "killed.bin", 8 * CS, 38);
  struct manifest *m = build_named(f, "killed.bin", f->dl, &p);
  assert_int_equal(pipe(pfd), 0);
  f->child = fork();
  assert_true(f->child >= 0);
  if (f->child == 0) {
    close(pfd[0]);
    locker_child(f, m, pfd[1]);
  }
  close(pfd[1]);
  struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
  assert_int_equal(poll(&pf, 1, 20000), 1);
  if (read(pfd[0], &c, 1) != 1) {
    waitpid(f->child, &st, 0);
    f->child = 0;
    fail_msg("the child failed before it was ready (status %d)", st);
  }
  close(pfd[0]);

  struct storage *s = open_dl(f, m, UV_EBUSY);
  assert_names_pid(s, f->child);
  close_s(f, s);

  assert_int_equal(kill(f->child, SIGKILL), 0);
  assert_int_equal(waitpid(f->child, &st, 0), f->child);
  f->child = 0;
  s = open_dl(f, m, 0);
  assert_int_equal(storage_have_count(s), 2);
  put_from(f, s, m, 2);
  assert_err(finish(f, s), 0);
  assert_same_file(p.src, p.fin);
  close_s(f, s);
  manifest_free(m);
}

int main(void) {
  uint8_t seed[32];
  if (sodium_init() < 0) {
    return 1;
  }
  memset(seed, 0x42, sizeof(seed));
  identity_from_seed(&g_pub, seed);
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_file_download_in_random_order_appears_only_at_finish),
      T(test_folder_download_arrives_exactly),
      T(test_wrong_chunk_is_EHASH_and_nothing_is_written),
      T(test_failed_chunk_reports_each_blocks_hash),
      T(test_sealed_blocks_open_before_the_hash),
      T(test_aligned_chunks_bypass_the_page_cache),
      T(test_chunk_buffers),
      T(test_existing_final_path_is_EEXIST_and_nothing_touched),
      T(test_missing_download_folder_fails_cleanly),
      T(test_unsafe_manifest_path_is_EPATH),
      T(test_resume_rehashes_listed_chunks_and_trusts_nothing_else),
      T(test_resume_of_a_folder_download),
      T(test_resume_rehashes_across_many_jobs),
      T(test_corrupt_resume_record_starts_over),
      T(test_unreadable_record_fails_the_open_and_keeps_the_part),
      T(test_record_of_another_content_starts_over),
      T(test_resume_record_layout),
      T(test_record_is_saved_without_close_at_most_once_a_period),
      T(test_finish_refuses_to_replace_what_appeared),
      T(test_empty_content_finishes_at_once),
      T(test_planted_symlinks_are_never_followed),
      T(test_source_reads_the_right_bytes_and_never_modifies),
      T(test_source_change_is_found_and_described),
      T(test_cached_reads_only_after_the_first_read),
      T(test_chunks_hashed_here_are_trusted_while_ctime_holds),
      T(test_source_changed_file_is_ECHANGED),
      T(test_source_needs_a_local_manifest),
      T(test_have_map_layout),
      T(test_close_with_pending_work_completes_cleanly),
      T(test_close_during_open_cancels_it),
      T(test_close_from_inside_a_callback),
      T(test_terabyte_content_on_a_small_disk_is_refused_at_once),
      T(test_folder_larger_than_the_disk_is_refused_and_leaves_nothing),
      T(test_reservation_that_runs_out_midway_is_given_back),
      T(test_refusal_keeps_a_resumable_partial_intact),
      T(test_resumed_download_needs_only_what_it_lacks),
      T(test_second_download_of_a_partial_file_is_EBUSY),
      T(test_second_download_of_a_partial_folder_is_EBUSY),
      T(test_partial_is_locked_until_its_storage_closes),
      T(test_lock_of_a_killed_process_is_gone),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
