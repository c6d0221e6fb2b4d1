package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sealgate/sealgate/pkg/store"
)

// Action is what a rollout does for one user.
type Action string

// The actions of a plan.
const (
	ActionIssue     Action = "issue"     // no active certificate
	ActionRenew     Action = "renew"     // expires within renew_before
	ActionReissue   Action = "reissue"   // addresses changed; the old one is revoked
	ActionRevoke    Action = "revoke"    // user left the groups or was disabled
	ActionPublish   Action = "publish"   // certificate fine, directory entry out of date
	ActionUnchanged Action = "unchanged" // nothing to do
)

// Step is one user's part of a plan.
type Step struct {
	Action Action `json:"action"`
	Email  string `json:"email"`
	Reason string `json:"reason,omitempty"`
	// Serial of the current certificate, if any.
	Serial string `json:"serial,omitempty"`

	user    User
	known   int                 // certificates the user already has (any state)
	current []store.Certificate // active, newest first
	// newKey: the store held no key under the id the next certificate
	// uses when the plan was made, so issue need not look for one left by
	// an interrupted run (a lookup per user cost ~3% of a rollout's CPU).
	newKey bool
}

// keyLister is implemented by stores that list their key ids in one
// query (pkg/store).
type keyLister interface {
	KeyIDs(ctx context.Context, prefix string) ([]string, error)
}

// Plan is the list of steps a rollout would take, in email order.
type Plan struct {
	Steps []Step `json:"steps"`
}

// Count returns how many steps have action a.
func (p Plan) Count(a Action) int {
	n := 0
	for _, s := range p.Steps {
		if s.Action == a {
			n++
		}
	}
	return n
}

// Plan compares the user source with the store. It changes nothing.
func (m *Manager) Plan(ctx context.Context) (Plan, error) {
	users, err := m.Users.Users(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("reading users: %w", err)
	}
	all, err := m.Store.Certificates(ctx, "")
	if err != nil {
		return Plan{}, fmt.Errorf("reading certificates: %w", err)
	}
	byEmail := groupByEmail(all)
	var keyIDs map[string]bool // nil: unknown, look each key up
	if kl, ok := m.Store.(keyLister); ok {
		ids, err := kl.KeyIDs(ctx, userKeyPrefix)
		if err != nil {
			return Plan{}, fmt.Errorf("reading key ids: %w", err)
		}
		keyIDs = make(map[string]bool, len(ids))
		for _, id := range ids {
			keyIDs[id] = true
		}
	}
	if len(users) == 0 {
		for email, certs := range byEmail {
			if len(active(certs)) > 0 {
				return Plan{}, fmt.Errorf("the user source returned no users while %s and others hold certificates: refusing to revoke everybody (check users.groups and the directory)", email)
			}
		}
	}
	now := m.now()
	var plan Plan
	eligible := map[string]bool{}
	for _, u := range users {
		eligible[u.Email] = true
		certs := byEmail[u.Email]
		act := active(certs)
		st := Step{Email: u.Email, user: u, known: len(certs), current: act}
		st.newKey = keyIDs != nil && !keyIDs[userKeyID(u.Email, len(certs)+1)]
		switch {
		case len(act) == 0:
			st.Action, st.Reason = ActionIssue, "no active certificate"
		default:
			cur := act[0]
			st.Serial = cur.Serial
			switch {
			case !sameAddresses(cur.Addresses, u.Addresses()):
				st.Action = ActionReissue
				st.Reason = fmt.Sprintf("addresses changed: %s -> %s", strings.Join(cur.Addresses, ","), strings.Join(u.Addresses(), ","))
			case !now.Before(cur.NotAfter.Add(-m.RenewBefore)):
				st.Action = ActionRenew
				st.Reason = "expires " + cur.NotAfter.UTC().Format("2006-01-02")
			case len(act) > 1:
				// A previous run died between recording the new
				// certificate and retiring the old one: finish that.
				st.Action, st.Reason = ActionPublish, "older active certificate left by an interrupted run"
			case m.Publisher != nil && u.Published != nil && !publishedExactly(u.Published, cur.DER):
				st.Action, st.Reason = ActionPublish, "directory entry does not hold the current certificate"
			default:
				st.Action = ActionUnchanged
			}
		}
		plan.Steps = append(plan.Steps, st)
	}
	for _, email := range sortedKeys(byEmail) {
		if eligible[email] {
			continue
		}
		if act := active(byEmail[email]); len(act) > 0 {
			plan.Steps = append(plan.Steps, Step{Action: ActionRevoke, Email: email, Serial: act[0].Serial,
				Reason: "no longer an eligible member of the configured groups", current: act, known: len(byEmail[email])})
		}
	}
	slices.SortFunc(plan.Steps, func(a, b Step) int { return strings.Compare(a.Email, b.Email) })
	return plan, nil
}

