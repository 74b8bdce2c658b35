# shepherd — build, test and run the local mesh.
#
#   make run     the local mesh on embedded defaults (fake provider + filter in shepherd-local)
#   make test    the whole suite (what CI runs)
#   make check   vet (its lostcancel check included) of every package and the wasm test guest, gofmt, go mod tidy with no diff, the wasm builds
#   make bench   benchmarks
#   make build   everything into bin/
#   make image   the filter's and the sidecar's images under bin/oci, and their digest pins in istio/

GO        ?= go
BIN       := bin
WASM      := $(BIN)/shepherd.wasm
WASMFLAGS := -buildmode=c-shared -trimpath -buildvcs=false -ldflags="-s -w"
TESTFLAGS ?=

.PHONY: all build wasm cmds test check bench run clean

all: build

build: wasm cmds

wasm:
	@mkdir -p $(BIN)
	GOOS=wasip1 GOARCH=wasm $(GO) build $(WASMFLAGS) -o $(WASM) ./filter

cmds:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./e2e/cmd/... ./sidecar/cmd/... ./istio/cmd/...

test: build
	$(GO) test $(TESTFLAGS) ./...

check: wasm
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./filter/... ./e2e/envoy/testdata/guest ./e2e/envoy/testdata/multi
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@cp go.mod /tmp/shepherd-go.mod.bak; cp go.sum /tmp/shepherd-go.sum.bak; \
	 $(GO) mod tidy; \
	 if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changed go.mod/go.sum"; git --no-pager diff -- go.mod go.sum; exit 1; fi

# Images without a container engine (build/cmd/shepherd-image): OCI layouts under
# bin/oci, named IMAGE_TAG and checked against the OCI image spec's schemas;
# PUSH=1 also pushes them to IMAGE_REPO. The images' digests are written to the
# pin files the Istio overlays read: the filter's url to each file of PIN (the
# stable and the canary WasmPlugin; for a filter canary of your own, set
# PIN=istio/overlays/filter-canary/canary/canary-image.env), the sidecar's image
# to SIDECAR_PIN. Builds are reproducible; `make test` fails while a committed
# pin is not this tree's build (istio/validate TestPinsAreThisTreesBuild).
IMAGE_REPO  ?= ghcr.io/shepherd-mesh
IMAGE_TAG   ?= dev
IMAGE_ARCH  ?= amd64
PIN         ?= istio/plugin/filter-image.env istio/overlays/filter-canary/canary/canary-image.env
SIDECAR_PIN ?= istio/base/sidecar-image.env
PUSH        ?=
LINUXBIN    := $(BIN)/linux-$(IMAGE_ARCH)

.PHONY: image
image: wasm
	@mkdir -p $(LINUXBIN) $(BIN)/oci
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -buildvcs=false -ldflags="-s -w" -o $(LINUXBIN)/ ./sidecar/cmd/shepherd-sidecar ./sidecar/cmd/shepherdctl
	$(GO) run ./build/cmd/shepherd-image wasm --wasm $(WASM) --layout $(BIN)/oci/shepherd-filter --tag $(IMAGE_TAG) \
		--repo $(IMAGE_REPO)/shepherd-filter $(foreach p,$(PIN),--pin $(p)) $(if $(PUSH),--push $(IMAGE_REPO)/shepherd-filter:$(IMAGE_TAG))
	$(GO) run ./build/cmd/shepherd-image sidecar --sidecar $(LINUXBIN)/shepherd-sidecar --ctl $(LINUXBIN)/shepherdctl \
		--arch $(IMAGE_ARCH) --layout $(BIN)/oci/shepherd-sidecar --tag $(IMAGE_TAG) \
		--repo $(IMAGE_REPO)/shepherd-sidecar $(if $(SIDECAR_PIN),--pin $(SIDECAR_PIN)) $(if $(PUSH),--push $(IMAGE_REPO)/shepherd-sidecar:$(IMAGE_TAG))

# One package at a time (-p 1): benchmarks of different packages running at once
# would share the cores and distort each other's figures. About 4 minutes on 2 cores.
bench: build
	$(GO) test -p 1 -run '^$$' -bench . -benchmem ./...

# The curves of docs/BENCHMARKS.md ("Curves"): the filter's guest time along
# each axis of its work (body size, messages, SSE events, routes, consumers,
# open streams), each case as a ratio to the first of its axis. `make bench`
# runs them too; this runs only them, with more rounds (about 3 minutes).
.PHONY: bench-curves
bench-curves:
	$(GO) test -run '^$$' -bench BenchmarkCurves -benchtime 20x ./e2e/

# The filter's pure packages' benchmarks compiled to wasip1 and run under
# wazero, for the wasm/native ratio against `make bench` (docs/BENCHMARKS.md).
WASM_BENCH_PKGS = ./filter/body/ ./filter/jsonlite/ ./filter/limits/ ./filter/routing/ ./filter/fallback/ ./filter/pricing/
.PHONY: bench-wasm
bench-wasm:
	$(GO) build -o $(BIN)/wazero github.com/tetratelabs/wazero/cmd/wazero
	GOOS=wasip1 GOARCH=wasm $(GO) test -p 1 -exec $(CURDIR)/e2e/wasm-exec.sh -run '^$$' -bench . -benchmem $(WASM_BENCH_PKGS)

# The same under V8 (Node.js's WASI), the runtime Istio's proxies use, and the
# filter's time per request in its callbacks under V8 (e2e/v8host). Needs node.
.PHONY: bench-v8
bench-v8: wasm
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -ldflags="-s -w" -o $(BIN)/noop.wasm ./e2e/testdata/noop
	NODE_NO_WARNINGS=1 node e2e/v8host/guesttime.js $(WASM) $(BIN)/noop.wasm
	GOOS=wasip1 GOARCH=wasm NODE_NO_WARNINGS=1 $(GO) test -p 1 -exec $(CURDIR)/e2e/wasm-exec-v8.js -run '^$$' -bench . -benchmem $(WASM_BENCH_PKGS)

# The soak: the local mesh in-process (2 pods x 2 workers, the sidecar, two fake
# providers with random faults) under randomized clients; prints the invariant
# table and fails when one did not hold (docs/RELIABILITY.md). SOAK=10m by default.
SOAK ?= 10m
.PHONY: soak
soak: build
	$(GO) run ./e2e/cmd/shepherd-soak --duration $(SOAK) --module $(WASM)

run: build
	./e2e/run-local.sh

clean:
	rm -rf $(BIN)
