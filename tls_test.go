package logx

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/logx-dev/logx/logxtls"
	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority made with the standard library
// (logxtls), as docs/security.md shows.
type testCA struct{ *logxtls.CA }

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	ca, err := logxtls.NewCA(name, 24*time.Hour)
	require.NoError(t, err)
	return testCA{ca}
}

// nodeTLS issues a certificate for a node on 127.0.0.1 and returns the
// node's mutual-TLS config.
func (ca testCA) nodeTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	cfg, err := ca.TLSConfig(name, []string{"127.0.0.1"}, 24*time.Hour)
	require.NoError(t, err)
	return cfg
}

// TestMutualTLS: a cluster with mutual TLS works; a node whose certificate
// comes from another CA can neither join, nor forward an entry, nor fetch
// a file, nor ask for status; a plain TCP client gets nothing either.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
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
	for _, proto := range []byte{wire.ProtoRaft, wire.ProtoForward, wire.ProtoFetch, wire.ProtoControl} {
		_, err := rogue.mux.dial(c.cfgs[0].Addr, proto, 2*time.Second)
		require.Error(t, err, "protocol %d", proto)
	}

	// Without TLS at all: the node drops the connection unread.
	conn, err := net.Dial("tcp", c.cfgs[0].Addr)
	require.NoError(t, err)
	defer conn.Close()
	_, _ = conn.Write([]byte{wire.ProtoControl, 0, 0, 0, 15})
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

// TestTLSFiles: nodes configured with PEM files (Config.TLSCAFile,
// TLSCertFile, TLSKeyFile) form a mutual-TLS cluster; missing, partial or
// unreadable files are clear errors.
func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, logxtls.WriteFiles(dir, []string{"n1", "n2", "n3", "client"}, []string{"127.0.0.1"}, time.Hour))
	files := func(cfg *Config, name string) {
		cfg.TLSCAFile = filepath.Join(dir, "ca.pem")
		cfg.TLSCertFile = filepath.Join(dir, name+".pem")
		cfg.TLSKeyFile = filepath.Join(dir, name+"-key.pem")
	}
	c := newTestCluster(t, 3, func(cfg *Config) { files(cfg, cfg.NodeID) })
	c.logAppend("files", 10)
	c.flushAll()
	require.Equal(t, uint64(30), c.waitSameSeq(30))
	requireIdentical(t, c.dirs(), "app.log")

	client, err := LoadTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := QueryStatusTLS(ctx, c.cfgs[0].Addr, client)
	require.NoError(t, err)
	require.Equal(t, uint64(30), st.Seq)
	_, err = QueryStatus(ctx, c.cfgs[0].Addr)
	require.Error(t, err, "a client without a certificate gets nothing")

	bad := testConfig(t, 0, []string{"127.0.0.1:1"}, t.TempDir())
	files(&bad, "n1")
	bad.TLSKeyFile = ""
	require.ErrorContains(t, bad.Validate(), "go together")
	files(&bad, "n1")
	bad.TLS = client
	require.ErrorContains(t, bad.Validate(), "not both")
	bad.TLS = nil
	bad.TLSCertFile = filepath.Join(dir, "missing.pem")
	_, err = New(bad)
	require.ErrorContains(t, err, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o644))
	_, err = LoadTLS(notPEM, filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"))
	require.ErrorContains(t, err, "no PEM certificate")
	_, err = LoadTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n2-key.pem"))
	require.Error(t, err, "a key that does not match the certificate")
}

// TestForgedRemovalTLS: with mutual TLS, a holder of a valid certificate
// who is not a member cannot make a node think it was removed; a genuine
// RemoveNode still stops the node, which checks with its peers over TLS.
func TestForgedRemovalTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "cluster CA")
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TLS = ca.nodeTLS(t, cfg.NodeID) })
	c.logAppend("tls", 10)
	l := c.leaderIndex()
	require.GreaterOrEqual(t, l, 0)
	f, other := (l+1)%3, (l+2)%3
	require.Empty(t, sendRemoved(t, c.cfgs[f].Addr, c.cfgs[f].Addr, ca.nodeTLS(t, "client")).Error)
	require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[f].Stats().IgnoredRemovals == 1 }),
		"the notice was not checked")
	requireStillMember(t, c.nodes[f])
	c.flushAll()
	require.Equal(t, uint64(31), c.waitSameSeq(31))
	requireIdentical(t, c.dirs(), "app.log")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[other].RemoveNode(ctx, c.cfgs[f].Addr))
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[f].removed.Load() }),
		"the removed node did not confirm its removal")
	_, err := c.nodes[f].Append(ctx, LevelInfo, "from a removed node")
	require.ErrorIs(t, err, ErrRemoved)
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[f].Stats().State == "Shutdown" }))
	require.Equal(t, uint64(1), c.nodes[f].Stats().IgnoredRemovals)
}

