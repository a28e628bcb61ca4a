package nbd

import "testing"

func TestParseURI(t *testing.T) {
	cases := []struct {
		in   string
		want Target
	}{
		{"nbd://host/disk", Target{"tcp", "host:10809", "disk", false}},
		{"nbd://10.1.2.3:1234/", Target{"tcp", "10.1.2.3:1234", "", false}},
		{"nbds://[::1]:99/a%20b", Target{"tcp", "[::1]:99", "a b", true}},
		{"nbd+unix:///exp?socket=/run/x.sock", Target{"unix", "/run/x.sock", "exp", false}},
		{"nbds+unix:///?socket=/s", Target{"unix", "/s", "", true}},
		{"/run/nbd.sock", Target{"unix", "/run/nbd.sock", "", false}},
	}
	for _, c := range cases {
		got, err := ParseURI(c.in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseURI(%q) = %+v, want %+v", c.in, got, c.want)
		}
		back, err := ParseURI(got.String())
		if err != nil || back != got {
			t.Errorf("round trip of %q via %q = %+v, %v", c.in, got.String(), back, err)
		}
	}
	for _, bad := range []string{"http://x/y", "nbd:///nohost", "nbd+unix:///e", "nbd+unix://host/e?socket=/s", "::"} {
		if _, err := ParseURI(bad); err == nil {
			t.Errorf("ParseURI(%q) succeeded, want an error", bad)
		}
	}
}
