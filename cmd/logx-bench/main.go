// Command logx-bench measures a 3-node logx cluster on 127.0.0.1 against
// two baselines, in one invocation, and writes a table, a JSON file and a
// chart:
//
//	go run ./cmd/logx-bench                   # everything, ~5 s per cell
//	go run ./cmd/logx-bench -quick            # a smoke test, a few seconds per cell
//	go run ./cmd/logx-bench -modes inproc -sizes 100 -workloads append -callers 16 -duration 2s
//
// Cells are logx with its three nodes in this process (inproc) or in three
// child processes (procs, the command re-executes itself), for each message
// size, for async logging (Info from 4 goroutines per node) and for Append
// from 1, 4, 16, 64 and 256 concurrent callers; plus log/slog's JSON
// handler writing to a buffered local file (slog-file) and plain
// hashicorp/raft with raft-wal committing one entry per Apply (raft-1).
// Every cluster cell starts a fresh cluster with its data in a temporary
// directory that is removed afterwards.
//
// Every row also gives the CPU time (user plus system, from getrusage) per
// entry: of the whole process for inproc cells and the baselines, of the
// three children together for procs cells, with the leader's and a
// follower's own in a per-node table. An idle cell (workload idle; by
// default in procs mode only, about 15 s) measures a ready, warmed-up
// cluster left without traffic: each node's CPU use as a percentage of one
// core (procs), or the process's (inproc). The report ends with logx
// async against slog-file async: entries/s and CPU per entry; and logx
// Append against raft-1 (and NATS JetStream, with -nats and the binary of
// benchmarks/nats) with as many callers, round by round.
//
// -count N runs N rounds of every cell (see rounds) and reports each
// cell's median.
//
// The table goes to stdout, progress to stderr; -out DIR (default: a new
// temporary directory) receives results.md, results.json and chart.svg.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "logx-bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	args        []string // as given, for the record
	modes       []string
	sizes       []int
	workloads   []string
	idleModes   []string // the modes that get an idle cell
	callers     []int
	baselines   []string
	nats        string // the NATS benchmark's binary, "" for none
	count       int
	duration    time.Duration
	idleDur     time.Duration
	streams     []int
	maxEntries  int
	warmup      int
	allocRuns   int
	cellTimeout time.Duration
	out         string
	profile     string // directory for CPU and heap profiles of each measured phase
	quick       bool

	child     int    // >= 0 in a child process of a procs cell
	childSpec string // JSON childSpec, with -child
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{args: args}
	fs := flag.NewFlagSet("logx-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modes := fs.String("modes", "inproc,procs", "logx cluster modes: inproc (3 nodes in this process), procs (3 child processes)")
	sizes := fs.String("sizes", "100,1024", "message sizes in bytes")
	workloads := fs.String("workloads", "async,append", "logx workloads: async (Info), append (Append, waits for commit), idle (CPU use of a settled cluster without traffic); by default idle runs in procs mode only")
	callers := fs.String("callers", "1,4,16,64,256", "concurrent callers for append, raft-1 and slog-file")
	streams := fs.String("streams", "1", "streams the async and idle workloads use: the default stream and n-1 more (async writes round-robin over them; idle waits until all have gone idle)")
	baselines := fs.String("baselines", "slog,raft", "baselines: slog (log/slog JSON to a buffered file), raft (hashicorp/raft, one entry per Apply); empty for none")
	fs.StringVar(&o.nats, "nats", "", "the NATS JetStream benchmark's binary (cd benchmarks/nats && go build -o PATH .): adds a nats-js cell per number of callers to every round")
	fs.IntVar(&o.count, "count", 1, "rounds: run every cell this many times, a round at a time, and report each cell's median")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per cell (a cell also stops at -max-entries)")
	fs.DurationVar(&o.idleDur, "idle-duration", 10*time.Second, "measured time of an idle cell")
	fs.IntVar(&o.maxEntries, "max-entries", 2_000_000, "entries per async cell at most; append and raft-1 cells take a tenth of it")
	fs.IntVar(&o.warmup, "warmup", 2000, "entries each node logs before the clock starts")
	fs.IntVar(&o.allocRuns, "alloc-runs", 1000, "testing.AllocsPerRun iterations for the allocs/call column")
	fs.DurationVar(&o.cellTimeout, "cell-timeout", 3*time.Minute, "give up on a cell after this long")
	fs.StringVar(&o.out, "out", "", "directory for results.md, results.json and chart.svg (default: a new temporary directory)")
	fs.StringVar(&o.profile, "profile", "", "write a CPU profile and a heap profile of each logx cell's measured phase into this directory (procs: one per node), and an execution trace of each idle cell")
	fs.BoolVar(&o.quick, "quick", false, "smoke test: -sizes 100 -callers 1,16 -duration 500ms -idle-duration 1s -max-entries 20000 -warmup 200 -alloc-runs 100, unless given")
	fs.IntVar(&o.child, "child", -1, "internal: run node `i` of a procs cell")
	fs.StringVar(&o.childSpec, "child-spec", "", "internal: the cell a -child node runs (JSON)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: logx-bench [flags]\n\nBenchmarks a 3-node logx cluster on 127.0.0.1 against log/slog to a file and plain hashicorp/raft.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			if strings.HasPrefix(f.Name, "child") {
				return // internal
			}
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  -%s %s\n    \t%s", f.Name, name, usage)
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.child >= 0 {
		return o, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"sizes":         func() { *sizes = "100" },
			"callers":       func() { *callers = "1,16" },
			"duration":      func() { o.duration = 500 * time.Millisecond },
			"idle-duration": func() { o.idleDur = time.Second },
			"max-entries":   func() { o.maxEntries = 20000 },
			"warmup":        func() { o.warmup = 200 },
			"alloc-runs":    func() { o.allocRuns = 100 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	var err error
	if o.modes, err = words("-modes", *modes, "inproc", "procs"); err != nil {
		return nil, err
	}
	if o.workloads, err = words("-workloads", *workloads, "async", "append", "idle"); err != nil {
		return nil, err
	}
	// idle is a cell per mode, not per size; by default only procs mode
	// has one (about 15 s: start-up, settling and -idle-duration).
	for _, m := range o.modes {
		if slices.Contains(o.workloads, "idle") || !set["workloads"] && m == "procs" {
			o.idleModes = append(o.idleModes, m)
		}
	}
	o.workloads = slices.DeleteFunc(o.workloads, func(w string) bool { return w == "idle" })
	if o.baselines, err = words("-baselines", *baselines, "slog", "raft"); err != nil {
		return nil, err
	}
	if o.nats != "" {
		if err := checkNATS(o.nats); err != nil {
			return nil, err
		}
	}
	if o.sizes, err = ints("-sizes", *sizes, 1, 60000); err != nil {
		return nil, err
	}
	if o.streams, err = ints("-streams", *streams, 1, 256); err != nil {
		return nil, err
	}
	if o.callers, err = ints("-callers", *callers, 1, 4096); err != nil {
		return nil, err
	}
	switch {
	case o.count < 1:
		return nil, fmt.Errorf("-count: %d is less than 1", o.count)
	case o.duration <= 0:
		return nil, fmt.Errorf("-duration: %v is not positive", o.duration)
	case o.idleDur <= 0:
		return nil, fmt.Errorf("-idle-duration: %v is not positive", o.idleDur)
	case o.maxEntries < 10:
		return nil, fmt.Errorf("-max-entries: %d is less than 10", o.maxEntries)
	case o.warmup < 0:
		return nil, fmt.Errorf("-warmup: %d is negative", o.warmup)
	case o.allocRuns < 1:
		return nil, fmt.Errorf("-alloc-runs: %d is less than 1", o.allocRuns)
	case o.cellTimeout < o.duration+10*time.Second:
		return nil, fmt.Errorf("-cell-timeout: %v leaves too little time for -duration %v", o.cellTimeout, o.duration)
	case len(o.idleModes) > 0 && o.cellTimeout < o.idleDur+o.idleSettle()+10*time.Second:
		return nil, fmt.Errorf("-cell-timeout: %v leaves too little time for -idle-duration %v", o.cellTimeout, o.idleDur)
	}
	return o, nil
}

// words splits a comma-separated list and checks every item is allowed.
func words(name, s string, allowed ...string) ([]string, error) {
	var out []string
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		if !slices.Contains(allowed, w) {
			return nil, fmt.Errorf("%s: %q is not one of %s", name, w, strings.Join(allowed, ", "))
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out, nil
}

// ints parses a comma-separated list of integers in [lo, hi].
func ints(name, s string, lo, hi int) ([]int, error) {
	var out []int
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%s: %q is not an integer from %d to %d", name, w, lo, hi)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty", name)
	}
	return out, nil
}

// idleSettle is how long an idle cell waits, once its cluster is ready and
// warmed up, before it starts measuring: 2 s, or -idle-duration if shorter.
func (o *options) idleSettle() time.Duration { return min(2*time.Second, o.idleDur) }

// appendMax is the entry bound of an append or raft-1 cell.
func (o *options) appendMax() int { return max(o.maxEntries/10, 1) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.child >= 0 {
		return runChild(ctx, o)
	}
	if o.out == "" {
		if o.out, err = os.MkdirTemp("", "logx-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "logx-bench: results go to %s\n", o.out)

	cells := plan(o)
	order := rounds(cells)
	started := time.Now()
	var failed error // the cell that failed; the rounds before it are reported
rounds:
	for r := 0; r < o.count; r++ {
		for k, c := range order {
			fmt.Fprintf(stderr, "[round %d/%d, %d/%d] %s ... ", r+1, o.count, k+1, len(order), c.label())
			t0 := time.Now()
			res, err := runCell(ctx, o, c)
			if err != nil {
				fmt.Fprintln(stderr, "FAILED")
				failed = fmt.Errorf("round %d: %s: %w", r+1, c.label(), err)
				break rounds
			}
			fmt.Fprintf(stderr, "%s (cell took %.1fs)\n", res.progress(c), time.Since(t0).Seconds())
			res.Round = r
			c.Runs = append(c.Runs, res)
		}
	}
	// After a failure the report holds the runs made before it: the cells
	// without one are left out.
	cells = slices.DeleteFunc(cells, func(c *cell) bool { return len(c.Runs) == 0 })
	for _, c := range cells {
		c.Median = median(c.Runs)
	}
	rep := &report{
		Machine:  machineInfo(),
		Command:  commandLine(o.args),
		Options:  o.record(),
		Cells:    cells,
		Duration: time.Since(started).Round(time.Millisecond).String(),
	}
	if failed != nil {
		rep.Incomplete = failed.Error()
	}
	rep.VsSlog = rep.slogRatios()
	rep.VsPeers = rep.peerRatios()
	table := rep.markdownTable()
	fmt.Fprint(stdout, table)
	if err := rep.write(o.out); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "logx-bench: wrote %s, %s and %s\n",
		filepath.Join(o.out, "results.md"), filepath.Join(o.out, "results.json"), filepath.Join(o.out, "chart.svg"))
	return failed
}

// runCell runs one measurement of c, bounded by -cell-timeout.
func runCell(ctx context.Context, o *options, c *cell) (runResult, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cellTimeout)
	defer cancel()
	switch {
	case c.Series == seriesLogx && c.Mode == "inproc":
		return runLogxInproc(ctx, o, c)
	case c.Series == seriesLogx && c.Mode == "procs":
		return runLogxProcs(ctx, o, c)
	case c.Series == seriesSlog:
		return runSlog(ctx, o, c)
	case c.Series == seriesRaft:
		return runRaft(ctx, o, c)
	case c.Series == seriesNATS:
		return runNATS(ctx, o, c)
	}
	return runResult{}, fmt.Errorf("no such cell")
}

// plan lists the cells the flags select, in the order the report shows
// them (rounds gives the order they run in).
func plan(o *options) []*cell {
	var cells []*cell
	for _, mode := range o.modes {
		for _, size := range o.sizes {
			for _, w := range o.workloads {
				if w == "async" {
					for _, s := range o.streams {
						cells = append(cells, &cell{Series: seriesLogx, Mode: mode, Size: size, Workload: "async", Callers: asyncPerNode, Streams: s})
					}
					continue
				}
				for _, n := range o.callers {
					cells = append(cells, &cell{Series: seriesLogx, Mode: mode, Size: size, Workload: "append", Callers: n})
				}
			}
		}
		if slices.Contains(o.idleModes, mode) {
			for _, s := range o.streams {
				cells = append(cells, &cell{Series: seriesLogx, Mode: mode, Size: o.sizes[0], Workload: "idle", Streams: s})
			}
		}
	}
	if slices.Contains(o.baselines, "slog") {
		for _, size := range o.sizes {
			cells = append(cells, &cell{Series: seriesSlog, Mode: "inproc", Size: size, Workload: "async", Callers: slogAsyncGoroutines})
			for _, n := range o.callers {
				cells = append(cells, &cell{Series: seriesSlog, Mode: "inproc", Size: size, Workload: "call", Callers: n})
			}
		}
	}
	if slices.Contains(o.baselines, "raft") {
		for _, size := range o.sizes {
			for _, n := range o.callers {
				cells = append(cells, &cell{Series: seriesRaft, Mode: "inproc", Size: size, Workload: "apply", Callers: n})
			}
		}
	}
	if o.nats != "" {
		for _, size := range o.sizes {
			for _, n := range o.callers {
				cells = append(cells, &cell{Series: seriesNATS, Mode: "inproc", Size: size, Workload: "publish", Callers: n})
			}
		}
	}
	return cells
}

// rounds is the order in which one round runs the cells: -count rounds
// each run every cell once, so that a spell of a slow disk or a busy
// neighbour, which on a shared machine lasts minutes, falls on every series
// alike instead of on whichever ran then. Within a round the cells that are
// compared run one after another, by size and then number of callers,
// smallest first: each size's async cells (logx in one process, slog-file,
// logx in three processes), then for each number of callers raft-1, logx in
// one process, nats-js, logx in three processes and slog-file, so that each
// logx cell has a peer next to it and the other within two cells; the idle
// cells last.
func rounds(cells []*cell) []*cell {
	group := func(c *cell) (size, callers, rank int) {
		switch {
		case c.Workload == "idle":
			return 1 << 30, 0, 0
		case c.Workload == "async":
			size, callers = c.Size, -1
		default:
			size, callers = c.Size, c.Callers
		}
		switch {
		case c.Series == seriesRaft:
			rank = 0
		case c.Series == seriesLogx && c.Mode == "inproc":
			rank = 1
		case c.Series == seriesNATS, c.Series == seriesSlog && c.Workload == "async":
			rank = 2
		case c.Series == seriesLogx:
			rank = 3
		default: // slog-file calls
			rank = 4
		}
		return size, callers, rank
	}
	order := slices.Clone(cells)
	slices.SortStableFunc(order, func(a, b *cell) int {
		as, ac, ar := group(a)
		bs, bc, br := group(b)
		return cmp.Or(cmp.Compare(as, bs), cmp.Compare(ac, bc), cmp.Compare(ar, br))
	})
	return order
}

// commandLine is the command as invoked, shell-quoted where needed.
func commandLine(args []string) string {
	parts := []string{"logx-bench"}
	if len(os.Args) > 0 && filepath.Base(os.Args[0]) != "" && !strings.HasSuffix(os.Args[0], ".test") {
		parts[0] = filepath.Base(os.Args[0])
	}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\*?;&|<>()") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
