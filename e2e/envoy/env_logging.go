package envoy

import "context"

// Logging: proxy_log and proxy_get_log_level (proxy-wasm-cpp-host src/exports.cc
// log, get_log_level; Envoy's Context::log under the "wasm" logger).
var loggingFuncs = []hostFunc{
	{name: "proxy_log", fn: proxyLog},
	{name: "proxy_get_log_level", fn: proxyGetLogLevel, abis: []string{abi021}},
}

// proxyLog writes the plugin's message at level; a level above critical is
// BadArgument.
func proxyLog(ctx context.Context, level, ptr, size uint32) uint32 {
	v := vmFrom(ctx)
	if level > uint32(LogCritical) {
		return uint32(StatusBadArgument)
	}
	msg, ok := v.readString(ptr, size)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	v.plugin().pluginLog(v, LogLevel(level), msg)
	return uint32(StatusOK)
}

// proxyGetLogLevel reports the wasm logger's level.
func proxyGetLogLevel(ctx context.Context, retPtr uint32) uint32 {
	v := vmFrom(ctx)
	if !v.putU32(retPtr, uint32(v.h.logLevel)) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}
