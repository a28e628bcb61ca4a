package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestJSONFailures: a --json command that fails without having printed its
// document gets a JSON error object (with the fields its error adds and
// its exit status); one that printed its document and then failed (verify
// with bad blocks) gets no second document; without --json nothing is
// added.
func TestJSONFailures(t *testing.T) {
	var out bytes.Buffer
	cmds := []*cli.Command{
		{Name: "plain", Flags: []cli.Flag{jsonFlag()}, Action: func(*cli.Context) error {
			return restoreFailed{cli.Exit("it broke", 3), map[string]any{"removed_vm": "web"}}
		}},
		{Name: "shown", Flags: []cli.Flag{jsonFlag()}, Action: func(c *cli.Context) error {
			printJSONTo(&out, map[string]int{"bad": 1})
			return afterJSON(c.Bool("json"), cli.Exit("verify: 1 bad blocks", 1))
		}},
	}
	jsonFailures(cmds, func() io.Writer { return &out })
	run := func(args ...string) error {
		out.Reset()
		app := &cli.App{Name: "cairn", Commands: cmds, Writer: io.Discard, ErrWriter: io.Discard, ExitErrHandler: func(*cli.Context, error) {}}
		return app.Run(append([]string{"cairn"}, args...))
	}

	err := run("plain", "--json")
	var got map[string]any
	if jerr := json.Unmarshal(out.Bytes(), &got); jerr != nil || got["error"] != "it broke" || got["removed_vm"] != "web" || got["exit_code"] != float64(3) {
		t.Errorf("plain --json: %q (%v)", out.String(), jerr)
	}
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != 3 {
		t.Errorf("plain --json: exit status lost: %v", err)
	}
	if run("plain"); out.Len() != 0 {
		t.Errorf("plain without --json printed %q", out.String())
	}
	err = run("shown", "--json")
	if dec := json.NewDecoder(strings.NewReader(out.String())); dec.Decode(new(any)) != nil || dec.More() {
		t.Errorf("shown --json: want its one document, got %q", out.String())
	}
	if !errors.As(err, &ec) || ec.ExitCode() != 1 {
		t.Errorf("shown --json: exit status lost: %v", err)
	}
}

func printJSONTo(w io.Writer, v any) { json.NewEncoder(w).Encode(v) }
