/* What the benchmark programs share: a monotonic clock in seconds and the
 * reading of their few numeric flags. */
#ifndef SHOAL_BENCHUTIL_H
#define SHOAL_BENCHUTIL_H

/* Seconds on a monotonic clock. */
double benchutil_now_s(void);

/* The value of "--name N" in argv (a positive whole number), or def when
 * the flag is not given; a bad value makes prog print why and exit 2. */
unsigned long benchutil_arg_ul(const char *prog, int argc, char **argv,
                               const char *name, unsigned long def);

#endif
