/* shoal-tracker: the central tracker daemon. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/envelope.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/log.h"
#include "tracker/tracker.h"

#define SHOAL_VERSION "0.1.0"

static const char usage[] =
    "usage: shoal-tracker [options]\n"
    "\n"
    "The shoal tracker: registers peers, answers lookups and searches, and\n"
    "signs every reply. It never carries file data.\n"
    "\n"
    "  --listen ADDR:PORT       listen here (repeatable; IPv4 or [IPv6]);\n"
    "                           default [::]:7070, else 0.0.0.0:7070\n"
    "  --key FILE               tracker key, created on first run; default\n"
    "                           $XDG_DATA_HOME/shoal/tracker.key, else\n"
    "                           ~/.local/share/shoal/tracker.key\n"
    "  --interval SECONDS       announce interval told to peers (1800)\n"
    "  --max-connections N      open connections at most (1024)\n"
    "  --rate N                 requests a second per address (50)\n"
    "  --burst N                requests in a burst per address (200)\n"
    "  --max-frame BYTES        largest request frame (65536)\n"
    "  --idle-timeout SECONDS   close connections without a request (60)\n"
    "  --max-peers N            peers in one swarm (100000)\n"
    "  --max-swarms N           contents in one announce (64)\n"
    "  --catalog-max N          catalog entries (100000)\n"
    "  --catalog-ttl SECONDS    keep unannounced catalog entries (86400)\n"
    "  --clock-window SECONDS   accepted clock difference (300)\n"
    "  --log-level LEVEL        error, warn, info or debug (info)\n"
    "  --log-file FILE          log here instead of stderr (SIGHUP reopens)\n"
    "  --help, --version\n";

struct limit_flag {
  const char *name;
  uint32_t *dst;
  unsigned long min;
  unsigned long max;
  unsigned long scale; /* multiply the value by this */
};

static int bad_flag(const char *flag, const char *rule) {
  fprintf(stderr, "shoal-tracker: %s %s\n", flag, rule);
  fprintf(stderr, "try 'shoal-tracker --help'\n");
  return 2;
}

static int default_key_path(char *out, size_t cap) {
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  char dir[4096];
  int n;
  if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(dir, sizeof(dir), "%s/shoal", xdg);
  } else if (home != NULL && home[0] == '/') {
    n = snprintf(dir, sizeof(dir), "%s/.local/share/shoal", home);
  } else {
    n = snprintf(dir, sizeof(dir), "./.shoal");
  }
  if (n < 0 || (size_t)n >= sizeof(dir)) {
    return SHOAL_ETOOBIG;
  }
  /* Create the folder and its parents, private to the user. */
  for (char *p = dir + 1; *p != '\0'; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(dir, 0700);
      *p = '/';
    }
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    return -errno;
  }
  n = snprintf(out, cap, "%s/tracker.key", dir);
  return n < 0 || (size_t)n >= cap ? SHOAL_ETOOBIG : 0;
}

