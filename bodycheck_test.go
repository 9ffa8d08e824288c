package logx

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// renderRecord renders a record as a node does (Logx.newEntry, as the
// logging calls and the slog handler do): the built-in fields, then attrs
// through a handler that has an attribute and a group open when group is
// not empty.
func renderRecord(f Format, t time.Time, level slog.Level, node, msg, group string, attrs ...slog.Attr) (body []byte, nanos int64) {
	lx := &Stream{cfg: Config{Format: f, NodeID: node, MaxEntrySize: math.MaxInt}}
	h := &handler{lx: lx, pre: [][]byte{nil}}
	if group != "" {
		h = h.WithAttrs([]slog.Attr{slog.String("with", msg)}).WithGroup(group).(*handler)
	}
	e, err := lx.newEntry(context.Background(), t, level, 0, msg, h, nil, attrs, nil)
	if err != nil {
		panic(err)
	}
	return e.body, e.nanos
}

// appendAttrs renders attrs after a body's built-in fields.
func appendAttrs(body []byte, f Format, attrs ...slog.Attr) []byte {
	return (*handler)(nil).appendAttrs(body, f, nil, attrs, nil)
}

// userJSON is a value json.Marshal renders from its MarshalJSON as is.
type userJSON string

func (u userJSON) MarshalJSON() ([]byte, error) { return []byte(u), nil }

// userText is a value rendered from its MarshalText.
type userText string

func (u userText) MarshalText() ([]byte, error) { return []byte(u), nil }

// hostileAttrs are attributes of every kind holding s.
func hostileAttrs(s string) []slog.Attr {
	return []slog.Attr{
		slog.String(s, s),
		slog.String("", s),
		slog.Int("n", -3), slog.Uint64("u", math.MaxUint64), slog.Bool("b", true),
		slog.Float64("f", 1e21), slog.Float64("nan", math.NaN()), slog.Float64("inf", math.Inf(-1)),
		slog.Duration("d", 1500*time.Millisecond),
		slog.Time("t", time.Date(10000, 1, 2, 3, 4, 5, 6, time.FixedZone(s, 3600))),
		slog.Time("t0", time.Time{}),
		slog.Any("err", errors.New(s)),
		slog.Any("bytes", []byte(s)),
		slog.Any("struct", struct{ A, B string }{s, "x\x7f\u0085\u2028"}),
		slog.Any("map", map[string]any{s: []any{s, 1, nil}}),
		slog.Any("json", userJSON(`{"a":"`+"\x7f\u0085\xff\u2029"+`","b":[1,-2.5e3,true,null,{}]}`)),
		slog.Any("badjson", userJSON(s)),
		slog.Any("text", userText(s)),
		slog.Group("g", slog.String(s, s), slog.Group(s, slog.Int("deep", 1))),
		slog.Group("empty"),
		slog.Group("", slog.String("inline", s)),
	}
}

// Every body logx renders passes, in both formats, with or without a time,
// whatever the user's strings, at any level.
func TestCheckRecordGenuine(t *testing.T) {
	times := []time.Time{
		{}, time.Unix(0, 0), time.Unix(0, 999), time.Unix(1795000000, 123456789),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", -7200)),
		time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), // past UnixNano: rendered without a time
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	levels := []slog.Level{LevelDebug, LevelInfo, LevelWarn, LevelError, -8, 13, 5, math.MinInt32, math.MaxInt32}
	for _, f := range []Format{FormatText, FormatJSON} {
		for _, s := range append(hostile, "plain", "seq=999999\nlevel=ERROR", `"},{"x":1`) {
			for i, tm := range times {
				level := levels[i%len(levels)]
				for _, group := range []string{"", s} {
					body, nanos := renderRecord(f, tm, level, s, s, group, hostileAttrs(s)...)
					require.NoError(t, checkRecord(f, level, nanos, body), "%s %v %q", f, tm, body)
				}
				// A caller (file:line, from the program counter) is
				// rendered like the node and message.
				body := appendBodyStart(nil, f, recordTime(tm), level, "n1", s, s)
				body, nanos := appendAttrs(body, f, hostileAttrs(s)...), int64(0)
				if lt := recordTime(tm); !lt.IsZero() {
					nanos = lt.UnixNano()
				}
				require.NoError(t, checkRecord(f, level, nanos, body), "%s %v %q", f, tm, body)
			}
		}
		for _, level := range levels {
			body, nanos := renderRecord(f, time.Now(), level, "n1", "m", "")
			require.NoError(t, checkRecord(f, level, nanos, body), "%s %q", f, body)
			require.Equal(t, level.String(), string(appendLevel(nil, level)))
		}
	}
}

