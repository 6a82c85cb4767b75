/* bench/transfer: one seeder, one downloader, one file over loopback.
 *
 * Starts the real binaries ($SHOAL_BIN, default build/bin): shoal-tracker on
 * 127.0.0.1 (ephemeral port), `shoal-peer share FILE` as the seeder and one
 * `shoal-peer get LINK --json` as the downloader, each with its own home,
 * no rate limits. The file is random bytes in a fresh temp folder (1 GiB by
 * default). It measures:
 *
 *   throughput   size / (complete - manifest event): the transfer itself;
 *   wall         size / (complete - get started): with start-up, tracker
 *                lookup and manifest fetch;
 *   CPU per GiB  seeder: utime + stime from /proc/PID/stat just before it is
 *                stopped, minus what it had spent when the get started (so
 *                the hashing done by `share` is left out, and shown apart);
 *                downloader: /proc/PID/stat when the complete event arrives;
 *                each also for the event loop alone (the first thread,
 *                /proc/PID/task/PID/stat), the rest being the thread pool;
 *   page faults  minor faults per GiB, from the same files at the same
 *                moments (a fault per fresh page of a buffer is CPU spent);
 *   cores busy   the two processes' CPU over the wall time, in cores, and
 *                the ceiling it implies: throughput over the limit with
 *                every online core busy for the whole transfer at the CPU
 *                per GiB measured (both sides share this machine's cores);
 *   peak RSS     downloader: wait4's ru_maxrss (it exits by itself);
 *                seeder: VmHWM from /proc/PID/status before it is stopped.
 *
 * Beside them, measured in the same run over the same bytes, the
 * hash-and-decrypt limit: shoal's own pwire_open (ChaCha20-Poly1305 by
 * libcrypto) plus the chunk hash (SHA-256, common/chash.h), 64 KiB blocks,
 * one thread — the work a downloader cannot avoid per byte. The copy is
 * checked against the original by BLAKE2b-256 of the whole file.
 *
 * Then, with shoal stopped, the same file (hard-linked, so the same page
 * cache) served by a stock lighttpd on 127.0.0.1 to curl: once to
 * /dev/null, once to a file beside shoal's copy, flushed with fsync inside
 * the time (shoal flushes its copy before it says complete). It prints
 * shoal's wall time over each HTTP time (target <= 1.0, issue 17), and CPU
 * per GiB of lighttpd (/proc/PID/stat around the fetch) and of curl
 * (wait4's rusage). No lighttpd: that part is skipped, with a message.
 * Last, the per-byte primitives on one core at 16 KiB blocks
 * (bench/lib/cryptorate.c): libsodium's, and OpenSSL's EVP ones, then
 * again with CPU features masked through OPENSSL_ia32cap (SHA extensions
 * and AVX-512 off; then SSSE3 alone), which libcrypto honours and
 * libsodium does not. --primitives prints that table alone.
 *
 * Targets: throughput >= 0.85 x the limit; with --rss (a 4 GiB file unless
 * --size says otherwise) the downloader's peak RSS < 64 MiB. --rss needs
 * 10 GiB free in $TMPDIR and is skipped (exit 0) with a message otherwise.
 * RSS is printed in both modes; only --rss judges it.
 *
 * Every process it starts is stopped by PID and the temp folder removed,
 * also on failure, timeout and SIGINT/SIGTERM (exit 130 / 143).
 * Exit 0 when the run completed and the copy is identical (a figure below
 * its target is reported, not an error), 1 on failure, 2 on bad usage.
 *
 * --crypto-on WHERE passes the option of that name to the seeder and the
 * downloader (auto, loop or pool; their own default, auto, without it),
 * and the run's first line says which.
 *
 * Usage: transfer [--size N[k|M|G]] [--rss] [--timeout SECONDS]
 *                 [--crypto-on auto|loop|pool]
 */
#define _XOPEN_SOURCE 700 /* nftw() is an XSI interface. */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/lib/benchutil.h"
#include "bench/lib/cryptorate.h"
#include "common/chash.h"
#include "common/pwire.h"

#define BLOCK (64u * 1024u)           /* the wire's largest DATA block */
#define GEN_BLOCK (1u << 20)          /* file generation unit */
#define LINE_CAP 16384                /* longest stdout line kept */
#define RSS_TARGET (64ull << 20)      /* downloader peak RSS, --rss */
#define RSS_FREE_NEEDED (10ull << 30) /* disk for --rss: file + copy + room */
#define RSS_DEFAULT_SIZE (4ull << 30)
#define DEFAULT_SIZE (1ull << 30)
#define RATIO_TARGET 0.85  /* issue 17 */
#define STOP_GRACE_MS 5000 /* SIGTERM, then SIGKILL (peer stops in 2 s) */
#define NCHILD 5
#define PRIM_BLOCK (16u * 1024u) /* block size of the primitives' rates */
#define PRIM_SECONDS 0.5         /* time spent on each primitive */
#define HTTP_TARGET 1.0          /* shoal's time over the HTTP time */

enum { TRACKER, SEEDER, GETTER, HTTPD, CURL };

/* One fetch of the file by curl from the stock HTTP server. */
struct http_fetch {
  const char *dest_name; /* where curl writes: "/dev/null" or a file */
  double wall;           /* curl started to exited (+ fsync for a file) */
  double curl_said;      /* curl's own time_total */
  double server_cpu;     /* lighttpd's CPU seconds during the fetch */
  double client_cpu;     /* curl's CPU seconds (wait4's rusage) */
};

struct child {
  const char *name;
  pid_t pid; /* 0: not running (never started or reaped) */
  int out;   /* read end of its stdout, -1 once at EOF */
  char line[LINE_CAP];
  size_t have;
  int overlong; /* dropping the rest of a line longer than LINE_CAP */
  char err_path[4200];
  int exited;
  int status;
  struct rusage ru;
};

/* What a process had spent at one moment (each -1 where unknown): CPU
 * seconds in all and of its first thread (the loop), and minor faults. */
struct spent {
  double cpu, loop;
  int64_t faults;
};

static struct spent spent_of(pid_t pid) {
  struct spent x = {benchutil_cpu_s(pid), benchutil_main_thread_cpu_s(pid),
                    benchutil_minor_faults(pid)};
  return x;
}

