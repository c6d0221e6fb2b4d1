package smime

import (
	"encoding/asn1"
	"fmt"

	"github.com/sealgate/sealgate/pkg/smime/cms"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Capability is one SMIMECapability (RFC 8551 §2.5.2).
type Capability struct {
	ID     asn1.ObjectIdentifier
	Params []byte // DER, nil when absent
}

// Capabilities is a parsed SMIMECapabilities list, strongest first as the
// sender ordered it.
type Capabilities []Capability

// Has reports whether the list names algorithm oid.
func (c Capabilities) Has(oid asn1.ObjectIdentifier) bool {
	for _, x := range c {
		if x.ID.Equal(oid) {
			return true
		}
	}
	return false
}

// GCM reports whether AES-256-GCM AuthEnvelopedData is advertised.
func (c Capabilities) GCM() bool { return c.Has(cms.OIDAES256GCM) }

// OAEP reports whether RSAES-OAEP key transport is advertised.
func (c Capabilities) OAEP() bool { return c.Has(cms.OIDRSAOAEP) }

// ParseCapabilities parses the DER of an SMIMECapabilities attribute
// value (as stored with harvested certificates).
func ParseCapabilities(der []byte) (Capabilities, error) {
	s := cryptobyte.String(der)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, fmt.Errorf("%w: SMIMECapabilities", ErrMalformed)
	}
	var out Capabilities
	for !seq.Empty() {
		var c cryptobyte.String
		var cap Capability
		if !seq.ReadASN1(&c, cbasn1.SEQUENCE) || !c.ReadASN1ObjectIdentifier(&cap.ID) {
			return nil, fmt.Errorf("%w: SMIMECapability", ErrMalformed)
		}
		if !c.Empty() {
			cap.Params = append([]byte(nil), c...)
		}
		out = append(out, cap)
	}
	return out, nil
}

// Marshal encodes the list as SMIMECapabilities DER.
func (c Capabilities) Marshal() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, x := range c {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(x.ID)
				if x.Params != nil {
					b.AddBytes(x.Params)
				}
			})
		}
	})
	return b.BytesOrPanic()
}

// DefaultCapabilities is what sealgate can decrypt, strongest first; it is
// advertised in every signature so that peers pick the best algorithm.
func DefaultCapabilities() Capabilities {
	return Capabilities{
		{ID: cms.OIDAES256GCM},
		{ID: cms.OIDAES128GCM},
		{ID: cms.OIDAES256CBC},
		{ID: cms.OIDAES192CBC},
		{ID: cms.OIDAES128CBC},
		{ID: cms.OIDRSAOAEP, Params: cms.OAEPParamsSHA256()},
		{ID: cms.OIDRSAEncryption},
		{ID: cms.OIDECDHSHA256KDF},
		{ID: cms.OIDECDHSHA384KDF},
		{ID: cms.OIDAES256Wrap},
	}
}
