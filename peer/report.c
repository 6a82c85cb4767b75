/* Turns what a run does (node events, hashing, errors, results) into the
 * progress line, plain lines or --json events that shoal-peer prints. */
#include "peer/report.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/manifest.h"
#include "peer/fmt.h"

/* A message as shown: every byte of it escaped takes at most six. */
#define SHOWN_BYTES(n) (6u * (n) + 1u)

static void json_out(struct report *r, struct buf *b) {
  if (buf_err(b) == 0) {
    fwrite(b->data, 1, b->len, r->out);
    fflush(r->out);
  }
  buf_free(b);
}

void report_clear(struct report *r) {
  if (r->line_up) {
    fputs("\r\033[K", r->err);
    r->line_up = 0;
  }
}

static void clear_hook(void *arg) {
  report_clear(arg);
}

/* Writes text to f as fmt_term_escape shows it, then a newline: a name or
 * a message that may hold what a terminal would act on. */
static void put_line(FILE *f, const char *prefix, const char *text) {
  size_t n = strlen(text);
  char *shown = malloc(SHOWN_BYTES(n));
  if (shown == NULL) {
    return;
  }
  fmt_term_escape(shown, SHOWN_BYTES(n), text);
  fprintf(f, "%s%s\n", prefix, shown);
  free(shown);
}

/* The terminal's width from fd, or FMT_TERM_COLS_DEFAULT when it does not
 * say. */
static size_t term_cols(int fd) {
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return FMT_TERM_COLS_DEFAULT;
}

void report_init(struct report *r, FILE *out, FILE *err, int json, int quiet,
                 int key_given) {
  memset(r, 0, sizeof(*r));
  r->out = out;
  r->err = err;
  r->json = json;
  r->quiet = quiet;
  r->key_given = key_given;
  r->tty = isatty(fileno(err));
  r->cols = r->tty ? term_cols(fileno(err)) : REPORT_PLAIN_COLS;
  if (r->tty) {
    /* A log record written while the progress line is up would run on
     * from its end: the line is cleared first, and redrawn at the next
     * progress event. */
    log_set_before_stderr(clear_hook, r);
    r->hooked = 1;
  }
}

void report_close(struct report *r) {
  if (r->hooked) {
    log_set_before_stderr(NULL, NULL);
    r->hooked = 0;
  }
}

void report_resize(struct report *r) {
  r->cols = term_cols(fileno(r->err));
}

void report_set_peer(struct report *r, const uint8_t pk[32]) {
  textid_encode(TEXTID_KEY, pk, r->peer_id);
}

void report_set_start(struct report *r, uint64_t now) {
  r->start_ms = now;
}

void report_usage(FILE *err, const char *msg) {
  put_line(err, "shoal-peer: ", msg);
}

void report_error(struct report *r, int code, const char *msg) {
  report_clear(r);
  put_line(r->err, "shoal-peer: error: ", msg);
  if (r->json) {
    struct buf b;
    buf_init(&b, 1 << 16);
    fmt_json_begin(&b, "error");
    fmt_json_str_field(&b, "code", shoal_err_name(code));
    fmt_json_str_field(&b, "message", msg);
    fmt_json_end(&b);
    json_out(r, &b);
  }
}

void report_totals(struct report *r, uint64_t uploaded, uint64_t downloaded,
                   uint64_t wasted, double seconds) {
  if (r->json) {
    struct buf b;
    buf_init(&b, 4096);
    fmt_json_begin(&b, "stats");
    fmt_json_u64_field(&b, "uploaded", uploaded);
    fmt_json_u64_field(&b, "downloaded", downloaded);
    fmt_json_u64_field(&b, "wasted", wasted);
    fmt_json_double_field(&b, "seconds", seconds);
    fmt_json_end(&b);
    json_out(r, &b);
  } else if (!r->quiet) {
    char up[FMT_NUM_BYTES], down[FMT_NUM_BYTES];
    report_clear(r);
    fmt_bytes(up, sizeof(up), uploaded);
    fmt_bytes(down, sizeof(down), downloaded);
    fprintf(r->err, "shoal-peer: uploaded %s, downloaded %s\n", up, down);
  }
}

/* ------------------------------------------------------------------------ */
/* Progress */

