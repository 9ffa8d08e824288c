package logx

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// Fuzz targets for what a peer or a disk can hand logx. Each runs its seeds
// in the normal test run; .ci/run fuzzes each for a few seconds:
//
//	go test -run '^$' -fuzz FuzzForwardFrame -fuzztime 30s .
//
// (FuzzBatchDecode, in recovery_test.go, covers the entry codec.)

// FuzzForwardFrame: a forwarded request is a length-prefixed frame holding
// a batch. Whatever arrives, the leader's reader and validator return an
// error or a batch of at least one record that decodes completely, every
// record one well-formed line; nothing panics, and no frame larger than the
// limit is read.
func FuzzForwardFrame(f *testing.F) {
	b := wire.AppendHeader(nil, wire.Header{Producer: 7, FirstPSeq: 1, Count: 2})
	b = wire.AppendRecord(b, LevelInfo, 0, []byte("level=INFO node=n1 msg=a"))
	b = wire.AppendRecord(b, LevelWarn, 0, []byte("level=WARN node=n1 msg=b"))
	f.Add(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b)
	var recs []byte
	for i := range 60 {
		recs = wire.AppendRecord(recs, LevelInfo, 0, fmt.Appendf(nil, "level=INFO node=n1 msg=\"line %d of a batch that compresses\"", i))
	}
	z := wire.NewBatch(wire.Header{Producer: 7, FirstPSeq: 1, Count: 60}, recs, true)
	f.Add(binary.BigEndian.AppendUint32(nil, uint32(len(z))), z)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, []byte{1})
	f.Add([]byte{0, 0, 0, 3}, []byte{1, 2})
	f.Fuzz(func(t *testing.T, hdr, body []byte) {
		const max = 4096
		data, err := wire.ReadFrame(bytes.NewReader(append(hdr, body...)), nil, max)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(data), max)
		lent := new([]byte)
		if validateBatch(data, FormatText, 1024, 1<<20, lent) != nil {
			return
		}
		r, err := wire.ReadBatch(data, new([]byte), 1<<20)
		require.NoError(t, err)
		if wire.Compressed(data) {
			// What the leader lends its apply, which reads it unwalked
			// (expand.go), is exactly what decoding the batch gives.
			require.Equal(t, r.Records(), *lent)
		}
		n := 0
		for r.Next() {
			require.LessOrEqual(t, len(r.Body), 1024)
			require.NoError(t, checkRecord(FormatText, r.Level, r.UnixNano, r.Body))
			n++
		}
		require.NotZero(t, n)
		require.NoError(t, r.Err())
		require.Equal(t, r.Header.Count, n)
	})
}

