package gateway

import (
	"bytes"
	"strings"

	"github.com/sealgate/sealgate/pkg/message"
)

// subjectCarriers are the fields that carry the subject: Exchange copies
// it into Thread-Topic, so a policy tag or a password stripped only from
// Subject would still travel there.
var subjectCarriers = map[string]bool{"Subject": true, "Thread-Topic": true}

// outgoing returns the message every copy that leaves the gateway carries
// (all but internal pass-through): the PDF password tag removed from
// every free-text header field (it is a secret and must not travel in the
// clear to anyone), and each policy tag that a deciding rule asked to
// strip removed from the subject and its copies. leak is a reason to hold
// every such copy: the subject's password still appears in a header field
// (written there a second time, or inside a structured field that is
// never rewritten).
func (p *Pipeline) outgoing(m *message.Message, msg []byte, plans []rcptPlan) (out []byte, leak string) {
	out = m.RewriteText(msg, func(f *message.Field) string {
		v := f.Decoded
		if p.CleanSubject != nil && strings.Contains(v, "[") {
			v = p.CleanSubject(v)
		}
		if subjectCarriers[f.Name] {
			v = p.stripPolicyTags(v, plans)
		}
		return v
	})
	if p.SubjectPassword == nil {
		return out, ""
	}
	pw := p.SubjectPassword(m.Subject)
	if pw == "" {
		return out, ""
	}
	h, err := message.ParseHeader(out)
	if err != nil {
		return out, "the cleaned header does not parse: " + err.Error()
	}
	for _, f := range h.Fields {
		if strings.Contains(f.Decoded, pw) || bytes.Contains(f.Raw, []byte(pw)) {
			return out, "the PDF password from the subject also appears in header field " + f.Name + "; write it only once, in the subject tag"
		}
	}
	return out, ""
}

// stripPolicyTags removes the subject tags that the rules deciding for
// non-internal recipients asked to strip.
func (p *Pipeline) stripPolicyTags(subject string, plans []rcptPlan) string {
	if p.StripTag == nil {
		return subject
	}
	for _, rp := range plans {
		if rp.d.Action != ActionPass && rp.d.StripSubjectTag != "" {
			subject = p.StripTag(subject, rp.d.StripSubjectTag)
		}
	}
	return subject
}
