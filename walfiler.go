package logx

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// openWAL opens the raft-wal in dir with the two changes below: sealed
// segments let their writers go (sealingFiler), and a rotation that a
// crash or a Close interrupted is finished at load (finishingMeta).
func openWAL(dir string, meta types.MetaStore, vfs types.VFS, segSize int, logger hclog.Logger) (*wal.WAL, error) {
	filer := segment.NewFiler(dir, vfs)
	return wal.Open(dir, wal.WithLogger(logger), wal.WithSegmentSize(segSize),
		wal.WithMetaStore(finishingMeta{MetaStore: meta, filer: filer, segSize: segSize}),
		wal.WithSegmentFiler(sealingFiler{filer}))
}

// An interrupted rotation.
//
// raft-wal seals a full segment in the append that fills it (its index and
// the entries go in one fsync) and records that in its metadata, with the
// next segment, in a goroutine afterwards. A node killed between the two,
// or closed then (wal.Close does not wait for the rotation), finds at its
// next start a tail segment that its metadata calls open but whose file is
// sealed: raft-wal v0.4.1 recovers it as its tail, and every append after
// that fails with "segment is sealed", for good: the node can neither lead
// nor follow (TestInterruptedRotation reproduces it).
//
// finishingMeta finishes such a rotation when raft-wal loads its
// metadata: it marks the tail sealed, as far as its file goes, and adds
// the next segment (raft-wal then creates its file), as the rotation would
// have, and commits that before raft-wal reads it. It does so only if the
// file's index leads to every entry the file holds (indexHolds): raft-wal
// takes a file for sealed as soon as it sees the head of an index frame,
// also one that a power cut tore before its batch committed, and such a
// segment is left as raft-wal has it (its appends fail, its reads work).
type finishingMeta struct {
	types.MetaStore
	filer   types.SegmentFiler
	segSize int
}

func (m finishingMeta) Load(dir string) (types.PersistentState, error) {
	ps, err := m.MetaStore.Load(dir)
	if err != nil || len(ps.Segments) == 0 {
		return ps, err
	}
	tail := ps.Segments[len(ps.Segments)-1]
	if !tail.SealTime.IsZero() {
		return ps, nil
	}
	w, err := m.filer.RecoverTail(tail)
	if errors.Is(err, os.ErrNotExist) {
		return ps, nil // raft-wal creates it
	}
	if err != nil {
		return ps, nil // raft-wal's own recovery of the tail reports it
	}
	defer w.Close()
	sealed, indexStart, serr := w.Sealed()
	last := w.LastIndex()
	if serr != nil || !sealed || last < tail.BaseIndex {
		return ps, nil
	}
	tail.IndexStart, tail.MaxIndex = indexStart, last
	if !m.indexHolds(tail, w) {
		return ps, nil
	}
	now := time.Now()
	tail.SealTime = now
	next := types.SegmentInfo{ID: ps.NextSegmentID, BaseIndex: last + 1, MinIndex: last + 1,
		SizeLimit: uint32(m.segSize), Codec: tail.Codec, CreateTime: now}
	fixed := types.PersistentState{NextSegmentID: ps.NextSegmentID + 1,
		Segments: append(append(ps.Segments[:len(ps.Segments)-1:len(ps.Segments)-1], tail), next)}
	if err := m.MetaStore.CommitState(fixed); err != nil {
		return ps, err
	}
	return fixed, nil
}

// indexHolds says whether the index of the sealed tail info (as a reader
// of the file reads it) finds the same entries as w, the recovered writer,
// which knows the offsets of every committed entry: a torn index does not.
func (m finishingMeta) indexHolds(info types.SegmentInfo, w types.SegmentWriter) bool {
	r, err := m.filer.Open(info)
	if err != nil {
		return false
	}
	defer r.Close()
	for idx := info.MinIndex; idx <= info.MaxIndex; idx++ {
		want, err := w.GetLog(idx)
		if err != nil {
			return false
		}
		got, err := r.GetLog(idx)
		same := err == nil && bytes.Equal(got.Bs, want.Bs)
		want.Close()
		if err == nil {
			got.Close()
		}
		if !same {
			return false
		}
	}
	return true
}

