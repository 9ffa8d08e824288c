package logx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{NodeID: "n1", Addr: "127.0.0.1:7001", Peers: []string{"127.0.0.1:7001", "127.0.0.1:7002"}, Dir: "d"}
	}
	require.NoError(t, good().Validate())
	cases := []struct {
		field string
		mod   func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = "" }},
		{"NodeID", func(c *Config) { c.NodeID = "a\nb" }},
		{"NodeID", func(c *Config) { c.NodeID = "n\xff1" }}, // a metric's label must be UTF-8
		{"NodeID", func(c *Config) { c.NodeID = strings.Repeat("n", 129) }},
		{"AlarmNoLeader", func(c *Config) { c.AlarmNoLeader = -time.Second }},
		{"MaxSize", func(c *Config) { c.MaxSize = 1 }}, // MaxEntrySize would be 1: every entry too large
		{"MaxEntrySize", func(c *Config) { c.MaxEntrySize = 100 }},
		{"Addr", func(c *Config) { c.Addr = "" }},
		{"Addr", func(c *Config) { c.Addr = "nohostport" }},
		{"Addr", func(c *Config) { c.Addr = ":7001" }},
		{"Addr", func(c *Config) { c.Addr = "127.0.0.1:0" }},
		{"ListenAddr", func(c *Config) { c.ListenAddr = "7001" }},
		{"ListenAddr", func(c *Config) { c.ListenAddr = ":0" }},
		{"ListenAddr", func(c *Config) { c.ListenAddr = "a b:7001" }},
		{"Peers", func(c *Config) { c.Peers = nil }},
		{"Peers", func(c *Config) { c.Peers = []string{"127.0.0.1:7002"} }},
		{"Peers[1]", func(c *Config) { c.Peers = []string{"127.0.0.1:7001", "127.0.0.1:7001"} }},
		{"Peers[1]", func(c *Config) { c.Peers = []string{"127.0.0.1:7001", "bad"} }},
		{"Dir", func(c *Config) { c.Dir = "" }},
		{"File", func(c *Config) { c.File = "sub/app.log" }},
		{"File", func(c *Config) { c.File = "state.json" }},
		{"MaxSize", func(c *Config) { c.MaxSize = -1 }},
		{"RotateEvery", func(c *Config) { c.RotateEvery = -time.Hour }},
		{"MaxFiles", func(c *Config) { c.MaxFiles = -1 }},
		{"MaxAge", func(c *Config) { c.MaxAge = -time.Hour }},
		{"MaxAge", func(c *Config) { c.MaxAge = 30 * time.Second }}, // under clockSlack, as SetRetention refuses
		{"Streams[0].MaxAge", func(c *Config) { c.Streams = []StreamConfig{{Name: "s", MaxAge: time.Second}} }},
		{"Format", func(c *Config) { c.Format = 7 }},
		{"QueueSize", func(c *Config) { c.QueueSize = -5 }},
		{"MaxEntrySize", func(c *Config) { c.MaxEntrySize = -1 }},
		{"MaxEntrySize", func(c *Config) { c.MaxSize = 1000; c.MaxEntrySize = 2000 }},
		{"MaxBatchEntries", func(c *Config) { c.MaxBatchEntries = -1 }},
		{"MaxBatchBytes", func(c *Config) { c.MaxBatchBytes = 10 }},
		{"ElectionTimeout", func(c *Config) { c.ElectionTimeout = time.Millisecond }},
		{"CloseTimeout", func(c *Config) { c.CloseTimeout = -time.Second }},
		{"QueueSize", func(c *Config) { c.QueueSize = 1 << 62 }},
		{"MaxBatchEntries", func(c *Config) { c.MaxBatchEntries = 1<<20 + 1 }},
		// Mutual TLS, or nothing: a server-only configuration let any
		// client forward, fetch and send control requests.
		{"TLS", func(c *Config) {
			c.TLS = &tls.Config{ClientCAs: x509.NewCertPool(), ClientAuth: tls.NoClientCert}
		}},
		{"TLS", func(c *Config) {
			c.TLS = &tls.Config{ClientCAs: x509.NewCertPool(), ClientAuth: tls.VerifyClientCertIfGiven}
		}},
		{"TLS", func(c *Config) { c.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert} }},
	}
	// Join lets a node leave itself out of Peers.
	j := good()
	j.Peers, j.Join = []string{"127.0.0.1:7002"}, true
	require.NoError(t, j.Validate())
	// A DNS name in Addr and Peers, every interface in ListenAddr.
	d := good()
	d.Addr, d.Peers, d.ListenAddr = "logx-0.logx.default.svc:7001", []string{"logx-0.logx.default.svc:7001", "logx-1.logx:7001"}, ":7001"
	require.NoError(t, d.Validate())

	for _, tc := range cases {
		c := good()
		tc.mod(&c)
		err := c.Validate()
		var ce *ConfigError
		require.True(t, errors.As(err, &ce), "%s: %v", tc.field, err)
		require.Equal(t, tc.field, ce.Field, "%v", err)
		require.True(t, strings.HasPrefix(err.Error(), "logx: Config."+tc.field+": "), "%v", err)
		_, err = New(c)
		require.ErrorAs(t, err, &ce, "New must validate")
	}
}

