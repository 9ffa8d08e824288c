//go:build !linux

package pagecache

import (
	"errors"
	"os"
)

// Drop does nothing here: the page cache is left to the system.
func Drop(*os.File, int64) {}

// Resident is not implemented here.
func Resident(string) ([]bool, error) { return nil, errors.ErrUnsupported }

// Observable reports false: nothing is dropped here.
func Observable(string) (bool, error) { return false, nil }
