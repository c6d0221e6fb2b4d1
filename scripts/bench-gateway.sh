#!/usr/bin/env bash
# Load run for the gateway (issue 7), not part of the tests:
# smtp-source (Postfix) → sealgate (sign + S/MIME encrypt, RSA-2048, fsync
# on) → smtp-sink, then the same load through Postfix relaying to the same
# smtp-sink without crypto (the baseline of the issue; needs root, else it
# is skipped), then straight into smtp-sink. Prints messages/s, the p50/p99
# latency each relay added (sealgate: MAIL FROM → next hop's 250, from the
# delivery events' received/time; Postfix: its delay= per message, 10 ms
# resolution) and sealgate's peak RSS.
#   scripts/bench-gateway.sh [MESSAGES=10000] [SESSIONS=20] [SIZE=10240]
# The memory run of the issue: scripts/bench-gateway.sh 50 50 10485760
# SKIP_BASELINE=1 runs sealgate only; SEALGATE_BIN=/abs/sealgate runs that
# build instead of building this tree (for before/after runs);
# SEALGATE_CPUPROFILE=/abs/file.pprof makes serve write a CPU profile of
# its run there. Besides msg/s it prints the gateway's CPU time per message
# (user + system), which other load on the machine disturbs less.
#
# MODE=single (default): one sender, one recipient (every cache hits).
# MODE=many: USERS senders (default 1,000, certificates issued by
# `pki rollout` before the run) mail USERS recipients whose certificates
# are on an OpenLDAP key server (slapd), each once per USERS messages, so
# sender-certificate and directory cache misses are measured too
# (internal/tools/smtpload sends; smtp-source has one sender).
#
# The run fails, and prints no rate, when a message was held, deferred or
# bounced, when the queue did not drain within DRAIN_TIMEOUT seconds
# (default 60 + MESSAGES/20), or when smtp-sink did not receive exactly
# MESSAGES messages: a rate over lost or stuck mail measures nothing.
set -euo pipefail
MESSAGES=${1:-10000}
SESSIONS=${2:-20}
SIZE=${3:-10240}
MODE=${MODE:-single}
USERS=${USERS:-1000}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-$((60 + MESSAGES / 20))}
cd "$(dirname "$0")/.."
case "$MODE" in
  single) peers="smtp-source smtp-sink openssl" ;;
  many) peers="smtp-source smtp-sink openssl slapd slapadd" ;;
  *) echo "bench: MODE=$MODE: want single or many" >&2; exit 2 ;;
esac
for p in $peers; do
  command -v "$p" >/dev/null || { echo "bench: $p missing (scripts/install-peers.sh)" >&2; exit 1; }
done
fail() {
  echo "bench: FAIL: $*" >&2
  if [ -s "${work:-}/serve.log" ]; then echo "last lines of sealgate's log:" >&2; tail -5 "$work/serve.log" >&2; fi
  exit 1
}
work=$(mktemp -d)
PFDIR=""
cleanup() {
  [ -n "$PFDIR" ] && postfix -c "$PFDIR" stop >/dev/null 2>&1 || true
  kill $(jobs -p) 2>/dev/null || true
  sleep 0.3
  rm -rf "$work" ${PFDIR:+"$PFDIR"}
}
trap cleanup EXIT
if [ -n "${SEALGATE_BIN:-}" ]; then cp "$SEALGATE_BIN" "$work/sealgate"; else go build -o "$work/sealgate" ./cmd/sealgate; fi
[ "$MODE" = many ] && go build -o "$work/smtpload" ./internal/tools/smtpload
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW=$(freeport); SINK=$(freeport)

# A partner CA and the recipient's certificate, so every message is encrypted.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 30 \
  -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/r.key" -out "$work/r.csr" -subj "/CN=bob@partner.test" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:bob@partner.test\n' >"$work/r.ext"
openssl x509 -req -in "$work/r.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -set_serial 7 -days 30 -extfile "$work/r.ext" -out "$work/r.pem" 2>/dev/null

