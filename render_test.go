package logx

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hostile holds every kind of text that could break a line.
var hostile = []string{
	"two\nlines", "carriage\rreturn", "tab\there", "nul\x00byte", "esc\x1b[31mred",
	"del\x7f", "quote\"s", "back\\slash", "eq=sign", "", " ", "line\u2028sep",
	"para\u2029sep", "nel\u0085c1", "bad utf8 \xff\xfe", "ünïcödé ok", "seq=1 level=ERROR forged",
}

func TestRenderEscapesText(t *testing.T) {
	for _, s := range hostile {
		b := appendBodyStart(nil, FormatText, time.Unix(0, 0), LevelInfo, "n1", "a/b.go:1", s)
		b = (*handler)(nil).appendAttrs(b, FormatText, []any{s, s}, nil, nil)
		line := appendLine(nil, FormatText, 7, b)
		require.Equal(t, 1, strings.Count(string(line), "\n"), "%q", line)
		require.True(t, strings.HasSuffix(string(line), "\n"))
		for _, c := range line[:len(line)-1] {
			require.False(t, c < ' ' || c == 0x7f, "control byte %#x in %q", c, line)
		}
		kv, err := parseText(line[:len(line)-1])
		require.NoError(t, err, "%q", line)
		require.Equal(t, "7", kv["seq"])
		require.Equal(t, "INFO", kv["level"], "%q", line)
		if !strings.ContainsRune(s, 0xfffd) && !strings.Contains(s, "\xff") {
			require.Equal(t, s, kv["msg"], "%q", line)
			require.Equal(t, s, kv[s], "%q", line)
		}
	}
}

func TestRenderEscapesJSON(t *testing.T) {
	for _, s := range hostile {
		b := appendBodyStart(nil, FormatJSON, time.Unix(0, 0), LevelInfo, "n1", "a/b.go:1", s)
		b = (*handler)(nil).appendAttrs(b, FormatJSON, []any{"k", s, "n", 3, "f", 1.5, "d", time.Second, "e", errors.New(s)}, nil, nil)
		line := appendLine(nil, FormatJSON, 9, b)
		require.Equal(t, 1, strings.Count(string(line), "\n"), "%q", line)
		for _, c := range line[:len(line)-1] {
			require.False(t, c < ' ' || c == 0x7f, "control byte %#x in %q", c, line)
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "%q", line)
		require.EqualValues(t, 9, m["seq"])
		require.Equal(t, "INFO", m["level"])
		require.NotContains(t, string(line), "\u2028")
		if !strings.Contains(s, "\xff") {
			require.Equal(t, s, m["msg"])
			require.Equal(t, s, m["k"])
			require.Equal(t, s, m["e"])
		}
		require.EqualValues(t, 3, m["n"])
	}
}

// TestHostileEntryIsOneLine logs hostile text through a cluster and reads
// it back: each entry is exactly one line.
func TestHostileEntryIsOneLine(t *testing.T) {
	for _, f := range []Format{FormatText, FormatJSON} {
		t.Run(f.String(), func(t *testing.T) {
			lx := newSingle(t, func(c *Config) { c.Format = f })
			for _, s := range hostile {
				_, err := lx.Append(context.Background(), LevelWarn, s, "attr", s, slog.Group("g", slog.String(s, s)))
				require.NoError(t, err)
			}
			require.NoError(t, lx.Flush(context.Background()))
			lines := readLines(t, lx.cfg.Dir, lx.cfg.File)
			require.Len(t, lines, len(hostile))
		})
	}
}

func TestArgsToAttr(t *testing.T) {
	b := (*handler)(nil).appendAttrs(nil, FormatText, []any{"a", 1, "lonely"}, nil, nil)
	require.Equal(t, ` a=1 !BADKEY=lonely`, string(b))
	b = (*handler)(nil).appendAttrs(nil, FormatText, []any{slog.Int("x", 2), 42, "g", slog.GroupValue(slog.Int("y", 3))}, nil, nil)
	require.Equal(t, ` x=2 !BADKEY=42 g.y=3`, string(b))
}

