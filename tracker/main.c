/* shoal-tracker: the central tracker daemon. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
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
#include "tracker/metrics_http.h"
#include "tracker/tracker.h"

#define SHOAL_VERSION "0.1.0"

static const char usage[] =
    "usage: shoal-tracker [options]\n"
    "\n"
    "The shoal tracker: registers peers, answers lookups and searches, and\n"
    "signs every reply. It never carries file data.\n"
    "\n"
    "Options take their value as --opt VALUE or --opt=VALUE; -- ends them.\n"
    "\n"
    "  --listen ADDR:PORT       listen here (repeatable; IPv4 or [IPv6]);\n"
    "                           default [::]:7070, else 0.0.0.0:7070\n"
    "  --key FILE               tracker key, created on first run; default\n"
    "                           $XDG_DATA_HOME/shoal/tracker.key, else\n"
    "                           ~/.local/share/shoal/tracker.key\n"
    "  --interval SECONDS       announce interval told to peers (1800)\n"
    "  --max-connections N      open connections at most (1024)\n"
    "  --max-per-address N      open connections from one address, an IPv6\n"
    "                           /64 counting as one (64)\n"
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
    "  --log-format FORMAT      text, or json for one JSON object a line\n"
    "                           (text)\n"
    "  --store URL              where swarms, the catalog and the replay\n"
    "                           windows live: memory (the default),\n"
    "                           redis://HOST:PORT[/DB], unix:PATH or\n"
    "                           sentinel://HOST:PORT/NAME; instances on one\n"
    "                           Redis are one tracker\n"
    "  --metrics-listen ADDR:PORT\n"
    "                           serve /metrics (Prometheus) and /stats (JSON)\n"
    "                           here; no authentication, so keep it on a\n"
    "                           private address (off)\n"
    "  -h, --help               print this and exit\n"
    "  -V, --version            print the version and exit\n";

/* getopt_long's codes for the options that have no short form. */
enum {
  OPT_LISTEN = 256,
  OPT_KEY,
  OPT_INTERVAL,
  OPT_MAX_CONNS,
  OPT_MAX_PER_ADDR,
  OPT_RATE,
  OPT_BURST,
  OPT_MAX_FRAME,
  OPT_IDLE,
  OPT_MAX_PEERS,
  OPT_MAX_SWARMS,
  OPT_CATALOG_MAX,
  OPT_CATALOG_TTL,
  OPT_CLOCK_WINDOW,
  OPT_LOG_LEVEL,
  OPT_LOG_FILE,
  OPT_LOG_FORMAT,
  OPT_METRICS_LISTEN,
  OPT_STORE,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"key", required_argument, NULL, OPT_KEY},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
    {"max-per-address", required_argument, NULL, OPT_MAX_PER_ADDR},
    {"rate", required_argument, NULL, OPT_RATE},
    {"burst", required_argument, NULL, OPT_BURST},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"max-peers", required_argument, NULL, OPT_MAX_PEERS},
    {"max-swarms", required_argument, NULL, OPT_MAX_SWARMS},
    {"catalog-max", required_argument, NULL, OPT_CATALOG_MAX},
    {"catalog-ttl", required_argument, NULL, OPT_CATALOG_TTL},
    {"clock-window", required_argument, NULL, OPT_CLOCK_WINDOW},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
    {"store", required_argument, NULL, OPT_STORE},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* The leading ':' makes getopt_long report a missing value as ':' rather
 * than '?', so that the message can say which it was. */
static const char short_opts[] = ":hV";

/* An option whose value is a whole number within a range. */
struct limit_flag {
  int opt;
  uint32_t *dst;
  unsigned long min;
  unsigned long max;
};

/* What the command line asks for besides the tracker's configuration. */
struct cli {
  const char *log_file;
  int level;
  int format;
  uint32_t window_s;
};

static int bad_flag(const char *flag, const char *rule) {
  fprintf(stderr, "shoal-tracker: %s %s\n", flag, rule);
  fprintf(stderr, "try 'shoal-tracker --help'\n");
  return 2;
}

/* "--NAME" of the option with this getopt code, for messages. */
static const char *opt_name(int opt, char *out, size_t cap) {
  for (const struct option *o = long_opts; o->name != NULL; o++) {
    if (o->val == opt) {
      snprintf(out, cap, "--%s", o->name);
      return out;
    }
  }
  snprintf(out, cap, "-%c", opt);
  return out;
}

/* Explains the element getopt_long refused ('?'): an unknown short
 * option, a long option that is unknown or an ambiguous abbreviation, or
 * a value given to an option that takes none. */
