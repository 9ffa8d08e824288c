package main

import (
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

	asyncPerNode        = 4 // goroutines calling Info on each node
	slogAsyncGoroutines = 4
)

// cell is one row of the table: what was measured, every run, and the
// median of the runs.
type cell struct {
	Series   string `json:"series"`   // logx, slog-file, raft-1
	Mode     string `json:"mode"`     // inproc or procs (baselines: inproc)
	Size     int    `json:"size"`     // message bytes
	Workload string `json:"workload"` // async, append (logx); async, call (slog-file); apply (raft-1)
	// Callers is the number of concurrent callers; for logx async it is
	// per node (three nodes).
	Callers int         `json:"callers"`
	Runs    []runResult `json:"runs"`
	Median  runResult   `json:"median"`
}

func (c *cell) label() string {
	who := c.Series
	if c.Series == seriesLogx {
		who += " " + c.Mode
	}
	return fmt.Sprintf("%s %s %s callers=%s", who, sizeName(c.Size), c.Workload, c.callersText())
}

func (c *cell) callersText() string {
	if c.Series == seriesLogx && c.Workload == "async" {
		return fmt.Sprintf("%d/node", c.Callers)
	}
	return strconv.Itoa(c.Callers)
}

// runResult is one measurement. Latencies are in milliseconds; optional
// figures are nil when not measured.
type runResult struct {
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
	med := func(get func(runResult) *float64) *float64 {
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
	f := func(x float64) *float64 { return &x }
	m := runResult{
		EntriesPerSec: *med(func(r runResult) *float64 { return f(r.EntriesPerSec) }),
		MBPerSec:      *med(func(r runResult) *float64 { return f(r.MBPerSec) }),
		Seconds:       *med(func(r runResult) *float64 { return f(r.Seconds) }),
		Entries:       int64(*med(func(r runResult) *float64 { return f(float64(r.Entries)) })),
		FileBytes:     int64(*med(func(r runResult) *float64 { return f(float64(r.FileBytes)) })),
		P50:           med(func(r runResult) *float64 { return r.P50 }),
		P99:           med(func(r runResult) *float64 { return r.P99 }),
		P999:          med(func(r runResult) *float64 { return r.P999 }),
		AllocsPerCall: med(func(r runResult) *float64 { return r.AllocsPerCall }),
		PeakRSSMB:     med(func(r runResult) *float64 { return r.PeakRSSMB }),
		RSSScope:      runs[0].RSSScope,
	}
	return m
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
