// Package window counts weighted events per key over a sliding time
// window: connections per client address, failed logins per network,
// messages and recipients per identity or mailbox.
package window

import (
	"sync"
	"time"
)

// maxKeys is how many keys a Counter holds before it sweeps out those with
// nothing left in their window, so that a scan of many source addresses
// cannot grow it without bound between sweeps.
const maxKeys = 4096

// Counter counts events per key over a sliding window. The window's span
// is given at each call, so that it may come from a configuration that a
// reload changes while the events stay. It is safe for concurrent use.
type Counter struct {
	mu     sync.Mutex
	events map[string][]event // oldest first
}

type event struct {
	at     time.Time
	weight int
}

// New returns an empty counter.
func New() *Counter {
	return &Counter{events: make(map[string][]event)}
}

// Count returns the total weight of key's events in the span ending now.
func (c *Counter) Count(key string, now time.Time, span time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for _, e := range c.trimLocked(key, now, span) {
		total += e.weight
	}
	return total
}

// Add records an event of the given weight for key at now.
func (c *Counter) Add(key string, now time.Time, span time.Duration, weight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, known := c.events[key]; !known && len(c.events) >= maxKeys {
		for k := range c.events {
			c.trimLocked(k, now, span)
		}
	}
	c.events[key] = append(c.trimLocked(key, now, span), event{now, weight})
}

// RoomAt returns the first time from now on when key's window has room
// for weight more without passing limit: now, or when enough of its
// oldest events have left the window. A weight above limit alone gets now:
// waiting would never help.
func (c *Counter) RoomAt(key string, now time.Time, span time.Duration, weight, limit int) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	events := c.trimLocked(key, now, span)
	total := 0
	for _, e := range events {
		total += e.weight
	}
	for _, e := range events {
		if total+weight <= limit {
			break
		}
		total -= e.weight
		if total+weight <= limit {
			return e.at.Add(span)
		}
	}
	return now
}

// trimLocked drops key's events older than span and returns the rest.
func (c *Counter) trimLocked(key string, now time.Time, span time.Duration) []event {
	events := c.events[key]
	first := 0
	for first < len(events) && now.Sub(events[first].at) >= span {
		first++
	}
	if first == len(events) {
		delete(c.events, key)
		return nil
	}
	c.events[key] = events[first:]
	return events[first:]
}
