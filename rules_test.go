package logx

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// rules adds a rules command.
func (b *logBuilder) rules(v int) *raft.Log { return b.add(raft.LogCommand, appendRulesCmd(nil, v)) }

// waitRules waits until every running node's streams have taken the
// apply rules this logx knows.
func (c *testCluster) waitRules() {
	c.t.Helper()
	require.True(c.t, waitFor(30*time.Second, func() bool {
		for _, lx := range c.nodes {
			if lx == nil {
				continue
			}
			for _, name := range lx.Streams() {
				s, err := lx.Stream(name)
				if err != nil || s.fsm.rulesNow() != currentRules {
					return false
				}
			}
		}
		return true
	}), "apply rules %d not taken everywhere", currentRules)
}

// TestClockReportExpiry: from rules 1 on, a voter's clock report counts for
// clockExpiry of log clock. Voter a reports 5 hours ahead, then goes down;
// 20 minutes later voter b is 5 hours ahead for one report. Under rules 0
// (a log without a rules command) a's stale report and b's make a majority
// of three, and the log clock jumps 5 hours; under rules 1 a's report has
// expired, and the log clock stays the honest c's. When a comes back its
// reports count again. The same log, applied again after a restart (from
// the checkpoint) or from a snapshot, decides the same.
func TestClockReportExpiry(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ahead := 5 * time.Hour
	build := func(withRules bool) (*logBuilder, []*raft.Log, []*raft.Log) {
		var b logBuilder
		b.voters("a", "b", "c")
		if withRules {
			b.rules(1)
		}
		at := start
		for ; at.Before(start.Add(10 * time.Minute)); at = at.Add(time.Minute) {
			b.clock("a", at.Add(ahead)) // a is ahead, one wrong clock of three
			b.clock("b", at)
			b.clock("c", at)
		}
		// a is down; b and c report for 20 minutes, more than clockExpiry.
		for ; at.Before(start.Add(30 * time.Minute)); at = at.Add(time.Minute) {
			b.clock("b", at)
			b.clock("c", at)
		}
		b.batch(1, 1, at, "before")
		first := b.take()
		b.clock("b", at.Add(ahead)) // b ahead, for one report
		b.clock("c", at)
		b.batch(1, 1, at, "after")
		return &b, first, b.take()
	}
	honest := start.Add(30 * time.Minute).UnixNano()

	t.Run("rules 0", func(t *testing.T) {
		f := openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
		_, first, second := build(false)
		f.ApplyBatch(first)
		f.ApplyBatch(second)
		require.Zero(t, f.st.Rules)
		require.Empty(t, f.st.ReportedAt, "nothing recorded before rules 1")
		require.Equal(t, start.Add(9*time.Minute+ahead).UnixNano(), f.st.Clock, "the earlier rule: a's stale report and b's made a majority")
		require.NoError(t, f.close())
	})

	t.Run("rules 1", func(t *testing.T) {
		dir := t.TempDir()
		f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
		b, first, second := build(true)
		f.ApplyBatch(first)
		require.Equal(t, 1, f.st.Rules)
		require.Equal(t, 1, f.rulesNow())
		require.Equal(t, start.Add(8*time.Minute).UnixNano(), f.st.ReportedAt["a"], "seen at the log clock a's last report found")
		require.NoError(t, f.close())

		// After a restart, from the checkpoint.
		f = openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
		require.Equal(t, 1, f.rulesNow(), "the rules survive a restart")
		f.ApplyBatch(second)
		require.Equal(t, honest, f.st.Clock, "a's report expired: b alone ahead moves nothing")

		// a comes back, honest: its reports count again, b's wrong one
		// stays outvoted.
		later := start.Add(31 * time.Minute)
		b.clock("a", later)
		b.clock("c", later)
		f.ApplyBatch(b.take())
		require.Equal(t, later.UnixNano(), f.st.Clock)

		// A snapshot carries the rules and when each report was seen.
		m := manifestOf(t, f)
		require.Equal(t, 1, m.Rules)
		require.Equal(t, f.st.ReportedAt, m.ReportedAt)
		require.NoError(t, f.close())
	})
}

