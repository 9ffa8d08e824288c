package logx

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// The log clock. Rotation by time (RotateEvery), retention by age (MaxAge)
// and the deduplication window (DedupWindow) need a notion of "now" that is
// the same on every node at the same log position, so it must come from
// the log. A single clock in the log (an entry's time, or the leader's
// time when it appended the entry) is not enough: one node whose clock runs
// hours ahead, the leader's included, could then retire every rotated file
// and stop time rotation until real time catches up.
//
// So every voter reports its own clock to the log every few seconds (a
// clock command, committed like a batch), and the log clock is the time
// that a majority of the voters' latest reports have reached: the
// (n/2+1)-th highest of n voters' reports. One voter ahead cannot move it
// forward and one voter behind cannot hold it back (in a cluster of 2f+1
// voters, f clocks may be wrong either way). It never goes back.
//
// A line's clock, which rotation and retention go by, is its entry's time
// (the caller's clock, which the line shows) held within clockSlack of the
// log clock. Where the clocks agree, hourly files start exactly on the hour
// by the lines' own times; a wrong clock moves rotation and retention by at
// most clockSlack. Until a majority has reported (the first seconds of a
// new cluster) lines have no clock: no time rotation, and files whose lines
// all lack one go by age with the next rotated file that has one under
// apply rules 1 (rules.go); under rules 0 retirement by age stops at the
// first of them (store.Writer.Retire), keeping every file after it
// (README). From rules 1 on, a voter's report counts for clockExpiry of
// log clock (liveClocks).

// Clock command wire form (a Raft log entry's data):
//
//	byte     cmdClock
//	uvarint  length of the reporter's server id (its Addr), then the id
//	varint   the reporter's clock, Unix nanoseconds
const cmdClock byte = 16

// clockSlack bounds how far a line's clock may be from the log clock. It is
// a constant, not a setting, so that every node computes the same.
const clockSlack = time.Minute

// defaultClockEvery is how often a node reports its clock.
const defaultClockEvery = 10 * time.Second

// maxServerID bounds a reporter's id in a clock command.
const maxServerID = 255

// appendClock encodes a clock report.
func appendClock(dst []byte, id string, unixNano int64) []byte {
	dst = append(dst, cmdClock)
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	dst = append(dst, id...)
	return binary.AppendVarint(dst, unixNano)
}

var errBadClock = errors.New("logx: malformed clock report")

