package logx

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
)

// Catch-up copies file ranges from peers over the node's address (catchup.go
// says when and why; scrub.go repairs damaged files the same way).
//
// The fetch protocol's bytes are internal/wire's (fetch.go there).

// fetchChunk is the most one request asks for: progress and resumption are
// per chunk.
const fetchChunk = 8 << 20

// fetchIdleTimeout bounds a fetch connection's silences between requests;
// a reply has fetchIOTimeout plus its bytes at fetchMinRate, on both sides
// (replyTimeout). A chunk of 8 MiB had fetchIOTimeout in all, so over a
// link slower than about 280 KB/s every chunk timed out, from every peer,
// and a node never caught up.
const (
	fetchIdleTimeout = 5 * time.Minute
	fetchIOTimeout   = 30 * time.Second
	fetchMinRate     = 32 << 10 // bytes a second
)

// ioTimeout is fetchIOTimeout, or a test's.
func (lx *Stream) ioTimeout() time.Duration { return cmp.Or(lx.seams.fetchIOTimeout, fetchIOTimeout) }

// replyTimeout bounds the writing, and the reading, of a reply of n
// bytes: n at most fetchChunk, the most a fetch asks for (a request's n
// is checked after the deadline is set; a hostile one, near 2^63, gave a
// deadline days away).
func (lx *Stream) replyTimeout(n int64) time.Duration {
	return lx.ioTimeout() + time.Duration(min(max(n, 0), fetchChunk))*time.Second/fetchMinRate
}

// ctxReader reads c until ctx ends (its AfterFunc set the deadline to
// now). The reply to a chunk has one deadline, set before it is read:
// replyTimeout of its bytes, the serving side's own bound. A deadline
// moved forward at each read let a peer that sent a byte every 29 s hold
// a fetch for good (a catch-up, or the repair whose end the compressor
// waits for), since no read ever timed out.
type ctxReader struct {
	c   net.Conn
	ctx context.Context
}

func (r ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.c.Read(b)
}

// serveFetch answers fetch requests on one connection.
func (lx *Stream) serveFetch(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(fetchIdleTimeout))
		req, err := wire.ReadFetchRequest(r)
		if err != nil {
			return
		}
		first, off, n := req.First, req.Off, req.N
		_ = c.SetWriteDeadline(time.Now().Add(lx.replyTimeout(n)))
		f, err := lx.fsm.openSegment(first)
		if err == nil {
			var size int64
			if size, err = f.Size(); err == nil && !fetchRangeOK(off, n, size) {
				err = fmt.Errorf("bytes %d+%d of segment %d not held here (%d bytes)", off, n, first, size)
			}
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			if _, err := c.Write(wire.FetchErrorReply(err.Error())); err != nil {
				return
			}
			continue
		}
		hdr := wire.FetchOKHeader(n)
		_, err = c.Write(hdr[:])
		if err == nil {
			// Of a plain file, an *os.File under a LimitedReader: the
			// kernel copies it (sendfile). A compressed file's plain bytes
			// are decoded here: peers always get plain bytes.
			var r io.Reader
			if r, err = f.Range(off, n); err == nil {
				var sent int64
				if sent, err = io.Copy(c, r); err == nil && sent != n {
					// The file was cut back after its size was read (a
					// write error's redo): the peer would wait for the
					// rest, for the connection's deadline.
					err = fmt.Errorf("sent %d bytes of %d", sent, n)
				}
			}
		}
		f.Close()
		if err != nil {
			return
		}
		lx.stats.fetchServed.Add(uint64(n))
	}
}

// fetchRangeOK reports whether a peer may fetch n bytes at off of a file
// of size bytes: a range inside the file, of at most fetchChunk bytes
// (written so that no sum can overflow).
func fetchRangeOK(off, n, size int64) bool {
	return off >= 0 && n >= 0 && n <= fetchChunk && off <= size-n
}

// openSegment opens the log file whose first sequence number is first (see
// store.Writer.OpenFile).
func (f *fsm) openSegment(first uint64) (*store.Segment, error) {
	seg := f.segPtr.Load()
	if seg == nil {
		return nil, errors.New("files are being caught up")
	}
	return seg.OpenFile(first)
}

