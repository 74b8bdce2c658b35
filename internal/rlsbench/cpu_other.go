//go:build !linux

package rlsbench

import (
	"errors"
	"time"
)

// ProcessCPU reads another process's CPU time from /proc, which only Linux has.
func ProcessCPU(pid int) (time.Duration, error) {
	return 0, errors.New("rlsbench: server CPU: only measured on Linux (/proc/PID/stat)")
}

// ownCPU is not measured outside Linux; CPU figures print as zero.
func ownCPU() time.Duration { return 0 }
