package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// minTokenLength is the shortest token a token file may hold.
const minTokenLength = 16

// fileError names the file and line a bad entry is on.
func fileError(kind, file string, line int, format string, args ...any) error {
	return fmt.Errorf("%s %s line %d: %s", kind, file, line, fmt.Sprintf(format, args...))
}

// lines calls f with the number and text of each line of file that is not
// blank or a # comment.
func lines(kind, file string, f func(n int, line string) error) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := f(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", kind, file, err)
	}
	return nil
}

// tokenKey is what a token is looked up by: its SHA-256, so that the
// table holds no token and a lookup does not compare secrets byte by byte.
type tokenKey [sha256.Size]byte

func keyOf(secret string) tokenKey { return sha256.Sum256([]byte(secret)) }

// readTokens reads a token file: one token a line, as
//
//	NAME ROLES TOKEN
//
// separated by spaces or tabs, ROLES a comma-separated list of reader,
// writer, executor and worker, TOKEN at least 16 printable characters
// without spaces. Blank lines and lines starting with # are skipped.
func readTokens(file string) (map[tokenKey]*Principal, error) {
	const kind = "token file"
	tokens := map[tokenKey]*Principal{}
	names := map[string]int{}
	err := lines(kind, file, func(n int, line string) error {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return fileError(kind, file, n, "want NAME ROLES TOKEN, got %d fields", len(fields))
		}
		name, roleList, token := fields[0], fields[1], fields[2]
		perm, roles, err := parseRoles(roleList)
		if err != nil {
			return fileError(kind, file, n, "%s: %v", name, err)
		}
		if len(token) < minTokenLength {
			return fileError(kind, file, n, "%s: token shorter than %d characters", name, minTokenLength)
		}
		for _, c := range token {
			if c <= ' ' || c > '~' {
				return fileError(kind, file, n, "%s: token holds a character that is not printable ASCII", name)
			}
		}
		if first, ok := names[name]; ok {
			return fileError(kind, file, n, "name %s is already on line %d", name, first)
		}
		k := keyOf(token)
		if other, ok := tokens[k]; ok {
			return fileError(kind, file, n, "%s: the same token as %s", name, other.Name)
		}
		names[name] = n
		tokens[k] = &Principal{Name: name, Via: "token", Perm: perm, Roles: roles}
		return nil
	})
	return tokens, err
}

// user is an htpasswd entry.
type user struct {
	hash []byte
	*Principal
}

// readHtpasswd reads an htpasswd file of bcrypt entries (htpasswd -B),
//
//	USER:HASH[:ROLES]
//
// ROLES, when present, as in the token file; without it the user is a
// writer.
func readHtpasswd(file string) (map[string]user, error) {
	const kind = "htpasswd file"
	users := map[string]user{}
	err := lines(kind, file, func(n int, line string) error {
		fields := strings.Split(line, ":")
		if len(fields) < 2 || len(fields) > 3 || fields[0] == "" {
			return fileError(kind, file, n, "want USER:BCRYPT_HASH or USER:BCRYPT_HASH:ROLES")
		}
		name, hash := fields[0], []byte(fields[1])
		if _, err := bcrypt.Cost(hash); err != nil || !bytes.HasPrefix(hash, []byte("$2")) {
			return fileError(kind, file, n, "user %s: not a bcrypt hash (only bcrypt is supported: htpasswd -B)", name)
		}
		roleList := "writer"
		if len(fields) == 3 {
			roleList = fields[2]
		}
		perm, roles, err := parseRoles(roleList)
		if err != nil {
			return fileError(kind, file, n, "user %s: %v", name, err)
		}
		if _, ok := users[name]; ok {
			return fileError(kind, file, n, "user %s is listed twice", name)
		}
		users[name] = user{hash: hash, Principal: &Principal{Name: name, Via: "basic", Perm: perm, Roles: roles}}
		return nil
	})
	return users, err
}

// certRole gives the certificates naming Name (as common name or as a DNS,
// e-mail or URI subject alternative name) the roles.
type certRole struct {
	name  string
	perm  Perm
	roles []string
}

// readCertRoles reads a client certificate role file: NAME ROLES a line.
func readCertRoles(file string) ([]certRole, error) {
	const kind = "client certificate role file"
	var out []certRole
	err := lines(kind, file, func(n int, line string) error {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return fileError(kind, file, n, "want NAME ROLES, got %d fields", len(fields))
		}
		perm, roles, err := parseRoles(fields[1])
		if err != nil {
			return fileError(kind, file, n, "%s: %v", fields[0], err)
		}
		out = append(out, certRole{name: fields[0], perm: perm, roles: roles})
		return nil
	})
	return out, err
}
