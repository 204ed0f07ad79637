# The test cluster's pinned component versions. Read by the Makefile (include) and embedded by
# the Go harness (test/cluster), so both always build and run the same thing.
K8S_VERSION := 1.32.4
ETCD_VERSION := v3.6.16
COREDNS_VERSION := v1.14.7
