package main

import (
	"bytes"
	"context"
	"net/mail"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/portal"
)

// replyLinker makes the portal's reply link for one sealed message and
// recipient (*portal.Server).
type replyLinker interface {
	ReplyLink(ctx context.Context, q portal.ReplyQuery) (string, error)
}

// replyLink returns the reply link for rcpt's copy of msg, or "". Only a
// PDF sealed with the recipient's stored password gets one: the reply
// page asks for that password, which a subject password is not. A link
// that cannot be made costs the recipient the link, not the message.
func (p *pdfSealer) replyLink(ctx context.Context, res pdfmail.Resolution, sender, rcpt string, msg []byte) string {
	if p.replies == nil {
		return ""
	}
	switch res.Mode {
	case pdfmail.ModePreset, pdfmail.ModePortal, pdfmail.ModeGeneratedToSender:
	default:
		return ""
	}
	var msgID string
	if m, err := mail.ReadMessage(bytes.NewReader(msg)); err == nil {
		msgID = m.Header.Get("Message-ID")
	}
	link, err := p.replies.ReplyLink(ctx, portal.ReplyQuery{Recipient: rcpt, Sender: sender, MessageID: msgID, Subject: res.Subject})
	if err != nil {
		p.log.Warn("portal: no reply link for this PDF", "recipient", rcpt, "err", err)
		return ""
	}
	return link
}
