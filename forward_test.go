package logx

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// TestForwardFollowsNewLeader: when the leader goes silent (a blackhole
// partition: connections stay open, nothing arrives), the followers elect
// another leader, and a follower's Append moves on to it instead of waiting
// for ForwardTimeout on the old one. The entry is written once.
func TestForwardFollowsNewLeader(t *testing.T) {
	t.Parallel()
	fn := newFaultNet(t, 3)
	c := newFaultCluster(t, fn, func(cfg *Config) {
		cfg.ForwardTimeout = time.Minute // so that waiting it out cannot pass
	})
	l := c.leaderIndex()
	f := (l + 1) % 3
	ctx := context.Background()
	_, err := c.nodes[f].Append(ctx, LevelInfo, "before", "k", 0)
	require.NoError(t, err)

	fn.isolate(l, cutBlackhole)
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, 50*time.Second)
	defer cancel()
	_, err = c.nodes[f].Append(actx, LevelInfo, "during", "k", 1)
	require.NoError(t, err)
	took := time.Since(start)
	require.Less(t, took, 30*time.Second, "the follower waited out ForwardTimeout on the silent leader")
	t.Logf("Append during the partition took %v", took)

	fn.heal()
	c.flushAll()
	seq := c.waitSameSeq(2)
	requireIdentical(t, c.dirs(), "app.log")
	requireUnique(t, readLines(t, c.cfgs[0].Dir, "app.log"), "msg", "k")
	require.Equal(t, uint64(2), seq)
}

// followerNode makes node i a follower (it transfers leadership away if
// it leads) and returns the leader.
func (c *testCluster) followerNode(i int) *Logx {
	c.t.Helper()
	if c.leaderIndex() == i {
		require.NoError(c.t, c.nodes[i].raft.LeadershipTransfer().Error())
	}
	var leader *Logx
	require.True(c.t, waitFor(20*time.Second, func() bool {
		l := c.leaderIndex()
		if l < 0 || l == i {
			return false
		}
		addr, _ := c.nodes[i].raft.LeaderWithID()
		leader = c.nodes[l]
		return string(addr) == c.cfgs[l].Addr
	}), "node %d does not follow another node", i+1)
	return leader
}

// TestForwardLargerEntryThanLeaders: MaxEntrySize is the logging node's
// limit. A follower allowed larger entries than the leader's forwards one
// that fits the leader's frame limit: it is committed, with the other
// entries of its batch, as it would be were the follower leading.
func TestForwardLargerEntryThanLeaders(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.NodeID == "n1" {
			cfg.MaxEntrySize = 256 << 10
		}
	})
	big := c.nodes[0]
	leader := c.followerNode(0)
	msg := strings.Repeat("y", 100<<10)
	require.Greater(t, len(msg), leader.cfg.MaxEntrySize)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big.Info(msg, "async", true)
	_, err := big.Append(ctx, LevelInfo, "small")
	require.NoError(t, err)
	_, err = big.Append(ctx, LevelInfo, msg)
	require.NoError(t, err)
	require.NoError(t, big.Flush(ctx))
	c.flushAll()
	c.waitSameSeq(3)
	requireIdentical(t, c.dirs(), "app.log")
	require.Len(t, readLines(t, c.cfgs[1].Dir, "app.log"), 3)
	require.Zero(t, big.Stats().Failed)
}

