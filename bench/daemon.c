/* bench/daemon: what `shoal-peer daemon` costs, against its targets.
 *
 * Over 127.0.0.1, with $SHOAL_BIN (default build/bin): shoal-tracker and
 * the daemon, driven through its API on HOME/api.sock (libcurl, jansson).
 *
 *   restart  A daemon shares one large file (1 GiB) and hashes it whole:
 *            the cost of a first share. It is then stopped (SIGTERM) and
 *            started again on the same home, and from the exec on the
 *            bench times (a) the API answering, (b) the content "seeding"
 *            again from its fast-resume record, and (c) a real peer being
 *            served: a `shoal-peer get LINK` started at (b), until its
 *            "manifest" and its first "progress" with have > 0 (that one
 *            includes the getter's own start and its tracker lookup; its
 *            progress lines come at most every 500 ms). The same restart
 *            with the fast-resume records cut out of HOME/library.json
 *            re-hashes the whole file: warm (the file in the page cache)
 *            and cold (its pages dropped with POSIX_FADV_DONTNEED). Medians
 *            of --reps restarts. Targets: (a) and (b) within 1 s.
 *   many     One daemon shares --contents small files (16 KiB each, every
 *            one distinct), one POST /v1/shares after another, against a
 *            tracker with an announce interval of 60 s and its default
 *            limits per address. Once every content is "seeding", the
 *            daemon is left alone for --idle seconds: its RSS (VmRSS,
 *            VmHWM) and its CPU over the window (utime + stime, as a share
 *            of one core). The tracker logs at debug level, one line a
 *            connection it closes; as the daemon's tracker clients close a
 *            connection after TRACKER_CLIENT_IDLE_MS without requests,
 *            those lines per second are the spread of its announces. Every
 *            refusal the tracker logged is counted. When the tracker
 *            refused anything with its defaults, the case runs again with
 *            its limits per address raised, so that the figures are also
 *            those of a daemon the tracker serves. Targets: RSS under
 *            64 MiB, idle CPU under 1% of one core.
 *
 * Figures are printed as "name: value (target X, ratio Y)". Every process
 * is stopped by PID, every wait has a deadline, and the temp folder is
 * removed at the end, also on failure or SIGINT. Exit 0 when every run
 * completed (whatever the figures), 1 on failure, 2 on bad usage.
 *
 * Usage: daemon [--only restart|many] [--size N[k|M|G]] [--reps N]
 *               [--contents N] [--idle S] [--interval S] [--keep DIR]
 *   --keep DIR keeps the large file in DIR and uses it again next time.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench/lib/benchutil.h"
#include "common/textid.h"
#include "peer/daemon.h"
#include "peer/tracker_client.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/proc.h"
#include "tests/lib/tclient.h"
#include "tests/lib/testutil.h"

#define START_MS 20000       /* a daemon prints its "api" line */
#define EXIT_MS 60000        /* a signalled daemon exits (it says "stopped") */
#define HASH_MS 600000       /* a GiB hashed from a cold disk */
#define SERVE_MS 60000       /* a getter hears of the daemon and gets bytes */
#define POLL_MS 2            /* the API and the getter's output, when timing */
#define API_TIMEOUT_MS 10000 /* one API call */
#define MAX_PROCS 64
#define SMALL_FILE_BYTES (16u << 10)
#define MANY_INTERVAL "60" /* the tracker's announce interval for "many" */
#define RSS_TARGET_KIB (64u << 10)
#define CPU_TARGET 0.01
#define SERVE_TARGET_S 1.0
#define RESP_MAX (64u << 20) /* the largest API reply the bench reads */

struct bench {
  char dir[PROC_PATH_MAX];
  char peer_bin[PROC_PATH_MAX];
  char keep[PROC_PATH_MAX];
  char interval[16]; /* the tracker's announce interval for "many" (s) */
  struct tc_tracker t;
  int tracker_up;
  char tracker_addr[64];
  char tracker_key[TEXTID_STRLEN];
  struct proc procs[MAX_PROCS];
  int nprocs;
  CURL *curl;
  char sock[PROC_PATH_MAX]; /* the API socket of the daemon being driven */
  uint64_t size;
  unsigned reps, contents, idle_s;
};

/* The figures of one run of "many". */
/* One idle window of "many". */
struct window {
  uint64_t from_ms, to_ms; /* wall clock, as the tracker's log stamps */
  uint64_t rss_kib, hwm_kib;
  unsigned threads, fds;
  double cpu, tracker_cpu;
  /* From the tracker's log: announces it registered per second in the
   * window (closed counts them), and refusals in it. */
  unsigned closed, bins_max, bins_empty, refusals;
  double bins_mean;
};

/* The figures of one run of "many". */
struct many_figures {
  double post_s, seeding_s, stop_s;
  double restart_api_s, restart_seeding_s, stop2_s;
  unsigned seeding, failed, errors;
  char error_first[256];
  unsigned seeding1, failed1; /* after the POSTs */
  unsigned seeding2, failed2; /* after the restart */
  struct window w[2];         /* after the POSTs; after a restart */
  unsigned daemon_err_lines;
  char daemon_err_first[256];
  /* From the tracker's log, over the whole run. */
  unsigned refused_per_address, rate_limited, rate_closed, refused_other;
  uint64_t first_refusal_ms, last_refusal_ms;
  char refusal_first[256];
  char tracker_stats[256];
};

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) {
  (void)sig;
  interrupted = 1;
}

static int fail(const char *what) {
  fprintf(stderr, "daemon-bench: %s\n", what);
  return -1;
}

static double now_s(void) {
  return (double)proc_now_ms() / 1000.0;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n) {
  if (n == 0) {
    return 0.0;
  }
  qsort(v, n, sizeof(*v), cmp_double);
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static unsigned parse_count(const char *s, unsigned max) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  return errno == 0 && end != s && *end == '\0' && v > 0 && v <= max
             ? (unsigned)v
             : 0;
}

/* ------------------------------------------------------------------------ */
/* Processes */

static struct proc *start_proc(struct bench *b, const char *name,
                               const char *const *argv) {
  if (b->nprocs == MAX_PROCS) {
    fail("too many processes");
    return NULL;
  }
  struct proc *p = &b->procs[b->nprocs];
  if (proc_start(p, b->dir, name, argv) != 0) {
    fail("cannot start a process");
    return NULL;
  }
  b->nprocs++;
  return p;
}

