package logx

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// testLogs builds n Raft logs of batches from two producers.
func testLogs(n, perBatch int) []*raft.Log {
	return testLogsMsg(n, perBatch, func(i, k int) string { return fmt.Sprintf("log %d entry %d", i, k) })
}

// testLogsMsg is testLogs with the message of batch i's entry k from msg.
func testLogsMsg(n, perBatch int, msg func(i, k int) string) []*raft.Log {
	var logs []*raft.Log
	pseq := map[uint64]uint64{}
	for i := 1; i <= n; i++ {
		prod := uint64(i%2 + 1)
		b := wire.AppendHeader(nil, wire.Header{Producer: prod, FirstPSeq: pseq[prod] + 1, Count: perBatch})
		for k := 0; k < perBatch; k++ {
			body := appendBodyStart(nil, FormatText, time.Unix(1700000000, int64(i*1000+k)), LevelInfo, "n1", "x/y.go:1", msg(i, k))
			b = wire.AppendRecord(b, LevelInfo, int64(i), body)
		}
		pseq[prod] += uint64(perBatch)
		logs = append(logs, &raft.Log{Index: uint64(i), Type: raft.LogCommand, Data: b})
	}
	return logs
}

func openTestFSM(t *testing.T, dir string) *fsm {
	t.Helper()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 2048}}, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.NoError(t, err)
	return f
}

// refHashes applies logs to a new node that never stops and returns its
// files' hashes: what every recovery must end with.
func refHashes(t *testing.T, logs []*raft.Log) map[string]string {
	t.Helper()
	ref := t.TempDir()
	f := openTestFSM(t, ref)
	f.ApplyBatch(logs)
	require.NoError(t, f.close())
	return fileHashes(t, ref, "app.log")
}

// sourceFSM applies logs to a new node, the source a catch-up copies from,
// and returns it with its snapshot's manifest; it is closed at the end of
// the test.
func sourceFSM(t *testing.T, logs []*raft.Log) (*fsm, *manifest) {
	t.Helper()
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(logs)
	m := manifestOf(t, src)
	t.Cleanup(func() { src.close() })
	return src, m
}

// TestCrashRecovery: a node that dies at any point after a checkpoint (with
// a torn last line, a rotation in flight, or files rotated after the
// checkpoint) and replays the Raft log ends with exactly the bytes of a
// node that never stopped.
func TestCrashRecovery(t *testing.T) {
	logs := testLogs(60, 7)
	want := refHashes(t, logs)
	require.Greater(t, len(want), 5)

	crashes := map[string]func(t *testing.T, f *fsm){
		"clean": func(*testing.T, *fsm) {},
		"torn line": func(t *testing.T, f *fsm) {
			appendFile(t, filepath.Join(f.dir, "app.log"), "seq=999 time=2023-11-14T22:1")
		},
		"mid rotation": func(t *testing.T, f *fsm) {
			// The active file was renamed but the new one not yet created.
			require.NoError(t, os.Rename(filepath.Join(f.dir, "app.log"), filepath.Join(f.dir, store.NewNames("app.log").Segment(f.seg.ActiveFirst()))))
		},
	}
	for name, crash := range crashes {
		for _, cut := range []int{0, 10, 33} {
			t.Run(fmt.Sprintf("%s/checkpoint@%d", name, cut), func(t *testing.T) {
				dir := t.TempDir()
				f := openTestFSM(t, dir)
				f.ApplyBatch(logs[:cut])
				require.NoError(t, f.persist())
				f.ApplyBatch(logs[cut : cut+20]) // applied, not checkpointed
				require.NoError(t, f.seg.Close())
				crash(t, f)
				f = openTestFSM(t, dir)
				require.Equal(t, uint64(cut), f.applied.Load())
				// Raft replays from its last snapshot: everything here.
				f.ApplyBatch(logs)
				require.NoError(t, f.close())
				require.Equal(t, want, fileHashes(t, dir, "app.log"))
			})
		}
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = fh.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
}

// TestDuplicateBatches: a batch applied twice (a retry after an unknown
// outcome) is written once, and its repeat reports the first sequence
// numbers.
func TestDuplicateBatches(t *testing.T) {
	f := openTestFSM(t, t.TempDir())
	defer f.close()
	logs := testLogs(3, 4)
	dup := &raft.Log{Index: 4, Type: raft.LogCommand, Data: logs[2].Data}
	res := f.ApplyBatch(append(logs, dup))
	require.Equal(t, uint64(9), res[2].(applyResult).firstSeq)
	require.Equal(t, uint64(9), res[3].(applyResult).firstSeq)
	require.Equal(t, uint64(12), f.seq.Load())
	require.Equal(t, uint64(4), f.dups.Load())
	// Replayed indexes are skipped.
	res = f.ApplyBatch(logs[:1])
	require.ErrorIs(t, res[0].(applyResult).err, errReplayed)
	require.Equal(t, uint64(12), f.seq.Load())
}

// TestMalformedBatchSkipped: a batch that does not decode is skipped the same
// way on every node.
func TestMalformedBatchSkipped(t *testing.T) {
	f := openTestFSM(t, t.TempDir())
	defer f.close()
	logs := testLogs(2, 2)
	bad := &raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{1, 2, 3}}
	logs[1].Index = 3
	res := f.ApplyBatch([]*raft.Log{logs[0], bad, logs[1]})
	require.NoError(t, res[0].(applyResult).err)
	require.Error(t, res[1].(applyResult).err)
	require.NoError(t, res[2].(applyResult).err)
	require.Equal(t, uint64(4), f.seq.Load())
	require.Equal(t, uint64(3), f.applied.Load())
}

