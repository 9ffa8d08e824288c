package logx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strconv"
	"sync/atomic"
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
//
// Each format's check reads each byte once: it checks the characters as it
// parses (textPairsRef and the JSON assertions of FuzzCheckRecord, in the
// tests, are the rule as two passes, and must accept exactly the same
// bodies).
func checkRecord(f Format, level slog.Level, unixNano int64, body []byte) error {
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
	return appendUTCTime(dst, &seconds.check, sec, nsec)
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
		return appendUTCTime(dst, &seconds.render, sec, int64(t.Nanosecond()))
	}
	return t.UTC().AppendFormat(dst, timeLayout)
}

// secondCache holds the last second the renderer, or the leader's check,
// formatted: entries come many to a second, and the date and clock are
// most of the work of a head. The text, "2006-01-02T15:04:05.", is kept
// in three words behind a sequence number that is odd while a writer
// fills them, so a reader that sees the same even number before and after
// has read one whole second, and a miss stores its second in place: no
// allocation, and no time (a record from the year 9999, a clock stepped
// back) can keep the cache from following the times it is asked for. Each
// field is atomic, so the race detector sees no race. The renderer and
// the check keep one each because their clocks may differ.
type secondCache struct {
	seq  atomic.Uint64 // 0: empty; odd: being written
	sec  atomic.Int64
	text [3]atomic.Uint64
}

// seconds holds the two caches a cache line apart: on the leader a check
// that misses writes its cache, and must not slow the renderer's hits on
// the other cores.
var seconds struct {
	render secondCache
	_      [64]byte
	check  secondCache
}

// load copies the text of second sec into b[:20] and reports whether the
// cache held it.
func (c *secondCache) load(sec int64, b []byte) bool {
	s := c.seq.Load()
	if s == 0 || s&1 != 0 || c.sec.Load() != sec {
		return false
	}
	w0, w1, w2 := c.text[0].Load(), c.text[1].Load(), c.text[2].Load()
	if c.seq.Load() != s {
		return false
	}
	binary.LittleEndian.PutUint64(b[0:8], w0)
	binary.LittleEndian.PutUint64(b[8:16], w1)
	binary.LittleEndian.PutUint32(b[16:20], uint32(w2))
	return true
}

// store puts the text b[:20] of second sec in the cache, unless another
// writer is at it.
func (c *secondCache) store(sec int64, b []byte) {
	s := c.seq.Load()
	if s&1 != 0 || !c.seq.CompareAndSwap(s, s+1) {
		return
	}
	c.sec.Store(sec)
	c.text[0].Store(binary.LittleEndian.Uint64(b[0:8]))
	c.text[1].Store(binary.LittleEndian.Uint64(b[8:16]))
	c.text[2].Store(uint64(binary.LittleEndian.Uint32(b[16:20])))
	c.seq.Store(s + 2)
}

// appendUTCTime appends the time sec seconds and nsec nanoseconds after
// 1970-01-01T00:00:00Z in timeLayout, through the cache c; its year must
// have four digits.
func appendUTCTime(dst []byte, c *secondCache, sec, nsec int64) []byte {
	n := len(dst)
	dst = append(dst, timeLayout...) // room, overwritten
	b := dst[n : n+len(timeLayout)]
	if !c.load(sec, b) {
		formatSecond((*[20]byte)(b[:20]), sec)
		c.store(sec, b)
	}
	putDigits(b[20:26], nsec/1000)
	b[26] = 'Z'
	return dst
}

// formatSecond writes the second sec seconds after 1970-01-01T00:00:00Z
// into d as "2006-01-02T15:04:05."; its year must have four digits.
func formatSecond(d *[20]byte, sec int64) {
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
	putDigits(d[0:4], year)
	d[4] = '-'
	putDigits(d[5:7], month)
	d[7] = '-'
	putDigits(d[8:10], day)
	d[10] = 'T'
	putDigits(d[11:13], sod/3600)
	d[13] = ':'
	putDigits(d[14:16], sod/60%60)
	d[16] = ':'
	putDigits(d[17:19], sod%60)
	d[19] = '.'
}

// putDigits writes v (not negative) in decimal into d, zero-padded to its
// length, two digits at a time.
func putDigits(d []byte, v int64) {
	u := uint64(v)
	i := len(d)
	for ; i >= 2; i -= 2 {
		q := u / 100
		r := 2 * (u - 100*q)
		d[i-1], d[i-2] = digitPairs[r+1], digitPairs[r]
		u = q
	}
	if i == 1 {
		d[0] = byte('0' + u%10)
	}
}

