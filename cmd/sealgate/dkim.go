package main

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/delivery/dkim"
	"github.com/sealgate/sealgate/pkg/gateway"
)

func init() {
	register(newDKIMCmd)
	configChecks = append(configChecks, dkimKeyCheck)
}

// dkimKeyCheck reads dkim.key_file as serve will, so a missing, exposed
// or unusable key shows in `config check`, not only when serve refuses to
// start.
func dkimKeyCheck(cfg *config.Config) []config.Problem {
	if !cfg.DKIM.Enabled() {
		return nil
	}
	var ps []config.Problem
	for i, d := range cfg.DKIM.Domains {
		if _, err := dkim.NormalizeDomain(d); err != nil {
			key := fmt.Sprintf("dkim.domains[%d]", i)
			ps = append(ps, config.Problem{Key: key, Line: cfg.Line(key), Message: fmt.Sprintf("%q: %v", d, err), Hint: `write a domain, e.g. "example.org"`})
		}
	}
	p := cfg.DKIMKeyPath()
	if _, err := dkim.LoadKey(p); err != nil {
		hint := "a PEM PKCS#8 RSA (2048 bits or more) or Ed25519 private key, mode 0600"
		if errors.Is(err, fs.ErrNotExist) {
			hint = "make one with `sealgate dkim keygen` and publish the record it prints"
		}
		ps = append(ps, config.Problem{Key: "dkim.key_file", Line: cfg.Line("dkim.key_file"), Message: err.Error(), Hint: hint})
	}
	return ps
}

func newDKIMCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dkim",
		Short: "the DKIM key that signs what leaves, and its DNS record",
		Args:  cobra.NoArgs,
	}
	var (
		algorithm, selector, domain string
		force                       bool
	)
	keygen := &cobra.Command{
		Use:   "keygen [--algorithm rsa|ed25519] [--selector S] [--domain D] [--force]",
		Short: "make the DKIM key (dkim.key_file, mode 0600) and print the DNS TXT record to publish",
		Long: "keygen writes a new private key to dkim.key_file (default data_dir/dkim.key) and prints\n" +
			"the TXT record for <selector>._domainkey.<domain> of each domain in dkim.domains (or\n" +
			"--domain). It refuses to replace an existing key unless --force is given: mail signed\n" +
			"with the old key stops verifying once its record is gone. RSA (2048 bits) is verified\n" +
			"everywhere; Ed25519 (RFC 8463) is not yet verified by every receiver.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.dkimKeygen(algorithm, selector, domain, force)
		},
	}
	keygen.Flags().StringVar(&algorithm, "algorithm", dkim.RSA, "rsa (2048 bits) or ed25519")
	keygen.Flags().StringVar(&selector, "selector", "", "selector (default: dkim.selector)")
	keygen.Flags().StringVar(&domain, "domain", "", "domain to print the record for (default: each of dkim.domains)")
	keygen.Flags().BoolVar(&force, "force", false, "replace an existing key")
	record := &cobra.Command{
		Use:   "record [--selector S] [--domain D]",
		Short: "print the DNS TXT record for the existing DKIM key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.dkimRecord(selector, domain)
		},
	}
	record.Flags().StringVar(&selector, "selector", "", "selector (default: dkim.selector)")
	record.Flags().StringVar(&domain, "domain", "", "domain to print the record for (default: each of dkim.domains)")
	cmd.AddCommand(keygen, record)
	return cmd
}

// dkimConfig loads the config with every check but the one of the key
// file itself (keygen makes it; record reads it with its own error).
func (a *app) dkimConfig() (*config.Config, error) {
	cfg, err := config.Load(a.configPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usageErrorf("config file %s does not exist (pass --config FILE or set SEALGATE_CONFIG): %w", a.configPath, err)
		}
		return nil, asUsage(fmt.Errorf("invalid configuration (run `sealgate config check`):\n%w", err))
	}
	var ps []config.Problem
	for _, p := range runConfigChecks(cfg) {
		if p.Key != "dkim.key_file" {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return nil, asUsage(fmt.Errorf("invalid configuration (run `sealgate config check`):\n%w", &config.Errors{File: a.configPath, Problems: ps}))
	}
	return cfg, nil
}

type dkimRecordJSON struct {
	Domain string   `json:"domain"`
	Name   string   `json:"name"`  // S._domainkey.D.
	Value  string   `json:"value"` // v=DKIM1; k=…; p=…
	TXT    []string `json:"txt"`   // the value in strings of at most 255 bytes
	Zone   string   `json:"zone"`  // the zone-file line
}

type dkimKeyJSON struct {
	KeyFile   string           `json:"key_file"`
	Algorithm string           `json:"algorithm"`
	Selector  string           `json:"selector"`
	Records   []dkimRecordJSON `json:"records"`
}

