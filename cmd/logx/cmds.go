package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/logx-dev/logx"
)

// newFlags returns a flag set that reports errors on stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("logx "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// fail prints an error and returns exit status 2.
func fail(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintln(stderr, termSafe(fmt.Sprintf("logx: "+format, args...)))
	return 2
}

// detectFile finds the active file's name in dir when -file is not given:
// the one log file that is not a rotated one.
func detectFile(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	rotated := regexp.MustCompile(`-\d{20}(\.[^.]*)?(\.zst)?$`) // plain or compressed
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
		return logx.ReloadingTLS(*ca, *cert, *key) // forward runs long: it follows rotated files
	}
}
