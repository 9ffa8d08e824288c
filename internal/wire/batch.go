package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/klauspost/compress/s2"
)

// A batch is the payload of one Raft log entry: many log entries from one
// producer, in the producer's order. Its wire form is
//
//	byte     version: 2 (1, without the flags byte, is still read)
//	byte     flags: FlagCompressed
//	8 bytes  producer id, big endian
//	uvarint  producer sequence of the first entry (the others follow by one)
//	uvarint  number of entries
//	entries  each: uvarint length, then the record; with FlagCompressed
//	         this whole part is one S2 block (github.com/klauspost/compress/s2)
//
// and a record is
//
//	varint   level (slog.Level)
//	varint   time of the call, Unix nanoseconds UTC (0 when the record has none)
//	bytes    the rendered body of the line, without sequence number or newline
//
// The same bytes travel from the caller's node to the leader (forwarding) and
// into the Raft log, so the leader never re-encodes a follower's entries.
const (
	V1 = 1
	V2 = 2
)

// Batch flags.
const (
	// FlagCompressed: the records are one S2 block.
	FlagCompressed byte = 1 << iota
	knownFlags          = FlagCompressed
)

// compressMin is the smallest records part worth compressing: below it a
// batch is a handful of entries, and Append's latency matters more.
const compressMin = 2 << 10

// MaxDecodedBatch bounds a compressed batch's records part once expanded.
// It is a constant, not a setting, so that every node decides alike; the
// leader checks forwarded batches against the tighter frame limit.
const MaxDecodedBatch = 256 << 20

// HeaderMax is an upper bound of the header's size.
const HeaderMax = 2 + 8 + binary.MaxVarintLen64*2

var ErrBadBatch = errors.New("logx: malformed batch")

// Header is the decoded header of a batch.
type Header struct {
	Producer  uint64 // the producer's id
	FirstPSeq uint64 // producer sequence of the first entry
	Count     int    // number of entries
	Flags     byte   // FlagCompressed, set by NewBatch
}

// AppendHeader appends the header of a batch to dst.
func AppendHeader(dst []byte, h Header) []byte {
	dst = append(dst, V2, h.Flags)
	dst = binary.BigEndian.AppendUint64(dst, h.Producer)
	dst = binary.AppendUvarint(dst, h.FirstPSeq)
	dst = binary.AppendUvarint(dst, uint64(h.Count))
	return dst
}

// HeaderLen is the size of h's encoding.
func HeaderLen(h Header) int {
	var tmp [HeaderMax]byte
	return len(AppendHeader(tmp[:0], h))
}

// NewBatch returns a new batch of header h and the records recs (appended
// with AppendRecord). With compress, records of compressMin bytes or more
// are compressed, unless that does not make them smaller.
//
// The batch's capacity is its length: a batch lives on in Raft's log cache
// and in flight, and compressing straight into a buffer sized for the
// worst case (more than the records themselves) kept several times the
// compressed bytes alive per batch (issue 11). The compressor writes into
// a pooled buffer, and the batch is a copy of what it wrote.
func NewBatch(h Header, recs []byte, compress bool) []byte {
	if need := s2.MaxEncodedLen(len(recs)); compress && len(recs) >= compressMin && need > 0 {
		bp := encodeBufs.Get().(*[]byte)
		defer encodeBufs.Put(bp)
		if cap(*bp) < need {
			*bp = make([]byte, need)
		}
		if enc := s2.Encode((*bp)[:cap(*bp)], recs); len(enc) < len(recs) {
			hc := h
			hc.Flags |= FlagCompressed
			batch := AppendHeader(make([]byte, 0, HeaderLen(hc)+len(enc)), hc)
			return append(batch, enc...)
		}
	}
	h.Flags &^= FlagCompressed
	batch := AppendHeader(make([]byte, 0, HeaderLen(h)+len(recs)), h)
	return append(batch, recs...)
}

