package message

import (
	"fmt"
	"strings"
	"testing"
)

// exchangeHeader is a header as Exchange hands one over: Received chain,
// Microsoft's X- fields, Thread-Topic, 25 recipients.
func exchangeHeader() []byte {
	var b strings.Builder
	for i := range 6 {
		fmt.Fprintf(&b, "Received: from EX%02d.corp.example.org (10.1.2.%d) by EX%02d.corp.example.org\r\n (10.1.2.%d) with Microsoft SMTP Server (version=TLS1_2,\r\n cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1544.4; Wed, 2 Dec 2026\r\n 09:00:0%d +0100\r\n", i, i, i+1, i+1, i)
	}
	var rcpts []string
	for i := range 25 {
		rcpts = append(rcpts, fmt.Sprintf("\"Partner %d\" <p%d@partner.example>", i, i))
	}
	b.WriteString("From: \"Alice Example\" <alice@example.org>\r\nTo: " + strings.Join(rcpts, ",\r\n ") + "\r\n")
	b.WriteString("Subject: =?utf-8?q?[secure]_Angebot_f=C3=BCr_Q4?=\r\nThread-Topic: [secure] Angebot =?utf-8?q?f=C3=BCr?= Q4\r\nThread-Index: AQHbRk9vZ3+abcdefghijklmnopqrstuvw==\r\n")
	b.WriteString("Date: Wed, 2 Dec 2026 09:00:00 +0100\r\nMessage-ID: <abc123@EX01.corp.example.org>\r\nAccept-Language: de-DE, en-US\r\nContent-Language: de-DE\r\n")
	for i := range 12 {
		fmt.Fprintf(&b, "X-MS-Exchange-Organization-Field%d: value %d\r\n", i, i)
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"_004_abc_\"\r\n\r\n")
	return []byte(b.String())
}

func BenchmarkParseHeaderExchange(b *testing.B) {
	raw := exchangeHeader()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(raw); err != nil {
			b.Fatal(err)
		}
	}
}
