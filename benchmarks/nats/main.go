// Command nats measures NATS JetStream with three replicas on 127.0.0.1, the
// same way cmd/logx-bench measures logx, so the two tables compare: three
// embedded nats-server nodes in one process (file storage, fsync on every
// write unless -sync-always=false), a stream with Replicas 3, async
// publishing from 4 publishers per node, and synchronous publishing (wait
// for the stream's acknowledgement) from 1, 4, 16, 64 and 256 callers spread over
// the nodes. It is its own module so that logx's users never download NATS:
//
//	cd benchmarks/nats && go run . -count 3
//
// NATS_BENCH_DEBUG=1 shows the servers' own logs and each failed attempt to
// create the stream.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "nats bench:", err)
		os.Exit(1)
	}
}

type options struct {
	sizes      []int
	callers    []int
	duration   time.Duration
	maxEntries int
	count      int
	syncAlways bool
	async      bool
	json       bool
}

func run(args []string, stdout, stderr io.Writer) error {
	o := options{}
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", "100,1024", "message sizes in bytes")
	callers := fs.String("callers", "1,4,16,64,256", "concurrent synchronous publishers")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per cell")
	fs.IntVar(&o.maxEntries, "max-entries", 2_000_000, "messages per async cell at most (a tenth for sync cells)")
	fs.IntVar(&o.count, "count", 1, "runs per cell; the table shows medians")
	fs.BoolVar(&o.syncAlways, "sync-always", true, "fsync every write (JetStream sync_interval: always), as logx's Raft log does")
	fs.BoolVar(&o.async, "async", true, "run the async cell of each size")
	fs.BoolVar(&o.json, "json", false, "print each cell's medians as a JSON object on a line of its own, instead of the table (cmd/logx-bench -nats reads them)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.sizes, err = ints(*sizes); err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	if o.callers, err = ints(*callers); err != nil {
		return fmt.Errorf("-callers: %w", err)
	}
	if !o.json {
		fmt.Fprintln(stdout, "| series | mode | size | workload | callers | entries/s | MB/s | p50 ms | p99 ms | p99.9 ms |")
		fmt.Fprintln(stdout, "|---|---|---|---|---:|---:|---:|---:|---:|---:|")
	}
	for _, size := range o.sizes {
		var cells []int
		if o.async {
			cells = append(cells, 0) // 0: async
		}
		cells = append(cells, o.callers...)
		for _, c := range cells {
			var runs []result
			for r := 0; r < o.count; r++ {
				res, err := runCell(o, size, c)
				if err != nil {
					return fmt.Errorf("size %d callers %d: %w", size, c, err)
				}
				fmt.Fprintf(stderr, "nats-js %dB callers=%d run %d: %.0f msgs/s p99 %.2f ms\n", size, c, r+1, res.rate, res.p99)
				runs = append(runs, res)
			}
			m := median(runs)
			if o.json {
				b, err := json.Marshal(jsonCell{Size: size, Callers: c, EntriesPerSec: m.rate, MBPerSec: m.mbs,
					Entries: m.n, Seconds: m.secs, P50: m.p50, P99: m.p99, P999: m.p999})
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\n", b)
				continue
			}
			if c == 0 {
				fmt.Fprintf(stdout, "| nats-js | inproc | %s | async | 4/node | %.0f | %.1f |  |  |  |\n", sizeName(size), m.rate, m.mbs)
			} else {
				fmt.Fprintf(stdout, "| nats-js | inproc | %s | publish | %d | %.0f | %.2f | %.2f | %.2f | %.2f |\n", sizeName(size), c, m.rate, m.mbs, m.p50, m.p99, m.p999)
			}
		}
	}
	return nil
}

type result struct {
	rate, mbs, p50, p99, p999 float64
	n                         int64   // messages acknowledged
	secs                      float64 // measured time
}

