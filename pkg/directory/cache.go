package directory

import (
	"sync"
	"time"
)

// resultCache holds lookup answers until their expiry. Expired entries are
// dropped when read and swept when the map grows.
type resultCache struct {
	mu      sync.RWMutex
	entries map[string]cacheEntry
	puts    int
}

type cacheEntry struct {
	r     Result
	until time.Time
}

func newResultCache() *resultCache { return &resultCache{entries: map[string]cacheEntry{}} }

func (c *resultCache) get(key string, now time.Time) (Result, bool) {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return Result{}, false
	}
	return e.r, true
}

func (c *resultCache) put(key string, r Result, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = cacheEntry{r: r, until: until}
	c.puts++
	if c.puts%1024 == 0 {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
	}
}

func (c *resultCache) delete(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}