// encodeBufs holds NewBatch's compression buffers.
var encodeBufs = sync.Pool{New: func() any { return new([]byte) }}

// AppendRecord appends one length-prefixed record to a batch.
func AppendRecord(dst []byte, level slog.Level, unixNano int64, body []byte) []byte {
	var tmp [2 * binary.MaxVarintLen64]byte
	n := binary.PutVarint(tmp[:], int64(level))
	n += binary.PutVarint(tmp[n:], unixNano)
	dst = binary.AppendUvarint(dst, uint64(n+len(body)))
	dst = append(dst, tmp[:n]...)
	return append(dst, body...)
}

// RecordSize is the number of bytes AppendRecord adds for a body of n bytes,
// at most.
func RecordSize(n int) int { return 3*binary.MaxVarintLen64 + n }

// Reader iterates over the records of an encoded batch without
// allocating. Next returns false at the end or on malformed input; Err tells
// which.
type Reader struct {
	Header Header

	// The current record, after Next returned true. Body points into the
	// batch, or for a compressed batch into the scratch buffer (or the
	// expanded records ReadExpandedBatch was given).
	Level    slog.Level
	UnixNano int64
	Body     []byte

	records []byte // the whole records part, expanded
	from    source
	rest    []byte
	read    int
	err     error
}

// source says where a Reader's records are.
type source uint8

const (
	inBatch    source = iota // a plain batch's records, read in place
	inScratch                // decoded into the scratch buffer
	inExpanded               // the expanded records the caller gave
)

// Records returns the batch's records part, expanded: what
// ReadExpandedBatch takes to read the batch again without decoding it. It
// points into the batch, the scratch buffer or the expanded records given.
func (r *Reader) Records() []byte { return r.records }

// Decoded reports whether the records were decoded into the scratch
// buffer (Records then points there, never into the batch).
func (r *Reader) Decoded() bool { return r.from == inScratch }

// UsedExpanded reports whether the records are the expanded ones
// ReadExpandedBatch was given.
func (r *Reader) UsedExpanded() bool { return r.from == inExpanded }

// Compressed reports whether batch b says its records are one S2 block.
func Compressed(b []byte) bool { return len(b) > 1 && b[0] == V2 && b[1]&FlagCompressed != 0 }

// ReadBatch decodes the header of b and validates it. A compressed batch's
// records are expanded into *scratch (grown as needed, kept by the caller
// for the next batch), at most limit bytes of them.
func ReadBatch(b []byte, scratch *[]byte, limit int) (Reader, error) {
	return ReadExpandedBatch(b, nil, scratch, limit)
}

// ReadExpandedBatch is ReadBatch for a caller that may hold the records
// part of b already expanded (expanded: what decoding it gives, as the node
// that encoded or checked the batch has): a compressed batch whose records
// expand to len(expanded) bytes is read from expanded, not decoded again.
// Records read from the batch or decoded are walked once first, so that
// Next cannot fail once ReadExpandedBatch succeeds. Expanded records are
// not: they come from an encoder or a check that walked them already
// (OpenBatch, then Next to the end and Err), and the caller vouches that
// they are exactly what decoding b gives.
func ReadExpandedBatch(b, expanded []byte, scratch *[]byte, limit int) (Reader, error) {
	r, err := openBatch(b, expanded, scratch, limit)
	if err != nil || r.from == inExpanded {
		return r, err
	}
	// Walk the records once, so that a batch is taken whole or not at all.
	check := r
	for check.Next() {
	}
	if err := check.Err(); err != nil {
		return Reader{}, err
	}
	return r, nil
}

// OpenBatch is ReadBatch without the first walk: it decodes the header and
// expands the records, and Next checks each record as it comes, so it may
// stop early. The caller must not act on any record before Next has
// returned false and Err nil: a check of the whole batch, which walks the
// records once instead of twice.
func OpenBatch(b []byte, scratch *[]byte, limit int) (Reader, error) {
	return openBatch(b, nil, scratch, limit)
}

