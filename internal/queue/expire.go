package queue

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"
)

// ExpireFailed deletes the dead letters that became dead letters more than
// maxAge before now, logging each, and returns how many it deleted. A dead
// letter without a readable failure time is judged by its file's time.
func (s *Spool) ExpireFailed(maxAge time.Duration, now time.Time, log *slog.Logger) (int, error) {
	ids, err := s.ids(failedDir)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, id := range ids {
		st, err := s.readState(failedDir, id)
		failed := st.Failed
		if err != nil || failed.IsZero() {
			info, err := os.Stat(s.path(failedDir, id, msgExt))
			if err != nil {
				continue // retried or deleted meanwhile
			}
			failed = info.ModTime()
		}
		if now.Sub(failed) <= maxAge {
			continue
		}
		if err := s.remove(failedDir, id); errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return deleted, err
		}
		deleted++
		log.Info("dead letter expired", "id", id, "failed", failed.UTC().Format(time.RFC3339), "reason", st.LastError, "failed_max_age", maxAge.String())
	}
	return deleted, nil
}

// ExpireFailedEvery runs ExpireFailed now and then every interval until
// ctx ends.
func (s *Spool) ExpireFailedEvery(ctx context.Context, interval, maxAge time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.ExpireFailed(maxAge, time.Now(), log); err != nil {
			log.Warn("expiring dead letters failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
