#!/usr/bin/env bash
# Build the upstream Kubernetes apiextensions-apiserver and fetch etcd, from Debian sid's
# packages only (the Kubernetes staging libraries are packaged there as Go source), into a
# cache outside the repository: $SEESAW_CACHE/apiserver-$APISERVER_VERSION/bin/{apiextensions-apiserver,etcd},
# with two tools of the repository next to them: yaml2json (tools/yaml2json: kubectl's YAML-to-JSON
# conversion, sigs.k8s.io/yaml) and crd_openapi (tools/crd_openapi: the OpenAPI v3 document a
# cluster publishes for a CRD, which `kubectl explain` reads). A second run finds the binaries and
# does nothing; a cache that lacks some of them gets only those, from only the Go sources they
# need. The machine's own apt setup is untouched: sid gets its own sources list, lists and
# archive directories under the cache.
set -euo pipefail

APISERVER_VERSION="${APISERVER_VERSION:?pin the golang-k8s-apiextensions-apiserver-dev version}"
GO_PACKAGE="${GO_PACKAGE:?pin the Go toolchain package, e.g. golang-1.27-go}"
CACHE="${SEESAW_CACHE:-$HOME/.cache/seesaw}"
OUT="$CACHE/apiserver-$APISERVER_VERSION"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
need_server=1 need_yaml2json=1 need_openapi=1
[ -x "$OUT/bin/apiextensions-apiserver" ] && [ -x "$OUT/bin/etcd" ] && need_server=0
[ -x "$OUT/bin/yaml2json" ] && need_yaml2json=0
[ -x "$OUT/bin/crd_openapi" ] && need_openapi=0
if [ "$need_server$need_yaml2json$need_openapi" = 000 ]; then
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
if [ "$need_server" = 1 ] || [ "$need_openapi" = 1 ]; then
  have=$(apt-cache "${APT[@]}" show golang-k8s-apiextensions-apiserver-dev 2>/dev/null | sed -n 's/^Version: //p' | head -1)
  if [ "$have" != "$APISERVER_VERSION" ]; then
    echo "apiserver: Debian sid carries golang-k8s-apiextensions-apiserver-dev $have, not the pinned $APISERVER_VERSION;" \
         "set APISERVER_VERSION in the Makefile to $have (and check the tests still pass)" >&2
    exit 1
  fi
  root_package=golang-k8s-apiextensions-apiserver-dev extra=""
  [ "$need_server" = 1 ] && extra=etcd-server
else  # the server and crd_openapi are cached: only what yaml2json needs
  root_package=golang-k8s-sigs-yaml-dev extra=""
fi

# Every Go source package the build needs, the toolchain (and etcd for the server).
packages=$( { echo "$root_package"; apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
             --no-breaks --no-replaces --no-enhances "$root_package"; } | grep -E '^golang-.*-dev$' | sort -u)
GO_SOURCE="${GO_PACKAGE%-go}-src"  # the toolchain's standard library comes in its own package
echo "apiserver: downloading $(echo "$packages" | wc -l) Go source packages, $GO_PACKAGE, $GO_SOURCE $extra"
(cd "$WORK/debs" && apt-get "${APT[@]}" download -qq $packages "$GO_PACKAGE" "$GO_SOURCE" $extra)
for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done

GO=$(ls "$WORK"/root/usr/lib/go-*/bin/go | head -1)
go_build() {  # output, package or directory; in GOPATH mode over Debian's Go sources
  (cd "$3" && GOROOT="$(dirname "$(dirname "$GO")")" GO111MODULE=off GOPATH="$WORK/root/usr/share/gocode" \
     GOCACHE="$WORK/gocache" "$GO" build -o "$1" "$2")
}
mkdir -p "$WORK/bin"
if [ "$need_server" = 1 ]; then
  echo "apiserver: building k8s.io/apiextensions-apiserver with $("$GO" version | cut -d' ' -f3) (a few minutes)"
  go_build "$WORK/bin/apiextensions-apiserver" k8s.io/apiextensions-apiserver "$WORK"
  cp "$WORK/root/usr/bin/etcd" "$WORK/bin/etcd"
fi
if [ "$need_yaml2json" = 1 ]; then
  echo "apiserver: building yaml2json (kubectl's YAML to JSON conversion)"
  go_build "$WORK/bin/yaml2json" . "$REPO/tools/yaml2json"
fi
if [ "$need_openapi" = 1 ]; then
  echo "apiserver: building crd_openapi (a CRD's OpenAPI v3 document, as kube-apiserver builds it)"
  go_build "$WORK/bin/crd_openapi" . "$REPO/tools/crd_openapi"
fi

mkdir -p "$OUT/bin"
mv "$WORK"/bin/* "$OUT/bin/"
echo "$APISERVER_VERSION" > "$OUT/VERSION"
rm -rf "$WORK"
echo "apiserver: built in $OUT"
