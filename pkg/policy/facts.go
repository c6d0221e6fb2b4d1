package policy

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"sort"

	"github.com/sealgate/sealgate/pkg/message"
)

// calendarScanLimit bounds how much of a body ReadFacts reads looking for
// a meeting request. A calendar part further in is not found, and the
// message is then encrypted like any other: the safe side.
const calendarScanLimit = 4 << 20

// maxCalendarParts bounds the parts looked at, against hostile nesting.
const maxCalendarParts = 32

// ReadFacts reads the facts the policy looks at from a message as the
// gateway received it (see FactsOf). size is the message size the gateway
// counted; SenderGroups are the directory's to fill in. A message that
// cannot be read unambiguously (pkg/message) is an error: no rule is
// decided on a header that readers may see differently.
func ReadFacts(r io.Reader, size int64) (Facts, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return Facts{}, fmt.Errorf("reading the message: %w", err)
	}
	m, err := message.Parse(raw)
	if err != nil {
		return Facts{}, fmt.Errorf("reading the message header: %w", err)
	}
	f := FactsOf(m)
	f.Size = size
	return f, nil
}

// FactsOf reads the policy's facts from a parsed message: the header
// fields (RFC 2047-decoded, sorted by name), the From address as Sender,
// the decoded Subject, the size, and whether it is a meeting request.
//
// A meeting request is a message whose content is text/calendar, or
// whose body is a multipart/alternative (at the top, or first inside a
// multipart/mixed) with a text/calendar alternative — Outlook's shape. An
// .ics file merely attached is not one.
func FactsOf(m *message.Message) Facts {
	f := Facts{Size: int64(len(m.Raw)), Subject: m.Subject, Sender: m.From.Lower()}
	f.Headers = make([]Header, 0, len(m.Fields))
	for _, fl := range m.Fields {
		f.Headers = append(f.Headers, Header{Name: fl.Name, Value: fl.Decoded})
	}
	sort.SliceStable(f.Headers, func(i, j int) bool { return f.Headers[i].Name < f.Headers[j].Name })
	ct := m.Get("Content-Type")
	if m.ContentTypeErr != nil {
		ct = ""
	}
	f.Calendar = isMeetingRequest(ct, io.LimitReader(m.BodyReader(), calendarScanLimit))
	return f
}

// isMeetingRequest looks at the MIME structure for a calendar alternative.
func isMeetingRequest(contentType string, body io.Reader) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case "text/calendar":
		return true
	case "multipart/alternative":
		return hasCalendarAlternative(params["boundary"], body)
	case "multipart/mixed":
		if params["boundary"] == "" {
			return false
		}
		mr := multipart.NewReader(body, params["boundary"])
		p, err := mr.NextPart()
		if err != nil {
			return false
		}
		mt, params, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			return false
		}
		switch mt {
		case "text/calendar":
			return true
		case "multipart/alternative":
			return hasCalendarAlternative(params["boundary"], p)
		}
	}
	return false
}

// hasCalendarAlternative reports whether one of the alternatives is
// text/calendar.
func hasCalendarAlternative(boundary string, body io.Reader) bool {
	if boundary == "" {
		return false
	}
	mr := multipart.NewReader(body, boundary)
	for i := 0; i < maxCalendarParts; i++ {
		p, err := mr.NextPart()
		if err != nil {
			return false
		}
		if mt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type")); err == nil && mt == "text/calendar" {
			return true
		}
	}
	return false
}
