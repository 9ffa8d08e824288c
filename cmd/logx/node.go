package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/logx-dev/logx"
	"github.com/logx-dev/logx/logxprom"
	"github.com/prometheus/client_golang/prometheus"
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
	// /status and /ingest. Empty: none.
	HTTP string `yaml:"http"`
	// MaxLag is /readyz's bound on the applied index's lag (default 100).
	MaxLag uint64 `yaml:"max_lag"`
}

// readNodeFile decodes a node's configuration file, YAML or JSON; a key
// it does not know is an error.
func readNodeFile(path string) (nodeFile, error) {
	var nf nodeFile
	b, err := os.ReadFile(path)
	if err != nil {
		return nf, err
	}
	// Format is a number inside logx (it is replicated as one); the file
	// says "text" or "json".
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nf, fmt.Errorf("%s: %v", path, err)
	}
	if err := formatNames(raw); err != nil {
		return nf, fmt.Errorf("%s: %v", path, err)
	}
	if streams, ok := raw["streams"].([]any); ok {
		for _, s := range streams {
			if m, ok := s.(map[string]any); ok {
				if err := formatNames(m); err != nil {
					return nf, fmt.Errorf("%s: streams: %v", path, err)
				}
			}
		}
	}
	if b, err = yaml.Marshal(raw); err != nil {
		return nf, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&nf); err != nil && !errors.Is(err, io.EOF) {
		return nf, fmt.Errorf("%s: %v", path, err)
	}
	return nf, nil
}

// formatNames replaces a "format" of "text" or "json" in m by its number.
func formatNames(m map[string]any) error {
	v, ok := m["format"]
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("format: %v: want \"text\" or \"json\"", v)
	}
	switch strings.ToLower(s) {
	case "text":
		m["format"] = int(logx.FormatText)
	case "json":
		m["format"] = int(logx.FormatJSON)
	default:
		return fmt.Errorf("format: %q: want \"text\" or \"json\"", s)
	}
	return nil
}

// nodeFlags are the flags of logx node; each, when given, overrides the
// file's value.
type nodeFlags struct {
	fs                              *flag.FlagSet
	config, id, addr, listen, peers *string
	dir, file, httpAddr, level      *string
	ca, cert, key                   *string
	join, check                     *bool
}

func newNodeFlags(stderr io.Writer) *nodeFlags {
	fs := newFlags("node", stderr)
	return &nodeFlags{
		fs:       fs,
		config:   fs.String("config", "", "YAML or JSON file of the node's settings (Config's yaml names, plus level, http, max_lag)"),
		id:       fs.String("id", "", "NodeID"),
		addr:     fs.String("addr", "", "Addr: host:port peers dial (an IP address or a DNS name)"),
		listen:   fs.String("listen", "", "ListenAddr: host:port to bind (default -addr), e.g. :20001"),
		peers:    fs.String("peers", "", "Peers: every node's Addr, comma-separated"),
		dir:      fs.String("dir", "", "Dir: the node's data directory"),
		file:     fs.String("file", "", "File: the active log file's name"),
		httpAddr: fs.String("http", "", "address of the HTTP server (/metrics, /healthz, /readyz, /status, /ingest)"),
		level:    fs.String("level", "", "the default stream's level (SIGHUP reads the file's again)"),
		ca:       fs.String("ca", "", "TLSCAFile: PEM file of the cluster's CA (with -cert and -key: mutual TLS)"),
		cert:     fs.String("cert", "", "TLSCertFile: PEM file of this node's certificate"),
		key:      fs.String("key", "", "TLSKeyFile: PEM file of this node's private key"),
		join:     fs.Bool("join", false, "Join: wait to be added to a running cluster"),
		check:    fs.Bool("check", false, "check the settings and exit: 0 if a node could start with them"),
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
		}
	})
	if nf.Level != "" {
		var lv slog.Level
		if lv, err = logx.ParseLevel(nf.Level); err != nil {
			return nf, fmt.Errorf("level: %v", err)
		}
		nf.Config.Level = lv
	}
	if nf.HTTP != "" {
		if _, _, err := net.SplitHostPort(nf.HTTP); err != nil {
			return nf, fmt.Errorf("http: %v", err)
		}
	}
	return nf, nf.Validate()
}

const nodeUsage = "usage: logx node [-config FILE] [-id ID -addr HOST:PORT -peers A,B,C -dir DIR] [-listen HOST:PORT] [-http HOST:PORT] [-level L] [-join] [-ca F -cert F -key F] [-check]"

