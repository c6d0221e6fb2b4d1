package main

import (
	"bytes"
	"testing"
)

// runCLI runs the CLI in-process with no standard input and returns its
// exit code and output, as a script calling the binary would see them.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	code, out, errb := runCLIInput(t, nil, args...)
	return code, string(out), string(errb)
}

// runCLIInput is runCLI with stdin (for the stdin → stdout commands).
func runCLIInput(t *testing.T, stdin []byte, args ...string) (int, []byte, []byte) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.Bytes(), errb.Bytes()
}