// FuzzCheckRecord: the leader's check of a forwarded record (checkRecord)
// passes every body logx renders, whatever the user's strings, time and
// level; and whatever bytes a body holds, if the check passes it, the body
// renders as exactly one line whose head parses back to the sequence number,
// level and time of the record, and in JSON as one JSON object. The check's
// parts agree with the standard library: quoted strings with
// strconv.QuotedPrefix, JSON with json.Valid, times with time.AppendFormat.
func FuzzCheckRecord(f *testing.F) {
	tm := time.Date(2026, 12, 2, 10, 11, 12, 345678912, time.UTC)
	for i, s := range append(hostile, "plain", `"},{"x":1`, "\x41\u00e9") {
		for _, jsonFmt := range []bool{false, true} {
			format := FormatText
			if jsonFmt {
				format = FormatJSON
			}
			body, nanos := renderRecord(format, tm.Add(time.Duration(i)*time.Second), LevelInfo, "n1", s, "", slog.String("k", s))
			f.Add(jsonFmt, false, int64(LevelInfo), int64(0), nanos, s, "", body)
		}
	}
	f.Add(false, false, int64(LevelInfo), int64(0), tm.UnixNano(), "", "", []byte("time=2026-12-02T10:11:12.345678Z level=INFO msg=hi\nseq=999999 level=ERROR"))
	f.Add(true, true, int64(LevelInfo), int64(0), int64(0), "", "", []byte(`"level":"INFO"},{"x":1`))
	f.Add(false, true, int64(-8), int64(math.MaxInt64), int64(0), "g", "\u0085", []byte(`level=DEBUG-4 a="\x00\377\U0010ffff" b=ü`))
	f.Fuzz(func(t *testing.T, jsonFmt, noTime bool, lv, sec, nanos int64, s1, s2 string, body []byte) {
		format := FormatText
		if jsonFmt {
			format = FormatJSON
		}
		level := slog.Level(lv)

		// (a) What logx renders passes.
		var at time.Time
		if !noTime {
			at = time.Unix(sec, nanos)
		}
		attrs := []slog.Attr{slog.String(s1, s2), slog.Any("j", userJSON(s2)), slog.Any("x", []any{s1, map[string]string{s2: s1}}),
			slog.Any("tm", userText(s1)), slog.Time("t", at), slog.Group(s2, slog.String(s1, s2))}
		g, gn := renderRecord(format, at, level, s1, s2, s1, attrs...)
		require.NoError(t, checkRecord(format, level, gn, g), "%q", g)
		g = appendAttrs(appendBodyStart(nil, format, time.Time{}, level, s2, s1, s2), format, attrs...)
		require.NoError(t, checkRecord(format, level, 0, g), "%q", g)

		// (b) What the check passes is one well-formed line.
		require.Equal(t, time.Unix(0, nanos).UTC().Format(timeLayout), string(appendRecordTime(nil, nanos)))
		if checkChars(body) == nil {
			if len(body) > 0 && body[0] == '"' {
				end, err := quotedEnd(body, 0, 0)
				p, perr := strconv.QuotedPrefix(string(body))
				require.Equal(t, perr == nil, err == nil, "%q", body)
				if err == nil {
					require.Equal(t, len(p), end, "%q", body)
				}
			}
		}
		// The JSON check, one pass, accepts what json.Valid does of the
		// line, for a body of characters checkChars accepts.
		l := appendLine(nil, FormatJSON, 1, body)
		require.Equal(t, charsRef(string(body)) && json.Valid(l), checkJSONMembers(body) == nil, "%q", body)
		// (c) The text check, one pass, accepts what the two-pass rule does.
		if got, want := checkTextPairs(body, 0) == nil, textPairsRef(string(body)); got != want {
			t.Fatalf("checkTextPairs(%q) accepts: %v, the reference: %v", body, got, want)
		}
		if checkRecord(format, level, nanos, body) != nil {
			return
		}
		line := appendLine(nil, format, 1, body)
		require.Equal(t, 1, bytes.Count(line, []byte{'\n'}), "%q", line)
		require.Equal(t, byte('\n'), line[len(line)-1])
		require.True(t, utf8.Valid(line), "%q", line)
		for _, r := range string(line[:len(line)-1]) {
			require.False(t, r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029', "%q in %q", r, line)
		}
		seq, ht, hl, err := parseHead(line[:len(line)-1])
		require.NoError(t, err, "%q", line)
		require.Equal(t, uint64(1), seq)
		require.Equal(t, level, hl)
		want := time.Unix(0, nanos).UTC().Truncate(time.Microsecond)
		if nanos != 0 || !ht.IsZero() {
			require.True(t, want.Equal(ht), "head time %v, record time %v: %q", ht, want, line)
		}
		if format == FormatJSON {
			require.True(t, json.Valid(line), "%q", line)
		}
	})
}

// FuzzParseHead: the reader's line parser takes anything a file holds
// without panicking, and reads back what the renderer wrote.
// FuzzLineTime: parseLineTime agrees with time.Parse on any 27 bytes and
// on any time logx writes.
func FuzzLineTime(f *testing.F) {
	for _, s := range []string{"2026-11-24T23:35:45.123456Z", "0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z",
		"2024-02-29T12:00:00.000000Z", "2023-02-29T12:00:00.000000Z", "2026-13-01T00:00:00.000000Z", "2026-11-24T24:00:00.000000Z",
		"2026-11-24T23:60:00.000000Z", "2026-11-24T23:59:60.000000Z", "0000-01-01T00:00:00.000000Z", "2026-11-24T23:35:45.12345xZ",
		"2026-11-24 23:35:45.123456Z", "+026-11-24T23:35:45.123456Z", "1900-02-29T00:00:00.000000Z", "2000-02-29T00:00:00.000000Z"} {
		f.Add([]byte(s), int64(0))
	}
	f.Add([]byte{}, int64(1764000000123456789))
	f.Add([]byte{}, int64(math.MinInt64))
	f.Add([]byte{}, int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, ts []byte, nanos int64) {
		check := func(ts []byte) {
			got, gerr := parseLineTime(ts)
			want, werr := time.Parse(timeLayout, string(ts))
			if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() || !got.Equal(want) || got.Location() != want.Location() {
				t.Fatalf("%q: %v, %v; time.Parse: %v, %v", ts, got, gerr, want, werr)
			}
		}
		check(ts)
		check(appendRecordTime(nil, nanos))
	})
}

