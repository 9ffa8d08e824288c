package logx

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitSettings waits until every running node knows the cluster's settings.
func (c *testCluster) waitSettings() {
	c.t.Helper()
	require.True(c.t, waitFor(20*time.Second, func() bool {
		for _, lx := range c.nodes {
			if lx != nil && lx.fsm.settings.Load() == nil {
				return false
			}
		}
		return true
	}), "the cluster's settings were not recorded")
}

func requireConfigError(t *testing.T, err error, field string) {
	t.Helper()
	var ce *ConfigError
	require.True(t, errors.As(err, &ce), "want a *ConfigError, got %v", err)
	require.Equal(t, field, ce.Field, "%v", err)
}

// TestSettingsMismatch: the cluster's settings are recorded in the log. A
// node restarted with another MaxSize, Format or File refuses to start
// with an error naming the field; one that leaves them zero takes the
// cluster's; a new node that disagrees cannot be added; a wiped node that
// disagrees stops applying with the error.
func TestSettingsMismatch(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.MaxSize = 32 << 10
		cfg.RotateEvery = time.Hour
		cfg.MaxFiles = 50
	})
	c.waitSettings()
	c.logAppend("before", 20)
	want := settingsOf(c.cfgs[0])
	require.Equal(t, want, *c.nodes[1].fsm.settings.Load())

	c.stop(2)
	for field, tweak := range map[string]func(*Config){
		"MaxSize":     func(cfg *Config) { cfg.MaxSize = 64 << 10 },
		"Format":      func(cfg *Config) { cfg.Format = FormatJSON },
		"File":        func(cfg *Config) { cfg.File = "other.log" },
		"RotateEvery": func(cfg *Config) { cfg.RotateEvery = time.Minute },
		"DedupWindow": func(cfg *Config) { cfg.DedupWindow = time.Hour },
	} {
		cfg := c.cfgs[2]
		tweak(&cfg)
		_, err := New(cfg)
		requireConfigError(t, err, field)
	}
	// Zero: the cluster's.
	cfg := c.cfgs[2]
	cfg.MaxSize, cfg.RotateEvery, cfg.MaxFiles, cfg.File = 0, 0, 0, ""
	lx, err := New(cfg)
	require.NoError(t, err)
	require.Equal(t, int64(32<<10), lx.cfg.MaxSize)
	require.Equal(t, "app.log", lx.cfg.File)
	require.Equal(t, 50, lx.cfg.MaxFiles)
	c.nodes[2] = lx
	c.waitReady()
	c.logAppend("after", 20)
	c.flushAll()
	c.waitSameSeq(120)
	requireIdentical(t, c.dirs(), "app.log")

	// A new node that disagrees is not added.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ncfg := testConfig(t, 3, append(freeAddrs(t, 1), c.cfgs[0].Peers...), filepath.Join(t.TempDir(), "n4"))
	ncfg.Addr, ncfg.Peers, ncfg.Join, ncfg.NodeID = ncfg.Peers[0], c.cfgs[0].Peers, true, "n4"
	ncfg.MaxFiles = 7 // not compared: the cluster's holds
	ncfg.MaxSize = 64 << 10
	n4, err := New(ncfg)
	require.NoError(t, err)
	defer n4.Close()
	err = c.nodes[0].AddNode(ctx, ncfg.Addr)
	require.ErrorContains(t, err, "MaxSize")
	require.Len(t, members(t, c.nodes[0]), 3)

	// A wiped node that disagrees learns the settings from the log and
	// stops with the error, writing nothing.
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	cfg = c.cfgs[2]
	cfg.RotateEvery = time.Minute
	cfg.DedupWindow = 2 * want.DedupWindow
	lx, err = New(cfg)
	require.NoError(t, err)
	defer lx.Close()
	require.True(t, waitFor(20*time.Second, func() bool { return lx.Stats().WriteError != "" }))
	require.Contains(t, lx.Stats().WriteError, "RotateEvery")
	require.Zero(t, lx.Stats().Seq)
	// Its Appends still go through the leader: they are tried for no
	// longer than the cluster remembers their producer (it took its
	// Config's window, and a late try could be written twice).
	require.Equal(t, want.DedupWindow, lx.Stats().DedupWindow)
}

// TestSettingsAdoptFile: a node whose File is left zero, starting empty,
// TestSettingsShortWindow: a cluster whose DedupWindow is under twice the
// default ForwardTimeout (allowed with a shorter ForwardTimeout) records
// its settings. (Every node refused them, checked against the default's
// 10 s: they were never recorded, and the leader proposed them again
// before every batch it committed.)
func TestSettingsShortWindow(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.ForwardTimeout = 500 * time.Millisecond
		cfg.DedupWindow = 2 * time.Second
	})
	c.logAppend("short", 3)
	c.waitSettings()
	for _, lx := range c.nodes {
		require.Equal(t, 2*time.Second, lx.dedupWindow())
	}
	require.NoError(t, clusterSettings{File: "a.log", MaxSize: 1 << 20, DedupWindow: time.Second}.check())
	err := clusterSettings{File: "a.log", MaxSize: 1 << 20, DedupWindow: time.Second - 1}.check()
	requireConfigError(t, err, "DedupWindow") // a window that would cut every try short
	require.ErrorContains(t, err, "less than 1s")
	cfg := c.cfgs[0]
	cfg.DedupWindow, cfg.ForwardTimeout = 999*time.Millisecond, time.Millisecond
	requireConfigError(t, cfg.Validate(), "DedupWindow")
}

// writes under the cluster's file name.
func TestSettingsAdoptFile(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	c.waitSettings()
	c.logAppend("before", 10)
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	c.cfgs[2].File = ""
	c.start(2)
	c.waitReady()
	c.logAppend("after", 10)
	c.flushAll()
	c.waitSameSeq(60)
	require.Equal(t, "app.log", c.nodes[2].fsm.file)
	requireIdentical(t, c.dirs(), "app.log")
	names, err := LogFiles(c.cfgs[2].Dir, "logx.log")
	require.NoError(t, err)
	require.Empty(t, names, "nothing under the default name")
}

// TestUpgradedCheckpoint: nodes whose checkpoints come from the first
// release (no voters, clocks or settings recorded) and whose Raft log was
// compacted past every configuration entry get them again: the leader
// commits its configuration again and records the settings, and the log
// clock runs.
func TestUpgradedCheckpoint(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	c.logAppend("before", 10)
	c.flushAll()
	c.snapshotAll()
	for i := range c.nodes {
		c.stop(i)
	}
	for _, cfg := range c.cfgs {
		st, ok, err := readState(cfg.Dir)
		require.NoError(t, err)
		require.True(t, ok)
		st.Voters, st.Clocks, st.ClockOwners, st.Clock, st.Settings = nil, nil, nil, 0, nil
		require.NoError(t, writeState(cfg.Dir, &st, nil))
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.waitReady()
	c.logAppend("after", 10)
	c.waitSettings()
	require.True(t, waitFor(30*time.Second, func() bool {
		for _, lx := range c.nodes {
			if !lx.fsm.votersAreKnown() || lx.Stats().LogClock.IsZero() {
				return false
			}
		}
		return true
	}), "voters and the log clock are known again")
	c.flushAll()
	c.waitSameSeq(60)
	requireIdentical(t, c.dirs(), "app.log")
}
