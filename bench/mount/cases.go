package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nydus-go/nydusify/internal/treetar"
)

// mountCases measures mount time and metadata walks on a generated tree.
func (b *bench) mountCases(ctx context.Context, rep *report, entries int) error {
	src, out := filepath.Join(b.tmp, "entries"), filepath.Join(b.tmp, "entries.out")
	b.logf("generating %d entries in %s", entries, src)
	if err := makeTree(ctx, src, entries); err != nil {
		return err
	}
	b.logf("nydusify build of %s", src)
	secs, err := b.buildImage(ctx, src, out)
	if err != nil {
		return err
	}
	rep.EntriesBuildSecs = secs
	st, err := os.Stat(filepath.Join(out, "img.meta"))
	if err != nil {
		return err
	}
	rep.BootstrapBytes = st.Size()
	localfs := b.localfsArgs(out)

	for i := 0; i < b.runs; i++ {
		err := b.withMount(ctx, localfs, b.newPath("cache"), func(mnt string, d time.Duration) error {
			rep.MountSeconds = append(rep.MountSeconds, d.Seconds())
			return nil
		})
		if err != nil {
			return err
		}
		b.logf("mount %d: %.3f s", i+1, rep.MountSeconds[i])
		rep.MountBestSeconds = best(i, rep.MountBestSeconds, rep.MountSeconds[i])
	}

	var plainCold, plainWarm, mntCold, mntWarm float64
	for i := 0; i < b.readRuns; i++ {
		b.dropCaches()
		n, cold, err := timeWalk(ctx, src)
		if err != nil {
			return err
		}
		_, warm, err := timeWalk(ctx, src)
		if err != nil {
			return err
		}
		rep.Entries = n
		b.logf("walk of %s: %d entries, %.2f s cold, %.2f s warm", src, n, cold, warm)
		plainCold, plainWarm = best(i, plainCold, cold), best(i, plainWarm, warm)

		b.dropCaches()
		err = b.withMount(ctx, localfs, b.newPath("cache"), func(mnt string, d time.Duration) error {
			rep.MountColdSeconds = best(i, rep.MountColdSeconds, d.Seconds())
			mn, cold, err := timeWalk(ctx, mnt)
			if err != nil {
				return err
			}
			_, warm, err := timeWalk(ctx, mnt)
			if err != nil {
				return err
			}
			if mn != n {
				return fmt.Errorf("walk of the mount saw %d entries, the source has %d", mn, n)
			}
			b.logf("mount (%.3f s, page cache %s), walk: %.2f s first, %.2f s second", d.Seconds(), coldWord(b.dropped), cold, warm)
			mntCold, mntWarm = best(i, mntCold, cold), best(i, mntWarm, warm)
			return nil
		})
		if err != nil {
			return err
		}
	}
	rep.Walk = ratios([]row{
		{Case: "plain dir, page cache " + coldWord(b.dropped)},
		{Case: "plain dir, page cache warm"},
		{Case: "mount, first walk (" + coldWord(b.dropped) + ")"},
		{Case: "mount, second walk (kernel caches warm)"},
	}, []float64{plainCold, plainWarm, mntCold, mntWarm}, 0)
	return nil
}

// readCases measures full reads of tree, plain and through the mount. The
// image is the tree as a one-layer OCI image converted by `nydusify
// convert`, once into an OCI layout (the localfs cases mount it by
// reference, blobs read from the layout) and once into a registry.
func (b *bench) readCases(ctx context.Context, rep *report, tree string) error {
	srcLayout := filepath.Join(b.tmp, "tree.oci")
	src := "oci:" + srcLayout + ":tree"
	b.logf("writing %s as a one-layer OCI image", tree)
	if err := treetar.WriteLayout(tree, srcLayout, "tree"); err != nil {
		return err
	}
	local := "oci:" + filepath.Join(b.tmp, "tree.nydus") + ":tree"
	conv, secs, err := b.convert(ctx, src, local)
	if err != nil {
		return err
	}
	rep.Tree, rep.TreeConvertSecs = tree, secs
	if len(conv.Platforms) != 1 {
		return fmt.Errorf("convert made %d platform images, want 1", len(conv.Platforms))
	}
	rep.TreeBootstrapBytes, rep.TreeBlobBytes = int64(conv.Platforms[0].BootstrapSize), conv.Platforms[0].BlobBytes

	// want is what every read must find: the plain directory's totals.
	var want readStats
	// read times cold or warm reads of root, checking what it read.
	read := func(what, root string, cold bool) (float64, error) {
		if cold {
			b.dropCaches()
		}
		got, secs, err := timeRead(ctx, root)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		if want.files == 0 {
			want = got
		} else if got != want {
			return 0, fmt.Errorf("%s: read %d files, %d bytes; the plain directory has %d files, %d bytes", what, got.files, got.bytes, want.files, want.bytes)
		}
		b.logf("%s: %.2f s, %.1f MB/s", what, secs, mb(got.bytes)/secs)
		return secs, nil
	}
	// mounted reads the image through a fresh mount with backendArgs and
	// chunk cache directory cache.
	mounted := func(what string, backendArgs []string, cache string) (float64, error) {
		var secs float64
		err := b.withMount(ctx, backendArgs, cache, func(mnt string, d time.Duration) error {
			var err error
			secs, err = read(what, mnt, true)
			return err
		})
		return secs, err
	}

	var plainCold, plainWarm, localCold, regCold, cacheWarm float64
	for i := 0; i < b.readRuns; i++ {
		cold, err := read("plain dir, page cache "+coldWord(b.dropped), tree, true)
		if err != nil {
			return err
		}
		warm, err := read("plain dir, page cache warm", tree, false)
		if err != nil {
			return err
		}
		plainCold, plainWarm = best(i, plainCold, cold), best(i, plainWarm, warm)
	}
	rep.TreeFiles, rep.TreeBytes = want.files, want.bytes

	localfs := []string{"--target", local}
	var cache string
	for i := 0; i < b.readRuns; i++ {
		cache = b.newPath("cache")
		secs, err := mounted("mount localfs, cold chunk cache", localfs, cache)
		if err != nil {
			return err
		}
		localCold = best(i, localCold, secs)
	}
	for i := 0; i < b.readRuns; i++ {
		secs, err := mounted("mount localfs, warm chunk cache (remounted)", localfs, cache)
		if err != nil {
			return err
		}
		cacheWarm = best(i, cacheWarm, secs)
	}

	reg, err := b.startRegistry()
	if err != nil {
		return err
	}
	defer reg.stop()
	rep.Registry = reg.kind
	remote := reg.host + "/" + repoName + ":tree"
	if _, _, err := b.convert(ctx, src, remote, "--plain-http"); err != nil {
		return err
	}
	regArgs := []string{"--target", remote, "--plain-http"}
	for i := 0; i < b.readRuns; i++ {
		secs, err := mounted("mount registry, cold chunk cache", regArgs, b.newPath("cache"))
		if err != nil {
			return err
		}
		regCold = best(i, regCold, secs)
	}

	rep.Read = ratios([]row{
		{Case: "a. plain dir, page cache " + coldWord(b.dropped)},
		{Case: "a. plain dir, page cache warm"},
		{Case: "b. mount localfs, cold chunk cache"},
		{Case: "c. mount registry, cold chunk cache"},
		{Case: "d. mount, warm chunk cache (remounted)"},
	}, []float64{plainCold, plainWarm, localCold, regCold, cacheWarm}, want.bytes)
	return nil
}

// best folds run i's seconds v into the best so far.
func best(i int, cur, v float64) float64 {
	if i == 0 || v < cur {
		return v
	}
	return cur
}
