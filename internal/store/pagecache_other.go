//go:build !linux

package store

import "os"

// dropCache does nothing here: the page cache is left to the system.
func dropCache(*os.File, int64, int64) {}
