package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// report is everything a run produced; results.json is its JSON.
type report struct {
	Machine  machine        `json:"machine"`
	Command  string         `json:"command"`
	Options  map[string]any `json:"options"`
	Duration string         `json:"duration"`
	Cells    []*cell        `json:"cells"`
}

// record is the options as they were applied (-quick expanded).
func (o *options) record() map[string]any {
	return map[string]any{
		"modes":        o.modes,
		"sizes":        o.sizes,
		"workloads":    o.workloads,
		"callers":      o.callers,
		"baselines":    o.baselines,
		"count":        o.count,
		"duration":     o.duration.String(),
		"max_entries":  o.maxEntries,
		"append_max":   o.appendMax(),
		"warmup":       o.warmup,
		"alloc_runs":   o.allocRuns,
		"cell_timeout": o.cellTimeout.String(),
		"quick":        o.quick,
	}
}

// markdownTable is the results table (the medians) with its footnotes.
func (r *report) markdownTable() string {
	var b strings.Builder
	b.WriteString("| series | mode | size | workload | callers | entries/s | MB/s | p50 ms | p99 ms | p99.9 ms | allocs/call | peak RSS MB |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Cells {
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
		if c.Series == seriesRaft {
			mbs += " (payload)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.Series, c.Mode, sizeName(c.Size), c.Workload, c.callersText(),
			fmtNum(m.EntriesPerSec), mbs, fmtOpt(m.P50), fmtOpt(m.P99), fmtOpt(m.P999), allocs, rss)
	}
	return b.String()
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
- Peak RSS is VmHWM from /proc: for inproc rows and the baselines it is
  the whole benchmark process ("process": three nodes plus the harness),
  reset at the start of each measurement through /proc/self/clear_refs
  where the kernel allows it; for procs rows it is the largest of the
  three child processes' peaks.
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
