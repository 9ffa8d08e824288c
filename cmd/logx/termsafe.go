package main

import (
	"fmt"
	"unicode/utf8"
)

// appendTermSafe appends b to dst with its terminal controls escaped: C0
// characters other than tab, DEL, C1 characters (U+0080 to U+009F), and
// the invisible characters that reorder or hide text (hidden) become
// \xNN or \uNNNN. Lines and errors come from log files and from other
// nodes (a remote grep's lines, a node's error text); a line a node
// writes holds only what its callers logged, and a damaged file or a
// compromised node could send escape sequences that move the cursor,
// rewrite what the terminal shows or set its title, and a caller could
// log bidirectional overrides that make a line read as another.
func appendTermSafe(dst, b []byte) []byte {
	return appendEscaped(dst, b, false)
}

// appendEscaped is appendTermSafe; inJSON says b is JSON that
// encoding/json wrote, whose C0 characters are its own layout
// (MarshalIndent's newlines) or escaped already, and whose DEL becomes
// the JSON escape \u007f.
func appendEscaped(dst, b []byte, inJSON bool) []byte {
	if !hasTermControl(b) {
		return append(dst, b...)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x7f && inJSON:
			dst = append(dst, `\u007f`...)
		case c < 0x20 && c != '\t' && !inJSON || c == 0x7f:
			dst = fmt.Appendf(dst, `\x%02x`, c)
		case c >= 0x80:
			r, n := utf8.DecodeRune(b[i:])
			if hidden(r) {
				dst = fmt.Appendf(dst, `\u%04x`, r)
			} else {
				dst = append(dst, b[i:i+n]...)
			}
			i += n - 1
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// hidden reports whether r is a C1 control, or a character that is not
// shown but reorders the text around it (bidirectional marks, embeddings,
// overrides and isolates: "Trojan Source") or hides a difference (zero
// width space, word joiner, byte order mark), or breaks a line where a
// terminal shows none (U+2028, U+2029). Zero width (non-)joiners are
// left alone: scripts and emoji sequences need them.
func hidden(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f, r == 0x061c, r == 0x200b, r == 0x200e, r == 0x200f,
		r >= 0x2028 && r <= 0x202e, r == 0x2060, r >= 0x2066 && r <= 0x2069, r == 0xfeff:
		return true
	}
	return false
}

func hasTermControl(b []byte) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c < 0x20 && c != '\t' || c == 0x7f:
			return true
		case c >= 0x80:
			r, n := utf8.DecodeRune(b[i:])
			if hidden(r) {
				return true
			}
			i += n - 1
		}
	}
	return false
}

// jsonTermSafe escapes, in JSON that encoding/json wrote, the terminal
// controls it leaves as they are: DEL, C1 characters and the hidden ones
// (it escapes C0 ones, U+2028 and U+2029 already) become \u007f and
// \uNNNN. Outside strings JSON has only printable ASCII, so the result is
// the same JSON value.
func jsonTermSafe(b []byte) []byte {
	if !hasTermControl(b) {
		return b
	}
	return appendEscaped(make([]byte, 0, len(b)+16), b, true)
}

// termSafe is appendTermSafe for a string.
func termSafe(s string) string {
	b := []byte(s)
	if !hasTermControl(b) {
		return s
	}
	return string(appendTermSafe(nil, b))
}
