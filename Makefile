# cfsync — build, test, lint, demo, bench.
SHELL := /bin/bash
GO ?= go
FUNCTIONS := token-refresher fileset-poller downloader notification-reader
# moto_server and cfn-lint: from PATH, else from the project's virtualenv (make tools).
VENV := $(CURDIR)/.venv
# AWS's Lambda Runtime Interface Emulator, which runs the bootstraps in the demo and the e2e tests.
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d
export PATH := $(VENV)/bin:$(PATH)

.PHONY: all build test unit lint demo bench bench-big bench-tools tools clean

all: build

## build: the three Lambda bootstraps (bin/<function>/bootstrap, this machine's OS/arch) and the commands
build:
	@for f in $(FUNCTIONS); do \
		CGO_ENABLED=0 $(GO) build -trimpath -o bin/$$f/bootstrap ./functions/$$f || exit 1; \
	done
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

## tools: moto_server and cfn-lint into .venv, aws-lambda-rie into $GOPATH/bin, when not already there
tools:
	@command -v moto_server >/dev/null && command -v cfn-lint >/dev/null || { \
		python3 -m venv $(VENV) && $(VENV)/bin/pip install -q "moto[server]>=5.1" cfn-lint; }
	@command -v aws-lambda-rie >/dev/null || [ -x "$$($(GO) env GOPATH)/bin/aws-lambda-rie" ] || \
		$(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)

## lint: gofmt, go vet, staticcheck (pinned in go.mod's tool directive)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## test: lint, then every test (unit, fuzz seed corpora, integration against moto_server + the RDP simulator)
test: tools lint
	CFSYNC_REQUIRE_MOTO=1 $(GO) test -count=1 -timeout 45m ./...

## unit: the tests that need no emulator
unit:
	$(GO) test -short -count=1 ./...

## demo: the whole pipeline locally (RDP simulator + moto_server), no credentials;
## NOTIFICATIONS=1 adds push notifications (the notification-reader, file-sets published while it runs)
NOTIFICATIONS ?=
demo: tools
	$(GO) run ./cmd/cfsync-local $(if $(NOTIFICATIONS),-notifications) $(DEMO_ARGS)

## bench-tools: versitygw, the S3 server the multi-GiB downloader benchmark writes into (moto keeps objects in memory)
bench-tools: tools
	@command -v versitygw >/dev/null || [ -x "$$($(GO) env GOPATH)/bin/versitygw" ] || \
		$(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0

## bench: benchmarks (results are written up in BENCHMARKS.md), all but the 20 GiB one (make bench-big)
bench: bench-tools
	$(GO) test -run '^$$' -bench . -skip 'BenchmarkHugeFile' -benchmem -timeout 60m ./...

## bench-big: a 20 GiB file across invocations (needs ~43 GiB of free disk), then 3 rounds of 1 GiB: downloader vs curl | aws s3 cp - vs the SDK's upload manager
bench-big: bench-tools
	$(GO) test -run '^$$' -bench 'BenchmarkHugeFile$$' -benchtime 1x -timeout 60m -v ./functions/downloader
	$(GO) test -run '^$$' -bench 'BenchmarkOneGiB$$' -benchtime 3x -timeout 30m -v ./functions/downloader

clean:
	rm -rf bin