// Result counts what a rollout did; the JSON is the contract of
// `pki rollout --output json`.
type Result struct {
	Issued    int         `json:"issued"`
	Renewed   int         `json:"renewed"`
	Revoked   int         `json:"revoked"`
	Unchanged int         `json:"unchanged"`
	Failed    int         `json:"failed"`
	Published int         `json:"published"`
	Errors    []StepError `json:"errors"`
}

// StepError says which user failed and why.
type StepError struct {
	Email  string `json:"email"`
	Action Action `json:"action"`
	Error  string `json:"error"`
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Parallel is the number of users worked on at once (default
	// DefaultParallel).
	Parallel int
	// Progress, if set, is called after each step (from several goroutines).
	Progress func(done, total int)
}

// DefaultParallel is 16 users per CPU, at most 64. A user's step is a few
// milliseconds of CPU (key generation, the CA's signature) and as long
// again waiting on commits and the CA; with 4 per CPU the CPUs idled a
// third of the time (P-256 keys, embedded CA, SQLite).
func DefaultParallel() int { return min(16*runtime.GOMAXPROCS(0), 64) }

// Apply executes a plan with bounded parallelism. A failing user does not
// stop the others; its error is in the result. Cancelling ctx stops
// starting new steps; finished ones stay done (a rerun completes the plan).
func (m *Manager) Apply(ctx context.Context, plan Plan, opts ApplyOptions) Result {
	par := opts.Parallel
	if par <= 0 {
		par = DefaultParallel()
	}
	var (
		res  = Result{Errors: []StepError{}}
		mu   sync.Mutex
		done atomic.Int64
		wg   sync.WaitGroup
		sem  = make(chan struct{}, par)
	)
	total := len(plan.Steps)
	for _, st := range plan.Steps {
		if ctx.Err() != nil {
			mu.Lock()
			res.Failed++
			res.Errors = append(res.Errors, StepError{Email: st.Email, Action: st.Action, Error: "not started: " + ctx.Err().Error()})
			mu.Unlock()
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(st Step) {
			defer wg.Done()
			defer func() { <-sem }()
			published, err := m.applyStep(ctx, st)
			mu.Lock()
			if err != nil {
				res.Failed++
				res.Errors = append(res.Errors, StepError{Email: st.Email, Action: st.Action, Error: err.Error()})
				m.log().Warn("rollout step failed", "email", st.Email, "action", st.Action, "err", err)
			} else {
				switch st.Action {
				case ActionIssue:
					res.Issued++
				case ActionRenew, ActionReissue:
					res.Renewed++
				case ActionRevoke:
					res.Revoked++
				default:
					res.Unchanged++
				}
			}
			if published {
				res.Published++
			}
			mu.Unlock()
			n := done.Add(1)
			if opts.Progress != nil {
				opts.Progress(int(n), total)
			}
		}(st)
	}
	wg.Wait()
	slices.SortFunc(res.Errors, func(a, b StepError) int { return strings.Compare(a.Email, b.Email) })
	return res
}

// Sync plans and applies in one go: what `serve` runs every sync_interval.
func (m *Manager) Sync(ctx context.Context, opts ApplyOptions) (Result, error) {
	plan, err := m.Plan(ctx)
	if err != nil {
		return Result{}, err
	}
	return m.Apply(ctx, plan, opts), nil
}

func (m *Manager) applyStep(ctx context.Context, st Step) (published bool, err error) {
	switch st.Action {
	case ActionUnchanged:
		return false, nil
	case ActionIssue, ActionRenew, ActionReissue:
		_, leaf, err := m.issue(ctx, st.user, st.known, st.newKey)
		if err != nil {
			return false, err
		}
		var errs []error
		for _, old := range st.current {
			if st.Action == ActionReissue {
				errs = append(errs, m.revoke(ctx, old, ReasonSuperseded))
			} else {
				errs = append(errs, m.supersede(ctx, old))
			}
		}
		if m.Publisher != nil && st.user.DN != "" {
			if err := m.Publisher.Publish(ctx, st.user, []*x509.Certificate{leaf}); err != nil {
				errs = append(errs, fmt.Errorf("publishing: %w", err))
			} else {
				published = true
			}
		}
		return published, errors.Join(errs...)
	case ActionPublish:
		var errs []error
		for _, old := range st.current[1:] {
			errs = append(errs, m.supersede(ctx, old))
		}
		if m.Publisher != nil && st.user.DN != "" {
			cur, err := x509.ParseCertificate(st.current[0].DER)
			if err != nil {
				return false, fmt.Errorf("certificate %s in the store is damaged: %w", st.current[0].Serial, err)
			}
			if err := m.Publisher.Publish(ctx, st.user, []*x509.Certificate{cur}); err != nil {
				errs = append(errs, fmt.Errorf("publishing: %w", err))
			} else {
				published = true
			}
		}
		return published, errors.Join(errs...)
	case ActionRevoke:
		var errs []error
		var gone []*x509.Certificate
		for _, c := range st.current {
			if err := m.revoke(ctx, c, ReasonAffiliationChanged); err != nil {
				errs = append(errs, err)
				continue
			}
			if x, err := x509.ParseCertificate(c.DER); err == nil {
				gone = append(gone, x)
			}
		}
		if m.Publisher != nil && len(gone) > 0 {
			if err := m.Publisher.Unpublish(ctx, st.Email, gone); err != nil {
				errs = append(errs, fmt.Errorf("unpublishing: %w", err))
			} else {
				published = true
			}
		}
		return published, errors.Join(errs...)
	}
	return false, fmt.Errorf("unknown action %q", st.Action)
}

// findUser looks email up in the user source (by primary address or alias).
func (m *Manager) findUser(ctx context.Context, email string) (User, error) {
	users, err := m.Users.Users(ctx)
	if err != nil {
		return User{}, fmt.Errorf("reading users: %w", err)
	}
	email = strings.ToLower(strings.TrimSpace(email))
	for _, u := range users {
		if u.Email == email {
			return u, nil
		}
	}
	return User{}, fmt.Errorf("%s is not an eligible user (not in users.groups, disabled, or unknown)", email)
}

// IssueUser issues a certificate for one eligible user who has none.
func (m *Manager) IssueUser(ctx context.Context, email string) (store.Certificate, error) {
	return m.forUser(ctx, email, false)
}

// RenewUser replaces the user's certificate now, whatever its expiry.
func (m *Manager) RenewUser(ctx context.Context, email string) (store.Certificate, error) {
	return m.forUser(ctx, email, true)
}

func (m *Manager) forUser(ctx context.Context, email string, renew bool) (store.Certificate, error) {
	u, err := m.findUser(ctx, email)
	if err != nil {
		return store.Certificate{}, err
	}
	certs, err := m.userCerts(ctx, u.Email)
	if err != nil {
		return store.Certificate{}, err
	}
	act := active(certs)
	switch {
	case !renew && len(act) > 0:
		return store.Certificate{}, fmt.Errorf("%s already has active certificate %s: use `cert renew`", u.Email, act[0].Serial)
	case renew && len(act) == 0:
		return store.Certificate{}, fmt.Errorf("%s has no active certificate to renew: use `cert issue`", u.Email)
	}
	action := ActionIssue
	if renew {
		action = ActionRenew
		if !sameAddresses(act[0].Addresses, u.Addresses()) {
			action = ActionReissue
		}
	}
	if _, err := m.applyStep(ctx, Step{Action: action, Email: u.Email, user: u, known: len(certs), current: act}); err != nil {
		return store.Certificate{}, err
	}
	return m.Current(ctx, u.Email)
}

// RevokeUser revokes all of the user's active certificates and unpublishes
// them. It returns the revoked serials.
func (m *Manager) RevokeUser(ctx context.Context, email string, reason int) ([]string, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	certs, err := m.userCerts(ctx, email)
	if err != nil {
		return nil, err
	}
	act := active(certs)
	if len(act) == 0 {
		return nil, fmt.Errorf("%s has no active certificate", email)
	}
	var serials []string
	var errs []error
	var gone []*x509.Certificate
	for _, c := range act {
		if err := m.revoke(ctx, c, reason); err != nil {
			errs = append(errs, err)
			continue
		}
		serials = append(serials, c.Serial)
		if x, err := x509.ParseCertificate(c.DER); err == nil {
			gone = append(gone, x)
		}
	}
	if m.Publisher != nil && len(gone) > 0 {
		if err := m.Publisher.Unpublish(ctx, email, gone); err != nil {
			errs = append(errs, fmt.Errorf("unpublishing: %w", err))
		}
	}
	return serials, errors.Join(errs...)
}

func sameAddresses(a, b []string) bool {
	x := slices.Clone(a)
	y := slices.Clone(b)
	for i := range x {
		x[i] = strings.ToLower(x[i])
	}
	for i := range y {
		y[i] = strings.ToLower(y[i])
	}
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func publishedExactly(published [][]byte, der []byte) bool {
	return len(published) == 1 && bytes.Equal(published[0], der)
}
