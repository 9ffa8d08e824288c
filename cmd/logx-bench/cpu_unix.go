//go:build unix

package main

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user plus system, every thread) this process
// has used so far, from getrusage(RUSAGE_SELF); ok is false where that
// fails.
func processCPU() (cpu time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
