package logx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// levelLogs builds n logs of perBatch entries, stamped 10 minutes apart per
// log, with levels cycling DEBUG..ERROR, in the given format.
func levelLogs(n, perBatch int, f Format) []*raft.Log {
	levels := []slog.Level{LevelDebug, LevelInfo, LevelWarn, LevelError}
	var logs []*raft.Log
	for i := 1; i <= n; i++ {
		b := wire.AppendHeader(nil, wire.Header{Producer: 9, FirstPSeq: uint64((i-1)*perBatch + 1), Count: perBatch})
		for k := 0; k < perBatch; k++ {
			lv := levels[(i+k)%4]
			body := appendBodyStart(nil, f, tenMinutes(i), lv, "n1", "x/y.go:1", fmt.Sprintf("log %d entry %d", i, k))
			b = wire.AppendRecord(b, lv, tenMinutes(i).UnixNano(), body)
		}
		logs = append(logs, &raft.Log{Index: uint64(i), Type: raft.LogCommand, Data: b})
	}
	return logs
}

// writeLog applies logs to a fresh directory with small files.
func writeLog(t *testing.T, logs []*raft.Log, p filePolicy, format Format) string {
	t.Helper()
	dir := t.TempDir()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: p, format: format, stateInterval: -1, logf: t.Logf})
	require.NoError(t, err)
	f.ApplyBatch(logs)
	require.NoError(t, f.close())
	return dir
}

// readAll reads lines until io.EOF.
func readAll(t *testing.T, r *Reader) []Line {
	t.Helper()
	var out []Line
	for {
		l, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		l.Text = append([]byte(nil), l.Text...)
		out = append(out, l)
	}
}

func TestReader(t *testing.T) {
	for _, format := range []Format{FormatText, FormatJSON} {
		t.Run(format.String(), func(t *testing.T) {
			dir := writeLog(t, levelLogs(60, 5, format), filePolicy{rotation: store.Rotation{MaxSize: 4096}}, format)
			names, err := LogFiles(dir, "app.log")
			require.NoError(t, err)
			require.Greater(t, len(names), 5)

			r, err := OpenReader(dir, "app.log")
			require.NoError(t, err)
			defer r.Close()
			all := readAll(t, r)
			require.Len(t, all, 300)
			for i, l := range all {
				require.Equal(t, uint64(i+1), l.Seq)
				require.Equal(t, tenMinutes(i/5+1), l.Time)
				require.Contains(t, string(l.Text), fmt.Sprintf("log %d entry %d", i/5+1, i%5))
			}
			// The iterator form, from a position.
			require.NoError(t, r.SeekSeq(290))
			var iterSeqs []uint64
			for l, err := range r.Lines() {
				require.NoError(t, err)
				iterSeqs = append(iterSeqs, l.Seq)
			}
			require.Equal(t, []uint64{290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300}, iterSeqs)
			for _, seq := range []uint64{1, 2, 17, 150, 299, 300} {
				require.NoError(t, r.SeekSeq(seq))
				l, err := r.Next()
				require.NoError(t, err)
				require.Equal(t, seq, l.Seq)
			}
			require.NoError(t, r.SeekSeq(301))
			_, err = r.Next()
			require.ErrorIs(t, err, io.EOF)

			// By time: log 31 is at base+300min; its first line is seq 151.
			require.NoError(t, r.SeekTime(tenMinutes(31)))
			l, err := r.Next()
			require.NoError(t, err)
			require.Equal(t, uint64(151), l.Seq)
			require.NoError(t, r.SeekTime(tenMinutes(31).Add(-time.Minute)))
			l, err = r.Next()
			require.NoError(t, err)
			require.Equal(t, uint64(151), l.Seq)
			require.NoError(t, r.SeekTime(base.Add(-time.Hour)))
			l, err = r.Next()
			require.NoError(t, err)
			require.Equal(t, uint64(1), l.Seq)
		})
	}
}

