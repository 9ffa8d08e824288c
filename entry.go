package logx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
)

// A batch is the payload of one Raft log entry: many log entries from one
// producer, in the producer's order. Its wire form (version 1) is
//
//	byte     version (1)
//	8 bytes  producer id, big endian
//	uvarint  producer sequence of the first entry (the others follow by one)
//	uvarint  number of entries
//	entries  each: uvarint length, then the record
//
// and a record is
//
//	varint   level (slog.Level)
//	varint   time of the call, Unix nanoseconds UTC (0 when the record has none)
//	bytes    the rendered body of the line, without sequence number or newline
//
// The same bytes travel from the caller's node to the leader (forwarding) and
// into the Raft log, so the leader never re-encodes a follower's entries.
const batchVersion = 1

// batchHeaderMax is an upper bound of the header's size.
const batchHeaderMax = 1 + 8 + binary.MaxVarintLen64*2

var errBadBatch = errors.New("logx: malformed batch")

// batchHeader is the decoded header of a batch.
type batchHeader struct {
	producer  uint64
	firstPSeq uint64
	count     int
}

// appendBatchHeader appends the header of a batch to dst.
func appendBatchHeader(dst []byte, h batchHeader) []byte {
	dst = append(dst, batchVersion)
	dst = binary.BigEndian.AppendUint64(dst, h.producer)
	dst = binary.AppendUvarint(dst, h.firstPSeq)
	dst = binary.AppendUvarint(dst, uint64(h.count))
	return dst
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

// readBatch decodes the header of b and validates it.
func readBatch(b []byte) (batchReader, error) {
	if len(b) < 1+8 {
		return batchReader{}, fmt.Errorf("%w: %d bytes is too short", errBadBatch, len(b))
	}
	if b[0] != batchVersion {
		return batchReader{}, fmt.Errorf("%w: unknown version %d", errBadBatch, b[0])
	}
	r := batchReader{}
	r.header.producer = binary.BigEndian.Uint64(b[1:9])
	b = b[9:]
	first, n := binary.Uvarint(b)
	if n <= 0 {
		return batchReader{}, fmt.Errorf("%w: bad first sequence", errBadBatch)
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) { // every record takes at least one byte
		return batchReader{}, fmt.Errorf("%w: bad entry count", errBadBatch)
	}
	r.header.firstPSeq = first
	r.header.count = int(count)
	r.rest = b[n:]
	return r, nil
}

// Next advances to the next record.
func (r *batchReader) Next() bool {
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

// validateBatch checks that b decodes completely; the leader calls it before
// putting a forwarded batch into the Raft log.
func validateBatch(b []byte, maxBody int) error {
	r, err := readBatch(b)
	if err != nil {
		return err
	}
	for r.Next() {
		if len(r.body) > maxBody {
			return fmt.Errorf("%w: record of %d bytes exceeds %d", ErrEntryTooLarge, len(r.body), maxBody)
		}
	}
	return r.Err()
}
