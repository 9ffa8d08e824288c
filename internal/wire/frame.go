package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// A frame is a 4-byte big-endian length followed by that many bytes.

// FrameHeader is the size of a frame's length prefix.
const FrameHeader = 4

// AppendFrameHeader appends the length prefix of a frame of n bytes.
func AppendFrameHeader(dst []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// ReadFrame reads one frame into buf (grown as needed) and returns it. A
// frame that announces more than max bytes is refused with a
// *FrameSizeError before its body is read. Past frameStep bytes, buf
// grows with the bytes that arrive rather than with what the header
// announces: a peer that announces max and sends nothing holds little
// memory.
func ReadFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	n, err := ReadFrameSize(r, max)
	if err != nil {
		return nil, err
	}
	return ReadFrameBody(r, buf, n)
}

// ReadFrameSize reads a frame's length prefix: the first half of
// ReadFrame, for a reader that bounds the body's arrival apart.
func ReadFrameSize(r io.Reader, max int) (int, error) {
	var h [FrameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n64 := uint64(binary.BigEndian.Uint32(h[:])) // not int: negative past 2^31 where int has 32 bits
	if max < 0 || n64 > uint64(max) {
		return 0, &FrameSizeError{N: int64(n64), Max: max}
	}
	return int(n64), nil
}

// ReadFrameBody reads the n bytes of a frame's body into buf, as
// ReadFrame does after the length prefix.
func ReadFrameBody(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) >= n {
		buf = buf[:n]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	buf = buf[:0]
	for len(buf) < n {
		step := min(n-len(buf), frameStep)
		buf = slices.Grow(buf, step)
		k, err := io.ReadFull(r, buf[len(buf):len(buf)+step])
		buf = buf[:len(buf)+k]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// frameStep is how much of a frame's body ReadFrame reads at a time once
// buf must grow: a forwarded batch of 4,096 short entries, compressed,
// fits in one.
const frameStep = 256 << 10

// FrameSizeError is a frame whose header announces more than the reader's
// limit; its body has not been read.
type FrameSizeError struct {
	N   int64
	Max int
}

func (e *FrameSizeError) Error() string {
	return fmt.Sprintf("logx: frame of %d bytes exceeds the limit of %d", e.N, e.Max)
}