// TestReaderFollows: a Reader at the end sees lines written later, across
// rotations, once each, and never a line still being written.
func TestReaderFollows(t *testing.T) {
	dir := t.TempDir()
	f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 2048}})
	logs := testLogs(60, 4)
	f.ApplyBatch(logs[:10])
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	got := readAll(t, r)
	for i := 10; i < 60; i += 7 {
		f.ApplyBatch(logs[i:min(i+7, 60)])
		got = append(got, readAll(t, r)...)
	}
	require.NoError(t, f.close())
	require.Len(t, got, 240)
	for i, l := range got {
		require.Equal(t, uint64(i+1), l.Seq)
	}

	// A torn last line is not returned until it is complete.
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "seq=241 time=2026-01-02T10:00:00.000000Z lev")
	_, err = r.Next()
	require.ErrorIs(t, err, io.EOF)
	appendFile(t, path, "el=INFO node=n1 msg=done\n")
	l, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, uint64(241), l.Seq)
}

// TestReaderCutRotatedFile: a rotated file whose last line was cut
// (damage; the start's check repairs it) is an ErrCorrupt naming the
// file, where Next read the cut line again for good: Watch, logx tail and
// the viewer's tails spun at a full core and never returned.
func TestReaderCutRotatedFile(t *testing.T) {
	dir := writeLog(t, testLogs(60, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
	files, err := listLogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(files), 2)
	path := filepath.Join(dir, files[0].name)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, fi.Size()-10))
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := r.Next(); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrCorrupt)
		require.Contains(t, err.Error(), files[0].name)
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return at the cut line")
	}
}

// TestReaderRetained: asking for lines retention removed says so and starts
// at the oldest line left.
func TestReaderRetained(t *testing.T) {
	dir := writeLog(t, testLogs(60, 7), filePolicy{rotation: store.Rotation{MaxSize: 2048}, maxFiles: 2}, FormatText)
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	first, err := r.Next()
	require.NoError(t, err)
	require.Greater(t, first.Seq, uint64(1))
	err = r.SeekSeq(1)
	require.ErrorIs(t, err, ErrRetained)
	l, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, first.Seq, l.Seq)
}

// TestGrep: Grep returns exactly what a filter over every line returns, in
// order, for each kind of condition.
func TestGrep(t *testing.T) {
	dir := writeLog(t, levelLogs(80, 5, FormatText), filePolicy{rotation: store.Rotation{MaxSize: 4096}}, FormatText)
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	all := readAll(t, r)
	r.Close()
	queries := map[string]Query{
		"all":       {},
		"substring": {Contains: "entry 3"},
		"rare":      {Contains: "log 77 entry 2"},
		"none":      {Contains: "no such text"},
		"level":     {Level: LevelWarn},
		"since":     {Since: tenMinutes(40)},
		"window":    {Since: tenMinutes(10), Until: tenMinutes(20).Add(time.Second), Contains: "entry"},
		"regexp":    {Regexp: regexp.MustCompile(`log [1-3]0 entry [04]`)},
		"combined":  {Level: LevelError, Contains: "entry 1", Since: tenMinutes(30)},
	}
	for name, q := range queries {
		t.Run(name, func(t *testing.T) {
			var want []uint64
			for _, l := range all {
				if (q.Contains == "" || strings.Contains(string(l.Text), q.Contains)) && q.match(&l) {
					want = append(want, l.Seq)
				}
			}
			var got []uint64
			require.NoError(t, Grep(context.Background(), dir, "app.log", q, func(l Line) error {
				got = append(got, l.Seq)
				return nil
			}))
			require.Equal(t, want, got)
		})
	}
	// fn's error stops Grep.
	stop := errors.New("stop")
	n := 0
	err = Grep(context.Background(), dir, "app.log", Query{}, func(Line) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, 10, n)
}

func TestParseHeadRejects(t *testing.T) {
	for _, s := range []string{"", "hello", "seq=x time", "seq=12", `{"seq":1,"level":"NOPE"}`,
		// Ending at the time: sliced one byte past the end, a panic that
		// took the node down from a search, a tail or a grep request.
		"seq=1 time=2026-11-24T23:35:45.123456Z", `{"seq":1,"time":"2026-11-24T23:35:45.123456Z`,
		"seq=1 time=2026-11-24T23:35:45.123456Z ", `{"seq":1,"time":"2026-11-24T23:35:45.123456Z"`} {
		_, _, _, err := parseHead([]byte(s))
		require.Error(t, err, "%q", s)
	}
}