struct run {
  struct child c[NCHILD];
  char dir[4096];
  /* From the tracker. */
  char port[16];
  char key[128];
  /* From the seeder. */
  char link[LINE_CAP];
  /* From the downloader. */
  double t_get, t_manifest, t_first_progress, t_complete;
  char path[4200];
  struct spent at_complete;
  uint64_t down_payload, up_payload;
  double reported_s;
  unsigned last_peers;
  char error[512];
  /* From curl: "time_total size_download http_code". */
  double curl_time, curl_bytes, curl_code;
  int curl_line;
};

static volatile sig_atomic_t g_signal;

static void on_signal(int sig) {
  g_signal = sig;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static double mib(double bytes) {
  return bytes / 1048576.0;
}

/* The TCP congestion control new connections here get (the network
 * namespace's default), or "unknown": the figures depend on it (on this
 * machine's loopback, bbr cost each side 0.1-0.2 s of CPU per GiB more
 * than cubic; docs/transfer.md). */
static const char *congestion_control(char *buf, size_t cap) {
  FILE *f = fopen("/proc/sys/net/ipv4/tcp_congestion_control", "r");
  int ok = f != NULL && fgets(buf, (int)cap, f) != NULL;
  if (f != NULL) {
    fclose(f);
  }
  if (!ok || buf[0] == '\0' || buf[0] == '\n') {
    snprintf(buf, cap, "unknown");
  }
  buf[strcspn(buf, "\n")] = '\0';
  return buf;
}

/* ----------------------------------------------------------- arguments */

static void usage(const char *why) {
  fprintf(stderr, "transfer: %s\n", why);
  fprintf(stderr,
          "usage: transfer [--size N[k|M|G]] [--rss] [--timeout SECONDS]\n"
          "                [--crypto-on auto|loop|pool]\n"
          "       transfer --primitives\n");
  exit(2);
}

/* ---------------------------------------------------------- primitives */

/* CPU features masked through OPENSSL_ia32cap (OpenSSL's own switch; its
 * format: ~ clears bits of CPUID leaf 1 ECX:EDX, then after ':' of leaf
 * 7 ECX:EBX). libsodium picks its code by itself and ignores it. */
static const struct {
  const char *what;
  const char *mask;
} g_masks[] = {
    {"no SHA extensions, no AVX-512, no VAES (an AVX2 machine)",
     ":~0x600E0230000"},
    {"SSSE3 only: no AVX, AVX2, AES-NI, PCLMUL or SHA extensions",
     "~0x1A00000200000000:~0x600E02B0128"},
};

static void print_primitives(const struct cryptorate_row *prim, size_t n) {
  for (size_t i = 0; i < n; i++) {
    printf("    %-10s %-24s %8.0f MB/s\n", prim[i].lib, prim[i].name,
           prim[i].mbps);
  }
}

/* The primitives again in a child of this program under each mask. */
static void primitives_masked(void) {
  for (size_t i = 0; i < sizeof(g_masks) / sizeof(g_masks[0]); i++) {
    int st = 0;
    printf("  primitives with OPENSSL_ia32cap=\"%s\": %s\n", g_masks[i].mask,
           g_masks[i].what);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      char *argv_p[] = {"/proc/self/exe", "--primitives", NULL};
      setenv("OPENSSL_ia32cap", g_masks[i].mask, 1);
      execv(argv_p[0], argv_p);
      _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0) {
      printf("    (could not run them)\n");
    }
  }
}

/* --------------------------------------------------------------- files */

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(p);
  return 0;
}

static void rmtree(const char *path) {
  nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* DIR/NAME into out; -1 when it does not fit. */
static int path_join(char *out, size_t cap, const char *dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int read_full(int fd, uint8_t *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return -1;
    }
    got += (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = write(fd, p + put, n - put);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return -1;
    }
    put += (size_t)r;
  }
  return 0;
}

/* Random bytes, 1 MiB at a time, each from its own seed. */
static int make_file(const char *path, uint64_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  uint8_t *b = malloc(GEN_BLOCK);
  uint8_t seed[randombytes_SEEDBYTES];
  int rc = -1;

  if (fd < 0 || b == NULL) {
    goto out;
  }
  randombytes_buf(seed, sizeof(seed));
  for (uint64_t off = 0; off < size && !g_signal; off += GEN_BLOCK) {
    size_t n = size - off < GEN_BLOCK ? (size_t)(size - off) : GEN_BLOCK;
    for (int k = 0; k < 8; k++) {
      seed[k] = (uint8_t)((off / GEN_BLOCK) >> (8 * k));
    }
    randombytes_buf_deterministic(b, n, seed);
    if (write_full(fd, b, n) != 0) {
      goto out;
    }
  }
  rc = g_signal ? -1 : 0;

out:
  if (fd >= 0 && close(fd) != 0) {
    rc = -1;
  }
  free(b);
  return rc;
}

/* BLAKE2b-256 of a whole file. */
static int hash_file(const char *path, uint64_t size, uint8_t h[32]) {
  crypto_generichash_state st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  uint8_t *b = malloc(GEN_BLOCK);
  int rc = -1;
  struct stat sb;

  if (fd < 0 || b == NULL || fstat(fd, &sb) != 0 ||
      (uint64_t)sb.st_size != size) {
    goto out;
  }
  crypto_generichash_init(&st, NULL, 0, 32);
  for (uint64_t off = 0; off < size; off += GEN_BLOCK) {
    size_t n = size - off < GEN_BLOCK ? (size_t)(size - off) : GEN_BLOCK;
    if (read_full(fd, b, n) != 0) {
      goto out;
    }
    crypto_generichash_update(&st, b, n);
  }
  crypto_generichash_final(&st, h, 32);
  rc = 0;

out:
  if (fd >= 0) {
    close(fd);
  }
  free(b);
  return rc;
}

/* The hash-and-decrypt limit over the file's bytes, with shoal's own
 * primitives: each 64 KiB block is sealed by one end of a real pwire
 * session (not timed), then opened by the other and hashed with the chunk
 * hash (timed), as a downloader opens a DATA frame and hashes the
 * plaintext for its chunk; one thread. Only the crypto is timed, not the
 * reads. Also yields the file's BLAKE2b-256 (for the copy's check). */
