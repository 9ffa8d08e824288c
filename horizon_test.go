package logx

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

var horizonDays = flag.Int("horizon.days", 365, "TestLongHorizon: simulated days")

// TestLongHorizon: a simulated year of a node's life, with daily rotation
// and 30 days of retention, three voters reporting their clocks, a
// restart every day (a new producer id each time, as a restarted node
// gets), a snapshot every day, and a producer that is a new Client every
// few minutes. What a year could make grow stays bounded: the files kept,
// the retired list, the producers, state.json, the snapshot, the memory
// the node holds and the time a restart takes.
//
//	go test -run TestLongHorizon -horizon.days 3650 -v .   # ten years
func TestLongHorizon(t *testing.T) {
	dir := t.TempDir()
	p := filePolicy{rotation: store.Rotation{MaxSize: 64 << 20, Every: 24 * time.Hour}, maxAge: 30 * 24 * time.Hour, dedupWindow: defaultDedupWindow}
	open := func() *fsm {
		f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: p, format: FormatText, stateInterval: -1, logf: t.Logf})
		require.NoError(t, err)
		return f
	}
	f := open()
	var b logBuilder
	b.voters("v1", "v2", "v3")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var snap []byte
	var snapIdx uint64
	type sample struct {
		day                       int
		files, retired, producers int
		state, manifest           int64
		heap                      uint64
		restart                   time.Duration
	}
	var samples []sample
	node := uint64(1)
	client := uint64(1 << 32)
	for day := 0; day < *horizonDays; day++ {
		for h := 0; h < 24; h++ {
			at := start.Add(time.Duration(day*24+h) * time.Hour)
			b.clock("v1", at)
			b.clock("v2", at.Add(2*time.Second))
			b.clock("v3", at.Add(-3*time.Hour)) // one clock hours behind all year
			b.batch(node, 4, at.Add(time.Minute), "service")
			for m := 0; m < 60; m += 15 {
				client++ // a cron job's Client, every 15 minutes
				b.batch(client, 1, at.Add(time.Duration(m)*time.Minute), "cron")
			}
			f.ApplyBatch(b.take())
		}
		// The day's snapshot, then a restart: Raft restores the snapshot
		// (a no-op) and replays nothing (the log is compacted to it).
		s, err := f.Snapshot()
		require.NoError(t, err)
		snap, err = json.Marshal(s)
		require.NoError(t, err)
		snapIdx = s.(*manifest).Index
		require.NoError(t, f.close())
		began := time.Now()
		f = open()
		require.NoError(t, f.Restore(io.NopCloser(bytes.NewReader(snap))))
		took := time.Since(began)
		require.Equal(t, snapIdx, f.applied.Load())
		node++ // the restarted node's producer
		b.pseq = nil

		if day%30 == 29 || day == *horizonDays-1 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fi, err := os.Stat(filepath.Join(dir, stateFile))
			require.NoError(t, err)
			names, err := LogFiles(dir, "app.log")
			require.NoError(t, err)
			samples = append(samples, sample{day: day + 1, files: len(names), retired: len(f.st.Retired), producers: len(f.st.Producers),
				state: fi.Size(), manifest: int64(len(snap)), heap: ms.HeapAlloc, restart: took})
		}
	}
	for _, s := range samples {
		t.Logf("day %3d: %2d files, %d retired waiting, %2d producers, state.json %5d B, snapshot %5d B, heap %4.1f MB, restart %v",
			s.day, s.files, s.retired, s.producers, s.state, s.manifest, float64(s.heap)/1e6, s.restart.Round(time.Microsecond))
	}
	require.NoError(t, f.close())

	first, last := samples[0], samples[len(samples)-1]
	require.LessOrEqual(t, last.files, 32, "30 days of daily files and the active one")
	require.GreaterOrEqual(t, last.files, 30, "retention keeps 30 days, not less")
	require.LessOrEqual(t, last.retired, 2, "retired files are deleted at the snapshot after next")
	require.LessOrEqual(t, last.producers, 8, "a dedup window of producers")
	require.Less(t, last.state, int64(32<<10), "state.json")
	require.Less(t, last.manifest, int64(32<<10), "the snapshot")
	if len(samples) > 2 {
		// Nothing grows with time: the last month's footprint is the
		// first month's (files hold 30 days from the first month on).
		require.LessOrEqual(t, last.state, first.state*3/2+1024, "state.json grows")
		require.LessOrEqual(t, last.heap, first.heap+16<<20, "heap grows: %d -> %d", first.heap, last.heap)
	}
}
