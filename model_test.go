package logx

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// A model-based test of the state machine. A driver makes a Raft log at
// random (batches from several producers, with repeats, stale retries,
// empty, malformed and spoofed batches; clock reports from three voters,
// one of them hours off now and then; entries whose times are hours off)
// and applies it to an fsm in calls of random sizes, while it injects
// write failures (a full disk that takes half a write, failing fsyncs),
// closes the node in the middle of a failure, crashes and restarts it
// (replaying the log from the last snapshot, as Raft does), takes
// snapshots, and catches a second node up from them with fetches that fail
// midway. A small reference model, written separately from the fsm, says
// what the files must hold and what each batch's answer must be. After
// every step: the files equal the model's, the checkpoint is consistent
// with the bytes on disk, and (every few steps) a restart gives the same
// files.
//
// Seeds replay: a failing run prints its seed and the step;
//
//	go test -run TestModelFSM -model.seed 42 -model.steps 2000 -v .
//
// runs one seed longer. FuzzModelFSM drives the same with fuzz input.

var (
	modelSeed  = flag.Uint64("model.seed", 0, "TestModelFSM: run only this seed")
	modelSeeds = flag.Int("model.seeds", 8, "TestModelFSM: how many seeds (3 with -short)")
	modelSteps = flag.Int("model.steps", 120, "TestModelFSM: steps per seed")
)

func TestModelFSM(t *testing.T) {
	seeds := []uint64{*modelSeed}
	if *modelSeed == 0 {
		seeds = nil
		n := *modelSeeds
		if testing.Short() {
			n = min(n, 3)
		}
		for i := range n {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			runModel(t, r, *modelSteps, func() int { return r.IntN(100) })
		})
	}
}

// FuzzModelFSM: the fuzzer's bytes choose the operations; a PRNG seeded
// from them fills in the details.
func FuzzModelFSM(f *testing.F) {
	f.Add([]byte{1, 2, 3, 40, 50, 60, 70, 80, 90, 99})
	f.Add(bytes.Repeat([]byte{85}, 30))
	f.Add([]byte{95, 95, 10, 96, 97, 98, 99, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		sum := sha256.Sum256(ops)
		r := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:]), binary.LittleEndian.Uint64(sum[8:])))
		i := 0
		runModel(t, r, len(ops), func() int { o := int(ops[i]) % 100; i++; return o })
	})
}

// mline is one line the model holds.
type mline struct {
	seq   uint64
	text  []byte
	clock int64
}

// mfile is one of the model's files (the last is the active one).
type mfile struct {
	first  uint64
	data   []byte
	newest int64
}

type mprod struct {
	first, last, firstSeq uint64
	owner                 string
	data                  []byte // of its last batch: a retry repeats them
}

// model is the reference: what the log so far makes the files hold.
type model struct {
	policy filePolicy
	format Format
	seq    uint64
	prods  map[uint64]*mprod
	clocks map[string]int64
	clock  int64
	files  []mfile  // retained rotated files, then the active one
	all    [][]byte // every line written, by sequence number - 1
	// results holds the answer each Raft index must get.
	results map[uint64]applyResult
}

func newModel(p filePolicy, format Format) *model {
	return &model{policy: p, format: format, prods: map[uint64]*mprod{}, clocks: map[string]int64{},
		files: []mfile{{first: 1}}, results: map[uint64]applyResult{}}
}

// mbatch is a batch the driver made, as the model sees it.
type mbatch struct {
	producer  uint64
	firstPSeq uint64
	times     []int64
	bodies    [][]byte
	owner     []byte
	malformed bool
	data      []byte // the Raft entry's bytes (log sets them)
}

var errModelRefused = errors.New("refused")

func (m *model) lineClock(t int64) int64 {
	if m.clock == 0 {
		return 0
	}
	if t == 0 {
		return m.clock
	}
	slack := int64(clockSlack)
	return min(max(t, m.clock-slack), m.clock+slack)
}

