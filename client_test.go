package logx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// TestClientSendBatches: Client.Send splits what it is given into batches
// a leader with the default limits accepts (at most 4096 entries and 1 MiB
// of records each), commits them in order and returns the first sequence
// number; an entry over the default MaxEntrySize fails the call before
// anything is sent.
func TestClientSendBatches(t *testing.T) {
	d := DefaultConfig()
	require.Equal(t, d.MaxEntrySize, clientMaxEntrySize)
	require.Equal(t, d.MaxBatchBytes, clientMaxBatchBytes)
	require.Equal(t, d.MaxBatchEntries, clientMaxBatchEntries)

	// Clock reports are Raft entries too: one at start, then none; and
	// the apply rules, once (rules.go).
	lx := newSingleSeams(t, nil, seams{clockEvery: time.Hour})
	require.True(t, waitFor(10*time.Second, func() bool { return !lx.Stats().LogClock.IsZero() && lx.Stats().Rules == currentRules }))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := NewClient(ctx, "cl", lx.cfg.Addr)
	require.NoError(t, err)
	defer cl.Close()

	var want []string // msg of every line, in order
	send := func(ents []ClientEntry) (first uint64, batches uint64) {
		t.Helper()
		idx := lx.raft.LastIndex()
		first, err := cl.Send(ctx, ents)
		require.NoError(t, err)
		for _, e := range ents {
			want = append(want, e.Msg)
		}
		return first, lx.raft.LastIndex() - idx
	}

	// More than 4096 small entries: three batches by count.
	var small []ClientEntry
	for i := 0; i < 10000; i++ {
		small = append(small, ClientEntry{Level: LevelInfo, Msg: "small-" + strconv.Itoa(i)})
	}
	first, batches := send(small)
	require.Equal(t, uint64(1), first)
	require.Equal(t, uint64(3), batches)

	// 3 MiB of entries: more than one batch by size, each within the
	// leader's frame limit.
	var large []ClientEntry
	for i := 0; i < 300; i++ {
		large = append(large, ClientEntry{Level: LevelWarn, Msg: fmt.Sprintf("large-%d-%s", i, strings.Repeat("y", 10<<10))})
	}
	first, batches = send(large)
	require.Equal(t, uint64(len(small)+1), first)
	require.GreaterOrEqual(t, batches, uint64(3))

	// An entry over 64 KiB rendered: ErrEntryTooLarge, and nothing sent.
	idx := lx.raft.LastIndex()
	_, err = cl.Send(ctx, []ClientEntry{
		{Level: LevelInfo, Msg: "would be first"},
		{Level: LevelInfo, Msg: strings.Repeat("z", 64<<10)},
	})
	require.ErrorIs(t, err, ErrEntryTooLarge)
	require.Equal(t, idx, lx.raft.LastIndex(), "a batch was sent")
	first, _ = send([]ClientEntry{{Level: LevelInfo, Msg: "last"}})
	require.Equal(t, uint64(len(small)+len(large)+1), first)

	require.NoError(t, lx.Flush(ctx))
	lines := readLines(t, lx.cfg.Dir, lx.cfg.File)
	require.Len(t, lines, len(want))
	for i, l := range lines {
		kv, err := parseText(l)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(i+1), kv["seq"])
		require.Equal(t, want[i], kv["msg"], "line %d", i+1)
		require.Equal(t, "cl", kv["node"])
	}
}

// TestClientConflictPauses: a node that answers every batch with a
// producer conflict gets a fresh id at once the first time, then the
// pauses of any other failure, and the call ends with its context. (It
// retried at once under a new id, for good: a loop at full speed that a
// cancelled context did not end.)
func TestClientConflictPauses(t *testing.T) {
	var asked atomic.Int64
	addr := fakeForwarder(t, func(c net.Conn) error {
		asked.Add(1)
		msg := producerConflict + "taken"
		_, err := c.Write(wire.AppendAnswer(nil, wire.Answer{Status: wire.StatusRejected, Msg: msg}))
		return err
	})
	c := &Client{addrs: []string{addr}, timeout: 10 * time.Second, producer: 1, dedupWindow: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := c.sendBatch(ctx, wire.AppendRecord(nil, slog.LevelInfo, 1, []byte("x")), 1)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		require.Contains(t, err.Error(), producerConflict)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("Send did not end with its context (%d batches sent)", asked.Load())
	}
	// 500 ms of pauses from 20 ms, doubling: a handful.
	require.Less(t, asked.Load(), int64(20))
	require.Greater(t, asked.Load(), int64(2))
	c.Close()
}

