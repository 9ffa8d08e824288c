package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// Forwarding: a follower (or a Client) sends a batch to the leader in one
// frame and reads the answer in another:
//
//	request:  uint32 length, batch bytes (batch.go)
//	answer:   uint32 length, status byte, uint64 Raft index, uint64 first
//	          sequence number, message (a leader address for
//	          StatusNotLeader, an error text otherwise)
const (
	StatusOK        byte = 0
	StatusNotLeader byte = 1
	StatusError     byte = 2 // retryable: the batch may or may not be committed
	StatusRejected  byte = 3 // not retryable: the batch is malformed, too large, or a record is not one well-formed line
)

// AnswerHeader is the size of an answer before its message.
const AnswerHeader = 1 + 8 + 8

// MaxAnswer bounds the answer frame a sender reads.
const MaxAnswer = 1 << 20

// Answer is the leader's reply to one forwarded batch.
type Answer struct {
	Status byte
	Index  uint64 // the Raft index the batch was committed at
	First  uint64 // the sequence number of its first entry
	Msg    string
}

// AppendAnswer appends a as a frame.
func AppendAnswer(dst []byte, a Answer) []byte {
	dst = AppendFrameHeader(dst, AnswerHeader+len(a.Msg))
	dst = append(dst, a.Status)
	dst = binary.BigEndian.AppendUint64(dst, a.Index)
	dst = binary.BigEndian.AppendUint64(dst, a.First)
	return append(dst, a.Msg...)
}

// ParseAnswer decodes an answer frame's body.
func ParseAnswer(b []byte) (Answer, error) {
	if len(b) < AnswerHeader {
		return Answer{}, fmt.Errorf("logx: short forwarding answer (%d bytes)", len(b))
	}
	return Answer{
		Status: b[0],
		Index:  binary.BigEndian.Uint64(b[1:9]),
		First:  binary.BigEndian.Uint64(b[9:17]),
		Msg:    string(b[AnswerHeader:]),
	}, nil
}

// WriteFrame writes body as one frame, header and body in one write where
// w is a net.Conn (writev), without copying body. hdr is the caller's
// space for the length prefix (kept by a caller that sends many frames).
func WriteFrame(w io.Writer, hdr *[FrameHeader]byte, body []byte) error {
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	_, err := (&net.Buffers{hdr[:], body}).WriteTo(w)
	return err
}
