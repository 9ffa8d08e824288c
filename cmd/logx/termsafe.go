package main

import "fmt"

// appendTermSafe appends b to dst with its terminal controls escaped: C0
// characters other than tab, DEL, and C1 characters (U+0080 to U+009F)
// become \xNN or \u00NN. Lines and errors come from log files and from
// other nodes (a remote grep's lines, a node's error text); a line a node
// writes holds none, but a damaged file or a compromised node could send
// escape sequences that move the cursor, rewrite what the terminal shows
// or set its title.
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
		case c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			dst = fmt.Appendf(dst, `\u%04x`, b[i+1])
			i++
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func hasTermControl(b []byte) bool {
	for i, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f || c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f {
			return true
		}
	}
	return false
}

// jsonTermSafe escapes, in JSON that encoding/json wrote, the terminal
// controls it leaves as they are: DEL and C1 characters (it escapes C0
// ones already) become \u007f and \u0080 to \u009f. Outside strings JSON
// has only printable ASCII, so the result is the same JSON value.
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
