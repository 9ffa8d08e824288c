package logx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft-wal/types"
	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// Power cuts. kill -9 keeps everything a process wrote in the page cache;
// a power cut loses what was not fsynced. powerSim is a node's disk as a
// power cut sees it: it wraps raft-wal's file system (recording byte ranges
// written since each file's last fsync) and hears from logx's apply which
// prefix of each log file was fsynced (hooks.go). cut freezes the node's
// writes, copies its Dir without the bytes a power cut would lose, and cuts
// its network, so the frozen node can no longer tell anyone anything the
// copy does not hold. A new node then starts from the copy.
//
// The model: unfsynced file bytes are lost (raft-wal's are zeroed, since
// its files are preallocated; logx's log files are cut back to their last
// fsynced size); the metadata store (bbolt, fsynced on every commit),
// state.json (written atomically with fsync), raft's snapshots and the
// directory entries themselves survive as they are.
type powerSim struct {
	h     *powerHooks
	dmu   sync.Mutex
	dirty map[string][][2]int64 // raft-wal file → ranges written since its last fsync
	sizes map[string]int64      // log file → fsynced size
}

func newPowerSim() *powerSim {
	s := &powerSim{dirty: map[string][][2]int64{}, sizes: map[string]int64{}}
	s.h = &powerHooks{
		synced: func(path string, size int64) {
			s.dmu.Lock()
			s.sizes[path] = size
			s.dmu.Unlock()
		},
		vfs:  func(v types.VFS) types.VFS { return &simVFS{VFS: v, s: s} },
		meta: func(m types.MetaStore) types.MetaStore { return &simMeta{MetaStore: m, h: s.h} },
	}
	return s
}

type simVFS struct {
	types.VFS
	s *powerSim
}

func (v *simVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	defer v.s.h.guard()()
	f, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return &simFile{WritableFile: f, path: filepath.Join(dir, name), s: v.s}, nil
}

func (v *simVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return &simFile{WritableFile: f, path: filepath.Join(dir, name), s: v.s}, nil
}

func (v *simVFS) Delete(dir, name string) error {
	defer v.s.h.guard()()
	return v.VFS.Delete(dir, name)
}

type simFile struct {
	types.WritableFile
	path string
	s    *powerSim
}

func (f *simFile) WriteAt(p []byte, off int64) (int, error) {
	defer f.s.h.guard()()
	n, err := f.WritableFile.WriteAt(p, off)
	f.s.dmu.Lock()
	f.s.dirty[f.path] = append(f.s.dirty[f.path], [2]int64{off, int64(n)})
	f.s.dmu.Unlock()
	return n, err
}

func (f *simFile) Sync() error {
	defer f.s.h.guard()()
	err := f.WritableFile.Sync()
	if err == nil {
		f.s.dmu.Lock()
		delete(f.s.dirty, f.path)
		f.s.dmu.Unlock()
	}
	return err
}

type simMeta struct {
	types.MetaStore
	h *powerHooks
}

func (m *simMeta) CommitState(st types.PersistentState) error {
	defer m.h.guard()()
	return m.MetaStore.CommitState(st)
}

func (m *simMeta) SetStable(k, v []byte) error {
	defer m.h.guard()()
	return m.MetaStore.SetStable(k, v)
}

// freeze stops the node's writes and fsyncs until the returned func runs.
func (s *powerSim) freeze() func() {
	s.h.mu.Lock()
	return s.h.mu.Unlock
}

