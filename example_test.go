package logx_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/logx-dev/logx"
)

// A single-node cluster: log, flush, and read the file back.
func Example() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	addr := freeAddr() // e.g. "127.0.0.1:20001"

	lx, err := logx.New(logx.Config{
		NodeID: "n1",
		Addr:   addr,
		Peers:  []string{addr},
		Dir:    dir,
		File:   "app.log",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lx.Close()
	ctx := context.Background()
	if err := lx.WaitReady(ctx); err != nil {
		fmt.Println(err)
		return
	}

	lx.Info("user signed in", "user", 42)                         // queued, committed in the background
	seq, err := lx.Append(ctx, logx.LevelWarn, "payment retried") // returns after commit
	fmt.Println("Append:", seq, err)
	slog.New(lx.Handler()).Error("via slog", "code", 7)
	if err := lx.Flush(ctx); err != nil {
		fmt.Println(err)
		return
	}

	b, _ := os.ReadFile(filepath.Join(dir, "app.log"))
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		// Skip time and caller, which vary.
		fmt.Println(f[0], f[2], f[3], strings.Join(f[5:], " "))
	}
	// Output:
	// Append: 2 <nil>
	// seq=1 level=INFO node=n1 msg="user signed in" user=42
	// seq=2 level=WARN node=n1 msg="payment retried"
	// seq=3 level=ERROR node=n1 msg="via slog" code=7
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
