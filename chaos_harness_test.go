package logx

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// The fault-injection harness: node processes (proc_test.go) behind a fault
// proxy (faultproxy_test.go), writers on every node logging with Append at
// a steady rate, and faults injected one after another at random moments
// from a seeded RNG. At the end the harness heals everything, stops the
// writers, closes the nodes and checks that every acknowledged entry is in
// every node's files exactly once, at the sequence number Append returned,
// and that the nodes' files are byte-identical. It prints one summary line.
//
// Membership changes are faults too: "add" starts a new node in a spare
// slot (the fault net has two more slots than the cluster has nodes) that
// joins and asks to be added, and "remove" removes a member, the leader or
// a follower, by RemoveNode on another member, then stops it. The cluster
// keeps between n and n+2 members. A removed node's acknowledged entries
// must be on the members like any others; its own files, checked at the
// end too, must be a prefix of theirs. A slot a removed node left can take
// a later new node, with a fresh Dir.
//
// Clocks are faults too: "clock-skew" moves one node's clock (the leader's
// about half the time) hours ahead or behind for a few seconds (the node
// process's clock hook, proc_test.go), then back. The nodes rotate by time
// every chaosRotateEvery and keep files for chaosMaxAge, far longer than a
// run, and report their clocks every chaosClockEvery, so the log clock
// (clock.go) moves within the run. At the end the harness checks what the
// log clock promises: no file was retired; every line clock the files
// record (state.json), and the log clock, lies within the run's real time,
// give or take clockSlack; and rotation by time went on during every skew
// (see check). The nodes all run on this machine, so the harness's clock
// is the true time.
//
// TestChaosShort runs in the default suite; TestChaosLong (chaos_test.go,
// build tag chaos) runs 3 and 5 nodes for longer:
//
//	go test -tags chaos -run ChaosLong -chaos.duration 5m -timeout 30m .
//	go test -run ChaosShort -chaos.seed 1234 -v .   # replay a seed
//	go test -run ChaosShort -chaos.kinds add,lose-disks -v .   # only these faults

var (
	chaosSeed     = flag.Int64("chaos.seed", 0, "seed of the chaos tests' fault schedule (default: time-based)")
	chaosDuration = flag.Duration("chaos.duration", 0, "how long a chaos test injects faults (default: 15s short, 2m long)")
	chaosFaults   = flag.Int("chaos.faults", 0, "the most faults a chaos test injects (default: 6 short, no limit long)")
	chaosOnly     = flag.String("chaos.kinds", "", "comma-separated fault kinds a chaos test draws from (default: every kind)")
)

// chaosTagged is set when the long variant is built (tag chaos).
var chaosTagged bool

// The fault kinds, in the order of the summary line. A new kind is a name
// here and a case in (*chaos).inject.
var chaosKinds = []string{
	"kill-follower",      // SIGKILL a follower, restart it on its Dir
	"kill-leader",        // SIGKILL the leader, restart it on its Dir
	"pause",              // SIGSTOP a node longer than the election timeout, then SIGCONT
	"partition-follower", // cut a follower off from every other node, then heal
	"partition-leader",   // cut the leader off from every other node, then heal
	"wipe",               // SIGKILL a node, delete its Dir, restart it: it catches up from scratch
	"add",                // start a new node in a spare slot; it joins, catches up and votes
	"remove",             // RemoveNode a member (leader or follower) from another member, stop it
	"clock-skew",         // move a node's clock (the leader's or a follower's) ±1..48h for a while, then back
	"rot",                // SIGKILL a node, flip a bit of a sealed Raft log segment, restart it (on an empty Dir if it refuses)
	"lose-disks",         // stop the writers, converge, SIGKILL every member, empty every Dir but one, start it, then the rest at once
}

const chaosElectionTimeout = 300 * time.Millisecond // helperMain's

// The nodes' time policy: rotation by time many times a run, retention by
// age never within one (a file retired by age means a clock moved it), and
// clock reports often enough that the log clock follows within a fault.
const (
	chaosRotateEvery = time.Second
	chaosMaxAge      = time.Hour
	chaosClockEvery  = 500 * time.Millisecond
)

// chaosClockMargin is the measuring slack of the clock checks: the time
// between the harness reading its clock and a node reading its own, and
// status files up to 10 ms old. The checks' real tolerance is clockSlack.
const chaosClockMargin = 5 * time.Second

// chaosLogClockLag is how far a member's log clock may be behind the true
// time at a skew's end. It lags by about chaosClockEvery; the rest is for
// a loaded machine.
const chaosLogClockLag = 30 * time.Second

// chaosOpts sizes a run.
type chaosOpts struct {
	nodes     int
	duration  time.Duration // faults start only within this window
	maxFaults int
	writers   int           // per node
	interval  time.Duration // between one writer's Appends
	ensure    string        // a kind drawn early in the run, however short (fillBag)
	longSkew  bool          // hold the first clock-skew longer than chaosLogClockLag
	only      []string      // if set, the kinds this run draws (-chaos.kinds)
}

// withFlags applies the -chaos.* flags.
func (o chaosOpts) withFlags() chaosOpts {
	if *chaosDuration > 0 {
		o.duration = *chaosDuration
	}
	if *chaosFaults > 0 {
		o.maxFaults = *chaosFaults
	}
	if *chaosOnly != "" {
		o.only = strings.Split(*chaosOnly, ",")
		if !slices.Contains(o.only, o.ensure) {
			o.ensure = ""
		}
	}
	return o
}

// chaos is one run.
type chaos struct {
	t       *testing.T
	o       chaosOpts
	seed    int64
	rng     *rand.Rand
	c       *procCluster
	fn      *faultNet
	start   time.Time
	bag     []string // fault kinds still to draw this round
	counts  map[string]int
	total   int
	summary string // set once the run is checked

	member  []bool   // slot i holds a member of the cluster
	used    []bool   // slot i has held a node
	changed bool     // the membership is no longer the bootstrapped one
	retired []string // the Dirs of removed nodes
	cmds    int      // remove commands sent
	refused int      // rot faults whose node refused to start
	waited  int      // emptied nodes that waited for a member starting with Raft state (lose-disks)
	skipped int      // emptied nodes that did not bootstrap since a member ran the group (lose-disks)

	began      time.Time    // before the first node started: no line clock may be older, less clockSlack
	skews      []skewWindow // the clock-skew faults
	longSkewed bool         // the long clock-skew (chaosOpts.longSkew) was held
	clockNotes []string     // log clocks found off at a skew's end, and the like
}