// TestForwardOversizedFrameRejected: nodes may be configured differently.
// A follower allowed larger entries and batches than the leader's frame
// limit sends a frame over it; the leader refuses it with an answer, so the
// follower's Append fails at once with an error naming the limit instead
// of retrying forever, an async entry is counted as failed, and both the
// connection and the cluster keep working for normal entries.
func TestForwardOversizedFrameRejected(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.NodeID == "n1" {
			cfg.MaxEntrySize = 2 << 20
			cfg.MaxBatchBytes = 4 << 20
			cfg.DisableCompression = true // the frame stays as large as its records
		}
	})
	big := c.nodes[0]
	leader := c.followerNode(0)
	msg := strings.Repeat("x", 1536<<10) // 1.5 MiB, over the leader's limit of about 1.06 MiB
	require.Greater(t, len(msg), leader.maxFrame)

	before := big.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := big.Append(ctx, LevelInfo, msg)
	require.Error(t, err)
	require.NotErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
	var rej *rejectedError
	require.ErrorAs(t, err, &rej)
	require.ErrorContains(t, err, fmt.Sprintf("exceeds this leader's limit of %d bytes", leader.maxFrame))
	after := big.Stats()
	require.Equal(t, before.Retries, after.Retries, "the rejected batch was retried")
	require.Equal(t, before.Failed+1, after.Failed)

	// An async entry fails the same way, once, and is counted; a Flush
	// made after its batch failed reports the loss (it rides alone), and
	// the next Flush does not report it again.
	big.Info(msg)
	require.True(t, waitFor(10*time.Second, func() bool { return big.Stats().Failed == before.Failed+2 }))
	err = big.Flush(ctx)
	require.ErrorIs(t, err, ErrEntriesLost)
	require.ErrorContains(t, err, "1 asynchronous entry logged", "the Append's failure was its caller's to see")
	require.NoError(t, big.Flush(ctx))
	after = big.Stats()
	require.Equal(t, before.Retries, after.Retries, "the rejected batch was retried")
	require.Equal(t, before.Failed+2, after.Failed)

	// Normal entries still commit, from every node.
	for i, lx := range c.nodes {
		_, err := lx.Append(ctx, LevelInfo, "normal", "node", i)
		require.NoError(t, err)
	}
	c.flushAll()
	c.waitSameSeq(3)
	requireIdentical(t, c.dirs(), "app.log")
	lines := readLines(t, c.cfgs[0].Dir, "app.log")
	require.Len(t, lines, 3)
	requireUnique(t, lines, "node")
	require.Equal(t, before.Retries, big.Stats().Retries)
}

// TestForwardFrameHalfSent: a peer that announces a frame and holds it
// half-sent loses its connection within the leader's ForwardTimeout (at
// least the default 10 s), and with it the bytes held: the body had as
// long as the connection's idle timeout (5 minutes), so with many
// connections a certificate holder pinned gigabytes of the leader's
// memory with a trickle of bytes.
func TestForwardFrameHalfSent(t *testing.T) {
	t.Parallel()
	lx := newSingle(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := dialProto(ctx, lx.cfg.Addr, "", wire.ProtoForward, 5*time.Second, nil)
	require.NoError(t, err)
	defer conn.Close()
	n := lx.maxFrame
	_, err = conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(n)), make([]byte, n/2)...))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(60*time.Second)))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the leader still holds the half-sent frame")
	require.Error(t, err, "an answer to half a frame")
}

// TestForwardFrameOverLimit: a raw forwarding connection to a leader. A
// frame header announcing more than the leader's limit gets a "rejected"
// answer naming the size and the limit; the body is read and discarded and
// the connection serves the next frame. A header beyond any valid sender's
// bound gets an answer or a closed connection, never a hang.
func TestForwardFrameOverLimit(t *testing.T) {
	lx := newSingle(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() (net.Conn, *bufio.Reader) {
		conn, err := dialProto(ctx, lx.cfg.Addr, "", wire.ProtoForward, 5*time.Second, nil)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		require.NoError(t, conn.SetDeadline(time.Now().Add(15*time.Second)))
		return conn, bufio.NewReader(conn)
	}
	send := func(conn net.Conn, n int, body []byte) {
		t.Helper()
		_, err := conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(n)), body...))
		require.NoError(t, err)
	}
	answer := func(r *bufio.Reader) (status byte, first uint64, msg string, err error) {
		resp, err := wire.ReadFrame(r, nil, 1<<20)
		if err != nil {
			return 0, 0, "", err
		}
		require.GreaterOrEqual(t, len(resp), wire.AnswerHeader)
		return resp[0], binary.BigEndian.Uint64(resp[9:17]), string(resp[wire.AnswerHeader:]), nil
	}

	conn, r := dial()
	n := lx.maxFrame + 1
	send(conn, n, make([]byte, n))
	status, _, msg, err := answer(r)
	require.NoError(t, err)
	require.Equal(t, wire.StatusRejected, status, "%s", msg)
	require.Contains(t, msg, fmt.Sprintf("frame of %d bytes exceeds this leader's limit of %d bytes", n, lx.maxFrame))

	// The same connection commits a valid batch next.
	now := time.Now()
	body := appendBodyStart(nil, FormatText, now, LevelInfo, "raw", "", "after the rejected frame")
	batch := wire.NewBatch(wire.Header{Producer: 42, FirstPSeq: 1, Count: 1}, wire.AppendRecord(nil, LevelInfo, now.UnixNano(), body), false)
	send(conn, len(batch), batch)
	status, first, msg, err := answer(r)
	require.NoError(t, err)
	require.Equal(t, wire.StatusOK, status, "%s", msg)
	require.Equal(t, uint64(1), first)
	require.NoError(t, lx.Flush(ctx))
	lines := readLines(t, lx.cfg.Dir, lx.cfg.File)
	require.Len(t, lines, 1)
	require.Contains(t, string(lines[0]), `msg="after the rejected frame"`)

	// Beyond the bound: no body is read; an answer, then the end.
	conn, r = dial()
	send(conn, math.MaxUint32, nil)
	status, _, msg, err = answer(r)
	if err == nil {
		require.Equal(t, wire.StatusRejected, status, "%s", msg)
		require.Contains(t, msg, fmt.Sprintf("frame of %d bytes", uint32(math.MaxUint32)))
		_, err = r.ReadByte()
	}
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the leader neither answered nor closed: %v", err)
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "%v", err)
}

// TestForwardDialFailureNotSent: a try whose connection could not be made
// sent nothing, and says so: the producer then does not count the batch as
// possibly written (before, it did, and a batch whose leader refused
// connections failed with ErrOutcomeUnknown, its async entries counted as
// of unknown outcome rather than lost).
func TestForwardDialFailureNotSent(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	c.waitReady()
	closed := freeAddrs(t, 1)[0] // nothing listens there
	fw := &forwarder{lx: c.nodes[0].defaultStream}
	_, _, err := fw.send(closed, []byte("batch"), time.Now().Add(5*time.Second))
	var ns errNotSent
	require.ErrorAs(t, err, &ns)
	// One that went out and got no answer may have been written.
	addr := fakeForwarder(t, func(net.Conn) error { return errors.New("cut") })
	_, _, err = fw.send(addr, []byte("batch"), time.Now().Add(5*time.Second))
	require.Error(t, err)
	require.False(t, errors.As(err, &ns), "%v", err)
}

// TestRefusedForwardNotSent: an Append whose every try failed to connect
// to the leader sent nothing, so the Close that cuts it short says
// ErrClosed, not ErrOutcomeUnknown (the caller may log it again safely).
func TestRefusedForwardNotSent(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true) // from the start: no follower has a connection to reuse
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.CloseTimeout = time.Second // the Close below cannot flush
		sm.forwardDial = func(string) error {
			if refuse.Load() {
				return errors.New("connection refused (seam)")
			}
			return nil
		}
	})
	c.waitReady()
	follower := c.nodes[(c.leaderIndex()+1)%3]
	failed := follower.Stats().ForwardErrors
	done := make(chan error, 1)
	go func() {
		_, err := follower.Append(context.Background(), LevelInfo, "never sent")
		done <- err
	}()
	require.True(t, waitFor(10*time.Second, func() bool { return follower.Stats().ForwardErrors >= failed+2 }), "no failed tries: %+v", follower.Stats())
	require.Error(t, follower.Close(), "its entry was not flushed")
	err := <-done
	require.ErrorIs(t, err, ErrClosed)
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
}

// TestQuietLog: what peers' connections cause is logged once a minute of
// each kind, the next line saying how many were not.
func TestQuietLog(t *testing.T) {
	var q quietLog
	var lines []string
	logf := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
	for i := range 1000 {
		q.logf(logf, noiseFrame, "frame %d", i)
	}
	q.logf(logf, noiseRaft, "raft")
	require.Equal(t, []string{"frame 0", "raft"}, lines)
	q.last[noiseFrame].Add(-int64(refusedLogEvery)) // a minute on
	q.logf(logf, noiseFrame, "frame again")
	require.Equal(t, []string{"frame 0", "raft", "frame again (and 999 more like it, not logged, since the one before)"}, lines)
}
