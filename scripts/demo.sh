#!/usr/bin/env bash
# The main jobs on a bundled sample: generate the sample tree (every file
# type, xattrs, hardlinks, 255-byte and UTF-8 names) and an OCI image of it;
# convert that image to a Nydus image (OCI layout to OCI layout); build a RAFS
# v6 image straight from the tree, inspect it while verifying every chunk,
# then prove it: as root, the Linux kernel mounts the bootstrap as EROFS over
# the blob views and the mounted tree is compared with the source; otherwise
# the image is unpacked with our reader and compared. Then check proves the
# converted image equals its source, and, as root, nydusify mount serves it
# lazily over FUSE and the mounted tree is compared with the source.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
demo=demo
rm -rf "$demo"
mkdir -p "$demo"

root_flag=()
[[ $(id -u) == 0 ]] && root_flag=(-root)
echo "== generating the sample tree in $demo/rootfs and an OCI image of it in $demo/oci"
go run ./internal/fstree/mkfstree "${root_flag[@]}" -oci "$demo/oci:sample" "$demo/rootfs"

echo "== nydusify convert (OCI layout to OCI layout)"
bin/nydusify convert --source "oci:$demo/oci:sample" --target "oci:$demo/nydus:sample" --output-json "$demo/convert.json"
grep -E '"(target_digest|blob_bytes|chunks|dedup_chunks|convert)"' "$demo/convert.json"

echo "== nydusify build"
bin/nydusify build --source-dir "$demo/rootfs" --output-dir "$demo/out" --name sample --compressor zstd
cat "$demo/out/output.json"

echo "== nydusify inspect (every chunk read and verified)"
bin/nydusify inspect "$demo/out/sample.meta" --blob-dir "$demo/out" >"$demo/inspect.txt"
head -12 "$demo/inspect.txt"
echo "... (full listing in $demo/inspect.txt)"

if [[ $(id -u) == 0 ]] && grep -qw erofs /proc/filesystems; then
	echo "== kernel check: mount the bootstrap as EROFS with the blob views as devices"
	mapfile -t views < <(bin/nydusify unpack "$demo/out/sample.meta" --blob-dir "$demo/out" --blob-view --output "$demo/views")
	loops=()
	for v in "${views[@]}"; do loops+=("$(losetup -f --show -r "$v")"); done
	meta_loop=$(losetup -f --show -r "$demo/out/sample.meta")
	devopts=$(printf 'device=%s,' "${loops[@]}")
	mkdir -p "$demo/mnt"
	mount -t erofs -o "ro,${devopts%,}" "$meta_loop" "$demo/mnt"
	go run ./internal/treecmp/treediff "$demo/rootfs" "$demo/mnt"
	umount "$demo/mnt"
	losetup -d "$meta_loop" "${loops[@]}"
else
	echo "== unpack with our reader and compare (not root: no kernel mount)"
	bin/nydusify unpack "$demo/out/sample.meta" --blob-dir "$demo/out" --output "$demo/unpacked"
	go run ./internal/treecmp/treediff "$demo/rootfs" "$demo/unpacked"
fi

echo "== nydusify check: the converted image against its source, every file compared"
bin/nydusify check --target "oci:$demo/nydus:sample" --source "oci:$demo/oci:sample" --output-json "$demo/check.json"

if [[ $(id -u) == 0 && -e /dev/fuse ]]; then
	echo "== nydusify mount: the converted image, lazily over FUSE, compared with the source"
	mkdir -p "$demo/fuse"
	coproc MOUNT { exec bin/nydusify mount --target "oci:$demo/nydus:sample" --mount-path "$demo/fuse" --prefetch --json; }
	read -r ready <&"${MOUNT[0]}"
	echo "$ready"
	rc=0
	go run ./internal/treecmp/treediff "$demo/rootfs" "$demo/fuse" || rc=$?
	kill -INT "$MOUNT_PID"
	wait "$MOUNT_PID" || rc=$?
	exit $rc
fi