static int measure_limit(const char *path, uint64_t size, double *bps,
                         uint8_t h[32]) {
  crypto_generichash_state st;
  struct pwire_eph ea, eb;
  struct pwire_session tx, rx;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  uint8_t *msg = malloc(BLOCK + PWIRE_TAG_BYTES);
  uint8_t *out = malloc(BLOCK);
  struct chash ch = {0};
  uint8_t digest[CHASH_BYTES];
  double busy = 0;
  int rc = -1, have_tx = 0, have_rx = 0;

  pwire_eph_generate(&ea);
  pwire_eph_generate(&eb);
  have_tx = pwire_session_init(&tx, &ea, eb.pk, 1) == 0;
  have_rx = pwire_session_init(&rx, &eb, ea.pk, 0) == 0;
  if (fd < 0 || msg == NULL || out == NULL || !have_tx || !have_rx ||
      chash_init(&ch) != 0) {
    goto done;
  }
  crypto_generichash_init(&st, NULL, 0, 32);
  for (uint64_t off = 0; off < size && !g_signal; off += BLOCK) {
    size_t n = size - off < BLOCK ? (size_t)(size - off) : BLOCK;
    if (read_full(fd, msg, n) != 0) {
      goto done;
    }
    crypto_generichash_update(&st, msg, n);
    if (pwire_seal_inplace(&tx, msg, n) != 0) {
      goto done;
    }
    double t0 = now_s();
    if (pwire_open(&rx, msg, n + PWIRE_TAG_BYTES, out, BLOCK) != (int)n ||
        chash_update(&ch, out, n) != 0) {
      goto done;
    }
    busy += now_s() - t0;
  }
  crypto_generichash_final(&st, h, 32);
  (void)chash_final(&ch, digest);
  *bps = busy > 0 ? (double)size / busy : 0;
  rc = g_signal ? -1 : 0;

done:
  if (fd >= 0) {
    close(fd);
  }
  chash_free(&ch);
  if (have_tx) {
    pwire_session_close(&tx);
  }
  if (have_rx) {
    pwire_session_close(&rx);
  }
  pwire_eph_close(&ea);
  pwire_eph_close(&eb);
  free(msg);
  free(out);
  return rc;
}

/* ----------------------------------------------------------- processes */

/* Starts argv[0] with stdout on a pipe and stderr in DIR/NAME.err. The
 * child gets SIGKILL if this process dies, and its own process group so
 * that a terminal's ^C reaches only this process, which then stops it. */
static int spawn(struct run *r, struct child *c, char *const argv[]) {
  int fds[2];
  if (path_join(c->err_path, sizeof(c->err_path), r->dir, c->name) != 0 ||
      strlen(c->err_path) + 5 > sizeof(c->err_path)) {
    return -1;
  }
  memcpy(c->err_path + strlen(c->err_path), ".err", 5);
  int err = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (err < 0) {
    return -1;
  }
  if (pipe(fds) != 0) {
    close(err);
    return -1;
  }
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  pid_t pid = fork();
  if (pid < 0) {
    close(err);
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (devnull >= 0) {
      dup2(devnull, 0);
    }
    dup2(fds[1], 1);
    dup2(err, 2);
    execv(argv[0], argv);
    dprintf(2, "transfer: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(err);
  close(fds[1]);
  c->pid = pid;
  c->out = fds[0];
  c->have = 0;
  c->overlong = 0;
  c->exited = 0;
  fcntl(c->out, F_SETFL, fcntl(c->out, F_GETFL) | O_NONBLOCK);
  return 0;
}

/* A "Key:   N kB" value from /proc/PID/status in bytes, or 0. */
static uint64_t proc_status_kb(pid_t pid, const char *key) {
  char path[64], buf[8192];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  size_t kl = strlen(key);
  for (char *line = buf; line != NULL && *line != '\0';) {
    if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
      return (uint64_t)strtoull(line + kl + 1, NULL, 10) * 1024u;
    }
    line = strchr(line, '\n');
    line = line != NULL ? line + 1 : NULL;
  }
  return 0;
}

static int reap_nohang(struct child *c) {
  if (c->pid <= 0 || c->exited) {
    return c->exited;
  }
  pid_t w = wait4(c->pid, &c->status, WNOHANG, &c->ru);
  if (w == c->pid) {
    c->exited = 1;
  }
  return c->exited;
}

static const char *exit_text(const struct child *c, char *buf, size_t cap) {
  if (WIFEXITED(c->status)) {
    snprintf(buf, cap, "exit %d", WEXITSTATUS(c->status));
  } else if (WIFSIGNALED(c->status)) {
    snprintf(buf, cap, "killed by signal %d", WTERMSIG(c->status));
  } else {
    snprintf(buf, cap, "status %d", c->status);
  }
  return buf;
}

/* SIGTERM, wait with a deadline, then SIGKILL. Returns 0 when it exited 0
 * on SIGTERM (or had already exited 0). */
static int stop_child(struct child *c) {
  if (c->pid <= 0) {
    return 0;
  }
  if (!reap_nohang(c)) {
    kill(c->pid, SIGTERM);
    double deadline = now_s() + STOP_GRACE_MS / 1000.0;
    while (!reap_nohang(c) && now_s() < deadline) {
      pause_ms(10);
    }
    if (!c->exited) {
      kill(c->pid, SIGKILL);
      while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
      }
      c->exited = 1;
      c->status = -1;
    }
  }
  if (c->out >= 0) {
    close(c->out);
    c->out = -1;
  }
  int ok =
      c->status != -1 && WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
  c->pid = 0;
  return ok ? 0 : -1;
}

