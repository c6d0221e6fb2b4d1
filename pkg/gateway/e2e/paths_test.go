package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Relative data_dir and relay.dir are resolved against the config file's
// directory, so `serve` and the admin commands open the same CA, store and
// spool wherever they are started from.
func TestServeResolvesPathsAgainstConfigDir(t *testing.T) {
	g := newGateway(t, "")
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte(`"`+filepath.Join(g.dir, "data")+`"`), []byte(`"./data"`), 1)
	cfg = bytes.Replace(cfg, []byte(`"`+filepath.Join(g.dir, "outbox")+`"`), []byte(`"outbox"`), 1)
	if err := os.WriteFile(g.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	g.cwd = t.TempDir() // anywhere but the config's directory
	g.start()

	swaks(t, g.addr, "alice@example.org", "bob@example.org", []string{"Subject: paths"}, "hello")
	g.waitOutbox("bob@example.org")
	for _, p := range []string{"data/ca/root.crt", "data/sealgate.db", "data/spool"} {
		if _, err := os.Stat(filepath.Join(g.dir, p)); err != nil {
			t.Errorf("%s not next to the config: %v", p, err)
		}
	}
	if entries, _ := os.ReadDir(g.cwd); len(entries) != 0 {
		t.Errorf("serve wrote into its working directory: %v", entries)
	}
	// The admin CLI, started from yet another directory, sees the same CA.
	root, err := os.ReadFile(filepath.Join(g.dir, "data/ca/root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if out := g.cli("pki", "ca-cert"); !bytes.Contains(out, bytes.TrimSpace(root)) {
		t.Errorf("pki ca-cert does not print serve's root:\n%s", out)
	}
}
