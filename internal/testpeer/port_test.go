package testpeer

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/pki/stepca"
)

// takenFirst makes OnFreePort's next pick a port another listener holds,
// as when another package's server binds it between the pick and the
// daemon's bind. It returns that port and a count of the picks made.
func takenFirst(t *testing.T) (int, *int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	taken, picks := l.Addr().(*net.TCPAddr).Port, new(int)
	orig := pickPort
	pickPort = func() (int, error) {
		if *picks++; *picks == 1 {
			return taken, nil
		}
		return orig()
	}
	t.Cleanup(func() { pickPort = orig })
	return taken, picks
}

// The external daemons started on a picked port notice that the port was
// taken and start again on another, instead of failing or, worse, taking
// the other server for theirs.
func TestDaemonsRetryATakenPort(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T) int // the daemon's port
	}{
		{"postfix", func(t *testing.T) int {
			p := StartPostfix(t, PostfixOptions{RelayHost: "127.0.0.1:9"})
			port, _ := strconv.Atoi(portOf(p.SMTPAddr))
			return port
		}},
		{"postgres", func(t *testing.T) int { return StartPostgres(t).Port }},
		{"knotd", func(t *testing.T) int {
			port, _ := strconv.Atoi(portOf(StartKnot(t, "example.test", nil).Addr))
			return port
		}},
		{"unbound", func(t *testing.T) int {
			port, _ := strconv.Atoi(portOf(StartUnbound(t, UnboundConfig{}).Addr))
			return port
		}},
		{"step-ca", func(t *testing.T) int {
			ca := StartStepCA(t, stepca.SMIMETemplate, time.Hour)
			port, _ := strconv.Atoi(portOf(ca.URL))
			return port
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			taken, picks := takenFirst(t)
			port := tc.start(t)
			if port == taken || *picks != 2 {
				t.Fatalf("started on port %d after %d picks; want another port than the taken %d, on the second pick", port, *picks, taken)
			}
		})
	}
}

func TestOnFreePort(t *testing.T) {
	inUse := fmt.Errorf("bind: %w", syscall.EADDRINUSE)
	other := errors.New("config rejected")
	tests := []struct {
		name      string
		results   []error // what start returns, call by call (then nil)
		wantCalls int
		wantErr   error
	}{
		{"starts", nil, 1, nil},
		{"lost the port once", []error{inUse}, 2, nil},
		{"daemon's wording", []error{errors.New("fatal: bind 127.0.0.1 port 4711: Address already in use")}, 2, nil},
		{"other failure is not retried", []error{other}, 1, other},
		{"gives up", []error{inUse, inUse, inUse, inUse, inUse, inUse}, portAttempts, syscall.EADDRINUSE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := OnFreePort(func(int) error {
				calls++
				if calls <= len(tc.results) {
					return tc.results[calls-1]
				}
				return nil
			})
			if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("%d calls, err %v; want %d calls, err %v", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}