/* SIGTERM, then SIGKILL at the deadline. Returns the seconds it took to
 * exit by itself, or -1 when it had to be killed. */
static double stop_proc(struct proc *p, int timeout_ms) {
  double t0 = now_s();
  proc_signal(p, SIGTERM);
  if (proc_wait(p, timeout_ms) < 0) {
    fprintf(stderr, "daemon-bench: %s did not exit in %d ms; killed\n", p->name,
            timeout_ms);
    proc_kill(p);
    return -1.0;
  }
  return now_s() - t0;
}

static void stop_all(struct bench *b) {
  for (int i = 0; i < b->nprocs; i++) {
    proc_kill(&b->procs[i]);
  }
  b->nprocs = 0;
  if (b->tracker_up) {
    tc_tracker_stop(&b->t);
    b->tracker_up = 0;
  }
}

/* A shoal-peer daemon on home (a folder under the temp folder), sharing
 * through the bench's tracker; the peer listener on listen. */
static struct proc *start_daemon(struct bench *b, const char *name,
                                 const char *home, const char *listen) {
  const char *argv[] = {
      b->peer_bin, "daemon",        "--home",        home,
      "--tracker", b->tracker_addr, "--tracker-key", b->tracker_key,
      "--listen",  listen,          "--json",        "--no-config",
      NULL};
  tu_path(b->sock, sizeof(b->sock), home, "api.sock");
  return start_proc(b, name, argv);
}

static int start_tracker(struct bench *b, const char *sub, const char **extra) {
  memset(&b->t, 0, sizeof(b->t));
  tu_path(b->t.dir, sizeof(b->t.dir), b->dir, sub);
  if (mkdir(b->t.dir, 0700) != 0 || tc_tracker_start(&b->t, 1, extra) != 0) {
    return fail("the tracker did not start");
  }
  b->tracker_up = 1;
  snprintf(b->tracker_addr, sizeof(b->tracker_addr), "127.0.0.1:%d", b->t.port);
  textid_encode(TEXTID_KEY, b->t.key, b->tracker_key);
  return 0;
}

/* A free TCP port on 127.0.0.1, so that a restarted daemon listens where
 * it listened before, as a configured one would. */
static int free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port = -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) {
    close(fd);
  }
  return port;
}

/* ------------------------------------------------------------------------ */
/* The API */

struct resp {
  char *data;
  size_t len;
  int too_big;
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg) {
  struct resp *r = arg;
  size_t add = sz * n;
  if (r->len + add + 1 > RESP_MAX) {
    r->too_big = 1;
    return 0;
  }
  char *grown = realloc(r->data, r->len + add + 1);
  if (grown == NULL) {
    return 0;
  }
  r->data = grown;
  memcpy(r->data + r->len, p, add);
  r->len += add;
  r->data[r->len] = '\0';
  return add;
}

/* One request to the daemon's API at b->sock: method on /v1/PATH with an
 * optional JSON body. Returns the HTTP status (with the reply's JSON in
 * *out when out is not NULL and it parses; the caller decrefs it), or -1
 * when the daemon cannot be reached. */
static int api(struct bench *b, const char *method, const char *path,
               const char *body, json_t **out) {
  char url[512];
  struct resp r = {NULL, 0, 0};
  struct curl_slist *hdr = NULL;
  long status = -1;
  if (out != NULL) {
    *out = NULL;
  }
  snprintf(url, sizeof(url), "http://localhost/v1/%s", path);
  curl_easy_reset(b->curl);
  curl_easy_setopt(b->curl, CURLOPT_UNIX_SOCKET_PATH, b->sock);
  curl_easy_setopt(b->curl, CURLOPT_URL, url);
  curl_easy_setopt(b->curl, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(b->curl, CURLOPT_TIMEOUT_MS, (long)API_TIMEOUT_MS);
  curl_easy_setopt(b->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(b->curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(b->curl, CURLOPT_WRITEDATA, &r);
  if (body != NULL) {
    hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(b->curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(b->curl, CURLOPT_POSTFIELDS, body);
  }
  if (curl_easy_perform(b->curl) == CURLE_OK) {
    curl_easy_getinfo(b->curl, CURLINFO_RESPONSE_CODE, &status);
    if (out != NULL && r.data != NULL) {
      *out = json_loadb(r.data, r.len, 0, NULL);
    }
  }
  curl_slist_free_all(hdr);
  free(r.data);
  return (int)status;
}

/* The state of content id ("" when the daemon does not answer, "?" when
 * it has no such content). */
static void content_state(struct bench *b, const char *id, char *out,
                          size_t cap) {
  char path[128];
  json_t *o;
  snprintf(path, sizeof(path), "contents/%s", id);
  int st = api(b, "GET", path, NULL, &o);
  const char *s =
      st == 200 ? json_string_value(json_object_get(o, "state")) : NULL;
  snprintf(out, cap, "%s", s != NULL ? s : st < 0 ? "" : "?");
  json_decref(o);
}

/* Polls until the API answers. Returns 0 or -1 at the deadline. */
static int wait_api(struct bench *b, struct proc *d, int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  while (!interrupted && proc_now_ms() < deadline && proc_alive(d)) {
    if (api(b, "GET", "status", NULL, NULL) == 200) {
      return 0;
    }
    proc_pause_ms(POLL_MS);
  }
  fail("the daemon's API did not answer");
  proc_dump(d);
  return -1;
}

/* Polls until content id is "seeding"; names the states seen on the way
 * into trail ("queued>checking>seeding"). Returns 0 or -1. */
static int wait_seeding(struct bench *b, struct proc *d, const char *id,
                        int timeout_ms, int poll_ms, char *trail, size_t cap) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  char state[32], last[32] = "";
  trail[0] = '\0';
  while (!interrupted && proc_now_ms() < deadline && proc_alive(d)) {
    content_state(b, id, state, sizeof(state));
    if (state[0] != '\0' && strcmp(state, last) != 0) {
      size_t n = strlen(trail);
      snprintf(trail + n, cap - n, "%s%s", n > 0 ? ">" : "", state);
      snprintf(last, sizeof(last), "%s", state);
    }
    if (strcmp(state, "seeding") == 0) {
      return 0;
    }
    if (strcmp(state, "failed") == 0 || strcmp(state, "changed") == 0) {
      break;
    }
    proc_pause_ms(poll_ms);
  }
  fprintf(stderr, "daemon-bench: the content did not reach \"seeding\" (%s)\n",
          trail);
  proc_dump(d);
  return -1;
}

/* ------------------------------------------------------------------------ */
/* Files */

/* xorshift64*: fast bytes that no compressor or deduplication undoes. */
static void fill_fast(uint64_t *s, uint8_t *p, size_t len) {
  for (size_t i = 0; i + 8 <= len; i += 8) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    uint64_t v = *s * 0x2545F4914F6CDD1Dull;
    memcpy(p + i, &v, 8);
  }
}

/* Writes size bytes to path, unless a file of that size is there. Returns
 * 0 (*written: whether it wrote) or -1. */
static int make_big_file(const char *path, uint64_t size, int *written) {
  struct stat st;
  *written = 0;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
      (uint64_t)st.st_size == size) {
    return 0;
  }
  size_t chunk = 1u << 20;
  uint8_t *buf = malloc(chunk);
  uint64_t s = 0x5eed5eed5eedull ^ size;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = -1;
  if (buf == NULL || fd < 0) {
    goto out;
  }
  for (uint64_t done = 0; done < size && !interrupted;) {
    size_t n = size - done < chunk ? (size_t)(size - done) : chunk;
    fill_fast(&s, buf, chunk);
    ssize_t w = write(fd, buf, n);
    if (w <= 0) {
      goto out;
    }
    done += (uint64_t)w;
  }
  /* Clean pages, so that POSIX_FADV_DONTNEED can drop them later. */
  if (!interrupted && fdatasync(fd) == 0) {
    rc = 0;
    *written = 1;
  }
out:
  if (fd >= 0) {
    close(fd);
  }
  free(buf);
  return rc;
}

/* The share of path's pages in the page cache, 0..1 (-1 when unknown). */
static double cached_share(const char *path) {
  struct stat st;
  double share = -1.0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
    goto out;
  }
  size_t len = (size_t)st.st_size;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t pages = (len + page - 1) / page;
  void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
  unsigned char *vec = malloc(pages);
  if (m != MAP_FAILED && vec != NULL && mincore(m, len, vec) == 0) {
    size_t in = 0;
    for (size_t i = 0; i < pages; i++) {
      in += vec[i] & 1u;
    }
    share = (double)in / (double)pages;
  }
  free(vec);
  if (m != MAP_FAILED) {
    munmap(m, len);
  }
out:
  if (fd >= 0) {
    close(fd);
  }
  return share;
}

