package logx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/klauspost/compress/s2"
)

// A batch is the payload of one Raft log entry: many log entries from one
// producer, in the producer's order. Its wire form is
//
//	byte     version: 2 (1, without the flags byte, is still read)
//	byte     flags: flagCompressed
//	8 bytes  producer id, big endian
//	uvarint  producer sequence of the first entry (the others follow by one)
//	uvarint  number of entries
//	entries  each: uvarint length, then the record; with flagCompressed
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
	batchV1 = 1
	batchV2 = 2
)

// Batch flags.
const (
	// flagCompressed: the records are one S2 block.
	flagCompressed byte = 1 << iota
	knownFlags          = flagCompressed
)

// compressMin is the smallest records part worth compressing: below it a
// batch is a handful of entries, and Append's latency matters more.
const compressMin = 2 << 10

// maxDecodedBatch bounds a compressed batch's records part once expanded.
// It is a constant, not a setting, so that every node decides alike; the
// leader checks forwarded batches against the tighter frame limit.
const maxDecodedBatch = 256 << 20

// batchHeaderMax is an upper bound of the header's size.
const batchHeaderMax = 2 + 8 + binary.MaxVarintLen64*2

var errBadBatch = errors.New("logx: malformed batch")

// batchHeader is the decoded header of a batch.
type batchHeader struct {
	producer  uint64
	firstPSeq uint64
	count     int
	flags     byte // flagCompressed, set by newBatch
}

// appendBatchHeader appends the header of a batch to dst.
func appendBatchHeader(dst []byte, h batchHeader) []byte {
	dst = append(dst, batchV2, h.flags)
	dst = binary.BigEndian.AppendUint64(dst, h.producer)
	dst = binary.AppendUvarint(dst, h.firstPSeq)
	dst = binary.AppendUvarint(dst, uint64(h.count))
	return dst
}

// batchHeaderLen is the size of h's encoding.
func batchHeaderLen(h batchHeader) int {
	var tmp [batchHeaderMax]byte
	return len(appendBatchHeader(tmp[:0], h))
}

// newBatch returns a new batch of header h and the records recs (appended
// with appendRecord). With compress, records of compressMin bytes or more
// are compressed, unless that does not make them smaller.
func newBatch(h batchHeader, recs []byte, compress bool) []byte {
	if compress && len(recs) >= compressMin {
		hc := h
		hc.flags |= flagCompressed
		batch := appendBatchHeader(make([]byte, 0, batchHeaderMax+s2.MaxEncodedLen(len(recs))), hc)
		n := len(batch)
		if enc := s2.Encode(batch[n:cap(batch)], recs); len(enc) < len(recs) {
			return batch[:n+len(enc)]
		}
	}
	h.flags &^= flagCompressed
	batch := appendBatchHeader(make([]byte, 0, batchHeaderMax+len(recs)), h)
	return append(batch, recs...)
}

// appendRecord appends one length-prefixed record to a batch.
func appendRecord(dst []byte, level slog.Level, unixNano int64, body []byte) []byte {
	var tmp [2 * binary.MaxVarintLen64]byte
	n := binary.PutVarint(tmp[:], int64(level))
	n += binary.PutVarint(tmp[n:], unixNano)
	dst = binary.AppendUvarint(dst, uint64(n+len(body)))
	dst = append(dst, tmp[:n]...)
	return append(dst, body...)
}

// recordSize is the number of bytes appendRecord adds for a body of n bytes,
// at most.
func recordSize(n int) int { return 3*binary.MaxVarintLen64 + n }

// batchReader iterates over the records of an encoded batch without
// allocating. Next returns false at the end or on malformed input; Err tells
// which.
type batchReader struct {
	header batchHeader
	rest   []byte
	read   int
	err    error

	// The current record.
	level    slog.Level
	unixNano int64
	body     []byte
}

