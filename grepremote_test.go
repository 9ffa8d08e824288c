package logx

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"regexp"
	"regexp/syntax"
	"runtime"
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
	// Bytes that are not UTF-8 (a damaged file's) become \ufffd, 6 bytes.
	alphabet := []string{"a", "\"", "\\", "<", ">", "&", "\u2028", "\u2029", "é", "\x01", "\t", "日", "\xff", "\xe2\x80", "\xc3", "\xf0\x9f"}
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

// TestRegexpSizeRefusesEarly: an expression whose repetitions add up past
// the limit is refused from its parsed form, before Simplify writes the
// repetitions out.
func TestRegexpSizeRefusesEarly(t *testing.T) {
	// Within the 4 KiB a pattern may have: 372 and 157 repetitions of
	// 1,000 (the parser refuses nested ones whose counts multiply past
	// 1,000), which took 90 and 40 MB and 0.1 s to compile before.
	for _, expr := range []string{strings.Repeat(`[a-z]{1000}`, 372), strings.Repeat(`(?:\pL{1000})`, 157), `(?:[a-h]?){1000}Q`} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := CompileQueryRegexp(expr)
		runtime.ReadMemStats(&after)
		require.ErrorContains(t, err, "instructions", expr)
		// The parse's own (157 classes of \pL's hundreds of ranges: 2 MB).
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<20), "%s: allocated %d bytes", expr, after.TotalAlloc-before.TotalAlloc)
	}
	for _, expr := range []string{`(?:[a-h]?){100}Q`, `a{500}`, `(foo|bar|baz)+\d{1,3}`, `^\S+ error=\S+$`,
		`(?:(?:a{2}){2}){200}`, `(?:(?:(?:x|y){2}){5}){40}`, `(?:(?:a?){2,4}){100}`, `(?:(?:(?:(?:a{2}){2}){2}){2}){60}`,
		`(?:(?:(?:(?:(?:[a-z]{200}){1,}){1,}){1,}){1,}){1,}`, `(?:[a-z]{1000}){0}x`, `(?:a{3,}){3,}`} {
		_, err := CompileQueryRegexp(expr)
		require.NoError(t, err, expr)
	}
}

// TestRegexpSizeNeverUnder: the estimate is never below the compiled
// program's size, so nothing within the limit is refused for it: random
// expressions over every operator, checked against syntax.Compile.
func TestRegexpSizeNeverUnder(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	atoms := []string{`a`, `abc`, `[a-z]`, `[^x]`, `.`, `\d`, `\b`, `^`, `$`, `(?i)k`, `\pL`, `(?:)`, `é`}
	var gen func(depth int) string
	gen = func(depth int) string {
		if depth == 0 || rng.Intn(3) == 0 {
			return atoms[rng.Intn(len(atoms))]
		}
		a, b := gen(depth-1), gen(depth-1)
		switch rng.Intn(9) {
		case 0:
			return a + b
		case 1:
			return a + `|` + b
		case 2:
			return `(` + a + `)`
		case 3:
			return `(?:` + a + `)*`
		case 4:
			return `(?:` + a + `)+?`
		case 5:
			return `(?:` + a + `)?`
		case 6:
			return fmt.Sprintf(`(?:%s){%d}`, a, rng.Intn(6))
		case 7:
			return fmt.Sprintf(`(?:%s){%d,}`, a, rng.Intn(6))
		default:
			lo := rng.Intn(5)
			return fmt.Sprintf(`(?:%s){%d,%d}`, a, lo, lo+rng.Intn(5))
		}
	}
	for range 3000 {
		expr := gen(5)
		checkRegexpSize(t, expr)
	}
	for range 300 { // nested repetitions near the limit
		expr := atoms[rng.Intn(len(atoms))]
		for range 1 + rng.Intn(4) {
			lo := rng.Intn(4)
			switch rng.Intn(3) {
			case 0:
				expr = fmt.Sprintf(`(?:%s){%d}`, expr, rng.Intn(12))
			case 1:
				expr = fmt.Sprintf(`(?:%s){%d,%d}`, expr, lo, lo+rng.Intn(12))
			default:
				expr = fmt.Sprintf(`(?:%s){%d,}`, expr, lo)
			}
		}
		checkRegexpSize(t, expr)
	}
}

func checkRegexpSize(t *testing.T, expr string) {
	t.Helper()
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return
	}
	const limit = 200000
	est := regexpSize(re, limit)
	if est > limit {
		return
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return
	}
	require.GreaterOrEqual(t, est, len(prog.Inst), "%s", expr)
	if len(prog.Inst) <= maxRegexpInsts {
		require.LessOrEqual(t, est, 4*maxRegexpInsts, "%s: %d instructions, refused by the estimate", expr, len(prog.Inst))
	}
}

func FuzzRegexpSize(f *testing.F) {
	for _, s := range []string{`a{3}`, `(?:a?){10}`, `(x|y)*z`, `[a-c]{2,5}?`, `\b(?i:ab){0,}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if len(expr) > 256 {
			return
		}
		checkRegexpSize(t, expr)
	})
}
