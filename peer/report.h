/* What shoal-peer shows of its work: a progress line on a terminal, plain
 * lines on a file or pipe, or one JSON object a line with --json.
 *
 * Results (share links, the paths of completed gets, search results, the
 * peer ID, and every JSON object) go to out; everything else to err.
 * On a terminal the progress line is rewritten in place ("\r\033[K") and
 * fits its width (report_resize reads it again after SIGWINCH); any other
 * line, and any log record, clears it first. --quiet drops the progress,
 * the warnings and the informational lines but not results and errors,
 * and changes nothing in JSON output.
 *
 * Every name or message that may come from a disk, a manifest or a tracker
 * goes through fmt_term_escape before it reaches the terminal; JSON strings
 * are escaped by the JSON writer instead. Strings passed in are borrowed
 * for the call only. Times (now) are the loop's milliseconds.
 */
#ifndef SHOAL_PEER_REPORT_H
#define SHOAL_PEER_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "common/textid.h"
#include "common/tmsg.h"
#include "peer/node.h"

/* How often a progress line or event comes, at most. */
#define REPORT_PLAIN_MS 5000u     /* plain lines, per content */
#define REPORT_TTY_MS 500u        /* the terminal's line */
#define REPORT_JSON_GET_MS 500u   /* "progress" of a content being fetched */
#define REPORT_JSON_SEED_MS 2000u /* ... and of one being seeded */
#define REPORT_HASH_MS 250u       /* "hashing" events and the hashing bar */
/* Paths this large or larger get a hashing bar on a terminal. */
#define REPORT_HASH_BAR_BYTES (64u << 20)
/* Contents whose progress is timed each on its own; more share a clock. */
#define REPORT_SLOTS 64u
/* Columns of a progress line that goes to a file or a pipe: not cut. */
#define REPORT_PLAIN_COLS 4096u

struct report {
  FILE *out, *err;
  int json;
  int quiet;
  int key_given; /* --tracker-key: a learned key is not news */
  int tty;       /* err is a terminal */
  size_t cols;   /* its width, when tty */
  int hooked;    /* report_clear runs before each log record */
  int line_up;   /* a progress line is on the terminal */
  char peer_id[TEXTID_STRLEN];
  /* When the terminal's line was last drawn; also the one clock of the
   * contents past REPORT_SLOTS. */
  uint64_t last_ms;
  uint64_t last_hash_ms;
  /* The loop's clock when the command started: a JSON "progress" says
   * the seconds since, so that the events of several processes started
   * together line up. */
  uint64_t start_ms;
  struct {
    uint8_t content[32];
    uint64_t last_ms;
  } shown[REPORT_SLOTS]; /* when each content's progress was shown */
  unsigned nshown;
};

/* Sets r up to write to out and err (borrowed; stdout and stderr in the
 * program). When err is a terminal, log records clear the progress line
 * first, until report_close. */
void report_init(struct report *r, FILE *out, FILE *err, int json, int quiet,
                 int key_given);
/* Stops clearing before log records. A zeroed struct report may be closed. */
void report_close(struct report *r);
/* Reads the terminal's width again (after SIGWINCH). */
void report_resize(struct report *r);
/* The peer's own key, for the "listening" event. */
void report_set_peer(struct report *r, const uint8_t pk[32]);
/* When the command started (the loop's clock), for "progress". */
void report_set_start(struct report *r, uint64_t now);

/* A usage error: "shoal-peer: MESSAGE", escaped, on err. */
void report_usage(FILE *err, const char *msg);
/* A failure: "shoal-peer: error: MESSAGE", and an "error" event with
 * --json, code named by shoal_err_name. */
void report_error(struct report *r, int code, const char *msg);
/* Clears the progress line, if one is up. */
void report_clear(struct report *r);

/* Shows what a node event says (NODE_EV_FAILED as report_error). */
void report_event(struct report *r, uint64_t now, const struct node_event *ev);
/* A share hashing name: a "hashing" event, or a bar on a terminal for a
 * large path. */
void report_hashing(struct report *r, uint64_t now, const char *name,
                    uint64_t done, uint64_t total);
/* A path a share left out of a folder, and why. */
void report_left_out(struct report *r, const char *path, const char *why);
/* The totals of a share or get that started. */
void report_totals(struct report *r, uint64_t uploaded, uint64_t downloaded,
                   uint64_t wasted, double seconds);
/* The peer ID (the id command). */
void report_id(struct report *r, const uint8_t pk[32]);
/* Before the results of a search: the table's header, or "no matches". */
void report_search_begin(struct report *r, unsigned count);
/* One search result, with the link that gets it. */
void report_search_result(struct report *r, const struct tmsg_result *x,
                          const char *link);

#endif
