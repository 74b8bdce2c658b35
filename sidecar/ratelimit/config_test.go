package ratelimit_test

import (
	"os"
	"path/filepath"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

func TestConfigErrors(t *testing.T) {
	cases := map[string]string{
		"unknown_unit.yaml":           `descriptors[1].rate_limit.unit: unknown unit "fortnight"`,
		"missing_unit.yaml":           `descriptors[0].rate_limit.unit: must be set (second, minute, hour, day, week, month or year)`,
		"missing_rpu.yaml":            `descriptors[0].rate_limit.requests_per_unit: must be set`,
		"negative_rpu.yaml":           `descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295`,
		"fractional_rpu.yaml":         `descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295`,
		"huge_rpu.yaml":               `descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295`,
		"missing_domain.yaml":         `domain: must not be empty`,
		"empty_key.yaml":              `descriptors[0].key: must not be empty`,
		"duplicate_value.yaml":        `descriptors[1]: duplicate descriptor key "a" value "x"`,
		"duplicate_key.yaml":          `descriptors[1]: duplicate descriptor key "a"`,
		"duplicate_wildcard.yaml":     `descriptors[1]: duplicate descriptor key "a" value "x*"`,
		"unknown_field.yaml":          `descriptors[0].descriptors[0].rate_limit.burst: unknown field`,
		"unlimited_with_unit.yaml":    `descriptors[0].rate_limit.unit: must not be set when unlimited is true`,
		"shadow_not_bool.yaml":        `descriptors[0].shadow_mode: must be true or false`,
		"descriptors_not_list.yaml":   `descriptors: must be a list`,
		"replaces_self.yaml":          `descriptors[0].rate_limit.replaces[0].name: must not name its own limit "r"`,
		"replaces_empty.yaml":         `descriptors[0].rate_limit.replaces[0].name: must not be empty`,
		"share_without_wildcard.yaml": `descriptors[0].share_threshold: needs a wildcard value (one with '*')`,
		"quota_not_bool.yaml":         `descriptors[0].quota_mode: must be true or false`,
		"rpu_float.yaml":              `descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295`,
		"rpu_exponent.yaml":           `descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295`,
		"rpu_quoted.yaml":             `descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295`,
		"duplicate_field.yaml":        `invalid yaml: line 4: duplicate field "key"`,
		"root_not_mapping.yaml":       `must be a mapping with domain and descriptors`,
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", file)
			_, err := ratelimit.LoadConfig(path)
			require.EqualError(t, err, path+": "+want)
		})
	}
}

func TestConfigInvalidYAMLNamesTheFile(t *testing.T) {
	path := filepath.Join("testdata", "bad", "invalid_yaml.yaml")
	_, err := ratelimit.LoadConfig(path)
	require.ErrorContains(t, err, path+": invalid yaml: ")
}

func TestConfigDuplicateDomainAcrossFiles(t *testing.T) {
	_, err := ratelimit.LoadConfig(filepath.Join("testdata", "dupdomain"))
	require.EqualError(t, err, filepath.Join("testdata", "dupdomain", "2.yaml")+`: domain: duplicate domain "llm" (also in `+filepath.Join("testdata", "dupdomain", "1.yaml")+`)`)
}

func TestConfigMissingFile(t *testing.T) {
	_, err := ratelimit.LoadConfig(filepath.Join("testdata", "nope.yaml"))
	require.ErrorContains(t, err, "rate limit config: ")
	require.ErrorContains(t, err, "nope.yaml")
}

// TestConfigDirectoryLoadsEveryFile loads a directory as
// envoyproxy/ratelimit's runtime loader does: every file whatever its name
// (.yaml, .yml, .json, none), in sub-directories too; hidden files and
// directories (an unparsable .hidden.yaml, a .hidden-dir/ repeating domain
// a) are skipped.
func TestConfigDirectoryLoadsEveryFile(t *testing.T) {
	cfg, err := ratelimit.LoadConfig(filepath.Join("testdata", "multi"))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c", "d"}, cfg.Domains())
	c := cfg.Lookup("c", []string{"k"}, []string{"v"})
	require.NotNil(t, c)
	require.Equal(t, uint32(9), c.RequestsPerUnit)
	require.Equal(t, int64(86400), c.Period())
	require.Equal(t, uint32(4), cfg.Lookup("d", []string{"k"}, []string{"v"}).RequestsPerUnit)
	l := cfg.Lookup("b", []string{"k"}, []string{"anything"})
	require.NotNil(t, l)
	require.Equal(t, uint32(7), l.RequestsPerUnit)
	require.Equal(t, rlsv3.RateLimitResponse_RateLimit_HOUR, l.Unit)
	require.Equal(t, int64(3600), l.Period())
	require.Equal(t, "b.k", l.FullKey)
}

