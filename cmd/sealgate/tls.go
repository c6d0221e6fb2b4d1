package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/delivery/mtasts"
	"github.com/sealgate/sealgate/pkg/delivery/resolver"
	"github.com/sealgate/sealgate/pkg/delivery/tlscheck"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newTLSCmd) }

func newTLSCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Recipient mail servers' TLS (direct delivery)"}
	var asJSON bool
	var min string
	check := &cobra.Command{
		Use:   "check DOMAIN",
		Short: "What delivery to each MX host of DOMAIN would get: STARTTLS, TLS version and cipher, certificate, DANE, MTA-STS, verdict",
		Long: `Probes every MX host of DOMAIN through relay.resolver (port relay.mx_port) and prints, per host,
whether it offers STARTTLS, the TLS version and cipher, the certificate's facts (valid for the
MX name against the system roots and relay.ca_files, self-signed, expired, chain complete, name
match), DANE (TLSA records the validating resolver authenticated: match, mismatch, none,
insecure-dns), MTA-STS (the policy's mode and whether it names the host) and the verdict
verified | encrypted | insecure. The domain's verdict is its weakest host's. The result is
cached for relay.tls_check_ttl: the gateway's pipeline uses it for rules with tls = required,
verified or dane.

Exit status: 0 when the domain was checked (whatever the verdict), 1 when it could not be
(DNS failure, no MX host reachable) or, with --min, when the verdict is below it; 2 on a
usage or configuration error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				a.output = "json"
			}
			switch min {
			case "", tlscheck.Insecure, tlscheck.Encrypted, tlscheck.Verified:
			default:
				return usageErrorf("--min must be encrypted or verified, not %q", min)
			}
			return a.tlsCheck(cmd.Context(), args[0], min)
		},
	}
	check.Flags().BoolVar(&asJSON, "json", false, "print JSON (same as --output json)")
	check.Flags().StringVar(&min, "min", "", "exit 1 unless the domain's verdict is at least this (encrypted | verified)")
	cmd.AddCommand(check)
	return cmd
}

// tlsCheckTimeout bounds a whole check (every MX host).
const tlsCheckTimeout = 2 * time.Minute

func (a *app) tlsCheck(ctx context.Context, domain, min string) error {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if domain == "" || strings.ContainsAny(domain, " @/:\x00") {
		return usageErrorf("%q is not a domain", domain)
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, tlsCheckTimeout)
	defer cancel()
	st, _, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	cache, _, err := newTLSChecks(cfg, st, slog.New(slog.DiscardHandler))
	if err != nil {
		return asUsage(err)
	}
	r, err := cache.Refresh(ctx, domain)
	if err != nil && len(r.MX) == 0 {
		return fmt.Errorf("tls check %s: %w", domain, err)
	}
	if perr := a.print(r, func(w io.Writer) error { return printTLSReport(w, r) }); perr != nil {
		return perr
	}
	if err != nil {
		return &silentError{code: exitRuntime}
	}
	if min != "" && tlsRank(r.Verdict) < tlsRank(min) {
		return &silentError{code: exitRuntime}
	}
	return nil
}

func tlsRank(v string) int {
	switch v {
	case tlscheck.Verified:
		return 2
	case tlscheck.Encrypted:
		return 1
	}
	return 0
}

func printTLSReport(w io.Writer, r tlscheck.Report) error {
	verdict := r.Verdict
	if verdict == "" {
		verdict = "unknown (no MX host could be probed)"
	}
	fmt.Fprintf(w, "%s: %s", r.Domain, verdict)
	if r.Reason != "" {
		fmt.Fprintf(w, " (%s)", r.Reason)
	}
	fmt.Fprintln(w)
	if len(r.MX) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTARTTLS\tTLS\tCIPHER\tCERTIFICATE\tDANE\tMTA-STS\tVERDICT")
	for _, h := range r.MX {
		if h.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tunreachable: %s\n", h.Host, h.Error)
			continue
		}
		sts := h.MTASTS.Mode
		if h.MTASTS.Mode != "none" {
			if h.MTASTS.Match {
				sts += ", listed"
			} else {
				sts += ", NOT listed"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, yesNo(h.StartTLS), dash(h.TLSVersion), dash(h.Cipher),
			certSummary(h.Certificate), h.DANE, sts, h.Verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, h := range r.MX {
		if h.Reason != "" {
			fmt.Fprintf(w, "  %s: %s\n", h.Host, h.Reason)
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func certSummary(c *tlscheck.Certificate) string {
	switch {
	case c == nil:
		return "-"
	case c.Valid:
		return "valid"
	}
	return c.Problems()
}

// newTLSChecks builds the TLS check and the MTA-STS cache direct delivery
// shares (relay.resolver, relay.ca_files, relay.mx_port,
// relay.tls_check_ttl), both cached in the store.
func newTLSChecks(cfg *config.Config, st *store.Store, log *slog.Logger) (*tlscheck.Cache, *mtasts.Cache, error) {
	roots, err := relayRoots(cfg)
	if err != nil {
		return nil, nil, err
	}
	addr, err := mxResolverAddr(cfg)
	if err != nil {
		return nil, nil, err
	}
	res := &resolver.Resolver{Addr: addr}
	dnsr, dn := tlscheck.FromResolver(res)
	sts := &mtasts.Cache{TXT: res, Store: st, Log: log, Fetch: &mtasts.Fetcher{Roots: roots,
		Resolve: func(ctx context.Context, host string) ([]net.IP, error) {
			ips, _, err := res.LookupAddrs(ctx, host)
			return ips, err
		}}}
	prober := &tlscheck.Prober{DNS: dnsr, DANE: dn, STS: sts, Roots: roots, Port: cfg.Relay.MXPort,
		Hostname: cfg.SMTP.Hostname, Timeout: cfg.Relay.Timeout.Duration}
	return &tlscheck.Cache{Checker: prober, Store: st, TTL: cfg.Relay.TLSCheckTTL.Duration, Log: log}, sts, nil
}

// relayRoots are the system roots plus relay.ca_files (nil: the system
// roots alone).
func relayRoots(cfg *config.Config) (*x509.CertPool, error) {
	conf, err := relayTLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	return conf.RootCAs, nil
}

// tlsVerdicts adapts the TLS check's cache to the pipeline.
type tlsVerdicts struct{ c *tlscheck.Cache }

func (v tlsVerdicts) TLSVerdict(ctx context.Context, domain string) (gateway.TLSVerdict, error) {
	r, err := v.c.Report(ctx, domain)
	if err != nil {
		return gateway.TLSVerdict{}, err
	}
	if r.Verdict == "" {
		return gateway.TLSVerdict{}, errors.New("the TLS check gave no verdict")
	}
	return gateway.TLSVerdict{Verdict: r.Verdict, DANE: r.DANE, Reason: r.Reason}, nil
}
