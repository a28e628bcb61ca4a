package ext4

import (
	"container/list"
	"sync"
)

// lru is a goroutine-safe least-recently-used cache bounded by a total cost.
// Values are immutable once added, so callers may share them freely.
type lru[K comparable, V any] struct {
	mu      sync.Mutex
	maxCost int
	cost    int
	order   list.List // front = most recently used
	items   map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key  K
	val  V
	cost int
}

func newLRU[K comparable, V any](maxCost int) *lru[K, V] {
	return &lru[K, V]{maxCost: maxCost, items: make(map[K]*list.Element)}
}

// get returns the cached value for key and marks it recently used.
func (c *lru[K, V]) get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// add stores val under key, evicting the least recently used entries until
// the total cost fits. A single entry larger than the budget is still kept
// (alone) so that the caller's next access hits.
func (c *lru[K, V]) add(key K, val V, cost int) {
	if cost < 1 {
		cost = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*lruEntry[K, V])
		c.cost += cost - e.cost
		e.val, e.cost = val, cost
		c.order.MoveToFront(el)
	} else {
		c.items[key] = c.order.PushFront(&lruEntry[K, V]{key: key, val: val, cost: cost})
		c.cost += cost
	}
	for c.cost > c.maxCost && c.order.Len() > 1 {
		el := c.order.Back()
		e := el.Value.(*lruEntry[K, V])
		c.order.Remove(el)
		delete(c.items, e.key)
		c.cost -= e.cost
	}
}
