/* Hashing a file's chunks from a read-only mapping, surviving truncation:
 * the SIGBUS handler, the per-thread guard and the windows (the design is
 * in maphash.h). */
#include "peer/maphash.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/error.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_err;
/* The handler maphash replaced; written once before the handler is
 * installed, only read after. */
static struct sigaction g_prev;

/* The calling thread's guard. The range is written before the flag is
 * set, and the flag cleared before anything else changes, so the handler
 * never sees a half-set guard. Static TLS of the program: reading it is
 * async-signal-safe. */
static _Thread_local volatile sig_atomic_t t_armed;
static _Thread_local volatile uintptr_t t_lo, t_hi;
static _Thread_local sigjmp_buf t_env;

/* Gives a SIGBUS that is not maphash's to whoever would have had it. */
static void pass_on(int sig, siginfo_t *si, void *uc) {
  if ((g_prev.sa_flags & SA_SIGINFO) != 0) {
    if (g_prev.sa_sigaction != NULL) {
      g_prev.sa_sigaction(sig, si, uc);
    }
    return;
  }
  if (g_prev.sa_handler == SIG_IGN && si->si_code <= 0) {
    return; /* sent by a process and ignored, as it was before */
  }
  if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN) {
    g_prev.sa_handler(sig);
    return;
  }
  /* The default action (also for an ignored SIGBUS from a fault, which the
   * kernel would not let be ignored): SIGBUS is blocked while this handler
   * runs, so the signal raised here arrives, with SIG_DFL, as it returns. */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  (void)sigemptyset(&dfl.sa_mask);
  (void)sigaction(SIGBUS, &dfl, NULL);
  (void)raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  int saved = errno;

  if (t_armed && si->si_code > 0) {
    uintptr_t a = (uintptr_t)si->si_addr;
    if (a >= t_lo && a < t_hi) {
      t_armed = 0;
      siglongjmp(t_env, 1); /* restores the mask saved by sigsetjmp */
    }
  }
  pass_on(sig, si, uc);
  errno = saved;
}

static void install(void) {
  struct sigaction sa;

  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  (void)sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &g_prev) != 0) {
    g_init_err = -errno;
  }
}

int maphash_init(void) {
  int err = pthread_once(&g_once, install);
  return err != 0 ? -err : g_init_err;
}

int maphash_map(struct maphash_window *w, int fd, uint64_t off, size_t len) {
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  int err;

  assert(len > 0 && len <= MAPHASH_MAX_BYTES);
  memset(w, 0, sizeof(*w));
  err = maphash_init();
  if (err != 0) {
    return err;
  }
  const uint64_t start = off - off % page;
  const size_t head = (size_t)(off - start);
  void *p = mmap(NULL, head + len, PROT_READ, MAP_SHARED, fd, (off_t)start);
  if (p == MAP_FAILED) {
    return -errno;
  }
  /* Faults then read ahead of the hash, and the pages hashed count as used
   * once when memory is short. Measured against MAP_POPULATE (the page
   * table filled in mmap), MADV_WILLNEED and MADV_POPULATE_READ on a file
   * in the page cache, it was as fast or faster (docs/transfer.md); for a
   * file on disk it lets the reads overlap the hash. */
  (void)madvise(p, head + len, MADV_SEQUENTIAL);
  w->base = p;
  w->base_len = head + len;
  w->data = (const uint8_t *)p + head;
  w->len = len;
  return 0;
}

/* Hashes the window, chunk by chunk, into out; h is started for each. */
static int hash_window(const struct maphash_window *w, uint64_t chunk_bytes,
                       uint8_t *out, struct chash *h) {
  size_t at = 0;
  int err = 0;

  while (err == 0 && at < w->len) {
    size_t n = w->len - at < chunk_bytes ? w->len - at : (size_t)chunk_bytes;
    err = chash_init(h);
    if (err == 0) {
      err = chash_update(h, w->data + at, n);
    }
    if (err == 0) {
      err = chash_final(h, out);
    }
    out += CHASH_BYTES;
    at += n;
  }
  return err;
}

/* hash_window under the thread's guard. Apart from maphash_chunks so that
 * no local of the function that calls sigsetjmp changes between it and a
 * siglongjmp (their values would be indeterminate after it): the hash
 * state lives in the caller. */
static int hash_guarded(const struct maphash_window *w, uint64_t chunk_bytes,
                        uint8_t *out, struct chash *h) {
  int err;

  assert(!t_armed); /* not reentrant */
  /* Saves the signal mask, so that the jump out of the handler unblocks
   * SIGBUS again for the next window. */
  if (sigsetjmp(t_env, 1) != 0) {
    return SHOAL_ECHANGED; /* the handler disarmed the guard */
  }
  t_lo = (uintptr_t)w->base;
  t_hi = (uintptr_t)w->base + w->base_len;
  t_armed = 1;
  /* Keeps the compiler from moving the hash's reads out of the guard. */
  atomic_signal_fence(memory_order_seq_cst);
  err = hash_window(w, chunk_bytes, out, h);
  atomic_signal_fence(memory_order_seq_cst);
  t_armed = 0;
  return err;
}

int maphash_chunks(const struct maphash_window *w, uint64_t chunk_bytes,
                   uint8_t *out) {
  struct chash h = {0};
  /* Allocates the state here, outside the guard, so that a jump out of
   * the hash never leaves an allocation half done. */
  int err = chash_init(&h);

  assert(w->base != NULL && chunk_bytes > 0);
  if (err == 0) {
    err = hash_guarded(w, chunk_bytes, out, &h);
  }
  chash_free(&h);
  return err;
}

void maphash_unmap(struct maphash_window *w) {
  if (w->base != NULL) {
    (void)munmap(w->base, w->base_len);
  }
  memset(w, 0, sizeof(*w));
}
