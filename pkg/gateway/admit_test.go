package gateway

import (
	"strings"
	"testing"
)

// TestAdmissionAtData plays a sender whose header one reader would see
// one way and another reader another way: each is refused at the end of
// DATA with the exact code, and nothing stays in the spool (issue #12
// item 4: a header net/mail could not parse switched off the header rules
// and the catch-all decided).
func TestAdmissionAtData(t *testing.T) {
	q, _ := testQueue(t, passAll{}, &recordingRelay{})
	q.Admit = HeaderAdmission{}
	runQueue(t, q)
	addr := startListener(t, ListenerConfig{TLS: selfSigned(t), MaxMessageBytes: 4 << 20}, q)
	big := "X-Big: a" + strings.Repeat("\r\n "+strings.Repeat("a", 998), 1100) + "\r\n"
	for _, tc := range []struct {
		name, header, want string
	}{
		{"line without colon", "From: alice@org.test\r\nX-Classification: Confidential\r\nnot a field\r\n", "554 5.6.0 Refused, the message cannot be read unambiguously: header line 3: "},
		{"two From", "From: alice@org.test\r\nFrom: ceo@org.test\r\n", "554 5.6.0 Refused, the message cannot be read unambiguously: header line 2: From: occurs a second time; it may occur only once (first at line 1)"},
		{"two Subject", "From: alice@org.test\r\nSubject: [secure] a\r\nSubject: b\r\n", "554 5.6.0 "},
		{"two Content-Type", "From: alice@org.test\r\nContent-Type: text/plain\r\nContent-Type: application/pkcs7-mime\r\n", "554 5.6.0 "},
		{"no From", "Subject: hi\r\n", "554 5.6.0 "},
		{"two authors", "From: alice@org.test, ceo@org.test\r\n", "554 5.6.0 "},
		{"display name shows CEO", "From: \"ceo@org.test\" <alice@org.test>\r\n", "550 5.7.1 "},
		{"encoded display name", "From: =?utf-8?q?ceo=40org=2Etest?= <alice@org.test>\r\n", "550 5.7.1 "},
		{"huge header", "From: alice@org.test\r\n" + big, "552 5.3.4 "},
		{"well-formed", "From: \"Alice\" <alice@org.test>\r\nTo: b@ext.test\r\nSubject: hi\r\n", "250 2.0.0 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := q.Spool.IDs()
			rep := converse(t, addr, "EHLO client.test\r\n", "MAIL FROM:<alice@org.test>\r\n", "RCPT TO:<b@ext.test>\r\n",
				"DATA\r\n", tc.header+"\r\nbody\r\n.\r\n", "QUIT\r\n")
			if len(rep) < 6 || !strings.HasPrefix(rep[5], tc.want) {
				t.Fatalf("end of DATA: %q, want %q", rep[len(rep)-2], tc.want)
			}
			after, _ := q.Spool.IDs()
			if !strings.HasPrefix(tc.want, "250") && len(after) > len(before) {
				t.Errorf("a refused message stayed in the spool: %v", after)
			}
		})
	}
}
