package logx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Crash tests with real processes: the test binary re-executes itself as a
// logx node (helperMain), and the test SIGKILLs and restarts nodes while
// they log with Append.
//
// A node process is configured through environment variables. It writes
// every acknowledged entry ("run w i seq") to its ack file with a plain
// write(2), which survives SIGKILL, and its role and progress to a status
// file. Its writers stop after ENTRIES entries each, or, with ENTRIES 0,
// when a line "stop" arrives on its standard input; then it reports done.
// It flushes, closes and exits 0 when its standard input is closed.
//
// Membership (the fault harness): with JOIN=1 the node starts with
// Config.Join and asks to be added (AddNode on itself, which goes to the
// leader through PEERS) before its writers start. A line "remove ID ADDR"
// on its standard input makes it call RemoveNode(ADDR). Both report to the
// RESULT file, one line each: "join ok", "remove ID ok", or the error.
//
// SIGTERM stops the writers and the node as closing standard input does.
//
// Optional variables: LAT names a file that gets each acknowledged
// Append's latency in microseconds, a line each; INTERVAL_MS paces each writer (one Append per
// interval), APPEND_TIMEOUT_MS bounds an Append (20 s), SNAPSHOT_MS makes
// the node take a Raft snapshot that often, TRAILING_LOGS,
// SNAPSHOT_THRESHOLD and WAL_SEGMENT set the Config fields of those names,
// ROTATE_EVERY_MS, MAX_AGE_MS and MAX_FILES set RotateEvery, MaxAge and
// MaxFiles, CHECKPOINT_MS CheckpointInterval, LISTEN Config.ListenAddr,
// DIAL_FROM the test hook dialFrom, and SLOW_OPEN_MS makes every stream
// wait that long before its Raft starts (seams.opening).
//
// The node's clock (the test hook seams.now: its entries' times and its
// clock reports) can be moved while it runs: with CLOCK_FILE set, it is
// time.Now() plus the offset that file holds (a Go duration, "-3h" or "0s";
// no file: 0), re-read every 100 ms (clockHook). CLOCK_EVERY_MS sets how
// often the node reports its clock to the log (Config.clockEvery). The
// status file shows the offset in use, so a test can wait for it.

const helperEnv = "LOGX_TEST_HELPER"