static void progress_text(const struct node_swarm_info *s, size_t cols,
                          char *out, size_t cap) {
  struct fmt_progress p;
  memset(&p, 0, sizeof(p));
  p.name = s->name;
  p.have = s->have;
  p.total = s->total;
  p.rate = s->rate;
  p.uploaded = s->uploaded;
  p.peers = s->peers;
  p.seeders = s->seeders;
  p.seeding = s->seeding;
  fmt_progress(out, cap, cols, &p);
}

/* When the progress of a content was last shown (0: never). */
static uint64_t *last_shown(struct report *r, const uint8_t content[32]) {
  unsigned i;
  for (i = 0; i < r->nshown; i++) {
    if (memcmp(r->shown[i].content, content, 32) == 0) {
      return &r->shown[i].last_ms;
    }
  }
  if (r->nshown == REPORT_SLOTS) {
    return &r->last_ms; /* many contents share one clock */
  }
  memcpy(r->shown[r->nshown].content, content, 32);
  r->shown[r->nshown].last_ms = 0;
  return &r->shown[r->nshown++].last_ms;
}

static void progress(struct report *r, uint64_t now,
                     const struct node_swarm_info *s) {
  /* A name of MANIFEST_MAX_SEGMENT bytes, escaped, and the figures. */
  char line[SHOWN_BYTES(MANIFEST_MAX_SEGMENT) + 256];
  /* --quiet is for people: --json output is the same with it. */
  if (r->json) {
    uint64_t every = s->seeding ? REPORT_JSON_SEED_MS : REPORT_JSON_GET_MS;
    uint64_t *last = last_shown(r, s->content);
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
    fmt_json_double_field(
        &b, "seconds",
        now > r->start_ms ? (double)(now - r->start_ms) / 1000.0 : 0.0);
    fmt_json_end(&b);
    json_out(r, &b);
    return;
  }
  if (r->quiet) {
    return;
  }
  if (r->tty) {
    if (now - r->last_ms < REPORT_TTY_MS - 50) {
      return;
    }
    r->last_ms = now;
    /* One line rewritten in place: it must never wrap, or each redraw
     * would leave a line behind. */
    progress_text(s, r->cols, line, sizeof(line));
    fprintf(r->err, "\r\033[K%s", line);
    fflush(r->err);
    r->line_up = 1;
    return;
  }
  {
    uint64_t *last = last_shown(r, s->content);
    if (*last != 0 && now - *last < REPORT_PLAIN_MS) {
      return;
    }
    if (*last == 0) {
      *last = now; /* the first line comes after one period */
      return;
    }
    *last = now;
  }
  progress_text(s, REPORT_PLAIN_COLS, line, sizeof(line));
  fprintf(r->err, "%s\n", line);
}

/* ------------------------------------------------------------------------ */
/* Node events */

