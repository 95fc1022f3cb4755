# The two commands of the README, plus benchmarks. Every target installs what it needs first.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
CLANGXX ?= $(shell command -v clang++-14 || command -v clang++)
RELEASE_DIR ?= build/release
CHECK_DIR ?= build/check
GCC_DIR ?= build/gcc
TSAN_DIR ?= build/tsan
BENCH_DIR ?= build/bench
# The peer benchmark harness directory (asyncio, uvloop and the other peers); override it on the
# command line.
SHARED_BENCH ?= $(abspath ../shared/bench)

.PHONY: setup tour check check-gcc check-tsan bench clean fuzz-http

setup:
	@./scripts/setup.sh

# Release build with g++, then every example in order under the heading of what it mirrors.
tour: setup
	cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=Release -DAWITH_BUILD_TESTS=OFF
	cmake --build $(RELEASE_DIR) -j$(JOBS)
	./scripts/tour.sh $(RELEASE_DIR)

# ASan+UBSan build with clang (g++ 12 turns symmetric transfer into a tail call only with
# sibling-call optimisation on and ASan's stack instrumentation off; clang 14 always does), then
# the whole CTest suite.
check: setup
	cmake -S . -B $(CHECK_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=$(CLANGXX) \
	  -DAWITH_SANITIZE=address,undefined -DAWITH_INSTALL_TEST=ON
	cmake --build $(CHECK_DIR) -j$(JOBS)
	cd $(CHECK_DIR) && ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j$(JOBS)

# The same suite built by g++ 12 at -O2 with ASan (heap) + UBSan: the second compiler CI keeps
# green, and g++'s coroutine code generation differs enough to deserve its own sanitizer run.
check-gcc: setup
	cmake -S . -B $(GCC_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=g++ \
	  -DAWITH_SANITIZE=address,undefined
	cmake --build $(GCC_DIR) -j$(JOBS)
	cd $(GCC_DIR) && ctest --output-on-failure -j$(JOBS)

# ThreadSanitizer over every test that crosses threads: the CTest label `threads` (tests/CMakeLists.txt
# says which tests carry it), with the fixtures those tests need.
check-tsan: setup
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=$(CLANGXX) \
	  -DAWITH_SANITIZE=thread -DAWITH_BUILD_EXAMPLES=OFF
	cmake --build $(TSAN_DIR) -j$(JOBS)
	cd $(TSAN_DIR) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest -L threads --output-on-failure -j$(JOBS)

# Benchmarks side by side with the peers in the harness directory given by SHARED_BENCH (skipped
# with a note when absent).
bench: setup
	cmake -S . -B $(BENCH_DIR) -DCMAKE_BUILD_TYPE=Release -DAWITH_BUILD_TESTS=OFF -DAWITH_BUILD_BENCH=ON
	cmake --build $(BENCH_DIR) -j$(JOBS)
	SHARED_BENCH=$(SHARED_BENCH) ./scripts/bench.sh $(BENCH_DIR)

# The HTTP response parser's fuzzer (clang, libFuzzer + ASan) for FUZZ_SECONDS; make check runs it
# for 20 s. The corpus it grows stays in $(FUZZ_DIR)/tests/fuzz-corpus.
FUZZ_DIR ?= build/fuzz
FUZZ_SECONDS ?= 600
fuzz-http: setup
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=$(CLANGXX) -DAWITH_BUILD_EXAMPLES=OFF
	cmake --build $(FUZZ_DIR) -j$(JOBS) --target fuzz_response_parser
	cd $(FUZZ_DIR)/tests && mkdir -p fuzz-corpus && ./fuzz_response_parser -max_total_time=$(FUZZ_SECONDS) \
	  -max_len=4096 -timeout=5 -print_final_stats=1 fuzz-corpus $(CURDIR)/tests/fuzz/corpus

clean:
	rm -rf build
