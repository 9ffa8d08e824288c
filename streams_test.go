package logx

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// testStreams are the streams the stream tests declare: an audit log in
// text and an access log in JSON that may drop entries when full.
func testStreams(cfg *Config) {
	cfg.Streams = []StreamConfig{
		{Name: "audit", MaxSize: 4 << 10},
		{Name: "access", Format: FormatJSON, DropWhenFull: true},
	}
}

// Every node holds every stream: entries logged to a stream on any node
// end up, each once, in that stream's files only, identical on every node;
// each stream keeps its own files, format and sequence numbers, under
// Dir/streams/<name>; a node restarted picks every stream up again.
func TestStreams(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, testStreams)
	const perNode = 40
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	write := func(round int) {
		var wg sync.WaitGroup
		for i, lx := range c.nodes {
			wg.Go(func() {
				audit, err := lx.Stream("audit")
				require.NoError(t, err)
				access, err := lx.Stream("access")
				require.NoError(t, err)
				for k := range perNode {
					lx.Info("default line", "node", i, "k", k, "round", round)
					_, err := audit.Append(ctx, LevelWarn, fmt.Sprintf("audit line n%d k%d r%d", i, k, round))
					require.NoError(t, err)
					access.Info("access line", "node", i, "k", k, "round", round)
				}
			})
		}
		wg.Wait()
		for _, lx := range c.nodes {
			for _, name := range lx.Streams() {
				s, err := lx.Stream(name)
				require.NoError(t, err)
				require.NoError(t, s.Flush(ctx), "stream %s", name)
			}
		}
	}
	check := func(rounds int) {
		want := uint64(3 * perNode * rounds)
		files := map[string]string{DefaultStream: "app.log", "audit": "audit.log", "access": "access.log"}
		needle := map[string]string{DefaultStream: "default line", "audit": "audit line", "access": "access line"}
		for name, file := range files {
			var dirs []string
			for _, cfg := range c.cfgs {
				if name == DefaultStream {
					dirs = append(dirs, cfg.Dir)
				} else {
					dirs = append(dirs, filepath.Join(cfg.Dir, "streams", name))
				}
			}
			require.True(t, waitFor(30*time.Second, func() bool {
				for _, lx := range c.nodes {
					s, _ := lx.Stream(name)
					if s.Stats().Seq < want {
						return false
					}
				}
				return true
			}), "stream %s did not reach %d entries on every node", name, want)
			requireIdentical(t, dirs, file)
			lines := readLines(t, dirs[0], file)
			// The default stream also holds the cluster's own entries
			// (settings, clock reports, which are not lines): count ours.
			n := 0
			for _, l := range lines {
				for other, s := range needle {
					if other != name {
						require.NotContains(t, string(l), s, "a line of stream %s in stream %s", other, name)
					}
				}
				if bytes.Contains(l, []byte(needle[name])) {
					n++
				}
			}
			require.Equal(t, int(want), n, "stream %s", name)
			if name == "access" {
				require.Equal(t, byte('{'), lines[0][0], "the access stream is JSON")
			}
		}
		audit, _ := c.nodes[0].Stream("audit")
		require.Greater(t, audit.Stats().Rotations, uint64(0), "the audit stream's own MaxSize (4 KiB) rotates it")
		def := c.nodes[0].Stats()
		require.Zero(t, def.Rotations, "the default stream keeps its own MaxSize")
	}

	write(1)
	check(1)

	// Restart a follower of the default stream: every stream comes back.
	i := 0
	if c.nodes[0].Stats().State == "Leader" {
		i = 1
	}
	c.stop(i)
	c.start(i)
	c.waitReady()
	write(2)
	check(2)
}

// Config.Streams is checked: names, duplicates, the default stream's
// name, and each stream's settings, named Streams[i].Field.
func TestStreamConfigErrors(t *testing.T) {
	base := testConfig(t, 0, []string{"127.0.0.1:1"}, t.TempDir())
	for _, tc := range []struct {
		streams []StreamConfig
		field   string
	}{
		{[]StreamConfig{{Name: ""}}, "Streams[0].Name"},
		{[]StreamConfig{{Name: "Audit"}}, "Streams[0].Name"},
		{[]StreamConfig{{Name: "-audit"}}, "Streams[0].Name"},
		{[]StreamConfig{{Name: "a/b"}}, "Streams[0].Name"},
		{[]StreamConfig{{Name: string(bytes.Repeat([]byte("a"), 65))}}, "Streams[0].Name"},
		{[]StreamConfig{{Name: DefaultStream}}, "Streams[0].Name"},
		{[]StreamConfig{{Name: "a"}, {Name: "a"}}, "Streams[1].Name"},
		{[]StreamConfig{{Name: "a", MaxSize: -1}}, "Streams[0].MaxSize"},
		{[]StreamConfig{{Name: "a", File: "../x.log"}}, "Streams[0].File"},
		{[]StreamConfig{{Name: "a", Format: Format(9)}}, "Streams[0].Format"},
		{[]StreamConfig{{Name: "a", QueueSize: 1 << 62}}, "Streams[0].QueueSize"},
		{[]StreamConfig{{Name: "a", QueueSize: maxQueue + 1}}, "Streams[0].QueueSize"},
	} {
		cfg := base
		cfg.Streams = tc.streams
		err := cfg.Validate()
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, "%+v", tc.streams)
		require.Equal(t, tc.field, ce.Field, "%v", err)
	}
	cfg := base
	cfg.File = "streams"
	var ce *ConfigError
	require.ErrorAs(t, cfg.Validate(), &ce)
	require.Equal(t, "File", ce.Field, "the default stream's File may not take the streams directory's name")

	cfg = base
	cfg.MaxBatchEntries = maxQueue + 1
	require.ErrorAs(t, cfg.Validate(), &ce)
	require.Equal(t, "MaxBatchEntries", ce.Field)

	cfg = base
	cfg.Streams = []StreamConfig{{Name: "a-1"}, {Name: "b_2", Format: FormatJSON, QueueSize: maxQueue}}
	require.NoError(t, cfg.Validate())
}

// TestOpenChecksCatalogSpec: a stream the catalog lists is checked before
// it opens, as a declared one is with Config: an entry an older version
// committed with a queue of 2^62 entries is refused with an error, where
// making the queue panicked.
func TestOpenChecksCatalogSpec(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	err := c.nodes[0].node.open(streamSpec{Name: "q", Format: 7}.config(), []string{c.cfgs[0].Addr}, false)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Streams[0].Format", ce.Field)
	require.Contains(t, err.Error(), `stream "q"`)
	_, err = c.nodes[0].Stream("q")
	require.Error(t, err, "not opened")

	// A queue over the bound, which versions before 2026-12-06 let the
	// catalog hold (2^62 made every node panic as it opened the stream),
	// opens at the bound.
	require.NoError(t, c.nodes[0].node.open(streamSpec{Name: "big", QueueSize: 1 << 62}.config(), []string{c.cfgs[0].Addr}, false))
	big, err := c.nodes[0].Stream("big")
	require.NoError(t, err)
	require.Equal(t, maxQueue, cap(big.queue))
}

// A stream whose file settings differ from the ones the catalog recorded is
// refused at start, with an error naming the stream and the settings.
func TestStreamSettingsConflict(t *testing.T) {
	addrs := freeAddrs(t, 1)
	cfg := testConfig(t, 0, addrs, t.TempDir())
	cfg.Streams = []StreamConfig{{Name: "audit", MaxSize: 1 << 20}}
	lx, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, lx.WaitReady(ctx))
	audit, err := lx.Stream("audit")
	require.NoError(t, err)
	_, err = audit.Append(ctx, LevelInfo, "x")
	require.NoError(t, err)
	require.NoError(t, lx.Close())

	cfg.Streams[0].MaxSize = 2 << 20
	_, err = New(cfg)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Streams[0]", ce.Field, "the catalog (checked first) has the stream's settings")
	require.ErrorContains(t, err, `stream "audit"`)
	require.ErrorContains(t, err, "MaxSize:1048576")

	// The failed start released Dir and the address: the right Config opens.
	cfg.Streams[0].MaxSize = 1 << 20
	lx, err = New(cfg)
	require.NoError(t, err)
	require.NoError(t, lx.Close())
}

// Stream returns ErrNoStream for a name the node does not hold.
func TestStreamUnknown(t *testing.T) {
	lx := newSingle(t, nil)
	_, err := lx.Stream("nope")
	require.ErrorIs(t, err, ErrNoStream)
	s, err := lx.Stream(DefaultStream)
	require.NoError(t, err)
	require.Equal(t, DefaultStream, s.Name())
	require.Equal(t, []string{DefaultStream}, lx.Streams())
}

// The preface names the stream: a connection with a malformed preface is
// closed unread, and a control request for a stream the node does not
// hold is answered that it does not (one for a stream it is about to open
// waits: TestEndpointWaitsUntilOpen); the default stream's one-byte
// prefaces still work.
func TestPrefaceStreams(t *testing.T) {
	t.Parallel()
	lx := newSingle(t, func(cfg *Config) { cfg.Streams = []StreamConfig{{Name: "audit"}} })
	c, err := net.Dial("tcp", lx.cfg.Addr)
	require.NoError(t, err)
	_, err = c.Write(wire.Preface("nope", wire.ProtoControl))
	require.NoError(t, err)
	resp, err := controlExchange(t.Context(), c, controlRequest{Op: "status"}, time.Now().Add(10*time.Second))
	require.NoError(t, err)
	require.Contains(t, resp.Error, `has no stream "nope"`)
	c.Close()
	// So a change for a mistyped stream is refused, and known not made (a
	// connection closed unanswered could also be a lost answer).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = SetClusterLevel(ctx, lx.cfg.Addr, "nope", LevelWarn, nil)
	cancel()
	require.ErrorContains(t, err, `has no stream "nope"`)
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
	for _, pre := range [][]byte{
		wire.Preface("nope", wire.ProtoFetch),                                       // no such stream
		{wire.ProtoStream, 0, wire.ProtoControl},                                    // empty name
		{wire.ProtoStream, 7, 'd', 'e', 'f', 'a', 'u', 'l', 't', wire.ProtoControl}, // the default stream by name
		{wire.ProtoStream, 3, 'A', 'B', 'C', wire.ProtoControl},                     // bad name
		append(wire.Preface("audit", wire.ProtoControl)[:7], 9),                     // unknown protocol
		{9},
	} {
		c, err := net.Dial("tcp", lx.cfg.Addr)
		require.NoError(t, err)
		_, err = c.Write(pre)
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err, "preface %q", pre)
		require.False(t, isTimeout(err), "preface %q: the node should close the connection", pre)
		c.Close()
	}
	// Status requests through both prefaces answer, each for its stream.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	audit, err := lx.Stream("audit")
	require.NoError(t, err)
	for _, s := range []*Stream{lx.defaultStream, audit} {
		resp, err := s.sendControl(ctx, lx.cfg.Addr, controlRequest{Op: "status"})
		require.NoError(t, err)
		require.NotNil(t, resp.Status)
		require.Equal(t, s.name, resp.Status.Stream)
	}
}

// wire.ReadPreface never panics and accepts only what preface writes.
func FuzzPreface(f *testing.F) {
	f.Add(wire.Preface("", wire.ProtoRaft))
	f.Add(wire.Preface("audit", wire.ProtoFetch))
	f.Add([]byte{wire.ProtoStream, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, proto, err := wire.ReadPreface(bytes.NewReader(b), validStreamName, DefaultStream)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(b, wire.Preface(name, proto)) {
			t.Fatalf("%q read as stream %q, protocol %d", b, name, proto)
		}
		if name != "" && (checkStreamName(name) != nil || name == DefaultStream) {
			t.Fatalf("bad name %q accepted", name)
		}
	})
}

// AddNode adds a node to every stream's group, and it catches every
// stream up; RemoveNode removes it from every one.
func TestStreamsMembership(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, testStreams)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	appendTo := func(lx *Logx, stream, tag string, n int) {
		s, err := lx.Stream(stream)
		require.NoError(t, err)
		for k := range n {
			_, err := s.Append(ctx, LevelInfo, fmt.Sprintf("%s %s k%d", stream, tag, k))
			require.NoError(t, err)
		}
	}
	appendTo(c.nodes[0], "audit", "before", 30)
	appendTo(c.nodes[1], "access", "before", 30)

	n := c.addJoiner()
	require.NoError(t, c.nodes[n].AddNode(ctx, c.cfgs[n].Addr))
	require.NoError(t, c.nodes[n].WaitReady(ctx))
	// Every node learns each configuration with the stream's next
	// AppendEntries.
	for _, name := range []string{DefaultStream, "audit", "access"} {
		for i, lx := range c.nodes {
			s, err := lx.Stream(name)
			require.NoError(t, err)
			waitVoters(t, s, 4, fmt.Sprintf("stream %s on node %d", name, i))
		}
	}
	appendTo(c.nodes[n], "audit", "after", 10)
	for _, lx := range c.nodes {
		s, _ := lx.Stream("audit")
		require.NoError(t, s.Flush(ctx))
	}
	waitStreamSeq(t, c, "audit", 40)
	requireIdentical(t, streamDirs(c, "audit"), "audit.log")

	require.NoError(t, c.nodes[0].RemoveNode(ctx, c.cfgs[n].Addr))
	for _, name := range []string{DefaultStream, "audit", "access"} {
		s, _ := c.nodes[0].Stream(name)
		waitVoters(t, s, 3, "stream "+name)
	}
	require.ErrorIs(t, c.nodes[0].RemoveNode(ctx, c.cfgs[n].Addr), ErrNotMember)
}

// leaderCounts returns how many of the streams each node of c leads, as
// node i sees it.
func leaderCounts(c *testCluster, i int) map[string]int {
	counts := map[string]int{}
	for _, name := range c.nodes[i].Streams() {
		s, _ := c.nodes[i].Stream(name)
		if leader, _ := s.raft.LeaderWithID(); leader != "" {
			counts[string(leader)]++
		}
	}
	return counts
}

// twoOfThree starts two nodes of a three-node cluster with 7 streams (the
// default one and s0 to s5) and waits until they are ready; the third is
// configured, not started.
func twoOfThree(t *testing.T) (*testCluster, []string) {
	addrs := freeAddrs(t, 3)
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := range 3 {
		cfg := testConfig(t, i, addrs, filepath.Join(base, fmt.Sprintf("n%d", i+1)))
		for k := range 6 {
			cfg.Streams = append(cfg.Streams, StreamConfig{Name: fmt.Sprintf("s%d", k)})
		}
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(c.closeAll)
	c.start(0)
	c.start(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[0].WaitReady(ctx))
	require.NoError(t, c.nodes[1].WaitReady(ctx))
	return c, addrs
}

// Leaders spread: with 7 streams on 3 nodes no node leads more than
// ceil(7/3) = 3 once the balancing has run, including after a node that
// was down comes back, when the two others had led every stream.
func TestStreamLeadersSpread(t *testing.T) {
	t.Parallel()
	c, addrs := twoOfThree(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.Zero(t, leaderCounts(c, 0)[addrs[2]], "a node that is down leads nothing")

	c.start(2)
	require.NoError(t, c.nodes[2].WaitReady(ctx))
	var counts map[string]int
	ok := waitFor(30*time.Second, func() bool {
		counts = leaderCounts(c, 2)
		total := 0
		for _, a := range addrs {
			if counts[a] > 3 || counts[a] == 0 {
				return false
			}
			total += counts[a]
		}
		return total == 7
	})
	require.True(t, ok, "leaders did not spread: %v", counts)
}

// streamDirs returns the directory of stream name on every node of c.
func streamDirs(c *testCluster, name string) []string {
	var dirs []string
	for _, cfg := range c.cfgs {
		dirs = append(dirs, filepath.Join(cfg.Dir, "streams", name))
	}
	return dirs
}

// waitVoters waits until s's configuration, as this node knows it, holds
// exactly n members, every one a voter (a node learns a configuration with
// the group's next AppendEntries).
func waitVoters(t *testing.T, s *Stream, n int, what string) {
	t.Helper()
	var ms []Member
	var err error
	require.True(t, waitFor(30*time.Second, func() bool {
		ms, err = s.Members()
		if err != nil || len(ms) != n {
			return false
		}
		for _, m := range ms {
			if !m.Voter {
				return false
			}
		}
		return true
	}), "%s: members %+v (want %d voters), %v", what, ms, n, err)
}

// waitStreamSeq waits until stream name holds at least n entries on every
// running node of c.
func waitStreamSeq(t *testing.T, c *testCluster, name string, n uint64) {
	t.Helper()
	require.True(t, waitFor(30*time.Second, func() bool {
		for _, lx := range c.nodes {
			if lx == nil {
				continue
			}
			s, err := lx.Stream(name)
			if err != nil || s.Stats().Seq < n {
				return false
			}
		}
		return true
	}), "stream %s did not reach %d entries on every node", name, n)
}

// CreateStream, called on any node, opens the stream on every node, one
// that was down included once it is back; DeleteStream closes it on every
// node and keeps its files under streams/.deleted-<name>-<index>; a node
// that restarts does not bring a deleted stream back.
func TestCreateDeleteStream(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.stop(2)

	sc := StreamConfig{Name: "audit", Format: FormatJSON, MaxSize: 8 << 10}
	require.NoError(t, c.nodes[1].CreateStream(ctx, sc))
	require.NoError(t, c.nodes[1].CreateStream(ctx, sc), "creating it again with the same settings does nothing")
	other := sc
	other.MaxSize = 16 << 10
	require.ErrorContains(t, c.nodes[0].CreateStream(ctx, other), "other settings")
	// Node settings too: the nodes that do not declare the stream take
	// the catalog's, so another caller's are not taken silently.
	other = sc
	other.QueueSize = 7
	require.ErrorContains(t, c.nodes[0].CreateStream(ctx, other), "other node settings")
	other = sc
	other.Level = LevelWarn
	require.ErrorContains(t, c.nodes[0].CreateStream(ctx, other), "other node settings")
	// A level above ERROR would silence the stream's errors on those
	// nodes: refused, as a cluster level is.
	other.Name, other.Level = "silent", LevelError+1
	require.ErrorAs(t, c.nodes[0].CreateStream(ctx, other), new(*ConfigError))
	spec := specOf(other)
	for _, i := range []int{c.waitLeader(), (c.waitLeader() + 1) % 2} { // the leader's own request is not parsed
		require.ErrorContains(t, c.nodes[i].control(ctx, controlRequest{Op: "create-stream", Stream: &spec}), "above ERROR", "n%d's request", i+1)
	}
	bad := sc
	bad.Name = "Bad Name"
	var ce *ConfigError
	require.ErrorAs(t, c.nodes[0].CreateStream(ctx, bad), &ce)

	require.NoError(t, c.nodes[0].node.waitStream(ctx, "audit", true), "every node opens it")
	for i := range 2 {
		s, err := c.nodes[i].Stream("audit")
		require.NoError(t, err)
		for k := range 50 {
			_, err := s.Append(ctx, LevelInfo, fmt.Sprintf("audit n%d k%d", i, k))
			require.NoError(t, err)
		}
	}

	// The node that was down learns of the stream from the default
	// stream's log, opens it and catches it up.
	c.start(2)
	require.NoError(t, c.nodes[2].node.waitStream(ctx, "audit", true))
	require.NoError(t, c.nodes[2].WaitReady(ctx))
	waitStreamSeq(t, c, "audit", 100)
	requireIdentical(t, streamDirs(c, "audit"), "audit.log")
	lines := readLines(t, streamDirs(c, "audit")[2], "audit.log")
	require.Len(t, lines, 100)
	require.Equal(t, byte('{'), lines[0][0])

	// Delete, from a node that did not create it.
	def := c.nodes[0].defaultStream
	entry := def.fsm.catalogView()["audit"]
	require.NotNil(t, entry)
	require.NoError(t, c.nodes[2].DeleteStream(ctx, "audit"))
	for i, lx := range c.nodes {
		require.NoError(t, lx.node.waitStream(ctx, "audit", false), "node %d", i)
		_, err := lx.Stream("audit")
		require.ErrorIs(t, err, ErrNoStream)
		kept := deletedDir(c.cfgs[i].Dir, *entry)
		require.True(t, waitFor(10*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(kept, "audit.log"))
			return err == nil
		}), "node %d: the deleted stream's files are kept in %s", i, kept)
		require.Len(t, readLines(t, kept, "audit.log"), 100)
	}
	require.ErrorContains(t, c.nodes[0].DeleteStream(ctx, "audit"), "no such stream")
	require.Error(t, c.nodes[0].DeleteStream(ctx, DefaultStream))

	// A restarted node does not bring it back, though its log replays
	// the creation.
	c.stop(1)
	c.start(1)
	require.NoError(t, c.nodes[1].WaitReady(ctx))
	c.flushAll()
	_, err := c.nodes[1].Stream("audit")
	require.ErrorIs(t, err, ErrNoStream)
	require.Equal(t, []string{DefaultStream}, c.nodes[1].Streams())

	// The name is never used again (a node that was down meanwhile would
	// bring the old group back under it); another name is fine.
	require.ErrorContains(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: "audit"}), "never used again")
	require.NoError(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: "audit2"}))
	s, err := c.nodes[0].Stream("audit2")
	require.NoError(t, err)
	seq, err := s.Append(ctx, LevelInfo, "again")
	require.NoError(t, err)
	require.Equal(t, uint64(1), seq)
	// What a deletion keeps: the log files and state.json, not the Raft
	// log.
	_, err = os.Stat(filepath.Join(deletedDir(c.cfgs[0].Dir, *entry), "raft"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// A delete-stream request for a stream the leader's Config declares is
// refused, whoever sends it (a peer with a certificate included); the
// stream stays.
func TestDeleteDeclaredStreamRefused(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, testStreams)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := c.leaderIndex()
	require.GreaterOrEqual(t, l, 0)
	resp, err := c.nodes[(l+1)%3].defaultStream.sendControl(ctx, c.cfgs[l].Addr, controlRequest{Op: "delete-stream", Name: "audit"})
	require.NoError(t, err)
	require.Contains(t, resp.Error, "declared")
	for _, lx := range c.nodes {
		_, err := lx.Stream("audit")
		require.NoError(t, err)
	}
}

// A stream created at run time starts with the default stream's voters
// only: a non-voter (a node being added, or an address a peer added and
// that never answers) is not one of them.
func TestCreateStreamVotersOnly(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := c.leaderIndex()
	require.NoError(t, c.nodes[l].raft.AddNonvoter("127.0.0.1:9", "127.0.0.1:9", 0, 5*time.Second).Error())
	require.NoError(t, c.nodes[l].CreateStream(ctx, StreamConfig{Name: "audit"}))
	e := c.nodes[l].defaultStream.fsm.catalogView()["audit"]
	require.NotNil(t, e)
	require.Len(t, e.Voters, 3)
	require.NotContains(t, e.Voters, "127.0.0.1:9")
}

// A stream declared on a running cluster whose membership changed since it
// started (a fourth node was added) gets the same four voters on every
// node, whichever node declares it first: the declared stream waits for
// the catalog, whose voters are the default stream's.
func TestDeclaredAfterMembershipChange(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := c.addJoiner()
	require.NoError(t, c.nodes[n].AddNode(ctx, c.cfgs[n].Addr))
	require.NoError(t, c.nodes[n].WaitReady(ctx))
	// A rolling restart that declares the stream, one node at a time.
	for i := range c.nodes {
		c.stop(i)
		c.cfgs[i].Streams = []StreamConfig{{Name: "s"}}
		c.start(i)
		require.NoError(t, c.nodes[i].defaultStream.WaitReady(ctx))
	}
	require.NoError(t, c.nodes[0].WaitReady(ctx))
	for i, lx := range c.nodes {
		s, err := lx.Stream("s")
		require.NoError(t, err)
		waitVoters(t, s, 4, fmt.Sprintf("stream s on node %d", i))
	}
	s, _ := c.nodes[3].Stream("s")
	_, err := s.Append(ctx, LevelInfo, "from the fourth node")
	require.NoError(t, err)
	waitStreamSeq(t, c, "s", 1)
	requireIdentical(t, streamDirs(c, "s"), "s.log")
}

// The declared streams are recorded in the catalog; a node whose declared
// stream disagrees with the catalog is refused at start.
func TestDeclaredStreamsInCatalog(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, testStreams)
	require.True(t, waitFor(30*time.Second, func() bool {
		for _, lx := range c.nodes {
			cat := lx.defaultStream.fsm.catalogView()
			if cat["audit"] == nil || cat["access"] == nil {
				return false
			}
		}
		return true
	}), "the declared streams are not in every node's catalog")
	c.stop(1) // checkpoints the catalog
	cfg := c.cfgs[1]
	cfg.Streams = slices.Clone(cfg.Streams)
	cfg.Streams[1].Format = FormatText
	_, err := New(cfg)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Streams[1]", ce.Field)
	require.ErrorContains(t, err, "catalog")
	c.start(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[1].WaitReady(ctx))
	require.Error(t, c.nodes[1].DeleteStream(ctx, "audit"), "a declared stream cannot be deleted")
}