// copyDurable copies dir to dst as a power cut would leave it. The node
// must be frozen.
func (s *powerSim) copyDurable(t *testing.T, dir, dst, file string) {
	t.Helper()
	s.dmu.Lock()
	defer s.dmu.Unlock()
	namer := store.NewNames(file)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		size := int64(-1) // all of it
		name := d.Name()
		if filepath.Dir(rel) == "." && (name == file || strings.HasPrefix(name, ".catchup-")) {
			size = s.sizes[path] // 0 if never fsynced
		} else if _, ok := namer.ParseSegment(strings.TrimPrefix(name, ".retired-")); ok && filepath.Dir(rel) == "." {
			size = -1 // fsynced before it was renamed
		}
		if err := copyPrefix(path, out, size); err != nil {
			return err
		}
		for _, r := range s.dirty[path] {
			if err := zeroRange(out, r[0], r[1]); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
}

func copyPrefix(src, dst string, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	var r io.Reader = in
	if n >= 0 {
		r = io.LimitReader(in, n)
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func zeroRange(path string, off, n int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	n = min(n, fi.Size()-off)
	if n <= 0 {
		return nil
	}
	_, err = f.WriteAt(make([]byte, n), off)
	return err
}

// powerCluster is a 3-node cluster whose nodes' disks can lose power, with
// writers on every node recording the entries Append acknowledged.
type powerCluster struct {
	*testCluster
	sims []*powerSim
	gen  []int // restarts per node, for fresh directories

	mu     sync.Mutex
	round  int
	acked  map[string]bool // "round/node/writer/k"
	downAt []bool          // node i lost power: its answers no longer count
}

func newPowerCluster(t *testing.T) *powerCluster {
	pc := &powerCluster{acked: map[string]bool{}, downAt: make([]bool, 3), gen: make([]int, 3)}
	for range 3 {
		pc.sims = append(pc.sims, newPowerSim())
	}
	i := 0
	pc.testCluster = newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		// Default settings, except a quicker failover and shutdown.
		sm.powerCut = pc.sims[i].h
		cfg.CloseTimeout = 2 * time.Second
		i++
	})
	return pc
}

// write runs writers on node i until ctx ends, each logging with Append
// and recording what was acknowledged before node i lost power.
func (pc *powerCluster) write(ctx context.Context, wg *sync.WaitGroup, i, writers int) {
	lx, r := pc.nodes[i], pc.round
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := lx.Append(actx, LevelInfo, "power entry", "r", r, "node", i, "w", w, "k", k)
				cancel()
				pc.mu.Lock()
				down := pc.downAt[i]
				if err == nil && !down {
					pc.acked[fmt.Sprintf("%d/%d/%d/%d", r, i, w, k)] = true
				}
				pc.mu.Unlock()
				if down {
					return
				}
			}
		}()
	}
}

// cut cuts the power of the given nodes at one instant, then starts each
// again from what its disk kept.
func (pc *powerCluster) cut(t *testing.T, nodes ...int) {
	t.Helper()
	var thaws []func()
	for _, i := range nodes {
		thaws = append(thaws, pc.sims[i].freeze())
	}
	pc.mu.Lock()
	for _, i := range nodes {
		pc.downAt[i] = true
	}
	pc.mu.Unlock()
	dsts := map[int]string{}
	for _, i := range nodes {
		pc.gen[i]++
		dsts[i] = fmt.Sprintf("%s-power%d", pc.cfgs[i].Dir, pc.gen[i])
		pc.sims[i].copyDurable(t, pc.cfgs[i].Dir, dsts[i], pc.cfgs[i].File)
		pc.nodes[i].node.mux.shut() // dead: it answers nobody from here on
	}
	for _, thaw := range thaws {
		thaw()
	}
	for _, i := range nodes {
		_ = pc.nodes[i].Close() // the frozen process's remains; errors expected
		pc.nodes[i] = nil
	}
	for _, i := range nodes {
		pc.sims[i] = newPowerSim()
		pc.cfgs[i].Dir = dsts[i]
		pc.seams[i].powerCut = pc.sims[i].h
		pc.start(i)
		pc.mu.Lock()
		pc.downAt[i] = false
		pc.mu.Unlock()
	}
}