// TestRulesStamped: reports applied before the rules command count from
// the command on (clockExpiry of log clock later they expire), and a log
// whose rules came before its clock was known stamps the reports when it
// becomes known.
func TestRulesStamped(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f := openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
	var b logBuilder
	b.voters("a", "b", "c")
	b.rules(1)
	b.clock("a", start.Add(time.Hour)) // before the clock is known
	f.ApplyBatch(b.take())
	require.Zero(t, f.st.Clock)
	b.clock("b", start)
	f.ApplyBatch(b.take())
	require.Equal(t, start.UnixNano(), f.st.Clock)
	require.Equal(t, map[string]int64{"a": start.UnixNano(), "b": start.UnixNano()}, f.st.ReportedAt)
	require.NoError(t, f.close())

	f = openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
	b = logBuilder{}
	b.voters("a", "b", "c")
	b.clock("a", start.Add(time.Hour))
	b.clock("b", start)
	b.clock("c", start)
	b.rules(1)
	f.ApplyBatch(b.take())
	require.Equal(t, map[string]int64{"a": start.UnixNano(), "b": start.UnixNano(), "c": start.UnixNano()}, f.st.ReportedAt)
	b.clock("c", start.Add(clockExpiry))
	b.clock("b", start.Add(clockExpiry+time.Minute))
	f.ApplyBatch(b.take())
	require.Equal(t, start.Add(clockExpiry+time.Minute).UnixNano(), f.st.Clock, "a's report, seen at start, still counts")
	b.clock("b", start.Add(time.Hour)) // a's report has expired now
	f.ApplyBatch(b.take())
	require.Equal(t, start.Add(clockExpiry+time.Minute).UnixNano(), f.st.Clock, "a's expired report and b's make no majority")
	require.NoError(t, f.close())

	// A report counts as it is applied, even where its voter's last one
	// had expired: a, back after 20 minutes, outvotes c, a minute behind,
	// with its first report.
	f = openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
	b = logBuilder{}
	b.voters("a", "b", "c")
	b.rules(1)
	at := start
	b.clock("a", at)
	for ; at.Before(start.Add(20 * time.Minute)); at = at.Add(time.Minute) {
		b.clock("b", at)
		b.clock("c", at.Add(-time.Minute))
	}
	f.ApplyBatch(b.take())
	require.Equal(t, at.Add(-2*time.Minute).UnixNano(), f.st.Clock, "c's clock, b's and c's the only reports that count")
	b.clock("a", at)
	f.ApplyBatch(b.take())
	require.Equal(t, at.Add(-time.Minute).UnixNano(), f.st.Clock, "a's first report back counts: the clock is b's")
	require.Equal(t, f.st.Clock, f.st.ReportedAt["a"], "stamped with the clock it moved")
	require.NoError(t, f.close())
}