// A stream other than the default one takes 8 MiB of raft-wal segment on
// disk, not raft-wal's default 64 MiB.
func TestStreamWALSize(t *testing.T) {
	lx := newSingle(t, func(cfg *Config) { cfg.Streams = []StreamConfig{{Name: "audit"}} })
	ents, err := os.ReadDir(filepath.Join(lx.cfg.Dir, "streams", "audit", "raft"))
	require.NoError(t, err)
	var segs int
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".wal" {
			fi, err := e.Info()
			require.NoError(t, err)
			require.Equal(t, int64(streamSegmentSize), fi.Size(), e.Name())
			segs++
		}
	}
	require.Equal(t, 1, segs)
}

// The balancer hands nothing to a node that is down: with one of three
// nodes stopped, the two others keep every stream between them, however
// unevenly, round after round.
func TestStreamLeadersNotToDownNode(t *testing.T) {
	t.Parallel()
	c, addrs := twoOfThree(t)
	r0, r1 := c.nodes[0].node.rounds.Load(), c.nodes[1].node.rounds.Load()
	require.True(t, waitFor(30*time.Second, func() bool {
		return c.nodes[0].node.rounds.Load() >= r0+4 && c.nodes[1].node.rounds.Load() >= r1+4
	}))
	counts := leaderCounts(c, 0)
	require.Zero(t, counts[addrs[2]], "counts %v", counts)
	require.Equal(t, 7, counts[addrs[0]]+counts[addrs[1]], "counts %v", counts)
	for i := range 2 {
		n := c.nodes[i].node
		n.mu.Lock()
		tried := n.handedTo[addrs[2]]
		n.mu.Unlock()
		require.Zero(t, tried, "node %d handed streams to the node that is down (counts %v)", i, counts)
	}
}

// A node added to the cluster opens the streams of the catalog, those its
// own Config does not declare included, and AddNode adds it to each of
// them once it has opened it.
func TestAddNodeLearnsStreams(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Streams = []StreamConfig{{Name: "audit"}} })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[0].defaultStream.fsm.catalogView()["audit"] != nil }))
	audit, _ := c.nodes[0].Stream("audit")
	for k := range 20 {
		_, err := audit.Append(ctx, LevelInfo, fmt.Sprintf("before k%d", k))
		require.NoError(t, err)
	}
	addr := freeAddrs(t, 1)[0]
	cfg := c.cfgs[0]
	cfg.NodeID, cfg.Addr, cfg.Join = "n4", addr, true
	cfg.Dir = filepath.Join(filepath.Dir(c.cfgs[0].Dir), "n4")
	cfg.Streams = nil // not declared here: the catalog brings it
	c.cfgs = append(c.cfgs, cfg)
	c.nodes = append(c.nodes, nil)
	c.start(3)
	require.NoError(t, c.nodes[0].AddNode(ctx, addr))
	require.NoError(t, c.nodes[3].WaitReady(ctx))
	s, err := c.nodes[3].Stream("audit")
	require.NoError(t, err)
	ms, err := audit.Members()
	require.NoError(t, err)
	require.Len(t, ms, 4)
	_, err = s.Append(ctx, LevelInfo, "from n4")
	require.NoError(t, err)
	waitStreamSeq(t, c, "audit", 21)
	requireIdentical(t, streamDirs(c, "audit"), "audit.log")
}

// OnAlarm is called one call at a time, though every stream has its own
// monitor, and each Alarm names its stream. The callback's counter of calls
// in progress has no lock: the race detector reports concurrent calls.
func TestStreamAlarms(t *testing.T) {
	addrs := freeAddrs(t, 3) // the two others never start: no leader
	calls := make(chan Alarm, 100)
	busy := 0
	cfg := testConfig(t, 0, addrs, t.TempDir())
	cfg.Streams = []StreamConfig{{Name: "audit"}, {Name: "access"}}
	cfg.AlarmNoLeader = 200 * time.Millisecond
	cfg.OnAlarm = func(a Alarm) {
		busy++
		if busy != 1 {
			t.Errorf("%d OnAlarm calls at once", busy)
		}
		time.Sleep(time.Millisecond) // hold the call: overlaps would show
		busy--
		calls <- a
	}
	lx, err := New(cfg)
	require.NoError(t, err)
	defer lx.Close()
	got := map[string]bool{}
	timeout := time.After(20 * time.Second)
	for len(got) < 3 {
		select {
		case a := <-calls:
			if a.Kind == AlarmNoLeader && !a.Cleared {
				got[a.Stream] = true
			}
		case <-timeout:
			t.Fatalf("no-leader alarms only for %v", got)
		}
	}
	require.Equal(t, map[string]bool{DefaultStream: true, "audit": true, "access": true}, got)
}

// A stream goes idle after idleAfter ElectionTimeouts without entries,
// with no election: a stream other than the default one stretches its Raft
// timeouts on every node; the default stream stretches only its leader's
// heartbeat timeout, and when the leadership moves the new leader stretches
// and the old one goes back. The first entry makes a stream active again on
// every node.
func TestIdleStream(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Streams = []StreamConfig{{Name: "audit"}} })
	et := c.cfgs[0].ElectionTimeout
	streams := func(name string) []*Stream {
		var out []*Stream
		for _, lx := range c.nodes {
			s, err := lx.Stream(name)
			require.NoError(t, err)
			out = append(out, s)
		}
		return out
	}
	// timeouts says whether every node of the stream is idle (or active)
	// with the timeouts that go with it.
	timeouts := func(name string, idle bool) bool {
		for _, s := range streams(name) {
			rc := s.raft.ReloadableConfig()
			want := et
			if idle && (name != DefaultStream || s.raft.State() == raft.Leader) {
				want = idleStretch * et
			}
			if s.idle.Load() != idle || rc.HeartbeatTimeout != want || rc.ElectionTimeout != want {
				return false
			}
		}
		return true
	}
	require.True(t, waitFor(30*time.Second, func() bool { return timeouts("audit", true) && timeouts(DefaultStream, true) }),
		"the streams did not go idle on every node")
	// Stay idle for a few rounds more: no node calls an election. (The
	// terms are read once the streams are idle: the balancer may have
	// handed a leadership over before, which takes a term.)
	terms := map[string]uint64{}
	for _, name := range []string{"audit", DefaultStream} {
		terms[name] = streams(name)[0].raft.CurrentTerm()
	}
	rounds := c.nodes[0].node.rounds.Load()
	require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[0].node.rounds.Load() >= rounds+3 }))
	for _, name := range []string{"audit", DefaultStream} {
		for i, s := range streams(name) {
			require.Equal(t, terms[name], s.raft.CurrentTerm(), "%s, node %d: an election while idle", name, i)
		}
	}

	// The default stream's leadership moves: the new leader stretches its
	// heartbeat timeout, the old one no longer does.
	var old *Stream
	for _, s := range streams(DefaultStream) {
		if s.raft.State() == raft.Leader {
			old = s
		}
	}
	require.NotNil(t, old)
	require.NoError(t, old.transferLeadership())
	require.True(t, waitFor(30*time.Second, func() bool {
		return old.raft.State() == raft.Follower && timeouts(DefaultStream, true)
	}), "the timeouts did not follow the leadership")

	// The balancer's handover of an idle stream makes it active first, as
	// a transfer does (it went on with the stretched timeouts).
	require.True(t, waitFor(30*time.Second, func() bool { return timeouts("audit", true) }))
	for _, s := range streams("audit") {
		if s.raft.State() == raft.Leader {
			others, err := s.serverAddrs(true)
			require.NoError(t, err)
			target := others[0]
			if target == s.cfg.Addr {
				target = others[1]
			}
			require.True(t, s.handTo(target, func() {}))
			require.False(t, s.idle.Load(), "handed over while idle")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"audit", DefaultStream} {
		_, err := streams(name)[1].Append(ctx, LevelInfo, "wake up")
		require.NoError(t, err)
		require.True(t, waitFor(30*time.Second, func() bool { return timeouts(name, false) }),
			"%s did not wake on every node", name)
		waitStreamSeq(t, c, name, 1)
	}
	requireIdentical(t, streamDirs(c, "audit"), "audit.log")
}

// A Dir written by logx before streams (commit 2f686b5, the main this work
// started from: testdata/mkolddir made the fixture) opens unchanged as the
// default stream: every line is there, byte for byte, the log goes on from
// its last sequence number, and a stream declared now is added beside it.
func TestOpensPreStreamsDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	f, err := os.Open("testdata/dir-2f686b5.tar.gz")
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		path := filepath.Join(base, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(path, 0o755))
		case tar.TypeReg:
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			out, err := os.Create(path)
			require.NoError(t, err)
			_, err = io.Copy(out, tr)
			require.NoError(t, err)
			require.NoError(t, out.Close())
		}
	}
	var fx struct {
		Addr string `json:"addr"`
		Seq  uint64 `json:"seq"`
	}
	b, err := os.ReadFile(filepath.Join(base, "fixture.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &fx))
	dir := filepath.Join(base, "n1")
	before := fileHashes(t, dir, "app.log")
	oldLines := readLines(t, dir, "app.log")
	require.Len(t, oldLines, int(fx.Seq))

	cfg := Config{NodeID: "n1", Addr: fx.Addr, Peers: []string{fx.Addr}, Dir: dir, File: "app.log", MaxSize: 4096,
		ElectionTimeout: 300 * time.Millisecond, LogOutput: testWriter{t}, Streams: []StreamConfig{{Name: "audit"}}}
	lx, err := New(cfg)
	require.NoError(t, err, "the fixture's address %s must be free", fx.Addr)
	defer lx.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, lx.WaitReady(ctx))
	require.Equal(t, fx.Seq, lx.Stats().Seq)
	for name, sum := range before {
		if name != "app.log" {
			require.Equal(t, sum, fileHashes(t, dir, "app.log")[name], "rotated file %s changed", name)
		}
	}
	seq, err := lx.Append(ctx, LevelInfo, "new release entry")
	require.NoError(t, err)
	require.Equal(t, fx.Seq+1, seq)
	audit, err := lx.Stream("audit")
	require.NoError(t, err)
	aseq, err := audit.Append(ctx, LevelInfo, "audit entry")
	require.NoError(t, err)
	require.Equal(t, uint64(1), aseq)
	require.NoError(t, lx.Flush(ctx))
	lines := readLines(t, dir, "app.log")
	require.Len(t, lines, int(fx.Seq)+1)
	for i := range oldLines {
		require.Equal(t, oldLines[i], lines[i])
	}
	require.Contains(t, string(lines[fx.Seq]), "new release entry")
	require.Len(t, readLines(t, filepath.Join(dir, "streams", "audit"), "audit.log"), 1)
}

// A stream that only a follower of the default stream declares (the usual
// rolling restart that adds one: followers first) is recorded in the
// catalog at that follower's request, and starts on every node.
func TestDeclaredByFollowerOnly(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := (c.leaderIndex() + 1) % 3
	c.stop(f)
	c.cfgs[f].Streams = []StreamConfig{{Name: "s"}}
	c.start(f)
	require.NoError(t, c.nodes[f].WaitReady(ctx), "the declared stream starts")
	for i, lx := range c.nodes {
		require.NoError(t, lx.node.waitStream(ctx, "s", true), "node %d opens it from the catalog", i)
		s, _ := lx.Stream("s")
		waitVoters(t, s, 3, fmt.Sprintf("stream s on node %d", i))
	}
	s, _ := c.nodes[f].Stream("s")
	_, err := s.Append(ctx, LevelInfo, "declared by a follower")
	require.NoError(t, err)
	waitStreamSeq(t, c, "s", 1)
	requireIdentical(t, streamDirs(c, "s"), "s.log")
}

// WaitReady does not fail because a stream is being deleted meanwhile.
func TestWaitReadyDuringDelete(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for k := range 3 {
		name := fmt.Sprintf("s%d", k)
		require.NoError(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: name}))
		require.NoError(t, c.nodes[1].node.waitStream(ctx, name, true))
		done := make(chan error, 1)
		go func() { done <- c.nodes[2].DeleteStream(ctx, name) }()
		for deleting := true; deleting; {
			select {
			case err := <-done:
				require.NoError(t, err)
				deleting = false
			default:
				require.NoError(t, c.nodes[1].WaitReady(ctx))
			}
		}
	}
}

// AddNode succeeds when a stream is deleted while it waits for the new
// node to open that stream, as RemoveNode does: the deleted stream needs no
// member. Before, AddNode failed with the wait's ErrClosed.
func TestAddNodeStreamDeleted(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: "audit"}))
	require.True(t, waitFor(30*time.Second, func() bool { _, err := c.nodes[0].Stream("audit"); return err == nil }))
	addr := freeAddrs(t, 1)[0]
	cfg := c.cfgs[0]
	cfg.NodeID, cfg.Addr, cfg.Join = "n4", addr, true
	cfg.Dir = filepath.Join(filepath.Dir(c.cfgs[0].Dir), "n4")
	// The new node holds audit half open: it answers status requests for
	// it with "starting", which AddNode's wait for it asks.
	asked := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	c.cfgs = append(c.cfgs, cfg)
	c.seams = append(c.seams, seams{
		opening: func(name, stage string) error {
			if name == "audit" && stage == "raft" {
				<-release
				return errors.New("not opened in this test")
			}
			return nil
		},
		startingAnswered: func() { once.Do(func() { close(asked) }) },
	})
	c.nodes = append(c.nodes, nil)
	c.start(3)
	defer close(release)
	added := make(chan error, 1)
	go func() { added <- c.nodes[0].AddNode(ctx, addr) }()
	select {
	case <-asked:
	case err := <-added:
		t.Fatalf("AddNode returned before it asked for audit: %v", err)
	case <-ctx.Done():
		t.Fatal("AddNode never asked the new node for audit")
	}
	require.NoError(t, c.nodes[1].DeleteStream(ctx, "audit"))
	select {
	case err := <-added:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("AddNode did not return")
	}
	ms, err := c.nodes[0].Members()
	require.NoError(t, err)
	require.Len(t, ms, 4)
}

