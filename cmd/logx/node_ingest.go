package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logx-dev/logx"
	"github.com/logx-dev/logx/logxprom"
	"github.com/logx-dev/logx/logxview"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeHandler serves the node's HTTP endpoints: logxprom's /metrics,
// /healthz, /readyz and /status, and, with in, POST /ingest.
func nodeHandler(lx *logx.Logx, nf nodeFile, in *ingester) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(logxprom.NewCollector(lx))
	mux := http.NewServeMux()
	mux.Handle("/", logxprom.Handler(lx, reg, logxprom.Options{MaxLag: nf.MaxLag}))
	if in != nil {
		// A browser's cross-site POST (any page its user visits can send
		// one, with no preflight for text/plain) is refused: 403.
		mux.Handle("POST /ingest", http.NewCrossOriginProtection().Handler(in))
	}
	if nf.Viewer {
		// Its live tails end with the requests' base context, which the
		// node cancels before it shuts the server down.
		// hostGuard checks the Host of its requests (rather than
		// logxview.Options.Hosts, which would refuse the node's IP
		// address too).
		mux.Handle("/logs/", http.StripPrefix("/logs", logxview.Handler(lx, logxview.Options{})))
		mux.Handle("GET /logs", http.RedirectHandler("/logs/", http.StatusMovedPermanently))
	}
	return hostGuard(nf.hosts(), mux)
}

