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
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/logx-dev/logx/logxtls"
	"github.com/stretchr/testify/require"
)

// TestTLSRotation swaps every node's CA and certificate files under load,
// as an operator moving to a new CA does: first a bundle of the old and
// the new CA, then certificates from the new CA, then the new CA alone.
// No Append fails meanwhile (no connection that should be accepted is
// refused), a client of the new CA is refused before the bundle and a
// client of the old CA after the old CA is dropped (none is accepted that
// should be refused), a node restarted at the end joins with the new
// certificate, and the files end identical with every entry once.
func TestTLSRotation(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	oldDir, newDir := filepath.Join(base, "old"), filepath.Join(base, "new")
	names := []string{"n1", "n2", "n3", "client"}
	require.NoError(t, logxtls.WriteFiles(oldDir, names, []string{"127.0.0.1"}, time.Hour))
	require.NoError(t, logxtls.WriteFiles(newDir, names, []string{"127.0.0.1"}, time.Hour))
	read := func(dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return b
	}
	// install replaces a node's file as an operator's tooling does: a
	// temporary file renamed over it.
	install := func(node, name string, b []byte) {
		p := filepath.Join(base, node, name)
		require.NoError(t, os.WriteFile(p+".new", b, 0o600))
		require.NoError(t, os.Rename(p+".new", p))
	}
	for _, n := range names[:3] {
		require.NoError(t, os.MkdirAll(filepath.Join(base, n), 0o755))
		install(n, "ca.pem", read(oldDir, "ca.pem"))
		install(n, "cert.pem", read(oldDir, n+".pem"))
		install(n, "key.pem", read(oldDir, n+"-key.pem"))
	}
	c := newTestCluster(t, 3, func(cfg *Config) {
		d := filepath.Join(base, cfg.NodeID)
		cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(d, "ca.pem"), filepath.Join(d, "cert.pem"), filepath.Join(d, "key.pem")
	})

	// client is a client of one CA, trusting the nodes' certificates of
	// either.
	both := x509.NewCertPool()
	require.True(t, both.AppendCertsFromPEM(read(oldDir, "ca.pem")))
	require.True(t, both.AppendCertsFromPEM(read(newDir, "ca.pem")))
	client := func(dir string) *tls.Config {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
		require.NoError(t, err)
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: both, MinVersion: tls.VersionTLS13}
	}
	accepted := func(cfg *tls.Config) bool {
		for i := range c.nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := QueryStatusTLS(ctx, c.cfgs[i].Addr, cfg)
			cancel()
			if err != nil {
				return false
			}
		}
		return true
	}
	require.True(t, accepted(client(oldDir)))
	require.False(t, accepted(client(newDir)), "a client of the new CA before the nodes trust it")

	// Load: every node appends until told to stop.
	var acked atomic.Int64
	stops := []chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	stopped := []chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	var wg sync.WaitGroup
	for i, lx := range c.nodes {
		stop := stops[i]
		wg.Go(func() {
			defer close(stopped[i])
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := lx.Append(ctx, LevelInfo, "rotation", "node", i, "k", k)
				cancel()
				if err != nil {
					t.Errorf("node %d: Append %d failed during the rotation: %v", i+1, k, err)
					return
				}
				acked.Add(1)
			}
		})
	}
	step := func(what string, files map[string]func(node string) []byte) {
		t.Helper()
		before := acked.Load()
		for _, n := range names[:3] {
			for name, content := range files {
				install(n, name, content(n))
			}
			require.NoError(t, c.nodes[int(n[1]-'1')].ReloadTLS(), what)
		}
		// New connections now: the nodes reconnect to each other and to
		// the clients below with what they loaded.
		require.True(t, waitFor(20*time.Second, func() bool { return acked.Load() > before+20 }), "%s: the load stalled", what)
	}
	bundle := append(read(oldDir, "ca.pem"), read(newDir, "ca.pem")...)
	step("bundle", map[string]func(string) []byte{"ca.pem": func(string) []byte { return bundle }})
	require.True(t, accepted(client(oldDir)))
	require.True(t, accepted(client(newDir)))

	// A reload that fails keeps what is in use.
	install("n1", "cert.pem", []byte("not a certificate"))
	require.Error(t, c.nodes[0].ReloadTLS())
	require.True(t, accepted(client(oldDir)))

	step("new certificates", map[string]func(string) []byte{
		"cert.pem": func(n string) []byte { return read(newDir, n+".pem") },
		"key.pem":  func(n string) []byte { return read(newDir, n+"-key.pem") },
	})
	// A client of the old CA with a connection open, before the old CA
	// goes: its connection goes with it (certcheck.go).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oldClient, err := NewClientTLS(ctx, client(oldDir), "old-client", c.cfgs[0].Addr)
	require.NoError(t, err)
	defer oldClient.Close()
	_, err = oldClient.Send(ctx, []ClientEntry{{Msg: "before the old CA goes"}})
	require.NoError(t, err)
	acked.Add(1)
	step("the new CA alone", map[string]func(string) []byte{"ca.pem": func(string) []byte { return read(newDir, "ca.pem") }})
	require.False(t, accepted(client(oldDir)), "a client of the dropped CA")
	// The client tries again until its context ends: give it 3 s.
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	_, err = oldClient.Send(short, []ClientEntry{{Msg: "after the old CA went"}})
	require.Error(t, err, "a connection made with the dropped CA's certificate still carries entries")
	require.True(t, accepted(client(newDir)))

	// A restarted node dials its peers with the new certificate only
	// (the others go on logging).
	close(stops[2])
	<-stopped[2] // its last Append answered: none is under way as it closes
	before := acked.Load()
	c.stop(2)
	c.start(2)
	require.NoError(t, c.nodes[2].WaitReady(t.Context()))
	require.True(t, waitFor(30*time.Second, func() bool { return acked.Load() > before+50 }))
	close(stops[0])
	close(stops[1])
	wg.Wait()
	c.flushAll()
	seq := c.waitSameSeq(uint64(acked.Load()))
	requireIdentical(t, c.dirs(), "app.log")
	require.Equal(t, uint64(acked.Load()), seq, "every acknowledged entry once, and nothing else")
}

