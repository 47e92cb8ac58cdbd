# sift: the two commands that matter are `make run` and `make check`.
# Both install what is missing first (scripts/install-deps.sh is idempotent).

SHELL   := /bin/bash
JOBS    ?= $(shell nproc)
RELEASE := build/release
ASAN    := build/asan
SIFT    := $(RELEASE)/sift
PORT    ?= 8080
DATA    ?= data/sift.db

.PHONY: all deps build asan run check test test-asan bench fmt lint clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(RELEASE) -j $(JOBS)

# The sanitizer build uses clang so the libFuzzer targets build in it too.
asan: deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
		-DSIFT_SANITIZE=ON -DSIFT_FUZZ=ON >/dev/null
	@cmake --build $(ASAN) -j $(JOBS)

run: build
	@scripts/run.sh $(SIFT) $(PORT) $(DATA)

test: build
	cd $(RELEASE) && ctest --output-on-failure -j $(JOBS)

test-asan: asan
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

check: test test-asan lint

bench: build
	@scripts/bench.sh $(RELEASE)

SOURCES = $(shell find include src tests bench -name '*.[ch]' -not -path '*/node_modules/*' 2>/dev/null)

fmt:
	clang-format -i $(SOURCES)

lint: build
	@echo "lint: clang-format"
	@clang-format --dry-run --Werror $(SOURCES)
	@echo "lint: clang-tidy (warnings are errors)"
	@find src -name '*.c' | sort | xargs -P $(JOBS) -n 4 \
		clang-tidy -p $(RELEASE) --quiet 2>&1 | grep -v -E '^[0-9]+ warnings? generated' ; \
		test $${PIPESTATUS[2]:-0} -eq 0 || { echo "lint: clang-tidy found problems"; exit 1; }

clean:
	rm -rf build
