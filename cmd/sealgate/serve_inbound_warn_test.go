package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/store"
)

// A node without [inbound] says so when inbound messages wait in the queue
// (restored from a backup, or left by a config edit): nothing else would
// tell the admin why they are not delivered. Outbound messages do not
// count.
func TestServeWarnsAboutWaitingInboundMail(t *testing.T) {
	_, cfgFile := backupNode(t, "")
	for _, step := range []struct {
		lane string
		want bool
	}{{"", false}, {store.LaneOutbound, false}, {store.LaneInbound, true}} {
		if step.lane != "" {
			queueLikeServe(t, cfgFile, "old-node", step.lane, "Subject: q\r\n\r\nqueued\r\n", false)
		}
		cfg, err := config.Load(cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		st, _, err := openStore(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		warnInboundWaiting(context.Background(), st, slog.New(slog.NewJSONHandler(&buf, nil)))
		st.Close()
		got := strings.Contains(buf.String(), "[inbound] is not configured")
		if got != step.want {
			t.Fatalf("after queueing lane %q: warned %v, want %v: %s", step.lane, got, step.want, buf.String())
		}
		if step.want && !strings.Contains(buf.String(), `"inbound_messages":1`) {
			t.Fatalf("the warning does not count the message: %s", buf.String())
		}
	}
}