// TestConfigFileNames: File cannot name, or rotate into, one of the node's
// own files in Dir; each refusal is a *ConfigError for File saying why.
func TestConfigFileNames(t *testing.T) {
	good := func(file string) Config {
		return Config{NodeID: "n1", Addr: "127.0.0.1:7001", Peers: []string{"127.0.0.1:7001"}, Dir: "d", File: file}
	}
	for _, name := range []string{"app.log", "app", "LOCK.log", "raft.log", "snapshots.log", "state.json.log",
		"app.tmp.log", "app-1.log", "app-2024-01-01.log", "app-0000000000000000001.log", "app-000000000000000000001.log",
		"app-0000000000000000000a.log", "app.log-00000000000000000001", "journal écrit.log"} {
		require.NoError(t, good(name).Validate(), "%q", name)
	}
	cases := []struct{ file, why string }{
		{"sub/app.log", "without a directory"},
		{`sub\app.log`, "without a directory"},
		{"..", "starts with"},
		{".", "starts with"},
		{"app\n.log", "control character"},
		{"app\t.log", "control character"},
		{"app\x7f.log", "control character"},
		{"app\x00.log", "control character"},
		{"LOCK", "own LOCK"},
		{"lock", "own LOCK"},
		{"state.json", "own state.json"},
		{"State.JSON", "own state.json"},
		{"raft", "own raft"},
		{"snapshots", "own snapshots"},
		{"state.json.tmp", ".tmp"},
		{"app.log.tmp", ".tmp"},
		{"app.TMP", ".tmp"},
		{".log", "starts with"},
		{".catchup-00000000000000000001", "starts with"},
		{".retired-app.log", "starts with"},
		{".repair-app.log", "starts with"},
		{".hidden.log", "starts with"},
		{"app-00000000000000000001.log", "rotated file name"},
		{"app-00000000000000000001", "rotated file name"},
		{"-00000000000000000001.log", "rotated file name"},
		{"app.log-00000000000000000001.gz", "rotated file name"},
		{strings.Repeat("a", 197) + ".log", "at most 200"},
	}
	for _, tc := range cases {
		err := good(tc.file).Validate()
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, "%q", tc.file)
		require.Equal(t, "File", ce.Field, "%q: %v", tc.file, err)
		require.ErrorContains(t, err, tc.why, "%q", tc.file)
	}
}

func TestConfigDefaultsDoNotMutate(t *testing.T) {
	c := Config{NodeID: "n1", Addr: "127.0.0.1:7001", Peers: []string{"127.0.0.1:7001"}, Dir: "d"}
	d := c.withDefaults()
	require.Equal(t, "", c.File)
	require.Equal(t, "logx.log", d.File)
	d.Peers[0] = "changed"
	require.Equal(t, "127.0.0.1:7001", c.Peers[0])
}

