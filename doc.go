// Package logx is a replicated logging library for services that run as a
// small cluster (3, 5 or 7 replicas).
//
// Every replica embeds a *Logx (New). Application code logs with Debug, Info, Warn
// and Error, with Append when it must know the entry is safe, or through
// log/slog with Handler. Each entry is committed through Raft
// (github.com/hashicorp/raft, with github.com/hashicorp/raft-wal as the log
// and stable store), and every node appends the committed entries, in one
// order, to a local size-rotated file. Any minority of nodes can be lost:
// every other node holds the whole log, byte for byte.
//
// # Guarantees
//
//   - Identical files. Nodes that have applied the same entries hold
//     byte-identical files with the same names and rotation points: a line
//     is rendered on the calling node from the entry's own fields (time of
//     the call, level, origin node, caller, message, attributes), and apply
//     adds only the sequence number, the count of entries before it.
//   - Acknowledged means durable. When Append returns nil the entry is in the
//     Raft log (fsynced) of a majority, and every node's file will hold it.
//     Debug/Info/Warn/Error and the slog handler only queue the entry; Flush
//     waits until everything queued before it is committed and written here.
//   - One order. Files follow the Raft commit order; entries logged by one
//     goroutine keep their call order.
//   - No duplicates. Every batch carries the producer id of the Logx that
//     made it and per-entry producer sequence numbers; apply drops repeats,
//     so a batch retried after a leader change is written once, and
//     answered with the sequence number its first copy got. The cluster
//     remembers a producer for Config.DedupWindow; a sender gives up on a
//     batch after half of it (ErrOutcomeUnknown).
//   - Time from the log. Rotation by time and retention by age go by the
//     log clock, the time a majority of the voters' clock reports reached,
//     so no single node's clock, the leader's included, can retire files
//     early or stop rotation.
//   - Crash-safe. Apply checkpoints its position (Dir/state.json) after
//     fsyncing the files; after a crash the files are cut back to the
//     checkpoint, a torn last line included, and the entries after it are
//     written again from the Raft log, giving the same bytes.
//   - Bounded. The queue has a fixed capacity; when it is full calls block,
//     or drop and count if Config.DropWhenFull is set.
//
// What is not promised: an entry that was only queued (Info without a later
// successful Flush) may be lost if its node crashes.
//
// # Catch-up
//
// A node that was down replays what it missed from the Raft log. When Raft
// no longer holds those entries (the node was down longer than
// Config.TrailingLogs batches, or its Dir was wiped), the node installs the
// leader's snapshot, a small manifest of the files, keeps the local files
// that match it, and copies the missing byte ranges from a peer over the
// node's address, verifying every file's checksum (a sha256 or a BLAKE3, as
// the manifest names it) against the manifest.
//
// # Cluster and readiness
//
// All nodes start from the same static Peers list and bootstrap together.
// Each node listens on one address (Config.Addr) for Raft and for batches
// forwarded by followers; Addr is also the node's Raft server id. New
// returns once the node is running; it does not wait for a leader, because
// the other nodes may not be up yet. WaitReady blocks until a leader is known
// and this node has applied what it knows to be committed. Calls made before
// that are queued.
//
// # Membership
//
// AddNode and RemoveNode change the cluster at run time from any node; the
// leader carries them out. A new node starts with Config.Join, is added as
// a non-voter, catches up, and only then becomes a voter. A removed node is
// told by the leader and refuses further entries with ErrRemoved.
//
// # Line format
//
// FormatText (the default) writes logfmt-style lines:
//
//	seq=42 time=2026-11-24T23:35:45.123456Z level=INFO node=n1 caller=app/main.go:17 msg="user signed in" user=7
//
// FormatJSON writes one object per line with the same keys. Strings that
// hold spaces, quotes, '=' or any control character are quoted and escaped
// (Go syntax in text, JSON escapes in JSON), so user text can never forge a
// line break. Rotated files are named after their first sequence number:
// app-00000000000000000001.log.
//
// # Directories
//
// One Logx per Dir, enforced with a lock file. Dir holds the log files,
// state.json, the Raft log (raft/) and Raft snapshots (snapshots/), which
// are small manifests of the files.
package logx
