#!/usr/bin/env node
// guesttime runs a proxy-wasm module under V8 (Node.js's WebAssembly and WASI)
// with just enough of a host for the filter's two benchmark routes, and
// reports the time spent in the module's callbacks per request: the
// counterpart under V8 of e2e's BenchmarkGuestTime under wazero. V8 is what
// Istio's proxies run wasm plugins with; this is a measuring tool, not a host
// to serve traffic with (no routing, no callouts, no ticks).
//
//   node e2e/v8host/guesttime.js bin/shepherd.wasm [noop.wasm] [requests]
'use strict';
const { WASI } = require('node:wasi');
const fs = require('node:fs');

// The configuration of e2e/bench_test.go's benchConfig.
const config = JSON.stringify({
  models: { 'gpt-4.1': { input: 2, output: 8 }, 'fast-model': {} },
  aliases: { fast: 'fast-model' },
  providers: [{ name: 'p', host: 'p.example.com', pathPrefix: '/openai/v1', cluster: 'p', credential: { inline: 'sk-bench' } }],
  routes: [
    { name: 'headers', match: { pathPrefix: '/v1/models' }, provider: 'p', streamUsage: false, limits: { requestsPerMinute: 1000000000 } },
    { name: 'body', match: { pathPrefix: '/v1/' }, provider: 'p', limits: { requestsPerMinute: 1000000000, tokensPerMinute: 1000000000 } },
  ],
});

// e2e/bench_test.go's body8k: a chat request of about 8 KiB naming an alias.
function body8k() {
  let b = '{"model":"fast","max_tokens":100,"messages":[';
  for (let i = 0; b.length < 8 << 10; i++) {
    if (i > 0) b += ',';
    b += '{"role":"user","content":"Tell me about the shepherds of the mesh and their flocks of tokens, number ' + 'x'.repeat(20) + '"}';
  }
  return b + ']}';
}

const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, CAS_MISMATCH = 8, UNIMPLEMENTED = 12;
const enc = new TextEncoder(), dec = new TextDecoder();

function encodePairs(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + 8 * parts.length;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size), dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let off = 4;
  for (const [k, v] of parts) { dv.setUint32(off, k.length, true); dv.setUint32(off + 4, v.length, true); off += 8; }
  for (const [k, v] of parts) { out.set(k, off); off += k.length + 1; out.set(v, off); off += v.length + 1; }
  return out;
}

