package logx

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
)

// Stream is one replicated log of a node: its own Raft group, files,
// producer and level. Every node of the cluster holds every stream. A
// Stream is safe for concurrent use; the node (Logx) opens and closes it.
type Stream struct {
	name      string // DefaultStream, or a name from Config.Streams
	hooks     nodeHooks
	cfg       Config          // the stream's: Dir is its directory, the file settings its own
	seams     seams           // the node's test hooks (hooks.go)
	want      clusterSettings // what this node's Config sets of the cluster's settings (settings.go)
	logs      raft.LogStore   // the Raft log (raft-wal behind a cache)
	guard     *logGuard       // the Raft log under the cache (logguard.go)
	level     *slog.LevelVar
	diag      *log.Logger
	producer  uint64 // this incarnation's producer id
	maxFrame  int
	fsm       *fsm
	wal       *wal.WAL
	meta      *metadb.BoltMetaDB
	raft      *raft.Raft
	raftPtr   atomic.Pointer[raft.Raft] // raft, for the apply goroutine (set after NewRaft)
	transport *verifiedTransport        // commitclamp.go
	mux       *endpoint                 // the stream's end of the node's mux
	fwd       forwarder

	queue chan *entry
	free  chan *entry // entries the producer is done with, for reuse
	// releases counts the batches the producer has committed (or failed);
	// an Append notes it, so that the producer knows which callers came
	// back after a batch answered them (callerWait).
	releases atomic.Uint64
	qmu      sync.RWMutex // guards closed against racing enqueues
	closed   bool
	closing  chan struct{} // closed when Close begins
	// closingCtx is cancelled (by cancelClosing) when Close begins.
	closingCtx      context.Context
	cancelClosing   context.CancelFunc
	removed         atomic.Bool   // set once a notice that this node was removed is confirmed (removal.go)
	checkingRemoval atomic.Bool   // a removal notice is being checked
	recheckRemoval  atomic.Bool   // a notice came that no check has taken yet
	confSlot        chan struct{} // held by addNode's last step and removeNode's change, one at a time (membership.go)
	confGen         atomic.Uint64 // counts confSlot's releases and this node's role changes (commitRules)
	// handingOver is set while a leader that cannot write hands over;
	// lastHandOver is when it last began to (monoNanos), and
	// handOverGap how long it waits before it does again (see handOver);
	// handOverLog is when a failed handover was last reported.
	handingOver  atomic.Bool
	lastHandOver atomic.Int64
	handOverGap  atomic.Int64
	handOverLog  atomic.Int64
	// runsWith is set when this node's Raft state was empty and a peer
	// answered that it runs the group: no bootstrap; these are the members
	// it listed (bootstrap.go).
	runsWith atomic.Pointer[[]string]
	// bootstrapped is set when this node started the group with a
	// configuration of its own (BootstrapCluster succeeded), at its start
	// or when the catalog reached a declared stream (bootstrapIfEmpty).
	bootstrapped atomic.Bool
	// startedEmpty: this stream's Raft state was empty when it opened (a
	// new node, an emptied Dir, a joining node). For the default stream,
	// the node's other streams ask their peers before they bootstrap
	// (nodeFresh, bootstrap.go).
	startedEmpty bool
	// decided is closed once this stream takes Raft connections: at once
	// if it has Raft state or joins, else once it has decided whether to
	// bootstrap (bootstrap.go; raftLayer holds them until then).
	decided    chan struct{}
	decideOnce sync.Once
	// snapshotting is set while a snapshot this node asked for runs
	// (askSnapshot: retention.go).
	snapshotting atomic.Bool
	pruning      atomic.Bool // pruneRaftPool's check runs (membership.go)
	// monoNanos of this follower's last ask for the configuration, failed
	// ask logged, this leader's last commit of it (ensureVoters), and the
	// last log of checkVoters, which sets votersChecked when done.
	votersAsked, votersLogged, votersCommitted, votersDiffered atomic.Int64
	votersChecked, checkingVoters, dropping                    atomic.Bool // dropping: dropStaleNonvoters runs
	declaredRetry                                              retryAfter  // recordDeclared's after a refusal (catalog.go)
	// sampler is Config.Sampling's, nil without it (sampling.go).
	sampler *sampler
	// removedCtx is cancelled (by markRemoved) when removed is set.
	removedCtx  context.Context
	markRemoved context.CancelFunc
	abort       chan struct{} // closed when Close gives up waiting for commits
	stopped     chan struct{} // closed when the producer has exited
	pseq        uint64        // last producer sequence assigned; producer goroutine only
	expanded    expandedSet   // records of the batches this node commits, lent to apply (expand.go)
	// ids are this node's certificate identities (tlsIDs); tlsGen is the
	// generation of the TLS material they come from (tlsreload.go),
	// producer goroutine only.
	ids          atomic.Pointer[tlsIDs]
	tlsGen       uint64
	settingsMu   sync.Mutex    // one settings proposal at a time (proposeSettings)
	barriers     barriers      // the leader's commit barriers (commit.go)
	tailArmed    chan struct{} // armTail wakes passTail (commit.go)
	lagIdx       lagIndex      // lagTarget's memory (commit.go)
	lastClockLog time.Time     // when a failed clock report was last logged; producer goroutine only

	closeOnce sync.Once
	closeErr  error

	// Goroutines started by goFunc, which Close waits for.
	goMu      sync.Mutex
	goStopped bool // under goMu: Close began, goFunc starts no more
	goWG      sync.WaitGroup

	// raftMu orders the requests whose answers we wait for (leadership
	// transfers, applies, barriers: raftCall) before Raft's shutdown: a
	// request hashicorp/raft (v1.8.0) takes as it shuts down can be left
	// unanswered (its channels are not drained, and apply and barrier
	// futures do not watch the shutdown), so shutdownRaft waits for the
	// requests in progress and raftCall starts none after it. Found by
	// TestCloseDuringBarriers.
	// Idle streams (idle.go): whether this one is, when it last logged or
	// applied an entry (monoNanos), and the lock that orders its
	// Raft timeout changes.
	idle       atomic.Bool
	lastActive atomic.Int64
	timeoutsMu sync.Mutex
	clockNow   chan struct{} // markActive asks the producer for a clock report at once

	raftMu      sync.RWMutex
	raftDown    bool // under raftMu
	raftStop    sync.Once
	raftStopErr error
	// raftStopped is set as shutdownRaft begins, before it waits for the
	// calls under way: Stats then says "Shutdown", whatever
	// hashicorp/raft's state says (a follower whose election timer fires
	// as it shuts down can leave it at Candidate).
	raftStopped atomic.Bool

	stats        counters
	flushSeen    losses // what a Flush has reported
	peerWatch    peerWatch
	observer     *raft.Observer
	monitorDone  chan struct{} // closed when the alarm monitor has exited
	scrubDone    chan struct{} // closed when the checks of the files (scrub.go) have ended, at Close
	scrubFresh   chan struct{} // closed when the start's check has checked the files rotated since the last check
	scrubStarted chan struct{} // closed when the start's check has ended
	// damaged holds the first sequence numbers of the rotated files a
	// check found damaged and could not repair (scrub.go).
	damaged sync.Map
	// compressWake wakes the compressor (compress.go) when a checkpoint
	// lists a newly rotated file.
	compressWake chan struct{}
}

