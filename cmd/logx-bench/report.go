package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// report is everything a run produced; results.json is its JSON.
type report struct {
	Machine  machine        `json:"machine"`
	Command  string         `json:"command"`
	Options  map[string]any `json:"options"`
	Duration string         `json:"duration"`
	Cells    []*cell        `json:"cells"`
	// Incomplete is why the run stopped early, "" when every round ran:
	// the report then holds the runs made before the failure.
	Incomplete string `json:"incomplete,omitempty"`
	// VsSlog compares each logx async cell with the slog-file async cell
	// of its size (medians).
	VsSlog []slogRatio `json:"vs_slog,omitempty"`
	// VsPeers compares each logx append cell with raft-1 and nats-js
	// with as many callers, round by round.
	VsPeers []peerRatio `json:"vs_peers,omitempty"`
}

// peerRatio is a logx append cell against the peers the run has (raft-1,
// nats-js) with as many callers. The ratios are medians over the rounds of
// the ratio of entries/s within a round (the cells run one after another
// in each round); BestRatio's denominator is, in each round, the faster
// peer's rate. The rates and p99s are the cells' medians.
type peerRatio struct {
	Mode              string   `json:"mode"`
	Size              int      `json:"size"`
	Callers           int      `json:"callers"`
	Rounds            int      `json:"rounds"`
	BestRatio         float64  `json:"best_ratio_round_median"`
	RaftRatio         *float64 `json:"raft_ratio_round_median,omitempty"`
	NATSRatio         *float64 `json:"nats_ratio_round_median,omitempty"`
	LogxEntriesPerSec float64  `json:"logx_entries_per_sec"`
	RaftEntriesPerSec *float64 `json:"raft_entries_per_sec,omitempty"`
	NATSEntriesPerSec *float64 `json:"nats_entries_per_sec,omitempty"`
	LogxP99           *float64 `json:"logx_p99_ms,omitempty"`
	RaftP99           *float64 `json:"raft_p99_ms,omitempty"`
	NATSP99           *float64 `json:"nats_p99_ms,omitempty"`
}

// slogRatio is a logx async cell against slog-file async, same size, same
// run. EntriesRatio is logx's entries/s over slog's; CPURatio is logx's
// CPU per entry (the whole cluster) over slog's (nil when either is
// missing).
type slogRatio struct {
	Mode              string   `json:"mode"`
	Size              int      `json:"size"`
	LogxEntriesPerSec float64  `json:"logx_entries_per_sec"`
	SlogEntriesPerSec float64  `json:"slog_entries_per_sec"`
	EntriesRatio      *float64 `json:"entries_ratio,omitempty"`
	LogxCPUUsPerEntry *float64 `json:"logx_cpu_us_per_entry,omitempty"`
	SlogCPUUsPerEntry *float64 `json:"slog_cpu_us_per_entry,omitempty"`
	CPURatio          *float64 `json:"cpu_ratio,omitempty"`
}

// slogRatios pairs every logx async cell with the slog-file async cell of
// the same size, in the order of the cells.
func (r *report) slogRatios() []slogRatio {
	var out []slogRatio
	for _, c := range r.Cells {
		if c.Series != seriesLogx || c.Workload != "async" {
			continue
		}
		for _, s := range r.Cells {
			if s.Series != seriesSlog || s.Workload != "async" || s.Size != c.Size {
				continue
			}
			x := slogRatio{
				Mode: c.Mode, Size: c.Size,
				LogxEntriesPerSec: c.Median.EntriesPerSec, SlogEntriesPerSec: s.Median.EntriesPerSec,
				LogxCPUUsPerEntry: c.Median.CPUUsPerEntry, SlogCPUUsPerEntry: s.Median.CPUUsPerEntry,
			}
			if x.SlogEntriesPerSec > 0 {
				x.EntriesRatio = ptr(x.LogxEntriesPerSec / x.SlogEntriesPerSec)
			}
			if x.LogxCPUUsPerEntry != nil && x.SlogCPUUsPerEntry != nil && *x.SlogCPUUsPerEntry > 0 {
				x.CPURatio = ptr(*x.LogxCPUUsPerEntry / *x.SlogCPUUsPerEntry)
			}
			out = append(out, x)
			break
		}
	}
	return out
}

