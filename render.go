package logx

import (
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Format selects how lines are rendered.
type Format int

const (
	// FormatText renders logfmt-style lines:
	//
	//	seq=17 time=2026-11-24T23:35:45.123456Z level=INFO node=n1 caller=app/main.go:42 msg="user signed in" user=42
	FormatText Format = iota
	// FormatJSON renders one JSON object per line:
	//
	//	{"seq":17,"time":"2026-11-24T23:35:45.123456Z","level":"INFO","node":"n1","caller":"app/main.go:42","msg":"user signed in","user":42}
	FormatJSON
)

// String returns "text" or "json".
func (f Format) String() string {
	switch f {
	case FormatText:
		return "text"
	case FormatJSON:
		return "json"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// timeLayout is fixed-width so that lines sort and compare by time as text.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// The body of a line is rendered once, on the node where the call was made,
// from the entry's own fields; it travels in the Raft log, and apply adds only
// the sequence number and the newline. Nothing in a line comes from the
// applying node, so every node writes the same bytes.

// appendBodyStart renders the built-in fields. t may be zero (omitted), and
// so may caller.
func appendBodyStart(dst []byte, f Format, t time.Time, level slog.Level, node, caller, msg string) []byte {
	if f == FormatJSON {
		if !t.IsZero() {
			dst = append(dst, `"time":"`...)
			dst = appendTime(dst, t)
			dst = append(dst, `",`...)
		}
		dst = append(dst, `"level":`...)
		dst = appendJSONString(dst, level.String())
		dst = append(dst, `,"node":`...)
		dst = appendJSONString(dst, node)
		if caller != "" {
			dst = append(dst, `,"caller":`...)
			dst = appendJSONString(dst, caller)
		}
		dst = append(dst, `,"msg":`...)
		return appendJSONString(dst, msg)
	}
	if !t.IsZero() {
		dst = append(dst, "time="...)
		dst = appendTime(dst, t)
		dst = append(dst, ' ')
	}
	dst = append(dst, "level="...)
	dst = appendTextString(dst, level.String())
	dst = append(dst, " node="...)
	dst = appendTextString(dst, node)
	if caller != "" {
		dst = append(dst, " caller="...)
		dst = appendTextString(dst, caller)
	}
	dst = append(dst, " msg="...)
	return appendTextString(dst, msg)
}

// appendLine renders the full line for sequence number seq and a body.
func appendLine(dst []byte, f Format, seq uint64, body []byte) []byte {
	if f == FormatJSON {
		dst = append(dst, `{"seq":`...)
		dst = strconv.AppendUint(dst, seq, 10)
		dst = append(dst, ',')
		dst = append(dst, body...)
		return append(dst, '}', '\n')
	}
	dst = append(dst, "seq="...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ' ')
	dst = append(dst, body...)
	return append(dst, '\n')
}

// appendAttrText appends " key=value" for a, with group prefix prefix.
func appendAttrText(dst []byte, prefix string, a slog.Attr) []byte {
	return appendAttrTextIn(dst, prefix, a, 0)
}

// appendAttrTextIn is appendAttrText for a nested in depth groups of
// attributes: past maxJSONDepth a group is written as tooDeep, as in JSON,
// so that a LogValuer that returns a group of itself ends (its key grew
// by a level each time, and a cycle overflowed the stack, which no
// recover catches).
func appendAttrTextIn(dst []byte, prefix string, a slog.Attr, depth int) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup && depth >= maxJSONDepth && len(a.Value.Group()) > 0 {
		a.Value = slog.StringValue(tooDeep)
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return dst
		}
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, ga := range attrs {
			dst = appendAttrTextIn(dst, p, ga, depth+1)
		}
		return dst
	}
	dst = append(dst, ' ')
	if prefix == "" {
		dst = appendTextString(dst, a.Key)
	} else {
		dst = appendTextString(dst, prefix+a.Key)
	}
	dst = append(dst, '=')
	return appendValueText(dst, a.Value)
}

func appendValueText(dst []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendTextString(dst, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(dst, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(dst, v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.AppendFloat(dst, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(dst, v.Bool())
	case slog.KindDuration:
		return appendTextString(dst, v.Duration().String())
	case slog.KindTime:
		return v.Time().AppendFormat(dst, time.RFC3339Nano)
	}
	return appendAnyText(dst, v.Any())
}

// appendAnyText appends x, a KindAny value, as appendValueText does. A
// panic in the value's own method (an Error or MarshalText of a nil
// pointer, most often) is recovered as log/slog's handlers recover it:
// "<nil>" for a nil pointer, "!PANIC: ..." otherwise, never a crash of the
// caller.
func appendAnyText(dst []byte, x any) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			out = appendTextString(dst, panicText(x, r))
		}
	}()
	switch x := x.(type) {
	case error:
		return appendTextString(dst, x.Error())
	case encoding.TextMarshaler:
		b, err := x.MarshalText()
		if err != nil {
			return appendTextString(dst, "!ERROR:"+err.Error())
		}
		return appendTextString(dst, string(b))
	case []byte:
		return appendTextString(dst, string(x))
	default:
		if b, ok := byteSlice(x); ok {
			return appendTextString(dst, string(b))
		}
		return appendTextString(dst, fmt.Sprintf("%+v", x))
	}
}

// byteSlice returns x's bytes if it is a slice of bytes of a named type
// (json.RawMessage, net.HardwareAddr's kin: log/slog's text handler writes
// those as their text, as %s does), which the case of []byte misses; %+v
// wrote them as a list of numbers.
func byteSlice(x any) ([]byte, bool) {
	v := reflect.ValueOf(x)
	if v.Kind() != reflect.Slice || v.Type().Elem().Kind() != reflect.Uint8 {
		return nil, false
	}
	return v.Bytes(), true
}

// appendTextString appends s, quoted and escaped when it holds anything but
// printable non-space characters other than '=' and '"'. A quoted string
// never contains a raw newline or control character.
func appendTextString(dst []byte, s string) []byte {
	if !needsQuoting(s) {
		return append(dst, s...)
	}
	// Printable ASCII (the common case: a message with spaces) is quoted
	// here in one pass, as strconv.AppendQuote would, without its per-rune
	// work; anything else goes to strconv.AppendQuote.
	start := len(dst)
	dst = append(dst, '"')
	from := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && quoteStops(load64(s, i)) == 0 {
			i += 8 // eight bytes copied as they are
			continue
		}
		switch b := s[i]; {
		case b < ' ' || b > '~':
			return strconv.AppendQuote(dst[:start], s)
		case b == '"' || b == '\\':
			dst = append(dst, s[from:i]...)
			dst = append(dst, '\\', b)
			from = i + 1
		}
		i++
	}
	dst = append(dst, s[from:]...)
	return append(dst, '"')
}