func (m *model) reportClock(id string, t int64) {
	m.clocks[id] = t
	var ts []int64
	for _, v := range []string{"v1", "v2", "v3"} {
		if c, ok := m.clocks[v]; ok {
			ts = append(ts, c)
		}
	}
	if len(ts) >= 2 {
		slices.Sort(ts)
		m.clock = max(m.clock, ts[len(ts)-2]) // the second highest of three
	}
}

func (m *model) batch(idx uint64, b mbatch) {
	n := uint64(len(b.bodies))
	if b.malformed {
		m.results[idx] = applyResult{err: wire.ErrBadBatch}
		return
	}
	if n == 0 {
		m.results[idx] = applyResult{err: errModelRefused}
		return
	}
	owner := hex.EncodeToString(b.owner)
	last := b.firstPSeq + n - 1
	if p := m.prods[b.producer]; p != nil {
		switch {
		case p.owner != owner:
			m.results[idx] = applyResult{err: errModelRefused}
			return
		case b.firstPSeq == p.first && last == p.last && !bytes.Equal(b.data, p.data):
			m.results[idx] = applyResult{err: errModelRefused} // the same numbers, other contents
			return
		case b.firstPSeq == p.first && last == p.last:
			m.results[idx] = applyResult{firstSeq: p.firstSeq}
			return
		case b.firstPSeq <= p.last:
			m.results[idx] = applyResult{err: errModelRefused}
			return
		}
	}
	m.prods[b.producer] = &mprod{first: b.firstPSeq, last: last, firstSeq: m.seq + 1, owner: owner, data: b.data}
	m.results[idx] = applyResult{firstSeq: m.seq + 1}
	for i, body := range b.bodies {
		m.seq++
		var text []byte
		if m.format == FormatJSON {
			text = fmt.Appendf(nil, `{"seq":%d,%s}`+"\n", m.seq, body)
		} else {
			text = fmt.Appendf(nil, "seq=%d %s\n", m.seq, body)
		}
		m.all = append(m.all, text)
		m.add(mline{seq: m.seq, text: text, clock: m.lineClock(b.times[i])})
	}
}

func (m *model) add(l mline) {
	cur := &m.files[len(m.files)-1]
	size := int64(len(cur.data))
	every := int64(m.policy.rotation.Every)
	if size > 0 && (size+int64(len(l.text)) > m.policy.rotation.MaxSize ||
		every > 0 && l.clock > 0 && cur.newest > 0 && l.clock/every > cur.newest/every) {
		m.files = append(m.files, mfile{first: l.seq})
		cur = &m.files[len(m.files)-1]
	}
	if len(cur.data) == 0 {
		cur.first = l.seq
	}
	cur.data = append(cur.data, l.text...)
	cur.newest = max(cur.newest, l.clock)
}

// retain applies retention, as apply does after each call.
func (m *model) retain() {
	p := m.policy
	for len(m.files) > 1 {
		old := m.files[0]
		byCount := p.maxFiles > 0 && len(m.files)-1 > p.maxFiles
		byAge := p.maxAge > 0 && old.newest > 0 && m.clock > 0 && old.newest < m.clock-int64(p.maxAge)
		if !byCount && !byAge {
			return
		}
		m.files = m.files[1:]
	}
}

// want is the model's files by name.
func (m *model) want() map[string]string {
	names := store.NewNames("app.log")
	out := map[string]string{}
	for i, f := range m.files {
		name := names.Segment(f.first)
		if i == len(m.files)-1 {
			name = "app.log"
		}
		out[name] = string(f.data)
	}
	return out
}

// driver runs the fsm against the model.
type driver struct {
	t      testing.TB
	r      *rand.Rand
	dir    string
	policy filePolicy
	format Format
	f      *fsm
	m      *model
	logs   []*raft.Log // the whole Raft log
	store  *raft.InmemStore
	now    time.Time
	skew   time.Duration // v3's clock and some entries' offset

	pseq     map[uint64]uint64 // producers' next sequence numbers
	last     map[uint64][]byte // producers' last batch, for retries
	snapIdx  uint64            // Raft index of the last snapshot
	snap     []byte            // its manifest
	failLeft int               // fault calls still to fail
	stopAt   int               // close the node at this failing call (0: no)
	calls    int
	step     int
}

