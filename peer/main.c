/* shoal-peer: wires the command line, the home folder, a node or a search,
 * and the report of what they do into one run, and gives its exit status.
 *
 * A usage error is one line on stderr and exit status 2, before anything is
 * done (cli.c); a failure once the command runs is one line
 * "shoal-peer: error:" (and one "error" event with --json) and exit
 * status 1; a get stopped by a signal before it completed exits with 128 +
 * the signal. Everything a run opens (the home's lock, the identity, the
 * loop and what runs on it) is released on every path out of run().
 */
#include <assert.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/link.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/textid.h"
#include "common/buf.h"
#include "peer/api.h"
#include "peer/cli.h"
#include "peer/ctl.h"
#include "peer/daemon.h"
#include "peer/fmt.h"
#include "peer/home.h"
#include "peer/manifest_build.h"
#include "peer/node.h"
#include "peer/report.h"
#include "peer/tracker_client.h"

#define SHOAL_VERSION "0.1.0"

struct app {
  struct cli cli;       /* what the command line says */
  struct report report; /* what is shown */
  uv_loop_t loop;
  int loop_on; /* loop is initialised and not yet closed */
  struct identity id;
  struct node *node;
  struct node_config cfg;
  struct home home;
  char **args; /* the command's arguments (cli's) */
  int nargs;
  /* share */
  int builds_left;
  struct manifest_builder *builder;
  int next_path;
  /* run state */
  int exit_code;
  int started;     /* a share or get began: the run prints its totals */
  int finished;    /* the command's work is done (or failed) */
  int completed;   /* get: every content is complete */
  int gets_left;   /* not complete yet */
  int shares_live; /* share: contents published and still served */
  int signalled;
  uint64_t start_ms;
  uv_signal_t sigint, sigterm, sigwinch;
  int signals_on;            /* the three are initialised and not yet closed */
  struct tracker_client *tc; /* search */
  unsigned search_tries;
  struct daemon *daemon; /* daemon */
  struct api *api;
};

/* ------------------------------------------------------------------------ */
/* Output */

/* The totals, for a run that started sharing or getting: one that stopped
 * at a usage error, a bad -o, a listen address in use or a path that
 * cannot be shared moved nothing and could not have. */
static void print_stats(struct app *a) {
  if (a->daemon != NULL && a->started) {
    struct daemon_totals t;
    daemon_totals(a->daemon, &t);
    report_totals(&a->report, t.uploaded, t.downloaded, 0,
                  (double)(uv_now(&a->loop) - a->start_ms) / 1000.0);
    return;
  }
  if (a->node == NULL || !a->started) {
    return;
  }
  report_totals(&a->report, node_uploaded(a->node), node_downloaded(a->node),
                node_wasted(a->node),
                (double)(uv_now(&a->loop) - a->start_ms) / 1000.0);
}

static void on_winch(uv_signal_t *h, int signum) {
  struct app *a = h->data;
  (void)signum;
  report_resize(&a->report);
}

static void stop_node(struct app *a);

/* What the node says is shown first; then what it means for the run. */
static void on_node_event(void *arg, const struct node_event *ev) {
  struct app *a = arg;

  report_event(&a->report, uv_now(&a->loop), ev);
  switch (ev->type) {
  case NODE_EV_SHARED:
    a->shares_live++;
    break;
  case NODE_EV_COMPLETE:
    if (a->gets_left > 0) {
      a->gets_left--;
    }
    if (a->gets_left == 0) {
      a->completed = 1;
      if (!a->cli.seed) {
        a->finished = 1;
        a->exit_code = 0;
        stop_node(a);
      }
    }
    break;
  case NODE_EV_FAILED:
    a->exit_code = 1;
    if (a->cli.cmd == CLI_SHARE && ev->code == SHOAL_ECHANGED &&
        --a->shares_live > 0) {
      /* The other contents are still served; the exit status will say
       * that one of them was lost. */
      break;
    }
    a->finished = 1;
    stop_node(a);
    break;
  default:
    break;
  }
}

/* ------------------------------------------------------------------------ */
/* Stopping */

static void close_signals(struct app *a) {
  if (a->signals_on) {
    a->signals_on = 0;
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigwinch, NULL);
  }
}

static void on_node_stopped(void *arg) {
  close_signals(arg);
}

static void on_api_stopped(void *arg);

