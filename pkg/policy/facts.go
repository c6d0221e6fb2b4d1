package policy

import (
	"bufio"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"sort"
)

// calendarScanLimit bounds how much of a body ReadFacts reads looking for
// a meeting request. A calendar part further in is not found, and the
// message is then encrypted like any other: the safe side.
const calendarScanLimit = 4 << 20

// maxCalendarParts bounds the parts looked at, against hostile nesting.
const maxCalendarParts = 32

// ReadFacts reads the facts the policy looks at from a message as the
// gateway received it: the header fields (RFC 2047-decoded), the From
// address as Sender, the decoded Subject, and whether it is a meeting
// request. size is the message size the gateway counted; SenderGroups are
// the directory's to fill in.
//
// A meeting request is a message whose content is text/calendar, or
// whose body is a multipart/alternative (at the top, or first inside a
// multipart/mixed) with a text/calendar alternative — Outlook's shape. An
// .ics file merely attached is not one.
func ReadFacts(r io.Reader, size int64) (Facts, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(r))
	if err != nil {
		return Facts{}, fmt.Errorf("reading the message header: %w", err)
	}
	f := Facts{Size: size}
	dec := &mime.WordDecoder{CharsetReader: passThroughCharset}
	names := make([]string, 0, len(msg.Header))
	for name := range msg.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range msg.Header[name] {
			f.Headers = append(f.Headers, Header{Name: name, Value: decodeHeader(dec, v)})
		}
	}
	f.Subject = decodeHeader(dec, msg.Header.Get("Subject"))
	if from, err := msg.Header.AddressList("From"); err == nil && len(from) > 0 {
		f.Sender = from[0].Address
	}
	f.Calendar = isMeetingRequest(msg.Header.Get("Content-Type"), io.LimitReader(msg.Body, calendarScanLimit))
	return f, nil
}

// decodeHeader decodes RFC 2047 encoded words (net/textproto has already
// unfolded the field); a value that does not decode is kept as it
// arrived, so conditions still see it.
func decodeHeader(dec *mime.WordDecoder, v string) string {
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// passThroughCharset lets charsets the standard library does not know
// through undecoded rather than failing the whole field: policy
// conditions are mostly ASCII (tags, labels) and still match.
func passThroughCharset(charset string, input io.Reader) (io.Reader, error) {
	return input, nil
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