// counters are the Stats kept by Logx itself.
type counters struct {
	enqueued, dropped, rejected  atomic.Uint64
	committed, failed            atomic.Uint64
	batches, forwarded, retries  atomic.Uint64
	forwardErrors, asyncRejected atomic.Uint64
	// lost counts the asynchronous entries that were not committed, or
	// whose outcome is unknown, for Flush to report.
	lost                       losses
	fetched, fetchServed       atomic.Uint64
	recordBytes, batchBytes    atomic.Uint64
	checked, damaged, repaired atomic.Uint64
	compressed, compressFailed atomic.Uint64
	compressSaved              atomic.Int64
	ignoredRemovals            atomic.Uint64
}

// newStream opens the stream name (DefaultStream, or one of
// Config.Streams) on the node whose mux is m: it recovers cfg.Dir, the
// stream's directory, and starts its Raft group, whose connections go
// through m. cfg is the stream's Config (Config.streamConfig), TLS loaded.
// The node holds Dir's lock.
// sm are the node's test hooks; hooks connect the stream to its node.
func newStream(cfg Config, sm seams, m *mux, name string, hooks *nodeHooks) (_ *Stream, err error) {
	if err := sm.open(name, "begin"); err != nil {
		return nil, err
	}
	want := wantedSettings(cfg)
	var overridden string // Config's retention, which the cluster's overrides
	if st, ok, err := readState(cfg.Dir); err == nil && ok && st.Settings != nil {
		// The cluster's settings are known here: this Config must agree
		// (its retention aside: the log's holds), and its zero fields take
		// the cluster's values (settings.go).
		if err := st.Settings.conflict(want.withoutRetention()); err != nil {
			if name != DefaultStream {
				err = fmt.Errorf("stream %q: %w", name, err)
			}
			return nil, err
		}
		overridden = st.Settings.retentionOverride(want)
		cfg = st.Settings.adopt(cfg)
	}
	cfg = cfg.withDefaults()
	lx := &Stream{
		decided:      make(chan struct{}),
		name:         name,
		cfg:          cfg,
		seams:        sm,
		compressWake: make(chan struct{}, 1),
		want:         want,
		diag:         log.New(cfg.LogOutput, diagPrefix(name), log.LstdFlags|log.Lmicroseconds|log.Lmsgprefix),
		queue:        make(chan *entry, cfg.QueueSize),
		free:         make(chan *entry, cfg.QueueSize+cfg.MaxBatchEntries+1),
		closing:      make(chan struct{}),
		tailArmed:    make(chan struct{}, 1),
		confSlot:     make(chan struct{}, 1),
		abort:        make(chan struct{}),
		stopped:      make(chan struct{}),
		maxFrame:     cfg.MaxBatchBytes + wire.RecordSize(cfg.MaxEntrySize) + wire.HeaderMax,
	}
	lx.fwd.lx = lx
	lx.lastActive.Store(monoNanos())
	lx.clockNow = make(chan struct{}, 1)
	lx.removedCtx, lx.markRemoved = context.WithCancel(context.Background())
	lx.closingCtx, lx.cancelClosing = context.WithCancel(context.Background())
	if lv, ok := cfg.Level.(*slog.LevelVar); ok && lv != nil {
		lx.level = lv
	} else {
		lx.level = new(slog.LevelVar)
		if cfg.Level != nil && !ok {
			lx.level.Set(cfg.Level.Level())
		}
	}
	lx.producer = newProducerID()
	if hooks != nil && hooks.tls != nil {
		var cur *tls.Config
		if cur, lx.tlsGen = hooks.tls(); cur != nil {
			cfg.TLS = cur
		}
	}
	lx.fwd.tls = cfg.TLS // the material the producer's first id goes with (tlsreload.go)
	identity, subject, err := tlsIdentities(cfg.TLS)
	if err != nil {
		return nil, err
	}
	lx.ids.Store(&tlsIDs{batches: identity, clocks: subject})

	// Every step below undoes the earlier ones if a later one fails.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	// Until it is open, the stream answers status requests that it is
	// starting (bootstrap.go): with Raft state if its directory has some
	// before anything is opened, then as Raft's stores say.
	m.noteState(name, raftStateOnDisk(cfg.Dir))
	undo = append(undo, func() { m.forgetState(name) })
	if err := store.MkdirSynced(cfg.Dir); err != nil {
		return nil, fmt.Errorf("logx: %w", err)
	}

	if hooks != nil {
		lx.hooks = *hooks
	}

	if overridden != "" {
		lx.logf("%s", overridden)
	}

	// The files first: a directory whose files contradict their checkpoint
	// is refused before the Raft log is opened (raft-wal creates and
	// preallocates its segment).
	var onRotated func() // only a node that compresses needs to hear of rotations
	if cfg.Compress {
		onRotated = lx.wakeCompressor
	}
	fc := fsmConfig{dir: cfg.Dir, file: cfg.File, policy: cfg.filePolicy(), format: cfg.Format,
		stateInterval: cfg.CheckpointInterval, logf: lx.logf, want: want, logs: func() raft.LogStore { return peekStore{lx.guard} }, fetcher: lx,
		onWriteError: lx.onWriteError, onActive: lx.markActive, onBlocked: lx.onCatchingUp, onLevel: lx.level.Set,
		onRetired: lx.onRetired, onApplied: lx.armTail,
		onRotated: onRotated, expanded: &lx.expanded,
		hooks: sm.powerCut, fault: sm.diskFault, retryPause: sm.writeRetryPause, onlySHA256: sm.featureVersion() < sumsFeature}
	if hooks != nil {
		fc.onCatalog = hooks.onCatalog
	}
	if lx.fsm, err = newFSM(fc); err != nil {
		return nil, fmt.Errorf("logx: opening log files: %w", err)
	}
	// Compressions a crash or a Close cut short (compress.go; with or
	// without Compress now): the compressor has not started. Repairs cut
	// short (scrub.go): this start's check may not repair that file again
	// (a catch-up, or retention first), and would leave its copy.
	if err := store.RemoveTemps(cfg.Dir, store.CompressTemp(""), repairTemp); err != nil {
		lx.fsm.closeFiles()
		return nil, fmt.Errorf("logx: opening log files: %w", err)
	}
	if l, ok := lx.fsm.clusterLevel(); ok {
		lx.level.Set(l) // the cluster level wins over Config.Level (clusterlevel.go)
	}
	// The rotated files to check in the background once peers are
	// reachable (scrub.go), taken before Raft's apply can change the list.
	// An interrupted catch-up checks every file against the snapshot
	// itself.
	rotated := lx.fsm.toScrub()
	undo = append(undo, lx.fsm.closeFiles)
	// Runs before the one above: a catch-up that NewRaft left to the
	// background stops first.
	undo = append(undo, func() {
		lx.fsm.halt()
		lx.fsm.stopBackground()
	})

	raftName := "raft"
	if name != DefaultStream {
		raftName = "raft." + name
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: raftName, Level: hclog.Warn, Output: cfg.LogOutput, Exclude: quietRaft})
	if err := store.MkdirSynced(filepath.Join(cfg.Dir, "raft")); err != nil {
		return nil, fmt.Errorf("logx: %w", err)
	}
	// raft-wal's Close leaves its metadata DB (and its flock) open, so logx
	// owns the DB and closes it after the WAL.
	lx.meta = &metadb.BoltMetaDB{}
	undo = append(undo, func() { _ = lx.meta.Close() })
	segSize := wal.DefaultSegmentSize
	if name != DefaultStream {
		segSize = streamSegmentSize
	}
	if sm.walSegmentSize > 0 {
		segSize = sm.walSegmentSize
	}
	walDir := filepath.Join(cfg.Dir, "raft")
	var meta types.MetaStore = lx.meta
	var vfs types.VFS = walPages{fs.New()}
	if h := sm.powerCut; h != nil && h.vfs != nil {
		meta, vfs = h.meta(lx.meta), h.vfs(vfs)
	}
	if lx.wal, err = openWAL(walDir, meta, vfs, segSize, hl.Named("wal")); err != nil {
		return nil, fmt.Errorf("logx: opening Raft log: %w", err)
	}
	undo = append(undo, func() { _ = lx.wal.Close() })
	if err := reapSnapshotTemps(cfg.Dir); err != nil {
		return nil, fmt.Errorf("logx: removing half-written snapshots: %w", err)
	}
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("logx: opening snapshot store: %w", err)
	}
	snaps := checkedSnapshots{FileSnapshotStore: fileSnaps, file: cfg.File, logf: lx.logf, warned: new(atomic.Int64)}
	lx.fsm.storedSnap = func() uint64 { return newestStored(fileSnaps) }
	lx.fsm.storedManifest = func() (*manifest, error) { return newestManifest(fileSnaps, lx.fsm.manifestFile) }
	lx.scrubStarted = make(chan struct{}) // before Raft: a catch-up's uncheckedFiles reads it
	lx.loadDamaged()
	lx.fsm.unchecked = lx.uncheckedFiles
	summed, err := newSummedLog(lx.wal, lx.logf) // walsum.go: a checksum on every entry
	if err != nil {
		return nil, fmt.Errorf("logx: opening Raft log: %w", err)
	}
	guard := newLogGuard(summed, snaps, func() uint64 {
		if r := lx.raftPtr.Load(); r != nil {
			return r.AppliedIndex()
		}
		return 0 // an install just as NewRaft returns: as Raft does
	}, lx.logf, lx.closing)
	lx.logs, lx.guard = guard, guard // logguard.go
	guard.commit = func() uint64 {
		if r := lx.raftPtr.Load(); r != nil {
			return r.CommitIndex()
		}
		return 0 // during NewRaft: its panic becomes New's error (newRaft)
	}
	lx.hookGuard(guard, 2*(idleStretch*cfg.ElectionTimeout+cmp.Or(sm.commitTimeout, commitTimeout)), cfg.ElectionTimeout)
	guard.snapshot = func() bool { // a leader's replication is what needs it
		r := lx.raftPtr.Load()
		return r != nil && r.State() == raft.Leader && lx.askSnapshot()
	}
	if cache, err := raft.NewLogCache(logCacheSize, guard); err == nil {
		lx.logs = cache
	}

	var raftPeer func(net.Conn) bool
	if cfg.TLS != nil {
		raftPeer = lx.raftPeerOK
	}
	epName := name
	if name == DefaultStream {
		epName = "" // the first release's one-byte prefaces
	}
	if lx.mux, err = m.endpoint(epName, lx.serveForward, lx.serveFetch, lx.serveControl, raftPeer); err != nil {
		return nil, err
	}
	undo = append(undo, lx.mux.close)
	lx.transport = newVerifiedTransport(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftLayer{e: lx.mux, refuse: lx.raftRefused, decided: lx.decided},
		MaxPool: 3,
		// No pipelining: hashicorp/raft v1.8.0's pipeline can deadlock
		// when a follower refuses an AppendEntries (a higher term, a log
		// that does not match): the decoder stops, the next send waits
		// forever on a channel nobody reads, and the replication goroutine
		// never ends, so the leader stops replicating to that follower and
		// Raft's Shutdown (Close) never returns (hashicorp/raft#612). Found
		// by TestHostilePeer/snapshot, whose forged higher terms make
		// followers refuse. Synchronous AppendEntries are what the
		// transport uses after any error anyway.
		MaxRPCsInFlight: 1,
		Timeout:         10 * time.Second,
		Logger:          hl.Named("transport"),
	}))
	undo = append(undo, func() { lx.transport.Close() })

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Addr)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.ElectionTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.ElectionTimeout                // longer than an idle leader's heartbeat pace (idle.go)
	rc.CommitTimeout = cmp.Or(sm.commitTimeout, commitTimeout) // commit.go
	rc.MaxAppendEntries = 64
	rc.BatchApplyCh = true
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	existing, err := raft.HasExistingState(lx.logs, lx.wal, snaps)
	if err != nil {
		return nil, fmt.Errorf("logx: %w", err)
	}
	m.noteState(name, existing)
	lx.startedEmpty = !existing
	if existing || cfg.Join {
		lx.decide()
	}
	if err := sm.open(name, "raft"); err != nil {
		return nil, err
	}
	// NewRaft restores the newest stored snapshot; an interrupted
	// catch-up it finds goes on in the background (fsm.Restore), since the
	// peers it copies from may not be up yet.
	lx.fsm.restoring(true)
	guard.starting() // an empty log puts the snapshot's last entry first (logguard.go)
	lx.raft, err = newRaft(guard, rc, guardedFSM{lx.fsm, guard}, lx.logs, lx.wal, snaps, lx.transport)
	lx.fsm.restoring(false)
	if err != nil {
		return nil, fmt.Errorf("logx: starting Raft: %w", err)
	}
	lx.raftPtr.Store(lx.raft)
	undo = append(undo, func() {
		lx.fsm.halt() // an apply waiting for a background catch-up gives up
		lx.stopGoroutines()
		lx.cancelClosing() // passTail and the compressor stop with it
		_ = lx.shutdownRaft()
		lx.goWG.Wait()
	})
	if !existing && !cfg.Join {
		if err := sm.open(name, "ask"); err != nil {
			return nil, err
		}
		peer, members, err := lx.askFirst(cfg.Peers) // bootstrap.go
		if err != nil {
			return nil, err
		}
		if peer != "" {
			lx.skipBootstrap(peer, members)
		} else if err := lx.raft.BootstrapCluster(bootstrapConfig(cfg.Peers)).Error(); err == nil {
			lx.bootstrapped.Store(true)
		} else if !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("logx: bootstrapping cluster: %w", err)
		}
		lx.decide()
	}
	lx.peerWatch.failing = map[raft.ServerID]failure{}
	lx.observer = raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		lx.observeRole(*o)
		return lx.peerWatch.observe(*o)
	})
	lx.raft.RegisterObserver(lx.observer)
	lx.goFunc(lx.passTail)
	lx.scrubDone, lx.scrubFresh = make(chan struct{}), make(chan struct{})
	go lx.scrub(rotated)
	if cfg.Compress {
		lx.goFunc(lx.compressLoop)
	}
	go lx.produce()
	lx.monitorDone = make(chan struct{})
	go lx.monitor()
	if cfg.Sampling != nil {
		lx.sampler = newSampler(*cfg.Sampling)
		lx.goFunc(func() { lx.summarize(lx.sampler) })
	}
	lx.mux.open() // the handlers of forwarding, fetch and control may run now
	m.forgetState(name)
	return lx, nil
}

