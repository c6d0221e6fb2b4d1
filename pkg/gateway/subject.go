package gateway

import (
	"bytes"
	"mime"
	"strings"
)

// outgoingSubject is the subject every copy that leaves the gateway carries
// (all but internal pass-through): the PDF password tag removed (it is a
// secret: it must not travel in the clear to anyone), and each policy tag
// that a deciding rule asked to strip.
func (p *Pipeline) outgoingSubject(subject string, plans []rcptPlan) string {
	if p.CleanSubject != nil {
		subject = p.CleanSubject(subject)
	}
	return p.stripPolicyTags(subject, plans)
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

// withSubject returns msg with its Subject field replaced by subject
// (folded continuation lines included), or msg itself when unchanged. The
// Subject is an outer header: S/MIME signs the content below it, so the
// rewrite happens before signing and does not touch the signed bytes.
func withSubject(msg []byte, old, subject string) []byte {
	if old == subject {
		return msg
	}
	hdr := headerOf(msg)
	start, end := -1, -1
	for off := 0; off < len(hdr); {
		nl := bytes.Index(hdr[off:], []byte("\r\n"))
		if nl < 0 {
			break
		}
		line := hdr[off : off+nl]
		if start >= 0 {
			if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
				end = off + nl + 2
				off = end
				continue
			}
			break
		}
		if k, _, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(strings.TrimSpace(string(k)), "Subject") {
			start, end = off, off+nl+2
		}
		off += nl + 2
	}
	if start < 0 {
		return msg
	}
	field := "Subject: " + mime.QEncoding.Encode("utf-8", subject) + "\r\n"
	out := make([]byte, 0, len(msg)-(end-start)+len(field))
	out = append(out, msg[:start]...)
	out = append(out, field...)
	return append(out, msg[end:]...)
}
