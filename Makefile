# shoal — top-level Makefile.
#
#   make            build the binaries (installs nothing: a missing library is
#                   named, and `make deps` installs it)
#   make check      unit and integration tests, two programs at a time
#   make deps       install missing Debian packages (runs apt-get only if needed)
#   make test       format check, unit + integration tests, again under
#                   ASan/UBSan, then fuzz smoke and the quick comparison
#   make fuzz       build the libFuzzer targets (clang)
#   make fuzz-smoke run every fuzz target for FUZZ_SECONDS from its seed corpus
#   make bench      build the benchmarks under build/bench/
#   make demo       see the README
#   make install    binaries, manual pages and systemd units (PREFIX, DESTDIR;
#                   docs/install.md); make uninstall removes exactly those
#   make clean      remove build/
#
# Objects live under $(BUILD) (build/ by default, build/asan/ for the
# sanitizer pass) so that the two configurations never share an object.

BUILD     ?= build
SANITIZE  ?=
CC        ?= cc
FUZZ_CC   ?= clang
FUZZ_SECONDS ?= 20

# libcrypto (OpenSSL) computes the chunk hash and the session cipher, the
# bulk path, where it is 1.7 and 2.3 times libsodium's speed on one core
# (docs/transfer.md); libsodium keeps identities, signatures and the key
# exchange.
PKGS      := libuv libsodium libcrypto
# The peer's daemon: libmicrohttpd serves its API and page (an HTTP server
# that runs on our loop, through one epoll descriptor), jansson reads and
# writes its JSON, libcurl is the command line's client for that API, and
# inih reads the config file.
PEER_PKGS := libmicrohttpd jansson libcurl inih
# The tracker's operator port (--metrics-listen): libmicrohttpd serves
# /metrics and /stats on the tracker's loop, jansson writes /stats; hiredis
# (with its libuv adapter) is the Redis store's client (--store).
TRACKER_PKGS := libmicrohttpd jansson hiredis
TEST_PKGS := cmocka

