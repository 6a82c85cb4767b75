/* Integration test: the daemon's web page, driven in a real browser.
 *
 * A tracker, a seeder of a 4 MiB file and `shoal-peer daemon` with its API
 * on 127.0.0.1 run as in the other integration tests (tests/lib/fx.h).
 * The daemon prints, with --json, an "api" event holding the page's address
 * with its token; tests/browser/page_test.mjs opens that address in headless
 * Chromium (through puppeteer-core), pastes the seeder's link and a folder
 * into the page's form, and waits until the content's row shows 100% and
 * "seeding", with no error logged by the page. This program then checks
 * that the copy in that folder is the seeded file, byte for byte.
 *
 * The test needs /usr/bin/chromium, node, and puppeteer-core in
 * BUILD/browser/node_modules (BUILD is the parent of $SHOAL_BIN; `make
 * browser-deps` installs it, and `make test` runs that). When one is
 * missing the test is skipped, saying which.
 */
/* cmocka needs these four first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/fx.h"
#include "tests/lib/jsonl.h"
#include "tests/lib/proc.h"

#define BROWSER_CHROMIUM "/usr/bin/chromium"
#define BROWSER_SCRIPT "tests/browser/page_test.mjs"
/* page_test.mjs gives the download FX_COMPLETE_MS from its submission
 * (its TIMEOUT_MS); the rest covers starting the browser (30 s at most),
 * its other steps (15 s each at most) and the screenshot. */
#define BROWSER_RUN_MS (FX_COMPLETE_MS + 90000)
/* A stopped page_test.mjs closes its browser within this. */
#define BROWSER_STOP_MS 10000
#define BROWSER_FILE_BYTES (4 * FX_MiB)

/* What the browser test runs with. */
struct browser_tools {
  char node[PROC_PATH_MAX];          /* node's path */
  char build[PROC_PATH_MAX];         /* the build folder, absolute */
  char node_modules[PROC_PATH_MAX];  /* BUILD/browser/node_modules */
  char missing[PROC_PATH_MAX + 128]; /* why the test skips, when it does */
};

/* Finds name in $PATH; 1 and its path in out, or 0. */
static int find_in_path(const char *name, char *out, size_t cap) {
  const char *path = getenv("PATH");
  if (path == NULL) {
    return 0;
  }
  while (*path != '\0') {
    const char *end = strchr(path, ':');
    size_t len = end != NULL ? (size_t)(end - path) : strlen(path);
    if (len > 0 &&
        snprintf(out, cap, "%.*s/%s", (int)len, path, name) < (int)cap &&
        access(out, X_OK) == 0) {
      return 1;
    }
    path += len;
    if (*path == ':') {
      path++;
    }
  }
  return 0;
}

/* Fills t; 1 when everything the test needs is there, else 0 with
 * t->missing saying what is not. */
static int browser_tools_find(struct browser_tools *t) {
  const char *bin = getenv("SHOAL_BIN");
  char bin_dir[PROC_PATH_MAX], probe[PROC_PATH_MAX + 64];
  memset(t, 0, sizeof(*t));
  if (access(BROWSER_CHROMIUM, X_OK) != 0) {
    snprintf(t->missing, sizeof(t->missing),
             "%s is missing ('make deps' installs chromium)", BROWSER_CHROMIUM);
    return 0;
  }
  if (!find_in_path("node", t->node, sizeof(t->node))) {
    snprintf(t->missing, sizeof(t->missing),
             "node is not in PATH ('make deps' installs nodejs)");
    return 0;
  }
  /* The build folder is $SHOAL_BIN's parent (build/bin -> build). */
  snprintf(bin_dir, sizeof(bin_dir), "%s",
           bin != NULL && bin[0] ? bin : "build/bin");
  if (realpath(bin_dir, t->build) == NULL) {
    snprintf(t->missing, sizeof(t->missing),
             "the binaries' folder %s is missing", bin_dir);
    return 0;
  }
  char *slash = strrchr(t->build, '/');
  if (slash != NULL && slash != t->build) {
    *slash = '\0';
  }
  if (snprintf(t->node_modules, sizeof(t->node_modules),
               "%s/browser/node_modules",
               t->build) >= (int)sizeof(t->node_modules) ||
      snprintf(probe, sizeof(probe), "%s/puppeteer-core/package.json",
               t->node_modules) >= (int)sizeof(probe)) {
    snprintf(t->missing, sizeof(t->missing),
             "the build folder's path is too long");
    return 0;
  }
  if (access(probe, R_OK) != 0) {
    snprintf(t->missing, sizeof(t->missing),
             "puppeteer-core is not in %s ('make browser-deps' installs it)",
             t->node_modules);
    return 0;
  }
  return 1;
}

