package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/logx-dev/logx"
)

// cmdVerify compares nodes' directories file by file: every stream found
// in any of them (one that some lack differs), or the one -stream names.
func cmdVerify(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("verify", stderr)
	file := fs.String("file", "", "the active file's name (default: found in each DIR); only with one stream")
	stream := fs.String("stream", "", "verify only this stream (default: every stream found in any DIR)")
	if fs.Parse(args) != nil || fs.NArg() < 2 {
		fmt.Fprintln(stderr, "usage: logx verify [-stream S] [-file NAME] DIR DIR...")
		return 2
	}
	dirs := fs.Args()
	streams := []string{*stream}
	if *stream == "" && *file != "" {
		streams = []string{logx.DefaultStream}
	} else if *stream == "" {
		// Every stream any directory holds: the default one first, then
		// the others by name; one that a directory lacks differs.
		streams = nil
		has := map[string][]bool{}
		for i, d := range dirs {
			names, err := logx.StreamNames(d)
			if err != nil {
				return fail(stderr, "%v", err)
			}
			for _, n := range names {
				if has[n] == nil {
					has[n] = make([]bool, len(dirs))
					streams = append(streams, n)
				}
				has[n][i] = true
			}
		}
		slices.SortStableFunc(streams[1:], strings.Compare)
		for _, s := range streams {
			for i, ok := range has[s] {
				if !ok {
					fmt.Fprintf(stdout, "differ: %s has stream %s, %s has not\n", dirs[slices.Index(has[s], true)], s, dirs[i])
					return 1
				}
			}
		}
	}
	for _, s := range streams {
		sdirs := make([]string, len(dirs))
		for i, d := range dirs {
			sdirs[i] = logx.StreamDir(d, s)
		}
		if len(streams) > 1 {
			fmt.Fprintf(stdout, "== stream %s\n", s)
		}
		if code := verifyDirs(sdirs, *file, stdout, stderr); code != 0 {
			return code
		}
	}
	return 0
}

// verifyDirs compares the log files of one stream in dirs.
func verifyDirs(dirs []string, file string, stdout, stderr io.Writer) int {
	type node struct {
		dir    string
		names  []string          // plain names
		stored map[string]string // plain name to the name on disk
	}
	var nodes []node
	for _, d := range dirs {
		name, err := fileFor(d, file)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		names, err := logx.LogFiles(d, name)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		nd := node{dir: d, stored: map[string]string{}}
		for _, n := range names {
			p := plainName(name, n)
			nd.names = append(nd.names, p)
			nd.stored[p] = n
		}
		nodes = append(nodes, nd)
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
		compressed := 0
		for k, nd := range nodes {
			if nd.stored[name] != name {
				compressed++
			}
			sum, size, off, err := compareFile(filepath.Join(ref.dir, ref.stored[name]), filepath.Join(nd.dir, nd.stored[name]))
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
		note := ""
		if compressed > 0 {
			note = fmt.Sprintf("  (compressed in %d of %d)", compressed, len(nodes))
		}
		fmt.Fprintf(stdout, "%-32s %12d  %s%s\n", name, refSize, refSum, note)
	}
	fmt.Fprintf(stdout, "identical: %d directories, %d files, %d bytes each\n", len(nodes), len(ref.names), total)
	return 0
}

// plainName is the plain name of the log file name as LogFiles lists it
// for the active file active: a compressed rotated file's name without
// its ".zst".
func plainName(active, name string) string {
	ext := filepath.Ext(active)
	stem := strings.TrimSuffix(active, ext)
	if p, ok := strings.CutSuffix(name, ".zst"); ok && len(p) == len(stem)+1+20+len(ext) &&
		strings.HasPrefix(p, stem+"-") && strings.HasSuffix(p, ext) {
		return p
	}
	return name
}

// compareFile returns the sha256 and size of a's plain bytes, and the
// first offset where a's and b's plain bytes differ (-1 if they are the
// same); either may be compressed.
func compareFile(a, b string) (sum string, size, diff int64, err error) {
	fa, err := logx.OpenLogFile(a)
	if err != nil {
		return "", 0, 0, err
	}
	defer fa.Close()
	fb, err := logx.OpenLogFile(b)
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
