package rafs

import (
	"errors"
	"fmt"
	"hash"
	"path"
)

// The Merkle tree of a v5 bootstrap (§4): every inode record carries a
// digest, made with the image's digester, of
//
//   - a regular file: its chunk digests, in file order;
//   - a symlink: its target;
//   - a directory: its children's digests, in child (name) order;
//   - anything else: nothing.
//
// Names, modes, sizes, owners and times are not hashed: the tree vouches
// for content and shape, not for attributes.

// DigestMismatch is one inode record whose stored digest differs from the
// one recomputed from what lies below it.
type DigestMismatch struct {
	Path     string
	Index    uint32 // inode index of the record
	Stored   [32]byte
	Computed [32]byte
}

// MerkleReport is the result of recomputing a v5 bootstrap's Merkle tree.
type MerkleReport struct {
	Digester Digester
	// Root is the root directory's stored digest, ComputedRoot the one
	// recomputed from the leaves; they are equal exactly when no
	// mismatch reaches the root.
	Root, ComputedRoot [32]byte
	// Inodes is how many records were recomputed: every record, each
	// hardlink on its own.
	Inodes     int
	Mismatches []DigestMismatch
}

// ErrNoMerkleTree is returned by VerifyMerkle for a v6 bootstrap, whose
// inodes carry no digests.
var ErrNoMerkleTree = errors.New("a RAFS v6 bootstrap has no Merkle tree (only RAFS v5 inodes carry digests)")

// RootDigest returns the stored root digest of a v5 bootstrap; ok is false
// for v6.
func (rd *Reader) RootDigest() (d [32]byte, ok bool) {
	if rd.v5 == nil {
		return d, false
	}
	return rd.v5.recs[V5RootIndex-1].Digest, true
}

// VerifyMerkle recomputes every inode digest of a v5 bootstrap bottom-up,
// each from the recomputed digests below it, and reports every record whose
// stored digest differs: a change to a file's chunk digest names the file
// and each directory up to the root. Chunk data is not read: Image.Verify
// checks chunks against their digests.
func (rd *Reader) VerifyMerkle() (*MerkleReport, error) {
	v := rd.v5
	if v == nil {
		return nil, ErrNoMerkleTree
	}
	dig, err := SuperDigester(v.sb.Flags)
	if err != nil {
		return nil, err
	}
	computed := make([][32]byte, len(v.recs)+1)
	h := dig.New()
	var sum []byte
	rep := &MerkleReport{Digester: dig, Inodes: len(v.order)}
	// Reverse breadth-first order visits every child before its parent.
	for k := len(v.order) - 1; k >= 0; k-- {
		r := &v.recs[v.order[k]-1]
		h.Reset()
		v.hashRecord(h, r, computed)
		sum = h.Sum(sum[:0])
		c := &computed[r.index]
		copy(c[:], sum)
		if *c != r.Digest {
			rep.Mismatches = append(rep.Mismatches, DigestMismatch{Index: r.index, Stored: r.Digest, Computed: *c})
		}
	}
	for i := range rep.Mismatches {
		rep.Mismatches[i].Path = v.path(rep.Mismatches[i].Index)
	}
	rep.Root, rep.ComputedRoot = v.recs[V5RootIndex-1].Digest, computed[V5RootIndex]
	return rep, nil
}

// hashRecord feeds h what record r's digest covers; computed holds the
// recomputed digests of its children.
func (v *v5Reader) hashRecord(h hash.Hash, r *v5Record, computed [][32]byte) {
	switch r.typ() {
	case ModeReg:
		for k := uint32(0); k < r.ChildCount; k++ {
			off := r.chunks + uint64(k)*ChunkTableEntrySize
			h.Write(v.data[off : off+32])
		}
	case ModeLnk:
		h.Write([]byte(r.target))
	case ModeDir:
		for c := r.ChildIndex; c < r.ChildIndex+r.ChildCount; c++ {
			h.Write(computed[c][:])
		}
	}
}

// path returns the path of inode index i.
func (v *v5Reader) path(i uint32) string {
	var names []string
	for ; i != V5RootIndex; i = v.recs[i-1].parent {
		names = append(names, v.recs[i-1].name)
	}
	p := "/"
	for k := len(names) - 1; k >= 0; k-- {
		p = path.Join(p, names[k])
	}
	return p
}

// ErrDigestChain is wrapped by VerifyDigest's errors about a record whose
// digest does not match what it covers. It wraps ErrCorrupt.
var ErrDigestChain = fmt.Errorf("%w: inode digest mismatch", ErrCorrupt)

// VerifyDigest checks one link of a v5 bootstrap's digest chain, as nydusd
// does with digest_validate: node n's stored digest must be the hash of its
// chunk digests, target, or children's stored digests (§4.1). Checking each
// directory on the way down and the node reached verifies the path from the
// root's digest to the node's content. The error names the path.
func (rd *Reader) VerifyDigest(n *Node) error {
	v := rd.v5
	if v == nil {
		return ErrNoMerkleTree
	}
	if n.v5 == nil {
		return fmt.Errorf("node %d is not from this bootstrap", n.Nid)
	}
	dig, err := SuperDigester(v.sb.Flags)
	if err != nil {
		return err
	}
	r := n.v5
	h := dig.New()
	if r.typ() == ModeDir {
		for c := r.ChildIndex; c < r.ChildIndex+r.ChildCount; c++ {
			h.Write(v.recs[c-1].Digest[:])
		}
	} else {
		v.hashRecord(h, r, nil)
	}
	var got [32]byte
	copy(got[:], h.Sum(nil))
	if got != r.Digest {
		return fmt.Errorf("%w: %s (inode %d) stores %x, its content hashes to %x", ErrDigestChain, v.path(r.index), r.index, r.Digest[:8], got[:8])
	}
	return nil
}
