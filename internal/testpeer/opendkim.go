package testpeer

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// OpenDKIM verifies DKIM signatures with OpenDKIM's opendkim-testmsg
// (Debian opendkim-tools), which looks the keys up in DNS the way a
// receiving MTA's milter does.
//
// libopendkim asks the system resolver (glibc res_nquery), which only
// reads /etc/resolv.conf and only talks to port 53. So each run gets its
// own mount namespace (unshare -m) in which a resolv.conf naming a
// loopback address is bind-mounted over /etc/resolv.conf, and on that
// address's port 53 a forwarder passes queries to the test's resolver (an
// unbound from StartUnbound). Needs root (port 53, mounts); skips
// otherwise, fails under CI=true.
type OpenDKIM struct {
	resolvConf string
	fwd        *dnsForwarder
}

// StartOpenDKIM prepares opendkim-testmsg runs that resolve through
// resolver (host:port, UDP and TCP).
func StartOpenDKIM(t testing.TB, resolver string) *OpenDKIM {
	t.Helper()
	Require(t, "opendkim-testmsg")
	Require(t, "unshare")
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatal("opendkim-testmsg needs root here (a forwarder on port 53 and a private mount of /etc/resolv.conf)")
		}
		t.Skip("opendkim-testmsg needs root here (a forwarder on port 53 and a private mount of /etc/resolv.conf)")
	}
	fwd, err := startDNSForwarder(resolver)
	if err != nil {
		t.Fatalf("opendkim: DNS forwarder: %v", err)
	}
	t.Cleanup(fwd.close)
	o := &OpenDKIM{fwd: fwd, resolvConf: filepath.Join(t.TempDir(), "resolv.conf")}
	conf := fmt.Sprintf("nameserver %s\noptions edns0 attempts:2 timeout:2\n", fwd.ip)
	if err := os.WriteFile(o.resolvConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

// Verify runs opendkim-testmsg on msg. It prints nothing and exits 0 when
// every signature verifies; a bad or missing key, a changed header or body
// is a non-zero exit with the reason on stderr.
func (o *OpenDKIM) Verify(t testing.TB, msg []byte) Result {
	t.Helper()
	return Run(t, msg, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/resolv.conf && exec opendkim-testmsg`, "sh", o.resolvConf)
}

// Queries is how many DNS queries the forwarder passed on (a run that
// verified without asking DNS would prove nothing).
func (o *OpenDKIM) Queries() int {
	o.fwd.mu.Lock()
	defer o.fwd.mu.Unlock()
	return o.fwd.queries
}

// dnsForwarder listens on a random 127.x.y.z:53 (UDP and TCP) and passes
// every query to upstream.
type dnsForwarder struct {
	ip       string
	upstream string
	udp      net.PacketConn
	tcp      net.Listener
	wg       sync.WaitGroup

	mu      sync.Mutex
	queries int
}

func startDNSForwarder(upstream string) (*dnsForwarder, error) {
	var last error
	for range 20 {
		ip := fmt.Sprintf("127.%d.%d.%d", 53+rand.IntN(150), rand.IntN(256), 1+rand.IntN(254))
		udp, err := net.ListenPacket("udp", net.JoinHostPort(ip, "53"))
		if err != nil {
			last = err
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, err
		}
		tcp, err := net.Listen("tcp", net.JoinHostPort(ip, "53"))
		if err != nil {
			udp.Close()
			last = err
			continue
		}
		f := &dnsForwarder{ip: ip, upstream: upstream, udp: udp, tcp: tcp}
		f.wg.Add(2)
		go f.serveUDP()
		go f.serveTCP()
		return f, nil
	}
	return nil, last
}

func (f *dnsForwarder) count() {
	f.mu.Lock()
	f.queries++
	f.mu.Unlock()
}

func (f *dnsForwarder) serveUDP() {
	defer f.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := f.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		f.count()
		q := append([]byte(nil), buf[:n]...)
		go func() {
			c, err := net.Dial("udp", f.upstream)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(q); err != nil {
				return
			}
			ans := make([]byte, 65535)
			m, err := c.Read(ans)
			if err != nil {
				return
			}
			_, _ = f.udp.WriteTo(ans[:m], from)
		}()
	}
}

func (f *dnsForwarder) serveTCP() {
	defer f.wg.Done()
	for {
		c, err := f.tcp.Accept()
		if err != nil {
			return
		}
		f.count()
		go func() {
			defer c.Close()
			up, err := net.DialTimeout("tcp", f.upstream, 5*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_ = up.SetDeadline(time.Now().Add(10 * time.Second))
			go func() { _, _ = io.Copy(up, c) }()
			_, _ = io.Copy(c, up)
		}()
	}
}

func (f *dnsForwarder) close() {
	f.udp.Close()
	f.tcp.Close()
	f.wg.Wait()
}
