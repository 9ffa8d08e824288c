package logx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority made with the standard library, as
// docs/security.md shows.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// nodeTLS issues a certificate for a node on 127.0.0.1 and returns the
// node's mutual-TLS config.
func (ca *testCA) nodeTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13,
	}
}

// TestMutualTLS: a cluster with mutual TLS works; a node whose certificate
// comes from another CA can neither join, nor forward an entry, nor fetch
// a file, nor ask for status; a plain TCP client gets nothing either.
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TLS = ca.nodeTLS(t, cfg.NodeID) })
	c.logAppend("tls", 20)
	c.flushAll()
	require.Equal(t, uint64(60), c.waitSameSeq(60))
	requireIdentical(t, c.dirs(), "app.log")

	// A rogue node, certified by another CA, tries to join.
	rogueCA := newTestCA(t, "rogue CA")
	cfg := testConfig(t, 0, freeAddrs(t, 1), filepath.Join(t.TempDir(), "rogue"))
	cfg.NodeID, cfg.Peers, cfg.Join = "rogue", c.cfgs[0].Peers, true
	cfg.TLS = rogueCA.nodeTLS(t, "rogue")
	rogue, err := New(cfg)
	require.NoError(t, err)
	defer rogue.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.Error(t, rogue.AddNode(ctx, cfg.Addr), "a node from another CA joined")
	require.Len(t, members(t, c.nodes[0]), 3)
	for _, proto := range []byte{protoRaft, protoForward, protoFetch, protoControl} {
		_, err := rogue.mux.dial(c.cfgs[0].Addr, proto, 2*time.Second)
		require.Error(t, err, "protocol %d", proto)
	}

	// Without TLS at all: the node drops the connection unread.
	conn, err := net.Dial("tcp", c.cfgs[0].Addr)
	require.NoError(t, err)
	defer conn.Close()
	_, _ = conn.Write([]byte{protoControl, 0, 0, 0, 15})
	_, _ = conn.Write([]byte(`{"op":"status"}`))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	require.NotContains(t, string(buf[:n]), "node_id", "a plain client got an answer")
	require.Equal(t, uint64(60), c.nodes[0].Stats().Seq)
}

// TestClientTLS: a Client with a certificate from the cluster's CA logs and
// reads status; without one it cannot.
func TestClientTLS(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TLS = ca.nodeTLS(t, cfg.NodeID) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := NewClientTLS(ctx, ca.nodeTLS(t, "client"), "cl", c.cfgs[1].Addr)
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.Send(ctx, []ClientEntry{{Level: LevelWarn, Msg: "over TLS"}})
	require.NoError(t, err)
	st, err := QueryStatusTLS(ctx, c.cfgs[2].Addr, ca.nodeTLS(t, "client"))
	require.NoError(t, err)
	require.Equal(t, "n3", st.NodeID)
	c.flushAll()
	require.Equal(t, uint64(1), c.waitSameSeq(1))

	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_, err = NewClient(sctx, "plain", c.cfgs[0].Addr)
	require.Error(t, err)
	_, err = NewClientTLS(sctx, newTestCA(t, "other").nodeTLS(t, "x"), "rogue", c.cfgs[0].Addr)
	require.Error(t, err)
}