// cmdNode runs a standalone node until SIGTERM or SIGINT: it closes
// cleanly (pending entries committed, leadership handed over) and exits 0.
// SIGHUP reads the configuration file again and applies its level.
func cmdNode(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
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

	var clientTLS *tls.Config // /ingest's Client dials this node as a peer does
	if nf.TLSCAFile != "" {
		if clientTLS, err = logx.LoadTLS(nf.TLSCAFile, nf.TLSCertFile, nf.TLSKeyFile); err != nil {
			return fail(stderr, "node: %v", err)
		}
	}
	lx, err := logx.New(nf.Config)
	if err != nil {
		return fail(stderr, "node: %v", err)
	}
	var srv *http.Server
	var in *ingester
	srvDone := make(chan error, 1)
	if nf.HTTP != "" {
		ln, err := net.Listen("tcp", nf.HTTP)
		if err != nil {
			lx.Close()
			return fail(stderr, "node: http: %v", err)
		}
		in = &ingester{lx: lx, node: nf.NodeID, addr: nf.Addr, tls: clientTLS, clients: map[string]*ingestClient{},
			files: [3]string{nf.TLSCAFile, nf.TLSCertFile, nf.TLSKeyFile}}
		defer in.close()
		srv = &http.Server{Handler: nodeHandler(lx, nf, in), ReadHeaderTimeout: 10 * time.Second}
		go func() { srvDone <- srv.Serve(ln) }()
	}
	fmt.Fprintf(stderr, "logx node %s: serving %s (listening on %s), data in %s\n", nf.NodeID, nf.Addr, cmpOr(nf.ListenAddr, nf.Addr), nf.Dir)

	status := 0
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
				break loop
			}
			reload(f, lx, in, &level, nf.NodeID, stderr)
		}
	}
	fmt.Fprintf(stderr, "logx node %s: closing\n", nf.NodeID)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if err := lx.Close(); err != nil {
		fmt.Fprintf(stderr, "logx node %s: close: %v\n", nf.NodeID, err)
		return 1
	}
	fmt.Fprintf(stderr, "logx node %s: closed\n", nf.NodeID)
	return status
}

