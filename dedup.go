package logx

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
)

// Deduplication. Every batch carries its producer's id (random, one per
// Logx or Client incarnation) and the producer sequence numbers of its
// entries. A producer has one batch in flight at a time and retries only
// that batch, byte for byte, so apply needs to know of each producer only
// its last batch: a batch that is exactly the last one again is a repeat,
// dropped and answered with the sequence number the first copy got; a
// batch after it is new; anything else (older entries, or a batch that
// overlaps the last) is refused with an error and nothing is written.
//
// What apply remembers of a producer is pruned once the producer has been
// silent for the dedup window (by the log clock, so every node prunes at
// the same log position), and the table never holds more than
// maxProducers: beyond that the producers silent the longest go first. A
// producer retries a batch that may have been sent for at most half the
// window, then gives up with ErrOutcomeUnknown, so no repeat can arrive
// after its producer was forgotten.
//
// With mutual TLS the leader stamps every batch with the identity of the
// certificate it came with (the first 16 bytes of the sha256 of the
// sender's certificate, in the Raft entry's Extensions), and a producer id
// belongs to the identity that first used it: another certificate holder
// cannot use it to make the owner's entries look like repeats.

// producerState is what apply knows of one producer: its last batch.
type producerState struct {
	PSeq  uint64 `json:"pseq"`            // producer sequence of the last batch's last entry
	Seq   uint64 `json:"seq"`             // the log sequence number that entry got
	First uint64 `json:"first,omitempty"` // producer sequence of the last batch's first entry
	Index uint64 `json:"index,omitempty"` // Raft index of the last batch (eviction order)
	Seen  int64  `json:"seen,omitempty"`  // log clock at the last batch (pruning)
	Owner string `json:"owner,omitempty"` // certificate identity, hex; "" without TLS
	// Sum is a CRC-32C of the last batch's Raft entry (0: not known, as
	// from an older version): a repeat is the same batch again, not
	// merely the same numbers, which another sender of this id could
	// have used first (TestSpoofedProducer).
	Sum uint32 `json:"sum,omitempty"`
}

// batchSums is the table of Sum's CRC (Castagnoli: in hardware on most
// CPUs, so that every batch applied costs next to nothing more).
var batchSums = crc32.MakeTable(crc32.Castagnoli)

// maxProducers bounds the deduplication table: about 100 bytes each in
// state.json and in every snapshot.
const maxProducers = 1 << 14

// defaultDedupWindow is Config.DedupWindow's default.
const defaultDedupWindow = 10 * 60e9

// minDedupWindow is the shortest DedupWindow a Config, or the cluster's
// settings in the log, may name: each try of a batch is cut at the window
// after the first (tryBy), so a window of nanoseconds would fail every
// batch unsent.
const minDedupWindow = time.Second

// refusedError is a batch apply refused: nothing of it was written, and
// retrying it cannot help. producer says the refusal is about the
// producer id (another identity's, or an out-of-order sequence): the
// sender should continue under a new id.
type refusedError struct {
	msg      string
	producer bool
}

func (e *refusedError) Error() string { return "logx: " + e.msg }

// producerConflict prefixes the message of a refusal about the producer
// id, so that a follower or Client that gets it as a rejected answer
// knows to take a new id.
const producerConflict = "producer conflict: "

// identityLen is the length of a certificate identity in Extensions.
const identityLen = 16

// certIdentity is the identity a certificate gives its batches.
func certIdentity(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	sum := sha256.Sum256(cert.Raw)
	return sum[:identityLen]
}

