package logx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
	"github.com/stretchr/testify/require"
)

// sumEntries are entries of every shape logx stores: a batch without and
// with a certificate identity, Raft's own entries (an empty no-op).
func sumEntries(from uint64) []*raft.Log {
	at := time.Date(2026, 12, 5, 15, 4, 5, 123456789, time.FixedZone("x", 3600))
	identity := bytes.Repeat([]byte{0xab}, identityLen)
	return []*raft.Log{
		{Index: from, Term: 2, Type: raft.LogCommand, Data: []byte("a batch of lines"), AppendedAt: at},
		{Index: from + 1, Term: 2, Type: raft.LogCommand, Data: []byte("a batch from a certificate holder"), Extensions: identity, AppendedAt: at},
		{Index: from + 2, Term: 3, Type: raft.LogConfiguration, Data: []byte{1, 2, 3}},
		{Index: from + 3, Term: 3, Type: raft.LogNoop},
		{Index: from + 4, Term: 3, Type: raft.LogBarrier, AppendedAt: at},
	}
}

// sameEntry asserts that got is want as Raft gave it (raft-wal keeps the
// time's instant, not its zone).
func sameEntry(t *testing.T, want, got *raft.Log) {
	t.Helper()
	require.Equal(t, want.Index, got.Index)
	require.Equal(t, want.Term, got.Term)
	require.Equal(t, want.Type, got.Type)
	require.Equal(t, want.Data, got.Data)
	require.Equal(t, want.Extensions, got.Extensions)
	require.True(t, want.AppendedAt.Equal(got.AppendedAt), "%v, %v", want.AppendedAt, got.AppendedAt)
}

// TestSummedLogRoundTrip: entries stored with their trailers read back as
// Raft gave them, after a reopen too; the entries Raft passed are left as
// they were (its LogCache keeps them); an entry stored before sums (no
// trailer) reads as it was.
func TestSummedLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w := openTestWAL(t, dir)
	old := &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("stored before sums"), Extensions: bytes.Repeat([]byte{7}, identityLen)}
	require.NoError(t, w.StoreLog(old))
	s, err := newSummedLog(w, t.Logf)
	require.NoError(t, err)
	require.EqualValues(t, 2, s.from, "entries from the next on")
	logs := sumEntries(2)
	var before []raft.Log
	for _, l := range logs {
		before = append(before, *l)
	}
	require.NoError(t, s.StoreLogs(logs))
	for i, l := range logs {
		require.Equal(t, before[i], *l, "the entries Raft passed are unchanged")
	}
	require.True(t, s.IsMonotonic())

	check := func(s summedLog) {
		t.Helper()
		var l raft.Log
		require.NoError(t, s.GetLog(1, &l))
		sameEntry(t, old, &l)
		for _, want := range logs {
			var l raft.Log
			require.NoError(t, s.GetLog(want.Index, &l))
			sameEntry(t, want, &l)
		}
		var raw raft.Log
		require.NoError(t, s.LogStore.GetLog(3, &raw))
		require.Len(t, raw.Extensions, identityLen+trailerLen, "raft-wal holds the trailer")
	}
	check(s)
	require.NoError(t, w.Close())
	meta := &metadb.BoltMetaDB{}
	w2, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(hclog.NewNullLogger()))
	require.NoError(t, err)
	defer func() { _ = w2.Close(); _ = meta.Close() }()
	s, err = newSummedLog(w2, t.Logf)
	require.NoError(t, err)
	require.EqualValues(t, 2, s.from, "as recorded")
	check(s)
}