// reload applies what SIGHUP can change: the TLS files (loaded again if
// they changed; the node also notices by itself within a few seconds) and
// the level. Other settings need a restart; the file is checked all the
// same, so an error shows now.
func reload(f *nodeFlags, lx *logx.Logx, in *ingester, level *slog.LevelVar, id string, stderr io.Writer) {
	if err := lx.ReloadTLS(); err != nil {
		fmt.Fprintf(stderr, "logx node %s: SIGHUP: TLS files: %v; the certificates in use stay\n", id, err)
	} else if in != nil {
		in.reloadTLS(stderr)
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

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// nodeHandler serves the node's HTTP endpoints: logxprom's /metrics,
// /healthz, /readyz and /status, and /ingest.
func nodeHandler(lx *logx.Logx, nf nodeFile, in *ingester) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(logxprom.NewCollector(lx))
	mux := http.NewServeMux()
	mux.Handle("/", logxprom.Handler(lx, reg, logxprom.Options{MaxLag: nf.MaxLag}))
	mux.Handle("POST /ingest", in)
	return mux
}

// maxIngestBody bounds one /ingest request, and maxIngestLine one line.
const (
	maxIngestBody = 16 << 20
	maxIngestLine = 1 << 20
)

// ingester logs the lines POSTed to /ingest into the cluster through one
// Client per stream (node= is this node's NodeID), one request at a time
// per stream, so that a request's lines keep their order. The Client
// dials this node, which forwards to the leader as for its own entries.
type ingester struct {
	lx    *logx.Logx
	node  string
	addr  string
	files [3]string // the TLS files: CA, certificate, key ("" without)

	mu      sync.Mutex
	tls     *tls.Config
	clients map[string]*ingestClient
}

type ingestClient struct {
	mu sync.Mutex
	c  *logx.Client
}

// ingestReply is /ingest's answer, JSON.
type ingestReply struct {
	Committed int    `json:"committed"`       // lines committed
	First     uint64 `json:"first,omitempty"` // sequence number of the first
	Error     string `json:"error,omitempty"`
}

// ServeHTTP handles POST /ingest?stream=S&level=L: the body's lines, one
// entry each. Text lines (any Content-Type but JSON) become the message,
// at level L (default INFO). With Content-Type application/x-ndjson (or
// application/json, application/jsonl) each line is a JSON object: "msg"
// the message, "level" the level, "time" an RFC 3339 time, and every other
// member an attribute, in order. The whole body is parsed first: a bad
// line commits nothing (400). The answer comes once every line is
// committed, or says how many were.
func (in *ingester) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stream := cmpOr(q.Get("stream"), logx.DefaultStream)
	if _, err := in.lx.Stream(stream); err != nil {
		replyIngest(w, http.StatusNotFound, ingestReply{Error: err.Error()})
		return
	}
	level := logx.LevelInfo
	if l := q.Get("level"); l != "" {
		var err error
		if level, err = logx.ParseLevel(l); err != nil {
			replyIngest(w, http.StatusBadRequest, ingestReply{Error: "level: " + err.Error()})
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxIngestBody))
	if err != nil {
		replyIngest(w, http.StatusRequestEntityTooLarge, ingestReply{Error: fmt.Sprintf("body over %d bytes, or unreadable: %v", maxIngestBody, err)})
		return
	}
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	asJSON := strings.Contains(ct, "json")
	var entries []logx.ClientEntry
	for n, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(line) > maxIngestLine {
			replyIngest(w, http.StatusRequestEntityTooLarge, ingestReply{Error: fmt.Sprintf("line %d: over %d bytes; nothing committed", n+1, maxIngestLine)})
			return
		}
		e := logx.ClientEntry{Level: level, Msg: string(line)}
		if asJSON {
			if e, err = jsonEntry(line, level); err != nil {
				replyIngest(w, http.StatusBadRequest, ingestReply{Error: fmt.Sprintf("line %d: %v; nothing committed", n+1, err)})
				return
			}
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		replyIngest(w, http.StatusOK, ingestReply{})
		return
	}
	c, err := in.client(r.Context(), stream)
	if err != nil {
		replyIngest(w, http.StatusServiceUnavailable, ingestReply{Error: err.Error()})
		return
	}
	c.mu.Lock()
	first, err := c.c.Send(r.Context(), entries)
	c.mu.Unlock()
	if err != nil {
		// Send's error says how many were committed before the failure.
		code := http.StatusServiceUnavailable
		if errors.Is(err, logx.ErrEntryTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		replyIngest(w, code, ingestReply{Error: err.Error()})
		return
	}
	replyIngest(w, http.StatusOK, ingestReply{Committed: len(entries), First: first})
}

// client returns the stream's Client, made on first use.
func (in *ingester) client(ctx context.Context, stream string) (*ingestClient, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if c := in.clients[stream]; c != nil {
		return c, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := logx.NewStreamClient(cctx, in.tls, stream, in.node, in.addr)
	if err != nil {
		return nil, err
	}
	ic := &ingestClient{c: c}
	in.clients[stream] = ic
	return ic, nil
}

// reloadTLS loads the node's TLS files again for /ingest's Clients, which
// dial this node as a peer does: the next request makes new ones.
func (in *ingester) reloadTLS(stderr io.Writer) {
	in.mu.Lock()
	if in.files[0] == "" {
		in.mu.Unlock()
		return
	}
	cfg, err := logx.LoadTLS(in.files[0], in.files[1], in.files[2])
	in.mu.Unlock()
	if err != nil {
		fmt.Fprintf(stderr, "logx node %s: SIGHUP: TLS files for /ingest: %v\n", in.node, err)
		return
	}
	in.close()
	in.mu.Lock()
	in.tls, in.clients = cfg, map[string]*ingestClient{}
	in.mu.Unlock()
}

// close closes the Clients.
func (in *ingester) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, c := range in.clients {
		c.mu.Lock()
		c.c.Close()
		c.mu.Unlock()
	}
}

// jsonEntry decodes one JSON line into an entry, keeping its members'
// order.
func jsonEntry(line []byte, level slog.Level) (logx.ClientEntry, error) {
	e := logx.ClientEntry{Level: level}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return e, errors.New("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return e, err
		}
		key, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return e, err
		}
		s, isString := v.(string)
		switch {
		case key == "msg" && isString:
			e.Msg = s
		case key == "level" && isString:
			if e.Level, err = logx.ParseLevel(s); err != nil {
				return e, fmt.Errorf("level: %v", err)
			}
		case key == "time" && isString:
			if e.Time, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return e, fmt.Errorf("time: %v", err)
			}
		default:
			if n, ok := v.(json.Number); ok {
				v = jsonNumber(n)
			}
			e.Attrs = append(e.Attrs, slog.Any(key, v))
		}
	}
	if _, err := dec.Token(); err != nil {
		return e, err
	}
	if dec.More() {
		return e, errors.New("more than one JSON value on the line")
	}
	return e, nil
}

// jsonNumber is n as an int64 when it is one, else a float64.
func jsonNumber(n json.Number) any {
	if i, err := n.Int64(); err == nil {
		return i
	}
	if f, err := n.Float64(); err == nil {
		return f
	}
	return n.String()
}

func replyIngest(w http.ResponseWriter, code int, r ingestReply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(r)
}
