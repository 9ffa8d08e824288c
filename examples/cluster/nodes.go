package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logx-dev/logx"
)

// runInProcess runs the three nodes in this process.
func runInProcess(ctx context.Context, o *options, stderr io.Writer) error {
	var nodes []*logx.Logx
	defer func() {
		for _, lx := range nodes {
			lx.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		out, err := messagesFile(o, i)
		if err != nil {
			return err
		}
		defer out.Close()
		lx, err := logx.New(o.config(i, out))
		if err != nil {
			return fmt.Errorf("starting node %d: %w", i+1, err)
		}
		nodes = append(nodes, lx)
	}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, lx := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = runNode(ctx, lx, o.entries, 3*o.entries)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var cerrs []error
	for _, lx := range nodes {
		cerrs = append(cerrs, lx.Close())
	}
	nodes = nil
	return errors.Join(cerrs...)
}

// messagesFile opens the file that receives node i's Raft messages, so the
// example's own output stays short.
func messagesFile(o *options, i int) (*os.File, error) {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(o.dir, fmt.Sprintf("n%d.messages", i+1)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

// runChild is one node of -procs: start, log, wait for the whole log, close.
func runChild(ctx context.Context, o *options, stderr io.Writer) error {
	out, err := messagesFile(o, o.node)
	if err != nil {
		return err
	}
	defer out.Close()
	lx, err := logx.New(o.config(o.node, out))
	if err != nil {
		return err
	}
	err = runNode(ctx, lx, o.entries, 3*o.entries)
	if err == nil {
		// Stay up until every node has the whole log: a node that leaves
		// early could take the quorum the last one still needs.
		err = barrier(ctx, o, o.node)
	}
	if cerr := lx.Close(); err == nil {
		err = cerr
	}
	return err
}

// barrier marks node i as complete and waits until all three are.
func barrier(ctx context.Context, o *options, i int) error {
	mark := func(k int) string { return filepath.Join(o.dir, fmt.Sprintf("n%d.complete", k+1)) }
	if err := os.WriteFile(mark(i), nil, 0o644); err != nil {
		return err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for k := 0; k < 3; k++ {
		for {
			if _, err := os.Stat(mark(k)); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for node %d to complete: %w", k+1, ctx.Err())
			case <-t.C:
			}
		}
	}
	return nil
}

// runProcs starts one child process per node and waits for all of them.
func runProcs(ctx context.Context, o *options, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		cmd := exec.CommandContext(ctx, exe,
			"-node", strconv.Itoa(i), "-dir", o.dir, "-addrs", strings.Join(o.addrs, ","),
			"-entries", strconv.Itoa(o.entries), "-max-size", strconv.FormatInt(o.maxSize, 10),
			"-format", o.format, "-timeout", o.timeout.String(), "-tls="+strconv.FormatBool(o.tls))
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("node %d (pid %d): %v: %s", i+1, cmd.Process.Pid, err, strings.TrimSpace(buf.String()))
				cancel() // the others cannot finish without it
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runNode waits for a leader, logs n entries from four goroutines with every
// kind of call (every hundredth also goes to the audit stream), flushes,
// and waits until this node's files hold every node's entries: total in
// the default stream.
func runNode(ctx context.Context, lx *logx.Logx, n, total int) error {
	if err := lx.WaitReady(ctx); err != nil {
		return err
	}
	audit, err := lx.Stream("audit")
	if err != nil {
		return err
	}
	const writers = 4
	auditTotal := 0 // every node logs as many
	for w := 0; w < writers; w++ {
		count := n / writers
		if w == 0 {
			count += n % writers
		}
		auditTotal += 3 * ((count + 99) / 100)
	}
	log := slog.New(lx.Handler())
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		count := n / writers
		if w == 0 {
			count += n % writers
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < count; i++ {
				switch {
				case i%100 == 0: // synchronous: returns after commit
					if _, err := lx.Append(ctx, logx.LevelInfo, "order placed", "writer", w, "i", i, "total", 12.5); err != nil {
						errs[w] = err
						return
					}
					if _, err := audit.Append(ctx, logx.LevelWarn, "refund approved", "writer", w, "i", i, "by", "admin"); err != nil {
						errs[w] = err
						return
					}
				case i%10 == 1:
					log.Info("request served", "writer", w, "i", i, slog.Group("http", "method", "GET", "status", 200))
				case i%10 == 2:
					lx.Warn("slow query", "writer", w, "i", i, "took", 120*time.Millisecond)
				case i%10 == 3:
					lx.Debug("cache miss", "writer", w, "i", i, "key", "user:"+strconv.Itoa(i))
				default:
					lx.Info("user signed in", "writer", w, "i", i, "user", i*7)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := lx.Flush(ctx); err != nil {
		return err
	}
	// Wait for the other nodes' entries too.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for lx.Stats().Seq < uint64(total) || audit.Stats().Seq < uint64(auditTotal) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the whole log (%d of %d entries, audit %d of %d): %w",
				lx.Stats().Seq, total, audit.Stats().Seq, auditTotal, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
