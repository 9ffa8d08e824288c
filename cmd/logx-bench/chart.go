package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strconv"
	"strings"
)

// chartSeries is one line of the chart: (callers, value) points.
type chartSeries struct {
	Label  string
	Color  string
	Points []chartPoint
}

type chartPoint struct {
	X, Tput, P99 float64 // callers, entries/s, p99 ms (0: none)
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// chartSeries lists the lines: logx append per mode and size, then raft-1,
// nats-js and slog-file ("call" rows) at the smallest size.
func (r *report) chartSeries() []chartSeries {
	var modes []string
	var sizes []int
	for _, c := range r.Cells {
		if c.Series == seriesLogx && !slices.Contains(modes, c.Mode) {
			modes = append(modes, c.Mode)
		}
		if !slices.Contains(sizes, c.Size) {
			sizes = append(sizes, c.Size)
		}
	}
	slices.Sort(sizes)
	collect := func(keep func(*cell) bool) []chartPoint {
		var pts []chartPoint
		for _, c := range r.Cells {
			if keep(c) {
				p := chartPoint{X: float64(c.Callers), Tput: c.Median.EntriesPerSec}
				if c.Median.P99 != nil {
					p.P99 = *c.Median.P99
				}
				pts = append(pts, p)
			}
		}
		slices.SortFunc(pts, func(a, b chartPoint) int { return int(a.X - b.X) })
		return pts
	}
	var out []chartSeries
	for _, size := range sizes {
		for _, mode := range modes {
			pts := collect(func(c *cell) bool {
				return c.Series == seriesLogx && c.Mode == mode && c.Size == size && c.Workload == "append"
			})
			if len(pts) > 0 {
				out = append(out, chartSeries{Label: fmt.Sprintf("logx %s %s", mode, sizeName(size)), Points: pts})
			}
		}
	}
	for _, b := range []struct{ series, workload string }{{seriesRaft, "apply"}, {seriesNATS, "publish"}, {seriesSlog, "call"}} {
		for _, size := range sizes {
			pts := collect(func(c *cell) bool { return c.Series == b.series && c.Size == size && c.Workload == b.workload })
			if len(pts) > 0 {
				out = append(out, chartSeries{Label: fmt.Sprintf("%s (%s)", b.series, sizeName(size)), Points: pts})
				break // the smallest size only
			}
		}
	}
	for i := range out {
		out[i].Color = palette[i%len(palette)]
	}
	return out
}

// logRange returns decade bounds around the positive values.
func logRange(vals []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return 1, 10
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

// fmtTick labels a power of ten compactly: 1, 10, 100, 1k, 10k, 1M, 0.1, 0.01.
func fmtTick(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// chart draws the two panels as SVG: throughput and p99 latency against
// concurrent callers, all axes logarithmic.
func (r *report) chart() string {
	series := r.chartSeries()
	const (
		width, height = 1100, 560
		panelW        = 420
		panelH        = 330
		top           = 80
	)
	lefts := []float64{90, 620}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", width, height)
	title := fmt.Sprintf("logx-bench: 3 nodes on 127.0.0.1, %d CPUs, %s", r.Machine.NumCPU, r.Machine.Date)
	fmt.Fprintf(&b, `<text x="%d" y="30" text-anchor="middle" font-size="18" font-weight="bold">%s</text>`+"\n", width/2, esc(title))

	var xs []float64
	for _, s := range series {
		for _, p := range s.Points {
			xs = append(xs, p.X)
		}
	}
	xlo, xhi := 1.0, 256.0
	if len(xs) > 0 {
		xlo, xhi = slices.Min(xs), slices.Max(xs)
	}
	if xhi <= xlo {
		xlo, xhi = xlo/2, xhi*2
	}
	xticks := slices.Compact(slices.Sorted(slices.Values(xs)))

	panels := []struct {
		title, ylabel string
		get           func(chartPoint) float64
	}{
		{"Throughput", "entries/s", func(p chartPoint) float64 { return p.Tput }},
		{"p99 latency", "ms", func(p chartPoint) float64 { return p.P99 }},
	}
	for k, pn := range panels {
		left := lefts[k]
		var ys []float64
		for _, s := range series {
			for _, p := range s.Points {
				ys = append(ys, pn.get(p))
			}
		}
		ylo, yhi := logRange(ys)
		px := func(x float64) float64 {
			return left + panelW*(math.Log(x)-math.Log(xlo))/(math.Log(xhi)-math.Log(xlo))
		}
		py := func(y float64) float64 {
			return top + panelH - panelH*(math.Log10(y)-math.Log10(ylo))/(math.Log10(yhi)-math.Log10(ylo))
		}
		fmt.Fprintf(&b, `<g class="panel" id="panel-%d">`+"\n", k+1)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="15" font-weight="bold">%s (log scale)</text>`+"\n", left+panelW/2, top-20, esc(pn.title))
		// Grid and y ticks: every decade, light lines at 2 and 5.
		for d := ylo; d <= yhi*1.0001; d *= 10 {
			y := py(d)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ccc"/>`+"\n", left, y, left+panelW, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, y, esc(fmtTick(d)))
			for _, m := range []float64{2, 5} {
				if d*m < yhi {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", left, py(d*m), left+panelW, py(d*m))
				}
			}
		}
		for _, x := range xticks {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>`+"\n", px(x), top, px(x), top+panelH)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(x), top+panelH+18, esc(fmtTick(x)))
		}
		// Axes and labels.
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", left, top+panelH, left+panelW, top+panelH)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", left, top, left, top+panelH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">concurrent callers (log scale)</text>`+"\n", left+panelW/2, top+panelH+40)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
			left-60, float64(top+panelH/2), left-60, float64(top+panelH/2), esc(pn.ylabel))
		// Lines.
		for _, s := range series {
			var pts []string
			for _, p := range s.Points {
				if v := pn.get(p); v > 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(v)))
				}
			}
			if len(pts) == 0 {
				continue
			}
			fmt.Fprintf(&b, `<polyline data-series="%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", esc(s.Label), s.Color, strings.Join(pts, " "))
			for _, p := range pts {
				x, y, _ := strings.Cut(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3.5" fill="%s"/>`+"\n", x, y, s.Color)
			}
		}
		b.WriteString("</g>\n")
	}
	// Legend, under the panels.
	for i, s := range series {
		x := 90 + float64(i%3)*330
		y := float64(top+panelH+75) + float64(i/3)*22
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", x, y, x+30, y, s.Color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", x+38, y, esc(s.Label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }
