// Package logxprom exports a logx node's Stats to Prometheus and serves
// /metrics, /healthz and /status over HTTP. It is a separate package so
// that the logx package itself does not depend on Prometheus.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(logxprom.NewCollector(lx))
//	http.Handle("/", logxprom.Handler(lx, reg, logxprom.Options{}))
package logxprom

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/logx-dev/logx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Collector is a prometheus.Collector for one node.
type Collector struct {
	lx *logx.Logx

	counters, gauges []metric
	leader           *prometheus.Desc
	peerFailing      *prometheus.Desc
}

type metric struct {
	desc *prometheus.Desc
	get  func(*logx.Stats) float64
}

// NewCollector returns a Collector of the Stats of lx's streams. Every
// metric carries the labels node (Config.NodeID) and stream (the stream's
// name: "default" for the default stream), one series per stream.
func NewCollector(lx *logx.Logx) *Collector {
	node := lx.Stats().NodeID
	labels := prometheus.Labels{"node": node}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("logx_"+name, help, append([]string{"stream"}, extra...), labels)
	}
	c := &Collector{lx: lx}
	c.counters = []metric{
		{d("entries_enqueued_total", "Entries accepted into this node's queue."), func(s *logx.Stats) float64 { return float64(s.Enqueued) }},
		{d("entries_committed_total", "Entries from this node committed."), func(s *logx.Stats) float64 { return float64(s.Committed) }},
		{d("entries_failed_total", "Entries from this node not (or not surely) committed."), func(s *logx.Stats) float64 { return float64(s.Failed) }},
		{d("entries_dropped_total", "Entries dropped because the queue was full."), func(s *logx.Stats) float64 { return float64(s.Dropped) }},
		{d("entries_rejected_total", "Entries refused as too large."), func(s *logx.Stats) float64 { return float64(s.Rejected) }},
		{d("batches_total", "Batches committed or attempted."), func(s *logx.Stats) float64 { return float64(s.Batches) }},
		{d("forwards_total", "Forwarding attempts to the leader."), func(s *logx.Stats) float64 { return float64(s.Forwarded) }},
		{d("forward_errors_total", "Failed forwarding attempts."), func(s *logx.Stats) float64 { return float64(s.ForwardErrors) }},
		{d("retries_total", "Batch attempts that were retried."), func(s *logx.Stats) float64 { return float64(s.Retries) }},
		{d("lines_written_total", "Lines this node's apply wrote since start."), func(s *logx.Stats) float64 { return float64(s.EntriesWritten) }},
		{d("bytes_written_total", "Bytes this node's apply wrote since start."), func(s *logx.Stats) float64 { return float64(s.BytesWritten) }},
		{d("duplicates_total", "Repeated entries dropped at apply."), func(s *logx.Stats) float64 { return float64(s.Duplicates) }},
		{d("rotations_total", "File rotations since start."), func(s *logx.Stats) float64 { return float64(s.Rotations) }},
		{d("retired_files_total", "Files retention removed since start."), func(s *logx.Stats) float64 { return float64(s.Retired) }},
		{d("catch_ups_total", "Snapshots installed by copying files from peers."), func(s *logx.Stats) float64 { return float64(s.CatchUps) }},
		{d("fetched_bytes_total", "Bytes copied from peers by catch-up."), func(s *logx.Stats) float64 { return float64(s.FetchedBytes) }},
		{d("served_bytes_total", "Bytes served to catching-up peers."), func(s *logx.Stats) float64 { return float64(s.ServedBytes) }},
		{d("clock_reports_refused_total", "Voters' clock reports refused for another certificate subject than their earlier ones."), func(s *logx.Stats) float64 { return float64(s.ClockReportsRefused) }},
		{d("checked_files_total", "Rotated files checked against their checksum."), func(s *logx.Stats) float64 { return float64(s.CheckedFiles) }},
		{d("damaged_files_total", "Rotated files found not to match their checksum."), func(s *logx.Stats) float64 { return float64(s.DamagedFiles) }},
		{d("repaired_files_total", "Damaged rotated files copied again from a peer."), func(s *logx.Stats) float64 { return float64(s.RepairedFiles) }},
		{d("ignored_removals_total", "Removal notices ignored because the other members did not confirm them."), func(s *logx.Stats) float64 { return float64(s.IgnoredRemovals) }},
		{d("evicted_producers_total", "Producers forgotten within the dedup window of their last batch, a try of which may still come (a flood of producers)."), func(s *logx.Stats) float64 { return float64(s.EvictedProducers) }},
	}
	c.gauges = []metric{
		{d("term", "Raft term."), func(s *logx.Stats) float64 { return float64(s.Term) }},
		{d("commit_index", "Raft commit index known here."), func(s *logx.Stats) float64 { return float64(s.CommitIndex) }},
		{d("applied_index", "Raft index the files hold."), func(s *logx.Stats) float64 { return float64(s.AppliedIndex) }},
		{d("lag", "Raft entries the files trail the commit index by (barriers and no-ops hold no lines and do not count)."), func(s *logx.Stats) float64 { return float64(s.Lag) }},
		{d("seq", "Sequence number of the last line written."), func(s *logx.Stats) float64 { return float64(s.Seq) }},
		{d("queue_length", "Entries waiting to be committed."), func(s *logx.Stats) float64 { return float64(s.QueueLen) }},
		{d("queue_capacity", "Capacity of the queue."), func(s *logx.Stats) float64 { return float64(s.QueueCap) }},
		{d("last_contact_seconds", "Seconds since this follower heard from the leader (-1: never)."), func(s *logx.Stats) float64 {
			if s.LastContact < 0 {
				return -1
			}
			return s.LastContact.Seconds()
		}},
		{d("catching_up", "1 while a catch-up from peers runs."), func(s *logx.Stats) float64 { return b2f(s.CatchingUp) }},
		{d("catch_up_remaining_bytes", "Bytes the running catch-up still has to put in place."), func(s *logx.Stats) float64 {
			if !s.CatchingUp {
				return 0
			}
			return float64(s.CatchUpBytes - s.CatchUpDone)
		}},
		{d("write_error", "1 if a write error stopped this node's apply."), func(s *logx.Stats) float64 { return b2f(s.WriteError != "") }},
		{d("apply_rules", "The stream's apply rules as this node applied them (0 until every member ran a logx that knows rules 1)."), func(s *logx.Stats) float64 { return float64(s.Rules) }},
		{d("log_clock_seconds", "The log clock (what a majority of the voters' clocks reached), Unix seconds; 0 until known."), func(s *logx.Stats) float64 {
			if s.LogClock.IsZero() {
				return 0
			}
			return float64(s.LogClock.UnixNano()) / 1e9
		}},
	}
	c.leader = d("is_leader", "1 if this node is the Raft leader.")
	c.peerFailing = d("peer_failing", "1 while the leader's heartbeats to the peer fail.", "peer")
	return c
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.counters {
		ch <- m.desc
	}
	for _, m := range c.gauges {
		ch <- m.desc
	}
	ch <- c.leader
	ch <- c.peerFailing
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range streamStats(c.lx) {
		for _, m := range c.counters {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, m.get(&s), s.Stream)
		}
		for _, m := range c.gauges {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, m.get(&s), s.Stream)
		}
		ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, b2f(s.State == "Leader"), s.Stream)
		for _, p := range s.Peers {
			ch <- prometheus.MustNewConstMetric(c.peerFailing, prometheus.GaugeValue, b2f(p.Failing), s.Stream, p.Addr)
		}
	}
}

