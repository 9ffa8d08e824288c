package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// childEnv makes the test binary act as the example's node process: with
// -procs, run re-executes os.Executable(), which under go test is this
// binary.
const childEnv = "LOGX_EXAMPLE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeAddrs(t *testing.T) string {
	t.Helper()
	var addrs []string
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return strings.Join(addrs, ",")
}

func runExample(t *testing.T, extra ...string) string {
	t.Helper()
	args := append([]string{"-addrs", freeAddrs(t), "-dir", t.TempDir(), "-entries", "3000", "-max-size", "65536", "-timeout", "60s"}, extra...)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	return out.String()
}

func checkReport(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "\nidentical: 3 nodes, ") {
		t.Fatalf("no identical verdict:\n%s", out)
	}
	if strings.Contains(out, "DIFFERENT") {
		t.Fatalf("files differ:\n%s", out)
	}
	// Rotation happened: several files per node, listed for all three.
	if n := strings.Count(out, "app-0000"); n < 6 {
		t.Fatalf("expected rotated files on every node, found %d listings:\n%s", n, out)
	}
}

func TestExampleInProcess(t *testing.T) {
	checkReport(t, runExample(t))
}

func TestExampleProcs(t *testing.T) {
	t.Setenv(childEnv, "1")
	checkReport(t, runExample(t, "-procs", "-format", "json"))
}

// TestExampleTLS: with -tls the nodes (here, processes) talk mutual TLS
// with certificates the example writes.
func TestExampleTLS(t *testing.T) {
	t.Setenv(childEnv, "1")
	out := runExample(t, "-procs", "-tls")
	checkReport(t, out)
	if !strings.Contains(out, "mutual TLS") {
		t.Fatalf("no mention of TLS:\n%s", out)
	}
}

// TestExampleDetectsDifference: the report fails when one node's file
// differs.
func TestExampleDetectsDifference(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := os.MkdirAll(dir+"/"+n, 0o755); err != nil {
			t.Fatal(err)
		}
		content := "seq=1 msg=same\n"
		if n == "n3" {
			content = "seq=1 msg=diff\n"
		}
		if err := os.WriteFile(dir+"/"+n+"/app.log", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	err := report(&out, &options{dir: dir})
	if err == nil || !strings.Contains(out.String(), "app.log differs at byte 10") {
		t.Fatalf("err %v, output:\n%s", err, out.String())
	}
}

// TestExampleDetectsDifferenceInStream: the same for the audit stream's
// files, the default stream's being identical.
func TestExampleDetectsDifferenceInStream(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := os.MkdirAll(dir+"/"+n+"/streams/audit", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/"+n+"/app.log", []byte("seq=1 msg=same\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		content := `{"seq":1,"msg":"same"}` + "\n"
		if n == "n2" {
			content = `{"seq":1,"msg":"diff"}` + "\n"
		}
		if err := os.WriteFile(dir+"/"+n+"/streams/audit/audit.log", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	err := report(&out, &options{dir: dir})
	if err == nil || !strings.Contains(out.String(), "DIFFERENT: stream audit, n1 and n2: audit.log differs at byte 16") {
		t.Fatalf("err %v, output:\n%s", err, out.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-entries", "0"}, {"-format", "xml"}, {"-addrs", "a,b"}, {"-nope"}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestDirNotEmpty: a -dir that holds a run's data is refused, and left as
// it is (a second run into it compared the files before they held its
// entries).
func TestDirNotEmpty(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "n1")
	if err := os.Mkdir(mark, 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-addrs", freeAddrs(t), "-dir", dir}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("a used -dir: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the directory changed: %v", ents)
	}
}
