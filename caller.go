package logx

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// callerPC returns the program counter of the function skip frames above
// the caller of callerPC.
func callerPC(skip int) uintptr {
	var pcs [1]uintptr
	if runtime.Callers(skip+1, pcs[:]) == 0 {
		return 0
	}
	return pcs[0]
}

// callers caches the "dir/file.go:line" of each program counter: resolving
// one costs far more than a map lookup, and a program has few call sites.
// The map is copied on write, so a lookup takes no lock and, unlike
// sync.Map, does not box the key.
var (
	callers   atomic.Pointer[map[uintptr]string]
	callersMu sync.Mutex // serialises writers
)

// callerString returns "dir/file.go:line" for pc, or "" for 0.
func callerString(pc uintptr) string {
	if pc == 0 {
		return ""
	}
	if m := callers.Load(); m != nil {
		if s, ok := (*m)[pc]; ok {
			return s
		}
	}
	frames := runtime.CallersFrames([]uintptr{pc})
	f, _ := frames.Next()
	file := f.File
	// Keep the last directory and the file name.
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		if j := strings.LastIndexByte(file[:i], '/'); j >= 0 {
			file = file[j+1:]
		}
	}
	s := file + ":" + strconv.Itoa(f.Line)
	callersMu.Lock()
	defer callersMu.Unlock()
	old := callers.Load()
	if old != nil && len(*old) >= maxCallers {
		return s // a program generating code without end: stop caching
	}
	m := make(map[uintptr]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[pc] = s
	callers.Store(&m)
	return s
}

// maxCallers bounds the cache: copying it on every new site stays cheap.
const maxCallers = 4096

func lenOf(m *map[uintptr]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}
