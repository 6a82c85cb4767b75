/* Reads shoal-peer's command line and its config file into a struct cli,
 * checking every option and argument, without doing anything else. */
#include "peer/cli.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/textid.h"
#include "peer/fmt.h"

const char cli_usage[] =
    "usage: shoal-peer share PATH... [--tracker HOST[:PORT][@KEY]]... "
    "[options]\n"
    "       shoal-peer get LINK|CONTENT-ID... [-o DIR] [--seed] "
    "[--peer ADDR:PORT]...\n"
    "                  [options]\n"
    "       shoal-peer search WORD... [--tracker HOST[:PORT]]... [--limit N]\n"
    "       shoal-peer id [--home DIR] [--json]\n"
    "       shoal-peer daemon [--home DIR] [--api-listen 127.0.0.1:PORT]\n"
    "                  [--watch DIR [--watch-share]] [--download-dir DIR]\n"
    "                  [--tracker HOST[:PORT]]... [options]\n"
    "       shoal-peer add LINK... [-o DIR]        (the commands below drive\n"
    "       shoal-peer publish PATH...              the daemon of --home)\n"
    "       shoal-peer ls | status\n"
    "       shoal-peer pause|resume|recheck ID...\n"
    "       shoal-peer rm ID... [--delete-data]\n"
    "       shoal-peer limits [--upload-rate R] [--download-rate R]\n"
    "       shoal-peer -h | -V\n"
    "\n"
    "Shares files and folders with other peers, and gets them, through a\n"
    "shoal tracker. One process serves what it holds and fetches what it\n"
    "lacks from many peers at once; every chunk is checked against the\n"
    "publisher's signed manifest. 'daemon' keeps a library of contents\n"
    "running, driven by the client commands (an ID is a content ID, or its\n"
    "first 8 characters or more).\n"
    "\n"
    "Options, and the commands they apply to (any other is an error):\n"
    "  -o, --output=DIR          get, add: where the content goes (get: .;\n"
    "                            add: the daemon's --download-dir)\n"
    "      --seed                get: keep serving after it completes\n"
    "      --tracker=HOST[:PORT][@KEY]\n"
    "                            share, get, search, daemon: a tracker, with\n"
    "                            its key if known (repeatable; port 7070 if\n"
    "                            left out; IPv6 as [ADDR]). Trackers with one\n"
    "                            key are one tier (a cluster, tried in turn);\n"
    "                            each other key, and each tracker without\n"
    "                            one, is a tier of its own: a peer announces\n"
    "                            to every tier\n"
    "      --peer=ADDR:PORT      get: dial this peer at start, and again "
    "while\n"
    "                            not connected (repeatable; a CONTENT-ID then\n"
    "                            needs no tracker)\n"
    "      --tracker-key=ID      share, get, search, daemon: the tracker's\n"
    "                            public key (else learned from its first\n"
    "                            signed reply)\n"
    "      --listen=ADDR:PORT    share, get, daemon: accept peers here "
    "([::]:0,\n"
    "                            or 0.0.0.0:0 without IPv6)\n"
    "      --max-peers=N         share, get, daemon: sessions per content,\n"
    "                            1..256 (50)\n"
    "      --upload-rate=R       share, get, daemon, limits: bytes a second,\n"
    "                            e.g. 500k, 10M (0: no limit)\n"
    "      --download-rate=R     get, daemon, limits: the same for downloads\n"
    "      --mode=p2p|cs         share, get: swarm (p2p), or the client-"
    "server\n"
    "                            baseline: fetch from the publisher only,\n"
    "                            upload nothing\n"
    "      --crypto-on=WHERE     share, get, daemon: where blocks are\n"
    "                            encrypted and decrypted: loop (the network\n"
    "                            thread), pool (the worker threads; costs a\n"
    "                            copy and a hand-over) or auto: pool only\n"
    "                            while the network thread is the busy one\n"
    "                            (auto)\n"
    "      --interval-cap=S      share, get, daemon: announce at least every\n"
    "                            S seconds\n"
    "      --limit=N             search: results, 1..50 (20)\n"
    "      --api-listen=ADDR:PORT daemon: serve the API and page on TCP too,\n"
    "                            on a loopback address (127.0.0.1 or [::1])\n"
    "      --watch=DIR           daemon: add the link in each NAME.shoal file\n"
    "                            put in DIR (renamed NAME.shoal.added)\n"
    "      --watch-share         daemon: and share each other file or folder\n"
    "                            put in DIR, once it stops changing\n"
    "      --download-dir=DIR    daemon: where downloads go (HOME/downloads)\n"
    "      --delete-data         rm: delete a download's data too\n"
    "      --home=DIR            all: keys, library and resume state\n"
    "                            ($XDG_DATA_HOME/shoal)\n"
    "      --config=FILE         all: read options from FILE\n"
    "      --no-config           all: read no config file\n"
    "      --log-level=LEVEL     all: error, warn, info or debug (warn)\n"
    "      --json                all: one JSON object per line on stdout\n"
    "  -q, --quiet               all: no progress and no warnings\n"
    "  -h, --help                this text\n"
    "  -V, --version             the version\n"
    "\n"
    "Options may come before or after the arguments; -- ends them.\n"
    "SHOAL_TRACKER (trackers separated by commas or spaces) stands for\n"
    "--tracker when none is given.\n"
    "\n"
    "The config file, $XDG_CONFIG_HOME/shoal/peer.conf (else\n"
    "~/.config/shoal/peer.conf), holds 'option = value' lines, at the top or\n"
    "under [peer], named as the long options ('upload-rate = 1M', 'json =\n"
    "true'). An option that does not apply to the command is ignored; the\n"
    "command line wins over the file (--tracker replaces its list).\n";

/* Which commands an option applies to: one bit each. */
#define FOR(cmd) (1u << (cmd))
#define FOR_SHARE FOR(CLI_SHARE)
#define FOR_GET FOR(CLI_GET)
#define FOR_SEARCH FOR(CLI_SEARCH)
#define FOR_DAEMON FOR(CLI_DAEMON)
#define FOR_CLIENT                                                             \
  (FOR(CLI_ADD) | FOR(CLI_PUBLISH) | FOR(CLI_LS) | FOR(CLI_PAUSE) |            \
   FOR(CLI_RESUME) | FOR(CLI_RM) | FOR(CLI_RECHECK) | FOR(CLI_STATUS) |        \
   FOR(CLI_LIMITS))
#define FOR_ALL                                                                \
  (FOR_SHARE | FOR_GET | FOR_SEARCH | FOR(CLI_ID) | FOR_DAEMON | FOR_CLIENT)

