package main

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/directory"
	"github.com/sealgate/sealgate/pkg/smime"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newDirectoryCmd) }

func newDirectoryCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "directory",
		Short: "find, validate and import recipients' certificates",
		Args:  cobra.NoArgs,
	}
	var explain bool
	lookup := &cobra.Command{
		Use:   "lookup EMAIL",
		Short: "the certificate the gateway would encrypt to, where it came from, and every check",
		Long: "Asks the sources in order (own users, imported/harvested certificates, each\n" +
			"[[keyservers]] entry) and validates every candidate. Exits 0 when a usable\n" +
			"certificate is found, 1 when none is (the answer says why), 2 on a config error.\n" +
			"--explain lists every candidate with each check, and unavailable sources.\n" +
			"An undecided answer (a source unavailable, or a check that cannot be made\n" +
			"now, marked WAIT) also exits 1: the gateway defers such a recipient.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.directoryLookup(cmd.Context(), args[0], explain)
		},
	}
	lookup.Flags().BoolVar(&explain, "explain", false, "show every candidate certificate and why it was chosen or refused")
	imp := &cobra.Command{
		Use:   "import FILE...",
		Short: "add recipient certificates (PEM, DER, .p7c, or a signed .eml to harvest)",
		Long: "Stores certificates for the addresses they name. A signed message (.eml) is\n" +
			"verified first; its signer's certificate is stored with the S/MIME capabilities\n" +
			"it announced. Lookups validate every time: importing does not make an untrusted\n" +
			"or expired certificate usable (trust its CA with trust.ca_files).",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.directoryImport(cmd.Context(), args)
		},
	}
	cmd.AddCommand(lookup, imp)
	return cmd
}

// directoryEnv is what the directory commands open from the config.
type directoryEnv struct {
	cfg      *config.Config
	store    *store.Store
	verifier directory.SignatureVerifier // for harvesting signed .eml
}

func (a *app) openDirectoryEnv(ctx context.Context) (*directoryEnv, error) {
	cfg, err := config.Load(a.configPath)
	if err != nil {
		return nil, asUsage(err)
	}
	st, _, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &directoryEnv{cfg: cfg, store: st, verifier: smimeVerifier{}}, nil
}

// lookupJSON is the `directory lookup --output json` shape (INTERFACE.md),
// plus answer, unavailable and, with --explain, candidates.
type lookupJSON struct {
	Email       string            `json:"email"`
	Found       bool              `json:"found"`
	Answer      string            `json:"answer"`
	Source      string            `json:"source,omitempty"`
	Origin      string            `json:"origin,omitempty"` // harvested | imported (store certificates)
	Certificate string            `json:"certificate,omitempty"`
	Fingerprint string            `json:"fingerprint_sha256,omitempty"`
	NotAfter    *time.Time        `json:"not_after,omitempty"`
	Checks      []directory.Check `json:"checks"`
	// Capabilities are the algorithms the recipient announced in a signed
	// message (harvested), strongest first; empty when unknown.
	Capabilities []string `json:"capabilities,omitempty"`
	// Encryption is what the gateway would encrypt with for this
	// recipient alone (an envelope for several uses what all support).
	Encryption  *smime.AlgorithmChoice `json:"encryption,omitempty"`
	Unavailable []string               `json:"unavailable,omitempty"`
	Candidates  []candidateJSON        `json:"candidates,omitempty"`
}

type candidateJSON struct {
	Source      string            `json:"source"`
	Subject     string            `json:"subject"`
	Issuer      string            `json:"issuer"`
	Serial      string            `json:"serial"`
	Fingerprint string            `json:"fingerprint_sha256"`
	NotBefore   time.Time         `json:"not_before"`
	NotAfter    time.Time         `json:"not_after"`
	Valid       bool              `json:"valid"`
	Undecided   bool              `json:"undecided,omitempty"`
	Chosen      bool              `json:"chosen"`
	Checks      []directory.Check `json:"checks"`
}

