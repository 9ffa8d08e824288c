package logx

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
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
//
// It also warns, at most once an hour, when a manifest passes a quarter
// of maxManifest: past maxManifest (near 400,000 files) no snapshot is
// stored, Raft's log is no longer compacted and its directory grows until
// the disk is full, and at a quarter there are still months to set
// retention (docs/guarantees.md).
type checkedSnapshots struct {
	*raft.FileSnapshotStore
	file   string // the active file's name in this node's Config
	logf   func(format string, args ...any)
	warnAt int           // the manifest size that warns (0: maxManifest/4)
	warned *atomic.Int64 // when it last warned, Unix nanoseconds
}

func (s checkedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, c raft.Configuration,
	ci uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, c, ci, trans)
	if err != nil {
		return nil, err
	}
	return &checkedSink{SnapshotSink: sink, file: s.file, store: s}, nil
}

// reapSnapshotTemps removes the snapshots a crash left half written under
// dir (hashicorp/raft's FileSnapshotStore writes each in a directory named
// "<id>.tmp" and renames it when done). Raft skips them but never removes
// them, and warns of each at every listing (each snapshot, each catch-up,
// the Raft log's guard), while each holds up to a manifest's worth of
// disk. Called at start, before Raft, so none is being written.
func reapSnapshotTemps(dir string) error {
	snaps := filepath.Join(dir, "snapshots")
	ents, err := os.ReadDir(snaps)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.RemoveAll(filepath.Join(snaps, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// newestStored is the index of the newest snapshot s holds; 0 if it holds
// none or cannot list them (then the retired files all stay: fsm.Snapshot).
func newestStored(s raft.SnapshotStore) uint64 {
	metas, err := s.List()
	if err != nil || len(metas) == 0 {
		return 0
	}
	return metas[0].Index
}

// newestManifest reads the manifest of the newest snapshot s holds (nil:
// none), as Restore would, naming files by file.
func newestManifest(s raft.SnapshotStore, file func(*manifest) string) (*manifest, error) {
	metas, err := s.List()
	if err != nil || len(metas) == 0 {
		return nil, err
	}
	_, rc, err := s.Open(metas[0].ID)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readManifest(rc, file)
}

// warnSize warns of a manifest of size bytes listing files files past the
// warning size, at most once an hour.
func (s checkedSnapshots) warnSize(size, files int) {
	if size <= cmp.Or(s.warnAt, maxManifest/4) || s.logf == nil || s.warned == nil {
		return
	}
	if _, ok := onceEvery(s.warned, time.Hour); !ok { // monotonic: a clock stepped back does not silence it
		return
	}
	s.logf("logx: WARNING: this snapshot lists %d files in %d MB; past %d MB no snapshot can be stored, Raft's log is no longer compacted and fills the disk: set MaxFiles or MaxAge (SetRetention) to keep fewer files",
		files, size>>20, maxManifest>>20)
}

// checkedSink keeps a copy of what it is written (a manifest: small) to
// check it on Close.
type checkedSink struct {
	raft.SnapshotSink
	file  string
	store checkedSnapshots
	buf   []byte
	over  bool

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
	var m *manifest
	if !k.over {
		m, err = readManifest(bytes.NewReader(k.buf), func(*manifest) string { return k.file })
		if err != nil {
			m, err = readManifest(bytes.NewReader(k.buf), func(m *manifest) string {
				if m.Settings != nil {
					return m.Settings.File
				}
				return k.file
			})
		}
	}
	if err == nil {
		k.store.warnSize(len(k.buf), len(m.Files))
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

// manifest is the snapshot: small, it describes the files rather than
// holding them: each file's name, first sequence number, size and checksum
// (a sha256 or a BLAKE3, store.File.Sum) as of Index. The active file is last.
type manifest struct {
	Index      uint64                    `json:"index"`
	Seq        uint64                    `json:"seq"`
	Producers  map[uint64]*producerState `json:"producers"`
	PrunedAt   int64                     `json:"pruned_at,omitempty"`
	Clock      int64                     `json:"clock,omitempty"` // the log clock (clock.go)
	Clocks     map[string]int64          `json:"clocks,omitempty"`
	Voters     []string                  `json:"voters,omitempty"`
	Owners     map[string]string         `json:"clock_owners,omitempty"`
	ReportedAt map[string]int64          `json:"reported_at,omitempty"` // rules 1 (clock.go)
	Rules      int                       `json:"rules,omitempty"`       // the apply rules (rules.go)
	Settings   *clusterSettings          `json:"settings,omitempty"`
	Catalog    map[string]*catalogEntry  `json:"catalog,omitempty"` // the default stream's (catalog.go)
	Level      *slog.Level               `json:"level,omitempty"`   // the cluster level (clusterlevel.go)
	// TruncatedBefore is the truncation point (truncate.go).
	TruncatedBefore uint64       `json:"truncated_before,omitempty"`
	Files           []store.File `json:"files"`
}

// readManifest decodes a snapshot and checks that it describes files this
// node can assemble: at least one, numbered upwards from 1, of sizes that
// are not negative, each with one valid checksum, and each named exactly as its
// numbers say (file is the active file's name): names are used as paths,
// so a name like "../x" must never pass.
func readManifest(r io.Reader, file func(*manifest) string) (*manifest, error) {
	var m manifest
	if err := json.NewDecoder(io.LimitReader(r, maxManifest)).Decode(&m); err != nil {
		return nil, fmt.Errorf("logx: reading snapshot: %w", err)
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("logx: snapshot at index %d lists no files", m.Index)
	}
	if err := checkRules(m.Rules); err != nil {
		return nil, fmt.Errorf("logx: snapshot at index %d: %w", m.Index, err)
	}
	if err := checkReplicated(m.Producers, m.Voters, m.Clocks, m.Owners, m.ReportedAt, m.Clock, m.Rules); err != nil {
		return nil, fmt.Errorf("logx: snapshot at index %d: %w", m.Index, err)
	}
	if m.Settings != nil {
		if err := m.Settings.check(); err != nil {
			return nil, fmt.Errorf("logx: snapshot: %w", err)
		}
	}
	if err := checkCatalog(m.Catalog); err != nil {
		return nil, fmt.Errorf("logx: snapshot: %w", err)
	}
	names := store.NewNames(file(&m))
	for i, mf := range m.Files {
		want := names.Active()
		if i < len(m.Files)-1 {
			want = names.Segment(mf.First)
		}
		switch {
		case mf.First == 0 || i > 0 && mf.First <= m.Files[i-1].First:
			return nil, fmt.Errorf("logx: snapshot: file %d starts at sequence %d, out of order", i, mf.First)
		case mf.Size < 0:
			return nil, fmt.Errorf("logx: snapshot: file %d has size %d", i, mf.Size)
		case mf.CheckSum() != nil:
			return nil, fmt.Errorf("logx: snapshot: file %d has %v", i, mf.CheckSum())
		case mf.Name != want:
			return nil, fmt.Errorf("logx: snapshot: file %d is named %q where its numbers give %q (is File the same on every node?)", i, mf.Name, want)
		}
	}
	if m.Files[len(m.Files)-1].First > m.Seq+1 {
		return nil, fmt.Errorf("logx: snapshot: its last file starts after its sequence number %d", m.Seq)
	}
	return &m, nil
}

// manifestFile is the active file's name a snapshot's files must follow:
// the cluster's (from the snapshot's settings) unless this node's Config
// names it, or this node's own.
func (f *fsm) manifestFile(m *manifest) string {
	if m.Settings != nil && f.want.File == "" && f.st.Seq == 0 {
		return m.Settings.File
	}
	return f.file
}

// maxVoters bounds the voters and clock reports a snapshot may list.
const maxVoters = 1024

// maxManifest bounds the snapshot a node decodes: a manifest lists files
// and producers, a few hundred bytes each.
const maxManifest = 64 << 20

// knowsSums refuses a manifest naming a checksum this node does not know
// (fsmConfig.onlySHA256).
func (f *fsm) knowsSums(m *manifest) error {
	if f.onlySHA256 {
		for i, mf := range m.Files {
			if mf.SHA256 == "" {
				return fmt.Errorf("logx: snapshot: file %d has no valid sha256", i)
			}
		}
	}
	return nil
}

// finishTries bounds the attempts of finishCatchUp.
const finishTries = 5

// finishCatchUp finishes a catch-up that an install of the leader's
// snapshot left unfinished (every peer unreachable), when Raft goes on
// with entries instead of sending the snapshot again: a later leader
// whose log still holds the entries after this node's sends those. The
// snapshot the install stored is the catch-up's target: its files are
// copied, and Raft's entries up to its index are then skipped as
// replayed. Apply waits meanwhile, held up as for a write error (a leader
// hands over), for at most finishTries attempts 1, 2, 4 and 8 s apart:
// apply waiting stops Raft's loop once its queue to apply is full, and a
// snapshot that cannot be copied (its files gone from every peer) must
// not keep the node from the next snapshot for good. After those the
// node stops applying until it is restarted, as it did before for any
// such catch-up; the restart finishes it from the newest stored
// snapshot. A write of fetched bytes that failed on this node (a full
// disk: localWriteError) is not counted: it is tried again, up to a
// minute apart, for as long as it fails, apply held up meanwhile. It
// returns an error only when the node closes; with no
// stored snapshot, or one that does not parse, it does nothing (the
// caller's error stands).
func (f *fsm) finishCatchUp() error {
	if f.storedManifest == nil {
		return nil
	}
	m, err := f.storedManifest()
	if err == nil && m != nil {
		err = f.knowsSums(m)
	}
	if err != nil || m == nil || m.Index <= f.st.Index {
		if err != nil {
			f.logf("logx: reading the stored snapshot to finish the catch-up: %v", err)
		}
		return nil
	}
	f.retrying.Store(true) // held up (applyBlocked)
	defer f.retrying.Store(false)
	defer f.tellBlocked(f.stopContext())()
	defer f.endCatchUp()
	for attempt, pause := 1, cmp.Or(f.retryPause, time.Second); ; attempt, pause = attempt+1, min(2*pause, time.Minute) {
		err := f.catchUp(f.stopContext(), m)
		f.setCatchUpErr(err)
		if err == nil || f.failed != nil { // done, or stopped by a settings conflict
			return nil
		}
		if f.stopContext().Err() != nil {
			return fmt.Errorf("%w while catching up: %v", ErrClosed, err)
		}
		if isLocalWrite(err) {
			attempt-- // this node's disk (full, say): tried again, never given up on
		}
		if attempt == finishTries {
			f.failed = fmt.Errorf("%w: the files are incomplete: the catch-up to Raft index %d from the snapshot Raft stored failed %d times (%v); restart the node to finish it (a restart resumes it from the newest stored snapshot)",
				ErrCorrupt, m.Index, attempt, err)
			f.setErr(f.failed)
			f.logf("logx: %v", f.failed)
			return nil
		}
		f.logf("logx: finishing the catch-up to Raft index %d from the stored snapshot (Raft sends entries, not the snapshot): %v; trying again in %v", m.Index, err, pause)
		if f.stopped(pause) {
			return fmt.Errorf("%w while catching up: %v", ErrClosed, err)
		}
	}
}