/* getopt_long's codes: the short letter, or past any character. */
enum opt_code {
  OPT_HELP = 'h',
  OPT_OUTPUT = 'o',
  OPT_QUIET = 'q',
  OPT_VERSION = 'V',
  OPT_SEED = 256,
  OPT_TRACKER,
  OPT_TRACKER_KEY,
  OPT_LISTEN,
  OPT_MAX_PEERS,
  OPT_UPLOAD_RATE,
  OPT_DOWNLOAD_RATE,
  OPT_MODE,
  OPT_CRYPTO_ON,
  OPT_INTERVAL_CAP,
  OPT_LIMIT,
  OPT_API_LISTEN,
  OPT_WATCH,
  OPT_WATCH_SHARE,
  OPT_DOWNLOAD_DIR,
  OPT_DELETE_DATA,
  OPT_HOME,
  OPT_CONFIG,
  OPT_NO_CONFIG,
  OPT_LOG_LEVEL,
  OPT_JSON,
  OPT_PEER,
};

static const struct opt_info {
  enum opt_code code;
  const char *name;
  int has_value;
  unsigned cmds;
  int in_file; /* may be set in the config file */
} opt_table[] = {
    {OPT_OUTPUT, "output", 1, FOR_GET | FOR(CLI_ADD), 1},
    {OPT_SEED, "seed", 0, FOR_GET, 1},
    {OPT_TRACKER, "tracker", 1, FOR_SHARE | FOR_GET | FOR_SEARCH | FOR_DAEMON,
     1},
    {OPT_PEER, "peer", 1, FOR_GET, 0},
    {OPT_TRACKER_KEY, "tracker-key", 1,
     FOR_SHARE | FOR_GET | FOR_SEARCH | FOR_DAEMON, 1},
    {OPT_LISTEN, "listen", 1, FOR_SHARE | FOR_GET | FOR_DAEMON, 1},
    {OPT_MAX_PEERS, "max-peers", 1, FOR_SHARE | FOR_GET | FOR_DAEMON, 1},
    {OPT_UPLOAD_RATE, "upload-rate", 1,
     FOR_SHARE | FOR_GET | FOR_DAEMON | FOR(CLI_LIMITS), 1},
    {OPT_DOWNLOAD_RATE, "download-rate", 1,
     FOR_GET | FOR_DAEMON | FOR(CLI_LIMITS), 1},
    {OPT_MODE, "mode", 1, FOR_SHARE | FOR_GET, 1},
    {OPT_CRYPTO_ON, "crypto-on", 1, FOR_SHARE | FOR_GET | FOR_DAEMON, 1},
    {OPT_INTERVAL_CAP, "interval-cap", 1, FOR_SHARE | FOR_GET | FOR_DAEMON, 1},
    {OPT_LIMIT, "limit", 1, FOR_SEARCH, 1},
    {OPT_API_LISTEN, "api-listen", 1, FOR_DAEMON, 1},
    {OPT_WATCH, "watch", 1, FOR_DAEMON, 1},
    {OPT_WATCH_SHARE, "watch-share", 0, FOR_DAEMON, 1},
    {OPT_DOWNLOAD_DIR, "download-dir", 1, FOR_DAEMON, 1},
    {OPT_DELETE_DATA, "delete-data", 0, FOR(CLI_RM), 1},
    {OPT_HOME, "home", 1, FOR_ALL, 1},
    {OPT_CONFIG, "config", 1, FOR_ALL, 0},
    {OPT_NO_CONFIG, "no-config", 0, FOR_ALL, 0},
    {OPT_LOG_LEVEL, "log-level", 1, FOR_ALL, 1},
    {OPT_JSON, "json", 0, FOR_ALL, 1},
    {OPT_QUIET, "quiet", 0, FOR_ALL, 1},
    {OPT_HELP, "help", 0, FOR_ALL, 0},
    {OPT_VERSION, "version", 0, FOR_ALL, 0},
};
#define OPT_COUNT (sizeof(opt_table) / sizeof(opt_table[0]))
/* "-q" in getopt's terms; the leading '-' hands over the arguments in
 * order (so POSIXLY_CORRECT cannot stop at the first one) and ':' reports
 * a missing value apart from an unknown option. */
static const char short_opts[] = "-:ho:qV";

/* What the command line, or the config file, said, before it is checked.
 * line[] is 0 for the command line, else the file's line. */
struct cmdline {
  const char *value[OPT_COUNT]; /* the last value of each option */
  int given[OPT_COUNT];
  unsigned line[OPT_COUNT];
  const char *trackers[LINK_MAX_TRACKERS + 1]; /* every --tracker */
  unsigned tracker_line[LINK_MAX_TRACKERS + 1];
  unsigned ntrackers;
  const char *peers[PEX_GIVEN_MAX]; /* every --peer */
  unsigned npeers;
  const char *file; /* the config file these came from, or NULL */
};

static const char *const cmd_names[] = {
    "",   "share", "get",    "search", "id",      "daemon", "add",   "publish",
    "ls", "pause", "resume", "rm",     "recheck", "status", "limits"};
#define CMD_COUNT (sizeof(cmd_names) / sizeof(cmd_names[0]))
#define CMD_LIST                                                               \
  "share, get, search, id, daemon, add, publish, ls, pause, resume, rm, "      \
  "recheck, status or limits"

/* Writes a usage error into c->error: the help may help when the command
 * line is wrong (hint), while a malformed link or content ID has a message
 * that says what to do itself. */
static int usage_line(struct cli *c, int hint, const char *fmt, va_list ap) {
  vsnprintf(c->error, sizeof(c->error), fmt, ap);
  if (hint) {
    size_t len = strlen(c->error);
    snprintf(c->error + len, sizeof(c->error) - len,
             " — see 'shoal-peer --help'");
  }
  return SHOAL_EINVAL;
}

__attribute__((format(printf, 2, 3))) static int
fail_usage(struct cli *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = usage_line(c, 1, fmt, ap);
  va_end(ap);
  return rc;
}

__attribute__((format(printf, 2, 3))) static int
fail_input(struct cli *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = usage_line(c, 0, fmt, ap);
  va_end(ap);
  return rc;
}

/* An error found in a value of the config file: the message gets the
 * file's name and line in front. Returns err. */
static int at_line(struct cli *c, const char *file, unsigned line, int err) {
  char msg[CLI_ERROR_BYTES];
  int n;
  if (err != SHOAL_EINVAL || line == 0) {
    return err;
  }
  n = snprintf(msg, sizeof(msg), "%s:%u: ", file, line);
  if (n > 0 && (size_t)n < sizeof(msg)) {
    snprintf(msg + n, sizeof(msg) - (size_t)n, "%.*s",
             (int)(sizeof(msg) - (size_t)n - 1), c->error);
  }
  memcpy(c->error, msg, sizeof(c->error));
  return err;
}

