package logx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
)

// The catalog: which streams the cluster has, with their settings. It is
// replicated state of the default stream: catalog commands in its log, the
// catalog in its checkpoint (state.json) and its snapshots, so every node,
// one that was down or is new included, learns every stream in log order.
//
//   - Every node has the streams of its Config.Streams that the catalog
//     lacks recorded (recordDeclared: committed by the default stream's
//     leader, asked of it by the others), so the catalog lists the
//     declared streams too.
//   - CreateStream and DeleteStream, on any node, ask the default stream's
//     leader (a control request) to commit a create or delete command.
//   - Every node, applying a command, opens or closes the stream (the
//     node's catalog worker, node.tend); a stream deleted is closed and its
//     directory renamed to Dir/streams/.deleted-<name>-<index>, where
//     index is the Raft index of the stream's creation: its log files and
//     state.json are kept for the operator to archive or remove, its Raft
//     log and snapshots are removed.
//   - A deleted stream's name stays in the catalog, marked deleted, and is
//     never used again: connections and Raft members name a stream by its
//     name only, so a node that was down while a stream was deleted and
//     created again would otherwise bring the old group back under the
//     new one's name. The catalog holds at most maxCatalog names, deleted
//     ones included, which bounds what creating and deleting leaves on
//     disk.
//   - At start a node opens the streams of its Config and of the catalog
//     its checkpoint holds; a stream of its Config whose settings differ
//     from the catalog's is refused (New fails with a *ConfigError).
//
// Catalog command wire form: byte cmdCatalog, then the JSON of a
// catalogCmd.
const cmdCatalog byte = 18

// maxCatalogCmd bounds a catalog command; maxStreams bounds the live
// streams, and maxCatalog the names of the catalog, deleted ones included.
const (
	maxCatalogCmd = 16 << 10
	maxStreams    = 256
	maxCatalog    = 1024
)

// streamSpec is a stream's entry in the catalog: StreamConfig, with the
// level as a number.
type streamSpec struct {
	Name         string        `json:"name"`
	File         string        `json:"file,omitempty"`
	MaxSize      int64         `json:"max_size,omitempty"`
	RotateEvery  time.Duration `json:"rotate_every,omitempty"`
	MaxFiles     int           `json:"max_files,omitempty"`
	MaxAge       time.Duration `json:"max_age,omitempty"`
	Format       Format        `json:"format,omitempty"`
	Level        *slog.Level   `json:"level,omitempty"`
	QueueSize    int           `json:"queue_size,omitempty"`
	DropWhenFull bool          `json:"drop_when_full,omitempty"`
	MaxEntrySize int           `json:"max_entry_size,omitempty"`
}

func specOf(sc StreamConfig) streamSpec {
	s := streamSpec{Name: sc.Name, File: sc.File, MaxSize: sc.MaxSize, RotateEvery: sc.RotateEvery, MaxFiles: sc.MaxFiles,
		MaxAge: sc.MaxAge, Format: sc.Format, QueueSize: sc.QueueSize, DropWhenFull: sc.DropWhenFull, MaxEntrySize: sc.MaxEntrySize}
	if sc.Level != nil {
		l := sc.Level.Level()
		s.Level = &l
	}
	return s
}

func (s streamSpec) config() StreamConfig {
	sc := StreamConfig{Name: s.Name, File: s.File, MaxSize: s.MaxSize, RotateEvery: s.RotateEvery, MaxFiles: s.MaxFiles,
		MaxAge: s.MaxAge, Format: s.Format, QueueSize: s.QueueSize, DropWhenFull: s.DropWhenFull, MaxEntrySize: s.MaxEntrySize}
	if s.Level != nil {
		sc.Level = *s.Level
	}
	return sc
}

// sameFiles reports whether s and o write the same files: the settings
// every node must share (the queue and the level are each node's own).
// A node's Config is compared with sameLayout instead: retention changes
// through the stream's log (SetRetention), whose limits hold over a
// Config's.
func (s streamSpec) sameFiles(o streamSpec) bool {
	return s.Name == o.Name && s.File == o.File && s.MaxSize == o.MaxSize && s.RotateEvery == o.RotateEvery &&
		s.MaxFiles == o.MaxFiles && s.MaxAge == o.MaxAge && s.Format == o.Format
}

