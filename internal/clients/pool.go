package clients

import (
	"net/netip"
	"slices"
	"sync"
)

// checkPool runs password checks (bcrypt, deliberately slow) a few at a
// time. Waiting checks queue per client address and are served one address
// at a time in turn, so that a flood of logins from one address waits
// behind itself while a printer elsewhere is served next. Addresses wait
// in one of three lines, each served only when the ones before it are
// empty: addresses that logged in lately, then the others, then those that
// failed lately. A printer that logs in every day never waits behind
// guessers, even those that queued before they were known to guess.
type checkPool struct {
	mu      sync.Mutex
	busy    int
	waiting map[netip.Addr][]chan struct{}
	turns   [3][]netip.Addr // addresses with waiting checks per line, next first
}

// The lines of the pool, first served first.
const (
	known   = iota // logged in lately
	clean          // no failed login lately
	suspect        // failed lately, or not known while many addresses guess
)

func newCheckPool() *checkPool {
	return &checkPool{waiting: make(map[netip.Addr][]chan struct{})}
}

// run calls check once a slot of size is free, or returns false without
// calling it when cancel closes first. line is known, clean or suspect.
func (p *checkPool) run(client netip.Addr, line, size int, cancel <-chan struct{}, check func()) bool {
	if !p.acquire(client, line, size, cancel) {
		return false
	}
	defer p.release(size)
	check()
	return true
}

func (p *checkPool) acquire(client netip.Addr, line, size int, cancel <-chan struct{}) bool {
	p.mu.Lock()
	if p.busy < size && p.nextLineLocked() < 0 {
		p.busy++
		p.mu.Unlock()
		return true
	}
	// Buffered: release hands over the slot without waiting for us.
	ready := make(chan struct{}, 1)
	if len(p.waiting[client]) == 0 {
		p.turns[line] = append(p.turns[line], client)
	}
	p.waiting[client] = append(p.waiting[client], ready)
	p.mu.Unlock()

	select {
	case <-ready:
		return true
	case <-cancel:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	queue := p.waiting[client]
	if i := slices.Index(queue, ready); i >= 0 {
		p.dequeueLocked(client, slices.Delete(queue, i, i+1))
		return false
	}
	// The slot was handed over just as we gave up: pass it on.
	p.handOverLocked(size)
	return false
}

func (p *checkPool) release(size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handOverLocked(size)
}

// handOverLocked gives a finished check's slot to the first check of the
// address whose turn it is, in the first line that has one, or frees it.
func (p *checkPool) handOverLocked(size int) {
	line := p.nextLineLocked()
	if line < 0 || p.busy > size {
		// Nobody waits, or a reload made the pool smaller.
		p.busy--
		return
	}
	client := p.turns[line][0]
	p.turns[line] = p.turns[line][1:]
	queue := p.waiting[client]
	queue[0] <- struct{}{}
	p.dequeueLocked(client, queue[1:])
	if len(queue) > 1 {
		p.turns[line] = append(p.turns[line], client)
	}
}

// nextLineLocked is the first line with waiting checks, or -1.
func (p *checkPool) nextLineLocked() int {
	for line := range p.turns {
		if len(p.turns[line]) > 0 {
			return line
		}
	}
	return -1
}

// dequeueLocked stores client's remaining waiting checks.
func (p *checkPool) dequeueLocked(client netip.Addr, queue []chan struct{}) {
	if len(queue) > 0 {
		p.waiting[client] = queue
		return
	}
	delete(p.waiting, client)
	for line := range p.turns {
		if i := slices.Index(p.turns[line], client); i >= 0 {
			p.turns[line] = slices.Delete(p.turns[line], i, i+1)
		}
	}
}
