# smtpgw — build, run and test.
#
#   make run     build and start the gateway on the built-in example config
#   make test    installs what the tests need (scripts/test-deps), then vet,
#                formatting, every test (race detector on), short fuzz runs
#   make bench   load benchmark against the built binary on loopback
#   make cross   vet and build the windows/amd64 and linux/arm64 targets
#   make release static binaries for every platform, with SHA256SUMS, in dist/
#   make deb     the Debian package in dist/ (amd64; DEB_ARCH=arm64 for the other)

GO       ?= go
BIN      := bin/smtpgw
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: all build run test test-deps vet fmt-check unit fuzz bench clean cross release deb

# Release targets: static binaries (no cgo), reproducible paths (-trimpath).
PLATFORMS := linux/amd64 linux/arm64 windows/amd64
DIST      := dist
DEB_ARCH  ?= amd64

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/smtpgw

run: build
	./$(BIN) serve

test: test-deps fmt-check vet unit fuzz

# test-deps installs the Debian packages the tests drive (swaks, Postfix's
# load tools, Dovecot, promtool, ...) as root, or stops at once printing the
# command that does.
test-deps:
	@sh scripts/test-deps

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# Go minimizes each new interesting input for up to a minute by default,
# and runs no new inputs meanwhile: a short run would spend most of its
# time there. 5 seconds keeps it fuzzing.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzConvert$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/convert
	$(GO) test -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/smtpserver
	$(GO) test -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/imapserver
	$(GO) test -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/pop3server

# The load benchmarks run against the built binary and report the gateway's
# peak memory and CPU time per message (docs/benchmarks.md);
# BenchmarkVersusPostfix runs Postfix side by side (a private instance on
# loopback ports, its own config and queue; test-deps installs the package
# without configuring or starting the system's own Postfix).
bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./e2e
	$(GO) test -run '^$$' -bench . -benchmem ./internal/queue ./internal/convert ./internal/upstream

# cross type-checks and compiles the platforms CI does not run on, so a
# Windows-only or 64-bit-ARM-only break shows on every run.
cross:
	GOOS=windows GOARCH=amd64 $(GO) vet ./...
	GOOS=linux GOARCH=arm64 $(GO) vet ./...
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -o /dev/null ./cmd/smtpgw
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -o /dev/null ./cmd/smtpgw

release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	set -e; for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' \
	    -o $(DIST)/smtpgw-$(VERSION)-$$os-$$arch$$ext ./cmd/smtpgw; \
	done
	cd $(DIST) && sha256sum smtpgw-* > SHA256SUMS

# deb packages the release binary with nfpm, driven by packaging/ (its own
# module, so the product's go.mod stays free of packaging dependencies).
deb:
	mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DEB_ARCH) $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' \
	  -o $(DIST)/smtpgw-$(VERSION)-linux-$(DEB_ARCH) ./cmd/smtpgw
	cd packaging && $(GO) run . -version '$(VERSION)' -arch $(DEB_ARCH) \
	  -binary ../$(DIST)/smtpgw-$(VERSION)-linux-$(DEB_ARCH) -out ../$(DIST)

clean:
	rm -rf bin $(DIST)