/* Drops path's clean pages from the page cache. Returns 0 or -1. */
static int drop_cache(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return -1;
  }
  int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0 ? 0 : -1;
  close(fd);
  return rc;
}

/* Removes the fast-resume record ("files") of every content of
 * HOME/library.json, so that the next start hashes every file again.
 * Returns 0 or -1. */
static int cut_fast_resume(const char *home) {
  char path[PROC_PATH_MAX], tmp[PROC_PATH_MAX + 8];
  json_error_t e;
  tu_path(path, sizeof(path), home, "library.json");
  snprintf(tmp, sizeof(tmp), "%s.bench", path);
  json_t *lib = json_load_file(path, 0, &e);
  json_t *list = json_object_get(lib, "contents");
  size_t i;
  json_t *c;
  int cut = 0;
  json_array_foreach(list, i, c) {
    cut += json_object_del(c, "files") == 0;
  }
  int rc = cut > 0 && json_dump_file(lib, tmp, JSON_COMPACT) == 0 &&
                   rename(tmp, path) == 0
               ? 0
               : -1;
  json_decref(lib);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* /proc */

/* VmRSS, VmHWM (KiB) and Threads of pid. Returns 0 or -1. */
static int proc_memory(pid_t pid, uint64_t *rss, uint64_t *hwm,
                       unsigned *threads) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return -1;
  }
  *rss = *hwm = 0;
  *threads = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      *rss = strtoull(line + 6, NULL, 10);
    } else if (strncmp(line, "VmHWM:", 6) == 0) {
      *hwm = strtoull(line + 6, NULL, 10);
    } else if (strncmp(line, "Threads:", 8) == 0) {
      *threads = (unsigned)strtoul(line + 8, NULL, 10);
    }
  }
  fclose(f);
  return *rss > 0 ? 0 : -1;
}

static unsigned count_fds(pid_t pid) {
  char path[64];
  unsigned n = 0;
  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  for (int fd = 0; fd < 65536; fd++) {
    char one[96];
    struct stat st;
    snprintf(one, sizeof(one), "%s/%d", path, fd);
    n += lstat(one, &st) == 0;
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* Printing */

static void figure(const char *name, double value, const char *unit,
                   double target, const char *target_text) {
  if (target > 0.0) {
    printf("%s: %.3f %s (target %s, ratio %.2f)\n", name, value, unit,
           target_text, value / target);
  } else {
    printf("%s: %.3f %s\n", name, value, unit);
  }
}

static void machine_facts(void) {
  char line[256], model[160] = "?";
  uint64_t mem_kib = 0;
  struct rlimit rl;
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "model name", 10) == 0 && strchr(line, ':') != NULL) {
      snprintf(model, sizeof(model), "%s", strchr(line, ':') + 2);
      model[strcspn(model, "\n")] = '\0';
      break;
    }
  }
  if (f != NULL) {
    fclose(f);
  }
  f = fopen("/proc/meminfo", "r");
  while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "MemTotal:", 9) == 0) {
      mem_kib = strtoull(line + 9, NULL, 10);
    }
  }
  if (f != NULL) {
    fclose(f);
  }
  printf("machine: %ld cores online (%s), %" PRIu64 " MiB of memory\n",
         sysconf(_SC_NPROCESSORS_ONLN), model, mem_kib >> 10);
  f = fopen("/proc/loadavg", "r");
  if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    printf("machine: load average at start %s\n", line);
  }
  if (f != NULL) {
    fclose(f);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    printf("machine: open files per process %llu\n",
           (unsigned long long)rl.rlim_cur);
  }
}

/* ------------------------------------------------------------------------ */
/* restart */

/* One restart of the daemon on home; times (from the exec) the API
 * answering and content id "seeding". Returns the process or NULL. */
static struct proc *restart(struct bench *b, struct proc *d, const char *home,
                            const char *listen, const char *id,
                            const char *name, double *t0_out, double *api_s,
                            double *seed_s, char *trail, size_t cap) {
  if (stop_proc(d, EXIT_MS) < 0) {
    return NULL;
  }
  double t0 = now_s();
  *t0_out = t0;
  d = start_daemon(b, name, home, listen);
  if (d == NULL || wait_api(b, d, START_MS) != 0) {
    return NULL;
  }
  *api_s = now_s() - t0;
  if (wait_seeding(b, d, id, HASH_MS, POLL_MS, trail, cap) != 0) {
    return NULL;
  }
  *seed_s = now_s() - t0;
  return d;
}

