package logx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/types"
)

// summedLog is raft-wal with a checksum on every Raft entry it stores,
// checked on every read. raft-wal v0.4.1 checks a CRC only when it opens
// its open segment, and only of the last batch written to it (a torn
// write); it reads every other entry without a check, so bytes that
// changed on the disk (bit rot, a stray write, a disk returning wrong data) and still
// decode went to Raft as they were: into this node's files when it
// applies them after a restart, and to a lagging follower that this
// node's Raft sends them to.
//
// Each entry is stored with a trailer after its Extensions (raft-wal
// keeps those as bytes): a CRC-32C of the entry's index, term, type,
// data, extensions and time, then sumTag. A read strips the trailer and
// checks the sum: Raft, the state machine and peers see the entry as
// Raft gave it (the cache above holds the entries Raft gave, unchanged).
// Every entry from index from on has a trailer (an upgraded node's log
// records from as it opens: its last index then, plus one). An entry
// before it may have been stored by an earlier version: one whose
// Extensions are of a length logx stored before sums (none, or a
// certificate identity) is read unchecked; any other must have its
// trailer, so that a trailer damaged away is damage there too.
//
// Damage (a mismatch, a trailer missing where one must be, an entry that
// does not decode) is an error that wraps raft-wal's types.ErrCorrupt, as
// the damaged frames raft-wal finds itself: it is not tried again
// (logGuard.retryable), New returns it when NewRaft reads the entry
// (newRaft), Raft panics on it when it is an entry to apply
// (processLogs), rather than writing what it read, and the guard answers
// Raft "not found" for an applied one the newest snapshot holds
// (logGuard.GetLog).
//
// The trailer is this node's own: nothing on the wire changes, and a
// Raft log written before this version reads as before. An earlier
// version reading a log written by this one would take the trailer for
// part of Extensions (going back to an earlier version is not
// supported: docs/guarantees.md, "Upgrades").
type summedLog struct {
	raft.LogStore                      // raft-wal
	from          uint64               // every entry from this index on has a trailer
	logf          func(string, ...any) // nil: no log
}

// sumsFromKey is where raft-wal's stable store keeps summedLog.from.
var sumsFromKey = []byte("logx-sums-from")

// newSummedLog opens the checksums of the Raft log w. If the index from
// which entries have them cannot be recorded (a full disk), entries are
// checked where they have a trailer, and the next start tries again.
func newSummedLog(w interface {
	raft.LogStore
	raft.StableStore
}, logf func(string, ...any)) (summedLog, error) {
	from, err := w.GetUint64(sumsFromKey)
	if err != nil || from != 0 {
		return summedLog{w, from, logf}, err
	}
	last, err := w.LastIndex()
	if err != nil {
		return summedLog{}, err
	}
	if err := w.SetUint64(sumsFromKey, last+1); err != nil {
		logf("logx: recording where the Raft log's checksums start: %v; entries without one are read unchecked until a start records it", err)
		return summedLog{w, math.MaxUint64, logf}, nil
	}
	return summedLog{w, last + 1, logf}, nil
}

// sumTag ends every trailer.
var sumTag = [4]byte{'l', 'x', 's', 1}

// trailerLen is the length of a trailer: the sum, then sumTag.
const trailerLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// entrySum is the CRC-32C of l with ext as its Extensions. Data's length
// goes first, so that no byte can move from Data to ext unseen; the time
// goes as its seconds and nanoseconds (raft-wal keeps both exactly, but
// not the time zone, which Raft does not read).
func entrySum(l *raft.Log, ext []byte) uint32 {
	var head [37]byte
	binary.LittleEndian.PutUint64(head[0:], l.Index)
	binary.LittleEndian.PutUint64(head[8:], l.Term)
	head[16] = byte(l.Type)
	binary.LittleEndian.PutUint64(head[17:], uint64(len(l.Data)))
	binary.LittleEndian.PutUint64(head[25:], uint64(l.AppendedAt.Unix()))
	binary.LittleEndian.PutUint32(head[33:], uint32(l.AppendedAt.Nanosecond()))
	sum := crc32.Update(0, castagnoli, head[:])
	sum = crc32.Update(sum, castagnoli, l.Data)
	return crc32.Update(sum, castagnoli, ext)
}