// fetcher copies byte ranges from peers. attempt counts the tries for one
// file: a retry after a checksum mismatch should prefer another source,
// attempt k starting at the k-th of sources() (modulo). A fetch gives up
// soon after ctx ends.
type fetcher interface {
	fetch(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error
	sources() int
}

// sources implements fetcher: how many peers a fetch may ask.
func (lx *Stream) sources() int { return len(lx.fetchPeers()) }

// fetch implements fetcher for a Logx: it asks the leader first (another
// peer first on a retry), then the others, each once per call.
func (lx *Stream) fetch(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
	peers := lx.fetchPeers()
	if len(peers) > 0 {
		k := attempt % len(peers)
		peers = append(peers[k:], peers[:k]...)
	}
	// A peer that fails midway has written part of the range; the next one
	// continues after the bytes already written, so w sees each byte once.
	cw := &countingWriter{w: w}
	var errs []error
	for _, p := range peers {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		err := lx.fetchFrom(ctx, p, first, off+cw.n, n-cw.n, cw)
		if err == nil {
			return nil
		}
		if isLocalWrite(err) {
			return fmt.Errorf("logx: writing bytes of segment %d fetched from %s on this node: %w", first, p, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", p, err))
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no peer to fetch from"))
	}
	return fmt.Errorf("logx: fetching %d bytes at %d of segment %d: %w", n, off, first, errors.Join(errs...))
}

// fetchPeers lists the peers to fetch from: the leader first, then
// Config.Peers, then the other members of the configuration Raft last
// took (members added since the start, which may be the only ones left
// holding a file after a year of changes). hashicorp/raft (v1.8.0) keeps
// that configuration in an atomic copy, so reading it does not wait for
// Raft's loop, which waits for Restore.
func (lx *Stream) fetchPeers() []string {
	leader := ""
	var members []raft.Server
	if r := lx.raftPtr.Load(); r != nil {
		leader = string(r.Leader())
		if f := r.GetConfiguration(); f.Error() == nil {
			members = f.Configuration().Servers
		}
	}
	var out []string
	add := func(a string) {
		if a != "" && a != lx.cfg.Addr && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	add(leader)
	for _, p := range lx.cfg.Peers {
		add(p)
	}
	for _, m := range members {
		add(string(m.Address))
	}
	return out
}

// fetchFrom copies n bytes at off of the file starting at first from the
// peer at addr. When ctx ends, the connection's deadline is set to now, so
// a read or write under way fails at once.
func (lx *Stream) fetchFrom(ctx context.Context, addr string, first uint64, off, n int64, w io.Writer) error {
	c, err := lx.mux.dialContext(ctx, addr, wire.ProtoFetch, lx.ioTimeout())
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 256<<10)
	for n > 0 {
		if h := lx.seams.fetchHook; h != nil {
			if err := h(ctx); err != nil {
				return err
			}
		}
		chunk := min(n, fetchChunk)
		req := wire.FetchRequest{First: first, Off: off, N: chunk}.Encode()
		_ = c.SetDeadline(time.Now().Add(lx.replyTimeout(chunk)))
		// ctx ends before AfterFunc's func runs: checked after the
		// deadline is set, one of the two stops the chunk.
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := c.Write(req[:]); err != nil {
			return err
		}
		if err := wire.ReadFetchReply(ctxReader{c, ctx}, chunk, w, buf); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("%w (%v)", cerr, err)
			}
			return err
		}
		lx.stats.fetched.Add(uint64(chunk))
		off += chunk
		n -= chunk
	}
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		err = localWriteError{err}
	}
	return n, err
}

// localWriteError is a write of fetched bytes on this node that failed (a
// full disk, say): no peer's fault, and no other peer would do better.
// fetch returns it at once; it was taken for the peer's, every other peer
// was asked in turn, and a catch-up gave up after finishTries such rounds
// with "the files are incomplete" (ErrCorrupt).
type localWriteError struct{ error }

func (e localWriteError) Unwrap() error { return e.error }

// isLocalWrite reports whether err is, or wraps, a localWriteError.
func isLocalWrite(err error) bool {
	var l localWriteError
	return errors.As(err, &l)
}
