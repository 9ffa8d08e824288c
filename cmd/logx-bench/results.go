package main

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	seriesLogx = "logx"
	seriesSlog = "slog-file"
	seriesRaft = "raft-1"
	seriesNATS = "nats-js"

	asyncPerNode        = 4 // goroutines calling Info on each node
	slogAsyncGoroutines = 4
)

// cell is one row of the table: what was measured, every run, and the
// median of the runs.
type cell struct {
	Series   string `json:"series"`   // logx, slog-file, raft-1
	Mode     string `json:"mode"`     // inproc or procs (baselines: inproc)
	Size     int    `json:"size"`     // message bytes
	Workload string `json:"workload"` // async, append, idle (logx); async, call (slog-file); apply (raft-1)
	// Callers is the number of concurrent callers; for logx async it is
	// per node (three nodes); 0 for idle. An idle cell's Size is that of
	// its warm-up's messages.
	Callers int `json:"callers"`
	// Streams is how many streams a logx async or idle cell uses (0 or 1:
	// the default stream only).
	Streams int         `json:"streams,omitempty"`
	Runs    []runResult `json:"runs"`
	Median  runResult   `json:"median"`
}

func (c *cell) label() string {
	who := c.Series
	if c.Series == seriesLogx {
		who += " " + c.Mode
	}
	if c.Workload == "idle" {
		return fmt.Sprintf("%s %s%s", who, c.Workload, c.streamsText())
	}
	return fmt.Sprintf("%s %s %s%s callers=%s", who, sizeName(c.Size), c.Workload, c.streamsText(), c.callersText())
}

// workloadText is the workload, with the streams of a cell of more than
// one.
func (c *cell) workloadText() string { return c.Workload + c.streamsText() }

// streamsText is " (n streams)" for a cell of more than one stream.
func (c *cell) streamsText() string {
	if c.Streams > 1 {
		return fmt.Sprintf(" (%d streams)", c.Streams)
	}
	return ""
}

func (c *cell) callersText() string {
	if c.Workload == "idle" {
		return "-"
	}
	if c.Series == seriesLogx && c.Workload == "async" {
		return fmt.Sprintf("%d/node", c.Callers)
	}
	return strconv.Itoa(c.Callers)
}

// runResult is one measurement. Latencies are in milliseconds; optional
// figures are nil when not measured.
type runResult struct {
	// Round is the round (0, 1, ...) of -count that made this run.
	Round         int     `json:"round"`
	Entries       int64   `json:"entries"`
	Seconds       float64 `json:"seconds"`
	EntriesPerSec float64 `json:"entries_per_sec"`
	// FileBytes is the growth of one node's (or the baseline's) log files
	// during the run; MBPerSec is FileBytes/1e6/Seconds.
	FileBytes     int64    `json:"file_bytes"`
	MBPerSec      float64  `json:"mb_per_sec"`
	P50           *float64 `json:"p50_ms,omitempty"`
	P99           *float64 `json:"p99_ms,omitempty"`
	P999          *float64 `json:"p999_ms,omitempty"`
	AllocsPerCall *float64 `json:"allocs_per_call,omitempty"`
	// PeakRSSMB is VmHWM in MB (2^20 bytes): of this process for inproc
	// cells and baselines (RSSScope "process"), the largest of the three
	// children's for procs cells (RSSScope "max-node").
	PeakRSSMB *float64 `json:"peak_rss_mb,omitempty"`
	RSSScope  string   `json:"rss_scope,omitempty"`
	// CPUSeconds is the CPU time (user plus system, getrusage) used during
	// the measured interval: by this process for inproc cells and the
	// baselines (CPUScope "process"), by the three children together for
	// procs cells (CPUScope "sum-of-nodes"). CPUUsPerEntry is it in
	// microseconds divided by Entries; CPUPercent is it as a percentage
	// of one core over Seconds (for idle cells, the figure that matters).
	CPUSeconds    *float64 `json:"cpu_seconds,omitempty"`
	CPUUsPerEntry *float64 `json:"cpu_us_per_entry,omitempty"`
	CPUPercent    *float64 `json:"cpu_percent,omitempty"`
	CPUScope      string   `json:"cpu_scope,omitempty"`
	// EntriesPerBatch is how many entries a batch (one Raft entry) held
	// during the measured interval: the entries the three nodes'
	// producers committed divided by the batches they sent
	// (Stats.Committed, Stats.Batches, every stream); logx cells only.
	// Unlike the rates it does not move with the machine's noise.
	EntriesPerBatch *float64 `json:"entries_per_batch,omitempty"`
	// Nodes are a procs cell's children, the leader first, then the
	// followers from the busiest (most CPU) down; in a median, position
	// by position.
	Nodes []nodeUsage `json:"nodes,omitempty"`
}

