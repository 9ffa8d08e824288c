package logx

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Apply rules: a feature gate in the log. What apply decides (which files
// retire, when the log clock moves) must be the same on every node at the
// same Raft index, so a new version cannot simply decide otherwise: during
// a rolling upgrade, old and new nodes would apply the same entries
// differently and their files would part. A change of that kind waits for
// a rules command instead: the stream's leader commits it once every
// member of the stream (voters and non-voters, each of which must answer:
// one that is down holds it back) says it runs a logx that knows those
// rules, and every node applies the new rules from that entry on. The
// stream records its rules in checkpoints and snapshots; an older logx
// skips the command (nodes that could are not members then), and a node
// asked for rules it does not know (a snapshot or command from a newer
// logx, after a downgrade) stops applying rather than part from the
// others.
//
// Rules 1 (FeatureVersion 6):
//   - a voter's clock report expires clockExpiry of log clock after it
//     was applied (clock.go): a voter down for longer no longer counts
//     with a report that was ahead;
//   - a rotated file without a line clock goes by age with the next
//     rotated file that has one (store.Writer.Retire), where it stopped
//     retirement by age for good.
//
// Rules command wire form: byte cmdRules, then uvarint rules.
const cmdRules byte = 22

// currentRules is the newest apply rules this logx knows.
const currentRules = 1

// rulesFeature is the FeatureVersion that knows rules 1.
const rulesFeature = 6

// clockExpiry is how long, in log clock, a voter's clock report counts
// (rules 1). Voters report every defaultClockEvery, once a minute while
// idle.
const clockExpiry = 10 * time.Minute

func appendRulesCmd(dst []byte, rules int) []byte {
	return binary.AppendUvarint(append(dst, cmdRules), uint64(rules))
}

var errBadRules = errors.New("logx: malformed rules command")

func readRulesCmd(b []byte) (int, error) {
	if len(b) < 2 || b[0] != cmdRules {
		return 0, errBadRules
	}
	v, k := binary.Uvarint(b[1:])
	if k <= 0 || k != len(b)-1 || v == 0 || v > 1<<20 {
		return 0, errBadRules
	}
	return int(v), nil
}

// applyRules applies a rules command: from here on apply decides by the
// newer rules. Rules this logx does not know stop its apply.
func (f *fsm) applyRules(data []byte) applyResult {
	v, err := readRulesCmd(data)
	if err != nil {
		f.logf("logx: skipping rules command: %v", err)
		return applyResult{err: err}
	}
	if err := checkRules(v); err != nil {
		err = fmt.Errorf("logx: the log asks for %w", err)
		f.stopWith(err)
		return applyResult{err: err}
	}
	if v <= f.st.Rules {
		return applyResult{}
	}
	f.st.Rules = v
	f.rules.Store(int32(v))
	f.reportedAt(f.st.Clock) // every report counts from here (liveClocks)
	return applyResult{}
}

// checkRules refuses rules a checkpoint or snapshot names that this logx
// does not know.
func checkRules(rules int) error {
	if rules > currentRules {
		return fmt.Errorf("apply rules %d, and this logx knows rules up to %d (FeatureVersion %d): run a newer logx", rules, currentRules, FeatureVersion)
	}
	return nil
}

// laterRules refuses a snapshot past this node's log whose rules are
// older than the log's here: rules only grow along the log, so its maker
// decided by older rules (it went back to an earlier logx).
func (f *fsm) laterRules(m *manifest) error {
	if m.Rules < f.st.Rules && m.Index > f.st.Index {
		return fmt.Errorf("logx: snapshot at index %d has apply rules %d, where this node's log at index %d has %d (was its maker started with an earlier logx?)", m.Index, m.Rules, f.st.Index, f.st.Rules)
	}
	return nil
}

// rulesNow is the stream's apply rules, from any goroutine.
func (f *fsm) rulesNow() int { return int(f.rules.Load()) }

// lacksRules reports whether this node leads the stream and its rules are
// older than this logx knows.
func (lx *Stream) lacksRules() bool {
	return lx.fsm.rulesNow() < currentRules && lx.raft.State() == raft.Leader
}

// rulesDue reports whether a stream this node leads has older rules than
// this logx knows, and a try is due (node.tend then runs adoptRules): the
// wait after the last failed try is over, or the stream's membership or
// this node's role changed since (confGen: a member that held the rules
// back removed, or a stream this node leads now), which ends the wait.
func (n *node) rulesDue() bool {
	if n.seams.featureVersion() < rulesFeature {
		return false
	}
	due := n.rulesRetry.due()
	return slices.ContainsFunc(n.list(), func(s *Stream) bool {
		if !s.lacksRules() {
			return false
		}
		held, ok := n.rulesHeld[s]
		return due || !ok || held != s.confGen.Load()
	})
}

// adoptRules commits the rules this logx knows on every stream this node
// leads whose rules are older, once every member of the stream says it
// knows them (see above): it asks each member of those streams once, all
// at once, each within ForwardTimeout, then commits stream by stream
// (commitRules). It runs on a goroutine of its own, one call at a time,
// and ends with Close (stopCtx). While a member is older, down or slow to
// answer, tries come every balance round at first and less often after a
// while, up to once every rulesRetryMax.
func (n *node) adoptRules() {
	defer n.rulesTries.Add(1)
	type pending struct {
		s       *Stream
		servers []string
		gen     uint64 // the stream's confGen before the servers were read
	}
	var todo []pending
	ask := map[string]error{}
	for _, s := range n.list() {
		if !s.lacksRules() {
			continue
		}
		p := pending{s: s, gen: s.confGen.Load()}
		f := s.raft.GetConfiguration()
		if f.Error() != nil {
			continue // shut down (removed, deleted)
		}
		for _, sv := range f.Configuration().Servers {
			if a := string(sv.Address); a != n.cfg.Addr {
				p.servers = append(p.servers, a)
				ask[a] = nil
			}
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		n.rulesRetry.reset()
		n.rulesHeld = nil
		return
	}
	addrs := slices.Collect(maps.Keys(ask))
	ctx, cancel := context.WithTimeout(n.stopCtx, n.cfg.ForwardTimeout)
	versions, errs := n.list()[0].askVersions(ctx, addrs, nil) // the node's version, whatever its streams
	cancel()
	for i, a := range addrs {
		switch {
		case errs[i] != nil:
			ask[a] = fmt.Errorf("%s did not say which version it runs: %w", a, errs[i])
		case versions[i] < rulesFeature:
			ask[a] = fmt.Errorf("%s runs FeatureVersion %d", a, versions[i])
		}
	}
	var why []string // once per member, and per stream that could not commit
	for _, err := range ask {
		if err != nil {
			why = append(why, err.Error())
		}
	}
	waiting := 0
	held := map[*Stream]uint64{}
	for _, p := range todo {
		if n.stopCtx.Err() != nil {
			return
		}
		ok := true
		for _, a := range p.servers {
			ok = ok && ask[a] == nil
		}
		if ok {
			if err := p.s.commitRules(n.stopCtx, p.gen, p.servers); err != nil {
				why = append(why, fmt.Sprintf("stream %q: %v", p.s.name, err))
				ok = false
			}
		}
		if !ok {
			waiting++
			held[p.s] = p.s.confGen.Load() // after commitRules's own release of the slot
		}
	}
	if waiting == 0 {
		n.rulesRetry.reset()
		n.rulesHeld = nil
		return
	}
	n.rulesHeld = held
	wait, first := n.rulesRetry.failed(balanceEvery*n.cfg.ElectionTimeout, rulesPatience, rulesRetryMax)
	if n.seams.rulesWait > 0 {
		wait, n.rulesRetry.next = n.seams.rulesWait, monoNanos()+int64(n.seams.rulesWait)
	}
	if first || wait == rulesRetryMax {
		slices.Sort(why)
		n.list()[0].logf("logx: %d streams keep apply rules below %d, which wait for every member to run FeatureVersion %d or later and to answer; tried again in %v: %s",
			waiting, currentRules, rulesFeature, wait, strings.Join(why, "; "))
	}
}

const (
	// rulesPatience is how long adoptRules tries every balance round
	// before it backs off.
	rulesPatience = 10 * time.Minute
	// rulesRetryMax bounds the wait between tries.
	rulesRetryMax = 10 * time.Minute
)

// commitRules commits this logx's rules on this stream, its leader, if its
// configuration is still the one whose members (other than this node)
// were asked, and each said it knows them: no membership change ended and
// this node's role did not change since gen was read (confGen; a member
// removed and added again at its address, now running an older logx,
// would otherwise pass), and every member is one asked (a change still
// under way, or one that ended as its future timed out). It holds the
// stream's membership slot from that check to the commit, so
// that no member is added in between (AddNode adds a non-voter holding it
// too, and checks the stream's rules under it: joinConflict); the asks
// were made without it, so that a RemoveNode of a member that does not
// answer is not kept waiting for them.
func (lx *Stream) commitRules(stop context.Context, gen uint64, asked []string) error {
	ctx, cancel := context.WithTimeout(stop, lx.cfg.ForwardTimeout)
	defer cancel()
	release, err := lx.confChange(ctx)
	if err != nil {
		return err
	}
	defer release()
	if lx.confGen.Load() != gen {
		return errors.New("the membership or the leadership changed while the members were asked")
	}
	f := lx.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, sv := range f.Configuration().Servers {
		if a := string(sv.Address); a != lx.cfg.Addr && !slices.Contains(asked, a) {
			return fmt.Errorf("member %s was not asked", a)
		}
	}
	_, _, err = lx.applyLocalUntil(ctx, appendRulesCmd(nil, currentRules), nil)
	return err
}
