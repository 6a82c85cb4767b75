/* bench/hash: manifest hashing throughput against the raw chunk hash.
 *
 * Writes a file of random bytes (1 GiB by default) to $TMPDIR, then measures
 * in the same run:
 *   raw      the chunk hash (SHA-256, common/chash.h) over the same bytes,
 *            already in memory, one call per chunk, one thread (the least
 *            work any manifest builder can do);
 *   raw, N   the same on --threads threads at once, each a run of whole
 *            chunks: what the cores give the hash together, the ceiling
 *            of the pool's figure;
 *   manifest manifest_build() on one thread (reads the file and hashes);
 *   pool     manifest_build() with jobs on libuv's thread pool;
 *   recheck  recheck_start() of the same file against its manifest, with
 *            no fast-resume record, so every chunk is hashed again (what
 *            'shoal-peer recheck' and a resumed get without a record do),
 *            on libuv's thread pool.
 * Each figure is the best of --runs runs. The file is in the page cache
 * (it was just written), so this measures hashing, not the disk.
 *
 * Targets: manifest >= 0.9 x raw; pool >= 1.8 x raw on a 2-core machine
 * (issue 17: share hashes at close to the hash's speed on both cores).
 * Usage: hash [--mib N] [--runs N] [--threads N]
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "bench/lib/benchutil.h"
#include "common/chash.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/manifest.h"
#include "peer/manifest_build.h"
#include "peer/recheck.h"

struct recheck_run {
  int done, status;
};

static void recheck_done(void *arg, int status,
                         const struct recheck_result *result) {
  struct recheck_run *rr = arg;
  (void)result;
  rr->done = 1;
  rr->status = status;
}

/* Seconds to recheck the copy of m under dir, or -1 (status says why). */
static double recheck_once(const struct manifest *m, const char *dir,
                           int *status) {
  uv_loop_t loop;
  struct recheck *r = NULL;
  struct recheck_run rr = {0, 0};
  double t0, t;
  if (uv_loop_init(&loop) != 0) {
    *status = SHOAL_ENOMEM;
    return -1;
  }
  t0 = benchutil_now_s();
  *status = recheck_start(&r, &loop, m, dir, NULL, 0, NULL, recheck_done, &rr);
  if (*status == 0) {
    while (!rr.done && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    *status = rr.done ? rr.status : SHOAL_EINVAL;
  }
  t = benchutil_now_s() - t0;
  uv_run(&loop, UV_RUN_DEFAULT);
  (void)uv_loop_close(&loop);
  return *status == 0 ? t : -1;
}

/* The most threads the raw figure on several threads uses. */
#define RAW_MAX_THREADS 64

/* One thread's share of the raw hash on several threads. */
struct raw_part {
  const uint8_t *data;
  size_t from, to, cs;
  int err;
};

static void *raw_part_main(void *arg) {
  struct raw_part *p = arg;
  uint8_t h[32];
  for (size_t off = p->from; off < p->to && p->err == 0; off += p->cs) {
    size_t n = p->to - off < p->cs ? p->to - off : p->cs;
    p->err = chash_once(h, p->data + off, n);
  }
  return NULL;
}

/* Hashes size bytes of data in chunks of cs on n threads at once, each a
 * run of whole chunks. Returns the seconds taken, or a negative number
 * when a thread could not start or the hash failed. */
static double raw_on_threads(const uint8_t *data, size_t size, size_t cs,
                             unsigned n) {
  struct raw_part parts[RAW_MAX_THREADS];
  pthread_t tids[RAW_MAX_THREADS];
  size_t chunks = (size + cs - 1) / cs;
  unsigned started = 0;
  int failed = 0;
  double t0 = benchutil_now_s();

  for (unsigned i = 0; i < n; i++) {
    size_t c0 = chunks * i / n, c1 = chunks * (i + 1) / n;
    parts[i] = (struct raw_part){.data = data,
                                 .from = c0 * cs,
                                 .to = c1 * cs < size ? c1 * cs : size,
                                 .cs = cs,
                                 .err = 0};
    if (pthread_create(&tids[i], NULL, raw_part_main, &parts[i]) != 0) {
      failed = 1;
      break;
    }
    started++;
  }
  for (unsigned i = 0; i < started; i++) {
    (void)pthread_join(tids[i], NULL);
    failed |= parts[i].err != 0;
  }
  return failed ? -1.0 : benchutil_now_s() - t0;
}

int main(int argc, char **argv) {
  unsigned long mib = benchutil_arg_ul("hash", argc, argv, "--mib", 1024);
  unsigned long runs = benchutil_arg_ul("hash", argc, argv, "--runs", 3);
  uv_cpu_info_t *cpus;
  int ncpu = 0;
  if (uv_cpu_info(&cpus, &ncpu) == 0) {
    uv_free_cpu_info(cpus, ncpu);
  }
  unsigned long threads = benchutil_arg_ul("hash", argc, argv, "--threads",
                                           ncpu > 0 ? (unsigned long)ncpu : 2);
  size_t size = (size_t)mib << 20;
  if (threads > RAW_MAX_THREADS) {
    fprintf(stderr, "hash: --threads must be 1 to %d\n", RAW_MAX_THREADS);
    return 2;
  }
  const char *tmp = getenv("TMPDIR");
  char dir[4096];
  char path[4200];
  struct identity id;
  int rc = 1;

  if (sodium_init() < 0) {
    return 1;
  }
  snprintf(dir, sizeof(dir), "%s/shoal-bench-hash-XXXXXX",
           tmp && tmp[0] ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror("hash: mkdtemp");
    return 1;
  }
  snprintf(path, sizeof(path), "%s/data.bin", dir);

  uint8_t *data = malloc(size);
  if (data == NULL) {
    fprintf(stderr, "hash: cannot allocate %lu MiB\n", mib);
    goto out;
  }
  uint8_t seed[randombytes_SEEDBYTES] = {7};
  randombytes_buf_deterministic(data, size, seed);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
    perror("hash: writing the test file");
    goto out;
  }
  identity_generate(&id);

  unsigned log2 = manifest_choose_chunk_log2(size);
  size_t cs = (size_t)1 << log2;
  double best_raw = 1e30, best_raw_n = 1e30, best_one = 1e30, best_pool = 1e30,
         best_recheck = 1e30;
  uint8_t h[32];

  for (unsigned long r = 0; r < runs; r++) {
    double t0 = benchutil_now_s();
    for (size_t off = 0; off < size; off += cs) {
      size_t n = size - off < cs ? size - off : cs;
      if (chash_once(h, data + off, n) != 0) {
        fprintf(stderr, "hash: the chunk hash failed\n");
        goto out;
      }
    }
    double t = benchutil_now_s() - t0;
    best_raw = t < best_raw ? t : best_raw;
    t = raw_on_threads(data, size, cs, (unsigned)threads);
    if (t < 0) {
      fprintf(stderr, "hash: the chunk hash on %lu threads failed\n", threads);
      goto out;
    }
    best_raw_n = t < best_raw_n ? t : best_raw_n;

    for (int mode = 0; mode < 2; mode++) {
      struct manifest_build_opts o = {.threads = mode ? (unsigned)threads : 0};
      struct manifest *m = NULL;
      t0 = benchutil_now_s();
      int err = manifest_build(path, &id, &o, &m);
      t = benchutil_now_s() - t0;
      if (err != 0) {
        fprintf(stderr, "hash: manifest_build: %s\n", shoal_strerror(err));
        goto out;
      }
      /* The last chunk's hash must equal the raw one: same bytes hashed. */
      if (memcmp(m->hashes + (size_t)(m->chunk_count - 1) * 32, h, 32) != 0) {
        fprintf(stderr, "hash: manifest and raw hashes differ\n");
        manifest_free(m);
        goto out;
      }
      if (mode == 1) {
        int status;
        double tr = recheck_once(m, dir, &status);
        if (tr < 0) {
          fprintf(stderr, "hash: recheck: %s\n", shoal_strerror(status));
          manifest_free(m);
          goto out;
        }
        best_recheck = tr < best_recheck ? tr : best_recheck;
      }
      manifest_free(m);
      if (mode == 0) {
        best_one = t < best_one ? t : best_one;
      } else {
        best_pool = t < best_pool ? t : best_pool;
      }
    }
  }

  double mb = (double)size / 1e6;
  double r1 = best_raw / best_one, rp = best_raw / best_pool;
  printf("bench/hash: %lu MiB, chunk %zu KiB, best of %lu runs, %d CPUs\n", mib,
         cs >> 10, runs, ncpu);
  printf("  raw SHA-256 chunk hash (memory)   %8.1f MB/s\n", mb / best_raw);
  printf("  raw, %-2lu threads at once (memory)  %8.1f MB/s  ratio %.2f "
         "(the pool's ceiling)\n",
         threads, mb / best_raw_n, best_raw / best_raw_n);
  printf("  manifest_build, 1 thread          %8.1f MB/s  ratio %.2f "
         "(target >= 0.90) %s\n",
         mb / best_one, r1, r1 >= 0.9 ? "ok" : "BELOW TARGET");
  printf("  manifest_build, pool of %-2lu        %8.1f MB/s  ratio %.2f "
         "(target >= 1.80) %s\n",
         threads, mb / best_pool, rp, rp >= 1.8 ? "ok" : "BELOW TARGET");
  printf("  recheck, libuv's pool             %8.1f MB/s  ratio %.2f\n",
         mb / best_recheck, best_raw / best_recheck);
  rc = 0;

out:
  free(data);
  unlink(path);
  rmdir(dir);
  identity_close(&id);
  return rc;
}
