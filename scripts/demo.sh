#!/usr/bin/env bash
# The main jobs on a generated sample, told as a short report: generate the
# sample tree (every file type, xattrs, hardlinks, 255-byte and UTF-8 names;
# device nodes and 32-bit owners as root) and an OCI image of it; convert that
# image to a Nydus image (OCI layout to OCI layout); build a RAFS v6 image
# straight from the tree and inspect it, verifying every chunk; then prove
# them: as root, the Linux kernel mounts the build as EROFS over its blob
# views (otherwise our reader unpacks it), check compares the converted image
# with its source, and, as root, nydusify mount serves it lazily over FUSE;
# each is compared with the source tree. Every step ends in a verdict; the
# script exits 1 if any failed. Works as root and as any other user.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
demo=demo
nydusify=bin/nydusify
rm -rf "$demo"
mkdir -p "$demo"

verdicts=()
failed=0
step() { printf '\n%s\n' "$*"; }
# verdict PASS|FAIL TEXT records a step's outcome and prints it.
verdict() {
	printf '  => %s: %s\n' "$1" "$2"
	verdicts+=("$1  $2")
	[[ $1 == PASS ]] || failed=1
}
# size PATH prints the apparent size of a file or tree with a binary unit.
size() { du -sb "$1" | cut -f1 | numfmt --to=iec-i --suffix=B --format=%.1f | sed 's/\([0-9]\)\([KMGT]\)/\1 \2/'; }
# compare WANT GOT WHAT: treediff prints every difference, or nothing when equal.
compare() {
	local out
	if out=$("$demo/treediff" "$1" "$2" 2>&1); then
		verdict PASS "$3"
	else
		printf '%s\n' "$out" | sed 's/^/     /' | head -20
		verdict FAIL "$3"
	fi
}

root=no
[[ $(id -u) == 0 ]] && root=yes
go build -o "$demo/treediff" ./internal/treecmp/treediff || exit 1

step "1. Sample: a generated file tree and an OCI image of it"
root_flag=()
[[ $root == yes ]] && root_flag=(-root)
if ! go run ./internal/fstree/mkfstree "${root_flag[@]}" -oci "$demo/oci:sample" "$demo/rootfs"; then
	echo "  could not generate the sample"; exit 1
fi
echo "  tree       $demo/rootfs: $(find "$demo/rootfs" | wc -l) entries, $(size "$demo/rootfs")$([[ $root == yes ]] || echo ' (no device nodes or foreign owners: not root)')"
echo "  OCI image  $demo/oci (tag sample): $(size "$demo/oci") with gzip layers"

step "2. Convert the OCI image into a Nydus image ($demo/nydus)"
if $nydusify convert --log-level warn --source "oci:$demo/oci:sample" --target "oci:$demo/nydus:sample" \
	--output-json "$demo/convert.json" | sed 's/^/  /'; then
	verdict PASS "convert wrote the Nydus image (report in $demo/convert.json)"
else
	verdict FAIL "convert"
fi

step "3. Build a Nydus image straight from the tree ($demo/out)"
if $nydusify build --log-level warn --source-dir "$demo/rootfs" --output-dir "$demo/out" --name sample | sed 's/^/  /'; then
	verdict PASS "build wrote bootstrap and blob (report in $demo/out/output.json)"
else
	verdict FAIL "build"
fi

step "4. Inspect the build, reading every chunk and checking it against its digest"
if $nydusify inspect --log-level warn "$demo/out/sample.meta" --blob-dir "$demo/out" >"$demo/inspect.txt"; then
	verdict PASS "every chunk read back and matched its digest (listing of every path in $demo/inspect.txt)"
else
	verdict FAIL "inspect found a bad chunk (see $demo/inspect.txt)"
fi

if [[ $root == yes ]] && grep -qw erofs /proc/filesystems; then
	step "5. The Linux kernel mounts the build as EROFS (blob views as devices); compare with the tree"
	mapfile -t views < <($nydusify unpack --log-level warn "$demo/out/sample.meta" --blob-dir "$demo/out" --blob-view --output "$demo/views")
	loops=()
	for v in "${views[@]}"; do loops+=("$(losetup -f --show -r "$v")"); done
	meta_loop=$(losetup -f --show -r "$demo/out/sample.meta")
	devopts=$(printf 'device=%s,' "${loops[@]}")
	mkdir -p "$demo/mnt"
	if mount -t erofs -o "ro,${devopts%,}" "$meta_loop" "$demo/mnt"; then
		compare "$demo/rootfs" "$demo/mnt" "the kernel's EROFS mount of the build equals the source tree"
		umount "$demo/mnt"
	else
		verdict FAIL "the kernel refused to mount the build"
	fi
	losetup -d "$meta_loop" "${loops[@]}"
else
	step "5. Unpack the build with our reader and compare with the tree (not root: no kernel mount)"
	if $nydusify unpack --log-level warn "$demo/out/sample.meta" --blob-dir "$demo/out" --output "$demo/unpacked"; then
		compare "$demo/rootfs" "$demo/unpacked" "the unpacked build equals the source tree"
	else
		verdict FAIL "unpack"
	fi
fi

step "6. Check the converted image against its source (manifest, bootstrap, every file)"
if $nydusify check --log-level warn --target "oci:$demo/nydus:sample" --source "oci:$demo/oci:sample" \
	--output-json "$demo/check.json" | sed 's/^/  /'; then
	verdict PASS "check found no difference (report in $demo/check.json)"
else
	verdict FAIL "check found differences (listed above; report in $demo/check.json)"
fi

if [[ $root == yes && -e /dev/fuse ]]; then
	step "7. nydusify mount serves the converted image lazily over FUSE; compare with the tree"
	mkdir -p "$demo/fuse"
	coproc MOUNT { exec $nydusify mount --log-level warn --target "oci:$demo/nydus:sample" --mount-path "$demo/fuse" --prefetch; }
	if read -r -t 60 ready <&"${MOUNT[0]}" && [[ $ready == "mounted at "* ]]; then
		compare "$demo/rootfs" "$demo/fuse" "the FUSE mount of the converted image equals the source tree"
		kill -INT "$MOUNT_PID"
		wait "$MOUNT_PID" || verdict FAIL "the mount did not unmount cleanly"
	else
		kill "$MOUNT_PID" 2>/dev/null
		verdict FAIL "nydusify mount did not come up"
	fi
else
	step "7. FUSE mount: skipped (needs root and /dev/fuse)"
	verdicts+=("SKIP  FUSE mount of the converted image (needs root and /dev/fuse)")
fi

step "Summary"
printf '  %s\n' "${verdicts[@]}"
exit $failed
