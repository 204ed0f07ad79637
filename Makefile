# kwarp — see README.md. Every target installs or builds what it needs; builds that take minutes
# (the Kubernetes components) are cached under $(KWARP_CACHE) and survive `make cluster-down`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

include test/cluster/versions.mk

export PATH := /usr/local/go/bin:$(PATH)
export KWARP_CACHE ?= $(HOME)/.cache/kwarp
export GOFLAGS := -buildvcs=false
CLUSTER_BIN := $(KWARP_CACHE)/k8s-$(K8S_VERSION)

MODULE := github.com/kwarp-dev/kwarp
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X $(MODULE)/version.Version=$(VERSION) -X $(MODULE)/version.Commit=$(COMMIT)

# unit and integration packages: everything but the end-to-end tests, which need the cluster
UNIT_PKGS = $(shell go list ./... | grep -v /test/e2e)

.PHONY: build image deps cluster-bins cluster-up cluster-down cluster-load test test-unit e2e \
	bench lint demo proto clean FORCE

build: bin/kwarp bin/kwarp-agent bin/kwarp-agent-init

bin/kwarp: FORCE
	go build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/kwarp

# the agent runs alone in a tiny image: it must be static
bin/kwarp-agent: FORCE
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/kwarp-agent
	@file $@ | grep -q 'statically linked' || { echo "$@ is not statically linked" >&2; exit 1; }

# the agent container's first process and netfilter guard: small and static, beside the agent
bin/kwarp-agent-init: FORCE
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/kwarp-agent-init
	@file $@ | grep -q 'statically linked' || { echo "$@ is not statically linked" >&2; exit 1; }

bin/testcluster: FORCE
	go build -o $@ ./test/cluster/cmd/testcluster

# the image reference comes from the agent binary itself, so the CLI and image always agree.
# The static agent and its small first process (the entrypoint), and Debian's iptables for
# agent/netfilter (make deps installs it; the list is internal/imagepack.Xtables, which the e2e
# tests' image uses too) with, by -libs, the shared libraries of all of it. /run is where
# iptables-legacy takes its lock.
image: bin/kwarp-agent bin/kwarp-agent-init
	ref=$$(bin/kwarp-agent -version | sed -n 's/^agent image: //p'); \
	go run ./cmd/imagepack -o dist/kwarp-agent.tar -ref "$$ref" -entrypoint /kwarp-agent-init -dir /tmp:1777 -dir /run:0755 \
		-xtables -libs bin/kwarp-agent bin/kwarp-agent-init && \
	echo "dist/kwarp-agent.tar: $$ref"

# Debian packages the cluster and the tests need (installed only when missing)
DEB_CMDS := containerd:containerd runc:runc ip:iproute2 iptables:iptables conntrack:conntrack file:file \
	redis-server:redis-server redis-cli:redis-tools dig:bind9-dnsutils
deps:
	@need=""; for p in $(DEB_CMDS); do command -v $${p%%:*} >/dev/null || need="$$need $${p##*:}"; done; \
	[ -x /usr/lib/cni/bridge ] || need="$$need containernetworking-plugins"; \
	/usr/bin/python3 -c 'import requests' 2>/dev/null || need="$$need python3-requests"; \
	if [ -n "$$need" ]; then \
		echo "[deps] installing Debian packages:$$need"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	fi

cluster-bins:
	@K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) COREDNS_VERSION=$(COREDNS_VERSION) \
		test/cluster/scripts/build-components.sh $(CLUSTER_BIN)

cluster-up: deps cluster-bins bin/testcluster
	bin/testcluster up

cluster-down: bin/testcluster
	bin/testcluster down

cluster-load: image bin/testcluster
	bin/testcluster load dist/kwarp-agent.tar

test: lint test-unit cluster-up cluster-load e2e

test-unit:
	go test -count=1 $(UNIT_PKGS)

e2e:
	go test -count=1 -timeout 40m ./test/e2e/...

bench:
	go test -run '^$$' -bench . -benchmem ./bench/...

lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...

# regenerate the wire APIs (the generated code is committed; CI never runs this)
PROTOS := agent/api/v1/agent.proto sdk/pluginv1/plugin.proto
proto:
	command -v protoc >/dev/null || apt-get install -y -qq protobuf-compiler
	GOBIN=$(KWARP_CACHE)/tools go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
	GOBIN=$(KWARP_CACHE)/tools go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
	PATH=$(KWARP_CACHE)/tools:$$PATH protoc --go_out=. --go_opt=module=$(MODULE) \
		--go-grpc_out=. --go-grpc_opt=module=$(MODULE) $(PROTOS)

demo: build cluster-up cluster-load
	test/demo.sh

clean:
	rm -rf bin dist

FORCE:
