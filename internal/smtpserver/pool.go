package smtpserver

import (
	"net/netip"
	"slices"
	"sync"
)

// checkPool runs password checks (bcrypt, deliberately slow) a few at a
// time. Waiting checks queue per client address and are served one address
// at a time in turn, so that a flood of logins from one address waits
// behind itself while a printer elsewhere is served next.
type checkPool struct {
	mu      sync.Mutex
	busy    int
	waiting map[netip.Addr][]chan struct{}
	turns   []netip.Addr // addresses with waiting checks, next first
}

func newCheckPool() *checkPool {
	return &checkPool{waiting: make(map[netip.Addr][]chan struct{})}
}

// run calls check once a slot of size is free, or returns false without
// calling it when cancel closes first.
func (p *checkPool) run(client netip.Addr, size int, cancel <-chan struct{}, check func()) bool {
	if !p.acquire(client, size, cancel) {
		return false
	}
	defer p.release(size)
	check()
	return true
}

func (p *checkPool) acquire(client netip.Addr, size int, cancel <-chan struct{}) bool {
	p.mu.Lock()
	if p.busy < size && len(p.turns) == 0 {
		p.busy++
		p.mu.Unlock()
		return true
	}
	// Buffered: release hands over the slot without waiting for us.
	ready := make(chan struct{}, 1)
	if len(p.waiting[client]) == 0 {
		p.turns = append(p.turns, client)
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
// address whose turn it is, or frees it.
func (p *checkPool) handOverLocked(size int) {
	if len(p.turns) == 0 || p.busy > size {
		// Nobody waits, or a reload made the pool smaller.
		p.busy--
		return
	}
	client := p.turns[0]
	p.turns = p.turns[1:]
	queue := p.waiting[client]
	queue[0] <- struct{}{}
	p.dequeueLocked(client, queue[1:])
	if len(queue) > 1 {
		p.turns = append(p.turns, client)
	}
}

// dequeueLocked stores client's remaining waiting checks.
func (p *checkPool) dequeueLocked(client netip.Addr, queue []chan struct{}) {
	if len(queue) > 0 {
		p.waiting[client] = queue
		return
	}
	delete(p.waiting, client)
	if i := slices.Index(p.turns, client); i >= 0 {
		p.turns = slices.Delete(p.turns, i, i+1)
	}
}