/* Keeps s (malloc'd, or NULL for out of memory) until cli_close. Returns
 * s, or NULL (s freed) when it cannot be kept. */
static char *keep(struct cli *c, char *s) {
  if (s == NULL) {
    return NULL;
  }
  if (c->nowned == c->owned_cap) {
    size_t cap = c->owned_cap ? 2 * c->owned_cap : 16;
    char **v = realloc(c->owned, cap * sizeof(*v));
    if (v == NULL) {
      free(s);
      return NULL;
    }
    c->owned = v;
    c->owned_cap = cap;
  }
  c->owned[c->nowned++] = s;
  return s;
}

static int opt_index(int code) {
  for (size_t i = 0; i < OPT_COUNT; i++) {
    if ((int)opt_table[i].code == code) {
      return (int)i;
    }
  }
  return -1;
}

static int opt_by_name(const char *name) {
  for (size_t i = 0; i < OPT_COUNT; i++) {
    if (strcmp(opt_table[i].name, name) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/* How an option is named in messages: "-o/--output", or "--seed". */
static void opt_name(const struct opt_info *o, char *out, size_t cap) {
  if (o->code < 256) {
    snprintf(out, cap, "-%c/--%s", (char)o->code, o->name);
  } else {
    snprintf(out, cap, "--%s", o->name);
  }
}

/* getopt_long said '?': an unknown option, or a value given to one that
 * takes none. */
static int bad_option(struct cli *c, char **argv, int code) {
  char name[64];
  int i = opt_index(code);
  if (i >= 0) {
    opt_name(&opt_table[i], name, sizeof(name));
    return fail_usage(c, "%s takes no value", name);
  }
  if (code != 0) {
    return fail_usage(c, "unknown option -%c", (char)code);
  }
  /* A long option: getopt_long has moved past it. */
  const char *text = argv[optind - 1];
  return fail_usage(c, "unknown option %.*s", (int)strcspn(text, "="), text);
}

/* Records one value of option k (a repeatable --tracker adds to its list).
 * Returns 0 or SHOAL_EINVAL. */
static int note_value(struct cli *c, struct cmdline *cl, int k,
                      const char *value, unsigned line) {
  cl->given[k] = 1;
  cl->value[k] = value;
  cl->line[k] = line;
  if (opt_table[k].code == OPT_TRACKER) {
    if (cl->ntrackers == LINK_MAX_TRACKERS) {
      return at_line(
          c, cl->file, line,
          fail_usage(c, "--tracker: at most %d trackers", LINK_MAX_TRACKERS));
    }
    cl->tracker_line[cl->ntrackers] = line;
    cl->trackers[cl->ntrackers++] = value;
  }
  if (opt_table[k].code == OPT_PEER) {
    if (cl->npeers == PEX_GIVEN_MAX) {
      return fail_usage(c, "--peer: at most %d peers", PEX_GIVEN_MAX);
    }
    cl->peers[cl->npeers++] = value;
  }
  return 0;
}

/* Reads argv into cl and the other arguments, in order, into c->words.
 * Stops at -h or -V, which set c->cmd. Returns 0 or SHOAL_EINVAL. */
static int read_cmdline(struct cli *c, int argc, char **argv,
                        struct cmdline *cl, int *npos) {
  struct option longopts[OPT_COUNT + 1];
  int code;
  memset(longopts, 0, sizeof(longopts));
  for (size_t i = 0; i < OPT_COUNT; i++) {
    longopts[i].name = opt_table[i].name;
    longopts[i].has_arg =
        opt_table[i].has_value ? required_argument : no_argument;
    longopts[i].val = (int)opt_table[i].code;
  }
  opterr = 0; /* every message is ours, and one line */
  /* 0, not 1: glibc then forgets any earlier scan, as a second parse in
   * the same process (the unit tests) needs. */
  optind = 0;
  while ((code = getopt_long(argc, argv, short_opts, longopts, NULL)) != -1) {
    if (code == 1) {
      c->words[(*npos)++] = optarg;
      continue;
    }
    if (code == '?') {
      return bad_option(c, argv, optopt);
    }
    if (code == ':') {
      char name[64];
      int k = opt_index(optopt);
      assert(k >= 0);
      opt_name(&opt_table[k], name, sizeof(name));
      return fail_usage(c, "%s needs a value", name);
    }
    if (code == OPT_HELP) {
      c->cmd = CLI_HELP;
      return 0;
    }
    if (code == OPT_VERSION) {
      c->cmd = CLI_VERSION;
      return 0;
    }
    int k = opt_index(code);
    assert(k >= 0);
    int err = note_value(c, cl, k, optarg, 0);
    if (err != 0) {
      return err;
    }
  }
  /* After "--", everything is an argument. */
  while (optind < argc) {
    c->words[(*npos)++] = argv[optind++];
  }
  return 0;
}

static int opt_given(const struct cmdline *cl, int code) {
  return cl->given[opt_index(code)];
}

/* The value of an option that was given, or NULL. */
static const char *opt_value(const struct cmdline *cl, int code) {
  int k = opt_index(code);
  return cl->given[k] ? cl->value[k] : NULL;
}

/* ------------------------------------------------------------------------ */
/* The config file */

/* What the handler of ini_parse_stream works with. */
struct conf_read {
  struct cli *c;
  struct cmdline *cl;
  FILE *f;
  const char *path;
  unsigned line; /* of the line inih has now: the reader counts them */
  int err;       /* the first error; its message is in c->error */
  char *buf;     /* getline's */
  size_t bufcap;
};

/* inih's reader: one line at a time (counted, so that the handler knows
 * where it is). A line longer than inih's buffer would be cut in two and
 * the rest read as a line of its own: it is refused instead. */
static char *conf_reader(char *str, int num, void *stream) {
  struct conf_read *r = stream;
  ssize_t n;
  if (r->err != 0) {
    return NULL;
  }
  n = getline(&r->buf, &r->bufcap, r->f);
  if (n < 0) {
    return NULL;
  }
  r->line++;
  if (memchr(r->buf, '\0', (size_t)n) != NULL) {
    r->err = fail_input(r->c, "%s:%u: a NUL byte: this is not a text file",
                        r->path, r->line);
    return NULL;
  }
  if (n > num - 3) {
    r->err = fail_input(r->c, "%s:%u: a line longer than %d bytes", r->path,
                        r->line, num - 3);
    return NULL;
  }
  memcpy(str, r->buf, (size_t)n + 1);
  return str;
}

/* A flag's value in the file. Returns 1, 0, or -1 for neither. */
static int conf_bool(const char *v) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) {
      return 1;
    }
    if (strcasecmp(v, no[i]) == 0) {
      return 0;
    }
  }
  return -1;
}

