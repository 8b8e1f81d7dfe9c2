package queue

import "os"

// rename is os.Rename, which on Windows makes no look-up of its own.
func rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