func FuzzParseHead(f *testing.F) {
	f.Add([]byte("seq=42 time=2026-11-24T23:35:45.123456Z level=INFO node=n1 msg=hi"), uint64(7), "msg")
	f.Add([]byte(`{"seq":1,"time":"2026-11-24T23:35:45.123456Z","level":"WARN","node":"n1","msg":"x"}`), uint64(1), "")
	f.Add([]byte("seq=1 level=ERROR+2 node=n1 msg=x"), uint64(1<<63), "a\nb")
	f.Add([]byte("seq=1 time=2026-11-24T23:35:45.123456Z"), uint64(1), "") // ends at its time
	f.Add([]byte(`{"seq":1,"time":"2026-11-24T23:35:45.123456Z`), uint64(1), "")
	f.Fuzz(func(t *testing.T, line []byte, seq uint64, msg string) {
		_, _, _, _ = parseHead(line)
		for _, format := range []Format{FormatText, FormatJSON} {
			body := appendBodyStart(nil, format, tenMinutes(3), LevelWarn, "n1", "", msg)
			l := appendLine(nil, format, seq, body)
			gotSeq, gotTime, gotLevel, err := parseHead(l[:len(l)-1])
			require.NoError(t, err, "%s", l)
			require.Equal(t, seq, gotSeq)
			require.Equal(t, tenMinutes(3), gotTime)
			require.Equal(t, LevelWarn, gotLevel)
		}
	})
}

// FuzzEscape: whatever a user logs, a rendered line is one line with no
// control character, and the text survives: quoted text unquotes to it,
// JSON decodes to it (invalid UTF-8 aside, which JSON replaces).
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "plain", "a b", "x=y", "\"q\"", "new\nline", "\r\x00\x1b[31m", "\u2028\u2029", "\xff\xfe", "\u0085\x7f", "tab\there"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, format := range []Format{FormatText, FormatJSON} {
			body := appendBodyStart(nil, format, tenMinutes(1), LevelInfo, "n1", "c.go:1", s)
			line := appendLine(nil, format, 1, body)
			require.Equal(t, 1, bytes.Count(line, []byte{'\n'}), "%q", line)
			for _, r := range string(line[:len(line)-1]) {
				require.False(t, r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029', "%q in %q", r, line)
			}
		}
		txt := appendTextString(nil, s)
		if txt[0] == '"' {
			require.Equal(t, strconv.Quote(s), string(txt), "quoted as strconv.Quote does")
			u, err := strconv.Unquote(string(txt))
			require.NoError(t, err, "%s", txt)
			require.Equal(t, s, u)
		} else {
			require.Equal(t, s, string(txt))
			for _, r := range s {
				require.True(t, unicode.IsPrint(r) && r != ' ' && r != '=' && r != '"', "%q unquoted", s)
			}
		}
		// The word-at-a-time renderers match the byte-at-a-time reference.
		require.Equal(t, needsQuotingRef(s), needsQuoting(s))
		require.Equal(t, string(appendTextStringRef(nil, s)), string(txt))
		require.Equal(t, string(appendJSONStringRef(nil, s)), string(appendJSONString(nil, s)))
		var back string
		require.NoError(t, json.Unmarshal(appendJSONString(nil, s), &back))
		if utf8.ValidString(s) {
			require.Equal(t, s, back)
		}
	})
}