static void stop_node(struct app *a) {
  if (a->daemon != NULL) {
    /* The API first (its streams end), then the daemon and its node. */
    if (a->api != NULL) {
      struct api *api = a->api;
      a->api = NULL;
      api_stop(api, on_api_stopped, a);
    } else {
      daemon_stop(a->daemon, on_node_stopped, a);
    }
    return;
  }
  if (a->tc != NULL) {
    /* A search: its callback comes now, with SHOAL_ECANCELED. */
    tracker_client_close(a->tc);
    return;
  }
  if (a->node == NULL) {
    close_signals(a);
    return;
  }
  if (a->builder != NULL) {
    manifest_build_cancel(a->builder);
  }
  node_stop(a->node, on_node_stopped, a);
}

static void on_signal(uv_signal_t *h, int signum) {
  struct app *a = h->data;
  if (a->signalled) {
    return;
  }
  a->signalled = signum;
  uv_signal_stop(&a->sigint);
  uv_signal_stop(&a->sigterm);
  if (!a->finished) {
    /* A get stopped before it completed leaves a resumable download and
     * says so in its exit status; a share, or a get that completed and
     * seeds, ends normally (unless a shared content was lost); a search
     * that had no answer yet did not finish. */
    a->exit_code =
        (a->cli.cmd == CLI_GET && !a->completed) || a->cli.cmd == CLI_SEARCH
            ? 128 + signum
            : a->exit_code;
    a->finished = 1;
  }
  log_info("peer", "signal %d: stopping", signum);
  stop_node(a);
}

/* ------------------------------------------------------------------------ */
/* Sharing */

static void share_next(struct app *a);

static void on_hash_progress(void *arg, uint64_t done, uint64_t total) {
  struct app *a = arg;
  report_hashing(&a->report, uv_now(&a->loop), a->args[a->next_path - 1], done,
                 total);
}

static void on_skipped(void *arg, const char *path, const char *why) {
  struct app *a = arg;
  report_left_out(&a->report, path, why);
}

static char err_path[4096];

/* A share failed: one error, and the node stops. */
static void share_failed(struct app *a, int code, const char *msg) {
  report_error(&a->report, code, msg);
  a->finished = 1;
  a->exit_code = 1;
  stop_node(a);
}

static void on_built(void *arg, int status, struct manifest *m) {
  struct app *a = arg;
  char msg[8400];
  int err;
  a->builder = NULL;
  report_clear(&a->report);
  if (status == SHOAL_ECANCELED) {
    manifest_free(m);
    return;
  }
  if (status != 0) {
    snprintf(msg, sizeof(msg), "cannot share %s: %s%s%s",
             a->args[a->next_path - 1], shoal_strerror(status),
             err_path[0] ? " at " : "", err_path);
    share_failed(a, status, msg);
    return;
  }
  err = node_share(a->node, m, a->cli.trackers, a->cli.ntrackers,
                   a->cli.have_key ? a->cli.tracker_key : NULL);
  if (err == SHOAL_ESIZE) {
    snprintf(msg, sizeof(msg),
             "cannot share %s: it holds no files (empty folders are not "
             "shared) — put files in it first",
             a->args[a->next_path - 1]);
    share_failed(a, err, msg);
    return;
  }
  if (err != 0 && err != UV_EEXIST) {
    snprintf(msg, sizeof(msg), "cannot share %s: %s", a->args[a->next_path - 1],
             shoal_strerror(err));
    share_failed(a, err, msg);
    return;
  }
  a->started = 1;
  share_next(a);
}

static void share_next(struct app *a) {
  struct manifest_build_opts o;
  int err;
  if (a->next_path >= a->nargs || a->finished) {
    return;
  }
  memset(&o, 0, sizeof(o));
  o.threads = 2;
  o.progress = on_hash_progress;
  o.skipped = on_skipped;
  o.arg = a;
  err_path[0] = '\0';
  o.err_path = err_path;
  o.err_path_cap = sizeof(err_path);
  a->next_path++;
  err = manifest_build_start(&a->loop, a->args[a->next_path - 1], &a->id, &o,
                             on_built, a, &a->builder);
  if (err != 0) {
    char msg[4400];
    snprintf(msg, sizeof(msg), "cannot share %s: %s%s",
             a->args[a->next_path - 1], shoal_strerror(err),
             err == UV_ENOENT ? " (no such file or folder)" : "");
    share_failed(a, err, msg);
  }
}

/* ------------------------------------------------------------------------ */
/* Search */

/* One result, with a link that names the trackers asked and the key that
 * signed the answer. */
