# The README's commands. `sudo make run` runs Portcullis on this machine; `make test` runs
# every test; `make demo` runs it all inside throwaway network namespaces.

CARGO        ?= cargo
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
RELEASE_BIN  := $(TARGET_DIR)/release
DEBUG_BIN    := $(TARGET_DIR)/debug
SUDO         := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all deps build build-debug frontend run deb test demo bench bench-app fuzz lint fmt clean intel-data

all: build

deps:
	$(SUDO) scripts/install-deps

build:
	$(CARGO) build --release --workspace --bins

build-debug:
	$(CARGO) build --workspace --bins

# The desktop app's UI (frontend/dist), which browser mode serves.
frontend:
	cd frontend && npm run --silent build

# Installs what is missing, builds, and runs the helper in the foreground on this machine with
# the app as the user who ran sudo: its window where a display is, else browser mode.
run: deps build frontend intel-data
	scripts/run-local "$(RELEASE_BIN)"

# The Debian packages portcullis-helper and portcullis, in $(TARGET_DIR)/debian
# (scripts/build-debs; `sudo make deps` first on a fresh machine).
deb:
	scripts/build-debs

# Every test. Lab tests need root: run as root (CI does); outside CI they are skipped with a
# message when not root.
test: build-debug intel-data
	scripts/run-tests

demo: deps build-debug frontend intel-data
	$(SUDO) scripts/demo "$(DEBUG_BIN)"

# The enforcement benchmarks, full run (root, ~6 min): prints the tables and updates
# docs/performance.md. `sudo scripts/bench --quick` is the short profile CI runs.
bench: build
	$(SUDO) scripts/install-deps --bench
	$(SUDO) scripts/bench --full --no-build

# The desktop app's benchmark (root, ~4 min; tests/bench/src/appbench.rs): cold start to first
# paint, memory, idle CPU while hidden and the Monitor's frame rate with 10,000 live rows, in a
# lab with the real helper on a private Xvfb display. Prints the tables; docs/performance.md
# keeps the latest ones. `pcl-appbench --quick` is a short smoke run (tests/tests/appbench_smoke.rs
# runs it in `make test`, checking only that it completes).
bench-app: frontend
	$(SUDO) scripts/install-deps --bench
	$(CARGO) build --release -p portcullis -p portcullis-daemon -p portcullis-ctl \
		-p portcullis-lab -p portcullis-bench --bins
	$(SUDO) $(RELEASE_BIN)/pcl-appbench

# The shipped filter lists and geo-IP/ASN data (data/intel/SOURCES, pinned and hash-checked)
# into data/intel/dist/; downloads only what is missing.
intel-data:
	scripts/fetch-intel-data

# Fuzzes the decoders (IPC frames, rule text, setting text); FUZZ_SECONDS per target.
fuzz:
	scripts/fuzz

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