// BenchmarkParseLineTime is parseLineTime against time.Parse on the time
// of a line's head (docs/benchmarks.md, "The viewer").
//
//	go test -run '^$' -bench LineTime .
func BenchmarkParseLineTime(b *testing.B) {
	ts := []byte("2026-11-24T23:35:45.123456Z")
	b.Run("parseLineTime", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseLineTime(ts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("time.Parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := time.Parse(timeLayout, string(ts)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLongLineIsDamage: a line longer than any node writes (damage, or a
// file that is no log) is an ErrCorrupt naming the file for Reader.Next and
// for Grep, found before their buffers grow to the file's size; a first
// line longer than firstTime's buffer still gives the file's first time.
func TestLongLineIsDamage(t *testing.T) {
	dir := writeLog(t, testLogs(60, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
	files, err := listLogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(files), 2)

	// A first line of 100 KiB keeps its head.
	first := filepath.Join(dir, files[0].name)
	data, err := os.ReadFile(first)
	require.NoError(t, err)
	_, want, _, err := parseHead(data)
	require.NoError(t, err)
	require.False(t, want.IsZero())
	nl := strings.IndexByte(string(data), '\n')
	long := slices.Concat(data[:nl], []byte(strings.Repeat("x", 100<<10)), data[nl:])
	require.NoError(t, os.WriteFile(first, long, 0o644))
	got, err := firstTime(dir, "app.log", files[0])
	require.NoError(t, err)
	require.True(t, got.Equal(want), "firstTime %v, want %v", got, want)

	// A second file whose first line is longer than maxLineBytes, with a
	// head that parses.
	mid := filepath.Join(dir, files[1].name)
	data, err = os.ReadFile(mid)
	require.NoError(t, err)
	nl = strings.IndexByte(string(data), '\n')
	f, err := os.Create(mid)
	require.NoError(t, err)
	_, err = f.Write(data[:nl])
	require.NoError(t, err)
	junk := bytes.Repeat([]byte("x"), 1<<20)
	for n := 0; n <= maxLineBytes; n += len(junk) {
		_, err = f.Write(junk)
		require.NoError(t, err)
	}
	_, err = f.Write(data[nl:])
	require.NoError(t, err)
	require.NoError(t, f.Close())

	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	seen := map[uint64]bool{}
	for err == nil {
		var l Line
		if l, err = r.Next(); err == nil {
			seen[l.Seq] = true
		}
	}
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), files[1].name)
	// Called again, the Reader reads the same line and fails the same way:
	// before, it read on from the line's tail, and its offset fell behind.
	for range 3 {
		l, err2 := r.Next()
		require.ErrorIs(t, err2, ErrCorrupt, "line %d", l.Seq)
	}
	require.NotContains(t, seen, files[1].first, "a line of the damaged file was read")

	err = grepMatches(t.Context(), dir, "app.log", Query{}, func(Line) error { return nil })
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), files[1].name)
}

// TestGrepPanicStopsWorkers: a panic in Grep's callback reaches the caller,
// and the workers stop. Before, the deferred wait for them ran before the
// cancel: workers blocked sending their next matches, and the panic became
// a hang.
func TestGrepPanicStopsWorkers(t *testing.T) {
	// Files of several chunks each: more batches than a job's channel holds.
	dir := writeLog(t, testLogs(1000, 50), filePolicy{rotation: store.Rotation{MaxSize: 8 * grepChunk}}, FormatText)
	files, err := listLogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(files), 2)
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		_ = grepMatches(context.Background(), dir, "app.log", Query{}, func(Line) error { panic("boom") })
	}()
	select {
	case r := <-done:
		require.Equal(t, "boom", r)
	case <-time.After(10 * time.Second):
		t.Fatal("a panic in the callback hung Grep")
	}
}