// TestProducerBoundToCertificate: with mutual TLS, a holder of a valid
// certificate cannot use another sender's producer id (to make its next
// entries look like repeats), nor report another node's clock.
func TestProducerBoundToCertificate(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TLS = ca.nodeTLS(t, cfg.NodeID) })
	c.logAppend("before", 5)
	c.flushAll()
	leader := c.leaderIndex()
	require.GreaterOrEqual(t, leader, 0)
	victim := c.nodes[(leader+1)%3]
	victimID := victim.producer // set before the first batch; unchanged since
	evilTLS, err := ca.TLSConfig("evil", []string{"evil.example"}, time.Hour)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dialProto(ctx, c.cfgs[leader].Addr, "", wire.ProtoForward, 5*time.Second, evilTLS)
	require.NoError(t, err)
	defer conn.Close()
	send := func(cmd []byte) (byte, string) {
		t.Helper()
		_, err := conn.Write(binary.BigEndian.AppendUint32(nil, uint32(len(cmd))))
		require.NoError(t, err)
		_, err = conn.Write(cmd)
		require.NoError(t, err)
		resp, err := wire.ReadFrame(bufio.NewReader(conn), nil, 1<<20)
		require.NoError(t, err)
		return resp[0], string(resp[wire.AnswerHeader:])
	}
	now := time.Now()
	batch := wire.AppendHeader(nil, wire.Header{Producer: victimID, FirstPSeq: 1 << 40, Count: 1})
	batch = wire.AppendRecord(batch, LevelInfo, now.UnixNano(), appendBodyStart(nil, FormatText, now, LevelInfo, "evil", "", "spoofed"))
	status, msg := send(batch)
	require.Equal(t, wire.StatusRejected, status, msg)
	require.Contains(t, msg, "another certificate")

	status, msg = send(appendClock(nil, c.cfgs[leader].Addr, now.Add(48*time.Hour).UnixNano()))
	require.Equal(t, wire.StatusRejected, status, msg)
	require.Contains(t, msg, "does not name it")

	// A certificate that does name the host (all nodes here share
	// 127.0.0.1) but is not the one the voter reported with.
	sameHost, err := ca.TLSConfig("intruder", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	// The leader's own report (as its producer sends it) binds its id.
	_, _, err = c.nodes[leader].applyLocal(appendClock(nil, c.cfgs[leader].Addr, time.Now().UnixNano()), c.nodes[leader].ids.Load().clocks)
	require.NoError(t, err)
	conn2, err := dialProto(ctx, c.cfgs[leader].Addr, "", wire.ProtoForward, 5*time.Second, sameHost)
	require.NoError(t, err)
	defer conn2.Close()
	clock := appendClock(nil, c.cfgs[leader].Addr, now.Add(48*time.Hour).UnixNano())
	_, err = conn2.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(clock))), clock...))
	require.NoError(t, err)
	resp, err := wire.ReadFrame(bufio.NewReader(conn2), nil, 1<<20)
	require.NoError(t, err)
	require.Equal(t, wire.StatusRejected, resp[0], "%s", resp[wire.AnswerHeader:])
	require.Contains(t, string(resp[wire.AnswerHeader:]), "another certificate")

	// The owner's entries go on, with their own numbers.
	seq, err := victim.Append(ctx, LevelInfo, "after", "k", 1)
	require.NoError(t, err)
	require.Equal(t, uint64(16), seq)
	c.flushAll()
	c.waitSameSeq(16)
	requireIdentical(t, c.dirs(), "app.log")
	for _, l := range readLines(t, c.dirs()[0], "app.log") {
		require.NotContains(t, string(l), "spoofed")
	}
	require.Less(t, c.nodes[0].Stats().LogClock, now.Add(time.Hour), "no forged clock moved the log clock")
}

// TestExpiredCertConnectionDropped: a connection whose peer's certificate
// expires is closed within a round of the node's goroutine, so a client
// whose certificate expired logs nothing more: a new connection's
// handshake refuses it. Before, the connection it made in time carried
// its entries for good.
func TestExpiredCertConnectionDropped(t *testing.T) {
	t.Parallel() // waits more than it computes (parallelTests, logx_test.go)
	ca := newTestCA(t, "cluster CA")
	lx := newSingle(t, func(cfg *Config) { cfg.TLS = ca.nodeTLS(t, cfg.NodeID) })
	const validFor = 4 * time.Second // x509 keeps whole seconds: 3 s at least
	clientTLS, err := ca.TLSConfig("short-lived client", []string{"client.invalid"}, validFor)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(clientTLS.Certificates[0].Certificate[0])
	require.NoError(t, err)
	expires := leaf.NotAfter // whole seconds
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := NewClientTLS(ctx, clientTLS, "client", lx.cfg.Addr)
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.Send(ctx, []ClientEntry{{Msg: "in time"}})
	require.NoError(t, err)
	held := func() int {
		lx.node.mux.mu.Lock()
		defer lx.node.mux.mu.Unlock()
		return len(lx.node.mux.peerCerts)
	}
	require.Positive(t, held(), "the client's connection is open, its certificate noted")
	require.True(t, waitFor(20*time.Second, func() bool { return held() == 0 }), "the expired certificate's connection is not closed")
	require.True(t, time.Now().After(expires), "closed before the certificate expired")
	late, cancelLate := context.WithTimeout(context.Background(), 2*time.Second) // it tries again until then
	defer cancelLate()
	_, err = cl.Send(late, []ClientEntry{{Msg: "too late"}})
	require.Error(t, err, "an expired certificate's client still logs")
	require.NoError(t, lx.Flush(ctx))
	require.Len(t, readLines(t, lx.cfg.Dir, lx.cfg.File), 1)
}
