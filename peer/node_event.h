/* What a node reports: the events that node.c, its swarms and their
 * tracker schedules emit through the one callback the node was made with,
 * so that the command line decides how to show them.
 *
 * A header of types only, below every file of the peer's core: swarm.c and
 * announce.c fill events in, node.h hands the callback to main.c.
 * Ownership: an event and everything it points to are valid only during
 * the callback.
 */
#ifndef SHOAL_PEER_NODE_EVENT_H
#define SHOAL_PEER_NODE_EVENT_H

#include <stdint.h>

enum node_event_type {
  NODE_EV_LISTENING, /* port */
  NODE_EV_TRACKER,   /* key: a tracker's key, learned on first contact */
  NODE_EV_HASHING,   /* done, total (a get checking a copy in place) */
  NODE_EV_SHARED,    /* swarm published; link */
  NODE_EV_MANIFEST,  /* manifest fetched and storage ready; resumed */
  NODE_EV_PROGRESS,  /* periodic, per swarm */
  NODE_EV_COMPLETE,  /* every chunk verified and in place; path */
  NODE_EV_BANNED,    /* peer, reason */
  NODE_EV_WARNING,   /* message: something the user should know */
  NODE_EV_FAILED,    /* a swarm cannot go on: code, message */
};

struct node_swarm_info {
  const uint8_t *content; /* 32 bytes */
  const char *name;
  uint64_t total; /* 0 until the manifest is known */
  uint64_t have;  /* verified bytes */
  uint32_t chunks;
  uint64_t rate;  /* download bytes a second, recent */
  unsigned peers; /* open sessions */
  unsigned seeders;
  uint64_t uploaded;   /* DATA payload bytes this swarm sent */
  uint64_t downloaded; /* DATA payload bytes this swarm received */
  int seeding;
};

struct node_event {
  enum node_event_type type;
  const struct node_swarm_info *swarm; /* NULL for node-wide events */
  uint16_t port;
  const uint8_t *key;   /* NODE_EV_TRACKER, NODE_EV_BANNED: 32 bytes */
  const char *link;     /* NODE_EV_SHARED */
  const char *path;     /* NODE_EV_COMPLETE */
  const char *message;  /* NODE_EV_BANNED reason, WARNING, FAILED */
  int code;             /* NODE_EV_FAILED */
  uint64_t done, total; /* NODE_EV_HASHING */
  uint64_t resumed;     /* NODE_EV_MANIFEST */
  double seconds;       /* NODE_EV_COMPLETE */
};

typedef void (*node_event_cb)(void *arg, const struct node_event *ev);

#endif