// TestReaderClosed: after Close, Next and the seeks return ErrClosed, and
// a second Close is nil. Before, Next started again at the oldest line
// and returned the log a second time.
func TestReaderClosed(t *testing.T) {
	dir := writeLog(t, testLogs(20, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	_, err = r.Next()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	_, err = r.Next()
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, r.SeekSeq(1), ErrClosed)
	require.ErrorIs(t, r.SeekTime(time.Unix(1700000000, 0)), ErrClosed)
	require.NoError(t, r.Close())
}

// TestSeekLast: SeekLast positions n lines before the end, reading only
// the end of the newest file with a complete line: a damaged oldest file,
// which reading up to the end (as logx tail -n did) fails on, is not read.
// An active file with no complete line yet is passed over for the file
// before it.
func TestSeekLast(t *testing.T) {
	dir := writeLog(t, testLogs(60, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
	files, err := listLogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(files), 3)
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	all := readAll(t, r)
	last := all[len(all)-1].Seq
	oldest := filepath.Join(dir, files[0].name)
	require.NoError(t, os.WriteFile(oldest, []byte("not a log line\n"), 0o644))
	require.NoError(t, r.SeekSeq(0))
	_, err = r.Next()
	require.ErrorContains(t, err, "not a log line", "the damaged oldest file fails a read from the start")
	for _, n := range []uint64{0, 1, 5, 17} {
		require.NoError(t, r.SeekLast(n), "n %d", n)
		var got []uint64
		for {
			l, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			got = append(got, l.Seq)
		}
		require.Len(t, got, int(n), "n %d", n)
		if n > 0 {
			require.Equal(t, last-n+1, got[0])
			require.Equal(t, last, got[n-1])
		}
	}
	// A line still being written at the end of the active file is not
	// counted; an active file with nothing else is passed over.
	active := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(active, []byte("seq=999 time=2026-12-06T00:00:00Z level=INFO"), 0o644))
	require.NoError(t, r.SeekLast(1))
	l, err := r.Next()
	require.NoError(t, err)
	require.Less(t, l.Seq, uint64(999))
	require.NoError(t, r.Close())
}

// TestReadAcrossRotationAfterListing: a file listed as the active one and
// rotated before it is opened is read as the rotated file it became, by
// Grep's workers, the Reader, SeekTime's firstTime and SeekLast's lastSeq.
// Before, they opened the new active file under the old one's first
// number: Grep left out the lines in between with no error, and the Reader
// skipped them, then read them twice at the next rotation.
func TestReadAcrossRotationAfterListing(t *testing.T) {
	logs := testLogs(60, 4)
	dir := t.TempDir()
	f := openTestFSM(t, dir)
	f.ApplyBatch(logs[:30])
	require.NoError(t, f.close())
	files, err := listLogFiles(dir, "app.log")
	require.NoError(t, err)
	stale := files[len(files)-1]
	require.Equal(t, "app.log", stale.name)
	f = openTestFSM(t, dir)
	f.ApplyBatch(logs[30:]) // rotates the file listed as active
	require.NoError(t, f.close())
	now, err := listLogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, now[len(now)-1].first, stale.first, "no rotation")
	next := now[slices.IndexFunc(now, func(lf logFile) bool { return lf.first > stale.first })].first

	seg, opened, err := openLogFile(dir, "app.log", stale)
	require.NoError(t, err)
	require.Equal(t, store.NewNames("app.log").Segment(stale.first), opened.name, "the name it opened")
	first, err := firstSeqOf(seg.From(0))
	require.NoError(t, err)
	require.NoError(t, seg.Close())
	require.Equal(t, stale.first, first)

	out := make(chan []Line, 64)
	require.NoError(t, grepFile(context.Background(), dir, "app.log", stale, &Query{}, out))
	close(out)
	var seqs []uint64
	for b := range out {
		for _, l := range b {
			seqs = append(seqs, l.Seq)
		}
	}
	require.NotEmpty(t, seqs)
	require.Equal(t, stale.first, seqs[0], "grep read the new active file")
	require.Equal(t, next-1, seqs[len(seqs)-1])

	r := &Reader{dir: dir, file: "app.log"}
	require.NoError(t, r.open(stale, 0))
	lines := readAll(t, r)
	require.NoError(t, r.Close())
	require.Equal(t, stale.first, lines[0].Seq)
	for i, l := range lines {
		require.Equal(t, stale.first+uint64(i), l.Seq, "a line skipped or read twice")
	}
	require.Equal(t, uint64(240), lines[len(lines)-1].Seq)

	seq, ok, err := lastSeq(dir, "app.log", stale, 0)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, next-1, seq, "lastSeq read the new active file")

	// Between a rotation's rename and the new active file: no active file.
	active := now[len(now)-1]
	require.NoError(t, os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, store.NewNames("app.log").Segment(active.first))))
	seg, _, err = openLogFile(dir, "app.log", active)
	require.NoError(t, err)
	first, err = firstSeqOf(seg.From(0))
	require.NoError(t, err)
	require.NoError(t, seg.Close())
	require.Equal(t, active.first, first)
}

