package logxview

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/stretchr/testify/require"
)

var benchBytes = flag.Int64("view.bytes", 1<<30, "size of BenchmarkViewer's log")

// dirSource reads a directory of log files, as a node's Reader does.
type dirSource struct{ dir, file string }

func (s dirSource) Grep(ctx context.Context, q logx.Query, fn func(logx.Line) error) error {
	return logx.Grep(ctx, s.dir, s.file, q, fn)
}

func (s dirSource) Watch(context.Context, uint64, slog.Leveler, func(logx.Line) error) error {
	return errors.New("not a live stream")
}

func (s dirSource) Stats() logx.Stats { return logx.Stats{} }

var benchLog struct {
	once  sync.Once
	dir   string
	end   time.Time // the newest line's time
	lines int
}

// viewerFixture writes a log of -view.bytes (1 GiB) spanning the 24 hours
// before end: lines of about 200 bytes with random request ids, users,
// paths and durations, one in 100,000 holding a needle, levels mostly
// INFO, in 64 MiB files named as a node names them.
func viewerFixture(b *testing.B) (string, time.Time, int) {
	benchLog.once.Do(func() {
		dir, err := os.MkdirTemp("", "logxview-bench")
		require.NoError(b, err)
		benchLog.dir = dir
		end := time.Now().UTC().Truncate(time.Second)
		msgs := []string{"request served", "cache miss", "upstream slow", "session renewed"}
		line := func(rng *rand.Rand, seq int, t time.Time) string {
			level := "INFO"
			switch r := rng.Intn(100); {
			case r < 2:
				level = "ERROR"
			case r < 8:
				level = "WARN"
			case r < 15:
				level = "DEBUG"
			}
			msg := msgs[rng.Intn(len(msgs))]
			if seq%100000 == 0 {
				msg = "needle-in-the-haystack " + msg
			}
			return fmt.Sprintf("seq=%d time=%s level=%s node=n%d caller=app/main.go:42 msg=%q request_id=%016x user=%d path=/api/v1/items/%d status=200 took=%dms\n",
				seq, t.Format("2006-01-02T15:04:05.000000Z07:00"), level, seq%3+1, msg, rng.Uint64(), rng.Intn(1e6), rng.Intn(1e5), rng.Intn(900))
		}
		// How many lines make the size (a line's length does not depend on
		// its time), so that they spread over exactly 24 hours.
		n := 0
		rng := rand.New(rand.NewSource(1))
		for written := int64(0); written < *benchBytes; n++ {
			written += int64(len(line(rng, n+1, end)))
		}
		step := 24 * time.Hour / time.Duration(n)
		rng = rand.New(rand.NewSource(1))
		var f *os.File
		var w *bufio.Writer
		var size int64
		seq := 1
		open := func(name string) {
			if f != nil {
				require.NoError(b, w.Flush())
				require.NoError(b, f.Close())
			}
			f, err = os.Create(filepath.Join(dir, name))
			require.NoError(b, err)
			w, size = bufio.NewWriterSize(f, 1<<20), 0
		}
		open(fmt.Sprintf("app-%020d.log", 1))
		for ; seq <= n; seq++ {
			line := line(rng, seq, end.Add(-24*time.Hour).Add(time.Duration(seq)*step))
			if size+int64(len(line)) > 64<<20 {
				open(fmt.Sprintf("app-%020d.log", seq))
			}
			_, err := w.WriteString(line)
			require.NoError(b, err)
			size += int64(len(line))
		}
		require.NoError(b, w.Flush())
		require.NoError(b, f.Close())
		// The newest file is the active one.
		names, err := logx.LogFiles(dir, "app.log")
		require.NoError(b, err)
		require.NoError(b, os.Rename(filepath.Join(dir, names[len(names)-1]), filepath.Join(dir, "app.log")))
		benchLog.end, benchLog.lines = end, seq-1
	})
	return benchLog.dir, benchLog.end, benchLog.lines
}

// BenchmarkViewer times what the page asks of a node for a 1 GiB log
// spanning 24 hours, through the handler over HTTP: the first page of the
// last 24 hours (newest first), the first page of a rare substring, and
// the histogram of the 24 hours in 120 buckets; and reports the heap at
// its largest while each runs (sampled every millisecond).
//
//	go test -run '^$' -bench Viewer -benchtime 3x ./logxview
func BenchmarkViewer(b *testing.B) {
	dir, end, lines := viewerFixture(b)
	v := newHandler(func(string) (Source, error) { return dirSource{dir, "app.log"}, nil },
		func() []string { return []string{logx.DefaultStream} }, Options{QueryTimeout: 5 * time.Minute})
	srv := httptest.NewServer(v)
	defer srv.Close()
	since, until := end.Add(-24*time.Hour).Format(time.RFC3339), end.Add(time.Second).Format(time.RFC3339)
	for _, c := range []struct {
		name, path string
		v          url.Values
		check      func(out map[string]any)
	}{
		{"first-page", "api/search", url.Values{"since": {since}, "until": {until}, "limit": {"200"}},
			func(out map[string]any) { require.Len(b, out["lines"], 200) }},
		{"rare-substring", "api/search", url.Values{"q": {"needle-in-the-haystack"}, "since": {since}, "until": {until}, "limit": {"200"}},
			func(out map[string]any) { require.Len(b, out["lines"], lines/100000) }},
		{"histogram-24h", "api/histogram", url.Values{"since": {since}, "until": {until}, "buckets": {"120"}},
			func(out map[string]any) { require.EqualValues(b, lines, out["total"]) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			peak := sampleHeap()
			b.ResetTimer()
			for range b.N {
				var out map[string]any
				require.Equal(b, 200, get(b, srv, c.path, c.v, &out), "%v", out["error"])
				c.check(out)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
			b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MiB")
		})
	}
}

// sampleHeap samples the heap's live objects every millisecond until the
// function it returns is called, which returns the largest sample.
func sampleHeap() func() uint64 {
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}