// peerRatios pairs every logx append cell with the raft-1 and nats-js
// cells of its size and callers, run by run of the same round; rounds
// where a cell has no rate are left out.
func (r *report) peerRatios() []peerRatio {
	find := func(series string, size, callers int) *cell {
		i := slices.IndexFunc(r.Cells, func(c *cell) bool {
			return c.Series == series && c.Size == size && c.Callers == callers
		})
		if i < 0 {
			return nil
		}
		return r.Cells[i]
	}
	rates := func(c *cell) map[int]float64 {
		m := map[int]float64{}
		if c != nil {
			for _, run := range c.Runs {
				if run.EntriesPerSec > 0 {
					m[run.Round] = run.EntriesPerSec
				}
			}
		}
		return m
	}
	med := func(v []float64) *float64 { return medianOf(v, func(x float64) *float64 { return &x }) }
	var out []peerRatio
	for _, c := range r.Cells {
		if c.Series != seriesLogx || c.Workload != "append" {
			continue
		}
		raft, nats := find(seriesRaft, c.Size, c.Callers), find(seriesNATS, c.Size, c.Callers)
		if raft == nil && nats == nil {
			continue
		}
		logxR, raftR, natsR := rates(c), rates(raft), rates(nats)
		var best, vsRaft, vsNATS []float64
		for round, l := range logxR {
			f, okF := raftR[round]
			n, okN := natsR[round]
			if okF {
				vsRaft = append(vsRaft, l/f)
			}
			if okN {
				vsNATS = append(vsNATS, l/n)
			}
			// A round counts for the best peer only with every peer the
			// run has.
			if (okF || raft == nil) && (okN || nats == nil) {
				best = append(best, l/max(f, n))
			}
		}
		if len(best) == 0 {
			continue
		}
		x := peerRatio{Mode: c.Mode, Size: c.Size, Callers: c.Callers, Rounds: len(best), BestRatio: *med(best),
			RaftRatio: med(vsRaft), NATSRatio: med(vsNATS), LogxEntriesPerSec: c.Median.EntriesPerSec, LogxP99: c.Median.P99}
		if raft != nil {
			x.RaftEntriesPerSec, x.RaftP99 = ptr(raft.Median.EntriesPerSec), raft.Median.P99
		}
		if nats != nil {
			x.NATSEntriesPerSec, x.NATSP99 = ptr(nats.Median.EntriesPerSec), nats.Median.P99
		}
		out = append(out, x)
	}
	return out
}

// record is the options as they were applied (-quick expanded).
func (o *options) record() map[string]any {
	return map[string]any{
		"modes":         o.modes,
		"sizes":         o.sizes,
		"workloads":     o.workloads,
		"callers":       o.callers,
		"baselines":     o.baselines,
		"count":         o.count,
		"duration":      o.duration.String(),
		"idle_modes":    o.idleModes,
		"idle_duration": o.idleDur.String(),
		"idle_settle":   o.idleSettle().String(),
		"max_entries":   o.maxEntries,
		"append_max":    o.appendMax(),
		"warmup":        o.warmup,
		"alloc_runs":    o.allocRuns,
		"cell_timeout":  o.cellTimeout.String(),
		"quick":         o.quick,
	}
}

