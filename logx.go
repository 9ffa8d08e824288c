package logx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
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

	// ErrOutcomeUnknown is returned by Append (wrapped together with the
	// cause) when the entry was sent for commit but no answer came before the
	// caller's context ended or Close gave up: it may or may not be in the
	// log. It is never written twice.
	ErrOutcomeUnknown = errors.New("logx: outcome unknown, the entry may or may not be committed")

	// ErrCorrupt is returned by New when Dir's files contradict its
	// checkpoint.
	ErrCorrupt = errors.New("logx: corrupt data directory")

	// ErrRemoved is returned for entries logged on a node after it was
	// removed from the cluster (RemoveNode).
	ErrRemoved = errors.New("logx: this node was removed from the cluster")

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

// node is what a Logx holds beside its streams: Dir's lock and the one
// address (the mux) that every stream's connections share.
type node struct {
	lock    *dirLock
	mux     *mux
	streams []*Stream // the default stream first, then Config.Streams in order
	byName  map[string]*Stream

	stopBalance chan struct{} // closed by Close: balance returns
	balanceDone chan struct{} // closed when balance has returned

	closeOnce sync.Once
	closeErr  error
}

// New starts a node: it recovers Dir, starts a Raft group for each stream
// and listens on Addr. On a brand-new cluster every node bootstraps with
// Peers. New does not wait for a leader (the other nodes may not be up
// yet); calls made before one is elected are queued. Use WaitReady to wait
// until the node has joined.
func New(cfg Config) (_ *Logx, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLS == nil && cfg.TLSCAFile != "" {
		if cfg.TLS, err = LoadTLS(cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("logx: %w", err)
	}
	n := &node{byName: map[string]*Stream{}}
	if n.lock, err = lockDir(cfg.Dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			for _, s := range n.streams {
				_ = s.stop()
			}
			if n.mux != nil {
				n.mux.close()
			}
			n.lock.unlock()
		}
	}()
	ln, err := net.Listen("tcp", cfg.listenOn())
	if err != nil {
		return nil, fmt.Errorf("logx: %w", err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	n.mux = newMux(ln)
	n.mux.testHooks(cfg)
	n.mux.tls = cfg.TLS
	open := func(name string, scfg Config) error {
		s, err := newStream(scfg, n.mux, name)
		if err != nil {
			return err
		}
		n.streams = append(n.streams, s)
		n.byName[name] = s
		return nil
	}
	if err := open(DefaultStream, cfg); err != nil {
		return nil, err
	}
	for _, sc := range cfg.Streams {
		if err := open(sc.Name, cfg.streamConfig(sc)); err != nil {
			return nil, err
		}
	}
	n.mux.start()
	n.stopBalance, n.balanceDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(n.balanceDone)
		if len(n.streams) > 1 {
			n.balance(balanceEvery*cfg.withDefaults().ElectionTimeout, n.stopBalance)
		}
	}()
	return &Logx{defaultStream: n.streams[0], node: n}, nil
}

// Stream returns the stream called name (DefaultStream, or a name from
// Config.Streams), or an error wrapping ErrNoStream.
func (lx *Logx) Stream(name string) (*Stream, error) {
	if s := lx.node.byName[name]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNoStream, name)
}

// Streams returns the names of the node's streams: DefaultStream first,
// then Config.Streams in order.
func (lx *Logx) Streams() []string {
	names := make([]string, len(lx.node.streams))
	for i, s := range lx.node.streams {
		names[i] = s.name
	}
	return names
}

// WaitReady blocks until every stream of this node knows a leader and has
// applied every entry it knows to be committed, or ctx ends. A stream
// catching up from peers is not ready until the catch-up is done.
func (lx *Logx) WaitReady(ctx context.Context) error {
	for _, s := range lx.node.streams {
		if err := s.WaitReady(ctx); err != nil {
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
// committed in time fail with ErrClosed or ErrOutcomeUnknown. A catch-up
// from peers under way stops (between two chunks, or at once if it waits
// for a peer) and resumes at the next start. Close is idempotent: later
// calls return the first call's result.
//
// Close returns within CloseTimeout plus about one second (closeGrace,
// for stopping Raft and the files; a peer that does not answer is cut off
// then), plus, when this node leads, one ElectionTimeout for a barrier that
// passes its commit index on (commit.go) and the leadership transfer, which
// Raft ends within two ElectionTimeouts.
func (lx *Logx) Close() error {
	n := lx.node
	n.closeOnce.Do(func() {
		close(n.stopBalance)
		<-n.balanceDone
		errs := make([]error, len(n.streams))
		var wg sync.WaitGroup
		for i, s := range n.streams {
			wg.Go(func() { errs[i] = s.stop() })
		}
		wg.Wait()
		n.mux.close()
		n.lock.unlock()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
