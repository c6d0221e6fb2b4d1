package starttls

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// scriptedMX is a one-connection SMTP server that plays script (it gets
// the plain connection and returns what it saw).
func scriptedMX(t *testing.T, script func(c net.Conn, r *bufio.Reader) []string) (addr string, seen <-chan []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		ch <- script(c, bufio.NewReader(c))
	}()
	return ln.Addr().String(), ch
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"}, DNSNames: []string{"mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func line(r *bufio.Reader) string {
	s, _ := r.ReadString('\n')
	return strings.TrimRight(s, "\r\n")
}

// TestStartTLSSaysOurName: the first EHLO, the one in plain text that any
// MX host on the internet sees, carries smtp.hostname, not go-smtp's
// "localhost"; the EHLO after STARTTLS carries it too.
func TestStartTLSSaysOurName(t *testing.T) {
	cert := selfSigned(t)
	addr, seen := scriptedMX(t, func(c net.Conn, r *bufio.Reader) []string {
		var got []string
		c.Write([]byte("220 mx.test ESMTP\r\n"))
		got = append(got, line(r))
		c.Write([]byte("250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"))
		got = append(got, line(r))
		c.Write([]byte("220 go ahead\r\n"))
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		tr := bufio.NewReader(tc)
		got = append(got, line(tr))
		tc.Write([]byte("250-mx.test\r\n250 8BITMIME\r\n"))
		got = append(got, line(tr))
		tc.Write([]byte("221 bye\r\n"))
		return got
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, st, err := Client(nc, "gw.example.org", &tls.Config{InsecureSkipVerify: true}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", st.Version)
	}
	if err := c.Hello("gw.example.org"); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	got := <-seen
	want := []string{"EHLO gw.example.org", "STARTTLS", "EHLO gw.example.org", "QUIT"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("the MX host saw %q, want %q", got, want)
	}
}

// TestStartTLSRefusesInjection: a server (or a man in the middle) that
// sends more after its "220" to STARTTLS is trying to get plain-text
// replies read as if they came over TLS; the session stops there.
func TestStartTLSRefusesInjection(t *testing.T) {
	addr, _ := scriptedMX(t, func(c net.Conn, r *bufio.Reader) []string {
		c.Write([]byte("220 mx.test ESMTP\r\n"))
		line(r)
		c.Write([]byte("250-mx.test\r\n250 STARTTLS\r\n"))
		line(r)
		c.Write([]byte("220 go ahead\r\n250 injected\r\n"))
		time.Sleep(time.Second)
		return nil
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, _, err := Client(nc, "gw.example.org", &tls.Config{InsecureSkipVerify: true}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "before the TLS handshake") {
		t.Fatalf("injected plain text after 220: %v", err)
	}
}

// TestStartTLSNotOffered: no STARTTLS keyword (a name line containing the
// word does not count) is ErrNotOffered, so the caller decides by the rule.
func TestStartTLSNotOffered(t *testing.T) {
	addr, _ := scriptedMX(t, func(c net.Conn, r *bufio.Reader) []string {
		c.Write([]byte("220 mx.test ESMTP\r\n"))
		line(r)
		c.Write([]byte("250-STARTTLS.mx.test\r\n250 SIZE 1000\r\n"))
		line(r)
		return nil
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, _, err := Client(nc, "gw.example.org", &tls.Config{InsecureSkipVerify: true}, 5*time.Second); !errors.Is(err, ErrNotOffered) {
		t.Fatalf("want ErrNotOffered, got %v", err)
	}
}
