package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// TestPKIRolloutKill9 is the rollout's crash drill with a real process
// death: `sealgate pki rollout` is killed with SIGKILL while it issues,
// then run again. The rerun finishes the plan, and the store ends with
// exactly one certificate and one key per user: no duplicates, no orphan
// keys (a key committed before the kill is reused by the rerun).
func TestPKIRolloutKill9(t *testing.T) {
	const users = 120
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "data_dir = %q\n[relay]\nmode = \"dir\"\ndir = %q\n[pki]\nkey_type = \"rsa2048\"\n[users]\nsource = \"static\"\ngroups = [\"g\"]\n",
		filepath.Join(dir, "data"), filepath.Join(dir, "outbox"))
	for i := range users {
		fmt.Fprintf(&cfg, "[[users.static]]\nemail = \"user%03d@example.org\"\ngroups = [\"g\"]\n", i)
	}
	config := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := sealgateBinary(t)
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--config", config)...).CombinedOutput()
		if err != nil {
			t.Fatalf("sealgate %v: %v\n%s", args, err, out)
		}
		return out
	}
	run("pki", "init")
	var statusErr string
	active := func() int {
		out, err := exec.Command(bin, "pki", "status", "-o", "json", "--config", config).Output()
		if err != nil {
			statusErr = err.Error()
			if ee, ok := err.(*exec.ExitError); ok {
				statusErr += ": " + string(ee.Stderr)
			}
			return 0
		}
		var rows []struct {
			State string `json:"state"`
		}
		json.Unmarshal(out, &rows)
		n := 0
		for _, r := range rows {
			if r.State == "active" {
				n++
			}
		}
		return n
	}

	if n := active(); n != 0 || statusErr != "" { // also creates the schema
		t.Fatalf("before the rollout: %d active, %s", n, statusErr)
	}
	rollout := exec.Command(bin, "pki", "rollout", "--config", config)
	var rolloutOut strings.Builder
	rollout.Stdout, rollout.Stderr = &rolloutOut, &rolloutOut
	if err := rollout.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- rollout.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for active() < users/6 {
		select {
		case err := <-exited:
			t.Fatalf("the rollout ended before the kill (%v):\n%s", err, rolloutOut.String())
		default:
		}
		if time.Now().After(deadline) {
			rollout.Process.Kill()
			t.Fatalf("the rollout recorded no certificates in 2 minutes (last pki status error: %s)", statusErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rollout.Process.Kill() // SIGKILL
	<-exited
	before := active()
	if before >= users {
		t.Fatalf("the rollout finished (%d users) before the kill; the drill needs more users", before)
	}
	t.Logf("killed with %d of %d users done", before, users)

	var res map[string]any
	if err := json.Unmarshal(run("pki", "rollout", "-o", "json"), &res); err != nil {
		t.Fatal(err)
	}
	if res["failed"].(float64) != 0 || int(res["issued"].(float64))+int(res["unchanged"].(float64)) != users {
		t.Fatalf("rerun: %v", res)
	}

	// The store itself: one active certificate, one certificate in all,
	// and one key per user.
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: filepath.Join(dir, "data", "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	certs, err := st.Certificates(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	perUser := map[string]int{}
	for _, c := range certs {
		if c.State != store.CertActive {
			t.Errorf("%s: certificate %s is %s", c.Email, c.Serial, c.State)
		}
		perUser[c.Email]++
	}
	if len(perUser) != users || len(certs) != users {
		t.Fatalf("%d certificates for %d users, want one each for %d", len(certs), len(perUser), users)
	}
	keys, err := st.KeyIDs(context.Background(), "user/")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != users {
		t.Fatalf("%d user keys for %d users: orphans or missing keys", len(keys), users)
	}
}