// TestSeekLastRotationBetween: a rotation between SeekLast's listing and
// its read of the newest file (the active file renamed, then a new one,
// empty or with a line) positions at the true end. Before, the file read
// was the renamed one under its old listing, and SeekLast stopped a whole
// file early: logx tail -n 1 printed the renamed file's last line and
// every line of the new one.
func TestSeekLastRotationBetween(t *testing.T) {
	for _, withLine := range []bool{false, true} {
		dir := writeLog(t, testLogs(60, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
		files, err := listLogFiles(dir, "app.log")
		require.NoError(t, err)
		active := files[len(files)-1]
		b, err := os.ReadFile(filepath.Join(dir, "app.log"))
		require.NoError(t, err)
		last := b[bytes.LastIndexByte(b[:len(b)-1], '\n')+1:]
		lastSeq, _, _, err := parseHead(last)
		require.NoError(t, err)
		next := bytes.Replace(last, fmt.Appendf(nil, "seq=%d ", lastSeq), fmt.Appendf(nil, "seq=%d ", lastSeq+1), 1)
		afterLastListing = func() {
			afterLastListing = nil
			require.NoError(t, os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, store.NewNames("app.log").Segment(active.first))))
			var body []byte
			if withLine {
				body = next
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, "app.log"), body, 0o644))
		}
		r, err := OpenReader(dir, "app.log")
		require.NoError(t, err)
		require.NoError(t, r.SeekLast(1))
		require.Nil(t, afterLastListing, "the hook did not run")
		lines := readAll(t, r)
		require.NoError(t, r.Close())
		want := lastSeq
		if withLine {
			want++
		}
		require.Len(t, lines, 1, "with a line in the new file: %v", withLine)
		require.Equal(t, want, lines[0].Seq)
	}
}

// TestDamagedFirstLine: a first line of the active file that does not
// parse (it has no checksum until it rotates) no longer stops every
// reader: the file starts one past the last line of the file before it,
// however much of it is damaged. Grep skips what does not parse, the
// Reader reports it and reads on, Watch skips it. Before, every listing
// of the log failed until the file rotated.
func TestDamagedFirstLine(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"a byte": func(b []byte) []byte { b[0] = '#'; return b },
		// Damage in blocks has newlines of its own: the lines cannot be
		// counted back from the first that parses.
		"a block": func(b []byte) []byte {
			i := bytes.IndexByte(b, '\n') + 1
			j := i + bytes.IndexByte(b[i:], '\n') + 1
			return slices.Concat([]byte("#x\n##\n#\n"), b[j:]) // two lines become three
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeLog(t, testLogs(60, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
			files, err := listLogFiles(dir, "app.log")
			require.NoError(t, err)
			active := files[len(files)-1]
			path := filepath.Join(dir, "app.log")
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, damage(b), 0o644))

			again, err := listLogFiles(dir, "app.log")
			require.NoError(t, err)
			require.Len(t, again, len(files))
			require.True(t, again[len(again)-1].same(active), "listed %+v, was %+v", again[len(again)-1], active)
			var seqs []uint64
			require.NoError(t, Grep(t.Context(), dir, "app.log", Query{}, func(l Line) error { seqs = append(seqs, l.Seq); return nil }))
			require.Equal(t, uint64(240), seqs[len(seqs)-1])
			require.Equal(t, active.first-1, seqs[slices.Index(seqs, active.first-1)], "the file before is read whole")
			r, err := OpenReader(dir, "app.log")
			require.NoError(t, err)
			defer r.Close()
			require.NoError(t, r.SeekSeq(active.first))
			_, err = r.Next()
			require.ErrorIs(t, err, ErrBadLine)

		})
	}
}

