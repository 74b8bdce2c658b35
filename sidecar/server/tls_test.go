package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/shepherd-mesh/shepherd/internal/testutil"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type pki struct {
	dir                             string
	caPool                          *x509.CertPool
	serverCert, serverKey, clientCA string
	client                          tls.Certificate
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	issue := func(serial int64, usage x509.ExtKeyUsage, ip bool) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		require.NoError(t, err)
		return der, k
	}
	p := pki{dir: dir, caPool: x509.NewCertPool()}
	p.caPool.AddCert(caCert)
	p.clientCA = write("ca.pem", "CERTIFICATE", caDER)
	sDER, sKey := issue(2, x509.ExtKeyUsageServerAuth, true)
	p.serverCert = write("server.pem", "CERTIFICATE", sDER)
	skDER, err := x509.MarshalECPrivateKey(sKey)
	require.NoError(t, err)
	p.serverKey = write("server-key.pem", "EC PRIVATE KEY", skDER)
	cDER, cKey := issue(3, x509.ExtKeyUsageClientAuth, false)
	p.client = tls.Certificate{Certificate: [][]byte{cDER}, PrivateKey: cKey}
	return p
}

func healthCheck(addr string, opt grpc.DialOption) error {
	cc, err := grpc.NewClient(addr, opt)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestGRPCMutualTLS(t *testing.T) {
	p := newPKI(t)
	srv, err := server.New(context.Background(), server.Options{
		GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", ReloadInterval: -1,
		GRPCTLS: server.TLS{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.clientCA},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); require.NoError(t, testutil.Receive(t, done, time.Minute)) }()

	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.client}})
	withoutCert := credentials.NewTLS(&tls.Config{RootCAs: p.caPool})
	require.NoError(t, healthCheck(srv.GRPCAddr(), grpc.WithTransportCredentials(withCert)), "a client with a certificate the CA signed")
	require.Error(t, healthCheck(srv.GRPCAddr(), grpc.WithTransportCredentials(withoutCert)), "a client without a certificate")
	require.Error(t, healthCheck(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials())), "a plaintext client")
}

func TestGRPCTLSOptionErrors(t *testing.T) {
	p := newPKI(t)
	cases := []struct {
		tls  server.TLS
		want string
	}{
		{server.TLS{CertFile: p.serverCert}, "grpc tls: set both the certificate and the key"},
		{server.TLS{ClientCAFile: p.clientCA}, "grpc tls: a client CA needs a server certificate and key"},
		{server.TLS{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.serverKey}, "grpc tls: client ca " + p.serverKey + ": no PEM certificate in it"},
	}
	for _, tc := range cases {
		_, err := server.New(context.Background(), server.Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", ReloadInterval: -1, GRPCTLS: tc.tls})
		require.EqualError(t, err, tc.want)
	}
}
