package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds: exact below 128 ns,
// then 64 buckets per power of two (a relative error under 1.6 %). It is
// small enough to send as one JSON line, and histograms merge by addition.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
}

const histBuckets = 128 + 64*40 // up to 2^46 ns, about 19 hours

func histIndex(v uint64) int {
	if v < 128 {
		return int(v)
	}
	e := bits.Len64(v) - 7 // v>>e is in [64, 128)
	i := 128 + (e-1)*64 + int(v>>e) - 64
	if i >= histBuckets {
		i = histBuckets - 1
	}
	return i
}

// histValue is the middle of bucket i.
func histValue(i int) float64 {
	if i < 128 {
		return float64(i)
	}
	e := (i-128)/64 + 1
	m := uint64((i-128)%64 + 64)
	lo := float64(m << e)
	return lo + float64(uint64(1)<<e)/2
}

func (h *hist) record(d time.Duration) {
	v := uint64(max(d, 1))
	h.counts[histIndex(v)]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the q-quantile (0 < q <= 1) in milliseconds, NaN when
// the histogram is empty.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return histValue(i) / 1e6
		}
	}
	return histValue(histBuckets-1) / 1e6
}

// sparse is the compact form of a hist: [bucket, count] pairs.
func (h *hist) sparse() [][2]uint64 {
	var out [][2]uint64
	for i, c := range h.counts {
		if c != 0 {
			out = append(out, [2]uint64{uint64(i), c})
		}
	}
	return out
}

func histFromSparse(s [][2]uint64) *hist {
	h := &hist{}
	for _, p := range s {
		if p[0] < histBuckets {
			h.counts[p[0]] += p[1]
			h.n += p[1]
		}
	}
	return h
}