keyservers=""
users_toml='[[users.static]]
email = "alice@example.org"
name = "Alice"
groups = ["smime-users"]'
if [ "$MODE" = many ]; then
  # USERS recipient certificates (one key: the lookups, chain checks and
  # RSA encryptions per recipient are what is measured, not keygen) on a
  # slapd key server, and USERS senders.
  echo "== preparing $USERS senders and $USERS recipients on slapd"
  mkdir -p "$work/ldap/db"
  ldif="$work/ldap/people.ldif"
  printf 'dn: dc=partner,dc=test\nobjectClass: dcObject\nobjectClass: organization\ndc: partner\no: partner\n\n' >"$ldif"
  users_toml=""
  for i in $(seq 0 $((USERS - 1))); do
    n=$(printf '%04d' "$i")
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:rcpt%s@partner.test\n' "$n" >"$work/rc.ext"
    openssl x509 -req -in "$work/r.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -set_serial "$((1000 + i))" -days 30 \
      -subj "/CN=rcpt$n@partner.test" -extfile "$work/rc.ext" -outform DER -out "$work/ldap/rcpt$n.der" 2>/dev/null
    printf 'dn: mail=rcpt%s@partner.test,dc=partner,dc=test\nobjectClass: inetOrgPerson\ncn: rcpt%s\nsn: rcpt%s\nmail: rcpt%s@partner.test\nuserCertificate;binary:< file://%s\n\n' \
      "$n" "$n" "$n" "$n" "$work/ldap/rcpt$n.der" >>"$ldif"
    users_toml+="[[users.static]]
email = \"user$n@example.org\"
groups = [\"smime-users\"]
"
  done
  cat >"$work/ldap/slapd.conf" <<SLAPD
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile $work/ldap/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
access to * by * read
database mdb
maxsize 268435456
suffix "dc=partner,dc=test"
rootdn "cn=admin,dc=partner,dc=test"
rootpw bench
directory $work/ldap/db
index objectClass,mail eq
SLAPD
  slapadd -q -f "$work/ldap/slapd.conf" -l "$ldif" || fail "slapadd could not load the recipients"
  # slapd cannot report a port it chose: pick one, retry if it was taken.
  for attempt in 1 2 3; do
    LDAP=$(freeport)
    slapd -f "$work/ldap/slapd.conf" -h "ldap://127.0.0.1:$LDAP/" -d 0 >"$work/ldap/slapd.log" 2>&1 &
    LDAPPID=$!
    for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$LDAP) 2>/dev/null && break; kill -0 "$LDAPPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$LDAPPID" 2>/dev/null && break
    grep -qi 'address already in use' "$work/ldap/slapd.log" || fail "slapd did not start: $(cat "$work/ldap/slapd.log")"
    [ "$attempt" = 3 ] && fail "slapd: three picked ports were taken"
  done
  keyservers="[[keyservers]]
name = \"partners\"
url = \"ldap://127.0.0.1:$LDAP\"
base_dn = \"dc=partner,dc=test\""
fi

cat >"$work/sealgate.toml" <<TOML
data_dir = "$work/data"
[smtp]
listen = "127.0.0.1:$GW"
hostname = "bench.sealgate.test"
allowed_networks = ["127.0.0.0/8"]
max_connections = 200
[relay]
mode = "smarthost"
smarthost = "127.0.0.1:$SINK"
tls = "none"
[pki]
key_type = "rsa2048"
[users]
groups = ["smime-users"]
$users_toml
$keyservers
[trust]
ca_files = ["$work/ca.pem"]
system_roots = false
[policy]
internal_domains = ["example.org"]
[[policy.rules]]
name = "all"
sign = "always"
encrypt = "smime-required"
on_failure = "hold"
[log]
level = "warn"
TOML
if [ "$MODE" = single ]; then
  "$work/sealgate" directory import "$work/r.pem" --config "$work/sealgate.toml" >/dev/null
else
  # The senders' certificates exist before the run: issuing is the
  # rollout's cost (scripts: BenchmarkRollout), not the gateway's.
  "$work/sealgate" pki init --config "$work/sealgate.toml" >/dev/null
  "$work/sealgate" pki rollout --config "$work/sealgate.toml" >/dev/null || fail "pki rollout for $USERS senders failed"