void report_event(struct report *r, uint64_t now, const struct node_event *ev) {
  char text[TEXTID_STRLEN];
  struct buf b;

  switch (ev->type) {
  case NODE_EV_LISTENING:
    if (r->json) {
      buf_init(&b, 4096);
      fmt_json_begin(&b, "listening");
      fmt_json_u64_field(&b, "port", ev->port);
      fmt_json_str_field(&b, "id", r->peer_id);
      fmt_json_end(&b);
      json_out(r, &b);
    }
    break;
  case NODE_EV_TRACKER:
    textid_encode(TEXTID_KEY, ev->key, text);
    if (r->json) {
      buf_init(&b, 4096);
      fmt_json_begin(&b, "tracker");
      fmt_json_str_field(&b, "key", text);
      fmt_json_end(&b);
      json_out(r, &b);
    } else if (!r->key_given && !r->quiet) {
      report_clear(r);
      fprintf(r->err, "shoal-peer: tracker key %s (learned on first use)\n",
              text);
    }
    break;
  case NODE_EV_HASHING:
    /* A get checking a copy already in place (a share's own hashing is
     * reported by the command, which names the path). */
    if (ev->swarm != NULL) {
      report_hashing(r, now, ev->swarm->name, ev->done, ev->total);
    }
    break;
  case NODE_EV_SHARED:
    textid_encode(TEXTID_CONTENT, ev->swarm->content, text);
    if (r->json) {
      buf_init(&b, 8192);
      fmt_json_begin(&b, "shared");
      fmt_json_str_field(&b, "name", ev->swarm->name);
      fmt_json_str_field(&b, "content", text);
      fmt_json_u64_field(&b, "size", ev->swarm->total);
      fmt_json_str_field(&b, "link", ev->link);
      fmt_json_end(&b);
      json_out(r, &b);
    } else {
      report_clear(r);
      put_line(r->out, "", ev->link);
      fflush(r->out);
    }
    break;
  case NODE_EV_MANIFEST:
    if (r->json) {
      buf_init(&b, 4096);
      fmt_json_begin(&b, "manifest");
      fmt_json_str_field(&b, "name", ev->swarm->name);
      fmt_json_u64_field(&b, "size", ev->swarm->total);
      fmt_json_u64_field(&b, "chunks", ev->swarm->chunks);
      fmt_json_u64_field(&b, "resumed_bytes", ev->resumed);
      fmt_json_end(&b);
      json_out(r, &b);
    } else if (!r->quiet && ev->resumed > 0) {
      char done[FMT_NUM_BYTES];
      char msg[MANIFEST_MAX_SEGMENT + 128];
      fmt_bytes(done, sizeof(done), ev->resumed);
      report_clear(r);
      snprintf(msg, sizeof(msg), "%s: resuming with %s already verified",
               ev->swarm->name, done);
      put_line(r->err, "shoal-peer: ", msg);
    }
    break;
  case NODE_EV_PROGRESS:
    progress(r, now, ev->swarm);
    break;
  case NODE_EV_COMPLETE:
    textid_encode(TEXTID_CONTENT, ev->swarm->content, text);
    if (r->json) {
      buf_init(&b, 8192);
      fmt_json_begin(&b, "complete");
      fmt_json_str_field(&b, "content", text);
      fmt_json_str_field(&b, "path", ev->path);
      fmt_json_double_field(&b, "seconds", ev->seconds);
      fmt_json_u64_field(&b, "downloaded", ev->swarm->downloaded);
      fmt_json_u64_field(&b, "uploaded", ev->swarm->uploaded);
      fmt_json_end(&b);
      json_out(r, &b);
    } else {
      report_clear(r);
      put_line(r->out, "", ev->path);
      fflush(r->out);
    }
    break;
  case NODE_EV_BANNED:
    textid_encode(TEXTID_KEY, ev->key, text);
    if (r->json) {
      buf_init(&b, 4096);
      fmt_json_begin(&b, "banned");
      fmt_json_str_field(&b, "peer", text);
      fmt_json_str_field(&b, "reason", ev->message);
      fmt_json_end(&b);
      json_out(r, &b);
    } else if (!r->quiet) {
      char prefix[TEXTID_STRLEN + 32];
      report_clear(r);
      snprintf(prefix, sizeof(prefix), "shoal-peer: banned peer %s: ", text);
      put_line(r->err, prefix, ev->message);
    }
    break;
  case NODE_EV_WARNING:
    if (r->json) {
      buf_init(&b, 8192);
      fmt_json_begin(&b, "warning");
      if (ev->swarm != NULL) {
        textid_encode(TEXTID_CONTENT, ev->swarm->content, text);
        fmt_json_str_field(&b, "content", text);
      }
      fmt_json_str_field(&b, "message", ev->message);
      fmt_json_end(&b);
      json_out(r, &b);
    } else if (!r->quiet) {
      report_clear(r);
      put_line(r->err, "shoal-peer: ", ev->message);
    }
    break;
  case NODE_EV_FAILED:
    report_error(r, ev->code, ev->message);
    break;
  }
}

/* ------------------------------------------------------------------------ */
/* Sharing */

/* The hashing bar on a terminal: "hashing NAME [####....] 1.2 GiB/3 GiB",
 * with a shorter bar, then none, then only the percentage, until it fits
 * in cols - 1 columns. */
