package logx

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"github.com/stretchr/testify/require"
)

// recordingFiler is a sealingFiler that keeps every writer it made (raft-wal
// creates segments from its rotation goroutine).
type recordingFiler struct {
	sealingFiler
	rec *writers
}

type writers struct {
	mu   sync.Mutex
	made []*sealingWriter
}

func (w *writers) add(sw types.SegmentWriter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.made = append(w.made, sw.(*sealingWriter))
}

func (w *writers) list() []*sealingWriter {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.made)
}

func (f recordingFiler) Create(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.sealingFiler.Create(info)
	if err == nil {
		f.rec.add(w)
	}
	return w, err
}

func (f recordingFiler) RecoverTail(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.sealingFiler.RecoverTail(info)
	if err == nil {
		f.rec.add(w)
	}
	return w, err
}

// TestSealingFiler checks raft-wal with sealingFiler and finishingMeta (as
// openWAL sets it up) on walPages (so every sealed segment is read after
// its pages were dropped, where the file system drops them) against a
// simple model of a Raft log (a map from index to data): seeded random
// runs of appends of one or many entries, head truncations (what Raft does
// after a snapshot), tail truncations (a follower whose suffix the leader
// replaces, which force-seals the tail), and closing and reopening the WAL
// (often right after an append sealed a segment, before raft-wal recorded
// the rotation), with small segments so that they seal often. After every
// step every index reads back as the model says, and every sealed segment
// is read through a reader of its file, its writer let go.
func TestSealingFiler(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { sealingFilerRun(t, seed) })
	}
}

func sealingFilerRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	dir := t.TempDir()
	var rec *writers
	var w *wal.WAL
	var meta *metadb.BoltMetaDB
	open := func() {
		rec = &writers{}
		meta = &metadb.BoltMetaDB{}
		var err error
		filer := segment.NewFiler(dir, walPages{fs.New()}) // as newStream has it
		w, err = wal.Open(dir, wal.WithSegmentSize(32<<10),
			wal.WithMetaStore(finishingMeta{MetaStore: meta, filer: filer, segSize: 32 << 10}),
			wal.WithSegmentFiler(recordingFiler{sealingFiler{filer}, rec}))
		require.NoError(t, err)
	}
	closeWAL := func() {
		require.NoError(t, w.Close())
		require.NoError(t, meta.Close())
	}
	open()
	defer func() { closeWAL() }()

	model := map[uint64][]byte{}
	first, last := uint64(1), uint64(0) // the model's range; empty when last < first
	data := func(idx uint64) []byte {
		return bytes.Repeat([]byte{byte(idx), byte(idx >> 8)}, 50+rng.IntN(2000))
	}
	check := func(step int, op string) {
		t.Helper()
		fi, err := w.FirstIndex()
		require.NoError(t, err)
		li, err := w.LastIndex()
		require.NoError(t, err)
		if last >= first {
			require.Equal(t, first, fi, "step %d (%s): first index", step, op)
			require.Equal(t, last, li, "step %d (%s): last index", step, op)
		}
		for idx := first; idx <= last; idx++ {
			var l raft.Log
			require.NoError(t, w.GetLog(idx, &l), "step %d (%s): index %d", step, op, idx)
			require.Equal(t, model[idx], l.Data, "step %d (%s): index %d", step, op, idx)
		}
		// Past the end (a tail truncation's entries, or never written): not
		// found. (Before the start raft-wal may still serve a head-truncated
		// entry from its open segment; Raft never asks.)
		var l raft.Log
		require.ErrorIs(t, w.GetLog(last+1, &l), raft.ErrLogNotFound, "step %d (%s): index %d", step, op, last+1)
		made := rec.list()
		for i, sw := range made[:max(len(made)-1, 0)] { // all but the tail
			sw.mu.RLock()
			gone := sw.closed || sw.w == nil && sw.r != nil // closed: a segment a truncation removed
			sw.mu.RUnlock()
			require.True(t, gone, "step %d (%s): segment %d is sealed but still read through its writer", step, op, i)
		}
	}
	for step := range 300 {
		var op string
		switch r := rng.IntN(100); {
		case r < 70: // append
			n := 1 + rng.IntN(20)
			if rng.IntN(4) == 0 {
				n = 1
			}
			logs := make([]*raft.Log, n)
			for k := range logs {
				last++
				if last < first {
					first = last
				}
				model[last] = data(last)
				logs[k] = &raft.Log{Index: last, Term: 1, Type: raft.LogCommand, Data: model[last]}
			}
			require.NoError(t, w.StoreLogs(logs))
			op = fmt.Sprintf("append %d", n)
		case r < 82 && last > first: // head truncation, as after a snapshot
			upTo := first + uint64(rng.IntN(int(last-first)))
			require.NoError(t, w.DeleteRange(first, upTo))
			for idx := first; idx <= upTo; idx++ {
				delete(model, idx)
			}
			first = upTo + 1
			op = fmt.Sprintf("delete head to %d", upTo)
		case r < 94 && last > first: // tail truncation
			from := first + 1 + uint64(rng.IntN(int(last-first)))
			require.NoError(t, w.DeleteRange(from, last))
			for idx := from; idx <= last; idx++ {
				delete(model, idx)
			}
			last = from - 1
			op = fmt.Sprintf("delete tail from %d", from)
		default:
			closeWAL()
			open()
			op = "reopen"
		}
		check(step, op)
	}
	// The run sealed segments through the filer (not only at reopening).
	require.Greater(t, len(rec.list()), 1, "no segment sealed since the last reopening: make the segments smaller")
}

