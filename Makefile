# kiln — the README's commands. Everything a target needs is installed here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BUILD       ?= build
BUILD_ABS   := $(abspath $(BUILD))
CARGO       ?= cargo
TRIPLE      := x86_64-unknown-linux-gnu
STATIC_BIN  := target/$(TRIPLE)/release/searchd
MOTO_VENV   := $(BUILD_ABS)/moto-venv
MOTO_VERSION := 5.2.5
# rsyslog, rsyslog-gnutls, openssl: bake's log tests check the forwarder an
# image gets with the real rsyslogd and send through it over TLS on loopback.
APT_PACKAGES := wrk hyperfine zstd curl haproxy prometheus jq python3-yaml shellcheck rsyslog rsyslog-gnutls openssl
# The workflow checkers (PyPI wheels) in a virtualenv under the build directory.
CI_VENV     := $(BUILD_ABS)/ci-venv
CHECK_JSONSCHEMA_VERSION := 0.39.0
ZIZMOR_VERSION := 1.32.0

# Paths handed to tests and scripts.
export KILN_STATIC_SEARCHD := $(abspath $(STATIC_BIN))
export KILN_MOTO_SERVER    := $(MOTO_VENV)/bin/moto_server
export CARGO_TERM_COLOR    ?= never

.PHONY: help build static test test-unit test-aws test-ops test-workflows test-ci deps-ci lint demo bench fuzz deps deps-apt deps-moto deps-nextest clean

help:
	@echo "make demo      build, index the books, bake the searchd image locally, serve and query it"
	@echo "make test      install test dependencies, then run every test (incl. moto-backed AWS tests)"
	@echo "make test-aws  only the moto-backed AWS tests"
	@echo "make test-ops  Prometheus config, alert rules and their unit tests, the Grafana dashboard (ops/)"
	@echo "make test-workflows  the GitHub workflows (schema, zizmor) and every shell script (shellcheck)"
	@echo "make test-ci   ci/release, ci/rebake, ci/rollback end to end (local fleets), the bake half on moto"
	@echo "make bench     side-by-side benchmarks, printed as ratios"
	@echo "make static    fully static x86_64 searchd -> $(STATIC_BIN)"
	@echo "make lint      rustfmt --check and clippy -D warnings"
	@echo "make fuzz      run the fuzz targets for a bounded time"

build:
	$(CARGO) build --release --workspace

# A fully static searchd (glibc, crt-static). The explicit --target keeps its
# build apart from the host build, so RUSTFLAGS do not invalidate it.
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p searchd --target $(TRIPLE)
	@file $(STATIC_BIN) 2>/dev/null || true

# Debian packages: installed when root and missing (CI and fresh machines).
deps-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing" >&2; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >&2; \
	  else echo "missing Debian packages:$$missing (run as root or install them)" >&2; exit 1; fi; \
	fi

# moto in a virtualenv under the build directory.
deps-moto: $(MOTO_VENV)/.installed
$(MOTO_VENV)/.installed:
	python3 -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/pip install -q --disable-pip-version-check "moto[server]==$(MOTO_VERSION)"
	touch $@

deps-nextest:
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

# check-jsonschema (GitHub's workflow schema ships in the wheel) and zizmor.
deps-ci: $(CI_VENV)/.installed
$(CI_VENV)/.installed:
	python3 -m venv $(CI_VENV)
	$(CI_VENV)/bin/pip install -q --disable-pip-version-check "check-jsonschema==$(CHECK_JSONSCHEMA_VERSION)" "zizmor==$(ZIZMOR_VERSION)"
	touch $@

deps: deps-apt deps-moto deps-nextest deps-ci

test: deps static test-ops test-workflows
	$(CARGO) nextest run --workspace --no-fail-fast
	$(MAKE) --no-print-directory test-ci

# .github/workflows against GitHub's schema and zizmor's audits (offline: no
# findings allowed), and shellcheck on every shell script. images/install.sh
# runs without SC2015: its bytes are part of every image's digest.
SHELL_SCRIPTS = $(shell find . \( -path ./target -o -path ./build -o -path ./.git -o -path ./fuzz/target \) -prune \
	-o -type f \( -name '*.sh' -o -path './ci/*' -o -path ./.ci/run \) ! -path ./images/install.sh -print | sort)
test-workflows: deps-ci deps-apt
	$(CI_VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(CI_VENV)/bin/zizmor --offline --no-progress .github/workflows/
	shellcheck -x $(SHELL_SCRIPTS)
	shellcheck -e SC2015 images/install.sh

# ci/test.sh: the ci/ scripts end to end on local fleets and on moto (with
# motokit's moto-builder playing the bake builders; bounded, a few minutes),
# with the debug bake and roll `test` builds anyway.
test-ci: deps-apt deps-moto static
	$(CARGO) build -q -p bake -p roll -p motokit
	KILN_BAKE=$(abspath target/debug/bake) KILN_ROLL=$(abspath target/debug/roll) \
		KILN_MOTO_BUILDER=$(abspath target/debug/moto-builder) bash ci/test.sh

# ops/: promtool check config/rules, promtool test rules, dashboard names (seconds).
test-ops: deps-apt
	bash ops/check.sh

test-aws: deps static
	$(CARGO) nextest run --workspace --no-fail-fast -E 'test(/moto/) | binary(/aws/)'

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p searchd --no-default-features --lib -- -D warnings

demo: deps-apt static
	bash scripts/demo.sh

bench: deps static
	bash bench/run.sh

fuzz:
	bash fuzz/run.sh

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
