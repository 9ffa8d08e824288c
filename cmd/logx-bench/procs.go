package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx"
)

// A procs cell runs each node in a child process: the command re-executes
// itself with -child i -child-spec JSON. The parent and a child talk in
// lines, the child's on its stdout as JSON:
//
//	child:  {"ev":"ready","state":"Follower","seq":S}   started, warmed up, every node's warm-up applied here
//	parent: go {"callers":C,"limit":L}                  start producing (C callers of Append, or the async goroutines;
//	                                                    idle: nothing, for the spec's duration)
//	child:  {"ev":"produced","n":N}                     done producing (async: and flushed)
//	parent: total T                                     the sum of the N
//	child:  {"ev":"result",...}                         this node's files hold S+T entries; times and latencies
//	parent: usage                                       (every node has every entry)
//	child:  {"ev":"usage","state":...,"cpu_ns":...}     CPU time, wall time and peak RSS since go; the state now
//	parent: close                                       close the node and exit (so does end of input)
//
// A child measures its own CPU time with getrusage(RUSAGE_SELF) (user plus
// system, microsecond resolution), which needs no /proc and no clock-tick
// conversion, and resets its peak RSS when told to go.
// A child's stderr is kept for error messages.

// childSpec is what a child needs to know about its cell.
type childSpec struct {
	Addrs     []string      `json:"addrs"`
	Dir       string        `json:"dir"`
	Size      int           `json:"size"`
	Workload  string        `json:"workload"`
	Goroutine int           `json:"goroutines"` // async goroutines
	Warmup    int           `json:"warmup"`
	Duration  time.Duration `json:"duration"`
	Timeout   time.Duration `json:"timeout"`
	Streams   int           `json:"streams,omitempty"`
	Profile   string        `json:"profile,omitempty"` // -profile
	Callers   int           `json:"callers,omitempty"` // the cell's, for profile names
}

type childGo struct {
	Callers int   `json:"callers"`
	Limit   int64 `json:"limit"`
}