// needsQuoting reports whether appendTextString quotes s: when it is empty
// or holds a space, '=', '"', a character that is not printable or invalid
// UTF-8.
func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		if i+8 <= len(s) && tokenStops(load64(s, i)) == 0 {
			i += 8
			continue
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if b <= ' ' || b == '=' || b == '"' || b == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// Eight bytes at a time: the renderers skip runs of bytes they copy as
// they are (most of every message) a word at a time. Each function below
// sets bit 7 of every byte of x that stops the run; a false flag can only
// sit above a true one (a borrow spreads up), so a zero result is exact.
const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// load64 returns s[i:i+8] as a little-endian word (one load: the compiler
// merges the byte loads).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// tokenStops flags what ends an unquoted text token: a byte beyond ASCII,
// a control character or space, DEL, '=' or '"'. (x - n*ones) &^ x flags
// the bytes below n; y = x ^ c*ones, (y - ones) &^ y those equal to c.
func tokenStops(x uint64) uint64 {
	eq, qu, del := x^(swarOnes*'='), x^(swarOnes*'"'), x^(swarOnes*0x7f)
	return (x | (x-swarOnes*'!')&^x | (eq-swarOnes)&^eq | (qu-swarOnes)&^qu | (del-swarOnes)&^del) & swarHighs
}

// quoteStops flags what a quoted text string or a JSON string does not
// copy as it is: a byte beyond ASCII, a control character, DEL, '"' or
// '\'.
func quoteStops(x uint64) uint64 {
	bs, qu, del := x^(swarOnes*'\\'), x^(swarOnes*'"'), x^(swarOnes*0x7f)
	return (x | (x-swarOnes*' ')&^x | (bs-swarOnes)&^bs | (qu-swarOnes)&^qu | (del-swarOnes)&^del) & swarHighs
}

// tooDeep is the value written, as a JSON string, for a group or a
// marshalled value that would nest the line deeper than maxJSONDepth:
// encoding/json's json.Valid refuses such a line, and so does a leader's
// check of forwarded batches (checkRecord), which would refuse the whole
// batch, other callers' entries with it. A LogValuer that returns a group
// of itself (a linked list) or a decoded request body reaches it.
const tooDeep = "!ERROR: nested deeper than 10000 levels"

// appendAttrJSON appends `,"key":value` for a; groups become nested objects.
// depth is how deep the object a goes in is nested: 1 for the line's own.
func appendAttrJSON(dst []byte, a slog.Attr, depth int) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return dst
		}
		if a.Key == "" { // inline
			for _, ga := range attrs {
				dst = appendAttrJSON(dst, ga, depth)
			}
			return dst
		}
		if depth >= maxJSONDepth {
			dst = jsonComma(dst)
			dst = appendJSONString(dst, a.Key)
			dst = append(dst, ':')
			return appendJSONString(dst, tooDeep)
		}
		start := len(dst)
		dst = jsonComma(dst)
		dst = appendJSONString(dst, a.Key)
		dst = append(dst, ':', '{')
		open := len(dst)
		for _, ga := range attrs {
			dst = appendAttrJSON(dst, ga, depth+1)
		}
		if len(dst) == open { // every member was empty
			return dst[:start]
		}
		return append(dst, '}')
	}
	dst = jsonComma(dst)
	dst = appendJSONString(dst, a.Key)
	dst = append(dst, ':')
	return appendValueJSON(dst, a.Value, depth)
}

