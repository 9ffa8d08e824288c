package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// runSlog measures log/slog's JSON handler writing to a 256 KiB
// bufio.Writer over a local file: the cost of logging without a cluster.
// Workload "async" is 4 goroutines without latencies (like logx async),
// "call" is c.Callers goroutines timing every call.
func runSlog(ctx context.Context, o *options, c *cell) (res runResult, err error) {
	dir, err := os.MkdirTemp("", "logx-bench-slog-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "slog.log"))
	if err != nil {
		return res, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 256<<10)
	log := slog.New(slog.NewJSONHandler(w, nil))
	msgs := messages(msgSeed, msgPoolSize, c.Size)
	for i := 0; i < o.warmup; i++ {
		log.Info(msgs[i%len(msgs)], "i", i)
	}
	if err := w.Flush(); err != nil {
		return res, err
	}
	resetPeakRSS()
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	size0 := fi.Size()

	stop, release := stopAfter(o.duration)
	defer release()
	var next atomic.Int64
	mark := markCPU()
	start := time.Now()
	total, h, _ := drive(c.Callers, &next, int64(o.maxEntries), stop, c.Workload == "call", func(_ int, i int64) error {
		log.Info(msgs[i%int64(len(msgs))], "i", i)
		return nil
	})
	if err := w.Flush(); err != nil {
		return res, err
	}
	el := time.Since(start)
	cpu, _, cpuOK := mark.since()
	if fi, err = f.Stat(); err != nil {
		return res, err
	}
	res.finish(total, el, fi.Size()-size0)
	res.setLatency(&h)
	res.setProcessRSS()
	if cpuOK {
		res.setCPU(cpu, "process")
	}
	if c.Workload == "async" {
		msg := msgs[0]
		a := testing.AllocsPerRun(o.allocRuns, func() { log.Info(msg, "i", 7) })
		res.AllocsPerCall = &a
	}
	return res, ctx.Err()
}

// countFSM is the raft-1 baseline's state machine: it counts entries.
type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any { f.n.Add(1); return nil }

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnapshot(f.n.Load()), nil }

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.n.Store(binary.BigEndian.Uint64(b[:]))
	return nil
}

type countSnapshot uint64

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(s))); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

// raftNode is one server of the raft-1 baseline.
type raftNode struct {
	raft  *raft.Raft
	trans *raft.NetworkTransport
	wal   *wal.WAL
	meta  *metadb.BoltMetaDB
	fsm   *countFSM
}

func (n *raftNode) close() error {
	var errs []error
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	}
	if n.wal != nil {
		errs = append(errs, n.wal.Close())
	}
	if n.meta != nil { // raft-wal's Close leaves its metadata DB open
		errs = append(errs, n.meta.Close())
	}
	return errors.Join(errs...)
}

// startRaftNode opens node i's stores in dir and listens on a free port of
// 127.0.0.1; Raft is started by startRaftCluster once every address is
// known.
func startRaftNode(dir string, i int, logger hclog.Logger) (*raftNode, error) {
	n := &raftNode{fsm: &countFSM{}, meta: &metadb.BoltMetaDB{}}
	d := filepath.Join(dir, fmt.Sprintf("r%d", i+1))
	if err := os.MkdirAll(filepath.Join(d, "raft"), 0o755); err != nil {
		return n, err
	}
	var err error
	if n.wal, err = wal.Open(filepath.Join(d, "raft"), wal.WithLogger(logger), wal.WithMetaStore(n.meta)); err != nil {
		return n, err
	}
	if n.trans, err = raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, logger); err != nil {
		return n, err
	}
	return n, nil
}

// startRaftCluster starts a 3-server hashicorp/raft cluster in this
// process: raft-wal as log and stable store, file snapshots, TCP transport
// on 127.0.0.1, raft.DefaultConfig(), every server bootstrapped with the
// same configuration. It returns the servers, the leader first.
func startRaftCluster(ctx context.Context, dir string) (nodes []*raftNode, err error) {
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: io.Discard, Level: hclog.Off})
	defer func() {
		if err != nil {
			closeRaft(nodes)
			nodes = nil
		}
	}()
	for i := 0; i < 3; i++ {
		n, err := startRaftNode(dir, i, logger)
		nodes = append(nodes, n)
		if err != nil {
			return nodes, err
		}
	}
	var servers []raft.Server
	for _, n := range nodes {
		addr := n.trans.LocalAddr()
		servers = append(servers, raft.Server{ID: raft.ServerID(addr), Address: addr})
	}
	for i, n := range nodes {
		snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, fmt.Sprintf("r%d", i+1)), 2, logger)
		if err != nil {
			return nodes, err
		}
		rc := raft.DefaultConfig()
		rc.LocalID = servers[i].ID
		rc.Logger = logger
		if n.raft, err = raft.NewRaft(rc, n.fsm, n.wal, n.wal, snaps, n.trans); err != nil {
			return nodes, err
		}
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return nodes, fmt.Errorf("bootstrap: %w", err)
		}
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		for k, n := range nodes {
			if n.raft.State() == raft.Leader {
				nodes[0], nodes[k] = nodes[k], nodes[0]
				return nodes, nil
			}
		}
		select {
		case <-ctx.Done():
			return nodes, fmt.Errorf("raft-1: no leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func closeRaft(nodes []*raftNode) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runRaft measures plain Raft: c.Callers goroutines on the leader, each
// raft.Apply of one message, waiting for it to be committed and applied
// on the leader.
func runRaft(ctx context.Context, o *options, c *cell) (res runResult, err error) {
	dir, err := os.MkdirTemp("", "logx-bench-raft-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	nodes, err := startRaftCluster(ctx, dir)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := closeRaft(nodes); err == nil && cerr != nil {
			err = fmt.Errorf("raft-1: closing: %w", cerr)
		}
	}()
	leader := nodes[0].raft
	msgs := make([][]byte, 0, msgPoolSize)
	for _, m := range messages(msgSeed, msgPoolSize, c.Size) {
		msgs = append(msgs, []byte(m))
	}
	for i := 0; i < min(o.warmup, 200); i++ {
		if err := leader.Apply(msgs[i%len(msgs)], 10*time.Second).Error(); err != nil {
			return res, fmt.Errorf("raft-1: warm-up: %w", err)
		}
	}
	resetPeakRSS()
	var next atomic.Int64
	stop, release := stopAfter(o.duration)
	defer release()
	mark := markCPU()
	start := time.Now()
	total, h, err := drive(c.Callers, &next, int64(o.appendMax()), stop, true, func(_ int, i int64) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return leader.Apply(msgs[i%int64(len(msgs))], 10*time.Second).Error()
	})
	el := time.Since(start)
	cpu, _, cpuOK := mark.since()
	if err != nil {
		return res, fmt.Errorf("raft-1: %w", err)
	}
	res.finish(total, el, total*int64(c.Size))
	res.setLatency(&h)
	res.setProcessRSS()
	if cpuOK {
		res.setCPU(cpu, "process")
	}
	return res, ctx.Err()
}
