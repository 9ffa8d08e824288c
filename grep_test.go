package logx

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// scatteredLogs builds n logs of perBatch entries whose times are out of
// order, as the entries of nodes whose clocks differ are: a trend of ten
// minutes per log, a few microseconds of jitter (and any nanoseconds), and
// one entry in eight up to 45 minutes early or late. The first entry of
// every 40th log has no time.
func scatteredLogs(rng *rand.Rand, n, perBatch int) []*raft.Log {
	var logs []*raft.Log
	for i := 1; i <= n; i++ {
		b := wire.AppendHeader(nil, wire.Header{Producer: 3, FirstPSeq: uint64((i-1)*perBatch + 1), Count: perBatch})
		for k := 0; k < perBatch; k++ {
			var t time.Time
			var nanos int64
			if i%40 != 0 || k != 0 {
				t = base.Add(time.Duration(i)*10*time.Minute + time.Duration(rng.Int63n(5000)))
				if rng.Intn(8) == 0 {
					t = t.Add(time.Duration(rng.Int63n(int64(90*time.Minute))) - 45*time.Minute)
				}
				nanos = t.UnixNano()
			}
			body := appendBodyStart(nil, FormatText, t, LevelInfo, "n1", "", fmt.Sprintf("log %d entry %d", i, k))
			b = wire.AppendRecord(b, LevelInfo, nanos, body)
		}
		logs = append(logs, &raft.Log{Index: uint64(i), Type: raft.LogCommand, Data: b})
	}
	return logs
}

// TestGrepTimeOutOfOrder: Grep with Since and Until returns exactly what a
// filter over every line returns, for 200 random windows over files whose
// lines are out of time order (a file may hold lines older than the next
// file's first line, or older than its own first line). The files are
// rotated files the checkpoint describes, some rotated from an active file
// the checkpoint held part of (written before and after a restart), some
// rotated after the last checkpoint, and the active file.
func TestGrepTimeOutOfOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	logs := scatteredLogs(rng, 240, 5)
	dir := t.TempDir()
	p := filePolicy{rotation: store.Rotation{MaxSize: 2048}}
	f := openPolicyFSM(t, dir, p)
	f.ApplyBatch(logs[:100])
	require.NoError(t, f.persist())
	require.Positive(t, f.st.ActiveSize, "the checkpoint holds part of the active file")
	f.ApplyBatch(logs[100:160])
	require.NoError(t, f.seg.Close()) // a crash: the files go back to the checkpoint
	f = openPolicyFSM(t, dir, p)
	f.ApplyBatch(logs[:200])
	require.NoError(t, f.persist())
	f.ApplyBatch(logs[200:]) // rotates past the checkpoint
	require.NoError(t, f.seg.Close())

	var all []Line
	for _, b := range readLines(t, dir, "app.log") {
		seq, lt, level, err := parseHead(b)
		require.NoError(t, err)
		all = append(all, Line{Seq: seq, Time: lt, Level: level})
	}
	require.Len(t, all, 240*5)

	// The checkpoint records each rotated file's range of line times:
	// exactly those its lines' heads show (a line without one as 0).
	st, _, err := readState(dir)
	require.NoError(t, err)
	files, err := listLogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(files)-1, len(st.Rotated), "files rotated since the checkpoint")
	for _, fs := range st.Rotated {
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for _, b := range readLinesFiles(t, dir, []string{fs.Name}) {
			_, lt, _, err := parseHead(b)
			require.NoError(t, err)
			var ns int64
			if !lt.IsZero() {
				ns = lt.UnixNano()
			}
			lo, hi = min(lo, ns), max(hi, ns)
		}
		require.Equal(t, [2]int64{lo, hi}, [2]int64{fs.MinTime, fs.MaxTime}, fs.Name)
	}
	times := func() time.Time {
		if rng.Intn(6) == 0 {
			return time.Time{} // no bound
		}
		lt := all[rng.Intn(len(all))].Time
		for lt.IsZero() {
			lt = all[rng.Intn(len(all))].Time
		}
		switch rng.Intn(3) {
		case 0:
			return lt
		case 1:
			return lt.Add(time.Duration(rng.Int63n(3000) - 1500)) // around its microsecond
		default:
			return lt.Add(time.Duration(rng.Int63n(int64(2*time.Hour))) - time.Hour)
		}
	}
	pruned := 0
	for w := 0; w < 200; w++ {
		q := Query{Since: times(), Until: times()}
		if rng.Intn(4) == 0 && !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
			q.Since, q.Until = q.Until, q.Since
		}
		var want, got []uint64
		for _, l := range all {
			if q.match(&l) {
				want = append(want, l.Seq)
			}
		}
		require.NoError(t, Grep(context.Background(), dir, "app.log", q, func(l Line) error {
			got = append(got, l.Seq)
			return nil
		}))
		if !slices.Equal(want, got) {
			t.Fatalf("window %d, [%v, %v): %d lines match, Grep found %d; missed %v, extra %v", w, q.Since, q.Until,
				len(want), len(got), diffSeqs(want, got, 10), diffSeqs(got, want, 10))
		}
		pruned += len(files) - len(pruneByTime(dir, files, q))
	}
	require.Positive(t, pruned, "no window skipped a file")
}

