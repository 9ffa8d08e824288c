package logx

import (
	"bytes"
	"fmt"
)

// The check of a JSON record body (checkRecord, bodycheck.go): a scanner
// that accepts exactly what json.Valid accepts for one object's members.

// maxJSONDepth is encoding/json's nesting limit: checkJSONMembers accepts
// what json.Valid does.
const maxJSONDepth = 10000

// checkJSONMembers checks that {"seq":N,<body>} is one JSON object, that is
// that body is one or more object members. The characters are checked
// already.
func checkJSONMembers(body []byte) error {
	s := jsonScan{b: body, depth: 1}
	if !s.members() || s.i != len(s.b) {
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

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
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

// str scans a string. A control character in it (invalid JSON) is left to
// checkChars.
func (s *jsonScan) str() bool {
	if s.i == len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for s.i++; ; {
		s.i = quoteOrBackslash(s.b, s.i)
		switch {
		case s.i == len(s.b):
			return false
		case s.b[s.i] == '"':
			s.i++
			return true
		case s.i+1 == len(s.b):
			return false
		}
		switch s.b[s.i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.i += 2
		case 'u':
			if s.i+6 > len(s.b) {
				return false
			}
			for _, h := range s.b[s.i+2 : s.i+6] {
				if !isHex(h) {
					return false
				}
			}
			s.i += 6
		default:
			return false
		}
	}
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