/* One "name = value" of the file. Returns 1 to go on, 0 after an error. */
static int conf_handler(void *arg, const char *section, const char *name,
                        const char *value) {
  struct conf_read *r = arg;
  struct cli *c = r->c;
  int k;
  if (r->err != 0) {
    return 0;
  }
  if (section[0] != '\0' && strcmp(section, "peer") != 0) {
    r->err = fail_input(c,
                        "%s:%u: unknown section [%s] (options go at the top "
                        "or under [peer])",
                        r->path, r->line, section);
    return 0;
  }
  k = opt_by_name(name);
  if (k < 0) {
    r->err =
        fail_input(c, "%s:%u: unknown option '%s'", r->path, r->line, name);
    return 0;
  }
  if (!opt_table[k].in_file) {
    r->err = fail_input(c, "%s:%u: '%s' is not read from a config file",
                        r->path, r->line, name);
    return 0;
  }
  if (!opt_table[k].has_value) {
    int on = conf_bool(value);
    if (on < 0) {
      r->err = fail_input(c, "%s:%u: %s must be true or false, not '%s'",
                          r->path, r->line, name, value);
      return 0;
    }
    r->cl->given[k] = on;
    r->cl->line[k] = r->line;
    r->cl->value[k] = NULL;
    return 1;
  }
  char *copy = keep(c, strdup(value));
  if (copy == NULL) {
    r->err = SHOAL_ENOMEM;
    return 0;
  }
  r->err = note_value(c, r->cl, k, copy, r->line);
  return r->err == 0;
}

/* The default config file into out: under $XDG_CONFIG_HOME when it is an
 * absolute path, else under $HOME/.config. Returns 0, or -1 when there is
 * none. */
static int default_config(char *out, size_t cap) {
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  int n;
  if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(out, cap, "%s/%s", xdg, CLI_CONFIG_NAME);
  } else if (home != NULL && home[0] == '/') {
    n = snprintf(out, cap, "%s/.config/%s", home, CLI_CONFIG_NAME);
  } else {
    return -1;
  }
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Reads the config file that the command line names (--config), or the
 * default one when it exists, into file. A missing default is no file;
 * anything else that cannot be read is an error. Returns 0, SHOAL_EINVAL
 * or SHOAL_ENOMEM. */
static int read_config(struct cli *c, const struct cmdline *cl,
                       struct cmdline *file) {
  char path[CLI_HOME_BYTES + 64];
  const char *named = opt_value(cl, OPT_CONFIG);
  struct conf_read r;
  struct stat st;
  int rc;

  if (named != NULL && opt_given(cl, OPT_NO_CONFIG)) {
    return fail_usage(c, "--config and --no-config do not go together");
  }
  if (opt_given(cl, OPT_NO_CONFIG)) {
    return 0;
  }
  if (named != NULL) {
    if (named[0] == '\0') {
      return fail_usage(c, "--config needs a file, not ''");
    }
    snprintf(path, sizeof(path), "%s", named);
  } else if (default_config(path, sizeof(path)) != 0) {
    return 0;
  }
  memset(&r, 0, sizeof(r));
  r.f = fopen(path, "re");
  if (r.f == NULL) {
    if (named == NULL && errno == ENOENT) {
      return 0; /* no default file: nothing to read */
    }
    return fail_input(c, "cannot read the config file %s: %s", path,
                      strerror(errno));
  }
  if (fstat(fileno(r.f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(r.f);
    return fail_input(c, "cannot read the config file %s: not a file", path);
  }
  c->config_path = named != NULL ? named : keep(c, strdup(path));
  if (c->config_path == NULL) {
    fclose(r.f);
    return SHOAL_ENOMEM;
  }
  file->file = c->config_path;
  r.c = c;
  r.cl = file;
  r.path = c->config_path;
  rc = ini_parse_stream(conf_reader, &r, conf_handler, &r);
  if (r.err == 0 && ferror(r.f)) {
    r.err = fail_input(c, "cannot read the config file %s: %s", path,
                       strerror(errno));
  }
  if (r.err == 0 && rc != 0) {
    /* inih's own refusal: a line that is neither a section, a comment nor
     * "name = value". */
    r.err = fail_input(c,
                       "%s:%d: not 'option = value', '[peer]' or a comment "
                       "(# or ;)",
                       c->config_path, rc);
  }
  free(r.buf);
  fclose(r.f);
  return r.err;
}

/* The options the run takes: the command line's, and the file's where the
 * command line says nothing and the option applies to the command. */
static void merge_config(struct cli *c, struct cmdline *cl,
                         const struct cmdline *file) {
  unsigned bit = 1u << c->cmd;
  cl->file = file->file;
  for (size_t k = 0; k < OPT_COUNT; k++) {
    if (!cl->given[k] && file->given[k] && (opt_table[k].cmds & bit) != 0 &&
        opt_table[k].code != OPT_TRACKER) {
      cl->given[k] = 1;
      cl->value[k] = file->value[k];
      cl->line[k] = file->line[k];
    }
  }
  /* A repeatable option: the command line's list, or else the file's. */
  if (cl->ntrackers == 0 && file->ntrackers > 0 &&
      (opt_table[opt_index(OPT_TRACKER)].cmds & bit) != 0) {
    int k = opt_index(OPT_TRACKER);
    memcpy(cl->trackers, file->trackers, sizeof(cl->trackers));
    memcpy(cl->tracker_line, file->tracker_line, sizeof(cl->tracker_line));
    cl->ntrackers = file->ntrackers;
    cl->given[k] = 1;
    cl->value[k] = file->value[k];
    cl->line[k] = file->line[k];
  }
}

/* ------------------------------------------------------------------------ */
/* Paths for the daemon */

/* path made absolute against the current folder, for a daemon that has
 * its own: its parent is resolved (symbolic links and "..") and its last
 * name kept as written, so that a link is shared under the name given.
 * A parent that does not exist (a -o folder the daemon will make) is
 * joined to the current folder as written. Returns the path (owned by c)
 * or NULL with an error: SHOAL_EINVAL (message in c->error) or
 * SHOAL_ENOMEM in *err. */
static const char *absolute_path(struct cli *c, const char *what,
                                 const char *path, int *err) {
  char *copy = NULL, *parent = NULL, *cwd = NULL, *out = NULL;
  const char *base;
  size_t len = strlen(path);
  *err = SHOAL_ENOMEM;
  if (path[0] == '/') {
    return keep(c, strdup(path));
  }
  copy = strdup(path);
  if (copy == NULL) {
    goto out;
  }
  while (len > 1 && copy[len - 1] == '/') {
    copy[--len] = '\0';
  }
  char *slash = strrchr(copy, '/');
  if (slash != NULL) {
    *slash = '\0';
    base = slash + 1;
    parent = realpath(copy[0] != '\0' ? copy : "/", NULL);
  } else {
    base = copy;
    parent = realpath(".", NULL);
  }
  if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
    /* Nothing to keep as written: the whole path, resolved. */
    free(parent);
    if (slash != NULL) {
      *slash = '/';
    }
    parent = realpath(copy, NULL);
    base = NULL;
  }
  if (parent != NULL) {
    size_t n = strlen(parent) + (base ? strlen(base) : 0) + 2;
    out = malloc(n);
    if (out != NULL) {
      snprintf(out, n, "%s%s%s", parent,
               base == NULL || strcmp(parent, "/") == 0 ? "" : "/",
               base ? base : "");
    }
  } else {
    cwd = getcwd(NULL, 0);
    if (cwd == NULL) {
      *err = fail_input(c, "%s '%s': cannot find the current folder: %s", what,
                        path, strerror(errno));
      goto out;
    }
    size_t n = strlen(cwd) + strlen(path) + 2;
    out = malloc(n);
    if (out != NULL) {
      snprintf(out, n, "%s/%s", cwd, path);
    }
  }
  if (out != NULL && strlen(out) >= CLI_HOME_BYTES) {
    *err = fail_input(c, "%s '%s' is longer than %d bytes once absolute", what,
                      path, CLI_HOME_BYTES - 1);
    free(out);
    out = NULL;
  }
out:
  free(copy);
  free(parent);
  free(cwd);
  return out != NULL ? keep(c, out) : NULL;
}

/* The same for an option's value, replacing *value. Returns 0, SHOAL_EINVAL
 * or SHOAL_ENOMEM. */
static int make_absolute(struct cli *c, const char *what, const char **value) {
  int err = 0;
  const char *abs = absolute_path(c, what, *value, &err);
  if (abs == NULL) {
    return err;
  }
  *value = abs;
  return 0;
}

/* The trackers of SHOAL_TRACKER, for a command line that names none.
 * Returns 0 (with *n 0 when the variable is unset or empty), or
 * SHOAL_EINVAL after a usage error that names the variable. */
static int env_trackers(struct cli *c, struct link_tracker *out, unsigned *n) {
  const char *env = getenv(CLI_TRACKER_ENV);
  char bad[LINK_MAX_HOST + 16];
  const char *why = NULL;
  *n = 0;
  if (env == NULL || env[0] == '\0') {
    return 0;
  }
  int err = fmt_parse_tracker_list(env, out, LINK_MAX_TRACKERS, n, &why, bad,
                                   sizeof(bad));
  if (err == SHOAL_EBADLINK) {
    return fail_usage(c, "%s: '%s' is not HOST[:PORT]: %s", CLI_TRACKER_ENV,
                      bad, why);
  }
  if (err != 0) {
    return fail_usage(c,
                      "%s='%s': %s; it holds 1 to %d trackers separated "
                      "by commas or spaces",
                      CLI_TRACKER_ENV, env, why, LINK_MAX_TRACKERS);
  }
  return 0;
}

/* --api-listen: a loopback address, since the API is reached from this
 * machine only (through ssh -L from another). Returns 0 or SHOAL_EINVAL. */
static int take_api_listen(struct cli *c, const char *v) {
  struct sockaddr_storage ss;
  if (node_parse_listen(v, &ss) != 0) {
    return fail_usage(c,
                      "--api-listen must be a loopback address and a port, "
                      "like 127.0.0.1:7071 or [::1]:7071, not '%s'",
                      v);
  }
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(void *)&ss;
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) {
      return 0;
    }
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(void *)&ss;
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
      return 0;
    }
  }
  return fail_usage(c,
                    "--api-listen '%s' is not a loopback address: the API "
                    "listens on 127.0.0.1 or [::1] only (reach it from "
                    "elsewhere through ssh -L)",
                    v);
}

