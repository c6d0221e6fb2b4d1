package testpeer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Postgres is a throwaway PostgreSQL server (Debian's postgresql package)
// listening on 127.0.0.1 on a free port, with its data in a temporary
// directory, trusting local connections as user "postgres". It is for
// tests only: fsync is off.
type Postgres struct {
	Port int
	dir  string
	bin  string
	cmd  *exec.Cmd
	// exited is closed when the server process has been reaped.
	exited  chan struct{}
	stopped sync.Once
	dbSeq   atomic.Int64
	log     *os.File
}

// ErrNoPostgres means the PostgreSQL server binaries are not installed.
var ErrNoPostgres = errors.New("postgresql server binaries not found under /usr/lib/postgresql/*/bin (package postgresql)")

// postgresBinDir finds the newest installed server version's bin directory.
func postgresBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", ErrNoPostgres
	}
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	return filepath.Dir(matches[0]), nil
}

// StartPostgres starts a server for one test and stops it (deleting its
// data) when the test ends. A missing installation skips the test, or
// fails it under CI=true.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	p, err := StartPostgresServer()
	if errors.Is(err, ErrNoPostgres) {
		if InCI() {
			tb.Fatalf("peer PostgreSQL: %v (run `make test`, which installs it)", err)
		}
		tb.Skipf("peer PostgreSQL: %v; `make test` installs it", err)
	}
	if err != nil {
		tb.Fatalf("starting PostgreSQL: %v", err)
	}
	tb.Cleanup(p.Stop)
	return p
}

// StartPostgresServer starts a server whose lifetime the caller manages
// (for one server shared by a package's tests: start it lazily, Stop it
// in TestMain after m.Run). Should the test binary die without Stop, the
// kernel kills the server with it (parent-death signal).
//
// PostgreSQL refuses to run as root; when the tests run as root, the
// server runs as the system user "postgres" and its directory is handed
// to that user.
func StartPostgresServer() (*Postgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sealgate-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, bin: bin, exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			p.Stop()
		}
	}()

	cred, err := postgresCredential(dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	err = OnFreePort(func(port int) error {
		p.Port, p.exited = port, make(chan struct{})
		if p.log != nil { // the log of an attempt that lost its port
			p.log.Close()
		}
		if p.log, err = os.Create(filepath.Join(dir, "postgres.log")); err != nil {
			return err
		}
		p.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-h", "127.0.0.1",
			"-p", strconv.Itoa(port), "-F", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
			"-c", "max_connections=100", "-c", "shared_buffers=16MB")
		p.cmd.Dir = dir
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("starting postgres: %w", err)
		}
		exited := p.exited
		go func() { _ = p.cmd.Wait(); close(exited) }()
		return p.waitReady(30 * time.Second)
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// postgresCredential is nil when not root (run as ourselves), else the
// "postgres" user, which then gets dir.
func postgresCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no user \"postgres\" to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// waitReady polls pg_isready until the server accepts connections.
func (p *Postgres) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("postgres exited during start-up:\n%s", p.Log())
		default:
		}
		// pg_isready alone could be answered by another package's server
		// that holds the port ours failed to bind: ours must say so too.
		if strings.Contains(p.Log(), "ready to accept connections") {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := exec.CommandContext(ctx, filepath.Join(p.bin, "pg_isready"), "-q", "-h", "127.0.0.1",
				"-p", strconv.Itoa(p.Port), "-U", "postgres").Run()
			cancel()
			if err == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("postgres not ready on 127.0.0.1:%d after %v:\n%s", p.Port, timeout, p.Log())
}

// Log is what the server wrote so far, for failure messages.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "postgres.log"))
	return string(b)
}

// DSN is the connection string for database db as user postgres.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Psql runs SQL with psql against database db and returns its output.
func (p *Postgres) Psql(db, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(p.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres", "-d", db, "-c", sql).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("psql %q: %w\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// NewDatabase creates a fresh, empty database and returns its DSN, so
// that tests sharing one server do not see each other's rows. The
// database is dropped when the test ends.
func (p *Postgres) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), p.dbSeq.Add(1))
	if _, err := p.Psql("postgres", "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// WITH (FORCE) ends connections a test left open.
		_, _ = p.Psql("postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return p.DSN(name)
}

// Restart stops the server (fast shutdown: sessions are cut, as in a
// database failover) and starts it again on the same port and data after
// down, for tests of clients that must reconnect.
func (p *Postgres) Restart(down time.Duration) error {
	if p.cmd == nil || p.cmd.Process == nil {
		return errors.New("postgres: not running")
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("postgres did not stop within 30 s:\n%s", p.Log())
	}
	time.Sleep(down)
	cred, err := postgresCredential(p.dir)
	if err != nil {
		return err
	}
	old := p.cmd
	p.cmd = exec.Command(old.Path, old.Args[1:]...)
	p.cmd.Dir, p.cmd.Stdout, p.cmd.Stderr = old.Dir, p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	p.exited = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("restarting postgres: %w", err)
	}
	exited := p.exited
	go func() { _ = p.cmd.Wait(); close(exited) }()
	return p.waitRestarted(30 * time.Second)
}

// waitRestarted waits until the restarted server answers.
func (p *Postgres) waitRestarted(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("postgres exited during restart:\n%s", p.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := exec.CommandContext(ctx, filepath.Join(p.bin, "pg_isready"), "-q", "-h", "127.0.0.1",
			"-p", strconv.Itoa(p.Port), "-U", "postgres").Run()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("postgres not back on 127.0.0.1:%d after %v:\n%s", p.Port, timeout, p.Log())
}

// Stop shuts the server down (fast shutdown, then kill after 10 s) and
// deletes its directory. Safe to call more than once.
func (p *Postgres) Stop() {
	p.stopped.Do(func() {
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if p.log != nil {
			p.log.Close()
		}
		_ = os.RemoveAll(p.dir)
	})
}
