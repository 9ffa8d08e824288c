package logx

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// Checksums. Every log file names the hash of its checksum (store.File.Sum):
// sha256, or BLAKE3 since FeatureVersion 4, about twice as fast where its
// vector code runs (store.Faster). Checkpoints, snapshot manifests, the
// start's check, repairs, catch-up and compression each check a file with
// the hash it names, so nodes need not agree on one: the same bytes may
// carry a sha256 on one node and a BLAKE3 on another.
//
// What must not happen is an older node being handed a manifest it cannot
// check: it would refuse the catch-up ("file N has no valid sha256") and
// stay behind for as long as a BLAKE3 file is in the log. So a node starts
// its files with BLAKE3 only once every other member of its streams has
// said, since this process started, that it knows BLAKE3; until then, and
// whenever a member says it is older or one not yet heard from does not
// answer, the files it starts name sha256. A member down from the node's
// start keeps it on sha256 until that member answers or is removed: safety
// first, the speed is a bonus. watchSums asks at start and every balance
// round (and every quarter ElectionTimeout for the first 40 while one has
// not answered: a new cluster's nodes start one after another), only the
// members not yet heard from, all at once within one ElectionTimeout; a
// settled cluster sends nothing. It runs on a goroutine of its own, so a
// member that holds its connections open without answering delays nothing
// else (tend's stream events and balance rounds). A node older than this
// is refused as a new member (joinConflict), so a member heard from stays
// heard from (going back to an earlier version is not supported).

// sumsFastRounds is how many times watchSums asks every quarter
// ElectionTimeout at start, while a member has not answered.
const sumsFastRounds = 40

// sumsFeature is the FeatureVersion that knows BLAKE3 checksums.
const sumsFeature = 4

// featureVersion is the FeatureVersion this node reports (a test's seam
// may make it report an older one, and then it behaves as one: it writes
// sha256).
func (sm seams) featureVersion() int {
	if sm.version != 0 {
		return sm.version
	}
	return FeatureVersion
}

// faster is the hash this node would rather use (a test's seam may set
// it, so that both are tested on any machine).
func (n *node) faster() store.Hash {
	if n.seams.faster != nil {
		return *n.seams.faster
	}
	return store.Faster()
}

// watchSums runs chooseSums at start, every quarter ElectionTimeout while a
// member has not answered (at most sumsFastRounds times), and every
// balance round, until Close.
func (n *node) watchSums() {
	defer close(n.sumsDone)
	slow := time.NewTicker(balanceEvery * n.cfg.ElectionTimeout)
	defer slow.Stop()
	fast := time.NewTicker(n.cfg.ElectionTimeout / 4)
	defer fast.Stop()
	soon, left := fast.C, sumsFastRounds
	if !n.chooseSums() {
		soon = nil
	}
	for {
		select {
		case <-n.stop:
			return
		case <-soon:
			if left--; !n.chooseSums() || left == 0 {
				soon = nil
			}
		case <-slow.C:
			n.chooseSums()
		}
	}
}

// chooseSums sets the hash of the files this node's streams start next:
// the faster one once every other member has said it knows it, sha256
// until then (see above). It reports whether a member did not answer, or
// this node is not a member yet. It runs on watchSums's goroutine
// (sumsKnown is watchSums's).
func (n *node) chooseSums() (pending bool) {
	defer n.sumsRounds.Add(1)
	want := n.faster()
	if want == store.SHA256 || n.seams.featureVersion() < sumsFeature {
		return false // files start with sha256: nothing to ask
	}
	streams := n.list()
	members := map[string]bool{} // the other members of every stream
	isMember := true
	for _, s := range streams {
		servers, err := s.serverAddrs(false)
		if err != nil {
			continue // shut down (removed): it starts no files
		}
		// Not a member yet (a node joining starts with no configuration):
		// its peers are not known.
		isMember = isMember && slices.Contains(servers, n.cfg.Addr)
		for _, a := range servers {
			if a != n.cfg.Addr {
				members[a] = true
			}
		}
	}
	for a := range n.sumsKnown {
		if !members[a] {
			delete(n.sumsKnown, a) // removed: asked again if it comes back
		}
	}
	var ask []string
	for a := range members {
		if !n.sumsKnown[a] {
			ask = append(ask, a)
		}
	}
	ctx, cancel := context.WithTimeout(n.stopCtx, n.cfg.ElectionTimeout)
	versions, errs := streams[0].askVersions(ctx, ask, n.seams.sumsAsk)
	cancel()
	for i, err := range errs {
		if err != nil {
			versions[i] = -1 // no answer
		}
	}
	if n.stopCtx.Err() != nil {
		return false // closing
	}
	use := want
	if !isMember {
		use, pending = store.SHA256, true
	}
	for i, a := range ask {
		switch {
		case versions[i] >= sumsFeature:
			n.sumsKnown[a] = true
		case versions[i] < 0:
			use, pending = store.SHA256, true // not heard from yet
		default:
			use = store.SHA256 // older
		}
	}
	for _, s := range streams {
		s.fsm.setNextSum(use)
	}
	return pending
}

// askVersions asks the nodes at addrs for their FeatureVersion, all at
// once, until ctx ends (before, if not nil, is called first in each ask's
// goroutine: a test's seam); errs[i] says why addrs[i] did not answer.
func (lx *Stream) askVersions(ctx context.Context, addrs []string, before func(context.Context, string)) (versions []int, errs []error) {
	versions, errs = make([]int, len(addrs)), make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			if before != nil {
				before(ctx, a)
			}
			var st Stats
			st, _, errs[i] = lx.remoteStatus(ctx, a)
			versions[i] = st.Version
		})
	}
	wg.Wait()
	return versions, errs
}

// setNextSum has the files this stream starts from now on name h: its
// Writer reads nextSum as each file starts (useSegment).
func (f *fsm) setNextSum(h store.Hash) { f.nextSum.Store(uint32(h)) }
