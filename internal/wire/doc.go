// Package wire holds logx's byte formats that cross a node's boundary: the
// batch (the payload of a Raft log entry, and of a forwarded write), the
// length-prefixed frame every request and reply travels in, and the preface
// that opens every connection to a node's one address. It decodes hostile
// input: every reader here bounds what it allocates and returns an error,
// never panics, on malformed bytes (the fuzz targets in the logx package
// check that).
//
// It knows nothing of Raft, files or configuration; the logx package
// decides what a well-formed batch may contain (bodycheck.go).
package wire
