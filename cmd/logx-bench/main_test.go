package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as a procs cell's child: the parent
// re-executes its own executable, which under go test is this binary, with
// childEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	if os.Getenv(fakeNATSEnv) != "" {
		fakeNATS()
	}
	os.Exit(m.Run())
}

// fakeNATSEnv makes the test binary stand in for the NATS benchmark
// (benchmarks/nats -json): it prints one cell, or fails when the variable
// says "fail".
const fakeNATSEnv = "LOGX_BENCH_FAKE_NATS"

func fakeNATS() {
	args := strings.Join(os.Args[1:], " ")
	mode := os.Getenv(fakeNATSEnv)
	if after, ok := strings.CutPrefix(mode, "once:"); ok {
		// Succeed the first time only: after is a file that says it ran.
		if _, err := os.Stat(after); err == nil {
			mode = "fail"
		} else if err := os.WriteFile(after, nil, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "nats bench: no cluster")
		os.Exit(1)
	}
	// Answer only the invocation runNATS is meant to make.
	if args != "-json -async=false -count 1 -sizes 100 -callers 4 -duration 1.5s -max-entries 5000" {
		fmt.Fprintf(os.Stderr, "unexpected arguments %q\n", args)
		os.Exit(2)
	}
	fmt.Println(`{"size":100,"callers":4,"entries_per_sec":400,"mb_per_sec":0.04,"entries":600,"seconds":1.5,"p50_ms":1,"p99_ms":2,"p999_ms":3}`)
	os.Exit(0)
}

