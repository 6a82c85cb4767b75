#include "tests/lib/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/jsonl.h"
#include "tests/lib/testutil.h"

/* How much of each output file proc_dump prints. */
#define PROC_DUMP_BYTES (12u << 10)
/* Descriptors a child closes before exec, beyond 0..2. */
#define PROC_CLOSE_FDS 1024

uint64_t proc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void proc_pause_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int proc_start(struct proc *p, const char *dir, const char *name,
               const char *const argv[]) {
  return proc_start_out(p, dir, name, argv, -1);
}

int proc_start_out(struct proc *p, const char *dir, const char *name,
                   const char *const argv[], int out_fd) {
  char *args[128];
  int n = 0;
  pid_t parent = getpid();

  memset(p, 0, sizeof(*p));
  snprintf(p->name, sizeof(p->name), "%s", name);
  if ((out_fd < 0 && snprintf(p->out_path, sizeof(p->out_path), "%s/%s.out",
                              dir, name) >= (int)sizeof(p->out_path)) ||
      snprintf(p->err_path, sizeof(p->err_path), "%s/%s.err", dir, name) >=
          (int)sizeof(p->err_path)) {
    return -1;
  }
  /* The argument strings are copied before the fork: the child must not
   * allocate between fork and exec. */
  while (argv[n] != NULL && n < 127) {
    args[n] = strdup(argv[n]);
    if (args[n] == NULL) {
      for (int i = 0; i < n; i++) {
        free(args[i]);
      }
      return -1;
    }
    n++;
  }
  args[n] = NULL;
  int out = out_fd >= 0 ? out_fd
                        : open(p->out_path,
                               O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = -1;
  if (out >= 0 && err >= 0 && in >= 0) {
    pid = fork();
  }
  if (pid == 0) {
    /* Die with the test program, whatever happens to it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(127);
    }
    signal(SIGPIPE, SIG_DFL);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    for (int fd = 3; fd < PROC_CLOSE_FDS; fd++) {
      close(fd);
    }
    execv(args[0], args);
    /* Only async-signal-safe calls between fork and exec. */
    static const char msg[] = "proc: exec failed\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    _exit(127);
  }
  if (out >= 0 && out != out_fd) {
    close(out);
  }
  if (err >= 0) {
    close(err);
  }
  if (in >= 0) {
    close(in);
  }
  for (int i = 0; i < n; i++) {
    free(args[i]);
  }
  if (pid < 0) {
    return -1;
  }
  p->pid = pid;
  return 0;
}

/* Reaps the child if it ended. Returns 1 when it is reaped. */
static int try_reap(struct proc *p) {
  int status;
  if (p->pid <= 0 || p->reaped) {
    return 1;
  }
  pid_t r = waitpid(p->pid, &status, WNOHANG);
  if (r == p->pid) {
    p->reaped = 1;
    p->status =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return 1;
  }
  if (r < 0 && errno != EINTR) {
    /* Not our child any more (reaped elsewhere): nothing left to wait for. */
    p->reaped = 1;
    p->status = -1;
    return 1;
  }
  return 0;
}

void proc_signal(struct proc *p, int sig) {
  if (p->pid > 0 && !try_reap(p)) {
    kill(p->pid, sig);
  }
}

int proc_wait(struct proc *p, int timeout_ms) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  if (p->pid <= 0) {
    return -1;
  }
  for (;;) {
    if (try_reap(p)) {
      return p->status;
    }
    if (proc_now_ms() >= deadline) {
      return -1;
    }
    proc_pause_ms(10);
  }
}

int proc_alive(struct proc *p) {
  return p->pid > 0 && !try_reap(p);
}

void proc_kill(struct proc *p) {
  if (p->pid <= 0 || try_reap(p)) {
    return;
  }
  kill(p->pid, SIGKILL);
  int status;
  while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
  }
  p->reaped = 1;
  p->status = 128 + SIGKILL;
}

