package logxtls

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// handshake runs a mutual-TLS handshake between a server and a client
// config over a real TCP connection on 127.0.0.1.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		serverErr <- tc.Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	cc := client.Clone()
	cc.ServerName = "127.0.0.1"
	tc := tls.Client(c, cc)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	cerr := tc.Handshake()
	if serr := <-serverErr; serr != nil {
		return serr
	}
	return cerr
}

func TestMutualHandshake(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	require.NoError(t, err)
	n1, err := ca.TLSConfig("n1", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	n2, err := ca.TLSConfig("n2", []string{"127.0.0.1", "localhost"}, time.Hour)
	require.NoError(t, err)
	require.NoError(t, handshake(t, n1, n2))

	other, err := NewCA("other", time.Hour)
	require.NoError(t, err)
	rogue, err := other.TLSConfig("rogue", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	require.Error(t, handshake(t, n1, rogue), "a certificate from another CA")

	wrongHost, err := ca.TLSConfig("n3", []string{"10.9.9.9"}, time.Hour)
	require.NoError(t, err)
	require.Error(t, handshake(t, wrongHost, n1), "a server certificate that does not name 127.0.0.1")

	_, err = ca.Issue("n4", nil, time.Hour)
	require.Error(t, err)
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, WriteFiles(dir, []string{"n1", "client"}, []string{"127.0.0.1"}, time.Hour))
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"))
	require.NoError(t, err)
	require.NotEmpty(t, pair.Certificate)
	fi, err := os.Stat(filepath.Join(dir, "client-key.pem"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.FileExists(t, filepath.Join(dir, "ca.pem"))
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	for _, bad := range [][]string{{"ca"}, {"ca-key"}, {"a/b"}, {".."}, {"n9", "../escape"}} {
		require.Error(t, WriteFiles(dir, bad, []string{"127.0.0.1"}, time.Hour), "%q", bad)
		require.NoFileExists(t, filepath.Join(dir, "n9.pem"), "a name refused, nothing written")
	}

	// Run again for a node added later, the CA is the one there: the
	// running nodes trust the new certificate (a new CA, written over the
	// old one, took a TLS cluster that reloads its files offline).
	require.NoError(t, WriteFiles(dir, []string{"n2"}, []string{"127.0.0.1"}, time.Hour))
	after, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	require.Equal(t, caPEM, after, "the CA was replaced")
	ca, err := LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	require.NoError(t, err)
	n2, err := tls.LoadX509KeyPair(filepath.Join(dir, "n2.pem"), filepath.Join(dir, "n2-key.pem"))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(n2.Certificate[0])
	require.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err, "n2 is not from the CA the others trust")

	// A CA half there, or one that does not load, fails and writes nothing.
	half := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(half, "ca.pem"), caPEM, 0o644))
	require.ErrorContains(t, WriteFiles(half, []string{"n1"}, []string{"127.0.0.1"}, time.Hour), "ca-key.pem")
	require.NoError(t, os.WriteFile(filepath.Join(half, "ca-key.pem"), []byte("not a key"), 0o600))
	require.ErrorContains(t, WriteFiles(half, []string{"n1"}, []string{"127.0.0.1"}, time.Hour), "no PEM PRIVATE KEY")
	other := t.TempDir()
	require.NoError(t, WriteFiles(other, []string{"x"}, []string{"127.0.0.1"}, time.Hour))
	otherKey, err := os.ReadFile(filepath.Join(other, "ca-key.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(half, "ca-key.pem"), otherKey, 0o600))
	require.ErrorContains(t, WriteFiles(half, []string{"n1"}, []string{"127.0.0.1"}, time.Hour), "is not the ECDSA key")
	require.NoFileExists(t, filepath.Join(half, "n1.pem"))
}
