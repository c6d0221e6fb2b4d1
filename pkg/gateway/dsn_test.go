package gateway

import (
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestDSNFieldsCannotBeInjected plays the parties whose words end up in a
// bounce: the next hop writes the diagnostic (its SMTP reply), the client
// the ORCPT and ENVID (xtext, in which +0D+0A is a line break). A line
// break in any of them must not add a field or a recipient block that a
// mail client would believe (say "Action: delivered" or a second,
// invented recipient); Python's email package reads the result.
func TestDSNFieldsCannotBeInjected(t *testing.T) {
	const inject = "\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\nFinal-Recipient: rfc822; invented@ext.test\r\nAction: delivered\r\nStatus: 2.0.0"
	header := []byte("From: a@org.test\r\nSubject: numbers\r\n")
	tests := []struct {
		name  string
		envID string
		orcpt string
		diag  string
	}{
		{name: "control", diag: "550 5.1.1 no such user"},
		{name: "diagnostic from the next hop", diag: "550 5.1.1 no such user" + inject},
		{name: "diagnostic with bare line feeds", diag: "550 5.1.1 no such user\nAction: delivered\n\nFinal-Recipient: rfc822; invented@ext.test\nAction: delivered\nStatus: 2.0.0"},
		{name: "ORCPT from the client", orcpt: "gone@ext.test" + inject, diag: "550 5.1.1 no such user"},
		{name: "ENVID from the client", envID: "E1" + inject, diag: "550 5.1.1 no such user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := &Envelope{From: "a@org.test", EnvID: tc.envID, Received: time.Now(),
				Recipients: []Recipient{{Addr: "gone@ext.test", ORcpt: tc.orcpt}}}
			raw := BuildDSN(DSNInput{Hostname: "gw.test", Envelope: env, Failed: map[string]string{"gone@ext.test": tc.diag}, Header: header})
			rep := testpeer.ReadDSN(t, raw)
			if len(rep.Recipients) != 1 {
				t.Fatalf("%d recipient blocks, want 1: %+v", len(rep.Recipients), rep.Recipients)
			}
			r := rep.Recipients[0]
			if r.FinalRecipient != "gone@ext.test" || r.Action != "failed" || r.Status != "5.1.1" || r.DiagnosticType != "smtp" {
				t.Fatalf("recipient %+v, want gone@ext.test failed 5.1.1 (smtp)", r)
			}
			if rep.OriginalHeaders["Subject"] != "numbers" || len(rep.OriginalHeaders) != 2 {
				t.Fatalf("returned header %v", rep.OriginalHeaders)
			}
		})
	}
}
