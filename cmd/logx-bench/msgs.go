package main

import (
	"math/rand"
	"strconv"
	"strings"
)

// vocabulary is the word list messages are made of: words that are common
// in application logs, so that a generated message compresses roughly like
// a real one (unlike a repeated pattern, which compresses to nothing).
var vocabulary = strings.Fields(`
	the a an of to in for on with from by at as is was be been are not no and or
	user users account session token request response client server service api
	http https grpc method path status code error errors warning failed failure
	success succeeded completed started starting stopped stopping retry retrying
	timeout timed out connection connected disconnected closed open opened reset
	database query queries table row rows index transaction commit rollback lock
	cache hit miss evicted expired key value entry entries item items batch queue
	job jobs worker workers task tasks scheduled running pending done cancelled
	order orders payment payments invoice refund cart checkout product price total
	file files disk read write written bytes size limit quota exceeded full empty
	node nodes cluster leader follower replica election term heartbeat peer peers
	config loaded reloaded changed updated created deleted removed added missing
	invalid valid parsed parse unexpected unknown duplicate ignored skipped dropped
	memory cpu latency slow fast took ms seconds elapsed rate throughput backlog
	auth login logout signed permission denied granted role admin guest email sent
	message messages event events stream topic partition offset consumer producer
	handler middleware route endpoint upstream downstream proxy gateway backend
	frontend region zone host port address version build deploy release health
	check ok degraded healthy unhealthy alert metric metrics trace span id
	`)

// messages returns n messages of exactly size bytes each, made of words
// drawn (with a Zipf-like bias, as in real text) from vocabulary by a
// math/rand generator seeded with seed, with an occasional number.
func messages(seed int64, n, size int) []string {
	r := rand.New(rand.NewSource(seed))
	zipf := rand.NewZipf(r, 1.2, 8, uint64(len(vocabulary)-1))
	out := make([]string, n)
	var b strings.Builder
	for k := range out {
		b.Reset()
		for b.Len() < size {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			switch x := r.Intn(20); {
			case x == 0:
				b.WriteString(strconv.Itoa(r.Intn(100000)))
			case x == 1:
				b.WriteString(vocabulary[zipf.Uint64()])
				b.WriteByte('=')
				b.WriteString(strconv.Itoa(r.Intn(1000)))
			default:
				b.WriteString(vocabulary[zipf.Uint64()])
			}
		}
		s := b.String()[:size]
		if s[size-1] == ' ' { // no trailing space
			s = s[:size-1] + "."
		}
		out[k] = s
	}
	return out
}
