package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newCertCmd) }

func newCertCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "one user's certificate: show, issue, renew, revoke, export",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "show EMAIL",
		Short: "a user's current certificate and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withPKI(cmd.Context(), func(rt *pkiRuntime) error {
				c, err := rt.Manager.Current(ctxOf(cmd), args[0])
				if err != nil {
					if c, err = rt.Manager.Latest(ctxOf(cmd), args[0]); err != nil {
						return err
					}
				}
				return a.printCert(c)
			})
		},
	})
	cmd.AddCommand(
		a.certChangeCmd("issue", "issue a certificate for one eligible user who has none",
			func(rt *pkiRuntime) func(context.Context, string) (store.Certificate, error) {
				return rt.Manager.IssueUser
			}),
		a.certChangeCmd("renew", "replace a user's certificate now (new key), whatever its expiry",
			func(rt *pkiRuntime) func(context.Context, string) (store.Certificate, error) {
				return rt.Manager.RenewUser
			}))
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke EMAIL [--reason R]",
		Short: "revoke a user's active certificates (they go on the CRL and leave the directory)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, ok := pki.ReasonCodes[reason]
			if !ok {
				var names []string
				for n := range pki.ReasonCodes {
					names = append(names, n)
				}
				sort.Strings(names)
				return usageErrorf("--reason %q is not one of %s", reason, strings.Join(names, ", "))
			}
			return a.withPKI(cmd.Context(), func(rt *pkiRuntime) error {
				rt.Manager.Actor = "cli"
				unlock, err := lockPKI(ctxOf(cmd), rt.Config, rt.Store)
				if err != nil {
					return err
				}
				defer unlock()
				serials, err := rt.Manager.RevokeUser(ctxOf(cmd), args[0], code)
				if err != nil && len(serials) == 0 {
					return err
				}
				// Partly done (e.g. revoked but not unpublished): say what
				// was revoked, then fail with the rest.
				perr := a.print(map[string]any{"email": strings.ToLower(args[0]), "revoked": serials, "reason": reason}, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "revoked %s: %s (%s)\n", args[0], strings.Join(serials, ", "), reason)
					return err
				})
				if err != nil {
					return err
				}
				return perr
			})
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation")
	cmd.AddCommand(revoke)

	var p12File, passwordFile, profile string
	export := &cobra.Command{
		Use:   "export EMAIL --p12 FILE --password-file F",
		Short: "the user's key and chain as PKCS#12 that Outlook, Thunderbird and gpgsm import",
		Long: "Writes the user's current key, certificate and the CA chain to FILE (created 0600,\n" +
			"never overwritten). --profile legacy (default: 3DES + SHA-1 MAC, which gpgsm and\n" +
			"every Outlook import) or modern (AES-256, PBKDF2-SHA256).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if p12File == "" || passwordFile == "" {
				return usageErrorf("cert export needs --p12 FILE and --password-file F")
			}
			pw, err := os.ReadFile(passwordFile)
			if err != nil {
				return asUsage(fmt.Errorf("--password-file: %w", err))
			}
			password := strings.TrimRight(string(pw), "\r\n")
			if password == "" {
				return usageErrorf("--password-file %s is empty: a PKCS#12 needs a password", passwordFile)
			}
			return a.withPKI(cmd.Context(), func(rt *pkiRuntime) error {
				return a.certExport(ctxOf(cmd), rt, args[0], p12File, password, pki.P12Profile(profile))
			})
		},
	}
	export.Flags().StringVar(&p12File, "p12", "", "PKCS#12 file to write")
	export.Flags().StringVar(&passwordFile, "password-file", "", "file holding the PKCS#12 password")
	export.Flags().StringVar(&profile, "profile", "legacy", "legacy (3DES, gpgsm/Outlook) or modern (AES-256)")
	cmd.AddCommand(export)
	return cmd
}