// TestEntrySumFlips: every stored entry, encoded as raft-wal encodes it,
// with each of its bytes flipped in turn (one bit, then all eight), read
// through raft-wal's decoder either fails as damaged (types.ErrCorrupt:
// also where the decoder's own error or panic), or reads back the same entry (a flip in the time's zone,
// which Raft does not read): never a different entry, never a panic (the
// decoder panics on some). So too when the entry is below from (where
// older entries are read unchecked) or from was never recorded.
func TestEntrySumFlips(t *testing.T) {
	for _, from := range []uint64{1, 1<<40 + 3, math.MaxUint64} {
		var damaged, panicked int
		for _, want := range sumEntries(1 << 40) {
			cs := &encodedStore{}
			s := summedLog{cs, from, t.Logf}
			require.NoError(t, s.StoreLog(want))
			enc := cs.stored
			for i := range enc {
				for _, mask := range []byte{0x01, 0xff} {
					cs.read = bytes.Clone(enc)
					cs.read[i] ^= mask
					var got raft.Log
					err := s.GetLog(want.Index, &got)
					if err != nil {
						require.ErrorIs(t, err, types.ErrCorrupt, "byte %d", i) // not tried again as an I/O error
						damaged++
						if strings.Contains(err.Error(), "does not decode (runtime error") {
							panicked++
						}
						continue
					}
					sameEntry(t, want, &got)
				}
			}
		}
		require.Greater(t, damaged, 100)
		require.Positive(t, panicked, "raft-wal's decoder panicked")
	}
}

// TestSummedLogBeforeSums: below from, an entry with Extensions of a
// length logx stored before sums (none, or an identity, even one that
// ends with the tag) is read unchecked; any other must have its trailer.
// From from on, every entry must. And which errors of raft-wal's are
// damage.
func TestSummedLogBeforeSums(t *testing.T) {
	cs := &encodedStore{}
	s := summedLog{cs, 10, nil}
	read := func(l *raft.Log) (*raft.Log, error) {
		t.Helper()
		require.NoError(t, cs.StoreLogs([]*raft.Log{l}))
		cs.read = cs.stored
		var got raft.Log
		return &got, s.GetLog(l.Index, &got)
	}
	tagged := append(bytes.Repeat([]byte{1}, identityLen-4), sumTag[:]...)
	for _, ext := range [][]byte{nil, bytes.Repeat([]byte{1}, identityLen), tagged} {
		want := &raft.Log{Index: 9, Data: []byte("abc"), Extensions: ext}
		got, err := read(want)
		require.NoError(t, err)
		sameEntry(t, want, got)
	}
	_, err := read(&raft.Log{Index: 9, Extensions: make([]byte, identityLen+trailerLen)})
	require.ErrorContains(t, err, "Raft entry 9 read from disk has no checksum", "a trailer whose tag is damaged")
	_, err = read(&raft.Log{Index: 10, Data: []byte("abc")})
	require.ErrorContains(t, err, "Raft entry 10 read from disk has no checksum")
	cs.read = cs.stored
	var got raft.Log
	require.ErrorContains(t, s.GetLog(11, &got), "Raft entry 11 read from disk holds index 10")

	// raft-wal's errors: the operating system's and its own answers go
	// back as they are; any other (its decoder's, a file cut short) is
	// damage.
	for _, err := range []error{&fs.PathError{Op: "read", Err: syscall.EIO}, &fs.PathError{Op: "read", Err: os.ErrClosed},
		raft.ErrLogNotFound, types.ErrClosed, fmt.Errorf("%w: a frame", types.ErrCorrupt)} {
		require.Same(t, err, s.damage(3, err))
	}
	for _, err := range []error{io.ErrShortBuffer, io.EOF, errors.New("Time.UnmarshalBinary: invalid length")} {
		require.ErrorIs(t, s.damage(3, err), types.ErrCorrupt)
		require.ErrorContains(t, s.damage(3, err), "Raft entry 3 read from disk does not decode ("+err.Error()+")")
	}
}

// encodedStore keeps the last entry stored as raft-wal encodes it, and
// decodes read with raft-wal's decoder whatever index is asked.
type encodedStore struct {
	raft.LogStore
	stored, read []byte
}

func (c *encodedStore) StoreLogs(logs []*raft.Log) error {
	var b bytes.Buffer
	if err := (&wal.BinaryCodec{}).Encode(logs[len(logs)-1], &b); err != nil {
		return err
	}
	c.stored = b.Bytes()
	return nil
}

func (c *encodedStore) GetLog(_ uint64, l *raft.Log) error {
	return (&wal.BinaryCodec{}).Decode(c.read, l)
}