static void print_result(struct app *a, const struct tmsg_result *x,
                         const uint8_t *key) {
  struct share_link l;
  char link[LINK_MAX_CHARS + 1];
  memset(&l, 0, sizeof(l));
  memcpy(l.id, x->content, 32);
  snprintf(l.name, sizeof(l.name), "%s", x->name);
  l.size = x->size;
  l.tracker_count = a->cli.ntrackers;
  memcpy(l.trackers, a->cli.trackers,
         a->cli.ntrackers * sizeof(a->cli.trackers[0]));
  for (size_t i = 0; i < l.tracker_count; i++) {
    /* A tracker without a key of its own is taken to sign with the one
     * that answered. */
    if (!l.trackers[i].has_key) {
      memcpy(l.trackers[i].key, key, 32);
      l.trackers[i].has_key = 1;
    }
  }
  if (link_format(&l, link, sizeof(link)) < 0) {
    return; /* a name the link format cannot carry */
  }
  report_search_result(&a->report, x, link);
}

static void on_search(void *arg, int status,
                      const struct tracker_client_reply *r) {
  struct app *a = arg;
  char msg[TRACKER_CLIENT_DESCRIBE_BYTES];
  if (status == SHOAL_ECANCELED && a->signalled) {
    /* Stopped by a signal: its exit status says so, nothing more. */
  } else if (status != 0 && (r == NULL || r->type != TMSG_ERROR) &&
             ++a->search_tries < a->cli.ntrackers &&
             tracker_client_search(a->tc, &a->cli.query, on_search, a) == 0) {
    /* The client moved on to the next tracker: ask it. */
    return;
  } else if (status != 0) {
    tracker_client_describe(a->tc, status, r, msg, sizeof(msg));
    report_error(&a->report, status, msg);
    a->exit_code = 1;
  } else {
    const uint8_t *key = tracker_client_key(a->tc);
    report_search_begin(&a->report, r->u.search.count);
    for (unsigned i = 0; i < r->u.search.count; i++) {
      print_result(a, &r->u.search.results[i], key);
    }
    a->exit_code = 0;
  }
  a->finished = 1;
  tracker_client_close(a->tc);
  a->tc = NULL;
  close_signals(a);
}

/* ------------------------------------------------------------------------ */
/* Set-up */

/* The -o folder of a get, made before anything listens: a get that cannot
 * write stops there. Returns 0, or -1 after reporting. */
static int prepare_out_dir(struct app *a) {
  char msg[4400];
  int err = home_out_dir(a->cli.out_dir, msg, sizeof(msg));
  if (err != 0) {
    report_error(&a->report, err, msg);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Running */

static void start_signals(struct app *a) {
  uv_signal_init(&a->loop, &a->sigint);
  uv_signal_init(&a->loop, &a->sigterm);
  uv_signal_init(&a->loop, &a->sigwinch);
  a->sigint.data = a;
  a->sigterm.data = a;
  a->sigwinch.data = a;
  a->signals_on = 1;
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  if (a->report.tty) {
    /* The progress line follows the terminal's width. */
    uv_signal_start(&a->sigwinch, on_winch, SIGWINCH);
  }
}

static int run_search(struct app *a) {
  struct tracker_client_config tc;
  uint64_t seq = clock_wall_ms() * 1000;
  memset(&tc, 0, sizeof(tc));
  tc.loop = &a->loop;
  tc.id = &a->id;
  tc.trackers = a->cli.trackers;
  tc.ntrackers = a->cli.ntrackers;
  tc.tracker_key = a->cli.have_key ? a->cli.tracker_key : NULL;
  tc.seq = &seq;
  if (tracker_client_new(&a->tc, &tc) != 0 ||
      tracker_client_search(a->tc, &a->cli.query, on_search, a) != 0) {
    report_error(&a->report, SHOAL_ENOMEM, "cannot start the search");
    tracker_client_close(a->tc);
    a->tc = NULL;
    close_signals(a);
    a->exit_code = 1;
  }
  uv_run(&a->loop, UV_RUN_DEFAULT);
  return a->exit_code;
}

/* Starts the share or the get on a node that listens. */
static void start_work(struct app *a) {
  int err;
  if (a->cli.cmd == CLI_SHARE) {
    share_next(a);
    return;
  }
  a->started = 1;
  a->gets_left = a->cli.ngets;
  for (int i = 0; i < a->cli.ngets && !a->finished; i++) {
    struct cli_get *g = &a->cli.gets[i];
    err = node_get(a->node, g->content, g->link.name[0] ? g->link.name : NULL,
                   g->link.size, g->trackers, g->ntrackers,
                   g->have_key ? g->key : NULL, a->cli.out_dir, a->cli.seed);
    for (unsigned j = 0; err == 0 && j < a->cli.npeers; j++) {
      err = node_connect(a->node, g->content,
                         (const struct sockaddr *)&a->cli.peers[j]);
    }
    if (err == UV_EEXIST) {
      a->gets_left--; /* the same content twice: one download */
    } else if (err != 0) {
      report_error(&a->report, err, "cannot start the download");
      a->exit_code = 1;
      a->finished = 1;
      stop_node(a);
    }
  }
}

/* A share or a get: a node that listens, then the work. */
static int run_node(struct app *a) {
  int err = node_new(&a->node, &a->loop, &a->cfg, &a->id, on_node_event, a);
  if (err != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg),
             "cannot listen on %s: %s — choose another --listen ADDR:PORT",
             a->cfg.listen ? a->cfg.listen : "the default address",
             shoal_strerror(err));
    report_error(&a->report, err, msg);
    a->exit_code = 1;
    a->finished = 1;
    if (a->node != NULL) {
      node_stop(a->node, on_node_stopped, a);
    } else {
      close_signals(a);
    }
  } else {
    start_work(a);
  }
  uv_run(&a->loop, UV_RUN_DEFAULT);
  print_stats(a);
  return a->exit_code;
}