// skewWindow is one clock-skew fault, and the lines logged during it:
// sequence numbers in (from, to].
type skewWindow struct {
	node     int
	role     string
	off      time.Duration
	from, to uint64
}

// TestChaosShort is the harness in the default suite: 3 nodes, a handful
// of faults.
func TestChaosShort(t *testing.T) {
	if chaosTagged {
		t.Skip("built with the chaos tag: TestChaosLong runs instead")
	}
	o := chaosOpts{nodes: 3, duration: 15 * time.Second, maxFaults: 6, writers: 2, interval: 25 * time.Millisecond, ensure: "clock-skew"}
	if testing.Short() {
		o.duration, o.maxFaults = 12*time.Second, 4
	}
	if raceEnabled {
		o.interval = 50 * time.Millisecond
	}
	runChaos(t, o.withFlags())
}

func runChaos(t *testing.T, o chaosOpts) {
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	head := fmt.Sprintf("chaos: seed=%d nodes=%d duration=%v max-faults=%d (replay with -chaos.seed %d)", seed, o.nodes, o.duration, o.maxFaults, seed)
	fmt.Println(head) // at once, so a hang or crash still shows it
	t.Log(head)
	h := &chaos{t: t, o: o, seed: seed, rng: rand.New(rand.NewSource(seed)), counts: map[string]int{}}
	h.fn = newFaultNet(t, o.nodes+2) // two spare slots, for nodes added later
	h.c = startProcCluster(t, o.nodes, o.writers, 0, h.fn)
	h.member, h.used = make([]bool, o.nodes+2), make([]bool, o.nodes+2)
	h.c.clocks = true
	h.c.env = []string{
		fmt.Sprintf("LOGX_INTERVAL_MS=%d", o.interval.Milliseconds()),
		"LOGX_APPEND_TIMEOUT_MS=10000",
		"LOGX_BATCH_EVERY=4", // every 4th entry of a writer is an AppendBatch of three
		// n1, n3, ... keep rotated files compressed: kills and pauses land
		// in the middle of compressions, and catch-ups copy from nodes
		// that compress to nodes that do not, and back.
		"LOGX_COMPRESS=odd",
		// Raft compacts its log often, so that a node back from a fault
		// often needs a snapshot and a copy of file tails (catchup.go).
		"LOGX_SNAPSHOT_MS=1000",
		"LOGX_TRAILING_LOGS=100",
		"LOGX_WAL_SEGMENT=32768",
		fmt.Sprintf("LOGX_ROTATE_EVERY_MS=%d", chaosRotateEvery.Milliseconds()),
		fmt.Sprintf("LOGX_MAX_AGE_MS=%d", chaosMaxAge.Milliseconds()),
		fmt.Sprintf("LOGX_CLOCK_EVERY_MS=%d", chaosClockEvery.Milliseconds()),
		// A second stream, its own Raft group on the same addresses: every
		// odd entry of a writer goes there (proc_test.go).
		"LOGX_STREAMS=" + chaosStream,
	}
	h.fillBag()
	defer func() {
		if h.summary == "" { // failed before the end
			fmt.Println(h.line(nil) + " aborted")
		}
	}()
	h.began = time.Now()
	for i := 0; i < o.nodes; i++ {
		h.member[i], h.used[i] = true, true
		h.c.start(i, o.writers)
	}
	h.start = time.Now()
	h.recover("start")

	for h.total < o.maxFaults && (time.Since(h.start) < o.duration || o.ensure != "" && h.counts[o.ensure] == 0) {
		h.hold(200*time.Millisecond, 1500*time.Millisecond) // a random moment under load
		kind := h.next()
		from := h.applied()
		h.inject(kind)
		h.counts[kind]++
		h.total++
		// Writes should go on during most faults; the gauge shows it.
		h.logf("%s: the log grew by %d Raft entries during the fault", kind, int64(h.applied())-int64(from))
		h.recover(kind)
	}

	// Everything is healed (faults are healed one by one): stop the writers,
	// wait until every node holds the same log, close the nodes.
	h.logf("stopping the writers")
	for _, i := range h.members() {
		_, err := h.c.stdins[i].Write([]byte("stop\n"))
		require.NoError(t, err)
	}
	for _, i := range h.members() {
		h.c.waitStatus(i, "writers done", func(s procStatus) bool { return s.done })
	}
	h.c.waitConverged()
	for _, i := range h.members() {
		h.c.stop(i)
	}
	r := h.check()
	h.summary = h.line(&r)
	fmt.Println(h.summary)
	t.Log(h.summary)
	if r.missing+r.duplicates+r.differing+r.zstDiffer+r.badSeq+r.notPrefix+r.retiredOn+r.clockOff+r.stalls+r.partial+r.badSums > 0 {
		t.Errorf("%s\n%s", h.summary, strings.Join(r.details, "\n"))
	}
	require.Positive(t, r.acked, "no entry was acknowledged")
	require.Positive(t, r.streamAcked, "no entry of stream %s was acknowledged", chaosStream)
	require.Positive(t, r.timeRotations, "no file was rotated by time")
	require.Positive(t, r.zstFiles, "no file was compressed")
	if o.ensure == "clock-skew" {
		require.NotEmpty(t, h.skews, "no clock-skew fault was injected")
	}
}

func (h *chaos) logf(format string, args ...any) {
	h.t.Helper()
	h.t.Logf("%6.1fs "+format, append([]any{time.Since(h.start).Seconds()}, args...)...)
}

// hold waits a random time in [lo, hi): the fault schedule, not a wait for
// a condition.
func (h *chaos) hold(lo, hi time.Duration) {
	h.wait(h.between(lo, hi))
}

// between draws a duration in [lo, hi).
func (h *chaos) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(h.rng.Int63n(int64(hi-lo)))
}

// wait waits d: the fault schedule, not a wait for a condition.
func (h *chaos) wait(d time.Duration) { time.Sleep(d) }

