/* shoal-peer: share and get files, client and server at once. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/identity.h"
#include "common/link.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/textid.h"
#include "peer/fmt.h"
#include "peer/node.h"
#include "peer/tracker_client.h"

#define SHOAL_VERSION "0.1.0"
#define PLAIN_PROGRESS_MS 5000u
#define JSON_PROGRESS_GET_MS 500u
#define JSON_PROGRESS_SEED_MS 2000u
#define TTY_PROGRESS_MS 500u
#define PROGRESS_SLOTS 64u

static const char usage[] =
    "usage: shoal-peer share PATH... --tracker ADDR:PORT [options]\n"
    "       shoal-peer get LINK... [-o DIR] [--seed] [options]\n"
    "       shoal-peer get CONTENT-ID... --tracker ADDR:PORT [-o DIR]\n"
    "       shoal-peer search WORDS... --tracker ADDR:PORT [--limit N]\n"
    "       shoal-peer id\n"
    "\n"
    "Shares files and folders with other peers, and gets them, through a\n"
    "shoal tracker. One process serves what it holds and fetches what it\n"
    "lacks from many peers at once; every chunk is checked against the\n"
    "publisher's signed manifest.\n"
    "\n"
    "  -o, --output DIR         where get puts the file or folder (.)\n"
    "  --seed                   keep serving after get completes\n"
    "  --tracker ADDR:PORT      a tracker (repeatable)\n"
    "  --tracker-key ID         the tracker's public key (else learned from\n"
    "                           its first signed reply)\n"
    "  --listen ADDR:PORT       accept peers here (0.0.0.0:0: any port)\n"
    "  --home DIR               keys and resume state ($XDG_DATA_HOME/shoal)\n"
    "  --max-peers N            sessions per content, 1..256 (50)\n"
    "  --upload-rate R          bytes a second, e.g. 500k, 10M (0: no limit)\n"
    "  --download-rate R        the same for downloads\n"
    "  --mode p2p|cs            swarm (p2p), or the client-server baseline:\n"
    "                           fetch from the publisher only, upload nothing\n"
    "  --limit N                search results (20)\n"
    "  --log-level LEVEL        error, warn, info or debug (warn)\n"
    "  --quiet                  no progress output\n"
    "  --json                   one JSON object per line on stdout\n"
    "  --interval-cap SECONDS   announce at least this often\n"
    "  --help, --version\n";

enum cmd { CMD_NONE, CMD_SHARE, CMD_GET, CMD_SEARCH, CMD_ID };

/* One content a get fetches: its ID, and its link when it came as one. */
struct get_item {
  uint8_t content[MANIFEST_ID_BYTES];
  struct share_link link;
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t key[32];
  int have_key;
};

struct app {
  enum cmd cmd;
  uv_loop_t loop;
  struct identity id;
  struct node *node;
  struct node_config cfg;
  char home[4096];
  const char *out_dir;
  int seed;
  int quiet;
  int json;
  int tty;
  unsigned limit;
  int lock_fd;
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t tracker_key[32];
  int have_key;
  char **args;
  int nargs;
  /* share */
  int builds_left;
  struct manifest_builder *builder;
  int next_path;
  uint64_t last_hash_ms;
  /* run state */
  int exit_code;
  int finished; /* the command's work is done (or failed) */
  int completed; /* get: every content is complete */
  struct get_item *gets; /* get: the contents asked for */
  int ngets;
  int gets_left; /* not complete yet */
  int shares_live; /* share: contents published and still served */
  struct {
    uint8_t content[32];
    uint64_t last_ms;
  } shown[PROGRESS_SLOTS]; /* when each content's progress was shown */
  unsigned nshown;
  int signalled;
  uint64_t start_ms;
  uint64_t last_progress_ms;
  int progress_line; /* a \r line is on the terminal */
  uv_signal_t sigint, sigterm;
  struct tcl *tc; /* search */
};

/* ------------------------------------------------------------------------ */
/* Output */

static void json_out(struct buf *b) {
  if (buf_err(b) == 0) {
    fwrite(b->data, 1, b->len, stdout);
    fflush(stdout);
  }
  buf_free(b);
}

static void clear_progress(struct app *a) {
  if (a->progress_line) {
    fputs("\r\033[K", stderr);
    a->progress_line = 0;
  }
}

__attribute__((format(printf, 1, 2))) static int
fail_usage(const char *fmt, ...) {
  va_list ap;
  fputs("shoal-peer: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\ntry 'shoal-peer --help'\n", stderr);
  return 2;
}

/* One line naming the cause and what to do; --json also gets an event. */
static void report_error(struct app *a, int code, const char *msg) {
  clear_progress(a);
  fprintf(stderr, "shoal-peer: error: %s\n", msg);
  if (a->json) {
    struct buf b;
    buf_init(&b, 1 << 16);
    fmt_json_begin(&b, "error");
    fmt_json_str_field(&b, "code", shoal_err_name(code));
    fmt_json_str_field(&b, "message", msg);
    fmt_json_end(&b);
    json_out(&b);
  }
}

