package main

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/smime"
	"github.com/spf13/cobra"
)

func init() { register(newSMIMECmd) }

// newSMIMECmd groups the message-level S/MIME tools: they read a message
// on stdin and write the result to stdout, certificates and keys come
// from files (PEM or DER), so they work without a config file.
func newSMIMECmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "smime",
		Short: "sign, encrypt, decrypt or verify one message (stdin to stdout)",
	}
	cmd.AddCommand(newSMIMESignCmd(a), newSMIMEEncryptCmd(a), newSMIMEDecryptCmd(a), newSMIMEVerifyCmd(a))
	return cmd
}

func readAllStdin(a *app) ([]byte, error) {
	b, err := io.ReadAll(a.stdin)
	if err != nil {
		return nil, fmt.Errorf("reading the message from stdin: %w", err)
	}
	return b, nil
}

// loadCerts reads every certificate of a PEM bundle or one DER file.
func loadCerts(flag, path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, asUsage(fmt.Errorf("--%s: %w", flag, err))
	}
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, asUsage(fmt.Errorf("--%s %s: %w", flag, path, err))
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, usageErrorf("--%s %s: no PEM certificate and not a DER certificate: %v", flag, path, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// loadKey reads an unencrypted private key (PKCS#8, PKCS#1 or SEC 1; PEM
// or DER). The key is never echoed in errors.
func loadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, asUsage(fmt.Errorf("--key: %w", err))
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if strings.Contains(blk.Type, "ENCRYPTED") {
			return nil, usageErrorf("--key %s: encrypted keys are not supported here; give an unencrypted PKCS#8 key file readable only by you", path)
		}
		der = blk.Bytes
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, usageErrorf("--key %s: not a PKCS#8, PKCS#1 or EC private key", path)
}

