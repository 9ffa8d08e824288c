package logx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/logx-dev/logx/internal/wire"
)

// The leader checks every record of a forwarded batch before the batch
// enters the Raft log: apply writes a body as it is (seq=N <body>), so a
// body that is not what logx's renderer produces could add a line, forge a
// sequence number or a level, or break the line's JSON. checkRecord accepts
// what appendBodyStart and the attribute appenders produce and refuses the
// rest. It runs for every forwarded record, so it allocates nothing.

// errBadRecord is wrapped by every error checkRecord returns.
var errBadRecord = errors.New("logx: record would not render as one well-formed line")

// checkRecord reports whether body, with level and unixNano, renders in
// format f as exactly one well-formed line:
//   - valid UTF-8 without control characters (C0, DEL, C1) or U+2028/U+2029;
//   - a head as appendBodyStart writes it: the record's time (to the
//     microsecond) if it has one (unixNano 0 means none; a head may still
//     show 1970-01-01T00:00:00.000000Z then, for a call made at that
//     instant), then the record's level;
//   - text: then one or more " key=value" pairs, each key and value a token
//     appendTextString leaves unquoted or a string strconv.Unquote accepts;
//   - JSON: {"seq":N,<body>} is one JSON object.
func checkRecord(f Format, level slog.Level, unixNano int64, body []byte) error {
	if err := checkChars(body); err != nil {
		return err
	}
	var timeKey, levelKey string
	switch f {
	case FormatText:
		timeKey, levelKey = "time=", "level="
	case FormatJSON:
		timeKey, levelKey = `"time":"`, `"level":"`
	default:
		return fmt.Errorf("%w: unknown format %d", errBadRecord, int(f))
	}
	b := body
	if bytes.HasPrefix(b, []byte(timeKey)) {
		var tmp [len(timeLayout)]byte
		want := appendRecordTime(tmp[:0], unixNano)
		b = b[len(timeKey):]
		if !bytes.HasPrefix(b, want) {
			return fmt.Errorf("%w: its time is not the record's (%s)", errBadRecord, string(want))
		}
		b = b[len(want):]
		sep := " "
		if f == FormatJSON {
			sep = `",`
		}
		if !bytes.HasPrefix(b, []byte(sep)) {
			return fmt.Errorf("%w: no %q after its time", errBadRecord, sep)
		}
		b = b[len(sep):]
	} else if unixNano != 0 {
		return fmt.Errorf("%w: the record has a time and the body none", errBadRecord)
	}
	if !bytes.HasPrefix(b, []byte(levelKey)) {
		return fmt.Errorf("%w: no %s where the level belongs", errBadRecord, levelKey)
	}
	b = b[len(levelKey):]
	var tmp [24]byte
	want := appendLevel(tmp[:0], level)
	if !bytes.HasPrefix(b, want) {
		return fmt.Errorf("%w: its level is not the record's (%s)", errBadRecord, string(want))
	}
	b = b[len(want):]
	if f == FormatJSON {
		if len(b) == 0 || b[0] != '"' {
			return fmt.Errorf("%w: its level is not the record's (%s)", errBadRecord, string(want))
		}
		return checkJSONMembers(body)
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: nothing after the level", errBadRecord)
	}
	return checkTextPairs(b, len(body)-len(b))
}

// appendLevel appends l.String() without allocating.
func appendLevel(dst []byte, l slog.Level) []byte {
	var base string
	switch {
	case l < slog.LevelInfo:
		base, l = "DEBUG", l-slog.LevelDebug
	case l < slog.LevelWarn:
		base, l = "INFO", l-slog.LevelInfo
	case l < slog.LevelError:
		base, l = "WARN", l-slog.LevelWarn
	default:
		base, l = "ERROR", l-slog.LevelError
	}
	dst = append(dst, base...)
	if l > 0 {
		dst = append(dst, '+')
	}
	if l != 0 {
		dst = strconv.AppendInt(dst, int64(l), 10)
	}
	return dst
}

// appendRecordTime appends time.Unix(0, unixNano).UTC() in timeLayout, as
// AppendFormat does but several times faster: the check runs for every
// forwarded record. Every int64 is a time between 1677 and 2262, so the
// year has four digits.
func appendRecordTime(dst []byte, unixNano int64) []byte {
	sec, nsec := unixNano/1e9, unixNano%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return appendUTCTime(dst, sec, nsec)
}

// Seconds since 1970 of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the
// times whose year has four digits.
const (
	minFourDigitSec = -62135596800
	maxFourDigitSec = 253402300799
)

