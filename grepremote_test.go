package logx

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// GrepAt asks a node of a 3-node cluster, over its address, for what Grep
// on its files gives: the same lines with the same context flags. An
// answer stops at its bound with truncated set, and requests out of bounds
// are refused with a clear error.
func TestGrepAt(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for k := range 60 {
		msg := "hay"
		if k%7 == 0 {
			msg = "needle"
		}
		_, err := c.nodes[k%3].Append(ctx, LevelInfo, fmt.Sprintf("%s %02d", msg, k))
		require.NoError(t, err)
	}
	c.flushAll()
	c.waitSameSeq(60)
	collect := func(f func(func(Line) error) error) []Line {
		var out []Line
		require.NoError(t, f(func(l Line) error {
			l.Text = bytes.Clone(l.Text)
			out = append(out, l)
			return nil
		}))
		return out
	}
	for _, q := range []Query{
		{Contains: "needle"}, {Contains: "needle", Before: 1, After: 2, Limit: 3}, {Contains: "needle", Newest: true, Limit: 2},
		{Contains: "hay", Level: LevelInfo, Since: time.Now().Add(-time.Hour)},
	} {
		local := collect(func(fn func(Line) error) error { return c.nodes[1].Grep(ctx, q, fn) })
		remote := collect(func(fn func(Line) error) error {
			truncated, err := GrepAt(ctx, c.cfgs[1].Addr, DefaultStream, q, nil, fn)
			require.Equal(t, q.Limit > 0, truncated, "truncated says the limit stopped the answer")
			return err
		})
		require.Equal(t, local, remote, "%+v", q)
		require.NotEmpty(t, remote)
	}

	// Lines whose JSON is six times their size: the answer stops short of
	// the control frame's limit, and says so.
	big := strings.Repeat("<", 10<<10)
	for range 30 {
		_, err := c.nodes[0].Append(ctx, LevelInfo, "big "+big)
		require.NoError(t, err)
	}
	c.flushAll()
	n := 0
	truncated, err := GrepAt(ctx, c.cfgs[2].Addr, DefaultStream, Query{Contains: "big <"}, nil, func(Line) error { n++; return nil })
	require.NoError(t, err)
	require.True(t, truncated)
	require.Positive(t, n)
	require.Less(t, n, 30)

	// A limit reached says so too.
	n = 0
	truncated, err = GrepAt(ctx, c.cfgs[2].Addr, DefaultStream, Query{Contains: "hay", Limit: 5}, nil, func(Line) error { n++; return nil })
	require.NoError(t, err)
	require.True(t, truncated, "more than 5 lines match")
	require.Equal(t, 5, n)

	for _, q := range []Query{{Limit: 20000}, {Before: 101}, {Newest: true, After: 1}, {Contains: strings.Repeat("x", 5000)},
		{Regexp: regexp.MustCompile(`(?:[a-h]?){1000}Q`)}, {Regexp: regexp.MustCompile(`(?:` + strings.Repeat("[a-h]?", 20) + `){1000}Q`)}} {
		_, err := GrepAt(ctx, c.cfgs[0].Addr, DefaultStream, q, nil, func(Line) error { return nil })
		require.Error(t, err, "%+v", q)
	}
}

// jsonLineLen never underestimates what encoding/json writes for a line.
func TestJSONLineLen(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []string{"a", "\"", "\\", "<", ">", "&", "\u2028", "\u2029", "é", "\x01", "\t", "日"}
	for range 2000 {
		var b strings.Builder
		for range rng.Intn(200) {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		text := b.String()
		enc, err := json.Marshal(grepLine{Seq: math.MaxUint64, Context: true, Text: text})
		require.NoError(t, err)
		require.GreaterOrEqual(t, jsonLineLen([]byte(text)), len(enc)+1, "%q", text)
	}
}