// fillBag puts a round of every kind, in a random order, in the bag. On
// the first round, chaosOpts.ensure moves into the first half of the
// maxFaults faults (the run also goes on past its duration until it is
// drawn).
func (h *chaos) fillBag() {
	more := append([]string(nil), chaosKinds...)
	if h.o.only != nil {
		for _, k := range h.o.only {
			require.Contains(h.t, chaosKinds, k, "unknown fault kind")
		}
		more = slices.Clone(h.o.only)
	}
	h.rng.Shuffle(len(more), func(i, j int) { more[i], more[j] = more[j], more[i] })
	if h.total == 0 && len(h.bag) == 0 && h.o.ensure != "" {
		k := slices.Index(more, h.o.ensure)
		require.GreaterOrEqual(h.t, k, 0, "unknown fault kind %q", h.o.ensure)
		if n := max(1, min(h.o.maxFaults, len(more))/2); k >= n {
			j := h.rng.Intn(n)
			more[j], more[k] = more[k], more[j]
		}
	}
	h.bag = append(h.bag, more...)
}

// next draws the next fault kind: every kind once per round, in a random
// order. A membership change the cluster's size does not allow now (it
// stays between n and n+2 members) waits in the bag for a later draw.
func (h *chaos) next() string {
	for round := 0; ; round++ {
		if round > 1 {
			h.t.Fatalf("no fault kind can be drawn from %v", h.bag)
		}
		if len(h.bag) == 0 || round > 0 {
			h.fillBag()
		}
		for k, kind := range h.bag {
			if h.allowed(kind) {
				h.bag = append(h.bag[:k:k], h.bag[k+1:]...)
				return kind
			}
		}
	}
}

// allowed tells whether kind can be injected now.
func (h *chaos) allowed(kind string) bool {
	switch n := len(h.members()); kind {
	case "add":
		return n < h.o.nodes+2
	case "remove":
		return n > h.o.nodes // never below n, so never below 3 voters
	}
	return true
}

// members returns the slots of the cluster's members, in order.
func (h *chaos) members() []int {
	var out []int
	for i, m := range h.member {
		if m {
			out = append(out, i)
		}
	}
	return out
}

// anyMember returns a random member other than except.
func (h *chaos) anyMember(except int) int {
	var ms []int
	for _, i := range h.members() {
		if i != except {
			ms = append(ms, i)
		}
	}
	return ms[h.rng.Intn(len(ms))]
}

// setPeers makes the members' addresses the Peers of the nodes started
// from now on. Once the membership has changed, a node that starts on an
// empty Dir joins instead of bootstrapping: a bootstrap would give it a
// first configuration the others never had.
func (h *chaos) setPeers() {
	h.c.peers = nil
	for _, i := range h.members() {
		h.c.peers = append(h.c.peers, h.c.addrs[i])
	}
	for i := range h.c.join {
		h.c.join[i] = h.changed
	}
}

// inject injects one fault and heals it. It returns with every node
// running; recover then waits until they have caught up.
func (h *chaos) inject(kind string) {
	c := h.c
	switch kind {
	case "kill-follower", "kill-leader":
		i := h.follower()
		if kind == "kill-leader" {
			i = h.leader(-1)
		}
		c.kill(i)
		h.logf("%s: SIGKILLed n%d", kind, i+1)
		h.hold(0, 2*time.Second)
		c.start(i, h.o.writers)
		h.logf("%s: restarted n%d", kind, i+1)
	case "pause":
		i := h.anyMember(-1)
		require.NoError(h.t, c.procs[i].Process.Signal(syscall.SIGSTOP))
		h.logf("pause: SIGSTOPped n%d (%s)", i+1, c.status(i).state)
		h.hold(2*chaosElectionTimeout, 2*chaosElectionTimeout+1500*time.Millisecond)
		require.NoError(h.t, c.procs[i].Process.Signal(syscall.SIGCONT))
		h.logf("pause: SIGCONTed n%d", i+1)
	case "partition-follower", "partition-leader":
		i := h.follower()
		if kind == "partition-leader" {
			i = h.leader(-1)
		}
		mode := cutMode(h.rng.Intn(2))
		h.fn.isolate(i, mode)
		h.logf("%s: cut n%d off (%v)", kind, i+1, mode)
		h.hold(time.Second, 4*time.Second)
		h.fn.heal()
		h.logf("%s: healed", kind)
	case "wipe":
		// Deleting a voter's Dir makes it forget its vote and its log, which
		// Raft does not tolerate in general: with its empty log it could
		// help elect a node that lacks entries it had acknowledged. So the
		// node comes back only once every other node holds everything
		// committed while it was up.
		i := h.anyMember(-1)
		was := c.status(i).state
		c.kill(i)
		h.logf("wipe: SIGKILLed n%d (%s)", i+1, was)
		h.caughtUp("wipe: the others", h.leader(i), i)
		require.NoError(h.t, os.RemoveAll(c.dir(i)))
		c.start(i, h.o.writers)
		h.logf("wipe: restarted n%d on an empty Dir", i+1)
	case "add":
		var free []int
		for i, m := range h.member {
			if !m {
				free = append(free, i)
			}
		}
		i := free[h.rng.Intn(len(free))]
		if h.used[i] {
			c.gen[i]++ // a new node in a removed node's slot: a fresh Dir
		}
		h.used[i] = true
		h.setPeers()
		c.join[i] = true
		c.start(i, h.o.writers)
		h.logf("add: started n%d (Dir %s), joining %d members", i+1, filepath.Base(c.dir(i)), len(c.peers))
		h.awaitResult(i, "join", "")
		h.member[i], h.changed = true, true
		h.setPeers()
		h.logf("add: n%d is a voter", i+1)
	case "remove":
		victim := h.anyMember(-1)
		caller := h.anyMember(victim)
		was := c.status(victim).state
		h.cmds++
		id := strconv.Itoa(h.cmds)
		_, err := fmt.Fprintf(c.stdins[caller], "remove %s %s\n", id, c.addrs[victim])
		require.NoError(h.t, err)
		h.logf("remove: asked n%d to remove n%d (%s)", caller+1, victim+1, was)
		h.awaitResult(caller, "remove "+id, "remove n"+strconv.Itoa(victim+1))
		h.member[victim], h.changed = false, true
		h.setPeers()
		// The removed node was told (or, the leader, saw its removal
		// committed) and stopped its Raft; its entries now fail with
		// ErrRemoved. It is SIGKILLed rather than closed: Close on a
		// removed node that was logging waits CloseTimeout for its last
		// batch, committed after its removal, to be applied there, which
		// never happens, and then fails.
		c.waitStatus(victim, "Raft shut down after its removal", func(s procStatus) bool { return s.state == "Shutdown" })
		c.kill(victim)
		h.retired = append(h.retired, c.dir(victim))
		h.logf("remove: n%d removed and stopped", victim+1)
	case "clock-skew":
		h.clockSkew()
	case "rot":
		h.rot()
	case "lose-disks":
		h.loseDisks()
	default:
		h.t.Fatalf("unknown fault kind %q", kind)
	}
}

