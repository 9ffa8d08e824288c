package logx

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The renderers skip plain runs eight bytes at a time (render.go). These
// are references written another way, a rune at a time from the rules the
// renderers' comments state, which the fast ones must match byte for byte
// (TestRenderMatchesReference, FuzzEscape).

// needsQuotingRef: empty, or a rune that is a space, not printable,
// invalid UTF-8 (or U+FFFD itself), '=' or '"'.
func needsQuotingRef(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) || r == '=' || r == '"' {
			return true
		}
	}
	return false
}

// appendTextStringRef: as it is, or as strconv.Quote quotes it.
func appendTextStringRef(dst []byte, s string) []byte {
	if !needsQuotingRef(s) {
		return append(dst, s...)
	}
	return strconv.AppendQuote(dst, s)
}

// appendJSONStringRef: '"' and '\\' escaped with a backslash, \n \r \t,
// other C0 controls and DEL as \u00XX, invalid UTF-8 as \ufffd, C1
// controls and U+2028/U+2029 as \uXXXX, the rest as it is.
func appendJSONStringRef(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i, r := range s {
		size := utf8.RuneLen(r)
		if r == utf8.RuneError && !strings.HasPrefix(s[i:], "\ufffd") {
			size = 1
		}
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r == '\t':
			dst = append(dst, `\t`...)
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029':
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, s[i:i+size]...)
		}
	}
	return append(dst, '"')
}

// TestRenderMatchesReference checks the word-at-a-time renderers against the
// reference on every string of up to 20 bytes that puts one byte of
// interest (each byte a stop flag tests for, and its neighbours) at any
// position in a run of plain ones, on pairs of them (fewer with -short),
// and on random strings drawn from the same bytes and multi-byte runes.
func TestRenderMatchesReference(t *testing.T) {
	check := func(s string) {
		t.Helper()
		if got, want := needsQuoting(s), needsQuotingRef(s); got != want {
			t.Fatalf("needsQuoting(%q) = %v, the reference %v", s, got, want)
		}
		if got, want := appendTextString(nil, s), appendTextStringRef(nil, s); string(got) != string(want) {
			t.Fatalf("appendTextString(%q) = %s, the reference %s", s, got, want)
		}
		if got, want := appendJSONString(nil, s), appendJSONStringRef(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, the reference %s", s, got, want)
		}
	}
	special := []byte{0, 0x1f, ' ', '!', '"', '#', '<', '=', '>', '[', '\\', ']', '}', '~', 0x7f, 0x80, 0x9f, 0xa0, 0xc2, 0xe2, 0xff}
	second := special // the second byte of a pair
	if testing.Short() {
		second = []byte{' ', '"', '=', '\\', 0x7f, 0x80}
	}
	for n := 0; n <= 20; n++ {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = 'a' + byte(i%26)
		}
		check(string(plain))
		for i := 0; i < n; i++ {
			for _, c := range special {
				b := append([]byte(nil), plain...)
				b[i] = c
				check(string(b))
				for j := i + 1; j < n; j++ {
					for _, d := range second {
						b2 := append([]byte(nil), b...)
						b2[j] = d
						check(string(b2))
					}
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	runes := []string{"é", "\u00a0", "\u2028", "\u2029", "\u0085", "世", "\U0001F600", "\ufffd"}
	for range 20000 {
		var b []byte
		for range rng.IntN(40) {
			switch rng.IntN(4) {
			case 0:
				b = append(b, special[rng.IntN(len(special))])
			case 1:
				b = append(b, runes[rng.IntN(len(runes))]...)
			default:
				b = append(b, byte('a'+rng.IntN(26)))
			}
		}
		check(string(b))
	}
}

// BenchmarkRenderString renders what every entry holds: a message of
// words (quoted), a caller (a token) and the same as a JSON string, with
// the renderers and with the reference.
//
//	go test -run '^$' -bench RenderString -count 5 .
func BenchmarkRenderString(b *testing.B) {
	msg := makeMessages(1, 100, 1)[0]
	caller := "service/handler_payments.go:1234"
	for _, c := range []struct {
		name       string
		text, json func([]byte, string) []byte
	}{
		{"word", appendTextString, appendJSONString},
		{"reference", appendTextStringRef, appendJSONStringRef},
	} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			for b.Loop() {
				buf = c.text(buf[:0], msg)
				buf = c.text(buf, caller)
				buf = c.json(buf, msg)
			}
		})
	}
}
