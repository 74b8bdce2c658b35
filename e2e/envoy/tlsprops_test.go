package envoy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA issues certificates for the connection.* property tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, serial int64, cn string, uris []string, ips []net.IP, usage x509.ExtKeyUsage) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"shepherd"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
	for _, u := range uris {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestConnectionPeerCertificateProperties: on a TLS listener that verifies
// client certificates, the plugin reads the peer's identity as Envoy's
// connection.* attributes; without a client certificate, or without TLS, the
// peer attributes are absent and mtls is false.
func TestConnectionPeerCertificateProperties(t *testing.T) {
	ca := newTestCA(t)
	serverCert := ca.issue(t, 2, "proxy", nil, []net.IP{net.ParseIP("127.0.0.1")}, x509.ExtKeyUsageServerAuth)
	const spiffe = "spiffe://cluster.local/ns/team-a/sa/chat"
	clientCert := ca.issue(t, 3, "chat", []string{spiffe}, nil, x509.ExtKeyUsageClientAuth)
	up := echoUpstream(t)
	h := newHost(t, "route", up.URL)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)

	hexs := func(s string) string { return hex.EncodeToString([]byte(s)) }
	digest := sha256.Sum256(clientCert.Certificate[0])
	const notFound = "<error status returned by host: not found>"
	for _, tc := range []struct {
		name  string
		url   string
		certs []tls.Certificate
		want  map[string]string
	}{
		{"client certificate", srv.URL, []tls.Certificate{clientCert}, map[string]string{
			"mtls": "01", "uri_san_peer_certificate": hexs(spiffe), "subject_peer_certificate": hexs("CN=chat,O=shepherd"),
			"tls_version": hexs("TLSv1.3"), "sha256_peer_certificate_digest": hexs(hex.EncodeToString(digest[:])),
		}},
		{"no client certificate", srv.URL, nil, map[string]string{
			"mtls": "00", "uri_san_peer_certificate": notFound, "subject_peer_certificate": notFound,
			"tls_version": hexs("TLSv1.3"), "sha256_peer_certificate_digest": notFound,
		}},
		{"plain HTTP", plain.URL, nil, map[string]string{
			"mtls": "00", "uri_san_peer_certificate": notFound, "subject_peer_certificate": notFound,
			"tls_version": notFound, "sha256_peer_certificate_digest": notFound,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, Certificates: tc.certs}}}
			defer client.CloseIdleConnections()
			resp, err := client.Get(tc.url + "/who")
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			got := map[string]string{}
			for f := range tc.want {
				got[f] = resp.Header.Get("x-conn-" + f)
			}
			require.Equal(t, tc.want, got)
		})
	}
}
