/* Redis servers and Sentinels for the tests, started and stopped by PID.
 *
 * Each server is a child process (tests/lib/proc.h) with no persistence,
 * in the test's own folder; a wait for it to answer PING has a deadline.
 * Tests that need Redis call redis_available() first and skip with a
 * clear message when redis-server (or redis-sentinel) is not installed.
 */
#ifndef SHOAL_TESTS_REDIS_H
#define SHOAL_TESTS_REDIS_H

#include "tests/lib/proc.h"

struct redis_srv {
  struct proc p;
  char dir[PROC_PATH_MAX];
  char sock[PROC_PATH_MAX + 16]; /* the Unix socket; "" for TCP only */
  int port;                      /* the TCP port; 0 for the socket only */
  char url[PROC_PATH_MAX + 32];  /* for --store: unix:PATH or redis://... */
};

/* True when redis-server (and, with sentinel set, redis-sentinel) can be
 * run. */
int redis_available(int sentinel);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int redis_free_port(void);

/* Starts redis-server in dir under name: on a Unix socket in dir when port
 * is 0, else on 127.0.0.1:port; a replica of 127.0.0.1:primary_port when
 * that is not 0. Returns 0 once it answers PING, or -1 (nothing is left
 * running). */
int redis_start(struct redis_srv *r, const char *dir, const char *name,
                int port, int primary_port);
/* Starts a Sentinel on 127.0.0.1:port watching the primary named name at
 * 127.0.0.1:primary_port, with a quorum of one, 500 ms to call it down
 * and a short failover timeout. Returns 0 once it answers PING, or -1. */
int redis_start_sentinel(struct redis_srv *r, const char *dir, int port,
                         const char *name, int primary_port);
/* Stops the server (SIGTERM, then SIGKILL after 5 s) and reaps it. */
void redis_stop(struct redis_srv *r);
/* True when the server answers PING. */
int redis_ping(const struct redis_srv *r);
/* Runs one command (printf-style, as hiredis's redisCommand) and returns
 * 0 when it did not fail. */
int redis_cmd(const struct redis_srv *r, const char *fmt, ...);
/* How many replicas of the primary name Sentinel knows, or -1. */
int redis_sentinel_replicas(const struct redis_srv *s, const char *name);
/* The port of the primary Sentinel names, or -1. */
int redis_sentinel_primary(const struct redis_srv *s, const char *name);

#endif
