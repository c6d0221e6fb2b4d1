package gateway

import (
	"testing"
	"time"
)

func TestDoublingBackoff(t *testing.T) {
	tests := []struct {
		name    string
		first   time.Duration
		attempt int
		want    time.Duration
	}{
		{"default first wait", 30 * time.Second, 1, 30 * time.Second},
		{"default doubles", 30 * time.Second, 3, 2 * time.Minute},
		{"default stops at 30 min", 30 * time.Second, 12, 30 * time.Minute},
		{"short (tests, drills)", 500 * time.Millisecond, 2, time.Second},
		{"longer than 30 min stays", 2 * time.Hour, 5, 2 * time.Hour},
	}
	for _, tt := range tests {
		if got := DoublingBackoff(tt.first)(tt.attempt); got != tt.want {
			t.Errorf("%s: DoublingBackoff(%v)(%d) = %v, want %v", tt.name, tt.first, tt.attempt, got, tt.want)
		}
	}
	if got := DefaultBackoff(4); got != 4*time.Minute {
		t.Errorf("DefaultBackoff(4) = %v, want 4m (30 s doubled three times)", got)
	}
}
