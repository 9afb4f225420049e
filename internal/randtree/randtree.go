// Package randtree writes a random source tree for property tests: the same
// seed gives the same tree, different seeds explore different mixes of file
// types, names, sizes, hardlinks, xattrs, modes, owners and timestamps.
//
// Regular file sizes cluster around multiples of Options.ChunkSize (one
// below, at and one above the edge) and of the 4 KiB block, with holes,
// all-zero files and contents repeated across files (chunk dedup). Names mix
// ASCII punctuation, multi-byte UTF-8 and 255-byte names. Hardlinks join
// files across directories. user.* xattrs (empty, short and ~1000-byte
// values) go on files and directories. With Options.Root the tree adds
// character and block devices, owners up to 4294967294 and trusted.*
// xattrs. Mtimes carry nanoseconds; directories get theirs last.
//
// The generator avoids only what a container image cannot carry or means
// otherwise: whiteout names (".wh." prefix) and sockets.
package randtree

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options shape the tree. The zero value makes about 60 entries, sizes
// around 4 KiB chunks, and nothing that needs root.
type Options struct {
	// ChunkSize is the chunk size the tree's file sizes cluster around;
	// 0 means 4096.
	ChunkSize int64
	// Entries is how many entries (besides the root) to make; 0 means 60.
	Entries int
	// Root adds devices, large owners and trusted.* xattrs.
	Root bool
}

// Stats counts what a tree holds.
type Stats struct {
	Dirs, Files, Symlinks, Hardlinks, Fifos, Devices, Xattrs int
	Bytes                                                    int64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d dirs, %d files (%d bytes), %d symlinks, %d hardlinks, %d fifos, %d devices, %d xattrs",
		s.Dirs, s.Files, s.Bytes, s.Symlinks, s.Hardlinks, s.Fifos, s.Devices, s.Xattrs)
}

type gen struct {
	root  string
	rng   *rand.Rand
	opts  Options
	stats Stats
	dirs  []string // relative, "" is the root
	files []string // regular files, for hardlinks and repeated contents
	used  map[string]bool
	later []string // every entry, for owners, modes and times
}

// Make writes the tree of seed into dir, which must be empty or absent.
func Make(dir string, seed uint64, opts Options) (Stats, error) {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 4096
	}
	if opts.Entries <= 0 {
		opts.Entries = 60
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Stats{}, err
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		return Stats{}, fmt.Errorf("randtree: %s must be an empty directory (%v)", dir, err)
	}
	g := &gen{root: dir, rng: rand.New(rand.NewPCG(seed, 0x6e79647573)), opts: opts,
		dirs: []string{""}, used: map[string]bool{"": true}}
	for range opts.Entries {
		if err := g.entry(); err != nil {
			return g.stats, err
		}
	}
	if err := g.finish(); err != nil {
		return g.stats, err
	}
	return g.stats, nil
}

func (g *gen) abs(rel string) string { return filepath.Join(g.root, rel) }

// name returns a new name in parent.
func (g *gen) name(parent string) string {
	for {
		var n string
		switch g.rng.IntN(6) {
		case 0: // 255 bytes, some of them multi-byte
			var b strings.Builder
			for b.Len() < 250 {
				b.WriteString(g.pick(nameRunes))
			}
			n = b.String()
			n += strings.Repeat("x", 255-len(n))
		case 1, 2: // UTF-8 and punctuation
			var b strings.Builder
			for range 1 + g.rng.IntN(8) {
				b.WriteString(g.pick(nameRunes))
			}
			n = b.String()
		default:
			const ascii = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_-."
			b := make([]byte, 1+g.rng.IntN(16))
			for i := range b {
				b[i] = ascii[g.rng.IntN(len(ascii))]
			}
			n = string(b)
		}
		if n == "." || n == ".." || strings.HasPrefix(n, ".wh.") {
			continue
		}
		rel := filepath.Join(parent, n)
		if !g.used[rel] {
			g.used[rel] = true
			return rel
		}
	}
}

var nameRunes = []string{"a", "Z", "9", " ", "-", "_", ".", "#", "%", "+", "=", "@", "~", ",", "'", "é", "ß", "Ω", "日本", "語", "😀", "\u00a0", "ü"}

func (g *gen) pick(s []string) string { return s[g.rng.IntN(len(s))] }

func (g *gen) entry() error {
	parent := g.dirs[g.rng.IntN(len(g.dirs))]
	rel := g.name(parent)
	p := g.abs(rel)
	r := g.rng.IntN(100)
	switch {
	case r < 20 && strings.Count(parent, "/") < 5:
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		g.dirs = append(g.dirs, rel)
		g.stats.Dirs++
		g.xattrs(rel)
	case r < 62:
		if err := g.file(p); err != nil {
			return err
		}
		g.files = append(g.files, rel)
		g.stats.Files++
		g.xattrs(rel)
	case r < 75:
		if err := os.Symlink(g.target(rel), p); err != nil {
			return err
		}
		g.stats.Symlinks++
	case r < 87 && len(g.files) > 0:
		if err := os.Link(g.abs(g.files[g.rng.IntN(len(g.files))]), p); err != nil {
			return err
		}
		g.stats.Hardlinks++
		return nil // shares its target's inode: owner, mode and time
	case r < 93 || !g.opts.Root:
		if err := unix.Mkfifo(p, 0o644); err != nil {
			return err
		}
		g.stats.Fifos++
	default:
		typ := uint32(unix.S_IFCHR)
		if g.rng.IntN(2) == 0 {
			typ = unix.S_IFBLK
		}
		// Majors up to 4095 and minors up to 2^20-1: the whole of dev_t.
		dev := unix.Mkdev(uint32(g.rng.IntN(4096)), uint32(g.rng.IntN(1<<20)))
		if err := unix.Mknod(p, typ|0o600, int(dev)); err != nil {
			return err
		}
		g.stats.Devices++
	}
	g.later = append(g.later, rel)
	return nil
}

