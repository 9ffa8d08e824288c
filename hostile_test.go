package logx

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/s2"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// A hostile authenticated peer (issue 10, item 2): the holder of a valid
// certificate from the cluster's CA, one that does not name the nodes' host
// (attacker.example), sends every message a node accepts, with every field
// at its extremes, over real TCP to the leader and to a follower: forwarded
// frames, control requests, fetch requests, and Raft (which it may not
// speak; a certificate naming the nodes' shared host, 127.0.0.1, may, and
// sends forged snapshots). After each message: the connection got an
// answer or was closed (every read has a deadline), no node stopped or
// failed a write, no node wrote more than the documented effect, and
// nothing appeared next to the nodes' directories; after each table (after
// each message with -hostile.exhaustive) every node commits an Append and
// every node's files hold exactly the lines expected, byte-identical.
// docs/security.md's table "What a holder of a cluster certificate can and
// cannot do" names the parts of this test.

var hostileExhaustive = flag.Bool("hostile.exhaustive", false,
	"TestHostilePeer: check the whole cluster after every message (default: after every table, and the cheap checks after every message)")

// hostileRig is the cluster under attack and what the checks expect of it.
type hostileRig struct {
	t      *testing.T
	c      *testCluster
	ca     testCA
	evil   *tls.Config // the attacker's certificate: attacker.example
	shared *tls.Config // a non-node certificate naming the nodes' host, 127.0.0.1
	base   string      // the directory holding the nodes' Dirs
	outer  []string    // what base held before the attack
	lines  int         // lines every node's files must hold
	probes int
}

func newHostileRig(t *testing.T) *hostileRig {
	ca := newTestCA(t, "cluster CA")
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.TLS = ca.nodeTLS(t, cfg.NodeID)
		cfg.MaxSize = 16 << 10 // rotated files to fetch
		cfg.ForwardTimeout = 5 * time.Second
	})
	evil, err := ca.TLSConfig("attacker", []string{"attacker.example"}, time.Hour)
	require.NoError(t, err)
	r := &hostileRig{t: t, c: c, ca: ca, evil: evil, shared: ca.nodeTLS(t, "client"), base: filepath.Dir(c.cfgs[0].Dir)}
	c.logAppend("before", 40) // every node has written: its producer id is bound
	// Every voter's clock report is in, so each is bound to its own
	// certificate's subject (the reports a node's producer sends).
	leader := c.nodes[c.waitLeader()]
	for i, lx := range c.nodes {
		_, _, err := leader.applyLocal(appendClock(nil, c.cfgs[i].Addr, time.Now().UnixNano()), lx.ids.Load().clocks)
		require.NoError(t, err)
	}
	r.lines = 120
	r.outer = r.listOuter()
	r.check("start", true)
	return r
}

func (r *hostileRig) listOuter() []string {
	ents, err := os.ReadDir(r.base)
	require.NoError(r.t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func (r *hostileRig) leader() int {
	var l int
	require.True(r.t, waitFor(20*time.Second, func() bool { l = r.c.leaderIndex(); return l >= 0 }), "no leader")
	return l
}

func (r *hostileRig) follower() int { return (r.leader() + 1) % len(r.c.nodes) }

// check verifies the cluster after a message. Cheap: no node stopped or
// failed a write, none wrote more than r.lines lines, nothing new next to
// the Dirs. Full (always with -hostile.exhaustive): every node commits an
// Append, and every node's files hold exactly r.lines lines, the same bytes.
func (r *hostileRig) check(what string, full bool) {
	t := r.t
	t.Helper()
	for i, lx := range r.c.nodes {
		require.NotNil(t, lx, "%s: node %d is gone", what, i+1)
		st := lx.Stats()
		require.Empty(t, st.WriteError, "%s: node %d", what, i+1)
		require.NotEqual(t, "Shutdown", st.State, "%s: node %d stopped", what, i+1)
		require.LessOrEqual(t, st.Seq, uint64(r.lines), "%s: node %d wrote lines it should not have", what, i+1)
	}
	require.Equal(t, r.outer, r.listOuter(), "%s: a file appeared outside the nodes' directories", what)
	if !full && !*hostileExhaustive {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.probes++
	for i, lx := range r.c.nodes {
		_, err := lx.Append(ctx, LevelInfo, "probe", "after", what, "n", r.probes, "node", i)
		require.NoError(t, err, "%s: node %d cannot append", what, i+1)
	}
	r.lines += len(r.c.nodes)
	r.c.flushAll()
	require.Equal(t, uint64(r.lines), r.c.waitSameSeq(uint64(r.lines)), "%s: lines written", what)
	requireIdentical(t, r.c.dirs(), "app.log")
	lines := readLines(t, r.c.dirs()[0], "app.log")
	require.Len(t, lines, r.lines, what)
	for i, l := range lines {
		require.True(t, bytes.HasPrefix(l, fmt.Appendf(nil, "seq=%d ", i+1)), "%s: line %d is %q", what, i+1, l)
	}
}

// dial opens a connection for proto to node i with the attacker's
// certificate (or tc).
func (r *hostileRig) dial(i int, proto byte, tc *tls.Config) net.Conn {
	r.t.Helper()
	if tc == nil {
		tc = r.evil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dialProto(ctx, r.c.cfgs[i].Addr, "", proto, 5*time.Second, tc)
	require.NoError(r.t, err)
	r.t.Cleanup(func() { conn.Close() })
	return conn
}

// ---- forwarded frames -----------------------------------------------------

// hframe is a forwarded frame: its length and its data.
func hframe(data []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(data))), data...)
}

// hbatch is a batch with every header field given; version 1 has no flags
// byte.
func hbatch(version, flags byte, producer, first, count uint64, recs []byte) []byte {
	b := []byte{version}
	if version != wire.V1 {
		b = append(b, flags)
	}
	b = binary.BigEndian.AppendUint64(b, producer)
	b = binary.AppendUvarint(b, first)
	b = binary.AppendUvarint(b, count)
	return append(b, recs...)
}

// hrec is one record whose body is rendered as logx renders it.
func hrec(f Format, unixNano int64, msg string) []byte {
	t := time.Time{}
	if unixNano != 0 {
		t = time.Unix(0, unixNano)
	}
	return wire.AppendRecord(nil, LevelInfo, unixNano, appendBodyStart(nil, f, t, LevelInfo, "attacker", "", msg))
}

// hraw is one record with a raw body.
func hraw(unixNano int64, body string) []byte {
	return wire.AppendRecord(nil, LevelInfo, unixNano, []byte(body))
}

// Where a forwarded message is refused, or not.
const (
	atFrame    = iota // by the frame's length: an answer, then maybe a close
	atValidate        // by the leader's (and a follower's) check of the batch or clock report
	atApply           // by apply on the leader: a follower answers "not the leader"
	accepted          // committed by the leader: a follower answers "not the leader"
)

type fwdCase struct {
	name  string
	raw   []byte // the whole frame, length included
	stage int
	want  string      // in the message (rejections)
	lines int         // lines written (accepted)
	close bool        // the node closes the connection after its answer
	tls   *tls.Config // nil: the attacker's
	self  bool        // raw is sent unanswered; want is a read error (a torn frame)
}

// sendForward sends c to node i and checks the answer.
func (r *hostileRig) sendForward(i int, c fwdCase, leader bool) {
	t := r.t
	t.Helper()
	conn := r.dial(i, wire.ProtoForward, c.tls)
	require.NoError(t, conn.SetDeadline(time.Now().Add(15*time.Second)))
	_, err := conn.Write(c.raw)
	require.NoError(t, err, c.name)
	br := bufio.NewReader(conn)
	if c.self { // a torn frame: half-close and expect the node to hang up
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			require.NoError(t, cw.CloseWrite())
		}
		_, err := br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "%s: the node did not close a torn frame", c.name)
		return
	}
	resp, err := wire.ReadFrame(br, nil, 1<<20)
	require.NoError(t, err, "%s: no answer", c.name)
	require.GreaterOrEqual(t, len(resp), wire.AnswerHeader, c.name)
	status, msg := resp[0], string(resp[wire.AnswerHeader:])
	switch {
	case c.stage == atFrame || c.stage == atValidate:
		require.Equal(t, wire.StatusRejected, status, "%s: %s", c.name, msg)
		require.Contains(t, msg, c.want, c.name)
	case !leader:
		require.Equal(t, wire.StatusNotLeader, status, "%s: %s", c.name, msg)
		require.Equal(t, r.c.cfgs[r.leader()].Addr, msg, c.name)
	case c.stage == atApply:
		require.Equal(t, wire.StatusRejected, status, "%s: %s", c.name, msg)
		require.Contains(t, msg, c.want, c.name)
	default:
		require.Equal(t, wire.StatusOK, status, "%s: %s", c.name, msg)
		if leader {
			r.lines += c.lines
		}
	}
	if c.close {
		_, err := br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "%s: the connection stayed open", c.name)
		return
	}
	// The connection still works: a zero-length frame is refused.
	_, err = conn.Write(hframe(nil))
	require.NoError(t, err, c.name)
	resp, err = wire.ReadFrame(br, nil, 1<<20)
	require.NoError(t, err, "%s: no answer after", c.name)
	require.Equal(t, wire.StatusRejected, resp[0], c.name)
}

