// Package logxview serves a page to look at a logx log: a search box,
// level and time filters, a histogram of entries per time bucket stacked
// by level, results newest first, and a live tail. Every node holds the
// whole log, so any node serves the whole view from its own files, with no
// other store and no query sent to other nodes.
//
// Mount it anywhere; the page uses relative addresses:
//
//	http.Handle("/logs/", http.StripPrefix("/logs", logxview.Handler(lx, logxview.Options{})))
//
// The handler is read-only (GET and HEAD only) and serves everything it
// needs from the binary: no CDN, no fetch from elsewhere. Anyone who can
// reach it can read the whole log: docs/security.md says how to protect
// it.
//
// Under the page is a JSON API, usable from scripts; its parameters are
// Grep's (logx.Query):
//
//	GET api/streams                    {"streams": ["default", ...]}
//	GET api/search?q=&regexp=&level=&since=&until=&limit=&max_seq=&stream=
//	                                   matches newest first, at most limit (default 200, at most 1000)
//	GET api/histogram?q=&regexp=&level=&since=&until=&buckets=&stream=
//	                                   entries per time bucket and level over [since, until)
//	GET api/tail?q=&regexp=&level=&from=&stream=
//	                                   server-sent events, one per new matching line (id: its seq)
//
// q is a substring; regexp (1 or true) reads it as a regular expression
// instead (RE2 syntax, at most 4 KiB and 1,000 instructions). level is the
// lowest level shown (DEBUG, INFO, WARN, ERROR). since and until are RFC
// 3339 times or Go durations meaning that long ago (15m, 24h). max_seq
// pages back: the next page of older matches is max_seq = the oldest seq
// seen, minus one. Each line comes with its fields: seq, time, level,
// node, caller, msg, attrs (in order) and text (the whole line).
package logxview

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx"
)

//go:embed assets
var assets embed.FS

// Options tune the handler; the zero value is the default.
type Options struct {
	// MaxTails bounds the live tails served at once (default 16); more
	// are refused with 503.
	MaxTails int
	// QueryTimeout bounds one search or histogram (default 30s).
	QueryTimeout time.Duration
	// MaxQueries bounds the searches and histograms run at once (default
	// 2: each reads files with a goroutine per CPU); more wait up to a
	// second for a turn, then are refused with 503.
	MaxQueries int
	// Hosts, if set, lists the host names (or host:port) requests may name
	// in their Host header; others get 421. A page the viewer serves is
	// then not readable through DNS rebinding: another site's page whose
	// name an attacker points at this node's address.
	Hosts []string
	// MaxReplay is how many lines before the newest a live tail may start
	// from (default 10,000); a tail asked to start earlier starts there,
	// and its first event (gap) says how many lines it skipped.
	MaxReplay uint64
}

// Source is what the viewer reads: a logx.Stream has all of it.
type Source interface {
	Grep(ctx context.Context, q logx.Query, fn func(logx.Line) error) error
	Watch(ctx context.Context, from uint64, level slog.Leveler, fn func(logx.Line) error) error
	Stats() logx.Stats
}

// Handler returns the viewer of lx's streams: an http.Handler.
func Handler(lx *logx.Logx, o Options) *Viewer {
	return newHandler(func(name string) (Source, error) {
		if name == "" {
			name = logx.DefaultStream
		}
		return lx.Stream(name)
	}, lx.Streams, o)
}

// Viewer serves the page and its API. Its live tails last as long as
// their clients stay; http.Server.Shutdown waits for them, so call Close
// first (or give the server a BaseContext that Shutdown's caller cancels,
// as logx node does).
type Viewer struct {
	open    func(stream string) (Source, error)
	streams func() []string
	o       Options
	tails   atomic.Int64
	queries chan struct{} // a token per search or histogram running
	// writeTimeout bounds the writing of an answer, which holds its turn
	// (answerWriteTimeout; a test's).
	writeTimeout time.Duration
	mux          *http.ServeMux
	closing      context.Context
	close        context.CancelFunc
}

// hostAllowed reports whether host (a Host header) is one of Options.Hosts,
// with or without its port.
func (h *Viewer) hostAllowed(host string) bool {
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	}
	for _, a := range h.o.Hosts {
		if strings.EqualFold(a, host) || strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}

// Close ends the live tails; the page and its searches go on.
func (h *Viewer) Close() { h.close() }

