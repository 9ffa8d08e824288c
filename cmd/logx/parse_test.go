package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/stretchr/testify/require"
)

func testParser(t *testing.T, mode string) *lineParser {
	t.Helper()
	p, err := newLineParser(mode, "UTC", logx.LevelInfo)
	require.NoError(t, err)
	p.now = func() time.Time { return time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) }
	return p
}

func fileLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "forward", name))
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, lines)
	return lines
}

// raw is what a line that does not parse becomes: itself, at the default
// level and the time it is read.
func raw(line string) logx.ClientEntry { return logx.ClientEntry{Level: logx.LevelInfo, Msg: line} }

// Real files, each read the way its writer wrote it: in auto mode and in
// the mode named for it, every line gets the time and level it states,
// and the lines that state none stay as they are.
func TestParseRealFiles(t *testing.T) {
	t.Run("dpkg", func(t *testing.T) { // 2025-06-24 14:36:25 status installed man-db:amd64 2.11.2-2
		for _, mode := range []string{parseAuto, parseRFC3339} {
			p := testParser(t, mode)
			for _, line := range fileLines(t, "dpkg.log") {
				want, err := time.ParseInLocation("2006-01-02 15:04:05", line[:19], time.UTC)
				require.NoError(t, err)
				require.Equal(t, logx.ClientEntry{Time: want, Level: logx.LevelInfo, Msg: line[20:]}, p.parse(line), "%s: %s", mode, line)
			}
		}
	})
	t.Run("hclog", func(t *testing.T) { // 2026-12-02T13:17:10.326Z [ERROR] raft: failed to ...
		p := testParser(t, parseAuto)
		for _, line := range fileLines(t, "hclog.log") {
			ts, rest, _ := strings.Cut(line, " ")
			lvl, msg, _ := strings.Cut(rest, " ")
			want, err := time.Parse(time.RFC3339Nano, ts)
			require.NoError(t, err)
			l, err := logx.ParseLevel(strings.Trim(lvl, "[]"))
			require.NoError(t, err)
			require.Equal(t, logx.ClientEntry{Time: want, Level: l, Msg: strings.TrimLeft(msg, " ")}, p.parse(line), line)
		}
	})
	t.Run("go test -json", func(t *testing.T) { // {"Time":"...","Action":"output",...,"Output":"=== RUN   TestLevelCmd\n"}
		for _, mode := range []string{parseAuto, parseJSON} {
			p := testParser(t, mode)
			for _, line := range fileLines(t, "gotest.json") {
				e := p.parse(line)
				require.False(t, e.Time.IsZero(), "%s: %s", mode, line)
				require.NotEqual(t, line, e.Msg)
				require.Equal(t, "Action", e.Attrs[0].Key, line)
				if strings.Contains(line, `"Output":`) {
					require.NotEmpty(t, e.Msg)
					require.NotContains(t, e.Msg, "\n")
				}
			}
		}
	})
	t.Run("apt and alternatives: no time prefix", func(t *testing.T) {
		// "Start-Date: 2025-06-24  14:36:25", "Commandline: apt-get ...",
		// "update-alternatives 2025-06-24 14:36:31: run with ...": logged
		// as they are.
		for _, name := range []string{"apt-history.log", "alternatives.log"} {
			for _, mode := range []string{parseAuto, parseRFC3339, parseLogfmt, parseJSON} {
				p := testParser(t, mode)
				for _, line := range fileLines(t, name) {
					require.Equal(t, raw(line), p.parse(line), "%s, %s: %s", name, mode, line)
				}
			}
		}
	})
}

