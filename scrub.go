package logx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/logx-dev/logx/internal/pagecache"
	"github.com/logx-dev/logx/internal/store"
)

// Rotated files never change once written, and the checkpoint records each
// one's size and checksum (of its plain bytes, when it is kept compressed;
// a sha256 or a BLAKE3, as the file names). At start a node checks them in the background; a
// file whose bytes no longer match (a bad disk, a stray write) is copied
// again from a peer, which holds the same file, verified against the same
// checksum, and put in place of the damaged one.

// scrub checks the rotated files listed in files and repairs the damaged
// ones; it stops early when the node closes.
func (lx *Stream) scrub(files []store.File) {
	defer close(lx.scrubDone)
	for _, fs := range files {
		select {
		case <-lx.closing:
			return
		default:
		}
		sum, size, err := segmentSum(lx.closingCtx, filepath.Join(lx.cfg.Dir, fs.Name), fs, lx.fsm.compresses())
		if errors.Is(err, os.ErrNotExist) {
			continue // retired by retention meanwhile
		}
		if lx.closingCtx.Err() != nil {
			return
		}
		if err == nil && fs.Matches(sum, size) {
			continue
		}
		if err == nil {
			kind, want := fs.Sum()
			err = fmt.Errorf("%d bytes with %s %x, the checkpoint says %d bytes with %s", size, kind, sum, fs.Size, want)
		}
		lx.logf("logx: %s is damaged (%v); copying it again from a peer", fs.Name, err)
		lx.stats.damaged.Add(1)
		if err := lx.fsm.repair(lx.closingCtx, fs); err != nil {
			lx.logf("logx: repairing %s: %v", fs.Name, err)
			continue
		}
		lx.stats.repaired.Add(1)
		lx.logf("logx: %s repaired from a peer", fs.Name)
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