func (a *app) dkimKeygen(algorithm, selector, domain string, force bool) error {
	if algorithm != dkim.RSA && algorithm != dkim.Ed25519 {
		return usageErrorf("--algorithm must be %s or %s, not %q", dkim.RSA, dkim.Ed25519, algorithm)
	}
	cfg, err := a.dkimConfig()
	if err != nil {
		return err
	}
	sel, domains, err := recordTargets(cfg, selector, domain)
	if err != nil {
		return err
	}
	key, err := dkim.GenerateKey(algorithm)
	if err != nil {
		return err
	}
	path := cfg.DKIMKeyPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("dkim key directory: %w", err)
	}
	if err := dkim.WriteKeyFile(path, key, force); err != nil {
		if !force {
			return asUsage(err)
		}
		return err
	}
	return a.printRecords(path, algorithm, sel, domains, key)
}

func (a *app) dkimRecord(selector, domain string) error {
	cfg, err := a.dkimConfig()
	if err != nil {
		return err
	}
	sel, domains, err := recordTargets(cfg, selector, domain)
	if err != nil {
		return err
	}
	path := cfg.DKIMKeyPath()
	key, err := dkim.LoadKey(path)
	if err != nil {
		return asUsage(fmt.Errorf("%w (make one with `sealgate dkim keygen`)", err))
	}
	algorithm := dkim.Algorithm(key)
	return a.printRecords(path, algorithm, sel, domains, key)
}

// recordTargets: the selector and domains the record is printed for.
func recordTargets(cfg *config.Config, selector, domain string) (string, []string, error) {
	if selector == "" {
		selector = cfg.DKIM.Selector
	}
	domains := cfg.DKIM.Domains
	if domain != "" {
		d, err := dkim.NormalizeDomain(domain)
		if err != nil {
			return "", nil, usageErrorf("--domain %q: %w", domain, err)
		}
		domains = []string{d}
	}
	if len(domains) == 0 {
		return "", nil, usageErrorf("no domain to print the record for: pass --domain D or set dkim.domains")
	}
	if !dkim.ValidSelector(selector) {
		return "", nil, usageErrorf("selector %q is not a DKIM selector (letters, digits, hyphens, dots)", selector)
	}
	return selector, domains, nil
}

func (a *app) printRecords(path, algorithm, selector string, domains []string, key crypto.Signer) error {
	out := dkimKeyJSON{KeyFile: path, Algorithm: algorithm, Selector: selector}
	value, err := dkim.RecordValue(key)
	if err != nil {
		return err
	}
	for _, d := range domains {
		d, err := dkim.NormalizeDomain(d)
		if err != nil {
			return usageErrorf("domain %q: %w", d, err)
		}
		zone, err := dkim.Record(selector, d, key)
		if err != nil {
			return err
		}
		out.Records = append(out.Records, dkimRecordJSON{Domain: d, Name: selector + "._domainkey." + d + ".",
			Value: value, TXT: dkim.SplitTXT(value), Zone: zone})
	}
	return a.print(out, func(w io.Writer) error {
		fmt.Fprintf(a.stderr, "key: %s (%s); publish in DNS:\n", path, algorithm)
		for _, r := range out.Records {
			if _, err := fmt.Fprintln(w, r.Zone); err != nil {
				return err
			}
		}
		return nil
	})
}

// withDKIM wraps the relay serve built (smart host, MX or outbox
// directory) so that every parcel is DKIM-signed over the bytes it sends.
// Without [dkim] domains the relay is returned as it is.
func withDKIM(cfg *config.Config, next gateway.Relay, log *slog.Logger) (gateway.Relay, error) {
	if !cfg.DKIM.Enabled() {
		return next, nil
	}
	key, err := dkim.LoadKey(cfg.DKIMKeyPath())
	if err != nil {
		return nil, fmt.Errorf("dkim.key_file: %w", err)
	}
	s, err := dkim.New(dkim.Config{Selector: cfg.DKIM.Selector, Domains: cfg.DKIM.Domains, Key: key})
	if err != nil {
		return nil, err
	}
	return &gateway.SigningRelay{Next: next, Sign: func(d gateway.Delivery) ([]byte, error) {
		out, res, err := s.Sign(d.Data)
		switch {
		case err != nil:
			log.Error("dkim signing failed; the parcel is deferred", "queue_id", d.QueueID, "parcel", d.Index, "domain", res.Domain, "err", err)
			return nil, err
		case res.Signed:
			log.Debug("dkim signed", "queue_id", d.QueueID, "parcel", d.Index, "domain", res.Domain, "selector", cfg.DKIM.Selector)
		default:
			log.Debug("dkim: not signed", "queue_id", d.QueueID, "parcel", d.Index, "reason", res.Reason)
		}
		return out, nil
	}}, nil
}
