package wire

import (
	"fmt"
	"io"
)

// Every connection to a node's one address starts with a preface that says
// which protocol it carries, for which stream. For the default stream the
// preface is one byte, the protocol, as in the first release:
const (
	ProtoRaft    byte = 1 // hashicorp/raft's NetworkTransport
	ProtoForward byte = 2 // follower → leader batches
	ProtoFetch   byte = 3 // file ranges for catch-up
	ProtoControl byte = 4 // membership changes and status
)

// For any other stream the preface is ProtoStream, the length of the
// stream's name (one byte), the name, and then the protocol byte.
const ProtoStream byte = 5

// ReadPreface reads a connection's preface: the stream's name ("" for the
// default stream) and the protocol. A name that validName refuses is an
// error; so is the default stream's own name, which is never sent.
func ReadPreface(r io.Reader, validName func(string) bool, defaultName string) (name string, proto byte, err error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", 0, err
	}
	if b[0] != ProtoStream {
		if b[0] < ProtoRaft || b[0] > ProtoControl {
			return "", 0, fmt.Errorf("logx: unknown protocol %d", b[0])
		}
		return "", b[0], nil
	}
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", 0, err
	}
	buf := make([]byte, int(b[0])+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", 0, err
	}
	name, proto = string(buf[:len(buf)-1]), buf[len(buf)-1]
	if !validName(name) || name == defaultName {
		return "", 0, fmt.Errorf("logx: bad stream name in preface: %q", name)
	}
	if proto < ProtoRaft || proto > ProtoControl {
		return "", 0, fmt.Errorf("logx: unknown protocol %d", proto)
	}
	return name, proto, nil
}

// Preface returns what a connection to stream name ("" for the default
// stream) for proto starts with.
func Preface(name string, proto byte) []byte {
	if name == "" {
		return []byte{proto}
	}
	return append(append([]byte{ProtoStream, byte(len(name))}, name...), proto)
}