// markdownTable is the results (the medians): the main table, then, where
// the run has them, the procs cells per node, the idle cells, the
// comparison with slog-file and that with the replicated peers.
func (r *report) markdownTable() string {
	var b strings.Builder
	for _, c := range r.Cells {
		if c.Workload == "idle" {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("| series | mode | size | workload | callers | entries/s | MB/s | p50 ms | p99 ms | p99.9 ms | allocs/call | peak RSS MB | µs CPU/entry | entries/batch |\n")
			b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		}
		m := c.Median
		allocs := ""
		if m.AllocsPerCall != nil {
			allocs = fmt.Sprintf("%.1f", *m.AllocsPerCall)
			if c.Workload == "append" {
				allocs += " (process)" // the commit's work counts too: see the notes
			}
		}
		rss := ""
		if m.PeakRSSMB != nil {
			rss = fmt.Sprintf("%.0f", *m.PeakRSSMB)
			if m.RSSScope == "process" {
				rss += " (process)"
			}
		}
		mbs := fmtFloat(m.MBPerSec)
		if c.Series == seriesRaft || c.Series == seriesNATS {
			mbs += " (payload)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.Series, c.Mode, sizeName(c.Size), c.workloadText(), c.callersText(),
			fmtNum(m.EntriesPerSec), mbs, fmtOpt(m.P50), fmtOpt(m.P99), fmtOpt(m.P999), allocs, rss, fmtOpt(m.CPUUsPerEntry), fmtOpt(m.EntriesPerBatch))
	}
	b.WriteString(r.nodesTable())
	b.WriteString(r.idleTable())
	b.WriteString(r.slogLines())
	b.WriteString(r.peerLines())
	return b.String()
}

// nodesTable is CPU per entry and peak RSS per node of the procs cells
// that carried traffic, "" when there are none.
func (r *report) nodesTable() string {
	var b strings.Builder
	for _, c := range r.Cells {
		m := c.Median
		if c.Workload == "idle" || len(m.Nodes) == 0 {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\nPer node (procs): each node's CPU time over all the cell's entries; the follower columns give the larger of the two followers.\n\n")
			b.WriteString("| mode | size | workload | callers | leader µs CPU/entry | follower µs CPU/entry | 3 nodes µs CPU/entry | leader peak RSS MB | follower peak RSS MB |\n")
			b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|\n")
		}
		var lcpu, lrss *float64
		if l := leaderNode(m.Nodes); l != nil {
			lcpu, lrss = l.CPUUsPerEntry, l.PeakRSSMB
		}
		fcpu := followerMax(m.Nodes, func(n nodeUsage) *float64 { return n.CPUUsPerEntry })
		frss := followerMax(m.Nodes, func(n nodeUsage) *float64 { return n.PeakRSSMB })
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.Mode, sizeName(c.Size), c.workloadText(), c.callersText(),
			fmtOpt(lcpu), fmtOpt(fcpu), fmtOpt(m.CPUUsPerEntry), fmtRSS(lrss), fmtRSS(frss))
	}
	return b.String()
}

