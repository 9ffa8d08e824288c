package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logx-dev/logx"
)

// How logx forward reads a line's time and level (-parse). A line that
// does not parse as the format says is logged as it is, at -level and the
// time it is read: nothing read is dropped.
const (
	parseNone    = "none"    // every line as it is (the default)
	parseAuto    = "auto"    // JSON if it starts with {, else a time prefix, else logfmt with time= or level=
	parseJSON    = "json"    // a JSON object: time, level and msg by their usual keys, the rest attributes
	parseLogfmt  = "logfmt"  // key=value pairs: the same keys
	parseRFC3339 = "rfc3339" // a time prefix (RFC 3339, "2006-01-02 15:04:05", syslog's "Jan _2 15:04:05"), then maybe a level
)

var parseModes = []string{parseNone, parseAuto, parseJSON, parseLogfmt, parseRFC3339}

// lineParser turns input lines into entries.
type lineParser struct {
	mode  string
	level slog.Level     // a line's level when it states none
	loc   *time.Location // the zone of times that name none
	now   func() time.Time
}

// parse returns the entry for line: what it states, or the line as it is.
func (p *lineParser) parse(line string) logx.ClientEntry {
	var e logx.ClientEntry
	ok := false
	switch p.mode {
	case parseJSON:
		e, ok = p.parseJSON(line)
	case parseLogfmt:
		e, ok = p.parseLogfmt(line, false)
	case parseRFC3339:
		e, ok = p.parsePrefix(line)
	case parseAuto:
		if strings.HasPrefix(line, "{") {
			e, ok = p.parseJSON(line)
		}
		if !ok {
			e, ok = p.parsePrefix(line)
		}
		if !ok {
			e, ok = p.parseLogfmt(line, true)
		}
	}
	if !ok {
		return logx.ClientEntry{Level: p.level, Msg: line}
	}
	return e
}

// The keys that carry a line's time, level and message in JSON and logfmt,
// compared without case (Go's slog: time, level, msg; zap: ts, level,
// msg; logrus: time, level, msg; go test -json: Time, Action, Output).
var (
	timeKeys  = []string{"time", "ts", "timestamp", "@timestamp"}
	levelKeys = []string{"level", "lvl", "severity", "loglevel"}
	msgKeys   = []string{"msg", "message", "output"}
)

func keyIn(k string, keys []string) bool {
	for _, want := range keys {
		if strings.EqualFold(k, want) {
			return true
		}
	}
	return false
}

// field applies one key and value of a JSON or logfmt line to e; false if
// a time or level key holds what is not one.
func (p *lineParser) field(e *logx.ClientEntry, k string, v any, haveTime, haveLevel, haveMsg *bool) bool {
	s, isString := v.(string)
	switch {
	case !*haveTime && keyIn(k, timeKeys):
		t, ok := p.parseTimeValue(v)
		if !ok || !representable(t) {
			return false
		}
		e.Time, *haveTime = t, true
	case !*haveLevel && keyIn(k, levelKeys) && isString:
		l, ok := levelName(s)
		if !ok {
			return false
		}
		e.Level, *haveLevel = l, true
	case !*haveMsg && keyIn(k, msgKeys) && isString:
		e.Msg, *haveMsg = strings.TrimSuffix(s, "\n"), true
	case reservedKeys[strings.ToLower(k)]:
		return false // a second time, level or msg, or a seq, node or caller: the line as it is
	default:
		e.Attrs = append(e.Attrs, slog.Any(k, v))
	}
	return true
}

// parseJSON reads a JSON object, keeping its keys' order. An object with
// no members gives nothing to keep, so it is not taken: the line goes in
// as it is.
func (p *lineParser) parseJSON(line string) (logx.ClientEntry, bool) {
	e := logx.ClientEntry{Level: p.level}
	var haveTime, haveLevel, haveMsg bool
	members := 0
	err := eachJSONMember([]byte(line), func(k string, v any) error {
		members++
		if !p.field(&e, k, v, &haveTime, &haveLevel, &haveMsg) {
			return errNoParse
		}
		return nil
	})
	return e, err == nil && members > 0
}

var errNoParse = errors.New("does not parse")

// parseLogfmt reads key=value pairs (values bare or double-quoted with Go
// escapes). In auto mode (needKey) the line must name a time or a level.
func (p *lineParser) parseLogfmt(line string, needKey bool) (logx.ClientEntry, bool) {
	e := logx.ClientEntry{Level: p.level}
	var haveTime, haveLevel, haveMsg bool
	rest := strings.TrimSpace(line)
	if rest == "" {
		return e, false
	}
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 || strings.ContainsAny(rest[:eq], " \t\"") {
			return e, false
		}
		k := rest[:eq]
		rest = rest[eq+1:]
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return e, false
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			end := strings.IndexAny(rest, " \t")
			if end < 0 {
				end = len(rest)
			}
			v, rest = rest[:end], rest[end:]
		}
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			return e, false
		}
		rest = strings.TrimLeft(rest, " \t")
		if !p.field(&e, k, v, &haveTime, &haveLevel, &haveMsg) {
			return e, false
		}
	}
	if needKey && !haveTime && !haveLevel {
		return e, false
	}
	return e, true
}

