//go:build linux

package rlsbench

import (
	"math"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 250 and stime 50 ticks.
	stat := "4242 (rls (x) y) S 1 4242 4242 0 -1 4194560 1510 0 0 0 250 50 0 0 20 0 9 0 123 0 0\n"
	d, err := parseStat([]byte(stat))
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, d)
	for _, bad := range []string{"", "4242 (x S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 1510 0 0 0 2x5 50 0"} {
		_, err := parseStat([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestProcessCPU(t *testing.T) {
	// Use CPU until the kernel has accounted some (in clock ticks, so on a
	// loaded machine a fixed spin may not be scheduled long enough).
	var d time.Duration
	for deadline := time.Now().Add(10 * time.Second); d == 0 && time.Now().Before(deadline); {
		for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
		}
		var err error
		d, err = ProcessCPU(os.Getpid())
		require.NoError(t, err)
	}
	require.Positive(t, d)
	_, err := ProcessCPU(math.MaxInt32) // above any pid_max
	require.ErrorContains(t, err, "rlsbench: server CPU: ")
}