// appendTime is AppendFormat in UTC with timeLayout, faster, for every time
// whose year has four digits and across the edges of that range.
func TestAppendTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	check := func(tm time.Time) {
		t.Helper()
		require.Equal(t, tm.UTC().Format(timeLayout), string(appendTime(nil, tm)), "%v (%d s)", tm, tm.Unix())
	}
	for _, sec := range []int64{minFourDigitSec - 1, minFourDigitSec, 0, -1, 951782400 /* 2000-02-29 */, 4107542400 /* 2100-03-01 */, maxFourDigitSec, maxFourDigitSec + 1} {
		for _, nsec := range []int64{0, 1, 999, 1000, 999_999_999} {
			check(time.Unix(sec, nsec))
		}
	}
	for range 200000 {
		sec := minFourDigitSec + rng.Int64N(maxFourDigitSec-minFourDigitSec+1)
		check(time.Unix(sec, rng.Int64N(1e9)).In(time.FixedZone("x", int(rng.Int64N(86400))-43200)))
	}
	check(time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC))
	check(time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC))
}

// The second caches behind appendTime and appendRecordTime change no byte:
// times within a second, across seconds, backwards, far ahead and from
// goroutines racing on a cache format as AppendFormat does. A cache
// follows the times it is asked for (a time in the year 9999 does not pin
// it), and neither a hit nor a miss allocates. What a cache holds is
// checked on one of the test's own: goroutines of earlier tests may still
// be rendering through the package's.
func TestAppendTimeCache(t *testing.T) {
	var own secondCache
	base := time.Date(2026, 12, 3, 23, 59, 58, 0, time.UTC).UnixNano()
	steps := []int64{0, 1, 999, 1000, 999_999_999, 1e9, 1e9 + 5e8, -1, -3600e9, 2e9, 86400e9, 1e9 + 1, 31 * 86400e9, -40 * 365 * 86400e9}
	var tmp [20]byte
	check := func(nanos int64) {
		t.Helper()
		tm := time.Unix(0, nanos)
		want := tm.UTC().Format(timeLayout)
		if got := string(appendTime(nil, tm)); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", tm, got, want)
		}
		if got := string(appendRecordTime(nil, nanos)); got != want {
			t.Fatalf("appendRecordTime(%d) = %s, want %s", nanos, got, want)
		}
		sec := tm.Unix()
		if got := string(appendUTCTime(nil, &own, sec, int64(tm.Nanosecond()))); got != want {
			t.Fatalf("appendUTCTime(%v) = %s, want %s", tm, got, want)
		}
		if !own.load(sec, tmp[:]) || string(tmp[:]) != want[:20] {
			t.Fatalf("after %v the cache does not hold its second", tm)
		}
	}
	for _, d := range steps {
		check(base + d)
		check(base + d) // from the cache
	}
	// Far ahead, then back: the cache follows.
	far := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if got, want := string(appendUTCTime(nil, &own, far.Unix(), 0)), far.Format(timeLayout); got != want {
		t.Fatalf("appendUTCTime(%v) = %s, want %s", far, got, want)
	}
	if !own.load(far.Unix(), tmp[:]) {
		t.Fatalf("the cache does not hold %v", far)
	}
	check(math.MaxInt64)
	check(base)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 5))
			for k := range 20000 {
				nanos := base + int64(k)*1e6 + rng.Int64N(3e9) - 1e9
				tm := time.Unix(0, nanos)
				if got, want := string(appendTime(nil, tm)), tm.UTC().Format(timeLayout); got != want {
					t.Errorf("goroutine %d: appendTime(%v) = %s, want %s", g, tm, got, want)
					return
				}
				if got, want := string(appendRecordTime(nil, nanos)), tm.UTC().Format(timeLayout); got != want {
					t.Errorf("goroutine %d: appendRecordTime(%d) = %s, want %s", g, nanos, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	now := time.Unix(0, base+40*86400e9)
	buf := appendTime(make([]byte, 0, 64), now)
	for name, f := range map[string]func(){
		"a hit":          func() { buf = appendTime(buf[:0], now.Add(time.Microsecond)) },
		"misses":         func() { buf = appendTime(appendTime(buf[:0], now.Add(-time.Hour)), now) },
		"checks' misses": func() { buf = appendRecordTime(appendRecordTime(buf[:0], base), math.MaxInt64) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

// go test -run '^$' -bench AppendTime -count 5 .
func BenchmarkAppendTime(b *testing.B) {
	tm := time.Date(2026, 12, 2, 4, 30, 0, 123456789, time.Local)
	buf := make([]byte, 0, 64)
	b.Run("appendTime", func(b *testing.B) {
		for b.Loop() {
			buf = appendTime(buf[:0], tm)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = tm.UTC().AppendFormat(buf[:0], timeLayout)
		}
	})
}

// panicErr is an error whose Error does not guard against a nil receiver,
// the usual typed-nil mistake; with a message it panics with that.
type panicErr struct{ msg string }

func (e *panicErr) Error() string {
	if e.msg != "" {
		panic(e.msg)
	}
	return e.msg
}

// panicMarshaler is a TextMarshaler (and a json.Marshaler) that panics.
type panicMarshaler struct{ n *int }

func (p *panicMarshaler) MarshalText() ([]byte, error) { return []byte(strconv.Itoa(*p.n)), nil }
func (p *panicMarshaler) MarshalJSON() ([]byte, error) { return []byte(strconv.Itoa(*p.n)), nil }

// TestRenderRecoversPanics logs values whose methods panic: the caller
// goes on, and the value is written as log/slog's handlers write it:
// "<nil>" for a nil pointer, "!PANIC: ..." otherwise, in text; in JSON
// the same as log/slog's JSON handler.
func TestRenderRecoversPanics(t *testing.T) {
	var nilErr error = (*panicErr)(nil)
	cases := []struct {
		v    any
		want string
	}{
		{nilErr, "<nil>"},
		{&panicErr{msg: "boom"}, "!PANIC: boom"},
		{(*panicMarshaler)(nil), "<nil>"},
		{&panicMarshaler{}, "!PANIC: runtime error: invalid memory address or nil pointer dereference"},
	}
	for _, c := range cases {
		b := (*handler)(nil).appendAttrs(nil, FormatText, []any{"v", c.v, "after", 1}, nil, nil)
		kv, err := parseText(append([]byte("seq=1"), b...))
		require.NoError(t, err, "%s", b)
		require.Equal(t, c.want, kv["v"], "%s", b)
		require.Equal(t, "1", kv["after"], "%s", b)

		// log/slog's JSON handler is the reference (it writes a nil
		// json.Marshaler as null).
		var sb strings.Builder
		slog.New(slog.NewJSONHandler(&sb, nil)).Info("", "v", c.v)
		var refJSON, m map[string]any
		require.NoError(t, json.Unmarshal([]byte(sb.String()), &refJSON))
		b = (*handler)(nil).appendAttrs(nil, FormatJSON, []any{"v", c.v, "after", 1}, nil, nil)
		require.NoError(t, json.Unmarshal([]byte("{\"seq\":1,"+string(b)+"}"), &m), "%s", b)
		require.Equal(t, refJSON["v"], m["v"], "%s against log/slog's %s", b, sb.String())
		require.EqualValues(t, 1, m["after"], "%s", b)
	}
	// Through a node: the caller neither panics nor loses the entry.
	lx := newSingle(t, nil)
	slog.New(lx.Handler()).Error("typed nil", "err", nilErr)
	_, err := lx.Append(context.Background(), LevelInfo, "typed nil", "err", nilErr)
	require.NoError(t, err)
	require.NoError(t, lx.Flush(context.Background()))
	lines := readLines(t, lx.cfg.Dir, lx.cfg.File)
	require.Len(t, lines, 2)
	for _, l := range lines {
		require.Contains(t, string(l), "err=<nil>")
	}
}

// TestRenderByteSlices: a value whose type is a slice of bytes, named or
// not (json.RawMessage: an object that came as JSON, as the CLI's ingest
// passes it), is written as its text in the text format, as a string is
// (log/slog's text handler writes such values as their text too, always
// quoted); %+v wrote a list of numbers. The JSON format embeds a
// json.RawMessage as the JSON it is.
func TestRenderByteSlices(t *testing.T) {
	type octets []byte
	type octet byte
	for _, c := range []struct {
		v    any
		want string
	}{
		{json.RawMessage(`{"a":1,"b":[true,null]}`), ` k="{\"a\":1,\"b\":[true,null]}"`},
		{json.RawMessage(`12345678901234567890`), ` k=12345678901234567890`},
		{octets("plain"), ` k=plain`},
		{[]octet("with space"), ` k="with space"`},
		{[]byte("bytes"), ` k=bytes`},
	} {
		require.Equal(t, c.want, string(appendAttrText(nil, "", slog.Any("k", c.v))), "%T", c.v)
	}
	require.Equal(t, `"o":{"a":1}`, string(appendAttrJSON(nil, slog.Any("o", json.RawMessage(`{"a":1}`)), 0)))
}