// rot is bit rot in a member's Raft log, found as the node starts: it is
// SIGKILLed, one bit of one of its sealed Raft log segments (of either
// stream) is flipped, and it is started again. If the start reads the
// damage (New's error names the Raft log: an entry after the snapshot it
// restores, or a segment raft-wal cannot open), the node exits, and the
// harness does what docs/guarantees.md tells an operator: once the others
// hold everything committed, it starts the node on an empty Dir.
// Otherwise the node runs, and never reads that entry unless it leads and
// a follower needs it: then it sends its snapshot (logguard.go).
func (h *chaos) rot() {
	c := h.c
	i := h.anyMember(-1)
	was := c.status(i).state
	c.kill(i)
	name, off := h.flipSealedBit(c.dir(i))
	var from int64 // this start's part of the node's stderr file
	if st, err := os.Stat(c.path(i, "stderr")); err == nil {
		from = st.Size()
	}
	c.start(i, h.o.writers)
	if name == "" {
		h.logf("rot: n%d (%s) has no sealed Raft log segment; restarted it as it was", i+1, was)
		return
	}
	h.logf("rot: SIGKILLed n%d (%s), flipped a bit of byte %d of %s, restarted it", i+1, was, off, name)
	var exit error
	ok := waitFor(90*time.Second, func() bool {
		select {
		case exit = <-c.exited[i]:
			return true
		default:
		}
		return c.status(i).state != ""
	})
	require.True(h.t, ok, "rot: n%d neither ran nor exited within 90s", i+1)
	if exit == nil {
		h.logf("rot: n%d runs", i+1)
		return
	}
	c.procs[i] = nil
	why := lastHelperLine(h.t, c.path(i, "stderr"), from)
	require.Contains(h.t, why, "Raft log", "rot: n%d exited (%v), not for its Raft log", i+1, exit)
	h.refused++
	h.logf("rot: n%d refused to start: %s", i+1, why)
	h.caughtUp("rot: the others", h.leader(i), i)
	require.NoError(h.t, os.RemoveAll(c.dir(i)))
	c.start(i, h.o.writers)
	h.logf("rot: restarted n%d on an empty Dir", i+1)
}

// loseDisks is a whole cluster restarted after most of its members lost
// their disks. The writers stop and the members converge, so that every
// member holds every acknowledged entry of both streams (with writes
// going on, only a stream's leader is sure to, and an emptied node votes
// for any candidate: a kept node behind in a stream it does not lead could
// be elected there and drop the leader's tail; TestLoseDisksSIGKILL
// covers a kill under load). Then every member is SIGKILLed and every Dir
// but one, drawn at random, is emptied. That node is started first, as
// docs/deploy.md says (half the time opening each stream 3 election
// timeouts late), and the others as soon as it listens, while it is still
// starting, with writers again: with the membership as bootstrapped the
// emptied nodes (a majority) ask it before they bootstrap, wait while it
// starts, and follow it (bootstrap.go); once it has changed, they join.
// Either way nothing acknowledged may be lost. The summary counts the
// emptied nodes whose log says they waited, and that they did not
// bootstrap; nothing asserts it (a start slower than an election timeout
// on a loaded machine fails open, as documented), but a bootstrap that
// loses an entry fails the run.
func (h *chaos) loseDisks() {
	c := h.c
	members := h.members()
	// Drawn first, it could stop the writers before any line was written,
	// and a cluster without one never counts as converged.
	for _, i := range members {
		c.waitStatus(i, "a line in both streams", func(s procStatus) bool { return s.seq > 0 && s.extraSeq > 0 })
	}
	for _, i := range members {
		_, err := c.stdins[i].Write([]byte("stop\n"))
		require.NoError(h.t, err)
	}
	for _, i := range members {
		c.waitStatus(i, "writers done", func(s procStatus) bool { return s.done })
	}
	c.waitConverged()
	keep := members[h.rng.Intn(len(members))]
	slow := h.rng.Intn(2) == 0
	var slowOpen time.Duration
	if slow {
		slowOpen = 3 * chaosElectionTimeout
	}
	emptied, said := c.loseDisks(members, keep, slowOpen, h.o.writers)
	h.logf("lose-disks: stopped the writers, converged, SIGKILLed every member, restarted n%d on its Dir (slow to open: %v), then %v on empty Dirs", keep+1, slow, plusOne(emptied))
	for _, i := range emptied {
		ok := waitFor(90*time.Second, func() bool { h.checkAlive(); return c.status(i).state != "" })
		require.True(h.t, ok, "lose-disks: n%d did not start within 90s", i+1)
		if strings.Contains(said(i), "which has Raft state, is still starting: waiting") {
			h.waited++
		}
		if strings.Contains(said(i), "not bootstrapping; waiting for its leader") {
			h.skipped++
		}
	}
}

// plusOne returns the slots as node numbers (n1 is slot 0).
func plusOne(slots []int) []int {
	out := make([]int, len(slots))
	for k, i := range slots {
		out[k] = i + 1
	}
	return out
}

