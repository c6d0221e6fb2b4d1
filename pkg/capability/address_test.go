package capability

import (
	"errors"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/directory"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/message"
)

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"bob@partner.test", true},
		{"Bob.O'Neil+tag@Mail.Partner-1.test", true},
		{"x@xn--bcher-kva.example", true},
		{"a!#$%&'*+-/?=^_`{|}~@partner.test", true},
		{strings.Repeat("a", 64) + "@partner.test", true},
		{"", false},
		{"bob", false},
		{"bob@", false},
		{"@partner.test", false},
		{"bob@localhost", false},
		{"bob@@partner.test", false},
		{"bob@evil.test@partner.test", false},
		{"bob@pаrtner.test", false},       // Cyrillic а
		{"bob＠partner.test", false},       // fullwidth at sign
		{"bob@partner.test\u200b", false}, // zero-width space
		{"bob@bücher.example", false},     // U-label: send the A-label
		{"Bob <bob@partner.test>", false},
		{"<bob@partner.test>", false},
		{`"bob"@partner.test`, false},
		{"bob(comment)@partner.test", false},
		{"bob@[127.0.0.1]", false},
		{"bob@partner.test.", false},
		{"bob@-partner.test", false},
		{"bob@partner_x.test", false},
		{".bob@partner.test", false},
		{"bob.@partner.test", false},
		{"b..ob@partner.test", false},
		{"bob@partner.test\r\nBcc: eve@evil.test", false},
		{"bob\x00@partner.test", false},
		{"bob @partner.test", false},
		{"=?utf-8?q?bob?=@partner.test", false},
		{strings.Repeat("a", 65) + "@partner.test", false},
		{"a@" + strings.Repeat("b", 64) + ".test", false},
		{"a@" + strings.Repeat("b.", 126) + "test", false}, // 256 characters
	}
	for _, tt := range tests {
		err := CheckAddress("address", tt.addr)
		if (err == nil) != tt.ok {
			t.Errorf("CheckAddress(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
			continue
		}
		var fe *FieldError
		if err != nil && (!errors.As(err, &fe) || fe.Field != "address") {
			t.Errorf("CheckAddress(%q) = %v, want a FieldError naming address", tt.addr, err)
		}
	}
}

// FuzzCheckAddress: whatever CheckAddress accepts is read as the very
// same single address by the message parser the pipeline uses and by the
// directory's normalisation, so the answer is about the address the
// caller sent and no other.
func FuzzCheckAddress(f *testing.F) {
	for _, s := range []string{"bob@partner.test", "a.b+c@x.example", "bob@pаrtner.test", "x@y", "a\"b@c.d", "=?a?b?c?=@d.e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckAddress("address", s) != nil {
			return
		}
		facts, err := gateway.FactsFor("alice@example.org", s)
		if err != nil {
			t.Fatalf("accepted %q but the message parser refuses it: %v", s, err)
		}
		if !facts.Message.VisibleOK || len(facts.Message.Visible) != 1 || !facts.Message.IsVisible(s) {
			t.Fatalf("accepted %q but the parser reads To as %v", s, facts.Message.Visible)
		}
		if facts.Sender != "alice@example.org" {
			t.Fatalf("the recipient %q changed the sender to %q", s, facts.Sender)
		}
		n, err := directory.NormalizeAddress(s)
		if err != nil || n != message.LowerASCII(s) {
			t.Fatalf("accepted %q; the directory reads %q, %v", s, n, err)
		}
	})
}

// FuzzDecodeBatch: any body either is refused with a FieldError or gives
// a sender and 1..MaxBatch recipients that CheckAddress accepts.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`{"sender":"a@b.cd","recipients":["x@y.zz"]}`,
		`{"sender":"a@b.cd","recipients":[]}`,
		`{"sender":"a@b.cd","recipients":["x@y.zz"],"sender":"e@v.il"}`,
		`{"sender":1}`, `[]`, `null`, `{"sender":"a@b.cd","recipients":null}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := decodeBatch(strings.NewReader(body))
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("refusal without a field: %v", err)
			}
			return
		}
		if CheckAddress("sender", *req.Sender) != nil || len(*req.Recipients) == 0 || len(*req.Recipients) > MaxBatch {
			t.Fatalf("accepted %q", body)
		}
		for _, r := range *req.Recipients {
			if CheckAddress("r", r) != nil {
				t.Fatalf("accepted recipient %q", r)
			}
		}
	})
}
