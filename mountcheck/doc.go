// Package mountcheck verifies an image by mounting it for real and reading
// it back as a container would: through the kernel's VFS, with lstat(2),
// readlink(2), the xattr calls and read(2), never through our own reader.
//
// There are three ways in, one per mounter:
//   - FUSE mounts a Nydus image lazily in this process with imagemount
//     (rafsfs over the verified chunk caches), from a bootstrap file or an
//     image reference, as `nydusify mount` does;
//   - EROFS mounts a RAFS v6 bootstrap with the kernel's own EROFS driver,
//     file-backed, the blobs' uncompressed views given as device= files in
//     blob-table order: the independent judge of what we write;
//   - StartProcess runs the `nydusify mount` binary as a child and
//     supervises it: readiness from its "mounted at" line or its --json
//     "ready" event, SIGTERM to stop, a kill and a lazy unmount when it
//     does not stop in time.
//
// Adopt takes charge of a filesystem the caller mounted some other way
// (rafsfs with a hand-made cache, say). Every Mount unmounts on Close,
// lazily when busy, and then looks in /proc/self/mountinfo: a mount point
// still listed is a stale mount, detached and reported as an error. Compare
// walks a mount against an expected directory tree with internal/treecmp and
// returns every difference; Check mounts, compares and unmounts whatever
// happens. The test helpers that register unmounting with t.Cleanup and
// skip when root, /dev/fuse or the erofs driver is missing are in
// mountcheck/mounttest, so no testing code ships in this package.
//
// The process supervisor lives here rather than in internal/ because both
// of its users are about mounting an image to check or time it (the CLI's
// mount tests and bench/mount, which imports only public packages), and
// because it shares the mount-table probe and the stale-mount rule with the
// in-process mounts: one place decides what "unmounted" means.
//
// mountcheck sits above the mount stack (imagemount, rafsfs) and below the
// checker and the benchmarks. It never imports checker, converter or cmd.
// Mounting needs root (mount(2) is called directly, without fusermount);
// without it, and without /dev/fuse or a kernel that can mount EROFS from a
// regular file, FUSE and EROFS return an error wrapping ErrUnsupported that
// names the missing piece (a supervised child fails with its own message).
package mountcheck
