#!/usr/bin/env bash
# Builds the test cluster's components from their Go modules into $1 (a cache directory):
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, CoreDNS from github.com/coredns/coredns.
# Each binary is built only when missing, so a second run costs nothing.
#
# The k8s.io/kubernetes module cannot be built with `go install mod@version`: its go.mod replaces
# every k8s.io/<staging> repository with a ./staging path that is not in the module zip. So we
# build from a throwaway module that requires k8s.io/kubernetes and replaces each staging
# repository with its published v0.X.Y. The checksum database has no entries for those
# pseudo-combinations, hence GONOSUMDB=k8s.io.
set -euo pipefail

out=${1:?usage: build-components.sh OUTDIR}
K8S_VERSION=${K8S_VERSION:?}
ETCD_VERSION=${ETCD_VERSION:?}
COREDNS_VERSION=${COREDNS_VERSION:?}
staging=0.${K8S_VERSION#1.}

log() { printf '[build] %s\n' "$*" >&2; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -x "$out/coredns" ]; then
  log "CoreDNS $COREDNS_VERSION"
  CGO_ENABLED=0 GOBIN="$out" go install "github.com/coredns/coredns@$COREDNS_VERSION"
fi

if [ ! -x "$out/etcd" ]; then
  log "etcd $ETCD_VERSION"
  mkdir -p "$work/etcd"
  cat > "$work/etcd/go.mod" <<M
module kwarp.local/etcdbuild

go 1.24
M
  cat > "$work/etcd/main.go" <<'G'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
G
  ( cd "$work/etcd" && GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$out/etcd.tmp" . ) && mv "$out/etcd.tmp" "$out/etcd"
fi

bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "kubernetes $K8S_VERSION: ${missing[*]} (cold: about 8 minutes on 2 cores)"
  mkdir -p "$work/k8s"
  cd "$work/k8s"
  {
    printf 'module kwarp.local/k8sbuild\n\ngo 1.23\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
    for s in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
      cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
      cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms \
      kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
      mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller; do
      printf '\tk8s.io/%s => k8s.io/%s v%s\n' "$s" "$s" "$staging"
    done
    printf ')\n'
  } > go.mod
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for b in "${missing[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
    printf ')\n'
  } > tools.go
  export GONOSUMDB=k8s.io GOFLAGS=-mod=mod
  go mod tidy
  v=k8s.io/component-base/version
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  pkgs=(); for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  mkdir -p "$work/out"
  go build -ldflags "-X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor" -o "$work/out/" "${pkgs[@]}"
  for b in "${missing[@]}"; do mv "$work/out/$b" "$out/$b"; done
fi
log "components ready in $out"
