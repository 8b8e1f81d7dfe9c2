package delivery

import (
	"testing"
	"time"
)

func TestMailboxGuard(t *testing.T) {
	g := newMailboxGuard()
	start := t0
	// 9,800 recipients in the morning, 150 at noon.
	for i := range 49 {
		g.record("Scanner@contoso.com", 200, start.Add(time.Duration(i)*time.Minute))
	}
	noon := start.Add(4 * time.Hour)
	g.record("scanner@contoso.com", 150, noon)
	later := start.Add(6 * time.Hour)
	if until := g.holdUntil("scanner@contoso.com", 50, later); !until.Equal(later) {
		t.Errorf("50 more (10,000 in all) held until %v", until)
	}
	// 51 more would pass 10,000: held until the first morning send is a
	// day old.
	if until := g.holdUntil("scanner@contoso.com", 51, later); !until.Equal(start.Add(24 * time.Hour)) {
		t.Errorf("51 more held until %v, want %v", until, start.Add(24*time.Hour))
	}
	// 400 more need the first two sends gone.
	if until := g.holdUntil("scanner@contoso.com", 400, later); !until.Equal(start.Add(24*time.Hour + time.Minute)) {
		t.Errorf("400 more held until %v", until)
	}
	// Other mailboxes are not affected, and a day later all is free.
	if until := g.holdUntil("other@contoso.com", 500, later); !until.Equal(later) {
		t.Errorf("another mailbox held until %v", until)
	}
	tomorrow := noon.Add(24 * time.Hour)
	if until := g.holdUntil("scanner@contoso.com", 500, tomorrow); !until.Equal(tomorrow) {
		t.Errorf("a day later held until %v", until)
	}
}
