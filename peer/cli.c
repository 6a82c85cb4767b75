/* Reads shoal-peer's command line into a struct cli, checking every option
 * and argument, without doing anything else. */
#include "peer/cli.h"

#include <assert.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/textid.h"
#include "peer/fmt.h"

const char cli_usage[] =
    "usage: shoal-peer share PATH... [--tracker HOST[:PORT]]... [options]\n"
    "       shoal-peer get LINK|CONTENT-ID... [-o DIR] [--seed] [options]\n"
    "       shoal-peer search WORD... [--tracker HOST[:PORT]]... [--limit N]\n"
    "       shoal-peer id [--home DIR] [--json]\n"
    "       shoal-peer -h | -V\n"
    "\n"
    "Shares files and folders with other peers, and gets them, through a\n"
    "shoal tracker. One process serves what it holds and fetches what it\n"
    "lacks from many peers at once; every chunk is checked against the\n"
    "publisher's signed manifest.\n"
    "\n"
    "Options, and the commands they apply to (any other is an error):\n"
    "  -o, --output=DIR          get: where the content goes (.), made if\n"
    "                            missing\n"
    "      --seed                get: keep serving after it completes\n"
    "      --tracker=HOST[:PORT] share, get, search: a tracker (repeatable;\n"
    "                            port 7070 if left out; IPv6 as [ADDR])\n"
    "      --tracker-key=ID      share, get, search: the tracker's public key\n"
    "                            (else learned from its first signed reply)\n"
    "      --listen=ADDR:PORT    share, get: accept peers here ([::]:0, or\n"
    "                            0.0.0.0:0 without IPv6)\n"
    "      --max-peers=N         share, get: sessions per content, 1..256 "
    "(50)\n"
    "      --upload-rate=R       share, get: bytes a second, e.g. 500k, 10M\n"
    "                            (0: no limit)\n"
    "      --download-rate=R     get: the same for downloads\n"
    "      --mode=p2p|cs         share, get: swarm (p2p), or the client-"
    "server\n"
    "                            baseline: fetch from the publisher only,\n"
    "                            upload nothing\n"
    "      --interval-cap=S      share, get: announce at least every S "
    "seconds\n"
    "      --limit=N             search: results, 1..50 (20)\n"
    "      --home=DIR            all: keys and resume state\n"
    "                            ($XDG_DATA_HOME/shoal)\n"
    "      --log-level=LEVEL     all: error, warn, info or debug (warn)\n"
    "      --json                all: one JSON object per line on stdout\n"
    "  -q, --quiet               all: no progress and no warnings\n"
    "  -h, --help                this text\n"
    "  -V, --version             the version\n"
    "\n"
    "Options may come before or after the arguments; -- ends them.\n"
    "SHOAL_TRACKER (trackers separated by commas or spaces) stands for\n"
    "--tracker when none is given.\n";

/* Which commands an option applies to: one bit each. */
#define FOR_SHARE (1u << CLI_SHARE)
#define FOR_GET (1u << CLI_GET)
#define FOR_SEARCH (1u << CLI_SEARCH)
#define FOR_ID (1u << CLI_ID)
#define FOR_ALL (FOR_SHARE | FOR_GET | FOR_SEARCH | FOR_ID)

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
  OPT_INTERVAL_CAP,
  OPT_LIMIT,
  OPT_HOME,
  OPT_LOG_LEVEL,
  OPT_JSON,
};

static const struct opt_info {
  enum opt_code code;
  const char *name;
  int has_value;
  unsigned cmds;
} opt_table[] = {
    {OPT_OUTPUT, "output", 1, FOR_GET},
    {OPT_SEED, "seed", 0, FOR_GET},
    {OPT_TRACKER, "tracker", 1, FOR_SHARE | FOR_GET | FOR_SEARCH},
    {OPT_TRACKER_KEY, "tracker-key", 1, FOR_SHARE | FOR_GET | FOR_SEARCH},
    {OPT_LISTEN, "listen", 1, FOR_SHARE | FOR_GET},
    {OPT_MAX_PEERS, "max-peers", 1, FOR_SHARE | FOR_GET},
    {OPT_UPLOAD_RATE, "upload-rate", 1, FOR_SHARE | FOR_GET},
    {OPT_DOWNLOAD_RATE, "download-rate", 1, FOR_GET},
    {OPT_MODE, "mode", 1, FOR_SHARE | FOR_GET},
    {OPT_INTERVAL_CAP, "interval-cap", 1, FOR_SHARE | FOR_GET},
    {OPT_LIMIT, "limit", 1, FOR_SEARCH},
    {OPT_HOME, "home", 1, FOR_ALL},
    {OPT_LOG_LEVEL, "log-level", 1, FOR_ALL},
    {OPT_JSON, "json", 0, FOR_ALL},
    {OPT_QUIET, "quiet", 0, FOR_ALL},
    {OPT_HELP, "help", 0, FOR_ALL},
    {OPT_VERSION, "version", 0, FOR_ALL},
};
#define OPT_COUNT (sizeof(opt_table) / sizeof(opt_table[0]))
/* "-q" in getopt's terms; the leading '-' hands over the arguments in
 * order (so POSIXLY_CORRECT cannot stop at the first one) and ':' reports
 * a missing value apart from an unknown option. */
