package smime

import "strings"

// Kind is what S/MIME protection a message carries at its top level.
type Kind int

// Message kinds, see Classify.
const (
	KindNone          Kind = iota // not S/MIME
	KindSigned                    // multipart/signed with a PKCS#7 signature
	KindOpaqueSigned              // application/pkcs7-mime; smime-type=signed-data
	KindEnveloped                 // enveloped-data
	KindAuthEnveloped             // authEnveloped-data (AES-GCM)
	KindCertsOnly                 // certs-only or an unknown smime-type
)

func (k Kind) String() string {
	return [...]string{"none", "signed", "opaque-signed", "enveloped", "auth-enveloped", "certs-only"}[k]
}

// Classify looks at the top-level Content-Type only; it does not parse
// or check the CMS.
func Classify(msg []byte) Kind {
	fields, _ := splitMessage(msg)
	mt, params := mediaType(fields)
	switch mt {
	case "multipart/signed":
		p := strings.ToLower(params["protocol"])
		if p == "application/pkcs7-signature" || p == "application/x-pkcs7-signature" {
			return KindSigned
		}
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		switch strings.ToLower(params["smime-type"]) {
		case "enveloped-data", "":
			// Old clients omit smime-type on envelopes.
			if strings.ToLower(params["smime-type"]) == "" && strings.Contains(strings.ToLower(params["name"]), ".p7c") {
				return KindCertsOnly
			}
			return KindEnveloped
		case "authenveloped-data":
			return KindAuthEnveloped
		case "signed-data":
			return KindOpaqueSigned
		default:
			return KindCertsOnly
		}
	}
	return KindNone
}

// IsSMIME reports whether msg is already signed or encrypted with S/MIME
// (by the sender's own client, say) and must be passed through rather
// than signed or encrypted again.
func IsSMIME(msg []byte) bool { return Classify(msg) != KindNone }
