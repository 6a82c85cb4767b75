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
 * The config file (--config FILE, else $XDG_CONFIG_HOME/shoal/peer.conf or
 * $HOME/.config/shoal/peer.conf; none with --no-config) is read here too,
 * with inih: "key = value" lines whose keys are the long options' names,
 * at the top or under [peer]. Its values are checked by the same code as
 * the command line's, and an error names FILE:LINE. A key that is an
 * option of other commands only is ignored (the file serves every
 * command); one given on the command line too is the command line's (all
 * of a repeatable option's values: --tracker replaces the file's list).
 *
 * Nothing here runs a loop or writes anything: a usage error leaves its one
 * line in cli.error for the caller to print (exit status 2), and -h, -V and
 * "help" only set the command. Paths the daemon will use (add's -o,
 * publish's paths, the daemon's --watch and --download-dir) are made
 * absolute against the current folder, since the daemon has its own.
 */
#ifndef SHOAL_PEER_CLI_H
#define SHOAL_PEER_CLI_H

#include <stdint.h>
#include <sys/socket.h>

#include "common/link.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/tmsg.h"
#include "peer/limits.h"
#include "peer/node.h"

/* The variable that stands for --tracker when none is given. */
#define CLI_TRACKER_ENV "SHOAL_TRACKER"
/* A usage error as written, before it is escaped for the terminal. */
#define CLI_ERROR_BYTES 8192
/* A --home path and its NUL: what the home module keeps (home.h). */
#define CLI_HOME_BYTES 4096
/* Search results when --limit is not given. */
#define CLI_LIMIT_DEFAULT 20
/* The config file under $XDG_CONFIG_HOME (or $HOME/.config). */
#define CLI_CONFIG_NAME "shoal/peer.conf"
/* Fewest characters of a content ID that the client commands take as a
 * prefix of one (ctl.c resolves it against the daemon's list). */
#define CLI_ID_PREFIX_MIN 8

enum cli_cmd {
  CLI_NONE,
  CLI_SHARE,
  CLI_GET,
  CLI_SEARCH,
  CLI_ID,
  CLI_DAEMON, /* the long-running peer, with its API (run by daemon.c) */
  /* The client commands: each is one or more requests to the daemon's API
   * on HOME/api.sock (ctl.c). */
  CLI_ADD,
  CLI_PUBLISH,
  CLI_LS,
  CLI_PAUSE,
  CLI_RESUME,
  CLI_RM,
  CLI_RECHECK,
  CLI_STATUS,
  CLI_LIMITS,
  CLI_HELP,    /* -h, --help or "help": print cli_usage, exit 0 */
  CLI_VERSION, /* -V or --version: print the version, exit 0 */
};

/* A command that talks to a running daemon (ctl_run). */
#define CLI_IS_CLIENT(cmd) ((cmd) >= CLI_ADD && (cmd) <= CLI_LIMITS)

/* One content a get fetches: its ID, and its link when it came as one. */
struct cli_get {
  uint8_t content[MANIFEST_ID_BYTES];
  struct share_link link; /* zeroed for a content ID */
  /* The command line's trackers (or SHOAL_TRACKER's), then the link's. */
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t key[32]; /* --tracker-key (a link's trackers carry their own) */
  int have_key;
};

/* What the command line says, checked. */
struct cli {
  enum cli_cmd cmd;
  /* The command's own arguments, in order: share's paths, get's and add's
   * links and content IDs, search's words, the IDs (or prefixes) of
   * pause, resume, rm and recheck. They point into argv, except publish's
   * paths, made absolute (owned). */
  char **args;
  int nargs;
  /* get: -o, "." when not given; add: -o made absolute, NULL when not
   * given (the daemon's --download-dir). */
  const char *out_dir;
  const char *home; /* --home; NULL for the default */
  int seed;
  int quiet;
  int json;
  unsigned limit; /* search: --limit */
  enum log_level log_level;
  /* --listen (borrowed from argv), --max-peers, the rates, --mode,
   * --interval-cap; home is left NULL for the caller. */
  struct node_config node;
  /* share, search, daemon: with their keys when given (HOST@KEY), in
   * tiers (one per key; one for each tracker without a key) */
  struct link_tracker trackers[LINK_MAX_TRACKERS];
  unsigned ntrackers;
  uint8_t tracker_key[32];
  int have_key;
  /* get: the --peer addresses, dialled for every content. */
  struct sockaddr_storage peers[PEX_GIVEN_MAX];
  unsigned npeers;
  struct cli_get *gets; /* get: one for each argument */
  int ngets;
  struct tmsg_search query; /* search: the words, and the limit */
  /* daemon: --api-listen (checked: a loopback ADDR:PORT), --watch and
   * --download-dir (made absolute), --watch-share. */
  const char *api_listen;
  const char *watch_dir;
  int watch_share;
  const char *download_dir;
  /* limits: which of node.upload_rate and node.download_rate were given
   * (a limits without either shows them). */
  int have_upload_rate;
  int have_download_rate;
  int delete_data; /* rm: --delete-data */
  /* The config file that was read, or NULL (points into argv or owned). */
  const char *config_path;
  char **words; /* every argument but the options (owned) */
  /* Strings made here that the fields above point to: the config file's
   * values, absolute paths (owned). */
  char **owned;
  size_t nowned, owned_cap;
  char error[CLI_ERROR_BYTES];
};

/* The text of -h. */
extern const char cli_usage[];

/* Reads argv (argc entries, which must outlive c) and the config file
 * into c, which is zeroed first. Returns 0; SHOAL_EINVAL after a usage
 * error (the config file's included: one that cannot be read, or a bad
 * line in it), whose one line (for the terminal: not escaped yet) is in
 * c->error; or SHOAL_ENOMEM. c holds memory on every return, which its
 * fields may point into: call cli_close. */
int cli_parse(struct cli *c, int argc, char **argv);
/* Frees what cli_parse allocated. A zeroed struct cli may be closed. */
void cli_close(struct cli *c);

#endif
