package directory

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/sealgate/sealgate/pkg/config"
)

// Stores is what the directory reads from *store.Store.
type Stores interface {
	RecipientStore
	OwnCertStore
}

// Deps are the runtime pieces NewFromConfig cannot build from the file.
type Deps struct {
	Store Stores
	// Own gives our users' certificates; nil reads them from Store.
	Own OwnCertificates
	// OwnCA are our own CA's certificates (pkg/pki: root and issuing).
	// They are trusted in addition to [trust], so that colleagues'
	// certificates validate like anyone else's.
	OwnCA  []*x509.Certificate
	Logger *slog.Logger
	// Observer sees every lookup's outcome per source (metrics); nil: none.
	Observer LookupObserver
}

// NewFromConfig builds the Directory the gateway and the CLI use: sources
// own users, store, then [[keyservers]] in file order; anchors from
// [trust] plus deps.OwnCA; revocation mode from trust.revocation.
func NewFromConfig(cfg *config.Config, deps Deps) (*Directory, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	files := make([]string, len(cfg.Trust.CAFiles))
	for i, f := range cfg.Trust.CAFiles {
		files[i] = cfg.Path(f)
	}
	roots, err := TrustPool(files, cfg.Trust.SystemRoots)
	if err != nil {
		return nil, err
	}
	for _, c := range deps.OwnCA {
		roots.AddCert(c)
	}
	v, err := NewValidator(ValidatorOptions{Roots: roots, Revocation: cfg.Trust.Revocation, Logger: deps.Logger})
	if err != nil {
		return nil, err
	}
	var sources []Source
	if deps.Store != nil {
		own := deps.Own
		if own == nil {
			own = OwnFromStore(deps.Store)
		}
		sources = append(sources, OwnSource(own), StoreSource(deps.Store))
	} else if deps.Own != nil {
		sources = append(sources, OwnSource(deps.Own))
	}
	for i, k := range cfg.Keyservers {
		var pw []byte
		if k.BindPasswordFile != "" {
			data, err := os.ReadFile(cfg.Path(k.BindPasswordFile))
			if err != nil {
				return nil, fmt.Errorf("keyservers[%d].bind_password_file: %w", i, err)
			}
			pw = []byte(strings.TrimRight(string(data), "\r\n"))
		}
		var tlsConf *tls.Config
		if k.CAFile != "" {
			data, err := os.ReadFile(cfg.Path(k.CAFile))
			if err != nil {
				return nil, fmt.Errorf("keyservers[%d].ca_file: %w", i, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data) {
				return nil, fmt.Errorf("keyservers[%d].ca_file: %s holds no PEM certificate", i, cfg.Path(k.CAFile))
			}
			tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		src, err := NewLDAPSource(LDAPSourceOptions{Name: k.Name, URL: k.URL, BaseDN: k.BaseDN, BindDN: k.BindDN,
			BindPassword: pw, Timeout: k.Timeout.Duration, TLSConfig: tlsConf, StartTLS: k.StartTLS,
			AllowPlaintextBind: k.AllowPlaintextBind, Logger: deps.Logger})
		if err != nil {
			return nil, fmt.Errorf("keyservers[%d]: %w", i, err)
		}
		sources = append(sources, src)
	}
	return New(Options{Sources: sources, Validator: v, Logger: deps.Logger, Observer: deps.Observer})
}
