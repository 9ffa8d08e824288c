package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// The batch, frame, preface and fetch-reply decoders are fuzzed in the logx
// package (fuzz_test.go), against what the rest of logx needs of them; here
// are the round trips of the small codecs.

func TestAnswerRoundTrip(t *testing.T) {
	for _, a := range []Answer{
		{Status: StatusOK, Index: 7, First: 1 << 40},
		{Status: StatusNotLeader, Msg: "127.0.0.1:20001"},
		{Status: StatusRejected, Index: ^uint64(0), First: ^uint64(0), Msg: strings.Repeat("x", 5000)},
	} {
		frame := AppendAnswer(nil, a)
		body, err := ReadFrame(bytes.NewReader(frame), nil, MaxAnswer)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseAnswer(body)
		if err != nil || got != a {
			t.Fatalf("got %+v, %v; want %+v", got, err, a)
		}
	}
	if _, err := ParseAnswer(make([]byte, AnswerHeader-1)); err == nil {
		t.Fatal("a short answer parsed")
	}
}

func TestFrameLimit(t *testing.T) {
	frame := AppendAnswer(nil, Answer{Msg: "hello"})
	_, err := ReadFrame(bytes.NewReader(frame), nil, AnswerHeader)
	var tooLarge *FrameSizeError
	if !errors.As(err, &tooLarge) || tooLarge.N != AnswerHeader+5 || tooLarge.Max != AnswerHeader {
		t.Fatalf("got %v", err)
	}
	var buf bytes.Buffer
	var hdr [FrameHeader]byte
	if err := WriteFrame(&buf, &hdr, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if body, err := ReadFrame(&buf, nil, 4); err != nil || string(body) != "body" {
		t.Fatalf("got %q, %v", body, err)
	}
}

func TestFetchRoundTrip(t *testing.T) {
	q := FetchRequest{First: 42, Off: 1 << 33, N: 8 << 20}
	b := q.Encode()
	got, err := ReadFetchRequest(bytes.NewReader(b[:]))
	if err != nil || got != q {
		t.Fatalf("got %+v, %v", got, err)
	}

	hdr := FetchOKHeader(5)
	var out bytes.Buffer
	if err := ReadFetchReply(bytes.NewReader(append(hdr[:], "abcdefg"...)), 5, &out, make([]byte, 16)); err != nil || out.String() != "abcde" {
		t.Fatalf("got %q, %v", out.String(), err)
	}
	if err := ReadFetchReply(bytes.NewReader(append(hdr[:], "abc"...)), 5, &out, make([]byte, 16)); err == nil {
		t.Fatal("a short reply was taken")
	}
	if err := ReadFetchReply(bytes.NewReader(hdr[:]), 6, &out, make([]byte, 16)); err == nil {
		t.Fatal("a reply of another length was taken")
	}
	long := FetchErrorReply(strings.Repeat("e", 3000))
	err = ReadFetchReply(bytes.NewReader(long), 5, &out, nil)
	if err == nil || len(err.Error()) > maxFetchError+20 {
		t.Fatalf("got %v", err)
	}
}

func TestPreface(t *testing.T) {
	valid := func(s string) bool { return s != "" && !strings.ContainsAny(s, "/ ") }
	for _, c := range []struct {
		name  string
		proto byte
	}{{"", ProtoRaft}, {"", ProtoControl}, {"audit", ProtoFetch}} {
		name, proto, err := ReadPreface(bytes.NewReader(Preface(c.name, c.proto)), valid, "default")
		if err != nil || name != c.name || proto != c.proto {
			t.Fatalf("%+v: got %q %d %v", c, name, proto, err)
		}
	}
	for _, b := range [][]byte{
		{0}, {6}, {ProtoStream, 0, ProtoRaft}, Preface("default", ProtoRaft), Preface("a b", ProtoRaft),
		append(Preface("audit", ProtoRaft)[:7], 9),
	} {
		if _, _, err := ReadPreface(bytes.NewReader(b), valid, "default"); err == nil {
			t.Fatalf("%q was taken", b)
		}
	}
}

// FuzzAnswer: ParseAnswer never panics, and what it accepts encodes back
// to the same frame.
func FuzzAnswer(f *testing.F) {
	f.Add(AppendAnswer(nil, Answer{Status: StatusOK, Index: 3, First: 9})[FrameHeader:])
	f.Add(AppendAnswer(nil, Answer{Status: StatusNotLeader, Msg: "127.0.0.1:1"})[FrameHeader:])
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAnswer(b)
		if err != nil {
			if len(b) >= AnswerHeader {
				t.Fatalf("refused %d bytes: %v", len(b), err)
			}
			return
		}
		if got := AppendAnswer(nil, a)[FrameHeader:]; !bytes.Equal(got, b) {
			t.Fatalf("%x encodes back as %x", b, got)
		}
	})
}

