//go:build !unix

package main

import "time"

// processCPU reports no CPU time where getrusage does not exist: the CPU
// columns stay empty.
func processCPU() (cpu time.Duration, ok bool) { return 0, false }