func (a *app) directoryLookup(ctx context.Context, email string, explain bool) error {
	env, err := a.openDirectoryEnv(ctx)
	if err != nil {
		return err
	}
	defer env.store.Close()
	d, err := openRecipientDirectory(env)
	if err != nil {
		return err
	}
	defer d.Close()
	r, err := d.Explain(ctx, email)
	if err != nil {
		return asUsage(err)
	}
	out := lookupJSON{Email: r.Email, Found: r.Found, Answer: r.Answer, Checks: []directory.Check{}, Unavailable: r.Unavailable}
	if r.Found {
		c := r.Chosen
		out.Source = c.Source
		out.Origin = c.Origin
		out.Certificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate.Raw}))
		out.Fingerprint = c.Fingerprint()
		na := c.Certificate.NotAfter.UTC()
		out.NotAfter = &na
		out.Checks = c.Checks
		out.Capabilities = capabilityNames(c.Capabilities)
		enc := smime.DescribeAlgorithms(recipientOf(r))
		out.Encryption = &enc
	}
	if explain {
		for _, ev := range r.Candidates {
			out.Candidates = append(out.Candidates, candidateOf(ev, r.Chosen))
		}
	}
	if err := a.print(out, func(w io.Writer) error { return printLookup(w, out, explain) }); err != nil {
		return err
	}
	if !r.Found {
		return &silentError{code: exitRuntime}
	}
	return nil
}

func candidateOf(ev directory.Evaluated, chosen *directory.Evaluated) candidateJSON {
	c := ev.Certificate
	return candidateJSON{Source: ev.Source, Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		Serial: hex.EncodeToString(c.SerialNumber.Bytes()), Fingerprint: ev.Fingerprint(),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Valid: ev.Valid, Undecided: ev.Undecided,
		Chosen: chosen != nil && chosen.Certificate.Equal(c), Checks: ev.Checks}
}

func printLookup(w io.Writer, r lookupJSON, explain bool) error {
	if r.Found {
		if r.Origin != "" {
			fmt.Fprintf(w, "%s: found in %s (%s)\n", r.Email, r.Source, r.Origin)
		} else {
			fmt.Fprintf(w, "%s: found in %s\n", r.Email, r.Source)
		}
		fmt.Fprintf(w, "  sha256     %s\n  not after  %s\n", r.Fingerprint, r.NotAfter.Format(time.RFC3339))
		if len(r.Capabilities) > 0 {
			fmt.Fprintf(w, "  announces  %s\n", strings.Join(r.Capabilities, ", "))
		}
		if e := r.Encryption; e != nil {
			fmt.Fprintf(w, "  encrypts   %s, key %s (%s)\n", e.Content, e.KeyTransport, e.Why)
		}
		if !explain {
			printChecks(w, "  ", r.Checks)
		}
	} else {
		fmt.Fprintf(w, "%s: %s\n", r.Email, r.Answer)
	}
	for _, u := range r.Unavailable {
		fmt.Fprintf(w, "  unavailable: %s\n", u)
	}
	if explain {
		if len(r.Candidates) == 0 {
			fmt.Fprintln(w, "  no source offered a certificate for this address")
		}
		for i, c := range r.Candidates {
			verdict := "refused"
			switch {
			case c.Chosen:
				verdict = "CHOSEN"
			case c.Valid:
				verdict = "valid, not chosen (an older notBefore, or an earlier source decided)"
			case c.Undecided:
				verdict = "undecided (a check could not be made now; the gateway defers and asks again)"
			}
			fmt.Fprintf(w, "\ncandidate %d from %s: %s\n", i+1, c.Source, verdict)
			fmt.Fprintf(w, "  subject    %s\n  issuer     %s\n  serial     %s\n  valid      %s to %s\n  sha256     %s\n",
				c.Subject, c.Issuer, c.Serial, c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), c.Fingerprint)
			printChecks(w, "  ", c.Checks)
		}
		if len(r.Candidates) > 1 {
			fmt.Fprintln(w, "\nrule: of the valid certificates of the first source that has any, the newest notBefore wins")
		}
	}
	return nil
}