// segmentWith returns the raft-wal segment under dir holding needle, the
// sealed one with the lowest first index that does (raft-wal checks the
// last batch of its open segment when it opens it), and the offset.
// liveSegmentWith is segmentWith for the first entry of lx's Raft log
// that holds needle, in the segment raft-wal reads it from: entries a
// deposed leader appended and then lost stay in their sealed segment,
// and raft-wal reads what replaced them from a later one (a higher ID)
// that starts at or before their index. So among the sealed segments
// that start at or before the entry, the one with the highest ID holds
// it. (segmentWith's first match could be such a dead copy, which no read
// sees: the damage tests then flaked under -race, where elections happen
// during logAppend.)
func liveSegmentWith(t *testing.T, lx *Stream, dir string, needle []byte) (name string, off int, idx uint64) {
	t.Helper()
	first, err := lx.guard.FirstIndex()
	require.NoError(t, err)
	last, err := lx.guard.LastIndex()
	require.NoError(t, err)
	for i := first; i <= last && idx == 0; i++ {
		var l raft.Log
		if lx.guard.peek(i, &l) == nil && bytes.Contains(l.Data, needle) {
			idx = i
		}
	}
	require.NotZero(t, idx, "no entry holds %q", needle)
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	require.NoError(t, err)
	var best, newest uint64
	for _, n := range names {
		var base, id uint64
		_, err := fmt.Sscanf(filepath.Base(n), "%020d-%016x.wal", &base, &id)
		require.NoError(t, err, n)
		newest = max(newest, id)
		if base <= idx && (name == "" || id > best) {
			name, best = n, id
		}
	}
	require.NotEmpty(t, name)
	require.Less(t, best, newest, "entry %d is in the open segment", idx)
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	off = bytes.Index(b, needle)
	require.GreaterOrEqual(t, off, 0)
	return name, off, idx
}

func segmentWith(t *testing.T, dir string, needle []byte) (string, int) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	require.NoError(t, err)
	sort.Strings(names) // by first index: raft-wal pads it with zeros
	require.Greater(t, len(names), 1, "a sealed segment")
	for _, name := range names[:len(names)-1] {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		if i := bytes.Index(b, needle); i >= 0 {
			return name, i
		}
	}
	t.Fatalf("no sealed segment holds %q", needle)
	return "", 0
}

// flipOnDisk flips a byte of the file name at off.
func flipOnDisk(t *testing.T, name string, off int) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	var b [1]byte
	_, err = f.ReadAt(b[:], int64(off))
	require.NoError(t, err)
	b[0] ^= 0x20
	_, err = f.WriteAt(b[:], int64(off))
	require.NoError(t, err)
}

// TestSummedLogDamagedOnDisk: a byte changed in a sealed raft-wal segment
// on the disk, inside an entry's data, where it still decodes (raft-wal
// read it as it was): reading that entry fails its checksum, with an
// error that names it and wraps types.ErrCorrupt; the others read.
func TestSummedLogDamagedOnDisk(t *testing.T) {
	dir := t.TempDir()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(hclog.NewNullLogger()), wal.WithSegmentSize(8<<10))
	require.NoError(t, err)
	s := summedLog{w, 1, t.Logf}
	for i := uint64(1); i <= 200; i++ {
		require.NoError(t, s.StoreLog(&raft.Log{Index: i, Term: 1, Data: fmt.Appendf(nil, "entry %04d of the log", i)}))
	}
	require.NoError(t, w.Close())
	require.NoError(t, meta.Close())
	name, off := segmentWith(t, dir, []byte("entry 0042 "))
	flipOnDisk(t, name, off)

	meta = &metadb.BoltMetaDB{}
	w, err = wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(hclog.NewNullLogger()), wal.WithSegmentSize(8<<10))
	require.NoError(t, err)
	defer func() { _ = w.Close(); _ = meta.Close() }()
	var l raft.Log
	require.NoError(t, w.GetLog(42, &l), "raft-wal reads it")
	require.Equal(t, "Entry 0042 of the log", string(l.Data))
	err = summedLog{w, 1, t.Logf}.GetLog(42, &l)
	require.ErrorIs(t, err, types.ErrCorrupt)
	require.ErrorContains(t, err, "Raft entry 42 read from disk does not match its checksum")
	for _, i := range []uint64{1, 41, 43, 200} {
		require.NoError(t, summedLog{w, 1, t.Logf}.GetLog(i, &l))
		require.Equal(t, fmt.Sprintf("entry %04d of the log", i), string(l.Data))
	}
}