// diffSeqs returns up to n of the numbers in a that are not in b.
func diffSeqs(a, b []uint64, n int) []uint64 {
	var out []uint64
	for _, x := range a {
		if !slices.Contains(b, x) && len(out) < n {
			out = append(out, x)
		}
	}
	return out
}

// TestGrepContextSkipsBadLine: a damaged line among the context lines is
// skipped, as Grep skips it among the matches. Before, Grep with Before or
// After failed on it, while the same query without context found its
// matches.
func TestGrepContextSkipsBadLine(t *testing.T) {
	dir := writeLog(t, testLogs(40, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
	names, err := LogFiles(dir, "app.log")
	require.NoError(t, err)
	var path string
	var at int
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		require.NoError(t, err)
		if i := bytes.Index(b, []byte("log 20 entry 1")); i >= 0 {
			path, at = filepath.Join(dir, n), bytes.LastIndexByte(b[:i], '\n')+1
			b[at] = '#' // the line's head no longer parses
			require.NoError(t, os.WriteFile(path, b, 0o644))
			break
		}
	}
	require.NotEmpty(t, path)
	for _, q := range []Query{{Contains: "log 20 entry 2"}, {Contains: "log 20 entry 2", Before: 2, After: 1}} {
		var got []string
		err := Grep(t.Context(), dir, "app.log", q, func(l Line) error {
			got = append(got, string(l.Text[bytes.Index(l.Text, []byte("log ")):]))
			return nil
		})
		require.NoError(t, err, "%+v", q)
		if q.Before == 0 {
			require.Len(t, got, 1)
			continue
		}
		require.Len(t, got, 3, "%q", got)
		require.Contains(t, got[0], "log 20 entry 0")
		require.Contains(t, got[1], "log 20 entry 2")
		require.Contains(t, got[2], "log 20 entry 3")
	}
}

// With an expression, matching looks at its context after 64 KiB of
// lines, not only every 64 lines: a line may be as long as MaxBatchBytes,
// and an expression costs up to its instructions times a line's length,
// so 64 long lines could hold a remote grep minutes past its timeout.
func TestMatchLinesLongLinesSeeContext(t *testing.T) {
	var data []byte
	for i := range 10 {
		body := appendBodyStart(nil, FormatText, tenMinutes(i), LevelInfo, "n1", "", strings.Repeat("x", 100<<10))
		data = appendLine(data, FormatText, uint64(i+1), body)
	}
	q := Query{Regexp: regexp.MustCompile(`x+`)}
	require.Len(t, matchLines(context.Background(), data, nil, &q, nil), 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.LessOrEqual(t, len(matchLines(ctx, data, nil, &q, nil)), 1, "lines matched after the context ended")
}
