// Command mkolddir wrote testdata/dir-2f686b5.tar.gz: a node's Dir written
// by logx as of commit 2f686b5 (main before streams), which
// TestOpensPreStreamsDir opens as the default stream. To make it again:
//
//	git worktree add /tmp/old 2f686b5
//	mkdir /tmp/mk && cp testdata/mkolddir/main.go /tmp/mk && cd /tmp/mk
//	go mod init mk && go mod edit -require github.com/logx-dev/logx@v0.0.0 \
//	    -replace github.com/logx-dev/logx=/tmp/old && go mod tidy
//	go run . /tmp/out && (cd /tmp/out && tar czf dir-2f686b5.tar.gz fixture.json n1)
//
// It lives under testdata, so go build and go test ./... skip it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/logx-dev/logx"
)

func main() {
	out := os.Args[1]
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(out, "n1")
	lx, err := logx.New(logx.Config{NodeID: "n1", Addr: addr, Peers: []string{addr}, Dir: dir, File: "app.log", MaxSize: 4096})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := lx.WaitReady(ctx); err != nil {
		panic(err)
	}
	for k := 0; k < 100; k++ {
		lx.Info("old release entry", "k", k)
	}
	for k := 0; k < 50; k++ {
		if _, err := lx.Append(ctx, logx.LevelWarn, "old release append", "k", k); err != nil {
			panic(err)
		}
	}
	if err := lx.Flush(ctx); err != nil {
		panic(err)
	}
	st := lx.Stats()
	if err := lx.Close(); err != nil {
		panic(err)
	}
	b, _ := json.Marshal(map[string]any{"addr": addr, "seq": st.Seq, "commit": "2f686b5"})
	os.WriteFile(filepath.Join(out, "fixture.json"), b, 0o644)
	fmt.Println(string(b))
}