// jsonComma appends a separator unless dst opens an object.
func jsonComma(dst []byte) []byte {
	if len(dst) == 0 || dst[len(dst)-1] == '{' {
		return dst
	}
	return append(dst, ',')
}

// appendValueJSON appends v, a member's value in an object nested depth
// deep.
func appendValueJSON(dst []byte, v slog.Value, depth int) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendJSONString(dst, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(dst, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(dst, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) { // not JSON numbers
			return appendJSONString(dst, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(dst, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(dst, int64(v.Duration()), 10)
	case slog.KindTime:
		dst = append(dst, '"')
		dst = v.Time().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"')
	}
	return appendAnyJSON(dst, v.Any(), depth)
}

// appendAnyJSON appends x, a KindAny value, as appendValueJSON does,
// recovering a panic in its methods as appendAnyText does.
func appendAnyJSON(dst []byte, x any, depth int) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			out = appendJSONString(dst, panicText(x, r))
		}
	}()
	switch y := x.(type) {
	case error:
		return appendJSONString(dst, y.Error())
	case json.Marshaler, encoding.TextMarshaler:
		// fall through to json.Marshal below
	case []byte:
		return appendJSONString(dst, string(y))
	}
	b, err := json.Marshal(x)
	if err != nil {
		return appendJSONString(dst, "!ERROR:"+err.Error())
	}
	if depth+jsonNesting(b) > maxJSONDepth {
		return appendJSONString(dst, tooDeep)
	}
	return appendMarshaled(dst, b)
}

