package rafsbuild

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
)

// normalizePatterns cleans prefetch patterns and drops those an earlier
// pattern covers (itself or a parent directory), as nydus-image does.
func normalizePatterns(patterns []string, logger logrus.FieldLogger) ([]string, error) {
	var out []string
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("prefetch pattern %q is not an absolute path", p)
		}
		p = path.Clean(p)
		covered := false
		for q := p; ; q = path.Dir(q) {
			if slices.Contains(out, q) {
				covered = true
				break
			}
			if q == "/" {
				break
			}
		}
		if covered {
			logger.Warnf("prefetch pattern %s is covered by an earlier pattern and omitted", p)
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// prefetchNodes returns, in pattern order, the nodes of t the patterns name
// exactly: the prefetch table's entries (§1.6). Patterns naming no path, or
// an empty regular file, have no entry, as with nydus-image.
func prefetchNodes(t *tree, patterns []string) []*node {
	var out []*node
	for _, p := range patterns {
		n := t.root
		for name := range strings.SplitSeq(strings.TrimPrefix(p, "/"), "/") {
			if name == "" || n == nil {
				continue
			}
			n = n.child(name)
		}
		if n == nil || (n.isReg() && n.data.size == 0) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// prefetchFirst returns the visiting order with the regular files the
// patterns cover moved to the front, by pattern then visiting order: the
// order a directory build writes data in, as nydus-image's does.
func prefetchFirst(order []*node, patterns []string) []*node {
	if len(patterns) == 0 {
		return order
	}
	ranks := make(map[*node]int, len(order))
	for _, n := range order {
		ranks[n] = len(patterns)
		if !n.isReg() || n.data.size == 0 {
			continue
		}
		p := n.path()
		for i, pat := range patterns {
			if pat == "/" || p == pat || strings.HasPrefix(p, pat+"/") {
				ranks[n] = i
				break
			}
		}
	}
	out := slices.Clone(order)
	slices.SortStableFunc(out, func(a, b *node) int { return ranks[a] - ranks[b] })
	return out
}