// tlsIdentities are this node's own certificate identities, those its
// peers see when it forwards (the certificate a TLS client presents:
// GetClientCertificate's if set, else the first of Certificates): for its
// batches (certIdentity) and its clock reports (subjectIdentity). Both nil
// without TLS.
func tlsIdentities(cfg *tls.Config) (batches, clocks []byte, err error) {
	if cfg == nil {
		return nil, nil, nil
	}
	var der []byte
	switch {
	case cfg.GetClientCertificate != nil:
		c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err == nil && c != nil && len(c.Certificate) > 0 {
			der = c.Certificate[0]
		}
	case len(cfg.Certificates) > 0 && len(cfg.Certificates[0].Certificate) > 0:
		der = cfg.Certificates[0].Certificate[0]
	}
	if der == nil {
		return nil, nil, errors.New("logx: Config.TLS holds no certificate of this node")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("logx: this node's certificate: %w", err)
	}
	return certIdentity(cert), subjectIdentity(cert), nil
}

// ownerOf returns the identity a leader stamped on a Raft entry, as hex.
func ownerOf(ext []byte) string {
	if len(ext) != identityLen {
		return ""
	}
	return hex.EncodeToString(ext)
}

// applyBatch writes the lines of one batch, unless it is a repeat or is
// refused. An error is a write error (the node then stops applying); a
// refusal or a malformed batch is in the result.
func (f *fsm) applyBatch(l *raft.Log, line *[]byte) (applyResult, error) {
	st := &f.st
	var expanded []byte
	if f.expanded != nil {
		if recs := f.expanded.take(l.Data); recs != nil {
			defer putRecords(recs) // after the lines are written
			expanded = *recs
		}
	}
	r, err := wire.ReadExpandedBatch(l.Data, expanded, &f.scratch, wire.MaxDecodedBatch)
	if err == nil && r.UsedExpanded() {
		f.expanded.used.Add(1)
		if verifyLoans {
			f.verifyLoan(l, r.Records())
		}
	}
	if err != nil {
		// The leader validates batches, so this is a bug or a corrupted
		// log; every node skips it the same way.
		f.logf("logx: skipping Raft entry %d: %v", l.Index, err)
		return applyResult{err: err}, nil
	}
	h := r.Header
	if h.Count == 0 || h.FirstPSeq == 0 || h.FirstPSeq-1 > math.MaxUint64-uint64(h.Count) {
		return applyResult{err: &refusedError{msg: fmt.Sprintf("batch of %d entries from producer sequence %d", h.Count, h.FirstPSeq)}}, nil
	}
	lastPSeq := h.FirstPSeq + uint64(h.Count) - 1
	owner := ownerOf(l.Extensions)
	p := st.Producers[h.Producer]
	if p != nil {
		first := p.First
		if first == 0 && lastPSeq == p.PSeq {
			first = h.FirstPSeq // a checkpoint from before First was kept
		}
		switch {
		case p.Owner != owner:
			return applyResult{err: &refusedError{producer: true,
				msg: fmt.Sprintf("%sproducer %016x belongs to another certificate", producerConflict, h.Producer)}}, nil
		case h.FirstPSeq == first && lastPSeq == p.PSeq && p.Seq >= lastPSeq-first+1:
			// The last batch again (a retry): written once.
			p.Index, p.Seen = l.Index, st.Clock // (as an older version does either way)
			if sum := crc32.Checksum(l.Data, batchSums); p.Sum != 0 && sum != 0 && sum != p.Sum {
				// The same numbers, other contents: the last batch was
				// another sender's (a bug, or a hostile peer with this
				// id), and this one must not be answered as written.
				return applyResult{err: &refusedError{producer: true,
					msg: fmt.Sprintf("%sproducer %016x sent entries %d-%d again with other contents", producerConflict, h.Producer, h.FirstPSeq, lastPSeq)}}, nil
			}
			f.dups.Add(uint64(h.Count))
			return applyResult{firstSeq: p.Seq - (lastPSeq - first)}, nil
		case h.FirstPSeq <= p.PSeq:
			return applyResult{err: &refusedError{producer: true,
				msg: fmt.Sprintf("%sproducer %016x sent entries %d-%d, its last batch was %d-%d", producerConflict, h.Producer, h.FirstPSeq, lastPSeq, p.First, p.PSeq)}}, nil
		}
	}
	firstSeq := st.Seq + 1
	n := uint64(0)
	for r.Next() {
		st.Seq++
		*line = appendLine((*line)[:0], f.format, st.Seq, r.Body)
		if err := f.seg.Add(st.Seq, *line, f.lineClock(r.UnixNano), r.UnixNano); err != nil {
			return applyResult{}, err
		}
		f.entries.Add(1)
		f.bytes.Add(uint64(len(*line)))
		n++
	}
	if err := r.Err(); err != nil {
		f.logf("logx: Raft entry %d: %v", l.Index, err)
	}
	if n == 0 {
		return applyResult{err: r.Err()}, nil
	}
	if p == nil {
		p = &producerState{Owner: owner}
		st.Producers[h.Producer] = p
		defer f.evictProducers()
	}
	p.First, p.PSeq, p.Seq = h.FirstPSeq, h.FirstPSeq+n-1, st.Seq
	p.Index, p.Seen = l.Index, st.Clock
	p.Sum = crc32.Checksum(l.Data, batchSums)
	return applyResult{firstSeq: firstSeq}, nil
}

