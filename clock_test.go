package logx

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// logBuilder makes Raft logs for FSM tests: configurations, clock reports
// and batches, numbered in order.
type logBuilder struct {
	logs []*raft.Log
	last uint64 // index of the last log made
	pseq map[uint64]uint64
}

func (b *logBuilder) add(typ raft.LogType, data []byte) *raft.Log {
	b.last++
	l := &raft.Log{Index: b.last, Type: typ, Data: data}
	b.logs = append(b.logs, l)
	return l
}

// take returns the logs made since the last take.
func (b *logBuilder) take() []*raft.Log {
	logs := b.logs
	b.logs = nil
	return logs
}

func (b *logBuilder) voters(ids ...string) {
	var c raft.Configuration
	for _, id := range ids {
		c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	b.add(raft.LogConfiguration, raft.EncodeConfiguration(c))
}

func (b *logBuilder) clock(id string, t time.Time) {
	b.add(raft.LogCommand, appendClock(nil, id, t.UnixNano()))
}

// batch adds a batch of n entries stamped at t from producer prod.
func (b *logBuilder) batch(prod uint64, n int, t time.Time, msg string) *raft.Log {
	if b.pseq == nil {
		b.pseq = map[uint64]uint64{}
	}
	data := wire.AppendHeader(nil, wire.Header{Producer: prod, FirstPSeq: b.pseq[prod] + 1, Count: n})
	for k := 0; k < n; k++ {
		body := appendBodyStart(nil, FormatText, t, LevelInfo, "n1", "", fmt.Sprintf("%s %d", msg, k))
		data = wire.AppendRecord(data, LevelInfo, t.UnixNano(), body)
	}
	b.pseq[prod] += uint64(n)
	return b.add(raft.LogCommand, data)
}

// TestLeaderClockAhead: with MaxAge 24h and hourly rotation, a leader
// whose clock runs 48 hours ahead (its clock reports and its entries'
// times) retires no file early and does not stop rotation: the log clock
// is what a majority of the voters' clocks say, and a line's clock stays
// within clockSlack of it. Before, one such entry retired every rotated
// file and three more hours rotated nothing.
func TestLeaderClockAhead(t *testing.T) {
	dir := t.TempDir()
	f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 1 << 30, Every: time.Hour}, maxFiles: 0, maxAge: 24 * time.Hour})
	var b logBuilder
	b.voters("a", "b", "c")
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ahead := 48 * time.Hour
	// Six honest hours, a line every 10 minutes from two nodes.
	at := start
	for ; at.Before(start.Add(6 * time.Hour)); at = at.Add(10 * time.Minute) {
		b.clock("a", at)
		b.clock("b", at)
		b.clock("c", at.Add(ahead)) // c's clock is ahead from the start
		b.batch(1, 2, at, "honest")
	}
	f.ApplyBatch(b.take())
	rotatedBefore := len(f.seg.State(0).Rotated)
	require.Equal(t, 5, rotatedBefore, "hours 0-4 rotated, hour 5 active")

	// c leads now: its own entries carry its clock, 48h ahead.
	for ; at.Before(start.Add(9 * time.Hour)); at = at.Add(10 * time.Minute) {
		b.clock("c", at.Add(ahead))
		b.batch(3, 1, at.Add(ahead), "from the leader ahead")
		b.clock("a", at)
		b.clock("b", at)
		b.batch(1, 2, at, "honest")
	}
	f.ApplyBatch(b.take())
	require.Zero(t, f.retired.Load(), "nothing is 24h old by a majority's clocks")
	require.Equal(t, rotatedBefore+3, len(f.seg.State(0).Rotated), "hours 5-7 rotated on time")
	require.Equal(t, start.Add(9*time.Hour-10*time.Minute).UnixNano(), f.st.Clock, "the log clock is the honest majority's")
	for _, r := range f.seg.State(0).Rotated {
		require.LessOrEqual(t, r.Newest, f.st.Clock+int64(clockSlack), "%s: no line clock past the slack", r.Name)
	}
	require.NoError(t, f.close())
}