func openBatch(b, expanded []byte, scratch *[]byte, limit int) (Reader, error) {
	if len(b) < 1 {
		return Reader{}, fmt.Errorf("%w: empty", ErrBadBatch)
	}
	r := Reader{}
	switch b[0] {
	case V1:
		b = b[1:]
	case V2:
		if len(b) < 2 {
			return Reader{}, fmt.Errorf("%w: no flags", ErrBadBatch)
		}
		r.Header.Flags = b[1]
		if r.Header.Flags&^knownFlags != 0 {
			return Reader{}, fmt.Errorf("%w: unknown flags %#x", ErrBadBatch, r.Header.Flags)
		}
		b = b[2:]
	default:
		return Reader{}, fmt.Errorf("%w: unknown version %d", ErrBadBatch, b[0])
	}
	if len(b) < 8 {
		return Reader{}, fmt.Errorf("%w: too short", ErrBadBatch)
	}
	r.Header.Producer = binary.BigEndian.Uint64(b[:8])
	b = b[8:]
	first, n := binary.Uvarint(b)
	if n <= 0 {
		return Reader{}, fmt.Errorf("%w: bad first sequence", ErrBadBatch)
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return Reader{}, fmt.Errorf("%w: bad entry count", ErrBadBatch)
	}
	b = b[n:]
	if r.Header.Flags&FlagCompressed != 0 {
		size, err := s2.DecodedLen(b)
		if err != nil {
			return Reader{}, fmt.Errorf("%w: %v", ErrBadBatch, err)
		}
		if size > limit {
			return Reader{}, fmt.Errorf("%w: expands to %d bytes, the limit is %d", ErrBadBatch, size, limit)
		}
		if expanded != nil && len(expanded) == size {
			b, r.from = expanded, inExpanded
		} else {
			if cap(*scratch) < size {
				*scratch = make([]byte, size)
			}
			if b, err = s2.Decode((*scratch)[:size], b); err != nil {
				return Reader{}, fmt.Errorf("%w: %v", ErrBadBatch, err)
			}
			r.from = inScratch
		}
	}
	if count > uint64(len(b)) { // every record takes at least one byte
		return Reader{}, fmt.Errorf("%w: bad entry count", ErrBadBatch)
	}
	r.Header.FirstPSeq = first
	r.Header.Count = int(count)
	r.rest, r.records = b, b
	return r, nil
}

// Index is the index in the batch of the current record (0 for the first).
func (r *Reader) Index() int { return r.read - 1 }

// Next advances to the next record.
func (r *Reader) Next() bool {
	if r.err != nil || r.read >= r.Header.Count {
		return false
	}
	size, n := binary.Uvarint(r.rest)
	if n <= 0 || size > uint64(len(r.rest)-n) {
		r.err = fmt.Errorf("%w: record %d: bad length", ErrBadBatch, r.read)
		return false
	}
	rec := r.rest[n : n+int(size)]
	r.rest = r.rest[n+int(size):]
	level, n1 := binary.Varint(rec)
	if n1 <= 0 {
		r.err = fmt.Errorf("%w: record %d: bad level", ErrBadBatch, r.read)
		return false
	}
	ts, n2 := binary.Varint(rec[n1:])
	if n2 <= 0 {
		r.err = fmt.Errorf("%w: record %d: bad time", ErrBadBatch, r.read)
		return false
	}
	r.Level = slog.Level(level)
	r.UnixNano = ts
	r.Body = rec[n1+n2:]
	r.read++
	return true
}

// Err reports why Next stopped early, or nil.
func (r *Reader) Err() error {
	if r.err == nil && r.read < r.Header.Count {
		return fmt.Errorf("%w: %d of %d records", ErrBadBatch, r.read, r.Header.Count)
	}
	if r.err == nil && len(r.rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadBatch, len(r.rest))
	}
	return r.err
}