// TestRaftLogDamagedAtStart: a node whose Raft log holds an entry changed
// on the disk (a byte of its data, in a sealed segment) fails New with an
// error that says so, rather than applying what it read, and started on
// an empty Dir it catches up from the others: identical files.
func TestRaftLogDamagedAtStart(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.DisableCompression = true // the lines are in the Raft log as they are
		sm.walSegmentSize = 16 << 10
	})
	c.logAppend("before", 300)
	c.waitSameSeq(300)
	name, off, _ := liveSegmentWith(t, c.nodes[0].defaultStream, filepath.Join(c.cfgs[0].Dir, "raft"), []byte("before"))
	c.stop(0)
	flipOnDisk(t, name, off)

	_, err := newNode(c.cfgs[0], c.seams[0])
	require.ErrorIs(t, err, types.ErrCorrupt)
	require.ErrorContains(t, err, "reading the Raft log: Raft entry")
	require.ErrorContains(t, err, "does not match its checksum")

	require.NoError(t, os.RemoveAll(c.cfgs[0].Dir))
	c.start(0)
	logAndCompare(c, 310)
}

// TestLogGuardDamagedInSnapshot: to Raft, once it runs, a damaged or
// unreadable entry that the newest snapshot holds is "not found" (raft.ErrLogNotFound itself: Raft
// compares with ==), so that a leader sends that snapshot to a follower
// that needs it; any other damaged entry stays an error, and so does every
// damaged entry read back to rewrite the files (peekStore), where "not
// found" would mean compacted.
func TestLogGuardDamagedInSnapshot(t *testing.T) {
	fl := &flakyReads{LogStore: raft.NewInmemStore(), err: &damagedEntry{index: 2, what: "test"}}
	require.NoError(t, fl.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 1}}))
	snaps := raft.NewInmemSnapshotStore()
	var applied atomic.Uint64
	var logged atomic.Int64
	g := newLogGuard(fl, snaps, applied.Load, func(f string, args ...any) {
		logged.Add(1)
		t.Logf(f, args...)
	}, nil)
	var l raft.Log
	fl.fail.Store(1)
	require.ErrorIs(t, g.GetLog(2, &l), types.ErrCorrupt, "no snapshot yet")

	sink, err := snaps.Create(raft.SnapshotVersionMax, 2, 1, raft.Configuration{}, 1, nil)
	require.NoError(t, err)
	require.NoError(t, sink.Close())
	fl.fail.Store(1)
	require.ErrorIs(t, g.GetLog(2, &l), types.ErrCorrupt, "NewRaft's reads (applied 0): it may restore an older snapshot")
	applied.Store(3)
	fl.fail.Store(1)
	require.True(t, g.GetLog(2, &l) == raft.ErrLogNotFound)
	require.EqualValues(t, 1, g.notFound.Load())
	require.EqualValues(t, 1, logged.Load(), "the first answer is logged, however soon after the start")
	fl.fail.Store(1)
	require.ErrorIs(t, g.GetLog(3, &l), types.ErrCorrupt, "after the snapshot")
	fl.fail.Store(1)
	require.ErrorIs(t, peekStore{g}.GetLog(2, &l), types.ErrCorrupt, "read back")
	fl.err = nil
	fl.fail.Store(1)
	require.True(t, g.GetLog(1, &l) == raft.ErrLogNotFound, "an I/O error (a bad sector) too")
	fl.fail.Store(1)
	require.ErrorIs(t, g.GetLog(3, &l), syscall.EIO, "an I/O error after the snapshot")
	fl.err = types.ErrClosed
	fl.fail.Store(1)
	require.ErrorIs(t, g.GetLog(1, &l), types.ErrClosed, "the log closing")
	require.EqualValues(t, 2, g.notFound.Load())
	require.EqualValues(t, 1, logged.Load(), "the second within notFoundLogEvery is not")
}

