package e2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// issueCert makes a certificate signed by ca (self-signed when ca is nil)
// with the given URI SANs.
func issueCert(t *testing.T, ca *tls.Certificate, serial int64, cn string, uris []string, ips []net.IP, usage x509.ExtKeyUsage) (tls.Certificate, *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.Leaf, ca.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// TestPeerIdentityOverMTLS (issue 23): at a gateway, "consumer": {"from":
// "peer"} keys limits on the SPIFFE ID of the client's verified certificate
// (Istio's mTLS), served by the host as Envoy's connection.uri_san_peer_certificate.
// Two callers forging each other's x-tenant keep their own buckets; a caller
// without a certificate counts as "unauthenticated".
func TestPeerIdentityOverMTLS(t *testing.T) {
	ca, caLeaf := issueCert(t, nil, 1, "mesh ca", nil, nil, 0)
	pool := x509.NewCertPool()
	pool.AddCert(caLeaf)
	server, _ := issueCert(t, &ca, 2, "gateway", nil, []net.IP{net.ParseIP("127.0.0.1")}, x509.ExtKeyUsageServerAuth)
	teamA, _ := issueCert(t, &ca, 3, "chat", []string{"spiffe://cluster.local/ns/team-a/sa/chat"}, nil, x509.ExtKeyUsageClientAuth)
	teamB, _ := issueCert(t, &ca, 4, "batch", []string{"spiffe://cluster.local/ns/team-b/sa/batch"}, nil, x509.ExtKeyUsageClientAuth)

	relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
	cfg := `{"models": {"gpt-4.1": {"input": 2.00, "output": 8.00}},
	  "providers": [{"name": "relay", "host": "relay.example.com", "cluster": "relay"}],
	  "routes": [{"name": "gw", "match": {"pathPrefix": "/v1/"}, "provider": "relay", "streamUsage": false,
	    "consumer": {"from": "peer"}, "limits": {"requestsPerMinute": 1, "requestBurst": 2}}]}`
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(cfg), Workers: 2,
		Clusters: map[string]string{"relay": scenario.Upstream(t, relay)}, Routes: map[string]string{"relay.example.com": "relay"},
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	front := httptest.NewUnstartedServer(h)
	// As an Envoy listener whose DownstreamTlsContext validates client
	// certificates without requiring one.
	front.TLS = &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	front.StartTLS()
	t.Cleanup(func() {
		front.Close()
		_ = h.Close(context.Background())
	})

	do := func(cert *tls.Certificate, tenant string) int {
		tc := &tls.Config{RootCAs: pool}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		defer client.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodPost, front.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4.1","messages":[]}`))
		require.NoError(t, err)
		req.Host = "api.openai.com"
		req.Header.Set("content-type", "application/json")
		req.Header.Set("x-tenant", tenant)
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	ok, limited := http.StatusOK, http.StatusTooManyRequests
	require.Equal(t, []int{ok, ok, limited}, []int{do(&teamA, "team-b/batch"), do(&teamA, "x"), do(&teamA, "y")},
		"team-a has its own two, whatever it sends")
	require.Empty(t, relay.Last().Header.Get("x-tenant"), "the header does not reach the provider")
	require.Equal(t, []int{ok, ok, limited}, []int{do(&teamB, "team-a/chat"), do(&teamB, ""), do(&teamB, "team-a/chat")},
		"team-b's own two, untouched by team-a")
	require.Equal(t, []int{ok, ok, limited}, []int{do(nil, "team-a/chat"), do(nil, "team-b/batch"), do(nil, "z")},
		"callers without a certificate share the unauthenticated bucket")
}
