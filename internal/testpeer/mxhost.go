package testpeer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// MXKind is what a test MX host offers.
type MXKind string

// The kinds of test MX host.
const (
	MXValid      MXKind = "valid"       // STARTTLS, certificate from the test CA naming the host
	MXSelfSigned MXKind = "self-signed" // STARTTLS, self-signed certificate naming the host
	MXExpired    MXKind = "expired"     // STARTTLS, test CA, expired
	MXWrongName  MXKind = "wrong-name"  // STARTTLS, test CA, names another host
	MXPlain      MXKind = "plain"       // no STARTTLS
	MXTLS10      MXKind = "tls1.0"      // STARTTLS, valid certificate, TLS 1.0 only
	// MXBrokenTLS offers STARTTLS, answers 220 to it and then fails every
	// handshake (what a man in the middle does to force plain text).
	MXBrokenTLS MXKind = "broken-tls"
)

// MXHostSpec asks for one host.
type MXHostSpec struct {
	Name string // "mx1.example.test"
	Kind MXKind
}

// MXHost is a running test MX host: a Sink on its own loopback address.
type MXHost struct {
	*Sink
	Name string
	IP   string
	Kind MXKind
	// Cert is the certificate it presents (nil for MXPlain), CertFile
	// the same in PEM (for TLSA, computed by openssl).
	Cert     *x509.Certificate
	CertFile string
}

// MXNet is a set of test MX hosts, each on its own 127.x.y.z address, all
// on one port (relay.mx_port): real MX hosts all listen on 25, and the
// relay has one port for all. CAFile is the openssl-made test CA to trust
// (relay.ca_files).
type MXNet struct {
	Port   int
	CAFile string
	Hosts  map[string]*MXHost
}

// StartMXHosts starts the hosts; they stop when the test ends. The port is
// 25 when it is free on the chosen addresses (running as root), otherwise
// a high port found free on all of them.
func StartMXHosts(t testing.TB, specs ...MXHostSpec) *MXNet {
	t.Helper()
	Require(t, "openssl")
	dir := t.TempDir()
	ca := newMXCA(t, dir)
	n := &MXNet{CAFile: ca.certFile, Hosts: map[string]*MXHost{}}
	type prepared struct {
		spec     MXHostSpec
		conf     *tls.Config
		cert     *x509.Certificate
		certFile string
	}
	var ps []prepared
	for i, s := range specs {
		hdir := filepath.Join(dir, strconv.Itoa(i))
		conf, cert := ca.serverTLS(t, hdir, s)
		ps = append(ps, prepared{s, conf, cert, filepath.Join(hdir, "cert.pem")})
	}
	for attempt := 0; attempt < 20; attempt++ {
		// 127.77.X.0/24 per attempt: other tests' hosts rarely share it.
		net3 := 1 + rand.IntN(250)
		ips := make([]string, len(ps))
		for i := range ps {
			ips[i] = fmt.Sprintf("127.77.%d.%d", net3, i+1)
		}
		lns, port, err := listenAll(ips)
		if err != nil {
			continue
		}
		n.Port = port
		for i, p := range ps {
			s := StartSink(t, SinkOptions{TLS: p.conf, Listener: lns[i]})
			n.Hosts[p.spec.Name] = &MXHost{Sink: s, Name: p.spec.Name, IP: ips[i], Kind: p.spec.Kind, Cert: p.cert, CertFile: p.certFile}
		}
		return n
	}
	t.Fatalf("mx hosts: no free port shared by %d loopback addresses", len(ps))
	return nil
}

// listenAll binds every ip on one port: 25 if possible, else the port the
// first address got from the kernel.
func listenAll(ips []string) ([]net.Listener, int, error) {
	try := func(port int) ([]net.Listener, int, error) {
		var lns []net.Listener
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				for _, l := range lns {
					l.Close()
				}
				return nil, 0, err
			}
			if port == 0 {
				port = ln.Addr().(*net.TCPAddr).Port
			}
			lns = append(lns, ln)
		}
		return lns, port, nil
	}
	if lns, port, err := try(25); err == nil {
		return lns, port, nil
	} else if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EACCES) {
		return nil, 0, err
	}
	return try(0)
}

// mxCA is the openssl-made CA of the test MX hosts.
type mxCA struct {
	dir, certFile, keyFile string
}

func newMXCA(t testing.TB, dir string) *mxCA {
	t.Helper()
	ca := &mxCA{dir: dir, certFile: filepath.Join(dir, "ca.pem"), keyFile: filepath.Join(dir, "ca.key")}
	MustRun(t, nil, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", ca.keyFile, "-out", ca.certFile, "-subj", "/CN=sealgate test MX CA", "-days", "2",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	return ca
}

// serverTLS makes the host's key and certificate with openssl and the
// server TLS configuration its kind asks for.
func (ca *mxCA) serverTLS(t testing.TB, dir string, s MXHostSpec) (*tls.Config, *x509.Certificate) {
	t.Helper()
	if s.Kind == MXPlain {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, csr, cert := filepath.Join(dir, "key.pem"), filepath.Join(dir, "req.csr"), filepath.Join(dir, "cert.pem")
	name := s.Name
	if s.Kind == MXWrongName {
		name = "other." + s.Name
	}
	ext := WriteFile(t, dir, "ext.cnf", []byte(fmt.Sprintf("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n", name)))
	if s.Kind == MXSelfSigned {
		MustRun(t, nil, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", key, "-out", cert, "-subj", "/CN="+name, "-days", "2", "-addext", "subjectAltName=DNS:"+name)
	} else {
		days := "2"
		if s.Kind == MXExpired {
			days = "-1" // not after: a day ago
		}
		MustRun(t, nil, "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", key, "-out", csr, "-subj", "/CN="+name)
		MustRun(t, nil, "openssl", "x509", "-req", "-in", csr, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-CAcreateserial",
			"-days", days, "-extfile", ext, "-out", cert)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("mx host %s: %v", s.Name, err)
	}
	leaf := ReadCert(t, cert)
	conf := &tls.Config{Certificates: []tls.Certificate{pair}}
	switch s.Kind {
	case MXTLS10:
		conf.MinVersion, conf.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	case MXBrokenTLS:
		conf.Certificates = nil
		conf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("handshake refused on purpose")
		}
	}
	return conf, leaf
}