static void show_err_tail(const struct child *c) {
  char buf[2048];
  int fd = open(c->err_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  off_t end = lseek(fd, 0, SEEK_END);
  off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
  close(fd);
  if (n > 0) {
    buf[n] = '\0';
    fprintf(stderr, "--- %s stderr (last %zd bytes)\n%s", c->name, n, buf);
    if (buf[n - 1] != '\n') {
      fputc('\n', stderr);
    }
  }
}

/* ---------------------------------------------------------- line parse */

/* The value of "key":"..." in a JSON line (no escapes expected in the
 * fields read here; a value with a backslash is refused). */
static int json_str(const char *line, const char *key, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":\"", key);
  const char *p = strstr(line, pat);
  if (p == NULL) {
    return -1;
  }
  p += strlen(pat);
  const char *q = strchr(p, '"');
  if (q == NULL || (size_t)(q - p) >= cap || memchr(p, '\\', (size_t)(q - p))) {
    return -1;
  }
  memcpy(out, p, (size_t)(q - p));
  out[q - p] = '\0';
  return 0;
}

static int json_num(const char *line, const char *key, double *out) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  const char *p = strstr(line, pat);
  if (p == NULL) {
    return -1;
  }
  p += strlen(pat);
  char *end;
  double v = strtod(p, &end);
  if (end == p) {
    return -1;
  }
  *out = v;
  return 0;
}

static int is_event(const char *line, const char *name) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\"event\":\"%s\"", name);
  return strstr(line, pat) != NULL;
}

static void on_line(struct run *r, int who, const char *line, double t) {
  double v;
  if (who == TRACKER) {
    const char *lp = "listening on 127.0.0.1:";
    const char *kp = "tracker key ";
    if (strncmp(line, lp, strlen(lp)) == 0) {
      snprintf(r->port, sizeof(r->port), "%s", line + strlen(lp));
    } else if (strncmp(line, kp, strlen(kp)) == 0) {
      snprintf(r->key, sizeof(r->key), "%s", line + strlen(kp));
    }
    return;
  }
  if (who == CURL) {
    char *end;
    r->curl_time = strtod(line, &end);
    r->curl_bytes = strtod(end, &end);
    r->curl_code = strtod(end, &end);
    r->curl_line = 1;
    return;
  }
  if (who == HTTPD) {
    return;
  }
  if (is_event(line, "error")) {
    char msg[400] = "";
    json_str(line, "message", msg, sizeof(msg));
    snprintf(r->error, sizeof(r->error), "%s: %s", r->c[who].name, msg);
    return;
  }
  if (who == SEEDER) {
    if (is_event(line, "shared") && r->link[0] == '\0') {
      json_str(line, "link", r->link, sizeof(r->link));
    }
    return;
  }
  if (is_event(line, "manifest") && r->t_manifest == 0) {
    r->t_manifest = t;
  } else if (is_event(line, "progress")) {
    if (r->t_first_progress == 0) {
      r->t_first_progress = t;
    }
    if (json_num(line, "peers", &v) == 0) {
      r->last_peers = (unsigned)v;
    }
  } else if (is_event(line, "complete") && r->t_complete == 0) {
    r->t_complete = t;
    r->at_complete = spent_of(r->c[GETTER].pid);
    json_str(line, "path", r->path, sizeof(r->path));
    if (json_num(line, "seconds", &v) == 0) {
      r->reported_s = v;
    }
    if (json_num(line, "downloaded", &v) == 0) {
      r->down_payload = (uint64_t)v;
    }
    if (json_num(line, "uploaded", &v) == 0) {
      r->up_payload = (uint64_t)v;
    }
  }
}

/* Reads what the children wrote, up to timeout_ms, and reaps any that
 * exited. */
static void pump(struct run *r, int timeout_ms) {
  struct pollfd p[NCHILD];
  int idx[NCHILD];
  nfds_t n = 0;
  for (int i = 0; i < NCHILD; i++) {
    if (r->c[i].out >= 0) {
      p[n].fd = r->c[i].out;
      p[n].events = POLLIN;
      p[n].revents = 0;
      idx[n++] = i;
    }
  }
  if (n == 0) {
    pause_ms(timeout_ms);
  } else if (poll(p, n, timeout_ms) > 0) {
    double t = now_s();
    for (nfds_t k = 0; k < n; k++) {
      struct child *c = &r->c[idx[k]];
      if (p[k].revents == 0) {
        continue;
      }
      for (;;) {
        ssize_t got = read(c->out, c->line + c->have, LINE_CAP - 1 - c->have);
        if (got < 0 && errno == EINTR) {
          continue;
        }
        if (got < 0 && errno == EAGAIN) {
          break;
        }
        if (got <= 0) {
          close(c->out);
          c->out = -1;
          break;
        }
        c->have += (size_t)got;
        c->line[c->have] = '\0';
        char *start = c->line;
        char *nl;
        while ((nl = strchr(start, '\n')) != NULL) {
          *nl = '\0';
          if (!c->overlong) {
            on_line(r, idx[k], start, t);
          }
          c->overlong = 0;
          start = nl + 1;
        }
        c->have = strlen(start);
        memmove(c->line, start, c->have);
        if (c->have == LINE_CAP - 1) {
          c->overlong = 1;
          c->have = 0;
        }
      }
    }
  }
  for (int i = 0; i < NCHILD; i++) {
    reap_nohang(&r->c[i]);
  }
}

/* ------------------------------------------------------- HTTP baseline */

/* The first executable NAME in $PATH, then /usr/sbin and /sbin (where
 * Debian puts lighttpd), into out; -1 when there is none. */
static int find_exe(const char *name, char *out, size_t cap) {
  const char *env = getenv("PATH");
  char dirs[4096];
  snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin", env ? env : "/usr/bin");
  for (char *d = dirs, *next; d != NULL; d = next) {
    next = strchr(d, ':');
    if (next != NULL) {
      *next++ = '\0';
    }
    if (d[0] != '\0' && path_join(out, cap, d, name) == 0 &&
        access(out, X_OK) == 0) {
      return 0;
    }
  }
  return -1;
}

/* A free TCP port on 127.0.0.1 (bound, read and released), or 0. */
static unsigned free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  unsigned port = 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return 0;
  }
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