static void print_stats(struct app *a) {
  if (a->node == NULL) {
    return;
  }
  if (a->json) {
    struct buf b;
    buf_init(&b, 4096);
    fmt_json_begin(&b, "stats");
    fmt_json_u64_field(&b, "uploaded", node_uploaded(a->node));
    fmt_json_u64_field(&b, "downloaded", node_downloaded(a->node));
    fmt_json_u64_field(&b, "wasted", node_wasted(a->node));
    fmt_json_double_field(&b, "seconds",
                          (double)(uv_now(&a->loop) - a->start_ms) / 1000.0);
    fmt_json_end(&b);
    json_out(&b);
  } else if (!a->quiet) {
    char up[FMT_NUM_BYTES], down[FMT_NUM_BYTES];
    clear_progress(a);
    fmt_bytes(up, sizeof(up), node_uploaded(a->node));
    fmt_bytes(down, sizeof(down), node_downloaded(a->node));
    fprintf(stderr, "shoal-peer: uploaded %s, downloaded %s\n", up, down);
  }
}

static void progress_text(const struct node_swarm_info *s, char *out,
                          size_t cap) {
  char have[FMT_NUM_BYTES], total[FMT_NUM_BYTES], rate[FMT_NUM_BYTES],
      eta[FMT_NUM_BYTES];
  double pct = s->total ? 100.0 * (double)s->have / (double)s->total : 0.0;
  uint64_t left = s->total > s->have ? s->total - s->have : 0;
  fmt_bytes(have, sizeof(have), s->have);
  fmt_bytes(total, sizeof(total), s->total);
  fmt_rate(rate, sizeof(rate), s->rate);
  fmt_eta(eta, sizeof(eta), s->rate ? left / s->rate : UINT64_MAX);
  if (s->seeding) {
    char up[FMT_NUM_BYTES];
    fmt_bytes(up, sizeof(up), s->uploaded);
    snprintf(out, cap, "%s: seeding %s, uploaded %s, peers %u", s->name,
             total, up, s->peers);
  } else {
    snprintf(out, cap, "%s: %.1f%% %s/%s %s ETA %s peers %u seeders %u",
             s->name, pct, have, total, rate, eta, s->peers, s->seeders);
  }
}

/* When the progress of a content was last shown (0: never). */
static uint64_t *last_shown(struct app *a, const uint8_t content[32]) {
  unsigned i;
  for (i = 0; i < a->nshown; i++) {
    if (memcmp(a->shown[i].content, content, 32) == 0) {
      return &a->shown[i].last_ms;
    }
  }
  if (a->nshown == PROGRESS_SLOTS) {
    return &a->last_progress_ms; /* many contents share one clock */
  }
  memcpy(a->shown[a->nshown].content, content, 32);
  a->shown[a->nshown].last_ms = 0;
  return &a->shown[a->nshown++].last_ms;
}

static void on_progress(struct app *a, const struct node_swarm_info *s) {
  uint64_t now = uv_now(&a->loop);
  char line[1024];
  if (a->quiet) {
    return;
  }
  if (a->json) {
    uint64_t every = s->seeding ? JSON_PROGRESS_SEED_MS : JSON_PROGRESS_GET_MS;
    uint64_t *last = last_shown(a, s->content);
    char cid[TEXTID_STRLEN];
    struct buf b;
    if (*last != 0 && now - *last < every - 50) {
      return;
    }
    *last = now;
    textid_encode(TEXTID_CONTENT, s->content, cid);
    buf_init(&b, 4096);
    fmt_json_begin(&b, "progress");
    fmt_json_str_field(&b, "content", cid);
    fmt_json_u64_field(&b, "have", s->have);
    fmt_json_u64_field(&b, "total", s->total);
    fmt_json_u64_field(&b, "rate", s->rate);
    fmt_json_u64_field(&b, "peers", s->peers);
    fmt_json_u64_field(&b, "seeders", s->seeders);
    fmt_json_u64_field(&b, "uploaded", s->uploaded);
    fmt_json_u64_field(&b, "downloaded", s->downloaded);
    fmt_json_end(&b);
    json_out(&b);
    return;
  }
  if (a->quiet) {
    return;
  }
  if (a->tty) {
    if (now - a->last_progress_ms < TTY_PROGRESS_MS - 50) {
      return;
    }
    a->last_progress_ms = now;
    progress_text(s, line, sizeof(line));
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    a->progress_line = 1;
    return;
  }
  {
    uint64_t *last = last_shown(a, s->content);
    if (*last != 0 && now - *last < PLAIN_PROGRESS_MS) {
      return;
    }
    if (*last == 0) {
      *last = now; /* the first line comes after one period */
      return;
    }
    *last = now;
  }
  progress_text(s, line, sizeof(line));
  fprintf(stderr, "%s\n", line);
}