/* ------------------------------------------------------------------------ */
/* The daemon */

static void on_api_stopped(void *arg) {
  struct app *a = arg;
  daemon_stop(a->daemon, on_node_stopped, a);
}

/* Says where the API and the page are: one "api" event with --json, else
 * lines for people. */
static void report_api(struct app *a) {
  const char *tcp = api_tcp_address(a->api);
  const char *page = api_page_url(a->api);
  if (a->cli.json) {
    struct buf b;
    buf_init(&b, 4096);
    fmt_json_begin(&b, "api");
    fmt_json_str_field(&b, "socket", api_socket_path(a->api));
    if (tcp[0] != '\0') {
      fmt_json_str_field(&b, "tcp", tcp);
      fmt_json_str_field(&b, "page", page);
    }
    fmt_json_u64_field(&b, "port", daemon_port(a->daemon));
    fmt_json_end(&b);
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    buf_free(&b);
    return;
  }
  printf("shoal-peer daemon: peers connect on port %u; API on %s\n",
         (unsigned)daemon_port(a->daemon), api_socket_path(a->api));
  if (tcp[0] != '\0') {
    printf("page: %s\n", page);
  }
  fflush(stdout);
}

static int run_daemon(struct app *a) {
  struct daemon_config dc;
  struct api_config ac;
  char msg[DAEMON_MSG_BYTES + HOME_MSG_BYTES];
  int err;
  memset(&dc, 0, sizeof(dc));
  dc.home = a->home.path;
  dc.listen = a->cfg.listen;
  memcpy(dc.trackers, a->cli.trackers, sizeof(dc.trackers));
  dc.ntrackers = a->cli.ntrackers;
  dc.tracker_key = a->cli.have_key ? a->cli.tracker_key : NULL;
  dc.download_dir = a->cli.download_dir;
  dc.watch_dir = a->cli.watch_dir;
  dc.watch_share = a->cli.watch_share;
  dc.node = a->cfg;
  err = daemon_new(&a->daemon, &a->loop, &dc, &a->id, msg, sizeof(msg));
  if (err == 0) {
    memset(&ac, 0, sizeof(ac));
    ac.home = a->home.path;
    ac.tcp_listen = a->cli.api_listen;
    ac.version = SHOAL_VERSION;
    ac.peer_pk = a->id.pk;
    err = api_start(&a->api, &a->loop, a->daemon, &ac, msg, sizeof(msg));
  }
  if (err != 0) {
    report_error(&a->report, err, msg);
    a->exit_code = 1;
    a->finished = 1;
    if (a->daemon != NULL) {
      daemon_stop(a->daemon, on_node_stopped, a);
    } else {
      close_signals(a);
    }
  } else {
    a->exit_code = 0;
    a->started = 1;
    report_api(a);
  }
  uv_run(&a->loop, UV_RUN_DEFAULT);
  print_stats(a);
  return a->exit_code;
}

/* A client command: requests to the daemon of the home folder, which
 * this process neither opens nor locks (the daemon holds it). Returns the
 * exit status. */
static int run_client(struct app *a) {
  char home[HOME_PATH_BYTES];
  if (a->cli.home != NULL) {
    snprintf(home, sizeof(home), "%s", a->cli.home);
  } else if (home_default(home, sizeof(home)) != 0) {
    report_error(&a->report, SHOAL_EINVAL,
                 "cannot find a home folder; give --home DIR");
    return 1;
  }
  return ctl_run(&a->cli, home, &a->report);
}