fi

smtp-sink -u nobody -c "127.0.0.1:$SINK" 256 >"$work/sink.log" 2>&1 &
"$work/sealgate" serve --config "$work/sealgate.toml" 2>"$work/serve.log" &
GWPID=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$GW) 2>/dev/null && break; sleep 0.2; done

if [ "$MODE" = single ]; then
  echo "== sealgate: $MESSAGES messages of $SIZE bytes over $SESSIONS sessions (sign + encrypt, fsync), one sender, one recipient"
else
  echo "== sealgate: $MESSAGES messages of $SIZE bytes over $SESSIONS sessions (sign + encrypt, fsync), $USERS senders, $USERS recipients on slapd"
fi
cputicks() { awk '{print $14 + $15}' /proc/$GWPID/stat; }
# What smtp-sink received so far (its -c counter line: "... mesg=N").
sunk() { tr '\r' '\n' <"$work/sink.log" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 | grep . || echo 0; }
cpu0=$(cputicks)
start=$(date +%s.%N)
if [ "$MODE" = single ]; then
  smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f alice@example.org -t bob@partner.test "127.0.0.1:$GW"
else
  "$work/smtpload" -addr "127.0.0.1:$GW" -sessions "$SESSIONS" -messages "$MESSAGES" -size "$SIZE" \
    -senders "$USERS" -recipients "$USERS" -from 'user%04d@example.org' -to 'rcpt%04d@partner.test' || fail "the gateway refused messages"
fi
accepted=$(date +%s.%N)
# Wait until the queue has drained to the sink (held messages stay: they
# are counted below and mean something is wrong). The spool directory is
# watched (a file goes once its message is delivered); `queue list`, a
# process that reads the whole queue, runs only every 5 s, since it took
# CPU from the gateway being measured.
pending() { "$work/sealgate" queue list -o json --config "$work/sealgate.toml" |
  python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if e["state"] != "held"))'; }
spooled() { find "$work/data/spool" -name '*.msg' | wc -l; }
i=0
drain_deadline=$(($(date +%s) + DRAIN_TIMEOUT))
while [ "$(spooled)" != 0 ]; do
  i=$((i + 1))
  if [ $((i % 25)) = 0 ] && [ "$(pending)" = 0 ]; then break; fi
  [ "$(date +%s)" -lt "$drain_deadline" ] || fail "the queue did not drain in ${DRAIN_TIMEOUT}s ($(spooled) spooled; DRAIN_TIMEOUT raises the bound)"
  sleep 0.2
done
done_t=$(date +%s.%N)
# Honesty: nothing held, deferred or bounced, nothing left in the queue,
# and the next hop got every message exactly once.
left=$("$work/sealgate" queue list -o json --config "$work/sealgate.toml" |
  python3 -c 'import collections,json,sys; c=collections.Counter(e["state"] for e in json.load(sys.stdin)); print(" ".join(f"{k}={v}" for k,v in sorted(c.items())))')
[ -z "$left" ] || fail "messages left in the queue: $left; $(grep -m1 '"outcome":"\(held\|deferred\)"' "$work/serve.log" || true)"
for outcome in held deferred bounced; do
  n=$(grep -c "\"outcome\":\"$outcome\"" "$work/serve.log" || true)
  [ "$n" = 0 ] || fail "$n $outcome delivery event(s): $(grep -m1 "\"outcome\":\"$outcome\"" "$work/serve.log")"
done
[ "$(sunk)" = "$MESSAGES" ] || fail "smtp-sink received $(sunk) messages, $MESSAGES were sent"
rss=$(awk '/VmHWM/ {print $2/1024 " MB"}' /proc/$GWPID/status)
cpu1=$(cputicks)
python3 - "$start" "$accepted" "$done_t" "$MESSAGES" "$rss" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" <<'PY'
import sys
s, a, d, n, rss = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cpu = int(sys.argv[6]) / int(sys.argv[7])
print(f"accepted: {n/(a-s):.0f} msg/s   end to end (relayed): {n/(d-s):.0f} msg/s   peak RSS {rss}")
print(f"sealgate CPU: {cpu:.1f} s = {cpu*1000/n:.2f} ms per message")
PY
echo "checked: $MESSAGES sent = $MESSAGES received by smtp-sink; none held, deferred or bounced"
# Added latency per message from the stored delivery events.
python3 - "$work/data/sealgate.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
# Unix microseconds: at = the next hop's 250, received_at = MAIL FROM.
lat = sorted((at - rcv) / 1e6 for at, rcv in
             db.execute("SELECT at, received_at FROM delivery_events WHERE outcome = 'delivered' AND received_at IS NOT NULL"))
