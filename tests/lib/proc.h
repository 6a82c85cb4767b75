/* Child processes for integration tests: start a binary with its stdout
 * and stderr captured to files, watch its --json lines, stop it by PID.
 *
 * Output goes to files rather than pipes so that a chatty child never
 * blocks on a full pipe while the test waits for something else, and so
 * that a failed test can print what each child said. Every wait takes a
 * deadline. A child is also sent SIGKILL by the kernel if the test program
 * dies (PR_SET_PDEATHSIG), so nothing outlives a crashed test.
 */
#ifndef SHOAL_PROC_H
#define SHOAL_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROC_PATH_MAX 4096
/* The longest output line the scanners look at; longer lines are skipped. */
#define PROC_LINE_MAX 8192

struct proc {
  pid_t pid; /* 0 when not started */
  int reaped;
  int status; /* once reaped: the exit code, or 128 + the signal */
  char name[64];
  char out_path[PROC_PATH_MAX];
  char err_path[PROC_PATH_MAX];
};

/* Starts argv[0] (a path) with argv (NULL-ended), stdin from /dev/null,
 * stdout to dir/NAME.out and stderr to dir/NAME.err. argv is only read
 * during the call. Returns 0 or -1. */
int proc_start(struct proc *p, const char *dir, const char *name,
               const char *const argv[]);
/* The same with the child's stdout on out_fd (which stays the caller's to
 * close) instead of a file; out_path is then empty and proc_dump shows
 * stderr only. */
int proc_start_out(struct proc *p, const char *dir, const char *name,
                   const char *const argv[], int out_fd);
/* Sends sig when the child has not been reaped yet. */
void proc_signal(struct proc *p, int sig);
/* Waits for the child to end. Returns its status (see struct proc) or -1
 * when it is still running at the deadline. */
int proc_wait(struct proc *p, int timeout_ms);
/* True while the child runs (a child that ended is reaped). */
int proc_alive(struct proc *p);
/* SIGKILL and reap; a no-op when already reaped or never started. */
void proc_kill(struct proc *p);
/* Prints the last bytes of the child's stdout and stderr to stderr. */
void proc_dump(const struct proc *p);

/* Calls fn for each complete line of the child's stdout (or stderr when
 * err is set), in order, until fn returns non-zero; returns that value, or
 * 0 after the last line. A line still being written is not passed. */
int proc_each_line(const struct proc *p, int err,
                   int (*fn)(const char *line, void *arg), void *arg);

/* A test on one JSON line; NULL accepts any line of the event. */
typedef int (*proc_pred)(const char *line, void *arg);

/* Finds the first (last when last is set) stdout line whose "event" is ev
 * and for which pred holds, and copies it into out (cap bytes). Returns 1
 * when found, else 0. */
int proc_find_event(const struct proc *p, const char *ev, proc_pred pred,
                    void *arg, int last, char *out, size_t cap);
/* Counts such lines. */
unsigned proc_count_event(const struct proc *p, const char *ev, proc_pred pred,
                          void *arg);
/* Waits until proc_find_event finds a line. Returns 0 (line in out), -1 at
 * the deadline, or -2 when the child ended without printing it. */
int proc_wait_event(struct proc *p, const char *ev, proc_pred pred, void *arg,
                    int timeout_ms, char *out, size_t cap);
/* True when every stdout line is one JSON object. */
int proc_all_json(const struct proc *p);
/* True when the child's stdout (or stderr when err is set) contains
 * needle, compared without regard to ASCII case. */
int proc_output_has(const struct proc *p, int err, const char *needle);

/* Milliseconds on a monotonic clock. */
uint64_t proc_now_ms(void);
/* Sleeps ms milliseconds; for pacing a poll loop that has a deadline. */
void proc_pause_ms(int ms);

#endif