// TestInterruptedRotation puts a raft-wal directory in the state a crash
// leaves between an append that sealed the tail segment and raft-wal's
// recording of the rotation (the metadata still calls the sealed segment
// the open tail, and the next segment does not exist), then appends:
// raft-wal alone refuses every append ("segment is sealed"); with
// finishingMeta (openWAL) the append succeeds, every entry reads back, and
// so after another restart.
func TestInterruptedRotation(t *testing.T) {
	const segSize = 16 << 10
	dir := t.TempDir()
	payload := func(idx uint64) []byte { return bytes.Repeat([]byte{byte(idx)}, 1000) }
	store := func(w *wal.WAL, from, to uint64) {
		t.Helper()
		var logs []*raft.Log
		for idx := from; idx <= to; idx++ {
			logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: payload(idx)})
		}
		require.NoError(t, w.StoreLogs(logs))
	}
	readAll := func(w *wal.WAL, to uint64) {
		t.Helper()
		for idx := uint64(1); idx <= to; idx++ {
			var l raft.Log
			require.NoError(t, w.GetLog(idx, &l), "index %d", idx)
			require.Equal(t, payload(idx), l.Data, "index %d", idx)
		}
	}

	rotated := interruptRotation(t, dir, segSize, payload)
	last := rotated.Segments[0].MaxIndex
	saved := t.TempDir()
	require.NoError(t, os.CopyFS(saved, os.DirFS(dir)))

	// raft-wal alone: stuck.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segSize))
	require.NoError(t, err)
	readAll(w, last)
	require.ErrorIs(t, w.StoreLogs([]*raft.Log{{Index: last + 1, Term: 1, Type: raft.LogCommand, Data: payload(last + 1)}}), types.ErrSealed,
		"raft-wal now recovers an interrupted rotation itself: finishingMeta may go")
	require.NoError(t, w.Close())
	require.NoError(t, meta.Close())

	// With openWAL, from the same state: the metadata is what raft-wal's
	// rotation would have recorded (but for the times), and appends go on.
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, os.CopyFS(dir, os.DirFS(saved)))
	for round := range 2 {
		meta = &metadb.BoltMetaDB{}
		w, err = openWAL(dir, meta, fs.New(), segSize, hclog.NewNullLogger())
		require.NoError(t, err)
		if round == 0 {
			got, err := meta.Load(dir)
			require.NoError(t, err)
			require.Len(t, got.Segments, 2)
			require.Equal(t, rotated.NextSegmentID, got.NextSegmentID)
			for k := range 2 {
				g, want := got.Segments[k], rotated.Segments[k]
				g.CreateTime, g.SealTime, want.CreateTime, want.SealTime = time.Time{}, time.Time{}, time.Time{}, time.Time{}
				require.Equal(t, want, g, "segment %d", k)
			}
			require.False(t, got.Segments[0].SealTime.IsZero())
		}
		readAll(w, last)
		store(w, last+1, last+3)
		last += 3
		readAll(w, last)
		require.NoError(t, w.Close(), "round %d", round)
		require.NoError(t, meta.Close())
	}
}