// sameSpec reports whether s and o are the same in every setting.
func (s streamSpec) sameSpec(o streamSpec) bool {
	sameLevel := s.Level == nil && o.Level == nil || s.Level != nil && o.Level != nil && *s.Level == *o.Level
	return s.sameFiles(o) && sameLevel && s.QueueSize == o.QueueSize && s.DropWhenFull == o.DropWhenFull && s.MaxEntrySize == o.MaxEntrySize
}

// sameLayout is sameFiles without MaxFiles and MaxAge.
func (s streamSpec) sameLayout(o streamSpec) bool {
	s.MaxFiles, s.MaxAge, o.MaxFiles, o.MaxAge = 0, 0, 0, 0
	return s.sameFiles(o)
}

// check validates a spec as a Config declaring it would be.
func (s streamSpec) check() error { return s.checkAs(false) }

// checkLogged is check for a spec the log or a checkpoint already holds:
// one an earlier version committed may hold a MaxAge under a minute
// (loggedMaxAge), which every node still takes, and the bounds of its
// version (Config.logged). A new one (CreateStream, a create-stream
// request) gets check.
func (s streamSpec) checkLogged() error {
	s.MaxAge = loggedMaxAge(s.MaxAge)
	return s.checkAs(true)
}

func (s streamSpec) checkAs(logged bool) error {
	c := Config{NodeID: "x", Addr: "x:1", Peers: []string{"x:1"}, Dir: "x", Streams: []StreamConfig{s.config()}, logged: logged}
	return c.Validate()
}

// catalogCmd is a catalog command.
type catalogCmd struct {
	Op     string      `json:"op"` // "create" or "delete"
	Stream *streamSpec `json:"stream,omitempty"`
	Name   string      `json:"name,omitempty"` // delete
	// Voters, with create, are the servers of the default stream's
	// configuration when the leader proposed it: the new stream's group
	// starts with them as its voters, on every node alike.
	Voters []string `json:"voters,omitempty"`
}

// catalogEntry is a stream in the catalog.
type catalogEntry struct {
	Spec    streamSpec `json:"spec"`
	Voters  []string   `json:"voters,omitempty"`
	Index   uint64     `json:"index"`             // the Raft index of its creation
	Deleted uint64     `json:"deleted,omitempty"` // the Raft index of its deletion; 0: live
}

// live returns the streams of cat that are not deleted.
func live(cat map[string]*catalogEntry) map[string]*catalogEntry {
	out := map[string]*catalogEntry{}
	for name, e := range cat {
		if e.Deleted == 0 {
			out[name] = e
		}
	}
	return out
}

func appendCatalogCmd(dst []byte, c catalogCmd) []byte {
	b, _ := json.Marshal(c) // cannot fail: plain fields
	return append(append(dst, cmdCatalog), b...)
}

// readCatalogCmd decodes and checks a catalog command.
func readCatalogCmd(b []byte) (catalogCmd, error) {
	var c catalogCmd
	if len(b) < 1 || b[0] != cmdCatalog || len(b) > maxCatalogCmd {
		return c, errors.New("logx: malformed catalog command")
	}
	if err := json.Unmarshal(b[1:], &c); err != nil {
		return c, fmt.Errorf("logx: malformed catalog command: %w", err)
	}
	switch c.Op {
	case "create":
		if c.Stream == nil {
			return c, errors.New("logx: catalog: create without a stream")
		}
		if err := c.Stream.checkLogged(); err != nil {
			return c, fmt.Errorf("logx: catalog: %w", err)
		}
		if len(c.Voters) == 0 || len(c.Voters) > maxVoters {
			return c, fmt.Errorf("logx: catalog: create with %d voters", len(c.Voters))
		}
		for _, v := range c.Voters {
			if err := checkAddr(v); err != nil {
				return c, fmt.Errorf("logx: catalog: voter: %w", err)
			}
		}
	case "delete":
		if err := checkStreamName(c.Name); err != nil || c.Name == DefaultStream {
			return c, fmt.Errorf("logx: catalog: cannot delete stream %q", c.Name)
		}
	default:
		return c, fmt.Errorf("logx: catalog: unknown operation %q", c.Op)
	}
	return c, nil
}

// catalogEvent tells the node of a change of the catalog, in log order.
type catalogEvent struct {
	deleted bool
	entry   catalogEntry
}