static void stop_node(struct app *a);

static void on_node_event(void *arg, const struct node_event *ev) {
  struct app *a = arg;
  char text[TEXTID_STRLEN];
  struct buf b;

  switch (ev->type) {
  case NODE_EV_LISTENING:
    if (a->json) {
      textid_encode(TEXTID_KEY, a->id.pk, text);
      buf_init(&b, 4096);
      fmt_json_begin(&b, "listening");
      fmt_json_u64_field(&b, "port", ev->port);
      fmt_json_str_field(&b, "id", text);
      fmt_json_end(&b);
      json_out(&b);
    }
    break;
  case NODE_EV_TRACKER:
    textid_encode(TEXTID_KEY, ev->key, text);
    if (a->json) {
      buf_init(&b, 4096);
      fmt_json_begin(&b, "tracker");
      fmt_json_str_field(&b, "key", text);
      fmt_json_end(&b);
      json_out(&b);
    } else if (!a->have_key && !a->quiet) {
      clear_progress(a);
      fprintf(stderr, "shoal-peer: tracker key %s (learned on first use)\n",
              text);
    }
    break;
  case NODE_EV_HASHING:
    break;
  case NODE_EV_SHARED:
    textid_encode(TEXTID_CONTENT, ev->swarm->content, text);
    if (a->json) {
      buf_init(&b, 8192);
      fmt_json_begin(&b, "shared");
      fmt_json_str_field(&b, "name", ev->swarm->name);
      fmt_json_str_field(&b, "content", text);
      fmt_json_u64_field(&b, "size", ev->swarm->total);
      fmt_json_str_field(&b, "link", ev->link);
      fmt_json_end(&b);
      json_out(&b);
    } else {
      clear_progress(a);
      printf("%s\n", ev->link);
      fflush(stdout);
    }
    a->shares_live++;
    break;
  case NODE_EV_MANIFEST:
    if (a->json) {
      buf_init(&b, 4096);
      fmt_json_begin(&b, "manifest");
      fmt_json_str_field(&b, "name", ev->swarm->name);
      fmt_json_u64_field(&b, "size", ev->swarm->total);
      fmt_json_u64_field(&b, "chunks", ev->swarm->chunks);
      fmt_json_u64_field(&b, "resumed_bytes", ev->resumed);
      fmt_json_end(&b);
      json_out(&b);
    } else if (!a->quiet && ev->resumed > 0) {
      char r[FMT_NUM_BYTES];
      fmt_bytes(r, sizeof(r), ev->resumed);
      clear_progress(a);
      fprintf(stderr, "shoal-peer: %s: resuming with %s already verified\n",
              ev->swarm->name, r);
    }
    break;
  case NODE_EV_PROGRESS:
    on_progress(a, ev->swarm);
    break;
  case NODE_EV_COMPLETE:
    textid_encode(TEXTID_CONTENT, ev->swarm->content, text);
    if (a->json) {
      buf_init(&b, 8192);
      fmt_json_begin(&b, "complete");
      fmt_json_str_field(&b, "content", text);
      fmt_json_str_field(&b, "path", ev->path);
      fmt_json_double_field(&b, "seconds", ev->seconds);
      fmt_json_u64_field(&b, "downloaded", ev->swarm->downloaded);
      fmt_json_u64_field(&b, "uploaded", ev->swarm->uploaded);
      fmt_json_end(&b);
      json_out(&b);
    } else {
      clear_progress(a);
      printf("%s\n", ev->path);
      fflush(stdout);
    }
    if (a->gets_left > 0) {
      a->gets_left--;
    }
    if (a->gets_left == 0) {
      a->completed = 1;
      if (!a->seed) {
        a->finished = 1;
        a->exit_code = 0;
        stop_node(a);
      }
    }
    break;
  case NODE_EV_BANNED:
    textid_encode(TEXTID_KEY, ev->key, text);
    if (a->json) {
      buf_init(&b, 4096);
      fmt_json_begin(&b, "banned");
      fmt_json_str_field(&b, "peer", text);
      fmt_json_str_field(&b, "reason", ev->message);
      fmt_json_end(&b);
      json_out(&b);
    } else if (!a->quiet) {
      clear_progress(a);
      fprintf(stderr, "shoal-peer: banned peer %s: %s\n", text, ev->message);
    }
    break;
  case NODE_EV_WARNING:
    if (a->json) {
      buf_init(&b, 8192);
      fmt_json_begin(&b, "warning");
      if (ev->swarm != NULL) {
        textid_encode(TEXTID_CONTENT, ev->swarm->content, text);
        fmt_json_str_field(&b, "content", text);
      }
      fmt_json_str_field(&b, "message", ev->message);
      fmt_json_end(&b);
      json_out(&b);
    } else if (!a->quiet) {
      clear_progress(a);
      fprintf(stderr, "shoal-peer: %s\n", ev->message);
    }
    break;
  case NODE_EV_FAILED:
    report_error(a, ev->code, ev->message);
    a->exit_code = 1;
    if (a->cmd == CMD_SHARE && ev->code == SHOAL_ECHANGED &&
        --a->shares_live > 0) {
      /* The other contents are still served; the exit status will say
       * that one of them was lost. */
      break;
    }
    a->finished = 1;
    stop_node(a);
    break;
  }
}

