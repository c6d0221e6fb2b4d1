package testpeer

import (
	_ "embed" // the DSN reader script
	"encoding/json"
	"testing"
)

//go:embed testdata/dsn_report.py
var dsnReportScript string

// DSNRecipient is one per-recipient block of a message/delivery-status.
type DSNRecipient struct {
	FinalRecipientType string `json:"final_recipient_type"` // "rfc822"
	FinalRecipient     string `json:"final_recipient"`
	OriginalRecipient  string `json:"original_recipient"`
	Action             string `json:"action"` // lower case
	Status             string `json:"status"`
	DiagnosticType     string `json:"diagnostic_type"` // "" when there is no Diagnostic-Code
	Diagnostic         string `json:"diagnostic"`
}

// DSNReport is a delivery status notification as Python's email package
// read it.
type DSNReport struct {
	From             string            `json:"from"`
	To               string            `json:"to"`
	Subject          string            `json:"subject"`
	AutoSubmitted    string            `json:"auto_submitted"`
	Parts            []string          `json:"parts"` // content types of the report's parts
	ReportingMTAType string            `json:"reporting_mta_type"`
	ReportingMTA     string            `json:"reporting_mta"`
	Recipients       []DSNRecipient    `json:"recipients"`
	Text             string            `json:"text"`             // the human-readable part
	OriginalHeaders  map[string]string `json:"original_headers"` // the returned header section
	OriginalBody     string            `json:"original_body"`    // what followed it; "" for headers only
}

// ReadDSN has Python 3's email package, an independent MIME parser, read
// a DSN. It fails the test when the structure RFC 3462/3464 require is
// missing (multipart/report with report-type=delivery-status, a
// message/delivery-status second part with Reporting-MTA and, per
// recipient, Final-Recipient, Action and a class.subject.detail Status)
// or the parser reports defects; the values are for the test to judge.
func ReadDSN(t testing.TB, raw []byte) DSNReport {
	t.Helper()
	res := Run(t, raw, "python3", "-c", dsnReportScript)
	if res.ExitCode != 0 {
		t.Fatalf("Python's email package refuses the DSN: %s\n%s", res.Stderr, raw)
	}
	var rep DSNReport
	if err := json.Unmarshal(res.Stdout, &rep); err != nil {
		t.Fatalf("reading the DSN reader's JSON: %v\n%s", err, res.Stdout)
	}
	return rep
}