// readClock decodes a clock report.
func readClock(b []byte) (id string, unixNano int64, err error) {
	if len(b) < 1 || b[0] != cmdClock {
		return "", 0, errBadClock
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > maxServerID || n > uint64(len(b)-k) {
		return "", 0, fmt.Errorf("%w: bad id length", errBadClock)
	}
	id = string(b[k : k+int(n)])
	b = b[k+int(n):]
	t, k := binary.Varint(b)
	if k <= 0 || k != len(b) || t <= 0 {
		return "", 0, fmt.Errorf("%w: bad time", errBadClock)
	}
	return id, t, nil
}

// checkClockReport is the leader's check of a forwarded clock report: the
// reporter must be a voter, and with mutual TLS the sender's certificate
// must name the reporter's host, as a node dialling the reporter would
// require. cert is nil without TLS.
func (lx *Stream) checkClockReport(data []byte, cert *x509.Certificate) error {
	if lx.cfg.TLS != nil && cert == nil {
		return errors.New("logx: clock report without a certificate")
	}
	id, _, err := readClock(data)
	if err != nil {
		return err
	}
	suf, ok, err := lx.suffrage(id)
	if err != nil {
		return err
	}
	if !ok || suf != raft.Voter {
		return fmt.Errorf("logx: clock report from %q, which is not a voter", id)
	}
	if cert != nil {
		host, _, err := net.SplitHostPort(id)
		if err != nil {
			return fmt.Errorf("logx: clock report from %q: %v", id, err)
		}
		if err := cert.VerifyHostname(host); err != nil {
			return fmt.Errorf("logx: clock report for %q from a certificate that does not name it: %v", id, err)
		}
	}
	return nil
}

// applyClock records a voter's clock report and advances the log clock.
// With mutual TLS the leader stamped the report with the identity of the
// certificate's subject it came with, and a voter's reports are taken only
// from the subject whose report was taken first: another certificate
// holder cannot report for a voter that has reported. The binding holds
// until the voter leaves the configuration (applyConfiguration), so a voter
// whose certificate is renewed under another subject is refused until it
// is removed and added again (docs/guarantees.md). Reports without a
// certificate bind nothing: a voter bound while TLS was off takes the first
// certificate's, and reports without one are taken (TLS turned off); either
// change needs every node restarted, so no two nodes of a cluster decide
// these differently.
func (f *fsm) applyClock(l *raft.Log) applyResult {
	id, t, err := readClock(l.Data)
	if err != nil {
		return applyResult{err: err}
	}
	if !slices.Contains(f.st.Voters, id) {
		return applyResult{err: &refusedError{msg: fmt.Sprintf("clock report from %q, which is not a voter", id)}}
	}
	owner := ownerOf(l.Extensions)
	if o, ok := f.st.ClockOwners[id]; ok && o != owner && o != "" && owner != "" {
		f.clockRefused.Add(1)
		return applyResult{err: &refusedError{msg: fmt.Sprintf("clock report for %q from another certificate than its earlier ones", id)}}
	}
	mapSet(&f.st.Clocks, id, t)
	mapSet(&f.st.ClockOwners, id, owner)
	f.advanceClockWith(id)
	if f.st.Rules >= 1 {
		mapSet(&f.st.ReportedAt, id, f.st.Clock) // it counts from here (liveClocks)
	}
	return applyResult{}
}

// mapSet sets m[k] = v, making *m first if it is nil.
func mapSet[V any](m *map[string]V, k string, v V) {
	if *m == nil {
		*m = map[string]V{}
	}
	(*m)[k] = v
}

// appliedVoters is st.Voters, and the Raft index of the configuration
// entry they come from (0: from a checkpoint or a snapshot).
type appliedVoters struct {
	voters []string
	index  uint64
}

// applyConfiguration records the voters of a Raft configuration entry and
// forgets the clocks of servers that are no longer voters.
func (f *fsm) applyConfiguration(index uint64, data []byte) {
	c := raft.DecodeConfiguration(data)
	var voters []string
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		}
	}
	slices.Sort(voters)
	f.st.Voters = voters
	f.voters.Store(&appliedVoters{voters: voters, index: index})
	gone := func(id string, _ int64) bool { return !slices.Contains(voters, id) }
	maps.DeleteFunc(f.st.Clocks, gone)
	maps.DeleteFunc(f.st.ClockOwners, func(id, _ string) bool { return !slices.Contains(voters, id) })
	maps.DeleteFunc(f.st.ReportedAt, gone)
	f.advanceClock()
}

// quorumClock is the time a majority of the voters' reports have reached,
// or 0 if fewer than a majority have reported or the voters are not known
// (a checkpoint from a release that did not record them: the leader then
// commits its configuration again, see ensureVoters).
func quorumClock(voters []string, clocks map[string]int64) int64 {
	var ts []int64
	for _, v := range voters {
		if t, ok := clocks[v]; ok {
			ts = append(ts, t)
		}
	}
	q := len(voters)/2 + 1
	if len(voters) == 0 || len(ts) < q {
		return 0
	}
	slices.Sort(ts)
	return ts[len(ts)-q]
}

// liveClocks is the voters' clock reports that count: all of them before
// rules 1 (rules.go); from rules 1 on, the one being applied (fresh: its
// voter's id, "" for none) and those applied at most clockExpiry of log
// clock ago, so that a voter down for longer, whose last report was
// ahead, does not make a majority with one more clock ahead. An expired
// report counts as none: it can hold the log clock back (as a stale
// report did before), never move it forward.
func (f *fsm) liveClocks(fresh string) map[string]int64 {
	if f.st.Rules < 1 || f.st.Clock == 0 {
		return f.st.Clocks
	}
	live := make(map[string]int64, len(f.st.Clocks))
	for id, t := range f.st.Clocks {
		if seen, ok := f.st.ReportedAt[id]; id == fresh || ok && seen >= f.st.Clock-int64(clockExpiry) {
			live[id] = t
		}
	}
	return live
}

// reportedAt has every voter's report counted from log clock c on
// (liveClocks): as the rules command is applied, and as the clock becomes
// known.
func (f *fsm) reportedAt(c int64) {
	for id := range f.st.Clocks {
		mapSet(&f.st.ReportedAt, id, c)
	}
}

// advanceClock moves the log clock to the voters' quorum clock if that is
// later, and prunes the deduplication table when it moves.
func (f *fsm) advanceClock() { f.advanceClockWith("") }

// advanceClockWith is advanceClock as voter fresh's report is applied.
func (f *fsm) advanceClockWith(fresh string) {
	c := quorumClock(f.st.Voters, f.liveClocks(fresh))
	if c <= f.st.Clock {
		return
	}
	if f.st.Clock == 0 {
		// Producers seen before the clock was known were seen now, and
		// (rules 1) so were the reports.
		for _, p := range f.st.Producers {
			p.Seen = c
		}
		if f.st.Rules >= 1 {
			f.reportedAt(c)
		}
	}
	f.st.Clock = c
	f.clock.Store(c)
	f.pruneProducers()
}

