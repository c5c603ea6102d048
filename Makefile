# labd — make help lists the targets.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN := bin/labd
ARGS ?=
# Debian packages the daemon and its tests run. Installed by `make deps`
# when missing (a fresh Debian needs `apt-get update` first).
APT_PACKAGES ?= vpcs tcpdump qemu-system-x86 qemu-utils
# The account labd (as root) runs node processes as: --node-user's default.
NODE_USER ?= labd-node
# Fuzz targets `make test` runs briefly after the unit tests: package:Target.
FUZZ_TARGETS := ./events:FuzzUnmarshal ./http/api:FuzzProjectCreateV2 ./http/api:FuzzProjectUpdateV1 ./actors:FuzzCleanPath ./nio:FuzzParseFilters ./actors/qemu/qmp:FuzzClientStream ./actors/qemu:FuzzCheckName ./actors/qemu:FuzzParseOptions ./http/api:FuzzSwitchUpdateV2 ./http/api:FuzzCloudUpdateV2 ./nio:FuzzVLANTrunk
FUZZTIME ?= 8s

.PHONY: help build run test fuzz bench lint check deps

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-7s %s\n", $$1, $$2}'

deps: ## install what building and testing need (Debian packages, the node user, Go modules)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@if [ "$$(id -u)" = 0 ] && ! id -u $(NODE_USER) >/dev/null 2>&1; then \
		echo "creating the node user $(NODE_USER)"; \
		useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $(NODE_USER); \
	fi
	@$(GO) mod download

build: deps ## build bin/labd
	$(GO) build -o $(BIN) ./cmd/labd

run: build ## start the daemon on 127.0.0.1:3080 with the embedded JetStream (ARGS="..." adds flags)
	./$(BIN) serve $(ARGS)

test: deps ## run every test with -race, then each fuzz target for $(FUZZTIME)
	$(GO) test -race -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz

fuzz: ## run each fuzz target for $(FUZZTIME)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

bench: deps ## run the benchmarks (numbers and machine in BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

lint: deps ## gofmt, go vet, staticcheck and govulncheck (the last two when they can be fetched)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -version >/dev/null 2>&1; then \
		$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...; \
	else echo "staticcheck: not available here, skipped"; fi
	@if $(GO) run golang.org/x/vuln/cmd/govulncheck@v1.1.4 -version >/dev/null 2>&1; then \
		$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.1.4 ./... || echo "govulncheck: could not check (no vulnerability database here?)"; \
	else echo "govulncheck: not available here, skipped"; fi

check: lint test ## lint, then test