async function load(path) {
  const wasi = new WASI({ version: 'preview1', args: [path], env: {}, returnOnExit: true });
  const shared = new Map(); // key -> {value: Uint8Array, cas}
  let casSeq = 1;
  const st = { maps: [], bufs: [], inst: null, localReplies: 0, metrics: [] };
  const mem = () => new Uint8Array(st.inst.exports.memory.buffer);
  const view = () => new DataView(st.inst.exports.memory.buffer);
  const str = (p, n) => dec.decode(mem().subarray(p, p + n));
  const out = (bytes, pp, sp) => {
    let p = 0;
    if (bytes.length > 0) {
      p = st.inst.exports.proxy_on_memory_allocate(bytes.length);
      mem().set(bytes, p);
    }
    view().setUint32(pp, p, true);
    view().setUint32(sp, bytes.length, true);
    return OK;
  };
  const env = {
    proxy_log: () => OK,
    proxy_set_tick_period_milliseconds: () => OK,
    proxy_set_effective_context: () => OK,
    proxy_get_current_time_nanoseconds: (p) => { view().setBigUint64(p, process.hrtime.bigint(), true); return OK; },
    proxy_get_buffer_status: (t, lp, fp) => { const b = st.bufs[t]; if (!b) return NOT_FOUND; view().setUint32(lp, b.length, true); view().setUint32(fp, 0, true); return OK; },
    proxy_get_buffer_bytes: (t, start, max, pp, sp) => { const b = st.bufs[t] || new Uint8Array(0); return out(b.subarray(start, start + max), pp, sp); },
    proxy_set_buffer_bytes: (t, start, len, p, n) => { st.bufs[t] = mem().slice(p, p + n); return OK; },
    proxy_get_header_map_pairs: (t, pp, sp) => out(encodePairs(st.maps[t] || []), pp, sp),
    proxy_get_header_map_value: (t, kp, ks, pp, sp) => {
      const k = str(kp, ks), e = (st.maps[t] || []).find(([key]) => key === k);
      return e ? out(enc.encode(e[1]), pp, sp) : NOT_FOUND;
    },
    proxy_replace_header_map_value: (t, kp, ks, vp, vs) => {
      const k = str(kp, ks), v = str(vp, vs), m = (st.maps[t] = (st.maps[t] || []).filter(([key]) => key !== k));
      m.push([k, v]);
      return OK;
    },
    proxy_remove_header_map_value: (t, kp, ks) => { const k = str(kp, ks); st.maps[t] = (st.maps[t] || []).filter(([key]) => key !== k); return OK; },
    proxy_send_local_response: () => { st.localReplies++; return OK; },
    proxy_continue_stream: () => OK,
    proxy_http_call: () => UNIMPLEMENTED,
    proxy_grpc_call: () => UNIMPLEMENTED,
    proxy_get_shared_data: (kp, ks, pp, sp, cp) => {
      const e = shared.get(str(kp, ks));
      if (!e) return NOT_FOUND;
      view().setUint32(cp, e.cas, true);
      return out(e.value, pp, sp);
    },
    proxy_set_shared_data: (kp, ks, vp, vs, cas) => {
      const k = str(kp, ks), e = shared.get(k);
      if (e && cas !== 0 && e.cas !== cas) return CAS_MISMATCH;
      shared.set(k, { value: mem().slice(vp, vp + vs), cas: casSeq++ });
      return OK;
    },
    proxy_define_metric: (t, np, ns, idp) => { st.metrics.push({ name: str(np, ns), v: 0n }); view().setUint32(idp, st.metrics.length, true); return OK; },
    proxy_increment_metric: (id, delta) => { const m = st.metrics[id - 1]; if (!m) return NOT_FOUND; m.v += delta; return OK; },
    proxy_record_metric: (id, value) => { const m = st.metrics[id - 1]; if (!m) return NOT_FOUND; m.v = value; return OK; },
  };
  // Time spent in the host functions, to tell the module's own time apart
  // (these JavaScript stand-ins cost more than Envoy's C++).
  st.hostNs = 0n;
  for (const [name, f] of Object.entries(env)) {
    env[name] = (...args) => { const t = process.hrtime.bigint(); const r = f(...args); st.hostNs += process.hrtime.bigint() - t; return r; };
  }
  const mod = await WebAssembly.compile(fs.readFileSync(path));
  const imports = { env, wasi_snapshot_preview1: wasi.getImportObject().wasi_snapshot_preview1 };
  st.inst = await WebAssembly.instantiate(mod, imports);
  wasi.initialize(st.inst);
  const x = st.inst.exports;
  st.bufs[7] = enc.encode(config); // plugin configuration
  x.proxy_on_context_create(1, 0);
  if (!x.proxy_on_vm_start(1, 0)) throw new Error(path + ': vm start failed');
  if (!x.proxy_on_configure(1, st.bufs[7].length)) throw new Error(path + ': configure failed');
  return { st, x };
}

