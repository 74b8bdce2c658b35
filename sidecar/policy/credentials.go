package policy

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/shepherd-mesh/shepherd/sidecar/config"
)

// Secret is a credential value. It formats and logs as "[redacted]" so it
// cannot leak through fmt or slog by accident.
type Secret string

// String hides the value.
func (Secret) String() string { return "[redacted]" }

// GoString hides the value.
func (Secret) GoString() string { return "[redacted]" }

// LogValue hides the value from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// maxCredentialSize bounds a credential file; secrets are small.
const maxCredentialSize = 64 << 10

// credential is one provider's credential as last read from its file.
type credential struct {
	provider string
	file     string
	header   string
	prefix   string
	value    Secret // trimmed file content; "" until read
	lastErr  string // last read error, to log each distinct error once
}

// readCredential reads a credential file. Its errors name the file, never
// its content.
func readCredential(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read credential file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialSize+1))
	if err != nil {
		return "", fmt.Errorf("read credential file %s: %w", path, err)
	}
	if len(data) > maxCredentialSize {
		return "", fmt.Errorf("credential file %s: larger than %d bytes", path, maxCredentialSize)
	}
	v := bytes.TrimSpace(data)
	if len(v) == 0 {
		return "", fmt.Errorf("credential file %s: is empty", path)
	}
	if bytes.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("credential file %s: must hold a single line", path)
	}
	return Secret(v), nil
}

// newCredentials lists the credentials a config names, keeping values
// already read for unchanged files.
func newCredentials(cfg *config.Config, old map[string]*credential) map[string]*credential {
	out := map[string]*credential{}
	for _, p := range cfg.Providers {
		if p.Credential == nil {
			continue
		}
		c := &credential{provider: p.Name, file: p.Credential.File, header: p.Credential.Header, prefix: *p.Credential.Prefix}
		if o, ok := old[p.Name]; ok && o.file == c.file && o.prefix == c.prefix {
			c.value, c.lastErr = o.value, o.lastErr
		}
		out[p.Name] = c
	}
	return out
}
