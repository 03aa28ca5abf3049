package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func write(t *testing.T, name, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	writeFile(t, f, text)
	return f
}

func writeFile(t testing.TB, f, text string) {
	t.Helper()
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A malformed credential file stops the server at start-up with an error
// naming the file and the line.
func TestFileErrors(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, c := range []struct {
		name, file, text, want string
	}{
		{"token fields", "tokens", "# c\n\nci writer 0123456789abcdef\nbob reader\n", "line 4: want NAME ROLES TOKEN, got 2 fields"},
		{"token role", "tokens", "ci admin 0123456789abcdef\n", `line 1: ci: unknown role "admin"`},
		{"short token", "tokens", "ci writer short\n", "line 1: ci: token shorter than 16 characters"},
		{"duplicate token", "tokens", "a writer 0123456789abcdef\nb reader 0123456789abcdef\n", "line 2: b: the same token as a"},
		{"duplicate name", "tokens", "a writer 0123456789abcdef\na reader 0123456789abcdeg\n", "line 2: name a is already on line 1"},
		{"md5 htpasswd", "htpasswd", "alice:" + string(hash) + "\nbob:$apr1$abc$defghijklmnopqrstuvwx.\n", "line 2: user bob: not a bcrypt hash"},
		{"plain htpasswd", "htpasswd", "carol:secret\n", "line 1: user carol: not a bcrypt hash"},
		{"htpasswd role", "htpasswd", "alice:" + string(hash) + ":boss\n", `line 1: user alice: unknown role "boss"`},
		{"htpasswd shape", "htpasswd", "alice\n", "line 1: want USER:BCRYPT_HASH"},
		{"cert roles", "roles", "bob\n", "line 1: want NAME ROLES"},
	} {
		f := write(t, c.file, c.text)
		cfg := Config{ClientCertificates: true}
		switch c.file {
		case "tokens":
			cfg.TokenFile = f
		case "htpasswd":
			cfg.HtpasswdFile = f
		default:
			cfg.CertRoleFile = f
		}
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), f+" "+c.want) {
			t.Errorf("%s: got %v, want %s %s", c.name, err, f, c.want)
		}
	}
	if _, err := New(Config{TokenFile: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := New(Config{AllowUnauthenticatedReads: true}); err == nil {
		t.Error("anonymous reads without any credential source accepted")
	}
}

func TestRoles(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	p, err := New(Config{
		TokenFile:    write(t, "tokens", "ci writer,executor 0123456789abcdef\n"),
		HtpasswdFile: write(t, "htpasswd", "alice:"+string(hash)+"\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	pr, r := p.authenticate("BEARER 0123456789abcdef", nil)
	if r != nil || pr.Perm != Read|WriteCAS|WriteAC|Execute|Publish || pr.Perm&Work != 0 {
		t.Fatalf("writer,executor token: %v %v", pr, r)
	}
	pr, r = p.authenticate("Basic YWxpY2U6cHc=", nil) // alice:pw
	if r != nil || pr.Name != "alice" || pr.Perm != roles["writer"] {
		t.Fatalf("htpasswd user without a role column: %v %v", pr, r)
	}
	if _, r := p.authenticate("Token 0123456789abcdef", nil); r == nil || !strings.Contains(r.msg, "unsupported authorization scheme") {
		t.Fatalf("unknown scheme: %v", r)
	}
	if got := rolesWith(WriteCAS); got != "the writer, executor or worker role" {
		t.Errorf("rolesWith(WriteCAS) = %q", got)
	}
}