// A batch round-trips, compressed or not, and holds no more memory than
// its bytes: Raft keeps batches in its log cache and in flight.
func TestBatchRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n        int // records
		compress bool
		want     bool // compressed
	}{
		{"plain", 500, false, false},
		{"compressed", 500, true, true},
		{"too small to compress", 1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var recs []byte
			for i := range tc.n {
				recs = AppendRecord(recs, slog.Level(i%8), int64(i)*1e9, []byte(fmt.Sprintf("2026-12-03T00:00:00Z INFO line %d of a batch", i)))
			}
			h := Header{Producer: 7, FirstPSeq: 100, Count: tc.n}
			b := NewBatch(h, recs, tc.compress)
			if cap(b) != len(b) {
				t.Fatalf("cap %d, len %d", cap(b), len(b))
			}
			var scratch []byte
			r, err := ReadBatch(b, &scratch, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Flags&FlagCompressed != 0; got != tc.want {
				t.Fatalf("compressed %v, want %v", got, tc.want)
			}
			if r.Header.Producer != 7 || r.Header.FirstPSeq != 100 || r.Header.Count != tc.n {
				t.Fatalf("header %+v", r.Header)
			}
			var again []byte
			for r.Next() {
				again = AppendRecord(again, r.Level, r.UnixNano, r.Body)
			}
			if r.Err() != nil || !bytes.Equal(again, recs) {
				t.Fatalf("records differ (err %v)", r.Err())
			}
		})
	}
}