if lat:
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    print(f"sealgate added latency (MAIL FROM -> next hop 250, {len(lat)} msgs): p50 {q(0.5):.0f} ms  p99 {q(0.99):.0f} ms  max {lat[-1]*1000:.0f} ms")
PY
kill "$GWPID"; wait "$GWPID" 2>/dev/null || true

echo "== baseline: Postfix relaying the same load to smtp-sink (no crypto; queue fsync as shipped)"
if [ -n "${SKIP_BASELINE:-}" ]; then
  echo "skipped: SKIP_BASELINE set"
elif [ "$(id -u)" = 0 ] && command -v postfix >/dev/null; then
  PFDIR=$(mktemp -d /tmp/pfbench.XXXXXX); chmod 755 "$PFDIR"
  PF=$(freeport)
  mkdir -p "$PFDIR/queue" "$PFDIR/data"; chown postfix:postfix "$PFDIR/data"
  cp /etc/postfix/master.cf "$PFDIR/master.cf"
  printf '127.0.0.1:%s inet n - n - - smtpd\npostlog unix-dgram n - n - 1 postlogd\n' "$PF" >>"$PFDIR/master.cf"
  cat >"$PFDIR/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PFDIR/queue
data_directory = $PFDIR/data
mail_owner = postfix
myhostname = mta.sealgate.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK
maillog_file = $PFDIR/log
maillog_file_prefixes = $PFDIR
# The memory run sends 10 MB messages; Postfix's default limit is 10,240,000.
message_size_limit = 52428800
CF
  postconf -c "$PFDIR" -M# smtp/inet; postconf -c "$PFDIR" -F '*/*/chroot = n'
  postfix -c "$PFDIR" start >/dev/null 2>&1
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PF) 2>/dev/null && break; sleep 0.2; done
  start=$(date +%s.%N)
  smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f alice@example.org -t bob@partner.test "127.0.0.1:$PF"
  accepted=$(date +%s.%N)
  for _ in $(seq 3000); do [ "$(grep -c 'status=sent' "$PFDIR/log" 2>/dev/null)" -ge "$MESSAGES" ] && break; sleep 0.2; done
  done_t=$(date +%s.%N)
  sent=$(grep -c 'status=sent' "$PFDIR/log" 2>/dev/null || true)
  [ "$sent" = "$MESSAGES" ] || fail "Postfix sent $sent of $MESSAGES messages within 600 s"
  python3 - "$start" "$accepted" "$done_t" "$MESSAGES" "$PFDIR/log" <<'PY'
import re, sys
s, a, d, n = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
lat = sorted(float(m.group(1)) for m in re.finditer(r"delay=([0-9.]+),.*status=sent", open(sys.argv[5]).read()))
print(f"postfix accepted: {n/(a-s):.0f} msg/s   end to end (relayed): {n/(d-s):.0f} msg/s   ({len(lat)} sent)")
if lat:
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    print(f"postfix added latency (delay=, {len(lat)} msgs): p50 {q(0.5):.0f} ms  p99 {q(0.99):.0f} ms  max {lat[-1]*1000:.0f} ms")
PY
else
  echo "skipped: needs root and postfix"
fi

[ -n "${SKIP_BASELINE:-}" ] && exit 0
echo "== reference: the same load straight into smtp-sink (no relay)"
start=$(date +%s.%N)
smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f alice@example.org -t bob@partner.test "127.0.0.1:$SINK"
end=$(date +%s.%N)
python3 -c "print(f'smtp-sink direct: {$MESSAGES/($end-$start):.0f} msg/s')"
