/* bench/hash: manifest hashing throughput against the raw chunk hash.
 *
 * Writes a file of random bytes (1 GiB by default) to $TMPDIR, then measures
 * in the same run:
 *   raw      the chunk hash (SHA-256, common/chash.h) over the same bytes,
 *            already in memory, one call per chunk, one thread (the least
 *            work any manifest builder can do);
 *   manifest manifest_build() on one thread (reads the file and hashes);
 *   pool     manifest_build() with jobs on libuv's thread pool.
 * Each figure is the best of --runs runs. The file is in the page cache
 * (it was just written), so this measures hashing, not the disk.
 *
 * Targets: manifest >= 0.9 x raw; pool >= 1.8 x raw on a 2-core machine
 * (issue 17: share hashes at close to the hash's speed on both cores).
 * Usage: hash [--mib N] [--runs N] [--threads N]
 */
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
  double best_raw = 1e30, best_one = 1e30, best_pool = 1e30;
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
  printf("  manifest_build, 1 thread          %8.1f MB/s  ratio %.2f "
         "(target >= 0.90) %s\n",
         mb / best_one, r1, r1 >= 0.9 ? "ok" : "BELOW TARGET");
  printf("  manifest_build, pool of %-2lu        %8.1f MB/s  ratio %.2f "
         "(target >= 1.80) %s\n",
         threads, mb / best_pool, rp, rp >= 1.8 ? "ok" : "BELOW TARGET");
  rc = 0;

out:
  free(data);
  unlink(path);
  rmdir(dir);
  identity_close(&id);
  return rc;
}
