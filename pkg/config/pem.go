package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// PEMCertificates reads the certificates of a PEM file named by a
// ca_files key. A file without a CERTIFICATE block, or with one that does
// not parse, is an error: a trust setting that silently trusts nothing
// would only show when mail stops. Other blocks are skipped.
func PEMCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", path, n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: %w", path, errNoPEMCertificate)
	}
	return certs, nil
}

var errNoPEMCertificate = errors.New("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")
