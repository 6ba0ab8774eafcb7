# Thin wrapper around CMake. `make` builds build/deepseek; `make run` and `make test`
# first install any missing Debian packages (scripts/install-deps.sh), then build.
JOBS      ?= $(shell nproc)
BUILD     ?= build
ASAN      ?= build-asan
FUZZ      ?= build-fuzz
FUZZ_SECS ?= 60
DEMO      ?= models/demo-tiny.gguf
CTEST_ARGS ?= --output-on-failure

.PHONY: all build deps run test unit integration asan asan-test fuzz fuzz-smoke bench clean demo

all: build

deps:
	@sh scripts/install-deps.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@ln -sf $(BUILD)/compile_commands.json compile_commands.json

# The demo model: random weights of the `tiny` shape with the built-in vocabulary.
$(DEMO): | build
	@mkdir -p models
	$(BUILD)/deepseek mkmodel --arch qwen2 --shape tiny --type f32 --seed 1 -o $(DEMO)

demo: build $(DEMO)

run: deps build $(DEMO)
	@sh scripts/run-demo.sh $(BUILD)/deepseek $(DEMO)

asan:
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DDS_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN) -j $(JOBS)

asan-test: asan
	@cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest -L unit -j $(JOBS) $(CTEST_ARGS)

fuzz:
	@CC=clang cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDS_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ) -j $(JOBS)

# Runs every fuzz target for FUZZ_SECS seconds on a copy of its seed corpus.
fuzz-smoke: fuzz
	@sh scripts/fuzz-smoke.sh $(FUZZ) $(FUZZ_SECS)

unit: build
	@cd $(BUILD) && ctest -L unit -j $(JOBS) $(CTEST_ARGS)

integration: build
	@cd $(BUILD) && ctest -L integration $(CTEST_ARGS)

# The whole suite: unit tests under ASan+UBSan, the fuzz smoke run, then every test
# (unit, then integration) on the release build; ends with CTest's summary line.
test: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory asan-test
	@$(MAKE) --no-print-directory fuzz-smoke
	@cd $(BUILD) && ctest -j $(JOBS) $(CTEST_ARGS)

bench: build
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ) compile_commands.json