// TestSeekLastKeepsRotating: a log that rotates between every listing and
// read of SeekLast's three tries is positioned near its end, a line or two
// early, never at its oldest line (before, three unstable tries fell to
// "nothing written yet", and logx tail -n 1 printed the whole log).
func TestSeekLastKeepsRotating(t *testing.T) {
	dir := writeLog(t, testLogs(60, 4), filePolicy{rotation: store.Rotation{MaxSize: 2048}}, FormatText)
	path := filepath.Join(dir, "app.log")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	tmpl := b[bytes.LastIndexByte(b[:len(b)-1], '\n')+1:]
	last, _, _, err := parseHead(tmpl)
	require.NoError(t, err)
	first, _, err := firstSeq(path)
	require.NoError(t, err)
	rotations := 0
	afterLastListing = func() { // the active file rotates, and the new one gets a line
		rotations++
		require.NoError(t, os.Rename(path, filepath.Join(dir, store.NewNames("app.log").Segment(first))))
		first = last + 1
		line := bytes.Replace(tmpl, fmt.Appendf(nil, "seq=%d ", 240), fmt.Appendf(nil, "seq=%d ", first), 1)
		require.NoError(t, os.WriteFile(path, line, 0o644))
		last = first
	}
	defer func() { afterLastListing = nil }()
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.SeekLast(1))
	afterLastListing = nil
	require.Equal(t, 3, rotations)
	lines := readAll(t, r)
	require.NotEmpty(t, lines)
	require.LessOrEqual(t, len(lines), 3, "read from %d", lines[0].Seq)
	require.Equal(t, last, lines[len(lines)-1].Seq)
}

// TestSeekTimeUntimedLines: lines without a time (a record with no time)
// count as the line after them when seeking by time, so SeekTime never
// skips a timed line because a line without one sat where the search
// probed. Checked against a linear reference over random layouts: the
// answer is the line after the last timed line before t.
func TestSeekTimeUntimedLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for round := 0; round < 30; round++ {
		n := 5 + rng.IntN(60)
		times := make([]time.Time, n) // zero: no time
		var b []byte
		b = wire.AppendHeader(b, wire.Header{Producer: 9, FirstPSeq: 1, Count: n})
		for i := range times {
			if rng.IntN(3) > 0 {
				times[i] = base.Add(time.Duration(i) * time.Minute)
			}
			body := appendBodyStart(nil, FormatText, times[i], LevelInfo, "n1", "x/y.go:1", fmt.Sprintf("line %d", i))
			var nanos int64
			if !times[i].IsZero() {
				nanos = times[i].UnixNano()
			}
			b = wire.AppendRecord(b, LevelInfo, nanos, body)
		}
		dir := writeLog(t, []*raft.Log{{Index: 1, Type: raft.LogCommand, Data: b}}, filePolicy{rotation: store.Rotation{MaxSize: 1 << 20}}, FormatText)
		r, err := OpenReader(dir, "app.log")
		require.NoError(t, err)
		for k := -1; k <= n; k++ {
			target := base.Add(time.Duration(k)*time.Minute - time.Second)
			want := 0 // the line after the last timed line before target
			for i, ti := range times {
				if !ti.IsZero() && ti.Before(target) {
					want = i + 1
				}
			}
			requireSeekTime(t, r, target, want, n, "round %d, target minute %d, times %v", round, k, times)
		}
		require.NoError(t, r.Close())
	}
}

// TestHeadWinsOverAttrs: attributes named like the head's keys (seq,
// time, level, node) are written after the head, as log/slog's handlers
// write them, and logx's Reader reads the head: the record's own sequence
// number, time and level.
func TestHeadWinsOverAttrs(t *testing.T) {
	for _, f := range []Format{FormatText, FormatJSON} {
		t.Run(f.String(), func(t *testing.T) {
			lx := newSingle(t, func(c *Config) { c.Format = f })
			ctx := context.Background()
			seq, err := lx.Append(ctx, LevelInfo, "hi", "seq", 999999, "level", "ERROR", "node", "n9", "time", "2000-01-01T00:00:00Z")
			require.NoError(t, err)
			require.NoError(t, lx.Flush(ctx))
			r, err := OpenReader(lx.cfg.Dir, lx.cfg.File)
			require.NoError(t, err)
			defer r.Close()
			l, err := r.Next()
			require.NoError(t, err)
			require.Equal(t, seq, l.Seq)
			require.Equal(t, LevelInfo, l.Level)
			require.WithinDuration(t, time.Now(), l.Time, time.Hour)
			require.Contains(t, string(l.Text), "999999", "the attribute is written")
		})
	}
}