static int bad_option(const char *arg, int optopt_seen) {
  char name[64];
  char rule[512];
  if (optopt_seen != 0) {
    for (const struct option *o = long_opts; o->name != NULL; o++) {
      if (o->val == optopt_seen && o->has_arg == no_argument &&
          strncmp(arg, "--", 2) == 0) {
        return bad_flag(opt_name(o->val, name, sizeof(name)), "takes no value");
      }
    }
    snprintf(name, sizeof(name), "-%c", optopt_seen);
    return bad_flag(name, "is not an option");
  }
  /* A long option: its name is what comes before any '='. */
  size_t len = strcspn(arg, "=");
  size_t used = 0;
  unsigned matches = 0;
  snprintf(name, sizeof(name), "%.*s", (int)(len < 60 ? len : 60), arg);
  rule[0] = '\0';
  for (const struct option *o = long_opts; o->name != NULL && len > 2; o++) {
    if (strncmp(o->name, arg + 2, len - 2) == 0) {
      int n = snprintf(rule + used, sizeof(rule) - used, "%s--%s",
                       matches == 0 ? "is ambiguous: " : ", ", o->name);
      if (n > 0 && (size_t)n < sizeof(rule) - used) {
        used += (size_t)n;
      }
      matches++;
    }
  }
  return bad_flag(name, matches > 1 ? rule : "is not an option");
}

/* Reads a whole number within the flag's range. Returns 0 or 2. */
static int parse_limit(const struct limit_flag *l, const char *v) {
  char name[64];
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno != 0 || *end != '\0' || v[0] == '\0' || v[0] == '-' || n < l->min ||
      n > l->max) {
    char rule[96];
    snprintf(rule, sizeof(rule), "needs a whole number from %lu to %lu", l->min,
             l->max);
    return bad_flag(opt_name(l->opt, name, sizeof(name)), rule);
  }
  *l->dst = (uint32_t)n;
  return 0;
}

/* Fills cfg and cli from the command line (cfg holds the defaults).
 * Returns -1 to go on, or the status to exit with: 0 after --help or
 * --version, 2 after a usage error (one line on stderr names it). */
static int parse_args(int argc, char **argv, struct tracker_config *cfg,
                      struct cli *cli) {
  char name[64];
  const struct limit_flag limits[] = {
      {OPT_INTERVAL, &cfg->interval_s, 2, 86400},
      {OPT_MAX_CONNS, &cfg->max_conns, 1, 1000000},
      {OPT_MAX_PER_ADDR, &cfg->max_per_addr, 1, 1000000},
      {OPT_RATE, &cfg->rate, 1, 1000000},
      {OPT_BURST, &cfg->burst, 1, 1000000},
      {OPT_MAX_FRAME, &cfg->max_frame, 1024, FRAME_MAX_LIMIT},
      {OPT_IDLE, &cfg->idle_s, 1, 86400},
      {OPT_MAX_PEERS, &cfg->max_peers, 1, 10000000},
      {OPT_MAX_SWARMS, &cfg->max_items, 1, TMSG_MAX_ANNOUNCE_ITEMS},
      {OPT_CATALOG_MAX, &cfg->catalog_max, 1, 10000000},
      {OPT_CATALOG_TTL, &cfg->catalog_ttl_s, 1, 365u * 86400u},
      {OPT_CLOCK_WINDOW, &cli->window_s, 1, 86400},
  };
  int c;

  opterr = 0; /* the messages below replace getopt's own */
  while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
    const char *v = optarg;
    const struct limit_flag *limit = NULL;
    for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
      if (limits[k].opt == c) {
        limit = &limits[k];
      }
    }
    if (limit != NULL) {
      if (parse_limit(limit, v) != 0) {
        return 2;
      }
      continue;
    }
    switch (c) {
    case 'h':
      fputs(usage, stdout);
      return 0;
    case 'V':
      printf("shoal-tracker %s\n", SHOAL_VERSION);
      return 0;
    case ':':
      return bad_flag(opt_name(optopt, name, sizeof(name)), "needs a value");
    case '?':
      return bad_option(argv[optind - 1], optopt);
    case OPT_LISTEN: {
      struct sockaddr_storage ss;
      if (cfg->n_listen == TRACKER_MAX_LISTEN) {
        return bad_flag("--listen", "may be given at most 8 times");
      }
      if (strlen(v) >= sizeof(cfg->listen[0]) ||
          server_parse_listen(v, &ss) != 0) {
        return bad_flag("--listen",
                        "needs a numeric ADDR:PORT with a port from 0 to "
                        "65535, e.g. 0.0.0.0:7070 or [::1]:7070");
      }
      snprintf(cfg->listen[cfg->n_listen++], sizeof(cfg->listen[0]), "%s", v);
      break;
    }
    case OPT_KEY:
      /* An empty name would quietly mean the default key. */
      if (v[0] == '\0') {
        return bad_flag("--key", "needs a file name");
      }
      if (strlen(v) >= sizeof(cfg->key_path)) {
        return bad_flag("--key", "path is too long");
      }
      snprintf(cfg->key_path, sizeof(cfg->key_path), "%s", v);
      break;
    case OPT_LOG_LEVEL:
      cli->level = log_level_parse(v);
      if (cli->level < 0) {
        return bad_flag("--log-level", "must be error, warn, info or debug");
      }
      break;
    case OPT_LOG_FILE:
      if (v[0] == '\0') {
        return bad_flag("--log-file", "needs a file name");
      }
      cli->log_file = v;
      break;
    case OPT_LOG_FORMAT:
      cli->format = log_format_parse(v);
      if (cli->format < 0) {
        return bad_flag("--log-format", "must be text or json");
      }
      break;
    case OPT_METRICS_LISTEN: {
      struct sockaddr_storage ss;
      if (strlen(v) >= sizeof(cfg->metrics_listen) ||
          server_parse_listen(v, &ss) != 0) {
        return bad_flag("--metrics-listen",
                        "needs a numeric ADDR:PORT with a port from 0 to "
                        "65535, e.g. 127.0.0.1:9470 or [::1]:9470");
      }
      snprintf(cfg->metrics_listen, sizeof(cfg->metrics_listen), "%s", v);
      break;
    }
    case OPT_STORE:
      if (strcmp(v, "memory") == 0) {
        cfg->store[0] = '\0';
        break;
      }
      if (strlen(v) >= sizeof(cfg->store) || store_url_check(v) != 0) {
        return bad_flag("--store",
                        "needs memory, redis://HOST:PORT[/DB], unix:PATH or "
                        "sentinel://HOST:PORT/NAME");
      }
      snprintf(cfg->store, sizeof(cfg->store), "%s", v);
      break;
    default:
      /* Every code in long_opts is handled above. */
      assert(0);
      return 2;
    }
  }
  if (optind < argc) {
    char what[300];
    snprintf(what, sizeof(what), "argument '%.256s'", argv[optind]);
    fprintf(stderr, "shoal-tracker: unexpected %s: it takes only options\n",
            what);
    fprintf(stderr, "try 'shoal-tracker --help'\n");
    return 2;
  }
  return -1;
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
  metrics_http_stop(t->metrics_http);
  t->metrics_http = NULL;
  uv_signal_stop(&t->sigint);
  uv_signal_stop(&t->sigterm);
  uv_signal_stop(&t->sighup);
  uv_close((uv_handle_t *)&t->sigint, NULL);
  uv_close((uv_handle_t *)&t->sigterm, NULL);
  uv_close((uv_handle_t *)&t->sighup, NULL);
  server_stop(t);
  /* Answers whatever still waits for the store and closes its handles,
   * so that the loop can end. */
  t->store->ops->stop(t->store);
}