func TestDirLocked(t *testing.T) {
	lx := newSingle(t, nil)
	cfg := lx.cfg
	cfg.Addr = freeAddrs(t, 1)[0]
	cfg.Peers = []string{cfg.Addr}
	_, err := New(cfg)
	require.ErrorIs(t, err, ErrLocked)
	// The failed New left nothing running and the first node works.
	_, err = lx.Append(context.Background(), LevelInfo, "still fine")
	require.NoError(t, err)
}

func TestEntryTooLarge(t *testing.T) {
	lx := newSingle(t, func(c *Config) { c.MaxEntrySize = 1024 })
	ctx := context.Background()
	_, err := lx.Append(ctx, LevelInfo, strings.Repeat("x", 2000))
	require.ErrorIs(t, err, ErrEntryTooLarge)
	_, err = lx.Append(ctx, LevelInfo, "ok", "big", strings.Repeat("y", 2000))
	require.ErrorIs(t, err, ErrEntryTooLarge)
	lx.Info(strings.Repeat("z", 5000)) // async: counted, not written
	seq, err := lx.Append(ctx, LevelInfo, "small")
	require.NoError(t, err)
	require.Equal(t, uint64(1), seq)
	require.ErrorIs(t, lx.Flush(ctx), ErrEntriesLost, "the async entry")
	require.NoError(t, lx.Flush(ctx))
	st := lx.Stats()
	require.Equal(t, uint64(3), st.Rejected)
	require.Equal(t, uint64(1), st.AsyncErrors)
	require.Len(t, readLines(t, lx.cfg.Dir, lx.cfg.File), 1)
}

func TestLevelFiltering(t *testing.T) {
	lx := newSingle(t, func(c *Config) { c.Level = LevelWarn })
	ctx := context.Background()
	lx.Info("dropped by level")
	seq, err := lx.Append(ctx, LevelInfo, "also below")
	require.NoError(t, err)
	require.Zero(t, seq)
	lx.Warn("kept")
	lx.SetLevel(LevelDebug)
	require.Equal(t, LevelDebug, lx.Level())
	lx.Debug("kept too")
	require.NoError(t, lx.Flush(ctx))
	lines := readLines(t, lx.cfg.Dir, lx.cfg.File)
	require.Len(t, lines, 2)
	require.Contains(t, string(lines[0]), "msg=kept")
	require.Contains(t, string(lines[1]), `msg="kept too"`)
}

func TestClosedCalls(t *testing.T) {
	lx := newSingle(t, nil)
	require.NoError(t, lx.Close())
	require.NoError(t, lx.Close(), "second Close returns the first result")
	_, err := lx.Append(context.Background(), LevelInfo, "late")
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, lx.Flush(context.Background()), ErrClosed)
	lx.Info("late async") // must not block or panic
	require.Equal(t, uint64(1), lx.Stats().AsyncErrors)
}

// TestAppendContext: a caller whose context ends while the cluster has no
// leader gets its entry withdrawn, and the entry is never written.
func TestAppendContext(t *testing.T) {
	addrs := freeAddrs(t, 3)
	cfg := testConfig(t, 0, addrs, filepath.Join(t.TempDir(), "n1"))
	cfg.CloseTimeout = 100 * time.Millisecond
	lx, err := New(cfg) // its peers never start: no leader
	require.NoError(t, err)
	defer lx.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = lx.Append(ctx, LevelInfo, "never")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
}

// TestAnswerBeatsContext: an Append whose answer and context end together
// gets its answer, not ErrOutcomeUnknown (select picks either at random).
func TestAnswerBeatsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 {
		w := &waiter{done: make(chan struct{}), seq: 7}
		w.state.Store(waitSent)
		close(w.done)
		seq, err := w.wait(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(7), seq)
	}
	w := &waiter{done: make(chan struct{})}
	w.state.Store(waitSent)
	_, err := w.wait(ctx)
	require.ErrorIs(t, err, ErrOutcomeUnknown, "sent, unanswered")
	w = &waiter{done: make(chan struct{})}
	_, err = w.wait(ctx)
	require.ErrorIs(t, err, context.Canceled, "not sent: withdrawn")
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
}

