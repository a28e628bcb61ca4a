package vsphere

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestCredentialsNeverPrinted formats credentials every way a log line or
// an error might: the user shows, the password never does.
func TestCredentialsNeverPrinted(t *testing.T) {
	c := Credentials{User: "backup@vsphere.local", Password: "hunter2-secret"}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("connect", "credentials", c)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("connect", "credentials", c, "nested", struct{ C Credentials }{c})
	marshalled, err := json.Marshal(struct{ C Credentials }{c})
	if err != nil {
		t.Fatal(err)
	}
	outs := map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c), "%s": fmt.Sprintf("%s", c),
		"slog text": text.String(), "slog json": js.String(), "json": string(marshalled),
	}
	for how, out := range outs {
		if strings.Contains(out, c.Password) {
			t.Errorf("%s prints the password: %s", how, out)
		}
		if !strings.Contains(out, c.User) {
			t.Errorf("%s hides the user too: %s", how, out)
		}
	}
}
