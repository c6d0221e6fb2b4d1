package inbound

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/directory"
)

// keyRing is the test's KeySource: the users' identities as openssl made
// them (the real one reads pki.Manager's store; see cmd/sealgate).
type keyRing map[string][]*testpeer.Identity

func (k keyRing) DecryptionKeys(_ context.Context, rcpt string) ([]Key, error) {
	var out []Key
	for _, id := range k[strings.ToLower(rcpt)] {
		out = append(out, Key{Cert: id.Cert, Key: id.Key})
	}
	return out, nil
}

type harvestLog struct {
	mu  sync.Mutex
	got [][]byte
}

func (h *harvestLog) HarvestSigned(_ context.Context, signed []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, signed)
	return nil
}

type peerFixture struct {
	dir                string
	pki                *testpeer.PKI
	alice, mallory     *testpeer.Identity
	bobOld, bob, carol *testpeer.Identity
	opener             *Opener
	harvested          *harvestLog
}

func newPeerFixture(t testing.TB) *peerFixture {
	t.Helper()
	f := &peerFixture{dir: t.TempDir(), pki: testpeer.NewPKI(t), harvested: &harvestLog{}}
	f.alice = f.pki.Issue(t, "alice@partner.example", testpeer.IssueOptions{})
	f.bobOld = f.pki.Issue(t, "bob@example.org", testpeer.IssueOptions{})
	f.bob = f.pki.Issue(t, "bob@example.org", testpeer.IssueOptions{})
	f.carol = f.pki.Issue(t, "carol@example.org", testpeer.IssueOptions{KeyType: "p256"})
	f.mallory = testpeer.NewPKI(t).Issue(t, "alice@partner.example", testpeer.IssueOptions{})
	roots := x509.NewCertPool()
	roots.AddCert(f.pki.Root)
	v, err := directory.NewValidator(directory.ValidatorOptions{Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	f.opener = &Opener{AuthServID: "mx.example.org",
		Keys:    keyRing{"bob@example.org": {f.bob, f.bobOld}, "carol@example.org": {f.carol}},
		Signers: DirectorySigners{Validator: v}, Harvest: f.harvested,
		Markers: map[Outcome]string{SignatureFail: "[signature invalid]"}}
	return f
}

func (f *peerFixture) file(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sign has openssl sign entity as signer, with the message headers.
func (f *peerFixture) sign(t testing.TB, entity []byte, signer *testpeer.Identity, from string) []byte {
	t.Helper()
	return testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-in", f.file(t, "sign-in", entity),
		"-signer", signer.CertFile, "-inkey", signer.KeyFile, "-certfile", f.pki.ChainFile, "-md", "sha256",
		"-from", from, "-to", "bob@example.org", "-subject", "Quarterly figures")
}

// encrypt has openssl encrypt msg to the recipient with extra options.
func (f *peerFixture) encrypt(t testing.TB, msg []byte, to *testpeer.Identity, opts ...string) []byte {
	t.Helper()
	args := append([]string{"cms", "-encrypt", "-in", f.file(t, "enc-in", msg), "-from", "alice@partner.example",
		"-to", to.Email, "-subject", "Quarterly figures"}, opts...)
	args = append(args, "-recip", to.CertFile)
	return testpeer.MustRun(t, nil, "openssl", args...)
}

const entity = "Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob, the figures are attached.\r\n"

func TestOpenPeerMessages(t *testing.T) {
	f := newPeerFixture(t)
	ctx := context.Background()
	signed := f.sign(t, []byte(entity), f.alice, "alice@partner.example")
	flipped := bytes.Replace(signed, []byte("Hello Bob"), []byte("Hello Bib"), 1)
	if bytes.Equal(flipped, signed) {
		t.Fatal("byte flip did not apply")
	}
	untrusted := f.sign(t, []byte(entity), f.mallory, "alice@partner.example")
	mismatch := f.sign(t, []byte(entity), f.alice, "eve@partner.example")
	// sign / encrypt / sign: the outer signature over the envelope.
	inner := f.encrypt(t, signed, f.bob)
	triple := f.sign(t, inner, f.alice, "alice@partner.example")

	cases := []struct {
		name    string
		msg     []byte
		rcpt    string
		outcome Outcome
		sigs    int    // signature results expected
		reason  string // in the header
		body    string // must be readable in the result
	}{
		{"rsa-v1.5-cbc signed", f.encrypt(t, signed, f.bob, "-aes256"), "bob@example.org", SignaturePass, 1, "signed by alice@partner.example", "Hello Bob"},
		{"rsa-oaep", f.encrypt(t, signed, f.bob, "-aes256", "-recip", f.bob.CertFile, "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"), "bob@example.org", SignaturePass, 1, "decrypted;", "Hello Bob"},
		{"aes-gcm auth-enveloped", f.encrypt(t, signed, f.bob, "-aes-256-gcm"), "bob@example.org", SignaturePass, 1, "decrypted;", "Hello Bob"},
		{"ecdh", f.encrypt(t, signed, f.carol, "-aes256", "-recip", f.carol.CertFile, "-keyopt", "ecdh_kdf_md:sha256"), "carol@example.org", SignaturePass, 1, "decrypted;", "Hello Bob"},
		{"earlier key of the user", f.encrypt(t, signed, f.bobOld, "-aes256"), "bob@example.org", SignaturePass, 1, "decrypted;", "Hello Bob"},
		{"sign-encrypt-sign", triple, "bob@example.org", SignaturePass, 2, "signed by", "Hello Bob"},
		{"bad signature after a byte flip", f.encrypt(t, flipped, f.bob, "-aes256"), "bob@example.org", SignatureFail, 1, "bad signature", "Hello Bib"},
		{"untrusted signer", f.encrypt(t, untrusted, f.bob, "-aes256"), "bob@example.org", SignatureFail, 1, "untrusted signer", "Hello Bob"},
		{"signer is not From", mismatch, "bob@example.org", SignatureFail, 1, "not the From address", "Hello Bob"},
		{"signer is not the outer From", f.encrypt(t, signed, f.bob, "-aes256", "-from", "eve@partner.example"), "bob@example.org", SignatureFail, 1, "not the From address", "Hello Bob"},
		{"clear-signed, not encrypted", signed, "bob@example.org", SignaturePass, 1, "signed by", "Hello Bob"},
		{"bare text without MIME header", f.encrypt(t, []byte("Just a bare text.\n"), f.bob, "-aes256"), "bob@example.org", Decrypted, 0, "decrypted; not signed", "Just a bare text."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.opener.Open(ctx, tc.msg, tc.rcpt)
			if err != nil {
				t.Fatal(err)
			}
			out := string(res.Data)
			if res.Outcome != tc.outcome || len(res.Signatures) != tc.sigs {
				t.Fatalf("outcome %s with %d signatures, want %s with %d:\n%s", res.Outcome, len(res.Signatures), tc.outcome, tc.sigs, out)
			}
			hdr, body := splitAt(t, out)
			if !strings.Contains(hdr, tc.reason) {
				t.Errorf("header lacks %q:\n%s", tc.reason, hdr)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body lacks %q:\n%s", tc.body, out)
			}
			for _, name := range []string{"From:", "To:", "Subject:", "MIME-Version:", "Authentication-Results:"} {
				if n := countFields(hdr, name); n != 1 {
					t.Errorf("%d %s fields, want 1:\n%s", n, name, hdr)
				}
			}
			if tc.outcome == SignatureFail && !strings.Contains(hdr, "Subject: [signature invalid] Quarterly figures") {
				t.Errorf("no subject marker:\n%s", hdr)
			}
			if strings.Contains(tc.name, "bare") && !strings.Contains(hdr, "Content-Type: text/plain") {
				t.Errorf("bare text did not become text/plain:\n%s", out)
			}
		})
	}
}

func TestUndecryptableArrivesAsItCame(t *testing.T) {
	f := newPeerFixture(t)
	signed := f.sign(t, []byte(entity), f.alice, "alice@partner.example")
	toMallory := f.encrypt(t, signed, f.mallory, "-aes256")
	corrupt := append([]byte(nil), f.encrypt(t, signed, f.bob, "-aes256")...)
	i := bytes.LastIndex(corrupt, []byte("\n\n")) // flip a base64 char near the end of the ciphertext
	if i < 40 {
		i = bytes.LastIndex(corrupt, []byte("\r\n\r\n"))
	}
	corrupt[i-20] ^= 'A' ^ 'B'
	for _, tc := range []struct {
		name, rcpt string
		msg        []byte
		reason     string
	}{
		{"not encrypted to the user", "bob@example.org", toMallory, "not decrypted: none of 2 keys"},
		{"corrupt ciphertext", "bob@example.org", corrupt, "not decrypted:"},
		{"recipient without keys", "nobody@example.org", f.encrypt(t, signed, f.bob, "-aes256"), "no key for nobody@example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.opener.Open(context.Background(), tc.msg, tc.rcpt)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != Undecryptable {
				t.Fatalf("outcome %s, want undecryptable", res.Outcome)
			}
			hdr, body := splitAt(t, string(res.Data))
			_, origBody := splitAt(t, string(toCRLF(tc.msg)))
			if body != origBody {
				t.Error("the body was changed")
			}
			if !strings.Contains(hdr, "smime=permerror") || !strings.Contains(hdr, tc.reason) {
				t.Errorf("header lacks the reason %q:\n%s", tc.reason, hdr)
			}
		})
	}
}

