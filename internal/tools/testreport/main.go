// Command testreport reads `go test -json` on stdin, prints the human-readable
// output go test would have printed (so the closing ok/FAIL lines stay where
// CI and people look for them), and then judges the run:
//
//   - with -fail-on-skip (scripts/test.sh sets it under CI=true), any skipped
//     test fails the run, listed with the reason it gave: a skipped peer test
//     proves nothing, so it must never turn CI green;
//   - each -require NAME must have passed in some package: a step that runs
//     one test by name must not pass by matching nothing.
//
// It exits 1 when the judgement fails, 0 otherwise; go test's own exit
// status is left to the shell (pipefail).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is the part of a test2json event this tool reads.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
}

// skipped is one test that reported "skip", with the lines it logged.
type skipped struct {
	Package, Test string
	Reason        []string
}

// report is what a run left to judge.
type report struct {
	Skipped []skipped
	Passed  map[string]bool // test names (without package) that passed
}

type requiredFlag []string

func (r *requiredFlag) String() string     { return strings.Join(*r, ",") }
func (r *requiredFlag) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	failOnSkip := flag.Bool("fail-on-skip", false, "fail when any test skipped (CI=true: every peer must exist)")
	var required requiredFlag
	flag.Var(&required, "require", "test `name` that must have passed (repeatable)")
	flag.Parse()

	rep, err := render(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreport: reading go test -json: %v\n", err)
		os.Exit(1)
	}
	if problems := judge(rep, *failOnSkip, required); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stdout, p)
		}
		os.Exit(1)
	}
}

// render copies the output of every event to out and lines that are not
// JSON events as they are, and collects what judge needs.
func render(in io.Reader, out io.Writer) (report, error) {
	rep := report{Passed: map[string]bool{}}
	running := map[string][]string{} // package + "\x00" + test → lines logged so far
	r := bufio.NewReaderSize(in, 1<<16)
	w := bufio.NewWriter(out)
	defer w.Flush()
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var ev event
			if line[0] != '{' || json.Unmarshal(line, &ev) != nil || ev.Action == "" {
				w.Write(line)
			} else {
				rep.take(ev, running, w)
			}
		}
		if err == io.EOF {
			return rep, w.Flush()
		}
		if err != nil {
			return rep, err
		}
		// Flush at line ends so a long run shows progress as it goes.
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return rep, err
			}
		}
	}
}

func (rep *report) take(ev event, running map[string][]string, w io.Writer) {
	key := ev.Package + "\x00" + ev.Test
	switch ev.Action {
	case "output", "build-output":
		io.WriteString(w, ev.Output)
		if ev.Test != "" {
			running[key] = append(running[key], ev.Output)
		}
	case "skip":
		if ev.Test != "" { // a package without tests also "skips"
			rep.Skipped = append(rep.Skipped, skipped{ev.Package, ev.Test, reason(running[key])})
		}
		delete(running, key)
	case "pass":
		if ev.Test != "" {
			rep.Passed[ev.Test] = true
		}
		delete(running, key)
	case "fail":
		delete(running, key)
	}
}

// reason keeps what the test logged, without the framework's own lines.
func reason(lines []string) []string {
	var kept []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		kept = append(kept, t)
	}
	return kept
}

// judge lists why the run must fail, if it must.
func judge(rep report, failOnSkip bool, required []string) []string {
	var problems []string
	if failOnSkip && len(rep.Skipped) > 0 {
		sort.Slice(rep.Skipped, func(i, j int) bool {
			a, b := rep.Skipped[i], rep.Skipped[j]
			return a.Package < b.Package || a.Package == b.Package && a.Test < b.Test
		})
		problems = append(problems, fmt.Sprintf("FAIL: %d test(s) skipped under CI=true (install the missing peers: scripts/install-peers.sh):", len(rep.Skipped)))
		for _, s := range rep.Skipped {
			why := strings.Join(s.Reason, " | ")
			if why == "" {
				why = "(no reason logged)"
			}
			problems = append(problems, fmt.Sprintf("  %s %s: %s", s.Package, s.Test, why))
		}
	}
	for _, name := range required {
		if !rep.Passed[name] {
			problems = append(problems, fmt.Sprintf("FAIL: required test %s did not pass (not run, skipped or failed)", name))
		}
	}
	return problems
}
