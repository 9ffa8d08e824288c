// Command logx reads and operates logx logs: it follows and searches a
// node's files, compares nodes' directories, shows a node's status, and
// logs lines from standard input into a cluster.
//
//	logx tail [-f] [-level L] [-file NAME] DIR
//	logx grep [-since T] [-until T] [-level L] [-E] [-file NAME] PATTERN DIR
//	logx verify [-file NAME] DIR...
//	logx status [-ca F -cert F -key F] ADDR
//	logx level [-stream S] [-ca F -cert F -key F] ADDR [LEVEL]
//	logx truncate [-stream S] [-ca F -cert F -key F] ADDR SEQ
//	logx retention [-stream S] [-ca F -cert F -key F] -max-files N -max-age D ADDR
//	logx forward [-node NAME] [-level L] [-parse auto|json|logfmt|rfc3339] [-tz ZONE] [-ca F -cert F -key F] ADDR...
//	logx certs [-out DIR] [-host H,...] [-valid D] NAME...
//	logx node [-config FILE] [flags]
//
// -ca, -cert and -key name PEM files for a cluster that uses mutual TLS;
// certs writes a test CA and certificates for one (ca.pem, NAME.pem,
// NAME-key.pem).
// Times are RFC 3339 (2026-11-25T10:00:00Z) or durations before now (15m).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  logx tail [-f] [-level L] [-file NAME] DIR
  logx grep [-since T] [-until T] [-level L] [-E] [-file NAME] PATTERN DIR
  logx verify [-file NAME] DIR...
  logx status [-ca F -cert F -key F] ADDR
  logx level [-stream S] [-ca F -cert F -key F] ADDR [LEVEL]
  logx truncate [-stream S] [-ca F -cert F -key F] ADDR SEQ
  logx retention [-stream S] [-ca F -cert F -key F] -max-files N -max-age D ADDR
  logx forward [-node NAME] [-level L] [-parse auto|json|logfmt|rfc3339] [-tz ZONE] [-ca F -cert F -key F] ADDR...
  logx certs [-out DIR] [-host H,...] [-valid D] NAME...
  logx node [-config FILE] [-id ID -addr HOST:PORT -peers A,B,C -dir DIR] [-listen HOST:PORT] [-http HOST:PORT [-ingest]] [-level L] [-join] [-ca F -cert F -key F] [-check]
`

// run runs one subcommand and returns the exit status: 0 on success, 1 when
// a check fails (verify found a difference, grep found nothing), 2 on an
// error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) int{
		"tail":      cmdTail,
		"grep":      cmdGrep,
		"verify":    cmdVerify,
		"status":    cmdStatus,
		"level":     cmdLevel,
		"truncate":  cmdTruncate,
		"retention": cmdRetention,
		"forward":   cmdForward,
		"certs":     cmdCerts,
		"node":      cmdNode,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "logx: unknown command %q\n%s", args[0], usage)
		return 2
	}
	return cmd(ctx, args[1:], stdin, stdout, stderr)
}
