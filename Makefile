# cowscope: one Makefile drives everything. See README.md.
#
#   make            build userspace, BPF and the module for the VM kernels
#                   built on this host (6.1, 6.12; see KMOD_KERNELS)
#   make demo       the guided tour of fork and copy-on-write (does set-up)
#   make test       every suite: unit, Python, host eBPF, in-VM on every lab
#                   kernel (6.1, 6.12, 7.3: the 7.3 module needs a Debian 13
#                   build root, made once on first need)
#   make bench      host benchmarks          make vm-bench   in-VM benchmarks
#   make fuzz       every libFuzzer target (tests/fuzz/) for FUZZ_SECONDS
#                   each (default 60); make fuzz-short: the few-second runs
#                   `make test` does
#   make vm         interactive lab shell    make vm-test    in-VM test suite
#   make vm-run CMD="..."                    make load / make unload (native)
#   make grade      the lab course (lab/): build each exercise, check it in
#                   the VM lab, print PASS/FAIL per exercise and score: N/M
#                   (EX=3 or EX=1,3 for some; SOLUTIONS=1 grades the reference
#                   solutions, the patches in lab/solutions/)
#   make results    the reference experiments into results/<date>-<host>/
#   make crosscheck four independent COW counts side by side (VM=1 adds the module's)
#   make deb        the Debian packages into build/deb/ (cowscope, cowscope-dkms)
#   make install PREFIX=/usr/local [DESTDIR=...]   the packages' files, without packages
#   make pkg-test   install the packages in a pristine Debian 12 root and check them
#
# KERNEL=6.1|6.12|7.3|6.12-debug picks the VM kernel (default 6.12); the
# kernels are the table in scripts/lib.sh (6.12-debug: 6.12 with KASAN and
# lockdep, built from source once, on first use: tens of minutes).
# BUILD=DIR puts every build output in DIR (default build/; every script
# takes it). V=1 for full commands.

SHELL := /bin/bash
.DELETE_ON_ERROR:
.DEFAULT_GOAL := all

BUILD   ?= build
export BUILD
KERNEL  ?= 6.12
# Every lab kernel (the table in scripts/lib.sh) ...
KERNELS ?= $(shell bash -c '. scripts/lib.sh && echo $$COWSCOPE_KERNELS')
# ... and those whose module `make` builds: the ones built on this host
# (no foreign build root to prepare), so `make` and `make demo` never wait
# for one. `make kmod` builds them all; a VM target builds its own.
KMOD_KERNELS ?= $(shell bash -c '. scripts/lib.sh && for k in $$COWSCOPE_KERNELS; do [ "$$(kernel_root $$k)" = host ] && echo $$k; done')
PYTHON  := /usr/bin/python3
JOBS    ?= $(shell nproc)
Q       := $(if $(V),,@)
export COWSCOPE_ROOT := $(CURDIR)
MAKEFLAGS += --no-print-directory

# Set-up in two steps, each run once per build folder (and again when
# scripts/setup changes): the packages (with the headers the modules built
# on the host need), all that `make` needs; and the VM kernel images, for
# what boots the lab. `make setup` forces a full check.
SETUP_STAMP   := $(BUILD)/.setup-packages
KERNELS_STAMP := $(BUILD)/.setup-kernels

.PHONY: all setup userspace kmod kmod-host kmod-one test unit-test host-test python-test vm-test \
	vm-test-all vm vm-run bench vm-bench demo results crosscheck load unload clean distclean \
	deb install pkg-test grade fuzz fuzz-build fuzz-short

all: userspace kmod-host

$(SETUP_STAMP): scripts/setup scripts/lib.sh
	$(Q)scripts/setup --packages
	$(Q)mkdir -p $(BUILD) && touch $@

$(KERNELS_STAMP): scripts/setup scripts/lib.sh
	$(Q)scripts/setup --kernels
	$(Q)mkdir -p $(BUILD) && touch $@

setup:
	$(Q)scripts/setup
	$(Q)mkdir -p $(BUILD) && touch $(SETUP_STAMP) $(KERNELS_STAMP)

# ccache (scripts/setup installs it) keeps compiled objects across build
# folders and clones: paths are taken relative to the source tree, so a
# fresh clone (CI's) reuses what an earlier one compiled (NOHASHDIR: the
# build folder is not hashed either, so the debug information of a cached
# object may name the folder it was first built in). CCACHE_DISABLE=1 turns
# it off.
CCACHE := $(shell command -v ccache 2>/dev/null)
ifneq ($(CCACHE),)
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
CCACHE_FLAGS := -DCMAKE_C_COMPILER_LAUNCHER=$(CCACHE) -DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE)
endif

$(BUILD)/CMakeCache.txt: $(SETUP_STAMP) CMakeLists.txt
	$(Q)cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DPython3_EXECUTABLE=$(PYTHON) $(CCACHE_FLAGS) $(COWSCOPE_CMAKE_FLAGS) >/dev/null

userspace: $(BUILD)/CMakeCache.txt
	$(Q)cmake --build $(BUILD) -j $(JOBS) $(if $(V),-- VERBOSE=1)

# The module, once per VM kernel, in $(BUILD)/kmod/<kernel>/cowscope.ko.
kmod: $(SETUP_STAMP)
	$(Q)for k in $(KERNELS); do scripts/build-kmod $$k || exit 1; done

