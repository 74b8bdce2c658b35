package proxywasm

import (
	"math"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// Metric ids are host-defined. Envoy exports a metric named n as
// wasmcustom.n; labels are encoded into the name and extracted with
// stats_tags regexes. Define metrics in OnVMStart or OnPluginStart, never in
// init.
//
// Unlike the TinyGo SDK, defining a metric does not panic: a failed
// definition yields a metric whose Err reports the cause and whose updates
// return it.

// MetricCounter is a monotonically increasing metric.
type MetricCounter struct {
	id  uint32
	err error
}

// DefineCounterMetric defines the counter name.
func DefineCounterMetric(name string) MetricCounter {
	id, st := abi.DefineMetric(abi.MetricCounter, name)
	return MetricCounter{id: id, err: toErr(st)}
}

// Err reports why the counter could not be defined, or nil.
func (m MetricCounter) Err() error { return m.err }

// ID returns the host's metric id.
func (m MetricCounter) ID() uint32 { return m.id }

// Increment adds offset. Envoy rejects offsets of 0 with
// types.ErrorStatusBadArgument; offsets above math.MaxInt64 are rejected
// here the same way.
func (m MetricCounter) Increment(offset uint64) error {
	if m.err != nil {
		return m.err
	}
	if offset > math.MaxInt64 {
		return types.ErrorStatusBadArgument
	}
	return toErr(abi.IncrementMetric(m.id, int64(offset)))
}

// Value returns the counter's current value, 0 when it cannot be read.
func (m MetricCounter) Value() uint64 {
	if m.err != nil {
		return 0
	}
	v, st := abi.GetMetric(m.id)
	if st != abi.StatusOK {
		return 0
	}
	return v
}

// MetricGauge is a metric that goes up and down.
type MetricGauge struct {
	id  uint32
	err error
}

// DefineGaugeMetric defines the gauge name.
func DefineGaugeMetric(name string) MetricGauge {
	id, st := abi.DefineMetric(abi.MetricGauge, name)
	return MetricGauge{id: id, err: toErr(st)}
}

// Err reports why the gauge could not be defined, or nil.
func (m MetricGauge) Err() error { return m.err }

// ID returns the host's metric id.
func (m MetricGauge) ID() uint32 { return m.id }

// Add adds offset, which may be negative.
func (m MetricGauge) Add(offset int64) error {
	if m.err != nil {
		return m.err
	}
	return toErr(abi.IncrementMetric(m.id, offset))
}

// Set sets the gauge to value.
func (m MetricGauge) Set(value uint64) error {
	if m.err != nil {
		return m.err
	}
	return toErr(abi.RecordMetric(m.id, value))
}

// Value returns the gauge's current value, 0 when it cannot be read.
func (m MetricGauge) Value() int64 {
	if m.err != nil {
		return 0
	}
	v, st := abi.GetMetric(m.id)
	if st != abi.StatusOK {
		return 0
	}
	return int64(v)
}

// MetricHistogram records a distribution of values.
type MetricHistogram struct {
	id  uint32
	err error
}

// DefineHistogramMetric defines the histogram name.
func DefineHistogramMetric(name string) MetricHistogram {
	id, st := abi.DefineMetric(abi.MetricHistogram, name)
	return MetricHistogram{id: id, err: toErr(st)}
}

// Err reports why the histogram could not be defined, or nil.
func (m MetricHistogram) Err() error { return m.err }

// ID returns the host's metric id.
func (m MetricHistogram) ID() uint32 { return m.id }

// Record records value.
func (m MetricHistogram) Record(value uint64) error {
	if m.err != nil {
		return m.err
	}
	return toErr(abi.RecordMetric(m.id, value))
}
