#!/usr/bin/env bash
# Builds dist/sealgate_<version>_<arch>.deb with dpkg-deb: the static
# binary, /etc/sealgate/sealgate.toml (config.example.toml with data under
# /var/lib/sealgate; a conffile), the hardened systemd unit and the
# maintainer scripts that create the sealgate user and /var/lib/sealgate.
# Usage: scripts/build-deb.sh [VERSION] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(git describe --tags --always 2>/dev/null | sed 's/^v//; s/-/+/g' || echo 0.0.0)}
case $version in [0-9]*) ;; *) version="0.0.0+$version" ;; esac
out=${2:-dist}
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/sealgate" "$stage/lib/systemd/system" "$stage/usr/share/doc/sealgate"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$stage/usr/bin/sealgate" ./cmd/sealgate
sed -e 's|^data_dir = "./data"|data_dir = "/var/lib/sealgate"|' \
    -e 's|^dir = "./data/outbox"|dir = "/var/lib/sealgate/outbox"|' config.example.toml > "$stage/etc/sealgate/sealgate.toml"
grep -q '^data_dir = "/var/lib/sealgate"' "$stage/etc/sealgate/sealgate.toml" || { echo "build-deb: data_dir not rewritten" >&2; exit 1; }
install -m 0644 packaging/sealgate.service "$stage/lib/systemd/system/sealgate.service"
install -m 0644 README.md "$stage/usr/share/doc/sealgate/README.md"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/debian/control.in > "$stage/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
mkdir -p "$out"
deb="$out/sealgate_${version}_${arch}.deb"
fakeroot dpkg-deb --build --root-owner-group "$stage" "$deb" >/dev/null 2>&1 || dpkg-deb --build --root-owner-group "$stage" "$deb" >/dev/null
echo "$deb"
