package logx

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// grepWant is a reference for Grep's Limit, Newest, Before and After: the
// whole log in memory, and the obvious loops. A line is delivered if it is
// one of the first Limit matches or within Before/After lines of one; it is
// a context line unless it is one of those matches.
func grepWant(lines []Line, contains string, q Query) []Line {
	var matches []int
	for i, l := range lines {
		if strings.Contains(string(l.Text), contains) && (q.MaxSeq == 0 || l.Seq <= q.MaxSeq) {
			matches = append(matches, i)
		}
	}
	if q.Newest {
		slices.Reverse(matches)
	}
	if q.Limit > 0 && len(matches) > q.Limit {
		matches = matches[:q.Limit]
	}
	if q.Newest {
		var out []Line
		for _, i := range matches {
			out = append(out, lines[i])
		}
		return out
	}
	keep := map[int]bool{}
	isMatch := map[int]bool{}
	for _, m := range matches {
		isMatch[m] = true
		for i := max(0, m-q.Before); i <= min(len(lines)-1, m+q.After); i++ {
			keep[i] = true
		}
	}
	var out []Line
	for i, l := range lines {
		if keep[i] {
			l.Context = !isMatch[i]
			out = append(out, l)
		}
	}
	return out
}

// Grep's Limit, Newest, Before and After against the reference, over a
// log of many small files whose oldest ones retention removed (so context
// before the first line that is left must stop there), with matches at
// the first and last lines that are left, side by side, and across file
// boundaries.
func TestGrepOptions(t *testing.T) {
	lx := newSingle(t, func(cfg *Config) {
		cfg.MaxSize = 2 << 10
		cfg.MaxFiles = 12
	})
	ctx := context.Background()
	needles := map[int]bool{0: true, 1: true, 2: true, 50: true, 52: true, 99: true, 150: true, 151: true, 160: true, 297: true, 299: true}
	for k := range 300 {
		msg := "hay"
		if needles[k] {
			msg = "needle"
		}
		_, err := lx.Append(ctx, LevelInfo, fmt.Sprintf("%s %03d", msg, k))
		require.NoError(t, err)
	}
	require.NoError(t, lx.Flush(ctx))
	var all []Line
	require.NoError(t, lx.Grep(ctx, Query{}, func(l Line) error {
		l.Text = bytes.Clone(l.Text) // valid only during the call
		all = append(all, l)
		return nil
	}))
	require.Greater(t, all[0].Seq, uint64(1), "retention should have removed the oldest files")
	require.Equal(t, uint64(300), all[len(all)-1].Seq)
	// The first line left is a needle too: context before it must stop.
	_, err := lx.Append(ctx, LevelInfo, "tail")
	require.NoError(t, err)
	require.NoError(t, lx.Flush(ctx))
	all = all[:0]
	require.NoError(t, lx.Grep(ctx, Query{}, func(l Line) error {
		l.Text = bytes.Clone(l.Text) // valid only during the call
		all = append(all, l)
		return nil
	}))

	for _, q := range []Query{
		{}, {Limit: 1}, {Limit: 3}, {Limit: 100},
		{Newest: true}, {Newest: true, Limit: 2},
		{Before: 1}, {After: 1}, {Before: 2, After: 2}, {Before: 3}, {After: 5},
		{Before: 1, After: 1, Limit: 2}, {After: 3, Limit: 1}, {Before: 200, After: 200},
		// MaxSeq: the next page of older matches, within a file, at a
		// file's first line, and below the oldest line left.
		{Newest: true, Limit: 2, MaxSeq: 159}, {Newest: true, Limit: 3, MaxSeq: 151}, {MaxSeq: 100},
		{Newest: true, MaxSeq: all[0].Seq - 1}, {MaxSeq: 152, After: 2},
	} {
		name := fmt.Sprintf("%+v", q)
		q.Contains = "needle"
		var got []Line
		require.NoError(t, lx.Grep(ctx, q, func(l Line) error {
			l.Text = bytes.Clone(l.Text)
			got = append(got, l)
			return nil
		}), name)
		want := grepWant(all, "needle", q)
		require.Equal(t, len(want), len(got), name)
		for i := range want {
			require.Equal(t, want[i].Seq, got[i].Seq, "%s: line %d", name, i)
			require.Equal(t, want[i].Context, got[i].Context, "%s: line %d (seq %d)", name, i, want[i].Seq)
			require.Equal(t, string(want[i].Text), string(got[i].Text), name)
		}
	}
	err = lx.Grep(ctx, Query{Newest: true, After: 1}, func(Line) error { return nil })
	require.ErrorContains(t, err, "not with Newest")
	// Negative counts are refused: Before -1 gave every line before the
	// first match as context.
	for _, q := range []Query{{Before: -1, After: 1}, {After: -1}, {Limit: -1}} {
		n := 0
		err = lx.Grep(ctx, q, func(Line) error { n++; return nil })
		require.ErrorContains(t, err, "may not be negative", "%+v", q)
		require.Zero(t, n)
	}
	// A substring across a newline is in no line (it found the lines
	// where one line ended with its start).
	for _, needle := range []string{"needle 297\n", "297\nseq=", "\n"} {
		n := 0
		require.NoError(t, lx.Grep(ctx, Query{Contains: needle}, func(Line) error { n++; return nil }))
		require.Zero(t, n, "%q", needle)
	}
}