// check waits for the nodes to converge and checks every acknowledged entry
// is in the files exactly once, on every node, identical.
func (pc *powerCluster) check(t *testing.T) {
	t.Helper()
	pc.waitReady()
	pc.flushAll()
	pc.waitSameSeq(0)
	requireIdentical(t, pc.dirs(), "app.log")
	lines := readLines(t, pc.cfgs[0].Dir, "app.log")
	requireUnique(t, lines, "r", "node", "w", "k")
	have := map[string]bool{}
	for _, l := range lines {
		kv, err := parseText(l)
		require.NoError(t, err)
		have[kv["r"]+"/"+kv["node"]+"/"+kv["w"]+"/"+kv["k"]] = true
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	missing := 0
	for id := range pc.acked {
		if !have[id] {
			missing++
		}
	}
	t.Logf("power: %d lines, %d acknowledged, %d missing", len(lines), len(pc.acked), missing)
	require.Positive(t, len(pc.acked))
	require.Zero(t, missing, "acknowledged entries lost")
}

// TestPowerCut: with the default settings every acknowledged entry survives
// a power cut of one follower, of the leader, and of all three nodes at
// once, cut mid-load; the nodes end identical.
func TestPowerCut(t *testing.T) {
	t.Parallel() // waits more than it computes (parallelTests, logx_test.go)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	cases := []struct {
		name  string
		which func(pc *powerCluster) []int
	}{
		{"follower", func(pc *powerCluster) []int { return []int{(pc.leaderIndex() + 1) % 3} }},
		{"leader", func(pc *powerCluster) []int { return []int{pc.leaderIndex()} }},
		{"all", func(pc *powerCluster) []int { return []int{0, 1, 2} }},
	}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := newPowerCluster(t)
			for r := range rounds {
				pc.round = r
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				for i := range 3 {
					pc.write(ctx, &wg, i, 4)
				}
				// Let some entries be acknowledged, then cut at a random
				// moment of the load.
				before := pc.ackCount()
				require.True(t, waitFor(30*time.Second, func() bool { return pc.ackCount() >= before+200+rng.IntN(400) }))
				var nodes []int
				require.True(t, waitFor(10*time.Second, func() bool {
					if pc.leaderIndex() < 0 {
						return false
					}
					nodes = tc.which(pc)
					return true
				}))
				t.Logf("round %d: cutting the power of node(s) %v", r, nodes)
				pc.cut(t, nodes...)
				cancel()
				wg.Wait()
			}
			pc.check(t)
		})
	}
}

func (pc *powerCluster) ackCount() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.acked)
}

// TestPowerSimLosesUnsynced: the simulation does lose what was not fsynced
// (the test above would prove nothing if it copied everything).
func TestPowerSimLosesUnsynced(t *testing.T) {
	dir, dst := t.TempDir(), t.TempDir()
	s := newPowerSim()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 1 << 20}},
		stateInterval: -1, logf: t.Logf, hooks: s.h})
	require.NoError(t, err)
	logs := testLogs(20, 3)
	f.ApplyBatch(logs[:10])
	require.NoError(t, f.persist())
	synced := f.seg.Active().Size
	f.ApplyBatch(logs[10:]) // written, not fsynced
	require.Greater(t, f.seg.Active().Size, synced)

	v := s.h.vfs(&osVFS{})
	wf, err := v.Create(dir, "wal", 0)
	require.NoError(t, err)
	_, err = wf.WriteAt([]byte("durable"), 0)
	require.NoError(t, err)
	require.NoError(t, wf.Sync())
	_, err = wf.WriteAt([]byte("lost"), 7)
	require.NoError(t, err)

	thaw := s.freeze()
	s.copyDurable(t, dir, dst, "app.log")
	thaw()
	require.NoError(t, wf.Close())
	require.NoError(t, f.close())

	fi, err := os.Stat(filepath.Join(dst, "app.log"))
	require.NoError(t, err)
	require.Equal(t, synced, fi.Size())
	b, err := os.ReadFile(filepath.Join(dst, "wal"))
	require.NoError(t, err)
	require.Equal(t, "durable\x00\x00\x00\x00", string(b))
}

// osVFS is a minimal types.VFS on the real file system for the test above.
type osVFS struct{}

func (osVFS) ListDir(dir string) ([]string, error) { return nil, errors.ErrUnsupported }
func (osVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	return os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
}
func (osVFS) Delete(dir, name string) error { return os.Remove(filepath.Join(dir, name)) }
func (osVFS) OpenReader(dir, name string) (types.ReadableFile, error) {
	return os.Open(filepath.Join(dir, name))
}
func (osVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
}