// flipSealedBit flips one bit of a byte drawn at random from the sealed
// segments of the Raft logs under dir (a log's last segment is its open
// one; half the time from a log's oldest), and returns the file (relative to dir) and the offset; "" if
// there are none.
func (h *chaos) flipSealedBit(dir string) (string, int64) {
	byLog := map[string][]string{}
	require.NoError(h.t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".wal") {
			byLog[filepath.Dir(p)] = append(byLog[filepath.Dir(p)], p)
		}
		return err
	}))
	var sealed, oldest []string
	for _, segs := range byLog {
		sort.Strings(segs) // by first index; the last is open
		if len(segs) > 1 {
			sealed = append(sealed, segs[:len(segs)-1]...)
			oldest = append(oldest, segs[0])
		}
	}
	if len(sealed) == 0 {
		return "", 0
	}
	sort.Strings(sealed) // the map's order is random: the seed replays
	sort.Strings(oldest)
	// Half the time a log's oldest segment: its entries are more often
	// below the snapshot, which the start does not read.
	name := sealed[h.rng.Intn(len(sealed))]
	if h.rng.Intn(2) == 0 {
		name = oldest[h.rng.Intn(len(oldest))]
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	require.NoError(h.t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(h.t, err)
	off := h.rng.Int63n(st.Size())
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(h.t, err)
	b[0] ^= 1 << h.rng.Intn(8)
	_, err = f.WriteAt(b, off)
	require.NoError(h.t, err)
	rel, _ := filepath.Rel(dir, name)
	return rel, off
}

// lastHelperLine returns the last line the helper wrote ("helper: ...")
// in a node's stderr file past offset from: why the node exited, if it
// did by itself ("" after a panic).
func lastHelperLine(t *testing.T, name string, from int64) string {
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b[min(from, int64(len(b))):])), "\n")
	for k := len(lines) - 1; k >= 0; k-- {
		if strings.HasPrefix(lines[k], "helper:") {
			return lines[k]
		}
	}
	return ""
}

// clockSkew moves a node's clock, the leader's about half the time, 1 to
// 48 hours ahead or behind for a few seconds, or, once in a long run, for
// longer than the log clock may lag (checkLogClocks), and then back. It
// notes the lines logged meanwhile (check looks for rotations by time
// among them) and checks every member's log clock at the end of the skew.
func (h *chaos) clockSkew() {
	c := h.c
	i, role := h.follower(), "follower"
	if h.rng.Intn(2) == 0 {
		i, role = h.leader(-1), "leader"
	}
	off := time.Duration(60+h.rng.Int63n(47*60)) * time.Minute
	ahead := h.rng.Intn(2) == 0
	if !ahead {
		off = -off
	}
	hold := h.between(4*time.Second, 8*time.Second)
	if h.o.longSkew && !h.longSkewed {
		hold, h.longSkewed = chaosLogClockLag+h.between(10*time.Second, 20*time.Second), true
	}
	c.setClock(i, off)
	w := skewWindow{node: i, role: role, off: off, from: h.seqNow()}
	h.logf("clock-skew: n%d's clock (%s) is %v off, for %v", i+1, role, off, hold.Round(100*time.Millisecond))
	h.wait(hold)
	w.to = h.seqNow()
	h.checkLogClocks(fmt.Sprintf("clock-skew of n%d by %v", i+1, off))
	c.setClock(i, 0)
	h.skews = append(h.skews, w)
	h.logf("clock-skew: n%d's clock is right again; lines %d..%d were logged meanwhile", i+1, w.from+1, w.to)
	if ahead {
		h.settleClocks(fmt.Sprintf("clock-skew of n%d by %v", i+1, off))
	}
}

// settleClocks waits, after a skew ahead, until no running member's active
// file has a newest line clock ahead of the true time (as its checkpoint,
// state.json, shows). The skewed node's last lines leave it up to
// clockSlack ahead, and until the true time gets there (or the file rotates
// by size, which starts the next file from its first line's clock) the
// other lines rotate nothing by time: that is the most a clock may delay
// rotation, and a skew behind injected meanwhile would find no rotation.
// The design bounds the wait by clockSlack and a checkpoint interval.
func (h *chaos) settleClocks(what string) {
	t0 := time.Now()
	var ahead []string
	ok := waitFor(clockSlack+chaosClockMargin+time.Second, func() bool {
		h.checkAlive()
		ahead = ahead[:0]
		now := time.Now().UnixNano()
		for _, i := range h.members() {
			st, found, err := readState(h.c.dir(i))
			if err != nil || !found || st.ActiveNewest > now {
				ahead = append(ahead, fmt.Sprintf("n%d", i+1))
			}
		}
		return len(ahead) == 0
	})
	if !ok {
		h.clockNotes = append(h.clockNotes, fmt.Sprintf("%s: %v after it ended, the active file's newest line clock is still ahead of the true time on %v",
			what, time.Since(t0).Round(time.Millisecond), ahead))
		return
	}
	h.logf("%s: the active files' newest line clocks are back within the true time after %v", what, time.Since(t0).Round(time.Millisecond))
}

// seqNow is the highest sequence number a running member has written.
func (h *chaos) seqNow() uint64 {
	var s uint64
	for _, i := range h.members() {
		if h.c.procs[i] != nil {
			s = max(s, h.c.status(i).seq)
		}
	}
	return s
}

// checkLogClocks checks every member's log clock (Stats.LogClock) against
// the true time: never ahead of it, and not behind by more than
// chaosLogClockLag. A majority's clocks make it, so one node's clock, hours
// off, must not move it. A log clock held back by a clock behind shows
// only in the long skew (chaosOpts.longSkew), held longer than that.
func (h *chaos) checkLogClocks(what string) {
	now := time.Now()
	var lags []string
	for _, i := range h.members() {
		s := h.c.status(i)
		lag := now.Sub(time.Unix(0, s.logClock))
		lags = append(lags, fmt.Sprintf("n%d %v", i+1, lag.Round(100*time.Millisecond)))
		if s.logClock == 0 || lag < -chaosClockMargin || lag > chaosLogClockLag {
			h.clockNotes = append(h.clockNotes, fmt.Sprintf("%s: n%d's log clock is %v, %v behind the true time", what, i+1,
				time.Unix(0, s.logClock).UTC().Format(time.RFC3339Nano), lag))
		}
	}
	h.logf("%s: the log clocks lag the true time by %s", what, strings.Join(lags, ", "))
}

// awaitResult waits until node i reports "<what> ok" in its result file
// (helperMain), and fails the test if it reports an error instead.
func (h *chaos) awaitResult(i int, what, desc string) {
	h.t.Helper()
	if desc == "" {
		desc = fmt.Sprintf("%s of n%d", what, i+1)
	}
	var report string
	ok := waitFor(150*time.Second, func() bool {
		h.checkAlive()
		b, _ := os.ReadFile(h.c.path(i, "result"))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, what+" ") {
				report = l
				return true
			}
		}
		return false
	})
	switch {
	case !ok:
		h.t.Fatalf("%s: no result from n%d within 150s: %s", desc, i+1, h.statuses())
	case report != what+" ok":
		h.t.Fatalf("%s: n%d reports %q", desc, i+1, report)
	}
}

