package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Fetch protocol (ProtoFetch), one request at a time on a connection: a
// catching-up node asks a peer for a range of one of its log files.
//
//	request:  uint64 first sequence number of the file, uint64 offset, uint64 length
//	reply:    status byte; for FetchOK the length (uint64), then the bytes;
//	          otherwise uint16 length and an error text
const (
	FetchOK    byte = 0
	FetchError byte = 1
)

// FetchRequestSize is the size of a fetch request.
const FetchRequestSize = 24

// maxFetchError bounds the error text of a reply.
const maxFetchError = 1000

// FetchRequest asks for N bytes at Off of the file whose first sequence
// number is First. Off and N come from the network: the server checks them.
type FetchRequest struct {
	First  uint64
	Off, N int64
}

// Encode returns the request's bytes.
func (q FetchRequest) Encode() [FetchRequestSize]byte {
	var b [FetchRequestSize]byte
	binary.BigEndian.PutUint64(b[0:], q.First)
	binary.BigEndian.PutUint64(b[8:], uint64(q.Off))
	binary.BigEndian.PutUint64(b[16:], uint64(q.N))
	return b
}

// ReadFetchRequest reads one request.
func ReadFetchRequest(r io.Reader) (FetchRequest, error) {
	var b [FetchRequestSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return FetchRequest{}, err
	}
	return FetchRequest{
		First: binary.BigEndian.Uint64(b[0:]),
		Off:   int64(binary.BigEndian.Uint64(b[8:])),
		N:     int64(binary.BigEndian.Uint64(b[16:])),
	}, nil
}

// FetchErrorReply is the reply that refuses a request with msg (cut to
// 1000 bytes).
func FetchErrorReply(msg string) []byte {
	if len(msg) > maxFetchError {
		msg = msg[:maxFetchError]
	}
	b := []byte{FetchError, 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(len(msg)))
	return append(b, msg...)
}

// FetchOKHeader is what a reply that sends n bytes starts with; the bytes
// follow.
func FetchOKHeader(n int64) [9]byte {
	var b [9]byte
	b[0] = FetchOK
	binary.BigEndian.PutUint64(b[1:], uint64(n))
	return b
}

// ReadFetchReply reads a peer's reply to a request for chunk bytes and
// copies the bytes to w: exactly chunk of them, or an error (the peer's
// message for FetchError). Nothing beyond the reply is read. buf is the
// copy buffer.
func ReadFetchReply(r io.Reader, chunk int64, w io.Writer, buf []byte) error {
	var status [1]byte
	if _, err := io.ReadFull(r, status[:]); err != nil {
		return err
	}
	switch status[0] {
	case FetchOK:
	case FetchError:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return err
		}
		msg := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(r, msg); err != nil {
			return err
		}
		return fmt.Errorf("peer: %q", msg)
	default:
		return fmt.Errorf("peer sent status %d", status[0])
	}
	var l [8]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint64(l[:]); got != uint64(chunk) {
		return fmt.Errorf("peer sent %d bytes, asked for %d", got, chunk)
	}
	got, err := io.CopyBuffer(w, io.LimitReader(r, chunk), buf)
	if err == nil && got < chunk {
		err = io.ErrUnexpectedEOF
	}
	return err
}