/* ------------------------------------------------------------------------ */
/* Stopping */

static void on_node_stopped(void *arg) {
  struct app *a = arg;
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
}

static void stop_node(struct app *a) {
  if (a->node == NULL) {
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
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
     * seeds, ends normally (unless a shared content was lost). */
    a->exit_code =
        a->cmd == CMD_GET && !a->completed ? 128 + signum : a->exit_code;
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
  uint64_t now = uv_now(&a->loop);
  if (now - a->last_hash_ms < 250 && done != total) {
    return;
  }
  a->last_hash_ms = now;
  if (a->json) {
    struct buf b;
    buf_init(&b, 4096);
    fmt_json_begin(&b, "hashing");
    fmt_json_str_field(&b, "name", a->args[a->next_path - 1]);
    fmt_json_u64_field(&b, "done", done);
    fmt_json_u64_field(&b, "total", total);
    fmt_json_end(&b);
    json_out(&b);
  } else if (a->tty && !a->quiet && total >= (64u << 20)) {
    char d[FMT_NUM_BYTES], t[FMT_NUM_BYTES];
    int width = 30, fill = total ? (int)((double)done / (double)total * width) : width;
    char bar[64];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    fmt_bytes(d, sizeof(d), done);
    fmt_bytes(t, sizeof(t), total);
    fprintf(stderr, "\r\033[Khashing %s [%s] %s/%s", a->args[a->next_path - 1],
            bar, d, t);
    fflush(stderr);
    a->progress_line = 1;
  }
}

static void on_skipped(void *arg, const char *path, const char *why) {
  struct app *a = arg;
  if (!a->quiet && !a->json) {
    clear_progress(a);
    fprintf(stderr, "shoal-peer: left out %s: %s\n", path, why);
  }
}

static char err_path[4096];

static void on_built(void *arg, int status, struct manifest *m) {
  struct app *a = arg;
  char msg[4400];
  int err;
  a->builder = NULL;
  clear_progress(a);
  if (status == SHOAL_ECANCELED) {
    manifest_free(m);
    return;
  }
  if (status != 0) {
    snprintf(msg, sizeof(msg), "cannot share %s: %s%s%s",
             a->args[a->next_path - 1], shoal_strerror(status),
             err_path[0] ? " at " : "", err_path);
    report_error(a, status, msg);
    a->finished = 1;
    a->exit_code = 1;
    stop_node(a);
    return;
  }
  err = node_share(a->node, m, a->trackers, a->ntrackers,
                   a->have_key ? a->tracker_key : NULL);
  if (err == SHOAL_ESIZE) {
    snprintf(msg, sizeof(msg),
             "cannot share %s: it holds no files (empty folders are not "
             "shared) — put files in it first",
             a->args[a->next_path - 1]);
    report_error(a, err, msg);
    a->finished = 1;
    a->exit_code = 1;
    stop_node(a);
    return;
  }
  if (err != 0 && err != UV_EEXIST) {
    snprintf(msg, sizeof(msg), "cannot share %s: %s",
             a->args[a->next_path - 1], shoal_strerror(err));
    report_error(a, err, msg);
    a->finished = 1;
    a->exit_code = 1;
    stop_node(a);
    return;
  }
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
    report_error(a, err, msg);
    a->finished = 1;
    a->exit_code = 1;
    stop_node(a);
  }
}

/* ------------------------------------------------------------------------ */
/* Search */

