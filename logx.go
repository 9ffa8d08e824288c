package logx

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// Errors returned by logx. Compare with errors.Is.
var (
	// ErrClosed is returned by calls made after Close has begun, and for
	// entries that were still queued, never sent, when Close gave up.
	ErrClosed = errors.New("logx: closed")

	// ErrEntryTooLarge is returned by Append and the slog handler for an
	// entry whose rendered size exceeds Config.MaxEntrySize. Nothing is logged.
	ErrEntryTooLarge = errors.New("logx: entry too large")

	// ErrQueueFull is returned by the slog handler, and counted by
	// Debug/Info/Warn/Error, when Config.DropWhenFull is set and the queue is
	// full. The entry is dropped.
	ErrQueueFull = errors.New("logx: queue full, entry dropped")

	// ErrEntriesLost is wrapped by Flush's (and Close's) error when
	// asynchronous entries (Debug/Info/Warn/Error, LogAttrs, the handler)
	// logged through the node since the last Flush that reported a loss
	// were not committed (their batch failed, or the call could not queue
	// the entry: too large, queue full with DropWhenFull), or their
	// outcome is unknown. Stats counts them (Failed, AsyncErrors).
	ErrEntriesLost = errors.New("logx: entries lost")

	// ErrOutcomeUnknown is returned by Append (wrapped together with the
	// cause) when the entry was sent for commit but no answer came before the
	// caller's context ended or Close gave up: it may or may not be in the
	// log. It is never written twice. CreateStream, DeleteStream,
	// Stream.SetClusterLevel and Stream.TruncateBefore return it too when
	// the leader that committed the change could not apply it (its disk
	// full) and another node leads now: the change may or may not have
	// been made. A cluster level, a stream's deletion and a node's removal
	// (SetClusterLevel, DeleteStream, RemoveNode) also get it when the
	// leader lost its leadership before the change committed: made again,
	// they could undo a later change or fail as not found. The others go
	// to the next leader, and get it when none answers before their
	// context ends. A change the leader proposed and could not commit
	// before the caller's context ended (its followers store nothing)
	// gets it too.
	ErrOutcomeUnknown = errors.New("logx: outcome unknown, the entry may or may not be committed")

	// ErrCorrupt is returned by New when Dir's files contradict its checkpoint.
	ErrCorrupt = store.ErrCorrupt

	// ErrRemoved is returned for entries logged on a node after it was
	// removed from the cluster (RemoveNode).
	ErrRemoved = errors.New("logx: this node was removed from the cluster")

	// ErrRejected is returned by Client.Send when the leader refused a
	// batch it was sent (a record that is not one well-formed line of the
	// cluster's format, or larger than the leader allows): nothing of it
	// was written.
	ErrRejected = errors.New("logx: rejected")

	// ErrLocked is returned by New when another Logx holds Dir.
	ErrLocked = errors.New("logx: data directory is in use")

	errClosed      = net.ErrClosed
	errReplayed    = errors.New("logx: replayed entry")
	errWaitAborted = errors.New("logx: wait aborted")
	errNoLeader    = errors.New("logx: no leader known")
)

// Level names usable with Append. They are log/slog's levels.
const (
	LevelDebug = slog.LevelDebug
	LevelInfo  = slog.LevelInfo
	LevelWarn  = slog.LevelWarn
	LevelError = slog.LevelError
)

// DefaultStream is the name of the stream that Logx's own logging methods
// (Info, Append, Handler, Reader, Watch, Stats and the rest) act on. Config's
// top-level file settings are its settings, and its files are in Dir
// itself, where the first release kept its log: a Dir written by the first
// release opens as the default stream.
const DefaultStream = "default"

// ErrNoStream is returned by Logx.Stream for a name the node does not hold.
var ErrNoStream = errors.New("logx: no such stream")

// Logx is one node of a replicated log cluster. It hosts the default stream
// and the streams declared in Config.Streams, which Stream returns. It is
// safe for concurrent use.
//
// A Logx embeds the default stream: every method of Stream can be called on
// it and acts on the default stream (Debug, Info, Warn, Error, LogAttrs,
// Append, Flush, Handler, Enabled, Level, SetLevel, OpenReader, Watch,
// Grep, Files, Stats, Members, Name), except WaitReady, which Logx has for
// all its streams.
type Logx struct {
	*defaultStream
	node *node
}

// defaultStream is the default Stream, embedded in Logx under a name that
// leaves the name Stream free for the method.
type defaultStream = Stream

