#include "tests/lib/tclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/textid.h"
#include "tests/lib/testutil.h"

uint64_t tc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Reads lines from fd until both the port and the key are known. */
static int read_banner(struct tc_tracker *t, int fd) {
  char buf[4096];
  size_t have = 0;
  uint64_t deadline = tc_now_ms() + 10000;
  int got_port = 0;
  int got_key = 0;

  while (!(got_port && got_key) && tc_now_ms() < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) {
      continue;
    }
    ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
    if (r <= 0) {
      return -1;
    }
    have += (size_t)r;
    buf[have] = '\0';
    char *line = buf;
    char *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = '\0';
      const char *lp = "listening on ";
      const char *kp = "tracker key ";
      const char *mp = "metrics on ";
      if (strncmp(line, mp, strlen(mp)) == 0) {
        /* Printed before the key, so it is read before the banner ends. */
        const char *colon = strrchr(line, ':');
        t->metrics_port = colon != NULL ? (int)strtol(colon + 1, NULL, 10) : 0;
      } else if (strncmp(line, lp, strlen(lp)) == 0 && !got_port) {
        /* The first address: "127.0.0.1:PORT" or "[::1]:PORT". */
        const char *colon = strrchr(line, ':');
        t->port = colon != NULL ? (int)strtol(colon + 1, NULL, 10) : 0;
        got_port = t->port > 0;
      } else if (strncmp(line, kp, strlen(kp)) == 0) {
        const char *k = line + strlen(kp);
        got_key = textid_decode(TEXTID_KEY, k, strlen(k), t->key) == 0;
      }
      line = nl + 1;
    }
    have = strlen(line);
    memmove(buf, line, have);
  }
  return got_port && got_key ? 0 : -1;
}

int tc_tracker_start(struct tc_tracker *t, int keep_dir, const char **extra) {
  return tc_tracker_start_at(t, keep_dir, "127.0.0.1:0", extra);
}

int tc_tracker_start_at(struct tc_tracker *t, int keep_dir, const char *listen,
                        const char **extra) {
  const char *bin = getenv("SHOAL_BIN");
  char exe[4200];
  const char *argv[64];
  int n = 0;
  int pipefd[2];

  if (!keep_dir) {
    memset(t, 0, sizeof(*t));
    tu_tmpdir(t->dir, sizeof(t->dir));
  }
  t->metrics_port = 0;
  snprintf(exe, sizeof(exe), "%s/shoal-tracker",
           bin && bin[0] ? bin : "build/bin");
  snprintf(t->key_path, sizeof(t->key_path), "%s/tracker.key", t->dir);
  snprintf(t->log_path, sizeof(t->log_path), "%s/tracker.log", t->dir);
  argv[n++] = exe;
  argv[n++] = "--listen";
  argv[n++] = listen;
  argv[n++] = "--key";
  argv[n++] = t->key_path;
  argv[n++] = "--log-file";
  argv[n++] = t->log_path;
  for (int i = 0; extra != NULL && extra[i] != NULL && n < 62; i++) {
    argv[n++] = extra[i];
  }
  argv[n] = NULL;
  if (pipe(pipefd) != 0) {
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    return -1;
  }
  if (pid == 0) {
    dup2(pipefd[1], 1);
    close(pipefd[0]);
    close(pipefd[1]);
    /* execv wants writable strings; the child copies them and then
     * becomes the tracker, so nothing is leaked. */
    char *args[64];
    for (int i = 0; i <= n; i++) {
      args[i] = argv[i] ? strdup(argv[i]) : NULL;
    }
    execv(exe, args);
    _exit(127);
  }
  close(pipefd[1]);
  t->pid = pid;
  int rc = read_banner(t, pipefd[0]);
  close(pipefd[0]);
  if (rc != 0) {
    tc_tracker_kill(t);
  }
  return rc;
}

static int reap(pid_t pid, int timeout_ms) {
  uint64_t deadline = tc_now_ms() + (uint64_t)timeout_ms;
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (r < 0 || tc_now_ms() >= deadline) {
      return -1;
    }
    pause_ms(10);
  }
}

int tc_tracker_stop(struct tc_tracker *t) {
  if (t->pid <= 0) {
    return -1;
  }
  kill(t->pid, SIGTERM);
  int rc = reap(t->pid, 5000);
  if (rc < 0) {
    kill(t->pid, SIGKILL);
    reap(t->pid, 5000);
  }
  t->pid = 0;
  return rc;
}