// TestQueueBounded: with no leader, the queue fills up to QueueSize and no
// further; by default a caller then blocks (until Close), and with
// DropWhenFull it drops and counts instead.
func TestQueueBounded(t *testing.T) {
	leaderless := func(t *testing.T, drop bool) *Logx {
		addrs := freeAddrs(t, 3)
		cfg := testConfig(t, 0, addrs, filepath.Join(t.TempDir(), "n1"))
		cfg.QueueSize = 8
		cfg.DropWhenFull = drop
		cfg.CloseTimeout = 100 * time.Millisecond
		lx, err := New(cfg)
		require.NoError(t, err)
		return lx
	}
	t.Run("block", func(t *testing.T) {
		lx := leaderless(t, false)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 100; i++ {
				lx.Info("blocked", "i", i)
			}
		}()
		// The producer holds one batch; the queue fills behind it.
		require.True(t, waitFor(10*time.Second, func() bool { return lx.Stats().QueueLen == 8 }))
		select {
		case <-done:
			t.Fatal("Info did not block on a full queue")
		default:
		}
		// A nil context, which slog.Logger.LogAttrs allows, blocks too
		// (it panicked here).
		nilCtx := make(chan error, 1)
		go func() {
			//lint:ignore SA1012 the nil context is the point
			lx.LogAttrs(nil, LevelInfo, "nil context")
			//lint:ignore SA1012 the nil context is the point
			nilCtx <- lx.Handler().Handle(nil, slog.NewRecord(time.Now(), LevelInfo, "nil context", 0))
		}()
		require.LessOrEqual(t, lx.Stats().Enqueued, uint64(8+4096))
		lx.Close()
		<-done // Close releases the blocked caller
		require.ErrorIs(t, <-nilCtx, ErrClosed)
		st := lx.Stats()
		require.Zero(t, st.Dropped)
		require.Positive(t, st.AsyncErrors)
	})
	t.Run("drop", func(t *testing.T) {
		lx := leaderless(t, true)
		defer lx.Close()
		for i := 0; i < 100; i++ {
			lx.Info("dropped", "i", i)
		}
		st := lx.Stats()
		require.Equal(t, uint64(100), st.Enqueued+st.Dropped)
		require.Positive(t, st.Dropped)
		require.LessOrEqual(t, st.QueueLen, 8)
		// The producer may have taken the queue's entries as its first
		// batch after the loop; it holds that batch (no leader) and takes
		// no more, so the queue fills again and stays full.
		require.True(t, waitFor(5*time.Second, func() bool {
			lx.Info("filling")
			return lx.Stats().QueueLen == 8
		}))
		err := lx.Handler().Handle(context.Background(), slog.NewRecord(time.Now(), LevelInfo, "x", 0))
		require.ErrorIs(t, err, ErrQueueFull)
	})
}

// TestCheckAddrHost: an address is accepted only with a host that can be
// dialled, an IP address or a DNS name; AddNode and a peer's control
// request are checked alike (TestHostilePeer sends the others).
func TestCheckAddrHost(t *testing.T) {
	for _, a := range []string{"127.0.0.1:1", "[::1]:1", "[fe80::1%eth0]:1", "localhost:7000", "node-1.example.com.:7000", "n_1:1",
		strings.Repeat("a", 63) + ".b:1"} {
		require.NoError(t, checkAddr(a), a)
	}
	for _, a := range []string{"a/b:1", "..:1", "../x:1", ".:1", "a..b:1", "a b:1", "a\x00b:1", "[::1%]:1", "é.com:1",
		strings.Repeat("a", 64) + ".b:1", strings.Repeat("a.", 127) + "a:1"} {
		require.ErrorContains(t, checkAddr(a), "neither an IP address nor a DNS name", "%q", a)
	}
}

// TestCoreDependencies: the core module requires no Prometheus and no
// OpenTelemetry (their integrations are modules of their own), and go
// list agrees: no package of theirs is built into logx.
func TestCoreDependencies(t *testing.T) {
	gomod, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	for _, heavy := range []string{"prometheus", "opentelemetry", "nats-io"} {
		require.NotContains(t, string(gomod), heavy, "go.mod requires %s", heavy)
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err)
	for _, pkg := range strings.Fields(string(out)) {
		require.False(t, strings.Contains(pkg, "prometheus") || strings.Contains(pkg, "opentelemetry"), "logx builds in %s", pkg)
	}
}

