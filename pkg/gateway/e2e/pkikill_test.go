package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// TestPKIRolloutKill9 is the rollout's crash drill with a real process
// death: `sealgate pki rollout` is killed with SIGKILL while it issues,
// then run again. The rerun finishes the plan, and the store ends with
// exactly one certificate and one key per user: no duplicates, no orphan
// keys (a key committed before the kill is reused by the rerun).
//
// The kill point is deterministic: the drill build of the binary
// (cmd/sealgate/drill_hooks.go) lets the CA answer `answered` requests and
// holds the rest, so the process dies with exactly that many certificates
// and with keys committed for users the CA has not answered yet.
func TestPKIRolloutKill9(t *testing.T) {
	const users, answered, parallel = 24, 8, 4
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "data_dir = %q\n[relay]\nmode = \"dir\"\ndir = %q\n[pki]\nkey_type = \"p256\"\n[users]\nsource = \"static\"\ngroups = [\"g\"]\n",
		filepath.Join(dir, "data"), filepath.Join(dir, "outbox"))
	for i := range users {
		fmt.Fprintf(&cfg, "[[users.static]]\nemail = \"user%03d@example.org\"\ngroups = [\"g\"]\n", i)
	}
	config := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := drillBuild.get(t)
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--config", config)...).Output()
		if err != nil {
			t.Fatalf("sealgate %v: %v\n%s%s", args, err, out, stderrOf(err))
		}
		return out
	}
	run("pki", "init")
	var statusErr error
	active := func() int {
		out, err := exec.Command(bin, "pki", "status", "-o", "json", "--config", config).Output()
		if err != nil {
			statusErr = fmt.Errorf("pki status: %w: %s", err, stderrOf(err))
			return 0
		}
		var rows []struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal(out, &rows); err != nil {
			statusErr = fmt.Errorf("pki status: decoding %q: %w", out, err)
			return 0
		}
		n := 0
		for _, r := range rows {
			if r.State == "active" {
				n++
			}
		}
		return n
	}
	if n := active(); n != 0 || statusErr != nil { // also creates the schema
		t.Fatalf("before the rollout: %d active, %v", n, statusErr)
	}

	blocked := filepath.Join(dir, "ca-holds-requests")
	rollout := exec.Command(bin, "pki", "rollout", "--parallel", fmt.Sprint(parallel), "--config", config)
	rollout.Env = append(os.Environ(), fmt.Sprintf("SEALGATE_DRILL_ISSUE_BLOCK_AFTER=%d", answered), "SEALGATE_DRILL_BLOCKED_FILE="+blocked)
	var rolloutOut strings.Builder
	rollout.Stdout, rollout.Stderr = &rolloutOut, &rolloutOut
	if err := rollout.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- rollout.Wait() }()
	t.Cleanup(func() { rollout.Process.Kill() })
	// The kill point: the CA holds a request (its key is committed) and
	// the answered users' certificates are recorded.
	waitUntil(t, 2*time.Minute, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the rollout ended before the kill (%v):\n%s", err, rolloutOut.String())
		default:
		}
		_, err := os.Stat(blocked)
		return err == nil && active() == answered
	}, func() string {
		return fmt.Sprintf("the rollout did not reach %d certificates and a held request (last pki status error: %v):\n%s", answered, statusErr, rolloutOut.String())
	})
	if err := rollout.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-exited

	certs, keys := storeCounts(t, dir)
	if len(certs) != answered || len(keys) <= answered || len(keys) > answered+parallel {
		t.Fatalf("killed with %d certificates and %d user keys, want %d and %d..%d (keys waiting for the CA)",
			len(certs), len(keys), answered, answered+1, answered+parallel)
	}
	t.Logf("killed with %d certificates and %d keys", len(certs), len(keys))

	dec := json.NewDecoder(strings.NewReader(string(run("pki", "rollout", "-o", "json"))))
	dec.DisallowUnknownFields()
	var res pki.Result
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("rerun output: %v", err)
	}
	if want := (pki.Result{Issued: users - answered, Unchanged: answered, Errors: []pki.StepError{}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("rerun: %+v, want %+v", res, want)
	}

	// The store itself: one active certificate, one certificate in all,
	// and one key per user; the keys of the held requests were reused.
	certs, keysAfter := storeCounts(t, dir)
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
	if len(keysAfter) != users {
		t.Fatalf("%d user keys for %d users: orphans or missing keys", len(keysAfter), users)
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, "/1") {
			t.Errorf("key %s left by the killed run is not its user's first", k)
		}
	}
}

// storeCounts opens the store of a stopped sealgate and lists its
// certificates and user key ids.
func storeCounts(t *testing.T, dir string) ([]store.Certificate, []string) {
	t.Helper()
	ctx := context.Background()
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{Driver: "sqlite", Path: filepath.Join(dir, "data", "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	certs, err := st.Certificates(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.KeyIDs(ctx, "user/")
	if err != nil {
		t.Fatal(err)
	}
	return certs, keys
}

// stderrOf is what a failed command wrote to stderr.
func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
