package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFlagDefaults(t *testing.T) {
	parse := func(args ...string) *options {
		t.Helper()
		var errOut bytes.Buffer
		o, err := parseFlags(args, &errOut)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return o
	}
	o := parse()
	if !slices.Equal(o.callers, []int{1, 4, 16, 64, 256}) {
		t.Errorf("default callers %v", o.callers)
	}
	if !slices.Equal(o.workloads, []string{"async", "append"}) || !slices.Equal(o.idleModes, []string{"procs"}) || o.idleDur != 10*time.Second {
		t.Errorf("default workloads %v, idle modes %v, idle duration %v", o.workloads, o.idleModes, o.idleDur)
	}
	if o.idleSettle() != 2*time.Second {
		t.Errorf("idle settle %v", o.idleSettle())
	}
	if o := parse("-quick"); !slices.Equal(o.callers, []int{1, 16}) || o.idleDur != time.Second || o.idleSettle() != time.Second {
		t.Errorf("-quick: callers %v, idle duration %v, settle %v", o.callers, o.idleDur, o.idleSettle())
	}
	if o := parse("-quick", "-idle-duration", "3s"); o.idleDur != 3*time.Second {
		t.Errorf("-quick -idle-duration 3s: %v", o.idleDur)
	}
	for _, c := range []struct {
		args      []string
		workloads []string
		idle      []string
	}{
		{[]string{"-modes", "inproc"}, []string{"async", "append"}, nil},
		{[]string{"-workloads", "async"}, []string{"async"}, nil},
		{[]string{"-workloads", "idle"}, nil, []string{"inproc", "procs"}},
		{[]string{"-workloads", "async,idle", "-modes", "inproc"}, []string{"async"}, []string{"inproc"}},
	} {
		o := parse(c.args...)
		if !slices.Equal(o.workloads, c.workloads) || !slices.Equal(o.idleModes, c.idle) {
			t.Errorf("%v: workloads %v, idle modes %v; want %v, %v", c.args, o.workloads, o.idleModes, c.workloads, c.idle)
		}
	}

	// plan: one idle cell per mode, after the mode's other cells.
	cells := plan(parse("-workloads", "async,idle", "-sizes", "1024,100", "-baselines", ""))
	var got []string
	for _, c := range cells {
		got = append(got, c.label())
	}
	want := []string{
		"logx inproc 1KiB async callers=4/node", "logx inproc 100B async callers=4/node", "logx inproc idle",
		"logx procs 1KiB async callers=4/node", "logx procs 100B async callers=4/node", "logx procs idle",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan: %q\nwant %q", got, want)
	}
	if c := cells[2]; c.Size != 1024 || c.callersText() != "-" {
		t.Errorf("idle cell: size %d, callers %q", c.Size, c.callersText())
	}
}

// usageMsgs makes the ready and usage lines of three children: states at
// the start and the end, CPU seconds (negative: not measured), RSS MB.
func usageMsgs(start, end []string, cpu []float64, rss []float64) (ready, usage []childMsg) {
	for k := range start {
		ready = append(ready, childMsg{Ev: "ready", State: start[k]})
		u := childMsg{Ev: "usage", State: end[k], WallNs: int64(2 * time.Second), RSSMB: rss[k]}
		if cpu[k] >= 0 {
			ns := int64(cpu[k] * 1e9)
			u.CPUNs = &ns
		}
		usage = append(usage, u)
	}
	return ready, usage
}

