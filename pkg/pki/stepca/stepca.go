// Package stepca issues users' S/MIME certificates through a remote
// step-ca: one-time tokens from a JWK provisioner, POST /1.0/sign and
// /1.0/revoke, using smallstep's own `ca` client.
//
// The certificate profile comes from the provisioner's X.509 template on
// the CA side; step-ca's default template makes TLS certificates, so the
// provisioner must be configured with SMIMETemplate (or an equivalent).
// Issue checks the result and refuses a certificate without EKU
// emailProtection or without the requested addresses.
package stepca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/ca"

	"github.com/sealgate/sealgate/pkg/pki"
)

// SMIMETemplate is the X.509 template to set on the step-ca JWK provisioner
// (options.x509.template): email SANs from the token, EKU emailProtection,
// key usage by key type.
const SMIMETemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"sans": {{ toJson .SANs }},
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["digitalSignature", "keyEncipherment"],
{{- else }}
	"keyUsage": ["digitalSignature", "keyAgreement"],
{{- end }}
	"extKeyUsage": ["emailProtection"]
}`

// defaultMaxTLSDuration is step-ca's built-in maximum when the provisioner
// and the authority set none.
const defaultMaxTLSDuration = 24 * time.Hour

// Config locates the CA and the provisioner.
type Config struct {
	URL         string // https://ca.example.org:9000
	RootFile    string // the CA's root certificate (PEM), pins TLS and trust
	Provisioner string // JWK provisioner name
	Password    []byte // decrypts the provisioner's key
	Timeout     time.Duration
}

// Client is a pki.Issuer backed by a remote step-ca.
type Client struct {
	cfg         Config
	client      *ca.Client
	signer      *ca.Provisioner // audience /1.0/sign
	maxLifetime time.Duration

	mu            sync.Mutex // guards revoker's audience and intermediates
	revoker       *ca.Provisioner
	intermediates []*x509.Certificate
}

// New connects to the CA, decrypts the provisioner key and reads the
// provisioner's maximum certificate lifetime.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	opts := []ca.ClientOption{ca.WithRootFile(cfg.RootFile)}
	client, err := ca.NewClient(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("step-ca client for %s: %w", cfg.URL, err)
	}
	signer, err := ca.NewProvisioner(cfg.Provisioner, "", cfg.URL, cfg.Password, opts...)
	if err != nil {
		return nil, fmt.Errorf("step-ca provisioner %q at %s (check pki.stepca.provisioner and its password file): %w", cfg.Provisioner, cfg.URL, err)
	}
	revoker, err := ca.NewProvisioner(cfg.Provisioner, signer.Kid(), cfg.URL, cfg.Password, opts...)
	if err != nil {
		return nil, fmt.Errorf("step-ca provisioner %q: %w", cfg.Provisioner, err)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pki.stepca.url: %w", err)
	}
	revoker.SetAudience(u.ResolveReference(&url.URL{Path: "/1.0/revoke"}).String())
	c := &Client{cfg: cfg, client: client, signer: signer, revoker: revoker}
	if c.maxLifetime, err = c.provisionerMaxLifetime(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// MaxLifetime is the provisioner's maxTLSCertDuration: requested validity
// is shortened to it, so a long pki.validity does not make every request fail.
func (c *Client) MaxLifetime() time.Duration { return c.maxLifetime }

func (c *Client) provisionerMaxLifetime(ctx context.Context) (time.Duration, error) {
	var cursor string
	for {
		resp, err := c.client.ProvisionersWithContext(ctx, ca.WithProvisionerCursor(cursor), ca.WithProvisionerLimit(100))
		if err != nil {
			return 0, fmt.Errorf("listing step-ca provisioners: %w", err)
		}
		for _, p := range resp.Provisioners {
			if p.GetName() != c.cfg.Provisioner || p.GetType() != provisioner.TypeJWK {
				continue
			}
			if j, ok := p.(*provisioner.JWK); ok && j.Claims != nil && j.Claims.MaxTLSDur != nil && j.Claims.MaxTLSDur.Duration > 0 {
				return j.Claims.MaxTLSDur.Duration, nil
			}
			return defaultMaxTLSDuration, nil
		}
		if resp.NextCursor == "" {
			return 0, fmt.Errorf("step-ca has no JWK provisioner named %q", c.cfg.Provisioner)
		}
		cursor = resp.NextCursor
	}
}

// Issue asks the CA to sign the CSR for the addresses.
func (c *Client) Issue(ctx context.Context, req pki.IssueRequest) (pki.Issued, error) {
	if req.CSR == nil || len(req.Emails) == 0 {
		return pki.Issued{}, errors.New("issue request needs a CSR and at least one email address")
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	validity := req.Validity
	if validity <= 0 || validity > c.maxLifetime {
		validity = c.maxLifetime
	}
	tok, err := c.signer.Token(req.Emails[0], req.Emails...)
	if err != nil {
		return pki.Issued{}, fmt.Errorf("step-ca token: %w", err)
	}
	resp, err := c.client.SignWithContext(ctx, &api.SignRequest{
		CsrPEM:   api.CertificateRequest{CertificateRequest: req.CSR},
		OTT:      tok,
		NotAfter: api.NewTimeDuration(time.Now().Add(validity)),
	})
	if err != nil {
		return pki.Issued{}, fmt.Errorf("step-ca %s /1.0/sign: %w", c.cfg.URL, err)
	}
	leaf := resp.ServerPEM.Certificate
	if leaf == nil {
		return pki.Issued{}, errors.New("step-ca returned no certificate")
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageEmailProtection) {
		return pki.Issued{}, fmt.Errorf("step-ca issued %s without EKU emailProtection: set the provisioner's X.509 template to stepca.SMIMETemplate", pki.SerialHex(leaf))
	}
	for _, e := range req.Emails {
		if !slices.ContainsFunc(leaf.EmailAddresses, func(s string) bool { return strings.EqualFold(s, e) }) {
			return pki.Issued{}, fmt.Errorf("step-ca issued %s without the address %s", pki.SerialHex(leaf), e)
		}
	}
	var chain []*x509.Certificate
	for _, p := range resp.CertChainPEM[min(1, len(resp.CertChainPEM)):] {
		chain = append(chain, p.Certificate)
	}
	if len(chain) == 0 && resp.CaPEM.Certificate != nil {
		chain = []*x509.Certificate{resp.CaPEM.Certificate}
	}
	c.mu.Lock()
	c.intermediates = chain
	c.mu.Unlock()
	return pki.Issued{Leaf: leaf, Chain: chain}, nil
}

// Revoke revokes by serial with a token whose subject is the serial
// (passive: step-ca records it and lists it on its CRL).
// A certificate the CA already has as revoked counts as done.
func (c *Client) Revoke(ctx context.Context, cert *x509.Certificate, reasonCode int) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	serial := cert.SerialNumber.String() // step-ca identifies by decimal serial
	c.mu.Lock()
	tok, err := c.revoker.Token(serial)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("step-ca revoke token: %w", err)
	}
	_, err = c.client.RevokeWithContext(ctx, &api.RevokeRequest{Serial: serial, OTT: tok, ReasonCode: reasonCode, Passive: true}, nil)
	if err != nil {
		if strings.Contains(err.Error(), "already revoked") {
			return nil
		}
		return fmt.Errorf("step-ca %s /1.0/revoke %s: %w", c.cfg.URL, pki.SerialHex(cert), err)
	}
	return nil
}

// Roots returns the CA's roots (GET /1.0/roots).
func (c *Client) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	resp, err := c.client.RootsWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("step-ca roots: %w", err)
	}
	var out []*x509.Certificate
	for _, r := range resp.Certificates {
		out = append(out, r.Certificate)
	}
	return out, nil
}

// Intermediates returns the issuing chain (GET /intermediates, cached
// from the last signature when there was one).
func (c *Client) Intermediates(ctx context.Context) ([]*x509.Certificate, error) {
	c.mu.Lock()
	cached := c.intermediates
	c.mu.Unlock()
	if len(cached) > 0 {
		return cached, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	u, _ := url.Parse(c.cfg.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.ResolveReference(&url.URL{Path: "/intermediates"}).String(), nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.client.GetRootCAs(), MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("step-ca intermediates: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 { // step-ca answers 201 Created
		return nil, fmt.Errorf("step-ca intermediates: HTTP %s", resp.Status)
	}
	var ir api.IntermediatesResponse
	if err := json.NewDecoder(resp.Body).Decode(&ir); err != nil {
		return nil, fmt.Errorf("step-ca intermediates: %w", err)
	}
	var out []*x509.Certificate
	for _, i := range ir.Certificates {
		out = append(out, i.Certificate)
	}
	c.mu.Lock()
	c.intermediates = out
	c.mu.Unlock()
	return out, nil
}

var _ pki.Issuer = (*Client)(nil)