func (r *hostileRig) forwardCases() []fwdCase {
	lx := r.c.nodes[0]
	now := time.Now().UnixNano()
	ok := hrec(FormatText, now, "hostile but well-formed")
	fresh := newProducerID
	hdrOnly := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	victim := r.c.nodes[r.follower()].producer
	leaderAddr := r.c.cfgs[r.leader()].Addr
	followerAddr := r.c.cfgs[r.follower()].Addr
	overLimit := make([]byte, 4+lx.maxFrame+1)
	binary.BigEndian.PutUint32(overLimit, uint32(lx.maxFrame+1))
	// A compressed block whose header claims 1 GiB.
	gig := binary.AppendUvarint(nil, 1<<30)
	gig = append(gig, 0, 0, 0, 0)
	repeat := hbatch(wire.V2, 0, fresh(), 1, 1, ok)
	return []fwdCase{
		// Frame lengths.
		{name: "length 0", raw: hframe(nil), stage: atValidate, want: "empty"},
		{name: "length 1, version 2 only", raw: hframe([]byte{wire.V2}), stage: atValidate, want: "no flags"},
		{name: "length 1, clock byte only", raw: hframe([]byte{cmdClock}), stage: atValidate, want: "bad id length"},
		{name: "just over the limit", raw: overLimit, stage: atFrame, want: "exceeds this leader's limit"},
		{name: "length 2^32-1, header only", raw: hdrOnly(math.MaxUint32), stage: atFrame, want: "exceeds this leader's limit", close: true},
		{name: "length 64 MiB + 1 header only", raw: hdrOnly(maxForwardFrame + 1), stage: atFrame, want: "exceeds", close: true},
		{name: "torn frame", raw: append(hdrOnly(100), 2, 0, 1), self: true},

		// Batch headers.
		{name: "version 0", raw: hframe(hbatch(0, 0, fresh(), 1, 1, ok)), stage: atValidate, want: "unknown version 0"},
		{name: "version 255", raw: hframe(hbatch(255, 0, fresh(), 1, 1, ok)), stage: atValidate, want: "unknown version 255"},
		{name: "version 1", raw: hframe(hbatch(wire.V1, 0, fresh(), 1, 1, ok)), stage: accepted, lines: 1},
		{name: "version 2", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, ok)), stage: accepted, lines: 1},
		{name: "a repeat of the attacker's own batch", raw: hframe(repeat), stage: accepted, lines: 1},
		{name: "the same again: dropped as a repeat", raw: hframe(repeat), stage: accepted, lines: 0},
		{name: "unknown flag 2", raw: hframe(hbatch(wire.V2, 2, fresh(), 1, 1, ok)), stage: atValidate, want: "unknown flags"},
		{name: "unknown flag 0x80", raw: hframe(hbatch(wire.V2, 0x81, fresh(), 1, 1, ok)), stage: atValidate, want: "unknown flags"},
		{name: "short header", raw: hframe([]byte{wire.V2, 0, 1, 2, 3}), stage: atValidate, want: "too short"},
		{name: "producer 0", raw: hframe(hbatch(wire.V2, 0, 0, 1, 1, ok)), stage: accepted, lines: 1},
		{name: "producer 2^64-1", raw: hframe(hbatch(wire.V2, 0, math.MaxUint64, 1, 1, ok)), stage: accepted, lines: 1},
		{name: "another node's producer id", raw: hframe(hbatch(wire.V2, 0, victim, 1<<40, 1, ok)), stage: atApply, want: "another certificate"},
		{name: "another node's producer id, sequence 1", raw: hframe(hbatch(wire.V2, 0, victim, 1, 1, ok)), stage: atApply, want: "another certificate"},
		{name: "first sequence 0", raw: hframe(hbatch(wire.V2, 0, fresh(), 0, 1, ok)), stage: atApply, want: "producer sequence 0"},
		{name: "first sequence 2^64-1, one entry", raw: hframe(hbatch(wire.V2, 0, fresh(), math.MaxUint64, 1, ok)), stage: accepted, lines: 1},
		{name: "first sequence 2^64-1, two entries: wraps", raw: hframe(hbatch(wire.V2, 0, fresh(), math.MaxUint64, 2, append(slices.Clone(ok), ok...))), stage: atApply, want: "producer sequence 18446744073709551615"},
		{name: "first sequence 2^64-2, three entries: wraps", raw: hframe(hbatch(wire.V2, 0, fresh(), math.MaxUint64-1, 3, bytes.Repeat(ok, 3))), stage: atApply, want: "producer sequence"},
		{name: "bad first sequence varint", raw: hframe(append(hbatch(wire.V2, 0, fresh(), 1, 1, nil)[:10], bytes.Repeat([]byte{0xff}, 11)...)), stage: atValidate, want: "bad first sequence"},
		{name: "count 0, no records", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 0, nil)), stage: atValidate, want: "no entries"},
		{name: "count 0, one record", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 0, ok)), stage: atValidate, want: "no entries"},
		{name: "count 2^63", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1<<63, ok)), stage: atValidate, want: "bad entry count"},
		{name: "count 2^64-1", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, math.MaxUint64, ok)), stage: atValidate, want: "bad entry count"},
		{name: "count larger than the records", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 3, append(slices.Clone(ok), ok...))), stage: atValidate, want: "record 2: bad length"},
		{name: "trailing bytes", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, append(slices.Clone(ok), 0, 1, 2))), stage: atValidate, want: "3 trailing bytes"},
		// Valid S2 blocks whose records are not: the leader's check walks
		// the decoded records as it checks them.
		{name: "compressed, trailing bytes", raw: hframe(hbatch(wire.V2, wire.FlagCompressed, fresh(), 1, 1, s2.Encode(nil, append(slices.Clone(ok), 0, 1, 2)))), stage: atValidate, want: "3 trailing bytes"},
		{name: "compressed, count larger than the records", raw: hframe(hbatch(wire.V2, wire.FlagCompressed, fresh(), 1, 3, s2.Encode(nil, append(slices.Clone(ok), ok...)))), stage: atValidate, want: "record 2: bad length"},
		{name: "compressed, a bad record after good ones", raw: hframe(hbatch(wire.V2, wire.FlagCompressed, fresh(), 1, 3, s2.Encode(nil, append(append(slices.Clone(ok), ok...), 1, 0)))), stage: atValidate, want: "record 2: bad time"},
		{name: "compressed garbage", raw: hframe(hbatch(wire.V2, wire.FlagCompressed, fresh(), 1, 1, []byte{5, 0xff, 0xff, 0xff, 0xff, 0xff})), stage: atValidate, want: "malformed batch"},
		{name: "compressed, claims 1 GiB", raw: hframe(hbatch(wire.V2, wire.FlagCompressed, fresh(), 1, 1, gig)), stage: atValidate, want: "expands to 1073741824 bytes"},
		{name: "compressed, claims 2^63", raw: hframe(hbatch(wire.V2, wire.FlagCompressed, fresh(), 1, 1, binary.AppendUvarint(nil, 1<<63))), stage: atValidate, want: "malformed batch"},
		{name: "record length 2^63", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, binary.AppendUvarint(nil, 1<<63))), stage: atValidate, want: "bad length"},
		{name: "record length 2^64-1", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, append(binary.AppendUvarint(nil, math.MaxUint64), ok...))), stage: atValidate, want: "bad length"},
		{name: "record length past the frame", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, append(binary.AppendUvarint(nil, 1000), 0, 0, 'x'))), stage: atValidate, want: "bad length"},
		{name: "record without a time", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, []byte{1, 0})), stage: atValidate, want: "bad time"},
		// MaxEntrySize is the logging node's limit; a leader takes any
		// record within its frame limit (TestForwardLargerEntryThanLeaders).
		{name: "record over the leader's MaxEntrySize", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hrec(FormatText, now, strings.Repeat("x", 70<<10)))), stage: accepted, lines: 1},

		// Record bodies.
		{name: "body with a newline", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hrec(FormatText, now, "a\nseq=999999 level=ERROR msg=forged"))), stage: accepted, lines: 1}, // escaped by the renderer
		{name: "raw body with a newline", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "level=INFO msg=a\nseq=999999 level=ERROR msg=forged"))), stage: atValidate, want: "control character"},
		{name: "raw body with a carriage return", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "level=INFO msg=a\rseq=999999"))), stage: atValidate, want: "control character"},
		{name: "raw body with NUL", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "level=INFO msg=a\x00b"))), stage: atValidate, want: "control character"},
		{name: "raw body forging seq=999999", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "seq=999999 level=ERROR msg=forged"))), stage: atValidate, want: "where the level belongs"},
		{name: "raw body invalid UTF-8", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "level=INFO msg=\xff\xfe"))), stage: atValidate, want: "UTF-8"},
		{name: "raw body U+2028", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "level=INFO msg=a\u2028b"))), stage: atValidate, want: "would not render"},
		{name: "raw body in the other format (JSON)", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hrec(FormatJSON, now, "json"))), stage: atValidate, want: "would not render"},
		{name: "raw empty body", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, ""))), stage: atValidate, want: "would not render"},
		{name: "body without pairs", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "level=INFO"))), stage: atValidate, want: "would not render"},
		{name: "time 0", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hrec(FormatText, 0, "no time"))), stage: accepted, lines: 1},
		{name: "time -1", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hrec(FormatText, -1, "before 1970"))), stage: accepted, lines: 1},
		{name: "time MinInt64 (1677)", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hrec(FormatText, math.MinInt64, "1677"))), stage: accepted, lines: 1},
		{name: "time MaxInt64 (2262)", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hrec(FormatText, math.MaxInt64, "2262"))), stage: accepted, lines: 1},
		{name: "body claims year 9999", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(now, "time=9999-12-31T23:59:59.999999Z level=INFO msg=future"))), stage: atValidate, want: "its time is not the record's"},
		{name: "body with a time, record without", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, hraw(0, "time=2026-01-01T00:00:00.000000Z level=INFO msg=x"))), stage: atValidate, want: "its time is not the record's"},
		{name: "level 2^62", raw: hframe(hbatch(wire.V2, 0, fresh(), 1, 1, wire.AppendRecord(nil, slog.Level(1<<62), 0, []byte("level=INFO msg=x")))), stage: atValidate, want: "its level is not the record's"},

		// Clock reports.
		{name: "clock of the leader", raw: hframe(appendClock(nil, leaderAddr, now)), stage: atValidate, want: "does not name it"},
		{name: "clock of a follower, MaxInt64", raw: hframe(appendClock(nil, followerAddr, math.MaxInt64)), stage: atValidate, want: "does not name it"},
		{name: "clock of a non-member", raw: hframe(appendClock(nil, "127.0.0.1:1", now)), stage: atValidate, want: "not a voter"},
		{name: "clock with an id of 255 bytes", raw: hframe(appendClock(nil, strings.Repeat("a", 255), now)), stage: atValidate, want: "not a voter"},
		{name: "clock with an id of 256 bytes", raw: hframe(appendClock(nil, strings.Repeat("a", 256), now)), stage: atValidate, want: "bad id length"},
		{name: "clock with an empty id", raw: hframe(appendClock(nil, "", now)), stage: atValidate, want: "bad id length"},
		{name: "clock with an id length past the frame", raw: hframe(append([]byte{cmdClock}, binary.AppendUvarint(nil, 200)...)), stage: atValidate, want: "bad id length"},
		{name: "clock time 0", raw: hframe(appendClock(nil, leaderAddr, 0)), stage: atValidate, want: "bad time"},
		{name: "clock time -1", raw: hframe(appendClock(nil, leaderAddr, -1)), stage: atValidate, want: "bad time"},
		{name: "clock time MinInt64", raw: hframe(appendClock(nil, leaderAddr, math.MinInt64)), stage: atValidate, want: "bad time"},
		{name: "clock with trailing bytes", raw: hframe(append(appendClock(nil, leaderAddr, now), 0)), stage: atValidate, want: "bad time"},
		// On one host every certificate names it (127.0.0.1), but a voter
		// that has reported is bound to its own certificate's subject.
		{name: "clock of a follower from a certificate naming the host", raw: hframe(appendClock(nil, followerAddr, now)), stage: atApply, want: "another certificate", tls: r.shared},

		// Settings: only a leader records them, from its own Config.
		{name: "settings command", raw: hframe(appendSettings(nil, clusterSettings{File: "evil.log", MaxSize: 1, DedupWindow: 1, Format: FormatJSON})), stage: atValidate, want: "unknown version 17"},
		{name: "settings command from a certificate naming the host", raw: hframe(appendSettings(nil, settingsOf(r.c.cfgs[0]))), stage: atValidate, want: "unknown version 17", tls: r.shared},
	}
}

// ---- control requests ----------------------------------------------------

// control sends one control frame (raw: the JSON, or anything) to node i
// and returns the answer; closed reports that the node hung up unanswered.
func (r *hostileRig) control(i int, raw []byte, hdr int) (resp controlResponse, closed bool) {
	t := r.t
	t.Helper()
	conn := r.dial(i, wire.ProtoControl, nil)
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	if hdr < 0 {
		hdr = len(raw)
	}
	_, err := conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(hdr)), raw...))
	require.NoError(t, err)
	if hdr != len(raw) { // a torn or oversized frame: the node must hang up
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			require.NoError(t, cw.CloseWrite())
		}
	}
	data, err := wire.ReadFrame(bufio.NewReader(conn), nil, 4<<20)
	if errors.Is(err, io.EOF) {
		return resp, true
	}
	require.NoError(t, err, "no answer to %.100q", raw)
	require.NoError(t, json.Unmarshal(data, &resp))
	return resp, false
}

func ctlJSON(op, addr string, timeoutMS int64) []byte {
	b, _ := json.Marshal(controlRequest{Op: op, Addr: addr, TimeoutMS: timeoutMS})
	return b
}

// requireMembers checks the leader's configuration: addr → voter.
func (r *hostileRig) requireMembers(what string, want map[string]bool) {
	r.t.Helper()
	var got map[string]bool
	ok := waitFor(10*time.Second, func() bool {
		got = members(r.t, r.c.nodes[r.leader()])
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
	require.True(r.t, ok, "%s: members %v, want %v", what, got, want)
}

// ---- fetch requests --------------------------------------------------------

// fetchOne sends one fetch request on conn and returns the bytes, or the
// error text.
func fetchOne(t *testing.T, conn net.Conn, br *bufio.Reader, first, off, n uint64) (data []byte, errText string) {
	t.Helper()
	req := binary.BigEndian.AppendUint64(nil, first)
	req = binary.BigEndian.AppendUint64(req, off)
	req = binary.BigEndian.AppendUint64(req, n)
	require.NoError(t, conn.SetDeadline(time.Now().Add(15*time.Second)))
	_, err := conn.Write(req)
	require.NoError(t, err)
	status, err := br.ReadByte()
	require.NoError(t, err, "no answer to %d %d %d", first, off, n)
	switch status {
	case wire.FetchOK:
		var h [8]byte
		_, err := io.ReadFull(br, h[:])
		require.NoError(t, err)
		size := binary.BigEndian.Uint64(h[:])
		require.Equal(t, n, size, "the node announced another length")
		data = make([]byte, size)
		_, err = io.ReadFull(br, data)
		require.NoError(t, err)
		return data, ""
	case wire.FetchError:
		var h [2]byte
		_, err := io.ReadFull(br, h[:])
		require.NoError(t, err)
		msg := make([]byte, binary.BigEndian.Uint16(h[:]))
		_, err = io.ReadFull(br, msg)
		require.NoError(t, err)
		require.NotEmpty(t, msg)
		return nil, string(msg)
	}
	t.Fatalf("fetch %d %d %d: status %d", first, off, n, status)
	return nil, ""
}

// ---- Raft --------------------------------------------------------------------

// raftDialer is a raft.StreamLayer that only dials: the attacker's side of
// raft.NetworkTransport, over the node's mux (wire.ProtoRaft) with TLS.
type raftDialer struct {
	tls  *tls.Config
	done chan struct{}
}

func (l *raftDialer) Accept() (net.Conn, error) { <-l.done; return nil, net.ErrClosed }
func (l *raftDialer) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}
func (l *raftDialer) Addr() net.Addr { return advertisedAddr("127.0.0.1:9") }
func (l *raftDialer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialProto(ctx, string(a), "", wire.ProtoRaft, timeout, l.tls)
}

// raftClient is a Raft transport speaking as the holder of tc.
func raftClient(t *testing.T, tc *tls.Config) *raft.NetworkTransport {
	tr := raft.NewNetworkTransport(&raftDialer{tls: tc, done: make(chan struct{})}, 1, 5*time.Second, io.Discard)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// forgeSnapshot sends node i an InstallSnapshot of manifest data, from a
// "leader" of a term above the cluster's.
func (r *hostileRig) forgeSnapshot(tr *raft.NetworkTransport, i int, data []byte) (raft.InstallSnapshotResponse, error) {
	lx := r.c.nodes[i]
	term := lx.Stats().Term
	conf := lx.raft.GetConfiguration()
	require.NoError(r.t, conf.Error())
	var resp raft.InstallSnapshotResponse
	var err error
	for range 5 { // elections may have moved the term past the forged one
		term += 10
		req := &raft.InstallSnapshotRequest{
			RPCHeader:          raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte("127.0.0.1:9")},
			SnapshotVersion:    raft.SnapshotVersionMax,
			Term:               term,
			Leader:             []byte("127.0.0.1:9"),
			LastLogIndex:       lx.raft.LastIndex() + 1000,
			LastLogTerm:        term,
			Configuration:      raft.EncodeConfiguration(conf.Configuration()),
			ConfigurationIndex: 1,
			Size:               int64(len(data)),
		}
		resp = raft.InstallSnapshotResponse{}
		err = tr.InstallSnapshot("x", raft.ServerAddress(r.c.cfgs[i].Addr), req, &resp, bytes.NewReader(data))
		if err != nil || resp.Term <= term {
			return resp, err
		}
		term = resp.Term
	}
	return resp, err
}

// TestHostilePeer: see the top of this file.
func TestHostilePeer(t *testing.T) {
	r := newHostileRig(t)

	t.Run("forward", func(t *testing.T) {
		for _, c := range r.forwardCases() {
			for _, leader := range []bool{true, false} {
				i := r.leader()
				if !leader {
					i = r.follower()
				}
				r.t = t
				r.sendForward(i, c, leader)
				r.check(fmt.Sprintf("%s (leader %v)", c.name, leader), false)
			}
		}
		r.check("forward frames", true)
		// The first byte of every other value, on one connection each to the
		// leader and a follower: never a batch, a clock or anything else.
		tail := hbatch(wire.V2, 0, newProducerID(), 1, 1, hrec(FormatText, time.Now().UnixNano(), "x"))[1:]
		for _, i := range []int{r.leader(), r.follower()} {
			conn := r.dial(i, wire.ProtoForward, nil)
			br := bufio.NewReader(conn)
			for b := 0; b < 256; b++ {
				if b == wire.V1 || b == wire.V2 || b == int(cmdClock) {
					continue
				}
				require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
				_, err := conn.Write(hframe(append([]byte{byte(b)}, tail...)))
				require.NoError(t, err)
				resp, err := wire.ReadFrame(br, nil, 1<<20)
				require.NoError(t, err, "first byte %d", b)
				require.Equal(t, wire.StatusRejected, resp[0], "first byte %d: %s", b, resp[wire.AnswerHeader:])
				require.Contains(t, string(resp[wire.AnswerHeader:]), fmt.Sprintf("unknown version %d", b))
			}
		}
		r.check("every first byte", true)
	})

	t.Run("control", func(t *testing.T) {
		r.t = t
		three := map[string]bool{}
		for _, cfg := range r.c.cfgs {
			three[cfg.Addr] = true
		}
		long := strings.Repeat("a", 100<<10)
		type ctlCase struct {
			name string
			raw  []byte
			hdr  int    // the frame's length field; -1: len(raw)
			want string // in the answer's error; "" for none
		}
		var cases []ctlCase
		add := func(name string, raw []byte, want string) {
			cases = append(cases, ctlCase{name: name, raw: raw, hdr: -1, want: want})
		}
		add("not JSON", []byte("hello"), "malformed control request")
		add("truncated JSON", []byte(`[1,2`), "malformed control request")
		add("JSON array", []byte(`[{"op":"status"}]`), "malformed control request")
		add("op of the wrong type", []byte(`{"op":1}`), "malformed control request")
		add("timeout of the wrong type", []byte(`{"op":"status","timeout_ms":"1"}`), "malformed control request")
		add("timeout past int64", []byte(`{"op":"status","timeout_ms":1e30}`), "malformed control request")
		add("empty op", []byte(`{}`), "unknown control operation")
		add("unknown op", []byte(`{"op":"shutdown","addr":"127.0.0.1:1"}`), "unknown control operation")
		add("op in capitals", []byte(`{"op":"REMOVE","addr":"127.0.0.1:1"}`), "unknown control operation")
		add("op of 100 KiB", ctlJSON(long, "", 0), "unknown control operation")
		// JSON writes each '<' as 6 bytes: echoed whole, the answer would
		// be 6 MiB, more than any reader takes.
		add("op of 1 MiB of '<'", []byte(`{"op":"`+strings.Repeat("<", maxControlFrame-64)+`"}`), "unknown control operation")
		add("delete-stream of 1 MiB of '<'", []byte(`{"op":"delete-stream","name":"`+strings.Repeat("<", maxControlFrame-64)+`"}`), "cannot delete stream")
		// A queue of 2^62 entries: made on every node that opens the
		// stream, it panicked every node of the cluster, at every start.
		for _, q := range []string{"4611686018427387904", "1048577", "-1"} {
			add("create-stream, queue_size "+q, []byte(`{"op":"create-stream","stream":{"name":"q","queue_size":`+q+`}}`), "QueueSize")
		}
		for _, op := range []string{"add", "remove", "removed"} {
			for _, a := range []string{"", "..", "../x", "/etc/passwd", ":1", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:", long} {
				add(fmt.Sprintf("%s %.20q", op, a), ctlJSON(op, a, 0), "logx: "+op+": ")
			}
			for _, a := range []string{"a/b:1", "../x:1", "..:1", "a b:1", "a\x00b:1", "[::1%]:1", long + ":1", strings.Repeat("a.", 127) + "a:1"} {
				add(fmt.Sprintf("%s %.20q", op, a), ctlJSON(op, a, 300), "neither an IP address nor a DNS name")
			}
		}
		for _, ms := range []int64{-1, math.MinInt64, 0, 1, math.MaxInt64} {
			add(fmt.Sprintf("status, timeout %d ms", ms), ctlJSON("status", "", ms), "")
		}
		add("status with extra fields", []byte(`{"op":"status","addr":"../x","evil":{"a":[1,2]},"timeout_ms":-5}`), "")
		add("status, duplicated op", []byte(`{"op":"remove","op":"status"}`), "")
		cases = append(cases,
			ctlCase{name: "frame over 1 MiB, header only", hdr: maxControlFrame + 1},
			ctlCase{name: "frame of 2^32-1, header only", hdr: math.MaxUint32},
			ctlCase{name: "torn frame", raw: []byte(`{"op":`), hdr: 100})
		for _, c := range cases {
			for _, i := range []int{r.leader(), r.follower()} {
				resp, closed := r.control(i, c.raw, c.hdr)
				what := fmt.Sprintf("%s (node %d)", c.name, i+1)
				if c.hdr != -1 {
					require.True(t, closed, "%s: answered %+v", what, resp)
				} else {
					require.False(t, closed, what)
					if c.want == "" {
						require.Empty(t, resp.Error, what)
						require.NotNil(t, resp.Status, what)
					} else {
						require.Contains(t, resp.Error, c.want, what)
						require.LessOrEqual(t, len(resp.Error), maxControlError, what)
					}
				}
				r.check(what, false)
				r.requireMembers(what, three)
			}
		}
		r.check("control", true)

		// What a certificate holder may do, by design, and only that.
		leader, follower := r.leader(), r.follower()
		la, fa := r.c.cfgs[leader].Addr, r.c.cfgs[follower].Addr
		stranger := freeAddrs(t, 1)[0]
		resp, _ := r.control(leader, ctlJSON("add", fa, math.MaxInt64), -1)
		require.Empty(t, resp.Error, "adding a voter again is a no-op")
		r.requireMembers("add of a member", three)
		resp, _ = r.control(leader, ctlJSON("remove", stranger, 1000), -1)
		require.True(t, resp.NotMember, "%+v", resp)
		for _, op := range []string{"add", "remove"} {
			resp, _ = r.control(follower, ctlJSON(op, la, 1000), -1)
			require.True(t, resp.NotLeader, "%s sent to a follower: %+v", op, resp)
			require.Equal(t, la, resp.Leader)
			r.requireMembers(op+" sent to a follower", three)
		}
		for _, i := range []int{follower, leader} {
			before := r.c.nodes[i].Stats().IgnoredRemovals
			resp, _ = r.control(i, ctlJSON("removed", r.c.cfgs[i].Addr, 1000), -1)
			require.Empty(t, resp.Error)
			require.True(t, waitFor(30*time.Second, func() bool { return r.c.nodes[i].Stats().IgnoredRemovals == before+1 }),
				"node %d did not check the notice", i+1)
			requireStillMember(t, r.c.nodes[i])
			r.lines++
			other := r.c.cfgs[(i+1)%3].Addr
			resp, _ = r.control(i, ctlJSON("removed", other, 1000), -1)
			require.Contains(t, resp.Error, "is not this node")
		}
		r.check("removed notices", true)
		r.requireMembers("removed notices", three)

		// The attacker adds its own address: the leader first asks that
		// address what it runs, which it cannot answer (its certificate
		// does not name the host it listens on, so the leader's TLS check
		// fails); it is never added, not even as a non-voter.
		ln, err := tls.Listen("tcp", "127.0.0.1:0", r.evil)
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.Copy(io.Discard, c) // runs the handshake, which the leader refuses
				c.Close()
			}
		}()
		own := ln.Addr().String()
		resp, _ = r.control(leader, ctlJSON("add", own, 1000), -1)
		require.Contains(t, resp.Error, "did not answer, so it is not added")
		r.requireMembers("add of the attacker's address", three)
		r.check("add of the attacker's address", true)
		r.check("remove of the attacker's address", true)
	})

	t.Run("fetch", func(t *testing.T) {
		r.t = t
		for _, i := range []int{r.leader(), r.follower()} {
			dir := r.c.cfgs[i].Dir
			names, err := LogFiles(dir, "app.log")
			require.NoError(t, err)
			require.Greater(t, len(names), 1, "no rotated file")
			rotatedFirst, ok := store.NewNames("app.log").ParseSegment(names[0])
			require.True(t, ok)
			activeFirst := r.c.nodes[i].fsm.segPtr.Load().ActiveFirst()
			conn := r.dial(i, wire.ProtoFetch, nil)
			br := bufio.NewReader(conn)
			for _, f := range []struct {
				name  string
				first uint64
			}{{names[0], rotatedFirst}, {"app.log", activeFirst}} {
				content, err := os.ReadFile(filepath.Join(dir, f.name))
				require.NoError(t, err)
				size := uint64(len(content))
				for _, c := range []struct {
					off, n uint64
					ok     bool
				}{
					{0, size, true}, {0, 0, true}, {size - 1, 1, true}, {size, 0, true}, {1, size - 1, true},
					{size, 1, false}, {size + 1, 0, false}, {size - 1, 2, false}, {0, size + 1, false},
					{math.MaxUint64, 1, false}, {math.MaxUint64, 0, false}, {0, math.MaxUint64, false},
					{1 << 63, 0, false}, {0, 1 << 63, false}, {1<<63 - 1, 2, false}, {1, 1<<63 - 1, false},
					{1<<63 - 1, 1<<63 - 1, false}, {0, fetchChunk + 1, false}, {0, fetchChunk, false},
					{size, math.MaxUint64 - size + 1, false},
				} {
					data, msg := fetchOne(t, conn, br, f.first, c.off, c.n)
					what := fmt.Sprintf("node %d, %s (%d bytes), bytes %d+%d", i+1, f.name, size, c.off, c.n)
					if c.ok {
						require.Empty(t, msg, what)
						require.Equal(t, content[c.off:c.off+c.n], data, what)
					} else {
						require.Contains(t, msg, "not held here", what)
					}
				}
			}
			starts := map[uint64]bool{activeFirst: true} // the files' first sequence numbers
			for _, name := range names {
				if first, ok := store.NewNames("app.log").ParseSegment(name); ok {
					starts[first] = true
				}
			}
			for _, first := range []uint64{0, math.MaxUint64, 1 << 63, rotatedFirst + 1, activeFirst + 1, activeFirst - 1} {
				if starts[first] {
					continue // a file starts there: no probe of a missing one
				}
				_, msg := fetchOne(t, conn, br, first, 0, 0)
				require.Contains(t, msg, "segment", "node %d, first %d", i+1, first)
			}
			// Many requests on one connection, good and bad by turns.
			for k := range 1000 {
				data, msg := fetchOne(t, conn, br, rotatedFirst, uint64(k%7), uint64(k%2))
				if k%2 == 0 {
					require.Empty(t, msg)
					require.Empty(t, data)
				} else {
					require.Len(t, data, 1)
				}
				_, msg = fetchOne(t, conn, br, uint64(k)<<40, 0, 1)
				require.NotEmpty(t, msg)
			}
			// A torn request: the node hangs up once the sender does.
			_, err = conn.Write([]byte{0, 0, 0})
			require.NoError(t, err)
			require.NoError(t, conn.(interface{ CloseWrite() error }).CloseWrite())
			_, err = br.ReadByte()
			require.ErrorIs(t, err, io.EOF)
			r.check(fmt.Sprintf("fetch from node %d", i+1), true)
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		r.t = t
		// A certificate that names no member's host cannot speak Raft at
		// all: the node closes the connection unread, and nothing moves.
		f := r.follower()
		term := r.c.nodes[f].Stats().Term
		_, err := r.forgeSnapshot(raftClient(t, r.evil), f, []byte(`{}`))
		require.Error(t, err)
		require.Equal(t, term, r.c.nodes[f].Stats().Term, "the attacker moved the term")
		r.check("InstallSnapshot from the attacker", true)

		// A certificate naming the nodes' host (127.0.0.1, shared by every
		// node here) can: each forged snapshot, from a term above the
		// cluster's, deposes the leader (an election follows) and is
		// refused by its manifest; nothing is written or kept.
		h := strings.Repeat("ab", 32)
		file := func(name string, first uint64) string {
			return fmt.Sprintf(`{"name":%q,"first":%d,"size":10,"sha256":%q}`, name, first, h)
		}
		producers := func(n int) string {
			var b strings.Builder
			for i := range n {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `"%d":{"pseq":1,"seq":1}`, i+1)
			}
			return b.String()
		}
		manyVoters, _ := json.Marshal(slices.Repeat([]string{"127.0.0.1:1"}, maxVoters+1))
		two := func(a, b string) string { return `{"index":9,"seq":20,"files":[` + a + `,` + b + `]}` }
		cases := []struct{ name, manifest, want string }{
			{"../ name", two(file("../escaped.txt", 1), file("app.log", 11)), `named "../escaped.txt"`},
			{"../ active name", two(file("app-00000000000000000001.log", 1), file("../app.log", 11)), `named "../app.log"`},
			{"absolute name", two(file("app-00000000000000000001.log", 1), file(filepath.Join(r.base, "evil.log"), 11)), "evil.log"},
			{"state.json", two(file("state.json", 1), file("app.log", 11)), `named "state.json"`},
			{"a raft directory", two(file("raft", 1), file("app.log", 11)), `named "raft"`},
			{"another file's number", two(file("app-00000000000000000002.log", 1), file("app.log", 11)), "where its numbers give"},
			{"no files", `{"index":9,"seq":20,"files":[]}`, "lists no files"},
			{"first 0", two(file("app-00000000000000000000.log", 0), file("app.log", 11)), "out of order"},
			{"files out of order", two(file("app-00000000000000000011.log", 11), file("app.log", 1)), "out of order"},
			{"negative size", `{"index":9,"seq":20,"files":[{"name":"app.log","first":1,"size":-1,"sha256":"` + h + `"}]}`, "has size -1"},
			{"no sha256", `{"index":9,"seq":20,"files":[{"name":"app.log","first":1,"size":1,"sha256":"../x"}]}`, "no valid sha256"},
			{"no valid blake3", `{"index":9,"seq":20,"files":[{"name":"app.log","first":1,"size":1,"sha256":"","blake3":"` + h[2:] + `"}]}`, "no valid blake3"},
			{"two checksums", `{"index":9,"seq":20,"files":[{"name":"app.log","first":1,"size":1,"sha256":"` + h + `","blake3":"` + h + `"}]}`, "both a sha256 and a blake3"},
			{"active file past seq", `{"index":9,"seq":20,"files":[` + file("app.log", 1<<62) + `]}`, "starts after its sequence number"},
			{"first 2^64-1", two(file("app-18446744073709551615.log", math.MaxUint64), file("app.log", 11)), "out of order"},
			{"producers over the bound", `{"index":9,"seq":20,"producers":{` + producers(maxProducers+1) + `},"files":[` + file("app.log", 1) + `]}`, "16385 producers"},
			{"voters over the bound", `{"index":9,"seq":20,"voters":` + string(manyVoters) + `,"files":[` + file("app.log", 1) + `]}`, "1025 voters"},
			{"settings of another file", `{"index":9,"seq":20,"settings":{"file":"../evil.log","max_size":1,"dedup_window":1},"files":[` + file("app.log", 1) + `]}`, "must be a plain file name"},
			{"not JSON", "\x00\xff not json", "reading snapshot"},
			{"empty", "", "reading snapshot"},
		}
		for k, c := range cases {
			f := r.follower()
			leader := r.c.nodes[r.leader()]
			before := leader.Stats().Term
			resp, err := r.forgeSnapshot(raftClient(t, r.shared), f, []byte(c.manifest))
			if k == 0 { // the term it sent reaches the leader, which steps down
				require.True(t, waitFor(10*time.Second, func() bool { return leader.Stats().Term > before+5 }),
					"the leader's term stayed %d", leader.Stats().Term)
			}
			require.Error(t, err, "%s: %+v", c.name, resp)
			require.False(t, resp.Success, c.name)
			require.ErrorContains(t, err, c.want, c.name)
			require.ErrorContains(t, err, "not stored", c.name)
			r.check(c.name, false)
		}
		r.check("forged snapshots", true)
		// The refused snapshots were not kept: every node restarts.
		for i := range r.c.nodes {
			r.c.stop(i)
			r.c.start(i)
		}
		r.c.waitReady()
		r.check("restart after forged snapshots", true)
	})

	// Last, as it shrinks the cluster: a certificate holder removes a
	// member, by design. Sent to a follower it is refused with the leader's
	// address; sent to the leader it takes effect as RemoveNode does: the
	// member confirms its removal with the others and stops taking entries,
	// and the two left go on with identical files.
	t.Run("remove a member", func(t *testing.T) {
		r.t = t
		leader, victim := r.leader(), r.follower()
		va := r.c.cfgs[victim].Addr
		resp, _ := r.control(victim, ctlJSON("remove", va, 10000), -1)
		require.True(t, resp.NotLeader, "%+v", resp)
		resp, _ = r.control(leader, ctlJSON("remove", va, 10000), -1)
		require.Empty(t, resp.Error)
		require.True(t, waitFor(20*time.Second, func() bool { return r.c.nodes[victim].removed.Load() }),
			"the removed node did not confirm its removal")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := r.c.nodes[victim].Append(ctx, LevelInfo, "from a removed node")
		require.ErrorIs(t, err, ErrRemoved)
		r.c.stop(victim)
		left := []string{}
		for i, cfg := range r.c.cfgs {
			if i != victim {
				left = append(left, cfg.Dir)
			}
		}
		r.c.flushAll()
		seq := r.c.waitSameSeq(uint64(r.lines))
		for i, lx := range r.c.nodes {
			if lx != nil {
				_, err := lx.Append(ctx, LevelInfo, "after the removal", "node", i)
				require.NoError(t, err)
			}
		}
		r.c.flushAll()
		require.Equal(t, seq+2, r.c.waitSameSeq(seq+2))
		require.Equal(t, uint64(r.lines+2), seq+2, "lines written besides the probes")
		requireIdentical(t, left, "app.log")
		require.Equal(t, r.outer, r.listOuter())
		require.Len(t, members(t, r.c.nodes[r.leader()]), 2)
	})
}