void tc_tracker_kill(struct tc_tracker *t) {
  if (t->pid > 0) {
    kill(t->pid, SIGKILL);
    reap(t->pid, 5000);
    t->pid = 0;
  }
}

void tc_tracker_cleanup(struct tc_tracker *t) {
  tc_tracker_kill(t);
  if (t->dir[0] != '\0') {
    tu_rmtree(t->dir);
    t->dir[0] = '\0';
  }
}

int tc_connect(int port) {
  return tc_connect_family(port, 4);
}

int tc_connect_family(int port, int family) {
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof(ss));
  if (family == 6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    a->sin6_addr = in6addr_loopback;
    len = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

int tc_write(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return -1;
    }
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

int tc_send_frame(int fd, const void *p, size_t n) {
  uint8_t hdr[FRAME_HEADER_BYTES];
  frame_header(hdr, n);
  return tc_write(fd, hdr, sizeof(hdr)) == 0 ? tc_write(fd, p, n) : -1;
}

static int read_exact(int fd, uint8_t *p, size_t n, uint64_t deadline) {
  while (n > 0) {
    uint64_t now = tc_now_ms();
    if (now >= deadline) {
      return -1;
    }
    struct pollfd pf = {fd, POLLIN, 0};
    int r = poll(&pf, 1, (int)(deadline - now));
    if (r <= 0) {
      return -1;
    }
    ssize_t got = recv(fd, p, n, 0);
    if (got <= 0) {
      return -1;
    }
    p += got;
    n -= (size_t)got;
  }
  return 0;
}

int tc_recv_frame(int fd, struct buf *out, int timeout_ms) {
  uint64_t deadline = tc_now_ms() + (uint64_t)timeout_ms;
  uint8_t hdr[FRAME_HEADER_BYTES];
  buf_reset(out);
  if (read_exact(fd, hdr, sizeof(hdr), deadline) != 0) {
    return -1;
  }
  uint32_t n = buf_be32(hdr);
  if (n == 0 || n > FRAME_MAX_DEFAULT || buf_reserve(out, n) != 0) {
    return -1;
  }
  if (read_exact(fd, out->data, n, deadline) != 0) {
    return -1;
  }
  out->len = n;
  return 0;
}

int tc_wait_closed(int fd, int timeout_ms) {
  uint64_t deadline = tc_now_ms() + (uint64_t)timeout_ms;
  uint8_t junk[4096];
  for (;;) {
    uint64_t now = tc_now_ms();
    if (now >= deadline) {
      return 0;
    }
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, (int)(deadline - now)) <= 0) {
      continue;
    }
    ssize_t r = recv(fd, junk, sizeof(junk), 0);
    if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
      return 1;
    }
  }
}

void tc_seal_announce(struct buf *out, const struct identity *id,
                      uint64_t ts_ms, uint64_t seq, uint16_t port,
                      uint8_t event, const uint8_t (*contents)[32],
                      const uint8_t *roles, unsigned n) {
  struct tmsg_announce a;
  struct buf p;
  memset(&a, 0, sizeof(a));
  a.port = port;
  a.event = event;
  a.count = (uint16_t)n;
  for (unsigned i = 0; i < n && i < TMSG_MAX_ANNOUNCE_ITEMS; i++) {
    memcpy(a.items[i].content, contents[i], 32);
    a.items[i].role = roles ? roles[i] : TMSG_ROLE_DOWNLOADING;
    a.items[i].left = a.items[i].role == TMSG_ROLE_SEEDING ? 0 : 1000;
  }
  buf_init(&p, FRAME_MAX_DEFAULT);
  tmsg_announce_encode(&p, &a);
  buf_reset(out);
  envelope_seal(out, ENVELOPE_TRACKER_REQUEST, TMSG_ANNOUNCE, id, ts_ms, seq,
                p.data, p.len);
  buf_free(&p);
}

void tc_seal_publish(struct buf *out, const struct identity *id, uint64_t ts_ms,
                     uint64_t seq, const struct tmsg_publish *pub) {
  struct buf p;
  buf_init(&p, FRAME_MAX_DEFAULT);
  tmsg_publish_encode(&p, pub);
  buf_reset(out);
  envelope_seal(out, ENVELOPE_TRACKER_REQUEST, TMSG_PUBLISH, id, ts_ms, seq,
                p.data, p.len);
  buf_free(&p);
}

