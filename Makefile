# nsbuild: the `nsbuild` executable and lua/nsbuild/core.so, built from the same objects.
SHELL := /bin/bash

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/nsbuild
CC ?= cc
CFLAGS ?= -O2 -g
BUSTED ?= lua5.4 /usr/bin/busted

PKGS := lua5.4 libcap libarchive libseccomp libcrypto zlib libzstd libedit
WARNINGS := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
	-Wpointer-arith -Wwrite-strings -Wformat=2 -Wundef -Wvla -Wcast-qual \
	-Werror=implicit-function-declaration -Werror=format-security

# Recursive (=) so that pkg-config runs only after `deps` has installed it.
NSB_CFLAGS = -std=gnu11 -fPIC -D_GNU_SOURCE $(WARNINGS) $(CFLAGS) $(shell pkg-config --cflags $(PKGS))
NSB_LIBS = $(shell pkg-config --libs libcap libarchive libseccomp libcrypto zlib libzstd libedit)
LUA_LIBS = $(shell pkg-config --libs lua5.4)

MODULE_SRCS := $(filter-out core/main.c,$(wildcard core/*.c))
MODULE_OBJS := $(MODULE_SRCS:core/%.c=build/%.o)
OBJS := $(MODULE_OBJS) build/main.o

.PHONY: all deps demo test test-core bench install clean
all: nsbuild lua/nsbuild/core.so lua/nsbuild/core_doc.lua

deps:
	@tools/deps.sh install

build/deps.stamp: tools/deps.sh
	@tools/deps.sh install
	@mkdir -p build && touch $@

build/%.o: core/%.c | build/deps.stamp
	$(CC) $(NSB_CFLAGS) -MMD -MP -c $< -o $@

nsbuild: $(OBJS)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(NSB_LIBS) $(LUA_LIBS)

# help() in the REPL shows these signatures for the C functions.
lua/nsbuild/core_doc.lua: tools/core-doc.lua $(wildcard core/*.c) | build/deps.stamp
	lua5.4 tools/core-doc.lua $(sort $(wildcard core/*.c)) > $@.tmp && mv $@.tmp $@

# The module takes the Lua API from the interpreter that loads it, as Debian's modules do.
lua/nsbuild/core.so: $(MODULE_OBJS)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(NSB_LIBS)

demo: all
	./nsbuild recipes/busybox.lua
	./nsbuild run --no-init busybox -- sh -c 'echo "pid $$$$ on $$(hostname)"; ls /'

# The suite runs in a private mount namespace so that no mount of a failing test
# reaches the host; then the cgroup specs run again on a cgroup v2 kernel under
# qemu (test-vm). Both logs go to build/test.log, whose count lines .ci/run adds up.
test: all
	@mkdir -p build
	@rm -f build/test.log
	unshare --mount --propagation private -- $(BUSTED) --output=plainTerminal tests 2>&1 | tee -a build/test.log; \
	  host=$${PIPESTATUS[0]}; \
	  $(MAKE) --no-print-directory test-vm 2>&1 | tee -a build/test.log; \
	  vm=$${PIPESTATUS[0]}; \
	  test "$$host" -eq 0 -a "$$vm" -eq 0

.PHONY: test-vm
test-vm: all
	./nsbuild --cache build/test-cache -q recipes/busybox.lua
	tools/vm/run.sh

# nsbuild side by side with crun, runc, bubblewrap, buildah and bsdtar; rewrites
# the results in docs/benchmarks.md. Installs its own extra packages; no pass/fail.
bench: all
	tools/bench/run.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/lua/nsbuild/source
	install -m 755 nsbuild $(DESTDIR)$(BINDIR)/nsbuild
	install -m 644 lua/nsbuild/*.lua $(DESTDIR)$(DATADIR)/lua/nsbuild/
	install -m 644 lua/nsbuild/source/*.lua $(DESTDIR)$(DATADIR)/lua/nsbuild/source/
	install -m 755 lua/nsbuild/core.so $(DESTDIR)$(DATADIR)/lua/nsbuild/core.so

clean:
	rm -rf build nsbuild lua/nsbuild/core.so lua/nsbuild/core_doc.lua

-include $(OBJS:.o=.d)
