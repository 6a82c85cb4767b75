/* nftw() is an XSI interface. */
#define _XOPEN_SOURCE 700

#include "tests/lib/testutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what, const char *path) {
  fprintf(stderr, "testutil: %s %s: %s\n", what, path, strerror(errno));
  abort();
}

void tu_tmpdir(char *out, size_t cap) {
  const char *base = getenv("TMPDIR");
  if (base == NULL || base[0] == '\0') {
    base = "/tmp";
  }
  int n = snprintf(out, cap, "%s/shoal-test-XXXXXX", base);
  if (n < 0 || (size_t)n >= cap || mkdtemp(out) == NULL) {
    die("mkdtemp", base);
  }
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  /* Make folders writable again in case a test removed permissions. */
  chmod(path, 0700);
  return remove(path);
}

void tu_rmtree(const char *path) {
  nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_path(char *out, size_t cap, const char *dir, const char *rel) {
  int n = snprintf(out, cap, "%s/%s", dir, rel);
  if (n < 0 || (size_t)n >= cap) {
    die("path too long", rel);
  }
}

static void mkparents(char *path) {
  for (char *p = path + 1; *p != '\0'; p++) {
    if (*p == '/') {
      *p = '\0';
      if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        die("mkdir", path);
      }
      *p = '/';
    }
  }
}

void tu_write_file(const char *dir, const char *rel, const void *data,
                   size_t len) {
  char path[4096];
  tu_path(path, sizeof(path), dir, rel);
  mkparents(path);
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    die("fopen", path);
  }
  if (len > 0 && fwrite(data, 1, len, f) != len) {
    die("fwrite", path);
  }
  if (fclose(f) != 0) {
    die("fclose", path);
  }
}

uint8_t *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *data = NULL;
  size_t cap = 0;
  size_t n = 0;

  *len = 0;
  if (f == NULL) {
    return NULL;
  }
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *p = realloc(data, cap);
      if (p == NULL) {
        free(data);
        fclose(f);
        return NULL;
      }
      data = p;
    }
    size_t r = fread(data + n, 1, cap - n, f);
    if (r == 0) {
      break;
    }
    n += r;
  }
  fclose(f);
  *len = n;
  return data;
}

char *tu_read_text(const char *path, size_t *len) {
  uint8_t *data = tu_read_file(path, len);
  char *text = data != NULL ? realloc(data, *len + 1) : NULL;
  if (text == NULL) {
    free(data);
    return NULL;
  }
  text[*len] = '\0';
  return text;
}

int tu_file_has(const char *path, const char *needle) {
  size_t n;
  char *text = tu_read_text(path, &n);
  int found = text != NULL && strstr(text, needle) != NULL;
  free(text);
  return found;
}

void tu_fill(void *p, size_t len, uint64_t seed) {
  /* splitmix64: deterministic and good enough for test content. */
  uint8_t *o = p;
  uint64_t x = seed;
  for (size_t i = 0; i < len; i++) {
    if (i % 8 == 0) {
      x += 0x9e3779b97f4a7c15u;
    }
    uint64_t z = x + i / 8;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    o[i] = (uint8_t)(z >> ((i % 8) * 8));
  }
}

void tu_identity(struct identity *id, uint64_t seed) {
  uint8_t bytes[32];
  tu_fill(bytes, sizeof(bytes), seed);
  identity_from_seed(id, bytes);
}

void tu_pk(uint8_t pk[32], uint64_t seed) {
  struct identity id;
  tu_identity(&id, seed);
  memcpy(pk, id.pk, sizeof(id.pk));
  identity_close(&id);
}

uint64_t tu_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

uint32_t tu_below(uint64_t *s, uint32_t n) {
  uint64_t z = tu_rand(s);
  return n == 0 ? 0 : (uint32_t)(z % n);
}

void tu_vector_path(char *out, size_t cap, const char *name) {
  const char *dir = getenv("SHOAL_TEST_VECTORS");
  tu_path(out, cap, dir && dir[0] ? dir : "tests/vectors", name);
}