# Debian packages that provide what the build, the tests and the fuzzers need.
# Each line: a check command, then the packages that satisfy it.
DEB_PKGS  := build-essential pkg-config libuv1-dev libsodium-dev libcmocka-dev \
             clang libclang-rt-14-dev libmicrohttpd-dev libjansson-dev \
             libcurl4-openssl-dev libinih-dev prometheus libhiredis-dev \
             redis-server redis-sentinel libssl-dev

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(PEER_PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# What links the peer library: the peer binary, the tests and the benchmarks.
PEER_PKG_LIBS := $(shell pkg-config --libs $(PKGS) $(PEER_PKGS) 2>/dev/null)
# What links the tracker binary.
TRACKER_PKG_LIBS := $(shell pkg-config --libs $(PKGS) $(TRACKER_PKGS) 2>/dev/null)
# The tests and benchmarks link the tracker library (an in-process tracker
# among their helpers), whose Redis store needs hiredis.
HIREDIS_LIBS := $(shell pkg-config --libs hiredis 2>/dev/null)
# common/ uses libsodium and libcrypto (no libuv): its objects and the fuzz targets,
# which are common/ and nothing else, are built and linked without libuv.
COMMON_PKGS := libsodium libcrypto
COMMON_PKG_CFLAGS := $(shell pkg-config --cflags $(COMMON_PKGS) 2>/dev/null)
COMMON_PKG_LIBS   := $(shell pkg-config --libs $(COMMON_PKGS) 2>/dev/null)
TEST_CFLAGS_PKG := $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS_PKG   := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wformat=2 -Wvla -Wcast-qual -Wundef -Werror
CSTD := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L
OPT  ?= -O2 -g

ifeq ($(SANITIZE),1)
  OPT += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
         -fno-sanitize-recover=undefined
  SANLD := -fsanitize=address,undefined
endif

CFLAGS_ALL  = $(CSTD) $(OPT) $(WARN) -I. $(PKG_CFLAGS) -MMD -MP $(CFLAGS)
CFLAGS_COMMON = $(CSTD) $(OPT) $(WARN) -I. $(COMMON_PKG_CFLAGS) -MMD -MP $(CFLAGS)
LDFLAGS_ALL = $(SANLD) $(LDFLAGS)

COMMON_SRC := $(sort $(wildcard common/*.c))
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
COMMON_LIB := $(BUILD)/lib/libshoal-common.a

TRACKER_SRC := $(sort $(wildcard tracker/*.c))
PEER_SRC    := $(sort $(wildcard peer/*.c))
# Everything but main.c goes into a library the unit tests link as well.
TRACKER_LIB := $(BUILD)/lib/libshoal-tracker.a
TRACKER_LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out tracker/main.c,$(TRACKER_SRC)))
PEER_LIB    := $(BUILD)/lib/libshoal-peer.a
PEER_LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out peer/main.c,$(PEER_SRC)))
# The daemon's web page, compiled in from a generated C file (its rules are
# in "The daemon's web page" below).
WEB_PAGE_OBJ := $(BUILD)/obj/gen/peer/web_page.o
PEER_LIB_OBJ += $(WEB_PAGE_OBJ)

BINS :=
LIBS := $(COMMON_LIB)
ifneq ($(wildcard tracker/main.c),)
  BINS += $(BUILD)/bin/shoal-tracker
endif
ifneq ($(TRACKER_LIB_OBJ),)
  LIBS := $(TRACKER_LIB) $(LIBS)
endif
ifneq ($(wildcard peer/main.c),)
  BINS += $(BUILD)/bin/shoal-peer
endif
ifneq ($(PEER_LIB_OBJ),)
  LIBS := $(PEER_LIB) $(LIBS)
endif

UNIT_SRC   := $(sort $(wildcard tests/test_*.c))
UNIT_BINS  := $(UNIT_SRC:tests/%.c=$(BUILD)/tests/%)
TESTLIB_SRC := $(sort $(wildcard tests/lib/*.c))
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/obj/%.o)
# Integration tests: cmocka programs that run the real binaries.
INTEG_SRC  := $(sort $(wildcard tests/it_*.c))
INTEG_BINS := $(INTEG_SRC:tests/%.c=$(BUILD)/tests/%)

BENCH_SRC  := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.SECONDARY:

.PHONY: all deps need-libs need-test-libs build tests test check unit \
        integration sanitize fuzz fuzz-smoke bench demo clean format format-check \
        install uninstall run-install

all: need-libs
	@$(MAKE) --no-print-directory build

# `make` never installs anything: a missing library stops it here with the
# package to install, and `make deps` installs everything the project uses.
# (make demo and make test run deps themselves.)
need-libs:
	@missing=""; \
	for p in "libuv libuv1-dev" "libsodium libsodium-dev" "libcrypto libssl-dev" \
	         "libmicrohttpd libmicrohttpd-dev" "jansson libjansson-dev" \
	         "libcurl libcurl4-openssl-dev" "inih libinih-dev" \
	         "hiredis libhiredis-dev" $(NEED_EXTRA); do \
	  set -- $$p; pkg-config --exists $$1 2>/dev/null || missing="$$missing $$2"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: missing Debian packages:$$missing -- install them, or run 'make deps'" >&2; \
	  exit 1; \
	fi

need-test-libs:
	@$(MAKE) --no-print-directory need-libs NEED_EXTRA='"cmocka libcmocka-dev"'

build: $(LIBS) $(BINS)

# ---------------------------------------------------------------------------
# Dependencies. Nothing happens when every library and tool is present; on a
# fresh Debian 12 machine the missing packages are installed (through sudo
# when not root). The check is pkg-config for libraries and `command -v` /
# a file test for tools. prometheus is there for promtool, which checks the
# tracker's /metrics in tests/it_metrics.c; Debian's package also installs
# a prometheus service, which may start on a machine that runs systemd:
# nothing here uses it.
deps:
	@missing=""; \
	command -v cc >/dev/null 2>&1 || missing="$$missing build-essential"; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	pkg-config --exists libuv 2>/dev/null || missing="$$missing libuv1-dev"; \
	pkg-config --exists libsodium 2>/dev/null || missing="$$missing libsodium-dev"; \
	pkg-config --exists libcrypto 2>/dev/null || missing="$$missing libssl-dev"; \
	pkg-config --exists cmocka 2>/dev/null || missing="$$missing libcmocka-dev"; \
	pkg-config --exists libmicrohttpd 2>/dev/null || missing="$$missing libmicrohttpd-dev"; \
	pkg-config --exists jansson 2>/dev/null || missing="$$missing libjansson-dev"; \
	pkg-config --exists libcurl 2>/dev/null || missing="$$missing libcurl4-openssl-dev"; \
	pkg-config --exists inih 2>/dev/null || missing="$$missing libinih-dev"; \
	pkg-config --exists hiredis 2>/dev/null || missing="$$missing libhiredis-dev"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null 2>&1 || missing="$$missing redis-sentinel"; \
	command -v clang >/dev/null 2>&1 || missing="$$missing clang"; \
	command -v clang-format >/dev/null 2>&1 || missing="$$missing clang-format"; \
	ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || \
	  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1 || \
	  missing="$$missing libclang-rt-14-dev"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v tc >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v gnuplot >/dev/null 2>&1 || missing="$$missing gnuplot-nox"; \
	command -v lighttpd >/dev/null 2>&1 || missing="$$missing lighttpd"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	missing=$$(printf '%s\n' $$missing | sort -u | tr '\n' ' '); \
	if [ -n "$${missing% }" ]; then \
	  echo "deps: installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing \
	    || { echo "deps: apt-get failed; install by hand:$$missing" >&2; exit 1; }; \
	fi

# ---------------------------------------------------------------------------
# Objects and libraries.
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/obj/common/%.o: common/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -c -o $@ $<

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(TRACKER_LIB): $(TRACKER_LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(PEER_LIB): $(PEER_LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/shoal-tracker: $(BUILD)/obj/tracker/main.o $(TRACKER_LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TRACKER_PKG_LIBS) -lm

$(BUILD)/bin/shoal-peer: $(BUILD)/obj/peer/main.o $(PEER_LIB) $(COMMON_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PEER_PKG_LIBS) -lm

# Unit tests: one cmocka program per module, linked with the small shared
# test helpers in tests/lib/.
$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS_PKG) -c -o $@ $<

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TESTLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TEST_LIBS_PKG) $(PEER_PKG_LIBS) $(HIREDIS_LIBS) -lm

# bench/lib/ holds what the benchmark programs share; cryptorate.c (the
# primitives' rates) is bench/transfer's alone.
BENCHLIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,\
                  $(filter-out bench/lib/cryptorate.c bench/lib/sim%.c,\
                    $(wildcard bench/lib/*.c)))
# The swarm simulator's own objects (bench/lib/sim*.c): bench/swarmsim and
# its unit test link them with the peer library, whose pure policy modules
# (picker, choker, haves, pacing, rate) they drive.
SIMLIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard bench/lib/sim*.c))

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BENCHLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PEER_PKG_LIBS) $(HIREDIS_LIBS) -lm

$(BUILD)/bench/swarmsim: $(BUILD)/obj/bench/swarmsim.o $(SIMLIB_OBJ) \
                        $(BENCHLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PEER_PKG_LIBS) -lm

$(BUILD)/tests/test_swarmsim: $(BUILD)/obj/tests/test_swarmsim.o $(SIMLIB_OBJ) \
                              $(TESTLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TEST_LIBS_PKG) $(PEER_PKG_LIBS) \
	  $(HIREDIS_LIBS) -lm

# The fluid model (bench/lib/fluid.c) is pure arithmetic: its unit test
# links it alone.
$(BUILD)/tests/test_fluidmodel: $(BUILD)/obj/tests/test_fluidmodel.o \
                                $(BUILD)/obj/bench/lib/fluid.o $(TESTLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TEST_LIBS_PKG) $(PEER_PKG_LIBS) \
	  $(HIREDIS_LIBS) -lm

# bench/transfer times OpenSSL's primitives beside libsodium's.
$(BUILD)/obj/bench/lib/cryptorate.o: CFLAGS += -DSHOAL_BENCH_LIBCRYPTO=1

# The benchmarks' flag reading has a unit test of its own.
$(BUILD)/tests/test_benchutil: $(BENCHLIB_OBJ)
$(BUILD)/bench/transfer: $(BUILD)/obj/bench/transfer.o \
                         $(BUILD)/obj/bench/lib/cryptorate.o \
                         $(BENCHLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PEER_PKG_LIBS) -lm

# bench/pacing drives the real binaries with the integration tests' helpers
# for processes, the tracker, the peer wire and a fake peer (none of them
# uses cmocka).
BENCH_TESTLIB := $(patsubst %,$(BUILD)/obj/tests/lib/%.o,fake jsonl pclient \
                   proc tclient testutil)
$(BUILD)/bench/pacing: $(BUILD)/obj/bench/pacing.o $(BENCH_TESTLIB) \
                       $(BENCHLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PEER_PKG_LIBS) $(HIREDIS_LIBS) -lm

# bench/tracker-load starts the tracker and a redis-server with the
# integration tests' helpers for processes and Redis.
$(BUILD)/bench/tracker-load: $(BUILD)/obj/bench/tracker-load.o \
                             $(patsubst %,$(BUILD)/obj/tests/lib/%.o,jsonl proc redis testutil) \
                             $(BENCHLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PEER_PKG_LIBS) $(HIREDIS_LIBS) -lm

# bench/daemon runs the tracker and the daemon with the same helpers, and
# drives the daemon's API with libcurl and jansson (in PEER_PKG_LIBS).
$(BUILD)/bench/daemon: $(BUILD)/obj/bench/daemon.o $(BENCH_TESTLIB) \
                       $(BENCHLIB_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PEER_PKG_LIBS) -lm

# ---------------------------------------------------------------------------
# Tests.
test: deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory browser-deps BUILD=build
	@$(MAKE) --no-print-directory browser-deps BUILD=build/asan
	@$(MAKE) --no-print-directory -j2 tests BUILD=build
	@$(MAKE) --no-print-directory check BUILD=build
	@$(MAKE) --no-print-directory -j2 tests BUILD=build/asan SANITIZE=1
	@$(MAKE) --no-print-directory check BUILD=build/asan SANITIZE=1
	@$(MAKE) --no-print-directory -j2 fuzz
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory compare-quick
	@echo "make test: all passed"

# Every test program is a target of its own (run-NAME), so that two run at
# a time on two cores; -O keeps each program's output together, and -k
# runs them all before the failures are counted. The integration programs
# come first, the longest (it_peer) leading, so that the short unit
# programs fill in beside them.
RUN_INTEG := $(patsubst $(BUILD)/tests/%,run-%,$(filter %/it_peer,$(INTEG_BINS)) \
               $(filter-out %/it_peer,$(INTEG_BINS)))
RUN_UNIT  := $(UNIT_BINS:$(BUILD)/tests/%=run-%)
CHECK_JOBS ?= 2

check: need-test-libs browser-deps
	@$(MAKE) --no-print-directory -j2 tests
	@$(MAKE) --no-print-directory -j$(CHECK_JOBS) -O -k $(RUN_INTEG) $(RUN_UNIT) \
	  || { echo "tests FAILED ($(BUILD)): the '[  FAILED  ]' lines above say which"; exit 1; }

# The same, one group at a time.
unit: need-test-libs
	@$(MAKE) --no-print-directory -j2 $(UNIT_BINS)
	@$(MAKE) --no-print-directory -j$(CHECK_JOBS) -O -k $(RUN_UNIT)

integration: need-test-libs browser-deps
	@$(MAKE) --no-print-directory -j2 build $(INTEG_BINS)
	@$(MAKE) --no-print-directory -j$(CHECK_JOBS) -O -k $(RUN_INTEG)

run-test_%: $(BUILD)/tests/test_%
	@echo "== $<"; SHOAL_TEST_VECTORS=tests/vectors ./$<

run-it_%: $(BUILD)/tests/it_% build
	@echo "== $<"; SHOAL_BIN=$(BUILD)/bin ./$<

# Everything the tests run, built (in parallel with -j) before any runs.
tests: build $(UNIT_BINS) $(INTEG_BINS)

# ---------------------------------------------------------------------------
# Fuzzing (clang + libFuzzer). The common sources are compiled straight into
# each target with coverage instrumentation, and linked with libsodium only.
FUZZ_FLAGS := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -O1 -g \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -Wall -Wextra -Werror -I. $(COMMON_PKG_CFLAGS)

fuzz: need-libs
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || \
	  { echo "make: $(FUZZ_CC) is missing -- run 'make deps'" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

build/fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(wildcard common/*.h) \
              tests/fuzz/fuzz.h tests/lib/bytes.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(COMMON_SRC) $(COMMON_PKG_LIBS)

fuzz-smoke: fuzz
	@for f in $(FUZZ_BINS); do \
	  name=$$(basename $$f); seeds=tests/fuzz/corpus/$${name#fuzz_}; \
	  work=$$(mktemp -d); cp $$seeds/* $$work/ 2>/dev/null; \
	  echo "== $$name ($(FUZZ_SECONDS) s)"; \
	  ./$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	      -artifact_prefix=$$work/ $$work >$$work.log 2>&1; rc=$$?; \
	  tail -n 1 $$work.log; \
	  if [ $$rc != 0 ]; then cat $$work.log | tail -n 40; \
	     echo "fuzz-smoke: $$name FAILED; crash input left in $$work"; exit 1; fi; \
	  rm -rf $$work $$work.log; \
	done

# ---------------------------------------------------------------------------
bench: need-libs
	@$(MAKE) --no-print-directory $(BENCH_BINS)

demo: deps
	@$(MAKE) --no-print-directory build
	@SHOAL_BIN=$(BUILD)/bin bash tests/demo.sh

FORMAT_SRC = common/*.[ch] tracker/*.[ch] peer/*.[ch] tests/*.c tests/lib/*.[ch] \
             bench/*.c bench/lib/*.[ch] tests/fuzz/*.[ch]

format:
	clang-format -i $(FORMAT_SRC)

# Fails, naming each file and line, when a source differs from what
# .clang-format makes of it; `make format` fixes that.
format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRC) || \
	  { echo "format-check: run 'make format'" >&2; exit 1; }

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------------------
# Client-server vs peer-to-peer study (bench/compare.sh, docs/comparison.md).
# Needs root for network namespaces and tc; COMPARE_FLAGS=--loopback runs it
# on 127.0.0.1 with shoal's own rate limits instead. Tools: iproute2,
# gnuplot, curl, lighttpd (or busybox httpd); the script names what is missing.
COMPARE_FLAGS ?=

.PHONY: compare compare-quick

compare: build
	bash bench/compare.sh --bin $(BUILD)/bin --out $(BUILD)/compare $(COMPARE_FLAGS)
	$(COMPARE_LARGE) --n 32 --peer-up 5mbit --systems p2p --reps 3 \
	  --out $(BUILD)/compare/n32
	$(COMPARE_LARGE) --n 64 --peer-up 2500kbit --systems p2p --reps 3 \
	  --out $(BUILD)/compare/n64
	$(COMPARE_LARGE) --n "32 64" --peer-up 5mbit --systems "cs http" --reps 1 \
	  --size 16M --out $(BUILD)/compare/n32-64-servers
	$(COMPARE_TRACKER_STOP) --n 8 --reps 3 --out $(BUILD)/compare/tracker-stop

# N = 32 and 64 (issue 18; docs/comparison.md, "32 and 64 downloaders").
# Lower upload caps than the study's 10 Mbit/s, so that the machine's two
# CPUs carry fewer frames a second: shoal p2p, three repetitions of
# 64 MiB, at 5 Mbit/s for N = 32 ($(BUILD)/compare/n32) and 2.5 Mbit/s
# for N = 64 ($(BUILD)/compare/n64), where 5 Mbit/s keeps the machine
# 63% busy (89% under bbr) and the run 2% behind the simulator; the server
# systems, whose bound grows as N (14 minutes a run at
# N = 64 with 64 MiB), one repetition of 16 MiB in
# $(BUILD)/compare/n32-64-servers. About 30 minutes on top of the study's.
# Each run's cpu.csv says whether the machine was the bottleneck.
COMPARE_LARGE = bash bench/compare.sh --bin $(BUILD)/bin $(COMPARE_FLAGS)

# The tracker is killed once the downloaders hold half the bytes (shoal p2p
# only; docs/comparison.md, "The tracker stops"). `make compare` runs it at
# N = 8 after the main study, three repetitions, results in
# $(BUILD)/compare/tracker-stop; `make compare-quick` at N = 4 with 8 MiB.
COMPARE_TRACKER_STOP = bash bench/compare.sh --systems p2p --tracker-stop 0.5 \
  --bin $(BUILD)/bin $(COMPARE_FLAGS)

# N = 1 and 4, 8 MiB, one repetition, all three systems; checks that every
# copy is identical, that shoal p2p beats shoal cs at N = 4 and that the CSV
# and plots are written. Then shoal p2p at N = 4 with the tracker killed
# halfway (about 5 s more): every copy identical, the tracker stopped
# before the end. Then 64 curls opening their connections to one HTTP server
# in the same instant, behind an origin capped at 10 Mbit/s (256 KiB each,
# about 15 s): every one must complete (bench/compare.sh, set_refused_tries;
# with the kernel's default 16, 1 and 6 of the 64 were reset in three runs).
# Skipped (status 0) when namespaces cannot be made.
compare-quick: build
	bash bench/compare.sh --n "1 4" --size 8M --reps 1 --systems "p2p cs http" \
	  --bin $(BUILD)/bin --out $(BUILD)/compare-quick --check $(COMPARE_FLAGS)
	$(COMPARE_TRACKER_STOP) --n 4 --size 8M --reps 1 \
	  --out $(BUILD)/compare-quick/tracker-stop --check
	$(COMPARE_LARGE) --n 64 --size 256K --origin-up 10mbit --peer-up 5mbit \
	  --reps 1 --systems http --out $(BUILD)/compare-quick/n64-http --check

# ---------------------------------------------------------------------------
# The tracker's load curve (docs/tracker.md, "Load curve"): bench/tracker-load
# --curve for one tracker on memory, one on Redis and two over one Redis, to
# saturation, then bench/tracker-curve.gp. Data, the plot and the load
# average at the start go to $(BUILD)/tracker-curve. Keeps both cores busy
# for several minutes: run it alone. TRACKER_CURVE_FLAGS adds flags, e.g.
# --curve-rates "1000 5000 10000" --seconds 5.
TRACKER_CURVE_FLAGS ?=

.PHONY: tracker-curve

tracker-curve: need-libs
	@$(MAKE) --no-print-directory $(BUILD)/bench/tracker-load $(BUILD)/bin/shoal-tracker
	@mkdir -p $(BUILD)/tracker-curve
	@load=$$(cut -d' ' -f1-3 /proc/loadavg); echo "load average at the start: $$load"; \
	  echo "$$load" > $(BUILD)/tracker-curve/loadavg; \
	  $(BUILD)/bench/tracker-load --curve --tracker $(BUILD)/bin/shoal-tracker \
	    --curve-out $(BUILD)/tracker-curve $(TRACKER_CURVE_FLAGS) && \
	  gnuplot -e "dir='$(BUILD)/tracker-curve'; out='$(BUILD)/tracker-curve/tracker-curve.png'; subtitle='$$(nproc) cores shared by the bench, the trackers and Redis; load average $$load at the start'" \
	    bench/tracker-curve.gp

# ---------------------------------------------------------------------------
# The daemon's web page (peer/web/index.html) and its browser test.
#
# The page is compiled into the peer library as web_page_html[] and
# web_page_html_len (peer/web_page.h): od and awk, which every Debian has
# (xxd comes with vim, which may not be installed), turn it into a C array,
# with a NUL after the last byte that the length does not count.
WEB_PAGE_HTML := peer/web/index.html
WEB_PAGE_C    := $(BUILD)/gen/peer/web_page.c

$(WEB_PAGE_C): $(WEB_PAGE_HTML)
	@mkdir -p $(@D)
	@{ printf '/* Generated from %s by the Makefile: do not edit. */\n' $<; \
	   printf '#include "peer/web_page.h"\n\n'; \
	   printf 'const unsigned char web_page_html[] = {\n'; \
	   od -An -v -tu1 $< | awk '{ for (i = 1; i <= NF; i++) printf "%s,", $$i; \
	                              printf "\n" }'; \
	   printf '0};\n\nconst size_t web_page_html_len = %s;\n' "$$(wc -c < $<)"; \
	 } > $@.tmp && mv $@.tmp $@
	@echo "  GEN     $@"

$(WEB_PAGE_OBJ): $(WEB_PAGE_C)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# The browser test (tests/it_browser.c runs tests/browser/page_test.mjs)
# needs puppeteer-core, installed from the committed lock into
# $(BUILD)/browser/node_modules; it drives the Debian chromium, so nothing
# downloads a browser. npm runs only when node_modules is missing or the
# lock changed (the stamp is a copy of the installed lock inside
# node_modules). Without npm the test skips, so `check` goes on with a note.
BROWSER_DIR   := $(BUILD)/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.shoal-lock.json

.PHONY: browser-deps
browser-deps:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "browser-deps: npm is missing ('make deps' installs it): the browser test will skip"; \
	elif ! cmp -s tests/browser/package-lock.json $(BROWSER_STAMP); then \
	  echo "browser-deps: npm ci --prefix $(BROWSER_DIR)"; \
	  mkdir -p $(BROWSER_DIR) && \
	  cp tests/browser/package.json tests/browser/package-lock.json $(BROWSER_DIR)/ && \
	  npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund --loglevel=error && \
	  cp tests/browser/package-lock.json $(BROWSER_STAMP); \
	fi

# ---------------------------------------------------------------------------
# Installing (docs/install.md).
#
#   make install    [PREFIX=/usr/local] [DESTDIR=] [BINDIR=...] [MANDIR=...]
#                   [SYSTEMD_SYSTEM_UNITDIR=...] [SYSTEMD_USER_UNITDIR=...]
#   make uninstall  the same variables: removes exactly what install put there
#
# install builds first when something is out of date (it depends on `build`,
# so a parallel make never builds the same object twice), then copies the
# two binaries, their man pages, the tracker's system unit and the peer's
# user unit. The units are made from dist/systemd/*.service.in by sed, with
# @BINDIR@ replaced by BINDIR, so that ExecStart= names the installed
# binary; DESTDIR is prepended to where files go, never to what they name.
# Folders are made when missing and left in place by uninstall: they are
# shared with other software.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSTEMD_SYSTEM_UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSTEMD_USER_UNITDIR   ?= $(PREFIX)/lib/systemd/user
INSTALL ?= install

INSTALL_BINS  := shoal-tracker shoal-peer
INSTALL_MAN1  := docs/shoal-tracker.1 docs/shoal-peer.1
UNIT_TRACKER  := shoal-tracker.service
UNIT_PEER     := shoal-peer.service
UNIT_BUILD    := $(BUILD)/dist/systemd

install: build
	@case "$(BINDIR)" in /*) ;; \
	  *) echo "make install: BINDIR must be an absolute path (it is '$(BINDIR)')" >&2; \
	     exit 1 ;; esac
	@mkdir -p $(UNIT_BUILD)
	sed -e 's|@BINDIR@|$(BINDIR)|g' dist/systemd/$(UNIT_TRACKER).in \
	  >$(UNIT_BUILD)/$(UNIT_TRACKER)
	sed -e 's|@BINDIR@|$(BINDIR)|g' dist/systemd/$(UNIT_PEER).in \
	  >$(UNIT_BUILD)/$(UNIT_PEER)
	$(INSTALL) -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" \
	  "$(DESTDIR)$(SYSTEMD_SYSTEM_UNITDIR)" "$(DESTDIR)$(SYSTEMD_USER_UNITDIR)"
	$(INSTALL) -m 0755 $(addprefix $(BUILD)/bin/,$(INSTALL_BINS)) "$(DESTDIR)$(BINDIR)"
	$(INSTALL) -m 0644 $(INSTALL_MAN1) "$(DESTDIR)$(MANDIR)/man1"
	$(INSTALL) -m 0644 $(UNIT_BUILD)/$(UNIT_TRACKER) "$(DESTDIR)$(SYSTEMD_SYSTEM_UNITDIR)"
	$(INSTALL) -m 0644 $(UNIT_BUILD)/$(UNIT_PEER) "$(DESTDIR)$(SYSTEMD_USER_UNITDIR)"

uninstall:
	rm -f $(addprefix "$(DESTDIR)$(BINDIR)"/,$(INSTALL_BINS))
	rm -f $(addprefix "$(DESTDIR)$(MANDIR)/man1"/,$(notdir $(INSTALL_MAN1)))
	rm -f "$(DESTDIR)$(SYSTEMD_SYSTEM_UNITDIR)/$(UNIT_TRACKER)"
	rm -f "$(DESTDIR)$(SYSTEMD_USER_UNITDIR)/$(UNIT_PEER)"

# tests/install.sh installs into a temporary DESTDIR from the binaries
# already built under $(BUILD), checks every file, the units (with
# systemd-analyze where it exists) and the man pages, then uninstalls. It
# runs with the integration tests in `make check` and `make integration`.
RUN_INTEG += run-install

run-install: build
	@echo "== tests/install.sh"; \
	  BUILD=$(BUILD) SANITIZE=$(SANITIZE) bash tests/install.sh
