package store

import (
	"context"
	"errors"
	"testing"
)

// The first node's CA is the database's; a later node learns it instead of
// replacing it.
func TestRecordEmbeddedCA(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, testKeyring(t))
			if _, err := s.RecordedEmbeddedCA(ctx); !errors.Is(err, ErrNotFound) {
				t.Fatalf("fresh store: %v, want ErrNotFound", err)
			}
			steps := []struct {
				offer, wantRoot, wantNode string
			}{
				{"aaaa", "aaaa", "node-a"},
				{"bbbb", "aaaa", "node-a"}, // node-b's own CA: the first stays
				{"aaaa", "aaaa", "node-a"},
			}
			for i, st := range steps {
				node := []string{"node-a", "node-b", "node-c"}[i]
				got, err := s.RecordEmbeddedCA(ctx, EmbeddedCA{RootSHA256: st.offer, Node: node})
				if err != nil {
					t.Fatal(err)
				}
				if got.RootSHA256 != st.wantRoot || got.Node != st.wantNode || got.RecordedAt.IsZero() {
					t.Fatalf("step %d (%s offers %s): recorded %+v, want %s from %s", i, node, st.offer, got, st.wantRoot, st.wantNode)
				}
			}
			if _, err := s.RecordEmbeddedCA(ctx, EmbeddedCA{Node: "x"}); err == nil {
				t.Fatal("an empty root was recorded")
			}
		})
	}
}
