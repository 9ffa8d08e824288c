package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/logx-dev/logx/logxtls"
)

// cmdCerts writes a certificate for each named node or client, for trying
// mutual TLS (see docs/security.md), from the CA in the directory, or a
// new test CA if there is none.
func cmdCerts(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("certs", stderr)
	out := fs.String("out", "certs", "directory to write the PEM files to")
	hosts := fs.String("host", "127.0.0.1,localhost", "comma-separated IP addresses and DNS names the certificates name")
	valid := fs.Duration("valid", 30*24*time.Hour, "how long the certificates are valid")
	if fs.Parse(args) != nil || fs.NArg() < 1 {
		fmt.Fprintln(stderr, "usage: logx certs [-out DIR] [-host H,...] [-valid D] NAME...")
		return 2
	}
	if err := logxtls.WriteFiles(*out, fs.Args(), strings.Split(*hosts, ","), *valid); err != nil {
		return fail(stderr, "%v", err)
	}
	fmt.Fprintf(stdout, "wrote %s: NAME.pem, NAME-key.pem for %s, from the CA in ca.pem and ca-key.pem\n", *out, strings.Join(fs.Args(), ", "))
	return 0
}
