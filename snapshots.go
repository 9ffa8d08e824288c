package logx

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/raft"
)

// checkedSnapshots is Raft's snapshot store with one more check: a
// snapshot whose manifest this node would refuse (readManifest) is not
// kept. hashicorp/raft stores a snapshot a leader sends (InstallSnapshot)
// before Restore sees it, and keeps it when Restore fails; it also deletes
// the older snapshots past the two it retains as it stores one. A manifest
// no Restore accepts would then be the newest snapshot: at the next start
// Raft tries it first, and New fails ("failed to load any existing
// snapshots") once the good ones are gone. The check runs as the snapshot
// is finalized, so such a snapshot is cancelled instead, and nothing older
// is deleted for it.
type checkedSnapshots struct {
	*raft.FileSnapshotStore
	file string // the active file's name in this node's Config
}

func (s checkedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, c raft.Configuration,
	ci uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, c, ci, trans)
	if err != nil {
		return nil, err
	}
	return &checkedSink{SnapshotSink: sink, file: s.file}, nil
}

// checkedSink keeps a copy of what it is written (a manifest: small) to
// check it on Close.
type checkedSink struct {
	raft.SnapshotSink
	file string
	buf  []byte
	over bool

	closed bool
	err    error // Close's
}

func (k *checkedSink) Write(p []byte) (int, error) {
	if len(k.buf)+len(p) <= maxManifest {
		k.buf = append(k.buf, p...)
	} else {
		k.over = true
	}
	return k.SnapshotSink.Write(p)
}

// Close finalizes the snapshot if its manifest names its files after this
// node's Config or after the cluster's settings it carries (Restore then
// decides which applies); otherwise it cancels it. Like the file sink's, it
// may be called again (Persist closes, and so does Raft).
func (k *checkedSink) Close() error {
	if k.closed {
		return k.err
	}
	k.closed = true
	err := fmt.Errorf("logx: snapshot over %d bytes", maxManifest)
	if !k.over {
		_, err = readManifest(bytes.NewReader(k.buf), func(*manifest) string { return k.file })
		if err != nil {
			_, err = readManifest(bytes.NewReader(k.buf), func(m *manifest) string {
				if m.Settings != nil {
					return m.Settings.File
				}
				return k.file
			})
		}
	}
	k.buf = nil
	if err != nil {
		_ = k.SnapshotSink.Cancel()
		k.err = fmt.Errorf("%w (not stored)", err)
		return k.err
	}
	k.err = k.SnapshotSink.Close()
	return k.err
}