// leader waits for a leader other than except and returns it. Status files
// can be stale (a node that just lost its leadership), so of the nodes
// that say they lead, the one with the highest term wins.
func (h *chaos) leader(except int) int {
	h.t.Helper()
	l := -1
	ok := waitFor(60*time.Second, func() bool {
		h.checkAlive()
		l = -1
		var term uint64
		for i := range h.c.addrs {
			if s := h.c.status(i); i != except && h.c.procs[i] != nil && s.state == "Leader" && s.term >= term {
				l, term = i, s.term
			}
		}
		return l >= 0
	})
	if !ok {
		h.c.dumpGoroutines()
		h.t.Fatalf("no leader elected within 60s: %s", h.statuses())
	}
	return l
}

// follower returns a random member other than the leader.
func (h *chaos) follower() int {
	return h.anyMember(h.leader(-1))
}

// recover waits, after a fault, for a leader and for every node to hold
// what the leader held then.
func (h *chaos) recover(after string) {
	h.t.Helper()
	h.caughtUp(after, h.leader(-1), -1)
}

// caughtUp waits until every running node but except has applied the
// leader l's last Raft index, as l reports it now, and written the
// highest sequence number of the second stream (chaosStream) that any of
// them reports now: a node is wiped only once the others hold both
// streams' entries (before, only the default stream's were waited for,
// and wipes close together lost acknowledged entries of the second).
// Writers keep the logs growing, so both are reached even if l loses its
// leadership and its uncommitted tail. The deadline is generous: after
// failures, Raft backs off replicating to a node for up to about 10 s.
func (h *chaos) caughtUp(after string, l, except int) {
	h.t.Helper()
	target := h.c.status(l).last
	var extra uint64
	for _, i := range h.members() {
		if i != except && h.c.procs[i] != nil {
			extra = max(extra, h.c.status(i).extraSeq)
		}
	}
	t0 := time.Now()
	ok := waitFor(90*time.Second, func() bool {
		h.checkAlive()
		for _, i := range h.members() {
			if s := h.c.status(i); i != except && (s.applied < target || s.extraSeq < extra) {
				return false
			}
		}
		return true
	})
	if !ok {
		h.t.Fatalf("after %s: the nodes did not reach Raft index %d of leader n%d and %s seq %d within 90s: %s", after, target, l+1, chaosStream, extra, h.statuses())
	}
	h.logf("%s: caught up to Raft index %d of n%d and %s seq %d in %v", after, target, l+1, chaosStream, extra, time.Since(t0).Round(time.Millisecond))
}

// checkAlive fails the test if a node process exited on its own.
func (h *chaos) checkAlive() {
	h.t.Helper()
	for i, ch := range h.c.exited {
		if h.c.procs[i] == nil {
			continue
		}
		select {
		case err := <-ch:
			ch <- err
			h.t.Fatalf("node n%d exited by itself: %v", i+1, err)
		default:
		}
	}
}

// applied returns the highest Raft index a running node has applied.
func (h *chaos) applied() uint64 {
	var a uint64
	for i := range h.c.addrs {
		if h.c.procs[i] != nil {
			a = max(a, h.c.status(i).applied)
		}
	}
	return a
}

func (h *chaos) statuses() string {
	var b strings.Builder
	for i := range h.c.addrs {
		if !h.used[i] {
			continue
		}
		s := h.c.status(i)
		fmt.Fprintf(&b, "n%d{%s term=%d seq=%d applied=%d last=%d %s-seq=%d running=%v} ", i+1, s.state, s.term, s.seq, s.applied, s.last, chaosStream, s.extraSeq, h.c.procs[i] != nil)
	}
	return b.String()
}

// chaosResult is what the end-of-run check found.
// chaosStream is the stream beside the default one that the harness's
// nodes write to; check holds it to the same rules.
const chaosStream = "audit"

type chaosResult struct {
	acked, entries, catchUps    int
	notFound, askedSnap         int // log lines of a leader that could not read an entry (logguard.go)
	streamAcked, streamEntries  int // chaosStream's
	missing, duplicates, badSeq int
	partial                     int // AppendBatch batches not whole and contiguous in some file
	differing                   int
	zstDiffer                   int      // compressed files of the same name that differ between members
	zstFiles                    int      // compressed files (names) the members hold
	removed, notPrefix          int      // removed nodes checked; those whose files are not a prefix of the members'
	details                     []string // the first problems found

	// Time (checkClocks): the log's files, those started by rotation by
	// time, members that retired files, line clocks and log clocks off the
	// true time, and clock-skew faults during which no file rotated by
	// time.
	files, timeRotations int
	retiredOn            int
	clockOff             int
	stalls, skewsChecked int

	// Checksums: the rotated files the members' checkpoints list, checked
	// against their bytes with the hash each names; those naming BLAKE3;
	// those that do not match.
	sumsChecked, blake3Files, badSums int
}

