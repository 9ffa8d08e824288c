package logx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the writes of many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestQuietStart: a normal start of a new cluster, with a declared stream,
// and some logging write nothing at WARN or above to LogOutput: the first
// election is expected, not a warning. A restart of the same cluster, one
// node after the other, is as quiet. (While the nodes close one by one,
// the others do see a peer go away, and say so.)
func TestQuietStart(t *testing.T) {
	outs := make([]*syncBuffer, 3)
	c := newTestCluster(t, 3, func(cfg *Config) {
		i := int(cfg.NodeID[1] - '1')
		outs[i] = &syncBuffer{}
		cfg.LogOutput = outs[i]
		cfg.Streams = []StreamConfig{{Name: "audit"}}
	})
	round := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i, lx := range c.nodes {
			_, err := lx.Append(ctx, LevelInfo, "hello", "node", i)
			require.NoError(t, err)
			audit, err := lx.Stream("audit")
			require.NoError(t, err)
			_, err = audit.Append(ctx, LevelInfo, "audit hello", "node", i)
			require.NoError(t, err)
		}
	}
	check := func(phase string) {
		t.Helper()
		for i, out := range outs {
			for _, line := range strings.Split(out.String(), "\n") {
				for _, lvl := range []string{"[WARN]", "[ERROR]"} {
					require.NotContains(t, line, lvl, fmt.Sprintf("%s: node %d logged at WARN or above:\n%s", phase, i+1, out))
				}
			}
		}
	}
	round()
	check("a new cluster")
	c.closeAll()
	for i := range c.nodes {
		outs[i].reset()
		c.start(i)
	}
	c.waitReady()
	round()
	check("a restart")
	for i, out := range outs {
		t.Logf("node %d's LogOutput:\n%s", i+1, out)
	}
}

// TestQuietRaftKeepsTheRest: the filter drops only the normal messages; an
// election after a leader was known, a failed decode for another reason
// and any other message still show.
func TestQuietRaftKeepsTheRest(t *testing.T) {
	for _, c := range []struct {
		msg  string
		args []any
		drop bool
	}{
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", "", "last-leader-id", ""}, true},
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", "127.0.0.1:1", "last-leader-id", "x"}, false},
		// What hashicorp/raft really passes: its own string types.
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", raft.ServerAddress(""), "last-leader-id", raft.ServerID("")}, true},
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", raft.ServerAddress("127.0.0.1:1"), "last-leader-id", raft.ServerID("x")}, false},
		{"failed to decode incoming command", []any{"error", fmt.Errorf("read: %w", net.ErrClosed)}, true},
		{"failed to decode incoming command", []any{"error", errors.New("unknown rpc type 9")}, false},
		{"failed to decode incoming command", nil, false},
		{"no known peers, aborting election", nil, true},
		{"rejecting pre-vote request since we have a leader", []any{"from", "127.0.0.1:1", "leader", "127.0.0.1:2"}, true},
		{"rejecting vote request since we have a leader", []any{"from", "127.0.0.1:1", "leader", "127.0.0.1:2"}, true},
		{"peer has newer term, stopping replication", []any{"peer", raft.Server{ID: "x", Address: "127.0.0.1:1"}}, true},
		{"previous log term mis-match", []any{"ours", uint64(3), "remote", uint64(4)}, true},
		{"failed to contact quorum of nodes, stepping down", nil, false},
		{"failed to appendEntries to", []any{"peer", "x", "error", io.EOF}, false},
	} {
		require.Equal(t, c.drop, quietRaft(hclog.Warn, c.msg, c.args...), "%s %v", c.msg, c.args)
	}
}
