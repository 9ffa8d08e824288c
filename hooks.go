package logx

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft-wal/types"
	"github.com/logx-dev/logx/internal/store"
)

// seams are a node's test hooks. Tests open a node with newNode(cfg,
// seams); New passes the zero value, which changes nothing. They live
// neither in Config (users never see them) nor in package variables (tests
// that set them can run side by side).
type seams struct {
	// walSegmentSize overrides raft-wal's segment size (raft-wal only
	// drops whole segments when Raft compacts its log).
	walSegmentSize int

	// dialFrom is for the fault-injection harness: the node dials its
	// peers from the local IP dialFrom (it listens on Config.ListenAddr,
	// behind a proxy at Addr).
	dialFrom string

	// resolve, if set, stands in for DNS: dials ask it for a host's
	// address (a name that does not resolve yet: an error; a
	// *net.DNSError is passed on as it is).
	resolve func(host string) (string, error)

	// membersUnknown, if set and true, makes the default stream's members
	// unknown to the node's other streams (node.defaultServers), as
	// while a snapshot's restore precedes its configuration.
	membersUnknown func() bool

	// listener, if set, wraps the node's listener (before TLS): a test's
	// failing Accept.
	listener func(net.Listener) net.Listener

	// headerTimeout, maxConnsPerIP and maxPendingConns override the
	// mux's limits (transport.go) when not zero.
	headerTimeout   time.Duration
	maxConnsPerIP   int
	maxPendingConns int

	// powerCut sees every write and fsync of the node so that a test can
	// simulate a power cut (powercut_test.go).
	powerCut *powerHooks

	// now is this node's clock (time.Now when nil); clockEvery is how
	// often it reports it to the log (clock.go; 10s when 0).
	now        func() time.Time
	clockEvery time.Duration

	// callerWait overrides how long the committer waits for the callers
	// its last batch answered (producer.go) when not zero; the gap is then
	// the same, so it never ends a wait (a flat wait, as tests want).
	callerWait time.Duration

	// commitTimeout is Raft's CommitTimeout (commit.go's commitTimeout
	// when 0).
	commitTimeout time.Duration

	// tailAfter overrides how long the leader's log must stay still before
	// it passes its commit index on (commit.go's tailAfter) when not zero.
	tailAfter time.Duration

	// scrubEvery, if set, is how often the check of rotated files goes
	// over all of them (scrub.go; a week when 0).
	scrubEvery time.Duration

	// diskFault is asked before every write and fsync of the log files; an
	// error from it fails that write (a full disk).
	diskFault func() error
	// writeRetryPause, if set, is every pause before apply retries a
	// failed write (instead of 100 ms doubling to 5 s).
	writeRetryPause time.Duration

	// version is the FeatureVersion the node reports, and acts on, when
	// not 0 (an older node, in-process: below 4 it writes sha256 and
	// refuses a manifest with a file named BLAKE3, fsmConfig.onlySHA256);
	// faster is the hash it would rather use when not nil (store.Faster
	// otherwise), sums.go.
	version int
	faster  *store.Hash
	// sumsAsk is called before each ask of a member's version (sums.go),
	// with the ask's context (a test makes it block: a member that holds
	// the connection without answering).
	sumsAsk func(ctx context.Context, addr string)

	// fetchHook is called with the fetch's context before every chunk a
	// catch-up fetches from a peer; an error from it fails the fetch (a
	// test makes it block until the context ends: a slow peer).
	fetchHook func(ctx context.Context) error

	// fetchIOTimeout overrides fetchIOTimeout (fetch.go) when not zero.
	fetchIOTimeout time.Duration

	// opening, if set, is called as the node opens a stream, with its name,
	// at these stages: "begin" (nothing opened yet), "raft" (before
	// NewRaft), for a stream about to bootstrap "ask" (before it asks its
	// peers, bootstrap.go) and "asked" (after, before it bootstraps if no
	// peer runs the group), and for the default stream "served" (its
	// handlers run, the node does not list it yet: newNode); an error from
	// it fails the opening (a test makes it block: a node slow to start).
	// It is also called with "close" as a stream's Close begins (its
	// error is ignored).
	// startingAnswered is called each time this node answers that it is
	// starting (bootstrap.go).
	opening          func(name, stage string) error
	startingAnswered func()

	// controlTimeout, if set, replaces defaultControlTimeout for a control
	// request whose context has no deadline, carried out by this node.
	controlTimeout time.Duration

	// removalRound, if set, is called before each round of a check of a
	// removal notice (removal.go), with the round's number.
	removalRound func(round int)

	// staleNonvoter, if set, replaces staleNonvoterAfter (ops.go).
	staleNonvoter time.Duration

	// rulesWait, if set, is every wait of adoptRules after a failed try
	// (rules.go).
	rulesWait time.Duration

	// beforeVoter is called as addNode, on the leader, is about to make
	// the caught-up non-voter addr a voter (a test blocks it there).
	beforeVoter func(addr string)

	// creating, if set, is called as the default stream's leader has read
	// the voters of a stream it is about to create (a test holds it there).
	creating func(voters []string)

	// forwardDial, if set, is asked before a follower dials its leader to
	// forward a batch: an error stands for a dial that failed.
	forwardDial func(addr string) error
}

// open calls opening, if set.
func (sm seams) open(name, stage string) error {
	if sm.opening == nil {
		return nil
	}
	return sm.opening(name, stage)
}

// powerHooks is a test seam (powercut_test.go) that lets a test simulate a
// power cut: it sees every write and fsync of a node, so it can copy the
// node's Dir as a power cut would leave it, without the bytes that were not
// yet fsynced. Nil in normal use.
type powerHooks struct {
	// mu is held for reading while the node writes or fsyncs files; the
	// simulated cut holds it for writing while it copies Dir.
	mu sync.RWMutex
	// synced is told that the first size bytes of the log file at path are
	// durable (after an fsync, or when recovery cut the file back).
	synced func(path string, size int64)
	// vfs and meta wrap raft-wal's file system and metadata store; if vfs
	// is nil raft-wal is left alone (only the log files are guarded).
	vfs  func(types.VFS) types.VFS
	meta func(types.MetaStore) types.MetaStore
}

// guard takes the hooks' read lock, if any, and returns its release.
func (h *powerHooks) guard() func() {
	if h == nil {
		return func() {}
	}
	h.mu.RLock()
	return h.mu.RUnlock
}

// storeHooks are the test hooks of the node's files (store.Hooks): the
// simulated full disk and the power cut's record of durable sizes.
func (f *fsm) storeHooks() store.Hooks {
	h := store.Hooks{Fault: f.fault}
	if f.hooks != nil {
		h.Synced = f.hooks.synced
	}
	return h
}
