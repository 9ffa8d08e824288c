package logx

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/logx-dev/logx/internal/pagecache"
	"github.com/logx-dev/logx/internal/store"
)

// Rotated files never change once written, and the checkpoint records each
// one's size and checksum (of its plain bytes, when it is kept compressed;
// a sha256 or a BLAKE3, as the file names). At start a node checks them in
// the background; a file whose bytes no longer match (a bad disk, a stray
// write) is copied again from a peer, which holds the same file, verified
// against the same checksum, and put in place of the damaged one.
//
// A start checks the files rotated since the last check, and every file
// only once the last whole pass is scrubEvery old: months of retention are
// terabytes, which every start read and hashed before 2026-12-06 (a daily
// restart hashed them daily, and compression waited for it). A running
// node makes a whole pass every scrubEvery too. A whole pass a restart
// cuts short goes on at the next start where it stopped. What was checked
// is kept in Dir/.scrub.json.

// scrubEvery is how often a start checks every rotated file, not only
// those rotated since the last check.
const scrubEvery = 7 * 24 * time.Hour

// scrubFile is the record of the checks, in Dir.
const scrubFile = ".scrub.json"

// scrubState is what was checked: every rotated file up to Through (its
// first sequence number), the last whole pass ended at PassAt (Unix
// nanoseconds, this node's clock), and a whole pass cut short goes on at
// Cursor (0: none).
type scrubState struct {
	Through uint64 `json:"through"`
	PassAt  int64  `json:"pass_at"`
	Cursor  uint64 `json:"cursor,omitempty"`
	// Damaged are the files a check found damaged and could not repair
	// (Stream.damaged, at most maxDamagedRecorded): a catch-up after a
	// restart reads them again before the start's check finds them.
	Damaged []uint64 `json:"damaged,omitempty"`
}

// maxDamagedRecorded bounds scrubState.Damaged.
const maxDamagedRecorded = 1024

// readScrub loads dir's record of checks; none (a start before
// 2026-12-06, or a new node) or a damaged one is all unchecked.
func readScrub(dir string) scrubState {
	var st scrubState
	if b, err := os.ReadFile(filepath.Join(dir, scrubFile)); err == nil && json.Unmarshal(b, &st) != nil {
		st = scrubState{}
	}
	return st
}

// scrubPlan splits files (oldest first) into those rotated since the last
// check and, when a whole pass is due or under way, the older ones it has
// still to check. A record from before the files (a wiped Dir, a catch-up
// that replaced them) is none.
func scrubPlan(files []store.File, st scrubState, now time.Time, every time.Duration) (fresh, older []store.File) {
	if len(files) == 0 || st.Through > files[len(files)-1].First {
		st = scrubState{}
	}
	i := 0
	for i < len(files) && files[i].First <= st.Through {
		i++
	}
	fresh = files[i:]
	since := now.Sub(time.Unix(0, st.PassAt)) // negative: a clock set back since, or ahead then
	if st.Cursor == 0 && (st.Through == 0 || since >= 0 && since < every) {
		return fresh, nil // no pass due: none under way, the last recent (or all fresh)
	}
	j := 0
	for j < i && files[j].First < st.Cursor {
		j++
	}
	return fresh, files[j:i]
}