func runModel(t testing.TB, r *rand.Rand, steps int, op func() int) {
	p := filePolicy{rotation: store.Rotation{MaxSize: int64(300 + r.IntN(3000))}, dedupWindow: 1000 * time.Hour}
	if r.IntN(2) == 0 {
		p.rotation.Every = time.Hour
	}
	if r.IntN(3) == 0 {
		p.maxFiles = 1 + r.IntN(5)
	}
	if r.IntN(3) == 0 {
		p.maxAge = time.Duration(2+r.IntN(5)) * time.Hour
	}
	format := FormatText
	if r.IntN(4) == 0 {
		format = FormatJSON
	}
	d := &driver{t: t, r: r, dir: t.TempDir(), policy: p, format: format, m: newModel(p, format),
		now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), pseq: map[uint64]uint64{}, last: map[uint64][]byte{},
		store: raft.NewInmemStore()}
	d.open()
	defer func() {
		if d.f != nil && d.f.seg != nil {
			d.f.seg.Close()
		}
	}()
	d.log(raft.LogConfiguration, raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{
		{ID: "v1", Address: "v1", Suffrage: raft.Voter}, {ID: "v2", Address: "v2", Suffrage: raft.Voter}, {ID: "v3", Address: "v3", Suffrage: raft.Voter}}}), nil)
	t.Logf("policy %+v format %v", p, format)
	for d.step = 0; d.step < steps; d.step++ {
		o := op()
		switch {
		case o < 40:
			d.append(1 + d.r.IntN(12))
		case o < 50:
			d.clocks()
		case o < 58:
			d.hostile()
		case o < 66:
			d.writeFailure(false)
		case o < 70:
			d.writeFailure(true) // Close lands during the failure
		case o < 78:
			d.restart(d.r.IntN(2) == 0)
		case o < 85:
			d.snapshot()
		case o < 90:
			d.catchUp()
		case o < 95:
			d.skew = time.Duration(d.r.IntN(97)-48) * time.Hour
		default:
			d.now = d.now.Add(time.Duration(d.r.IntN(180)) * time.Minute)
			d.f.setNextSum(store.Hash(d.r.IntN(2))) // the next files' checksums (sums.go)
		}
		d.now = d.now.Add(time.Duration(d.r.IntN(10)) * time.Minute)
		d.check()
	}
	d.restart(false)
	d.check()
}

func (d *driver) open() {
	c := fsmConfig{dir: d.dir, file: "app.log", policy: d.policy, format: d.format, stateInterval: -1, logf: d.t.Logf,
		retryPause: time.Microsecond, fault: d.fault, logs: func() raft.LogStore { return d.store }}
	if d.r.IntN(2) == 0 {
		c.stateInterval = 0 // checkpoint after every call
	}
	f, err := newFSM(c)
	require.NoError(d.t, err, "step %d", d.step)
	d.f = f
	f.setNextSum(store.Hash(d.r.IntN(2))) // as a node's tend does soon after its start
}

// fault is the fsm's disk: it fails while failLeft > 0 (half a write, or
// an fsync), and closes the node at the stopAt-th failing call.
func (d *driver) fault() error {
	if d.failLeft <= 0 {
		return nil
	}
	d.calls++
	if d.calls > 100 {
		panic(fmt.Sprintf("step %d: apply retried 100 times", d.step))
	}
	d.failLeft--
	if d.calls == d.stopAt {
		close(d.f.stop)
	}
	return syscall.ENOSPC
}

