package envoy

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// LogLevel is an Envoy (spdlog) log level as the proxy-wasm ABI numbers it.
type LogLevel uint32

// Log levels of proxy_log and proxy_get_log_level.
const (
	LogTrace    LogLevel = 0
	LogDebug    LogLevel = 1
	LogInfo     LogLevel = 2
	LogWarn     LogLevel = 3
	LogError    LogLevel = 4
	LogCritical LogLevel = 5
)

var levelNames = [...]string{"trace", "debug", "info", "warning", "error", "critical"}

// String returns the level as Envoy prints it.
func (l LogLevel) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level%d", uint32(l))
}

// ParseLogLevel reads a level name (trace, debug, info, warn/warning, error, critical).
func ParseLogLevel(s string) (LogLevel, error) {
	switch strings.ToLower(s) {
	case "trace":
		return LogTrace, nil
	case "debug":
		return LogDebug, nil
	case "info", "":
		return LogInfo, nil
	case "warn", "warning":
		return LogWarn, nil
	case "error":
		return LogError, nil
	case "critical":
		return LogCritical, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}

// LogLine is one plugin log line (from proxy_log or from the guest's stdout/stderr).
type LogLine struct {
	Time    time.Time
	Level   LogLevel
	VM      int    // index of the VM (worker) that logged it; -1 for host lines
	Message string // the plugin's message, without prefix
	Text    string // the full line as Envoy would print it
}

// logRing keeps the last lines for Host.Logs and writes each line to an io.Writer.
type logRing struct {
	mu     sync.Mutex
	lines  []LogLine
	start  int
	w      io.Writer
	prefix string // " <plugin> <root_id> <vm_id>", Envoy's PluginBase::makeLogPrefix
}

const logRingSize = 4096

func newLogRing(w io.Writer, pluginName, rootID, vmID string) *logRing {
	if w == nil {
		w = os.Stderr
	}
	return &logRing{w: w, prefix: logPrefix(pluginName, rootID, vmID), lines: make([]LogLine, 0, 64)}
}

// logPrefix is a plugin's log prefix as proxy-wasm-cpp-host src/context.cc
// PluginBase::makeLogPrefix makes it: each non-empty part of name, root id and
// vm id is preceded by one space.
func logPrefix(pluginName, rootID, vmID string) string {
	var p strings.Builder
	for _, s := range []string{pluginName, rootID, vmID} {
		if s != "" {
			p.WriteString(" ")
			p.WriteString(s)
		}
	}
	return p.String()
}

// Log lines follow Envoy's default log format, "[%Y-%m-%d %T.%e][%t][%l][%n]
// [%g:%#] %v" (Envoy's --log-format default, source/server/options_impl.cc):
// time (UTC here), thread id (the worker's index here), level, logger name
// ("wasm"), source file and line, message.

// contextLogLines are the lines of the ENVOY_LOG call, one per level, in
// source/extensions/common/wasm/context.cc Context::log (trace ... critical), as
// a published Envoy 1.34 log shows them (info at 1137); other Envoy versions
// have other numbers, so readers should not depend on them.
var contextLogLines = [...]int{1131, 1134, 1137, 1140, 1143, 1146}

// plugin records a plugin log line: Context::log prints "wasm log{prefix}:
// {message}" under the "wasm" logger, so a line reads
// "[time][thread][level][wasm] [source/extensions/common/wasm/context.cc:1137] wasm log my-plugin root vm: msg".
func (r *logRing) plugin(prefix string, vm int, level LogLevel, msg string) {
	now := time.Now().UTC()
	line := 0
	if int(level) < len(contextLogLines) {
		line = contextLogLines[level]
	}
	text := fmt.Sprintf("[%s][%d][%s][wasm] [source/extensions/common/wasm/context.cc:%d] wasm log%s: %s",
		now.Format("2006-01-02 15:04:05.000"), vm, level, line, prefix, msg)
	r.add(LogLine{Time: now, Level: level, VM: vm, Message: msg, Text: text})
}

// host records a line from the host itself (VM failures, load errors) under the
// same "wasm" logger, without the "wasm log" marker. These are the emulator's
// own messages: their source line is 0.
func (r *logRing) host(vm int, level LogLevel, msg string) {
	now := time.Now().UTC()
	text := fmt.Sprintf("[%s][%d][%s][wasm] [source/extensions/common/wasm/wasm.cc:0]%s: %s",
		now.Format("2006-01-02 15:04:05.000"), vm, level, r.prefix, msg)
	r.add(LogLine{Time: now, Level: level, VM: vm, Message: msg, Text: text})
}

func (r *logRing) add(l LogLine) {
	r.mu.Lock()
	if len(r.lines) < logRingSize {
		r.lines = append(r.lines, l)
	} else {
		r.lines[r.start] = l
		r.start = (r.start + 1) % logRingSize
	}
	_, _ = io.WriteString(r.w, l.Text+"\n")
	r.mu.Unlock()
}

func (r *logRing) snapshot() []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]LogLine, 0, len(r.lines))
	out = append(out, r.lines[r.start:]...)
	out = append(out, r.lines[:r.start]...)
	return out
}