// node is what a Logx holds beside its streams: Dir's lock, the one
// address (the mux) that every stream's connections share, and the streams.
type node struct {
	cfg Config // the node's, defaults filled in
	// dedupWindow is Config.DedupWindow as given (0: the cluster's), for
	// the streams' own Configs, which start from cfg.
	dedupWindow time.Duration
	seams       seams // a test's hooks (hooks.go); zero in normal use
	lock        *dirLock
	// starting is set while New opens the streams: one whose Raft state
	// is empty then asks its peers before it bootstraps, as on a node
	// started empty (Stream.askFirst). Its state may be empty because a
	// Close or a crash cut that asking short on the previous run, once
	// the default stream had recorded the catalog.
	starting atomic.Bool
	// startCatalog is the catalog of the default stream's checkpoint, read
	// as New begins: expectStream's until the default stream is listed.
	startCatalog map[string]*catalogEntry
	// tlsFiles is the TLS material loaded from Config's TLS files, which
	// a reload may replace (tlsreload.go); nil without them.
	tlsFiles *tlsFiles
	mux      *mux

	mu      sync.Mutex
	streams []*Stream // the default stream first, then in the order opened
	byName  map[string]*Stream
	changed chan struct{}    // closed and replaced when streams change
	openErr map[string]error // why tend could not open a stream
	events  []catalogEvent   // catalog changes not yet acted on (catalog.go)
	wake    chan struct{}    // has an item when events has

	cooldown map[string]time.Time // balance.go: tend's only
	// sumsKnown are the members that said they know BLAKE3 checksums
	// (sums.go): watchSums's only; sumsRounds counts chooseSums's calls
	// (for tests).
	sumsKnown  map[string]bool
	sumsRounds atomic.Uint64
	// rulesRetry paces adoptRules's tries (rules.go), and rulesHeld holds
	// the confGen of each stream a try left without the rules: tend's,
	// and adoptRules's while tend waits for it.
	rulesRetry retryAfter
	rulesHeld  map[*Stream]uint64
	rulesTries atomic.Uint64 // adoptRules's calls (for tests)
	// rounds counts balanceOnce's calls, handedTo the handovers it tried
	// by target (under mu; for tests).
	rounds   atomic.Uint64
	handedTo map[string]int

	stop     chan struct{} // closed by Close: tend and watchSums return
	done     chan struct{} // closed when tend has returned
	sumsDone chan struct{} // closed when watchSums has returned
	// stopCtx ends when stop is closed: it bounds what watchSums asks of
	// peers (sums.go), so that Close does not wait for a peer's answer.
	stopCtx    context.Context
	cancelStop context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// New starts a node: it recovers Dir, listens on Addr and starts a Raft
// group for each stream (the default stream, those of Config.Streams, and
// those the cluster's catalog lists). On a brand-new cluster a node
// bootstraps with Peers, unless a peer answers that a cluster with this
// node in it has committed already (then it waits for the leader, as
// after its Dir was emptied; asking takes at most Config.ElectionTimeout
// for each stream, and more while a peer with Raft state answers that it
// is still starting, until it answers in full or stops answering). New
// does not wait for a leader (the other nodes may not be up yet); calls
// made before one is elected are queued. Use WaitReady to wait until the
// node has joined.
func New(cfg Config) (*Logx, error) { return newNode(cfg, seams{}) }

// newNode is New with a test's seams (hooks.go).
func newNode(cfg Config, sm seams) (_ *Logx, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var tf *tlsFiles
	if cfg.TLS == nil && cfg.TLSCAFile != "" {
		if tf, err = loadTLSFiles(cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
		cfg.TLS = tf.current() // as first loaded; the streams ask tf for the current one
	}
	if err := store.MkdirSynced(cfg.Dir); err != nil {
		return nil, fmt.Errorf("logx: %w", err)
	}
	if f := cfg.OnAlarm; f != nil {
		// Every stream has its own monitor: one call at a time.
		var mu sync.Mutex
		cfg.OnAlarm = func(a Alarm) {
			mu.Lock()
			defer mu.Unlock()
			f(a)
		}
	}
	n := &node{cfg: cfg.withDefaults(), dedupWindow: cfg.DedupWindow, seams: sm, tlsFiles: tf, byName: map[string]*Stream{}, openErr: map[string]error{}, changed: make(chan struct{}), wake: make(chan struct{}, 1),
		cooldown: map[string]time.Time{}, sumsKnown: map[string]bool{}, handedTo: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{}), sumsDone: make(chan struct{})}
	if n.lock, err = lockDir(cfg.Dir); err != nil {
		return nil, err
	}
	n.stopCtx, n.cancelStop = context.WithCancel(context.Background())
	n.starting.Store(true)
	defer func() {
		if err != nil {
			n.cancelStop()
			for _, s := range n.streams {
				_ = s.stop()
			}
			if n.mux != nil {
				n.mux.close()
			}
			n.lock.unlock()
		}
	}()
	// The catalog as of the default stream's checkpoint: the declared
	// streams must agree with it, and it may list more.
	var catalog map[string]*catalogEntry
	st, existing, err := readState(cfg.Dir)
	if err == nil && existing {
		catalog = st.Catalog
	}
	n.startCatalog = catalog // before the node listens
	for i, sc := range cfg.Streams {
		e := catalog[sc.Name]
		switch {
		case e == nil:
		case e.Deleted != 0:
			return nil, &ConfigError{Field: fmt.Sprintf("Streams[%d]", i),
				Err: fmt.Errorf("stream %q was deleted from the cluster (DeleteStream), and a name is never used again: take it out of Config.Streams", sc.Name)}
		case !e.Spec.sameLayout(specOf(sc)):
			return nil, &ConfigError{Field: fmt.Sprintf("Streams[%d]", i),
				Err: fmt.Errorf("stream %q: the cluster's catalog has it with other file settings (%+v)", sc.Name, e.Spec)}
		}
	}
	ln, err := net.Listen("tcp", cmp.Or(cfg.ListenAddr, cfg.Addr))
	if err != nil {
		if cfg.ListenAddr == "" {
			return nil, fmt.Errorf("logx: listening on Addr (set ListenAddr to bind another address): %w", err)
		}
		return nil, fmt.Errorf("logx: listening on ListenAddr: %w", err)
	}
	if sm.listener != nil {
		ln = sm.listener(ln)
	}
	switch {
	case tf != nil:
		ln = tls.NewListener(ln, tf.serverConfig())
	case cfg.TLS != nil:
		ln = tls.NewListener(ln, cfg.TLS)
	}
	n.mux = newMux(ln, cfg, sm, n.tlsConfig)
	// The node answers from now on: a status request for a stream it is
	// to open says it is starting, and whether the stream has Raft state
	// (bootstrap.go); other connections wait for their stream to open.
	n.mux.starting = n.startingState
	n.mux.expect = n.expectStream
	n.mux.startStreams = n.startStreams()
	n.mux.start()
	def, err := newStream(cfg, sm, n.mux, DefaultStream, &nodeHooks{onCatalog: n.catalogEvent, otherStats: n.otherStats, tls: n.tlsNow, stopping: n.stopCtx})
	if err != nil {
		return nil, err
	}
	if err := sm.open(DefaultStream, "served"); err != nil { // it serves requests, not listed yet
		_ = def.stop()
		return nil, err
	}
	n.add(def)
	for i, sc := range cfg.Streams {
		// A declared stream starts with the catalog's voters, as on every
		// node. One the catalog lacks waits, without a configuration,
		// until the catalog records it (tend asks for that) and then
		// starts with its voters: one source of voters for every node.
		var err error
		if e := catalog[sc.Name]; e != nil {
			if _, serr := os.Stat(deletedDir(cfg.Dir, *e)); serr == nil {
				return nil, &ConfigError{Field: fmt.Sprintf("Streams[%d]", i),
					Err: fmt.Errorf("stream %q was deleted from the cluster (DeleteStream), and a name is never used again: take it out of Config.Streams", sc.Name)}
			}
			err = n.open(sc, e.Voters, false)
		} else {
			err = n.open(sc, nil, true)
		}
		if err != nil {
			return nil, err
		}
	}
	// Deleted streams whose directory is still in place (the deletion's
	// event was lost to a Close or a crash): move them aside now.
	for _, e := range catalog {
		if e.Deleted != 0 {
			if err := retireStreamDir(cfg.Dir, *e); err != nil {
				return nil, fmt.Errorf("logx: moving deleted stream %q's directory aside: %w", e.Spec.Name, err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(live(catalog))) {
		e := catalog[name]
		if n.get(name) != nil {
			continue
		}
		if _, err := os.Stat(deletedDir(cfg.Dir, *e)); err == nil {
			continue // deleted after the checkpoint: the replay deletes it again
		}
		if err := n.open(e.Spec.config(), e.Voters, false); err != nil {
			return nil, err
		}
	}
	n.starting.Store(false)
	go n.tend()
	go n.watchSums()
	return &Logx{defaultStream: def, node: n}, nil
}

// startingState says, for a stream this node has not begun to open,
// whether it is to open it (ok: the default stream until it opens, and
// the streams expectStream names, unless tend failed to open it; not once
// the node closes) and whether its directory holds Raft state
// (bootstrap.go).
func (n *node) startingState(name string) (raftState, ok bool) {
	if n.stopCtx.Err() != nil { // Close, or New failing
		return false, false
	}
	n.mu.Lock()
	failed := n.openErr[name] != nil // tend will not open it
	n.mu.Unlock()
	if failed || name != DefaultStream && !n.expectStream(name) || n.get(name) != nil {
		return false, false
	}
	dir := n.cfg.Dir
	if name != DefaultStream {
		dir = n.cfg.streamConfig(StreamConfig{Name: name}).Dir
	}
	return raftStateOnDisk(dir), true
}

// startStreams is how many streams the node is to open as it starts:
// the default one, the declared ones and the live ones of the
// checkpoint's catalog.
func (n *node) startStreams() int {
	names := map[string]bool{DefaultStream: true}
	for _, sc := range n.cfg.Streams {
		names[sc.Name] = true
	}
	for name, e := range n.startCatalog {
		if e.Deleted == 0 {
			names[name] = true
		}
	}
	return len(names)
}

// expectStream says whether this node is to open stream name: declared in
// its Config, or live in the catalog as it has applied it.
func (n *node) expectStream(name string) bool {
	if slices.ContainsFunc(n.cfg.Streams, func(sc StreamConfig) bool { return sc.Name == name }) {
		return true
	}
	catalog := n.startCatalog // the default stream is not listed yet
	if def := n.get(DefaultStream); def != nil {
		catalog = def.fsm.catalogView()
	}
	e := catalog[name]
	return e != nil && e.Deleted == 0
}

// open opens the stream sc. voters, from the catalog, are its group's
// first voters (nil: Peers); a node not among them, or told to join,
// starts without a configuration and waits to be added (or, for a
// declared stream the catalog lacks, bootstrapped by tend).
func (n *node) open(sc StreamConfig, voters []string, join bool) error {
	// Declared streams were validated with Config; a catalog entry is
	// checked when proposed, but one an older version committed may
	// still hold what this version refuses.
	if err := specOf(sc).checkLogged(); err != nil {
		return fmt.Errorf("logx: stream %q: %w", sc.Name, err)
	}
	cfg := n.cfg.streamConfig(sc)
	cfg.QueueSize = min(cfg.QueueSize, maxQueue) // one an earlier version logged (Config.logged)
	cfg.DedupWindow = n.dedupWindow              // zero takes the stream's recorded one
	if voters != nil {
		cfg.Peers = slices.Clone(voters)
		cfg.Join = !slices.Contains(voters, cfg.Addr)
	}
	cfg.Join = cfg.Join || join
	s, err := newStream(cfg, n.seams, n.mux, sc.Name, &nodeHooks{defaultServers: n.defaultServers, tls: n.tlsNow, stopping: n.stopCtx,
		nodeFresh: func() bool { return n.starting.Load() || n.list()[0].startedEmpty }})
	if err != nil {
		return err
	}
	n.add(s)
	return nil
}

func (n *node) add(s *Stream) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.streams = append(n.streams, s)
	n.byName[s.name] = s
	n.changedLocked()
}

// changedLocked wakes waitStream's callers: the streams, or the reasons one
// could not be opened, changed. n.mu is held.
func (n *node) changedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *node) get(name string) *Stream {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byName[name]
}

// list returns the streams, the default one first.
func (n *node) list() []*Stream {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.streams)
}

// remove takes the stream name out of the node's list and returns it.
func (n *node) remove(name string) *Stream {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.byName[name]
	if s == nil {
		return nil
	}
	delete(n.byName, name)
	n.streams = slices.DeleteFunc(n.streams, func(x *Stream) bool { return x == s })
	n.changedLocked()
	return s
}

// waitStream waits until this node has the stream name open (present) or
// not, once its creation (or deletion) is committed: an error says that
// the change is made, and wraps ctx's error, or ErrClosed if the node
// closes first.
func (n *node) waitStream(ctx context.Context, name string, present bool) error {
	made, done := "created", "opened"
	if !present {
		made, done = "deleted", "closed"
	}
	for {
		n.mu.Lock()
		_, ok := n.byName[name]
		ch := n.changed
		oerr := n.openErr[name]
		n.mu.Unlock()
		if ok == present {
			return nil
		}
		if present && oerr != nil {
			return fmt.Errorf("logx: stream %q is created in the catalog, but opening it here failed (it opens at this node's next start): %w", name, oerr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logx: stream %q is %s in the catalog; waiting for it to be %s here: %w", name, made, done, ctx.Err())
		case <-n.stop:
			return fmt.Errorf("logx: stream %q is %s in the catalog, but this node closed before it was %s here: %w", name, made, done, ErrClosed)
		case <-ch:
		}
	}
}

// defaultServers returns the addresses of the default stream's members.
func (n *node) defaultServers() []string {
	if n.seams.membersUnknown != nil && n.seams.membersUnknown() {
		return nil
	}
	return n.list()[0].knownMembers()
}

// deleted reports whether s was deleted: the catalog says so, or the node
// no longer lists it.
func (n *node) deleted(s *Stream) bool {
	if e := n.list()[0].fsm.catalogView()[s.name]; e != nil && e.Deleted != 0 {
		return true
	}
	return n.get(s.name) != s
}

// otherStats returns the Stats of every stream but the default one.
func (n *node) otherStats() []Stats {
	var out []Stats
	for i, s := range n.list() {
		if i > 0 { // the default stream answers before the node lists it (newNode)
			out = append(out, s.Stats())
		}
	}
	return out
}

// Stream returns the stream called name (DefaultStream, one of
// Config.Streams, or one created with CreateStream), or an error wrapping
// ErrNoStream.
func (lx *Logx) Stream(name string) (*Stream, error) {
	if s := lx.node.get(name); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNoStream, name)
}

// Streams returns the names of the node's streams: DefaultStream first,
// then the others in the order they were opened.
func (lx *Logx) Streams() []string {
	var names []string
	for _, s := range lx.node.list() {
		names = append(names, s.name)
	}
	return names
}

// WaitReady blocks until every stream of this node knows a leader and has
// applied every entry it knows to be committed, or ctx ends. A stream
// catching up from peers is not ready until the catch-up is done.
func (lx *Logx) WaitReady(ctx context.Context) error {
	for _, s := range lx.node.list() {
		if err := s.WaitReady(ctx); err != nil {
			if errors.Is(err, ErrClosed) && lx.node.deleted(s) {
				continue // deleted meanwhile
			}
			return s.named(err)
		}
	}
	return nil
}

// Close closes every stream, then the node's address, and unlocks Dir.
// Each stream flushes its queue (waiting at most Config.CloseTimeout),
// hands its leadership to another node if this one leads, stops its Raft
// group and every goroutine it started, and checkpoints and closes its
// files; the streams close at once, side by side. Entries that could not be
// committed in time fail with ErrClosed or ErrOutcomeUnknown, and if
// asynchronous entries were among them, Close's error wraps
// ErrEntriesLost (Stats counts them: Failed). A catch-up
// from peers under way stops (between two chunks, or at once if it waits
// for a peer) and resumes at the next start. Close is idempotent: later
// calls return the first call's result.
//
// Close returns within CloseTimeout plus about one second (closeGrace,
// for stopping Raft and the files; a peer that does not answer is cut off
// then), plus, when this node leads, one ElectionTimeout for a barrier that
// passes its commit index on (commit.go) and the leadership transfer, which
// Raft ends within two ElectionTimeouts. A batch still not committed an
// ElectionTimeout after CloseTimeout (a leader whose followers store
// nothing) has the stream's connections cut instead: the leader steps down
// within another, and its callers get ErrOutcomeUnknown. Raft trying a
// failed read of its log again (logguard.go) adds up to 10 s; if the read
// still fails, Raft panics and the process ends. A stream this node is
// closing because the catalog deleted it when Close begins closes beside
// the others, within the same bound.
func (lx *Logx) Close() error {
	n := lx.node
	n.closeOnce.Do(func() {
		close(n.stop)
		n.cancelStop()
		<-n.done
		<-n.sumsDone
		streams := n.list()
		errs := make([]error, len(streams))
		var wg sync.WaitGroup
		for i, s := range streams {
			wg.Go(func() { errs[i] = s.stop() })
		}
		wg.Wait()
		n.mux.close()
		n.lock.unlock()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