// TestTLSFilesWatched: without a ReloadTLS call, a node notices its TLS
// files changed (within a round of its goroutine) and uses them.
func TestTLSFilesWatched(t *testing.T) {
	base := t.TempDir()
	oldDir, newDir := filepath.Join(base, "old"), filepath.Join(base, "new")
	require.NoError(t, logxtls.WriteFiles(oldDir, []string{"n1", "client"}, []string{"127.0.0.1"}, time.Hour))
	require.NoError(t, logxtls.WriteFiles(newDir, []string{"client"}, []string{"127.0.0.1"}, time.Hour))
	ca := filepath.Join(base, "ca.pem")
	b, err := os.ReadFile(filepath.Join(oldDir, "ca.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ca, b, 0o644))
	lx := newSingle(t, func(cfg *Config) {
		cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = ca, filepath.Join(oldDir, "n1.pem"), filepath.Join(oldDir, "n1-key.pem")
	})
	newClient, err := LoadTLS(filepath.Join(oldDir, "ca.pem"), filepath.Join(newDir, "client.pem"), filepath.Join(newDir, "client-key.pem"))
	require.NoError(t, err)
	query := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := QueryStatusTLS(ctx, lx.cfg.Addr, newClient)
		return err
	}
	require.Error(t, query(), "a client of a CA the node does not trust")
	nb, err := os.ReadFile(filepath.Join(newDir, "ca.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ca+".new", append(b, nb...), 0o644))
	require.NoError(t, os.Rename(ca+".new", ca))
	require.True(t, waitFor(20*time.Second, func() bool { return query() == nil }), "the node did not load its changed CA file")
}

// TestReloadingTLSClient: a client whose TLS comes from ReloadingTLS keeps
// talking to a cluster that moved to a new CA once its own files moved
// too, with no call of its own; one from LoadTLS, loaded before, is
// refused.
func TestReloadingTLSClient(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	oldDir, newDir := filepath.Join(base, "old"), filepath.Join(base, "new")
	require.NoError(t, logxtls.WriteFiles(oldDir, []string{"n1", "client"}, []string{"127.0.0.1"}, time.Hour))
	require.NoError(t, logxtls.WriteFiles(newDir, []string{"n1", "client"}, []string{"127.0.0.1"}, time.Hour))
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to+".new", b, 0o600))
		require.NoError(t, os.Rename(to+".new", to))
	}
	node, client := filepath.Join(base, "node"), filepath.Join(base, "client")
	for _, d := range []string{node, client} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	install := func(from, to, name string) {
		copyFile(filepath.Join(from, "ca.pem"), filepath.Join(to, "ca.pem"))
		copyFile(filepath.Join(from, name+".pem"), filepath.Join(to, "cert.pem"))
		copyFile(filepath.Join(from, name+"-key.pem"), filepath.Join(to, "key.pem"))
	}
	install(oldDir, node, "n1")
	install(oldDir, client, "client")
	lx := newSingle(t, func(cfg *Config) {
		cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(node, "ca.pem"), filepath.Join(node, "cert.pem"), filepath.Join(node, "key.pem")
	})
	files := []string{filepath.Join(client, "ca.pem"), filepath.Join(client, "cert.pem"), filepath.Join(client, "key.pem")}
	reloading, err := ReloadingTLS(files[0], files[1], files[2])
	require.NoError(t, err)
	loaded, err := LoadTLS(files[0], files[1], files[2])
	require.NoError(t, err)
	query := func(cfg *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := QueryStatusTLS(ctx, lx.cfg.Addr, cfg)
		return err
	}
	require.NoError(t, query(reloading))
	require.NoError(t, query(loaded))

	install(newDir, node, "n1")
	require.NoError(t, lx.ReloadTLS())
	install(newDir, client, "client")
	var qerr error
	require.True(t, waitFor(10*time.Second, func() bool { qerr = query(reloading); return qerr == nil }), "the reloading client did not follow its files: %v", qerr)
	require.Error(t, query(loaded), "a client of the old CA")
}