// FuzzTornTail: after a crash, the active file may hold anything past its
// checkpointed size (a torn line, garbage, zeros). Recovery cuts it back to
// exactly the checkpointed bytes.
func FuzzTornTail(f *testing.F) {
	f.Add([]byte("seq=99 time=2026-11-24T23:3"))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte("\n\n\xff"))
	logs := testLogs(6, 3)
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		fsm := openTestFSM(t, dir)
		fsm.ApplyBatch(logs)
		require.NoError(t, fsm.persist())
		require.NoError(t, fsm.seg.Close())
		want, err := os.ReadFile(filepath.Join(dir, "app.log"))
		require.NoError(t, err)
		appendFile(t, filepath.Join(dir, "app.log"), string(tail))

		fsm = openTestFSM(t, dir)
		require.NoError(t, fsm.close())
		got, err := os.ReadFile(filepath.Join(dir, "app.log"))
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}

// FuzzFetchRange: the catch-up server serves a range only if it lies inside
// the file and within one chunk, whatever the numbers (overflow included).
func FuzzFetchRange(f *testing.F) {
	f.Add(int64(0), int64(100), int64(100))
	f.Add(int64(math.MaxInt64), int64(fetchChunk), int64(1<<30))
	f.Add(int64(-1), int64(1), int64(10))
	f.Add(int64(5), int64(-5), int64(10))
	f.Fuzz(func(t *testing.T, off, n, size int64) {
		if !fetchRangeOK(off, n, size) {
			return
		}
		require.True(t, off >= 0 && n >= 0 && n <= fetchChunk, "off %d n %d", off, n)
		require.LessOrEqual(t, off, size-n, "off %d n %d size %d", off, n, size)
		require.GreaterOrEqual(t, off+n, off, "no overflow")
	})
}

// FuzzFetchReply: whatever a peer answers to a fetch, the catching-up node
// takes exactly the bytes it asked for, or an error; it never takes more,
// and never panics.
func FuzzFetchReply(f *testing.F) {
	ok := append([]byte{wire.FetchOK}, binary.BigEndian.AppendUint64(nil, 5)...)
	f.Add(append(ok, "hello"...), int64(5))
	f.Add(append(ok, "hel"...), int64(5))
	f.Add(append([]byte{wire.FetchError, 0, 4}, "nope"...), int64(5))
	f.Add([]byte{wire.FetchError, 0xff, 0xff}, int64(5))
	f.Add([]byte{7}, int64(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk int64) {
		if chunk < 0 || chunk > fetchChunk {
			return
		}
		var got bytes.Buffer
		err := wire.ReadFetchReply(bytes.NewReader(data), chunk, &got, make([]byte, 512))
		if err == nil {
			require.Equal(t, chunk, int64(got.Len()))
			require.Equal(t, byte(wire.FetchOK), data[0])
			require.Equal(t, data[9:9+chunk], got.Bytes())
		}
		require.LessOrEqual(t, int64(got.Len()), chunk)
	})
}

