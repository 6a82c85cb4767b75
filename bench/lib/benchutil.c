/* What the benchmark programs share (see benchutil.h). */
#include "bench/lib/benchutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double benchutil_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

unsigned long benchutil_arg_ul(const char *prog, int argc, char **argv,
                               const char *name, unsigned long def) {
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], name) == 0) {
      char *end;
      unsigned long v = strtoul(argv[i + 1], &end, 10);
      if (*end != '\0' || v == 0) {
        fprintf(stderr, "%s: %s needs a positive number\n", prog, name);
        exit(2);
      }
      return v;
    }
  }
  return def;
}

uint64_t benchutil_parse_size(const char *s, uint64_t max) {
  char *end;
  unsigned shift = 0;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || v == 0) {
    return 0;
  }
  if (*end == 'k' || *end == 'K') {
    shift = 10;
  } else if (*end == 'm' || *end == 'M') {
    shift = 20;
  } else if (*end == 'g' || *end == 'G') {
    shift = 30;
  }
  if (shift != 0) {
    end++;
  }
  if (*end != '\0' || v > max >> shift) {
    return 0;
  }
  return (uint64_t)v << shift;
}

/* Field n (1-based, as proc(5) numbers them; n >= 3) of a /proc stat file
 * (a process's or a thread's), or -1. */
static int64_t stat_field(const char *path, int n) {
  char buf[2048];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return -1;
  }
  ssize_t got = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (got <= 0) {
    return -1;
  }
  buf[got] = '\0';
  /* The command name is in parentheses and may hold spaces: count fields
   * from the last ')'. */
  char *p = strrchr(buf, ')');
  if (p == NULL) {
    return -1;
  }
  p++;
  for (int field = 3; p != NULL; field++) {
    while (*p == ' ') {
      p++;
    }
    if (field == n) {
      char *end;
      unsigned long long v = strtoull(p, &end, 10);
      return end == p ? -1 : (int64_t)v;
    }
    p = strchr(p, ' ');
  }
  return -1;
}

/* utime + stime (fields 14 and 15). */
static int64_t stat_ticks(const char *path) {
  int64_t u = stat_field(path, 14), s = stat_field(path, 15);
  return u < 0 || s < 0 ? -1 : u + s;
}

int64_t benchutil_minor_faults(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  return stat_field(path, 10); /* minflt */
}

int64_t benchutil_cpu_ticks(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  return stat_ticks(path);
}

static double ticks_s(int64_t ticks) {
  long hz = sysconf(_SC_CLK_TCK);
  return ticks < 0 ? -1 : (double)ticks / (double)(hz > 0 ? hz : 100);
}

double benchutil_main_thread_cpu_s(pid_t pid) {
  char path[80];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)pid);
  return ticks_s(stat_ticks(path));
}

double benchutil_cpu_s(pid_t pid) {
  return ticks_s(benchutil_cpu_ticks(pid));
}

int benchutil_parse_list(const char *s, unsigned long *out, size_t max,
                         unsigned long lo, unsigned long hi) {
  size_t n = 0;
  const char *p = s;
  for (;;) {
    while (*p == ' ' || *p == ',') {
      p++;
    }
    if (*p == '\0') {
      break;
    }
    /* strtoul would take a sign or leading blanks of its own. */
    if (*p < '0' || *p > '9' || n == max) {
      return -1;
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno != 0 || v < lo || v > hi ||
        (*end != '\0' && *end != ' ' && *end != ',')) {
      return -1;
    }
    out[n++] = v;
    p = end;
  }
  return n > 0 ? (int)n : -1;
}