/* Teardown: a page_test.mjs still running is asked to stop, so that it
 * closes its browser before the fixture kills what it started. */
static void browser_stop_hook(void *arg) {
  struct proc *p = arg;
  if (p->pid != 0 && !p->reaped) {
    proc_signal(p, SIGTERM);
    if (proc_wait(p, BROWSER_STOP_MS) < 0) {
      proc_kill(p);
    }
  }
}

/* Starts `node page_test.mjs` with env (NULL-ended pairs of name and value)
 * added to this program's environment for the child only. The fixture
 * kills it at teardown, after browser_stop_hook. */
static struct proc *browser_start(struct fx *f, const struct browser_tools *t,
                                  const char *const *env) {
  const char *argv[] = {t->node, BROWSER_SCRIPT, NULL};
  assert_true(f->nprocs < FX_MAX_PROCS);
  for (int i = 0; env[i] != NULL; i += 2) {
    assert_int_equal(setenv(env[i], env[i + 1], 1), 0);
  }
  struct proc *p = &f->procs[f->nprocs];
  int rc = proc_start(p, f->dir, "browser", argv);
  for (int i = 0; env[i] != NULL; i += 2) {
    unsetenv(env[i]);
  }
  assert_int_equal(rc, 0);
  f->json[f->nprocs] = 0;
  f->nprocs++;
  fx_on_teardown(f, browser_stop_hook, p);
  return p;
}

static void page_downloads_a_link_into_an_identical_copy(void **state) {
  struct fx *f = *state;
  struct browser_tools tools;
  struct fx_shared sh;
  uint8_t *data = NULL;
  char line[FX_LINE_CAP], page[1024], out[PROC_PATH_MAX];
  char shot[PROC_PATH_MAX + 32], timeout[32];

  if (access(BROWSER_SCRIPT, R_OK) != 0) {
    fail_msg("%s is missing: run the test from the top of the tree",
             BROWSER_SCRIPT);
  }
  if (!browser_tools_find(&tools)) {
    print_message("it_browser: skipped: %s\n", tools.missing);
    fx_finish(f);
    skip();
  }

  fx_start_tracker(f);
  fx_mkdir(f, "src");
  struct proc *seed =
      fx_share_file(f, "src/page.bin", BROWSER_FILE_BYTES, 15, &data, &sh);
  struct proc *daemon = fx_peer(f, "daemon", "d", "daemon", "--api-listen",
                                "127.0.0.1:0", "--tracker", f->tracker_addr,
                                "--tracker-key", f->tracker_key, NULL);
  fx_wait_event(daemon, "api", NULL, NULL, FX_START_MS, line);
  if (jsonl_str(line, "page", page, sizeof(page)) != 0) {
    fail_msg("the daemon's api event has no \"page\": %s", line);
  }
  if (strncmp(page, "http://127.0.0.1:", 17) != 0 ||
      strstr(page, "/#token=") == NULL) {
    fail_msg("the page's address is not http://127.0.0.1:PORT/#token=TOKEN: "
             "%s",
             page);
  }

  fx_path(f, out, sizeof(out), "out");
  snprintf(shot, sizeof(shot), "%s/browser/page.png", tools.build);
  snprintf(timeout, sizeof(timeout), "%u", (unsigned)FX_COMPLETE_MS);
  const char *env[] = {
      "PAGE_URL",   page,    "LINK",     sh.link,          "OUT_DIR",
      out,          "SHOT",  shot,       "NODE_PATH",      tools.node_modules,
      "TIMEOUT_MS", timeout, "CHROMIUM", BROWSER_CHROMIUM, NULL};
  struct proc *browser = browser_start(f, &tools, env);
  int rc = proc_wait(browser, BROWSER_RUN_MS);
  if (rc != 0) {
    proc_dump(browser);
    if (rc < 0) {
      fail_msg("page_test.mjs did not finish in %d ms", BROWSER_RUN_MS);
    }
    fail_msg("page_test.mjs failed (status %d): its stderr above says why", rc);
  }
  /* Its last line says what the page showed. */
  line[0] = '\0';
  proc_each_line(browser, 0, fx_keep_line, line);
  if (!jsonl_valid(line) || strstr(line, "\"ok\":true") == NULL) {
    fail_msg("page_test.mjs exited 0 but reported: %s", line);
  }
  print_message("it_browser: the page showed %s\n", line);
  print_message("it_browser: screenshot in %s\n", shot);

  fx_assert_copy(f, "out", "page.bin", data, BROWSER_FILE_BYTES);
  fx_stop_peer(daemon, NULL);
  fx_stop_peer(seed, NULL);
  free(data);
  fx_finish(f);
}

int main(void) {
  if (fx_main_init("it_browser") != 0) {
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          page_downloads_a_link_into_an_identical_copy, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
