package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestPostfixRelaysThroughSealgate: Postfix as the sending MTA (the
// Exchange role) relays over STARTTLS with AUTH through sealgate to a sink.
func TestPostfixRelaysThroughSealgate(t *testing.T) {
	sink := testpeer.StartSink(t, testpeer.SinkOptions{})
	g, carol := newRelayGateway(t)
	g.editConfig(`mode = "dir"`, fmt.Sprintf("mode = \"smarthost\"\nsmarthost = %q\ntls = \"none\"", sink.Addr))
	g.start()

	pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{RelayHost: g.addr, TLSEncrypt: true, User: relayUser, Password: relayPassword})
	testpeer.MustRun(t, nil, "swaks", "--server", pf.SMTPAddr, "--from", "alice@example.org", "--to", "carol@partner.test",
		"--header", "Subject: via postfix", "--body", "relayed secret", "--hide-all")
	testpeer.MustRun(t, nil, "swaks", "--server", pf.SMTPAddr, "--from", "alice@example.org", "--to", "bob@example.org",
		"--header", "Subject: internal via postfix", "--body", "internal text", "--hide-all")

	deadline := time.Now().Add(60 * time.Second)
	for len(sink.Messages()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("sink got %d messages\npostfix log:\n%s\nsealgate log:\n%s", len(sink.Messages()), pf.Log(), g.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range sink.Messages() {
		if !bytes.Contains(m.Data, []byte("with ESMTPSA id")) {
			t.Errorf("no TLS+AUTH trace from Postfix to sealgate in:\n%s", m.Data[:min(len(m.Data), 600)])
		}
		switch {
		case m.HasRcpt("carol@partner.test"):
			if bytes.Contains(m.Data, []byte("relayed secret")) {
				t.Fatal("body readable")
			}
			f := filepath.Join(t.TempDir(), "enc.eml")
			os.WriteFile(f, m.Data, 0o600)
			dec := testpeer.MustRun(t, nil, "openssl", "cms", "-decrypt", "-in", f, "-recip", carol.CertFile, "-inkey", carol.KeyFile)
			if !bytes.Contains(dec, []byte("relayed secret")) {
				t.Fatalf("decrypted: %s", dec)
			}
		case m.HasRcpt("bob@example.org"):
			if !bytes.Contains(m.Data, []byte("internal text")) {
				t.Fatal("internal mail changed")
			}
		}
	}
}