// nodeUsage is what one child of a procs cell used while it was measured.
type nodeUsage struct {
	Node string `json:"node,omitempty"` // n1, n2, n3; empty in a median whose runs disagree
	// Role is the node's Raft state at the end of the measurement
	// ("Leader", "Follower"); "Leader->Follower" and the like when it
	// differs from the state at the start.
	Role string `json:"role"`
	// CPUSeconds is the node's CPU time (user plus system, its own
	// getrusage(RUSAGE_SELF)) from the start signal to the end of the
	// cell; Seconds is that interval on the node's clock.
	CPUSeconds    *float64 `json:"cpu_seconds,omitempty"`
	Seconds       float64  `json:"seconds"`
	CPUPercent    *float64 `json:"cpu_percent,omitempty"`      // of one core
	CPUUsPerEntry *float64 `json:"cpu_us_per_entry,omitempty"` // over all the cell's entries
	PeakRSSMB     *float64 `json:"peak_rss_mb,omitempty"`      // VmHWM, reset at the start signal
}

// cpuMark is a moment and this process's CPU time at it.
type cpuMark struct {
	wall time.Time
	cpu  time.Duration
	ok   bool
}

func markCPU() cpuMark {
	cpu, ok := processCPU()
	return cpuMark{wall: time.Now(), cpu: cpu, ok: ok}
}

// since returns the CPU time and the wall time from m to now; ok is false
// when the CPU time is not available.
func (m cpuMark) since() (cpu, wall time.Duration, ok bool) {
	now := markCPU()
	if !m.ok || !now.ok {
		return 0, now.wall.Sub(m.wall), false
	}
	return now.cpu - m.cpu, now.wall.Sub(m.wall), true
}

// setCPU records cpu, the CPU time of the measured interval (Seconds, set
// by finish), and the figures derived from it.
func (r *runResult) setCPU(cpu time.Duration, scope string) {
	s := cpu.Seconds()
	r.CPUSeconds, r.CPUScope = &s, scope
	r.CPUUsPerEntry, r.CPUPercent = perEntry(s, r.Entries), percent(s, r.Seconds)
}

// perEntry is cpuSeconds in microseconds per entry, nil without entries.
func perEntry(cpuSeconds float64, entries int64) *float64 {
	if entries <= 0 {
		return nil
	}
	return ptr(cpuSeconds * 1e6 / float64(entries))
}

// percent is cpuSeconds as a percentage of one core over seconds.
func percent(cpuSeconds, seconds float64) *float64 {
	if seconds <= 0 {
		return nil
	}
	return ptr(cpuSeconds / seconds * 100)
}