// onWriteError runs when this node's apply starts failing to write: a
// leader hands leadership over, since the entries it commits would wait for
// its apply, and a healthy node can lead meanwhile.
func (lx *Stream) onWriteError(error) { lx.handOver("a write error") }

// onCatchingUp runs while this node cannot apply because a catch-up from
// peers is finishing in the background: a leader hands leadership over.
func (lx *Stream) onCatchingUp() { lx.handOver("a catch-up from peers") }

// handOver transfers the leadership to another node if this one leads
// (why says what keeps it from applying). While it stays held up it waits
// longer each time before it does again (an ElectionTimeout, doubling to
// 5 s; heldUp starts again from nothing once it applies): when every node
// is held up (their disks full at once) they would otherwise pass the
// leadership round at every refused batch (TestDiskFullEverywhere). A
// node elected again long after it handed over hands over at once.
func (lx *Stream) handOver(why string) {
	r := lx.raftPtr.Load()
	if r == nil || r.State() != raft.Leader {
		return
	}
	now, last, gap := monoNanos(), lx.lastHandOver.Load(), lx.handOverGap.Load()
	if now-last < gap || !lx.handingOver.CompareAndSwap(false, true) {
		return
	}
	if now-last > 2*int64(maxHandOverGap) {
		gap = 0 // long ago: another episode, which heldUp may not have seen end
	}
	lx.lastHandOver.Store(now)
	lx.handOverGap.Store(min(max(2*gap, int64(lx.cfg.ElectionTimeout)), int64(maxHandOverGap)))
	started := lx.goFunc(func() {
		defer lx.handingOver.Store(false)
		err := lx.transferLeadership()
		if err == nil || errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		// A cluster of one has no node to hand over to, and is asked
		// again and again.
		now := monoNanos()
		if last := lx.handOverLog.Load(); (last == 0 || now-last >= int64(retryLogEvery)) && lx.handOverLog.CompareAndSwap(last, now) {
			lx.logf("logx: handing leadership over during %s: %v", why, err)
		}
	})
	if !started { // Close began; it hands over itself
		lx.handingOver.Store(false)
	}
}

