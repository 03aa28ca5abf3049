// Package auth decides who may call what on a Ferrule server: it
// authenticates a request (a bearer token, HTTP basic auth checked against
// an htpasswd file, or a verified client certificate), gives the principal
// the permissions of its roles, and refuses calls whose method needs a
// permission the principal lacks. The services never see it: it runs as
// gRPC interceptors (Policy.UnaryInterceptor, Policy.StreamInterceptor,
// keyed by full method name through Methods) and as HTTP middleware
// (Policy.HTTP).
//
// With no credential source configured everyone holds every role, as
// before authentication existed; --read_only still refuses every write.
package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Perm is a set of permissions.
type Perm uint8

const (
	// Read covers CAS and action cache reads, FindMissingBlobs, GetTree,
	// Capabilities and ByteStream reads, and the web page.
	Read Perm = 1 << iota
	// WriteCAS covers CAS uploads: BatchUpdateBlobs, ByteStream Write,
	// SpliceBlob, HTTP PUT /cas/.
	WriteCAS
	// WriteAC covers direct action cache writes: UpdateActionResult and
	// HTTP PUT /ac/.
	WriteAC
	// Execute covers Execute and WaitExecution.
	Execute
	// Publish covers the Build Event Service and execution log uploads.
	Publish
	// Work covers the scheduler stream that workers take leases on.
	Work

	// None marks methods anyone may call (health checks, /metrics).
	None Perm = 0
	// All is every permission: what everyone holds when no credential
	// source is configured.
	All = Read | WriteCAS | WriteAC | Execute | Publish | Work
	// writes are the permissions --read_only takes from everyone.
	writes = WriteCAS | WriteAC | Execute | Publish | Work
)

// Roles and their permissions. An executor uploads inputs and runs
// actions but never writes the action cache itself: under remote
// execution results come only from workers. A worker reads inputs, uploads
// outputs and holds the scheduler stream.
var roles = map[string]Perm{
	"reader":   Read,
	"writer":   Read | WriteCAS | WriteAC | Publish,
	"executor": Read | WriteCAS | Execute | Publish,
	"worker":   Read | WriteCAS | Work,
}

// roleNames are the roles in the order messages list them.
var roleNames = []string{"reader", "writer", "executor", "worker"}

// parseRoles reads a comma-separated list of role names.
func parseRoles(s string) (Perm, []string, error) {
	var p Perm
	var names []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		perm, ok := roles[r]
		if !ok {
			return 0, nil, fmt.Errorf("unknown role %q (want %s)", r, strings.Join(roleNames, ", "))
		}
		p |= perm
		if !slices.Contains(names, r) {
			names = append(names, r)
		}
	}
	return p, names, nil
}

// rolesWith names the roles that hold p, for refusal messages.
func rolesWith(p Perm) string {
	var names []string
	for _, r := range roleNames {
		if roles[r]&p == p {
			names = append(names, r)
		}
	}
	switch len(names) {
	case 0:
		return "no role"
	case 1:
		return "the " + names[0] + " role"
	}
	return "the " + strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1] + " role"
}

// Principal is an authenticated caller.
type Principal struct {
	// Name is the user, the token's name or the certificate's subject: what
	// logs show (never a secret).
	Name string
	// Via says how it authenticated: token, basic, certificate,
	// anonymous, or open (no credential source configured).
	Via   string
	Perm  Perm
	Roles []string
}

func (p *Principal) String() string {
	if p.Via == "anonymous" || p.Via == "open" {
		return p.Via
	}
	return fmt.Sprintf("%s %q (%s)", p.Via, p.Name, strings.Join(p.Roles, ","))
}