// orderNodes puts the leader first, then the followers from the busiest
// down (then by name), so that runs line up position by position.
func orderNodes(nodes []nodeUsage) {
	val := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	slices.SortStableFunc(nodes, func(a, b nodeUsage) int {
		if la, lb := isLeader(a.Role), isLeader(b.Role); la != lb {
			if la {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(val(b.CPUSeconds), val(a.CPUSeconds)); c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	})
}

// isLeader tells whether a role ends as leader.
func isLeader(role string) bool { return role == "Leader" || strings.HasSuffix(role, "->Leader") }

// leaderNode is the leader among nodes, nil when none is.
func leaderNode(nodes []nodeUsage) *nodeUsage {
	for i := range nodes {
		if isLeader(nodes[i].Role) {
			return &nodes[i]
		}
	}
	return nil
}

// followerMax is the largest of get over the nodes that are not the
// leader, nil when none has it.
func followerMax(nodes []nodeUsage, get func(nodeUsage) *float64) *float64 {
	var out *float64
	for _, n := range nodes {
		if isLeader(n.Role) {
			continue
		}
		if v := get(n); v != nil && (out == nil || *v > *out) {
			out = ptr(*v)
		}
	}
	return out
}

func ptr(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

// setLatency fills the percentiles from h.
func (r *runResult) setLatency(h *hist) {
	if h.n == 0 {
		return
	}
	r.P50, r.P99, r.P999 = ptr(h.quantile(0.50)), ptr(h.quantile(0.99)), ptr(h.quantile(0.999))
}

// finish computes the rates.
func (r *runResult) finish(entries int64, el time.Duration, fileBytes int64) {
	r.Entries, r.Seconds, r.FileBytes = entries, el.Seconds(), fileBytes
	if r.Seconds > 0 {
		r.EntriesPerSec = float64(entries) / r.Seconds
		r.MBPerSec = float64(fileBytes) / 1e6 / r.Seconds
	}
}

// median is the per-figure median of runs.
func median(runs []runResult) runResult {
	if len(runs) == 1 {
		return runs[0]
	}
	med := func(get func(runResult) *float64) *float64 { return medianOf(runs, get) }
	f := func(x float64) *float64 { return &x }
	m := runResult{
		EntriesPerSec:   *med(func(r runResult) *float64 { return f(r.EntriesPerSec) }),
		MBPerSec:        *med(func(r runResult) *float64 { return f(r.MBPerSec) }),
		Seconds:         *med(func(r runResult) *float64 { return f(r.Seconds) }),
		Entries:         int64(*med(func(r runResult) *float64 { return f(float64(r.Entries)) })),
		FileBytes:       int64(*med(func(r runResult) *float64 { return f(float64(r.FileBytes)) })),
		P50:             med(func(r runResult) *float64 { return r.P50 }),
		P99:             med(func(r runResult) *float64 { return r.P99 }),
		P999:            med(func(r runResult) *float64 { return r.P999 }),
		AllocsPerCall:   med(func(r runResult) *float64 { return r.AllocsPerCall }),
		PeakRSSMB:       med(func(r runResult) *float64 { return r.PeakRSSMB }),
		RSSScope:        runs[0].RSSScope,
		CPUSeconds:      med(func(r runResult) *float64 { return r.CPUSeconds }),
		CPUUsPerEntry:   med(func(r runResult) *float64 { return r.CPUUsPerEntry }),
		CPUPercent:      med(func(r runResult) *float64 { return r.CPUPercent }),
		CPUScope:        runs[0].CPUScope,
		Nodes:           medianNodes(runs),
		EntriesPerBatch: med(func(r runResult) *float64 { return r.EntriesPerBatch }),
	}
	return m
}

// setBatches sets EntriesPerBatch from the entries committed and batches
// sent during the measured interval (nothing without batches).
func (r *runResult) setBatches(entries, batches uint64) {
	if batches > 0 {
		x := float64(entries) / float64(batches)
		r.EntriesPerBatch = &x
	}
}

// medianOf is the median of the non-nil get(r) over runs, nil when there
// are none.
func medianOf[T any](runs []T, get func(T) *float64) *float64 {
	var v []float64
	for _, r := range runs {
		if p := get(r); p != nil {
			v = append(v, *p)
		}
	}
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return &m
}

// medianNodes is the per-figure median of the runs' nodes, position by
// position (see orderNodes); nil unless every run has the same number of
// nodes. A position's Role and Node are those of the first run, the Node
// left empty when the runs disagree.
func medianNodes(runs []runResult) []nodeUsage {
	n := len(runs[0].Nodes)
	for _, r := range runs {
		if len(r.Nodes) != n {
			return nil
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]nodeUsage, n)
	for k := range out {
		at := make([]nodeUsage, len(runs))
		for i, r := range runs {
			at[i] = r.Nodes[k]
		}
		u := nodeUsage{Node: at[0].Node, Role: at[0].Role}
		for _, x := range at {
			if x.Node != u.Node {
				u.Node = ""
			}
		}
		f := func(x float64) *float64 { return &x }
		u.Seconds = *medianOf(at, func(x nodeUsage) *float64 { return f(x.Seconds) })
		u.CPUSeconds = medianOf(at, func(x nodeUsage) *float64 { return x.CPUSeconds })
		u.CPUPercent = medianOf(at, func(x nodeUsage) *float64 { return x.CPUPercent })
		u.CPUUsPerEntry = medianOf(at, func(x nodeUsage) *float64 { return x.CPUUsPerEntry })
		u.PeakRSSMB = medianOf(at, func(x nodeUsage) *float64 { return x.PeakRSSMB })
		out[k] = u
	}
	return out
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

// fmtNum formats a rate with thousands separators.
func fmtNum(f float64) string {
	n := int64(math.Round(f))
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtFloat(f float64) string {
	switch {
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case f >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	default:
		return strconv.FormatFloat(f, 'f', 2, 64)
	}
}

func fmtOpt(p *float64) string {
	if p == nil {
		return ""
	}
	if *p < 0.1 {
		return strconv.FormatFloat(*p, 'f', 4, 64)
	}
	return fmtFloat(*p)
}

// machine describes where the run happened.
type machine struct {
	NumCPU    int    `json:"num_cpu"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GoVersion string `json:"go_version"`
	CPUModel  string `json:"cpu_model"`
	Date      string `json:"date"`
}

func machineInfo() machine {
	m := machine{
		NumCPU:    runtime.NumCPU(),
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
		GoVersion: runtime.Version(),
		CPUModel:  "unknown",
		Date:      time.Now().UTC().Format(time.RFC3339),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// vmHWM returns the peak resident set size of process pid ("self" for this
// one) in MB, from /proc/<pid>/status; ok is false where that is missing.
func vmHWM(pid string) (mb float64, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "VmHWM:"); found {
			f := strings.Fields(v) // "12345 kB"
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					return kb / 1024, true
				}
			}
		}
	}
	return 0, false
}

// resetPeakRSS resets this process's VmHWM to its current RSS (Linux 4.0
// and later), so that an inproc cell's peak is its own; it does nothing
// where that is not possible.
func resetPeakRSS() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

func (r *runResult) setProcessRSS() {
	if mb, ok := vmHWM("self"); ok {
		r.PeakRSSMB, r.RSSScope = &mb, "process"
	}
}

// progress is the one-line summary of a run printed as it finishes.
func (r *runResult) progress(c *cell) string {
	cpu := ""
	if r.CPUUsPerEntry != nil {
		cpu = fmt.Sprintf(", %s µs CPU/entry", fmtOpt(r.CPUUsPerEntry))
	}
	if c.Workload == "idle" {
		var parts []string
		for _, n := range r.Nodes {
			parts = append(parts, fmt.Sprintf("%s %s %s%%", n.Node, n.Role, fmtOpt(n.CPUPercent)))
		}
		if len(parts) == 0 {
			parts = append(parts, "process "+fmtOpt(r.CPUPercent)+"%")
		}
		return fmt.Sprintf("idle CPU (of one core) %s over %.2fs", strings.Join(parts, ", "), r.Seconds)
	}
	p99 := "-"
	if r.P99 != nil {
		p99 = fmtOpt(r.P99) + " ms"
	}
	return fmt.Sprintf("%s entries/s, %s MB/s, p99 %s%s, %d entries in %.2fs",
		fmtNum(r.EntriesPerSec), fmtFloat(r.MBPerSec), p99, cpu, r.Entries, r.Seconds)
}
