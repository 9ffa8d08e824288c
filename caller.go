package logx

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
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
var callers sync.Map // uintptr → string

// callerString returns "dir/file.go:line" for pc, or "" for 0.
func callerString(pc uintptr) string {
	if pc == 0 {
		return ""
	}
	if s, ok := callers.Load(pc); ok {
		return s.(string)
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
	callers.Store(pc, s)
	return s
}