func TestSetNodes(t *testing.T) {
	ready, usage := usageMsgs(
		[]string{"Follower", "Leader", "Follower"}, []string{"Follower", "Leader", "Follower"},
		[]float64{0.2, 0.5, 0.3}, []float64{20, 30, 25})
	var r runResult
	r.finish(100_000, 2*time.Second, 1)
	r.setNodes(ready, usage)
	var names, roles []string
	for _, n := range r.Nodes {
		names, roles = append(names, n.Node), append(roles, n.Role)
	}
	// The leader first, then the followers from the busiest down.
	if !slices.Equal(names, []string{"n2", "n3", "n1"}) || !slices.Equal(roles, []string{"Leader", "Follower", "Follower"}) {
		t.Fatalf("nodes %v, roles %v", names, roles)
	}
	near := func(what string, p *float64, want float64) {
		t.Helper()
		if p == nil {
			t.Errorf("%s = nil, want %v", what, want)
		} else if *p < want*0.999 || *p > want*1.001 {
			t.Errorf("%s = %v, want %v", what, *p, want)
		}
	}
	near("leader µs/entry", r.Nodes[0].CPUUsPerEntry, 5) // 0.5 s / 100k entries
	near("leader CPU %", r.Nodes[0].CPUPercent, 25)      // 0.5 s over 2 s
	near("cell µs/entry", r.CPUUsPerEntry, 10)           // 1.0 s / 100k
	near("cell CPU seconds", r.CPUSeconds, 1)            //
	near("follower max µs/entry", followerMax(r.Nodes, func(n nodeUsage) *float64 { return n.CPUUsPerEntry }), 3)
	near("follower max RSS", followerMax(r.Nodes, func(n nodeUsage) *float64 { return n.PeakRSSMB }), 25)
	if r.CPUScope != "sum-of-nodes" {
		t.Errorf("scope %q", r.CPUScope)
	}

	// A change of leadership shows in the role.
	ready, usage = usageMsgs([]string{"Leader", "Follower", "Follower"}, []string{"Follower", "Leader", "Follower"},
		[]float64{0.1, 0.1, 0.1}, []float64{1, 1, 1})
	r = runResult{}
	r.setNodes(ready, usage)
	if r.Nodes[0].Role != "Follower->Leader" || r.Nodes[0].Node != "n2" || r.Nodes[1].Role != "Leader->Follower" {
		t.Errorf("leadership change: %+v", r.Nodes)
	}
	if r.CPUUsPerEntry != nil || r.CPUSeconds == nil {
		t.Errorf("no entries: µs/entry %v, CPU seconds %v", r.CPUUsPerEntry, r.CPUSeconds)
	}

	// A child without CPU time: no cell total, the others still shown.
	ready, usage = usageMsgs([]string{"Leader", "Follower", "Follower"}, []string{"Leader", "Follower", "Follower"},
		[]float64{0.1, -1, 0.1}, []float64{1, 0, 1})
	r = runResult{}
	r.setNodes(ready, usage)
	if r.CPUSeconds != nil || r.CPUScope != "" {
		t.Errorf("partial CPU: cell CPU %v scope %q", r.CPUSeconds, r.CPUScope)
	}
	if r.Nodes[0].CPUSeconds == nil || r.Nodes[2].CPUSeconds != nil || r.Nodes[2].PeakRSSMB != nil {
		t.Errorf("partial CPU: nodes %+v", r.Nodes)
	}
}

func TestMedianCPU(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	node := func(name, role string, cpu float64) nodeUsage {
		return nodeUsage{Node: name, Role: role, Seconds: 1, CPUSeconds: f(cpu), CPUPercent: f(cpu * 100), PeakRSSMB: f(cpu * 10)}
	}
	runs := []runResult{
		{CPUUsPerEntry: f(6), CPUSeconds: f(3), CPUScope: "sum-of-nodes",
			Nodes: []nodeUsage{node("n1", "Leader", 0.3), node("n2", "Follower", 0.2), node("n3", "Follower", 0.1)}},
		{CPUUsPerEntry: f(2), CPUSeconds: f(1), CPUScope: "sum-of-nodes",
			Nodes: []nodeUsage{node("n1", "Leader", 0.5), node("n3", "Follower", 0.4), node("n2", "Follower", 0.3)}},
		{CPUUsPerEntry: f(4), CPUSeconds: f(2), CPUScope: "sum-of-nodes",
			Nodes: []nodeUsage{node("n1", "Leader", 0.1), node("n2", "Follower", 0.05), node("n3", "Follower", 0.01)}},
	}
	m := median(runs)
	if *m.CPUUsPerEntry != 4 || *m.CPUSeconds != 2 || m.CPUScope != "sum-of-nodes" || m.CPUPercent != nil {
		t.Errorf("median: µs/entry %v, CPU s %v, scope %q, percent %v", m.CPUUsPerEntry, m.CPUSeconds, m.CPUScope, m.CPUPercent)
	}
	if len(m.Nodes) != 3 {
		t.Fatalf("median nodes: %+v", m.Nodes)
	}
	// Position by position: the leader's CPU is the median of 0.3, 0.5, 0.1.
	if l := m.Nodes[0]; l.Node != "n1" || l.Role != "Leader" || *l.CPUSeconds != 0.3 || *l.CPUPercent != 30 || *l.PeakRSSMB != 3 {
		t.Errorf("median leader %+v", l)
	}
	// The busier follower was n2, n3, n2: the name is left out.
	if fo := m.Nodes[1]; fo.Node != "" || fo.Role != "Follower" || *fo.CPUSeconds != 0.2 {
		t.Errorf("median busier follower %+v", fo)
	}
	// Runs with different numbers of nodes have no per-node median.
	runs[1].Nodes = runs[1].Nodes[:2]
	if m := median(runs); m.Nodes != nil {
		t.Errorf("nodes of unequal runs: %+v", m.Nodes)
	}
}