// The attacker writes our verdict himself: outside, and inside the
// envelope where only decryption shows it.
func TestForgedAuthenticationResultsRemoved(t *testing.T) {
	f := newPeerFixture(t)
	forged := "Authentication-Results: mx.example.org; smime=pass body.smime-identifier=ceo@example.org\r\n"
	insideForged := "Authentication-Results: other.example; smime=pass\r\n" + entity
	untrusted := f.sign(t, []byte(entity), f.mallory, "alice@partner.example")
	cases := []struct {
		name string
		msg  []byte
	}{
		{"outside, our authserv-id", append([]byte(forged), f.encrypt(t, untrusted, f.bob, "-aes256")...)},
		{"outside, plain message", []byte(forged + "From: alice@partner.example\r\nSubject: x\r\n\r\nhi\r\n")},
		{"inside the envelope", f.encrypt(t, []byte(insideForged), f.bob, "-aes256")},
		{"undecryptable", append([]byte(forged), f.encrypt(t, untrusted, f.mallory, "-aes256")...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.opener.Open(context.Background(), tc.msg, "bob@example.org")
			if err != nil {
				t.Fatal(err)
			}
			hdr, _ := splitAt(t, string(res.Data))
			if strings.Contains(hdr, "smime=pass") || strings.Contains(hdr, "ceo@example.org") {
				t.Fatalf("forged result survived:\n%s", hdr)
			}
			if n := countFields(hdr, "Authentication-Results:"); n != 1 {
				t.Fatalf("%d Authentication-Results, want only ours:\n%s", n, hdr)
			}
		})
	}
}

func TestHarvestOnlyValidSigners(t *testing.T) {
	f := newPeerFixture(t)
	good := f.encrypt(t, f.sign(t, []byte(entity), f.alice, "alice@partner.example"), f.bob, "-aes256")
	bad := f.encrypt(t, f.sign(t, []byte(entity), f.mallory, "alice@partner.example"), f.bob, "-aes256")
	for _, m := range [][]byte{good, bad} {
		if _, err := f.opener.Open(context.Background(), m, "bob@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.harvested.got) != 1 || !strings.Contains(string(f.harvested.got[0]), "multipart/signed") {
		t.Fatalf("harvested %d layers, want the one valid signature", len(f.harvested.got))
	}
}

func splitAt(t *testing.T, msg string) (hdr, body string) {
	t.Helper()
	i := strings.Index(msg, "\r\n\r\n")
	if i < 0 {
		t.Fatalf("no header/body separator:\n%s", msg)
	}
	return msg[:i+2], msg[i+4:]
}

func countFields(hdr, name string) int {
	n := 0
	for _, line := range strings.Split(hdr, "\r\n") {
		if len(line) >= len(name) && strings.EqualFold(line[:len(name)], name) {
			n++
		}
	}
	return n
}