// maxHandOverGap bounds handOver's wait, as apply's retry pause is bounded.
const maxHandOverGap = 5 * time.Second

// monoNanos is a reading of the monotonic clock, in nanoseconds since the
// package was loaded (never 0), for times kept in atomics: the wall clock,
// set back, would make intervals negative.
func monoNanos() int64 { return int64(time.Since(monoStart)) + 1 }

var monoStart = time.Now()

// goFunc runs f in a goroutine that Close waits for, and reports whether
// it did: once Close has begun it starts nothing. f must return soon after
// closingCtx ends.
func (lx *Stream) goFunc(f func()) bool {
	lx.goMu.Lock()
	defer lx.goMu.Unlock()
	if lx.goStopped {
		return false
	}
	lx.goWG.Go(f)
	return true
}

// stopGoroutines makes goFunc start nothing more; then goWG.Wait waits for
// those it started.
func (lx *Stream) stopGoroutines() {
	lx.goMu.Lock()
	lx.goStopped = true
	lx.goMu.Unlock()
}

// transferLeadership hands the leadership over (see raftMu).
func (lx *Stream) transferLeadership() error {
	lx.wake() // idle.go
	return lx.raftCall(func() error { return lx.raft.LeadershipTransfer().Error() })
}

// raftCall runs fn, which asks Raft for something and waits for the
// answer, unless Raft is being stopped (see raftMu); shutdownRaft waits
// for the calls under way.
func (lx *Stream) raftCall(fn func() error) error {
	lx.raftMu.RLock()
	defer lx.raftMu.RUnlock()
	if lx.raftDown {
		return raft.ErrRaftShutdown
	}
	return fn()
}