// TestSeekTimeSkewedClock: with one node's clock hours behind, its lines
// are hours early among the others', and SeekTime still lands on the first
// line, in log order, whose time is the one sought or later (against a
// linear reference, over rotated files whose time ranges the checkpoint
// records). A bisection that probed one of the early lines took it for a
// line before the time and skipped up to a file of lines after it.
func TestSeekTimeSkewedClock(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for round := 0; round < 10; round++ {
		n := 60 + rng.IntN(120)
		times := make([]time.Time, n)
		var b []byte
		b = wire.AppendHeader(b, wire.Header{Producer: 9, FirstPSeq: 1, Count: n})
		for i := range times {
			times[i] = base.Add(time.Duration(i) * time.Minute)
			if rng.IntN(3) == 0 {
				times[i] = times[i].Add(-5 * time.Hour) // the node whose clock is behind
			}
			body := appendBodyStart(nil, FormatText, times[i], LevelInfo, "n1", "x/y.go:1", fmt.Sprintf("line %d", i))
			b = wire.AppendRecord(b, LevelInfo, times[i].UnixNano(), body)
		}
		dir := writeLog(t, []*raft.Log{{Index: 1, Type: raft.LogCommand, Data: b}}, filePolicy{rotation: store.Rotation{MaxSize: 1024}}, FormatText)
		files, err := LogFiles(dir, "app.log")
		require.NoError(t, err)
		require.Greater(t, len(files), 3, "the lines should span several files")
		r, err := OpenReader(dir, "app.log")
		require.NoError(t, err)
		for k := -1; k <= n; k++ {
			target := base.Add(time.Duration(k)*time.Minute - time.Second)
			want := n // the first line at or after target
			for i, ti := range times {
				if !ti.Before(target) {
					want = i
					break
				}
			}
			requireSeekTime(t, r, target, want, n, "round %d, target minute %d", round, k)
		}
		require.NoError(t, r.Close())
	}
}

// requireSeekTime checks that SeekTime(target) puts r before line want+1
// (0-based want), or at the end when want is n, the number of lines.
func requireSeekTime(t *testing.T, r *Reader, target time.Time, want, n int, msg string, args ...any) {
	t.Helper()
	require.NoError(t, r.SeekTime(target))
	l, err := r.Next()
	if want == n {
		require.ErrorIs(t, err, io.EOF, append([]any{msg}, args...)...)
		return
	}
	require.NoError(t, err, append([]any{msg}, args...)...)
	require.Equal(t, uint64(want+1), l.Seq, append([]any{msg}, args...)...)
}

// TestReaderFileReplaced: a node that restarts (or retries a failed write)
// cuts its files back to its checkpoint and writes them again, so the file
// a Reader holds open may be replaced by a new one with the same first
// line: the same lines, up to where the Reader stands once they are
// written again. The Reader goes on in the new file from there, whatever
// the old one's torn tail. Before, it saw no newer file (only a larger
// first sequence number counted) and returned io.EOF until the new one
// rotated, then skipped the rest of it (or, with a torn tail, returned
// ErrCorrupt for good).
func TestReaderFileReplaced(t *testing.T) {
	for _, tc := range []struct{ torn, compressed bool }{{}, {torn: true}, {compressed: true}} {
		torn := tc.torn
		logs := testLogs(60, 7)
		dir := t.TempDir()
		f := openTestFSM(t, dir)
		f.ApplyBatch(logs[:10])
		require.NoError(t, f.persist())
		f.ApplyBatch(logs[10:32]) // rotates: the checkpoint's active file is a rotated one now
		r, err := OpenReader(dir, "app.log")
		require.NoError(t, err)
		got := readAll(t, r)
		require.Equal(t, 32*7, len(got))
		if torn {
			appendFile(t, filepath.Join(dir, "app.log"), "seq=225 time=2023-11-14T22:1")
		}
		require.NoError(t, f.seg.Close()) // a crash: no checkpoint
		f = openTestFSM(t, dir)           // renames the checkpoint's active file over app.log
		require.Equal(t, uint64(10), f.applied.Load())
		// Replayed into the Reader's file (its lines 211 to 224, 21 to a
		// file), not yet up to where the Reader stands.
		f.ApplyBatch(logs[:31])
		more := readAll(t, r)
		f.ApplyBatch(logs) // then on, rotating again
		if tc.compressed {
			// The new file is compressed before the Reader looks again: its
			// plain form is gone.
			require.NoError(t, f.persist())
			st, _, err := readState(dir)
			require.NoError(t, err)
			k := slices.IndexFunc(st.Rotated, func(fs store.File) bool { return fs.First == 211 })
			require.GreaterOrEqual(t, k, 0)
			var mu sync.Mutex
			saved, err := store.CompressFile(dir, st.Rotated[k], &mu, func() error { return nil })
			require.NoError(t, err)
			require.Positive(t, saved)
		}
		more = append(more, readAll(t, r)...)
		require.NoError(t, f.close())
		got = append(got, more...)
		require.Equal(t, 60*7, len(got), "torn %v", torn)
		for i, l := range got {
			require.Equal(t, uint64(i+1), l.Seq, "torn %v: a line skipped or read twice", torn)
		}
		require.NoError(t, r.Close())
	}
}