// idleTable is the idle cells' CPU use, a row per node (procs) or one for
// the process (inproc), "" when there are none.
func (r *report) idleTable() string {
	var b strings.Builder
	for _, c := range r.Cells {
		if c.Workload != "idle" {
			continue
		}
		m := c.Median
		if b.Len() == 0 {
			b.WriteString("\nIdle: a ready, warmed-up cluster without traffic, CPU time as a percentage of one core.\n\n")
			b.WriteString("| mode | node | role | CPU % of a core | peak RSS MB | seconds |\n")
			b.WriteString("|---|---|---|---:|---:|---:|\n")
		}
		if len(m.Nodes) == 0 {
			fmt.Fprintf(&b, "| %s | all 3 (process) | - | %s | %s | %.1f |\n", c.Mode+c.streamsText(), fmtOpt(m.CPUPercent), fmtRSS(m.PeakRSSMB), m.Seconds)
			continue
		}
		for _, n := range m.Nodes {
			node := n.Node
			if node == "" {
				node = "(varies)"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.1f |\n", c.Mode+c.streamsText(), node, n.Role, fmtOpt(n.CPUPercent), fmtRSS(n.PeakRSSMB), n.Seconds)
		}
	}
	return b.String()
}

// slogLines compares each logx async cell with slog-file async of the same
// size, "" when the run has no such pair.
func (r *report) slogLines() string {
	var b strings.Builder
	for _, x := range r.slogRatios() {
		if b.Len() == 0 {
			b.WriteString("\nAgainst slog-file async, same run (CPU: the whole cluster's, per entry):\n\n")
		}
		fmt.Fprintf(&b, "- %s, %s: async entries/s %s of slog-file's (%s vs %s)",
			sizeName(x.Size), x.Mode, fmtRatio(x.EntriesRatio), fmtNum(x.LogxEntriesPerSec), fmtNum(x.SlogEntriesPerSec))
		if x.CPURatio != nil {
			fmt.Fprintf(&b, "; CPU/entry %sx slog-file's (%s vs %s µs)",
				fmtRatio(x.CPURatio), fmtOpt(x.LogxCPUUsPerEntry), fmtOpt(x.SlogCPUUsPerEntry))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// peerLines compares each logx append cell with raft-1 and nats-js at as
// many callers, "" when the run has neither.
func (r *report) peerLines() string {
	var b strings.Builder
	for _, x := range r.peerRatios() {
		if b.Len() == 0 {
			b.WriteString("\nlogx Append against the peers with as many callers, round by round (entries/s: the median of the rounds' ratios; p99: the cells' medians):\n\n")
		}
		fmt.Fprintf(&b, "- %s, %s, %s: %sx the faster peer", sizeName(x.Size), x.Mode, count(x.Callers, "caller"), fmtRatio(&x.BestRatio))
		var each []string
		if x.RaftRatio != nil {
			each = append(each, fmt.Sprintf("raft-1 %sx", fmtRatio(x.RaftRatio)))
		}
		if x.NATSRatio != nil {
			each = append(each, fmt.Sprintf("nats-js %sx", fmtRatio(x.NATSRatio)))
		}
		fmt.Fprintf(&b, " (%s; %s)", strings.Join(each, ", "), count(x.Rounds, "round"))
		if x.LogxP99 != nil {
			fmt.Fprintf(&b, "; p99 %s ms", fmtOpt(x.LogxP99))
			if x.RaftP99 != nil {
				fmt.Fprintf(&b, ", raft-1 %s", fmtOpt(x.RaftP99))
			}
			if x.NATSP99 != nil {
				fmt.Fprintf(&b, ", nats-js %s", fmtOpt(x.NATSP99))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// count is "1 thing" or "n things".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

func fmtRSS(p *float64) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%.0f", *p)
}

// fmtRatio gives a ratio two significant digits or more.
func fmtRatio(p *float64) string {
	if p == nil {
		return "?"
	}
	if *p < 1 {
		return strconv.FormatFloat(*p, 'g', 2, 64)
	}
	return fmtFloat(*p)
}

const footnotes = `
Notes:

- Every logx and raft-1 cell runs on a fresh 3-node cluster on 127.0.0.1
  (free ports, data in a temporary directory removed afterwards), logx with
  its Config defaults apart from NodeID, Addr, Peers, Dir, File and
  LogOutput (io.Discard). A cell runs for -duration or until its entry bound
  (-max-entries for async and slog-file, a tenth of it for append and
  raft-1), whichever comes first, after a warm-up. With -count N every
  figure is the median of the N runs (results.json has every run).
- logx async: Info from 4 goroutines on each of the 3 nodes; the clock
  stops when, after a Flush on each node, every node's Stats().Seq has
  reached the total, so all three nodes' files hold every entry (the
  producers stop at -duration; the entries still queued then are in the
  count and in the time).
  logx append: Append(ctx, LevelInfo, msg, "i", i) from the given number of
  callers, spread round-robin over the nodes (a single caller uses a
  follower); the clock stops when the last caller returns. procs: each node
  is a child process running its own share of the producers; the parent
  starts them together and takes the earliest start and latest end.
- MB/s counts the log once, not per replica: the growth of the first
  node's *.log files (rendered lines, message included) divided by the
  time; for slog-file, the growth of its file. raft-1's MB/s is message
  payload only (it writes no log file).
- Latencies are those of one Append (logx), one slog Info call
  (slog-file "call") or one raft.Apply(...).Error() (raft-1), from
  histograms with 1.6 % resolution; empty for async rows.
- allocs/call is testing.AllocsPerRun(-alloc-runs, ...) on a live node of
  an inproc cluster after its measurement: Info for async rows, Append with
  1 caller on a follower for the 1-caller append row; slog-file async: its
  Info. AllocsPerRun rounds down to a whole number and counts every
  allocation in the process while it runs (GOMAXPROCS 1), so Append's
  figure includes the commit work of all three in-process nodes (Raft,
  forwarding, apply), not only the caller's.
- Peak RSS is VmHWM from /proc, reset at the start of each measurement
  through /proc/self/clear_refs where the kernel allows it: for inproc
  rows and the baselines it is the whole benchmark process ("process":
  three nodes plus the harness); for procs rows it is the largest of the
  three child processes' peaks (each child resets its own), and the
  per-node table gives the leader's and the larger follower's.
- entries/batch (logx rows): the entries the three nodes' producers
  committed during the measured interval divided by the batches they
  sent (Stats.Committed, Stats.Batches, over every stream): how many
  entries shared a Raft entry. Unlike the rates it hardly moves with the
  machine's noise, so it is the figure to compare builds by when a change
  is meant to batch better.
- µs CPU/entry is CPU time (user plus system, getrusage(RUSAGE_SELF), all
  threads) used during the measured interval, divided by the entries
  committed: for inproc rows and the baselines the whole benchmark
  process (the callers included, as with slog-file); for procs rows the
  sum of the three children, each measured by itself from the start
  signal until every node holds every entry (the parent, which only
  waits, is not counted). The per-node table divides each child's own CPU
  time by all the cell's entries, so its three figures add up to the
  row's.
- idle: a fresh cluster, ready and warmed up like the other cells, then
  left alone for 2 s (or -idle-duration if shorter), then measured
  without traffic for -idle-duration: CPU time as a percentage of one
  core, per child for procs (leader first, then the followers from the
  busiest down; the role is the Raft state at the end, "A->B" if it
  changed), for the whole process for inproc (three nodes plus an idle
  harness). By default only procs mode has an idle cell.
- raft-1 is hashicorp/raft v1.8.0 with raft-wal v0.4.1 as log and stable
  store, file snapshots, TCP transport, raft.DefaultConfig(), a state
  machine that counts, one entry per raft.Apply, every caller on the
  leader. slog-file is log/slog's JSON handler on a 256 KiB bufio.Writer
  over a local file.
- NATS is out of scope and not measured.
`

// write writes results.md, results.json and chart.svg into dir.
func (r *report) write(dir string) error {
	var md strings.Builder
	fmt.Fprintf(&md, "# logx-bench results\n\n")
	fmt.Fprintf(&md, "Machine: %d CPUs (runtime.NumCPU), %s/%s, %s, CPU %q, %s.  \n",
		r.Machine.NumCPU, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.GoVersion, r.Machine.CPUModel, r.Machine.Date)
	fmt.Fprintf(&md, "Command: `%s` (took %s)\n\n", r.Command, r.Duration)
	if r.Incomplete != "" {
		fmt.Fprintf(&md, "**Incomplete:** the run stopped at %s. The medians are of the runs made before it.\n\n", r.Incomplete)
	}
	md.WriteString(r.markdownTable())
	md.WriteString(footnotes)
	md.WriteString("\n![chart](chart.svg)\n")
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(r.chart()), 0o644)
}