// TestClientPinsCertificate: a Client whose certificate changes (a
// ReloadingTLS after its files rotated) sends every try of a batch with
// the certificate of the batch's producer id, so a retry over a new
// connection after the rotation gets the answer of the try that was
// committed instead of the leader's refusal of its producer id under
// another certificate (which the Client reported as ErrOutcomeUnknown).
// Its next batch goes under a new producer id with the new certificate.
func TestClientPinsCertificate(t *testing.T) {
	ca := newTestCA(t, "ca")
	lx := newSingle(t, func(cfg *Config) { cfg.TLS = ca.nodeTLS(t, "n1") })
	issue := func() *tls.Certificate {
		c, err := ca.Issue("client", []string{"127.0.0.1"}, time.Hour)
		require.NoError(t, err)
		return &c
	}
	var cur atomic.Pointer[tls.Certificate]
	cur.Store(issue())
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cur.Load(), nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := NewClientTLS(ctx, cfg, "client", lx.cfg.Addr)
	require.NoError(t, err)
	defer c.Close()

	now := time.Now()
	recs := wire.AppendRecord(nil, LevelInfo, now.UnixNano(), appendBodyStart(nil, c.format, now, LevelInfo, "client", "", "one"))
	first, err := c.sendBatch(ctx, recs, 1)
	require.NoError(t, err)
	// The same batch again, as a retry whose first try's answer was lost,
	// over a new connection after the certificate changed.
	producer := c.producer
	batch := wire.NewBatch(wire.Header{Producer: producer, FirstPSeq: c.pseq, Count: 1}, recs, true)
	cur.Store(issue())
	require.NoError(t, c.Close())
	status, again, msg, _, err := c.roundTrip(ctx, lx.cfg.Addr, batch, time.Now().Add(10*time.Second))
	require.NoError(t, err)
	require.Equal(t, wire.StatusOK, status, "the retry was answered %q", msg)
	require.Equal(t, first, again, "the retry was not taken for the batch committed")

	second, err := c.Send(ctx, []ClientEntry{{Msg: "two"}})
	require.NoError(t, err)
	require.Equal(t, first+1, second, "the retry was written")
	require.NotEqual(t, producer, c.producer, "the new certificate's batches went under the old producer id")
}