// What log/slog's own handlers write parses back into the same time,
// level, message and attributes: its text handler is logfmt, its JSON
// handler JSON.
func TestParseSlogOutput(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 4, 5, 123000000, time.UTC) // the text handler writes milliseconds
	for _, tc := range []struct {
		mode string
		h    func(*bytes.Buffer) slog.Handler
	}{
		{parseLogfmt, func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
		{parseJSON, func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		}},
	} {
		var buf bytes.Buffer
		h := tc.h(&buf)
		r := slog.NewRecord(at, slog.LevelWarn+2, `disk "almost" full`, 0)
		r.AddAttrs(slog.String("path", "/var/lib/x y"), slog.Int("pct", 97))
		require.NoError(t, h.Handle(context.Background(), r))
		line := strings.TrimSuffix(buf.String(), "\n")
		for _, mode := range []string{tc.mode, parseAuto} {
			e := testParser(t, mode).parse(line)
			require.True(t, at.Equal(e.Time), "%s: %s", mode, line)
			require.Equal(t, slog.LevelWarn+2, e.Level, line)
			require.Equal(t, `disk "almost" full`, e.Msg, line)
			require.Len(t, e.Attrs, 2, line)
			require.Equal(t, "path", e.Attrs[0].Key)
			require.Equal(t, "/var/lib/x y", e.Attrs[0].Value.String())
			require.Equal(t, "pct", e.Attrs[1].Key)
			require.Equal(t, "97", e.Attrs[1].Value.String())
		}
	}
}

// Lines that look like a format but are not are logged as they are: a
// level no library writes, a reserved key, a JSON value after the object,
// an object with nothing in it, a broken quote, an impossible date.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ mode, line string }{
		{parseAuto, `{}`}, // found by FuzzParseLine: it became an empty message
		{parseJSON, ` { } `},
		{parseJSON, `{"time":"2026-12-02T10:00:00Z","level":"LOUD","msg":"x"}`},
		{parseJSON, `{"msg":"x","seq":5}`},
		{parseJSON, `{"msg":"x"} {"msg":"y"}`},
		{parseJSON, `{"time":true,"msg":"x"}`},
		{parseJSON, `not json`},
		{parseLogfmt, `level=info msg="unterminated`},
		{parseLogfmt, `level=info node=forged msg=x`},
		{parseAuto, `just a sentence with no time`},
		{parseAuto, `2026-13-45 25:00:00 not a date`},
		{parseRFC3339, `x 2026-12-02T10:00:00Z time is not first`},
		{parseNone, `2026-12-02T10:00:00Z [ERROR] none parses nothing`},
	} {
		require.Equal(t, raw(tc.line), testParser(t, tc.mode).parse(tc.line), "%s: %s", tc.mode, tc.line)
	}
	_, err := newLineParser("yaml", "UTC", logx.LevelInfo)
	require.ErrorContains(t, err, "want one of")
	_, err = newLineParser(parseAuto, "Mars/Olympus", logx.LevelInfo)
	require.ErrorContains(t, err, "-tz")
}

// Syslog's prefix has no year: this year, unless that is more than a day
// ahead (a December line read in January).
func TestParseSyslogYear(t *testing.T) {
	p := testParser(t, parseAuto) // now: 2026-12-02 12:00 UTC
	e := p.parse("Dec  1 23:59:58 host sshd[42]: Accepted publickey")
	require.Equal(t, time.Date(2026, 12, 1, 23, 59, 58, 0, time.UTC), e.Time)
	require.Equal(t, "host sshd[42]: Accepted publickey", e.Msg)
	p.now = func() time.Time { return time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC) }
	e = p.parse("Dec 31 23:00:00 host cron: job")
	require.Equal(t, time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), e.Time)
}