// TestConfigDirectoryAsConfigMapMount loads a directory laid out the way
// Kubernetes mounts a ConfigMap: files are symlinks into a hidden, dated
// directory reached through the "..data" symlink.
func TestConfigDirectoryAsConfigMapMount(t *testing.T) {
	dir := t.TempDir()
	dated := filepath.Join(dir, "..2026_11_27_04_00_00.000000001")
	require.NoError(t, os.Mkdir(dated, 0o755))
	data, err := os.ReadFile(filepath.Join("testdata", "multi", "a.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dated, "a.yaml"), data, 0o644))
	require.NoError(t, os.Symlink(filepath.Base(dated), filepath.Join(dir, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "a.yaml"), filepath.Join(dir, "a.yaml")))

	cfg, err := ratelimit.LoadConfig(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, cfg.Domains())
}

func TestConfigEmpty(t *testing.T) {
	cfg, err := ratelimit.LoadConfig("")
	require.NoError(t, err)
	require.Empty(t, cfg.Domains())
	require.Nil(t, cfg.Lookup("llm", []string{"user"}, []string{"x"}))
}

func TestConfigLookup(t *testing.T) {
	cfg, err := ratelimit.LoadConfig(filepath.Join("testdata", "limits.yaml"))
	require.NoError(t, err)
	cases := []struct {
		name    string
		domain  string
		keys    []string
		values  []string
		wantKey string // "" means no limit
	}{
		{"key-only default", "llm", []string{"user"}, []string{"alice"}, "llm.user"},
		{"empty value takes the default", "llm", []string{"user"}, []string{""}, "llm.user"},
		{"value-specific wins", "llm", []string{"user"}, []string{"vip"}, "llm.user_vip"},
		{"unlimited entry", "llm", []string{"user"}, []string{"free"}, "llm.user_free"},
		{"nested default", "llm", []string{"route", "model"}, []string{"chat", "llama"}, "llm.route_chat.model"},
		{"nested specific", "llm", []string{"route", "model"}, []string{"chat", "gpt-4"}, "llm.route_chat.model_gpt-4"},
		{"parent without a limit", "llm", []string{"route"}, []string{"chat"}, ""},
		{"unconfigured parent value", "llm", []string{"route", "model"}, []string{"embed", "x"}, ""},
		{"deeper than the config", "llm", []string{"user", "model"}, []string{"alice", "x"}, ""},
		{"unknown key", "llm", []string{"team"}, []string{"x"}, ""},
		{"unknown domain", "other", []string{"user"}, []string{"alice"}, ""},
		{"no entries", "llm", nil, nil, ""},
		{"exact value beats a wildcard", "llm", []string{"path"}, []string{"/v1/chat/completions"}, "llm.path_/v1/chat/completions"},
		{"trailing wildcard", "llm", []string{"path"}, []string{"/v1/chat/other"}, "llm.path_/v1/chat/*"},
		{"trailing wildcard matches empty", "llm", []string{"path"}, []string{"/v1/chat/"}, "llm.path_/v1/chat/*"},
		{"middle wildcard", "llm", []string{"path"}, []string{"/v1/x/embeddings"}, "llm.path_/v1/*/embed*"},
		{"wildcard needs its parts in order", "llm", []string{"path"}, []string{"/v1/embed"}, "llm.path"},
		{"no wildcard matches: default", "llm", []string{"path"}, []string{"/v2/chat/x"}, "llm.path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := cfg.Lookup(tc.domain, tc.keys, tc.values)
			if tc.wantKey == "" {
				require.Nil(t, l)
				return
			}
			require.NotNil(t, l)
			require.Equal(t, tc.wantKey, l.FullKey)
		})
	}
	free := cfg.Lookup("llm", []string{"user"}, []string{"free"})
	require.True(t, free.Unlimited)
	vip := cfg.Lookup("llm", []string{"user"}, []string{"vip"})
	require.Equal(t, rlsv3.RateLimitResponse_RateLimit_MINUTE, vip.Unit, "units are case-insensitive")
}

func TestParseConfigScalarValues(t *testing.T) {
	cfg, err := ratelimit.ParseConfig("inline.yaml", []byte(`
domain: d
descriptors:
  - key: port
    value: 8080
    rate_limit: {unit: week, requests_per_unit: 5}
  - key: flag
    value: true
    rate_limit: {unit: year, requests_per_unit: 6}
`))
	require.NoError(t, err)
	require.Equal(t, uint32(5), cfg.Lookup("d", []string{"port"}, []string{"8080"}).RequestsPerUnit)
	require.Equal(t, int64(7*86400), cfg.Lookup("d", []string{"port"}, []string{"8080"}).Period())
	require.Equal(t, uint32(6), cfg.Lookup("d", []string{"flag"}, []string{"true"}).RequestsPerUnit)
	require.Equal(t, int64(365*86400), cfg.Lookup("d", []string{"flag"}, []string{"true"}).Period())
}

// TestConfigYAML11Scalars reads the scalars envoyproxy/ratelimit reads with
// gopkg.in/yaml.v2 into string, bool and uint32 fields: strings keep the
// text as written (yes, 0x1F, 010, 1.50, a date, n), bools and integers
// take YAML 1.1's forms.
func TestConfigYAML11Scalars(t *testing.T) {
	cfg, err := ratelimit.LoadConfig(filepath.Join("testdata", "yaml11.yaml"))
	require.NoError(t, err)
	cases := []struct {
		key, value string
		fullKey    string
		rpu        uint32
		shadow     bool
		quota      bool
		name       string
	}{
		{"answer", "yes", "yaml11.answer_yes", 31, false, false, ""},
		{"answer", "no", "yaml11.answer_no", 8, true, false, ""},
		{"hex", "0x1F", "yaml11.hex_0x1F", 1000, false, false, ""},
		{"octal", "010", "yaml11.octal_010", 5, false, false, ""},
		{"float", "1.50", "yaml11.float_1.50", 15, false, false, ""},
		{"date", "2026-12-03", "yaml11.date_2026-12-03", 3, false, true, ""},
		{"quoted", "on", "yaml11.quoted_on", 2, false, false, "n"},
		{"null-value", "anything", "yaml11.null-value", 6, false, false, ""},
		{"anchored", "x", "yaml11.anchored", 11, false, false, ""},
		{"aliased", "x", "yaml11.aliased", 11, false, false, ""},
		{"merged", "x", "yaml11.merged", 12, false, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			l := cfg.Lookup("yaml11", []string{tc.key}, []string{tc.value})
			require.NotNil(t, l)
			require.Equal(t, tc.fullKey, l.FullKey)
			require.Equal(t, tc.rpu, l.RequestsPerUnit)
			require.Equal(t, tc.shadow, l.ShadowMode)
			require.Equal(t, tc.quota, l.QuotaMode)
			require.Equal(t, tc.name, l.Name)
		})
	}
	require.Nil(t, cfg.Lookup("yaml11", []string{"answer"}, []string{"true"}), "yes is not true in a string field")
	require.Nil(t, cfg.Lookup("yaml11", []string{"hex"}, []string{"31"}), "0x1F is not 31 in a string field")
	require.Equal(t, rlsv3.RateLimitResponse_RateLimit_HOUR, cfg.Lookup("yaml11", []string{"merged"}, []string{"x"}).Unit)
}

// TestConfigQuotaAndShareFields loads quota_mode and share_threshold
// (with metadata beside them) into the limits they mark.
func TestConfigQuotaAndShareFields(t *testing.T) {
	cfg, err := ratelimit.LoadConfig(filepath.Join("testdata", "features"))
	require.NoError(t, err)
	require.Equal(t, []string{"quotas", "shared"}, cfg.Domains())
	search := cfg.Lookup("quotas", []string{"team"}, []string{"search"})
	require.NotNil(t, search)
	require.True(t, search.QuotaMode)
	require.Equal(t, uint32(100), search.RequestsPerUnit)
	require.False(t, cfg.Lookup("quotas", []string{"team"}, []string{"ads"}).QuotaMode)
	require.Equal(t, "shared.bucket_uploads/*", cfg.Lookup("shared", []string{"bucket"}, []string{"uploads/a"}).FullKey)
	require.Equal(t, "shared.bucket_logs/*", cfg.Lookup("shared", []string{"bucket"}, []string{"logs/a"}).FullKey)
}
