package main

import (
	"bytes"
	"fmt"
	"io"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// appendTermSafe appends b to dst with what could change what a terminal
// shows escaped: C0 characters other than tab, DEL, C1 characters, bytes
// that are not UTF-8, and the characters that reorder or hide text
// (hidden) become \xNN, \uNNNN or \UNNNNNNNN. Lines and errors come from
// log files and from other nodes (a remote grep's lines, a node's error
// text); a line a node writes holds only what its callers logged, and a
// damaged file or a compromised node could send escape sequences that
// move the cursor, rewrite what the terminal shows or set its title, and
// a caller could log bidirectional overrides that make a line read as
// another.
func appendTermSafe(dst, b []byte) []byte {
	return appendEscaped(dst, b, false)
}

// appendEscaped is appendTermSafe; inJSON says b is JSON that
// encoding/json wrote, whose C0 characters are its own layout
// (MarshalIndent's newlines) or escaped already, whose DEL becomes the
// JSON escape \u007f, and whose runes past U+FFFF become a surrogate
// pair, as JSON spells them. In text, a rune past U+FFFF becomes
// \UNNNNNNNN, and a byte that is not UTF-8 \xNN (0x9b is a CSI to a
// terminal that reads bytes as Latin-1).
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
			switch {
			case r == utf8.RuneError && n == 1:
				dst = fmt.Appendf(dst, `\x%02x`, c)
			case !hidden(r):
				dst = append(dst, b[i:i+n]...)
			case r <= 0xffff:
				dst = fmt.Appendf(dst, `\u%04x`, r)
			case inJSON:
				r1, r2 := utf16.EncodeRune(r)
				dst = fmt.Appendf(dst, `\u%04x\u%04x`, r1, r2)
			default:
				dst = fmt.Appendf(dst, `\U%08x`, r)
			}
			i += n - 1
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// hidden reports whether r is a control (C1), or a character a terminal
// does not show that changes what is shown or carries what is not: a
// format character (Cf: bidirectional marks, embeddings, overrides and
// isolates, which reorder the text around them, "Trojan Source"; zero
// width spaces, soft hyphens, tags), a line or paragraph separator
// (U+2028, U+2029: a break where a terminal shows none), another default
// ignorable (the Hangul fillers, U+034F, U+17B4/5) or a variation
// selector. Kept, since scripts and emoji need them: the zero width
// (non-)joiner, the emoji and text presentation selectors (U+FE0E,
// U+FE0F) and the Mongolian free variation selectors.
func hidden(r rune) bool {
	switch {
	case r < 0x80, r == 0x200c, r == 0x200d, r == 0xfe0e, r == 0xfe0f, r >= 0x180b && r <= 0x180f && r != 0x180e:
		return false
	case r <= 0x9f, r == 0x2028, r == 0x2029:
		return true
	}
	return unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

func hasTermControl(b []byte) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c < 0x20 && c != '\t' || c == 0x7f:
			return true
		case c >= 0x80:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 || hidden(r) {
				return true
			}
			i += n - 1
		}
	}
	return false
}

// jsonTermSafe escapes, in JSON that encoding/json wrote, the terminal
// controls it leaves as they are: DEL, C1 characters and the hidden ones
// (it escapes C0 ones, U+2028 and U+2029 already, and writes only UTF-8)
// become \u007f and \uNNNN (a surrogate pair past U+FFFF). Outside
// strings JSON has only printable ASCII, so the result is the same JSON
// value.
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

// termSafeWriter writes to w with each line's terminal controls escaped
// (appendTermSafe), its newlines kept: logx node's stderr, where the
// library's diagnostics and hashicorp/raft's quote what peers sent (a
// peer's error text, an address).
type termSafeWriter struct{ w io.Writer }

func (t termSafeWriter) Write(p []byte) (int, error) {
	var out []byte
	for i, line := range bytes.Split(p, []byte("\n")) {
		if i > 0 {
			out = append(out, '\n')
		}
		out = appendTermSafe(out, line)
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
