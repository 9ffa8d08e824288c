package logx

import (
	"errors"
	"syscall"

	"github.com/logx-dev/logx/internal/store"
)

// Compressed rotated files (Config.Compress). A rotated file never changes,
// so once a checkpoint lists it, this node's compressor, one goroutine per
// stream, replaces it by its compressed form, <name>.zst
// (internal/store/segment.go gives the format and the steps that make the
// swap safe). Everything else goes on as before:
//
//   - The checkpoint, snapshots and the fetch protocol speak of the plain
//     bytes: a file's size and checksum, the ranges peers copy. A node that
//     serves a compressed file decodes it; a node may compress or not
//     whatever its peers do.
//   - Readers (Reader, Grep, Watch's replay) open a file with
//     store.OpenSegment, which finds either form and tells them apart by
//     their first bytes; one that has the plain file open when it is
//     swapped keeps reading it.
//   - Retention renames and deletes either form, scrub checks the plain
//     bytes of either, repair replaces a damaged compressed file by a
//     plain copy, and catch-up keeps a local compressed file whose plain
//     bytes match the snapshot's.
//
// Only files a checkpoint lists as rotated are compressed: recovery after
// a crash undoes what came after the checkpoint, and would otherwise have
// to turn a compressed file back into the active one.

// compressLoop compresses the rotated files of each new checkpoint until
// the node closes. It starts once the check at start (scrub) has checked
// the files rotated since the last check, so as not to read them twice at
// once; a whole pass over the older files goes on beside it. A catch-up stops
// it (fsm.compressMu) and wakes it when it ends. Temporary files a crash
// left are removed when the stream opens (newStream).
func (lx *Stream) compressLoop() {
	select {
	case <-lx.scrubFresh:
	case <-lx.closingCtx.Done():
		return
	}
	// settled holds the files compressed, gone, or that cannot be
	// compressed: not tried again, until a catch-up replaces the files or
	// the check of the files (scrub.go) repairs one, with a plain copy.
	settled := map[string]bool{}
	var catchUps, repairs uint64
	for {
		files, n := lx.fsm.toCompress()
		if r := lx.stats.repaired.Load(); n != catchUps || r != repairs {
			clear(settled)
			catchUps, repairs = n, r
		}
		lx.compressFiles(files, settled)
		select {
		case <-lx.compressWake:
		case <-lx.closingCtx.Done():
			return
		}
	}
}

// errCatchingUp stops a compression when a catch-up begins.
var errCatchingUp = errors.New("logx: a catch-up began")

// compressFiles compresses those of files that are still plain, and not
// settled.
func (lx *Stream) compressFiles(files []store.File, settled map[string]bool) {
	stop := func() error {
		if err := lx.closingCtx.Err(); err != nil {
			return err
		}
		if lx.fsm.catchingUp() {
			return errCatchingUp
		}
		return nil
	}
	mu := lx.fsm.compressLock()
	for _, fs := range files {
		if settled[fs.Name] {
			continue
		}
		mu.Lock()
		if stop() != nil {
			mu.Unlock()
			return // the end of a catch-up wakes the loop again
		}
		saved, err := store.CompressFile(lx.cfg.Dir, fs, lx.fsm.filesLock(), stop)
		mu.Unlock()
		switch {
		case err == nil:
			settled[fs.Name] = true
			if saved != 0 {
				lx.stats.compressed.Add(1)
				lx.stats.compressSaved.Add(saved)
			}
		case stop() != nil:
			return
		case errors.Is(err, store.ErrLineTooLong), errors.Is(err, ErrCorrupt):
			// Stays plain; scrub repairs a damaged file at the next
			// start, and this node compresses it then.
			settled[fs.Name] = true
			lx.stats.compressFailed.Add(1)
			lx.logf("logx: not compressing %s: %v", fs.Name, err)
		case errors.Is(err, syscall.ENOSPC):
			lx.stats.compressFailed.Add(1)
			lx.logf("logx: compressing %s: %v; trying again at the next rotation", fs.Name, err)
			return
		default: // this file (unreadable?): the others go on; it is tried again at the next rotation
			lx.stats.compressFailed.Add(1)
			lx.logf("logx: compressing %s: %v", fs.Name, err)
		}
	}
	// Forget files that have left the log.
	if len(settled) > len(files) {
		listed := make(map[string]bool, len(files))
		for _, fs := range files {
			listed[fs.Name] = true
		}
		for name := range settled {
			if !listed[name] {
				delete(settled, name)
			}
		}
	}
}

// wakeCompressor asks the compressor to look at the newest checkpoint's
// rotated files (fsm.onRotated); it never blocks.
func (lx *Stream) wakeCompressor() {
	select {
	case lx.compressWake <- struct{}{}:
	default: // a wake-up is pending
	}
}
