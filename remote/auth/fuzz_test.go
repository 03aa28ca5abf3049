package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzFile writes data where the parsers read it from; one file a fuzz
// process, rewritten for each input.
func fuzzFile(f *testing.F) string {
	return filepath.Join(f.TempDir(), "file")
}

func writeFuzzFile(t *testing.T, file string, data []byte) {
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzTokenFile: any token file is a table or an error naming the file;
// every principal in a table has a name and at least one role, and holds
// the Perm its roles give.
// Run: go test -run '^$' -fuzz '^FuzzTokenFile$' -fuzztime 10s ./remote/auth/
func FuzzTokenFile(f *testing.F) {
	f.Add([]byte("# ci tokens\nci writer,executor 0123456789abcdef0123\nbazel reader\tfedcba9876543210fedc\n"))
	f.Add([]byte("a reader short\n"))
	f.Add([]byte("a admin 0123456789abcdef0123\na reader 0123456789abcdef0124\n"))
	f.Add([]byte("x worker,,reader 0123456789abcdef\xff123\n"))
	file := fuzzFile(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		writeFuzzFile(t, file, data)
		tokens, err := readTokens(file)
		if err != nil {
			if !strings.Contains(err.Error(), "token file") {
				t.Fatalf("error does not say which file: %v", err)
			}
			return
		}
		for _, p := range tokens {
			checkPrincipal(t, p)
		}
	})
}

// FuzzHtpasswdFile: any htpasswd file is a user table or an error; every
// user has a bcrypt hash and roles.
// Run: go test -run '^$' -fuzz '^FuzzHtpasswdFile$' -fuzztime 10s ./remote/auth/
func FuzzHtpasswdFile(f *testing.F) {
	f.Add([]byte("alice:$2y$05$3ZqkZcpUu8Cw2Kmt0ZTy6e7bTgaV2vU9hpU5J7yQ3r8N0jS1oX0Lq\nbob:$2y$05$3ZqkZcpUu8Cw2Kmt0ZTy6e7bTgaV2vU9hpU5J7yQ3r8N0jS1oX0Lq:reader\n"))
	f.Add([]byte("carol:{SHA}abc\n"))
	f.Add([]byte(":$2y$05$x\nd:$2a$99$:writer:extra\n"))
	file := fuzzFile(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		writeFuzzFile(t, file, data)
		users, err := readHtpasswd(file)
		if err != nil {
			return
		}
		for name, u := range users {
			if name == "" || u.Principal == nil || len(u.hash) == 0 || u.Name != name {
				t.Fatalf("user %q: %+v", name, u)
			}
			checkPrincipal(t, u.Principal)
		}
	})
}

// FuzzCertRolesFile: any client certificate role file is a list of names
// with roles or an error.
// Run: go test -run '^$' -fuzz '^FuzzCertRolesFile$' -fuzztime 10s ./remote/auth/
func FuzzCertRolesFile(f *testing.F) {
	f.Add([]byte("worker-1.example worker\nci@example executor,writer\n"))
	f.Add([]byte("only-a-name\n"))
	f.Add([]byte("spiffe://x/y reader,nobody\n\n# comment\n"))
	file := fuzzFile(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		writeFuzzFile(t, file, data)
		roles, err := readCertRoles(file)
		if err != nil {
			return
		}
		for _, r := range roles {
			if r.name == "" || len(r.roles) == 0 {
				t.Fatalf("entry without a name or roles: %+v", r)
			}
		}
	})
}

func checkPrincipal(t *testing.T, p *Principal) {
	t.Helper()
	if p == nil || p.Name == "" || len(p.Roles) == 0 {
		t.Fatalf("principal without a name or roles: %+v", p)
	}
	perm, _, err := parseRoles(strings.Join(p.Roles, ","))
	if err != nil || perm != p.Perm {
		t.Fatalf("principal %s: roles %v give %v, it holds %v (%v)", p.Name, p.Roles, perm, p.Perm, err)
	}
}
