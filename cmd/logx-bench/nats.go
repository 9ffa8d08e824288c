package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// natsCell is one line of the NATS benchmark's -json output: a cell's
// medians (benchmarks/nats's jsonCell; the two modules share no code, so
// keep the two in step).
type natsCell struct {
	Size          int     `json:"size"`
	Callers       int     `json:"callers"`
	EntriesPerSec float64 `json:"entries_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	Entries       int64   `json:"entries"`
	Seconds       float64 `json:"seconds"`
	P50           float64 `json:"p50_ms"`
	P99           float64 `json:"p99_ms"`
	P999          float64 `json:"p999_ms"`
}

// checkNATS says whether path can be the NATS benchmark's binary.
func checkNATS(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("-nats: %w (build it with: cd benchmarks/nats && go build -o %s .)", err, path)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("-nats: %s is not an executable file", path)
	}
	return nil
}

// runNATS measures one nats-js cell: synchronous publishing from c.Callers
// callers to a fresh 3-node JetStream cluster, by running the NATS
// benchmark's binary (its own module, so that logx never depends on NATS)
// for that one cell.
func runNATS(ctx context.Context, o *options, c *cell) (runResult, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, o.nats, "-json", "-async=false", "-count", "1",
		"-sizes", strconv.Itoa(c.Size), "-callers", strconv.Itoa(c.Callers),
		"-duration", o.duration.String(), "-max-entries", strconv.Itoa(o.maxEntries))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return runResult{}, fmt.Errorf("%s: %w: %s", o.nats, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parseNATS(stdout.Bytes(), c)
}

// parseNATS reads the cell c from the NATS benchmark's -json output.
func parseNATS(out []byte, c *cell) (runResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var n natsCell
		if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
			return runResult{}, fmt.Errorf("nats output %q: %w", sc.Bytes(), err)
		}
		if n.Size != c.Size || n.Callers != c.Callers {
			continue
		}
		if n.Entries <= 0 || n.Seconds <= 0 {
			return runResult{}, fmt.Errorf("nats output %q: no messages measured", sc.Bytes())
		}
		res := runResult{Entries: n.Entries, Seconds: n.Seconds, EntriesPerSec: n.EntriesPerSec,
			FileBytes: n.Entries * int64(n.Size), MBPerSec: n.MBPerSec,
			P50: ptr(n.P50), P99: ptr(n.P99), P999: ptr(n.P999)}
		return res, nil
	}
	return runResult{}, errors.New("nats output has no line for this cell")
}
