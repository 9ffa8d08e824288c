package logx

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// TestVerifiedCommit: a follower's commit index goes no further than the
// entries a request checked against the leader's log (the Raft paper's
// rule, which hashicorp/raft v1.8.0 does not apply: commitclamp.go).
func TestVerifiedCommit(t *testing.T) {
	entries := func(n int) []*raft.Log { return make([]*raft.Log, n) }
	for _, c := range []struct {
		name         string
		prev, commit uint64
		n            int
		want         uint64
	}{
		{"no entries, commit past the previous", 910, 915, 0, 910},
		{"too few entries to reach the commit", 910, 915, 2, 912},
		{"entries reach past the commit", 910, 915, 8, 915},
		{"entries end at the commit", 910, 915, 5, 915},
		{"commit behind the previous", 910, 900, 0, 900},
		{"from the first entry", 0, 7, 3, 3},
		{"heartbeat", 0, 0, 0, 0},
	} {
		req := &raft.AppendEntriesRequest{PrevLogEntry: c.prev, LeaderCommitIndex: c.commit, Entries: entries(c.n)}
		verifiedCommit(req)
		require.Equal(t, c.want, req.LeaderCommitIndex, c.name)
	}
	// A peer's entries out of order: no further than the last one's index.
	req := &raft.AppendEntriesRequest{PrevLogEntry: 910, LeaderCommitIndex: 915,
		Entries: []*raft.Log{{Index: 913}, {Index: 911}}}
	verifiedCommit(req)
	require.Equal(t, uint64(911), req.LeaderCommitIndex)
}

// TestVerifiedTransport: requests that reach Raft over a real TCP
// connection have the rule applied; others pass as sent; Close ends the
// relay.
func TestVerifiedTransport(t *testing.T) {
	inner, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, nil)
	require.NoError(t, err)
	v := newVerifiedTransport(inner)
	client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, nil)
	require.NoError(t, err)
	to := v.LocalAddr()

	answer := func() raft.RPC {
		select {
		case rpc := <-v.Consumer():
			rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
			return rpc
		case <-time.After(10 * time.Second):
			t.Fatal("no request reached the consumer")
			return raft.RPC{}
		}
	}
	send := func(req *raft.AppendEntriesRequest) <-chan error {
		errc := make(chan error, 1)
		go func() {
			var resp raft.AppendEntriesResponse
			errc <- client.AppendEntries(raft.ServerID(to), to, req, &resp)
		}()
		return errc
	}
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte(client.LocalAddr())}
	errc := send(&raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, PrevLogEntry: 910, PrevLogTerm: 2,
		LeaderCommitIndex: 915, Entries: []*raft.Log{{Index: 911, Term: 3, Type: raft.LogNoop}}})
	got := answer().Command.(*raft.AppendEntriesRequest)
	require.NoError(t, <-errc)
	require.Equal(t, uint64(911), got.LeaderCommitIndex, "lowered to the last entry sent")
	require.Len(t, got.Entries, 1)

	errc = send(&raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, PrevLogEntry: 915, PrevLogTerm: 3, LeaderCommitIndex: 915})
	got = answer().Command.(*raft.AppendEntriesRequest)
	require.NoError(t, <-errc)
	require.Equal(t, uint64(915), got.LeaderCommitIndex, "verified: as sent")

	client.CloseStreams() // the server's handler of the connection ends
	require.NoError(t, client.Close())
	require.NoError(t, v.Close())
	select {
	case <-v.done:
	default:
		t.Fatal("Close did not stop the relay")
	}
	require.NoError(t, v.Close(), "a second Close")
}
