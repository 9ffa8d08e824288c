package logx

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// The cluster's settings. What a node writes depends on File, MaxSize,
// RotateEvery, MaxFiles, MaxAge, Format and DedupWindow, so they must be
// the same on every node. The first leader records its settings in the log
// (a settings command) and from then on they are the cluster's:
//
//   - a node whose Config sets one of them to another value refuses: New
//     fails with a *ConfigError naming the field when its checkpoint knows
//     the cluster's settings, a node that learns them from the log stops
//     applying with that error (Stats.WriteError, the write-error alarm),
//     and AddNode refuses a node that disagrees;
//   - MaxFiles and MaxAge excepted: the cluster's hold over a Config's,
//     which the node logs (New, useSettings), and SetRetention changes
//     them (setretention.go);
//   - a field left zero takes the cluster's value (Format excepted: its
//     zero value is FormatText, which a node renders its own entries in, so
//     a node of a JSON cluster must say FormatJSON).
//
// Settings command wire form: byte cmdSettings, then the JSON of
// clusterSettings.
const cmdSettings byte = 17

// maxSettings bounds a settings command.
const maxSettings = 4 << 10

// clusterSettings are the settings every node of a cluster must share.
type clusterSettings struct {
	File        string        `json:"file"`
	MaxSize     int64         `json:"max_size"`
	RotateEvery time.Duration `json:"rotate_every"`
	MaxFiles    int           `json:"max_files"`
	MaxAge      time.Duration `json:"max_age"`
	Format      Format        `json:"format"`
	DedupWindow time.Duration `json:"dedup_window"`
	// RetentionSet is set once a retention command (SetRetention) set
	// MaxFiles and MaxAge: from then on they win over a node's Config.
	RetentionSet bool `json:"retention_set,omitempty"`
}

// settingsOf returns c's settings, defaults filled in.
func settingsOf(c Config) clusterSettings {
	c = c.withDefaults()
	return clusterSettings{File: c.File, MaxSize: c.MaxSize, RotateEvery: c.RotateEvery, MaxFiles: c.MaxFiles,
		MaxAge: c.MaxAge, Format: c.Format, DedupWindow: c.DedupWindow}
}

// wantedSettings returns the settings c sets explicitly: its non-zero
// fields, and Format always.
func wantedSettings(c Config) clusterSettings {
	return clusterSettings{File: c.File, MaxSize: c.MaxSize, RotateEvery: c.RotateEvery, MaxFiles: c.MaxFiles,
		MaxAge: c.MaxAge, Format: c.Format, DedupWindow: c.DedupWindow}
}

// conflict returns a *ConfigError naming the first field that want sets
// to a value other than the cluster's s.
func (s clusterSettings) conflict(want clusterSettings) error {
	bad := func(field string, cluster, node any) error {
		return &ConfigError{Field: field, Err: fmt.Errorf("the cluster uses %v, this node's Config says %v (every node must use the same; leave it zero to take the cluster's)", cluster, node)}
	}
	switch {
	case want.File != "" && want.File != s.File:
		return bad("File", fmt.Sprintf("%q", s.File), fmt.Sprintf("%q", want.File))
	case want.MaxSize != 0 && want.MaxSize != s.MaxSize:
		return bad("MaxSize", s.MaxSize, want.MaxSize)
	case want.RotateEvery != 0 && want.RotateEvery != s.RotateEvery:
		return bad("RotateEvery", s.RotateEvery, want.RotateEvery)
	case want.MaxFiles != 0 && want.MaxFiles != s.MaxFiles && !s.RetentionSet:
		return bad("MaxFiles", s.MaxFiles, want.MaxFiles)
	case want.MaxAge != 0 && want.MaxAge != s.MaxAge && !s.RetentionSet:
		return bad("MaxAge", s.MaxAge, want.MaxAge)
	case want.Format != s.Format:
		return bad("Format", s.Format, want.Format)
	case want.DedupWindow != 0 && want.DedupWindow != s.DedupWindow:
		return bad("DedupWindow", s.DedupWindow, want.DedupWindow)
	}
	return nil
}

// adopt returns c with its zero settings fields set to s's, and its
// retention set to s's: the log's holds over the Config's, which applying
// settings from the log goes by too (useSettings), so that every node
// retires the same files; a retention command changes it.
func (s clusterSettings) adopt(c Config) Config {
	c.MaxFiles, c.MaxAge = s.MaxFiles, s.MaxAge
	if c.File == "" {
		c.File = s.File
	}
	if c.MaxSize == 0 {
		c.MaxSize = s.MaxSize
	}
	if c.RotateEvery == 0 {
		c.RotateEvery = s.RotateEvery
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = s.DedupWindow
	}
	return c
}

func (s clusterSettings) policy() filePolicy {
	return filePolicy{rotation: store.Rotation{MaxSize: s.MaxSize, Every: s.RotateEvery}, maxFiles: s.MaxFiles, maxAge: s.MaxAge, dedupWindow: s.DedupWindow}
}

// check validates settings decoded from the log or a snapshot as a Config
// holding them would be. ForwardTimeout is each node's own: DedupWindow is
// checked against the longest any node may have with it (half of it), not
// the default's 10 s, and against minDedupWindow. (A cluster whose window
// was under 20 s had its settings refused by every node: they were never
// recorded, and its leader proposed them again before each of its
// batches.)
func (s clusterSettings) check() error {
	c := Config{NodeID: "x", Addr: "x:1", Peers: []string{"x:1"}, Dir: "x", ForwardTimeout: s.DedupWindow / 2, logged: true}
	c = s.adopt(c)
	c.Format = s.Format
	c.MaxAge = loggedMaxAge(c.MaxAge)
	if s.File == "" || s.MaxSize <= 0 || s.DedupWindow <= 0 {
		return errors.New("logx: settings: File, MaxSize and DedupWindow are required")
	}
	return c.Validate()
}