/* shoal_strerror's names and messages for libuv's codes are libuv's own
 * (common/ does not link libuv, so the program hands them over). */
static const struct error_text uv_errors[] = {
#define UV_ERROR_ROW_(name, msg) {UV_##name, #name, msg},
    UV_ERRNO_MAP(UV_ERROR_ROW_)
#undef UV_ERROR_ROW_
};

int main(int argc, char **argv) {
  struct tracker_config cfg;
  struct cli cli;
  struct identity id;
  uv_loop_t loop;
  int created = 0;
  int err;

  error_set_system(uv_errors, sizeof(uv_errors) / sizeof(uv_errors[0]));
  memset(&cfg, 0, sizeof(cfg));
  cfg.interval_s = REGISTRY_INTERVAL_DEFAULT;
  cfg.max_conns = TRACKER_MAX_CONNS_DEFAULT;
  cfg.max_per_addr = TRACKER_MAX_PER_ADDR_DEFAULT;
  cfg.rate = RATELIMIT_RATE_DEFAULT;
  cfg.burst = RATELIMIT_BURST_DEFAULT;
  cfg.max_frame = TRACKER_FRAME_DEFAULT;
  cfg.idle_s = TRACKER_IDLE_DEFAULT_S;
  cfg.max_peers = REGISTRY_MAX_PEERS_DEFAULT;
  cfg.max_items = TMSG_MAX_ANNOUNCE_ITEMS;
  cfg.catalog_max = CATALOG_MAX_DEFAULT;
  cfg.catalog_ttl_s = CATALOG_TTL_DEFAULT;
  memset(&cli, 0, sizeof(cli));
  cli.level = LOG_INFO;
  cli.format = LOG_FORMAT_TEXT;
  cli.window_s = ENVELOPE_WINDOW_MS_DEFAULT / 1000u;

  int rc = parse_args(argc, argv, &cfg, &cli);
  if (rc >= 0) {
    return rc;
  }
  cfg.window_ms = cli.window_s * 1000u;
  const char *log_file = cli.log_file;
  int level = cli.level;
  log_set_level((enum log_level)level);
  log_set_format((enum log_format)cli.format);
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
    t.store->ops->stop(t.store);
    uv_run(&loop, UV_RUN_DEFAULT);
    tracker_close(&t);
    uv_loop_close(&loop);
    return 1;
  }
  if (cfg.metrics_listen[0] != '\0' &&
      (err = metrics_http_start(&t, cfg.metrics_listen, &t.metrics_http)) !=
          0) {
    fprintf(stderr, "shoal-tracker: --metrics-listen %s: %s\n",
            cfg.metrics_listen, shoal_strerror(err));
    server_stop(&t);
    t.store->ops->stop(t.store);
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
  /* The ready lines: where it listens, where its figures are, its key
   * (the last, which scripts wait for). */
  server_say_listening(&t);
  if (t.metrics_http != NULL) {
    printf("metrics on %s\n", metrics_http_address(t.metrics_http));
  }
  printf("tracker key %s\n", t.id_text);
  fflush(stdout);
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