static void on_signal(uv_signal_t *s, int signum) {
  struct tracker *t = s->data;
  if (signum == SIGHUP) {
    int err = log_reopen();
    log_info("tracker", "SIGHUP: log reopened%s",
             err ? " (failed; still on the old file)" : "");
    return;
  }
  log_info("tracker", "%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
  uv_signal_stop(&t->sigint);
  uv_signal_stop(&t->sigterm);
  uv_signal_stop(&t->sighup);
  uv_close((uv_handle_t *)&t->sigint, NULL);
  uv_close((uv_handle_t *)&t->sigterm, NULL);
  uv_close((uv_handle_t *)&t->sighup, NULL);
  server_stop(t);
}

int main(int argc, char **argv) {
  struct tracker_config cfg;
  const char *log_file = NULL;
  int level = LOG_INFO;
  unsigned long window_s = ENVELOPE_WINDOW_MS_DEFAULT / 1000u;
  uint32_t window32 = 0;
  struct identity id;
  uv_loop_t loop;
  int created = 0;
  int err;

  memset(&cfg, 0, sizeof(cfg));
  cfg.interval_s = REGISTRY_INTERVAL_DEFAULT;
  cfg.max_conns = TRACKER_MAX_CONNS_DEFAULT;
  cfg.rate = RATELIMIT_RATE_DEFAULT;
  cfg.burst = RATELIMIT_BURST_DEFAULT;
  cfg.max_frame = TRACKER_FRAME_DEFAULT;
  cfg.idle_s = TRACKER_IDLE_DEFAULT_S;
  cfg.max_peers = REGISTRY_MAX_PEERS_DEFAULT;
  cfg.max_items = TMSG_MAX_ANNOUNCE_ITEMS;
  cfg.catalog_max = CATALOG_MAX_DEFAULT;
  cfg.catalog_ttl_s = CATALOG_TTL_DEFAULT;
  window32 = (uint32_t)window_s;

  const struct limit_flag limits[] = {
      {"--interval", &cfg.interval_s, 2, 86400, 1},
      {"--max-connections", &cfg.max_conns, 1, 1000000, 1},
      {"--rate", &cfg.rate, 1, 1000000, 1},
      {"--burst", &cfg.burst, 1, 1000000, 1},
      {"--max-frame", &cfg.max_frame, 1024, FRAME_MAX_LIMIT, 1},
      {"--idle-timeout", &cfg.idle_s, 1, 86400, 1},
      {"--max-peers", &cfg.max_peers, 1, 10000000, 1},
      {"--max-swarms", &cfg.max_items, 1, TMSG_MAX_ANNOUNCE_ITEMS, 1},
      {"--catalog-max", &cfg.catalog_max, 1, 10000000, 1},
      {"--catalog-ttl", &cfg.catalog_ttl_s, 1, 365u * 86400u, 1},
      {"--clock-window", &window32, 1, 86400, 1},
  };

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    if (strcmp(a, "--version") == 0) {
      printf("shoal-tracker %s\n", SHOAL_VERSION);
      return 0;
    }
    if (v == NULL) {
      return bad_flag(a, "is unknown or needs a value");
    }
    int matched = 0;
    for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
      if (strcmp(a, limits[k].name) == 0) {
        char *end;
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (errno != 0 || *end != '\0' || v[0] == '\0' || v[0] == '-' ||
            n < limits[k].min || n > limits[k].max) {
          char rule[96];
          snprintf(rule, sizeof(rule), "needs a whole number from %lu to %lu",
                   limits[k].min, limits[k].max);
          return bad_flag(a, rule);
        }
        *limits[k].dst = (uint32_t)n;
        matched = 1;
      }
    }
    if (matched) {
      i++;
      continue;
    }
    if (strcmp(a, "--listen") == 0) {
      if (cfg.n_listen == TRACKER_MAX_LISTEN) {
        return bad_flag(a, "may be given at most 8 times");
      }
      struct sockaddr_storage ss;
      if (strlen(v) >= sizeof(cfg.listen[0]) ||
          server_parse_listen(v, &ss) != 0) {
        return bad_flag(a, "needs a numeric ADDR:PORT with a port from 0 to "
                           "65535, e.g. 0.0.0.0:7070 or [::1]:7070");
      }
      snprintf(cfg.listen[cfg.n_listen++], sizeof(cfg.listen[0]), "%s", v);
    } else if (strcmp(a, "--key") == 0) {
      if (strlen(v) >= sizeof(cfg.key_path)) {
        return bad_flag(a, "path is too long");
      }
      snprintf(cfg.key_path, sizeof(cfg.key_path), "%s", v);
    } else if (strcmp(a, "--log-level") == 0) {
      level = log_level_parse(v);
      if (level < 0) {
        return bad_flag(a, "must be error, warn, info or debug");
      }
    } else if (strcmp(a, "--log-file") == 0) {
      log_file = v;
    } else {
      return bad_flag(a, "is not an option of shoal-tracker");
    }
    i++;
  }
  cfg.window_ms = window32 * 1000u;
  log_set_level((enum log_level)level);
  if (log_file != NULL && (err = log_open(log_file)) != 0) {
    fprintf(stderr, "shoal-tracker: --log-file %s: %s\n", log_file,
            shoal_strerror(err));
    return 2;
  }
  if (cfg.key_path[0] == '\0' &&
      (err = default_key_path(cfg.key_path, sizeof(cfg.key_path))) != 0) {
    fprintf(stderr,
            "shoal-tracker: cannot make a folder for the key: %s; "
            "use --key FILE\n",
            shoal_strerror(err));
    return 1;
  }
  if (sodium_init() < 0) {
    fprintf(stderr, "shoal-tracker: libsodium cannot start\n");
    return 1;
  }
  /* A client that closes while replies are in flight must cost a write
   * error (EPIPE), not the process. */
  signal(SIGPIPE, SIG_IGN);
  err = identity_load_or_create(&id, cfg.key_path, &created);
  if (err != 0) {
    fprintf(stderr, "shoal-tracker: key %s: %s\n", cfg.key_path,
            shoal_strerror(err));
    if (err == SHOAL_EKEYPERM) {
      fprintf(stderr, "fix it with: chmod 600 %s\n", cfg.key_path);
    }
    return 1;
  }
  if (created) {
    log_info("tracker", "created a new key in %s", cfg.key_path);
  }

  int default_listen = cfg.n_listen == 0;
  if (default_listen) {
    snprintf(cfg.listen[0], sizeof(cfg.listen[0]), "[::]:%d",
             TRACKER_PORT_DEFAULT);
    cfg.n_listen = 1;
  }

  uv_loop_init(&loop);
  static struct tracker t;
  err = tracker_init(&t, &loop, &cfg, &id);
  identity_close(&id);
  if (err != 0) {
    fprintf(stderr, "shoal-tracker: %s\n", shoal_strerror(err));
    return 1;
  }
  err = server_start(&t);
  if ((err == UV_EAFNOSUPPORT || err == UV_EADDRNOTAVAIL) && default_listen) {
    /* No IPv6 on this host: fall back to IPv4 only. */
    server_stop(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    t.closing = 0;
    t.n_listeners = 0;
    snprintf(t.cfg.listen[0], sizeof(t.cfg.listen[0]), "0.0.0.0:%d",
             TRACKER_PORT_DEFAULT);
    err = server_start(&t);
  }
  if (err != 0) {
    fprintf(stderr, "shoal-tracker: cannot listen: %s\n", shoal_strerror(err));
    server_stop(&t);
    uv_run(&loop, UV_RUN_DEFAULT);
    tracker_close(&t);
    uv_loop_close(&loop);
    return 1;
  }

  /* Every handler is in place before the tracker says it is ready: whoever
   * reads the ready lines may signal it at once (a test, a supervisor),
   * and a signal without its handler would kill it instead. */
  uv_signal_init(&loop, &t.sigint);
  uv_signal_init(&loop, &t.sigterm);
  uv_signal_init(&loop, &t.sighup);
  t.sigint.data = t.sigterm.data = t.sighup.data = &t;
  uv_signal_start(&t.sigint, on_signal, SIGINT);
  uv_signal_start(&t.sigterm, on_signal, SIGTERM);
  uv_signal_start(&t.sighup, on_signal, SIGHUP);
  server_say_ready(&t);
  log_info("tracker", "started; key %s", t.id_text);

  uv_run(&loop, UV_RUN_DEFAULT);
  log_info("tracker",
           "stopped after %llu requests (%llu refused, %llu "
           "signatures, %llu cache hits)",
           (unsigned long long)t.stats.requests,
           (unsigned long long)t.stats.refused,
           (unsigned long long)t.stats.signatures,
           (unsigned long long)t.stats.cache_hits);
  tracker_close(&t);
  err = uv_loop_close(&loop);
  log_close();
  return err == 0 ? 0 : 1;
}