// applyCatalog applies a catalog command: only the default stream's log
// holds them (f.catalogOK). A create of a stream the catalog has with the
// same settings changes nothing; with other settings, or a delete of a
// stream it lacks, is refused (the proposer gets the error) and changes
// nothing. (Until 2026-12-07 a create with the same file settings and
// other node settings was taken as the same: the answer differs, the
// catalog does not, so nodes of both versions agree.)
func (f *fsm) applyCatalog(index uint64, data []byte) applyResult {
	if f.onCatalog == nil {
		return applyResult{err: errors.New("logx: a catalog command in a stream other than the default one")}
	}
	c, err := readCatalogCmd(data)
	if err != nil {
		return applyResult{err: err}
	}
	cat := maps.Clone(f.st.Catalog)
	if cat == nil {
		cat = map[string]*catalogEntry{}
	}
	var ev catalogEvent
	switch c.Op {
	case "create":
		if e := cat[c.Stream.Name]; e != nil {
			switch {
			case e.Deleted != 0:
				return applyResult{err: fmt.Errorf("logx: stream %q was deleted; a stream's name is never used again", c.Stream.Name)}
			case e.Spec.sameSpec(*c.Stream):
				return applyResult{}
			case e.Spec.sameFiles(*c.Stream):
				// Not taken silently: the nodes that do not declare the
				// stream use the catalog's.
				return applyResult{err: fmt.Errorf("logx: stream %q exists with other node settings (Level, QueueSize, DropWhenFull or MaxEntrySize): the nodes that do not declare it in Config.Streams use the catalog's, the others their own", c.Stream.Name)}
			}
			return applyResult{err: fmt.Errorf("logx: stream %q exists with other settings", c.Stream.Name)}
		}
		if n := len(live(cat)); n >= maxStreams {
			return applyResult{err: fmt.Errorf("logx: the cluster has %d streams, the most it may", n)}
		}
		if len(cat) >= maxCatalog {
			return applyResult{err: fmt.Errorf("logx: the catalog holds %d names, deleted streams' included, the most it may", len(cat))}
		}
		e := &catalogEntry{Spec: *c.Stream, Voters: slices.Clone(c.Voters), Index: index}
		cat[c.Stream.Name] = e
		ev.entry = *e
	default:
		e := cat[c.Name]
		if e == nil || e.Deleted != 0 {
			return applyResult{err: fmt.Errorf("%w: %q", ErrNoStream, c.Name)}
		}
		d := *e
		d.Deleted = index
		cat[c.Name] = &d
		ev = catalogEvent{deleted: true, entry: d}
	}
	f.st.Catalog = cat
	f.catalog.Store(&cat)
	f.onCatalog(ev)
	return applyResult{}
}