// testBinary is the path of this test binary (the fake NATS benchmark).
func testBinary(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// TestIncomplete checks that a run whose cell fails in a later round
// still reports the rounds before it, says so, and returns the error.
func TestIncomplete(t *testing.T) {
	// Only the nats-js cell, in count rounds, answered by the fake.
	runNATSOnly := func(count, out string, stdout, stderr io.Writer) error {
		return run(context.Background(), []string{"-modes", "inproc", "-workloads", "", "-baselines", "", "-nats", testBinary(t),
			"-count", count, "-sizes", "100", "-callers", "4", "-duration", "1.5s", "-max-entries", "5000", "-out", out}, stdout, stderr)
	}
	out := t.TempDir()
	t.Setenv(fakeNATSEnv, "once:"+filepath.Join(t.TempDir(), "ran"))
	var stdout, stderr bytes.Buffer
	err := runNATSOnly("3", out, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "round 2: nats-js 100B publish callers=4") || !strings.Contains(err.Error(), "no cluster") {
		t.Fatalf("run: %v, want round 2's failure\nstderr:\n%s", err, stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(md, []byte("**Incomplete:** the run stopped at round 2: ")) || !bytes.Contains(md, []byte("| nats-js | inproc | 100B | publish | 4 | 400 |")) {
		t.Errorf("results.md:\n%s", md)
	}
	js, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Incomplete == "" || len(rep.Cells) != 1 || len(rep.Cells[0].Runs) != 1 || rep.Cells[0].Median.EntriesPerSec != 400 {
		t.Errorf("results.json: incomplete %q, cells %+v", rep.Incomplete, rep.Cells)
	}

	// A failure in the first cell leaves an empty report, still written.
	t.Setenv(fakeNATSEnv, "fail")
	out = t.TempDir()
	if err := runNATSOnly("1", out, &stdout, &stderr); err == nil {
		t.Fatal("run with a failing cell: no error")
	}
	if md, rerr := os.ReadFile(filepath.Join(out, "results.md")); rerr != nil || !bytes.Contains(md, []byte("**Incomplete:**")) {
		t.Errorf("results.md after a failed first cell: %v\n%s", rerr, md)
	}
}

// TestRunNATS runs a nats-js cell against the fake NATS benchmark: the
// arguments it passes, the figures it reads, and a failure's message.
func TestRunNATS(t *testing.T) {
	o := &options{nats: testBinary(t), duration: 1500 * time.Millisecond, maxEntries: 5000}
	c := &cell{Series: seriesNATS, Mode: "inproc", Size: 100, Workload: "publish", Callers: 4}
	t.Setenv(fakeNATSEnv, "1")
	res, err := runNATS(context.Background(), o, c)
	if err != nil || res.EntriesPerSec != 400 || res.Entries != 600 || *res.P99 != 2 {
		t.Fatalf("runNATS: %+v, %v", res, err)
	}
	t.Setenv(fakeNATSEnv, "fail")
	if _, err := runNATS(context.Background(), o, c); err == nil || !strings.Contains(err.Error(), "no cluster") {
		t.Errorf("runNATS of a failing benchmark: %v, want its stderr in the error", err)
	}
}

// TestQuick runs the whole command in -quick mode, both modes and both
// baselines, and checks the table, results.json and chart.svg.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several clusters")
	}
	out, profiles := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := run(ctx, []string{"-quick", "-out", out, "-profile", profiles}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("took %v\n%s", time.Since(start).Round(time.Millisecond), stdout.String())

	// -profile: a CPU and a heap profile per logx cell, per node in procs
	// mode, each a gzipped protobuf as pprof writes them.
	for _, name := range []string{"inproc-async-100B-4", "inproc-append-100B-16", "procs-async-100B-4-node1",
		"procs-async-100B-4-node3", "procs-append-100B-16-node2"} {
		for _, kind := range []string{".cpu.pprof", ".heap.pprof"} {
			b, err := os.ReadFile(filepath.Join(profiles, name+kind))
			if err != nil {
				names, _ := filepath.Glob(filepath.Join(profiles, "*"))
				t.Fatalf("%v (the directory holds %q)", err, names)
			}
			if len(b) < 20 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("%s%s: not a gzipped profile (%d bytes)", name, kind, len(b))
			}
		}
	}

	// An idle cell also writes an execution trace per node (what wakes an
	// idle process); the others write none.
	for n := 1; n <= 3; n++ {
		b, err := os.ReadFile(filepath.Join(profiles, fmt.Sprintf("procs-idle-100B-0-node%d.trace", n)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("go 1.")) || !bytes.Contains(b[:16], []byte(" trace\x00")) {
			t.Errorf("node %d's idle trace starts %q: not a Go execution trace", n, b[:min(16, len(b))])
		}
	}
	if traces, _ := filepath.Glob(filepath.Join(profiles, "*async*.trace")); len(traces) > 0 {
		t.Errorf("traces of async cells: %q", traces)
	}

	// The table: every expected row, with positive numbers.
	type row struct{ series, mode, workload, callers string }
	want := []row{
		{"logx", "inproc", "async", "4/node"}, {"logx", "inproc", "append", "1"}, {"logx", "inproc", "append", "16"},
		{"logx", "procs", "async", "4/node"}, {"logx", "procs", "append", "1"}, {"logx", "procs", "append", "16"},
		{"slog-file", "inproc", "async", "4"}, {"slog-file", "inproc", "call", "1"}, {"slog-file", "inproc", "call", "16"},
		{"raft-1", "inproc", "apply", "1"}, {"raft-1", "inproc", "apply", "16"},
	}
	rows := map[row][]string{}
	for _, f := range tableRows(t, stdout.String(), "| series |") {
		line := strings.Join(f, " | ")
		if len(f) != 14 {
			t.Fatalf("row with %d columns: %q", len(f), line)
		}
		if f[2] != "100B" {
			t.Errorf("size %q in %q", f[2], line)
		}
		r := row{f[0], f[1], f[3], f[4]}
		if _, dup := rows[r]; dup {
			t.Errorf("duplicate row %q", line)
		}
		rows[r] = f
	}
	if len(rows) != len(want) {
		t.Errorf("%d rows, want %d", len(rows), len(want))
	}
	positive := func(r row, col int, name string) {
		t.Helper()
		s := strings.ReplaceAll(strings.Fields(rows[r][col] + " x")[0], ",", "")
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			t.Errorf("%v: %s is %q, want a positive number", r, name, rows[r][col])
		}
	}
	for _, r := range want {
		if rows[r] == nil {
			t.Errorf("no row %v", r)
			continue
		}
		positive(r, 5, "entries/s")
		positive(r, 6, "MB/s")
		positive(r, 11, "peak RSS")
		if _, ok := processCPU(); ok {
			positive(r, 12, "µs CPU/entry")
		}
		if r.series == "logx" {
			positive(r, 13, "entries/batch")
			if r.workload == "append" && r.callers == "1" && rows[r][13] != "1.00" {
				t.Errorf("%v: one caller put %s entries in a batch, want 1.00", r, rows[r][13])
			}
		} else if rows[r][13] != "" {
			t.Errorf("%v: entries/batch %q for a baseline", r, rows[r][13])
		}
		if r.workload != "async" {
			positive(r, 7, "p50")
			positive(r, 8, "p99")
			positive(r, 9, "p99.9")
		}
		if r.mode == "inproc" && (r.workload == "async" && r.series == "logx" || r.workload == "append" && r.callers == "1") {
			if _, err := strconv.ParseFloat(strings.TrimSuffix(rows[r][10], " (process)"), 64); err != nil {
				t.Errorf("%v: allocs/call %q", r, rows[r][10])
			}
		}
	}

	// The per-node table: a row per procs cell with traffic, every figure
	// positive.
	nodeRows := tableRows(t, stdout.String(), "| mode | size | workload | callers | leader")
	if len(nodeRows) != 3 {
		t.Errorf("per-node table: %d rows, want 3 (procs async, append 1, append 16)", len(nodeRows))
	}
	for _, f := range nodeRows {
		if len(f) != 9 || f[0] != "procs" {
			t.Errorf("per-node row %q", f)
			continue
		}
		for col := 4; col < 9; col++ {
			if _, ok := processCPU(); !ok && col < 7 {
				continue
			}
			if v, err := strconv.ParseFloat(f[col], 64); err != nil || v <= 0 {
				t.Errorf("per-node row %q: column %d is not positive", f, col+1)
			}
		}
	}
	// The idle table: -quick's default has procs mode's idle cell only,
	// a row per node with its role.
	idleRows := tableRows(t, stdout.String(), "| mode | node | role |")
	if len(idleRows) != 3 {
		t.Errorf("idle table: %d rows, want 3", len(idleRows))
	}
	for _, f := range idleRows {
		if len(f) != 6 || f[0] != "procs" || !strings.HasPrefix(f[1], "n") || f[2] == "" {
			t.Errorf("idle row %q", f)
			continue
		}
		if v, err := strconv.ParseFloat(f[3], 64); err != nil || v < 0 || v > 100 {
			t.Errorf("idle row %q: CPU %% of a core is not a percentage", f)
		}
	}
	for _, mode := range []string{"inproc", "procs"} {
		if !strings.Contains(stdout.String(), "- 100B, "+mode+": async entries/s ") {
			t.Errorf("no comparison with slog-file for %s", mode)
		}
		if !strings.Contains(stdout.String(), "- 100B, "+mode+", 16 callers: ") {
			t.Errorf("no comparison with raft-1 for %s", mode)
		}
	}

	// results.json parses and holds the same cells.
	js, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(rep.Cells) != len(want)+1 || rep.Machine.NumCPU < 1 || rep.Command == "" {
		t.Errorf("results.json: %d cells, machine %+v, command %q", len(rep.Cells), rep.Machine, rep.Command)
	}
	for _, c := range rep.Cells {
		if c.Workload == "idle" {
			if c.Mode != "procs" || len(c.Median.Nodes) != 3 || c.Median.Seconds < 0.9 || c.Median.Entries != 0 {
				t.Errorf("results.json: idle cell %s: %+v", c.label(), c.Median)
			}
			continue
		}
		if len(c.Runs) != 1 || c.Median.EntriesPerSec <= 0 || c.Median.Entries <= 0 || c.Median.FileBytes <= 0 {
			t.Errorf("results.json: cell %s: %+v", c.label(), c.Median)
		}
		if c.Series == seriesLogx && c.Mode == "procs" && len(c.Median.Nodes) != 3 {
			t.Errorf("results.json: cell %s: %d nodes", c.label(), len(c.Median.Nodes))
		}
	}
	if len(rep.VsSlog) != 2 {
		t.Errorf("results.json: vs_slog %+v, want the two modes", rep.VsSlog)
	}
	if len(rep.VsPeers) != 4 || rep.VsPeers[0].Rounds != 1 || rep.VsPeers[0].BestRatio <= 0 || rep.VsPeers[0].RaftRatio == nil {
		t.Errorf("results.json: vs_peers %+v, want the two modes at 1 and 16 callers against raft-1", rep.VsPeers)
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"runtime.NumCPU", "Command: `", "| logx | procs | 100B | append | 16 |", "NATS"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("results.md lacks %q", s)
		}
	}

	// chart.svg is well-formed XML with a line per series in each panel.
	svg, err := os.ReadFile(filepath.Join(out, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]int{}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart.svg: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && (se.Name.Local == "polyline" || se.Name.Local == "path") {
			for _, a := range se.Attr {
				if a.Name.Local == "data-series" {
					lines[a.Value]++
				}
			}
		}
	}
	for _, s := range []string{"logx inproc 100B", "logx procs 100B", "raft-1 (100B)", "slog-file (100B)"} {
		if lines[s] != 2 {
			t.Errorf("chart.svg: %d lines for series %q, want 2 (one per panel); lines: %v", lines[s], s, lines)
		}
	}
	// No cell left its data behind.
	left, _ := filepath.Glob(filepath.Join(os.TempDir(), "logx-bench-cell-*"))
	for _, d := range left {
		if fi, err := os.Stat(d); err == nil && fi.ModTime().After(start) {
			t.Errorf("cell directory left behind: %s", d)
		}
	}
}

