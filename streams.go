package logx

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// StreamConfig declares a stream of the node (Config.Streams): a log of its
// own, with its own Raft group, files, retention, queue and level, beside
// the default stream. Every node of the cluster must declare the same
// streams with the same file settings (File, MaxSize, RotateEvery and
// Format): a node whose settings differ from the ones the stream's log
// recorded first is refused, as for the default stream. MaxFiles and
// MaxAge are the stream's log's once recorded, which SetRetention changes,
// whatever a Config says.
//
// A zero field takes logx's default (DefaultConfig), not the default
// stream's value, except File, which defaults to Name + ".log".
type StreamConfig struct {
	// Name names the stream: 1 to 64 bytes of lower-case letters, digits,
	// '-' and '_', starting with a letter or a digit. DefaultStream is
	// taken. The stream's files are in Dir/streams/<Name>.
	Name string `json:"name" yaml:"name"`

	File         string        `json:"file" yaml:"file"`
	MaxSize      int64         `json:"max_size" yaml:"max_size"`
	RotateEvery  time.Duration `json:"rotate_every" yaml:"rotate_every"`
	MaxFiles     int           `json:"max_files" yaml:"max_files"`
	MaxAge       time.Duration `json:"max_age" yaml:"max_age"`
	Format       Format        `json:"format" yaml:"format"`
	Level        slog.Leveler  `json:"-" yaml:"-"`
	QueueSize    int           `json:"queue_size" yaml:"queue_size"`
	DropWhenFull bool          `json:"drop_when_full" yaml:"drop_when_full"`
	MaxEntrySize int           `json:"max_entry_size" yaml:"max_entry_size"`
}

// streamsDir is the directory under Dir that holds one directory per
// stream other than the default one.
const streamsDir = "streams"

// checkStreamName reports whether name can name a stream.
// validStreamName reports whether checkStreamName accepts name.
func validStreamName(name string) bool { return checkStreamName(name) == nil }

func checkStreamName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%q must be 1 to 64 bytes long", name)
	}
	for i, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '-' || c == '_')) {
			return fmt.Errorf("%q may hold only lower-case letters, digits, '-' and '_', and start with a letter or a digit", name)
		}
	}
	return nil
}

// streamConfig is the Config of the stream sc on the node whose Config is
// c: the node's settings (address, peers, TLS, timeouts, batching, hooks)
// with sc's file and queue settings, in sc's directory.
func (c Config) streamConfig(sc StreamConfig) Config {
	s := c
	s.Streams = nil
	s.Dir = filepath.Join(c.Dir, streamsDir, sc.Name)
	s.File = sc.File
	if s.File == "" {
		s.File = sc.Name + ".log"
	}
	s.MaxSize, s.RotateEvery, s.MaxFiles, s.MaxAge, s.Format = sc.MaxSize, sc.RotateEvery, sc.MaxFiles, sc.MaxAge, sc.Format
	s.Level, s.QueueSize, s.DropWhenFull, s.MaxEntrySize = sc.Level, sc.QueueSize, sc.DropWhenFull, sc.MaxEntrySize
	return s
}

// validateStreams checks c.Streams: valid, distinct names, and settings
// that Validate accepts, reported as Streams[i].Field.
func (c Config) validateStreams() error {
	seen := map[string]bool{}
	for i, sc := range c.Streams {
		field := fmt.Sprintf("Streams[%d]", i)
		if err := checkStreamName(sc.Name); err != nil {
			return &ConfigError{Field: field + ".Name", Err: err}
		}
		if sc.Name == DefaultStream {
			return &ConfigError{Field: field + ".Name", Err: fmt.Errorf("%q is the default stream's name: its settings are Config's own fields", sc.Name)}
		}
		if seen[sc.Name] {
			return &ConfigError{Field: field + ".Name", Err: fmt.Errorf("%q is declared twice", sc.Name)}
		}
		seen[sc.Name] = true
		// A stream's level goes to the catalog, and every node that does
		// not declare the stream logs by it: above ERROR it would silence
		// errors there (as a cluster level may not, clusterlevel.go).
		if sc.Level != nil && sc.Level.Level() > LevelError && !c.logged {
			return &ConfigError{Field: field + ".Level", Err: fmt.Errorf("%v is above ERROR: the nodes that do not declare the stream would log no error of it", sc.Level.Level())}
		}
		if err := c.streamConfig(sc).validate(); err != nil {
			if ce, ok := err.(*ConfigError); ok {
				return &ConfigError{Field: field + "." + ce.Field, Err: ce.Err}
			}
			return err
		}
	}
	return nil
}

// StreamDir returns the directory of stream name in a node's Dir: Dir
// itself for DefaultStream, Dir/streams/<name> for the others.
func StreamDir(dir, name string) string {
	if name == DefaultStream {
		return dir
	}
	return filepath.Join(dir, streamsDir, name)
}

// StreamNames returns the streams whose directories are in a node's Dir:
// DefaultStream first, then the others by name (deleted streams' kept
// directories excepted).
func StreamNames(dir string) ([]string, error) {
	names := []string{DefaultStream}
	ents, err := os.ReadDir(filepath.Join(dir, streamsDir))
	if errors.Is(err, os.ErrNotExist) {
		return names, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.IsDir() && checkStreamName(e.Name()) == nil && e.Name() != DefaultStream {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// streamSegmentSize is the raft-wal segment size of the streams other than
// the default one. raft-wal allocates a segment's whole size on disk when it
// creates it, so with its default (64 MiB, which the default stream keeps)
// 64 idle streams would take 4 GiB of every node's disk; 8 MiB holds several
// of the largest batches (MaxBatchBytes, 1 MiB by default) and makes that
// 512 MiB. Raft drops whole segments when it compacts its log.
const streamSegmentSize = 8 << 20

// logCacheSize is how many recent Raft entries each node keeps in memory,
// so that replication to followers, and a follower's apply, read them
// without touching the WAL. An entry is a batch of up to MaxBatchBytes
// (1 MiB by default), so this bounds the cache near 16 MiB; a follower
// that falls further behind reads from the WAL. Under full async load a
// round holds one batch per node and a follower applies one round behind
// the leader, so 16 is several rounds; 32 held twice the memory (about
// 200 KB a compressed batch, and Go's collector lets the heap grow to
// twice what is live) for no speed: 63 to 68 MB of peak RSS per node
// against 53 to 59 (docs/benchmarks.md, "Issue 11, ninth round").
const logCacheSize = 16