func helperMain() int {
	env := func(k string) string { return os.Getenv("LOGX_" + k) }
	atoi := func(k string) int { n, _ := strconv.Atoi(env(k)); return n }
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 2 }

	cfg := Config{
		NodeID:          env("NODE_ID"),
		Addr:            env("ADDR"),
		Peers:           strings.Split(env("PEERS"), ","),
		Dir:             env("DIR"),
		File:            "app.log",
		MaxSize:         int64(atoi("MAX_SIZE")),
		ElectionTimeout: 300 * time.Millisecond,
		CloseTimeout:    20 * time.Second,

		TrailingLogs:      uint64(atoi("TRAILING_LOGS")),
		SnapshotThreshold: uint64(atoi("SNAPSHOT_THRESHOLD")),
		// CHECKPOINT_MS: a test that wants no checkpoint within its run.
		CheckpointInterval: time.Duration(atoi("CHECKPOINT_MS")) * time.Millisecond,
		Join:               env("JOIN") == "1",
		ListenAddr:         env("LISTEN"),

		RotateEvery: time.Duration(atoi("ROTATE_EVERY_MS")) * time.Millisecond,
		MaxAge:      time.Duration(atoi("MAX_AGE_MS")) * time.Millisecond,
		MaxFiles:    atoi("MAX_FILES"),
		// COMPRESS: "all", or "odd" for n1, n3, ... only.
		Compress: env("COMPRESS") == "all" || env("COMPRESS") == "odd" && (env("NODE_ID")[len(env("NODE_ID"))-1]-'0')%2 == 1,
	}
	sm := seams{
		walSegmentSize: atoi("WAL_SEGMENT"),
		dialFrom:       env("DIAL_FROM"),
		clockEvery:     time.Duration(atoi("CLOCK_EVERY_MS")) * time.Millisecond,
	}
	if d := time.Duration(atoi("SLOW_OPEN_MS")) * time.Millisecond; d > 0 {
		// A slow start: each stream waits d before NewRaft, answering
		// "starting" meanwhile (bootstrap.go).
		sm.opening = func(_, stage string) error {
			if stage == "raft" {
				time.Sleep(d)
			}
			return nil
		}
	}
	var extra *Stream // STREAMS: the first of them gets every odd entry
	for _, name := range strings.Split(env("STREAMS"), ",") {
		if name != "" {
			cfg.Streams = append(cfg.Streams, StreamConfig{Name: name, MaxSize: int64(atoi("MAX_SIZE"))})
		}
	}
	clock := newClockHook(env("CLOCK_FILE"))
	defer clock.stop()
	if clock != nil {
		sm.now = clock.now
	}
	lx, err := newNode(cfg, sm)
	if err != nil {
		return fail(err)
	}
	if len(cfg.Streams) > 0 {
		if extra, err = lx.Stream(cfg.Streams[0].Name); err != nil {
			return fail(err)
		}
	}
	ack, err := os.OpenFile(env("ACK"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	var resultMu sync.Mutex
	result := func(format string, args ...any) { // one line to the RESULT file
		resultMu.Lock()
		defer resultMu.Unlock()
		line := fmt.Sprintf(format, args...)
		fmt.Fprintln(os.Stderr, "helper:", line)
		if f, err := os.OpenFile(env("RESULT"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
	var commands sync.WaitGroup // RemoveNode calls in progress
	var done sync.WaitGroup
	var finished, stopStatus = make(chan struct{}), make(chan struct{})
	// Standard input: "stop" stops the writers, EOF the node; so does
	// SIGTERM, as an operator stops a node.
	stopWriters, stdinClosed := make(chan struct{}), make(chan struct{})
	var stopOnce, closeOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopWriters) }) }
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		if _, ok := <-term; ok {
			fmt.Fprintln(os.Stderr, "helper: SIGTERM")
			stop()
			closeOnce.Do(func() { close(stdinClosed) })
		}
	}()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "stop":
				stop()
			case len(f) == 3 && f[0] == "remove":
				commands.Add(1)
				go func() {
					defer commands.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					err := lx.RemoveNode(ctx, f[2])
					if errors.Is(err, ErrNotMember) {
						// An earlier attempt was committed, but its answer
						// was lost: the node is out all the same.
						fmt.Fprintln(os.Stderr, "helper: remove", f[2], "retried:", err)
						err = nil
					}
					if err != nil {
						result("remove %s error: %v", f[1], err)
					} else {
						result("remove %s ok", f[1])
					}
				}()
			}
		}
		stop()
		commands.Wait()
		closeOnce.Do(func() { close(stdinClosed) })
	}()
	statusDone := make(chan struct{})
	go func() { // status reporter
		defer close(statusDone)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			fin := "running"
			select {
			case <-finished:
				fin = "done"
			default:
			}
			st := lx.Stats()
			tmp := env("STATUS") + ".tmp"
			var logClock int64
			if !st.LogClock.IsZero() {
				logClock = st.LogClock.UnixNano()
			}
			var extraSeq uint64
			if extra != nil {
				extraSeq = extra.Stats().Seq
			}
			line := fmt.Sprintf("%s %d %s %d %d %d %d %d %d %d\n", st.State, st.Seq, fin,
				st.Term, st.AppliedIndex, lx.raft.LastIndex(), st.CatchUps,
				clock.offset().Milliseconds(), logClock, extraSeq)
			if os.WriteFile(tmp, []byte(line), 0o644) == nil {
				os.Rename(tmp, env("STATUS"))
			}
			select {
			case <-stopStatus:
				return
			case <-t.C:
			}
		}
	}()

	snapDone := make(chan struct{})
	go func() { // snapshots, so that Raft compacts its log
		defer close(snapDone)
		ms := atoi("SNAPSHOT_MS")
		if ms <= 0 {
			return
		}
		t := time.NewTicker(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stdinClosed:
				return
			case <-t.C:
				_ = lx.raft.Snapshot().Error() // "nothing new" is fine
			}
		}
	}()

	if cfg.Join {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		err := lx.AddNode(ctx, cfg.Addr)
		cancel()
		if err != nil {
			result("join error: %v", err)
			return fail(err)
		}
		result("join ok")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := lx.WaitReady(ctx); err != nil {
		return fail(err)
	}
	run := env("RUN")
	appendTimeout := 20 * time.Second
	if ms := atoi("APPEND_TIMEOUT_MS"); ms > 0 {
		appendTimeout = time.Duration(ms) * time.Millisecond
	}
	var mu sync.Mutex
	var lat *os.File // LAT: each acknowledged Append's latency, microseconds
	if p := env("LAT"); p != "" {
		if lat, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			return fail(err)
		}
	}
	for w := 0; w < atoi("WRITERS"); w++ {
		done.Add(1)
		go func() {
			defer done.Done()
			tick := closedTick // paces the writer
			if ms := atoi("INTERVAL_MS"); ms > 0 {
				t := time.NewTicker(time.Duration(ms) * time.Millisecond)
				defer t.Stop()
				tick = t.C
			}
			for i := 0; atoi("ENTRIES") == 0 || i < atoi("ENTRIES"); i++ {
				select {
				case <-stopWriters:
					return
				case <-tick:
				}
				actx, acancel := context.WithTimeout(context.Background(), appendTimeout)
				t0 := time.Now()
				to, suffix := lx.defaultStream, ""
				if extra != nil && i%2 == 1 {
					to, suffix = extra, " "+extra.Name()
				}
				// BATCH_EVERY: every so many of a writer's entries to the
				// default stream is an AppendBatch of three, numbered i.0,
				// i.1 and i.2 (the harness checks that a batch is never
				// partial in any file).
				parts := 1
				var seq uint64
				var err error // this writer's: the enclosing function's err is shared
				if n := atoi("BATCH_EVERY"); n > 0 && suffix == "" && i%n == 0 {
					parts = 3
					recs := make([]Record, parts)
					for p := range recs {
						recs[p] = Record{Level: LevelInfo, Msg: "crash entry", Attrs: []slog.Attr{
							slog.String("run", run), slog.Int("w", w), slog.String("i", fmt.Sprintf("%d.%d", i, p))}}
					}
					seq, err = to.AppendBatch(actx, recs)
				} else {
					seq, err = to.Append(actx, LevelInfo, "crash entry", "run", run, "w", w, "i", i)
				}
				acancel()
				if err != nil {
					continue // not acknowledged: the test does not count it
				}
				took := time.Since(t0)
				mu.Lock()
				if parts > 1 {
					for p := range parts {
						fmt.Fprintf(ack, "%s %d %d.%d %d%s\n", run, w, i, p, seq+uint64(p), suffix)
					}
				} else {
					fmt.Fprintf(ack, "%s %d %d %d%s\n", run, w, i, seq, suffix)
				}
				if lat != nil {
					fmt.Fprintf(lat, "%d\n", took.Microseconds())
				}
				mu.Unlock()
			}
		}()
	}
	done.Wait()
	close(finished)
	<-stdinClosed
	<-snapDone
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	ferr := lx.Flush(fctx)
	cerr := lx.Close()
	close(stopStatus)
	<-statusDone
	if ferr != nil || cerr != nil {
		return fail(fmt.Errorf("flush: %v, close: %v", ferr, cerr))
	}
	return 0
}

