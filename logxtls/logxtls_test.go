package logxtls

import (
	"crypto/tls"
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
	require.Error(t, WriteFiles(dir, []string{"ca"}, []string{"127.0.0.1"}, time.Hour), "would overwrite the CA")
	require.Error(t, WriteFiles(dir, []string{"a/b"}, []string{"127.0.0.1"}, time.Hour))
}
