package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis says how the sidecar reaches the Redis named by Options.RedisAddr:
// the deployment kind, credentials and TLS, as envoyproxy/ratelimit offers
// them (REDIS_TYPE, REDIS_AUTH, REDIS_TLS ...). The zero value is one
// plain-text node without AUTH.
type Redis struct {
	// Type is "single" (default: one address), "cluster" (the addresses
	// are seed nodes of a Redis Cluster, as managed cluster-mode services
	// give them) or "sentinel" (the addresses are Sentinels, which name the
	// current master of MasterName).
	Type string
	// MasterName is the Sentinel master set; required with "sentinel".
	MasterName string
	// Username is the ACL user; empty AUTHs as the default user.
	Username string
	// Password is the AUTH password; PasswordFile (a mounted Secret) is
	// the alternative. Neither is ever logged or put in an error.
	Password     string
	PasswordFile string
	// SentinelPasswordFile holds the password of the Sentinels themselves
	// (Sentinel's requirepass), when they have one; SentinelUsername its
	// ACL user.
	SentinelUsername     string
	SentinelPasswordFile string
	// TLS turns TLS on; it is implied by any of the TLS files or
	// TLSServerName. TLSCAFile verifies the server (default: the system
	// roots); TLSCertFile and TLSKeyFile are a client certificate for
	// servers with tls-auth-clients; TLSServerName overrides the name the
	// server's certificate is checked against (default: the address's host).
	TLS           bool
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string
	TLSServerName string
}

// typeName is Type with its default, for logs.
func (r Redis) typeName() string {
	if r.Type == "" {
		return "single"
	}
	return r.Type
}

// NewClient builds the client for a comma-separated address list; the
// caller owns it. Errors name the setting by its flag, never a secret.
func (r Redis) NewClient(addrList string) (redis.UniversalClient, error) {
	var addrs []string
	for _, a := range strings.Split(addrList, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("--redis: no address")
	}
	password, err := secretFrom(r.Password, r.PasswordFile, "--redis-password-file")
	if err != nil {
		return nil, err
	}
	sentinelPassword, err := secretFrom("", r.SentinelPasswordFile, "--redis-sentinel-password-file")
	if err != nil {
		return nil, err
	}
	tlsConfig, err := r.tlsConfig()
	if err != nil {
		return nil, err
	}
	switch r.Type {
	case "", "single":
		if len(addrs) != 1 {
			return nil, fmt.Errorf("--redis: a single node takes one address, got %d (for several, set --redis-type cluster or sentinel)", len(addrs))
		}
		if r.MasterName != "" || sentinelPassword != "" {
			return nil, errors.New("--redis-sentinel-master: only with --redis-type sentinel")
		}
		return redis.NewClient(&redis.Options{
			Addr: addrs[0], Username: r.Username, Password: password, TLSConfig: tlsConfig,
		}), nil
	case "cluster":
		if r.MasterName != "" || sentinelPassword != "" {
			return nil, errors.New("--redis-sentinel-master: only with --redis-type sentinel")
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: addrs, Username: r.Username, Password: password, TLSConfig: tlsConfig,
		}), nil
	case "sentinel":
		if r.MasterName == "" {
			return nil, errors.New("--redis-sentinel-master: must be set with --redis-type sentinel")
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: r.MasterName, SentinelAddrs: addrs,
			SentinelUsername: r.SentinelUsername, SentinelPassword: sentinelPassword,
			Username: r.Username, Password: password, TLSConfig: tlsConfig,
		}), nil
	}
	return nil, fmt.Errorf("--redis-type: unknown type %q (single, cluster or sentinel)", r.Type)
}

// secretFrom returns the value, or the content of file without its final
// line break. Only the file's name appears in errors.
func secretFrom(value, file, flagName string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("%s: set the password or its file, not both", flagName)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, file)
	}
	return s, nil
}

func (r Redis) tlsConfig() (*tls.Config, error) {
	if !r.TLS && r.TLSCAFile == "" && r.TLSCertFile == "" && r.TLSKeyFile == "" && r.TLSServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLSServerName}
	if r.TLSCAFile != "" {
		pem, err := os.ReadFile(r.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--redis-tls-ca-file: %s: no PEM certificate in it", r.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if r.TLSCertFile != "" || r.TLSKeyFile != "" {
		if r.TLSCertFile == "" || r.TLSKeyFile == "" {
			return nil, errors.New("--redis-tls-cert-file: set both the client certificate and --redis-tls-key-file")
		}
		cert, err := tls.LoadX509KeyPair(r.TLSCertFile, r.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-tls-cert-file: loading %s and %s: %w", r.TLSCertFile, r.TLSKeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
