package gateway

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Failed SMTP AUTH attempts are limited per client and per account name:
// after authFailureLimit failures within authFailureWindow, AUTH from that
// client, or for that name, is answered 454 4.7.0 for authBlockFor without
// the password being checked, so guessing stops and timing tells nothing.
// Names are counted whether or not the account exists (a block only for
// real accounts would tell which exist).
//
// A per-name block would let any allowed host lock the Exchange connector
// out with a few bad passwords; so a client that authenticated as a name
// within authTrustFor is exempt from that name's block (not from its own).
// A success resets nothing: an attacker sharing the connector's address
// gains no guesses from the connector's logins.
const (
	authFailureLimit  = 5
	authFailureWindow = 10 * time.Minute
	authBlockFor      = 15 * time.Minute
	authTrustFor      = 24 * time.Hour
	// authTableSize bounds each table (clients, names, trusted pairs):
	// names come from the attacker, so the memory must not.
	authTableSize = 4096
	// authNameKeyMax cuts long names (an address is at most 254 octets);
	// names that share the first authNameKeyMax octets share a count.
	authNameKeyMax = 320
)

type authLimiter struct {
	mu      sync.Mutex
	now     func() time.Time
	size    int
	clients failureTable
	names   failureTable
	trusted map[string]time.Time // trustKey → end of the exemption
}

func newAuthLimiter() *authLimiter {
	return &authLimiter{now: time.Now, size: authTableSize,
		clients: failureTable{}, names: failureTable{}, trusted: map[string]time.Time{}}
}

type failureTable map[string]*failures

type failures struct {
	count        int // failures in the current window
	inflight     int // attempts whose password is being checked
	since        time.Time
	blockedUntil time.Time
}

// clientRefused says whether client is blocked, before it names an
// account (so that LOGIN does not even prompt).
func (a *authLimiter) clientRefused(client string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.clients.refuses(client, a.now(), a.size)
}

// begin says whether an attempt from client for name may have its
// password checked, and if so counts it as under way until end: attempts
// in flight count against the limit, or a burst of parallel connections
// would all pass before the first failure was counted.
func (a *authLimiter) begin(client, name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	nk := nameKey(name)
	until, trusted := a.trusted[trustKey(client, name)]
	trusted = trusted && now.Before(until)
	if a.clients.refuses(client, now, a.size) || !trusted && a.names.refuses(nk, now, a.size) {
		return false
	}
	ce, ne := a.clients.entry(client, now, a.size), a.names.entry(nk, now, a.size)
	if ce == nil || ne == nil {
		return false // no room to count it (see refuses)
	}
	ce.inflight++
	ne.inflight++
	return true
}

// end finishes an attempt that begin let through.
func (a *authLimiter) end(client, name string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for _, f := range []*failures{a.clients[client], a.names[nameKey(name)]} {
		if f == nil {
			continue // begin made both entries and keeps them while in flight
		}
		f.inflight--
		if !ok {
			f.fail(now)
		}
	}
	if ok {
		a.trust(client, name, now)
	}
}

// trust exempts client from name's block for authTrustFor.
func (a *authLimiter) trust(client, name string, now time.Time) {
	k := trustKey(client, name)
	if _, ok := a.trusted[k]; !ok && len(a.trusted) >= a.size {
		// Forget the exemption that ends first; losing one only makes
		// that client subject to the name's block again.
		oldest := ""
		for key, until := range a.trusted {
			if oldest == "" || until.Before(a.trusted[oldest]) {
				oldest = key
			}
		}
		delete(a.trusted, oldest)
	}
	a.trusted[k] = now.Add(authTrustFor)
}

// refuses says whether key may not try now: blocked, or out of attempts
// counting those in flight. A key not in the table is refused only when
// the table is full of live entries: its failures could not be counted.
func (t failureTable) refuses(key string, now time.Time, size int) bool {
	if f, ok := t[key]; ok {
		if now.Before(f.blockedUntil) {
			return true
		}
		f.expire(now)
		return f.count+f.inflight >= authFailureLimit
	}
	return !t.makeRoom(now, size)
}

// entry returns key's entry, made if needed; nil if there is no room.
func (t failureTable) entry(key string, now time.Time, size int) *failures {
	if f, ok := t[key]; ok {
		return f
	}
	if !t.makeRoom(now, size) {
		return nil
	}
	f := &failures{since: now}
	t[key] = f
	return f
}

// expire starts a new window once the current one has passed.
func (f *failures) expire(now time.Time) {
	if f.inflight == 0 && now.Sub(f.since) > authFailureWindow {
		f.count, f.since = 0, now
	}
}

func (f *failures) fail(now time.Time) {
	f.expire(now)
	f.count++
	if f.count >= authFailureLimit {
		f.blockedUntil = now.Add(authBlockFor)
		f.count, f.since = 0, f.blockedUntil // the next window starts after the block
	}
}

// makeRoom says whether a new key fits, dropping what no longer counts
// (windows passed, nothing blocked or in flight) and then the oldest
// unblocked count. Live blocks and attempts in flight are never dropped:
// that would let an attacker with many addresses or names wipe a block
// by filling the table.
func (t failureTable) makeRoom(now time.Time, size int) bool {
	if len(t) < size {
		return true
	}
	oldest := ""
	for k, f := range t {
		if now.Before(f.blockedUntil) || f.inflight > 0 {
			continue
		}
		if now.Sub(f.since) > authFailureWindow {
			delete(t, k)
			continue
		}
		if oldest == "" || f.since.Before(t[oldest].since) {
			oldest = k
		}
	}
	if len(t) >= size && oldest != "" {
		delete(t, oldest)
	}
	return len(t) < size
}

// clientKey names the client for counting: its IPv4 address, or the /64
// of an IPv6 address (one host usually holds a whole /64).
func clientKey(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return "unknown" // all such clients share one count
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return "unknown"
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

func nameKey(name string) string {
	if len(name) > authNameKeyMax {
		return name[:authNameKeyMax]
	}
	return name
}

func trustKey(client, name string) string { return client + "\x00" + nameKey(name) }
