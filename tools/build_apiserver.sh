#!/usr/bin/env bash
# Build the upstream Kubernetes apiextensions-apiserver and fetch etcd, from Debian sid's
# packages only (the Kubernetes staging libraries are packaged there as Go source), into a
# cache outside the repository: $SEESAW_CACHE/apiserver-$APISERVER_VERSION/bin/{apiextensions-apiserver,etcd}.
# A second run finds the binaries and does nothing. The machine's own apt setup is untouched:
# sid gets its own sources list, lists and archive directories under the cache.
set -euo pipefail

APISERVER_VERSION="${APISERVER_VERSION:?pin the golang-k8s-apiextensions-apiserver-dev version}"
GO_PACKAGE="${GO_PACKAGE:?pin the Go toolchain package, e.g. golang-1.27-go}"
CACHE="${SEESAW_CACHE:-$HOME/.cache/seesaw}"
OUT="$CACHE/apiserver-$APISERVER_VERSION"
if [ -x "$OUT/bin/apiextensions-apiserver" ] && [ -x "$OUT/bin/etcd" ]; then
  echo "apiserver: cached in $OUT"
  exit 0
fi
for tool in apt-get apt-cache dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "apiserver: needs Debian's $tool (the server is built from Debian sid's packages)" >&2; exit 1; }
done

WORK="$OUT.build"
rm -rf "$WORK"
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/archives/partial" "$WORK/debs" "$WORK/root"
echo "deb [trusted=yes] http://deb.debian.org/debian sid main" > "$WORK/apt/sources.list"
APT=(-o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt" -o "Dir::Cache::archives=$WORK/apt/archives"
     -o "APT::Architecture=$(dpkg --print-architecture)" -o Acquire::Languages=none -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

echo "apiserver: reading Debian sid's package lists"
apt-get "${APT[@]}" update -qq
have=$(apt-cache "${APT[@]}" show golang-k8s-apiextensions-apiserver-dev 2>/dev/null | sed -n 's/^Version: //p' | head -1)
if [ "$have" != "$APISERVER_VERSION" ]; then
  echo "apiserver: Debian sid carries golang-k8s-apiextensions-apiserver-dev $have, not the pinned $APISERVER_VERSION;" \
       "set APISERVER_VERSION in the Makefile to $have (and check the tests still pass)" >&2
  exit 1
fi

# Every Go source package the server needs, the toolchain and etcd.
packages=$(apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
             --no-replaces --no-enhances golang-k8s-apiextensions-apiserver-dev \
           | grep -E '^golang-.*-dev$' | sort -u)
GO_SOURCE="${GO_PACKAGE%-go}-src"  # the toolchain's standard library comes in its own package
echo "apiserver: downloading $(echo "$packages" | wc -l) Go source packages, $GO_PACKAGE, $GO_SOURCE and etcd-server"
(cd "$WORK/debs" && apt-get "${APT[@]}" download -qq $packages "$GO_PACKAGE" "$GO_SOURCE" etcd-server)
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done

GO=$(ls "$WORK"/root/usr/lib/go-*/bin/go | head -1)
echo "apiserver: building k8s.io/apiextensions-apiserver with $("$GO" version | cut -d' ' -f3) (a few minutes)"
mkdir -p "$WORK/bin"
(cd "$WORK" && GOROOT="$(dirname "$(dirname "$GO")")" GO111MODULE=off GOPATH="$WORK/root/usr/share/gocode" \
   GOCACHE="$WORK/gocache" "$GO" build -o "$WORK/bin/apiextensions-apiserver" k8s.io/apiextensions-apiserver)
cp "$WORK/root/usr/bin/etcd" "$WORK/bin/etcd"

mkdir -p "$OUT/bin"
mv "$WORK/bin/apiextensions-apiserver" "$WORK/bin/etcd" "$OUT/bin/"
echo "$APISERVER_VERSION" > "$OUT/VERSION"
rm -rf "$WORK"
echo "apiserver: built in $OUT"