// TestTornSealingBatch: a power cut tore the append that sealed the tail
// segment: the head of its index frame reached the disk, the index itself
// and the commit did not. raft-wal then takes the file for sealed (its
// appends fail), but finishingMeta must not record it sealed, since a
// reader would go by the torn index: the metadata stays as it was and
// every committed entry reads back.
func TestTornSealingBatch(t *testing.T) {
	const segSize = 16 << 10
	dir := t.TempDir()
	payload := func(idx uint64) []byte { return bytes.Repeat([]byte{byte(idx)}, 1000) }
	sealed := interruptRotation(t, dir, segSize, payload).Segments[0]
	count := sealed.MaxIndex - sealed.BaseIndex + 1

	// And the sealing batch torn: zeros from the index array through the
	// commit frame.
	f, err := os.OpenFile(filepath.Join(dir, segment.FileName(sealed)), os.O_RDWR, 0)
	require.NoError(t, err)
	arr := 4 * int(count)
	_, err = f.WriteAt(make([]byte, arr+(8-arr%8)%8+8), int64(sealed.IndexStart))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	meta := &metadb.BoltMetaDB{}
	w, err := openWAL(dir, meta, fs.New(), segSize, hclog.NewNullLogger())
	require.NoError(t, err)
	defer meta.Close()
	defer w.Close()
	got, err := meta.Load(dir)
	require.NoError(t, err)
	require.Len(t, got.Segments, 1, "a torn index recorded as sealed")
	require.True(t, got.Segments[0].SealTime.IsZero())
	for idx := uint64(1); idx < sealed.MaxIndex; idx++ { // the sealing batch's entry is gone
		var l raft.Log
		require.NoError(t, w.GetLog(idx, &l), "index %d", idx)
		require.Equal(t, payload(idx), l.Data, "index %d", idx)
	}
}

// A sealed segment refuses appends, as raft-wal's own writer does, once
// its writer is let go: raft-wal appends to it again if its rotation
// failed (a full disk while recording it), and must get an error, not a
// crash.
func TestSealedRefusesAppend(t *testing.T) {
	dir := t.TempDir()
	f := sealingFiler{segment.NewFiler(dir, fs.New())}
	w, err := f.Create(types.SegmentInfo{ID: 1, BaseIndex: 1, MinIndex: 1, SizeLimit: 8 << 10, Codec: wal.CodecBinaryV1, CreateTime: time.Now()})
	require.NoError(t, err)
	defer w.Close()
	for idx := uint64(1); ; idx++ {
		require.NoError(t, w.Append([]types.LogEntry{{Index: idx, Data: bytes.Repeat([]byte{1}, 1000)}}))
		sealed, _, err := w.Sealed()
		require.NoError(t, err)
		if sealed {
			break
		}
		require.Less(t, idx, uint64(100), "no seal")
	}
	require.Nil(t, w.(*sealingWriter).writer(), "the writer was not let go")
	require.ErrorIs(t, w.Append([]types.LogEntry{{Index: w.LastIndex() + 1, Data: []byte("x")}}), types.ErrSealed)
	buf, err := w.GetLog(1)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{1}, 1000), buf.Bs)
	buf.Close()
}

// interruptRotation appends one entry at a time to a new raft-wal in dir
// until a segment seals and its rotation is recorded (an append waits for
// the rotation the one before it started), then puts the directory back
// into the state a crash between the two leaves: the sealed segment is the
// open tail again in the metadata and the next one was never created. It
// returns the metadata as raft-wal had recorded it; entries up to its
// first segment's MaxIndex are in the files.
func interruptRotation(t *testing.T, dir string, segSize int, payload func(uint64) []byte) (rotated types.PersistentState) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segSize))
	require.NoError(t, err)
	for idx := uint64(1); ; idx++ {
		require.NoError(t, w.StoreLogs([]*raft.Log{{Index: idx, Term: 1, Type: raft.LogCommand, Data: payload(idx)}}))
		ps, err := meta.Load(dir)
		require.NoError(t, err)
		if len(ps.Segments) == 2 {
			break
		}
		require.Less(t, idx, uint64(100), "no segment sealed")
	}
	require.NoError(t, w.Close())

	ps, err := meta.Load(dir)
	require.NoError(t, err)
	rotated = ps
	rotated.Segments = slices.Clone(ps.Segments)
	next := ps.Segments[1]
	ps.Segments = ps.Segments[:1]
	ps.Segments[0].SealTime, ps.Segments[0].IndexStart, ps.Segments[0].MaxIndex = time.Time{}, 0, 0
	ps.NextSegmentID = next.ID
	require.NoError(t, meta.CommitState(ps))
	require.NoError(t, meta.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, segment.FileName(next))))
	return rotated
}
