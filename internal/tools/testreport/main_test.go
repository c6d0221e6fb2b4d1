package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// Events as go test -json (Go 1.26) writes them, trimmed to the fields read.
const (
	peerSkipped = `{"Action":"run","Package":"p/store","Test":"TestPostgres"}
{"Action":"output","Package":"p/store","Test":"TestPostgres","Output":"=== RUN   TestPostgres\n"}
{"Action":"output","Package":"p/store","Test":"TestPostgres","Output":"    postgres_test.go:31: peer PostgreSQL: not installed\n"}
{"Action":"output","Package":"p/store","Test":"TestPostgres","Output":"--- SKIP: TestPostgres (0.00s)\n"}
{"Action":"skip","Package":"p/store","Test":"TestPostgres"}
{"Action":"output","Package":"p/store","Output":"ok  \tp/store\t0.01s\n"}
{"Action":"pass","Package":"p/store"}
`
	subtestSkipped = `{"Action":"run","Package":"p/a","Test":"TestA"}
{"Action":"output","Package":"p/a","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p/a","Test":"TestA/gpgsm","Output":"=== RUN   TestA/gpgsm\n"}
{"Action":"output","Package":"p/a","Test":"TestA/gpgsm","Output":"    a_test.go:9: peer gpgsm is not installed\n"}
{"Action":"output","Package":"p/a","Test":"TestA/gpgsm","Output":"--- SKIP: TestA/gpgsm (0.00s)\n"}
{"Action":"skip","Package":"p/a","Test":"TestA/gpgsm"}
{"Action":"output","Package":"p/a","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"p/a","Test":"TestA"}
`
	allocPassed = `{"Action":"output","Package":"p/policy","Test":"TestDecideDoesNotAllocate","Output":"--- PASS: TestDecideDoesNotAllocate (0.05s)\n"}
{"Action":"pass","Package":"p/policy","Test":"TestDecideDoesNotAllocate"}
{"Action":"output","Package":"p/policy","Output":"ok  \tp/policy\t0.06s\n"}
`
	noTestFiles = `{"Action":"start","Package":"p/cmd"}
{"Action":"output","Package":"p/cmd","Output":"?   \tp/cmd\t[no test files]\n"}
{"Action":"skip","Package":"p/cmd"}
`
	buildFailed = `{"ImportPath":"p/b [p/b.test]","Action":"build-output","Output":"# p/b [p/b.test]\n"}
{"ImportPath":"p/b [p/b.test]","Action":"build-output","Output":"b.go:1:23: undefined: x\n"}
{"Action":"output","Package":"p/b","Output":"FAIL\tp/b [build failed]\n"}
{"Action":"fail","Package":"p/b"}
`
	notJSON = "go: downloading example.com/x v1.0.0\n"
)

func TestRenderPrintsWhatGoTestPrints(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"skipped peer", peerSkipped, "=== RUN   TestPostgres\n    postgres_test.go:31: peer PostgreSQL: not installed\n--- SKIP: TestPostgres (0.00s)\nok  \tp/store\t0.01s\n"},
		{"build failure", buildFailed, "# p/b [p/b.test]\nb.go:1:23: undefined: x\nFAIL\tp/b [build failed]\n"},
		{"line that is not an event", notJSON + noTestFiles, notJSON + "?   \tp/cmd\t[no test files]\n"},
		{"last line without newline", strings.TrimSuffix(allocPassed, "\n"), "--- PASS: TestDecideDoesNotAllocate (0.05s)\nok  \tp/policy\t0.06s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := render(strings.NewReader(tt.in), &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("rendered\n%q\nwant\n%q", out.String(), tt.want)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		failOnSkip bool
		required   []string
		want       []string
	}{
		{"skip fails under CI", peerSkipped, true, nil, []string{
			"FAIL: 1 test(s) skipped under CI=true (install the missing peers: scripts/install-peers.sh):",
			"  p/store TestPostgres: postgres_test.go:31: peer PostgreSQL: not installed",
		}},
		{"skipped subtest fails under CI", subtestSkipped, true, nil, []string{
			"FAIL: 1 test(s) skipped under CI=true (install the missing peers: scripts/install-peers.sh):",
			"  p/a TestA/gpgsm: a_test.go:9: peer gpgsm is not installed",
		}},
		{"skip allowed outside CI", peerSkipped, false, nil, nil},
		{"package without tests is no skipped test", noTestFiles, true, nil, nil},
		{"required test passed", allocPassed, true, []string{"TestDecideDoesNotAllocate"}, nil},
		{"required test never ran", noTestFiles, true, []string{"TestDecideDoesNotAllocate"}, []string{
			"FAIL: required test TestDecideDoesNotAllocate did not pass (not run, skipped or failed)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := render(strings.NewReader(tt.in), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if got := judge(rep, tt.failOnSkip, tt.required); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("judge = %q\nwant    %q", got, tt.want)
			}
		})
	}
}
