package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/logx-dev/logx"
	"github.com/logx-dev/logx/logxtls"
)

// newFlags returns a flag set that reports errors on stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("logx "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// fail prints an error and returns exit status 2.
func fail(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "logx: "+format+"\n", args...)
	return 2
}

// detectFile finds the active file's name in dir when -file is not given:
// the one log file that is not a rotated one.
func detectFile(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	rotated := regexp.MustCompile(`-\d{20}(\.[^.]*)?$`)
	var cands []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(n, ".") || n == "state.json" || n == "LOCK" ||
			strings.HasSuffix(n, ".tmp") || rotated.MatchString(n) {
			continue
		}
		cands = append(cands, n)
	}
	if len(cands) != 1 {
		return "", fmt.Errorf("cannot tell the log file in %s (candidates: %v); use -file", dir, cands)
	}
	return cands[0], nil
}

func fileFor(dir, flagFile string) (string, error) {
	if flagFile != "" {
		return flagFile, nil
	}
	return detectFile(dir)
}

// parseLevel parses a -level value ("" is every level).
func parseLevel(s string) (slog.Leveler, error) {
	if s == "" {
		return nil, nil
	}
	l, err := logx.ParseLevel(s)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// parseTime parses RFC 3339, or a duration meaning that long before now.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

// cmdTail prints a node's log: the last 10 lines, or with -f everything
// from there on as it is written.
func cmdTail(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("tail", stderr)
	follow := fs.Bool("f", false, "keep printing lines as they are written")
	n := fs.Int("n", 10, "start this many lines before the end")
	level := fs.String("level", "", "only lines at or above this level")
	file := fs.String("file", "", "the active file's name (default: found in DIR)")
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: logx tail [-f] [-n N] [-level L] [-file NAME] DIR")
		return 2
	}
	dir := fs.Arg(0)
	lv, err := parseLevel(*level)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	name, err := fileFor(dir, *file)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	r, err := logx.OpenReader(dir, name)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer r.Close()
	// Find the last sequence number, then start n lines before it.
	var last uint64
	for {
		l, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(stderr, "%v", err)
		}
		last = l.Seq
	}
	from := uint64(1)
	if last > uint64(*n) {
		from = last - uint64(*n) + 1
	}
	if err := r.SeekSeq(from); err != nil && !errors.Is(err, logx.ErrRetained) {
		return fail(stderr, "%v", err)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for {
		l, err := r.Next()
		if errors.Is(err, io.EOF) {
			if !*follow {
				return 0
			}
			if err := w.Flush(); err != nil {
				return 2
			}
			select {
			case <-ctx.Done():
				return 0
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return fail(stderr, "%v", err)
		}
		if lv == nil || l.Level >= lv.Level() {
			w.Write(l.Text)
			w.WriteByte('\n')
		}
	}
}

// cmdGrep prints the lines of a node's log that match.
func cmdGrep(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("grep", stderr)
	since := fs.String("since", "", "lines at or after this time (RFC 3339, or a duration ago)")
	until := fs.String("until", "", "lines before this time")
	level := fs.String("level", "", "only lines at or above this level")
	re := fs.Bool("E", false, "PATTERN is a regular expression (RE2 syntax)")
	file := fs.String("file", "", "the active file's name (default: found in DIR)")
	if fs.Parse(args) != nil || fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: logx grep [-since T] [-until T] [-level L] [-E] [-file NAME] PATTERN DIR")
		return 2
	}
	pattern, dir := fs.Arg(0), fs.Arg(1)
	var q logx.Query
	var err error
	if q.Since, err = parseTime(*since); err != nil {
		return fail(stderr, "-since: %v", err)
	}
	if q.Until, err = parseTime(*until); err != nil {
		return fail(stderr, "-until: %v", err)
	}
	if q.Level, err = parseLevel(*level); err != nil {
		return fail(stderr, "-level: %v", err)
	}
	if *re {
		if q.Regexp, err = regexp.Compile(pattern); err != nil {
			return fail(stderr, "%v", err)
		}
	} else {
		q.Contains = pattern
	}
	name, err := fileFor(dir, *file)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	w := bufio.NewWriterSize(stdout, 256<<10)
	found := false
	err = logx.Grep(ctx, dir, name, q, func(l logx.Line) error {
		found = true
		w.Write(l.Text)
		return w.WriteByte('\n')
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if !found {
		return 1
	}
	return 0
}

// cmdVerify compares nodes' directories file by file.
func cmdVerify(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("verify", stderr)
	file := fs.String("file", "", "the active file's name (default: found in each DIR)")
	if fs.Parse(args) != nil || fs.NArg() < 2 {
		fmt.Fprintln(stderr, "usage: logx verify [-file NAME] DIR DIR...")
		return 2
	}
	dirs := fs.Args()
	type node struct {
		dir   string
		names []string
	}
	var nodes []node
	for _, d := range dirs {
		name, err := fileFor(d, *file)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		names, err := logx.LogFiles(d, name)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		nodes = append(nodes, node{d, names})
	}
	ref := nodes[0]
	var total int64
	for _, nd := range nodes[1:] {
		if strings.Join(nd.names, ",") != strings.Join(ref.names, ",") {
			fmt.Fprintf(stdout, "differ: %s has files %v, %s has %v\n", ref.dir, ref.names, nd.dir, nd.names)
			return 1
		}
	}
	for _, name := range ref.names {
		var refSum string
		var refSize int64
		for k, nd := range nodes {
			sum, size, off, err := compareFile(filepath.Join(ref.dir, name), filepath.Join(nd.dir, name))
			if err != nil {
				return fail(stderr, "%v", err)
			}
			if off >= 0 {
				fmt.Fprintf(stdout, "differ: %s: %s and %s first differ at byte %d\n", name, ref.dir, nd.dir, off)
				return 1
			}
			if k == 0 {
				refSum, refSize = sum, size
				total += size
			}
		}
		fmt.Fprintf(stdout, "%-32s %12d  %s\n", name, refSize, refSum)
	}
	fmt.Fprintf(stdout, "identical: %d directories, %d files, %d bytes each\n", len(nodes), len(ref.names), total)
	return 0
}

// compareFile returns a's sha256 and size, and the first offset where a and
// b differ (-1 if they are the same).
func compareFile(a, b string) (sum string, size, diff int64, err error) {
	fa, err := os.Open(a)
	if err != nil {
		return "", 0, 0, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return "", 0, 0, err
	}
	defer fb.Close()
	h := sha256.New()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	bufA, bufB := make([]byte, 64<<10), make([]byte, 64<<10)
	diff = -1
	for {
		na, ea := io.ReadFull(ra, bufA)
		nb, eb := io.ReadFull(rb, bufB)
		h.Write(bufA[:na])
		if diff < 0 {
			for i := 0; i < min(na, nb); i++ {
				if bufA[i] != bufB[i] {
					diff = size + int64(i)
					break
				}
			}
			if diff < 0 && na != nb {
				diff = size + int64(min(na, nb))
			}
		}
		size += int64(na)
		if ea != nil || eb != nil {
			if !isEOF(ea) {
				return "", 0, 0, ea
			}
			if !isEOF(eb) {
				return "", 0, 0, eb
			}
			if diff < 0 && (isEOF(ea) != isEOF(eb) || na != nb) {
				diff = size
			}
			return hex.EncodeToString(h.Sum(nil)), size, diff, nil
		}
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// tlsFlags adds -ca, -cert and -key to fs; the function it returns loads
// the mutual-TLS configuration they name, or returns nil when none is set.
func tlsFlags(fs *flag.FlagSet) func() (*tls.Config, error) {
	ca := fs.String("ca", "", "PEM file of the cluster's CA: talk mutual TLS (with -cert and -key)")
	cert := fs.String("cert", "", "PEM file of this client's certificate, from the cluster's CA")
	key := fs.String("key", "", "PEM file of this client's private key")
	return func() (*tls.Config, error) {
		if *ca == "" && *cert == "" && *key == "" {
			return nil, nil
		}
		if *ca == "" || *cert == "" || *key == "" {
			return nil, errors.New("-ca, -cert and -key go together")
		}
		return logx.LoadTLS(*ca, *cert, *key)
	}
}

// cmdStatus prints a node's Stats as JSON.
func cmdStatus(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	loadTLS := tlsFlags(fs)
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: logx status [-ca F -cert F -key F] ADDR")
		return 2
	}
	tlsConfig, err := loadTLS()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := logx.QueryStatusTLS(ctx, fs.Arg(0), tlsConfig)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		return 2
	}
	return 0
}

// cmdForward logs every line of standard input into the cluster, in
// batches, and exits once all are committed. Nothing read is dropped: a
// line that cannot be committed stops the command with an error naming how
// many lines were committed.
func cmdForward(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("forward", stderr)
	node := fs.String("node", "forward", "the node= name of the lines")
	level := fs.String("level", "INFO", "the level of the lines")
	timeout := fs.Duration("timeout", time.Minute, "give up when a batch is not committed within this")
	loadTLS := tlsFlags(fs)
	if fs.Parse(args) != nil || fs.NArg() < 1 {
		fmt.Fprintln(stderr, "usage: logx forward [-node NAME] [-level L] [-timeout D] [-ca F -cert F -key F] ADDR...")
		return 2
	}
	lv, err := logx.ParseLevel(*level)
	if err != nil {
		return fail(stderr, "-level: %v", err)
	}
	tlsConfig, err := loadTLS()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	c, err := logx.NewClientTLS(cctx, tlsConfig, *node, fs.Args()...)
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
		batch := []logx.ClientEntry{{Level: lv, Msg: line}}
	more:
		for len(batch) < 1000 {
			select {
			case l, ok := <-lines:
				if !ok {
					break more
				}
				batch = append(batch, logx.ClientEntry{Level: lv, Msg: l})
			default:
				break more
			}
		}
		bctx, cancel := context.WithTimeout(ctx, *timeout)
		_, err := c.Send(bctx, batch)
		cancel()
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

// cmdCerts writes a test CA and a certificate for each named node or
// client, for trying mutual TLS (see docs/security.md).
func cmdCerts(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("certs", stderr)
	out := fs.String("out", "certs", "directory to write the PEM files to")
	hosts := fs.String("host", "127.0.0.1,localhost", "comma-separated IP addresses and DNS names the certificates name")
	valid := fs.Duration("valid", 30*24*time.Hour, "how long the certificates are valid")
	if fs.Parse(args) != nil || fs.NArg() < 1 {
		fmt.Fprintln(stderr, "usage: logx certs [-out DIR] [-host H,...] [-valid D] NAME...")
		return 2
	}
	if err := logxtls.WriteFiles(*out, fs.Args(), strings.Split(*hosts, ","), *valid); err != nil {
		return fail(stderr, "%v", err)
	}
	fmt.Fprintf(stdout, "wrote %s: ca.pem, ca-key.pem and NAME.pem, NAME-key.pem for %s\n", *out, strings.Join(fs.Args(), ", "))
	return 0
}