// verifyLoan panics unless recs, the records lent for l's batch, are what
// decoding it gives (tests only: verifyLoans).
func (f *fsm) verifyLoan(l *raft.Log, recs []byte) {
	var scratch []byte
	r, err := wire.ReadBatch(l.Data, &scratch, wire.MaxDecodedBatch)
	if err != nil || !bytes.Equal(r.Records(), recs) {
		panic(fmt.Sprintf("logx: the records lent for Raft entry %d are not the batch's (decode error: %v)", l.Index, err))
	}
}

// retryFits reports whether a sender may start another try of a batch:
// within half the dedup window of the start of the first try that may
// have reached a leader (first). The cluster remembers a producer for the
// window after its last batch, which is committed after first, by the log
// clock, which trails real time by up to the interval of the voters'
// clock reports (10 s; about 70 s for the first batch after the stream was
// idle, when voters report once a minute). A try is cut at its timeout
// (tryBy), so with the default window (10 minutes) a repeat arrives
// minutes before the producer is forgotten; a window under about three
// minutes leaves no such margin (docs/guarantees.md).
// Before, the half window ran from the end of the first try, and a
// Client's hops after "not the leader" hints were not checked.
func retryFits(first time.Time, window time.Duration) bool {
	return time.Since(first) <= window/2
}

// tryBy is when a try of a batch that starts at start must be over, its
// dial, handshake, batch and answer included: its timeout after start,
// and no later than the dedup window after the first try that may have
// reached a leader (first; zero if none has, when start counts). A try
// that has not ended by then is abandoned and its connection reset
// (abortConn), so that what the kernel still holds of the batch is not
// delivered after it. With retryFits, a batch then reaches a leader within
// the window of its first try: retryFits lets a try start within half of
// it, and the try is cut at the window. (A node's ForwardTimeout is at
// most half its own Config's window, but a node whose Config leaves the
// window zero takes the cluster's, which may be shorter.)
func tryBy(start, first time.Time, timeout, window time.Duration) time.Time {
	by := start.Add(timeout)
	if first.IsZero() {
		first = start
	}
	if limit := first.Add(window); window > 0 && limit.Before(by) {
		by = limit
	}
	return by
}

// pruneProducers forgets the producers silent for longer than the dedup
// window, by the log clock. It scans the table at most every eighth of a
// window of log time.
func (f *fsm) pruneProducers() {
	w := int64(f.policy.dedupWindow)
	st := &f.st
	if w <= 0 || st.Clock == 0 || st.Clock-st.PrunedAt < w/8 {
		return
	}
	st.PrunedAt = st.Clock
	for id, p := range st.Producers {
		if p.Seen < st.Clock-w {
			delete(st.Producers, id)
		}
	}
}

