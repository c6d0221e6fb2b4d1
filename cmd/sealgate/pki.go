package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newPKICmd) }

func newPKICmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "the embedded CA and the per-user certificate rollout",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "create the embedded CA (root + issuing) under data_dir if absent; idempotent",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return a.pkiInit() },
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "ca-cert",
		Short: "print the issuing chain (PEM) that recipients must trust",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return a.pkiCACert(cmd.Context()) },
	})
	var dryRun bool
	var parallel int
	rollout := &cobra.Command{
		Use:   "rollout",
		Short: "bring certificates in line with the directory groups: issue, renew, revoke, publish",
		Long: "Compares the users of [users] with the certificates in the store and issues,\n" +
			"renews (within pki.renew_before), re-issues (changed addresses) and revokes\n" +
			"(users who left the groups). Safe to interrupt and run again. Exits 1 if any\n" +
			"user failed; the others are done.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if parallel < 1 || parallel > 64 {
				return usageErrorf("--parallel must be between 1 and 64, not %d", parallel)
			}
			return a.pkiRollout(cmd.Context(), dryRun, parallel)
		},
	}
	rollout.Flags().BoolVar(&dryRun, "dry-run", false, "show the plan, change nothing")
	rollout.Flags().IntVar(&parallel, "parallel", pki.DefaultParallel(), "users worked on at once (default: 16 per CPU, at most 64)")
	cmd.AddCommand(rollout)
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "one row per user: email, serial, not-after, state",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return a.pkiStatus(cmd.Context()) },
	})
	return cmd
}

// pkiRuntime is the PKI wired from the config: what the pki and cert
// commands use, and what `serve` uses for its periodic sync (Manager.Sync
// every pki.sync_interval) and the CRL endpoint (CRLHandler).
type pkiRuntime struct {
	Config   *config.Config
	Store    *store.Store
	Manager  *pki.Manager
	Embedded *embeddedca.CA // nil when pki.issuer is "stepca"
	closers  []func()
}

// Close releases the store and directory connections.
func (r *pkiRuntime) Close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// crlURL is pki.crl_url or the one derived from http.listen.
func crlURL(cfg *config.Config) string {
	if cfg.PKI.CRLURL != "" {
		return cfg.PKI.CRLURL
	}
	if cfg.HTTP.Listen == "" {
		return ""
	}
	return "http://" + cfg.HTTP.Listen + "/crl"
}

// rolloutLinger is how long a rollout's commit waits for more writes: its
// workers' writes arrive one by one, and commits of ~1.4 rows spent ~10%
// of a P-256 rollout on fsyncs (BenchmarkRollout: 447 -> 501 users/s).
const rolloutLinger = 5 * time.Millisecond

// openPKI wires store, issuer, user source and publisher from the config.
func (a *app) openPKI(ctx context.Context, cfg *config.Config) (*pkiRuntime, error) {
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rt := &pkiRuntime{Config: cfg, Store: st}
	rt.closers = append(rt.closers, func() { st.Close() })
	// A rollout's workers write keys, certificates and audit events in
	// shared commits (one fsync each) instead of three commits per user.
	gc := store.NewGroupCommit(st)
	gc.Linger = rolloutLinger
	rt.closers = append(rt.closers, func() { gc.Close() })
	fail := func(err error) (*pkiRuntime, error) { rt.Close(); return nil, err }

	keyType, err := pki.ParseKeyType(cfg.PKI.KeyType)
	if err != nil {
		return fail(asUsage(fmt.Errorf("pki.key_type: %w", err)))
	}
	m := &pki.Manager{Store: gc, KeyType: keyType, Validity: cfg.PKI.Validity.Duration, RenewBefore: cfg.PKI.RenewBefore.Duration, Actor: "cli"}
	switch cfg.PKI.Issuer {
	case "", "embedded":
		ca, err := embeddedca.Open(cfg.DataPath("ca"), kr, embeddedca.Options{CRLURL: crlURL(cfg)})
		if err != nil {
			return fail(err)
		}
		node, err := nodeID(cfg)
		if err != nil {
			return fail(err)
		}
		if err := recordEmbeddedCA(ctx, st, ca, cfg.DataPath("ca"), node); err != nil {
			return fail(err)
		}
		rt.Embedded, m.Issuer = ca, ca
	case "stepca":
		iss, err := openStepCA(ctx, cfg)
		if err != nil {
			return fail(err)
		}
		m.Issuer = iss
	default:
		return fail(usageErrorf("pki.issuer %q is not embedded or stepca", cfg.PKI.Issuer))
	}
	if drillIssuer != nil { // only in crash-drill builds (drill.go)
		m.Issuer = drillIssuer(m.Issuer)
	}
	users, ldapDir, err := newUserSource(cfg)
	if err != nil {
		return fail(err)
	}
	m.Users = users
	if ldapDir != nil {
		rt.closers = append(rt.closers, func() { ldapDir.Close() })
	}
	if ldapDir != nil && cfg.Users.LDAP.PublishCertificates {
		m.Publisher = ldapDir
	}
	rt.Manager = m
	return rt, nil
}

