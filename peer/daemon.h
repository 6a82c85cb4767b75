/* The daemon's core: a library of contents kept in step with a node.
 *
 * The daemon holds every content of its library (library.h) in the node
 * that serves and fetches them: a share or a finished download is checked
 * against its fast-resume record (recheck.h: only files whose size, time
 * or inode differ are hashed) and seeded under its content ID; an
 * unfinished download goes on from its resume record. It adds, pauses,
 * resumes, rechecks and removes contents at run time, hashes new shares,
 * follows a watch folder, and keeps the library file up to date, so that a
 * restart or a kill -9 comes back with the same library and the same
 * progress.
 *
 * Contents start through one queue, at most DAEMON_STARTS_PER_S a second
 * and one file check at a time, so that a thousand contents reach their
 * trackers spread out rather than in one burst.
 *
 * Who calls what: api.c (the HTTP routes) and main.c call the functions
 * below; the daemon calls the node, the library, recheck and the manifest
 * builder, and reports every change through the one listener callback
 * (api.c turns those into events). Everything runs on the loop thread.
 *
 * Ownership: the daemon borrows the loop and the identity, owns the node,
 * the library and everything below them.
 */
#ifndef SHOAL_PEER_DAEMON_H
#define SHOAL_PEER_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/identity.h"
#include "common/link.h"
#include "common/manifest.h"
#include "peer/library.h"
#include "peer/node.h"

#define DAEMON_STARTS_PER_S 20u
/* How often the watch folder is read. */
#define DAEMON_WATCH_MS 2000u
#define DAEMON_MSG_BYTES 1024
/* Changes a crash may lose without harm are saved together, this soon. */
#define DAEMON_SAVE_SOON_MS 1000u

enum daemon_state {
  DS_QUEUED,      /* waiting for its turn to start */
  DS_CHECKING,    /* hashing: a new share, a recheck, changed files */
  DS_FETCHING,    /* asking peers for the manifest */
  DS_DOWNLOADING, /* fetching chunks */
  DS_SEEDING,     /* holds everything and serves it */
  DS_PAUSED,      /* out of the node until resumed */
  DS_CHANGED,     /* a shared file changed: not served or announced */
  DS_FAILED,      /* gave up; error says why */
};

/* One content of the daemon, as the API shows it. The strings are
 * borrowed until the next call into the daemon. */
struct daemon_item_view {
  const uint8_t *content; /* NULL: a share still being hashed */
  const char *name;
  enum library_kind kind;
  enum daemon_state state;
  uint64_t size, have;
  uint64_t download_rate, upload_rate;
  unsigned peers, seeders;
  uint64_t uploaded, downloaded; /* over the content's life */
  const char *path;
  const char *link;                 /* NULL until known */
  int64_t added;                    /* unix seconds */
  const char *error;                /* NULL when none */
  uint64_t check_done, check_total; /* DS_CHECKING */
};

struct daemon_totals {
  unsigned contents, downloading, seeding;
  uint64_t uploaded, downloaded; /* since the daemon started */
  uint64_t upload_rate, download_rate;
  uint64_t upload_limit, download_limit;
  uint16_t port;
  int64_t started; /* unix seconds */
};

enum daemon_change {
  DAEMON_ADDED,   /* a content joined the library */
  DAEMON_STATE,   /* its state, error or link changed */
  DAEMON_REMOVED, /* it left (view->content says which) */
};

struct daemon_config {
  const char *home;
  const char *listen; /* the node's peer listener; NULL: the default */
  struct link_tracker trackers[LINK_MAX_TRACKERS]; /* for shares */
  unsigned ntrackers;
  const uint8_t *tracker_key; /* NULL: learn it */
  const char *download_dir;   /* NULL: HOME/downloads */
  const char *watch_dir;      /* NULL: none */
  int watch_share;            /* folders dropped in watch_dir are shared */
  struct node_config node;    /* rates, peers, mode */
};

struct daemon;

typedef void (*daemon_change_cb)(void *arg, enum daemon_change what,
                                 const struct daemon_item_view *v);

/* Opens the library in c->home, makes the node and starts every content
 * that is not paused. Returns 0, or an error with one line in msg (a
 * library file that cannot be read, a listen address in use). */
int daemon_new(struct daemon **out, uv_loop_t *loop,
               const struct daemon_config *c, const struct identity *id,
               char *msg, size_t cap);

/* Sets the one listener told of every change (NULL: none). */
void daemon_listen(struct daemon *d, daemon_change_cb cb, void *arg);

/* The operations. Each returns 0, or an HTTP-like status with one line in
 * msg: 400 (bad input), 404 (no such content or path), 409 (a conflict:
 * already there, already paused, deleting a share's data), 500. */
int daemon_add_link(struct daemon *d, const char *link, const char *dir,
                    uint8_t content_out[MANIFEST_ID_BYTES], char *msg,
                    size_t cap);
int daemon_share_path(struct daemon *d, const char *path, char *msg,
                      size_t cap);
int daemon_pause(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                 char *msg, size_t cap);
int daemon_resume(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                  char *msg, size_t cap);
int daemon_recheck(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                   char *msg, size_t cap);
int daemon_remove(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
                  int with_data, char *msg, size_t cap);
void daemon_set_limits(struct daemon *d, uint64_t upload, uint64_t download);

/* The contents: fn for each, in the order they were added (shares being
 * hashed last). Returns the count. */
unsigned daemon_each(struct daemon *d,
                     void (*fn)(void *arg, const struct daemon_item_view *v),
                     void *arg);
/* One content's view. Returns 0 or 404. */
int daemon_get(struct daemon *d, const uint8_t content[MANIFEST_ID_BYTES],
               struct daemon_item_view *out);
/* fn for each content whose figures moved since the last call (for the
 * progress events). Returns the count. */
unsigned daemon_each_moved(struct daemon *d,
                           void (*fn)(void *arg,
                                      const struct daemon_item_view *v),
                           void *arg);
/* The port peers connect to. */
uint16_t daemon_port(const struct daemon *d);
void daemon_totals(struct daemon *d, struct daemon_totals *out);

const char *daemon_state_name(enum daemon_state s);

/* Stops the node (announcing "stopped", saving resume records) and saves
 * the library; cb(arg) once everything is closed. */
void daemon_stop(struct daemon *d, void (*cb)(void *arg), void *arg);
void daemon_free(struct daemon *d);

#endif
