# Thin wrapper over CMake + Ninja.  Every target that builds first makes sure
# the Debian packages it needs are installed (scripts/bootstrap).
#   make          build build/portico (optimised, with debug info)
#   make run      build, then start portico with the embedded defaults
#   make test     build under ASan+UBSan (build-test/) and run every test
#   make asan     only the ASan+UBSan build
#   make fuzz     build the libFuzzer targets with clang and run each briefly
#   make bench    compare portico with nginx, haproxy and caddy (bench/)
#   make format   clang-format the sources
BUILD      ?= build
TEST_BUILD ?= build-test
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
JOBS       ?= $(shell nproc)

.PHONY: all build run test asan fuzz bench format clean

all: build

build:
	@scripts/bootstrap build
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/bootstrap run
	./$(BUILD)/portico serve

asan:
	@scripts/bootstrap build
	@cmake -S . -B $(TEST_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPTC_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)

test:
	@scripts/bootstrap test
	@$(MAKE) --no-print-directory asan
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS) --output-junit junit.xml

fuzz:
	@scripts/bootstrap fuzz
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPTC_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for f in $(FUZZ_BUILD)/fuzz/fuzz_*; do \
	  name=$$(basename $$f); short=$${name#fuzz_}; \
	  dict=tests/fuzz/$$short.dict; extra=""; [ -f $$dict ] && extra="-dict=$$dict"; \
	  echo "== $$name ($(FUZZ_SECONDS) s)"; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$short; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$extra \
	      $(FUZZ_BUILD)/corpus/$$short tests/fuzz/corpus/$$short || exit 1; \
	done

bench: build
	@scripts/bootstrap bench
	bench/run.sh

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