static const char short_opts[] = "-:ho:qV";

/* What the command line said, before it is checked. */
struct cmdline {
  const char *value[OPT_COUNT]; /* the last value of each option */
  int given[OPT_COUNT];
  const char *trackers[LINK_MAX_TRACKERS + 1]; /* every --tracker */
  unsigned ntrackers;
};

static const char *const cmd_names[] = {"", "share", "get", "search", "id"};

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

static int opt_index(int code) {
  for (size_t i = 0; i < OPT_COUNT; i++) {
    if ((int)opt_table[i].code == code) {
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
    cl->given[k] = 1;
    cl->value[k] = optarg;
    if (code == OPT_TRACKER) {
      if (cl->ntrackers == LINK_MAX_TRACKERS) {
        return fail_usage(c, "--tracker: at most %d trackers",
                          LINK_MAX_TRACKERS);
      }
      cl->trackers[cl->ntrackers++] = optarg;
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

/* Checks and takes every option's value. Returns 0 or SHOAL_EINVAL. */
static int take_options(struct cli *c, const struct cmdline *cl) {
  const char *v;
  uint64_t u;
  for (size_t i = 0; i < OPT_COUNT; i++) {
    if (cl->given[i] && (opt_table[i].cmds & (1u << c->cmd)) == 0) {
      char name[64];
      opt_name(&opt_table[i], name, sizeof(name));
      return fail_usage(c, "%s does not apply to %s", name, cmd_names[c->cmd]);
    }
  }
  c->json = opt_given(cl, OPT_JSON);
  c->quiet = opt_given(cl, OPT_QUIET);
  c->seed = opt_given(cl, OPT_SEED);
  if ((v = opt_value(cl, OPT_OUTPUT)) != NULL) {
    if (v[0] == '\0') {
      return fail_usage(c, "-o/--output needs a folder, not ''");
    }
    c->out_dir = v;
  }
  if ((v = opt_value(cl, OPT_LISTEN)) != NULL) {
    struct sockaddr_storage ss;
    if (node_parse_listen(v, &ss) != 0) {
      return fail_usage(c,
                        "--listen must be ADDR:PORT with an IPv4 or [IPv6] "
                        "address and a port 0-65535 (0: any), not '%s'",
                        v);
    }
    c->node.listen = v;
  }
  if ((v = opt_value(cl, OPT_HOME)) != NULL) {
    if (v[0] == '\0' || strlen(v) >= CLI_HOME_BYTES) {
      return fail_usage(c, "--home needs a folder path of at most %zu bytes",
                        (size_t)CLI_HOME_BYTES - 1);
    }
    c->home = v;
  }
  if ((v = opt_value(cl, OPT_MAX_PEERS)) != NULL) {
    if (fmt_parse_uint(v, 1, 256, &u) != 0) {
      return fail_usage(
          c, "--max-peers must be a number from 1 to 256, not '%s'", v);
    }
    c->node.max_peers = (unsigned)u;
  }
  if ((v = opt_value(cl, OPT_LIMIT)) != NULL) {
    if (fmt_parse_uint(v, 1, TMSG_MAX_RESULTS, &u) != 0) {
      return fail_usage(c, "--limit must be a number from 1 to %d, not '%s'",
                        TMSG_MAX_RESULTS, v);
    }
    c->limit = (unsigned)u;
  }
  if ((v = opt_value(cl, OPT_INTERVAL_CAP)) != NULL) {
    if (fmt_parse_uint(v, 0, 86400, &u) != 0) {
      return fail_usage(c,
                        "--interval-cap must be seconds from 0 to 86400, not "
                        "'%s'",
                        v);
    }
    c->node.interval_cap_s = (unsigned)u;
  }
  if ((v = opt_value(cl, OPT_UPLOAD_RATE)) != NULL) {
    if (fmt_parse_size(v, &u) != 0) {
      return fail_usage(c,
                        "--upload-rate must be bytes a second like 500k or "
                        "10M, not '%s'",
                        v);
    }
    c->node.upload_rate = u;
  }
  if ((v = opt_value(cl, OPT_DOWNLOAD_RATE)) != NULL) {
    if (fmt_parse_size(v, &u) != 0) {
      return fail_usage(c,
                        "--download-rate must be bytes a second like 500k or "
                        "10M, not '%s'",
                        v);
    }
    c->node.download_rate = u;
  }
  if ((v = opt_value(cl, OPT_MODE)) != NULL) {
    if (strcmp(v, "p2p") == 0) {
      c->node.mode = NODE_MODE_P2P;
    } else if (strcmp(v, "cs") == 0) {
      c->node.mode = NODE_MODE_CS;
    } else {
      return fail_usage(c, "--mode must be p2p or cs, not '%s'", v);
    }
  }
  if ((v = opt_value(cl, OPT_LOG_LEVEL)) != NULL) {
    int level = log_level_parse(v);
    if (level < 0) {
      return fail_usage(c,
                        "--log-level must be error, warn, info or debug, not "
                        "'%s'",
                        v);
    }
    c->log_level = (enum log_level)level;
  }
  if ((v = opt_value(cl, OPT_TRACKER_KEY)) != NULL) {
    if (textid_decode(TEXTID_KEY, v, strlen(v), c->tracker_key) != 0) {
      return fail_usage(c,
                        "--tracker-key '%s' is not a key ID (56 characters, "
                        "as the tracker prints on start)",
                        v);
    }
    c->have_key = 1;
  }
  for (unsigned i = 0; i < cl->ntrackers; i++) {
    const char *why = NULL;
    if (fmt_parse_tracker(cl->trackers[i], &c->trackers[c->ntrackers], &why) !=
        0) {
      return fail_usage(c, "--tracker '%s': %s", cl->trackers[i], why);
    }
    c->ntrackers++;
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
      if (!g->have_key) {
        memcpy(g->key, g->link.tracker_key, 32);
        g->have_key = 1;
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
     * variable's. A link carries its own and needs neither. */
    if (g->ntrackers == 0 && !env_read) {
      env_read = 1;
      err = env_trackers(c, env, &nenv);
      if (err != 0) {
        return err;
      }
    }
    if (g->ntrackers == 0) {
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
    return c->cmd == CLI_SEARCH ? take_words(c) : 0;
  case CLI_GET:
    if (c->nargs < 1) {
      return fail_usage(c, "get needs a LINK or CONTENT-ID (or several)");
    }
    return take_gets(c);
  case CLI_ID:
    if (c->nargs > 0) {
      return fail_usage(c, "id takes no arguments, not '%s'", c->args[0]);
    }
    return 0;
  case CLI_NONE:
  case CLI_HELP:
  case CLI_VERSION:
    break;
  }
  return 0;
}

int cli_parse(struct cli *c, int argc, char **argv) {
  struct cmdline cl;
  int npos = 0;
  int err;

  memset(c, 0, sizeof(*c));
  memset(&cl, 0, sizeof(cl));
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
    return fail_usage(c, "a command is needed: share, get, search or id");
  }
  if (strcmp(c->words[0], "share") == 0) {
    c->cmd = CLI_SHARE;
  } else if (strcmp(c->words[0], "get") == 0) {
    c->cmd = CLI_GET;
  } else if (strcmp(c->words[0], "search") == 0) {
    c->cmd = CLI_SEARCH;
  } else if (strcmp(c->words[0], "id") == 0) {
    c->cmd = CLI_ID;
  } else if (strcmp(c->words[0], "help") == 0) {
    c->cmd = CLI_HELP;
    return 0;
  } else {
    return fail_usage(c, "unknown command '%s' (share, get, search or id)",
                      c->words[0]);
  }
  c->args = c->words + 1;
  c->nargs = npos - 1;
  err = take_options(c, &cl);
  if (err == 0) {
    err = take_arguments(c);
  }
  return err;
}

void cli_close(struct cli *c) {
  free(c->gets);
  free(c->words);
  c->gets = NULL;
  c->ngets = 0;
  c->words = NULL;
  c->args = NULL;
  c->nargs = 0;
}