static void dump_file(const char *label, const char *path) {
  size_t len;
  char *data = tu_read_text(path, &len);
  if (data == NULL) {
    fprintf(stderr, "---- %s: (no file %s)\n", label, path);
    return;
  }
  size_t from = len > PROC_DUMP_BYTES ? len - PROC_DUMP_BYTES : 0;
  fprintf(stderr, "---- %s (%zu bytes%s)\n%s%s", label, len,
          from ? ", tail" : "", data + from,
          len > 0 && data[len - 1] != '\n' ? "\n" : "");
  free(data);
}

void proc_dump(const struct proc *p) {
  char label[128];
  if (p->pid <= 0) {
    return;
  }
  if (p->out_path[0] != '\0') {
    snprintf(label, sizeof(label), "%s stdout", p->name);
    dump_file(label, p->out_path);
  }
  snprintf(label, sizeof(label), "%s stderr", p->name);
  dump_file(label, p->err_path);
}

int proc_each_line(const struct proc *p, int err,
                   int (*fn)(const char *line, void *arg), void *arg) {
  size_t len;
  char *data = tu_read_text(err ? p->err_path : p->out_path, &len);
  int rc = 0;
  if (data == NULL) {
    return 0;
  }
  char *line = data;
  char *nl;
  while (rc == 0 && (nl = strchr(line, '\n')) != NULL) {
    *nl = '\0';
    if ((size_t)(nl - line) < PROC_LINE_MAX) {
      rc = fn(line, arg);
    }
    line = nl + 1;
  }
  free(data);
  return rc;
}

struct find {
  const char *ev;
  proc_pred pred;
  void *arg;
  int last;
  char *out;
  size_t cap;
  unsigned count;
};

static int find_line(const char *line, void *arg) {
  struct find *f = arg;
  if (!jsonl_is_event(line, f->ev) ||
      (f->pred != NULL && !f->pred(line, f->arg))) {
    return 0;
  }
  f->count++;
  if (f->out != NULL) {
    snprintf(f->out, f->cap, "%s", line);
  }
  return f->last ? 0 : 1;
}

int proc_find_event(const struct proc *p, const char *ev, proc_pred pred,
                    void *arg, int last, char *out, size_t cap) {
  struct find f = {ev, pred, arg, last, out, cap, 0};
  if (out != NULL && cap > 0) {
    out[0] = '\0';
  }
  proc_each_line(p, 0, find_line, &f);
  return f.count > 0;
}

unsigned proc_count_event(const struct proc *p, const char *ev, proc_pred pred,
                          void *arg) {
  struct find f = {ev, pred, arg, 1, NULL, 0, 0};
  proc_each_line(p, 0, find_line, &f);
  return f.count;
}

int proc_wait_event(struct proc *p, const char *ev, proc_pred pred, void *arg,
                    int timeout_ms, char *out, size_t cap) {
  uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    /* Check for the end first, then the output: a child that printed the
     * line and exited must still count as found. */
    int ended = !proc_alive(p);
    if (proc_find_event(p, ev, pred, arg, 0, out, cap)) {
      return 0;
    }
    if (ended) {
      return -2;
    }
    if (proc_now_ms() >= deadline) {
      return -1;
    }
    proc_pause_ms(50);
  }
}

static int not_json(const char *line, void *arg) {
  (void)arg;
  if (!jsonl_valid(line)) {
    fprintf(stderr, "proc: not a JSON object: %s\n", line);
    return 1;
  }
  return 0;
}

int proc_all_json(const struct proc *p) {
  return proc_each_line(p, 0, not_json, NULL) == 0;
}

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int proc_output_has(const struct proc *p, int err, const char *needle) {
  size_t len;
  size_t nlen = strlen(needle);
  char *data = tu_read_text(err ? p->err_path : p->out_path, &len);
  int found = 0;
  if (data == NULL) {
    return 0;
  }
  for (size_t i = 0; !found && nlen <= len && i <= len - nlen; i++) {
    size_t k = 0;
    while (k < nlen && lower((unsigned char)data[i + k]) ==
                           lower((unsigned char)needle[k])) {
      k++;
    }
    found = k == nlen;
  }
  free(data);
  return found;
}
