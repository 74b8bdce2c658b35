package envoy

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every step of a VM's start is timed, per worker, and a new configuration's
// VMs report their own start.
func TestStartTimings(t *testing.T) {
	up := echoUpstream(t)
	began := time.Now()
	h := newHost(t, "basic", up.URL, func(c *Config) { c.Workers = 2 })
	wall := time.Since(began)
	first := h.StartTimings()
	require.Len(t, first, 2)
	for _, st := range first {
		require.Positive(t, st.Instantiate)
		require.Positive(t, st.Initialize)
		require.Positive(t, st.Start)
		require.Positive(t, st.Configure)
		require.Equal(t, st.Instantiate+st.Initialize+st.Start+st.Configure, st.Total())
		require.Less(t, st.Total(), wall)
	}
	require.NoError(t, h.Reconfigure([]byte("replace")))
	again := h.StartTimings()
	require.Len(t, again, 2)
	require.NotEqual(t, first, again)

	bare, err := New(context.Background(), Config{NoPlugin: true, LogWriter: io.Discard})
	require.NoError(t, err)
	defer bare.Close(context.Background())
	require.Equal(t, []VMStartTimings{{}}, bare.StartTimings())
}
