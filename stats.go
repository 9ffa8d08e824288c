package logx

import (
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
)

// Stats is a snapshot of a stream's state and counters on a node.
type Stats struct {
	// Version is the node's logx feature version (FeatureVersion); 0 from
	// a node older than streams, which does not send it.
	Version int `json:"version,omitempty"`
	// Rules is the stream's apply rules as this node applied them: 0
	// until its leader committed rules 1 (rules.go), once every member
	// ran FeatureVersion 6 or later.
	Rules  int    `json:"rules,omitempty"`
	NodeID string `json:"node_id"`
	Stream string `json:"stream"` // the stream's name (DefaultStream for Logx.Stats)
	Idle   bool   `json:"idle"`   // idle here: no entry for 10 ElectionTimeouts; clock reports and, where idle.go says, Raft's timeouts slowed
	Addr   string `json:"addr"`
	State  string `json:"state"`  // Raft role: Leader, Follower, Candidate, or Shutdown once this node stops its Raft (Close, a confirmed removal)
	Leader string `json:"leader"` // the leader's address, "" if none is known
	Term   uint64 `json:"term"`
	Format string `json:"format"` // line format of the cluster: "text" or "json"
	Dir    string `json:"dir"`    // the stream's directory on this node
	File   string `json:"file"`   // the active file's name in Dir
	// Level is the minimum level this node logs on the stream; ClusterLevel
	// the cluster level it last applied, "" if none was ever set
	// (clusterlevel.go). Both "" from a node older than the cluster level.
	Level        string `json:"level,omitempty"`
	ClusterLevel string `json:"cluster_level,omitempty"`
	// TruncatedBefore is the truncation point this node applied
	// (TruncateBefore), 0 if none.
	TruncatedBefore uint64 `json:"truncated_before,omitempty"`
	// Checksum is the hash of the checksums of the files this node starts
	// next, "sha256" or "blake3" (docs/design.md, "Checksums name their
	// hash"); "" from a node older than BLAKE3 checksums.
	Checksum string `json:"checksum,omitempty"`

	CommitIndex uint64 `json:"commit_index"` // Raft commit index known here
	// LastIndex is the index of the last entry of this node's Raft log,
	// committed or not, or of its newest snapshot if that is higher; 0
	// from a node older than it.
	LastIndex    uint64 `json:"last_index,omitempty"`
	AppliedIndex uint64 `json:"applied_index"` // Raft index the files hold
	// Lag is how many Raft entries this node's files trail the commit
	// index by: from AppliedIndex to the last committed entry that holds
	// lines or settings (Raft's barriers and no-ops hold none: commit.go).
	Lag uint64 `json:"lag"`
	// LastContact is how long ago this follower last heard from the leader
	// (0 on the leader, -1 if never).
	LastContact time.Duration `json:"last_contact_ns"`
	// Peers are the other members; on the leader, with heartbeat failures.
	Peers []PeerStats `json:"peers,omitempty"`
	// Voters are the voters of the last configuration this node applied,
	// the ones its log clock counts, sorted. ConfigIndex is that
	// configuration's Raft index (1: the one the group was bootstrapped
	// with), 0 if this node applied none since it started (its voters came
	// from a checkpoint or a snapshot) or is older than it.
	Voters      []string `json:"voters,omitempty"`
	ConfigIndex uint64   `json:"config_index,omitempty"`
	Seq         uint64   `json:"seq"` // sequence number of the last line written
	// LogClock is the cluster's clock as the log says: the time a
	// majority of the voters' clock reports reached (they report every
	// 10 s), which rotation by time, retention by age and DedupWindow go
	// by. Zero until a majority has reported.
	LogClock time.Time `json:"log_clock,omitzero"`
	// DedupWindow is how long the cluster remembers a producer.
	DedupWindow time.Duration `json:"dedup_window_ns"`
	// MaxFiles and MaxAge are the retention this node applies: the
	// cluster's once it has applied the cluster's settings (which hold
	// over its Config's; SetRetention changes them), its Config's before.
	MaxFiles int           `json:"max_files"`
	MaxAge   time.Duration `json:"max_age_ns"`

	QueueLen int `json:"queue_len"` // entries waiting to be committed
	QueueCap int `json:"queue_cap"`

	Enqueued  uint64 `json:"enqueued"`  // entries accepted into the queue
	Committed uint64 `json:"committed"` // entries from this node committed
	Failed    uint64 `json:"failed"`    // entries from this node that were not (or may not have been) committed
	Dropped   uint64 `json:"dropped"`   // entries dropped because the queue was full (DropWhenFull)
	Sampled   uint64 `json:"sampled"`   // entries dropped by Config.Sampling
	Rejected  uint64 `json:"rejected"`  // entries refused as too large
	// AsyncErrors counts Debug/Info/Warn/Error and handler calls that
	// returned without queueing their entry (dropped, too large, or closed).
	AsyncErrors uint64 `json:"async_errors"`

	Batches       uint64 `json:"batches"`        // batches committed or attempted
	Forwarded     uint64 `json:"forwarded"`      // forwarding attempts to the leader
	ForwardErrors uint64 `json:"forward_errors"` // failed forwarding attempts
	Retries       uint64 `json:"retries"`        // batch attempts that were retried
	// RecordBytes and BatchBytes are the size of this node's batches before
	// and after compression (Config.DisableCompression), headers aside.
	RecordBytes uint64 `json:"record_bytes"`
	BatchBytes  uint64 `json:"batch_bytes"`

	EntriesWritten uint64 `json:"entries_written"` // lines this node's apply wrote since start
	BytesWritten   uint64 `json:"bytes_written"`
	Duplicates     uint64 `json:"duplicates"` // repeated entries dropped at apply
	// ClockReportsRefused counts voters' clock reports this node's apply
	// refused since start because they came with another certificate
	// subject than the voter's earlier ones: a certificate renewed under
	// another subject, whose voter is refused until it is removed and
	// added again (docs/guarantees.md). While a majority's are, the log
	// clock stops, and rotation by time and retention by age with it.
	ClockReportsRefused uint64 `json:"clock_reports_refused"`
	// EvictedProducers counts producers forgotten before the dedup window
	// passed (a try of their last batch may still come), because more
	// than 16384 were seen within it.
	EvictedProducers uint64 `json:"evicted_producers"`
	Rotations        uint64 `json:"rotations"` // rotations since start
	Retired          uint64 `json:"retired"`   // rotated files retention removed from the log since start

	CatchUps uint64 `json:"catch_ups"` // snapshots installed by copying files from peers
	// CheckedFiles counts rotated files checked against their checksum
	// since start (scrub.go: at a start, those rotated since the last
	// check, and every one once a week while the node runs); DamagedFiles
	// those found not to match; RepairedFiles those of them copied again
	// from a peer.
	CheckedFiles  uint64 `json:"checked_files"`
	DamagedFiles  uint64 `json:"damaged_files"`
	RepairedFiles uint64 `json:"repaired_files"`
	// CompressedFiles counts rotated files this node replaced by their
	// compressed form since start (Config.Compress), CompressedSaved the
	// bytes that saved (negative if the data did not compress), and
	// CompressFailures the attempts that failed (each is logged to
	// LogOutput; the file stays plain, and a failure other than damage is
	// tried again at the next rotation).
	CompressedFiles  uint64 `json:"compressed_files"`
	CompressedSaved  int64  `json:"compressed_saved_bytes"`
	CompressFailures uint64 `json:"compress_failures"`
	FetchedBytes     uint64 `json:"fetched_bytes"` // bytes copied from peers by catch-up
	ServedBytes      uint64 `json:"served_bytes"`  // bytes this node served to catching-up peers
	// The running catch-up, or the last one: whether one is running, the
	// bytes of the files it assembles, how many of them are in place (kept
	// or fetched), and how long it has taken.
	CatchingUp      bool          `json:"catching_up"`
	CatchUpBytes    int64         `json:"catch_up_bytes"`
	CatchUpDone     int64         `json:"catch_up_done"`
	CatchUpDuration time.Duration `json:"catch_up_duration_ns"`
	// CatchUpError is the last failure of the catch-up ("" once it
	// succeeds). A node that restarts with an interrupted catch-up goes on
	// with it in the background until a peer answers; it applies nothing
	// meanwhile (CatchingUp stays true).
	CatchUpError string `json:"catch_up_error,omitempty"`

	// WriteError is the error that stopped this node's apply, if any.
	WriteError string `json:"write_error,omitempty"`

	// IgnoredRemovals counts notices that this node was removed from the
	// cluster that a majority of its configuration's voters did not
	// confirm: forged, or sent in error. Each is logged on LogOutput.
	IgnoredRemovals uint64 `json:"ignored_removals"`
}