// log appends a Raft entry to the log, tells the model, and applies it
// (with what is pending) to the fsm in a call of random size.
func (d *driver) log(typ raft.LogType, data []byte, b *mbatch) {
	idx := uint64(len(d.logs) + 1)
	l := &raft.Log{Index: idx, Type: typ, Data: data}
	if b != nil {
		l.Extensions = b.owner
		b.data = data
		d.m.batch(idx, *b)
	}
	if typ == raft.LogCommand && len(data) > 0 && data[0] == cmdClock {
		id, t, err := readClock(data)
		require.NoError(d.t, err)
		d.m.reportClock(id, t)
	}
	d.logs = append(d.logs, l)
	require.NoError(d.t, d.store.StoreLog(l))
}

// apply hands the logs not yet applied to the fsm, in calls of 1 to 8.
func (d *driver) apply() {
	from := int(d.f.applied.Load())
	for from < len(d.logs) {
		to := min(len(d.logs), from+1+d.r.IntN(8))
		res := d.f.ApplyBatch(d.logs[from:to])
		if d.f.failed != nil {
			return // closed in a failure: the restart replays
		}
		for i, rv := range res {
			ar, _ := rv.(applyResult)
			d.checkResult(d.logs[from+i], ar)
		}
		from = to
	}
}

func (d *driver) checkResult(l *raft.Log, got applyResult) {
	want, ok := d.m.results[l.Index]
	if !ok {
		return
	}
	switch {
	case errors.Is(want.err, errModelRefused):
		var ref *refusedError
		require.True(d.t, errors.As(got.err, &ref), "step %d, index %d: want a refusal, got %+v", d.step, l.Index, got)
	case want.err != nil:
		require.Error(d.t, got.err, "step %d, index %d", d.step, l.Index)
	default:
		require.NoError(d.t, got.err, "step %d, index %d", d.step, l.Index)
		require.Equal(d.t, want.firstSeq, got.firstSeq, "step %d, index %d: first sequence number", d.step, l.Index)
	}
}

// append logs n batches from random producers; some are retries of a
// producer's last batch.
func (d *driver) append(n int) {
	for range n {
		prod := uint64(1 + d.r.IntN(6))
		if last := d.last[prod]; last != nil && d.r.IntN(5) == 0 {
			b := d.decode(last, nil)
			d.log(raft.LogCommand, last, &b)
			continue
		}
		b := d.newBatch(prod, d.pseq[prod]+1, 1+d.r.IntN(6))
		d.pseq[prod] += uint64(len(b.bodies))
		data := d.encode(b)
		d.last[prod] = data
		d.log(raft.LogCommand, data, &b)
	}
	d.apply()
	d.m.retain()
}

func (d *driver) newBatch(prod, first uint64, n int) mbatch {
	b := mbatch{producer: prod, firstPSeq: first}
	for k := range n {
		t := d.now.Add(time.Duration(d.r.IntN(60)) * time.Second)
		if d.r.IntN(8) == 0 {
			t = t.Add(d.skew) // a producer whose clock is off
		}
		msg := fmt.Sprintf("p%d e%d %s", prod, first+uint64(k), bytes.Repeat([]byte{'x'}, d.r.IntN(200)))
		body := appendBodyStart(nil, d.format, t, LevelInfo, "n"+strconv.FormatUint(prod, 10), "", msg)
		b.times = append(b.times, t.UnixNano())
		b.bodies = append(b.bodies, body)
	}
	return b
}

func (d *driver) encode(b mbatch) []byte {
	var recs []byte
	for i, body := range b.bodies {
		recs = wire.AppendRecord(recs, LevelInfo, b.times[i], body)
	}
	return wire.NewBatch(wire.Header{Producer: b.producer, FirstPSeq: b.firstPSeq, Count: len(b.bodies)}, recs, d.r.IntN(2) == 0)
}

// decode reads a batch the driver made back into the model's terms.
func (d *driver) decode(data, owner []byte) mbatch {
	rd, err := wire.ReadBatch(data, new([]byte), wire.MaxDecodedBatch)
	require.NoError(d.t, err)
	b := mbatch{producer: rd.Header.Producer, firstPSeq: rd.Header.FirstPSeq, owner: owner}
	for rd.Next() {
		b.times = append(b.times, rd.UnixNano)
		b.bodies = append(b.bodies, bytes.Clone(rd.Body))
	}
	return b
}

