package envoy

import (
	"context"
	"time"
)

// buildEnv registers the proxy-wasm host functions (module "env") the way
// proxy-wasm-cpp-host src/exports.cc and Envoy's source/extensions/common/wasm/context.cc
// implement them. A function a module imports that is not here fails the load, as in
// Envoy. As in proxy-wasm-cpp-host src/wasm.cc registerCallbacks, some functions exist
// only for some ABI versions: get_configuration, continue_request, continue_response
// and clear_route_cache for 0.1.0; continue_stream and close_stream for 0.2.x;
// get_log_level for 0.2.1.
func (h *Host) buildEnv(ctx context.Context, abi string) error {
	b := h.rt.NewHostModuleBuilder("env")
	abiOnly := map[string][]string{
		"proxy_get_configuration": {abi010}, "proxy_continue_request": {abi010},
		"proxy_continue_response": {abi010}, "proxy_clear_route_cache": {abi010},
		"proxy_continue_stream": {abi020, abi021}, "proxy_close_stream": {abi020, abi021},
		"proxy_get_log_level": {abi021},
	}
	fn := func(name string, f any) {
		if versions, ok := abiOnly[name]; ok {
			found := false
			for _, v := range versions {
				found = found || v == abi
			}
			if !found {
				return
			}
		}
		if h.cfg.TimeHostCalls {
			exportTimed(b, name, f)
			return
		}
		export(b, name, f)
	}

	// Logging.
	fn("proxy_log", func(ctx context.Context, level, ptr, size uint32) uint32 {
		v := vmFrom(ctx)
		if level > uint32(LogCritical) {
			return uint32(StatusBadArgument)
		}
		msg, ok := v.readString(ptr, size)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		v.h.pluginLog(v, LogLevel(level), msg)
		return uint32(StatusOK)
	})
	fn("proxy_get_log_level", func(ctx context.Context, retPtr uint32) uint32 {
		v := vmFrom(ctx)
		if !v.putU32(retPtr, uint32(v.h.logLevel)) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})

	// Time and timers.
	fn("proxy_get_current_time_nanoseconds", func(ctx context.Context, retPtr uint32) uint32 {
		v := vmFrom(ctx)
		if !v.mem.WriteUint64Le(retPtr, uint64(time.Now().UnixNano())) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_set_tick_period_milliseconds", func(ctx context.Context, period uint32) uint32 {
		v := vmFrom(ctx)
		// Envoy keeps one timer per root context; a stream context sets its root's.
		v.setTick(time.Duration(period) * time.Millisecond)
		return uint32(StatusOK)
	})

	// Configuration (ABI 0.1.0) and buffers.
	fn("proxy_get_configuration", func(ctx context.Context, ptrPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		data := v.h.cfg.VMConfig
		if v.configuring {
			data = v.pluginConfig
		}
		return uint32(v.copyOut(data, ptrPtr, sizePtr))
	})
	fn("proxy_get_buffer_bytes", func(ctx context.Context, typ, start, length, ptrPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		if typ > bufMax {
			return uint32(StatusBadArgument)
		}
		buf, st := v.buffer(typ)
		if st != StatusOK {
			return uint32(st)
		}
		if uint64(start)+uint64(length) > 0xffffffff {
			return uint32(StatusBadArgument)
		}
		// proxy-wasm-cpp-host src/exports.cc get_buffer_bytes: never read past the end;
		// a zero length returns Ok without touching the return pointers.
		if start > uint32(len(buf)) {
			return uint32(StatusOK)
		}
		if start+length > uint32(len(buf)) {
			length = uint32(len(buf)) - start
		}
		if length == 0 {
			return uint32(StatusOK)
		}
		return uint32(v.copyOut(buf[start:start+length], ptrPtr, sizePtr))
	})
	fn("proxy_get_buffer_status", func(ctx context.Context, typ, lengthPtr, flagsPtr uint32) uint32 {
		v := vmFrom(ctx)
		if typ > bufMax {
			return uint32(StatusBadArgument)
		}
		buf, st := v.buffer(typ)
		if st != StatusOK {
			return uint32(st)
		}
		if !v.putU32(lengthPtr, uint32(len(buf))) || !v.putU32(flagsPtr, 0) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_set_buffer_bytes", func(ctx context.Context, typ, start, length, dataPtr, dataSize uint32) uint32 {
		v := vmFrom(ctx)
		if typ > bufMax {
			return uint32(StatusBadArgument)
		}
		data, ok := v.read(dataPtr, dataSize)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(v.setBuffer(typ, start, length, data))
	})

	// Header maps.
	fn("proxy_get_header_map_value", func(ctx context.Context, typ, keyPtr, keySize, ptrPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		if typ > mapMax {
			return uint32(StatusBadArgument)
		}
		key, ok := v.readString(keyPtr, keySize)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		m := v.headerMap(typ)
		if m == nil {
			return uint32(StatusBadArgument)
		}
		val, found := m.get(key)
		if !found {
			return uint32(StatusNotFound)
		}
		return uint32(v.copyOutString(val, ptrPtr, sizePtr))
	})
	fn("proxy_get_header_map_pairs", func(ctx context.Context, typ, ptrPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		if typ > mapMax {
			return uint32(StatusBadArgument)
		}
		// Envoy's getHeaderMapPairs answers Ok with no pairs for a map not available now.
		var ps []pair
		if m := v.headerMap(typ); m != nil {
			ps = *m.ps
		}
		v.pairsBuf = appendPairs(v.pairsBuf[:0], ps)
		return uint32(v.copyOut(v.pairsBuf, ptrPtr, sizePtr))
	})
	fn("proxy_set_header_map_pairs", func(ctx context.Context, typ, ptr, size uint32) uint32 {
		v := vmFrom(ctx)
		if typ > mapMax {
			return uint32(StatusBadArgument)
		}
		data, ok := v.read(ptr, size)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		m := v.mutableHeaderMap(typ)
		if m == nil {
			return uint32(StatusBadArgument)
		}
		ps, _ := decodePairs(data)
		m.setAll(ps)
		v.headersModified(typ)
		return uint32(StatusOK)
	})
	fn("proxy_add_header_map_value", func(ctx context.Context, typ, keyPtr, keySize, valPtr, valSize uint32) uint32 {
		return uint32(vmFrom(ctx).modifyHeader(typ, keyPtr, keySize, valPtr, valSize, func(m headerMap, k, val string) { m.add(k, val) }))
	})
	fn("proxy_replace_header_map_value", func(ctx context.Context, typ, keyPtr, keySize, valPtr, valSize uint32) uint32 {
		return uint32(vmFrom(ctx).modifyHeader(typ, keyPtr, keySize, valPtr, valSize, func(m headerMap, k, val string) { m.set(k, val) }))
	})
	fn("proxy_remove_header_map_value", func(ctx context.Context, typ, keyPtr, keySize uint32) uint32 {
		return uint32(vmFrom(ctx).modifyHeader(typ, keyPtr, keySize, 0, 0, func(m headerMap, k, _ string) { m.del(k) }))
	})
	fn("proxy_get_header_map_size", func(ctx context.Context, typ, retPtr uint32) uint32 {
		v := vmFrom(ctx)
		if typ > mapMax {
			return uint32(StatusBadArgument)
		}
		m := v.mutableHeaderMap(typ)
		if m == nil {
			return uint32(StatusBadArgument)
		}
		if !v.putU32(retPtr, uint32(m.byteSize())) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})

	// Properties.
	fn("proxy_get_property", func(ctx context.Context, pathPtr, pathSize, ptrPtr, sizePtr uint32) uint32 {
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
	})
	fn("proxy_set_property", func(ctx context.Context, pathPtr, pathSize, valPtr, valSize uint32) uint32 {
		v := vmFrom(ctx)
		path, ok1 := v.readString(pathPtr, pathSize)
		val, ok2 := v.read(valPtr, valSize)
		if !ok1 || !ok2 {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(v.setProperty(path, val))
	})

	// Stream control.
	fn("proxy_send_local_response", func(ctx context.Context, code, detPtr, detSize, bodyPtr, bodySize, hdrPtr, hdrSize uint32, grpcStatus int32) uint32 {
		v := vmFrom(ctx)
		details, ok1 := v.readString(detPtr, detSize)
		body, ok2 := v.read(bodyPtr, bodySize)
		hdrs, ok3 := v.read(hdrPtr, hdrSize)
		if !ok1 || !ok2 || !ok3 {
			return uint32(StatusInvalidMemoryAccess)
		}
		ps, _ := decodePairs(hdrs)
		v.sendLocalResponse(int(code), details, body, ps, grpcStatus)
		return uint32(StatusOK)
	})
	fn("proxy_continue_stream", func(ctx context.Context, typ uint32) uint32 {
		return uint32(vmFrom(ctx).continueStream(typ))
	})
	fn("proxy_close_stream", func(ctx context.Context, typ uint32) uint32 {
		return uint32(vmFrom(ctx).closeStream(typ))
	})
	fn("proxy_continue_request", func(ctx context.Context) uint32 {
		return uint32(vmFrom(ctx).continueStream(streamRequest))
	})
	fn("proxy_continue_response", func(ctx context.Context) uint32 {
		return uint32(vmFrom(ctx).continueStream(streamResponse))
	})
	fn("proxy_clear_route_cache", func(ctx context.Context) uint32 {
		v := vmFrom(ctx)
		if s := v.currentStream(); s != nil {
			s.routeCleared = true
		}
		return uint32(StatusOK)
	})
	fn("proxy_set_effective_context", func(ctx context.Context, id uint32) uint32 {
		v := vmFrom(ctx)
		if id != v.rootID && v.streams[id] == nil {
			return uint32(StatusBadArgument)
		}
		v.effective = id
		return uint32(StatusOK)
	})
	fn("proxy_done", func(ctx context.Context) uint32 {
		// WasmBase::done: only a root context that answered proxy_on_done with false
		// may call it; this host never defers a root context's deletion.
		return uint32(StatusNotFound)
	})
	fn("proxy_get_status", func(ctx context.Context, codePtr, ptrPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		if !v.putU32(codePtr, v.statusCode) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(v.copyOut([]byte(v.statusMsg), ptrPtr, sizePtr))
	})
	fn("proxy_call_foreign_function", func(ctx context.Context, namePtr, nameSize, argPtr, argSize, retPtr, retSize uint32) uint32 {
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
	})

	// Shared data and queues.
	fn("proxy_get_shared_data", func(ctx context.Context, keyPtr, keySize, ptrPtr, sizePtr, casPtr uint32) uint32 {
		v := vmFrom(ctx)
		key, ok := v.readString(keyPtr, keySize)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		val, cas, st := v.h.shared.get(v.h.cfg.VMID, key)
		if st != StatusOK {
			return uint32(st)
		}
		if st := v.copyOut(val, ptrPtr, sizePtr); st != StatusOK {
			return uint32(st)
		}
		if !v.putU32(casPtr, cas) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_set_shared_data", func(ctx context.Context, keyPtr, keySize, valPtr, valSize, cas uint32) uint32 {
		v := vmFrom(ctx)
		key, ok1 := v.readString(keyPtr, keySize)
		val, ok2 := v.read(valPtr, valSize)
		if !ok1 || !ok2 {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(v.h.shared.set(v.h.cfg.VMID, key, val, cas))
	})
	fn("proxy_register_shared_queue", func(ctx context.Context, namePtr, nameSize, tokenPtr uint32) uint32 {
		v := vmFrom(ctx)
		name, ok := v.readString(namePtr, nameSize)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		// Envoy registers the queue for the calling context's root context.
		tok := v.h.queues.register(v.h.cfg.VMID, name, v, v.rootID)
		if !v.putU32(tokenPtr, tok) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_resolve_shared_queue", func(ctx context.Context, vmPtr, vmSize, namePtr, nameSize, tokenPtr uint32) uint32 {
		v := vmFrom(ctx)
		vmID, ok1 := v.readString(vmPtr, vmSize)
		name, ok2 := v.readString(namePtr, nameSize)
		if !ok1 || !ok2 {
			return uint32(StatusInvalidMemoryAccess)
		}
		tok, st := v.h.queues.resolve(vmID, name)
		if st != StatusOK {
			return uint32(st)
		}
		if !v.putU32(tokenPtr, tok) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_enqueue_shared_queue", func(ctx context.Context, tok, dataPtr, dataSize uint32) uint32 {
		v := vmFrom(ctx)
		data, ok := v.read(dataPtr, dataSize)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		target, ctxID, st := v.h.queues.enqueue(tok, data)
		if st != StatusOK {
			return uint32(st)
		}
		if target != nil {
			// Envoy posts on_queue_ready to the registrant's worker; it never runs inline.
			go target.callAsync(ctxID, "proxy_on_queue_ready", uint64(ctxID), uint64(tok))
		}
		return uint32(StatusOK)
	})
	fn("proxy_dequeue_shared_queue", func(ctx context.Context, tok, ptrPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		data, st := v.h.queues.dequeue(tok)
		if st != StatusOK {
			return uint32(st)
		}
		return uint32(v.copyOut(data, ptrPtr, sizePtr))
	})

	// Metrics.
	fn("proxy_define_metric", func(ctx context.Context, typ, namePtr, nameSize, idPtr uint32) uint32 {
		v := vmFrom(ctx)
		if typ > metricHistogram {
			return uint32(StatusBadArgument)
		}
		name, ok := v.readString(namePtr, nameSize)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		id := v.defineMetric(int(typ), name)
		if !v.putU32(idPtr, id) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_increment_metric", func(ctx context.Context, id uint32, offset int64) uint32 {
		return uint32(vmFrom(ctx).incrementMetric(id, offset))
	})
	fn("proxy_record_metric", func(ctx context.Context, id uint32, value uint64) uint32 {
		return uint32(vmFrom(ctx).recordMetric(id, value))
	})
	fn("proxy_get_metric", func(ctx context.Context, id, retPtr uint32) uint32 {
		v := vmFrom(ctx)
		val, st := v.getMetric(id)
		if st != StatusOK {
			return uint32(st)
		}
		if !v.mem.WriteUint64Le(retPtr, val) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})

	// HTTP and gRPC callouts.
	fn("proxy_http_call", func(ctx context.Context, uriPtr, uriSize, hdrPtr, hdrSize, bodyPtr, bodySize, trPtr, trSize, timeout, tokenPtr uint32) uint32 {
		v := vmFrom(ctx)
		uri, ok1 := v.readString(uriPtr, uriSize)
		hdrs, ok2 := v.read(hdrPtr, hdrSize)
		body, ok3 := v.read(bodyPtr, bodySize)
		trs, ok4 := v.read(trPtr, trSize)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return uint32(StatusInvalidMemoryAccess)
		}
		// src/exports.cc http_call writes the token first to check the pointer.
		if !v.putU32(tokenPtr, 0) {
			return uint32(StatusInvalidMemoryAccess)
		}
		hp, _ := decodePairs(hdrs)
		tp, _ := decodePairs(trs)
		tok, st := v.httpCall(uri, hp, body, tp, int32(timeout))
		v.putU32(tokenPtr, tok)
		return uint32(st)
	})
	fn("proxy_grpc_call", func(ctx context.Context, svcPtr, svcSize, namePtr, nameSize, methPtr, methSize, mdPtr, mdSize, msgPtr, msgSize, timeout, tokenPtr uint32) uint32 {
		v := vmFrom(ctx)
		svc, ok1 := v.read(svcPtr, svcSize)
		name, ok2 := v.readString(namePtr, nameSize)
		meth, ok3 := v.readString(methPtr, methSize)
		md, ok4 := v.read(mdPtr, mdSize)
		msg, ok5 := v.read(msgPtr, msgSize)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return uint32(StatusInvalidMemoryAccess)
		}
		mp, _ := decodePairs(md)
		tok, st := v.grpcCall(svc, name, meth, mp, msg, time.Duration(timeout)*time.Millisecond)
		if st != StatusOK {
			return uint32(st)
		}
		if !v.putU32(tokenPtr, tok) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_grpc_stream", func(ctx context.Context, svcPtr, svcSize, namePtr, nameSize, methPtr, methSize, mdPtr, mdSize, tokenPtr uint32) uint32 {
		v := vmFrom(ctx)
		svc, ok1 := v.read(svcPtr, svcSize)
		name, ok2 := v.readString(namePtr, nameSize)
		meth, ok3 := v.readString(methPtr, methSize)
		md, ok4 := v.read(mdPtr, mdSize)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return uint32(StatusInvalidMemoryAccess)
		}
		mp, _ := decodePairs(md)
		tok, st := v.grpcStreamOpen(svc, name, meth, mp)
		if st != StatusOK {
			return uint32(st)
		}
		if !v.putU32(tokenPtr, tok) {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(StatusOK)
	})
	fn("proxy_grpc_send", func(ctx context.Context, tok, msgPtr, msgSize, endStream uint32) uint32 {
		v := vmFrom(ctx)
		msg, ok := v.read(msgPtr, msgSize)
		if !ok {
			return uint32(StatusInvalidMemoryAccess)
		}
		return uint32(v.grpcSend(tok, msg, endStream != 0))
	})
	fn("proxy_grpc_cancel", func(ctx context.Context, tok uint32) uint32 {
		return uint32(vmFrom(ctx).grpcCancel(tok))
	})
	fn("proxy_grpc_close", func(ctx context.Context, tok uint32) uint32 {
		return uint32(vmFrom(ctx).grpcClose(tok))
	})

	// Emscripten leftovers proxy-wasm-cpp-host also provides.
	fn("pthread_equal", func(a, b uint32) uint32 {
		if a == b {
			return 1
		}
		return 0
	})
	fn("emscripten_notify_memory_growth", func(uint32) {})

	_, err := b.Instantiate(ctx)
	return err
}

