# shepherd — build, test and run the local mesh.
#
#   make run     the local mesh on embedded defaults (fake provider + filter in shepherd-local)
#   make test    the whole suite (what CI runs)
#   make check   vet, gofmt, go mod tidy with no diff, the wasm builds
#   make bench   benchmarks
#   make build   everything into bin/

GO        ?= go
BIN       := bin
WASM      := $(BIN)/shepherd.wasm
WASMFLAGS := -buildmode=c-shared -trimpath -ldflags="-s -w"
TESTFLAGS ?=

.PHONY: all build wasm cmds test check bench run clean

all: build

build: wasm cmds

wasm:
	@mkdir -p $(BIN)
	GOOS=wasip1 GOARCH=wasm $(GO) build $(WASMFLAGS) -o $(WASM) ./filter

cmds:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./e2e/cmd/... ./sidecar/cmd/...

test: build
	$(GO) test $(TESTFLAGS) ./...

check: wasm
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./filter/...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@cp go.mod /tmp/shepherd-go.mod.bak; cp go.sum /tmp/shepherd-go.sum.bak; \
	 $(GO) mod tidy; \
	 if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changed go.mod/go.sum"; git --no-pager diff -- go.mod go.sum; exit 1; fi

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

run: build
	./e2e/run-local.sh

clean:
	rm -rf $(BIN)
