package logx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// The check of a JSON record body (checkRecord, bodycheck.go): a scanner
// that accepts exactly what json.Valid accepts for one object's members.

// maxJSONDepth is encoding/json's nesting limit: checkJSONMembers accepts
// what json.Valid does.
const maxJSONDepth = 10000

// checkJSONMembers checks that {"seq":N,<body>} is one JSON object, that is
// that body is one or more object members, of characters checkChars
// accepts: one pass checks both. On failure it reports checkChars's fault
// if the body has one (a control character is a more useful answer than
// where the JSON broke).
func checkJSONMembers(body []byte) error {
	s := jsonScan{b: body, depth: 1}
	if !s.members() || s.i != len(s.b) {
		if err := checkChars(body); err != nil {
			return err
		}
		return fmt.Errorf("%w: byte %d: not JSON object members", errBadRecord, s.i)
	}
	return nil
}

// jsonScan is a JSON validator over b; i is the position reached (where it
// failed, on failure).
type jsonScan struct {
	b     []byte
	i     int
	depth int
}

// space skips spaces: JSON's other white space is control characters, which
// a body may not hold.
func (s *jsonScan) space() {
	for s.i < len(s.b) && s.b[s.i] == ' ' {
		s.i++
	}
}

// members scans `"key":value` pairs separated by commas, up to the end of
// b or a '}' (not consumed).
func (s *jsonScan) members() bool {
	for {
		s.space()
		if !s.str() {
			return false
		}
		s.space()
		if s.i == len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		if !s.value() {
			return false
		}
		s.space()
		if s.i == len(s.b) || s.b[s.i] != ',' {
			return true
		}
		s.i++
	}
}

// value scans one value with the space around it.
func (s *jsonScan) value() bool {
	s.space()
	if s.i == len(s.b) {
		return false
	}
	ok := false
	switch c := s.b[s.i]; {
	case c == '"':
		ok = s.str()
	case c == '{', c == '[':
		if s.depth++; s.depth > maxJSONDepth {
			return false
		}
		s.i++
		s.space()
		end := byte('}')
		switch {
		case c == '[':
			end = ']'
			if s.i < len(s.b) && s.b[s.i] != ']' {
				ok = s.elements()
			} else {
				ok = true
			}
		case s.i < len(s.b) && s.b[s.i] != '}':
			ok = s.members()
		default:
			ok = true
		}
		if ok = ok && s.i < len(s.b) && s.b[s.i] == end; ok {
			s.i++
		}
		s.depth--
	case c == '-', c >= '0' && c <= '9':
		ok = s.number()
	case c == 't':
		ok = s.literal("true")
	case c == 'f':
		ok = s.literal("false")
	case c == 'n':
		ok = s.literal("null")
	}
	s.space()
	return ok
}

// elements scans array elements separated by commas, up to a ']' (not
// consumed).
func (s *jsonScan) elements() bool {
	for {
		if !s.value() {
			return false
		}
		if s.i == len(s.b) || s.b[s.i] != ',' {
			return true
		}
		s.i++
	}
}

func (s *jsonScan) literal(w string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		return false
	}
	s.i += len(w)
	return true
}

// str scans a string of characters checkChars accepts.
func (s *jsonScan) str() bool {
	b, i := s.b, s.i
	if i == len(b) || b[i] != '"' {
		return false
	}
	for i++; i < len(b); {
		if i+8 <= len(b) {
			// Eight bytes at once, to the first the renderer would not
			// have copied as it is (quoteStops).
			m := quoteStops(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return true
		case c == '\\':
			if i+1 == len(b) {
				s.i = i
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					s.i = i
					return false
				}
				i += 6
			default:
				s.i = i
				return false
			}
		case c >= utf8.RuneSelf:
			_, n, err := checkRune(b, i, 0)
			if err != nil {
				s.i = i
				return false
			}
			i += n
		case c < ' ' || c == 0x7f:
			s.i = i
			return false
		default:
			i++
		}
	}
	s.i = i
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScan) number() bool {
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.digits() == 0:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *jsonScan) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}
