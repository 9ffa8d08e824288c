// Package wire holds logx's binary formats that cross a node's boundary:
// the batch (the payload of a Raft log entry, and of a forwarded write),
// the length-prefixed frame that forwarded batches, their answers and
// control requests travel in, the forwarding answer, the preface that opens
// every connection to a node's one address, and the fetch protocol of
// catch-up. It decodes hostile input: every reader here bounds what it
// allocates and returns an error, never panics, on malformed bytes
// (FuzzAnswer here; FuzzBatchDecode, FuzzForwardFrame, FuzzFetchReply and
// FuzzPreface in the logx package).
//
// It knows nothing of Raft, files or configuration; the logx package
// decides what a well-formed batch may contain (bodycheck.go).
package wire
