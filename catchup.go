package logx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// Catch-up: a node that missed entries Raft no longer holds receives the
// leader's snapshot, a manifest of the files (name, first sequence number,
// size and checksum of each, as of the snapshot's index). Restore keeps the
// local files that match, copies the missing byte ranges (the tails) from a
// peer over the node's address, verifies every file against the manifest,
// and resumes where it stopped if it is interrupted: files being copied are
// kept under staging names (.catchup-<first>) and state.json says a copy is
// under way, so a restart finishes it from the snapshot Raft has stored.
// That restart does not wait for the peers: the catch-up goes on in the
// background (resumeInBackground) until a peer answers, and the node
// applies nothing meanwhile. A catch-up stops between chunks when the node
// closes. The fetch protocol that copies the ranges is in fetch.go.

// asyncHasher computes a checksum on its own goroutine: Write hands a copy
// of the bytes over, sum waits for the result. sum must be called once.
type asyncHasher struct {
	ch   chan []byte
	free chan []byte
	out  chan []byte
}

const hashBufSize = 256 << 10

func newAsyncHasher(kind store.Hash) *asyncHasher {
	a := &asyncHasher{ch: make(chan []byte, 4), free: make(chan []byte, 5), out: make(chan []byte, 1)}
	for range 5 {
		a.free <- make([]byte, 0, hashBufSize)
	}
	go func() {
		h := kind.New()
		for b := range a.ch {
			h.Write(b)
			a.free <- b[:0]
		}
		a.out <- h.Sum(nil)
	}()
	return a
}

