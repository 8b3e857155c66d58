# SPDX-License-Identifier: MIT
# Thin wrapper over CMake. The two commands a user needs: `make demo`, `make check`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build demo check check-asan bench bench-scale bench-gunicorn fuzz install uninstall deb rpm clean

all: build

deps:
	@packaging/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Only what the demo runs: batond, batonctl, the example app and the load generator.
DEMO_TARGETS = batond batonctl sdhttp loadgen

demo: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target $(DEMO_TARGETS)
	examples/demo.sh $(BUILD)

SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Both builds run to the end, then one line says what passed, failed and skipped in each.
check: deps
	cmake -S . -B $(BUILD) -DBATON_WERROR=ON $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	cmake -S . -B $(ASAN_BUILD) -DBATON_WERROR=ON -DBATON_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	@rc=0; \
	tests/ctest.sh $(BUILD) -j $(JOBS) || rc=1; \
	$(SAN_ENV) tests/ctest.sh $(ASAN_BUILD) -j $(JOBS) -LE nosan || rc=1; \
	echo "make check: $$([ $$rc = 0 ] && echo PASS || echo FAIL): gcc: $$(cat $(BUILD)/ctest.summary); ASan+UBSan: $$(cat $(ASAN_BUILD)/ctest.summary)"; \
	exit $$rc

check-asan:
	cmake -S . -B $(ASAN_BUILD) -DBATON_WERROR=ON -DBATON_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	$(SAN_ENV) tests/ctest.sh $(ASAN_BUILD) -j $(JOBS) -LE nosan

bench: deps build
	bench/run.sh $(BUILD)

# Live-connection handoff of 1,000, 10,000 and 100,000 connections (a few minutes):
# BENCH_SCALE_SIZES, BENCH_SCALE_ROUNDS; docs/benchmarks.md.
bench-scale: deps build
	bench/scale.sh $(BUILD)

# gunicorn upgraded under load, its own USR2 beside batond's with and without overlap
# (about a minute): the longest stall of each; docs/benchmarks.md.
bench-gunicorn: deps build
	bench/gunicorn.sh $(BUILD)

# Both libFuzzer targets (fuzz_proto, fuzz_config) side by side for FUZZ_SECONDS each,
# then one line each: how many inputs ran. Needs clang with libFuzzer.
FUZZ_SECONDS ?= 60
fuzz: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target fuzz_proto fuzz_config
	tests/fuzz/fuzz_all.sh $(BUILD) $(FUZZ_SECONDS)

# Configured again with PREFIX, so that the units name the installed batond,
# batonctl and config. DESTDIR (staging for packages) is honoured by cmake --install.
# batond.conf is installed only where there is none: an administrator's file is
# never replaced. Every option is in batond.conf.example beside it.
install: deps
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	cmake --install $(BUILD)

# Removes what `make install` installed ($(BUILD)/install_manifest.txt), under the
# same DESTDIR; batond.conf only while it is unedited.
uninstall:
	packaging/uninstall.sh $(BUILD)

# Debian and RPM packages from a scratch copy of the tree, into $(BUILD)/packages
# (packaging/build-deb.sh, packaging/build-rpm.sh).
deb:
	packaging/build-deb.sh $(BUILD)/packages

rpm:
	packaging/build-rpm.sh $(BUILD)/packages

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