func TestReportTables(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	procsAsync := &cell{Series: seriesLogx, Mode: "procs", Size: 100, Workload: "async", Callers: asyncPerNode,
		Median: runResult{EntriesPerSec: 250_000, CPUUsPerEntry: f(6), EntriesPerBatch: f(812.5), Nodes: []nodeUsage{
			{Node: "n2", Role: "Leader", CPUUsPerEntry: f(2.5), PeakRSSMB: f(100)},
			{Node: "n1", Role: "Follower", CPUUsPerEntry: f(1.75), PeakRSSMB: f(90)},
			{Node: "n3", Role: "Follower", CPUUsPerEntry: f(1.5), PeakRSSMB: f(95)},
		}}}
	inprocAsync := &cell{Series: seriesLogx, Mode: "inproc", Size: 100, Workload: "async", Callers: asyncPerNode,
		Median: runResult{EntriesPerSec: 300_000, CPUUsPerEntry: f(5), CPUScope: "process"}}
	slogAsync := &cell{Series: seriesSlog, Mode: "inproc", Size: 100, Workload: "async", Callers: slogAsyncGoroutines,
		Median: runResult{EntriesPerSec: 1_000_000, CPUUsPerEntry: f(1.25), CPUScope: "process"}}
	idleProcs := &cell{Series: seriesLogx, Mode: "procs", Size: 100, Workload: "idle",
		Median: runResult{Seconds: 10, Nodes: []nodeUsage{
			{Node: "n2", Role: "Leader", Seconds: 10, CPUPercent: f(3.5), PeakRSSMB: f(20)},
			{Role: "Follower", Seconds: 10, CPUPercent: f(1.25)},
		}}}
	idleInproc := &cell{Series: seriesLogx, Mode: "inproc", Size: 100, Workload: "idle",
		Median: runResult{Seconds: 10, CPUPercent: f(4.5), CPUScope: "process", PeakRSSMB: f(40), RSSScope: "process"}}
	r := &report{Cells: []*cell{procsAsync, inprocAsync, idleProcs, idleInproc, slogAsync}}
	out := r.markdownTable()
	t.Log("\n" + out)

	main := tableRows(t, out, "| series |")
	if len(main) != 3 {
		t.Errorf("main table: %d rows, want 3 (no idle cells)", len(main))
	}
	if len(main) > 0 && (len(main[0]) != 14 || main[0][12] != "6.00" || main[0][13] != "812") {
		t.Errorf("main table row %q: want 14 columns, the last two 6.00 and 812", main[0])
	}
	nodes := tableRows(t, out, "| mode | size | workload | callers | leader")
	if len(nodes) != 1 || !slices.Equal(nodes[0], []string{"procs", "100B", "async", "4/node", "2.50", "1.75", "6.00", "100", "95"}) {
		t.Errorf("per-node table %q", nodes)
	}
	idle := tableRows(t, out, "| mode | node | role |")
	wantIdle := [][]string{
		{"procs", "n2", "Leader", "3.50", "20", "10.0"},
		{"procs", "(varies)", "Follower", "1.25", "", "10.0"},
		{"inproc", "all 3 (process)", "-", "4.50", "40", "10.0"},
	}
	if !slices.EqualFunc(idle, wantIdle, slices.Equal) {
		t.Errorf("idle table %q\nwant %q", idle, wantIdle)
	}
	for _, line := range []string{
		"- 100B, procs: async entries/s 0.25 of slog-file's (250,000 vs 1,000,000); CPU/entry 4.80x slog-file's (6.00 vs 1.25 µs)",
		"- 100B, inproc: async entries/s 0.3 of slog-file's (300,000 vs 1,000,000); CPU/entry 4.00x slog-file's (5.00 vs 1.25 µs)",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("no line %q", line)
		}
	}

	// The same comparison in results.json.
	r.VsSlog = r.slogRatios()
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.VsSlog) != 2 || back.VsSlog[0].Mode != "procs" || *back.VsSlog[0].CPURatio != 4.8 || *back.VsSlog[1].EntriesRatio != 0.3 {
		t.Errorf("vs_slog in JSON: %s", js)
	}
	if n := back.Cells[2].Median.Nodes; len(n) != 2 || *n[0].CPUPercent != 3.5 {
		t.Errorf("idle nodes in JSON: %+v", n)
	}

	// Without slog-file or procs cells the extra sections are left out.
	r = &report{Cells: []*cell{inprocAsync}}
	if out := r.markdownTable(); strings.Contains(out, "Per node") || strings.Contains(out, "Idle") || strings.Contains(out, "slog-file") {
		t.Errorf("extra sections without their cells:\n%s", out)
	}
}