// TestReadExpandedBatch: a compressed batch is read from the expanded
// records a caller holds when they have the length its block expands to,
// and decoded otherwise; Records gives them back; a plain batch ignores
// them.
func TestReadExpandedBatch(t *testing.T) {
	var recs []byte
	for i := range 300 {
		recs = AppendRecord(recs, slog.LevelInfo, int64(i), []byte(fmt.Sprintf("line %04d of a batch that compresses", i)))
	}
	h := Header{Producer: 1, FirstPSeq: 1, Count: 300}
	b := NewBatch(h, recs, true)
	if !Compressed(b) {
		t.Fatal("batch not compressed")
	}
	read := func(b, expanded []byte) []byte {
		t.Helper()
		var scratch []byte
		r, err := ReadExpandedBatch(b, expanded, &scratch, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		used := Compressed(b) && expanded != nil && len(expanded) == len(recs)
		if r.UsedExpanded() != used || r.Decoded() != (Compressed(b) && !used) {
			t.Fatalf("UsedExpanded %v, Decoded %v; want %v, %v", r.UsedExpanded(), r.Decoded(), used, Compressed(b) && !used)
		}
		whole := r.Records()
		var out []byte
		for r.Next() {
			out = AppendRecord(out, r.Level, r.UnixNano, r.Body)
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		if !bytes.Equal(whole, out) {
			t.Fatal("Records is not what the reader reads")
		}
		return out
	}
	if !bytes.Equal(read(b, nil), recs) || !bytes.Equal(read(b, recs), recs) {
		t.Fatal("records differ")
	}
	// Records of the right length but other bytes are read as they are:
	// the block was not decoded.
	other := bytes.ReplaceAll(recs, []byte("line"), []byte("LINE"))
	if got := read(b, other); !bytes.Equal(got, other) {
		t.Fatal("the expanded records were not used")
	}
	// Of another length, they are not used.
	if got := read(b, other[:len(other)-1]); !bytes.Equal(got, recs) {
		t.Fatal("records of the wrong length were used")
	}
	plain := NewBatch(h, recs, false)
	if Compressed(plain) {
		t.Fatal("plain batch says compressed")
	}
	if got := read(plain, other); !bytes.Equal(got, recs) {
		t.Fatal("a plain batch was read from the expanded records")
	}
}

// TestOpenBatch: OpenBatch hands out the records before the bad one and
// then stops with the reason, where ReadBatch refuses the batch whole;
// both read a good batch alike, compressed or not.
func TestOpenBatch(t *testing.T) {
	const n = 100
	var recs []byte
	for i := range n {
		recs = AppendRecord(recs, slog.LevelInfo, int64(i), []byte(fmt.Sprintf("line %03d of a batch that compresses well enough", i)))
	}
	bad := append(recs[:len(recs):len(recs)], 0x7f) // one more record, claiming 127 bytes
	for _, compress := range []bool{false, true} {
		for _, tc := range []struct {
			recs  []byte
			count int
			read  int // records Next gives before it stops
			err   string
		}{
			{recs, n, n, ""},
			{bad, n + 1, n, fmt.Sprintf("record %d: bad length", n)},
			{recs, n - 1, n - 1, "trailing bytes"},
		} {
			b := NewBatch(Header{Producer: 1, FirstPSeq: 1, Count: tc.count}, tc.recs, compress)
			if Compressed(b) != compress {
				t.Fatalf("compressed %v, want %v", Compressed(b), compress)
			}
			var scratch []byte
			_, rerr := ReadBatch(b, &scratch, 1<<20)
			r, err := OpenBatch(b, &scratch, 1<<20)
			if err != nil {
				t.Fatalf("compress %v, count %d: OpenBatch: %v", compress, tc.count, err)
			}
			read := 0
			for r.Next() {
				read++
			}
			switch {
			case read != tc.read:
				t.Fatalf("compress %v, count %d: OpenBatch read %d records, want %d", compress, tc.count, read, tc.read)
			case tc.err == "" && (rerr != nil || r.Err() != nil):
				t.Fatalf("compress %v: good batch: ReadBatch %v, OpenBatch %v", compress, rerr, r.Err())
			case tc.err != "" && (rerr == nil || !strings.Contains(rerr.Error(), tc.err)):
				t.Fatalf("compress %v, count %d: ReadBatch: %v, want %q", compress, tc.count, rerr, tc.err)
			case tc.err != "" && (r.Err() == nil || !strings.Contains(r.Err().Error(), tc.err)):
				t.Fatalf("compress %v, count %d: OpenBatch: %v, want %q", compress, tc.count, r.Err(), tc.err)
			}
		}
	}
}

// TestFrameGrowsWithItsBytes: a frame's buffer grows with the bytes that
// arrive, not with the length its header announces; a frame longer than
// a step still reads whole, from a reader that gives little at a time.
func TestFrameGrowsWithItsBytes(t *testing.T) {
	var hdr [FrameHeader]byte
	binary.BigEndian.PutUint32(hdr[:], 64<<20)
	in := io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(make([]byte, 10)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(in, nil, 64<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*frameStep { // a step, and what else the test allocates (more under -race)
		t.Fatalf("a frame that announced 64 MiB and sent 10 bytes allocated %d bytes", got)
	}

	body := make([]byte, 3*frameStep+7)
	for i := range body {
		body[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, &hdr, body); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFrame(iotest.HalfReader(&buf), make([]byte, 0, 100), len(body))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}

	// The largest length a header can hold is refused, not taken for a
	// negative one.
	binary.BigEndian.PutUint32(hdr[:], math.MaxUint32)
	_, err = ReadFrame(bytes.NewReader(hdr[:]), nil, math.MaxInt32)
	var tooLarge *FrameSizeError
	if !errors.As(err, &tooLarge) || tooLarge.N != math.MaxUint32 {
		t.Fatalf("got %v", err)
	}
}