/* Checks and takes one option's value (NULL for a flag). Returns 0 or
 * SHOAL_EINVAL. */
static int take_value(struct cli *c, enum opt_code code, const char *v) {
  uint64_t u;
  switch (code) {
  case OPT_JSON:
    c->json = 1;
    return 0;
  case OPT_QUIET:
    c->quiet = 1;
    return 0;
  case OPT_SEED:
    c->seed = 1;
    return 0;
  case OPT_WATCH_SHARE:
    c->watch_share = 1;
    return 0;
  case OPT_DELETE_DATA:
    c->delete_data = 1;
    return 0;
  case OPT_OUTPUT:
    if (v[0] == '\0') {
      return fail_usage(c, "-o/--output needs a folder, not ''");
    }
    c->out_dir = v;
    return 0;
  case OPT_LISTEN: {
    struct sockaddr_storage ss;
    if (node_parse_listen(v, &ss) != 0) {
      return fail_usage(c,
                        "--listen must be ADDR:PORT with an IPv4 or [IPv6] "
                        "address and a port 0-65535 (0: any), not '%s'",
                        v);
    }
    c->node.listen = v;
    return 0;
  }
  case OPT_API_LISTEN:
    if (take_api_listen(c, v) != 0) {
      return SHOAL_EINVAL;
    }
    c->api_listen = v;
    return 0;
  case OPT_HOME:
  case OPT_WATCH:
  case OPT_DOWNLOAD_DIR: {
    const char *name = code == OPT_HOME    ? "--home"
                       : code == OPT_WATCH ? "--watch"
                                           : "--download-dir";
    if (v[0] == '\0' || strlen(v) >= CLI_HOME_BYTES) {
      return fail_usage(c, "%s needs a folder path of at most %zu bytes", name,
                        (size_t)CLI_HOME_BYTES - 1);
    }
    if (code == OPT_HOME) {
      c->home = v;
    } else if (code == OPT_WATCH) {
      c->watch_dir = v;
    } else {
      c->download_dir = v;
    }
    return 0;
  }
  case OPT_MAX_PEERS:
    if (fmt_parse_uint(v, 1, 256, &u) != 0) {
      return fail_usage(
          c, "--max-peers must be a number from 1 to 256, not '%s'", v);
    }
    c->node.max_peers = (unsigned)u;
    return 0;
  case OPT_LIMIT:
    if (fmt_parse_uint(v, 1, TMSG_MAX_RESULTS, &u) != 0) {
      return fail_usage(c, "--limit must be a number from 1 to %d, not '%s'",
                        TMSG_MAX_RESULTS, v);
    }
    c->limit = (unsigned)u;
    return 0;
  case OPT_INTERVAL_CAP:
    if (fmt_parse_uint(v, 0, 86400, &u) != 0) {
      return fail_usage(c,
                        "--interval-cap must be seconds from 0 to 86400, not "
                        "'%s'",
                        v);
    }
    c->node.interval_cap_s = (unsigned)u;
    return 0;
  case OPT_UPLOAD_RATE:
  case OPT_DOWNLOAD_RATE: {
    int up = code == OPT_UPLOAD_RATE;
    if (fmt_parse_size(v, &u) != 0) {
      return fail_usage(c,
                        "--%s-rate must be bytes a second like 500k or 10M, "
                        "not '%s'",
                        up ? "upload" : "download", v);
    }
    if (up) {
      c->node.upload_rate = u;
      c->have_upload_rate = 1;
    } else {
      c->node.download_rate = u;
      c->have_download_rate = 1;
    }
    return 0;
  }
  case OPT_MODE:
    if (strcmp(v, "p2p") == 0) {
      c->node.mode = NODE_MODE_P2P;
    } else if (strcmp(v, "cs") == 0) {
      c->node.mode = NODE_MODE_CS;
    } else {
      return fail_usage(c, "--mode must be p2p or cs, not '%s'", v);
    }
    return 0;
  case OPT_CRYPTO_ON:
    if (strcmp(v, "auto") == 0) {
      c->node.crypto = NODE_CRYPTO_AUTO;
    } else if (strcmp(v, "loop") == 0) {
      c->node.crypto = NODE_CRYPTO_LOOP;
    } else if (strcmp(v, "pool") == 0) {
      c->node.crypto = NODE_CRYPTO_POOL;
    } else {
      return fail_usage(c, "--crypto-on must be auto, loop or pool, not '%s'",
                        v);
    }
    return 0;
  case OPT_LOG_LEVEL: {
    int level = log_level_parse(v);
    if (level < 0) {
      return fail_usage(c,
                        "--log-level must be error, warn, info or debug, not "
                        "'%s'",
                        v);
    }
    c->log_level = (enum log_level)level;
    return 0;
  }
  case OPT_TRACKER_KEY:
    if (textid_decode(TEXTID_KEY, v, strlen(v), c->tracker_key) != 0) {
      return fail_usage(c,
                        "--tracker-key '%s' is not a key ID (56 characters, "
                        "as the tracker prints on start)",
                        v);
    }
    c->have_key = 1;
    return 0;
  case OPT_TRACKER: {
    const char *why = NULL;
    const char *at = strchr(v, '@');
    struct link_tracker *t = &c->trackers[c->ntrackers];
    char addr[LINK_MAX_HOST + 16];
    uint8_t key[32];
    int err;
    if (at != NULL) {
      /* HOST[:PORT]@KEY: the address as without a key, then the key. */
      if ((size_t)(at - v) >= sizeof(addr)) {
        return fail_usage(c, "--tracker '%s': tracker host is too long", v);
      }
      memcpy(addr, v, (size_t)(at - v));
      addr[at - v] = '\0';
      err = textid_decode(TEXTID_KEY, at + 1, strlen(at + 1), key);
      if (err != 0) {
        return fail_usage(c,
                          "--tracker '%s': the key after '@' is not a key ID "
                          "(56 characters, as the tracker prints on start)",
                          v);
      }
    }
    if (fmt_parse_tracker(at != NULL ? addr : v, t, &why) != 0) {
      return fail_usage(c, "--tracker '%s': %s", v, why);
    }
    if (at != NULL) {
      memcpy(t->key, key, sizeof(key));
      t->has_key = 1;
    }
    for (unsigned i = 0; i < c->ntrackers; i++) {
      if (link_same_tracker(&c->trackers[i], t)) {
        return fail_usage(c, "--tracker '%s' is given twice", v);
      }
    }
    c->ntrackers++;
    return 0;
  }
  case OPT_PEER: {
    struct sockaddr_storage *ss = &c->peers[c->npeers];
    if (node_parse_listen(v, ss) != 0 ||
        (ss->ss_family == AF_INET &&
         ((const struct sockaddr_in *)(const void *)ss)->sin_port == 0) ||
        (ss->ss_family == AF_INET6 &&
         ((const struct sockaddr_in6 *)(const void *)ss)->sin6_port == 0)) {
      return fail_usage(c,
                        "--peer '%s' is not an address and a port, like "
                        "192.0.2.7:7071 or [2001:db8::7]:7071",
                        v);
    }
    c->npeers++;
    return 0;
  }
  case OPT_CONFIG:
  case OPT_NO_CONFIG:
  case OPT_HELP:
  case OPT_VERSION:
    return 0; /* read before */
  }
  return 0;
}