// scrub checks the rotated files of files that scrubPlan gives and repairs
// the damaged ones, then, while the node runs, checks them all again every
// scrubEvery (a node that runs for months would otherwise check nothing
// after its start); it stops when the node closes. It closes scrubFresh
// once the first check has checked the freshly rotated files (the
// compressor waits for that), scrubStarted once the first check has
// ended, and scrubDone at the end.
func (lx *Stream) scrub(files []store.File) {
	defer close(lx.scrubDone)
	every := cmp.Or(lx.seams.scrubEvery, scrubEvery)
	done := lx.scrubPass(files, every, lx.scrubFresh)
	close(lx.scrubStarted)
	for {
		// The next whole pass is due every after the last one ended; a
		// pass that could not finish (a file it could not repair: the
		// next start checks it again) is tried again every on, and so is
		// one whose end is not known or in the future (a clock set back).
		wait := every
		if since := time.Since(time.Unix(0, readScrub(lx.cfg.Dir).PassAt)); done && since >= 0 && since < every {
			wait = every - since
		}
		t := time.NewTimer(wait)
		select {
		case <-lx.closingCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if lx.fsm.catchingUp() {
			continue // a catch-up checks what it copies
		}
		files, _ := lx.fsm.toCompress() // the rotated files of the newest checkpoint
		done = lx.scrubPass(files, every, nil)
	}
}

// scrubPass is one check: the files of files that scrubPlan gives. It
// closes fresh, if not nil, once the freshly rotated ones are checked. A
// damaged file it could not repair stops the record where it is: the next
// check goes over it again. It reports whether it checked every file it
// was to.
func (lx *Stream) scrubPass(files []store.File, every time.Duration, fresh chan struct{}) (done bool) {
	defer func() {
		if fresh != nil {
			close(fresh)
		}
	}()
	start := fresh != nil
	st := readScrub(lx.cfg.Dir)
	freshFiles, older := scrubPlan(files, st, time.Now(), every)
	whole := len(freshFiles) > 0 && freshFiles[0].First == files[0].First // every file is fresh
	advance := true
	for _, fs := range freshFiles {
		switch lx.checkFile(fs) {
		case checkClosing:
			return false
		case checkUnrepaired:
			advance = false
		}
		if advance {
			st.Through = fs.First
			if whole && fs.First == files[len(files)-1].First {
				st.Cursor, st.PassAt = 0, time.Now().UnixNano()
			}
			lx.saveScrub(st)
		}
	}
	if fresh != nil {
		close(fresh)
		fresh = nil
	}
	if start {
		// The files this start does not read are looked for (a stat
		// each): one missing is copied again now, not at the next whole
		// pass, up to scrubEvery away. The record is left as it is.
		for _, fs := range files[:len(files)-len(freshFiles)-len(older)] {
			if lx.fsm.lost(fs) && lx.checkFile(fs) == checkClosing {
				return false
			}
		}
	}
	for _, fs := range older {
		if advance {
			st.Cursor = fs.First
			lx.saveScrub(st) // a restart goes on here
		}
		switch lx.checkFile(fs) {
		case checkClosing:
			return false
		case checkUnrepaired:
			advance = false
		}
	}
	if len(older) > 0 && advance {
		st.Cursor, st.PassAt = 0, time.Now().UnixNano()
		lx.saveScrub(st)
	}
	return advance
}

// saveScrub records st, with the damaged files as they stand; a record
// lost to a crash only means checking again.
func (lx *Stream) saveScrub(st scrubState) {
	st.Damaged = st.Damaged[:0]
	lx.damaged.Range(func(k, _ any) bool {
		st.Damaged = append(st.Damaged, k.(uint64))
		return len(st.Damaged) < maxDamagedRecorded
	})
	slices.Sort(st.Damaged)
	b, _ := json.Marshal(st)
	if err := store.WriteFileAtomic(filepath.Join(lx.cfg.Dir, scrubFile), b); err != nil && lx.closingCtx.Err() == nil {
		lx.logf("logx: recording the check of the rotated files: %v", err)
	}
}

// The outcomes of checkFile.
const (
	checkDone       = iota // the file matches, was repaired, or left the log
	checkUnrepaired        // damaged, and the repair failed
	checkClosing           // the node closes
)

// checkFile checks one rotated file and repairs it if it is damaged.
func (lx *Stream) checkFile(fs store.File) int {
	if lx.closingCtx.Err() != nil {
		return checkClosing
	}
	lx.stats.checked.Add(1)
	sum, size, err := segmentSum(lx.closingCtx, filepath.Join(lx.cfg.Dir, fs.Name), fs, lx.fsm.compresses())
	if errors.Is(err, os.ErrNotExist) {
		if !lx.fsm.lost(fs) {
			lx.clearDamaged(fs.First)
			return checkDone // retired by retention meanwhile
		}
		err = errors.New("missing, though the log holds it")
	}
	if lx.closingCtx.Err() != nil {
		return checkClosing
	}
	if err == nil && fs.Matches(sum, size) {
		lx.clearDamaged(fs.First) // repaired by a catch-up, perhaps
		return checkDone
	}
	if err == nil {
		kind, want := fs.Sum()
		err = fmt.Errorf("%d bytes with %s %x, the checkpoint says %d bytes with %s", size, kind, sum, fs.Size, want)
	}
	lx.logf("logx: %s is damaged (%v); copying it again from a peer", fs.Name, err)
	lx.stats.damaged.Add(1)
	if err := lx.fsm.repair(lx.closingCtx, fs); err != nil {
		if lx.closingCtx.Err() != nil {
			return checkClosing
		}
		lx.logf("logx: repairing %s: %v", fs.Name, err)
		if _, known := lx.damaged.LoadOrStore(fs.First, true); !known {
			lx.saveScrub(readScrub(lx.cfg.Dir)) // a catch-up reads it again, restarted too (uncheckedFiles)
		}
		return checkUnrepaired
	}
	lx.clearDamaged(fs.First)
	lx.stats.repaired.Add(1)
	lx.logf("logx: %s repaired from a peer", fs.Name)
	lx.wakeCompressor() // a compressed file comes back plain
	return checkDone
}

// loadDamaged takes the damaged files the record lists (at start).
func (lx *Stream) loadDamaged() {
	for _, first := range readScrub(lx.cfg.Dir).Damaged {
		lx.damaged.Store(first, true)
	}
}

// clearDamaged takes first out of the damaged files, and out of the
// record if it was in them.
func (lx *Stream) clearDamaged(first uint64) {
	if _, was := lx.damaged.LoadAndDelete(first); was {
		lx.saveScrub(readScrub(lx.cfg.Dir))
	}
}

// fileChecks is what the checks of the files at rest tell a catch-up
// (fsm.unchecked), by a rotated file's first sequence number.
type fileChecks struct {
	unchecked func(first uint64) bool // not cleared: damaged, or not checked yet
	damaged   func(first uint64) bool // found damaged and not repaired
	cleared   func(first uint64)      // the catch-up read and checked it
}

// uncheckedFiles returns the fileChecks for a catch-up. Not cleared: the
// files found damaged and not repaired (kept in the record across
// restarts), and, until the start's check has ended, those its record
// has not passed: rotated since the last check, or at or after the
// cursor of a whole pass that stopped.
func (lx *Stream) uncheckedFiles() fileChecks {
	through, cursor := uint64(math.MaxUint64), uint64(math.MaxUint64)
	select {
	case <-lx.scrubStarted:
	default:
		st := readScrub(lx.cfg.Dir)
		through = st.Through
		if st.Cursor != 0 {
			cursor = st.Cursor
		}
	}
	damaged := func(first uint64) bool {
		_, bad := lx.damaged.Load(first)
		return bad
	}
	return fileChecks{
		unchecked: func(first uint64) bool { return damaged(first) || first > through || first >= cursor },
		damaged:   damaged,
		cleared:   func(first uint64) { lx.damaged.Delete(first) },
	}
}

// repairTemp is the prefix of the temporary file a repair copies into.
const repairTemp = ".repair-"

// repair copies the rotated file fs from a peer into a temporary file,
// checks it against fs's checksum and renames it over the damaged one,
// unless the file has left the log meanwhile. A damaged compressed file
// is replaced by the plain copy, which the compressor compresses again. It runs beside Raft's apply
// goroutine, where retention and catch-up rename and remove rotated files:
// filesMu keeps them out between the check that the file is still there and
// the rename, which would otherwise bring back a file they took away.
func (f *fsm) repair(ctx context.Context, fs store.File) error {
	dir := f.dir
	path := filepath.Join(dir, fs.Name)
	tmp := filepath.Join(dir, repairTemp+fs.Name)
	defer os.Remove(tmp) // renamed into place on success
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if ctx.Err() != nil {
			return ErrClosed
		}
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ErrClosed
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		fh, err := os.Create(tmp)
		if err != nil {
			return err
		}
		kind, _ := fs.Sum()
		h := kind.New()
		err = f.fetcher.fetch(ctx, fs.First, 0, fs.Size, io.MultiWriter(fh, h), attempt)
		if err == nil {
			err = fh.Sync()
		}
		if err == nil {
			f.dropCopy(fh)
		}
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err == nil && !fs.Matches(h.Sum(nil), fs.Size) {
			err = errors.New("the copy does not match the checksum either")
		}
		if err == nil {
			f.filesMu.Lock()
			_, serr := os.Stat(path)
			_, zerr := os.Stat(path + store.CompressedExt)
			if serr != nil && zerr == nil {
				serr = nil // compressed: the plain copy replaces it
			}
			if errors.Is(serr, os.ErrNotExist) && f.lostLocked(fs) {
				serr = nil // deleted by hand, or lost with its directory entry: put back
			}
			if serr == nil {
				if f.repairHook != nil {
					f.repairHook(fs.Name)
				}
				if err = os.Rename(tmp, path); err == nil && zerr == nil {
					err = os.Remove(path + store.CompressedExt)
				}
			}
			f.filesMu.Unlock()
			if serr != nil {
				os.Remove(tmp)
				if errors.Is(serr, os.ErrNotExist) {
					return nil // retired meanwhile: nothing to put back
				}
				return serr
			}
			if err == nil {
				return store.SyncDir(dir)
			}
		}
		lastErr = err
	}
	return lastErr
}

