package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/logx-dev/logx"
	"go.yaml.in/yaml/v3"
)

// nodeFile is what a node's configuration file holds: Config's fields by
// their yaml tags (node_id, addr, listen_addr, peers, dir, streams, ...;
// durations as "1s", format as "text" or "json"), and the node's own.
type nodeFile struct {
	logx.Config `yaml:",inline"`

	// Level is the default stream's level (DEBUG, INFO, WARN, ERROR, or a
	// number); SIGHUP reads it again.
	Level string `yaml:"level"`
	// HTTP is the address of the HTTP server: /metrics, /healthz, /readyz,
	// /status, /ingest and /logs/. Empty: none.
	HTTP string `yaml:"http"`
	// MaxLag is /readyz's bound on the applied index's lag (default 100).
	MaxLag uint64 `yaml:"max_lag"`
	// Ingest serves POST /ingest on HTTP: anyone who reaches the HTTP
	// address can then write into the log. Off by default.
	Ingest bool `yaml:"ingest"`
	// Viewer serves the log viewer (logxview) on HTTP under /logs/:
	// anyone who reaches the HTTP address can then read the whole log.
	// Off by default.
	Viewer bool `yaml:"viewer"`
	// HTTPHosts are the host names operators and shippers reach the HTTP
	// server by (besides IP addresses and localhost, which always do). A
	// request for anything but /metrics, /healthz and /readyz naming
	// another host gets 421 (hostGuard), so that a page on another site
	// cannot point a name of its own at the node (DNS rebinding) and write
	// into the log through /ingest, or read /status and the viewer.
	HTTPHosts []string `yaml:"http_hosts"`
	// ViewerHosts is HTTPHosts's earlier name; both are read.
	ViewerHosts []string `yaml:"viewer_hosts"`
}

// hosts is HTTPHosts with ViewerHosts.
func (nf nodeFile) hosts() []string { return append(slices.Clip(nf.HTTPHosts), nf.ViewerHosts...) }

// readNodeFile decodes a node's configuration file, YAML or JSON; a key
// it does not know is an error.
func readNodeFile(path string) (nodeFile, error) {
	var nf nodeFile
	b, err := os.ReadFile(path)
	if err != nil {
		return nf, err
	}
	// First pass: unknown keys and wrong types, with the file's own line
	// numbers. Format is a number inside logx (it is replicated as one)
	// and the file names it, so its type errors are expected here.
	var check nodeFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&check); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nf, fmt.Errorf("%s: %v", path, err)
		}
		var rest []string
		for _, e := range te.Errors {
			if !strings.Contains(e, "into logx.Format") {
				rest = append(rest, e)
			}
		}
		if len(rest) > 0 {
			return nf, fmt.Errorf("%s: %s", path, strings.Join(rest, "; "))
		}
	}
	// Second pass: the values, from the document tree with format's names
	// turned into numbers; every other scalar keeps its text (010 stays
	// "010" in a string field).
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nf, fmt.Errorf("%s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nf, nil // an empty file
	}
	if err := formatNames(doc.Content[0]); err != nil {
		return nf, fmt.Errorf("%s: %v", path, err)
	}
	if err := doc.Decode(&nf); err != nil {
		return nf, fmt.Errorf("%s: %v", path, err)
	}
	return nf, nil
}