// subjectIdentity is the identity a certificate gives its clock reports:
// the first 16 bytes of the sha256 of its subject, which a renewed
// certificate keeps.
func subjectIdentity(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	sum := sha256.Sum256(cert.RawSubject)
	return sum[:identityLen]
}

// ensureVoters has the configuration committed again (an AddVoter of the
// leader, which changes nothing) when this node's state machine does not
// know the voters: a checkpoint from a release that did not record them
// (v0.1.0) has none until a configuration entry is applied, and the log
// clock counts only voters. A leader commits it; a follower asks its
// leader to (the control operation "voters"), at most once every 5 s
// (monotonic), until it knows them: an ask can fail, with no leader known
// yet or a slow one, and the leader commits at most once every 10 s. A
// follower upgraded after an upgraded leader had committed it, its own
// checkpoint past that entry, would otherwise never learn them, and its
// log clock, so its rotation by time, retention by age and forgetting of
// producers, would stay behind the others' for good. Called by the
// producer with each clock report.
func (lx *Stream) ensureVoters() {
	if lx.fsm.votersAreKnown() || !lx.ready() {
		return
	}
	if lx.raft.State() == raft.Leader {
		ctx, cancel := context.WithTimeout(lx.closingCtx, lx.cfg.ForwardTimeout)
		defer cancel()
		if err := lx.recommitVoters(ctx); err != nil {
			lx.logf("logx: committing the configuration again (so that the log knows the voters): %v", err)
		}
		return
	}
	if _, ok := onceEvery(&lx.votersAsked, 5*time.Second); ok {
		lx.goFunc(func() {
			ctx, cancel := context.WithTimeout(lx.closingCtx, lx.cfg.ForwardTimeout)
			defer cancel()
			err := lx.control(ctx, controlRequest{Op: "voters"})
			if err == nil || lx.closingCtx.Err() != nil {
				return
			}
			if _, ok := onceEvery(&lx.votersLogged, time.Minute); ok { // an older leader refuses every ask
				lx.logf("logx: asking the leader to commit the configuration again (so that this node's log knows the voters): %v", err)
			}
		})
	}
}

// recommitVoters commits the configuration again, as the leader, unless it
// did less than 10 s ago (a control request may ask for it: a peer cannot
// make it write an entry more often). A try that failed before Raft wrote
// the entry does not count.
func (lx *Stream) recommitVoters(ctx context.Context) error {
	now, ok := onceEvery(&lx.votersCommitted, 10*time.Second) // monotonic
	if !ok {
		return nil
	}
	id := raft.ServerID(lx.cfg.Addr)
	err := lx.raftCall(func() error {
		return awaitFuture(ctx, lx.raft.AddVoter(id, raft.ServerAddress(lx.cfg.Addr), 0, lx.cfg.ForwardTimeout))
	})
	if notWritten(err) { // the next ask may try at once
		lx.votersCommitted.CompareAndSwap(now, 0)
	}
	return err
}

// notWritten reports whether a Raft configuration change failed before
// the leader wrote its entry (ErrLeadershipLost comes after: the entry may
// still commit). ErrRaftShutdown counts, though a future's wait also ends
// with it after the entry went out: the answer only says the next ask may
// try at once.
func notWritten(err error) bool {
	return unproposed(err) || errors.Is(err, raft.ErrRaftShutdown)
}

// unproposed reports whether Raft refused a command before it proposed it,
// so that nothing of it can commit: this node does not lead
// (ErrNotLeader, also before a stepping-down leader dispatches it), it is
// handing its leadership over (ErrLeadershipTransferInProgress: Raft
// refuses every command meanwhile, for up to an ElectionTimeout), or its
// queue stayed full for the whole timeout (ErrEnqueueTimeout). Not
// ErrRaftShutdown: a future's wait ends with it also after its entry went
// out. A batch refused so has not been sent (producer.go, forward.go).
func unproposed(err error) bool {
	for _, e := range []error{raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress, raft.ErrEnqueueTimeout} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// lineClock is the clock rotation and retention use for a line whose entry
// has time unixNano (0: none): the entry's time held within clockSlack of
// the log clock, or 0 while the log clock is unknown.
func (f *fsm) lineClock(unixNano int64) int64 {
	l := f.st.Clock
	if l == 0 {
		return 0
	}
	if unixNano == 0 {
		return l
	}
	return min(max(unixNano, l-int64(clockSlack)), l+int64(clockSlack))
}