// prefixLayouts are the time prefixes parsePrefix knows, by how many
// space-separated words they take, most words first.
var prefixLayouts = []struct {
	words  int
	layout string
}{
	{3, "Jan 2 15:04:05"},      // syslog, without a year
	{2, "2006-01-02 15:04:05"}, // dpkg, Python's logging (a fraction after a comma or a dot)
	{2, "2006/01/02 15:04:05"}, // Go's log
	{1, time.RFC3339Nano},      // hclog, and most else
}

// parsePrefix reads a time at the start of line, then a level word if one
// follows (INFO, [WARN], error:); the rest is the message.
func (p *lineParser) parsePrefix(line string) (logx.ClientEntry, bool) {
	e := logx.ClientEntry{Level: p.level}
	for _, pl := range prefixLayouts {
		words, rest, ok := cutWords(line, pl.words)
		if !ok {
			continue
		}
		t, err := time.ParseInLocation(pl.layout, strings.Join(words, " "), p.loc)
		if err != nil {
			continue
		}
		if pl.words == 2 { // PostgreSQL's "2006-01-02 15:04:05.000 UTC": a zone only if it says UTC or GMT
			if w, after, _ := strings.Cut(rest, " "); w == "UTC" || w == "GMT" {
				t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
				rest = strings.TrimLeft(after, " \t")
			}
		}
		if t.Year() == 0 { // syslog: this year, or the last if that is in the future
			now := p.now().In(p.loc)
			t = t.AddDate(now.Year(), 0, 0)
			if t.After(now.Add(24 * time.Hour)) {
				t = t.AddDate(-1, 0, 0)
			}
		}
		if w, after, _ := strings.Cut(rest, " "); w != "" {
			if l, ok := levelName(strings.Trim(w, "[]:")); ok {
				e.Level, rest = l, strings.TrimLeft(after, " \t")
			}
		}
		if !representable(t) {
			return e, false
		}
		e.Time, e.Msg = t, rest
		return e, true
	}
	return e, false
}

// representable reports whether a log line can carry t: a time in
// 1970-2261 (Unix nanoseconds, after the epoch). Another is a time the
// line states but the log could not keep: the line is logged as it is.
func representable(t time.Time) bool {
	return t.Year() >= 1970 && t.Year() <= 2261
}

// cutWords returns the first n words of line, separated by spaces and
// tabs, and the rest after the spaces that follow them; false if line has
// fewer.
func cutWords(line string, n int) (words []string, rest string, ok bool) {
	rest = line
	for range n {
		rest = strings.TrimLeft(rest, " \t")
		end := strings.IndexAny(rest, " \t")
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			return nil, "", false
		}
		words = append(words, rest[:end])
		rest = rest[end:]
	}
	return words, strings.TrimLeft(rest, " \t"), true
}

// parseTimeValue reads a time value: RFC 3339 text, or Unix seconds
// (milliseconds above 1e12, microseconds above 1e15, nanoseconds above
// 1e18) as a number or numeric text.
func (p *lineParser) parseTimeValue(v any) (time.Time, bool) {
	var f float64
	switch x := v.(type) {
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t, true
		}
		n, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return time.Time{}, false
		}
		f = n
	case int64:
		f = float64(x)
	case float64:
		f = x
	default:
		return time.Time{}, false
	}
	switch {
	case f <= 0 || math.IsNaN(f) || math.IsInf(f, 0):
		return time.Time{}, false
	case f > 1e18:
		return time.Unix(0, int64(f)), true
	case f > 1e15:
		return time.UnixMicro(int64(f)), true
	case f > 1e12:
		return time.UnixMilli(int64(f)), true
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// levelName reads the level names logging libraries write, without case:
// slog's and logx's (with +N/-N), and trace, notice, warning, err, crit,
// fatal, panic, alert, emerg (the last six as ERROR+4).
func levelName(s string) (slog.Level, bool) {
	if s == "" || len(s) > 16 || !utf8.ValidString(s) {
		return 0, false
	}
	switch strings.ToLower(s) {
	case "trace":
		return logx.LevelDebug - 4, true
	case "notice", "information", "informational":
		return logx.LevelInfo, true
	case "err":
		return logx.LevelError, true
	case "crit", "critical", "fatal", "panic", "alert", "emerg", "emergency", "dpanic":
		return logx.LevelError + 4, true
	}
	l, err := logx.ParseLevel(s)
	return l, err == nil
}

// newLineParser checks -parse and -tz.
func newLineParser(mode, tz string, level slog.Level) (*lineParser, error) {
	known := false
	for _, m := range parseModes {
		known = known || m == mode
	}
	if !known {
		return nil, fmt.Errorf("-parse %q: want one of %s", mode, strings.Join(parseModes, ", "))
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("-tz %q: %v", tz, err)
	}
	return &lineParser{mode: mode, level: level, loc: loc, now: time.Now}, nil
}
