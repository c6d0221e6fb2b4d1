package pdfmail_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/pkg/pdfmail"
)

// The gateway's PDF path for one recipient: resolve the password, seal,
// send the carrier to the recipient, and only once the next hop has
// accepted it send any notification to the sender and call Announce.
func Example() {
	ctx := context.Background()
	passwords, err := pdfmail.NewPasswords([]string{pdfmail.ModeSubject}, pdfmail.PasswordDeps{SubjectTag: "[pw:"})
	if err != nil {
		panic(err)
	}
	msg := "From: alice@example.org\r\nTo: bob@partner.example\r\nSubject: Vertrag [pw:Sommer-2026]\r\n\r\nAnbei der Vertrag.\r\n"

	res, err := passwords.Resolve(ctx, pdfmail.Query{
		Sender:       "alice@example.org",
		SenderIsUser: true, // found in the user directory, not just written in From
		Recipient:    "bob@partner.example",
		Subject:      "Vertrag [pw:Sommer-2026]",
	})
	if err != nil {
		panic(err) // ErrNoPassword, ErrPasswordTooShort: hold or bounce, per policy
	}
	sealer := &pdfmail.Sealer{Language: "en", CleanSubject: passwords.CleanSubject}
	var carrier bytes.Buffer
	info, err := sealer.Seal(ctx, strings.NewReader(msg), res.Password, &carrier)
	if err != nil {
		panic(err)
	}
	fmt.Println(res) // never shows the password
	fmt.Println(info.Subject, info.Attachments)
	fmt.Println(strings.Contains(carrier.String(), "Sommer-2026"))
	// Output:
	// pdfmail.Resolution{Mode:subject Pending:false Notification:false Password:[redacted]}
	// Vertrag 0
	// false
}