// forgeEntry sends node i an AppendEntries from a "leader" of a term above
// the cluster's, carrying data as the next entry and committing it. It
// retries (a few times) while the node's log moves under it.
func forgeEntry(t *testing.T, tr *raft.NetworkTransport, lx *Logx, data []byte) (raft.AppendEntriesResponse, error) {
	var resp raft.AppendEntriesResponse
	var err error
	for range 5 {
		last := lx.raft.LastIndex()
		var prev raft.Log
		require.NoError(t, lx.logs.GetLog(last, &prev))
		term := lx.Stats().Term + 10
		req := &raft.AppendEntriesRequest{
			RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte("127.0.0.1:9")},
			Term:              term,
			PrevLogEntry:      last,
			PrevLogTerm:       prev.Term,
			Entries:           []*raft.Log{{Index: last + 1, Term: term, Type: raft.LogCommand, Data: data}},
			LeaderCommitIndex: last + 1,
		}
		resp = raft.AppendEntriesResponse{}
		err = tr.AppendEntries("x", raft.ServerAddress(lx.cfg.Addr), req, &resp)
		if err != nil || resp.Success {
			return resp, err
		}
	}
	return resp, err
}

// TestHostileRaftPeer: only a certificate that names a member's host may
// speak Raft. The attacker's (attacker.example) cannot: its forged
// AppendEntries, carrying a raw forged line at a higher term, is refused
// unread, and nothing moves; a node started to join, with no configuration
// yet, answers it. On one host, though, a certificate naming that
// host is a member as far as Raft can tell: the same message is accepted
// and the forged line, which no leader's check saw, is written (the limit
// docs/security.md states).
func TestHostileRaftPeer(t *testing.T) {
	r := newHostileRig(t)
	f := r.follower()
	lx := r.c.nodes[f]
	term := lx.Stats().Term
	forged := hbatch(wire.V2, 0, newProducerID(), 1, 1, hraw(0, "level=ERROR msg=x\nseq=999999 level=ERROR msg=forged"))
	_, err := forgeEntry(t, raftClient(t, r.evil), lx, forged)
	require.Error(t, err)
	require.Equal(t, term, lx.Stats().Term)
	r.check("forged AppendEntries from the attacker", true)
	for _, l := range readLines(t, r.c.dirs()[f], "app.log") {
		require.NotContains(t, string(l), "msg=forged")
	}

	// A node started to join, whose configuration is still empty, cannot
	// tell members apart: it answers the attacker's Raft.
	cfg := testConfig(t, 0, freeAddrs(t, 1), filepath.Join(r.base, "joiner"))
	cfg.NodeID, cfg.Peers, cfg.Join, cfg.TLS = "joiner", r.c.cfgs[0].Peers, true, r.ca.nodeTLS(t, "joiner")
	joiner, err := New(cfg)
	require.NoError(t, err)
	defer joiner.Close()
	var hb raft.AppendEntriesResponse
	err = raftClient(t, r.evil).AppendEntries("x", raft.ServerAddress(cfg.Addr), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte("127.0.0.1:9")}, Term: 1}, &hb)
	require.NoError(t, err, "a joining node refused the attacker")
	require.True(t, hb.Success, "%+v", hb)
	r.outer = r.listOuter()

	resp, err := forgeEntry(t, raftClient(t, r.shared), lx, forged)
	require.NoError(t, err)
	require.True(t, resp.Success, "%+v", resp)
	require.True(t, waitFor(10*time.Second, func() bool {
		return slices.ContainsFunc(readLines(t, r.c.dirs()[f], "app.log"), func(l []byte) bool {
			return bytes.Equal(l, []byte("seq=999999 level=ERROR msg=forged"))
		})
	}), "the forged entry was not applied")
}