static int has_bytes(const char *line, void *arg) {
  uint64_t have;
  (void)arg;
  return jsonl_u64(line, "have", &have) == 0 && have > 0;
}

/* A getter of link started now: seconds to its "manifest" and to its
 * first progress with have > 0. Returns 0 or -1; it is stopped either way
 * and its folders removed. */
static int time_getter(struct bench *b, const char *link, unsigned run,
                       double *manifest_s, double *bytes_s) {
  char home[PROC_PATH_MAX], out[PROC_PATH_MAX], rel[64], line[PROC_LINE_MAX];
  snprintf(rel, sizeof(rel), "get-home-%u", run);
  tu_path(home, sizeof(home), b->dir, rel);
  snprintf(rel, sizeof(rel), "get-out-%u", run);
  tu_path(out, sizeof(out), b->dir, rel);
  snprintf(rel, sizeof(rel), "getter-%u", run);
  const char *argv[] = {b->peer_bin,   "get",    link,          "-o",
                        out,           "--home", home,          "--listen",
                        "127.0.0.1:0", "--json", "--no-config", NULL};
  int rc = -1;
  if (mkdir(out, 0700) != 0) {
    return fail("cannot make the getter's folder");
  }
  double t0 = now_s();
  struct proc *g = start_proc(b, rel, argv);
  *manifest_s = *bytes_s = -1.0;
  uint64_t deadline = proc_now_ms() + SERVE_MS;
  while (g != NULL && !interrupted && proc_now_ms() < deadline &&
         proc_alive(g)) {
    if (*manifest_s < 0 &&
        proc_find_event(g, "manifest", NULL, NULL, 0, line, sizeof(line))) {
      *manifest_s = now_s() - t0;
    }
    /* A small content may be complete before its first progress line. */
    if (proc_find_event(g, "progress", has_bytes, NULL, 0, line,
                        sizeof(line)) ||
        proc_find_event(g, "complete", NULL, NULL, 0, line, sizeof(line))) {
      *bytes_s = now_s() - t0;
      rc = 0;
      break;
    }
    proc_pause_ms(POLL_MS);
  }
  if (rc != 0) {
    fail("the getter got no bytes");
    if (g != NULL) {
      proc_dump(g);
    }
  }
  if (g != NULL) {
    stop_proc(g, EXIT_MS);
  }
  tu_rmtree(home);
  tu_rmtree(out);
  return rc;
}