// appendTime appends t in UTC in timeLayout: the heads of lines.
func appendTime(dst []byte, t time.Time) []byte {
	if sec := t.Unix(); sec >= minFourDigitSec && sec <= maxFourDigitSec {
		return appendUTCTime(dst, sec, int64(t.Nanosecond()))
	}
	return t.UTC().AppendFormat(dst, timeLayout)
}

// appendUTCTime appends the time sec seconds and nsec nanoseconds after
// 1970-01-01T00:00:00Z in timeLayout; its year must have four digits.
func appendUTCTime(dst []byte, sec, nsec int64) []byte {
	days, sod := sec/86400, sec%86400
	if sod < 0 {
		days, sod = days-1, sod+86400
	}
	// Civil date from days since 1970-01-01 (H. Hinnant's algorithm); days
	// is at least -719162 (year 1), so z is positive.
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	if month > 12 {
		month -= 12
	}
	year := yoe + era*400
	if month <= 2 {
		year++
	}
	var b [len(timeLayout)]byte
	putDigits(b[0:4], year)
	b[4] = '-'
	putDigits(b[5:7], month)
	b[7] = '-'
	putDigits(b[8:10], day)
	b[10] = 'T'
	putDigits(b[11:13], sod/3600)
	b[13] = ':'
	putDigits(b[14:16], sod/60%60)
	b[16] = ':'
	putDigits(b[17:19], sod%60)
	b[19] = '.'
	putDigits(b[20:26], nsec/1000)
	b[26] = 'Z'
	return append(dst, b[:]...)
}

// putDigits writes v in decimal into d, zero-padded to its length.
func putDigits(d []byte, v int64) {
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
}

// checkChars refuses invalid UTF-8, control characters (C0 including the
// newline, DEL, C1) and U+2028/U+2029.
func checkChars(b []byte) error {
	const ones, highs, del = 0x0101010101010101, 0x8080808080808080, 0x7f * 0x0101010101010101
	for i := 0; i < len(b); {
		if i+8 <= len(b) {
			// Eight bytes at once: skip to the first with its high bit
			// set, below ' ' (x - 0x20 borrows) or DEL (x^del has a zero
			// byte). The lowest byte flagged is exact: a borrow only
			// spreads up.
			x := binary.LittleEndian.Uint64(b[i:])
			y := x ^ del
			m := (x | (x-0x20*ones)&^x | (y-ones)&^y) & highs
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		c := b[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f {
				return fmt.Errorf("%w: control character %U at byte %d", errBadRecord, c, i)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Errorf("%w: invalid UTF-8 at byte %d", errBadRecord, i)
		case r < 0xa0:
			return fmt.Errorf("%w: control character %U at byte %d", errBadRecord, r, i)
		case r == '\u2028' || r == '\u2029':
			return fmt.Errorf("%w: line separator %U at byte %d", errBadRecord, r, i)
		}
		i += n
	}
	return nil
}

// checkTextPairs checks that b, found at offset off of a body, is one or
// more " key=value" pairs. The characters are checked already.
func checkTextPairs(b []byte, off int) error {
	for i := 0; i < len(b); {
		if b[i] != ' ' {
			return fmt.Errorf("%w: byte %d: want a space before a key", errBadRecord, off+i)
		}
		i++
		j, err := textValue(b, i, off)
		if err != nil {
			return err
		}
		if j == len(b) || b[j] != '=' {
			return fmt.Errorf("%w: byte %d: want '=' after a key", errBadRecord, off+j)
		}
		if i, err = textValue(b, j+1, off); err != nil {
			return err
		}
	}
	return nil
}

// textValue checks the key or value that starts at b[i] and returns the
// index after it: a Go-quoted string, or a non-empty token of printable
// characters other than space, '=' and '"' (what appendTextString leaves
// unquoted).
func textValue(b []byte, i, off int) (int, error) {
	if i < len(b) && b[i] == '"' {
		return quotedEnd(b, i, off)
	}
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	start := i
	for i < len(b) {
		if i+8 <= len(b) {
			// Eight bytes at once: skip to the first that is a space,
			// '=', '"' or beyond ASCII (checkChars refused the controls).
			// The lowest byte flagged is exact: a borrow only spreads up.
			x := binary.LittleEndian.Uint64(b[i:])
			sp, eq, qu := x^(' '*ones), x^('='*ones), x^('"'*ones)
			m := (x | (sp-ones)&^sp | (eq-ones)&^eq | (qu-ones)&^qu) & highs
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		if tokenByte[b[i]] {
			i++
			continue
		}
		c := b[i]
		if c < utf8.RuneSelf {
			if c == ' ' || c == '=' {
				break
			}
			return 0, fmt.Errorf("%w: byte %d: %q inside an unquoted value", errBadRecord, off+i, c)
		}
		r, n := utf8.DecodeRune(b[i:])
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return 0, fmt.Errorf("%w: byte %d: %U in an unquoted value", errBadRecord, off+i, r)
		}
		i += n
	}
	if i == start {
		return 0, fmt.Errorf("%w: byte %d: empty key or value", errBadRecord, off+i)
	}
	return i, nil
}

// tokenByte holds the ASCII bytes an unquoted key or value may hold: the
// printable ones but space, '=' and '"'.
var tokenByte = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = c != '=' && c != '"'
	}
	return t
}()

