# exim-cbv - SMTP callback verification for Exim.
#
#   make                 build libcbv.a, cbv.so, cbv, cbvd
#   make check           unit tests, corpus replay, integration (loopback rig)
#   make SAN=address,undefined check   the same under ASan+UBSan
#   make fuzz            libFuzzer targets (clang)
#   make install         PREFIX=/usr/local DESTDIR=
#   make deps            install the Debian packages needed (root), or print the line
#   make deb             the Debian package, into build-deb/ (tools/deb.sh)
#   make fresh-check     README's commands and the package on a fresh Debian 12 root
#
# CI adds WERROR=1 (-Werror).

PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    ?= $(PREFIX)/bin
SBINDIR   ?= $(PREFIX)/sbin
MANDIR    ?= $(PREFIX)/share/man
# Debian's exim4 looks for nothing by default; we install the module here and
# the config snippets name this path.
EXIM_MODDIR ?= /usr/lib/exim4/modules
EXIM_CONFDIR ?= /etc/exim4
CBV_CONF  ?= $(EXIM_CONFDIR)/cbv.conf

CC        ?= cc
# The one place the version lives: VERSION (debian/changelog must agree;
# make fresh-check and make deb check that).
CBV_VERSION := $(shell cat VERSION)
VERSION_DEF := -DCBV_VERSION='"$(CBV_VERSION)"'
PKG       := libcares libpcre2-8 openssl
PKG       += libidn2
PKG       += lmdb
PKG       += hiredis
PKG_CFLAGS := $(shell pkg-config --cflags $(PKG) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKG) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes \
        -Wmissing-prototypes -Wmissing-declarations -Wformat=2 -Wvla -Wwrite-strings
CFLAGS ?= -O2 -g
BASE_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) \
        -fstack-protector-strong -fPIC -fvisibility=hidden \
        -DCBV_CONF_DEFAULT='"$(CBV_CONF)"' $(VERSION_DEF)
ifneq ($(findstring -O0,$(CFLAGS)),-O0)
BASE_CFLAGS += -D_FORTIFY_SOURCE=2
endif
ifdef WERROR
BASE_CFLAGS += -Werror
endif
ifdef SAN
BASE_CFLAGS += -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
endif
ALL_CFLAGS = $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -Icore
# Header dependencies: each single-source compile writes a .d beside its output.
DEPFLAGS := -MMD -MP

# Sanitizer builds go to their own tree so they never mix with normal objects.
B := build$(if $(SAN),-san)

# The public API (core/cbv.h says what and why): these headers are copied
# into $(PUB_INC), the only core directory cli/, dlfunc/ and server/ are
# compiled against, so a private core header there fails to build.  Core,
# tests and bench/ use -Icore (tests and bench test internals).
PUB_HDR   := $(addprefix core/,cbv.h cbv_addr.h cbv_cache.h cbv_cache_rec.h cbv_callout.h \
             cbv_cache_async.h \
             cbv_cidr.h cbv_clock.h cbv_config.h cbv_cproto.h cbv_http.h cbv_limits.h cbv_log.h cbv_map.h \
             cbv_result.h cbv_stats.h cbv_status.h cbv_text.h cbv_url.h cbv_verify.h)
PUB_INC   := $(B)/include
DRIVER_CFLAGS = $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -I$(PUB_INC)

