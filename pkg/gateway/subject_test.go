package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/policy"
)

// recordingPDF remembers what the pipeline handed to the PDF sealer.
type recordingPDF struct{ subject, msgSubject string }

func (r *recordingPDF) SealPDF(_ context.Context, _, rcpt, subject string, msg []byte) (PDFResult, error) {
	r.subject, r.msgSubject = subject, headerValue(msg, "Subject")
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

func TestWithSubject(t *testing.T) {
	tests := []struct{ name, msg, want string }{
		{"simple", "From: a\r\nSubject: old\r\nTo: b\r\n\r\nSubject: body line\r\n", "From: a\r\nSubject: new\r\nTo: b\r\n\r\nSubject: body line\r\n"},
		{"folded", "Subject: old\r\n more\r\n\tmore\r\nTo: b\r\n\r\nx", "Subject: new\r\nTo: b\r\n\r\nx"},
		{"none", "From: a\r\n\r\nSubject: x\r\n", "From: a\r\n\r\nSubject: x\r\n"},
		{"unicode", "Subject: old\r\n\r\nx", "Subject: =?utf-8?q?n=C3=BCw?=\r\n\r\nx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newSubj := "new"
			if tt.name == "unicode" {
				newSubj = "nüw"
			}
			if got := string(withSubject([]byte(tt.msg), "old", newSubj)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