func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func (a *app) certExport(ctx context.Context, rt *pkiRuntime, email, file, password string, profile pki.P12Profile) error {
	if profile != pki.P12Legacy && profile != pki.P12Modern {
		return usageErrorf("--profile %q is not legacy or modern", profile)
	}
	c, err := rt.Manager.Current(ctx, email)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return fmt.Errorf("certificate %s in the store is damaged: %w", c.Serial, err)
	}
	key, err := rt.Manager.Key(ctx, c)
	if err != nil {
		return err
	}
	ints, err := rt.Manager.Issuer.Intermediates(ctx)
	if err != nil {
		return err
	}
	roots, err := rt.Manager.Issuer.Roots(ctx)
	if err != nil {
		return err
	}
	der, err := pki.ExportPKCS12(key, leaf, append(ints, roots...), password, profile)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--p12: %w (it is never overwritten)", err)
	}
	if _, err := f.Write(der); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	rt.Store.Audit(ctx, store.AuditEvent{Time: time.Now().UTC(), Actor: "cli", Action: "key.export", Subject: c.Email,
		Detail: fmt.Sprintf("serial=%s profile=%s", c.Serial, profile)})
	return a.print(map[string]string{"email": c.Email, "serial": c.Serial, "file": file, "profile": string(profile)}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "wrote %s: key and certificate %s of %s with the CA chain (%s profile)\n", file, c.Serial, c.Email, profile)
		return err
	})
}

type certJSON struct {
	Email             string   `json:"email"`
	Serial            string   `json:"serial"`
	State             string   `json:"state"`
	Addresses         []string `json:"addresses"`
	Subject           string   `json:"subject"`
	Issuer            string   `json:"issuer"`
	NotBefore         string   `json:"not_before"`
	NotAfter          string   `json:"not_after"`
	RevokedAt         string   `json:"revoked_at,omitempty"`
	RevocationReason  string   `json:"revocation_reason,omitempty"`
	FingerprintSHA256 string   `json:"fingerprint_sha256"`
	Certificate       string   `json:"certificate"`
}

func (a *app) printCert(c store.Certificate) error {
	x, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return fmt.Errorf("certificate %s in the store is damaged: %w", c.Serial, err)
	}
	j := certJSON{Email: c.Email, Serial: c.Serial, State: c.State, Addresses: c.Addresses, Subject: x.Subject.String(),
		Issuer: x.Issuer.String(), NotBefore: c.NotBefore.UTC().Format(time.RFC3339), NotAfter: c.NotAfter.UTC().Format(time.RFC3339),
		RevocationReason: c.RevocationReason, FingerprintSHA256: fingerprint(x),
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))}
	if !c.RevokedAt.IsZero() {
		j.RevokedAt = c.RevokedAt.UTC().Format(time.RFC3339)
	}
	return a.print(j, func(w io.Writer) error {
		fmt.Fprintf(w, "email:      %s\nstate:      %s\nserial:     %s\naddresses:  %s\nsubject:    %s\nissuer:     %s\nvalid:      %s .. %s\nsha256:     %s\n",
			j.Email, j.State, j.Serial, strings.Join(j.Addresses, ", "), j.Subject, j.Issuer, j.NotBefore, j.NotAfter, j.FingerprintSHA256)
		if j.RevokedAt != "" {
			fmt.Fprintf(w, "revoked:    %s (%s)\n", j.RevokedAt, j.RevocationReason)
		}
		_, err := io.WriteString(w, j.Certificate)
		return err
	})
}

// certChangeCmd is `cert issue` / `cert renew`: one user's certificate
// changed under the PKI lock, then printed.
func (a *app) certChangeCmd(use, short string, change func(*pkiRuntime) func(context.Context, string) (store.Certificate, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " EMAIL",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withPKI(cmd.Context(), func(rt *pkiRuntime) error {
				unlock, err := lockPKI(ctxOf(cmd), rt.Config, rt.Store)
				if err != nil {
					return err
				}
				defer unlock()
				c, err := change(rt)(ctxOf(cmd), args[0])
				if err != nil {
					return err
				}
				return a.printCert(c)
			})
		},
	}
}
