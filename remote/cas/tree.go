package cas

import (
	"container/list"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/rpcstatus"
	"github.com/ferrule-build/ferrule/remote/store"
)

// DefaultTreeCursorEntries is the default of Options.MaxTreeCursorEntries:
// some 40 MiB of digests, room for a few trees of 100,000 directories.
const DefaultTreeCursorEntries = 1 << 18

// walk is a breadth-first GetTree walk: the directories queued and every
// directory seen (queued or returned), so that each is returned once.
type walk struct {
	root  store.Key
	index int // directories returned so far
	queue []store.Key
	seen  map[string]struct{}
}

func newWalk(root store.Key) *walk {
	return &walk{root: root, queue: []store.Key{root}, seen: map[string]struct{}{root.Hash: {}}}
}

func (w *walk) entries() int { return len(w.queue) + len(w.seen) }

// GetTree streams the directories below (and including) root_digest,
// breadth first, each distinct directory once, in pages. A page token
// names the position in that order and the walk kept where the page ended
// (its queue and the directories seen), so the next page resumes it and a
// whole tree read in pages reads each Directory once. A walk no longer
// kept (evicted, already resumed, or a restarted server) is walked again
// from the root up to the position: slower, the same answer. Subtrees
// whose directories are missing are left out; a missing root is NOT_FOUND.
func (s *Server) GetTree(req *repb.GetTreeRequest, stream grpc.ServerStreamingServer[repb.GetTreeResponse]) error {
	ctx := stream.Context()
	if err := resource.CheckInstanceStatus(req.InstanceName); err != nil {
		return err
	}
	root, err := resource.DigestKey(store.CAS, req.InstanceName, req.DigestFunction, req.RootDigest)
	if err != nil {
		return err
	}
	if req.PageSize < 0 {
		return status.Errorf(codes.InvalidArgument, "negative page_size %d", req.PageSize)
	}
	pageSize := int(req.PageSize)
	switch {
	case pageSize == 0:
		pageSize = DefaultTreePage
	case pageSize > MaxTreePage:
		pageSize = MaxTreePage
	}
	w, skip := newWalk(root), 0
	if req.PageToken != "" {
		pos, id, err := parseToken(req.PageToken)
		if err != nil {
			return err
		}
		if kept := s.cursors.take(id); kept != nil && kept.root == root && kept.index == pos {
			w = kept
		} else {
			skip = pos
		}
	}

	var page []*repb.Directory
	for len(w.queue) > 0 {
		if err := ctx.Err(); err != nil {
			return rpcstatus.Error(err)
		}
		k := w.queue[0]
		w.queue[0] = store.Key{}
		w.queue = w.queue[1:]
		data, err := readBlob(ctx, s.store, k)
		if status.Code(err) == codes.NotFound {
			if k == root && w.index == 0 {
				return status.Errorf(codes.NotFound, "tree root %s/%d not found", root.Hash, root.Size)
			}
			continue
		}
		if err != nil {
			return err
		}
		dir := &repb.Directory{}
		if err := proto.Unmarshal(data, dir); err != nil {
			if k == root {
				return status.Errorf(codes.InvalidArgument, "tree root %s/%d is not a Directory: %v", root.Hash, root.Size, err)
			}
			return status.Errorf(codes.FailedPrecondition, "directory %s/%d in the tree of %s/%d is not a Directory: %v", k.Hash, k.Size, root.Hash, root.Size, err)
		}
		for _, sub := range dir.Directories {
			sk, err := resource.DigestKey(store.CAS, req.InstanceName, root.Function, sub.Digest)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "directory %s/%d: child %q: %v", k.Hash, k.Size, sub.Name, status.Convert(err).Message())
			}
			if _, ok := w.seen[sk.Hash]; !ok {
				w.seen[sk.Hash] = struct{}{}
				w.queue = append(w.queue, sk)
			}
		}
		if w.index >= skip {
			page = append(page, dir)
		}
		w.index++
		if len(page) == pageSize && len(w.queue) > 0 {
			token := makeToken(w.index, s.cursors.keep(w))
			return stream.Send(&repb.GetTreeResponse{Directories: page, NextPageToken: token})
		}
	}
	return stream.Send(&repb.GetTreeResponse{Directories: page})
}

// A page token is base64url of "c<position>.<walk id>"; the id is empty
// when the walk was not kept.
func makeToken(pos int, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("c" + strconv.Itoa(pos) + "." + id))
}

func parseToken(t string) (pos int, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err == nil && len(b) > 1 && b[0] == 'c' {
		p, rest, ok := strings.Cut(string(b[1:]), ".")
		n, err := strconv.Atoi(p)
		if ok && err == nil && n > 0 && (rest == "" || isWalkID(rest)) {
			return n, rest, nil
		}
	}
	return 0, "", status.Errorf(codes.InvalidArgument, "bad page_token %q: not one this server gave", t)
}

const walkIDLen = 32 // hex characters

func isWalkID(s string) bool {
	if len(s) != walkIDLen {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// cursorCache keeps the walks of paged GetTree calls for their next page,
// least recently kept dropped first, within a bound on their entries.
type cursorCache struct {
	max int

	mu      sync.Mutex
	entries int
	order   list.List                // of *kept, oldest first
	byID    map[string]*list.Element // id -> element of order
}

type kept struct {
	id string
	w  *walk
}

func newCursorCache(max int) *cursorCache {
	return &cursorCache{max: max, byID: map[string]*list.Element{}}
}

// keep stores w and returns its id, or "" if w is larger than the bound.
func (c *cursorCache) keep(w *walk) string {
	n := w.entries()
	if n > c.max {
		return ""
	}
	var b [walkIDLen / 2]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.entries+n > c.max {
		oldest := c.order.Front()
		c.remove(oldest)
	}
	c.byID[id] = c.order.PushBack(&kept{id: id, w: w})
	c.entries += n
	return id
}

// take removes and returns the walk kept under id, or nil.
func (c *cursorCache) take(id string) *walk {
	if id == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.remove(e)
	return e.Value.(*kept).w
}

func (c *cursorCache) remove(e *list.Element) {
	k := e.Value.(*kept)
	c.order.Remove(e)
	delete(c.byID, k.id)
	c.entries -= k.w.entries()
}
