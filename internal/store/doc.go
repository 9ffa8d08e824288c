// Package store is a log's files on one node: the active file and the
// rotated ones, their names, the writer that appends and rotates, recovery
// of the files to a checkpoint after a crash, retention's retiring of old
// files, and the durable small-file and checksum helpers.
//
// The active file has the configured name (app.log); when the next line
// would take it past the maximum size, or its clock enters a later period,
// it is renamed to <stem>-<first sequence number, 20 digits><ext>
// (app-00000000000000000001.log) and a new active file is started. Sizes,
// clocks and sequence numbers come from the log, so every node rotates at
// the same line and picks the same names.
//
// It knows nothing of Raft or of what the lines say: the logx package's
// state machine decides what to write and when to checkpoint, and records
// in its checkpoint the State this package recovers to.
package store