// formatNames replaces the "format" values of the mapping m, and of its
// streams, by their numbers ("text" 0, "json" 1).
func formatNames(m *yaml.Node) error {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for k := 0; k+1 < len(m.Content); k += 2 {
		key, val := m.Content[k], m.Content[k+1]
		switch key.Value {
		case "format":
			if val.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: format: want \"text\" or \"json\"", val.Line)
			}
			switch strings.ToLower(val.Value) {
			case "text", "0":
				val.Value = strconv.Itoa(int(logx.FormatText))
			case "json", "1":
				val.Value = strconv.Itoa(int(logx.FormatJSON))
			default:
				return fmt.Errorf("line %d: format: %q: want \"text\" or \"json\"", val.Line, val.Value)
			}
			val.Tag, val.Style = "!!int", 0
		case "streams":
			for _, s := range val.Content {
				if err := formatNames(s); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// nodeFlags are the flags of logx node; each, when given, overrides the
// file's value.
type nodeFlags struct {
	fs                              *flag.FlagSet
	config, id, addr, listen, peers *string
	dir, file, httpAddr, level      *string
	ca, cert, key, httpHosts        *string
	join, check, ingest, viewer     *bool
}

func newNodeFlags(stderr io.Writer) *nodeFlags {
	fs := newFlags("node", stderr)
	return &nodeFlags{
		fs:        fs,
		config:    fs.String("config", "", "YAML or JSON file of the node's settings (Config's yaml names, plus level, http, max_lag)"),
		id:        fs.String("id", "", "NodeID"),
		addr:      fs.String("addr", "", "Addr: host:port peers dial (an IP address or a DNS name)"),
		listen:    fs.String("listen", "", "ListenAddr: host:port to bind (default -addr), e.g. :20001"),
		peers:     fs.String("peers", "", "Peers: every node's Addr, comma-separated"),
		dir:       fs.String("dir", "", "Dir: the node's data directory"),
		file:      fs.String("file", "", "File: the active log file's name"),
		httpAddr:  fs.String("http", "", "address of the HTTP server (/metrics, /healthz, /readyz, /status, /ingest)"),
		httpHosts: fs.String("http-hosts", "", "http_hosts: the host names operators reach -http by, comma-separated (IP addresses and localhost always do)"),
		level:     fs.String("level", "", "the default stream's level (SIGHUP reads the file's again)"),
		ca:        fs.String("ca", "", "TLSCAFile: PEM file of the cluster's CA (with -cert and -key: mutual TLS)"),
		cert:      fs.String("cert", "", "TLSCertFile: PEM file of this node's certificate"),
		key:       fs.String("key", "", "TLSKeyFile: PEM file of this node's private key"),
		join:      fs.Bool("join", false, "Join: wait to be added to a running cluster"),
		ingest:    fs.Bool("ingest", false, "serve POST /ingest on -http (anyone who reaches it can write into the log)"),
		viewer:    fs.Bool("viewer", false, "serve the log viewer on -http under /logs/ (anyone who reaches it can read the log)"),
		check:     fs.Bool("check", false, "check the settings and exit: 0 if a node could start with them"),
	}
}

// settings merges the file (if any) and the flags given.
func (f *nodeFlags) settings() (nodeFile, error) {
	var nf nodeFile
	if *f.config != "" {
		var err error
		if nf, err = readNodeFile(*f.config); err != nil {
			return nf, err
		}
	}
	var err error
	f.fs.Visit(func(fl *flag.Flag) {
		v := fl.Value.String()
		switch fl.Name {
		case "id":
			nf.NodeID = v
		case "addr":
			nf.Addr = v
		case "listen":
			nf.ListenAddr = v
		case "peers":
			nf.Peers = nil
			for p := range strings.SplitSeq(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					nf.Peers = append(nf.Peers, p)
				}
			}
		case "dir":
			nf.Dir = v
		case "file":
			nf.File = v
		case "http":
			nf.HTTP = v
		case "http-hosts":
			nf.HTTPHosts, nf.ViewerHosts = nil, nil
			for h := range strings.SplitSeq(v, ",") {
				if h = strings.TrimSpace(h); h != "" {
					nf.HTTPHosts = append(nf.HTTPHosts, h)
				}
			}
		case "level":
			nf.Level = v
		case "ca":
			nf.TLSCAFile = v
		case "cert":
			nf.TLSCertFile = v
		case "key":
			nf.TLSKeyFile = v
		case "join":
			nf.Join = *f.join
		case "ingest":
			nf.Ingest = *f.ingest
		case "viewer":
			nf.Viewer = *f.viewer
		}
	})
	if nf.Level != "" {
		var lv slog.Level
		if lv, err = logx.ParseLevel(nf.Level); err != nil {
			return nf, fmt.Errorf("level: %v", err)
		}
		nf.Config.Level = lv
	}
	if err := nf.Validate(); err != nil {
		return nf, err
	}
	return nf, nf.startable()
}

// startable checks what Validate cannot and a start would meet: the
// addresses to bind, the TLS files, the data directory.
func (nf nodeFile) startable() error {
	if nf.HTTP != "" {
		if _, err := net.ResolveTCPAddr("tcp", nf.HTTP); err != nil {
			return fmt.Errorf("http: %v", err)
		}
	} else if nf.Ingest {
		return errors.New("ingest needs http")
	} else if nf.Viewer {
		return errors.New("viewer needs http")
	}
	if nf.ListenAddr != "" {
		if _, err := net.ResolveTCPAddr("tcp", nf.ListenAddr); err != nil {
			return fmt.Errorf("listen_addr: %v", err)
		}
	}
	if nf.TLSCAFile != "" {
		if _, err := logx.LoadTLS(nf.TLSCAFile, nf.TLSCertFile, nf.TLSKeyFile); err != nil {
			return err
		}
	}
	// Dir is made at start: it, or the nearest directory above it that
	// exists, must be a directory.
	for d := filepath.Clean(nf.Dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("dir: %s is not a directory", d)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dir: %v", err)
		}
		if filepath.Dir(d) == d {
			return fmt.Errorf("dir: no directory above %s exists", nf.Dir)
		}
	}
}