// clocks logs the voters' reports: v3 is off by the current skew.
func (d *driver) clocks() {
	for _, v := range []string{"v1", "v2", "v3"} {
		t := d.now
		if v == "v3" {
			t = t.Add(d.skew)
		}
		if d.r.IntN(4) > 0 {
			d.log(raft.LogCommand, appendClock(nil, v, t.UnixNano()), nil)
		}
	}
	d.apply()
	d.m.retain()
}

// hostile logs batches a bad or confused sender could get into the log:
// empty, malformed, a stale retry, an overlap, another identity's.
func (d *driver) hostile() {
	prod := uint64(1 + d.r.IntN(6))
	switch d.r.IntN(5) {
	case 0:
		b := mbatch{producer: prod, firstPSeq: d.pseq[prod] + 1}
		d.log(raft.LogCommand, wire.AppendHeader(nil, wire.Header{Producer: prod, FirstPSeq: b.firstPSeq}), &b)
	case 1:
		data := d.encode(d.newBatch(prod, d.pseq[prod]+1, 3))
		d.log(raft.LogCommand, data[:len(data)-5], &mbatch{malformed: true})
	case 2:
		if d.pseq[prod] > 1 {
			b := d.newBatch(prod, 1, 1) // an entry long since written
			d.log(raft.LogCommand, d.encode(b), &b)
		}
	case 3:
		if d.pseq[prod] > 2 {
			b := d.newBatch(prod, d.pseq[prod]-1, 3) // overlaps the last batch
			d.log(raft.LogCommand, d.encode(b), &b)
		}
	case 4:
		b := d.newBatch(prod, 1<<40, 1)
		b.owner = []byte("someone else 16b")
		d.log(raft.LogCommand, d.encode(b), &b)
	}
	d.apply()
	d.m.retain()
}

// writeFailure makes the disk fail for a while during the next batches:
// apply retries from the checkpoint until it works; with stop, the node
// is closed in the middle and restarted.
func (d *driver) writeFailure(stop bool) {
	d.failLeft, d.calls, d.stopAt = 1+d.r.IntN(4), 0, 0
	if stop {
		d.stopAt = 1 + d.r.IntN(d.failLeft)
	}
	d.append(1 + d.r.IntN(4))
	d.failLeft = 0
	if d.f.failed != nil {
		require.ErrorIs(d.t, d.f.failed, ErrClosed)
		require.NoError(d.t, d.f.close())
		d.reopen()
	}
}

// restart closes (or crashes) the node and starts it again: Raft restores
// its last snapshot (a no-op: the files are newer) and replays the log
// after it.
func (d *driver) restart(crash bool) {
	if crash {
		require.NoError(d.t, d.f.seg.Close())
	} else {
		require.NoError(d.t, d.f.close())
	}
	d.reopen()
}

func (d *driver) reopen() {
	d.open()
	if d.snap != nil {
		require.NoError(d.t, d.f.Restore(io.NopCloser(bytes.NewReader(d.snap))), "step %d", d.step)
	}
	require.LessOrEqual(d.t, d.snapIdx, d.f.applied.Load(), "step %d: the checkpoint is older than the snapshot", d.step)
	// Raft replays from the snapshot: what the files hold is skipped.
	from := int(d.snapIdx)
	for from < len(d.logs) {
		to := min(len(d.logs), from+1+d.r.IntN(8))
		d.f.ApplyBatch(d.logs[from:to])
		from = to
	}
}

func (d *driver) snapshot() {
	s, err := d.f.Snapshot()
	require.NoError(d.t, err, "step %d", d.step)
	b, err := json.Marshal(s)
	require.NoError(d.t, err)
	d.snap, d.snapIdx = b, s.(*manifest).Index
}

