package logx

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Rotated files never change once written, and the checkpoint records each
// one's size and sha256. At start a node checks them in the background; a
// file whose bytes no longer match (a bad disk, a stray write) is copied
// again from a peer, which holds the same file, verified against the same
// checksum, and put in place of the damaged one.

// scrub checks the rotated files listed in files and repairs the damaged
// ones; it stops early when the node closes.
func (lx *Logx) scrub(files []fileState) {
	defer close(lx.scrubDone)
	for _, fs := range files {
		select {
		case <-lx.closing:
			return
		default:
		}
		path := filepath.Join(lx.cfg.Dir, fs.Name)
		sum, size, err := fileSHA256(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // retired by retention meanwhile
		}
		if err == nil && sum == fs.SHA256 && size == fs.Size {
			continue
		}
		if err == nil {
			err = fmt.Errorf("%d bytes with sha256 %s, the checkpoint says %d bytes with %s", size, sum, fs.Size, fs.SHA256)
		}
		lx.logf("logx: %s is damaged (%v); copying it again from a peer", fs.Name, err)
		lx.stats.damaged.Add(1)
		if err := lx.repair(fs); err != nil {
			lx.logf("logx: repairing %s: %v", fs.Name, err)
			continue
		}
		lx.stats.repaired.Add(1)
		lx.logf("logx: %s repaired from a peer", fs.Name)
	}
}

// repair copies the rotated file fs from a peer into a temporary file,
// checks it against fs's checksum and renames it over the damaged one.
func (lx *Logx) repair(fs fileState) error {
	dir := lx.cfg.Dir
	tmp := filepath.Join(dir, ".repair-"+fs.Name)
	defer os.Remove(tmp) // renamed into place on success
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		select {
		case <-lx.closing:
			return ErrClosed
		default:
		}
		if attempt > 0 {
			select {
			case <-lx.closing:
				return ErrClosed
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		h := sha256.New()
		err = lx.fetch(lx.closingCtx, fs.First, 0, fs.Size, io.MultiWriter(f, h), attempt)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && hex.EncodeToString(h.Sum(nil)) != fs.SHA256 {
			err = errors.New("the copy does not match the checksum either")
		}
		if err == nil {
			if _, serr := os.Stat(filepath.Join(dir, fs.Name)); serr != nil {
				os.Remove(tmp)
				return nil // retired meanwhile: nothing to put back
			}
			if err = os.Rename(tmp, filepath.Join(dir, fs.Name)); err == nil {
				return syncDir(dir)
			}
		}
		lastErr = err
	}
	return lastErr
}

// fileSHA256 returns the hex sha256 and size of the file at path.
func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