// TestClientCancelEndsWait: a cancelled context without a deadline ends a
// Send waiting for a node that took the batch and does not answer, at
// once and as ErrOutcomeUnknown (the batch may have been written). Before,
// only a deadline did, and the wait ran to the Client's 10 s timeout.
func TestClientCancelEndsWait(t *testing.T) {
	read := make(chan struct{}, 1)
	addr := fakeForwarder(t, func(net.Conn) error {
		read <- struct{}{} // and no answer
		return nil
	})
	c := &Client{addrs: []string{addr}, timeout: time.Minute, producer: 1, dedupWindow: time.Hour}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.sendBatch(ctx, wire.AppendRecord(nil, slog.LevelInfo, 1, []byte("x")), 1)
		done <- err
	}()
	<-read
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, ErrOutcomeUnknown)
	case <-time.After(20 * time.Second):
		t.Fatal("Send did not end with its context")
	}
}

// TestClientRejectedAfterLostAnswer: a node that refuses a batch after an
// earlier try went out and lost its answer (that try may have been
// committed) is ErrOutcomeUnknown, not a plain ErrRejected that says
// nothing was written: logx forward -parse then sent the batch again
// raw, and /ingest answered outcome_unknown false.
func TestClientRejectedAfterLostAnswer(t *testing.T) {
	var asked atomic.Int64
	addr := fakeForwarder(t, func(c net.Conn) error {
		if asked.Add(1) == 1 {
			return errors.New("the answer is lost") // the connection ends with the batch read
		}
		_, err := c.Write(wire.AppendAnswer(nil, wire.Answer{Status: wire.StatusRejected, Msg: "entry too large for this node"}))
		return err
	})
	c := &Client{addrs: []string{addr}, timeout: 10 * time.Second, producer: 1, dedupWindow: time.Minute}
	defer c.Close()
	_, err := c.sendBatch(context.Background(), wire.AppendRecord(nil, slog.LevelInfo, 1, []byte("x")), 1)
	require.ErrorIs(t, err, ErrRejected)
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.Equal(t, int64(2), asked.Load())
}

// fakeForwarder listens on 127.0.0.1 as a node's forwarding endpoint
// would, reads each batch a connection sends and calls answer (an error
// ends the connection); it returns the address.
func fakeForwarder(t *testing.T, answer func(net.Conn) error) string {
	return fakeForwarderOf(t, func(byte) bool { return true }, answer)
}

// fakeForwarderOf is fakeForwarder for the connections whose protocol
// byte proto accepts; it closes the others unread.
func fakeForwarderOf(t *testing.T, proto func(byte) bool, answer func(net.Conn) error) string {
	return fakePeer(t, "127.0.0.1:0", func(c net.Conn) {
		r := bufio.NewReader(c)
		if _, p, err := wire.ReadPreface(r, validStreamName, DefaultStream); err != nil || !proto(p) {
			return
		}
		for {
			if _, err := wire.ReadFrame(r, nil, 1<<20); err != nil {
				return
			}
			if answer(c) != nil {
				return
			}
		}
	})
}

