package logx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logx-dev/logx/internal/store"
)

// Config configures one node. Every node of a cluster must use the same
// Peers; File, MaxSize, RotateEvery, MaxFiles, MaxAge, Format and
// DedupWindow are the cluster's settings, recorded in the log by the first
// leader: a node that sets one of them to another value refuses to start
// (or stops applying, or cannot be added) with a *ConfigError naming the
// field, and a node that leaves one zero takes the cluster's (Format
// excepted: its zero value is FormatText). Each node has its own NodeID,
// Addr and Dir. The zero value of every optional field means its default.
type Config struct {
	// NodeID names this node in the lines it originates (node=...) and in
	// its metrics. Required: valid UTF-8 of at most 128 bytes, no control
	// character.
	NodeID string `json:"node_id" yaml:"node_id"`

	// Addr is the host:port this node's peers dial, and the node's name
	// in the cluster (its Raft server ID), so it must be stable across
	// restarts. The host may be an IP address or a DNS name (such as a
	// StatefulSet pod's logx-1.logx); a name that does not resolve yet is
	// dialled again with backoff, like a peer that is down. Raft, forwarded
	// writes, catch-up and control share it. Required.
	Addr string `json:"addr" yaml:"addr"`

	// ListenAddr is the host:port this node binds, such as ":20001" to
	// listen on every interface while peers reach it at Addr. Defaults to
	// Addr. With a DNS name in Addr, set it: the name may not resolve to
	// this machine (or at all) when the node starts.
	ListenAddr string `json:"listen_addr" yaml:"listen_addr"`

	// Peers lists the Addr of every node of the cluster, this one included.
	// All nodes must start with the same list; it is used to bootstrap a new
	// cluster (a node whose Raft state is empty asks them first, and does
	// not bootstrap if one answers that a cluster with this node in it has
	// run (committed, applied, or written entries past the bootstrap's),
	// nor while one with Raft state answers that it is starting), and as
	// the nodes to ask for file ranges during a catch-up.
	// With Join it lists members of the running cluster to contact, and may
	// leave out this node. Required.
	Peers []string `json:"peers" yaml:"peers"`

	// Join starts a node that joins a running cluster instead of
	// bootstrapping one: it waits, without voting, until a member adds it
	// with AddNode (which may be called on this node), catches up, and then
	// becomes a voter. Use it for a node added after the cluster first
	// started; a node that has joined once restarts the same with or
	// without it.
	Join bool `json:"join" yaml:"join"`

	// Dir holds this node's Raft state, its checkpoint and its log files.
	// It is created if missing and locked while the Logx is open. Required.
	Dir string `json:"dir" yaml:"dir"`

	// File is the active log file's name inside Dir. Rotated files are named
	// <stem>-<first sequence number, 20 digits><ext>. Defaults to "logx.log".
	// It must be a plain name (no directory, no control character) that
	// cannot collide with the node's own files: not LOCK, state.json, raft
	// or snapshots (in any case), not starting with "." (logx's temporary
	// files: .catchup-, .retired-, .repair-), not ending in ".tmp", not
	// itself of the rotated form <stem>-<20 digits><ext>, and at most 200
	// bytes (the names derived from it are up to 34 bytes longer).
	File string `json:"file" yaml:"file"`

	// MaxSize is the size in bytes the active file may reach before it is
	// rotated: a line that would take it past MaxSize starts a new file.
	// Defaults to 64 MiB.
	MaxSize int64 `json:"max_size" yaml:"max_size"`

	// RotateEvery also rotates by time: a line whose time falls in a later
	// period than the active file's newest line starts a new file. Periods
	// count from the Unix epoch, so time.Hour rotates on the hour and
	// 24*time.Hour at midnight UTC. A line's time here is its entry's time
	// held within a minute of the log clock, the time a majority of the
	// voters' clock reports reached (clock.go): it comes from the log, so
	// every node rotates at the same line, and no single clock, the
	// leader's included, can move rotation by more than that minute. Zero
	// (the default) rotates by size only.
	RotateEvery time.Duration `json:"rotate_every" yaml:"rotate_every"`

	// MaxFiles keeps at most this many rotated files; MaxAge keeps only
	// rotated files whose newest line is younger than MaxAge by the log
	// clock (see RotateEvery), not by any node's own clock. Older files
	// leave the log at the same line on every node, and are deleted from
	// disk once no snapshot Raft could send still lists them. The active
	// file is never removed. Zero (the default) keeps everything. A MaxAge
	// under a minute is refused, as SetRetention refuses it: a line's
	// clock may be a minute from the log clock.
	MaxFiles int           `json:"max_files" yaml:"max_files"`
	MaxAge   time.Duration `json:"max_age" yaml:"max_age"`

	// Compress keeps rotated files compressed: once a checkpoint lists a
	// rotated file (with Compress, a rotation is checkpointed at once),
	// this node replaces it by <name>.zst, zstd in the seekable format, which any
	// zstd tool decodes (zstdcat) and logx reads in place: Reader, Grep,
	// Watch, the CLI, catch-up and repair handle both forms. It applies to
	// every stream of the node, and is this node's choice: the files'
	// plain bytes, sizes and checksums are the same on every node either
	// way, and nodes of the same logx version that all compress hold the
	// same compressed bytes too (docs/guarantees.md). The active file is
	// never compressed. Off by default.
	Compress bool `json:"compress" yaml:"compress"`

	// DedupWindow is how long the cluster remembers a producer (a node's
	// or a Client's batches) after its last batch, to drop repeats of it;
	// measured by the log clock, so every node forgets it at the same
	// point. A producer starts no try of a batch that may have been sent
	// later than half of it after the first try that may have reached a
	// leader started, then gives up with ErrOutcomeUnknown, so that a
	// repeat arrives before it is forgotten (with a margin of minutes at
	// the default; see docs/guarantees.md for a window under about three
	// minutes, which the log clock's lag can defeat). At most 16384
	// producers are remembered; beyond that the ones silent longest are
	// forgotten first. Defaults to 10 minutes; at least 1s and twice
	// ForwardTimeout. A node that leaves it zero takes the cluster's (from
	// the log, or from the snapshot a catch-up copies to), and until it
	// knows it (a new node not yet added; a new stream's first moments,
	// until the settings its leader records are applied) bounds its own
	// tries by the shortest window, 1s.
	DedupWindow time.Duration `json:"dedup_window" yaml:"dedup_window"`

	// Format is the line format of entries this node originates: FormatText
	// (the default) or FormatJSON.
	Format Format `json:"format" yaml:"format"`

	// Level is the minimum level logged. A *slog.LevelVar given here is used
	// as is, so the caller can change it at run time; any other Leveler sets
	// the initial value of the Logx's own LevelVar (see SetLevel).
	// Defaults to slog.LevelInfo.
	Level slog.Leveler `json:"-" yaml:"-"`

	// QueueSize is the capacity, in entries, of the queue between the
	// logging calls and the committer. Defaults to 8192 (two batches of
	// MaxBatchEntries). Memory: the queue holds up to QueueSize entries of
	// up to MaxEntrySize each, and its free list keeps up to
	// QueueSize+MaxBatchEntries+1 spent ones of up to 4 KiB; with 200-byte
	// entries about 5 MB together. docs/design.md ("Memory") gives the rest
	// of a node's memory, docs/benchmarks.md its peak. At most 1,048,576.
	QueueSize int `json:"queue_size" yaml:"queue_size"`

	// DropWhenFull makes Debug/Info/Warn/Error and the slog handler drop an
	// entry, and count it in Stats.Dropped, when the queue is full. By
	// default they block until there is room. Append always blocks (within
	// its context).
	DropWhenFull bool `json:"drop_when_full" yaml:"drop_when_full"`

	// MaxEntrySize is the largest rendered entry, in bytes, without the
	// sequence number and newline; a larger one gets ErrEntryTooLarge.
	// Defaults to 64 KiB, or MaxSize if that is smaller; at least 512
	// bytes (a line's head alone takes about a hundred), so MaxSize too.
	MaxEntrySize int `json:"max_entry_size" yaml:"max_entry_size"`

	// MaxBatchEntries and MaxBatchBytes bound the batch a node sends as one
	// Raft entry. Default to 4096 entries and 1 MiB; at most 1,048,576
	// entries and 64 MiB.
	MaxBatchEntries int `json:"max_batch_entries" yaml:"max_batch_entries"`
	MaxBatchBytes   int `json:"max_batch_bytes" yaml:"max_batch_bytes"`

	// DisableCompression sends batches as they are. By default a batch of
	// more than a few KiB is compressed with S2 before it is forwarded and
	// stored in the Raft log (the benchmark's lines shrink 4.3x), which cuts
	// the bytes every node receives, decodes and fsyncs. The files are the
	// same either way, and nodes with and without it mix freely.
	DisableCompression bool `json:"disable_compression" yaml:"disable_compression"`

	// ElectionTimeout is how long a follower waits without hearing from the
	// leader before it calls an election (Raft's heartbeat and election
	// timeouts). Defaults to 1s; at least 50ms.
	ElectionTimeout time.Duration `json:"election_timeout" yaml:"election_timeout"`

	// ForwardTimeout bounds one try of a forwarded batch: its dial, TLS
	// handshake, sending and answer. A timed-out batch is retried; the
	// leader drops repeats. Defaults to 10s.
	ForwardTimeout time.Duration `json:"forward_timeout" yaml:"forward_timeout"`

	// CloseTimeout bounds how long Close waits for queued entries to commit.
	// Defaults to 10s.
	CloseTimeout time.Duration `json:"close_timeout" yaml:"close_timeout"`

	// CheckpointInterval is how often apply fsyncs the log files and records
	// its position in Dir/state.json. After a crash, entries applied since
	// the last checkpoint are cut from the files and written again from the
	// Raft log. Defaults to 1s.
	CheckpointInterval time.Duration `json:"checkpoint_interval" yaml:"checkpoint_interval"`

	// TrailingLogs is how many Raft entries (each a batch of log entries) are
	// kept after a snapshot, so a node that was down can catch up by replay.
	// Defaults to 65536.
	TrailingLogs uint64 `json:"trailing_logs" yaml:"trailing_logs"`

	// SnapshotThreshold is how many Raft entries accumulate before a
	// snapshot (a small manifest of the files) lets Raft compact its log.
	// Defaults to 8192.
	SnapshotThreshold uint64 `json:"snapshot_threshold" yaml:"snapshot_threshold"`

	// TLS, if set, secures everything on the node's address (Raft,
	// forwarded batches, catch-up, control) with mutual TLS: the node
	// serves with it and dials its peers with it. It must hold the node's
	// certificate (Certificates), the cluster's CA as both RootCAs and
	// ClientCAs, and ClientAuth tls.RequireAndVerifyClientCert; a peer
	// without a certificate from that CA is refused during the handshake,
	// before logx reads a byte from it. ServerName is set per peer from
	// its address when empty, so certificates must name their node's host
	// (an IP SAN for an IP address). All nodes must use TLS or none.
	TLS *tls.Config `json:"-" yaml:"-"`

	// TLSCAFile, TLSCertFile and TLSKeyFile name PEM files that New turns
	// into TLS (see LoadTLS) when TLS is nil: the cluster's CA
	// certificate(s), this node's certificate and its private key. Give
	// all three or none. The node loads them again when they change (and
	// on Logx.ReloadTLS): new connections use them, without a restart
	// (docs/security.md, "Rotating certificates without a restart").
	TLSCAFile   string `json:"tls_ca_file" yaml:"tls_ca_file"`
	TLSCertFile string `json:"tls_cert_file" yaml:"tls_cert_file"`
	TLSKeyFile  string `json:"tls_key_file" yaml:"tls_key_file"`

	// OnAlarm, if set, is called (one call at a time, so it must not block
	// for long) when an alarm of a stream starts and when it clears (Alarm
	// names the stream): no leader known for longer than AlarmNoLeader
	// (default 10s), the applied index more than AlarmLag Raft entries
	// behind the commit index (default 1000), or a write error that stopped
	// the stream. It runs on the stream's monitor, which Close waits for:
	// to close the node from it, call Close on another goroutine.
	OnAlarm       func(Alarm)   `json:"-" yaml:"-"`
	AlarmNoLeader time.Duration `json:"alarm_no_leader" yaml:"alarm_no_leader"`
	AlarmLag      uint64        `json:"alarm_lag" yaml:"alarm_lag"`

	// LogOutput receives Raft's own messages (at WARN and above, less those
	// that are a normal part of a node's life: the first election, vote
	// refusals and log matching after a restart, a leader deposed by a
	// peer's election, a connection closed by a shutdown; see quietRaft in
	// ops.go) and logx's diagnostics; never the
	// replicated log. A normal start writes nothing at WARN or above
	// (TestQuietStart). Defaults to os.Stderr. It is written to on the
	// goroutines doing the work (Raft's included), so it must not block
	// for long, and must not write into this node's own log (a logx
	// handler, or a slog.Logger over one): once the queue is full, a
	// message from the producer or from Raft would wait for room only they
	// can make, and the node would stop committing.
	LogOutput io.Writer `json:"-" yaml:"-"`

	// ContextAttrs, if set, is called with the context of every slog
	// record (Handler), LogAttrs call and Append call at an enabled level,
	// and the attributes it returns are logged with the entry: at the top
	// level, outside any group the handler has open, before the call's own
	// attributes. It is for request-scoped values such as trace ids: the
	// module github.com/logx-dev/logx/logxotel gives one that adds
	// OpenTelemetry's trace_id and span_id. The leveled calls (Info, ...)
	// have no context and do not call it. It must be safe for concurrent
	// use, and quick: it runs on the caller's goroutine.
	ContextAttrs func(context.Context) []slog.Attr `json:"-" yaml:"-"`

	// Sampling, if set, drops entries of a (level, message) pair beyond a
	// rate on the calling node, and logs what it dropped: see Sampling.
	// Every stream samples on its own.
	Sampling *Sampling `json:"sampling" yaml:"sampling"`

	// Streams declares the node's streams beside the default one (see
	// StreamConfig and Logx.Stream). Every node must declare the same.
	Streams []StreamConfig `json:"streams" yaml:"streams"`

	// logged marks settings the log or a checkpoint holds, which an
	// earlier version committed under its own bounds: validate allows
	// them those (maxLoggedFileName, a QueueSize over maxQueue, which the
	// stream that opens with it clamps), so that a node upgraded over such
	// a log still starts and applies as the others do.
	logged bool
}

