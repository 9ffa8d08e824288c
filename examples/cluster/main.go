// Command cluster runs a 3-node logx cluster on 127.0.0.1, logs from every
// node at once, and shows that every node ends with the same files:
//
//	go run ./examples/cluster          # three nodes in this process
//	go run ./examples/cluster -procs   # each node in its own process
//	go run ./examples/cluster -tls     # with mutual TLS (test certificates)
//
// Every node logs to two streams: the default one (app.log) and audit
// (JSON, in DIR/nN/streams/audit). It prints each node's files of each
// stream with their sizes and sha256, then "identical" or the first
// difference, and exits 1 if the files differ or anything failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/logx-dev/logx"
	"github.com/logx-dev/logx/logxtls"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	basePort int
	addrs    []string
	dir      string
	entries  int
	maxSize  int64
	format   string
	procs    bool
	tls      bool
	node     int // >= 0 in a child process started by -procs
	timeout  time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.basePort, "base-port", 20001, "port of the first node; the others follow")
	addrs := fs.String("addrs", "", "comma-separated node addresses (overrides -base-port)")
	fs.StringVar(&o.dir, "dir", "", "data directory, new or empty (default: a new directory under the system's temp dir)")
	fs.IntVar(&o.entries, "entries", 20000, "entries each node logs")
	fs.Int64Var(&o.maxSize, "max-size", 1<<20, "rotate log files at this many bytes")
	fs.StringVar(&o.format, "format", "text", "line format: text or json")
	fs.BoolVar(&o.procs, "procs", false, "run each node as its own process")
	fs.BoolVar(&o.tls, "tls", false, "secure the cluster with mutual TLS (a test CA and certificates are written to DIR/certs)")
	fs.IntVar(&o.node, "node", -1, "internal: run only node `i` (used by -procs)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: cluster [flags]\n\nRuns a 3-node logx cluster on 127.0.0.1 and checks that every node's files are identical.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *addrs != "" {
		o.addrs = strings.Split(*addrs, ",")
	} else {
		for i := 0; i < 3; i++ {
			o.addrs = append(o.addrs, "127.0.0.1:"+strconv.Itoa(o.basePort+i))
		}
	}
	if len(o.addrs) != 3 {
		return nil, fmt.Errorf("-addrs: want 3 addresses, got %d", len(o.addrs))
	}
	if o.entries < 1 {
		return nil, fmt.Errorf("-entries: %d is less than 1", o.entries)
	}
	if o.format != "text" && o.format != "json" {
		return nil, fmt.Errorf("-format: %q is neither text nor json", o.format)
	}
	return o, nil
}

// config is node i's logx configuration.
func (o *options) config(i int, logOutput io.Writer) logx.Config {
	f := logx.FormatText
	if o.format == "json" {
		f = logx.FormatJSON
	}
	cfg := logx.Config{
		NodeID:    fmt.Sprintf("n%d", i+1),
		Addr:      o.addrs[i],
		Peers:     o.addrs,
		Dir:       filepath.Join(o.dir, fmt.Sprintf("n%d", i+1)),
		File:      "app.log",
		MaxSize:   o.maxSize,
		Format:    f,
		Level:     logx.LevelDebug,
		LogOutput: logOutput,
		// A second log beside the default one: its own Raft group, files
		// (in Dir/streams/audit) and format.
		Streams: []logx.StreamConfig{{Name: "audit", Format: logx.FormatJSON, MaxSize: o.maxSize}},
	}
	if o.tls {
		certs := filepath.Join(o.dir, "certs")
		cfg.TLSCAFile = filepath.Join(certs, "ca.pem")
		cfg.TLSCertFile = filepath.Join(certs, cfg.NodeID+".pem")
		cfg.TLSKeyFile = filepath.Join(certs, cfg.NodeID+"-key.pem")
	}
	return cfg
}

// writeCerts makes a test CA and the nodes' certificates in DIR/certs,
// naming the hosts of the nodes' addresses.
func writeCerts(o *options) error {
	hosts := map[string]bool{}
	var list []string
	for _, a := range o.addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			return err
		}
		if !hosts[h] {
			hosts[h] = true
			list = append(list, h)
		}
	}
	return logxtls.WriteFiles(filepath.Join(o.dir, "certs"), []string{"n1", "n2", "n3"}, list, 24*time.Hour)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.node >= 0 {
		return runChild(ctx, o, stderr)
	}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "logx-cluster-"); err != nil {
			return err
		}
	} else if ents, err := os.ReadDir(o.dir); err == nil && len(ents) > 0 {
		// The run counts the entries it waits for from zero: on a
		// cluster's data it would compare files before they hold this
		// run's entries (and -procs would find the last run's marks).
		return fmt.Errorf("-dir %s is not empty (a run before left its data there): name a new or empty directory, or leave -dir out", o.dir)
	}
	mode := "in this process"
	if o.procs {
		mode = "one process each"
	}
	if o.tls {
		if err := writeCerts(o); err != nil {
			return fmt.Errorf("writing test certificates: %w", err)
		}
		mode += ", mutual TLS"
	}
	fmt.Fprintf(stdout, "logx example: 3 nodes (%s) on %s, data in %s\n", mode, strings.Join(o.addrs, ", "), o.dir)

	start := time.Now()
	if o.procs {
		err = runProcs(ctx, o, stderr)
	} else {
		err = runInProcess(ctx, o, stderr)
	}
	if err != nil {
		return err
	}
	total := 3 * o.entries
	el := time.Since(start)
	fmt.Fprintf(stdout, "logged %d entries from 3 nodes in %.2fs (%.0f entries/s, including start-up), all written on every node\n\n",
		total, el.Seconds(), float64(total)/el.Seconds())
	return report(stdout, o)
}