// TestProcessCPU checks that this process's CPU time is read and grows
// with work.
func TestProcessCPU(t *testing.T) {
	// The mark comes first, so it counts at least the CPU the loop below
	// waits for.
	mark := markCPU()
	before, ok := processCPU()
	if !ok {
		t.Skip("no getrusage here")
	}
	x := uint64(1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i := 0; i < 1_000_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		now, ok := processCPU()
		if !ok {
			t.Fatal("processCPU failed")
		}
		if now < before {
			t.Fatalf("CPU time went back: %v, then %v", before, now)
		}
		if now-before >= 5*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s of spinning used %v of CPU", now-before)
		}
	}
	cpu, wall, ok := mark.since()
	if !ok || cpu < 5*time.Millisecond || wall <= 0 {
		t.Errorf("since: cpu %v wall %v ok %v (x %d)", cpu, wall, ok, x)
	}
}

// TestReportIdleOnly: a run of idle cells only has no empty main table.
func TestReportIdleOnly(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	r := &report{Cells: []*cell{{Series: seriesLogx, Mode: "inproc", Size: 100, Workload: "idle",
		Median: runResult{Seconds: 3, CPUPercent: f(2)}}}}
	out := r.markdownTable()
	if strings.Contains(out, "| series |") || !strings.Contains(out, "| inproc | all 3 (process) | - | 2.00 |  | 3.0 |") {
		t.Errorf("idle only:\n%s", out)
	}
}

// TestPeerRatios checks that logx Append is compared with raft-1 and
// nats-js run by run of the same round: the median of each round's ratio,
// not the ratio of the medians, and against the faster peer of each round.
func TestPeerRatios(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	runs := func(rates ...float64) []runResult {
		var out []runResult
		for i, r := range rates {
			out = append(out, runResult{Round: i, EntriesPerSec: r})
		}
		return out
	}
	logx := &cell{Series: seriesLogx, Mode: "inproc", Size: 100, Workload: "append", Callers: 4,
		Runs: runs(100, 300, 200), Median: runResult{EntriesPerSec: 200, P99: f(2)}}
	raft := &cell{Series: seriesRaft, Mode: "inproc", Size: 100, Workload: "apply", Callers: 4,
		Runs: runs(50, 300, 400), Median: runResult{EntriesPerSec: 300, P99: f(3)}}
	nats := &cell{Series: seriesNATS, Mode: "inproc", Size: 100, Workload: "publish", Callers: 4,
		Runs: runs(200, 100, 100), Median: runResult{EntriesPerSec: 100, P99: f(4)}}
	other := &cell{Series: seriesRaft, Mode: "inproc", Size: 100, Workload: "apply", Callers: 16,
		Runs: runs(1), Median: runResult{EntriesPerSec: 1}}
	lone := &cell{Series: seriesLogx, Mode: "procs", Size: 1024, Workload: "append", Callers: 4,
		Runs: runs(7), Median: runResult{EntriesPerSec: 7}}
	r := &report{Cells: []*cell{logx, lone, other, raft, nats}}
	got := r.peerRatios()
	// Rounds: raft-1 ratios 2, 1, 0.5 (median 1; the medians' ratio is
	// 0.67); nats-js 0.5, 3, 2 (median 2); the faster peer's 0.5, 1, 0.5.
	if len(got) != 1 {
		t.Fatalf("peerRatios: %+v, want one pair", got)
	}
	x := got[0]
	if x.BestRatio != 0.5 || *x.RaftRatio != 1 || *x.NATSRatio != 2 || x.Rounds != 3 || x.Callers != 4 ||
		*x.LogxP99 != 2 || *x.RaftP99 != 3 || *x.NATSP99 != 4 || *x.RaftEntriesPerSec != 300 || *x.NATSEntriesPerSec != 100 {
		t.Fatalf("peerRatios: %+v", x)
	}
	line := "- 100B, inproc, 4 callers: 0.5x the faster peer (raft-1 1.00x, nats-js 2.00x; 3 rounds); p99 2.00 ms, raft-1 3.00, nats-js 4.00\n"
	if out := r.markdownTable(); !strings.Contains(out, line) {
		t.Errorf("no line %q in\n%s", line, out)
	}

	// Runs are paired by round, not by position: a round missing from a
	// peer's cell leaves that round out of the comparison with the best.
	raft.Runs = []runResult{{Round: 1, EntriesPerSec: 300}, {Round: 2, EntriesPerSec: 400}}
	if got := r.peerRatios(); got[0].Rounds != 2 || got[0].BestRatio != 0.75 || *got[0].RaftRatio != 0.75 {
		t.Errorf("with round 0 missing from raft-1: %+v, want 2 rounds, best ratio 0.75 (1 and 0.5), raft-1 0.75", got[0])
	}

	// With raft-1 only, the faster peer is raft-1.
	r = &report{Cells: []*cell{logx, other, raft}}
	if got := r.peerRatios(); len(got) != 1 || got[0].BestRatio != 0.75 || got[0].NATSRatio != nil || got[0].NATSP99 != nil {
		t.Errorf("raft-1 only: %+v", got)
	}
}