// useCatalog makes cat (from a snapshot, now in f.st) the catalog and
// tells the node of every difference from old, the one it replaces: a
// stream deleted in cat that old did not know is a deletion too, since
// the node may have opened it from its Config (a declared stream, on a new
// node catching up from a snapshot taken after the deletion: it stayed
// open for good, never led, and New refused the next start).
func (f *fsm) useCatalog(old, cat map[string]*catalogEntry) {
	f.catalog.Store(&cat)
	if f.onCatalog == nil {
		return
	}
	was, is := live(old), live(cat)
	for _, name := range slices.Sorted(maps.Keys(cat)) {
		if e := cat[name]; e.Deleted != 0 && (was[name] != nil || old[name] == nil) {
			f.onCatalog(catalogEvent{deleted: true, entry: *e})
		}
	}
	for name, e := range was {
		if is[name] == nil && cat[name] == nil {
			f.onCatalog(catalogEvent{deleted: true, entry: *e})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(is)) {
		if was[name] == nil {
			f.onCatalog(catalogEvent{entry: *is[name]})
		}
	}
}

// checkCatalog checks a catalog read from a checkpoint or a snapshot.
func checkCatalog(cat map[string]*catalogEntry) error {
	if len(cat) > maxCatalog || len(live(cat)) > maxStreams {
		return fmt.Errorf("catalog of %d streams", len(cat))
	}
	for name, e := range cat {
		if e == nil || e.Spec.Name != name {
			return fmt.Errorf("catalog entry %q is malformed", name)
		}
		if e.Deleted != 0 {
			// Only its name is used again (to refuse it, and to move its
			// directory aside), so its settings are not checked: an
			// earlier version took some this one refuses (a File of 235
			// bytes or more), and refusing a deleted stream's made every
			// node upgraded over that catalog fail to start.
			if err := checkStreamName(name); err != nil || name == DefaultStream {
				return fmt.Errorf("catalog entry %q: not a stream that can be deleted", name)
			}
			continue
		}
		if err := e.Spec.checkLogged(); err != nil {
			return fmt.Errorf("catalog entry %q: %w", name, err)
		}
	}
	return nil
}

// CreateStream creates the stream sc on every node of the cluster: it
// commits it to the catalog through the default stream's leader (any node
// may be asked), and returns once this node has opened it. Every other node
// opens it as it applies the catalog command, a node that is down when it
// starts again. Creating a stream that exists with the same settings does
// nothing; with other settings it fails (node settings too: Level,
// QueueSize, DropWhenFull, MaxEntrySize, which the nodes that do not
// declare the stream take from the catalog), and so does the name of a
// deleted stream, which is never used again. The stream's group starts
// with the voters of the default stream's configuration. An error that says the stream is
// created in the catalog came after the commit (ctx ended, or this node
// closed: ErrClosed, before it opened the stream): the stream exists.
func (lx *Logx) CreateStream(ctx context.Context, sc StreamConfig) error {
	spec := specOf(sc)
	if err := spec.check(); err != nil {
		return err
	}
	if err := lx.defaultStream.control(ctx, controlRequest{Op: "create-stream", Stream: &spec}); err != nil {
		return err
	}
	return lx.node.waitStream(ctx, sc.Name, true)
}

// DeleteStream deletes the stream name from every node of the cluster: it
// commits the deletion to the catalog through the default stream's leader,
// and returns once this node has closed the stream and moved its files.
// Every node closes it and renames its directory to
// Dir/streams/.deleted-<name>-<index> (index: the Raft index of the
// stream's creation; ".2" and on appended if that name is taken): its log
// files and state.json stay until the operator removes them, its Raft log
// and snapshots are removed. The name is never used again. The default
// stream cannot be deleted, nor a stream this node's Config, or the default
// stream's leader's, declares (remove it from every node's Config first:
// the nodes record the declared streams). As with CreateStream, an error
// that says the stream is deleted in the catalog came after the commit.
func (lx *Logx) DeleteStream(ctx context.Context, name string) error {
	if name == DefaultStream {
		return errors.New("logx: the default stream cannot be deleted")
	}
	if err := checkStreamName(name); err != nil {
		return fmt.Errorf("logx: DeleteStream: %w", err)
	}
	for _, sc := range lx.defaultStream.cfg.Streams {
		if sc.Name == name {
			return fmt.Errorf("logx: stream %q is declared in this node's Config.Streams", name)
		}
	}
	if err := lx.defaultStream.control(ctx, controlRequest{Op: "delete-stream", Name: name}); err != nil {
		return err
	}
	return lx.node.waitStream(ctx, name, false)
}

// FeatureVersion is what this logx knows, as nodes tell each other in
// Stats.Version: 2 is streams (the catalog, the stream preface), 3 the
// cluster level (clusterlevel.go) and explicit truncation (truncate.go), 4
// BLAKE3 checksums (sums.go), 5 retention commands (setretention.go), 6
// apply rules 1 (rules.go).
// Nodes of earlier versions skip the
// commands they do not know, so a stream is not created, nor a cluster
// level set, while a voter says it does not know them, and no node
// writes BLAKE3 checksums while a member says so (docs/guarantees.md,
// "Upgrades").
const FeatureVersion = 6

// streamsFeature is the FeatureVersion that knows streams.
const streamsFeature = 2

// proposeCatalogCmd commits c on this node, the default stream's leader,
// with the servers of its configuration as a create's voters. It gives up
// waiting for the commit when ctx ends (applyLocalUntil). A create holds
// the default stream's membership slot (confChange) from reading the
// voters to the commit: a RemoveNode or AddNode whose change to the
// default stream committed in between (the voters' version asks take up
// to ForwardTimeout each) would have missed the new stream, which then
// kept a removed node as a voter, or lacked an added one.
func (lx *Stream) proposeCatalogCmd(ctx context.Context, c catalogCmd) error {
	if c.Op == "create" {
		// As a peer's request is checked (parseControlRequest): a
		// node's own reaches here unparsed.
		if err := c.Stream.check(); err != nil {
			return fmt.Errorf("logx: not creating stream %q: %w", c.Stream.Name, err)
		}
		release, err := lx.confChange(ctx)
		if err != nil {
			return fmt.Errorf("logx: not creating stream %q: %w", c.Stream.Name, err)
		}
		defer release()
		// Voters only: a node being added joins the new group later.
		if c.Voters, err = lx.serverAddrs(true); err != nil {
			return err
		}
		if h := lx.seams.creating; h != nil {
			h(c.Voters)
		}
		if err := lx.votersKnow(c.Voters, streamsFeature, "streams"); err != nil {
			return fmt.Errorf("logx: not creating stream %q: %w", c.Stream.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		// The asker gave up while the voters were asked: it was told the
		// change failed, or may have, so it is not made behind its back.
		return fmt.Errorf("logx: not changing the catalog: %w", err)
	}
	_, _, err := lx.applyLocalUntil(ctx, appendCatalogCmd(nil, c), nil)
	return err
}

// votersKnow refuses a command (a stream's creation, a cluster level)
// while a voter runs a logx older than version, the FeatureVersion that
// knows it (a logx without streams gives none): that node would skip the
// command, and after its upgrade never learn of it (what says what it is
// that they must know). Every voter must answer, unless it is down: the leader's
// heartbeats to it fail, nothing listens at its address, or its name does
// not resolve. A voter down is not held against the creation, so that a
// stream is created with a majority up; it must come back running this
// version (docs/guarantees.md, "Upgrades"). A voter that is up but slow
// fails the creation, which can be tried again.
func (lx *Stream) votersKnow(voters []string, version int, what string) error {
	down := map[string]bool{}
	for _, p := range lx.peers() {
		down[p.Addr] = p.Failing
	}
	base, stop := lx.untilClose()
	defer stop()
	for _, v := range voters {
		if v == lx.cfg.Addr {
			continue
		}
		ctx, cancel := context.WithTimeout(base, lx.cfg.ForwardTimeout)
		st, _, err := lx.remoteStatus(ctx, v)
		cancel()
		if err != nil && base.Err() != nil {
			return ErrClosed
		}
		if err != nil {
			// A resolver that fails for a while (a timeout, a server
			// error) says nothing of the voter: only "no such name" does.
			var dnsErr *net.DNSError
			if down[v] || errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				continue // down (nothing listens there, or no such name): see above
			}
			return fmt.Errorf("voter %s did not say which version it runs: %w", v, err)
		}
		if st.Version < version {
			return fmt.Errorf("voter %s runs a logx without %s (version %d): upgrade every node first", v, what, st.Version)
		}
	}
	return nil
}

// recordDeclared has the streams of this node's Config that the catalog
// lacks recorded (node.tend has it called on the default stream, one call
// at a time, on a goroutine of its own): committed here
// if this node leads the default stream, asked of its leader otherwise,
// since a declared stream starts only once the catalog lists it. It
// reports whether every declared stream is in the catalog.
func (lx *Stream) recordDeclared() bool {
	if !lx.declaredRetry.due() {
		return false
	}
	cat := lx.fsm.catalogView()
	all := true
	for _, sc := range lx.cfg.Streams {
		if cat[sc.Name] != nil {
			continue // a deleted one too: New refuses to start with it
		}
		all = false
		spec := specOf(sc)
		var err error
		if lx.raft.State() == raft.Leader {
			// Until the node's Close begins, which waits for this: a
			// leader that cannot commit (its followers' disks full)
			// holds it until then, but nothing else of tend's.
			base, stop := lx.untilClose()
			err = lx.proposeCatalogCmd(base, catalogCmd{Op: "create", Stream: &spec})
			stop()
		} else {
			base, stop := lx.untilClose()
			ctx, cancel := context.WithTimeout(base, lx.cfg.ElectionTimeout)
			err = lx.control(ctx, controlRequest{Op: "create-stream", Stream: &spec})
			cancel()
			stop()
		}
		if err != nil {
			if !errors.Is(err, ErrClosed) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				// Refused. A refusal that passes (a leader just elected,
				// a voter still starting) is tried again at the usual
				// pace; one that lasts (the catalog full, a voter without
				// streams) waits longer each time, up to a minute: each
				// try commits a command, or asks every voter.
				et := lx.cfg.ElectionTimeout
				if wait, first := lx.declaredRetry.failed(et/4, declaredPatience*et, declaredRetryMax); first || wait > et/4 {
					lx.logf("logx: recording stream %q in the catalog: %v; trying again in %v", sc.Name, err, wait)
				}
			}
			return false
		}
	}
	lx.declaredRetry.reset()
	return all
}

// recordDeclared's tries go on at their usual pace while refusals have
// lasted less than declaredPatience ElectionTimeouts, and then wait twice
// as long each time, up to declaredRetryMax.
const (
	declaredPatience = 10
	declaredRetryMax = time.Minute
)

// retryAfter spaces the tries of something refused: while the refusals
// have lasted less than a patience, the next try waits a first wait; after
// that, twice the last wait, up to a most. The caller serializes its calls
// (node.tend: one try at a time).
type retryAfter struct {
	since int64         // monoNanos of the first refusal since the last success (0: none)
	next  int64         // monoNanos before which no try is due
	wait  time.Duration // the last wait
}

// due reports whether a try is due.
func (r *retryAfter) due() bool { return monoNanos() >= r.next }

// failed notes a refusal and returns the wait before the next try, and
// whether it is the first refusal since the last success.
func (r *retryAfter) failed(first, patience, most time.Duration) (wait time.Duration, firstRefusal bool) {
	now := monoNanos()
	if firstRefusal = r.since == 0; firstRefusal {
		r.since = now
	}
	wait = first
	if time.Duration(now-r.since) >= patience {
		wait = min(max(2*r.wait, first), most)
	}
	r.wait, r.next = wait, now+int64(wait)
	return wait, firstRefusal
}

// reset makes the next try due at once, with the first wait after it.
func (r *retryAfter) reset() { *r = retryAfter{} }

// bootstrapIfEmpty starts the stream's group with voters if it has no
// configuration yet and this node is one of them: a declared stream that
// this node opened before the catalog listed it.
func (lx *Stream) bootstrapIfEmpty(voters []string) {
	if !slices.Contains(voters, lx.cfg.Addr) {
		return
	}
	if have, err := lx.serverAddrs(false); err != nil || len(have) > 0 {
		return
	}
	peer, members, err := lx.askFirst(voters) // bootstrap.go
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			lx.logf("%v", err)
		}
		return
	}
	if peer != "" {
		lx.skipBootstrap(peer, members)
		return
	}
	err = lx.raftCall(func() error { return lx.raft.BootstrapCluster(bootstrapConfig(voters)).Error() })
	if err == nil {
		lx.bootstrapped.Store(true)
	} else if !errors.Is(err, raft.ErrCantBootstrap) && !errors.Is(err, raft.ErrRaftShutdown) {
		lx.logf("logx: starting the group with the catalog's voters: %v", err)
	}
}