// readBatch decodes the header of b and validates it. A compressed batch's
// records are expanded into *scratch (grown as needed, kept by the caller
// for the next batch), at most limit bytes of them.
func readBatch(b []byte, scratch *[]byte, limit int) (batchReader, error) {
	if len(b) < 1 {
		return batchReader{}, fmt.Errorf("%w: empty", errBadBatch)
	}
	r := batchReader{}
	switch b[0] {
	case batchV1:
		b = b[1:]
	case batchV2:
		if len(b) < 2 {
			return batchReader{}, fmt.Errorf("%w: no flags", errBadBatch)
		}
		r.header.flags = b[1]
		if r.header.flags&^knownFlags != 0 {
			return batchReader{}, fmt.Errorf("%w: unknown flags %#x", errBadBatch, r.header.flags)
		}
		b = b[2:]
	default:
		return batchReader{}, fmt.Errorf("%w: unknown version %d", errBadBatch, b[0])
	}
	if len(b) < 8 {
		return batchReader{}, fmt.Errorf("%w: too short", errBadBatch)
	}
	r.header.producer = binary.BigEndian.Uint64(b[:8])
	b = b[8:]
	first, n := binary.Uvarint(b)
	if n <= 0 {
		return batchReader{}, fmt.Errorf("%w: bad first sequence", errBadBatch)
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return batchReader{}, fmt.Errorf("%w: bad entry count", errBadBatch)
	}
	b = b[n:]
	if r.header.flags&flagCompressed != 0 {
		size, err := s2.DecodedLen(b)
		if err != nil {
			return batchReader{}, fmt.Errorf("%w: %v", errBadBatch, err)
		}
		if size > limit {
			return batchReader{}, fmt.Errorf("%w: expands to %d bytes, the limit is %d", errBadBatch, size, limit)
		}
		if cap(*scratch) < size {
			*scratch = make([]byte, size)
		}
		if b, err = s2.Decode((*scratch)[:size], b); err != nil {
			return batchReader{}, fmt.Errorf("%w: %v", errBadBatch, err)
		}
	}
	if count > uint64(len(b)) { // every record takes at least one byte
		return batchReader{}, fmt.Errorf("%w: bad entry count", errBadBatch)
	}
	r.header.firstPSeq = first
	r.header.count = int(count)
	r.rest = b
	// Walk the records once, so that a batch is taken whole or not at all:
	// once readBatch succeeds, Next cannot fail.
	check := r
	for check.next() {
	}
	if err := check.Err(); err != nil {
		return batchReader{}, err
	}
	return r, nil
}

// Next advances to the next record.
func (r *batchReader) Next() bool { return r.next() }

func (r *batchReader) next() bool {
	if r.err != nil || r.read >= r.header.count {
		return false
	}
	size, n := binary.Uvarint(r.rest)
	if n <= 0 || size > uint64(len(r.rest)-n) {
		r.err = fmt.Errorf("%w: record %d: bad length", errBadBatch, r.read)
		return false
	}
	rec := r.rest[n : n+int(size)]
	r.rest = r.rest[n+int(size):]
	level, n1 := binary.Varint(rec)
	if n1 <= 0 {
		r.err = fmt.Errorf("%w: record %d: bad level", errBadBatch, r.read)
		return false
	}
	ts, n2 := binary.Varint(rec[n1:])
	if n2 <= 0 {
		r.err = fmt.Errorf("%w: record %d: bad time", errBadBatch, r.read)
		return false
	}
	r.level = slog.Level(level)
	r.unixNano = ts
	r.body = rec[n1+n2:]
	r.read++
	return true
}

// Err reports why Next stopped early, or nil.
func (r *batchReader) Err() error {
	if r.err == nil && r.read < r.header.count {
		return fmt.Errorf("%w: %d of %d records", errBadBatch, r.read, r.header.count)
	}
	if r.err == nil && len(r.rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadBatch, len(r.rest))
	}
	return r.err
}

// validateBatch checks that b decodes completely, its records expanding to
// at most limit bytes, that it holds at least one record, and that every
// record is at most maxBody bytes and renders in format f as exactly one
// well-formed line (checkRecord); the leader calls it before putting a
// forwarded batch into the Raft log.
func validateBatch(b []byte, f Format, maxBody, limit int, scratch *[]byte) error {
	r, err := readBatch(b, scratch, limit)
	if err != nil {
		return err
	}
	if r.header.count == 0 {
		return fmt.Errorf("%w: no entries", errBadBatch)
	}
	for r.Next() {
		if len(r.body) > maxBody {
			return fmt.Errorf("%w: record of %d bytes exceeds %d", ErrEntryTooLarge, len(r.body), maxBody)
		}
		if err := checkRecord(f, r.level, r.unixNano, r.body); err != nil {
			return fmt.Errorf("record %d: %w", r.read-1, err)
		}
	}
	return r.Err()
}
