package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/logx-dev/logx"
)

// cmdForward logs every line of standard input into the cluster, in
// batches, and exits once all are committed. Nothing read is dropped: a
// line that cannot be committed stops the command with an error naming how
// many lines were committed.
func cmdForward(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("forward", stderr)
	node := fs.String("node", "forward", "the node= name of the lines")
	level := fs.String("level", "INFO", "the level of the lines (of those that state none, with -parse)")
	parse := fs.String("parse", parseNone, "read each line's time and level from it: "+strings.Join(parseModes, ", ")+"; a line that does not parse is logged as it is")
	tz := fs.String("tz", "Local", "with -parse, the time zone of times that name none (UTC, Europe/Paris, ...)")
	timeout := fs.Duration("timeout", time.Minute, "give up when a batch is not committed within this")
	stream := fs.String("stream", logx.DefaultStream, "the stream to log into")
	loadTLS := tlsFlags(fs)
	if fs.Parse(args) != nil || fs.NArg() < 1 {
		fmt.Fprintln(stderr, "usage: logx forward [-node NAME] [-level L] [-parse auto|json|logfmt|rfc3339] [-tz ZONE] [-stream S] [-timeout D] [-ca F -cert F -key F] ADDR...")
		return 2
	}
	lv, err := logx.ParseLevel(*level)
	if err != nil {
		return fail(stderr, "-level: %v", err)
	}
	parser, err := newLineParser(*parse, *tz, lv)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	tlsConfig, err := loadTLS()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	c, err := logx.NewStreamClient(cctx, tlsConfig, *stream, *node, fs.Args()...)
	cancel()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer c.Close()

	// A reader goroutine feeds lines; batches go out as lines arrive, at
	// most 1000 at a time.
	lines := make(chan string, 1000)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		readErr <- sc.Err()
	}()
	committed := 0
	for {
		line, ok := <-lines
		if !ok {
			break
		}
		raws := []string{line}
		batch := []logx.ClientEntry{parser.parse(line)}
		size := len(line)
		// One Send is one batch (as /ingest's chunks are): a batch the
		// leader refuses is then all there is to send again as it is.
		// Before, a Send of more than 1 MiB went as several batches, and
		// a refusal of a later one sent the committed ones a second time.
	more:
		for len(batch) < ingestChunk && size < ingestChunkSize {
			select {
			case l, ok := <-lines:
				if !ok {
					break more
				}
				raws = append(raws, l)
				batch = append(batch, parser.parse(l))
				size += len(l)
			default:
				break more
			}
		}
		bctx, cancel := context.WithTimeout(ctx, *timeout)
		_, err := c.Send(bctx, batch)
		cancel()
		if parser.mode != parseNone && sendRaw(err) {
			// Parsed, a line can render larger than itself (a JSON
			// cluster escapes <, > and & in nested values): the lines as
			// they are, rather than none.
			fmt.Fprintf(stderr, "logx: a batch of %d parsed lines was refused (%s); sending them as they are\n", len(batch), termSafe(err.Error()))
			for i, l := range raws {
				batch[i] = logx.ClientEntry{Level: parser.level, Msg: l}
			}
			bctx, cancel := context.WithTimeout(ctx, *timeout)
			_, err = c.Send(bctx, batch)
			cancel()
		}
		if err != nil {
			return fail(stderr, "after %d lines committed: %v", committed, err)
		}
		committed += len(batch)
	}
	if err := <-readErr; err != nil {
		return fail(stderr, "reading standard input after %d lines: %v", committed, err)
	}
	fmt.Fprintf(stderr, "logx: %d lines committed\n", committed)
	return 0
}

// sendRaw reports whether a batch of parsed lines that failed with err is
// to be sent again as the lines are: refused whole, and not perhaps
// committed already (ErrOutcomeUnknown: a try whose answer was lost, then
// a refusal), which would write it twice.
func sendRaw(err error) bool {
	return (errors.Is(err, logx.ErrRejected) || errors.Is(err, logx.ErrEntryTooLarge)) && !errors.Is(err, logx.ErrOutcomeUnknown)
}
