package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// signRules sign every message and encrypt none: the restored node must
// sign with the restored user key under the restored CA.
const signRules = `[[policy.rules]]
name = "signed"
sign = "always"
encrypt = "none"
on_failure = "hold"
`

// TestBackupRestoreDeliversTheQueue is issue 17's "nothing accepted is
// lost" across a disk loss: a message waits in the queue of a running
// `sealgate serve` because its next hop answers 451; `sealgate backup`
// runs meanwhile; a fresh node (fresh data_dir, and a fresh PostgreSQL
// database for the postgres case) gets the master key and `sealgate
// restore`, then serves with the next hop up. The next hop receives the
// message from the restored node, signed with the restored key under the
// restored CA (openssl verifies), its body byte-identical. The backup
// file holds the message only sealed.
func TestBackupRestoreDeliversTheQueue(t *testing.T) {
	testpeer.Require(t, "openssl")
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			storeConf := func() string { return "" }
			if driver == "postgres" {
				pg := testpeer.StartPostgres(t)
				storeConf = func() string {
					return fmt.Sprintf("[store]\ndriver = \"postgres\"\ndsn = %q\n", pg.NewDatabase(t))
				}
			}
			hop := testpeer.StartSink(t, testpeer.SinkOptions{})
			hop.Fail(451, "next hop down for maintenance")
			relay := fmt.Sprintf("mode = \"smarthost\"\nsmarthost = %q\ntls = \"none\"\nretry_backoff = \"1h\"", hop.Addr)

			src := newGatewayRules(t, signRules, storeConf())
			src.editConfig(`mode = "dir"`, relay)
			src.start()
			c, err := smtp.Dial(src.addr)
			if err != nil {
				t.Fatal(err)
			}
			marker := "Queued-through-a-disk-loss-" + randomToken()
			body := "Dear Bob,\r\n\r\n" + marker + "\r\n" + strings.Repeat("the quarterly figures follow.\r\n", 40) + "Alice\r\n"
			msg := "From: alice@example.org\r\nTo: bob@partner.test\r\nSubject: figures\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body
			id, err := send(c, "alice@example.org", "bob@partner.test", msg)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			// The first attempt met the 451: the message waits, deferred.
			waitUntil(t, 60*time.Second, func() bool {
				for _, e := range src.queueEntries(t) {
					if e.ID == id && e.State == "deferred" {
						return true
					}
				}
				return false
			}, func() string { return "the message was not deferred:\n" + tail(src.logText(), 20) })

			file := filepath.Join(t.TempDir(), "node.backup")
			out := src.cli("backup", file) // serve keeps running
			if !strings.Contains(string(out), "1 queued messages") {
				t.Fatalf("backup output: %s", out)
			}
			if bytes.Contains(gunzip(t, file), []byte(marker)) {
				t.Fatal("the queued message is readable in the backup")
			}

			dst := newGatewayRules(t, signRules, storeConf())
			dst.editConfig(`mode = "dir"`, relay)
			dst.editConfig(`hostname = "gw.example.org"`, `hostname = "restored.example.org"`)
			key, err := os.ReadFile(filepath.Join(src.dir, "data", "master.key"))
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dst.dir, "data"), 0o700)
			if err := os.WriteFile(filepath.Join(dst.dir, "data", "master.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
			if out := dst.cli("restore", file); !strings.Contains(string(out), "1 queued messages") {
				t.Fatalf("restore output: %s", out)
			}
			hop.Fail(0, "")
			dst.start()
			got := hop.WaitMessages(t, 1, 90*time.Second)
			if len(got) != 1 || got[0].Helo != "restored.example.org" || !got[0].HasRcpt("bob@partner.test") {
				t.Fatalf("the next hop got %d messages, first from %q to %v; want the restored node's", len(got), got[0].Helo, got[0].Rcpts)
			}
			content, signer := cmsVerify(t, got[0].Data, dst.rootCA())
			if len(signer.EmailAddresses) != 1 || signer.EmailAddresses[0] != "alice@example.org" {
				t.Fatalf("signed by %v", signer.EmailAddresses)
			}
			if !bytes.Contains(content, []byte(marker)) {
				t.Fatalf("the signed content lacks the message:\n%s", clip(content))
			}
			if !bytes.Contains(got[0].Data, []byte(body)) {
				t.Fatalf("the body did not arrive byte-identical:\n%s", clip(got[0].Data))
			}
			waitUntil(t, 30*time.Second, func() bool { return len(dst.queueEntries(t)) == 0 },
				func() string { return "the restored queue did not drain:\n" + tail(dst.logText(), 20) })
		})
	}
}

func gunzip(t *testing.T, file string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