/* 1 once something accepts on 127.0.0.1:port. */
static int port_answers(unsigned port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int ok;
  if (fd < 0) {
    return 0;
  }
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

/* Serves DIR/www, where the test file is hard-linked (same inode, so the
 * same page cache as shoal's seeder read), with a stock lighttpd on
 * 127.0.0.1:*port. 0 once it accepts connections, -1 with a reason in
 * why otherwise. */
static int http_start(struct run *r, const char *file, const char *lighttpd,
                      unsigned *port, char *why, size_t cap) {
  char www[4200], served[4200], conf[4200], log[4200];
  FILE *f;

  if (strpbrk(r->dir, "\"\\") != NULL) {
    snprintf(why, cap, "the temp folder's name holds a quote or backslash");
    return -1;
  }
  if (path_join(www, sizeof(www), r->dir, "www") != 0 ||
      path_join(served, sizeof(served), www, "data.bin") != 0 ||
      path_join(conf, sizeof(conf), r->dir, "lighttpd.conf") != 0 ||
      path_join(log, sizeof(log), r->dir, "lighttpd.log") != 0) {
    snprintf(why, cap, "TMPDIR path too long");
    return -1;
  }
  if (mkdir(www, 0700) != 0 || link(file, served) != 0) {
    snprintf(why, cap, "cannot link the test file into www/: %s",
             strerror(errno));
    return -1;
  }
  *port = free_port();
  if (*port == 0) {
    snprintf(why, cap, "no free port on 127.0.0.1");
    return -1;
  }
  f = fopen(conf, "we");
  if (f == NULL) {
    snprintf(why, cap, "cannot write lighttpd.conf");
    return -1;
  }
  fprintf(f,
          "server.document-root = \"%s\"\n"
          "server.bind = \"127.0.0.1\"\n"
          "server.port = %u\n"
          "server.errorlog = \"%s\"\n"
          "mimetype.assign = ( \"\" => \"application/octet-stream\" )\n",
          www, *port, log);
  if (fclose(f) != 0) {
    snprintf(why, cap, "cannot write lighttpd.conf");
    return -1;
  }
  {
    char *argv_h[] = {(char *)(uintptr_t)lighttpd, "-D", "-f", conf, NULL};
    if (spawn(r, &r->c[HTTPD], argv_h) != 0) {
      snprintf(why, cap, "cannot start lighttpd");
      return -1;
    }
  }
  double deadline = now_s() + 10;
  while (!port_answers(*port)) {
    if (g_signal || r->c[HTTPD].exited || now_s() > deadline) {
      snprintf(why, cap, "%s",
               g_signal             ? "interrupted"
               : r->c[HTTPD].exited ? "lighttpd exited at start"
                                    : "lighttpd did not answer within 10 s");
      return -1;
    }
    pump(r, 20);
  }
  return 0;
}

/* curl fetches the file from 127.0.0.1:port into f->dest_name; a file is
 * then flushed to disk with fsync, inside the time, as shoal's downloader
 * flushes its copy before it says complete. 0 when curl exited 0 with
 * HTTP 200 and `size` bytes. */
static int http_fetch(struct run *r, unsigned port, uint64_t size,
                      double timeout_s, struct http_fetch *f, char *why,
                      size_t cap) {
  char url[64], maxtime[32];
  struct child *c = &r->c[CURL];
  int to_file = strcmp(f->dest_name, "/dev/null") != 0;

  snprintf(url, sizeof(url), "http://127.0.0.1:%u/data.bin", port);
  snprintf(maxtime, sizeof(maxtime), "%.0f", timeout_s);
  r->curl_line = 0;
  double cpu0 = benchutil_cpu_s(r->c[HTTPD].pid);
  double t0 = now_s();
  {
    char *argv_c[] = {"/usr/bin/env",
                      "curl",
                      "-sS",
                      "-f",
                      "--max-time",
                      maxtime,
                      "-o",
                      (char *)(uintptr_t)f->dest_name,
                      "-w",
                      "%{time_total} %{size_download} %{http_code}\\n",
                      url,
                      NULL};
    if (spawn(r, c, argv_c) != 0) {
      snprintf(why, cap, "cannot start curl");
      return -1;
    }
  }
  double deadline = t0 + timeout_s + 10;
  while ((!c->exited || c->out >= 0) && !g_signal && now_s() < deadline) {
    pump(r, 50);
  }
  if (!c->exited) {
    snprintf(why, cap, "%s", g_signal ? "interrupted" : "curl timed out");
    return -1;
  }
  if (to_file) {
    int fd = open(f->dest_name, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
      snprintf(why, cap, "fsync %s: %s", f->dest_name, strerror(errno));
      if (fd >= 0) {
        close(fd);
      }
      return -1;
    }
    close(fd);
  }
  f->wall = now_s() - t0;
  f->server_cpu = benchutil_cpu_s(r->c[HTTPD].pid) - cpu0;
  f->client_cpu = (double)c->ru.ru_utime.tv_sec + c->ru.ru_utime.tv_usec / 1e6 +
                  (double)c->ru.ru_stime.tv_sec + c->ru.ru_stime.tv_usec / 1e6;
  f->curl_said = r->curl_time;
  if (!WIFEXITED(c->status) || WEXITSTATUS(c->status) != 0 || !r->curl_line ||
      r->curl_code != 200 || r->curl_bytes != (double)size) {
    snprintf(why, cap, "curl to %s: exit status %d, HTTP %.0f, %.0f bytes",
             f->dest_name, c->status, r->curl_code, r->curl_bytes);
    return -1;
  }
  stop_child(c);
  return 0;
}

/* ----------------------------------------------------------------- run */

static void cleanup(struct run *r) {
  for (int i = NCHILD - 1; i >= 0; i--) {
    stop_child(&r->c[i]);
  }
  if (r->dir[0] != '\0') {
    rmtree(r->dir);
    r->dir[0] = '\0';
  }
}

static int fail(struct run *r, const char *what) {
  char st[64];
  fprintf(stderr, "transfer: FAILED: %s\n", what);
  if (r->error[0] != '\0') {
    fprintf(stderr, "transfer: reported: %s\n", r->error);
  }
  for (int i = 0; i < NCHILD; i++) {
    if (r->c[i].exited) {
      fprintf(stderr, "transfer: %s: %s\n", r->c[i].name,
              exit_text(&r->c[i], st, sizeof(st)));
    }
    if (r->c[i].pid > 0 || r->c[i].exited) {
      show_err_tail(&r->c[i]);
    }
  }
  return 1;
}

static void hex(const uint8_t *h, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) {
    snprintf(out + 2 * i, 3, "%02x", h[i]);
  }
}