static void on_search(void *arg, int status, const struct tcl_reply *r) {
  struct app *a = arg;
  char msg[1024];
  if (status != 0) {
    if (r != NULL && r->type == TMSG_ERROR) {
      snprintf(msg, sizeof(msg), "tracker %s refused the search: %s",
               tcl_current(a->tc), r->error.reason);
    } else {
      snprintf(msg, sizeof(msg),
               "tracker unreachable: %s (%s) — check the address and that "
               "shoal-tracker runs there",
               tcl_current(a->tc), shoal_strerror(status));
    }
    report_error(a, status, msg);
    a->exit_code = 1;
  } else {
    const uint8_t *key = tcl_key(a->tc);
    if (r->u.search.count == 0 && !a->json) {
      fprintf(stderr, "shoal-peer: no matches\n");
    } else if (!a->json) {
      printf("%-32s %10s %7s %11s  %s\n", "NAME", "SIZE", "SEEDERS",
             "DOWNLOADERS", "LINK");
    }
    for (unsigned i = 0; i < r->u.search.count; i++) {
      const struct tmsg_result *x = &r->u.search.results[i];
      struct share_link l;
      char link[LINK_MAX_CHARS + 1];
      char cid[TEXTID_STRLEN];
      char size[FMT_NUM_BYTES];
      memset(&l, 0, sizeof(l));
      memcpy(l.id, x->content, 32);
      snprintf(l.name, sizeof(l.name), "%s", x->name);
      l.size = x->size;
      memcpy(l.tracker_key, key, 32);
      l.tracker_count = a->ntrackers;
      memcpy(l.trackers, a->trackers, a->ntrackers * sizeof(a->trackers[0]));
      if (link_format(&l, link, sizeof(link)) < 0) {
        continue; /* a name the link format cannot carry */
      }
      textid_encode(TEXTID_CONTENT, x->content, cid);
      if (a->json) {
        struct buf b;
        buf_init(&b, 16384);
        fmt_json_begin(&b, "search");
        fmt_json_str_field(&b, "name", x->name);
        fmt_json_u64_field(&b, "size", x->size);
        fmt_json_u64_field(&b, "seeders", x->seeders);
        fmt_json_u64_field(&b, "downloaders", x->downloaders);
        fmt_json_str_field(&b, "content", cid);
        fmt_json_str_field(&b, "link", link);
        fmt_json_end(&b);
        json_out(&b);
      } else {
        fmt_bytes(size, sizeof(size), x->size);
        printf("%-32s %10s %7u %11u  %s\n", x->name, size, x->seeders,
               x->downloaders, link);
      }
    }
    a->exit_code = 0;
  }
  tcl_close(a->tc);
  a->tc = NULL;
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
}

/* ------------------------------------------------------------------------ */
/* Set-up */

static int make_dirs(const char *path) {
  char tmp[4096];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof(tmp)) {
    return -ENAMETOOLONG;
  }
  memcpy(tmp, path, len + 1);
  for (char *p = tmp + 1; *p != '\0'; p++) {
    if (*p == '/') {
      *p = '\0';
      if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
        return -errno;
      }
      *p = '/';
    }
  }
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
    return -errno;
  }
  return 0;
}

static int default_home(char *out, size_t cap) {
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  int n;
  if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(out, cap, "%s/shoal", xdg);
  } else if (home != NULL && home[0] == '/') {
    n = snprintf(out, cap, "%s/.local/share/shoal", home);
  } else {
    n = snprintf(out, cap, "./.shoal");
  }
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* One process per home: the identity's sequence numbers must only grow. */
static int lock_home(struct app *a) {
  char path[4200];
  struct flock fl;
  char pid[32];
  int fd;
  snprintf(path, sizeof(path), "%s/lock", a->home);
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "shoal-peer: error: cannot open %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    ssize_t n = read(fd, pid, sizeof(pid) - 1);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    fprintf(stderr,
            "shoal-peer: error: another shoal-peer (pid %s) uses %s — give "
            "this one its own --home DIR\n",
            pid[0] ? pid : "?", a->home);
    close(fd);
    return -1;
  }
  if (ftruncate(fd, 0) == 0) {
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (write(fd, pid, (size_t)n) != n) {
      /* The pid is only a hint for the message above. */
    }
  }
  a->lock_fd = fd;
  return 0;
}

static int load_identity(struct app *a) {
  char path[4200];
  int created = 0;
  int err;
  snprintf(path, sizeof(path), "%s/identity.key", a->home);
  err = identity_load_or_create(&a->id, path, &created);
  if (err == SHOAL_EKEYPERM) {
    fprintf(stderr,
            "shoal-peer: error: %s can be read by other users — run "
            "'chmod 600 %s'\n",
            path, path);
    return -1;
  }
  if (err != 0) {
    fprintf(stderr, "shoal-peer: error: cannot load %s: %s\n", path,
            shoal_strerror(err));
    return -1;
  }
  if (created) {
    log_info("peer", "created a new identity in %s", path);
  }
  return 0;
}

static int add_tracker(struct app *a, const char *text) {
  const char *why = NULL;
  if (a->ntrackers >= LINK_MAX_TRACKERS) {
    return fail_usage("--tracker: at most 8 trackers%s", "");
  }
  if (link_parse_tracker(text, strlen(text), &a->trackers[a->ntrackers],
                         &why) != 0) {
    fprintf(stderr, "shoal-peer: --tracker %s: %s\n", text,
            why != NULL ? why : "expected HOST:PORT");
    return 2;
  }
  a->ntrackers++;
  return 0;
}

