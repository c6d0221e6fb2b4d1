package directory

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingObserver keeps what ObserveLookup saw, in order.
type recordingObserver struct {
	mu   sync.Mutex
	seen []string
}

func (o *recordingObserver) ObserveLookup(source, result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, source+"="+result)
}

func (o *recordingObserver) take() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.Join(o.seen, " ")
	o.seen = nil
	return s
}

// namedSource is countingSource under another name.
type namedSource struct {
	countingSource
	name string
}

func (s *namedSource) Name() string { return s.name }

func TestLookupObserver(t *testing.T) {
	ca := newTestCA(t, "Observer Root", false)
	good := ca.issue(t, leafSpec{emails: []string{"good@example.test"}, noCRL: true})
	expired := ca.issue(t, leafSpec{emails: []string{"old@example.test"}, noCRL: true,
		notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	first := &namedSource{name: "first", countingSource: countingSource{certs: map[string][]Candidate{
		"old@example.test": {{Certificate: expired}}}}}
	second := &namedSource{name: "second", countingSource: countingSource{certs: map[string][]Candidate{
		"good@example.test": {{Certificate: good}}}}}
	down := &namedSource{name: "down", countingSource: countingSource{err: fmt.Errorf("refused: %w", ErrSourceUnavailable)}}
	v, _ := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert)})
	obs := &recordingObserver{}
	ctx := context.Background()
	var last *Directory // a case without sources asks the previous case's directory again

	for _, tc := range []struct {
		name    string
		sources []Source
		email   string
		want    string
	}{
		{"found in the second source", []Source{first, second}, "good@example.test", "first=not_found second=found"},
		{"the same answer again comes from the cache", nil, "good@example.test", "cache=found"},
		{"only an expired certificate", []Source{first, second}, "old@example.test", "first=invalid second=not_found"},
		{"a cached no-valid answer", nil, "old@example.test", "cache=invalid"},
		{"nothing anywhere", []Source{first, second}, "none@example.test", "first=not_found second=not_found"},
		{"a source down", []Source{down, second}, "good@example.test", "down=unavailable second=found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sources != nil {
				var err error
				if last, err = New(Options{Sources: tc.sources, Validator: v, Observer: obs}); err != nil {
					t.Fatal(err)
				}
			}
			_, _ = last.Lookup(ctx, tc.email)
			if got := obs.take(); got != tc.want {
				t.Errorf("observed %q, want %q", got, tc.want)
			}
		})
	}
}