// streamStats returns the Stats of each of lx's streams, the default one
// first.
func streamStats(lx *logx.Logx) []logx.Stats {
	var out []logx.Stats
	for _, name := range lx.Streams() {
		if s, err := lx.Stream(name); err == nil { // nil: deleted meanwhile
			out = append(out, s.Stats())
		}
	}
	return out
}

// Options configure Handler.
type Options struct {
	// MaxLag is how far (in Raft entries) the applied index may trail the
	// commit index for /readyz to report ready. Default 100.
	MaxLag uint64
}

// Handler serves, for lx:
//
//	/metrics  the metrics of reg (a registry holding NewCollector(lx))
//	/readyz   200 "ready" when, in every stream, a leader is known, no
//	          catch-up runs, no write error stopped the stream, and the
//	          lag is within MaxLag (this node is caught up); otherwise 503
//	          and the reason, naming the stream
//	/healthz  200 "ok" while the node answers: it is alive, even without
//	          a leader or with a write error (a liveness probe must not
//	          restart every node of a cluster that lost its quorum, nor
//	          one that retries writing to a full disk, which it does by
//	          itself; /readyz says so)
//	/status   the default stream's Stats as JSON; ?stream=NAME another
//	          stream's, ?all=1 every stream's (an array)
func Handler(lx *logx.Logx, reg *prometheus.Registry, o Options) http.Handler {
	if o.MaxLag == 0 {
		o.MaxLag = 100
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	check := func(path, ok string, why func(logx.Stats) string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			for _, s := range streamStats(lx) {
				if reason := why(s); reason != "" {
					if s.Stream != logx.DefaultStream {
						reason = "stream " + s.Stream + ": " + reason
					}
					http.Error(w, reason, http.StatusServiceUnavailable)
					return
				}
			}
			w.Write([]byte(ok + "\n"))
		})
	}
	check("/readyz", "ready", func(s logx.Stats) string { return notReady(s, o.MaxLag) })
	check("/healthz", "ok", func(logx.Stats) string { return "" })
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		var v any = lx.Stats()
		if r.URL.Query().Get("all") != "" {
			v = streamStats(lx)
		} else if name := r.URL.Query().Get("stream"); name != "" {
			s, err := lx.Stream(name)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			v = s.Stats()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	})
	return mux
}

// notReady says why a stream of a node is not ready, or "".
func notReady(s logx.Stats, maxLag uint64) string {
	switch {
	case s.WriteError != "":
		return "write error: " + s.WriteError
	case s.Leader == "":
		return "no leader known"
	case s.CatchingUp:
		return "catching up from peers"
	case s.Lag > maxLag:
		return "applied index trails the commit index by " + strconv.FormatUint(s.Lag, 10) + " entries"
	}
	return ""
}
