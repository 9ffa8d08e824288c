package logx_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
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

// startNode starts a single-node cluster in dir with cfg's other settings
// and waits until it is ready (the examples below show only what they are
// about).
func startNode(dir string, cfg logx.Config) (*logx.Logx, error) {
	addr := freeAddr()
	cfg.NodeID, cfg.Addr, cfg.Peers, cfg.Dir = "n1", addr, []string{addr}, dir
	if cfg.File == "" {
		cfg.File = "app.log"
	}
	lx, err := logx.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := lx.WaitReady(context.Background()); err != nil {
		lx.Close()
		return nil, err
	}
	return lx, nil
}

// printLines prints each line of the file at path without its time, node
// and caller.
func printLines(path string) {
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fmt.Println(varying.ReplaceAllString(line, ""))
	}
}

var varying = regexp.MustCompile(` (time|node|caller)=\S+`)

// AppendBatch commits several entries as one: all of them, one after the
// other, or none.
func ExampleStream_AppendBatch() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	lx, err := startNode(dir, logx.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lx.Close()

	first, err := lx.AppendBatch(context.Background(), []logx.Record{
		{Level: logx.LevelInfo, Msg: "order placed", Attrs: []slog.Attr{slog.Int("order", 7)}},
		{Level: logx.LevelInfo, Msg: "stock reserved", Attrs: []slog.Attr{slog.Int("order", 7)}},
		{Level: logx.LevelWarn, Msg: "payment pending", Attrs: []slog.Attr{slog.Int("order", 7)}},
	})
	fmt.Println("first:", first, err)
	printLines(filepath.Join(dir, "app.log"))
	// Output:
	// first: 1 <nil>
	// seq=1 level=INFO msg="order placed" order=7
	// seq=2 level=INFO msg="stock reserved" order=7
	// seq=3 level=WARN msg="payment pending" order=7
}

// SetClusterLevel commits a level through the log: every node applies it
// at the same point, and keeps it across restarts.
func ExampleStream_SetClusterLevel() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	lx, err := startNode(dir, logx.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lx.Close()
	ctx := context.Background()

	lx.Info("logged at the default level")
	if err := lx.SetClusterLevel(ctx, logx.LevelWarn); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(lx.ClusterLevel())
	lx.Info("dropped: below the cluster's level")
	lx.Warn("logged")
	if err := lx.Flush(ctx); err != nil {
		fmt.Println(err)
		return
	}
	printLines(filepath.Join(dir, "app.log"))
	// Output:
	// WARN true
	// seq=1 level=INFO msg="logged at the default level"
	// seq=2 level=WARN msg=logged
}

// Sampling logs the first entries of a message in each interval and drops
// the rest on the calling node; at the end of the interval it logs how
// many it dropped.
func ExampleSampling() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	lx, err := startNode(dir, logx.Config{
		Sampling: &logx.Sampling{Interval: time.Hour, First: 2},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 5 {
		lx.Info("cache miss", "key", i)
	}
	lx.Close() // ends the interval: the summary is logged first
	fmt.Println(lx.Stats().Sampled, "dropped")
	printLines(filepath.Join(dir, "app.log"))
	// Output:
	// 3 dropped
	// seq=1 level=INFO msg="cache miss" key=0
	// seq=2 level=INFO msg="cache miss" key=1
	// seq=3 level=INFO msg="logx: sampling dropped entries" sampled_msg="cache miss" dropped=3 interval=1h0m0s
}

// Grep's options: newest first with a limit, and lines of context around
// each match.
func ExampleStream_Grep() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	lx, err := startNode(dir, logx.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lx.Close()
	ctx := context.Background()
	for i := 1; i <= 6; i++ {
		level := logx.LevelInfo
		if i%3 == 0 {
			level = logx.LevelError
		}
		_, _ = lx.Append(ctx, level, "step", "i", i)
	}

	show := func(l logx.Line) error {
		mark := "match  "
		if l.Context {
			mark = "context"
		}
		fmt.Println(mark, l.Seq, l.Level)
		return nil
	}
	fmt.Println("the newest error:")
	_ = lx.Grep(ctx, logx.Query{Level: logx.LevelError, Newest: true, Limit: 1}, show)
	fmt.Println("errors with a line either side:")
	_ = lx.Grep(ctx, logx.Query{Level: logx.LevelError, Before: 1, After: 1}, show)
	// Output:
	// the newest error:
	// match   6 ERROR
	// errors with a line either side:
	// context 2 INFO
	// match   3 ERROR
	// context 4 INFO
	// context 5 INFO
	// match   6 ERROR
}

// TruncateBefore takes the rotated files wholly before a sequence number
// out of the log, on every node at the same point: for a log whose
// consumer has checkpointed up to there.
func ExampleStream_TruncateBefore() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	lx, err := startNode(dir, logx.Config{MaxSize: 4 << 10}) // small files
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lx.Close()
	ctx := context.Background()
	for i := range 200 {
		_, _ = lx.Append(ctx, logx.LevelInfo, "event", "i", i)
	}

	if err := lx.TruncateBefore(ctx, 150); err != nil {
		fmt.Println(err)
		return
	}
	r, _ := lx.OpenReader() // at the oldest line the files still hold
	defer r.Close()
	oldest, _ := r.Next()
	fmt.Println("oldest line kept, at most 150:", oldest.Seq > 1 && oldest.Seq <= 150)
	// Output:
	// oldest line kept, at most 150: true
}

// Compress keeps rotated files as zstd (<name>.zst), which logx's readers
// and any zstd tool read; OpenLogFile gives a file's plain bytes in
// either form.
func ExampleOpenLogFile() {
	dir, _ := os.MkdirTemp("", "logx-example")
	defer os.RemoveAll(dir)
	lx, err := startNode(dir, logx.Config{MaxSize: 4 << 10, Compress: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lx.Close()
	ctx := context.Background()
	for i := range 100 {
		_, _ = lx.Append(ctx, logx.LevelInfo, "event", "i", i)
	}
	// Rotated files are compressed in the background, once checkpointed.
	var names []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if names, _ = logx.LogFiles(dir, "app.log"); strings.HasSuffix(names[0], ".zst") {
			break
		}
	}
	fmt.Println(names[0])
	f, err := logx.OpenLogFile(filepath.Join(dir, names[0]))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	fields := strings.Fields(line)
	fmt.Println(fields[0], fields[2], strings.Join(fields[5:], " "))
	// Output:
	// app-00000000000000000001.log.zst
	// seq=1 level=INFO msg=event i=0
}
