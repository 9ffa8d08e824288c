package logx

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

// TestClockOwnerBinding: a voter's clock reports are taken only from the
// certificate subject they were first taken from, until the voter leaves
// the configuration; a report from another subject is refused (and
// counted: Stats.ClockReportsRefused), whatever the time. Reports without a
// certificate bind nothing: a voter bound while TLS was off takes the first
// certificate at once, and reports without one are taken (TLS turned off).
func TestClockOwnerBinding(t *testing.T) {
	f := openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
	var b logBuilder
	b.voters("a", "b", "c")
	f.ApplyBatch(b.take())
	subj := func(k byte) []byte { return bytes.Repeat([]byte{k}, identityLen) }
	A, B := subj(0xa), subj(0xb)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	report := func(id string, owner []byte, t time.Time) error {
		l := b.add(raft.LogCommand, appendClock(nil, id, t.UnixNano()))
		l.Extensions, l.AppendedAt = owner, t
		return f.ApplyBatch(b.take())[0].(applyResult).err
	}
	require.NoError(t, report("a", A, base))
	require.ErrorContains(t, report("a", B, base.Add(time.Minute)), "another certificate")
	require.ErrorContains(t, report("a", B, base.Add(48*time.Hour)), "another certificate", "however long A is silent")
	require.NoError(t, report("a", A, base.Add(49*time.Hour)))
	require.Equal(t, uint64(2), f.clockRefused.Load())

	// Bound without TLS: the first certificate takes it; reports without
	// one are taken.
	require.NoError(t, report("b", nil, base))
	require.NoError(t, report("b", A, base.Add(time.Second)))
	require.Equal(t, hex.EncodeToString(A), f.st.ClockOwners["b"])
	require.ErrorContains(t, report("b", B, base.Add(2*time.Second)), "another certificate")
	require.NoError(t, report("b", nil, base.Add(3*time.Second)))

	// A voter that leaves takes its binding with it: added again, it
	// binds anew.
	b.voters("a", "c")
	f.ApplyBatch(b.take())
	require.NotContains(t, f.st.ClockOwners, "b")
	b.voters("a", "b", "c")
	f.ApplyBatch(b.take())
	require.NoError(t, report("b", B, base.Add(time.Hour)))
	require.NoError(t, f.close())
}

// TestFollowerLearnsVoters: a follower whose checkpoint does not know the
// voters and is past every configuration entry (a v0.1.0 checkpoint, on a
// node upgraded after an upgraded leader had committed the configuration
// again) asks its leader to commit it again, until it learns them, and
// its log clock moves again: it stood still, and with it the node's
// rotation by time, retention by age and forgetting of producers.
func TestFollowerLearnsVoters(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) { sm.clockEvery = 100 * time.Millisecond })
	c.logAppend("before", 5)
	require.Equal(t, uint64(15), c.waitSameSeq(15))
	i := (c.leaderIndex() + 1) % 3
	c.stop(i)
	path := filepath.Join(c.cfgs[i].Dir, stateFile)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var st map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &st))
	require.Contains(t, st, "voters")
	for _, k := range []string{"voters", "clocks", "clock_owners", "reported_at", "clock"} { // none in v0.1.0's
		delete(st, k)
	}
	b, err = json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))

	// Every node committed the configuration again 5 s ago, as far as it
	// knows, so whichever leads declines to for 5 s more: the follower's
	// first ask commits nothing and it must ask again.
	c.waitLeader()
	for _, n := range c.nodes {
		if n != nil {
			n.votersCommitted.Store(monoNanos() - int64(5*time.Second))
		}
	}
	c.start(i)
	lx := c.nodes[i]
	require.True(t, waitFor(30*time.Second, lx.fsm.votersAreKnown), "the follower never learned the voters")
	// The cluster may be idle by now (a clock report a minute): an entry
	// makes every node report at once.
	clock := lx.fsm.clock.Load()
	c.logAppend("after", 5)
	require.True(t, waitFor(20*time.Second, func() bool { return lx.fsm.clock.Load() > clock }), "the follower's log clock stands still")
	require.Equal(t, uint64(30), c.waitSameSeq(30))
	requireIdentical(t, c.dirs(), "app.log")

	// A try that fails before Raft writes the entry leaves the next one
	// free to commit at once.
	stopped := c.nodes[i]
	c.stop(i)
	stopped.votersCommitted.Store(0)
	require.ErrorIs(t, stopped.recommitVoters(context.Background()), raft.ErrRaftShutdown)
	require.Zero(t, stopped.votersCommitted.Load())
}