int main(int argc, char **argv) {
  static struct run run; /* large: line buffers */
  struct run *r = &run;
  uint64_t size = 0;
  int rss_mode = 0;
  double timeout_s = 0;
  const char *binenv = getenv("SHOAL_BIN");
  const char *bin = binenv && binenv[0] ? binenv : "build/bin";
  const char *tmpenv = getenv("TMPDIR");
  const char *tmp = tmpenv && tmpenv[0] ? tmpenv : "/tmp";
  char tracker_exe[4200], peer_exe[4200];
  char file[4200], outdir[4200], seed_home[4200], get_home[4200];
  char cc[32];
  char tkey[4200], tlog[4200], taddr[64];
  uint8_t h_orig[32], h_copy[32];
  double limit_bps = 0;
  struct cryptorate_row prim[CRYPTORATE_MAX];
  size_t nprim = 0;
  char lighttpd[4200], curl_copy[4200], http_why[512] = "";
  struct http_fetch fetch[2] = {{.dest_name = "/dev/null"}, {0}};
  int have_http = 0;
  const char *crypto_on = "auto";
  int rc = 1;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
      size = benchutil_parse_size(argv[++i], UINT64_MAX >> 1);
      if (size == 0) {
        usage("--size needs a positive size such as 256M or 1G");
      }
    } else if (strcmp(argv[i], "--rss") == 0) {
      rss_mode = 1;
    } else if (strcmp(argv[i], "--crypto-on") == 0 && i + 1 < argc) {
      crypto_on = argv[++i];
      if (strcmp(crypto_on, "auto") != 0 && strcmp(crypto_on, "loop") != 0 &&
          strcmp(crypto_on, "pool") != 0) {
        usage("--crypto-on needs auto, loop or pool");
      }
    } else if (strcmp(argv[i], "--primitives") == 0) {
      if (sodium_init() < 0) {
        return 1;
      }
      nprim = cryptorate_run(prim, PRIM_BLOCK, PRIM_SECONDS);
      print_primitives(prim, nprim);
      return nprim > 0 ? 0 : 1;
    } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
      char *end;
      unsigned long v = strtoul(argv[++i], &end, 10);
      if (*end != '\0' || v == 0 || v > 86400) {
        usage("--timeout needs whole seconds from 1 to 86400");
      }
      timeout_s = (double)v;
    } else {
      char why[256];
      snprintf(why, sizeof(why), "unknown argument '%s'", argv[i]);
      usage(why);
    }
  }
  if (size == 0) {
    size = rss_mode ? RSS_DEFAULT_SIZE : DEFAULT_SIZE;
  }
  if (timeout_s == 0) {
    /* Generous: 60 s plus 20 MiB/s; a healthy run is far faster. */
    timeout_s = 60.0 + (double)size / (20.0 * 1048576.0);
  }
  if (sodium_init() < 0) {
    return 1;
  }
  for (int i = 0; i < NCHILD; i++) {
    r->c[i].out = -1;
  }
  r->c[TRACKER].name = "tracker";
  r->c[SEEDER].name = "seeder";
  r->c[GETTER].name = "downloader";
  r->c[HTTPD].name = "lighttpd";
  r->c[CURL].name = "curl";

  snprintf(tracker_exe, sizeof(tracker_exe), "%s/shoal-tracker", bin);
  snprintf(peer_exe, sizeof(peer_exe), "%s/shoal-peer", bin);
  if (access(tracker_exe, X_OK) != 0 || access(peer_exe, X_OK) != 0) {
    fprintf(stderr, "transfer: %s or %s missing (run make, or set SHOAL_BIN)\n",
            tracker_exe, peer_exe);
    return 1;
  }

  struct statvfs vfs;
  if (statvfs(tmp, &vfs) != 0) {
    fprintf(stderr, "transfer: statvfs %s: %s\n", tmp, strerror(errno));
    return 1;
  }
  uint64_t free_b = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
  uint64_t need = rss_mode && RSS_FREE_NEEDED > 2 * size + (256u << 20)
                      ? RSS_FREE_NEEDED
                      : 2 * size + (256u << 20);
  if (free_b < need) {
    printf("transfer%s: skipped: %.1f GiB free in %s, needs %.1f GiB\n",
           rss_mode ? " --rss" : "", (double)free_b / 1073741824.0, tmp,
           (double)need / 1073741824.0);
    return rss_mode ? 0 : 1;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  snprintf(r->dir, sizeof(r->dir), "%s/shoal-bench-transfer-XXXXXX", tmp);
  if (mkdtemp(r->dir) == NULL) {
    fprintf(stderr, "transfer: mkdtemp in %s: %s\n", tmp, strerror(errno));
    return 1;
  }
  if (path_join(file, sizeof(file), r->dir, "data.bin") != 0 ||
      path_join(outdir, sizeof(outdir), r->dir, "out") != 0 ||
      path_join(seed_home, sizeof(seed_home), r->dir, "home-seeder") != 0 ||
      path_join(get_home, sizeof(get_home), r->dir, "home-downloader") != 0 ||
      path_join(tkey, sizeof(tkey), r->dir, "tracker.key") != 0 ||
      path_join(tlog, sizeof(tlog), r->dir, "tracker.log") != 0 ||
      path_join(curl_copy, sizeof(curl_copy), r->dir, "curl-copy.bin") != 0) {
    rc = fail(r, "TMPDIR path too long");
    goto out;
  }
  if (mkdir(outdir, 0700) != 0) {
    rc = fail(r, "mkdir out");
    goto out;
  }

  printf("transfer: %.0f MiB of random data, 1 seeder -> 1 downloader over "
         "127.0.0.1, no rate limits, --crypto-on %s, TCP congestion "
         "control %s\n",
         mib((double)size), crypto_on, congestion_control(cc, sizeof(cc)));
  fflush(stdout);
  double t_gen = now_s();
  if (make_file(file, size) != 0) {
    rc = fail(r, g_signal ? "interrupted" : "writing the test file");
    goto out;
  }
  t_gen = now_s() - t_gen;
  if (measure_limit(file, size, &limit_bps, h_orig) != 0) {
    rc = fail(r, g_signal ? "interrupted" : "measuring the limit");
    goto out;
  }
  nprim = cryptorate_run(prim, PRIM_BLOCK, PRIM_SECONDS);

  /* Tracker. */
  {
    char *argv_t[] = {tracker_exe, "--listen",   "127.0.0.1:0", "--key",
                      tkey,        "--log-file", tlog,          NULL};
    if (spawn(r, &r->c[TRACKER], argv_t) != 0) {
      rc = fail(r, "starting the tracker");
      goto out;
    }
    double deadline = now_s() + 10;
    while ((r->port[0] == '\0' || r->key[0] == '\0') && !g_signal &&
           !r->c[TRACKER].exited && now_s() < deadline) {
      pump(r, 100);
    }
    if (r->port[0] == '\0' || r->key[0] == '\0') {
      rc = fail(r, g_signal ? "interrupted"
                            : "the tracker did not print its port and key "
                              "within 10 s");
      goto out;
    }
    if (strlen(r->port) > 5 ||
        strspn(r->port, "0123456789") != strlen(r->port)) {
      rc = fail(r, "the tracker printed a bad port");
      goto out;
    }
    memcpy(taddr, "127.0.0.1:", 10);
    memcpy(taddr + 10, r->port, strlen(r->port) + 1);
  }

  /* Seeder: hashes the file, publishes, prints the link. */
  double t_share = now_s();
  {
    char *argv_s[] = {peer_exe,
                      "share",
                      file,
                      "--tracker",
                      taddr,
                      "--tracker-key",
                      r->key,
                      "--home",
                      seed_home,
                      "--listen",
                      "127.0.0.1:0",
                      "--crypto-on",
                      (char *)(uintptr_t)crypto_on,
                      "--json",
                      NULL};
    if (spawn(r, &r->c[SEEDER], argv_s) != 0) {
      rc = fail(r, "starting the seeder");
      goto out;
    }
    double deadline = now_s() + 60 + (double)size / (50.0 * 1048576.0);
    while (r->link[0] == '\0' && r->error[0] == '\0' && !g_signal &&
           !r->c[SEEDER].exited && now_s() < deadline) {
      pump(r, 100);
    }
    if (r->link[0] == '\0') {
      rc = fail(r, g_signal ? "interrupted"
                            : "the seeder printed no share link in time");
      goto out;
    }
  }
  t_share = now_s() - t_share;
  struct spent seeder_shared = spent_of(r->c[SEEDER].pid);

  /* Downloader: runs until the copy is complete, then exits by itself. */
  {
    char *argv_g[] = {peer_exe,
                      "get",
                      r->link,
                      "-o",
                      outdir,
                      "--home",
                      get_home,
                      "--listen",
                      "127.0.0.1:0",
                      "--crypto-on",
                      (char *)(uintptr_t)crypto_on,
                      "--json",
                      NULL};
    r->t_get = now_s();
    if (spawn(r, &r->c[GETTER], argv_g) != 0) {
      rc = fail(r, "starting the downloader");
      goto out;
    }
    double deadline = r->t_get + timeout_s;
    while (r->t_complete == 0 && !g_signal && !r->c[GETTER].exited &&
           !r->c[SEEDER].exited && now_s() < deadline) {
      pump(r, 50);
    }
    if (r->t_complete == 0) {
      char why[256];
      if (g_signal) {
        snprintf(why, sizeof(why), "interrupted");
      } else if (r->c[GETTER].exited || r->c[SEEDER].exited) {
        snprintf(why, sizeof(why),
                 "a peer exited before the download "
                 "completed");
      } else {
        snprintf(why, sizeof(why), "no complete event within %.0f s",
                 timeout_s);
      }
      rc = fail(r, why);
      goto out;
    }
    deadline = now_s() + 10;
    while (!r->c[GETTER].exited && !g_signal && now_s() < deadline) {
      pump(r, 50);
    }
    if (!r->c[GETTER].exited) {
      rc = fail(r, "the downloader did not exit within 10 s of completing");
      goto out;
    }
    if (!WIFEXITED(r->c[GETTER].status) ||
        WEXITSTATUS(r->c[GETTER].status) != 0) {
      rc = fail(r, "the downloader did not exit 0");
      goto out;
    }
  }

  struct spent seeder_end = spent_of(r->c[SEEDER].pid);
  uint64_t seeder_hwm = proc_status_kb(r->c[SEEDER].pid, "VmHWM");
  if (stop_child(&r->c[SEEDER]) != 0) {
    rc = fail(r, "the seeder did not exit 0 on SIGTERM");
    goto out;
  }
  stop_child(&r->c[TRACKER]);

  if (r->path[0] == '\0') {
    path_join(r->path, sizeof(r->path), outdir, "data.bin");
  }
  if (hash_file(r->path, size, h_copy) != 0) {
    rc = fail(r, "the copy is missing or has the wrong size");
    goto out;
  }
  if (sodium_memcmp(h_orig, h_copy, 32) != 0) {
    rc = fail(r, "the copy differs from the original");
    goto out;
  }

  /* The same bytes from a stock HTTP server to curl, with shoal stopped:
   * to /dev/null, then to a file beside shoal's copy, flushed. */
  fetch[1].dest_name = curl_copy;
  if (find_exe("lighttpd", lighttpd, sizeof(lighttpd)) != 0) {
    snprintf(http_why, sizeof(http_why),
             "lighttpd not found (make deps installs it)");
  } else {
    unsigned port = 0;
    if (http_start(r, file, lighttpd, &port, http_why, sizeof(http_why)) != 0 ||
        http_fetch(r, port, size, timeout_s, &fetch[0], http_why,
                   sizeof(http_why)) != 0 ||
        http_fetch(r, port, size, timeout_s, &fetch[1], http_why,
                   sizeof(http_why)) != 0) {
      rc = fail(r, http_why);
      goto out;
    }
    have_http = 1;
    stop_child(&r->c[HTTPD]);
    remove(curl_copy);
  }

  {
    double gib = (double)size / 1073741824.0;
    double t0 = r->t_manifest != 0 ? r->t_manifest : r->t_first_progress;
    double dl = r->t_complete - (t0 != 0 ? t0 : r->t_get);
    double wall = r->t_complete - r->t_get;
    double tput = (double)size / dl;
    double ratio = tput / limit_bps;
    double cpu_get = r->at_complete.cpu >= 0
                         ? r->at_complete.cpu
                         : (double)r->c[GETTER].ru.ru_utime.tv_sec +
                               r->c[GETTER].ru.ru_utime.tv_usec / 1e6 +
                               r->c[GETTER].ru.ru_stime.tv_sec +
                               r->c[GETTER].ru.ru_stime.tv_usec / 1e6;
    double cpu_seed = seeder_end.cpu - seeder_shared.cpu;
    double cpu_both = cpu_seed + cpu_get;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t get_rss = (uint64_t)r->c[GETTER].ru.ru_maxrss * 1024u;
    double rss_ratio = (double)get_rss / (double)RSS_TARGET;
    char hx[65];
    hex(h_copy, 32, hx);

    printf("  test file written          %6.2f s\n", t_gen);
    printf("  share (hash + publish)     %6.2f s   seeder CPU %.2f s\n",
           t_share, seeder_shared.cpu);
    printf("  download                   %6.2f s  %8.1f MiB/s   (%s to "
           "complete)\n",
           dl, mib(tput), r->t_manifest != 0 ? "manifest" : "first progress");
    printf("  wall                       %6.2f s  %8.1f MiB/s   (get started "
           "to complete; peer says %.2f s)\n",
           wall, mib((double)size / wall), r->reported_s);
    printf("  hash+decrypt limit                   %8.1f MiB/s   (pwire_open "
           "+ SHA-256 chunk hash, 64 KiB blocks, 1 thread)\n",
           mib(limit_bps));
    printf("  throughput / limit         %6.2f     target >= %.2f  %s\n", ratio,
           RATIO_TARGET, ratio >= RATIO_TARGET ? "ok" : "BELOW TARGET");
    printf("  CPU per GiB                seeder %.2f s (serving)   "
           "downloader %.2f s\n",
           cpu_seed / gib, cpu_get / gib);
    if (r->at_complete.loop >= 0 && seeder_end.loop >= 0) {
      printf("    of which the loop        seeder %.2f s             "
             "downloader %.2f s   (the rest: libuv's thread pool)\n",
             (seeder_end.loop - seeder_shared.loop) / gib,
             r->at_complete.loop / gib);
    }
    if (cores > 0 && cpu_both > 0) {
      /* Both processes share this machine's cores: at their CPU per GiB,
       * no schedule moves the GiB faster than every core busy throughout. */
      printf("  cores busy                 %.2f of %ld   (seeder and "
             "downloader CPU over the wall time)\n",
             cpu_both / wall, cores);
      printf("  ceiling at this CPU        %6.2f x the limit   (every core "
             "busy for the whole wall time)\n",
             (double)cores * (double)size / cpu_both / limit_bps);
    }
    if (r->at_complete.faults >= 0 && seeder_end.faults >= 0) {
      printf("  page faults per GiB        seeder %.0f (serving)   downloader "
             "%.0f\n",
             (double)(seeder_end.faults - seeder_shared.faults) / gib,
             (double)r->at_complete.faults / gib);
    }
    printf("  payload received           %.1f MiB (%.3f x size)\n",
           mib((double)r->down_payload),
           (double)r->down_payload / (double)size);
    printf("  peak RSS                   seeder %.1f MiB   downloader %.1f MiB "
           "= %.2f x 64 MiB",
           mib((double)seeder_hwm), mib((double)get_rss), rss_ratio);
    if (rss_mode) {
      printf("   target < 64 MiB  %s",
             get_rss < RSS_TARGET ? "ok" : "ABOVE TARGET");
    }
    printf("\n  copy                       identical, BLAKE2b-256 %.16s...\n",
           hx);
    if (have_http) {
      const struct http_fetch *d = &fetch[1], *n = &fetch[0];
      double time_ratio = wall / d->wall;
      double null_ratio = wall / n->wall;
      printf("  HTTP (lighttpd -> curl, same file, same run, shoal stopped)\n");
      printf("    to a file + fsync        %6.2f s  %8.1f MiB/s   (curl says "
             "%.2f s; beside shoal's copy)\n",
             d->wall, mib((double)size / d->wall), d->curl_said);
      printf("    to /dev/null             %6.2f s  %8.1f MiB/s   (curl says "
             "%.2f s)\n",
             n->wall, mib((double)size / n->wall), n->curl_said);
      printf("    CPU per GiB              to a file: lighttpd %.2f s  curl "
             "%.2f s   to /dev/null: lighttpd %.2f s  curl %.2f s\n",
             d->server_cpu / gib, d->client_cpu / gib, n->server_cpu / gib,
             n->client_cpu / gib);
      printf("  shoal / HTTP time          %6.2f     target <= %.2f  %s   "
             "(shoal wall %.2f s over HTTP to a file %.2f s; download "
             "alone %.2f)\n",
             time_ratio, HTTP_TARGET,
             time_ratio <= HTTP_TARGET ? "ok" : "ABOVE TARGET", wall, d->wall,
             dl / d->wall);
      printf("  shoal / HTTP to /dev/null  %6.2f     target <= %.2f  %s   "
             "(stricter: shoal still writes and flushes its copy)\n",
             null_ratio, HTTP_TARGET,
             null_ratio <= HTTP_TARGET ? "ok" : "ABOVE TARGET");
    } else {
      printf("  HTTP                       skipped: %s\n", http_why);
    }
    printf("  primitives, 1 core, %u KiB blocks (MB/s = 10^6 B/s; OpenSSL: "
           "%s)\n",
           PRIM_BLOCK / 1024u, cryptorate_openssl_version());
    print_primitives(prim, nprim);
    if (!cryptorate_have_openssl()) {
      printf("    OpenSSL                  not built in (no libcrypto: "
             "Debian's libssl-dev)\n");
    } else {
      primitives_masked();
    }
    rc = 0;
  }

out:
  if (g_signal && rc != 0) {
    rc = 128 + g_signal;
  }
  cleanup(r);
  return rc;
}
