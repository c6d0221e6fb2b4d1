#!/usr/bin/env bash
# Installs the Debian packages whose programs check sealgate in tests
# (openssl, gpgsm, NSS tools, qpdf, poppler, slapd, swaks, postfix with Cyrus
# SASL for the smart-host peer, python3 (its email package reads our DSNs), PostgreSQL,
# Samba AD DC, headless Chromium for the recipient portal and the sample pages, Prometheus with promtool,
# MuPDF's mutool, unbound and Knot DNS (with kdig, and dig) for DNSSEC and DANE, and the TrueType fonts the PDF's font chain falls back to: Noto
# (many scripts), Droid Sans Fallback (Chinese, Japanese), Nanum (Korean), Symbola (symbols)),
# and the Perl TLS modules swaks only recommends (--tls needs Net::SSLeay),
# only those missing, without prompts and without starting any service.
# Exim (the BDAT client) conflicts with postfix, so its packages are unpacked
# into $EXIM_DIR instead of installed; internal/testpeer/exim.go looks there.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# The libraries the unpacked exim4 links against (exim4-daemon-light's Depends).
exim_libs="libdb5.3 libgnutls-dane0 libgnutls30 libidn12 libidn2-0 libnsl2 libpcre2-8-0"
for pkg in openssl gpgsm systemd adduser libnss3-tools qpdf poppler-utils swaks libnet-ssleay-perl libio-socket-ssl-perl postfix sasl2-bin libsasl2-modules python3 slapd ldap-utils postgresql fonts-dejavu-core samba-ad-dc samba-ad-provision chromium prometheus mupdf-tools unbound knot knot-dnsutils dnsutils fonts-noto-core fonts-droid-fallback fonts-nanum fonts-symbola $exim_libs; do
	have "$pkg" || need+=("$pkg")
done
EXIM_DIR=/var/cache/sealgate-peers/exim
# Debian's exim looks its compiled-in user up before reading any config.
EXIM_USER=Debian-exim
need_exim=
[ -x "$EXIM_DIR/usr/sbin/exim4" ] && getent passwd "$EXIM_USER" >/dev/null || need_exim=1
[ ${#need[@]} -eq 0 ] && [ -z "$need_exim" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
if [ -n "$need_exim" ]; then
	echo "install-peers: unpacking exim4 into $EXIM_DIR" >&2
	getent passwd "$EXIM_USER" >/dev/null ||
		$SUDO useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$EXIM_USER"
	debs=$(mktemp -d)
	# apt downloads as _apt when it can write there (else it warns).
	[ "$(id -u)" -eq 0 ] && getent passwd _apt >/dev/null && chown _apt "$debs"
	(cd "$debs" && apt-get download exim4-daemon-light exim4-base >/dev/null)
	$SUDO mkdir -p "$EXIM_DIR"
	for deb in "$debs"/*.deb; do
		$SUDO dpkg -x "$deb" "$EXIM_DIR"
	done
	rm -rf "$debs"
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "install-peers: installing ${need[*]}" >&2
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
# Packages must not start daemons on the host: tests start their own.
policy=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	created_policy=1
fi
trap '[ -n "$created_policy" ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
