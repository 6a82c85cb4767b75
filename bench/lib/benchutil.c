/* What the benchmark programs share (see benchutil.h). */
#include "bench/lib/benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