func appendSettings(dst []byte, s clusterSettings) []byte {
	b, _ := json.Marshal(s) // cannot fail: plain fields
	return append(append(dst, cmdSettings), b...)
}

func readSettings(b []byte) (clusterSettings, error) {
	var s clusterSettings
	if len(b) < 1 || b[0] != cmdSettings || len(b) > maxSettings {
		return s, errors.New("logx: malformed settings")
	}
	if err := json.Unmarshal(b[1:], &s); err != nil {
		return s, fmt.Errorf("logx: malformed settings: %w", err)
	}
	if err := s.check(); err != nil {
		return s, fmt.Errorf("logx: settings refused: %w", err)
	}
	return s, nil
}

// applySettings records the cluster's settings from the log: the first
// ones committed; later ones are ignored.
func (f *fsm) applySettings(data []byte) applyResult {
	if f.st.Settings != nil {
		return applyResult{}
	}
	s, err := readSettings(data)
	if err != nil {
		return applyResult{err: err}
	}
	if err := f.useSettings(s); err != nil {
		f.pendingSettings.Store(&s)
		f.stopWith(err)
		return applyResult{err: err}
	}
	f.st.Settings = &s
	return applyResult{}
}

// withoutRetention returns s with MaxFiles and MaxAge zero: what a node's
// Config must agree with once the cluster's settings are known (at start,
// from the log, from a snapshot, in AddNode). Retention is not compared: a
// retention command later in the log may set it to what the Config says,
// and every node goes by the log's either way.
func (s clusterSettings) withoutRetention() clusterSettings {
	s.MaxFiles, s.MaxAge = 0, 0
	return s
}

// retentionOverride says that s's retention holds over want's, the
// retention a node's Config sets, or "" if want sets none other.
func (s clusterSettings) retentionOverride(want clusterSettings) string {
	if want.MaxFiles != 0 && want.MaxFiles != s.MaxFiles || want.MaxAge != 0 && want.MaxAge != s.MaxAge {
		return fmt.Sprintf("logx: the cluster's retention (MaxFiles %d, MaxAge %v) holds over this node's Config's (MaxFiles %d, MaxAge %v): SetRetention changes it",
			s.MaxFiles, s.MaxAge, want.MaxFiles, want.MaxAge)
	}
	return ""
}

// useSettings makes this node write by the cluster's settings s, if its
// Config agrees (its zero fields take s's values). The active file's name
// can change only while nothing has been written.
func (f *fsm) useSettings(s clusterSettings) error {
	if err := s.conflict(f.want.withoutRetention()); err != nil {
		return err
	}
	if msg := s.retentionOverride(f.want); msg != "" {
		f.logf("%s", msg)
	}
	if s.File != f.file {
		if f.st.Seq > 0 || f.st.ActiveFirst > 1 {
			return &ConfigError{Field: "File", Err: fmt.Errorf("this node's files are named after %q, the cluster's after %q", f.file, s.File)}
		}
		if f.seg != nil {
			if err := f.seg.Close(); err != nil {
				return err
			}
			if err := os.Remove(filepath.Join(f.dir, f.file)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			seg, err := f.openFiles(f.st.State, s.File, s.policy().rotation, true)
			if err != nil {
				return err // the caller stops this node's apply
			}
			f.useSegment(seg)
		}
		f.file = s.File
	}
	f.policy = s.policy()
	if f.seg != nil {
		f.seg.SetRotation(f.policy.rotation)
	}
	f.format = s.Format
	f.settings.Store(&s)
	return nil
}

// logFile is the active file's name: the cluster's, once known (a node
// whose Config leaves File zero takes it when it learns the settings).
func (lx *Stream) logFile() string {
	if s := lx.fsm.clusterSettings(); s != nil {
		return s.File
	}
	return lx.cfg.File
}

// dedupWindow is the cluster's DedupWindow, once known (from the log, or
// from the snapshot a catch-up under way copies to), else this node's
// Config's if it sets one (it must be the cluster's: settings.conflict).
// A node whose Config leaves it zero takes the cluster's, which it does
// not know until it learns the settings: until then it is the shortest
// window a cluster may have, so that no try of this node's outlasts the
// cluster's memory of its producer. Its default of 10 minutes let a batch
// be tried again for 5 minutes in a cluster that forgets a producer after
// one.
func (lx *Stream) dedupWindow() time.Duration {
	if s := lx.fsm.clusterSettings(); s != nil {
		return s.DedupWindow
	}
	if s := lx.fsm.pendingSettings.Load(); s != nil {
		return s.DedupWindow
	}
	if lx.fsm.want.DedupWindow == 0 {
		return minDedupWindow
	}
	return lx.cfg.DedupWindow
}

// stopWith stops this node's apply for good with err (a settings
// conflict): every later batch fails with it, and it shows in Stats.
func (f *fsm) stopWith(err error) {
	f.failed = err
	f.setErr(err)
	if f.onWriteError != nil {
		f.onWriteError(err) // a leader hands over: it cannot apply
	}
	f.logf("%v; this node stops applying: fix its Config and restart it", err)
}
