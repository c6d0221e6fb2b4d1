package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// postfixTLS reads what Postfix noted of a delivery's TLS in its Received
// header: "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256
// bits))"; both empty when the session had none.
func postfixTLS(msg []byte) (version, cipher string) {
	m := regexp.MustCompile(`using (TLSv[0-9.]+) with cipher ([A-Z0-9_-]+)`).FindSubmatch(msg)
	if m == nil {
		return "", ""
	}
	return string(m[1]), string(m[2])
}

// TestSMTPRelayReportsHopTLS: the TLS each delivery reports (version,
// cipher, verified) is what the real Postfix smart host saw, with and
// without STARTTLS; the queue puts it into the stored delivered event.
func TestSMTPRelayReportsHopTLS(t *testing.T) {
	hop := testpeer.StartPostfixNextHop(t, testpeer.PostfixNextHopOptions{})
	caPEM, err := os.ReadFile(hop.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tests := []struct {
		name         string
		mode         string
		conf         *tls.Config
		requireTLS   bool
		wantTLS      bool
		wantVerified bool
	}{
		{name: "no STARTTLS (relay.tls none)", mode: "none"},
		{name: "opportunistic: encrypted, not verified", mode: "opportunistic", wantTLS: true},
		{name: "opportunistic with a trusted CA: still not verified (not checked)", mode: "opportunistic", conf: &tls.Config{RootCAs: roots}, wantTLS: true},
		{name: "required: verified", mode: "required", conf: &tls.Config{RootCAs: roots}, wantTLS: true, wantVerified: true},
		{name: "a rule requires TLS: verified", mode: "none", conf: &tls.Config{RootCAs: roots}, requireTLS: true, wantTLS: true, wantVerified: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := &SMTPRelay{Addr: hop.SMTPAddr, Hostname: "gw.test", TLS: tc.mode, TLSConf: tc.conf, Timeout: 20 * time.Second}
			defer relay.Close()
			q, el := testQueue(t, planFunc(func(rcpts []string, msg []byte) (*Plan, error) {
				return &Plan{MessageID: "<m1@org.test>", Parcels: []Parcel{{Rcpts: rcpts, Data: msg, Method: "signed", Signed: true, Rule: "r1", RequireTLS: tc.requireTLS}}}, nil
			}), relay)
			st := q.Store.(*store.Store)
			runQueue(t, q)
			marker := fmt.Sprintf("hop-tls-%d", i)
			env := &Envelope{From: "a@org.test", Recipients: toRecipients([]string{"b@ext.test"})}
			msg := "From: a@org.test\r\nTo: b@ext.test\r\nSubject: " + marker + "\r\nMessage-Id: <m1@org.test>\r\n\r\nbody\r\n"
			if err := q.Accept(context.Background(), env, strings.NewReader(msg)); err != nil {
				t.Fatal(err)
			}
			var delivered store.DeliveryEvent
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("events:\n%s", el.String())
				}
			})
			waitFor(t, "the delivered event", func() bool {
				evs, _ := st.DeliveryEvents(context.Background(), store.EventFilter{QueueID: env.ID, Outcomes: []string{events.Delivered}})
				if len(evs) == 1 {
					delivered = evs[0]
				}
				return len(evs) == 1
			})
			got := hop.WaitMessage(t, marker, 20*time.Second)
			pv, pc := postfixTLS(got)
			if delivered.TLS == "" {
				t.Fatal("the delivered event has no tls")
			}
			var rep events.TLS
			if err := json.Unmarshal([]byte(delivered.TLS), &rep); err != nil {
				t.Fatal(err)
			}
			if !tc.wantTLS {
				if pv != "" || rep.Version != "" || rep.Cipher != "" || rep.Verified {
					t.Fatalf("Postfix saw %q %q, we report %+v; want no TLS on either side", pv, pc, rep)
				}
				return
			}
			if pv == "" {
				t.Fatalf("Postfix saw no TLS:\n%s", got)
			}
			if strings.Replace(rep.Version, " ", "v", 1) != pv || rep.Cipher != pc {
				t.Fatalf("we report %q %q, Postfix saw %q %q", rep.Version, rep.Cipher, pv, pc)
			}
			if rep.Verified != tc.wantVerified {
				t.Fatalf("verified = %v, want %v", rep.Verified, tc.wantVerified)
			}
			if delivered.Method != "signed" || delivered.Rule != "r1" || !delivered.Signed || delivered.MessageID != "<m1@org.test>" || delivered.Attempt != 1 {
				t.Fatalf("delivered event: %+v", delivered)
			}
		})
	}
}

// TestSMTPRelayReportsNoTLSWhereNoneIsOffered: opportunistic TLS to a
// next hop that offers no STARTTLS delivers in plain text and says so
// ({"verified": false} without a version), rather than nothing.
func TestSMTPRelayReportsNoTLSWhereNoneIsOffered(t *testing.T) {
	sink := testpeer.StartSink(t, testpeer.SinkOptions{})
	relay := &SMTPRelay{Addr: sink.Addr, Hostname: "gw.test", TLS: "opportunistic", Timeout: 10 * time.Second}
	defer relay.Close()
	errs, hop := relay.DeliverHop(context.Background(), poolDelivery(1))
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if hop == nil || hop.Version != "" || hop.Cipher != "" || hop.Verified {
		t.Fatalf("hop %+v, want TLS without version", hop)
	}
	if got := sink.WaitMessages(t, 1, 10*time.Second); got[0].TLS {
		t.Fatal("the sink saw TLS")
	}
	// A delivery that never reached a transaction reports no hop.
	sink.Close()
	errs, hop = relay.DeliverHop(context.Background(), poolDelivery(2))
	if errs[0] == nil || hop != nil {
		t.Fatalf("to a closed sink: %v, hop %+v", errs[0], hop)
	}
}

// TestSmartHostSeesOurNameBeforeSTARTTLS: the EHLO in plain text (the one
// a smart host logs and may check) carries Hostname, not go-smtp's
// "localhost", and so does the EHLO after STARTTLS.
func TestSmartHostSeesOurNameBeforeSTARTTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvTLS := selfSigned(t)
	seen := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var got []string
		r := bufio.NewReader(c)
		readLine := func(r *bufio.Reader) string { s, _ := r.ReadString('\n'); return strings.TrimRight(s, "\r\n") }
		c.Write([]byte("220 smarthost.test ESMTP\r\n"))
		got = append(got, readLine(r))
		c.Write([]byte("250-smarthost.test\r\n250 STARTTLS\r\n"))
		got = append(got, readLine(r))
		c.Write([]byte("220 ready\r\n"))
		tc := tls.Server(c, srvTLS)
		tr := bufio.NewReader(tc)
		got = append(got, readLine(tr))
		seen <- got
	}()
	relay := &SMTPRelay{Addr: ln.Addr().String(), Hostname: "gw.example.org", TLS: "opportunistic", Timeout: 5 * time.Second, MaxIdle: -1}
	defer relay.Close()
	relay.Deliver(context.Background(), Delivery{QueueID: "q1", From: "a@example.org", Rcpts: []string{"b@partner.test"}, Data: []byte("Subject: x\r\n\r\nx\r\n")})
	got := <-seen
	want := []string{"EHLO gw.example.org", "STARTTLS", "EHLO gw.example.org"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("the smart host saw %q, want %q", got, want)
	}
}
