/* Redis servers and Sentinels for the tests (see redis.h). */
#include "tests/lib/redis.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REDIS_START_MS 10000 /* how long a server may take to answer */

int redis_available(int sentinel) {
  int ok = system("command -v redis-server >/dev/null 2>&1") == 0;
  if (ok && sentinel) {
    ok = system("command -v redis-sentinel >/dev/null 2>&1") == 0;
  }
  return ok;
}

int redis_free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port = -1;
  if (fd < 0) {
    return -1;
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

static redisContext *connect_to(const struct redis_srv *r) {
  struct timeval tv = {1, 0};
  redisContext *c = r->port != 0
                        ? redisConnectWithTimeout("127.0.0.1", r->port, tv)
                        : redisConnectUnixWithTimeout(r->sock, tv);
  if (c != NULL && c->err != 0) {
    redisFree(c);
    return NULL;
  }
  if (c != NULL) {
    redisSetTimeout(c, tv);
  }
  return c;
}

int redis_ping(const struct redis_srv *r) {
  redisContext *c = connect_to(r);
  int ok = 0;
  if (c == NULL) {
    return 0;
  }
  redisReply *rep = redisCommand(c, "PING");
  ok = rep != NULL && rep->type == REDIS_REPLY_STATUS &&
       strcmp(rep->str, "PONG") == 0;
  freeReplyObject(rep);
  redisFree(c);
  return ok;
}

int redis_cmd(const struct redis_srv *r, const char *fmt, ...) {
  redisContext *c = connect_to(r);
  va_list ap;
  int ok;
  if (c == NULL) {
    return -1;
  }
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(c, fmt, ap);
  va_end(ap);
  ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
  freeReplyObject(rep);
  redisFree(c);
  return ok ? 0 : -1;
}

int redis_sentinel_primary(const struct redis_srv *s, const char *name) {
  redisContext *c = connect_to(s);
  int port = -1;
  if (c == NULL) {
    return -1;
  }
  redisReply *rep =
      redisCommand(c, "SENTINEL get-master-addr-by-name %s", name);
  if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
      rep->element[1]->type == REDIS_REPLY_STRING) {
    port = (int)strtol(rep->element[1]->str, NULL, 10);
  }
  freeReplyObject(rep);
  redisFree(c);
  return port;
}

int redis_sentinel_replicas(const struct redis_srv *s, const char *name) {
  redisContext *c = connect_to(s);
  int n = -1;
  if (c == NULL) {
    return -1;
  }
  redisReply *rep = redisCommand(c, "SENTINEL replicas %s", name);
  if (rep != NULL && rep->type == REDIS_REPLY_ARRAY) {
    n = (int)rep->elements;
  }
  freeReplyObject(rep);
  redisFree(c);
  return n;
}

static int wait_ping(struct redis_srv *r) {
  uint64_t deadline = proc_now_ms() + REDIS_START_MS;
  while (proc_now_ms() < deadline) {
    if (!proc_alive(&r->p)) {
      break;
    }
    if (redis_ping(r)) {
      return 0;
    }
    proc_pause_ms(20);
  }
  proc_dump(&r->p);
  redis_stop(r);
  return -1;
}

int redis_start(struct redis_srv *r, const char *dir, const char *name,
                int port, int primary_port) {
  char ports[16], primary[16];
  const char *argv[24];
  int n = 0;

  memset(r, 0, sizeof(*r));
  snprintf(r->dir, sizeof(r->dir), "%s", dir);
  r->port = port;
  snprintf(ports, sizeof(ports), "%d", port);
  snprintf(primary, sizeof(primary), "%d", primary_port);
  argv[n++] = "/usr/bin/env";
  argv[n++] = "redis-server";
  argv[n++] = "--port";
  argv[n++] = ports;
  if (port == 0) {
    snprintf(r->sock, sizeof(r->sock), "%s/%s.sock", dir, name);
    argv[n++] = "--unixsocket";
    argv[n++] = r->sock;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    snprintf(r->url, sizeof(r->url), "unix:%s", r->sock);
  } else {
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", port);
  }
  argv[n++] = "--save";
  argv[n++] = "";
  argv[n++] = "--appendonly";
  argv[n++] = "no";
  argv[n++] = "--dir";
  argv[n++] = dir;
  if (primary_port != 0) {
    argv[n++] = "--replicaof";
    argv[n++] = "127.0.0.1";
    argv[n++] = primary;
  }
  argv[n] = NULL;
  if (proc_start(&r->p, dir, name, argv) != 0) {
    return -1;
  }
  return wait_ping(r);
}

int redis_start_sentinel(struct redis_srv *r, const char *dir, int port,
                         const char *name, int primary_port) {
  char conf[PROC_PATH_MAX + 32];
  const char *argv[4];

  memset(r, 0, sizeof(*r));
  snprintf(r->dir, sizeof(r->dir), "%s", dir);
  r->port = port;
  snprintf(conf, sizeof(conf), "%s/sentinel-%d.conf", dir, port);
  FILE *f = fopen(conf, "w");
  if (f == NULL) {
    return -1;
  }
  fprintf(f,
          "port %d\nbind 127.0.0.1\ndir %s\n"
          "sentinel monitor %s 127.0.0.1 %d 1\n"
          "sentinel down-after-milliseconds %s 500\n"
          "sentinel failover-timeout %s 2000\n",
          port, dir, name, primary_port, name, name);
  fclose(f);
  argv[0] = "/usr/bin/env";
  argv[1] = "redis-sentinel";
  argv[2] = conf;
  argv[3] = NULL;
  if (proc_start(&r->p, dir, "sentinel", argv) != 0) {
    return -1;
  }
  return wait_ping(r);
}

void redis_stop(struct redis_srv *r) {
  if (r->p.pid == 0) {
    return;
  }
  proc_signal(&r->p, SIGTERM);
  if (proc_wait(&r->p, 5000) < 0) {
    proc_kill(&r->p);
  }
}
