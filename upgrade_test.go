package logx

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// Versions a cluster may be upgraded from, one node at a time: the first
// complete release, the main that streams (issue 12) started from, the
// main before BLAKE3 checksums, the main before retention commands and
// the main before apply rules, with the FeatureVersion each reports (0:
// none).
var upgradeFrom = []struct {
	name, commit string
	features     int
}{
	{"v0.1.0", "7fdb7d4", 0},
	{"pre-streams", "2f686b5", 0},
	{"pre-checksums", "97cba0e", 3},
	{"pre-retention", "2bba395", 4},
	{"pre-rules", "1ed6e5f", 5},
}

// buildVersion builds the test binary of this package at commit (its node
// process, helperMain, speaks the same protocol) in a temporary git
// worktree. It skips the test where the clone has no history.
func buildVersion(t *testing.T, commit string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git: cannot build earlier versions")
	}
	if out, err := exec.Command("git", "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("commit %s is not in this clone (a shallow clone?): %s", commit, out)
	}
	wt := filepath.Join(t.TempDir(), "src")
	out, err := exec.Command("git", "worktree", "add", "--detach", wt, commit).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command("git", "worktree", "remove", "--force", wt).Run() })
	bin := filepath.Join(t.TempDir(), "logx-"+commit+".test")
	cmd := exec.Command("go", "test", "-c", "-o", bin, ".")
	cmd.Dir = wt
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "building %s: %s", commit, out)
	return bin
}

// TestRollingUpgrade starts a 3-process cluster of an earlier version and
// upgrades it one node at a time to this one while every node logs with
// Append: stop (a clean close), start this version on the same Dir, on to
// the next. The cluster runs mixed for most of the test. At the end no
// acknowledged entry is lost or doubled and the files are identical. A new
// node's clock reports and settings entries, which earlier versions do not
// know, are skipped by them the same way on every node and write no line
// (docs/guarantees.md, "Upgrades").
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two earlier versions: not with -short")
	}
	for _, v := range upgradeFrom {
		t.Run(v.name, func(t *testing.T) {
			old := buildVersion(t, v.commit)
			c := newProcCluster(t, 3, 2, 0)
			c.env = append(c.env, "LOGX_INTERVAL_MS=5")
			c.bins = []string{old, old, old}
			for i := range 3 {
				c.start(i, c.writers)
			}
			for i := range 3 {
				c.waitStatus(i, "progress", func(s procStatus) bool { return s.seq > 100 })
			}
			for i := range 3 {
				before := c.status((i + 1) % 3).seq
				c.stop(i)
				c.bins[i] = ""
				c.start(i, c.writers)
				c.waitStatus(i, "upgraded and logging", func(s procStatus) bool { return s.seq > before+300 })
				t.Logf("n%d runs this version", i+1)
				if i < 2 {
					// Mixed: the upgraded nodes keep apply rules 0, which
					// the older nodes follow (rules.go).
					for j := 0; j <= i; j++ {
						st, err := QueryStatus(t.Context(), c.addrs[j])
						require.NoError(t, err)
						require.Zero(t, st.Rules, "n%d while n%d runs %s", j+1, 3, v.name)
					}
					// Mixed: the upgraded nodes keep sha256 checksums,
					// which the older nodes can check (sums.go).
					for j := 0; j <= i && v.features < sumsFeature; j++ {
						st, err := QueryStatus(t.Context(), c.addrs[j])
						require.NoError(t, err)
						require.Equal(t, "sha256", st.Checksum, "n%d while n%d runs %s", j+1, 3, v.name)
					}
					// A retention command, which the older nodes would
					// skip (keeping the files the others retire), is
					// refused by an older leader or by a newer one
					// naming the older member.
					if v.features >= retentionFeature {
						continue // it knows retention commands
					}
					err := setRetentionVia(t, c.addrs)
					require.Error(t, err, "a retention command while n%d runs %s", 3, v.name)
					if !strings.Contains(err.Error(), `unknown control operation "set-retention"`) {
						require.ErrorContains(t, err, "without retention commands")
					}
					if v.features >= clusterCmdsFeature {
						continue // it knows streams and cluster levels
					}
					// Mixed: a stream, which the older nodes would skip,
					// is refused, whichever node leads.
					err = createStreamVia(t, c.addrs, "audit")
					require.Error(t, err, "a stream created while n%d runs %s", 3, v.name)
					// Refused by an older leader, or by a newer one naming
					// the older voter; not any error.
					if !strings.Contains(err.Error(), `unknown control operation "create-stream"`) {
						require.ErrorContains(t, err, "runs a logx without streams")
					}
					t.Logf("creating a stream in the mixed cluster: %v", err)
					// A cluster level too: the older nodes would skip it.
					err = setLevelVia(t, c.addrs, LevelWarn)
					require.Error(t, err, "a cluster level set while n%d runs %s", 3, v.name)
					if !strings.Contains(err.Error(), `unknown control operation "set-level"`) {
						require.ErrorContains(t, err, "runs a logx without level commands")
					}
					t.Logf("setting the cluster level in the mixed cluster: %v", err)
				}
			}
			require.NoError(t, createStreamVia(t, c.addrs, "audit"), "a stream once every node is upgraded")
			require.NoError(t, setLevelVia(t, c.addrs, LevelInfo), "a cluster level once every node is upgraded")
			require.NoError(t, setRetentionVia(t, c.addrs), "a retention command once every node is upgraded")
			for _, a := range c.addrs {
				require.Eventually(t, func() bool {
					all, err := QueryStreams(t.Context(), a, nil)
					return err == nil && len(all) == 2
				}, 30*time.Second, 50*time.Millisecond, "%s does not hold the new stream", a)
			}
			// Every node upgraded: every stream takes apply rules 1.
			for _, a := range c.addrs {
				require.Eventually(t, func() bool {
					all, err := QueryStreams(t.Context(), a, nil)
					if err != nil || len(all) != 2 {
						return false
					}
					for _, st := range all {
						if st.Rules != currentRules {
							return false
						}
					}
					return true
				}, 60*time.Second, 50*time.Millisecond, "%s: a stream without apply rules %d", a, currentRules)
			}
			// Every node upgraded: each goes over to the faster hash.
			for _, a := range c.addrs {
				require.Eventually(t, func() bool {
					st, err := QueryStatus(t.Context(), a)
					return err == nil && st.Checksum == store.Faster().String()
				}, 30*time.Second, 50*time.Millisecond, "%s does not name %v checksums", a, store.Faster())
			}
			n, acked := c.finish()
			t.Logf("upgraded from %s (%s): %d entries, %d acknowledged, identical", v.name, v.commit, n, acked)
		})
	}
}

