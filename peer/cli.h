/* shoal-peer's command line, read and checked into a plain struct.
 *
 * cli_parse reads argv with getopt_long: options may come anywhere, take
 * their value as "--opt=value" or "--opt value", may be abbreviated to any
 * unambiguous prefix, and "--" ends them. Each option applies to some
 * commands only (the table in cli.c, and in docs/shoal-peer.1); one given
 * to another command is a usage error. The command's own arguments are
 * checked too (links and content IDs of a get, the words of a search), and
 * SHOAL_TRACKER stands for --tracker when none is given.
 *
 * Nothing here runs a loop or writes anything: a usage error leaves its one
 * line in cli.error for the caller to print (exit status 2), and -h, -V and
 * "help" only set the command.
 */
#ifndef SHOAL_PEER_CLI_H
#define SHOAL_PEER_CLI_H

#include <stdint.h>

#include "common/link.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/tmsg.h"
#include "peer/node.h"

/* The variable that stands for --tracker when none is given. */
#define CLI_TRACKER_ENV "SHOAL_TRACKER"
/* A usage error as written, before it is escaped for the terminal. */
#define CLI_ERROR_BYTES 8192
/* A --home path and its NUL: what the home module keeps (home.h). */
#define CLI_HOME_BYTES 4096
/* Search results when --limit is not given. */
#define CLI_LIMIT_DEFAULT 20

enum cli_cmd {
  CLI_NONE,
  CLI_SHARE,
  CLI_GET,
  CLI_SEARCH,
  CLI_ID,
  CLI_HELP,    /* -h, --help or "help": print cli_usage, exit 0 */
  CLI_VERSION, /* -V or --version: print the version, exit 0 */
};

/* One content a get fetches: its ID, and its link when it came as one. */
struct cli_get {
  uint8_t content[MANIFEST_ID_BYTES];
  struct share_link link; /* zeroed for a content ID */
  /* The command line's trackers (or SHOAL_TRACKER's), then the link's. */
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t key[32]; /* --tracker-key, else the link's */
  int have_key;
};

/* What the command line says, checked. */
struct cli {
  enum cli_cmd cmd;
  /* The command's own arguments, in order: share's paths, get's links and
   * content IDs, search's words. They point into argv. */
  char **args;
  int nargs;
  const char *out_dir; /* get: -o, "." when not given */
  const char *home;    /* --home; NULL for the default */
  int seed;
  int quiet;
  int json;
  unsigned limit; /* search: --limit */
  enum log_level log_level;
  /* --listen (borrowed from argv), --max-peers, the rates, --mode,
   * --interval-cap; home is left NULL for the caller. */
  struct node_config node;
  struct link_tracker trackers[LINK_MAX_TRACKERS]; /* share, search */
  unsigned ntrackers;
  uint8_t tracker_key[32];
  int have_key;
  struct cli_get *gets; /* get: one for each argument */
  int ngets;
  struct tmsg_search query; /* search: the words, and the limit */
  char **words;             /* every argument but the options (owned) */
  char error[CLI_ERROR_BYTES];
};

/* The text of -h. */
extern const char cli_usage[];

/* Reads argv (argc entries, which must outlive c) into c, which is zeroed
 * first. Returns 0; SHOAL_EINVAL after a usage error, whose one line (for
 * the terminal: not escaped yet) is in c->error; or SHOAL_ENOMEM. c holds
 * memory on every return: call cli_close. */
int cli_parse(struct cli *c, int argc, char **argv);
/* Frees what cli_parse allocated. A zeroed struct cli may be closed. */
void cli_close(struct cli *c);

#endif
