package logx

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Each format's check reads each byte once, checking characters as it
// parses (bodycheck.go, jsonscan.go). The references are the rules written
// another way: the characters first, a rune at a time (charsRef), then, in
// text, the pairs, with strconv.QuotedPrefix for the quoted strings
// (textPairsRef), and in JSON, json.Valid of the line. The fast checks
// must accept exactly what they accept (TestCheckTextPairsMatchesReference,
// TestCheckJSONMatchesReference, FuzzCheckRecord).

// charsRef: valid UTF-8 without C0, DEL, C1, U+2028 or U+2029.
func charsRef(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return false
			}
		}
		if r < ' ' || r >= 0x7f && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// textPairsRef: one or more " key=value" pairs, each key and value a string
// strconv.Unquote accepts or a non-empty run of printable runes other than
// spaces, '=' and '"'.
func textPairsRef(s string) bool {
	if !charsRef(s) || s == "" {
		return false
	}
	value := func(s string) (rest string, ok bool) {
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			return s[len(q):], err == nil
		}
		n := 0
		for _, r := range s {
			if r == ' ' || r == '=' {
				break
			}
			if r == '"' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
				return "", false
			}
			n += utf8.RuneLen(r)
		}
		return s[n:], n > 0
	}
	for s != "" {
		var ok bool
		if s, ok = strings.CutPrefix(s, " "); !ok {
			return false
		}
		if s, ok = value(s); !ok {
			return false
		}
		if s, ok = strings.CutPrefix(s, "="); !ok {
			return false
		}
		if s, ok = value(s); !ok {
			return false
		}
	}
	return true
}

// randomPairs returns text made of pieces of pairs, mostly well-formed,
// with the characters and escapes that matter to the check at random
// places.
func randomPairs(rng *rand.Rand) string {
	pieces := []string{
		" ", "=", `"`, `\`, "k", "key", "value", "a.b/c:1", "42", "-1.5",
		`\n`, `\"`, `\\`, `\x41`, `\x4`, `\u00e9`, `\ud800`, `\U0010ffff`, `\U00110000`, `\101`, `\400`, `\q`, `\'`,
		"é", "世", "\U0001F600", "\ufffd", "\u00a0", "\u200b", "\u2028", "\u2029", "\u0085", "\u009f",
		"\x00", "\t", "\n", "\x1f", "\x7f", "\xff", "\xc2", "\xe2\x80",
	}
	var b strings.Builder
	for range 1 + rng.IntN(6) {
		if rng.IntN(4) > 0 { // a well-formed pair
			b.WriteString(" ")
			for k := range 2 {
				if k == 1 {
					b.WriteString("=")
				}
				quoted := rng.IntN(2) == 0
				if quoted {
					b.WriteString(`"`)
				}
				for range 1 + rng.IntN(12) {
					p := pieces[4+rng.IntN(5)] // plain
					if rng.IntN(6) == 0 {
						p = pieces[rng.IntN(len(pieces))]
					}
					b.WriteString(p)
				}
				if quoted {
					b.WriteString(`"`)
				}
			}
			continue
		}
		for range 1 + rng.IntN(4) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
	}
	return b.String()
}

func TestCheckTextPairsMatchesReference(t *testing.T) {
	matchesReference(t, "checkTextPairs", func(b []byte) error { return checkTextPairs(b, 0) }, textPairsRef,
		[]string{` key=value.of-some.length:1 k="a quoted \"value\" é"`, ` msg="` + strings.Repeat("word ", 5) + `" i=12345`},
		[]byte{0, 0x1f, ' ', '!', '"', '=', '\\', 'x', 'u', '0', '4', 0x7f, 0x80, 0x9f, 0xa0, 0xc2, 0xe2, 0xff},
		randomPairs, 200000, 3)
}

// matchesReference fails unless fast accepts exactly what ref does: on
// each base; on it with every special byte put over, put in and cut at
// every place (the bases are long enough that the eight-byte steps meet
// each byte at each offset); and on n bodies from gen (a tenth with
// -short), of which ref must accept between 5 and 95 %, so that the
// generator reaches both sides of the rule.
func matchesReference(t *testing.T, name string, fast func([]byte) error, ref func(string) bool,
	bases []string, special []byte, gen func(*rand.Rand) string, n int, seed uint64) {
	t.Helper()
	check := func(s string) {
		t.Helper()
		if err, want := fast([]byte(s)), ref(s); (err == nil) != want {
			t.Fatalf("%s(%q) accepts: %v, the reference: %v (%v)", name, s, err == nil, want, err)
		}
	}
	for _, base := range bases {
		check(base)
		for i := range len(base) {
			for _, c := range special {
				b := []byte(base)
				b[i] = c
				check(string(b))
				check(string(b[:i+1]))
				check(base[:i] + string(c) + base[i:])
			}
		}
	}
	if testing.Short() {
		n /= 10
	}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	accepted := 0
	for range n {
		s := gen(rng)
		check(s)
		if ref(s) {
			accepted++
		}
	}
	if accepted < n/20 || accepted > n-n/20 {
		t.Fatalf("%d of %d random bodies accepted: the generator no longer explores both sides", accepted, n)
	}
}

// randomMembers returns text made of pieces of JSON object members, mostly
// well-formed, with the characters, escapes and white space that matter to
// the check at random places.
func randomMembers(rng *rand.Rand) string {
	odd := []string{
		" ", "\t", "\n", "\r", ",", ":", "{", "}", "[", "]", `"`, `\`, `\u00e9`, `\u12`, `\x41`, `\/`, `\n`,
		"é", "\u2028", "\u2029", "\u0085", "\ufffd", "\x00", "\x1f", "\x7f", "\xff", "\xe2\x80",
		"0", "-", "01", "1.", "1e", "1e+5", "true", "nul", "null",
	}
	var value func(depth int) string
	value = func(depth int) string {
		switch rng.IntN(6) {
		case 0:
			return "-12.5e3"
		case 1:
			return "true"
		case 2:
			if depth < 3 {
				return "[" + value(depth+1) + "," + value(depth+1) + "]"
			}
		case 3:
			if depth < 3 {
				return `{"a":` + value(depth+1) + "}"
			}
		}
		var b strings.Builder
		b.WriteString(`"`)
		for range rng.IntN(8) {
			if rng.IntN(5) == 0 {
				b.WriteString(odd[rng.IntN(len(odd))])
			} else {
				b.WriteString("word ")
			}
		}
		b.WriteString(`"`)
		return b.String()
	}
	var b strings.Builder
	b.WriteString(`"level":"INFO"`)
	for range rng.IntN(5) {
		if rng.IntN(5) == 0 {
			b.WriteString(odd[rng.IntN(len(odd))])
			continue
		}
		b.WriteString(`,"k":`)
		b.WriteString(value(0))
	}
	return b.String()
}

func TestCheckJSONMatchesReference(t *testing.T) {
	matchesReference(t, "checkJSONMembers", checkJSONMembers,
		func(s string) bool { return charsRef(s) && json.Valid(appendLine(nil, FormatJSON, 1, []byte(s))) },
		[]string{`"level":"INFO","msg":"a \"quoted\" word \u00e9 é","n":[1,-2.5e3,{"t":true}]`},
		[]byte{0, '\t', '\n', 0x1f, ' ', '"', ',', ':', '\\', 'u', '0', 0x7f, 0x80, 0x9f, 0xa0, 0xc2, 0xe2, 0xff},
		randomMembers, 100000, 5)
}
