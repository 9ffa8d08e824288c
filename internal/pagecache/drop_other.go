//go:build !linux

package pagecache

import "os"

// Drop does nothing here: the page cache is left to the system.
func Drop(*os.File, int64) {}
