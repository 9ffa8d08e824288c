package logx

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"unicode"
	"unicode/utf8"

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
// error or a batch that decodes completely; nothing panics, and no frame
// larger than the limit is read.
func FuzzForwardFrame(f *testing.F) {
	b := appendBatchHeader(nil, batchHeader{producer: 7, firstPSeq: 1, count: 2})
	b = appendRecord(b, LevelInfo, 1, []byte("level=INFO node=n1 msg=a"))
	b = appendRecord(b, LevelWarn, 2, []byte("level=WARN node=n1 msg=b"))
	f.Add(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, []byte{1})
	f.Add([]byte{0, 0, 0, 3}, []byte{1, 2})
	f.Fuzz(func(t *testing.T, hdr, body []byte) {
		const max = 4096
		data, err := readFrame(bytes.NewReader(append(hdr, body...)), nil, max)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(data), max)
		if validateBatch(data, 1024, 1<<20, new([]byte)) != nil {
			return
		}
		r, err := readBatch(data, new([]byte), 1<<20)
		require.NoError(t, err)
		n := 0
		for r.Next() {
			require.LessOrEqual(t, len(r.body), 1024)
			n++
		}
		require.NoError(t, r.Err())
		require.Equal(t, r.header.count, n)
	})
}

// FuzzParseHead: the reader's line parser takes anything a file holds
// without panicking, and reads back what the renderer wrote.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("seq=42 time=2026-11-24T23:35:45.123456Z level=INFO node=n1 msg=hi"), uint64(7), "msg")
	f.Add([]byte(`{"seq":1,"time":"2026-11-24T23:35:45.123456Z","level":"WARN","node":"n1","msg":"x"}`), uint64(1), "")
	f.Add([]byte("seq=1 level=ERROR+2 node=n1 msg=x"), uint64(1<<63), "a\nb")
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
		require.NoError(t, fsm.seg.close())
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
