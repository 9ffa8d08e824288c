//go:build !linux

package pagecache

import (
	"errors"
	"os"
)

// dropCache does nothing here: the page cache is left to the system.
func dropCache(*os.File, int64, int64) {}

// Resident is not implemented here.
func Resident(string) ([]bool, error) { return nil, errors.ErrUnsupported }

// Kept reports true: nothing is dropped here.
func Kept(string) (bool, error) { return true, nil }