// FuzzParseLine: any line in any mode gives an entry, never a panic, and a
// line the parser leaves alone comes out whole.
func FuzzParseLine(f *testing.F) {
	f.Add(parseAuto, `{"time":"2026-12-02T10:00:00Z","level":"warn","msg":"x","k":[1,{"a":2}]}`)
	f.Add(parseAuto, `2025-06-24 14:36:25 status installed man-db:amd64 2.11.2-2`)
	f.Add(parseLogfmt, `time=2026-12-02T10:00:00Z level=ERROR msg="a \"b\"" k=v`)
	f.Add(parseRFC3339, "Dec  1 23:59:58 host x: y")
	f.Add(parseJSON, `{"ts":1733133600.5,"severity":"fatal"}`)
	f.Fuzz(func(t *testing.T, mode, line string) {
		p, err := newLineParser(mode, "UTC", logx.LevelInfo)
		if err != nil {
			return
		}
		e := p.parse(line)
		if e.Time.IsZero() && e.Level == logx.LevelInfo && len(e.Attrs) == 0 && e.Msg != line {
			// Parsed, yet nothing was taken from the line: only a JSON or
			// logfmt line without a msg can do that, and it has a key.
			require.Contains(t, line, "=", "%s: %q became %q", mode, line, e.Msg)
		}
	})
}

// logx forward -parse auto logs dpkg.log into a cluster: every line's time
// is the one dpkg wrote, its message the rest of the line.
func TestForwardParse(t *testing.T) {
	nodes, cfgs := cluster(t)
	in, err := os.ReadFile(filepath.Join("testdata", "forward", "dpkg.log"))
	require.NoError(t, err)
	code, _, errs := runCmd(t, string(in), "forward", "-node", "dpkg", "-parse", "auto", "-tz", "UTC", cfgs[0].Addr)
	require.Equal(t, 0, code, errs)
	src := fileLines(t, "dpkg.log")
	waitSeq(t, nodes, uint64(len(src)))
	code, out, errs := runCmd(t, "", "tail", "-n", "100000", cfgs[2].Dir)
	require.Equal(t, 0, code, errs)
	got := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, got, len(src))
	for k, l := range got {
		ts, _ := time.ParseInLocation("2006-01-02 15:04:05", src[k][:19], time.UTC)
		require.Contains(t, l, fmt.Sprintf(" time=%s ", ts.Format("2006-01-02T15:04:05.000000Z")), l)
		require.Contains(t, l, " node=dpkg ", l)
		require.True(t, strings.HasSuffix(l, logxQuote(src[k][20:])), "%q should end with the rest of %q", l, src[k])
	}
	code, _, errs = runCmd(t, "", "forward", "-parse", "yaml", cfgs[0].Addr)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "want one of")
}

// logxQuote renders msg as a text line's msg= field does (quoted when it
// holds a space, a quote, = or a control character).
func logxQuote(msg string) string {
	if strings.ContainsAny(msg, " \"=\\") || msg == "" {
		return "msg=" + fmt.Sprintf("%q", msg)
	}
	return "msg=" + msg
}

// Found by review: a word after the time that looks like a zone (GET,
// POST) stays in the message, and -tz applies; PostgreSQL's UTC is read
// as UTC; times a line cannot carry leave the line as it is; JSON numbers
// keep their digits and objects their members, in order.
func TestParseKeepsWhatTheLineSays(t *testing.T) {
	paris, err := newLineParser(parseAuto, "Europe/Paris", logx.LevelInfo)
	require.NoError(t, err)
	e := paris.parse("2024-01-01 10:00:00 GET /index.html 200")
	require.Equal(t, time.Date(2024, 1, 1, 9, 0, 0, 0, time.UTC), e.Time.UTC())
	require.Equal(t, "GET /index.html 200", e.Msg)
	e = paris.parse("2026-05-20 07:29:33.123 UTC [123] LOG:  database system is ready")
	require.Equal(t, time.Date(2026, 5, 20, 7, 29, 33, 123000000, time.UTC), e.Time.UTC())
	require.Equal(t, "[123] LOG:  database system is ready", e.Msg)

	p := testParser(t, parseAuto)
	for _, line := range []string{
		`{"time":"3000-01-01T00:00:00Z","msg":"x"}`,
		`{"time":"0001-01-01T00:00:00Z","msg":"x"}`,
		`{"ts":99999999999999999999,"msg":"x"}`,
		`ts=NaN level=info msg=x`,
		`ts=Inf level=info msg=x`,
		`{"t":5,"msg":"t is not a time key"}`,
	} {
		if line == `{"t":5,"msg":"t is not a time key"}` {
			require.True(t, p.parse(line).Time.IsZero(), line)
			continue
		}
		require.Equal(t, raw(line), p.parse(line), line)
	}
	e = p.parse(`{"msg":"x","big":12345678901234567890,"f":1.0,"g":0.5,"o":{"b":1,"a":"x y","a":"dup"},"arr":[1,"a b"]}`)
	require.Equal(t, "x", e.Msg)
	got := map[string]string{}
	var keys []string
	for _, a := range e.Attrs {
		keys = append(keys, a.Key)
		switch v := a.Value.Any().(type) {
		case json.RawMessage:
			got[a.Key] = string(v)
		default:
			got[a.Key] = fmt.Sprint(v)
		}
	}
	require.Equal(t, []string{"big", "f", "g", "o", "arr"}, keys)
	require.Equal(t, map[string]string{"big": "12345678901234567890", "f": "1.0", "g": "0.5",
		"o": `{"b":1,"a":"x y","a":"dup"}`, "arr": `[1,"a b"]`}, got)
}