// tableRows returns the cells of the rows of the markdown table in s whose
// header line starts with header.
func tableRows(t *testing.T, s, header string) [][]string {
	t.Helper()
	var rows [][]string
	in := false
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, header):
			in = true
		case !in || strings.HasPrefix(line, "|---"):
		case strings.HasPrefix(line, "| "):
			f := strings.Split(strings.Trim(line, "|"), "|")
			for i := range f {
				f[i] = strings.TrimSpace(f[i])
			}
			rows = append(rows, f)
		default:
			in = false
		}
	}
	return rows
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-modes", "cloud"}, {"-sizes", "0"}, {"-callers", "x"}, {"-workloads", "sync"},
		{"-baselines", "nats"}, {"-count", "0"}, {"-duration", "0s"}, {"extra"}, {"-nope"},
		{"-idle-duration", "0s"}, {"-idle-duration", "5m"}, {"-workloads", "idling"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestMessages(t *testing.T) {
	for _, size := range []int{100, 1024} {
		msgs := messages(msgSeed, 500, size)
		seen := map[string]bool{}
		var all bytes.Buffer
		for _, m := range msgs {
			if len(m) != size {
				t.Fatalf("message of %d bytes, want %d: %q", len(m), size, m)
			}
			if strings.HasSuffix(m, " ") || strings.ContainsAny(m, "\n\"") {
				t.Fatalf("odd message %q", m)
			}
			seen[m] = true
			all.WriteString(m)
			all.WriteByte('\n')
		}
		if len(seen) < 490 {
			t.Errorf("size %d: only %d distinct messages of 500", size, len(seen))
		}
		if again := messages(msgSeed, 500, size); again[499] != msgs[499] {
			t.Errorf("messages are not reproducible")
		}
		// Text compresses like text, not like a repeated pattern.
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(all.Bytes())
		w.Close()
		ratio := float64(all.Len()) / float64(z.Len())
		t.Logf("size %d: gzip ratio %.2f; e.g. %q", size, ratio, msgs[0])
		if ratio < 1.5 || ratio > 6 {
			t.Errorf("size %d: gzip ratio %.2f, want real-log-like 1.5-6", size, ratio)
		}
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 0.5}, {0.99, 0.99}, {0.999, 0.999}} {
		if got := h.quantile(c.q); got < c.want*0.98 || got > c.want*1.02 {
			t.Errorf("quantile(%v) = %v ms, want about %v", c.q, got, c.want)
		}
	}
	back := histFromSparse(h.sparse())
	if back.n != h.n || back.quantile(0.99) != h.quantile(0.99) {
		t.Errorf("sparse round trip: %d entries, p99 %v", back.n, back.quantile(0.99))
	}
	for v := uint64(1); v < 1<<44; v = v*3 + 1 {
		if got := histValue(histIndex(v)); got < float64(v)*0.98 || got > float64(v)*1.02 {
			t.Fatalf("bucket of %d is worth %v", v, got)
		}
	}
}

func TestMedian(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	runs := []runResult{
		{EntriesPerSec: 3, MBPerSec: 30, P99: f(9), EntriesPerBatch: f(1.5)},
		{EntriesPerSec: 1, MBPerSec: 10, P99: f(1), EntriesPerBatch: f(3)},
		{EntriesPerSec: 2, MBPerSec: 20, P99: f(5), AllocsPerCall: f(4), EntriesPerBatch: f(2)},
	}
	m := median(runs)
	if m.EntriesPerSec != 2 || m.MBPerSec != 20 || *m.P99 != 5 || *m.AllocsPerCall != 4 || m.P50 != nil || *m.EntriesPerBatch != 2 {
		t.Errorf("median of 3: %+v", m)
	}
	if m := median(runs[:2]); m.EntriesPerSec != 2 || *m.P99 != 5 {
		t.Errorf("median of 2: %+v", m)
	}
}