// nodeHooks are what the default stream asks of its node: to act on the
// catalog's changes (fsm.onCatalog), and the other streams' Stats (for a
// status request).
type nodeHooks struct {
	onCatalog  func(catalogEvent)
	otherStats func() []Stats
	// defaultServers, for the other streams, are the members of the
	// default stream's configuration (raftPeerOK).
	defaultServers func() []string
	// stopping ends when the node's Close begins; nodeFresh reports
	// whether the node's default stream started with empty Raft state
	// (bootstrap.go).
	stopping  context.Context
	nodeFresh func() bool
	// tls is the node's current TLS configuration and its generation
	// (tlsreload.go).
	tls func() (*tls.Config, uint64)
}

func (lx *Stream) logf(format string, args ...any) { lx.diag.Printf(format, args...) }

// now is this node's clock: the time of the entries it originates and of
// its clock reports (seams.now is a test hook).
func (lx *Stream) now() time.Time {
	if lx.seams.now != nil {
		return lx.seams.now()
	}
	return time.Now()
}

// WaitReady blocks until this node knows a leader and has applied every
// entry it knows to be committed, or ctx ends. A node catching up from
// peers is not ready until the catch-up is done.
func (lx *Stream) WaitReady(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if lx.ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logx: waiting for a leader: %w", ctx.Err())
		case <-lx.closing:
			return ErrClosed
		case <-t.C:
		}
	}
}

func (lx *Stream) ready() bool {
	if lx.fsm.catchingUp() {
		return false
	}
	if addr, _ := lx.raft.LeaderWithID(); addr == "" {
		return false
	}
	c := lx.raft.CommitIndex()
	return c > 0 && lx.raft.AppliedIndex() >= c
}

// diagPrefix is what the diagnostics of stream name start with: nothing
// for the default stream (as before streams), "stream <name>: " for the
// others.
func diagPrefix(name string) string {
	if name == DefaultStream {
		return ""
	}
	return "stream " + name + ": "
}

// Name returns the stream's name.
func (lx *Stream) Name() string { return lx.name }

// named says which stream err comes from, unless it is the default stream.
func (lx *Stream) named(err error) error {
	if err == nil || lx.name == DefaultStream {
		return err
	}
	return fmt.Errorf("stream %q: %w", lx.name, err)
}

func (lx *Stream) voters() int {
	f := lx.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}
