package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestServeCRLAfterRevoke fetches /crl from a running serve before and
// after `sealgate cert revoke` (another process) and has openssl judge
// it: signed by the chain `sealgate pki ca-cert` prints, and listing the
// revoked serial with its reason only after the revocation.
func TestServeCRLAfterRevoke(t *testing.T) {
	testpeer.Require(t, "openssl")
	g := newGateway(t, "")
	g.cli("pki", "init")
	g.cli("pki", "rollout")
	g.start()
	if g.http == "" {
		t.Fatalf("serve logged no HTTP address:\n%s", g.logText())
	}
	dir := t.TempDir()
	chain := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(chain, g.cli("pki", "ca-cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	// crlListing is openssl's verdict on /crl and its text listing.
	crlListing := func(t *testing.T, name string) string {
		t.Helper()
		resp, err := http.Get("http://" + g.http + "/crl")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		der, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /crl: %s %v", resp.Status, err)
		}
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, der, 0o600); err != nil {
			t.Fatal(err)
		}
		// openssl 3.0 prints "verify failure" and still exits 0: the words decide.
		res := testpeer.Run(t, nil, "openssl", "crl", "-inform", "DER", "-in", file, "-CAfile", chain, "-verify", "-noout", "-text")
		if res.ExitCode != 0 || !strings.Contains(string(res.Stderr), "verify OK") {
			t.Fatalf("openssl crl -verify against pki ca-cert: exit %d\n%s", res.ExitCode, res.Stderr)
		}
		return string(res.Stdout)
	}

	var revoked struct {
		Revoked []string `json:"revoked"`
	}
	before := crlListing(t, "before.der")
	if err := json.Unmarshal(g.cli("cert", "revoke", "alice@example.org", "--reason", "keyCompromise", "-o", "json"), &revoked); err != nil || len(revoked.Revoked) != 1 {
		t.Fatalf("cert revoke -o json: %v %+v", err, revoked)
	}
	serial := strings.ToUpper(revoked.Revoked[0])
	after := crlListing(t, "after.der")
	listed := func(text string) bool {
		return strings.Contains(text, "Serial Number: "+serial+"\n") || strings.Contains(text, "Serial Number: 0"+serial+"\n")
	}
	if listed(before) {
		t.Fatalf("serial %s listed before it was revoked:\n%s", serial, before)
	}
	if !listed(after) || !strings.Contains(after, "Key Compromise") {
		t.Fatalf("serial %s (keyCompromise) not on the CRL served after the revocation:\n%s", serial, after)
	}
}