// clockHook is a node process's clock: time.Now() plus an offset read from
// a file, so that a test can move a running node's clock (the fault
// harness's clock-skew). The offset is cached in an atomic and refreshed by
// a goroutine every 100 ms: now is called for every entry logged.
type clockHook struct {
	path string
	off  atomic.Int64 // nanoseconds
	quit chan struct{}
	done chan struct{}
}

// newClockHook starts reading path; it returns nil for an empty path.
func newClockHook(path string) *clockHook {
	if path == "" {
		return nil
	}
	h := &clockHook{path: path, quit: make(chan struct{}), done: make(chan struct{})}
	h.read()
	go func() {
		defer close(h.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.quit:
				return
			case <-t.C:
				h.read()
			}
		}
	}()
	return h
}

// read loads the offset from the file: a Go duration; a missing file is 0.
// A file that does not parse (a test bug) leaves the offset as it was and
// says so.
func (h *clockHook) read() {
	b, err := os.ReadFile(h.path)
	if errors.Is(err, os.ErrNotExist) {
		h.off.Store(0)
		return
	}
	var d time.Duration
	if err == nil {
		d, err = time.ParseDuration(strings.TrimSpace(string(b)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: clock file:", err)
		return
	}
	h.off.Store(int64(d))
}

// now is the node's clock (seams.now).
func (h *clockHook) now() time.Time { return time.Now().Add(h.offset()) }

// offset is the offset in use; 0 without a hook.
func (h *clockHook) offset() time.Duration {
	if h == nil {
		return 0
	}
	return time.Duration(h.off.Load())
}

func (h *clockHook) stop() {
	if h == nil {
		return
	}
	close(h.quit)
	<-h.done
}

// closedTick is always ready: an unpaced writer's tick.
var closedTick = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// procMaxSize is the MaxSize of the nodes a procCluster starts.
const procMaxSize = 65536

// procCluster runs nodes as child processes of the test.
type procCluster struct {
	t       *testing.T
	base    string
	addrs   []string
	procs   []*exec.Cmd
	stdins  []io.WriteCloser
	exited  []chan error
	runs    int
	writers int
	entries int
	net     *faultNet // nil: nodes listen on addrs and dial from anywhere
	env     []string  // more LOGX_ variables for every node
	// once are more LOGX_ variables for the next start of a slot only.
	once map[int][]string
	// clocks gives every node a clock file, path(i, "clock") (setClock).
	clocks bool
	// Membership: peers is what the next start passes as Peers (the first
	// n addresses: the nodes that bootstrap), join which slots start with
	// Join, gen each slot's Dir generation (a slot reused for a new node
	// gets a fresh Dir).
	peers []string
	join  []bool
	gen   []int
	// bins are the test binaries to run each slot's node with (another
	// version's, for the upgrade test); "" or missing: this one.
	bins []string
}

func newProcCluster(t *testing.T, n, writers, entries int) *procCluster {
	if testing.Short() && raceEnabled {
		t.Skip("process crash tests are skipped under -race -short")
	}
	return startProcCluster(t, n, writers, entries, nil)
}

// startProcCluster prepares n nodes, behind fn's proxies if fn is not nil;
// start starts them. With fn, every slot of fn is a node slot: those past n
// are spares, for nodes added later.
func startProcCluster(t *testing.T, n, writers, entries int, fn *faultNet) *procCluster {
	addrs := freeAddrs(t, n)
	if fn != nil {
		addrs = fn.addrs()
	}
	slots := len(addrs)
	c := &procCluster{t: t, base: t.TempDir(), addrs: addrs, peers: addrs[:n:n], net: fn, writers: writers, entries: entries,
		procs: make([]*exec.Cmd, slots), stdins: make([]io.WriteCloser, slots), exited: make([]chan error, slots),
		join: make([]bool, slots), gen: make([]int, slots)}
	t.Cleanup(func() {
		for i := range c.procs {
			c.kill(i)
		}
		if t.Failed() {
			for i := range c.procs {
				if b, err := os.ReadFile(c.path(i, "stderr")); err == nil {
					t.Logf("stderr of n%d (tail):\n%s", i+1, tail(string(b), 16000))
				}
			}
		}
	})
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (c *procCluster) path(i int, what string) string {
	return filepath.Join(c.base, fmt.Sprintf("n%d.%s", i+1, what))
}

func (c *procCluster) dir(i int) string {
	if c.gen[i] > 0 {
		return filepath.Join(c.base, fmt.Sprintf("n%d.%d", i+1, c.gen[i]))
	}
	return filepath.Join(c.base, fmt.Sprintf("n%d", i+1))
}

// start launches node i with writers (0 for none) and a fresh run id.
func (c *procCluster) start(i, writers int) {
	c.t.Helper()
	c.runs++
	bin := os.Args[0]
	if i < len(c.bins) && c.bins[i] != "" {
		bin = c.bins[i]
	}
	cmd := exec.Command(bin, "-test.run=^$")
	stderr, err := os.OpenFile(c.path(i, "stderr"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	require.NoError(c.t, err)
	defer stderr.Close()
	cmd.Stderr = stderr
	cmd.Env = append(os.Environ(),
		helperEnv+"=1",
		"LOGX_NODE_ID="+fmt.Sprintf("n%d", i+1),
		"LOGX_ADDR="+c.addrs[i],
		"LOGX_PEERS="+strings.Join(c.peers, ","),
		"LOGX_DIR="+c.dir(i),
		fmt.Sprintf("LOGX_MAX_SIZE=%d", procMaxSize),
		"LOGX_ACK="+c.path(i, "ack"),
		"LOGX_STATUS="+c.path(i, "status"),
		"LOGX_RESULT="+c.path(i, "result"),
		fmt.Sprintf("LOGX_RUN=r%d", c.runs),
		fmt.Sprintf("LOGX_WRITERS=%d", writers),
		fmt.Sprintf("LOGX_ENTRIES=%d", c.entries),
	)
	if c.join[i] {
		cmd.Env = append(cmd.Env, "LOGX_JOIN=1")
	}
	if c.net != nil {
		cmd.Env = append(cmd.Env, "LOGX_LISTEN="+c.net.listenAddr(i), "LOGX_DIAL_FROM="+c.net.from(i))
	}
	if c.clocks {
		cmd.Env = append(cmd.Env, "LOGX_CLOCK_FILE="+c.path(i, "clock"))
	}
	cmd.Env = append(cmd.Env, c.env...)
	cmd.Env = append(cmd.Env, c.once[i]...)
	delete(c.once, i)
	in, err := cmd.StdinPipe()
	require.NoError(c.t, err)
	os.Remove(c.path(i, "status"))
	os.Remove(c.path(i, "result"))
	require.NoError(c.t, cmd.Start())
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	c.procs[i], c.stdins[i], c.exited[i] = cmd, in, ch
}

// kill SIGKILLs node i if it runs and waits for it to die.
func (c *procCluster) kill(i int) {
	if c.procs[i] == nil {
		return
	}
	_ = c.procs[i].Process.Signal(syscall.SIGKILL)
	<-c.exited[i]
	c.procs[i] = nil
}

// loseDisks SIGKILLs the nodes in slots, empties every Dir but keep's,
// starts keep (its streams opening slowOpen late if not zero), waits until
// it listens and starts the others, each with writers. It returns the
// emptied slots and a function that returns what one of them has written
// to its stderr since.
func (c *procCluster) loseDisks(slots []int, keep int, slowOpen time.Duration, writers int) (emptied []int, said func(i int) string) {
	c.t.Helper()
	from := map[int]int64{}
	for _, i := range slots {
		c.kill(i)
		if i == keep {
			continue
		}
		emptied = append(emptied, i)
		require.NoError(c.t, os.RemoveAll(c.dir(i)))
		if st, err := os.Stat(c.path(i, "stderr")); err == nil {
			from[i] = st.Size()
		}
	}
	if slowOpen > 0 {
		if c.once == nil {
			c.once = map[int][]string{}
		}
		c.once[keep] = []string{fmt.Sprintf("LOGX_SLOW_OPEN_MS=%d", slowOpen.Milliseconds())}
	}
	c.start(keep, writers)
	c.waitListening(keep) // it answers that it is starting
	for _, i := range emptied {
		c.start(i, writers)
	}
	return emptied, func(i int) string {
		b, err := os.ReadFile(c.path(i, "stderr"))
		require.NoError(c.t, err)
		return string(b[min(from[i], int64(len(b))):])
	}
}

// waitListening waits until node i accepts connections (on its own
// address: behind faultNet a proxy accepts them at once).
func (c *procCluster) waitListening(i int) {
	c.t.Helper()
	addr := c.addrs[i]
	if c.net != nil {
		addr = c.net.listenAddr(i)
	}
	require.True(c.t, waitFor(30*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}), "n%d does not listen", i+1)
}

// stop closes node i's stdin and waits for a clean exit.
func (c *procCluster) stop(i int) {
	c.t.Helper()
	c.stdins[i].Close()
	select {
	case err := <-c.exited[i]:
		c.procs[i] = nil
		require.NoError(c.t, err, "node n%d did not exit cleanly", i+1)
	case <-time.After(60 * time.Second):
		c.dumpGoroutinesOf(i) // where the node hangs
		c.t.Fatalf("node n%d did not exit", i+1)
	}
}

// dumpGoroutines asks every running node for a goroutine dump, for a
// stall no status shows.
func (c *procCluster) dumpGoroutines() {
	for i, p := range c.procs {
		if p != nil {
			c.dumpGoroutinesOf(i)
		}
	}
}

// dumpGoroutinesOf asks node i for a goroutine dump (SIGQUIT, which also
// ends it) and logs where it was.
func (c *procCluster) dumpGoroutinesOf(i int) {
	_ = c.procs[i].Process.Signal(syscall.SIGQUIT)
	select {
	case err := <-c.exited[i]:
		c.exited[i] <- err // for kill, in the cleanup
	case <-time.After(10 * time.Second):
	}
	b, _ := os.ReadFile(c.path(i, "stderr"))
	if k := strings.LastIndex(string(b), "SIGQUIT"); k >= 0 {
		c.t.Logf("n%d's goroutines:\n%s", i+1, tail(string(b[k:]), 200<<10))
	}
}

type procStatus struct {
	state    string
	seq      uint64
	done     bool
	term     uint64
	applied  uint64 // Raft index the files hold
	last     uint64 // last index in the node's Raft log
	catchUps uint64
	offset   time.Duration // the node's clock offset (clockHook)
	logClock int64         // Stats.LogClock, Unix nanoseconds; 0: unknown
	extraSeq uint64        // Seq of the first of STREAMS (0: none)
}

func (c *procCluster) status(i int) procStatus {
	b, err := os.ReadFile(c.path(i, "status"))
	if err != nil {
		return procStatus{}
	}
	// Earlier versions (the upgrade test) write the first 7 fields, or 9.
	f := strings.Fields(string(b))
	if len(f) != 7 && len(f) != 9 && len(f) != 10 {
		return procStatus{}
	}
	f = append(f, "0", "0", "0")
	n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
	z := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	return procStatus{state: f[0], seq: n(1), done: f[2] == "done",
		term: n(3), applied: n(4), last: n(5), catchUps: n(6),
		offset: time.Duration(z(7)) * time.Millisecond, logClock: z(8), extraSeq: n(9)}
}

// setClock sets node i's clock offset (its clock file, read by the node's
// clockHook) and, if the node runs, waits until the node uses it.
func (c *procCluster) setClock(i int, off time.Duration) {
	c.t.Helper()
	require.True(c.t, c.clocks, "the cluster has no clock files")
	tmp := c.path(i, "clock.tmp")
	require.NoError(c.t, os.WriteFile(tmp, []byte(off.String()+"\n"), 0o644))
	require.NoError(c.t, os.Rename(tmp, c.path(i, "clock")))
	if c.procs[i] != nil {
		c.waitStatus(i, fmt.Sprintf("clock offset %v", off), func(s procStatus) bool { return s.offset == off })
	}
}

// waitStatus waits until cond holds for node i.
func (c *procCluster) waitStatus(i int, what string, cond func(procStatus) bool) {
	c.t.Helper()
	ok := waitFor(90*time.Second, func() bool {
		if c.procs[i] == nil {
			return false
		}
		select {
		case err := <-c.exited[i]:
			c.exited[i] <- err
			return false
		default:
		}
		return cond(c.status(i))
	})
	require.True(c.t, ok, "n%d: waiting for %s; status %+v", i+1, what, c.status(i))
}

// acks reads every ack file: "run/w/i" → acknowledged seq, for the
// default stream.
func (c *procCluster) acks() map[string]string { return c.acksOf("") }

// acksOf is acks for stream ("": the default stream), whose acks carry its
// name as a fifth field.
func (c *procCluster) acksOf(stream string) map[string]string {
	c.t.Helper()
	want := 4
	if stream != "" {
		want = 5
	}
	out := map[string]string{}
	for i := range c.addrs {
		b, err := os.ReadFile(c.path(i, "ack"))
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(c.t, err)
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != want || want == 5 && f[4] != stream { // another stream's, or a write cut by SIGKILL
				continue
			}
			out[f[0]+"/"+f[1]+"/"+f[2]] = f[3]
		}
	}
	return out
}

// verify checks the given nodes' files are identical, seq numbers run
// 1..n, no entry appears twice, and every acknowledged entry is present at
// its acknowledged seq.
func (c *procCluster) verify(nodes ...int) (entries int, acked int) {
	c.t.Helper()
	var dirs []string
	for _, i := range nodes {
		dirs = append(dirs, c.dir(i))
	}
	requireIdentical(c.t, dirs, "app.log")
	lines := readLines(c.t, dirs[0], "app.log")
	requireUnique(c.t, lines, "run", "w", "i")
	at := map[string]string{}
	for _, l := range lines {
		kv, err := parseText(l)
		require.NoError(c.t, err)
		at[kv["run"]+"/"+kv["w"]+"/"+kv["i"]] = kv["seq"]
	}
	acks := c.acks()
	for id, seq := range acks {
		got, ok := at[id]
		require.True(c.t, ok, "acknowledged entry %s (seq %s) is missing", id, seq)
		require.Equal(c.t, seq, got, "acknowledged entry %s: seq", id)
	}
	return len(lines), len(acks)
}

// waitConverged waits until every node, its writers done, has written the
// same last sequence number: stopping one earlier could take away the
// quorum a lagging node needs to learn the last commits.
//
// Once every node's writers are done it takes the longest Raft log among
// the nodes as the target, and waits until every node has applied that
// far. (Not the longest log at every look: clock reports keep the log
// growing, and a follower learns that the newest entry is committed only
// with the next one, or after Raft's CommitTimeout.)
func (c *procCluster) waitConverged() {
	c.t.Helper()
	var seqs, applied, extras []uint64
	var maxLast, target uint64
	var targetAt time.Time // when target was taken
	ok := waitFor(60*time.Second, func() bool {
		// A status file is rewritten every 10 ms, so one read may be
		// older than another node's. Only files all written after the
		// target was taken count.
		if target > 0 {
			for i := range c.addrs {
				if c.procs[i] == nil {
					continue
				}
				if fi, err := os.Stat(c.path(i, "status")); err != nil || !fi.ModTime().After(targetAt) {
					return false
				}
			}
		}
		seqs, applied, extras, maxLast = seqs[:0], applied[:0], extras[:0], 0
		extra := map[uint64]bool{}
		for i := range c.addrs {
			if c.procs[i] == nil {
				continue // a spare slot, or a removed node
			}
			s := c.status(i)
			if !s.done {
				target = 0
				return false
			}
			extra[s.extraSeq] = true
			extras = append(extras, s.extraSeq)
			seqs = append(seqs, s.seq)
			applied = append(applied, s.applied)
			maxLast = max(maxLast, s.last)
		}
		if target == 0 {
			target, targetAt = maxLast, time.Now()
			return false
		}
		// The other stream (STREAMS): every node at the same sequence
		// number, as read after the target was taken.
		converged := len(seqs) > 0 && seqs[0] > 0 && len(extra) == 1
		for k := range seqs {
			// Every node has applied all that any node's Raft log held
			// once the writers were done.
			converged = converged && seqs[k] == seqs[0] && applied[k] >= target
		}
		return converged
	})
	require.True(c.t, ok, "nodes did not converge: seqs %v applied %v, target Raft index %d, the longest Raft log ends at %d; the other stream's seqs %v",
		seqs, applied, target, maxLast, extras)
}

func (c *procCluster) leader() int {
	for i := range c.addrs {
		if c.procs[i] != nil && c.status(i).state == "Leader" {
			return i
		}
	}
	return -1
}

func (c *procCluster) waitLeader(except int) int {
	c.t.Helper()
	l := -1
	ok := waitFor(30*time.Second, func() bool {
		l = c.leader()
		return l >= 0 && l != except
	})
	require.True(c.t, ok, "no leader elected")
	return l
}

// TestCrashFollowerSIGKILL: while all three node processes log with Append,
// a follower is SIGKILLed at random moments and restarted on the same Dir.
// At the end every node's files are identical and every acknowledged entry
// is present exactly once, at the sequence number Append returned.
func TestCrashFollowerSIGKILL(t *testing.T) {
	entries, kills := 300, 3
	if testing.Short() {
		entries, kills = 100, 2
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	c := newProcCluster(t, 3, 4, entries)
	for i := 0; i < 3; i++ {
		c.start(i, c.writers)
	}
	for k := 0; k < kills; k++ {
		leader := c.waitLeader(-1)
		victim := (leader + 1 + rng.Intn(2)) % 3
		c.waitStatus(victim, "progress", func(s procStatus) bool { return s.seq > 0 })
		// A random moment within the load (the fault schedule, not a wait).
		time.Sleep(time.Duration(50+rng.Intn(400)) * time.Millisecond)
		c.kill(victim)
		t.Logf("SIGKILLed follower n%d", victim+1)
		c.start(victim, c.writers)
	}
	for i := 0; i < 3; i++ {
		c.waitStatus(i, "writers done", func(s procStatus) bool { return s.done })
	}
	c.waitConverged()
	for i := 0; i < 3; i++ {
		c.stop(i)
	}
	n, acked := c.verify(0, 1, 2)
	t.Logf("%d entries in the log, %d acknowledged, %d kills", n, acked, kills)
	require.Greater(t, acked, 3*4*entries/2)
}

// TestLeaderLossSIGKILL: the leader is SIGKILLed while every node logs with
// Append. The survivors elect a new leader and finish; every acknowledged
// entry, the dead leader's included, is on both survivors exactly once.
// The old leader then restarts and ends identical.
func TestLeaderLossSIGKILL(t *testing.T) {
	t.Parallel() // waits more than it computes (parallelTests, logx_test.go)
	entries := 300
	if testing.Short() {
		entries = 100
	}
	c := newProcCluster(t, 3, 4, entries)
	for i := 0; i < 3; i++ {
		c.start(i, c.writers)
	}
	leader := c.waitLeader(-1)
	c.waitStatus(leader, "progress", func(s procStatus) bool { return s.seq > 200 })
	c.kill(leader)
	t.Logf("SIGKILLed leader n%d", leader+1)
	var survivors []int
	for i := 0; i < 3; i++ {
		if i != leader {
			survivors = append(survivors, i)
		}
	}
	c.waitLeader(leader)
	for _, i := range survivors {
		c.waitStatus(i, "writers done", func(s procStatus) bool { return s.done })
	}
	// Both survivors hold everything committed: wait until they agree.
	var final uint64
	ok := waitFor(30*time.Second, func() bool {
		a, b := c.status(survivors[0]).seq, c.status(survivors[1]).seq
		final = a
		return a == b && a > 0
	})
	require.True(t, ok, "survivors did not converge")
	// The old leader comes back without writers and catches up.
	c.start(leader, 0)
	c.waitStatus(leader, "catch-up", func(s procStatus) bool { return s.seq >= final && s.done })
	c.waitConverged()
	for i := 0; i < 3; i++ {
		c.stop(i)
	}
	n, acked := c.verify(0, 1, 2)
	t.Logf("%d entries in the log, %d acknowledged", n, acked)
}

// TestLoseDisksSIGKILL: a whole cluster restarted after two of its three
// nodes lost their disks. Every node is SIGKILLed while all log with
// Append; the two followers' Dirs are emptied; the old leader, which holds
// every acknowledged entry, is started first and opens its stream slowly
// (10 election timeouts: LOGX_SLOW_OPEN_MS), and the emptied two as soon as
// it listens. They find it starting with Raft state and wait for it
// rather than bootstrap (two of three, they could otherwise elect one of
// themselves over an empty log), then follow it: every acknowledged entry
// is kept, the files identical.
func TestLoseDisksSIGKILL(t *testing.T) {
	entries := 200
	if testing.Short() {
		entries = 80
	}
	c := newProcCluster(t, 3, 2, entries)
	// No checkpoint: the leader's files record no applied index, as in a
	// cluster's first second, so that only its Raft log tells the emptied
	// nodes that its group has run (runsWith).
	c.env = append(c.env, "LOGX_CHECKPOINT_MS=3600000")
	for i := 0; i < 3; i++ {
		c.start(i, c.writers)
	}
	c.waitStatus(c.waitLeader(-1), "progress", func(s procStatus) bool { return s.seq > 100 })
	// Frozen, the leader stays the one that holds every acknowledged
	// entry. The status files can be 10 ms old: a leader of the highest
	// term that no node is past, or another try.
	leader := -1
	for try := 0; leader < 0; try++ {
		require.Less(t, try, 10, "no settled leader to keep")
		for i := 0; i < 3; i++ {
			require.NoError(t, c.procs[i].Process.Signal(syscall.SIGSTOP))
		}
		var top uint64
		for i := 0; i < 3; i++ {
			switch s := c.status(i); {
			case s.term > top:
				top, leader = s.term, -1
				if s.state == "Leader" {
					leader = i
				}
			case s.term == top && s.state == "Leader":
				leader = i
			}
		}
		if leader < 0 {
			for i := 0; i < 3; i++ {
				require.NoError(t, c.procs[i].Process.Signal(syscall.SIGCONT))
			}
			c.waitLeader(-1)
		}
	}
	st, _, err := readState(c.dir(leader))
	require.NoError(t, err)
	require.Zero(t, st.Index, "n%d's files record no applied index", leader+1)
	emptied, said := c.loseDisks([]int{0, 1, 2}, leader, 3*time.Second, c.writers)
	t.Logf("SIGKILLed every node; restarted leader n%d on its Dir, slow to open, and %v on empty Dirs", leader+1, plusOne(emptied))
	for i := 0; i < 3; i++ {
		c.waitStatus(i, "writers done", func(s procStatus) bool { return s.done })
	}
	c.waitConverged()
	for i := 0; i < 3; i++ {
		c.stop(i)
	}
	for _, i := range emptied {
		require.Contains(t, said(i), "which has Raft state, is still starting: waiting", "n%d waited for n%d", i+1, leader+1)
		require.Contains(t, said(i), "not bootstrapping; waiting for its leader", "n%d did not bootstrap", i+1)
	}
	n, acked := c.verify(0, 1, 2)
	t.Logf("%d entries in the log, %d acknowledged", n, acked)
}