// Metrics of one VM: ids are per VM, stats are shared by name across VMs like Envoy's
// stats store (source/extensions/common/wasm/context.cc defineMetric et al.).

func (v *vm) defineMetric(kind int, name string) uint32 {
	var id uint32
	switch kind {
	case metricCounter:
		v.nextCounterID += metricIDStep
		id = v.nextCounterID
	case metricGauge:
		v.nextGaugeID += metricIDStep
		id = v.nextGaugeID
	default:
		v.nextHistID += metricIDStep
		id = v.nextHistID
	}
	v.metrics[id] = v.h.stats.get(kind, customNamespace+"."+name)
	return id
}

// incrementMetric: counters accept only positive deltas (BadArgument otherwise);
// gauges add or subtract; histograms cannot be incremented (BadArgument).
func (v *vm) incrementMetric(id uint32, offset int64) Status {
	switch id & metricTypeMask {
	case metricCounter:
		m := v.metrics[id]
		if m == nil {
			return StatusNotFound
		}
		if offset <= 0 {
			return StatusBadArgument
		}
		m.value.Add(offset)
		return StatusOK
	case metricGauge:
		m := v.metrics[id]
		if m == nil {
			return StatusNotFound
		}
		m.value.Add(offset)
		return StatusOK
	}
	return StatusBadArgument
}

// recordMetric: counters add, gauges set, histograms record.
func (v *vm) recordMetric(id uint32, value uint64) Status {
	m := v.metrics[id]
	if m == nil {
		return StatusNotFound
	}
	switch id & metricTypeMask {
	case metricCounter:
		m.value.Add(int64(value))
	case metricGauge:
		m.value.Store(int64(value))
	case metricHistogram:
		m.record(value)
	default:
		return StatusNotFound
	}
	return StatusOK
}

// getMetric: counters and gauges only; a histogram id answers BadArgument.
func (v *vm) getMetric(id uint32) (uint64, Status) {
	switch id & metricTypeMask {
	case metricCounter, metricGauge:
		m := v.metrics[id]
		if m == nil {
			return 0, StatusNotFound
		}
		return uint64(m.value.Load()), StatusOK
	}
	return 0, StatusBadArgument
}