// TestStateWithoutFiles: a checkpoint that claims bytes the file lacks is
// reported as corruption, and so are log files without a checkpoint.
func TestCorruptDir(t *testing.T) {
	dir := t.TempDir()
	f := openTestFSM(t, dir)
	f.ApplyBatch(testLogs(2, 2))
	require.NoError(t, f.close())
	// A byte of the active file changed on the disk, its length the same:
	// the checkpoint's checksum of it says so.
	active := filepath.Join(dir, "app.log")
	b, err := os.ReadFile(active)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x20
	require.NoError(t, os.WriteFile(active, b, 0o644))
	_, err = newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 2048}}, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "changed on the disk")

	require.NoError(t, os.Truncate(active, 10))
	_, err = newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 2048}}, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.ErrorIs(t, err, ErrCorrupt)

	require.NoError(t, os.Remove(filepath.Join(dir, stateFile)))
	_, err = newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 2048}}, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestBatchCodec(t *testing.T) {
	b := wire.AppendHeader(nil, wire.Header{Producer: 42, FirstPSeq: 7, Count: 2})
	b = wire.AppendRecord(b, LevelWarn, -5, []byte("one"))
	b = wire.AppendRecord(b, LevelDebug, 1<<62, nil)
	r, err := wire.ReadBatch(b, new([]byte), 1<<20)
	require.NoError(t, err)
	require.Equal(t, wire.Header{Producer: 42, FirstPSeq: 7, Count: 2}, r.Header)
	require.True(t, r.Next())
	require.Equal(t, LevelWarn, r.Level)
	require.Equal(t, int64(-5), r.UnixNano)
	require.Equal(t, "one", string(r.Body))
	require.True(t, r.Next())
	require.Equal(t, LevelDebug, r.Level)
	require.Empty(t, r.Body)
	require.False(t, r.Next())
	require.NoError(t, r.Err())
	require.ErrorIs(t, validateBatch(b, FormatText, 10, 1<<20, new([]byte)), errBadRecord, "not a rendered body")
	require.ErrorIs(t, validateBatch(b, FormatText, 2, 1<<20, new([]byte)), ErrEntryTooLarge)
	// With rendered bodies the batch is valid.
	body1, nanos1 := renderRecord(FormatText, time.Unix(0, 5000), LevelWarn, "n1", "one", "")
	body2, _ := renderRecord(FormatText, time.Time{}, LevelDebug, "n1", "two", "")
	g := wire.AppendHeader(nil, wire.Header{Producer: 42, FirstPSeq: 7, Count: 2})
	g = wire.AppendRecord(g, LevelWarn, nanos1, body1)
	g = wire.AppendRecord(g, LevelDebug, 0, body2)
	require.NoError(t, validateBatch(g, FormatText, 100, 1<<20, new([]byte)))
	require.ErrorIs(t, validateBatch(g, FormatText, 10, 1<<20, new([]byte)), ErrEntryTooLarge)
	// Every truncation is an error, never a panic.
	for i := 0; i < len(b); i++ {
		require.Error(t, validateBatch(b[:i], FormatText, 100, 1<<20, new([]byte)), "truncated at %d", i)
	}
	require.Error(t, validateBatch(append(b, 0), FormatText, 100, 1<<20, new([]byte)), "trailing byte")

	// Unknown flags are refused.
	f := wire.AppendHeader(nil, wire.Header{Producer: 1, FirstPSeq: 3, Count: 1})
	f = wire.AppendRecord(f, LevelInfo, 1, []byte("x"))
	f[1] |= 0x80
	require.ErrorContains(t, validateBatch(f, FormatText, 10, 1<<20, new([]byte)), "unknown flags")

	// Version 1 (no flags byte), as logs written before version 2 hold it.
	v1 := append([]byte{wire.V1}, g[2:]...)
	r, err = wire.ReadBatch(v1, new([]byte), 1<<20)
	require.NoError(t, err)
	require.Equal(t, wire.Header{Producer: 42, FirstPSeq: 7, Count: 2}, r.Header)
	require.NoError(t, validateBatch(v1, FormatText, 100, 1<<20, new([]byte)))
}

