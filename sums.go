package logx

import (
	"context"
	"errors"
	"net"
	"slices"
	"syscall"

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
// stay behind. So a node starts its files with BLAKE3 only while every
// member of its streams that is up says it knows it (the rule votersKnow
// applies to commands: a member that is down is not held against it, and
// must come back running this version); one that says it does not turns
// the node back to sha256 for the files it starts next. tend asks at
// start and every balance round, and asks a member again only until it
// has answered with this feature (a Dir is never read by an earlier
// version), so a settled cluster sends nothing.

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

// chooseSums sets the hash of the files this node's streams start next:
// the faster one, unless a member says it does not know it; while a member
// does not answer, it leaves the choice as it was. It runs on tend's
// goroutine (sumsKnown is tend's).
func (n *node) chooseSums() {
	want := n.faster()
	if want == store.SHA256 || n.seams.featureVersion() < sumsFeature {
		return // files start with sha256: nothing to ask
	}
	streams := n.list()
	def := streams[0]
	var ask []string
	for _, s := range streams {
		servers, err := s.serverAddrs(false)
		if err != nil {
			return // no configuration yet: ask again next round
		}
		for _, a := range servers {
			if a != n.cfg.Addr && !n.sumsKnown[a] && !slices.Contains(ask, a) {
				ask = append(ask, a)
			}
		}
	}
	down := map[string]bool{}
	for _, p := range def.peers() {
		down[p.Addr] = p.Failing
	}
	use, decided := want, true
	for _, a := range ask {
		ctx, cancel := context.WithTimeout(def.closingCtx, n.cfg.ElectionTimeout)
		st, _, err := def.remoteStatus(ctx, a)
		cancel()
		switch {
		case err == nil && st.Version >= sumsFeature:
			n.sumsKnown[a] = true
		case err == nil:
			use = store.SHA256 // an older node: it could not check a BLAKE3 manifest
		case down[a] || peerDown(err):
			// not held against it (see above)
		default:
			decided = false // no answer: ask again next round
		}
	}
	if use == store.SHA256 || decided {
		for _, s := range streams {
			s.fsm.setNextSum(use)
		}
	}
}

// peerDown says whether err, from asking a peer, means nothing is there:
// nothing listens at its address, or its name does not resolve.
func peerDown(err error) bool {
	var dnsErr *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &dnsErr)
}

// setNextSum has the files this stream starts from now on name h.
func (f *fsm) setNextSum(h store.Hash) {
	f.nextSum.Store(uint32(h))
	if w := f.segPtr.Load(); w != nil {
		w.SetNextSum(h)
	}
}