func (s summedLog) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (s summedLog) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores copies of logs with their trailers: Raft's LogCache
// keeps the entries themselves, and Raft sends them to its peers.
func (s summedLog) StoreLogs(logs []*raft.Log) error {
	copies := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	size := 0
	for _, l := range logs {
		size += len(l.Extensions) + trailerLen
	}
	exts := make([]byte, 0, size) // one allocation for all the trailers
	for i, l := range logs {
		start := len(exts)
		exts = append(exts, l.Extensions...)
		exts = binary.LittleEndian.AppendUint32(exts, entrySum(l, l.Extensions))
		exts = append(exts, sumTag[:]...)
		copies[i] = *l
		copies[i].Extensions = exts[start:len(exts):len(exts)]
		ptrs[i] = &copies[i]
	}
	return s.LogStore.StoreLogs(ptrs)
}

// GetLog reads entry index and checks it against its trailer. raft-wal
// v0.4.1's decoder panics on some damaged entries (a length that
// overflows: a slice out of range); that is an error here too (raft-wal
// releases what it holds in defers).
func (s summedLog) GetLog(index uint64, l *raft.Log) (err error) {
	defer func() {
		if p := recover(); p != nil {
			re, ok := p.(runtime.Error)
			if !ok {
				panic(p)
			}
			err = &damagedEntry{index, fmt.Sprintf("does not decode (%v)", re)}
			if s.logf != nil { // a damaged entry, or a defect of raft-wal's: say where
				s.logf("logx: %v, in raft-wal at:\n%s", err, debug.Stack())
			}
		}
	}()
	if err := s.LogStore.GetLog(index, l); err != nil {
		return s.damage(index, err)
	}
	return s.check(index, l)
}

// damage classifies an error of raft-wal's GetLog: an error of the
// operating system's (an I/O error, which may pass: logGuard tries it
// again; a segment file closed under the read), or raft-wal's own answers
// (not found, corrupt, closed), go back as they are; any other is the
// decoder's or a file cut short (an entry's length that runs past its
// end, a time that does not decode, io.EOF), and is damage too.
func (s summedLog) damage(index uint64, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) || missingOrClosed(err) || errors.Is(err, types.ErrCorrupt) {
		return err
	}
	return &damagedEntry{index, fmt.Sprintf("does not decode (%v)", err)}
}

// missingOrClosed reports whether a read failed because the entry is not
// in the log, or because the log or its segment file is closed: answers
// about the log, not about the entry's bytes.
func missingOrClosed(err error) bool {
	return errors.Is(err, raft.ErrLogNotFound) || errors.Is(err, types.ErrClosed) || errors.Is(err, os.ErrClosed)
}

// damagedEntry is the error of an entry read that is not what was stored.
type damagedEntry struct {
	index uint64
	what  string
}

func (e *damagedEntry) Error() string {
	return fmt.Sprintf("Raft entry %d read from disk %s: %v", e.index, e.what, types.ErrCorrupt)
}

func (e *damagedEntry) Unwrap() error { return types.ErrCorrupt }

// check checks entry l, read as entry index, against its trailer and
// strips it (Extensions nil when nothing else is left, as raft-wal
// decodes empty ones).
func (s summedLog) check(index uint64, l *raft.Log) error {
	if l.Index != index {
		return &damagedEntry{index, fmt.Sprintf("holds index %d", l.Index)}
	}
	ext := l.Extensions
	if index < s.from && (len(ext) == 0 || len(ext) == identityLen) {
		return nil // stored before sums
	}
	n := len(ext) - trailerLen
	if n < 0 || [4]byte(ext[n+4:]) != sumTag {
		return &damagedEntry{index, "has no checksum"}
	}
	ext, want := ext[:n:n], binary.LittleEndian.Uint32(ext[n:])
	if n == 0 {
		ext = nil
	}
	if got := entrySum(l, ext); got != want {
		return &damagedEntry{index, fmt.Sprintf("does not match its checksum (stored %08x, computed %08x)", want, got)}
	}
	l.Extensions = ext
	return nil
}
