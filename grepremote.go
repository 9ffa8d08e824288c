package logx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"regexp/syntax"
	"time"
	"unicode/utf8"

	"github.com/logx-dev/logx/internal/wire"
)

// Grep over the network: a "grep" control request asks a node to run Grep
// on its own files and answer with the lines, for operators without a
// shell on the node (logx grep -addr). It reads nothing a certificate
// holder could not already fetch (the fetch protocol serves every file),
// and its work is bounded: at most maxRemoteGrepLines lines and
// remoteGrepBytes of JSON per answer (then Truncated), a pattern of at
// most maxRemoteGrepPattern bytes (RE2: linear in the input), at most
// maxRemoteGrepContext context lines on each side, and remoteGrepTimeout.

const (
	maxRemoteGrepLines   = 10000
	defaultRemoteLimit   = 1000
	remoteGrepBytes      = 896 << 10 // of the answer's JSON; its frame holds 1 MiB (maxControlFrame)
	maxRemoteGrepPattern = 4 << 10
	maxRemoteGrepContext = 100
	remoteGrepTimeout    = time.Minute
)

// grepRequest is a Query on the wire.
type grepRequest struct {
	Contains string      `json:"contains,omitempty"`
	Regexp   string      `json:"regexp,omitempty"`
	Since    time.Time   `json:"since,omitzero"`
	Until    time.Time   `json:"until,omitzero"`
	Level    *slog.Level `json:"level,omitempty"`
	Limit    int         `json:"limit,omitempty"`
	Newest   bool        `json:"newest,omitempty"`
	Before   int         `json:"before,omitempty"`
	After    int         `json:"after,omitempty"`
	MaxSeq   uint64      `json:"max_seq,omitempty"`
}

// grepLine is a Line on the wire.
type grepLine struct {
	Seq     uint64 `json:"seq"`
	Context bool   `json:"context,omitempty"`
	Text    string `json:"text"`
}

// query checks r and returns its Query.
func (r *grepRequest) query() (Query, error) {
	q := Query{Contains: r.Contains, Since: r.Since, Until: r.Until, Limit: r.Limit, Newest: r.Newest, Before: r.Before, After: r.After, MaxSeq: r.MaxSeq}
	switch {
	case len(r.Contains) > maxRemoteGrepPattern || len(r.Regexp) > maxRemoteGrepPattern:
		return q, fmt.Errorf("a pattern is limited to %d bytes", maxRemoteGrepPattern)
	case r.Limit < 0 || r.Limit > maxRemoteGrepLines:
		return q, fmt.Errorf("limit %d: from 0 (%d) to %d lines", r.Limit, defaultRemoteLimit, maxRemoteGrepLines)
	case r.Before < 0 || r.After < 0 || r.Before > maxRemoteGrepContext || r.After > maxRemoteGrepContext:
		return q, fmt.Errorf("context lines: from 0 to %d on each side", maxRemoteGrepContext)
	case r.Newest && (r.Before > 0 || r.After > 0):
		return q, errors.New("context lines come in log order: not with newest")
	}
	if q.Limit == 0 {
		q.Limit = defaultRemoteLimit
	}
	if r.Level != nil {
		q.Level = *r.Level
	}
	if r.Regexp != "" {
		re, err := CompileQueryRegexp(r.Regexp)
		if err != nil {
			return q, err
		}
		q.Regexp = re
	}
	return q, nil
}

// maxRegexpInsts bounds the program of a remote grep's expression: RE2's
// time is linear in the input but also in the program, and a short
// pattern with nested repetitions ((?:a?){1000}) compiles to a large one.
const maxRegexpInsts = 1000

// CompileQueryRegexp compiles expr for Query.Regexp, refusing what a node
// would refuse from a peer's remote grep: more than 4 KiB, or a program of
// more than 1,000 instructions. It is for code that takes expressions from
// people it does not trust, such as the viewer (logxview).
func CompileQueryRegexp(expr string) (*regexp.Regexp, error) {
	if len(expr) > maxRemoteGrepPattern {
		return nil, fmt.Errorf("a pattern is limited to %d bytes", maxRemoteGrepPattern)
	}
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	// Simplify writes repetitions out: 372 copies of [a-z]{1000} fit in
	// 4 KiB and expand to 372,000 instructions, 90 MB, before the count
	// below could refuse them.
	if n := regexpSize(re, 4*maxRegexpInsts); n > 4*maxRegexpInsts {
		return nil, fmt.Errorf("the expression compiles to more than %d instructions", maxRegexpInsts)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, err
	}
	if len(prog.Inst) > maxRegexpInsts {
		return nil, fmt.Errorf("the expression compiles to %d instructions, more than %d", len(prog.Inst), maxRegexpInsts)
	}
	return regexp.Compile(expr)
}

// regexpSize estimates the instructions re compiles to, repetitions
// written out, from its parsed form and without writing them out; it
// stops counting past limit. It counts as the compiler does (the
// program's fail and match; a rune per literal character; one for a
// character class, however many ranges it holds, or an empty-width
// assertion; a capture's two; two for each *, +, ? and each optional
// copy of a repetition, a branch between alternatives), never fewer, so an expression within the limit
// is never refused for it; the exact count is checked once it is
// compiled.
func regexpSize(re *syntax.Regexp, limit int) int {
	return min(2+regexpNodes(re, limit), limit+1)
}

