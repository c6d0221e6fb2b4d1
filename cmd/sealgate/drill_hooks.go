//go:build sealgate_drill

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sealgate/sealgate/pkg/pki"
)

// This file is compiled only into the binary the crash drills build
// (go build -tags sealgate_drill; see pkg/gateway/e2e/pkikill_test.go).
// Its environment variables do nothing in any other build.
//
//	SEALGATE_DRILL_ISSUE_BLOCK_AFTER=N   the CA answers N certificate requests,
//	                                     then holds every further one until the
//	                                     command is cancelled or killed
//	SEALGATE_DRILL_BLOCKED_FILE=PATH     created when the first request is held
//
// A rollout held there has N certificates recorded and, for the users being
// worked on, keys committed without a certificate: exactly the state a
// kill -9 between "key committed" and "CA answered" leaves, reached
// deterministically instead of by racing the workers.
const (
	envIssueBlockAfter = "SEALGATE_DRILL_ISSUE_BLOCK_AFTER"
	envBlockedFile     = "SEALGATE_DRILL_BLOCKED_FILE"
)

func init() {
	v, ok := os.LookupEnv(envIssueBlockAfter)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "sealgate (drill build): %s=%q: want a number of requests >= 0\n", envIssueBlockAfter, v)
		os.Exit(exitUsage)
	}
	marker := os.Getenv(envBlockedFile)
	drillIssuer = func(next pki.Issuer) pki.Issuer {
		return &blockingIssuer{Issuer: next, answer: int64(n), marker: marker}
	}
}

// blockingIssuer answers the first `answer` requests and holds the rest.
type blockingIssuer struct {
	pki.Issuer
	answer   int64
	marker   string
	requests atomic.Int64
	once     sync.Once
}

func (b *blockingIssuer) Issue(ctx context.Context, req pki.IssueRequest) (pki.Issued, error) {
	if b.requests.Add(1) <= b.answer {
		return b.Issuer.Issue(ctx, req)
	}
	b.once.Do(func() {
		if b.marker == "" {
			return
		}
		if err := os.WriteFile(b.marker, nil, 0o600); err != nil {
			fmt.Fprintf(os.Stderr, "sealgate (drill build): %s: %v\n", envBlockedFile, err)
		}
	})
	<-ctx.Done()
	return pki.Issued{}, fmt.Errorf("drill: request held after %d answered: %w", b.answer, ctx.Err())
}
