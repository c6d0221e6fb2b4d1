package testpeer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestSinkNext: Next hands out each message once, from the index asked
// for, and its channel closes when the next message arrives (a waiter
// that read everything then wakes instead of polling).
func TestSinkNext(t *testing.T) {
	s := StartSink(t, SinkOptions{})
	got, more := s.Next(0)
	if len(got) != 0 {
		t.Fatalf("empty sink: Next(0) = %d messages", len(got))
	}
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		if err := c.SendMail("a@x.test", []string{"b@y.test"}, strings.NewReader(fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-more:
	case <-time.After(30 * time.Second):
		t.Fatal("the channel from Next did not close when messages arrived")
	}
	for _, tc := range []struct {
		from int
		want []string
	}{
		{0, []string{"m0", "m1", "m2"}},
		{1, []string{"m1", "m2"}},
		{3, nil},
		{7, nil},
		{-1, []string{"m0", "m1", "m2"}},
	} {
		msgs, more := s.Next(tc.from)
		var subjects []string
		for _, m := range msgs {
			subjects = append(subjects, strings.TrimPrefix(strings.SplitN(string(m.Data), "\r\n", 2)[0], "Subject: "))
		}
		if fmt.Sprint(subjects) != fmt.Sprint(tc.want) {
			t.Errorf("Next(%d) = %v, want %v", tc.from, subjects, tc.want)
		}
		select {
		case <-more:
			t.Errorf("Next(%d): the channel is closed before another message arrived", tc.from)
		default:
		}
	}
}
