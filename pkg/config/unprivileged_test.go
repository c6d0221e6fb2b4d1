package config

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rerunUnprivileged runs the calling test again in a copy of the test
// binary under the uid and gid of "nobody", and fails when that run does
// not pass. Tests about file permissions call it when they run as root
// (as CI does), where every file is readable and they would check nothing.
func rerunUnprivileged(t *testing.T) {
	t.Helper()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("looking up user nobody to drop root: %v", err)
	}
	uid, errU := strconv.ParseUint(nobody.Uid, 10, 32)
	gid, errG := strconv.ParseUint(nobody.Gid, 10, 32)
	if errU != nil || errG != nil {
		t.Fatalf("user nobody has uid %q gid %q: not numbers", nobody.Uid, nobody.Gid)
	}

	// The go tool builds the binary in a directory only root may enter:
	// copy it where nobody can run it.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); d != filepath.Clean(os.TempDir()) && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // t.TempDir's per-test parent is 0700
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "config.test")
	copyExecutable(t, os.Args[0], bin)

	cmd := exec.Command(bin, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s as nobody: %v\n%s", t.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s as nobody did not pass (skipped or not run):\n%s", t.Name(), out)
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