// TestLogGuardAsksSnapshot: an applied entry that cannot be read and that
// no snapshot holds makes the guard ask for a snapshot; the second ask
// comes twice notFoundLogEvery later, the spacing doubling (a snapshot may
// not reach the entry: Raft's no-ops never reach the state machine), and
// starting again once an entry is answered "not found"; if none was
// started (one ran already, or this node does not lead), the next read
// asks again. Not for an entry not yet applied, nor a closed log.
func TestLogGuardAsksSnapshot(t *testing.T) {
	fl := &flakyReads{LogStore: raft.NewInmemStore(), err: &damagedEntry{index: 2, what: "test"}}
	require.NoError(t, fl.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}, {Index: 3, Term: 1}}))
	snaps := raft.NewInmemSnapshotStore()
	var applied atomic.Uint64
	g := newLogGuard(fl, snaps, applied.Load, t.Logf, nil)
	var asks, starts atomic.Int64
	starts.Store(2)
	g.snapshot = func() bool {
		asks.Add(1)
		return starts.Add(-1) >= 0
	}
	read := func(index uint64) error {
		var l raft.Log
		fl.fail.Store(1)
		return g.GetLog(index, &l)
	}
	ago := func(d time.Duration) { g.snapshotAsked.Store(monoNanos() - int64(d)) }

	applied.Store(1)
	require.ErrorIs(t, read(2), types.ErrCorrupt)
	require.Zero(t, asks.Load(), "not applied yet")
	applied.Store(3)
	require.ErrorIs(t, read(2), types.ErrCorrupt, "no snapshot holds it yet: the read fails as it did")
	require.EqualValues(t, 1, asks.Load())
	require.EqualValues(t, 1, g.askedSnapshot.Load())
	require.ErrorIs(t, read(2), types.ErrCorrupt)
	require.EqualValues(t, 1, asks.Load(), "not at once again")
	ago(notFoundLogEvery)
	require.ErrorIs(t, read(2), types.ErrCorrupt)
	require.EqualValues(t, 1, asks.Load(), "the second ask twice notFoundLogEvery after the first")
	ago(2 * notFoundLogEvery)
	require.ErrorIs(t, read(2), types.ErrCorrupt)
	require.EqualValues(t, 2, asks.Load())
	ago(3 * notFoundLogEvery)
	require.ErrorIs(t, read(2), types.ErrCorrupt)
	require.EqualValues(t, 2, asks.Load(), "the third four times after the second")

	ago(4 * notFoundLogEvery)
	require.ErrorIs(t, read(2), types.ErrCorrupt)
	require.EqualValues(t, 3, asks.Load())
	require.EqualValues(t, 2, g.askedSnapshot.Load(), "none was started")
	require.ErrorIs(t, read(2), types.ErrCorrupt)
	require.EqualValues(t, 4, asks.Load(), "so the next read asks again")

	sink, err := snaps.Create(raft.SnapshotVersionMax, 2, 1, raft.Configuration{}, 1, nil)
	require.NoError(t, err)
	require.NoError(t, sink.Close())
	require.True(t, read(2) == raft.ErrLogNotFound, "a snapshot holds it")
	require.EqualValues(t, notFoundLogEvery, g.askEvery.Load(), "the spacing starts again")
	require.ErrorIs(t, read(3), types.ErrCorrupt)
	require.EqualValues(t, 5, asks.Load(), "an entry past that snapshot")

	fl.err = types.ErrClosed
	g.snapshotAsked.Store(0)
	require.ErrorIs(t, read(3), types.ErrClosed)
	require.EqualValues(t, 5, asks.Load(), "the log closing")
}