// request runs one request's callbacks in Envoy's order and returns the
// nanoseconds spent inside them.
function request(vm, id, method, path, body) {
  const { st, x } = vm;
  let ns = 0n;
  const hostBefore = st.hostNs;
  const call = (f, ...args) => { const t = process.hrtime.bigint(); const r = f(...args); ns += process.hrtime.bigint() - t; return r; };
  st.maps = [[[':authority', 'api.openai.com'], [':path', path], [':method', method], [':scheme', 'http'],
    ['content-type', 'application/json'], ['user-agent', 'Go-http-client/1.1'], ['x-forwarded-proto', 'http'],
    ['x-request-id', '5f0c2d2e-8a1b-4b7e-9d3c-' + String(id).padStart(12, '0')]]];
  st.bufs[0] = body ? enc.encode(body) : undefined;
  call(x.proxy_on_context_create, id, 1);
  if (body) st.maps[0].push(['content-length', String(st.bufs[0].length)]);
  call(x.proxy_on_request_headers, id, st.maps[0].length, body ? 0 : 1);
  if (body) call(x.proxy_on_request_body, id, st.bufs[0].length, 1);
  const answer = enc.encode('{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}');
  st.maps[2] = [[':status', '200'], ['content-type', 'application/json'], ['content-length', String(answer.length)]];
  call(x.proxy_on_response_headers, id, st.maps[2].length, 0);
  st.bufs[1] = answer;
  call(x.proxy_on_response_body, id, answer.length, 1);
  call(x.proxy_on_done, id);
  call(x.proxy_on_log, id);
  call(x.proxy_on_delete, id);
  return [ns, st.hostNs - hostBefore];
}

// check makes sure the filter did its work on the request just run, so the
// figures are for the real path: the provider's authority, path and
// credential, and for a body, the alias rewritten to its model.
function check(vm, label, body) {
  const h = Object.fromEntries(vm.st.maps[0]);
  if (label !== 'filter') return;
  if (h[':authority'] !== 'p.example.com' || !h[':path'].startsWith('/openai/v1') || h.authorization !== 'Bearer sk-bench') {
    throw new Error('the filter did not route the request: ' + JSON.stringify(h));
  }
  if (body && !dec.decode(vm.st.bufs[0]).includes('"model":"fast-model"')) {
    throw new Error('the filter did not rewrite the body');
  }
  if (vm.st.metrics.length === 0) throw new Error('the filter defined no metrics');
}

function measure(vm, method, path, body, n, label) {
  request(vm, 99, method, path, body);
  check(vm, label, body);
  let id = 100;
  for (let i = 0; i < 2000; i++) request(vm, id++, method, path, body); // JIT tiers, metrics defined
  const per = [], own = [];
  for (let i = 0; i < n; i++) {
    const [ns, host] = request(vm, id++, method, path, body);
    per.push(Number(ns) / 1e3);
    own.push(Number(ns - host) / 1e3);
  }
  const p50 = (a) => a.sort((x, y) => x - y)[n >> 1];
  const mean = (a) => a.reduce((x, y) => x + y, 0) / n;
  return { mean: mean(per), p50: p50(per), ownMean: mean(own), ownP50: p50(own) };
}

(async () => {
  const [filterPath, noopPath, count] = process.argv.slice(2);
  if (!filterPath) {
    console.error('usage: guesttime.js FILTER.wasm [NOOP.wasm] [REQUESTS]');
    process.exit(2);
  }
  const n = Number(count || 20000);
  const cases = [['headers-only', 'GET', '/v1/models', ''], ['body-8KiB', 'POST', '/v1/chat/completions', body8k()]];
  const modules = [['filter', filterPath]];
  if (noopPath) modules.push(['noop', noopPath]);
  for (const [name, method, path, body] of cases) {
    const cols = [];
    for (const [label, file] of modules) {
      const vm = await load(file);
      const r = measure(vm, method, path, body, n, label);
      if (vm.st.localReplies) throw new Error(label + ' answered locally: check the config and the request');
      cols.push(`${label} mean ${r.mean.toFixed(2)} µs, p50 ${r.p50.toFixed(2)} µs; without host functions: mean ${r.ownMean.toFixed(2)} µs, p50 ${r.ownP50.toFixed(2)} µs`);
    }
    console.log(`${name}: ${cols.join('; ')}  (${n} requests under V8 ${process.versions.v8})`);
  }
})().catch((err) => { console.error(err); process.exit(1); });