// Bodies that would not render as one well-formed line are refused, each
// with an error that says why.
func TestCheckRecordHostile(t *testing.T) {
	tm := time.Date(2026, 12, 2, 10, 11, 12, 345678912, time.UTC)
	nanos := tm.UnixNano()
	head := "time=2026-12-02T10:11:12.345678Z level=INFO"
	jhead := `"time":"2026-12-02T10:11:12.345678Z","level":"INFO"`
	text, _ := renderRecord(FormatText, tm, LevelInfo, "n1", "hi", "")
	js, _ := renderRecord(FormatJSON, tm, LevelInfo, "n1", "hi", "")
	for _, c := range []struct {
		name   string
		f      Format
		level  slog.Level
		nanos  int64
		body   string
		reason string
	}{
		{"forged line", FormatText, LevelInfo, nanos, head + " msg=hi\nseq=999999 time=2026-12-02T10:11:12.345678Z level=ERROR msg=forged", "U+000A"},
		{"raw newline in quotes", FormatText, LevelInfo, nanos, head + ` msg="a` + "\n" + `b"`, "U+000A"},
		{"CR", FormatText, LevelInfo, nanos, head + ` msg="a` + "\r" + `b"`, "U+000D"},
		{"NUL", FormatText, LevelInfo, nanos, head + " msg=a\x00b", "U+0000"},
		{"DEL", FormatText, LevelInfo, nanos, head + " msg=a\x7fb", "U+007F"},
		{"C1", FormatText, LevelInfo, nanos, head + ` msg="a` + "\u0085" + `b"`, "U+0085"},
		{"U+2028", FormatText, LevelInfo, nanos, head + ` msg="a` + "\u2028" + `b"`, "U+2028"},
		{"U+2029", FormatJSON, LevelInfo, nanos, jhead + `,"msg":"a` + "\u2029" + `b"`, "U+2029"},
		{"invalid UTF-8", FormatText, LevelInfo, nanos, head + ` msg="a` + "\xff" + `b"`, "UTF-8"},
		{"JSON newline", FormatJSON, LevelInfo, nanos, jhead + `,"msg":"hi"}` + "\n" + `{"seq":999999,"level":"ERROR"`, "U+000A"},
		{"no level", FormatText, 0, 0, "node=n1 msg=x", "level="},
		{"no level JSON", FormatJSON, 0, 0, `"node":"n1","msg":"x"`, `"level":"`},
		{"level not the record's", FormatText, LevelInfo, 0, "level=ERROR node=n1 msg=x", "(INFO)"},
		{"level not the record's JSON", FormatJSON, LevelError, 0, `"level":"INFO","msg":"x"`, "(ERROR)"},
		{"level with a suffix", FormatText, LevelInfo, 0, "level=INFO+0 node=n1 msg=x", "key"},
		{"level in lower case", FormatText, LevelInfo, 0, "level=info node=n1 msg=x", "(INFO)"},
		{"level longer JSON", FormatJSON, LevelInfo, 0, `"level":"INFOX","msg":"x"`, "(INFO)"},
		{"time not the record's", FormatText, LevelInfo, nanos + 1e9, head + " msg=x", "time"},
		{"time not the record's JSON", FormatJSON, LevelInfo, nanos - 1e3, jhead + `,"msg":"x"`, "time"},
		{"time but the record has none", FormatText, LevelInfo, 0, head + " msg=x", "time"},
		{"record time but none in the body", FormatText, LevelInfo, nanos, "level=INFO msg=x", "time"},
		{"time not closed JSON", FormatJSON, LevelInfo, nanos, `"time":"2026-12-02T10:11:12.345678ZX","level":"INFO"`, `"\","`},
		{"time without a space", FormatText, LevelInfo, nanos, "time=2026-12-02T10:11:12.345678Zlevel=INFO msg=x", `" "`},
		{"level alone", FormatText, LevelInfo, 0, "level=INFO", "nothing after"},
		{"value with a space", FormatText, LevelInfo, 0, "level=INFO msg=a b", "'='"},
		{"two spaces", FormatText, LevelInfo, 0, "level=INFO  msg=x", "empty"},
		{"trailing space", FormatText, LevelInfo, 0, "level=INFO msg=x ", "empty"},
		{"empty value", FormatText, LevelInfo, 0, "level=INFO msg=", "empty"},
		{"empty key", FormatText, LevelInfo, 0, "level=INFO =x", "empty"},
		{"no value", FormatText, LevelInfo, 0, "level=INFO msg", "'='"},
		{"two equals", FormatText, LevelInfo, 0, "level=INFO msg=a=b", "space"},
		{"quote in a token", FormatText, LevelInfo, 0, `level=INFO msg=a"b`, `'"'`},
		{"unterminated quote", FormatText, LevelInfo, 0, `level=INFO msg="abc`, "unterminated"},
		{"bad escape", FormatText, LevelInfo, 0, `level=INFO msg="\q"`, "escape"},
		{"single-quote escape", FormatText, LevelInfo, 0, `level=INFO msg="\'"`, "escape"},
		{"octal past 255", FormatText, LevelInfo, 0, `level=INFO msg="\400"`, "escape"},
		{"surrogate escape", FormatText, LevelInfo, 0, `level=INFO msg="\ud800"`, "escape"},
		{"rune past U+10FFFF", FormatText, LevelInfo, 0, `level=INFO msg="\U00110000"`, "escape"},
		{"short hex escape", FormatText, LevelInfo, 0, `level=INFO msg="\x4"`, "escape"},
		{"space rune in a token", FormatText, LevelInfo, 0, "level=INFO msg=a\u00a0seq=5", "U+00A0"},
		{"unprintable rune in a token", FormatText, LevelInfo, 0, "level=INFO msg=a\u200bb", "U+200B"},
		{"JSON closes the object early", FormatJSON, LevelInfo, 0, `"level":"INFO"},{"x":1`, "JSON"},
		{"JSON trailing garbage", FormatJSON, LevelInfo, 0, `"level":"INFO","msg":"x"x`, "JSON"},
		{"JSON missing comma", FormatJSON, LevelInfo, 0, `"level":"INFO" "msg":"x"`, "JSON"},
		{"JSON trailing comma", FormatJSON, LevelInfo, 0, `"level":"INFO",`, "JSON"},
		{"JSON bad escape", FormatJSON, LevelInfo, 0, `"level":"INFO","msg":"\x41"`, "JSON"},
		{"JSON bad number", FormatJSON, LevelInfo, 0, `"level":"INFO","n":01`, "JSON"},
		{"JSON unclosed array", FormatJSON, LevelInfo, 0, `"level":"INFO","a":[1,2`, "JSON"},
		{"JSON bare word", FormatJSON, LevelInfo, 0, `"level":"INFO","a":nul`, "JSON"},
		{"text body, JSON cluster", FormatJSON, LevelInfo, nanos, string(text), "time"},
		{"JSON body, text cluster", FormatText, LevelInfo, nanos, string(js), "time"},
		{"text body, JSON cluster, no time", FormatJSON, LevelInfo, 0, "level=INFO node=n1 msg=hi", `"level":"`},
		{"JSON body, text cluster, no time", FormatText, LevelInfo, 0, `"level":"INFO","node":"n1","msg":"hi"`, "level="},
		{"unknown format", Format(7), LevelInfo, nanos, string(text), "unknown format"},
		{"empty body", FormatText, LevelInfo, 0, "", "level="},
		{"empty body JSON", FormatJSON, LevelInfo, 0, "", `"level":"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkRecord(c.f, c.level, c.nanos, []byte(c.body))
			require.ErrorIs(t, err, errBadRecord, "%q", c.body)
			require.ErrorContains(t, err, c.reason)
		})
	}
	// The genuine bodies the hostile ones were made from pass.
	require.NoError(t, checkRecord(FormatText, LevelInfo, nanos, []byte(head+" msg=x")))
	require.NoError(t, checkRecord(FormatJSON, LevelInfo, nanos, []byte(jhead+`,"msg":"x"`)))
	require.NoError(t, checkRecord(FormatText, LevelInfo, nanos, text))
	require.NoError(t, checkRecord(FormatJSON, LevelInfo, nanos, js))
}

// A batch is refused if any record is, and a batch without records is
// refused.
func TestValidateBatchRecords(t *testing.T) {
	good, nanos := renderRecord(FormatText, time.Now(), LevelInfo, "n1", "ok", "")
	recs := wire.AppendRecord(nil, LevelInfo, nanos, good)
	b := wire.NewBatch(wire.Header{Producer: 1, FirstPSeq: 1, Count: 1}, recs, false)
	require.NoError(t, validateBatch(b, FormatText, 1024, 1<<20, new([]byte)))
	require.ErrorIs(t, validateBatch(b, FormatJSON, 1024, 1<<20, new([]byte)), errBadRecord)

	bad := wire.AppendRecord(recs, LevelInfo, nanos, append(good, "\nseq=999999 level=ERROR msg=x"...))
	b = wire.NewBatch(wire.Header{Producer: 1, FirstPSeq: 1, Count: 2}, bad, false)
	err := validateBatch(b, FormatText, 1024, 1<<20, new([]byte))
	require.ErrorIs(t, err, errBadRecord)
	require.ErrorContains(t, err, "record 1")

	empty := wire.NewBatch(wire.Header{Producer: 1, FirstPSeq: 1, Count: 0}, nil, false)
	require.ErrorContains(t, validateBatch(empty, FormatText, 1024, 1<<20, new([]byte)), "no entries")
}

// The renderer escapes what json.Marshal leaves raw (DEL, C1, invalid UTF-8
// from a MarshalJSON), so such values decode back and the leader takes them.
func TestMarshaledValueEscaped(t *testing.T) {
	s := "del\x7f nel\u0085 ls\u2028 ok\u00e9"
	b := appendAttrJSON(nil, slog.Any("v", struct{ S string }{s}), 1)
	require.NoError(t, checkChars(b), "%q", b)
	var back map[string]struct{ S string }
	require.NoError(t, json.Unmarshal(append(append([]byte("{"), b...), '}'), &back))
	require.Equal(t, s, back["v"].S)

	b = appendAttrJSON(nil, slog.Any("v", userJSON("\"bad\xffutf8\"")), 1)
	require.NoError(t, checkChars(b), "%q", b)
	require.Equal(t, `"v":"bad\ufffdutf8"`, string(b))
}

// forwardRaw sends one batch to addr as a follower would and returns the
// leader's answer: status and message.
func forwardRaw(t *testing.T, addr string, batch []byte) (byte, string) {
	t.Helper()
	conn, err := dialProto(context.Background(), addr, "", wire.ProtoForward, 10*time.Second, nil)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(batch)))
	_, err = conn.Write(append(frame, batch...))
	require.NoError(t, err)
	resp, err := wire.ReadFrame(bufio.NewReader(conn), nil, 1<<20)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(resp), wire.AnswerHeader)
	return resp[0], string(resp[wire.AnswerHeader:])
}

// TestForgedLineRefused: a forwarded body that holds a newline and a forged
// line (seq=999999 level=ERROR) is refused by the leader with an error the
// sender sees, the batch's other record with it; nothing reaches the files,
// no Reader sees the forged sequence number, and the cluster keeps working.
// A Client whose bodies are in the wrong format learns that its batch was
// rejected, at once.
func TestForgedLineRefused(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	ctx := context.Background()
	for i, lx := range c.nodes {
		_, err := lx.Append(ctx, LevelInfo, "legit", "i", i)
		require.NoError(t, err)
	}
	l := c.leaderIndex()
	require.GreaterOrEqual(t, l, 0)

	now := time.Now()
	good, nanos := renderRecord(FormatText, now, LevelInfo, "n9", "genuine", "")
	forged, _ := renderRecord(FormatText, now, LevelInfo, "n9", "hi", "")
	forged = fmt.Appendf(forged, "\nseq=999999 time=%s level=ERROR node=n1 msg=forged", now.UTC().Format(timeLayout))
	recs := wire.AppendRecord(nil, LevelInfo, nanos, good)
	recs = wire.AppendRecord(recs, LevelInfo, nanos, forged)
	status, msg := forwardRaw(t, c.cfgs[l].Addr, wire.NewBatch(wire.Header{Producer: 0xf0f0, FirstPSeq: 1, Count: 2}, recs, false))
	require.Equal(t, wire.StatusRejected, status, "answer: %q", msg)
	require.Contains(t, msg, "record 1")
	require.Contains(t, msg, "control character U+000A")

	// The same inside a compressed batch, with a carriage return.
	recs = nil
	for range 100 {
		recs = wire.AppendRecord(recs, LevelInfo, nanos, good)
	}
	recs = wire.AppendRecord(recs, LevelInfo, nanos, append(good, " x=\rseq=999999"...))
	batch := wire.NewBatch(wire.Header{Producer: 0xf0f1, FirstPSeq: 1, Count: 101}, recs, true)
	require.Equal(t, wire.FlagCompressed, batch[1]&wire.FlagCompressed)
	status, msg = forwardRaw(t, c.cfgs[l].Addr, batch)
	require.Equal(t, wire.StatusRejected, status, "answer: %q", msg)
	require.Contains(t, msg, "control character U+000D")

	cl, err := NewClient(ctx, "ext", c.cfgs[0].Addr)
	require.NoError(t, err)
	defer cl.Close()
	cl.format = FormatJSON // the cluster's lines are text
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = cl.Send(sctx, []ClientEntry{{Level: LevelWarn, Msg: "wrong format"}})
	require.ErrorContains(t, err, "batch rejected")
	require.NoError(t, sctx.Err(), "rejected at once, not retried")

	// The cluster still works, from a follower and from a Client.
	_, err = c.nodes[(l+1)%3].Append(ctx, LevelInfo, "after", "i", 3)
	require.NoError(t, err)
	cl.format = FormatText
	first, err := cl.Send(sctx, []ClientEntry{{Level: LevelWarn, Msg: "client"}})
	require.NoError(t, err)
	require.Equal(t, uint64(5), first)
	c.flushAll()
	require.Equal(t, uint64(5), c.waitSameSeq(5))
	requireIdentical(t, c.dirs(), "app.log")

	for _, dir := range c.dirs() {
		lines := readLines(t, dir, "app.log")
		require.Len(t, lines, 5)
		for i, line := range lines {
			seq, _, level, err := parseHead(line)
			require.NoError(t, err)
			require.Equal(t, uint64(i+1), seq)
			require.NotEqual(t, LevelError, level)
			for _, s := range []string{"genuine", "forged", "seq=999999", "wrong format"} {
				require.NotContains(t, string(line), s)
			}
		}
		r, err := OpenReader(dir, "app.log")
		require.NoError(t, err)
		var seqs []uint64
		for {
			line, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			seqs = append(seqs, line.Seq)
		}
		require.NoError(t, r.Close())
		require.Equal(t, []uint64{1, 2, 3, 4, 5}, seqs)
	}
}

// BenchmarkCheckRecord: the leader's check of one typical forwarded record.
func BenchmarkCheckRecord(b *testing.B) {
	now := time.Now()
	nanos := now.UnixNano()
	for _, f := range []Format{FormatText, FormatJSON} {
		body := appendBodyStart(nil, f, now, LevelInfo, "n2", "app/handler.go:118", "request served")
		body = appendAttrs(body, f,
			slog.String("method", "GET"), slog.String("path", "/api/v1/users/42"), slog.Int("status", 200),
			slog.Duration("took", 1834*time.Microsecond), slog.String("user", "alice"))
		b.Run(f.String(), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ReportMetric(float64(len(body)), "body-bytes")
			for b.Loop() {
				if err := checkRecord(f, LevelInfo, nanos, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// chain is a LogValuer whose value is a group holding the next link: a
// linked list logged as nested groups, as deep as it is long.
type chain int

func (c chain) LogValue() slog.Value {
	if c == 0 {
		return slog.IntValue(0)
	}
	return slog.GroupValue(slog.Any("next", c-1))
}

// TestRenderTooDeep: a value that would nest a JSON line past what
// json.Valid accepts (a decoded request body json.Unmarshal took, a
// LogValuer that returns groups of itself, WithGroup called in a loop) is
// written as tooDeep, so the line passes the leader's check (which would
// refuse the whole batch) and json.Valid; a value that fits is written
// whole.
func TestRenderTooDeep(t *testing.T) {
	deep := func(n int) any {
		var v any
		require.NoError(t, json.Unmarshal([]byte(strings.Repeat("[", n)+strings.Repeat("]", n)), &v))
		return v
	}
	check := func(name string, body []byte, wantTooDeep bool) {
		t.Helper()
		require.NoError(t, checkRecord(FormatJSON, LevelInfo, 0, body), name)
		require.True(t, json.Valid(appendLine(nil, FormatJSON, 1, body)), name)
		require.Equal(t, wantTooDeep, bytes.Contains(body, []byte(tooDeep)), name)
	}
	start := func() []byte { return appendBodyStart(nil, FormatJSON, time.Time{}, LevelInfo, "n1", "", "m") }
	// The line's object is 1 deep, so a value may nest 9,999 more.
	for _, n := range []int{maxJSONDepth - 1, maxJSONDepth} {
		check(fmt.Sprint("decoded ", n), appendAttrs(start(), FormatJSON, slog.Any("body", deep(n))), n == maxJSONDepth)
		// In a group, one less.
		check(fmt.Sprint("decoded in a group ", n), appendAttrs(start(), FormatJSON, slog.Group("g", slog.Any("body", deep(n-1)))), n == maxJSONDepth)
		// chain(n) is n groups (objects) around a number.
		check(fmt.Sprint("chain ", n), appendAttrs(start(), FormatJSON, slog.Any("list", chain(n))), n == maxJSONDepth)
	}
	// Text has no nesting, but a LogValuer that returns a group of itself
	// ends there too (a cycle overflowed the stack).
	body := appendAttrs(appendBodyStart(nil, FormatText, time.Time{}, LevelInfo, "n1", "", "m"), FormatText, slog.Any("list", chain(maxJSONDepth+5)))
	require.NoError(t, checkRecord(FormatText, LevelInfo, 0, body))
	require.True(t, bytes.Contains(body, []byte(`="`+tooDeep+`"`)), "text")
	lx := &Stream{cfg: Config{Format: FormatJSON, NodeID: "n1", MaxEntrySize: math.MaxInt}}
	var h slog.Handler = &handler{lx: lx, pre: [][]byte{nil}}
	for range maxJSONDepth + 5 {
		h = h.WithGroup("g")
	}
	require.Equal(t, maxJSONDepth-1, len(h.(*handler).groups))
	h = h.WithAttrs([]slog.Attr{slog.Group("pre", slog.Int("x", 1))})
	e, err := lx.newEntry(context.Background(), time.Time{}, LevelInfo, 0, "m", h.(*handler), nil, []slog.Attr{slog.Int("x", 1), slog.Group("in", slog.Int("y", 2))}, nil)
	require.NoError(t, err)
	check("groups", e.body, true)
	require.Contains(t, string(e.body), `"x":1`)
}
