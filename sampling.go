package logx

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Sampling, shaped like zap's: in each Interval, the first First entries
// of a (level, message) pair are logged, then every Thereafter-th (none if
// 0); the others are dropped on the calling node, before they are
// rendered. ERROR and above are never sampled unless Errors is set.
// Sampling applies to the calls that do not wait (Debug, Info, Warn,
// Error, Log, LogAttrs and the slog handler); Append is never sampled.
//
// At the end of each interval in which it dropped something, the node logs
// one entry per (level, message) that lost entries, at that level and
// through the log like any other: msg="logx: sampling dropped entries",
// with sampled_msg, the message (its first 256 bytes), and dropped, how
// many. Stats.Sampled
// counts every entry dropped so.
//
// Pairs are counted in a fixed table (1,024 slots per level, chosen by a
// hash of the message): two messages that share a slot share their counts,
// and the summary names the first that lost an entry in the interval.
type Sampling struct {
	Interval   time.Duration `json:"interval" yaml:"interval"` // default 1s
	First      int           `json:"first" yaml:"first"`       // at least 1
	Thereafter int           `json:"thereafter" yaml:"thereafter"`
	Errors     bool          `json:"errors" yaml:"errors"` // sample ERROR and above too
}

const (
	samplingSlots  = 1024
	samplingLevels = 4 // below INFO, INFO, WARN, ERROR and above
)

// sampleSlot counts one (level, message) pair's entries in the current
// interval.
type sampleSlot struct {
	interval atomic.Int64  // the interval n counts in
	n        atomic.Uint64 // entries seen in it
	dropped  atomic.Uint64 // entries dropped since the last summary

	mu    sync.Mutex // msg and level: set by the first drop after a summary
	msg   string
	level slog.Level
}

type sampler struct {
	cfg   Sampling
	seed  maphash.Seed
	slots [samplingLevels][samplingSlots]sampleSlot
	total atomic.Uint64 // every entry dropped (Stats.Sampled)
}

func newSampler(cfg Sampling) *sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	return &sampler{cfg: cfg, seed: maphash.MakeSeed()}
}

func levelSlot(l slog.Level) int {
	switch {
	case l < LevelInfo:
		return 0
	case l < LevelWarn:
		return 1
	case l < LevelError:
		return 2
	}
	return 3
}

// allow reports whether an entry at level with message msg, logged at
// now (Unix nanoseconds), is kept. It allocates only at the first drop of
// a pair in an interval (a copy of the message, for the summary).
func (s *sampler) allow(level slog.Level, msg string, now int64) bool {
	if level >= LevelError && !s.cfg.Errors {
		return true
	}
	slot := &s.slots[levelSlot(level)][maphash.String(s.seed, msg)%samplingSlots]
	iv := now / int64(s.cfg.Interval)
	if old := slot.interval.Load(); old != iv && slot.interval.CompareAndSwap(old, iv) {
		slot.n.Store(0) // a new interval (counts racing the reset may land in either)
	}
	n := slot.n.Add(1)
	first := uint64(s.cfg.First)
	if n <= first || s.cfg.Thereafter > 0 && (n-first)%uint64(s.cfg.Thereafter) == 0 {
		return true
	}
	slot.mu.Lock() // with summaries' Swap: a summary names the message it counts
	if slot.dropped.Add(1) == 1 {
		// A copy, once per pair and interval: storing msg itself would
		// make every logging call's message escape to the heap. Its head
		// only: the message is not bounded yet (sampling comes before
		// rendering), and 4,096 slots each holding a long one would hold
		// gigabytes, and a summary over MaxEntrySize would fail.
		slot.msg, slot.level = strings.Clone(sampledHead(msg)), level
	}
	slot.mu.Unlock()
	s.total.Add(1)
	return false
}

// sampledMax is how much of a message a sampling summary names.
const sampledMax = 256

// sampledHead is msg cut to at most sampledMax bytes, at a character's
// start.
func sampledHead(msg string) string {
	if len(msg) <= sampledMax {
		return msg
	}
	n := sampledMax
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n]
}

// summaries calls fn for each pair that lost entries since the last call,
// and starts counting them again.
func (s *sampler) summaries(fn func(level slog.Level, msg string, dropped uint64)) {
	for l := range s.slots {
		for i := range s.slots[l] {
			slot := &s.slots[l][i]
			if slot.dropped.Load() == 0 {
				continue
			}
			slot.mu.Lock()
			msg, level := slot.msg, slot.level
			n := slot.dropped.Swap(0) // a drop racing this Swap is summarized next time
			if n > 0 {
				slot.msg = "" // not held until the slot drops again
			}
			slot.mu.Unlock()
			if n > 0 {
				fn(level, msg, n)
			}
		}
	}
}

// summarize runs on its own goroutine while the stream is open: at the
// end of every interval it logs what sampling dropped.
func (lx *Stream) summarize(s *sampler) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			lx.logSummaries(s, !lx.cfg.DropWhenFull)
		case <-lx.closing: // close logs the last summaries
			return
		}
	}
}

// logSummaries logs one entry per pair that lost entries, as a leveled
// call would but not sampled; without block, a summary that finds the
// queue full is dropped (Close: a queue that does not drain must not hold
// it up).
func (lx *Stream) logSummaries(s *sampler, block bool) {
	s.summaries(func(level slog.Level, msg string, dropped uint64) {
		// logx's own entry: counted, but not a loss of the caller's.
		if lx.logAt(lx.now(), level, 0, "logx: sampling dropped entries",
			[]any{"sampled_msg", msg, "dropped", dropped, "interval", s.cfg.Interval.String()}, block, true) != nil {
			lx.stats.asyncRejected.Add(1)
		}
	})
}

// sampled is how many entries sampling dropped (Stats.Sampled).
func (lx *Stream) sampled() uint64 {
	if lx.sampler == nil {
		return 0
	}
	return lx.sampler.total.Load()
}

// check validates a Sampling.
func (s *Sampling) check() error {
	switch {
	case s.Interval < 0:
		return fmt.Errorf("the interval %v is negative", s.Interval)
	case s.First < 1:
		return fmt.Errorf("first is %d; at least 1 entry per interval is logged (to log none, raise the level)", s.First)
	case s.Thereafter < 0:
		return fmt.Errorf("thereafter %d is negative", s.Thereafter)
	}
	return nil
}