/* Checks and takes every option's value, the command line's and the config
 * file's. Returns 0, SHOAL_EINVAL or SHOAL_ENOMEM. */
static int take_options(struct cli *c, const struct cmdline *cl) {
  int err;
  for (size_t i = 0; i < OPT_COUNT; i++) {
    if (!cl->given[i] || opt_table[i].code == OPT_TRACKER ||
        opt_table[i].code == OPT_PEER) {
      continue;
    }
    err = take_value(c, opt_table[i].code, cl->value[i]);
    if (err != 0) {
      return at_line(c, cl->file, cl->line[i], err);
    }
  }
  for (unsigned i = 0; i < cl->ntrackers; i++) {
    err = take_value(c, OPT_TRACKER, cl->trackers[i]);
    if (err != 0) {
      return at_line(c, cl->file, cl->tracker_line[i], err);
    }
  }
  for (unsigned i = 0; i < cl->npeers; i++) {
    err = take_value(c, OPT_PEER, cl->peers[i]);
    if (err != 0) {
      return err;
    }
  }
  if (c->watch_share && c->watch_dir == NULL) {
    return fail_usage(c, "--watch-share needs --watch DIR: the folder whose "
                         "files are shared");
  }
  /* The daemon runs in a folder of its own choosing. */
  if (c->cmd == CLI_DAEMON && c->watch_dir != NULL &&
      (err = make_absolute(c, "--watch", &c->watch_dir)) != 0) {
    return err;
  }
  if (c->cmd == CLI_DAEMON && c->download_dir != NULL &&
      (err = make_absolute(c, "--download-dir", &c->download_dir)) != 0) {
    return err;
  }
  return 0;
}

/* Puts n trackers in tiers: those with one key (their own, else
 * --tracker-key) in one tier, in the order the keys first appear, and each
 * without a key in a tier of its own, since nothing says it is one of the
 * others (it learns its key on first contact). Returns 0, or SHOAL_EINVAL
 * for more than LINK_MAX_TIERS tiers. */