// DefaultConfig returns a Config with every default filled in and the
// required fields empty.
func DefaultConfig() Config {
	return Config{
		File:               "logx.log",
		MaxSize:            64 << 20,
		Format:             FormatText,
		QueueSize:          8192,
		MaxEntrySize:       64 << 10,
		MaxBatchEntries:    4096,
		MaxBatchBytes:      1 << 20,
		ElectionTimeout:    time.Second,
		ForwardTimeout:     defaultForwardTimeout,
		CloseTimeout:       10 * time.Second,
		CheckpointInterval: time.Second,
		DedupWindow:        defaultDedupWindow,
		TrailingLogs:       65536,
		SnapshotThreshold:  8192,
		AlarmNoLeader:      10 * time.Second,
		AlarmLag:           1000,
	}
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.File == "" {
		c.File = d.File
	}
	if c.MaxSize == 0 {
		c.MaxSize = d.MaxSize
	}
	if c.QueueSize == 0 {
		c.QueueSize = d.QueueSize
	}
	if c.MaxEntrySize == 0 {
		c.MaxEntrySize = d.MaxEntrySize
		if c.MaxSize > 0 && int64(c.MaxEntrySize) > c.MaxSize {
			c.MaxEntrySize = int(c.MaxSize)
		}
	}
	if c.MaxBatchEntries == 0 {
		c.MaxBatchEntries = d.MaxBatchEntries
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = d.ElectionTimeout
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = d.ForwardTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = d.CloseTimeout
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = d.CheckpointInterval
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = d.DedupWindow
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.AlarmNoLeader == 0 {
		c.AlarmNoLeader = d.AlarmNoLeader
	}
	if c.AlarmLag == 0 {
		c.AlarmLag = d.AlarmLag
	}
	if c.LogOutput == nil {
		c.LogOutput = os.Stderr
	}
	c.Peers = append([]string(nil), c.Peers...)
	return c
}

// ConfigError reports an invalid Config field.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return "logx: Config." + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// maxQueue bounds QueueSize and MaxBatchEntries: the queue and its free
// list are channels of that capacity, made when a stream opens, and a
// stream's QueueSize also comes from the catalog (CreateStream, which any
// holder of a certificate may send).
const maxQueue = 1 << 20

// maxBatchBytes bounds MaxBatchBytes, and so MaxEntrySize and the longest
// line a node writes (maxLineBytes).
const maxBatchBytes = 64 << 20

// maxFileName bounds File's length (Validate): every name derived from it
// fits a file system's 255 bytes, up to maxWorkingFileName, the longest
// whose names all do (a retired file's, ".retired-<stem>-<20 digits>
// <ext>.zst", is the longest: retirement renames both forms).
// maxLoggedFileName is the longest a log written before 2026-12-06 may
// hold: its rotated name fits. One from 222 to 234 bytes worked in a
// stream that never retires a file, and one that does stops applying at
// its first retirement, as it did before; nodes upgraded over such a log
// still start and do as the others do. A longer one failed at its first
// rotation, and is refused still.
const (
	maxFileName        = 200
	maxWorkingFileName = 255 - len(".retired-") - len("-00000000000000000001") - len(".zst")
	maxLoggedFileName  = 255 - len("-00000000000000000001")
)

// Validate reports the first invalid field of c, after defaults are applied,
// as a *ConfigError; a field of a stream is named Streams[i].Field.
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return c.validateStreams()
}