// childMsg is any line a child prints.
type childMsg struct {
	Ev    string `json:"ev"`
	State string `json:"state,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
	N     int64  `json:"n,omitempty"`
	// result: wall-clock times (UnixNano) of the start, the end of
	// producing, and the moment this node held every entry.
	StartNs int64       `json:"start_ns,omitempty"`
	DoneNs  int64       `json:"done_ns,omitempty"`
	AllNs   int64       `json:"all_ns,omitempty"`
	Hist    [][2]uint64 `json:"hist,omitempty"`
	// usage: CPU time (absent where getrusage is not available) and
	// wall time since go, peak RSS (VmHWM, 0 where unknown).
	CPUNs  *int64  `json:"cpu_ns,omitempty"`
	WallNs int64   `json:"wall_ns,omitempty"`
	RSSMB  float64 `json:"rss_mb,omitempty"`
	// usage: the entries this node's producers committed and the batches
	// they sent since go.
	Committed uint64 `json:"committed,omitempty"`
	Batches   uint64 `json:"batches,omitempty"`
	Err       string `json:"err,omitempty"`
}

// child is the parent's handle on one child process.
type child struct {
	i      int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // closed at the end of the child's stdout
	exited chan struct{}
	err    error // of Wait, valid once exited is closed
	stderr *capBuffer
}

// capBuffer keeps the first 64 KiB written to it.
type capBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := 64<<10 - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(string(c.b))
}

// self is the executable to re-execute: this program.
func self() string {
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	return os.Args[0]
}

func startChild(ctx context.Context, i int, spec []byte) (*child, error) {
	cmd := exec.CommandContext(ctx, self(), "-child", strconv.Itoa(i), "-child-spec", string(spec))
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.WaitDelay = 5 * time.Second
	ch := &child{i: i, cmd: cmd, lines: make(chan string, 16), exited: make(chan struct{}), stderr: &capBuffer{}}
	cmd.Stderr = ch.stderr
	var err error
	if ch.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
		ch.err = cmd.Wait()
		close(ch.exited)
	}()
	return ch, nil
}

// send writes one line to the child.
func (ch *child) send(line string) error {
	_, err := io.WriteString(ch.stdin, line+"\n")
	if err != nil {
		return fmt.Errorf("node %d: %w", ch.i+1, err)
	}
	return nil
}

// expect reads the child's next line, which must be event ev.
func (ch *child) expect(ctx context.Context, ev string) (childMsg, error) {
	var m childMsg
	select {
	case line, ok := <-ch.lines:
		if !ok {
			<-ch.exited
			return m, fmt.Errorf("node %d exited (%v) before %q: %s", ch.i+1, ch.err, ev, ch.stderr.String())
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return m, fmt.Errorf("node %d: bad line %q: %v", ch.i+1, line, err)
		}
		if m.Ev != ev {
			return m, fmt.Errorf("node %d: got %q, want %q: %s", ch.i+1, m.Ev, ev, m.Err)
		}
		return m, nil
	case <-ctx.Done():
		return m, fmt.Errorf("node %d: waiting for %q: %w", ch.i+1, ev, ctx.Err())
	}
}

// expectAll reads event ev from every child.
func expectAll(ctx context.Context, kids []*child, ev string) ([]childMsg, error) {
	out := make([]childMsg, len(kids))
	errs := make([]error, len(kids))
	var wg sync.WaitGroup
	for k, ch := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[k], errs[k] = ch.expect(ctx, ev)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// stopChildren asks the children to close, waits up to grace, then kills
// those still running.
func stopChildren(kids []*child, grace time.Duration) {
	for _, ch := range kids {
		_ = ch.send("close")
		ch.stdin.Close()
	}
	deadline := time.After(grace)
	for _, ch := range kids {
		select {
		case <-ch.exited:
		case <-deadline:
			_ = ch.cmd.Process.Kill()
			<-ch.exited
		}
	}
}

// runLogxProcs measures one cell with each node in a child process.
func runLogxProcs(ctx context.Context, o *options, c *cell) (res runResult, err error) {
	dir, addrs, err := cellPlace()
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	dur := o.duration
	if c.Workload == "idle" {
		dur = o.idleDur
	}
	spec, err := json.Marshal(childSpec{
		Addrs: addrs, Dir: dir, Size: c.Size, Workload: c.Workload, Goroutine: asyncPerNode,
		Warmup: o.warmup, Duration: dur, Timeout: o.cellTimeout, Streams: c.Streams, Profile: o.profile,
		Callers: c.Callers,
	})
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx) // kills the children
	defer cancel()
	var kids []*child
	defer func() { stopChildren(kids, 30*time.Second) }()
	for i := 0; i < 3; i++ {
		ch, err := startChild(ctx, i, spec)
		if err != nil {
			return res, err
		}
		kids = append(kids, ch)
	}
	ready, err := expectAll(ctx, kids, "ready")
	if err != nil {
		return res, err
	}
	base := ready[0].Seq
	for _, m := range ready {
		if m.Seq != base {
			return res, fmt.Errorf("nodes start at different sequence numbers %d and %d", base, m.Seq)
		}
	}

	// Who does what.
	gos := make([]childGo, 3)
	switch c.Workload {
	case "async":
		for i := range gos {
			gos[i].Limit = int64(o.maxEntries / 3)
		}
	case "append":
		if c.Callers == 1 {
			f := 1
			for i, m := range ready {
				if m.State == "Follower" {
					f = i
					break
				}
			}
			gos[f] = childGo{Callers: 1, Limit: int64(o.appendMax())}
		} else {
			for g := 0; g < c.Callers; g++ {
				gos[g%3].Callers++
			}
			for i := range gos {
				gos[i].Limit = int64(o.appendMax()) * int64(gos[i].Callers) / int64(c.Callers)
			}
		}
	case "idle":
		// Nothing to produce: let the cluster settle after its warm-up.
		if err := sleepCtx(ctx, o.idleSettle()); err != nil {
			return res, err
		}
	default:
		return res, fmt.Errorf("unknown workload %q", c.Workload)
	}

	file0 := logBytes(nodeDir(dir, 0))
	for i, ch := range kids {
		b, _ := json.Marshal(gos[i])
		if err := ch.send("go " + string(b)); err != nil {
			return res, err
		}
	}
	produced, err := expectAll(ctx, kids, "produced")
	if err != nil {
		return res, err
	}
	var total int64
	for _, m := range produced {
		total += m.N
	}
	for _, ch := range kids {
		if err := ch.send("total " + strconv.FormatInt(total, 10)); err != nil {
			return res, err
		}
	}
	results, err := expectAll(ctx, kids, "result")
	if err != nil {
		return res, err
	}
	for _, ch := range kids {
		if err := ch.send("usage"); err != nil {
			return res, err
		}
	}
	usage, err := expectAll(ctx, kids, "usage")
	if err != nil {
		return res, err
	}
	var rss float64
	rssOK := false
	for k, ch := range kids {
		mb, ok := vmHWM(strconv.Itoa(ch.cmd.Process.Pid))
		if !ok {
			mb, ok = usage[k].RSSMB, usage[k].RSSMB > 0
		}
		if ok {
			rss, rssOK = max(rss, mb), true
			usage[k].RSSMB = mb
		}
	}
	var start, end int64
	var h hist
	for k, m := range results {
		if k == 0 || m.StartNs < start {
			start = m.StartNs
		}
		stop := m.AllNs // async: when every node holds every entry
		if c.Workload == "append" {
			stop = m.DoneNs // append: when the last caller returns
		}
		end = max(end, stop)
		h.merge(histFromSparse(m.Hist))
	}
	res.finish(total, time.Duration(end-start), logBytes(nodeDir(dir, 0))-file0)
	res.setLatency(&h)
	if rssOK {
		res.PeakRSSMB, res.RSSScope = &rss, "max-node"
	}
	res.setNodes(ready, usage)
	if c.Workload != "idle" {
		var entries, batches uint64
		for _, u := range usage {
			entries, batches = entries+u.Committed, batches+u.Batches
		}
		res.setBatches(entries, batches)
	}
	stopChildren(kids, 30*time.Second)
	for _, ch := range kids {
		if ch.err != nil {
			err = errors.Join(err, fmt.Errorf("node %d: %v: %s", ch.i+1, ch.err, ch.stderr.String()))
		}
	}
	kids = nil
	return res, err
}

// setNodes fills Nodes from the children's ready and usage lines (in node
// order), and the cell's CPU figures from their sum when every child
// measured its CPU time. r's Entries are set.
func (r *runResult) setNodes(ready, usage []childMsg) {
	r.Nodes = make([]nodeUsage, len(usage))
	var sum time.Duration
	all := len(usage) > 0
	for k, u := range usage {
		n := nodeUsage{Node: fmt.Sprintf("n%d", k+1), Role: u.State, Seconds: time.Duration(u.WallNs).Seconds()}
		if k < len(ready) && ready[k].State != u.State {
			n.Role = ready[k].State + "->" + u.State
		}
		if u.CPUNs != nil {
			cpu := time.Duration(*u.CPUNs)
			sum += cpu
			s := cpu.Seconds()
			n.CPUSeconds, n.CPUPercent, n.CPUUsPerEntry = &s, percent(s, n.Seconds), perEntry(s, r.Entries)
		} else {
			all = false
		}
		if u.RSSMB > 0 {
			n.PeakRSSMB = ptr(u.RSSMB)
		}
		r.Nodes[k] = n
	}
	orderNodes(r.Nodes)
	if all {
		r.setCPU(sum, "sum-of-nodes")
	}
}

// runChild is one node of a procs cell.
func runChild(ctx context.Context, o *options) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(o.childSpec), &spec); err != nil {
		return fmt.Errorf("-child-spec: %w", err)
	}
	if o.child > 2 || len(spec.Addrs) != 3 {
		return fmt.Errorf("-child %d: bad node", o.child)
	}
	ctx, cancel := context.WithTimeout(ctx, max(spec.Timeout, time.Minute))
	defer cancel()

	// Lines from the parent; the end of input (the parent is gone) ends
	// the child.
	in := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			in <- sc.Text()
		}
		close(in)
	}()
	recv := func(prefix string) (string, error) {
		select {
		case line, ok := <-in:
			if !ok {
				return "", errors.New("parent went away")
			}
			rest, found := strings.CutPrefix(line, prefix)
			if !found {
				return "", fmt.Errorf("got %q, want %q", line, prefix)
			}
			return strings.TrimSpace(rest), nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	out := json.NewEncoder(os.Stdout)

	lx, err := logx.New(nodeConfig(spec.Addrs, spec.Dir, o.child, spec.Streams))
	if err != nil {
		return err
	}
	defer lx.Close()
	msgs := messages(msgSeed, msgPoolSize, spec.Size)
	if err := lx.WaitReady(ctx); err != nil {
		return err
	}
	if err := warmupNode(ctx, lx, msgs, spec.Warmup); err != nil {
		return err
	}
	base := uint64(3 * (spec.Warmup + warmAppends))
	if err := waitSeq(ctx, lx, base); err != nil {
		return err
	}
	if spec.Workload == "idle" {
		if err := waitIdle(ctx, lx); err != nil {
			return err
		}
	}
	if err := out.Encode(childMsg{Ev: "ready", State: lx.Stats().State, Seq: lx.Stats().Seq}); err != nil {
		return err
	}

	line, err := recv("go")
	if err != nil {
		return err
	}
	var g childGo
	if err := json.Unmarshal([]byte(line), &g); err != nil {
		return fmt.Errorf("go: %w", err)
	}
	stopProfile, err := startProfile(spec.Profile, profileName("procs", spec.Workload, spec.Size, spec.Callers, spec.Streams, o.child), spec.Workload == "idle")
	if err != nil {
		return err
	}
	defer stopProfile() // on an error return: the profile as far as it got
	resetPeakRSS()
	entries0, batches0 := batchCounts(lx)
	mark := markCPU()
	stop, release := stopAfter(spec.Duration)
	defer release()
	var next atomic.Int64
	var n int64
	var h hist
	start := time.Now()
	switch spec.Workload {
	case "async":
		streams := streamsOf(lx)
		n, _, _ = drive(spec.Goroutine, &next, g.Limit, stop, false, func(_ int, i int64) error { return infoTo(streams, msgs, i) })
		if err := flushAll(ctx, lx); err != nil {
			return err
		}
	case "append":
		var err error
		n, h, err = drive(g.Callers, &next, g.Limit, stop, true, func(_ int, i int64) error { return appendTo(ctx, lx, msgs, i) })
		if err != nil {
			return err
		}
	case "idle":
		if err := sleepCtx(ctx, spec.Duration); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown workload %q", spec.Workload)
	}
	done := time.Now()
	if err := out.Encode(childMsg{Ev: "produced", N: n}); err != nil {
		return err
	}
	line, err = recv("total")
	if err != nil {
		return err
	}
	total, err := strconv.ParseUint(line, 10, 64)
	if err != nil {
		return fmt.Errorf("total: %w", err)
	}
	if err := waitSeq(ctx, lx, base+total); err != nil {
		return err
	}
	all := time.Now()
	// The profile ends once every node's entries are applied here, not
	// when this node's callers stop: a node without callers (the leader in
	// a 1-caller cell) works for the others' until then.
	if err := stopProfile(); err != nil {
		return err
	}
	if err := out.Encode(childMsg{Ev: "result", N: n, StartNs: start.UnixNano(), DoneNs: done.UnixNano(),
		AllNs: all.UnixNano(), Hist: h.sparse()}); err != nil {
		return err
	}
	if _, err := recv("usage"); err != nil {
		return err
	}
	cpu, wall, ok := mark.since()
	u := childMsg{Ev: "usage", State: lx.Stats().State, WallNs: int64(wall)}
	entries1, batches1 := batchCounts(lx)
	u.Committed, u.Batches = entries1-entries0, batches1-batches0
	if ok {
		ns := int64(cpu)
		u.CPUNs = &ns
	}
	u.RSSMB, _ = vmHWM("self")
	if err := out.Encode(u); err != nil {
		return err
	}
	// Stay up until told (or the parent is gone): the others may still
	// need this node for a quorum.
	select {
	case <-in:
	case <-ctx.Done():
	}
	return lx.Close()
}