// A parsed line refused as too large once rendered (in a JSON cluster, <
// in a nested value renders six times larger: over the 64 KiB a Client
// sends, from 11 KB) goes in as it is, with the rest of its batch,
// instead of stopping forward.
func TestForwardParseFallsBack(t *testing.T) {
	nodes, cfgs := clusterWith(t, func(cfg *logx.Config) {
		cfg.Format = logx.FormatJSON
	})
	big := strings.Repeat("<", 11000)
	in := fmt.Sprintf(`{"msg":"one","o":{"k":"%s"}}`+"\n"+`{"msg":"two"}`+"\n", big)
	code, _, errs := runCmd(t, in, "forward", "-parse", "json", cfgs[0].Addr)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "sending them as they are")
	require.Contains(t, errs, "2 lines committed")
	waitSeq(t, nodes, 2)
}

// A refused batch is the only one sent again as it is: forward's batches
// are one Client batch each. Before, 1,000 lines of over 1 MiB went as
// several batches, and when the leader refused a later one, forward sent
// the whole 1,000 again as they were: the committed lines twice.
func TestForwardFallbackWritesOnce(t *testing.T) {
	nodes, cfgs := clusterWith(t, func(cfg *logx.Config) {
		cfg.Format = logx.FormatJSON
	})
	var in strings.Builder
	pad := strings.Repeat("p", 8<<10)
	const n = 200 // 1.6 MB, then a line too large once parsed (as in TestForwardParseFallsBack)
	for i := range n {
		fmt.Fprintf(&in, `{"msg":"line %d","pad":"%s"}`+"\n", i, pad)
	}
	fmt.Fprintf(&in, `{"msg":"big","o":{"k":"%s"}}`+"\n", strings.Repeat("<", 11000))
	code, _, errs := runCmd(t, in.String(), "forward", "-parse", "json", cfgs[0].Addr)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "sending them as they are", "no batch fell back: the test shows nothing")
	require.Contains(t, errs, fmt.Sprintf("%d lines committed", n+1))
	waitSeq(t, nodes, n+1)
	for _, lx := range nodes {
		require.NoError(t, lx.Flush(t.Context()))
		require.Equal(t, uint64(n+1), lx.Stats().Seq, "a line written twice")
	}
}

// A refusal after a try that may have been committed is not resent raw.
func TestForwardSendRaw(t *testing.T) {
	rejected := fmt.Errorf("%w: batch rejected by n1: too large", logx.ErrRejected)
	require.True(t, sendRaw(rejected))
	require.True(t, sendRaw(fmt.Errorf("%w: entry 3 of 9", logx.ErrEntryTooLarge)))
	require.False(t, sendRaw(fmt.Errorf("%w: %w", logx.ErrOutcomeUnknown, rejected)), "perhaps committed already")
	require.False(t, sendRaw(errors.New("dial tcp: refused")))
}
