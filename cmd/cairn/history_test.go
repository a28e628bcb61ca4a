package main

import "testing"

func TestWindowsPath(t *testing.T) {
	for in, want := range map[string]string{
		`C:\Users\bob\Q3 report.xlsx`: "/Users/bob/Q3 report.xlsx",
		`d:/Data/x`:                   "/Data/x",
		`/etc/back\slash`:             `/etc/back\slash`,
		`notes\C:\x`:                  `notes\C:\x`,
		`C:`:                          `C:`,
	} {
		if got := windowsPath(in); got != want {
			t.Errorf("windowsPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/app.conf":     "/etc/app.conf",
		"/Docs/Q3 Report.x": "'/Docs/Q3 Report.x'",
		"it's":              `'it'\''s'`,
		"lvm/vg/root":       "lvm/vg/root",
		"$HOME":             "'$HOME'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
