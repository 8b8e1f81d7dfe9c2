package queue

import (
	"fmt"
	"os"
	"path/filepath"
)

// CheckWritable reports whether a message could be stored now, by creating
// and removing a small file where incoming messages are written.
func (s *Spool) CheckWritable() error {
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "ready-*")
	if err != nil {
		return fmt.Errorf("spool not writable: %w", err)
	}
	name := f.Name()
	_, err = f.Write([]byte("ok"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	os.Remove(name)
	if err != nil {
		return fmt.Errorf("spool not writable: %w", err)
	}
	return nil
}