// Memory held by raft-wal's segments.
//
// raft-wal reads a sealed segment of the Raft log through the writer that
// wrote it, for as long as the segment is kept (until a snapshot lets Raft
// drop it, TrailingLogs entries later), and a writer holds its write buffer,
// as large as the largest append it took (up to MaxAppendEntries batches of
// up to MaxBatchBytes), and an index of 128 KiB. Under sustained load a
// node keeps dozens of 64 MiB segments, and their writers' buffers were
// most of its heap: a node's RSS grew by about 45 MB in a minute of async
// logging (docs/benchmarks.md, issue 11).
//
// sealingFiler hands raft-wal writers that, once their segment is sealed,
// read through a reader opened from the sealed file (which reads its index
// from the file, as raft-wal does for segments it finds at start) and let
// the writer go.
type sealingFiler struct {
	types.SegmentFiler
}

func (f sealingFiler) Create(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.Create(info)
	return f.wrap(info, w, err)
}

func (f sealingFiler) RecoverTail(info types.SegmentInfo) (types.SegmentWriter, error) {
	w, err := f.SegmentFiler.RecoverTail(info)
	return f.wrap(info, w, err)
}

// wrap makes w, the writer of info's segment, a sealingWriter.
func (f sealingFiler) wrap(info types.SegmentInfo, w types.SegmentWriter, err error) (types.SegmentWriter, error) {
	if err != nil {
		return nil, err
	}
	return &sealingWriter{filer: f.SegmentFiler, info: info, w: w}, nil
}

// sealingWriter is a segment writer that turns into a reader of its file
// once sealed. raft-wal calls Append, Sealed and ForceSeal one at a time
// (its contract), and GetLog, LastIndex and Close from any goroutine.
type sealingWriter struct {
	filer  types.SegmentFiler
	mu     sync.RWMutex
	info   types.SegmentInfo   // sealed: with IndexStart and MaxIndex
	w      types.SegmentWriter // nil once r is set
	r      types.SegmentReader // the sealed file's reader
	closed bool                // raft-wal is done with the segment
}

func (s *sealingWriter) Append(entries []types.LogEntry) error {
	w := s.writer()
	if w == nil {
		// Sealed, and raft-wal's rotation failed (it logs "rotate error"
		// and keeps this segment as its tail): refuse as the writer
		// itself would.
		return types.ErrSealed
	}
	return w.Append(entries)
}

func (s *sealingWriter) Sealed() (bool, uint64, error) {
	w := s.writer()
	if w == nil {
		return true, s.info.IndexStart, nil
	}
	sealed, indexStart, err := w.Sealed()
	if sealed && err == nil {
		s.reopen(indexStart)
	}
	return sealed, indexStart, err
}

func (s *sealingWriter) ForceSeal() (uint64, error) {
	w := s.writer()
	if w == nil {
		return s.info.IndexStart, nil
	}
	indexStart, err := w.ForceSeal()
	if err == nil {
		s.reopen(indexStart)
	}
	return indexStart, err
}

// writer is the segment's writer, nil once it is sealed and reopened.
func (s *sealingWriter) writer() types.SegmentWriter {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.w
}

// reopen switches reads to a reader of the sealed file and closes the
// writer. If the file does not open, reads stay with the writer (which
// serves them as before, only holding its memory).
func (s *sealingWriter) reopen(indexStart uint64) {
	info := s.info
	info.IndexStart = indexStart
	info.MaxIndex = s.w.LastIndex()
	r, err := s.filer.Open(info)
	if err != nil {
		return
	}
	s.mu.Lock()
	w := s.w
	s.info, s.r, s.w = info, r, nil
	s.mu.Unlock()
	_ = w.Close() // no read is using it: they hold mu
}

func (s *sealingWriter) GetLog(idx uint64) (*types.PooledBuffer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.r != nil {
		return s.r.GetLog(idx)
	}
	return s.w.GetLog(idx)
}

func (s *sealingWriter) LastIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.w != nil {
		return s.w.LastIndex()
	}
	return s.info.MaxIndex
}

func (s *sealingWriter) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.r != nil {
		return s.r.Close()
	}
	return s.w.Close()
}
