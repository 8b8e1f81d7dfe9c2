package delivery

import "container/heap"

// itemHeap is a priority queue of items ordered by less.
type itemHeap struct {
	items []*item
	less  func(a, b *item) bool
}

// nextFirst orders by next attempt time, then by age.
func nextFirst(a, b *item) bool {
	if !a.next.Equal(b.next) {
		return a.next.Before(b.next)
	}
	return a.id < b.id
}

// oldestFirst orders by reception: queue IDs sort by reception time.
func oldestFirst(a, b *item) bool { return a.id < b.id }

func (h *itemHeap) push(it *item) { heap.Push(h, it) }
func (h *itemHeap) pop() *item    { return heap.Pop(h).(*item) }
func (h *itemHeap) peek() *item   { return h.items[0] }

// heap.Interface, for container/heap only.
func (h *itemHeap) Len() int           { return len(h.items) }
func (h *itemHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *itemHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *itemHeap) Push(x any)         { h.items = append(h.items, x.(*item)) }
func (h *itemHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items[len(h.items)-1] = nil
	h.items = h.items[:len(h.items)-1]
	return it
}