static int tier_trackers(struct cli *c, struct link_tracker *t, unsigned n) {
  unsigned ntiers = 0;
  for (unsigned i = 0; i < n; i++) {
    const uint8_t *k = t[i].has_key  ? t[i].key
                       : c->have_key ? c->tracker_key
                                     : NULL;
    unsigned tier = ntiers;
    for (unsigned j = 0; k != NULL && j < i; j++) {
      const uint8_t *kj = t[j].has_key  ? t[j].key
                          : c->have_key ? c->tracker_key
                                        : NULL;
      if (kj != NULL && memcmp(k, kj, 32) == 0) {
        tier = t[j].tier;
        break;
      }
    }
    if (tier == ntiers) {
      if (ntiers == LINK_MAX_TIERS) {
        return fail_usage(c,
                          "--tracker: at most %d tiers (trackers with "
                          "different keys, or without one) — give the "
                          "trackers of one cluster its key",
                          LINK_MAX_TIERS);
      }
      ntiers++;
    }
    t[i].tier = (uint8_t)tier;
  }
  return 0;
}

/* Reads the LINKs and CONTENT-IDs of a get. Returns 0, SHOAL_EINVAL or
 * SHOAL_ENOMEM. */
static int take_gets(struct cli *c) {
  struct link_tracker env[LINK_MAX_TRACKERS];
  unsigned nenv = 0;
  int env_read = 0;
  int err;
  if ((err = tier_trackers(c, c->trackers, c->ntrackers)) != 0) {
    return err;
  }
  c->gets = calloc((size_t)c->nargs, sizeof(*c->gets));
  if (c->gets == NULL) {
    return SHOAL_ENOMEM;
  }
  for (int i = 0; i < c->nargs; i++) {
    struct cli_get *g = &c->gets[c->ngets++];
    const char *arg = c->args[i];
    /* Each content has the command line's trackers and key, plus its
     * link's. */
    memcpy(g->trackers, c->trackers, c->ntrackers * sizeof(c->trackers[0]));
    g->ntrackers = c->ntrackers;
    if (c->have_key) {
      memcpy(g->key, c->tracker_key, 32);
      g->have_key = 1;
    }
    if (strncmp(arg, LINK_SCHEME, strlen(LINK_SCHEME)) == 0) {
      const char *why = NULL;
      if (link_parse(arg, strlen(arg), &g->link, &why) != 0) {
        return fail_input(c,
                          "bad link: %s — copy the whole link as 'shoal-peer "
                          "share' printed it",
                          why != NULL ? why : "malformed");
      }
      memcpy(g->content, g->link.id, sizeof(g->content));
      /* The link's trackers carry their keys and tiers; the command line's
       * join its first tier, and when the link has one key for all (its
       * first form), they are taken to sign with it unless --tracker-key
       * says otherwise. */
      if (!g->have_key) {
        int one_key = 1;
        for (size_t t = 1; t < g->link.tracker_count; t++) {
          one_key &=
              memcmp(g->link.trackers[t].key, g->link.trackers[0].key, 32) == 0;
        }
        if (one_key) {
          memcpy(g->key, g->link.trackers[0].key, 32);
          g->have_key = 1;
        }
      }
      for (size_t t = 0;
           t < g->link.tracker_count && g->ntrackers < LINK_MAX_TRACKERS; t++) {
        g->trackers[g->ntrackers++] = g->link.trackers[t];
      }
      continue;
    }
    err = textid_decode(TEXTID_CONTENT, arg, strlen(arg), g->content);
    if (err != 0) {
      return fail_input(c,
                        "'%s' is neither a share link (shoal:...) nor a "
                        "content ID: %s",
                        arg, shoal_strerror(err));
    }
    /* A content ID names no tracker: the command line's, or else the
     * variable's. A link carries its own and needs neither, and a get
     * given --peer may go without. */
    if (g->ntrackers == 0 && !env_read) {
      env_read = 1;
      err = env_trackers(c, env, &nenv);
      if (err == 0) {
        err = tier_trackers(c, env, nenv);
      }
      if (err != 0) {
        return err;
      }
    }
    if (g->ntrackers == 0 && c->npeers == 0) {
      if (nenv == 0) {
        return fail_usage(c, "get CONTENT-ID needs --tracker HOST[:PORT] or %s",
                          CLI_TRACKER_ENV);
      }
      memcpy(g->trackers, env, nenv * sizeof(env[0]));
      g->ntrackers = nenv;
    }
  }
  return 0;
}

/* The words of a search, joined by spaces into the query. Returns 0 or
 * SHOAL_EINVAL. */
static int take_words(struct cli *c) {
  size_t off = 0;
  for (int i = 0; i < c->nargs; i++) {
    const char *w = c->args[i];
    if (w[strspn(w, " \t\n\r\f\v")] == '\0') {
      return fail_usage(c, "search needs words to look for, not '%s'", w);
    }
    int n = snprintf(c->query.query + off, sizeof(c->query.query) - off, "%s%s",
                     i ? " " : "", w);
    if (n < 0 || (size_t)n >= sizeof(c->query.query) - off) {
      return fail_usage(c, "search words are longer than %zu bytes",
                        sizeof(c->query.query) - 1);
    }
    off += (size_t)n;
  }
  c->query.limit = (uint16_t)c->limit;
  return 0;
}

/* add's LINKs, checked as get checks them, and its -o made absolute.
 * Returns 0, SHOAL_EINVAL or SHOAL_ENOMEM. */
static int take_links(struct cli *c) {
  if (c->nargs < 1) {
    return fail_usage(c, "add needs a LINK (or several)");
  }
  for (int i = 0; i < c->nargs; i++) {
    struct share_link l;
    const char *why = NULL;
    const char *arg = c->args[i];
    if (strncmp(arg, LINK_SCHEME, strlen(LINK_SCHEME)) != 0) {
      return fail_input(c,
                        "'%s' is not a share link (shoal:...) — add takes "
                        "links as 'shoal-peer share' prints them",
                        arg);
    }
    if (link_parse(arg, strlen(arg), &l, &why) != 0) {
      return fail_input(c,
                        "bad link: %s — copy the whole link as 'shoal-peer "
                        "share' printed it",
                        why != NULL ? why : "malformed");
    }
  }
  if (c->out_dir != NULL) {
    return make_absolute(c, "-o/--output", &c->out_dir);
  }
  return 0;
}

/* publish's PATHs, made absolute. Returns 0, SHOAL_EINVAL or SHOAL_ENOMEM. */
static int take_paths(struct cli *c) {
  const char **abs;
  int err;
  if (c->nargs < 1) {
    return fail_usage(c, "publish needs at least one PATH");
  }
  abs = calloc((size_t)c->nargs + 1, sizeof(*abs));
  if (abs == NULL || keep(c, (char *)(void *)abs) == NULL) {
    return SHOAL_ENOMEM;
  }
  for (int i = 0; i < c->nargs; i++) {
    if (c->args[i][0] == '\0') {
      return fail_usage(c, "publish needs a path, not ''");
    }
    abs[i] = c->args[i];
    err = make_absolute(c, "publish", &abs[i]);
    if (err != 0) {
      return err;
    }
  }
  c->args = (char **)(void *)abs;
  return 0;
}