// lost reports whether the rotated file fs is missing from Dir while the
// log still holds it (a file deleted by hand, a directory entry a crash
// lost): the newest checkpoint lists it, and there is no copy of it, plain,
// compressed or retired. Before 2026-12-06 a check took such a file for
// one retention had retired, and a node went on for good without it.
func (f *fsm) lost(fs store.File) bool {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	return f.lostLocked(fs)
}

// lostLocked is lost with filesMu held. Retention and truncation retire
// the oldest files first, each under filesMu, and the Writer records how
// far (RetiredBelow), also for a file that was already missing: the
// newest checkpoint may list such a file until the next one, and a
// missing file retired is not lost. A retired file keeps a copy until a
// snapshot deletes it, also under filesMu, and a snapshot deletes only
// files retired before the snapshot before it, whose checkpoint no longer
// listed them. A catch-up removes and replaces files under filesMu too,
// before its new list is noted: nothing counts as lost while one runs, or
// once one has failed with the files not open.
func (f *fsm) lostLocked(fs store.File) bool {
	seg := f.segPtr.Load()
	if seg == nil || f.catchingUp() || fs.First < seg.RetiredBelow() {
		return false // no files, files in flux, or retired since the checkpoint (perhaps missing when retired)
	}
	if store.AnyCopy(f.dir, fs.Name) {
		return false
	}
	p := f.checkpointed.Load()
	if p == nil {
		return false
	}
	i, ok := slices.BinarySearchFunc(*p, fs.First, func(c store.File, first uint64) int { return cmp.Compare(c.First, first) })
	return ok && (*p)[i].Name == fs.Name
}

// dropCopy drops from the page cache the pages of fh, a file copied from a
// peer (by a catch-up or a repair) and made durable, as a rotation drops
// the file it seals; except on a node that compresses, whose compressor
// reads each copied rotated file next.
func (f *fsm) dropCopy(fh *os.File) {
	if !f.compresses() {
		pagecache.Drop(fh, 0)
	}
}

// segmentSum returns the checksum (with the hash fs names) and size of the
// plain bytes of the log file at path, compressed or not; it gives up once ctx ends. It
// reads the file once, to check it, and then drops its pages from the page
// cache, so that a node's check of its rotated files at start does not take
// the page cache over; with keepPlain (a node that compresses) a plain
// file stays cached, since its compressor reads it next.
func segmentSum(ctx context.Context, path string, fs store.File, keepPlain bool) ([]byte, int64, error) {
	seg, err := store.OpenSegment(path)
	if err != nil {
		return nil, 0, err
	}
	defer seg.Close()
	kind, _ := fs.Sum()
	sum, n, err := seg.Sum(kind, ctx.Err)
	if !keepPlain || seg.Compressed() {
		seg.DropPages()
	}
	return sum, n, err
}