func newHandler(open func(string) (Source, error), streams func() []string, o Options) *Viewer {
	if o.MaxTails <= 0 {
		o.MaxTails = 16
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 30 * time.Second
	}
	if o.MaxQueries <= 0 {
		o.MaxQueries = 2
	}
	if o.MaxReplay == 0 {
		o.MaxReplay = 10000
	}
	h := &Viewer{open: open, streams: streams, o: o, mux: http.NewServeMux(), queries: make(chan struct{}, o.MaxQueries),
		writeTimeout: answerWriteTimeout}
	h.closing, h.close = context.WithCancel(context.Background())
	static, _ := fs.Sub(assets, "assets")
	h.mux.Handle("GET /", http.FileServerFS(static))
	h.mux.HandleFunc("GET /api/streams", h.serveStreams)
	h.mux.HandleFunc("GET /api/search", h.serveSearch)
	h.mux.HandleFunc("GET /api/histogram", h.serveHistogram)
	h.mux.HandleFunc("GET /api/tail", h.serveTail)
	return h
}

func (h *Viewer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// Nothing but the page's own files runs or loads: a line that slipped
	// past the page's escaping still could not run a script.
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	if len(h.o.Hosts) > 0 && !h.hostAllowed(r.Host) {
		http.Error(w, "unknown host", http.StatusMisdirectedRequest)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// timeLayout is an Entry's time: RFC 3339 with the microseconds a line
// shows.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Entry is a line as the API gives it: its fields, and its text.
type Entry struct {
	Seq    uint64      `json:"seq"`
	Time   string      `json:"time,omitempty"` // RFC 3339, as the line shows it
	Level  string      `json:"level"`
	Node   string      `json:"node,omitempty"`
	Caller string      `json:"caller,omitempty"`
	Msg    string      `json:"msg"`
	Attrs  [][2]string `json:"attrs,omitempty"`
	Text   string      `json:"text"`
}

func entry(l logx.Line) Entry {
	e := Entry{Seq: l.Seq, Level: l.Level.String(), Text: string(l.Text)}
	if !l.Time.IsZero() {
		e.Time = l.Time.UTC().Format(timeLayout)
	}
	// A line's head is seq, time, level, node, caller and msg, in that
	// order (time and caller may be missing); everything after msg is the
	// entry's attributes, whatever their names.
	head := true
	for _, f := range parseFields(l.Text) {
		if !head {
			e.Attrs = append(e.Attrs, f)
			continue
		}
		switch f[0] {
		case "seq", "time", "level":
		case "node":
			e.Node = f[1]
		case "caller":
			e.Caller = f[1]
		case "msg":
			e.Msg, head = f[1], false
		default:
			e.Attrs, head = append(e.Attrs, f), false
		}
	}
	return e
}

func (h *Viewer) serveStreams(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string][]string{"streams": h.streams()})
}

// maxLimit bounds one page of search results.
const maxLimit = 1000

