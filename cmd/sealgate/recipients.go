package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/directory"
)

// embeddedCACerts reads the embedded CA's public certificates (root and
// issuing) so that our own users' certificates validate in recipient
// lookups without the admin adding the CA to trust.ca_files. No key is
// read. An uninitialised CA (pki init not run yet) yields none.
func embeddedCACerts(cfg *config.Config) ([]*x509.Certificate, error) {
	if cfg.PKI.Issuer != "embedded" {
		return nil, nil
	}
	var certs []*x509.Certificate
	for _, name := range []string{"root.crt", "issuing.crt"} {
		path := filepath.Join(cfg.DataPath("ca"), name)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("embedded CA certificate: %w", err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("embedded CA certificate %s: no PEM block", path)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("embedded CA certificate %s: %w", path, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// openRecipientDirectory builds the recipient lookup exactly as `serve`
// uses it: store (imported and harvested certificates), our own users,
// the configured key servers, trust anchors including the embedded CA.
func openRecipientDirectory(env *directoryEnv) (*directory.Directory, error) {
	ownCA, err := embeddedCACerts(env.cfg)
	if err != nil {
		return nil, err
	}
	d, err := directory.NewFromConfig(env.cfg, directory.Deps{Store: env.store, OwnCA: ownCA})
	if err != nil {
		return nil, asUsage(err)
	}
	return d, nil
}

func init() {
	// `policy explain` reports the method as it would be with the
	// recipient's certificate status looked up through the same directory
	// the gateway uses.
	lookupRecipientCert = func(ctx context.Context, cfg *config.Config, email string) (bool, string, error) {
		a := &app{configPath: cfg.File()}
		env, err := a.openDirectoryEnv(ctx)
		if err != nil {
			return false, "", err
		}
		defer env.store.Close()
		d, err := openRecipientDirectory(env)
		if err != nil {
			return false, "", err
		}
		defer d.Close()
		r, err := d.Lookup(ctx, email)
		if err != nil {
			return false, "", fmt.Errorf("certificate lookup for %s: %w", email, err)
		}
		if !r.Found {
			return false, "directory: " + r.Answer, nil
		}
		return true, "directory: " + r.Chosen.Source, nil
	}
}
