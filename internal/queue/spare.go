package queue

import (
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Creating a file is the dearest step of spooling a message: on ext4 under
// load it costs more CPU than writing, fsyncing and renaming a 10 KB
// message together (the inode is allocated, then freed again at removal,
// which costs more than a rename), and without a journal ext4 skips every
// inode freed in the last minute or more each time it allocates one, so
// the cost grows with the mail that went through. So the spool keeps
// spare files in spare/, and new messages are written into them: Done
// renames a small delivered message there, Create writes over it. Open
// replaces the spares left from before with maxSpares empty ones, so that
// a burst right after a start creates no file either. Spares are
// small, so that they hold little disk (16 MiB at most).
const (
	maxSpares    = 256
	maxSpareSize = 64 << 10
	spareExt     = ".spare"
)

// spares are the files waiting to be written over by new messages.
type spares struct {
	mu    sync.Mutex
	paths []string
}

// prepare removes the spares a previous run left in dir and makes
// maxSpares empty ones. The old ones are removed, not emptied in place: a
// crash in the middle of a rename may have left a spare's name on a
// queued message's file too. A spare that cannot be made is only a file
// to create later: it is not an error.
func (sp *spares) prepare(dir string) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	for len(sp.paths) < maxSpares {
		path := filepath.Join(dir, newID(time.Now())+spareExt)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return
		}
		f.Close()
		sp.paths = append(sp.paths, path)
	}
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

// keep takes the file at path, size bytes long, out of its folder: renamed
// to spare and kept when it is small and there is room for it, else
// removed. The size is the caller's rather than a stat's, one system call
// less per delivered message: it misses at most the records an admin
// command appended meanwhile, a few hundred bytes each.
func (sp *spares) keep(path string, size int64, spare string) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if size > maxSpareSize || len(sp.paths) >= maxSpares {
		return os.Remove(path)
	}
	if err := rename(path, spare); err != nil {
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