// check reads every member's files, every node's ack files, and the files
// of the removed nodes.
func (h *chaos) check() chaosResult {
	t, c := h.t, h.c
	var r chaosResult
	note := func(format string, args ...any) {
		if len(r.details) < 20 {
			r.details = append(r.details, fmt.Sprintf(format, args...))
		}
	}
	// parse reads a node's lines, checking their seqs and counting the
	// entries it holds twice; it returns the lines and id → seq.
	dups := map[string]bool{}
	type batchSeen struct {
		first, parts int
		broken       bool
	}
	batches := map[string]batchSeen{} // "node run/w/i" → where its records are
	parse := func(name, dir string) ([][]byte, map[string]string) {
		file := "app.log"
		if filepath.Base(filepath.Dir(dir)) == streamsDir {
			file = filepath.Base(dir) + ".log"
		}
		lines := readLines(t, dir, file)
		at := map[string]string{}
		for k, l := range lines {
			kv, err := parseText(l)
			if err != nil {
				r.badSeq++
				note("%s line %d does not parse: %v", name, k+1, err)
				continue
			}
			if kv["seq"] != strconv.Itoa(k+1) {
				r.badSeq++
				note("%s line %d has seq=%s", name, k+1, kv["seq"])
			}
			id := kv["run"] + "/" + kv["w"] + "/" + kv["i"]
			if base, part, ok := strings.Cut(kv["i"], "."); ok { // a record of an AppendBatch (proc_test.go)
				key := name + " " + kv["run"] + "/" + kv["w"] + "/" + base
				b := batches[key]
				if b.parts == 0 {
					b.first = k
				}
				if part != strconv.Itoa(b.parts) || k != b.first+b.parts {
					b.broken = true
				}
				b.parts++
				batches[key] = b
			}
			if _, ok := at[id]; ok {
				if !dups[id] {
					note("%s: entry %s is at seq %s and seq %s", name, id, at[id], kv["seq"])
				}
				dups[id] = true
				continue
			}
			at[id] = kv["seq"]
		}
		return lines, at
	}
	acks := c.acks() // of every slot: removed nodes' too
	r.acked = len(acks)
	missing := map[string]bool{}
	sums := map[string][]int{}   // the files' names and checksums → the members holding them
	var longest [][]byte         // a member's lines, for the removed nodes' prefix check
	zsums := map[string]string{} // a compressed file's name → its sha256, on the first member that has it
	for _, i := range h.members() {
		dir := c.dir(i)
		sum := hashList(plainHashes(t, dir, "app.log"))
		sums[sum] = append(sums[sum], i)
		for name, h := range zstHashes(t, dir, "app.log") {
			if first, ok := zsums[name]; !ok {
				zsums[name] = h
			} else if first != h {
				r.zstDiffer++
				note("n%d: compressed file %s differs from another member's", i+1, name)
			}
		}
		lines, at := parse(fmt.Sprintf("n%d", i+1), dir)
		if len(lines) > len(longest) {
			longest = lines
		}
		r.entries = max(r.entries, len(lines))
		for id, seq := range acks {
			if at[id] != seq {
				if !missing[id] {
					note("n%d: acknowledged entry %s (seq %s) is at seq %q", i+1, id, seq, at[id])
				}
				missing[id] = true
			}
		}
	}
	for i := range c.addrs {
		b, _ := os.ReadFile(c.path(i, "stderr"))
		r.catchUps += strings.Count(string(b), "logx: caught up to Raft index")
		// A leader that could not read an entry a follower needed (rot):
		// it sent a snapshot instead, or asked for one first (logguard.go).
		r.notFound += strings.Count(string(b), "answering Raft that it is not found")
		r.askedSnap += strings.Count(string(b), "asking Raft for a snapshot")
	}
	r.missing, r.duplicates = len(missing), len(dups)
	most := 0
	for _, nodes := range sums {
		most = max(most, len(nodes))
	}
	r.differing = len(h.members()) - most
	if len(sums) > 1 {
		for _, nodes := range sums {
			note("identical files: nodes %v", nodes)
		}
	}
	// The other stream: the same rules, its own files and acks.
	sacks := c.acksOf(chaosStream)
	r.streamAcked = len(sacks)
	ssums := map[string][]int{}
	smissing := map[string]bool{}
	for _, i := range h.members() {
		dir := StreamDir(c.dir(i), chaosStream)
		sum := hashList(plainHashes(t, dir, chaosStream+".log"))
		ssums[sum] = append(ssums[sum], i)
		for name, h := range zstHashes(t, dir, chaosStream+".log") {
			if first, ok := zsums[name]; !ok {
				zsums[name] = h
			} else if first != h {
				r.zstDiffer++
				note("n%d %s: compressed file %s differs from another member's", i+1, chaosStream, name)
			}
		}
		lines, at := parse(fmt.Sprintf("n%d %s", i+1, chaosStream), dir)
		r.streamEntries = max(r.streamEntries, len(lines))
		for id, seq := range sacks {
			if at[id] != seq {
				if !smissing[id] {
					note("n%d %s: acknowledged entry %s (seq %s) is at seq %q", i+1, chaosStream, id, seq, at[id])
				}
				smissing[id] = true
			}
		}
	}
	r.zstFiles = len(zsums)
	r.missing, r.duplicates = r.missing+len(smissing), len(dups)
	most = 0
	for _, nodes := range ssums {
		most = max(most, len(nodes))
	}
	r.differing += len(h.members()) - most
	if len(ssums) > 1 {
		for _, nodes := range ssums {
			note("identical %s files: nodes %v", chaosStream, nodes)
		}
	}
	for key, b := range batches {
		if b.broken || b.parts != 3 {
			r.partial++
			note("AppendBatch %s: %d records, whole and in order: %v", key, b.parts, !b.broken)
		}
	}
	h.checkClocks(&r, note)
	// A removed node's files hold the log as it was when the node left.
	for _, dir := range h.retired {
		r.removed++
		lines, _ := parse(filepath.Base(dir)+" (removed)", dir)
		prefix := len(lines) <= len(longest)
		for k := 0; prefix && k < len(lines); k++ {
			prefix = bytes.Equal(lines[k], longest[k])
		}
		if !prefix {
			r.notPrefix++
			note("removed %s: its %d lines are not a prefix of the members' %d", filepath.Base(dir), len(lines), len(longest))
		}
	}
	return r
}

