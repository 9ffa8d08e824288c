package logx

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLocalhostNames: nodes named by a DNS name (localhost) form a cluster;
// one binds its ListenAddr, the others their Addr. Raft's members and
// Stats name the nodes as Addr says.
func TestLocalhostNames(t *testing.T) {
	ips := freeAddrs(t, 3)
	var addrs []string
	for _, a := range ips {
		_, port, _ := net.SplitHostPort(a)
		addrs = append(addrs, "localhost:"+port)
	}
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := range 3 {
		cfg := testConfig(t, i, addrs, filepath.Join(base, fmt.Sprint(i)))
		if i == 0 {
			cfg.ListenAddr = ips[0]
		}
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
		c.start(i)
	}
	t.Cleanup(c.closeAll)
	c.waitReady()
	c.logAppend("localhost", 20)
	c.flushAll()
	c.waitSameSeq(60)
	requireIdentical(t, c.dirs(), "app.log")
	members, err := c.nodes[0].Members()
	require.NoError(t, err)
	for _, m := range members {
		require.True(t, strings.HasPrefix(m.Addr, "localhost:"), "member %q", m.Addr)
	}
	require.True(t, strings.HasPrefix(c.nodes[1].Stats().Leader, "localhost:"), "leader %q", c.nodes[1].Stats().Leader)
}

// TestUnresolvedPeer: a peer whose name does not resolve yet (a pod whose
// DNS record comes later) is not fatal: every node starts, the two that
// resolve form the cluster and log, and once the third's name resolves it
// joins in and ends with the same files.
func TestUnresolvedPeer(t *testing.T) {
	ips := freeAddrs(t, 3)
	names := map[string]string{} // DNS name → IP
	var addrs []string
	for i, a := range ips {
		host, port, _ := net.SplitHostPort(a)
		name := fmt.Sprintf("logx-%d.logx.test", i)
		names[name] = host
		addrs = append(addrs, net.JoinHostPort(name, port))
	}
	var late atomic.Bool // logx-2 resolves once set
	var refused atomic.Int64
	resolve := func(host string) (string, error) {
		if host == "logx-2.logx.test" && !late.Load() {
			refused.Add(1)
			return "", errors.New("no such host (yet)")
		}
		if ip, ok := names[host]; ok {
			return ip, nil
		}
		return "", errors.New("no such host")
	}
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := range 3 {
		cfg := testConfig(t, i, addrs, filepath.Join(base, fmt.Sprint(i)))
		cfg.ListenAddr = ips[i]
		c.cfgs = append(c.cfgs, cfg)
		c.seams = append(c.seams, seams{resolve: resolve})
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(c.closeAll)
	// The first two elect a leader among themselves (were logx-2 to win
	// an election, its followers could not forward to it), then logx-2
	// starts: its own name not resolving is not fatal either.
	c.start(0)
	c.start(1)
	c.waitReady()
	c.start(2)
	third := c.nodes[2] // log from the first two only
	c.nodes[2] = nil
	c.logAppend("before", 10)
	c.nodes[2] = third
	require.True(t, waitFor(10*time.Second, func() bool { return refused.Load() > 3 }), "nobody tried logx-2")
	require.Zero(t, c.nodes[2].Stats().Seq, "logx-2 got entries while its name did not resolve")

	late.Store(true) // the record appears
	require.NoError(t, c.nodes[2].WaitReady(t.Context()))
	c.logAppend("after", 10)
	c.flushAll()
	c.waitSameSeq(50)
	requireIdentical(t, c.dirs(), "app.log")
}
