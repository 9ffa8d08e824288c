package logx

import (
	"net"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// TestConnLimits: a connection that sends nothing is dropped after the
// header timeout, and one IP address cannot hold more than maxConnsPerIP
// connections; closing some makes room again.
func TestConnLimits(t *testing.T) {
	t.Parallel()                                                                                 // its limits are its own node's (seams), not the package's
	lx := newSingleSeams(t, nil, seams{headerTimeout: 300 * time.Millisecond, maxConnsPerIP: 8}) // one node: no peer holds connections to it

	// Silent connection: dropped.
	c, err := net.Dial("tcp", lx.cfg.Addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "a silent connection must be closed by the node")
	require.False(t, isTimeout(err), "the node should have closed it before our deadline")

	// Flood: at most 8 stay open. Each says it carries forwarded batches,
	// so that the header timeout does not close it meanwhile.
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for range 20 {
		c, err := net.Dial("tcp", lx.cfg.Addr)
		require.NoError(t, err)
		_, _ = c.Write([]byte{wire.ProtoForward})
		open = append(open, c)
	}
	require.True(t, waitFor(10*time.Second, func() bool {
		lx.node.mux.mu.Lock()
		defer lx.node.mux.mu.Unlock()
		return lx.node.mux.perIP["127.0.0.1"] == 8
	}))
	closedByNode := 0
	for _, c := range open {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closedByNode++
		}
	}
	// The 12 over the limit were closed at once (now and then one more
	// reads as closed: its reset raced our read).
	require.GreaterOrEqual(t, closedByNode, 20-8)
	for _, c := range open {
		c.Close()
	}
	open = nil
	require.True(t, waitFor(10*time.Second, func() bool {
		lx.node.mux.mu.Lock()
		defer lx.node.mux.mu.Unlock()
		return lx.node.mux.perIP["127.0.0.1"] == 0
	}), "closed connections must free their slots")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