// TestParseNATS checks the reading of the NATS benchmark's -json lines.
func TestParseNATS(t *testing.T) {
	out := []byte(`{"size":100,"callers":1,"entries_per_sec":1500,"mb_per_sec":0.15,"entries":7500,"seconds":5,"p50_ms":0.6,"p99_ms":1.1,"p999_ms":2.5}
{"size":100,"callers":4,"entries_per_sec":4000,"mb_per_sec":0.4,"entries":20000,"seconds":5,"p50_ms":0.9,"p99_ms":2.2,"p999_ms":4.3}
`)
	res, err := parseNATS(out, &cell{Series: seriesNATS, Size: 100, Callers: 4})
	if err != nil || res.EntriesPerSec != 4000 || res.Entries != 20000 || res.FileBytes != 2_000_000 || *res.P99 != 2.2 {
		t.Errorf("parseNATS: %+v, %v", res, err)
	}
	for _, bad := range []string{
		"", // no line for the cell
		`{"size":100,"callers":4,"entries_per_sec":0,"entries":0,"seconds":5}` + "\n", // nothing measured
		"| series | mode |\n", // the table, not -json
	} {
		if res, err := parseNATS([]byte(bad), &cell{Series: seriesNATS, Size: 100, Callers: 4}); err == nil {
			t.Errorf("parseNATS(%q) = %+v, want an error", bad, res)
		}
	}
	if err := checkNATS(filepath.Join(t.TempDir(), "nats-bench")); err == nil || !strings.Contains(err.Error(), "go build") {
		t.Errorf("checkNATS of a missing file: %v, want an error saying how to build it", err)
	}
	notExec := filepath.Join(t.TempDir(), "nats-bench")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkNATS(notExec); err == nil {
		t.Error("checkNATS of a file that is not executable: no error")
	}
}

// TestRounds checks the order of a round: the cells compared with each
// other run one after another, idle cells last.
func TestRounds(t *testing.T) {
	nats := filepath.Join(t.TempDir(), "nats-bench")
	if err := os.WriteFile(nats, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"-modes", "inproc,procs", "-sizes", "100,1024", "-callers", "1,4",
		"-workloads", "async,append,idle", "-nats", nats}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range rounds(plan(o)) {
		got = append(got, c.label())
	}
	want := []string{
		"logx inproc 100B async callers=4/node", "slog-file 100B async callers=4", "logx procs 100B async callers=4/node",
		"raft-1 100B apply callers=1", "logx inproc 100B append callers=1", "nats-js 100B publish callers=1", "logx procs 100B append callers=1", "slog-file 100B call callers=1",
		"raft-1 100B apply callers=4", "logx inproc 100B append callers=4", "nats-js 100B publish callers=4", "logx procs 100B append callers=4", "slog-file 100B call callers=4",
		"logx inproc 1KiB async callers=4/node", "slog-file 1KiB async callers=4", "logx procs 1KiB async callers=4/node",
		"raft-1 1KiB apply callers=1", "logx inproc 1KiB append callers=1", "nats-js 1KiB publish callers=1", "logx procs 1KiB append callers=1", "slog-file 1KiB call callers=1",
		"raft-1 1KiB apply callers=4", "logx inproc 1KiB append callers=4", "nats-js 1KiB publish callers=4", "logx procs 1KiB append callers=4", "slog-file 1KiB call callers=4",
		"logx inproc idle", "logx procs idle",
	}
	if !slices.Equal(got, want) {
		t.Errorf("a round runs\n%q\nwant\n%q", got, want)
	}
}
