package queue

import (
	"os"
	"sync"
)

// Creating a file is the dearest step of spooling a message: on ext4 under
// load it costs more CPU than writing, fsyncing and renaming a 10 KB
// message together (the inode is allocated, then freed again at removal,
// which costs more than a rename). So the files of delivered messages are
// kept as spares in tmp/, and new messages are written into them: Done
// renames a small delivered message there, Create truncates and reuses it.
// Spares are small, so that they hold little disk (16 MiB at most); like
// every file in tmp/ they are removed at start.
const (
	maxSpares    = 256
	maxSpareSize = 64 << 10
	spareExt     = ".spare"
)

// spares are the files of delivered messages waiting to be reused.
type spares struct {
	mu    sync.Mutex
	paths []string
}

// take returns a spare's path, or "" when there is none.
func (sp *spares) take() string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	n := len(sp.paths)
	if n == 0 {
		return ""
	}
	path := sp.paths[n-1]
	sp.paths = sp.paths[:n-1]
	return path
}

// keep takes the file at path out of its folder: renamed to spare and
// kept when it is small and there is room for it, else removed.
func (sp *spares) keep(path, spare string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if fi.Size() > maxSpareSize || len(sp.paths) >= maxSpares {
		return os.Remove(path)
	}
	if err := os.Rename(path, spare); err != nil {
		return err
	}
	sp.paths = append(sp.paths, spare)
	return nil
}

// createTemp opens the file a new message is written to: a spare when
// there is one, else a new file in tmp/ named after id. A spare is not
// emptied but written over, and cut to the new message's length at
// Commit (reused tells): truncating it at open would free its blocks only
// for the writes to allocate them again, which cost as much as creating a
// file.
func (s *Spool) createTemp(id string) (f *os.File, reused bool, err error) {
	if spare := s.spares.take(); spare != "" {
		if f, err := os.OpenFile(spare, os.O_WRONLY, 0); err == nil {
			return f, true, nil
		}
		os.Remove(spare)
	}
	f, err = os.OpenFile(s.path(tmpDir, id, msgExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	return f, false, err
}