// FuzzControlRequest: a control request is accepted only with a known
// operation, an address where one is needed, and a bounded timeout.
func FuzzControlRequest(f *testing.F) {
	f.Add([]byte(`{"op":"status"}`))
	f.Add([]byte(`{"op":"commit","timeout_ms":5000}`))
	f.Add([]byte(`{"op":"add","addr":"127.0.0.1:7000","timeout_ms":5000}`))
	f.Add([]byte(`{"op":"remove","addr":"no-port"}`))
	f.Add([]byte(`{"op":"removed","addr":"127.0.0.1:7000","timeout_ms":-1}`))
	f.Add([]byte(`{"op":"add","addr":"127.0.0.1:7000","timeout_ms":9223372036854775807}`))
	f.Add([]byte(`{"op":"create-stream","stream":{"name":"audit","format":1,"max_size":4096}}`))
	f.Add([]byte(`{"op":"create-stream","stream":{"name":"../x","file":"../../etc/passwd"}}`))
	f.Add([]byte(`{"op":"delete-stream","name":"default"}`))
	f.Add([]byte(`{"op":"set-level","level":"WARN+2"}`))
	f.Add([]byte(`{"op":"set-level","level":"LOUD"}`))
	f.Add([]byte(`{"op":"set-level","level":"ERROR+1"}`))
	f.Add([]byte(`{"op":"set-level"}`))
	f.Add([]byte(`{"op":"truncate","seq":1000}`))
	f.Add([]byte(`{"op":"truncate","seq":0}`))
	f.Add([]byte(`{"op":"set-retention","retention":{"max_files":3,"max_age":3600000000000}}`))
	f.Add([]byte(`{"op":"set-retention","retention":{"max_files":-1}}`))
	f.Add([]byte(`{"op":"set-retention","retention":{"max_age":1}}`))
	f.Add([]byte(`{"op":"set-retention"}`))
	f.Add([]byte(`{"op":"grep","grep":{"contains":"x","before":2,"limit":10}}`))
	f.Add([]byte(`{"op":"grep","grep":{"regexp":"(a+)+$","newest":true,"after":1}}`))
	f.Add([]byte(`{"op":"grep"}`))
	f.Add([]byte(`[1,2`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, timeout, err := parseControlRequest(data)
		if err != nil {
			return
		}
		require.Contains(t, []string{"status", "commit", "add", "remove", "removed", "create-stream", "delete-stream", "set-level", "truncate", "set-retention", "grep", "voters"}, req.Op)
		switch req.Op {
		case "status", "commit":
		case "grep":
			require.NotNil(t, req.Grep)
			q, err := req.Grep.query()
			require.NoError(t, err)
			require.LessOrEqual(t, q.Limit, maxRemoteGrepLines)
			require.LessOrEqual(t, max(q.Before, q.After), maxRemoteGrepContext)
		case "truncate":
			require.NotZero(t, req.Seq)
		case "set-retention":
			require.NotNil(t, req.Retention)
			got, err := parseRetentionCmd(appendRetentionCmd(nil, *req.Retention))
			require.NoError(t, err, "limits a request carries must make a retention command every node reads")
			require.Equal(t, *req.Retention, got)
			require.NoError(t, Config{NodeID: "x", Addr: "x:1", Peers: []string{"x:1"}, Dir: "x", MaxFiles: got.MaxFiles, MaxAge: got.MaxAge}.Validate())
		case "set-level":
			require.NotNil(t, req.Level)
			require.LessOrEqual(t, *req.Level, LevelError)
			got, err := parseLevelCmd(appendLevelCmd(nil, *req.Level))
			require.NoError(t, err, "a level a request carries must make a level command every node reads")
			require.Equal(t, *req.Level, got)
		case "create-stream":
			require.NotNil(t, req.Stream)
			require.NoError(t, req.Stream.check())
			require.NoError(t, checkStreamName(req.Stream.Name))
		case "delete-stream":
			require.NoError(t, checkStreamName(req.Name))
			require.NotEqual(t, DefaultStream, req.Name)
		default:
			require.NoError(t, checkAddr(req.Addr))
		}
		require.Greater(t, timeout, time.Duration(0))
		require.LessOrEqual(t, timeout, defaultControlTimeout)
	})
}

