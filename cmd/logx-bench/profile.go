package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	rtrace "runtime/trace"
	"sync"
)

// profileName names the profiles of one measured phase in -profile's
// directory: mode-workload-sizeB-callers[-sN][-nodeI]. A later run of the
// same cell (with -count) overwrites an earlier one's.
func profileName(mode, workload string, size, callers, streams, node int) string {
	name := fmt.Sprintf("%s-%s-%dB-%d", mode, workload, size, callers)
	if streams > 1 {
		name += fmt.Sprintf("-s%d", streams)
	}
	if node >= 0 {
		name += fmt.Sprintf("-node%d", node+1)
	}
	return name
}

// startProfile starts a CPU profile into dir/name.cpu.pprof and returns
// the function that stops it and writes the heap profile at that moment
// into dir/name.heap.pprof (only its first call does anything, so a caller
// can defer it for its error returns and call it where the phase ends). With trace it also writes an execution trace
// into dir/name.trace (go tool trace): for idle cells, where a CPU profile
// has few samples and the question is what wakes the process. With dir
// empty it does nothing.
func startProfile(dir, name string, trace bool) (stop func() error, err error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, name+".cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var tf *os.File
	if trace {
		if tf, err = os.Create(filepath.Join(dir, name+".trace")); err == nil {
			err = rtrace.Start(tf)
		}
		if err != nil {
			pprof.StopCPUProfile()
			f.Close()
			if tf != nil {
				tf.Close()
			}
			return nil, err
		}
	}
	return sync.OnceValue(func() error {
		pprof.StopCPUProfile()
		err := f.Close()
		if tf != nil {
			rtrace.Stop()
			if cerr := tf.Close(); err == nil {
				err = cerr
			}
		}
		h, herr := os.Create(filepath.Join(dir, name+".heap.pprof"))
		if herr != nil {
			return herr
		}
		runtime.GC() // the heap profile's live figures are as of the last GC
		if werr := pprof.Lookup("heap").WriteTo(h, 0); werr != nil && err == nil {
			err = werr
		}
		if cerr := h.Close(); err == nil {
			err = cerr
		}
		return err
	}), nil
}