static int run_restart(struct bench *b) {
  char big[PROC_PATH_MAX], home[PROC_PATH_MAX], listen[32],
      body[PROC_PATH_MAX + 32];
  char id[TEXTID_STRLEN] = "", link[LINK_MAX_CHARS + 1] = "", trail[256];
  char name[32];
  double api_v[16], seed_v[16], man_v[16], bytes_v[16], total_v[16];
  double hash_api[16], hash_seed[16];
  unsigned reps = b->reps;
  int written, rc = -1;
  struct proc *d = NULL;

  printf("\n== restart: one %" PRIu64 " MiB share, %u restarts\n",
         b->size >> 20, reps);
  if (b->keep[0] != '\0') {
    char rel[64];
    snprintf(rel, sizeof(rel), "shoal-bench-daemon-%" PRIu64 ".bin", b->size);
    tu_path(big, sizeof(big), b->keep, rel);
  } else {
    tu_path(big, sizeof(big), b->dir, "big.bin");
  }
  double t0 = now_s();
  if (make_big_file(big, b->size, &written) != 0) {
    return fail("cannot write the large file");
  }
  if (written) {
    printf("file: %s written in %.2f s\n", big, now_s() - t0);
  } else {
    printf("file: %s (reused)\n", big);
  }
  printf("file: %.0f%% of its pages in the page cache before the first "
         "hashing\n",
         cached_share(big) * 100.0);

  if (start_tracker(b, "tracker-restart", NULL) != 0) {
    return -1;
  }
  int port = free_port();
  if (port <= 0) {
    return fail("no free port");
  }
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  tu_path(home, sizeof(home), b->dir, "home-restart");
  d = start_daemon(b, "daemon-r0", home, listen);
  if (d == NULL || wait_api(b, d, START_MS) != 0) {
    goto out;
  }

  /* The first share: the whole file hashed. */
  json_t *req = json_pack("{s:s}", "path", big);
  char *text = json_dumps(req, JSON_COMPACT);
  snprintf(body, sizeof(body), "%s", text != NULL ? text : "");
  free(text);
  json_decref(req);
  t0 = now_s();
  if (api(b, "POST", "shares", body, NULL) != 202) {
    fail("POST /v1/shares was not accepted");
    goto out;
  }
  uint64_t deadline = proc_now_ms() + HASH_MS;
  while (!interrupted && proc_now_ms() < deadline && proc_alive(d)) {
    json_t *o;
    if (api(b, "GET", "contents", NULL, &o) == 200) {
      json_t *c = json_array_get(json_object_get(o, "contents"), 0);
      const char *s = json_string_value(json_object_get(c, "state"));
      const char *cid = json_string_value(json_object_get(c, "id"));
      const char *l = json_string_value(json_object_get(c, "link"));
      if (s != NULL && strcmp(s, "seeding") == 0 && cid != NULL && l != NULL) {
        snprintf(id, sizeof(id), "%s", cid);
        snprintf(link, sizeof(link), "%s", l);
      }
    }
    json_decref(o);
    if (id[0] != '\0') {
      break;
    }
    proc_pause_ms(20);
  }
  if (id[0] == '\0') {
    fail("the share did not reach \"seeding\"");
    proc_dump(d);
    goto out;
  }
  double hash_s = now_s() - t0;
  figure("first share, hashed whole (POST to seeding)", hash_s, "s", 0, "");
  printf("first share: %.0f MiB/s\n", (double)(b->size >> 20) / hash_s);

  /* Restarts from the fast-resume record, each followed by a getter. */
  for (unsigned i = 0; i < reps; i++) {
    snprintf(name, sizeof(name), "daemon-r%u", i + 1);
    double t_exec;
    d = restart(b, d, home, listen, id, name, &t_exec, &api_v[i], &seed_v[i],
                trail, sizeof(trail));
    if (d == NULL) {
      goto out;
    }
    /* From the daemon's exec: (b), a getter started, its first bytes. */
    double t_get = now_s();
    if (time_getter(b, link, i, &man_v[i], &bytes_v[i]) != 0) {
      goto out;
    }
    total_v[i] = (t_get - t_exec) + bytes_v[i];
    printf("restart %u: api %.3f s, seeding %.3f s (%s), getter manifest "
           "%.3f s, first bytes %.3f s\n",
           i + 1, api_v[i], seed_v[i], trail, man_v[i], bytes_v[i]);
  }
  figure("restart to API answering (median)", median(api_v, reps), "s",
         SERVE_TARGET_S, "1 s");
  figure("restart to seeding, fast resume (median)", median(seed_v, reps), "s",
         SERVE_TARGET_S, "1 s");
  figure("restart to a peer served: exec to the getter's first bytes "
         "(median)",
         median(total_v, reps), "s", 0, "");
  figure("  of which the getter, from its exec to its manifest (median)",
         median(man_v, reps), "s", 0, "");
  figure("  of which the getter, from its exec to its first bytes (median)",
         median(bytes_v, reps), "s", 0, "");

  /* The same restart with no fast-resume record: a whole re-hash. */
  for (unsigned i = 0; i < reps; i++) {
    /* The daemon writes the library when it stops: cut it after. */
    if (stop_proc(d, EXIT_MS) < 0 || cut_fast_resume(home) != 0) {
      fail("cannot cut the fast-resume record out of library.json");
      d = NULL;
      goto out;
    }
    double t1 = now_s();
    snprintf(name, sizeof(name), "daemon-h%u", i + 1);
    d = start_daemon(b, name, home, listen);
    if (d == NULL || wait_api(b, d, START_MS) != 0) {
      goto out;
    }
    hash_api[i] = now_s() - t1;
    if (wait_seeding(b, d, id, HASH_MS, 10, trail, sizeof(trail)) != 0) {
      goto out;
    }
    hash_seed[i] = now_s() - t1;
    printf("restart without fast resume %u: api %.3f s, seeding %.3f s "
           "(%s)\n",
           i + 1, hash_api[i], hash_seed[i], trail);
  }
  figure("restart to seeding, no fast-resume record, warm cache (median)",
         median(hash_seed, reps), "s", SERVE_TARGET_S, "1 s");

  /* Once more with the file's pages dropped from the page cache. */
  if (stop_proc(d, EXIT_MS) < 0 || cut_fast_resume(home) != 0) {
    fail("cannot cut the fast-resume record out of library.json");
    d = NULL;
    goto out;
  }
  int dropped = drop_cache(big);
  printf("file: %.0f%% of its pages in the page cache before the cold "
         "restart%s\n",
         cached_share(big) * 100.0,
         dropped == 0 ? "" : " (POSIX_FADV_DONTNEED failed)");
  double t2 = now_s();
  d = start_daemon(b, "daemon-cold", home, listen);
  if (d == NULL || wait_api(b, d, START_MS) != 0 ||
      wait_seeding(b, d, id, HASH_MS, 10, trail, sizeof(trail)) != 0) {
    goto out;
  }
  figure("restart to seeding, no fast-resume record, cold cache", now_s() - t2,
         "s", SERVE_TARGET_S, "1 s");

  /* And a recheck through the API, for the hashing alone. The content
   * leaves the node first (its "stopped" goes to the tracker), so it may
   * show "seeding" for a while after the 202. */
  {
    char path[128], state[32], reply_state[32] = "?";
    json_t *o;
    double left_s = -1.0;
    snprintf(path, sizeof(path), "contents/%s/recheck", id);
    double t3 = now_s();
    int st = api(b, "POST", path, "{}", &o);
    const char *rs = json_string_value(json_object_get(o, "state"));
    snprintf(reply_state, sizeof(reply_state), "%s", rs != NULL ? rs : "?");
    json_decref(o);
    if (st != 202) {
      fail("POST /v1/contents/ID/recheck was not accepted");
      goto out;
    }
    deadline = proc_now_ms() + SERVE_MS;
    while (!interrupted && proc_now_ms() < deadline && left_s < 0) {
      content_state(b, id, state, sizeof(state));
      if (strcmp(state, "seeding") != 0) {
        left_s = now_s() - t3;
        break;
      }
      proc_pause_ms(POLL_MS);
    }
    if (left_s < 0 ||
        wait_seeding(b, d, id, HASH_MS, 10, trail, sizeof(trail)) != 0) {
      fail("the recheck did not leave and come back to \"seeding\"");
      goto out;
    }
    printf("recheck: the 202 says \"%s\"; GET shows \"seeding\" until "
           "%.3f s, then %s\n",
           reply_state, left_s, trail);
    figure("POST /v1/contents/ID/recheck to seeding (warm cache)", now_s() - t3,
           "s", 0, "");
  }
  double stop_s = stop_proc(d, EXIT_MS);
  d = NULL;
  figure("daemon stop with one content (SIGTERM to exit)", stop_s, "s", 0, "");
  rc = 0;
out:
  (void)d;
  stop_all(b);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* many */

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" at the start of a log line, as unix ms; 0
 * when the line does not start so. */
static uint64_t log_stamp_ms(const char *line) {
  static const int at[] = {0, 5, 8, 11, 14, 17, 20};
  static const int len[] = {4, 2, 2, 2, 2, 2, 3};
  long v[7];
  for (int i = 0; i < 7; i++) {
    v[i] = 0;
    for (int k = 0; k < len[i]; k++) {
      char c = line[at[i] + k];
      if (c < '0' || c > '9') {
        return 0;
      }
      v[i] = v[i] * 10 + (c - '0');
    }
  }
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = (int)v[0] - 1900;
  tm.tm_mon = (int)v[1] - 1;
  tm.tm_mday = (int)v[2];
  tm.tm_hour = (int)v[3];
  tm.tm_min = (int)v[4];
  tm.tm_sec = (int)v[5];
  time_t s = timegm(&tm);
  return s < 0 ? 0 : (uint64_t)s * 1000u + (uint64_t)v[6];
}

/* Counts a refusal at time t into the figures and the windows. */
static void count_refusal(struct many_figures *f, uint64_t t,
                          const char *line) {
  if (f->first_refusal_ms == 0) {
    f->first_refusal_ms = t;
    snprintf(f->refusal_first, sizeof(f->refusal_first), "%s", line);
  }
  f->last_refusal_ms = t;
  for (int k = 0; k < 2; k++) {
    f->w[k].refusals += t >= f->w[k].from_ms && t < f->w[k].to_ms;
  }
}

/* Reads the tracker's log: refusals over the whole run, and the announces
 * it registered in each window, per second. */
static void read_tracker_log(const struct bench *b, struct many_figures *f) {
  size_t len;
  char *text = tu_read_text(b->t.log_path, &len);
  unsigned *bins[2] = {NULL, NULL};
  unsigned nbins[2];
  for (int k = 0; k < 2; k++) {
    nbins[k] = (unsigned)((f->w[k].to_ms - f->w[k].from_ms + 999) / 1000);
    bins[k] = calloc(nbins[k] > 0 ? nbins[k] : 1, sizeof(unsigned));
  }
  if (text == NULL || bins[0] == NULL || bins[1] == NULL) {
    fail("cannot read the tracker's log");
    goto out;
  }
  for (char *line = text; line != NULL && *line != '\0';) {
    char *nl = strchr(line, '\n');
    if (nl != NULL) {
      *nl = '\0';
    }
    uint64_t t = log_stamp_ms(line);
    if (strstr(line, "stopped after") != NULL) {
      snprintf(f->tracker_stats, sizeof(f->tracker_stats), "%s",
               strstr(line, "stopped after"));
    } else if (strstr(line, "limit per address") != NULL) {
      f->refused_per_address++;
      count_refusal(f, t, line);
    } else if (strstr(line, "rate limit for") != NULL) {
      f->rate_limited++;
      count_refusal(f, t, line);
    } else if (strstr(line, "ignored the rate limit") != NULL) {
      f->rate_closed++;
      count_refusal(f, t, line);
    } else if (strstr(line, "refused") != NULL) {
      f->refused_other++;
      count_refusal(f, t, line);
    } else if (strstr(line, "tracker: announce from") != NULL) {
      for (int k = 0; k < 2; k++) {
        if (t >= f->w[k].from_ms && t < f->w[k].to_ms) {
          bins[k][(t - f->w[k].from_ms) / 1000]++;
          f->w[k].closed++;
        }
      }
    }
    line = nl != NULL ? nl + 1 : NULL;
  }
  for (int k = 0; k < 2; k++) {
    struct window *w = &f->w[k];
    for (unsigned i = 0; i < nbins[k]; i++) {
      w->bins_max = bins[k][i] > w->bins_max ? bins[k][i] : w->bins_max;
      w->bins_empty += bins[k][i] == 0;
    }
    w->bins_mean = nbins[k] > 0 ? (double)w->closed / nbins[k] : 0.0;
  }
out:
  free(bins[0]);
  free(bins[1]);
  free(text);
}

static int count_err_line(const char *line, void *arg) {
  struct many_figures *f = arg;
  if (f->daemon_err_lines++ == 0) {
    snprintf(f->daemon_err_first, sizeof(f->daemon_err_first), "%s", line);
  }
  return 0;
}

/* Polls GET /v1/contents every 250 ms until every one of b->contents has
 * settled: seeding, or failed or changed (which it stays without help).
 * Returns 0 (f->seeding, f->failed, f->errors, f->error_first: the counts
 * then) or -1 at the deadline. */
static int wait_all_settled(struct bench *b, struct proc *d,
                            struct many_figures *f) {
  /* Generous: a start may wait for the daemon's next tick. */
  uint64_t deadline = proc_now_ms() + 120000u + 500u * b->contents;
  while (!interrupted && proc_now_ms() < deadline && proc_alive(d)) {
    json_t *o, *c;
    size_t i;
    unsigned seeding = 0, failed = 0, errors = 0, n = 0;
    if (api(b, "GET", "contents", NULL, &o) == 200) {
      json_array_foreach(json_object_get(o, "contents"), i, c) {
        const char *st = json_string_value(json_object_get(c, "state"));
        const char *err = json_string_value(json_object_get(c, "error"));
        n++;
        seeding += st != NULL && strcmp(st, "seeding") == 0;
        failed += st != NULL &&
                  (strcmp(st, "failed") == 0 || strcmp(st, "changed") == 0);
        if (err != NULL && errors++ == 0) {
          snprintf(f->error_first, sizeof(f->error_first), "%s", err);
        }
      }
    }
    json_decref(o);
    f->seeding = seeding;
    f->failed = failed;
    f->errors = errors;
    if (n == b->contents && seeding + failed == n) {
      return 0;
    }
    proc_pause_ms(250);
  }
  fprintf(stderr, "daemon-bench: %u of %u contents seeding, %u failed\n",
          f->seeding, b->contents, f->failed);
  proc_dump(d);
  return -1;
}

/* Waits out the requests a settled daemon still has queued for its
 * tracker: every content publishes and announces once, and the daemon's
 * tracker client sends at most TRACKER_CLIENT_RATE requests a second, so
 * the last of them leaves by then. The idle window starts after it. */
static void wait_announced(const struct bench *b, unsigned per_content) {
  uint64_t ms = (uint64_t)b->contents * per_content * 1000u / 40u;
  uint64_t until = proc_now_ms() + ms;
  printf("waiting %.1f s for the paced publishes and announces (%u a "
         "content at 40 a second) before the idle window\n",
         (double)ms / 1000.0, per_content);
  fflush(stdout);
  while (!interrupted && proc_now_ms() < until) {
    proc_pause_ms(100);
  }
}

/* Leaves the daemon alone for b->idle_s seconds, then reads its figures.
 * Returns 0 or -1. */
static int idle_window(struct bench *b, struct proc *d, struct window *w) {
  int64_t ticks0 = benchutil_cpu_ticks(d->pid);
  int64_t tticks0 = benchutil_cpu_ticks(b->t.pid);
  double t0 = now_s();
  w->from_ms = wall_ms();
  for (unsigned s = 0; s < b->idle_s && !interrupted && proc_alive(d); s++) {
    proc_pause_ms(1000);
  }
  int64_t ticks1 = benchutil_cpu_ticks(d->pid);
  int64_t tticks1 = benchutil_cpu_ticks(b->t.pid);
  double span = now_s() - t0;
  w->to_ms = wall_ms();
  if (interrupted || ticks0 < 0 || ticks1 < 0 ||
      proc_memory(d->pid, &w->rss_kib, &w->hwm_kib, &w->threads) != 0) {
    return fail("the daemon ended during the idle window");
  }
  double hz = (double)sysconf(_SC_CLK_TCK);
  w->cpu = (double)(ticks1 - ticks0) / hz / span;
  w->tracker_cpu = tticks0 >= 0 && tticks1 >= 0
                       ? (double)(tticks1 - tticks0) / hz / span
                       : -1.0;
  w->fds = count_fds(d->pid);
  return 0;
}

/* One run of "many" against a tracker with extra arguments: the POSTs,
 * an idle window, a restart, another idle window. */
static int run_many_once(struct bench *b, const char *tag, const char **extra,
                         struct many_figures *f) {
  char home[PROC_PATH_MAX], files[PROC_PATH_MAX], rel[64], name[64];
  char path[PROC_PATH_MAX];
  uint8_t *data = malloc(SMALL_FILE_BYTES);
  int rc = -1;
  struct proc *d = NULL;

  memset(f, 0, sizeof(*f));
  snprintf(rel, sizeof(rel), "tracker-%s", tag);
  if (data == NULL || start_tracker(b, rel, extra) != 0) {
    free(data);
    return -1;
  }
  snprintf(rel, sizeof(rel), "files-%s", tag);
  tu_path(files, sizeof(files), b->dir, rel);
  if (mkdir(files, 0700) != 0) {
    fail("cannot make the files' folder");
    goto out;
  }
  for (unsigned i = 0; i < b->contents; i++) {
    uint64_t s = 0x9e3779b97f4a7c15ull * (i + 1) + (uint64_t)(tag[0]);
    fill_fast(&s, data, SMALL_FILE_BYTES);
    snprintf(name, sizeof(name), "f%05u.bin", i);
    tu_write_file(files, name, data, SMALL_FILE_BYTES);
  }
  snprintf(rel, sizeof(rel), "home-%s", tag);
  tu_path(home, sizeof(home), b->dir, rel);
  snprintf(name, sizeof(name), "daemon-%s", tag);
  d = start_daemon(b, name, home, "127.0.0.1:0");
  if (d == NULL || wait_api(b, d, START_MS) != 0) {
    goto out;
  }

  double t0 = now_s();
  for (unsigned i = 0; i < b->contents && !interrupted; i++) {
    char body[PROC_PATH_MAX + 64];
    snprintf(name, sizeof(name), "f%05u.bin", i);
    tu_path(path, sizeof(path), files, name);
    json_t *req = json_pack("{s:s}", "path", path);
    char *text = json_dumps(req, JSON_COMPACT);
    snprintf(body, sizeof(body), "%s", text != NULL ? text : "");
    free(text);
    json_decref(req);
    int st = api(b, "POST", "shares", body, NULL);
    if (st != 202) {
      fprintf(stderr, "daemon-bench: POST /v1/shares %s: %d\n", name, st);
      goto out;
    }
  }
  f->post_s = now_s() - t0;
  if (wait_all_settled(b, d, f) != 0) {
    goto out;
  }
  f->seeding_s = now_s() - t0;
  f->seeding1 = f->seeding;
  f->failed1 = f->failed;
  wait_announced(b, 2);
  if (idle_window(b, d, &f->w[0]) != 0) {
    goto out;
  }

  /* A restart: every content starts again through the daemon's queue. */
  f->stop_s = stop_proc(d, EXIT_MS);
  if (f->stop_s < 0) {
    goto out;
  }
  proc_each_line(d, 1, count_err_line, f);
  snprintf(name, sizeof(name), "daemon-%s-2", tag);
  t0 = now_s();
  d = start_daemon(b, name, home, "127.0.0.1:0");
  if (d == NULL || wait_api(b, d, START_MS) != 0) {
    goto out;
  }
  f->restart_api_s = now_s() - t0;
  if (wait_all_settled(b, d, f) != 0) {
    goto out;
  }
  f->restart_seeding_s = now_s() - t0;
  f->seeding2 = f->seeding;
  f->failed2 = f->failed;
  wait_announced(b, 2);
  if (idle_window(b, d, &f->w[1]) != 0) {
    goto out;
  }
  f->stop2_s = stop_proc(d, EXIT_MS);
  proc_each_line(d, 1, count_err_line, f);
  d = NULL;
  tc_tracker_stop(&b->t);
  b->tracker_up = 0;
  read_tracker_log(b, f);
  rc = 0;
out:
  (void)d;
  free(data);
  stop_all(b);
  return rc;
}

static void print_window(const struct bench *b, const char *title,
                         const struct window *w) {
  char name[160];
  snprintf(name, sizeof(name), "daemon RSS (VmRSS), idle %s", title);
  figure(name, (double)w->rss_kib / 1024.0, "MiB", RSS_TARGET_KIB / 1024.0,
         "64 MiB");
  snprintf(name, sizeof(name), "daemon peak RSS (VmHWM), %s", title);
  figure(name, (double)w->hwm_kib / 1024.0, "MiB", RSS_TARGET_KIB / 1024.0,
         "64 MiB");
  snprintf(name, sizeof(name), "daemon CPU, idle %s, share of one core", title);
  figure(name, w->cpu * 100.0, "%", CPU_TARGET * 100.0, "1%");
  if (w->tracker_cpu >= 0) {
    snprintf(name, sizeof(name),
             "tracker CPU in that window, share of one core");
    figure(name, w->tracker_cpu * 100.0, "%", 0, "");
  }
  printf("daemon threads: %u, open descriptors: %u\n", w->threads, w->fds);
  printf("announces the tracker registered in that window: %u over %u s, per "
         "second max %u, mean %.2f "
         "(max/mean %.1f), %u seconds with none; refusals in it: %u\n",
         w->closed, b->idle_s, w->bins_max, w->bins_mean,
         w->bins_mean > 0 ? w->bins_max / w->bins_mean : 0.0, w->bins_empty,
         w->refusals);
}

static void print_many(const struct bench *b, const char *title,
                       const struct many_figures *f) {
  printf("-- %s\n", title);
  printf("POST /v1/shares x %u: %.2f s\n", b->contents, f->post_s);
  printf("settled %.1f s after the first POST: %u seeding, %u failed "
         "(%.1f contents a second)\n",
         f->seeding_s, f->seeding1, f->failed1, b->contents / f->seeding_s);
  print_window(b, "after the POSTs", &f->w[0]);
  figure("daemon stop (SIGTERM to exit, \"stopped\" to the tracker)", f->stop_s,
         "s", 0, "");
  printf("restart: API answering after %.3f s; settled after %.1f s: %u "
         "seeding, %u failed (%.1f contents a second; the queue starts at "
         "most %u a second)\n",
         f->restart_api_s, f->restart_seeding_s, f->seeding2, f->failed2,
         b->contents / f->restart_seeding_s, DAEMON_STARTS_PER_S);
  print_window(b, "after the restart", &f->w[1]);
  if (f->stop2_s >= 0) {
    figure("daemon stop after the restart", f->stop2_s, "s", 0, "");
  } else {
    printf("daemon stop after the restart: did not exit in %d ms (killed)\n",
           EXIT_MS);
  }
  printf("contents with an error at the end: %u%s%s\n", f->errors,
         f->errors > 0 ? "; the first: " : "", f->error_first);
  printf("tracker refusals over the run: %u connections over the limit per "
         "address, %u rate-limited requests, %u closed for ignoring "
         "retry-after, %u other refusals\n",
         f->refused_per_address, f->rate_limited, f->rate_closed,
         f->refused_other);
  if (f->first_refusal_ms != 0) {
    printf("tracker: refusals from %+.1f s to %+.1f s of the first "
           "window's start; the first: %s\n",
           ((double)f->first_refusal_ms - (double)f->w[0].from_ms) / 1000.0,
           ((double)f->last_refusal_ms - (double)f->w[0].from_ms) / 1000.0,
           f->refusal_first);
  }
  if (f->tracker_stats[0] != '\0') {
    printf("tracker: %s\n", f->tracker_stats);
  }
  printf("daemon stderr: %u lines%s%s\n", f->daemon_err_lines,
         f->daemon_err_lines > 0 ? "; the first: " : "", f->daemon_err_first);
}

static int run_many(struct bench *b) {
  struct many_figures def, raised;
  const char *extra_def[] = {"--interval", b->interval, "--log-level", "debug",
                             NULL};
  const char *extra_raised[] = {"--interval",
                                b->interval,
                                "--log-level",
                                "debug",
                                "--max-connections",
                                "8192",
                                "--max-per-address",
                                "8192",
                                "--rate",
                                "2000",
                                "--burst",
                                "8000",
                                NULL};
  printf("\n== many: %u contents of %u KiB in one daemon, announce interval "
         "%s s, idle windows of %u s\n",
         b->contents, SMALL_FILE_BYTES >> 10, b->interval, b->idle_s);
  if (run_many_once(b, "default", extra_def, &def) != 0) {
    return -1;
  }
  print_many(b, "tracker with its default limits per address", &def);
  if (def.refused_per_address + def.rate_limited + def.rate_closed +
          def.refused_other ==
      0) {
    printf("the tracker refused nothing with its defaults\n");
    return 0;
  }
  printf("the tracker refused requests with its defaults: once more with "
         "its limits per address raised\n");
  if (run_many_once(b, "raised", extra_raised, &raised) != 0) {
    return -1;
  }
  print_many(b, "tracker with its limits per address raised", &raised);
  return 0;
}

/* ------------------------------------------------------------------------ */

static int usage(void) {
  fprintf(stderr,
          "usage: daemon [--only restart|many] [--size N[k|M|G]] [--reps N]\n"
          "              [--contents N] [--idle S] [--interval S] [--keep "
          "DIR]\n");
  return 2;
}

int main(int argc, char **argv) {
  struct bench b;
  const char *only = NULL;
  const char *bin = getenv("SHOAL_BIN");
  struct sigaction sa;
  int rc = 1;

  memset(&b, 0, sizeof(b));
  b.size = 1ull << 30;
  b.reps = 3;
  b.contents = 1000;
  b.idle_s = 60;
  snprintf(b.interval, sizeof(b.interval), "%s", MANY_INTERVAL);
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) {
      return usage();
    }
    if (strcmp(argv[i], "--only") == 0 &&
        (strcmp(v, "restart") == 0 || strcmp(v, "many") == 0)) {
      only = v;
    } else if (strcmp(argv[i], "--size") == 0 &&
               (b.size = benchutil_parse_size(v, 16ull << 30)) != 0) {
    } else if (strcmp(argv[i], "--reps") == 0 &&
               (b.reps = parse_count(v, 15)) != 0) {
    } else if (strcmp(argv[i], "--contents") == 0 &&
               (b.contents = parse_count(v, 99999)) != 0) {
    } else if (strcmp(argv[i], "--interval") == 0 &&
               parse_count(v, 86400) != 0) {
      snprintf(b.interval, sizeof(b.interval), "%s", v);
    } else if (strcmp(argv[i], "--idle") == 0 &&
               (b.idle_s = parse_count(v, 86400)) != 0) {
    } else if (strcmp(argv[i], "--keep") == 0 && v[0] == '/') {
      snprintf(b.keep, sizeof(b.keep), "%s", v);
    } else {
      return usage();
    }
    i++;
  }
  if (bin == NULL || bin[0] == '\0') {
    bin = "build/bin";
    setenv("SHOAL_BIN", bin, 1);
  }
  snprintf(b.peer_bin, sizeof(b.peer_bin), "%s/shoal-peer", bin);
  if (access(b.peer_bin, X_OK) != 0) {
    fprintf(stderr, "daemon-bench: no %s (make, or set SHOAL_BIN)\n",
            b.peer_bin);
    return 1;
  }
  {
    /* The daemon is started with the temp folder's paths: its binary by
     * its absolute path. */
    char abs[PATH_MAX];
    if (realpath(b.peer_bin, abs) == NULL ||
        strlen(abs) >= sizeof(b.peer_bin)) {
      fprintf(stderr, "daemon-bench: cannot resolve %s\n", b.peer_bin);
      return 1;
    }
    memcpy(b.peer_bin, abs, strlen(abs) + 1);
  }
  /* Lines as they come, also into a file: a long run shows its progress. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
      (b.curl = curl_easy_init()) == NULL) {
    fprintf(stderr, "daemon-bench: libcurl did not start\n");
    return 1;
  }
  tu_tmpdir(b.dir, sizeof(b.dir));
  machine_facts();
  printf("temp folder: %s\n", b.dir);
  if ((only == NULL || strcmp(only, "restart") == 0) && run_restart(&b) != 0) {
    goto out;
  }
  if ((only == NULL || strcmp(only, "many") == 0) && run_many(&b) != 0) {
    goto out;
  }
  rc = interrupted ? 1 : 0;
out:
  stop_all(&b);
  tu_rmtree(b.dir);
  curl_easy_cleanup(b.curl);
  curl_global_cleanup();
  return rc;
}