/* The whole program but the argument array, which main owns, so every
 * return path (usage errors included) leaves nothing allocated. */
static struct app the_app; /* one per process: signal handlers reach it */

static int run(int argc, char **argv, char **pos) {
  struct app *a = &the_app;
  const char *tracker_key_text = NULL;
  const char *level = "warn";
  int npos = 0;
  int err;

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
    return 1;
  }
  memset(a, 0, sizeof(*a));
  a->lock_fd = -1;
  a->limit = 20;
  a->out_dir = ".";
  a->cfg.max_peers = NODE_DEFAULT_MAX_PEERS;

  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t u;
#define NEED_VALUE()                                                           \
  do {                                                                         \
    if (v == NULL) {                                                           \
      return fail_usage("%s needs a value", f);                                \
    }                                                                          \
    i++;                                                                       \
  } while (0)
    if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(f, "--version") == 0) {
      printf("shoal-peer %s\n", SHOAL_VERSION);
      return 0;
    } else if (strcmp(f, "--json") == 0) {
      a->json = 1;
    } else if (strcmp(f, "--quiet") == 0) {
      a->quiet = 1;
    } else if (strcmp(f, "--seed") == 0) {
      a->seed = 1;
    } else if (strcmp(f, "-o") == 0 || strcmp(f, "--output") == 0) {
      NEED_VALUE();
      a->out_dir = v;
    } else if (strcmp(f, "--listen") == 0) {
      struct sockaddr_storage ss;
      NEED_VALUE();
      if (node_parse_listen(v, &ss) != 0) {
        return fail_usage("--listen must be ADDR:PORT with an IPv4 or "
                          "[IPv6] address and a port 0-65535 (0: any), not "
                          "'%s'", v);
      }
      a->cfg.listen = v;
    } else if (strcmp(f, "--home") == 0) {
      NEED_VALUE();
      if (snprintf(a->home, sizeof(a->home), "%s", v) >= (int)sizeof(a->home)) {
        return fail_usage("--home: path too long%s", "");
      }
    } else if (strcmp(f, "--max-peers") == 0) {
      NEED_VALUE();
      if (fmt_parse_uint(v, 1, 256, &u) != 0) {
        return fail_usage("--max-peers must be a number from 1 to 256, not "
                          "'%s'", v);
      }
      a->cfg.max_peers = (unsigned)u;
    } else if (strcmp(f, "--limit") == 0) {
      NEED_VALUE();
      if (fmt_parse_uint(v, 1, TMSG_MAX_RESULTS, &u) != 0) {
        return fail_usage("--limit must be a number from 1 to 50, not '%s'",
                          v);
      }
      a->limit = (unsigned)u;
    } else if (strcmp(f, "--interval-cap") == 0) {
      NEED_VALUE();
      if (fmt_parse_uint(v, 0, 86400, &u) != 0) {
        return fail_usage("--interval-cap must be seconds from 0 to 86400, "
                          "not '%s'", v);
      }
      a->cfg.interval_cap_s = (unsigned)u;
    } else if (strcmp(f, "--upload-rate") == 0 ||
               strcmp(f, "--download-rate") == 0) {
      NEED_VALUE();
      if (fmt_parse_size(v, &u) != 0) {
        fprintf(stderr,
                "shoal-peer: %s must be bytes a second like 500k or 10M, not "
                "'%s'\ntry 'shoal-peer --help'\n",
                f, v);
        return 2;
      }
      if (f[2] == 'u') {
        a->cfg.upload_rate = u;
      } else {
        a->cfg.download_rate = u;
      }
    } else if (strcmp(f, "--mode") == 0) {
      NEED_VALUE();
      if (strcmp(v, "p2p") == 0) {
        a->cfg.mode = NODE_MODE_P2P;
      } else if (strcmp(v, "cs") == 0) {
        a->cfg.mode = NODE_MODE_CS;
      } else {
        return fail_usage("--mode must be p2p or cs, not '%s'", v);
      }
    } else if (strcmp(f, "--log-level") == 0) {
      NEED_VALUE();
      if (log_level_parse(v) < 0) {
        return fail_usage("--log-level must be error, warn, info or debug, "
                          "not '%s'", v);
      }
      level = v;
    } else if (strcmp(f, "--tracker") == 0) {
      NEED_VALUE();
      err = add_tracker(a, v);
      if (err != 0) {
        return err;
      }
    } else if (strcmp(f, "--tracker-key") == 0) {
      NEED_VALUE();
      tracker_key_text = v;
    } else if (f[0] == '-' && f[1] != '\0') {
      return fail_usage("unknown option %s", f);
    } else {
      pos[npos++] = argv[i];
    }
