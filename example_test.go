package logx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

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

// Streams: an audit log beside the application's default log, each with its
// own files, format and settings, on the same nodes and address.
func ExampleLogx_Stream() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	addr := freeAddr()

	lx, err := logx.New(logx.Config{
		NodeID: "n1",
		Addr:   addr,
		Peers:  []string{addr},
		Dir:    dir,
		File:   "app.log", // the default stream's file, in dir
		Streams: []logx.StreamConfig{
			// Its files are in dir/streams/audit; a zero field takes
			// logx's default.
			{Name: "audit", Format: logx.FormatJSON, MaxAge: 365 * 24 * time.Hour},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lx.Close()
	ctx := context.Background()
	if err := lx.WaitReady(ctx); err != nil { // every stream
		fmt.Println(err)
		return
	}

	audit, err := lx.Stream("audit")
	if err != nil {
		fmt.Println(err)
		return
	}
	lx.Info("request served", "path", "/")                                    // the default stream
	seq, err := audit.Append(ctx, logx.LevelWarn, "role granted", "user", 42) // the audit stream
	fmt.Println("audit:", seq, err)
	slog.New(audit.Handler()).Info("via slog", "user", 7)
	if err := lx.Flush(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if err := audit.Flush(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(lx.Streams())

	b, _ := os.ReadFile(filepath.Join(dir, "streams", "audit", "audit.log"))
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e struct {
			Seq   uint64 `json:"seq"`
			Level string `json:"level"`
			Msg   string `json:"msg"`
			User  int    `json:"user"`
		}
		_ = json.Unmarshal([]byte(line), &e)
		fmt.Println(e.Seq, e.Level, e.Msg, e.User)
	}
	// Output:
	// audit: 1 <nil>
	// [default audit]
	// 1 WARN role granted 42
	// 2 INFO via slog 7
}

// requestIDKey is the context key of ExampleConfig_contextAttrs's request id.
type requestIDKey struct{}

// ContextAttrs adds request-scoped attributes, here a request id kept in
// the context, to every entry logged with that context: through Append,
// LogAttrs and the slog handler. (The module logxotel gives a ContextAttrs
// that adds OpenTelemetry's trace_id and span_id.)
func ExampleConfig_contextAttrs() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	addr := freeAddr()

	lx, err := logx.New(logx.Config{
		NodeID: "n1",
		Addr:   addr,
		Peers:  []string{addr},
		Dir:    dir,
		File:   "app.log",
		ContextAttrs: func(ctx context.Context) []slog.Attr {
			if id, ok := ctx.Value(requestIDKey{}).(string); ok {
				return []slog.Attr{slog.String("request", id)}
			}
			return nil
		},
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

	req := context.WithValue(ctx, requestIDKey{}, "r-17")
	_, _ = lx.Append(req, logx.LevelInfo, "order placed", "items", 3)
	slog.New(lx.Handler()).InfoContext(req, "via slog")
	lx.Info("no context, no request") // the leveled calls take no context
	if err := lx.Flush(ctx); err != nil {
		fmt.Println(err)
		return
	}

	b, _ := os.ReadFile(filepath.Join(dir, "app.log"))
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		fmt.Println(f[0], strings.Join(f[5:], " "))
	}
	// Output:
	// seq=1 msg="order placed" request=r-17 items=3
	// seq=2 msg="via slog" request=r-17
	// seq=3 msg="no context, no request"
}