// CRLHandler serves the embedded CA's CRL (nil for a remote step-ca,
// which serves its own).
func (r *pkiRuntime) CRLHandler() http.Handler {
	if r.Embedded == nil {
		return nil
	}
	return r.Embedded.Handler()
}

func (a *app) withPKI(ctx context.Context, fn func(rt *pkiRuntime) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	rt, err := a.openPKI(ctx, cfg)
	if err != nil {
		return err
	}
	defer rt.Close()
	return fn(rt)
}

type pkiInitResult struct {
	Created           bool   `json:"created"`
	Dir               string `json:"dir"`
	RootSubject       string `json:"root_subject"`
	RootFingerprint   string `json:"root_fingerprint_sha256"`
	IssuingSubject    string `json:"issuing_subject"`
	IssuingNotAfter   string `json:"issuing_not_after"`
	CRLDistributionPt string `json:"crl_url,omitempty"`
}

func (a *app) pkiInit() error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if cfg.PKI.Issuer == "stepca" {
		return usageErrorf("pki init creates the embedded CA, but pki.issuer is \"stepca\": the remote CA needs no init")
	}
	kr, err := openKeyring(cfg)
	if err != nil {
		return err
	}
	dir := cfg.DataPath("ca")
	created, err := embeddedca.Init(dir, kr, embeddedca.InitOptions{})
	if err != nil {
		return err
	}
	ca, err := embeddedca.Open(dir, kr, embeddedca.Options{CRLURL: crlURL(cfg)})
	if err != nil {
		return err
	}
	res := pkiInitResult{Created: created, Dir: dir, RootSubject: ca.Root().Subject.String(),
		RootFingerprint: fingerprint(ca.Root()), IssuingSubject: ca.IssuingCert().Subject.String(),
		IssuingNotAfter: ca.IssuingCert().NotAfter.UTC().Format(time.RFC3339), CRLDistributionPt: crlURL(cfg)}
	return a.print(res, func(w io.Writer) error {
		verb := "created"
		if !created {
			verb = "already present, unchanged"
		}
		_, err := fmt.Fprintf(w, "embedded CA %s in %s\nroot:    %s\n  sha256 %s\nissuing: %s (until %s)\nCRL:     %s\nnext: `sealgate pki ca-cert` for the chain recipients must trust, `sealgate pki rollout` to issue\n",
			verb, dir, res.RootSubject, res.RootFingerprint, res.IssuingSubject, res.IssuingNotAfter, res.CRLDistributionPt)
		return err
	})
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

type caCertJSON struct {
	Subject           string `json:"subject"`
	NotAfter          string `json:"not_after"`
	FingerprintSHA256 string `json:"fingerprint_sha256"`
	PEM               string `json:"pem"`
}

func (a *app) pkiCACert(ctx context.Context) error {
	return a.withPKI(ctx, func(rt *pkiRuntime) error {
		iss := rt.Manager.Issuer
		ints, err := iss.Intermediates(context.Background())
		if err != nil {
			return err
		}
		roots, err := iss.Roots(context.Background())
		if err != nil {
			return err
		}
		var out []caCertJSON
		var all strings.Builder
		for _, c := range append(ints, roots...) {
			p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
			all.WriteString(p)
			out = append(out, caCertJSON{Subject: c.Subject.String(), NotAfter: c.NotAfter.UTC().Format(time.RFC3339), FingerprintSHA256: fingerprint(c), PEM: p})
		}
		return a.print(out, func(w io.Writer) error {
			_, err := io.WriteString(w, all.String())
			return err
		})
	})
}

type planJSON struct {
	DryRun bool           `json:"dry_run"`
	Counts map[string]int `json:"counts"`
	Steps  []pki.Step     `json:"steps"`
}

