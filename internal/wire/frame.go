package wire

import (
	"encoding/binary"
	"fmt"
	"io"
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
// *FrameSizeError before its body is read.
func ReadFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	var h [FrameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(h[:]))
	if n > max {
		return nil, &FrameSizeError{N: n, Max: max}
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// FrameSizeError is a frame whose header announces more than the reader's
// limit; its body has not been read.
type FrameSizeError struct{ N, Max int }

func (e *FrameSizeError) Error() string {
	return fmt.Sprintf("logx: frame of %d bytes exceeds the limit of %d", e.N, e.Max)
}
