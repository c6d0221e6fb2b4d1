// Package packaging holds the Debian package's files (debian/, the
// systemd unit); its test builds the package with scripts/build-deb.sh,
// installs it with dpkg, checks the result, and purges it again.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestDebianPackage: the .deb installs with dpkg, creates the sealgate
// user and /var/lib/sealgate (0700, owned by it), ships the config as a
// conffile readable by root and the sealgate group only, and a unit that
// systemd-analyze verifies, with the hardening the issue asks for; the
// installed config passes `sealgate config check` as the service user;
// purge removes the user (the data directory stays: it holds the CA).
func TestDebianPackage(t *testing.T) {
	for _, p := range []string{"dpkg-deb", "dpkg", "systemd-analyze", "adduser"} {
		testpeer.Require(t, p)
	}
	if os.Geteuid() != 0 {
		if testpeer.InCI() {
			t.Fatal("installing the package needs root")
		}
		t.Skip("installing the package needs root")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "sealgate").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Skip("a sealgate package is installed on this machine; not replacing it") // never in CI (fresh machine)
	}
	out := t.TempDir()
	build := exec.Command("bash", "../scripts/build-deb.sh", "0.0.1+test", out)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b[strings.LastIndexByte(strings.TrimSpace(string(b)), '\n')+1:]))
	contents := string(testpeer.MustRun(t, nil, "dpkg-deb", "--contents", deb))
	for _, f := range []string{"./usr/bin/sealgate", "./etc/sealgate/sealgate.toml", "./lib/systemd/system/sealgate.service"} {
		if !strings.Contains(contents, f+"\n") {
			t.Errorf("the package lacks %s:\n%s", f, contents)
		}
	}
	if info := string(testpeer.MustRun(t, nil, "dpkg-deb", "--info", deb)); !strings.Contains(info, "conffiles") {
		t.Errorf("no conffiles in the control archive:\n%s", info)
	}

	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "sealgate").Run()
		os.RemoveAll("/var/lib/sealgate")
	})
	testpeer.MustRun(t, nil, "dpkg", "-i", deb)

	if u := string(testpeer.MustRun(t, nil, "getent", "passwd", "sealgate")); !strings.Contains(u, "/usr/sbin/nologin") {
		t.Errorf("the sealgate user: %s", u)
	}
	for _, tc := range []struct{ path, want string }{
		{"/var/lib/sealgate", "700 sealgate sealgate"},
		{"/etc/sealgate/sealgate.toml", "640 root sealgate"},
		{"/usr/bin/sealgate", "755 root root"},
	} {
		if got := strings.TrimSpace(string(testpeer.MustRun(t, nil, "stat", "-c", "%a %U %G", tc.path))); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.path, got, tc.want)
		}
	}
	if r := testpeer.Run(t, nil, "systemd-analyze", "verify", "/lib/systemd/system/sealgate.service"); r.ExitCode != 0 || len(strings.TrimSpace(string(r.Stderr))) > 0 {
		t.Errorf("systemd-analyze verify: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	unit, _ := os.ReadFile("/lib/systemd/system/sealgate.service")
	for _, line := range []string{"Type=notify", "User=sealgate", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "PrivateTmp=yes", "ReadWritePaths=/var/lib/sealgate", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), "\n"+line+"\n") {
			t.Errorf("the unit lacks %s", line)
		}
	}
	check := exec.Command("su", "-s", "/bin/sh", "sealgate", "-c", "/usr/bin/sealgate config check --config /etc/sealgate/sealgate.toml")
	if b, err := check.CombinedOutput(); err != nil || !strings.Contains(string(b), "config OK") {
		t.Fatalf("config check of the installed config as the service user: %v\n%s", err, b)
	}
	if cfg, _ := os.ReadFile("/etc/sealgate/sealgate.toml"); !strings.Contains(string(cfg), `data_dir = "/var/lib/sealgate"`) {
		t.Error("the installed config does not keep its data in /var/lib/sealgate")
	}

	testpeer.MustRun(t, nil, "dpkg", "--purge", "sealgate")
	if _, err := os.Stat("/usr/bin/sealgate"); err == nil {
		t.Error("purge left /usr/bin/sealgate")
	}
	if err := exec.Command("getent", "passwd", "sealgate").Run(); err == nil {
		t.Error("purge left the sealgate user")
	}
	if _, err := os.Stat(filepath.Join("/var/lib/sealgate")); err != nil {
		t.Error("purge removed /var/lib/sealgate (the CA and every user's key live there)")
	}
}
