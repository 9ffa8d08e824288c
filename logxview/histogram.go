package logxview

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/logx-dev/logx"
)

// levels are the histogram's levels (Hist.Levels names them), each
// counting entries from its level up to the next: below INFO, INFO, WARN,
// ERROR and above.
var levels = []slog.Level{logx.LevelDebug, logx.LevelInfo, logx.LevelWarn, logx.LevelError}

// maxBuckets bounds a histogram: its memory is buckets × levels counters,
// whatever the range and the log's size.
const maxBuckets = 1000

func (h *Viewer) serveHistogram(w http.ResponseWriter, r *http.Request) {
	src, q, err := h.query(r)
	if err != nil {
		httpError(w, err)
		return
	}
	n := 60
	if v := r.FormValue("buckets"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > maxBuckets {
			httpError(w, badRequest("buckets %q: from 1 to %d", v, maxBuckets))
			return
		}
	}
	if q.Until.IsZero() {
		q.Until = time.Now()
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-time.Hour)
	}
	if !q.Since.Before(q.Until) {
		httpError(w, badRequest("since must be before until"))
		return
	}
	ctx, done, err := h.begin(r)
	if err != nil {
		httpError(w, err)
		return
	}
	defer done()
	start := time.Now()
	hist, err := Histogram(ctx, src, q, n)
	if err != nil {
		httpError(w, err)
		return
	}
	hist.TookMS = time.Since(start).Milliseconds()
	h.writeAnswer(w, hist)
}

// Hist is a histogram of entries per time bucket and level. Bucket i
// holds the lines whose time is in [Since + i×Width, Since + (i+1)×Width),
// where Width is (Until − Since) / len(Counts), in nanoseconds.
type Hist struct {
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Width  float64   `json:"bucket_ns"` // a bucket's width, in nanoseconds
	Levels []string  `json:"levels"`
	Counts [][]int64 `json:"counts"` // [bucket][level]
	Total  int64     `json:"total"`
	TookMS int64     `json:"took_ms"`
}

// Histogram counts the lines of src that q selects, whose time lies in
// [q.Since, q.Until), in n buckets of equal width, by level (Hist.Levels). It
// reads the lines once, as Grep delivers them, and holds only the counts:
// n × 4 numbers, whatever the range and the log's size.
func Histogram(ctx context.Context, src Source, q logx.Query, n int) (*Hist, error) {
	span := q.Until.Sub(q.Since)
	if n < 1 || q.Since.IsZero() || span <= 0 {
		return nil, fmt.Errorf("logxview: a histogram needs buckets (%d) and Since before Until", n)
	}
	if !q.Since.Add(span).Equal(q.Until) { // Sub saturates: every line would fall outside
		return nil, badRequest("since to until spans more than %v", span)
	}
	hist := &Hist{Since: q.Since.UTC(), Until: q.Until.UTC(), Width: float64(span) / float64(n), Counts: make([][]int64, n)}
	for _, l := range levels {
		hist.Levels = append(hist.Levels, l.String())
	}
	for i := range hist.Counts {
		hist.Counts[i] = make([]int64, len(levels))
	}
	q.Newest, q.Limit, q.Before, q.After = false, 0, 0, 0
	err := src.Grep(ctx, q, func(l logx.Line) error {
		d := l.Time.Sub(q.Since)
		if d < 0 || d >= span {
			return nil
		}
		// Exact for ranges below 2^53 ns (104 days); beyond, rounding may
		// put a line at a bucket's edge into its neighbour.
		b := min(int(float64(d)/hist.Width), n-1)
		k := 0
		for k+1 < len(levels) && l.Level >= levels[k+1] {
			k++
		}
		hist.Counts[b][k]++
		hist.Total++
		return nil
	})
	return hist, err
}