// digitPairs holds "00" to "99".
const digitPairs = "0001020304050607080910111213141516171819" +
	"2021222324252627282930313233343536373839" +
	"4041424344454647484950515253545556575859" +
	"6061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// checkChars refuses invalid UTF-8, control characters (C0 including the
// newline, DEL, C1) and U+2028/U+2029.
func checkChars(b []byte) error {
	for i := 0; i < len(b); {
		if i+8 <= len(b) {
			// Eight bytes at once: skip to the first with its high bit
			// set, below ' ' (x - 0x20 borrows) or DEL (x^del has a zero
			// byte). The lowest byte flagged is exact: a borrow only
			// spreads up.
			const del = 0x7f * swarOnes
			x := binary.LittleEndian.Uint64(b[i:])
			y := x ^ del
			m := (x | (x-0x20*swarOnes)&^x | (y-swarOnes)&^y) & swarHighs
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		c := b[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f {
				return controlError(rune(c), i)
			}
			i++
			continue
		}
		_, n, err := checkRune(b, i, 0)
		if err != nil {
			return err
		}
		i += n
	}
	return nil
}

// controlError is checkChars's error for the control character c at byte
// at of a body.
func controlError(c rune, at int) error {
	return fmt.Errorf("%w: control character %U at byte %d", errBadRecord, c, at)
}

// checkRune decodes the rune past ASCII at b[i] (byte off+i of a body) and
// refuses it as checkChars does: invalid UTF-8, a C1 control character,
// U+2028 or U+2029.
func checkRune(b []byte, i, off int) (rune, int, error) {
	r, n := utf8.DecodeRune(b[i:])
	switch {
	case r == utf8.RuneError && n == 1:
		return r, n, fmt.Errorf("%w: invalid UTF-8 at byte %d", errBadRecord, off+i)
	case r < 0xa0:
		return r, n, controlError(r, off+i)
	case r == '\u2028' || r == '\u2029':
		return r, n, fmt.Errorf("%w: line separator %U at byte %d", errBadRecord, r, off+i)
	}
	return r, n, nil
}

// checkTextPairs checks that b, found at offset off of a body (after the
// level), is one or more " key=value" pairs whose characters checkChars
// accepts, reading each byte once. The first fault it meets is the one it
// reports.
func checkTextPairs(b []byte, off int) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: nothing after the level", errBadRecord)
	}
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
// index after it: a Go-quoted string (quotedEnd), or a non-empty token of
// what appendTextString leaves unquoted: printable characters other than
// space, '=' and '"'. Its characters are checked as checkChars does.
func textValue(b []byte, i, off int) (int, error) {
	if i < len(b) && b[i] == '"' {
		return quotedEnd(b, i, off)
	}
	start := i
	for i < len(b) {
		if i+8 <= len(b) {
			// Eight bytes at once, to the first that ends or breaks a
			// token (the renderer's tokenStops).
			m := tokenStops(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		} else if tokenByte[b[i]] {
			i++
			continue
		}
		c := b[i]
		if c == ' ' || c == '=' {
			break
		}
		if c < utf8.RuneSelf {
			if c == '"' {
				return 0, fmt.Errorf("%w: byte %d: %q inside an unquoted value", errBadRecord, off+i, c)
			}
			return 0, controlError(rune(c), off+i)
		}
		r, n, err := checkRune(b, i, off)
		if err != nil {
			return 0, err
		}
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
// b[i] ('"'), accepting exactly the escapes strconv.Unquote does and the
// characters checkChars does.
func quotedEnd(b []byte, i, off int) (int, error) {
	start := i
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
			return i + 1, nil
		case c == '\\':
			n := escapeLen(b[i:])
			if n == 0 {
				return 0, fmt.Errorf("%w: byte %d: bad escape in a quoted string", errBadRecord, off+i)
			}
			i += n
		case c >= utf8.RuneSelf:
			_, n, err := checkRune(b, i, off)
			if err != nil {
				return 0, err
			}
			i += n
		case c < ' ' || c == 0x7f:
			return 0, controlError(rune(c), off+i)
		default:
			i++
		}
	}
	return 0, fmt.Errorf("%w: byte %d: unterminated quoted string", errBadRecord, off+start)
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
	r, err := wire.OpenBatch(b, scratch, limit) // the loop below walks the records
	if err != nil {
		return err
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
	if err := r.Err(); err != nil {
		return err
	}
	if r.Decoded() {
		// Exactly the expanded records, walked to the end: what the
		// leader's apply reads instead of decoding (expand.go).
		*scratch = r.Records()
	}
	return nil
}