// FuzzCatalogCmd: a catalog command that applies names a valid stream
// that is not the default one, with settings a Config accepts and a plain
// file name, and, for a create, dialable voters.
func FuzzCatalogCmd(f *testing.F) {
	f.Add(appendCatalogCmd(nil, catalogCmd{Op: "create", Stream: &streamSpec{Name: "audit"}, Voters: []string{"127.0.0.1:1"}}))
	f.Add(appendCatalogCmd(nil, catalogCmd{Op: "delete", Name: "audit"}))
	f.Add(appendCatalogCmd(nil, catalogCmd{Op: "create", Stream: &streamSpec{Name: "a", File: "../b"}, Voters: []string{"x:1"}}))
	f.Add([]byte{cmdCatalog, '{'})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := readCatalogCmd(data)
		if err != nil {
			return
		}
		switch c.Op {
		case "create":
			require.NoError(t, checkStreamName(c.Stream.Name))
			require.NotEqual(t, DefaultStream, c.Stream.Name)
			require.NoError(t, c.Stream.check())
			require.Equal(t, filepath.Base(c.Stream.config().File+"x"), c.Stream.config().File+"x")
			require.NotEmpty(t, c.Voters)
			for _, v := range c.Voters {
				require.NoError(t, checkAddr(v))
			}
		case "delete":
			require.NoError(t, checkStreamName(c.Name))
			require.NotEqual(t, DefaultStream, c.Name)
		default:
			t.Fatalf("op %q accepted", c.Op)
		}
	})
}

// FuzzManifest: a snapshot a node installs lists at least one file, in
// order, with sizes and checksums it can check against; anything else is
// refused before a byte is fetched.
func FuzzManifest(f *testing.F) {
	h := strings.Repeat("ab", 32)
	f.Add([]byte(`{"index":9,"seq":20,"files":[{"name":"app-00000000000000000001.log","first":1,"size":10,"sha256":"` + h + `"},{"name":"app.log","first":11,"size":0,"sha256":"` + h + `"}]}`))
	f.Add([]byte(`{"index":9,"seq":20,"files":[{"name":"../escaped.txt","first":1,"size":10,"sha256":"` + h + `"},{"name":"app.log","first":11,"size":0,"sha256":"` + h + `"}]}`))
	f.Add([]byte(`{"index":9,"seq":20,"files":[{"name":"app-00000000000000000001.log","first":1,"size":10,"sha256":"` + h + `"},{"name":"/tmp/app.log","first":11,"size":0,"sha256":"` + h + `"}]}`))
	f.Add([]byte(`{"index":9,"seq":0,"files":[]}`))
	f.Add([]byte(`{"files":[{"first":5,"size":-1,"sha256":"zz"}]}`))
	f.Add([]byte(`{"seq":3,"files":[{"first":2,"size":1,"sha256":"` + h + `"},{"first":2,"size":1,"sha256":"` + h + `"}]}`))
	f.Add([]byte(`{"index":9,"seq":20,"files":[{"name":"app-00000000000000000001.log","first":1,"size":10,"sha256":"","blake3":"` + h + `"},{"name":"app.log","first":11,"size":0,"sha256":"` + h + `","blake3":"` + h + `"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := readManifest(bytes.NewReader(data), func(*manifest) string { return "app.log" })
		if err != nil {
			return
		}
		require.NotEmpty(t, m.Files)
		names := store.NewNames("app.log")
		for i, mf := range m.Files {
			// Every name is a plain name in Dir, the one its numbers give.
			require.Equal(t, filepath.Base(mf.Name), mf.Name)
			if i < len(m.Files)-1 {
				require.Equal(t, names.Segment(mf.First), mf.Name)
			} else {
				require.Equal(t, "app.log", mf.Name)
			}
			require.GreaterOrEqual(t, mf.Size, int64(0))
			require.NoError(t, mf.CheckSum())
			_, sum := mf.Sum()
			require.Len(t, sum, 64)
			require.True(t, mf.SHA256 == "" || mf.BLAKE3 == "", "both checksums")
			if i > 0 {
				require.Greater(t, mf.First, m.Files[i-1].First)
			}
		}
	})
}
