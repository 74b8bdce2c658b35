package envoy

import "context"

// Properties: proxy_get_property and proxy_set_property (Envoy's
// Context::getProperty/setProperty; the paths are in properties.go).
var propertyFuncs = []hostFunc{
	{name: "proxy_get_property", fn: proxyGetProperty},
	{name: "proxy_set_property", fn: proxySetProperty},
}

// proxyGetProperty answers a serialized property path.
func proxyGetProperty(ctx context.Context, pathPtr, pathSize, ptrPtr, sizePtr uint32) uint32 {
	v := vmFrom(ctx)
	path, ok := v.readString(pathPtr, pathSize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	val, st := v.getProperty(path)
	if st != StatusOK {
		return uint32(st)
	}
	return uint32(v.copyOut(val, ptrPtr, sizePtr))
}

// proxySetProperty sets a property the plugin may write.
func proxySetProperty(ctx context.Context, pathPtr, pathSize, valPtr, valSize uint32) uint32 {
	v := vmFrom(ctx)
	path, ok1 := v.readString(pathPtr, pathSize)
	val, ok2 := v.read(valPtr, valSize)
	if !ok1 || !ok2 {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(v.setProperty(path, val))
}
