package smtpserver

import (
	"sync"
	"time"
)

// maxWindowKeys is how many keys a slidingCounter holds before it sweeps
// out those with nothing left in their window, so that a scan of many
// source addresses cannot grow it without bound between sweeps.
const maxWindowKeys = 4096

// slidingCounter counts weighted events per key over a sliding window: new
// connections per address, failed logins per network, messages and
// recipients per identity. Its state lives on the Server, so that it
// survives a configuration reload; the window length and the limit are
// given at each call, from the configuration in force.
type slidingCounter struct {
	mu     sync.Mutex
	events map[string][]event // oldest first
}

type event struct {
	at     time.Time
	weight int
}

func newSlidingCounter() *slidingCounter {
	return &slidingCounter{events: make(map[string][]event)}
}

// count returns the total weight of key's events in the window ending now.
func (c *slidingCounter) count(key string, now time.Time, window time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trimLocked(key, now, window)
}

// add records an event of the given weight for key.
func (c *slidingCounter) add(key string, now time.Time, window time.Duration, weight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, known := c.events[key]; !known && len(c.events) >= maxWindowKeys {
		for k := range c.events {
			c.trimLocked(k, now, window)
		}
	}
	c.trimLocked(key, now, window)
	c.events[key] = append(c.events[key], event{now, weight})
}

// trimLocked drops key's events older than the window and returns the
// weight left.
func (c *slidingCounter) trimLocked(key string, now time.Time, window time.Duration) int {
	events := c.events[key]
	first := 0
	for first < len(events) && now.Sub(events[first].at) >= window {
		first++
	}
	if first == len(events) {
		delete(c.events, key)
		return 0
	}
	events = events[first:]
	c.events[key] = events
	total := 0
	for _, e := range events {
		total += e.weight
	}
	return total
}
