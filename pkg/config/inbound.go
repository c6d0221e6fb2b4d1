package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Inbound is the second SMTP listener: mail from the internet (or the
// organisation's MX) for internal users, decrypted, its signatures
// checked, delivered to NextHop. Empty Listen: no inbound listener.
type Inbound struct {
	Listen  string `toml:"listen"`
	NextHop string `toml:"next_hop"` // the internal mail server, host:port
	// NextHopTLS towards NextHop: none | opportunistic (default) | required.
	NextHopTLS      string   `toml:"next_hop_tls"`
	AllowedNetworks []string `toml:"allowed_networks"` // empty: anyone (it faces the internet)
	// MaxMessageBytes, 0: smtp.max_message_bytes.
	MaxMessageBytes int64 `toml:"max_message_bytes"`
	// TLS certificate for STARTTLS; empty: the [smtp] one.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// Subject markers put in front of the Subject per outcome (empty: none).
	SubjectMarkerFail          string `toml:"subject_marker_fail"`
	SubjectMarkerUndecryptable string `toml:"subject_marker_undecryptable"`
}

// Enabled says whether serve runs the inbound listener.
func (i Inbound) Enabled() bool { return i.Listen != "" }

func (v *validator) inbound() {
	in := v.c.Inbound
	if !in.Enabled() {
		if in.NextHop != "" {
			v.add("inbound.next_hop", []string{"inbound.listen"}, "has no effect without inbound.listen", `set listen = "0.0.0.0:25" in [inbound] to receive mail from outside (or leave next_hop empty)`)
		}
		return
	}
	v.listenAddr("inbound.listen", in.Listen)
	if len(v.c.Policy.InternalDomains) == 0 {
		v.add("inbound.listen", []string{"policy.internal_domains"}, "needs policy.internal_domains: the inbound listener takes mail for those domains only (else it would relay anything to next_hop)", `list your domains, e.g. internal_domains = ["example.org"] in [policy]`)
	}
	v.hostPort("inbound.next_hop", in.NextHop, []string{"inbound.listen"}, "when inbound.listen is set (the internal mail server that receives the decrypted mail)")
	if in.Listen == v.c.SMTP.Listen && !strings.HasSuffix(in.Listen, ":0") {
		v.add("inbound.listen", []string{"smtp.listen"}, fmt.Sprintf("%q is smtp.listen too", in.Listen), "give the inbound listener its own address or port")
	}
	if in.NextHopTLS != "" {
		v.oneOf("inbound.next_hop_tls", in.NextHopTLS, "none", "opportunistic", "required")
	}
	if (in.TLSCertFile == "") != (in.TLSKeyFile == "") {
		v.add("inbound.tls_cert_file", []string{"inbound.tls_key_file"}, "is set without its pair", "set both tls_cert_file and tls_key_file in [inbound], or neither (the [smtp] certificate is used)")
	}
	v.file("inbound.tls_cert_file", in.TLSCertFile)
	v.file("inbound.tls_key_file", in.TLSKeyFile)
	for i, n := range in.AllowedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			v.add(indexKey("inbound.allowed_networks", i), []string{"inbound.allowed_networks"}, fmt.Sprintf("%q is not a network in CIDR notation", n), `write e.g. "203.0.113.0/24"; a single host is "192.0.2.7/32"`)
		}
	}
	if in.MaxMessageBytes != 0 {
		v.atLeast("inbound.max_message_bytes", in.MaxMessageBytes, 1024)
	}
	for k, m := range map[string]string{"inbound.subject_marker_fail": in.SubjectMarkerFail, "inbound.subject_marker_undecryptable": in.SubjectMarkerUndecryptable} {
		if strings.ContainsAny(m, "\r\n") || len(m) > 100 {
			v.add(k, nil, "must be one short line", `e.g. "[signature invalid]"`)
		}
	}
}
