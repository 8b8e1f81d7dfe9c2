package window

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

func TestCounter(t *testing.T) {
	c := New()
	span := time.Minute
	c.Add("a", t0, span, 1)
	c.Add("a", t0.Add(30*time.Second), span, 2)
	c.Add("b", t0, span, 5)
	for _, tc := range []struct {
		key  string
		at   time.Duration
		want int
	}{
		{"a", 45 * time.Second, 3}, {"a", 60 * time.Second, 2}, {"a", 90 * time.Second, 0},
		{"b", 59 * time.Second, 5}, {"c", 0, 0},
	} {
		if got := c.Count(tc.key, t0.Add(tc.at), span); got != tc.want {
			t.Errorf("Count(%s, +%v) = %d, want %d", tc.key, tc.at, got, tc.want)
		}
	}
}

func TestRoomAt(t *testing.T) {
	c := New()
	span := time.Hour
	for i := range 4 {
		c.Add("m", t0.Add(time.Duration(i)*time.Minute), span, 3) // 12 in all
	}
	now := t0.Add(10 * time.Minute)
	for weight, want := range map[int]time.Time{
		3:  now,                               // 15: fits a limit of 15
		4:  t0.Add(time.Hour),                 // the first event must go
		9:  t0.Add(time.Hour + time.Minute),   // two must go
		15: t0.Add(time.Hour + 3*time.Minute), // all must go
		16: now,                               // never fits: no point waiting
	} {
		if got := c.RoomAt("m", now, span, weight, 15); !got.Equal(want) {
			t.Errorf("RoomAt(weight %d) = %v, want %v", weight, got, want)
		}
	}
}

func TestSweep(t *testing.T) {
	c := New()
	for i := range maxKeys {
		c.Add(fmt.Sprint(i), t0, time.Second, 1)
	}
	c.Add("new", t0.Add(time.Minute), time.Second, 1)
	if len(c.events) != 1 {
		t.Errorf("%d keys kept after their events expired", len(c.events))
	}
}
