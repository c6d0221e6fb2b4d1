package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes as promised in INTERFACE.md.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// app carries what every command needs: where the config is, how to print,
// and the standard streams (replaced in tests).
type app struct {
	configPath string
	output     string // text | json
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

// commandFactories are registered by the files of this package, one file per
// command group, so that groups can be added without touching this file.
var commandFactories []func(*app) *cobra.Command

func register(f func(*app) *cobra.Command) { commandFactories = append(commandFactories, f) }

// usageError marks errors that exit with code 2 (bad flags, bad config).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf builds an error that makes the command exit with code 2.
func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// asUsage wraps err so that it exits with code 2; nil stays nil.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err}
}

// silentError exits with its code without printing anything more: the
// command has already said what went wrong.
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "sealgate",
		Short:         "S/MIME encryption gateway with automated PKI",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	defaultConfig := "./sealgate.toml"
	if env := os.Getenv("SEALGATE_CONFIG"); env != "" {
		defaultConfig = env
	}
	root.PersistentFlags().StringVar(&a.configPath, "config", defaultConfig, "configuration file (env SEALGATE_CONFIG)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if a.output != "text" && a.output != "json" {
			return usageErrorf("--output must be text or json, not %q", a.output)
		}
		return nil
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return asUsage(err) })
	root.AddCommand(newVersionCmd(a))
	for _, f := range commandFactories {
		root.AddCommand(f(a))
	}
	sort.Slice(root.Commands(), func(i, j int) bool { return root.Commands()[i].Name() < root.Commands()[j].Name() })
	return root
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.print(map[string]string{"version": version}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "sealgate %s\n", version)
				return err
			})
		},
	}
}

// run executes the CLI and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var silent *silentError
	if errors.As(err, &silent) {
		return silent.code
	}
	code := exitRuntime
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		code = exitUsage
	}
	if a.output == "json" {
		_ = json.NewEncoder(stderr).Encode(map[string]string{"error": err.Error()})
	} else {
		fmt.Fprintf(stderr, "sealgate: %v\n", err)
	}
	return code
}

// isCobraUsageError recognises cobra's own argument errors (unknown
// command, wrong number of args), which it returns as plain errors.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "accepts ", "requires at least", "requires at most", "received ", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// print writes v as JSON under --output json, or calls human otherwise.
func (a *app) print(v any, human func(w io.Writer) error) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return human(a.stdout)
}

// isTTY reports whether w is a terminal (progress bars, colours).
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