func (a *app) pkiRollout(ctx context.Context, dryRun bool, parallel int) error {
	if ctx == nil {
		ctx = context.Background()
	}
	return a.withPKI(ctx, func(rt *pkiRuntime) error {
		rt.Manager.Actor = "rollout"
		if !dryRun {
			unlock, err := lockPKI(ctx, rt.Config, rt.Store)
			if err != nil {
				return err
			}
			defer unlock()
		}
		plan, err := rt.Manager.Plan(ctx)
		if err != nil {
			return err
		}
		if dryRun {
			counts := map[string]int{}
			for _, s := range plan.Steps {
				counts[string(s.Action)]++
			}
			return a.print(planJSON{DryRun: true, Counts: counts, Steps: plan.Steps}, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ACTION\tEMAIL\tSERIAL\tWHY")
				for _, s := range plan.Steps {
					if s.Action == pki.ActionUnchanged {
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Action, s.Email, s.Serial, s.Reason)
				}
				tw.Flush()
				_, err := fmt.Fprintf(w, "plan: %d issue, %d renew, %d reissue, %d revoke, %d publish, %d unchanged (dry run: nothing changed)\n",
					counts["issue"], counts["renew"], counts["reissue"], counts["revoke"], counts["publish"], counts["unchanged"])
				return err
			})
		}
		opts := pki.ApplyOptions{Parallel: parallel}
		var bar *progressBar
		if a.output != "json" && isTTY(a.stderr) {
			bar = &progressBar{w: a.stderr}
			opts.Progress = bar.update
		}
		res := rt.Manager.Apply(ctx, plan, opts)
		if bar != nil {
			bar.finish()
		}
		err = a.print(res, func(w io.Writer) error {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ISSUED\tRENEWED\tREVOKED\tUNCHANGED\tFAILED\tPUBLISHED")
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", res.Issued, res.Renewed, res.Revoked, res.Unchanged, res.Failed, res.Published)
			tw.Flush()
			for _, e := range res.Errors {
				fmt.Fprintf(w, "failed: %s (%s): %s\n", e.Email, e.Action, e.Error)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if res.Failed > 0 {
			if a.output != "json" {
				fmt.Fprintf(a.stderr, "sealgate: %d user(s) failed; the rest is done. Fix the cause and run `sealgate pki rollout` again.\n", res.Failed)
			}
			return &silentError{code: exitRuntime}
		}
		return nil
	})
}

// progressBar draws "[=====     ] 40/147" on a terminal.
type progressBar struct {
	w           io.Writer
	mu          sync.Mutex
	last        time.Time
	done, total int
}

func (p *progressBar) update(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = max(p.done, done), total
	if time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progressBar) draw() {
	const width = 30
	n := 0
	if p.total > 0 {
		n = p.done * width / p.total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("=", n), strings.Repeat(" ", width-n), p.done, p.total)
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total > 0 {
		p.draw()
	}
	fmt.Fprintln(p.w)
}

type statusJSON struct {
	Email    string `json:"email"`
	Kind     string `json:"kind"` // user | shared | room | equipment; "" when no longer in the users source (or it is unreachable)
	Serial   string `json:"serial"`
	NotAfter string `json:"not_after"`
	State    string `json:"state"`
}

func (a *app) pkiStatus(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	return a.withPKI(ctx, func(rt *pkiRuntime) error {
		recs, err := rt.Manager.Status(ctx)
		if err != nil {
			return err
		}
		// The kind of each holder (a shared mailbox, a room) comes from
		// the users source; status still answers when it is down.
		kinds := map[string]string{}
		if rt.Manager.Users == nil {
		} else if users, err := rt.Manager.Users.Users(ctx); err != nil {
			fmt.Fprintf(a.stderr, "sealgate: the users source did not answer, kinds are left empty: %v\n", err)
		} else {
			for _, u := range users {
				kinds[u.Email] = cmp.Or(u.Kind, pki.KindUser)
			}
		}
		out := []statusJSON{}
		for _, c := range recs {
			out = append(out, statusJSON{Email: c.Email, Kind: kinds[c.Email], Serial: c.Serial, NotAfter: c.NotAfter.UTC().Format(time.RFC3339), State: c.State})
		}
		return a.print(out, func(w io.Writer) error {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EMAIL\tKIND\tSERIAL\tNOT AFTER\tSTATE")
			for _, s := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Email, cmp.Or(s.Kind, "-"), s.Serial, s.NotAfter, s.State)
			}
			return tw.Flush()
		})
	})
}

// ldapTLS trusts users.ldap.ca_file (in addition to nothing else) when set.
func ldapTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.Users.LDAP.CAFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(cfg.Path(cfg.Users.LDAP.CAFile))
	if err != nil {
		return nil, asUsage(fmt.Errorf("users.ldap.ca_file: %w", err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, usageErrorf("users.ldap.ca_file %s holds no PEM certificate", cfg.Users.LDAP.CAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