static void hash_line(const char *name, uint64_t done, uint64_t total,
                      size_t cols, char *out, size_t cap) {
  static const int bars[] = {30, 10, 0};
  char d[FMT_NUM_BYTES], t[FMT_NUM_BYTES], tail[4 * FMT_NUM_BYTES + 64];
  fmt_bytes(d, sizeof(d), done);
  fmt_bytes(t, sizeof(t), total);
  for (size_t i = 0; i < sizeof(bars) / sizeof(bars[0]); i++) {
    char bar[64];
    int width = bars[i];
    int fill = total ? (int)((double)done / (double)total * width) : width;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    if (width > 0) {
      snprintf(tail, sizeof(tail), " [%s] %s/%s", bar, d, t);
    } else {
      snprintf(tail, sizeof(tail), " %s/%s", d, t);
    }
    if (fmt_term_join(out, cap, cols - 1, "hashing ", name, FMT_TERM_NAME_MIN,
                      tail) == 0) {
      return;
    }
  }
  unsigned pct = total ? (unsigned)(100.0 * (double)done / (double)total) : 100;
  snprintf(tail, sizeof(tail), "hashing %u%%", pct);
  snprintf(out, cap, "%.*s", (int)(cols - 1 < cap ? cols - 1 : cap - 1), tail);
}

void report_hashing(struct report *r, uint64_t now, const char *name,
                    uint64_t done, uint64_t total) {
  if (now - r->last_hash_ms < REPORT_HASH_MS && done != total) {
    return;
  }
  r->last_hash_ms = now;
  if (r->json) {
    struct buf b;
    buf_init(&b, 4096);
    fmt_json_begin(&b, "hashing");
    fmt_json_str_field(&b, "name", name);
    fmt_json_u64_field(&b, "done", done);
    fmt_json_u64_field(&b, "total", total);
    fmt_json_end(&b);
    json_out(r, &b);
  } else if (r->tty && !r->quiet && total >= REPORT_HASH_BAR_BYTES) {
    char line[SHOWN_BYTES(4096) + 256];
    hash_line(name, done, total, r->cols, line, sizeof(line));
    fprintf(r->err, "\r\033[K%s", line);
    fflush(r->err);
    r->line_up = 1;
  }
}

/* The manifest builder left an entry out of a folder: a symbolic link, a
 * special file, a name that cannot be shared safely. A warning on the
 * terminal; with --json a "left_out" event (--quiet is for people). */
void report_left_out(struct report *r, const char *path, const char *why) {
  if (r->json) {
    struct buf b;
    buf_init(&b, 16384);
    fmt_json_begin(&b, "left_out");
    fmt_json_str_field(&b, "path", path);
    fmt_json_str_field(&b, "reason", why);
    fmt_json_end(&b);
    json_out(r, &b);
  } else if (!r->quiet) {
    size_t n = strlen(path) + strlen(why) + 16;
    char *msg = malloc(n);
    if (msg == NULL) {
      return;
    }
    snprintf(msg, n, "left out %s: %s", path, why);
    report_clear(r);
    put_line(r->err, "shoal-peer: ", msg);
    free(msg);
  }
}

/* ------------------------------------------------------------------------ */
/* id and search */

void report_id(struct report *r, const uint8_t pk[32]) {
  char text[TEXTID_STRLEN];
  textid_encode(TEXTID_KEY, pk, text);
  if (r->json) {
    struct buf b;
    buf_init(&b, 4096);
    fmt_json_begin(&b, "id");
    fmt_json_str_field(&b, "id", text);
    fmt_json_end(&b);
    json_out(r, &b);
  } else {
    fprintf(r->out, "%s\n", text);
  }
}

void report_search_begin(struct report *r, unsigned count) {
  if (count == 0 && !r->json && !r->quiet) {
    fprintf(r->err, "shoal-peer: no matches\n");
  } else if (count > 0 && !r->json) {
    fprintf(r->out, "%-32s %10s %7s %11s  %s\n", "NAME", "SIZE", "SEEDERS",
            "DOWNLOADERS", "LINK");
  }
}

void report_search_result(struct report *r, const struct tmsg_result *x,
                          const char *link) {
  char cid[TEXTID_STRLEN];
  char size[FMT_NUM_BYTES];
  textid_encode(TEXTID_CONTENT, x->content, cid);
  if (r->json) {
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
    json_out(r, &b);
  } else {
    /* The name comes from whoever published it: escaped, and padded by
     * the columns it shows in, not by its bytes. */
    char name[SHOWN_BYTES(sizeof(x->name))];
    size_t cols = fmt_term_escape(name, sizeof(name), x->name);
    fmt_bytes(size, sizeof(size), x->size);
    fprintf(r->out, "%s%*s %10s %7u %11u  %s\n", name,
            cols < 32 ? (int)(32 - cols) : 0, "", size, x->seeders,
            x->downloaders, link);
  }
}
