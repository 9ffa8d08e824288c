package logx

import (
	"errors"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/types"
	"github.com/stretchr/testify/require"
)

// readFaultWAL is raft-wal's file system with a disk whose reads of
// sealed segments (raft-wal opens those as readers; its open segment, as a
// writer) fail with EIO past their headers while bad is set: bad sectors.
// failed counts the reads that failed.
type readFaultWAL struct {
	types.VFS
	bad    *atomic.Bool
	failed *atomic.Int64
}

func (v readFaultWAL) OpenReader(dir, name string) (types.ReadableFile, error) {
	f, err := v.VFS.OpenReader(dir, name)
	if err != nil {
		return nil, err
	}
	return readFaultReader{f, v}, nil
}

type readFaultReader struct {
	types.ReadableFile
	v readFaultWAL
}

func (f readFaultReader) ReadAt(p []byte, off int64) (int, error) {
	if f.v.bad.Load() && off > 0 { // raft-wal reads a segment's header when it opens it
		f.v.failed.Add(1)
		return 0, syscall.EIO
	}
	return f.ReadableFile.ReadAt(p, off)
}

// TestRaftLogReadErrorAtStart: a node whose Raft log has sealed segments
// it cannot read past their headers (raft-wal reads those when it opens
// them), bad sectors, say, fails New with an error that says so
// (hashicorp/raft's NewRaft panics when its scan of the entries after the
// snapshot cannot read one, which took the host process down), and starts
// once they read again.
func TestRaftLogReadErrorAtStart(t *testing.T) {
	var bad [3]atomic.Bool
	var failed [3]atomic.Int64
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		i := int(cfg.NodeID[1] - '1')
		sm.walSegmentSize = 16 << 10 // many segments: the sealed ones are read through OpenReader
		sm.powerCut = &powerHooks{
			vfs:  func(v types.VFS) types.VFS { return readFaultWAL{VFS: v, bad: &bad[i], failed: &failed[i]} },
			meta: func(m types.MetaStore) types.MetaStore { return m },
		}
	})
	c.logAppend("before", 300)
	c.waitSameSeq(300)
	c.stop(0)

	bad[0].Store(true) // every sealed segment
	_, err := newNode(c.cfgs[0], c.seams[0])
	require.Error(t, err)
	require.ErrorIs(t, err, syscall.EIO)
	require.Contains(t, err.Error(), "reading the Raft log")
	require.Positive(t, failed[0].Load())

	bad[0].Store(false)
	c.start(0)
	c.logAppend("after", 10)
	c.waitSameSeq(310)
	c.flushAll()
	requireIdentical(t, c.dirs(), "app.log")
}

// TestNewRaftOtherPanics: newRaft turns only the panic on a read of the
// Raft log that failed into an error; any other panic goes on, also when
// a read failed before (here NewRaft panics on its nil transport).
func TestNewRaftOtherPanics(t *testing.T) {
	logs := raft.NewInmemStore()
	g := newLogGuard(logs, raft.NewInmemSnapshotStore(), func() uint64 { return 0 }, t.Logf, nil)
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	call := func() { _, _ = newRaft(g, conf, nil, g, logs, raft.NewInmemSnapshotStore(), nil) }
	require.Panics(t, call)
	other := errors.New("another read")
	g.failedRead.Store(&other)
	require.Panics(t, call)
}
