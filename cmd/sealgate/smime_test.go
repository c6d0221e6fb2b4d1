package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

const cliMsg = "From: alice@example.org\nTo: bob@partner.test\nSubject: cli\n\nHello from the CLI.\n"

func TestSMIMECommands(t *testing.T) {
	pki := testpeer.NewPKI(t)
	alice := pki.Issue(t, "alice@example.org", testpeer.IssueOptions{})
	bob := pki.Issue(t, "bob@partner.test", testpeer.IssueOptions{KeyType: "p256"})
	dir := t.TempDir()

	code, signed, stderr := runCLIInput(t, []byte(cliMsg), "smime", "sign", "--cert", alice.CertFile, "--key", alice.KeyFile, "--chain", pki.ChainFile)
	if code != 0 {
		t.Fatalf("sign: exit %d: %s", code, stderr)
	}
	in := testpeer.WriteFile(t, dir, "signed.eml", signed)
	r := testpeer.Run(t, nil, "openssl", "cms", "-verify", "-in", in, "-CAfile", pki.RootFile, "-purpose", "smimesign")
	if r.ExitCode != 0 {
		t.Fatalf("openssl rejects CLI signature: %s", r.Stderr)
	}

	t.Run("verify-good", func(t *testing.T) {
		code, out, stderr := runCLIInput(t, signed, "smime", "verify", "--ca", pki.RootFile)
		if code != 0 || !strings.Contains(string(out), "Good signature from alice@example.org") {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
		code, out, _ = runCLIInput(t, signed, "-o", "json", "smime", "verify", "--ca", pki.RootFile)
		var res map[string]any
		if code != 0 || json.Unmarshal(out, &res) != nil || res["signer"] != "alice@example.org" {
			t.Fatalf("json: exit %d %s", code, out)
		}
	})
	t.Run("verify-bad-exit-1", func(t *testing.T) {
		bad := bytes.Replace(signed, []byte("Hello"), []byte("Jello"), 1)
		code, _, stderr := runCLIInput(t, bad, "smime", "verify", "--ca", pki.RootFile)
		if code != 1 || !strings.Contains(string(stderr), "bad signature") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
	t.Run("encrypt-decrypt", func(t *testing.T) {
		code, enc, stderr := runCLIInput(t, signed, "smime", "encrypt", "--recipient-cert", bob.CertFile, "--recipient-cert", alice.CertFile)
		if code != 0 {
			t.Fatalf("encrypt: exit %d: %s", code, stderr)
		}
		encFile := testpeer.WriteFile(t, dir, "enc.eml", enc)
		plain := testpeer.MustRun(t, nil, "openssl", "cms", "-decrypt", "-in", encFile, "-recip", alice.CertFile, "-inkey", alice.KeyFile)
		if !bytes.Contains(plain, []byte("Hello from the CLI.")) {
			t.Fatalf("openssl decrypted:\n%s", plain)
		}
		code, dec, stderr := runCLIInput(t, enc, "smime", "decrypt", "--cert", bob.CertFile, "--key", bob.KeyFile)
		if code != 0 || !bytes.Contains(dec, []byte("Hello from the CLI.")) {
			t.Fatalf("decrypt: exit %d: %s", code, stderr)
		}
		code, _, stderr = runCLIInput(t, enc, "smime", "decrypt", "--cert", pki.InterFile, "--key", alice.KeyFile)
		if code != 1 || !strings.Contains(string(stderr), "not encrypted for this certificate") {
			t.Fatalf("wrong cert: exit %d: %s", code, stderr)
		}
	})
	t.Run("usage-errors-exit-2", func(t *testing.T) {
		for _, args := range [][]string{
			{"smime", "sign", "--cert", alice.CertFile},
			{"smime", "encrypt"},
			{"smime", "sign", "--cert", filepath.Join(dir, "missing.pem"), "--key", alice.KeyFile},
			{"smime", "encrypt", "--recipient-cert", bob.CertFile, "--cipher", "rc2"},
		} {
			if code, _, stderr := runCLIInput(t, []byte(cliMsg), args...); code != 2 {
				t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
			}
		}
	})
}
