/* What the benchmark programs share: a monotonic clock in seconds, the
 * reading of their few numeric flags, lists and sizes, and the CPU time of a
 * process they started. */
#ifndef SHOAL_BENCHUTIL_H
#define SHOAL_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Seconds on a monotonic clock. */
double benchutil_now_s(void);

/* The value of "--name N" in argv (a positive whole number), or def when
 * the flag is not given; a bad value makes prog print why and exit 2. */
unsigned long benchutil_arg_ul(const char *prog, int argc, char **argv,
                               const char *name, unsigned long def);

/* "1073741824", "256M", "1G", "512k" (powers of 1024) in bytes; 0 when s
 * is not such a size, is 0 or is above max. */
uint64_t benchutil_parse_size(const char *s, uint64_t max);

/* Parses s, whole numbers from lo to hi separated by spaces or commas,
 * into out (room for max). Returns how many (at least one), or -1 when s
 * holds anything else, a number out of range, or more than max. */
int benchutil_parse_list(const char *s, unsigned long *out, size_t max,
                         unsigned long lo, unsigned long hi);

/* utime + stime of pid from /proc/PID/stat, in clock ticks, or -1. */
int64_t benchutil_cpu_ticks(pid_t pid);
/* The same in seconds, or -1. */
double benchutil_cpu_s(pid_t pid);
/* The same for pid's first thread alone (a shoal process's event loop),
 * from /proc/PID/task/PID/stat, or -1. */
double benchutil_main_thread_cpu_s(pid_t pid);
/* Minor page faults of pid so far (minflt in /proc/PID/stat), or -1. */
int64_t benchutil_minor_faults(pid_t pid);

#endif