// catchUp starts a second node from a copy of this one's files as of a
// random earlier checkpoint (or from nothing), catches it up from a fresh
// snapshot with a fetch that fails midway and is retried, replays the log
// after the snapshot, and requires the same files.
func (d *driver) catchUp() {
	d.snapshot()
	dir := d.t.TempDir()
	if d.r.IntN(2) == 0 {
		copyDir(d.t, d.dir, dir)
	}
	g, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: d.policy, format: d.format, stateInterval: -1, logf: d.t.Logf})
	require.NoError(d.t, err)
	defer func() {
		if g.seg != nil {
			g.seg.Close()
		}
	}()
	g.fetcher = &dirFetcher{src: d.f, failAfter: int64(1 + d.r.IntN(4000))}
	if err := g.Restore(io.NopCloser(bytes.NewReader(d.snap))); err != nil {
		g.fetcher = &dirFetcher{src: d.f}
		require.NoError(d.t, g.Restore(io.NopCloser(bytes.NewReader(d.snap))), "step %d: the resumed catch-up", d.step)
	}
	g.ApplyBatch(d.logs[d.snapIdx:])
	require.Equal(d.t, d.files(d.dir), d.files(dir), "step %d: the caught-up node's files", d.step)
}

// copyDir copies the log files and state.json of src into dst.
func copyDir(t testing.TB, src, dst string) {
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
}

func (d *driver) files(dir string) map[string]string {
	names, err := LogFiles(dir, "app.log")
	require.NoError(d.t, err)
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		require.NoError(d.t, err)
		out[n] = string(b)
	}
	return out
}

// check compares the files with the model's and the checkpoint with the
// files.
func (d *driver) check() {
	d.t.Helper()
	if d.f.failed != nil {
		return
	}
	require.NoError(d.t, d.f.seg.Flush())
	require.Equal(d.t, d.m.want(), d.files(d.dir), "step %d: files", d.step)

	st, ok, err := readState(d.dir)
	require.NoError(d.t, err)
	require.True(d.t, ok)
	// The checkpoint's files hold exactly the lines up to its sequence
	// number: its rotated files (now rotated or retired since) whole, and
	// a prefix of the file its active one became.
	var got []byte
	for _, fs := range st.Rotated {
		b, err := os.ReadFile(filepath.Join(d.dir, fs.Name))
		if errors.Is(err, os.ErrNotExist) {
			b, err = os.ReadFile(filepath.Join(d.dir, store.RetiredName(fs.Name)))
		}
		require.NoError(d.t, err, "step %d: %s", d.step, fs.Name)
		require.Equal(d.t, fs.Size, int64(len(b)), "step %d: %s", d.step, fs.Name)
		kind, _ := fs.Sum()
		h := kind.New()
		h.Write(b)
		require.True(d.t, fs.Matches(h.Sum(nil), int64(len(b))), "step %d: %s: %+v", d.step, fs.Name, fs)
		got = append(got, b...)
	}
	active := filepath.Join(d.dir, "app.log")
	names := store.NewNames("app.log")
	if rotated := filepath.Join(d.dir, names.Segment(st.ActiveFirst)); st.ActiveSize > 0 {
		if _, err := os.Stat(rotated); err == nil {
			active = rotated
		} else if _, err := os.Stat(filepath.Join(d.dir, store.RetiredName(names.Segment(st.ActiveFirst)))); err == nil {
			active = filepath.Join(d.dir, store.RetiredName(names.Segment(st.ActiveFirst)))
		}
	}
	b, err := os.ReadFile(active)
	require.NoError(d.t, err)
	require.GreaterOrEqual(d.t, int64(len(b)), st.ActiveSize, "step %d: the active file is shorter than its checkpoint", d.step)
	got = append(got, b[:st.ActiveSize]...)
	first := st.ActiveFirst
	if len(st.Rotated) > 0 {
		first = st.Rotated[0].First
	}
	require.Equal(d.t, string(d.m.text(first, st.Seq)), string(got), "step %d: the checkpoint (index %d, seq %d) and the bytes", d.step, st.Index, st.Seq)
}

// text is the model's lines first..last.
func (m *model) text(first, last uint64) []byte {
	var out []byte
	for seq := first; seq <= last; seq++ {
		out = append(out, m.all[seq-1]...)
	}
	return out
}