#undef NEED_VALUE
  }
  log_set_level((enum log_level)log_level_parse(level));

  if (npos == 0) {
    return fail_usage("a command is needed: share, get, search or id%s", "");
  }
  if (strcmp(pos[0], "share") == 0) {
    a->cmd = CMD_SHARE;
  } else if (strcmp(pos[0], "get") == 0) {
    a->cmd = CMD_GET;
  } else if (strcmp(pos[0], "search") == 0) {
    a->cmd = CMD_SEARCH;
  } else if (strcmp(pos[0], "id") == 0) {
    a->cmd = CMD_ID;
  } else if (strcmp(pos[0], "help") == 0) {
    fputs(usage, stdout);
    return 0;
  } else {
    return fail_usage("unknown command '%s' (share, get, search or id)",
                      pos[0]);
  }
  a->args = pos + 1;
  a->nargs = npos - 1;
  if (tracker_key_text != NULL) {
    if (textid_decode(TEXTID_KEY, tracker_key_text, strlen(tracker_key_text),
                      a->tracker_key) != 0) {
      return fail_usage("--tracker-key '%s' is not a key ID (56 characters, "
                        "as the tracker prints on start)",
                        tracker_key_text);
    }
    a->have_key = 1;
  }

  /* Each command's own arguments. */
  switch (a->cmd) {
  case CMD_SHARE:
    if (a->nargs < 1) {
      return fail_usage("share needs at least one PATH%s", "");
    }
    if (a->ntrackers == 0) {
      return fail_usage("share needs --tracker ADDR:PORT%s", "");
    }
    break;
  case CMD_SEARCH:
    if (a->nargs < 1) {
      return fail_usage("search needs WORDS%s", "");
    }
    if (a->ntrackers == 0) {
      return fail_usage("search needs --tracker ADDR:PORT%s", "");
    }
    break;
  case CMD_GET:
    if (a->nargs < 1) {
      return fail_usage("get needs a LINK or CONTENT-ID (or several)%s", "");
    }
    a->gets = calloc((size_t)a->nargs, sizeof(*a->gets));
    if (a->gets == NULL) {
      fprintf(stderr, "shoal-peer: error: out of memory\n");
      return 1;
    }
    for (int i = 0; i < a->nargs; i++) {
      struct get_item *g = &a->gets[a->ngets++];
      const char *arg = a->args[i];
      /* Each content has the command line's trackers and key, plus its
       * link's. */
      memcpy(g->trackers, a->trackers, a->ntrackers * sizeof(a->trackers[0]));
      g->ntrackers = a->ntrackers;
      if (a->have_key) {
        memcpy(g->key, a->tracker_key, 32);
        g->have_key = 1;
      }
      if (strncmp(arg, LINK_SCHEME, strlen(LINK_SCHEME)) == 0) {
        const char *why = NULL;
        if (link_parse(arg, strlen(arg), &g->link, &why) != 0) {
          fprintf(stderr, "shoal-peer: error: bad link: %s — copy the whole "
                          "link as 'shoal-peer share' printed it\n",
                  why != NULL ? why : "malformed");
          return 1;
        }
        memcpy(g->content, g->link.id, sizeof(g->content));
        if (!g->have_key) {
          memcpy(g->key, g->link.tracker_key, 32);
          g->have_key = 1;
        }
        for (size_t t = 0; t < g->link.tracker_count &&
                           g->ntrackers < LINK_MAX_TRACKERS; t++) {
          g->trackers[g->ntrackers++] = g->link.trackers[t];
        }
      } else {
        err = textid_decode(TEXTID_CONTENT, arg, strlen(arg), g->content);
        if (err != 0) {
          fprintf(stderr,
                  "shoal-peer: error: '%s' is neither a share link "
                  "(shoal:...) nor a content ID: %s\n",
                  arg, shoal_strerror(err));
          return 1;
        }
        if (a->ntrackers == 0) {
          return fail_usage("get CONTENT-ID needs --tracker ADDR:PORT%s", "");
        }
      }
    }
    break;
  case CMD_ID:
  case CMD_NONE:
    break;
  }

  /* Home, identity, lock. */
  if (a->home[0] == '\0' && default_home(a->home, sizeof(a->home)) != 0) {
    fprintf(stderr, "shoal-peer: error: cannot find a home folder; give "
                    "--home DIR\n");
    return 1;
  }
  {
    char sub[8192];
    err = make_dirs(a->home);
    if (err == 0) {
      snprintf(sub, sizeof(sub), "%.4095s/resume", a->home);
      err = make_dirs(sub);
    }
    if (err == 0) {
      snprintf(sub, sizeof(sub), "%.4095s/manifests", a->home);
      err = make_dirs(sub);
    }
    if (err != 0) {
      fprintf(stderr, "shoal-peer: error: cannot create %s: %s — choose "
                      "another --home\n",
              a->home, strerror(-err));
      return 1;
    }
  }
  if (a->cmd != CMD_ID && a->cmd != CMD_SEARCH && lock_home(a) != 0) {
    return 1;
  }
  if (load_identity(a) != 0) {
    return 1;
  }
  if (a->cmd == CMD_ID) {
    char text[TEXTID_STRLEN];
    textid_encode(TEXTID_KEY, a->id.pk, text);
    if (a->json) {
      struct buf b;
      buf_init(&b, 4096);
      fmt_json_begin(&b, "id");
      fmt_json_str_field(&b, "id", text);
      fmt_json_end(&b);
      json_out(&b);
    } else {
      printf("%s\n", text);
    }
    identity_close(&a->id);
    return 0;
  }

  a->cfg.home = a->home;
  a->tty = isatty(STDERR_FILENO);
  uv_loop_init(&a->loop);
  a->start_ms = uv_now(&a->loop);
  uv_signal_init(&a->loop, &a->sigint);
  uv_signal_init(&a->loop, &a->sigterm);
  a->sigint.data = a;
  a->sigterm.data = a;
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);

  if (a->cmd == CMD_SEARCH) {
    struct tcl_config tc;
    struct tmsg_search s;
    uint64_t seq = clock_wall_ms() * 1000;
    size_t off = 0;
    memset(&tc, 0, sizeof(tc));
    tc.loop = &a->loop;
    tc.id = &a->id;
    tc.trackers = a->trackers;
    tc.ntrackers = a->ntrackers;
    tc.tracker_key = a->have_key ? a->tracker_key : NULL;
    tc.seq = &seq;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < a->nargs; i++) {
      int n = snprintf(s.query + off, sizeof(s.query) - off, "%s%s",
                       i ? " " : "", a->args[i]);
      if (n < 0 || (size_t)n >= sizeof(s.query) - off) {
        return fail_usage("search words are longer than 256 bytes%s", "");
      }
      off += (size_t)n;
    }
    s.limit = (uint16_t)a->limit;
    if (tcl_new(&a->tc, &tc) != 0 || tcl_search(a->tc, &s, on_search, a) != 0) {
      fprintf(stderr, "shoal-peer: error: cannot start the search\n");
      return 1;
    }
    uv_run(&a->loop, UV_RUN_DEFAULT);
    uv_loop_close(&a->loop);
    identity_close(&a->id);
    return a->exit_code;
  }

  err = node_new(&a->node, &a->loop, &a->cfg, &a->id, on_node_event, a);
  if (err != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "cannot listen on %s: %s — choose another "
                               "--listen ADDR:PORT",
             a->cfg.listen ? a->cfg.listen : "0.0.0.0:0", shoal_strerror(err));
    report_error(a, err, msg);
    a->exit_code = 1;
    a->finished = 1;
    if (a->node != NULL) {
      node_stop(a->node, on_node_stopped, a);
    } else {
      uv_close((uv_handle_t *)&a->sigint, NULL);
      uv_close((uv_handle_t *)&a->sigterm, NULL);
    }
  } else if (a->cmd == CMD_SHARE) {
    share_next(a);
  } else {
    struct stat st;
    if (stat(a->out_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
      char msg[4400];
      snprintf(msg, sizeof(msg), "%s is not a folder — create it or choose "
                                 "another -o DIR",
               a->out_dir);
      report_error(a, UV_ENOTDIR, msg);
      a->exit_code = 1;
      a->finished = 1;
      stop_node(a);
    } else {
      a->gets_left = a->ngets;
      for (int i = 0; i < a->ngets && !a->finished; i++) {
        struct get_item *g = &a->gets[i];
        err = node_get(a->node, g->content,
                       g->link.name[0] ? g->link.name : NULL, g->link.size,
                       g->trackers, g->ntrackers, g->have_key ? g->key : NULL,
                       a->out_dir, a->seed);
        if (err == UV_EEXIST) {
          a->gets_left--; /* the same content twice: one download */
        } else if (err != 0) {
          report_error(a, err, "cannot start the download");
          a->exit_code = 1;
          a->finished = 1;
          stop_node(a);
        }
      }
    }
  }
  uv_run(&a->loop, UV_RUN_DEFAULT);
  print_stats(a);
  node_free(a->node);
  uv_loop_close(&a->loop);
  identity_close(&a->id);
  if (a->lock_fd >= 0) {
    close(a->lock_fd);
  }
  return a->exit_code;
}

int main(int argc, char **argv) {
  char **pos = calloc((size_t)argc + 1, sizeof(*pos));
  int rc;
  if (pos == NULL) {
    fprintf(stderr, "shoal-peer: error: out of memory\n");
    return 1;
  }
  rc = run(argc, argv, pos);
  free(pos);
  free(the_app.gets);
  return rc;
}