const nodeUsage = "usage: logx node [-config FILE] [-id ID -addr HOST:PORT -peers A,B,C -dir DIR] [-listen HOST:PORT] [-http HOST:PORT [-ingest] [-viewer]] [-level L] [-join] [-ca F -cert F -key F] [-check]"

// cmdNode runs a standalone node until SIGTERM or SIGINT: it closes
// cleanly (pending entries committed, leadership handed over) and exits 0.
// SIGHUP reads the configuration file again and applies its level.
func cmdNode(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	stderr = termSafeWriter{stderr} // the node's diagnostics quote its peers
	f := newNodeFlags(stderr)
	if f.fs.Parse(args) != nil || f.fs.NArg() != 0 {
		fmt.Fprintln(stderr, nodeUsage)
		return 2
	}
	nf, err := f.settings()
	if err != nil {
		return fail(stderr, "node: %v", err)
	}
	if *f.check {
		fmt.Fprintf(stdout, "ok: node %s at %s, %d peers, dir %s, %d streams\n", nf.NodeID, nf.Addr, len(nf.Peers), nf.Dir, len(nf.Streams))
		return 0
	}
	nf.LogOutput = stderr
	var level slog.LevelVar
	if nf.Config.Level != nil {
		level.Set(nf.Config.Level.Level())
	}
	nf.Config.Level = &level

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// The HTTP address first: a port that cannot be bound stops the start
	// before the node joins its cluster.
	var httpLn net.Listener
	if nf.HTTP != "" {
		if httpLn, err = net.Listen("tcp", nf.HTTP); err != nil {
			return fail(stderr, "node: http: %v", err)
		}
	}
	lx, err := logx.New(nf.Config)
	if err != nil {
		if httpLn != nil {
			httpLn.Close()
		}
		return fail(stderr, "node: %v", err)
	}
	// Requests end when the node closes: reqCtx is every request's base.
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	defer cancelReqs()
	var srv *http.Server
	var in *ingester
	srvDone := make(chan error, 1)
	if httpLn != nil {
		if nf.Ingest {
			if in, err = newIngester(lx, nf); err != nil {
				httpLn.Close()
				lx.Close()
				return fail(stderr, "node: ingest: %v", err)
			}
		}
		srv = &http.Server{Handler: nodeHandler(lx, nf, in), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: log.New(stderr, "", log.LstdFlags),
			BaseContext: func(net.Listener) context.Context { return reqCtx }}
		ll := newLimitListener(httpLn, maxHTTPConns, stderr)
		srv.ConnState = ll.connState
		go func() { srvDone <- srv.Serve(ll) }()
	}
	fmt.Fprintf(stderr, "logx node %s: serving %s (listening on %s), data in %s\n", nf.NodeID, nf.Addr, cmp.Or(nf.ListenAddr, nf.Addr), nf.Dir)

	status := 0
	signalled := 0 // 1 once a SIGTERM or SIGINT began the close
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-srvDone:
			fmt.Fprintf(stderr, "logx node %s: http server stopped: %v\n", nf.NodeID, err)
			status = 1
			break loop
		case s := <-sigs:
			if s != syscall.SIGHUP {
				signalled = 1
				break loop
			}
			reload(f, lx, &level, nf.NodeID, stderr)
		}
	}
	fmt.Fprintf(stderr, "logx node %s: closing\n", nf.NodeID)
	go exitOnSecondSignal(sigs, 2-signalled, stderr, nf.NodeID, os.Exit)
	if srv != nil {
		// Requests waiting for a turn give up now, and the viewer's live
		// tails end; an /ingest request committing goes on to its last
		// line (node_ingest.go), within ingestTimeout, which Shutdown
		// waits for.
		cancelReqs()
		sctx, cancel := context.WithTimeout(context.Background(), ingestTimeout+5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		if in != nil {
			in.close()
		}
	}
	if err := lx.Close(); err != nil {
		fmt.Fprintf(stderr, "logx node %s: close: %v\n", nf.NodeID, err)
		return 1
	}
	fmt.Fprintf(stderr, "logx node %s: closed\n", nf.NodeID)
	return status
}