// loadIdentity reads the --cert and --key pair that sign and decrypt need.
func loadIdentity(certFile, keyFile string) ([]*x509.Certificate, crypto.Signer, error) {
	if certFile == "" || keyFile == "" {
		return nil, nil, usageErrorf("--cert and --key are required")
	}
	certs, err := loadCerts("cert", certFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := loadKey(keyFile)
	if err != nil {
		return nil, nil, err
	}
	return certs, key, nil
}

func newSMIMESignCmd(a *app) *cobra.Command {
	var certFile, keyFile, chainFile, hash string
	var pss bool
	cmd := &cobra.Command{
		Use:   "sign --cert F --key F [--chain F]",
		Short: "sign the message on stdin (multipart/signed, detached)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			certs, key, err := loadIdentity(certFile, keyFile)
			if err != nil {
				return err
			}
			chain := certs
			if chainFile != "" {
				more, err := loadCerts("chain", chainFile)
				if err != nil {
					return err
				}
				chain = append(chain, more...)
			}
			opts := &smime.SignOptions{PSS: pss}
			switch strings.ToLower(hash) {
			case "sha256", "sha-256":
				opts.Hash = crypto.SHA256
			case "sha384", "sha-384":
				opts.Hash = crypto.SHA384
			case "sha512", "sha-512":
				opts.Hash = crypto.SHA512
			default:
				return usageErrorf("--hash must be sha256, sha384 or sha512, not %q", hash)
			}
			msg, err := readAllStdin(a)
			if err != nil {
				return err
			}
			out, err := smime.Sign(msg, key, chain, opts)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "signer certificate (PEM or DER; more certificates in the file are taken as the chain)")
	cmd.Flags().StringVar(&keyFile, "key", "", "signer private key file (PKCS#8 PEM, unencrypted)")
	cmd.Flags().StringVar(&chainFile, "chain", "", "intermediate certificates to include (PEM); self-signed roots are left out")
	cmd.Flags().StringVar(&hash, "hash", "sha256", "digest: sha256, sha384 or sha512")
	cmd.Flags().BoolVar(&pss, "pss", false, "sign with RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys)")
	return cmd
}

func newSMIMEEncryptCmd(a *app) *cobra.Command {
	var recipFiles []string
	var cipherName, transport string
	var ski bool
	cmd := &cobra.Command{
		Use:   "encrypt --recipient-cert F [--recipient-cert F]...",
		Short: "encrypt the message on stdin for the recipients (one envelope)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(recipFiles) == 0 {
				return usageErrorf("at least one --recipient-cert is required")
			}
			var recips []smime.Recipient
			for _, f := range recipFiles {
				certs, err := loadCerts("recipient-cert", f)
				if err != nil {
					return err
				}
				recips = append(recips, smime.Recipient{Cert: certs[0], UseSKI: ski})
			}
			opts := &smime.EncryptOptions{GCM: smime.Never, OAEP: smime.Never}
			switch cipherName {
			case "aes256-cbc":
			case "aes256-gcm":
				opts.GCM = smime.Force
			default:
				return usageErrorf("--cipher must be aes256-cbc or aes256-gcm, not %q", cipherName)
			}
			switch transport {
			case "pkcs1v15":
			case "oaep":
				opts.OAEP = smime.Force
			default:
				return usageErrorf("--key-transport must be pkcs1v15 or oaep, not %q", transport)
			}
			msg, err := readAllStdin(a)
			if err != nil {
				return err
			}
			out, err := smime.Encrypt(msg, recips, opts)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringArrayVar(&recipFiles, "recipient-cert", nil, "recipient certificate (PEM or DER); repeat for more recipients")
	cmd.Flags().StringVar(&cipherName, "cipher", "aes256-cbc", "content encryption: aes256-cbc (every client) or aes256-gcm (authEnveloped-data)")
	cmd.Flags().StringVar(&transport, "key-transport", "pkcs1v15", "RSA key transport: pkcs1v15 (every client) or oaep (SHA-256)")
	cmd.Flags().BoolVar(&ski, "ski", false, "identify recipients by subject key identifier")
	return cmd
}

func newSMIMEDecryptCmd(a *app) *cobra.Command {
	var certFile, keyFile string
	cmd := &cobra.Command{
		Use:   "decrypt --cert F --key F",
		Short: "decrypt the S/MIME message on stdin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			certs, key, err := loadIdentity(certFile, keyFile)
			if err != nil {
				return err
			}
			msg, err := readAllStdin(a)
			if err != nil {
				return err
			}
			out, err := smime.Decrypt(msg, certs[0], key)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "your certificate (PEM or DER)")
	cmd.Flags().StringVar(&keyFile, "key", "", "your private key file (PKCS#8 PEM, unencrypted)")
	return cmd
}

// verifyResult is the JSON form of a good signature.
type verifyResult struct {
	Signer            string    `json:"signer"`
	Addresses         []string  `json:"addresses"`
	Subject           string    `json:"subject"`
	Issuer            string    `json:"issuer"`
	Serial            string    `json:"serial"`
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	NotAfter          time.Time `json:"not_after"`
	SigningTime       time.Time `json:"signing_time,omitempty"`
}

func newSMIMEVerifyCmd(a *app) *cobra.Command {
	var caFiles []string
	var from string
	var noFrom bool
	var contentOut string
	cmd := &cobra.Command{
		Use:   "verify --ca F",
		Short: "verify the signed message on stdin and print the signer (exit 1 if the signature is bad)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := smime.VerifyOptions{From: from, SkipFromCheck: noFrom}
			if len(caFiles) > 0 {
				opts.Roots = x509.NewCertPool()
				for _, f := range caFiles {
					certs, err := loadCerts("ca", f)
					if err != nil {
						return err
					}
					for _, c := range certs {
						opts.Roots.AddCert(c)
					}
				}
			}
			msg, err := readAllStdin(a)
			if err != nil {
				return err
			}
			v, err := smime.Verify(msg, opts)
			if err != nil {
				if errors.Is(err, smime.ErrNotSigned) {
					return fmt.Errorf("%w (nothing to verify)", err)
				}
				return fmt.Errorf("bad signature: %w", err)
			}
			if contentOut != "" {
				if err := os.WriteFile(contentOut, v.Message, 0o600); err != nil {
					return fmt.Errorf("--content-out: %w", err)
				}
			}
			fp := sha256.Sum256(v.Signer.Raw)
			addrs := smime.CertAddresses(v.Signer)
			res := verifyResult{
				Addresses:         addrs,
				Subject:           v.Signer.Subject.String(),
				Issuer:            v.Signer.Issuer.String(),
				Serial:            v.Signer.SerialNumber.Text(16),
				FingerprintSHA256: hex.EncodeToString(fp[:]),
				NotAfter:          v.Signer.NotAfter.UTC(),
				SigningTime:       v.SigningTime.UTC(),
			}
			if len(addrs) > 0 {
				res.Signer = addrs[0]
			} else {
				res.Signer = res.Subject
			}
			return a.print(res, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Good signature from %s\n  subject:     %s\n  issuer:      %s\n  serial:      %s\n  sha256:      %s\n  valid until: %s\n",
					res.Signer, res.Subject, res.Issuer, res.Serial, res.FingerprintSHA256, res.NotAfter.Format(time.RFC3339))
				if err == nil && !res.SigningTime.IsZero() {
					_, err = fmt.Fprintf(w, "  signed at:   %s\n", res.SigningTime.Format(time.RFC3339))
				}
				return err
			})
		},
	}
	cmd.Flags().StringArrayVar(&caFiles, "ca", nil, "trusted root certificates (PEM bundle or DER); repeatable; default: system roots")
	cmd.Flags().StringVar(&from, "from", "", "address the signer must have (default: the From header)")
	cmd.Flags().BoolVar(&noFrom, "no-from-check", false, "do not compare the signer with the From address")
	cmd.Flags().StringVar(&contentOut, "content-out", "", "write the message without its signature to this file")
	return cmd
}
