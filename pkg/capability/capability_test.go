package capability

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"slices"
	"testing"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/smime"
	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// TestAlgorithms: the names follow smime.Algorithms, the encryptor's own
// choice, for what the pipeline hands it (today without the announced
// capabilities: CBC and PKCS#1 v1.5).
func TestAlgorithms(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := &x509.Certificate{PublicKey: &rk.PublicKey}
	ecCert := &x509.Certificate{PublicKey: &ek.PublicKey}
	gcmOAEP := smime.Capabilities{{ID: cms.OIDAES256GCM}, {ID: cms.OIDRSAOAEP}}
	tests := []struct {
		name string
		r    smime.Recipient
		want []string
	}{
		{"rsa, nothing announced", smime.Recipient{Cert: rsaCert}, []string{"aes256-cbc", "rsaes-pkcs1-v1_5"}},
		{"rsa, gcm and oaep announced", smime.Recipient{Cert: rsaCert, Capabilities: gcmOAEP}, []string{"aes256-gcm", "rsaes-oaep-sha256"}},
		{"ec, nothing announced", smime.Recipient{Cert: ecCert}, []string{"aes256-cbc", "ecdh-x963kdf-sha256-aes256-wrap"}},
		{"ec, gcm announced", smime.Recipient{Cert: ecCert, Capabilities: gcmOAEP}, []string{"aes256-gcm", "ecdh-x963kdf-sha256-aes256-wrap"}},
		{"ed25519 is not encrypted to", smime.Recipient{Cert: &x509.Certificate{PublicKey: "unsupported"}}, []string{}},
	}
	for _, tt := range tests {
		if got := Algorithms(tt.r); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPasswordState(t *testing.T) {
	tests := []struct {
		pv   pdfmail.Preview
		want string
	}{
		{pdfmail.Preview{}, PasswordNone},
		{pdfmail.Preview{Mode: pdfmail.ModePreset, Stored: pdfmail.ModePreset}, PasswordPreset},
		{pdfmail.Preview{Mode: pdfmail.ModePreset, Stored: pdfmail.ModeGeneratedToSender}, PasswordGenerated},
		{pdfmail.Preview{Mode: pdfmail.ModePreset, Stored: pdfmail.ModePortal}, PasswordPortal},
		{pdfmail.Preview{Mode: pdfmail.ModeGeneratedToSender}, PasswordGenerated},
		{pdfmail.Preview{Mode: pdfmail.ModePortal}, PasswordPortal},
		{pdfmail.Preview{Mode: pdfmail.ModeSubject}, PasswordSubject},
	}
	for _, tt := range tests {
		if got := passwordState(tt.pv); got != tt.want {
			t.Errorf("passwordState(%+v) = %q, want %q", tt.pv, got, tt.want)
		}
	}
}
