package backupd

import (
	"strings"
)

// credentialEnv reports whether an environment variable may hold a
// credential: cairn's own vCenter variables, and any name that says
// password, secret, token, credential or key (AWS_SECRET_ACCESS_KEY,
// CAIRN_API_TOKEN, ...). Such variables are never passed on to the
// processes cairn spawns (the NBD server gets its password through
// {password_file}, a 0600 file).
func credentialEnv(name string) bool {
	n := strings.ToUpper(name)
	if strings.HasPrefix(n, "CAIRN_VC_") {
		return true
	}
	for _, w := range []string{"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE_KEY", "ACCESS_KEY", "API_KEY"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return strings.HasSuffix(n, "_KEY") || strings.HasSuffix(n, "_PASS") || strings.HasSuffix(n, "_PW")
}

// childEnv is env without the variables that may hold credentials.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !credentialEnv(name) {
			out = append(out, kv)
		}
	}
	return out
}