// TestClientRepinsRefusedCertificate: a batch whose pinned certificate the
// node refuses at the handshake (TLS 1.3 says so only at the first read,
// after the batch was written) has reached no node: the Client tries it
// again with the certificate its configuration gives by then, under a new
// producer id, and succeeds. It counted such a try as sent, so it kept
// the refused certificate and ended in ErrOutcomeUnknown.
func TestClientRepinsRefusedCertificate(t *testing.T) {
	ca, rogue := newTestCA(t, "ca"), newTestCA(t, "rogue")
	lx := newSingle(t, func(cfg *Config) { cfg.TLS = ca.nodeTLS(t, "n1") })
	issue := func(ca testCA) *tls.Certificate {
		c, err := ca.Issue("client", []string{"127.0.0.1"}, time.Hour)
		require.NoError(t, err)
		return &c
	}
	good, bad := issue(ca), issue(rogue)
	var refused atomic.Bool // the files hold the certificate the node refuses
	var asked atomic.Int32  // calls while they do
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if refused.Load() && asked.Add(1) <= 2 {
				return bad, nil // pinned for the batch, then once more before the try
			}
			return good, nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := NewClientTLS(ctx, cfg, "client", lx.cfg.Addr)
	require.NoError(t, err)
	defer c.Close()
	first, err := c.Send(ctx, []ClientEntry{{Msg: "one"}})
	require.NoError(t, err)

	refused.Store(true)
	second, err := c.Send(ctx, []ClientEntry{{Msg: "two"}})
	require.NoError(t, err, "a batch no node read")
	require.Equal(t, first+1, second)
	require.Greater(t, asked.Load(), int32(2), "never tried with the refused certificate")
}

// TestTLSForeignCAKept: a CA file replaced by one of another CA (logx
// certs run again into the same directory made a new one) is not loaded:
// the node keeps the material in use, and still takes a client of its CA
// (the new CA made it refuse every peer: a cluster that reloads its files
// went offline). A node started with such files is refused with the
// reason.
func TestTLSForeignCAKept(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	mine, other := filepath.Join(base, "mine"), filepath.Join(base, "other")
	require.NoError(t, logxtls.WriteFiles(mine, []string{"n1", "client"}, []string{"127.0.0.1"}, time.Hour))
	require.NoError(t, logxtls.WriteFiles(other, []string{"x"}, []string{"127.0.0.1"}, time.Hour))
	ca := filepath.Join(base, "ca.pem")
	b, err := os.ReadFile(filepath.Join(mine, "ca.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ca, b, 0o644))
	cert, key := filepath.Join(mine, "n1.pem"), filepath.Join(mine, "n1-key.pem")
	lx := newSingle(t, func(cfg *Config) { cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = ca, cert, key })
	client, err := LoadTLS(filepath.Join(mine, "ca.pem"), filepath.Join(mine, "client.pem"), filepath.Join(mine, "client-key.pem"))
	require.NoError(t, err)
	query := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := QueryStatusTLS(ctx, lx.cfg.Addr, client)
		return err
	}
	require.NoError(t, query())

	foreign, err := os.ReadFile(filepath.Join(other, "ca.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ca+".new", foreign, 0o644))
	require.NoError(t, os.Rename(ca+".new", ca))
	require.ErrorContains(t, lx.ReloadTLS(), "is not from a CA in")
	require.NoError(t, query(), "the foreign CA was loaded")

	_, err = LoadTLS(ca, cert, key) // a client may hold a certificate of another CA than it trusts
	require.NoError(t, err)
	cfg := testConfig(t, 0, freeAddrs(t, 1), filepath.Join(base, "n2"))
	cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = ca, cert, key
	_, err = New(cfg)
	require.ErrorContains(t, err, "is not from a CA in")
}

// TestOwnCertTrusted: the check of a node's own certificate against its
// CA file is of the chain, not of dates (the handshakes judge those): an
// expired certificate passes, and so does one that outlives its CA (it
// was checked at the middle of its validity, when its CA had expired);
// one of another CA does not.
func TestOwnCertTrusted(t *testing.T) {
	ca, err := logxtls.NewCA("mine", time.Hour)
	require.NoError(t, err)
	other, err := logxtls.NewCA("other", time.Hour)
	require.NoError(t, err)
	cfg, err := ca.TLSConfig("n1", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	require.NoError(t, ownCertTrusted(cfg))
	expired, err := ca.TLSConfig("n1", []string{"127.0.0.1"}, -30*time.Minute)
	require.NoError(t, err)
	require.NoError(t, ownCertTrusted(expired))
	foreign := cfg.Clone()
	foreign.RootCAs = other.Pool()
	require.Error(t, ownCertTrusted(foreign))

	// A certificate valid for 1,000 hours from a CA valid for one.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "n4"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(1000 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	require.NoError(t, err)
	long := cfg.Clone()
	long.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}
	require.NoError(t, ownCertTrusted(long), "valid now, from the CA")

	// logxtls issues no certificate valid past its CA.
	c, err := ca.Issue("n5", []string{"127.0.0.1"}, 1000*time.Hour)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	require.NoError(t, err)
	require.False(t, leaf.NotAfter.After(ca.Cert.NotAfter))
}