func (a *asyncHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		b := <-a.free
		k := min(len(p), hashBufSize)
		a.ch <- append(b, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

func (a *asyncHasher) sum() []byte {
	close(a.ch)
	return <-a.out
}

// catchUpProgress is what Stats shows of the running or the last catch-up.
type catchUpProgress struct {
	running atomic.Bool
	total   atomic.Int64 // bytes of the files to assemble
	done    atomic.Int64 // bytes in place so far: kept or fetched
	reread  atomic.Int64 // bytes of local files read again to check them
	start   atomic.Int64 // unix nanoseconds
	took    atomic.Int64 // nanoseconds the last catch-up took
}

// begin starts an attempt at assembling total bytes: done counts from 0
// again (the attempt checks every byte again), but a catch-up that is still
// running (retried in the background, or superseded by a newer snapshot)
// keeps the time it began.
func (p *catchUpProgress) begin(total int64) {
	p.total.Store(total)
	p.done.Store(0)
	p.reread.Store(0)
	if !p.running.Load() {
		p.took.Store(0)
		p.start.Store(monoNanos()) // monotonic: a clock stepped meanwhile does not skew CatchUpDuration
		p.running.Store(true)
	}
}

// end marks the catch-up over: finished, or failed with nothing to retry it
// here (Raft sends the snapshot again).
func (p *catchUpProgress) end() {
	p.took.Store(monoNanos() - p.start.Load())
	p.running.Store(false)
}

// elapsed is how long the running catch-up has taken so far, or the last
// one took.
func (p *catchUpProgress) elapsed() time.Duration {
	if p.running.Load() {
		return time.Duration(monoNanos() - p.start.Load())
	}
	return time.Duration(p.took.Load())
}

// progressWriter adds the bytes written through it to a counter.
type progressWriter struct{ n *atomic.Int64 }

func (w progressWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// endCatchUp marks the catch-up ended (Stats), and wakes the compressor,
// which waited for it.
func (f *fsm) endCatchUp() {
	f.progress.end()
	if f.onRotated != nil {
		f.onRotated()
	}
}

// stagingName is where the file starting at first is assembled.
func stagingName(first uint64) string { return fmt.Sprintf(".catchup-%020d", first) }

// catchUp makes the local files those of manifest m, copying what is
// missing from peers. It runs on the apply goroutine (from Restore), or on
// the background goroutine that owns the files meanwhile; it stops soon
// after ctx ends. The caller ends f.progress.
func (f *fsm) catchUp(ctx context.Context, m *manifest) error {
	if len(m.Files) == 0 {
		return fmt.Errorf("logx: snapshot at index %d lists no files", m.Index)
	}
	start := time.Now()
	var need int64
	for _, mf := range m.Files {
		need += mf.Size
	}
	f.logf("logx: catching up to Raft index %d (sequence %d, %d files, %d bytes) from peers", m.Index, m.Seq, len(m.Files), need)
	if m.Settings != nil {
		f.pendingSettings.Store(m.Settings)
	}
	f.progress.begin(need)
	f.compressMu.Lock() // the compressor stops the file under way (compress.go)
	defer f.compressMu.Unlock()

	// From here until the state is replaced the files are in flux.
	if f.seg != nil {
		if err := f.persist(); err != nil {
			return err
		}
		if err := f.seg.Close(); err != nil {
			return err
		}
		f.useSegment(nil)
	}
	if m.Settings != nil && f.st.Settings == nil {
		// The cluster's settings come with the snapshot: this node's
		// Config must agree, and a fresh node takes the cluster's File.
		if err := m.Settings.conflict(f.want.withoutRetention()); err != nil {
			f.stopWith(err)
			return err
		}
		if m.Settings.File != f.file && f.st.Seq == 0 {
			if err := os.Remove(filepath.Join(f.dir, f.file)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			f.file = m.Settings.File
		}
	}
	if !f.st.CatchingUp {
		f.st.CatchingUp = true
		if err := writeState(f.dir, &f.st, &f.lists); err != nil {
			return err
		}
	}
	namer := store.NewNames(f.file)
	// The rotated files this node's own checkpoint lists, with the
	// checksums they had when it wrote or last checked them, unless the
	// checks of the files at rest have not cleared them; and the files an
	// earlier attempt of this process read and checked against a manifest
	// (their own record may name another hash: sums.go), unless found
	// damaged since.
	checks := f.fileChecks()
	recorded := make(map[uint64]store.File, len(f.st.Rotated))
	for _, r := range f.st.Rotated {
		if !checks.unchecked(r.First) {
			recorded[r.First] = r
		}
	}
	for first, v := range f.verified {
		if !checks.damaged(first) {
			recorded[first] = v
		}
	}
	var copied int64
	for _, mf := range m.Files {
		if f.holdsRecorded(namer, mf, recorded[mf.First], filepath.Join(f.dir, stagingName(mf.First))) {
			f.progress.done.Add(mf.Size) // kept unread
			continue
		}
		n, err := f.catchUpFile(ctx, namer, mf)
		if err == nil && mf.Name == namer.Segment(mf.First) {
			// Read and checked: kept by a later attempt, and cleared.
			if f.verified == nil {
				f.verified = map[uint64]store.File{}
			}
			f.verified[mf.First] = mf
			checks.cleared(mf.First)
		}
		copied += n
		if err != nil {
			return err
		}
	}
	// Remove what the manifest does not list.
	keep := map[string]bool{}
	for _, mf := range m.Files {
		keep[mf.Name] = true
	}
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		plain, _, _, isSeg := namer.ParseStored(e.Name())
		if (isSeg && !keep[plain]) || strings.HasPrefix(e.Name(), ".catchup-") || strings.HasPrefix(e.Name(), ".retired-") ||
			strings.HasPrefix(e.Name(), store.CompressTemp("")) {
			f.filesMu.Lock()
			err := os.Remove(filepath.Join(f.dir, e.Name()))
			f.filesMu.Unlock()
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	if err := store.SyncDir(f.dir); err != nil {
		return err
	}
	last := m.Files[len(m.Files)-1]
	st := applyState{Index: m.Index, Seq: m.Seq, Producers: m.Producers, SnapIndex: m.Index, PrunedAt: m.PrunedAt,
		Clock: m.Clock, Clocks: m.Clocks, ReportedAt: m.ReportedAt, Rules: m.Rules, Voters: m.Voters, ClockOwners: m.Owners, Settings: m.Settings, Catalog: m.Catalog, Level: m.Level, TruncatedBefore: m.TruncatedBefore,
		State: store.State{ActiveFirst: last.First, ActiveSize: last.Size, Rotated: slices.Clone(m.Files[:len(m.Files)-1]),
			ActiveNewest: last.Newest, ActiveMinTime: last.MinTime, ActiveMaxTime: last.MaxTime, ActiveSum: store.ActiveSum(last)}}
	if st.Producers == nil {
		st.Producers = map[uint64]*producerState{}
	}
	if err := writeState(f.dir, &st, &f.lists); err != nil {
		return err
	}
	seg, err := f.openFiles(st.State, f.file, f.policy.rotation, true)
	if err != nil {
		return err
	}
	old := f.st.Catalog
	f.st = st
	f.useCatalog(old, st.Catalog)
	f.restoredLevel(st.Index, st.Level)
	f.truncated.Store(st.TruncatedBefore)
	f.useSegment(seg)
	f.noteRotated(st.Rotated) // the compressor looks at them once the catch-up ends (endCatchUp)
	f.applied.Store(st.Index)
	f.seq.Store(st.Seq)
	f.clock.Store(st.Clock)
	f.rules.Store(int32(st.Rules))
	f.voters.Store(&appliedVoters{voters: st.Voters})
	if st.Settings != nil {
		if err := f.useSettings(*st.Settings); err != nil {
			f.stopWith(err)
			return err
		}
	}
	el := time.Since(start)
	f.verified = nil // the state now records them
	f.logf("logx: caught up to Raft index %d: copied %d bytes in %v (%.1f MB/s), kept %d bytes (%d of them read again to check them)",
		m.Index, copied, el.Round(time.Millisecond), float64(copied)/1e6/el.Seconds(), need-copied, f.progress.reread.Load())
	f.catchUps.Add(1)
	return nil
}

// catchUpFile assembles one file of the manifest, reading and checking
// every byte it keeps, and returns how many bytes of it were copied (in
// the copy kept: one that failed its check is logged, not counted).
func (f *fsm) catchUpFile(ctx context.Context, namer store.Names, mf store.File) (int64, error) {
	staging := filepath.Join(f.dir, stagingName(mf.First))
	if keep, err := f.keepCompressed(ctx, namer, mf, staging); keep || err != nil {
		f.progress.done.Add(mf.Size)
		return 0, err
	}
	if _, err := os.Stat(staging); errors.Is(err, os.ErrNotExist) {
		// The local copy, if any: a rotated file, or the active file.
		src := filepath.Join(f.dir, namer.Segment(mf.First))
		if _, err := os.Stat(src); err != nil && f.st.ActiveFirst == mf.First {
			src = filepath.Join(f.dir, f.file)
		}
		// Its bytes go into a new file, src left as it is until the new
		// one replaces it (or is in place under the rotated name): a
		// Reader may hold src open, and must see no byte the checksum has
		// not checked (the fetched ones are checked once all have come).
		// A Reader goes on in the file that replaced its own.
		if err := copyKept(ctx, src, staging, mf.Size); err != nil {
			return 0, err
		}
	}
	fh, err := os.OpenFile(staging, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var copied int64
	for attempt := 0; ; attempt++ {
		fi, err := fh.Stat()
		if err != nil {
			return copied, err
		}
		have := min(fi.Size(), mf.Size)
		if fi.Size() > mf.Size {
			if err := fh.Truncate(mf.Size); err != nil {
				return copied, err
			}
		}
		// Hash the bytes kept, then the bytes fetched as they arrive, on
		// another goroutine so hashing overlaps the copy.
		kind, _ := mf.Sum()
		h := newAsyncHasher(kind)
		if _, err := copyContext(ctx, h, io.NewSectionReader(fh, 0, have)); err != nil {
			h.sum()
			return copied, err
		}
		f.progress.done.Add(have)
		f.progress.reread.Add(have)
		if have < mf.Size {
			if _, err := fh.Seek(have, io.SeekStart); err != nil {
				h.sum()
				return copied, err
			}
			w := bufio.NewWriterSize(fh, 1<<20)
			err := f.fetcher.fetch(ctx, mf.First, have, mf.Size-have, io.MultiWriter(w, h, progressWriter{&f.progress.done}), attempt)
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			if err != nil {
				h.sum()
				return copied, err
			}
			copied = mf.Size - have // of the copy kept: a failed one is logged, and "kept" in the log is what was not copied
		}
		if mf.Matches(h.sum(), mf.Size) {
			break
		}
		// A whole copy from each source in turn, the second first: one
		// peer whose copy is damaged (or who lies) must not keep the
		// others from being asked.
		if attempt >= max(1, f.fetcher.sources()) {
			return copied, fmt.Errorf("%w: %s does not match the snapshot's checksum after a full copy from each of %d peers", ErrCorrupt, mf.Name, attempt)
		}
		f.logf("logx: catch-up: %s does not match the snapshot's checksum; copying it whole", mf.Name)
		f.progress.done.Add(-mf.Size)
		if err := fh.Truncate(0); err != nil {
			return copied, err
		}
	}
	if err := fh.Sync(); err != nil {
		return copied, err
	}
	f.dropCopy(fh) // the active file too: the Writer opened on it would drop it at its first Sync
	if err := os.Rename(staging, filepath.Join(f.dir, mf.Name)); err != nil {
		return copied, err
	}
	if mf.Name != f.file {
		// The local active file, if it starts this one (its bytes were
		// copied above, here or before a restart): gone now that the
		// checked copy is in place, or a listing would find two files
		// starting at mf.First (Grep read its lines twice).
		active := filepath.Join(f.dir, f.file)
		if first, _, err := firstSeq(active); err == nil && first == mf.First {
			f.filesMu.Lock()
			err := os.Remove(active)
			f.filesMu.Unlock()
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return copied, err
			}
		}
	}
	return copied, nil
}

// copyKept copies up to n bytes of src (none if there is no src) into
// dst, a new file. A copy cut short leaves a shorter dst: the bytes a
// catch-up then fetches are checked with the ones kept.
func copyKept(ctx context.Context, src, dst string, n int64) error {
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = copyContext(ctx, out, io.LimitReader(in, n))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// fileChecks is what the checks of the files at rest say (unchecked);
// without them (tests), every file is cleared.
func (f *fsm) fileChecks() fileChecks {
	if f.unchecked != nil {
		return f.unchecked()
	}
	no := func(uint64) bool { return false }
	return fileChecks{unchecked: no, damaged: no, cleared: func(uint64) {}}
}

// holdsRecorded reports whether this node holds the manifest's rotated file
// mf as its own checkpoint records it (rec): the same name, size and
// checksum, in its plain or its compressed form (one of them), with no copy
// being assembled. Such a file is kept without reading it again. Its
// checksum was taken as this node wrote it (or copied and checked it, or
// last checked it), and the check of the files at rest (scrub.go) is what
// finds a file damaged since, as for any file a catch-up does not touch.
// Reading every retained byte again in each catch-up made one cost as much
// as the whole retention: months of it are terabytes, and hashing them
// outlasted the leader's InstallSnapshot deadline, so a node that fell
// behind could restart its catch-up from every newer snapshot for good.
func (f *fsm) holdsRecorded(namer store.Names, mf, rec store.File, staging string) bool {
	if mf.Name != namer.Segment(mf.First) || rec.Name != mf.Name || rec.Size != mf.Size || rec.CheckSum() != nil {
		return false
	}
	rk, rs := rec.Sum()
	if mk, ms := mf.Sum(); rk != mk || rs != ms {
		return false
	}
	if _, err := os.Stat(staging); err == nil {
		return false
	}
	pi, perr := os.Stat(filepath.Join(f.dir, mf.Name))
	_, zerr := os.Stat(filepath.Join(f.dir, mf.Name+store.CompressedExt))
	switch {
	case perr == nil && zerr != nil:
		return pi.Size() == mf.Size
	case perr != nil && zerr == nil:
		return true
	}
	return false
}

// keepCompressed reports whether the local compressed form of the manifest's
// rotated file mf holds its bytes, so that catch-up keeps it. A compressed
// form that does not, or that a plain copy (or one being assembled) makes
// redundant, is removed: the compressor makes a new one from the plain
// file once it is complete.
func (f *fsm) keepCompressed(ctx context.Context, namer store.Names, mf store.File, staging string) (bool, error) {
	if mf.Name != namer.Segment(mf.First) {
		return false, nil // the active file: never compressed
	}
	zpath := filepath.Join(f.dir, mf.Name+store.CompressedExt)
	if _, err := os.Stat(zpath); err != nil {
		return false, nil
	}
	_, perr := os.Stat(filepath.Join(f.dir, mf.Name))
	_, serr := os.Stat(staging)
	if perr != nil && serr != nil {
		sum, size, err := segmentSum(ctx, zpath, mf, f.compresses())
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err == nil && mf.Matches(sum, size) {
			return true, nil
		}
		f.logf("logx: catch-up: %s does not hold the snapshot's bytes (%v); copying it whole", mf.Name+store.CompressedExt, err)
	}
	f.filesMu.Lock()
	err := os.Remove(zpath)
	f.filesMu.Unlock()
	return false, err
}

// copyContext copies src to dst like io.Copy, a chunk at a time, and stops
// between chunks once ctx ends: hashing a large local file must not hold
// Close up.
func copyContext(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