void tc_query_lookup(struct buf *out, uint64_t qid, const uint8_t content[32],
                     uint16_t want, uint8_t flags, const uint8_t *asker) {
  struct tmsg_lookup l;
  uint8_t storage[128];
  struct buf p;
  memset(&l, 0, sizeof(l));
  memcpy(l.content, content, 32);
  l.want = want;
  l.flags = flags;
  if (asker != NULL) {
    memcpy(l.asker, asker, 32);
  }
  buf_init_fixed(&p, storage, sizeof(storage));
  tmsg_lookup_encode(&p, &l);
  buf_reset(out);
  tmsg_query_encode(out, TMSG_LOOKUP, qid, p.data, p.len);
}

void tc_query_search(struct buf *out, uint64_t qid, const char *words,
                     uint32_t offset, uint16_t limit) {
  struct tmsg_search s;
  uint8_t storage[512];
  struct buf p;
  memset(&s, 0, sizeof(s));
  snprintf(s.query, sizeof(s.query), "%s", words);
  s.offset = offset;
  s.limit = limit;
  buf_init_fixed(&p, storage, sizeof(storage));
  tmsg_search_encode(&p, &s);
  buf_reset(out);
  tmsg_query_encode(out, TMSG_SEARCH, qid, p.data, p.len);
}

int tc_open_reply(const struct tc_tracker *t, const struct buf *frame,
                  const uint8_t **payload, size_t *len) {
  struct envelope e;
  struct envelope_policy pol = {.cls = ENVELOPE_TRACKER_REPLY,
                                .now_ms = clock_wall_ms(),
                                .window_ms = ENVELOPE_WINDOW_MS_DEFAULT,
                                .expect_sender = t->key,
                                .guard = NULL};
  int err = envelope_open(frame->data, frame->len, &pol, &e);
  if (err != 0) {
    return err;
  }
  *payload = e.payload;
  *len = e.payload_len;
  return e.type;
}

/* ------------------------------------------------------------------------ */
/* A test's fixture */

struct tc_fixture *tc_fixture_new(void) {
  struct tc_fixture *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    return NULL;
  }
  buf_init(&f->frame, FRAME_MAX_DEFAULT);
  buf_init(&f->msg, FRAME_MAX_DEFAULT);
  return f;
}

void tc_fixture_free(struct tc_fixture *f) {
  for (int i = 0; i < f->nfds; i++) {
    if (f->fds[i] >= 0) {
      close(f->fds[i]);
    }
  }
  tc_tracker_cleanup(&f->t);
  if (f->dir[0] != '\0') {
    tu_rmtree(f->dir);
  }
  buf_free(&f->frame);
  buf_free(&f->msg);
  free(f);
}

int tc_fixture_keep(struct tc_fixture *f, int fd) {
  if (fd < 0) {
    return -1;
  }
  if (f->nfds == TC_FIXTURE_FDS) {
    close(fd);
    return -1;
  }
  f->fds[f->nfds++] = fd;
  return fd;
}

int tc_fixture_run_tracker(struct tc_fixture *f, const char *const *args,
                           int timeout_ms, struct proc *p) {
  const char *bin = getenv("SHOAL_BIN");
  char exe[PROC_PATH_MAX];
  const char *argv[16];
  int n = 0;
  int status;
  if (f->dir[0] == '\0') {
    tu_tmpdir(f->dir, sizeof(f->dir));
  }
  snprintf(exe, sizeof(exe), "%s/shoal-tracker",
           bin && bin[0] ? bin : "build/bin");
  if (setenv("XDG_DATA_HOME", f->dir, 1) != 0) {
    return -1;
  }
  argv[n++] = exe;
  for (int i = 0; args[i] != NULL; i++) {
    if (n == 15) {
      return -1;
    }
    argv[n++] = args[i];
  }
  argv[n] = NULL;
  if (proc_start(p, f->dir, "run", argv) != 0) {
    return -1;
  }
  status = proc_wait(p, timeout_ms);
  if (status < 0) {
    proc_kill(p);
    return -1;
  }
  return status;
}