// file writes a regular file whose size sits near a chunk or block edge.
func (g *gen) file(p string) error {
	cs, bs := g.opts.ChunkSize, int64(4096)
	var size int64
	switch g.rng.IntN(5) {
	case 0:
		size = int64(g.rng.IntN(3))
	case 1, 2:
		size = int64(1+g.rng.IntN(3))*cs + int64(g.rng.IntN(3)-1)
	case 3:
		size = int64(1+g.rng.IntN(4))*bs + int64(g.rng.IntN(3)-1)
	default:
		size = g.rng.Int64N(3*cs + 1)
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	g.stats.Bytes += size
	switch k := g.rng.IntN(6); {
	case k == 0 && len(g.files) > 0:
		// The contents of an earlier file, cut or extended: chunks repeat.
		other, err := os.ReadFile(g.abs(g.files[g.rng.IntN(len(g.files))]))
		if err != nil {
			return err
		}
		for int64(len(other)) < size && len(other) > 0 {
			other = append(other, other...)
		}
		if int64(len(other)) >= size {
			_, err = f.Write(other[:size])
			return err
		}
	case k == 1:
		// Holes: data only in a few blocks, zeros elsewhere.
		if err := f.Truncate(size); err != nil {
			return err
		}
		for range g.rng.IntN(3) {
			if size == 0 {
				break
			}
			off := g.rng.Int64N(size)
			b := g.bytes(min(size-off, 1+g.rng.Int64N(bs)))
			if _, err := f.WriteAt(b, off); err != nil {
				return err
			}
		}
		return nil
	}
	_, err = f.Write(g.bytes(size))
	return err
}

func (g *gen) bytes(n int64) []byte {
	b := make([]byte, n)
	if g.rng.IntN(4) == 0 {
		// Compressible: a short pattern repeated.
		pat := make([]byte, 1+g.rng.IntN(64))
		for i := range pat {
			pat[i] = byte(g.rng.Uint32())
		}
		for i := range b {
			b[i] = pat[i%len(pat)]
		}
		return b
	}
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

func (g *gen) target(rel string) string {
	switch g.rng.IntN(5) {
	case 0:
		return "/" + g.files0() // absolute
	case 1:
		return strings.Repeat("../", strings.Count(rel, "/")) + g.files0() // relative to the root
	case 2:
		return "dangling/" + filepath.Base(g.name("dangling-targets"))
	case 3:
		return strings.Repeat("long-target/", 80)[:1+g.rng.IntN(960)] // up to ~1 KiB
	default:
		return g.pick(nameRunes) + g.pick(nameRunes)
	}
}

func (g *gen) files0() string {
	if len(g.files) == 0 {
		return "nothing"
	}
	return g.files[g.rng.IntN(len(g.files))]
}

// xattrs gives a file or directory up to three xattrs.
func (g *gen) xattrs(rel string) {
	for i := range g.rng.IntN(4) {
		ns := "user."
		if g.opts.Root && g.rng.IntN(3) == 0 {
			ns = "trusted."
		}
		var v []byte
		switch g.rng.IntN(4) {
		case 0: // empty
		case 1:
			v = bytes.Repeat([]byte("v"), 900+g.rng.IntN(200))
		default:
			v = []byte(fmt.Sprintf("value %d %s", g.rng.IntN(1000), g.pick(nameRunes)))
		}
		name := fmt.Sprintf("%s%s%d", ns, strings.Repeat("k", 1+g.rng.IntN(30)), i)
		if err := unix.Lsetxattr(g.abs(rel), name, v, 0); err == nil {
			g.stats.Xattrs++
		}
	}
}

// finish sets owners, modes and times: entries first, then directories
// deepest first, so creating children does not disturb a parent's mtime.
func (g *gen) finish() error {
	dirs := slices.Clone(g.dirs)
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	isDir := map[string]bool{}
	for _, d := range dirs {
		isDir[d] = true
	}
	var all []string
	for _, rel := range g.later {
		if !isDir[rel] {
			all = append(all, rel)
		}
	}
	all = append(all, dirs...) // dirs includes the root, ""
	for _, rel := range all {
		p := g.abs(rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if g.opts.Root {
			uid, gid := g.owner(), g.owner()
			if err := unix.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("chown %s: %w", rel, err)
			}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			mode := uint32(g.rng.IntN(0o1000)) | 0o600 // readable and writable by the owner
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				mode |= 0o700
			}
			if g.rng.IntN(6) == 0 {
				mode |= uint32(g.rng.IntN(8)) << 9 // setuid, setgid, sticky
			}
			if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
				return fmt.Errorf("chmod %s: %w", rel, err)
			}
		}
		mt := time.Unix(1_000_000_000+g.rng.Int64N(1_000_000_000), g.rng.Int64N(1e9))
		ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting times of %s: %w", rel, err)
		}
	}
	return nil
}

func (g *gen) owner() int {
	switch g.rng.IntN(4) {
	case 0:
		return 0
	case 1:
		return 4294967294
	default:
		return g.rng.IntN(70000)
	}
}
