package envoy

import "context"

// Metrics: define, increment, record and read counters, gauges and histograms
// (proxy-wasm-cpp-host src/exports.cc; Envoy's Context::defineMetric et al.).
var metricFuncs = []hostFunc{
	{name: "proxy_define_metric", fn: proxyDefineMetric},
	{name: "proxy_increment_metric", fn: proxyIncrementMetric},
	{name: "proxy_record_metric", fn: proxyRecordMetric},
	{name: "proxy_get_metric", fn: proxyGetMetric},
}

// proxyDefineMetric defines a metric and returns its id.
func proxyDefineMetric(ctx context.Context, typ, namePtr, nameSize, idPtr uint32) uint32 {
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
}

// proxyIncrementMetric adds to a counter or gauge.
func proxyIncrementMetric(ctx context.Context, id uint32, offset int64) uint32 {
	return uint32(vmFrom(ctx).incrementMetric(id, offset))
}

// proxyRecordMetric records a value (see recordMetric).
func proxyRecordMetric(ctx context.Context, id uint32, value uint64) uint32 {
	return uint32(vmFrom(ctx).recordMetric(id, value))
}

// proxyGetMetric reads a counter or gauge.
func proxyGetMetric(ctx context.Context, id, retPtr uint32) uint32 {
	v := vmFrom(ctx)
	val, st := v.getMetric(id)
	if st != StatusOK {
		return uint32(st)
	}
	if !v.mem.WriteUint64Le(retPtr, val) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
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
