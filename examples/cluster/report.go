package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/logx-dev/logx"
)

type fileInfo struct {
	name string
	size int64
	hash string
}

// report prints every node's files of each stream and compares them with
// node 1's.
func report(w io.Writer, o *options) error {
	var nfiles int
	var total int64
	for _, st := range []struct{ name, file string }{{logx.DefaultStream, "app.log"}, {"audit", "audit.log"}} {
		dir := func(i int) string { return logx.StreamDir(filepath.Join(o.dir, fmt.Sprintf("n%d", i+1)), st.name) }
		fmt.Fprintf(w, "stream %s:\n", st.name)
		var all [][]fileInfo
		for i := 0; i < 3; i++ {
			names, err := logx.LogFiles(dir(i), st.file)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "n%d  %s\n", i+1, dir(i))
			var files []fileInfo
			for _, name := range names {
				fi, err := hashFile(filepath.Join(dir(i), name))
				if err != nil {
					return err
				}
				fi.name = name
				files = append(files, fi)
				fmt.Fprintf(w, "    %-30s %10d  %s\n", name, fi.size, fi.hash)
			}
			all = append(all, files)
		}
		fmt.Fprintln(w)
		for i := 1; i < 3; i++ {
			if d := firstDifference(dir, all[0], all[i], i); d != "" {
				fmt.Fprintf(w, "DIFFERENT: stream %s, n1 and n%d: %s\n", st.name, i+1, d)
				return fmt.Errorf("the nodes' files differ")
			}
		}
		for _, f := range all[0] {
			total += f.size
		}
		nfiles += len(all[0])
	}
	fmt.Fprintf(w, "identical: 3 nodes, 2 streams, %d files, %d bytes each\n", nfiles, total)
	return nil
}

func hashFile(path string) (fileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileInfo{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return fileInfo{size: n, hash: hex.EncodeToString(h.Sum(nil))}, err
}

// firstDifference describes where node j's files first differ from node
// 1's, or returns ""; dir(i) is node i's directory of the stream.
func firstDifference(dir func(int) string, a, b []fileInfo, j int) string {
	names := func(fs []fileInfo) []string {
		var s []string
		for _, f := range fs {
			s = append(s, f.name)
		}
		return s
	}
	if !slices.Equal(names(a), names(b)) {
		return fmt.Sprintf("file names differ: %v vs %v", names(a), names(b))
	}
	for k := range a {
		if a[k].hash == b[k].hash {
			continue
		}
		off, err := firstDiffOffset(filepath.Join(dir(0), a[k].name), filepath.Join(dir(j), b[k].name))
		if err != nil {
			return fmt.Sprintf("%s differs (%v)", a[k].name, err)
		}
		return fmt.Sprintf("%s differs at byte %d (sizes %d and %d)", a[k].name, off, a[k].size, b[k].size)
	}
	return ""
}

func firstDiffOffset(p1, p2 string) (int64, error) {
	f1, err := os.Open(p1)
	if err != nil {
		return 0, err
	}
	defer f1.Close()
	f2, err := os.Open(p2)
	if err != nil {
		return 0, err
	}
	defer f2.Close()
	r1, r2 := bufio.NewReader(f1), bufio.NewReader(f2)
	var off int64
	b1, b2 := make([]byte, 32<<10), make([]byte, 32<<10)
	for {
		n1, e1 := io.ReadFull(r1, b1)
		n2, e2 := io.ReadFull(r2, b2)
		n := min(n1, n2)
		for i := 0; i < n; i++ {
			if b1[i] != b2[i] {
				return off + int64(i), nil
			}
		}
		if n1 != n2 || !bytes.Equal(b1[:n1], b2[:n2]) {
			return off + int64(n), nil
		}
		off += int64(n)
		if e1 != nil || e2 != nil {
			return off, nil
		}
	}
}