// exitOnSecondSignal exits at a second SIGTERM or SIGINT, the n-th while
// the node closes (1 when one began the close), which can take
// CloseTimeout and more (a leader handing over, a peer that does not
// answer): an operator's second Ctrl-C is not lost. What the node
// acknowledged is in its Raft log; the next start replays it into the
// files.
func exitOnSecondSignal(sigs <-chan os.Signal, n int, stderr io.Writer, id string, exit func(int)) {
	for s := range sigs {
		if s == syscall.SIGHUP {
			continue
		}
		if n--; n <= 0 {
			fmt.Fprintf(stderr, "logx node %s: %v while closing: exiting now\n", id, s)
			exit(1)
			return
		}
	}
}

// reload applies what SIGHUP can change: the TLS files (loaded again if
// they changed; the node also notices by itself within a few seconds, and
// /ingest's Clients follow the files by themselves) and the level. Other settings need a restart; the file is checked all the
// same, so an error shows now.
func reload(f *nodeFlags, lx *logx.Logx, level *slog.LevelVar, id string, stderr io.Writer) {
	if err := lx.ReloadTLS(); err != nil {
		fmt.Fprintf(stderr, "logx node %s: SIGHUP: TLS files: %v; the certificates in use stay\n", id, err)
	}
	nf, err := f.settings()
	if err != nil {
		fmt.Fprintf(stderr, "logx node %s: SIGHUP: %v; the level stays\n", id, err)
		return
	}
	if nf.Config.Level != nil && nf.Config.Level.Level() != level.Level() {
		fmt.Fprintf(stderr, "logx node %s: SIGHUP: level %v -> %v\n", id, level.Level(), nf.Config.Level.Level())
		level.Set(nf.Config.Level.Level())
		return
	}
	fmt.Fprintf(stderr, "logx node %s: SIGHUP: level unchanged (only the level and the TLS files change without a restart)\n", id)
}
