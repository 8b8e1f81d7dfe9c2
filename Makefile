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

.PHONY: all build run test vet fmt-check unit fuzz bench clean

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

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./e2e
	$(GO) test -run '^$$' -bench . -benchmem ./internal/queue ./internal/convert

clean:
	rm -rf bin
