package smime

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// maxSignedParts bounds the parts read from a multipart/signed body: it
// has exactly two.
const maxSignedParts = 3

// Prove says what S/MIME protection a message body really carries, from
// its content rather than its label (Classify reads only the label). A
// body is enveloped only when it decodes to exactly one CMS EnvelopedData
// or AuthEnvelopedData with at least one recipient and a ciphertext, and
// nothing after it; signed only when it is a multipart/signed whose
// signature part is a CMS SignedData (its validity is the recipient's to
// check). Everything else is KindNone: plain, whatever it claims.
//
// mediaType and params are the top-level Content-Type (lower-case type),
// cte its Content-Transfer-Encoding (lower case), body what follows the
// header section.
func Prove(mediaType string, params map[string]string, cte string, body []byte) Kind {
	switch mediaType {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		der, ok := provenDER(cte, body)
		if !ok {
			return KindNone
		}
		oid, _, err := cms.ParseContentInfo(der)
		if err != nil {
			return KindNone
		}
		switch {
		case oid.Equal(cms.OIDEnvelopedData), oid.Equal(cms.OIDAuthEnvelopedData):
			env, err := cms.ParseEnvelope(der)
			if err != nil || len(env.Recipients) == 0 || len(env.Ciphertext) == 0 {
				return KindNone
			}
			if env.Auth {
				return KindAuthEnveloped
			}
			return KindEnveloped
		case oid.Equal(cms.OIDSignedData):
			if _, err := cms.ParseSignedData(der); err != nil {
				return KindNone
			}
			return KindOpaqueSigned
		}
	case "multipart/signed":
		if provenSigned(params, body) {
			return KindSigned
		}
	}
	return KindNone
}

// provenDER decodes a CMS body and checks that it is one element and
// nothing more: bytes after the structure would travel readable.
func provenDER(cte string, body []byte) ([]byte, bool) {
	var raw []byte
	switch cte {
	case "base64":
		var err error
		if raw, err = decodeBase64Body(body); err != nil {
			return nil, false
		}
	case "", "binary", "7bit", "8bit":
		raw = body
	default:
		return nil, false
	}
	der, err := cms.NormalizeBER(raw)
	if err != nil {
		return nil, false
	}
	s := cryptobyte.String(der)
	var el cryptobyte.String
	if !s.ReadASN1Element(&el, cbasn1.SEQUENCE) {
		return nil, false
	}
	for _, c := range s {
		if c != 0 {
			return nil, false
		}
	}
	return el, true
}

// provenSigned checks a multipart/signed body: two parts, the second a
// PKCS #7 signature holding a CMS SignedData.
func provenSigned(params map[string]string, body []byte) bool {
	switch strings.ToLower(params["protocol"]) {
	case "application/pkcs7-signature", "application/x-pkcs7-signature":
	default:
		return false
	}
	if params["boundary"] == "" {
		return false
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var n int
	var sig []byte
	for ; n < maxSignedParts; n++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
		if n != 1 {
			if _, err := io.Copy(io.Discard, p); err != nil {
				return false
			}
			continue
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return false
		}
		{
			mt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if err != nil || (mt != "application/pkcs7-signature" && mt != "application/x-pkcs7-signature") {
				return false
			}
			der, ok := provenDER(strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))), b)
			if !ok {
				return false
			}
			if _, err := cms.ParseSignedData(der); err != nil {
				return false
			}
			sig = der
		}
	}
	return n == 2 && sig != nil
}