// jsonCell is a cell's medians as -json prints them; callers 0 is the
// async cell (no latencies). cmd/logx-bench reads these lines (its
// natsCell: the two modules share no code, so keep the two in step).
type jsonCell struct {
	Size          int     `json:"size"`
	Callers       int     `json:"callers"`
	EntriesPerSec float64 `json:"entries_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	Entries       int64   `json:"entries"`
	Seconds       float64 `json:"seconds"`
	P50           float64 `json:"p50_ms,omitempty"`
	P99           float64 `json:"p99_ms,omitempty"`
	P999          float64 `json:"p999_ms,omitempty"`
}

// runCell starts a fresh 3-node cluster and measures one cell: async
// publishing when callers is 0, else synchronous publishing.
func runCell(o options, size, callers int) (result, error) {
	dir, err := os.MkdirTemp("", "nats-bench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	servers, err := startCluster(dir, o.syncAlways)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}()
	var conns []*nats.Conn
	var jss []jetstream.JetStream
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for _, s := range servers {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			return result{}, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return result{}, err
		}
		conns, jss = append(conns, nc), append(jss, js)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		// A request sent before the cluster has formed may go unanswered:
		// each attempt gets its own few seconds.
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = jss[0].CreateStream(actx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"},
			Replicas: 3, Storage: jetstream.FileStorage})
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return result{}, fmt.Errorf("creating the stream: %w", err)
		}
		if os.Getenv("NATS_BENCH_DEBUG") != "" {
			fmt.Fprintln(os.Stderr, "create stream:", err)
		}
		time.Sleep(100 * time.Millisecond) // the meta leader is still being elected
	}
	msgs := messages(1024, size)
	if callers == 0 {
		return publishAsync(jss, msgs, o)
	}
	return publishSync(ctx, jss, msgs, callers, o)
}

// publishAsync publishes from 4 goroutines per node with a bounded window
// and stops the clock when every message is acknowledged.
func publishAsync(jss []jetstream.JetStream, msgs [][]byte, o options) (result, error) {
	start := time.Now()
	n, err := drive(4*len(jss), int64(o.maxEntries), start.Add(o.duration), func(g int, i int64) error {
		// A full window is backpressure: wait for room, as a logx caller
		// waits for room in its queue.
		_, err := jss[g/4].PublishAsync("bench.a", msgs[i%int64(len(msgs))], jetstream.WithStallWait(time.Minute))
		return err
	})
	if err != nil {
		return result{}, err
	}
	for _, js := range jss {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			return result{}, errors.New("async publishes not acknowledged within a minute")
		}
	}
	el := time.Since(start).Seconds()
	return result{rate: float64(n) / el, mbs: float64(n) * float64(len(msgs[0])) / el / 1e6, n: n, secs: el}, nil
}

// publishSync publishes from callers goroutines, each waiting for the
// stream's acknowledgement, and records every latency.
func publishSync(ctx context.Context, jss []jetstream.JetStream, msgs [][]byte, callers int, o options) (result, error) {
	lat := make([][]time.Duration, callers)
	start := time.Now()
	n, err := drive(callers, int64(o.maxEntries/10), start.Add(o.duration), func(g int, i int64) error {
		t0 := time.Now()
		if _, err := jss[(g+1)%len(jss)].Publish(ctx, "bench.s", msgs[i%int64(len(msgs))]); err != nil {
			return err
		}
		lat[g] = append(lat[g], time.Since(t0))
		return nil
	})
	el := time.Since(start).Seconds()
	if err != nil {
		return result{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return result{}, errors.New("nothing published")
	}
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	return result{rate: float64(n) / el, mbs: float64(n) * float64(len(msgs[0])) / el / 1e6, p50: q(0.5), p99: q(0.99), p999: q(0.999),
		n: n, secs: el}, nil
}

// drive calls fn from n goroutines (fn's g is the goroutine's number), each
// taking message numbers until limit are taken, deadline passes or fn
// fails. It returns how many calls succeeded and the errors.
func drive(n int, limit int64, deadline time.Time, fn func(g int, i int64) error) (int64, error) {
	var next, done atomic.Int64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := next.Add(1)
				if i > limit {
					return
				}
				if errs[g] = fn(g, i); errs[g] != nil {
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return done.Load(), errors.Join(errs...)
}

// startCluster starts three JetStream servers routed to each other.
func startCluster(dir string, syncAlways bool) ([]*server.Server, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := 0; i < 3; i++ {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[3+i]))
	}
	var servers []*server.Server
	for i := 0; i < 3; i++ {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1", Port: ports[i],
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Cluster:    server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: ports[3+i]},
			Routes:     server.RoutesFromStr(strings.Join(others(routes, i), ",")),
			SyncAlways: syncAlways,
			NoLog:      os.Getenv("NATS_BENCH_DEBUG") == "", NoSigs: true,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			return servers, err
		}
		if !opts.NoLog {
			s.ConfigureLogger()
		}
		go s.Start()
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			return servers, errors.New("a server did not start")
		}
	}
	return servers, nil
}

// others returns the routes of every server but the i-th.
func others(routes []string, i int) []string {
	return append(slices.Clone(routes[:i]), routes[i+1:]...)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// messages returns n messages of size bytes made of words, like
// cmd/logx-bench's, so both compress and compare alike.
func messages(n, size int) [][]byte {
	words := strings.Fields(`the a user request server failed retry connection timeout database
		query cache miss hit session token expired refresh account created deleted updated
		payment order shipment warehouse inventory latency slow upstream downstream handler
		worker queue job scheduled completed started stopped error warning disk memory cpu`)
	r := rand.New(rand.NewSource(1))
	out := make([][]byte, n)
	for i := range out {
		var b strings.Builder
		for b.Len() < size {
			b.WriteString(words[r.Intn(len(words))])
			b.WriteByte(' ')
		}
		out[i] = []byte(b.String()[:size])
	}
	return out
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{
		rate: pick(func(r result) float64 { return r.rate }), mbs: pick(func(r result) float64 { return r.mbs }),
		p50: pick(func(r result) float64 { return r.p50 }), p99: pick(func(r result) float64 { return r.p99 }),
		p999: pick(func(r result) float64 { return r.p999 }),
		n:    int64(pick(func(r result) float64 { return float64(r.n) })), secs: pick(func(r result) float64 { return r.secs }),
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func sizeName(n int) string {
	if n%1024 == 0 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
