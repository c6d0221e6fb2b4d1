package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/portal"
)

type fakeLinker struct {
	got []portal.ReplyQuery
	err error
}

func (f *fakeLinker) ReplyLink(_ context.Context, q portal.ReplyQuery) (string, error) {
	f.got = append(f.got, q)
	return "https://secure.example.test/r/x", f.err
}

// Only a PDF sealed with the recipient's stored password offers a reply
// (the page asks for that password); a subject password does not; a link
// that cannot be made leaves the PDF without one, not the message held.
func TestReplyLinkOnlyForStoredPasswords(t *testing.T) {
	msg := []byte("From: alice@example.org\r\nTo: bob@partner.example\r\nSubject: x [pw:secret-words]\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n")
	for _, tc := range []struct {
		mode string
		err  error
		want bool
	}{
		{pdfmail.ModePortal, nil, true},
		{pdfmail.ModePreset, nil, true},
		{pdfmail.ModeGeneratedToSender, nil, true},
		{pdfmail.ModeSubject, nil, false},
		{pdfmail.ModePortal, errors.New("store down"), false},
	} {
		l := &fakeLinker{err: tc.err}
		p := &pdfSealer{replies: l, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		got := p.replyLink(context.Background(), pdfmail.Resolution{Mode: tc.mode, Subject: "x"}, "alice@example.org", "bob@partner.example", msg)
		if (got != "") != tc.want {
			t.Errorf("%s (err %v): link %q, want one: %v", tc.mode, tc.err, got, tc.want)
		}
		if tc.mode != pdfmail.ModeSubject && (len(l.got) != 1 || l.got[0].MessageID != "<m1@example.org>" || l.got[0].Subject != "x" ||
			l.got[0].Sender != "alice@example.org" || l.got[0].Recipient != "bob@partner.example") {
			t.Errorf("%s: asked %+v", tc.mode, l.got)
		}
	}
	if got := (&pdfSealer{}).replyLink(context.Background(), pdfmail.Resolution{Mode: pdfmail.ModePortal}, "a@b", "c@d", msg); got != "" {
		t.Errorf("without a portal: %q", got)
	}
}
