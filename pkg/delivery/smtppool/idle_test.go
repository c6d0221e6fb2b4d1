package smtppool

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// ended records the connections the pool ended.
type ended struct {
	mu  sync.Mutex
	ids []int
}

func (e *ended) end(c int) { e.mu.Lock(); e.ids = append(e.ids, c); e.mu.Unlock() }

func (e *ended) got() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ids)
}

func TestIdle(t *testing.T) {
	var e ended
	p := &Idle[string, int]{Max: 2, For: time.Hour, PerConn: 3, End: e.end}
	steps := []struct {
		name      string
		do        func()
		wantEnded []int
	}{
		{"keep two", func() { p.Put("a", 1, 1); p.Put("b", 2, 1) }, nil},
		{"a third is ended: full", func() { p.Put("a", 3, 1) }, []int{3}},
		{"used up is ended", func() {
			if c, ok := p.Take("b"); !ok || c != 2 {
				t.Fatalf("Take(b) = %d, %v", c, ok)
			}
			p.Put("b", 2, 3)
		}, []int{3, 2}},
		{"another key's connection is not handed out", func() {
			if c, ok := p.Take("b"); ok {
				t.Fatalf("Take(b) = %d, want none", c)
			}
		}, []int{3, 2}},
		{"close ends the idle ones and later puts", func() { p.Close(); p.Put("a", 4, 0) }, []int{3, 2, 1, 4}},
	}
	for _, s := range steps {
		s.do()
		if got := e.got(); !slices.Equal(got, s.wantEnded) {
			t.Fatalf("%s: ended %v, want %v", s.name, got, s.wantEnded)
		}
	}
}

func TestIdleExpires(t *testing.T) {
	var e ended
	p := &Idle[string, int]{Max: 4, For: 10 * time.Millisecond, End: e.end}
	p.Put("a", 1, 0)
	p.Put("a", 2, 0)
	if c, ok := p.Take("a"); !ok || c != 2 {
		t.Fatalf("Take = %d, %v; want the most recently used, 2", c, ok)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := e.got(); !slices.Equal(got, []int{1}) {
		t.Fatalf("ended %v, want [1] (the idle one), not the one taken", got)
	}
	if _, ok := p.Take("a"); ok {
		t.Fatal("an expired connection was handed out")
	}
}
