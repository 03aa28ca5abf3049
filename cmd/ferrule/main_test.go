package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelpListsCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"help"}, &out, &errb); code != 0 {
		t.Fatalf("help exited %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "version") {
		t.Errorf("help does not list version:\n%s", out.String())
	}
}

func TestUnknownCommandFails(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command exited %d, want 2", code)
	}
	if !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Errorf("stderr does not name the command: %q", errb.String())
	}
}

func TestUnknownFlagFails(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version", "--bogus"}, &out, &errb); code != 2 {
		t.Fatalf("unknown flag exited %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "bogus") {
		t.Errorf("stderr does not name the flag: %q", errb.String())
	}
}

func TestNoArgsPrintsHelpAndFails(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 {
		t.Fatalf("no args exited %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "commands:") {
		t.Errorf("no-args output lacks the command list: %q", errb.String())
	}
}