// fakePeer listens at addr (port 0: any) and hands each connection to
// serve on a goroutine of its own, closing it after; it returns the
// address.
func fakePeer(t *testing.T, addr string, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestCommitViaLostAnswer: a change whose request went out and whose
// answer had not come when the caller's context ended, the node holding
// the connection, is ErrOutcomeUnknown (the node may have made it: it was
// a plain error, so `logx set-level` reported a failure after the level
// changed); a status request so is not, nor a change whose connection the
// node closed unanswered (as it drops a request for a stream it does not
// have); and a try lasts as long as the caller's context allows rather
// than a fixed 10 s (controlTry): a change the leader answers after it is
// taken.
func TestCommitViaLostAnswer(t *testing.T) {
	defer func(d time.Duration) { controlTry = d }(controlTry)
	controlTry = 100 * time.Millisecond
	var delay atomic.Int64                            // of the answer; 0: none; < 0: the connection closed
	addr := fakeForwarder(t, func(c net.Conn) error { // a control server, as far as the test goes
		d := time.Duration(delay.Load())
		switch {
		case d == 0:
			_, _ = io.Copy(io.Discard, c) // no answer
			return nil
		case d < 0:
			return errors.New("closed unanswered, as a request dropped unread")
		}
		time.Sleep(d)
		return writeJSONFrame(c, controlResponse{Index: 7})
	})
	level := LevelWarn
	change := controlRequest{Op: "set-level", Level: &level}
	ask := func(req controlRequest, within time.Duration) (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return commitVia(ctx, addr, DefaultStream, req, nil)
	}

	_, err := ask(change, 500*time.Millisecond)
	require.ErrorIs(t, err, ErrOutcomeUnknown, "a change sent and not answered")
	_, err = ask(controlRequest{Op: "status"}, 500*time.Millisecond)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrOutcomeUnknown, "a status request changes nothing")

	delay.Store(-1)
	_, err = ask(change, 500*time.Millisecond)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrOutcomeUnknown, "closed unanswered: dropped unread, or cut off")

	delay.Store(int64(300 * time.Millisecond)) // three times controlTry
	idx, err := ask(change, 5*time.Second)
	require.NoError(t, err, "a try at the node given waits as long as the context allows")
	require.EqualValues(t, 7, idx)

	_, err = commitVia(t.Context(), "127.0.0.1:1", DefaultStream, change, nil)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrOutcomeUnknown, "nothing went out")

	// The node given names a leader that goes silent, then leads itself:
	// the hop gets half the context, and the node is asked again in time.
	silent := fakeForwarder(t, func(c net.Conn) error {
		_, _ = io.Copy(io.Discard, c)
		return nil
	})
	var asked atomic.Int64
	named := fakeForwarder(t, func(c net.Conn) error {
		if asked.Add(1) == 1 {
			return writeJSONFrame(c, controlResponse{NotLeader: true, Leader: silent})
		}
		return writeJSONFrame(c, controlResponse{Index: 9})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	idx, err = commitVia(ctx, named, DefaultStream, change, nil)
	require.NoError(t, err, "the silent leader took the whole context")
	require.EqualValues(t, 9, idx)

	// A leader named that does not hold the stream (its catalog late) is
	// not the end: the node given is asked again; the node given not
	// holding it is.
	lacking := fakeForwarder(t, func(c net.Conn) error {
		return writeJSONFrame(c, controlResponse{NoStream: true, Error: "logx: x has no stream"})
	})
	asked.Store(0)
	named = fakeForwarder(t, func(c net.Conn) error {
		if asked.Add(1) == 1 {
			return writeJSONFrame(c, controlResponse{NotLeader: true, Leader: lacking})
		}
		return writeJSONFrame(c, controlResponse{Index: 11})
	})
	idx, err = commitVia(ctx, named, DefaultStream, change, nil)
	require.NoError(t, err, "a named leader without the stream ended the change")
	require.EqualValues(t, 11, idx)
	_, err = commitVia(ctx, lacking, DefaultStream, change, nil)
	require.ErrorContains(t, err, "has no stream")
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
}

// TestClientAsksWindowAgain: a Client that learned the shortest window
// (its node did not know the cluster's settings yet, as in a new cluster)
// asks again before it gives up on a batch, and retries within the
// cluster's window. Before, it kept the first answer for its life, and
// every leader change longer than half a second failed its batch with
// ErrOutcomeUnknown, which a shipper answers by sending it again.
func TestClientAsksWindowAgain(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	c.waitReady()
	silent := fakeForwarder(t, func(net.Conn) error { return nil }) // reads the batch, never answers
	cl := &Client{addrs: []string{silent, c.cfgs[0].Addr}, node: "cl", timeout: 700 * time.Millisecond, producer: newProducerID(),
		dedupWindow: minDedupWindow, stream: DefaultStream}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := cl.Send(ctx, []ClientEntry{{Level: LevelInfo, Msg: "after a silent node"}})
	require.NoError(t, err)
	require.Positive(t, first)
	require.Equal(t, c.nodes[0].Stats().DedupWindow, cl.dedupWindow)
}