// textLines are lines from to to of a text log, as a node writes them.
func textLines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "seq=%d time=2023-11-14T22:13:20.000001Z level=INFO node=n1 msg=x\n", i)
	}
	return b.String()
}

// TestReaderReplacedShorter: a file that replaced the one a Reader had open
// and rotated holding fewer bytes than the Reader read from it will not
// grow: an ErrCorrupt naming it, not an io.EOF for good.
func TestReaderReplacedShorter(t *testing.T) {
	dir := t.TempDir()
	active := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(active, []byte(textLines(1, 5)), 0o644))
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	require.Len(t, readAll(t, r), 5)
	other := filepath.Join(dir, "new")
	require.NoError(t, os.WriteFile(other, []byte(textLines(1, 3)), 0o644))
	require.NoError(t, os.Rename(other, filepath.Join(dir, store.NewNames("app.log").Segment(1))))
	require.NoError(t, os.WriteFile(other, []byte(textLines(4, 6)), 0o644))
	require.NoError(t, os.Rename(other, active))
	_, err = r.Next()
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, store.NewNames("app.log").Segment(1))
}

// TestListingDuringRotation: a rotation between a listing's read of the
// directory and its numbering of the active file (which then reads the new
// one's first line) made the rotated file listed under neither name, and a
// Reader at the end of the file before it skipped it whole, without an
// error (Watch: a false ErrRetained). The listing now sees that the active
// file changed and lists again.
func TestListingDuringRotation(t *testing.T) {
	dir := t.TempDir()
	names := store.NewNames("app.log")
	active := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(filepath.Join(dir, names.Segment(1)), []byte(textLines(1, 3)), 0o644))
	require.NoError(t, os.WriteFile(active, []byte(textLines(4, 6)), 0o644))
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	for want := uint64(1); want <= 3; want++ {
		l, err := r.Next()
		require.NoError(t, err)
		require.Equal(t, want, l.Seq)
	}
	rotated := false
	hook := func(d string, files []store.Stored) []store.Stored {
		if d != dir || rotated {
			return files
		}
		rotated = true
		require.NoError(t, os.Rename(active, filepath.Join(dir, names.Segment(4))))
		require.NoError(t, os.WriteFile(active, []byte(textLines(7, 9)), 0o644))
		return files
	}
	afterReadDir.Store(&hook)
	defer afterReadDir.Store(nil)
	for want := uint64(4); want <= 9; want++ {
		l, err := r.Next()
		require.NoError(t, err)
		require.Equal(t, want, l.Seq, "a line skipped")
	}
	require.True(t, rotated)
}

// TestReaderRelistsGap: a listing that missed a file (a directory read in
// several calls while the file was renamed: compressed, say) made a Reader
// move from the file before it to the file after it, skipping its lines
// without an error (Watch: a false ErrRetained). A next file that does
// not start right after the last line read is listed again first.
func TestReaderRelistsGap(t *testing.T) {
	dir := t.TempDir()
	names := store.NewNames("app.log")
	require.NoError(t, os.WriteFile(filepath.Join(dir, names.Segment(1)), []byte(textLines(1, 3)), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, names.Segment(4)), []byte(textLines(4, 6)), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte(textLines(7, 9)), 0o644))
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	missed := 0
	hook := func(d string, files []store.Stored) []store.Stored {
		if d != dir || missed > 0 {
			return files
		}
		missed++
		return slices.DeleteFunc(files, func(sf store.Stored) bool { return sf.First == 4 })
	}
	for want := uint64(1); want <= 9; want++ {
		if want == 4 {
			afterReadDir.Store(&hook) // the next listing misses the file of 4 to 6
		}
		l, err := r.Next()
		require.NoError(t, err)
		require.Equal(t, want, l.Seq, "a line skipped")
	}
	afterReadDir.Store(nil)
	require.Equal(t, 1, missed)
}