CORE_SRC  := $(sort $(wildcard core/*.c))
CORE_OBJ  := $(CORE_SRC:%.c=$(B)/%.o)
LIBCBV    := $(B)/libcbv.a

UNIT_SRC  := $(sort $(wildcard tests/unit/check_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
# Suites that need the loopback rig run from tests/integration/run.sh.
RIG_SUITES := check_dns check_session check_verify check_tls check_verify_cache
UNIT_RUN  := $(filter-out $(RIG_SUITES:%=$(B)/tests/%),$(UNIT_BIN))
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/replay/%)
FUZZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)

CLI       := $(B)/cbv
DLFUNC    := $(B)/cbv.so
CBVD      := $(B)/cbvd
FAKESMTP  := $(B)/fakesmtp
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

PROGS := $(LIBCBV) $(CLI) $(FAKESMTP) $(BENCH_BIN) \
         $(if $(wildcard dlfunc/*.c),$(DLFUNC)) $(if $(wildcard server/*.c),$(CBVD))

.PHONY: all check test unit replay integration valgrind fuzz install deps clean bench demo format
.PHONY: deb fresh-check

all: $(PROGS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

# Every object sees -DCBV_VERSION: rebuild them when VERSION changes.
$(CORE_OBJ) $(patsubst %.c,$(B)/%.o,$(wildcard cli/*.c server/*.c dlfunc/*.c)): VERSION

# Copied afresh as a whole, so a header dropped from PUB_HDR is gone too.
$(PUB_INC)/.stamp: $(PUB_HDR) Makefile
	@rm -rf $(PUB_INC) && mkdir -p $(PUB_INC)
	cp $(PUB_HDR) $(PUB_INC)/
	@touch $@

$(B)/cli/%.o: cli/%.c $(PUB_INC)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(DRIVER_CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(B)/server/%.o: server/%.c $(PUB_INC)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(DRIVER_CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(LIBCBV): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(CLI): $(B)/cli/cbv.o $(B)/cli/cbv_cache_cmd.o $(LIBCBV)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(CBVD): $(patsubst %.c,$(B)/%.o,$(wildcard server/*.c)) $(LIBCBV)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The Exim module: Exim's symbols resolve at load time, so no -z defs.
$(DLFUNC): $(patsubst %.c,$(B)/%.o,$(wildcard dlfunc/*.c)) $(LIBCBV)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(PKG_LIBS)

$(B)/dlfunc/%.o: dlfunc/%.c $(PUB_INC)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(DRIVER_CFLAGS) $(DEPFLAGS) -I/usr/include/exim4 -c -o $@ $<

$(FAKESMTP): tests/fakes/fakesmtp.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $<

$(B)/bench/%: bench/%.c $(LIBCBV)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) $(LDFLAGS) -o $@ $< $(LIBCBV) $(PKG_LIBS)

$(B)/tests/%: tests/unit/%.c $(LIBCBV) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) $(CHECK_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCBV) $(PKG_LIBS) $(CHECK_LIBS)

# Corpus replay: each fuzz target linked with a small driver, built with gcc.
$(B)/replay/%: tests/fuzz/%.c tests/fuzz/replay.c $(LIBCBV)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(LIBCBV) $(PKG_LIBS)

-include $(wildcard $(B)/*/*.d)

# Some suites start build/fakesmtp themselves (check_verify_redis).
unit: $(UNIT_BIN) $(FAKESMTP)
	@set -e; for t in $(UNIT_RUN); do echo "== $$t"; $$t; done

replay: $(REPLAY_BIN)
	@set -e; for t in $(REPLAY_BIN); do n=$${t##*/fuzz_}; \
	  echo "== replay $$n"; $$t tests/fuzz/corpus/$$n; done

integration: all $(UNIT_BIN)
	B=$(B) tests/rig/rig.sh run -- tests/integration/run.sh

check: unit replay integration

build-fuzz/%: tests/fuzz/%.c $(CORE_SRC)
	@mkdir -p build-fuzz
	clang -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(VERSION_DEF) -g -O1 -Icore \
	  -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -o $@ $< $(CORE_SRC) $(PKG_LIBS)

fuzz: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_BIN); do n=$${t##*/fuzz_}; \
	  echo "== fuzz $$n ($${FUZZ_SECONDS:-30}s)"; \
	  mkdir -p build-fuzz/new/$$n; \
	  $$t -max_total_time=$${FUZZ_SECONDS:-30} -max_len=4096 build-fuzz/new/$$n tests/fuzz/corpus/$$n; done
	@echo "new inputs are in build-fuzz/new/; copy the interesting ones to tests/fuzz/corpus/"


bench: all
	B=$(B) tests/rig/rig.sh run -- bench/run.sh

# The README's two commands: each installs its own dependencies first, then
# runs make again so pkg-config sees the freshly installed packages.
test:
	@tools/deps.sh
	@$(MAKE) --no-print-directory check

demo:
	@tools/deps.sh
	@$(MAKE) --no-print-directory all
	B=$(B) ./demo.sh

# The integration suites that drive the core, under valgrind (no leaks, no errors).
valgrind: all $(UNIT_BIN)
	B=$(B) CBV_VALGRIND=1 tests/rig/rig.sh run -- tests/integration/valgrind.sh

deps:
	@tools/deps.sh

deb:
	@tools/deps.sh deb
	tools/deb.sh

# Root: mmdebstrap, chroots, network namespaces (tools/fresh-check.sh).
fresh-check:
	tools/fresh-check.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(EXIM_MODDIR)
	install -m 755 $(CLI) $(DESTDIR)$(BINDIR)/cbv
	install -m 644 man/cbv.1 man/cbv-verify.1 man/cbv-check-config.1 man/cbv-cache.1 $(DESTDIR)$(MANDIR)/man1/
	$(if $(wildcard dlfunc/*.c),install -m 644 $(DLFUNC) $(DESTDIR)$(EXIM_MODDIR)/cbv.so)
	install -d $(DESTDIR)$(EXIM_CONFDIR)
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(EXIM_CONFDIR)/conf.d/main $(DESTDIR)$(EXIM_CONFDIR)/conf.d/acl
	install -m 644 man/cbv.so.8 man/cbvd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 755 $(CBVD) $(DESTDIR)$(SBINDIR)/cbvd
	@# Configuration is never overwritten: a changed file gets a .dist beside it.
	@set -e; for pair in exim-conf/cbv.conf:$(CBV_CONF) \
	  exim-conf/cbv_mail.acl:$(EXIM_CONFDIR)/cbv_mail.acl \
	  exim-conf/cbv_rcpt.acl:$(EXIM_CONFDIR)/cbv_rcpt.acl \
	  exim-conf/cbv_callout.acl:$(EXIM_CONFDIR)/cbv_callout.acl \
	  exim-conf/conf.d/main/05_exim-cbv_macros:$(EXIM_CONFDIR)/conf.d/main/05_exim-cbv_macros \
	  exim-conf/conf.d/acl/25_exim-cbv_acls:$(EXIM_CONFDIR)/conf.d/acl/25_exim-cbv_acls; do \
	  src=$${pair%%:*}; dst=$(DESTDIR)$${pair#*:}; \
	  if [ -e "$$dst" ] && ! cmp -s "$$src" "$$dst"; then \
	    echo "keeping existing $$dst; new version in $$dst.dist"; \
	    install -m 644 "$$src" "$$dst.dist"; \
	  else install -m 644 "$$src" "$$dst"; fi; done

format:
	clang-format -i core/*.[ch] cli/*.c dlfunc/*.c server/*.[ch] bench/*.c tests/unit/*.c tests/fuzz/*.c tests/fakes/*.c

clean:
	rm -rf build build-san build-fuzz build-deb