func regexpNodes(re *syntax.Regexp, limit int) int {
	n := 0
	switch re.Op {
	case syntax.OpLiteral:
		n = max(len(re.Rune), 1)
	case syntax.OpCapture:
		n = 2 + regexpNodes(re.Sub[0], limit)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		n = 2 + regexpNodes(re.Sub[0], limit) // x* of an x that matches empty is (x+)?
	case syntax.OpRepeat:
		// x{n} is n copies of x, x{n,m} n copies and m-n optional ones
		// (x?), x{n,} n-1 copies and x+ (x* when n is 0); x{0} is empty.
		if re.Max == 0 {
			return 1
		}
		sub := regexpNodes(re.Sub[0], limit)
		copies, extra := re.Max, (re.Max-re.Min)*2
		if re.Max < 0 {
			copies, extra = max(re.Min, 1), 2
		}
		if sub > (limit+1)/copies {
			return limit + 1
		}
		n = copies*sub + extra
	case syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			if n += regexpNodes(sub, limit); n > limit {
				break
			}
		}
		if re.Op == syntax.OpAlternate {
			n += len(re.Sub) - 1 // a branch between each two
		}
		n = max(n, 1)
	default:
		n = 1
	}
	return min(n, limit+1)
}

// remoteGreps bounds the grep requests a node serves at once, over all
// its streams; more are refused.
var remoteGreps = make(chan struct{}, 2)

// serveGrep answers a grep request from this node's files.
func (lx *Stream) serveGrep(ctx context.Context, r *grepRequest) controlResponse {
	q, err := r.query()
	if err != nil {
		return controlResponse{Error: "logx: grep: " + err.Error()}
	}
	select {
	case remoteGreps <- struct{}{}:
		defer func() { <-remoteGreps }()
	default:
		return controlResponse{Error: fmt.Sprintf("logx: grep: %d searches are running in this process; try again", cap(remoteGreps))}
	}
	ctx, cancel := context.WithTimeout(ctx, remoteGrepTimeout)
	defer cancel()
	var resp controlResponse
	size, matches, limit := 0, 0, q.Limit
	context := q.Before > 0 || q.After > 0
	if !context {
		q.Limit++ // one more: to tell the caller there were more
	}
	err = lx.Grep(ctx, q, func(l Line) error {
		if !l.Context {
			if matches++; matches > limit {
				resp.Truncated = true
				return errGrepLimit
			}
		}
		if size += jsonLineLen(l.Text); size > remoteGrepBytes {
			resp.Truncated = true
			return errGrepLimit
		}
		resp.Lines = append(resp.Lines, grepLine{Seq: l.Seq, Context: l.Context, Text: string(l.Text)})
		return nil
	})
	if err != nil && !errors.Is(err, errGrepLimit) {
		return controlResponse{Error: "logx: grep: " + err.Error()}
	}
	if context && matches == limit {
		resp.Truncated = true // stopped at the limit, with its context: more may match
	}
	return resp
}

// jsonLineLen bounds the size of a grepLine holding text in the answer's
// JSON: the text as encoding/json escapes it, and the other fields.
func jsonLineLen(text []byte) int {
	n := len(`{"seq":18446744073709551615,"context":true,"text":""},`)
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6 // \u00XX
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6 // a byte that is not UTF-8: \ufffd
		case r == '\u2028' || r == '\u2029':
			n += 6 // \u2028
		default:
			n += size
		}
		i += size
	}
	return n
}

// GrepAt runs q on the files of stream on the node at addr and calls fn
// with each line it answers, as Grep would (Line.Time and Level are
// parsed from the line). tlsConfig is nil without TLS. A node answers at
// most 10,000 matches (q.Limit; 0 means 1,000), with their context lines,
// and about 896 KiB of lines: truncated says it stopped at one of those
// bounds (with context lines, at the limit, even if no match was left), so
// that a caller can narrow the query. A node runs two searches at once
// and refuses more.
func GrepAt(ctx context.Context, addr, stream string, q Query, tlsConfig *tls.Config, fn func(Line) error) (truncated bool, err error) {
	if stream != DefaultStream {
		if err := checkStreamName(stream); err != nil {
			return false, fmt.Errorf("logx: stream: %w", err)
		}
	}
	if err := checkAddr(addr); err != nil {
		return false, fmt.Errorf("logx: %w", err)
	}
	r := &grepRequest{Contains: q.Contains, Since: q.Since, Until: q.Until, Limit: q.Limit, Newest: q.Newest, Before: q.Before, After: q.After, MaxSeq: q.MaxSeq}
	if q.Regexp != nil {
		r.Regexp = q.Regexp.String()
	}
	if q.Level != nil {
		l := q.Level.Level()
		r.Level = &l
	}
	if _, err := r.query(); err != nil {
		return false, fmt.Errorf("logx: grep: %w", err)
	}
	timeout := remoteGrepTimeout + 10*time.Second
	conn, err := dialProto(ctx, addr, stream, wire.ProtoControl, 10*time.Second, tlsConfig)
	if err != nil {
		return false, fmt.Errorf("logx: %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := controlExchange(ctx, conn, controlRequest{Op: "grep", Grep: r, TimeoutMS: timeout.Milliseconds()}, time.Now().Add(timeout))
	if err != nil {
		return false, fmt.Errorf("logx: %s: %w", addr, err)
	}
	if err := resp.err(); err != nil {
		return false, err
	}
	for _, gl := range resp.Lines {
		l := Line{Seq: gl.Seq, Context: gl.Context, Text: []byte(gl.Text)}
		if _, t, level, err := parseHead(l.Text); err == nil {
			l.Time, l.Level = t, level
		}
		if err := fn(l); err != nil {
			return false, err
		}
	}
	return resp.Truncated, nil
}