// TestRulesUnknown: rules this logx does not know stop its apply (it
// would part from the nodes that know them), and a checkpoint or snapshot
// that names them is refused; a malformed command is skipped.
func TestRulesUnknown(t *testing.T) {
	f := openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}})
	var b logBuilder
	b.voters("a")
	b.add(raft.LogCommand, []byte{cmdRules})
	b.rules(currentRules + 1)
	b.batch(1, 1, time.Now(), "after")
	res := f.ApplyBatch(b.take())
	require.ErrorIs(t, res[1].(applyResult).err, errBadRules)
	require.ErrorContains(t, res[2].(applyResult).err, "knows rules up to")
	require.Error(t, res[3].(applyResult).err, "apply stopped")
	require.Zero(t, f.st.Seq, "nothing written")
	require.NoError(t, f.close())

	// With a checkpoint after every batch: the lines before the command
	// stay, and apply does not retry (a checkpoint after the stop was
	// refused, the refusal taken for a write error, and the redo cut the
	// files back to the last checkpoint, again and again).
	dir := t.TempDir()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}}, format: FormatText, stateInterval: 0, logf: t.Logf})
	require.NoError(t, err)
	b = logBuilder{}
	b.voters("a")
	b.batch(1, 3, time.Now(), "checkpointed")
	f.ApplyBatch(b.take())
	b.batch(1, 3, time.Now(), "not checkpointed")
	b.rules(currentRules + 1)
	b.batch(1, 3, time.Now(), "after")
	done := make(chan []any, 1)
	go func() { done <- f.ApplyBatch(b.take()) }()
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ApplyBatch retries for good: the refused checkpoint taken for a write error")
	}
	require.NoError(t, res[0].(applyResult).err)
	require.ErrorContains(t, res[1].(applyResult).err, "knows rules up to")
	require.Error(t, res[2].(applyResult).err)
	require.Equal(t, uint64(6), f.st.Seq)
	data, err := os.ReadFile(filepath.Join(dir, "app.log"))
	require.NoError(t, err)
	require.Equal(t, 6, bytes.Count(data, []byte("\n")), "the lines before the command stay: %s", data)
	require.NoError(t, f.close())

	// A checkpoint naming them: refused, not as corrupt (a newer logx's).
	st, ok, err := readState(dir)
	require.NoError(t, err)
	require.True(t, ok)
	st.Rules = currentRules + 1
	require.NoError(t, writeState(dir, &st, &rotatedList{}))
	_, err = newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 1 << 30}}, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.ErrorContains(t, err, "knows rules up to")
	require.NotErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, checkReplicated(nil, nil, nil, nil, nil, 0, -1), "apply rules -1")
	require.ErrorContains(t, checkReplicated(nil, []string{"a"}, map[string]int64{"a": 5}, nil, map[string]int64{"a": 6}, 5, 1), "seen at")
	require.ErrorContains(t, checkReplicated(nil, []string{"a"}, nil, nil, map[string]int64{"a": 1}, 5, 1), "seen at")
	require.NoError(t, checkReplicated(nil, []string{"a"}, map[string]int64{"a": 5}, nil, map[string]int64{"a": 5}, 5, 1))
}

// TestRulesAdopted: a stream's leader commits rules 1 only once every
// member runs a logx that knows them: while one member reports
// FeatureVersion 5, every stream keeps rules 0 on every node; once it runs
// this version, every stream takes rules 1 on every node, at the same
// entry, and the files stay identical. A node older than the stream's
// rules is then refused as a member.
func TestRulesAdopted(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, olderThird(nil))
	c.waitReady()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: "s"}))
	rules := func(i int) (out []int) {
		for _, name := range []string{DefaultStream, "s"} {
			r := -1 // not open (yet)
			if s, err := c.nodes[i].Stream(name); err == nil {
				r = s.Stats().Rules
			}
			out = append(out, r)
		}
		return out
	}
	tries := func() (n uint64) {
		for _, lx := range c.nodes {
			n += lx.node.rulesTries.Load()
		}
		return n
	}
	require.True(t, waitFor(30*time.Second, func() bool {
		for i := range c.nodes {
			if slices.Contains(rules(i), -1) {
				return false
			}
		}
		return true
	}), "every node opens the stream")
	require.True(t, waitFor(30*time.Second, func() bool { return tries() >= 2 }), "the leaders tried")
	c.logAppend("before", 20)
	c.flushAll()
	c.waitSameSeq(20)
	for i := range c.nodes {
		require.Equal(t, []int{0, 0}, rules(i), "node %d: a member does not know rules 1", i+1)
	}

	c.stop(2)
	c.seams[2].version = 0 // upgraded
	c.start(2)
	c.waitReady()
	require.True(t, waitFor(60*time.Second, func() bool {
		for i := range c.nodes {
			if r := rules(i); r[0] != 1 || r[1] != 1 {
				return false
			}
		}
		return true
	}), "every stream on every node takes rules 1")
	c.logAppend("after", 20)
	c.flushAll()
	c.waitSameSeq(40)
	requireIdentical(t, c.dirs(), "app.log")

	c.seams[0].version = rulesFeature - 1 // addJoiner copies node 1's seams
	n := c.addJoiner()
	c.seams[0].version = 0
	err := c.nodes[0].AddNode(ctx, c.cfgs[n].Addr)
	require.ErrorContains(t, err, "without apply rules 1")
	require.Len(t, members(t, c.nodes[0]), 3)
}

