package envoy

import (
	"context"
	"time"
)

// Time and timers: the wall clock and the root context's tick
// (proxy-wasm-cpp-host src/exports.cc get_current_time_nanoseconds,
// set_tick_period_milliseconds).
var timerFuncs = []hostFunc{
	{name: "proxy_get_current_time_nanoseconds", fn: proxyGetCurrentTimeNanoseconds},
	{name: "proxy_set_tick_period_milliseconds", fn: proxySetTickPeriodMilliseconds},
}

// proxyGetCurrentTimeNanoseconds writes the wall clock in Unix nanoseconds.
func proxyGetCurrentTimeNanoseconds(ctx context.Context, retPtr uint32) uint32 {
	v := vmFrom(ctx)
	if !v.mem.WriteUint64Le(retPtr, uint64(time.Now().UnixNano())) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// proxySetTickPeriodMilliseconds (re)arms the tick; 0 stops it. Envoy keeps one
// timer per root context; a stream context sets its root's.
func proxySetTickPeriodMilliseconds(ctx context.Context, period uint32) uint32 {
	v := vmFrom(ctx)
	v.setTick(v.currentRoot(), time.Duration(period)*time.Millisecond)
	return uint32(StatusOK)
}

// setTick (re)arms a root context's timer (Envoy: one timer per root context,
// source/extensions/common/wasm/wasm.cc Wasm::setTickPeriod); 0 disables it.
func (v *vm) setTick(r *rootContext, period time.Duration) {
	if r.tickStop != nil {
		close(r.tickStop)
		r.tickStop = nil
	}
	r.tickPeriod = period
	if period <= 0 || v.closed {
		return
	}
	stop := make(chan struct{})
	r.tickStop = stop
	id := r.id
	go func() {
		t := time.NewTimer(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			v.callAsync(id, "proxy_on_tick", uint64(id))
			t.Reset(period)
		}
	}()
}