// catalogView returns the catalog as applied so far (nil for a stream
// other than the default one).
func (f *fsm) catalogView() map[string]*catalogEntry {
	if p := f.catalog.Load(); p != nil {
		return *p
	}
	return nil
}

// deletedDir is where a deleted stream's directory goes.
func deletedDir(dir string, e catalogEntry) string {
	return filepath.Join(dir, streamsDir, fmt.Sprintf(".deleted-%s-%d", e.Spec.Name, e.Index))
}

// retireStreamDir renames a deleted stream's directory out of the way and
// removes its Raft log and snapshots, which nothing reads any more.
func retireStreamDir(dir string, e catalogEntry) error {
	from := filepath.Join(dir, streamsDir, e.Spec.Name)
	if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	to := deletedDir(dir, e)
	for k := 2; ; k++ { // a directory of that name from an earlier attempt
		_, err := os.Stat(to)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil { // not "there": it would fail for every name
			return err
		}
		to = fmt.Sprintf("%s.%d", deletedDir(dir, e), k)
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if err := store.SyncDir(filepath.Join(dir, streamsDir)); err != nil {
		return err
	}
	for _, sub := range []string{"raft", "snapshots"} {
		if err := os.RemoveAll(filepath.Join(to, sub)); err != nil {
			return err
		}
	}
	return nil
}
