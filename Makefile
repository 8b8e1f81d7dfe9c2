# smtpgw — build, run and test.
#
#   make run     build and start the gateway on the built-in example config
#   make test    vet, formatting, every test (race detector on), short fuzz runs
#   make bench   load benchmark against the built binary on loopback

GO       ?= go
BIN      := bin/smtpgw
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: all build run test vet fmt-check unit fuzz bench postfix clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/smtpgw

run: build
	./$(BIN) serve

test: fmt-check vet unit fuzz

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzConvert$$' -fuzztime $(FUZZTIME) ./internal/convert
	$(GO) test -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) ./internal/smtpserver

# The load benchmarks run against the built binary and report the gateway's
# peak memory; BenchmarkVersusPostfix runs Postfix side by side (a private
# instance on loopback ports, its own config and queue), so the Debian
# package is installed when missing, without configuring or starting the
# system's own Postfix.
bench: postfix
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./e2e
	$(GO) test -run '^$$' -bench . -benchmem ./internal/queue ./internal/convert ./internal/upstream

postfix:
	@[ -x /usr/sbin/smtp-source ] || { \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix; }

clean:
	rm -rf bin
