package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TLS configures the gRPC listener. With CertFile and KeyFile the sidecar serves
// TLS; with ClientCAFile as well it requires every client to present a
// certificate that CA signed (mTLS). Without them it serves plaintext, for
// loopback and for meshes whose proxies already encrypt the hop.
type TLS struct {
	CertFile, KeyFile string
	ClientCAFile      string
}

// serverOption returns the gRPC credentials option for t, or nil for plaintext.
// Errors name the file, never its contents.
func (t TLS) serverOption() (grpc.ServerOption, error) {
	if t.CertFile == "" && t.KeyFile == "" {
		if t.ClientCAFile != "" {
			return nil, errors.New("grpc tls: a client CA needs a server certificate and key")
		}
		return nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("grpc tls: set both the certificate and the key")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("grpc tls: loading %s and %s: %w", t.CertFile, t.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("grpc tls: client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("grpc tls: client ca %s: no PEM certificate in it", t.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}
