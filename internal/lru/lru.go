// Package lru is a goroutine-safe least-recently-used cache bounded by a
// total cost, shared by the filesystem readers.
package lru

import (
	"container/list"
	"sync"
)

// Cache is a goroutine-safe least-recently-used cache bounded by a total cost.
// Values are immutable once added, so callers may share them freely.
type Cache[K comparable, V any] struct {
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

// New makes a cache that holds entries up to maxCost in total.
func New[K comparable, V any](maxCost int) *Cache[K, V] {
	return &Cache[K, V]{maxCost: maxCost, items: make(map[K]*list.Element)}
}

// Get returns the cached value for key and marks it recently used.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Add stores val under key, evicting the least recently used entries until
// the total cost fits. A single entry larger than the budget is still kept
// (alone) so that the caller's next access hits.
func (c *Cache[K, V]) Add(key K, val V, cost int) {
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
