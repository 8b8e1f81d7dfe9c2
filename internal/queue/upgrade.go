package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
)

// upgrade converts the version 1 messages of folder, left by the previous
// version of the gateway, to the current layout, and then removes every
// .state file there: the current layout has none, so any left is the
// state of a converted message or a leftover of an interrupted removal.
func (s *Spool) upgrade(folder string) error {
	ids, err := s.ids(folder)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.upgradeMessage(folder, id); err != nil {
			return fmt.Errorf("spool: convert %s from an earlier version: %w", id, err)
		}
	}
	states, _ := filepath.Glob(filepath.Join(s.dir, folder, "*"+stateExt))
	for _, name := range states {
		os.Remove(name)
	}
	return nil
}

// upgradeMessage rewrites one version 1 message with a header and its
// state appended, and renames the result over it. Its .state file stays
// until the new file is durable, so a crash at any point loses nothing.
// Files in the current layout, and files that cannot be read (the engine
// moves those to the dead letters), are left as they are.
func (s *Spool) upgradeMessage(folder, id string) error {
	path := s.path(folder, id, msgExt)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Most files are in the current layout: their header is enough, with
	// no envelope to decode at each start.
	head := make([]byte, len(headerPrefix))
	if _, err := f.ReadAt(head, 0); err == nil && string(head) == headerPrefix {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	l, err := readLayout(f, fi.Size())
	if errors.Is(err, ErrCorrupt) || err == nil && !l.version1 {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := s.readVersion1State(folder, id)
	if errors.Is(err, ErrCorrupt) {
		st = State{} // an unreadable state must not keep a message from its delivery
	} else if err != nil {
		return err
	}

	tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "*.tmp")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(tmp, 64<<10)
	w.Write(encodeHeader(l.rawSize))
	// A version 1 file is the envelope line and the raw message: both stay
	// as they are.
	_, err = io.Copy(w, io.NewSectionReader(f, 0, fi.Size()))
	if err == nil && !reflect.DeepEqual(st, State{}) {
		var rec []byte
		if rec, err = stateRecord(st); err == nil {
			_, err = w.Write(rec)
		}
	}
	if err == nil {
		err = w.Flush()
	}
	f.Close() // before the rename: Windows refuses to replace an open file
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	return commitFile(tmp, path, s.folderSync(folder))
}