// failWriteConn is a connection whose reads come from r and whose writes
// fail, as on a connection the peer reset.
type failWriteConn struct {
	net.Conn // nil: the methods not defined here are not called
	r        io.Reader
}

func (c *failWriteConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *failWriteConn) Write([]byte) (int, error)        { return 0, errors.New("connection reset by peer") }
func (c *failWriteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *failWriteConn) SetWriteDeadline(time.Time) error { return nil }

// TestFetchRefusalClosesFile: a fetch request for a range a file does not
// hold opens the file, then is refused; when the refusal cannot be
// written (the peer reset the connection) the file is still closed. (It
// was left to the garbage collector: a peer repeating the request held a
// descriptor each time, and a deleted file's disk space with it.)
func TestFetchRefusalClosesFile(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd")
	}
	lx := newSingleSeams(t, nil, seams{})
	lx.Info("one line")
	require.NoError(t, lx.Flush(context.Background()))
	openFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(ents)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer closes them meanwhile
	req := wire.FetchRequest{First: 1, Off: 1 << 40, N: 10}.Encode()
	before := openFDs()
	for range 200 {
		lx.defaultStream.serveFetch(&failWriteConn{r: bytes.NewReader(req[:])})
	}
	require.Less(t, openFDs()-before, 50, "files left open by refused fetches")
}
