# The project's entry points. Every target installs what is missing first, so
# a fresh Debian machine with Swift needs nothing else:
#   make demo    the main job (a ping-pong between two agents)
#   make test    the whole test suite (the model checks first; make docs too)
#   make model   model-check the ring and wake-up protocol with spin (model/ring.pml)
#   make fuzz    libFuzzer on every fuzz target for FUZZ_SECONDS each (default 300;
#                docs/SECURITY.md, "Fuzzing")
#   make build   a debug build
#   make docs    the SecureChannel library's documentation (DocC) as a static site in
#                .build/docs (DOCS_OUTPUT=DIR for another); any DocC warning, such as
#                a broken symbol link, fails it (scripts/docs.sh; part of make test)
#   make bench   chanctl bench, written into docs/BENCHMARKS.md (see there)
#   make mutate  weakens each security check in turn; its tests must fail
#                (docs/SECURITY.md, "Mutation testing"; not part of make test)
#   make sanitize  the SecureChannel, SimPlatform and SimDaemon suites under
#                the address and the thread sanitizer (SANITIZERS="address" or
#                "thread" for one; docs/SECURITY.md, "Sanitizers"; not part of make test)
#   make install  the tools (release builds), their manual pages, shell completions
#                and the C interface under $(DESTDIR)$(PREFIX) (default /usr/local);
#                make uninstall removes them; make install-check tries both in a
#                scratch DESTDIR (part of make test)
#   make install-lib  the C interface alone: securechannel.h, libsecurechannel.so and .a,
#                securechannel.pc under $(DESTDIR)$(PREFIX) (docs/C-API.md)
#   make bench-c-abi  the C ping beside guest-agent ping, p50 in one run
#                (docs/BENCHMARKS.md, "The C interface")

SHELL := /bin/bash
# Swift lives in /opt/swift on the project's machines; use it when PATH lacks it.
export PATH := $(PATH):/opt/swift/usr/bin

APT_PACKAGES := libsodium-dev libxen-dev pkg-config spin gcc
SWIFT ?= swift
RELEASE_FLAGS := -c release -Xswiftc -enforce-exclusivity=unchecked

FUZZ_SECONDS ?= 300
# What make test gives each fuzz target: enough to fail on a regression
# that the corpus reaches quickly, short enough for every CI run.
TEST_FUZZ_SECONDS ?= 20

.PHONY: setup build release docs test model fuzz mutate sanitize bench bench-quick bench-components bench-crypto bench-channel demo clean

setup:
	@./scripts/setup.sh

build: setup
	$(SWIFT) build

release: setup
	$(SWIFT) build $(RELEASE_FLAGS)

# The documentation of the SecureChannel library: its doc comments and the
# catalog Sources/SecureChannel/SecureChannel.docc, built by swift-docc-plugin
# into a static site; scripts/docs.sh says how to browse it.
docs: setup
	SWIFT="$(SWIFT)" DOCS_OUTPUT="$(DOCS_OUTPUT)" ./scripts/docs.sh

# Serial: several suites spin two threads per test (like the vCPUs they stand
# for), and on a two-core machine parallel suites would starve each other.
test: setup
	./scripts/model.sh
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --no-parallel
	./scripts/install-check.sh
	SWIFT="$(SWIFT)" ./scripts/docs.sh
	FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) ./scripts/fuzz.sh

# Coverage-guided fuzzing with the address sanitizer: each target of
# Fuzz/Targets for FUZZ_SECONDS; a crash or broken oracle fails the run and
# is kept in .build-fuzz/crashes/ (docs/SECURITY.md, "Fuzzing").
fuzz: setup
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

# Each mutation of scripts/mutations.toml in a scratch copy (.build-mutate/,
# never the working tree), with its tests under a time limit; fails unless
# every one is killed by a named test failure. MUTATE_ARGS="--markdown
# docs/SECURITY.md" records the table, "--only NAME" picks mutations.
mutate: setup
	python3 scripts/mutate.py $(MUTATE_ARGS)

# Three suites under AddressSanitizer and ThreadSanitizer, each built in a
# scratch path of its own (.build-asan, .build-tsan); any test failure or
# sanitizer report fails the run (docs/SECURITY.md, "Sanitizers").
SANITIZERS ?= address thread
sanitize: setup
	SANITIZERS="$(SANITIZERS)" ./scripts/sanitize.sh

# The ring and wake-up protocol, model-checked exhaustively for small bounds
# (about half a minute on two cores); see docs/PROTOCOL.md.
model: setup
	./scripts/model.sh

# The published benchmark: SecureChannel beside C baselines in one run, two
# processes on two cores; tables and plot go into docs/BENCHMARKS.md.
bench: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product chanctl
	mkdir -p docs/bench
	.build/release/chanctl bench --json docs/bench/results.json --markdown docs/BENCHMARKS.md --plot docs/bench/latency.svg

# The same in under three minutes, written to .build/ only.
bench-quick: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product chanctl
	.build/release/chanctl bench --quick --json .build/bench-quick.json --plot .build/bench-quick.svg

# Component micro-benchmarks (crypto wrapper, in-process channel, allocations).
bench-components: bench-crypto bench-channel

bench-crypto: setup
	./scripts/bench-crypto.sh

bench-channel: setup
	./scripts/bench-channel.sh

demo: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product chanctl
	$(SWIFT) build $(RELEASE_FLAGS) --product guest-agent
	.build/release/chanctl pingpong

# The C interface (docs/C-API.md): a release build of libsecurechannel.so
# and its static archive, installed with securechannel.h and securechannel.pc
# under $(DESTDIR)$(PREFIX). The end-to-end tests install the debug build
# the same way (scripts/install-lib.sh) into a temporary DESTDIR.
PREFIX ?= /usr/local
.PHONY: install-lib bench-c-abi
install-lib: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product securechannel
	$(SWIFT) build $(RELEASE_FLAGS) --product securechannel-static
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" ./scripts/install-lib.sh .build/release

# The tools and everything a system needs to run them, under
# $(DESTDIR)$(PREFIX): release builds of chanctl and guest-agent in bin/,
# their manual pages (swift-argument-parser's generate-manual, from the
# binaries' help) in share/man/man1, bash, zsh and fish completions in
# their shells' standard places, and the C interface (install-lib).
# make uninstall removes all of it; make install-check (part of make test)
# installs into a scratch DESTDIR, checks every file and uninstalls.
.PHONY: install uninstall install-check
install: install-lib
	$(SWIFT) build $(RELEASE_FLAGS) --product chanctl
	$(SWIFT) build $(RELEASE_FLAGS) --product guest-agent
	$(SWIFT) build $(RELEASE_FLAGS) --product generate-manual
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" ./scripts/install.sh install .build/release

uninstall:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" ./scripts/install.sh uninstall
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" ./scripts/install-lib.sh --uninstall

install-check: setup
	./scripts/install-check.sh

# sc_ping (examples/c, against the installed library) and guest-agent ping
# against one guest-agent run echo, alternating, both modes, release builds.
bench-c-abi: setup
	python3 scripts/bench-c-abi.py $(BENCH_C_ABI_ARGS)

clean:
	rm -rf .build
