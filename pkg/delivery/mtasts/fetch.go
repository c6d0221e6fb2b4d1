package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Fetcher fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
type Fetcher struct {
	// Roots verify the policy host's certificate (system roots plus
	// relay.ca_files); nil: the system roots.
	Roots *x509.CertPool
	// Resolve finds the policy host's addresses; nil: the system
	// resolver.
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
	// Port is the HTTPS port (0: 443; another only in tests).
	Port    int
	Timeout time.Duration // whole fetch; 0: 10s
}

// ErrFetch marks a policy that could not be fetched as the RFC demands.
var ErrFetch = errors.New("mta-sts: policy fetch")

// Fetch returns the policy body for domain. It refuses redirects, any
// status but 200, a media type other than text/plain, and a body over
// MaxPolicyBytes; the certificate must be valid for mta-sts.DOMAIN.
func (f *Fetcher) Fetch(ctx context.Context, domain string) ([]byte, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host := "mta-sts." + domain
	port := f.Port
	if port == 0 {
		port = 443
	}
	dialer := &net.Dialer{}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: f.Roots, ServerName: host, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		Proxy:             nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var ips []net.IP
			var err error
			if f.Resolve != nil {
				ips, err = f.Resolve(ctx, host)
			} else {
				var addrs []net.IPAddr
				addrs, err = net.DefaultResolver.LookupIPAddr(ctx, host)
				for _, a := range addrs {
					ips = append(ips, a.IP)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("resolving %s: %w", host, err)
			}
			var last error = fmt.Errorf("%s has no address", host)
			for _, ip := range ips {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), strconv.Itoa(port)))
				if err == nil {
					return c, nil
				}
				last = err
			}
			return nil, last
		},
		MaxResponseHeaderBytes: 16 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("redirects are not followed (RFC 8461 §3.3)")
	}}
	url := "https://" + host + "/.well-known/mta-sts.txt"
	if port != 443 {
		url = "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/.well-known/mta-sts.txt"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrFetch, domain, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrFetch, domain, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w for %s: HTTP status %d", ErrFetch, domain, resp.StatusCode)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%w for %s: media type %q, want text/plain", ErrFetch, domain, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w for %s: reading: %w", ErrFetch, domain, err)
	}
	if len(body) > MaxPolicyBytes {
		return nil, fmt.Errorf("%w for %s: body larger than %d bytes", ErrFetch, domain, MaxPolicyBytes)
	}
	return body, nil
}