// setLevelVia sets the default stream's cluster level through whichever
// node answers, as `logx level` does.
func setLevelVia(t *testing.T, addrs []string, l slog.Level) error {
	t.Helper()
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		for _, a := range addrs {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			last = SetClusterLevel(ctx, a, DefaultStream, l, nil)
			cancel()
			if last == nil || !strings.Contains(last.Error(), "leader") {
				return last
			}
		}
		time.Sleep(100 * time.Millisecond) // no leader known at the moment: ask again
	}
	return last
}

// setRetentionVia sets the default stream's retention to no limit through
// whichever node answers, as `logx retention` does.
func setRetentionVia(t *testing.T, addrs []string) error {
	t.Helper()
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		for _, a := range addrs {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			last = SetRetention(ctx, a, DefaultStream, 0, 0, nil)
			cancel()
			if last == nil || !strings.Contains(last.Error(), "leader") {
				return last
			}
		}
		time.Sleep(100 * time.Millisecond) // no leader known at the moment: ask again
	}
	return last
}

// createStreamVia asks the cluster at addrs, as a control client, to
// create the stream name, following the nodes' leader hints.
func createStreamVia(t *testing.T, addrs []string, name string) error {
	t.Helper()
	spec := specOf(StreamConfig{Name: name})
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		for _, a := range addrs {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			conn, err := dialProto(ctx, a, "", wire.ProtoControl, 10*time.Second, nil)
			if err != nil {
				cancel()
				last = err
				continue
			}
			resp, err := controlExchange(ctx, conn, controlRequest{Op: "create-stream", Stream: &spec, TimeoutMS: 10000}, time.Now().Add(20*time.Second))
			conn.Close()
			cancel()
			switch {
			case err != nil:
				last = err
			case resp.NotLeader:
				last = resp.err()
			default:
				return resp.err()
			}
		}
		time.Sleep(100 * time.Millisecond) // no leader known at the moment: ask again
	}
	return fmt.Errorf("no leader answered: %w", last)
}
