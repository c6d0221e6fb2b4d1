package config

import "testing"

func TestInboundProblems(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		want     []keyLine
		wantHint string
	}{
		{name: "listen needs internal domains", doc: dirRelay + "[inbound]\nlisten = \"127.0.0.1:2526\"\nnext_hop = \"127.0.0.1:25\"\n",
			want: []keyLine{{"inbound.listen", 5}}, wantHint: "internal_domains"},
		{name: "listen needs next_hop", doc: dirRelay + "[policy]\ninternal_domains = [\"example.org\"]\n[inbound]\nlisten = \"127.0.0.1:2526\"\n",
			want: []keyLine{{"inbound.next_hop", 7}}, wantHint: "host:port"},
		{name: "next_hop without listen", doc: dirRelay + "[policy]\ninternal_domains = [\"example.org\"]\n[inbound]\nnext_hop = \"127.0.0.1:25\"\n",
			want: []keyLine{{"inbound.next_hop", 7}}, wantHint: "listen"},
		{name: "bad network", doc: dirRelay + "[policy]\ninternal_domains = [\"example.org\"]\n[inbound]\nlisten = \"127.0.0.1:2526\"\nnext_hop = \"127.0.0.1:25\"\nallowed_networks = [\"10.0.0.0/33\"]\n",
			want: []keyLine{{"inbound.allowed_networks[0]", 9}}, wantHint: "/24"},
		{name: "bad next_hop_tls", doc: dirRelay + "[policy]\ninternal_domains = [\"example.org\"]\n[inbound]\nlisten = \"127.0.0.1:2526\"\nnext_hop = \"127.0.0.1:25\"\nnext_hop_tls = \"always\"\n",
			want: []keyLine{{"inbound.next_hop_tls", 9}}, wantHint: "opportunistic"},
		{name: "cert without key", doc: dirRelay + "[policy]\ninternal_domains = [\"example.org\"]\n[inbound]\nlisten = \"127.0.0.1:2526\"\nnext_hop = \"127.0.0.1:25\"\ntls_cert_file = \"c.pem\"\n",
			want: []keyLine{{"inbound.tls_cert_file", 9}}, wantHint: "tls_key_file"},
		{name: "marker on two lines", doc: dirRelay + "[policy]\ninternal_domains = [\"example.org\"]\n[inbound]\nlisten = \"127.0.0.1:2526\"\nnext_hop = \"127.0.0.1:25\"\nsubject_marker_fail = \"a\\r\\nBcc: x@y\"\n",
			want: []keyLine{{"inbound.subject_marker_fail", 9}}, wantHint: "[signature invalid]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := problemsOf(t, write(t, tc.doc, nil))
			wantProblems(t, ps, tc.want, tc.wantHint)
		})
	}
}