// TestFlushEndsWithClose: a Flush waiting for this node to apply its
// entries ends with ErrClosed once Close gives up its own flush, even if
// the apply never comes (here: a follower whose apply is held). Before, it
// waited for good: the leader had committed the entries, and nothing ended
// the wait for the local apply.
func TestFlushEndsWithClose(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.CloseTimeout = 300 * time.Millisecond
		sm.powerCut = &powerHooks{}
	})
	leader := c.leaderIndex()
	fi := (leader + 1) % 3
	f := c.nodes[fi]
	hold := &c.seams[fi].powerCut.mu
	hold.Lock() // the follower's apply waits
	held := true
	defer func() {
		if held {
			hold.Unlock()
		}
	}()
	f.Info("never applied here before Close")
	flushed := make(chan error, 1)
	go func() { flushed <- f.Flush(context.Background()) }()
	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	select {
	case err := <-flushed:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(15 * time.Second):
		t.Fatal("Flush still waits after Close gave up flushing")
	}
	hold.Unlock()
	held = false
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
}

// TestLongestFile: a File of the longest length allowed rotates, is
// compressed, and is retired: every name derived from it fits in 255
// bytes. (A File of 235 bytes validated, and every node failed to rename
// it at its first rotation.) The same for the longest a log written
// before the bound may hold and that works (maxWorkingFileName, 221
// bytes; at 222 the first retirement fails: file name too long), opened as
// a stream from the catalog is.
func TestLongestFile(t *testing.T) {
	t.Parallel()
	for _, n := range []int{maxFileName, maxWorkingFileName} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			file := strings.Repeat("a", n-4) + ".log"
			lx := newSingle(t, func(c *Config) {
				c.MaxSize = 4096
				c.MaxFiles = 2
				c.Compress = true
				if n <= maxFileName {
					c.File = file
				}
			})
			s := lx.defaultStream
			if n > maxFileName {
				spec := streamSpec{Name: "long", File: file, MaxSize: 4096, MaxFiles: 2}
				require.NoError(t, lx.node.open(spec.config(), []string{lx.cfg.Addr}, false))
				var err error
				s, err = lx.Stream("long")
				require.NoError(t, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			require.NoError(t, s.WaitReady(ctx))
			for k := range 200 {
				_, err := s.Append(ctx, LevelInfo, "long", "k", k)
				require.NoError(t, err, "a node that cannot rotate stops applying")
			}
			require.NoError(t, s.Flush(ctx))
			st := s.Stats()
			require.Empty(t, st.WriteError)
			require.Greater(t, st.Retired, uint64(0))
			require.True(t, waitFor(30*time.Second, func() bool {
				names, err := LogFiles(s.cfg.Dir, file)
				return err == nil && slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, ".zst") })
			}), "nothing compressed")
		})
	}
}

// TestCloseReportsLostEntries: Close that gives up on queued asynchronous
// entries (no leader: its peers never start) says so with ErrEntriesLost,
// as a Flush would, and Stats counts every one of them as failed, both the
// batch the producer holds and those still queued behind it.
func TestCloseReportsLostEntries(t *testing.T) {
	addrs := freeAddrs(t, 3)
	cfg := testConfig(t, 0, addrs, filepath.Join(t.TempDir(), "n1"))
	cfg.CloseTimeout = 100 * time.Millisecond
	cfg.MaxBatchEntries = 4 // the producer holds one batch; the rest stay queued
	lx, err := New(cfg)
	require.NoError(t, err)
	const n = 10
	for i := range n {
		lx.Info("never committed", "i", i)
	}
	// The producer holds a batch (at most MaxBatchEntries), the rest wait.
	require.True(t, waitFor(10*time.Second, func() bool { return lx.Stats().QueueLen < n }))
	err = lx.Close()
	require.ErrorIs(t, err, ErrEntriesLost)
	require.Contains(t, err.Error(), fmt.Sprintf("%d asynchronous entries", n))
	require.Equal(t, uint64(n), lx.Stats().Failed)
	require.Equal(t, err, lx.Close(), "a second Close returns the first result")
}
