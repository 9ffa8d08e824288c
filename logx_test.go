package logx

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// parallelTests: the package's tests run one at a time, except those of
// a second or more that mostly wait (for fsyncs, elections, timeouts and
// child processes: less than 0.6 of their time is CPU, most under 0.1),
// which call t.Parallel and so run two at a time (go test's -parallel is
// GOMAXPROCS) after the others. A test whose bound on a time or a rate
// another test's load could break stays serial, and so does one that an
// election brought on by load would fail (a term that must not move). The parallel ones set no
// package variable, so they share nothing but the machine, and the
// loopback's ports: a node restarted on the address it had could find it
// taken by the other test's dial in between, as by its own cluster's
// (rare: Linux picks those ports at random). It keeps the default suite
// well under its 10-minute budget on a slow 2-core machine (534 s before
// most of them were made parallel, 342 s after).
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	goleak.VerifyTestMain(m)
}

// parseText parses a text-format line into its keys and values.
func parseText(line []byte) (map[string]string, error) {
	out := map[string]string{}
	s := string(line)
	for len(s) > 0 {
		eq := -1
		var key string
		if s[0] == '"' {
			k, rest, err := unquotePrefix(s)
			if err != nil {
				return nil, err
			}
			key, s = k, rest
			if len(s) == 0 || s[0] != '=' {
				return nil, fmt.Errorf("no = after key %q", key)
			}
			eq = 0
		} else {
			eq = bytes.IndexByte([]byte(s), '=')
			if eq < 0 {
				return nil, fmt.Errorf("no = in %q", s)
			}
			key = s[:eq]
		}
		s = s[eq+1:]
		var val string
		if len(s) > 0 && s[0] == '"' {
			v, rest, err := unquotePrefix(s)
			if err != nil {
				return nil, err
			}
			val, s = v, rest
		} else {
			sp := bytes.IndexByte([]byte(s), ' ')
			if sp < 0 {
				sp = len(s)
			}
			val, s = s[:sp], s[sp:]
		}
		out[key] = val
		if len(s) > 0 {
			if s[0] != ' ' {
				return nil, fmt.Errorf("no space after %s=%s", key, val)
			}
			s = s[1:]
		}
	}
	return out, nil
}

// unquotePrefix unquotes the Go-quoted string at the start of s.
func unquotePrefix(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

// TestAcceptance is the origin's workload: three nodes log concurrently from
// many goroutines (node 1 Debug, node 2 Info, node 3 Warn). Afterwards every
// node's files are byte-identical, every entry appears exactly once, and
// each goroutine's entries appear in call order.
func TestAcceptance(t *testing.T) {
	perNode := 131072
	if testing.Short() || raceEnabled {
		perNode = 8192
	}
	const goroutines = 16
	c := newTestCluster(t, 3, nil)
	levels := []func(*Logx, string, ...any){(*Logx).Debug, (*Logx).Info, (*Logx).Warn}
	levelNames := []string{"DEBUG", "INFO", "WARN"}

	var wg sync.WaitGroup
	for n, lx := range c.nodes {
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perNode/goroutines; i++ {
					levels[n](lx, "acceptance entry", "g", g, "i", i)
				}
			}()
		}
	}
	wg.Wait()
	c.flushAll()
	total := uint64(3 * perNode)
	require.Equal(t, total, c.waitSameSeq(total))
	hashes := requireIdentical(t, c.dirs(), "app.log")
	t.Logf("%d entries, files: %v", total, hashes)

	lines := readLines(t, c.cfgs[0].Dir, "app.log")
	require.Len(t, lines, int(total))
	type key struct{ node, g string }
	last := map[key]int{}
	seen := map[string]bool{}
	for n, line := range lines {
		kv, err := parseText(line)
		require.NoError(t, err, "line %d: %s", n+1, line)
		require.Equal(t, strconv.Itoa(n+1), kv["seq"], "line %d", n+1)
		id := kv["node"] + "/" + kv["g"] + "/" + kv["i"]
		require.False(t, seen[id], "duplicate entry %s", id)
		seen[id] = true
		node, _ := strconv.Atoi(kv["node"][1:])
		require.Equal(t, levelNames[node-1], kv["level"], "line %d", n+1)
		i, _ := strconv.Atoi(kv["i"])
		k := key{kv["node"], kv["g"]}
		if prev, ok := last[k]; ok {
			require.Equal(t, prev+1, i, "goroutine %v out of order at line %d", k, n+1)
		} else {
			require.Equal(t, 0, i, "goroutine %v starts at %d", k, i)
		}
		last[k] = i
	}
	require.Len(t, last, 3*goroutines)
	for k, i := range last {
		require.Equal(t, perNode/goroutines-1, i, "goroutine %v", k)
	}
	var forwarded uint64
	for _, lx := range c.nodes {
		st := lx.Stats()
		require.Zero(t, st.Failed)
		require.Zero(t, st.AsyncErrors)
		require.Equal(t, uint64(perNode), st.Committed)
		forwarded += st.Forwarded
	}
	require.Positive(t, forwarded, "followers forward their batches")
}
