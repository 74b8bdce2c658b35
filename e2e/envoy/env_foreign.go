package envoy

import "context"

// Foreign functions: proxy_call_foreign_function with the functions Envoy
// registers for HTTP filters (foreign.go).
var foreignFuncs = []hostFunc{
	{name: "proxy_call_foreign_function", fn: proxyCallForeignFunction},
}

// proxyCallForeignFunction runs a foreign function by name; unknown names are
// NotFound.
func proxyCallForeignFunction(ctx context.Context, namePtr, nameSize, argPtr, argSize, retPtr, retSize uint32) uint32 {
	v := vmFrom(ctx)
	name, ok := v.readString(namePtr, nameSize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	args, ok := v.read(argPtr, argSize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	res, has, st := v.callForeign(name, append([]byte(nil), args...))
	if st != StatusOK || !has {
		return uint32(st)
	}
	return uint32(v.copyOut(res, retPtr, retSize))
}