// TestRulesRetireUnclocked: under rules 1, rotated files whose lines came
// before the log clock was known go by age with the next file that has a
// clock; under rules 0 the first of them stops retirement by age.
func TestRulesRetireUnclocked(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	retired := func(withRules bool) (left []store.File) {
		f := openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 2048}, maxAge: 3 * time.Hour})
		var b logBuilder
		b.voters("a", "b", "c")
		if withRules {
			b.rules(1)
		}
		for range 4 {
			b.batch(1, 20, start, "no clock yet")
		}
		b.clock("a", start)
		b.clock("b", start)
		for range 4 {
			b.batch(1, 20, start, "at the start")
		}
		b.clock("a", start.Add(5*time.Hour))
		b.clock("b", start.Add(5*time.Hour))
		b.batch(1, 20, start.Add(5*time.Hour), "five hours later")
		b.batch(1, 20, start.Add(5*time.Hour), "five hours later")
		f.ApplyBatch(b.take())
		left = f.seg.State(0).Rotated
		require.NoError(t, f.close())
		return left
	}
	old := retired(false)
	require.Greater(t, len(old), 4)
	require.Zero(t, old[0].Newest, "rules 0: the unclocked files stay, and every file after them")
	now := retired(true)
	require.NotEmpty(t, now, "the files of five hours later stay")
	for _, r := range now {
		require.Greater(t, r.Newest, start.Add(2*time.Hour).UnixNano(), "rules 1: %s, 3 hours old, went", r.Name)
	}
	require.Less(t, len(now), len(old))
}

// TestRulesCatchUp: a node that catches up from a snapshot taken under
// rules 1 takes the rules and when each report was applied, and then
// decides as the snapshot's maker does: the same log clock (a voter's
// report expiring) and the same bytes. A snapshot with older rules than
// the node's own log, at a later index, is refused: rules only grow along
// the log, so its maker went back to an earlier logx.
func TestRulesCatchUp(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var b logBuilder
	b.voters("a", "b", "c")
	b.rules(1)
	at := start
	for ; at.Before(start.Add(5 * time.Minute)); at = at.Add(time.Minute) {
		b.clock("a", at.Add(time.Hour)) // a is ahead, then down
		b.clock("b", at)
		b.clock("c", at)
		b.batch(1, 5, at, "first")
	}
	head := b.take()
	for ; at.Before(start.Add(20 * time.Minute)); at = at.Add(time.Minute) {
		b.clock("b", at)
		b.clock("c", at)
		b.batch(1, 5, at, "then")
	}
	for ; at.Before(start.Add(25 * time.Minute)); at = at.Add(time.Minute) {
		b.clock("b", at.Add(time.Hour)) // b ahead, once a's report has expired
		b.clock("c", at)
		b.batch(1, 5, at, "later")
	}
	tail := b.take()

	src, m := sourceFSM(t, head)
	require.Equal(t, 1, m.Rules)
	require.NotEmpty(t, m.ReportedAt)
	dst := openTestFSM(t, t.TempDir())
	dst.fetcher = &dirFetcher{src: src}
	require.NoError(t, restoreFrom(t, dst, m))
	require.Equal(t, 1, dst.rulesNow())
	require.Equal(t, src.st.ReportedAt, dst.st.ReportedAt)
	src.ApplyBatch(tail)
	dst.ApplyBatch(tail)
	require.Equal(t, src.st.Clock, dst.st.Clock)
	require.Less(t, src.st.Clock, start.Add(time.Hour).UnixNano(), "a's stale report and b's made no majority")
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dst.dir, "app.log"))
	require.NoError(t, dst.close())

	// A node under rules 1 refuses a later snapshot under rules 0.
	var old logBuilder
	old.voters("a", "b", "c")
	for range 30 {
		old.batch(1, 5, start, "rules 0")
	}
	src0, m0 := sourceFSM(t, old.take())
	ahead := openTestFSM(t, t.TempDir())
	var r logBuilder
	r.voters("a", "b", "c")
	r.rules(1)
	ahead.ApplyBatch(r.take())
	ahead.fetcher = &dirFetcher{src: src0}
	require.Greater(t, m0.Index, ahead.st.Index)
	require.ErrorContains(t, restoreFrom(t, ahead, m0), "has apply rules 0")
	require.NoError(t, ahead.close())
}

