//go:build !unix

package logx

// dirLock is not enforced on systems without flock: do not open one Dir
// from two processes there.
type dirLock struct{}

func lockDir(dir string) (*dirLock, error) { return &dirLock{}, nil }

func (l *dirLock) unlock() {}