// TestStatusWhileStarting: a node's default stream serves control
// requests before the node lists it (newNode adds it once newStream
// returns); a status request in between, a peer's during a rolling
// restart, crashed the node ("slice bounds out of range" in otherStats,
// found by TestRollingRestart).
func TestStatusWhileStarting(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	asker := c.nodes[0].defaultStream
	c.stop(2)
	var status *Stats
	var askErr error
	c.seams[2].opening = func(name, stage string) error {
		if name != DefaultStream || stage != "served" {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var resp controlResponse
		if resp, askErr = asker.sendControl(ctx, c.cfgs[2].Addr, controlRequest{Op: "status"}); askErr == nil {
			status = resp.Status
		}
		return nil
	}
	c.start(2)
	require.NoError(t, askErr)
	require.NotNil(t, status)
	require.Equal(t, DefaultStream, status.Stream)
	c.waitReady()
}

// TestDeclaredStreamRefusedBacksOff: a declared stream the leader keeps
// refusing to record (here its other voters run a logx without streams;
// the same goes for a full catalog) is asked for at the usual pace for
// declaredPatience ElectionTimeouts, then after a wait that doubles up to
// a minute, not every quarter ElectionTimeout for good: each try commits
// a command, or asks every voter. Only the first refusal and those after a
// longer wait are logged, so the log counts the tries of the back-off; it
// logged about 40 in the 3 s this test watches.
func TestDeclaredStreamRefusedBacksOff(t *testing.T) {
	t.Parallel() // waits more than it computes (parallelTests, logx_test.go)
	var out syncBuffer
	addrs := freeAddrs(t, 3)
	base := t.TempDir()
	var cfgs []Config
	for i := range 3 {
		cfg := testConfig(t, i, addrs, filepath.Join(base, fmt.Sprintf("n%d", i+1)))
		var sm seams
		if i == 0 {
			cfg.Streams = []StreamConfig{{Name: "d"}}
			cfg.LogOutput = &out
		} else {
			sm.version = streamsFeature - 1 // whoever leads, a voter does not know streams
		}
		lx, err := newNode(cfg, sm) // not ready while "d" waits: no waitReady
		require.NoError(t, err)
		t.Cleanup(func() { _ = lx.Close() })
		cfgs = append(cfgs, cfg)
	}
	refusals := func() int { return strings.Count(out.String(), `recording stream "d" in the catalog`) }
	require.True(t, waitFor(30*time.Second, func() bool { return refusals() > 0 }), "the creation is refused: %s", out.String())
	require.True(t, waitFor(30*time.Second, func() bool { return refusals() > 1 }), "backing off after declaredPatience")
	start := refusals()
	watch := 3 * time.Second
	deadline := time.Now().Add(watch)
	for time.Now().Before(deadline) { // a span of time is what is measured
		time.Sleep(100 * time.Millisecond)
	}
	n := refusals() - start
	et := cfgs[0].ElectionTimeout
	t.Logf("%d more refusals in %v (ElectionTimeout %v)", n, watch, et)
	require.LessOrEqual(t, n, 6, "tries every %v would make about %d", et/4, int(watch/(et/4)))
}

// TestCloseDuringStreamDelete: a node's Close that begins while the node
// closes a stream the catalog deleted closes its own streams beside that
// one, not after it: its bound is not spent twice. Here the deleted
// stream's close waits until the default stream's begins (10 s at most):
// with Close waiting for it first, it took those 10 s.
func TestCloseDuringStreamDelete(t *testing.T) {
	xClosing, defClosing := make(chan struct{}), make(chan struct{})
	var xOnce, defOnce sync.Once
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		if cfg.NodeID != "n1" {
			return
		}
		sm.opening = func(name, stage string) error {
			switch {
			case stage != "close":
			case name == DefaultStream:
				defOnce.Do(func() { close(defClosing) })
			case name == "x":
				xOnce.Do(func() { close(xClosing) })
				select { // a slow close: the node's own streams must not wait for it
				case <-defClosing:
				case <-time.After(10 * time.Second):
				}
			}
			return nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.nodes[1].CreateStream(ctx, StreamConfig{Name: "x"}))
	require.NoError(t, c.nodes[0].WaitReady(ctx))
	require.NoError(t, c.nodes[1].DeleteStream(ctx, "x"))
	select {
	case <-xClosing:
	case <-ctx.Done():
		t.Fatal("node 0 does not close the deleted stream")
	}
	lx := c.nodes[0]
	c.nodes[0] = nil
	start := time.Now()
	require.NoError(t, lx.Close())
	took := time.Since(start)
	t.Logf("Close took %v", took)
	require.Less(t, took, 8*time.Second, "Close waited for the deleted stream's close before its own streams'")
}

// TestDeclaredDeletedStreamClosed: a new node whose Config declares a
// stream the cluster deleted, and that learns the catalog from a snapshot
// taken after the deletion, closes the stream. Before, the snapshot's
// catalog made no event for a name deleted before the node knew it, so the
// stream stayed open for good on that node: never led, its Appends never
// committed, WaitReady waited, and the next start was refused.
func TestDeclaredDeletedStreamClosed(t *testing.T) {
	t.Parallel()
	c := catchUpCluster(t) // TrailingLogs 8: the deletion is compacted away
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: "s"}))
	require.NoError(t, c.nodes[0].DeleteStream(ctx, "s"))
	c.logAppend("after", 30)
	c.snapshotAll()
	addr := freeAddrs(t, 1)[0]
	cfg := c.cfgs[0]
	cfg.NodeID, cfg.Addr, cfg.Join = "n4", addr, true
	cfg.Dir = filepath.Join(filepath.Dir(c.cfgs[0].Dir), "n4")
	cfg.Streams = []StreamConfig{{Name: "s"}}
	c.cfgs = append(c.cfgs, cfg)
	c.seams = append(c.seams, c.seams[0])
	c.nodes = append(c.nodes, nil)
	c.start(3)
	require.NoError(t, c.nodes[0].AddNode(ctx, addr))
	require.True(t, waitFor(30*time.Second, func() bool {
		_, err := c.nodes[3].Stream("s")
		return errors.Is(err, ErrNoStream)
	}), "the deleted stream is still open on the new node")
	require.Positive(t, c.nodes[3].Stats().CatchUps, "no snapshot was installed: the test tests nothing")
}

// TestCreateStreamRacesRemoveNode: a stream created while a RemoveNode
// runs does not keep the removed node as a voter. The creation reads the
// voters, then asks each its version (up to ForwardTimeout each): a
// removal whose change to the default stream committed in between missed
// the new stream, which was then created with the removed node in it, so
// it survived no further failure. A seam holds the creation after it read
// the voters.
func TestCreateStreamRacesRemoveNode(t *testing.T) {
	t.Parallel()
	read := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		sm.creating = func([]string) {
			once.Do(func() {
				close(read)
				<-release
			})
		}
	})
	c.logAppend("before", 3)
	li := c.leaderIndex()
	leader := c.nodes[li]
	gone := c.cfgs[(li+1)%3].Addr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	created := make(chan error, 1)
	go func() { created <- leader.CreateStream(ctx, StreamConfig{Name: "s"}) }()
	<-read
	removed := make(chan error, 1)
	go func() { removed <- leader.RemoveNode(ctx, gone) }()
	// The removal waits for the creation (it finished first, and missed
	// it, before): give it the time it took.
	select {
	case err := <-removed:
		t.Logf("RemoveNode returned before the creation was committed: %v", err)
		removed <- err
	case <-time.After(2 * time.Second):
	}
	close(release)
	require.NoError(t, <-created)
	require.NoError(t, <-removed)
	var s *Stream
	require.True(t, waitFor(30*time.Second, func() bool {
		var err error
		s, err = leader.Stream("s")
		return err == nil
	}))
	require.True(t, waitFor(30*time.Second, func() bool {
		servers, err := s.serverAddrs(false)
		return err == nil && !slices.Contains(servers, gone)
	}), "the removed node is still in the new stream")
}

// TestRetireStreamDirStatError: a deleted stream's directory whose new
// name cannot even be looked at (here every candidate is past PATH_MAX)
// is an error, not a search that never ends: it held tend, and with it
// every stream event, TLS reload and balance round, or New.
func TestRetireStreamDirStatError(t *testing.T) {
	base := t.TempDir()
	e := catalogEntry{Spec: streamSpec{Name: "s"}, Index: 123456789}
	// Pad base so that streams/s fits within PATH_MAX and its deleted
	// name does not.
	for len(filepath.Join(base, streamsDir, "s")) < 4096-len(".deleted-s-123456789")+4 {
		pad := min(200, 4096-len(".deleted-s-123456789")+4-len(filepath.Join(base, streamsDir, "s")))
		base = filepath.Join(base, strings.Repeat("p", max(pad, 1)))
	}
	from := filepath.Join(base, streamsDir, "s")
	require.Less(t, len(from), 4096)
	require.GreaterOrEqual(t, len(deletedDir(base, e)), 4096)
	require.NoError(t, os.MkdirAll(from, 0o755))
	done := make(chan error, 1)
	go func() { done <- retireStreamDir(base, e) }()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("retireStreamDir looks for a free name for good")
	}
	require.DirExists(t, from, "left where it was")
}