// checkClocks checks the members' files against the time policy
// (chaosRotateEvery, chaosMaxAge, no MaxFiles) and the clock-skew faults:
//
//   - Retention: no file was retired (the first line is seq 1, and no
//     retired file is listed in state.json or waits in the Dir). A file
//     retired by age within a run would mean a clock hours ahead aged it.
//   - Line clocks: every line clock state.json records (each rotated file's
//     newest, the active file's) lies within the run's true time widened
//     by clockSlack, and the log clock within the run's true time (both
//     give or take chaosClockMargin): a line clock that followed a skewed
//     clock would be hours off.
//   - Rotation: during every clock-skew fault (4 s or more) at least one
//     file was rotated by time (the cluster rotates every
//     chaosRotateEvery). A file's rotation was by time when the file with
//     the line that followed would not have exceeded MaxSize. A clock that
//     could hold every line clock still, as a leader behind did when
//     entry times were capped at the leader's clock, would stop it.
//
// The members' files are identical (check), so the first member's say when
// rotations happened, by sequence number.
func (h *chaos) checkClocks(r *chaosResult, note func(string, ...any)) {
	t := h.t
	end := time.Now()
	lo, hi := h.began.Add(-clockSlack-chaosClockMargin), end.Add(clockSlack+chaosClockMargin)
	clockOK := func(c int64) bool { return c >= lo.UnixNano() && c <= hi.UnixNano() }
	show := func(c int64) string { return time.Unix(0, c).UTC().Format(time.RFC3339Nano) }
	for _, n := range h.clockNotes {
		r.clockOff++
		note("%s", n)
	}
	var timeStarts []uint64 // first seqs of the files started by rotation by time
	for k, i := range h.members() {
		dir := h.c.dir(i)
		st, ok, err := readState(dir)
		require.NoError(t, err)
		require.True(t, ok, "n%d has no %s", i+1, stateFile)
		retired := map[string]bool{}
		for _, f := range st.Retired {
			retired[f.Name] = true
		}
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range ents {
			if name, ok := strings.CutPrefix(e.Name(), store.RetiredName("")); ok {
				retired[name] = true
			}
		}
		names, err := LogFiles(dir, "app.log")
		require.NoError(t, err)
		if len(names) > 0 {
			if lines := readLinesFiles(t, dir, names[:1]); len(lines) > 0 {
				if kv, err := parseText(lines[0]); err == nil && kv["seq"] != "1" {
					retired["(the files before seq "+kv["seq"]+")"] = true
				}
			}
		}
		if len(retired) > 0 {
			r.retiredOn++
			note("n%d: files were retired: %v", i+1, slices.Sorted(maps.Keys(retired)))
		}

		if st.Clock < h.began.Add(-chaosClockMargin).UnixNano() || st.Clock > end.Add(chaosClockMargin).UnixNano() {
			r.clockOff++
			note("n%d: the log clock is %s, outside the run (%s to %s)", i+1, show(st.Clock), show(h.began.UnixNano()), show(end.UnixNano()))
		}
		for _, fs := range st.Rotated {
			sum, size, err := segmentSum(t.Context(), filepath.Join(dir, fs.Name), fs, false)
			if errors.Is(err, os.ErrNotExist) {
				continue // retired since the checkpoint (counted above)
			}
			r.sumsChecked++
			if h, _ := fs.Sum(); h == store.BLAKE3 {
				r.blake3Files++
			}
			if err != nil || fs.CheckSum() != nil || !fs.Matches(sum, size) {
				r.badSums++
				note("n%d: %s: %d bytes with checksum %x (%v), the checkpoint says %+v", i+1, fs.Name, size, sum, err, fs)
			}
		}
		newest := append([]store.File(nil), st.Rotated...)
		newest = append(newest, store.File{Name: "app.log", Newest: st.ActiveNewest})
		for _, f := range newest {
			if f.Newest != 0 && !clockOK(f.Newest) {
				r.clockOff++
				note("n%d: %s's newest line clock is %s, outside the run (%s to %s) by more than clockSlack", i+1, f.Name, show(f.Newest), show(lo.UnixNano()), show(hi.UnixNano()))
			}
		}

		if k > 0 {
			continue
		}
		r.files = len(names)
		var prev int64
		for j, name := range names {
			fi, err := os.Stat(filepath.Join(dir, name))
			require.NoError(t, err)
			if j > 0 {
				lines := readLinesFiles(t, dir, []string{name})
				if len(lines) == 0 { // the active file, empty
					break
				}
				kv, err := parseText(lines[0])
				require.NoError(t, err, "%s: first line", name)
				seq, err := strconv.ParseUint(kv["seq"], 10, 64)
				require.NoError(t, err)
				if prev+int64(len(lines[0]))+1 <= procMaxSize {
					timeStarts = append(timeStarts, seq)
				}
			}
			prev = fi.Size()
		}
	}
	r.timeRotations = len(timeStarts)
	rotations := func(from, to uint64) int { // time rotations at seqs in (from, to]
		n := 0
		for _, s := range timeStarts {
			if s > from && s <= to {
				n++
			}
		}
		return n
	}
	for _, w := range h.skews {
		r.skewsChecked++
		what := fmt.Sprintf("clock-skew of n%d (%s) by %v", w.node+1, w.role, w.off)
		if n := rotations(w.from, w.to); n == 0 {
			r.stalls++
			note("%s: no file rotated by time among the lines logged meanwhile (seq %d..%d)", what, w.from+1, w.to)
		}
	}
}

// hashList is a canonical form of fileHashes' result.
func hashList(m map[string]string) string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%s\n", n, m[n])
	}
	return b.String()
}

// line is the summary line; r is nil if the run ended early.
func (h *chaos) line(r *chaosResult) string {
	var b strings.Builder
	d := time.Duration(0)
	if !h.start.IsZero() {
		d = time.Since(h.start).Round(100 * time.Millisecond)
	}
	fmt.Fprintf(&b, "chaos: seed=%d nodes=%d duration=%v faults=%d (", h.seed, h.o.nodes, d, h.total)
	for i, k := range chaosKinds {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, h.counts[k])
	}
	fmt.Fprintf(&b, " rot-refused=%d lose-disks-waited=%d lose-disks-not-bootstrapped=%d)", h.refused, h.waited, h.skipped)
	if r != nil {
		fmt.Fprintf(&b, " acked=%d entries=%d %s-acked=%d %s-entries=%d catch-ups=%d members=%d missing=%d duplicates=%d partial-batches=%d differing-nodes=%d",
			r.acked, r.entries, chaosStream, r.streamAcked, chaosStream, r.streamEntries, r.catchUps, len(h.members()), r.missing, r.duplicates, r.partial, r.differing)
		fmt.Fprintf(&b, " unreadable-sent-as-snapshot=%d snapshots-asked=%d", r.notFound, r.askedSnap)
		fmt.Fprintf(&b, " zst-files=%d differing-zst=%d sums=%d blake3=%d bad-sums=%d", r.zstFiles, r.zstDiffer, r.sumsChecked, r.blake3Files, r.badSums)
		if r.removed > 0 {
			fmt.Fprintf(&b, " removed-not-prefix=%d/%d", r.notPrefix, r.removed)
		}
		fmt.Fprintf(&b, " files=%d time-rotations=%d retired-on=%d clock-off=%d skew-stalls=%d/%d",
			r.files, r.timeRotations, r.retiredOn, r.clockOff, r.stalls, r.skewsChecked)
		if r.badSeq > 0 {
			fmt.Fprintf(&b, " bad-seq=%d", r.badSeq)
		}
	}
	return b.String()
}