// hostGuard refuses with 421 a request for anything but /metrics,
// /healthz and /readyz whose Host is not an IP address, localhost, or one
// of hosts. Through DNS rebinding a page on another site, whose name its
// owner points at the node's address, is the node's own origin to the
// browser: it could read /status and the viewer, and POST to /ingest
// (CrossOriginProtection lets a same-origin request through). A browser
// names the page's host, so the page's own site never passes. Every
// request is checked, a browser's or not: over plain HTTP a browser sends
// neither Sec-Fetch-Site nor, on a same-origin GET, Origin, so a
// browser's request cannot be told from curl's. Prometheus and probes
// that reach the node by a name keep /metrics, /healthz and /readyz.
//
// A request with a body to anything but POST /ingest, which alone reads
// one, is answered with "Connection: close": net/http reads up to 256 KiB
// of a body the handler left, before it writes the answer, to keep the
// connection; a body sent a byte at a time held the answer, and the
// connection's slot, for the server's ReadTimeout (a minute), so that a
// few hundred such requests to /healthz, each as cheap as a probe, left
// the probes themselves no slot (503).
func hostGuard(hosts []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && (r.Method != http.MethodPost || r.URL.Path != "/ingest") {
			w.Header().Set("Connection", "close")
		}
		switch r.URL.Path {
		case "/metrics", "/healthz", "/readyz":
		default:
			if !knownHost(r.Host, hosts) {
				http.Error(w, fmt.Sprintf("unknown host %q: this server answers %s by an IP address, localhost, or a name in http_hosts (-http-hosts)", r.Host, r.URL.Path),
					http.StatusMisdirectedRequest)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// knownHost reports whether host (a Host header, with or without a port)
// is an IP address, localhost, or one of hosts (a name, or host:port).
func knownHost(host string, hosts []string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.Trim(name, "[]"), ".") // a fully qualified name ends in a dot
	ip, _, _ := strings.Cut(name, "%")                       // an IPv6 address's zone
	if net.ParseIP(ip) != nil || strings.EqualFold(name, "localhost") {
		return true
	}
	return slices.ContainsFunc(hosts, func(h string) bool {
		return strings.EqualFold(h, host) || strings.EqualFold(strings.TrimSuffix(h, "."), name)
	})
}

// Bounds of /ingest, so that a request costs at most a few times its body
// in memory: the body, the lines of a request, a line; the bytes of all
// the bodies being read or not yet committed (ingestBudget); how long a
// body may take to arrive (ingestBodyTimeout: 400 KB/s for the largest);
// and the requests committing at once (others wait for a turn). A request
// waits up to ingestWait for budget or a turn, then is answered "busy".
const (
	maxIngestBody     = 4 << 20
	maxIngestLines    = 10000
	maxIngestLine     = 64 << 10
	ingestBodyTimeout = 10 * time.Second
	ingestFreeFirst   = 64 << 10 // of the budget, free before a request of unknown length reads
	ingestAtOnce      = 4
	ingestWait        = 10 * time.Second
	ingestTimeout     = 30 * time.Second // to commit a request's lines
	ingestChunk       = 1000             // lines per Send: one batch, so a failure is whole
	ingestChunkSize   = 128 << 10        // and bytes per Send, rendered well within a batch
)

// ingester logs the lines POSTed to /ingest into the cluster through one
// Client per stream (node= is this node's NodeID), one request at a time
// per stream, so that a request's lines stay in their order. The Client
// dials this node, which forwards to the leader as for its own entries;
// its TLS follows the node's files (logx.ReloadingTLS).
type ingester struct {
	lx     *logx.Logx
	node   string
	addr   string
	tls    *tls.Config
	turn   chan struct{} // ingestAtOnce requests commit at a time
	budget *byteBudget   // bodies read and not yet committed
	wait   time.Duration // for budget or a turn: ingestWait
	// bodyTimeout bounds the reading of a body: ingestBodyTimeout.
	bodyTimeout time.Duration
	// sending, if set (a test), is called before each chunk is sent, with
	// the lines of the request committed so far.
	sending func(committed int)

	mu      sync.Mutex
	clients map[string]*ingestClient
}

// ingestClient is a stream's Client, dialed by the first request that
// holds slot; one request sends with it at a time.
type ingestClient struct {
	slot   chan struct{} // held while dialing or sending; capacity 1
	c      *logx.Client  // nil until dialed
	closed bool          // by closeClient: dial no more (the stream was deleted, or the node stops)
}

func newIngester(lx *logx.Logx, nf nodeFile) (*ingester, error) {
	in := &ingester{lx: lx, node: nf.NodeID, addr: nf.Addr, turn: make(chan struct{}, ingestAtOnce), budget: newByteBudget(ingestBudget),
		wait: ingestWait, bodyTimeout: ingestBodyTimeout, clients: map[string]*ingestClient{}}
	if nf.TLSCAFile != "" {
		var err error
		if in.tls, err = logx.ReloadingTLS(nf.TLSCAFile, nf.TLSCertFile, nf.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// ingestReply is /ingest's answer, JSON.
type ingestReply struct {
	Committed  int    `json:"committed"`             // lines committed, in order, from the first
	First      uint64 `json:"first,omitempty"`       // sequence number of the first
	BelowLevel int    `json:"below_level,omitempty"` // lines below the stream's level, not logged
	Error      string `json:"error,omitempty"`
	// OutcomeUnknown: the lines after the committed ones may or may not
	// have been committed too (logx.ErrOutcomeUnknown); sending them again
	// may write them twice.
	OutcomeUnknown bool `json:"outcome_unknown,omitempty"`
}

// ServeHTTP handles POST /ingest?stream=S&level=L: the body's lines, one
// entry each (docs in the README, "A standalone node").
func (in *ingester) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A refusal before the body is read is answered at once, and the
	// connection closed after it: the server would otherwise read the body
	// on (up to 256 KiB, as long as its sender takes, within its read
	// timeout) before it answers, to use the connection again. (It still
	// reads up to that much after the answer, before it closes.)
	refuse := func(code int, msg string) {
		w.Header().Set("Connection", "close")
		replyIngest(w, code, ingestReply{Error: msg})
	}
	q := r.URL.Query()
	name := cmp.Or(q.Get("stream"), logx.DefaultStream)
	stream, err := in.lx.Stream(name)
	if err != nil {
		in.forget(name) // deleted: its Client and connection go
		refuse(http.StatusNotFound, err.Error())
		return
	}
	level := logx.LevelInfo
	if l := q.Get("level"); l != "" {
		if level, err = logx.ParseLevel(l); err != nil {
			refuse(http.StatusBadRequest, "level: "+err.Error())
			return
		}
	}
	if r.ContentLength > maxIngestBody {
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes; nothing committed", maxIngestBody))
		return
	}
	// The body first, without a turn (ingestBudget): a slow upload holds
	// what it has sent, for ingestBodyTimeout at most, never a turn. It
	// starts once the budget has room for all of it (ingestFreeFirst of
	// a body of unknown length); the room is seen, not reserved, so
	// requests that start together may find it taken partway (busy).
	room := min(int64(ingestFreeFirst), in.budget.size)
	if r.ContentLength >= 0 {
		room = min(r.ContentLength, in.budget.size)
	}
	wait, cancel := context.WithTimeout(r.Context(), in.wait)
	err = in.budget.waitFree(wait, room)
	cancel()
	if err != nil {
		refuse(http.StatusServiceUnavailable, errIngestBusy.Error()+"; nothing committed")
		return
	}
	body := &budgetReader{r: http.MaxBytesReader(w, r.Body, maxIngestBody), b: in.budget}
	defer func() { in.budget.give(body.held) }() // once its entries are committed or dropped
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(in.bodyTimeout))
	// Go's server clears the deadline when it starts its read that
	// watches for the client leaving, at the body's end: it does not end
	// r.Context() in the middle of the wait for a turn or of the commit.
	entries, below, code, err := readIngest(body, r.Header.Get("Content-Type"), level, stream)
	if err != nil {
		refuse(code, err.Error()+"; nothing committed")
		return
	}
	rep := ingestReply{BelowLevel: below}
	if len(entries) == 0 {
		replyIngest(w, http.StatusOK, rep)
		return
	}
	// The stream's Client first, then a turn: a request waiting behind
	// another of its stream holds no turn, so a stream slow to commit
	// holds up only its own requests.
	c := in.client(name)
	wait, cancel = context.WithTimeout(r.Context(), in.wait)
	defer cancel()
	// take takes a place of sem, or answers busy once wait ends.
	take := func(sem chan struct{}, busy string) bool {
		select {
		case sem <- struct{}{}:
			return true
		case <-wait.Done():
			replyIngest(w, http.StatusServiceUnavailable, ingestReply{Error: "busy: " + busy + "; try again; nothing committed"})
			return false
		}
	}
	if !take(c.slot, "the stream's earlier /ingest requests are still committing") {
		return
	}
	defer func() { <-c.slot }()
	if !take(in.turn, "too many /ingest requests at once") {
		return
	}
	defer func() { <-in.turn }()
	if r.Context().Err() != nil { // a select may take a ready turn over the end
		replyIngest(w, http.StatusServiceUnavailable, ingestReply{Error: "the node is stopping, or the client left; nothing committed"})
		return
	}
	if err := in.dial(r.Context(), name, c); err != nil {
		rep.Error = "no connection to the cluster: " + err.Error()
		replyIngest(w, http.StatusServiceUnavailable, rep)
		return
	}
	// Every entry is checked as it will be rendered before the first
	// chunk goes, so that a line too large once rendered (its head, its
	// escapes) commits nothing, as one too long to read does.
	now := time.Now()
	for i := range entries {
		if entries[i].Time.IsZero() {
			entries[i].Time = now
		}
	}
	if err := c.c.Check(entries); err != nil {
		rep.Error = err.Error()
		replyIngest(w, http.StatusRequestEntityTooLarge, rep)
		return
	}
	// Once the first chunk goes, the request's lines are committed to
	// the end, whatever becomes of the request: a client that hangs up,
	// or the node's close (SIGTERM cancels the requests' base context),
	// would otherwise cut the commit short between chunks or mid-chunk,
	// and the answer would say some were committed and perhaps one more
	// chunk (outcome unknown), which a shipper sending the rest again
	// would write twice. ingestTimeout bounds it.
	ctx, cancelSend := context.WithTimeout(context.WithoutCancel(r.Context()), ingestTimeout)
	defer cancelSend()
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && n < ingestChunk && (n == 0 || size+entrySize(entries[n]) <= ingestChunkSize) {
			size += entrySize(entries[n])
			n++
		}
		if in.sending != nil {
			in.sending(rep.Committed)
		}
		first, err := c.c.Send(ctx, entries[:n])
		if err != nil {
			rep.Error = err.Error()
			rep.OutcomeUnknown = errors.Is(err, logx.ErrOutcomeUnknown)
			code := http.StatusServiceUnavailable
			if errors.Is(err, logx.ErrEntryTooLarge) {
				code = http.StatusRequestEntityTooLarge
			}
			replyIngest(w, code, rep)
			return
		}
		if rep.Committed == 0 {
			rep.First = first
		}
		rep.Committed += n
		entries = entries[n:]
	}
	replyIngest(w, http.StatusOK, rep)
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ingestAttrCost is about what a parsed JSON member takes in memory until
// its entry is committed (its slog.Attr, key, boxed value, and its key in
// jsonEntry's map meanwhile), taken from the budget with the body's bytes:
// members of a few bytes each ({"0":[],"1":[],...}) made a 4 MiB body
// hold 40 MiB, and the 32 MiB budget some 320 MiB.
const ingestAttrCost = 128

// entrySize is about what an entry takes in a batch before rendering.
func entrySize(e logx.ClientEntry) int {
	n := len(e.Msg) + 64
	for _, a := range e.Attrs {
		n += len(a.Key) + len(a.Value.String()) + 8
	}
	return n
}

// readIngest parses a request's body: text lines (any Content-Type but
// JSON) become the message at level; with a JSON Content-Type each line is
// an object (jsonEntry). Lines below the stream's level are counted, not
// kept. An error comes with its HTTP status; then nothing is logged.
func readIngest(body *budgetReader, contentType string, level slog.Level, stream *logx.Stream) (entries []logx.ClientEntry, below, code int, err error) {
	asJSON := strings.Contains(strings.ToLower(contentType), "json")
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, maxIngestLine) // grown as lines need: nothing held before a byte arrives
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e := logx.ClientEntry{Level: level, Msg: string(line)}
		if asJSON {
			if e, err = jsonEntry(line, level); err != nil {
				return nil, 0, http.StatusBadRequest, fmt.Errorf("line %d: %v", n, err)
			}
			if !body.take(int64(ingestAttrCost * len(e.Attrs))) {
				return nil, 0, http.StatusServiceUnavailable, errIngestBusy
			}
		}
		if !stream.Enabled(e.Level) {
			below++
			continue
		}
		if len(entries) == maxIngestLines {
			return nil, 0, http.StatusRequestEntityTooLarge, fmt.Errorf("more than %d lines in one request", maxIngestLines)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return nil, 0, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", maxIngestBody)
		case errors.Is(err, bufio.ErrTooLong):
			return nil, 0, http.StatusRequestEntityTooLarge, fmt.Errorf("a line over %d bytes", maxIngestLine)
		case errors.Is(err, errIngestBusy):
			return nil, 0, http.StatusServiceUnavailable, err
		case isTimeout(err):
			return nil, 0, http.StatusRequestTimeout, fmt.Errorf("the body did not arrive in time (%v for a request); send it in smaller requests", ingestBodyTimeout)
		}
		return nil, 0, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	return entries, below, 0, nil
}

// client returns the stream's ingestClient, made on first use; its
// Client is dialed later (dial), by a request that holds its slot. Making
// one also drops those of streams this node no longer holds (deleted; a
// name is never used again), which forget drops only when a request names
// them: a stream a day, each deleted after, kept a Client and a
// connection apiece until the node stopped.
func (in *ingester) client(stream string) *ingestClient {
	in.mu.Lock()
	c := in.clients[stream]
	var gone []*ingestClient
	if c == nil {
		c = &ingestClient{slot: make(chan struct{}, 1)}
		in.clients[stream] = c
		for name, old := range in.clients {
			if _, err := in.lx.Stream(name); err != nil && name != stream {
				delete(in.clients, name)
				gone = append(gone, old)
			}
		}
	}
	in.mu.Unlock()
	for _, old := range gone {
		go old.closeClient() // once a request still using it is done
	}
	return c
}

// dial connects c's Client if it has none; the caller holds c.slot.
func (in *ingester) dial(ctx context.Context, stream string, c *ingestClient) error {
	if c.c != nil {
		return nil
	}
	if c.closed {
		return fmt.Errorf("stream %q: its client was closed (the stream deleted, or the node stopping)", stream)
	}
	ctx, cancel := context.WithTimeout(ctx, ingestTimeout)
	defer cancel()
	nc, err := logx.NewStreamClient(ctx, in.tls, stream, in.node, in.addr)
	if err != nil {
		return err
	}
	c.c = nc
	return nil
}

// forget closes and drops the Client of stream name, if there is one: a
// request for a stream this node no longer holds (deleted; a name is never
// used again). Otherwise each deleted stream kept a Client and its
// connection until the node stopped.
func (in *ingester) forget(name string) {
	in.mu.Lock()
	c := in.clients[name]
	delete(in.clients, name)
	in.mu.Unlock()
	if c != nil {
		c.closeClient()
	}
}

// close closes the Clients; the HTTP server has stopped.
func (in *ingester) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, c := range in.clients {
		c.closeClient()
	}
}

// closeClient closes c's Client, once a request still dialing or sending
// with it is done.
func (c *ingestClient) closeClient() {
	c.slot <- struct{}{}
	c.closed = true
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
	<-c.slot
}

// reservedKeys are the fields logx itself puts in a line: a JSON line may
// not set them as attributes (it would write the key twice, and a reader
// could take the forged one).
var reservedKeys = map[string]bool{"seq": true, "time": true, "level": true, "node": true, "caller": true, "msg": true}

// jsonEntry decodes one JSON line into an entry, keeping its members'
// order: "msg" (a string) is the message, "level" (a string) the level,
// "time" (RFC 3339) the time; other members are attributes, in order.
func jsonEntry(line []byte, level slog.Level) (logx.ClientEntry, error) {
	e := logx.ClientEntry{Level: level}
	seen := map[string]bool{}
	err := eachJSONMember(line, func(key string, v any) error {
		if seen[key] {
			return fmt.Errorf("key %q twice", key)
		}
		seen[key] = true
		s, isString := v.(string)
		var err error
		switch {
		case key == "msg" && isString:
			e.Msg = s
		case key == "level" && isString:
			if e.Level, err = logx.ParseLevel(s); err != nil {
				return fmt.Errorf("level: %v", err)
			}
		case key == "time" && isString:
			if e.Time, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Errorf("time: %v", err)
			}
		case reservedKeys[key]:
			return fmt.Errorf("%q is logx's own field: msg, level and time must be strings; seq, node and caller cannot be set", key)
		default:
			e.Attrs = append(e.Attrs, slog.Any(key, v))
		}
		return nil
	})
	return e, err
}

// eachJSONMember decodes line, a JSON object, and calls fn with each of
// its members in order: strings, bools and nulls as encoding/json decodes
// them, numbers as jsonNumber gives them, objects and arrays as their JSON
// text (json.RawMessage: logged as they came, members in order, in the
// text format as that text and in the JSON format as that JSON).
func eachJSONMember(line []byte, fn func(key string, v any) error) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		var v any = raw
		if raw[0] != '{' && raw[0] != '[' {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				return err
			}
			if n, ok := v.(json.Number); ok {
				v = jsonNumber(n)
			}
		}
		if err := fn(key, v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}

// jsonNumber is n as an int64 when it is one, else as a float64 when that
// writes the same digits back, else its text as it came (a
// json.RawMessage: 12345678901234567890, 1.0 and 0.30000000000000004441
// stay as they are).
func jsonNumber(n json.Number) any {
	if i, err := n.Int64(); err == nil {
		return i
	}
	if f, err := n.Float64(); err == nil && strconv.FormatFloat(f, 'g', -1, 64) == n.String() {
		return f
	}
	return json.RawMessage(n.String())
}

func replyIngest(w http.ResponseWriter, code int, r ingestReply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(r)
}
