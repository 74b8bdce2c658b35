package envoy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestForeignFunctionsAnswerAsEnvoys: the foreign functions Envoy registers for
// wasm filters (source/extensions/common/wasm/foreign.cc) as the guest sees
// them; names Envoy does not register, or that this host does not emulate, are
// NotFound.
func TestForeignFunctionsAnswerAsEnvoys(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "foreign", up.URL)
	resp, _ := do(t, h, "GET", "/f", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	line, ok := findLog(h, "foreign: ")
	require.True(t, ok, "the guest logged its calls")
	got := map[string]string{}
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	require.Equal(t, map[string]string{
		"compress":             "ok",
		"uncompress":           "ok",
		"roundtrip":            "true",
		"smaller":              "true",
		"uncompress-garbage":   "error_status_returned_by_host:_serialization_failure",
		"clear_route_cache":    "ok",
		"filter_state":         "ok",
		"filter_state_value":   "side/ok",
		"filter_state_unknown": "error_status_returned_by_host:_not_found",
		"declare":              "ok",
		"set1":                 "ok",
		"set2":                 "error_status_returned_by_host:_bad_argument",
		"expr_create":          "error_status_returned_by_host:_not_found",
		"unknown":              "error_status_returned_by_host:_not_found",
	}, got)
}