kmod-host: $(SETUP_STAMP)
	$(Q)for k in $(KMOD_KERNELS); do scripts/build-kmod $$k || exit 1; done

# The module of the one kernel a VM target boots.
kmod-one: $(SETUP_STAMP)
	$(Q)scripts/build-kmod $(KERNEL)

unit-test: userspace
	$(Q)cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

# Host eBPF tests (root; they skip with the reason where BPF is unavailable).
host-test: userspace
	$(Q)cd $(BUILD) && ctest --output-on-failure -L bpf --no-tests=ignore

python-test: userspace
	$(Q)if [ -d tests/python ]; then \
		PYTHONPATH=$(abspath $(BUILD))/python $(PYTHON) -m pytest -q -W error -p no:cacheprovider tests/python; fi

vm-test: all kmod-one $(KERNELS_STAMP)
	$(Q)scripts/vm --kernel $(KERNEL) test

vm-test-all: all kmod $(KERNELS_STAMP)
	$(Q)for k in $(KERNELS); do scripts/vm --kernel $$k test || exit $$?; done

# run-tests runs unit-test, host-test and python-test through make, and
# builds each kernel's module as a suite of its own (timed; a debug tier's
# kernel is built there on first need).
test: all $(KERNELS_STAMP)
	$(Q)scripts/run-tests $(if $(filter command line environment,$(origin KERNELS)),$(KERNELS))

vm: all kmod-one $(KERNELS_STAMP)
	$(Q)scripts/vm --kernel $(KERNEL) shell

vm-run: all kmod-one $(KERNELS_STAMP)
	$(Q)scripts/vm --kernel $(KERNEL) run "$(CMD)"

# The lab course: exit 0 only with full marks (scripts/grade).
grade: all kmod-one $(KERNELS_STAMP)
	$(Q)scripts/grade --kernel $(KERNEL) $(if $(EX),--ex $(EX)) $(if $(filter 1 yes,$(SOLUTIONS)),--solutions)

# The libFuzzer targets, in a build folder of their own ($(BUILD)/fuzz:
# clang, ASan, UBSan, cowcore instrumented; the main build is gcc and
# static). tests/fuzz/run runs them; new inputs go to $(BUILD)/fuzz/corpus,
# crashes to $(BUILD)/fuzz/crashes.
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
$(FUZZ_BUILD)/CMakeCache.txt: $(SETUP_STAMP) CMakeLists.txt
	$(Q)cmake -S . -B $(FUZZ_BUILD) -DCOWSCOPE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DCMAKE_C_FLAGS_DEBUG="-g -O1" \
		-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ $(CCACHE_FLAGS) $(COWSCOPE_CMAKE_FLAGS) >/dev/null

fuzz-build: $(FUZZ_BUILD)/CMakeCache.txt
	$(Q)cmake --build $(FUZZ_BUILD) -j $(JOBS) $(if $(V),-- VERBOSE=1)

fuzz: fuzz-build
	$(Q)tests/fuzz/run --seconds $(FUZZ_SECONDS)

fuzz-short: fuzz-build
	$(Q)tests/fuzz/run --short

bench: all
	$(Q)scripts/bench

vm-bench: all kmod-one $(KERNELS_STAMP)
	$(Q)scripts/vm --kernel $(KERNEL) bench

demo: all $(KERNELS_STAMP)
	$(Q)scripts/demo $(if $(NATIVE),--native)

results: all $(KERNELS_STAMP)
	$(Q)scripts/sweep

crosscheck: all $(if $(VM),$(KERNELS_STAMP))
	$(Q)scripts/crosscheck $(if $(VM),--vm)

deb: $(SETUP_STAMP)
	$(Q)JOBS=$(JOBS) scripts/make-deb

# The same files as the packages (userspace/install/CMakeLists.txt).
PREFIX ?= /usr/local
install: $(BUILD)/CMakeCache.txt
	$(Q)cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(Q)cmake --build $(BUILD) -j $(JOBS)
	$(Q)DESTDIR=$(DESTDIR) cmake --install $(BUILD) $(if $(V),,>/dev/null)
	$(Q)echo "cowscope: installed into $(DESTDIR)$(PREFIX); the module's source is in $(PREFIX)/src/cowscope-$$(cat VERSION):" \
		"dkms add $(PREFIX)/src/cowscope-$$(cat VERSION) && dkms install cowscope/$$(cat VERSION) builds it (then modprobe cowscope)"

pkg-test: deb
	$(Q)tests/pkg/test_packages.sh

# Native module load for a machine whose running kernel allows modules.
load: $(SETUP_STAMP)
	$(Q)$(MAKE) -C kmod KDIR=/lib/modules/$$(uname -r)/build
	$(Q)insmod kmod/cowscope.ko && echo "cowscope: loaded; see /proc/cowscope"

unload:
	$(Q)rmmod cowscope

clean:
	$(Q)rm -rf $(BUILD)/bin $(BUILD)/kmod $(BUILD)/vm
	$(Q)if [ -f $(BUILD)/Makefile ]; then cmake --build $(BUILD) --target clean; fi
	$(Q)if [ -f kmod/Makefile ]; then $(MAKE) -s -C kmod clean >/dev/null 2>&1 || true; fi

distclean:
	$(Q)rm -rf $(BUILD)