// TestRulesBeforeVoter: apply rules committed while an older node added as
// a non-voter catches up (here by hand, as a leader would once every other
// member knew them) keep it from becoming a voter: AddNode checks again
// under the membership slot, and takes it out.
func TestRulesBeforeVoter(t *testing.T) {
	t.Parallel()
	var leader atomic.Pointer[Logx]
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) {
		sm.version = rulesFeature - 1 // no rules yet: the joiner may join
		sm.beforeVoter = func(string) {
			if _, _, err := leader.Load().defaultStream.applyLocal(appendRulesCmd(nil, 1), nil); err != nil {
				t.Errorf("committing rules 1: %v", err)
			}
		}
	})
	c.waitReady()
	c.logAppend("before", 10)
	c.flushAll()
	lead := c.waitLeader()
	leader.Store(c.nodes[lead])
	n := c.addJoiner() // the same seams: an older node
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err := c.nodes[lead].AddNode(ctx, c.cfgs[n].Addr)
	require.ErrorContains(t, err, "without apply rules 1")
	require.Len(t, members(t, c.nodes[lead]), 3, "taken out")
}

// TestCommitRulesRechecks: under the membership slot, commitRules refuses
// when a member was not asked, and when a membership change ended or this
// node's role changed since the members were read (a member removed and
// added again at its address would pass a comparison of addresses); with
// neither, it commits, and every node takes the rules.
func TestCommitRulesRechecks(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 4, func(_ *Config, sm *seams) {
		sm.version = rulesFeature - 1 // no node commits the rules by itself
	})
	c.waitReady()
	lead := c.waitLeader()
	s := c.nodes[lead].defaultStream
	others := func() []string {
		var out []string
		for a := range members(t, c.nodes[lead]) {
			if a != c.cfgs[lead].Addr {
				out = append(out, a)
			}
		}
		return out
	}
	ctx := t.Context()

	asked := others()
	err := s.commitRules(ctx, s.confGen.Load(), asked[1:])
	require.ErrorContains(t, err, fmt.Sprintf("member %s was not asked", asked[0]))

	gen := s.confGen.Load()
	gone := (lead + 1) % len(c.nodes)
	require.NoError(t, c.nodes[lead].RemoveNode(ctx, c.cfgs[gone].Addr))
	require.ErrorContains(t, s.commitRules(ctx, gen, others()), "the membership or the leadership changed")

	gen = s.confGen.Load()
	require.NoError(t, s.transferLeadership())
	require.True(t, waitFor(10*time.Second, func() bool { return s.confGen.Load() != gen }), "a role change counts")
	lead = c.waitLeader()
	s = c.nodes[lead].defaultStream

	require.NoError(t, s.commitRules(ctx, s.confGen.Load(), others()))
	require.True(t, waitFor(10*time.Second, func() bool {
		for i, lx := range c.nodes {
			if i != gone && lx.fsm.rulesNow() != currentRules {
				return false
			}
		}
		return true
	}), "every member took the rules")
}

// TestRulesRetryOnChange: after a failed try, adoptRules waits (here an
// hour), but a change of the stream's membership ends the wait: once the
// older member that held the rules back is removed, the leader adopts
// them at the next balance round.
func TestRulesRetryOnChange(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, olderThird(func(sm *seams) { sm.rulesWait = time.Hour }))
	c.waitReady()
	lead := c.waitLeader()
	if lead == 2 { // the older node leads: it does not try
		require.NoError(t, c.nodes[2].transferLeadership())
		lead = c.waitLeader()
	}
	require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[lead].node.rulesTries.Load() >= 1 }), "the leader tried")
	require.Equal(t, 0, c.nodes[lead].Stats().Rules, "a member is older")

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[lead].RemoveNode(ctx, c.cfgs[2].Addr))
	require.True(t, waitFor(30*time.Second, func() bool {
		return c.nodes[0].Stats().Rules == currentRules && c.nodes[1].Stats().Rules == currentRules
	}), "the rules adopted once the older member is gone, within the hour's wait")
}

// olderThird is a cluster setup whose third node runs a logx without the
// apply rules; also, if not nil, sets more of every node's hooks.
func olderThird(also func(*seams)) func(*Config, *seams) {
	k := 0
	return func(_ *Config, sm *seams) {
		if k == 2 {
			sm.version = rulesFeature - 1
		}
		if also != nil {
			also(sm)
		}
		k++
	}
}