// raftState is Raft's role, or Shutdown once this node began to stop its
// Raft (raftStopped).
func (lx *Stream) raftState() raft.RaftState {
	if lx.raftStopped.Load() {
		return raft.Shutdown
	}
	return lx.raft.State()
}

// Stats returns a snapshot of the stream's state and counters on this node.
func (lx *Stream) Stats() Stats {
	fs := lx.fsm.stats()
	var clusterLevel string
	if l, ok := lx.fsm.clusterLevel(); ok {
		clusterLevel = l.String()
	}
	s := Stats{
		ClusterLevel:        clusterLevel,
		TruncatedBefore:     lx.fsm.truncated.Load(),
		Checksum:            store.Hash(lx.fsm.nextSum.Load()).String(),
		Version:             lx.seams.featureVersion(),
		Rules:               lx.fsm.rulesNow(),
		NodeID:              lx.cfg.NodeID,
		Stream:              lx.name,
		Idle:                lx.idle.Load(),
		Dir:                 lx.cfg.Dir,
		File:                lx.logFile(),
		Addr:                lx.cfg.Addr,
		Format:              lx.cfg.Format.String(),
		Level:               lx.Level().String(),
		State:               lx.raftState().String(),
		Term:                lx.raft.CurrentTerm(),
		CommitIndex:         lx.raft.CommitIndex(),
		LastIndex:           lx.raft.LastIndex(),
		AppliedIndex:        fs.applied,
		Seq:                 fs.seq,
		QueueLen:            len(lx.queue),
		QueueCap:            cap(lx.queue),
		Enqueued:            lx.stats.enqueued.Load(),
		Committed:           lx.stats.committed.Load(),
		Failed:              lx.stats.failed.Load(),
		Dropped:             lx.stats.dropped.Load(),
		Sampled:             lx.sampled(),
		Rejected:            lx.stats.rejected.Load(),
		AsyncErrors:         lx.stats.asyncRejected.Load(),
		Batches:             lx.stats.batches.Load(),
		Forwarded:           lx.stats.forwarded.Load(),
		ForwardErrors:       lx.stats.forwardErrors.Load(),
		Retries:             lx.stats.retries.Load(),
		CheckedFiles:        lx.stats.checked.Load(),
		DamagedFiles:        lx.stats.damaged.Load(),
		RepairedFiles:       lx.stats.repaired.Load(),
		CompressedFiles:     lx.stats.compressed.Load(),
		CompressedSaved:     lx.stats.compressSaved.Load(),
		CompressFailures:    lx.stats.compressFailed.Load(),
		RecordBytes:         lx.stats.recordBytes.Load(),
		BatchBytes:          lx.stats.batchBytes.Load(),
		EntriesWritten:      fs.entries,
		BytesWritten:        fs.bytes,
		Duplicates:          fs.dups,
		ClockReportsRefused: fs.clockRefused,
		EvictedProducers:    fs.evicted,
		Rotations:           fs.rotations,
		Retired:             fs.retired,
		CatchUps:            fs.catchUps,
		FetchedBytes:        lx.stats.fetched.Load(),
		ServedBytes:         lx.stats.fetchServed.Load(),

		CatchingUp:      fs.catchingUp,
		CatchUpBytes:    fs.catchUpBytes,
		CatchUpDone:     fs.catchUpDone,
		CatchUpDuration: fs.catchUpDuration,
		CatchUpError:    fs.catchUpErr,

		IgnoredRemovals: lx.stats.ignoredRemovals.Load(),
	}
	if c := fs.clock; c > 0 {
		s.LogClock = time.Unix(0, c).UTC()
	}
	s.DedupWindow = lx.dedupWindow()
	s.MaxFiles, s.MaxAge = lx.cfg.MaxFiles, lx.cfg.MaxAge
	if cs := lx.fsm.clusterSettings(); cs != nil {
		s.MaxFiles, s.MaxAge = cs.MaxFiles, cs.MaxAge
	}
	addr, _ := lx.raft.LeaderWithID()
	s.Leader = string(addr)
	s.Lag, _, _ = lx.lag()
	s.LastContact = lx.lastContact()
	s.Peers = lx.peers()
	if v := lx.fsm.voters.Load(); v != nil {
		s.Voters, s.ConfigIndex = slices.Clone(v.voters), v.index
	}
	if err := lx.fsm.Err(); err != nil {
		s.WriteError = err.Error()
	}
	return s
}

// Files returns the names of this node's log files in log order: rotated
// files first, the active file last.
func (lx *Stream) Files() ([]string, error) { return LogFiles(lx.cfg.Dir, lx.logFile()) }