func (h *Viewer) serveSearch(w http.ResponseWriter, r *http.Request) {
	src, q, err := h.query(r)
	if err != nil {
		httpError(w, err)
		return
	}
	q.Newest, q.Limit = true, 200
	if v := r.FormValue("limit"); v != "" {
		if q.Limit, err = strconv.Atoi(v); err != nil || q.Limit < 1 || q.Limit > maxLimit {
			httpError(w, badRequest("limit %q: from 1 to %d", v, maxLimit))
			return
		}
	}
	if v := r.FormValue("max_seq"); v != "" {
		if q.MaxSeq, err = strconv.ParseUint(v, 10, 64); err != nil || q.MaxSeq == 0 {
			httpError(w, badRequest("max_seq %q: a sequence number", v))
			return
		}
	}
	ctx, done, err := h.begin(r)
	if err != nil {
		httpError(w, err)
		return
	}
	defer done()
	start := time.Now()
	out := struct {
		Lines  []json.RawMessage `json:"lines"` // Entry, each encoded as it came
		More   bool              `json:"more"`  // the limit or the size stopped it: older matches may follow
		TookMS int64             `json:"took_ms"`
	}{Lines: []json.RawMessage{}}
	var size int
	err = src.Grep(ctx, q, func(l logx.Line) error {
		b, err := json.Marshal(entry(l))
		if err != nil {
			return err
		}
		out.Lines = append(out.Lines, b)
		if size += len(b); size >= maxSearchBytes {
			return errFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		httpError(w, err)
		return
	}
	out.More = len(out.Lines) == q.Limit || errors.Is(err, errFull)
	out.TookMS = time.Since(start).Milliseconds()
	h.writeAnswer(w, out)
}

// maxSearchBytes bounds the JSON of one answer's lines, as sent: a page
// of long lines stops early, saying there is more. (Counted from the
// lines' own bytes, an answer could be 12 times as large: each line is
// sent as its text and as its fields, and encoding/json writes '<', '>'
// and '&' as six bytes.)
const maxSearchBytes = 4 << 20

var errFull = errors.New("the answer is full")

// begin starts a search or a histogram: it waits for a turn, and returns
// the query's context, bounded by QueryTimeout, and the function that
// ends it.
func (h *Viewer) begin(r *http.Request) (context.Context, func(), error) {
	release, err := h.turn(r.Context())
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.QueryTimeout)
	return ctx, func() { cancel(); release() }, nil
}

// turn waits, up to a second, until fewer than MaxQueries searches and
// histograms run, and returns the function that ends this one's turn.
func (h *Viewer) turn(ctx context.Context) (func(), error) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case h.queries <- struct{}{}:
		return func() { <-h.queries }, nil
	case <-t.C:
		return nil, &httpErr{http.StatusServiceUnavailable, fmt.Sprintf("%d searches are running: try again", h.o.MaxQueries)}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tailHeartbeat is how often a tail with nothing to send sends a comment,
// so that proxies keep the connection.
const tailHeartbeat = 15 * time.Second

func (h *Viewer) serveTail(w http.ResponseWriter, r *http.Request) {
	src, q, err := h.query(r)
	if err != nil {
		httpError(w, err)
		return
	}
	from := src.Stats().Seq + 1 // what arrives from now on
	v := r.FormValue("from")
	if id := r.Header.Get("Last-Event-ID"); id != "" { // a browser reconnecting
		v = id
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			v = strconv.FormatUint(n+1, 10)
		}
	}
	if v != "" {
		if from, err = strconv.ParseUint(v, 10, 64); err != nil || from == 0 {
			httpError(w, badRequest("from %q: a sequence number", v))
			return
		}
	}
	if r.Method == http.MethodHead {
		// Its body would be thrown away: it would hold a tail's turn, and
		// replay lines, for a client that can never be seen to stop
		// reading.
		w.Header().Set("Content-Type", "text/event-stream")
		return
	}
	// A tail replays at most MaxReplay lines: older ones are a search's.
	var skipped uint64
	if now, m := src.Stats().Seq, h.o.MaxReplay; now >= m && from < now-m+1 {
		skipped, from = now-m+1-from, now-m+1
	}
	if h.tails.Add(1) > int64(h.o.MaxTails) {
		h.tails.Add(-1)
		http.Error(w, fmt.Sprintf("at most %d live tails at once", h.o.MaxTails), http.StatusServiceUnavailable)
		return
	}

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a client that stops reading is dropped
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The first event says where the tail starts: its id is the line
	// before, which a browser sends back (Last-Event-ID) if it must
	// reconnect before a line came.
	hello := fmt.Appendf(nil, ": logx tail\nid: %d\n", from-1)
	if skipped > 0 {
		hello = fmt.Appendf(hello, "event: gap\ndata: %d\n", skipped)
	}
	if err := send(append(hello, '\n')); err != nil {
		h.tails.Add(-1)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer context.AfterFunc(h.closing, cancel)()
	events := make(chan []byte, 16)
	watching := make(chan struct{})
	// The slot is given back once the Watch has stopped, not when the
	// client left.
	defer func() { cancel(); <-watching; h.tails.Add(-1) }()
	go func() {
		defer close(watching)
		defer close(events)
		var cost matchCost
		err := src.Watch(ctx, from, q.Level, func(l logx.Line) error {
			ok, err := cost.match(q, l.Text)
			if err != nil {
				return err
			}
			if !ok {
				return ctx.Err() // a filter that hides most lines still stops
			}
			b, _ := json.Marshal(entry(l))
			ev := fmt.Appendf(nil, "id: %d\ndata: %s\n\n", l.Seq, b)
			select {
			case events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil && ctx.Err() == nil {
			b, _ := json.Marshal(err.Error())
			select {
			case events <- fmt.Appendf(nil, "event: error\ndata: %s\n\n", b):
			case <-ctx.Done():
			}
		}
	}()
	beat := time.NewTicker(tailHeartbeat)
	defer beat.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if send(ev) != nil {
				return
			}
		case <-beat.C:
			if send([]byte(": -\n\n")) != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// A live tail's expression may spend tailMatchShare of the tail's time
// matching, after tailMatchBurst; past that the tail ends with an error.
// Searches are bounded by their turns and their time; a tail has neither,
// and an expression near the size limit over long lines cost a second of
// CPU per 64 KiB of text, for as long as the client stayed: sixteen such
// tails kept a two-core node's Raft from its heartbeats.
var (
	tailMatchShare = 0.05
	tailMatchBurst = time.Second
)

// matchCost is the time a tail's expression has spent matching.
type matchCost struct {
	began time.Time
	spent time.Duration
}

// match is matchText, timed when q has an expression; it fails once the
// time spent passes the tail's share.
func (c *matchCost) match(q logx.Query, text []byte) (bool, error) {
	if q.Regexp == nil {
		return matchText(q, text), nil
	}
	now := time.Now()
	if c.began.IsZero() {
		c.began = now
	}
	ok := matchText(q, text)
	c.spent += time.Since(now)
	if allowed := tailMatchBurst + time.Duration(tailMatchShare*float64(now.Sub(c.began))); c.spent > allowed {
		return false, fmt.Errorf("the expression took %v of matching in %v, more than a live tail may (%.0f%% of its time): make it simpler, or search instead",
			c.spent.Round(time.Millisecond), now.Sub(c.began).Round(time.Millisecond), 100*tailMatchShare)
	}
	return ok, nil
}

// matchText reports whether text holds q's substring and matches its
// expression (the rest of q is Watch's level).
func matchText(q logx.Query, text []byte) bool {
	if q.Contains != "" && !bytes.Contains(text, []byte(q.Contains)) {
		return false
	}
	return q.Regexp == nil || q.Regexp.Match(text)
}

// query reads the parameters every API call shares.
func (h *Viewer) query(r *http.Request) (Source, logx.Query, error) {
	var q logx.Query
	src, err := h.open(r.FormValue("stream"))
	if err != nil {
		return nil, q, &httpErr{http.StatusNotFound, err.Error()}
	}
	if s := r.FormValue("q"); s != "" {
		switch r.FormValue("regexp") {
		case "1", "true", "on":
			if q.Regexp, err = logx.CompileQueryRegexp(s); err != nil {
				return nil, q, badRequest("regexp: %v", err)
			}
		case "", "0", "false", "off":
			if len(s) > 4<<10 {
				return nil, q, badRequest("q is limited to 4 KiB")
			}
			q.Contains = s
		default:
			return nil, q, badRequest("regexp %q: 1 or 0", r.FormValue("regexp"))
		}
	}
	if v := r.FormValue("level"); v != "" {
		l, err := logx.ParseLevel(v)
		if err != nil {
			return nil, q, badRequest("level %q: DEBUG, INFO, WARN or ERROR", v)
		}
		q.Level = l
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if v := r.FormValue(p.name); v != "" {
			t, err := parseTime(v)
			if err != nil {
				return nil, q, badRequest("%s: %v", p.name, err)
			}
			*p.t = t
		}
	}
	return src, q, nil
}

// parseTime reads RFC 3339, or a duration meaning that long before now.
func parseTime(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

type httpErr struct {
	code int
	msg  string
}

func (e *httpErr) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpErr{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var he *httpErr
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// writeAnswer writes a search's or a histogram's answer, within
// writeTimeout: the answer holds its turn until written, and a client
// that stopped reading would hold it for as long as it kept the
// connection open (two of them, and no search ran again).
func (h *Viewer) writeAnswer(w http.ResponseWriter, v any) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.writeTimeout))
	writeJSON(w, v)
}

// answerWriteTimeout is Viewer.writeTimeout: an answer is at most about
// 4 MiB.
const answerWriteTimeout = 10 * time.Second

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// parseFields splits a line into its key-value pairs, in order: logx's
// text format (key=value, either side bare or Go-quoted) or its JSON
// format (one object; values other than strings as their JSON text). A
// line that does not parse gives what it could.
func parseFields(b []byte) [][2]string {
	if len(b) > 0 && b[0] == '{' {
		return jsonFields(b)
	}
	var out [][2]string
	s := string(b)
	for s != "" {
		s = strings.TrimLeft(s, " ")
		k, rest, ok := textToken(s)
		if !ok || !strings.HasPrefix(rest, "=") {
			return out
		}
		v, rest, ok := textToken(rest[1:])
		if !ok {
			return out
		}
		out = append(out, [2]string{k, v})
		s = rest
	}
	return out
}

// textToken reads a bare or quoted token at the start of s.
func textToken(s string) (tok, rest string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", s, false
		}
		u, err := strconv.Unquote(q)
		return u, s[len(q):], err == nil
	}
	end := strings.IndexAny(s, " =")
	if end < 0 {
		return s, "", true
	}
	if s[end] == '=' && end == 0 {
		return "", s, false
	}
	return s[:end], s[end:], true
}

func jsonFields(b []byte) [][2]string {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out [][2]string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return out
		}
		k, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return out
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			s = string(raw)
		}
		out = append(out, [2]string{k, s})
	}
	return out
}