// validate is Validate without Streams.
func (c Config) validate() error {
	c = c.withDefaults()
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	if c.NodeID == "" {
		return bad("NodeID", "required")
	}
	if c.Sampling != nil {
		if err := c.Sampling.check(); err != nil {
			return &ConfigError{Field: "Sampling", Err: err}
		}
	}
	if strings.ContainsFunc(c.NodeID, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("NodeID", "%q contains a control character", c.NodeID)
	}
	if !utf8.ValidString(c.NodeID) {
		// A metric's label must be UTF-8: logxprom's registration panicked.
		return bad("NodeID", "%q is not valid UTF-8", c.NodeID)
	}
	if len(c.NodeID) > maxNodeID {
		return bad("NodeID", "%d bytes is more than %d", len(c.NodeID), maxNodeID)
	}
	if err := checkAddr(c.Addr); err != nil {
		return bad("Addr", "%v", err)
	}
	if len(c.Peers) == 0 {
		return bad("Peers", "required (the Addr of every node, this one included)")
	}
	seen := map[string]bool{}
	self := false
	if c.ListenAddr != "" {
		if err := checkListenAddr(c.ListenAddr); err != nil {
			return bad("ListenAddr", "%v", err)
		}
	}
	for i, p := range c.Peers {
		if err := checkAddr(p); err != nil {
			return bad(fmt.Sprintf("Peers[%d]", i), "%v", err)
		}
		if seen[p] {
			return bad(fmt.Sprintf("Peers[%d]", i), "%q is listed twice", p)
		}
		seen[p] = true
		self = self || p == c.Addr
	}
	if !self && !c.Join {
		return bad("Peers", "must include this node's Addr %q (or set Join)", c.Addr)
	}
	if c.Dir == "" {
		return bad("Dir", "required")
	}
	// Without a client certificate required and checked against the
	// cluster's CA, any client could forward entries, fetch the files and
	// send control requests. (GetConfigForClient: its configurations are
	// the caller's to get right.)
	if t := c.TLS; t != nil && t.GetConfigForClient == nil {
		if t.ClientAuth != tls.RequireAndVerifyClientCert {
			return bad("TLS", "ClientAuth is %v: peers must be authenticated (tls.RequireAndVerifyClientCert)", t.ClientAuth)
		}
		if t.ClientCAs == nil {
			return bad("TLS", "ClientCAs is nil: peers' certificates would be checked against the system's roots, not the cluster's CA")
		}
	}
	if files := c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != ""; files {
		switch {
		case c.TLS != nil:
			return bad("TLSCAFile", "set TLS or the TLS files, not both")
		case c.TLSCAFile == "" || c.TLSCertFile == "" || c.TLSKeyFile == "":
			return bad("TLSCAFile", "TLSCAFile, TLSCertFile and TLSKeyFile go together")
		}
	}
	// File must not collide with the node's own files in Dir (its rotated
	// names, <stem>-<20 digits><ext>, then cannot either), nor have the
	// rotated form itself: it would be taken for a rotated file of another
	// stem (app-00000000000000000001.log for app.log's).
	if strings.ContainsFunc(c.File, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("File", "%q contains a control character", c.File)
	}
	if len(c.File) > maxFileName && !(c.logged && len(c.File) <= maxLoggedFileName) {
		// The names derived from it (".retired-<stem>-<20 digits><ext>.zst",
		// 34 bytes more, the longest) must fit in a file system's 255: a
		// longer File opened, and every node failed to rename it at its
		// first rotation or retirement (maxWorkingFileName).
		return bad("File", "%d bytes long; at most %d", len(c.File), maxFileName)
	}
	if c.File != filepath.Base(c.File) || strings.ContainsAny(c.File, `/\`) {
		return bad("File", "%q must be a plain file name, without a directory", c.File)
	}
	if strings.HasPrefix(c.File, ".") {
		return bad("File", "%q starts with \".\": names starting with a dot are reserved for logx's temporary files in Dir (.catchup-, .retired-, .repair-)", c.File)
	}
	if len(c.File) >= 4 && strings.EqualFold(c.File[len(c.File)-4:], ".tmp") {
		return bad("File", "%q ends in .tmp: such names are reserved for logx's temporary files in Dir", c.File)
	}
	for _, own := range []string{"LOCK", stateFile, "raft", "snapshots", streamsDir} {
		if strings.EqualFold(c.File, own) {
			return bad("File", "%q is the name of the node's own %s in Dir", c.File, own)
		}
	}
	if stem := strings.TrimSuffix(c.File, filepath.Ext(c.File)); len(stem) >= 21 && stem[len(stem)-21] == '-' &&
		!strings.ContainsFunc(stem[len(stem)-20:], func(r rune) bool { return r < '0' || r > '9' }) {
		return bad("File", "%q has the form of a rotated file name (<stem>-<20 digits><ext>)", c.File)
	}
	if c.MaxSize < 0 {
		return bad("MaxSize", "%d is negative", c.MaxSize)
	}
	if c.RotateEvery < 0 {
		return bad("RotateEvery", "%v is negative", c.RotateEvery)
	}
	if c.MaxFiles < 0 {
		return bad("MaxFiles", "%d is negative", c.MaxFiles)
	}
	if c.MaxAge < 0 {
		return bad("MaxAge", "%v is negative", c.MaxAge)
	}
	if shortMaxAge(c.MaxAge) {
		// As SetRetention refuses it: a line's clock may be clockSlack
		// from the log clock, so a file could be retired as it rotates.
		return bad("MaxAge", "%v is less than %v", c.MaxAge, clockSlack)
	}
	if c.Format != FormatText && c.Format != FormatJSON {
		return bad("Format", "unknown format %d", int(c.Format))
	}
	if c.QueueSize < 1 {
		return bad("QueueSize", "%d is less than 1", c.QueueSize)
	}
	if c.QueueSize > maxQueue && !c.logged {
		return bad("QueueSize", "%d exceeds %d", c.QueueSize, maxQueue)
	}
	if c.MaxEntrySize < 1 {
		return bad("MaxEntrySize", "%d is less than 1", c.MaxEntrySize)
	}
	// Not for settings the log holds: an earlier version took them, and
	// refusing a catalog's stream failed every upgraded node's start.
	if c.MaxEntrySize < minEntrySize && !c.logged {
		if c.MaxSize < minEntrySize {
			// MaxEntrySize defaults to MaxSize when that is smaller.
			return bad("MaxSize", "%d is less than %d: no entry would fit a file", c.MaxSize, minEntrySize)
		}
		return bad("MaxEntrySize", "%d is less than %d: a line's head alone takes about a hundred bytes", c.MaxEntrySize, minEntrySize)
	}
	if int64(c.MaxEntrySize) > c.MaxSize {
		return bad("MaxEntrySize", "%d exceeds MaxSize %d", c.MaxEntrySize, c.MaxSize)
	}
	if c.MaxBatchEntries < 1 {
		return bad("MaxBatchEntries", "%d is less than 1", c.MaxBatchEntries)
	}
	if c.MaxBatchEntries > maxQueue {
		return bad("MaxBatchEntries", "%d exceeds %d", c.MaxBatchEntries, maxQueue)
	}
	if c.MaxBatchBytes < c.MaxEntrySize {
		return bad("MaxBatchBytes", "%d is less than MaxEntrySize %d", c.MaxBatchBytes, c.MaxEntrySize)
	}
	if c.MaxBatchBytes > maxBatchBytes {
		return bad("MaxBatchBytes", "%d exceeds 64 MiB", c.MaxBatchBytes)
	}
	if c.ElectionTimeout < 50*time.Millisecond {
		return bad("ElectionTimeout", "%v is less than 50ms", c.ElectionTimeout)
	}
	if c.ForwardTimeout < 0 {
		return bad("ForwardTimeout", "%v is negative", c.ForwardTimeout)
	}
	if c.CloseTimeout < 0 {
		return bad("CloseTimeout", "%v is negative", c.CloseTimeout)
	}
	if c.AlarmNoLeader < 0 {
		return bad("AlarmNoLeader", "%v is negative", c.AlarmNoLeader)
	}
	if c.CheckpointInterval < 0 {
		return bad("CheckpointInterval", "%v is negative", c.CheckpointInterval)
	}
	if c.DedupWindow < minDedupWindow {
		return bad("DedupWindow", "%v is less than %v", c.DedupWindow, minDedupWindow)
	}
	if c.DedupWindow < 2*c.ForwardTimeout {
		return bad("DedupWindow", "%v is less than twice ForwardTimeout (%v): a batch must be retried at least once", c.DedupWindow, c.ForwardTimeout)
	}
	return nil
}

// defaultForwardTimeout is Config.ForwardTimeout's default, which a Client
// always uses.
const defaultForwardTimeout = 10 * time.Second

// maxNodeID bounds Config.NodeID, which every line the node originates
// carries; minEntrySize is the least Config.MaxEntrySize.
const (
	maxNodeID    = 128
	minEntrySize = 512
)

func checkAddr(addr string) error {
	if addr == "" {
		return errors.New("required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%.300q has no host: peers must be able to dial it", addr)
	}
	if !dialableHost(host) {
		return fmt.Errorf("%.300q: the host is neither an IP address nor a DNS name", addr)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("%q needs a fixed port", addr)
	}
	return nil
}

// checkListenAddr checks an address to bind: host:port with a fixed port,
// the host empty (every interface), an IP address or a DNS name.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%.300q: %v", addr, err)
	}
	if host != "" && !dialableHost(host) {
		return fmt.Errorf("%.300q: the host is neither empty, an IP address nor a DNS name", addr)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("%q needs a fixed port", addr)
	}
	return nil
}

// dialableHost reports whether host is an IP address or a DNS name (at most
// 253 bytes of dot-separated labels of letters, digits, '-' and '_', each
// 1 to 63 bytes, with an optional final dot). An address that is neither
// can never be dialled: AddNode would put it into the configuration as a
// non-voter that never catches up (a control request is checked the same
// way, so a peer cannot add "a/b:1" or a host of 100 KiB).
func dialableHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// filePolicy is how the node rotates and retains its files.
func (c Config) filePolicy() filePolicy {
	return filePolicy{rotation: store.Rotation{MaxSize: c.MaxSize, Every: c.RotateEvery}, maxFiles: c.MaxFiles, maxAge: c.MaxAge, dedupWindow: c.DedupWindow}
}