/* The whole run, with one way out: whatever it opened is released at out,
 * whichever step stopped it. Returns the exit status. */
static int run(struct app *a, int argc, char **argv) {
  char msg[HOME_MSG_BYTES];
  int lock;
  int err;
  int rc = 1;

  signal(SIGPIPE, SIG_IGN);
  /* Chunk buffers (up to 16 MiB) come and go at the download's pace. With
   * glibc's defaults each one is a fresh mmap or a heap grown and trimmed
   * again, so every chunk pays page faults for memory it had a moment
   * ago; keeping them on the heap halves the loop thread's work. The heap
   * then holds at most the chunks in flight (NODE_MAX_PUT_BYTES and the
   * partials), as before. */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  if (sodium_init() < 0) {
    fprintf(stderr, "shoal-peer: error: libsodium cannot start\n");
    goto out;
  }

  err = cli_parse(&a->cli, argc, argv);
  if (err == SHOAL_ENOMEM) {
    fprintf(stderr, "shoal-peer: error: out of memory\n");
    goto out;
  }
  if (err != 0) {
    report_usage(stderr, a->cli.error);
    rc = 2;
    goto out;
  }
  if (a->cli.cmd == CLI_HELP) {
    fputs(cli_usage, stdout);
    rc = 0;
    goto out;
  }
  if (a->cli.cmd == CLI_VERSION) {
    printf("shoal-peer %s\n", SHOAL_VERSION);
    rc = 0;
    goto out;
  }
  a->args = a->cli.args;
  a->nargs = a->cli.nargs;
  a->cfg = a->cli.node;
  log_set_level(a->cli.log_level);
  report_init(&a->report, stdout, stderr, a->cli.json, a->cli.quiet,
              a->cli.have_key);
  if (CLI_IS_CLIENT(a->cli.cmd)) {
    rc = run_client(a);
    goto out;
  }
  lock = a->cli.cmd == CLI_SHARE || a->cli.cmd == CLI_GET ||
         a->cli.cmd == CLI_DAEMON;
  err = home_open(&a->home, a->cli.home, lock, &a->id, msg, sizeof(msg));
  if (err != 0) {
    report_error(&a->report, err, msg);
    goto out;
  }
  report_set_peer(&a->report, a->id.pk);
  if (a->cli.cmd == CLI_ID) {
    report_id(&a->report, a->id.pk);
    rc = 0;
    goto out;
  }
  if (a->cli.cmd == CLI_GET && prepare_out_dir(a) != 0) {
    goto out;
  }

  a->cfg.home = a->home.path;
  uv_loop_init(&a->loop);
  a->loop_on = 1;
  a->start_ms = uv_now(&a->loop);
  report_set_start(&a->report, a->start_ms);
  start_signals(a);
  rc = a->cli.cmd == CLI_SEARCH   ? run_search(a)
       : a->cli.cmd == CLI_DAEMON ? run_daemon(a)
                                  : run_node(a);

out:
  if (a->loop_on) {
    /* Handles still open (none, when the command ended by itself) close
     * here, and the node's memory goes once they have. */
    close_signals(a);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    node_free(a->node);
    a->node = NULL;
    daemon_free(a->daemon);
    a->daemon = NULL;
    err = uv_loop_close(&a->loop);
    assert(err == 0); /* a handle left open is a bug above */
    (void)err;
    a->loop_on = 0;
  }
  identity_close(&a->id);
  home_close(&a->home);
  report_close(&a->report);
  cli_close(&a->cli);
  return rc;
}

/* shoal_strerror's names and messages for libuv's codes are libuv's own
 * (common/ does not link libuv, so the program hands them over). */
static const struct error_text uv_errors[] = {
#define UV_ERROR_ROW_(name, msg) {UV_##name, #name, msg},
    UV_ERRNO_MAP(UV_ERROR_ROW_)
#undef UV_ERROR_ROW_
};

int main(int argc, char **argv) {
  /* On the heap, not in a static: once it is freed, anything only it
   * pointed to is a leak that LeakSanitizer reports. */
  struct app *a = calloc(1, sizeof(*a));
  int rc;
  error_set_system(uv_errors, sizeof(uv_errors) / sizeof(uv_errors[0]));
  if (a == NULL) {
    fprintf(stderr, "shoal-peer: error: out of memory\n");
    return 1;
  }
  rc = run(a, argc, argv);
  free(a);
  return rc;
}
