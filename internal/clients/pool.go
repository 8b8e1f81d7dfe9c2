package clients

import (
	"net/netip"
	"slices"
	"sync"
)

// checkPool runs password checks (bcrypt, deliberately slow) a few at a
// time. Waiting checks queue per client address and are served one address
// at a time in turn, so that a flood of logins from one address waits
// behind itself while a printer elsewhere is served next. Addresses that
// failed to log in lately wait in a second line, served only when the
// first is empty: a legitimate login does not wait behind guessers.
type checkPool struct {
	mu      sync.Mutex
	busy    int
	waiting map[netip.Addr][]chan struct{}
	turns   [2][]netip.Addr // addresses with waiting checks, next first: [0] clean, [1] suspect
}

const (
	clean = iota
	suspect
)

func newCheckPool() *checkPool {
	return &checkPool{waiting: make(map[netip.Addr][]chan struct{})}
}

// run calls check once a slot of size is free, or returns false without
// calling it when cancel closes first. line is clean or suspect.
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
	if p.busy < size && len(p.turns[clean]) == 0 && len(p.turns[suspect]) == 0 {
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
// address whose turn it is, clean addresses first, or frees it.
func (p *checkPool) handOverLocked(size int) {
	line := clean
	if len(p.turns[clean]) == 0 {
		line = suspect
	}
	if len(p.turns[line]) == 0 || p.busy > size {
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