// jsonNesting is how deeply b, one JSON value, nests arrays and objects: 0
// for a string, number or literal, 1 for [1,2], 2 for [[1]].
func jsonNesting(b []byte) int {
	depth, most := 0, 0
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++ // the escaped byte
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			if depth++; depth > most {
				most = depth
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return most
}

// panicText is what a value whose method panicked with r is written as:
// "<nil>" for a nil pointer (an Error or MarshalText that does not guard
// against its nil receiver), the panic otherwise, as log/slog writes them.
func panicText(x any, r any) string {
	if v := reflect.ValueOf(x); v.Kind() == reflect.Pointer && v.IsNil() {
		return "<nil>"
	}
	return fmt.Sprintf("!PANIC: %v", r)
}

// appendMarshaled appends b, a value json.Marshal returned, escaping what
// json.Marshal leaves raw: DEL, C1 controls and (from a MarshalJSON method)
// invalid UTF-8, as appendJSONString does; U+2028/9 too, in case. Valid JSON
// holds such characters only inside strings, where an escape means the same.
// json.Marshal escapes C0 controls itself.
func appendMarshaled(dst, b []byte) []byte {
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			i++
			if c == 0x7f {
				dst = append(dst, b[start:i-1]...)
				dst = append(dst, `\u007f`...)
				start = i
			}
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, b[start:i]...)
			dst = append(dst, `\ufffd`...)
			start = i + size
		case r == '\u2028' || r == '\u2029' || r < 0xa0:
			dst = append(dst, b[start:i]...)
			dst = append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	return append(dst, b[start:]...)
}

// recordTime returns t, or the zero time (the line has none) when t is outside
// what a record's Unix nanoseconds can hold (about 1678 to 2262): a line's
// time and its record's must agree, and the leader refuses records where
// they do not (checkRecord).
func recordTime(t time.Time) time.Time {
	if t.IsZero() || !time.Unix(0, t.UnixNano()).Equal(t) {
		return time.Time{}
	}
	return t
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Control characters (C0, DEL,
// C1), U+2028, U+2029 and invalid UTF-8 are escaped, so the result is one
// line that cannot drive a terminal.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && quoteStops(load64(s, i)) == 0 {
			i += 8
			continue
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' && b != 0x7f {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' || (r >= 0x80 && r < 0xa0) {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendAttrs renders the attributes of an entry after its built-in fields:
// those of the handler h (nil for the Logx methods), then args, attrs or rec.
func (h *handler) appendAttrs(b []byte, f Format, args []any, attrs []slog.Attr, rec *slog.Record) []byte {
	if f == FormatText {
		prefix := ""
		if h != nil {
			for _, p := range h.pre {
				b = append(b, p...)
			}
			prefix = h.prefix
		}
		for len(args) > 0 {
			var a slog.Attr
			a, args = argsToAttr(args)
			b = appendAttrText(b, prefix, a)
		}
		for _, a := range attrs {
			b = appendAttrText(b, prefix, a)
		}
		if rec != nil {
			rec.Attrs(func(a slog.Attr) bool {
				b = appendAttrText(b, prefix, a)
				return true
			})
		}
		return b
	}

	var groups []string
	if h != nil {
		if len(h.pre[0]) > 0 {
			b = append(jsonComma(b), h.pre[0]...)
		}
		groups = h.groups
	}
	depth := 1 + len(groups) // the innermost group's object
	var starts, opens [8]int
	st, op := starts[:0], opens[:0]
	for i, g := range groups {
		st = append(st, len(b))
		b = jsonComma(b)
		b = appendJSONString(b, g)
		b = append(b, ':', '{')
		op = append(op, len(b))
		b = append(b, h.pre[i+1]...)
	}
	for len(args) > 0 {
		var a slog.Attr
		a, args = argsToAttr(args)
		b = appendAttrJSON(b, a, depth)
	}
	for _, a := range attrs {
		b = appendAttrJSON(b, a, depth)
	}
	if rec != nil {
		rec.Attrs(func(a slog.Attr) bool {
			b = appendAttrJSON(b, a, depth)
			return true
		})
	}
	// Close the groups, dropping those left empty.
	for i := len(groups) - 1; i >= 0; i-- {
		if len(b) == op[i] {
			b = b[:st[i]]
		} else {
			b = append(b, '}')
		}
	}
	return b
}

const badKey = "!BADKEY"

// argsToAttr turns the first of args into an Attr, as slog.Logger does:
// a string key and a value, an Attr, or a lone value under !BADKEY.
func argsToAttr(args []any) (slog.Attr, []any) {
	switch x := args[0].(type) {
	case string:
		if len(args) == 1 {
			return slog.String(badKey, x), nil
		}
		return slog.Any(x, args[1]), args[2:]
	case slog.Attr:
		return x, args[1:]
	default:
		return slog.Any(badKey, x), args[1:]
	}
}
