#!/usr/bin/env node
// The go test -exec program for GOOS=wasip1 under V8 (make bench-v8): runs a
// test binary with Node's WASI, with the package directory preopened as the
// guest's root, as e2e/wasm-exec.sh does under wazero. V8 is the runtime
// Istio's proxies run wasm plugins with.
'use strict';
const { WASI } = require('node:wasi');
const fs = require('node:fs');

const [wasmPath, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [wasmPath, ...args],
  env: process.env,
  preopens: { '/': process.cwd() },
  returnOnExit: true,
});
(async () => {
  const mod = await WebAssembly.compile(fs.readFileSync(wasmPath));
  const inst = await WebAssembly.instantiate(mod, wasi.getImportObject());
  process.exitCode = wasi.start(inst);
})().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
