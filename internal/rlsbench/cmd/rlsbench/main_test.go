package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/rlsbench"
)

func TestCompareDrivesEachServer(t *testing.T) {
	for _, extra := range [][]string{nil, {"-workers", "4"}} {
		var out bytes.Buffer
		args := append([]string{"-compare", "-c", "8", "-d", "0", "-n", "40", "-rounds", "2"}, extra...)
		err := run(context.Background(), args, &out)
		require.NoError(t, err, extra)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 5, out.String())
		for _, l := range lines[:4] {
			require.Contains(t, l, "40 decisions (0 over limit), 0 errors", extra)
		}
		require.True(t, strings.HasPrefix(lines[0], "null "))
		require.True(t, strings.HasPrefix(lines[1], "memory "))
		require.Contains(t, lines[4], "memory/null throughput: ")
		require.Contains(t, lines[4], "median of 2 rounds")
	}
}

func TestTargetsAndSingleRun(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := rlsbench.ServeNull(lis)
	defer gs.Stop()
	addr := lis.Addr().String()

	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-targets", "a=" + addr + ",b=" + addr, "-n", "10", "-d", "0", "-descriptor", "k=v,k2={n}"}, &out))
	require.Contains(t, out.String(), "b/a throughput: ")

	// The server runs in this process: @pid and -also-pid read its CPU.
	out.Reset()
	pid := strconv.Itoa(os.Getpid())
	require.NoError(t, run(context.Background(), []string{"-targets", "a=" + addr + "@" + pid, "-also-pid", pid, "-n", "10", "-d", "0"}, &out))
	require.Contains(t, out.String(), "server (pid "+pid+") ")
	require.Contains(t, out.String(), "; pid "+pid+" ")
	require.Contains(t, out.String(), " per decision\n")

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"-addr", addr, "-n", "7", "-d", "0"}, &out))
	require.Contains(t, out.String(), "7 decisions (0 over limit), 0 errors")
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"-serve", "memory"}, &out))
	require.Contains(t, out.String(), "serving memory on 127.0.0.1:")
}

func TestBadArguments(t *testing.T) {
	cases := map[string]struct {
		args []string
		err  string
	}{
		"bad descriptor": {[]string{"-descriptor", "novalue"}, `descriptor entry "novalue": want key=value`},
		"bad target":     {[]string{"-targets", "nameonly", "-n", "1"}, `-targets: "nameonly": want name=addr`},
		"bad target pid": {[]string{"-targets", "a=127.0.0.1:1@x", "-n", "1"}, `-targets: "a=127.0.0.1:1@x": want a process id after @`},
		"unknown kind":   {[]string{"-serve", "nope"}, `unknown server kind "nope" (null, memory, redis)`},
		"redis without":  {[]string{"-serve", "redis"}, "-redis is required for the redis kind"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), tc.args, &bytes.Buffer{})
			require.ErrorContains(t, err, tc.err)
		})
	}
}
