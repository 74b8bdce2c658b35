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
	end := time.Now().Add(30 * time.Millisecond)
	for time.Now().Before(end) { // use some CPU
	}
	d, err := ProcessCPU(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, d)
	_, err = ProcessCPU(math.MaxInt32) // above any pid_max
	require.ErrorContains(t, err, "rlsbench: server CPU: ")
}
