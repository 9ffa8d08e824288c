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

// dnsNames gives n free addresses the names logx-<i>.logx.test: their IPs
// (where the nodes listen), the names' IPs, and the nodes' addresses.
func dnsNames(t *testing.T, n int) (ips []string, names map[string]string, addrs []string) {
	ips = freeAddrs(t, n)
	names = map[string]string{} // DNS name → IP
	for i, a := range ips {
		host, port, _ := net.SplitHostPort(a)
		name := fmt.Sprintf("logx-%d.logx.test", i)
		names[name] = host
		addrs = append(addrs, net.JoinHostPort(name, port))
	}
	return ips, names, addrs
}

// namedCluster sets up, without starting them, nodes at addrs listening
// on ips, every node resolving names with resolve.
func namedCluster(t *testing.T, ips, addrs []string, resolve func(string) (string, error)) *testCluster {
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := range addrs {
		cfg := testConfig(t, i, addrs, filepath.Join(base, fmt.Sprint(i)))
		cfg.ListenAddr = ips[i]
		c.cfgs = append(c.cfgs, cfg)
		c.seams = append(c.seams, seams{resolve: resolve})
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(c.closeAll)
	return c
}

// TestUnresolvedPeer: a peer whose name does not resolve yet (a pod whose
// DNS record comes later) is not fatal: every node starts, the two that
// resolve form the cluster and log, and once the third's name resolves it
// joins in and ends with the same files.
func TestUnresolvedPeer(t *testing.T) {
	ips, names, addrs := dnsNames(t, 3)
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
	c := namedCluster(t, ips, addrs, resolve)
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

// TestVotersKnowDNS: a voter whose name does not resolve counts as down
// when a stream is created or a cluster level set, but one whose lookup
// fails for a while (a resolver's timeout) does not: it may be up and
// older, so the command is refused until it answers.
func TestVotersKnowDNS(t *testing.T) {
	ips, names, addrs := dnsNames(t, 3)
	var failing atomic.Value // the name that fails, and how: "", "timeout" or "none"
	failing.Store([2]string{})
	resolve := func(host string) (string, error) {
		if f := failing.Load().([2]string); f[0] == host {
			if f[1] == "timeout" {
				return "", &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true, IsTemporary: true}
			}
			return "", errors.New("no such host")
		}
		if ip, ok := names[host]; ok {
			return ip, nil
		}
		return "", errors.New("no such host")
	}
	c := namedCluster(t, ips, addrs, resolve)
	for i := range 3 {
		c.start(i)
	}
	c.waitReady()
	leader := c.nodes[c.leaderIndex()]
	other := addrs[(c.leaderIndex()+1)%3]
	host, _, _ := net.SplitHostPort(other)

	require.NoError(t, leader.votersKnow(addrs, clusterCmdsFeature, "level commands"))
	failing.Store([2]string{host, "timeout"})
	err := leader.votersKnow(addrs, clusterCmdsFeature, "level commands")
	require.ErrorContains(t, err, "did not say which version it runs")
	failing.Store([2]string{host, "none"})
	require.NoError(t, leader.votersKnow(addrs, clusterCmdsFeature, "level commands"), "a name that does not resolve is down")
}