// TestClockOwnerLapse: a voter's clock reports are taken from the
// certificate subject they are bound to; another subject's only once the
// bound one has sent none for ownerLapse by the leader's clock (a renewed
// certificate under another subject, a node replaced at its address). Before,
// a voter whose subject changed was refused for good, and once a majority
// had changed the log clock stopped. Reports without TLS bind nothing. The
// binding and its last report survive a restart and a snapshot.
func TestClockOwnerLapse(t *testing.T) {
	dir := t.TempDir()
	f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
	var b logBuilder
	b.voters("a", "b", "c")
	f.ApplyBatch(b.take())
	subj := func(k byte) []byte { return bytes.Repeat([]byte{k}, identityLen) }
	A, B := subj(0xa), subj(0xb)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	report := func(id string, owner []byte, t, at time.Time) error {
		l := b.add(raft.LogCommand, appendClock(nil, id, t.UnixNano()))
		l.Extensions, l.AppendedAt = owner, at
		res := f.ApplyBatch(b.take())
		return res[0].(applyResult).err
	}
	m := func(d time.Duration) time.Time { return base.Add(d) }

	// a: bound to A; B is refused while A reports, and taken once A has
	// been silent for ownerLapse; then A is refused.
	require.NoError(t, report("a", A, m(0), m(0)))
	require.ErrorContains(t, report("a", B, m(time.Minute), m(time.Minute)), "another certificate")
	require.NoError(t, report("a", A, m(2*time.Minute), m(2*time.Minute)))
	require.Error(t, report("a", B, m(11*time.Minute), m(11*time.Minute)), "A reported 9 minutes ago")
	require.NoError(t, report("a", B, m(12*time.Minute+time.Second), m(12*time.Minute+time.Second)))
	require.Equal(t, m(12*time.Minute+time.Second).UnixNano(), f.st.Clocks["a"])
	require.Error(t, report("a", A, m(13*time.Minute), m(13*time.Minute)), "now bound to B")
	// The reporter's own time does not count: only the leader's.
	require.Error(t, report("a", A, m(48*time.Hour), m(14*time.Minute)))
	// A leader whose clock is behind takes no other subject.
	require.Error(t, report("a", A, m(30*time.Minute), m(-time.Hour)))

	// b: bound without TLS; a certificate's reports are taken at once,
	// and so are reports without one (TLS turned off).
	require.NoError(t, report("b", nil, m(0), m(0)))
	require.NoError(t, report("b", A, m(time.Second), m(time.Second)))
	require.Equal(t, hex.EncodeToString(A), f.st.ClockOwners["b"])
	require.NoError(t, report("b", nil, m(2*time.Second), m(2*time.Second)))

	// c: bound by an entry without the leader's time (an earlier
	// version): the lapse starts with the first timed refusal.
	require.NoError(t, report("c", A, m(0), time.Time{}))
	require.Error(t, report("c", B, m(20*time.Minute), time.Time{}), "no leader's time: refused")
	require.Error(t, report("c", B, m(21*time.Minute), m(21*time.Minute)), "the lapse starts")
	require.Error(t, report("c", B, m(30*time.Minute), m(30*time.Minute)))

	// The binding and the last reports survive a restart and a snapshot.
	require.NoError(t, f.persist())
	require.NoError(t, f.close())
	f = openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
	require.Error(t, report("c", B, m(31*time.Minute-time.Second), m(31*time.Minute-time.Second)), "9:59 after the first timed refusal")
	require.NoError(t, report("c", B, m(31*time.Minute), m(31*time.Minute)))
	snap, err := f.Snapshot()
	require.NoError(t, err)
	man := snap.(*manifest)
	require.Equal(t, f.st.ClockSeen, man.Seen)
	require.Equal(t, map[string]int64{"a": m(12*time.Minute + time.Second).UnixNano(), "b": m(2 * time.Second).UnixNano(), "c": m(31 * time.Minute).UnixNano()}, man.Seen)

	// A voter that leaves takes its last report with it; a last report of
	// a non-voter is damage.
	b.voters("a", "b")
	f.ApplyBatch(b.take())
	require.NotContains(t, f.st.ClockSeen, "c")
	require.ErrorContains(t, checkReplicated(nil, []string{"a"}, nil, nil, map[string]int64{"c": 1}, 0), "not a voter")
	require.NoError(t, f.close())
}

// TestClockSeenReplicated: the leader's time that applyClock measures the
// owners' lapse by (Log.AppendedAt) reaches every node's state machine
// unchanged, through the real transport and raft-wal: every node records
// the same last reports, or their decisions (and so their log clocks and
// files) would part. Each node's snapshot shows its state machine's.
func TestClockSeenReplicated(t *testing.T) {
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) { sm.clockEvery = time.Hour })
	seen := make([]map[string]int64, len(c.nodes))
	require.Eventually(t, func() bool {
		for i, lx := range c.nodes {
			fut := lx.raft.Snapshot()
			if fut.Error() != nil {
				continue // nothing new since the last
			}
			_, rc, err := fut.Open()
			require.NoError(t, err)
			m, err := readManifest(rc, func(*manifest) string { return lx.cfg.File })
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			seen[i] = m.Seen
		}
		return len(seen[0]) == 3 && maps.Equal(seen[0], seen[1]) && maps.Equal(seen[0], seen[2])
	}, 30*time.Second, 100*time.Millisecond, "the nodes' last reports: %v", seen)
	for id, at := range seen[0] {
		require.WithinDuration(t, time.Now(), time.Unix(0, at), time.Minute, id)
	}
}
