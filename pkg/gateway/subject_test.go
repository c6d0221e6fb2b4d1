package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/policy"
)

// recordingPDF remembers what the pipeline handed to the PDF sealer.
type recordingPDF struct{ subject, msgSubject string }

func (r *recordingPDF) SealPDF(_ context.Context, _, rcpt, subject string, msg []byte) (PDFResult, error) {
	r.subject = subject
	if m, err := message.Parse(msg); err == nil {
		r.msgSubject = m.Subject
	}
	return PDFResult{Carrier: []byte("Subject: carrier\r\n\r\nPDF")}, nil
}

func TestPipelineCleansOutgoingSubject(t *testing.T) {
	tag, err := pdfmail.NewSubjectTag("[pw:")
	if err != nil {
		t.Fatal(err)
	}
	clean := func(s string) string { _, c := tag.Extract(s); return c }
	secure := Decision{Rule: "secure-subject", Action: ActionDeliver, Method: MethodSMIME, Fallback: MethodPDF, MustEncrypt: true, StripSubjectTag: "[secure]"}
	signedOnly := Decision{Rule: "default", Action: ActionDeliver, Method: MethodNone}
	internal := Decision{Rule: "internal", Action: ActionPass}
	const subject = "[secure] Offer [pw:Open-Sesame-42]"
	msg := []byte("From: alice@org.test\r\nSubject: " + subject + "\r\n\tcontinued\r\nTo: x@ext.test\r\n\r\nbody\r\n")

	pdf := &recordingPDF{}
	p := &Pipeline{Hostname: "gw.test", Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}, PDF: pdf,
		CleanSubject: clean, StripTag: policy.StripTag,
		Finder:  fakeFinder{certs: map[string]string{"c@ext.test": "C"}},
		Decider: fakeDecider{"c@ext.test": secure, "p@ext.test": secure, "s@ext.test": signedOnly, "bob@org.test": internal}}
	plan, err := p.Process(context.Background(), &Envelope{From: "alice@org.test"}, []string{"c@ext.test", "p@ext.test", "s@ext.test", "bob@org.test"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Held)+len(plan.Bounced) != 0 {
		t.Fatalf("held %v bounced %v", plan.Held, plan.Bounced)
	}
	for _, parcel := range plan.Parcels {
		data := string(parcel.Data)
		switch parcel.Method {
		case "passthrough":
			// Internal mail is passed through untouched.
			if !strings.Contains(data, "Subject: "+subject+"\r\n\tcontinued\r\n") {
				t.Errorf("internal copy was changed:\n%s", data)
			}
		case "pdf":
		default:
			if strings.Contains(data, "Open-Sesame-42") || strings.Contains(data, "[secure]") {
				t.Errorf("%s copy leaks a subject tag:\n%s", parcel.Method, data)
			}
			// The folded continuation is part of the subject and stays.
			if parcel.Method == "signed" && !strings.Contains(data, "Subject: Offer continued\r\nTo:") {
				t.Errorf("%s copy lost its subject:\n%s", parcel.Method, data)
			}
		}
	}
	// The PDF sealer still reads the password from the original subject,
	// and seals the message with the cleaned one (with attach_original
	// the message itself goes into the PDF).
	if !strings.Contains(pdf.subject, "[pw:Open-Sesame-42]") {
		t.Errorf("PDF sealer got subject %q, want the password tag", pdf.subject)
	}
	if strings.Contains(pdf.msgSubject, "[secure]") || strings.Contains(pdf.msgSubject, "Open-Sesame-42") {
		t.Errorf("PDF sealer's message still has a tag: %q", pdf.msgSubject)
	}
}

// The password and the policy tag are removed from every field that
// carries the subject (Exchange's Thread-Topic), encoded words included;
// a password written into a field that is never rewritten holds the copy
// (issue #12 item 5).
func TestPipelineCleansEveryCarrier(t *testing.T) {
	tag, err := pdfmail.NewSubjectTag("[pw:")
	if err != nil {
		t.Fatal(err)
	}
	clean := func(s string) string { _, c := tag.Extract(s); return c }
	password := func(s string) string { pw, _ := tag.Extract(s); return pw }
	secure := Decision{Rule: "secure-subject", Action: ActionDeliver, Method: MethodSMIME, Fallback: MethodPDF, MustEncrypt: true, StripSubjectTag: "[secure]"}
	signedOnly := Decision{Rule: "default", Action: ActionDeliver, Method: MethodNone}
	newPipeline := func() *Pipeline {
		return &Pipeline{Hostname: "gw.test", Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}, PDF: &recordingPDF{},
			CleanSubject: clean, StripTag: policy.StripTag, SubjectPassword: password,
			Finder:  fakeFinder{certs: map[string]string{"c@ext.test": "C"}},
			Decider: fakeDecider{"c@ext.test": secure, "s@ext.test": signedOnly}}
	}
	for _, tc := range []struct {
		name, header string
		wantHeld     bool
	}{
		{"thread-topic", "Subject: [secure] Offer [pw:Open-Sesame-42]\r\nThread-Topic: [secure] Offer [pw:Open-Sesame-42]\r\n", false},
		{"encoded words", "Subject: =?utf-8?q?=5Bsecure=5D_Offer_=5Bpw=3AOpen-Sesame-42=5D?=\r\nThread-Topic: =?utf-8?b?W3NlY3VyZV0gT2ZmZXIgW3B3Ok9wZW4tU2VzYW1lLTQyXQ==?=\r\n", false},
		{"x-field", "Subject: [secure] Offer [pw:Open-Sesame-42]\r\nX-Original-Subject: [pw:Open-Sesame-42]\r\n", false},
		{"structured field", "Subject: [secure] Offer [pw:Open-Sesame-42]\r\nReply-To: \"Open-Sesame-42\" <a@org.test>\r\n", true},
		{"written twice", "Subject: [secure] Offer [pw:Open-Sesame-42] Open-Sesame-42\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte("From: alice@org.test\r\nTo: c@ext.test, s@ext.test\r\n" + tc.header + "\r\nbody\r\n")
			plan, err := newPipeline().Process(context.Background(), &Envelope{From: "alice@org.test"}, []string{"c@ext.test", "s@ext.test"}, msg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantHeld {
				if len(plan.Parcels) != 0 || !strings.Contains(plan.Held["c@ext.test"], "PDF password") || !strings.Contains(plan.Held["s@ext.test"], "PDF password") {
					t.Fatalf("want both held for the password, got parcels %d held %v", len(plan.Parcels), plan.Held)
				}
				return
			}
			if len(plan.Parcels) != 2 {
				t.Fatalf("parcels %d held %v", len(plan.Parcels), plan.Held)
			}
			for _, parcel := range plan.Parcels {
				data := string(parcel.Data)
				for _, secret := range []string{"Open-Sesame-42", "T3Blbi1TZXNhbWUtNDI", "[secure]", "=5Bsecure"} {
					if strings.Contains(data, secret) {
						t.Errorf("%s copy carries %q:\n%s", parcel.Method, secret, data)
					}
				}
			}
		})
	}
}