/* Whether s is a content ID's text: lowercase or uppercase base32. */
static int id_chars(const char *s) {
  for (; *s != '\0'; s++) {
    char ch = *s;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '2' && ch <= '7'))) {
      return 0;
    }
  }
  return 1;
}

/* The IDs of pause, resume, rm and recheck: whole content IDs, or their
 * first CLI_ID_PREFIX_MIN characters or more (resolved by ctl.c). Returns
 * 0 or SHOAL_EINVAL. */
static int take_ids(struct cli *c) {
  uint8_t id[TEXTID_BYTES];
  if (c->nargs < 1) {
    return fail_usage(c,
                      "%s needs a content ID (or several; 'shoal-peer ls' "
                      "lists them)",
                      cmd_names[c->cmd]);
  }
  for (int i = 0; i < c->nargs; i++) {
    const char *arg = c->args[i];
    size_t len = strlen(arg);
    if (len == TEXTID_CHARS) {
      int err = textid_decode(TEXTID_CONTENT, arg, len, id);
      if (err != 0) {
        return fail_input(c, "'%s' is not a content ID: %s", arg,
                          shoal_strerror(err));
      }
    } else if (len < CLI_ID_PREFIX_MIN || len > TEXTID_CHARS ||
               !id_chars(arg)) {
      return fail_input(c,
                        "'%s' is not a content ID, nor its first %d "
                        "characters or more ('shoal-peer ls' lists them)",
                        arg, CLI_ID_PREFIX_MIN);
    }
  }
  return 0;
}

/* Each command's own arguments. Returns 0, SHOAL_EINVAL or SHOAL_ENOMEM. */
static int take_arguments(struct cli *c) {
  int err;
  switch (c->cmd) {
  case CLI_SHARE:
  case CLI_SEARCH:
    if (c->nargs < 1) {
      return fail_usage(c, c->cmd == CLI_SHARE ? "share needs at least one PATH"
                                               : "search needs WORDS to look "
                                                 "for");
    }
    if (c->ntrackers == 0) {
      err = env_trackers(c, c->trackers, &c->ntrackers);
      if (err != 0) {
        return err;
      }
    }
    if (c->ntrackers == 0) {
      return fail_usage(c, "%s needs --tracker HOST[:PORT] or %s",
                        cmd_names[c->cmd], CLI_TRACKER_ENV);
    }
    /* A search asks one tracker after the other: no tiers. */
    if (c->cmd == CLI_SHARE &&
        (err = tier_trackers(c, c->trackers, c->ntrackers)) != 0) {
      return err;
    }
    return c->cmd == CLI_SEARCH ? take_words(c) : 0;
  case CLI_GET:
    if (c->nargs < 1) {
      return fail_usage(c, "get needs a LINK or CONTENT-ID (or several)");
    }
    return take_gets(c);
  case CLI_ID:
  case CLI_DAEMON:
  case CLI_LS:
  case CLI_STATUS:
  case CLI_LIMITS:
    if (c->nargs > 0) {
      return fail_usage(c, "%s takes no arguments, not '%s'", cmd_names[c->cmd],
                        c->args[0]);
    }
    if (c->cmd == CLI_DAEMON && c->ntrackers == 0) {
      /* The trackers a share goes to; a daemon may run without. */
      int e = env_trackers(c, c->trackers, &c->ntrackers);
      if (e != 0) {
        return e;
      }
    }
    return c->cmd == CLI_DAEMON ? tier_trackers(c, c->trackers, c->ntrackers)
                                : 0;
  case CLI_ADD:
    return take_links(c);
  case CLI_PUBLISH:
    return take_paths(c);
  case CLI_PAUSE:
  case CLI_RESUME:
  case CLI_RM:
  case CLI_RECHECK:
    return take_ids(c);
  case CLI_NONE:
  case CLI_HELP:
  case CLI_VERSION:
    break;
  }
  return 0;
}

int cli_parse(struct cli *c, int argc, char **argv) {
  struct cmdline cl, file;
  int npos = 0;
  int err;

  memset(c, 0, sizeof(*c));
  memset(&cl, 0, sizeof(cl));
  memset(&file, 0, sizeof(file));
  c->out_dir = ".";
  c->limit = CLI_LIMIT_DEFAULT;
  c->log_level = LOG_WARN;
  c->node.max_peers = NODE_DEFAULT_MAX_PEERS;
  c->words = calloc((size_t)argc + 1, sizeof(*c->words));
  if (c->words == NULL) {
    return SHOAL_ENOMEM;
  }
  err = read_cmdline(c, argc, argv, &cl, &npos);
  if (err != 0 || c->cmd != CLI_NONE) {
    return err; /* a usage error, or -h or -V */
  }
  if (npos == 0) {
    return fail_usage(c, "a command is needed: " CMD_LIST);
  }
  if (strcmp(c->words[0], "help") == 0) {
    c->cmd = CLI_HELP;
    return 0;
  }
  for (size_t i = 1; i < CMD_COUNT; i++) {
    if (strcmp(c->words[0], cmd_names[i]) == 0) {
      c->cmd = (enum cli_cmd)i;
    }
  }
  if (c->cmd == CLI_NONE) {
    return fail_usage(c, "unknown command '%s' (" CMD_LIST ")", c->words[0]);
  }
  c->args = c->words + 1;
  c->nargs = npos - 1;
  /* The command line's options must apply to the command; the file's are
   * skipped where they do not. */
  for (size_t i = 0; i < OPT_COUNT; i++) {
    if (cl.given[i] && (opt_table[i].cmds & (1u << c->cmd)) == 0) {
      char name[64];
      opt_name(&opt_table[i], name, sizeof(name));
      return fail_usage(c, "%s does not apply to %s", name, cmd_names[c->cmd]);
    }
  }
  if (c->cmd == CLI_ADD) {
    c->out_dir = NULL; /* the daemon's --download-dir */
  }
  err = read_config(c, &cl, &file);
  if (err != 0) {
    return err;
  }
  merge_config(c, &cl, &file);
  err = take_options(c, &cl);
  if (err == 0) {
    err = take_arguments(c);
  }
  return err;
}

void cli_close(struct cli *c) {
  free(c->gets);
  free(c->words);
  for (size_t i = 0; i < c->nowned; i++) {
    free(c->owned[i]);
  }
  free(c->owned);
  c->owned = NULL;
  c->nowned = 0;
  c->owned_cap = 0;
  c->gets = NULL;
  c->ngets = 0;
  c->words = NULL;
  c->args = NULL;
  c->nargs = 0;
  c->config_path = NULL;
}
