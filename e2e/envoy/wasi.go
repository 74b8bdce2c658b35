package envoy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// WASI errno values used by proxy-wasm-cpp-host.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNoent   = 44
	errnoNosys   = 52
	errnoNotdir  = 20
	errnoNotsup  = 58
)

// randomGetMax is PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES.
const randomGetMax = 64 << 10

var monoStart = time.Now()

// buildWASI registers the WASI preview1 functions exactly as proxy-wasm-cpp-host
// src/exports.cc defines them, under "wasi_snapshot_preview1" and "wasi_unstable": the
// same names and signatures (path_link and path_symlink keep the host's shorter
// parameter lists, so a module importing the standard ones fails to link as in Envoy),
// stdout/stderr become plugin log lines at info/error, files and sockets are stubs.
//
// poll_oneoff answers success with zero events (proxy-wasm-cpp-host PR#533, in Envoy
// since envoyproxy/envoy#45756); with legacy set it answers ENOSYS as older Envoy did,
// which makes an upstream-Go guest die at its first garbage collection.
//
// Difference from Envoy: proc_exit ends the current call with an exit error (a trap);
// Envoy only logs it and returns into a module that cannot continue.
func (h *Host) buildWASI(ctx context.Context, module string, legacy bool) error {
	b := h.rt.NewHostModuleBuilder(module)
	fn := func(name string, f any) { export(b, name, f) }
	i32 := api.ValueTypeI32
	i64 := api.ValueTypeI64
	// stub registers a function that only returns errno, with an explicit signature.
	stub := func(name string, errno uint32, params ...api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			stack[0] = uint64(errno)
		}), params, []api.ValueType{i32}).Export(name)
	}
	stdio := func(name string, okErrno uint32, params ...api.ValueType) {
		// Success for stdout/stderr, EBADF otherwise (fd is the first parameter).
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			fd := uint32(stack[0])
			if fd != 1 && fd != 2 {
				stack[0] = errnoBadf
				return
			}
			stack[0] = uint64(okErrno)
		}), params, []api.ValueType{i32}).Export(name)
	}

	fn("fd_write", func(ctx context.Context, fd, iovs, iovsLen, nwrittenPtr uint32) uint32 {
		v := vmFrom(ctx)
		n, errno := v.writev(fd, iovs, iovsLen)
		if errno != errnoSuccess {
			return errno
		}
		if !v.putU32(nwrittenPtr, n) {
			return errnoFault
		}
		return errnoSuccess
	})
	fn("fd_pwrite", func(ctx context.Context, fd, iovs, iovsLen uint32, _ uint64, nwrittenPtr uint32) uint32 {
		v := vmFrom(ctx)
		if fd != 1 && fd != 2 {
			return errnoBadf
		}
		n, errno := v.writev(fd, iovs, iovsLen)
		if errno != errnoSuccess {
			return errno
		}
		if !v.putU32(nwrittenPtr, n) {
			return errnoFault
		}
		return errnoSuccess
	})
	stub("fd_read", errnoNosys, i32, i32, i32, i32)
	stub("fd_pread", errnoNosys, i32, i32, i32, i64, i32)
	stub("fd_seek", errnoSuccess, i32, i64, i32, i32)
	stub("fd_close", errnoSuccess, i32)
	stub("path_open", errnoNoent, i32, i32, i32, i32, i32, i64, i64, i32, i32)
	stub("fd_prestat_get", errnoBadf, i32, i32)
	stub("fd_prestat_dir_name", errnoNosys, i32, i32, i32)
	stub("fd_filestat_get", errnoBadf, i32, i32)
	stub("path_filestat_get", errnoNotsup, i32, i32, i32, i32, i32)
	fn("fd_fdstat_get", func(ctx context.Context, fd, statPtr uint32) uint32 {
		if fd != 1 && fd != 2 {
			return errnoBadf
		}
		var st [24]byte
		binary.LittleEndian.PutUint64(st[8:], 64) // fs_rights_base = FD_WRITE
		vmFrom(ctx).mem.Write(statPtr, st[:])
		return errnoSuccess
	})
	stub("fd_fdstat_set_flags", errnoNosys, i32, i32)
	fn("environ_get", func(ctx context.Context, arrayPtr, bufPtr uint32) uint32 {
		v := vmFrom(ctx)
		for _, kv := range v.h.environ {
			if !v.putU32(arrayPtr, bufPtr) || !v.mem.Write(bufPtr, append([]byte(kv), 0)) {
				return errnoFault
			}
			bufPtr += uint32(len(kv) + 1)
			arrayPtr += 4
		}
		return errnoSuccess
	})
	fn("environ_sizes_get", func(ctx context.Context, countPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		size := 0
		for _, kv := range v.h.environ {
			size += len(kv) + 1
		}
		if !v.putU32(countPtr, uint32(len(v.h.environ))) || !v.putU32(sizePtr, uint32(size)) {
			return errnoFault
		}
		return errnoSuccess
	})
	stub("args_get", errnoSuccess, i32, i32)
	fn("args_sizes_get", func(ctx context.Context, argcPtr, sizePtr uint32) uint32 {
		v := vmFrom(ctx)
		if !v.putU32(argcPtr, 0) || !v.putU32(sizePtr, 0) {
			return errnoFault
		}
		return errnoSuccess
	})
	fn("clock_time_get", func(ctx context.Context, id uint32, _ uint64, resultPtr uint32) uint32 {
		var t uint64
		switch id {
		case 0:
			t = uint64(time.Now().UnixNano())
		case 1:
			t = uint64(time.Since(monoStart).Nanoseconds()) + 1
		default:
			return errnoNotsup
		}
		if !vmFrom(ctx).mem.WriteUint64Le(resultPtr, t) {
			return errnoFault
		}
		return errnoSuccess
	})
	fn("clock_res_get", func(ctx context.Context, id, resultPtr uint32) uint32 {
		if id > 1 {
			return errnoNotsup
		}
		if !vmFrom(ctx).mem.WriteUint64Le(resultPtr, 1) {
			return errnoFault
		}
		return errnoSuccess
	})
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
		stack[0] = errnoSuccess
	}), []api.ValueType{i32, i64, i64, i32}, []api.ValueType{i32}).Export("fd_advise")
	stdio("fd_allocate", errnoSuccess, i32, i64, i64)
	stdio("fd_datasync", errnoSuccess, i32)
	stdio("fd_fdstat_set_rights", errnoSuccess, i32, i64, i64)
	stdio("fd_filestat_set_size", errnoSuccess, i32, i64)
	stdio("fd_filestat_set_times", errnoSuccess, i32, i64, i64, i32)
	fn("fd_readdir", func(ctx context.Context, _, _, _ uint32, _ uint64, nreadPtr uint32) uint32 {
		if !vmFrom(ctx).putU32(nreadPtr, 0) {
			return errnoFault
		}
		return errnoNotdir
	})
	fn("fd_renumber", func(fd, to uint32) uint32 {
		if (fd != 1 && fd != 2) || (to != 1 && to != 2) {
			return errnoBadf
		}
		return errnoNotsup
	})
	stdio("fd_sync", errnoSuccess, i32)
	fn("fd_tell", func(ctx context.Context, fd, resultPtr uint32) uint32 {
		if fd != 1 && fd != 2 {
			return errnoBadf
		}
		if !vmFrom(ctx).mem.WriteUint64Le(resultPtr, 0) {
			return errnoFault
		}
		return errnoSuccess
	})
	stub("path_create_directory", errnoNotsup, i32, i32, i32)
	stub("path_filestat_set_times", errnoNotsup, i32, i32, i32, i32, i64, i64, i32)
	stub("path_link", errnoNotsup, i32, i32, i32, i32, i32, i32)
	fn("path_readlink", func(ctx context.Context, _, _, _, _, _, resultPtr uint32) uint32 {
		if !vmFrom(ctx).putU32(resultPtr, 0) {
			return errnoFault
		}
		return errnoNotsup
	})
	stub("path_remove_directory", errnoNotsup, i32, i32, i32)
	stub("path_rename", errnoNotsup, i32, i32, i32, i32, i32, i32)
	stub("path_symlink", errnoNotsup, i32, i32, i32, i32)
	stub("path_unlink_file", errnoNotsup, i32, i32, i32)
	fn("sock_accept", func(ctx context.Context, _, _, resultPtr uint32) uint32 {
		if !vmFrom(ctx).putU32(resultPtr, 0) {
			return errnoFault
		}
		return errnoNotsup
	})
	fn("sock_recv", func(ctx context.Context, _, _, _, _, nPtr, flagsPtr uint32) uint32 {
		v := vmFrom(ctx)
		if !v.putU32(nPtr, 0) || !v.mem.WriteUint16Le(flagsPtr, 0) {
			return errnoFault
		}
		return errnoNotsup
	})
	fn("sock_send", func(ctx context.Context, _, _, _, _, nPtr uint32) uint32 {
		if !vmFrom(ctx).putU32(nPtr, 0) {
			return errnoFault
		}
		return errnoNotsup
	})
	stub("sock_shutdown", errnoNotsup, i32, i32)
	fn("random_get", func(ctx context.Context, ptr, n uint32) uint32 {
		if n > randomGetMax {
			return errnoInval
		}
		if n == 0 {
			return errnoSuccess
		}
		buf := make([]byte, n)
		_, _ = rand.Read(buf)
		if !vmFrom(ctx).mem.Write(ptr, buf) {
			return errnoFault
		}
		return errnoSuccess
	})
	stub("sched_yield", errnoSuccess)
	if legacy {
		// Envoy before envoyproxy/envoy#45756 (proxy-wasm-cpp-host before PR#533).
		stub("poll_oneoff", errnoNosys, i32, i32, i32, i32)
	} else {
		fn("poll_oneoff", func(ctx context.Context, _, _, _, neventsPtr uint32) uint32 {
			if !vmFrom(ctx).putU32(neventsPtr, 0) {
				return errnoFault
			}
			return errnoSuccess
		})
	}
	fn("proc_exit", func(ctx context.Context, code uint32) {
		v := vmFrom(ctx)
		v.h.logs.host(v.idx, LogError, "wasi proc_exit")
		panic(sys.NewExitError(code))
	})
	_, err := b.Instantiate(ctx)
	return err
}

// writev joins the iovecs and logs them as one plugin line (info for stdout, error for
// stderr) without a trailing newline, like proxy-wasm-cpp-host writevImpl.
func (v *vm) writev(fd, iovs, iovsLen uint32) (uint32, uint32) {
	var level LogLevel
	switch fd {
	case 1:
		level = LogInfo
	case 2:
		level = LogError
	default:
		return 0, errnoBadf
	}
	var out []byte
	for i := uint32(0); i < iovsLen; i++ {
		vec, ok := v.mem.Read(iovs+8*i, 8)
		if !ok {
			return 0, errnoFault
		}
		ptr, n := binary.LittleEndian.Uint32(vec), binary.LittleEndian.Uint32(vec[4:])
		if n == 0 {
			continue
		}
		data, ok := v.mem.Read(ptr, n)
		if !ok {
			return 0, errnoFault
		}
		out = append(out, data...)
	}
	written := uint32(len(out))
	if written > 0 {
		if out[len(out)-1] == '\n' {
			out = out[:len(out)-1]
		}
		v.plugin().pluginLog(v, level, string(out))
	}
	return written, errnoSuccess
}