// evictProducers keeps the table within maxProducers: past it, producers
// go, down to seven eighths of the bound (so that this runs once per many
// new producers). First those silent for half the window by the log clock,
// which start no new try of a batch after that (retryFits); only if those
// are not enough, the ones whose last batch is oldest in the log. A try
// started before half the window may still arrive until the window ends
// (tryBy), so every producer forgotten here within the window of its last
// batch is one whose repeat would no longer be recognised: the log
// reports them (Stats.EvictedProducers). That takes more than maxProducers
// producers within one window (and an eighth: pruneProducers' period).
func (f *fsm) evictProducers() {
	if len(f.st.Producers) <= maxProducers {
		return
	}
	type entry struct {
		id     uint64
		index  uint64
		recent bool // silent for less than half the window
		early  bool // silent for less than the window: a try may still come
	}
	horizon := f.st.Clock - int64(f.policy.dedupWindow/2)
	window := f.st.Clock - int64(f.policy.dedupWindow)
	all := make([]entry, 0, len(f.st.Producers))
	for id, p := range f.st.Producers {
		unknown := f.st.Clock == 0
		all = append(all, entry{id, p.Index, unknown || p.Seen >= horizon, unknown || p.Seen >= window})
	}
	slices.SortFunc(all, func(a, b entry) int {
		if a.recent != b.recent {
			if a.recent {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.index, b.index), cmp.Compare(a.id, b.id))
	})
	early := 0
	for _, e := range all[:len(all)-maxProducers*7/8] {
		delete(f.st.Producers, e.id)
		if e.early {
			early++
		}
	}
	if early > 0 {
		f.evicted.Add(uint64(early))
		f.logf("logx: more than %d producers within the dedup window: forgot %d of them early; a repeat of their last batch still on its way would be written again", maxProducers, early)
	}
}

// checkReplicated checks what a checkpoint or a snapshot says of the
// producers, the voters and their clocks before any of it is used: no
// empty entries, sequence numbers that agree, tables within their bounds,
// clocks only of voters.
func checkReplicated(producers map[uint64]*producerState, voters []string, clocks map[string]int64, owners map[string]string, seen map[string]int64, clock int64, rules int) error {
	if len(producers) > maxProducers {
		return fmt.Errorf("%d producers, more than %d", len(producers), maxProducers)
	}
	for id, p := range producers {
		if p == nil || p.PSeq == 0 || p.Seq == 0 || p.First > p.PSeq || p.First > 0 && p.Seq < p.PSeq-p.First+1 {
			return fmt.Errorf("producer %016x: %+v", id, p)
		}
	}
	if len(voters) > maxVoters {
		return fmt.Errorf("%d voters, more than %d", len(voters), maxVoters)
	}
	for _, v := range voters {
		if v == "" || len(v) > maxServerID {
			return fmt.Errorf("a voter named %q", v)
		}
	}
	for id, t := range clocks {
		if !slices.Contains(voters, id) || t <= 0 {
			return fmt.Errorf("a clock of %q (%d), not a voter's", id, t)
		}
	}
	for id := range owners {
		if !slices.Contains(voters, id) {
			return fmt.Errorf("a clock owner of %q, not a voter", id)
		}
	}
	for id, t := range seen {
		if _, ok := clocks[id]; !ok || t < 0 || t > clock {
			return fmt.Errorf("a clock report of %q seen at %d, with log clock %d", id, t, clock)
		}
	}
	if clock < 0 {
		return fmt.Errorf("log clock %d", clock)
	}
	if rules < 0 {
		return fmt.Errorf("apply rules %d", rules)
	}
	return nil
}

// isProducerConflict reports whether a rejection is about the producer id.
func isProducerConflict(err error) bool {
	var rej *rejectedError
	var ref *refusedError
	switch {
	case errors.As(err, &ref):
		return ref.producer
	case errors.As(err, &rej):
		return strings.HasPrefix(rej.msg, producerConflict) || strings.Contains(rej.msg, ": "+producerConflict)
	}
	return false
}