func printChecks(w io.Writer, indent string, checks []directory.Check) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range checks {
		mark := "ok"
		switch {
		case !c.OK && c.Undecided:
			mark = "WAIT"
		case !c.OK:
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", indent, mark, c.Name, c.Detail)
	}
	tw.Flush()
}

// importJSON is one file's outcome of `directory import --output json`.
type importJSON struct {
	File   string             `json:"file"`
	Kind   string             `json:"kind"` // certificates | signed message
	Stored []directory.Stored `json:"stored"`
	Error  string             `json:"error,omitempty"`
}

func (a *app) directoryImport(ctx context.Context, files []string) error {
	env, err := a.openDirectoryEnv(ctx)
	if err != nil {
		return err
	}
	defer env.store.Close()
	var results []importJSON
	failed := 0
	for _, f := range files {
		res := importJSON{File: f, Kind: "certificates", Stored: []directory.Stored{}}
		stored, kind, err := importFile(ctx, env, f)
		res.Kind = kind
		if stored != nil {
			res.Stored = stored
		}
		if err != nil {
			res.Error = err.Error()
			failed++
		}
		for _, s := range stored {
			if err := env.store.Audit(ctx, store.AuditEvent{Time: time.Now(), Actor: "cli", Action: "directory.import",
				Subject: s.Email, Detail: fmt.Sprintf("%s %s from %s", s.Source, s.Fingerprint, f)}); err != nil && res.Error == "" {
				res.Error = fmt.Sprintf("imported, but the audit record was not written: %v", err)
				failed++
			}
		}
		results = append(results, res)
	}
	if err := a.print(results, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, r := range results {
			if r.Error != "" {
				fmt.Fprintf(a.stderr, "sealgate: %s: %s\n", r.File, r.Error)
			}
			for _, s := range r.Stored {
				what := "certificate"
				if s.CA {
					what = "CA (chain)"
				} else if s.Capabilities {
					what = "certificate + capabilities"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tnot after %s\t%s\n", r.File, s.Email, s.Source, what, s.NotAfter.UTC().Format("2006-01-02"), s.Fingerprint[:16])
			}
		}
		return tw.Flush()
	}); err != nil {
		return err
	}
	if failed > 0 {
		return &silentError{code: exitRuntime}
	}
	return nil
}

func importFile(ctx context.Context, env *directoryEnv, path string) ([]directory.Stored, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "certificates", err
	}
	if directory.LooksLikeMessage(data) {
		stored, err := directory.Harvest(ctx, env.store, data, env.verifier)
		return stored, "signed message", err
	}
	stored, err := directory.ImportCertificates(ctx, env.store, data)
	return stored, "certificates", err
}

var capabilityNameByOID = map[string]string{
	"2.16.840.1.101.3.4.1.46": "aes256-GCM", "2.16.840.1.101.3.4.1.26": "aes192-GCM", "2.16.840.1.101.3.4.1.6": "aes128-GCM",
	"2.16.840.1.101.3.4.1.42": "aes256-CBC", "2.16.840.1.101.3.4.1.22": "aes192-CBC", "2.16.840.1.101.3.4.1.2": "aes128-CBC",
	"1.2.840.113549.3.7": "des-ede3-CBC", "1.2.840.113549.3.2": "rc2-CBC", "1.2.840.113549.1.1.7": "rsaes-OAEP",
	"1.3.14.3.2.7": "des-CBC", "1.2.643.2.2.21": "gost28147",
}

// capabilityNames lists announced algorithms by name (OID when unknown).
func capabilityNames(der []byte) []string {
	if len(der) == 0 {
		return nil
	}
	caps, err := smime.ParseCapabilities(der)
	if err != nil {
		return []string{"unparsable SMIMECapabilities"}
	}
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		if n, ok := capabilityNameByOID[c.ID.String()]; ok {
			out = append(out, n)
		} else {
			out = append(out, c.ID.String())
		}
	}
	return out
}