// quotedEnd returns the index after the Go-quoted string that starts at
// b[i] ('"'), accepting exactly the escapes strconv.Unquote does.
func quotedEnd(b []byte, i, off int) (int, error) {
	start := i
	for i++; ; {
		i = quoteOrBackslash(b, i)
		if i == len(b) {
			return 0, fmt.Errorf("%w: byte %d: unterminated quoted string", errBadRecord, off+start)
		}
		if b[i] == '"' {
			return i + 1, nil
		}
		n := escapeLen(b[i:])
		if n == 0 {
			return 0, fmt.Errorf("%w: byte %d: bad escape in a quoted string", errBadRecord, off+i)
		}
		i += n
	}
}

// quoteOrBackslash returns the index of the first '"' or '\\' in b at or
// after i, or len(b).
func quoteOrBackslash(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		// The lowest byte flagged is exact: a borrow only spreads up.
		x := binary.LittleEndian.Uint64(b[i:])
		qu, bs := x^('"'*ones), x^('\\'*ones)
		if m := ((qu-ones)&^qu | (bs-ones)&^bs) & highs; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if b[i] == '"' || b[i] == '\\' {
			return i
		}
	}
	return i
}

// escapeLen returns the length of the escape sequence at the start of b
// (b[0] is '\\') inside a double-quoted Go string, or 0 if it is not one.
func escapeLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	var digits, base int
	switch b[1] {
	case 'a', 'b', 'f', 'n', 'r', 't', 'v', '\\', '"':
		return 2
	case 'x':
		digits, base = 2, 16
	case 'u':
		digits, base = 4, 16
	case 'U':
		digits, base = 8, 16
	case '0', '1', '2', '3', '4', '5', '6', '7':
		digits, base = 3, 8
	default:
		return 0
	}
	first := 2
	if base == 8 {
		first = 1
	}
	if len(b) < first+digits {
		return 0
	}
	var v uint32
	for _, c := range b[first : first+digits] {
		d := uint32(base)
		switch {
		case c >= '0' && c <= '9':
			d = uint32(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint32(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint32(c-'A') + 10
		}
		if d >= uint32(base) {
			return 0
		}
		v = v*uint32(base) + d
	}
	switch b[1] {
	case 'u', 'U':
		if !utf8.ValidRune(rune(v)) {
			return 0
		}
	case 'x':
	default: // octal
		if v > 255 {
			return 0
		}
	}
	return first + digits
}

// validateBatch checks that b decodes completely, its records expanding to
// at most limit bytes, that it holds at least one record, and that every
// record is at most maxBody bytes and renders in format f as exactly one
// well-formed line (checkRecord); the leader calls it before putting a
// forwarded batch into the Raft log.
func validateBatch(b []byte, f Format, maxBody, limit int, scratch *[]byte) error {
	r, err := wire.ReadBatch(b, scratch, limit)
	if err != nil {
		return err
	}
	if r.Decoded() {
		*scratch = r.Records() // exactly the expanded records, for the leader's apply (expand.go)
	}
	if r.Header.Count == 0 {
		return fmt.Errorf("%w: no entries", wire.ErrBadBatch)
	}
	for r.Next() {
		if len(r.Body) > maxBody {
			return fmt.Errorf("%w: record of %d bytes exceeds %d", ErrEntryTooLarge, len(r.Body), maxBody)
		}
		if err := checkRecord(f, r.Level, r.UnixNano, r.Body); err != nil {
			return fmt.Errorf("record %d: %w", r.Index(), err)
		}
	}
	return r.Err()
}
