package xfs

import (
	"container/list"
	"sync"
)

// lru is a goroutine-safe least-recently-used cache bounded by the summed
// cost of its entries. Cached values are shared and must not be modified.
type lru[K comparable, V any] struct {
	mu      sync.Mutex
	maxCost int
	cost    int
	order   *list.List // front = most recent; elements hold *lruEntry
	items   map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key  K
	val  V
	cost int
}

func newLRU[K comparable, V any](maxCost int) *lru[K, V] {
	return &lru[K, V]{maxCost: maxCost, order: list.New(), items: map[K]*list.Element{}}
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

// put stores val under key; values costlier than the whole cache are not kept.
func (c *lru[K, V]) put(key K, val V, cost int) {
	if cost < 1 {
		cost = 1
	}
	if cost > c.maxCost {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		old := el.Value.(*lruEntry[K, V])
		c.cost -= old.cost
		old.val, old.cost = val, cost
		c.cost += cost
		c.order.MoveToFront(el)
	} else {
		c.items[key] = c.order.PushFront(&lruEntry[K, V]{key: key, val: val, cost: cost})
		c.cost += cost
	}
	for c.cost > c.maxCost {
		el := c.order.Back()
		e := el.Value.(*lruEntry[K, V])
		c.order.Remove(el)
		delete(c.items, e.key)
		c.cost -= e.cost
	}
}