// TestDamagedEntryInSnapshot: a leader whose Raft log holds a damaged
// entry (a byte of a line flipped in a sealed segment file; the other
// node that is up has one too) that its newest snapshot also holds, and a
// follower that comes back needing it:
// the leader sends it the snapshot, rather than trying the read again for
// good while its heartbeats keep the follower waiting. The follower
// catches up: identical files.
func TestDamagedEntryInSnapshot(t *testing.T) {
	t.Parallel()
	c, up := damagedWhileDown(t, true)
	for _, i := range up {
		require.Zero(t, c.nodes[i].guard.askedSnapshot.Load(), "a snapshot held it")
	}
}

// TestDamagedEntryNotInSnapshot: the same, with no snapshot holding the
// damaged entry: the leader takes one (snapshotToHold), and sends the
// follower that. Before, it tried the read again for good (a cluster
// whose followers all needed such an entry committed nothing more).
func TestDamagedEntryNotInSnapshot(t *testing.T) {
	t.Parallel()
	c, up := damagedWhileDown(t, false)
	var asked int64
	for _, i := range up {
		asked += c.nodes[i].guard.askedSnapshot.Load()
	}
	require.Positive(t, asked, "the leader asked for a snapshot")
}

// damagedWhileDown stops a follower, logs 150 entries from each other
// node, takes a snapshot on every node if snapshot is set, flips a byte
// of those entries in both up nodes' Raft logs, and starts the follower
// again: it must be sent a snapshot (the entries it needs cannot be read),
// and its files end identical. up are the nodes that stayed up.
func damagedWhileDown(t *testing.T, snapshot bool) (c *testCluster, up []int) {
	c = newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.DisableCompression = true // the lines are in the Raft log as they are
		sm.walSegmentSize = 16 << 10
	})
	c.waitReady()
	lead := c.leaderIndex()
	require.GreaterOrEqual(t, lead, 0)
	down := (lead + 1) % 3
	c.logAppend("before", 20)
	c.waitSameSeq(60)
	downLast := c.nodes[down].raft.LastIndex()
	c.stop(down)
	c.logAppend("while-down", 150)
	if snapshot {
		c.snapshotAll()
	}
	var flipped []string // for a failure: where each node's damage is
	damaged := map[int]uint64{}
	for i := range c.cfgs { // both: whichever leads when the follower is back
		if i != down {
			up = append(up, i)
			name, off, idx := liveSegmentWith(t, c.nodes[i].defaultStream, filepath.Join(c.cfgs[i].Dir, "raft"), []byte("while-down"))
			flipOnDisk(t, name, off)
			damaged[i] = idx
			flipped = append(flipped, fmt.Sprintf("n%d entry %d (%s at %d)", i+1, idx, filepath.Base(name), off))
		}
	}
	// The leader tries to send the follower its entries while it is down,
	// again and again; a request it built from the bytes before the flip
	// may still be on its way when the follower is back (a busy machine:
	// a CI run under -race), and the follower then needs nothing damaged.
	// Once a leader has read the damage, every later request is built from
	// the damaged log.
	require.True(t, waitFor(30*time.Second, func() bool {
		for i, idx := range damaged {
			var d *damagedEntry
			if p := c.nodes[i].guard.failedRead.Load(); p != nil && errors.As(*p, &d) && d.index == idx {
				return true
			}
		}
		return false
	}), "no leader read the damaged entry: %v", flipped)

	c.start(down)
	logAndCompare(c, 60+2*150+3*10)
	var notFound int64
	var state []string // for a failure: how each node stands
	for i, lx := range c.nodes {
		st := lx.raft.Stats()
		notFound += lx.guard.notFound.Load()
		state = append(state, fmt.Sprintf("n%d %s last_snapshot_index=%s not-found=%d asked=%d", i+1, st["state"],
			st["last_snapshot_index"], lx.guard.notFound.Load(), lx.guard.askedSnapshot.Load()))
	}
	notFound -= c.nodes[down].guard.notFound.Load()
	require.Positive(t, notFound, "the damaged entry was needed, and answered not found (follower n%d, its last entry %d when it stopped; damaged: %v): %v",
		down+1, downLast, flipped, state)
	// Raft records the snapshot a moment after the state machine has
	// restored it (and reached the others' files).
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[down].raft.Stats()["last_snapshot_index"] != "0" }),
		"the follower n%d installed the snapshot: %v", down+1, state)
	return c, up
}