// A compressed batch reads back record for record; one that does not shrink
// is sent plain; a damaged or oversized one is an error, never a panic.
func TestBatchCompressed(t *testing.T) {
	var recs []byte
	const n = 200
	body := func(i int) string {
		return fmt.Sprintf("time=%s level=INFO node=n1 msg=\"request served\" i=%d", time.Unix(0, int64(i)*1000).UTC().Format(timeLayout), i)
	}
	for i := 0; i < n; i++ {
		recs = wire.AppendRecord(recs, LevelInfo, int64(i)*1000, []byte(body(i)))
	}
	h := wire.Header{Producer: 9, FirstPSeq: 100, Count: n}
	b := wire.NewBatch(h, recs, true)
	require.Equal(t, wire.FlagCompressed, b[1]&wire.FlagCompressed)
	require.Less(t, len(b), len(recs)/2, "compressed size")
	require.Zero(t, wire.NewBatch(h, recs, false)[1]&wire.FlagCompressed)

	var scratch []byte
	r, err := wire.ReadBatch(b, &scratch, 1<<20)
	require.NoError(t, err)
	require.Equal(t, wire.Header{Producer: 9, FirstPSeq: 100, Count: n, Flags: wire.FlagCompressed}, r.Header)
	for i := 0; r.Next(); i++ {
		require.Equal(t, int64(i)*1000, r.UnixNano)
		require.Equal(t, body(i), string(r.Body))
	}
	require.NoError(t, r.Err())
	require.NoError(t, validateBatch(b, FormatText, 100, 1<<20, &scratch))

	_, err = wire.ReadBatch(b, &scratch, len(recs)-1)
	require.ErrorContains(t, err, "limit", "expanding past the limit")
	for i := 0; i < len(b); i++ {
		require.Error(t, validateBatch(b[:i], FormatText, 100, 1<<20, &scratch), "truncated at %d", i)
	}
	// S2 blocks carry no checksum (Raft's log and TCP do): a flipped byte
	// may decode to other text, but never panics or overruns.
	for i := wire.HeaderMax; i < len(b); i += 7 {
		bad := slices.Clone(b)
		bad[i] ^= 0xff
		_ = validateBatch(bad, FormatText, 100, 1<<20, &scratch)
	}

	noise := make([]byte, 8<<10)
	_, _ = rand.Read(noise)
	plain := wire.NewBatch(wire.Header{Producer: 1, FirstPSeq: 1, Count: 1}, wire.AppendRecord(nil, LevelInfo, 0, noise), true)
	require.Zero(t, plain[1]&wire.FlagCompressed, "incompressible records go plain")
}

func FuzzBatchDecode(f *testing.F) {
	b := wire.AppendHeader(nil, wire.Header{Producer: 1, FirstPSeq: 1, Count: 1})
	f.Add(wire.AppendRecord(b, LevelInfo, 1, []byte("x")))
	var recs []byte
	for i := 0; i < 100; i++ {
		recs = wire.AppendRecord(recs, LevelInfo, int64(i), []byte("level=INFO node=n1 msg=compressible"))
	}
	f.Add(wire.NewBatch(wire.Header{Producer: 1, FirstPSeq: 1, Count: 100}, recs, true))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = validateBatch(data, FormatText, 1<<20, 1<<20, new([]byte))
	})
}

// TestRefusedDirLeftAlone: a directory whose log files contradict their
// checkpoint (here: a log file and no checkpoint) is refused with
// ErrCorrupt before anything is written into it: no Raft log appears.
func TestRefusedDirLeftAlone(t *testing.T) {
	cfg := testConfig(t, 0, freeAddrs(t, 1), t.TempDir())
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, "app.log"), []byte("seq=1 level=INFO msg=x\n"), 0o644))
	_, err := New(cfg)
	require.ErrorIs(t, err, ErrCorrupt)
	ents, err := os.ReadDir(cfg.Dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"LOCK", "app.log"}, names)
}
